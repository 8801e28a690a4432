"""A trial's status has one home (sweep/status.py): one type, one rule for "finished" that resume, the report and
the progress line share, and one ledger of a run's trials that the recorder and the progress line read."""
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from sweep.spec.grid import expand_grid
from sweep.run.ledger import Ledger
from sweep.run.records import SweepState
from sweep.run.runner import make_plan
from sweep.spec.spec import parse_spec
from sweep.status import STORED, Status, TrialReport, finished, stopped_early

# (status, epochs done) -> finished for a sweep of 3 epochs, stopped early
CASES = [(("completed", 3), True, False), (("completed", 2), False, False), (("diverged", 1), True, False),
         (("stopped", 1), False, True), (("stopped", 3), True, False), (("failed", 3), True, False),
         (("failed", 2), False, False), (("interrupted", 2), False, False), (("running", 3), True, False),
         (("pending", 0), False, False), (("released", 1), False, False)]


def test_finished_and_stopped_early_for_one_trial_and_elementwise_alike():
    for (status, done), want_finished, want_stopped in CASES:
        assert (bool(finished(Status(status), done, 3)), bool(stopped_early(Status(status), done, 3))) == (
            want_finished, want_stopped), status
    frame = pd.DataFrame([case[0] for case in CASES], columns=["status", "epochs"])  # as the report reads them
    assert finished(frame["status"], frame["epochs"], 3).tolist() == [case[1] for case in CASES]
    assert stopped_early(frame["status"], frame["epochs"], 3).tolist() == [case[2] for case in CASES]


def test_a_run_skips_the_finished_and_the_stopped_unless_asked_to_resume_them():
    spec = parse_spec({"name": "s", "dataset": "synthetic", "epochs": 3, "grid": {
        "activation": ["relu", "tanh", "elu", "gelu", "sigmoid", "softsign"],
        "optimizer": [{"name": "adam", "lr": 0.01}]}})
    trials = expand_grid(spec)
    stored = [("completed", 3), ("diverged", 1), ("stopped", 1), ("released", 1), ("failed", 2)]
    state = SweepState("test", None, {t.config_hash: (Status(s), d) for t, (s, d) in zip(trials, stored)})
    plan = make_plan(spec, state, False, None, 15.0, False)
    assert [t.activation for t in plan.todo] == ["gelu", "sigmoid", "softsign"]  # released, failed, new
    assert (plan.starts, plan.exempt) == ({trials[3].config_hash: 1, trials[4].config_hash: 2,
                                           trials[5].config_hash: 0}, frozenset())
    plan = make_plan(spec, state, True, None, 15.0, False)
    assert [t.activation for t in plan.todo] == ["elu", "gelu", "sigmoid", "softsign"]
    assert plan.exempt == {trials[2].config_hash}  # resumed after its stop: judged by no rule


def ray_trial(*cfgs, failures=0):
    return SimpleNamespace(trial_id=cfgs[0].name, config={"bundle": [c.to_dict() for c in cfgs]},
                           run_metadata=SimpleNamespace(num_failures=failures), error_file=None)


def report(cfg, epoch, status="running", resumed_from=None):
    return TrialReport(config_hash=cfg.config_hash, epoch=epoch, images_seen=0, train_loss=None, test_loss=1.0,
                       test_acc=0.5, epoch_seconds=0.0, train_seconds=0.0, run_seconds=0.0, best_test_acc=None,
                       best_epoch=None, layer_stats=[], status=Status(status), device="cpu",
                       resumed_from=resumed_from).as_dict()


def test_the_ledger_says_what_each_event_changed():
    from sweep.run.recorder import Failures

    a, b, c, d = expand_grid(parse_spec({"name": "l", "dataset": "synthetic", "epochs": 3, "grid": {
        "activation": ["relu", "tanh", "elu", "gelu"], "optimizer": [{"name": "adam", "lr": 0.01}]}}))
    ledger = Ledger({a.config_hash: 0, b.config_hash: 0, c.config_hash: 1, d.config_hash: 0},
                    Failures("/nonexistent", max_failures=1))
    bundle = ray_trial(a, b)
    ledger.on_trial_start(0, [], bundle)
    assert ledger.changed == {a.config_hash: "running", b.config_hash: "running"}
    ledger.on_trial_result(0, [], bundle, report(a, 2, "diverged"))
    assert ledger.changed == {a.config_hash: "diverged"}
    ledger.on_trial_result(0, [], bundle, report(b, 3))
    assert ledger.changed == {}
    ledger.on_trial_complete(0, [], bundle)  # the bundle's end: b completes, a stays diverged
    assert ledger.changed == {b.config_hash: "completed"}
    ledger.on_trial_start(0, [], ray_trial(c))
    ledger.on_trial_result(0, [], ray_trial(c), report(c, 1, resumed_from=1))
    ledger.on_trial_result(0, [], ray_trial(c), report(c, 2, resumed_from=1))
    ledger.on_trial_recover(0, [], ray_trial(c, failures=1))  # 1 failure of 2 allowed: it waits for its retry
    assert ledger.changed == {c.config_hash: "retrying"}
    assert ledger.trained() == 2 + 3 + 1  # a's 2, b's 3, c's 1 (it started at epoch 1)
    assert ledger.counts()[Status.RETRYING] == 1 and ledger.counts()[Status.PENDING] == 1
    assert ledger.end_run() == {c.config_hash: "interrupted", d.config_hash: "pending"}
    assert [ledger.status(t.config_hash) for t in (a, b, c, d)] == ["diverged", "completed", "interrupted", "pending"]


def test_the_statuses_are_spelled_in_the_status_module_only():
    """No other module of sweep/ writes a status as a string literal: `"stopped"`, `'diverged'`, ..."""
    root = Path(__file__).resolve().parent.parent / "sweep"
    spelled = re.compile("[\"'](" + "|".join(s.value for s in Status) + ")[\"']")
    found = [f"{path.relative_to(root)}:{n}: {line.strip()}" for path in sorted(root.rglob("*.py"))
             if path.name != "status.py" for n, line in enumerate(path.read_text().splitlines(), 1)
             if spelled.search(line)]
    assert found == []
    assert [s.value for s in STORED] == ["pending", "running", "completed", "failed", "diverged", "interrupted",
                                        "stopped", "waiting"]
