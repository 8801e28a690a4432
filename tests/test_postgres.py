"""PostgreSQL for real: sweeps through the CLI against a throwaway server, compared with SQLite.

The server (tests/pg_server.py) listens on 127.0.0.1 with password logins
only. A small synthetic sweep (2 trials x 3 epochs, 2 at a time) runs on
SQLite and on PostgreSQL and must store the same rows, value for value; a
driver killed by SIGKILL at held moments (sweep/run/hold.py) and rerun must
store exactly what the uninterrupted run stored; `sweep report` reads while the sweep is
held mid-write; `sweep plot` draws the same pictures from either database; a
wrong password, a closed port and a missing driver each give one line. The password must never appear in any output or file.
"""
import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text

from sweep.db import make_engine, safe_url, trials_frame
from sweep.cli import main
from sweep_process import epochs_stored, query, results, start, wait_gone, wait_held, wait_stored

EPOCHS = 3
SPEC = {
    "name": "syn", "dataset": {"name": "synthetic", "train_limit": 640, "test_limit": 128},
    "epochs": EPOCHS, "stats_every": 4,
    "grid": {"activation": ["tanh"], "init": ["xavier_uniform"],
             "optimizer": [{"name": "adam", "lr": 0.001}, {"name": "sgd", "lr": 0.01}]},
    "resources": {"cpu": 1, "max_concurrent": 2},
    "output": "out",
}
ADAM, SGD = "tanh-xavier_uniform-adam-lr0.001-s0", "tanh-xavier_uniform-sgd-lr0.01-s0"
# 640 images in batches of 64: 10 batches per epoch.
MID_EPOCH = "batch5"


def finish(proc: subprocess.Popen, outputs: list[str]) -> int:
    """Wait for `proc`; its stdout and stderr go to `outputs` (to be searched for the password)."""
    out, err = proc.communicate(timeout=600)
    outputs += [out, err]
    return proc.returncode


# Per table, the natural key (after the trial's name) and the columns that are not results: row ids, the clock.
NATURAL_KEYS = {"epoch_metrics": ("epoch",), "layer_stats": ("step", "layer", "kind")}
NOT_RESULTS = ("epoch_metric_id", "layer_stat_id", "trial_id", "wall_seconds")


