"""Benchmark: training throughput and orchestration overhead, side by side in one run.

(a) the blog's loop: torchvision FashionMNIST + ToTensor + DataLoader (batch 64,
    shuffled), loss.item() every batch, statistics every 100 batches;
(b) this project's trial loop (sweep.run.trial.run_trial): tensors in memory,
    batches by index, statistics every 100 batches, TensorBoard on;
(c) a bare loop over the same resident data: the trial's model, optimizer,
    batch order and statistics (every 100 batches and on the epoch's last full
    batch, as the trial takes them), a plain module, no TensorBoard, no reports.
All train the same LeNet (ReLU, Xavier uniform, Adam lr 0.001, seed 0) on the
same images with one torch thread (what a 1-CPU trial gets), and compute the
same per-layer statistics, so the differences are the loops themselves: (b)/(a)
is what this project gains over the blog, (b)/(c) what the trial loop costs
over the least a loop can do (target: >= 0.95). The loops take turns, best of
--repeats each.

With --study it also runs the default study (sweeps.yaml) into a temporary
folder and compares its wall time with the sum of its trials' training time;
with --baseline as well, the baseline commit's study runs after it and the
final accuracies of the two are compared trial by trial.

With --grid, (b) runs once per activation and optimizer of the default grid
(Xavier uniform init), this tree and --baseline taking turns, and the table
gives per configuration images/s (wall clock and per CPU second of the trial's
process), their ratio to the baseline, and the GFLOP/s achieved per CPU second
against one core's estimated fp32 peak (peak_gflops says how it is estimated).

    python bench/bench_train.py --images 20000 --repeats 3
    python bench/bench_train.py --loops bare trial --repeats 5   # the trial loop's price alone
    python bench/bench_train.py --loops bare trial --baseline f68b527 --repeats 5   # and a commit's trial loop
    python bench/bench_train.py --grid --baseline 4188c28 --repeats 3   # every default-grid configuration
    python bench/bench_train.py --study --baseline 4188c28   # the default study end to end, both commits
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Set by --baseline for the process that runs another commit's trial loop: its db/, sweep/ and models/ first.
CODE = os.environ.get("BENCH_TRAIN_CODE")
if CODE:
    sys.path.insert(0, CODE)

from sweep.models.nets import LeNet, build_model, weight_layers  # noqa: E402
from sweep.models.registry import ACTIVATIONS, init_weights, make_optimizer  # noqa: E402
from sweep.models.stats import snapshot_stats  # noqa: E402
from sweep.data.datasets import Arrays, load_dataset, prepare_fashion_mnist  # noqa: E402
from sweep.spec.grid import TrialConfig, expand_grid  # noqa: E402
from sweep.spec.spec import load_spec  # noqa: E402
from sweep.run.trial import closing_batch, run_trial  # noqa: E402


def blog_loop(data_dir: Path, images: int, device: str = "cpu") -> float:
    """Images/s of the blog-style loop over `images` training images (each batch moved to `device`)."""
    import torchvision
    from torch.utils.data import DataLoader, Subset

    prepare_fashion_mnist(data_dir)
    dataset = torchvision.datasets.FashionMNIST(str(data_dir), train=True, download=False,
                                                transform=torchvision.transforms.ToTensor())
    loader = DataLoader(Subset(dataset, range(images)), batch_size=64, shuffle=True)
    torch.manual_seed(0)
    model = LeNet("relu")
    init_weights(model, "xavier_uniform", 1.0, "relu")
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    weights = weight_layers(model)
    start = time.perf_counter()
    seen = 0
    for batch, (x, y) in enumerate(loader, 1):
        x, y = x.to(device), y.to(device)
        logits, acts = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        loss.item()  # the blog logs the loss every batch
        if batch % 100 == 0:
            snapshot_stats(acts, weights)
        optimizer.step()
        seen += len(x)
    return seen / (time.perf_counter() - start)


def bench_config(images: int, workdir: Path, activation: str = "relu", optimizer: str = "adam") -> TrialConfig:
    """The benchmarked configuration: the default study's ReLU + Xavier uniform + Adam (or the given activation
    and optimizer), one epoch."""
    spec = load_spec(ROOT / "sweeps.yaml")
    cfg = next(t for t in expand_grid(spec) if t.activation == activation and t.init == "xavier_uniform"
               and t.optimizer == optimizer)
    return replace(cfg, epochs=1, train_limit=images, logdir=str(workdir / "trial"))


def sweep_loop(data: Arrays, images: int, workdir: Path, device: str = "cpu") -> float:
    """Images/s of run_trial's training epoch (evaluation excluded) over `images` images."""
    return sweep_loop_clocks(data, images, workdir, device)[0]


