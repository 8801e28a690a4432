"""GPU figures, side by side in one run on one card (run by bench/gpu/gpu_check.sh).

(a) the blog's loop (bench_train.blog_loop) on the GPU; (b) one unfused trial
(run_trial) on the GPU; (c) the default study unfused, Ray packing trials at
0.25 GPU each; (d) the default study fused (resources.fuse: auto), eager steps;
(e) the same with its plain steps replayed from CUDA graphs (SWEEP_CUDA_GRAPHS=1,
models/graph.py); then (f) sweeps-full.yaml (the blog's 200 epochs) fused with
graphs, if (e)'s rate says it fits before --deadline (a Unix time). Images/s, wall time and the card's peak memory
(nvidia-smi, sampled every 0.2 s) for each.

    python bench/bench_gpu.py --deadline $(( $(date +%s) + 420 ))
"""
from __future__ import annotations

import argparse
import os
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_train import blog_loop, study, sweep_loop  # noqa: E402
from sweep.data.datasets import load_dataset  # noqa: E402


class PeakMemory:
    """The GPU's peak used memory (MiB) while the block runs, from nvidia-smi."""

    def __enter__(self):
        self.peak, self.stop = 0, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.stop.is_set():
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True).stdout.split()
            if out:
                self.peak = max(self.peak, int(out[0]))
            self.stop.wait(0.2)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def measured(name: str, fn) -> dict:
    print(f"bench_gpu: {name} ...", file=sys.stderr, flush=True)
    with PeakMemory() as mem:
        figures = fn()
    figures = figures if isinstance(figures, dict) else {"images_per_s": round(figures)}
    print(f"bench_gpu: {name}: {figures}", file=sys.stderr, flush=True)
    return {**figures, "peak_gpu_mib": mem.peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=60000, help="training images for (a) and (b)")
    parser.add_argument("--deadline", type=float, default=0.0,
                        help="Unix time by which (e) must have finished; 0 skips (e)")
    parser.add_argument("--out", default=None, help="folder for the studies (default: a temporary one)")
    args = parser.parse_args()
    import torch

    figures = {"card": torch.cuda.get_device_name(0)}
    data_dir = ROOT / "data"
    out = Path(args.out or tempfile.mkdtemp())
    figures["a_blog_loop"] = measured("(a) blog loop", lambda: blog_loop(data_dir, args.images, "cuda"))
    data = load_dataset("fashion_mnist", data_dir, args.images, None)
    figures["b_one_trial"] = measured("(b) one trial", lambda: sweep_loop(data, args.images, out / "b", "cuda"))
    figures["c_study_unfused"] = measured("(c) default study, unfused, 0.25 GPU each",
                                          lambda: study(out / "c", resources={"gpu": 0.25, "fuse": "off"}))
    figures["d_study_fused"] = measured("(d) default study, fused",
                                        lambda: study(out / "d", resources={"gpu": "auto", "fuse": "auto"}))
    figures["d_over_c"] = round(figures["d_study_fused"]["images_per_s"] / figures["c_study_unfused"]["images_per_s"], 2)
    os.environ["SWEEP_CUDA_GRAPHS"] = "1"  # inherited by the sweep's driver, its Ray processes and the trials
    figures["e_study_fused_graphs"] = measured("(e) default study, fused, CUDA graphs",
                                               lambda: study(out / "e", resources={"gpu": "auto", "fuse": "auto"}))
    figures["e_over_c"] = round(figures["e_study_fused_graphs"]["images_per_s"]
                                / figures["c_study_unfused"]["images_per_s"], 2)
    full_images = 16 * 200 * 60000
    predicted = full_images / figures["e_study_fused_graphs"]["images_per_s"]
    figures["f_full_study_predicted_s"] = round(predicted)
    figures["f_seconds_left"] = round(args.deadline - time.time())
    # Start-up and evaluation on top of the training rate: ask for a quarter more than predicted.
    if args.deadline and 1.25 * predicted < args.deadline - time.time():
        figures["f_full_study_fused_graphs"] = measured("(f) sweeps-full.yaml, fused, CUDA graphs", lambda: study(
            out / "f", spec_file="sweeps-full.yaml", resources={"gpu": "auto", "fuse": "auto"}))
        report = subprocess.run([sys.executable, "-m", "sweep.cli", "report", "--spec", str(out / "f" / "sweeps-full.yaml")],
                                capture_output=True, text=True, cwd=ROOT)
        print(report.stdout + report.stderr, flush=True)
    print(json.dumps(figures, indent=2), flush=True)


if __name__ == "__main__":
    main()
