"""All reads and writes of the results database.

Writes are upserts on the natural keys, so replaying a result is harmless.
Reads return plain values or pandas DataFrames for notebook users:

    from sweep.db import make_engine, trials_frame
    df = trials_frame(make_engine("sqlite:///runs/sweep.db"), "fashion-activations")
"""
from __future__ import annotations

import functools
import json
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from sqlalchemy import Engine, and_, bindparam, case, delete, func, insert, select, update
from sqlalchemy.orm import Session, aliased

from sweep.db.engine import DatabaseError, check_version
from sweep.db.schema import ConfigCurve, EpochMetric, LayerStat, RungResult, Sweep, Trial
from sweep.status import Status
# What the recorder's writes share with the upgrade's backfills is defined with the upgrade (db/upgrade.py),
# which imports nothing of this module; the backfills stay importable from here, as before.
from sweep.db.upgrade import (CURVE_COLUMNS, SUMMARY_COLUMNS, backfill_config_curves,  # noqa: F401
                        backfill_epoch_summaries, pooled_accuracy, summarize_snapshot)

# The column trial_figures adds with a threshold: training images seen when test accuracy first reached it.
THRESHOLD_COLUMN = "images_to_threshold"


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _insert(dialect: str):
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        raise DatabaseError(f"unsupported database dialect {dialect!r}; use sqlite or postgresql")
    return insert


@functools.lru_cache(maxsize=64)
def _upsert_statement(dialect, table, columns: tuple[str, ...], keys: tuple[str, ...], update_existing: bool):
    """(statement, its SQL text for the driver, the order of its parameters where they are positional): one upsert per table and set of columns, built and compiled
    once; building and compiling cost more than executing it for the recorder's small batches."""
    stmt = _insert(dialect.name)(table)
    if update_existing:
        stmt = stmt.on_conflict_do_update(index_elements=list(keys),
                                          set_={c: stmt.excluded[c] for c in columns if c not in keys})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
    compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
    return stmt, str(compiled), compiled.positiontup if compiled.positional else None


def upsert(session: Session, model, rows: Sequence[dict[str, Any]], keys: Sequence[str],
           update_existing: bool = True, plain: bool = False) -> None:
    """Insert rows (all with the same keys); on a natural-key conflict update the other columns (or keep the row).

    One statement executed for all the rows (the driver's executemany), where a multi-row VALUES statement
    had to be compiled again for every batch. `plain`: every value is a number, text or None, handed to
    the driver as it is (no per-value type processing): the statistics' path, where that processing was
    most of the cost (docs/benchmarks.md, "Big sweeps (2-core CPU, 24 GiB)").
    """
    if not rows:
        return
    conn = session.connection()
    stmt, sql, order = _upsert_statement(conn.dialect, model.__table__, tuple(rows[0]), tuple(keys),
                                         update_existing)
    if plain:
        conn.exec_driver_sql(sql, [tuple(r[k] for k in order) for r in rows] if order else [dict(r) for r in rows])
    else:
        conn.execute(stmt, list(rows))


def _upsert_tuples(session: Session, model, columns: tuple[str, ...], rows: list[tuple], keys: Sequence[str]) -> None:
    """upsert(plain=True) of rows given as tuples in `columns` order: the statistics' hot path, with no dict
    per row."""
    if not rows:
        return
    conn = session.connection()
    _, sql, order = _upsert_statement(conn.dialect, model.__table__, columns, tuple(keys), True)
    if order is None:
        rows = [dict(zip(columns, r)) for r in rows]
    elif tuple(order) != columns:
        at = [columns.index(k) for k in order]
        rows = [tuple(r[i] for i in at) for r in rows]
    conn.exec_driver_sql(sql, rows)


_STAT_VALUES = ("mean", "std", "p98", "zero_frac", "dead_frac", "sat_frac")
_LAYER_COLUMNS = ("trial_id", "epoch", "step", "layer", "kind", *_STAT_VALUES, "nan_fields")


