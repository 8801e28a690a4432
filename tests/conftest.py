"""Shared fixtures: a real results database made without Ray; a real PostgreSQL server.

The trials run through run_trial and their reports through the driver's
DatabaseRecorder, exactly as in a sweep, minus the scheduling. The server
(tests/pg_server.py) is started once per session on a loopback port, only
by the tests that ask for it.
"""
from pathlib import Path

import pytest
import torch

from sweep.db.engine import init_db, make_engine
from events import record_trials
from pg_server import PostgresServer
from sweep.data.datasets import synthetic
from sweep.spec.grid import expand_grid
from sweep.run.records import record_plan
from sweep.spec.spec import parse_spec

RECORDED_SPEC = {
    "name": "rec", "dataset": {"name": "synthetic", "train_limit": 256, "test_limit": 128},
    "epochs": 3, "batch_size": 32, "stats_every": 4,
    "grid": {"activation": ["sigmoid", "relu"], "init": ["xavier_uniform"],
             "optimizer": [{"name": "sgd", "lr": 0.01}, {"name": "adam", "lr": 0.01}], "seed": [0, 1]},
}


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One torch thread in the test processes, as a 1-CPU trial has (sweeps' trials set their own): on two
    busy cores (`-n 2`, or other work), torch's default two threads per process oversubscribe them and
    in-process training crawls: tests/test_bundle.py took 163 s with two threads, 25 s with one, on the
    2-core machine at a load of about 4 (tests/test_fused.py pins one thread for the same reason)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def recorded_db(tmp_path_factory) -> Path:
    """Folder with sweep.db holding the 8 completed trials of RECORDED_SPEC."""
    out = tmp_path_factory.mktemp("recorded")
    spec = parse_spec({**RECORDED_SPEC, "output": str(out)})
    trials = expand_grid(spec)
    engine = make_engine(spec.database_url)
    init_db(engine)
    ids = record_plan(engine, spec, trials, [])
    record_trials(engine, ids, trials, synthetic(256, 128))
    return out


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL server on 127.0.0.1 (password login only), stopped and deleted afterwards."""
    server = PostgresServer.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """An empty database's URL: a fresh SQLite file, or a fresh schema on the test PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'r.db'}"
    return request.getfixturevalue("pg_server").schema_url()
