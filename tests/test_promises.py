"""Promises of docs/spec.md that no other test pins: the start order by config hash, stop rules reading the
validation split, the fixed Sobol scramble and its three significant digits, and one ASHA population per
seed through a whole sweep."""
import sqlite3
from dataclasses import replace

import numpy as np
import yaml
from ray.tune.schedulers.async_hyperband import _Bracket
from ray.tune.schedulers.trial_scheduler import TrialScheduler

from events import record_trials
from sweep.run.bundles import start_order
from sweep.data.datasets import Arrays, synthetic
from sweep.spec.grid import expand_grid, sample_points
from sweep.db.engine import init_db, make_engine
from sweep.run.records import SweepState, read_state, record_plan
from sweep.run.runner import make_plan
from sweep.spec.spec import parse_spec
from sweep.spec.optimizer import RangeSpec
from sweep.run.stopping import Stopper
from sweep.run.trial import run_trial
from test_end_to_end import sweep_cli

LR = RangeSpec("lr", "log_uniform", 1e-3, 1.0)


def sampled_spec(output, name="p", **extra):
    """Every setting that enters a config hash given explicitly, so that a changed default moves no hash."""
    return parse_spec({"name": name, "output": str(output), "model": "lenet", "epochs": 3, "batch_size": 32,
                       "stats_every": 4, "dataset": {"name": "synthetic", "train_limit": 128, "test_limit": 64},
                       **extra,
                       "grid": {"activation": ["tanh", "relu"], "init": ["default"], "seed": [0, 1],
                                "optimizer": [{"name": "sgd", "lr": {"log_uniform": [1e-3, 1]}, "samples": 2}]}})


# --------------------------------------------------------------------------- the start order (sweep/run/bundles.py)

def test_an_asha_sweep_starts_its_trials_in_config_hash_order_not_grid_or_name_order(tmp_path):
    spec = sampled_spec(tmp_path, stop={"asha": {"grace": 1, "reduction": 2}})
    trials = expand_grid(spec)
    grid = [t.name for t in trials]
    by_name = sorted(grid)
    by_hash = [t.name for t in sorted(trials, key=lambda t: t.config_hash)]
    # The three orders differ pairwise, so the order below can only be the hash's.
    assert len({tuple(grid), tuple(by_name), tuple(by_hash)}) == 3
    assert by_hash == [
        "relu-default-sgd-lr0.0266-s1", "relu-default-sgd-lr0.0479-s1", "tanh-default-sgd-lr0.0479-s0",
        "tanh-default-sgd-lr0.0266-s1", "tanh-default-sgd-lr0.0266-s0", "tanh-default-sgd-lr0.0479-s1",
        "relu-default-sgd-lr0.0479-s0", "relu-default-sgd-lr0.0266-s0"]
    assert [t.name for t in start_order(trials)] == by_hash
    # The run's plan trains them in that order (and, without asha, in the grid's).
    state = SweepState("test", None, {})
    plan = dict(resume_stopped=False, out=None, progress_interval=15.0, verbose=False)
    assert [t.name for t in make_plan(spec, state, **plan).todo] == by_hash
    assert [t.name for t in make_plan(sampled_spec(tmp_path), state, **plan).todo] == grid
    # The same shuffle under another sweep name and folder: the hash leaves both out.
    elsewhere = sampled_spec(tmp_path / "elsewhere", name="other")
    assert [t.name for t in start_order(expand_grid(elsewhere))] == by_hash


# --------------------------------------------------------------------------- stop rules read validation (sweep/run/trial.py)

_d = synthetic(512, 200)
# 20 images, each ten times, once with each label: whatever a network answers, exactly 20 of 200 are right.
_AT_CHANCE_X = np.repeat(_d.test_x[:20], 10, axis=0)
_AT_CHANCE_Y = np.tile(np.arange(10, dtype=np.int64), 20)
TENTH = float(np.float32(20 / 200))


