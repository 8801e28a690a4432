"""Results database: schema, engine/session setup, schema upgrades (db/upgrade.py) and queries (no SQL elsewhere).

The names below are imported on first use (PEP 562), so that importing a module of this package, say
sweep.db.schema, never loads db.queries and with it pandas.
"""
from __future__ import annotations

import importlib

_HOMES = {
    "DatabaseError": "sweep.db.engine", "init_db": "sweep.db.engine", "make_engine": "sweep.db.engine",
    "safe_url": "sweep.db.engine", "session_scope": "sweep.db.engine", "sqlite_path": "sweep.db.engine",
    "epoch_metrics_frame": "sweep.db.queries", "layer_stats_frame": "sweep.db.queries",
    "sweep_names": "sweep.db.queries", "trials_frame": "sweep.db.queries",
}
__all__ = list(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
