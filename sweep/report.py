"""The ranked report: configurations (seeds aggregated) ordered by a metric.

Like is compared with like. `trial_results` reads every figure of a trial
from its epoch rows at the sweep's current `epochs` (a trial trained further
is read at that epoch), from finite epochs only (a diverged trial stops at the
epoch before its loss became NaN or infinite). A trial with fewer epochs is
unfinished (whatever its status, unless it diverged): listed, never
aggregated. A seed that never reached a threshold is a miss, counted in
`reached` and never averaged away; configurations none of whose seeds reached
it rank by how close they came.
"""
from __future__ import annotations

import difflib
import functools
import json
import math
import statistics
from collections import Counter

import numpy as np
import pandas as pd

from db.flags import describe_records, flag_records
from db.queries import THRESHOLD_COLUMN
from db.schema import TRIAL_STATUSES
from sweep.spec import METRICS

FORMATS = ("table", "markdown", "csv", "json")
THRESHOLD = THRESHOLD_COLUMN  # images_to_threshold
# Ranking metrics: name -> True where larger is better; the threshold metric needs --threshold.
RANK_METRICS = {**METRICS, THRESHOLD: False}
# Columns --where may filter on and --by may group by.
FACTORS = ("activation", "init", "gain", "optimizer", "lr", "seed", "model", "status")
# What --where status= takes: the database's statuses, and "unfinished": every trial with fewer epochs than the
# sweep's that did not diverge (pending, running, interrupted, failed, or completed when `epochs` was smaller),
# the trials the report leaves out of its figures. Such a completed trial shows as "unfinished", the others
# keep the status that says why.
STATUSES = (*TRIAL_STATUSES, "unfinished")
# Columns that hold counts (epochs, images, seeds): printed as integers.
INTEGER_COLUMNS = ("rank", "n", "seed", "epochs", "best_epoch", THRESHOLD, f"{THRESHOLD}_mean")
# Columns of the terminal view that only --wide or --columns show: the other figures of a configuration.
EXTRA_COLUMNS = (*METRICS, "best_epoch", "train_seconds", "config", "seed")

class ReportError(ValueError):
    """A report option that cannot be used; the message is one line for the user."""


def _continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function I_x(a, b) (modified Lentz;
    Numerical Recipes, betacf), which converges fast for x < (a + 1) / (a + b + 2)."""
    tiny, eps = 1e-300, 1e-16
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < eps:
            break
    return h


def _incomplete_beta(a: float, b: float, x: float, y: float) -> float:
    """The regularized incomplete beta function I_x(a, b), given x and y = 1 - x (each computed without
    cancellation by the caller)."""
    if x <= 0:
        return 0.0
    if y <= 0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y))
    if x < (a + 1) / (a + b + 2):
        return front * _continued_fraction(a, b, x) / a
    return 1 - front * _continued_fraction(b, a, y) / b


def _t_tail(t: float, df: float) -> float:
    """P(T > t) for Student's t with `df` degrees of freedom, t >= 0: I_{df/(df+t^2)}(df/2, 1/2) / 2."""
    return _incomplete_beta(df / 2, 0.5, df / (df + t * t), t * t / (df + t * t)) / 2


