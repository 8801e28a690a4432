"""Stop rules and ASHA (sweep/run/stopping.py): decisions on hand-made results, then real trials, fused and not."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from sweep.data.datasets import Arrays, synthetic
from sweep.spec.grid import expand_grid
from sweep.spec.spec import SpecError, parse_spec
from sweep.run.stopping import AshaSpec, Rungs, StopRule, StopSpec, Stopper, first_stop, rule_reason, rung_epochs
from sweep.run.trial import run_bundle, run_trial

_d = synthetic(512, 400)
_balanced = np.concatenate([np.flatnonzero(_d.test_y == c)[:20] for c in range(10)])
# 20 test images per class: a network that answers one class for every image scores exactly 0.1.
DATA = Arrays(_d.train_x, _d.train_y, _d.test_x[_balanced], _d.test_y[_balanced])


def spec_of(tmp_path, activations, optimizers, stop, epochs=4, **extra):
    return parse_spec({"name": "st", "dataset": "synthetic", "epochs": epochs, "batch_size": 32, "stats_every": 8,
                       "output": str(tmp_path), "stop": stop, **extra,
                       "grid": {"activation": activations, "init": ["xavier_uniform"], "optimizer": optimizers}})


def h(*rows):
    """A history: one dict of measures per epoch from 1."""
    return [{"epoch": e, **row} for e, row in enumerate(rows, 1)]


# --------------------------------------------------------------------------- decisions on hand-made results

def test_each_rule_fires_when_its_streak_reaches_its_patience():
    chance = StopRule("chance", 0.02, 2)
    assert rule_reason([chance], h({"test_acc": 0.1})) is None
    assert rule_reason([chance], h({"test_acc": 0.1}, {"test_acc": 0.119})) == "stopped@2 chance"
    assert rule_reason([chance], h({"test_acc": 0.1}, {"test_acc": 0.13}, {"test_acc": 0.09})) is None
    assert rule_reason([chance], h({"test_acc": 0.5}, {"test_acc": 0.085}, {"test_acc": 0.1})) == "stopped@3 chance"
    dead = StopRule("dead", 0.9, 3)
    rows = h({"max_dead_frac": 0.95}, {"max_dead_frac": 0.91}, {"max_dead_frac": 0.9}, {"max_dead_frac": 0.99},
             {"max_dead_frac": 0.93}, {"max_dead_frac": 0.97})
    assert [rule_reason([dead], rows[:e]) for e in range(1, 7)] == [None] * 5 + ["stopped@6 dead"]
    saturated = StopRule("saturated", 0.5, 1)
    assert rule_reason([saturated], h({"max_sat_frac": None}, {"max_sat_frac": 0.51})) == "stopped@2 saturated"
    vanishing = StopRule("vanishing", 1e-4, 2)
    assert rule_reason([vanishing], h({"grad_std_ratio": 5e-5}, {"grad_std_ratio": float("nan")})) is None
    assert rule_reason([vanishing], h({"grad_std_ratio": 5e-5}, {"grad_std_ratio": 9e-5})) == "stopped@2 vanishing"
    exploding = StopRule("exploding", 100.0, 1)
    assert rule_reason([exploding], h({"grad_std_ratio": 100.0})) is None
    assert rule_reason([exploding], h({"grad_std_ratio": 101.0})) == "stopped@1 exploding"
    # Several rules: the first in the spec's order that fires names the reason.
    both = h({"test_acc": 0.1, "max_dead_frac": 0.99})
    assert rule_reason([StopRule("dead", 0.9, 1), StopRule("chance", 0.02, 1)], both) == "stopped@1 dead"
    assert first_stop([chance], h({"test_acc": 0.1}, {"test_acc": 0.1}, {"test_acc": 0.1})) == "stopped@2 chance"


def test_asha_rungs_and_decisions_on_a_hand_made_sequence():
    """Ray's rule (tests/test_asha_ray.py holds it to Ray's own code): the cutoff of the others' results."""
    assert rung_epochs(AshaSpec(1, 2), 10) == [1, 2, 4, 8]
    assert rung_epochs(AshaSpec(2, 3), 200) == [2, 6, 18, 54, 162]
    assert rung_epochs(AshaSpec(1, 1.5), 9) == [1, 2, 3, 4, 6, 8]  # milestones 1, 1.5, 2.25, 3.375, 5.06, 7.59
    assert rung_epochs(AshaSpec(2, 2), 4) == [2]  # never at the last epoch: nothing left to save

    def keeps(rungs, epoch, values):
        start = sum(len(r) for r in rungs.recorded.get(None, []))
        return [a["continued"] for a in rungs.judge(epoch, [(f"t{start + i}", v) for i, v in enumerate(values)])]

    rungs = Rungs(AshaSpec(1, 2), 10)
    assert keeps(rungs, 1, [0.5]) == [True]  # the first at a rung always continues
    assert keeps(rungs, 1, [0.4]) == [False]  # below the median of the others (0.5)
    assert keeps(rungs, 1, [0.6, 0.45]) == [True, False]  # 0.45 of (0.4 0.5); 0.475 of (0.4 0.5 0.6)
    assert keeps(rungs, 2, [0.3]) == [True]  # rungs are separate
    assert [sorted(r.values()) for r in rungs.recorded[None][:2]] == [[0.4, 0.45, 0.5, 0.6], [0.3]]
    thirds = Rungs(AshaSpec(1, 3), 10)  # the top third: the 2/3 quantile of the others
    # 0.8 against (0.2): 0.2; 0.5 against (0.2 0.8): 0.6; 0.7 against (0.2 0.5 0.8): 0.6.
    assert keeps(thirds, 1, [0.2, 0.8, 0.5, 0.7]) == [True, True, False, True]
    losses = Rungs(AshaSpec(1, 2), 10, higher_is_better=False)
    assert keeps(losses, 1, [2.0, 1.0, 3.0]) == [True, True, False]


