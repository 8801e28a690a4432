"""The checks that need a GPU (run by bench/gpu/gpu_check.sh on a lent GPU machine; CI has none).

    python -m pytest -q bench/gpu/gpu_tests.py

Same equivalence as tests/test_bundle.py, on CUDA: a bundle vs its members
trained alone, a resume on CUDA, a CUDA checkpoint read back on the CPU, and
whole sweeps through Ray with fractional GPUs (unfused) and whole GPUs (fused),
where the database must say every trial trained on cuda.
"""
import os
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tests/test_bundle.py's own helpers (rounding.py) import as pytest has them

from sweep.data.datasets import synthetic  # noqa: E402
from sweep.run.trial import run_bundle, run_trial  # noqa: E402
from tests.test_bundle import assert_close, by_trial, configs  # noqa: E402

DATA = synthetic(train_size=320, test_size=100)
assert torch.cuda.is_available(), "these checks need a CUDA GPU"
# Equivalence is checked in full float32: with TF32 (cuDNN's default for convolutions) a grouped
# and a plain convolution round differently at ~1e-3 per operation, and training amplifies it.
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
# The sweep's own processes need the carried packages (bench/gpu/gpu_setup.sh's PYTHONPATH) and this tree.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


def test_a_bundle_on_cuda_trains_each_member_as_alone_on_cuda(tmp_path):
    alone, fused = [], []
    for cfg in configs(tmp_path / "alone"):
        run_trial(cfg, DATA, alone.append, device="cuda")
    run_bundle(configs(tmp_path / "fused"), DATA, fused.append, device="cuda")
    alone, fused = by_trial(alone), by_trial(fused)
    assert fused.keys() == alone.keys() and len(fused) == 8
    for key in alone:
        assert_close(fused[key], alone[key])
        assert fused[key][-1]["device"] == "cuda"


def test_a_cuda_trial_resumes_on_cuda_and_its_checkpoint_loads_on_the_cpu(tmp_path):
    cfgs = configs(tmp_path / "straight")[:2]
    straight = []
    run_bundle(cfgs, DATA, straight.append, device="cuda")
    resumed_cfgs = configs(tmp_path / "resumed")[:2]
    run_bundle([replace(c, epochs=1) for c in resumed_cfgs], DATA, lambda r: None, device="cuda")
    resumed = []
    run_bundle(resumed_cfgs, DATA, resumed.append, device="cuda")
    straight, resumed = by_trial(straight), by_trial(resumed)
    for key in straight:
        assert_close(resumed[key], straight[key][1:])
    on_cpu = []  # the CUDA checkpoint of epoch 2, continued for a third epoch on the CPU
    run_trial(replace(resumed_cfgs[0], epochs=3), DATA, on_cpu.append, device="cpu")
    assert [r["epoch"] for r in on_cpu] == [1, 2, 3] and on_cpu[-1]["device"] == "cpu"


def test_graph_replayed_steps_equal_eager_steps(tmp_path, monkeypatch):
    """models/graph.py: the plain steps from a CUDA graph give the eager steps' numbers (same kernels, same
    order: exact is expected; assert_close's fused tolerance is the bound), a member dropped mid-bundle
    included (a new capture)."""
    import sweep.models.graph as graph

    replays = []
    whole = graph.StepRunner.step

    def counted(self, idx):
        losses = whole(self, idx)
        replays.append(self.graph is not None)
        return losses

    monkeypatch.setattr(graph.StepRunner, "step", counted)
    monkeypatch.delenv(graph.GRAPHS_ENV, raising=False)
    eager = []
    run_bundle(configs(tmp_path / "eager"), DATA, eager.append, device="cuda")
    assert replays and not any(replays)
    replays.clear()
    monkeypatch.setenv(graph.GRAPHS_ENV, "1")
    graphed = []
    run_bundle(configs(tmp_path / "graphed"), DATA, graphed.append, device="cuda")
    assert any(replays), "no step was replayed from a graph"
    eager, graphed = by_trial(eager), by_trial(graphed)
    assert graphed.keys() == eager.keys()
    for key in eager:
        assert_close(graphed[key], eager[key])


@pytest.mark.parametrize("fuse, gpu", [("off", 0.25), ("auto", "auto")])
def test_a_sweep_through_ray_trains_every_trial_on_the_gpu(tmp_path, fuse, gpu):
    spec = {"name": "g", "dataset": {"name": "synthetic", "train_limit": 2048, "test_limit": 256}, "epochs": 2,
            "grid": {"activation": ["tanh", "relu"], "init": ["default", "xavier_uniform"],
                     "optimizer": [{"name": "sgd", "lr": 0.01}, {"name": "adam", "lr": 0.001}]},
            "resources": {"cpu": 1, "gpu": gpu, "fuse": fuse}, "output": "out"}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    done = subprocess.run([sys.executable, "-m", "sweep.cli", "run", "spec.yaml"], cwd=tmp_path, text=True,
                          capture_output=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    with sqlite3.connect(tmp_path / "out" / "sweep.db") as conn:
        rows = conn.execute("SELECT status, device, bundle, epochs_done FROM trials").fetchall()
    assert len(rows) == 8 and {r[0] for r in rows} == {"completed"} and {r[3] for r in rows} == {2}
    assert {r[1] for r in rows} == {"cuda"}
    bundles = {r[2] for r in rows}
    assert bundles == ({None} if fuse == "off" else {"relu-default-adam-lr0.001-s0+7"})
