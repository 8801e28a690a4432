"""The driver's recorder: batched writes within their delay, the epochs' flag summaries, the
configurations' curves, and an old database upgraded in place and backfilled so that it reports the same
numbers; on SQLite and PostgreSQL."""
import math
import random
from types import SimpleNamespace

import numpy as np
import pandas as pd
from sqlalchemy import delete, func, select, text

from events import Events
from sweep.db.engine import init_db, make_engine, session_scope
from sweep.db.flags import FlagThresholds, flags_frame
from sweep.db.queries import (SUMMARY_COLUMNS, backfill_config_curves, backfill_epoch_summaries, curves_frame,
                        epoch_metrics_frame, summarize_snapshot, trial_figures)
from sweep.db.schema import SCHEMA_VERSION, ConfigCurve, EpochMetric, LayerStat, SchemaInfo
from sweep.spec.grid import expand_grid
from sweep.run.recorder import DatabaseRecorder
from sweep.run.ledger import Ledger
from sweep.run.records import record_plan
from sweep.spec.spec import parse_spec

SPEC = {"name": "r", "dataset": "synthetic", "epochs": 4,
        "grid": {"activation": ["tanh", "relu"], "optimizer": [{"name": "adam", "lr": 0.01}], "seed": [0, 1]}}
ACTS, GRADS = ("conv1", "conv2", "fc1", "fc2"), ("conv1", "conv2", "fc1", "fc2", "fc3")


def report(cfg, epoch: int, rng: random.Random, snapshots: int = 3) -> dict:
    """A LeNet-shaped report of one epoch: `snapshots` snapshots of 9 rows; a few NaN and infinite values."""
    rows = []
    for k in range(snapshots):
        step = (epoch - 1) * 300 + 100 * (k + 1)
        for layer in ACTS:
            rows.append({"epoch": epoch, "step": step, "layer": layer, "kind": "activation", "mean": rng.random(),
                         "std": rng.random(), "p98": 1.0, "zero_frac": 0.0, "dead_frac": rng.random(),
                         "sat_frac": rng.random() if cfg.activation == "tanh" else None})
        for layer in GRADS:
            std = rng.choice([rng.random(), rng.random() * 1e-4, rng.random() * 1e3, math.nan, math.inf, 0.0])
            rows.append({"epoch": epoch, "step": step, "layer": layer, "kind": "gradient", "mean": 0.0, "std": std,
                         "p98": 0.1, "zero_frac": 0.0, "dead_frac": None, "sat_frac": None})
    acc = rng.choice([0.1, 0.105, 0.5, 0.9])
    return {"epoch": epoch, "images_seen": 300 * epoch, "train_loss": None if epoch == 0 else 1 - acc,
            "test_loss": 1 - acc, "test_acc": acc, "epoch_seconds": 1.0, "train_seconds": 1.0, "run_seconds": 1.0,
            "best_test_acc": acc, "best_epoch": epoch, "layer_stats": rows if epoch else [], "status": "running",
            "reason": None, "config_hash": cfg.config_hash, "resumed_from": None, "bundle": None, "device": "cpu",
            "node": None}


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def planned(url: str, tmp_path):
    spec = parse_spec({**SPEC, "output": str(tmp_path), "database": url})
    configs = expand_grid(spec)
    engine = make_engine(url)
    init_db(engine)
    return engine, configs, record_plan(engine, spec, configs, configs)


def count(engine, model) -> int:
    with session_scope(engine) as s:
        return s.scalar(select(func.count()).select_from(model))