def test_stopper_judges_rules_first_then_the_rung_never_after_the_last_epoch():
    stop = StopSpec((StopRule("chance", 0.02, 1),), AshaSpec(1, 2))
    seen = []

    def judge(epoch, entries):
        seen.append((epoch, entries))
        return [{"rung": 0, "continued": v > 0.5} for _, v in entries]

    stopper = Stopper(stop, "final_test_acc", epochs=3, judge=judge, order={"a": 2, "b": 1, "c": 0})
    histories = [h({"test_acc": 0.1}), h({"test_acc": 0.6}), h({"test_acc": 0.4})]
    results = [{"config_hash": "a", "test_acc": 0.1}, {"config_hash": "b", "test_acc": 0.6},
               {"config_hash": "c", "test_acc": 0.4}]
    stopped, judged = stopper.decide(1, histories, results)
    assert stopped == {0: "stopped@1 chance", 2: "stopped@1 asha"}
    assert judged == {1: {"rung": 0, "continued": True}, 2: {"rung": 0, "continued": False}}
    # A member a rule stopped never enters the rung; the others enter in the grid's order (c before b).
    assert seen == [(1, [("c", 0.4), ("b", 0.6)])]
    assert stopper.decide(3, histories, results) == ({}, {})
    assert len(seen) == 1


@pytest.mark.parametrize("stop, message", [
    ({"chanse": 2}, "stop.chanse: unknown key; allowed: chance, dead, saturated, vanishing, exploding, asha, halving; "
                    "did you mean 'chance'?"),
    ({"chance": 0}, "stop.chance: 0 must be >= 1"),
    ({"chance": "two"}, "stop.chance: 'two' is not a patience in epochs (an integer >= 1) or a mapping like "
                        "{margin: 0.02, epochs: 3}"),
    ({"dead": {"above": 1.5, "epochs": 3}}, "stop.dead.above: 1.5 must be below 1 (a share)"),
    ({"vanishing": {"below": 1e-4}}, "stop.vanishing.epochs: missing required key"),
    ({"asha": {"grace": 2, "reduction": 1}}, "stop.asha.reduction: 1.0 must be > 1 (the top 1/reduction continue)"),
    ({"asha": {"grace": 0}}, "stop.asha.grace: 0 must be >= 1"),
    ({"asha": {"grace": 4}}, "stop.asha.grace: 4 must be below epochs (4): no rung comes before the last"),
])
def test_bad_stop_values_are_one_line(tmp_path, stop, message):
    with pytest.raises(SpecError) as err:
        spec_of(tmp_path, ["relu"], [{"name": "sgd", "lr": 0.1}], stop)
    assert str(err.value) == message


