"""Synchronous successive halving: each seed's population judged at a rung once all its members are there,
exactly as Ray Tune's HyperBand bracket decides; the same trials stop however the trials arrive."""
import math
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ray.tune.schedulers.hyperband import _Bracket

from sweep.run.halving import decide
from sweep.run.stopping import HalvingSpec, halve, halving_rungs
from sweep.spec.checks import SpecError
from sweep.spec.grid import expand_grid
from sweep.spec.spec import parse_spec
from sweep.status import Status
from sweep_process import ENV

SWEEP = str(Path(sys.executable).parent / "sweep")


def _ray_population(values: list[list[float]], ends: list[int | None], grace: int, reduction: float, epochs: int):
    """Ray's _Bracket (one bracket of HyperBand) replayed with complete rungs: member i reports values[i][k] at
    rung k, or leaves the bracket (cleanup_trial, as a trial that ends) before rung ends[i]. Returns the rung
    epochs it used and, per rung, the members it kept."""
    n = len(values)
    rungs = []
    r = grace
    while r < epochs:  # how many halvings HyperBand's s gives this bracket
        rungs.append(r)
        r = int(min(r * reduction, epochs))
    bracket = _Bracket("epoch", n, grace, epochs, reduction, len(rungs))
    members = [f"t{i}" for i in range(n)]
    for m in members:
        bracket.add_trial(m)
    alive, kept_per_rung, used = set(members), [], []
    for k in range(len(rungs)):
        used.append(bracket._cumul_r)
        for i, m in enumerate(members):
            if m in alive and ends[i] is not None and ends[i] <= k:
                bracket.cleanup_trial(m)
                alive.discard(m)
        for i, m in enumerate(members):
            if m in alive:
                bracket.update_trial_stats(m, {"epoch": bracket._cumul_r, "acc": values[i][k]})
        assert bracket.cur_iter_done()
        good, bad = bracket.successive_halving("acc", 1.0)
        alive = set(good)
        kept_per_rung.append(sorted(good))
        for m in bad:
            bracket.cleanup_trial(m)
    return used, kept_per_rung


def _ours(values, ends, grace, reduction, epochs):
    """sweep's decide() on the same population: trials as one seed, their states and epoch rows."""
    spec = parse_spec({"name": "p", "dataset": "synthetic", "epochs": epochs,
                       "grid": {"activation": ["relu"], "optimizer": [{"name": "sgd", "lr": [0.1 * (i + 1) for i in
                                                                                          range(len(values))]}]},
                       "stop": {"halving": {"grace": grace, "reduction": reduction}}})
    trials = expand_grid(spec)
    rungs = halving_rungs(spec.stop.halving, epochs)
    names = {t.config_hash: f"t{i}" for i, t in enumerate(trials)}
    kept_per_rung, stored = [], []
    going = set(names)
    for k, at in enumerate(rungs):
        states, rows = {}, {}
        for i, t in enumerate(trials):
            key = t.config_hash
            if ends[i] is not None and ends[i] <= k:
                states[key] = (Status.DIVERGED, at - 1 if at > 1 else 0, None)
            elif key in going:
                states[key] = (Status.WAITING, at, None)
            else:
                states[key] = (Status.STOPPED, rungs[max(0, k - 1)], "stopped@ halving")
            rows[key] = {e: {"epoch": e, "test_acc": values[i][j]} for j, e in enumerate(rungs) if j <= k}
        verdicts = [v for v in decide(trials, states, rows, stored, rungs, reduction, "final_test_acc")
                    if v.rung == k]
        stored += [{"config_hash": v.config_hash, "rung": v.rung, "milestone": float(v.epoch),
                    "continued": v.continued} for v in verdicts]
        going = {v.config_hash for v in verdicts if v.continued}
        kept_per_rung.append(sorted(names[key] for key in going))
    return rungs, kept_per_rung


@pytest.mark.parametrize("seed", range(200))
def test_every_decision_is_ray_hyperbands_on_random_populations(seed):
    rng = random.Random(seed)
    reduction = rng.choice([2, 3, 2.5, 4])
    grace = rng.choice([1, 1, 2])
    epochs = grace + rng.randint(1, 12)
    n = rng.randint(1, 20)
    ties = rng.random() < 0.3  # values from a few levels: ties, broken as Ray's stable sort breaks them
    levels = [round(rng.random(), 2) for _ in range(3)]
    values = [[rng.choice(levels) if ties else rng.random() for _ in range(8)] for _ in range(n)]
    ends = [rng.randint(0, 4) if rng.random() < 0.2 else None for _ in range(n)]
    rays = _ray_population(values, ends, grace, reduction, epochs)
    assert _ours(values, ends, grace, reduction, epochs) == rays


