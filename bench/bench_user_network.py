"""Benchmark: a user's own network (model.factory) in sweep's trial loop against a bare loop, side by side.

The network is a small CNN with BatchNorm, Dropout and a residual block, written as a factory file
(user_cnn.py) into a temporary folder, as a user would write it beside a spec:

    conv 1->C 3x3, BN, act, [conv C->C 3x3, BN, act, conv C->C 3x3, BN, + skip, act], max-pool 2, dropout, linear

(a) sweep: run_trial on the TrialConfig that expand_grid makes of a spec with `model: {factory:
    user_cnn.py:build}` (models.network.Network: forward hooks on every activation module; statistics every
    stats_every batches and on each epoch's last full batch; a test evaluation and a checkpoint each epoch),
    tensorboard=False, its reports collected into a list.
(b) bare: the factory's own module (no Network, no hooks, no statistics, no checkpoint) on the same batches:
    torch.randperm with a torch.Generator seeded by the seed, one permutation per epoch; F.cross_entropy;
    zero_grad(set_to_none=True); torch.optim.Adam(fused=True) on the CPU; and the same per-epoch test
    evaluation (model.eval(), no_grad, 1000-example chunks), as sweep does.

Both are built the way sweep builds a trial (torch.manual_seed(seed), then the factory; init "default" keeps
torch's own initialisation), so their final test accuracies should agree; the script says how far they are
apart. Time: wall clock per epoch (time.perf_counter), training plus that epoch's test evaluation, excluding
the process start and the model build (sweep's epoch: from one report to the next, so its checkpoint and
report are in it). After an untimed warm-up run of each (--no-warmup: none), the loops take turns (sweep
first in even repeats, bare first in odd ones); the table gives medians over --repeats of each run's mean
seconds per epoch. Target (the issue): bare/sweep speed ratio >= 0.95x, i.e. sweep's hooks and
statistics cost at most 5%.

    python bench/bench_user_network.py                       # 4,096 images, 2 epochs, 5 repeats, 1 thread
    python bench/bench_user_network.py --images 8192 --epochs 3 --repeats 5 --threads 2
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sweep.data.datasets import Arrays, synthetic  # noqa: E402
from sweep.models.registry import ACTIVATIONS  # noqa: E402
from sweep.run.trial import run_trial  # noqa: E402
from sweep.spec.code import load_callable  # noqa: E402
from sweep.spec.grid import expand_grid  # noqa: E402
from sweep.spec.spec import parse_spec  # noqa: E402

FACTORY_FILE = "user_cnn.py"  # its module name (user_cnn) must not be one that sys.path already has
EVAL_CHUNK = 1000  # as sweep.models.fused.EVAL_BATCH

FACTORY_SOURCE = '''"""A user's network for sweep: a small CNN with BatchNorm, Dropout and a residual block."""
import torch
from torch import nn


