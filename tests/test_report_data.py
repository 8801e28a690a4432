"""The report as data (issue 22) and what stopping did (issue 20), on a hand-made results database: csv and
json read back with json and pandas, typed; every grid factor (the optimizer's hyper-parameters too) in
--where and --by, three factors as a long table; failed and stopped trials; narrow terminals."""
import io
import json
import math

import pandas as pd
import pytest

from sweep.db.engine import make_engine
from sweep.cli import main
from sweep.analysis.intervals import t95
from sweep.analysis.render import default_columns, essential_columns, header, human_view, IMPORTANCE
from sweep.analysis.report import factor_matrix, rank_configurations, short_error
from sweep.analysis.results import sweep_results
from test_report_db import build, unwrapped

SPEC = {"name": "data", "dataset": "synthetic", "epochs": 4,
        "grid": {"activation": ["relu", "tanh"], "init": ["default"],
                 "optimizer": [{"name": "sgd", "lr": 0.1, "momentum": [0.0, 0.9]},
                               {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True},
                               {"name": "adam", "lr": 0.01}],
                 "seed": [0, 1]}}
TRACEBACK = ("Failure # 1 (occurred at 2026-12-01_10-00-00)\nTraceback (most recent call last):\n"
             "  File \"sweep/run/trial.py\", line 10, in train\n    step()\nRuntimeError: CUDA error: out of memory\n\n")
M0, M9, NESTEROV, ADAM = "sgd-lr0.1-momentum0", "sgd-lr0.1-momentum0.9", "sgd-lr0.1-momentum0.9-nesterovtrue", \
    "adam-lr0.01"
# Test accuracy after epochs 0, 1, ...; 1024 training images per epoch; the sweep's epochs: 4.
TRIALS = {
    f"relu-default-{M0}-s0": {"accs": [0.1, 0.5, 0.6, 0.7, 0.8]},
    f"relu-default-{M0}-s1": {"accs": [0.1, 0.4, 0.6, 0.7, 0.76]},
    f"relu-default-{M9}-s0": {"accs": [0.1, 0.6, 0.8, 0.85, 0.9]},
    f"relu-default-{M9}-s1": {"accs": [0.1, 0.6, 0.7], "status": "failed", "error": TRACEBACK},
    f"relu-default-{NESTEROV}-s0": {"accs": [0.1, 0.7, 0.85, 0.9, 0.92]},
    f"relu-default-{NESTEROV}-s1": {"accs": [0.1, 0.7, 0.86, 0.91, 0.9]},
    f"relu-default-{ADAM}-s0": {"accs": [0.1, 0.8, 0.9, 0.93, 0.95]},
    f"relu-default-{ADAM}-s1": {"accs": [0.1, 0.8, 0.9, 0.94, 0.93]},
    # Stopped by a stop rule (issue 20): the epochs up to the stop recorded, the reason in trials.error.
    f"tanh-default-{M0}-s0": {"accs": [0.1, 0.1, 0.11], "status": "stopped", "error": "stopped@2 chance"},
    f"tanh-default-{M0}-s1": {"accs": [0.1, 0.1, 0.1], "status": "stopped", "error": "stopped@2 chance"},
    f"tanh-default-{M9}-s0": {"accs": [0.1, 0.5, 0.7, 0.8, 0.85]},
    f"tanh-default-{M9}-s1": {"accs": [0.1, 0.1, 0.1, 0.1], "status": "stopped", "error": "stopped@3 chance"},
    f"tanh-default-{NESTEROV}-s0": {"accs": [0.1, 0.6, 0.8, 0.86, 0.88]},
    f"tanh-default-{NESTEROV}-s1": {"accs": [0.1, 0.6, 0.8, 0.87, 0.89]},
    f"tanh-default-{ADAM}-s0": {"accs": [0.1, 0.8, 0.88, 0.9, 0.91]},
    f"tanh-default-{ADAM}-s1": {"accs": [0.1, 0.8, 0.88, 0.9, 0.92]},
}
TITLE = ("sweep data: 8 configurations ranked by mean final_test_acc over seeds, at 4 epochs; chosen on the test set (no validation split); 1 unfinished trial "
         "not aggregated; 3 trials stopped early; stopping saved 5,120 of the grid's 65,536 training images (7.8%)")


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return build(tmp_path_factory.mktemp("data"), SPEC, TRIALS, stats=True)


