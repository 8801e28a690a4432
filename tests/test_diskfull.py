"""A full disk, for real: the sweep's output on a small tmpfs that runs out of space while a trial trains.

The tmpfs is mounted in a mount namespace of its own (`unshare --mount`, as root: the tests run as root), held
by a process that lives as long as the test: nothing is mounted on the machine, and the mount goes with the
process even if the test dies. The sweep runs inside that namespace (`nsenter`); the test reads and writes
the tmpfs through the holder's /proc/<pid>/root. The database is on the ordinary disk (the case is the
trials' folder running out of space, and the test reads the rows after the namespace is gone).

No timing: both running trials stop at a hold point (sweep/run/hold.py) in their epoch 2, the test fills the
tmpfs to the last page, then lets one trial go on: its next TensorBoard snapshots need a new page (three
snapshots of 45 scalars, about 9 KB, before its checkpoint), so it fails with ENOSPC. That failure ends the
sweep: no retry, the other held trial stopped cleanly (interrupted), the two never started left pending,
one line on stderr. Then the space is freed and the rerun completes every trial, every epoch once.
"""
import errno
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sweep.run.hold import release
from sweep_process import ENV, wait_held

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 3
TANH_ADAM, TANH_SGD = "tanh-xavier_uniform-adam-lr0.001-s0", "tanh-xavier_uniform-sgd-lr0.01-s0"
RELU_ADAM, RELU_SGD = "relu-xavier_uniform-adam-lr0.001-s0", "relu-xavier_uniform-sgd-lr0.01-s0"
# Both trials that run first (two at a time) stop mid-epoch 2, after epoch 1's checkpoint and report.
HOLDS = {TANH_ADAM: "epoch2.batch16", TANH_SGD: "epoch2.batch16"}


def spec(mount: Path, database: Path) -> dict:
    return {
        "name": "full", "dataset": {"name": "synthetic", "train_limit": 2000, "test_limit": 500},
        "epochs": EPOCHS, "stats_every": 10,
        "grid": {"activation": ["tanh", "relu"], "init": ["xavier_uniform"],
                 "optimizer": [{"name": "adam", "lr": 0.001}, {"name": "sgd", "lr": 0.01}]},
        "resources": {"cpu": 1, "max_concurrent": 2, "max_failures": 2},
        "output": str(mount / "out"), "database": f"sqlite:///{database}",
    }


