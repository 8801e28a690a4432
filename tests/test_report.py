"""Ranking on hand-made result frames: finished seeds aggregated, misses, direction, views, formats."""
import io
import json
import math

import pandas as pd
import pytest

from sweep.analysis.factors import filter_trials, ReportError
from sweep.analysis.intervals import ci95, t95, t_quantile
from sweep.analysis.render import default_columns, format_report, human_view, resolve_columns
from sweep.analysis.report import factor_effects, factor_matrix, rank_configurations, trial_table


def results(rows):
    """Rows as trial_results returns them (without optimizer hyper-parameters); each label's trials are its seeds
    s0, s1, ..."""
    base = {"activation": "relu", "init": "default", "gain": 1, "gain_value": 1.0, "optimizer": "adam", "lr": 0.001,
            "seed": 0, "best_test_acc": 0.5, "best_epoch": 1.0, "final_train_loss": 1.0, "final_test_loss": 1.0,
            "train_seconds": 2.0, "epochs": 3.0, "status": "completed", "finished": True, "stopped_early": False,
            "error": None}
    frame = pd.DataFrame([{**base, **r} for r in rows])
    frame["seed"] = frame.groupby("label").cumcount()
    frame["name"] = frame["label"] + "-s" + frame["seed"].astype(str)
    return frame


SAMPLE = results([
    {"label": "a", "final_test_acc": 0.80, "final_test_loss": 0.3},
    {"label": "a", "final_test_acc": 0.90, "final_test_loss": 0.2},
    {"label": "b", "final_test_acc": 0.95, "final_test_loss": 0.9},
    {"label": "c", "final_test_acc": math.nan, "final_test_loss": math.nan, "status": "running", "epochs": 0.0,
     "finished": False},
    {"label": "d", "final_test_acc": 0.10, "final_test_loss": 2.3},
])


def test_ranks_by_mean_over_seeds_best_first_unfinished_last():
    table = rank_configurations(SAMPLE, "final_test_acc")
    assert table["config"].tolist() == ["b", "a", "d", "c"]
    assert table["rank"].tolist() == [1, 2, 3, 4]
    assert table["n"].tolist() == [1, 2, 1, 0]
    a = table.set_index("config").loc["a"]
    assert a["final_test_acc_mean"] == pytest.approx(0.85)
    assert a["final_test_acc_std"] == pytest.approx(0.0707107, rel=1e-5)
    assert math.isnan(table.set_index("config").loc["b", "final_test_acc_std"])


def test_loss_metrics_rank_lowest_first():
    table = rank_configurations(SAMPLE, "final_test_loss")
    assert table["config"].tolist() == ["a", "b", "d", "c"]


def test_only_finished_seeds_are_aggregated_and_the_status_says_what_was_left_out():
    table = rank_configurations(results([
        {"label": "a", "final_test_acc": 0.8, "epochs": 2.0},
        {"label": "a", "final_test_acc": 0.6, "epochs": 1.0, "status": "unfinished", "finished": False},
        {"label": "a", "final_test_acc": 0.5, "epochs": 1.0, "status": "running", "finished": False},
    ]), "final_test_acc")
    assert table[["n", "final_test_acc_mean", "epochs_min", "epochs_max", "status"]].values.tolist() == [
        [1, 0.8, 1, 2, "1 completed, 1 unfinished, 1 running"]]
    assert human_view(table)["epochs"].tolist() == ["1-2"]


