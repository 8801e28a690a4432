"""The progress line: the spec's metric in its direction, and a time estimate from throughput."""
import io
import math
from types import SimpleNamespace

from sweep.grid import expand_grid
from sweep.recorder import ProgressPrinter
from sweep.spec import parse_spec

CONFIGS = expand_grid(parse_spec({"name": "p", "dataset": "synthetic", "epochs": 2, "grid": {
    "activation": ["relu", "tanh"], "optimizer": [{"name": "adam", "lr": 0.01}]}}))
# A Ray trial of one configuration, as the runner builds it (a one-member bundle).
RELU, TANH = (SimpleNamespace(trial_id=c.name, config={"trial": c.to_dict(), "bundle": [c.to_dict()]}, cfg=c)
              for c in CONFIGS)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def report(trial, epoch, test_acc=0.5, test_loss=1.0, status="running", resumed_from=None):
    return {"epoch": epoch, "test_acc": test_acc, "best_test_acc": test_acc, "test_loss": test_loss,
            "train_loss": None if epoch == 0 else 1.0, "status": status, "resumed_from": resumed_from,
            "config_hash": trial.cfg.config_hash}


def started(printer):
    printer.on_trial_start(0, [], RELU)
    printer.on_trial_start(0, [], TANH)
    return printer


def test_best_is_the_lowest_loss_for_a_loss_metric_and_ignores_diverged_epochs():
    printer = started(ProgressPrinter(2, 4, out=io.StringIO(), clock=Clock(), metric="final_test_loss"))
    printer.on_trial_result(0, [], RELU, report(RELU, 0, test_loss=0.01))  # before training: not a result
    assert printer.best() is None
    printer.on_trial_result(0, [], RELU, report(RELU, 1, test_loss=0.5))
    printer.on_trial_result(0, [], TANH, report(TANH, 1, test_loss=0.3))
    printer.on_trial_result(0, [], TANH, report(TANH, 2, test_loss=0.1, status="diverged"))
    assert printer.line().split(" | ")[1] == "best final_test_loss 0.3000 tanh-default-adam-lr0.01-s0"
    printer.on_trial_result(0, [], RELU, report(RELU, 2, test_loss=0.2))
    assert printer.line().split(" | ")[1] == "best final_test_loss 0.2000 relu-default-adam-lr0.01-s0"


def test_best_accuracy_is_the_latest_value_of_each_trial():
    printer = started(ProgressPrinter(2, 4, out=io.StringIO(), clock=Clock()))
    printer.on_trial_result(0, [], RELU, report(RELU, 1, test_acc=0.9))
    printer.on_trial_result(0, [], TANH, report(TANH, 1, test_acc=0.8))
    printer.on_trial_result(0, [], RELU, report(RELU, 2, test_acc=0.7))  # relu's final accuracy is now 0.7
    assert printer.line().split(" | ")[1] == "best final_test_acc 0.8000 tanh-default-adam-lr0.01-s0"
    printer.on_trial_result(0, [], TANH, report(TANH, 2, test_acc=math.nan))
    assert printer.best() == (0.8, "tanh-default-adam-lr0.01-s0")


def test_time_left_comes_from_epochs_per_second_after_start_up():
    clock = Clock()
    printer = started(ProgressPrinter(2, 4, out=io.StringIO(), clock=clock))
    clock.now = 100.0  # Ray start-up and the data: 100 s before the first report
    printer.on_trial_result(0, [], RELU, report(RELU, 0))
    printer.on_trial_result(0, [], TANH, report(TANH, 0))
    assert printer.line() == "[1m40s] 0/2 done, 2 running, 0 pending, 0 failed"
    clock.now = 110.0
    printer.on_trial_result(0, [], RELU, report(RELU, 1))
    # 1 epoch in the 10 s since the first report; 3 epochs left: 30 s (not 3 x 110 s).
    assert printer.line() == ("[1m50s] 0/2 done, 2 running, 0 pending, 0 failed"
                              " | best final_test_acc 0.5000 relu-default-adam-lr0.01-s0 | ~30s left")
    clock.now = 115.0
    printer.on_trial_result(0, [], TANH, report(TANH, 1))
    assert printer.line().endswith(" | ~15s left")  # 2 epochs in 15 s, 2 left


def test_a_resumed_trial_counts_only_the_epochs_trained_in_this_run():
    clock = Clock()
    printer = ProgressPrinter(1, 1, out=io.StringIO(), clock=clock)
    printer.on_trial_start(0, [], RELU)
    clock.now = 5.0
    printer.on_trial_result(0, [], RELU, report(RELU, 1, resumed_from=1))  # replayed epoch 1
    assert printer.out.getvalue() == "resumed relu-default-adam-lr0.01-s0 from epoch 1\n"
    assert not printer.line().endswith("left")
    clock.now = 9.0
    printer.on_trial_result(0, [], RELU, report(RELU, 2, resumed_from=1))
    assert printer._trained() == 1  # epoch 2 only; epoch 1 was trained by the run before


def test_a_trial_retried_after_its_node_died_says_where_it_continues_from():
    printer = ProgressPrinter(1, 3, out=io.StringIO(), clock=Clock())
    printer.on_trial_start(0, [], RELU)
    printer.on_trial_result(0, [], RELU, report(RELU, 0))
    printer.on_trial_result(0, [], RELU, report(RELU, 1))
    assert printer.out.getvalue() == ""  # a fresh start says nothing
    printer.on_trial_start(0, [], RELU)  # Tune starts it again after its worker was lost
    printer.on_trial_result(0, [], RELU, report(RELU, 1, resumed_from=1))  # the replay of its checkpointed epoch
    printer.on_trial_result(0, [], RELU, report(RELU, 2, resumed_from=1))
    assert printer.out.getvalue() == "resumed relu-default-adam-lr0.01-s0 from epoch 1\n"  # once per start
    assert printer._trained() == 2  # epochs 1 and 2, counted once each
