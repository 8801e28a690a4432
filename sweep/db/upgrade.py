"""Schema upgrades and their backfills, in one place.

A database of an older version is brought to ours in place when it is opened
(db.engine.check_version): each later version's statements (db.schema's
UPGRADES, and DIALECT_UPGRADES for one database only), its new tables, then
the backfills that fill what those versions added for the rows already there,
so that an old sweep reports the same numbers.

The backfills compute what the recorder writes with each batch
(db.queries.record_results), from the same definitions: summarize_snapshot
(an epoch's flag summary, sweep.measures) and pooled_accuracy (the
configurations' curves, here). This module imports no other module of db/
but db.schema: db.engine runs the upgrade and db.queries uses the
definitions, and neither is imported back.
"""
from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import and_, bindparam, func, insert, select, text, true, update
from sqlalchemy.orm import Session

from sweep.db.schema import (DIALECT_UPGRADES, NEW_TABLES, SCHEMA_VERSION, UPGRADES, Base, ConfigCurve, EpochMetric,
                       LayerStat, SchemaInfo, Trial)
from sweep.measures import summarize_snapshot

# The per-epoch summary columns of epoch_metrics (see EpochMetric and summarize_snapshot).
SUMMARY_COLUMNS = ("max_sat_frac", "max_dead_frac", "grad_std_ratio")
# The columns of config_curves that pooled_accuracy fills, in its order.
CURVE_COLUMNS = ("sweep_id", "label", "images_seen", "n", "test_acc_mean", "test_acc_square_mean")


def pooled_accuracy(*keys):
    """Test accuracy per `keys` and images seen, pooled over epoch rows: n (rows with a number), mean,
    square (the mean of the squares). The one definition of the curves' statistics: config_curves is
    filled with it, and db.queries.curves_frame computes it live for facets a configuration's label does
    not name. The caller joins what `keys` come from and filters."""
    acc = EpochMetric.test_acc
    return (select(*keys, EpochMetric.images_seen, func.count(acc).label("n"), func.avg(acc).label("mean"),
                   func.avg(acc * acc).label("square"))
            .select_from(EpochMetric).group_by(*keys, EpochMetric.images_seen))


def backfill_config_curves(session: Session) -> None:
    """Fill config_curves from every sweep's epoch_metrics: the upgrade of a database written before it
    existed."""
    session.execute(insert(ConfigCurve).from_select(CURVE_COLUMNS, pooled_accuracy(Trial.sweep_id, Trial.label)
                    .join(Trial, Trial.trial_id == EpochMetric.trial_id).where(true())))


_SNAPSHOT_COLUMNS = (LayerStat.epoch, LayerStat.step, LayerStat.layer, LayerStat.kind, LayerStat.std,
                     LayerStat.sat_frac, LayerStat.dead_frac)


def backfill_epoch_summaries(session: Session, trial_ids: Iterable[int] | None = None) -> None:
    """Compute every epoch's summary columns from the stored layer_stats (of `trial_ids`, default all):
    the upgrade of a database written before they existed, one trial at a time to bound memory."""
    if trial_ids is None:
        trial_ids = session.scalars(select(Trial.trial_id).order_by(Trial.trial_id)).all()
    for trial_id in trial_ids:
        last = (select(LayerStat.epoch, func.max(LayerStat.step).label("step"))
                .where(LayerStat.trial_id == trial_id).group_by(LayerStat.epoch).subquery())
        found = session.execute(
            select(*_SNAPSHOT_COLUMNS)
            .join(last, and_(last.c.epoch == LayerStat.epoch, last.c.step == LayerStat.step))
            .where(LayerStat.trial_id == trial_id).order_by(LayerStat.layer_stat_id))
        snapshots: dict[tuple[int, int], list[dict[str, Any]]] = {}
        for r in found:
            snapshots.setdefault((r.epoch, r.step), []).append(dict(r._mapping))
        # Parameters named apart from the columns they set (SQLAlchemy reserves the column names).
        updates = [{"t": trial_id, "e": epoch, "v_stats_step": step,
                    **{f"v_{k}": v for k, v in summarize_snapshot(rows).items()}}
                   for (epoch, step), rows in snapshots.items()]
        if updates:
            table = EpochMetric.__table__
            session.connection().execute(
                update(table).where(table.c.trial_id == bindparam("t"), table.c.epoch == bindparam("e"))
                .values(stats_step=bindparam("v_stats_step"), **{c: bindparam(f"v_{c}") for c in SUMMARY_COLUMNS}),
                updates)


# Columns a version added that old rows must have filled, so that an old sweep reports the same numbers:
# version -> the function that fills them (it takes the upgrade's session).
BACKFILLS = {3: backfill_epoch_summaries, 4: backfill_config_curves}


def upgrade(session: Session, version: int) -> None:
    """Bring a database of schema version `version` to ours within `session`'s transaction (the caller
    commits): each later version's statements and new tables, then their backfills (which may read what
    any of those versions added)."""
    dialect = session.connection().dialect.name
    for v in range(version + 1, SCHEMA_VERSION + 1):
        for statement in (*UPGRADES[v], *DIALECT_UPGRADES.get(v, {}).get(dialect, ())):
            session.execute(text(statement))
        for table in NEW_TABLES.get(v, ()):
            Base.metadata.tables[table].create(session.connection())
    for v in range(version + 1, SCHEMA_VERSION + 1):
        if v in BACKFILLS:
            BACKFILLS[v](session)
    session.get(SchemaInfo, 1).version = SCHEMA_VERSION
