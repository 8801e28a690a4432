"""Stopping hopeless trials early: rules over the pathology measures, and asynchronous successive halving.

A spec's `stop:` (sweep.spec.StopSpec) names rules, each with its patience in epochs, over the measures
the pathology flags read (db/flags.py), so that a rule and its flag agree:

- chance:    |test accuracy - 1/classes| <= margin           (the `chance` flag)
- dead:      the largest dead_frac of the activation layers > above   (`dead`)
- saturated: the largest sat_frac of the bounded activation layers > above   (`saturated`)
- vanishing: first / last weight layer's gradient std < below   (`vanishing`)
- exploding: first / last weight layer's gradient std > above   (`exploding`)

each judged on the epoch's closing statistics snapshot, from epoch 1, for `epochs` epochs in a row
(a measure that does not apply, like dead_frac of tanh, never fires). A trial that meets a rule stops
after the epoch that completed the streak: `stopped@E rule`.

`asha: {grace: G, reduction: R}` is asynchronous successive halving (Li et al., 2020): at rungs G, G*R,
G*R^2, ... epochs (before the sweep's last), a trial continues only if its metric at the rung is not below
the (1 - 1/R) quantile of the results recorded at that rung so far, its own included (Ray Tune's ASHA
rule; the first trial to reach a rung always continues). The unit compared is a trial, not a
configuration's seed mean: a decision is due when a trial reaches a rung, and its configuration's other
seeds may not be there yet (or ever, if they are still pending); waiting for them would hold a GPU idle.
The rung results live in one place for the whole sweep, `Rungs`: in a Ray actor owned by the driver
(`start_rung_store`, seeded from the database so that a rerun judges against what earlier runs
recorded), or in the process for a bundle run without Ray. A fused bundle sends its members' results at a
rung in one call, in member order (the grid's order), so several trials reaching a rung at once are
judged in a fixed order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

NUM_CLASSES = 10  # every data set of sweep.data; kept here so that this module imports neither numpy nor torch


@dataclass(frozen=True)
class FlagThresholds:
    """The pathology flags' thresholds (db/flags.py), and the stop rules' defaults: one definition of each."""

    saturated: float = 0.5  # share of values near an asymptote
    dead: float = 0.5  # share of dead units
    vanishing: float = 1e-2  # first/last layer gradient std ratio below this
    exploding: float = 1e2  # ... above this
    chance_margin: float = 0.02  # accuracy within this of 1/classes
    classes: int = NUM_CLASSES


# rule -> (the epoch measure it reads, its threshold's key in the spec, the default threshold)
_DEFAULTS = FlagThresholds()
RULES: Mapping[str, tuple[str, str, float]] = {
    "chance": ("test_acc", "margin", _DEFAULTS.chance_margin),
    "dead": ("max_dead_frac", "above", _DEFAULTS.dead),
    "saturated": ("max_sat_frac", "above", _DEFAULTS.saturated),
    "vanishing": ("grad_std_ratio", "below", _DEFAULTS.vanishing),
    "exploding": ("grad_std_ratio", "above", _DEFAULTS.exploding),
}


@dataclass(frozen=True)
class StopRule:
    name: str  # a key of RULES
    threshold: float
    epochs: int  # patience: epochs in a row


@dataclass(frozen=True)
class AshaSpec:
    grace: int  # the first rung, in epochs
    reduction: float  # R: the top 1/R continue at each rung


@dataclass(frozen=True)
class StopSpec:
    rules: tuple[StopRule, ...] = ()
    asha: AshaSpec | None = None

    def to_dict(self) -> dict[str, Any]:
        """The spec's own form (what parse_stop reads): for Ray's config and the stored spec."""
        out: dict[str, Any] = {r.name: {RULES[r.name][1]: r.threshold, "epochs": r.epochs} for r in self.rules}
        if self.asha is not None:
            out["asha"] = {"grace": self.asha.grace, "reduction": self.asha.reduction}
        return out


def rule_hit(rule: StopRule, measures: Mapping[str, float | None], classes: int = NUM_CLASSES) -> bool:
    """Whether one epoch's measures meet `rule` (a measure that is None or NaN never does)."""
    column, how, _ = RULES[rule.name]
    value = measures.get(column)
    if value is None or math.isnan(value):
        return False
    if rule.name == "chance":
        return abs(value - 1.0 / classes) <= rule.threshold
    return value < rule.threshold if how == "below" else value > rule.threshold


