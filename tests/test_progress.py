"""The progress line counts what is true: the spec's metric in its direction, finished trials' final figures
(else a named best so far), running vs retrying vs pending, a time estimate from throughput only while
something is left to train, and one line per failed attempt."""
import io
import logging
import math
from types import SimpleNamespace

from sweep.spec.grid import expand_grid
from sweep.run.ledger import Ledger
from sweep.run.progress import Outlook, ProgressPrinter
from sweep.run.recorder import Failures, RayLog
from sweep.spec.spec import parse_spec

CONFIGS = expand_grid(parse_spec({"name": "p", "dataset": "synthetic", "epochs": 2, "grid": {
    "activation": ["relu", "tanh", "elu"], "optimizer": [{"name": "adam", "lr": 0.01}]}}))
RELU_NAME, TANH_NAME, ELU_NAME = (c.name for c in CONFIGS)


def ray_trial(cfg, failures: int = 0):
    """A Ray trial of one configuration, as the runner builds it (a one-member bundle), after `failures` failures."""
    return SimpleNamespace(trial_id=cfg.name, config={"bundle": [cfg.to_dict()]}, cfg=cfg,
                           run_metadata=SimpleNamespace(num_failures=failures), error_file=None)


RELU, TANH, ELU = (ray_trial(c) for c in CONFIGS)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def report(trial, epoch, test_acc=0.5, test_loss=1.0, status="running", resumed_from=None, reason=None):
    return {"epoch": epoch, "test_acc": test_acc, "best_test_acc": test_acc, "test_loss": test_loss,
            "train_loss": None if epoch == 0 else 1.0, "status": status, "reason": reason,
            "resumed_from": resumed_from, "config_hash": trial.cfg.config_hash, "images_seen": 64 * epoch,
            "epoch_seconds": 1.0, "train_seconds": 1.0 * epoch, "run_seconds": 1.0 * epoch, "best_epoch": epoch,
            "layer_stats": [], "device": "cpu", "kernels": "torch"}


class Fed:
    """The progress line with the run's ledger before it, as a run calls them (the ledger sees each event
    first, sweep/run/ledger.py)."""

    def __init__(self, ledger, printer):
        self.ledger, self.printer = ledger, printer

    def __getattr__(self, name):
        if not name.startswith("on_"):
            return getattr(self.printer, name)

        def event(*args, **kwargs):
            getattr(self.ledger, name)(*args, **kwargs)
            getattr(self.printer, name)(*args, **kwargs)
        return event


def printer_of(trials, epochs, failures=None, outlook=None, **kwargs):
    """A progress line over Ray trials `trials` of `epochs` epochs each, fed by its ledger."""
    ledger = Ledger.of([t.cfg for t in trials], failures)
    return Fed(ledger, ProgressPrinter(ledger, outlook or Outlook(epochs), failures=failures, **kwargs))


def started(printer, *trials):
    for trial in trials or (RELU, TANH):
        printer.on_trial_start(0, [], trial)
    return printer


def test_best_is_the_lowest_final_loss_of_a_finished_trial_and_ignores_diverged_epochs():
    printer = started(printer_of((RELU, TANH), 2, out=io.StringIO(), clock=Clock(), metric="final_test_loss"))
    printer.on_trial_result(0, [], RELU, report(RELU, 0, test_loss=0.01))  # before training: not a result
    assert printer.best() is None and printer.best_so_far() is None
    printer.on_trial_result(0, [], RELU, report(RELU, 1, test_loss=0.5))
    printer.on_trial_result(0, [], TANH, report(TANH, 1, test_loss=0.3))
    # Nothing finished: a best so far, named so, with its epoch.
    assert printer.line().split(" | ")[1] == f"best so far final_test_loss 0.3000 {TANH_NAME} (epoch 1)"
    printer.on_trial_result(0, [], TANH, report(TANH, 2, test_loss=0.1, status="diverged", reason="train loss nan"))
    # Diverged: finished with its last finite figure (0.3), never the diverged epoch's.
    assert printer.line().split(" | ")[1] == f"best final_test_loss 0.3000 {TANH_NAME}"
    printer.on_trial_result(0, [], RELU, report(RELU, 2, test_loss=0.2))
    # relu's 0.2 is not final until relu has finished.
    assert printer.line().split(" | ")[1] == f"best final_test_loss 0.3000 {TANH_NAME}"
    printer.on_trial_complete(0, [], RELU)
    assert printer.line().split(" | ")[1] == f"best final_test_loss 0.2000 {RELU_NAME}"


