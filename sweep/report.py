"""The ranked report: configurations (seeds aggregated) ordered by a metric."""
from __future__ import annotations

import json
import math

import pandas as pd

from sweep.spec import METRICS

FORMATS = ("table", "markdown", "csv", "json")
# Ranking metrics: the spec's, plus the threshold metric (needs a threshold).
RANK_METRICS = {**METRICS, "images_to_threshold": False}
# Columns --where may filter on and --by may group by.
FACTORS = ("activation", "init", "gain", "optimizer", "lr", "seed", "model", "status")

# Two-sided 95% Student t critical values for 1..30 degrees of freedom.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)


def ci95(values: pd.Series) -> float:
    """Half-width of the 95% confidence interval of the mean (t distribution); NaN below n = 2."""
    n = len(values)
    if n < 2:
        return math.nan
    t = _T95[n - 2] if n - 1 <= len(_T95) else 1.96
    return t * values.std(ddof=1) / math.sqrt(n)


def images_to_threshold(epochs: pd.DataFrame, threshold: float) -> pd.Series:
    """Per trial name: training images seen when test accuracy first reached `threshold` (NaN: never)."""
    hit = epochs[epochs["test_acc"] >= threshold]
    first = hit.groupby("trial")["images_seen"].min()
    return first.reindex(epochs["trial"].unique()).astype(float)


def filter_trials(trials: pd.DataFrame, where: list[tuple[str, str]]) -> pd.DataFrame:
    """Keep trials whose column KEY equals VALUE for every (KEY, VALUE); numbers compare as numbers."""
    for key, value in where:
        column = trials[key]
        if pd.api.types.is_numeric_dtype(column):
            trials = trials[column == float(value)]
        else:
            trials = trials[column.astype(str) == value]
    return trials


def _spread(values: pd.Series, metric: str) -> dict[str, float]:
    """Mean, sample std and 95% interval half-width of a metric's non-missing values."""
    values = values.dropna()
    return {
        f"{metric}_mean": values.mean() if len(values) else math.nan,
        f"{metric}_std": values.std(ddof=1) if len(values) > 1 else math.nan,
        f"{metric}_ci95": ci95(values),
    }


def _status(group: pd.DataFrame) -> str:
    counts = group["status"].value_counts()
    return counts.index[0] if len(counts) == 1 else ", ".join(f"{n} {s}" for s, n in counts.items())


def rank_configurations(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per configuration (trials sharing a label differ only by seed).

    Seeds are replicates: the metric gets its mean, std and 95% interval
    half-width (n >= 2); the other figures their mean. Optional trial
    columns `images_to_threshold` and `flags` are carried along. Sorted best
    first; configurations without a value of the metric yet come last.
    """
    if metric not in RANK_METRICS:
        raise KeyError(metric)
    rows = []
    for label, group in trials.groupby("label", sort=False):
        first = group.iloc[0]
        row = {
            "config": label,
            "activation": first["activation"], "init": first["init"],
            "optimizer": first["optimizer"], "lr": first["lr"],
            "n": len(group),
            **_spread(group[metric], metric),
        }
        for column in ("final_test_acc", "best_test_acc", "best_epoch", "final_train_loss", "final_test_loss",
                       "images_to_threshold", "train_seconds"):
            if column in group and column != metric:
                row[column] = group[column].mean()
        row["epochs"] = group["epochs_done"].min()
        row["status"] = _status(group)
        if "flags" in group:
            row["flags"] = "; ".join(sorted({f for f in group["flags"] if f}))
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table = table.sort_values(f"{metric}_mean", ascending=not RANK_METRICS[metric], na_position="last",
                              kind="stable").reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table


def factor_effects(trials: pd.DataFrame, metric: str, factors: list[str]) -> pd.DataFrame:
    """The marginal effect of one factor, or a matrix over two.

    One factor: per value, the metric's mean over every trial with that value
    (all other factors and seeds pooled), std, 95% interval and n, best first.
    Two factors: the mean for each pair, first factor down, second across.
    """
    values = trials.dropna(subset=[metric])
    if len(factors) == 1:
        factor = factors[0]
        rows = [{factor: key, **_spread(g[metric], metric), "n": len(g)}
                for key, g in values.groupby(factor, sort=False)]
        table = pd.DataFrame(rows, columns=[factor, f"{metric}_mean", f"{metric}_std", f"{metric}_ci95", "n"])
        return table.sort_values(f"{metric}_mean", ascending=not RANK_METRICS[metric],
                                 kind="stable").reset_index(drop=True)
    rows_f, cols_f = factors
    matrix = values.pivot_table(index=rows_f, columns=cols_f, values=metric, aggfunc="mean", sort=False)
    matrix.columns = [str(c) for c in matrix.columns]
    return matrix.reset_index()


def trial_table(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per trial (seeds not aggregated), best first, with its flags."""
    columns = ["name", "seed", metric, "final_test_acc", "best_test_acc", "best_epoch", "final_test_loss",
               "images_to_threshold", "epochs_done", "status", "flags"]
    table = trials[[c for c in dict.fromkeys(columns) if c in trials]]
    table = table.sort_values(metric, ascending=not RANK_METRICS[metric], na_position="last", kind="stable")
    table = table.rename(columns={"name": "trial"}).reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table


def _cell(column: str, value) -> str:
    if not isinstance(value, float):
        return str(value)
    if math.isnan(value):
        return "-"
    if column == "lr":
        return f"{value:g}"
    if column in ("best_epoch", "train_seconds"):
        return f"{value:.1f}"
    if column.startswith("images_to"):
        return f"{value:.0f}"
    return f"{value:.4f}"


def format_report(table: pd.DataFrame, fmt: str) -> str:
    """Render the ranked table as a terminal table, markdown, csv or json."""
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        records = table.astype(object).where(table.notna(), None).to_dict(orient="records")
        return json.dumps(records, indent=2)
    header = list(table.columns)
    cells = [[_cell(c, v) for c, v in zip(header, row)] for row in table.itertuples(index=False)]
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(lines) + "\n"
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in header]

    def fmt_row(row):
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric)).rstrip()

    return "\n".join([fmt_row(header), *(fmt_row(r) for r in cells)]) + "\n"
