"""The HTML building blocks of `sweep page` (sweep.view.page decides what the page shows; this module only says how
it is written): escaping, report tables with sortable cells and flag tooltips, the ranking's filters, PNG data
URIs, the small inline SVG charts of a configuration (its accuracy with the seeds' band, its layers over
training), and the page's style sheet and script. Nothing here reads a database.
"""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from sweep.db.flags import FLAG_DESCRIPTIONS, FLAG_NOTATION, FlagThresholds

# Points per line of a configuration's charts: a 1,000-trial, 200-epoch sweep's page stays a few MB.
CHART_POINTS = 60


def esc(value) -> str:
    """`value` as text safe in HTML, quotes included (for attributes)."""
    return html.escape(str(value), quote=True)


def _header_cell(name: str) -> str:
    """A column name that may break after its underscores (the table fits a 1280-pixel window)."""
    return "_<wbr>".join(esc(part) for part in name.split("_"))


def anchor(label: str) -> str:
    """The id of a configuration's section: its label, each character other than a letter, digit, -, _ or . as _."""
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
        parts.append(f'<span class="flag" data-flag="{esc(name)}" title="{esc(title)}">{esc(item)}</span>')
    return ", ".join(parts)


def _sort_values(typed: pd.DataFrame, column: str) -> list[str | None]:
    """The number each cell of `column` sorts by, from the typed table (a range by its lowest value); None: by
    its text. One pass per column: per cell, pandas' lookups would be most of a big sweep's page time
    (docs/benchmarks.md, "sweep page on a big sweep")."""
    source = column if column in typed else f"{column}_min" if f"{column}_min" in typed else None
    if source is None or not pd.api.types.is_numeric_dtype(typed[source]) or pd.api.types.is_bool_dtype(typed[source]):
        return [None] * len(typed)
    return [None if v != v else repr(float(v)) for v in typed[source].astype(float).tolist()]


def table_parts(typed: pd.DataFrame, thresholds: FlagThresholds, columns: list[str] | None = None,
                 link: str | None = "config") -> tuple[str, list[str]]:
    """(the header row's cells, each row as HTML) of html_table."""
    from sweep.analysis.render import cell_texts, human_view

    view = human_view(typed)
    if columns is not None:
        view = view[[c for c in columns if c in view]]
    names = list(view.columns)
    head = "".join(f'<th title="{esc(c)}">{_header_cell(c)}</th>' for c in names)
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
                inner = f'<a href="#{esc(anchor(text))}">{esc(text)}</a>'
            else:
                inner = esc(text)
            tds.append(f"<td{attrs}>{inner}</td>")
        rows.append("<tr>" + "".join(tds) + "</tr>")
    return head, rows


def join_table(css: str, head: str, rows: list[str]) -> str:
    """A table of class `css` from its header row's cells and its rows (table_parts')."""
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>' + "\n".join(rows) + "</tbody></table>"


def html_table(typed: pd.DataFrame, css: str, thresholds: FlagThresholds, columns: list[str] | None = None,
               link: str | None = "config") -> str:
    """A report table (build_report's, typed) as HTML: the human view's columns (all of them, or `columns`) and
    cells as the terminal shows them (render.cell_texts), each numeric cell with the number it sorts by
    (data-v), each flag with its tooltip, the `link` column's cells linking to their configuration's section."""
    return join_table(css, *table_parts(typed, thresholds, columns, link))


def filters(view: pd.DataFrame, factors: list[str], columns: list[str]) -> str:
    """A select per factor column (of the table's `columns`) whose values differ from row to row: the ranking's
    rows with that value."""
    from sweep.analysis.render import cell_texts

    selects = []
    shown = [f for f in factors if f in columns and view[f].astype(str).nunique() > 1]
    if not shown:
        return ""
    texts = cell_texts(view[shown])
    for j, factor in enumerate(shown):
        values = list(dict.fromkeys(row[j] for row in texts))
        options = '<option value="">all</option>' + "".join(f'<option>{esc(v)}</option>' for v in values)
        selects.append(f'<label>{esc(factor)} <select data-col="{columns.index(factor)}">{options}</select></label>')
    return '<div class="filters" data-for="ranking">Show only: ' + " ".join(selects) + "</div>"


def png_uri(path: Path) -> str:
    """A PNG file as a data URI: the page embeds its pictures."""
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
    from sweep.view.plot import _images

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
             f'<text x="{_PAD}" y="11" class="t">{esc(title)}</text>',
             f'<rect x="{_PAD}" y="16" width="{inner_w}" height="{inner_h}" class="frame"/>',
             f'<text x="{_PAD - 3}" y="{16 + inner_h}" class="yt">{ticks[0]}</text>',
             f'<text x="{_PAD - 3}" y="24" class="yt">{ticks[1]}</text>',
             f'<text x="{_PAD}" y="{_H - 6}" class="xt">0</text>',
             f'<text x="{_PAD + inner_w}" y="{_H - 6}" class="xt end">{_images(x_max)} images</text>']
    if y_label:
        parts.append(f'<text x="{_PAD + inner_w / 2:.0f}" y="{_H - 6}" class="xt mid">{esc(y_label)}</text>')
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


def hex_colour(colour) -> str:
    """A matplotlib colour as #rrggbb."""
    import matplotlib.colors

    return matplotlib.colors.to_hex(colour)


def accuracy_chart(curve: pd.DataFrame, x_max: float, colour: str) -> str:
    """A configuration's test accuracy (its seeds' mean) against images seen, with plot.py's band (the 95%
    interval of the mean from 3 seeds, the range of 2), at most CHART_POINTS points."""
    from sweep.view.plot import band_halves

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
    key = " ".join(f'<span style="color:{LAYER_COLOURS[i % len(LAYER_COLOURS)]}">&#9644; {esc(n)}</span>'
                   for i, n in enumerate(names))
    return "".join(out) + f'<div class="key">{key}</div>'


def findings_list(table: pd.DataFrame) -> str:
    """sweep.analysis.findings' typed rows as a numbered list: one item per finding (its plain words), numbered as
    `sweep report --findings` numbers them, its kind a class (effect, split, pathology)."""
    from sweep.analysis.render import format_findings

    items = list(dict.fromkeys(zip(table["finding"].tolist(), table["kind"].tolist(), table["text"].tolist())))
    if not items:
        return f'<p class="note">{esc(format_findings(table, "markdown").strip())}</p>'
    return '<ol class="findings">' + "".join(f'<li value="{n}" class="kind-{esc(kind)}">{esc(text)}</li>'
                                             for n, kind, text in items) + "</ol>"


# ------------------------------------------------------------------ the page's style and script

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
ol.findings{margin:4px 0;padding-left:28px}ol.findings li{margin:2px 0}ol.findings .kind-split{color:#444}
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