def rows_of(url: str, table: str) -> dict[tuple, dict]:
    """Every row of `table` by its natural key, the trial's name first: all its columns but NOT_RESULTS."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(f"SELECT t.name AS trial, x.* FROM {table} x JOIN trials t "
                                     "ON t.trial_id = x.trial_id")).mappings().all()
    finally:
        engine.dispose()
    return {(row["trial"], *(row[k] for k in NATURAL_KEYS[table])):
            {k: v for k, v in row.items() if k not in NOT_RESULTS} for row in rows}


def assert_same_results(reference: str, url: str) -> None:
    """Every trial completed; every epoch row and statistics row the reference's, column for column
    (a resumed trial gives the same numbers as an uninterrupted one, and both databases store doubles)."""
    assert dict(query(url, "SELECT name, status FROM trials")) == {ADAM: "completed", SGD: "completed"}
    assert all(len(rows) == EPOCHS + 1 for rows in results(url).values())
    # Per trial: epochs 0..3; 3 snapshots an epoch (after batches 4, 8 and 10) of 9 layer rows each.
    counts = {"epoch_metrics": 2 * (EPOCHS + 1), "layer_stats": 2 * EPOCHS * 3 * 9}
    for table in NATURAL_KEYS:
        got, want = rows_of(url, table), rows_of(reference, table)
        assert len(got) == len(want) == counts[table], table
        assert got == want, table


def assert_no_password(password: str, outputs: list[str], *folders: Path) -> None:
    """`password` is in no captured output and in no file under `folders` (TensorBoard, checkpoints, Ray state)."""
    assert outputs and all(password not in text for text in outputs)
    files = [p for folder in folders for p in folder.rglob("*") if p.is_file()]
    assert files
    assert [p for p in files if password.encode() in p.read_bytes()] == []


def pg_spec(url: str) -> dict:
    return {**SPEC, "database": url}


@pytest.fixture(scope="module")
def runs(pg_server, tmp_path_factory):
    """The same sweep, uninterrupted, on SQLite and on PostgreSQL, run side by side.

    Returns (SQLite URL, PostgreSQL URL, PostgreSQL run's folder, its outputs).
    """
    sqlite_folder, pg_folder = tmp_path_factory.mktemp("on-sqlite"), tmp_path_factory.mktemp("on-postgres")
    url = pg_server.url(pg_server.create_database())
    procs = [start(sqlite_folder, SPEC), start(pg_folder, pg_spec(url))]
    outputs: list[list[str]] = [[], []]
    codes = [finish(p, o) for p, o in zip(procs, outputs)]
    assert codes == [0, 0], outputs
    return f"sqlite:///{sqlite_folder / 'out' / 'sweep.db'}", url, pg_folder, outputs[1]


def test_a_sweep_on_postgresql_stores_what_the_same_sweep_on_sqlite_stores(runs, pg_server):
    reference, url, folder, outputs = runs
    assert f"database {safe_url(url)}," in outputs[0]  # the run names its database, password masked
    assert_same_results(reference, url)
    frame = trials_frame(make_engine(url), "syn")
    assert sorted(frame["name"]) == [ADAM, SGD] and set(frame["epochs_done"]) == {EPOCHS}
    assert_no_password(pg_server.password, outputs, folder / "out")
    # Nor in the results: the stored spec names the database with its password masked.
    (spec_json,), = query(url, "SELECT spec_json FROM sweeps")
    assert pg_server.password not in spec_json and json.loads(spec_json)["database"] == safe_url(url)


@pytest.mark.parametrize("fork", [True, False])
def test_sweep_plot_on_postgresql_draws_what_it_draws_on_sqlite(runs, tmp_path, capsys, monkeypatch, fork):
    """In two processes (the reading one opens connections of its own) and in one; a bad --epochs found by
    the reading process is the same one-line error."""
    import matplotlib.image
    import numpy as np

    import sweep.view.forked

    reference, url, _, _ = runs
    monkeypatch.setattr(sweep.view.forked, "spare_core", lambda: fork)
    for name, where in (("sqlite", reference), ("postgresql", url)):
        assert main(["plot", "--db", where, "--out", str(tmp_path / name)]) == 0
    pictures = ("accuracy.png", "depth.png", "dynamics.png", "heatmap.png")
    assert capsys.readouterr().out.split() == [str(tmp_path / n / p) for n in ("sqlite", "postgresql") for p in pictures]
    for picture in pictures:
        np.testing.assert_array_equal(matplotlib.image.imread(tmp_path / "postgresql" / picture),
                                      matplotlib.image.imread(tmp_path / "sqlite" / picture))
    assert main(["plot", "--db", url, "--out", str(tmp_path / "x"), "--epochs", "1,7"]) == 2
    assert capsys.readouterr().err == "Error: --epochs: no statistics for epoch 7; available: 1, 2, 3\n"
    assert not (tmp_path / "x").exists()


def _while_held_then_kill(proc: subprocess.Popen, folder: Path, url: str, holds: dict[str, str],
                          outputs: list[str], capsys) -> None:
    """Wait for the holds; read while the sweep holds its connections; SIGKILL the driver; wait for its workers."""
    workers = wait_held(folder, proc, holds)
    wait_stored(url, {ADAM: [0, 1], SGD: [0, 1]})

    # Readers in this process while the sweep's driver holds its connections: pandas through db/, the CLI report.
    assert set(trials_frame(make_engine(url), "syn")["status"]) == {"running"}
    code = main(["report", "--db", url, "--format", "csv"])
    report = capsys.readouterr()
    outputs += [report.out, report.err]
    assert code == 0, report.err
    assert len(report.out.splitlines()) == 1 + 2

    proc.kill()  # SIGKILL: no handler runs, the trials stay "running"
    finish(proc, outputs)
    assert dict(query(url, "SELECT name, status FROM trials")) == {ADAM: "running", SGD: "running"}
    assert epochs_stored(url) == {ADAM: [0, 1], SGD: [0, 1]}
    wait_gone(workers.values())  # the Ray instance the driver started goes down with it


def test_driver_killed_on_postgresql_then_rerun_stores_every_epoch_once(runs, pg_server, tmp_path, capsys):
    reference = runs[0]
    url = pg_server.url(pg_server.create_database())
    outputs: list[str] = []
    # One trial between its epoch-2 checkpoint and that epoch's report, the other in the middle of epoch 2.
    holds = {ADAM: "saved2", SGD: f"epoch2.{MID_EPOCH}"}
    proc = start(tmp_path, pg_spec(url), holds)
    try:
        _while_held_then_kill(proc, tmp_path, url, holds, outputs, capsys)
    finally:
        if proc.poll() is None:  # a failed check must not leave a held sweep behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()

    again = start(tmp_path, pg_spec(url))
    assert finish(again, outputs) == 0, outputs[-1]
    # ADAM's epoch-2 report, lost with the driver, is replayed from its checkpoint; SGD restarts epoch 2.
    assert f"resumed {ADAM} from epoch 2" in outputs[-2] and f"resumed {SGD} from epoch 1" in outputs[-2]
    assert_same_results(reference, url)
    assert_no_password(pg_server.password, outputs, tmp_path / "out")


def test_database_errors_are_one_line_without_the_password_and_write_nothing(pg_server, tmp_path, capsys, caplog):
    database = pg_server.create_database()
    wrong = "wrong-" + pg_server.password[::-1]
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    cases = {
        "wrong-password": pg_server.url(database, password=wrong),
        "closed-port": pg_server.url(database).replace(f":{pg_server.port}/", f":{closed}/"),
        "missing-driver": pg_server.url(database, driver="pg8000"),
    }
    # `sweep run` in this process: the database is opened before Ray starts, so each case fails in a moment.
    err = {}
    for name, url in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "spec.yaml").write_text(yaml.safe_dump(pg_spec(url)))
        assert main(["run", str(tmp_path / name / "spec.yaml")]) == 1, name
        captured = capsys.readouterr()
        assert captured.out == "", name
        err[name] = captured.err
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["spec.yaml"]  # no out/, no lock

    shown = {name: safe_url(url) for name, url in cases.items()}
    assert all(e.count("\n") == 1 for e in err.values()), err
    assert err["wrong-password"].startswith(f"Error: database {shown['wrong-password']}: OperationalError: ")
    assert 'password authentication failed for user "sweep"' in err["wrong-password"]
    assert err["closed-port"].startswith(f"Error: database {shown['closed-port']}: OperationalError: ")
    assert "Connection refused" in err["closed-port"]
    assert err["missing-driver"] == (f"Error: database {shown['missing-driver']}: "
                                     "ModuleNotFoundError: No module named 'pg8000'\n")
    for secret in (wrong, pg_server.password):
        assert secret not in "".join(err.values()) + caplog.text
    assert query(pg_server.url(database), "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]


def test_the_password_can_stay_out_of_the_url(pg_server, monkeypatch):
    # libpq reads PGPASSWORD (or ~/.pgpass) when the URL has none: a spec need not hold the password.
    url = f"postgresql+psycopg://sweep@127.0.0.1:{pg_server.port}/postgres"
    monkeypatch.setenv("PGPASSWORD", pg_server.password)
    assert query(url, "SELECT current_user") == [("sweep",)]
