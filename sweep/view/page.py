"""One HTML file of a whole study (`sweep page`): the spec, where and how it ran, the ranking as `sweep report`
gives it, the `--by` matrix of each pair of factors, every picture `sweep plot` draws, and a section per
configuration (its seeds, its accuracy curve with the seeds' band, its layers over training, its errors).

The file opens offline: the pictures are PNG data URIs, the per-configuration charts small inline SVG, the
sorting and filtering of the table a few lines of inline script, no framework, nothing fetched. Everything
shown comes from the library functions the report and the pictures use (report.build_report, factor_matrix,
stopping_savings, db.queries' frames, plot's pictures); the page only lays them out, and renders whatever
columns build_report returns, with the terminal's human view (render.human_view, render.cell_texts).
The HTML building blocks (tables, charts, style sheet, script) are sweep.view.page_html's; this module decides
what the page shows and reads it.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from sweep.db.flags import FlagThresholds
from sweep.view.page_html import (OTHER_COLOUR, SCRIPT, STYLE, accuracy_chart, anchor, dynamics_charts, esc, filters,
                             findings_list, hex_colour, html_table, join_table, png_uri, table_parts)

if TYPE_CHECKING:
    from sweep.analysis.report import Report

# Snapshots per layer line of a configuration's dynamics chart (db.series.dynamics_frame's max_points).
DYNAMICS_POINTS = 24
# The most characters of a trial's error text a page shows (the end of a traceback says most).
ERROR_TEXT = 4000
# Factors never crossed in a --by matrix: seeds are replicates, status is an outcome.
NOT_CROSSED = ("seed", "status")


@dataclass(frozen=True)
class PageOptions:
    """What a page is asked for: the ranking metric, the sweep's epochs (every trial is read there), a
    threshold (test accuracy) where the ranking should count images to it, the pictures' options as `sweep plot`
    takes them, the flags' thresholds, and the command that regenerates the page (shown in its footer)."""

    metric: str
    epochs: int
    threshold: float | None = None
    facet: str = "activation"
    heatmap: tuple[str, str] = ("activation", "init")
    stat: str = "std"
    flags: FlagThresholds = field(default_factory=FlagThresholds)
    command: str = ""


class EmptySweep(ValueError):
    """A sweep none of whose trials has recorded an epoch: nothing to show yet."""


def ranking_columns(view: pd.DataFrame, metric: str) -> list[str]:
    """The ranking's columns on the page: every column of the human view (`sweep report --wide`), in its order,
    less those with nothing to say: the ones the terminal leaves out for that (render.default_columns: gain
    all 1, status all completed, no flag, no error, ...) and, of the ones it leaves out as extras
    (render.EXTRA_COLUMNS: the other figures, gain_value), those the same in every row. `config` always
    stays: it links to the configuration's section."""
    from sweep.analysis.render import EXTRA_COLUMNS, cell_texts, default_columns

    terse = set(default_columns(view, metric))
    texts = cell_texts(view)
    names = list(view.columns)

    def differs(column: str) -> bool:
        j = names.index(column)
        return len({row[j] for row in texts}) > 1

    return [c for c in default_columns(view, metric, wide=True)
            if c in terse or c == "config" or (c in EXTRA_COLUMNS and differs(c))]



# ------------------------------------------------------------------ the header

def _when(value) -> str:
    return "-" if pd.isna(value) else pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


def _counts(values: pd.Series, missing: str) -> str:
    """'cpu: 15, cuda:0: 1' (most first), or `missing` where no trial has a value."""
    counts = values.dropna().value_counts(sort=True)
    if counts.empty:
        return missing
    return ", ".join(f"{k}: {n}" for k, n in counts.items())