def report(capsys, db, *args) -> str:
    code = main(["report", "--db", str(db), *args])
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), err
    return unwrapped(out)  # the title on one line


def frame(capsys, db, fmt, *args) -> pd.DataFrame:
    out = report(capsys, db, "--format", fmt, *args)
    return pd.read_csv(io.StringIO(out)) if fmt == "csv" else pd.DataFrame(json.loads(out))


def test_json_and_csv_are_typed_configurations(capsys, db):
    records = json.loads(report(capsys, db, "--format", "json"))
    by = {r["config"]: r for r in records}
    assert [r["config"] for r in records] == [
        f"relu-default-{ADAM}", f"tanh-default-{ADAM}", f"relu-default-{NESTEROV}", f"relu-default-{M9}",
        f"tanh-default-{NESTEROV}", f"relu-default-{M0}", f"tanh-default-{M9}", f"tanh-default-{M0}"]
    nesterov = by[f"relu-default-{NESTEROV}"]
    assert {k: nesterov[k] for k in ("rank", "n", "lr", "momentum", "nesterov", "gain", "gain_value", "best_epoch_min",
                                     "best_epoch_max", "epochs_min", "epochs_max", "status", "error")} == {
        "rank": 3, "n": 2, "lr": 0.1, "momentum": 0.9, "nesterov": True, "gain": 1, "gain_value": 1.0,
        "best_epoch_min": 3, "best_epoch_max": 4, "epochs_min": 4, "epochs_max": 4, "status": "completed", "error": ""}
    assert nesterov["final_test_acc_mean"] == pytest.approx(0.91)
    assert nesterov["final_test_acc_ci95"] == pytest.approx(t95(2) * 0.02 / 2)
    for key, kind in (("rank", int), ("n", int), ("best_epoch_min", int), ("epochs_max", int), ("gain", int),
                      ("lr", float), ("momentum", float), ("nesterov", bool), ("final_test_acc_mean", float)):
        assert type(nesterov[key]) is kind, key
    # Hyper-parameters an optimizer does not set are null; momentum 0 is the number 0.
    assert (by[f"relu-default-{ADAM}"]["momentum"], by[f"relu-default-{ADAM}"]["nesterov"]) == (None, None)
    assert (by[f"relu-default-{M0}"]["momentum"], by[f"relu-default-{M0}"]["nesterov"]) == (0.0, None)
    # A failed seed: not aggregated, its error in one line; the configuration's epochs a range.
    failed = by[f"relu-default-{M9}"]
    assert {k: failed[k] for k in ("n", "final_test_acc_mean", "epochs_min", "epochs_max", "status", "error")} == {
        "n": 1, "final_test_acc_mean": 0.9, "epochs_min": 2, "epochs_max": 4, "status": "1 completed, 1 failed",
        "error": "RuntimeError: CUDA error: out of memory (1/2)"}
    # Stopped seeds (issue 20): a configuration with no finished seed shows them at the epoch they stopped, last.
    stopped = by[f"tanh-default-{M0}"]
    assert {k: stopped[k] for k in ("rank", "n", "epochs_min", "epochs_max", "best_epoch_min", "best_epoch_max",
                                    "status", "error")} == {
        "rank": 8, "n": 2, "epochs_min": 2, "epochs_max": 2, "best_epoch_min": 0, "best_epoch_max": 2,
        "status": "stopped", "error": "stopped@2 chance (2/2)"}
    assert stopped["final_test_acc_mean"] == pytest.approx(0.105)
    # A configuration is finished when all its seeds are: one seed stopped at 3, so both are read at epoch 3
    # (0.8 and 0.1), ranked with the stopped configurations; never the survivor's 0.85 alone.
    mixed = by[f"tanh-default-{M9}"]
    assert {k: mixed[k] for k in ("rank", "n", "epochs_min", "epochs_max", "status", "error")} == {
        "rank": 7, "n": 2, "epochs_min": 3, "epochs_max": 3, "status": "1 completed, 1 stopped",
        "error": "stopped@3 chance (1/2)"}
    assert mixed["final_test_acc_mean"] == pytest.approx(0.45)

    table = frame(capsys, db, "csv")
    assert table["config"].tolist() == [r["config"] for r in records]
    for column in ("rank", "n", "best_epoch_min", "best_epoch_max", "epochs_min", "epochs_max", "gain"):
        assert table[column].dtype == "int64", column
    for column in ("lr", "momentum", "gain_value", "final_test_acc_mean", "final_test_acc_ci95"):
        assert table[column].dtype == "float64", column
    assert table["momentum"].fillna(-1).tolist() == [-1, -1, 0.9, 0.9, 0.9, 0.0, 0.9, 0.0]
    # True where set, empty (NaN) where not: pandas reads the booleans back as booleans.
    assert [v if isinstance(v, bool) else None for v in table["nesterov"]] == [None, None, True, None, True, None,
                                                                               None, None]
    # The same numbers in both formats.
    typed = pd.DataFrame(records)
    for column in ("n", "final_test_acc_mean", "final_test_acc_std", "best_epoch_max", "epochs_min"):
        assert typed[column].tolist() == pytest.approx(table[column].tolist(), nan_ok=True), column


