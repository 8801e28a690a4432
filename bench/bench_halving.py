"""Benchmark: the issue's 32-trial study under both halving rules, asynchronous (ASHA) and synchronous.

MLP 128x3 on Fashion-MNIST, 6,000 training images with 1,000 held out for validation, 4 activations x 2 inits
x SGD/Adam x seeds 0 and 1, 6 epochs, `stop: {<rule>: {grace: 1, reduction: 2}}`, two trials at a time on 2
cores. For each rule and seed it prints how many of the seed's 16 configurations passed each rung and how many
trained all 6 epochs, and the run's wall time. ASHA's verdicts follow the order trials arrive in; halving's
keep the same number at every rung (16 -> 8 -> 4 -> 2).

    python bench/bench_halving.py                  # both rules, in a temporary folder (~10 min on 2 cores)
    python bench/bench_halving.py --rules halving --data-dir data
"""
from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def study(rule: str, data_dir: str) -> dict:
    return {"name": f"study-{rule}", "dataset": {"name": "fashion_mnist", "data_dir": data_dir,
                                                 "train_limit": 5000, "validation": 1000},
            "model": {"name": "mlp", "hidden": [128, 128, 128]}, "epochs": 6,
            "grid": {"activation": ["sigmoid", "tanh", "softsign", "relu"], "init": ["default", "xavier_uniform"],
                     "optimizer": [{"name": "sgd", "lr": 0.01}, {"name": "adam", "lr": 0.001}], "seed": [0, 1]},
            "stop": {rule: {"grace": 1, "reduction": 2}}, "resources": {"cpu": 1, "max_concurrent": 2},
            "output": "out"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", default="asha,halving")
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    args = parser.parse_args()
    print(f"# {' '.join(sys.argv)}")
    print("| rule | seed | rung 1 passed | rung 2 passed | rung 4 passed | trained all 6 epochs | wall |")
    print("|---|---|---|---|---|---|---|")
    for rule in args.rules.split(","):
        folder = Path(tempfile.mkdtemp(prefix=f"halving-{rule}-"))
        (folder / "spec.yaml").write_text(yaml.safe_dump(study(rule, str(Path(args.data_dir).resolve()))))
        began = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "sweep.cli", "run", "spec.yaml"], cwd=folder,
                             capture_output=True, text=True)
        wall = time.perf_counter() - began
        if run.returncode != 0:
            sys.exit(run.stderr[-3000:])
        with sqlite3.connect(folder / "out" / "sweep.db") as conn:
            for seed in (0, 1):
                done = dict(conn.execute("SELECT epochs_done >= 6, COUNT(*) FROM trials WHERE seed = ? GROUP BY 1",
                                         (seed,))).get(1, 0)
                rungs = dict(((epoch, (passed, judged)) for epoch, passed, judged in conn.execute(
                    "SELECT CAST(r.milestone AS INTEGER), SUM(r.continued), COUNT(*) FROM rung_results r "
                    "JOIN trials t USING (trial_id) WHERE t.seed = ? GROUP BY 1", (seed,))))
                cells = [f"{rungs[e][0]} of {rungs[e][1]}" if e in rungs else "-" for e in (1, 2, 4)]
                print(f"| {rule} | {seed} | {' | '.join(cells)} | {done} | {wall:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
