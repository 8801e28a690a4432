"""One HTML file of a whole study (`sweep page`): the spec, where and how it ran, the ranking as `sweep report`
gives it, the `--by` matrix of each pair of factors, every picture `sweep plot` draws, and a section per
configuration (its seeds, its accuracy curve with the seeds' band, its layers over training, its errors).

The file opens offline: the pictures are PNG data URIs, the per-configuration charts small inline SVG, the
sorting and filtering of the table a few lines of inline script, no framework, nothing fetched. Everything
shown comes from the library functions the report and the pictures use (report.build_report, factor_matrix,
stopping_savings, db.queries' frames, plot's pictures); the page only lays them out, and renders whatever
columns build_report returns, with the terminal's human view (render.human_view, render.cell_texts).
"""
from __future__ import annotations

import base64
import html
import math
import os
import tempfile
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from sweep.db.flags import FlagThresholds

# What each pathology flag means, keyed by the flag's name as db/flags.py writes it, with the thresholds the
# page was built with. They live here, not beside the flags' definitions in db/flags.py, only because that
# file was being changed by another branch when the page was written; they belong there.
FLAG_DESCRIPTIONS = {
    "saturated": "a bounded activation layer (sigmoid, tanh, softsign) had more than {saturated:g} of its values "
                 "within 3% of an asymptote",
    "dead": "a layer had more than {dead:g} of its units zero for a whole batch (ReLU-like activations)",
    "vanishing": "the first weight layer's gradient std over the last one's fell below {vanishing:g}",
    "exploding": "the first weight layer's gradient std over the last one's rose above {exploding:g}; on layer "
                 "'loss': the train loss rose above {exploding:g} times the loss before training",
    "chance": "test accuracy stayed within {chance_margin:g} of 1/classes from this epoch to the last one read",
    "diverged": "the loss became NaN or infinite at this epoch; the trial's figures are read before it",
}
FLAG_NOTATION = "@E: the first epoch it showed; (k/n): how many of the configuration's n seeds showed it"

# Points per line of a configuration's charts: a 1,000-trial, 200-epoch sweep's page stays a few MB.
CHART_POINTS = 60
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


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _header_cell(name: str) -> str:
    """A column name that may break after its underscores (the table fits a 1280-pixel window)."""
    return "_<wbr>".join(_esc(part) for part in name.split("_"))


def _anchor(label: str) -> str:
    return "config-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in label)


def _flag_cell(text: str, thresholds: FlagThresholds) -> str:
    """A flags cell ('chance@1 (2/2), dead fc1@1 (1/2)'), each flag in a span whose tooltip explains it."""
    if not text:
        return ""
    parts = []
    for item in text.split(", "):
        name = item.split("@")[0].split(" ")[0]
        what = FLAG_DESCRIPTIONS.get(name)
        title = f"{name}: {what.format(**vars(thresholds))}. {FLAG_NOTATION}" if what else item
        parts.append(f'<span class="flag" data-flag="{_esc(name)}" title="{_esc(title)}">{_esc(item)}</span>')
    return ", ".join(parts)


def _sort_values(typed: pd.DataFrame, column: str) -> list[str | None]:
    """The number each cell of `column` sorts by, from the typed table (a range by its lowest value); None: by
    its text. One pass per column: per cell, pandas' lookups were most of a big sweep's page."""
    source = column if column in typed else f"{column}_min" if f"{column}_min" in typed else None
    if source is None or not pd.api.types.is_numeric_dtype(typed[source]) or pd.api.types.is_bool_dtype(typed[source]):
        return [None] * len(typed)
    return [None if v != v else repr(float(v)) for v in typed[source].astype(float).tolist()]


