"""The compiled CPU kernels (sweep.models.kernels).

The 2x2 max pooling gives exactly torch's numbers: values, the argmax its gradient goes to, and the
gradient's bits, on inputs full of ties, NaN, infinities and signed zeros; a LeNet trained with it ends bit
for bit where one trained with torch's pooling ends. The convolution with one input channel per group gives
F.conv2d's values and gradients to float rounding, the same bits on every run, and each group of a fused
bundle exactly the numbers of that group alone (what makes a fused member its unfused trial).

Which kernels run is the trial's choice ("compiled" or "torch"), carried by its modules; never the thread
count. Where the compiled ones do not apply (sizes, strides, dtype, layout, gradient wanted), torch's run
and give torch's numbers exactly; the C entry points refuse sizes they do not handle.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sweep.models.kernels as kernels
import sweep.models.nets as nets
from sweep.models.fused import FusedNet, step_options
from sweep.models.nets import LeNet, build_model, to_layout
from sweep.models.registry import init_weights

CL = torch.channels_last
EPS = torch.finfo(torch.float32).eps  # 2**-23, twice float32's unit roundoff


def test_the_kernels_are_built_and_a_run_without_them_on_cpus_says_so(monkeypatch):
    # .ci/setup installs with a C compiler: the tests below must run the kernels, not torch's.
    assert kernels.compiled()
    assert kernels.choose(on_cpu=True) == "compiled" and kernels.choose(on_cpu=False) == "torch"
    assert kernels.missing_note(on_cpu=True) is None
    monkeypatch.setattr(kernels, "_kernels", None)
    assert kernels.choose(on_cpu=True) == "torch"
    assert kernels.missing_note(on_cpu=False) is None  # a GPU sweep does not use them
    assert kernels.missing_note(on_cpu=True) == (
        "note: sweep's compiled CPU kernels are not built (no C compiler when sweep was installed): LeNet trains "
        "on torch's kernels, about 1.4x slower on a CPU; install gcc and run pip install -e . again")
    x = torch.rand(2, 6, 8, 8).contiguous(memory_format=CL)
    assert torch.equal(kernels.max_pool2(x, "torch"), F.max_pool2d(x, 2))


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
        got, want = kernels.max_pool2(a, "compiled"), F.max_pool2d(b, 2)
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
    assert _same_bits(kernels.max_pool2(a, "compiled"), F.max_pool2d(b, 2))
    kernels.max_pool2(a, "compiled").sum().backward()
    F.max_pool2d(b, 2).sum().backward()
    assert _same_bits(a.grad, b.grad)


def test_what_the_kernel_leaves_to_torch():
    x = torch.randn(2, 6, 8, 8)
    assert not kernels.pools(x)  # NCHW
    assert not kernels.pools(x.double().contiguous(memory_format=CL))
    assert not kernels.pools(torch.randn(2, 1, 8, 8))  # one channel: both layouts at once
    assert not kernels.pools(x.contiguous(memory_format=CL)[:, :, :, :7])  # a view, not contiguous
    assert torch.equal(kernels.max_pool2(x, "compiled"), F.max_pool2d(x, 2))


def _trained(monkeypatch, torch_pooling: bool, activation: str, optimizer: str, record: bool):
    if torch_pooling:  # the conv kernel in both, so that only the pooling differs
        monkeypatch.setattr(kernels, "pools", lambda x: False)
    torch.manual_seed(0)
    net = LeNet(activation, kernels="compiled")
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
        m = LeNet(act, kernels="compiled")
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


def _compiled_conv2d(*args):
    return kernels.conv2d(*args, kernels="compiled")


def _conv_grads(fn, x, weight, bias, grad, k):
    w, b = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    y = fn(x, w, b, (1, 1), (0, 0), (1, 1), k)
    y.backward(grad)
    return y.detach(), w.grad, b.grad


def _float64_conv(x, weight, bias, grad, k):
    """F.conv2d's output, weight and bias gradients in float64: the exact values to float32's eye."""
    return _conv_grads(F.conv2d, x.double(), weight.double(), bias.double(), grad.double(), k)


def _assert_within_rounding(got: torch.Tensor, exact: torch.Tensor, size: torch.Tensor, terms: int) -> None:
    """A float32 sum of `terms` terms (products, or values), in any order, is within gamma(terms) x `size` of
    the exact sum, where `size` is the sum of the terms' absolute values and gamma(m) = m u / (1 - m u), u the
    unit roundoff 2**-24 (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., section 3.1). The
    bound allowed here is terms x EPS x size = 2 x terms x u x size: the factor 2 covers 1 / (1 - m u) (m u is
    at most 0.03 below) and the float32 result's own last rounding."""
    assert terms * EPS < 0.03
    err = (got.double() - exact).abs()
    assert (err <= terms * EPS * size).all(), f"max error {err.max().item():.3g}, bound {(terms * EPS * size).min().item():.3g}"


