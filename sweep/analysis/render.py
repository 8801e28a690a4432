"""A report table as people and programs read it: the compact text of the terminal and markdown (`1-2`,
`1/2`, `0.9`, `true`, `-` for a hyper-parameter an optimizer does not set), fitted to the terminal's width,
or csv and json with every number a number."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd

from sweep.analysis.factors import ReportError, did_you_mean, is_missing, shown_value
from sweep.analysis.report import RANK_METRICS, THRESHOLD
from sweep.spec.spec import METRICS
from sweep.status import Status


FORMATS = ("table", "markdown", "csv", "json")


# The formats for people: compact text (human_view); csv and json write the typed table.
HUMAN_FORMATS = ("table", "markdown")


# Columns that hold counts (epochs, images, seeds): integers in every format.
INTEGER_COLUMNS = ("rank", "n", "seed", "epochs", "best_epoch", "reached", "epochs_min", "epochs_max",
                   "best_epoch_min", "best_epoch_max", THRESHOLD, f"{THRESHOLD}_mean")


# Columns of the terminal view that only --wide or --columns show: the other figures, and the names (the
# factors beside them say the same).
EXTRA_COLUMNS = (*METRICS, "best_epoch", "train_seconds", "config", "trial", "gain_value")


# Columns that name a configuration's or trial's factors in the terminal view, before its optimizer
# hyper-parameters' columns (the table's attrs["hyper"]) and the seed.
FACTOR_VIEW_COLUMNS = ("activation", "init", "gain", "optimizer", "lr", "seed", "model")


def header(column: str) -> str:
    """A column's name in the terminal table: a metric's spread columns are just mean, std, ci95; a validation
    metric's `val mean` (a tuned view shows it beside the test figure's mean), the test accuracy at the best
    validation epoch's `test mean`."""
    for metric in (*RANK_METRICS, "test_acc_at_best_val"):
        if column.startswith(f"{metric}_") and column[len(metric) + 1:] in ("mean", "std", "ci95"):
            stat = column[len(metric) + 1:]
            if "_val" in metric and metric != "test_acc_at_best_val":
                return f"val {stat}"
            return f"test {stat}" if metric == "test_acc_at_best_val" else stat
    return column


def _range(low, high) -> str | None:
    """'2' or '1-3' (a range over seeds); None without one."""
    if is_missing(low):
        return None
    return f"{int(low)}" if low == high else f"{int(low)}-{int(high)}"


def human_view(table: pd.DataFrame) -> pd.DataFrame:
    """A report table as the terminal and markdown show it: each range as one column ('1-2': best_epoch
    from best_epoch_min and best_epoch_max), `reached` out of n ('1/2'), gain, the optimizer
    hyper-parameters and the factors of a --by table as written ('0.9', 'true'; '-' for a
    hyper-parameter the trial's optimizer does not set), an `auto` gain with the number it used
    ('auto 1.53', where the table has gain_value).

    Example: human_view(rank_configurations(results, "final_test_acc"))
    """
    shown = {"gain", *table.attrs.get("hyper", ()), *table.attrs.get("factors", ())}
    out: dict[str, object] = {}
    for c in table.columns:
        base = c[:-4]
        if c.endswith("_max") and f"{base}_min" in table:
            continue
        elif c.endswith("_min") and f"{base}_max" in table:
            out[base] = pd.Series([_range(lo, hi) for lo, hi in zip(table[c].tolist(), table[f"{base}_max"].tolist())],
                                  index=table.index, dtype=object)
        elif c == "reached" and "n" in table:
            out[c] = [f"{r}/{n}" for r, n in zip(table[c].tolist(), table["n"].tolist())]
        elif c == "gain" and "gain_value" in table:
            out[c] = [f"auto {used:.3g}" if g == "auto" else shown_value(g)
                      for g, used in zip(table[c].tolist(), table["gain_value"].tolist())]
        elif c in shown:
            out[c] = [shown_value(v) for v in table[c].tolist()]
        else:
            out[c] = table[c]
    view = pd.DataFrame(out, index=table.index)
    view.attrs = dict(table.attrs)
    return view


