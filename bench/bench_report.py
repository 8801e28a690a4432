"""Benchmark: `sweep report` (and its views), flags and `sweep plot` on a big sweep, with peak memory.

Builds a results database through the project's own code: a sweep of
--trials configurations (activation x init x optimizer setting x seed, as
expand_grid makes them) planned by records.record_plan, then fed LeNet-shaped
synthetic reports (7 statistics snapshots per epoch: 4 activation layers and
5 weight gradients, 63 layer_stats rows per epoch) through the driver's
DatabaseRecorder as Ray Tune would (on_trial_result, on_step_end), all trials
advancing together. The curves are made up but behave like the study's:
sigmoid with plain SGD stays at chance with vanishing gradients, some ReLU
layers die, tanh saturates, a few trials diverge.

Each command then runs in its own process (`python -m sweep.cli ...`); its
wall time, CPU time (user + system, its children included: above the wall
time where `sweep plot` draws in two processes) and peak resident memory
(wait4's ru_maxrss, or the process and its children together, sampled every
10 ms, where that is more) are printed. Each is started through a small
launcher process: started from this one, a process's ru_maxrss would include
this benchmark's own 700 MB (torch and Ray, imported to build the sweep). The machine's load average is
printed with the table: on a shared machine, wall times follow it. With --old, the same commands also run with the code of commit
3351924 (before this benchmark; `git archive` into a temporary folder) on
--old-epochs epochs of the same sweep: that code loads every layer statistic
into pandas and does not fit in memory at 200 epochs.

    python bench/bench_report.py                            # 1,000 trials x 200 epochs (12.4M rows; ~7 min to build)
    python bench/bench_report.py --trials 1000 --epochs 20 --old   # side by side with today's code
    python bench/bench_report.py --db /tmp/big.db --reuse   # time an existing database again
    python bench/bench_report.py --db /tmp/big.db --reuse --repeats 5 --baseline b5efb5c   # against a commit
    python bench/bench_report.py --db /tmp/big.db --reuse --repeats 5 --only plot   # sweep plot alone
    python bench/bench_report.py --db /tmp/big.db --reuse --repeats 5 --only findings   # --findings alone

With --baseline COMMIT, that commit's code runs each command too, taking
turns with this tree run by run; the table shows the fastest and the median
of each. A commit of an older schema version reads a copy of the database
in its version (bench/baseline.py's database_for).
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sweep.db.engine import init_db, make_engine  # noqa: E402
from sweep.spec.grid import expand_grid  # noqa: E402
from sweep.run.recorder import DatabaseRecorder  # noqa: E402
from sweep.run.records import record_plan  # noqa: E402
from sweep.spec.spec import parse_spec  # noqa: E402

from baseline import baseline_code, database_for  # noqa: E402  (bench/, this script's folder)

OLD_COMMIT = "3351924"
SNAPSHOTS = 7  # per epoch: 6 every 100 batches of 64 (a 40k-image epoch) and one at the epoch's end
ACTIVATION_LAYERS = ("conv1", "conv2", "fc1", "fc2")
GRADIENT_LAYERS = ("conv1", "conv2", "fc1", "fc2", "fc3")
IMAGES = 6400 * (SNAPSHOTS - 1) + 1600  # images per epoch
COMMANDS = {
    "sweep report": [],
    "sweep report --by activation,init": ["--by", "activation,init"],
    "sweep report --trials --top 5": ["--trials", "--top", "5"],
    "sweep report --threshold 0.8 --metric images_to_threshold": ["--threshold", "0.8", "--metric",
                                                                   "images_to_threshold"],
    "sweep report --where optimizer=adam --top 10": ["--where", "optimizer=adam", "--top", "10"],
    # What the study found (sweep/analysis/findings.py): every factor's paired effects and the pathologies; then the same
    # with lr tuned, each configuration at its best lr as well as at the fixed one.
    "sweep report --findings": ["--findings"],
    "sweep report --findings --tune lr": ["--findings", "--tune", "lr"],
    "sweep plot": None,  # accuracy.png, depth.png, dynamics.png (the 5 best and worst), heatmap.png
}


def grid_spec(trials: int, epochs: int, output: Path) -> dict:
    """A grid of `trials` configurations: 5 activations x 5 inits x 8 optimizer settings x seeds."""
    seeds = max(1, math.ceil(trials / 200))
    return {
        "name": "big", "dataset": "synthetic", "epochs": epochs, "output": str(output),
        "grid": {"activation": ["sigmoid", "tanh", "softsign", "relu", "leaky_relu"],
                 "init": ["default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"],
                 "optimizer": [{"name": "sgd", "lr": [0.1, 0.03, 0.01, 0.003, 0.001]},
                               {"name": "adam", "lr": [0.01, 0.003, 0.001]}],
                 "seed": list(range(seeds))},
    }


class SyntheticTrial:
    """LeNet-shaped reports of one configuration, epoch after epoch (deterministic per trial)."""

    def __init__(self, cfg, index: int):
        self.cfg = cfg
        self.rng = np.random.default_rng(index)
        stuck = cfg.activation == "sigmoid" and cfg.optimizer == "sgd" and cfg.lr <= 0.01
        self.ceiling = 0.1 if stuck else 0.80 + 0.1 * self.rng.random()
        self.tau = 2 + 20 * self.rng.random()
        self.diverge_at = int(self.rng.integers(5, 150)) if self.rng.random() < 0.03 else None
        self.grad_ratio = 1e-3 if stuck else 10 ** self.rng.uniform(-1.5, 1.0)
        self.dead_layer = int(self.rng.integers(0, 4)) if cfg.activation == "relu" and self.rng.random() < 0.3 else None
        self.saturating = cfg.activation in ("sigmoid", "tanh") and self.rng.random() < 0.4
        self.best = (None, None)
        self.done = False

    def report(self, epoch: int) -> dict:
        rng = self.rng
        diverged = self.diverge_at is not None and epoch >= self.diverge_at
        acc = 0.1 if epoch == 0 else min(0.99, self.ceiling * (1 - math.exp(-epoch / self.tau)) + 0.1 * math.exp(
            -epoch / self.tau) + 0.005 * rng.standard_normal())
        loss = math.nan if diverged else 2.3 * (1 - acc) + 0.05 * rng.random()
        rows = []
        if epoch > 0:
            first = (epoch - 1) * IMAGES
            for k in range(SNAPSHOTS):
                step = first + min(6400 * (k + 1), IMAGES)
                for i, layer in enumerate(ACTIVATION_LAYERS):
                    sat = (0.3 + 0.5 * rng.random()) if self.saturating else 0.05 * rng.random()
                    dead = (0.4 + 0.01 * epoch if i == self.dead_layer else 0.0) if self.cfg.activation == "relu" else 0.0
                    rows.append({"epoch": epoch, "step": step, "layer": layer, "kind": "activation",
                                 "mean": rng.random(), "std": 0.5 + rng.random(), "p98": 2.0, "zero_frac": dead,
                                 "dead_frac": min(dead, 1.0), "sat_frac": sat if self.cfg.activation in (
                                     "sigmoid", "tanh", "softsign") else None})
                for i, layer in enumerate(GRADIENT_LAYERS):
                    std = math.nan if diverged else 1e-2 * self.grad_ratio ** (1 - i / 4) * (1 + 0.1 * rng.random())
                    rows.append({"epoch": epoch, "step": step, "layer": layer, "kind": "gradient",
                                 "mean": 0.0, "std": std, "p98": 0.1, "zero_frac": 0.0, "dead_frac": None,
                                 "sat_frac": None})
        if not diverged and (self.best[0] is None or acc > self.best[0]):
            self.best = (acc, epoch)
        self.done = diverged
        return {"epoch": epoch, "images_seen": epoch * IMAGES, "train_loss": None if epoch == 0 else loss,
                "test_loss": loss, "test_acc": acc, "epoch_seconds": 1.0, "train_seconds": float(epoch),
                "run_seconds": float(epoch) + 1, "best_test_acc": self.best[0], "best_epoch": self.best[1],
                "layer_stats": rows, "status": "diverged" if diverged else "running",
                "reason": "loss is nan" if diverged else None, "config_hash": self.cfg.config_hash,
                "resumed_from": None, "bundle": None, "device": "cpu", "node": None}


def prepared(db: Path, trials: int, epochs: int, reuse: bool) -> None:
    """`db` holding the synthetic sweep of `trials` x `epochs`: built anew (a file there replaced), saying how
    long it took and how big it is, unless `reuse`."""
    if reuse:
        return
    if db.exists():
        db.unlink()
    print(f"building {trials} trials x {epochs} epochs into {db}", flush=True)
    began = time.perf_counter()
    build(db, trials, epochs)
    print(f"built in {time.perf_counter() - began:.0f} s, {db.stat().st_size / 2**20:,.0f} MB", flush=True)


def build(db: Path, trials: int, epochs: int) -> None:
    """The sweep's database, written through record_plan and the driver's recorder."""
    spec = parse_spec({**grid_spec(trials, epochs, db.parent), "database": f"sqlite:///{db}"})
    configs = expand_grid(spec)[:trials]
    engine = make_engine(spec.database_url)
    init_db(engine)
    ids = record_plan(engine, spec, configs, configs)
    from sweep.run.ledger import Ledger

    # The run's ledger first, then the recorder, which writes what the ledger made of each event (runner.py's order).
    ledger = Ledger.of(configs)
    recorder = _InOrder(ledger, DatabaseRecorder(engine, ids, ledger))
    fakes = [SimpleNamespace(config={"bundle": [c.to_dict()]}) for c in configs]
    sims = [SyntheticTrial(c, i) for i, c in enumerate(configs)]
    for fake in fakes:
        recorder.on_trial_start(0, [], fake)
    began, rows = time.perf_counter(), 0
    for epoch in range(epochs + 1):
        for sim, fake in zip(sims, fakes):
            if sim.done:
                continue
            result = sim.report(epoch)
            rows += len(result["layer_stats"])
            recorder.on_trial_result(0, [], fake, result)
            recorder.on_step_end(0, [])
        if epoch % 20 == 0:
            took = time.perf_counter() - began
            print(f"  epoch {epoch}: {rows:,} layer rows in {took:.0f} s ({rows / max(took, 1e-9):,.0f} rows/s "
                  f"incl. making the reports)", flush=True)
    for sim, fake in zip(sims, fakes):
        if not sim.done:
            recorder.on_trial_complete(0, [], fake)
    recorder.on_experiment_end([])
    engine.dispose()


class _InOrder:
    """Ray Tune's callbacks called in the run's order: each event's method of every callback that has it."""

    def __init__(self, *callbacks):
        self.callbacks = callbacks

    def __getattr__(self, name: str):
        return lambda *args: [getattr(c, name)(*args) for c in self.callbacks if hasattr(c, name)]