@pytest.mark.parametrize("n,k,o,kh,kw,h,w", [(64, 1, 6, 5, 5, 28, 28), (5, 4, 6, 5, 5, 28, 28),
                                             (3, 1, 3, 3, 3, 13, 11), (2, 2, 16, 2, 7, 9, 30),
                                             (2, 1, 4, 3, 16, 8, 20), (1, 1, 1, 1, 1, 1, 1)])
def test_the_conv_kernel_computes_what_torch_computes(monkeypatch, n, k, o, kh, kw, h, w):
    # Up to 16 outputs per group and kernel columns, down to a 1x1 kernel on a 1x1 input.
    x, weight, bias, grad = _conv_case(n, k, o, kh, kw, h, w)
    assert kernels.convolves(x, weight, bias, (1, 1), (0, 0), (1, 1), k)
    calls = _counting(monkeypatch)
    y, gw, gb = _conv_grads(_compiled_conv2d, x, weight, bias, grad, k)
    assert [c[0] for c in calls] == ["conv_forward", "conv_backward"]
    ry = F.conv2d(x, weight, bias, groups=k)
    assert y.shape == ry.shape and y.stride() == ry.stride() and y.dtype == ry.dtype  # channels-last, as torch's
    # Against float64: the output sums kh x kw products and the bias; each weight gradient n x oh x ow
    # products, each bias gradient as many values. The sizes: the same sums over absolute values.
    exact, size = _float64_conv(x, weight, bias, grad, k), _float64_conv(x.abs(), weight.abs(), bias.abs(),
                                                                            grad.abs(), k)
    _assert_within_rounding(y, exact[0], size[0], kh * kw + 1)
    terms = n * (h - kh + 1) * (w - kw + 1)
    _assert_within_rounding(gw, exact[1], size[1], terms)
    _assert_within_rounding(gb, exact[2], size[2], terms)
    # Deterministic: the same bits again.
    again = _conv_grads(_compiled_conv2d, x, weight, bias, grad, k)
    assert all(_same_bits(a, b) for a, b in zip((y, gw, gb), again))


def test_each_group_of_the_conv_kernel_is_that_group_alone():
    # A fused bundle's conv1 (K groups) gives each member exactly its unfused trial's conv1 (one group).
    x, weight, bias, grad = _conv_case(6, 3, 6, 5, 5, 28, 28, seed=3)
    y, gw, gb = _conv_grads(_compiled_conv2d, x, weight, bias, grad, 3)
    for m in range(3):
        alone = _conv_grads(_compiled_conv2d, to_layout(x[:, m:m + 1].contiguous(), CL), weight[6 * m:6 * m + 6],
                            bias[6 * m:6 * m + 6], grad[:, 6 * m:6 * m + 6].contiguous(memory_format=CL), 1)
        assert _same_bits(y[:, 6 * m:6 * m + 6].contiguous(memory_format=CL), alone[0])
        assert _same_bits(gw[6 * m:6 * m + 6], alone[1]) and _same_bits(gb[6 * m:6 * m + 6], alone[2])


