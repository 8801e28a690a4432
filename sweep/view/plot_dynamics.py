"""dynamics.png: each layer over training, per configuration (Glorot & Bengio's Figures 2-4 for every cell of
the grid), in the sweep's palette; drawn with plot.py's looks, legends and sizes."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, LogFormatter, LogLocator, MaxNLocator, NullLocator

from sweep.db.series import ALL_NAMED
from sweep.view.plot import (MARKERS, TITLE_Y, Look, _images, _in_order, _ink, _line_style, _look, _save, _styled,
                        legend_beside, palette, plt)

# Sizes of dynamics.png, in inches: each configuration a cell of two panels (the activation statistic over
# the weight-gradient std), CELL_W wide, PANEL_H high each.
CELL_W, PANEL_H, INNER_GAP, CELL_GAP_X, CELL_GAP_Y = 2.5, 1.25, 0.06, 0.12, 0.45
DYNAMICS_MARGINS = {"left": 0.85, "bottom": 0.55, "top": 0.65}
# Columns of the factor layout at most (a cell per combination of the factors other than the activation);
# more are wrapped, each activation's configurations 4 a row.
MAX_COLUMNS = 6
FRACTIONS = ("zero_frac", "dead_frac", "sat_frac")


def dynamics_layout(configs: pd.DataFrame, selected: bool) -> dict[str, tuple[int, int]]:
    """(row, column) of each configuration's cell: `configs` has label and activation, in the sweep's order.
    Laid out by the grid's factors: a row per activation, a column per combination of the others (what the
    label says after the activation: for the default study, init x optimizer). With more than MAX_COLUMNS
    such combinations, each activation's configurations in rows of 4. `selected` (the best and worst of a
    big sweep, best first): the best in the first row, the worst in the second."""
    labels = list(configs["label"])
    if selected:
        half = math.ceil(len(labels) / 2)
        return {label: (i // half, i % half) for i, label in enumerate(labels)}
    activations = list(dict.fromkeys(configs["activation"]))
    rests = {label: label[len(a) + 1:] if label.startswith(f"{a}-") else label
             for label, a in zip(labels, configs["activation"])}
    columns = list(dict.fromkeys(rests.values()))
    if len(columns) <= MAX_COLUMNS and len(activations) > 1:
        return {label: (activations.index(a), columns.index(rests[label]))
                for label, a in zip(labels, configs["activation"])}
    cells, row = {}, 0
    for a in activations:
        mine = [label for label, b in zip(labels, configs["activation"]) if b == a]
        for i, label in enumerate(mine):
            cells[label] = (row + i // 4, i % 4)
        row += math.ceil(len(mine) / 4)
    return cells


def _wrapped(label: str, width: int = 44) -> str:
    """A long label over two lines, broken at the hyphen nearest its middle."""
    if len(label) <= width or "-" not in label:
        return label
    cuts = [i for i, c in enumerate(label) if c == "-"]
    cut = min(cuts, key=lambda i: abs(i - len(label) / 2))
    return f"{label[:cut + 1]}\n{label[cut + 1:]}"


def _limits(axes: list, which: str, log: bool = False) -> tuple[float, float]:
    """One range for all of `axes` along x or y: each one's autoscaled range (matplotlib's margins; an axes
    without data says nothing), their union."""
    ranges = [(ax.get_xlim() if which == "x" else ax.get_ylim()) for ax in axes
              if ax.has_data() and np.isfinite(ax.dataLim.get_points()).all()]
    if not ranges:
        return (1e-3, 1.0) if log else (0.0, 1.0)
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def _same_axes(panels: dict[str, tuple], cells: dict[str, tuple[int, int]], stat: str) -> None:
    """Every dynamics panel on the same axes: one x range, one range for the activation panels, one for the
    gradient panels (log). Tick labels on the left column and under the lowest cell of each column only, and
    no tick at all elsewhere: each tick is several artists, most of a big sweep's drawing time when every
    panel had its own (docs/benchmarks.md, "Big sweeps (2-core CPU, 24 GiB)"); the grid is one line
    collection per panel."""
    tops = [top for top, _ in panels.values()]
    bottoms = [bottom for _, bottom in panels.values()]
    x = _limits(tops + bottoms, "x")
    y_top = (-0.03, 1.03) if stat in FRACTIONS else _limits(tops, "y")
    y_bottom = _limits(bottoms, "y", log=True)
    ticks_x = [t for t in MaxNLocator(4).tick_values(*x) if x[0] <= t <= x[1]]
    ticks_top = [t for t in MaxNLocator(4).tick_values(*y_top) if y_top[0] <= t <= y_top[1]]
    ticks_bottom = [t for t in LogLocator(10, numticks=4).tick_values(*y_bottom) if y_bottom[0] <= t <= y_bottom[1]]
    occupied = set(cells.values())
    for label, (top, bottom) in panels.items():
        r, c = cells[label]
        for ax, y, ticks_y in ((top, y_top, ticks_top), (bottom, y_bottom, ticks_bottom)):
            ax.set_xlim(*x)
            ax.set_ylim(*y)
            grid = [[(t, y[0]), (t, y[1])] for t in ticks_x] + [[(x[0], t), (x[1], t)] for t in ticks_y]
            ax.add_collection(LineCollection(grid, colors="#b0b0b0", linewidths=0.8, alpha=0.3, zorder=0.5),
                              autolim=False)
            ax.xaxis.set_minor_locator(NullLocator())
            ax.yaxis.set_minor_locator(NullLocator())
            ax.yaxis.set_major_locator(FixedLocator(ticks_y) if c == 0 else NullLocator())
        top.xaxis.set_major_locator(NullLocator())
        lowest = (r + 1, c) not in occupied
        bottom.xaxis.set_major_locator(FixedLocator(ticks_x) if lowest else NullLocator())
        if lowest:
            bottom.xaxis.set_major_formatter(FuncFormatter(_images))
            bottom.set_xlabel("training images seen", fontsize=7)
        if c == 0:
            top.set_ylabel(f"activation {stat}", fontsize=7)
            bottom.yaxis.set_major_formatter(LogFormatter(10))
            bottom.set_ylabel("weight grad. std", fontsize=7)


# Small tick labels in dynamics.png, from the settings (tick_params on each panel made every one of them
# build a tick it never drew).
DYNAMICS_STYLE = {"xtick.labelsize": 7, "ytick.labelsize": 7}


@_styled
@matplotlib.rc_context(DYNAMICS_STYLE)
def plot_dynamics(dynamics: pd.DataFrame, path: Path, stat: str = "std", ranking: list[str] | None = None,
                  colors: dict[str, Look] | None = None, of: int | None = None, metric: str | None = None
                  ) -> Path:
    """Each layer over training, per configuration (Glorot & Bengio's Figures 2-4 for every cell of the
    grid): small multiples, a cell per configuration laid out by the grid's factors (dynamics_layout), in
    each cell one line per layer of the activations' `stat` (upper panel) and of the weight gradient's std
    (lower panel, log scale) against training images seen, seeds' mean; every panel on the same axes.
    `dynamics` is db.series' dynamics_frame; `colors` the sweep's palette: each cell is framed and titled in
    its configuration's colour, and the legend beside names every configuration and layer.

    `of`: the sweep's number of configurations. Where it is more than ALL_NAMED, `dynamics` holds the chosen
    ones (db.series.shown_configurations: the best and worst by `ranking`, which `metric` ranked), drawn
    best first in one row and worst in a second, and the title says so.
    """
    configs, labels, selected = _in_rank_order(dynamics, ranking, of)
    colors = palette(labels) if colors is None else colors
    cells = dynamics_layout(configs, selected) if labels else {}
    rows = max((r for r, _ in cells.values()), default=0) + 1
    cols = max((c for _, c in cells.values()), default=0) + 1
    cell_h = 2 * PANEL_H + INNER_GAP
    titles = {label: _wrapped((f"{ranking.index(label) + 1}. " if selected and label in ranking else "") + label)
              for label in labels}
    # The top margin holds the figure's title (two lines where it names the best and worst) and the first
    # row's panel titles (two lines where a long name is wrapped).
    lines = 1 + max((titles[label].count("\n") for label in labels if cells[label][0] == 0), default=0)
    m = {**DYNAMICS_MARGINS, "top": DYNAMICS_MARGINS["top"] + 0.16 * selected + 0.13 * (lines - 1)}
    width = m["left"] + cols * CELL_W + (cols - 1) * CELL_GAP_X
    height = m["top"] + rows * cell_h + (rows - 1) * CELL_GAP_Y + m["bottom"]
    fig = plt.figure(figsize=(width, height))
    layers = _in_order(dynamics["layer"])
    shades = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, max(1, len(layers))))
    layer_look = {layer: Look(tuple(shades[i]), MARKERS[i % len(MARKERS)]) for i, layer in enumerate(layers)}
    lines_of = _Lines(dynamics.groupby(["label", "kind", "layer"], sort=False).indices,
                      dynamics[["images_seen", "value"]].to_numpy(dtype=float), layers, layer_look, stat)
    activation_of = dict(zip(configs["label"], configs["activation"]))
    panels = {label: lines_of.cell(fig, label, activation_of[label], _look(colors, label), titles[label])
              for label in labels}
    if panels:
        _same_axes(panels, cells, stat)
    else:
        ax = fig.add_axes((0, 0, 1, 1))
        ax.text(0.5, 0.5, "no layer statistics recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    title = (f"each layer's activation {stat} (upper panels) and weight-gradient std (lower, log scale) "
             "against training images seen; seeds' mean")
    if selected:
        half = math.ceil(len(labels) / 2)
        title += (f"\nthe {half} best (first row) and {len(labels) - half} worst (second row) of {of} "
                  f"configurations by mean {metric or 'metric'}")
    fig.suptitle(title, x=m["left"] / width, ha="left", y=1 - 0.12 / height, va="top", fontsize=9)

    def place(right: float) -> None:
        w, h = fig.get_size_inches()
        for label, (top, bottom) in panels.items():
            r, c = cells[label]
            x0 = m["left"] + c * (CELL_W + CELL_GAP_X)
            y_top = h - m["top"] - r * (cell_h + CELL_GAP_Y)
            top.set_position((x0 / w, (y_top - PANEL_H) / h, CELL_W / w, PANEL_H / h))
            bottom.set_position((x0 / w, (y_top - cell_h) / h, CELL_W / w, PANEL_H / h))

    handles, names = _legend(layers, layer_look, labels, colors)
    legend_beside(fig, handles, names, place=place)
    return _save(fig, path)


def _in_rank_order(dynamics: pd.DataFrame, ranking: list[str] | None, of: int | None
                   ) -> tuple[pd.DataFrame, list[str], bool]:
    """(label and activation of each configuration, the labels, whether they are a big sweep's best and
    worst): in the frame's order, or best first where `of` is more than ALL_NAMED."""
    configs = dynamics.drop_duplicates("label")[["label", "activation"]]
    labels = list(configs["label"])
    selected = of is not None and ranking is not None and of > ALL_NAMED
    if selected:
        position = {label: i for i, label in enumerate(ranking)}
        configs = configs.assign(rank=[position.get(label, len(position)) for label in labels]).sort_values(
            "rank", kind="stable")
        labels = list(configs["label"])
    return configs, labels, selected


