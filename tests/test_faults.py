"""Nothing lost: real processes interrupted and killed, then every stored number compared.

Every test runs the real CLI on a small synthetic sweep (4 trials x 3 epochs,
2 Ray trials at a time) and compares with one uninterrupted reference run of
the same spec, once unfused and once fused (two bundles of two: relu's and
tanh's); the fused signal case continues unfused. No test hopes a timer lands at the right moment: hold points
(sweep/run/hold.py) stop the running trials exactly where each case is about, the
test waits for their files, then strikes. A fused bundle stops as a whole
when one member holds; the cases hold the last member of a bundle to save
(tanh-sgd) so that both members stand at the same checkpoint.

What is compared: every row of epoch_metrics and layer_stats, by its natural
key, column by column (all but row ids and the wall clock), against the
reference of the same mode: exactly, as a resumed trial gives the same
numbers as an uninterrupted one. The signal case's tanh trials, trained fused
and then unfused, against an uninterrupted run that did the same (two epochs
fused, then the third unfused): exactly too, not within a tolerance (fused and
unfused float32 training part by more than one can derive: tests/test_fused.py).
"""
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sweep.db import make_engine, trials_frame
from sweep_process import ENV, epochs_stored, query, results, start, wait_gone, wait_held, wait_stored

EPOCHS = 3
IMAGES = 2000
SPEC = {
    "name": "syn", "dataset": {"name": "synthetic", "train_limit": IMAGES, "test_limit": 500},
    "epochs": EPOCHS, "stats_every": 10,
    "grid": {"activation": ["tanh", "relu"], "init": ["xavier_uniform"],
             "optimizer": [{"name": "adam", "lr": 0.001}, {"name": "sgd", "lr": 0.01}]},
    "resources": {"cpu": 1, "max_concurrent": 2},
    "output": "out",
}
TANH_ADAM, TANH_SGD = "tanh-xavier_uniform-adam-lr0.001-s0", "tanh-xavier_uniform-sgd-lr0.01-s0"
RELU_ADAM, RELU_SGD = "relu-xavier_uniform-adam-lr0.001-s0", "relu-xavier_uniform-sgd-lr0.01-s0"
# 2000 images in batches of 64: 32 batches per epoch, statistics at batches 10, 20, 30 and 31 (the last full one).
MID_EPOCH = "batch16"
# The reference of a run that trained its first two epochs fused and the last unfused.
FUSED_THEN_UNFUSED = "fused, then unfused"
# Per table, the natural key (after the trial's name) and the columns that are not results: row ids, the clock.
NATURAL_KEYS = {"epoch_metrics": ("epoch",), "layer_stats": ("step", "layer", "kind")}
NOT_RESULTS = ("epoch_metric_id", "layer_stat_id", "trial_id", "wall_seconds")


def spec_for(fuse) -> dict:
    return {**SPEC, "resources": {**SPEC["resources"], "fuse": fuse}}


def run(folder: Path, spec=SPEC) -> subprocess.CompletedProcess:
    proc = start(folder, spec)
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


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


def rows_of(folder: Path, table: str) -> dict[tuple, dict]:
    """Every row of `table` by its natural key, the trial's name first: all its columns but NOT_RESULTS."""
    with sqlite3.connect(folder / "out" / "sweep.db") as conn:
        cursor = conn.execute(f"SELECT t.name AS trial, x.* FROM {table} x JOIN trials t ON t.trial_id = x.trial_id")
        names = [c[0] for c in cursor.description]
        rows = [dict(zip(names, values)) for values in cursor]
    return {(row["trial"], *(row[k] for k in NATURAL_KEYS[table])):
            {k: v for k, v in row.items() if k not in NOT_RESULTS} for row in rows}