def sweep_loop_clocks(data: Arrays, images: int, workdir: Path, device: str = "cpu",
                      activation: str = "relu", optimizer: str = "adam") -> tuple[float, float]:
    """Images per second of run_trial's training epoch, per wall-clock second and per second of the
    process's CPU time (epoch_clocks)."""
    return epoch_clocks(bench_config(images, workdir, activation, optimizer), data, images, device=device)


def epoch_clocks(cfg, data: Arrays, images: int, device: str = "cpu", tensorboard: bool = True
                 ) -> tuple[float, float]:
    """Images per wall-clock second and per CPU second of run_trial's one training epoch of `cfg` over
    `images` images (evaluation excluded). The CPU time is read at the epoch's own clock readings
    (sweep.run.trial's first two time.perf_counter() calls after the report before training: the epoch's start
    and end)."""
    import sweep.run.trial as trial

    reports, readings = [], []

    class Clock:
        def __getattr__(self, name):
            return getattr(time, name)

        def perf_counter(self) -> float:
            if reports and reports[-1]["epoch"] == 0:
                readings.append(time.process_time())
            return time.perf_counter()

    trial.time = Clock()
    try:
        run_trial(cfg, data, reports.append, device=device, tensorboard=tensorboard)
    finally:
        trial.time = time
    return images / reports[-1]["epoch_seconds"], images / (readings[1] - readings[0])


def bare_loop(data: Arrays, images: int, workdir: Path, device: str = "cpu") -> tuple[float, float]:
    """Images per wall-clock second and per CPU second of the least loop that trains what (b) trains: the trial's configuration built as the trial
    builds it (seed, network, initialisation, optimizer, batch order), batches by index from resident
    tensors, the losses summed on the device, statistics every stats_every batches and on the epoch's last
    full batch (with the mean loss of the window read then) and the epoch's mean loss read at its end."""
    cfg = bench_config(images, workdir)
    device = torch.device(device)
    x, y = (torch.from_numpy(a).to(device) for a in (data.train_x, data.train_y))
    # As the trial trains it: its kernels, its layout and its optimizer's step form (this tree's; bare runs
    # only here).
    from sweep.models.fused import step_options
    from sweep.models.kernels import choose
    from sweep.models.nets import memory_format, to_layout

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.activation, cfg.hidden, kernels=choose(on_cpu=device.type == "cpu"))
    init_weights(model, cfg.init, cfg.gain, cfg.activation)
    model.to(device)

    layout = memory_format(model, device)
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), {**cfg.hyper(), **step_options(cfg.optimizer, device)})
    order = torch.Generator().manual_seed(cfg.seed)
    weights, bounds = weight_layers(model), ACTIVATIONS[cfg.activation].bounds
    n, size = len(x), cfg.batch_size
    closing = closing_batch(n, size)
    start, cpu = time.perf_counter(), time.process_time()
    perm = torch.randperm(n, generator=order).to(device)
    epoch_loss = torch.zeros((), device=device)
    window_loss = torch.zeros((), device=device)
    window = 0
    for batch, first in enumerate(range(0, n, size), 1):
        idx = perm[first:first + size]
        snapshot = batch % cfg.stats_every == 0 or batch == closing
        logits, acts = model(to_layout(x[idx], layout), record=snapshot)
        loss = F.cross_entropy(logits, y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        epoch_loss += loss.detach() * len(idx)
        window_loss += loss.detach()
        window += 1
        if snapshot:
            (window_loss / window).item()
            window_loss.zero_()
            window = 0
            snapshot_stats(acts, weights, bounds)
        optimizer.step()
    (epoch_loss / n).item()
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu)


