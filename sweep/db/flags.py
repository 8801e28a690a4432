"""Training pathologies, computed from the stored statistics.

Each flag names the trial, the layer (where one applies) and the first epoch
at which it appeared, judged on the last snapshot of each epoch. The tests,
their thresholds and the snapshot summary are sweep.measures' (the stop rules
apply the same ones); here they are read from the database and from pandas:

- saturated: a bounded activation layer (sigmoid, tanh, softsign: the ones
  with a sat_frac) with more than `saturated` of its values within 3% of an
  asymptote;
- dead: a layer with more than `dead` of its units zero for a whole batch
  (only ReLU-like activations produce exact zeros);
- vanishing / exploding: the first weight layer's gradient std over the last
  one's below `vanishing` / above `exploding`;
- exploding loss: the epoch's train loss above `exploding` times the test
  loss before training (epoch 0), still finite (layer "loss");
- chance: test accuracy within `chance_margin` of 1/classes from some epoch
  >= 1 to the last one read;
- diverged: the loss became NaN or infinite (the trial's status).

Flags read the epochs the report reads (like with like): up to the sweep's
`epochs` (a trial trained further is judged there), and for a diverged trial
up to the epoch before the one whose loss was not finite (its evaluation on
NaN logits says class 0, about 1/classes: never chance).

`flags_frame` reads them from the database without loading the statistics:
each epoch row carries the summary of its last snapshot (the largest
sat_frac and dead_frac, the gradient std ratio: sweep.measures.summarize_snapshot),
the database finds each trial's first epoch past a threshold, and only those
epochs' layers are read to name the layer. `compute_flags` in tests/reference.py, the same flags
from pandas frames of every row, is the definition the tests hold it to.
"""
from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
from sqlalchemy import Engine, and_, case, func, select
from sqlalchemy.orm import aliased

from sweep.db.queries import last_epoch_read
from sweep.db.schema import EpochMetric, LayerStat, Sweep, Trial
# The thresholds and tests, shared with the stop rules that act on the same measures (sweep/run/stopping.py).
from sweep.measures import FlagThresholds, passes, threshold_of  # FlagThresholds: imported from here too
from sweep.status import Status

FLAG_COLUMNS = ["trial", "label", "flag", "layer", "epoch", "value"]

# What each flag means, for a reader of a report (sweep page's tooltips), keyed by the flag's name as
# flags_frame writes it; the {placeholders} are FlagThresholds' fields, filled with the thresholds in use.
FLAG_DESCRIPTIONS = {
    "saturated": "a bounded activation layer (sigmoid, tanh, softsign) had more than {saturated:g} of its values "
                 "within 3% of an asymptote",
    "dead": "a layer had more than {dead:g} of its units zero for a whole batch (ReLU-like activations)",
    "vanishing": "the first weight layer's gradient std over the last one's fell below {vanishing:g}",
    "exploding": "the first weight layer's gradient std over the last one's rose above {exploding:g}; on layer "
                 "'loss': the train loss rose above {exploding:g} times the loss before training",
    "chance": "test accuracy stayed within {chance_margin:g} of 1/classes from this epoch to the last one read",
    Status.DIVERGED.value: "the loss became NaN or infinite at this epoch; the trial's figures are read before it",
}
FLAG_NOTATION = "@E: the first epoch it showed; (k/n): how many of the configuration's n seeds showed it"


