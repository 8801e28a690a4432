"""A trial's status: the one type every module spells it with, the one rule for "finished", and its report.

Standard library only: trial workers import it. A status is a `str` (its value is what the database stores, what
`--where status=` takes and what reports print), so it compares equal to the stored text and binds in SQL as is.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class Status(str, Enum):
    """Where a trial stands. Stored in the database: the first eight. The others are read, never stored."""

    PENDING = "pending"          # in the plan, not started (or never started by a run that was interrupted)
    RUNNING = "running"          # training now (or left so by a driver that died)
    COMPLETED = "completed"      # trained every epoch of the run that started it
    FAILED = "failed"            # its attempts ran out, or a failure no retry can fix ended it
    DIVERGED = "diverged"        # its loss became NaN or infinite: it ends there (a seeded rerun diverges again)
    INTERRUPTED = "interrupted"  # the run was stopped (Ctrl-C, SIGTERM) while it trained: it continues next run
    STOPPED = "stopped"          # a stop rule, ASHA or halving ended it after an epoch
    WAITING = "waiting"          # halving: it reached a rung and waits, holding no worker, for its population there
    # Never stored:
    RETRYING = "retrying"        # the progress line: its attempt failed and it waits to start again
    RELEASED = "released"        # read_state: stopped, but its stop no longer holds under the spec's `stop:`
    UNFINISHED = "unfinished"    # the report: completed a shorter `epochs` than the sweep's

    __str__ = str.__str__
    __format__ = str.__format__


STORED = tuple(Status)[:8]
# A trial's own report sets these (it leaves its bundle there); the end of its Ray trial must not overwrite them.
ENDED_BY_REPORT = (Status.DIVERGED, Status.STOPPED, Status.WAITING)
# The run is done with the trial: it trained as far as it will (the progress line's "done"), or it failed.
ENDED = (Status.COMPLETED, Status.DIVERGED, Status.STOPPED, Status.FAILED)


def finished(status, epochs_done, epochs):
    """Whether a trial is finished for a sweep of `epochs` epochs: it diverged (a seeded rerun diverges again), or
    its figures reach the sweep's last epoch, whatever ended it (a failure or an interruption after that epoch's
    report leaves nothing to train). Elementwise for pandas Series (`status`, `epochs_done`) as well as for one
    trial.

    Resume (runner.make_plan: a finished trial is skipped), the report (results.py: a finished trial is
    aggregated) and the progress line decide with it. A trial stopped before its last epoch is not finished:
    the report reads it at its stop (`stopped_early`), a run leaves it alone unless told to resume it."""
    return (status == Status.DIVERGED) | (epochs_done >= epochs)


def stopped_early(status, epochs_done, epochs):
    """Stopped by a stop rule before the sweep's last epoch (elementwise for pandas Series, like `finished`)."""
    return (status == Status.STOPPED) & (epochs_done < epochs)


@dataclass(frozen=True)
class TrialReport:
    """What a trial reports once before training (epoch 0) and after each epoch: one member of a bundle, keyed by
    its config hash. Built by keyword in one place (trial._Member.result); crosses Ray as a dict (`as_dict`,
    `from_dict`: Ray adds keys of its own) and is kept in the checkpoint as one, to be replayed on resume."""

    config_hash: str
    epoch: int
    images_seen: int
    train_loss: float | None       # the epoch's mean training loss (None at epoch 0)
    test_loss: float
    test_acc: float
    epoch_seconds: float
    train_seconds: float
    run_seconds: float
    best_test_acc: float | None
    best_epoch: int | None
    layer_stats: list              # the epoch's statistics rows (trial._stats_rows)
    status: Status                 # RUNNING, or the status it ends with (ENDED_BY_REPORT)
    device: str
    kernels: str | None = None     # sweep.models.kernels: which kernels its steps run on (None: saved before it was)
    val_loss: float | None = None  # with a validation split
    val_acc: float | None = None
    best_val_acc: float | None = None
    reason: str | None = None      # why it ended, for DIVERGED and STOPPED
    resumed_from: int | None = None  # the epoch its checkpoint continued from (None for a fresh start)
    bundle: str | None = None      # its fused bundle's name (None alone)
    node: str | None = None        # its Ray node (None outside Ray)
    rung: dict | None = None       # an ASHA decision made at this epoch (db.queries.record_rungs)

    def as_dict(self) -> dict[str, Any]:
        """Plain values only (the status as its text): a checkpoint loads them with weights_only=True."""
        return {**{name: getattr(self, name) for name in _FIELDS}, "status": self.status.value}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialReport":
        """The report in `d` (a Ray result, a checkpoint's replay), its other keys left out."""
        values = {name: d[name] for name in _FIELDS if name in d}
        values["status"] = Status(values["status"])
        return cls(**values)


_FIELDS = tuple(TrialReport.__dataclass_fields__)
