"""The trial loop without Ray: reports, x axis, TensorBoard, resume, divergence."""
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sweep.models.fused import FusedNet
from sweep.data.datasets import synthetic
from sweep.spec.grid import expand_grid
from sweep.spec.spec import parse_spec
from sweep.run.trial import CHECKPOINT, run_trial

DATA = synthetic(train_size=300, test_size=100)


def config(tmp_path, **grid_overrides):
    grid = {"activation": ["tanh"], "init": ["xavier_uniform"], "optimizer": [{"name": "adam", "lr": 0.01}]}
    grid.update(grid_overrides)
    spec = parse_spec({"name": "t", "dataset": "synthetic", "epochs": 3, "batch_size": 32, "stats_every": 4,
                       "output": str(tmp_path), "grid": grid})
    return expand_grid(spec)[0]


def scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_reports_every_epoch_on_the_images_seen_axis(tmp_path):
    cfg = config(tmp_path)
    reports = []
    run_trial(cfg, DATA, reports.append)
    assert [r["epoch"] for r in reports] == [0, 1, 2, 3]
    assert [r["images_seen"] for r in reports] == [0, 300, 600, 900]
    assert reports[0]["train_loss"] is None and reports[0]["layer_stats"] == []
    # 300 images in batches of 32 = 10 batches (last one of 12); snapshots after
    # batches 4 and 8 and at the epoch's last full batch (9: 288 images), which closes it.
    first = reports[1]["layer_stats"]
    assert sorted({r["step"] for r in first}) == [128, 256, 288]
    assert {(r["layer"], r["kind"]) for r in first} == {
        *((l, "activation") for l in ("conv1", "conv2", "fc1", "fc2")),
        *((l, "gradient") for l in ("conv1", "conv2", "fc1", "fc2", "fc3")),
    }
    assert sorted({r["step"] for r in reports[3]["layer_stats"]}) == [728, 856, 888]
    assert all(r["status"] == "running" for r in reports)
    assert reports[-1]["test_acc"] > 0.5  # the synthetic set is learnable
    assert reports[-1]["best_test_acc"] == max(r["test_acc"] for r in reports)


def test_tensorboard_curves_share_the_images_seen_axis(tmp_path):
    cfg = config(tmp_path)
    reports = []
    run_trial(cfg, DATA, reports.append)
    tags = scalars(Path(cfg.logdir))
    assert Path(cfg.logdir).name == "tanh-xavier_uniform-adam-lr0.01-s0"
    assert [s for s, _ in tags["accuracy/test"]] == [0, 300, 600, 900]
    # TensorBoard keeps a scalar as float32: one rounding, EPS / 2 (one example of 100 is 1e-2)
    assert [v for _, v in tags["accuracy/test"]] == pytest.approx([r["test_acc"] for r in reports],
                                                                   rel=torch.finfo(torch.float32).eps)
    assert [s for s, _ in tags["loss/train"]] == [128, 256, 288, 428, 556, 588, 728, 856, 888]
    assert [s for s, _ in tags["activation/fc1/std"]] == [128, 256, 288, 428, 556, 588, 728, 856, 888]
    assert "gradient/conv1/p98" in tags and "activation/conv2/sat_frac" in tags
    assert "gradient/conv1/dead_frac" not in tags  # not defined for gradients: never written as NaN


def test_resume_from_checkpoint_gives_the_same_numbers(tmp_path):
    straight = []
    run_trial(config(tmp_path / "a"), DATA, straight.append)

    cfg = config(tmp_path / "b")
    first = []
    run_trial(replace(cfg, epochs=1), DATA, first.append)  # "interrupted" after epoch 1
    assert (Path(cfg.logdir) / CHECKPOINT).exists()
    resumed = []
    run_trial(cfg, DATA, resumed.append)
    assert [r["epoch"] for r in resumed] == [1, 2, 3]  # epoch 1 replayed from the checkpoint
    assert [r["resumed_from"] for r in resumed] == [1, 1, 1] and straight[-1]["resumed_from"] is None
    # Every number of every epoch, statistics included, exactly; only the clock differs.
    assert [numbers(r) for r in resumed] == [numbers(r) for r in straight[1:]]
    # TensorBoard continues without duplicated points.
    steps = [s for s, _ in scalars(Path(cfg.logdir))["accuracy/test"]]
    assert steps == [0, 300, 600, 900]


def numbers(report: dict) -> dict:
    """A report without what a rerun may change: wall-clock times and where it resumed from."""
    return {k: v for k, v in report.items() if not k.endswith("_seconds") and k != "resumed_from"}


def test_a_fresh_start_leaves_no_points_of_an_earlier_attempt(tmp_path):
    cfg = config(tmp_path)

    class Killed(Exception):
        pass

    def die_after_first(result):  # the trial stops after its step-0 points, before any checkpoint
        raise Killed

    with pytest.raises(Killed):
        run_trial(cfg, DATA, die_after_first)
    assert not (Path(cfg.logdir) / CHECKPOINT).exists()
    assert [s for s, _ in scalars(Path(cfg.logdir))["accuracy/test"]] == [0]
    run_trial(cfg, DATA, lambda result: None)
    tags = scalars(Path(cfg.logdir))
    assert [s for s, _ in tags["accuracy/test"]] == [0, 300, 600, 900]
    assert [s for s, _ in tags["loss/train"]] == [128, 256, 288, 428, 556, 588, 728, 856, 888]


def test_divergence_stops_the_trial_with_a_reason(tmp_path, monkeypatch):
    cfg = config(tmp_path, activation=["relu"], optimizer=[{"name": "sgd", "lr": 1e6}])
    # The evaluation after the loss became NaN (the trial's second) scores every test example right: the
    # diverged epoch has the best accuracy there is, and must still not become the best.
    evaluate, accuracies = FusedNet.evaluate, []

    def diverged_epoch_scores_best(self, x, y, *args, **kwargs):
        loss, acc = evaluate(self, x, y, *args, **kwargs)
        if accuracies:
            acc = torch.ones_like(acc)
        accuracies.append(acc.tolist())
        return loss, acc

    monkeypatch.setattr(FusedNet, "evaluate", diverged_epoch_scores_best)
    reports = []
    run_trial(cfg, DATA, reports.append)
    last = reports[-1]
    assert last["status"] == "diverged"
    assert last["epoch"] == 1 and len(reports) == 2 and len(accuracies) == 2
    assert last["reason"].startswith("train loss nan at epoch 1, step ")
    assert math.isnan(last["train_loss"])
    # Stored as it is, but the best is taken from finite epochs only.
    assert last["test_acc"] == 1.0 and reports[0]["test_acc"] < 1.0
    assert (last["best_test_acc"], last["best_epoch"]) == (reports[0]["test_acc"], 0)
    assert not (Path(cfg.logdir) / CHECKPOINT).exists()