def test_stop_spec_round_trips_through_its_dict():
    spec = spec_of(None, ["relu"], [{"name": "sgd", "lr": 0.1}],
                   {"chance": 2, "vanishing": {"below": 1e-4, "epochs": 3}, "asha": {"grace": 2}})
    assert spec.stop == StopSpec((StopRule("chance", 0.02, 2), StopRule("vanishing", 1e-4, 3)), AshaSpec(2, 3.0))
    assert parse_spec({**_raw(spec), "stop": spec.stop.to_dict()}).stop == spec.stop
    assert spec_of(None, ["relu"], [{"name": "sgd", "lr": 0.1}], None).stop == StopSpec()


def _raw(spec):
    return {"name": spec.name, "grid": {"activation": ["relu"], "init": ["xavier_uniform"],
                                        "optimizer": [{"name": "sgd", "lr": 0.1}]}}


# --------------------------------------------------------------------------- real trials

SIGMOID_SGD = {"name": "sgd", "lr": 0.001}
ADAM = {"name": "adam", "lr": 0.01}


def by_trial(reports):
    out = {}
    for r in reports:
        out.setdefault(r["config_hash"], []).append(r)
    return out


def test_chance_stops_sigmoid_with_sgd_at_its_patience_and_relu_with_adam_learns(tmp_path):
    spec = spec_of(tmp_path, ["sigmoid", "relu"], [SIGMOID_SGD, ADAM], {"chance": 2})
    trials = expand_grid(spec)
    reports = []
    run_bundle(trials, DATA, reports.append, tensorboard=False, stopper=Stopper(spec.stop, spec.metric, spec.epochs))
    got = {t.name: by_trial(reports)[t.config_hash] for t in trials}
    sig = got["sigmoid-xavier_uniform-sgd-lr0.001-s0"]
    tenth = float(np.float32(20 / 200))  # 20 right of 200, in float32
    assert [(r["epoch"], r["test_acc"], r["status"]) for r in sig] == [
        (0, tenth, "running"), (1, tenth, "running"), (2, tenth, "stopped")]
    assert sig[-1]["reason"] == "stopped@2 chance"
    relu = got["relu-xavier_uniform-adam-lr0.01-s0"]
    assert [r["epoch"] for r in relu] == [0, 1, 2, 3, 4] and relu[-1]["status"] == "running"
    assert relu[-1]["test_acc"] > 0.9
    # Every trial of the bundle that stopped, stopped where the rule says, judged on its own figures.
    for name, rs in got.items():
        accs = [r["test_acc"] for r in rs[1:]]
        near = [abs(a - 0.1) <= 0.02 for a in accs]
        expected = next((e for e in range(2, 5) if near[e - 2] and near[e - 1] and e < 4), None)
        assert (rs[-1]["status"] == "stopped") == (expected is not None), name
        if expected is not None:
            assert rs[-1]["epoch"] == expected and rs[-1]["reason"] == f"stopped@{expected} chance"