def test_best_epoch_over_seeds_is_a_range_and_flags_are_counted_once_per_flag():
    trials = results([{"label": "a", "final_test_acc": 0.1, "best_epoch": 1.0},
                      {"label": "a", "final_test_acc": 0.1, "best_epoch": 2.0},
                      {"label": "b", "final_test_acc": 0.2, "best_epoch": 3.0}])
    flags = pd.DataFrame([
        {"trial": "a-s0", "flag": "chance", "layer": None, "epoch": 1},
        {"trial": "a-s0", "flag": "dead", "layer": "fc1", "epoch": 1},
        {"trial": "a-s1", "flag": "dead", "layer": "fc1", "epoch": 1},
        {"trial": "a-s1", "flag": "chance", "layer": None, "epoch": 2},
        {"trial": "b-s0", "flag": "chance", "layer": None, "epoch": 3},
    ])
    table = rank_configurations(trials, "final_test_acc", flags).set_index("config")
    assert table.loc["a", ["best_epoch_min", "best_epoch_max"]].tolist() == [1, 2]
    assert table.loc["b", ["best_epoch_min", "best_epoch_max"]].tolist() == [3, 3]
    assert human_view(table).loc[["a", "b"], "best_epoch"].tolist() == ["1-2", "3"]
    assert table.loc["a", "flags"] == "chance@1 (2/2), dead fc1@1 (2/2)"
    assert table.loc["b", "flags"] == "chance@3"  # one seed: no count


# A configuration with a miss never ranks above one whose seeds all reached the threshold.
THRESHOLDS = results([
    {"label": "fast-but-missed", "images_to_threshold": 2048.0},
    {"label": "fast-but-missed", "images_to_threshold": math.nan},
    {"label": "slow", "images_to_threshold": 3072.0},
    {"label": "slow", "images_to_threshold": 4096.0},
    {"label": "slower", "images_to_threshold": 5120.0},
    {"label": "slower", "images_to_threshold": 5120.0},
    {"label": "never", "images_to_threshold": math.nan},
    {"label": "never", "images_to_threshold": math.nan},
    {"label": "unfinished", "images_to_threshold": 1024.0, "finished": False, "status": "running"},
]).assign(final_test_acc=0.9)


def test_threshold_ranking_puts_every_miss_after_configurations_that_all_reached_it():
    table = rank_configurations(THRESHOLDS, "images_to_threshold")
    got = table[["config", "reached", "n", "images_to_threshold_mean"]].astype(object).values.tolist()
    assert got[:3] == [["slow", 2, 2, 3584.0], ["slower", 2, 2, 5120.0], ["fast-but-missed", 1, 2, 2048.0]]
    assert [r[:3] for r in got[3:]] == [["never", 0, 2], ["unfinished", 0, 0]]
    assert all(math.isnan(r[3]) for r in got[3:])
    assert human_view(table)["reached"].tolist() == ["2/2", "2/2", "1/2", "0/2", "0/0"]


def test_threshold_by_a_factor_counts_misses_too():
    trials = THRESHOLDS.assign(activation=["tanh"] * 2 + ["relu"] * 4 + ["tanh"] * 2 + ["relu"])
    table = factor_effects(trials, "images_to_threshold", ["activation"])
    assert table[["activation", "images_to_threshold_mean", "n", "reached"]].values.tolist() == [
        ["relu", 4352.0, 4, 4], ["tanh", 2048.0, 4, 1]]
    matrix = factor_matrix(trials, "images_to_threshold", ["activation", "init"], text=True)
    assert matrix.reset_index().values.tolist() == [["tanh", "2048 (1/4)"], ["relu", "4352 (4/4)"]]
    assert factor_matrix(trials, "images_to_threshold", ["activation", "init"]).values.tolist() == [[2048.0],
                                                                                                     [4352.0]]


# Threshold 0.85, in grid order: no seed of sigmoid+sgd (stuck near chance) or sigmoid+adam (79%) reached it.
MISSES = results([
    {"label": "sigmoid-sgd", "activation": "sigmoid", "optimizer": "sgd", "images_to_threshold": math.nan,
     "best_test_acc": 0.10},
    {"label": "sigmoid-sgd", "activation": "sigmoid", "optimizer": "sgd", "images_to_threshold": math.nan,
     "best_test_acc": 0.11},
    {"label": "sigmoid-adam", "activation": "sigmoid", "images_to_threshold": math.nan, "best_test_acc": 0.79},
    {"label": "sigmoid-adam", "activation": "sigmoid", "images_to_threshold": math.nan, "best_test_acc": 0.78},
    {"label": "tanh-sgd", "activation": "tanh", "optimizer": "sgd", "images_to_threshold": math.nan,
     "best_test_acc": 0.84},
    {"label": "tanh-sgd", "activation": "tanh", "optimizer": "sgd", "images_to_threshold": 9000.0,
     "best_test_acc": 0.86},
    {"label": "relu-adam", "images_to_threshold": 3000.0, "best_test_acc": 0.9},
    {"label": "relu-adam", "images_to_threshold": 4000.0, "best_test_acc": 0.91},
    {"label": "unfinished", "images_to_threshold": math.nan, "best_test_acc": 0.95, "finished": False,
     "status": "running"},
]).assign(final_test_acc=0.5)