def _without_nans(names: Sequence[str], values: list) -> tuple[list, str | None]:
    """(values with NaN as None, the names of those that were NaN, comma-separated, or None): how NaN is
    stored, so that NULL ("does not apply") and NaN (a diverged value) stay distinguishable; infinities
    are kept as they are."""
    if all(v == v for v in values):  # NaN is the one value unequal to itself
        return values, None
    return [None if v != v else v for v in values], ",".join(n for n, v in zip(names, values) if v != v)


def _layer_tuple(trial_id: int, r: dict[str, Any]) -> tuple:
    """A layer_stats row as a _LAYER_COLUMNS tuple, NaN stored as _without_nans says."""
    values, nans = _without_nans(_STAT_VALUES, [r.get(c) for c in _STAT_VALUES])
    return (trial_id, r["epoch"], r["step"], r["layer"], r["kind"], *values, nans)


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
    rows = [{**r, "sweep_id": sweep_id, "status": Status.PENDING} for r in rows]
    if rows:
        upsert(session, Trial, rows, ["sweep_id", "config_hash"], update_existing=False)
    found = session.execute(select(Trial.config_hash, Trial.trial_id).where(Trial.sweep_id == sweep_id))
    return {h: i for h, i in found}


def update_trial(session: Session, trial_id: int, **values: Any) -> None:
    """Set columns of one trial row."""
    table = Trial.__table__
    session.connection().execute(update(table).where(table.c.trial_id == trial_id).values(**values))


def update_trials(session: Session, changes: Sequence[tuple[int, dict[str, Any]]]) -> None:
    """Set columns of many trial rows, in order (a later change of a trial's column wins): one executemany
    per set of columns.

    Example: update_trials(s, [(7, {"epochs_done": 3}), (8, {"epochs_done": 2, "status": Status.DIVERGED})])
    """
    merged: dict[int, dict[str, Any]] = {}
    for trial_id, values in changes:
        merged.setdefault(trial_id, {}).update(values)
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for trial_id, values in merged.items():
        groups.setdefault(tuple(values), []).append({"t": trial_id, **{f"v_{k}": v for k, v in values.items()}})
    conn = session.connection()
    for columns, params in groups.items():
        conn.execute(_trial_update(columns), params)


@functools.lru_cache(maxsize=64)
def _trial_update(columns: tuple[str, ...]):
    # Parameters named apart from the columns they set (SQLAlchemy reserves the column names).
    table = Trial.__table__
    return update(table).where(table.c.trial_id == bindparam("t")).values(
        **{c: bindparam(f"v_{c}") for c in columns})


def trial_statuses(session: Session, sweep: str) -> dict[str, tuple[Status, int, str | None]]:
    """{config_hash: (status, epochs_done, kernels)} for every trial of sweep `sweep` (empty if none); kernels
    None where a trial recorded none (sweep.models.kernels)."""
    rows = session.execute(
        select(Trial.config_hash, Trial.status, Trial.epochs_done, Trial.kernels)
        .join(Sweep, Sweep.sweep_id == Trial.sweep_id).where(Sweep.name == sweep)
    )
    return {h: (Status(s), e, k) for h, s, e, k in rows}


def _flag_nans(row: dict[str, Any], trial_id: int) -> dict[str, Any]:
    """The row with NaN stored as _without_nans says (nan_fields), for trial `trial_id`."""
    values, nans = _without_nans(list(row), list(row.values()))
    return {**dict(zip(row, values)), "nan_fields": nans, "trial_id": trial_id}