def test_fused_and_unfused_stop_the_same_trials_at_the_same_epochs(tmp_path):
    """ASHA and a rule together: a bundle of four against the four trials one after another (the order a
    1-at-a-time sweep runs them), each with one rung store for the sweep."""
    stop = {"chance": 2, "asha": {"grace": 1, "reduction": 2}}
    spec = spec_of(tmp_path / "fused", ["sigmoid", "tanh"], [SIGMOID_SGD, ADAM], stop)
    fused = []
    run_bundle(expand_grid(spec), DATA, fused.append, tensorboard=False,
               stopper=Stopper(spec.stop, spec.metric, spec.epochs))
    spec1 = spec_of(tmp_path / "alone", ["sigmoid", "tanh"], [SIGMOID_SGD, ADAM], stop)
    alone = []
    stopper = Stopper(spec1.stop, spec1.metric, spec1.epochs)  # one rung store, as one sweep has
    for t in expand_grid(spec1):
        run_trial(t, DATA, alone.append, tensorboard=False, stopper=stopper)

    def ends(reports):
        return {h_: (rs[-1]["epoch"], rs[-1]["status"], rs[-1]["reason"]) for h_, rs in by_trial(reports).items()}

    assert ends(fused) == ends(alone)
    names = {t.config_hash: t.name for t in expand_grid(spec)}
    assert {names[k]: v for k, v in ends(fused).items()} == {
        # At rung 1 (epoch 1) the four arrive in grid order: 0.1 (first: kept), 0.1 (the median of 0.1 and
        # 0.1: kept), tanh with SGD about 0.03 (below the median 0.1: stopped), tanh with Adam (kept). At
        # epoch 2 both sigmoids have been at chance two epochs in a row.
        "sigmoid-xavier_uniform-sgd-lr0.001-s0": (2, "stopped", "stopped@2 chance"),
        "sigmoid-xavier_uniform-adam-lr0.01-s0": (2, "stopped", "stopped@2 chance"),
        "tanh-xavier_uniform-sgd-lr0.001-s0": (1, "stopped", "stopped@1 asha"),
        "tanh-xavier_uniform-adam-lr0.01-s0": (4, "running", None),
    }
    for h_, rs in by_trial(fused).items():
        other = by_trial(alone)[h_]
        assert [r["epoch"] for r in rs] == [r["epoch"] for r in other]
        # Before training, on the same weights, the sums in another order: the loss of the 200 test examples
        # within EPS x (683 + 10 + 200) terms x 4 = 4.3e-4 (tests/rounding.py). Later epochs part by more than
        # float32 lets one derive; tests/test_bundle.py holds whole epochs alike in float64.
        assert rs[0]["test_loss"] == pytest.approx(other[0]["test_loss"],
                                                   rel=torch.finfo(torch.float32).eps * (683 + 10 + 200) * 4)


def test_a_stopped_trial_resumed_to_the_end_equals_one_never_stopped(tmp_path):
    spec = spec_of(tmp_path / "a", ["sigmoid"], [SIGMOID_SGD], {"chance": 1}, epochs=3)
    (t,) = expand_grid(spec)
    first = []
    run_trial(t, DATA, first.append, tensorboard=False, stopper=Stopper(spec.stop, spec.metric, spec.epochs))
    assert [(r["epoch"], r["status"]) for r in first] == [(0, "running"), (1, "stopped")]
    resumed = []
    run_trial(t, DATA, resumed.append, tensorboard=False)  # --resume-stopped: the rules off for it
    assert [r["epoch"] for r in resumed] == [1, 2, 3] and resumed[0]["status"] == "running"  # replay, then on
    whole = []
    run_trial(replace(t, logdir=str(tmp_path / "b" / t.name)), DATA, whole.append, tensorboard=False)
    assert [r["train_loss"] for r in resumed[1:]] == [r["train_loss"] for r in whole[2:]]
    assert [r["test_acc"] for r in resumed[1:]] == [r["test_acc"] for r in whole[2:]]


def test_a_rerun_keeps_a_stop_while_its_rule_still_holds_and_exempts_resumed_trials():
    from sweep.run.stopping import stays_stopped

    history = h({"test_acc": 0.1}, {"test_acc": 0.1}, {"test_acc": 0.5})
    same = StopSpec((StopRule("chance", 0.02, 2),))
    assert stays_stopped(same, "stopped@2 chance", history)
    assert not stays_stopped(StopSpec((StopRule("chance", 0.02, 3),)), "stopped@2 chance", history)  # patience up
    assert not stays_stopped(StopSpec((StopRule("chance", 0.001, 2),)), "stopped@2 chance",
                             h({"test_acc": 0.1}, {"test_acc": 0.105}))  # threshold tightened
    assert not stays_stopped(StopSpec(), "stopped@2 chance", history)  # rule removed
    assert stays_stopped(StopSpec((), AshaSpec(1, 2)), "stopped@1 asha", history)
    assert not stays_stopped(same, "stopped@1 asha", history)
    assert stays_stopped(same, "", history) and stays_stopped(StopSpec(), "stopped by hand", history)
    stopper = Stopper(StopSpec((StopRule("chance", 0.02, 1),), AshaSpec(1, 2)), "final_test_acc", 3,
                      exempt={"b"})
    results = [{"config_hash": "a", "test_acc": 0.1}, {"config_hash": "b", "test_acc": 0.1}]
    assert stopper.decide(1, [h({"test_acc": 0.1})] * 2, results) == ({0: "stopped@1 chance"}, {})


