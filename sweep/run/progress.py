"""The progress line of a running sweep: what is done, running, retrying and pending, the best final figure,
the time left (from the epochs each trial is still expected to train), and one line per failed attempt."""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, TextIO

from ray.tune import Callback

from sweep.spec.grid import bundle_name
from sweep.run.ledger import Ledger
from sweep.measures import RANKING
from sweep.run.recorder import ROOT, Failures, members
from sweep.status import ENDED, ENDED_BY_REPORT, Status, TrialReport


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# Where each ranking metric's current value is in a trial's report.
_REPORTED = {name: metric.column for name, metric in RANKING.items()}
# The progress line's "done": the trials that trained as far as they will.
DONE = (Status.COMPLETED, Status.DIVERGED, Status.STOPPED)


@dataclass(frozen=True)
class Outlook:
    """The epochs a sweep's trials are expected to train still: each from where it stands to the sweep's
    `epochs`, or under ASHA to its next rung, and on past each later rung with the chance 1/R that a trial
    passes one (the top 1/R continue). `exempt` trials (resumed after a stop) enter no rung."""

    epochs: int
    asha: Any = None  # sweep.run.stopping.AshaSpec or None
    exempt: frozenset = frozenset()
    halving: Any = None  # sweep.run.stopping.HalvingSpec or None: its rungs, as ASHA's

    def left(self, key: str, at: int) -> float:
        """Epochs trial `key`, now at epoch `at`, is expected to train still (a trial waiting at a rung too)."""
        from sweep.run.stopping import halving_rungs, rung_epochs

        here, chance, left = at, 1.0, 0.0
        rule = self.asha or self.halving
        if rule is not None and key not in self.exempt:
            rungs = rung_epochs(self.asha, self.epochs) if self.asha else halving_rungs(self.halving, self.epochs)
            for rung in rungs:
                if rung > here:
                    left += chance * (rung - here)
                    here, chance = rung, chance / rule.reduction
        return left + chance * max(0, self.epochs - here)


