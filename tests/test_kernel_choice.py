"""Which kernels a trial steps on (sweep.models.kernels) is decided once, by the run that starts it, from its device
and sweep's install; never from the thread count or the node. The trial records it (trials.kernels), its checkpoint
keeps it, and a trial that cannot continue on the same kernels is refused in one line."""
import io
from dataclasses import replace

import pytest
import torch

import sweep.models.kernels as kernels
from events import record_trials
from sweep.data.datasets import synthetic
from sweep.db.engine import init_db, make_engine, session_scope
from sweep.db.schema import Trial
from sweep.spec.grid import expand_grid
from sweep.run.records import SweepState, read_state, record_plan
from sweep.run.runner import RunError, _kernels, make_plan
from sweep.spec.spec import parse_spec
from sweep.run.trial import CheckpointMismatch, run_trial

DATA = synthetic(train_size=256, test_size=64)


def lenet(tmp_path, epochs: int):
    spec = parse_spec({"name": "k", "output": str(tmp_path), "dataset": "synthetic", "model": "lenet",
                       "epochs": epochs, "batch_size": 32, "stats_every": 4,
                       "grid": {"activation": ["tanh"], "optimizer": [{"name": "sgd", "lr": 0.05}]}})
    (trial,) = expand_grid(spec)
    return spec, trial


def train(trial, threads: int, **args) -> list[dict]:
    """run_trial as a Ray worker runs it with `resources.cpu: threads` (trial.ray_trainable sets the threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        reports = []
        run_trial(trial, DATA, reports.append, tensorboard=False, **args)
        return reports
    finally:
        torch.set_num_threads(before)


FIGURES = ("epoch", "train_loss", "test_loss", "test_acc", "status", "kernels")


def test_a_trial_resumed_with_another_cpu_count_computes_the_same_numbers_as_one_never_interrupted(tmp_path):
    """Trained one epoch on one thread, then continued on two (a rerun with `resources.cpu: 2`): every figure of
    epoch 2 is the uninterrupted one-thread trial's, bit for bit, on the compiled kernels both times."""
    _, whole = lenet(tmp_path / "whole", 2)
    straight = train(whole, 1)
    _, part = lenet(tmp_path / "parts", 1)
    first = train(part, 1)
    resumed = train(replace(part, epochs=2), 2)
    assert [r["kernels"] for r in straight + first + resumed] == ["compiled"] * 7
    assert resumed[0]["resumed_from"] == 1 and resumed[-1]["epoch"] == 2
    assert [tuple(r[k] for k in FIGURES) for r in first + resumed[1:]] == [
        tuple(r[k] for k in FIGURES) for r in straight]
    assert resumed[-1]["layer_stats"] == straight[-1]["layer_stats"]


def test_a_worker_without_the_compiled_kernels_refuses_a_trial_that_chose_them(tmp_path, monkeypatch):
    _, trial = lenet(tmp_path, 1)
    monkeypatch.setattr(kernels, "_kernels", None)  # an install without a C compiler
    with pytest.raises(kernels.KernelsMissing) as err:
        train(trial, 1, kernels="compiled")
    assert str(err.value) == kernels.MISSING
    assert not (tmp_path / "k" / trial.name / "checkpoint.pt").exists()  # refused before anything trained
    assert [r["kernels"] for r in train(trial, 1)] == ["torch"] * 2  # left to choose: torch's, said so


def test_a_checkpoint_keeps_its_kernels_and_is_not_continued_on_others(tmp_path):
    _, trial = lenet(tmp_path, 1)
    train(trial, 1, kernels="compiled")
    with pytest.raises(CheckpointMismatch) as err:
        train(replace(trial, epochs=2), 1, kernels="torch")
    assert str(err.value) == (
        f"{trial.name} trained on compiled kernels ({tmp_path}/k/{trial.name}/checkpoint.pt), this run on torch: "
        "their float rounding differs, so it is not continued; run it where sweep's install is as it was, or give "
        "the sweep a new name")


def test_the_trial_records_its_kernels_and_a_run_on_other_kernels_is_refused_before_it_starts(tmp_path, monkeypatch):
    spec, trial = lenet(tmp_path, 2)
    engine = make_engine(spec.database_url)
    init_db(engine)
    record_trials(engine, record_plan(engine, spec, [trial], []), [replace(trial, epochs=1)], DATA,
                  tensorboard=False, kernels="compiled")
    with session_scope(engine) as s:
        assert s.query(Trial.kernels, Trial.epochs_done).one() == ("compiled", 1)
    state = read_state(engine, spec)
    assert state.kernels == {trial.config_hash: "compiled"}
    plan = make_plan(spec, state, False, io.StringIO(), 15.0, False)
    assert _kernels(plan, state, on_cpu=True) == "compiled"
    monkeypatch.setattr(kernels, "_kernels", None)  # the driver's install has lost them since
    with pytest.raises(RunError) as err:
        _kernels(plan, state, on_cpu=True)
    assert str(err.value) == (
        f"{trial.name} trained 1 epoch(s) on compiled kernels, this run would continue it on torch: their float "
        "rounding differs; run it where sweep's install is as it was (pip install -e . with a C compiler builds "
        "the compiled kernels), or give the sweep a new name")
    fresh = make_plan(spec, SweepState("test", None, {}), False, io.StringIO(), 15.0, False)
    assert _kernels(fresh, state, on_cpu=True) == "torch"  # nothing trained yet: nothing to keep
    engine.dispose()