def _table_parts(typed: pd.DataFrame, thresholds: FlagThresholds, columns: list[str] | None = None,
                 link: str | None = "config") -> tuple[str, list[str]]:
    """(the header row's cells, each row as HTML) of html_table."""
    from sweep.render import cell_texts, human_view

    view = human_view(typed)
    if columns is not None:
        view = view[[c for c in columns if c in view]]
    names = list(view.columns)
    head = "".join(f'<th title="{_esc(c)}">{_header_cell(c)}</th>' for c in names)
    rows = []
    sort_by = {c: _sort_values(typed, c) for c in names}
    for i, cells in enumerate(cell_texts(view)):
        tds = []
        for c, text in zip(names, cells):
            v = sort_by[c][i]
            attrs = f' data-v="{v}"' if v is not None else ""
            if c == "flags":
                inner = _flag_cell(text, thresholds)
            elif c == link and text != "-":
                inner = f'<a href="#{_esc(_anchor(text))}">{_esc(text)}</a>'
            else:
                inner = _esc(text)
            tds.append(f"<td{attrs}>{inner}</td>")
        rows.append("<tr>" + "".join(tds) + "</tr>")
    return head, rows


def _table(css: str, head: str, rows: list[str]) -> str:
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>' + "\n".join(rows) + "</tbody></table>"


def html_table(typed: pd.DataFrame, css: str, thresholds: FlagThresholds, columns: list[str] | None = None,
               link: str | None = "config") -> str:
    """A report table (build_report's, typed) as HTML: the human view's columns (all of them, or `columns`) and
    cells as the terminal shows them (render.cell_texts), each numeric cell with the number it sorts by
    (data-v), each flag with its tooltip, the `link` column's cells linking to their configuration's section."""
    return _table(css, *_table_parts(typed, thresholds, columns, link))


def ranking_columns(view: pd.DataFrame, metric: str) -> list[str]:
    """The ranking's columns on the page: every column of the human view (`sweep report --wide`), in its order,
    less those with nothing to say: the ones the terminal leaves out for that (render.default_columns: gain
    all 1, status all completed, no flag, no error, ...) and, of the ones it leaves out as extras
    (render.EXTRA_COLUMNS: the other figures, gain_value), those the same in every row. `config` always
    stays: it links to the configuration's section."""
    from sweep.render import EXTRA_COLUMNS, cell_texts, default_columns

    terse = set(default_columns(view, metric))
    texts = cell_texts(view)
    names = list(view.columns)

    def differs(column: str) -> bool:
        j = names.index(column)
        return len({row[j] for row in texts}) > 1

    return [c for c in default_columns(view, metric, wide=True)
            if c in terse or c == "config" or (c in EXTRA_COLUMNS and differs(c))]


def _filters(view: pd.DataFrame, factors: list[str], columns: list[str]) -> str:
    """A select per factor column (of the table's `columns`) whose values differ from row to row: the ranking's
    rows with that value."""
    from sweep.render import cell_texts

    selects = []
    shown = [f for f in factors if f in columns and view[f].astype(str).nunique() > 1]
    if not shown:
        return ""
    texts = cell_texts(view[shown])
    for j, factor in enumerate(shown):
        values = list(dict.fromkeys(row[j] for row in texts))
        options = '<option value="">all</option>' + "".join(f'<option>{_esc(v)}</option>' for v in values)
        selects.append(f'<label>{_esc(factor)} <select data-col="{columns.index(factor)}">{options}</select></label>')
    return '<div class="filters" data-for="ranking">Show only: ' + " ".join(selects) + "</div>"


def _png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


# ------------------------------------------------------------------ small inline charts

_W, _H, _PAD = 300, 150, 34  # a chart's size in px and its left/bottom margin for tick labels
LAYER_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf")  # tab10: a layer's colour in every dynamics chart


def _thin(n: int, points: int = CHART_POINTS) -> np.ndarray:
    """Indices of at most `points` of n, the first and the last included."""
    if n <= points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, points).round().astype(int))