def _factor_view_columns(table: pd.DataFrame) -> list[str]:
    """The factor columns of a terminal view, in their order: activation, init, gain, optimizer, lr, the
    optimizer hyper-parameters, seed, model."""
    hyper = [h for h in table.attrs.get("hyper", ()) if h in table]
    return [c for c in ("activation", "init", "gain", "optimizer", "lr", *hyper, "seed", "model") if c in table]


def default_columns(table: pd.DataFrame, metric: str, wide: bool = False) -> list[str]:
    """The terminal view of a configuration or trial table (human_view): the factors first, then the
    metric, n, status, error, flags.

    Left out unless `wide`: the other figures and the names (EXTRA_COLUMNS:
    --wide or --columns shows them) and columns with nothing to say: std and
    ci95 when every configuration has one seed, gain when every gain is 1, a
    hyper-parameter no row sets, epochs when every row has the same, status
    when everything completed, empty flags and errors.

    Example: default_columns(human_view(rank_configurations(results, "final_test_acc")), "final_test_acc")
    """
    first = ["rank", "trial", *_factor_view_columns(table)]
    order = [c for c in first if c in table] + [c for c in table if c not in first]
    if wide or table.empty:
        return order
    usual = {"gain": "1", "status": Status.COMPLETED, "flags": "", "error": "",
             **{h: "-" for h in table.attrs.get("hyper", ())}}

    def says_something(column: str) -> bool:
        values = table[column].dropna()
        if column == "epochs":
            return values.nunique() > 1 or values.astype(str).str.contains("-").any()
        return len(values) > 0 and values.ne(usual.get(column, "")).any()

    ranking = (metric, f"{metric}_mean")
    return [c for c in order if c in ranking or (c not in EXTRA_COLUMNS and says_something(c))]


def essential_columns(table: pd.DataFrame, metric: str) -> list[str]:
    """The columns of a terminal view that stay however narrow the terminal: rank, the metric (its mean;
    with the threshold metric also `reached`: a mean over the seeds that reached it says little without
    how many did), the factors whose values differ from row to row, and a --by table's factors.

    Example: essential_columns(view, "final_test_acc") -> ["rank", "activation", "init", "final_test_acc_mean"]
    """
    keys = list(table.attrs.get("factors", ()))
    differ = {c for c in _factor_view_columns(table) if table[c].astype(str).nunique() > 1}
    ranking = (metric, f"{metric}_mean", *(("reached",) if metric == THRESHOLD else ()))
    return [c for c in table if c == "rank" or c in ranking or c in keys or c in differ]


def resolve_columns(table: pd.DataFrame, names: str) -> list[str]:
    """--columns a,b,c as column names of `table`; mean, std and ci95 stand for the metric's, params for the
    optimizer hyper-parameters' columns, and in a typed table (csv, json) a range's name for its two columns
    (best_epoch: best_epoch_min, best_epoch_max).

    Example: resolve_columns(table, "config,mean,n") -> ["config", "final_test_acc_mean", "n"]
    """
    aliases = {header(c): [c] for c in table}
    for c in table:
        if c.endswith("_min") and f"{c[:-4]}_max" in table:
            aliases[c[:-4]] = [c, f"{c[:-4]}_max"]
    hyper = [h for h in table.attrs.get("hyper", ()) if h in table]
    if hyper:
        aliases["params"] = hyper
    chosen = []
    for name in names.split(","):
        found = [name] if name in table else aliases.get(name)
        if found is None:
            allowed = list(dict.fromkeys([*table.columns, *aliases]))
            raise ReportError(f"--columns: no column {name!r} in this table; allowed: {', '.join(allowed)}"
                              f"{did_you_mean(name, allowed)}")
        chosen += found
    return chosen


