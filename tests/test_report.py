"""Ranking: seeds aggregated, metric direction, unfinished last, formats."""
import json
import math

import pandas as pd
import pytest

from sweep.report import ci95, factor_effects, filter_trials, format_report, images_to_threshold, rank_configurations


def trials(rows):
    base = {"activation": "relu", "init": "default", "optimizer": "adam", "lr": 0.001, "best_test_acc": 0.5,
            "best_epoch": 1, "final_train_loss": 1.0, "final_test_loss": 1.0, "train_seconds": 2.0,
            "epochs_done": 3, "status": "completed"}
    return pd.DataFrame([{**base, **r} for r in rows])


SAMPLE = trials([
    {"label": "a", "final_test_acc": 0.80, "final_test_loss": 0.3},
    {"label": "a", "final_test_acc": 0.90, "final_test_loss": 0.2},
    {"label": "b", "final_test_acc": 0.95, "final_test_loss": 0.9},
    {"label": "c", "final_test_acc": math.nan, "final_test_loss": math.nan, "status": "running", "epochs_done": 0},
    {"label": "d", "final_test_acc": 0.10, "final_test_loss": 2.3},
])


def test_ranks_by_mean_over_seeds_best_first_unfinished_last():
    table = rank_configurations(SAMPLE, "final_test_acc")
    assert table["config"].tolist() == ["b", "a", "d", "c"]
    assert table["rank"].tolist() == [1, 2, 3, 4]
    a = table.set_index("config").loc["a"]
    assert a["n"] == 2
    assert a["final_test_acc_mean"] == pytest.approx(0.85)
    assert a["final_test_acc_std"] == pytest.approx(0.0707107, rel=1e-5)
    assert math.isnan(table.set_index("config").loc["b", "final_test_acc_std"])


def test_loss_metrics_rank_lowest_first():
    table = rank_configurations(SAMPLE, "final_test_loss")
    assert table["config"].tolist() == ["a", "b", "d", "c"]


def test_mixed_statuses_are_summarised():
    table = rank_configurations(trials([
        {"label": "a", "final_test_acc": 0.8},
        {"label": "a", "final_test_acc": math.nan, "status": "running"},
    ]), "final_test_acc")
    assert table["status"].tolist() == ["1 completed, 1 running"]


def test_formats():
    table = rank_configurations(SAMPLE, "final_test_acc")
    md = format_report(table, "markdown").splitlines()
    assert md[0].startswith("| rank | config | activation |") and md[1].startswith("|---|---|")
    assert md[2].startswith("| 1 | b | relu |")
    assert pd.read_csv(__import__("io").StringIO(format_report(table, "csv")))["config"].tolist() == ["b", "a", "d", "c"]
    records = json.loads(format_report(table, "json"))
    assert records[3]["config"] == "c" and records[3]["final_test_acc_mean"] is None
    text = format_report(table, "table").splitlines()
    assert text[0].split()[:3] == ["rank", "config", "activation"]
    assert text[1].split()[:2] == ["1", "b"] and len(text) == 5


def test_ci95_uses_student_t():
    assert ci95(pd.Series([0.8, 0.85, 0.9])) == pytest.approx(4.303 * 0.05 / math.sqrt(3))
    assert math.isnan(ci95(pd.Series([0.8])))
    table = rank_configurations(SAMPLE, "final_test_acc").set_index("config")
    assert table.loc["a", "final_test_acc_ci95"] == pytest.approx(12.706 * 0.0707107 / math.sqrt(2), rel=1e-5)


def test_factor_effects_one_factor_pools_everything_else():
    trials = pd.DataFrame([
        {"activation": "relu", "init": "default", "final_test_acc": 0.8},
        {"activation": "relu", "init": "xavier", "final_test_acc": 0.9},
        {"activation": "tanh", "init": "default", "final_test_acc": 0.6},
        {"activation": "tanh", "init": "xavier", "final_test_acc": math.nan},
    ])
    table = factor_effects(trials, "final_test_acc", ["activation"])
    assert table["activation"].tolist() == ["relu", "tanh"]
    assert table["final_test_acc_mean"].tolist() == pytest.approx([0.85, 0.6])
    assert table["n"].tolist() == [2, 1]
    matrix = factor_effects(trials, "final_test_acc", ["activation", "init"])
    assert matrix.columns.tolist() == ["activation", "default", "xavier"]
    assert matrix.set_index("activation").loc["relu"].tolist() == pytest.approx([0.8, 0.9])


def test_images_to_threshold_is_the_first_epoch_at_or_above():
    epochs = pd.DataFrame([
        {"trial": "x", "images_seen": 0, "test_acc": 0.1}, {"trial": "x", "images_seen": 100, "test_acc": 0.75},
        {"trial": "x", "images_seen": 200, "test_acc": 0.72}, {"trial": "y", "images_seen": 0, "test_acc": 0.1},
        {"trial": "y", "images_seen": 100, "test_acc": 0.5},
    ])
    reached = images_to_threshold(epochs, 0.7)
    assert reached["x"] == 100.0 and math.isnan(reached["y"])


def test_filter_trials_compares_numbers_as_numbers():
    assert filter_trials(SAMPLE, [("lr", "1e-3")])["label"].tolist() == ["a", "a", "b", "c", "d"]
    assert filter_trials(SAMPLE, [("status", "running")])["label"].tolist() == ["c"]
    assert filter_trials(SAMPLE, [("status", "running"), ("lr", "0.1")]).empty