def assert_complete_and_equal_to(reference: Path, folder: Path, fused_on_the_way: tuple[str, ...] = (),
                                 mixed: Path | None = None) -> None:
    """Every trial completed; every epoch row and statistics row the reference's, value for value, exactly;
    for the trials `fused_on_the_way` (that changed between fused and unfused on the way) the rows of
    `mixed`, a reference that trained them the same way."""
    assert dict(query(folder, "SELECT name, status FROM trials")) == dict.fromkeys(results(reference), "completed")
    for table in NATURAL_KEYS:
        got, want = rows_of(folder, table), rows_of(reference, table)
        if fused_on_the_way:
            want.update({k: v for k, v in rows_of(mixed, table).items() if k[0] in fused_on_the_way})
        assert got.keys() == want.keys(), table  # every epoch and snapshot, none missing, none extra
        assert got == want, table
    for name in results(reference):
        acc = EventAccumulator(str(folder / "out" / "syn" / name))
        acc.Reload()
        steps = [e.step for e in acc.Scalars("accuracy/test")]
        assert steps == [IMAGES * e for e in range(EPOCHS + 1)], name  # no duplicated or overlapping points
        train_steps = [e.step for e in acc.Scalars("loss/train")]
        assert train_steps == sorted(set(train_steps)), name


def event_files(folder: Path, name: str) -> int:
    return len(list((folder / "out" / "syn" / name).glob("events.out.tfevents.*")))


# Each case unfused and fused; a module-scoped parameter, so each mode's reference runs once.
BOTH_MODES = pytest.mark.parametrize("fuse", ["off", 2], ids=["unfused", "fused"], scope="module")


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """The uninterrupted run of each mode, made when first asked for and kept for the module."""
    made: dict = {}

    def of(fuse) -> Path:
        if fuse not in made:
            folder = tmp_path_factory.mktemp("reference")
            if fuse == FUSED_THEN_UNFUSED:
                first = run(folder, {**spec_for(2), "epochs": 2})
                assert first.returncode == 0, first.stderr
                done = run(folder, spec_for("off"))
                assert done.returncode == 0, done.stderr
                assert len(results(folder)) == 4 and all(len(r) == EPOCHS + 1 for r in results(folder).values())
                made[fuse] = folder
                return folder
            done = run(folder, spec_for(fuse))
            assert done.returncode == 0, done.stderr
            assert len(results(folder)) == 4 and all(len(r) == EPOCHS + 1 for r in results(folder).values())
            assert ("fused: 4 trials in 2 bundle(s) of up to 2" in done.stdout) == (fuse == 2)
            made[fuse] = folder
        return made[fuse]
    return of


@pytest.fixture(scope="module")
def reference(references, fuse) -> Path:
    return references(fuse)


# Per mode: where each running trial (or bundle) holds, and what the driver has stored by then.
# Unfused, tanh-adam and tanh-sgd run first; fused, the relu bundle and the tanh bundle.
BEFORE_FIRST_CHECKPOINT_AND_BETWEEN_CHECKPOINT_AND_REPORT = {
    "off": ({TANH_ADAM: f"epoch1.{MID_EPOCH}", TANH_SGD: "saved2"}, {TANH_ADAM: [0], TANH_SGD: [0, 1]}),
    2: ({RELU_ADAM: f"epoch1.{MID_EPOCH}", TANH_SGD: "saved2"},
        {RELU_ADAM: [0], RELU_SGD: [0], TANH_ADAM: [0, 1, 2], TANH_SGD: [0, 1]}),
}


@BOTH_MODES
def test_signal_stops_cleanly_and_the_rerun_completes(references, fuse, tmp_path):
    # One trial mid-way through its first epoch (TensorBoard points written, no
    # checkpoint yet), the other between its epoch-2 checkpoint and that epoch's report.
    # Ctrl-C unfused, SIGTERM fused (the driver turns SIGTERM into Ctrl-C: the trials see one path).
    signum, code = (signal.SIGINT, 130) if fuse == "off" else (signal.SIGTERM, 143)
    holds, stored = BEFORE_FIRST_CHECKPOINT_AND_BETWEEN_CHECKPOINT_AND_REPORT[fuse]
    proc = start(tmp_path, spec_for(fuse), holds=holds)
    wait_held(tmp_path, proc, holds)
    wait_stored(tmp_path, stored)

    # Concurrent readers while the sweep writes: pandas through db/, the CLI report, a second run.
    engine = make_engine(f"sqlite:///{tmp_path / 'out' / 'sweep.db'}")
    assert set(trials_frame(engine, "syn")["status"]) == ({"running", "pending"} if fuse == "off" else {"running"})
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
    started = {TANH_ADAM, TANH_SGD} if fuse == "off" else {TANH_ADAM, TANH_SGD, RELU_ADAM, RELU_SGD}
    assert dict(query(tmp_path, "SELECT name, status FROM trials")) == {
        name: "interrupted" if name in started else "pending" for name in (TANH_ADAM, TANH_SGD, RELU_ADAM, RELU_SGD)}
    # Only whole epochs were stored; the held report of epoch 2 never reached the driver.
    assert epochs_stored(tmp_path) == stored

    # Unfused, the rerun is unfused too; fused, it is unfused: a sweep interrupted fused continues unfused
    # (the other way round is tests/test_bundle.py's).
    again = run(tmp_path, spec_for("off"))
    assert again.returncode == 0, again.stderr
    # Started over where there was no checkpoint; continued from epoch 2, its report replayed.
    resumed = {TANH_SGD} if fuse == "off" else {TANH_ADAM, TANH_SGD}
    for name in started:
        assert (f"resumed {name} from epoch 2" in again.stdout) == (name in resumed), name
    # Fused: the relu trials started over unfused, so they equal the unfused run exactly; the tanh trials'
    # first 2 epochs trained fused, the last unfused: exactly a run that trained them so, uninterrupted.
    assert_complete_and_equal_to(references("off"), tmp_path,
                                 fused_on_the_way=(TANH_ADAM, TANH_SGD) if fuse == 2 else (),
                                 mixed=references(FUSED_THEN_UNFUSED) if fuse == 2 else None)