def _integers(table: pd.DataFrame) -> pd.DataFrame:
    """Count columns whose values are whole numbers as integers (3, not 3.0) in every format."""
    for column in INTEGER_COLUMNS:
        if column in table and pd.api.types.is_float_dtype(table[column]):
            values = table[column].dropna()
            if (values == values.round()).all():
                table = table.assign(**{column: table[column].astype("Int64")})
    return table


def _cell(column: str, value) -> str:
    if is_missing(value):
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return shown_value(value)
    if not isinstance(value, (float, np.floating)):
        return str(value)
    if column in ("lr", "gain_value"):
        return f"{value:g}"
    if column == "train_seconds":
        return f"{value:.1f}"
    if column in INTEGER_COLUMNS or column.startswith(THRESHOLD):
        return f"{value:.0f}"
    return f"{value:.4f}"


def cell_texts(table: pd.DataFrame) -> list[list[str]]:
    """The cells of a human view (human_view) as the terminal and markdown show them, row by row: counts as
    integers, figures with 4 decimals, lr as %g, '-' for a missing value; `sweep page` shows the same.

    Example: cell_texts(human_view(report.table))[0] -> ["1", "tanh-default-adam-lr0.01", "tanh", ...]
    """
    table = _integers(table)
    names = list(table.columns)
    return [[_cell(c, v) for c, v in zip(names, row)] for row in table.itertuples(index=False)]


# The terminal table's columns other than the essential ones (essential_columns), from most to least
# important: the first to go when the width is short are at the end, and a column that does not fit leaves
# out every one after it. Factors every row shares come last (the optimizer hyper-parameters with them),
# then anything else.
IMPORTANCE = ("rank", "n", "reached", "best_test_acc", "ci95", "status", "error", "flags", "std", THRESHOLD, "epochs",
              *FACTOR_VIEW_COLUMNS)


# The narrowest an essential column's name is cut to (with its '…'), and an essential text column's values
# after every name is as short as that: where the essentials alone are too wide.
NARROWEST = 4


def _importance(name: str) -> int:
    return IMPORTANCE.index(name) if name in IMPORTANCE else len(IMPORTANCE)


def _shrink(kept: dict[int, int], floor: list[int], over: int) -> int:
    """Take `over` characters off the columns in `kept`, one at a time from the widest (the first of
    equals), none below its `floor`; the characters still over."""
    while over > 0:
        cuttable = [i for i in kept if kept[i] > floor[i]]
        if not cuttable:
            break
        widest = max(cuttable, key=lambda i: (kept[i], -i))
        kept[widest] -= 1
        over -= 1
    return over


def _fit(names: list[str], shown: list[str], need: list[int], values: list[int], numeric: list[bool],
         width: int, keep) -> list[tuple[int, int]]:
    """(column index, width) of the columns that fit in `width` characters, in table order.

    The essential columns (`keep`) are always there: where they alone are
    too wide, first their names are cut (down to the width of their values,
    or NARROWEST), the widest first, then the values of their text columns
    (down to NARROWEST). Then the others, most important first (IMPORTANCE):
    one that does not fit (`need` characters; `values`: its widest value)
    is cut to the room left if it is text and at least 12 characters (and
    its name) remain, else it and every column after it are left out.
    """
    kept = {i: need[i] for i in range(len(names)) if names[i] in keep}
    over = sum(kept.values()) + 2 * (len(kept) - 1) - width
    names_only = [min(need[i], max(values[i], NARROWEST)) for i in range(len(names))]
    over = _shrink(kept, names_only, over)
    _shrink(kept, [names_only[i] if numeric[i] else min(need[i], NARROWEST) for i in range(len(names))], over)
    used = sum(kept.values()) + 2 * (len(kept) - 1)
    for i in sorted((i for i in range(len(names)) if i not in kept), key=lambda i: (_importance(shown[i]), i)):
        room = width - used - 2
        if need[i] <= room:
            kept[i] = need[i]
        elif not numeric[i] and room >= max(len(shown[i]), 12):
            kept[i] = room
        else:
            break
        used += kept[i] + 2
    return sorted(kept.items())


