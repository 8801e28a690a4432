"""Engine and session setup.

SQLite runs in WAL mode so that readers (`sweep report`, pandas, sqlite3)
never block the single writer, the sweep driver. WAL needs every process on
one host, so a SQLite file on a network filesystem is refused
(`check_sqlite_location`); PostgreSQL is the database for that case.
"""
from __future__ import annotations

import os
import re
import weakref
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Iterator

from sqlalchemy import Engine, create_engine, event, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from sweep.db.schema import SCHEMA_VERSION, Base, SchemaInfo
from sweep.db.upgrade import upgrade


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


def error_line(url: str, exc: BaseException) -> str:
    """One line for a failure to open `url`: the URL with its password masked, the error's type and first line.

    Drivers do not echo the password, but a message may quote the URL itself: it is masked there too.
    Example: database postgresql+psycopg://sweep:***@127.0.0.1:5432/results: OperationalError: connection failed: ...
    """
    try:
        shown = safe_url(url)
        password = make_url(url).password
    except Exception:  # an unparsable URL is never echoed
        shown, password = "(not a readable database URL)", None
    lines = str(exc).splitlines()
    detail = lines[0].replace(url, shown) if lines else "cannot open it"
    if password:
        detail = detail.replace(str(password), "***")
    return f"database {shown}: {exc.__class__.__name__}: {detail}"


# Filesystem types (as /proc/self/mountinfo names them) on which SQLite's WAL is unsafe:
# its shared-memory index assumes every process is on one host (sqlite.org/wal.html).
# A FUSE filesystem shows as "fuse.<subtype>", the subtype its client sets: these are the network ones
# (ceph-fuse: fuse.ceph-fuse; GlusterFS's client: fuse.glusterfs; MooseFS's mfsmount: fuse.mfs).
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "sshfs", "ceph", "glusterfs",
    "afs", "gfs2", "ocfs2",
    "fuse.sshfs", "fuse.ceph", "fuse.ceph-fuse", "fuse.glusterfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone",
    "fuse.juicefs", "fuse.mfs",
})


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def filesystem_type(path: Path, mountinfo: str) -> tuple[str, str]:
    """(filesystem type, mount point) of the mount holding `path`, from mountinfo text (proc(5)).

    The mount is the one with the longest mount point that is a prefix of the
    path; of mounts stacked on one point the last listed (the visible one) wins.
    Example: filesystem_type(Path("/mnt/lab/runs"), text) -> ("nfs4", "/mnt/lab")
    """
    path = PurePosixPath(path)
    best: tuple[int, str, str] | None = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        point = PurePosixPath(_unescape(fields[4]))
        fstype = line.split(" - ", 1)[1].split()[0]
        if (point == path or point in path.parents) and (best is None or len(point.parts) >= best[0]):
            best = (len(point.parts), fstype, str(point))
    if best is None:
        raise ValueError(f"no mount in mountinfo holds {path}")
    return best[1], best[2]


def check_sqlite_location(url: str, mountinfo: Path = Path("/proc/self/mountinfo")) -> None:
    """Refuse a SQLite database whose folder is on a network filesystem (DatabaseError, one line).

    Other databases, in-memory SQLite and systems without `mountinfo` pass.
    Example: check_sqlite_location("sqlite:////mnt/lab/runs/sweep.db") raises where /mnt/lab is NFS.
    """
    file = sqlite_path(url)
    if file is None:
        return
    try:
        text = Path(mountinfo).read_text()
    except OSError:  # not Linux: nothing to judge by
        return
    # Symlinks resolved as far as the path exists: the folder may not exist yet (sweep run creates it).
    folder = Path(os.path.realpath(file)).parent
    fstype, point = filesystem_type(folder, text)
    if fstype in NETWORK_FILESYSTEMS:
        raise DatabaseError(
            f"database {safe_url(url)} is on a network filesystem ({fstype} at {point}), where SQLite's WAL "
            f"is unsafe: keep the SQLite file on a local disk (database: sqlite:////local/path/sweep.db) "
            f"or use PostgreSQL (database: postgresql+psycopg://user@host/db)"
        )


# Every engine make_engine made in this process, for dispose_all.
_ENGINES: "weakref.WeakSet[Engine]" = weakref.WeakSet()


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite connections get WAL and a busy timeout."""
    engine = create_engine(url)
    _ENGINES.add(engine)
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


def dispose_all() -> None:
    """Close the pooled connections of every engine make_engine made in this process, as the interpreter's
    teardown would: a SQLite database's last connection folds its WAL back into the file and removes it, a
    PostgreSQL server sees its sessions end rather than drop (for a program that leaves with os._exit)."""
    for engine in list(_ENGINES):
        engine.dispose()


def _leave_the_parents_connections() -> None:
    """In a forked child: every engine starts a pool of its own, the parent's pooled connections left alone
    (SQLAlchemy's advice for fork: dispose(close=False)). A child that used or closed them would speak on
    the parent's sockets and file handles."""
    for engine in list(_ENGINES):
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_leave_the_parents_connections)


def check_version(engine: Engine) -> bool:
    """True if the database has our tables at our version (upgrading an older one in place, in one
    transaction: db.upgrade); False if empty.

    Raises DatabaseError for a newer or unknown version or for foreign tables.
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
    if isinstance(version, int) and 1 <= version < SCHEMA_VERSION:
        with session_scope(engine) as s:  # one transaction: all of the upgrade, or nothing
            upgrade(s, version)
        return True
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
