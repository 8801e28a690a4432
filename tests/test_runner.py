"""The runner's decisions before training: nothing left behind by a failed start; how trials are fused; what is
finished (nothing left to do starts no Ray); folders checked for writing."""
import sys

import pytest
import yaml

from sweep.db.engine import init_db, make_engine, session_scope
from sweep.db.schema import SCHEMA_VERSION, SchemaInfo
from sweep.cli import main
from sweep.spec.grid import bundle_name, expand_grid
from sweep.run.bundles import FUSE_GPU_MAX, bundle_size, plan_bundles
from sweep.spec.spec import parse_spec


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


def finished_sweep(tmp_path, statuses: dict[str, tuple[str, int]]):
    """A sweep spec of three configurations whose trials the database already holds with `statuses` (by
    activation: (status, epochs done))."""
    from sweep.db.queries import update_trial
    from sweep.run.records import record_plan

    spec = parse_spec({"name": "t", "dataset": {"name": "synthetic", "train_limit": 64, "test_limit": 32},
                       "epochs": 2, "grid": {"activation": list(statuses), "optimizer": [{"name": "adam", "lr": 0.01}]},
                       "output": str(tmp_path / "runs")})
    trials = expand_grid(spec)
    spec.sweep_dir.mkdir(parents=True)
    engine = make_engine(spec.database_url)
    init_db(engine)
    ids = record_plan(engine, spec, trials, [])
    with session_scope(engine) as s:
        for t in trials:
            status, epochs = statuses[t.activation]
            update_trial(s, ids[t.config_hash], status=status, epochs_done=epochs)
    engine.dispose()
    return spec


def test_nothing_left_to_do_says_so_without_starting_ray(tmp_path, monkeypatch):
    import io

    import sweep.run.runner as runner

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray started")

    monkeypatch.setattr(runner, "ray_session", no_ray)
    spec = finished_sweep(tmp_path, {"relu": ("completed", 2), "tanh": ("diverged", 1), "elu": ("stopped", 1)})
    out = io.StringIO()
    summary = runner.run_sweep(spec, out=out)
    assert (summary.total, summary.skipped, summary.statuses, summary.exit_code) == (3, 3, {}, 0)
    assert out.getvalue() == (f"sweep t: 3 trials (3 already finished, 1 of them stopped by a stop rule), "
                              f"database sqlite:///{tmp_path}/runs/sweep.db, TensorBoard logs in {spec.sweep_dir}\n")
    # A stopped trial trains on when asked to: that needs Ray.
    with pytest.raises(AssertionError, match="Ray started"):
        runner.run_sweep(spec, out=io.StringIO(), resume_stopped=True)


@pytest.mark.parametrize("make,parents,message", [
    (lambda base: base / "new", False, None),
    (lambda base: base / "a" / "b", False, "folder {base}/a/b cannot be made: {base}/a does not exist"),
    (lambda base: base / "a" / "b", True, None),
    (lambda base: base / "file" / "x", True, "folder {base}/file/x cannot be made: {base}/file is not a folder"),
])
def test_a_folder_to_write_into_is_checked_without_making_anything(tmp_path, make, parents, message):
    from sweep.run.cluster import FolderError, writable_folder

    (tmp_path / "file").write_text("x")
    folder = make(tmp_path)
    if message is None:
        assert writable_folder(folder, parents=parents) == folder
    else:
        with pytest.raises(FolderError) as refused:
            writable_folder(folder, parents=parents)
        assert str(refused.value) == message.format(base=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing made, no probe left


def test_a_read_only_folder_is_refused_in_one_line(tmp_path):
    import subprocess

    from sweep.run.cluster import writable_folder

    ro = tmp_path / "ro"
    ro.mkdir()
    # A read-only bind mount of its own, in a private mount namespace (root can write through any mode bits).
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                            'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && exec "$2" -c "$3" "$1"',
                            "sh", str(ro), sys.executable,
                            "import sys; from pathlib import Path; from sweep.run.cluster import FolderError, writable_folder\n"
                            "for f in (Path(sys.argv[1]), Path(sys.argv[1]) / 'plots'):\n"
                            "    try: writable_folder(f)\n"
                            "    except FolderError as e: print(e)\n"],
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout == (f"folder {ro} is not writable: Read-only file system\n"
                            f"folder {ro}/plots is not writable: Read-only file system\n"), probe.stderr
    assert writable_folder(ro) == ro and list(ro.iterdir()) == []  # outside that namespace it is writable
