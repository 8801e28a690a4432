"""Pictures of a sweep (matplotlib, headless): curves, depth profiles, the layers over training, a heat map.

Each function takes the frames db/ returns and writes one PNG whose pixel
size follows from the sweep (figure inches x DPI), so tests can check what
they get. A configuration has one colour and marker in every picture (pass
the same palette to each: sweep_palette), every configuration is named up
to ALL_NAMED, and legends sit beside the panels, measured, never over data.

Big sweeps (hundreds of configurations) are drawn quickly: the
configurations not named are one LineCollection per panel, the panels are
placed with fixed margins in inches (tight_layout measures every tick label,
which is slow), log axes are labelled without mathtext, the
PNGs are compressed lightly, dynamics.png draws few ticks and reads the
shown configurations only, and draw_all draws about half of the pictures in
a second process (docs/benchmarks.md, "Big sweeps (2-core CPU, 24 GiB)").
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Callable, NamedTuple

import matplotlib
import matplotlib.colors

matplotlib.use("Agg")  # no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogFormatter, LogLocator  # noqa: E402

from sweep.db.series import ALL_NAMED, MAX_NAMED, shown_configurations  # noqa: E402,F401
from sweep.view.forked import Forked, spare_core  # noqa: E402

DPI = 100
# Titles sit at the top of their panels (y=1.0 of the axes): left to matplotlib, each title's position is
# worked out from its panel's tick labels, computed once more for it, a large part of a depth plot's time
# (docs/benchmarks.md, "Big sweeps (2-core CPU, 24 GiB)").
TITLE_Y = 1.0
# zlib level of the PNGs: 1 writes a big sweep's pictures much faster than the default 6, for files only
# a little larger (docs/benchmarks.md, "Big sweeps (2-core CPU, 24 GiB)").
PNG_COMPRESSION = 1
# matplotlib settings of every picture: glyphs as drawn, not hinted to the pixel grid, since FreeType's
# hinting costs drawing time and the text looks the same at this size (docs/benchmarks.md, "Big sweeps
# (2-core CPU, 24 GiB)").
STYLE = {"text.hinting": "no_hinting"}


def _styled(draw: Callable) -> Callable:
    """A picture function drawn with STYLE, matplotlib's own settings left as they were."""
    @functools.wraps(draw)
    def styled(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)
    return styled


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, pil_kwargs={"compress_level": PNG_COMPRESSION})
    plt.close(fig)
    return path


def _margins(fig, left: float, right: float, bottom: float, top: float, wspace: float = 0.0,
             hspace: float = 0.0) -> None:
    """Place the panels with margins and gaps in inches (what tight_layout finds for these pictures, without
    measuring every tick label, which is slow: docs/benchmarks.md, "Big sweeps (2-core CPU, 24 GiB)").
    `right` from the figure's right edge."""
    width, height = fig.get_size_inches()
    grid = fig.axes[0].get_subplotspec().get_gridspec()  # the figure's panels, all of one grid
    rows, cols = grid.get_geometry()
    panel_w = (width - left - right - wspace * (cols - 1)) / cols
    panel_h = (height - bottom - top - hspace * (rows - 1)) / rows
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=wspace / panel_w, hspace=hspace / panel_h)


# ------------------------------------------------------------------ which configurations, in which colours

def _in_order(column: pd.Series) -> list:
    """The distinct values of a column in order of appearance (unique(): iterating an Arrow-backed string
    column value by value is slow on big sweeps; docs/benchmarks.md, "Big sweeps (2-core CPU, 24 GiB)")."""
    return list(column.unique())


def _named(labels: list[str], ranking: list[str] | None) -> list[str]:
    """The labels of one panel or picture that get their own colour, marker and legend entry: every one up to
    ALL_NAMED, else the MAX_NAMED / 2 best and worst by `ranking` (labels, best first), best first. The rule
    is db.series.shown_configurations, which the reads of dynamics.png share."""
    return shown_configurations(labels, ranking)


# Markers of the named configurations, by their palette index: tab20's two shades of a hue (indices 2k and
# 2k + 1) get different ones.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
# The look of a configuration no palette names (a picture drawn on its own with a partial palette).
UNNAMED = (0.3, 0.3, 0.3, 1.0)


