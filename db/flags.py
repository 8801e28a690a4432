"""Training pathologies, computed from the stored statistics.

Each flag names the trial, the layer (where one applies) and the first epoch
at which it appeared, judged on the last snapshot of each epoch:

- saturated: a bounded activation layer (sigmoid, tanh, softsign: the ones
  with a sat_frac) with more than `saturated` of its values within 3% of an
  asymptote;
- dead: a layer with more than `dead` of its units zero for a whole batch
  (only ReLU-like activations produce exact zeros);
- vanishing / exploding: the first weight layer's gradient std over the last
  one's below `vanishing` / above `exploding`;
- chance: test accuracy within `chance_margin` of 1/classes from some epoch
  >= 1 to the last one recorded;
- diverged: the loss became NaN or infinite (the trial's status).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Engine

from db.queries import epoch_metrics_frame, layer_stats_frame, trials_frame

FLAG_COLUMNS = ["trial", "label", "flag", "layer", "epoch", "value"]


@dataclass(frozen=True)
class FlagThresholds:
    saturated: float = 0.5  # share of values near an asymptote
    dead: float = 0.5  # share of dead units
    vanishing: float = 1e-2  # first/last layer gradient std ratio below this
    exploding: float = 1e2  # ... above this
    chance_margin: float = 0.02  # accuracy within this of 1/classes
    classes: int = 10


def _first(rows: pd.DataFrame, flag: str, value_col: str) -> list[dict]:
    """The earliest (epoch, layer order) row per trial, as flag records."""
    if rows.empty:
        return []
    rows = rows.sort_values(["trial_id", "epoch", "layer_stat_id"]).groupby("trial_id").head(1)
    return [{"trial": r.trial, "label": r.label, "flag": flag, "layer": r.layer, "epoch": int(r.epoch),
             "value": float(getattr(r, value_col))} for r in rows.itertuples()]


def compute_flags(trials: pd.DataFrame, epochs: pd.DataFrame, stats: pd.DataFrame,
                  thresholds: FlagThresholds = FlagThresholds()) -> pd.DataFrame:
    """Flags from the three frames of one sweep (see the module doc)."""
    t = thresholds
    records: list[dict] = []
    if not stats.empty:
        # The last snapshot of each epoch stands for that epoch.
        last = stats[stats["step"] == stats.groupby(["trial_id", "epoch"])["step"].transform("max")]
        acts = last[last["kind"] == "activation"]
        records += _first(acts[acts["sat_frac"] > t.saturated], "saturated", "sat_frac")
        records += _first(acts[acts["dead_frac"] > t.dead], "dead", "dead_frac")
        grads = last[last["kind"] == "gradient"].sort_values("layer_stat_id")
        ends = grads.groupby(["trial_id", "epoch"]).agg(
            trial=("trial", "first"), label=("label", "first"), first_layer=("layer", "first"),
            first_std=("std", "first"), last_std=("std", "last")).reset_index()
        ends["ratio"] = ends["first_std"] / ends["last_std"]
        for flag, hit in (("vanishing", ends["ratio"] < t.vanishing), ("exploding", ends["ratio"] > t.exploding)):
            rows = ends[hit].sort_values(["trial_id", "epoch"]).groupby("trial_id").head(1)
            records += [{"trial": r.trial, "label": r.label, "flag": flag, "layer": r.first_layer,
                         "epoch": int(r.epoch), "value": float(r.ratio)} for r in rows.itertuples()]
    if not epochs.empty:
        chance = 1.0 / t.classes
        for trial_id, group in epochs[epochs["epoch"] >= 1].groupby("trial_id"):
            group = group.sort_values("epoch")
            near = (group["test_acc"] - chance).abs() <= t.chance_margin
            if len(group) and near.iloc[-1]:
                # The start of the final run of near-chance epochs.
                start = group["epoch"][~near].max() + 1 if (~near).any() else group["epoch"].iloc[0]
                row = group[group["epoch"] == start].iloc[0]
                records.append({"trial": row["trial"], "label": row["label"], "flag": "chance", "layer": None,
                                "epoch": int(start), "value": float(row["test_acc"])})
    for r in trials[trials["status"] == "diverged"].itertuples():
        records.append({"trial": r.name, "label": r.label, "flag": "diverged", "layer": None,
                        "epoch": int(r.epochs_done), "value": float("nan")})
    frame = pd.DataFrame(records, columns=FLAG_COLUMNS)
    frame["layer"] = frame["layer"].astype(object).where(frame["layer"].notna(), None)  # None: no layer
    return frame.sort_values(["trial", "epoch", "flag"], kind="stable").reset_index(drop=True)


def flags_frame(engine: Engine, sweep: str, thresholds: FlagThresholds = FlagThresholds()) -> pd.DataFrame:
    """Pathology flags of every trial of a sweep: trial, label, flag, layer, epoch, value."""
    return compute_flags(trials_frame(engine, sweep), epoch_metrics_frame(engine, sweep),
                         layer_stats_frame(engine, sweep), thresholds)


def describe_flags(flags: pd.DataFrame, trials: int | None = None) -> str:
    """Each flag (and layer) once, at its earliest epoch: 'saturated fc2@1, chance@2'.

    With `trials` (how many trials the flags are of, e.g. the seeds of one
    configuration), each also says how many of them showed it:
    'chance@1 (2/2), dead fc1@1 (1/2)'.
    """
    parts = []
    earliest_first = flags.sort_values(["epoch", "flag"], kind="stable")
    for (flag, layer), group in earliest_first.groupby(["flag", "layer"], sort=False, dropna=False):
        epoch = group["epoch"].iloc[0]
        text = f"{flag} {layer}@{epoch}" if isinstance(layer, str) else f"{flag}@{epoch}"
        if trials is not None:
            text += f" ({group['trial'].nunique()}/{trials})"
        parts.append(text)
    return ", ".join(parts)
