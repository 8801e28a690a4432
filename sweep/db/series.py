"""The layers over training: what `sweep plot`'s dynamics picture reads, and which configurations the pictures
name.

dynamics_frame reads, for the configurations a picture shows, one activation
statistic and the weight-gradient std of every layer at every statistics
snapshot, seeds pooled by the database: a big sweep's 12.4M layer rows are
never all read. Where a trial has more snapshots than a line needs
(MAX_POINTS), each epoch's last snapshot (epoch_metrics.stats_step, the
snapshot the flags and depth profiles read) stands for its epoch, and past
MAX_POINTS epochs every k-th epoch's.

shown_configurations is the one rule of which configurations a picture
names: every one up to ALL_NAMED, else the best and the worst by the metric.
It lives here, without matplotlib, because the reads depend on it (sweep
plot reads the dynamics of those configurations only, before matplotlib is
imported).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from sqlalchemy import Engine, case, func, select

from sweep.db.queries import _numbers
from sweep.db.schema import EpochMetric, LayerStat, Sweep, Trial

# Statistics of the activations a dynamics picture may show (layer_stats columns); weight gradients are
# always shown by their std.
DYNAMICS_STATS = ("mean", "std", "p98", "zero_frac", "dead_frac", "sat_frac")
# Points per line read at most (a panel is 250 px wide): 3 epochs of the default study at stats_every 100
# have 30 snapshots, all read; a 200-epoch sweep with 7 snapshots an epoch has 1,400, read as the last
# snapshots of every second epoch.
MAX_POINTS = 150

# Configurations a picture names (its own colour, marker and legend entry): every one up to ALL_NAMED (the
# default study's 16; tab20 gives as many distinct colours, markers tell neighbours apart); beyond, the
# MAX_NAMED / 2 best and the MAX_NAMED / 2 worst by the metric, the others drawn thin and grey.
ALL_NAMED = 16
MAX_NAMED = 10


def shown_configurations(labels: Sequence[str], ranking: Sequence[str] | None) -> list[str]:
    """The labels a picture names: all of them when there are at most ALL_NAMED (or no ranking), else the
    MAX_NAMED / 2 best and worst by `ranking` (labels, best first; labels it lacks count as worst), best
    first.

    Example: shown_configurations(["a", "b"], ["b", "a"]) -> ["a", "b"]
    """
    labels = list(labels)
    if ranking is None or len(labels) <= ALL_NAMED:
        return labels
    mine = set(labels)
    ranked = [label for label in ranking if label in mine]
    known = set(ranked)
    ranked += [label for label in labels if label not in known]
    half = MAX_NAMED // 2
    return ranked[:half] + ranked[-half:]


def dynamics_frame(engine: Engine, sweep: str, stat: str = "std", labels: Sequence[str] | None = None,
                   max_points: int = MAX_POINTS) -> pd.DataFrame:
    """Per configuration (label; only `labels` if given), kind, layer and snapshot: the mean over its seeds of
    the activations' `stat` (kind activation) or of the weight gradient's std (kind gradient), and n, how
    many seeds had a value there (NULL and NaN are not counted). Columns label, activation, kind, layer,
    images_seen, value, n; configurations in the order of their first trial, then kind, images seen and
    layer in network order.

    Every snapshot is read where a trial has at most `max_points`; else each epoch's last one, and of those
    every k-th epoch's (the last included) where there are more than `max_points` epochs.
    Example: dynamics_frame(engine, "fashion-activations", "sat_frac")
    """
    if stat not in DYNAMICS_STATS:
        raise ValueError(f"{stat!r} is not a layer statistic; use one of {', '.join(DYNAMICS_STATS)}")
    columns = ["label", "activation", "kind", "layer", "images_seen", "value", "n"]
    trials = _trials(engine, sweep)
    if labels is not None:
        trials = trials[trials["label"].isin(set(labels))]
    if trials.empty:
        return pd.DataFrame(columns=columns)
    # Each configuration is named by its first trial's id, the kinds and layers by numbers: the points come
    # back as numbers only (SQLAlchemy's rows, strings on each, cost more than the query).
    config = trials.groupby("label", sort=False)["trial_id"].transform("min")
    per_config = dict(zip(trials["trial_id"].tolist(), config.tolist()))
    deepest = int(trials.loc[trials["epochs_done"].idxmax(), "trial_id"])
    layers = _layers(engine, deepest)
    if not layers:
        return pd.DataFrame(columns=columns)
    ids = list(per_config)
    snapshots, epochs, last = _snapshot_counts(engine, deepest)
    kind = case((LayerStat.kind == "activation", 0), else_=1)
    value = case((LayerStat.kind == "activation", getattr(LayerStat, stat)), else_=LayerStat.std)
    layer = case({name: i for i, name in enumerate(layers)}, value=LayerStat.layer, else_=len(layers))
    owner = case(per_config, value=LayerStat.trial_id)
    stmt = select(owner.label("config"), kind, layer, LayerStat.step, func.avg(value), func.count(value)
                  ).where(LayerStat.trial_id.in_(ids))
    if snapshots > max_points:
        # Each epoch's last snapshot (of every k-th epoch): the deepest trial's, whose steps (images seen) the
        # sweep's trials share (one dataset and batch size), each snapshot's rows found by the unique index
        # on (trial_id, step), where a join with their epoch rows went through all of their layer rows
        # (docs/benchmarks.md, "Big sweeps (2-core CPU, 24 GiB)").
        stmt = stmt.where(LayerStat.step.in_(_epoch_steps(engine, deepest, epochs, last, max_points)))
    stmt = stmt.group_by(owner, kind, layer, LayerStat.step).order_by(owner, kind, LayerStat.step, layer)
    found = _numbers(engine, stmt, 6)
    names = trials.drop_duplicates("label").set_index("trial_id")
    frame = names.loc[found[:, 0].astype(np.int64), ["label", "activation"]].reset_index(drop=True)
    frame["kind"] = np.where(found[:, 1] == 0, "activation", "gradient")
    known = np.array([*layers, "?"], dtype=object)
    frame["layer"] = known[found[:, 2].astype(np.int64)]
    frame["images_seen"] = found[:, 3].astype(np.int64)
    frame["value"] = found[:, 4]
    frame["n"] = found[:, 5].astype(np.int64)
    return frame[columns]


def _trials(engine: Engine, sweep: str) -> pd.DataFrame:
    stmt = (select(Trial.trial_id, Trial.label, Trial.activation, Trial.epochs_done)
            .join(Sweep, Sweep.sweep_id == Trial.sweep_id).where(Sweep.name == sweep).order_by(Trial.trial_id))
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(stmt).all(), columns=["trial_id", "label", "activation", "epochs_done"])


def _layers(engine: Engine, trial_id: int) -> list[str]:
    """The layer names of a trial's first snapshot, activation layers then weight layers, each in network
    order (a name in both, as conv1, once)."""
    first = select(func.min(LayerStat.step)).where(LayerStat.trial_id == trial_id).scalar_subquery()
    stmt = (select(LayerStat.layer).where(LayerStat.trial_id == trial_id, LayerStat.step == first)
            .order_by(LayerStat.layer_stat_id))
    with engine.connect() as conn:
        return list(dict.fromkeys(conn.scalars(stmt)))


def _epoch_steps(engine: Engine, trial_id: int, epochs: int, last: int, max_points: int) -> list[int]:
    """The steps of a trial's epochs' last snapshots (epoch_metrics.stats_step), of every k-th epoch where it has
    more than `max_points` (`last`, its last epoch with a snapshot, always)."""
    every = math.ceil(epochs / max_points)
    stmt = select(EpochMetric.stats_step).where(EpochMetric.trial_id == trial_id, EpochMetric.stats_step.is_not(None))
    if every > 1:
        stmt = stmt.where((EpochMetric.epoch % every == last % every) | (EpochMetric.epoch == last))
    with engine.connect() as conn:
        return [int(step) for step in conn.scalars(stmt)]


def _snapshot_counts(engine: Engine, trial_id: int) -> tuple[int, int, int]:
    """(snapshots, epochs with a snapshot, the last such epoch) of a trial, from the index on its layer rows
    and its epoch rows."""
    with engine.connect() as conn:
        snapshots = conn.scalar(select(func.count(func.distinct(LayerStat.step))).where(LayerStat.trial_id == trial_id))
        epochs, last = conn.execute(select(func.count(), func.max(EpochMetric.epoch))
                                    .where(EpochMetric.trial_id == trial_id, EpochMetric.stats_step.is_not(None))).one()
    return int(snapshots or 0), int(epochs or 0), int(last or 0)
