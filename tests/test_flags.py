"""Pathology flags on hand-made frames with known answers."""
import math

import pandas as pd
import pytest

from reference import compute_flags
from sweep.db.flags import FlagThresholds, describe_flags

TRIALS = pd.DataFrame([
    {"trial_id": 1, "name": "A", "label": "a", "status": "completed", "epochs_done": 3},
    {"trial_id": 2, "name": "B", "label": "b", "status": "completed", "epochs_done": 3},
    {"trial_id": 3, "name": "C", "label": "c", "status": "completed", "epochs_done": 3},
    {"trial_id": 4, "name": "D", "label": "d", "status": "diverged", "epochs_done": 2},
])


def _epochs():
    accs = {1: [0.1, 0.1, 0.8, 0.85], 2: [0.1, 0.7, 0.8, 0.9], 3: [0.1, 0.5, 0.11, 0.105], 4: [0.1, 0.3]}
    return pd.DataFrame([{"trial_id": t, "trial": "ABCD"[t - 1], "label": "abcd"[t - 1], "epoch": e, "test_acc": a}
                         for t, values in accs.items() for e, a in enumerate(values)])


def _stats():
    rows = []
    ident = iter(range(1, 10_000))

    def add(trial_id, epoch, step, kind, layer, std=1.0, sat=None, dead=0.0):
        rows.append({"trial_id": trial_id, "trial": "ABCD"[trial_id - 1], "label": "abcd"[trial_id - 1],
                     "layer_stat_id": next(ident), "epoch": epoch, "step": step, "layer": layer, "kind": kind,
                     "std": std, "sat_frac": sat, "dead_frac": dead if kind == "activation" else None})

    # A (tanh-like): an early snapshot of epoch 1 looks saturated in conv1, but the epoch's
    # last snapshot (which stands for it) has fc1 saturated; gradients vanish towards the input.
    add(1, 1, 50, "activation", "conv1", sat=0.9)
    add(1, 1, 100, "activation", "conv1", sat=0.3)
    add(1, 1, 100, "activation", "fc1", sat=0.6)
    add(1, 1, 100, "gradient", "conv1", std=1e-5)
    add(1, 1, 100, "gradient", "fc3", std=1e-2)
    # B (relu-like): fc2 dies in epoch 2; gradients balanced.
    for epoch, dead in ((1, 0.1), (2, 0.7), (3, 0.8)):
        add(2, epoch, epoch * 100, "activation", "conv1", dead=0.0)
        add(2, epoch, epoch * 100, "activation", "fc2", dead=dead)
        add(2, epoch, epoch * 100, "gradient", "conv1", std=0.5)
        add(2, epoch, epoch * 100, "gradient", "fc3", std=0.5)
    # C: gradients explode towards the input from epoch 3.
    add(3, 1, 100, "gradient", "conv1", std=1.0)
    add(3, 1, 100, "gradient", "fc3", std=1.0)
    add(3, 3, 300, "gradient", "conv1", std=1000.0)
    add(3, 3, 300, "gradient", "fc3", std=1.0)
    return pd.DataFrame(rows)


def test_each_flag_with_its_layer_epoch_and_value():
    flags = compute_flags(TRIALS, _epochs(), _stats())
    got = {(r.trial, r.flag): (r.layer, r.epoch, r.value) for r in flags.itertuples()}
    assert set(got) == {("A", "saturated"), ("A", "vanishing"), ("B", "dead"), ("C", "exploding"),
                        ("C", "chance"), ("D", "diverged")}
    assert got[("A", "saturated")] == ("fc1", 1, 0.6)
    assert got[("A", "vanishing")][:2] == ("conv1", 1) and got[("A", "vanishing")][2] == pytest.approx(1e-3)
    assert got[("B", "dead")] == ("fc2", 2, 0.7)
    assert got[("C", "exploding")] == ("conv1", 3, 1000.0)
    assert got[("C", "chance")] == (None, 2, 0.11)  # back at chance from epoch 2 to the end
    assert got[("D", "diverged")][:2] == (None, 2) and math.isnan(got[("D", "diverged")][2])


def test_thresholds_change_the_verdicts():
    strict = FlagThresholds(saturated=0.95, dead=0.75, vanishing=1e-4, exploding=1e4, chance_margin=0.001)
    flags = compute_flags(TRIALS, _epochs(), _stats(), strict)
    assert {(r.trial, r.flag, r.epoch) for r in flags.itertuples()} == {("B", "dead", 3), ("D", "diverged", 2)}


def test_describe_flags():
    flags = compute_flags(TRIALS, _epochs(), _stats())
    assert describe_flags(flags[flags["trial"] == "A"]) == "saturated fc1@1, vanishing conv1@1"
    assert describe_flags(flags[flags["trial"] == "C"]) == "chance@2, exploding conv1@3"
    assert describe_flags(flags[flags["trial"] == "Z"]) == ""