def _chart(title: str, lines: list[tuple[str, np.ndarray, np.ndarray]], x_max: float, y_range: tuple[float, float],
           log: bool = False, band: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, y_label: str = "",
           legend: bool = False) -> str:
    """An SVG chart: lines (colour, x, y) over x in [0, x_max] and y in y_range (log10 where `log`), an optional
    shaded band (x, low, high) under them, ticks at the ends of both axes."""
    from sweep.plot import _images

    low, high = y_range
    if log:
        low, high = math.log10(low), math.log10(high)
    span_y = (high - low) or 1.0
    inner_w, inner_h = _W - _PAD - 6, _H - _PAD - 16

    def sx(x):
        return _PAD + np.asarray(x, dtype=float) / (x_max or 1.0) * inner_w

    def sy(y):
        y = np.asarray(y, dtype=float)
        if log:
            with np.errstate(all="ignore"):
                y = np.log10(y)
        return 16 + inner_h - (np.clip(y, low, high) - low) / span_y * inner_h

    def points(x, y):
        ok = np.isfinite(np.asarray(y, dtype=float)) & (np.asarray(y, dtype=float) > 0 if log else True)
        return " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(sx(np.asarray(x)[ok]), sy(np.asarray(y)[ok])))

    ticks = (f"{10 ** low:.0e}", f"{10 ** high:.0e}") if log else (f"{low:.3g}", f"{high:.3g}")
    parts = [f'<svg class="chart" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" role="img">',
             f'<text x="{_PAD}" y="11" class="t">{_esc(title)}</text>',
             f'<rect x="{_PAD}" y="16" width="{inner_w}" height="{inner_h}" class="frame"/>',
             f'<text x="{_PAD - 3}" y="{16 + inner_h}" class="yt">{ticks[0]}</text>',
             f'<text x="{_PAD - 3}" y="24" class="yt">{ticks[1]}</text>',
             f'<text x="{_PAD}" y="{_H - 6}" class="xt">0</text>',
             f'<text x="{_PAD + inner_w}" y="{_H - 6}" class="xt end">{_images(x_max)} images</text>']
    if y_label:
        parts.append(f'<text x="{_PAD + inner_w / 2:.0f}" y="{_H - 6}" class="xt mid">{_esc(y_label)}</text>')
    if band is not None:
        x, lo, hi = band
        ok = np.isfinite(lo) & np.isfinite(hi)
        if ok.any():
            xs = np.asarray(x)[ok]
            ring = points(xs, np.asarray(hi)[ok]) + " " + points(xs[::-1], np.asarray(lo)[ok][::-1])
            parts.append(f'<polygon class="band" points="{ring}"/>')
    for colour, x, y in lines:
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points(x, y)}"/>')
    parts.append("</svg>")
    return "".join(parts)


# A configuration's line where the pictures draw it grey, unnamed (a big sweep's middle).
OTHER_COLOUR = "#444444"


def _hex(colour) -> str:
    import matplotlib.colors

    return matplotlib.colors.to_hex(colour)


def accuracy_chart(curve: pd.DataFrame, x_max: float, colour: str) -> str:
    """A configuration's test accuracy (its seeds' mean) against images seen, with plot.py's band (the 95%
    interval of the mean from 3 seeds, the range of 2), at most CHART_POINTS points."""
    from sweep.plot import band_halves

    curve = curve.iloc[_thin(len(curve))]
    x, mean = curve["images_seen"].to_numpy(dtype=float), curve["mean"].to_numpy(dtype=float)
    half = band_halves(curve["n"].to_numpy(), curve["std"].to_numpy(dtype=float))
    band = (x, mean - half, mean + half) if np.isfinite(half).any() else None
    return _chart("test accuracy (seeds' mean)", [(colour, x, mean)], x_max, (0.0, 1.0), band=band)


def dynamics_charts(frame: pd.DataFrame, stat: str, x_max: float) -> str:
    """A configuration's layers over training (db.series.dynamics_frame rows of one label): the activations'
    `stat` and the weight gradients' std (log), a line per layer in its colour, with the layers named."""
    out, names = [], []
    for kind, title, log in (("activation", f"activations' {stat}", False), ("gradient", "weight gradients' std", True)):
        rows = frame[frame["kind"] == kind]
        values = rows["value"].to_numpy(dtype=float)
        finite = values[np.isfinite(values) & ((values > 0) if log else True)]
        if not len(finite):
            continue
        low, high = float(finite.min()), float(finite.max())
        if log:
            low, high = 10 ** math.floor(math.log10(low)), 10 ** math.ceil(math.log10(high))
        else:
            low, high = min(0.0, low), high if high > low else low + 1
        lines = []
        for i, (layer, points) in enumerate(rows.groupby("layer", sort=False)):
            keep = points.iloc[_thin(len(points))]
            lines.append((LAYER_COLOURS[i % len(LAYER_COLOURS)], keep["images_seen"].to_numpy(), keep["value"].to_numpy()))
            if layer not in names:
                names.append(layer)
        out.append(_chart(title, lines, x_max, (low, high), log=log))
    if not out:
        return ""
    key = " ".join(f'<span style="color:{LAYER_COLOURS[i % len(LAYER_COLOURS)]}">&#9644; {_esc(n)}</span>'
                   for i, n in enumerate(names))
    return "".join(out) + f'<div class="key">{key}</div>'


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
    from sweep.report import stopping_savings

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
    if results["stopped"].any() and per_epoch:
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