def flags_frame(engine: Engine, sweep: str, thresholds: FlagThresholds = FlagThresholds()) -> pd.DataFrame:
    """Pathology flags of every trial of a sweep: trial, label, flag, layer, epoch, value.

    The same as tests/reference.py's compute_flags on the sweep's frames, computed by the database from the
    epochs' summaries.
    Example: flags_frame(engine, "fashion-activations", FlagThresholds(dead=0.3))
    """
    t = thresholds
    with engine.connect() as conn:
        sweep_id, spec_json = conn.execute(select(Sweep.sweep_id, Sweep.spec_json).where(Sweep.name == sweep)).one()
        epochs = _sweep_epochs(spec_json)
        # Chance is 1/classes of the sweep's data, as its run found them (ten where the record does not say).
        classes = (json.loads(spec_json or "{}").get("dataset") or {}).get("classes")
        t = replace(t, classes=classes) if classes else t
        names = {r.trial_id: (r.name, r.label, r.status, r.epochs_done) for r in conn.execute(
            select(Trial.trial_id, Trial.name, Trial.label, Trial.status, Trial.epochs_done)
            .where(Trial.sweep_id == sweep_id))}
        records: list[tuple] = []  # (trial_id, flag, layer, epoch, value)
        for flag, summary, column in (("saturated", EpochMetric.max_sat_frac, LayerStat.sat_frac),
                                      ("dead", EpochMetric.max_dead_frac, LayerStat.dead_frac)):
            limit = threshold_of(flag, t)
            records += [(r.trial_id, flag, r.layer, r.epoch, r.value)
                        for r in conn.execute(_first_layer(sweep_id, epochs, passes(flag, summary, limit),
                                                           "activation", passes(flag, column, limit), column))]
        for flag in ("vanishing", "exploding"):
            hit = passes(flag, EpochMetric.grad_std_ratio, threshold_of(flag, t))
            records += [(r.trial_id, flag, r.layer, r.epoch, r.ratio)
                        for r in conn.execute(_first_layer(sweep_id, epochs, hit, "gradient", None,
                                                           EpochMetric.grad_std_ratio, "ratio"))]
        records += [(r.trial_id, "exploding", "loss", r.epoch, r.ratio)
                    for r in conn.execute(_exploding_loss(sweep_id, epochs, t))]
        records += [(r.trial_id, "chance", None, r.epoch, r.test_acc)
                    for r in conn.execute(_chance(sweep_id, epochs, t))]
    records += [(trial_id, Status.DIVERGED.value, None, int(done), float("nan"))  # the status is the flag
                for trial_id, (_, _, status, done) in names.items() if status == Status.DIVERGED]
    frame = pd.DataFrame(
        [{"trial": names[i][0], "label": names[i][1], "flag": flag, "layer": layer, "epoch": int(epoch),
          "value": float(value)} for i, flag, layer, epoch, value in records], columns=FLAG_COLUMNS)
    frame["layer"] = frame["layer"].astype(object).where(frame["layer"].notna(), None)
    return frame.sort_values(["trial", "epoch", "flag"], kind="stable").reset_index(drop=True)


def _sweep_epochs(spec_json: str | None) -> int | None:
    """The sweep's `epochs` from its stored spec (None where the spec does not say)."""
    try:
        return int(json.loads(spec_json or "{}")["epochs"])
    except (KeyError, TypeError, ValueError):
        return None


# A sweep whose stored spec names no `epochs` is read to its last epoch (and a diverged trial to the one before).
NO_CAP = 2**31 - 1


def _epochs_of(sweep_id: int, sweep_epochs: int | None):
    """The sweep's epoch rows that its flags read: the report's (db.queries.last_epoch_read)."""
    upto = last_epoch_read(NO_CAP if sweep_epochs is None else sweep_epochs)
    return (select(EpochMetric.trial_id).join(Trial, Trial.trial_id == EpochMetric.trial_id)
            .where(Trial.sweep_id == sweep_id, EpochMetric.epoch <= upto))


def _exploding_loss(sweep_id: int, sweep_epochs: int | None, t: FlagThresholds):
    """Per trial, the first epoch >= 1 whose train loss is above t.exploding times the test loss of epoch 0."""
    start = aliased(EpochMetric)
    ratio = EpochMetric.train_loss / start.test_loss
    hits = (_epochs_of(sweep_id, sweep_epochs).add_columns(EpochMetric.epoch, ratio.label("ratio"),
                                                           func.row_number().over(
                                                               partition_by=EpochMetric.trial_id,
                                                               order_by=EpochMetric.epoch).label("place"))
            .join(start, and_(start.trial_id == EpochMetric.trial_id, start.epoch == 0))
            .where(EpochMetric.epoch >= 1, passes("exploding", ratio, t.exploding)).subquery())
    return select(hits.c.trial_id, hits.c.epoch, hits.c.ratio).where(hits.c.place == 1)