def test_the_chance_rule_reads_validation_accuracy_where_there_is_a_split(tmp_path):
    """One ReLU/Adam trial (it learns the synthetic set within an epoch), a chance rule with patience 1, twice:
    once with the validation set at chance by construction (each image once with every label: exactly 1/10
    right whatever the network answers) and the test set learnable, once the other way round. Only where
    the validation accuracy lies within the margin of 1/10 does the rule stop the trial, at epoch 1; where
    only the test accuracy does, it trains to the end."""
    spec = parse_spec({"name": "v", "output": str(tmp_path), "epochs": 2, "batch_size": 32, "stats_every": 8,
                       "dataset": {"name": "synthetic", "validation": 200}, "stop": {"chance": 1},
                       "grid": {"activation": ["relu"], "init": ["xavier_uniform"],
                                "optimizer": [{"name": "adam", "lr": 0.01}]}})
    (trial,) = expand_grid(spec)
    learnable = (_d.test_x, _d.test_y)
    runs = {}
    for case, (test, val) in {"val at chance": (learnable, (_AT_CHANCE_X, _AT_CHANCE_Y)),
                              "test at chance": ((_AT_CHANCE_X, _AT_CHANCE_Y), learnable)}.items():
        reports = []
        data = Arrays(_d.train_x, _d.train_y, *test, *val)
        run_trial(replace(trial, logdir=str(tmp_path / case / trial.name)), data, reports.append, tensorboard=False,
                  stopper=Stopper(spec.stop, spec.metric, spec.epochs))
        runs[case] = reports
    val_chance, test_chance = runs["val at chance"], runs["test at chance"]
    # The figures the rule could read, at epoch 1: one within the margin of 0.1 (0.02), the other far outside.
    assert val_chance[1]["val_acc"] == TENTH and abs(val_chance[1]["test_acc"] - 0.1) > 0.2
    assert test_chance[1]["test_acc"] == TENTH and abs(test_chance[1]["val_acc"] - 0.1) > 0.2
    assert [(r["epoch"], r["status"], r["reason"]) for r in val_chance] == [
        (0, "running", None), (1, "stopped", "stopped@1 chance")]
    assert [(r["epoch"], r["status"], r["reason"]) for r in test_chance] == [
        (0, "running", None), (1, "running", None), (2, "running", None)]
    # A rerun judges the stop again on what was recorded (records.read_state): on validation too, so the trial
    # stays stopped; judged on its test accuracy it would be released and train on.
    engine = make_engine(spec.database_url)
    init_db(engine)
    record_trials(engine, record_plan(engine, spec, [trial], [trial]), [trial],
                  Arrays(_d.train_x, _d.train_y, *learnable, _AT_CHANCE_X, _AT_CHANCE_Y), tensorboard=False,
                  stopper=Stopper(spec.stop, spec.metric, spec.epochs))
    assert read_state(engine, spec).statuses == {trial.config_hash: ("stopped", 1)}
    engine.dispose()


# --------------------------------------------------------------------------- the Sobol points (sweep/spec/grid.py)

def test_the_sobol_scramble_is_fixed_the_docstrings_points_and_a_sampled_trials_hash(tmp_path):
    """The scramble decides every sampled value, so every sampled trial's name and config hash: another
    fixed scramble would silently give a rerun of a spec other trials than the ones it trained."""
    assert sample_points([LR], 2) == [(0.0266,), (0.0479,)]  # sample_points' docstring example
    trial = expand_grid(sampled_spec(tmp_path))[0]
    assert (trial.name, trial.lr, trial.config_hash) == ("tanh-default-sgd-lr0.0266-s0", 0.0266, "b73961253ad7e919")


def test_sampled_values_keep_three_significant_digits_not_two():
    """A value rounded to two significant digits passes a `.3g` round trip too; these need their third."""
    assert sample_points([LR], 8) == [(0.0266,), (0.0479,), (0.919,), (0.00131,), (0.00547,), (0.222,),
                                      (0.158,), (0.00805,)]
    assert sample_points([LR, RangeSpec("momentum", "uniform", 0.0, 0.99)], 2) == [(0.0266, 0.587),
                                                                                     (0.0545, 0.0368)]
    values = [v for p in sample_points([LR, RangeSpec("momentum", "uniform", 0.0, 0.99)], 32) for v in p]
    assert all(float(f"{v:.3g}") == v for v in values)
    needs_third = [v for v in values if float(f"{v:.2g}") != v]
    assert len(needs_third) >= len(values) // 2, needs_third  # most values use all three digits


# --------------------------------------------------------------------------- one ASHA population per seed (runner)

SEEDED = {"name": "pop", "dataset": {"name": "synthetic", "train_limit": 256, "test_limit": 200}, "epochs": 3,
          "batch_size": 32, "stats_every": 4, "output": "out", "resources": {"fuse": "off", "max_concurrent": 1},
          "grid": {"activation": ["tanh"], "init": ["xavier_uniform"], "seed": [0, 3],
                   "optimizer": [{"name": "sgd", "lr": 0.001}, {"name": "adam", "lr": 0.01}]},
          "stop": {"asha": {"grace": 1, "reduction": 2}}}