def study(out: Path, spec_file: str = "sweeps.yaml", resources: dict | None = None, code: Path = ROOT,
          overrides: dict | None = None) -> dict:
    """Run a study (default: the default study) into `out`; wall time vs the sum of the trials' own run time.

    `resources` replaces the spec's resources (e.g. {"gpu": 0.25, "fuse": "off"}); `overrides` replaces
    top-level keys (e.g. {"epochs": 1}); `code` is the tree whose sweep.cli runs it (a baseline commit's).
    """
    import yaml

    raw = yaml.safe_load((ROOT / spec_file).read_text())
    raw.update(overrides or {})
    raw["output"] = str(out)
    dataset = raw.get("dataset", {})
    dataset = {"name": dataset} if isinstance(dataset, str) else dataset
    raw["dataset"] = {**dataset, "data_dir": str(ROOT / "data")}  # the spec's paths resolve against `out`
    if resources is not None:
        raw["resources"] = {**raw.get("resources", {}), **resources}
    spec_path = out / spec_file
    out.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(yaml.safe_dump(raw))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sweep.cli", "run", str(spec_path), "--progress-interval", "60"],
                   cwd=code, check=True, env={**os.environ, "PYTHONPATH": str(code)})
    wall = time.perf_counter() - start
    with sqlite3.connect(out / "sweep.db") as conn:
        train, n, images = conn.execute("SELECT SUM(run_seconds), COUNT(*), SUM(images_seen) FROM trials").fetchone()
    slots = os.cpu_count()  # CPU trials run 1 CPU each, so this many at once
    ideal = train / slots
    return {"trials": n, "wall_s": round(wall, 1), "images_per_s": round(images / wall),
            "sum_trial_s": round(train, 1), "parallel_slots": slots,
            "ideal_wall_s": round(ideal, 1), "overhead_share": round(1 - ideal / wall, 3)}


def final_accuracies(out: Path) -> dict[str, float]:
    """Each trial's final test accuracy in a study's database, by trial name."""
    with sqlite3.connect(out / "sweep.db") as conn:
        return dict(conn.execute("SELECT name, final_test_acc FROM trials").fetchall())


def compare_studies(new: dict[str, float], old: dict[str, float]) -> dict:
    """Final accuracies of two runs of one study: the largest difference and whether the ranking is the same."""
    names = sorted(old)
    diffs = {name: new[name] - old[name] for name in names}
    rank = lambda accs: sorted(names, key=lambda n: (-accs[n], n))  # noqa: E731
    return {"max_abs_acc_diff": round(max(abs(d) for d in diffs.values()), 4),
            "acc_diffs": {name: round(d, 4) for name, d in diffs.items()},
            "final_test_acc": {name: [round(new[name], 4), round(old[name], 4)] for name in names},  # new, old
            "same_ranking": rank(new) == rank(old)}