class _Lines:
    """The layers' lines of dynamics.png: `groups` (label, kind, layer) -> row positions in `xy` (images
    seen, value), each layer in its `layer_look`."""

    def __init__(self, groups: dict, xy: np.ndarray, layers: list[str], layer_look: dict[str, Look], stat: str):
        self.groups, self.xy, self.layers, self.layer_look, self.stat = groups, xy, layers, layer_look, stat

    def cell(self, fig, label: str, activation: str, look: Look, title: str) -> tuple:
        """A configuration's two panels (its activations' statistic over its weight gradients' std, log scale),
        framed and titled in its colour; placed later."""
        top, bottom = fig.add_axes((0, 0, 1, 1)), fig.add_axes((0, 0, 1, 1))
        bottom.set_yscale("log")
        for ax, kind in ((top, "activation"), (bottom, "gradient")):
            mine = [layer for layer in self.layers if (label, kind, layer) in self.groups]
            drawn = 0
            for j, layer in enumerate(mine):
                idx = self.groups[(label, kind, layer)]
                x, y = self.xy[idx, 0], self.xy[idx, 1]
                if kind == "gradient":
                    y = np.where(y > 0, y, np.nan)
                if np.isnan(y).all():
                    continue
                drawn += 1
                style = _line_style(self.layer_look[layer], j, len(mine), len(idx))
                ax.plot(x, y, label=layer, **{**style, "ms": style["ms"] * 0.6, "lw": style["lw"] * 0.7})
            if not drawn:
                what = f"no {self.stat} for {activation}" if kind == "activation" else "no gradients"
                ax.text(0.5, 0.5, what, transform=ax.transAxes, ha="center", va="center", fontsize=7,
                        color="0.4")
            for spine in ax.spines.values():
                spine.set_edgecolor(look.color)
                spine.set_linewidth(1.5)
        top.set_title(title, fontsize=7.5, y=TITLE_Y, pad=4, color=_ink(look.color),
                      bbox={"facecolor": look.color, "edgecolor": "none", "pad": 1.5})
        return top, bottom


def _legend(layers: list[str], layer_look: dict[str, Look], labels: list[str], colors: dict[str, Look]
            ) -> tuple[list, list[str]]:
    """The legend's handles and names: every layer in its look, then every configuration in its colour."""
    handles = [Line2D([], [], linestyle="none")]
    names = ["layers (input to output):"]
    for layer in layers:
        handles.append(Line2D([], [], color=layer_look[layer].color, marker=layer_look[layer].marker, ms=4, lw=1.2))
        names.append(layer)
    handles.append(Line2D([], [], linestyle="none"))
    names.append("configurations (frames):")
    for label in labels:
        handles.append(Patch(facecolor=_look(colors, label).color, edgecolor="none"))
        names.append(label)
    return handles, names