def record_results(session: Session, results: Sequence[tuple[int, dict[str, Any], Sequence[dict[str, Any]]]]
                   ) -> None:
    """Upsert many reports at once, each (trial_id, its epoch_metrics row, its layer_stats rows in layer order).

    Each report carries its epoch's snapshots (the trial reports an epoch with the statistics taken
    during it), so the epoch's summary (summarize_snapshot of its last snapshot) goes into the epoch row
    in the same statement. One executemany per table for the whole batch.
    Example: record_results(s, [(7, {"epoch": 1, "images_seen": 60000, ...}, rows)])
    """
    epochs, stats = [], []
    for trial_id, row, layer_rows in results:
        mine = [r for r in layer_rows if r["epoch"] == row["epoch"]]
        step = max((r["step"] for r in mine), default=None)
        summary = summarize_snapshot([r for r in mine if r["step"] == step])
        epochs.append(_flag_nans({**row, "stats_step": step, **summary}, trial_id))
        stats += [_layer_tuple(trial_id, r) for r in layer_rows]
    upsert(session, EpochMetric, epochs, ["trial_id", "epoch"], plain=True)
    _upsert_tuples(session, LayerStat, _LAYER_COLUMNS, stats, ["trial_id", "step", "layer", "kind"])
    _refresh_curves(session, {t for t, _, _ in results}, {row["images_seen"] for _, row, _ in results})


def record_rungs(session: Session, decisions: Sequence[tuple[int, dict[str, Any]]]) -> None:
    """Upsert ASHA decisions, each (trial_id, the `rung` of its report: sweep.run.stopping.Rungs.judge's dict),
    in the order they were made; a NaN value is stored as NULL. A replayed report keeps its row.
    Example: record_rungs(s, [(7, {"rung": 0, "milestone": 1.0, "epoch": 1, "value": 0.8, "continued": True})])
    """
    rows = [{"trial_id": trial_id, "rung": d["rung"], "milestone": float(d["milestone"]), "epoch": d["epoch"],
             "value": None if d["value"] is None or d["value"] != d["value"] else float(d["value"]),
             "continued": bool(d["continued"])} for trial_id, d in decisions]
    upsert(session, RungResult, rows, ["trial_id", "rung"])


def rung_results(engine: Engine, sweep: str) -> list[dict[str, Any]]:
    """The sweep's ASHA decisions in the order they were recorded, each with its trial's config hash,
    seed, rung, milestone, epoch, value (None where NaN) and continued: what a rerun seeds its rung store with
    (sweep.run.stopping.Rungs.seed). Example: rung_results(engine, "fashion-activations")[0]["continued"]"""
    stmt = (select(Trial.config_hash, Trial.seed, RungResult.rung, RungResult.milestone, RungResult.epoch,
                   RungResult.value, RungResult.continued)
            .join(Trial, Trial.trial_id == RungResult.trial_id).join(Sweep, Sweep.sweep_id == Trial.sweep_id)
            .where(Sweep.name == sweep).order_by(RungResult.rung_result_id))
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


def _refresh_curves(session: Session, trial_ids: set[int], images: set[int]) -> None:
    """Compute again the config_curves rows of these trials' configurations at these numbers of images
    seen, from epoch_metrics (a replayed epoch replaces its numbers; it is never counted twice)."""
    if not trial_ids:
        return
    labels: dict[int, list[str]] = {}
    for sweep_id, label in session.execute(select(Trial.sweep_id, Trial.label).distinct()
                                           .where(Trial.trial_id.in_(trial_ids))):
        labels.setdefault(sweep_id, []).append(label)
    for sweep_id, mine in labels.items():
        session.execute(delete(ConfigCurve).where(ConfigCurve.sweep_id == sweep_id, ConfigCurve.label.in_(mine),
                                                  ConfigCurve.images_seen.in_(images)))
        session.execute(insert(ConfigCurve).from_select(CURVE_COLUMNS, pooled_accuracy(Trial.sweep_id, Trial.label)
                        .join(Trial, Trial.trial_id == EpochMetric.trial_id)
                        .where(Trial.sweep_id == sweep_id, Trial.label.in_(mine),
                               EpochMetric.images_seen.in_(images))))


# --------------------------------------------------------------------------- reads


