"""The fused training step can be captured as a CUDA graph: proved on the CPU.

A CUDA graph replays kernels with the shapes and addresses it recorded; it
cannot replay a read of a value on the host (`.item()`, `.tolist()`, `bool()`
of a tensor: all dispatch aten._local_scalar_dense), a Python branch on such a
value (which needs that read), or an operation whose output shape depends on
values (nonzero, masked_select, unique). `Capturable` watches every aten
operation of a step through a TorchDispatchMode, fails on those, and records
the operations with their shapes, so that two batches of different values can
be shown to run the same sequence.
"""
import importlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from sweep.models.fused import FusedNet
from sweep.models.graph import StepRunner, why_no_graphs
from sweep.models.nets import build_model
from sweep.models.registry import ACTIVATIONS, init_weights

HOST_READS = {"aten::_local_scalar_dense"}
DATA_DEPENDENT = {"aten::nonzero", "aten::masked_select", "aten::_unique2", "aten::unique_dim",
                  "aten::unique_consecutive", "aten::nonzero_static"}


class Capturable(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        if name in HOST_READS:
            raise AssertionError(f"host read inside the step: {func}")
        if name in DATA_DEPENDENT:
            raise AssertionError(f"data-dependent shape inside the step: {func}")
        out = func(*args, **(kwargs or {}))
        shapes = tuple(tuple(a.shape) for a in torch.utils._pytree.tree_leaves((args, kwargs))
                       if isinstance(a, torch.Tensor))
        self.ops.append((name, shapes))
        return out


MEMBERS = [("sigmoid", "sgd", {"lr": 0.1}), ("tanh", "sgd", {"lr": 0.1, "momentum": 0.9}),
           ("softsign", "adam", {"lr": 1e-3}), ("relu", "adamw", {"lr": 1e-3, "weight_decay": 0.01}),
           ("relu", "rmsprop", {"lr": 1e-3})]


def _net(capturable: bool, members=MEMBERS) -> FusedNet:
    modules = []
    for seed, (act, _, _) in enumerate(members):
        torch.manual_seed(seed)
        module = build_model("lenet", act, ())
        init_weights(module, "xavier_uniform", 1.0, act)
        modules.append(module)
    return FusedNet(modules, [(opt, hyper) for _, opt, hyper in members], "cpu", capturable=capturable)


def _cpu_capturable(monkeypatch):
    """Let torch's capturable optimizers run on the CPU (they refuse devices other than CUDA's kind only by
    a device list), so that their step is checked here as it will run in a CUDA graph."""
    for name in ("adam", "adamw", "rmsprop", "optimizer"):  # torch.optim.adam is the function, not the module
        module = importlib.import_module(f"torch.optim.{name}")
        if hasattr(module, "_get_capturable_supported_devices"):
            monkeypatch.setattr(module, "_get_capturable_supported_devices",
                                lambda supports_xla=True: ["cuda", "cpu"])


def _batch(seed: int, k: int, b: int = 16):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(k, b, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (k, b), generator=g)
    return x, y


@pytest.mark.parametrize("members", [MEMBERS, MEMBERS[2:3]], ids=["bundle", "one member"])
def test_the_step_reads_nothing_on_the_host_and_runs_the_same_operations_for_any_values(monkeypatch, members):
    # A bundle of one runs the net's own module (models.fused's one-member path): captured the same way.
    _cpu_capturable(monkeypatch)
    net = _net(capturable=True, members=members)
    runs = []
    for seed in range(3):  # the first step creates the optimizers' state; the captured step is a later one
        x, y = _batch(seed, len(members))
        with Capturable() as mode:
            net.train_step(x, y)
            net.step()
        runs.append(mode.ops)
    assert runs[1] == runs[2]
    assert len(runs[2]) > 100  # the whole step was watched: forward, backward and the optimizers


def _cuda_step_options(monkeypatch):
    """The optimizers' eager step as on CUDA (torch's own choice, fused.step_options' {}), not the CPU's fused
    kernels: what a captured step is held to."""
    import sweep.models.fused as fused

    monkeypatch.setattr(fused, "step_options", lambda name, device: {})


def test_the_check_catches_a_host_read(monkeypatch):
    # Adam's ordinary form reads its step counter on the host: exactly what a graph cannot replay.
    _cuda_step_options(monkeypatch)
    net = _net(capturable=False)
    x, y = _batch(0, len(MEMBERS))
    net.train_step(x, y)
    try:
        with Capturable():
            net.step()
    except AssertionError as exc:
        assert "_local_scalar_dense" in str(exc)
    else:
        raise AssertionError("Adam without capturable=True read nothing on the host")


# float32's epsilon (2^-23): a rounding to nearest moves a value by at most EPS / 2 of it.
EPS = torch.finfo(torch.float32).eps
# How far the capturable step may move a weight from the ordinary one, in units of that step's own size.
# The capturable form takes Adam's bias corrections 1 - beta^t in float32, the ordinary one in float64:
# 0.999 (half an ulp) and its power (an ulp) round by up to 3 EPS / 4 near 1, which 1 - 0.999^t magnifies by up
# to 0.999 / 0.001 = 1000 (750 EPS), halved by the root it is used through (375 EPS); 1 - 0.9^t adds 9 x 3 EPS / 4,
# and the dozen roundings of lr, the quotients and eps in either form under 10 EPS: under 400 EPS in all, which
# 1000 EPS (1.2e-4) bounds. A wrong bias correction or step count misses by a tenth of the step or more.
STEP_RTOL = 1000 * EPS


def test_capturable_optimizers_compute_the_same_numbers(monkeypatch):
    _cpu_capturable(monkeypatch)
    _cuda_step_options(monkeypatch)
    plain, captured = _net(capturable=False), _net(capturable=True)
    for seed in range(4):
        x, y = _batch(seed, len(MEMBERS))
        before = [plain.member_state(k)[0] for k in range(len(MEMBERS))]
        for net in (plain, captured):
            net.train_step(x, y)
            net.step()
        for k, (_, optimizer, _) in enumerate(MEMBERS):
            a, (b, b_optimizer) = plain.member_state(k)[0], captured.member_state(k)
            for name in a:
                if optimizer in ("sgd", "rmsprop"):  # no step-count scalars: the same operations, bit for bit
                    assert torch.equal(a[name], b[name]), (seed, k, name)
                    continue
                # fp32: the two updates differ by STEP_RTOL of the step; adding it to the weight rounds on
                # either side, by EPS / 2 of it each (3/4 EPS where the two straddle a power of two): 2 EPS |w|
                bound = STEP_RTOL * (a[name] - before[k][name]).abs() + 2 * EPS * a[name].abs()
                assert ((a[name] - b[name]).abs() <= bound).all(), (seed, k, name, (a[name] - b[name]).abs().max())
            # Both take the next step from the same weights (their optimizer states stay their own): a
            # difference left in the weights would change the next gradients, and Adam's step, normalised
            # per weight, can turn a change in a gradient at rounding level into one of up to 2 lr.
            captured.load_member_state(k, a, b_optimizer)
    # A member saved from the capturable form continues in the ordinary one (and back): same setting.
    model, optimizer = captured.member_state(2)
    plain.load_member_state(2, model, optimizer)


def test_the_runner_steps_eagerly_off_cuda_and_says_why():
    net, twin = _net(capturable=False), _net(capturable=False)
    data_x = torch.randn(64, 1, 28, 28)
    data_y = torch.randint(0, 10, (64,))
    runner = StepRunner(net, data_x, data_y, "bundle")
    assert runner.reason == why_no_graphs(torch.device("cpu")) == "CUDA graphs off: the bundle trains on cpu"
    idx = torch.stack([torch.randperm(64, generator=torch.Generator().manual_seed(k))[:16]
                       for k in range(len(MEMBERS))])
    for _ in range(5):  # past the warm-up: still eager on the CPU
        losses = runner.step(idx)
        expected, _ = twin.train_step(data_x[idx], data_y[idx], record=False)  # a step without statistics
        twin.step()
        torch.testing.assert_close(losses, expected, rtol=0, atol=0)
    assert runner.graph is None


def test_a_snapshot_of_every_member_is_one_host_copy(monkeypatch):
    net = _net(capturable=False)
    x, y = _batch(0, len(MEMBERS))
    _, acts = net.train_step(x, y)
    calls = []
    original = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: calls.append(self.shape) or original(self))
    snaps = net.snapshots(acts, [ACTIVATIONS[act].bounds for act, _, _ in MEMBERS])
    assert calls == [torch.Size([len(MEMBERS), 9, 6])]  # 4 activation layers + 5 weight gradients, 6 statistics
    assert [len(s) for s in snaps] == [9] * len(MEMBERS)
