"""Stopping across runs of one sweep through the CLI and Ray Tune, and what a trial worker imports.

One sweep, run twice (module fixture): the first run stops trials by a chance rule with patience 1 and by
ASHA; the second relaxes the rule's patience to 2 and adds configurations that reach the rungs. The first
run's trial workers carry a probe (tests/worker_probe) that records their modules and private memory.
"""
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ray.tune.schedulers.async_hyperband import _Bracket
from ray.tune.schedulers.trial_scheduler import TrialScheduler

ROOT = Path(__file__).resolve().parent.parent
PROBE = Path(__file__).resolve().parent / "worker_probe"
SGD = {"name": "sgd", "lr": 0.001}
ADAM = {"name": "adam", "lr": 0.01}


def spec(activations, patience: int) -> dict:
    return {"name": "rr", "dataset": {"name": "synthetic", "train_limit": 256, "test_limit": 200}, "epochs": 3,
            "batch_size": 32, "stats_every": 4, "output": "out", "resources": {"fuse": "off", "max_concurrent": 1},
            "grid": {"activation": activations, "init": ["xavier_uniform"], "optimizer": [SGD, ADAM]},
            "stop": {"chance": {"margin": 0.05, "epochs": patience}, "asha": {"grace": 1, "reduction": 2}}}


