"""The ranked report: configurations (seeds aggregated) ordered by a metric.

Like is compared with like. Every figure of a trial is read (db.queries.trial_figures)
from its epoch rows at the sweep's current `epochs` (a trial trained further
is read at that epoch), from finite epochs only (a diverged trial stops at the
epoch before its loss became NaN or infinite). A trial with fewer epochs is
unfinished (whatever its status, unless it diverged or a stop rule stopped
it): listed, never aggregated. A stopped trial is read at the epoch it
stopped; a configuration none of whose seeds finished shows its stopped seeds
there, after every configuration that finished. A seed that never reached a
threshold is a miss, counted in `reached` and never averaged away;
configurations none of whose seeds reached it rank by how close they came.

The tables are data: numbers are numbers, a range over seeds is two columns
(`epochs_min`, `epochs_max`), `reached` a count out of `n`, each optimizer
hyper-parameter a column of its own; that is what csv and json write.
`human_view` turns a table into the compact text the terminal and markdown
show (`1-2`, `1/2`, `0.9`, `true`, `-` for a hyper-parameter an optimizer does
not set).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections import Counter

import numpy as np
import pandas as pd

from sweep.db.flags import FlagThresholds, describe_records, flag_records
from sweep.db.queries import THRESHOLD_COLUMN
from sweep.analysis.factors import ReportError, check_factors, factor_column, filter_trials, factor_key, hyper_parameters, is_missing, shown_value
from sweep.analysis.intervals import ci95
from sweep.measures import RANKING
from sweep.analysis.results import sweep_results
from sweep.spec.spec import METRICS
from sweep.status import Status


THRESHOLD = THRESHOLD_COLUMN  # images_to_threshold


# Ranking metrics: name -> True where larger is better; the threshold metric needs --threshold.
RANK_METRICS = {**METRICS, THRESHOLD: False}


# The longest error text a report shows: the last line of a traceback, or a diverged or stopped trial's reason.
ERROR_CHARS = 100


def short_error(text) -> str | None:
    """A trial's error in one line: its last non-blank line (a traceback's exception, a diverged or stopped
    trial's reason), whitespace collapsed, at most ERROR_CHARS characters; None without one.

    Example: short_error("Traceback ...\\n  ...\\nRuntimeError: boom\\n") -> "RuntimeError: boom"
    """
    if not isinstance(text, str) or not text.strip():
        return None
    line = " ".join(text.strip().splitlines()[-1].split())
    return line if len(line) <= ERROR_CHARS else line[:ERROR_CHARS - 1] + "…"


def _spread(values: pd.Series, metric: str) -> dict[str, float]:
    """Mean, sample std and 95% interval half-width of a metric's non-missing values."""
    values = values.dropna()
    return {
        f"{metric}_mean": values.mean() if len(values) else math.nan,
        f"{metric}_std": values.std(ddof=1) if len(values) > 1 else math.nan,
        f"{metric}_ci95": ci95(values),
    }


def _count_reached(values) -> int:
    """How many of the values (images to the threshold) are there: the seeds that reached it."""
    return int(np.count_nonzero(~np.isnan(np.asarray(values, dtype=float))))


def _mean(values) -> float:
    """The mean of the non-missing values (NaN without any), as pandas' Series.mean."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else math.nan


def _status(statuses) -> str:
    """The statuses: completed, or 1 completed, 1 unfinished: each status with its count, in order of appearance."""
    counts = dict(Counter(statuses))
    return next(iter(counts)) if len(counts) == 1 else ", ".join(f"{n} {s}" for s, n in counts.items())


def _errors(errors, trials: int) -> str:
    """Each distinct error (short_error) of a configuration's trials once, with how many of its `trials`
    had it where it has more than one: 'stopped@3 chance (2/2); RuntimeError: boom (1/2)'; '' without any."""
    counts = Counter(e for e in map(short_error, errors) if e)
    return "; ".join(f"{e} ({n}/{trials})" if trials > 1 else e for e, n in counts.items())


def _span(values) -> tuple[int | None, int | None]:
    """(lowest, highest) of integer values (best epoch, epochs) over seeds; (None, None) without any."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if not len(values):
        return None, None
    return int(values.min()), int(values.max())