def _first_layer(sweep_id: int, sweep_epochs: int | None, hit, kind: str, layer_hit, value,
                 value_name: str = "value"):
    """Per trial, the first epoch whose summary passes `hit`, and in that epoch's last snapshot the first
    layer of `kind` (in layer order) passing `layer_hit` (any layer where None), with `value`."""
    first = (_epochs_of(sweep_id, sweep_epochs).add_columns(func.min(EpochMetric.epoch).label("epoch"))
             .where(hit).group_by(EpochMetric.trial_id).subquery())
    layers = (select(LayerStat.trial_id, LayerStat.epoch, LayerStat.layer, value.label(value_name),
                     func.row_number().over(partition_by=LayerStat.trial_id,
                                            order_by=LayerStat.layer_stat_id).label("place"))
              .select_from(first)
              .join(EpochMetric, and_(EpochMetric.trial_id == first.c.trial_id, EpochMetric.epoch == first.c.epoch))
              .join(LayerStat, and_(LayerStat.trial_id == first.c.trial_id, LayerStat.step == EpochMetric.stats_step,
                                    LayerStat.epoch == first.c.epoch))
              .where(LayerStat.kind == kind, *([layer_hit] if layer_hit is not None else []))
              .subquery())
    return select(layers.c.trial_id, layers.c.epoch, layers.c.layer, layers.c[value_name]).where(layers.c.place == 1)


def _chance(sweep_id: int, sweep_epochs: int | None, t: FlagThresholds):
    """Per trial whose last epoch (>= 1) is near chance, the start of that final run of near-chance epochs."""
    near = passes("chance", func.abs(EpochMetric.test_acc - 1.0 / t.classes), t.chance_margin)
    far_epoch = case((near, None), else_=EpochMetric.epoch)  # NULL accuracy: not near
    runs = (_epochs_of(sweep_id, sweep_epochs).where(EpochMetric.epoch >= 1)
            .add_columns(func.max(EpochMetric.epoch).label("last"), func.max(far_epoch).label("last_far"),
                         func.min(EpochMetric.epoch).label("first"))
            .group_by(EpochMetric.trial_id).subquery())
    start = func.coalesce(runs.c.last_far + 1, runs.c.first)
    return (select(runs.c.trial_id, EpochMetric.epoch, EpochMetric.test_acc)
            .join(EpochMetric, and_(EpochMetric.trial_id == runs.c.trial_id, EpochMetric.epoch == start))
            .where(func.coalesce(runs.c.last_far, -1) < runs.c.last))


def describe_flags(flags: pd.DataFrame, trials: int | None = None) -> str:
    """Each flag (and layer) once, at its earliest epoch: 'saturated fc2@1, chance@2'.

    With `trials` (how many trials the flags are of, e.g. the seeds of one
    configuration), each also says how many of them showed it:
    'chance@1 (2/2), dead fc1@1 (1/2)'.
    """
    return describe_records(flag_records(flags), trials)


def flag_records(flags: pd.DataFrame) -> list[tuple]:
    """The rows of a flags frame as (trial, flag, layer, epoch) tuples, for describe_records."""
    return list(zip(flags["trial"], flags["flag"], flags["layer"], flags["epoch"]))


def describe_records(records: list[tuple], trials: int | None = None) -> str:
    """describe_flags of (trial, flag, layer, epoch) tuples: plain Python, for a report that describes
    the flags of a thousand trials one by one."""
    groups: dict[tuple, list] = {}  # (flag, layer) -> [earliest epoch, trials], earliest first
    for trial, flag, layer, epoch in sorted(records, key=lambda r: (r[3], r[1])):
        key = (flag, layer if isinstance(layer, str) else None)
        if key not in groups:
            groups[key] = [epoch, set()]
        groups[key][1].add(trial)
    parts = []
    for (flag, layer), (epoch, shown_by) in groups.items():
        text = f"{flag} {layer}@{epoch}" if layer is not None else f"{flag}@{epoch}"
        if trials is not None:
            text += f" ({len(shown_by)}/{trials})"
        parts.append(text)
    return ", ".join(parts)
