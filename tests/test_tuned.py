"""A fair comparison (sweep.tuning): each configuration at its own best learning rate, chosen on the
validation split, with the test figure of that choice beside it; edge flags; the same in --by, csv and json."""
import json

import pytest

from sweep.cli import main
from test_report_db import build, rows

# Validation accuracy (vals) and test accuracy (accs) after epochs 0, 1, 2, both seeds alike.
CURVES = {
    # relu: the best on test (lr 0.01, 0.9) is not the best on validation (lr 0.1, 0.8): the choice is 0.1
    ("relu", 0.01): ([0.1, 0.4, 0.6], [0.1, 0.5, 0.9]),
    ("relu", 0.1): ([0.1, 0.6, 0.8], [0.1, 0.6, 0.7]),
    ("relu", 1.0): ([0.1, 0.6, 0.7], [0.1, 0.5, 0.6]),
    # tanh: the best is the largest lr tried, an edge of the search
    ("tanh", 0.01): ([0.1, 0.3, 0.5], [0.1, 0.3, 0.5]),
    ("tanh", 0.1): ([0.1, 0.4, 0.6], [0.1, 0.4, 0.6]),
    ("tanh", 1.0): ([0.1, 0.6, 0.75], [0.1, 0.6, 0.72]),
}
SPEC = {"name": "tuned", "dataset": {"name": "synthetic", "validation": 64}, "epochs": 2, "tune": ["lr"],
        "grid": {"activation": ["relu", "tanh"], "optimizer": [{"name": "sgd", "lr": [0.01, 0.1, 1.0]}],
                 "seed": [0, 1]}}
TRIALS = {f"{act}-default-sgd-lr{lr:g}-s{seed}": {"vals": vals, "accs": accs}
          for (act, lr), (vals, accs) in CURVES.items() for seed in (0, 1)}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return build(tmp_path_factory.mktemp("tuned"), SPEC, TRIALS)


def report(capsys, db, *args):
    code = main(["report", "--db", str(db), *args])
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), err
    return out


def test_each_configuration_at_its_best_lr_chosen_on_validation(capsys, db):
    got = rows(report(capsys, db, "--format", "csv"))
    assert [(r["rank"], r["activation"], r["lr"], r["final_val_acc_mean"], r["final_test_acc_mean"], r["n"],
             r["settings"], r["edge"]) for r in got] == [
        ("1", "relu", "0.1", "0.8", "0.7", "2", "3", ""),
        ("2", "tanh", "1.0", "0.75", "0.72", "2", "3", "edge lr")]
    title = report(capsys, db).splitlines()[0]
    assert title == ("sweep tuned: 2 configurations ranked by mean final_val_acc over seeds, each at its best lr "
                     "chosen on final_val_acc, at 2 epochs")


def test_tune_none_shows_every_configuration_and_the_test_choice_says_so(capsys, db):
    assert len(rows(report(capsys, db, "--tune", "none", "--format", "csv"))) == 6
    title = report(capsys, db, "--metric", "final_test_acc").splitlines()[0]
    assert title.endswith("each at its best lr chosen on final_test_acc; selection used the test set (no "
                          "validation split), at 2 epochs")
    # chosen on test, relu's lr 0.01 wins with the test figure it was chosen by
    got = rows(report(capsys, db, "--metric", "final_test_acc", "--format", "csv"))
    assert [(r["activation"], r["lr"], r["final_test_acc_mean"]) for r in got] == [("relu", "0.01", "0.9"),
                                                                                     ("tanh", "1.0", "0.72")]


def test_by_and_the_matrix_compare_each_cell_at_its_own_best_lr(capsys, db):
    records = json.loads(report(capsys, db, "--by", "activation", "--format", "json"))
    assert [(r["activation"], r["lr"], r["final_test_acc_mean"], r["edge"]) for r in records] == [
        ("relu", 0.1, pytest.approx(0.7), ""), ("tanh", 1.0, pytest.approx(0.72), "edge lr")]
    out = report(capsys, db, "--by", "activation,optimizer").splitlines()
    assert out[0] == ("sweep tuned: mean final_test_acc by activation x optimizer, each at its best lr chosen on "
                      "final_val_acc, at 2 epochs")
    assert out[1:] == ["activation     sgd", "relu        0.7000", "tanh        0.7200"]


def test_where_keeps_its_meaning_under_tuning(capsys, db):
    got = rows(report(capsys, db, "--where", "lr=0.01,1", "--format", "csv"))
    assert [(r["activation"], r["lr"], r["settings"]) for r in got] == [("tanh", "1.0", "2"), ("relu", "1.0", "2")]
