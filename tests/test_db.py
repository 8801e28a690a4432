"""Database: schema version, idempotent upserts, rollback, NaN, frames; on SQLite and on a real PostgreSQL.

Each test gets an empty database: a fresh SQLite file, or a fresh database on
the session's PostgreSQL server (conftest.py's db_url).
"""
import ast
import functools
import math
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, inspect, select, text

from sweep.db.engine import (DatabaseError, check_sqlite_location, filesystem_type, init_db, make_engine, safe_url,
                       session_scope)
from sweep.db.queries import (SUMMARY_COLUMNS, curves_frame, ensure_sweep, ensure_trials, epoch_metrics_frame,
                        layer_stats_frame, record_results, record_rungs, rung_results, sweep_names, trials_frame,
                        update_trial, update_trials)
from sweep.db.schema import IMAGE_COLUMNS, EpochMetric, LayerStat, SchemaInfo, Sweep, Trial
from sweep.run import runner
from sweep.cli import main


def trial_row(h, seed=0):
    return {"config_hash": h, "name": f"relu-x-s{seed}", "label": "relu-x", "model": "lenet",
            "activation": "relu", "init": "default", "gain": 1.0, "optimizer": "adam", "lr": 0.001,
            "optimizer_params_json": "{}", "seed": seed, "config_json": "{}", "logdir": "/tmp/x"}


@pytest.fixture
def engine(db_url):
    e = make_engine(db_url)
    init_db(e)
    yield e
    e.dispose()  # the server's connections go back at once


def count(engine, model):
    with session_scope(engine) as s:
        return s.scalar(select(func.count()).select_from(model))