# --------------------------------------------------------------------------- whole sweeps through Ray

def test_sweeps_fused_and_not_stop_the_same_trials_and_a_rerun_keeps_or_resumes_them(tmp_path):
    """Through the CLI and Ray Tune: `fuse: off` one trial at a time and `fuse: 4` stop the same trials at the
    same epochs (the rung store an actor of the driver's); `sweep run` again leaves them stopped without
    starting Ray; `--resume-stopped` continues them to the end."""
    import sqlite3

    import yaml
    from test_end_to_end import sweep_cli

    base = {"dataset": {"name": "synthetic", "train_limit": 256, "test_limit": 200}, "epochs": 3,
            "batch_size": 32, "stats_every": 4, "output": "out",
            "grid": {"activation": ["sigmoid", "tanh"], "init": ["xavier_uniform"], "optimizer": [SIGMOID_SGD, ADAM]},
            "stop": {"chance": {"margin": 0.05, "epochs": 2}, "asha": {"grace": 1, "reduction": 2}}}
    for name, resources in (("off", {"fuse": "off", "max_concurrent": 1}), ("four", {"fuse": 4})):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**base, "name": name, "resources": resources}))
        run = sweep_cli("run", f"{name}.yaml", cwd=tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr
    db = sqlite3.connect(tmp_path / "out" / "sweep.db")

    def ends(sweep):
        return sorted(db.execute("SELECT t.label, t.status, t.epochs_done, t.error FROM trials t JOIN sweeps s "
                                 "USING (sweep_id) WHERE s.name = ?", (sweep,)).fetchall())

    assert ends("off") == ends("four")
    # Rung 1 in the start order (by config hash: sigmoid Adam, sigmoid SGD, tanh SGD, tanh Adam): sigmoid Adam
    # 0.115 (first: on), sigmoid SGD 0.125 (not below 0.115: on), tanh SGD 0.035 (below the others' median
    # 0.12: stopped), tanh Adam 1.0 (on); both sigmoid trials within 0.05 of chance two epochs in a row: chance.
    assert ends("four") == [("sigmoid-xavier_uniform-adam-lr0.01", "stopped", 2, "stopped@2 chance"),
                            ("sigmoid-xavier_uniform-sgd-lr0.001", "stopped", 2, "stopped@2 chance"),
                            ("tanh-xavier_uniform-adam-lr0.01", "completed", 3, None),
                            ("tanh-xavier_uniform-sgd-lr0.001", "stopped", 1, "stopped@1 asha")]
    stopped = [row for row in ends("off") if row[1] == "stopped"]
    assert stopped, ends("off")
    again = sweep_cli("run", "off.yaml", cwd=tmp_path)
    assert again.returncode == 0
    assert f"4 trials (4 already finished, {len(stopped)} of them stopped by a stop rule)" in again.stdout
    assert "done: nothing to run" in again.stdout
    resumed = sweep_cli("run", "off.yaml", "--resume-stopped", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert {row[1:3] for row in ends("off")} == {("completed", 3)}
    epochs = db.execute("SELECT t.label, count(*) FROM epoch_metrics e JOIN trials t USING (trial_id) JOIN sweeps s "
                        "USING (sweep_id) WHERE s.name = 'off' GROUP BY t.label").fetchall()
    assert {n for _, n in epochs} == {4}  # epochs 0-3, each once
