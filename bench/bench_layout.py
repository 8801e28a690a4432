"""The measurement behind nets.LeNet.layouts and fused.FUSED_ON_CPU: memory layouts and optimizer steps on this
machine, side by side in one process.

For each configuration of the default grid (sweeps.yaml: activation x optimizer; Xavier uniform init), a
one-member FusedNet (what a CPU trial trains) and a bundle of the grid's four activations run FusedNet's
training step and optimizer step on random batches of 64, one thread, in NCHW and in channels-last, taking
turns (--rounds rounds of --steps steps each), so that drift on a shared machine hits both. Printed: the
median images per CPU second of each layout and their ratio (the wall-clock figure next to it).

    python bench/bench_layout.py                       # LeNet, the default grid, both layouts
    python bench/bench_layout.py --model mlp           # a net without convolutions: the layout must not matter
    python bench/bench_layout.py --optimizers          # torch.optim's step forms on LeNet's parameters
    python bench/bench_layout.py --versus 4188c28      # this tree's FusedNet against that commit's, each
                                                       # in its own process, taking turns (one member and
                                                       # bundles of the grid's four activations)
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Set by --versus for the process that runs another commit's FusedNet: its code first on the path.
if os.environ.get("BENCH_LAYOUT_CODE"):
    sys.path.insert(0, os.environ["BENCH_LAYOUT_CODE"])

from sweep.models.fused import FusedNet  # noqa: E402
from sweep.models.nets import build_model  # noqa: E402
from sweep.models.registry import init_weights  # noqa: E402

ACTIVATIONS = ["sigmoid", "tanh", "softsign", "relu"]
OPTIMIZERS = [("sgd", {"lr": 0.001}), ("adam", {"lr": 0.001})]
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def cpu_kernels() -> dict:
    """build_model's kernels as a CPU trial chooses them (the compiled ones where built); {} for a baseline
    commit's build_model, which takes no choice."""
    if "kernels" not in inspect.signature(build_model).parameters:
        return {}
    from sweep.models.kernels import choose

    return {"kernels": choose(on_cpu=True)}


def make_net(model: str, activations: list[str], optimizer, layout) -> FusedNet:
    modules = []
    for seed, act in enumerate(activations):
        torch.manual_seed(seed)
        module = build_model(model, act, (256, 128) if model == "mlp" else (), **cpu_kernels())
        init_weights(module, "xavier_uniform", 1.0, act)
        modules.append(module)
    if layout is None:  # the code's own choice (a baseline commit's FusedNet takes no layout)
        return FusedNet(modules, [optimizer] * len(activations), "cpu")
    return FusedNet(modules, [optimizer] * len(activations), "cpu", layout=layout)


def timer(net: FusedNet, steps: int, batch: int):
    """A function running `steps` training steps; returns (images per wall second, per CPU second)."""
    k = len(net)
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(8, k, batch, 1, 28, 28, generator=g)
    ys = torch.randint(0, 10, (8, k, batch), generator=g)

    record = {"record": False} if "record" in inspect.signature(net.train_step).parameters else {}

    def run() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(steps):
            net.train_step(xs[i % 8], ys[i % 8], **record)  # a step without statistics, as most are
            net.step()
        images = steps * batch * k
        return images / (time.perf_counter() - wall), images / (time.process_time() - cpu)

    run()  # warm-up: the optimizers' state, oneDNN's primitives
    return run


def layouts(args) -> None:
    print(f"{'configuration':<28}{'NCHW img/CPU-s':>16}{'ch-last img/CPU-s':>19}{'ratio':>7}{'wall ratio':>12}")
    for opt in OPTIMIZERS:
        rows = [[act] for act in ACTIVATIONS] + [ACTIVATIONS]
        for acts in rows:
            runs = {name: timer(make_net(args.model, acts, opt, fmt), args.steps, args.batch)
                    for name, fmt in LAYOUTS.items()}
            got = {name: [] for name in runs}
            for _ in range(args.rounds):
                for name, run in runs.items():
                    got[name].append(run())
            wall = {name: statistics.median(w for w, _ in r) for name, r in got.items()}
            cpu = {name: statistics.median(c for _, c in r) for name, r in got.items()}
            label = f"{'+'.join(acts) if len(acts) == 1 else 'bundle of 4'} {opt[0]}"
            print(f"{label:<28}{cpu['nchw']:>16,.0f}{cpu['channels_last']:>19,.0f}"
                  f"{cpu['channels_last'] / cpu['nchw']:>7.2f}{wall['channels_last'] / wall['nchw']:>12.2f}",
                  flush=True)


