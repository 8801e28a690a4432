"""References in pandas: each figure the database computes in SQL for big sweeps (the one production path),
defined again here from every row, the plain way, for the tests to hold the SQL result equal to."""
import pandas as pd

from sweep.db.flags import FLAG_COLUMNS
from sweep.measures import FlagThresholds, passes, threshold_of
from sweep.analysis.report import THRESHOLD
from sweep.analysis.results import results_from_figures


def trial_results(trials: pd.DataFrame, epochs: pd.DataFrame, sweep_epochs: int,
                  threshold: float | None = None) -> pd.DataFrame:
    """Each trial's figures at the sweep's current epoch count, from its finite epochs only.

    `trials` and `epochs` are db's trials_frame and epoch_metrics_frame of one
    sweep. Returned: the trials with final_test_acc, final_test_loss,
    final_train_loss, best_test_acc and best_epoch recomputed from the epoch
    rows up to `sweep_epochs` (for a diverged trial, whose epochs_done is the
    epoch with the non-finite loss, up to the epoch before); `epochs`, the
    last epoch they come from; and with `threshold`, images_to_threshold:
    training images seen when test accuracy first reached it (NaN: never);
    then what results_from_figures adds. The definition in pandas, which the
    database's figures (db.queries.trial_figures, the one production path) are held equal to.

    Example: trial_results(trials_frame(engine, "rec"), epoch_metrics_frame(engine, "rec"), 3, threshold=0.7)
    """
    diverged = trials["status"].eq("diverged")
    last_epoch = trials["epochs_done"].sub(1).clip(upper=sweep_epochs).where(diverged, sweep_epochs)
    limit = epochs["trial_id"].map(dict(zip(trials["trial_id"], last_epoch)))
    rows = epochs[epochs["epoch"] <= limit].sort_values(["trial_id", "epoch"])
    last = rows.groupby("trial_id").tail(1).set_index("trial_id")
    scored = rows.dropna(subset=["test_acc"])
    best = scored.loc[scored.groupby("trial_id")["test_acc"].idxmax()].set_index("trial_id")  # earliest best
    ids = trials["trial_id"]
    out = trials.assign(
        final_test_acc=ids.map(last["test_acc"]).astype(float),
        final_test_loss=ids.map(last["test_loss"]).astype(float),
        final_train_loss=ids.map(last["train_loss"]).astype(float),
        best_test_acc=ids.map(best["test_acc"]).astype(float),
        best_epoch=ids.map(best["epoch"]).astype(float),
        epochs=ids.map(last["epoch"]).astype(float),
    )
    # the validation split's figures: at the last epoch, and at the earliest epoch with the best val_acc
    scored_val = rows.dropna(subset=["val_acc"])
    best_val = scored_val.loc[scored_val.groupby("trial_id")["val_acc"].idxmax()].set_index("trial_id")
    out = out.assign(
        final_val_acc=ids.map(last["val_acc"]).astype(float),
        final_val_loss=ids.map(last["val_loss"]).astype(float),
        best_val_acc=ids.map(best_val["val_acc"]).astype(float),
        best_val_epoch=ids.map(best_val["epoch"]).astype(float),
        test_acc_at_best_val=ids.map(best_val["test_acc"]).astype(float),
    )
    if threshold is not None:
        first_hit = rows[rows["test_acc"] >= threshold].groupby("trial_id")["images_seen"].min()
        out[THRESHOLD] = ids.map(first_hit).astype(float)
    return results_from_figures(out, sweep_epochs)


def _first(rows: pd.DataFrame, flag: str, value_col: str) -> list[dict]:
    """The earliest (epoch, layer order) row per trial, as flag records."""
    if rows.empty:
        return []
    rows = rows.sort_values(["trial_id", "epoch", "layer_stat_id"]).groupby("trial_id").head(1)
    return [{"trial": r.trial, "label": r.label, "flag": flag, "layer": r.layer, "epoch": int(r.epoch),
             "value": float(getattr(r, value_col))} for r in rows.itertuples()]


def _read_upto(trials: pd.DataFrame, sweep_epochs: int | None) -> dict[int, float]:
    """trial_id -> the last epoch its flags read: db.queries.last_epoch_read's rule, on a pandas frame."""
    cap = float("inf") if sweep_epochs is None else sweep_epochs
    return {r.trial_id: (r.epochs_done - 1 if r.status == "diverged" and r.epochs_done - 1 < cap else cap)
            for r in trials.itertuples()}


def compute_flags(trials: pd.DataFrame, epochs: pd.DataFrame, stats: pd.DataFrame,
                  thresholds: FlagThresholds = FlagThresholds(), sweep_epochs: int | None = None) -> pd.DataFrame:
    """Flags from the three frames of one sweep at its `sweep_epochs` (sweep/db/flags.py says what each
    means), the plain way in pandas: the reference the database's flags_frame (SQL, the one production path)
    is held equal to."""
    t = thresholds
    records: list[dict] = []
    upto = _read_upto(trials, sweep_epochs)
    if not stats.empty:
        stats = stats[stats["epoch"] <= stats["trial_id"].map(upto)]
    if not epochs.empty:
        epochs = epochs[epochs["epoch"] <= epochs["trial_id"].map(upto)]
    if not stats.empty:
        # The last snapshot of each epoch stands for that epoch.
        last = stats[stats["step"] == stats.groupby(["trial_id", "epoch"])["step"].transform("max")]
        acts = last[last["kind"] == "activation"]
        for flag, column in (("saturated", "sat_frac"), ("dead", "dead_frac")):
            records += _first(acts[passes(flag, acts[column], threshold_of(flag, t))], flag, column)
        grads = last[last["kind"] == "gradient"].sort_values("layer_stat_id")
        ends = grads.groupby(["trial_id", "epoch"]).agg(
            trial=("trial", "first"), label=("label", "first"), first_layer=("layer", "first"),
            first_std=("std", "first"), last_std=("std", "last")).reset_index()
        ends["ratio"] = ends["first_std"] / ends["last_std"]
        for flag in ("vanishing", "exploding"):
            hit = passes(flag, ends["ratio"], threshold_of(flag, t))
            rows = ends[hit].sort_values(["trial_id", "epoch"]).groupby("trial_id").head(1)
            records += [{"trial": r.trial, "label": r.label, "flag": flag, "layer": r.first_layer,
                         "epoch": int(r.epoch), "value": float(r.ratio)} for r in rows.itertuples()]
    if not epochs.empty and "train_loss" in epochs:
        before = epochs[epochs["epoch"] == 0].set_index("trial_id")["test_loss"]
        ratio = epochs["train_loss"] / epochs["trial_id"].map(before)
        high = epochs[(epochs["epoch"] >= 1) & passes("exploding", ratio, t.exploding)].assign(ratio=ratio)
        for r in high.sort_values(["trial_id", "epoch"]).groupby("trial_id").head(1).itertuples():
            records.append({"trial": r.trial, "label": r.label, "flag": "exploding", "layer": "loss",
                            "epoch": int(r.epoch), "value": float(r.ratio)})
    if not epochs.empty:
        chance = 1.0 / t.classes
        for trial_id, group in epochs[epochs["epoch"] >= 1].groupby("trial_id"):
            group = group.sort_values("epoch")
            near = passes("chance", (group["test_acc"] - chance).abs(), t.chance_margin)
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