def test_describe_flags_of_several_seeds_counts_each_flag_once():
    flags = pd.DataFrame([
        {"trial": "s0", "flag": "chance", "layer": None, "epoch": 1},
        {"trial": "s0", "flag": "dead", "layer": "fc1", "epoch": 1},
        {"trial": "s1", "flag": "dead", "layer": "fc1", "epoch": 1},
        {"trial": "s1", "flag": "chance", "layer": None, "epoch": 2},
        {"trial": "s2", "flag": "dead", "layer": "fc2", "epoch": 3},
    ])
    assert describe_flags(flags[flags["trial"] != "s2"], trials=2) == "chance@1 (2/2), dead fc1@1 (2/2)"
    assert describe_flags(flags, trials=3) == "chance@1 (2/3), dead fc1@1 (2/3), dead fc2@3 (1/3)"
    assert describe_flags(flags[flags["trial"] == "s1"]) == "dead fc1@1, chance@2"


# ---------------------------------------------------------------- the database's flags, held to compute_flags

from sweep.db.engine import init_db, make_engine, session_scope  # noqa: E402
from sweep.db.flags import flags_frame  # noqa: E402
from sweep.db.queries import (ensure_sweep, ensure_trials, epoch_metrics_frame, layer_stats_frame,  # noqa: E402
                        record_results, trials_frame, update_trial)

THRESHOLD_SETS = [FlagThresholds(), FlagThresholds(saturated=0.95, dead=0.75, vanishing=1e-4, exploding=1e4,
                                                   chance_margin=0.001),
                  FlagThresholds(saturated=0.2, dead=0.05, vanishing=0.9, exploding=1.5, chance_margin=0.2)]


def reference(engine, sweep, thresholds):
    """Today's flags: compute_flags on every row of the sweep, loaded into pandas."""
    return compute_flags(trials_frame(engine, sweep), epoch_metrics_frame(engine, sweep),
                         layer_stats_frame(engine, sweep), thresholds)


@pytest.fixture
def hand_db(db_url):
    """TRIALS, _epochs() and _stats() written through db/ as the recorder writes them: each epoch with its
    statistics."""
    engine = make_engine(db_url)
    init_db(engine)
    stats = _stats()
    with session_scope(engine) as s:
        ids = ensure_trials(s, ensure_sweep(s, "hand", "{}"), [
            {"config_hash": r.name, "name": r.name, "label": r.label, "model": "lenet", "activation": "tanh",
             "init": "default", "gain": 1.0, "optimizer": "sgd", "lr": 0.1, "optimizer_params_json": "{}",
             "seed": 0, "config_json": "{}", "logdir": "/tmp/x"} for r in TRIALS.itertuples()])
        for r in TRIALS.itertuples():
            update_trial(s, ids[r.name], status=r.status, epochs_done=r.epochs_done)
        layer_rows = stats.drop(columns=["trial_id", "label", "layer_stat_id"]).to_dict("records")
        for r in _epochs().itertuples():
            mine = [{k: (None if v != v else v) for k, v in row.items() if k != "trial"} for row in layer_rows
                    if row["trial"] == r.trial and row["epoch"] == r.epoch]
            record_results(s, [(ids[r.trial], {"epoch": r.epoch, "images_seen": 100 * r.epoch, "test_acc": r.test_acc},
                                mine)])
    yield engine
    engine.dispose()


@pytest.mark.parametrize("thresholds", THRESHOLD_SETS)
def test_the_databases_flags_are_compute_flags(hand_db, thresholds):
    got = flags_frame(hand_db, "hand", thresholds)
    pd.testing.assert_frame_equal(got, reference(hand_db, "hand", thresholds))
    pd.testing.assert_frame_equal(got, compute_flags(TRIALS, _epochs(), _stats(), thresholds))


def test_the_databases_flags_with_exact_values(hand_db):
    got = {(r.trial, r.flag): (r.layer, r.epoch, r.value) for r in flags_frame(hand_db, "hand").itertuples()}
    assert got[("A", "saturated")] == ("fc1", 1, 0.6)  # the epoch's last snapshot, not its earlier one
    assert got[("A", "vanishing")] == ("conv1", 1, 1e-5 / 1e-2)
    assert got[("B", "dead")] == ("fc2", 2, 0.7)
    assert got[("C", "exploding")] == ("conv1", 3, 1000.0)
    assert got[("C", "chance")] == (None, 2, 0.11)
    assert got[("D", "diverged")][:2] == (None, 2) and math.isnan(got[("D", "diverged")][2])
    assert len(got) == 6


@pytest.mark.parametrize("thresholds", THRESHOLD_SETS)
def test_flags_of_a_recorded_sweep_are_compute_flags(recorded_db, thresholds):
    engine = make_engine(f"sqlite:///{recorded_db / 'sweep.db'}")
    got = flags_frame(engine, "rec", thresholds)
    pd.testing.assert_frame_equal(got, reference(engine, "rec", thresholds))
    if thresholds == THRESHOLD_SETS[2]:  # lax thresholds: every kind of layer flag fires somewhere
        assert {"saturated", "dead", "vanishing", "exploding"} <= set(got["flag"])