def _tree_rss_mb(pid: int, itself: bool = True) -> float:
    """Resident memory of a process (unless not `itself`) and its descendants together, in MB (shared
    pages counted in each: an upper bound for `sweep plot`, whose drawing child is a fork sharing its
    parent's pages)."""
    total, todo = 0, [(pid, itself)]
    while todo:
        p, counted = todo.pop()
        try:
            if counted:
                with open(f"/proc/{p}/status") as f:
                    total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [(int(c), True) for c in f.read().split()]
        except (OSError, StopIteration, ValueError):  # gone meanwhile, or a zombie without VmRSS
            pass
    return total / 1024


# Starts the command and reports its wall time, CPU time and peak memory (wait4) into the file argv[1]. A
# process's ru_maxrss also holds the memory of the process it was started from (Linux folds the old
# memory's peak in at exec; Popen's vfork shares this benchmark's 700 MB, torch and Ray included, with
# the child until then): started from this small launcher instead, the command's figure is its own.
LAUNCHER = """
import os, sys, time
began = time.perf_counter()
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{time.perf_counter() - began} {usage.ru_utime + usage.ru_stime} {usage.ru_maxrss / 1024} "
            f"{os.waitstatus_to_exitcode(status)}")
"""


def run(args: list[str], pythonpath: Path, cwd: Path) -> tuple[float, float, float, int, str]:
    """(wall seconds, CPU seconds (user + system, children included), peak memory in MB, exit code, last
    line of output) of `python -m sweep.cli ARGS`, started through LAUNCHER. Peak memory: the larger of
    the process's peak resident memory (wait4's ru_maxrss, which covers each reaped child on its own) and
    the sum over the process and its children, sampled every 10 ms."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "COLUMNS": "200"}
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as figures:
        proc = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, figures.name, sys.executable, "-m",
                                 "sweep.cli", *args], cwd=cwd, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tree_peak, done = [0.0], threading.Event()

        def sample():
            while not done.wait(0.01):
                tree_peak[0] = max(tree_peak[0], _tree_rss_mb(proc.pid, itself=False))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out = proc.stdout.read()
        proc.wait()
        done.set()
        sampler.join()
        wall, cpu, peak, code = figures.read().split()
    lines = out.strip().splitlines()
    return float(wall), float(cpu), max(float(peak), tree_peak[0]), int(code), (lines[-1] if lines else "")


def time_commands(trees: dict[str, tuple[Path, Path]], repeats: int, only: str | None = None
                  ) -> dict[str, dict[str, tuple]]:
    """{tree label: {command: (fastest wall, its CPU, its peak memory, median wall)}} over `repeats` runs of
    each command (those whose name contains `only`, if given) with each tree's code on its database (trees:
    label -> (code, database)), the trees taking turns run by run (a machine that slows down for a while slows
    them alike)."""
    figures = {label: {} for label in trees}
    with tempfile.TemporaryDirectory() as plots:
        for name, extra in COMMANDS.items():
            if only and only not in name:
                continue
            runs = {label: [] for label in trees}
            for _ in range(repeats):
                for label, (code, db) in trees.items():
                    args = (["plot", "--db", str(db), "--out", plots] if extra is None
                            else ["report", "--db", str(db), *extra])
                    wall, cpu, peak, code_, last = run(args, code, code)
                    if code_ != 0:
                        print(f"  {label}: {name}: exit {code_}: {last}", flush=True)
                        continue
                    runs[label].append((wall, cpu, peak))
            for label, done in runs.items():
                if done:
                    wall, cpu, peak = min(done)
                    median = statistics.median(w for w, _, _ in done)
                    figures[label][name] = (wall, cpu, peak, median)
                    print(f"  {label}: {name}: {wall:.2f} s wall (median {median:.2f} s), {cpu:.2f} s CPU, "
                          f"{peak:,.0f} MB", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--db", type=Path, help="database file (default: a temporary one, deleted after)")
    parser.add_argument("--reuse", action="store_true", help="time --db as it is, without building it")
    parser.add_argument("--build-only", action="store_true", help="build --db and stop")
    parser.add_argument("--old", action="store_true", help=f"also time the code of commit {OLD_COMMIT}")
    parser.add_argument("--repeats", type=int, default=2, help="runs per command; the fastest is shown")
    parser.add_argument("--baseline", metavar="COMMIT",
                        help="also time the code of this commit, taking turns with this tree run by run")
    parser.add_argument("--only", metavar="TEXT", help="time only the commands containing TEXT (e.g. plot)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-report-"))
    db = args.db or folder / "sweep.db"
    try:
        prepared(db, args.trials, args.epochs, args.reuse)
        if args.build_only and not args.reuse:
            return
        # An older database is upgraded now, as this tree's first command would (outside the timing), so that
        # database_for can take the later versions' additions away again for an older commit.
        engine = make_engine(f"sqlite:///{db}")
        init_db(engine)
        engine.dispose()
        with contextlib.ExitStack() as stack:
            trees = {"this tree": (ROOT, db)}
            if args.baseline:
                code = stack.enter_context(baseline_code(args.baseline))
                trees[args.baseline] = (code, stack.enter_context(database_for(code, db)))
            timed = time_commands(trees, args.repeats, args.only)
        new = timed["this tree"]
        base = timed.get(args.baseline, {})
        old = {}
        if args.old:
            with baseline_code(OLD_COMMIT) as old_tree, database_for(old_tree, db) as old_db:
                old = time_commands({OLD_COMMIT: (old_tree, old_db)}, 1, args.only)[OLD_COMMIT]
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
        print(f"\n{args.trials} trials x {args.epochs} epochs ({db.stat().st_size / 2**20:,.0f} MB), "
              f"{os.cpu_count()} CPUs, load average {load:.1f} at the end; whole processes, fastest (median) of "
              f"{args.repeats}:")
        print("| command | wall | CPU | peak memory |" + (f" {args.baseline}: wall | peak memory |" if base else "")
              + (f" {OLD_COMMIT}: wall | peak memory |" if old else ""))
        print("|---|---|---|---|" + ("---|---|" if base else "") + ("---|---|" if old else ""))
        for name, (wall, cpu, peak, median) in new.items():
            line = f"| `{name}` | {wall:.2f} s ({median:.2f} s) | {cpu:.2f} s | {peak:,.0f} MB |"
            if base:
                b = base.get(name)
                line += f" {b[0]:.2f} s ({b[3]:.2f} s) | {b[2]:,.0f} MB |" if b else " failed | |"
            if old:
                o = old.get(name)
                line += f" {o[0]:.1f} s | {o[2]:,.0f} MB |" if o else " failed | |"
            print(line)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
