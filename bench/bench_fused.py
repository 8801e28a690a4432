"""Benchmark: K configurations trained unfused (one after another) vs fused (models.fused), side by side.

The configurations are the default study's (sweeps.yaml: 4 activations x 2
inits x SGD/Adam; beyond 16 the grid repeats with the next seeds), each built
as run_trial builds it. Both loops are run_trial's inner loop: LeNet, batch
64, data resident as tensors, batches by index from each member's own seeded
generator, statistics every 100 batches; evaluation excluded. Figures are
training images per second summed over the K configurations, per wall-clock
second and (CPU) per second of CPU time the process used.

On the CPU each K runs with 1 and 2 torch threads; with CUDA also K = 32, 64,
128 fused, with peak GPU memory. A run on 2 CPU cores takes about 2 minutes.

    python bench/bench_fused.py
    python bench/bench_fused.py --ks 1 4 16 --threads 1 2 --batches 100 --repeats 2
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sweep.models.fused import FusedNet  # noqa: E402
from sweep.models.kernels import choose  # noqa: E402
from sweep.models.nets import build_model, weight_layers  # noqa: E402
from sweep.models.registry import ACTIVATIONS, init_weights, make_optimizer  # noqa: E402
from sweep.models.stats import snapshot_stats  # noqa: E402
from sweep.data.datasets import synthetic  # noqa: E402
from sweep.spec.grid import TrialConfig, expand_grid  # noqa: E402
from sweep.spec.spec import load_spec  # noqa: E402


def study_configs(k: int) -> list[TrialConfig]:
    """k configurations of the default study, members with equal activations next to each other."""
    grid = expand_grid(load_spec(ROOT / "sweeps.yaml"))
    configs = [replace(cfg, seed=cfg.seed + i // len(grid)) for i, cfg in enumerate(grid * (k // len(grid) + 1))]
    return sorted(configs[:k], key=lambda c: c.activation)


def build(cfg: TrialConfig, device: torch.device) -> torch.nn.Module:
    """A trial's network as run_trial builds it."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.activation, cfg.hidden, kernels=choose(on_cpu=device.type == "cpu"))
    init_weights(model, cfg.init, cfg.gain, cfg.activation)
    return model.to(device)