def test_threshold_misses_rank_by_how_close_they_came():
    table = rank_configurations(MISSES, "images_to_threshold")
    assert table[["config", "reached", "best_test_acc"]].astype(object).values.tolist()[:4] == [
        ["relu-adam", 2, pytest.approx(0.905)], ["tanh-sgd", 1, pytest.approx(0.85)],
        ["sigmoid-adam", 0, pytest.approx(0.785)], ["sigmoid-sgd", 0, pytest.approx(0.105)]]
    assert table["config"].tolist()[4:] == ["unfinished"]  # no finished seed: nothing to say how close


def test_threshold_misses_by_a_factor_rank_by_how_close_they_came():
    trials = MISSES.assign(activation=["sigmoid"] * 2 + ["tanh"] * 2 + ["relu"] * 5)  # sigmoid: the sgd seeds
    table = factor_effects(trials, "images_to_threshold", ["activation"])
    assert table[["activation", "reached", "n", "best_test_acc"]].values.tolist() == [
        ["relu", 3, 4, pytest.approx((0.84 + 0.86 + 0.9 + 0.91) / 4)],
        ["tanh", 0, 2, pytest.approx(0.785)], ["sigmoid", 0, 2, pytest.approx(0.105)]]
    table = factor_effects(MISSES, "images_to_threshold", ["optimizer"])
    assert table[["optimizer", "reached", "n"]].values.tolist() == [["adam", 2, 4], ["sgd", 1, 4]]


def test_formats():
    table = rank_configurations(SAMPLE, "final_test_acc")
    md = format_report(human_view(table), "markdown").splitlines()
    assert md[0].startswith("| rank | config | activation |") and md[1].startswith("|---|---|")
    assert md[2].startswith("| 1 | b | relu | default | adam | 0.001 | 1 | 0.9500 | - | - |")
    assert pd.read_csv(io.StringIO(format_report(table, "csv")))["config"].tolist() == ["b", "a", "d", "c"]
    text = format_report(table, "json")
    assert text.endswith("]\n")
    records = json.loads(text)
    assert records[3]["config"] == "c" and records[3]["final_test_acc_mean"] is None and records[3]["n"] == 0
    assert format_report(table, "csv").splitlines()[1].startswith("1,b,relu,default,adam,0.001,1,0.95,,,")
    # Ranges as their two ends, integers; the gain as written (1, not 1.0) beside the number it used.
    assert {k: records[1][k] for k in ("config", "best_epoch_min", "best_epoch_max", "epochs_min", "epochs_max",
                                       "gain", "gain_value", "error")} == {
        "config": "a", "best_epoch_min": 1, "best_epoch_max": 1, "epochs_min": 3, "epochs_max": 3, "gain": 1,
        "gain_value": 1.0, "error": ""}
    assert isinstance(records[1]["gain"], int) and isinstance(records[1]["gain_value"], float)


def test_the_terminal_view_leaves_out_what_says_nothing_and_prints_counts_as_integers():
    single = human_view(rank_configurations(SAMPLE[SAMPLE["label"] != "a"], "final_test_acc"))
    assert default_columns(single, "final_test_acc") == ["rank", "activation", "init", "optimizer", "lr", "n",
                                                         "final_test_acc_mean", "epochs", "status"]
    seeds = human_view(rank_configurations(SAMPLE.assign(gain=["auto", "auto", 1, 1, 1]), "final_test_acc"))
    assert default_columns(seeds, "final_test_acc") == [
        "rank", "activation", "init", "gain", "optimizer", "lr", "n", "final_test_acc_mean", "final_test_acc_std",
        "final_test_acc_ci95", "epochs", "status"]
    assert format_report(single, "table", default_columns(single, "final_test_acc"), width=100) == (
        "rank  activation  init     optimizer     lr  n    mean  epochs  status\n"
        "   1  relu        default  adam       0.001  1  0.9500  3       completed\n"
        "   2  relu        default  adam       0.001  1  0.1000  3       completed\n"
        "   3  relu        default  adam       0.001  0       -  0       running\n"
        "(11 more columns: --wide shows all, --columns NAME,... picks)\n")


