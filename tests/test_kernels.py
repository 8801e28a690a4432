"""The compiled CPU kernels (sweep.models.kernels).

The 2x2 max pooling gives exactly torch's numbers: values, the argmax its gradient goes to, and the
gradient's bits, on inputs full of ties, NaN, infinities and signed zeros; a LeNet trained with it ends bit
for bit where one trained with torch's pooling ends. The convolution with one input channel per group gives
F.conv2d's values and gradients to float rounding, the same bits on every run, and each group of a fused
bundle exactly the numbers of that group alone (what makes a fused member its unfused trial).
"""
import pytest
import torch
import torch.nn.functional as F

import sweep.models.kernels as kernels
from sweep.models.fused import FusedNet, step_options
from sweep.models.nets import LeNet, to_layout
from sweep.models.registry import init_weights

CL = torch.channels_last


def test_the_kernels_are_built_and_a_run_without_them_on_cpus_says_so(monkeypatch):
    # .ci/setup installs with a C compiler: the tests below must run the kernels, not torch's.
    assert kernels.compiled()
    assert kernels.missing_note(on_cpu=True) is None
    monkeypatch.setattr(kernels, "_kernels", None)
    assert kernels.missing_note(on_cpu=False) is None  # a GPU sweep does not use them
    assert kernels.missing_note(on_cpu=True) == (
        "note: sweep's compiled CPU kernels are not built (no C compiler when sweep was installed): LeNet trains "
        "on torch's kernels, about 1.4x slower on a CPU; install gcc and run pip install -e . again")
    x = torch.rand(2, 6, 8, 8).contiguous(memory_format=CL)
    assert not kernels.pools(x) and torch.equal(kernels.max_pool2(x), F.max_pool2d(x, 2))


def _nasty(shape, seed):
    """Values from a small set (ties in most windows), with NaN, +-inf and -0.0 sprinkled in."""
    g = torch.Generator().manual_seed(seed)
    choices = torch.tensor([-1.0, -0.0, 0.0, 0.5, 0.5, 1.0, float("inf"), float("-inf"), float("nan")])
    x = choices[torch.randint(0, len(choices), shape, generator=g)]
    smooth = torch.randn(shape, generator=g)
    keep = torch.rand(shape, generator=g) < 0.5
    return torch.where(keep, x, smooth).contiguous(memory_format=CL)


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.stride() == b.stride() and torch.equal(
        a.contiguous().view(torch.int32), b.contiguous().view(torch.int32))


@pytest.mark.parametrize("shape", [(64, 6, 24, 24), (64, 16, 10, 10), (3, 24, 12, 12), (2, 5, 7, 9),
                                   (1, 3, 2, 2), (2, 7, 1 + 2, 5)])
