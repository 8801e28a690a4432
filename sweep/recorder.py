"""The driver-side writer: Ray Tune callbacks that record results and show progress.

Workers never open the database (on a cluster they cannot reach the file);
the driver is the single writer, so SQLite never sees a second one.
Everything is keyed by the configuration's hash, never by process: a fused
bundle (several configurations in one Ray trial) reports each member's epochs
under its own hash, and every member is a trial of its own in the database.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, TextIO

from ray.tune import Callback
from sqlalchemy import Engine

from db.engine import session_scope
from db.queries import record_results, update_trial, update_trials, utcnow
from sweep.grid import TrialConfig, bundle_name


def members(trial) -> list[TrialConfig]:
    """The configurations a Ray trial trains: one, or a fused bundle's members."""
    return [TrialConfig.from_dict(d) for d in trial.config["bundle"]]


def _name(trial) -> str:
    return bundle_name(members(trial))


def _error_text(trial) -> str:
    path = trial.error_file
    try:
        with open(path) as fh:
            return fh.read().strip() or "trial failed"
    except (OSError, TypeError):
        return "trial failed (no error file)"


class DatabaseRecorder(Callback):
    """Writes every reported epoch, layer statistic and status change.

    Under Ray the reports are written in batches, one transaction each: Tune hands the driver one event
    per step and calls on_step_end after it (at least every 0.1 s), where a batch is written once its
    oldest report has waited `max_delay` seconds or it holds `max_rows` statistics rows. A commit per
    report capped the driver at about 3,000 rows per second; batches keep it well above what hundreds
    of trials produce, with every report in the database within max_delay (+ one step) of its arrival.
    Anything pending is written before a status change and at the experiment's end; a driver killed
    with reports pending loses nothing either: trials send their last epochs again on resume.
    `record` (no Ray) writes at once.
    """

    def __init__(self, engine: Engine, trial_ids: dict[str, int], max_delay: float = 0.2, max_rows: int = 20_000,
                 clock: Callable[[], float] = time.monotonic):
        self.engine = engine
        self.trial_ids = trial_ids
        self.final_status: dict[str, str] = {}
        self.started: set[str] = set()
        self.max_delay, self.max_rows, self.clock = max_delay, max_rows, clock
        self.pending: list[dict[str, Any]] = []
        self.pending_rows = 0
        self.pending_since = 0.0

    def __getstate__(self):
        # Tune pickles its callbacks into the experiment state; an engine
        # does not pickle and is never needed from there.
        return {**self.__dict__, "engine": None, "clock": None, "pending": []}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.flush()
        with session_scope(self.engine) as s:
            for cfg in members(trial):
                self.started.add(cfg.config_hash)
                update_trial(s, self.trial_ids[cfg.config_hash], status="running", started_at=utcnow(), error=None)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if not self.pending:
            self.pending_since = self.clock()
        self.pending.append(result)
        self.pending_rows += len(result["layer_stats"])
        self._flush_if_due()

    def on_step_end(self, iteration, trials, **info):
        self._flush_if_due()

    def on_experiment_end(self, trials, **info):
        self.flush()

    def _flush_if_due(self) -> None:
        if self.pending and (self.pending_rows >= self.max_rows or self.clock() - self.pending_since >= self.max_delay):
            self.flush()

    def flush(self) -> None:
        """Write the pending reports in one transaction."""
        if self.pending:
            batch, self.pending, self.pending_rows = self.pending, [], 0
            self.record_many(batch)

    def record(self, result: dict[str, Any]) -> None:
        """Store one report of run_trial at once (also used without Ray, e.g. by tests)."""
        self.flush()
        self.record_many([result])

    def record_many(self, results: list[dict[str, Any]]) -> None:
        """Store reports of run_trial, in order, in one transaction."""
        with session_scope(self.engine) as s:
            record_results(s, [(self.trial_ids[r["config_hash"]], {
                "epoch": r["epoch"], "images_seen": r["images_seen"],
                "train_loss": r["train_loss"], "test_loss": r["test_loss"],
                "test_acc": r["test_acc"], "wall_seconds": r["epoch_seconds"],
            }, r["layer_stats"]) for r in results])
            update_trials(s, [(self.trial_ids[r["config_hash"]], self._trial_values(r)) for r in results])

    def _trial_values(self, result: dict[str, Any]) -> dict[str, Any]:
        """The trial row's columns after this report."""
        values = {
            "epochs_done": result["epoch"],
            "images_seen": result["images_seen"],
            "train_seconds": result["train_seconds"],
            "run_seconds": result["run_seconds"],
            "best_test_acc": result["best_test_acc"],
            "best_epoch": result["best_epoch"],
            "bundle": result["bundle"],
            "device": result["device"],
            "node": result["node"],
        }
        if result["status"] == "diverged":
            # The epoch's own numbers go to epoch_metrics; the trial keeps its
            # last finite final metrics.
            values.update(status="diverged", error=result["reason"], finished_at=utcnow())
            self.final_status[result["config_hash"]] = "diverged"
        else:
            values.update(final_test_acc=result["test_acc"], final_test_loss=result["test_loss"])
            if result["train_loss"] is not None:
                values["final_train_loss"] = result["train_loss"]
        return values

    def _finish(self, trial, status: str, **values) -> None:
        """`status` for every member not already finished (a diverged member left its bundle earlier)."""
        self.flush()
        with session_scope(self.engine) as s:
            for cfg in members(trial):
                if self.final_status.get(cfg.config_hash) == "diverged":
                    continue
                self.final_status[cfg.config_hash] = status
                update_trial(s, self.trial_ids[cfg.config_hash], status=status, finished_at=utcnow(), **values)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, "completed")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, "failed", error=_error_text(trial))


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# Where each ranking metric's current value is in a trial's report.
_REPORTED = {"final_test_acc": "test_acc", "best_test_acc": "best_test_acc", "final_test_loss": "test_loss",
             "final_train_loss": "train_loss"}


