"""Benchmark: training throughput and orchestration overhead, side by side in one run.

(a) the blog's loop: torchvision FashionMNIST + ToTensor + DataLoader (batch 64,
    shuffled), loss.item() every batch, statistics every 100 batches;
(b) this project's trial loop (sweep.trial.run_trial): tensors in memory,
    batches by index, statistics every 100 batches, TensorBoard on.
Both train the same LeNet on the same images with one torch thread (what a
1-CPU trial gets), and compute the same per-layer statistics, so the
difference is the loop itself.

With --study it also runs the default study (sweeps.yaml) into a temporary
folder and compares its wall time with the sum of its trials' training time.

    python bench/bench_train.py --images 30000
    python bench/bench_train.py --study
"""
from __future__ import annotations

import argparse
import json
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

from models.nets import LeNet, weight_layers  # noqa: E402
from models.registry import init_weights  # noqa: E402
from models.stats import snapshot_stats  # noqa: E402
from sweep.data import load_dataset, prepare_fashion_mnist  # noqa: E402
from sweep.grid import expand_grid  # noqa: E402
from sweep.spec import load_spec  # noqa: E402
from sweep.trial import run_trial  # noqa: E402


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


def sweep_loop(data_dir: Path, images: int, workdir: Path, device: str = "cpu") -> float:
    """Images/s of run_trial's training epoch (evaluation excluded) over `images` images."""
    spec = load_spec(ROOT / "sweeps.yaml")
    cfg = next(t for t in expand_grid(spec) if t.activation == "relu" and t.init == "xavier_uniform"
               and t.optimizer == "adam")
    cfg = replace(cfg, epochs=1, train_limit=images, logdir=str(workdir / "trial"))
    data = load_dataset("fashion_mnist", data_dir, images, None)
    reports = []
    run_trial(cfg, data, reports.append, device=device)
    return images / reports[-1]["epoch_seconds"]


def study(out: Path, spec_file: str = "sweeps.yaml", resources: dict | None = None) -> dict:
    """Run a study (default: the default study) into `out`; wall time vs the sum of the trials' own run time.

    `resources` replaces the spec's resources (e.g. {"gpu": 0.25, "fuse": "off"}).
    """
    import yaml

    raw = yaml.safe_load((ROOT / spec_file).read_text())
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
                   cwd=ROOT, check=True)
    wall = time.perf_counter() - start
    with sqlite3.connect(out / "sweep.db") as conn:
        train, n, images = conn.execute("SELECT SUM(run_seconds), COUNT(*), SUM(images_seen) FROM trials").fetchone()
    import os

    slots = os.cpu_count()  # CPU trials run 1 CPU each, so this many at once
    ideal = train / slots
    return {"trials": n, "wall_s": round(wall, 1), "images_per_s": round(images / wall),
            "sum_trial_s": round(train, 1), "parallel_slots": slots,
            "ideal_wall_s": round(ideal, 1), "overhead_share": round(1 - ideal / wall, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20000, help="training images per loop (default 20000)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating repeats of (a) and (b)")
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--study", action="store_true", help="also time the default study (about 5 minutes)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data_dir = Path(args.data_dir)
    blog, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):  # alternate so drift on a shared machine hits both
            blog.append(blog_loop(data_dir, args.images))
            ours.append(sweep_loop(data_dir, args.images, Path(tmp) / str(i)))
    figures = {
        "images": args.images, "threads": 1,
        "blog_loop_img_per_s": round(max(blog)), "sweep_loop_img_per_s": round(max(ours)),
        "speedup": round(max(ours) / max(blog), 2),
    }
    if args.study:
        with tempfile.TemporaryDirectory() as tmp:
            figures["default_study"] = study(Path(tmp) / "runs")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
