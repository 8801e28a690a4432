"""Benchmark: what `stop:` saves, side by side with the same sweep without it, in one run.

Runs `sweep run` twice on the same grid (the default study's: 4 activations x 2 inits x SGD/Adam at
lr 1e-3, Fashion-MNIST) in fresh folders, first without `stop:`, then with the rules below, and prints
for each: training images, wall time of the whole `sweep run` process, trials stopped (and why), and
the top of the ranking by final test accuracy (stopped trials rank after those that finished, as the
report shows them).

Usage:
  python bench/bench_stop.py                               # train_limit 10000, 10 epochs
  python bench/bench_stop.py --train-limit 5000 --epochs 6
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
STOP = {"chance": 2, "asha": {"grace": 2, "reduction": 3}}


def spec(name: str, out: Path, args, stop) -> Path:
    raw = yaml.safe_load((ROOT / "sweeps.yaml").read_text())
    raw.update(name=name, epochs=args.epochs, output=str(out))
    raw["dataset"] = {**raw["dataset"], "data_dir": str(ROOT / "data"), "train_limit": args.train_limit,
                      "test_limit": args.test_limit}
    if stop:
        raw["stop"] = stop
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def run(path: Path) -> float:
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "sweep.cli", "run", str(path), "--progress-interval", "60"],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        sys.exit(f"sweep run {path} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - began


def figures(db: Path, name: str) -> dict:
    con = sqlite3.connect(db)
    rows = con.execute("SELECT t.label, t.status, t.final_test_acc, t.images_seen, t.error FROM trials t "
                       "JOIN sweeps s ON s.sweep_id = t.sweep_id WHERE s.name = ?", (name,)).fetchall()
    con.close()
    ranked = sorted(rows, key=lambda r: (r[1] == "stopped", -(r[2] or 0.0)))
    return {"images": sum(r[3] for r in rows), "stopped": [(r[0], r[4]) for r in rows if r[1] == "stopped"],
            "top": [(r[0], r[2]) for r in ranked[:3]], "statuses": sorted({r[1] for r in rows})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-limit", type=int, default=10000)
    parser.add_argument("--test-limit", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-stop-"))
    print(f"default grid, Fashion-MNIST train_limit {args.train_limit}, test_limit {args.test_limit}, "
          f"{args.epochs} epochs; stop: {STOP}; {os.cpu_count()} CPUs")
    results = {}
    for name, stop in (("full", None), ("stopped", STOP)):
        wall = run(spec(name, out, args, stop))
        results[name] = {**figures(out / "sweep.db", name), "wall": wall}
    full, cut = results["full"], results["stopped_early"]
    for name, r in results.items():
        print(f"{name:>8}: {r['images']:>11,} images  {r['wall']:7.1f} s  statuses {', '.join(r['statuses'])}")
    print(f"   saved: {1 - cut['images'] / full['images']:.1%} of the images, {1 - cut['wall'] / full['wall']:.1%} "
          "of the wall time")
    for label, why in sorted(cut["stopped_early"]):
        print(f"  stopped {label}: {why}")
    for name in results:
        print(f"top 3 {name:>8}: " + "; ".join(f"{label} {acc:.4f}" for label, acc in results[name]["top"]))
    same = [l for l, _ in full["top"]] == [l for l, _ in cut["top"]]
    print(f"same top 3: {'yes' if same else 'no'}")


if __name__ == "__main__":
    main()
