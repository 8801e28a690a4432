"""Stopping hopeless trials early: rules over the pathology measures, and asynchronous successive halving.

A spec's `stop:` (sweep.spec.spec.StopSpec) names rules, each with its patience in epochs. A rule is its flag:
it applies the flag's test (sweep.measures.fires) to the epoch's measures (sweep.measures.epoch_measures:
the test accuracy, the closing statistics snapshot's summary, the train loss over the test loss before
training), with the flag's threshold unless the spec gives one:

- chance:    |test accuracy - 1/classes| <= margin (classes: the data's, Arrays.num_classes)
- dead:      the largest dead_frac of the activation layers > above
- saturated: the largest sat_frac of the bounded activation layers > above
- vanishing: first / last weight layer's gradient std < below
- exploding: first / last weight layer's gradient std > above, or the train loss > above x the test loss
             before training (the exploding loss, as the flag reads it)

judged from epoch 1, for `epochs` epochs in a row (a measure that does not apply, like dead_frac of tanh,
never fires). A trial that meets a rule stops after the epoch that completed the streak: `stopped@E rule`.

`asha: {grace: G, reduction: R}` is asynchronous successive halving (Li et al., 2020), decided exactly as
Ray Tune's `_Bracket` (ray/tune/schedulers/async_hyperband.py, one bracket) with max_t the sweep's epochs:

- milestones G*R^k, unrounded, for k < int(log(epochs/G)/log(R) + 1) (`milestones`);
- after each epoch E before the last, a trial is judged at the highest milestone <= E at which it has no
  result yet (so at the first epoch at or past each milestone; where one epoch passes two milestones, at
  the higher, and the lower one judges it at a later epoch that passes none, as Ray's loop does);
- it stops if its metric (negated for a loss) is below the cutoff: numpy's nanpercentile, at
  (1 - 1/R) * 100, of the results the OTHER trials recorded at that milestone, computed before its own
  is recorded; no result there, all of them NaN, or its own NaN: it continues. Its result is recorded
  either way (NaN included, as Ray records it), keyed by its config hash: a trial is judged at most once
  per milestone, and a trial that reports an epoch again (a retried member) gets the answer it got.

Results at the sweep's last epoch are neither judged nor recorded (nothing is left to save). The unit is a
trial, not a configuration's seed mean: a decision is due when a trial reaches a rung, and its
configuration's other seeds may not be there yet. Trials a rule stops, exempt trials (resumed after a
stop) and diverged ones never enter a rung. The rung results live in one place for the whole sweep,
`Rungs`: in a Ray actor owned by the driver (`start_rung_store`), or in the process for a bundle run
without Ray. Each decision goes out with the trial's report of that epoch (its `rung`), and the recorder
stores it in the database's rung_results, keyed by (trial, rung); a rerun seeds the store from that table
(db.queries.rung_results), so it judges against exactly the results earlier runs judged. A fused bundle
sends its members' results in one call, in grid order (sweep.spec.grid.expand_grid), so several trials
reaching a rung at once are judged in a fixed order, the order one-at-a-time trials reach it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from sweep.measures import DEFAULT_CLASSES, FLAGS, RANKING, fires, loss_ratio, threshold_of

NUM_CLASSES = DEFAULT_CLASSES

# rule -> (the measures it reads, its threshold's key in the spec, the default threshold): the flags'.
RULES: Mapping[str, tuple[tuple[str, ...], str, float]] = {
    name: (measures, key, threshold_of(name)) for name, (measures, key, _) in FLAGS.items()}

# The rung value of a trial at an epoch, per ranking metric: (the report's column, higher is better).
RUNG_VALUE: Mapping[str, tuple[str, bool]] = {name: (m.column, m.higher_is_better) for name, m in RANKING.items()}


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
class HalvingSpec:
    grace: int  # the first rung, in epochs
    reduction: float  # R: the top 1/R of each population continue at each rung


@dataclass(frozen=True)
class StopSpec:
    rules: tuple[StopRule, ...] = ()
    asha: AshaSpec | None = None
    halving: HalvingSpec | None = None  # synchronous successive halving (sweep/run/halving.py); never with asha

    def to_dict(self) -> dict[str, Any]:
        """The spec's own form (what parse_stop reads): for Ray's config and the stored spec."""
        out: dict[str, Any] = {r.name: {RULES[r.name][1]: r.threshold, "epochs": r.epochs} for r in self.rules}
        if self.asha is not None:
            out["asha"] = {"grace": self.asha.grace, "reduction": self.asha.reduction}
        if self.halving is not None:
            out["halving"] = {"grace": self.halving.grace, "reduction": self.halving.reduction}
        return out


def rule_hit(rule: StopRule, measures: Mapping[str, float | None], classes: int = NUM_CLASSES) -> bool:
    """Whether one epoch's measures meet `rule`: its flag's test at the rule's threshold (a measure that is
    None or NaN never does)."""
    return fires(rule.name, measures, rule.threshold, classes)


def rule_reason(rules: Sequence[StopRule], history: Sequence[Mapping[str, Any]],
                classes: int = NUM_CLASSES) -> str | None:
    """`stopped@E rule` for the first rule (in spec order) whose streak of epochs in a row, ending at the
    last epoch of `history` (its measures of epochs 1..E, in order, each with an "epoch"), reaches its
    patience; None if none does."""
    if not history:
        return None
    for rule in rules:
        streak = 0
        for measures in reversed(history):
            if not rule_hit(rule, measures, classes):
                break
            streak += 1
        if streak >= rule.epochs:
            return f"stopped@{history[-1]['epoch']} {rule.name}"
    return None


def first_stop(rules: Sequence[StopRule], history: Sequence[Mapping[str, Any]],
               classes: int = NUM_CLASSES) -> str | None:
    """The reason the rules would have stopped a trial with this `history` at the earliest epoch, or None."""
    for end in range(1, len(history) + 1):
        reason = rule_reason(rules, history[:end], classes)
        if reason is not None:
            return reason
    return None


# --------------------------------------------------------------------------- ASHA, as Ray's _Bracket

def milestones(asha: AshaSpec, epochs: int) -> list[float]:
    """The rungs of Ray's _Bracket(grace, epochs, reduction, s=0), ascending: grace * R**k, unrounded, for
    k < int(log(epochs / grace) / log(R) + 1). Example: milestones(AshaSpec(1, 1.5), 9) -> [1, 1.5, 2.25,
    3.375, 5.0625, 7.59375]"""
    count = int(math.log(epochs / asha.grace) / math.log(asha.reduction) + 1)
    return [asha.grace * asha.reduction ** k for k in range(count)]


def rung_epochs(asha: AshaSpec, epochs: int) -> list[int]:
    """The epochs before the last at which a trial reporting every epoch is first judged: the first epoch
    at or past each milestone. Example: rung_epochs(AshaSpec(1, 1.5), 9) -> [1, 2, 3, 4, 6, 8]"""
    return sorted({math.ceil(m) for m in milestones(asha, epochs) if math.ceil(m) < epochs})


def nanpercentile(values: Sequence[float], percent: float) -> float:
    """numpy.nanpercentile(values, percent) with its default (linear) method, in plain Python: the same
    float64 operations in the same order (numpy's _quantile and _lerp), NaN where every value is NaN."""
    q = percent / 100
    ordered = sorted(v for v in values if not math.isnan(v))
    if not ordered:
        return math.nan
    n = len(ordered)
    virtual = (n - 1) * q
    if virtual >= n - 1:  # numpy takes the last value for both neighbours, its index -1 in the weight
        below = above = ordered[-1]
        gamma = virtual - (-1.0)
    else:
        low = math.floor(virtual)
        below, above = ordered[low], ordered[low + 1]
        gamma = virtual - low
    diff = above - below
    return above - diff * (1 - gamma) if gamma >= 0.5 else below + diff * gamma


class Rungs:
    """The results recorded at each milestone, and the ASHA decision on each new one: Ray's _Bracket, one
    per population.

    `judge(epoch, [(trial, value), ...])` answers, for each in order, None (not judged at this epoch) or
    the decision as a dict: rung (the milestone's index k), milestone, epoch, value (the metric as
    reported) and continued. That dict is what the trial reports and the database stores (rung_results).
    `populations`: trial -> its population (the runner gives each trial's seed): a trial competes only
    with the trials of its own, as in a bracket of its own, so each seed is a replicate of the whole
    successive-halving study and a seed added later meets the bar its own predecessors met. Without it
    (or for a trial it lacks), one population.
    """

    def __init__(self, asha: AshaSpec, epochs: int, higher_is_better: bool = True,
                 populations: Mapping[str, Any] | None = None):
        self.epochs, self.higher_is_better = epochs, higher_is_better
        self.percent = (1 - 1 / asha.reduction) * 100  # Ray's argument to np.nanpercentile
        self.milestones = milestones(asha, epochs)
        self.populations = dict(populations or {})
        # population -> per milestone: trial -> value, + higher
        self.recorded: dict[Any, list[dict[str, float]]] = {}
        self.answers: dict[tuple[str, int], dict[str, Any]] = {}  # (trial, epoch) -> its decision there

    def _at(self, trial: str, population: Any = None) -> list[dict[str, float]]:
        """The results recorded at each milestone in `trial`'s population."""
        key = self.populations.get(trial, population)
        return self.recorded.setdefault(key, [{} for _ in self.milestones])

    def judge(self, epoch: int, entries: Sequence[tuple[str, float]]) -> list[dict[str, Any] | None]:
        """Judge each (trial, value) of `epoch` in order (see the class doc)."""
        out = []
        for trial, value in entries:
            if (trial, epoch) not in self.answers:  # else: that epoch again (a retried member): its answer
                answer = self._on_result(trial, epoch, value)
                if answer is None:
                    out.append(None)
                    continue
                self.answers[(trial, epoch)] = answer
            out.append(self.answers[(trial, epoch)])
        return out

    def _on_result(self, trial: str, epoch: int, value: float) -> dict[str, Any] | None:
        """_Bracket.on_result: the highest milestone <= epoch without this trial's result judges it."""
        if epoch >= self.epochs:
            return None
        value = math.nan if value is None else float(value)
        signed = value if self.higher_is_better else -value
        mine = self._at(trial)
        for k in reversed(range(len(self.milestones))):
            recorded = mine[k]
            if epoch < self.milestones[k] or trial in recorded:
                continue
            cutoff = nanpercentile(list(recorded.values()), self.percent) if recorded else None
            recorded[trial] = signed
            return {"rung": k, "milestone": self.milestones[k], "epoch": epoch, "value": value,
                    "continued": not (cutoff is not None and signed < cutoff)}
        return None

    def seed(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Decisions earlier runs recorded (db.queries.rung_results: config_hash, rung, milestone, epoch,
        value, continued, and the trial's seed: its population where `populations` lacks it), as `judge` made
        them; rows of another milestone (the spec's asha changed) are left out."""
        for row in rows:
            k = row["rung"]
            if k < len(self.milestones) and row["milestone"] == self.milestones[k]:
                value = math.nan if row["value"] is None else float(row["value"])
                self._at(row["config_hash"], row.get("seed"))[k][row["config_hash"]] = \
                    value if self.higher_is_better else -value
                self.answers[(row["config_hash"], row["epoch"])] = {
                    "rung": k, "milestone": row["milestone"], "epoch": row["epoch"], "value": value,
                    "continued": bool(row["continued"])}


Judge = Callable[[int, list[tuple[str, float]]], list[dict[str, Any] | None]]


class Stopper:
    """What a bundle asks after each epoch: which members stop, and why.

    `judge` is the rung store's decision function (Rungs.judge, or a Ray actor's); None without ASHA.
    `exempt`: config hashes of trials resumed after a stop (`sweep run --resume-stopped`): they run to
    the end, judged by no rule and entering no rung. `order`: config hash -> the trial's place in the
    grid (sweep.spec.grid.expand_grid); members judged at one epoch are judged in that order, the order
    in which one-at-a-time trials reach it (a bundle's members are ordered for fusion instead).
    `classes`: the data set's (chance is 1/classes).
    """

    def __init__(self, stop: StopSpec, metric: str, epochs: int, judge: Judge | None = None, exempt=frozenset(),
                 order: Mapping[str, int] | None = None, classes: int = NUM_CLASSES):
        self.stop, self.epochs, self.exempt, self.order = stop, epochs, frozenset(exempt), dict(order or {})
        self.classes = classes
        self.column, higher = RUNG_VALUE[metric]
        if stop.asha is not None and judge is None:
            judge = Rungs(stop.asha, epochs, higher).judge
        self.judge = judge if stop.asha is not None else None
        self.rungs = halving_rungs(stop.halving, epochs) if stop.halving is not None else []

    def waits(self, epoch: int, config_hash: str) -> bool:
        """Whether a trial that trained `epoch` (and no rule stopped) waits there for its population: a halving
        rung (halving_rungs), unless it is exempt."""
        return epoch in self.rungs and config_hash not in self.exempt

    def decide(self, epoch: int, histories: Sequence[Sequence[Mapping[str, Any]]],
               results: Sequence[Mapping[str, Any]]) -> tuple[dict[int, str], dict[int, dict[str, Any]]]:
        """(member index -> reason, for the members that stop after `epoch`; member index -> its ASHA
        decision (Rungs.judge), for the members judged at a rung), never after the last epoch.
        `histories[k]`: member k's measures of epochs 1..epoch; `results[k]`: its report of `epoch`."""
        stopped: dict[int, str] = {}
        judged: dict[int, dict[str, Any]] = {}
        if epoch >= self.epochs:
            return stopped, judged
        candidates = [k for k in range(len(results)) if results[k].get("config_hash") not in self.exempt]
        for k in candidates:
            reason = rule_reason(self.stop.rules, histories[k], self.classes)
            if reason is not None:
                stopped[k] = reason
        if self.judge is not None and epoch >= self.stop.asha.grace:
            at_rung = sorted((k for k in candidates if k not in stopped),
                             key=lambda k: (self.order.get(results[k].get("config_hash"), k), k))
            entries = [(results[k]["config_hash"], _value(results[k].get(self.column))) for k in at_rung]
            for k, answer in zip(at_rung, self.judge(epoch, entries) if entries else []):
                if answer is not None:
                    judged[k] = answer
                    if not answer["continued"]:
                        stopped[k] = f"stopped@{epoch} asha"
        return stopped, judged


def _value(value: Any) -> float:
    return math.nan if value is None else float(value)


# --------------------------------------------------------------------------- synchronous halving, as Ray's HyperBand

def halving_rungs(halving: HalvingSpec, epochs: int) -> list[int]:
    """The epochs at which halving judges a population: the times of Ray's HyperBand _Bracket, r0 = grace and
    r_{k+1} = int(min(r_k * R, epochs)), those below the sweep's last epoch.
    Example: halving_rungs(HalvingSpec(1, 2), 6) -> [1, 2, 4]"""
    rungs, r = [], halving.grace
    while r < epochs:
        rungs.append(int(r))
        r = int(min(r * halving.reduction, epochs))
    return rungs


def halve(entries: Sequence[tuple[str, float]], size: int, reduction: float) -> tuple[set[str], int]:
    """One rung of a population, as Ray's _Bracket.successive_halving decides it: `size` (the population's
    bracket size before the rung: its member count at the first rung, then what the last rung kept) becomes
    ceil(size / R), and that many of `entries` (trial, value, higher is better; in the population's fixed
    order) continue: the highest, ties to the later entry (a stable sort's last), NaN lowest. Returns (the
    trials that continue, the new size). Example: halve([("a", .5), ("b", .7), ("c", .6)], 3, 2) -> ({"b",
    "c"}, 2)"""
    kept = math.ceil(size / reduction)
    ordered = sorted(entries, key=lambda e: -math.inf if math.isnan(e[1]) else e[1])
    return {trial for trial, _ in ordered[max(0, len(ordered) - kept):]}, kept


# --------------------------------------------------------------------------- the rung store in Ray

def rung_store_name(sweep: str) -> str:
    return f"sweep-rungs:{sweep}"


def start_rung_store(stop: StopSpec, metric: str, epochs: int, sweep: str, seeded: Sequence[Mapping[str, Any]],
                     populations: Mapping[str, Any] | None = None):
    """The sweep's rung store as a named Ray actor owned by the driver (it ends with the driver), holding
    the decisions earlier runs recorded (`seeded`: db.queries.rung_results), each trial in its population
    (Rungs). None without ASHA."""
    if stop.asha is None:
        return None
    import ray

    rungs = Rungs(stop.asha, epochs, RUNG_VALUE[metric][1], populations)
    rungs.seed(seeded)
    actor = ray.remote(num_cpus=0)(_RungActor).options(name=rung_store_name(sweep)).remote(rungs)
    ray.get(actor.ready.remote())
    return actor


class _RungActor:
    def __init__(self, rungs: Rungs):
        self.rungs = rungs

    def ready(self) -> bool:
        return True

    def judge(self, epoch: int, entries: list[tuple[str, float]]) -> list[dict[str, Any] | None]:
        return self.rungs.judge(epoch, entries)


def ray_judge(sweep: str) -> Judge:
    """The judge of the sweep's rung store, from inside a Ray trial."""
    import ray

    actor = ray.get_actor(rung_store_name(sweep))
    return lambda epoch, entries: ray.get(actor.judge.remote(epoch, entries))


# --------------------------------------------------------------------------- what a rerun does with stopped trials

def stays_stopped(stop: StopSpec, reason: str, history: Sequence[Mapping[str, Any]],
                  start_test_loss: float | None = None, classes: int = NUM_CLASSES) -> bool:
    """Whether a trial stopped for `reason` ("stopped@E rule") stays stopped under the spec's `stop` now:
    a rule stop holds while that rule, as the spec now sets it, would have stopped the trial by epoch E on
    its recorded `history` (its epoch rows from epoch 1, with the summary columns; `start_test_loss`, its
    test loss before training, gives their loss ratio) (raise its patience, loosen its threshold or remove
    it, and the trial goes on);
    an ASHA stop holds while the spec has `asha:`, a halving stop while it has `halving:` (their rung results
    are the sweep's, not the trial's); a reason not of that form stays."""
    at, _, rule = reason.removeprefix("stopped@").partition(" ")
    if not reason.startswith("stopped@") or not at.isdigit() or rule not in (*RULES, "asha", "halving"):
        return True  # a reason this version cannot read: kept as it is (--resume-stopped continues it)
    if rule == "asha":
        return stop.asha is not None
    if rule == "halving":
        return stop.halving is not None
    rules = [r for r in stop.rules if r.name == rule]
    if not rules:
        return False
    measures = [m if "loss_ratio" in m else {**m, "loss_ratio": loss_ratio(m.get("train_loss"), start_test_loss)}
                for m in history if m["epoch"] <= int(at)]
    return first_stop(rules, measures, classes) is not None