def test_the_terminal_table_fits_its_width_cutting_text_and_dropping_the_least_important():
    table = pd.DataFrame({"rank": [1, 2], "flags": ["chance@1 (2/2), dead fc1@1 (2/2)", ""], "n": [2, 2]})
    assert format_report(table, "table", width=22) == (
        "rank  flags          n\n"
        "   1  chance@1 (2/…  2\n"
        "   2                 2\n"
        "(text cut to fit)\n")  # the longest note that fits
    assert format_report(table, "table", width=12) == (  # flags matter less than n
        "rank  n\n"
        "   1  2\n"
        "   2  2\n"
        "(1 more column)\n")
    assert format_report(table, "table", width=40).splitlines()[-1] == "(text cut to fit: --wide shows all)"
    assert format_report(table, "table").splitlines()[1] == "   1  chance@1 (2/2), dead fc1@1 (2/2)  2"


def test_trial_table_lists_unfinished_trials_after_finished_ones_with_dashes_for_nothing():
    table = trial_table(SAMPLE.assign(best_epoch=[1.0, 2.0, 3.0, math.nan, 1.0]), "final_test_acc")
    assert table["trial"].tolist() == ["b-s0", "a-s1", "a-s0", "d-s0", "c-s0"]
    columns = ["rank", "trial", "seed", "final_test_acc", "best_test_acc", "best_epoch", "final_test_loss", "epochs",
               "status", "error"]
    text = format_report(human_view(table), "table", columns).splitlines()
    assert text[5].split() == ["5", "c-s0", "0", "-", "0.5000", "-", "-", "0", "running"]  # no error: ''
    assert table["error"].tolist() == [""] * 5
    assert text[1].split()[5] == "3"  # best_epoch, an integer


def test_ci95_uses_student_t():
    assert ci95(pd.Series([0.8, 0.85, 0.9])) == pytest.approx(4.3026527 * 0.05 / math.sqrt(3))
    assert math.isnan(ci95(pd.Series([0.8])))
    table = rank_configurations(SAMPLE, "final_test_acc").set_index("config")
    assert table.loc["a", "final_test_acc_ci95"] == pytest.approx(12.7062047 * 0.0707107 / math.sqrt(2), rel=1e-5)


@pytest.mark.parametrize("df, expected", [(1, 12.706), (2, 4.303), (3, 3.182), (5, 2.571), (10, 2.228),
                                          (30, 2.042), (31, 2.040), (40, 2.021), (60, 2.000), (120, 1.980),
                                          (1000, 1.962)])
def test_t95_is_the_student_t_quantile_for_every_n(df, expected):
    assert round(t95(df + 1), 3) == expected
    assert round(t_quantile(0.975, df), 3) == expected