def run_facts(trials: pd.DataFrame, results: pd.DataFrame, epochs: int, per_epoch: int | None) -> list[tuple[str, str]]:
    """The header's facts of how a sweep ran, from its trials (db.queries.trials_frame) and their figures:
    when, the wall time from the first start to the last end, the trials by status, the devices, nodes and
    bundles they trained on, the images trained, and what early stopping saved (report.stopping_savings)."""
    from sweep.analysis.report import stopping_savings

    started, finished = trials["started_at"].min(), trials["finished_at"].max()
    wall = (pd.Timestamp(finished) - pd.Timestamp(started)).total_seconds() \
        if not (pd.isna(started) or pd.isna(finished)) else None
    statuses = ", ".join(f"{n} {s}" for s, n in trials["status"].value_counts(sort=True).items())
    bundles = trials["bundle"].dropna()
    fused = (f"{bundles.nunique()} bundles of fused trials ({len(bundles)} trials)" if len(bundles)
             else "none: each trial trained alone")
    facts = [("ran", f"{_when(started)} to {_when(finished)}"),
             ("wall time", "-" if wall is None else f"{_duration(wall)} (first start to last end)"),
             ("trials", f"{len(trials)}: {statuses}"),
             ("devices", _counts(trials["device"], "- (not recorded)")),
             ("nodes", _counts(trials["node"], "- (outside Ray)")),
             ("bundles", fused),
             ("images trained", f"{int(trials['images_seen'].fillna(0).sum()):,}")]
    if results["stopped_early"].any() and per_epoch:
        saved, grid = stopping_savings(results, epochs, per_epoch)
        facts.append(("early stopping saved", f"{saved:,} of the grid's {grid:,} training images ({saved / grid:.1%})"))
    else:
        facts.append(("early stopping saved", "nothing: no trial was stopped early"))
    return facts


def _dataset(spec: dict) -> str:
    data = spec.get("dataset")
    if isinstance(data, dict):
        name = data.get("name", "?")
        extra = ", ".join(f"{k} {v}" for k, v in data.items() if k not in ("name", "data_dir") and v is not None)
        return f"{name} ({extra})" if extra else str(name)
    return "-" if data is None else str(data)


def _model(spec: dict) -> str:
    model = spec.get("model")
    return str(model.get("name", "-")) if isinstance(model, dict) else str(spec.get("model", "-"))


# ------------------------------------------------------------------ the page

@dataclass(frozen=True)
class Study:
    """What a page shows of a sweep, read once: its spec, its trials (db.queries.trials_frame), each trial's
    figures (results.sweep_results), each configuration's test accuracy curve (db.queries.curves_frame), the
    ranking and each seed's row (build_report's), the ranking at each configuration's best setting of the
    spec's `tune:` (None where it tunes nothing), the factors whose values differ among finished trials, and
    what the study found (build_report's findings: `sweep report --findings`)."""

    spec: dict
    trials: pd.DataFrame
    results: pd.DataFrame
    curves: pd.DataFrame
    report: Report
    seeds: pd.DataFrame
    tune: tuple[str, ...]
    tuned: Report | None
    varied: list[str]
    findings: Report

    @property
    def x_max(self) -> float:
        """The most images any configuration's curve has seen: every chart's x axis ends there."""
        return float(self.curves["images_seen"].max()) or 1.0


