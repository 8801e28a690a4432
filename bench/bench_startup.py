"""Benchmark: what a small sweep costs besides training, side by side with a baseline commit.

Runs the same 4-trial synthetic sweep (3 epochs of 2,000 images, 2 trials at a
time: the fault tests' sweep) with this working tree and with a baseline
commit (its code in a temporary folder: bench/baseline.py), alternating, and prints per
side the median and fastest wall time of the whole `sweep run` process and of
its parts, from its own output:

  start:  process start -> the "sweep NAME: N trials" line (imports, data, Ray)
  run:    that line -> "done:" (trial workers starting, training, Ray's shutdown)
  exit:   "done:" -> the process gone (the interpreter's way out)

Usage:
  python bench/bench_startup.py                       # vs 0fbff52 (before the two changes), 3 runs each
  python bench/bench_startup.py --baseline 7f42c20 --runs 5
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


def one_run(tree: Path, folder: Path) -> dict[str, float]:
    """One `sweep run` of SPEC in a fresh `folder` with the code of `tree`: its phases in seconds."""
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.monotonic()
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
            "exit": end - marks["done"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="0fbff52",
                        help="commit to compare with (default 0fbff52: before the program skipped the teardown "
                             "and the trial workers stopped importing SQLAlchemy)")
    parser.add_argument("--runs", type=int, default=3, help="runs per side (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, baseline_code(args.baseline) as base:
        sides = {f"baseline {args.baseline}": base, "this tree": ROOT}
        got: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
        for i in range(args.runs):
            for name, tree in sides.items():
                got[name].append(one_run(tree, Path(tmp) / f"{name.split()[0]}-{i}"))
                print(f"run {i + 1}/{args.runs} {name}: {got[name][-1]['wall']:.1f} s", file=sys.stderr)
    print(f"{args.runs} runs per side, alternating; seconds, median (fastest)")
    print(f"{'':>28} {'wall':>13} {'start':>13} {'run':>13} {'exit':>13}")
    for name, runs in got.items():
        cells = [f"{statistics.median(r[k] for r in runs):5.1f} ({min(r[k] for r in runs):5.1f})"
                 for k in ("wall", "start", "run", "exit")]
        print(f"{name:>28} " + " ".join(f"{c:>13}" for c in cells))


if __name__ == "__main__":
    main()