# ------------------------------------------------------------------ the page

STYLE = """
body{font:13px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;padding:8px 16px;max-width:1248px;
color:#222;box-sizing:border-box}
h1{font-size:20px;margin:4px 0}h2{font-size:16px;margin:18px 0 6px;border-bottom:1px solid #ccc}
h3{font-size:14px;margin:14px 0 4px}
table{border-collapse:collapse;font-size:12px;margin:4px 0}
th,td{border:1px solid #ddd;padding:2px 4px;text-align:left;vertical-align:top}
td{overflow-wrap:break-word}.wide{overflow-x:auto}
th{background:#f3f3f3;font-weight:600}
table.sortable th{cursor:pointer}table.sortable th[aria-sort=ascending]::after{content:' \\25B2'}
table.sortable th[aria-sort=descending]::after{content:' \\25BC'}
td[data-v]{text-align:right;white-space:nowrap}
.ranking{width:100%}.flag{border-bottom:1px dotted #888;cursor:help}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:6px 0}dl.facts dt{font-weight:600}
dl.facts dd{margin:0}
img{max-width:100%;height:auto;display:block;margin:6px 0}
.pictures figure{margin:0 0 10px}figcaption{color:#555}
.charts{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start}
svg.chart{max-width:100%;height:auto;background:#fff}
svg .t{font-size:11px;font-weight:600}svg .yt{font-size:9px;text-anchor:end}svg .xt{font-size:9px}
svg .end{text-anchor:end}svg .mid{text-anchor:middle}svg .frame{fill:none;stroke:#bbb}
svg .band{fill:#888;fill-opacity:.25;stroke:none}
.key{font-size:11px;width:100%}.config{border-top:1px solid #eee;margin-top:10px}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f7f7f7;padding:6px;font-size:11px;margin:4px 0}
.filters{margin:4px 0}.filters label{margin-right:10px}.note{color:#555}
footer{margin:24px 0 8px;color:#555;border-top:1px solid #ccc;padding-top:6px}
"""

# Sorting on a header's click (numbers by data-v, text naturally, '-' last; again: the other way) and the
# ranking's filters (a row shows where every chosen factor has the chosen value).
SCRIPT = """
(function(){
function key(td){var v=td.getAttribute('data-v');if(v!==null)return Number(v);var t=td.textContent.trim();
return t==='-'||t===''?null:t;}
document.querySelectorAll('table.sortable').forEach(function(table){
 var ths=table.tHead.rows[0].cells;
 Array.prototype.forEach.call(ths,function(th,col){th.addEventListener('click',function(){
  var down=th.getAttribute('aria-sort')==='ascending';
  Array.prototype.forEach.call(ths,function(o){o.removeAttribute('aria-sort');});
  th.setAttribute('aria-sort',down?'descending':'ascending');
  var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
  rows.sort(function(a,b){var x=key(a.cells[col]),y=key(b.cells[col]);
   if(x===null||y===null)return (x===null)-(y===null);
   var c=(typeof x==='number'&&typeof y==='number')?x-y:String(x).localeCompare(String(y),undefined,{numeric:true});
   return down?-c:c;});
  rows.forEach(function(r){body.appendChild(r);});});});});
document.querySelectorAll('.filters').forEach(function(box){
 var table=document.getElementById(box.getAttribute('data-for')),selects=box.querySelectorAll('select');
 function apply(){Array.prototype.forEach.call(table.tBodies[0].rows,function(r){
  var show=true;selects.forEach(function(s){var c=Number(s.getAttribute('data-col'));
   if(s.value!==''&&r.cells[c].textContent.trim()!==s.value)show=false;});r.hidden=!show;});}
 selects.forEach(function(s){s.addEventListener('change',apply);});});
})();
"""


