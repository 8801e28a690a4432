"""LeNet's first convolution and its 2x2 max pooling on the CPU: compiled kernels (_kernels.c), or torch's.

Which kernels a trial trains on is a choice made once, before it starts, and carried by its modules
(`choose`, `nets.build_model(..., kernels=...)`): "compiled" or "torch". Never the thread count or the
machine's load: the conv kernel sums in its own fixed order, float rounding away from oneDNN's, so a
trial that resumed or was retried on other kernels would silently go on with other numbers. Where a trial
chose "compiled" and its worker has no compiled kernels, it stops with `KernelsMissing` instead.

Under the "compiled" choice, each call still takes torch's kernel where the tensors are not what the
compiled one handles (`pools`, `convolves`): that depends only on the network and the device, so it is the
same in every run of a trial.

- The pooling: torch's channels-last max pooling vectorises over the channels, and LeNet's first conv has
  six. The kernel gives exactly torch's values, argmax and gradient.
- The conv (one input channel per group: LeNet's conv1, and a fused bundle's, one group per member): oneDNN
  runs it far below its speed on conv2. The kernel's sums run in an order of its own, the same for every
  group and build, so a member of a fused bundle gets exactly its unfused trial's conv1.

The figures: docs/benchmarks.md, "CPU trials: channels-last, fused optimizer steps, pooling first,
compiled kernels". The kernels are built at install time (setup.py) and optional: where they could not be
compiled, `choose` picks torch's and `sweep run` says so once (runner). tests/test_kernels.py holds them to
torch's numbers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

try:
    from sweep.models import _kernels
except ImportError:  # not compiled (no C compiler at install time)
    _kernels = None

CL = torch.channels_last

# The choices a trial's modules carry: sweep's compiled CPU kernels where they apply, or torch's everywhere.
KERNELS = ("compiled", "torch")
COMPILED, TORCH = KERNELS

# What a trial that chose the compiled kernels says where its worker has none.
MISSING = ("this trial trains on sweep's compiled CPU kernels, but this worker's sweep install has none (no C "
           "compiler when it was installed): install gcc and python3-dev there and run pip install -e . again, "
           "or rerun under a new sweep name")

# The most output channels per group and kernel columns the conv kernel keeps in registers (_kernels.c's
# MAXO and MAXKW; the C entry points refuse more).
MAX_OUTPUTS = 16
MAX_COLUMNS = 16


class KernelsMissing(RuntimeError):
    """A trial chose the compiled kernels and this process has none: its numbers would change."""


def compiled() -> bool:
    """Whether the compiled kernels are there (this process's sweep install built them)."""
    return _kernels is not None


def choose(on_cpu: bool) -> str:
    """The kernels a new trial trains on: "compiled" where they are built and trials train on the CPU, else
    "torch". Chosen once per trial and kept with it (a resumed or retried trial takes its recorded choice)."""
    return COMPILED if on_cpu and compiled() else TORCH


def check_name(choice: str) -> None:
    """Raise ValueError unless `choice` is one of KERNELS."""
    if choice not in KERNELS:
        raise ValueError(f"kernels must be one of {', '.join(KERNELS)}, got {choice!r}")


def require(choice: str) -> None:
    """Check that this process can train on `choice` (one of KERNELS): raises KernelsMissing where it is
    "compiled" and the compiled kernels are not importable here, ValueError for an unknown name."""
    check_name(choice)
    if choice == COMPILED and _kernels is None:
        raise KernelsMissing(MISSING)


def missing_note(on_cpu: bool) -> str | None:
    """The line `sweep run` prints when its trials train on CPUs without the kernels (else None)."""
    if compiled() or not on_cpu:
        return None
    return ("note: sweep's compiled CPU kernels are not built (no C compiler when sweep was installed): LeNet "
            "trains on torch's kernels, about 1.4x slower on a CPU; install gcc and run pip install -e . again")


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _dense_channels_last(x: torch.Tensor) -> bool:
    """A non-empty CPU float32 (N, C, H, W) tensor whose memory is (N, H, W, C), dense: what the kernels
    read. (A one-channel tensor with NCHW strides is the same memory, but torch's kernels give it an NCHW
    output, so it needs the channels' stride 1 too.)"""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4 and x.numel() > 0
            and x.is_contiguous(memory_format=CL) and x.stride(1) == 1)


# ---- 2x2 max pooling ----

