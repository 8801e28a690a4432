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


def plot_curves(epochs: pd.DataFrame, path: Path, facet: str = "activation") -> Path:
    """Test accuracy against images seen, one line per configuration (seeds
    averaged), one panel per value of `facet`. 1400 x 450 px per row of 4 panels."""
    values = list(dict.fromkeys(epochs[facet]))
    cols = min(4, max(1, len(values)))
    rows = math.ceil(len(values) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(14, 4.5 * rows), squeeze=False, sharey=True)
    colors = _colors(list(dict.fromkeys(epochs["label"])))
    for ax, value in zip(axes.flat, values):
        part = epochs[epochs[facet] == value]
        for label, g in part.groupby("label", sort=False):
            curve = g.groupby("images_seen")["test_acc"].mean()
            ax.plot(curve.index, curve.values, marker="o", ms=3, color=colors[label],
                    label=label.replace(f"{value}-", "", 1) if facet == "activation" else label)
        ax.set_title(f"{facet} = {value}")
        ax.set_xlabel("training images seen")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes.flat[len(values):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("test accuracy")
    fig.tight_layout()
    return _save(fig, path)


def plot_depth(stats: pd.DataFrame, path: Path, epochs: list[int]) -> Path:
    """Activation std (top) and weight-gradient std (bottom, log scale) per layer,
    input to output, one line per configuration, one column per chosen epoch
    (the last snapshot of that epoch): Glorot & Bengio's figures for every
    cell of the grid. 500 px per column x 900 px, plus 300 px for the legend
    (wider where its names need more)."""
    labels = list(dict.fromkeys(stats["label"]))
    colors = _colors(labels)
    fig, axes = plt.subplots(2, len(epochs), figsize=(5 * len(epochs) + 3, 9), squeeze=False)
    for col, epoch in enumerate(epochs):
        part = stats[stats["epoch"] == epoch]
        part = part[part["step"] == part.groupby("trial")["step"].transform("max")]
        for row, kind in enumerate(("activation", "gradient")):
            ax = axes[row, col]
            sub = part[part["kind"] == kind].sort_values("layer_stat_id")
            order = list(dict.fromkeys(sub["layer"]))
            for label, g in sub.groupby("label", sort=False):
                profile = g.groupby("layer", sort=False)["std"].mean().reindex(order)
                ax.plot(range(len(order)), profile.values, marker="o", color=colors[label], label=label)
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
