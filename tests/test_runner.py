"""A run that fails before training leaves nothing behind."""
import yaml

from db.engine import init_db, make_engine, session_scope
from db.schema import SchemaInfo
from sweep.cli import main


def test_a_run_refused_by_its_database_leaves_no_folder_lock_or_row(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "db").mkdir()
    url = f"sqlite:///{tmp_path / 'db' / 'other.db'}"
    engine = make_engine(url)
    init_db(engine)
    with session_scope(engine) as s:
        s.get(SchemaInfo, 1).version = 99
    spec = {"name": "t", "dataset": {"name": "synthetic", "train_limit": 64, "test_limit": 32}, "epochs": 1,
            "grid": {"activation": ["relu"], "optimizer": [{"name": "adam", "lr": 0.01}]},
            "output": "runs", "database": "sqlite:///db/other.db"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    assert main(["run", "s.yaml"]) == 1
    assert capsys.readouterr().err == f"Error: {url} has schema version 99; this sweep reads version 2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db", "s.yaml"]  # no runs/, no runs/t/.lock
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM sweeps").scalar() == 0
