"""Results database: schema, engine/session setup, schema upgrades (db/upgrade.py) and queries (no SQL elsewhere)."""
from sweep.db.engine import DatabaseError, init_db, make_engine, safe_url, session_scope, sqlite_path
from sweep.db.queries import epoch_metrics_frame, layer_stats_frame, sweep_names, trials_frame

__all__ = [
    "DatabaseError", "init_db", "make_engine", "safe_url", "session_scope", "sqlite_path",
    "epoch_metrics_frame", "layer_stats_frame", "sweep_names", "trials_frame",
]
