"""The ranked report: configurations (seeds aggregated) ordered by a metric.

Like is compared with like. `trial_results` reads every figure of a trial
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

import difflib
import functools
import json
import math
import statistics
from collections import Counter

import numpy as np
import pandas as pd

from sweep.db.flags import describe_records, flag_records
from sweep.db.queries import THRESHOLD_COLUMN
from sweep.db.schema import TRIAL_STATUSES
from sweep.spec import METRICS

FORMATS = ("table", "markdown", "csv", "json")
# The formats for people: compact text (human_view); csv and json write the typed table.
HUMAN_FORMATS = ("table", "markdown")
THRESHOLD = THRESHOLD_COLUMN  # images_to_threshold
# Ranking metrics: name -> True where larger is better; the threshold metric needs --threshold.
RANK_METRICS = {**METRICS, THRESHOLD: False}
# Columns every sweep's trials have that --where may filter on and --by (and sweep plot's --heatmap) may group
# by; the optimizers' own hyper-parameters (momentum, nesterov, beta1, ...) are factors too, those a sweep's
# grid sets (sweep_factors).
FACTORS = ("activation", "init", "gain", "optimizer", "lr", "seed", "model", "status")
# What --where status= takes: the database's statuses, and "unfinished": every trial with fewer epochs than the
# sweep's that neither diverged nor was stopped by a stop rule (pending, running, interrupted, failed, or
# completed when `epochs` was smaller), the trials the report leaves out of its figures. Such a completed
# trial shows as "unfinished", the others keep the status that says why.
STATUSES = (*TRIAL_STATUSES, "unfinished")
# Columns that hold counts (epochs, images, seeds): integers in every format.
INTEGER_COLUMNS = ("rank", "n", "seed", "epochs", "best_epoch", "reached", "epochs_min", "epochs_max",
                   "best_epoch_min", "best_epoch_max", THRESHOLD, f"{THRESHOLD}_mean")
# Columns of the terminal view that only --wide or --columns show: the other figures, and the names (the
# factors beside them say the same).
EXTRA_COLUMNS = (*METRICS, "best_epoch", "train_seconds", "config", "trial", "gain_value")
# Columns that name a configuration's or trial's factors in the terminal view, before its optimizer
# hyper-parameters' columns (the table's attrs["hyper"]) and the seed.
FACTOR_VIEW_COLUMNS = ("activation", "init", "gain", "optimizer", "lr", "seed", "model")
# The longest error text a report shows: the last line of a traceback, or a diverged or stopped trial's reason.
ERROR_CHARS = 100


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



def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _shown(value) -> str:
    """A factor value as the report shows it: numbers as %g, booleans as true/false, a hyper-parameter the
    trial's optimizer does not set as '-'."""
    if _missing(value):
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        return f"{value:g}"
    return str(value)


def _gain_as_written(config_json: str, gain: float):
    """The gain as the spec wrote it: 'auto', or the number (1, not 1.0, where it is whole)."""
    label = json.loads(config_json).get("gain_label", f"{gain:g}")
    try:
        number = float(label)
    except ValueError:
        return label
    return int(number) if number.is_integer() else number


def short_error(text) -> str | None:
    """A trial's error in one line: its last non-blank line (a traceback's exception, a diverged or stopped
    trial's reason), whitespace collapsed, at most ERROR_CHARS characters; None without one.

    Example: short_error("Traceback ...\\n  ...\\nRuntimeError: boom\\n") -> "RuntimeError: boom"
    """
    if not isinstance(text, str) or not text.strip():
        return None
    line = " ".join(text.strip().splitlines()[-1].split())
    return line if len(line) <= ERROR_CHARS else line[:ERROR_CHARS - 1] + "…"


def hyper_parameters(trials: pd.DataFrame) -> list[str]:
    """The optimizer hyper-parameters other than lr that a sweep's trials set (the keys of their
    optimizer_params_json), sorted: grid factors like lr.

    Example: hyper_parameters(trials_frame(engine, "study")) -> ["momentum", "nesterov"]
    """
    if "optimizer_params_json" not in trials:
        return []
    return sorted({k for p in pd.unique(trials["optimizer_params_json"].dropna()) for k in json.loads(p)})


