"""What a study found (`sweep report --findings`, the top of `sweep page`): each scientific factor's effect,
paired, with its interval; where the sweep tunes, at a fixed nuisance setting and with every group at its own
best, labelled by what tuning does to it; and the pathologies, with the settings they showed at.

The scientific factors are every factor of the sweep but the tuned ones, the seed and the status
(sweep.analysis.tuning's groups). For each pair of levels of a factor (sgd and adam; each pair of activations), every
configuration at one level is matched with the configuration at the other that has the same value of every
other factor and the same seed; the effect is the mean of the matched differences of the test figure
(tuning.reported: the test accuracy beside a choice made on validation, never the numbers it was chosen on),
its interval Student's t over the pairs (the pairs as replicates of the effect over the other factors' levels
and seeds). A factor whose values never overlap between the two levels (lr under sgd and under adam at rates of
their own; momentum, which adam does not set) belongs to the level and is not matched on; a side that is not one
finished configuration (missing, unfinished, stopped, or several where a nested factor has several values) leaves
its pair out, counted. An effect is split by another factor where its sign (+ or - where an interval excludes 0,
0 where it holds 0) differs between that factor's levels; a split's cells share one spread, pooled within them.
Every interval is at the Bonferroni level for all those shown (1 - 0.05/m each, m intervals), so that together
they hold with 95% confidence. Where the sweep tunes, each effect is computed twice: at the fixed setting (per
group, the spec's first listed value or the value tried nearest torch's default, the comparison a study at one
rate makes) and at each group's best setting chosen on the ranking metric (sweep.analysis.tuning.tuned_view), and
labelled (LABELS). docs/commands.md says the same for a reader.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from sweep.analysis.factors import factor_column, shown_value
from sweep.analysis.intervals import t_quantile
from sweep.analysis.report import RANK_METRICS
from sweep.status import Status
from sweep.analysis.tuning import _scientific, reported, tuned_view

# The family's confidence: every interval shown at 1 - ALPHA / m, m of them, hold together with 1 - ALPHA.
ALPHA = 0.05
# The most seeds an unresolved effect is said to need; beyond, none is named.
MAX_SEEDS = 1000
# What tuning does to an effect: the fixed setting's interval against the tuned one's.
LABELS = {
    "holds": "same sign, both intervals exclude 0, the intervals overlap",
    "shrinks": "same sign, both exclude 0, the tuned one smaller and the intervals apart",
    "grows": "the tuned one larger and the intervals apart, or it excludes 0 where the fixed one did not",
    "vanishes": "the fixed interval excludes 0, the tuned one holds it",
    "reverses": "opposite signs, both intervals exclude 0",
    "unresolved": "both intervals hold 0",
}
# torch.optim's defaults of the hyper-parameters a spec may tune over a range: the fixed setting is the value
# tried nearest them (tests/test_findings.py holds them equal to torch's signatures; sweep report imports no torch).
TORCH_DEFAULTS = {
    "sgd": {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0},
    "adam": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
    "adamw": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2},
    "rmsprop": {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "weight_decay": 0.0},
}
FIXED, TUNED = "fixed", "tuned"


@dataclass(frozen=True)
class Spread:
    """Matched differences of one comparison in one view: their mean, its standard error and degrees of freedom
    (over the pairs, or pooled within a split's cells), the pairs, the pairs left out, the differences' standard
    deviation and how many seeds the pairs span."""

    mean: float
    se: float
    df: int
    pairs: int
    left_out: int
    sd: float = math.nan
    seeds: int = 0

    def interval(self, q: float) -> "Interval":
        """The mean with its two-sided interval at t's `q` quantile (NaN ends without degrees of freedom)."""
        half = t_quantile(q, self.df) * self.se if self.df >= 1 and math.isfinite(self.se) else math.nan
        return Interval(self.mean, self.mean - half, self.mean + half, self.pairs, self.left_out)


@dataclass(frozen=True)
class Interval:
    """An effect in one view: the mean difference, its interval's ends, the pairs and the pairs left out."""

    mean: float
    low: float
    high: float
    pairs: int
    left_out: int

    @property
    def sign(self) -> int:
        """+1 or -1 where the interval excludes 0 above or below, 0 where it holds 0 (or there is none)."""
        return 1 if self.low > 0 else -1 if self.high < 0 else 0


@dataclass(frozen=True)
class Effect:
    """A factor's effect, `level` against `versus` (the better of the two first, in the tuned view where there
    is one): at the fixed setting (the only view where the sweep tunes nothing) and tuned, with its label and,
    unresolved, the seeds that would resolve it at the spread seen (None: not within MAX_SEEDS, or no effect)."""

    factor: str
    level: Any
    versus: Any
    fixed: Interval
    tuned: Interval | None
    label: str
    seeds_to_resolve: int | None
    text: str


@dataclass(frozen=True)
class Cell:
    """One level of a split: the effect among the pairs with `at` as the splitting factor's value."""

    at: Any
    fixed: Interval
    tuned: Interval | None


@dataclass(frozen=True)
class Split:
    """An effect split by another factor whose levels it differs in sign between (an interaction)."""

    factor: str
    level: Any
    versus: Any
    by: str
    cells: tuple[Cell, ...]
    text: str


@dataclass(frozen=True)
class Flagged:
    """Flags (`flags`, 'chance, vanishing') shown at the same `flagged` of the `tried` settings of the tuned
    factors (one where the sweep tunes nothing): `settings` the flagged ones as shown, `seeds` and `read` the
    seeds that showed them and the seeds read there."""

    flags: str
    flagged: int
    tried: int
    settings: tuple[str, ...]
    seeds: int
    read: int


@dataclass(frozen=True)
class Pathology:
    """A configuration of the scientific factors (`config`, its values joined by ' + ') and its flags, those at
    the most settings first."""

    config: str
    parts: tuple[Flagged, ...]
    text: str


@dataclass(frozen=True)
class Findings:
    """The findings of a study: its header, the effects (splits after their effect) and pathologies in the order
    they are listed, the intervals' count m and the level each is at."""

    title: str
    findings: tuple[Effect | Split | Pathology, ...]
    intervals: int
    level: float

    def table(self) -> pd.DataFrame:
        """The findings as typed rows (`--format json/csv`): one per effect, one per cell of a split, one per
        pathology, each with its finding's number and plain words."""
        rows = []
        for number, f in enumerate(self.findings, 1):
            base = {"finding": number, "kind": type(f).__name__.lower(), "text": f.text}
            if isinstance(f, Effect):
                rows.append({**base, "factor": f.factor, "level": f.level, "versus": f.versus,
                             **_view_columns(f.fixed, f.tuned), "label": f.label,
                             "seeds_to_resolve": f.seeds_to_resolve})
            elif isinstance(f, Split):
                rows += [{**base, "factor": f.factor, "level": f.level, "versus": f.versus, "by": f.by, "at": c.at,
                          **_view_columns(c.fixed, c.tuned)} for c in f.cells]
            else:
                rows += [{**base, "config": f.config, "flags": p.flags, "settings_flagged": p.flagged,
                          "settings_tried": p.tried, "settings": ", ".join(p.settings), "seeds_flagged": p.seeds,
                          "seeds_read": p.read} for p in f.parts]
        table = pd.DataFrame(rows, columns=COLUMNS)
        for column in COUNT_COLUMNS:
            table[column] = table[column].astype("Int64")
        for column in ("level", "versus", "at"):
            table[column] = table[column].astype(object)
        table["interval_level"] = self.level if len(table) else []
        table.attrs["findings"] = True
        return table


COUNT_COLUMNS = ("finding", "fixed_pairs", "fixed_left_out", "tuned_pairs", "tuned_left_out", "seeds_to_resolve",
                 "settings_flagged", "settings_tried", "seeds_flagged", "seeds_read")
COLUMNS = ["finding", "kind", "factor", "level", "versus", "by", "at",
           "fixed_mean", "fixed_low", "fixed_high", "fixed_pairs", "fixed_left_out",
           "tuned_mean", "tuned_low", "tuned_high", "tuned_pairs", "tuned_left_out",
           "label", "seeds_to_resolve", "config", "flags", "settings_flagged", "settings_tried", "settings",
           "seeds_flagged", "seeds_read", "interval_level", "text"]


def _view_columns(fixed: Interval, tuned: Interval | None) -> dict:
    out = {}
    for name, i in ((FIXED, fixed), (TUNED, tuned)):
        if i is not None:
            out.update({f"{name}_mean": _number(i.mean), f"{name}_low": _number(i.low),
                        f"{name}_high": _number(i.high), f"{name}_pairs": i.pairs, f"{name}_left_out": i.left_out})
    return out


def _number(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


# ------------------------------------------------------------------ the views: one value per group and seed


@dataclass(frozen=True)
class _Trials:
    """The results' rows as plain lists: each one's group (its scientific factors' values), setting (its tuned
    factors' values), seed, whether it finished, and its test figure."""

    groups: list[tuple]
    settings: list[tuple]
    seeds: list
    finished: np.ndarray
    values: np.ndarray
    names: list[str]
    counted: np.ndarray  # finished, or stopped (read where they stopped, as the ranking reads them)


def _trials(results: pd.DataFrame, scientific: list[str], tune: Sequence[str], value: str) -> _Trials:
    n = len(results)

    def keys(factors):
        return list(zip(*(factor_column(results, f).tolist() for f in factors))) if factors and n else [()] * n

    finished = results["finished"].astype(bool).to_numpy() if n else np.zeros(0, bool)
    stopped = results["stopped_early"].astype(bool).to_numpy() if n else np.zeros(0, bool)
    values = results[value].to_numpy(dtype=float) if value in results else np.full(n, math.nan)
    return _Trials(keys(scientific), keys(list(tune)), results["seed"].tolist(), finished, values,
                   results["name"].tolist() if "name" in results else [str(i) for i in range(n)], finished | stopped)


def _view(trials: _Trials, setting_of: Mapping[tuple, tuple] | None) -> dict[tuple, float]:
    """(group, seed) -> the test figure of its finished trial at the group's setting (`setting_of`; every
    trial where None: the sweep tunes nothing), NaN where it has none: every group and seed of the sweep."""
    view: dict[tuple, float] = {}
    for g, setting, seed, done, v in zip(trials.groups, trials.settings, trials.seeds, trials.finished,
                                         trials.values):
        view.setdefault((g, seed), math.nan)
        if done and (setting_of is None or setting_of.get(g) == setting) and math.isfinite(v):
            view[(g, seed)] = float(v)
    return view


def _entry(spec: Mapping | None, optimizer, hyper: Mapping[str, Any]) -> Mapping | None:
    """The spec's optimizer entry a group's trials come from: its name, and its listed values holding the
    group's other hyper-parameters (the first such entry)."""
    for entry in (spec or {}).get("grid", {}).get("optimizer", []) or []:
        if entry.get("name") != optimizer:
            continue
        listed = {k: list(v) for k, v in entry.get("params", [])}
        if all(k not in listed or v in [float(x) if not isinstance(x, bool) else x for x in listed[k]]
               for k, v in hyper.items()):
            return entry
    return None


def _target(entry: Mapping | None, optimizer, factor: str) -> tuple[Any, str, str]:
    """(the fixed value of `factor` for an optimizer entry, the scale it is near on (log or linear), where it
    comes from: 'listed' (the spec's first listed value), 'default' (torch's default over a range), or 'first'
    (no entry: the first tried))."""
    if entry is None:
        return None, "linear", "first"
    listed = dict((k, v) for k, v in entry.get("params", []))
    if factor in listed:
        return listed[factor][0], "linear", "listed"
    for r in entry.get("ranges", []) or []:
        if r.get("key") == factor:
            scale = "log" if r.get("kind") == "log_uniform" else "linear"
            default = TORCH_DEFAULTS.get(optimizer, {}).get(factor)
            if default is None:  # the middle of the range, on its scale
                low, high = float(r["low"]), float(r["high"])
                default = math.sqrt(low * high) if scale == "log" else (low + high) / 2
            return default, scale, "default"
    return None, "linear", "unset"


def _nearest(candidates: list[tuple], targets: list[tuple[Any, str, str]]) -> tuple:
    """The candidate setting nearest the targets (the first of equals): per factor, on its scale, in units of
    the candidates' span there."""
    if any(source == "first" for _, _, source in targets):
        return candidates[0]

    def scaled(v, scale):
        return math.log(v) if scale == "log" and v is not None and v > 0 else v

    spans = []
    for i, (_, scale, _) in enumerate(targets):
        numbers = [scaled(c[i], scale) for c in candidates if isinstance(c[i], (int, float)) and c[i] is not None
                   and not isinstance(c[i], bool)]
        spans.append((max(numbers) - min(numbers)) or 1.0 if numbers else 1.0)

    def distance(c):
        total = 0.0
        for i, (target, scale, _) in enumerate(targets):
            v = c[i]
            if target is None or v is None or isinstance(v, bool) or isinstance(target, bool):
                total += 0.0 if v == target else 1e12
            else:
                total += ((scaled(float(v), scale) - scaled(float(target), scale)) / spans[i]) ** 2
        return total

    return min(candidates, key=distance)


def fixed_settings(trials: _Trials, scientific: list[str], tune: Sequence[str],
                   spec: Mapping | None) -> tuple[dict[tuple, tuple], set[str]]:
    """Per group, its fixed setting of the tuned factors: the spec's first listed value, or the value tried
    nearest torch's default over a range (TORCH_DEFAULTS), per factor; and where those came from."""
    tried: dict[tuple, list[tuple]] = {}
    for g, s in zip(trials.groups, trials.settings):
        tried.setdefault(g, [])
        if s not in tried[g]:
            tried[g].append(s)
    out, sources = {}, set()
    for g, candidates in tried.items():
        values = dict(zip(scientific, g))
        optimizer = values.get("optimizer")
        hyper = {k: v for k, v in values.items() if k not in ("activation", "init", "gain", "optimizer", "model")
                 and v is not None}
        entry = _entry(spec, optimizer, hyper)
        targets = [_target(entry, optimizer, f) for f in tune]
        sources |= {source for _, _, source in targets}
        out[g] = _nearest(candidates, targets)
    return out, sources


def _tuned_settings(results: pd.DataFrame, metric: str, tune: Sequence[str], scientific: list[str],
                    ranges: Mapping | None) -> tuple[dict[tuple, tuple], dict[tuple, str]]:
    """Per group, the setting sweep.analysis.tuning chose on `metric` (one place decides), and its edge or flat mark."""
    table = tuned_view(results, metric, list(tune), RANK_METRICS[metric], ranges)
    if table.empty:
        return {}, {}
    groups = list(zip(*(factor_column(table, f).tolist() for f in scientific))) if scientific else [()] * len(table)
    chosen = list(zip(*(factor_column(table, f).tolist() for f in tune)))
    return dict(zip(groups, chosen)), dict(zip(groups, table["edge"].tolist()))


# ------------------------------------------------------------------ the comparisons


@dataclass(frozen=True)
class _Comparison:
    """A pair of levels of one factor, with the indices of the factors matched on and each view's pairs:
    (match key, difference)."""

    factor: int
    a: Any
    b: Any
    matched: tuple[int, ...]
    pairs: dict[str, list[tuple[tuple, float]]]
    left_out: dict[str, int]
    seeds: dict[str, int]


def _comparisons(views: dict[str, dict[tuple, float]], scientific: list[str]) -> list[_Comparison]:
    """Every pair of levels of every scientific factor with two or more (a hyper-parameter's '-', not set by
    an optimizer, is no level), in the order of the factors and their levels; a comparison whose pairs are an
    earlier one's (lr aliased with the optimizer: one rate per optimizer) is left out."""
    universe = list(next(iter(views.values())))
    groups = list(dict.fromkeys(g for g, _ in universe))
    out, seen = [], set()
    for fi in range(len(scientific)):
        levels = list(dict.fromkeys(g[fi] for g in groups if g[fi] is not None))
        for a, b in combinations(levels, 2):
            sides = {a: [g for g in groups if g[fi] == a], b: [g for g in groups if g[fi] == b]}
            matched = tuple(j for j in range(len(scientific)) if j != fi
                            and {g[j] for g in sides[a]} & {g[j] for g in sides[b]})
            pairs, left_out, seeds, signature = {}, {}, {}, None
            for name, view in views.items():
                by_key: dict[tuple, dict[Any, list]] = {}
                for (g, seed), v in view.items():
                    if g[fi] in (a, b):
                        by_key.setdefault((tuple(g[j] for j in matched), seed), {a: [], b: []})[g[fi]].append((g, v))
                pairs[name], left_out[name], members = [], 0, []
                for key, side in by_key.items():
                    (ga, va), (gb, vb) = (side[a][0], side[b][0]) if len(side[a]) == 1 == len(side[b]) else \
                        ((None, math.nan), (None, math.nan))
                    if math.isfinite(va) and math.isfinite(vb):
                        pairs[name].append((key, va - vb))
                        members.append((ga, gb, key[1]))
                    else:
                        left_out[name] += 1
                seeds[name] = len({key[1] for key, _ in pairs[name]})
                if signature is None:
                    signature = frozenset((ga, gb) for ga, gb, _ in members)
            if signature and signature in seen:
                continue
            seen.add(signature)
            out.append(_Comparison(fi, a, b, matched, pairs, left_out, seeds))
    return out


def _spread(pairs: list[tuple[tuple, float]], left_out: int, seeds: int, sign: float = 1.0) -> Spread:
    d = sign * np.array([x for _, x in pairs], dtype=float)
    n = len(d)
    if n == 0:
        return Spread(math.nan, math.nan, 0, 0, left_out, math.nan, 0)
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    return Spread(float(d.mean()), sd / math.sqrt(n) if n > 1 else math.nan, n - 1, n, left_out, sd, seeds)


def _cells(pairs: list[tuple[tuple, float]], position: int, sign: float) -> dict[Any, Spread]:
    """The pairs grouped by the value at `position` of their match key, each cell's mean with a standard error
    from the spread pooled within the cells (degrees of freedom: pairs less cells)."""
    groups: dict[Any, list[float]] = {}
    for key, d in pairs:
        groups.setdefault(key[0][position], []).append(sign * d)
    n = sum(len(v) for v in groups.values())
    df = n - len(groups)
    residual = sum(float(((np.array(v) - np.mean(v)) ** 2).sum()) for v in groups.values())
    pooled = math.sqrt(residual / df) if df >= 1 else math.nan
    return {at: Spread(float(np.mean(v)), pooled / math.sqrt(len(v)), df, len(v), 0, pooled)
            for at, v in groups.items()}


def _label(fixed: Interval, tuned: Interval | None) -> str:
    """What tuning does to an effect (LABELS); without a tuned view, 'resolved' or 'unresolved'."""
    if tuned is None:
        return "resolved" if fixed.sign else "unresolved"
    f, t = fixed.sign, tuned.sign
    if not f and not t:
        return "unresolved"
    if f and not t:
        return "vanishes"
    if t and not f:
        return "grows"
    if f != t:
        return "reverses"
    if tuned.high < fixed.low or tuned.low > fixed.high:  # the intervals apart
        return "shrinks" if abs(tuned.mean) < abs(fixed.mean) else "grows"
    return "holds"


def seeds_to_resolve(spread: Spread, q: float, seeds_now: int) -> int | None:
    """The fewest seeds whose pairs (this comparison's pairs per seed, times the seeds) would give an interval
    at t's `q` quantile that excludes 0, at the spread and mean seen; None where there is no mean or spread to
    go by or it takes more than MAX_SEEDS.

    Example: seeds_to_resolve(Spread(0.02, 0.01, 3, 4, 0, 0.02, 1), 0.975, 1) -> 2
    """
    if not (spread.pairs and spread.seeds and math.isfinite(spread.sd) and spread.mean):
        return None
    per_seed = spread.pairs / spread.seeds
    for k in range(max(seeds_now, 1) + 1, MAX_SEEDS + 1):
        n = per_seed * k
        if n >= 2 and t_quantile(q, n - 1) * spread.sd / math.sqrt(n) < abs(spread.mean):
            return k
    return None


# ------------------------------------------------------------------ words


def number(x: float) -> str:
    """A difference as the findings show it: signed, 3 decimals (whole numbers from 100 on); '-' where none."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:+,.0f}" if abs(x) >= 100 else f"{x:+.3f}"


def _interval_words(i: Interval) -> str:
    if not i.pairs:
        return "no pairs"
    if not math.isfinite(i.low):
        return f"{number(i.mean)} (no interval: one pair)"
    return f"{number(i.mean)} [{number(i.low)}, {number(i.high)}]"


def _pairs_words(i: Interval) -> str:
    words = f"{i.pairs} pair{'s' * (i.pairs != 1)}"
    return words + (f", {i.left_out} left out" if i.left_out else "")


# ------------------------------------------------------------------ pathologies


# Factors whose values name themselves (relu, xavier_uniform, adam); the others are named with their value.
NAMED_BY_VALUE = ("activation", "init", "optimizer")


def configuration_name(group: tuple, scientific: list[str], varied: list[int]) -> str:
    """A configuration of the scientific factors by the values that vary: 'sigmoid + default + sgd', with a
    number's factor named ('relu + gain 2.5 + sgd + momentum 0.9')."""
    parts = [shown_value(group[i]) if scientific[i] in NAMED_BY_VALUE else f"{scientific[i]} {shown_value(group[i])}"
             for i in varied]
    return " + ".join(parts) or "the configuration"


def _pathologies(trials: _Trials, flags: pd.DataFrame | None, scientific: list[str], tune: Sequence[str],
                 varied: list[int], marks: Mapping[tuple, str]) -> list[Pathology]:
    """Per configuration of the scientific factors, each flag with the settings at which a seed read (finished,
    or stopped and read where it stopped, as the ranking reads it) showed it; flags at the same settings share a
    part. The configurations flagged at every setting first, then by the most settings any flag showed at,
    in their order in the sweep."""
    if flags is None or flags.empty:
        return []
    shown_by: dict[str, set[str]] = {}
    for trial, flag in zip(flags["trial"], flags["flag"]):
        shown_by.setdefault(trial, set()).add(flag)
    per: dict[tuple, dict[tuple, list]] = {}  # group -> setting -> [seeds read, {flag: seeds}]
    for g, setting, name, counted in zip(trials.groups, trials.settings, trials.names, trials.counted):
        if not counted:
            continue
        cell = per.setdefault(g, {}).setdefault(setting, [0, {}])
        cell[0] += 1
        for flag in shown_by.get(name, ()):
            cell[1][flag] = cell[1].get(flag, 0) + 1
    out = []
    for order, (g, settings) in enumerate(per.items()):
        by_flag: dict[str, list[tuple]] = {}
        for setting, (_, seen) in settings.items():
            for flag in seen:
                by_flag.setdefault(flag, []).append(setting)
        if not by_flag:
            continue
        together: dict[tuple, list[str]] = {}
        for flag in sorted(by_flag, key=lambda f: (-len(by_flag[f]), FLAG_ORDER.index(f) if f in FLAG_ORDER else 99)):
            together.setdefault(tuple(sorted(by_flag[flag], key=_setting_order)), []).append(flag)
        tried = sorted(settings, key=_setting_order)
        parts = tuple(Flagged(", ".join(names), len(flagged), len(tried), tuple(_setting(s, tune) for s in flagged),
                              sum(settings[s][1].get(names[0], 0) for s in flagged),
                              sum(settings[s][0] for s in flagged)) for flagged, names in together.items())
        config = configuration_name(g, scientific, varied)
        text = f"{config}: " + "; ".join(_flagged_words(p, tried, tune, marks.get(g), first=i == 0)
                                          for i, p in enumerate(parts))
        out.append(((parts[0].flagged < parts[0].tried, -parts[0].flagged, order), Pathology(config, parts, text)))
    return [p for _, p in sorted(out, key=lambda r: r[0])]


# The flags in the order a configuration's line names those shown at as many settings.
FLAG_ORDER = ("chance", Status.DIVERGED.value, "vanishing", "exploding", "dead", "saturated")


def _setting_order(setting: tuple):
    return tuple((v is None, v if isinstance(v, (int, float)) else 0, str(v)) for v in setting)


def _setting(setting: tuple, tune: Sequence[str]) -> str:
    if len(tune) == 1:
        return shown_value(setting[0])
    return " ".join(f"{f} {shown_value(v)}" for f, v in zip(tune, setting))


def _flagged_words(part: Flagged, tried: list[tuple], tune: Sequence[str], mark: str | None, first: bool) -> str:
    """'at chance at all 6 lr from 0.00144 to 8.94 (flat: no lr tried does better)', 'dead at 2 of 6: 1.34, 8.94'."""
    what = ", ".join("at chance" if n == "chance" else n for n in part.flags.split(", "))
    seeds = f" ({part.seeds} of {part.read} seeds)" if part.seeds < part.read else ""
    if not tune:
        return what + seeds
    factor = " x ".join(tune)
    if part.tried == 1:
        return f"{what} at the one {factor} tried, {part.settings[0]}{seeds}"
    if part.flagged == part.tried:
        ends = (_setting(tried[0], tune), _setting(tried[-1], tune))
        span = f"both {factor} tried, {ends[0]} and {ends[1]}" if part.tried == 2 else \
            f"all {part.tried} {factor} from {ends[0]} to {ends[1]}" if len(tune) == 1 else f"all {part.tried} tried"
        flat = f" (flat: no {factor} tried does better)" if mark == "flat" else ""
        return f"{what} at {span}{seeds}{flat}"
    return f"{what} at {part.flagged} of {part.tried}{' ' + factor if first else ''}: {', '.join(part.settings)}{seeds}"


# ------------------------------------------------------------------ the findings


def study_findings(results: pd.DataFrame, metric: str, tune: Sequence[str] = (), ranges: Mapping | None = None,
                   spec: Mapping | None = None, flags: pd.DataFrame | None = None) -> Findings:
    """The findings of a sweep (see the module's doc) from its results (sweep.analysis.results.sweep_results, as
    filtered), the ranking `metric`, the tuned factors `tune` (their `ranges`, sweep.analysis.tuning.spec_ranges), the
    stored `spec` (for the fixed setting) and its pathology flags (sweep.db.flags.flags_frame).

    Example: study_findings(sweep_results(engine, "fashion-tuned", 3), "final_val_acc", ["lr"], ranges, spec, flags)
    """
    tune = list(tune)
    value = reported(metric)
    higher = RANK_METRICS[metric]
    scientific = _scientific(results, tune)
    trials = _trials(results, scientific, tune, value)
    groups = list(dict.fromkeys(trials.groups))
    varied = [i for i in range(len(scientific)) if len({g[i] for g in groups}) > 1]
    marks: dict[tuple, str] = {}
    if tune:
        fixed_of, sources = fixed_settings(trials, scientific, tune, spec)
        tuned_of, marks = _tuned_settings(results, metric, tune, scientific, ranges)
        views = {FIXED: _view(trials, fixed_of), TUNED: _view(trials, tuned_of)}
    else:
        fixed_of, sources = {}, set()
        views = {FIXED: _view(trials, None)}
    comparisons = _comparisons(views, scientific) if groups else []
    effects = _effects(comparisons, views, scientific, higher)
    findings, m, q = _select(effects, len(views))
    seeds_now = len(set(trials.seeds))
    made = []
    for e, splits in findings:
        made.append(_effect(e, scientific, " x ".join(tune), q, seeds_now))
        made += [_split(e, s, scientific, " x ".join(tune), q) for s in splits]
    made_effects = _by_size(made)
    title = _title(results, scientific, varied, tune, value, metric, groups, seeds_now, fixed_of, sources, m, q)
    return Findings(title, (*made_effects, *_pathologies(trials, flags, scientific, tune, varied, marks)), m, 2 * q - 1)


@dataclass(frozen=True)
class _Raw:
    """A comparison's spreads per view (oriented: the better level first), and per other factor its cells."""

    comparison: _Comparison
    sign: float
    spreads: dict[str, Spread]
    cells: dict[int, dict[str, dict[Any, Spread]]]


def _effects(comparisons: list[_Comparison], views: dict, scientific: list[str], higher: bool) -> list[_Raw]:
    out = []
    for c in comparisons:
        orient = TUNED if TUNED in views and c.pairs[TUNED] else FIXED
        mean = np.mean([d for _, d in c.pairs[orient]]) if c.pairs[orient] else 0.0
        sign = -1.0 if (mean < 0 if higher else mean > 0) else 1.0
        spreads = {v: _spread(c.pairs[v], c.left_out[v], c.seeds[v], sign) for v in views}
        cells = {}
        for position, j in enumerate(c.matched):
            per_view = {v: _cells(c.pairs[v], position, sign) for v in views}
            if max(len(x) for x in per_view.values()) >= 2:
                cells[j] = per_view
        out.append(_Raw(c, sign, spreads, cells))
    return out


def _differs(cells: dict[str, dict[Any, Spread]], q: float) -> bool:
    """Whether an effect's sign (+, - or 0: its interval excludes 0 above, below, or not) differs between the
    cells of a split, in any view."""
    return any(len({s.interval(q).sign for s in view.values()}) > 1 for view in cells.values())


def _select(effects: list[_Raw], views: int) -> tuple[list[tuple[_Raw, list[int]]], int, float]:
    """The splits to show and the Bonferroni count m: start from the overall effects' intervals; show the splits
    whose cells differ in sign at the level of m; count their cells' intervals into m; again until m stops
    growing (m never shrinks: it is at least the intervals shown, and the splits are chosen at its level)."""
    base = views * len(effects)
    m = max(base, 1)
    while True:
        q = 1 - ALPHA / (2 * m)
        chosen = [(e, [j for j, cells in e.cells.items() if _differs(cells, q)]) for e in effects]
        grown = base + views * sum(max(len(v) for v in e.cells[j].values()) for e, js in chosen for j in js)
        if grown <= m:
            return chosen, m, q
        m = grown


def _both_pairs(fixed: Interval, tuned: Interval | None, tune: str) -> str:
    """'4 pairs', or each view's where they differ ('4 pairs at the fixed lr, 3 at the best'), with those left
    out ('1 left out': a side missing, unfinished or stopped)."""
    if tuned is None or (tuned.pairs, tuned.left_out) == (fixed.pairs, fixed.left_out):
        return _pairs_words(fixed)
    return f"{_pairs_words(fixed)} at the fixed {tune}; {_pairs_words(tuned)} at the best"


def _effect(raw: _Raw, scientific: list[str], tune: str, q: float, seeds_now: int) -> Effect:
    c = raw.comparison
    level, versus = (c.a, c.b) if raw.sign > 0 else (c.b, c.a)
    fixed = raw.spreads[FIXED].interval(q)
    tuned = raw.spreads[TUNED].interval(q) if TUNED in raw.spreads else None
    label = _label(fixed, tuned)
    seeds = seeds_to_resolve(raw.spreads[TUNED if tuned is not None else FIXED], q, seeds_now) \
        if label == "unresolved" else None
    factor = scientific[c.factor]
    if not fixed.pairs and (tuned is None or not tuned.pairs):
        text = (f"{factor}: {shown_value(level)} against {shown_value(versus)}: no matched pairs "
                f"({fixed.left_out} left out: a side missing, unfinished or stopped, or several configurations)")
        return Effect(factor, level, versus, fixed, tuned, label, None, text)
    text = f"{factor}: {shown_value(level)} over {shown_value(versus)} {_interval_words(fixed)}"
    if tuned is not None:
        text += f" at the fixed {tune}, {_interval_words(tuned)} each at its best {tune}"
    text += f" ({_both_pairs(fixed, tuned, tune)})"
    if tuned is not None or label == "unresolved":
        text += f": {label}"
    if label == "unresolved":
        pairs = (tuned or fixed).pairs
        text += (f"; about {seeds} seeds would resolve it at this spread" if seeds else
                 f"; no number of seeds up to {MAX_SEEDS:,} would resolve it at this spread" if pairs >= 2 else "")
    return Effect(factor, level, versus, fixed, tuned, label, seeds, text)


def _split(raw: _Raw, by: int, scientific: list[str], tune: str, q: float) -> Split:
    c = raw.comparison
    level, versus = (c.a, c.b) if raw.sign > 0 else (c.b, c.a)
    per_view = raw.cells[by]
    order = list(dict.fromkeys(at for view in per_view.values() for at in view))
    empty = Spread(math.nan, math.nan, 0, 0, 0)
    cells = tuple(Cell(at, per_view[FIXED].get(at, empty).interval(q),
                       per_view[TUNED].get(at, empty).interval(q) if TUNED in per_view else None) for at in order)

    def view_words(which: str) -> str:
        return ", ".join(f"{shown_value(cell.at)} {_interval_words(getattr(cell, which))}" for cell in cells)

    counts = {cell.fixed.pairs for cell in cells} | {cell.tuned.pairs for cell in cells if cell.tuned is not None}
    pairs = f"{counts.pop()} pairs each" if len(counts) == 1 else "pairs: " + ", ".join(
        f"{cell.fixed.pairs} with {shown_value(cell.at)}" for cell in cells)
    text = f"{scientific[c.factor]}: {shown_value(level)} over {shown_value(versus)} by {scientific[by]}: "
    if TUNED in per_view:
        text += f"at the fixed {tune} {view_words('fixed')}; each at its best {tune} {view_words('tuned')} ({pairs})"
    else:
        text += f"{view_words('fixed')} ({pairs})"
    return Split(scientific[c.factor], level, versus, scientific[by], cells, text)


def _by_size(made: list) -> list:
    """Effects by the size of their mean (the tuned one where there is one), largest first, each followed by its
    splits; effects without pairs last."""
    blocks, current = [], None
    for f in made:
        if isinstance(f, Effect):
            current = [f]
            blocks.append(current)
        else:
            current.append(f)

    def size(block):
        e = block[0]
        mean = (e.tuned if e.tuned is not None else e.fixed).mean
        return (not math.isfinite(mean), -abs(mean) if math.isfinite(mean) else 0.0)

    return [f for block in sorted(blocks, key=size) for f in block]


def _title(results: pd.DataFrame, scientific: list[str], varied: list[int], tune: list[str], value: str, metric: str,
           groups: list[tuple], seeds: int, fixed_of: Mapping, sources: set[str], m: int, q: float) -> str:
    shape = " x ".join(f"{len({g[i] for g in groups})} {scientific[i]}" for i in varied) or "one configuration"
    words = f"findings on {value}"
    if value != metric:
        words += f" (the test figure; choices on {metric})"
    words += f": {shape}, {seeds} seed{'s' * (seeds != 1)}"
    factor = " x ".join(tune)
    if tune:
        where = {"listed": "the spec's first listed value", "default": "the value tried nearest torch's default",
                 "first": "the first tried", "unset": "unset"}
        said = " or ".join(where[s] for s in ("listed", "default", "first") if s in sources) or "the one tried"
        fixed = _fixed_words(fixed_of, scientific, tune)
        words += (f"; every effect at a fixed {factor} ({said}: {fixed}) and with each configuration at its best "
                  f"{factor} chosen on {metric}")
    else:
        words += "; " + _one_rate_words(results, scientific)
    level = 2 * q - 1
    words += (f"; differences paired on every other factor and seed: mean [interval], Student t, each at "
              f"{percent(level)} (Bonferroni: 95% over all {m} intervals)")
    return words


def percent(level: float) -> str:
    """A confidence level as a percentage, its complement to three significant digits: 95%, 98.75%, 99.861%."""
    complement = 100 * (1 - level)
    digits = max(0, 2 - math.floor(math.log10(complement))) if complement > 0 else 0
    return f"{100 * level:.{digits}f}".rstrip("0").rstrip(".") + "%"


def _fixed_words(fixed_of: Mapping[tuple, tuple], scientific: list[str], tune: list[str]) -> str:
    """The fixed settings per optimizer ('sgd 0.00144, adam 0.000795'), or per configuration where they differ
    within an optimizer."""
    at = scientific.index("optimizer") if "optimizer" in scientific else None
    per: dict[Any, set] = {}
    for g, s in fixed_of.items():
        per.setdefault(g[at] if at is not None else None, set()).add(_setting(s, tune))
    if all(len(v) == 1 for v in per.values()):
        return ", ".join((f"{shown_value(k)} " if k is not None else "") + next(iter(v)) for k, v in per.items())
    return "per configuration"


def _one_rate_words(results: pd.DataFrame, scientific: list[str]) -> str:
    """How a sweep that tunes nothing sets its learning rate: one rate, one per optimizer, or a factor."""
    if "lr" not in results or results.empty:
        return "the sweep tunes nothing"
    rates = list(dict.fromkeys(factor_column(results, "lr")))
    if len(rates) == 1:
        return f"at one learning rate, lr {shown_value(rates[0])} (the sweep tunes nothing)"
    per = {}
    for o, r in zip(factor_column(results, "optimizer"), factor_column(results, "lr")):
        per.setdefault(o, set()).add(r)
    if all(len(v) == 1 for v in per.values()):
        return ("at one learning rate per optimizer, " + ", ".join(f"{shown_value(o)} {shown_value(next(iter(v)))}"
                                                                   for o, v in per.items())
                + " (the sweep tunes nothing)")
    return "at the learning rates tried, lr a factor like the others (the sweep tunes nothing; tune: [lr] compares " \
           "each configuration at its best)"