def optimizers(args) -> None:
    """Microseconds per CPU second of one step of each torch.optim form over LeNet's ten parameters."""
    print(f"{'optimizer':<10}{'for-loop us':>12}{'foreach us':>12}{'fused us':>10}")
    for name, cls in (("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)):
        figures = []
        for form in ({"foreach": False}, {"foreach": True}, {"fused": True}):
            params = list(build_model("lenet", "relu").parameters())
            for p in params:
                p.grad = torch.randn_like(p)
            step = cls(params, lr=1e-3, **form).step
            for _ in range(10):
                step()
            best = float("inf")
            for _ in range(args.rounds):
                cpu = time.process_time()
                for _ in range(200):
                    step()
                best = min(best, (time.process_time() - cpu) / 200 * 1e6)
            figures.append(best)
        print(f"{name:<10}{figures[0]:>12.0f}{figures[1]:>12.0f}{figures[2]:>10.0f}")


def versus(args) -> None:
    """This tree's FusedNet (its own layout and step form) against a commit's, one process per round."""
    sys.path.insert(0, str(ROOT / "bench"))
    from baseline import baseline_code

    print(f"{'configuration':<28}{'new img/CPU-s':>15}{args.versus + ' img/CPU-s':>20}{'ratio':>7}{'wall ratio':>12}")
    with contextlib.ExitStack() as stack:
        codes = {"new": ROOT, "base": stack.enter_context(baseline_code(args.versus))}
        for opt in OPTIMIZERS:
            for acts in [[act] for act in ACTIVATIONS] + [ACTIVATIONS, ACTIVATIONS * 4]:
                got = {name: [] for name in codes}
                for _ in range(args.rounds):
                    for name, code in codes.items():
                        out = subprocess.run(
                            [sys.executable, __file__, "--child", json.dumps([acts, opt]), "--steps", str(args.steps),
                             "--batch", str(args.batch), "--model", args.model],
                            env={**os.environ, "BENCH_LAYOUT_CODE": str(code)}, check=True, capture_output=True,
                            text=True).stdout
                        got[name].append(json.loads(out.splitlines()[-1]))
                wall = {name: max(w for w, _ in r) for name, r in got.items()}
                cpu = {name: max(c for _, c in r) for name, r in got.items()}
                label = f"{acts[0] if len(acts) == 1 else f'bundle of {len(acts)}'} {opt[0]}"
                print(f"{label:<28}{cpu['new']:>15,.0f}{cpu['base']:>20,.0f}{cpu['new'] / cpu['base']:>7.2f}"
                      f"{wall['new'] / wall['base']:>12.2f}", flush=True)


def child(args) -> None:
    acts, opt = json.loads(args.child)
    run = timer(make_net(args.model, acts, tuple(opt), None), args.steps, args.batch)
    print(json.dumps(max(run() for _ in range(2))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="lenet", choices=["lenet", "mlp"])
    parser.add_argument("--steps", type=int, default=60, help="steps per round (default 60)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per layout, taking turns (default 5)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--optimizers", action="store_true", help="time torch.optim's step forms instead")
    parser.add_argument("--versus", metavar="COMMIT", help="this tree's FusedNet against that commit's")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.child:
        return child(args)
    if args.versus:
        return versus(args)
    print(f"torch {torch.__version__}, one thread, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    optimizers(args) if args.optimizers else layouts(args)


if __name__ == "__main__":
    main()