def test_trials_carry_their_factors_and_a_one_line_error_and_pivot(capsys, db):
    table = frame(capsys, db, "csv", "--trials")
    assert list(table.columns) == [
        "rank", "trial", "config", "activation", "init", "optimizer", "lr", "seed", "final_test_acc", "best_test_acc",
        "best_epoch", "final_test_loss", "epochs", "status", "kernels", "flags", "error", "gain", "gain_value", "momentum",
        "nesterov"]
    assert len(table) == 16 and table["seed"].dtype == "int64" and table["best_epoch"].dtype == "int64"
    # Finished trials best first, then the stopped ones (at the epoch they stopped), then the unfinished.
    assert table[["trial", "final_test_acc", "epochs", "status", "error"]].tail(4).values.tolist() == [
        [f"tanh-default-{M0}-s0", 0.11, 2, "stopped", "stopped@2 chance"],
        [f"tanh-default-{M0}-s1", 0.1, 2, "stopped", "stopped@2 chance"],
        [f"tanh-default-{M9}-s1", 0.1, 3, "stopped", "stopped@3 chance"],
        [f"relu-default-{M9}-s1", 0.7, 2, "failed", "RuntimeError: CUDA error: out of memory"]]
    finished = table[table["status"] == "completed"]
    pivot = finished.pivot_table(index="activation", columns="momentum", values="final_test_acc", aggfunc="mean")
    assert pivot.loc["relu"].tolist() == pytest.approx([0.78, (0.92 + 0.9 + 0.9) / 3])
    records = json.loads(report(capsys, db, "--trials", "--format", "json"))
    assert {k: records[2][k] for k in ("trial", "seed", "momentum", "nesterov", "best_epoch", "epochs", "error")} == {
        "trial": f"relu-default-{NESTEROV}-s0", "seed": 0, "momentum": 0.9, "nesterov": True, "best_epoch": 4,
        "epochs": 4, "error": ""}


def test_short_error_is_the_last_line_cut_to_a_hundred_characters():
    assert short_error(TRACEBACK) == "RuntimeError: CUDA error: out of memory"
    assert short_error("ValueError:   two\tspaces  ") == "ValueError: two spaces"
    long = short_error("x" * 150)
    assert (len(long), long[-1]) == (100, "…")
    assert short_error(None) is None and short_error(" \n") is None