def read_study(engine, sweep: str, options: PageOptions, curves: pd.DataFrame) -> Study:
    """The sweep's figures a page shows (`curves`: its db.queries.curves_frame, already read). ReportError for
    options the sweep cannot answer."""
    from sweep.db.queries import sweep_spec, trials_frame
    from sweep.analysis.factors import check_factors, sweep_factors
    from sweep.analysis.report import ReportOptions, build_report
    from sweep.analysis.results import sweep_results
    from sweep.analysis.tuning import spec_ranges

    metric, epochs = options.metric, options.epochs
    spec = sweep_spec(engine, sweep)
    trials = trials_frame(engine, sweep)
    results = sweep_results(engine, sweep, epochs, options.threshold)
    check_factors("--heatmap", list(options.heatmap), results)
    report_options = ReportOptions(metric, epochs, threshold=options.threshold, flags=options.flags)
    report = build_report(engine, sweep, report_options)
    seeds = build_report(engine, sweep, ReportOptions(metric, epochs, threshold=options.threshold, trials=True,
                                                      flags=options.flags)).table
    tune = tuple(spec.get("tune") or ())
    tuned = build_report(engine, sweep, ReportOptions(
        metric, epochs, threshold=options.threshold, flags=options.flags, tune=tune, ranges=spec_ranges(spec))
        ) if tune else None
    factors = [f for f in sweep_factors(results) if f not in NOT_CROSSED]
    varied = [f for f in factors if results.loc[results["finished"], f].astype(str).nunique() > 1]
    findings = build_report(engine, sweep, ReportOptions(metric, epochs, threshold=options.threshold,
                                                         flags=options.flags, tune=tune, ranges=spec_ranges(spec),
                                                         findings=True))
    return Study(spec, trials, results, curves, report, seeds, tune, tuned, varied, findings)


def draw_pictures(engine, sweep: str, options: PageOptions,
                  study: Study) -> tuple[list[tuple[str, str]], list[str], dict]:
    """Every picture `sweep plot` draws with its default options, by the same functions: (each picture's
    caption and PNG data URI, the notes on pictures not drawn, each configuration's plot.Look)."""
    from sweep.view.pictures import PictureOptions, pictures_to_draw, read_pictures
    from sweep.view.plot import draw_all

    picture_options = PictureOptions(options.metric, options.epochs, options.facet, options.stat,
                                     tuple(options.heatmap), tune=study.tune)
    with tempfile.TemporaryDirectory(prefix="sweep-page-") as tmp:
        data = read_pictures(engine, sweep, picture_options, study.results, study.curves)
        todo = pictures_to_draw(data, picture_options, Path(tmp))
        written = draw_all(todo.pictures, forked=todo.forked)
        pictures = [(todo.captions[path], png_uri(path)) for path in sorted(written, key=lambda p: p.name)]
    return pictures, todo.missing, todo.colours


def build_page(engine, sweep: str, options: PageOptions, progress: Callable[[str], None] | None = None) -> str:
    """The whole study as one self-contained HTML document (see the module's docstring). EmptySweep where no
    trial has recorded an epoch yet; report.ReportError for options the sweep cannot answer. `progress` is
    told each stage as it starts (sweep page prints it on stderr).

    Example: build_page(engine, "fashion-activations", PageOptions("final_test_acc", 3))
    """
    from sweep.db.queries import curves_frame, images_per_epoch
    from sweep.db.series import dynamics_frame

    tell = progress or (lambda _: None)
    curves = curves_frame(engine, sweep, options.facet)
    if curves.empty:  # before any progress line: the error is the one line
        raise EmptySweep(f"sweep {sweep} has no results yet: no trial has recorded an epoch")
    tell("reading the sweep")
    study = read_study(engine, sweep, options, curves)
    tell("drawing the pictures")
    pictures, missing, colours = draw_pictures(engine, sweep, options, study)
    tell("writing the configurations' sections")
    dynamics = dynamics_frame(engine, sweep, options.stat, max_points=DYNAMICS_POINTS)
    per_epoch = images_per_epoch(engine, sweep)
    return "\n".join([*header_section(sweep, options, study, per_epoch), *findings_section(study),
                      *ranking_section(options, study),
                      *tuned_section(options, study), *matrices_section(options, study),
                      *pictures_section(pictures, missing),
                      *configurations_section(options, study, dynamics, colours), *footer(sweep, options)])