@BOTH_MODES
def test_driver_killed_then_rerun_resumes_stale_trials(reference, fuse, tmp_path):
    # Unfused: one trial between checkpoint 2 and its report, one mid-epoch 3.
    # Fused: the tanh bundle between checkpoint 2 and tanh-sgd's report, the relu bundle mid-epoch 3.
    holds = ({TANH_ADAM: "saved2", TANH_SGD: f"epoch3.{MID_EPOCH}"} if fuse == "off"
             else {TANH_SGD: "saved2", RELU_ADAM: f"epoch3.{MID_EPOCH}"})
    stored = ({TANH_ADAM: [0, 1], TANH_SGD: [0, 1, 2]} if fuse == "off"
              else {TANH_ADAM: [0, 1, 2], TANH_SGD: [0, 1], RELU_ADAM: [0, 1, 2], RELU_SGD: [0, 1, 2]})
    proc = start(tmp_path, spec_for(fuse), holds=holds)
    workers = wait_held(tmp_path, proc, holds)
    wait_stored(tmp_path, stored)
    proc.kill()  # SIGKILL: no handler runs, trials stay "running" in the database
    proc.communicate(timeout=60)
    assert {name: status for name, status in query(tmp_path, "SELECT name, status FROM trials")
            if name in stored} == dict.fromkeys(stored, "running")
    wait_gone(workers.values())  # the Ray instance the driver started goes down with it

    again = run(tmp_path, spec_for(fuse))
    assert again.returncode == 0, again.stderr
    for name in stored:
        assert f"resumed {name} from epoch 2" in again.stdout, name
    assert_complete_and_equal_to(reference, tmp_path)


@BOTH_MODES
def test_killed_worker_is_retried_from_its_checkpoint(reference, fuse, tmp_path):
    holds = {TANH_ADAM: f"epoch3.{MID_EPOCH}"}
    proc = start(tmp_path, spec_for(fuse), holds=holds)
    workers = wait_held(tmp_path, proc, holds)
    os.kill(workers[TANH_ADAM], signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out + err
    assert "done: 4 completed; 0 already finished before this run" in out
    assert_complete_and_equal_to(reference, tmp_path)
    # Continued from its checkpoint (a fresh start would have deleted the first attempt's events);
    # fused, its bundle partner too.
    assert event_files(tmp_path, TANH_ADAM) == 2
    assert event_files(tmp_path, TANH_SGD) == (1 if fuse == "off" else 2)


@BOTH_MODES
def test_raising_epochs_extends_finished_trials(reference, fuse, tmp_path):
    short = {**spec_for(fuse), "epochs": 2}
    assert run(tmp_path, short).returncode == 0
    assert set(query(tmp_path, "SELECT epochs_done FROM trials")) == {(2,)}
    longer = run(tmp_path, spec_for(fuse))
    assert longer.returncode == 0, longer.stderr
    assert "sweep syn: 4 trials (0 already finished)" in longer.stdout
    assert_complete_and_equal_to(reference, tmp_path)
    # Not started over: each trial continued from its epoch-2 checkpoint.
    for name in results(reference):
        assert f"resumed {name} from epoch 2" in longer.stdout