def batch_rows(configs, n: int, batch: int, count: int, device) -> torch.Tensor:
    """(count, K, batch) indices: each configuration's batches in its own seeded order."""
    rows = []
    for cfg in configs:
        order = torch.Generator().manual_seed(cfg.seed)
        row = torch.cat([torch.randperm(n, generator=order) for _ in range(count * batch // n + 1)])
        rows.append(row[:count * batch].view(count, batch))
    return torch.stack(rows, 1).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Clock:
    """Wall and process CPU seconds of the timed batches. On a shared machine the CPU seconds of a
    1-thread run show the work done, whatever the other processes take of the wall time."""

    def __init__(self, device: torch.device):
        self.device, self.wall, self.cpu = device, 0.0, 0.0

    def start(self) -> None:
        sync(self.device)
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        sync(self.device)
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu


def unfused(configs, x, y, idx, warmup: int, stats_every: int) -> Clock:
    """Time of the timed batches of every configuration, trained one after another."""
    clock = Clock(x.device)
    for k, cfg in enumerate(configs):
        model = build(cfg, x.device)
        optimizer = make_optimizer(cfg.optimizer, model.parameters(), cfg.hyper())
        weights, bounds = weight_layers(model), ACTIVATIONS[cfg.activation].bounds
        window = torch.zeros((), device=x.device)
        for batch, rows in enumerate(idx[:, k], 1 - warmup):
            if batch == 1:
                clock.start()
            logits, acts = model(x[rows])
            loss = F.cross_entropy(logits, y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            window += loss.detach()
            if batch % stats_every == 0:
                snapshot_stats(acts, weights, bounds)
                window.item()
                window.zero_()
            optimizer.step()
        clock.stop()
    return clock


def fused(configs, x, y, idx, warmup: int, stats_every: int) -> Clock:
    """Time of the timed batches of all configurations trained as one bundle."""
    clock = Clock(x.device)
    net = FusedNet([build(cfg, x.device) for cfg in configs],
                   [(cfg.optimizer, cfg.hyper()) for cfg in configs], x.device)
    bounds = [ACTIVATIONS[cfg.activation].bounds for cfg in configs]
    window = torch.zeros(len(configs), device=x.device)
    for batch, rows in enumerate(idx, 1 - warmup):
        if batch == 1:
            clock.start()
        logits, acts = net(x[rows])
        losses = net.member_losses(logits, y[rows])
        net.zero_grad()
        losses.sum().backward()
        window += losses.detach()
        if batch % stats_every == 0:
            net.snapshots(acts, bounds)
            window.tolist()
            window.zero_()
        net.step()
    clock.stop()
    return clock


def measure(device: torch.device, ks, args, data, with_unfused) -> None:
    x = torch.from_numpy(data.train_x).to(device)
    y = torch.from_numpy(data.train_y).to(device)
    for k in ks:
        configs = study_configs(k)
        idx = batch_rows(configs, len(x), args.batch_size, args.warmup + args.batches, device)
        images = k * args.batches * args.batch_size
        loops = {"unfused": unfused, "fused": fused} if with_unfused(k) else {"fused": fused}
        wall = dict.fromkeys(loops, float("inf"))
        cpu = dict.fromkeys(loops, float("inf"))
        peak = {}
        for _ in range(args.repeats):  # alternate, so that drift on a shared machine hits both
            for name, loop in loops.items():
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                clock = loop(configs, x, y, idx, args.warmup, args.stats_every)
                wall[name], cpu[name] = min(wall[name], clock.wall), min(cpu[name], clock.cpu)
                if device.type == "cuda":
                    peak[name] = torch.cuda.max_memory_allocated() / 2**20
        line = f"{device.type:>4} threads={torch.get_num_threads()} K={k:>3}"
        for name in loops:
            line += f"  {name} {images / wall[name]:>7.0f} img/s"
            if device.type == "cpu":
                line += f" ({images / cpu[name]:>5.0f}/cpu-s)"
        if len(loops) == 2:
            line += f"  fused/unfused {wall['unfused'] / wall['fused']:.2f}"
            if device.type == "cpu":
                line += f" (cpu-s {cpu['unfused'] / cpu['fused']:.2f})"
        if peak:
            line += "  peak MiB " + " ".join(f"{name} {mib:.0f}" for name, mib in peak.items())
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16], help="bundle sizes (default 1 4 16)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="CPU torch threads (default 1 2)")
    parser.add_argument("--cuda-ks", type=int, nargs="+", default=[1, 4, 16, 32, 64, 128],
                        help="bundle sizes on CUDA (default 1 4 16 32 64 128)")
    parser.add_argument("--cuda-unfused-max", type=int, default=16,
                        help="largest K also run unfused on CUDA (unfused throughput does not depend on K)")
    parser.add_argument("--batches", type=int, default=100, help="timed batches per configuration (default 100)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches first (default 5)")
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs (default 1)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--stats-every", type=int, default=100)
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU measurements")
    args = parser.parse_args()
    data = synthetic(train_size=8192, test_size=1)
    print(f"torch {torch.__version__}; LeNet, batch {args.batch_size}, statistics every {args.stats_every} "
          f"batches, {args.batches} timed batches per configuration")
    if not args.no_cpu:
        for threads in args.threads:
            torch.set_num_threads(threads)
            measure(torch.device("cpu"), args.ks, args, data, lambda k: True)
    if torch.cuda.is_available():
        print(f"cuda: {torch.cuda.get_device_name()}")
        measure(torch.device("cuda"), args.cuda_ks, args, data, lambda k: k <= args.cuda_unfused_max)


if __name__ == "__main__":
    main()