def sweep_names(engine: Engine) -> list[str]:
    """Names of all sweeps in the database, the one written last at the end: the default sweep of
    `sweep report` and `sweep plot`, which is the one just run (after `sweep run b.yaml`, b), not the one
    created last.

    A sweep is written when its row is created and when the driver starts or ends one of its trials (their
    started_at and finished_at: every `sweep run` that trains starts trials); sweeps written at the same
    time keep the order of their creation.
    Example: sweep_names(engine) -> ["fashion-activations", "fashion-depth"]
    """
    if not check_version(engine):
        return []
    stmt = (select(Sweep.sweep_id, Sweep.name, Sweep.created_at, func.max(Trial.started_at),
                   func.max(Trial.finished_at))
            .outerjoin(Trial, Trial.sweep_id == Sweep.sweep_id).group_by(Sweep.sweep_id, Sweep.name, Sweep.created_at))
    with Session(engine) as s:
        found = s.execute(stmt).all()
    written = {sweep_id: max((t for t in times if t is not None), default=datetime.min)
               for sweep_id, _, *times in found}
    return [name for sweep_id, name, *_ in sorted(found, key=lambda r: (written[r[0]], r[0]))]


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


def last_epoch_read(sweep_epochs: int):
    """The last epoch of a trial that the report and the flags read (like with like), as an SQL expression
    over Trial: the sweep's `epochs`, or for a diverged trial the epoch before its non-finite one where that
    is earlier (db.flags._read_upto is the same rule on pandas frames)."""
    diverged_early = and_(Trial.status == Status.DIVERGED.value, Trial.epochs_done - 1 < sweep_epochs)
    return case((diverged_early, Trial.epochs_done - 1), else_=sweep_epochs)


def trial_figures(engine: Engine, sweep: str, sweep_epochs: int, threshold: float | None = None) -> pd.DataFrame:
    """trials_frame with each trial's figures read from its epoch rows at the sweep's `sweep_epochs`,
    computed by the database (the epoch rows never leave it).

    Up to epoch `sweep_epochs` (a diverged trial, whose epochs_done is the epoch with the non-finite
    loss: up to the epoch before): final_test_acc, final_test_loss and final_train_loss from the last
    such epoch, `epochs` its number; best_test_acc and best_epoch from the earliest epoch with the
    highest test accuracy; with a validation split, final_val_acc and final_val_loss from the last such
    epoch, and best_val_acc, best_val_epoch and test_acc_at_best_val from the earliest epoch with the highest
    validation accuracy (the best epoch chosen on validation, its test figure beside it; NaN without one); with `threshold`, images_to_threshold: training images seen when test
    accuracy first reached it (NaN: never). A trial without such epochs has NaN figures.
    Example: trial_figures(engine, "fashion-activations", 3, threshold=0.7)
    """
    trials = trials_frame(engine, sweep)
    upto = (select(Trial.trial_id, last_epoch_read(sweep_epochs).label("upto"))
            .join(Sweep, Sweep.sweep_id == Trial.sweep_id).where(Sweep.name == sweep).subquery())
    # Per trial, subqueries the database answers from the index on (trial_id, epoch, test_acc, images_seen):
    # the last epoch a seek, the best a walk through the trial's own rows (grouping all of a sweep's epoch
    # rows by trial was most of the query's time on a big sweep: docs/benchmarks.md, "Big sweeps (2-core CPU,
    # 24 GiB)").
    mine = and_(EpochMetric.trial_id == upto.c.trial_id, EpochMetric.epoch <= upto.c.upto)
    per_trial = [upto.c.trial_id, select(func.max(EpochMetric.epoch)).where(mine).scalar_subquery().label("last"),
                 select(EpochMetric.epoch).where(mine, EpochMetric.test_acc.is_not(None))
                 .order_by(EpochMetric.test_acc.desc(), EpochMetric.epoch).limit(1)  # the earliest of the best
                 .scalar_subquery().label("best"),
                 select(EpochMetric.epoch).where(mine, EpochMetric.val_acc.is_not(None))
                 .order_by(EpochMetric.val_acc.desc(), EpochMetric.epoch).limit(1)  # chosen on validation
                 .scalar_subquery().label("best_val")]
    if threshold is not None:
        per_trial.append(select(func.min(EpochMetric.images_seen)).where(mine, EpochMetric.test_acc >= threshold)
                         .scalar_subquery().label(THRESHOLD_COLUMN))
    epochs = select(*per_trial).subquery()
    final, best, best_val = aliased(EpochMetric), aliased(EpochMetric), aliased(EpochMetric)
    stmt = (select(epochs.c.trial_id, final.epoch.label("epochs"), final.test_acc.label("final_test_acc"),
                   final.test_loss.label("final_test_loss"), final.train_loss.label("final_train_loss"),
                   best.test_acc.label("best_test_acc"), best.epoch.label("best_epoch"),
                   final.val_acc.label("final_val_acc"), final.val_loss.label("final_val_loss"),
                   best_val.val_acc.label("best_val_acc"), best_val.epoch.label("best_val_epoch"),
                   best_val.test_acc.label("test_acc_at_best_val"),
                   *([epochs.c[THRESHOLD_COLUMN]] if threshold is not None else []))
            .outerjoin(final, and_(final.trial_id == epochs.c.trial_id, final.epoch == epochs.c.last))
            .outerjoin(best, and_(best.trial_id == epochs.c.trial_id, best.epoch == epochs.c.best))
            .outerjoin(best_val, and_(best_val.trial_id == epochs.c.trial_id, best_val.epoch == epochs.c.best_val)))
    found = _frame(engine, stmt).set_index("trial_id")
    figures = trials.drop(columns=["final_test_acc", "final_test_loss", "final_train_loss", "best_test_acc",
                                   "best_epoch"])
    for column in found:
        figures[column] = figures["trial_id"].map(found[column]).astype(float)
    return figures


