"""`sweep report` on a hand-made results database written through db/: misses, mixed epochs,
a diverged trial from an old database, gain auto, and one-line errors."""
import csv
import importlib.util
import io
import json
import math
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from sweep.db.engine import init_db, make_engine, session_scope
from sweep.db.queries import record_results, update_trial
from sweep.cli import main
from sweep.spec.grid import expand_grid
from sweep.run.records import record_plan
from sweep.spec.spec import parse_spec

SPEC = {"name": "hand", "dataset": "synthetic", "epochs": 4,
        "grid": {"activation": ["relu", "tanh"], "init": ["default", {"name": "xavier_normal", "gain": "auto"}],
                 "optimizer": [{"name": "adam", "lr": 0.01}], "seed": [0, 1]}}
# Test accuracy after epochs 0, 1, 2, ...; 1024 training images per epoch. The sweep now asks for 4 epochs.
TRIALS = {
    "relu-default-adam-lr0.01-s0": {"accs": [0.1, 0.5, 0.92, 0.93, 0.94, 0.99]},  # trained 5: read at 4
    "relu-default-adam-lr0.01-s1": {"accs": [0.1, 0.5, 0.6, 0.7, 0.8]},  # never reaches 0.9
    "tanh-default-adam-lr0.01-s0": {"accs": [0.1, 0.5, 0.6, 0.91, 0.95]},
    "tanh-default-adam-lr0.01-s1": {"accs": [0.1, 0.5, 0.6, 0.7, 0.9]},
    "relu-xavier_normal-gauto-adam-lr0.01-s0": {"accs": [0.1, 0.95, 0.96, 0.97, 0.98]},
    # Diverged at epoch 2: its loss there is NaN; the 0.97 of that epoch is not its result.
    "relu-xavier_normal-gauto-adam-lr0.01-s1": {"accs": [0.1, 0.5, 0.97], "status": "diverged"},
    "tanh-xavier_normal-gauto-adam-lr0.01-s0": {"accs": [0.1, 0.5, 0.6]},  # completed when epochs was 2
    "tanh-xavier_normal-gauto-adam-lr0.01-s1": {"accs": [0.1, 0.5, 0.6, 0.7, 0.92]},
}


def _snapshot(epoch: int, step: int) -> list[dict]:
    """One statistics snapshot that raises no flag: two activation layers, two weight gradients of equal std."""
    return [{"epoch": epoch, "step": step, "layer": layer, "kind": kind, "mean": 0.0, "std": 1.0, "p98": 1.0,
             "zero_frac": 0.0, "dead_frac": 0.0 if kind == "activation" else None,
             "sat_frac": 0.1 if kind == "activation" else None}
            for kind in ("activation", "gradient") for layer in ("fc1", "fc2")]


def build(folder: Path, spec: dict = SPEC, trials: dict = TRIALS, stats: bool = False) -> Path:
    """A sweep database as the recorder of this or an older version wrote it; trials not listed stay pending.
    Each trial: its test accuracy after epochs 0, 1, ... (1024 training images per epoch; `vals`: its
    validation accuracy there, where the sweep has a split), its status
    (default completed) and error. With `stats`, each epoch after the first one statistics snapshot
    (_snapshot), so that sweep plot draws it."""
    spec = parse_spec({**spec, "output": str(folder)})
    configs = expand_grid(spec)
    engine = make_engine(spec.database_url)
    init_db(engine)
    ids = record_plan(engine, spec, configs, [])
    with session_scope(engine) as s:
        for t in configs:
            if trials.get(t.name) is None:
                continue
            accs, status = trials[t.name]["accs"], trials[t.name].get("status", "completed")
            for epoch, acc in enumerate(accs):
                bad = status == "diverged" and epoch == len(accs) - 1
                vals = trials[t.name].get("vals")
                record_results(s, [(ids[t.config_hash], {
                    "epoch": epoch, "images_seen": 1024 * epoch, "test_acc": acc, "wall_seconds": 1.0,
                    "train_loss": math.nan if bad else None if epoch == 0 else 1 - acc,
                    "test_loss": math.nan if bad else 1 - acc,
                    **({"val_acc": vals[epoch], "val_loss": 1 - vals[epoch]} if vals else {})},
                    _snapshot(epoch, 1024 * epoch) if stats and epoch else [])])
            finite = accs[:-1] if status == "diverged" else accs
            # An older recorder let the diverged epoch set the best accuracy.
            update_trial(s, ids[t.config_hash], status=status, epochs_done=len(accs) - 1,
                         final_test_acc=finite[-1], best_test_acc=max(accs), best_epoch=accs.index(max(accs)),
                         error=trials[t.name].get("error"))
    return folder / "sweep.db"


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("hand"))


