"""Nothing lost: real processes interrupted and killed, rows counted, numbers compared.

Every test runs the real CLI on a small synthetic sweep (4 trials x 6 epochs,
2 at a time) and compares with one uninterrupted reference run of the same spec.
No test hopes a timer lands at the right moment: hold points (sweep/hold.py)
stop the running trials exactly where each case is about, the test waits for
their files, then strikes.
"""
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from db import make_engine, trials_frame

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 6
SPEC = {
    "name": "syn", "dataset": {"name": "synthetic", "train_limit": 6000, "test_limit": 500},
    "epochs": EPOCHS, "stats_every": 40,
    "grid": {"activation": ["tanh", "relu"], "init": ["xavier_uniform"],
             "optimizer": [{"name": "adam", "lr": 0.001}, {"name": "sgd", "lr": 0.01}]},
    "resources": {"cpu": 1, "max_concurrent": 2},
    "output": "out",
}
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
# The grid's first two trials: the two that run first, 2 at a time.
TANH_ADAM, TANH_SGD = "tanh-xavier_uniform-adam-lr0.001-s0", "tanh-xavier_uniform-sgd-lr0.01-s0"
# 6000 images in batches of 64: 94 batches per epoch, statistics at batches 40 and 80.
MID_EPOCH = "batch50"