def test_a_nan_weight_spreads_through_the_conv_kernel_as_through_torchs():
    x, weight, bias, grad = _conv_case(2, 1, 6, 5, 5, 28, 28)
    weight[2, 0, 1, 1] = float("nan")
    y, gw, gb = _conv_grads(_compiled_conv2d, x, weight, bias, grad, 1)
    ry, rgw, rgb = _conv_grads(F.conv2d, x, weight, bias, grad, 1)
    assert torch.equal(y.isnan(), ry.isnan()) and y[:, 2].isnan().all() and not y[:, 3].isnan().any()
    assert torch.equal(gw.isnan(), rgw.isnan()) and torch.equal(gb.isnan(), rgb.isnan())


# ---- what the kernels leave to torch: torch's numbers exactly, and no call into the extension ----

def _cl(*shape, seed=0):
    return to_layout(torch.rand(*shape, generator=torch.Generator().manual_seed(seed)), CL)


def _filters(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 0.3


# (x, weight, bias, stride, padding, dilation, groups): one past each limit of `convolves`, else what LeNet's
# conv1 is (one input channel, channels-last float32 on the CPU, a 5x5 kernel, stride 1, no padding).
CONV_LIMITS = {
    "17 outputs per group": lambda: (_cl(2, 1, 12, 12), _filters(17, 1, 5, 5), _filters(17), 1, 0, 1, 1),
    "17 outputs per group, 3 groups": lambda: (_cl(2, 3, 12, 12), _filters(51, 1, 5, 5), _filters(51), 1, 0, 1,
                                               3),
    "a wider first conv: 32 filters on one channel": lambda: (_cl(2, 1, 28, 28), _filters(32, 1, 5, 5),
                                                             _filters(32), 1, 0, 1, 1),
    "17 kernel columns": lambda: (_cl(2, 1, 10, 20), _filters(6, 1, 3, 17), _filters(6), 1, 0, 1, 1),
    "stride 2": lambda: (_cl(2, 1, 12, 12), _filters(6, 1, 5, 5), _filters(6), 2, 0, 1, 1),
    "padding 1": lambda: (_cl(2, 1, 12, 12), _filters(6, 1, 5, 5), _filters(6), 1, 1, 1, 1),
    "dilation 2": lambda: (_cl(2, 1, 12, 12), _filters(6, 1, 5, 5), _filters(6), 1, 0, 2, 1),
    "float64": lambda: (_cl(2, 1, 12, 12).double(), _filters(6, 1, 5, 5).double(), _filters(6).double(), 1, 0,
                        1, 1),
    "an input that requires grad": lambda: (_cl(2, 1, 12, 12).requires_grad_(), _filters(6, 1, 5, 5),
                                            _filters(6), 1, 0, 1, 1),
    "NCHW, one channel": lambda: (torch.rand(2, 1, 12, 12), _filters(6, 1, 5, 5), _filters(6), 1, 0, 1, 1),
    "NCHW, three groups": lambda: (torch.rand(2, 3, 12, 12), _filters(18, 1, 5, 5), _filters(18), 1, 0, 1, 3),
    "two input channels per group": lambda: (_cl(2, 6, 12, 12), _filters(6, 2, 3, 3), _filters(6), 1, 0, 1, 3),
    "a weight of two input channels, one per group given": lambda: (_cl(2, 3, 12, 12), _filters(6, 2, 3, 3),
                                                                   _filters(6), 1, 0, 1, 3),
    "LeNet's conv2 (six input channels)": lambda: (_cl(2, 6, 12, 12), _filters(16, 6, 3, 3), _filters(16), 1, 0,
                                                   1, 1),
    "no bias": lambda: (_cl(2, 1, 12, 12), _filters(6, 1, 5, 5), None, 1, 0, 1, 1),
    "an empty batch": lambda: (_cl(0, 1, 12, 12), _filters(6, 1, 5, 5), _filters(6), 1, 0, 1, 1),
    "an input smaller than the kernel": lambda: (_cl(2, 1, 4, 12), _filters(6, 1, 5, 5), _filters(6), 1, 0, 1, 1),
}


def _outcome(fn, inputs, wants_grad):
    """fn's output and the gradients of the inputs that want one (backward from a gradient of ones), or the
    error it raised. The inputs are new leaves on the same memory: their strides are the case's."""
    inputs = [None if t is None else t.detach().requires_grad_(wanted) for t, wanted in zip(inputs, wants_grad)]
    try:
        y = fn(*inputs)
        y.sum().backward()
    except Exception as exc:  # noqa: BLE001 - compared with torch's own error below
        return type(exc), str(exc)
    return [y.detach(), *[t.grad for t in inputs if t is not None and t.requires_grad]]


@pytest.mark.parametrize("case", CONV_LIMITS)
def test_past_each_limit_of_the_conv_kernel_torch_computes_it_exactly(monkeypatch, case):
    x, weight, bias, stride, padding, dilation, groups = CONV_LIMITS[case]()
    args = ((stride,) * 2, (padding,) * 2, (dilation,) * 2, groups)
    assert not kernels.convolves(x, weight, bias, *args)
    calls = _counting(monkeypatch)
    wants_grad = (x.requires_grad, True, True)
    got = _outcome(lambda x, w, b: kernels.conv2d(x, w, b, *args, kernels="compiled"), (x, weight, bias),
                   wants_grad)
    want = _outcome(lambda x, w, b: F.conv2d(x, w, b, *args), (x, weight, bias), wants_grad)
    assert calls == []
    if isinstance(want, tuple):  # torch refuses it: so does the compiled choice, with torch's words
        assert got == want
    else:
        assert len(got) == len(want) and all(_same_bits(a, b) for a, b in zip(got, want))


def test_a_users_wider_first_conv_runs_on_torchs_kernel_under_the_compiled_choice(monkeypatch):
    conv = nets.Conv2d(1, 32, 5, kernels="compiled")
    x = _cl(4, 1, 28, 28)
    calls = _counting(monkeypatch)
    assert _same_bits(conv(x), F.conv2d(x, conv.weight, conv.bias))
    assert calls == []


POOL_LIMITS = {
    "1 wide": lambda: _cl(2, 6, 8, 1),
    "1 high": lambda: _cl(2, 6, 1, 8),
    "float64": lambda: _cl(2, 6, 8, 8).double(),
    "NCHW": lambda: torch.rand(2, 6, 8, 8),
    "one channel": lambda: _cl(2, 1, 8, 8),
    "a view, not contiguous": lambda: _cl(2, 6, 8, 8)[:, :, :, :7],
    "an empty batch": lambda: _cl(0, 6, 8, 8),
}


@pytest.mark.parametrize("case", POOL_LIMITS)
def test_past_each_limit_of_the_pooling_kernel_torch_pools_exactly(monkeypatch, case):
    x = POOL_LIMITS[case]()
    assert not kernels.pools(x)
    calls = _counting(monkeypatch)
    got = _outcome(lambda x: kernels.max_pool2(x, "compiled"), (x,), (True,))
    want = _outcome(lambda x: F.max_pool2d(x, 2), (x,), (True,))
    assert calls == []
    if isinstance(want, tuple):  # a 1-wide input: torch's error, word for word
        assert got == want
    else:
        assert len(got) == len(want) and all(_same_bits(a, b) for a, b in zip(got, want))


# ---- the C entry points refuse sizes they do not handle, and write nothing ----

BAD_CONV_SIZES = {  # (n, h, w, groups, outputs per group, kh, kw)
    "17 outputs per group": (1, 8, 8, 1, 17, 3, 3),
    "no outputs": (1, 8, 8, 1, 0, 3, 3),
    "negative outputs": (1, 8, 8, 1, -1, 3, 3),
    "17 kernel columns": (1, 8, 20, 1, 6, 3, 17),
    "an empty batch": (0, 8, 8, 1, 6, 3, 3),
    "no groups": (1, 8, 8, 0, 6, 3, 3),
    "a negative height": (1, -1, 8, 1, 6, 3, 3),
    "no kernel rows": (1, 8, 8, 1, 6, 0, 3),
    "no kernel columns": (1, 8, 8, 1, 6, 3, 0),
    "an input lower than the kernel": (1, 4, 8, 1, 6, 5, 5),
    "an input narrower than the kernel": (1, 8, 4, 1, 6, 5, 5),
}


@pytest.mark.parametrize("case", BAD_CONV_SIZES)
def test_the_conv_entry_points_refuse_sizes_they_do_not_handle(case):
    sizes = BAD_CONV_SIZES[case]
    room = 1 << 14  # more than any of these sizes would read or write
    x, weight, bias, grad = torch.rand(room), torch.rand(room), torch.rand(room), torch.rand(room)
    out, gw, gb = torch.full((room,), 7.0), torch.full((room,), 7.0), torch.full((room,), 7.0)
    with pytest.raises(ValueError, match="conv kernel: needs positive sizes"):
        kernels._kernels.conv_forward(x.data_ptr(), weight.data_ptr(), bias.data_ptr(), out.data_ptr(), *sizes)
    with pytest.raises(ValueError, match="conv kernel: needs positive sizes"):
        kernels._kernels.conv_backward(x.data_ptr(), grad.data_ptr(), gw.data_ptr(), gb.data_ptr(), *sizes)
    assert all(torch.equal(t, torch.full((room,), 7.0)) for t in (out, gw, gb))


BAD_POOL_SIZES = {  # (n, h, w, channels)
    "1 wide": (1, 8, 1, 6),
    "1 high": (1, 1, 8, 6),
    "an empty batch": (0, 8, 8, 6),
    "no channels": (1, 8, 8, 0),
    "a negative height": (1, -2, 8, 6),
}


@pytest.mark.parametrize("case", BAD_POOL_SIZES)
def test_the_pooling_entry_points_refuse_sizes_they_do_not_handle(case):
    sizes = BAD_POOL_SIZES[case]
    room = 1 << 12
    x, grad = torch.rand(room), torch.rand(room)
    out, gx = torch.full((room,), 7.0), torch.full((room,), 7.0)
    arg = torch.full((room,), 9, dtype=torch.uint8)
    with pytest.raises(ValueError, match="pool kernel: needs a positive batch"):
        kernels._kernels.pool2_forward(x.data_ptr(), out.data_ptr(), arg.data_ptr(), *sizes)
    with pytest.raises(ValueError, match="pool kernel: needs a positive batch"):
        kernels._kernels.pool2_backward(grad.data_ptr(), arg.data_ptr(), gx.data_ptr(), *sizes)
    assert torch.equal(out, torch.full((room,), 7.0)) and torch.equal(gx, torch.full((room,), 7.0))
    assert torch.equal(arg, torch.full((room,), 9, dtype=torch.uint8))


# ---- the choice: explicit, carried by the modules, never the thread count ----

MISSING = ("this trial trains on sweep's compiled CPU kernels, but this worker's sweep install has none (no C "
           "compiler when it was installed): install gcc and python3-dev there and run pip install -e . again, "
           "or rerun under a new sweep name")


def test_a_model_that_chose_the_compiled_kernels_stops_where_they_are_missing(monkeypatch):
    built_here = build_model("lenet", "relu", kernels="compiled")
    monkeypatch.setattr(kernels, "_kernels", None)  # a worker whose install could not compile them
    for build in (lambda: build_model("lenet", "relu", kernels="compiled"),
                  lambda: LeNet("relu", kernels="compiled"), lambda: nets.Conv2d(1, 6, 5, kernels="compiled")):
        with pytest.raises(kernels.KernelsMissing) as caught:
            build()
        assert str(caught.value) == MISSING and isinstance(caught.value, RuntimeError)
    # A network built where they were (a checkpoint's trial resumed elsewhere) stops at its first forward.
    with pytest.raises(kernels.KernelsMissing, match="^this trial trains on sweep's compiled CPU kernels"):
        built_here(_cl(2, 1, 28, 28))
    with pytest.raises(kernels.KernelsMissing):
        kernels.max_pool2(_cl(2, 6, 8, 8), "compiled")
    build_model("lenet", "relu", kernels="torch")  # torch's kernels need nothing compiled
    build_model("mlp", "relu", (8,), kernels="compiled")  # no conv, no pooling: nothing of them used
    for name in ("lenet", "mlp"):
        with pytest.raises(ValueError, match="kernels must be one of compiled, torch, got 'Compiled'"):
            build_model(name, "relu", (8,), kernels="Compiled")


def test_the_default_choice_is_torchs():
    net = build_model("lenet", "relu")
    assert net.kernels == net.conv1.kernels == net.conv2.kernels == "torch"
    assert nets.Conv2d(1, 6, 5).kernels == "torch"
    assert build_model("lenet", "relu", kernels="compiled").conv1.kernels == "compiled"


def _train_lenet(net, steps: int = 3):
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    for step in range(steps):
        x = to_layout(torch.rand(16, 1, 28, 28, generator=g), CL)
        y = torch.randint(0, 10, (16,), generator=g)
        logits, _ = net(x, record=step % 2 == 0)
        opt.zero_grad()
        F.cross_entropy(logits, y).backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()]


