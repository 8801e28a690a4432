"""Benchmark: how many layer_stats rows per second the driver's recorder stores, and how long a report
waits for its row, with hundreds of trials reporting at once; SQLite and PostgreSQL.

Synthetic LeNet-shaped reports (one epoch each: 7 snapshots x 9 layer rows = 63 rows, plus the epoch
row and the trial's update) from --trials concurrent trials are fed to DatabaseRecorder as Ray Tune's
driver loop feeds it: one on_trial_result per event, on_step_end after each step, and when no event
is waiting the loop idles up to 0.1 s (Tune's own timeout) before the next step. The reports are made
before the clock starts. Lag: from a report's arrival at the driver to the commit of the transaction
holding it (a reader sees it from then on); paced, from the moment the report was due, so that a
recorder slower than the load shows as a growing lag.

- max: reports back to back, as fast as the recorder takes them: rows per second.
- paced: reports arriving at --rate rows per second (default 2,100, what a fused GPU sweep at 1.5M
  images/s with statistics every 100 batches of 64 produces, and 50,000): lag p50 / p99 / max.

PostgreSQL: a throwaway server started as the tests start theirs (tests/pg_server.py; needs Debian's
postgresql), on 127.0.0.1.

    python bench/bench_recorder.py                       # SQLite and PostgreSQL, 300 trials
    python bench/bench_recorder.py --databases sqlite --trials 500 --epochs 4
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from bench_report import SyntheticTrial, grid_spec  # noqa: E402
from sweep.db.engine import init_db, make_engine  # noqa: E402
from sweep.spec.grid import expand_grid  # noqa: E402
from sweep.run.ledger import Ledger  # noqa: E402
from sweep.run.recorder import DatabaseRecorder  # noqa: E402
from sweep.run.records import record_plan  # noqa: E402
from sweep.spec.spec import parse_spec  # noqa: E402


class TimedRecorder(DatabaseRecorder):
    """The recorder, noting when each report arrived and when its transaction committed."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.arrived: list[float] = []
        self.lags: list[float] = []
        self.produced: float | None = None  # when the report being handed over was made (paced loads)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        # A report the recorder could not take when it was made waited in Tune's queue: that counts too.
        self.arrived.append(self.produced if self.produced is not None else time.perf_counter())
        super().on_trial_result(iteration, trials, trial, result, **info)

    def flush(self) -> None:
        count = len(self.queued)
        super().flush()
        done = time.perf_counter()
        self.lags += [done - t for t in self.arrived[:count]]
        del self.arrived[:count]


def prepare(url: str, trials: int, epochs: int, folder: Path):
    spec = parse_spec({**grid_spec(trials, epochs, folder), "database": url})
    configs = expand_grid(spec)[:trials]
    engine = make_engine(url)
    init_db(engine)
    ids = record_plan(engine, spec, configs, configs)
    sims = [SyntheticTrial(c, i) for i, c in enumerate(configs)]
    for sim in sims:
        sim.diverge_at = None  # every trial reports every epoch
    fakes = [SimpleNamespace(config={"bundle": [c.to_dict()]}) for c in configs]
    # Epoch-major, as concurrent trials report; epoch 0 (no statistics) is left out.
    reports = [(fake, sim.report(epoch)) for epoch in range(epochs + 1) for sim, fake in zip(sims, fakes)]
    return engine, ids, [(f, r) for f, r in reports if r["epoch"] > 0]


def drive(recorder: TimedRecorder, reports, rate: float | None) -> float:
    """Feed the reports as Tune's loop would (at `rate` rows/s, or back to back); returns the wall seconds."""
    began = time.perf_counter()
    due, rows = began, 0
    for fake, result in reports:
        if rate is not None:
            while (now := time.perf_counter()) < due:  # no event yet: Tune idles up to 0.1 s, then a step
                time.sleep(min(0.1, due - now))
                recorder.on_step_end(0, [])
        recorder.produced = due if rate else None
        recorder.on_trial_result(0, [], fake, result)
        recorder.on_step_end(0, [])
        rows += len(result["layer_stats"])
        due = began + rows / rate if rate else due
    while recorder.queued:  # the last reports wait for their delay, as they would
        time.sleep(0.01)
        recorder.on_step_end(0, [])
    return time.perf_counter() - began


def measure(new_url, name: str, args, folder: Path) -> list[str]:
    """Each load on a fresh database from `new_url()`."""
    lines = []
    for mode, rate in [("max", None), *(("paced", r) for r in args.rate)]:
        engine, ids, reports = prepare(new_url(), args.trials, args.epochs, folder / f"{name}-{mode}-{rate}")
        # Only reports reach it here: its ledger (sweep/run/ledger.py) hears of no start or end.
        recorder = TimedRecorder(engine, ids, Ledger(dict.fromkeys(ids, 0)))
        rows = sum(len(r["layer_stats"]) for _, r in reports)
        wall = drive(recorder, reports, rate)
        lags = sorted(recorder.lags)
        p99 = lags[min(len(lags) - 1, int(0.99 * len(lags)))]
        offered = "as fast as it takes them" if rate is None else f"{rate:,.0f} rows/s offered"
        line = (f"| {name} | {args.trials} trials, {offered} | {rows / wall:,.0f} rows/s | "
                f"{statistics.median(lags):.3f} / {p99:.3f} / {lags[-1]:.3f} s |")
        print(line, flush=True)
        lines.append(line)
        engine.dispose()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=3, help="reports per trial")
    parser.add_argument("--rate", type=float, nargs="*", default=[2100, 50_000], help="offered rows/s (paced)")
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    print("| database | load | stored | lag p50 / p99 / max |\n|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in args.databases:
            if name == "sqlite":
                files = iter(range(100))
                measure(lambda: f"sqlite:///{folder / f'r{next(files)}.db'}", "SQLite", args, folder)
                continue
            from pg_server import PostgresServer

            server = PostgresServer.start()
            try:
                measure(lambda: server.url(server.create_database()), "PostgreSQL", args, folder)
            finally:
                server.stop()


if __name__ == "__main__":
    main()
