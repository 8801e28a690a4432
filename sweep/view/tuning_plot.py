"""tuning.png: the Deep Learning Tuning Playbook's hyper-parameter axis plot of a tuned sweep.

The selection metric of every finished trial against a tuned factor (on a log axis where its values span
more than 10x), a panel per value of the first scientific factor, a colour per group of the other factors
(the sweep's palette: each group in the colour of its chosen configuration), and the chosen setting of each
group marked with a star (a group named by its chosen configuration): a glance says whether the best sits inside what was tried or at its edge.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from sweep.analysis.factors import factor_column, factor_key
from sweep.view.plot import (CURVE_MARGINS, Look, _handle, _look, _named, _others, _others_handle, _save, _styled,
                        legend_beside, plt)
from sweep.analysis.tuning import _scientific, tuned_view

CHOSEN = "star: the chosen setting (the best mean over its seeds)"


def tuned_factors_to_draw(results: pd.DataFrame, tune: list[str]) -> list[str]:
    """The tuned factors with three or more values among the finished trials: those tuning.png draws."""
    done = results[results["finished"].astype(bool)]
    return [f for f in tune if len({v for v in factor_column(done, f) if v is not None}) >= 3]


@_styled
def plot_tuning(results: pd.DataFrame, metric: str, factor: str, tune: list[str], higher: bool, path: Path,
                colors: dict[str, Look] | None = None, facet: str = "activation") -> Path:
    """tuning.png for one tuned `factor` (see the module's doc). `results`: sweep.analysis.results.sweep_results;
    `colors`: the sweep's palette (sweep.view.plot.sweep_palette), keyed by configuration label. With more than
    ALL_NAMED groups in a panel, the best and worst (by the tuned ranking) are named, the others grey."""
    colors = colors or {}
    done = results[results["finished"].astype(bool)]
    positions, names, chosen_at, ranking = _groups(done, metric, factor, tune, higher)
    x_all = np.array([np.nan if v is None else float(v) for v in factor_column(done, factor)], dtype=float)
    y_all = done[metric].to_numpy(dtype=float)
    finite = x_all[np.isfinite(x_all)]
    log = len(finite) and finite.min() > 0 and finite.max() / finite.min() > 10
    values = list(dict.fromkeys(done[facet])) if len(done) else [None]
    cols = min(4, max(1, len(values)))
    rows = max(1, math.ceil(len(values) / cols))
    fig = plt.figure(figsize=(14, 4.5 * rows))
    grid = fig.add_gridspec(rows, cols)
    axes = [fig.add_subplot(grid[i // cols, i % cols]) for i in range(len(values))]
    handles, legend_names, others = [], [], 0
    for i, (ax, value) in enumerate(zip(axes, values)):
        in_panel = [k for k, at in positions.items() if k in names and done[facet].iat[at[0]] == value]
        shown = set(_named([names[k] for k in in_panel], ranking))
        grey = []
        for k in in_panel:
            at = positions[k]
            order = np.argsort(x_all[at], kind="stable")
            points = np.column_stack([x_all[at][order], y_all[at][order]])
            if names[k] not in shown:
                grey.append(points)
                continue
            look = _look(colors, names[k])
            ax.plot(points[:, 0], points[:, 1], lw=0.8, alpha=0.5, color=look.color, marker=look.marker, ms=4)
            cx, cy = chosen_at[k]
            if cx is not None and not (isinstance(cy, float) and math.isnan(cy)):
                ax.scatter([float(cx)], [cy], marker="*", s=160, color=look.color, edgecolors="black",
                           linewidths=0.6, zorder=5)
            handles.append(_handle(look))
            legend_names.append(names[k])
        _others(ax, grey)
        others += len(grey)
        if log:
            ax.set_xscale("log")
        ax.set_title(f"{facet} = {value}")
        ax.set_xlabel(factor + (" (log scale)" if log else ""))
        if i % cols == 0:
            ax.set_ylabel(f"{metric} (each trial)")
        ax.grid(alpha=0.3)
    if others:
        handle, name = _others_handle(others)
        handles.append(handle)
        legend_names.append(name)
    handles.append(plt.Line2D([], [], marker="*", ms=10, lw=0, color="0.5", mec="black", mew=0.6))
    legend_names.append(CHOSEN)
    legend_beside(fig, handles, legend_names, margins=CURVE_MARGINS)
    return _save(fig, path)


def _groups(done: pd.DataFrame, metric: str, factor: str, tune: list[str], higher: bool
            ) -> tuple[dict[tuple, list[int]], dict[tuple, str], dict[tuple, tuple], list[str]]:
    """The groups of finished trials that differ only in the tuned factors: each group's trials' positions in
    `done` (in order), its name (its chosen configuration's label), the (x, y) of its chosen setting, and
    the names best first (sweep.analysis.tuning.tuned_view)."""
    groups_by = _scientific(done, tune)
    positions: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(*(factor_column(done, f) for f in groups_by)) if len(done) else ()):
        positions.setdefault(key, []).append(i)
    tuned_of = list(zip(*(factor_column(done, f) for f in tune))) if len(done) else []
    names, chosen_at, ranking = {}, {}, []
    for row in tuned_view(done, metric, tune, higher).to_dict(orient="records"):
        key = tuple(factor_key(row[f]) for f in groups_by)
        mine = positions[key]
        setting = [i for i in mine if tuned_of[i] == tuple(row[f] for f in tune)]
        names[key] = done["label"].iat[setting[0] if setting else mine[0]]
        chosen_at[key] = (row[factor], row[f"{metric}_mean"])
        ranking.append(names[key])
    return positions, names, chosen_at, ranking
