"""The results database: tables, keys and the schema version.

This is a product surface: people open it with pandas or sqlite3. Names are
plural snake_case, keys `<entity>_id`, natural keys are unique constraints.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sweep.status import Status

SCHEMA_VERSION = 8

# The columns that count training images, 64-bit (BigInteger) since version 5: 1.28M images x 2,000
# epochs is past a 32-bit INTEGER (2**31 - 1), which PostgreSQL enforces. SQLite's INTEGER is 64-bit.
IMAGE_COLUMNS = (("trials", "images_seen"), ("epoch_metrics", "images_seen"), ("epoch_metrics", "stats_step"),
                 ("layer_stats", "step"), ("config_curves", "images_seen"))

# What each version added to the one before, as the statements that upgrade a
# database in place on every database (additive only: an older sweep's rows stay as they were).
UPGRADES = {
    2: ("ALTER TABLE trials ADD COLUMN bundle VARCHAR(400)", "ALTER TABLE trials ADD COLUMN device VARCHAR(50)"),
    3: ("ALTER TABLE trials ADD COLUMN node VARCHAR(100)",
        # The flag summary of each epoch's last statistics snapshot (EpochMetric), filled from layer_stats.
        "ALTER TABLE epoch_metrics ADD COLUMN stats_step INTEGER",
        "ALTER TABLE epoch_metrics ADD COLUMN max_sat_frac FLOAT",
        "ALTER TABLE epoch_metrics ADD COLUMN max_dead_frac FLOAT",
        "ALTER TABLE epoch_metrics ADD COLUMN grad_std_ratio FLOAT",
        "CREATE INDEX ix_epoch_metrics_reading ON epoch_metrics "
        "(trial_id, epoch, test_acc, images_seen, stats_step, max_sat_frac, max_dead_frac, grad_std_ratio)"),
    4: ("CREATE INDEX ix_epoch_metrics_curves ON epoch_metrics (trial_id, images_seen, test_acc)",),
    5: (),  # the image counts widened: nothing to do where INTEGER is 64-bit already (SQLite)
    6: (),  # rung_results, a new table (NEW_TABLES)
    # The validation split's figures (dataset.validation): NULL for trials without one, and for every
    # epoch of an older database.
    7: ("ALTER TABLE epoch_metrics ADD COLUMN val_loss FLOAT", "ALTER TABLE epoch_metrics ADD COLUMN val_acc FLOAT"),
    # The kernels a trial's steps ran on (sweep.models.kernels): NULL for a trial of an older database.
    8: ("ALTER TABLE trials ADD COLUMN kernels VARCHAR(20)",),
}
# Statements of a version for one database only (after that version's UPGRADES), by dialect name. They
# change no column's values, so an older copy of the database needs nothing undone on SQLite.
DIALECT_UPGRADES = {
    5: {"postgresql": tuple(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE BIGINT"
                            for table, column in IMAGE_COLUMNS)},
}
# Tables a version added, created from their models below (after that version's statements).
NEW_TABLES = {4: ("config_curves",), 6: ("rung_results",)}
# The backfills of what the upgrades added, and the upgrade itself: db/upgrade.py.

# trials.status holds one of sweep.status.STORED. `stopped`: a stop rule of the spec's `stop:` ended the trial
# early; `trials.error` then holds the reason as `stopped@E rule` (E the last epoch trained), as it holds a
# diverged trial's reason.


class Base(DeclarativeBase):
    pass


class SchemaInfo(Base):
    """One row: the schema version this database was written with."""

    __tablename__ = "schema_info"
    schema_info_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class Sweep(Base):
    __tablename__ = "sweeps"
    sweep_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    spec_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (UniqueConstraint("sweep_id", "config_hash"),)
    trial_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.sweep_id"), index=True)
    config_hash: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    label: Mapped[str] = mapped_column(String(200))  # name without the seed
    # The factors as real columns.
    model: Mapped[str] = mapped_column(String(50))
    activation: Mapped[str] = mapped_column(String(50))
    init: Mapped[str] = mapped_column(String(50))
    gain: Mapped[float] = mapped_column(Float)
    optimizer: Mapped[str] = mapped_column(String(50))
    lr: Mapped[float] = mapped_column(Float)
    optimizer_params_json: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(Integer)
    config_json: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=Status.PENDING.value)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    train_seconds: Mapped[float | None] = mapped_column(Float)  # training epochs only
    run_seconds: Mapped[float | None] = mapped_column(Float)  # the whole trial: + evaluation, checkpoints
    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    images_seen: Mapped[int] = mapped_column(BigInteger, default=0)
    final_test_acc: Mapped[float | None] = mapped_column(Float)
    best_test_acc: Mapped[float | None] = mapped_column(Float)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    final_test_loss: Mapped[float | None] = mapped_column(Float)
    final_train_loss: Mapped[float | None] = mapped_column(Float)
    logdir: Mapped[str] = mapped_column(Text)
    # Where it trained: the fused bundle (its Ray trial's name; NULL when alone), the device (cpu, cuda:0)
    # and the Ray node ("host/node-id-start"; NULL outside Ray), of its latest epoch.
    bundle: Mapped[str | None] = mapped_column(String(400))
    device: Mapped[str | None] = mapped_column(String(50))
    node: Mapped[str | None] = mapped_column(String(100))
    # The kernels its steps ran on (sweep.models.kernels: compiled or torch), chosen once by the run that
    # started it and kept by its checkpoint; NULL before the first report.
    kernels: Mapped[str | None] = mapped_column(String(20))


class EpochMetric(Base):
    """One row per trial and epoch; epoch 0 is the evaluation before training."""

    __tablename__ = "epoch_metrics"
    # ix_epoch_metrics_reading covers what the report, the flags and the plots read of every epoch: they
    # scan it in (trial, epoch) order without visiting the rows, which a big sweep wrote scattered.
    # ix_epoch_metrics_curves: the recorder recomputes config_curves at the images seen it was sent, from a
    # seek per trial, since a walk through each seed's epochs grew with the epochs and slowed the recorder
    # (docs/benchmarks.md, "Big sweeps (2-core CPU, 24 GiB)").
    __table_args__ = (UniqueConstraint("trial_id", "epoch"),
                      Index("ix_epoch_metrics_reading", "trial_id", "epoch", "test_acc", "images_seen", "stats_step",
                            "max_sat_frac", "max_dead_frac", "grad_std_ratio"),
                      Index("ix_epoch_metrics_curves", "trial_id", "images_seen", "test_acc"))
    epoch_metric_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.trial_id"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    images_seen: Mapped[int] = mapped_column(BigInteger)
    train_loss: Mapped[float | None] = mapped_column(Float)
    test_loss: Mapped[float | None] = mapped_column(Float)
    test_acc: Mapped[float | None] = mapped_column(Float)
    wall_seconds: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)  # on the validation split (NULL without one)
    val_acc: Mapped[float | None] = mapped_column(Float)
    # SQLite cannot store NaN (it becomes NULL): the columns that were NaN, comma-separated.
    nan_fields: Mapped[str | None] = mapped_column(String(200))
    # The epoch's last statistics snapshot, which stands for the epoch in the pathology flags (db/flags.py),
    # summarised so that flags and depth plots never scan layer_stats: its step (NULL: no statistics), the
    # largest sat_frac and dead_frac of its activation layers, and the first weight layer's gradient std
    # over the last one's. Written with the epoch's row by the recorder (db.queries.record_results);
    # see sweep.measures.summarize_snapshot.
    stats_step: Mapped[int | None] = mapped_column(BigInteger)
    max_sat_frac: Mapped[float | None] = mapped_column(Float)
    max_dead_frac: Mapped[float | None] = mapped_column(Float)
    grad_std_ratio: Mapped[float | None] = mapped_column(Float)


class LayerStat(Base):
    """Statistics of one layer's activations or weight gradient at one step."""

    __tablename__ = "layer_stats"
    __table_args__ = (UniqueConstraint("trial_id", "step", "layer", "kind"),)
    layer_stat_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.trial_id"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(BigInteger)  # training images seen
    layer: Mapped[str] = mapped_column(String(50))
    kind: Mapped[str] = mapped_column(String(20))  # activation | gradient
    mean: Mapped[float | None] = mapped_column(Float)
    std: Mapped[float | None] = mapped_column(Float)
    p98: Mapped[float | None] = mapped_column(Float)
    zero_frac: Mapped[float | None] = mapped_column(Float)
    dead_frac: Mapped[float | None] = mapped_column(Float)
    sat_frac: Mapped[float | None] = mapped_column(Float)
    nan_fields: Mapped[str | None] = mapped_column(String(200))


