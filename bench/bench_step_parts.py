"""Pieces of LeNet's CPU training step and the alternatives measured against them.

Each line: microseconds per call, best of 7 rounds, one thread, per CPU second (time.process_time), the shapes
of LeNet's step at batch 64 in channels-last. In isolation a kernel runs with warm caches: inside the step the
same kernels take longer and the ranking of close alternatives can change, so a candidate is adopted only after
a side-by-side step measurement (docs/benchmarks.md, "CPU trials: channels-last, fused optimizer steps, pooling
first, compiled kernels", candidates left alone). sweep's compiled kernels are timed through the public
functions a trial calls under the "compiled" choice (sweep.models.kernels.max_pool2, conv2d).

    python bench/bench_step_parts.py
    python bench/bench_step_parts.py --threads 2   # torch on two threads, timed by the wall clock
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from sweep.models import kernels
from sweep.models.nets import to_layout

CL = torch.channels_last


CLOCK = time.process_time  # per CPU second; the wall clock with --threads above 1


def bench(f, n: int = 100) -> float:
    for _ in range(5):
        f()
    best = float("inf")
    for _ in range(7):
        t = CLOCK()
        for _ in range(n):
            f()
        best = min(best, (CLOCK() - t) / n)
    return best * 1e6


def pool_h_then_w(x: torch.Tensor) -> torch.Tensor:
    """2x2 max pooling as two of torch's poolings on views: rows first (vectorised: (W*C) channels), then
    columns (C channels, scalar). Exact values; ties in the gradient go by another order than torch's."""
    n, c, h, w = x.shape
    v = x.permute(0, 2, 3, 1).reshape(n, h, w * c).transpose(1, 2).unsqueeze(2)  # (N, W*C, 1, H) channels-last
    y = F.max_pool2d(v, (1, 2))
    y = y.squeeze(2).transpose(1, 2).reshape(n, h // 2, w, c).permute(0, 3, 1, 2)  # (N, C, H/2, W)
    return F.max_pool2d(y, (1, 2))


def main() -> None:
    global CLOCK
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch's threads (default 1, as a 1-CPU trial)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.threads > 1:
        CLOCK = time.perf_counter
    torch.manual_seed(0)
    line = "{:<58}{:>9.0f} us"

    # The batch gather (models.graph.gather).
    data, idx = torch.rand(60000, 1, 28, 28), torch.randperm(60000)[:64].unsqueeze(0)
    print(line.format("gather: data[idx] (aten::index)", bench(lambda: data[idx], 300)))
    print(line.format("gather: index_select (adopted)", bench(lambda: data.index_select(0, idx.reshape(-1)), 300)))

    # conv2's pooling backward: the gradient the flatten hands back (models.nets.flatten_features).
    x = torch.randn(64, 16, 10, 10).contiguous(memory_format=CL)
    _, ind = torch.ops.aten.max_pool2d_with_indices(x, [2, 2], [2, 2])
    back = torch.ops.aten.max_pool2d_with_indices_backward
    for name, g in (("NCHW gradient (before)", torch.randn(64, 16, 5, 5)),
                    ("channels-last gradient (adopted)", torch.randn(64, 16, 5, 5).contiguous(memory_format=CL))):
        print(line.format(f"pool2 backward, {name}",
                          bench(lambda: back(g, x, [2, 2], [2, 2], [0, 0], [1, 1], False, ind), 300)))

    # conv1's pooling, forward and backward, 64 x 6 x 24 x 24.
    x0 = torch.randn(64, 6, 24, 24).contiguous(memory_format=CL)
    g = torch.randn(64, 6, 12, 12).contiguous(memory_format=CL)

    def fwd_bwd(pool):
        def run():
            leaf = x0.clone().requires_grad_()
            pool(leaf).backward(g)
        return run

    with torch.no_grad():
        print(line.format("pool1 forward: F.max_pool2d", bench(lambda: F.max_pool2d(x0, 2))))
        print(line.format("pool1 forward: rows then columns", bench(lambda: pool_h_then_w(x0))))
        print(line.format("pool1 forward: oneDNN (to_mkldnn and back; NaN lost)",
                          bench(lambda: torch.mkldnn_max_pool2d(x0.to_mkldnn(), [2, 2], [2, 2]).to_dense())))
    print(line.format("pool1 forward+backward: F.max_pool2d", bench(fwd_bwd(lambda t: F.max_pool2d(t, 2)))))
    print(line.format("pool1 forward+backward: rows then columns", bench(fwd_bwd(pool_h_then_w))))
    print(line.format("pool1 forward+backward: oneDNN",
                      bench(fwd_bwd(lambda t: torch.mkldnn_max_pool2d(t.to_mkldnn(), [2, 2], [2, 2]).to_dense()))))
    if kernels.compiled():
        assert kernels.pools(x0)  # the compiled kernel, not torch's, below

        def compiled_pool(t):
            return kernels.max_pool2(t, kernels.COMPILED)

        with torch.no_grad():
            print(line.format("pool1 forward: the compiled kernel (adopted)", bench(lambda: compiled_pool(x0))))
        print(line.format("pool1 forward+backward: the compiled kernel (adopted)", bench(fwd_bwd(compiled_pool))))

    # conv1, 64 x 1 x 28 x 28 -> 64 x 6 x 24 x 24: forward, and forward + weight and bias gradients.
    xc = to_layout(torch.rand(64, 1, 28, 28), CL)
    wc, bc = torch.randn(6, 1, 5, 5) * 0.2, torch.randn(6) * 0.1
    gc = torch.randn(64, 6, 24, 24).contiguous(memory_format=CL)

    def conv_fwd_bwd(conv):
        def run():
            w, b = wc.clone().requires_grad_(), bc.clone().requires_grad_()
            conv(xc, w, b).backward(gc)
        return run

    adopted = [("F.conv2d (oneDNN)", F.conv2d)]
    if kernels.compiled():
        assert kernels.convolves(xc, wc, bc, (1, 1), (0, 0), (1, 1), 1)  # the compiled kernel, not oneDNN
        adopted.append(("the compiled kernel (adopted)",
                        lambda x, w, b: kernels.conv2d(x, w, b, kernels=kernels.COMPILED)))
    for name, conv in adopted:
        with torch.no_grad():
            print(line.format(f"conv1 forward: {name}", bench(lambda: conv(xc, wc, bc))))
        print(line.format(f"conv1 forward+backward: {name}", bench(conv_fwd_bwd(conv))))

    # conv2's input gradient, 64 x 16 x 10 x 10 -> 64 x 6 x 12 x 12.
    xi = torch.randn(64, 6, 12, 12).contiguous(memory_format=CL)
    w = torch.randn(16, 6, 3, 3)
    go = torch.randn(64, 16, 10, 10).contiguous(memory_format=CL)
    flipped = w.flip(2, 3).transpose(0, 1).contiguous()
    cb = torch.ops.aten.convolution_backward
    print(line.format("conv2 input gradient: convolution_backward",
                      bench(lambda: cb(go, xi, w, [16], [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
                                       [True, False, False]))))
    print(line.format("conv2 input gradient: NCHW forward conv + conversions",
                      bench(lambda: F.conv2d(go.contiguous(), flipped, None, padding=2)
                            .contiguous(memory_format=CL))))


if __name__ == "__main__":
    main()