def test_reports_are_written_in_batches_within_their_delay(db_url, tmp_path):
    engine, configs, ids = planned(db_url, tmp_path)
    clock = Clock()
    ledger = Ledger.of(configs)
    recorder = Events(ledger, DatabaseRecorder(engine, ids, ledger, max_delay=0.2, max_rows=10_000, clock=clock))
    rng = random.Random(0)
    fake = SimpleNamespace(config={"bundle": [configs[0].to_dict()]})
    recorder.on_trial_result(0, [], fake, report(configs[0], 0, rng))
    recorder.on_trial_result(0, [], fake, report(configs[0], 1, rng))
    recorder.on_step_end(0, [])
    assert count(engine, EpochMetric) == 0  # waiting: the oldest report is 0 s old
    clock.now = 0.19
    recorder.on_step_end(0, [])
    assert count(engine, EpochMetric) == 0
    clock.now = 0.2
    recorder.on_step_end(0, [])  # 0.2 s since the first report: both go in one transaction
    assert (count(engine, EpochMetric), count(engine, LayerStat)) == (2, 27)
    recorder.on_trial_result(0, [], fake, report(configs[0], 2, rng))
    recorder.on_trial_complete(0, [], fake)  # a status change writes what is pending first
    assert count(engine, EpochMetric) == 3
    recorder.on_trial_result(0, [], fake, report(configs[1], 1, rng))
    recorder.on_experiment_end([])
    assert count(engine, EpochMetric) == 4
    big = DatabaseRecorder(engine, ids, ledger, max_delay=60, max_rows=54, clock=clock)
    big.on_trial_result(0, [], fake, report(configs[2], 1, rng))
    assert count(engine, LayerStat) == 81
    big.on_trial_result(0, [], fake, report(configs[2], 2, rng))  # 54 rows pending: written at once
    assert count(engine, LayerStat) == 135
    with session_scope(engine) as s:
        assert s.execute(text(f"SELECT status, epochs_done FROM trials WHERE trial_id = {ids[configs[0].config_hash]}")
                         ).one() == ("completed", 2)
    engine.dispose()


def recorded(url: str, tmp_path, epochs: int = 4):
    """A sweep recorded through the batching recorder: every trial, epochs 0..`epochs`, interleaved;
    one trial's epoch 2 is replayed."""
    engine, configs, ids = planned(url, tmp_path)
    ledger = Ledger.of(configs)
    recorder = Events(ledger, DatabaseRecorder(engine, ids, ledger, max_delay=0.0))
    rng = random.Random(1)
    fakes = [SimpleNamespace(config={"bundle": [c.to_dict()]}) for c in configs]
    made = {}
    for epoch in range(epochs + 1):
        for cfg, fake in zip(configs, fakes):
            made[cfg.name, epoch] = report(cfg, epoch, rng)
            recorder.on_trial_result(0, [], fake, made[cfg.name, epoch])
            recorder.on_step_end(0, [])
    recorder.record(made[configs[0].name, 2])  # a replay changes nothing
    for fake in fakes:
        recorder.on_trial_complete(0, [], fake)
    return engine, made


