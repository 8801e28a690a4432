"""Nothing lost: real processes interrupted and killed, rows counted, numbers compared.

Every test runs the real CLI on a small synthetic sweep (4 trials x 6 epochs,
2 at a time) and compares with one uninterrupted reference run of the same spec.
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


def start(folder: Path, spec=SPEC) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    # A session of its own, as a terminal gives a foreground job: Ctrl-C goes to the group.
    return subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", "spec.yaml", "--progress-interval", "1"],
                            cwd=folder, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


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
    proc = start(tmp_path)
    wait_for(tmp_path, "SELECT MAX(epochs_done) >= 2 FROM trials")

    # Concurrent readers while the sweep writes: pandas through db/, the CLI report, a second run.
    engine = make_engine(f"sqlite:///{tmp_path / 'out' / 'sweep.db'}")
    assert "running" in set(trials_frame(engine, "syn")["status"])
    report = subprocess.run([sys.executable, "-m", "sweep.cli", "report", "--db",
                             f"sqlite:///{tmp_path / 'out' / 'sweep.db'}", "--format", "csv"],
                            cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    assert len(report.stdout.splitlines()) == 1 + 4
    second = subprocess.run([sys.executable, "-m", "sweep.cli", "run", "spec.yaml"], cwd=tmp_path, env=ENV,
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 1
    assert second.stderr == (f"Error: sweep syn is already running (pid {proc.pid}, lock out/syn/.lock); "
                             "wait for it to finish or stop it first\n")

    if signum == signal.SIGINT:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    else:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, out + err
    assert "interrupted: run the same command again to continue" in err
    statuses = [s for (s,) in query(tmp_path, "SELECT status FROM trials")]
    assert "running" not in statuses and "interrupted" in statuses
    # Only whole epochs were stored: each trial's rows are epochs 0..k without a gap.
    for rows in results(tmp_path).values():
        assert [r[0] for r in rows] == list(range(len(rows)))

    again = run(tmp_path)
    assert again.returncode == 0, again.stderr
    assert_complete_and_equal_to(reference, tmp_path)


def test_driver_killed_then_rerun_resumes_stale_trials(reference, tmp_path):
    proc = start(tmp_path)
    wait_for(tmp_path, "SELECT MAX(epochs_done) >= 2 FROM trials")
    proc.kill()  # SIGKILL: no handler runs, trials stay "running" in the database
    proc.communicate(timeout=60)
    assert "running" in [s for (s,) in query(tmp_path, "SELECT status FROM trials")]
    time.sleep(3)  # Ray's workers notice their driver is gone

    again = run(tmp_path)
    assert again.returncode == 0, again.stderr
    assert_complete_and_equal_to(reference, tmp_path)


def _trial_workers() -> list[int]:
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in ps.splitlines() if "ray::ImplicitFunc" in line]


def test_killed_worker_is_retried_from_its_checkpoint(reference, tmp_path):
    proc = start(tmp_path)
    wait_for(tmp_path, "SELECT MAX(epochs_done) >= 2 FROM trials")
    workers = _trial_workers()
    assert workers
    os.kill(workers[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out + err
    assert "done: 4 completed; 0 already finished before this run" in out
    assert_complete_and_equal_to(reference, tmp_path)


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
