"""torch.profiler over the trial loop (sweep.run.trial.run_trial): one CPU trial, batch 64, statistics every 100
batches, TensorBoard on, one thread; the top operations by self CPU time.

    python bench/profile_trial.py                                  # this tree, ReLU + Adam
    python bench/profile_trial.py --activation tanh --optimizer sgd --images 12800
    python bench/profile_trial.py --baseline 4188c28               # the same, with that commit's code
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = os.environ.get("BENCH_PROFILE_CODE")
sys.path.insert(0, CODE or str(ROOT))


def profile(args) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile as torch_profile

    from sweep.data.datasets import load_dataset
    from sweep.spec.grid import expand_grid
    from sweep.spec.spec import load_spec
    from sweep.run.trial import run_trial

    torch.set_num_threads(1)
    spec = load_spec(ROOT / "sweeps.yaml")
    cfg = next(t for t in expand_grid(spec) if t.activation == args.activation and t.init == args.init
               and t.optimizer == args.optimizer)
    data = load_dataset("fashion_mnist", Path(args.data_dir), args.images, None)
    with tempfile.TemporaryDirectory() as tmp:
        warm = replace(cfg, epochs=1, train_limit=args.images, logdir=str(Path(tmp) / "warm"))
        run_trial(warm, data, lambda r: None)
        cfg = replace(cfg, epochs=1, train_limit=args.images, logdir=str(Path(tmp) / "trial"))
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            run_trial(cfg, data, lambda r: None)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=44))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--init", default="xavier_uniform")
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--images", type=int, default=12800, help="training images (one epoch; default 12800)")
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--baseline", metavar="COMMIT", help="profile that commit's trial loop instead")
    args = parser.parse_args()
    if args.baseline:
        sys.path.insert(0, str(ROOT / "bench"))
        from baseline import baseline_code

        argv = [a for a in sys.argv[1:]]
        i = argv.index("--baseline")
        del argv[i:i + 2]
        with baseline_code(args.baseline) as tree:
            subprocess.run([sys.executable, __file__, *argv], env={**os.environ, "BENCH_PROFILE_CODE": str(tree)},
                           check=True)
        return
    profile(args)


if __name__ == "__main__":
    main()
