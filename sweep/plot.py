"""Pictures of a sweep (matplotlib, headless): curves, depth profiles, a heat map.

Each function takes the frames db/ returns and writes one PNG of a fixed
pixel size (figure inches x DPI), so tests can check what they get.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

DPI = 100


def _colors(labels: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab20" if len(labels) > 10 else "tab10")
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


# Lines named per panel: the best and the worst half of this many configurations; the others are drawn
# thin and grey, one legend entry for all of them, so a sweep of hundreds stays readable.
MAX_NAMED = 10


def _named(labels: list[str], ranking: list[str] | None) -> list[str]:
    """The labels of one panel that get their own colour and legend entry: all when there are at most
    MAX_NAMED, else the MAX_NAMED / 2 best and worst by `ranking` (best first), best first."""
    if ranking is None or len(labels) <= MAX_NAMED:
        return labels
    mine = set(labels)
    ranked = [label for label in ranking if label in mine] + [label for label in labels if label not in ranking]
    half = MAX_NAMED // 2
    return ranked[:half] + ranked[-half:]


def _others(ax, lines: list[tuple], count: int) -> None:
    """Configurations not named: thin grey lines, one legend entry."""
    from matplotlib.collections import LineCollection

    if lines:
        ax.add_collection(LineCollection(lines, colors="0.75", linewidths=0.6, zorder=1,
                                         label=f"{count} more configurations"))
        ax.autoscale_view()


def plot_curves(curves: pd.DataFrame, path: Path, facet: str = "activation", ranking: list[str] | None = None,
                ) -> Path:
    """Test accuracy against images seen, one line per configuration (seeds as replicates: the mean, and a
    95% band where there are several), one panel per value of `facet`. `curves` is db's curves_frame.
    With more than MAX_NAMED configurations in a panel, the best and worst by `ranking` (labels, best
    first) are named and the others drawn grey. 1400 x 450 px per row of 4 panels."""
    from sweep.report import t95

    values = list(dict.fromkeys(curves[facet]))
    cols = min(4, max(1, len(values)))
    rows = math.ceil(len(values) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(14, 4.5 * rows), squeeze=False, sharey=True)
    for ax, value in zip(axes.flat, values):
        part = curves[curves[facet] == value]
        groups = {label: g for label, g in part.groupby("label", sort=False)}
        named = _named(list(groups), ranking)
        colors = _colors(named)
        rest = [g for label, g in groups.items() if label not in set(named)]
        _others(ax, [list(zip(g["images_seen"], g["mean"])) for g in rest], len(rest))
        for label in named:
            g = groups[label]
            shown = label.replace(f"{value}-", "", 1) if facet == "activation" else label
            ax.plot(g["images_seen"], g["mean"], marker="o" if len(g) <= 30 else None, ms=3, color=colors[label],
                    label=shown, zorder=3)
            half = g["n"].map(lambda n: t95(int(n)) if n > 1 else math.nan) * g["std"] / g["n"].pow(0.5)
            if half.notna().any():
                ax.fill_between(g["images_seen"], g["mean"] - half, g["mean"] + half, color=colors[label],
                                alpha=0.2, linewidth=0, zorder=2)
        ax.set_title(f"{facet} = {value}")
        ax.set_xlabel("training images seen")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes.flat[len(values):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("test accuracy")
    fig.tight_layout()
    return _save(fig, path)


def plot_depth(depth: pd.DataFrame, path: Path, epochs: list[int], ranking: list[str] | None = None) -> Path:
    """Activation std (top) and weight-gradient std (bottom, log scale) per layer,
    input to output, one line per configuration (the mean over its seeds), one column per chosen epoch
    (the last snapshot of that epoch): Glorot & Bengio's figures for every cell of the grid. `depth` is
    db's depth_frame. With more than MAX_NAMED configurations, the best and worst by `ranking` are named
    and the others drawn grey. 500 px per column x 900 px, plus 300 px for the legend (wider where its
    names need more)."""
    named = _named(list(dict.fromkeys(depth["label"])), ranking)
    colors = _colors(named)
    fig, axes = plt.subplots(2, len(epochs), figsize=(5 * len(epochs) + 3, 9), squeeze=False)
    for col, epoch in enumerate(epochs):
        part = depth[depth["epoch"] == epoch]
        for row, kind in enumerate(("activation", "gradient")):
            ax = axes[row, col]
            sub = part[part["kind"] == kind]
            order = list(dict.fromkeys(sub["layer"]))
            table = sub.pivot(index="label", columns="layer", values="std").reindex(columns=order)
            profiles = {label: table.loc[label] for label in dict.fromkeys(sub["label"])}
            rest = [p for label, p in profiles.items() if label not in set(named)]
            _others(ax, [list(zip(range(len(order)), p.values)) for p in rest], len(rest))
            for label in named:
                if label in profiles:
                    ax.plot(range(len(order)), profiles[label].values, marker="o", color=colors[label], label=label,
                            zorder=3)
            ax.set_xticks(range(len(order)), order)
            ax.set_title(f"{kind} std, epoch {epoch}")
            if kind == "gradient":
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
    legend_beside(fig, *axes[0, 0].get_legend_handles_labels())
    return _save(fig, path)


def legend_beside(fig, handles: list, names: list[str], room: float = 3.0):
    """A legend right of the panels that never covers them, however long the names.

    The figure's rightmost `room` inches are meant for it; the legend is
    measured, the figure widened when it needs more, and the panels laid out
    in what it leaves. Entries beyond the figure's height go into more columns.
    """
    fontsize = 7
    per_column = max(1, int(fig.get_figheight() * 72 / (fontsize * 1.6)))
    legend = fig.legend(handles, names, loc="center right", fontsize=fontsize,
                        ncols=max(1, math.ceil(len(names) / per_column)))
    needed = legend.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi + 0.1
    if needed > room:
        fig.set_figwidth(fig.get_figwidth() - room + needed)
    fig.tight_layout(rect=(0, 0, 1 - max(needed, room) / fig.get_figwidth(), 1))
    return legend


def plot_heatmap(trials: pd.DataFrame, metric: str, factors: tuple[str, str], path: Path) -> Path:
    """Mean of `metric` over two factors (all else and seeds pooled), values written in the cells. 800 x 600 px."""
    rows_f, cols_f = factors
    matrix = trials.pivot_table(index=rows_f, columns=cols_f, values=metric, aggfunc="mean", sort=False)
    fig, ax = plt.subplots(figsize=(8, 6))
    image = ax.imshow(matrix.values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(matrix.shape[1]), [str(c) for c in matrix.columns])
    ax.set_yticks(range(matrix.shape[0]), [str(i) for i in matrix.index])
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
    ax.set_title(f"{metric} by {rows_f} x {cols_f}")
    fig.tight_layout()
    return _save(fig, path)