def rule_reason(rules: Sequence[StopRule], history: Sequence[Mapping[str, Any]]) -> str | None:
    """`stopped@E rule` for the first rule (in spec order) whose streak of epochs in a row, ending at the
    last epoch of `history` (its measures of epochs 1..E, in order, each with an "epoch"), reaches its
    patience; None if none does."""
    if not history:
        return None
    for rule in rules:
        streak = 0
        for measures in reversed(history):
            if not rule_hit(rule, measures):
                break
            streak += 1
        if streak >= rule.epochs:
            return f"stopped@{history[-1]['epoch']} {rule.name}"
    return None


def first_stop(rules: Sequence[StopRule], history: Sequence[Mapping[str, Any]]) -> str | None:
    """The reason the rules would have stopped a trial with this `history` at the earliest epoch, or None."""
    for end in range(1, len(history) + 1):
        reason = rule_reason(rules, history[:end])
        if reason is not None:
            return reason
    return None


def rung_epochs(asha: AshaSpec, epochs: int) -> list[int]:
    """The rungs before a sweep's last epoch: G, G*R, G*R^2, ... (rounded to whole epochs)."""
    rungs, at = [], float(asha.grace)
    while round(at) < epochs:
        if not rungs or round(at) > rungs[-1]:
            rungs.append(int(round(at)))
        at *= asha.reduction
    return rungs