def asha_decisions(trials, accuracy, population):
    """Ray's own _Bracket deciding a sweep whose trials run one at a time in `trials`' order, each reporting
    `accuracy[(name, epoch)]` for epochs 1 and 2 (never the last, 3) until stopped: one bracket per
    `population(trial)`. The rows rung_results would hold, in order: (name, rung, milestone, epoch, value,
    continued); a trial whose accuracy at an epoch is not known (it never trained it) ends there."""
    brackets, rows = {}, []
    for name, seed in trials:
        bracket = brackets.setdefault(population(seed), _Bracket(1, 3, 2, 0))
        trial = type("Trial", (), {"trial_id": name})()
        for epoch in (1, 2):
            if (name, epoch) not in accuracy:
                break
            before = [len(recorded) for _, recorded in bracket._rungs]
            action = bracket.on_result(trial, epoch, accuracy[(name, epoch)])
            judged = [m for (m, recorded), n in zip(bracket._rungs, before) if len(recorded) > n]
            if judged:
                milestone = judged[0]
                rows.append((name, [1.0, 2.0].index(milestone), milestone, epoch, accuracy[(name, epoch)],
                             action == TrialScheduler.CONTINUE))
            if action == TrialScheduler.STOP:
                break
    return rows


def test_one_run_judges_each_seeds_trials_against_that_seeds_results_only(tmp_path):
    """A real `sweep run` (Ray, one trial at a time, so in the start order: by config hash, tanh Adam seed 3,
    SGD seed 0, SGD seed 3, Adam seed 0). The rung_results it stored are exactly the decisions of one Ray
    _Bracket per seed fed the trials' own stored test accuracies in that order, and not those of one
    bracket for all: there SGD seed 0, the first of its seed at rung 1 (kept), would meet Adam seed 3's
    result (0.99 against its 0.035) and stop. Every decision here is between an Adam trial near 1 and an
    SGD trial near chance, or the first of its seed at a rung: none hangs on a few test images."""
    (tmp_path / "pop.yaml").write_text(yaml.safe_dump(SEEDED))
    run = sweep_cli("run", "pop.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    with sqlite3.connect(tmp_path / "out" / "sweep.db") as db:
        trials = db.execute("SELECT name, seed, config_hash, status, error FROM trials").fetchall()
        accuracy = {(name, epoch): acc for name, epoch, acc in db.execute(
            "SELECT t.name, e.epoch, e.test_acc FROM epoch_metrics e JOIN trials t USING (trial_id)")}
        stored = db.execute("SELECT t.name, r.rung, r.milestone, r.epoch, r.value, r.continued FROM rung_results r "
                            "JOIN trials t USING (trial_id) ORDER BY r.rung_result_id").fetchall()
    start = [(name, seed) for name, seed, *_ in sorted(trials, key=lambda t: t[2])]
    assert start == [("tanh-xavier_uniform-adam-lr0.01-s3", 3), ("tanh-xavier_uniform-sgd-lr0.001-s0", 0),
                     ("tanh-xavier_uniform-sgd-lr0.001-s3", 3), ("tanh-xavier_uniform-adam-lr0.01-s0", 0)]
    per_seed = asha_decisions(start, accuracy, population=lambda seed: seed)
    pooled = asha_decisions(start, accuracy, population=lambda seed: None)
    assert [(*row[:5], bool(row[5])) for row in stored] == per_seed
    assert [(name, rung, epoch, going) for name, rung, _, epoch, _, going in per_seed] == [
        ("tanh-xavier_uniform-adam-lr0.01-s3", 0, 1, True), ("tanh-xavier_uniform-adam-lr0.01-s3", 1, 2, True),
        ("tanh-xavier_uniform-sgd-lr0.001-s0", 0, 1, True), ("tanh-xavier_uniform-sgd-lr0.001-s0", 1, 2, True),
        ("tanh-xavier_uniform-sgd-lr0.001-s3", 0, 1, False),
        ("tanh-xavier_uniform-adam-lr0.01-s0", 0, 1, True), ("tanh-xavier_uniform-adam-lr0.01-s0", 1, 2, True)]
    assert per_seed != pooled  # this sweep tells the two apart
    # The stops that follow: SGD seed 3 below its seed's Adam at rung 1; SGD seed 0 trains to the end.
    assert sorted((name, status, error) for name, _, _, status, error in trials) == [
        ("tanh-xavier_uniform-adam-lr0.01-s0", "completed", None),
        ("tanh-xavier_uniform-adam-lr0.01-s3", "completed", None),
        ("tanh-xavier_uniform-sgd-lr0.001-s0", "completed", None),
        ("tanh-xavier_uniform-sgd-lr0.001-s3", "stopped", "stopped@1 asha")]
    assert [row[0] for row in pooled if not row[5]][0] == "tanh-xavier_uniform-sgd-lr0.001-s0"