def images_per_epoch(engine: Engine, sweep: str) -> int | None:
    """Training images one epoch of a sweep trains (the images seen at epoch 1; all its trials train the
    same data), from its epoch rows; None before any trial has finished an epoch.

    Example: images_per_epoch(engine, "fashion-activations") -> 60000
    """
    stmt = (select(func.max(EpochMetric.images_seen)).join(Trial, Trial.trial_id == EpochMetric.trial_id)
            .join(Sweep, Sweep.sweep_id == Trial.sweep_id).where(Sweep.name == sweep, EpochMetric.epoch == 1))
    with engine.connect() as conn:
        found = conn.scalar(stmt)
    return None if found is None else int(found)


# The factors a configuration's label names: one value per label, so config_curves serves their panels.
LABEL_FACTORS = ("activation", "init", "gain", "optimizer", "lr")


def curves_frame(engine: Engine, sweep: str, facet: str) -> pd.DataFrame:
    """Test accuracy per configuration (label), value of `facet` (a trials column) and images seen, seeds
    pooled: label, <facet>, images_seen, n, mean, std (sample std; NaN for one seed), configurations in
    the order of their first trial. Read from config_curves for a factor the label names (LABEL_FACTORS),
    else grouped by the database from the epoch rows.

    Example: curves_frame(engine, "fashion-activations", "activation")
    """
    column = getattr(Trial, facet)
    # Each configuration is named by its first trial's id: the points come back as numbers only, and
    # the names are looked up once per configuration (strings on each row cost more than the query).
    if facet in LABEL_FACTORS:
        first = (select(Trial.label, func.min(Trial.trial_id).label("config")).join(Sweep, Sweep.sweep_id == Trial.sweep_id)
                 .where(Sweep.name == sweep).group_by(Trial.label).subquery())
        curve = ConfigCurve
        points = (select(first.c.config, curve.images_seen, curve.n, curve.test_acc_mean, curve.test_acc_square_mean)
                  .join(Trial, Trial.trial_id == first.c.config)
                  .join(curve, and_(curve.sweep_id == Trial.sweep_id, curve.label == first.c.label))
                  .order_by(first.c.config, curve.images_seen))
    else:
        # Grouped by two integers, not by (label, facet) strings, which are slower to compare
        # (docs/benchmarks.md, "Big sweeps (2-core CPU, 24 GiB)").
        config = (select(Trial.trial_id, func.min(Trial.trial_id).over(partition_by=[Trial.label, column]).label("config"))
                  .join(Sweep, Sweep.sweep_id == Trial.sweep_id).where(Sweep.name == sweep).subquery())
        pooled = pooled_accuracy(config.c.config).join(config, config.c.trial_id == EpochMetric.trial_id).subquery()
        points = select(*pooled.c).order_by(pooled.c.config, pooled.c.images_seen)
    found = _numbers(engine, points, 5)
    names = _frame(engine, select(Trial.trial_id, Trial.label, column.label(facet)).join(Sweep, Sweep.sweep_id == Trial.sweep_id)
                   .where(Sweep.name == sweep)).set_index("trial_id")
    frame = names.loc[found[:, 0].astype(np.int64)].reset_index(drop=True)
    frame["images_seen"] = found[:, 1].astype(np.int64)
    frame["n"] = found[:, 2].astype(np.int64)
    frame["mean"] = found[:, 3]
    n, square = found[:, 2], found[:, 4]
    with np.errstate(all="ignore"):
        variance = np.clip((square - found[:, 3] ** 2) * n / (n - 1), 0, None)
    frame["std"] = np.where(n > 1, np.sqrt(variance), np.nan)
    return frame


