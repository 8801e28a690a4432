"""Fused trials through the one training loop: run_bundle vs run_trial (its one-member case).

Tolerances, derived. A bundle computes each member's sums in another order (a
grouped conv, a batched matmul). In float32 training grows that rounding
without a bound one can derive (a ReLU input or a gradient within rounding of
zero goes one way fused, the other way alone: tests/test_fused.py), so every
trial here trains in float64 (the `float64` fixture: torch's default dtype and
the data; the loop is the same; the initial weights are drawn in float64 too,
other values than a float32 trial's). Losses: a step's rounding moves a value by
EPS64 (2.2e-16) x at most 19,515 terms (LeNet's conv1 gradient at a batch of
32; tests/rounding.py) x TERMS_FACTOR, at most 30 such steps, each grown by
training up to 1000 times (a stated allowance): LOSS_RTOL, 5.2e-7. Accuracy:
the same count but for an example whose two top logits tie within that (in
practice none): one example. Statistics are computed in float32 from those
values: each value rounds to float32 once on either side (EPS / 2 each), so
p98 within EPS of the row's scale (its largest |mean|, std, |p98|), mean and
std within that plus their own sum of the layer's n values in another order
(n EPS x their rms, at most sqrt(2) x the scale); a fraction (zero, dead,
saturated) moves only for a value within LOSS_RTOL of a threshold, fewer than
one in expectation: one unit of the narrowest layer (fc2, 84 units). None
(does not apply), NaN and the row's keys exactly. A member trained on another
member's batches or hyper-parameters, or given another member's slice,
activation or bounds, misses by orders of magnitude.
"""
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sweep.models.fused import FusedNet
from sweep.models.nets import LeNet, weight_layers
from sweep.data.datasets import synthetic
from sweep.spec.grid import expand_grid
from sweep.spec.spec import parse_spec
from sweep.run.trial import CHECKPOINT, run_bundle, run_trial
from rounding import EPS, EPS64, TERMS_FACTOR

SYNTHETIC = synthetic(train_size=320, test_size=100)
# The same examples in float64 (module docstring).
DATA = replace(SYNTHETIC, train_x=SYNTHETIC.train_x.astype("float64"), test_x=SYNTHETIC.test_x.astype("float64"))
BATCH = 32
LOSS_RTOL = EPS64 * 19_515 * TERMS_FACTOR * 30 * 1000
ACC_ATOL = 1 / 100
FRACTION_ATOL = 1 / 84


def _values_per_row() -> dict[tuple[str, str], int]:
    """How many values each of LeNet's statistics rows reads at a batch of BATCH, by (layer, kind)."""
    net = LeNet("tanh")
    _, acts = net(torch.zeros(BATCH, 1, 28, 28))
    return {**{(layer, "activation"): a.numel() for layer, a in acts.items()},
            **{(layer, "gradient"): w.numel() for layer, w in weight_layers(net).items()}}


VALUES_PER_ROW = _values_per_row()