def pools(x: torch.Tensor) -> bool:
    """Whether, under the "compiled" choice, the kernel pools `x`: channels-last on the CPU, and only that
    (a tensor that is both layouts at once, one channel, stays with torch, which keeps it NCHW), at least
    one 2x2 window."""
    return _dense_channels_last(x) and x.shape[2] >= 2 and x.shape[3] >= 2 and not x.is_contiguous()


def max_pool2(x: torch.Tensor, kernels: str) -> torch.Tensor:
    """F.max_pool2d(x, 2): the same values, argmax and gradient; by the compiled kernel where `kernels` is
    "compiled" and it applies (`pools`)."""
    if kernels != TORCH and pools(x):
        require(kernels)
        return _MaxPool2.apply(x)
    return F.max_pool2d(x, 2)


class _MaxPool2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = torch.empty((n, c, h // 2, w // 2), dtype=x.dtype, device=x.device, memory_format=CL)
        # the argmax's place in its window, 0..3
        arg = torch.empty((n, h // 2, w // 2, c), dtype=torch.uint8, device=x.device)
        _kernels.pool2_forward(x.data_ptr(), y.data_ptr(), arg.data_ptr(), n, h, w, c)
        ctx.save_for_backward(arg)
        ctx.size, ctx.dtype, ctx.device = x.shape, x.dtype, x.device
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (arg,) = ctx.saved_tensors
        n, c, h, w = ctx.size
        grad = grad.to(ctx.dtype).contiguous(memory_format=CL)
        out = torch.empty(ctx.size, dtype=ctx.dtype, device=ctx.device, memory_format=CL)
        _kernels.pool2_backward(grad.data_ptr(), arg.data_ptr(), out.data_ptr(), n, h, w, c)
        return out


# ---- a convolution with one input channel per group ----

def convolves(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding, dilation,
              groups: int) -> bool:
    """Whether, under the "compiled" choice, the kernel computes F.conv2d(x, weight, bias, stride, padding,
    dilation, groups): one input channel per group, 1 to MAX_OUTPUTS outputs per group, at most MAX_COLUMNS
    kernel columns, stride 1, no padding or dilation, a bias, float32 on the CPU, x channels-last and at
    least the kernel's size, and an input that needs no gradient (a batch of data)."""
    if not (_dense_channels_last(x) and not x.requires_grad and bias is not None and weight.dim() == 4
            and bias.dim() == 1 and weight.dtype == bias.dtype == torch.float32
            and weight.device.type == bias.device.type == "cpu"):
        return False
    n, k, h, w = x.shape
    filters, per_group, kh, kw = weight.shape
    o = filters // groups if groups >= 1 else 0
    return (per_group == 1 and groups == k and filters == groups * o and bias.shape[0] == filters
            and 1 <= o <= MAX_OUTPUTS and 1 <= kw <= MAX_COLUMNS and 1 <= kh <= h and kw <= w
            and _pair(stride) == (1, 1) and _pair(padding) == (0, 0) and _pair(dilation) == (1, 1))


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride=(1, 1), padding=(0, 0),
           dilation=(1, 1), groups: int = 1, *, kernels: str) -> torch.Tensor:
    """F.conv2d with these arguments; by the compiled kernel where `kernels` is "compiled" and it applies
    (`convolves`)."""
    if kernels != TORCH and convolves(x, weight, bias, stride, padding, dilation, groups):
        require(kernels)
        return _Conv1.apply(x, weight, bias)
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


class _Conv1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n, k, h, w = x.shape
        o, kh, kw = weight.shape[0] // k, weight.shape[2], weight.shape[3]
        weight, bias = weight.contiguous(), bias.contiguous()
        y = torch.empty((n, k * o, h - kh + 1, w - kw + 1), dtype=x.dtype, device=x.device, memory_format=CL)
        _kernels.conv_forward(x.data_ptr(), weight.data_ptr(), bias.data_ptr(), y.data_ptr(), n, h, w, k, o, kh, kw)
        ctx.save_for_backward(x)
        ctx.shape = (o, kh, kw)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        n, k, h, w = x.shape
        o, kh, kw = ctx.shape
        grad = grad.to(x.dtype).contiguous(memory_format=CL)
        gw = torch.empty((k * o, 1, kh, kw), dtype=x.dtype, device=x.device)
        gb = torch.empty(k * o, dtype=x.dtype, device=x.device)
        _kernels.conv_backward(x.data_ptr(), grad.data_ptr(), gw.data_ptr(), gb.data_ptr(), n, h, w, k, o, kh, kw)
        return None, gw, gb