def header_section(sweep: str, options: PageOptions, study: Study, per_epoch: int | None) -> list[str]:
    """The document's head and the page's header: the sweep's name and the ranking's title, the facts of what
    ran and how (run_facts), and the spec, folded."""
    import yaml

    spec = study.spec
    facts = [("data set", _dataset(spec)), ("model", _model(spec)), ("epochs", str(options.epochs)),
             ("metric", options.metric), *run_facts(study.trials, study.results, options.epochs, per_epoch)]
    spec_text = yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=100) if spec else "(not stored)"
    return ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width,initial-scale=1">',
            f"<title>sweep {esc(sweep)}</title><style>{STYLE}</style></head><body>",
            f"<header><h1>sweep {esc(sweep)}</h1><p>{esc(study.report.title)}</p>",
            '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts) + "</dl>",
            f"<details><summary>the spec (as the sweep last ran it)</summary><pre>{esc(spec_text)}</pre></details>",
            "</header>"]


def findings_section(study: Study) -> list[str]:
    """What the study found, at the top: `sweep report --findings`'s numbered lines under its title."""
    return ['<section id="findings"><h2>What this study found</h2>',
            f'<p class="note">as <code>sweep report --findings</code> gives it: {esc(study.findings.title)}.</p>',
            findings_list(study.findings.table), "</section>"]


def ranking_section(options: PageOptions, study: Study) -> list[str]:
    """The ranking as `sweep report --wide` gives it (ranking_columns), sortable, with a filter per factor."""
    from sweep.analysis.render import human_view

    table = study.report.table
    view = human_view(table)
    columns = ranking_columns(view, options.metric)
    factors = ["activation", "init", "gain", "optimizer", "lr", "model", *table.attrs.get("hyper", ()), "status"]
    ranking = html_table(table, "ranking sortable", options.flags, columns).replace(
        '<table class="ranking sortable">', '<table id="ranking" class="ranking sortable">', 1)
    return ['<section id="ranking-section"><h2>Ranking</h2>',
            '<p class="note">as <code>sweep report --wide</code> gives it, less the columns that are the same in '
            'every row; click a column\'s name to sort by it, again for the other way. Hover over a flag for what '
            'it means.</p>',
            filters(view, factors, columns),
            # Words wrap whole: a table too wide for the window (a sweep of many hyper-parameters) scrolls on its own.
            '<div class="wide">' + ranking + "</div>",
            "</section>"]


def tuned_section(options: PageOptions, study: Study) -> list[str]:
    """The fair comparison: each configuration at its best setting of the spec's `tune:` (nothing where the
    spec tunes nothing)."""
    if study.tuned is None:
        return []
    return ['<section id="tuned"><h2>Each configuration at its best ' + esc(", ".join(study.tune)) + "</h2>"
            f'<p class="note">as <code>sweep report</code> gives it with the spec\'s <code>tune:</code>: '
            f'{esc(study.tuned.title)}; <code>edge</code> marks a choice at the edge of what was tried, '
            '<code>flat</code> settings that all tie within noise.</p>'
            '<div class="wide">' + html_table(study.tuned.table, "ranking", options.flags, link=None) + "</div>"
            "</section>"]


def matrices_section(options: PageOptions, study: Study) -> list[str]:
    """The `--by` matrix of each pair of the factors that vary (nothing where fewer than two do)."""
    from sweep.analysis.report import factor_matrix

    if len(study.varied) < 2:
        return []
    metric = options.metric
    out = [f'<section id="matrices"><h2>{esc(metric)} by each pair of factors</h2>'
           f'<p class="note">as <code>sweep report --by F1,F2</code>: the mean over the finished trials with '
           f'each pair of values, every other factor and seed pooled.</p><div class="charts">']
    for pair in combinations(study.varied, 2):
        matrix = factor_matrix(study.results, metric, pair, text=True).reset_index()
        matrix.attrs["factors"] = [pair[0]]
        out.append(f"<div><h3>{esc(pair[0])} x {esc(pair[1])}</h3>"
                   + html_table(matrix, "matrix", options.flags, link=None) + "</div>")
    out.append("</div></section>")
    return out