def _best_first(values: pd.Series, metric: str) -> pd.DataFrame:
    """Sort keys that put the best value of `metric` first and missing values last."""
    return pd.DataFrame({"empty": values.isna(), "value": -values if RANK_METRICS[metric] else values})


def _ranked(table: pd.DataFrame, metric: str, group=None) -> pd.DataFrame:
    """Best first; with the threshold metric, by share of seeds that reached it, then by mean images.

    `group` (optional, one integer per row) goes before everything: the
    configurations whose figures are of finished seeds (0), then those of
    stopped ones (1), then those with none (2). Rows without a value of the
    metric (nothing finished, or nothing reached the threshold) come last.
    With the threshold metric, those none of whose seeds reached it are
    ordered by how close they came: their best test accuracy
    (`best_test_acc`, the mean of their seeds' best), highest first; a
    sigmoid that stalled at 79% is nearer than one stuck at chance.
    """
    keys = _best_first(table[f"{metric}_mean"].astype(float), metric)
    if metric == THRESHOLD:
        n = table["n"].to_numpy(dtype=float)
        with np.errstate(all="ignore"):
            missed = np.where(n > 0, 1 - table["reached"].to_numpy(dtype=float) / n, 1.0)
        keys.insert(1, "missed", missed)
        if "best_test_acc" in table:
            keys["closest"] = (-table["best_test_acc"].astype(float)).where(keys["empty"], 0.0)
    if group is not None:
        keys.insert(0, "group", list(group))
    order = keys.sort_values(list(keys.columns), kind="stable").index
    table = table.loc[order].reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table