def test_values_argmax_and_gradient_are_torchs(shape):
    for seed in range(3):
        x = _nasty(shape, seed)
        assert kernels.pools(x)
        g = _nasty((shape[0], shape[1], shape[2] // 2, shape[3] // 2), seed + 10)
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        got, want = kernels.max_pool2(a), F.max_pool2d(b, 2)
        assert _same_bits(got, want)
        got.backward(g)
        want.backward(g)
        # The gradient lands where torch's argmax is (the last NaN, else the first maximum), with its bits.
        assert _same_bits(a.grad, b.grad)


def test_every_tie_and_nan_order_in_one_window():
    # All 4**4 windows over {-inf, 0, 1, nan}: the place the gradient goes is torch's in every one.
    vals = torch.tensor([float("-inf"), 0.0, 1.0, float("nan")])
    idx = torch.cartesian_prod(*[torch.arange(4)] * 4)  # (256, 4)
    x = vals[idx].reshape(256, 2, 2).unsqueeze(0).expand(6, -1, -1, -1).permute(1, 0, 2, 3)  # (256, 6, 2, 2)
    x = x.contiguous(memory_format=CL)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    assert _same_bits(kernels.max_pool2(a), F.max_pool2d(b, 2))
    kernels.max_pool2(a).sum().backward()
    F.max_pool2d(b, 2).sum().backward()
    assert _same_bits(a.grad, b.grad)


def test_what_the_kernel_leaves_to_torch():
    x = torch.randn(2, 6, 8, 8)
    assert not kernels.pools(x)  # NCHW
    assert not kernels.pools(x.double().contiguous(memory_format=CL))
    assert not kernels.pools(torch.randn(2, 1, 8, 8))  # one channel: both layouts at once
    assert not kernels.pools(x.contiguous(memory_format=CL)[:, :, :, :7])  # a view, not contiguous
    assert torch.equal(kernels.max_pool2(x), F.max_pool2d(x, 2))


def _trained(monkeypatch, torch_pooling: bool, activation: str, optimizer: str, record: bool):
    if torch_pooling:
        monkeypatch.setattr(kernels, "pools", lambda x: False)
    torch.manual_seed(0)
    net = LeNet(activation)
    init_weights(net, "xavier_uniform", 1.0, activation)
    opt = (torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, **step_options("sgd", "cpu"))
           if optimizer == "sgd" else torch.optim.Adam(net.parameters(), lr=0.01, **step_options("adam", "cpu")))
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        x = to_layout(torch.rand(32, 1, 28, 28, generator=g), CL)
        y = torch.randint(0, 10, (32,), generator=g)
        logits, _ = net(x, record=record)
        opt.zero_grad()
        F.cross_entropy(logits, y).backward()
        opt.step()
    monkeypatch.undo()
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("activation,optimizer,record", [("relu", "sgd", False), ("tanh", "adam", False),
                                                         ("gelu", "sgd", False), ("sigmoid", "sgd", True)])
def test_a_lenet_trains_to_the_same_bits_with_either_pooling(monkeypatch, activation, optimizer, record):
    with_kernel = _trained(monkeypatch, False, activation, optimizer, record)
    with_torch = _trained(monkeypatch, True, activation, optimizer, record)
    assert all(_same_bits(a, b) for a, b in zip(with_kernel, with_torch))


def _counting(monkeypatch):
    calls = []
    real = kernels._kernels

    class Counted:
        def __getattr__(self, name):
            def call(*args):
                calls.append((name, *[a for a in args if a < 1 << 20]))  # the sizes, not the pointers
                return getattr(real, name)(*args)
            return call

    monkeypatch.setattr(kernels, "_kernels", Counted())
    return calls


def _lenets(activations):
    modules = []
    for seed, act in enumerate(activations):
        torch.manual_seed(seed)
        m = LeNet(act)
        init_weights(m, "xavier_uniform", 1.0, act)
        modules.append(m)
    return modules


def test_a_fused_bundle_runs_its_members_through_the_kernels(monkeypatch):
    # The folded batch (B, K, H, W) and conv outputs (B, K*C, H, W) are channels-last: one call of each
    # kernel serves all members. conv2 (six input channels per member) stays with oneDNN.
    net = FusedNet(_lenets(["relu", "tanh", "relu"]), [("sgd", {"lr": 0.01})] * 3, "cpu")
    x, y = torch.rand(3, 8, 1, 28, 28), torch.randint(0, 10, (3, 8))
    calls = _counting(monkeypatch)
    net.train_step(x, y, record=False)
    # (n, h, w, channels) for the pooling; (n, h, w, groups, outputs per group, kh, kw) for the conv
    assert calls == [("conv_forward", 8, 28, 28, 3, 6, 5, 5), ("pool2_forward", 8, 24, 24, 18),
                     ("pool2_forward", 8, 10, 10, 48), ("pool2_backward", 8, 10, 10, 48),
                     ("pool2_backward", 8, 24, 24, 18), ("conv_backward", 8, 28, 28, 3, 6, 5, 5)]


def _conv_case(n, k, o, kh, kw, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, k, h, w, generator=g).contiguous(memory_format=CL)
    if k == 1:
        x = to_layout(x.contiguous(), CL)
    weight = torch.randn(k * o, 1, kh, kw, generator=g) * 0.3
    bias = torch.randn(k * o, generator=g) * 0.1
    grad = torch.randn(n, k * o, h - kh + 1, w - kw + 1, generator=g).contiguous(memory_format=CL)
    return x, weight, bias, grad


def _conv_grads(fn, x, weight, bias, grad, k):
    w, b = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    y = fn(x, w, b, (1, 1), (0, 0), (1, 1), k)
    y.backward(grad)
    return y.detach(), w.grad, b.grad


@pytest.mark.parametrize("n,k,o,kh,kw,h,w", [(64, 1, 6, 5, 5, 28, 28), (5, 4, 6, 5, 5, 28, 28),
                                             (3, 1, 3, 3, 3, 13, 11), (2, 2, 16, 2, 7, 9, 30)])
def test_the_conv_kernel_computes_what_torch_computes(n, k, o, kh, kw, h, w):
    x, weight, bias, grad = _conv_case(n, k, o, kh, kw, h, w)
    assert kernels.convolves(x, weight, bias, (1, 1), (0, 0), (1, 1), k)
    y, gw, gb = _conv_grads(kernels.conv2d, x, weight, bias, grad, k)
    ry, rgw, rgb = _conv_grads(F.conv2d, x, weight, bias, grad, k)
    assert y.shape == ry.shape and y.stride() == ry.stride()  # channels-last, as torch's
    # Sums in another order: float rounding, relative to the size of the terms.
    assert torch.allclose(y, ry, rtol=0, atol=1e-6 * (kh * kw))
    assert torch.allclose(gw, rgw, rtol=1e-5, atol=1e-5 * rgw.abs().max().item())
    assert torch.allclose(gb, rgb, rtol=1e-5, atol=1e-5 * rgb.abs().max().item())
    # Deterministic: the same bits again.
    again = _conv_grads(kernels.conv2d, x, weight, bias, grad, k)
    assert all(_same_bits(a, b) for a, b in zip((y, gw, gb), again))


def test_each_group_of_the_conv_kernel_is_that_group_alone():
    # A fused bundle's conv1 (K groups) gives each member exactly its unfused trial's conv1 (one group).
    x, weight, bias, grad = _conv_case(6, 3, 6, 5, 5, 28, 28, seed=3)
    y, gw, gb = _conv_grads(kernels.conv2d, x, weight, bias, grad, 3)
    for m in range(3):
        alone = _conv_grads(kernels.conv2d, to_layout(x[:, m:m + 1].contiguous(), CL), weight[6 * m:6 * m + 6],
                            bias[6 * m:6 * m + 6], grad[:, 6 * m:6 * m + 6].contiguous(memory_format=CL), 1)
        assert _same_bits(y[:, 6 * m:6 * m + 6].contiguous(memory_format=CL), alone[0])
        assert _same_bits(gw[6 * m:6 * m + 6], alone[1]) and _same_bits(gb[6 * m:6 * m + 6], alone[2])


def test_a_nan_weight_spreads_through_the_conv_kernel_as_through_torchs():
    x, weight, bias, grad = _conv_case(2, 1, 6, 5, 5, 28, 28)
    weight[2, 0, 1, 1] = float("nan")
    y, gw, gb = _conv_grads(kernels.conv2d, x, weight, bias, grad, 1)
    ry, rgw, rgb = _conv_grads(F.conv2d, x, weight, bias, grad, 1)
    assert torch.equal(y.isnan(), ry.isnan()) and y[:, 2].isnan().all() and not y[:, 3].isnan().any()
    assert torch.equal(gw.isnan(), rgw.isnan()) and torch.equal(gb.isnan(), rgb.isnan())


def test_what_the_conv_kernel_leaves_to_torch():
    x, weight, bias, _ = _conv_case(2, 1, 6, 5, 5, 28, 28)
    one = ((1, 1), (0, 0), (1, 1), 1)
    assert kernels.convolves(x, weight, bias, *one)
    assert not kernels.convolves(x.contiguous().as_strided(x.shape, (784, 784, 28, 1)), weight, bias, *one)  # NCHW
    assert not kernels.convolves(x.requires_grad_(), weight, bias, *one)  # an input gradient is wanted
    x.requires_grad_(False)
    assert not kernels.convolves(x, weight, None, *one)
    assert not kernels.convolves(x, weight, bias, (2, 2), (0, 0), (1, 1), 1)
    assert not kernels.convolves(x, weight, bias, (1, 1), (1, 1), (1, 1), 1)
    six = torch.rand(2, 6, 12, 12).contiguous(memory_format=CL)
    assert not kernels.convolves(six, torch.randn(16, 6, 3, 3), torch.randn(16), *one)  # LeNet's conv2
    assert not kernels.convolves(x.double(), weight.double(), bias.double(), *one)


def test_lenet_on_the_cpu_runs_its_first_conv_and_both_poolings_through_the_kernels(monkeypatch):
    net = LeNet("tanh")
    x = to_layout(torch.rand(4, 1, 28, 28), CL)
    calls = _counting(monkeypatch)
    for record in (False, True):
        net(x, record=record)[0].sum().backward()
    names = [c[0] for c in calls]
    assert names == ["conv_forward", "pool2_forward", "pool2_forward", "pool2_backward", "pool2_backward",
                     "conv_backward"] * 2


def test_with_more_threads_than_the_kernels_gain_on_torchs_kernels_run():
    x, weight, bias, _ = _conv_case(2, 1, 6, 5, 5, 28, 28)
    pooled = torch.rand(2, 6, 8, 8).contiguous(memory_format=CL)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(kernels.MAX_THREADS)
        assert kernels.convolves(x, weight, bias, (1, 1), (0, 0), (1, 1), 1) and kernels.pools(pooled)
        torch.set_num_threads(kernels.MAX_THREADS + 1)
        assert not kernels.convolves(x, weight, bias, (1, 1), (0, 0), (1, 1), 1) and not kernels.pools(pooled)
    finally:
        torch.set_num_threads(threads)