def test_t_quantile_is_exact_and_falls_towards_the_normal_one():
    assert t_quantile(0.975, 1) == pytest.approx(12.7062047361747, rel=1e-12)  # tan(0.475 pi)
    assert t_quantile(0.975, 2) == pytest.approx(4.30265272974946, rel=1e-12)
    assert t_quantile(0.975, 31) == pytest.approx(2.03951344639641, rel=1e-10)
    assert t_quantile(0.995, 10) == pytest.approx(3.16927267261695, rel=1e-10)
    assert t_quantile(0.5, 7) == 0.0
    values = [t95(n) for n in range(2, 400)] + [t95(n) for n in (1000, 10_000, 100_000)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert 1.959963984540054 < values[-1] < 1.95999  # the normal quantile, from above


def test_factor_effects_pool_finished_trials():
    trials = results([
        {"label": "a", "activation": "relu", "init": "default", "final_test_acc": 0.8},
        {"label": "b", "activation": "relu", "init": "xavier", "final_test_acc": 0.9},
        {"label": "c", "activation": "tanh", "init": "default", "final_test_acc": 0.6},
        {"label": "d", "activation": "tanh", "init": "xavier", "final_test_acc": 0.7, "finished": False},
    ])
    table = factor_effects(trials, "final_test_acc", ["activation"])
    assert table["activation"].tolist() == ["relu", "tanh"]
    assert table["final_test_acc_mean"].tolist() == pytest.approx([0.85, 0.6])
    assert table["n"].tolist() == [2, 1]
    matrix = factor_matrix(trials, "final_test_acc", ["activation", "init"])
    assert (matrix.index.name, matrix.columns.name, matrix.columns.tolist()) == ("activation", "init",
                                                                              ["default", "xavier"])
    assert matrix.loc["relu"].tolist() == pytest.approx([0.8, 0.9])
    assert math.isnan(matrix.loc["tanh", "xavier"])
    # One row per pair, with n and the interval: what csv and json write.
    pairs = factor_effects(trials, "final_test_acc", ["activation", "init"])
    assert pairs[["activation", "init", "final_test_acc_mean", "n"]].values.tolist() == [
        ["relu", "xavier", 0.9, 1], ["relu", "default", 0.8, 1], ["tanh", "default", 0.6, 1]]


def test_filter_trials_compares_numbers_as_numbers_and_gain_as_written():
    trials = SAMPLE.assign(gain=["auto", "auto", 1, 2.5, 1])
    assert filter_trials(trials, [("lr", "1e-3")])["label"].tolist() == ["a", "a", "b", "c", "d"]
    assert filter_trials(trials, [("status", "running")])["label"].tolist() == ["c"]
    assert filter_trials(trials, [("status", "failed")]).empty  # a status no trial has: nothing failed
    assert filter_trials(trials, [("gain", "auto")])["label"].tolist() == ["a", "a"]
    assert filter_trials(trials, [("gain", "1.0")])["label"].tolist() == ["b", "d"]
    assert filter_trials(trials, [("status", "running"), ("lr", "0.001")])["label"].tolist() == ["c"]


@pytest.mark.parametrize("where, message", [
    (("lr", "abc"), "--where lr=abc: 'abc' is not a number; lr in this sweep: 0.001"),
    (("lr", "0.1"), "--where lr=0.1: no trial has lr '0.1'; lr in this sweep: 0.001"),
    (("gain", "autoo"), "--where gain=autoo: 'autoo' is not a number or auto; gain in this sweep: 1"),
    (("activation", "rel"), "--where activation=rel: no trial has activation 'rel'; activation in this sweep: "
                            "relu; did you mean 'relu'?"),
    (("status", "complete"), "--where status=complete: 'complete' is not a status; allowed: pending, running, "
                             "completed, failed, diverged, interrupted, stopped, waiting, unfinished; did you mean "
                             "'completed'?"),
])
def test_filter_trials_refuses_values_no_trial_has(where, message):
    with pytest.raises(ReportError) as error:
        filter_trials(SAMPLE, [where])
    assert str(error.value) == message


def test_columns_by_name_or_as_shown():
    table = rank_configurations(SAMPLE, "final_test_acc")
    assert resolve_columns(human_view(table), "config,mean,final_test_acc_std,n,epochs") == [
        "config", "final_test_acc_mean", "final_test_acc_std", "n", "epochs"]
    # In the typed table (csv, json) a range's name picks its two ends.
    assert resolve_columns(table, "config,mean,epochs") == ["config", "final_test_acc_mean", "epochs_min",
                                                            "epochs_max"]
    with pytest.raises(ReportError) as error:
        resolve_columns(human_view(table), "config,stdd")
    assert str(error.value) == (
        "--columns: no column 'stdd' in this table; allowed: rank, config, activation, init, optimizer, lr, n, "
        "final_test_acc_mean, final_test_acc_std, final_test_acc_ci95, best_test_acc, final_train_loss, "
        "final_test_loss, train_seconds, best_epoch, epochs, status, error, gain, gain_value, mean, std, ci95; "
        "did you mean 'std'?")