@pytest.mark.parametrize("where, trials", [
    (["momentum=0.9"], {f"{a}-default-{s}-s{i}" for a in ("relu", "tanh") for s in (M9, NESTEROV) for i in (0, 1)}),
    (["nesterov=true"], {f"{a}-default-{NESTEROV}-s{i}" for a in ("relu", "tanh") for i in (0, 1)}),
    (["momentum=none"], {f"{a}-default-{ADAM}-s{i}" for a in ("relu", "tanh") for i in (0, 1)}),
    (["momentum=0", "activation=relu"], {f"relu-default-{M0}-s{i}" for i in (0, 1)}),
    (["status=stopped"], {f"tanh-default-{M0}-s0", f"tanh-default-{M0}-s1", f"tanh-default-{M9}-s1"}),
    (["status=unfinished"], {f"relu-default-{M9}-s1"}),  # a stopped trial is not unfinished
    # any of a key's values: listed with commas, or the key repeated; different keys must all hold
    (["momentum=0,none", "seed=1"], {f"{a}-default-{s}-s1" for a in ("relu", "tanh") for s in (M0, ADAM)}),
    (["seed=0", "seed=1", "activation=relu", "optimizer=adam"], {f"relu-default-{ADAM}-s{i}" for i in (0, 1)}),
])
def test_where_takes_every_factor(capsys, db, where, trials):
    args = [a for w in where for a in ("--where", w)]
    assert set(frame(capsys, db, "csv", "--trials", *args)["trial"]) == trials


def test_where_that_leaves_nothing_says_so_in_one_line(capsys, db):
    assert main(["report", "--db", str(db), "--where", "nesterov=true", "--where", "momentum=0"]) == 1
    assert capsys.readouterr() == ("", "sweep data: no trial has all of --where nesterov=true momentum=0 (each is some "
                                       "trial's value, not together)\n")


@pytest.mark.parametrize("where, message", [
    ("momentum=abc", "--where momentum=abc: 'abc' is not a number; momentum in this sweep: 0, 0.9, none"),
    ("nesterov=yes", "--where nesterov=yes: 'yes' is not true or false; nesterov in this sweep: none, true"),
    ("nesterov=false", "--where nesterov=false: no trial has nesterov 'false'; nesterov in this sweep: none, true"),
    ("momentm=0.9", "--where momentm=0.9: 'momentm' is not a factor of this sweep; factors: activation, init, gain, "
                    "optimizer, lr, seed, model, status, momentum, nesterov; did you mean 'momentum'?"),
])
def test_where_refuses_what_no_trial_has_in_one_line(capsys, db, where, message):
    assert main(["report", "--db", str(db), "--where", where]) == 2
    assert capsys.readouterr() == ("", f"Error: {message}\n")


def test_by_a_hyper_parameter_keeps_n_and_the_interval(capsys, db):
    records = json.loads(report(capsys, db, "--by", "momentum", "--format", "json"))
    # Stopped seeds are not pooled, nor the finished seed of tanh momentum 0.9, whose other seed stopped: a
    # configuration is pooled when all its seeds finished.
    assert [(r["momentum"], r["n"]) for r in records] == [(None, 4), (0.9, 5), (0.0, 2)]
    assert records[1]["final_test_acc_mean"] == pytest.approx((0.9 + 0.92 + 0.9 + 0.88 + 0.89) / 5)
    assert records[2]["final_test_acc_ci95"] == pytest.approx(t95(2) * 0.04 / math.sqrt(2) / math.sqrt(2))
    # Two factors: one row per pair in csv and json, with n and the interval; a matrix for people.
    pairs = frame(capsys, db, "csv", "--by", "activation,momentum")
    assert list(pairs.columns) == ["activation", "momentum", "final_test_acc_mean", "final_test_acc_std",
                                   "final_test_acc_ci95", "n"]
    assert pairs.fillna({"momentum": -1})[["activation", "momentum", "n"]].values.tolist() == [
        ["relu", -1, 2], ["tanh", -1, 2], ["relu", 0.9, 3], ["tanh", 0.9, 2], ["relu", 0.0, 2]]
    out = report(capsys, db, "--by", "activation,momentum")
    assert out.splitlines()[1:] == ["activation       0     0.9       -",
                                    "relu        0.7800  0.9067  0.9400",
                                    "tanh             -  0.8850  0.9150"]
    assert out.splitlines()[0].endswith("; 3 trials stopped early, 4 trials of their configurations not pooled; "
                                        "stopping saved 5,120 of the grid's 65,536 training images (7.8%)")


