"""The pictures of a sweep, as `sweep plot` draws them and `sweep page` shows them: what to read from the
database (`read_pictures`), and which pictures that makes, each with the function that draws it
(`pictures_to_draw`). The drawing itself is plot.py's and tuning_plot.py's; this module only decides what
is drawn, from what, into which file, so that the command and the page draw the same pictures.

    data = read_pictures(engine, "fashion-activations", PictureOptions("final_test_acc", 3))
    todo = pictures_to_draw(data, options, Path("plots"))   # after `import sweep.view.plot` (matplotlib)
    draw_all(todo.pictures, forked=todo.forked)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from sweep.analysis.factors import ReportError


@dataclass(frozen=True)
class PictureOptions:
    """What the pictures are asked for: the ranking metric and the sweep's epochs; the curves' panels
    (`facet`), the dynamics' statistic, the heat map's two factors, an epoch to read every trial at (None:
    the sweep's), the epochs of the depth profiles (None: the first and the last with statistics), and the
    nuisance hyper-parameters each configuration is tuned over (the heat map at each cell's best, and a
    tuning picture per factor)."""

    metric: str
    epochs: int
    facet: str = "activation"
    stat: str = "std"
    heatmap: tuple[str, str] = ("activation", "init")
    at_epoch: int | None = None
    depth_epochs: tuple[int, ...] | None = None
    tune: tuple[str, ...] = ()


@dataclass(frozen=True)
class PictureData:
    """What the pictures are drawn from: the epochs of the depth profiles (empty before any statistics), the
    trials with their figures, the configurations best first, the curves, the depth profiles and the
    dynamics of the configurations the pictures name."""

    chosen: list[int]
    results: pd.DataFrame
    ranking: list[str]
    curves: pd.DataFrame
    depth: pd.DataFrame | None
    dynamics: pd.DataFrame | None


def read_pictures(engine, sweep: str, options: PictureOptions, results: pd.DataFrame | None = None,
                  curves: pd.DataFrame | None = None) -> PictureData:
    """Everything the pictures need, read from the database (db.series.shown_configurations: the dynamics of
    a big sweep's best and worst only); `results` (results.sweep_results) and `curves` (curves_frame, by
    options.facet) where the caller has read them already. ReportError for depth epochs without statistics. Run forked, it opens connections of
    its own (db.engine, at fork)."""
    from sweep.db.queries import curves_frame, depth_frame, stats_epochs
    from sweep.db.series import dynamics_frame, shown_configurations
    from sweep.analysis.report import configuration_ranking
    from sweep.analysis.results import sweep_results

    available = stats_epochs(engine, sweep)
    chosen: list[int] = []
    if available:
        last = options.at_epoch if options.at_epoch in available else available[-1]
        chosen = list(options.depth_epochs) if options.depth_epochs else sorted({available[0], last})
        missing = [e for e in chosen if e not in available]
        if missing:
            raise ReportError(f"--epochs: no statistics for epoch {missing[0]}; available: "
                              f"{', '.join(map(str, available))}")
    if results is None:
        results = sweep_results(engine, sweep, options.epochs, at_epoch=options.at_epoch)
    ranking = configuration_ranking(results, options.metric)  # best first, for the lines a big sweep names
    if curves is None:
        curves = curves_frame(engine, sweep, options.facet)
    depth = dynamics = None
    if chosen:
        shown = shown_configurations(list(curves["label"].unique()), ranking)
        depth = depth_frame(engine, sweep, chosen)
        dynamics = dynamics_frame(engine, sweep, options.stat, shown)
    return PictureData(chosen, results, ranking, curves, depth, dynamics)


@dataclass(frozen=True)
class PicturesToDraw:
    """The pictures, (path, the function that draws it), in the order `sweep plot` draws them: the first
    `forked` in a forked process where a core is spare (plot.draw_all), the others in this one; a caption
    per path; the lines saying why a picture is left out; the palette."""

    pictures: list[tuple[Path, Callable[[], object]]]
    forked: int
    captions: dict[Path, str]
    missing: list[str]
    colours: dict  # label -> plot.Look, the page's own charts' colours too


def pictures_to_draw(data: PictureData, options: PictureOptions, folder: Path) -> PicturesToDraw:
    """The sweep's pictures, to be drawn into `folder`, one colour per configuration in every picture.
    Imports matplotlib (plot.py)."""
    from sweep.view.plot import heatmap_missing, plot_curves, plot_depth, plot_heatmap, sweep_palette
    from sweep.view.plot_dynamics import plot_dynamics

    metric, facet, ranking, tune = options.metric, options.facet, data.ranking, list(options.tune)
    colours = sweep_palette(data.curves, facet, ranking)
    accuracy, heatmap, depth, dynamics = (folder / f"{n}.png" for n in ("accuracy", "heatmap", "depth", "dynamics"))
    pictures = [(accuracy, lambda: plot_curves(data.curves, accuracy, facet, ranking, colours))]
    captions = {accuracy: f"test accuracy against training images seen, a panel per {facet}"}
    missing = []
    finished = data.results[data.results["finished"]]
    why = heatmap_missing(finished, metric, options.at_epoch or options.epochs)
    if why is None:
        pictures.append((heatmap, lambda: plot_heatmap(finished, metric, tuple(options.heatmap), heatmap, tune)))
        at_best = f", each at its best {', '.join(tune)}" if tune else ""
        captions[heatmap] = f"mean {metric} by {' x '.join(options.heatmap)}{at_best}"
    forked = len(pictures)
    if data.chosen:
        pictures += [
            (depth, lambda: plot_depth(data.depth, depth, data.chosen, ranking, colours)),
            (dynamics, lambda: plot_dynamics(data.dynamics, dynamics, options.stat, ranking, colours,
                                             of=data.curves["label"].nunique(), metric=metric))]
        captions[depth] = f"each layer's std at epochs {', '.join(map(str, data.chosen))}"
        captions[dynamics] = f"each layer's activation {options.stat} and weight-gradient std over training"
    else:
        missing.append("no depth profiles or layer dynamics: the sweep has no statistics yet")
    if why is not None:
        missing.append(why)
    if tune:
        from sweep.analysis.report import RANK_METRICS
        from sweep.view.tuning_plot import plot_tuning, tuned_factors_to_draw

        for i, factor in enumerate(tuned_factors_to_draw(data.results, tune)):
            target = folder / ("tuning.png" if i == 0 else f"tuning-{factor}.png")
            pictures.append((target, lambda target=target, factor=factor: plot_tuning(
                data.results, metric, factor, tune, RANK_METRICS[metric], target, colours, facet)))
            captions[target] = f"{metric} of every trial against {factor}, each group's chosen {factor} starred"
    return PicturesToDraw(pictures, forked, captions, missing, colours)