def training_flops(model: str = "lenet") -> float:
    """FLOP of one training image: forward multiply-adds of the conv and linear layers (2 FLOP each), counted
    from the net's own shapes; backward twice that (input and weight gradients), less the first layer's input
    gradient, which nothing needs."""
    from torch import nn

    net = build_model(model, "relu", (256, 128) if model == "mlp" else ())
    macs: list[float] = []

    def count(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs.append(output[0].numel() * module.in_channels // module.groups * kh * kw)
        elif isinstance(module, nn.Linear):
            macs.append(module.in_features * module.out_features)

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        net(torch.zeros(1, 1, 28, 28))
    for hook in hooks:
        hook.remove()
    forward = 2 * sum(macs)
    return 3 * forward - 2 * macs[0]


def peak_gflops() -> tuple[float, str]:
    """One core's fp32 peak, estimated from /proc/cpuinfo: clock (cpu MHz) x FMA lanes x 2 FLOP x FMA pipes.

    Lanes: the vector width from the flags (avx512f: 512 bits, avx2 with fma: 256, else 128) over 32 bits;
    two FMA pipes per core (Intel since Haswell, AMD since Zen 2). AMD cores up to Zen 4 (family 0x19 and
    below) execute a 512-bit operation on their 256-bit pipes, so their width counts as 256 bits. The clock
    is the one the kernel reports (often the base clock: a boosting core peaks higher)."""
    info = Path("/proc/cpuinfo").read_text()
    field = lambda name: next((line.split(":", 1)[1].strip() for line in info.splitlines()  # noqa: E731
                               if line.startswith(name)), "")
    flags = set(field("flags").split())
    mhz = float(field("cpu MHz") or 0)
    bits = 512 if "avx512f" in flags else 256 if {"avx2", "fma"} <= flags else 128
    amd = field("vendor_id") == "AuthenticAMD"
    family = int(field("cpu family") or 0)
    if amd and family <= 0x19:
        bits = min(bits, 256)
    peak = mhz / 1000 * (bits // 32) * 2 * 2
    how = (f"{mhz:.0f} MHz x {bits // 32} fp32 lanes ({bits}-bit FMA{', AMD family 0x%x' % family if amd else ''}"
           f") x 2 FLOP x 2 FMA pipes")
    return peak, how


LOOPS = {"blog": "blog_loop_img_per_s", "trial": "sweep_loop_img_per_s", "bare": "bare_loop_img_per_s"}
GRID = [(act, opt) for opt in ("sgd", "adam") for act in ("sigmoid", "tanh", "softsign", "relu")]


def run_loop(name: str, args) -> tuple[float, float | None]:
    """Images per wall-clock second and per CPU second (None for the blog's loop, whose DataLoader's
    processes it would leave out) of one run of loop `name`, here (the child process of one_process)."""
    torch.set_num_threads(1)
    data_dir = Path(args.data_dir)
    if name == "blog":
        return blog_loop(data_dir, args.images), None
    data = load_dataset("fashion_mnist", data_dir, args.images, None)
    with tempfile.TemporaryDirectory() as tmp:
        if name == "trial":
            return sweep_loop_clocks(data, args.images, Path(tmp), activation=args.activation,
                                     optimizer=args.optimizer)
        return bare_loop(data, args.images, Path(tmp))


def one_process(name: str, args, code: Path = ROOT, config: tuple[str, str] = ("relu", "adam")
                ) -> tuple[float, float | None]:
    """run_loop in a fresh process, with the code (db/, sweep/, models/) in `code`: every run, of this
    tree or of a baseline commit, starts alike (imports, allocator, caches)."""
    out = subprocess.run([sys.executable, __file__, "--child", name, "--images", str(args.images),
                          "--data-dir", args.data_dir, "--activation", config[0], "--optimizer", config[1]],
                         env={**os.environ, "BENCH_TRAIN_CODE": str(code)},
                         check=True, capture_output=True, text=True).stdout
    return tuple(json.loads(out))


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def grid(args, baseline: Path | None) -> dict:
    """(b) for every default-grid configuration, this tree and the baseline taking turns; a table on stdout."""
    flops = training_flops()
    peak, how = peak_gflops()
    runs = {"new": ROOT, **({"baseline": baseline} if baseline else {})}
    rows = {}
    print(f"load average before: {load_average()}", file=sys.stderr)
    for config in GRID:
        got = {name: [] for name in runs}
        for i in range(args.repeats):
            for name, code in runs.items():
                got[name].append(one_process("trial", args, code, config))
        best = {name: (max(w for w, _ in r), max(c for _, c in r)) for name, r in got.items()}
        row = {"new_img_per_s": round(best["new"][0]), "new_img_per_cpu_s": round(best["new"][1]),
               "new_gflops_per_cpu_s": round(best["new"][1] * flops / 1e9, 2)}
        if baseline:
            row.update({"base_img_per_s": round(best["baseline"][0]), "base_img_per_cpu_s": round(best["baseline"][1]),
                        "base_gflops_per_cpu_s": round(best["baseline"][1] * flops / 1e9, 2),
                        "speedup_wall": round(best["new"][0] / best["baseline"][0], 2),
                        "speedup_cpu": round(best["new"][1] / best["baseline"][1], 2)})
        rows[f"{config[0]}+{config[1]}"] = row
        print(f"{config[0]}+{config[1]}: {row}", file=sys.stderr)
    print(f"load average after: {load_average()}", file=sys.stderr)
    header = f"{'configuration':<18}{'new img/s':>10}{'img/CPU-s':>10}{'GFLOP/s':>9}{'% peak':>7}"
    if baseline:
        header += f"{'base img/s':>11}{'img/CPU-s':>10}{'GFLOP/s':>9}{'x wall':>7}{'x CPU':>7}"
    print(header)
    for name, r in rows.items():
        line = (f"{name:<18}{r['new_img_per_s']:>10,}{r['new_img_per_cpu_s']:>10,}{r['new_gflops_per_cpu_s']:>9.2f}"
                f"{100 * r['new_gflops_per_cpu_s'] / peak:>7.1f}")
        if baseline:
            line += (f"{r['base_img_per_s']:>11,}{r['base_img_per_cpu_s']:>10,}{r['base_gflops_per_cpu_s']:>9.2f}"
                     f"{r['speedup_wall']:>7.2f}{r['speedup_cpu']:>7.2f}")
        print(line)
    print(f"LeNet training: {flops / 1e6:.3f} MFLOP per image; one core's fp32 peak {peak:.1f} GFLOP/s "
          f"({how})")
    return {"images": args.images, "repeats": args.repeats, "mflop_per_image": round(flops / 1e6, 3),
            "peak_gflops": round(peak, 1), "peak_how": how, "configurations": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20000, help="training images per loop (default 20000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each loop, taking turns (default 3)")
    parser.add_argument("--loops", nargs="+", choices=list(LOOPS),
                        help="which loops to run: (a) blog, (b) trial, (c) bare (default all three; none with "
                             "--grid or --study)")
    parser.add_argument("--baseline", metavar="COMMIT",
                        help="also run (b) with this commit's code, taking turns with the others")
    parser.add_argument("--grid", action="store_true",
                        help="(b) per activation and optimizer of the default grid, side by side with --baseline")
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--study", action="store_true", help="also time the default study (about 5 minutes; "
                        "with --baseline, that commit's study after it)")
    parser.add_argument("--study-epochs", type=int, help="the study with this many epochs instead of the spec's")
    parser.add_argument("--child", choices=list(LOOPS), help=argparse.SUPPRESS)  # one run, its rate on stdout
    parser.add_argument("--activation", default="relu", help=argparse.SUPPRESS)
    parser.add_argument("--optimizer", default="adam", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_loop(args.child, args)))
        return
    if args.loops is None:
        args.loops = [] if args.grid or args.study else list(LOOPS)
    figures: dict = {}
    with contextlib.ExitStack() as stack:
        baseline = None
        if args.baseline:
            from baseline import baseline_code  # bench/, this script's folder

            baseline = stack.enter_context(baseline_code(args.baseline))
        if args.grid:
            figures["grid"] = grid(args, baseline)
        if args.loops:
            figures.update(loops(args, baseline))
        if args.study:
            overrides = {"epochs": args.study_epochs} if args.study_epochs else None
            with tempfile.TemporaryDirectory() as tmp:
                print(f"load average before the studies: {load_average()}", file=sys.stderr)
                figures["default_study"] = study(Path(tmp) / "new", overrides=overrides)
                if baseline:
                    figures["default_study_baseline"] = study(Path(tmp) / "base", code=baseline, overrides=overrides)
                    figures["default_study_speedup"] = round(
                        figures["default_study_baseline"]["wall_s"] / figures["default_study"]["wall_s"], 2)
                    figures["accuracy"] = compare_studies(final_accuracies(Path(tmp) / "new"),
                                                          final_accuracies(Path(tmp) / "base"))
                print(f"load average after the studies: {load_average()}", file=sys.stderr)
    print(json.dumps(figures, indent=2))


def loops(args, baseline: Path | None) -> dict:
    """The loops (a), (b), (c) and the baseline's (b), taking turns: their best rates."""
    runs = {name: (name, ROOT) for name in args.loops}
    names = {name: LOOPS[name] for name in args.loops}
    if baseline:
        runs["baseline"] = ("trial", baseline)
        names["baseline"] = f"sweep_loop_{args.baseline}_img_per_s"
    got: dict[str, list[tuple[float, float | None]]] = {name: [] for name in runs}
    for i in range(args.repeats):  # take turns, so that drift on a shared machine hits every loop
        for name, (loop, code) in runs.items():
            got[name].append(one_process(loop, args, code))
            wall, cpu = got[name][-1]
            print(f"run {i + 1}/{args.repeats} {name}: {wall:,.0f} images/s"
                  + (f" ({cpu:,.0f} per CPU second)" if cpu else ""), file=sys.stderr)
    # Best of the runs. The wall-clock rate is the target's; on a machine shared with other work, the
    # rate per CPU second of these 1-thread loops wanders less (time taken by other processes is not counted).
    best = {name: max(wall for wall, _ in rates) for name, rates in got.items()}
    best_cpu = {name: max(cpu for _, cpu in rates) for name, rates in got.items() if name != "blog"}
    figures = {"images": args.images, "threads": 1, "repeats": args.repeats}
    figures.update({names[name]: round(rate) for name, rate in best.items()})
    figures.update({names[name].replace("_per_s", "_per_cpu_s"): round(rate) for name, rate in best_cpu.items()})
    if "blog" in best and "trial" in best:
        figures["speedup"] = round(best["trial"] / best["blog"], 2)
    if "bare" in best:
        for name in ("trial", "baseline"):
            if name in best:
                label = "trial" if name == "trial" else args.baseline
                figures[f"{label}_over_bare"] = round(best[name] / best["bare"], 3)
                figures[f"{label}_over_bare_cpu"] = round(best_cpu[name] / best_cpu["bare"], 3)
    if "trial" in best and "baseline" in best:
        figures["trial_over_baseline"] = round(best["trial"] / best["baseline"], 3)
        figures["trial_over_baseline_cpu"] = round(best_cpu["trial"] / best_cpu["baseline"], 3)
    return figures


if __name__ == "__main__":
    main()