def test_by_three_factors_is_a_long_table_everywhere(capsys, db, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    out = report(capsys, db, "--by", "optimizer,momentum,seed")
    assert out.splitlines()[1:] == [
        "optimizer  momentum  seed    mean     std    ci95  n",
        "adam       -         0     0.9300  0.0283  0.2541  2",
        "adam       -         1     0.9250  0.0071  0.0635  2",
        "sgd        0.9       0     0.9000  0.0200  0.0497  3",
        "sgd        0.9       1     0.8950  0.0071  0.0635  2",
        "sgd        0         0     0.8000       -       -  1",
        "sgd        0         1     0.7600       -       -  1"]
    records = json.loads(report(capsys, db, "--by", "optimizer,momentum,seed", "--format", "json"))
    seeds0 = pd.Series([0.92, 0.9, 0.88])  # tanh momentum 0.9's seed 0 is not pooled: its seed 1 stopped
    assert records[2] == {"optimizer": "sgd", "momentum": 0.9, "seed": 0,
                          "final_test_acc_mean": pytest.approx(seeds0.mean()),
                          "final_test_acc_std": pytest.approx(seeds0.std()),
                          "final_test_acc_ci95": pytest.approx(t95(3) * seeds0.std() / math.sqrt(3)),
                          "n": 3}


def test_threshold_cells_are_mean_images_and_reached_of_n(capsys, db):
    args = ("--by", "activation,momentum", "--threshold", "0.9", "--metric", "images_to_threshold")
    records = json.loads(report(capsys, db, *args, "--format", "json"))
    cells = {(r["activation"], r["momentum"]): (r["images_to_threshold_mean"], r["reached"], r["n"]) for r in records}
    assert cells == {("relu", None): (2048, 2, 2), ("tanh", None): (3072, 2, 2),
                     ("relu", 0.9): (pytest.approx((4096 + 3072 + 3072) / 3), 3, 3), ("tanh", 0.9): (None, 0, 2),
                     ("relu", 0.0): (None, 0, 2)}
    assert all(type(r["reached"]) is int and type(r["n"]) is int for r in records)
    assert report(capsys, db, *args).splitlines()[1:] == ["activation  0        0.9         -",
                                                          "relu        - (0/2)  3413 (3/3)  2048 (2/2)",
                                                          "tanh        -        - (0/2)     3072 (2/2)"]


def test_the_heat_maps_matrix_is_the_reports(capsys, db):
    """factor_matrix (what sweep plot's heat map draws) has the numbers of --by F1,F2, momentum included."""
    engine = make_engine(f"sqlite:///{db}")
    results = sweep_results(engine, "data", 4)
    engine.dispose()
    matrix = factor_matrix(results, "final_test_acc", ("activation", "momentum"))
    assert (list(matrix.index), list(matrix.columns)) == (["relu", "tanh"], ["0", "0.9", "-"])
    for r in json.loads(report(capsys, db, "--by", "activation,momentum", "--format", "json")):
        column = "-" if r["momentum"] is None else f"{r['momentum']:g}"
        assert matrix.loc[r["activation"], column] == pytest.approx(r["final_test_acc_mean"])
    assert math.isnan(matrix.loc["tanh", "0"])  # its seeds stopped: nothing finished there


def test_stopping_is_summed_up_against_the_grid(capsys, db, monkeypatch):
    """Stopped: tanh sgd momentum 0 at epoch 2 (both seeds), tanh momentum 0.9 seed 1 at 3: 2 + 2 + 1 epochs of
    1,024 images of the grid's 16 trials x 4 epochs; the failed trial is the one unfinished trial."""
    monkeypatch.setenv("COLUMNS", "100")
    assert report(capsys, db).splitlines()[0] == TITLE
    assert report(capsys, db, "--where", "status=stopped", "--trials").splitlines()[0] == (
        "sweep data: 3 trials ranked by final_test_acc, at 4 epochs; chosen on the test set (no validation split); 3 trials stopped early; stopping saved 5,120 "
        "of the grid's 65,536 training images (7.8%)")
    assert report(capsys, db, "--where", "activation=relu").splitlines()[0] == (
        "sweep data: 4 configurations ranked by mean final_test_acc over seeds, at 4 epochs; chosen on the test set (no validation split); 1 unfinished trial "
        "not aggregated; stopping saved 5,120 of the grid's 65,536 training images (7.8%)")


def _cells(line: str) -> list[str]:
    return [c for c in line.strip().split("  ") if c.strip()]


@pytest.mark.parametrize("width", [50, 70, 100])
@pytest.mark.parametrize("view, metric, differing", [
    ([], "final_test_acc_mean", ["activation", "optimizer", "lr", "momentum", "nesterov"]),
    (["--trials"], "final_test_acc", ["activation", "optimizer", "lr", "momentum", "nesterov", "seed"]),
    (["--where", "optimizer=sgd"], "final_test_acc_mean", ["activation", "momentum", "nesterov"]),
])
def test_narrow_terminals_keep_the_differing_factors_and_the_mean(capsys, db, monkeypatch, width, view, metric,
                                                                  differing):
    monkeypatch.setenv("COLUMNS", str(width))
    lines = report(capsys, db, *view).splitlines()[1:]
    records = json.loads(report(capsys, db, *view, "--format", "json"))
    assert all(len(line) <= width for line in lines)
    assert len(lines) == 1 + len(records) + 1  # the names, the rows, what was left out
    for record, line in zip(records, lines[1:]):
        cells = [c.strip() for c in _cells(line)]
        assert cells[0] == str(record["rank"]) and f"{record[metric]:.4f}" in cells
        for factor in differing:
            value = record[factor]
            shown = "-" if value is None else "true" if value is True else f"{value:g}" \
                if isinstance(value, float) else str(value)
            assert shown in cells, (factor, line)


def test_a_narrow_terminal_cuts_names_before_values_and_drops_the_least_important_first(capsys, db, monkeypatch):
    monkeypatch.setenv("COLUMNS", "50")
    assert report(capsys, db).splitlines()[1:4] == ["rank  activ…  optim…    lr  momen…  neste…    mean",
                                                    "   1  relu    adam    0.01  -       -       0.9400",
                                                    "   2  tanh    adam    0.01  -       -       0.9150"]
    monkeypatch.setenv("COLUMNS", "70")
    assert report(capsys, db).splitlines()[1] == "rank  activation  optimizer    lr  momentum  nesterov  n    mean"
    # Piped (100 characters), in the README's order: n, reached, ci95, status, error, flags, std; whatever does
    # not fit leaves out everything after it (error and flags did not fit: no std).
    monkeypatch.delenv("COLUMNS")
    lines = report(capsys, db).splitlines()
    assert lines[1] == "rank  activation  optimizer    lr  momentum  nesterov  n    mean    ci95  status"
    assert lines[-1] == "(13 more columns: --wide shows all, --columns NAME,... picks)"
    monkeypatch.setenv("COLUMNS", "160")  # exactly up to flags: no std
    assert report(capsys, db).splitlines()[1].split() == [
        "rank", "activation", "optimizer", "lr", "momentum", "nesterov", "n", "mean", "ci95", "status", "flags",
        "error"]
    monkeypatch.setenv("COLUMNS", "168")
    assert report(capsys, db).splitlines()[1].split() == [
        "rank", "activation", "optimizer", "lr", "momentum", "nesterov", "n", "mean", "std", "ci95", "status",
        "flags", "error"]


def test_the_shown_columns_follow_the_importance_order_at_every_width(capsys, db):
    """Of the columns that may go, those shown are always the most important ones (a prefix of IMPORTANCE)."""
    from sweep.analysis.render import _fit  # the fitting itself, on the real view

    engine = make_engine(f"sqlite:///{db}")
    results = sweep_results(engine, "data", 4)
    engine.dispose()
    view = human_view(rank_configurations(results, "final_test_acc"))
    columns = default_columns(view, "final_test_acc")
    keep = essential_columns(view, "final_test_acc")
    assert set(keep) == {"rank", "activation", "optimizer", "lr", "momentum", "nesterov", "final_test_acc_mean"}
    others = sorted((c for c in columns if c not in keep), key=lambda c: IMPORTANCE.index(header(c)))
    shown = [header(c) for c in columns]
    need = [max(len(h), *(len(str(v)) for v in view[c])) for h, c in zip(shown, columns)]
    for width in range(40, 200):
        kept = [columns[i] for i, _ in _fit(columns, shown, need, need, [False] * len(columns), width, set(keep))]
        assert set(keep) <= set(kept)
        optional = [c for c in kept if c not in keep]
        assert optional == [c for c in columns if c in others[:len(optional)]], width


def test_the_heat_map_takes_a_hyper_parameter(capsys, db, tmp_path):
    assert main(["plot", "--db", str(db), "--out", str(tmp_path), "--heatmap", "activation,momentum"]) == 0
    assert str(tmp_path / "heatmap.png") in capsys.readouterr().out.split()
    assert main(["plot", "--db", str(db), "--out", str(tmp_path / "no"), "--heatmap", "activation,momentm"]) == 2
    assert capsys.readouterr().err == (
        "Error: --heatmap 'activation,momentm': 'momentm' is not a factor of this sweep; factors: activation, init, "
        "gain, optimizer, lr, seed, model, status, momentum, nesterov; did you mean 'momentum'?\n")
    assert not (tmp_path / "no").exists()


def test_epoch_reads_every_trial_that_reached_it_there(capsys, db, monkeypatch):
    """--epoch 3: the 13 trials that reached epoch 3 (not tanh momentum 0, stopped at 2, nor the failed relu
    momentum 0.9 seed 1), each read at 3 whether it finished, stopped there or trained on: like with like."""
    monkeypatch.setenv("COLUMNS", "200")
    table = frame(capsys, db, "csv", "--trials", "--epoch", "3")
    expected = {name: t["accs"][3] for name, t in TRIALS.items() if len(t["accs"]) > 3}
    assert dict(zip(table["trial"], table["final_test_acc"])) == pytest.approx(expected)
    assert set(table["epochs"]) == {3} and len(table) == 13
    assert report(capsys, db, "--epoch", "3").splitlines()[0] == (
        "sweep data: 7 configurations ranked by mean final_test_acc over seeds, every trial at epoch 3: 13 of the "
        "sweep's 16 trials reached it; chosen on the test set (no validation split)")
    by = frame(capsys, db, "csv", "--by", "activation", "--epoch", "3")
    assert dict(zip(by["activation"], by["n"])) == {"relu": 7, "tanh": 6}
    assert dict(zip(by["activation"], by["final_test_acc_mean"])) == pytest.approx({
        "relu": (0.7 + 0.7 + 0.85 + 0.9 + 0.91 + 0.93 + 0.94) / 7, "tanh": (0.8 + 0.1 + 0.86 + 0.87 + 0.9 + 0.9) / 6})


def test_epoch_outside_the_sweep_is_refused_in_one_line(capsys, db):
    assert main(["report", "--db", str(db), "--epoch", "5"]) == 2
    assert capsys.readouterr() == ("", "Error: --epoch 5: the sweep's epochs are 1..4\n")
