"""A fair comparison: each configuration of the scientific factors at its own best setting of the nuisance
hyper-parameters (the Deep Learning Tuning Playbook's isolation view), chosen on the validation split.

A study's hyper-parameters are scientific (whose effect is measured: activation, init, optimizer), nuisance
(which must be tuned for each scientific value before comparing: lr, momentum, ...) or fixed. `tune` names
the nuisance ones. For each group of the other factors (seeds pooled as replicates), the tuned setting with
the best mean of the selection metric (on validation where the sweep has a split) is chosen among the
settings whose seeds all finished, and the group is shown with that setting's test figure (mean, 95%
interval, n over seeds) beside it: the test set is touched once, for the chosen setting. A chosen value at
the edge of what was tried (the smallest or largest of a listed factor, or within the outer tenth of a
range, on the log scale for log_uniform) is flagged `edge lr`: the best may lie beyond, so widen the search.
Where every setting tried ties with the best within noise (`settings_tie`), the group is `flat` instead: the
choice is a tie's, not a best at an edge, and no wider search would help (sigmoid + SGD at chance at every rate).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from sweep.analysis.factors import factor_column, factor_key, sweep_factors
from sweep.analysis.intervals import ci95

# The test figure reported beside each selection metric: at the epoch the selection reads.
TEST_OF = {"final_val_acc": "final_test_acc", "best_val_acc": "test_acc_at_best_val",
           "final_val_loss": "final_test_loss"}
EDGE_SHARE = 0.1  # the outer tenth of a range
# With one seed per setting there is no spread to measure noise by: settings tie where their means are equal as
# the report shows them (4 decimals), i.e. within half its last digit.
ONE_SEED_TIE = 0.5e-4


def selects_on_test(metric: str) -> bool:
    """Whether ranking by `metric` chooses on the test set (no validation split to choose on)."""
    return metric not in TEST_OF


def reported(metric: str) -> str:
    """The test figure shown beside a choice made on `metric` (the metric itself where it is a test one)."""
    return TEST_OF.get(metric, metric)


def _scientific(results: pd.DataFrame, tune: Sequence[str]) -> list[str]:
    """The factors a group shares: every factor of the sweep but the tuned ones, the seed and the status."""
    return [f for f in sweep_factors(results) if f not in (*tune, "seed", "status")]


def edges(chosen: Mapping[str, Any], tried: Mapping[str, list], ranges: Mapping[str, Any]) -> list[str]:
    """The tuned factors whose chosen value sits at the edge of what was tried: a range's outer tenth (on
    the log scale for log_uniform), else the smallest or largest of two or more values tried.

    Example: edges({"lr": 0.001}, {"lr": [0.001, 0.01, 0.1]}, {}) -> ["lr"]
    """
    out = []
    for factor, value in chosen.items():
        if value is None:
            continue
        r = ranges.get(factor)
        if r is not None:
            log = r["kind"] == "log_uniform"
            low, high, x = (math.log(v) if log else v for v in (r["low"], r["high"], float(value)))
            if x <= low + EDGE_SHARE * (high - low) or x >= high - EDGE_SHARE * (high - low):
                out.append(factor)
        else:
            values = sorted({v for v in tried[factor] if v is not None})
            if len(values) >= 2 and value in (values[0], values[-1]):
                out.append(factor)
    return out


def spec_ranges(spec: Mapping[str, Any]) -> dict[str, dict]:
    """factor -> its range ({kind, low, high}) over the stored spec's optimizer entries (the widest where
    several entries range over it)."""
    out: dict[str, dict] = {}
    for opt in spec.get("grid", {}).get("optimizer", []):
        for r in opt.get("ranges", []):
            have = out.get(r["key"])
            out[r["key"]] = r if have is None else {**r, "low": min(have["low"], r["low"]),
                                                     "high": max(have["high"], r["high"])}
    return out


def settings_tie(values: Sequence[Sequence[float]]) -> bool:
    """Whether two or more settings, each given by its seeds' values, tie within noise: every setting's mean
    within the noise of every other's, the noise being the widest 95% interval half-width of a setting's mean
    over its seeds (Student t, sweep.analysis.intervals.ci95), or ONE_SEED_TIE where no setting has two seeds.

    Example: settings_tie([[0.1], [0.1], [0.1]]) -> True; settings_tie([[0.1], [0.76]]) -> False
    """
    values = [[v for v in seeds if not math.isnan(v)] for seeds in values]
    values = [v for v in values if v]
    if len(values) < 2:
        return False
    means = [float(np.mean(v)) for v in values]
    noise = [ci95(pd.Series(v, dtype=float)) for v in values if len(v) >= 2]
    noise = [n for n in noise if not math.isnan(n)]
    return max(means) - min(means) <= (max(noise) if noise else ONE_SEED_TIE)


def _choose(done: pd.DataFrame, metric: str, tune: Sequence[str],
            higher: bool) -> tuple[dict, pd.DataFrame, int, bool]:
    """Of the trials of one group, the tuned setting with the best mean `metric` over its seeds (ties: the
    first in the trials' order): (its values, its trials, how many settings have a value, whether they all tie
    within noise: settings_tie)."""
    keys = list(zip(*(factor_column(done, f) for f in tune)))
    means: dict[tuple, list[float]] = {}
    for key, value in zip(keys, done[metric].to_numpy(dtype=float)):
        means.setdefault(key, []).append(value)
    scored = {k: float(np.nanmean(v)) for k, v in means.items() if not np.isnan(v).all()}
    if not scored:
        return {}, done.iloc[0:0], 0, False
    best = (max if higher else min)(scored, key=scored.get)
    mine = np.array([k == best for k in keys])
    return dict(zip(tune, best)), done[mine], len(scored), settings_tie([means[k] for k in scored])


def tuned_view(results: pd.DataFrame, metric: str, tune: Sequence[str], higher: bool,
               ranges: Mapping[str, Any] | None = None, by: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per group of the factors `by` (default: every scientific factor, so a row per configuration
    of them), each at its best setting of `tune` chosen on `metric` (see the module's doc): the group's
    factors, the chosen values, `<metric>_mean` and `n_chosen` over the chosen setting's seeds, the test
    figure `<test>_mean`, `_ci95` and `n`, `settings` (how many tuned settings had a value) and `edge` (the
    tuned factors at the edge of what was tried, or `flat` where the settings tie within noise: settings_tie),
    best first by `<metric>_mean`. Only configurations whose seeds all finished are chosen from
    (sweep.analysis.results.sweep_results marks the others).

    Example: tuned_view(results, "final_val_acc", ["lr"], True)
    """
    ranges = ranges or {}
    test = reported(metric)
    groups_by = list(by) if by is not None else _scientific(results, tune)
    done = results[results["finished"].astype(bool)]
    rows = []
    if len(done):
        keys = list(zip(*(factor_column(done, f) for f in groups_by))) if groups_by else [()] * len(done)
        members: dict[tuple, list[int]] = {}
        for i, key in enumerate(keys):
            members.setdefault(key, []).append(i)
        for key, at in members.items():
            group = done.iloc[at]
            chosen, trials, settings, flat = _choose(group, metric, tune, higher)
            tried = {f: list(factor_column(group, f)) for f in tune}
            values = trials[metric].astype(float).dropna()
            tests = trials[test].astype(float).dropna() if test in trials else pd.Series(dtype=float)
            row = {f: group[f].iat[0] for f in groups_by}
            row.update({f: chosen.get(f) for f in tune})
            row.update({f"{metric}_mean": values.mean() if len(values) else math.nan, "n_chosen": len(trials)})
            if test == metric:
                row[f"{metric}_ci95"] = ci95(values)
            else:
                row.update({f"{test}_mean": tests.mean() if len(tests) else math.nan, f"{test}_ci95": ci95(tests)})
            row.update({"n": len(tests) if test != metric else len(values), "settings": settings,
                        "edge": "flat" if flat else ", ".join(f"edge {f}" for f in edges(chosen, tried, ranges))})
            rows.append(row)
    columns = [*groups_by, *tune, f"{metric}_mean", *([f"{metric}_ci95"] if test == metric else []),
               "n_chosen", *([f"{test}_mean", f"{test}_ci95"] if test != metric else []), "n", "settings", "edge"]
    table = pd.DataFrame(rows, columns=list(dict.fromkeys(columns)))
    if len(table):
        best = table[f"{metric}_mean"].astype(float)
        order = pd.DataFrame({"empty": best.isna(), "value": -best if higher else best})
        table = table.loc[order.sort_values(["empty", "value"], kind="stable").index].reset_index(drop=True)
        table.insert(0, "rank", range(1, len(table) + 1))
    for f in tune:  # the chosen value as the factor shows it (1 stays 1, None where not set)
        table[f] = pd.Series([factor_key(v) for v in table[f]], index=table.index, dtype=object)
    table.attrs["factors"] = [*groups_by, *tune]
    table.attrs["tune"] = list(tune)
    return table
