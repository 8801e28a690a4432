"""The ranked report: configurations (seeds aggregated) ordered by a metric."""
from __future__ import annotations

import json
import math

import pandas as pd

from sweep.spec import METRICS

FORMATS = ("table", "markdown", "csv", "json")


def rank_configurations(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per configuration (trials sharing a label differ only by seed).

    Columns: rank, config, the factors, n (seeds), metric mean and std, mean
    final/best accuracy, best epoch, final losses, training seconds, epochs
    done and a status summary. Sorted best first; configurations without a
    value of the metric yet come last.
    """
    if metric not in METRICS:
        raise KeyError(metric)
    rows = []
    for label, group in trials.groupby("label", sort=False):
        first = group.iloc[0]
        values = group[metric].dropna()
        counts = group["status"].value_counts()
        status = counts.index[0] if len(counts) == 1 else ", ".join(f"{n} {s}" for s, n in counts.items())
        rows.append({
            "config": label,
            "activation": first["activation"], "init": first["init"],
            "optimizer": first["optimizer"], "lr": first["lr"],
            "n": len(group),
            f"{metric}_mean": values.mean() if len(values) else math.nan,
            f"{metric}_std": values.std(ddof=1) if len(values) > 1 else math.nan,
            "final_test_acc": group["final_test_acc"].mean(),
            "best_test_acc": group["best_test_acc"].mean(),
            "best_epoch": group["best_epoch"].mean(),
            "final_train_loss": group["final_train_loss"].mean(),
            "final_test_loss": group["final_test_loss"].mean(),
            "train_seconds": group["train_seconds"].mean(),
            "epochs": group["epochs_done"].min(),
            "status": status,
        })
    # The metric's own column would repeat its mean.
    table = pd.DataFrame(rows).drop(columns=[metric], errors="ignore")
    if table.empty:
        return table
    table = table.sort_values(f"{metric}_mean", ascending=not METRICS[metric], na_position="last",
                              kind="stable").reset_index(drop=True)
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