class ProgressPrinter(Callback):
    """One concise line per trial event and every `interval` seconds, instead of Ray's tables.

    [1m05s] 3/16 done (1 diverged), 2 running, 1 retrying, 10 pending, 0 failed | best final_test_acc 0.8512 relu-... | ~2m40s left

    The counts are the run's `ledger` (sweep/run/ledger.py, a callback before this one): done counts the
    configurations that trained as far as they will (completed, diverged or stopped); running, those
    training now; retrying, those whose attempt failed and wait to start again. The best is the best final
    value of the spec's `metric` (lowest for a loss) over the trials that trained to the end (a stopped one
    never counts); before any has, the best so far over those training, with its epoch. The time left is
    the epochs left to train (as `outlook` expects them, under ASHA too) over the throughput, epochs trained
    per second since the first report arrived (start-up excluded); shown once an epoch has finished after
    that report, and only while something trains (not while attempts wait for their retry, nor at the end).
    Each failed attempt is one line: the trial, the cause, attempt n of m, whether it is retried, and where
    its whole traceback is (Failures).
    """

    def __init__(self, ledger: Ledger, outlook: Outlook, interval: float = 15.0, out: TextIO = sys.stdout,
                 clock: Callable[[], float] = time.monotonic, metric: str = "final_test_acc",
                 failures: Failures | None = None):
        self.ledger = ledger
        self.outlook = outlook
        self.interval = interval
        self.out = out
        self.clock = clock
        self.metric = metric
        self.larger_is_better = RANKING[metric].higher_is_better
        self.failures = failures or Failures(ROOT, 0)
        self.start = clock()
        self.last = self.start
        self.names: dict[str, str] = {}  # config hash -> trial name
        self.starting: set[str] = set()  # started (or restarted after a failure), no report yet
        self.latest: dict[str, tuple[float, str, int]] = {}  # trial -> (latest value of the metric, name, epoch)
        self.first_report: tuple[float, int] | None = None  # (time, epochs trained) when the first report came
        self.ended = False  # the run is over: what is pending stays so, nothing is left to estimate

    def __getstate__(self):
        return {**self.__dict__, "out": None, "failures": None}

    def best(self) -> tuple[float, str] | None:
        """(value, trial name): the best final value of the metric over the trials that trained to the end (a
        diverged one with its last finite figure, as the report counts it), or None: a stopped trial's value
        is where its rule or ASHA ended it, never a final one."""
        pick = max if self.larger_is_better else min
        final = [v[:2] for k, v in self.latest.items()
                 if self.ledger.status(k) in (Status.COMPLETED, Status.DIVERGED)]
        return pick(final, key=lambda v: v[0]) if final else None

    def best_so_far(self) -> tuple[float, str, int] | None:
        """(value, trial name, epoch): the best latest value over the trials still training, or None."""
        pick = max if self.larger_is_better else min
        going = [v for k, v in self.latest.items() if self.ledger.status(k) in (Status.RUNNING, Status.RETRYING)]
        return pick(going, key=lambda v: v[0]) if going else None

    def line(self) -> str:
        now = self.clock()
        c = self.ledger.counts()
        done = sum(c[k] for k in DONE)
        ended = ", ".join(f"{c[k]} {k}" for k in (Status.DIVERGED, Status.STOPPED) if c[k])
        text = (f"[{_duration(now - self.start)}] {done}/{len(self.ledger.entries)} done"
                f"{f' ({ended})' if ended else ''}, {c[Status.RUNNING]} running, "
                + (f"{c[Status.WAITING]} waiting at a rung, " if c[Status.WAITING] else "")
                + (f"{c[Status.RETRYING]} retrying, " if c[Status.RETRYING] else "")
                + f"{c[Status.PENDING]} pending, {c[Status.FAILED]} failed"
                + (f", {c[Status.INTERRUPTED]} interrupted" if c[Status.INTERRUPTED] else ""))
        best = self.best()
        if best is not None:
            text += f" | best {self.metric} {best[0]:.4f} {best[1]}"
        else:
            so_far = self.best_so_far()
            if so_far is not None:
                text += f" | best so far {self.metric} {so_far[0]:.4f} {so_far[1]} (epoch {so_far[2]})"
        trained, left = self.ledger.trained(), self.left()
        if c[Status.RUNNING] and not self.ended and self.first_report is not None and trained > 0 and left > 0:
            since, done_then = self.first_report
            if trained > done_then and now > since:
                rate = (trained - done_then) / (now - since)
                text += f" | ~{_duration(left / rate)} left"
        return text

    def left(self) -> float:
        """Epochs left to train: every trial not ended yet, from where it stands (Outlook)."""
        return sum(self.outlook.left(k, max(e.epochs_done, e.start)) for k, e in self.ledger.entries.items()
                   if e.status not in (*ENDED, Status.INTERRUPTED))

    def _print(self, prefix: str = "") -> None:
        print(prefix + self.line(), file=self.out, flush=True)
        self.last = self.clock()

    def on_trial_start(self, iteration, trials, trial, **info):
        for cfg in members(trial):
            self.names[cfg.config_hash] = cfg.name
        self.starting.update(self.ledger.changed)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        # Keyed by configuration: a fused bundle counts as its members.
        report = TrialReport.from_dict(result)
        key = report.config_hash
        if key in self.starting:
            # Each start says where it continues from: a rerun, or a retry after its worker or node died.
            self.starting.discard(key)
            if report.resumed_from:
                print(f"resumed {self.names[key]} from epoch {report.resumed_from}", file=self.out, flush=True)
        if self.first_report is None:
            self.first_report = (self.clock(), self.ledger.trained())
        value = result[_REPORTED[self.metric]]
        # Epoch 0 is before training; a diverged epoch's figures are not the trial's.
        if report.epoch > 0 and report.status != Status.DIVERGED and value is not None and math.isfinite(value):
            self.latest[key] = (value, self.names[key], report.epoch)
        if report.status in ENDED_BY_REPORT:
            self._print(f"{report.status} {self.names[key]}: {report.reason}\n")

    def on_trial_complete(self, iteration, trials, trial, **info):
        completed = [cfg for cfg in members(trial) if self.ledger.changed.get(cfg.config_hash) == Status.COMPLETED]
        if completed:  # members that diverged or stopped said so when they did
            self._print(f"finished {bundle_name(completed)}\n")

    def _failed(self, trial) -> None:
        attempt = self.failures.attempt(trial)
        if attempt.retried:
            then = Status.RETRYING.value
        else:
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