@pytest.fixture(scope="module", autouse=True)
def float64():
    """Trials built and trained in float64 (module docstring): torch's default dtype, for the networks run_trial
    builds, and DATA's arrays. Statistics stay float32 (models.stats)."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(dtype)


def configs(out: Path, epochs: int = 2, **grid):
    grid = {"activation": ["sigmoid", "relu"], "init": ["default", "xavier_uniform"],
            "optimizer": [{"name": "sgd", "lr": 0.05, "momentum": 0.9}, {"name": "adam", "lr": 0.003}]} | grid
    spec = parse_spec({"name": "b", "dataset": "synthetic", "epochs": epochs, "batch_size": 32, "stats_every": 4,
                       "output": str(out), "grid": grid})
    return expand_grid(spec)


def by_trial(reports):
    out = {}
    for r in reports:
        out.setdefault(r["config_hash"], []).append(r)
    return out


def assert_close(fused: list[dict], alone: list[dict]) -> None:
    assert [r["epoch"] for r in fused] == [r["epoch"] for r in alone]
    assert [r["images_seen"] for r in fused] == [r["images_seen"] for r in alone]
    assert [r["status"] for r in fused] == [r["status"] for r in alone]
    for f, a in zip(fused, alone):
        for key in ("train_loss", "test_loss"):
            if a[key] is not None:
                assert f[key] == pytest.approx(a[key], rel=LOSS_RTOL, nan_ok=True), (a["epoch"], key)
        assert abs(f["test_acc"] - a["test_acc"]) <= ACC_ATOL
        assert [(s["epoch"], s["step"], s["layer"], s["kind"]) for s in f["layer_stats"]] == \
               [(s["epoch"], s["step"], s["layer"], s["kind"]) for s in a["layer_stats"]]
        for fs, s in zip(f["layer_stats"], a["layer_stats"]):
            assert_stats_close(fs, s)


def assert_stats_close(fused: dict, alone: dict) -> None:
    """One statistics row of a member against its unfused trial's (tolerances: module docstring)."""
    where = (alone["step"], alone["layer"], alone["kind"])
    assert fused.keys() == alone.keys(), where
    finite = [abs(alone[k]) for k in ("mean", "std", "p98") if alone[k] is not None and math.isfinite(alone[k])]
    scale = max(finite, default=0.0)
    within = (EPS + LOSS_RTOL) * scale
    own_sum = EPS * VALUES_PER_ROW[alone["layer"], alone["kind"]] * math.sqrt(2) * scale
    for key, expected in alone.items():
        have = fused[key]
        if key in ("epoch", "step", "layer", "kind") or expected is None or not math.isfinite(expected):
            assert have == expected or (have != have and expected != expected), (where, key, have, expected)
        elif key == "p98":
            assert abs(have - expected) <= within, (where, key, have, expected)
        elif key in ("mean", "std"):
            assert abs(have - expected) <= within + own_sum, (where, key, have, expected)
        else:  # zero_frac, dead_frac, sat_frac
            assert abs(have - expected) <= FRACTION_ATOL, (where, key, have, expected)


@pytest.fixture(scope="module")
def eight(tmp_path_factory):
    """The 8 configurations trained alone and as one bundle, 2 epochs."""
    root = tmp_path_factory.mktemp("bundle")
    alone = []
    for cfg in configs(root / "alone"):
        run_trial(cfg, DATA, alone.append)
    fused = []
    run_bundle(configs(root / "fused"), DATA, fused.append)
    return root, by_trial(alone), by_trial(fused)


def test_every_member_reports_as_its_unfused_trial(eight):
    _, alone, fused = eight
    assert fused.keys() == alone.keys() and len(fused) == 8
    for key in alone:
        assert_close(fused[key], alone[key])
        # Before any training the weights are bit-identical: only the summation order differs, on the path to
        # the mean loss of the 100 test examples EPS64 x (683 + 10 + 100) terms x TERMS_FACTOR = 7e-13.
        assert fused[key][0]["test_loss"] == pytest.approx(alone[key][0]["test_loss"],
                                                           rel=EPS64 * (683 + 10 + 100) * TERMS_FACTOR)


def test_every_member_keeps_its_own_tensorboard_folder_and_checkpoint(eight):
    root, _, _ = eight
    for cfg in configs(root / "fused"):
        folder = Path(cfg.logdir)
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        assert [e.step for e in acc.Scalars("accuracy/test")] == [0, 320, 640]
        assert [e.step for e in acc.Scalars("activation/conv1/std")] == [128, 256, 320, 448, 576, 640]
        ckpt = torch.load(folder / CHECKPOINT, weights_only=True)
        assert ckpt["state"]["epoch"] == 2
        assert {p.dtype for p in ckpt["model"].values()} == {torch.float64}  # trained as the tolerances assume
        assert set(ckpt["model"]) == {f"{layer}.{p}" for layer in ("conv1", "conv2", "fc1", "fc2", "fc3")
                                      for p in ("weight", "bias")}


@pytest.mark.parametrize("first, then", [("fused", "alone"), ("alone", "fused")])
def test_a_sweep_stopped_one_way_resumes_the_other(tmp_path, eight, first, then):
    _, alone, _ = eight
    cfgs = configs(tmp_path)[::2]  # four of them: sigmoid and relu, default and xavier, SGD
    one_epoch = [replace(c, epochs=1) for c in cfgs]
    if first == "fused":
        run_bundle(one_epoch, DATA, lambda r: None)
    else:
        for c in one_epoch:
            run_trial(c, DATA, lambda r: None)
    resumed = []
    if then == "fused":
        run_bundle(cfgs, DATA, resumed.append)
    else:
        for c in cfgs:
            run_trial(c, DATA, resumed.append)
    resumed = by_trial(resumed)
    for key, reports in resumed.items():
        assert [r["resumed_from"] for r in reports] == [1, 1]  # epoch 1 replayed, epoch 2 trained
        assert_close(reports, alone[key][1:])