def test_wal_mode_for_concurrent_readers(tmp_path):
    init_db(make_engine(f"sqlite:///{tmp_path / 'r.db'}"))
    assert sqlite3.connect(tmp_path / "r.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_dialect_is_the_one_asked_for(engine, db_url):
    assert engine.dialect.name == db_url.split(":")[0].split("+")[0]


def test_a_forked_child_opens_connections_of_its_own(engine):
    """The parent's pooled connection stays the parent's: the child gets a fresh pool, and the parent's
    connection still answers after the child has used the database."""
    from sweep.view.forked import Forked

    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    pool = engine.pool
    assert pool.checkedin() == 1

    def child():
        fresh, idle = engine.pool is not pool, engine.pool.checkedin()
        with engine.connect() as conn:
            return fresh, idle, conn.execute(select(func.count()).select_from(Trial)).scalar()

    assert Forked(child).result() == (True, 0, 0)
    assert engine.pool is pool and pool.checkedin() == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 2")).scalar() == 2


def test_trials_are_unique_per_sweep_and_config_and_keep_their_status(engine):
    with session_scope(engine) as s:
        sweep_id = ensure_sweep(s, "a", "{}")
        ids = ensure_trials(s, sweep_id, [trial_row("h1"), trial_row("h2", 1)])
        update_trial(s, ids["h1"], status="completed", epochs_done=3)
    with session_scope(engine) as s:  # the same sweep again: nothing new, nothing forgotten
        assert ensure_sweep(s, "a", '{"x": 1}') == sweep_id
        assert ensure_trials(s, sweep_id, [trial_row("h1"), trial_row("h2", 1)]) == ids
    assert count(engine, Trial) == 2
    df = trials_frame(engine, "a")
    assert df.set_index("config_hash").loc["h1", "status"] == "completed"
    assert df.set_index("config_hash").loc["h1", "epochs_done"] == 3
    assert sweep_names(engine) == ["a"]


def test_replaying_results_is_harmless(engine):
    with session_scope(engine) as s:
        tid = ensure_trials(s, ensure_sweep(s, "a", "{}"), [trial_row("h")])["h"]
    row = {"epoch": 1, "images_seen": 100, "train_loss": 0.5, "test_loss": 0.6, "test_acc": 0.7, "wall_seconds": 1.0}
    stats = [{"epoch": 1, "step": 64, "layer": "fc1", "kind": k, "mean": 0.1, "std": 0.2, "p98": 0.3,
              "zero_frac": 0.0, "dead_frac": None, "sat_frac": None} for k in ("activation", "gradient")]
    for _ in range(3):
        with session_scope(engine) as s:
            record_results(s, [(tid, row, stats)])
    with session_scope(engine) as s:
        record_results(s, [(tid, {**row, "test_acc": 0.75}, stats)])  # a later report of the same epoch wins
    assert count(engine, EpochMetric) == 1 and count(engine, LayerStat) == 2
    assert epoch_metrics_frame(engine, "a")["test_acc"].tolist() == [0.75]
    assert layer_stats_frame(engine, "a")["kind"].tolist() == ["activation", "gradient"]


def test_session_scope_rolls_back_on_error(engine):
    with pytest.raises(RuntimeError):
        with session_scope(engine) as s:
            ensure_sweep(s, "doomed", "{}")
            raise RuntimeError("boom")
    assert sweep_names(engine) == []


def test_infinity_is_stored_and_nan_becomes_null(engine):
    # One behaviour on both databases: SQLite cannot store NaN, so NaN is NULL
    # plus its column named in nan_fields (PostgreSQL could, but readers would
    # then see two conventions); infinities are stored as they are.
    with session_scope(engine) as s:
        tid = ensure_trials(s, ensure_sweep(s, "a", "{}"), [trial_row("h")])["h"]
        record_results(s, [(tid, {"epoch": 4, "images_seen": 9, "train_loss": math.inf, "test_loss": math.nan,
                                  "test_acc": 0.1, "wall_seconds": 1.0},
                            [{"epoch": 4, "step": 9, "layer": "fc1", "kind": "gradient", "mean": -math.inf,
                              "std": math.nan, "p98": math.inf, "zero_frac": 0.0, "dead_frac": None,
                              "sat_frac": None}])])
    df = epoch_metrics_frame(engine, "a")
    assert df["train_loss"].tolist() == [math.inf]
    assert df["test_loss"].isna().tolist() == [True]
    assert df["nan_fields"].tolist() == ["test_loss"]  # NaN, not "does not apply"
    stats = layer_stats_frame(engine, "a").iloc[0]
    assert (stats["mean"], stats["p98"], stats["zero_frac"]) == (-math.inf, math.inf, 0.0)
    assert stats["nan_fields"] == "std"
    with engine.connect() as conn:  # what a reader with plain SQL sees
        assert conn.execute(text("SELECT std IS NULL, dead_frac IS NULL, p98 FROM layer_stats")).one() == (
            True, True, math.inf)
        assert conn.execute(text("SELECT COUNT(*) FROM epoch_metrics WHERE test_loss IS NULL")).scalar() == 1


def test_other_schema_version_is_refused(engine, db_url):
    with session_scope(engine) as s:
        s.get(SchemaInfo, 1).version = 99
    with pytest.raises(DatabaseError) as err:
        init_db(engine)
    assert str(err.value) == f"{safe_url(db_url)} has schema version 99; this sweep reads version 8"


def test_a_version_1_database_is_upgraded_in_place_keeping_its_rows(engine):
    with session_scope(engine) as s:
        ids = ensure_trials(s, ensure_sweep(s, "a", "{}"), [trial_row("h1")])
        update_trial(s, ids["h1"], status="completed", epochs_done=3)
    with engine.begin() as conn:  # what version 1 had: no bundle, device or node column, no epoch summaries, no curves
        conn.execute(text("DROP TABLE rung_results"))
        conn.execute(text("ALTER TABLE trials DROP COLUMN kernels"))  # version 8's
        for column in ("val_loss", "val_acc"):  # version 7's
            conn.execute(text(f"ALTER TABLE epoch_metrics DROP COLUMN {column}"))
        conn.execute(text("DROP TABLE config_curves"))
        conn.execute(text("DROP INDEX ix_epoch_metrics_curves"))
        for column in ("bundle", "device", "node"):
            conn.execute(text(f"ALTER TABLE trials DROP COLUMN {column}"))
        conn.execute(text("DROP INDEX ix_epoch_metrics_reading"))
        for column in ("stats_step", *SUMMARY_COLUMNS):
            conn.execute(text(f"ALTER TABLE epoch_metrics DROP COLUMN {column}"))
        conn.execute(text("UPDATE schema_info SET version = 1"))
    init_db(engine)
    with session_scope(engine) as s:
        assert s.get(SchemaInfo, 1).version == 8
        row = s.get(Trial, ids["h1"])
        assert (row.status, row.epochs_done, row.bundle, row.device, row.node) == ("completed", 3, None, None, None)
        update_trial(s, ids["h1"], bundle="b+1", device="cuda:0", node="gpu07/3f9c2a1b")
    with session_scope(engine) as s:
        row = s.get(Trial, ids["h1"])
        assert (row.bundle, row.device, row.node) == ("b+1", "cuda:0", "gpu07/3f9c2a1b")


# ---------------------------------------------------------------- images are counted in 64 bits

# 1.28M images x 2,000 epochs: past a 32-bit INTEGER (2,147,483,647), which PostgreSQL enforces.
MANY_IMAGES = 2_560_000_000


def record_many_images(engine) -> None:
    """One trial of sweep "a" whose epoch 2000 comes after MANY_IMAGES images, with statistics at that step."""
    with session_scope(engine) as s:
        tid = ensure_trials(s, ensure_sweep(s, "a", "{}"), [trial_row("h")])["h"]
        record_results(s, [(tid, {"epoch": 2000, "images_seen": MANY_IMAGES, "train_loss": 0.2, "test_loss": 0.3,
                                  "test_acc": 0.9, "wall_seconds": 1.0},
                            [{"epoch": 2000, "step": MANY_IMAGES, "layer": "fc1", "kind": "gradient", "mean": 0.0,
                              "std": 0.1, "p98": 0.2, "zero_frac": 0.0, "dead_frac": None, "sat_frac": None}])])
        update_trials(s, [(tid, {"epochs_done": 2000, "images_seen": MANY_IMAGES})])


def read_many_images(engine) -> list:
    """Every image count record_many_images wrote, as read back: trial, epoch, its snapshot, statistics, curve."""
    epochs = epoch_metrics_frame(engine, "a")
    return [trials_frame(engine, "a")["images_seen"].tolist(), epochs["images_seen"].tolist(),
            epochs["stats_step"].tolist(), layer_stats_frame(engine, "a")["step"].tolist(),
            curves_frame(engine, "a", "activation")["images_seen"].tolist()]


def column_types(engine) -> dict[tuple[str, str], str]:
    """The database's type of each image count column, as SQLAlchemy reflects it."""
    found = {}
    for table, column in IMAGE_COLUMNS:
        (reflected,) = [c for c in inspect(engine).get_columns(table) if c["name"] == column]
        found[table, column] = type(reflected["type"]).__name__
    return found


def test_image_counts_past_32_bits_are_stored_and_read_back(engine):
    record_many_images(engine)
    assert read_many_images(engine) == [[MANY_IMAGES]] * 5
    assert set(column_types(engine).values()) == {"BIGINT"}


def test_an_older_database_gets_64_bit_image_counts_in_place(engine, db_url):
    postgres = db_url.startswith("postgresql")
    with engine.begin() as conn:  # what version 4 had: 32-bit image counts on PostgreSQL (SQLite's are 64-bit)
        conn.execute(text("DROP TABLE rung_results"))
        conn.execute(text("ALTER TABLE trials DROP COLUMN kernels"))  # version 8's
        for column in ("val_loss", "val_acc"):  # version 7's
            conn.execute(text(f"ALTER TABLE epoch_metrics DROP COLUMN {column}"))
        for table, column in IMAGE_COLUMNS:
            if postgres:
                conn.execute(text(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE INTEGER"))
        conn.execute(text("UPDATE schema_info SET version = 4"))
    if postgres:
        assert set(column_types(engine).values()) == {"INTEGER"}
    init_db(engine)
    with session_scope(engine) as s:
        assert s.get(SchemaInfo, 1).version == 8
    if postgres:
        assert set(column_types(engine).values()) == {"BIGINT"}
    record_many_images(engine)
    assert read_many_images(engine) == [[MANY_IMAGES]] * 5


def test_a_version_5_database_gets_the_rung_results_table_and_stores_decisions(engine):
    """ASHA's decisions (sweep/run/stopping.py) in rung_results: upgraded into an older database, keyed by (trial,
    rung), NaN stored as NULL, read back in the order they were recorded, each with its trial's config hash."""
    with session_scope(engine) as s:
        ids = ensure_trials(s, ensure_sweep(s, "a", "{}"), [trial_row("h1"), trial_row("h2", seed=1)])
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE rung_results"))
        conn.execute(text("ALTER TABLE trials DROP COLUMN kernels"))  # version 8's
        for column in ("val_loss", "val_acc"):  # version 7's
            conn.execute(text(f"ALTER TABLE epoch_metrics DROP COLUMN {column}"))
        conn.execute(text("UPDATE schema_info SET version = 5"))
    init_db(engine)
    decisions = [(ids["h2"], {"rung": 0, "milestone": 1.0, "epoch": 1, "value": 0.5, "continued": True}),
                 (ids["h1"], {"rung": 0, "milestone": 1.0, "epoch": 1, "value": float("nan"), "continued": True}),
                 (ids["h2"], {"rung": 1, "milestone": 1.5, "epoch": 2, "value": -math.inf, "continued": False})]
    with session_scope(engine) as s:
        assert s.get(SchemaInfo, 1).version == 8
        record_rungs(s, decisions)
        record_rungs(s, decisions[:1])  # a replayed report: harmless
    assert rung_results(engine, "a") == [
        {"config_hash": "h2", "seed": 1, "rung": 0, "milestone": 1.0, "epoch": 1, "value": 0.5, "continued": True},
        {"config_hash": "h1", "seed": 0, "rung": 0, "milestone": 1.0, "epoch": 1, "value": None, "continued": True},
        {"config_hash": "h2", "seed": 1, "rung": 1, "milestone": 1.5, "epoch": 2, "value": -math.inf, "continued": False}]


# ---------------------------------------------------------------- the default sweep: the one written last

def at(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 11, day, hour)


def test_sweep_names_end_with_the_sweep_written_last(engine):
    """b is created first and a second; a trains; then b trains again: b was written last, though a is newer."""
    with session_scope(engine) as s:
        b = ensure_trials(s, ensure_sweep(s, "b", "{}"), [trial_row("h")])["h"]
        a = ensure_trials(s, ensure_sweep(s, "a", "{}"), [trial_row("h")])["h"]
        s.execute(Sweep.__table__.update().where(Sweep.name == "b").values(created_at=at(1)))
        s.execute(Sweep.__table__.update().where(Sweep.name == "a").values(created_at=at(2)))
    assert sweep_names(engine) == ["b", "a"]  # nothing trained yet: the order of creation
    with session_scope(engine) as s:
        update_trial(s, b, status="completed", started_at=at(1, 1), finished_at=at(1, 2))
        update_trial(s, a, status="completed", started_at=at(2, 1), finished_at=at(2, 2))
    assert sweep_names(engine) == ["b", "a"]
    with session_scope(engine) as s:
        update_trial(s, b, status="running", started_at=at(3))  # sweep run b.yaml again
    assert sweep_names(engine) == ["a", "b"]
    with session_scope(engine) as s:  # b is stopped; then a new sweep c is created
        update_trial(s, b, status="interrupted", finished_at=at(4))
        ensure_sweep(s, "c", "{}")
        s.execute(Sweep.__table__.update().where(Sweep.name == "c").values(created_at=at(5)))
    assert sweep_names(engine) == ["a", "b", "c"]
    with session_scope(engine) as s:  # a trial of a that ends after c was created
        update_trial(s, a, status="completed", finished_at=at(6))
    assert sweep_names(engine) == ["b", "c", "a"]


# ---------------------------------------------------------------- the db package's modules form no cycle

def db_imports() -> dict[str, set[str]]:
    """For each module of sweep/db/, the modules of sweep/db/ it imports anywhere (at the top or inside a
    function), named as in db/ (`db.x`): `from sweep.db.x import y`, `import sweep.db.x`, `from sweep.db
    import x` (a module) and relative imports. `from sweep.db import name` (not a module) is an import of
    sweep/db/__init__.py."""
    folder = Path(__file__).resolve().parent.parent / "sweep" / "db"
    modules = {p.stem for p in folder.glob("*.py")} - {"__init__"}
    found = {}
    for path in sorted(folder.glob("*.py")):
        name = "db" if path.stem == "__init__" else f"db.{path.stem}"
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name.removeprefix("sweep.") for a in node.names
                            if a.name == "sweep.db" or a.name.startswith("sweep.db.")}
            elif isinstance(node, ast.ImportFrom):
                base = (node.module or "").removeprefix("sweep.") if (node.module or "").startswith("sweep.db") \
                    else ("" if not node.level else None)
                if node.level:  # relative: within sweep/db/
                    base = "db" + (f".{node.module}" if node.module else "")
                if base == "db":
                    targets |= {f"db.{a.name}" if a.name in modules else "db" for a in node.names}
                elif base and base.startswith("db."):
                    targets.add(base)
        found[name] = targets - {name}
    return found


def test_the_db_modules_import_in_one_direction():
    imports = db_imports()
    assert imports["db.engine"] == {"db.schema", "db.upgrade"}  # the upgrade is found without db.queries
    assert imports["db.upgrade"] == {"db.schema"}
    mutual = sorted((a, b) for a in imports for b in imports[a] if a < b and a in imports.get(b, set()))
    assert mutual == []

    def cycle_from(module, path):
        for target in sorted(imports.get(module, ())):
            if target in path:
                return [*path[path.index(target):], target]
            found = cycle_from(target, [*path, target])
            if found:
                return found
        return None

    assert [cycle_from(m, [m]) for m in sorted(imports)] == [None] * len(imports)


def imported_modules(path: Path) -> set[str]:
    """Every absolute module `path` imports anywhere (at the top or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.add(node.module)
    return found


def test_the_db_modules_import_of_sweep_only_db_measures_and_status_and_those_only_the_standard_library():
    """sweep/db/ sits below sweep/: it imports sweep.db.*, sweep.measures (the measures' one home) and
    sweep.status (the statuses' one home), nothing else of sweep; measures.py and status.py, below both,
    import the standard library only (no numpy, pandas, SQLAlchemy or torch), so a trial worker can import them."""
    import sys

    root = Path(__file__).resolve().parent.parent / "sweep"
    leaves = {"sweep.measures": root / "measures.py", "sweep.status": root / "status.py"}
    outside = {path.name: sorted(m for m in imported_modules(path) if m.split(".")[0] == "sweep"
                                 and m != "sweep.db" and not m.startswith("sweep.db.") and m not in leaves)
               for path in sorted((root / "db").glob("*.py"))}
    assert outside == {name: [] for name in outside}
    assert "flags.py" in outside and "upgrade.py" in outside
    for path in leaves.values():
        leaf = imported_modules(path)
        assert {m.split(".")[0] for m in leaf} <= set(sys.stdlib_module_names) | {"__future__"}, (path, leaf)


def test_foreign_database_is_refused(db_url):
    foreign = make_engine(db_url)
    with foreign.begin() as conn:
        conn.execute(text("CREATE TABLE notes (x INTEGER)"))
    with pytest.raises(DatabaseError) as err:
        init_db(foreign)
    foreign.dispose()
    assert str(err.value) == f"{safe_url(db_url)} is not a sweep database (no schema_info table)"


def test_messages_never_show_the_password(pg_server):
    url = pg_server.url(pg_server.create_database())
    assert pg_server.password in url
    assert safe_url(url) == f"postgresql+psycopg://sweep:***@127.0.0.1:{pg_server.port}/{url.rsplit('/', 1)[1]}"
    assert pg_server.password not in safe_url(pg_server.schema_url())
    with session_scope(engine := make_engine(url)) as s:
        s.execute(text("CREATE TABLE notes (x INTEGER)"))
    with pytest.raises(DatabaseError) as err:
        init_db(engine)
    engine.dispose()
    assert pg_server.password not in str(err.value) and "sweep:***@" in str(err.value)


# ---------------------------------------------------------------- SQLite only where it is safe

MOUNTINFO = """\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:22 / /proc rw,nosuid shared:2 - proc proc rw
24 22 0:23 / /mnt/lab rw,relatime shared:3 - nfs4 fs1:/export/lab rw,vers=4.2
25 24 0:24 / /mnt/lab/scratch rw,relatime shared:4 - ext4 /dev/sdb1 rw
26 22 0:25 / /mnt/win rw - cifs //nas/share rw
27 22 0:26 / /lustre rw - lustre 10.0.0.1@tcp:/fs rw
28 22 0:27 / /gpfs/home rw - gpfs home rw
29 22 0:28 / /beegfs rw - beegfs beegfs_nodev rw
30 22 0:29 / /home/me/remote rw,nosuid - fuse.sshfs me@host:/data rw
31 22 0:30 / /mnt/my\\040disk rw - nfs fs2:/x rw
32 22 0:31 / /mnt/labx rw - xfs /dev/sdc1 rw
"""


@pytest.mark.parametrize("path, expected", [
    ("/", ("ext4", "/")),
    ("/home/me", ("ext4", "/")),
    ("/mnt/lab", ("nfs4", "/mnt/lab")),
    ("/mnt/lab/runs/deep", ("nfs4", "/mnt/lab")),
    ("/mnt/lab/scratch/runs", ("ext4", "/mnt/lab/scratch")),  # a local disk mounted inside the NFS tree
    ("/mnt/labx/runs", ("xfs", "/mnt/labx")),  # a prefix of the text is not a parent folder
    ("/mnt/win/runs", ("cifs", "/mnt/win")),
    ("/home/me/remote/runs", ("fuse.sshfs", "/home/me/remote")),
    ("/mnt/my disk/runs", ("nfs", "/mnt/my disk")),  # mountinfo writes the space as \040
])
def test_filesystem_type_is_the_longest_mount_point_holding_the_path(path, expected):
    assert filesystem_type(Path(path), MOUNTINFO) == expected


def test_the_last_of_stacked_mounts_is_the_visible_one():
    stacked = MOUNTINFO + "40 24 0:40 / /mnt/lab rw - tmpfs tmpfs rw\n"
    assert filesystem_type(Path("/mnt/lab/runs"), stacked) == ("tmpfs", "/mnt/lab")


@pytest.mark.parametrize("folder, fstype", [("/mnt/lab/runs", "nfs4"), ("/mnt/win", "cifs"), ("/lustre/p", "lustre"),
                                            ("/gpfs/home/me", "gpfs"), ("/beegfs/x", "beegfs"),
                                            ("/home/me/remote/r", "fuse.sshfs")])
def test_sqlite_on_a_network_filesystem_is_refused(tmp_path, folder, fstype):
    assert_refused(tmp_path, MOUNTINFO, folder, fstype)


def assert_refused(tmp_path, mountinfo: str, folder: str, fstype: str) -> None:
    """check_sqlite_location refuses a database in `folder` under `mountinfo`, naming `fstype` and the mount."""
    (tmp_path / "mountinfo").write_text(mountinfo)
    point = filesystem_type(Path(folder), mountinfo)[1]
    with pytest.raises(DatabaseError) as err:
        check_sqlite_location(f"sqlite:///{folder}/sweep.db", tmp_path / "mountinfo")
    assert str(err.value) == (
        f"database sqlite:///{folder}/sweep.db is on a network filesystem ({fstype} at {point}), where SQLite's WAL "
        "is unsafe: keep the SQLite file on a local disk (database: sqlite:////local/path/sweep.db) "
        "or use PostgreSQL (database: postgresql+psycopg://user@host/db)")


# Mounts as /proc/self/mountinfo shows them: a FUSE filesystem is "fuse.<subtype>", the subtype its client sets.
NETWORK_MOUNTINFO = """\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:50 / /mnt/cephfs rw,nosuid,nodev,relatime shared:20 - fuse.ceph-fuse ceph-fuse rw,user_id=0,group_id=0,allow_other
41 22 0:51 / /mnt/gluster rw,relatime shared:21 - fuse.glusterfs gfs1:/vol0 rw,user_id=0,group_id=0,default_permissions,allow_other,max_read=131072
42 22 0:52 / /mnt/s3 rw,nosuid,nodev,relatime shared:22 - fuse.s3fs s3fs rw,user_id=0,group_id=0
43 22 0:53 / /mnt/gcs rw,nosuid,nodev,relatime shared:23 - fuse.gcsfuse lab-bucket rw,user_id=1000,group_id=1000
44 22 0:54 / /mnt/drive rw,nosuid,nodev,relatime shared:24 - fuse.rclone lab: rw,user_id=1000,group_id=1000
45 22 0:55 / /mnt/jfs rw,relatime shared:25 - fuse.juicefs JuiceFS:lab rw,user_id=0,group_id=0,default_permissions,allow_other
46 22 0:56 / /mnt/mfs rw,nosuid,nodev,relatime shared:26 - fuse.mfs mfsmaster:9421 rw,user_id=0,group_id=0,allow_other
47 22 0:57 / /mnt/cephk rw,relatime shared:27 - ceph 10.0.0.1:6789:/ rw,name=lab
48 22 0:58 / /afs rw,relatime shared:28 - afs AFS rw
49 22 253:3 / /srv/gfs2 rw,relatime shared:29 - gfs2 /dev/mapper/shared-gfs rw
50 22 253:4 / /srv/ocfs2 rw,relatime shared:30 - ocfs2 /dev/sdd1 rw,_netdev,heartbeat=local
51 22 0:59 / /home/me/plain rw,nosuid,nodev,relatime shared:31 - fuse.gocryptfs /home/me/.cipher rw,user_id=1000
52 22 8:33 / /media/usb rw,nosuid,nodev,relatime shared:32 - fuseblk /dev/sdc1 rw,user_id=0,allow_other
"""


@pytest.mark.parametrize("folder, fstype", [
    ("/mnt/cephfs/runs", "fuse.ceph-fuse"), ("/mnt/gluster/runs", "fuse.glusterfs"), ("/mnt/s3/runs", "fuse.s3fs"),
    ("/mnt/gcs/runs", "fuse.gcsfuse"), ("/mnt/drive/runs", "fuse.rclone"), ("/mnt/jfs/runs", "fuse.juicefs"),
    ("/mnt/mfs/runs", "fuse.mfs"), ("/mnt/cephk/runs", "ceph"), ("/afs/lab/runs", "afs"), ("/srv/gfs2/runs", "gfs2"),
    ("/srv/ocfs2/runs", "ocfs2"),
])
def test_sqlite_on_a_network_fuse_or_cluster_filesystem_is_refused(tmp_path, folder, fstype):
    assert_refused(tmp_path, NETWORK_MOUNTINFO, folder, fstype)


def test_sqlite_on_a_local_fuse_filesystem_passes(tmp_path):
    (tmp_path / "mountinfo").write_text(NETWORK_MOUNTINFO)
    check_sqlite_location("sqlite:////home/me/plain/runs/sweep.db", tmp_path / "mountinfo")  # gocryptfs: local
    check_sqlite_location("sqlite:////media/usb/runs/sweep.db", tmp_path / "mountinfo")  # ntfs-3g on a USB disk


def test_sqlite_on_a_local_disk_and_other_databases_pass(tmp_path):
    (tmp_path / "mountinfo").write_text(MOUNTINFO)
    check_sqlite_location("sqlite:////mnt/lab/scratch/sweep.db", tmp_path / "mountinfo")
    check_sqlite_location("sqlite:///:memory:", tmp_path / "mountinfo")
    check_sqlite_location("postgresql+psycopg://u:p@127.0.0.1:1/d", tmp_path / "mountinfo")
    check_sqlite_location("sqlite:////mnt/lab/sweep.db", tmp_path / "no-such-mountinfo")  # not Linux: no judgement


def test_a_real_local_folder_is_accepted(tmp_path):
    # This machine's own /proc/self/mountinfo; the folder does not exist yet (sweep run creates it).
    check_sqlite_location(f"sqlite:///{tmp_path / 'not' / 'yet' / 'sweep.db'}")


def test_sweep_run_refuses_sqlite_on_a_network_filesystem_and_writes_nothing(tmp_path, capsys, monkeypatch):
    # The runner's own check, fed a mountinfo in which this test's folder is an NFS mount.
    (tmp_path / "mountinfo").write_text(f"22 1 0:21 / / rw - ext4 /dev/sda1 rw\n"
                                        f"24 22 0:23 / {tmp_path.resolve()} rw - nfs4 fs1:/export rw\n")
    monkeypatch.setattr(runner, "check_sqlite_location",
                        functools.partial(check_sqlite_location, mountinfo=tmp_path / "mountinfo"))
    monkeypatch.chdir(tmp_path)
    spec = {"name": "t", "dataset": {"name": "synthetic", "train_limit": 64, "test_limit": 32}, "epochs": 1,
            "grid": {"activation": ["relu"], "optimizer": [{"name": "adam", "lr": 0.01}]}, "output": "runs"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    assert main(["run", "s.yaml"]) == 1
    db = tmp_path.resolve() / "runs" / "sweep.db"
    assert capsys.readouterr().err == (
        f"Error: database sqlite:///{db} is on a network filesystem (nfs4 at {tmp_path.resolve()}), where SQLite's "
        "WAL is unsafe: keep the SQLite file on a local disk (database: sqlite:////local/path/sweep.db) "
        "or use PostgreSQL (database: postgresql+psycopg://user@host/db)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mountinfo", "s.yaml"]  # no runs/, no database


def test_a_version_6_database_gains_the_validation_columns_null(engine):
    """dataset.validation's figures (schema 7): an older database's epoch rows gain val_loss and val_acc, NULL,
    and keep everything else."""
    with session_scope(engine) as s:
        ids = ensure_trials(s, ensure_sweep(s, "a", "{}"), [trial_row("h1")])
        record_results(s, [(ids["h1"], {"epoch": 1, "images_seen": 64, "train_loss": 0.5, "test_loss": 0.4,
                                        "test_acc": 0.8}, [])])
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE trials DROP COLUMN kernels"))
        for column in ("val_loss", "val_acc"):
            conn.execute(text(f"ALTER TABLE epoch_metrics DROP COLUMN {column}"))
        conn.execute(text("UPDATE schema_info SET version = 6"))
    init_db(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT epoch, test_acc, val_loss, val_acc FROM epoch_metrics")).all() == [
            (1, 0.8, None, None)]
    with session_scope(engine) as s:
        assert s.get(SchemaInfo, 1).version == 8


def test_a_version_7_database_gets_the_kernels_column_null_for_its_trials(engine):
    """trials.kernels (version 8): which kernels a trial's steps ran on; an older database's trials say nothing."""
    with session_scope(engine) as s:
        ids = ensure_trials(s, ensure_sweep(s, "a", "{}"), [trial_row("h1")])
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE trials DROP COLUMN kernels"))
        conn.execute(text("UPDATE schema_info SET version = 7"))
    init_db(engine)
    with session_scope(engine) as s:
        assert s.get(SchemaInfo, 1).version == 8
        assert s.get(Trial, ids["h1"]).kernels is None
        update_trial(s, ids["h1"], kernels="compiled")
    with session_scope(engine) as s:
        assert s.get(Trial, ids["h1"]).kernels == "compiled"
