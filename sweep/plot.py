"""Pictures of a sweep (matplotlib, headless): curves, depth profiles, a heat map.

Each function takes the frames db/ returns and writes one PNG of a fixed
pixel size (figure inches x DPI), so tests can check what they get.

Big sweeps (hundreds of configurations) are drawn in about a second: the
configurations not named are one LineCollection per panel, the panels are
placed with fixed margins in inches (tight_layout measures every tick label,
about half of the drawing time), log axes are labelled without mathtext, the
PNGs are compressed lightly, and draw_all draws the biggest picture in a
second process.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.ticker import LogFormatter, LogLocator  # noqa: E402

from sweep.forked import Forked, spare_core  # noqa: E402

DPI = 100
# Titles sit at the top of their panels (y=1.0 of the axes): left to matplotlib, each title's position is
# worked out from its panel's tick labels, computed once more for it (a third of a depth plot's time).
TITLE_Y = 1.0
# zlib level of the PNGs: 1 writes a big sweep's pictures in a third of the time of the default 6, for
# files a few tens of kB larger.
PNG_COMPRESSION = 1
# matplotlib settings of every picture: glyphs as drawn, not hinted to the pixel grid (FreeType's hinting
# was a tenth of each picture's drawing time; the text looks the same at this size).
STYLE = {"text.hinting": "no_hinting"}


def _styled(draw: Callable) -> Callable:
    """A picture function drawn with STYLE, matplotlib's own settings left as they were."""
    @functools.wraps(draw)
    def styled(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)
    return styled


def _colors(labels: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab20" if len(labels) > 10 else "tab10")
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, pil_kwargs={"compress_level": PNG_COMPRESSION})
    plt.close(fig)
    return path


def _margins(fig, left: float, right: float, bottom: float, top: float, wspace: float = 0.0,
             hspace: float = 0.0) -> None:
    """Place the panels with margins and gaps in inches (what tight_layout finds for these pictures, without
    measuring every tick label: that took half of a big sweep's drawing). `right` from the figure's
    right edge."""
    width, height = fig.get_size_inches()
    grid = fig.axes[0].get_subplotspec().get_gridspec()  # the figure's panels, all of one grid
    rows, cols = grid.get_geometry()
    panel_w = (width - left - right - wspace * (cols - 1)) / cols
    panel_h = (height - bottom - top - hspace * (rows - 1)) / rows
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=wspace / panel_w, hspace=hspace / panel_h)


# Lines named per panel: the best and the worst half of this many configurations; the others are drawn
# thin and grey, one legend entry for all of them, so a sweep of hundreds stays readable.
MAX_NAMED = 10


def _in_order(column: pd.Series) -> list:
    """The distinct values of a column in order of appearance (unique(): iterating an Arrow-backed string
    column value by value took a tenth of a second on 40,000 rows)."""
    return list(column.unique())


def _named(labels: list[str], ranking: list[str] | None) -> list[str]:
    """The labels of one panel that get their own colour and legend entry: all when there are at most
    MAX_NAMED, else the MAX_NAMED / 2 best and worst by `ranking` (best first), best first."""
    if ranking is None or len(labels) <= MAX_NAMED:
        return labels
    mine = set(labels)
    ranked = [label for label in ranking if label in mine] + [label for label in labels if label not in ranking]
    half = MAX_NAMED // 2
    return ranked[:half] + ranked[-half:]


def _others(ax, lines: list, count: int) -> None:
    """Configurations not named: thin grey lines, one artist and one legend entry for all of them."""
    if lines:
        ax.add_collection(LineCollection(lines, colors="0.75", linewidths=0.6, zorder=1,
                                         label=f"{count} more configurations"))
        ax.autoscale_view()