def test_a_diverging_member_leaves_the_bundle_and_the_others_go_on(tmp_path):
    # float64 reaches 1e308: a learning rate of 1e6 does not overflow it in two epochs, 1e300 in the first.
    grid = {"activation": ["relu", "tanh"], "init": ["xavier_uniform"],
            "optimizer": [{"name": "sgd", "lr": [1e300, 0.05]}]}
    cfgs = configs(tmp_path / "fused", **grid)
    names = [c.name for c in cfgs]
    assert names == ["relu-xavier_uniform-sgd-lr1e+300-s0", "relu-xavier_uniform-sgd-lr0.05-s0",
                     "tanh-xavier_uniform-sgd-lr1e+300-s0", "tanh-xavier_uniform-sgd-lr0.05-s0"]
    fused, alone = [], []
    run_bundle(cfgs, DATA, fused.append)
    for c in configs(tmp_path / "alone", **grid):
        run_trial(c, DATA, alone.append)
    fused, alone = by_trial(fused), by_trial(alone)
    for cfg in cfgs:
        assert_close(fused[cfg.config_hash], alone[cfg.config_hash])
    relu_big = fused[cfgs[0].config_hash]
    assert relu_big[-1]["status"] == "diverged" and relu_big[-1]["epoch"] == 1
    assert relu_big[-1]["reason"].startswith("train loss nan at epoch 1, step ")
    assert not (Path(cfgs[0].logdir) / CHECKPOINT).exists()
    assert [r["epoch"] for r in fused[cfgs[1].config_hash]] == [0, 1, 2]
    assert math.isfinite(fused[cfgs[1].config_hash][-1]["train_loss"])


def test_members_checkpointed_at_different_epochs_train_in_turn(tmp_path, monkeypatch):
    """A bundle whose members stand at epochs 1 and 2 trains one stacked network per starting epoch
    and ends where the members' uninterrupted unfused runs end."""
    import sweep.run.trial

    three = configs(tmp_path / "resumed", epochs=3)
    # Per starting epoch a sigmoid and a relu member, one with SGD and one with Adam.
    at = {three[1].name: 1, three[6].name: 1, three[2].name: 2, three[5].name: 2}
    cfgs = [c for c in three if c.name in at]
    for c in cfgs:  # stopped alone after their first or second epoch
        run_trial(replace(c, epochs=at[c.name]), DATA, lambda r: None)
    straight = []
    for c in configs(tmp_path / "straight", epochs=3):
        if c.name in at:
            run_trial(c, DATA, straight.append)
    straight = by_trial(straight)

    stacked = []

    def recording(modules, *args, **kwargs):
        stacked.append(len(modules))
        return FusedNet(modules, *args, **kwargs)

    monkeypatch.setattr(sweep.run.trial, "FusedNet", recording)
    resumed = []
    run_bundle(cfgs, DATA, resumed.append)
    assert stacked == [2, 2]  # the members at epoch 1 together, then those at epoch 2
    resumed = by_trial(resumed)
    assert resumed.keys() == straight.keys() and len(resumed) == 4
    for c in cfgs:
        reports = resumed[c.config_hash]
        # The epochs up to its checkpoint replayed, the others trained; none twice.
        assert [(r["epoch"], r["resumed_from"]) for r in reports] == [(1, at[c.name]), (2, at[c.name]), (3, at[c.name])]
        assert reports[-1]["images_seen"] == 3 * 320
        # Replayed epochs are the unfused run's own reports: exactly its numbers.
        for r, s in zip(reports[:at[c.name]], straight[c.config_hash][1:]):
            assert {k: v for k, v in r.items() if not k.endswith("seconds") and k != "resumed_from"} == \
                   {k: v for k, v in s.items() if not k.endswith("seconds") and k != "resumed_from"}
        assert_close(reports, straight[c.config_hash][1:])
        assert (Path(c.logdir) / CHECKPOINT).exists()
        assert torch.load(Path(c.logdir) / CHECKPOINT, weights_only=True)["state"]["epoch"] == 3