class ProgressPrinter(Callback):
    """One concise line per trial event and every `interval` seconds, instead of Ray's tables.

    [1m05s] 3/16 done, 2 running, 11 pending, 0 failed | best final_test_acc 0.8512 relu-... | ~2m40s left

    The best is over each trial's latest value of the spec's `metric` (lowest
    for a loss). The time left comes from throughput: epochs trained per
    second since the first report arrived (start-up excluded), shown once an
    epoch has finished after that report.
    """

    def __init__(self, total: int, total_epochs: int, interval: float = 15.0, out: TextIO = sys.stdout,
                 clock: Callable[[], float] = time.monotonic, metric: str = "final_test_acc"):
        from sweep.spec import METRICS

        self.total = total
        self.total_epochs = total_epochs
        self.interval = interval
        self.out = out
        self.clock = clock
        self.metric = metric
        self.larger_is_better = METRICS[metric]
        self.start = clock()
        self.last = self.start
        self.epochs_done: dict[str, int] = {}
        self.epochs_at_start: dict[str, int] = {}
        self.state: dict[str, str] = {}  # config hash -> running, done or failed
        self.names: dict[str, str] = {}  # config hash -> trial name
        self.starting: set[str] = set()  # started (or restarted after a failure), no report yet
        self.latest: dict[str, tuple[float, str]] = {}  # trial -> (its latest value of the metric, name)
        self.first_report: tuple[float, int] | None = None  # (time, epochs trained) when the first report came

    def __getstate__(self):
        return {**self.__dict__, "out": None}

    def _trained(self) -> int:
        """Epochs trained in this run (a resumed trial counts from where it started)."""
        return sum(max(0, self.epochs_done[k] - self.epochs_at_start.get(k, 0)) for k in self.epochs_done)

    def best(self) -> tuple[float, str] | None:
        """(value, trial name): the best latest value of the metric over the trials, or None before any."""
        if not self.latest:
            return None
        pick = max if self.larger_is_better else min
        return pick(self.latest.values(), key=lambda v: v[0])

    def line(self) -> str:
        now = self.clock()
        counts = {k: sum(1 for v in self.state.values() if v == k) for k in ("done", "running", "failed")}
        pending = self.total - sum(counts.values())
        text = (f"[{_duration(now - self.start)}] {counts['done']}/{self.total} done, {counts['running']} running, "
                f"{pending} pending, {counts['failed']} failed")
        best = self.best()
        if best is not None:
            text += f" | best {self.metric} {best[0]:.4f} {best[1]}"
        done = self._trained()
        if self.first_report is not None and 0 < done < self.total_epochs:
            since, done_then = self.first_report
            if done > done_then and now > since:
                rate = (done - done_then) / (now - since)
                text += f" | ~{_duration((self.total_epochs - done) / rate)} left"
        return text

    def _print(self, prefix: str = "") -> None:
        print(prefix + self.line(), file=self.out, flush=True)
        self.last = self.clock()

    def on_trial_start(self, iteration, trials, trial, **info):
        for cfg in members(trial):
            self.state[cfg.config_hash] = "running"
            self.names[cfg.config_hash] = cfg.name
            self.starting.add(cfg.config_hash)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        # Keyed by configuration: a fused bundle counts as its members.
        key = result["config_hash"]
        if key not in self.epochs_at_start:
            self.epochs_at_start[key] = result["resumed_from"] or 0
        if key in self.starting:
            # Each start says where it continues from: a rerun, or a retry after its worker or node died.
            self.starting.discard(key)
            if result["resumed_from"]:
                print(f"resumed {self.names[key]} from epoch {result['resumed_from']}", file=self.out, flush=True)
        if result["status"] == "diverged":
            self.state[key] = "done"
        self.epochs_done[key] = max(self.epochs_done.get(key, 0), result["epoch"])
        if self.first_report is None:
            self.first_report = (self.clock(), self._trained())
        value = result[_REPORTED[self.metric]]
        # Epoch 0 is before training; a diverged epoch's figures are not the trial's.
        if result["epoch"] > 0 and result["status"] != "diverged" and value is not None and math.isfinite(value):
            self.latest[key] = (value, self.names[key])

    def _finish(self, trial, status: str) -> None:
        for cfg in members(trial):
            if self.state.get(cfg.config_hash) != "done":
                self.state[cfg.config_hash] = status

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, "done")
        self._print(f"finished {_name(trial)}\n")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, "failed")
        self._print(f"FAILED {_name(trial)}: {_error_text(trial).splitlines()[-1]}\n")

    def on_step_end(self, iteration, trials, **info):
        if self.clock() - self.last >= self.interval:
            self._print()