def run(tmp_path: Path, raw: dict, probe: Path | None = None) -> subprocess.CompletedProcess:
    (tmp_path / "rr.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if probe is not None:
        env.update(PYTHONPATH=f"{PROBE}{os.pathsep}{ROOT}", SWEEP_WORKER_PROBE=str(probe))
    done = subprocess.run([sys.executable, "-m", "sweep.cli", "run", "rr.yaml"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(folder, trials after the first run, trials after the second, the probe's folder)."""
    tmp_path = tmp_path_factory.mktemp("rerun")
    probe = tmp_path / "probe"
    probe.mkdir()
    run(tmp_path, spec(["sigmoid", "relu"], patience=1), probe)
    first = ends(tmp_path)
    run(tmp_path, spec(["sigmoid", "relu", "tanh"], patience=2))
    return tmp_path, first, ends(tmp_path), probe


def ends(tmp_path: Path) -> list[tuple]:
    with sqlite3.connect(tmp_path / "out" / "sweep.db") as db:
        return sorted(db.execute("SELECT label, status, epochs_done, error FROM trials").fetchall())


def test_a_rerun_judges_new_trials_against_the_first_runs_rungs_and_releases_a_relaxed_rule(runs):
    _, first, second, _ = runs
    # Epoch 1: sigmoid SGD 0.125, sigmoid Adam 0.115 and relu SGD 0.105 are within 0.05 of chance (stopped by
    # the rule, never at a rung); relu Adam 0.795 is the first at rung 1 (on).
    assert first == [("relu-xavier_uniform-adam-lr0.01", "completed", 3, None),
                     ("relu-xavier_uniform-sgd-lr0.001", "stopped", 1, "stopped@1 chance"),
                     ("sigmoid-xavier_uniform-adam-lr0.01", "stopped", 1, "stopped@1 chance"),
                     ("sigmoid-xavier_uniform-sgd-lr0.001", "stopped", 1, "stopped@1 chance")]
    # The second run: chance now needs two epochs in a row, so those stops no longer hold (their epochs from 1:
    # one at chance); they go on and are at chance again at epoch 2. tanh SGD (0.035) is the first new trial at
    # rung 1: judged against the first run's result there (0.795), it stops (an empty rung store would have
    # let it on, as the first at the rung).
    assert second == [("relu-xavier_uniform-adam-lr0.01", "completed", 3, None),
                      ("relu-xavier_uniform-sgd-lr0.001", "stopped", 2, "stopped@2 chance"),
                      ("sigmoid-xavier_uniform-adam-lr0.01", "stopped", 2, "stopped@2 chance"),
                      ("sigmoid-xavier_uniform-sgd-lr0.001", "stopped", 2, "stopped@2 chance"),
                      ("tanh-xavier_uniform-adam-lr0.01", "completed", 3, None),
                      ("tanh-xavier_uniform-sgd-lr0.001", "stopped", 1, "stopped@1 asha")]


def test_every_recorded_rung_decision_of_both_runs_is_rays_on_the_same_results(runs):
    """The rung_results rows, in the order they were recorded over both runs, replayed through Ray's own
    _Bracket: the same decision on each, so the second run decided as one run through both would have."""
    tmp_path, _, _, _ = runs
    with sqlite3.connect(tmp_path / "out" / "sweep.db") as db:
        rows = db.execute("SELECT t.label, r.rung, r.milestone, r.epoch, r.value, r.continued FROM rung_results r "
                          "JOIN trials t USING (trial_id) ORDER BY r.rung_result_id").fetchall()
        stopped = dict(db.execute("SELECT label, error FROM trials WHERE error LIKE '%asha'").fetchall())
    bracket = _Bracket(1, 3, 2, 0)
    trial = type("Trial", (), {})
    trials = {}
    for label, rung, milestone, epoch, value, continued in rows:
        t = trials.setdefault(label, trial())
        t.trial_id = label
        action = bracket.on_result(t, epoch, value)
        assert (action == TrialScheduler.CONTINUE) == bool(continued), (label, epoch, value)
        assert milestone == [1.0, 2.0][rung]
        if not continued:
            assert stopped.pop(label) == f"stopped@{epoch} asha"
    assert stopped == {}
    labels = [r[0] for r in rows]
    assert labels.index("tanh-xavier_uniform-sgd-lr0.001") > labels.index("relu-xavier_uniform-adam-lr0.01")
    assert len(rows) == 5  # rung 1: relu Adam, tanh SGD, tanh Adam; rung 2: relu Adam, tanh Adam


def test_a_real_trial_worker_holds_neither_sqlalchemy_nor_the_database_package(runs):
    """The first run's Ray trial workers, after training: no SQLAlchemy, no sweep.db (pandas is there because
    Ray Tune's own ray/tune/__init__.py imports it, whatever the trial does)."""
    _, _, _, probe = runs
    found = [json.loads(p.read_text()) for p in sorted(probe.glob("*.json"))]
    workers = [f for f in found if f["ray_tune"]]
    assert workers, found
    for w in workers:
        assert [m for m in w["modules"] if m.split(".")[0] == "sqlalchemy" or m.startswith("sweep.db")] == [], w


WORKER = """
import json, sys
import torch
torch.set_num_threads(1)
from sweep.data.datasets import synthetic
from sweep.spec.grid import expand_grid
from sweep.spec.spec import parse_spec, parse_stop
from sweep.run.stopping import Stopper
from sweep.run.trial import run_bundle
spec = parse_spec({"name": "w", "dataset": {"name": "synthetic", "train_limit": 128, "test_limit": 64},
                   "epochs": 2, "batch_size": 32, "stats_every": 2, "output": sys.argv[1],
                   "grid": {"activation": ["relu", "tanh"], "init": ["xavier_uniform"],
                            "optimizer": [{"name": "sgd", "lr": 0.01}]},
                   "stop": {"chance": 1, "dead": 1, "saturated": 1, "vanishing": 1, "exploding": 1,
                            "asha": {"grace": 1, "reduction": 2}}})
trials = expand_grid(spec)
# What ray_trainable builds from its config (the rung store here in the process, not a Ray actor).
stopper = Stopper(parse_stop(spec.stop.to_dict()), spec.metric, spec.epochs, None, (), None,
                  synthetic(128, 64).num_classes)
reports = []
run_bundle(trials, synthetic(128, 64), reports.append, tensorboard=False, stopper=stopper)
assert max(r["epoch"] for r in reports) >= 1, reports
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "pandas")
                        or m.startswith("sweep.db"))))
"""


def test_a_trial_workers_code_imports_neither_sqlalchemy_nor_pandas(tmp_path):
    """A fresh interpreter runs what a trial worker runs (sweep.run.trial.run_bundle with every stop rule and ASHA)
    for its epochs: neither SQLAlchemy, pandas nor sweep.db is imported."""
    done = subprocess.run([sys.executable, "-c", WORKER, str(tmp_path)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []
