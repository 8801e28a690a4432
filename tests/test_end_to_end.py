"""Whole sweeps through the real CLI and real Ray Tune: database rows, TensorBoard, report, rerun."""
import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parent.parent


def sweep_cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "sweep.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def query(db: Path, sql: str):
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def write_spec(tmp_path: Path, spec: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_synthetic_sweep_end_to_end(tmp_path):
    spec = {
        "name": "syn", "dataset": {"name": "synthetic", "train_limit": 256, "test_limit": 128},
        "epochs": 2, "batch_size": 32, "stats_every": 3,
        "grid": {"activation": ["sigmoid", "relu"], "init": ["xavier_uniform"],
                 "optimizer": [{"name": "adam", "lr": 0.01},
                               {"name": "sgd", "lr": 0.1, "momentum": 0.9},  # its folders hold another's checkpoint
                               {"name": "sgd", "lr": 1e6}]},  # relu diverges; sigmoid is bounded and does not
        # A failing trial is retried once, then recorded failed with its traceback.
        "resources": {"cpu": 1, "max_failures": 1},
        "output": "out",
    }
    write_spec(tmp_path, spec)
    # A trial never resumes another configuration's checkpoint: it fails (retried once) and says why.
    for act in ("sigmoid", "relu"):
        folder = tmp_path / "out" / "syn" / f"{act}-xavier_uniform-sgd-lr0.1-momentum0.9-s0"
        folder.mkdir(parents=True)
        torch.save({"config_hash": "0123456789abcdef", "replay": []}, folder / "checkpoint.pt")
    run = sweep_cli("run", "spec.yaml", "--progress-interval", "1", cwd=tmp_path)
    assert run.returncode == 1, run.stderr  # two trials failed
    assert "done: 3 completed, 1 diverged, 2 failed; 0 already finished before this run" in run.stdout
    failed = [line for line in run.stdout.splitlines() if line.startswith("FAILED relu-xavier_uniform-sgd-lr0.1-momentum0.9-s0: ")]
    assert failed and "CheckpointMismatch: " in failed[0] and "config hash 0123456789abcdef" in failed[0], run.stdout

    db = tmp_path / "out" / "sweep.db"
    statuses = dict(query(db, "SELECT name, status FROM trials"))
    assert statuses == {
        "sigmoid-xavier_uniform-adam-lr0.01-s0": "completed",
        "sigmoid-xavier_uniform-sgd-lr0.1-momentum0.9-s0": "failed",
        "relu-xavier_uniform-adam-lr0.01-s0": "completed",
        "relu-xavier_uniform-sgd-lr0.1-momentum0.9-s0": "failed",
        "sigmoid-xavier_uniform-sgd-lr1e+06-s0": "completed",
        "relu-xavier_uniform-sgd-lr1e+06-s0": "diverged",
    }
    (reason, epochs, final_acc, final_loss), = query(
        db, "SELECT error, epochs_done, final_test_acc, final_test_loss FROM trials WHERE status = 'diverged'")
    assert reason.startswith("train loss nan at epoch 1, step ") and epochs == 1
    # Its last finite metrics (before training) are kept; the NaN epoch is stored as such.
    epoch0 = query(db, """SELECT e.test_acc, e.test_loss FROM epoch_metrics e JOIN trials t USING (trial_id)
                          WHERE t.status = 'diverged' AND e.epoch = 0""")
    assert [(final_acc, final_loss)] == epoch0
    assert query(db, """SELECT e.train_loss, e.nan_fields FROM epoch_metrics e JOIN trials t USING (trial_id)
                        WHERE t.status = 'diverged' AND e.epoch = 1""") == [(None, "train_loss,test_loss")]
    error = query(db, "SELECT error FROM trials WHERE status = 'failed'")[0][0]
    assert "CheckpointMismatch" in error and "was saved by another configuration (config hash 0123456789abcdef" in error
    # Completed trials: epochs 0..2, 256 images per epoch; 8 batches -> snapshots after 3, 6
    # and 8 (the epoch's end), 9 layer keys (4 activation, 5 gradient) each.
    rows = query(db, """SELECT t.name, e.epoch, e.images_seen FROM epoch_metrics e
                        JOIN trials t USING (trial_id) WHERE t.status = 'completed' ORDER BY t.name, e.epoch""")
    assert [(r[1], r[2]) for r in rows] == [(0, 0), (1, 256), (2, 512)] * 3
    steps = query(db, """SELECT DISTINCT l.step FROM layer_stats l JOIN trials t USING (trial_id)
                         WHERE t.name = 'relu-xavier_uniform-adam-lr0.01-s0' ORDER BY l.step""")
    assert [s for (s,) in steps] == [96, 192, 256, 352, 448, 512]
    assert query(db, """SELECT COUNT(*) FROM layer_stats JOIN trials USING (trial_id)
                        WHERE status = 'completed'""")[0][0] == 3 * 6 * 9
    final = query(db, """SELECT t.final_test_acc, e.test_acc, t.epochs_done, t.images_seen FROM trials t
                         JOIN epoch_metrics e ON e.trial_id = t.trial_id AND e.epoch = 2 WHERE t.status = 'completed'""")
    assert all(r[0] == r[1] and r[2] == 2 and r[3] == 512 for r in final)
    assert json.loads(query(db, "SELECT spec_json FROM sweeps")[0][0])["name"] == "syn"

    # TensorBoard: one readable folder per trial, read back from the event files.
    logdir = tmp_path / "out" / "syn" / "relu-xavier_uniform-adam-lr0.01-s0"
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    assert [e.step for e in acc.Scalars("accuracy/test")] == [0, 256, 512]
    assert [e.step for e in acc.Scalars("gradient/fc3/std")] == [96, 192, 256, 352, 448, 512]
    db_acc = query(db, """SELECT e.test_acc FROM epoch_metrics e JOIN trials t USING (trial_id)
                          WHERE t.name = 'relu-xavier_uniform-adam-lr0.01-s0' ORDER BY e.epoch""")
    assert [round(e.value, 6) for e in acc.Scalars("accuracy/test")] == [round(v, 6) for (v,) in db_acc]

    # The report ranks completed configurations first, failed ones last.
    report = sweep_cli("report", "--db", f"sqlite:///{db}", "--format", "csv", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    lines = report.stdout.splitlines()
    assert lines[0].startswith("rank,config,activation,init,optimizer,lr,n,final_test_acc_mean")
    by_rank = [line.split(",")[1] for line in lines[1:]]
    finals = dict(query(db, "SELECT label, final_test_acc FROM trials WHERE final_test_acc IS NOT NULL"))
    # Best first: the stored accuracies in the report's order are the sorted ones (equal ones in any order).
    assert sorted(by_rank[:4]) == sorted(finals)
    assert [finals[label] for label in by_rank[:4]] == sorted(finals.values(), reverse=True)
    assert set(by_rank[4:]) == {
        "sigmoid-xavier_uniform-sgd-lr0.1-momentum0.9", "relu-xavier_uniform-sgd-lr0.1-momentum0.9"}
    diverged = {r["config"]: r for r in csv.DictReader(io.StringIO(report.stdout))}["relu-xavier_uniform-sgd-lr1e+06"]
    assert diverged["status"] == "diverged" and "diverged@1" in diverged["flags"].split(", ")

    # Rerun: completed trials are skipped, failed ones run (and fail) again; no duplicate rows.
    counts = [query(db, f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("trials", "epoch_metrics", "layer_stats")]
    again = sweep_cli("run", "spec.yaml", cwd=tmp_path)
    assert "sweep syn: 6 trials (4 already finished)" in again.stdout
    assert "done: 2 failed; 4 already finished before this run" in again.stdout
    assert [query(db, f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("trials", "epoch_metrics", "layer_stats")] == counts


def test_short_sweep_on_real_fashion_mnist(tmp_path):
    spec = {
        "name": "fm", "dataset": {"name": "fashion_mnist", "train_limit": 3000, "test_limit": 1000,
                                   "data_dir": str(ROOT / "data")},
        "epochs": 1,
        "grid": {"activation": ["relu"], "init": ["xavier_uniform"], "optimizer": [{"name": "adam", "lr": 0.001}]},
        "output": "out",
    }
    write_spec(tmp_path, spec)
    run = sweep_cli("run", "spec.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    db = tmp_path / "out" / "sweep.db"
    (status, acc, seen), = query(db, "SELECT status, final_test_acc, images_seen FROM trials")
    assert status == "completed" and seen == 3000
    assert acc > 0.6  # chance is 0.1: real Fashion-MNIST was learned
    # 47 batches, fewer than stats_every: the epoch's closing snapshot (its last full batch) still gives
    # every layer its row.
    assert query(db, "SELECT COUNT(*) FROM layer_stats")[0][0] == 9
