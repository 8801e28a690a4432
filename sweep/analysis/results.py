"""The sweep's trials with their figures, read like with like: what every report, picture and page reads.

Every figure of a trial is computed by the database (db.queries.trial_figures) from its epoch rows at the
epoch it is read at; tests/reference.py holds the same figures computed in pandas from every epoch row.
"""
from __future__ import annotations

import json

import pandas as pd

from sweep.db.queries import THRESHOLD_COLUMN
from sweep.status import Status, finished, stopped_early


def _gain_as_written(config_json: str, gain: float):
    """The gain as the spec wrote it: 'auto', or the number (1, not 1.0, where it is whole)."""
    label = json.loads(config_json).get("gain_label", f"{gain:g}")
    try:
        number = float(label)
    except ValueError:
        return label
    return int(number) if number.is_integer() else number


def results_from_figures(figures: pd.DataFrame, sweep_epochs: int) -> pd.DataFrame:
    """Trials with their figures at `sweep_epochs` (db.queries.trial_figures) made
    report rows: `finished` (sweep.status.finished: diverged, or read at `sweep_epochs`), the trials that are
    aggregated; `stopped_early`, the trials a stop rule ended before (read at the epoch they stopped); the
    others are unfinished, whatever their status. Status unfinished for a completed trial with fewer epochs
    (it completed a smaller `epochs`); `gain` as the spec wrote it (1, 'auto', 2.5) and `gain_value` the
    number it used; one column per optimizer hyper-parameter the sweep sets (hyper_parameters; None where a trial's optimizer does not
    set it).

    Example: results_from_figures(trial_figures(engine, "rec", 3), 3)
    """
    parsed = {p: json.loads(p or "{}") for p in pd.unique(figures["optimizer_params_json"])}
    params = [parsed[p] for p in figures["optimizer_params_json"]]
    names = sorted({k for p in parsed.values() for k in p})
    out = figures.assign(
        gain=pd.Series([_gain_as_written(c, g) for c, g in zip(figures["config_json"], figures["gain"])],
                       index=figures.index, dtype=object),
        gain_value=figures["gain"].astype(float),
        **{name: pd.Series([p.get(name) for p in params], index=figures.index, dtype=object) for name in names},
    )
    out["finished"] = finished(out["status"], out["epochs"], sweep_epochs)
    out["stopped_early"] = stopped_early(out["status"], out["epochs"], sweep_epochs)
    out["status"] = out["status"].mask(out["status"].eq(Status.COMPLETED) & ~out["finished"], Status.UNFINISHED.value)
    return out


# A trial's figures at the epoch it is read at (db.queries.trial_figures).
FIGURES = ("final_test_acc", "final_test_loss", "final_train_loss", "best_test_acc", "best_epoch", "epochs")


def sweep_results(engine, sweep: str, epochs: int, threshold: float | None = None,
                  at_epoch: int | None = None) -> pd.DataFrame:
    """The sweep's trials with their figures, computed by the database (tests/reference.py holds the same
    figures computed in pandas from every epoch row): what every report and picture reads.

    Like with like: each trial is read at the sweep's `epochs`, a stopped one at the epoch it stopped. A
    configuration is finished when all its seeds are: where some of its seeds stopped, every seed of it
    that is not unfinished is read at the epoch all of them reached and counts as stopped (its status says
    '1 completed, 1 stopped'), so that no mean is of survivors alone, nor over values of different epochs.
    With `at_epoch` E: only the trials that reached E, each read at E (finished or not, never past it),
    all of them `finished`; attrs["reached"] = (trials that reached E, trials of the sweep).

    Example: sweep_results(engine, "fashion-activations", 5, at_epoch=2)
    """
    from sweep.db.queries import trial_figures

    if at_epoch is not None:
        every = results_from_figures(trial_figures(engine, sweep, at_epoch, threshold), at_epoch)
        reached = every[every["epochs"].eq(at_epoch)].copy()
        reached["finished"], reached["stopped_early"] = True, False
        reached.attrs["reached"] = (len(reached), len(every))
        return reached
    results = results_from_figures(trial_figures(engine, sweep, epochs, threshold), epochs)
    return _at_common_epochs(results, lambda e: trial_figures(engine, sweep, e, threshold))


def _at_common_epochs(results: pd.DataFrame, figures_at) -> pd.DataFrame:
    """`results` with the configurations some of whose seeds stopped read at the epoch all their seeds that
    are not unfinished reached (`figures_at(E)`: every trial's figures at E), those seeds all `stopped`."""
    stopped_labels = pd.unique(results.loc[results["stopped_early"].astype(bool), "label"])
    if not len(stopped_labels):
        return results
    mine = results["label"].isin(stopped_labels) & (results["finished"] | results["stopped_early"]).astype(bool)
    common = results[mine].groupby("label")["epochs"].min().dropna()
    out = results.assign(epochs_trained=results["epochs"])  # what stopping saved is counted from these
    columns = [c for c in (*FIGURES, THRESHOLD_COLUMN) if c in out]
    for epoch in sorted(set(common.astype(int))):
        rows = mine & results["label"].isin(common.index[common.eq(epoch)])
        at = figures_at(epoch).set_index("trial_id")
        for column in columns:
            out.loc[rows, column] = out.loc[rows, "trial_id"].map(at[column]).astype(float).to_numpy()
    out.loc[mine, "finished"] = False
    out.loc[mine, "stopped_early"] = True
    return out