def _json_value(value):
    """numpy scalars as the Python numbers and booleans they are (json.dumps knows only those)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def format_report(table: pd.DataFrame, fmt: str, columns: list[str] | None = None,
                  width: int | None = None, keep=()) -> str:
    """Render a report table as an aligned terminal table, markdown, csv or json.

    For the terminal and markdown, pass human_view(table); csv and json write
    the table as it is, typed (numbers as numbers, missing as empty / null).
    `columns` picks and orders the columns (default: all). For the terminal
    table, `width` fits it into that many characters: the columns in `keep`
    (essential_columns) always stay, text among them cut if need be; of the
    others, the least important that do not fit are left out (or a text
    column cut, ending in '…') and a last line says so.

    Example: format_report(view, "table", default_columns(view, m), width=100, keep=essential_columns(view, m))
    """
    full = table
    table = _integers(table[columns] if columns else table)
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        records = table.astype(object).where(table.notna(), None).to_dict(orient="records")
        return json.dumps(records, indent=2, default=_json_value) + "\n"
    names = list(table.columns)
    cells = cell_texts(table)
    if fmt == "markdown":
        lines = ["| " + " | ".join(names) + " |", "|" + "|".join("---" for _ in names) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(lines) + "\n"
    shown = [header(c) for c in names]
    numeric = [pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])
               for c in names]
    values = [max([0, *(len(row[i]) for row in cells)]) for i in range(len(names))]
    need = [max(len(h), v) for h, v in zip(shown, values)]
    kept = list(enumerate(need)) if width is None else _fit(names, shown, need, values, numeric, width, set(keep))

    def line(row: list[str]) -> str:
        parts = []
        for i, w in kept:
            text = row[i] if len(row[i]) <= w else row[i][:w - 1] + "…"
            parts.append(text.rjust(w) if numeric[i] else text.ljust(w))
        return "  ".join(parts).rstrip()

    lines = [line(shown), *(line(r) for r in cells)]
    hidden = len(full.columns) - len(kept)
    cut = any(w < need[i] for i, w in kept)
    notes = [f"{hidden} more column{'s' if hidden > 1 else ''}"] * bool(hidden) + ["text cut to fit"] * cut
    if notes and width is not None:  # the longest of these that fits
        said = ", ".join(notes)
        ways = [f"({said}: --wide shows all, --columns NAME,... picks)", f"({said}: --wide shows all)", f"({said})"]
        lines.append(next((w for w in ways if len(w) <= width), ways[-1]))
    return "\n".join(lines) + "\n"


def wrapped(text: str, width: int | None, indent: str = "  ", first: str = "") -> list[str]:
    """`text` as lines of at most `width` characters (all of it on one line where None), broken between words,
    the first starting with `first`, the others with `indent` (a word longer than a line is broken too).

    Example: wrapped("sweep s: 16 configurations ranked by mean final_test_acc over seeds, at 3 epochs", 40)
    """
    if width is None:
        return [first + text]
    return textwrap.wrap(text, width=max(width, len(indent) + 10), initial_indent=first, subsequent_indent=indent,
                         break_on_hyphens=False) or [first]


def format_findings(table: pd.DataFrame, fmt: str, width: int | None = None) -> str:
    """sweep.analysis.findings' typed rows for people: one numbered line per finding (its plain words, the rows of a
    split or of a configuration's flags sharing one), wrapped at `width` with the number's indent in the terminal
    (`table`), a numbered list in markdown.

    Example: format_findings(build_report(engine, "s", ReportOptions("final_test_acc", 3, findings=True)).table,
    "table", 100)
    """
    texts = list(dict.fromkeys(zip(table["finding"].tolist(), table["text"].tolist())))
    if not texts:
        return "no finding: no factor has two levels with a finished configuration at each\n"
    if fmt == "markdown":
        return "".join(f"{n}. {text}\n" for n, text in texts)
    digits = len(str(texts[-1][0]))
    lines = []
    for n, text in texts:
        first = f"{n:>{digits}}. "
        lines += wrapped(text, width, " " * len(first), first)
    return "\n".join(lines) + "\n"