@functools.lru_cache(maxsize=None)
def t_quantile(p: float, df: float) -> float:
    """The `p` quantile (0.5 <= p < 1) of Student's t distribution with `df` > 0 degrees of freedom.

    Newton's method on the upper tail from the normal quantile, which lies below it for every df: the
    tail is convex for t > 0, so each step stays below the root and comes closer (no bracketing needed),
    until the steps are within rounding (1e-12 relative or better). From 10,000 degrees of freedom on,
    the Cornish-Fisher expansion, as exact as a float there.
    Example: t_quantile(0.975, 31) -> 2.0395134464
    """
    if not 0.5 <= p < 1 or not df > 0:
        raise ValueError(f"t_quantile({p}, {df}): needs 0.5 <= p < 1 and df > 0")
    if df == 1:  # Cauchy
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) * math.sqrt(2 / (4 * p * (1 - p)))
    z = statistics.NormalDist().inv_cdf(p)
    if df >= 10_000:
        # The Cornish-Fisher expansion in 1/df (Abramowitz & Stegun 26.7.5): within 1e-15 here, where the
        # incomplete beta function's lgamma terms (thousands each) would lose more than that.
        g = ((z ** 3 + z) / 4, (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96,
             (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384,
             (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / 92160)
        return z + sum(gk / df ** k for k, gk in enumerate(g, 1))
    q = 1 - p
    log_density = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    t = z
    for _ in range(500):
        density = math.exp(log_density - (df + 1) / 2 * math.log1p(t * t / df))
        step = (_t_tail(t, df) - q) / density
        if not step > 0:  # exactly, every step is upwards: this one is rounding noise at the root
            break
        t += step
        if step <= 1e-14 * t:
            break
    return t


def t95(n: int) -> float:
    """The two-sided 95% Student t critical value for the mean of n >= 2 values (n - 1 degrees of freedom):
    12.706 at n = 2, 2.040 at n = 32, towards 1.960."""
    return t_quantile(0.975, n - 1)


def ci95(values: pd.Series) -> float:
    """Half-width of the 95% confidence interval of the mean (t distribution); NaN below n = 2."""
    n = len(values)
    if n < 2:
        return math.nan
    return t95(n) * values.std(ddof=1) / math.sqrt(n)


def did_you_mean(value: str, allowed) -> str:
    """'; did you mean 'tanh'?' for the closest of `allowed`, or '' when none is close."""
    close = difflib.get_close_matches(value, [str(a) for a in allowed], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _params(params_json: str | None) -> str:
    """Optimizer hyper-parameters other than lr, as the trial name writes them: 'momentum0.9 nesterovtrue'."""
    params = json.loads(params_json or "{}")
    return " ".join(f"{k}{str(v).lower() if isinstance(v, bool) else f'{v:g}'}" for k, v in sorted(params.items()))


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
    then what results_from_figures adds. This is the definition in pandas;
    the CLI has the database compute the same figures (db.queries.trial_figures).

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
    if threshold is not None:
        first_hit = rows[rows["test_acc"] >= threshold].groupby("trial_id")["images_seen"].min()
        out[THRESHOLD] = ids.map(first_hit).astype(float)
    return results_from_figures(out, sweep_epochs)


def results_from_figures(figures: pd.DataFrame, sweep_epochs: int) -> pd.DataFrame:
    """Trials with their figures at `sweep_epochs` (trial_results' or db.queries.trial_figures') made
    report rows: `finished` (diverged, or at `sweep_epochs`), the trials that are aggregated (the others
    are unfinished, whatever their status); status "unfinished" for a completed trial with fewer epochs
    (it completed a smaller `epochs`); `gain` as the spec wrote it (1, auto, 2.5);
    `params`, the optimizer's other hyper-parameters.

    Example: results_from_figures(trial_figures(engine, "rec", 3), 3)
    """
    out = figures.assign(
        gain=[json.loads(c).get("gain_label", f"{g:g}") for c, g in zip(figures["config_json"], figures["gain"])],
        params=figures["optimizer_params_json"].map(_params),
    )
    out["finished"] = out["status"].eq("diverged") | out["epochs"].eq(sweep_epochs)
    out["status"] = out["status"].mask(out["status"].eq("completed") & ~out["finished"], "unfinished")
    return out


def _factor_key(key: str, value):
    """What --where compares: numbers as numbers, gain as written in the spec (auto or a number), names as text."""
    if key in ("lr", "seed") or (key == "gain" and value != "auto"):
        return float(value)
    return str(value)


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def filter_trials(trials: pd.DataFrame, where: list[tuple[str, str]]) -> pd.DataFrame:
    """Keep trials whose column KEY equals VALUE for every (KEY, VALUE).

    Numbers compare as numbers (lr=1e-3 keeps lr 0.001), gain as the spec
    writes it (gain=auto). A status must be one of STATUSES; status=unfinished
    keeps every trial that is not `finished` (results_from_figures), whatever
    its status: the ones the report leaves out of its figures. Any other VALUE
    must be one that some trial of the sweep has, else ReportError names the
    values there are, with a "did you mean".

    Example: filter_trials(results, [("optimizer", "adam"), ("lr", "1e-3")])
    """
    keep = pd.Series(True, index=trials.index)
    for key, value in where:
        present = list(dict.fromkeys(trials[key]))
        if key == "status":
            if value not in STATUSES:
                raise ReportError(f"--where status={value}: {value!r} is not a status; allowed: "
                                  f"{', '.join(STATUSES)}{did_you_mean(value, STATUSES)}")
            keep &= ~trials["finished"].astype(bool) if value == "unfinished" else trials["status"].eq(value)
            continue
        listed = f"{key} in this sweep: {', '.join(_shown(v) for v in present)}"
        try:
            wanted = _factor_key(key, value)
        except ValueError:
            kind = "a number or auto" if key == "gain" else "a number"
            raise ReportError(f"--where {key}={value}: {value!r} is not {kind}; {listed}") from None
        column = trials[key].map(lambda v: _factor_key(key, v))
        if not column.eq(wanted).any():
            raise ReportError(f"--where {key}={value}: no trial has {key} {value!r}; {listed}"
                              f"{did_you_mean(value, present) if isinstance(wanted, str) else ''}")
        keep &= column.eq(wanted)
    return trials[keep]


def _spread(values: pd.Series, metric: str) -> dict[str, float]:
    """Mean, sample std and 95% interval half-width of a metric's non-missing values."""
    values = values.dropna()
    return {
        f"{metric}_mean": values.mean() if len(values) else math.nan,
        f"{metric}_std": values.std(ddof=1) if len(values) > 1 else math.nan,
        f"{metric}_ci95": ci95(values),
    }


def _reached(values: pd.Series) -> str:
    """'1/2': how many of the finished trials reached the threshold."""
    return f"{values.notna().sum()}/{len(values)}"


def _missed(reached: str) -> float:
    """The share of seeds that missed the threshold, from '1/2' (1.0 when there are none)."""
    hits, total = map(int, reached.split("/"))
    return 1 - hits / total if total else 1.0


def _mean(values) -> float:
    """The mean of the non-missing values (NaN without any), as pandas' Series.mean."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else math.nan


def _status(statuses) -> str:
    """'completed', or '1 completed, 1 unfinished': each status with its count, in order of appearance."""
    counts = dict(Counter(statuses))
    return next(iter(counts)) if len(counts) == 1 else ", ".join(f"{n} {s}" for s, n in counts.items())


def _span(values: pd.Series) -> str | None:
    """'2' or '1-3': the range of integer values (best epoch, epochs) over seeds; None without any."""
    values = values.dropna()
    if values.empty:
        return None
    low, high = int(values.min()), int(values.max())
    return str(low) if low == high else f"{low}-{high}"


def _best_first(values: pd.Series, metric: str) -> pd.DataFrame:
    """Sort keys that put the best value of `metric` first and missing values last."""
    return pd.DataFrame({"empty": values.isna(), "value": -values if RANK_METRICS[metric] else values})


def _ranked(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Best first; with the threshold metric, by share of seeds that reached it, then by mean images.

    Rows without a value of the metric (nothing finished, or nothing reached
    the threshold) come last. With the threshold metric, those none of whose
    seeds reached it are ordered by how close they came: their best test
    accuracy (`best_test_acc`, the mean of their seeds' best), highest first;
    a sigmoid that stalled at 79% is nearer than one stuck at chance.
    """
    keys = _best_first(table[f"{metric}_mean"], metric)
    if metric == THRESHOLD:
        keys.insert(1, "missed", table["reached"].map(_missed))
        if "best_test_acc" in table:
            keys["closest"] = (-table["best_test_acc"].astype(float)).where(keys["empty"], 0.0)
    order = keys.sort_values(list(keys.columns), kind="stable").index
    table = table.loc[order].reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table


def rank_configurations(results: pd.DataFrame, metric: str, flags: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per configuration (trials sharing a label differ only by seed).

    `results` comes from trial_results. Only finished trials are aggregated:
    the metric gets its mean, std and 95% interval half-width (n >= 2) over
    them, the other figures their mean, best_epoch and epochs their range
    ('1-2'); with a threshold, `reached` says how many of the n seeds reached
    it. `status` counts every trial ('1 completed, 1 unfinished'), `flags`
    each flag once with how many seeds showed it ('chance@1 (2/2)'). Sorted
    best first (see _ranked); configurations without a value come last.

    Example: rank_configurations(trial_results(trials, epochs, 3), "final_test_acc", flags)
    """
    if metric not in RANK_METRICS:
        raise KeyError(metric)
    rows = []
    by_trial = _records_by_trial(flags)
    # Plain arrays per column and positions per configuration: pandas per group cost 0.5 s on 200 of them.
    column = {c: results[c].to_numpy() for c in results.columns}
    finished = column["finished"].astype(bool) if len(results) else np.zeros(0, bool)
    figures = [c for c in ("final_test_acc", "best_test_acc", "final_train_loss", "final_test_loss", THRESHOLD,
                           "train_seconds") if c in results and c != metric]
    positions = results.groupby("label", sort=False).indices
    for label in pd.unique(results["label"]):  # in order of first appearance
        where = np.sort(positions[label])
        done, first = where[finished[where]], where[0]
        row = {"config": label, "activation": column["activation"][first], "init": column["init"][first],
               "optimizer": column["optimizer"][first], "lr": column["lr"][first], "n": len(done),
               **_spread(pd.Series(column[metric][done], dtype=float), metric)}
        if THRESHOLD in results:
            row["reached"] = _reached(pd.Series(column[THRESHOLD][done], dtype=float))
        for name in figures:
            row[name] = _mean(column[name][done])
        row["best_epoch"] = _span(pd.Series(column["best_epoch"][done], dtype=float))
        row["epochs"] = _span(pd.Series(column["epochs"][where], dtype=float))
        row["status"] = _status(column["status"][where])
        if flags is not None:
            mine = [r for name in column["name"][where] for r in by_trial.get(name, [])]
            row["flags"] = describe_records(mine, len(where) if len(where) > 1 else None)
        row["gain"], row["params"] = column["gain"][first], column["params"][first]
        rows.append(row)
    table = pd.DataFrame(rows)
    return table if table.empty else _ranked(table, metric)


def _threshold_cell(images: pd.Series) -> str:
    """'2048 (1/2)': mean images to the threshold over the seeds that reached it, and how many did."""
    return f"{images.mean():.0f} ({_reached(images)})" if images.notna().any() else f"- ({_reached(images)})"


def factor_effects(results: pd.DataFrame, metric: str, factors: list[str]) -> pd.DataFrame:
    """The marginal effect of one factor, or a matrix over two, over finished trials.

    One factor: per value, the metric's mean over every finished trial with
    that value (all other factors and seeds pooled), std, 95% interval and n,
    best first; with the threshold metric also `reached` ('3/4') and
    `best_test_acc` (the mean of the trials' best accuracy: how close the
    values where no trial reached it came), ranked as rank_configurations
    does. Two factors: the mean for each pair, first
    factor down, second across; with the threshold metric each cell reads
    'mean (reached/n)', e.g. '2048 (1/2)'.

    Example: factor_effects(results, "final_test_acc", ["activation", "init"])
    """
    done = results[results["finished"]]
    if len(factors) == 1:
        factor = factors[0]
        rows = []
        for key, group in done.groupby(factor, sort=False):
            row = {factor: key, **_spread(group[metric], metric), "n": len(group)}
            if metric == THRESHOLD:
                row["reached"] = _reached(group[metric])
                row["best_test_acc"] = _mean(group["best_test_acc"])
            rows.append(row)
        columns = [factor, f"{metric}_mean", f"{metric}_std", f"{metric}_ci95", "n"]
        table = pd.DataFrame(rows, columns=columns + (["reached", "best_test_acc"] if metric == THRESHOLD else []))
        return table if table.empty else _ranked(table, metric).drop(columns="rank")
    rows_f, cols_f = factors
    if metric == THRESHOLD:
        matrix = done.pivot_table(index=rows_f, columns=cols_f, values=metric, aggfunc=_threshold_cell,
                                  sort=False, dropna=False)
    else:
        matrix = done.pivot_table(index=rows_f, columns=cols_f, values=metric, aggfunc="mean", sort=False)
    matrix.columns = [str(c) for c in matrix.columns]
    return matrix.reset_index()


def _records_by_trial(flags: pd.DataFrame | None) -> dict[str, list[tuple]]:
    """A flags frame's rows (flag_records) per trial name."""
    by_trial: dict[str, list[tuple]] = {}
    for record in flag_records(flags) if flags is not None else []:
        by_trial.setdefault(record[0], []).append(record)
    return by_trial


def trial_table(results: pd.DataFrame, metric: str, flags: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per trial (seeds not aggregated): finished trials best first, then unfinished ones, with flags.

    Example: trial_table(trial_results(trials, epochs, 3), "final_test_acc", flags)
    """
    columns = ["name", "seed", metric, "final_test_acc", "best_test_acc", "best_epoch", "final_test_loss",
               THRESHOLD, "epochs", "status"]
    table = results[[c for c in dict.fromkeys(columns) if c in results]]
    if flags is not None:
        by_trial = _records_by_trial(flags)
        table = table.assign(flags=[describe_records(by_trial.get(t, [])) for t in table["name"]])
    keys = _best_first(table[metric], metric)
    keys.insert(0, "unfinished", ~results["finished"])
    table = table.loc[keys.sort_values(list(keys.columns), kind="stable").index]
    table = table.rename(columns={"name": "trial"}).reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table


# --------------------------------------------------------------------------- rendering


def header(column: str) -> str:
    """A column's name in the terminal table: a metric's spread columns are just mean, std, ci95."""
    for metric in RANK_METRICS:
        if column.startswith(f"{metric}_") and column[len(metric) + 1:] in ("mean", "std", "ci95"):
            return column[len(metric) + 1:]
    return column


def default_columns(table: pd.DataFrame, metric: str, wide: bool = False) -> list[str]:
    """The terminal view of a configuration or trial table: the factors first, then the metric, n, status, flags.

    Left out unless `wide`: the other figures (EXTRA_COLUMNS: --wide or
    --columns shows them) and columns with nothing to say: std and ci95 when
    every configuration has one seed, gain when every gain is 1, epochs when
    every row has the same, status when everything completed, empty params
    and flags.

    Example: default_columns(rank_configurations(results, "final_test_acc"), "final_test_acc")
    """
    first = ["rank", "trial", "activation", "init", "gain", "optimizer", "lr", "params"]
    order = [c for c in first if c in table] + [c for c in table if c not in first]
    if wide or table.empty:
        return order
    usual = {"gain": "1", "status": "completed", "params": "", "flags": ""}

    def says_something(column: str) -> bool:
        values = table[column].dropna()
        if column == "epochs":
            return values.nunique() > 1
        return len(values) > 0 and values.ne(usual.get(column, "")).any()

    ranking = (metric, f"{metric}_mean")
    return [c for c in order if c in ranking or (c not in EXTRA_COLUMNS and says_something(c))]


def resolve_columns(table: pd.DataFrame, names: str) -> list[str]:
    """--columns a,b,c as column names of `table`; mean, std and ci95 stand for the metric's.

    Example: resolve_columns(table, "config,mean,n") -> ["config", "final_test_acc_mean", "n"]
    """
    by_header = {header(c): c for c in table}
    chosen = []
    for name in names.split(","):
        column = name if name in table else by_header.get(name)
        if column is None:
            allowed = list(dict.fromkeys([*table.columns, *by_header]))
            raise ReportError(f"--columns: no column {name!r} in this table; allowed: {', '.join(allowed)}"
                              f"{did_you_mean(name, allowed)}")
        chosen.append(column)
    return chosen


def _integers(table: pd.DataFrame) -> pd.DataFrame:
    """Count columns whose values are whole numbers as integers (3, not 3.0) in every format."""
    for column in INTEGER_COLUMNS:
        if column in table and pd.api.types.is_float_dtype(table[column]):
            values = table[column].dropna()
            if (values == values.round()).all():
                table = table.assign(**{column: table[column].astype("Int64")})
    return table


def _cell(column: str, value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if not isinstance(value, float):
        return str(value)
    if column == "lr":
        return f"{value:g}"
    if column == "train_seconds":
        return f"{value:.1f}"
    if column in INTEGER_COLUMNS or column.startswith(THRESHOLD):
        return f"{value:.0f}"
    return f"{value:.4f}"


# The terminal table's columns from most to least important: the first to go when the width is short
# are at the end. Others (a trial table's metric, a matrix's cells) rank with the mean.
IMPORTANCE = ("rank", "trial", "activation", "init", "gain", "optimizer", "lr", "params", "mean", "n", "reached",
              "ci95", "status", "flags", "std", THRESHOLD, "epochs")


def _importance(name: str) -> float:
    return IMPORTANCE.index(name) if name in IMPORTANCE else IMPORTANCE.index("mean")


def _fit(names: list[str], need: list[int], numeric: list[bool], width: int) -> list[tuple[int, int]]:
    """(column index, width) of the columns that fit in `width` characters, in table order.

    Columns are taken most important first (IMPORTANCE); one that does not
    fit (`need` characters) is left out, except that a text column with at
    least 12 characters of room left is cut to that room.
    """
    kept, used = {}, -2
    for i in sorted(range(len(names)), key=lambda i: (_importance(names[i]), i)):
        room = width - used - 2
        if need[i] <= room:
            kept[i] = need[i]
        elif not numeric[i] and room >= max(len(names[i]), 12):
            kept[i] = room
        else:
            continue
        used += kept[i] + 2
    return sorted(kept.items())


def format_report(table: pd.DataFrame, fmt: str, columns: list[str] | None = None,
                  width: int | None = None) -> str:
    """Render a report table as an aligned terminal table, markdown, csv or json.

    `columns` picks and orders the columns (default: all). For the terminal
    table, `width` fits it into that many characters: the least important
    columns that do not fit are left out (or a text column cut, ending in '…')
    and a last line says so.

    Example: format_report(table, "table", default_columns(table, "final_test_acc"), width=100)
    """
    full = table
    table = _integers(table[columns] if columns else table)
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        records = table.astype(object).where(table.notna(), None).to_dict(orient="records")
        return json.dumps(records, indent=2) + "\n"
    names = list(table.columns)
    cells = [[_cell(c, v) for c, v in zip(names, row)] for row in table.itertuples(index=False)]
    if fmt == "markdown":
        lines = ["| " + " | ".join(names) + " |", "|" + "|".join("---" for _ in names) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(lines) + "\n"
    shown = [header(c) for c in names]
    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in names]
    need = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(shown)]
    kept = list(enumerate(need)) if width is None else _fit(shown, need, numeric, width)

    def line(row: list[str]) -> str:
        parts = []
        for i, w in kept:
            text = row[i] if len(row[i]) <= w else row[i][:w - 1] + "…"
            parts.append(text.rjust(w) if numeric[i] else text.ljust(w))
        return "  ".join(parts).rstrip()

    lines = [line(shown), *(line(r) for r in cells)]
    hidden = len(full.columns) - len(kept)
    cut = any(w < need[i] for i, w in kept)
    notes = [f"{hidden} more column{'s' if hidden > 1 else ''}"] * bool(hidden) + ["text cut to fit"] * cut
    if notes and width is not None:
        lines.append(f"({', '.join(notes)}: --wide shows all, --columns NAME,... picks)")
    return "\n".join(lines) + "\n"
