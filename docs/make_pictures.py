"""Regenerate the README's pictures (docs/img/*.png) from a real run of the default study.

    .venv/bin/python docs/make_pictures.py                 # run sweeps.yaml into a temporary folder, then plot
    .venv/bin/python docs/make_pictures.py --db runs/sweep.db   # plot a database you already have

Without --db it runs the default study (sweeps.yaml: 16 configurations,
3 epochs of Fashion-MNIST, about 5 minutes on 2 cores, longer on a busy
machine) into a temporary folder, with data/ of this checkout. Then it runs
`sweep plot` and writes each picture into docs/img/, re-encoded with 256
colours (PIL's adaptive palette, optimised), which keeps each under 150 kB
(sweep plot writes its PNGs with light compression, for speed). Prints
each file with its size. Exit 1 when the study or the plot fails.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "img"
PICTURES = ("accuracy.png", "depth.png", "dynamics.png", "heatmap.png")


def sweep(*args: str) -> None:
    """`sweep ARGS` with this interpreter (the checkout's .venv); exit 1 where it fails."""
    done = subprocess.run([sys.executable, "-m", "sweep.cli", *args], cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"sweep {' '.join(args)}: exit {done.returncode}")


def small_png(source: Path, target: Path) -> int:
    """`source` written to `target` with an adaptive palette of 256 colours, optimised; its size in bytes."""
    with Image.open(source) as image:
        image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    return target.stat().st_size


def run_default_study(folder: Path) -> str:
    """Run sweeps.yaml into `folder` (its output `runs` beside the copied spec, the data from this checkout);
    the database's path."""
    spec = (ROOT / "sweeps.yaml").read_text()
    spec = spec.replace("data_dir: data ", f"data_dir: {ROOT / 'data'} ")
    (folder / "sweeps.yaml").write_text(spec)
    sweep("run", str(folder / "sweeps.yaml"))
    return str(folder / "runs" / "sweep.db")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="a results database to plot (default: run sweeps.yaml into a temporary folder)")
    parser.add_argument("--sweep", help="the sweep to plot (default: the one written last)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pictures-") as tmp:
        folder = Path(tmp)
        db = args.db or run_default_study(folder)
        sweep("plot", *([args.sweep] if args.sweep else []), "--db", db, "--out", str(folder / "plots"))
        IMAGES.mkdir(parents=True, exist_ok=True)
        for name in PICTURES:
            drawn = folder / "plots" / name
            if drawn.exists():
                size = small_png(drawn, IMAGES / name)
                print(f"{IMAGES / name}: {size / 1000:.0f} kB")


if __name__ == "__main__":
    main()
