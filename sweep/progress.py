"""The progress line of a running sweep: what is done, running, retrying and pending, the best final figure,
the time left (from the epochs each trial is still expected to train), and one line per failed attempt."""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TextIO

from ray.tune import Callback

from sweep.grid import TrialConfig, bundle_name
from sweep.measures import RANKING
from sweep.recorder import ENDED_BY_REPORT, ROOT, Failures, members


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# Where each ranking metric's current value is in a trial's report.
_REPORTED = {name: metric.column for name, metric in RANKING.items()}
# A configuration's state in the progress line: training now, waiting for its retry, or ended (finished:
# completed, diverged or stopped; or failed). Never started: pending.
RUNNING, RETRYING, FAILED, INTERRUPTED = "running", "retrying", "failed", "interrupted"
FINISHED = ("completed", "diverged", "stopped")


@dataclass(frozen=True)
class Outlook:
    """The epochs a sweep's trials are expected to train still: each from where it stands to the sweep's
    `epochs`, or under ASHA to its next rung, and on past each later rung with the chance 1/R that a trial
    passes one (the top 1/R continue). `starts`: config hash -> the epoch each trial of this run starts at;
    `exempt` trials (resumed after a stop) enter no rung."""

    epochs: int
    asha: Any  # sweep.stopping.AshaSpec or None
    starts: Mapping[str, int]
    exempt: frozenset = frozenset()

    def left(self, key: str, at: int) -> float:
        """Epochs trial `key`, now at epoch `at`, is expected to train still."""
        from sweep.stopping import rung_epochs

        here, chance, left = at, 1.0, 0.0
        if self.asha is not None and key not in self.exempt:
            for rung in rung_epochs(self.asha, self.epochs):
                if rung > here:
                    left += chance * (rung - here)
                    here, chance = rung, chance / self.asha.reduction
        return left + chance * max(0, self.epochs - here)


