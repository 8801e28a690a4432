"""Another commit's code, for a benchmark that runs it side by side with this tree.

    with baseline_code("b5efb5c") as tree:   # db/, sweep/ and models/ as of that commit
        ... PYTHONPATH=tree ...              # goes first on the path: its packages, not this tree's
    with database_for(tree, db) as its_db:   # the same sweep in the schema version that code reads
        ...
"""
from __future__ import annotations

import contextlib
import re
import shutil
import sqlite3
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def baseline_code(commit: str) -> Iterator[Path]:
    """A temporary folder holding sweep/ as of `commit` (`git archive`), removed after. A commit from before
    db/ and models/ moved into sweep/ has them at the top, as its own imports want; links sweep/db and
    sweep/models to them, so that a script importing them as sweep.db and sweep.models runs on either."""
    with tempfile.TemporaryDirectory(prefix=f"sweep-{commit}-") as folder:
        listed = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", commit],
                                check=True, capture_output=True, text=True).stdout.split()
        top = [p for p in ("db", "sweep", "models") if p in listed]
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, *top],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        for package in ("db", "models"):
            if package in top:
                (Path(folder) / "sweep" / package).symlink_to(Path("..") / package)
        yield Path(folder)


def schema_version(tree: Path) -> int:
    """The schema version the code in `tree` reads (its db/schema.py's SCHEMA_VERSION)."""
    found = re.search(r"^SCHEMA_VERSION = (\d+)$", (Path(tree) / "sweep" / "db" / "schema.py").read_text(), re.M)
    return int(found.group(1))


@contextmanager
def database_for(tree: Path, db: Path) -> Iterator[Path]:
    """The SQLite database `db` as the code in `tree` reads it: `db` itself where that code reads this
    tree's schema version, else a temporary copy with what the later versions added taken away (they
    only add columns, indexes and tables; db.schema lists them), removed after. An older commit refuses
    a newer database, and this tree upgrades an older one in place: each gets the same sweep in its
    own version."""
    from sweep.db.schema import NEW_TABLES, SCHEMA_VERSION, UPGRADES

    version = schema_version(tree)
    if version == SCHEMA_VERSION:
        yield db
        return
    with tempfile.TemporaryDirectory(prefix=f"sweep-v{version}-") as folder:
        copy = Path(folder) / db.name
        shutil.copyfile(db, copy)
        with contextlib.closing(sqlite3.connect(copy)) as conn:
            for v in range(SCHEMA_VERSION, version, -1):
                for table in NEW_TABLES.get(v, ()):
                    conn.execute(f"DROP TABLE {table}")
                for statement in reversed(UPGRADES[v]):
                    if index := re.match(r"CREATE INDEX (\w+)", statement):
                        conn.execute(f"DROP INDEX {index.group(1)}")
                    elif column := re.match(r"ALTER TABLE (\w+) ADD COLUMN (\w+)", statement):
                        conn.execute(f"ALTER TABLE {column.group(1)} DROP COLUMN {column.group(2)}")
                    else:
                        raise ValueError(f"cannot undo {statement!r}")
            conn.execute("UPDATE schema_info SET version = ?", (version,))
            conn.commit()
        yield copy