class Residual(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a skip connection."""

    def __init__(self, channels, activation):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act1 = activation()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.act2 = activation()

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + x)


class SmallResCNN(nn.Module):
    def __init__(self, activation, channels, dropout, num_classes, input_shape):
        super().__init__()
        c, h, w = input_shape
        self.conv = nn.Conv2d(c, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.act = activation()
        self.block = Residual(channels, activation)
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(channels * (h // 2) * (w // 2), num_classes)

    def forward(self, x):
        x = self.act(self.bn(self.conv(x)))
        x = self.pool(self.block(x))
        return self.fc(self.drop(torch.flatten(x, 1)))


def build(activation, channels=16, dropout=0.25, num_classes=10, input_shape=(1, 28, 28)):
    return SmallResCNN(activation, channels, dropout, num_classes, tuple(input_shape))
'''


def machine_line(threads: int) -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"machine: {cpu} ({os.cpu_count()} logical CPUs), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, torch {torch.__version__}, torch threads {threads}")


def make_spec(folder: Path, output: Path, args: argparse.Namespace):
    """The spec as a user writes it (a dict for parse_spec), with its factory file in `folder`."""
    raw = {
        "name": "bench-user-network",
        "dataset": {"name": "synthetic"},
        "model": {"factory": f"{FACTORY_FILE}:build", "args": {"channels": args.channels, "dropout": args.dropout}},
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "stats_every": args.stats_every,
        "grid": {"activation": [args.activation], "init": ["default"],
                 "optimizer": [{"name": "adam", "lr": args.lr}], "seed": [args.seed]},
        "output": str(output),
    }
    return parse_spec(raw, folder)


def sweep_loop(folder: Path, output: Path, data: Arrays,
               args: argparse.Namespace) -> tuple[list[float], list[float], dict]:
    """sweep's trial loop: wall and CPU seconds of each epoch (report to report) and the last report."""
    spec = make_spec(folder, output, args)
    (cfg,) = expand_grid(spec)
    marks: list[float] = []
    reports: list[dict] = []

    def report(r: dict) -> None:
        marks.append((time.perf_counter(), time.process_time()))
        reports.append(r)

    run_trial(cfg, data, report, device="cpu", tensorboard=False, threads=args.threads)
    if len(reports) != args.epochs + 1 or reports[-1]["status"] not in ("completed", "running"):
        raise RuntimeError(f"sweep's trial ended early: {reports[-1]}")
    pairs = list(zip(marks, marks[1:]))
    return [b[0] - a[0] for a, b in pairs], [b[1] - a[1] for a, b in pairs], reports[-1]


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    loss = torch.zeros(())
    correct = torch.zeros(())
    for start in range(0, len(x), EVAL_CHUNK):
        xb, yb = x[start:start + EVAL_CHUNK], y[start:start + EVAL_CHUNK]
        logits = model(xb)
        loss += F.cross_entropy(logits, yb, reduction="none").sum()  # summed as sweep sums it
        correct += (logits.argmax(1) == yb).sum()
    model.train()
    return float(loss / len(x)), float(correct / len(x))


def bare_loop(build, data: Arrays, args: argparse.Namespace) -> tuple[list[float], list[float], dict]:
    """The factory's module trained plainly on sweep's batches: wall and CPU seconds of each epoch and the final
    figures."""
    torch.manual_seed(args.seed)
    model = build(ACTIVATIONS[args.activation].make, channels=args.channels, dropout=args.dropout,
                  num_classes=data.num_classes, input_shape=tuple(data.input_shape))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, fused=True)
    order = torch.Generator().manual_seed(args.seed)
    train_x, train_y = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y)
    test_x, test_y = torch.from_numpy(data.test_x), torch.from_numpy(data.test_y)
    n, size = len(train_x), args.batch_size
    model.train()
    seconds, cpu = [], []
    for _ in range(args.epochs):
        began, began_cpu = time.perf_counter(), time.process_time()
        perm = torch.randperm(n, generator=order)
        epoch_loss = torch.zeros(())
        for start in range(0, n, size):
            idx = perm[start:start + size]
            xb, yb = train_x.index_select(0, idx), train_y.index_select(0, idx)
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            epoch_loss += loss.detach() * len(idx)
        test_loss, test_acc = evaluate(model, test_x, test_y)
        seconds.append(time.perf_counter() - began)
        cpu.append(time.process_time() - began_cpu)
    return seconds, cpu, {"train_loss": float(epoch_loss / n), "test_loss": test_loss, "test_acc": test_acc}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4096, help="training images (synthetic data)")
    parser.add_argument("--test-images", type=int, default=1000, help="test images, evaluated every epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--stats-every", type=int, default=100, help="sweep's statistics interval (its default)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each loop, taking turns")
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True,
                        help="first a short untimed run of each loop (512 images, 1 epoch), so that neither "
                             "timed run pays the process's first-use costs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a 1-CPU trial gets 1)")
    parser.add_argument("--activation", default="relu", choices=sorted(ACTIVATIONS))
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--dropout", type=float, default=0.25)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = synthetic(args.images, args.test_images)
    load_before = f"{os.getloadavg()[0]:.2f}"
    per_epoch = {"sweep": [], "bare": []}  # each repeat's mean wall seconds per epoch
    cpu_epoch = {"sweep": [], "bare": []}  # and its mean CPU seconds (the process's) per epoch
    finals: dict[str, list[dict]] = {"sweep": [], "bare": []}
    with tempfile.TemporaryDirectory(prefix="bench-user-network-") as tmp:
        folder = Path(tmp)
        (folder / FACTORY_FILE).write_text(FACTORY_SOURCE)
        # For an in-process run_trial the factory's module must be imported under its name (as the driver does).
        spec = make_spec(folder, folder / "unused", args)
        build = load_callable(spec.model.ref(), from_path=True)
        if args.warmup:
            small = argparse.Namespace(**{**vars(args), "images": 512, "epochs": 1})
            sweep_loop(folder, folder / "warmup", synthetic(512, 200), small)
            bare_loop(build, synthetic(512, 200), small)
        for r in range(args.repeats):
            order = ("sweep", "bare") if r % 2 == 0 else ("bare", "sweep")
            for loop in order:
                if loop == "sweep":
                    seconds, cpu, final = sweep_loop(folder, folder / f"runs{r}", data, args)
                else:
                    seconds, cpu, final = bare_loop(build, data, args)
                per_epoch[loop].append(statistics.fmean(seconds))
                cpu_epoch[loop].append(statistics.fmean(cpu))
                finals[loop].append(final)
                print(f"repeat {r + 1}/{args.repeats} {loop:5s}: " + ", ".join(f"{s:.2f}" for s in seconds)
                      + " s per epoch (CPU " + ", ".join(f"{s:.2f}" for s in cpu)
                      + f"); final test acc {final['test_acc']:.4f}", file=sys.stderr, flush=True)

    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(machine_line(args.threads))
    print(f"network: user_cnn.py:build (conv 1->{args.channels}, BN, {args.activation}, residual block of two 3x3 "
          f"convs with BN, max-pool, dropout {args.dropout}, linear), Adam lr {args.lr}, batch {args.batch_size}, "
          f"stats_every {args.stats_every}, {args.images} synthetic training images, {args.test_images} test "
          f"images, {args.epochs} epochs, seed {args.seed}, {args.repeats} repeats (medians)")
    print()
    sec = {loop: statistics.median(v) for loop, v in per_epoch.items()}
    cpu_sec = {loop: statistics.median(v) for loop, v in cpu_epoch.items()}
    # The loops' runs of one repeat ran back to back, under the same load: each repeat's ratio, then the median.
    paired = statistics.median(b / s for b, s in zip(per_epoch["bare"], per_epoch["sweep"]))
    paired_cpu = statistics.median(b / s for b, s in zip(cpu_epoch["bare"], cpu_epoch["sweep"]))
    print("| loop | images/s (wall) | s per epoch (wall: train + test evaluation) | CPU s per epoch | "
          "speed vs bare (wall) | speed vs bare (CPU) | each run's wall s per epoch, in run order |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for loop, label in (("bare", "bare loop"), ("sweep", "sweep run_trial")):
        runs = ", ".join(f"{s:.2f}" for s in per_epoch[loop])
        wall_ratio, cpu_ratio = (1.0, 1.0) if loop == "bare" else (paired, paired_cpu)
        print(f"| {label} | {args.images / sec[loop]:,.0f} | {sec[loop]:.3f} | {cpu_sec[loop]:.3f} | "
              f"{wall_ratio:.3f}x | {cpu_ratio:.3f}x | {runs} |")
    print()
    print("speed vs bare = bare seconds / sweep seconds per epoch of the same repeat (the two ran back to back), "
          "median over the repeats")
    for what, ratio in (("wall clock", paired), ("CPU time", paired_cpu)):
        print(f"speed ratio, {what}: {ratio:.3f}x ({'meets' if ratio >= 0.95 else 'misses'} the target >= 0.95x; "
              f"sweep's overhead {(1 / ratio - 1) * 100:+.1f}%)")
    print(f"(ratio of the medians: wall {sec['bare'] / sec['sweep']:.3f}x, CPU "
          f"{cpu_sec['bare'] / cpu_sec['sweep']:.3f}x; load average before/after: {load_before} / "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)")
    s, b = finals["sweep"][-1], finals["bare"][-1]
    same_runs = all(f["test_acc"] == finals[loop][0]["test_acc"] for loop in finals for f in finals[loop])
    diff_acc, diff_loss = s["test_acc"] - b["test_acc"], s["test_loss"] - b["test_loss"]
    agree = "agree exactly" if diff_acc == 0 and diff_loss == 0 else (
        "agree in accuracy" if diff_acc == 0 else "differ")
    print(f"final test accuracy: sweep {s['test_acc']:.4f}, bare {b['test_acc']:.4f} ({agree}: accuracy "
          f"{diff_acc:+.4f}, test loss {s['test_loss']:.6f} vs {b['test_loss']:.6f}, {diff_loss:+.2e}; train loss "
          f"{s['train_loss']:.6f} vs {b['train_loss']:.6f}); every repeat of each loop the same: {same_runs}")


if __name__ == "__main__":
    main()