def start(folder: Path, spec=SPEC, holds: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `sweep run` in `folder`; `holds` maps a trial name to the moment it is to stop at."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    env = dict(ENV)
    if holds:
        (folder / "holds").mkdir(exist_ok=True)
        env.update(SWEEP_HOLD=",".join(f"{name}@{moment}" for name, moment in holds.items()),
                   SWEEP_HOLD_DIR=str(folder / "holds"))
    # A session of its own, as a terminal gives a foreground job: Ctrl-C goes to the group.
    return subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", "spec.yaml", "--progress-interval", "1"],
                            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_held(folder: Path, proc: subprocess.Popen, holds: dict[str, str], timeout: float = 300.0) -> dict[str, int]:
    """Wait until every trial of `holds` stands at its moment; their worker pids, by trial name."""
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


def epochs_stored(folder: Path) -> dict[str, list[int]]:
    return {name: [r[0] for r in rows] for name, rows in results(folder).items()}


def run(folder: Path, spec=SPEC) -> subprocess.CompletedProcess:
    proc = start(folder, spec)
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def query(folder: Path, sql: str):
    with sqlite3.connect(folder / "out" / "sweep.db") as conn:
        return conn.execute(sql).fetchall()


def wait_for(folder: Path, sql: str, timeout: float = 180.0):
    """Poll the database (as a concurrent reader would) until `sql` returns a true first value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (folder / "out" / "sweep.db").exists():
            try:
                row = query(folder, sql)
            except sqlite3.OperationalError as exc:  # tables not created yet
                assert "no such table" in str(exc)
                row = []
            if row and row[0][0]:
                return row[0][0]
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for: {sql}")


def results(folder: Path) -> dict[str, list[tuple]]:
    """Per trial: every epoch row (epoch, images seen, losses, accuracy), in order."""
    rows = query(folder, """SELECT t.name, e.epoch, e.images_seen, e.train_loss, e.test_loss, e.test_acc
                            FROM epoch_metrics e JOIN trials t USING (trial_id) ORDER BY t.name, e.epoch""")
    out: dict[str, list[tuple]] = {}
    for name, *rest in rows:
        out.setdefault(name, []).append(tuple(rest))
    return out


def assert_complete_and_equal_to(reference: Path, folder: Path) -> None:
    assert dict(query(folder, "SELECT name, status FROM trials")) == dict.fromkeys(results(reference), "completed")
    assert results(folder) == results(reference)  # every epoch exactly once, same numbers
    for table in ("layer_stats",):
        assert query(folder, f"SELECT COUNT(*) FROM {table}") == query(reference, f"SELECT COUNT(*) FROM {table}")
    assert query(folder, "SELECT COUNT(*) FROM layer_stats GROUP BY trial_id, step, layer, kind HAVING COUNT(*) > 1") == []
    for name in results(reference):
        acc = EventAccumulator(str(folder / "out" / "syn" / name))
        acc.Reload()
        steps = [e.step for e in acc.Scalars("accuracy/test")]
        assert steps == [6000 * e for e in range(EPOCHS + 1)], name  # no duplicated or overlapping points
        train_steps = [e.step for e in acc.Scalars("loss/train")]
        assert train_steps == sorted(set(train_steps)), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("reference")
    done = run(folder)
    assert done.returncode == 0, done.stderr
    assert len(results(folder)) == 4 and all(len(r) == EPOCHS + 1 for r in results(folder).values())
    return folder


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_cleanly_and_the_rerun_completes(reference, tmp_path, signum, code):
    # One trial mid-way through its first epoch (TensorBoard points written, no
    # checkpoint yet), the other between its epoch-2 checkpoint and that epoch's report.
    holds = {TANH_ADAM: f"epoch1.{MID_EPOCH}", TANH_SGD: "saved2"}
    proc = start(tmp_path, holds=holds)
    wait_held(tmp_path, proc, holds)
    assert epochs_stored(tmp_path) == {TANH_ADAM: [0], TANH_SGD: [0, 1]}

    # Concurrent readers while the sweep writes: pandas through db/, the CLI report, a second run.
    engine = make_engine(f"sqlite:///{tmp_path / 'out' / 'sweep.db'}")
    assert set(trials_frame(engine, "syn")["status"]) == {"running", "pending"}
    report = subprocess.run([sys.executable, "-m", "sweep.cli", "report", "--db",
                             f"sqlite:///{tmp_path / 'out' / 'sweep.db'}", "--format", "csv"],
                            cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    assert len(report.stdout.splitlines()) == 1 + 4
    second = subprocess.run([sys.executable, "-m", "sweep.cli", "run", "spec.yaml"], cwd=tmp_path, env=ENV,
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 1
    lock = tmp_path.resolve() / "out" / "syn" / ".lock"
    assert second.stderr == (f"Error: sweep syn is already running (pid {proc.pid}, lock {lock}); "
                             "wait for it to finish or stop it first\n")

    if signum == signal.SIGINT:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    else:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, out + err
    assert "interrupted: run the same command again to continue" in err
    assert dict(query(tmp_path, "SELECT name, status FROM trials")) == {
        TANH_ADAM: "interrupted", TANH_SGD: "interrupted",
        "relu-xavier_uniform-adam-lr0.001-s0": "pending", "relu-xavier_uniform-sgd-lr0.01-s0": "pending"}
    # Only whole epochs were stored; the held report of epoch 2 never reached the driver.
    assert epochs_stored(tmp_path) == {TANH_ADAM: [0], TANH_SGD: [0, 1]}

    again = run(tmp_path)
    assert again.returncode == 0, again.stderr
    # Started over (no checkpoint) and continued from epoch 2, its report replayed.
    assert f"resumed {TANH_SGD} from epoch 2" in again.stdout and TANH_ADAM + " from" not in again.stdout
    assert_complete_and_equal_to(reference, tmp_path)


def test_driver_killed_then_rerun_resumes_stale_trials(reference, tmp_path):
    holds = {TANH_ADAM: "saved2", TANH_SGD: f"epoch3.{MID_EPOCH}"}
    proc = start(tmp_path, holds=holds)
    workers = wait_held(tmp_path, proc, holds)
    proc.kill()  # SIGKILL: no handler runs, trials stay "running" in the database
    proc.communicate(timeout=60)
    assert dict(query(tmp_path, f"SELECT name, status FROM trials WHERE name IN ('{TANH_ADAM}', '{TANH_SGD}')")) == {
        TANH_ADAM: "running", TANH_SGD: "running"}
    assert epochs_stored(tmp_path) == {TANH_ADAM: [0, 1], TANH_SGD: [0, 1, 2]}
    wait_gone(workers.values())  # the Ray instance the driver started goes down with it

    again = run(tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"resumed {TANH_ADAM} from epoch 2" in again.stdout
    assert f"resumed {TANH_SGD} from epoch 2" in again.stdout
    assert_complete_and_equal_to(reference, tmp_path)


def test_killed_worker_is_retried_from_its_checkpoint(reference, tmp_path):
    holds = {TANH_SGD: f"epoch3.{MID_EPOCH}"}
    proc = start(tmp_path, holds=holds)
    workers = wait_held(tmp_path, proc, holds)
    os.kill(workers[TANH_SGD], signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out + err
    assert "done: 4 completed; 0 already finished before this run" in out
    assert_complete_and_equal_to(reference, tmp_path)
    # Continued from its checkpoint (a fresh start would have deleted the first attempt's events).
    assert len(list((tmp_path / "out" / "syn" / TANH_SGD).glob("events.out.tfevents.*"))) == 2


def test_raising_epochs_extends_finished_trials(reference, tmp_path):
    short = {**SPEC, "epochs": 3}
    assert run(tmp_path, short).returncode == 0
    assert set(query(tmp_path, "SELECT epochs_done FROM trials")) == {(3,)}
    longer = run(tmp_path, SPEC)
    assert longer.returncode == 0, longer.stderr
    assert "sweep syn: 4 trials (0 already finished)" in longer.stdout
    assert_complete_and_equal_to(reference, tmp_path)
    # Not started over: each trial continued from its epoch-3 checkpoint.
    for name in results(reference):
        assert f"resumed {name} from epoch 3" in longer.stdout


def test_trial_retries_are_bounded_and_the_failure_recorded(tmp_path):
    spec = {**SPEC, "epochs": 1, "grid": {"activation": ["relu"],
                                          "optimizer": [{"name": "sgd", "lr": 0.1, "nesterov": True}]},
            "resources": {"max_failures": 1}}
    done = run(tmp_path, spec)
    assert done.returncode == 1
    (status, error), = query(tmp_path, "SELECT status, error FROM trials")
    assert status == "failed" and "ValueError: Nesterov momentum requires a momentum and zero dampening" in error