def report(capsys, *args, db=None):
    code = main(["report", *(["--db", str(db)] if db else []), *args])
    out, err = capsys.readouterr()
    return code, unwrapped(out), err


def unwrapped(out: str) -> str:
    """A report's output with its title, which wraps at the terminal's width (tests/test_findings.py holds it
    there), on one line again: these tests read the title and the table under it."""
    lines = out.splitlines(keepends=True)
    end = 1
    while end < len(lines) and lines[end].startswith("  ") and not lines[end].startswith("   "):
        end += 1
    if end == 1:
        return out
    return " ".join(line.strip() for line in lines[:end]) + "\n" + "".join(lines[end:])


def rows(out: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(out)))


def test_threshold_shows_who_reached_it_and_ranks_misses_last(capsys, db, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    code, out, err = report(capsys, "--threshold", "0.9", "--metric", "images_to_threshold", db=db)
    assert (code, err) == (0, "")
    assert out == (
        "sweep hand: 4 configurations ranked by mean images_to_threshold over seeds, at 4 epochs; "
        "threshold: test accuracy 0.9; 1 unfinished trial not aggregated\n"
        "rank  activation  init           gain       n  mean  ci95  reached  status\n"
        "   1  tanh        default        1          2  3584  6506  2/2      completed\n"
        "   2  tanh        xavier_normal  auto 1.67  1  4096     -  1/1      1 unfinished, 1 completed\n"
        "   3  relu        xavier_normal  auto 1.41  2  1024     -  1/2      1 completed, 1 diverged\n"
        "   4  relu        default        1          2  2048     -  1/2      completed\n"
        "(14 more columns: --wide shows all, --columns NAME,... picks)\n")
    code, out, _ = report(capsys, "--threshold", "0.9", "--metric", "images_to_threshold", "--format", "csv", db=db)
    assert [(r["config"], r["reached"], r["n"], r["images_to_threshold_mean"], r["epochs_min"], r["epochs_max"],
             r["status"], r["flags"]) for r in rows(out)] == [
        ("tanh-default-adam-lr0.01", "2", "2", "3584", "4", "4", "completed", ""),
        ("tanh-xavier_normal-gauto-adam-lr0.01", "1", "1", "4096", "2", "4", "1 unfinished, 1 completed", ""),
        ("relu-xavier_normal-gauto-adam-lr0.01", "1", "2", "1024", "1", "4", "1 completed, 1 diverged",
         "diverged@2 (1/2)"),
        ("relu-default-adam-lr0.01", "1", "2", "2048", "4", "4", "completed", "")]


def test_threshold_by_a_factor_counts_misses_and_shows_gain_as_written(capsys, db):
    code, out, _ = report(capsys, "--threshold", "0.9", "--metric", "images_to_threshold", "--by", "gain",
                          "--format", "csv", db=db)
    assert code == 0
    assert [(r["gain"], r["images_to_threshold_mean"], r["n"], r["reached"]) for r in rows(out)] == [
        ("1", "3072", "4", "3"), ("auto", "2560", "3", "2")]
    code, out, _ = report(capsys, "--by", "gain", "--format", "csv", db=db)
    assert [(r["gain"], float(r["final_test_acc_mean"]), r["n"]) for r in rows(out)] == [
        ("1", pytest.approx((0.94 + 0.8 + 0.95 + 0.9) / 4), "4"), ("auto", pytest.approx((0.98 + 0.5 + 0.92) / 3), "3")]


def test_trials_at_the_sweeps_epochs_and_a_diverged_trial_from_its_finite_epochs(capsys, db):
    code, out, _ = report(capsys, "--trials", "--threshold", "0.9", "--format", "json", db=db)
    assert code == 0 and out.endswith("]\n")
    got = {r["trial"]: r for r in json.loads(out)}
    diverged = got["relu-xavier_normal-gauto-adam-lr0.01-s1"]
    assert {k: diverged[k] for k in ("final_test_acc", "best_test_acc", "best_epoch", "epochs", "status", "flags",
                                     "images_to_threshold")} == {
        "final_test_acc": 0.5, "best_test_acc": 0.5, "best_epoch": 1, "epochs": 1, "status": "diverged",
        "flags": "diverged@2", "images_to_threshold": None}
    further = got["relu-default-adam-lr0.01-s0"]  # trained 5 epochs, read at the sweep's 4
    assert (further["final_test_acc"], further["best_test_acc"], further["best_epoch"]) == (0.94, 0.94, 4)
    short = got["tanh-xavier_normal-gauto-adam-lr0.01-s0"]
    assert (short["status"], short["epochs"]) == ("unfinished", 2)
    assert list(got)[-1] == "tanh-xavier_normal-gauto-adam-lr0.01-s0"  # unfinished trials come last


def test_mixed_epochs_are_not_pooled(capsys, db):
    code, out, _ = report(capsys, "--where", "gain=auto", "--where", "activation=tanh", "--format", "csv", db=db)
    (row,) = rows(out)
    assert (row["n"], row["final_test_acc_mean"], row["epochs_min"], row["epochs_max"], row["status"]) == (
        "1", "0.92", "2", "4", "1 unfinished, 1 completed")


def test_a_pending_trial_shows_dashes(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    spec = {**SPEC, "grid": {**SPEC["grid"], "activation": ["relu"], "init": ["default"]}}
    db = build(tmp_path, spec, {"relu-default-adam-lr0.01-s0": TRIALS["relu-default-adam-lr0.01-s0"]})
    code, out, _ = report(capsys, "--trials", "--wide", db=db)
    lines = out.splitlines()
    assert lines[1].split() == ["rank", "trial", "activation", "init", "gain", "optimizer", "lr", "seed", "config",
                                "final_test_acc", "best_test_acc", "best_epoch", "final_test_loss", "epochs",
                                "status", "kernels", "flags", "error", "gain_value"]
    assert lines[3].split() == ["2", "relu-default-adam-lr0.01-s1", "relu", "default", "1", "adam", "0.01", "1",
                                "relu-default-adam-lr0.01", "-", "-", "-", "-", "-", "pending", "-", "1"]  # no flags, no error


def test_the_default_table_fits_columns(capsys, db, monkeypatch):
    for width in ("60", "100", "140"):
        monkeypatch.setenv("COLUMNS", width)
        code, out, _ = report(capsys, "--trials", db=db)
        assert code == 0 and max(len(line) for line in out.splitlines()[1:]) <= int(width)
    monkeypatch.setenv("COLUMNS", "60")
    code, out, _ = report(capsys, "--columns", "config,mean,best_epoch", db=db)
    assert out.splitlines()[1:] == ["config                                  mean  best_epoch",
                                    "tanh-default-adam-lr0.01              0.9250  4",
                                    "tanh-xavier_normal-gauto-adam-lr0.01  0.9200  4",
                                    "relu-default-adam-lr0.01              0.8700  4",
                                    "relu-xavier_normal-gauto-adam-lr0.01  0.7400  1-4"]


def test_threshold_nobody_reached_ranks_by_how_close_they_came(capsys, db):
    """At 0.99 no seed of any configuration reaches it (the one that does, at epoch 5, is read at 4): they rank
    by their seeds' mean best accuracy, not in grid order (relu-default, tanh-default, relu-xavier, tanh-xavier)."""
    args = ("--threshold", "0.99", "--metric", "images_to_threshold", "--format", "csv")
    code, out, _ = report(capsys, *args, db=db)
    assert code == 0
    assert [(r["config"], r["reached"], r["n"], r["best_test_acc"]) for r in rows(out)] == [
        ("tanh-default-adam-lr0.01", "0", "2", "0.925"), ("tanh-xavier_normal-gauto-adam-lr0.01", "0", "1", "0.92"),
        ("relu-default-adam-lr0.01", "0", "2", "0.87"), ("relu-xavier_normal-gauto-adam-lr0.01", "0", "2", "0.74")]
    code, out, _ = report(capsys, *args, "--by", "activation", db=db)
    assert [(r["activation"], r["reached"], r["n"], float(r["best_test_acc"])) for r in rows(out)] == [
        ("tanh", "0", "3", pytest.approx((0.95 + 0.9 + 0.92) / 3)),
        ("relu", "0", "4", pytest.approx((0.94 + 0.8 + 0.98 + 0.5) / 4))]


# After a Ctrl-C: trials of every status with fewer epochs than the sweep's 4.
STOPPED = {
    "relu-default-adam-lr0.01-s0": {"accs": [0.1, 0.5, 0.6, 0.7, 0.8]},  # completed: finished
    "relu-default-adam-lr0.01-s1": {"accs": [0.1, 0.5, 0.6], "status": "interrupted"},
    "tanh-default-adam-lr0.01-s0": {"accs": [0.1, 0.5], "status": "failed"},
    "tanh-default-adam-lr0.01-s1": {"accs": [0.1, 0.5, 0.6, 0.7], "status": "running"},
    "relu-xavier_normal-gauto-adam-lr0.01-s0": {"accs": [0.1, 0.5, 0.6]},  # completed when epochs was 2
    "relu-xavier_normal-gauto-adam-lr0.01-s1": {"accs": [0.1, 0.5, 0.97], "status": "diverged"},  # finished
    # tanh-xavier_normal-gauto-adam-lr0.01-s0: pending, never started
    "tanh-xavier_normal-gauto-adam-lr0.01-s1": {"accs": [0.1, 0.5, 0.6, 0.7, 0.8], "status": "failed"},  # at 4: finished
}
UNFINISHED = [("relu-default-adam-lr0.01-s1", "interrupted", "2"), ("tanh-default-adam-lr0.01-s0", "failed", "1"),
              ("tanh-default-adam-lr0.01-s1", "running", "3"),
              ("relu-xavier_normal-gauto-adam-lr0.01-s0", "unfinished", "2"),
              ("tanh-xavier_normal-gauto-adam-lr0.01-s0", "pending", "")]


def test_unfinished_is_every_trial_short_of_the_sweeps_epochs_that_did_not_diverge(capsys, tmp_path, monkeypatch):
    """The trials the title counts as unfinished are the ones --where status=unfinished keeps, whatever their
    status; a completed trial of an older, smaller `epochs` shows as unfinished."""
    monkeypatch.setenv("COLUMNS", "200")
    db = build(tmp_path, SPEC, STOPPED)
    code, out, _ = report(capsys, db=db)
    assert code == 0 and out.splitlines()[0] == (
        "sweep hand: 4 configurations ranked by mean final_test_acc over seeds, at 4 epochs; chosen on the test set (no validation split); "
        "5 unfinished trials not aggregated")
    code, out, _ = report(capsys, "--where", "status=unfinished", db=db)
    assert out.splitlines()[0] == (
        "sweep hand: 4 configurations ranked by mean final_test_acc over seeds, at 4 epochs; chosen on the test set (no validation split); "
        "5 unfinished trials not aggregated")
    code, out, _ = report(capsys, "--where", "status=unfinished", "--trials", "--format", "csv", db=db)
    assert sorted((r["trial"], r["status"], r["epochs"]) for r in rows(out)) == sorted(UNFINISHED)
    code, out, _ = report(capsys, "--where", "status=completed", "--trials", "--format", "csv", db=db)
    assert [r["trial"] for r in rows(out)] == ["relu-default-adam-lr0.01-s0"]
    code, out, _ = report(capsys, "--where", "status=failed", "--trials", "--format", "csv", db=db)
    assert [(r["trial"], r["epochs"]) for r in rows(out)] == [("tanh-xavier_normal-gauto-adam-lr0.01-s1", "4"),
                                                              ("tanh-default-adam-lr0.01-s0", "1")]


def test_the_default_sweep_is_the_one_written_last(capsys, tmp_path):
    """b is created, then a; a trains; then `sweep run b.yaml` again: a bare report and plot read b."""
    from datetime import datetime

    from sqlalchemy import select, update

    from sweep.db.queries import update_trials
    from sweep.db.schema import Sweep, Trial

    db = build(tmp_path, {**SPEC, "name": "b"}, TRIALS)
    build(tmp_path, {**SPEC, "name": "a"}, TRIALS)
    engine = make_engine(f"sqlite:///{db}")
    with session_scope(engine) as s:
        ids = {name: s.scalars(select(Trial.trial_id).join(Sweep, Sweep.sweep_id == Trial.sweep_id)
                               .where(Sweep.name == name)).all() for name in ("a", "b")}
        for name, day in (("b", 1), ("a", 2)):
            s.execute(update(Sweep).where(Sweep.name == name).values(created_at=datetime(2026, 11, day)))
            update_trials(s, [(t, {"started_at": datetime(2026, 11, day, 1), "finished_at": datetime(2026, 11, day, 2)})
                              for t in ids[name]])
    assert report(capsys, "--top", "1", db=db)[1].startswith("sweep a: ")
    with session_scope(engine) as s:  # sweep run b.yaml: its trials start again
        update_trials(s, [(t, {"status": "running", "started_at": datetime(2026, 11, 3)}) for t in ids["b"]])
    engine.dispose()
    assert report(capsys, "--top", "1", db=db)[1].startswith("sweep b: ")
    assert main(["plot", "--db", str(db), "--epochs", "1"]) == 1  # b, which has no statistics
    assert capsys.readouterr().err == "Error: sweep b has no statistics yet; wait for its first epoch\n"
    code, _, err = report(capsys, "c", db=db)
    assert (code, err) == (1, "Error: no sweep named 'c' in the database; it has: a, b\n")


@pytest.mark.parametrize("args, message", [
    (["--where", "gain=automatic"], "--where gain=automatic: 'automatic' is not a number or auto; "
                                    "gain in this sweep: 1, auto"),
    (["--where", "lr=abc"], "--where lr=abc: 'abc' is not a number; lr in this sweep: 0.01"),
    (["--where", "activation=tahn"], "--where activation=tahn: no trial has activation 'tahn'; activation in this "
                                     "sweep: relu, tanh; did you mean 'tanh'?"),
    (["--threshold", "90"], "--threshold 90: a test accuracy, must be in 0..1 (e.g. 0.7)"),
    (["--columns", "rank,nn"], "--columns: no column 'nn' in this table; allowed: rank, config, activation, init, "
                               "optimizer, lr, n, final_test_acc_mean, final_test_acc_std, final_test_acc_ci95, "
                               "best_test_acc, final_train_loss, final_test_loss, train_seconds, best_epoch, epochs, "
                               "status, flags, error, gain, gain_value, mean, std, ci95; did you mean 'n'?"),
])
def test_bad_values_are_one_line_errors(capsys, db, args, message):
    assert report(capsys, *args, db=db) == (2, "", f"Error: {message}\n")


def test_db_takes_a_plain_path(capsys, db, monkeypatch):
    monkeypatch.chdir(db.parent)
    code, out, _ = report(capsys, "--format", "csv", db="sweep.db")
    assert code == 0 and len(rows(out)) == 4


@pytest.mark.parametrize("command", ["report", "plot"])
@pytest.mark.parametrize("url", ["postgresql+psycopg://u:secret@127.0.0.1:1/x",  # no server there (or no driver)
                                 "postgresql+pg8000://u:secret@127.0.0.1:1/x"])  # a driver not installed
def test_a_database_that_cannot_be_opened_is_one_line_without_the_password(capsys, command, url):
    code = main([command, "--db", url])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"Error: database {url.replace('secret', '***')}: ")
    assert err.count("\n") == 1 and "secret" not in err
    if "pg8000" in url:
        assert importlib.util.find_spec("pg8000") is None  # the case this is about
        assert err.endswith(": ModuleNotFoundError: No module named 'pg8000'\n")


def test_version_is_the_installed_package_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert capsys.readouterr().out == f"sweep {version('sweep')}\n" == f"sweep {pyproject['project']['version']}\n"


# ---------------------------------------------------------------- the database's figures, held to trial_results

@pytest.mark.parametrize("threshold", [None, 0.9, 0.5])
def test_the_databases_figures_are_trial_results(db_url, tmp_path, threshold):
    """trial_figures (SQL) gives what trial_results (pandas, on every epoch row) gives, at any epoch count:
    further-trained, unfinished, diverged and pending trials included, and a trial whose best accuracy
    comes twice (the earlier counts) with a NaN accuracy between."""
    import pandas as pd

    from sweep.db import epoch_metrics_frame, trials_frame
    from sweep.db.queries import images_per_epoch, trial_figures
    from reference import trial_results
    from sweep.analysis.results import results_from_figures

    build(tmp_path, {**SPEC, "database": db_url}, {**TRIALS, "tanh-default-adam-lr0.01-s1": None,
                                                    "relu-default-adam-lr0.01-s1": {"accs": [0.1, 0.8, math.nan,
                                                                                             0.8, 0.7]}})
    engine = make_engine(db_url)
    for epochs in (1, 2, 4, 6):
        expected = trial_results(trials_frame(engine, "hand"), epoch_metrics_frame(engine, "hand"), epochs, threshold)
        got = results_from_figures(trial_figures(engine, "hand", epochs, threshold), epochs)
        assert sorted(got.columns) == sorted(expected.columns)
        pd.testing.assert_frame_equal(got[expected.columns], expected)
    assert images_per_epoch(engine, "hand") == 1024  # what the report's stopping summary multiplies by
    engine.dispose()


def test_threshold_columns_join_by_whatever_the_metric(capsys, db, monkeypatch):
    code, out, _ = report(capsys, "--threshold", "0.9", "--by", "gain", "--format", "csv", db=db)
    assert code == 0
    assert [(r["gain"], float(r["final_test_acc_mean"]), r["images_to_threshold_mean"], r["reached"], r["n"])
            for r in rows(out)] == [("1", pytest.approx((0.94 + 0.8 + 0.95 + 0.9) / 4), "3072", "3", "4"),
                                    ("auto", pytest.approx((0.98 + 0.5 + 0.92) / 3), "2560", "2", "3")]
    monkeypatch.delenv("COLUMNS", raising=False)
    code, out, _ = report(capsys, "--threshold", "0.9", "--by", "activation,init", db=db)
    assert code == 0
    assert out.splitlines()[1:] == [
        "activation  default             xavier_normal",
        "relu        0.8700; 2048 (1/2)  0.7400; 1024 (1/2)",
        "tanh        0.9250; 3584 (2/2)  0.9200; 4096 (1/1)"]