def test_best_accuracy_so_far_is_the_latest_value_of_each_trial():
    printer = started(printer_of((RELU, TANH), 2, out=io.StringIO(), clock=Clock()))
    printer.on_trial_result(0, [], RELU, report(RELU, 1, test_acc=0.9))
    printer.on_trial_result(0, [], TANH, report(TANH, 1, test_acc=0.8))
    printer.on_trial_result(0, [], RELU, report(RELU, 2, test_acc=0.7))  # relu's latest accuracy is now 0.7
    assert printer.line().split(" | ")[1] == f"best so far final_test_acc 0.8000 {TANH_NAME} (epoch 1)"
    printer.on_trial_result(0, [], TANH, report(TANH, 2, test_acc=math.nan))
    assert printer.best_so_far() == (0.8, TANH_NAME, 1)


def test_time_left_comes_from_epochs_per_second_after_start_up():
    clock = Clock()
    printer = started(printer_of((RELU, TANH), 2, out=io.StringIO(), clock=clock))
    clock.now = 100.0  # Ray start-up and the data: 100 s before the first report
    printer.on_trial_result(0, [], RELU, report(RELU, 0))
    printer.on_trial_result(0, [], TANH, report(TANH, 0))
    assert printer.line() == "[1m40s] 0/2 done, 2 running, 0 pending, 0 failed"
    clock.now = 110.0
    printer.on_trial_result(0, [], RELU, report(RELU, 1))
    # 1 epoch in the 10 s since the first report; 3 epochs left: 30 s (not 3 x 110 s).
    assert printer.line() == ("[1m50s] 0/2 done, 2 running, 0 pending, 0 failed"
                              f" | best so far final_test_acc 0.5000 {RELU_NAME} (epoch 1) | ~30s left")
    clock.now = 115.0
    printer.on_trial_result(0, [], TANH, report(TANH, 1))
    assert printer.line().endswith(" | ~15s left")  # 2 epochs in 15 s, 2 left


def test_running_retrying_pending_failed_and_no_time_left_once_nothing_is_left():
    # Two of three configurations fit at once; 2 epochs each.
    clock = Clock()
    failures = Failures("/nonexistent", max_failures=1)
    printer = started(printer_of((RELU, TANH, ELU), 2, out=io.StringIO(), clock=clock, failures=failures))
    for trial in (RELU, TANH):
        printer.on_trial_result(0, [], trial, report(trial, 0))
    clock.now = 10.0
    printer.on_trial_result(0, [], RELU, report(RELU, 1))
    assert printer.line() == (f"[10s] 0/3 done, 2 running, 1 pending, 0 failed | best so far final_test_acc 0.5000 "
                              f"{RELU_NAME} (epoch 1) | ~50s left")
    # relu's attempt fails and waits for its retry: retrying, not running; elu takes its place.
    printer.on_trial_recover(0, [], ray_trial(CONFIGS[0], failures=1))
    printer.on_trial_start(0, [], ELU)
    assert printer.line().startswith("[10s] 0/3 done, 2 running, 1 retrying, 0 pending, 0 failed")
    printer.on_trial_result(0, [], TANH, report(TANH, 1))
    printer.on_trial_result(0, [], TANH, report(TANH, 2))
    printer.on_trial_complete(0, [], TANH)
    printer.on_trial_start(0, [], RELU)  # relu's retry starts
    assert printer.line().startswith("[10s] 1/3 done, 2 running, 0 pending, 0 failed")
    # relu fails again, its last attempt: failed, and its epoch left leaves the estimate.
    printer.on_trial_error(0, [], ray_trial(CONFIGS[0], failures=2))
    assert printer.left() == 2  # elu's two epochs: relu's epoch left is not
    printer.on_trial_result(0, [], ELU, report(ELU, 0, status="diverged", reason="train loss nan at epoch 0"))
    assert printer.left() == 0
    printer.on_trial_complete(0, [], ELU)  # the diverged trial's Ray trial ends: still diverged, not completed
    assert printer.line() == (f"[10s] 2/3 done (1 diverged), 0 running, 0 pending, 1 failed | best final_test_acc "
                              f"0.5000 {TANH_NAME}")  # no time left: nothing runs or waits
    lines = printer.out.getvalue().splitlines()
    assert [line for line in lines if not line.startswith("[")] == [
        f"FAILED {RELU_NAME}: Error: the trial failed (no error was recorded) (attempt 1 of 2, retrying; "
        "traceback in Tune's error.txt of the trial)",
        f"finished {TANH_NAME}",
        f"FAILED {RELU_NAME}: Error: the trial failed (no error was recorded) (attempt 2 of 2, no attempts left; "
        "traceback in Tune's error.txt of the trial)",
        f"diverged {ELU_NAME}: train loss nan at epoch 0",
    ]