class ProgressPrinter(Callback):
    """One concise line per trial event and every `interval` seconds, instead of Ray's tables.

    [1m05s] 3/16 done (1 diverged), 2 running, 1 retrying, 10 pending, 0 failed | best final_test_acc 0.8512 relu-... | ~2m40s left

    Done counts the finished configurations (completed, diverged or stopped); running, those training now;
    retrying, those whose attempt failed and wait to start again. The best is the best final value of the
    spec's `metric` (lowest for a loss) over the trials that trained to the end (a stopped one never
    counts); before any has, the best so far over those training, with its epoch. The time left
    is the epochs left to train (with an `outlook`, as expected under ASHA: Outlook) over the throughput,
    epochs trained per second since the first report arrived (start-up excluded); shown once an epoch has
    finished after that report, and only while something trains (not while attempts wait for their retry,
    nor at the end); a trial that ends early (failed, diverged, stopped) takes its epochs left out of it. Each failed attempt is one line: the trial, the cause,
    attempt n of m, whether it is retried, and where its whole traceback is (Failures).
    """

    def __init__(self, total: int, total_epochs: int, interval: float = 15.0, out: TextIO = sys.stdout,
                 clock: Callable[[], float] = time.monotonic, metric: str = "final_test_acc",
                 epochs: int | None = None, failures: Failures | None = None, outlook: Outlook | None = None):
        self.outlook = outlook
        self.total = total
        self.total_epochs = total_epochs
        self.epochs = epochs  # each trial's epochs (the spec's), for the epochs a trial ending early leaves
        self.interval = interval
        self.out = out
        self.clock = clock
        self.metric = metric
        self.larger_is_better = RANKING[metric].higher_is_better
        self.failures = failures or Failures(ROOT, 0)
        self.start = clock()
        self.last = self.start
        self.epochs_done: dict[str, int] = {}
        self.epochs_at_start: dict[str, int] = {}
        self.epochs_dropped = 0  # epochs never to be trained: of trials that ended early
        self.state: dict[str, str] = {}  # config hash -> RUNNING, RETRYING, FAILED or one of FINISHED
        self.names: dict[str, str] = {}  # config hash -> trial name
        self.starting: set[str] = set()  # started (or restarted after a failure), no report yet
        self.latest: dict[str, tuple[float, str, int]] = {}  # trial -> (latest value of the metric, name, epoch)
        self.first_report: tuple[float, int] | None = None  # (time, epochs trained) when the first report came
        self.ended = False  # the run is over: what is pending stays so, nothing is left to estimate

    def __getstate__(self):
        return {**self.__dict__, "out": None, "failures": None}

    def _trained(self) -> int:
        """Epochs trained in this run (a resumed trial counts from where it started)."""
        return sum(max(0, self.epochs_done[k] - self.epochs_at_start.get(k, 0)) for k in self.epochs_done)

    def best(self) -> tuple[float, str] | None:
        """(value, trial name): the best final value of the metric over the trials that trained to the end (a
        diverged one with its last finite figure, as the report counts it), or None: a stopped trial's value
        is where its rule or ASHA ended it, never a final one."""
        pick = max if self.larger_is_better else min
        final = [v[:2] for k, v in self.latest.items() if self.state.get(k) in ("completed", "diverged")]
        return pick(final, key=lambda v: v[0]) if final else None

    def best_so_far(self) -> tuple[float, str, int] | None:
        """(value, trial name, epoch): the best latest value over the trials still training, or None."""
        pick = max if self.larger_is_better else min
        going = [v for k, v in self.latest.items() if self.state.get(k) in (RUNNING, RETRYING)]
        return pick(going, key=lambda v: v[0]) if going else None

    def counts(self) -> dict[str, int]:
        """Configurations per state; `pending` for those never started in this run."""
        counts = {k: 0 for k in (*FINISHED, RUNNING, RETRYING, FAILED, INTERRUPTED)}
        for state in self.state.values():
            counts[state] += 1
        counts["pending"] = self.total - len(self.state)
        return counts

    def line(self) -> str:
        now = self.clock()
        c = self.counts()
        done = sum(c[k] for k in FINISHED)
        ended = ", ".join(f"{c[k]} {k}" for k in ("diverged", "stopped") if c[k])
        text = (f"[{_duration(now - self.start)}] {done}/{self.total} done{f' ({ended})' if ended else ''}, "
                f"{c[RUNNING]} running, " + (f"{c[RETRYING]} retrying, " if c[RETRYING] else "")
                + f"{c['pending']} pending, {c[FAILED]} failed"
                + (f", {c[INTERRUPTED]} interrupted" if c[INTERRUPTED] else ""))
        best = self.best()
        if best is not None:
            text += f" | best {self.metric} {best[0]:.4f} {best[1]}"
        else:
            so_far = self.best_so_far()
            if so_far is not None:
                text += f" | best so far {self.metric} {so_far[0]:.4f} {so_far[1]} (epoch {so_far[2]})"
        trained, left = self._trained(), self._left()
        if c[RUNNING] and not self.ended and self.first_report is not None and trained > 0 and left > 0:
            since, done_then = self.first_report
            if trained > done_then and now > since:
                rate = (trained - done_then) / (now - since)
                text += f" | ~{_duration(left / rate)} left"
        return text

    def _left(self) -> float:
        """Epochs left to train: every trial not ended yet, from where it stands (Outlook), or without one all
        the epochs of the trials not ended early."""
        if self.outlook is None:
            return self.total_epochs - self.epochs_dropped - self._trained()
        going = [k for k in self.outlook.starts if self.state.get(k) not in (*FINISHED, FAILED, INTERRUPTED)]
        return sum(self.outlook.left(k, self.epochs_done.get(k, self.outlook.starts[k])) for k in going)

    def _print(self, prefix: str = "") -> None:
        print(prefix + self.line(), file=self.out, flush=True)
        self.last = self.clock()

    def on_trial_start(self, iteration, trials, trial, **info):
        for cfg in members(trial):
            if self.state.get(cfg.config_hash) in (*FINISHED, FAILED):
                continue
            self.state[cfg.config_hash] = RUNNING
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
        self.epochs_done[key] = max(self.epochs_done.get(key, 0), result["epoch"])
        if self.first_report is None:
            self.first_report = (self.clock(), self._trained())
        value = result[_REPORTED[self.metric]]
        # Epoch 0 is before training; a diverged epoch's figures are not the trial's.
        if result["epoch"] > 0 and result["status"] != "diverged" and value is not None and math.isfinite(value):
            self.latest[key] = (value, self.names[key], result["epoch"])
        if result["status"] in ENDED_BY_REPORT:
            self._end(key, result["status"])
            self._print(f"{result['status']} {self.names[key]}: {result['reason']}\n")

    def _end(self, key: str, state: str) -> None:
        """Configuration `key` ends in `state`; the epochs it will not train leave the estimate."""
        self.state[key] = state
        if self.epochs is not None:
            self.epochs_dropped += max(0, self.epochs - max(self.epochs_done.get(key, 0), self.epochs_at_start.get(key, 0)))

    def _finish(self, trial, state: str) -> list[TrialConfig]:
        """`state` for the members still going (not ended by their own report); those members."""
        going = [cfg for cfg in members(trial) if self.state.get(cfg.config_hash) not in (*FINISHED, FAILED)]
        for cfg in going:
            if state == "completed":
                self.state[cfg.config_hash] = state
            else:
                self._end(cfg.config_hash, state)
        return going

    def on_trial_complete(self, iteration, trials, trial, **info):
        completed = self._finish(trial, "completed")
        if completed:  # members that diverged or stopped said so when they did
            self._print(f"finished {bundle_name(completed)}\n")

    def _failed(self, trial) -> None:
        attempt = self.failures.attempt(trial)
        if attempt.retried:
            for cfg in members(trial):
                if self.state.get(cfg.config_hash) == RUNNING:
                    self.state[cfg.config_hash] = RETRYING
            then = "retrying"
        else:
            self._finish(trial, FAILED)
            then = "not retried: no retry can fix this" if attempt.halt else "no attempts left"
        self._print(f"FAILED {attempt.name}: {attempt.error.line} (attempt {attempt.number} of {attempt.of}, "
                    f"{then}; {self.failures.where()})\n")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._failed(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._failed(trial)

    def on_step_end(self, iteration, trials, **info):
        if self.clock() - self.last >= self.interval:
            self._print()