class ConfigCurve(Base):
    """Test accuracy of one configuration (a sweep's trials of one label: its seeds) at one number of
    training images seen, pooled over its trials' epoch rows there: n of them with a test accuracy (NaN
    and missing ones are not counted), the mean of those and the mean of their squares (the sample std
    is sqrt((square_mean - mean^2) * n / (n - 1))). Kept by the recorder from epoch_metrics as results
    arrive (db.queries.record_results), so that plots read a big sweep's curves without grouping its
    epoch rows."""

    __tablename__ = "config_curves"
    __table_args__ = (UniqueConstraint("sweep_id", "label", "images_seen"),)
    config_curve_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.sweep_id"))
    label: Mapped[str] = mapped_column(String(200))
    images_seen: Mapped[int] = mapped_column(BigInteger)
    n: Mapped[int] = mapped_column(Integer)
    test_acc_mean: Mapped[float | None] = mapped_column(Float)
    test_acc_square_mean: Mapped[float | None] = mapped_column(Float)


class RungResult(Base):
    """One ASHA decision (sweep/run/stopping.py): a trial judged at a rung, the milestone's index k (the rung
    at grace * reduction**k epochs, `milestone`), at `epoch` (the first at or past it, as Ray judges), its
    metric `value` there as reported (NULL where NaN), and whether it `continued`. Written with the report
    that carries the decision (db.queries.record_rungs); a rerun's rung store is seeded from these rows
    (db.queries.rung_results), so it judges against exactly the results earlier runs judged. Older
    databases get the table empty: their trials were judged by an earlier rule."""

    __tablename__ = "rung_results"
    __table_args__ = (UniqueConstraint("trial_id", "rung"),)
    rung_result_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # in the order they were recorded
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.trial_id"), index=True)
    rung: Mapped[int] = mapped_column(Integer)
    milestone: Mapped[float] = mapped_column(Float)
    epoch: Mapped[int] = mapped_column(Integer)
    value: Mapped[float | None] = mapped_column(Float)
    continued: Mapped[bool] = mapped_column(Boolean)
