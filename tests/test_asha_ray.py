"""ASHA (sweep.run.stopping.Rungs) against Ray Tune's own `_Bracket`: random sequences of results, the same
decision on every one (a differential test: Ray's code is the definition)."""
import math
import random
import warnings

import numpy as np
import pytest
from ray.tune.schedulers.async_hyperband import _Bracket
from ray.tune.schedulers.trial_scheduler import TrialScheduler

from sweep.run.stopping import AshaSpec, Rungs, milestones, nanpercentile, rung_epochs


class _Trial:
    """What _Bracket reads of a trial: its id."""

    def __init__(self, trial_id: str):
        self.trial_id = trial_id


def random_case(rng: random.Random) -> dict:
    """A sweep's ASHA settings and its trials' results, epoch by epoch: ties (values drawn from a few),
    NaN, infinities, integer and non-integer reductions."""
    grace = rng.randint(1, 4)
    epochs = grace + rng.randint(1, 14)
    reduction = rng.choice([2, 3, 4, 2.0, 1.5, 2.5, 1.2, 1.1, round(rng.uniform(1.05, 5.0), 3)])
    few = [round(rng.random(), 1) for _ in range(3)]

    def value() -> float:
        draw = rng.random()
        if draw < 0.08:
            return math.nan
        if draw < 0.10:
            return rng.choice([math.inf, -math.inf])
        return rng.choice(few) if draw < 0.45 else rng.random()

    trials = [f"t{i}" for i in range(rng.randint(1, 20))]
    return {"asha": AshaSpec(grace, reduction), "epochs": epochs, "higher": rng.random() < 0.6,
            "values": {t: [value() for _ in range(epochs)] for t in trials}}


def arrivals(case: dict, rng: random.Random, stopped: set):
    """Batches of (trial, epoch) in a random order, up to the epoch before the last: each trial reports its
    epochs in order until it is stopped, several trials (a bundle) sometimes in one batch."""
    next_epoch = {t: 1 for t in case["values"]}
    while next_epoch:
        batch = rng.sample(sorted(next_epoch), min(len(next_epoch), rng.choice([1, 1, 1, 2, 3])))
        yield [(t, next_epoch[t]) for t in batch]
        for t in batch:
            next_epoch[t] += 1
            if t in stopped or next_epoch[t] >= case["epochs"]:
                del next_epoch[t]


def replay(case: dict, rng: random.Random, judge_ours, population: dict | None = None) -> tuple[int, int, list]:
    """Drive Ray's _Bracket and `judge_ours(epoch, [(trial, value)]) -> [continues?]` with the same results
    (before the last epoch: Ray's scheduler stops a trial at max_t without asking the bracket); with
    `population` (trial -> its population), one _Bracket of Ray's per population. Returns (results judged,
    rung decisions Ray made, the results where the two differ)."""
    asha, epochs = case["asha"], case["epochs"]
    brackets: dict = {}
    population = population or {}
    sign = 1.0 if case["higher"] else -1.0
    trials = {t: _Trial(t) for t in case["values"]}
    stopped: set[str] = set()
    results = decisions = 0
    differ = []
    for batch in arrivals(case, rng, stopped):
        # A bundle's members judged at one epoch: one call with all of them, in order.
        by_epoch: dict[int, list[str]] = {}
        for t, e in batch:
            by_epoch.setdefault(e, []).append(t)
        for e, members in by_epoch.items():
            ours = judge_ours(e, [(t, case["values"][t][e - 1]) for t in members])
            for t, keep in zip(members, ours):
                bracket = brackets.setdefault(population.get(t), _Bracket(asha.grace, epochs, asha.reduction, 0))
                before = sum(len(r) for _, r in bracket._rungs)
                action = bracket.on_result(trials[t], e, sign * case["values"][t][e - 1])
                decisions += sum(len(r) for _, r in bracket._rungs) > before
                results += 1
                if (action == TrialScheduler.CONTINUE) != keep:
                    differ.append((t, e, case["values"][t][e - 1], action))
                if action == TrialScheduler.STOP:
                    stopped.add(t)
    return results, decisions, differ


def judge_of(case: dict):
    """This code's decision function for a case: Rungs.judge, None (not judged) meaning continue."""
    rungs = Rungs(case["asha"], case["epochs"], case["higher"])
    return lambda epoch, entries: [a is None or a["continued"] for a in rungs.judge(epoch, entries)]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's, on all-NaN rungs and inf - inf
def test_every_decision_is_rays_on_random_sequences():
    rng = random.Random(20261201)
    results = decisions = 0
    differ = []
    for _ in range(1500):
        case = random_case(rng)
        r, d, diff = replay(case, rng, judge_of(case))
        results, decisions, differ = results + r, decisions + d, differ + diff
    assert differ == []
    assert decisions >= 10_000, decisions  # rung decisions, besides the results judged at no rung
    assert results > decisions


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_each_seed_is_a_bracket_of_its_own():
    """With each trial in its seed's population (as the runner sets it), every decision is that of one Ray
    _Bracket per seed: a trial competes only with trials of its own seed."""
    rng = random.Random(20261207)
    results = decisions = 0
    differ = []
    for _ in range(600):
        case = random_case(rng)
        seeds = {t: rng.randrange(3) for t in case["values"]}
        rungs = Rungs(case["asha"], case["epochs"], case["higher"], seeds)

        def judge(epoch, entries, rungs=rungs):
            return [a is None or a["continued"] for a in rungs.judge(epoch, entries)]

        r, d, diff = replay(case, rng, judge, seeds)
        results, decisions, differ = results + r, decisions + d, differ + diff
    assert differ == []
    assert decisions >= 5_000, decisions


