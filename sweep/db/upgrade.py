"""Schema upgrades and their backfills, in one place.

A database of an older version is brought to ours in place when it is opened
(db.engine.check_version): each later version's statements (db.schema's
UPGRADES, and DIALECT_UPGRADES for one database only), its new tables, then
the backfills that fill what those versions added for the rows already there,
so that an old sweep reports the same numbers.

The backfills compute what the recorder writes with each batch
(db.queries.record_results), from the same definitions, which live here:
summarize_snapshot (an epoch's flag summary) and pooled_accuracy (the
configurations' curves). This module imports no other module of db/ but
db.schema: db.engine runs the upgrade and db.queries uses the definitions,
and neither is imported back.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
from sqlalchemy import and_, bindparam, func, insert, select, text, true, update
from sqlalchemy.orm import Session

from sweep.db.schema import (DIALECT_UPGRADES, NEW_TABLES, SCHEMA_VERSION, UPGRADES, Base, ConfigCurve, EpochMetric,
                       LayerStat, SchemaInfo, Trial)

# The per-epoch summary columns of epoch_metrics (see EpochMetric and summarize_snapshot).
SUMMARY_COLUMNS = ("max_sat_frac", "max_dead_frac", "grad_std_ratio")
# The columns of config_curves that pooled_accuracy fills, in its order.
CURVE_COLUMNS = ("sweep_id", "label", "images_seen", "n", "test_acc_mean", "test_acc_square_mean")


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def summarize_snapshot(rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """The flag summary of one statistics snapshot (one trial and step, rows in layer order):
    max_sat_frac and max_dead_frac, the largest over its activation layers, and grad_std_ratio,
    the first weight layer's gradient std over the last one's (of those whose std is a number, as
    pandas' first/last take them). NaN and "does not apply" are None; x/0 is infinite, as in numpy.

    The flags' thresholds compare with these (a layer passes a threshold only if the largest does),
    so a flag reads the epoch's layers only where it fires.
    Example: summarize_snapshot(rows)["grad_std_ratio"] -> 0.001
    """
    acts = [r for r in rows if r["kind"] == "activation"]

    def largest(column: str) -> float | None:
        values = [r[column] for r in acts if not _missing(r.get(column))]
        return max(values) if values else None

    stds = [r["std"] for r in rows if r["kind"] == "gradient" and not _missing(r.get("std"))]
    ratio = None
    if stds:
        with np.errstate(all="ignore"):
            ratio = float(np.float64(stds[0]) / np.float64(stds[-1]))
        ratio = None if math.isnan(ratio) else ratio
    return {"max_sat_frac": largest("sat_frac"), "max_dead_frac": largest("dead_frac"), "grad_std_ratio": ratio}


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