class Namespace:
    """A private mount namespace with a tmpfs at `mount`, alive while its holder process (a `cat` reading a
    pipe the test holds) lives."""

    def __init__(self, mount: Path, size: str):
        mount.mkdir()
        self.mount = mount
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
             'mount -t tmpfs -o size="$2" tmpfs "$1" && echo mounted && exec cat', "sh", str(mount), size],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.holder.stdout.readline() == "mounted\n"

    def path(self, inside: Path) -> Path:
        """`inside` (a path under the mount) as this process reaches it: through the holder's root."""
        return Path(f"/proc/{self.holder.pid}/root{inside}")

    def run(self, args: list[str], cwd: Path, env: dict) -> subprocess.Popen:
        # Entering a mount namespace moves to its root: --wd keeps the working folder.
        return subprocess.Popen(["nsenter", "-t", str(self.holder.pid), "-m", f"--wd={cwd}", "--", *args], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def close(self) -> None:
        self.holder.stdin.close()
        self.holder.wait(timeout=60)


def fill(folder: Path) -> int:
    """Write a file into `folder` until its file system has not one page left; its size."""
    written = 0
    with open(folder / "filler", "wb", buffering=0) as fh:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    written += fh.write(b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return written


def query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def namespace(tmp_path):
    ns = Namespace(tmp_path / "mnt", "16m")
    yield ns
    ns.close()


def test_a_full_disk_ends_the_sweep_in_one_line_and_the_rerun_completes(namespace, tmp_path):
    db = tmp_path / "sweep.db"
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec(namespace.mount, db)))
    (tmp_path / "holds").mkdir()
    env = {**ENV, "SWEEP_HOLD": ",".join(f"{n}@{m}" for n, m in HOLDS.items()), "SWEEP_HOLD_DIR": str(tmp_path / "holds")}
    run = [sys.executable, "-m", "sweep.cli", "run", "spec.yaml", "--progress-interval", "60"]
    proc = namespace.run(run, tmp_path, env)
    try:
        wait_held(tmp_path, proc, HOLDS)
        out = namespace.mount / "out"
        assert fill(namespace.path(out)) > 0
        release(tmp_path / "holds", TANH_ADAM, HOLDS[TANH_ADAM])
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()

    # One line on stderr, what to do; exit 1.
    assert stderr == (f"Error: output folder {out} is full: free space and run `sweep run` again; "
                      "finished epochs are kept\n"), stdout + stderr
    assert proc.returncode == 1
    # One line for the failed attempt, not retried; the trial never started again.
    failed = [line for line in stdout.splitlines() if line.startswith("FAILED ")]
    assert failed == [f"FAILED {TANH_ADAM}: OSError: [Errno 28] No space left on device (attempt 1 of 3, not "
                      f"retried: no retry can fix this; traceback not kept: mnt/out/full/sweep.log: No space left "
                      "on device)"], stdout
    assert "resumed" not in stdout
    assert dict(query(db, "SELECT name, status FROM trials")) == {
        TANH_ADAM: "failed", TANH_SGD: "interrupted", RELU_ADAM: "pending", RELU_SGD: "pending"}
    # The stored error: the trial's own frame where it surfaced (TensorBoard's writer thread fails; the trial
    # sees it at its next write or flush) and the cause as raised there, in Python's order; no Ray wrapper.
    (error,), = query(db, f"SELECT error FROM trials WHERE name = '{TANH_ADAM}'")
    frame, source, cause = error.split("\n")
    assert cause == "OSError: [Errno 28] No space left on device"
    found = re.fullmatch(r'  File "sweep/run/trial\.py", line (\d+), in (\w+)', frame)
    assert found, error
    assert source == "    " + (ROOT / "sweep" / "run" / "trial.py").read_text().splitlines()[int(found.group(1)) - 1].strip()
    # Epoch 1 of both running trials was kept (stored, and checkpointed on the tmpfs).
    stored = query(db, """SELECT t.name, e.epoch FROM epoch_metrics e JOIN trials t USING (trial_id)
                          ORDER BY t.name, e.epoch""")
    assert stored == [(TANH_ADAM, 0), (TANH_ADAM, 1), (TANH_SGD, 0), (TANH_SGD, 1)]

    # Space freed: the rerun continues both from epoch 1 and runs the other two; every epoch once.
    namespace.path(out / "filler").unlink()
    again = namespace.run(run, tmp_path, ENV)
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stdout + stderr
    assert stderr == ""
    assert f"resumed {TANH_ADAM} from epoch 1" in stdout and f"resumed {TANH_SGD} from epoch 1" in stdout
    assert set(query(db, "SELECT status, error FROM trials")) == {("completed", None)}
    names = sorted([TANH_ADAM, TANH_SGD, RELU_ADAM, RELU_SGD])
    assert query(db, """SELECT t.name, e.epoch, e.images_seen FROM epoch_metrics e JOIN trials t USING (trial_id)
                        ORDER BY t.name, e.epoch""") == [(n, e, 2000 * e) for n in names for e in range(EPOCHS + 1)]
    # TensorBoard too: the failed trial's curve has each epoch once.
    events = EventAccumulator(str(namespace.path(out / "full" / TANH_ADAM)))
    events.Reload()
    assert [e.step for e in events.Scalars("accuracy/test")] == [2000 * e for e in range(EPOCHS + 1)]


FILL_THEN_WRITE_SQLITE = """
import sys
from pathlib import Path
from sqlalchemy import text
from sweep.db.engine import init_db, make_engine, session_scope
from sweep.run.runner import out_of_space
from test_diskfull import fill
folder = Path(sys.argv[1])
engine = make_engine(f"sqlite:///{folder}/sweep.db")
init_db(engine)
fill(folder)
try:
    with session_scope(engine) as s:
        s.execute(text("CREATE TABLE big (x BLOB)"))
        for _ in range(64):
            s.execute(text("INSERT INTO big VALUES (randomblob(65536))"))
except Exception as exc:
    print(type(exc).__name__, str(exc).splitlines()[0], out_of_space(exc), sep="|")
"""


def test_a_database_on_a_full_disk_is_told_from_other_driver_failures(tmp_path):
    """The driver's own writes: SQLite on a full disk fails with "database or disk is full" (wrapped by
    SQLAlchemy); the runner turns that into one line (out_of_space) instead of Tune's traceback. SQLite
    resolves /proc/<pid>/root to the path outside the namespace, so it runs inside."""
    from sweep.run.runner import out_of_space

    ns = Namespace(tmp_path / "mnt", "1m")
    try:
        env = {**ENV, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}
        proc = ns.run([sys.executable, "-c", FILL_THEN_WRITE_SQLITE, str(ns.mount)], tmp_path, env)
        out, err = proc.communicate(timeout=120)
    finally:
        ns.close()
    assert out == "OperationalError|(sqlite3.OperationalError) database or disk is full|True\n", err
    assert out_of_space(OSError(errno.ENOSPC, "No space left on device"))
    assert not out_of_space(ValueError("database or disk"))
    try:
        raise RuntimeError("Tune's wrapper") from OSError(errno.EDQUOT, "Disk quota exceeded")
    except RuntimeError as wrapped:
        assert out_of_space(wrapped)