class Look(NamedTuple):
    """How one configuration is drawn in every picture."""
    color: tuple
    marker: str


def palette(labels: list[str], groups: list[list[str]] = ()) -> dict[str, Look]:
    """One colour and marker per configuration, the same in every picture of a sweep.

    `labels`: every configuration a picture names, in the sweep's order; `groups`: the labels shown
    together (a panel, a legend), which must look different (default: all of them). Up to 10 labels take
    tab10's colours in order, up to 20 tab20's. Beyond (a big sweep, whose accuracy panels name their own),
    each label takes the first colour of tab20, tab20b and tab20c (60) that no label shown with it has: a
    label is named in one accuracy panel (at most ALL_NAMED) and in the depth and dynamics legends (MAX_NAMED),
    fewer than 60 others.
    """
    labels = list(dict.fromkeys(labels))
    if len(labels) <= 20:
        cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
        return {label: Look(cmap(i), MARKERS[i % len(MARKERS)]) for i, label in enumerate(labels)}
    colours = [plt.get_cmap(name)(i) for name in ("tab20", "tab20b", "tab20c") for i in range(20)]
    neighbours: dict[str, set] = {label: set() for label in labels}
    for group in groups or [labels]:
        for label in group:
            neighbours.setdefault(label, set()).update(group)
    index: dict[str, int] = {}
    for label in labels:
        taken = {index[other] for other in neighbours[label] if other in index}
        index[label] = next(i for i in range(len(colours) + len(taken)) if i not in taken) % len(colours)
    return {label: Look(colours[i], MARKERS[i % len(MARKERS)]) for label, i in index.items()}


def sweep_palette(curves: pd.DataFrame, facet: str = "activation", ranking: list[str] | None = None
                  ) -> dict[str, Look]:
    """The palette of a sweep's pictures (pass it to each): the configurations accuracy.png names in its
    panels (one per value of `facet`) and those depth.png and dynamics.png name (the sweep's), from
    db's curves_frame, which holds every configuration with an epoch recorded."""
    everyone = _in_order(curves["label"])
    panels = [_named(_in_order(group), ranking) for _, group in curves.groupby(facet, sort=False)["label"]]
    shared = _named(everyone, ranking)
    named = set(shared).union(*panels)
    return palette([label for label in everyone if label in named], [*panels, shared])


def _look(colors: dict[str, Look], label: str) -> Look:
    return colors.get(label) or Look(UNNAMED, "o")