def _numbers(engine: Engine, stmt, columns: int) -> np.ndarray:
    """The rows of a statement whose `columns` columns are all numbers, as a float array (NULL: NaN), read
    from the driver's cursor: SQLAlchemy's Row objects cost as much as the rest of a big read
    (docs/benchmarks.md, "Big sweeps (2-core CPU, 24 GiB)")."""
    with engine.connect() as conn:
        compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        params = (tuple(compiled.params[k] for k in compiled.positiontup) if compiled.positional
                  else compiled.params)
        cursor = conn.connection.cursor()
        try:
            cursor.execute(str(compiled), params)
            return np.array(cursor.fetchall(), dtype=float).reshape(-1, columns)
        finally:
            cursor.close()


def stats_epochs(engine: Engine, sweep: str) -> list[int]:
    """The epochs of a sweep that have statistics, in order."""
    stmt = (select(EpochMetric.epoch).distinct().join(Trial, Trial.trial_id == EpochMetric.trial_id)
            .join(Sweep, Sweep.sweep_id == Trial.sweep_id)
            .where(Sweep.name == sweep, EpochMetric.stats_step.is_not(None)).order_by(EpochMetric.epoch))
    with engine.connect() as conn:
        return [int(e) for e in conn.scalars(stmt)]


def depth_frame(engine: Engine, sweep: str, epochs: Sequence[int]) -> pd.DataFrame:
    """Each configuration's (label's) mean std per layer of `epochs`' last snapshots, seeds pooled:
    label, epoch, kind, layer, std, in layer order. Reads only those snapshots' rows.

    Example: depth_frame(engine, "fashion-activations", [1, 3])
    """
    stmt = (select(Trial.label, LayerStat.epoch, LayerStat.kind, LayerStat.layer, func.avg(LayerStat.std).label("std"))
            .select_from(EpochMetric)
            .join(Trial, Trial.trial_id == EpochMetric.trial_id).join(Sweep, Sweep.sweep_id == Trial.sweep_id)
            .join(LayerStat, and_(LayerStat.trial_id == EpochMetric.trial_id, LayerStat.step == EpochMetric.stats_step,
                                  LayerStat.epoch == EpochMetric.epoch))
            .where(Sweep.name == sweep, EpochMetric.epoch.in_(list(epochs)))
            .group_by(Trial.label, LayerStat.epoch, LayerStat.kind, LayerStat.layer)
            .order_by(func.min(Trial.trial_id), LayerStat.epoch, LayerStat.kind, func.min(LayerStat.layer_stat_id)))
    return _frame(engine, stmt)


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