def test_the_torch_choice_trains_on_torchs_kernels_to_the_same_bits(monkeypatch):
    torch.manual_seed(0)
    net = build_model("lenet", "tanh", kernels="torch")
    reference = LeNet("tanh")
    for name in ("conv1", "conv2"):  # plain nn.Conv2d and F.max_pool2d: nothing of sweep.models.kernels
        conv = getattr(net, name)
        plain = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size)
        setattr(reference, name, plain)
    reference.load_state_dict(net.state_dict())
    calls = _counting(monkeypatch)
    got = _train_lenet(net)
    assert calls == []
    monkeypatch.setattr(nets, "max_pool2", lambda x, choice: F.max_pool2d(x, 2))
    want = _train_lenet(reference)
    assert all(_same_bits(a, b) for a, b in zip(got, want))


def test_lenet_on_the_cpu_runs_its_first_conv_and_both_poolings_through_the_kernels(monkeypatch):
    net = LeNet("tanh", kernels="compiled")
    x = to_layout(torch.rand(4, 1, 28, 28), CL)
    calls = _counting(monkeypatch)
    for record in (False, True):
        net(x, record=record)[0].sum().backward()
    names = [c[0] for c in calls]
    assert names == ["conv_forward", "pool2_forward", "pool2_forward", "pool2_backward", "pool2_backward",
                     "conv_backward"] * 2