def pictures_section(pictures: list[tuple[str, str]], missing: list[str]) -> list[str]:
    """Every picture `sweep plot` draws (caption, data URI), then a note per picture it could not draw."""
    out = ['<section id="pictures" class="pictures"><h2>Pictures</h2>'
           '<p class="note">as <code>sweep plot</code> draws them.</p>']
    for caption, uri in pictures:
        out.append(f'<figure><img src="{uri}" alt="{esc(caption)}"><figcaption>{esc(caption)}</figcaption></figure>')
    out += [f'<p class="note">{esc(m)}</p>' for m in missing]
    out.append("</section>")
    return out


def configurations_section(options: PageOptions, study: Study, dynamics: pd.DataFrame, colours: dict) -> list[str]:
    """A section per configuration, in the ranking's order: its seeds' rows, its charts (accuracy in its
    pictures' colour, its layers over training from `dynamics`, db.series.dynamics_frame's rows), its trials'
    errors."""
    from sweep.analysis.render import default_columns, human_view

    seeds = study.seeds
    seed_columns = [c for c in default_columns(human_view(seeds), options.metric) if c != "config"]
    if "trial" in seeds and "trial" not in seed_columns:
        seed_columns.insert(1, "trial")
    errors = dict(zip(study.trials["name"], study.trials["error"]))
    curve_of = dict(tuple(study.curves.groupby("label", sort=False)))
    dynamics_of = dict(tuple(dynamics.groupby("label", sort=False))) if len(dynamics) else {}
    labels = list(study.report.table["config"]) if "config" in study.report.table else list(curve_of)
    seeds_of = seeds.groupby("config", sort=False).indices if "config" in seeds else {}
    # Every seed's row at once, each configuration's taken from them: per configuration, the human view's
    # pandas work would be most of a big sweep's page time (docs/benchmarks.md, "sweep page on a big sweep").
    seed_head, seed_rows = table_parts(seeds, options.flags, seed_columns, link=None)
    out = ['<section id="configurations"><h2>Configurations</h2>']
    for rank, label in enumerate(labels, 1):
        out.append(f'<section class="config" id="{esc(anchor(label))}"><h3>{rank}. {esc(label)}</h3>')
        rows = np.sort(seeds_of[label]) if label in seeds_of else None
        if rows is not None:
            out.append(join_table("seeds sortable", seed_head, [seed_rows[i] for i in rows]))
        charts = []
        if label in curve_of:
            colour = hex_colour(colours[label].color) if label in colours else OTHER_COLOUR
            charts.append(accuracy_chart(curve_of[label], study.x_max, colour))
        if label in dynamics_of:
            charts.append(dynamics_charts(dynamics_of[label], options.stat, study.x_max))
        out.append(f'<div class="charts">{"".join(charts)}</div>')
        if rows is not None and "trial" in seeds:
            out += _error_texts(seeds["trial"].iloc[rows], errors)
        out.append("</section>")
    out.append("</section>")
    return out


def _error_texts(names, errors: dict) -> list[str]:
    """A folded error per trial of `names` that has one in `errors` (trial name -> text), its end where long."""
    out = []
    for name in names:
        text = errors.get(name)
        if isinstance(text, str) and text.strip():
            text = text if len(text) <= ERROR_TEXT else "…" + text[-ERROR_TEXT:]
            out.append(f'<details class="error"><summary>{esc(name)}: its error</summary>'
                       f"<pre>{esc(text)}</pre></details>")
    return out


def footer(sweep: str, options: PageOptions) -> list[str]:
    """The version that wrote the page, the command that regenerates it, and the page's script."""
    from sweep.cli_parser import package_version

    return [f"<footer>Written by sweep {esc(package_version())}. To regenerate this page: "
            f"<code>{esc(options.command or f'sweep page {sweep}')}</code></footer>",
            f"<script>{SCRIPT}</script></body></html>\n"]


def write_page(page: str, path: Path) -> Path:
    """Write a page to `path` (its folder made where missing) in one step: a reader never sees half of it, and a
    failure leaves no file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