def build_page(engine, sweep: str, options: PageOptions, progress: Callable[[str], None] | None = None) -> str:
    """The whole study as one self-contained HTML document (see the module's docstring). EmptySweep where no
    trial has recorded an epoch yet; report.ReportError for options the sweep cannot answer. `progress` is
    told each stage as it starts (sweep page prints it on stderr).

    Example: build_page(engine, "fashion-activations", PageOptions("final_test_acc", 3))
    """
    from sweep.cli import _version
    from sweep.db.queries import curves_frame, images_per_epoch, sweep_spec, trials_frame
    from sweep.db.series import dynamics_frame
    from sweep.factors import check_factors, sweep_factors
    from sweep.pictures import PictureOptions, pictures_to_draw, read_pictures
    from sweep.plot import draw_all
    from sweep.render import default_columns, human_view
    from sweep.report import ReportOptions, build_report, factor_matrix, sweep_results
    from sweep.tuning import spec_ranges
    import yaml

    tell = progress or (lambda _: None)
    metric, epochs = options.metric, options.epochs
    curves = curves_frame(engine, sweep, options.facet)
    if curves.empty:  # before any progress line: the error is the one line
        raise EmptySweep(f"sweep {sweep} has no results yet: no trial has recorded an epoch")
    tell("reading the sweep")
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

    tell("drawing the pictures")
    # Every picture `sweep plot` draws with its default options, by the same functions.
    picture_options = PictureOptions(metric, epochs, options.facet, options.stat, tuple(options.heatmap), tune=tune)
    with tempfile.TemporaryDirectory(prefix="sweep-page-") as tmp:
        data = read_pictures(engine, sweep, picture_options, results, curves)
        todo = pictures_to_draw(data, picture_options, Path(tmp))
        written = draw_all(todo.pictures, forked=todo.forked)
        pictures = [(todo.captions[path], _png(path)) for path in sorted(written, key=lambda p: p.name)]
    missing, colours = todo.missing, todo.colours

    tell("writing the configurations' sections")
    dynamics = dynamics_frame(engine, sweep, options.stat, max_points=DYNAMICS_POINTS)
    per_epoch = images_per_epoch(engine, sweep)
    x_max = float(curves["images_seen"].max()) or 1.0

    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width,initial-scale=1">',
           f"<title>sweep {_esc(sweep)}</title><style>{STYLE}</style></head><body>"]
    # ---- header
    out.append(f"<header><h1>sweep {_esc(sweep)}</h1><p>{_esc(report.title)}</p>")
    facts = [("data set", _dataset(spec)), ("model", str(spec.get("model", {}).get("name", "-"))
                                                     if isinstance(spec.get("model"), dict) else str(spec.get("model", "-"))),
             ("epochs", str(epochs)), ("metric", metric), *run_facts(trials, results, epochs, per_epoch)]
    out.append('<dl class="facts">' + "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in facts) + "</dl>")
    spec_text = yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=100) if spec else "(not stored)"
    out.append(f"<details><summary>the spec (as the sweep last ran it)</summary><pre>{_esc(spec_text)}</pre></details>")
    out.append("</header>")
    # ---- the ranking
    view = human_view(report.table)
    out.append('<section id="ranking-section"><h2>Ranking</h2>')
    out.append('<p class="note">as <code>sweep report --wide</code> gives it, less the columns that are the same in '
               'every row; click a column\'s name to sort by it, again for the other way. Hover over a flag for what '
               'it means.</p>')
    columns = ranking_columns(view, metric)
    out.append(_filters(view, ["activation", "init", "gain", "optimizer", "lr", "model",
                               *report.table.attrs.get("hyper", ()), "status"], columns))
    # Words wrap whole: a table too wide for the window (a sweep of many hyper-parameters) scrolls on its own.
    out.append('<div class="wide">' + html_table(report.table, "ranking sortable", options.flags, columns).replace(
        '<table class="ranking sortable">', '<table id="ranking" class="ranking sortable">', 1) + "</div>")
    out.append("</section>")
    # ---- the fair comparison: each configuration at its best setting of the spec's `tune:`
    if tuned is not None:
        out.append('<section id="tuned"><h2>Each configuration at its best ' + _esc(", ".join(tune)) + "</h2>"
                   f'<p class="note">as <code>sweep report</code> gives it with the spec\'s <code>tune:</code>: '
                   f'{_esc(tuned.title)}; <code>edge</code> marks a choice at the edge of what was tried.</p>'
                   '<div class="wide">' + html_table(tuned.table, "ranking", options.flags, link=None) + "</div>"
                   "</section>")
    # ---- the --by matrices
    if len(varied) >= 2:
        out.append(f'<section id="matrices"><h2>{_esc(metric)} by each pair of factors</h2>'
                   f'<p class="note">as <code>sweep report --by F1,F2</code>: the mean over the finished trials with '
                   f'each pair of values, every other factor and seed pooled.</p><div class="charts">')
        for pair in combinations(varied, 2):
            matrix = factor_matrix(results, metric, pair, text=True).reset_index()
            matrix.attrs["factors"] = [pair[0]]
            out.append(f"<div><h3>{_esc(pair[0])} x {_esc(pair[1])}</h3>"
                       + html_table(matrix, "matrix", options.flags, link=None) + "</div>")
        out.append("</div></section>")
    # ---- the pictures
    out.append('<section id="pictures" class="pictures"><h2>Pictures</h2>'
               '<p class="note">as <code>sweep plot</code> draws them.</p>')
    for caption, uri in pictures:
        out.append(f'<figure><img src="{uri}" alt="{_esc(caption)}"><figcaption>{_esc(caption)}</figcaption></figure>')
    out += [f'<p class="note">{_esc(m)}</p>' for m in missing]
    out.append("</section>")
    # ---- one section per configuration
    out.append('<section id="configurations"><h2>Configurations</h2>')
    seed_view = human_view(seeds)
    seed_columns = [c for c in default_columns(seed_view, metric) if c != "config"]
    if "trial" in seeds and "trial" not in seed_columns:
        seed_columns.insert(1, "trial")
    errors = dict(zip(trials["name"], trials["error"]))
    curve_of = dict(tuple(curves.groupby("label", sort=False)))
    dynamics_of = dict(tuple(dynamics.groupby("label", sort=False))) if len(dynamics) else {}
    labels = list(report.table["config"]) if "config" in report.table else list(curve_of)
    seeds_of = seeds.groupby("config", sort=False).indices if "config" in seeds else {}
    # Every seed's row at once, each configuration's taken from them: per configuration, the human view's
    # pandas work was most of a big sweep's page.
    seed_head, seed_rows = _table_parts(seeds, options.flags, seed_columns, link=None)
    for rank, label in enumerate(labels, 1):
        out.append(f'<section class="config" id="{_esc(_anchor(label))}"><h3>{rank}. {_esc(label)}</h3>')
        if label in seeds_of:
            mine = seeds.iloc[np.sort(seeds_of[label])].reset_index(drop=True)
            out.append(_table("seeds sortable", seed_head, [seed_rows[i] for i in np.sort(seeds_of[label])]))
        charts = []
        if label in curve_of:
            charts.append(accuracy_chart(curve_of[label], x_max, _hex(colours[label].color) if label in colours
                                         else OTHER_COLOUR))
        if label in dynamics_of:
            charts.append(dynamics_charts(dynamics_of[label], options.stat, x_max))
        out.append(f'<div class="charts">{"".join(charts)}</div>')
        for name in (mine["trial"] if label in seeds_of and "trial" in seeds else []):
            text = errors.get(name)
            if isinstance(text, str) and text.strip():
                text = text if len(text) <= ERROR_TEXT else "…" + text[-ERROR_TEXT:]
                out.append(f'<details class="error"><summary>{_esc(name)}: its error</summary>'
                           f"<pre>{_esc(text)}</pre></details>")
        out.append("</section>")
    out.append("</section>")
    # ---- footer
    out.append(f"<footer>Written by sweep {_esc(_version())}. To regenerate this page: "
               f"<code>{_esc(options.command or f'sweep page {sweep}')}</code></footer>")
    out.append(f"<script>{SCRIPT}</script></body></html>\n")
    return "\n".join(out)


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