def _line_style(look: Look, j: int, count: int, points: int) -> dict:
    """A configuration's line, the j-th of `count` drawn in its panel: later ones thinner, with smaller
    markers, on top, so that lines that coincide (two curves at chance) show as nested markers. On long lines
    a dozen markers, staggered from line to line."""
    share = j / max(1, count - 1)
    style = {"color": look.color, "marker": look.marker, "ms": 7.0 - 3.0 * share, "lw": 2.0 - 0.8 * share,
             "mec": "white", "mew": 0.4, "zorder": 3 + j / 100}
    if points > 30:
        step = math.ceil(points / 12)
        style["markevery"] = ((j * step) // max(1, count) % step, step)
    return style


def _handle(look: Look) -> Line2D:
    """A configuration's legend entry: its colour and marker, one size for all."""
    return Line2D([], [], color=look.color, marker=look.marker, ms=5, lw=1.5, mec="white", mew=0.4)


def _others(ax, lines: list) -> None:
    """Configurations not named: thin grey lines, one artist for all of them."""
    if lines:
        ax.add_collection(LineCollection(lines, colors="0.75", linewidths=0.6, zorder=1))
        ax.autoscale_view()


def _others_handle(count: int) -> tuple[Line2D, str]:
    return Line2D([], [], color="0.75", lw=0.6), f"{count} more configurations"


def _images(value: float, _position=None) -> str:
    """Training images on an axis: 60k, 1.2M."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.4g}{unit}"
    return f"{value:.4g}"


# ------------------------------------------------------------------ accuracy.png

# Margins of the accuracy panels, in inches (see _margins; the legend's width is added on the right).
CURVE_MARGINS = {"left": 0.75, "bottom": 0.6, "top": 0.35, "wspace": 0.2, "hspace": 0.95}
BAND = {"ci": "shaded: 95% interval of the mean (3 or more seeds)",
        "range": "shaded: the 2 seeds' range (fewer than 3: no interval)"}
# The legend's words for the mark where a configuration's number of seeds changes along its curve (a seed
# stopped or is still training): the mean after it is over the others only.
SEEDS_CHANGE = "x: its number of seeds changes here (the mean after it is over fewer or more seeds)"


def band_halves(n: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Half-widths of the bands around seed means: with 3 or more seeds the 95% interval of the mean (Student
    t); with 2 their range, mean -+ std / sqrt(2) (the population std: exactly the two values); NaN for one.
    (A 95% interval of two seeds, t = 12.7, spans most of an accuracy axis and says little.)"""
    from sweep.analysis.intervals import t95

    n = np.asarray(n, dtype=float)
    t = np.array([t95(k) if k >= 3 else math.nan for k in range(int(np.nanmax(n, initial=0)) + 1)])
    counts = np.nan_to_num(n).astype(int)
    with np.errstate(all="ignore"):
        return np.where(n >= 3, t[counts] * std / np.sqrt(n), np.where(n == 2, std / math.sqrt(2), math.nan))


@_styled
def plot_curves(curves: pd.DataFrame, path: Path, facet: str = "activation", ranking: list[str] | None = None,
                colors: dict[str, Look] | None = None) -> Path:
    """Test accuracy against images seen, one line per configuration (its seeds' mean), one panel per value of
    `facet`, within [0, 1] and zoomed to the curves (one scale for every panel: close curves stay apart, and
    the tick labels say where the axis starts); around each line its seeds' 95% interval (3 or more seeds)
    or range (2), and an x where its number of seeds changes (a seed stopped, or trains on). `curves`
    is db's curves_frame; `colors` the sweep's palette (default: sweep_palette of these curves). With more
    than ALL_NAMED configurations in a panel, the best and worst by `ranking` (labels, best first) are named,
    with their bands, and the others drawn thin and grey without. One legend beside the panels (they share
    the configurations' colours): 1400 px per row of 4 panels plus the legend's width, 450 px a row."""
    colors = sweep_palette(curves, facet, ranking) if colors is None else colors
    values = _in_order(curves[facet])
    cols = min(4, max(1, len(values)))
    rows = max(1, math.ceil(len(values) / cols))
    fig = plt.figure(figsize=(14, 4.5 * rows))
    grid = fig.add_gridspec(rows, cols)
    axes = [fig.add_subplot(grid[i // cols, i % cols]) for i in range(max(1, len(values)))]
    xy = curves[["images_seen", "mean"]].to_numpy(dtype=float)
    n = curves["n"].to_numpy(dtype=float)
    half = band_halves(n, curves["std"].to_numpy(dtype=float))
    lower, upper = np.clip(xy[:, 1] - np.nan_to_num(half), 0, 1), np.clip(xy[:, 1] + np.nan_to_num(half), 0, 1)
    low, high = np.nanmin(lower, initial=np.inf), np.nanmax(upper, initial=-np.inf)
    low, high = (low, high) if low < high else (0.0, 1.0)
    pad = 0.03 * (high - low)
    by_value = curves.groupby(facet, sort=False).indices
    handles, names, others, bands_of, changes_shown = [], [], 0, set(), False
    for i, (ax, value) in enumerate(zip(axes, values)):
        rows_of = {label: by_value[value][idx]
                   for label, idx in curves.iloc[by_value[value]].groupby("label", sort=False).indices.items()}
        named = _named(list(rows_of), ranking)
        chosen = set(named)
        rest = [idx for label, idx in rows_of.items() if label not in chosen]
        _others(ax, [xy[idx] for idx in rest])
        others += len(rest)
        bands, band_colors = [], []
        for j, label in enumerate(named):
            idx, look = rows_of[label], _look(colors, label)
            ax.plot(xy[idx, 0], xy[idx, 1], label=label, **_line_style(look, j, len(named), len(idx)))
            handles.append(_handle(look))
            names.append(label)
            changes_shown |= _seed_changes(ax, xy[idx], n[idx], look)
            band = _band(xy[idx], half[idx], lower[idx], upper[idx])
            if band is not None:
                bands.append(band)
                band_colors.append(look.color)
                bands_of.update(["ci"] if (n[idx] >= 3).any() else [], ["range"] if (n[idx] == 2).any() else [])
        # One collection for the panel's bands: fill_between per line re-scaled the axes each time.
        ax.add_collection(PolyCollection(bands, facecolors=band_colors, alpha=0.2, linewidths=0, zorder=2),
                          autolim=False)
        ax.set_ylim(max(0.0, low - pad), min(1.0, high + pad))  # one scale for all panels, within [0, 1]
        if i % cols:
            ax.tick_params(labelleft=False)
        ax.set_title(f"{facet} = {value}", y=TITLE_Y)
        ax.set_xlabel("training images seen")
        ax.xaxis.set_major_formatter(FuncFormatter(_images))
        ax.grid(alpha=0.3)
    for ax in axes[::cols]:
        ax.set_ylabel("test accuracy (seeds' mean)")
    if others:
        handle, name = _others_handle(others)
        handles.append(handle)
        names.append(name)
    for kind in ("ci", "range"):
        if kind in bands_of:
            handles.append(Patch(facecolor="0.5", alpha=0.3, linewidth=0))
            names.append(BAND[kind])
    if changes_shown:
        handles.append(Line2D([], [], marker="x", ms=6, mew=1.5, lw=0, color="0.3"))
        names.append(SEEDS_CHANGE)
    legend_beside(fig, handles, names, margins=CURVE_MARGINS)
    return _save(fig, path)


def _seed_changes(ax, xy: np.ndarray, seeds: np.ndarray, look: Look) -> bool:
    """An x on a line where its number of seeds changes (at the first point with the new count); whether
    there was one."""
    change = np.flatnonzero(seeds[1:] != seeds[:-1]) + 1
    if len(change):
        ax.scatter(xy[change, 0], xy[change, 1], marker="x", s=36, color=look.color, linewidths=1.5, zorder=4)
    return bool(len(change))


def _band(xy: np.ndarray, half: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray | None:
    """A line's band as a polygon (its lower edge, then its upper one back); None where no point has one
    (a single seed left)."""
    keep = ~np.isnan(xy[:, 1])
    if np.isnan(half[keep]).all():
        return None
    x = xy[keep, 0]
    return np.concatenate([np.column_stack([x, lower[keep]]), np.column_stack([x, upper[keep]])[::-1]])


# ------------------------------------------------------------------ depth.png

# Margins of the depth plot's panels, in inches (see _margins): room for log-scale tick labels left of each
# column, layer names under each row, a title over each panel; the legend's width is added on the right.
DEPTH_MARGINS = {"left": 0.8, "bottom": 0.45, "top": 0.35, "wspace": 0.75, "hspace": 0.75}


# Layer names a depth axis prints level: LeNet's four; a deeper network's (ResNet-18: 17 activation calls,
# 21 weight layers, named by module path) are turned and, past twice this many, every k-th is named.
LEVEL_LAYERS = 6


def _layer_ticks(ax, order: list[str]) -> int:
    """The depth axis's ticks: every layer, named level where they fit, else turned (and thinned); the
    longest turned name's length (0: none turned)."""
    if len(order) <= LEVEL_LAYERS:
        ax.set_xticks(range(len(order)), order)
        return 0
    every = max(1, math.ceil(len(order) / (4 * LEVEL_LAYERS)))
    names = [name if i % every == 0 or i == len(order) - 1 else "" for i, name in enumerate(order)]
    ax.set_xticks(range(len(order)), names, rotation=60, ha="right", fontsize="x-small")
    return max(map(len, names))


def _plain_log_labels(ax) -> None:
    """Label a log y axis 1e-05 rather than with mathtext (10 to the -5): parsing mathtext was a large part
    of every depth plot. Minor ticks at 2 and 5 times the powers of ten, not at every multiple: matplotlib
    builds each tick from several artists, so every tick costs drawing time (docs/benchmarks.md, "Big sweeps
    (2-core CPU, 24 GiB)")."""
    ax.yaxis.set_major_formatter(LogFormatter(10))
    ax.yaxis.set_minor_locator(LogLocator(10, subs=(2.0, 5.0)))
    ax.yaxis.set_minor_formatter(LogFormatter(10, labelOnlyBase=False))


@_styled
def plot_depth(depth: pd.DataFrame, path: Path, epochs: list[int], ranking: list[str] | None = None,
               colors: dict[str, Look] | None = None) -> Path:
    """Activation std (top) and weight-gradient std (bottom, log scale) per layer,
    input to output, one line per configuration (the mean over its seeds), one column per chosen epoch
    (the last snapshot of that epoch): Glorot & Bengio's figures for every cell of the grid. `depth` is
    db's depth_frame, `colors` the sweep's palette (default: one for these configurations). Every
    configuration is named up to ALL_NAMED; beyond, the best and worst by `ranking`, the others drawn thin
    and grey. 500 px per column x 900 px, plus the legend's width."""
    named = _named(_in_order(depth["label"]), ranking)
    colors = palette(named) if colors is None else colors
    fig, axes = plt.subplots(2, len(epochs), figsize=(5 * len(epochs), 9), squeeze=False)
    others = turned = 0
    for col, epoch in enumerate(epochs):
        part = depth[depth["epoch"] == epoch]
        for row, kind in enumerate(("activation", "gradient")):
            ax = axes[row, col]
            sub = part[part["kind"] == kind]
            order = _in_order(sub["layer"])
            labels = _in_order(sub["label"])
            table = sub.pivot(index="label", columns="layer", values="std").reindex(index=labels, columns=order)
            x = np.arange(len(order), dtype=float)
            values = table.to_numpy(dtype=float)
            where = {label: i for i, label in enumerate(labels)}
            rest = [i for label, i in where.items() if label not in set(named)]
            _others(ax, [np.column_stack([x, values[i]]) for i in rest])
            others = max(others, len(rest))
            for j, label in enumerate(named):
                if label in where:
                    ax.plot(x, values[where[label]], label=label,
                            **_line_style(_look(colors, label), j, len(named), len(x)))
            turned = max(turned, _layer_ticks(ax, order))
            ax.set_title(f"{kind} std, epoch {epoch}", y=TITLE_Y)
            if kind == "gradient":
                ax.set_yscale("log")
                _plain_log_labels(ax)
            ax.grid(alpha=0.3)
    handles, names = [_handle(_look(colors, label)) for label in named], list(named)
    if others:
        handle, name = _others_handle(others)
        handles.append(handle)
        names.append(name)
    # Turned layer names hang below their panel: room for the longest (x-small type at 60 degrees, about
    # 0.05 inch a character) under each row.
    below = {"bottom": DEPTH_MARGINS["bottom"] + 0.05 * turned, "hspace": DEPTH_MARGINS["hspace"] + 0.05 * turned}
    legend_beside(fig, handles, names, margins={**DEPTH_MARGINS, **below})
    return _save(fig, path)


def legend_beside(fig, handles: list, names: list[str], margins: dict | None = None,
                  place: Callable[[float], None] | None = None, fontsize: float = 7):
    """A legend right of the panels, never over them and without a gap, however long the names.

    The figure's width is the panels' (with their left margin and gaps); the legend is measured and the
    figure widened by its width, and the panels laid out in what it leaves: with `margins` (inches, see
    _margins; default DEPTH_MARGINS) around and between them, or by `place(right)`, given the right margin in
    inches. Entries beyond the figure's height go into more columns.
    """
    per_column = max(1, int(fig.get_figheight() * 72 / (fontsize * 1.75)))
    legend = fig.legend(handles, names, loc="center right", fontsize=fontsize, borderaxespad=0.3,
                        ncols=max(1, math.ceil(len(names) / per_column)))
    needed = legend.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi + 0.2
    fig.set_figwidth(fig.get_figwidth() + needed)
    if place is not None:
        place(needed)
    else:
        _margins(fig, right=needed, **(DEPTH_MARGINS if margins is None else margins))
    return legend


def _ink(background: tuple) -> str:
    """Black or white, whichever reads on `background` (tab20's light shades want black)."""
    r, g, b = matplotlib.colors.to_rgb(background)
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "white"


# ------------------------------------------------------------------ heatmap.png

def heatmap_missing(trials: pd.DataFrame, metric: str, epochs: int | None = None) -> str | None:
    """Why the heat map cannot be drawn, in one line (no finished trial has a value of `metric`: nothing has
    finished the sweep's epochs yet), or None. `trials`: the finished trials the heat map would pool."""
    if metric in trials and trials[metric].notna().any():
        return None
    at = f" its {epochs} epochs" if epochs else ""
    return (f"no heat map: no trial has finished{at} with a {metric} yet (it pools finished trials, as sweep "
            "report --by does)")


@_styled
def plot_heatmap(trials: pd.DataFrame, metric: str, factors: tuple[str, str], path: Path,
                 tune: list[str] | None = None) -> Path | None:
    """Mean of `metric` over two factors (all else and seeds pooled), values written in the cells; brighter is
    better (the colour scale reversed for a loss). With `tune`, each cell at its own best setting of those,
    chosen on `metric`, showing that setting's test figure (sweep.analysis.tuning: `sweep report --by F1,F2 --tune`).
    Nothing is drawn, and None returned, where no trial has a value (heatmap_missing says why). 800 x 600 px."""
    from sweep.analysis.report import RANK_METRICS, as_matrix, factor_matrix
    from sweep.analysis.tuning import reported, tuned_view

    if heatmap_missing(trials, metric):
        return None
    rows_f, cols_f = factors
    # The numbers of `sweep report --by F1,F2` (finished trials; values shown as the report shows them:
    # '0.9', 'auto', '-' where an optimizer does not set the hyper-parameter), in the same order.
    if tune:
        shown = reported(metric)
        matrix = as_matrix(tuned_view(trials, metric, tune, RANK_METRICS[metric], by=list(factors)), list(factors),
                            f"{shown}_mean").set_index(rows_f)
    else:
        shown, matrix = metric, factor_matrix(trials, metric, factors)
    fig, ax = plt.subplots(figsize=(8, 6))
    names = [str(i) for i in matrix.index]
    # Room for the widest row name (measured: it may be "kaiming_uniform" or "0.1") and the colour bar's
    # labels; tight_layout measured every label of the figure for this.
    renderer = fig.canvas.get_renderer()
    font = FontProperties(size=matplotlib.rcParams["ytick.labelsize"])
    widest = max((renderer.get_text_width_height_descent(n, font, ismath=False)[0] for n in names), default=0)
    _margins(fig, left=0.45 + widest / fig.dpi, right=0.15, bottom=0.6, top=0.4)
    higher_better = RANK_METRICS.get(shown, True)
    image = ax.imshow(matrix.values, cmap="viridis" if higher_better else "viridis_r", aspect="auto")
    ax.set_xticks(range(matrix.shape[1]), [str(c) for c in matrix.columns])
    ax.set_yticks(range(matrix.shape[0]), names)
    ax.set_xlabel(cols_f)
    ax.set_ylabel(rows_f)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            value = matrix.values[i, j]
            if not math.isnan(value):
                # viridis turns yellow: dark text there
                ax.text(j, i, f"{value:.3f}", ha="center", va="center", color=_ink(image.cmap(image.norm(value))),
                        fontsize=10)
    fig.colorbar(image, ax=ax, label=f"{shown} ({'higher' if higher_better else 'lower'} is better)")
    at_best = f", each at its best {', '.join(tune)}" if tune else ""
    ax.set_title(f"{shown} by {rows_f} x {cols_f}{at_best}", y=TITLE_Y)
    return _save(fig, path)


def draw_all(pictures: list[tuple[Path, Callable[[], object]]], fork: bool | None = None, forked: int = 1
             ) -> list[Path]:
    """Draw `pictures`, (path, function writing it) pairs, and return their paths. With `fork` (default:
    where there is a spare_core), the first `forked` are drawn, in order, in a forked process (sweep.view.forked)
    while this one draws the others, since a big sweep's curves alone are a large share of the drawing
    (docs/benchmarks.md, "Big sweeps (2-core CPU, 24 GiB)"). A picture that fails
    raises here, after the child is reaped."""
    if fork is None:
        fork = spare_core()
    forked = max(1, min(forked, len(pictures) - 1)) if len(pictures) > 1 else 1
    mine, theirs = pictures[:forked], pictures[forked:]

    def draw_mine():
        for _, draw in mine:
            draw()

    first = Forked(draw_mine, fork=fork and bool(theirs),
                   what=f"drawing {', '.join(str(path) for path, _ in mine)}")
    try:
        for _, draw in theirs:
            draw()
    except BaseException:
        first.reap()  # this process's error is the one to see
        raise
    first.result()
    return [path for path, _ in pictures]
