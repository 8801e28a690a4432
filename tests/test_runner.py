"""The runner's decisions before training: nothing left behind by a failed start; how trials are fused."""
import yaml

from db.engine import init_db, make_engine, session_scope
from db.schema import SCHEMA_VERSION, SchemaInfo
from sweep.cli import main
from sweep.grid import bundle_name, expand_grid
from sweep.runner import FUSE_GPU_MAX, bundle_size, plan_bundles
from sweep.spec import parse_spec


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
    expected = f"Error: {url} has schema version 99; this sweep reads version {SCHEMA_VERSION}\n"
    assert capsys.readouterr().err == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db", "s.yaml"]  # no runs/, no runs/t/.lock
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM sweeps").scalar() == 0


def test_fuse_auto_fuses_on_gpus_only_splitting_the_sweep_over_them():
    assert bundle_size("auto", 16, gpus=0) == 1  # CPUs: no fusion (bench/bench_fused.py: no faster there)
    assert bundle_size("auto", 16, gpus=1) == 16  # the default study: one bundle on one GPU
    assert bundle_size("auto", 16, gpus=2) == 8  # every GPU gets work
    assert bundle_size("auto", 300, gpus=1) == FUSE_GPU_MAX == 128
    assert bundle_size("auto", 16, gpus=1, free_gpu_bytes=10_000, member_bytes=1_000) == 5  # half the free memory
    assert bundle_size("off", 16, gpus=4) == 1
    assert bundle_size(6, 16, gpus=0) == 6  # N is N, CPUs too


def test_bundles_are_even_and_each_activation_and_optimizer_a_contiguous_run():
    spec = parse_spec({"name": "t", "grid": {"activation": ["sigmoid", "tanh", "softsign", "relu"],
                                             "init": ["default", "xavier_uniform"],
                                             "optimizer": [{"name": "sgd", "lr": 0.001}, {"name": "adam", "lr": 0.001}]}})
    todo = expand_grid(spec)
    one, = plan_bundles(todo, 16)
    assert [(t.activation, t.optimizer) for t in one][:6] == [
        ("relu", "adam"), ("relu", "adam"), ("relu", "sgd"), ("relu", "sgd"), ("sigmoid", "adam"), ("sigmoid", "adam")]
    assert sorted(t.name for t in one) == sorted(t.name for t in todo)
    assert [len(b) for b in plan_bundles(todo, 6)] == [5, 6, 5]
    assert plan_bundles(todo, 1) == [[t] for t in todo]
    assert [bundle_name(b) for b in plan_bundles(todo, 8)] == [
        "relu-default-adam-lr0.001-s0+7", "softsign-default-adam-lr0.001-s0+7"]