def test_a_rung_waits_for_every_member_and_each_seed_is_a_population_of_its_own():
    spec = parse_spec({"name": "p", "dataset": "synthetic", "epochs": 6,
                       "grid": {"activation": ["relu", "tanh"], "optimizer": [{"name": "sgd", "lr": [0.1, 0.2]}],
                                "seed": [0, 1]},
                       "stop": {"halving": {"grace": 1, "reduction": 2}}})
    trials = expand_grid(spec)
    seed0 = [t for t in trials if t.seed == 0]
    seed1 = [t for t in trials if t.seed == 1]
    rows = {t.config_hash: {1: {"test_acc": 0.1 * i}} for i, t in enumerate(trials)}
    states = {t.config_hash: (Status.WAITING, 1, None) for t in seed0}
    states.update({t.config_hash: (Status.WAITING, 1, None) for t in seed1[:3]})
    states[seed1[3].config_hash] = (Status.RUNNING, 0, None)  # on its way to the rung
    verdicts = decide(trials, states, rows, [], [1, 2, 4], 2, "final_test_acc")
    # Seed 0 is judged (the best two of four go on); seed 1 waits for its fourth member.
    assert {(v.config_hash, v.continued) for v in verdicts} == {
        (t.config_hash, i >= 2) for i, t in enumerate(seed0)}
    states[seed1[3].config_hash] = (Status.DIVERGED, 0, "train loss nan")  # ended: the rung is complete
    stored = [{"config_hash": v.config_hash, "rung": v.rung, "milestone": float(v.epoch), "continued": v.continued}
              for v in verdicts]
    later = decide(trials, states, rows, stored, [1, 2, 4], 2, "final_test_acc")
    # Ray's bracket size counts the member that ended: ceil(4 / 2) = 2 of the 3 there go on.
    assert {(v.config_hash, v.continued) for v in later} == {
        (seed1[0].config_hash, False), (seed1[1].config_hash, True), (seed1[2].config_hash, True)}


def test_a_trial_a_rule_stopped_at_the_rung_takes_no_place_there():
    spec = parse_spec({"name": "p", "dataset": "synthetic", "epochs": 3,
                       "grid": {"activation": ["relu"], "optimizer": [{"name": "sgd", "lr": [0.1, 0.2, 0.3, 0.4]}]},
                       "stop": {"chance": 1, "halving": {"grace": 1, "reduction": 2}}})
    trials = expand_grid(spec)
    keys = [t.config_hash for t in trials]
    rows = {key: {1: {"test_acc": 0.1 * (i + 1)}} for i, key in enumerate(keys)}
    states = {key: (Status.WAITING, 1, "waiting@1 halving") for key in keys}
    states[keys[3]] = (Status.STOPPED, 1, "stopped@1 chance")  # the best value, but a rule ended it there
    verdicts = decide(trials, states, rows, [], [1, 2], 2, "final_test_acc")
    assert [(v.config_hash, v.continued) for v in verdicts] == [(keys[0], False), (keys[1], True), (keys[2], True)]


def test_a_trial_added_to_a_judged_population_meets_the_lowest_value_that_went_on():
    spec = parse_spec({"name": "p", "dataset": "synthetic", "epochs": 3,
                       "grid": {"activation": ["relu"], "optimizer": [{"name": "sgd", "lr": [0.1, 0.2, 0.3, 0.4]}]},
                       "stop": {"halving": {"grace": 1, "reduction": 2}}})
    trials = expand_grid(spec)
    keys = [t.config_hash for t in trials]
    stored = [{"config_hash": keys[i], "rung": 0, "milestone": 1.0, "continued": c}
              for i, c in ((0, False), (1, True), (2, True))]
    rows = {keys[0]: {1: {"test_acc": 0.2}}, keys[1]: {1: {"test_acc": 0.5}}, keys[2]: {1: {"test_acc": 0.6}},
            keys[3]: {1: {"test_acc": 0.55}}}
    states = {keys[0]: (Status.STOPPED, 1, "stopped@1 halving"), keys[1]: (Status.WAITING, 1, None),
              keys[2]: (Status.WAITING, 1, None), keys[3]: (Status.WAITING, 1, None)}
    verdicts = decide(trials, states, rows, stored, [1, 2], 2, "final_test_acc")
    assert [(v.config_hash, v.rung, v.continued) for v in verdicts] == [(keys[3], 0, True)]
    rows[keys[3]] = {1: {"test_acc": 0.45}}
    assert [v.continued for v in decide(trials, states, rows, stored, [1, 2], 2, "final_test_acc")] == [False]