def test_a_seed_added_later_meets_the_bar_its_own_seed_met():
    """Seed 1 arrives after all of seed 0, at lower values: judged against seed 1's results only, its first
    trial goes on and the later ones face seed 1's bar, not the one seed 0 raised."""
    rungs = Rungs(AshaSpec(1, 2), 4, populations={"a0": 0, "b0": 0, "c0": 0, "a1": 1, "b1": 1, "c1": 1})
    assert [x["continued"] for x in rungs.judge(1, [("a0", 0.9), ("b0", 0.8), ("c0", 0.95)])] == [True, False, True]
    assert [x["continued"] for x in rungs.judge(1, [("a1", 0.3), ("b1", 0.2), ("c1", 0.4)])] == [True, False, True]
    shared = Rungs(AshaSpec(1, 2), 4)  # one population: seed 0's bar stops every seed-1 trial
    shared.judge(1, [("a0", 0.9), ("b0", 0.8), ("c0", 0.95)])
    assert [x["continued"] for x in shared.judge(1, [("a1", 0.3), ("b1", 0.2), ("c1", 0.4)])] == [False] * 3


def test_milestones_are_rays():
    rng = random.Random(7)
    for _ in range(3000):
        grace = rng.randint(1, 10)
        epochs = grace + rng.randint(1, 300)
        reduction = rng.choice([2, 3, 4, 1.5, max(1.01, round(rng.uniform(1.01, 6.0), rng.randint(1, 4)))])
        ray_milestones = sorted(m for m, _ in _Bracket(grace, epochs, reduction, 0)._rungs)
        assert milestones(AshaSpec(grace, reduction), epochs) == ray_milestones, (grace, epochs, reduction)
    # The issue's example: rungs unrounded, each judged at the first epoch at or past it.
    assert rung_epochs(AshaSpec(1, 1.5), 9) == [1, 2, 3, 4, 6, 8]
    assert rung_epochs(AshaSpec(2, 3), 10) == [2, 6]


def test_the_cutoff_is_numpys_nanpercentile_bit_for_bit():
    rng = random.Random(3)
    for _ in range(20_000):
        values = [rng.choice([rng.random(), rng.choice([0.0, -0.0, 0.5, 1.0]), math.nan, math.inf, -math.inf,
                              rng.uniform(-1e6, 1e6)]) for _ in range(rng.randint(1, 12))]
        reduction = rng.choice([2, 3, 1.5, rng.uniform(1.01, 10)])
        percent = (1 - 1 / reduction) * 100
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices and inf - inf
            expected = float(np.nanpercentile(values, percent))
        got = nanpercentile(values, percent)
        assert got == expected or (math.isnan(got) and math.isnan(expected)), (values, percent, got, expected)


def test_the_issues_examples_decide_as_ray_does():
    def decide(reduction, recorded, new):
        rungs = Rungs(AshaSpec(1, reduction), 10)
        for i, v in enumerate(recorded):
            rungs.judge(1, [(f"r{i}", v)])
        return rungs.judge(1, [("new", new)])[0]["continued"]

    assert decide(3, [0.0, 1.0], 0.9)  # the cutoff of the others (0.667), not of [0, 1, 0.9] (0.933)
    assert not decide(2, [0.0, 10.0], 4.0)  # the median of the others is 5
    assert decide(2, [0.5, 0.6], math.nan)  # a NaN result continues
    assert decide(2, [math.nan, math.nan], 0.1)  # no number recorded: no cutoff
    assert not decide(2, [math.nan, 0.5], 0.4)  # NaN left out of the cutoff: 0.5
    # A loss: lower is better, compared negated as Ray compares it.
    losses = Rungs(AshaSpec(1, 2), 10, higher_is_better=False)
    assert [a["continued"] for a in losses.judge(1, [("a", 2.0), ("b", 1.0), ("c", 3.0)])] == [True, True, False]


def test_a_trial_is_judged_once_per_rung_and_a_retried_epoch_gets_its_answer_again():
    rungs = Rungs(AshaSpec(1, 2), 8)
    assert rungs.judge(1, [("a", 0.9), ("b", 0.1)]) == [
        {"rung": 0, "milestone": 1, "epoch": 1, "value": 0.9, "continued": True},
        {"rung": 0, "milestone": 1, "epoch": 1, "value": 0.1, "continued": False}]
    # b retried (killed after its decision, before its checkpoint): the same answer, nothing recorded again.
    assert rungs.judge(1, [("b", 0.95)])[0]["continued"] is False
    assert rungs.recorded[None][0] == {"a": 0.9, "b": 0.1}
    assert rungs.judge(2, [("a", 0.5)])[0]["rung"] == 1
    assert rungs.judge(3, [("a", 0.5)]) == [None]  # no milestone in (2, 3] and none skipped: not judged
    # Seeded from the database's rows, a new store judges as the first did.
    again = Rungs(AshaSpec(1, 2), 8)
    again.seed([{"config_hash": "a", "rung": 0, "milestone": 1.0, "epoch": 1, "value": 0.9, "continued": True},
                {"config_hash": "b", "rung": 0, "milestone": 1.0, "epoch": 1, "value": 0.1, "continued": False},
                {"config_hash": "z", "rung": 0, "milestone": 2.0, "epoch": 2, "value": 0.0, "continued": True}])
    assert again.recorded[None][0] == {"a": 0.9, "b": 0.1}  # z was judged under another `asha:` (milestone 2)
    assert again.judge(1, [("c", 0.4)]) == rungs.judge(1, [("c", 0.4)])
    assert again.judge(1, [("b", 0.95)])[0]["continued"] is False