@pytest.mark.parametrize("threads", [1, 4])
def test_the_choice_not_the_thread_count_decides_which_kernels_run(monkeypatch, threads):
    # A trial's thread count is its spec's resources.cpu: its numbers must not depend on it.
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        x = to_layout(torch.rand(4, 1, 28, 28), CL)
        calls = _counting(monkeypatch)
        LeNet("relu", kernels="compiled")(x, record=False)[0].sum().backward()
        assert [c[0] for c in calls] == ["conv_forward", "pool2_forward", "pool2_forward", "pool2_backward",
                                         "pool2_backward", "conv_backward"]
        calls.clear()
        LeNet("relu", kernels="torch")(x, record=False)[0].sum().backward()
        assert calls == []
    finally:
        torch.set_num_threads(before)


def test_a_fused_bundle_takes_its_members_choice_and_refuses_a_mix(monkeypatch):
    torch.manual_seed(0)
    on_torch = [LeNet(act, kernels="torch") for act in ("relu", "tanh")]
    net = FusedNet(on_torch, [("sgd", {"lr": 0.01})] * 2, "cpu")
    calls = _counting(monkeypatch)
    net.train_step(torch.rand(2, 8, 1, 28, 28), torch.randint(0, 10, (2, 8)), record=False)
    assert calls == []
    with pytest.raises(ValueError, match="member 1's network trains on other kernels than member 0's"):
        FusedNet([LeNet("relu", kernels="compiled"), LeNet("tanh", kernels="torch")],
                 [("sgd", {"lr": 0.01})] * 2, "cpu")