def test_halve_keeps_ceil_size_over_r_the_best_ties_to_the_later():
    assert halve([("a", 0.5), ("b", 0.7), ("c", 0.6)], 3, 2) == ({"b", "c"}, 2)
    assert halve([("a", 0.5), ("b", 0.5), ("c", 0.5)], 4, 2) == ({"b", "c"}, 2)
    assert halve([("a", math.nan), ("b", 0.1), ("c", 0.0)], 3, 3) == ({"b"}, 1)
    assert halving_rungs(HalvingSpec(1, 2), 6) == [1, 2, 4]
    assert halving_rungs(HalvingSpec(2, 3), 20) == [2, 6, 18]
    assert halving_rungs(HalvingSpec(1, 2.5), 10) == [1, 2, 5]


@pytest.mark.parametrize("stop, line", [
    ({"halving": {"grace": 1}, "asha": {"grace": 1}},
     "stop.halving: halving and asha are two rules for the same rungs: give one (halving for a study's "
     "comparison, asha for a search)"),
    ({"halving": {"grace": 4}}, "stop.halving.grace: 4 must be below epochs (4): no rung comes before the last"),
    ({"halving": {"grace": 1, "reduction": 1.5}},
     "stop.halving.reduction: 1.5 must be 2 or more (the top 1/reduction of each population continue at each rung)"),
    ({"halving": {"reduction": 2}}, "stop.halving.grace: missing required key"),
])
def test_bad_halving_is_one_line(stop, line):
    with pytest.raises(SpecError) as refused:
        parse_spec({"name": "p", "dataset": "synthetic", "epochs": 4, "stop": stop,
                    "grid": {"activation": ["relu"], "optimizer": [{"name": "sgd", "lr": 0.1}]}})
    assert str(refused.value) == line


# The study at a size the suite affords: 4 configurations x 2 seeds, rungs at epochs 1 and 2 (4 -> 2 -> 1).
STUDY = {"name": "halving", "dataset": {"name": "synthetic", "train_limit": 192, "test_limit": 96, "validation": 64},
         "model": {"name": "mlp", "hidden": [16]}, "epochs": 3, "batch_size": 64, "stats_every": 3,
         "grid": {"activation": ["relu", "tanh"], "init": ["default", "xavier_uniform"],
                  "optimizer": [{"name": "sgd", "lr": 0.1}], "seed": [0, 1]},
         "stop": {"halving": {"grace": 1, "reduction": 2}}, "output": "out"}


def _run(folder: Path, resources: dict) -> tuple[str, dict, list]:
    folder.mkdir()
    (folder / "spec.yaml").write_text(yaml.safe_dump({**STUDY, "resources": resources}))
    # A waiting trial that held its worker would never let max_concurrent: 1 finish: the timeout fails the test.
    run = subprocess.run([SWEEP, "run", "spec.yaml", "--progress-interval", "1000"], cwd=folder, env=ENV,
                         capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    with sqlite3.connect(folder / "out" / "sweep.db") as conn:
        ended = dict(conn.execute("SELECT name, COALESCE(error, status) || ' ' || epochs_done FROM trials"))
        verdicts = conn.execute("SELECT t.name, r.rung, r.epoch, r.value, r.continued FROM rung_results r "
                                "JOIN trials t USING (trial_id) ORDER BY t.name, r.rung").fetchall()
    return run.stdout, ended, verdicts


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("halving")
    # Another arrival order and fusion in one run: bundles of two, four bundles at once on 2 CPUs.
    return {name: _run(root / name, resources) for name, resources in (
        ("one at a time", {"max_concurrent": 1, "fuse": "off"}),
        ("fused, four at once", {"cpu": 0.5, "fuse": 2}))}


def test_each_seeds_population_keeps_the_same_number_at_every_rung(runs):
    _, ended, verdicts = runs["one at a time"]
    for seed in (0, 1):
        mine = [v for v in verdicts if v[0].endswith(f"-s{seed}")]
        assert [(sum(v[4] for v in mine if v[1] == k), sum(1 for v in mine if v[1] == k)) for k in (0, 1)] == [
            (2, 4), (1, 2)]  # 4 -> 2 -> 1
    assert sorted(ended.values()).count("completed 3") == 2
    assert sorted(ended.values()).count("stopped@1 halving 1") == 4
    assert sorted(ended.values()).count("stopped@2 halving 2") == 2


def test_the_same_trials_stop_one_at_a_time_and_fused_four_at_once(runs):
    assert runs["fused, four at once"][1:] == runs["one at a time"][1:]
    assert "fused: 8 trials in 4 bundle(s) of up to 2" in runs["fused, four at once"][0]


def test_a_waiting_trial_holds_no_worker_it_resumes_from_its_rung(runs):
    out, ended, _ = runs["one at a time"]
    going_on = sorted(name for name, e in ended.items() if not e.startswith("stopped@1"))
    assert sorted(line.split()[1] for line in out.splitlines() if line.endswith("from epoch 1")) == going_on
    assert "waiting at a rung" in out
    assert "halving: wave 3: 2 trial(s) train on from their rung" in out
