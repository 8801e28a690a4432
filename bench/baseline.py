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
import sys
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
        _grouped_names(Path(folder) / "sweep")
        _build_kernels(Path(folder))
        yield Path(folder)


def _build_kernels(tree: Path) -> None:
    """The commit's compiled CPU kernels built in place, as its install would (a commit that has them trains on
    them, so its numbers are its own); where they cannot be built, its runs say so, as an install would."""
    if (tree / "sweep" / "models" / "_kernels.c").exists():
        build = ("from setuptools import Extension, setup; setup(name='k', script_args=['-q', 'build_ext', "
                 "'--inplace'], ext_modules=[Extension('sweep.models._kernels', ['sweep/models/_kernels.c'], "
                 "extra_compile_args=['-O3', '-ffp-contract=off', '-Wno-psabi'])])")
        subprocess.run([sys.executable, "-c", build], cwd=tree, capture_output=True)


# Where each module of a commit before sweep/ was grouped by stage lives now (sweep.trial -> sweep.run.trial).
GROUPED = {
    "spec": {"spec": "spec", "checks": "spec_checks", "optimizer": "spec_optimizer", "grid": "grid"},
    "run": {m: m for m in ("runner", "records", "bundles", "cluster", "trial", "hold", "stopping", "recorder",
                           "progress", "ledger", "hparams")},
    "analysis": {m: m for m in ("results", "report", "factors", "intervals", "render", "tuning", "findings")},
    "view": {m: m for m in ("pictures", "plot", "plot_dynamics", "tuning_plot", "forked", "page", "page_html")},
}


def _grouped_names(package: Path) -> None:
    """In a tree from before the grouping, the grouped names as aliases of its flat modules, so that a script
    importing sweep.run.trial runs on either: a package per stage whose modules are the flat ones
    (sys.modules); where a stage has an old module's name (sweep/spec.py, sweep/data.py), its package runs that
    module's code and is its own module of that name (sweep.spec.spec, sweep.data.datasets)."""
    if (package / "run").exists() or not (package / "trial.py").exists():
        return
    for stage, names in {**GROUPED, "data": {}}.items():
        (package / stage).mkdir()
        aliases = {name: old for name, old in names.items() if old != stage and (package / f"{old}.py").exists()}
        lines = ["import importlib, sys", "from pathlib import Path"]
        if (package / f"{stage}.py").exists():
            (package / f"{stage}.py").rename(package / stage / "_flat.py")
            itself = "datasets" if stage == "data" else stage
            lines += ["exec(compile((Path(__file__).parent / '_flat.py').read_text(), __file__, 'exec'))",
                      f"sys.modules[__name__ + '.{itself}'] = sys.modules[__name__]"]
        lines += [f"for _name, _old in {aliases!r}.items():",
                  "    sys.modules[f'{__name__}.{_name}'] = importlib.import_module(f'sweep.{_old}')"]
        (package / stage / "__init__.py").write_text("\n".join(lines) + "\n")


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
