"""LeNet's first convolution and its 2x2 max pooling on the CPU: compiled kernels (_kernels.c), torch's elsewhere.

Measured on the 2-core AMD EPYC (Zen 4), one thread, a batch of 64 in channels-last (bench/bench_step_parts.py,
docs/benchmarks.md):

- torch's channels-last max pooling vectorises over the channels, and LeNet's first conv has six: it took a
  quarter of a ReLU step's CPU time (600 us forward; the kernel 77 us). The kernel gives exactly torch's
  values, argmax and gradient, so a trial's numbers do not depend on whether it is there.
- oneDNN ran conv1 (one input channel, 1 -> 6, 5x5) at a third of its speed on conv2 (560 us forward, 1,130
  with the weight and bias gradients; the kernel 213 and 582). Its sums run in an order of its own, fixed for
  every group and build: float rounding away from oneDNN's (about 1e-6 relative), and a member of a fused
  bundle gets exactly its unfused trial's conv1.

The kernels are built at install time (pyproject.toml) and optional: where they could not be compiled,
everything runs on torch's kernels; `sweep run` says so once (runner). tests/test_kernels.py holds them to
torch's numbers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

try:
    from sweep.models import _kernels
except ImportError:  # not compiled (no C compiler at install time): torch's kernels
    _kernels = None

CL = torch.channels_last


def compiled() -> bool:
    """Whether the compiled kernels are there."""
    return _kernels is not None


def missing_note(on_cpu: bool) -> str | None:
    """The line `sweep run` prints when its trials train on CPUs without the kernels (else None)."""
    if compiled() or not on_cpu:
        return None
    return ("note: sweep's compiled CPU kernels are not built (no C compiler when sweep was installed): LeNet "
            "trains on torch's kernels, about 1.4x slower on a CPU; install gcc and run pip install -e . again")


# The kernels run on one thread, torch's on torch.get_num_threads(). With two threads (a batch of 64, the
# 2-core machine, wall clock; bench/bench_step_parts.py --threads 2) the conv kernel tied oneDNN (659 us
# against 651, forward and gradients) on half the CPU time, and the pooling kernel beat torch's (196 against
# 397); with more threads torch's kernels take over. A trial's thread count is its spec's `resources.cpu`,
# so a given spec always takes the same kernels.
MAX_THREADS = 2


def _channels_last_cpu(x: torch.Tensor) -> bool:
    """A CPU float32 (N, C, H, W) tensor laid out (N, H, W, C) in memory, in a process whose torch runs on at
    most MAX_THREADS threads."""
    return (_kernels is not None and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and x.is_contiguous(memory_format=CL) and x.stride(1) == 1 and torch.get_num_threads() <= MAX_THREADS)


# ---- 2x2 max pooling ----

def pools(x: torch.Tensor) -> bool:
    """Whether the kernel pools `x`: channels-last on the CPU, and only that (a tensor that is both layouts
    at once, one channel, stays with torch, which keeps it NCHW)."""
    return _channels_last_cpu(x) and x.shape[2] >= 2 and x.shape[3] >= 2 and not x.is_contiguous()


def max_pool2(x: torch.Tensor) -> torch.Tensor:
    """F.max_pool2d(x, 2): the same values, argmax and gradient, by the compiled kernel where it applies."""
    return _MaxPool2.apply(x) if pools(x) else F.max_pool2d(x, 2)


class _MaxPool2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = torch.empty((n, c, h // 2, w // 2), memory_format=CL)
        arg = torch.empty((n, h // 2, w // 2, c), dtype=torch.uint8)  # the argmax's place in its window
        _kernels.pool2_forward(x.data_ptr(), y.data_ptr(), arg.data_ptr(), n, h, w, c)
        ctx.save_for_backward(arg)
        ctx.size = x.shape
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (arg,) = ctx.saved_tensors
        n, c, h, w = ctx.size
        grad = grad.contiguous(memory_format=CL)
        out = torch.empty(ctx.size, memory_format=CL)
        _kernels.pool2_backward(grad.data_ptr(), arg.data_ptr(), out.data_ptr(), n, h, w, c)
        return out


# ---- a convolution with one input channel per group ----

def convolves(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding, dilation,
              groups: int) -> bool:
    """Whether the kernel computes F.conv2d(x, weight, bias, stride, padding, dilation, groups): one input
    channel per group, stride 1, no padding or dilation, a bias, up to 16 outputs per group and kernel
    columns, channels-last on the CPU, and an input that needs no gradient (a batch of data)."""
    return (_channels_last_cpu(x) and not x.requires_grad and bias is not None and weight.dim() == 4
            and weight.shape[1] == 1 and groups == x.shape[1] and weight.shape[0] % groups == 0
            and 1 <= weight.shape[0] // groups <= 16 and weight.shape[3] <= 16
            and tuple(stride) == (1, 1) and tuple(padding) == (0, 0) and tuple(dilation) == (1, 1)
            and x.shape[2] >= weight.shape[2] and x.shape[3] >= weight.shape[3]
            and weight.dtype == bias.dtype == torch.float32 and weight.device.type == bias.device.type == "cpu")


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride=(1, 1), padding=(0, 0),
           dilation=(1, 1), groups: int = 1) -> torch.Tensor:
    """F.conv2d with these arguments, by the compiled kernel where it applies (`convolves`)."""
    if convolves(x, weight, bias, stride, padding, dilation, groups):
        return _Conv1.apply(x, weight, bias)
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


class _Conv1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n, k, h, w = x.shape
        o, kh, kw = weight.shape[0] // k, weight.shape[2], weight.shape[3]
        weight, bias = weight.contiguous(), bias.contiguous()
        y = torch.empty((n, k * o, h - kh + 1, w - kw + 1), memory_format=CL)
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
        grad = grad.contiguous(memory_format=CL)
        gw, gb = torch.empty((k * o, 1, kh, kw)), torch.empty(k * o)
        _kernels.conv_backward(x.data_ptr(), grad.data_ptr(), gw.data_ptr(), gb.data_ptr(), n, h, w, k, o, kh, kw)
        return None, gw, gb