def test_a_stopped_trial_counts_as_stopped_and_is_never_the_best_final():
    printer = started(printer_of((RELU, TANH), 2, out=io.StringIO(), clock=Clock()))
    printer.on_trial_result(0, [], RELU, report(RELU, 1, test_acc=0.1, status="stopped", reason="stopped@1 chance"))
    printer.on_trial_complete(0, [], RELU)
    assert printer.line() == "[0s] 1/2 done (1 stopped), 1 running, 0 pending, 0 failed"
    printer.on_trial_result(0, [], TANH, report(TANH, 2, test_acc=0.05))
    printer.on_trial_complete(0, [], TANH)  # completed, worse than the stopped one's 0.1: the best final
    assert printer.line() == f"[0s] 2/2 done (1 stopped), 0 running, 0 pending, 0 failed | best final_test_acc 0.0500 {TANH_NAME}"
    assert printer.out.getvalue().splitlines()[0] == f"stopped {RELU_NAME}: stopped@1 chance"


def test_each_failed_attempt_is_one_line_with_its_cause_and_where_the_traceback_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with RayLog(tmp_path / "sweep.log") as log:
        failures = Failures(tmp_path, max_failures=2, log=log)
        printer = started(printer_of((RELU, TANH), 2, out=io.StringIO(), clock=Clock(), failures=failures))
        try:
            raise ValueError("boom")
        except ValueError as exc:
            # As Tune's controller logs a failed attempt (the runner keeps TUNE_PRINT_ALL_TRIAL_ERRORS on).
            logging.getLogger("ray.tune.execution.tune_controller").error(f"Trial task failed for trial {RELU_NAME}",
                                                                          exc_info=exc)
        printer.on_trial_recover(0, [], ray_trial(CONFIGS[0], failures=1))
    assert printer.out.getvalue().splitlines()[0] == (
        f"FAILED {RELU_NAME}: ValueError: boom (attempt 1 of 3, retrying; traceback in sweep.log)")
    logged = (tmp_path / "sweep.log").read_text()
    assert f"Trial task failed for trial {RELU_NAME}\nTraceback (most recent call last):\n" in logged
    assert logged.endswith("ValueError: boom\n")


def test_a_resumed_trial_counts_only_the_epochs_trained_in_this_run():
    clock = Clock()
    printer = printer_of((RELU,), 2, out=io.StringIO(), clock=clock)
    printer.on_trial_start(0, [], RELU)
    clock.now = 5.0
    printer.on_trial_result(0, [], RELU, report(RELU, 1, resumed_from=1))  # replayed epoch 1
    assert printer.out.getvalue() == f"resumed {RELU_NAME} from epoch 1\n"
    assert not printer.line().endswith("left")
    clock.now = 9.0
    printer.on_trial_result(0, [], RELU, report(RELU, 2, resumed_from=1))
    assert printer.ledger.trained() == 1  # epoch 2 only; epoch 1 was trained by the run before


