"""Engine and session setup.

SQLite runs in WAL mode so that readers (`sweep report`, pandas, sqlite3)
never block the single writer, the sweep driver.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, create_engine, event, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from db.schema import SCHEMA_VERSION, Base, SchemaInfo


class DatabaseError(Exception):
    """The database cannot be used; the message is one line for the user."""


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


def sqlite_path(url) -> Path | None:
    """The file of a SQLite URL, given as text or as an engine's URL (None for other databases and in-memory SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite connections get WAL and a busy timeout."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

    return engine


def check_version(engine: Engine) -> bool:
    """True if the database has our tables at our version; False if it is empty.

    Raises DatabaseError for another version or for foreign tables.
    """
    tables = set(inspect(engine).get_table_names())
    if not tables:
        return False
    if "schema_info" not in tables:
        raise DatabaseError(
            f"{safe_url(str(engine.url))} is not a sweep database (no schema_info table)"
        )
    with Session(engine) as s:
        version = s.scalar(select(SchemaInfo.version))
    if version != SCHEMA_VERSION:
        raise DatabaseError(
            f"{safe_url(str(engine.url))} has schema version {version}; "
            f"this sweep reads version {SCHEMA_VERSION}"
        )
    return True


def init_db(engine: Engine) -> None:
    """Create the tables (and record the version) unless they exist at our version."""
    if check_version(engine):
        return
    Base.metadata.create_all(engine)
    with session_scope(engine) as s:
        s.add(SchemaInfo(version=SCHEMA_VERSION))


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success, rolls back on error and always closes."""
    session = sessionmaker(engine, expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