def sweep_factors(trials: pd.DataFrame) -> list[str]:
    """Every factor of a sweep's trials that --where, --by and sweep plot's --heatmap take: FACTORS, then the
    optimizer hyper-parameters its grid sets."""
    return [*FACTORS, *hyper_parameters(trials)]


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
    report rows: `finished` (diverged, or at `sweep_epochs`), the trials that are aggregated; `stopped`, the
    trials a stop rule ended before (read at the epoch they stopped); the others are unfinished, whatever
    their status. Status "unfinished" for a completed trial with fewer epochs (it completed a smaller
    `epochs`); `gain` as the spec wrote it (1, 'auto', 2.5) and `gain_value` the number it used; one column
    per optimizer hyper-parameter the sweep sets (hyper_parameters; None where a trial's optimizer does not
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
    out["finished"] = out["status"].eq("diverged") | out["epochs"].eq(sweep_epochs)
    out["stopped"] = out["status"].eq("stopped") & ~out["finished"]
    out["status"] = out["status"].mask(out["status"].eq("completed") & ~out["finished"], "unfinished")
    return out


def _key(value):
    """A factor value as --where compares it and --by groups it: numbers as numbers (gain 1 is 1.0),
    booleans as booleans, text as text, None where the trial's optimizer does not set it."""
    if _missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    return str(value)


def factor_column(trials: pd.DataFrame, factor: str) -> pd.Series:
    """Each trial's value of `factor` as --where compares it and --by groups it (see _key).

    Example: factor_column(results, "momentum").tolist() -> [0.9, 0.9, None, None]
    """
    return pd.Series([_key(v) for v in trials[factor]], index=trials.index, dtype=object)


def _wanted(key: str, text: str, present: list, listed: str):
    """The value --where KEY=TEXT asks for, as _key gives the trials' values (ReportError if it cannot be)."""
    if key == "gain" and text == "auto":
        return "auto"
    if key not in FACTORS and None in present and text in ("none", "-"):  # a hyper-parameter not set
        return None
    kinds = {type(v) for v in present if v is not None}
    if bool in kinds:
        if text.lower() not in ("true", "false"):
            raise ReportError(f"--where {key}={text}: {text!r} is not true or false; {listed}")
        return text.lower() == "true"
    if key in ("lr", "seed", "gain") or float in kinds:
        try:
            return float(text)
        except ValueError:
            kind = "a number or auto" if key == "gain" else "a number"
            raise ReportError(f"--where {key}={text}: {text!r} is not {kind}; {listed}") from None
    return text


def filter_trials(trials: pd.DataFrame, where: list[tuple[str, str]]) -> pd.DataFrame:
    """Keep trials whose factor KEY is one of its VALUEs, for every KEY: a KEY given more than once, or a VALUE
    listing several (seed=0,1), means any of them; different KEYs must all hold.

    KEY is one of sweep_factors(trials). Numbers compare as numbers
    (lr=1e-3 keeps lr 0.001, momentum=0.9), gain as the spec writes it
    (gain=auto), booleans as true or false (nesterov=true); momentum=none
    keeps the trials whose optimizer does not set it. A status must be one of
    STATUSES; status=unfinished keeps every trial that is neither `finished`
    nor `stopped` (results_from_figures), whatever its status: the ones the
    report leaves out of its figures. Any other VALUE must be one that some
    trial of the sweep has, else ReportError names the values there are,
    with a "did you mean". The result may be empty where no trial has every KEY's value at once.

    Example: filter_trials(results, [("optimizer", "sgd"), ("seed", "0,1")])
    """
    factors = sweep_factors(trials)
    anyof: dict[str, list[str]] = {}
    for key, value in where:
        anyof.setdefault(key, []).extend(value.split(","))
    keep = pd.Series(True, index=trials.index)
    for key, values in anyof.items():
        if key not in factors:
            raise ReportError(f"--where {key}={values[0]}: {key!r} is not a factor of this sweep; factors: "
                              f"{', '.join(factors)}{did_you_mean(key, factors)}")
        hit = pd.Series(False, index=trials.index)
        for value in values:
            hit |= _trials_with(trials, key, value)
        keep &= hit
    return trials[keep]


def _trials_with(trials: pd.DataFrame, key: str, value: str) -> pd.Series:
    """Which trials have factor `key` at `value` (filter_trials' rules); ReportError if none of the sweep has."""
    if key == "status":
        if value not in STATUSES:
            raise ReportError(f"--where status={value}: {value!r} is not a status; allowed: "
                              f"{', '.join(STATUSES)}{did_you_mean(value, STATUSES)}")
        if value == "unfinished":
            return ~(trials["finished"].astype(bool) | trials["stopped"].astype(bool))
        return trials["status"].eq(value)
    column = factor_column(trials, key)
    present = list(dict.fromkeys(column))
    shown = ["none" if v is None else _shown(v) for v in present]
    listed = f"{key} in this sweep: {', '.join(shown)}"
    wanted = _wanted(key, value, present, listed)
    hit = pd.Series([v == wanted and (v is None) == (wanted is None) for v in column], index=trials.index)
    if not hit.any():
        raise ReportError(f"--where {key}={value}: no trial has {key} {value!r}; {listed}"
                          f"{did_you_mean(value, shown) if isinstance(wanted, str) else ''}")
    return hit


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
    """'completed', or '1 completed, 1 unfinished': each status with its count, in order of appearance."""
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

    `results` comes from trial_results. Only finished trials are aggregated:
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

    Example: rank_configurations(trial_results(trials, epochs, 3), "final_test_acc", flags)
    """
    if metric not in RANK_METRICS:
        raise KeyError(metric)
    hyper = hyper_parameters(results)
    rows, groups = [], []
    by_trial = _records_by_trial(flags)
    # Plain arrays per column and positions per configuration: pandas per group cost 0.5 s on 200 of them.
    column = {c: results[c].to_numpy() for c in results.columns}
    finished = column["finished"].astype(bool) if len(results) else np.zeros(0, bool)
    stopped = column["stopped"].astype(bool) if len(results) else np.zeros(0, bool)
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
    down = list(dict.fromkeys(_shown(v) for v in factor_column(done, rows_f)))
    across = list(dict.fromkeys(_shown(v) for v in factor_column(done, cols_f)))
    cells = {}
    for r in long.to_dict(orient="records"):
        mean = r[f"{metric}_mean"]
        if text and metric == THRESHOLD:
            shown = "-" if _missing(mean) else f"{mean:.0f}"
            mean = f"{shown} ({r['reached']}/{r['n']})"
        elif text and "reached" in r:
            images = r[f"{THRESHOLD}_mean"]
            mean = (f"{'-' if _missing(mean) else format(mean, '.4f')}; "
                    f"{'-' if _missing(images) else format(images, '.0f')} ({r['reached']}/{r['n']})")
        cells[_shown(_key(r[rows_f])), _shown(_key(r[cols_f]))] = mean
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
    stopped = results[results["stopped"].astype(bool)]
    missing = (sweep_epochs - stopped["epochs"].astype(float).fillna(0)).clip(lower=0).sum()
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

    Example: trial_table(trial_results(trials, epochs, 3), "final_test_acc", flags)
    """
    hyper = hyper_parameters(results)
    columns = ["name", "label", "activation", "init", "optimizer", "lr", "seed", metric, "final_test_acc",
               "best_test_acc", "best_epoch", "final_test_loss", THRESHOLD, "epochs", "status"]
    table = results[[c for c in dict.fromkeys(columns) if c in results]]
    if flags is not None:
        by_trial = _records_by_trial(flags)
        table = table.assign(flags=[describe_records(by_trial.get(t, [])) for t in table["name"]])
    errors = results["error"] if "error" in results else pd.Series(None, index=results.index, dtype=object)
    table = table.assign(error=[short_error(e) or "" for e in errors], gain=results["gain"].astype(object),
                         gain_value=results["gain_value"], **{h: results[h] for h in hyper})
    keys = _best_first(table[metric].astype(float), metric)
    keys.insert(0, "group", np.where(results["finished"].astype(bool), 0,
                                     np.where(results["stopped"].astype(bool), 1, 2)))
    table = table.loc[keys.sort_values(list(keys.columns), kind="stable").index]
    table = table.rename(columns={"name": "trial", "label": "config"}).reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    table.attrs["hyper"] = hyper
    return table


# --------------------------------------------------------------------------- rendering


def header(column: str) -> str:
    """A column's name in the terminal table: a metric's spread columns are just mean, std, ci95."""
    for metric in RANK_METRICS:
        if column.startswith(f"{metric}_") and column[len(metric) + 1:] in ("mean", "std", "ci95"):
            return column[len(metric) + 1:]
    return column


def _range(low, high) -> str | None:
    """'2' or '1-3' (a range over seeds); None without one."""
    if _missing(low):
        return None
    return f"{int(low)}" if low == high else f"{int(low)}-{int(high)}"


def human_view(table: pd.DataFrame) -> pd.DataFrame:
    """A report table as the terminal and markdown show it: each range as one column ('1-2': best_epoch
    from best_epoch_min and best_epoch_max), `reached` out of n ('1/2'), gain, the optimizer
    hyper-parameters and the factors of a --by table as written ('0.9', 'true'; '-' for a
    hyper-parameter the trial's optimizer does not set), an `auto` gain with the number it used
    ('auto 1.53', where the table has gain_value).

    Example: human_view(rank_configurations(results, "final_test_acc"))
    """
    shown = {"gain", *table.attrs.get("hyper", ()), *table.attrs.get("factors", ())}
    out: dict[str, object] = {}
    for c in table.columns:
        base = c[:-4]
        if c.endswith("_max") and f"{base}_min" in table:
            continue
        elif c.endswith("_min") and f"{base}_max" in table:
            out[base] = pd.Series([_range(lo, hi) for lo, hi in zip(table[c].tolist(), table[f"{base}_max"].tolist())],
                                  index=table.index, dtype=object)
        elif c == "reached" and "n" in table:
            out[c] = [f"{r}/{n}" for r, n in zip(table[c].tolist(), table["n"].tolist())]
        elif c == "gain" and "gain_value" in table:
            out[c] = [f"auto {used:.3g}" if g == "auto" else _shown(g)
                      for g, used in zip(table[c].tolist(), table["gain_value"].tolist())]
        elif c in shown:
            out[c] = [_shown(v) for v in table[c].tolist()]
        else:
            out[c] = table[c]
    view = pd.DataFrame(out, index=table.index)
    view.attrs = dict(table.attrs)
    return view


def _factor_view_columns(table: pd.DataFrame) -> list[str]:
    """The factor columns of a terminal view, in their order: activation, init, gain, optimizer, lr, the
    optimizer hyper-parameters, seed, model."""
    hyper = [h for h in table.attrs.get("hyper", ()) if h in table]
    return [c for c in ("activation", "init", "gain", "optimizer", "lr", *hyper, "seed", "model") if c in table]


def default_columns(table: pd.DataFrame, metric: str, wide: bool = False) -> list[str]:
    """The terminal view of a configuration or trial table (human_view): the factors first, then the
    metric, n, status, error, flags.

    Left out unless `wide`: the other figures and the names (EXTRA_COLUMNS:
    --wide or --columns shows them) and columns with nothing to say: std and
    ci95 when every configuration has one seed, gain when every gain is 1, a
    hyper-parameter no row sets, epochs when every row has the same, status
    when everything completed, empty flags and errors.

    Example: default_columns(human_view(rank_configurations(results, "final_test_acc")), "final_test_acc")
    """
    first = ["rank", "trial", *_factor_view_columns(table)]
    order = [c for c in first if c in table] + [c for c in table if c not in first]
    if wide or table.empty:
        return order
    usual = {"gain": "1", "status": "completed", "flags": "", "error": "",
             **{h: "-" for h in table.attrs.get("hyper", ())}}

    def says_something(column: str) -> bool:
        values = table[column].dropna()
        if column == "epochs":
            return values.nunique() > 1 or values.astype(str).str.contains("-").any()
        return len(values) > 0 and values.ne(usual.get(column, "")).any()

    ranking = (metric, f"{metric}_mean")
    return [c for c in order if c in ranking or (c not in EXTRA_COLUMNS and says_something(c))]


def essential_columns(table: pd.DataFrame, metric: str) -> list[str]:
    """The columns of a terminal view that stay however narrow the terminal: rank, the metric (its mean;
    with the threshold metric also `reached`: a mean over the seeds that reached it says little without
    how many did), the factors whose values differ from row to row, and a --by table's factors.

    Example: essential_columns(view, "final_test_acc") -> ["rank", "activation", "init", "final_test_acc_mean"]
    """
    keys = list(table.attrs.get("factors", ()))
    differ = {c for c in _factor_view_columns(table) if table[c].astype(str).nunique() > 1}
    ranking = (metric, f"{metric}_mean", *(("reached",) if metric == THRESHOLD else ()))
    return [c for c in table if c == "rank" or c in ranking or c in keys or c in differ]


def resolve_columns(table: pd.DataFrame, names: str) -> list[str]:
    """--columns a,b,c as column names of `table`; mean, std and ci95 stand for the metric's, params for the
    optimizer hyper-parameters' columns, and in a typed table (csv, json) a range's name for its two columns
    (best_epoch: best_epoch_min, best_epoch_max).

    Example: resolve_columns(table, "config,mean,n") -> ["config", "final_test_acc_mean", "n"]
    """
    aliases = {header(c): [c] for c in table}
    for c in table:
        if c.endswith("_min") and f"{c[:-4]}_max" in table:
            aliases[c[:-4]] = [c, f"{c[:-4]}_max"]
    hyper = [h for h in table.attrs.get("hyper", ()) if h in table]
    if hyper:
        aliases["params"] = hyper
    chosen = []
    for name in names.split(","):
        found = [name] if name in table else aliases.get(name)
        if found is None:
            allowed = list(dict.fromkeys([*table.columns, *aliases]))
            raise ReportError(f"--columns: no column {name!r} in this table; allowed: {', '.join(allowed)}"
                              f"{did_you_mean(name, allowed)}")
        chosen += found
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
    if _missing(value):
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return _shown(value)
    if not isinstance(value, (float, np.floating)):
        return str(value)
    if column in ("lr", "gain_value"):
        return f"{value:g}"
    if column == "train_seconds":
        return f"{value:.1f}"
    if column in INTEGER_COLUMNS or column.startswith(THRESHOLD):
        return f"{value:.0f}"
    return f"{value:.4f}"


# The terminal table's columns other than the essential ones (essential_columns), from most to least
# important: the first to go when the width is short are at the end, and a column that does not fit leaves
# out every one after it. Factors every row shares come last (the optimizer hyper-parameters with them),
# then anything else.
IMPORTANCE = ("rank", "n", "reached", "best_test_acc", "ci95", "status", "error", "flags", "std", THRESHOLD, "epochs",
              *FACTOR_VIEW_COLUMNS)
# The narrowest an essential column's name is cut to (with its '…'), and an essential text column's values
# after every name is as short as that: where the essentials alone are too wide.
NARROWEST = 4


def _importance(name: str) -> int:
    return IMPORTANCE.index(name) if name in IMPORTANCE else len(IMPORTANCE)


def _shrink(kept: dict[int, int], floor: list[int], over: int) -> int:
    """Take `over` characters off the columns in `kept`, one at a time from the widest (the first of
    equals), none below its `floor`; the characters still over."""
    while over > 0:
        cuttable = [i for i in kept if kept[i] > floor[i]]
        if not cuttable:
            break
        widest = max(cuttable, key=lambda i: (kept[i], -i))
        kept[widest] -= 1
        over -= 1
    return over


def _fit(names: list[str], shown: list[str], need: list[int], values: list[int], numeric: list[bool],
         width: int, keep) -> list[tuple[int, int]]:
    """(column index, width) of the columns that fit in `width` characters, in table order.

    The essential columns (`keep`) are always there: where they alone are
    too wide, first their names are cut (down to the width of their values,
    or NARROWEST), the widest first, then the values of their text columns
    (down to NARROWEST). Then the others, most important first (IMPORTANCE):
    one that does not fit (`need` characters; `values`: its widest value)
    is cut to the room left if it is text and at least 12 characters (and
    its name) remain, else it and every column after it are left out.
    """
    kept = {i: need[i] for i in range(len(names)) if names[i] in keep}
    over = sum(kept.values()) + 2 * (len(kept) - 1) - width
    names_only = [min(need[i], max(values[i], NARROWEST)) for i in range(len(names))]
    over = _shrink(kept, names_only, over)
    _shrink(kept, [names_only[i] if numeric[i] else min(need[i], NARROWEST) for i in range(len(names))], over)
    used = sum(kept.values()) + 2 * (len(kept) - 1)
    for i in sorted((i for i in range(len(names)) if i not in kept), key=lambda i: (_importance(shown[i]), i)):
        room = width - used - 2
        if need[i] <= room:
            kept[i] = need[i]
        elif not numeric[i] and room >= max(len(shown[i]), 12):
            kept[i] = room
        else:
            break
        used += kept[i] + 2
    return sorted(kept.items())


def _json_value(value):
    """numpy scalars as the Python numbers and booleans they are (json.dumps knows only those)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def format_report(table: pd.DataFrame, fmt: str, columns: list[str] | None = None,
                  width: int | None = None, keep=()) -> str:
    """Render a report table as an aligned terminal table, markdown, csv or json.

    For the terminal and markdown, pass human_view(table); csv and json write
    the table as it is, typed (numbers as numbers, missing as empty / null).
    `columns` picks and orders the columns (default: all). For the terminal
    table, `width` fits it into that many characters: the columns in `keep`
    (essential_columns) always stay, text among them cut if need be; of the
    others, the least important that do not fit are left out (or a text
    column cut, ending in '…') and a last line says so.

    Example: format_report(view, "table", default_columns(view, m), width=100, keep=essential_columns(view, m))
    """
    full = table
    table = _integers(table[columns] if columns else table)
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        records = table.astype(object).where(table.notna(), None).to_dict(orient="records")
        return json.dumps(records, indent=2, default=_json_value) + "\n"
    names = list(table.columns)
    cells = [[_cell(c, v) for c, v in zip(names, row)] for row in table.itertuples(index=False)]
    if fmt == "markdown":
        lines = ["| " + " | ".join(names) + " |", "|" + "|".join("---" for _ in names) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(lines) + "\n"
    shown = [header(c) for c in names]
    numeric = [pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])
               for c in names]
    values = [max([0, *(len(row[i]) for row in cells)]) for i in range(len(names))]
    need = [max(len(h), v) for h, v in zip(shown, values)]
    kept = list(enumerate(need)) if width is None else _fit(names, shown, need, values, numeric, width, set(keep))

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
    if notes and width is not None:  # the longest of these that fits
        said = ", ".join(notes)
        ways = [f"({said}: --wide shows all, --columns NAME,... picks)", f"({said}: --wide shows all)", f"({said})"]
        lines.append(next((w for w in ways if len(w) <= width), ways[-1]))
    return "\n".join(lines) + "\n"