def rank_configurations(results: pd.DataFrame, metric: str, flags: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per configuration (trials sharing a label differ only by seed).

    `results` comes from sweep_results. Only finished trials are aggregated:
    the metric gets its mean, std and 95% interval half-width (n >= 2) over
    them, the other figures their mean, best_epoch and epochs their range
    (best_epoch_min, best_epoch_max; epochs_min, epochs_max); with a
    threshold, `reached` says how many of the n seeds reached it. A
    configuration none of whose trials finished but some were stopped shows
    those, at the epoch they stopped, after every configuration that
    finished. `status` counts every trial ('1 completed, 1 unfinished'),
    `flags` each flag once with how many seeds showed it ('chance@1 (2/2)'),
    `error` each error or stop reason once ('stopped@3 chance (2/2)'); then
    `gain` (as written), `gain_value` and a column per optimizer
    hyper-parameter. Sorted best first (see _ranked); configurations without
    a value come last.

    Example: rank_configurations(sweep_results(engine, "study", 3), "final_test_acc", flags)
    """
    if metric not in RANK_METRICS:
        raise KeyError(metric)
    hyper = hyper_parameters(results)
    rows, groups = [], []
    by_trial = _records_by_trial(flags)
    # Plain arrays per column and positions per configuration: pandas per group was slow on big sweeps
    # (docs/benchmarks.md, "Big sweeps (2-core CPU, 24 GiB)").
    column = {c: results[c].to_numpy() for c in results.columns}
    finished = column["finished"].astype(bool) if len(results) else np.zeros(0, bool)
    stopped = column["stopped_early"].astype(bool) if len(results) else np.zeros(0, bool)
    figures = [c for c in ("final_test_acc", "best_test_acc", "final_train_loss", "final_test_loss", THRESHOLD,
                           "train_seconds") if c in results and c != metric]
    positions = results.groupby("label", sort=False).indices
    for label in pd.unique(results["label"]):  # in order of first appearance
        where = np.sort(positions[label])
        done, first = where[finished[where]], where[0]
        group = 0
        if not len(done):  # no seed finished: its stopped seeds, at the epochs they stopped, after the others
            done = where[stopped[where]]
            group = 1 if len(done) else 2
        groups.append(group)
        row = {"config": label, "activation": column["activation"][first], "init": column["init"][first],
               "optimizer": column["optimizer"][first], "lr": column["lr"][first], "n": len(done),
               **_spread(pd.Series(column[metric][done], dtype=float), metric)}
        if THRESHOLD in results:
            row["reached"] = _count_reached(column[THRESHOLD][done])
        for name in figures:
            row[name] = _mean(column[name][done])
        row["best_epoch_min"], row["best_epoch_max"] = _span(column["best_epoch"][done])
        row["epochs_min"], row["epochs_max"] = _span(column["epochs"][where])
        row["status"] = _status(column["status"][where])
        if flags is not None:
            mine = [r for name in column["name"][where] for r in by_trial.get(name, [])]
            row["flags"] = describe_records(mine, len(where) if len(where) > 1 else None)
        row["error"] = _errors(column["error"][where], len(where)) if "error" in column else ""
        row["gain"], row["gain_value"] = column["gain"][first], column["gain_value"][first]
        row.update({h: column[h][first] for h in hyper})
        rows.append(row)
    table = pd.DataFrame(rows)
    if rows:  # the gain as written: 1 stays 1 beside 2.5 or auto
        table["gain"] = pd.Series([r["gain"] for r in rows], index=table.index, dtype=object)
    table = table if table.empty else _ranked(table, metric, groups)
    table.attrs["hyper"] = hyper
    return table


def factor_effects(results: pd.DataFrame, metric: str, factors: list[str]) -> pd.DataFrame:
    """The marginal effect of factors over finished trials: one row per combination of their values.

    Per combination (all other factors and seeds pooled): the metric's mean
    over every finished trial with those values, std, 95% interval and n,
    best first; with the threshold metric also `reached` (how many of the n
    reached it) and `best_test_acc` (the mean of the trials' best accuracy:
    how close the values where no trial reached it came), ranked as
    rank_configurations does. With a threshold (an images_to_threshold column in `results`, from
    `--threshold`) and another metric: `images_to_threshold_mean` (over the seeds that reached it) and
    `reached` as well. A hyper-parameter a trial's optimizer does not
    set groups as None. factor_matrix shows two factors as a matrix.

    Example: factor_effects(results, "final_test_acc", ["optimizer", "momentum", "seed"])
    """
    done = results[results["finished"].astype(bool)]
    keys = list(zip(*(factor_column(done, f) for f in factors))) if len(done) else []
    members: dict[tuple, list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    values = done[metric].to_numpy(dtype=float)
    best = done["best_test_acc"].to_numpy(dtype=float) if "best_test_acc" in done else None
    images = done[THRESHOLD].to_numpy(dtype=float) if THRESHOLD in done and metric != THRESHOLD else None
    rows = []
    for at in members.values():
        row = {f: done[f].iat[at[0]] for f in factors}
        row.update(_spread(pd.Series(values[at]), metric))
        row["n"] = len(at)
        if metric == THRESHOLD:
            row["reached"] = _count_reached(values[at])
            row["best_test_acc"] = _mean(best[at])
        elif images is not None:
            row[f"{THRESHOLD}_mean"] = _mean(images[at])
            row["reached"] = _count_reached(images[at])
        rows.append(row)
    columns = [*factors, f"{metric}_mean", f"{metric}_std", f"{metric}_ci95", "n"]
    if metric == THRESHOLD:
        columns += ["reached", "best_test_acc"]
    elif images is not None:
        columns += [f"{THRESHOLD}_mean", "reached"]
    table = pd.DataFrame(rows, columns=columns)
    if "gain" in factors:  # as written: 1 stays 1 beside 2.5 or auto
        table["gain"] = pd.Series([r["gain"] for r in rows], index=table.index, dtype=object)
    table = table if table.empty else _ranked(table, metric).drop(columns="rank")
    table.attrs["factors"] = list(factors)
    return table


def factor_matrix(results: pd.DataFrame, metric: str, factors: tuple[str, str] | list[str],
                  text: bool = False) -> pd.DataFrame:
    """Two factors as a matrix: the first factor's values down, the second's across (each in the order
    they first appear among the finished trials, shown as the report shows them: '0.9', 'auto', '-'), in
    each cell the metric's mean over the finished trials with that pair (NaN: none), as factor_effects
    computes it: the numbers of `sweep report --by F1,F2` and of `sweep plot`'s heat map.

    `text`: the terminal's cells, where the threshold metric reads 'mean (reached/n)', e.g. '2048 (1/2)', and
    another metric with a threshold 'mean; images (reached/n)', e.g. '0.8123; 2048 (1/2)'.
    Example: factor_matrix(results, "final_test_acc", ("activation", "momentum"))
    """
    rows_f, cols_f = factors
    long = factor_effects(results, metric, list(factors))
    done = results[results["finished"].astype(bool)]
    down = list(dict.fromkeys(shown_value(v) for v in factor_column(done, rows_f)))
    across = list(dict.fromkeys(shown_value(v) for v in factor_column(done, cols_f)))
    cells = {}
    for r in long.to_dict(orient="records"):
        mean = r[f"{metric}_mean"]
        if text and metric == THRESHOLD:
            shown = "-" if is_missing(mean) else f"{mean:.0f}"
            mean = f"{shown} ({r['reached']}/{r['n']})"
        elif text and "reached" in r:
            images = r[f"{THRESHOLD}_mean"]
            mean = (f"{'-' if is_missing(mean) else format(mean, '.4f')}; "
                    f"{'-' if is_missing(images) else format(images, '.0f')} ({r['reached']}/{r['n']})")
        cells[shown_value(factor_key(r[rows_f])), shown_value(factor_key(r[cols_f]))] = mean
    matrix = pd.DataFrame([[cells.get((i, j), math.nan) for j in across] for i in down],
                          index=pd.Index(down, name=rows_f), columns=pd.Index(across, name=cols_f),
                          dtype=object if text and (metric == THRESHOLD or "reached" in long) else float)
    return matrix


def stopping_savings(results: pd.DataFrame, sweep_epochs: int, images_per_epoch: int) -> tuple[int, int]:
    """(training images stopping saved, training images of the whole grid): the stopped trials' missing
    epochs (up to the sweep's) times the images of an epoch, against every trial of `results` trained for
    the sweep's epochs.

    Example: stopping_savings(results, 10, 60000) -> (2_400_000, 9_600_000)
    """
    stopped = results[results["stopped_early"].astype(bool) & results["status"].eq(Status.STOPPED)]
    trained = stopped["epochs_trained"] if "epochs_trained" in stopped else stopped["epochs"]
    missing = (sweep_epochs - trained.astype(float).fillna(0)).clip(lower=0).sum()
    return int(missing * images_per_epoch), int(len(results) * sweep_epochs * images_per_epoch)


def _records_by_trial(flags: pd.DataFrame | None) -> dict[str, list[tuple]]:
    """A flags frame's rows (flag_records) per trial name."""
    by_trial: dict[str, list[tuple]] = {}
    for record in flag_records(flags) if flags is not None else []:
        by_trial.setdefault(record[0], []).append(record)
    return by_trial


def trial_table(results: pd.DataFrame, metric: str, flags: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per trial (seeds not aggregated): finished trials best first, then stopped ones (at the
    epoch they stopped), then the others; with its configuration (`config`), factors, flags, error (one
    line: short_error), and as rank_configurations the gain as written, gain_value and a column per
    optimizer hyper-parameter.

    Example: trial_table(sweep_results(engine, "study", 3), "final_test_acc", flags)
    """
    hyper = hyper_parameters(results)
    columns = ["name", "label", "activation", "init", "optimizer", "lr", "seed", metric, "final_test_acc",
               "best_test_acc", "best_epoch", "final_test_loss", THRESHOLD, "epochs", "status", "kernels"]
    table = results[[c for c in dict.fromkeys(columns) if c in results]]
    if flags is not None:
        by_trial = _records_by_trial(flags)
        table = table.assign(flags=[describe_records(by_trial.get(t, [])) for t in table["name"]])
    errors = results["error"] if "error" in results else pd.Series(None, index=results.index, dtype=object)
    table = table.assign(error=[short_error(e) or "" for e in errors], gain=results["gain"].astype(object),
                         gain_value=results["gain_value"], **{h: results[h] for h in hyper})
    keys = _best_first(table[metric].astype(float), metric)
    keys.insert(0, "group", np.where(results["finished"].astype(bool), 0,
                                     np.where(results["stopped_early"].astype(bool), 1, 2)))
    table = table.loc[keys.sort_values(list(keys.columns), kind="stable").index]
    table = table.rename(columns={"name": "trial", "label": "config"}).reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    table.attrs["hyper"] = hyper
    return table


# --------------------------------------------------------------------------- the report as a library entry


class NothingSelected(ReportError):
    """A --where that leaves no trial: a notice (exit 1), not a mistake in the options."""


@dataclass(frozen=True)
class ReportOptions:
    """What a report is asked for: `sweep report`'s options, as values.

    `by`: factors for a marginal-effects table (two with `matrix`: the matrix of text cells the terminal and
    markdown show); `where`: (key, value) filters (factors.filter_trials); `threshold`: a test accuracy,
    adding images_to_threshold and `reached`; `trials`: one row per trial; `top`: the first N rows;
    `flags`: the pathology flags' thresholds; `at_epoch`: every trial read at that epoch, those that reached
    it (sweep_results), the like-with-like view at any rung.
    """

    metric: str
    epochs: int  # the sweep's: every trial is read at this epoch
    by: tuple[str, ...] = ()
    where: tuple[tuple[str, str], ...] = ()
    threshold: float | None = None
    trials: bool = False
    top: int | None = None
    flags: FlagThresholds = field(default_factory=FlagThresholds)
    matrix: bool = False
    at_epoch: int | None = None
    tune: tuple[str, ...] = ()  # nuisance hyper-parameters: each row at its best setting of these (sweep.analysis.tuning)
    ranges: dict | None = None  # the tuned factors' ranges (sweep.analysis.tuning.spec_ranges), for the edge flags
    findings: bool = False  # what the study found (sweep.analysis.findings): each factor's effect, fixed and tuned


@dataclass(frozen=True)
class Report:
    """A built report: its title (what it ranks, at which epoch, what it left out) and its typed table."""

    sweep: str
    title: str
    table: pd.DataFrame
    options: ReportOptions


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _stopping_words(engine, sweep: str, epochs: int, results: pd.DataFrame, shown: pd.DataFrame,
                    pooled: bool) -> str:
    """The title's words on stopped trials: how many of those shown stopped early, and how many training
    images stopping saved against the whole grid (every trial of the sweep at its epochs), from the epoch
    rows the database holds; '' where none stopped."""
    from sweep.db.queries import images_per_epoch

    count = int((shown["stopped_early"].astype(bool) & shown["status"].eq(Status.STOPPED)).sum())
    words = f"; {plural(count, 'trial')} stopped early" if count else ""
    left_out = int(shown["stopped_early"].astype(bool).sum())  # with the finished seeds of their configurations
    if count and not pooled:
        words += f", {plural(left_out, 'trial')} of their configurations not pooled" if left_out > count else \
            " (not pooled)"
    per_epoch = images_per_epoch(engine, sweep) if results["stopped_early"].any() else None
    if per_epoch:
        saved, grid = stopping_savings(results, epochs, per_epoch)
        words += f"; stopping saved {saved:,} of the grid's {grid:,} training images ({saved / grid:.1%})"
    return words


def build_report(engine, sweep: str, options: ReportOptions) -> Report:
    """The report `sweep report` prints, as data: configurations ranked (seeds aggregated), one row per trial
    (`trials`), or the marginal effect of `by`, over the trials `where` keeps, with its title. ReportError for
    options the sweep cannot answer; NothingSelected where `where` leaves no trial.

    Example: build_report(engine, "fashion-activations", ReportOptions("final_test_acc", 3, by=("activation",)))
    """
    metric, by = options.metric, list(options.by)
    if metric == THRESHOLD and options.threshold is None:
        raise ReportError(f"--metric {THRESHOLD} needs --threshold ACC (e.g. 0.7)")
    if options.at_epoch is not None and not 1 <= options.at_epoch <= options.epochs:
        raise ReportError(f"--epoch {options.at_epoch}: the sweep's epochs are 1..{options.epochs}")
    everything = sweep_results(engine, sweep, options.epochs, options.threshold, options.at_epoch)
    check_factors("--by", by, everything)
    results = filter_trials(everything, list(options.where))
    if results.empty:
        asked = " ".join(f"{k}={v}" for k, v in options.where)
        raise NothingSelected(f"sweep {sweep}: no trial has all of --where {asked} (each is some trial's value, "
                              "not together)")
    tune = [f for f in options.tune if f not in by]
    if options.findings:
        table, title = _findings(engine, sweep, options, results, everything, tune)
    elif tune and not options.trials:
        from sweep.analysis.tuning import reported, selects_on_test, tuned_view

        check_factors("--tune", tune, everything)
        table = tuned_view(results, metric, tune, RANK_METRICS[metric], options.ranges, by or None)
        if options.matrix:
            table = as_matrix(table, by, f"{reported(metric)}_mean")
        what = f"mean {reported(metric)} by {' x '.join(by)}" if by else \
            f"{plural(len(table), 'configuration')} ranked by mean {metric} over seeds"
        title = (f"{what}, each at its best {', '.join(tune)} chosen on {metric}"
                 + ("; selection used the test set (no validation split)" if selects_on_test(metric) else ""))
    elif by:
        table = factor_matrix(results, metric, by, text=True).reset_index() if options.matrix else \
            factor_effects(results, metric, by)
        title = f"mean {metric} by {' x '.join(by)}"
    else:
        from sweep.db.flags import flags_frame

        flags = flags_frame(engine, sweep, options.flags)
        if options.trials:
            table = trial_table(results, metric, flags)
            title = f"{plural(len(table), 'trial')} ranked by {metric}"
        else:
            table = rank_configurations(results, metric, flags)
            title = f"{plural(len(table), 'configuration')} ranked by mean {metric} over seeds"
    if options.at_epoch is None:
        title += f", at {plural(options.epochs, 'epoch')}"
    else:
        reached, total = everything.attrs["reached"]
        title += f", every trial at epoch {options.at_epoch}: {reached} of the sweep's {total} trials reached it"
    if not (by or tune or options.findings) and metric in METRICS and \
            not RANKING[metric].column.startswith(("val_", "best_val")):
        title += "; chosen on the test set (no validation split)"
    if options.threshold is not None:
        title += f"; threshold: test accuracy {options.threshold:g}"
    unfinished = int((~(results["finished"] | results["stopped_early"])).sum())
    if unfinished and not options.trials:
        title += f"; {plural(unfinished, 'unfinished trial')} not aggregated"
    title += _stopping_words(engine, sweep, options.epochs, everything, results,
                             pooled=not (by or options.findings))
    if options.top:  # findings: the first N findings, with all their rows
        table = table[table["finding"].le(options.top)] if options.findings else table.head(options.top)
    return Report(sweep, title, table, options)


def _findings(engine, sweep: str, options: ReportOptions, results: pd.DataFrame, everything: pd.DataFrame,
              tune: list[str]) -> tuple[pd.DataFrame, str]:
    """(the findings' typed rows, their title): sweep.analysis.findings.study_findings on the trials `where` keeps, with
    the sweep's flags and its stored spec (each group's fixed setting)."""
    from sweep.db.flags import flags_frame
    from sweep.db.queries import sweep_spec
    from sweep.analysis.findings import study_findings

    if tune:
        check_factors("--tune", tune, everything)
    found = study_findings(results, options.metric, tune, options.ranges, sweep_spec(engine, sweep),
                           flags_frame(engine, sweep, options.flags))
    return found.table(), found.title


def as_matrix(table: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """A two-factor table as the terminal's matrix: the first factor down, the second across, `value` in
    each cell (NaN where the pair has none), each factor's values in the order they first appear."""
    rows_f, cols_f = by
    down = list(dict.fromkeys(shown_value(factor_key(v)) for v in table[rows_f]))
    across = list(dict.fromkeys(shown_value(factor_key(v)) for v in table[cols_f]))
    cells = {(shown_value(factor_key(r[rows_f])), shown_value(factor_key(r[cols_f]))): r[value]
             for r in table.to_dict(orient="records")}
    matrix = pd.DataFrame([[cells.get((i, j), math.nan) for j in across] for i in down],
                          index=pd.Index(down, name=rows_f), columns=pd.Index(across, name=cols_f), dtype=float)
    return matrix.reset_index()


def configuration_ranking(results: pd.DataFrame, metric: str) -> list[str]:
    """The configurations (labels), best first as the report ranks them (rank_configurations: those whose
    seeds all finished, then those some of whose seeds stopped, each read at the epoch all its seeds
    reached): the order the pictures name them in (a big sweep's best and worst).

    Example: configuration_ranking(sweep_results(engine, "study", 3), "final_test_acc")[:2]
    """
    return list(rank_configurations(results, metric)["config"]) if len(results) else []