def _quantile(values: Sequence[float], q: float) -> float:
    """numpy's default (linear) quantile, without numpy."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class Rungs:
    """The results recorded at each rung, and the ASHA decision on each new one."""

    reduction: float
    higher_is_better: bool = True
    results: dict[int, list[float]] = field(default_factory=dict)

    def judge(self, rung: int, values: Sequence[float]) -> list[bool]:
        """Record each value at `rung` in order; True where that trial continues."""
        keep = []
        for value in values:
            value = value if self.higher_is_better else -value
            recorded = self.results.setdefault(rung, [])
            recorded.append(value)
            keep.append(value >= _quantile(recorded, 1.0 - 1.0 / self.reduction))
        return keep

    def seed(self, rung: int, values: Sequence[float]) -> None:
        """Results recorded before this run (from the database), as `judge` would have kept them."""
        self.results.setdefault(rung, []).extend(v if self.higher_is_better else -v for v in values)


# The rung value of a trial at an epoch, per ranking metric (sweep.spec.METRICS): the metric as it stands
# at that epoch, from the epoch's report.
RUNG_VALUE: Mapping[str, tuple[str, bool]] = {
    "final_test_acc": ("test_acc", True),
    "best_test_acc": ("best_test_acc", True),
    "final_test_loss": ("test_loss", False),
    "final_train_loss": ("train_loss", False),
}


class Stopper:
    """What a bundle asks after each epoch: which members stop, and why.

    `judge` is the rung store's decision function (Rungs.judge, or a Ray actor's); None without ASHA.
    `exempt`: config hashes of trials resumed after a stop (`sweep run --resume-stopped`): they run to
    the end, judged by no rule and entering no rung. `order`: config hash -> the trial's place in the
    grid (sweep.grid.expand_grid); members reaching a rung together are judged in that order, the order
    in which one-at-a-time trials reach it (a bundle's members are ordered for fusion instead).
    """

    def __init__(self, stop: StopSpec, metric: str, epochs: int,
                 judge: Callable[[int, list[float]], list[bool]] | None = None, exempt=frozenset(),
                 order: Mapping[str, int] | None = None):
        self.stop, self.epochs, self.exempt, self.order = stop, epochs, frozenset(exempt), dict(order or {})
        self.column = RUNG_VALUE[metric][0]
        self.rungs = set(rung_epochs(stop.asha, epochs)) if stop.asha is not None else set()
        if stop.asha is not None and judge is None:
            judge = Rungs(stop.asha.reduction, RUNG_VALUE[metric][1]).judge
        self.judge = judge

    def decide(self, epoch: int, histories: Sequence[Sequence[Mapping[str, Any]]],
               results: Sequence[Mapping[str, Any]]) -> dict[int, str]:
        """member index -> reason, for the members that stop after `epoch` (never after the last one).
        `histories[k]`: member k's measures of epochs 1..epoch; `results[k]`: its report of `epoch`."""
        stopped: dict[int, str] = {}
        if epoch >= self.epochs:
            return stopped
        judged = [k for k in range(len(results)) if results[k].get("config_hash") not in self.exempt]
        for k in judged:
            history = histories[k]
            reason = rule_reason(self.stop.rules, history)
            if reason is not None:
                stopped[k] = reason
        if epoch in self.rungs:
            at_rung = sorted((k for k in judged if k not in stopped),
                             key=lambda k: (self.order.get(results[k].get("config_hash"), k), k))
            values = [float(results[k][self.column]) for k in at_rung]
            for k, keep in zip(at_rung, self.judge(epoch, values) if at_rung else []):
                if not keep:
                    stopped[k] = f"stopped@{epoch} asha"
        return stopped


def epoch_measures(epoch: int, test_acc: float, snapshot_rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One epoch's measures for the rules: its test accuracy and the summary of its closing statistics
    snapshot (the last step of `snapshot_rows`), as the database's epoch row holds it."""
    from sweep.db.upgrade import summarize_snapshot  # the one definition the flags read, too

    last = max((r["step"] for r in snapshot_rows), default=None)
    summary = summarize_snapshot([r for r in snapshot_rows if r["step"] == last]) if last is not None else {}
    return {"epoch": epoch, "test_acc": test_acc, **summary}


# --------------------------------------------------------------------------- the rung store in Ray

def rung_store_name(sweep: str) -> str:
    return f"sweep-rungs:{sweep}"


def start_rung_store(stop: StopSpec, metric: str, epochs: int, sweep: str, seeded: Mapping[int, list[float]]):
    """The sweep's rung store as a named Ray actor owned by the driver (it ends with the driver), holding
    `seeded` (rung -> values recorded by earlier runs). None without ASHA."""
    if stop.asha is None:
        return None
    import ray

    rungs = Rungs(stop.asha.reduction, RUNG_VALUE[metric][1])
    for rung, values in seeded.items():
        rungs.seed(rung, values)
    actor = ray.remote(num_cpus=0)(_RungActor).options(name=rung_store_name(sweep)).remote(rungs)
    ray.get(actor.ready.remote())
    return actor


class _RungActor:
    def __init__(self, rungs: Rungs):
        self.rungs = rungs

    def ready(self) -> bool:
        return True

    def judge(self, rung: int, values: list[float]) -> list[bool]:
        return self.rungs.judge(rung, values)


def ray_judge(sweep: str) -> Callable[[int, list[float]], list[bool]]:
    """The judge of the sweep's rung store, from inside a Ray trial."""
    import ray

    actor = ray.get_actor(rung_store_name(sweep))
    return lambda rung, values: ray.get(actor.judge.remote(rung, values))


# --------------------------------------------------------------------------- what a rerun does with stopped trials

def stays_stopped(stop: StopSpec, reason: str, history: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a trial stopped for `reason` ("stopped@E rule") stays stopped under the spec's `stop` now:
    a rule stop holds while that rule, as the spec now sets it, would have stopped the trial by epoch E on
    its recorded `history` (raise its patience, loosen its threshold or remove it, and the trial goes on);
    an ASHA stop holds while the spec has `asha:` (its rung results are the sweep's, not the trial's);
    a reason not of that form stays."""
    at, _, rule = reason.removeprefix("stopped@").partition(" ")
    if not reason.startswith("stopped@") or not at.isdigit() or rule not in (*RULES, "asha"):
        return True  # a reason this version cannot read: kept as it is (--resume-stopped continues it)
    if rule == "asha":
        return stop.asha is not None
    rules = [r for r in stop.rules if r.name == rule]
    if not rules:
        return False
    return first_stop(rules, [m for m in history if m["epoch"] <= int(at)]) is not None


def recorded_rungs(epochs_frame, stop: StopSpec, metric: str, epochs: int) -> dict[int, list[float]]:
    """rung -> the rung values earlier runs recorded, from the sweep's epoch rows (db.queries.
    epoch_metrics_frame: one row per trial and epoch), in trial order, to seed the rung store."""
    if stop.asha is None or epochs_frame.empty:
        return {}
    column, _ = RUNG_VALUE[metric]
    frame = epochs_frame.sort_values(["trial_id", "epoch"])
    if column == "best_test_acc":
        frame = frame.assign(best_test_acc=frame.groupby("trial_id")["test_acc"].cummax())
    out: dict[int, list[float]] = {}
    for rung in rung_epochs(stop.asha, epochs):
        values = frame.loc[frame["epoch"] == rung, column].astype(float)
        out[rung] = [v for v in values.tolist() if not math.isnan(v)]
    return {r: v for r, v in out.items() if v}