@_styled
def plot_curves(curves: pd.DataFrame, path: Path, facet: str = "activation", ranking: list[str] | None = None,
                ) -> Path:
    """Test accuracy against images seen, one line per configuration (seeds as replicates: the mean, and a
    95% band where there are several), one panel per value of `facet`. `curves` is db's curves_frame.
    With more than MAX_NAMED configurations in a panel, the best and worst by `ranking` (labels, best
    first) are named, with their bands, and the others drawn thin and grey without bands. 1400 x 450 px
    per row of 4 panels."""
    from sweep.report import t95

    values = _in_order(curves[facet])
    cols = min(4, max(1, len(values)))
    rows = math.ceil(len(values) / cols)
    fig = plt.figure(figsize=(14, 4.5 * rows))
    grid = fig.add_gridspec(rows, cols)
    axes = np.array([fig.add_subplot(grid[i // cols, i % cols]) for i in range(len(values))])
    _margins(fig, left=0.75, right=0.15, bottom=0.6, top=0.35, wspace=0.2, hspace=0.95)
    xy = curves[["images_seen", "mean"]].to_numpy(dtype=float)
    n = curves["n"].to_numpy(dtype=float)
    t = np.array([t95(int(k)) if k > 1 else math.nan for k in range(int(n.max(initial=1)) + 1)])
    half = t[n.astype(int)] * curves["std"].to_numpy(dtype=float) / np.sqrt(n)
    by_value = curves.groupby(facet, sort=False).indices
    spread = np.nan_to_num(half)
    low, high = np.nanmin(xy[:, 1] - spread, initial=np.inf), np.nanmax(xy[:, 1] + spread, initial=-np.inf)
    low, high = (low, high) if low < high else (0.0, 1.0)
    for i, (ax, value) in enumerate(zip(axes, values)):
        rows_of = {label: by_value[value][idx]
                   for label, idx in curves.iloc[by_value[value]].groupby("label", sort=False).indices.items()}
        named = _named(list(rows_of), ranking)
        colors = _colors(named)
        rest = [idx for label, idx in rows_of.items() if label not in set(named)]
        _others(ax, [xy[idx] for idx in rest], len(rest))
        bands, band_colors = [], []
        for label in named:
            idx = rows_of[label]
            x, y, h = xy[idx, 0], xy[idx, 1], half[idx]
            shown = label.replace(f"{value}-", "", 1) if facet == "activation" else label
            ax.plot(x, y, marker="o" if len(idx) <= 30 else None, ms=3, color=colors[label], label=shown, zorder=3)
            keep = ~np.isnan(y)
            if not np.isnan(h[keep]).all():  # the band; none where a single seed is left
                x, y, h = x[keep], y[keep], np.nan_to_num(h[keep])
                bands.append(np.concatenate([np.column_stack([x, y - h]), np.column_stack([x, y + h])[::-1]]))
                band_colors.append(colors[label])
        # One collection for the panel's bands: fill_between per line re-scaled the axes each time.
        ax.add_collection(PolyCollection(bands, facecolors=band_colors, alpha=0.2, linewidths=0, zorder=2),
                          autolim=False)
        ax.set_ylim(low - 0.03 * (high - low), high + 0.03 * (high - low))  # one scale for all panels
        if i % cols:
            ax.tick_params(labelleft=False)
        ax.set_title(f"{facet} = {value}", y=TITLE_Y)
        ax.set_xlabel("training images seen")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes[::cols]:
        ax.set_ylabel("test accuracy")
    return _save(fig, path)


# Margins of the depth plot's panels, in inches (see _margins): room for log-scale tick labels left of each
# column, layer names under each row, a title over each panel.
DEPTH_MARGINS = {"left": 0.8, "bottom": 0.45, "top": 0.35, "wspace": 0.75, "hspace": 0.75}


def _plain_log_labels(ax) -> None:
    """Label a log y axis 1e-05 rather than with mathtext (10 to the -5): parsing mathtext cost a third of
    a second of every depth plot. Minor ticks at 2 and 5 times the powers of ten, not at every multiple:
    matplotlib builds each tick from several artists, about 2 ms apiece."""
    ax.yaxis.set_major_formatter(LogFormatter(10))
    ax.yaxis.set_minor_locator(LogLocator(10, subs=(2.0, 5.0)))
    ax.yaxis.set_minor_formatter(LogFormatter(10, labelOnlyBase=False))


@_styled
def plot_depth(depth: pd.DataFrame, path: Path, epochs: list[int], ranking: list[str] | None = None) -> Path:
    """Activation std (top) and weight-gradient std (bottom, log scale) per layer,
    input to output, one line per configuration (the mean over its seeds), one column per chosen epoch
    (the last snapshot of that epoch): Glorot & Bengio's figures for every cell of the grid. `depth` is
    db's depth_frame. With more than MAX_NAMED configurations, the best and worst by `ranking` are named
    and the others drawn thin and grey. 500 px per column x 900 px, plus 300 px for the legend (wider
    where its names need more)."""
    named = _named(_in_order(depth["label"]), ranking)
    colors = _colors(named)
    fig, axes = plt.subplots(2, len(epochs), figsize=(5 * len(epochs) + 3, 9), squeeze=False)
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
            _others(ax, [np.column_stack([x, values[i]]) for i in rest], len(rest))
            for label in named:
                if label in where:
                    ax.plot(x, values[where[label]], marker="o", color=colors[label], label=label, zorder=3)
            ax.set_xticks(range(len(order)), order)
            ax.set_title(f"{kind} std, epoch {epoch}", y=TITLE_Y)
            if kind == "gradient":
                ax.set_yscale("log")
                _plain_log_labels(ax)
            ax.grid(alpha=0.3)
    legend_beside(fig, *axes[0, 0].get_legend_handles_labels(), margins=DEPTH_MARGINS)
    return _save(fig, path)


def legend_beside(fig, handles: list, names: list[str], room: float = 3.0, margins: dict | None = None):
    """A legend right of the panels that never covers them, however long the names.

    The figure's rightmost `room` inches are meant for it; the legend is
    measured, the figure widened when it needs more, and the panels laid out
    in what it leaves, with `margins` (inches, see _margins; default
    DEPTH_MARGINS) around and between them. Entries beyond the figure's
    height go into more columns.
    """
    fontsize = 7
    per_column = max(1, int(fig.get_figheight() * 72 / (fontsize * 1.6)))
    legend = fig.legend(handles, names, loc="center right", fontsize=fontsize,
                        ncols=max(1, math.ceil(len(names) / per_column)))
    needed = legend.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi + 0.1
    if needed > room:
        fig.set_figwidth(fig.get_figwidth() - room + needed)
    _margins(fig, right=max(needed, room), **(DEPTH_MARGINS if margins is None else margins))
    return legend


@_styled
def plot_heatmap(trials: pd.DataFrame, metric: str, factors: tuple[str, str], path: Path) -> Path:
    """Mean of `metric` over two factors (all else and seeds pooled), values written in the cells. 800 x 600 px."""
    rows_f, cols_f = factors
    matrix = trials.pivot_table(index=rows_f, columns=cols_f, values=metric, aggfunc="mean", sort=False)
    fig, ax = plt.subplots(figsize=(8, 6))
    names = [str(i) for i in matrix.index]
    # Room for the widest row name (measured: it may be "kaiming_uniform" or "0.1") and the colour bar's
    # labels; tight_layout measured every label of the figure for this.
    renderer = fig.canvas.get_renderer()
    font = FontProperties(size=matplotlib.rcParams["ytick.labelsize"])
    widest = max((renderer.get_text_width_height_descent(n, font, ismath=False)[0] for n in names), default=0)
    _margins(fig, left=0.45 + widest / fig.dpi, right=0.15, bottom=0.6, top=0.4)
    image = ax.imshow(matrix.values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(matrix.shape[1]), [str(c) for c in matrix.columns])
    ax.set_yticks(range(matrix.shape[0]), names)
    ax.set_xlabel(cols_f)
    ax.set_ylabel(rows_f)
    low, high = image.get_clim()
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            value = matrix.values[i, j]
            if not math.isnan(value):
                light = (value - low) > 0.6 * (high - low)  # viridis turns yellow: dark text there
                ax.text(j, i, f"{value:.3f}", ha="center", va="center", color="black" if light else "white",
                        fontsize=10)
    fig.colorbar(image, ax=ax, label=metric)
    ax.set_title(f"{metric} by {rows_f} x {cols_f}", y=TITLE_Y)
    return _save(fig, path)


def draw_all(pictures: list[tuple[Path, Callable[[], object]]], fork: bool | None = None) -> list[Path]:
    """Draw `pictures`, (path, function writing it) pairs, and return their paths. With `fork` (default:
    where there is a spare_core), the first is drawn in a forked process (sweep.forked) while this one
    draws the others: a big sweep's curves alone take about a second. A picture that fails raises here,
    after the child is reaped."""
    if fork is None:
        fork = spare_core()
    first = Forked(pictures[0][1], fork=fork and len(pictures) > 1, what=f"drawing {pictures[0][0]}")
    try:
        for _, draw in pictures[1:]:
            draw()
    except BaseException:
        first.reap()  # this process's error is the one to see
        raise
    first.result()
    return [path for path, _ in pictures]