def test_a_trial_retried_after_its_node_died_says_where_it_continues_from():
    printer = printer_of((RELU,), 3, out=io.StringIO(), clock=Clock())
    printer.on_trial_start(0, [], RELU)
    printer.on_trial_result(0, [], RELU, report(RELU, 0))
    printer.on_trial_result(0, [], RELU, report(RELU, 1))
    assert printer.out.getvalue() == ""  # a fresh start says nothing
    printer.on_trial_start(0, [], RELU)  # Tune starts it again after its worker was lost
    printer.on_trial_result(0, [], RELU, report(RELU, 1, resumed_from=1))  # the replay of its checkpointed epoch
    printer.on_trial_result(0, [], RELU, report(RELU, 2, resumed_from=1))
    assert printer.out.getvalue() == f"resumed {RELU_NAME} from epoch 1\n"  # once per start
    assert printer.ledger.trained() == 2  # epochs 1 and 2, counted once each


def test_no_time_left_while_nothing_trains():
    clock = Clock()
    printer = started(printer_of((RELU, TANH), 2, out=io.StringIO(), clock=clock,
                                      failures=Failures("/nonexistent", max_failures=1)), RELU)
    printer.on_trial_result(0, [], RELU, report(RELU, 0))
    clock.now = 10.0
    printer.on_trial_result(0, [], RELU, report(RELU, 1))
    assert printer.line().endswith(" | ~30s left")
    printer.on_trial_recover(0, [], ray_trial(CONFIGS[0], failures=1))  # waits for its retry; tanh not started
    assert printer.line() == (f"[10s] 0/2 done, 0 running, 1 retrying, 1 pending, 0 failed | best so far "
                              f"final_test_acc 0.5000 {RELU_NAME} (epoch 1)")


def test_time_left_under_asha_matches_a_recorded_sweep():
    """16 trials run one at a time, 1 s an epoch, under asha {grace: 1, reduction: 2} over 5 epochs (rungs 1, 2
    and 4), as a recorded sweep ended them: per half, 1 trial of 8 trained 5 epochs, 1 to 4, 2 to 2 and 4
    stopped at 1 (2.125 epochs a trial, as ASHA expects: 1 + 1/2 + 2/4 + 1/8). Halfway, 17 epochs (17 s) are
    left: the estimate says so, where counting every pending trial's 5 epochs said 40 s."""
    from sweep.run.stopping import AshaSpec

    configs = expand_grid(parse_spec({"name": "p", "dataset": "synthetic", "epochs": 5, "grid": {
        "activation": ["relu", "tanh", "elu", "gelu"], "optimizer": [{"name": "adam", "lr": 0.01}],
        "seed": [0, 1, 2, 3]}}))
    trained = [5, 1, 2, 1, 4, 1, 2, 1] * 2
    clock = Clock()
    trials = [ray_trial(c) for c in configs]
    printer = printer_of(trials, 5, outlook=Outlook(5, AshaSpec(1, 2)), out=io.StringIO(), clock=clock)
    for i, (trial, epochs) in enumerate(zip(trials, trained)):
        printer.on_trial_start(0, [], trial)
        if i == 8:
            left = sum(trained[8:])
            assert (clock.now, left) == (17, 17)
            assert printer.line().endswith(" | ~17s left")
        printer.on_trial_result(0, [], trial, report(trial, 0))
        for epoch in range(1, epochs + 1):
            clock.now += 1
            stopped = epoch == epochs < 5
            printer.on_trial_result(0, [], trial, report(trial, epoch, status="stopped" if stopped else "running",
                                                         reason=f"stopped@{epoch} asha" if stopped else None))
        printer.on_trial_complete(0, [], trial)
    assert clock.now == 34 and "left" not in printer.line()
