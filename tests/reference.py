"""References in pandas: each figure the database computes in SQL for big sweeps (the one production path),
defined again here from every row, the plain way, for the tests to hold the SQL result equal to."""
import pandas as pd

from sweep.report import THRESHOLD, results_from_figures


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
