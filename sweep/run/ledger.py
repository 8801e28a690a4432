"""The run's ledger: every trial a run trains and where each stands, the one status machine of a run (the
statuses: sweep/status.py). The recorder writes what it says to the database; the progress line counts it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from ray.tune import Callback

from sweep.spec.grid import TrialConfig
from sweep.run.recorder import ROOT, Failures, members
from sweep.status import ENDED, ENDED_BY_REPORT, Status, TrialReport


@dataclass
class Entry:
    """One configuration in the run's ledger."""

    status: Status
    start: int              # the epoch it starts this run at (0 fresh; its first report's `resumed_from`)
    epochs_done: int        # the latest epoch it reported (or `start`)
    started: bool = False   # Tune started its Ray trial in this run
    reported: bool = False  # it has reported in this run


class Ledger(Callback):
    """The run's trials and where each stands: the one status machine of a run. A Ray Tune callback, first in
    the run's list, so that the recorder (which writes the statuses) and the progress line (which counts them)
    read one account of each event: `changed` holds what the event being handled changed.

    `starts`: config hash -> the epoch it starts at, for every trial this run trains; `failures`
    (recorder.Failures) tells which failed attempt is a trial's last."""

    def __init__(self, starts: Mapping[str, int], failures: Failures | None = None):
        self.entries = {key: Entry(Status.PENDING, start, start) for key, start in starts.items()}
        self.failures = failures or Failures(ROOT, 0)
        self.changed: dict[str, Status] = {}

    @classmethod
    def of(cls, trials: Iterable[TrialConfig], failures: Failures | None = None) -> "Ledger":
        """A ledger of `trials`, each starting fresh."""
        return cls({t.config_hash: 0 for t in trials}, failures)

    def __getstate__(self):
        # Tune pickles its callbacks into the experiment state; the failures' log does not pickle.
        return {**self.__dict__, "failures": None}

    # -- what one configuration's entry says --

    def status(self, key: str) -> Status:
        return self.entries[key].status

    def ended(self, key: str) -> bool:
        return self.entries[key].status in ENDED

    def settled(self, key: str) -> bool:
        """Ended, or waiting at a halving rung (its report said so: the end of its Ray trial changes nothing)."""
        return self.ended(key) or self.entries[key].status == Status.WAITING

    def trained(self) -> int:
        """Epochs trained in this run (a resumed trial counts from where it started)."""
        return sum(e.epochs_done - e.start for e in self.entries.values())

    def counts(self) -> dict[Status, int]:
        counts = {s: 0 for s in Status}
        for e in self.entries.values():
            counts[e.status] += 1
        return counts

    # -- the events, as Ray Tune calls back (trial: a Ray trial; its members' config hashes are `keys`) --

    def _set(self, key: str, status: Status) -> None:
        self.entries[key].status = status
        self.changed[key] = status

    def start(self, keys: list[str]) -> None:
        """Tune started (or restarted) the trial of `keys`: those not ended run."""
        self.changed = {}
        for key in keys:
            if not self.ended(key):
                self.entries[key].started = True
                self._set(key, Status.RUNNING)

    def report(self, report: TrialReport) -> None:
        """A member's report: its epoch, and its end where the report says it ended."""
        self.changed = {}
        entry = self.entries[report.config_hash]
        if not entry.reported:
            entry.start = entry.epochs_done = report.resumed_from or entry.start
            entry.reported = True
        entry.epochs_done = max(entry.epochs_done, report.epoch)
        if report.status in ENDED_BY_REPORT:
            self._set(report.config_hash, report.status)

    def end(self, keys: list[str], status: Status) -> None:
        """The trial of `keys` ended as `status`: the members not already ended (by their own report) end so."""
        self.changed = {}
        for key in keys:
            if not self.settled(key):
                self._set(key, status)

    def settle(self, key: str, status: Status) -> None:
        """A verdict of the run's own between waves (halving): the trial stopped at its rung, or waits there."""
        self.changed = {}
        self._set(key, status)

    def retry(self, keys: list[str]) -> None:
        """The trial's attempt failed and it will start again."""
        self.changed = {}
        for key in keys:
            if self.entries[key].status == Status.RUNNING:
                self._set(key, Status.RETRYING)

    def end_run(self) -> dict[str, Status]:
        """The run is over: a trial it started that has no final status is interrupted (its checkpoint lets the
        next run continue it), one never started stays pending. Those changes, by config hash."""
        self.changed = {}
        for key, e in self.entries.items():
            if not self.settled(key):
                self._set(key, Status.INTERRUPTED if e.started else Status.PENDING)
        return dict(self.changed)

    # As Ray Tune calls back: first of the run's callbacks, so that the others read what each event changed.

    def on_trial_start(self, iteration, trials, trial, **info):
        self.start(_keys(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.report(TrialReport.from_dict(result))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.end(_keys(trial), Status.COMPLETED)

    def on_trial_recover(self, iteration, trials, trial, **info):
        if self.failures.attempt(trial).retried:
            self.retry(_keys(trial))
        else:  # its last attempt: none left, or a failure no retry can fix (the sweep halts: HaltSweep)
            self.end(_keys(trial), Status.FAILED)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.end(_keys(trial), Status.FAILED)


def _keys(trial) -> list[str]:
    """The config hashes a Ray trial trains: one, or a fused bundle's members."""
    return [cfg.config_hash for cfg in members(trial)]
