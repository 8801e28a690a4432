"""Benchmark: what a small sweep costs besides training, side by side with a baseline commit.

Runs the same 4-trial synthetic sweep (3 epochs of 2,000 images, 2 trials at a
time: the fault tests' sweep) with this working tree and with a baseline
commit (its code in a temporary folder: bench/baseline.py), alternating, and prints per
side the median and fastest wall time of the whole `sweep run` process and of
its parts, from its own output:

  start:  process start -> the "sweep NAME: N trials" line (imports, data, Ray)
  run:    that line -> "done:" (trial workers starting, training, Ray's shutdown)
  exit:   "done:" -> the process gone (the interpreter's way out)

With --breakdown it runs this tree only, with bench/startup_probe/ first on
PYTHONPATH (its sitecustomize.py timestamps imports and chosen calls in the
driver and in every process Ray starts), and prints where the time of the
`sweep run` goes, phase by phase on the driver's clock, with what the trial
workers did meanwhile (median (fastest) of the runs, seconds).

Usage:
  python bench/bench_startup.py                       # vs 0fbff52 (before the two changes), 3 runs each
  python bench/bench_startup.py --baseline 7f42c20 --runs 5
  python bench/bench_startup.py --breakdown --runs 3  # where the time goes
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from baseline import baseline_code  # bench/, this script's folder

ROOT = Path(__file__).resolve().parent.parent
SPEC = {
    "name": "syn", "dataset": {"name": "synthetic", "train_limit": 2000, "test_limit": 500},
    "epochs": 3, "stats_every": 10,
    "grid": {"activation": ["tanh", "relu"], "init": ["xavier_uniform"],
             "optimizer": [{"name": "adam", "lr": 0.001}, {"name": "sgd", "lr": 0.01}]},
    "resources": {"cpu": 1, "max_concurrent": 2},
    "output": "out",
}


PROBE = Path(__file__).resolve().parent / "startup_probe"


def one_run(tree: Path, folder: Path, probe: Path | None = None, env: dict[str, str] | None = None) -> dict[str, float]:
    """One `sweep run` of SPEC in a fresh `folder` with the code of `tree` (and `env` added to the
    environment): its phases in seconds. With `probe` (a file), the processes log their timestamps there
    (bench/startup_probe/sitecustomize.py)."""
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(tree)}
    if probe is not None:
        env.update(PYTHONPATH=f"{PROBE}{os.pathsep}{tree}", SWEEP_STARTUP_PROBE=str(probe))
    start, began = time.monotonic(), time.time()
    proc = subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", "spec.yaml", "--progress-interval", "1000"],
                            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    marks = {}
    for line in proc.stdout:
        if line.startswith("sweep syn:"):
            marks["header"] = time.monotonic()
        elif line.startswith("done:"):
            marks["done"] = time.monotonic()
    if proc.wait() != 0 or len(marks) != 2:
        raise SystemExit(f"the sweep in {folder} failed (exit {proc.returncode})")
    end = time.monotonic()
    return {"wall": end - start, "start": marks["header"] - start, "run": marks["done"] - marks["header"],
            "exit": end - marks["done"], "began": began, "ended": time.time()}


# The driver's phases, in order: (name, the event that ends it: the first call's start, the last call's end or
# the first call's end of a probed function). Each starts where the one before ended.
PHASES = (
    ("Python starts (interpreter, site)", "probe"),
    ("imports (torch, SQLAlchemy, pandas)", "call:sweep.spec.spec.load_spec"),
    ("the spec (every optimizer setting built once: TorchDynamo's import)", "end:sweep.spec.spec.load_spec"),
    ("the sweep's settings; its database opened, its state read, the plan", "call:sweep.run.runner.load_dataset"),
    ("data load", "end:sweep.run.runner.load_dataset"),
    ("Ray starts (GCS, raylet, its Python processes)", "end:sweep.run.cluster._start_local"),
    ("the plan's rows, ray.tune import, data into the object store", "call:ray.tune.Tuner.fit"),
    ("trial workers start (their imports: Ray, Tune, torch)", "call:sweep.run.trial.ray_trainable"),
    ("first trial's members (network, checkpoint, TensorBoard writer)", "call:sweep.models.fused.FusedNet.__init__"),
    ("first trial's optimizers (TorchDynamo's import)", "first_end:sweep.models.fused.FusedNet.__init__"),
    ("first trial's evaluation before training, first step", "call:sweep.models.graph.StepRunner.step"),
    ("training: every trial, 2 at a time", "end:sweep.run.trial.ray_trainable"),
    ("Tune ends the trials", "end:ray.tune.Tuner.fit"),
    ("Ray shuts down", "end:ray.shutdown"),
    ("the program exits", "exit"),
)


def breakdown(log: Path, began: float, ended: float) -> tuple[dict[str, float], dict[str, float]]:
    """The driver's phases (PHASES) of one probed run, seconds, and what the processes did besides."""
    import json

    rows = [json.loads(line) for line in log.read_text().splitlines()]
    driver = next(r["pid"] for r in rows if r["event"] == "start" and "sweep.cli" in r["argv"] or
                  r["event"] == "start" and r["argv"].startswith("-m run"))
    calls = [r for r in rows if r["event"] == "call"]

    # The first trial's phases are read in the worker that started a trial first.
    first_worker = min((r for r in calls if r["name"] == "sweep.run.trial.ray_trainable"), key=lambda r: r["t0"])["pid"]
    in_first_trial = {"sweep.models.fused.FusedNet.__init__", "sweep.models.graph.StepRunner.step"}

    def of(name: str) -> list[dict]:
        return [r for r in calls if r["name"] == name and (name not in in_first_trial or r["pid"] == first_worker)]

    def first(name: str) -> float:
        return min(r["t0"] for r in of(name))

    def last_end(name: str) -> float:
        return max(r["t1"] for r in of(name))

    def first_end(name: str) -> float:
        return min(of(name), key=lambda r: r["t0"])["t1"]

    start = next(r for r in rows if r["event"] == "start" and r["pid"] == driver)
    marks = [began]  # the kernel's start time of a process is known to the second only (/proc/stat's btime)
    for _, end in PHASES:
        kind, _, name = end.partition(":")
        marks.append({"probe": lambda: start["t1"], "exit": lambda: ended, "call": lambda: first(name),
                      "end": lambda: last_end(name), "first_end": lambda: first_end(name)}[kind]())
    phases = {name: b - a for (name, _), a, b in zip(PHASES, marks, marks[1:])}
    workers = {r["pid"] for r in calls if r["name"] == "sweep.run.trial.ray_trainable"}
    imports = [r for r in rows if r["event"] == "import" and r["pid"] in workers]
    reports = [r for r in rows if r["event"] == "report" and r["epoch"]]

    def total(name: str, pids=None) -> float:
        return sum(r["t1"] - r["t0"] for r in calls if r["name"] == name and (pids is None or r["pid"] in pids))

    ray_pids = {r["pid"] for r in rows if r["event"] == "start" and r["pid"] != driver}
    besides = {
        "Python processes Ray started (trial workers among them)": len(ray_pids),
        "of them trial workers": len(workers),
        "a trial worker's imports (ray twice: Ray's setup_worker.py, then the worker), mean":
            sum(r["t1"] - r["t0"] for r in imports if r["name"] == "ray") / max(1, len(workers)),
        "  ray.tune (pandas within), mean": sum(r["t1"] - r["t0"] for r in imports if r["name"] == "ray.tune")
        / max(1, len(workers)),
        "  torch, mean": sum(r["t1"] - r["t0"] for r in imports if r["name"] == "torch") / max(1, len(workers)),
        "  torch._dynamo (the first optimizer), mean": sum(r["t1"] - r["t0"] for r in imports
                                                           if r["name"] == "torch._dynamo") / max(1, len(workers)),
        "training epochs, all trials (epoch_seconds)": sum(r["epoch_seconds"] for r in reports),
        "evaluations, all trials": total("sweep.models.fused.FusedNet.evaluate"),
        "checkpoints, all trials": total("sweep.run.trial._Member.save"),
        "the driver's database writes (recorder callbacks)": sum(
            r["t1"] - r["t0"] for r in calls if r["pid"] == driver and r["name"].startswith("sweep.run.recorder.")),
    }
    return phases, besides


