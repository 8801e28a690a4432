"""Running `sweep run` as a real process, striking it at held moments (sweep/run/hold.py), reading what it stored.

Shared by the fault tests and the PostgreSQL tests: start a sweep with trials
to hold, wait until each stands at its moment, then signal or kill; wait until
killed processes are really gone.
"""
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml
from sqlalchemy import text

from sweep.db import make_engine

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def start(folder: Path, spec: dict, holds: dict[str, str] | None = None, args: tuple[str, ...] = (),
          env: dict[str, str] | None = None) -> subprocess.Popen:
    """`sweep run spec.yaml [args]` in `folder`; `holds` maps a trial name to the moment it is to stop at."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    env = {**ENV, **(env or {})}
    if holds:
        (folder / "holds").mkdir(exist_ok=True)
        env.update(SWEEP_HOLD=",".join(f"{name}@{moment}" for name, moment in holds.items()),
                   SWEEP_HOLD_DIR=str(folder / "holds"))
    # A session of its own, as a terminal gives a foreground job: Ctrl-C goes to the group.
    return subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", "spec.yaml", "--progress-interval", "1", *args],
                            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_held(folder: Path, proc: subprocess.Popen, holds: dict[str, str], timeout: float = 300.0) -> dict[str, int]:
    """Wait until every trial of `holds` stands at its moment (its marker file exists); worker pids by trial."""
    markers = {name: folder / "holds" / f"{name}@{moment}" for name, moment in holds.items()}
    deadline = time.monotonic() + timeout
    while not all(m.exists() for m in markers.values()):
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended before its holds: {proc.communicate()}")
        assert time.monotonic() < deadline, f"timed out waiting for {sorted(markers)}"
        time.sleep(0.1)
    return {name: int(m.read_text()) for name, m in markers.items()}


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is gone
    except FileNotFoundError:
        return False


def wait_gone(pids, timeout: float = 120.0) -> None:
    """Wait until none of `pids` is alive (a killed driver's workers must not outlive it)."""
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"processes still alive: {pids}"
        time.sleep(0.1)


def query(db: Path | str, sql: str) -> list[tuple]:
    """Rows of `sql` on a sweep's database: a folder (its spec says `output: out`, SQLite) or a database URL."""
    if isinstance(db, Path):
        with sqlite3.connect(db / "out" / "sweep.db") as conn:
            return conn.execute(sql).fetchall()
    engine = make_engine(db)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def results(db: Path | str) -> dict[str, list[tuple]]:
    """Per trial: every epoch row (epoch, images seen, losses, accuracy), in order."""
    out: dict[str, list[tuple]] = {}
    for name, *rest in query(db, """SELECT t.name, e.epoch, e.images_seen, e.train_loss, e.test_loss, e.test_acc
                                    FROM epoch_metrics e JOIN trials t ON t.trial_id = e.trial_id
                                    ORDER BY t.name, e.epoch"""):
        out.setdefault(name, []).append(tuple(rest))
    return out


def epochs_stored(db: Path | str) -> dict[str, list[int]]:
    return {name: [r[0] for r in rows] for name, rows in results(db).items()}


def wait_stored(db: Path | str, expected: dict[str, list[int]], timeout: float = 120.0) -> None:
    """Wait until the driver has stored exactly the epochs `expected`: reports reach it, and its recorder
    writes them, a moment after the trial sent them (a trial can stand at a hold before its report is stored)."""
    deadline = time.monotonic() + timeout
    while (stored := epochs_stored(db)) != expected:
        assert time.monotonic() < deadline, f"stored {stored}, expected {expected}"
        time.sleep(0.1)
