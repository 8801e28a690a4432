"""All reads and writes of the results database.

Writes are upserts on the natural keys, so replaying a result is harmless.
Reads return plain values or pandas DataFrames for notebook users:

    from db import make_engine, trials_frame
    df = trials_frame(make_engine("sqlite:///runs/sweep.db"), "fashion-activations")
"""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

import pandas as pd
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from db.engine import DatabaseError, check_version
from db.schema import EpochMetric, LayerStat, Sweep, Trial

_CHUNK = 500  # rows per statement, well under SQLite's bound-parameter limit


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _insert(session: Session):
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        raise DatabaseError(f"unsupported database dialect {dialect!r}; use sqlite or postgresql")
    return insert


def upsert(session: Session, model, rows: Sequence[dict[str, Any]], keys: Sequence[str],
           update_existing: bool = True) -> None:
    """Insert rows; on a natural-key conflict update the other columns (or keep the row)."""
    insert = _insert(session)
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start:start + _CHUNK]
        stmt = insert(model).values(list(chunk))
        if update_existing:
            cols = {c: stmt.excluded[c] for c in chunk[0] if c not in keys}
            stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_=cols)
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
        session.execute(stmt)


def ensure_sweep(session: Session, name: str, spec_json: str) -> int:
    """The sweep's id, creating the row on first use; the stored spec is the latest one."""
    upsert(session, Sweep, [{"name": name, "spec_json": spec_json, "created_at": utcnow()}],
           ["name"], update_existing=False)
    session.execute(update(Sweep).where(Sweep.name == name).values(spec_json=spec_json))
    return session.scalar(select(Sweep.sweep_id).where(Sweep.name == name))


def ensure_trials(session: Session, sweep_id: int, rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Create missing trial rows as pending; return {config_hash: trial_id} for all of the sweep.

    Existing rows keep their status and results: a rerun must not forget work.
    """
    rows = [{**r, "sweep_id": sweep_id, "status": "pending"} for r in rows]
    if rows:
        upsert(session, Trial, rows, ["sweep_id", "config_hash"], update_existing=False)
    found = session.execute(select(Trial.config_hash, Trial.trial_id).where(Trial.sweep_id == sweep_id))
    return {h: i for h, i in found}


def update_trial(session: Session, trial_id: int, **values: Any) -> None:
    """Set columns of one trial row."""
    session.execute(update(Trial).where(Trial.trial_id == trial_id).values(**values))


def trial_statuses(session: Session, sweep: str) -> dict[str, tuple[str, int]]:
    """{config_hash: (status, epochs_done)} for every trial of sweep `sweep` (empty if none)."""
    rows = session.execute(
        select(Trial.config_hash, Trial.status, Trial.epochs_done)
        .join(Sweep, Sweep.sweep_id == Trial.sweep_id).where(Sweep.name == sweep)
    )
    return {h: (s, e) for h, s, e in rows}


def _flag_nans(row: dict[str, Any], trial_id: int) -> dict[str, Any]:
    """NaN -> NULL plus its column name in nan_fields, so NULL ("does not apply")
    and NaN (a diverged value) stay distinguishable; infinities are kept as they are."""
    nans = [k for k, v in row.items() if isinstance(v, float) and math.isnan(v)]
    return {**row, **{k: None for k in nans}, "nan_fields": ",".join(nans) or None, "trial_id": trial_id}


def record_epoch(session: Session, trial_id: int, row: dict[str, Any]) -> None:
    """Upsert one epoch_metrics row (keys: epoch, images_seen, losses, test_acc, wall_seconds)."""
    upsert(session, EpochMetric, [_flag_nans(row, trial_id)], ["trial_id", "epoch"])


def record_layer_stats(session: Session, trial_id: int, rows: Sequence[dict[str, Any]]) -> None:
    """Upsert layer_stats rows (keys: epoch, step, layer, kind and the statistics)."""
    if rows:
        upsert(session, LayerStat, [_flag_nans(r, trial_id) for r in rows], ["trial_id", "step", "layer", "kind"])


# --------------------------------------------------------------------------- reads


def sweep_names(engine: Engine) -> list[str]:
    """Names of all sweeps in the database, oldest first."""
    if not check_version(engine):
        return []
    with Session(engine) as s:
        return list(s.scalars(select(Sweep.name).order_by(Sweep.sweep_id)))


def _frame(engine: Engine, stmt) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(stmt, conn)


def trials_frame(engine: Engine, sweep: str | None = None) -> pd.DataFrame:
    """One row per trial with its sweep name, factors, status and final metrics."""
    stmt = select(Sweep.name.label("sweep"), Trial).join(Sweep, Sweep.sweep_id == Trial.sweep_id)
    if sweep is not None:
        stmt = stmt.where(Sweep.name == sweep)
    return _frame(engine, stmt.order_by(Trial.trial_id))


def _with_trial(engine: Engine, model, sweep: str | None, order) -> pd.DataFrame:
    """Rows of a per-trial table, each with its sweep, trial name and factors."""
    stmt = (
        select(Sweep.name.label("sweep"), Trial.name.label("trial"), Trial.label, Trial.activation,
               Trial.init, Trial.optimizer, Trial.lr, Trial.seed, model)
        .join(Trial, Trial.trial_id == model.trial_id)
        .join(Sweep, Sweep.sweep_id == Trial.sweep_id)
    )
    if sweep is not None:
        stmt = stmt.where(Sweep.name == sweep)
    return _frame(engine, stmt.order_by(*order))


def epoch_metrics_frame(engine: Engine, sweep: str | None = None) -> pd.DataFrame:
    """Per-epoch metrics with the trial's name and factors."""
    return _with_trial(engine, EpochMetric, sweep, (EpochMetric.trial_id, EpochMetric.epoch))


def layer_stats_frame(engine: Engine, sweep: str | None = None) -> pd.DataFrame:
    """Per-layer statistics with the trial's name and factors, layers in network order."""
    return _with_trial(engine, LayerStat, sweep,
                       (LayerStat.trial_id, LayerStat.step, LayerStat.kind, LayerStat.layer_stat_id))


def sweep_spec_json(engine: Engine, name: str) -> str | None:
    """The resolved spec a sweep was last run with, as JSON text."""
    with Session(engine) as s:
        return s.scalar(select(Sweep.spec_json).where(Sweep.name == name))


def sweep_spec(engine: Engine, name: str) -> dict[str, Any]:
    """The resolved spec a sweep was last run with, as a dict ({} if none is stored).

    Example: sweep_spec(engine, "fashion-activations")["epochs"] -> 3
    """
    text = sweep_spec_json(engine, name)
    return json.loads(text) if text else {}