def summaries(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(select(EpochMetric.trial_id, EpochMetric.epoch, EpochMetric.stats_step,
                                  *(getattr(EpochMetric, c) for c in SUMMARY_COLUMNS))
                           .order_by(EpochMetric.trial_id, EpochMetric.epoch), conn)


def test_each_epoch_row_carries_its_last_snapshots_summary(db_url, tmp_path):
    engine, _ = recorded(db_url, tmp_path)
    got = summaries(engine)
    assert len(got) == 4 * 5 and got[got["epoch"] == 0]["stats_step"].isna().all()
    # The recorder's summaries are what the backfill computes from the stored rows.
    with session_scope(engine) as s:
        backfill_epoch_summaries(s)
    pd.testing.assert_frame_equal(summaries(engine), got)
    engine.dispose()


def test_config_curves_pool_the_seeds_as_the_epoch_rows_stand(db_url, tmp_path):
    """The recorder keeps config_curves equal to pooling the epoch rows as they are now: a later report of
    an epoch replaces its accuracy (never counted twice), a NaN accuracy is not counted; the backfill
    computes the same rows, and the live grouping (a facet the label does not name) the same numbers."""
    engine, made = recorded(db_url, tmp_path)
    configs = expand_grid(parse_spec({**SPEC, "output": str(tmp_path), "database": db_url}))
    recorder = DatabaseRecorder(engine, planned_ids(engine), Ledger.of(configs))
    recorder.record({**made[configs[0].name, 2], "test_acc": 0.77})
    recorder.record({**made[configs[1].name, 3], "test_acc": math.nan})
    got = curves_frame(engine, "r", "activation")
    epochs = epoch_metrics_frame(engine, "r")
    assert epochs["test_acc"].isna().sum() == 1 and (epochs["test_acc"] == 0.77).sum() == 1
    pooled = epochs.groupby(["label", "activation", "images_seen"], sort=False)["test_acc"]
    expected = pooled.agg(["count", "mean", "std"]).reset_index().rename(columns={"count": "n"})
    assert list(got.columns) == ["label", "activation", "images_seen", "n", "mean", "std"]
    assert len(got) == count(engine, ConfigCurve) == 2 * 5
    pd.testing.assert_frame_equal(got[["label", "activation", "images_seen", "n"]],
                                  expected[["label", "activation", "images_seen", "n"]], check_dtype=False)
    assert sorted(got["n"]) == [1] + [2] * 9
    np.testing.assert_allclose(got["mean"], expected["mean"])  # float64 means of a few: EPS64s, not 1e-7
    # The std as sqrt(mean of squares - mean^2) (db.queries, float64, accuracies <= 1): the difference keeps the
    # few seeds' roundings, up to ~40 EPS64, which its root turns into sqrt(40 EPS64) = 9.4e-8 at a std of 0
    np.testing.assert_allclose(got["std"], expected["std"], atol=1e-7)  # NaN where one seed is left
    live = curves_frame(engine, "r", "model")  # one model: the same configurations, grouped live
    pd.testing.assert_frame_equal(live.drop(columns="model"), got.drop(columns="activation"))
    with session_scope(engine) as s:
        s.execute(delete(ConfigCurve))
        backfill_config_curves(s)
    pd.testing.assert_frame_equal(curves_frame(engine, "r", "activation"), got)
    engine.dispose()


def planned_ids(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT config_hash, trial_id FROM trials")).all())


def test_summary_of_a_snapshot():
    rows = [{"kind": "activation", "sat_frac": 0.2, "dead_frac": None},
            {"kind": "activation", "sat_frac": math.nan, "dead_frac": 0.7},
            {"kind": "activation", "sat_frac": 0.6, "dead_frac": 0.1},
            {"kind": "gradient", "std": math.nan}, {"kind": "gradient", "std": 1e-5},
            {"kind": "gradient", "std": 3.0}, {"kind": "gradient", "std": 1e-2}, {"kind": "gradient", "std": None}]
    assert summarize_snapshot(rows) == {"max_sat_frac": 0.6, "max_dead_frac": 0.7, "grad_std_ratio": 1e-5 / 1e-2}
    assert summarize_snapshot([{"kind": "gradient", "std": 1.0}, {"kind": "gradient", "std": 0.0}])[
        "grad_std_ratio"] == math.inf
    assert summarize_snapshot([]) == {"max_sat_frac": None, "max_dead_frac": None, "grad_std_ratio": None}


def test_an_old_database_is_upgraded_and_backfilled_and_reports_the_same(db_url, tmp_path):
    engine, _ = recorded(db_url, tmp_path)
    lax = FlagThresholds(saturated=0.5, dead=0.5, vanishing=0.5, exploding=2.0, chance_margin=0.01)
    before = (summaries(engine), flags_frame(engine, "r"), flags_frame(engine, "r", lax),
              trial_figures(engine, "r", 3, 0.5), curves_frame(engine, "r", "activation"))
    assert {"saturated", "dead", "vanishing", "exploding", "chance"} <= set(before[2]["flag"])
    with engine.begin() as conn:  # what version 2 had: no node column, no epoch summaries, no curves, no rungs
        conn.execute(text("DROP TABLE rung_results"))
        conn.execute(text("ALTER TABLE trials DROP COLUMN kernels"))  # version 8's
        for column in ("val_loss", "val_acc"):  # version 7's
            conn.execute(text(f"ALTER TABLE epoch_metrics DROP COLUMN {column}"))
        conn.execute(text("DROP TABLE config_curves"))
        conn.execute(text("DROP INDEX ix_epoch_metrics_curves"))
        conn.execute(text("ALTER TABLE trials DROP COLUMN node"))
        conn.execute(text("DROP INDEX ix_epoch_metrics_reading"))
        for column in ("stats_step", *SUMMARY_COLUMNS):
            conn.execute(text(f"ALTER TABLE epoch_metrics DROP COLUMN {column}"))
        conn.execute(text("UPDATE schema_info SET version = 2"))
    engine.dispose()
    engine = make_engine(db_url)
    init_db(engine)
    with session_scope(engine) as s:
        assert s.get(SchemaInfo, 1).version == SCHEMA_VERSION == 8
    pd.testing.assert_frame_equal(summaries(engine), before[0])
    pd.testing.assert_frame_equal(flags_frame(engine, "r"), before[1])
    pd.testing.assert_frame_equal(flags_frame(engine, "r", lax), before[2])
    pd.testing.assert_frame_equal(trial_figures(engine, "r", 3, 0.5).drop(columns="node"),
                                  before[3].drop(columns="node"))
    pd.testing.assert_frame_equal(curves_frame(engine, "r", "activation"), before[4])
    engine.dispose()
