"""Benchmark: `sweep page` on a big sweep, beside `sweep report` on the same database in the same run.

Builds (or reuses) bench_report.py's synthetic sweep, 1,000 trials x 200 epochs by default, through the
project's own recorder; then runs each command as its own process (bench_report.run: wall time, CPU time,
peak memory) and prints `sweep page`'s write time, the file's size, and how long headless Chromium (Debian's,
tests/chromium.py, network off) takes to open it: from navigation to the load event, and to the first paint
of the whole page laid out (a forced layout after load). The goals: written in a few seconds, a few MB, open
in under 2 s.

    python bench/bench_page.py                                  # 1,000 trials x 200 epochs (~7 min to build)
    python bench/bench_page.py --db /tmp/big.db --reuse         # an existing database again
    python bench/bench_page.py --trials 200 --epochs 20         # a quick look
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from bench_report import prepared, run  # noqa: E402  (bench/, this script's folder)
from chromium import Chromium  # noqa: E402  (tests/)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--db", type=Path, help="database file (default: a temporary one, deleted after)")
    parser.add_argument("--reuse", action="store_true", help="time --db as it is, without building it")
    parser.add_argument("--repeats", type=int, default=3, help="runs per command and opens; fastest and median")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-page-"))
    db = args.db or folder / "sweep.db"
    try:
        prepared(db, args.trials, args.epochs, args.reuse)
        page = folder / "page.html"
        timed = {"sweep report": [], "sweep page": []}
        for _ in range(args.repeats):  # taking turns: a machine that slows down slows both alike
            for name, argv in (("sweep report", ["report", "--db", str(db)]),
                               ("sweep page", ["page", "--db", str(db), "--out", str(page)])):
                wall, cpu, peak, code, last = run(argv, ROOT, ROOT)
                if code != 0:
                    sys.exit(f"{name}: exit {code}: {last}")
                timed[name].append((wall, cpu, peak))
        opens, laid_out = [], []
        with Chromium() as browser:
            for _ in range(args.repeats):
                began = time.perf_counter()
                browser.open(page)
                opens.append(time.perf_counter() - began)
                browser.evaluate("document.body.getBoundingClientRect().height")  # the whole page laid out
                laid_out.append(time.perf_counter() - began)
            errors, requests = browser.console_errors(), browser.requests()
            rows = browser.evaluate("document.querySelectorAll('#ranking tbody tr').length")
            sections = browser.evaluate("document.querySelectorAll('section.config').length")
        load = os.getloadavg()[0]
        print(f"\n{args.trials} trials x {args.epochs} epochs ({db.stat().st_size / 2**20:,.0f} MB), {os.cpu_count()} "
              f"CPUs, load average {load:.1f} at the end; fastest (median) of {args.repeats}:")
        print("| | wall | CPU | peak memory |")
        print("|---|---|---|---|")
        for name, runs in timed.items():
            wall, cpu, peak = min(runs)
            median = statistics.median(w for w, _, _ in runs)
            print(f"| `{name}` | {wall:.2f} s ({median:.2f} s) | {cpu:.2f} s | {peak:,.0f} MB |")
        print(f"| Chromium: open to load event | {min(opens):.2f} s ({statistics.median(opens):.2f} s) | | |")
        print(f"| Chromium: open to the whole page laid out | {min(laid_out):.2f} s "
              f"({statistics.median(laid_out):.2f} s) | | |")
        print(f"\npage: {page.stat().st_size / 1e6:.2f} MB, {rows} ranking rows, {sections} configuration sections; "
              f"console errors: {len(errors)}; requests other than the file and data URIs: "
              f"{sum(not r.startswith(('file:', 'data:')) for r in requests)}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
