"""Database: schema version, idempotent upserts, rollback, NaN, frames."""
import math
import sqlite3

import pytest
from sqlalchemy import func, select

from db.engine import DatabaseError, init_db, make_engine, session_scope
from db.queries import (ensure_sweep, ensure_trials, epoch_metrics_frame, layer_stats_frame, record_epoch,
                        record_layer_stats, sweep_names, trials_frame, update_trial)
from db.schema import EpochMetric, LayerStat, SchemaInfo, Trial


def trial_row(h, seed=0):
    return {"config_hash": h, "name": f"relu-x-s{seed}", "label": "relu-x", "model": "lenet",
            "activation": "relu", "init": "default", "gain": 1.0, "optimizer": "adam", "lr": 0.001,
            "optimizer_params_json": "{}", "seed": seed, "config_json": "{}", "logdir": "/tmp/x"}


@pytest.fixture
def engine(tmp_path):
    e = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    init_db(e)
    return e


def count(engine, model):
    with session_scope(engine) as s:
        return s.scalar(select(func.count()).select_from(model))


def test_wal_mode_for_concurrent_readers(engine, tmp_path):
    assert sqlite3.connect(tmp_path / "r.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_trials_are_unique_per_sweep_and_config_and_keep_their_status(engine):
    with session_scope(engine) as s:
        sweep_id = ensure_sweep(s, "a", "{}")
        ids = ensure_trials(s, sweep_id, [trial_row("h1"), trial_row("h2", 1)])
        update_trial(s, ids["h1"], status="completed", epochs_done=3)
    with session_scope(engine) as s:  # the same sweep again: nothing new, nothing forgotten
        assert ensure_sweep(s, "a", '{"x": 1}') == sweep_id
        assert ensure_trials(s, sweep_id, [trial_row("h1"), trial_row("h2", 1)]) == ids
    assert count(engine, Trial) == 2
    df = trials_frame(engine, "a")
    assert df.set_index("config_hash").loc["h1", "status"] == "completed"
    assert df.set_index("config_hash").loc["h1", "epochs_done"] == 3
    assert sweep_names(engine) == ["a"]


def test_replaying_results_is_harmless(engine):
    with session_scope(engine) as s:
        tid = ensure_trials(s, ensure_sweep(s, "a", "{}"), [trial_row("h")])["h"]
    row = {"epoch": 1, "images_seen": 100, "train_loss": 0.5, "test_loss": 0.6, "test_acc": 0.7, "wall_seconds": 1.0}
    stats = [{"epoch": 1, "step": 64, "layer": "fc1", "kind": k, "mean": 0.1, "std": 0.2, "p98": 0.3,
              "zero_frac": 0.0, "dead_frac": None, "sat_frac": None} for k in ("activation", "gradient")]
    for _ in range(3):
        with session_scope(engine) as s:
            record_epoch(s, tid, row)
            record_layer_stats(s, tid, stats)
    with session_scope(engine) as s:
        record_epoch(s, tid, {**row, "test_acc": 0.75})  # a later report of the same epoch wins
    assert count(engine, EpochMetric) == 1 and count(engine, LayerStat) == 2
    assert epoch_metrics_frame(engine, "a")["test_acc"].tolist() == [0.75]
    assert layer_stats_frame(engine, "a")["kind"].tolist() == ["activation", "gradient"]


def test_session_scope_rolls_back_on_error(engine):
    with pytest.raises(RuntimeError):
        with session_scope(engine) as s:
            ensure_sweep(s, "doomed", "{}")
            raise RuntimeError("boom")
    assert sweep_names(engine) == []


def test_infinity_is_stored_and_nan_becomes_null(engine):
    with session_scope(engine) as s:
        tid = ensure_trials(s, ensure_sweep(s, "a", "{}"), [trial_row("h")])["h"]
        record_epoch(s, tid, {"epoch": 4, "images_seen": 9, "train_loss": math.inf, "test_loss": math.nan,
                              "test_acc": 0.1, "wall_seconds": 1.0})
    df = epoch_metrics_frame(engine, "a")
    assert df["train_loss"].tolist() == [math.inf]
    assert df["test_loss"].isna().tolist() == [True]
    assert df["nan_fields"].tolist() == ["test_loss"]  # NaN, not "does not apply"


def test_other_schema_version_is_refused(engine, tmp_path):
    with session_scope(engine) as s:
        s.get(SchemaInfo, 1).version = 99
    with pytest.raises(DatabaseError) as err:
        init_db(engine)
    assert str(err.value) == f"sqlite:///{tmp_path / 'r.db'} has schema version 99; this sweep reads version 1"


def test_foreign_database_is_refused(tmp_path):
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE notes (x)").connection.commit()
    with pytest.raises(DatabaseError) as err:
        init_db(make_engine(f"sqlite:///{tmp_path / 'other.db'}"))
    assert str(err.value) == f"sqlite:///{tmp_path / 'other.db'} is not a sweep database (no schema_info table)"
