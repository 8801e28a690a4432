"""Regenerate docs/page.html (`sweep page` of a study) and its screenshot docs/img/page.png.

    .venv/bin/python docs/make_page.py                    # run sweeps.yaml into a temporary folder, then sweep page
    .venv/bin/python docs/make_page.py --db runs/sweep.db # the page of a database you already have

Without --db it runs the default study (sweeps.yaml: 16 configurations, 3 epochs of Fashion-MNIST, about
5 minutes on 2 cores) into a temporary folder, as docs/make_pictures.py does. Then it runs `sweep page` into
docs/page.html and takes a 1280 x 900 screenshot of its top with headless Chromium (Debian's `chromium`,
which .ci/setup installs; its network off), re-encoded with 256 colours into docs/img/page.png. Prints each
file with its size. Exit 1 when the study, the page or the screenshot fails.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))

from make_pictures import run_default_study, small_png, sweep  # noqa: E402  (docs/, this script's folder)

PAGE = ROOT / "docs" / "page.html"
SHOT = ROOT / "docs" / "img" / "page.png"


def screenshot(page: Path, target: Path, width: int = 1280, height: int = 900) -> None:
    """The top of `page` as headless Chromium draws it in a `width` x `height` window, network off."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        raw = Path(profile) / "shot.png"
        done = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9",
                               "--host-resolver-rules=MAP * ~NOTFOUND", f"--window-size={width},{height}",
                               f"--screenshot={raw}", page.absolute().as_uri()],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0 or not raw.exists():
            sys.exit(f"chromium --screenshot: exit {done.returncode}: {done.stderr.strip()[-500:]}")
        with Image.open(raw) as image:
            assert image.size == (width, height), image.size
        small_png(raw, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="a results database (default: run sweeps.yaml into a temporary folder)")
    parser.add_argument("--sweep", help="the sweep (default: the one written last)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="page-") as tmp:
        folder = Path(tmp)
        db = args.db or run_default_study(folder)
        sweep("page", *([args.sweep] if args.sweep else []), "--db", db, "--out", str(PAGE.relative_to(ROOT)))
    print(f"{PAGE}: {PAGE.stat().st_size / 1000:.0f} kB")
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    screenshot(PAGE, SHOT)
    print(f"{SHOT}: {SHOT.stat().st_size / 1000:.0f} kB")


if __name__ == "__main__":
    main()