def show_breakdown(runs: int, env: dict[str, str]) -> None:
    got: list[tuple[dict[str, float], dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            folder = Path(tmp) / f"run-{i}"
            log = Path(tmp) / f"probe-{i}.jsonl"
            figures = one_run(ROOT, folder, probe=log, env=env)
            got.append(breakdown(log, figures["began"], figures["ended"]))
            print(f"run {i + 1}/{runs}: {figures['wall']:.1f} s", file=sys.stderr)

    def cell(values) -> str:
        values = list(values)
        return f"{statistics.median(values):5.2f} ({min(values):5.2f})"

    print(f"`sweep run` of a 4-trial synthetic sweep (3 epochs x 2,000 images, 2 at a time), {runs} runs; "
          "seconds, median (fastest)")
    print("\nthe driver's clock:")
    for name, _ in PHASES:
        print(f"  {name:<78} {cell(p[name] for p, _ in got)}")
    print(f"  {'whole `sweep run`':<78} {cell(sum(p.values()) for p, _ in got)}")
    print("\nmeanwhile:")
    for name in got[0][1]:
        print(f"  {name:<78} {cell(b[name] for _, b in got)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="0fbff52",
                        help="commit to compare with (default 0fbff52: before the program skipped the teardown "
                             "and the trial workers stopped importing SQLAlchemy)")
    parser.add_argument("--runs", type=int, default=3, help="runs per side (default 3)")
    parser.add_argument("--breakdown", action="store_true", help="this tree only: where the time goes")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="set in this tree's runs only (repeatable): a setting tried before it is coded; "
                             "with --baseline HEAD the difference is the setting's")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    if args.breakdown:
        show_breakdown(args.runs, env)
        return
    with tempfile.TemporaryDirectory() as tmp, baseline_code(args.baseline) as base:
        sides = {f"baseline {args.baseline}": base, "this tree": ROOT}
        got: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
        for i in range(args.runs):
            for name, tree in sides.items():
                got[name].append(one_run(tree, Path(tmp) / f"{name.split()[0]}-{i}",
                                         env=env if name == "this tree" else None))
                print(f"run {i + 1}/{args.runs} {name}: {got[name][-1]['wall']:.1f} s", file=sys.stderr)
    print(f"{args.runs} runs per side, alternating; seconds, median (fastest)"
          + (f"; this tree with {' '.join(args.env)}" if env else ""))
    print(f"{'':>28} {'wall':>13} {'start':>13} {'run':>13} {'exit':>13}")
    for name, runs in got.items():
        cells = [f"{statistics.median(r[k] for r in runs):5.1f} ({min(r[k] for r in runs):5.1f})"
                 for k in ("wall", "start", "run", "exit")]
        print(f"{name:>28} " + " ".join(f"{c:>13}" for c in cells))


if __name__ == "__main__":
    main()
