"""The driver-side writer: the Ray Tune callback that records results (the progress line: sweep/run/progress.py).

Workers never open the database (on a cluster they cannot reach the file);
the driver is the single writer, so SQLite never sees a second one.
Everything is keyed by the configuration's hash, never by process: a fused
bundle (several configurations in one Ray trial) reports each member's epochs
under its own hash, and every member is a trial of its own in the database.

Failures: Ray Tune logs each failed attempt of a trial with its whole
traceback (wrapped in Ray's own text, with terminal colours). RayLog sends
Ray's logging to the sweep's log file instead of the terminal and keeps each
attempt's exception; Failures turns it into the root cause as a user would
write it (`OSError: [Errno 28] No space left on device` and the trial's own
last frame), tells a failure no retry can fix (a full or read-only output
folder) from an ordinary one, and HaltSweep then ends the sweep instead of
retrying into the same full disk.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ray.tune import Callback
from ray.tune.stopper import Stopper
from sqlalchemy import Engine

from sweep.db.engine import session_scope
from sweep.db.queries import record_results, record_rungs, update_trial, update_trials, utcnow
from sweep.spec.grid import TrialConfig, bundle_name
from sweep.status import ENDED, ENDED_BY_REPORT, STORED, Status, TrialReport

if TYPE_CHECKING:
    from sweep.run.ledger import Ledger


def members(trial) -> list[TrialConfig]:
    """The configurations a Ray trial trains: one, or a fused bundle's members."""
    return [TrialConfig.from_dict(d) for d in trial.config["bundle"]]


def _name(trial) -> str:
    return bundle_name(members(trial))


# --- What went wrong in a trial ------------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+), in (?P<func>.+)$')
# A raised exception's line, as Python prints it: `OSError: [Errno 28] ...`, `sweep.run.trial.CheckpointMismatch: ...`
# (the type has no spaces, which tells it from a message's own lines such as Ray's `Worker exit type: ...`).
_RAISED = re.compile(r"^(?P<type>[A-Za-z_][\w.]*(?:\([\w.]+\))?)(?:: (?P<message>.*))?$")
_ERRNO = re.compile(r"\[Errno (\d+)\]")
_FILENAME = re.compile(r"\]\s.*?: '(?P<file>/[^']*)'$")
# torch.save's C++ writer failing on a full disk: `[enforce fail at inline_container.cc:672] . unexpected pos 30656
# vs 30544`, or `PytorchStreamWriter failed writing file data/0: file write failed`. The same cause as ENOSPC,
# seen from another layer; told apart from other enforce failures by the output folder's free space.
_TORCH_WRITE = re.compile(r"inline_container\.cc.*unexpected pos|PytorchStreamWriter failed writing|file write failed")
FULL_BELOW = 1 << 20  # bytes free under which a failed torch.save counts as a full disk
# The project's own code (a trial's frames in these packages are "its own"; Ray's, torch's are not).
ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGES = ("sweep",)
# What Tune's controller logs, with the exception, for every failed attempt (TUNE_PRINT_ALL_TRIAL_ERRORS=1).
_TUNE_FAILED = "Trial task failed for trial "


def _own_frame(path: str) -> str | None:
    """`path` as the project names it (`sweep/run/trial.py`) if it is one of the project's files, else None.
    Judged by its package and file, so that a worker whose copy of the project lives elsewhere still counts."""
    parts = Path(path).parts
    for k in range(len(parts) - 2, -1, -1):
        if parts[k] in PACKAGES and (ROOT.joinpath(*parts[k:])).is_file():
            return "/".join(parts[k:])
    return None


@dataclass(frozen=True)
class TrialError:
    """A failed attempt's cause: the exception's type and message (first line) and the trial's own last frame."""

    type: str
    message: str
    frame: str | None = None  # `  File "sweep/run/trial.py", line 53, in _save` and its source line

    @property
    def line(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type

    @property
    def text(self) -> str:
        """For trials.error: where in the trial it happened, then the cause as a user would write it: a
        traceback of one frame, in Python's order (the cause last, as a report's one-line view reads it)."""
        return (f"{self.frame}\n" if self.frame else "") + self.line

    @property
    def errno(self) -> int | None:
        """An OSError's number (its message starts `[Errno 28] ...`), else None."""
        found = _ERRNO.match(self.message)
        return int(found.group(1)) if found else None

    @property
    def filename(self) -> str | None:
        found = _FILENAME.search(self.message)
        return found.group("file") if found else None


def parse_error(text: str) -> TrialError:
    """The cause of a failure from its traceback text (an exception's, or Tune's error.txt): the last raised
    exception's line, Ray's wrapper and terminal colours taken away, and the last of the project's frames
    before it."""
    lines = [line.rstrip() for line in _ANSI.sub("", text).splitlines()]
    # `Type: message`, or a bare `Type` (an exception without a message) closing a traceback.
    raised = [i for i, line in enumerate(lines) if _RAISED.match(line)
              and (":" in line or (i > 0 and lines[i - 1][:1].isspace()))]
    if not raised:
        first = next((line.strip() for line in lines if line.strip()), "")
        return TrialError("Error", first or "the trial failed without a message")
    i = raised[-1]
    match = _RAISED.match(lines[i])
    kind, message = match.group("type"), (match.group("message") or "").strip()
    inner = re.fullmatch(r"(?:ray\.exceptions\.)?RayTaskError\((?P<cause>[\w.]+)\)", kind)
    if inner:  # only Ray's header line was found (it names the process, not the cause): the cause's type
        kind, message = inner.group("cause"), ""
    frame = None
    for k in range(i - 1, -1, -1):
        found = _FRAME.match(lines[k])
        own = found and _own_frame(found.group("path"))
        if own:
            frame = f'  File "{own}", line {found.group("line")}, in {found.group("func")}'
            source = lines[k + 1].strip() if k + 1 < i else ""
            if source and not _FRAME.match(lines[k + 1]) and set(source) - set("^~ "):
                frame += f"\n    {source}"
            break
    return TrialError(kind, message, frame)


def error_of(exc: BaseException) -> TrialError:
    """The cause of a failure from the exception Tune caught: a RayTaskError carries the trial's traceback
    (its text ends with the trial's own exception); anything else (a worker that died) is its type and message."""
    return parse_error(f"{type(exc).__name__}: {exc}")


def _error_file_text(trial) -> str | None:
    """The latest failure in Tune's error file of the trial (None where it could not be written, e.g. a full disk)."""
    try:
        with open(trial.error_file) as fh:
            text = fh.read()
    except (OSError, TypeError):
        return None
    if not text.strip():
        return None
    latest = text.rsplit("Failure # ", 1)[-1]  # `Failure # 2 (occurred at ...)` and the error, once per attempt
    return latest.split("\n", 1)[1] if "\n" in latest else latest


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    # root may write into the blocks kept back for it; everyone else only into f_bavail.
    return (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize


def _inside(path: str, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def unfixable(error: TrialError, output: Path) -> str | None:
    """What to do, in one line, when no retry can fix `error` (a full, read-only or missing output folder, or
    an import that fails: the same code fails the same way on every attempt);
    None for an ordinary failure, which keeps its retries."""
    again = "run `sweep run` again; finished epochs are kept"
    if error.type.rpartition(".")[2] in ("ImportError", "ModuleNotFoundError"):
        return (f"a trial cannot import what it needs ({error.line}): fix the Python environment the trials run "
                f"in (on a cluster, every node's) and {again}")
    code = error.errno
    if code is None and _TORCH_WRITE.search(error.message):
        free = _free_bytes(output)
        code = errno.ENOSPC if free is not None and free < FULL_BELOW else None
    where = f"output folder {output}"
    if error.filename and not _inside(error.filename, output):
        where = f"folder {Path(error.filename).parent} (writing {error.filename})"
    if code == errno.ENOSPC:
        return f"{where} is full: free space and {again}"
    if code == errno.EDQUOT:
        return f"{where} is over its disk quota: free space (or raise the quota) and {again}"
    if code == errno.EROFS:
        return f"{where} is on a read-only file system: make it writable and {again}"
    if code in (errno.ENOENT, errno.EACCES, errno.EPERM):
        if not output.is_dir():
            return f"output folder {output} is missing: restore (or mount) it and {again}"
        if not os.access(output, os.W_OK | os.X_OK):
            return f"output folder {output} is not writable: make it writable and {again}"
    return None


@dataclass(frozen=True)
class Attempt:
    """One failed attempt of a Ray trial (a single configuration or a fused bundle)."""

    name: str
    number: int  # 1 for the first attempt
    of: int  # attempts allowed: max_failures + 1
    error: TrialError
    halt: str | None  # what to do, when no retry can fix it

    @property
    def retried(self) -> bool:
        return self.halt is None and self.number < self.of


class _Catch(logging.Handler):
    """Keeps the exception of each failed attempt Tune's controller logs (by trial name)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.caught: dict[str, BaseException] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None and message.startswith(_TUNE_FAILED):
            self.caught[message[len(_TUNE_FAILED):]] = record.exc_info[1]


class _QuietFile(logging.FileHandler):
    """The sweep's log file: a log that cannot be written (a full disk) says nothing on the terminal; `lost`
    says why records were lost."""

    lost: str | None = None

    def emit(self, record) -> None:
        self.lost = None  # says what happened to the latest record
        super().emit(record)

    def handleError(self, record) -> None:
        exc = sys.exc_info()[1]
        self.lost = (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) or "write failed"


class RayLog:
    """While a sweep runs: Ray's logging (Tune's tracebacks of failed attempts, its warnings) goes to the
    sweep's log file `path` instead of the terminal, unless `verbose`; every failed attempt's exception is
    kept for Failures. Restored as it was afterwards."""

    def __init__(self, path: Path, verbose: bool = False):
        self.path, self.verbose = path, verbose
        self.catch = _Catch()
        self.file: logging.Handler | None = None
        self.saved: tuple | None = None

    def __enter__(self) -> "RayLog":
        os.environ["TUNE_PRINT_ALL_TRIAL_ERRORS"] = "1"  # Tune logs every failed attempt with its exception
        ray_logger = logging.getLogger("ray")
        self.saved = (list(ray_logger.handlers), ray_logger.level, ray_logger.propagate)
        self.file = _QuietFile(self.path, delay=True)
        self.file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        if not self.verbose:
            for handler in list(ray_logger.handlers):
                ray_logger.removeHandler(handler)
        ray_logger.addHandler(self.file)
        ray_logger.addHandler(self.catch)
        ray_logger.setLevel(min(ray_logger.level or logging.WARNING, logging.WARNING))
        ray_logger.propagate = False
        return self

    def __exit__(self, *exc) -> None:
        ray_logger = logging.getLogger("ray")
        handlers, level, propagate = self.saved
        for handler in list(ray_logger.handlers):
            ray_logger.removeHandler(handler)
        for handler in handlers:
            ray_logger.addHandler(handler)
        ray_logger.setLevel(level)
        ray_logger.propagate = propagate
        try:
            self.file.close()
        except OSError:  # what could not be written (a full disk) stays unwritten
            pass


class Failures:
    """Each failed attempt of the sweep's trials, read once and shared by the recorder (statuses, errors, the
    decision to halt) and the progress printer (one line per attempt)."""

    def __init__(self, output: Path, max_failures: int, log: RayLog | None = None):
        self.output = Path(output).resolve()
        self.attempts_allowed = max_failures + 1
        self.log = log
        self.halt: str | None = None  # the first unfixable failure's line: the sweep ends
        self.seen: dict[tuple[str, int], Attempt] = {}

    def attempt(self, trial) -> Attempt:
        """The attempt of `trial` that just failed (Tune calls back once per failure)."""
        name = _name(trial)
        number = max(1, int(getattr(getattr(trial, "run_metadata", None), "num_failures", 1) or 1))
        key = (name, number)
        if key not in self.seen:
            exc = self.log.catch.caught.pop(name, None) if self.log is not None else None
            if exc is not None:
                error = error_of(exc)
            else:
                text = _error_file_text(trial)
                error = parse_error(text) if text else TrialError("Error", "the trial failed (no error was recorded)")
            halt = unfixable(error, self.output)
            if halt is not None and error.errno is None and _TORCH_WRITE.search(error.message):
                # torch.save's writer on a full disk: the cause as the other layers say it, torch's words after
                error = TrialError("OSError", f"[Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)} "
                                              f"(torch.save said: {error.message})", error.frame)
            if halt is not None and self.halt is None:
                self.halt = halt
            self.seen[key] = Attempt(name, number, self.attempts_allowed, error, halt)
        return self.seen[key]

    def where(self) -> str:
        """Where the full traceback is, as the terminal shows it (relative to the working folder if inside)."""
        if self.log is None:
            return "traceback in Tune's error.txt of the trial"
        path = os.path.abspath(self.log.path)
        rel = os.path.relpath(path)
        shown = rel if not rel.startswith("..") else path
        if self.log.file is not None and self.log.file.lost:
            return f"traceback not kept: {shown}: {self.log.file.lost}"
        return f"traceback in {shown}"


class HaltSweep(Stopper):
    """Ends the sweep (Tune stops every running trial, as on Ctrl-C) once a failure no retry can fix happened."""

    def __init__(self, failures: Failures):
        self.failures = failures

    def __getstate__(self):  # Tune pickles its stopper with the experiment; a restored one never halts
        return {"failures": None}

    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.failures is not None and self.failures.halt is not None


class DatabaseRecorder(Callback):
    """Writes every reported epoch, layer statistic and status change: the changes the run's `ledger` (a
    callback before this one) made of each event.

    Under Ray the reports are written in batches, one transaction each: Tune hands the driver one event
    per step and calls on_step_end after it (at least every 0.1 s), where a batch is written once its
    oldest report has waited `max_delay` seconds or it holds `max_rows` statistics rows. A commit per
    report capped the driver below what hundreds of trials produce; batches keep it well above that
    (docs/benchmarks.md, "Big sweeps (2-core CPU, 24 GiB)"), with every report in the database within
    max_delay (+ one step) of its arrival.
    Anything pending is written before a status change and at the experiment's end; a driver killed
    with reports pending loses nothing either: trials send their last epochs again on resume.
    `record` (no Ray) writes at once.

    A failed attempt that no retry can fix (Failures.halt) is the trial's last: it is recorded failed at
    once, and HaltSweep ends the sweep.
    """

    def __init__(self, engine: Engine, trial_ids: dict[str, int], ledger: "Ledger", max_delay: float = 0.2,
                 max_rows: int = 20_000, clock: Callable[[], float] = time.monotonic, failures: Failures | None = None):
        self.engine = engine
        self.trial_ids = trial_ids
        self.ledger = ledger
        self.max_delay, self.max_rows, self.clock = max_delay, max_rows, clock
        self.failures = failures or Failures(ROOT, 0)
        self.queued: list[dict[str, Any]] = []
        self.queued_rows = 0
        self.queued_since = 0.0

    def __getstate__(self):
        # Tune pickles its callbacks into the experiment state; an engine
        # does not pickle and is never needed from there.
        return {**self.__dict__, "engine": None, "clock": None, "queued": [], "failures": None}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.flush()
        with session_scope(self.engine) as s:
            for key, status in self.ledger.changed.items():  # running: the members not ended already
                update_trial(s, self.trial_ids[key], status=status, started_at=utcnow(), error=None)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if not self.queued:
            self.queued_since = self.clock()
        self.queued.append(result)
        self.queued_rows += len(result["layer_stats"])
        self._flush_if_due()

    def on_step_end(self, iteration, trials, **info):
        self._flush_if_due()

    def on_experiment_end(self, trials, **info):
        self.flush()

    def _flush_if_due(self) -> None:
        if self.queued and (self.queued_rows >= self.max_rows or self.clock() - self.queued_since >= self.max_delay):
            self.flush()

    def flush(self) -> None:
        """Write the pending reports in one transaction."""
        if self.queued:
            batch, self.queued, self.queued_rows = self.queued, [], 0
            self.record_many(batch)

    def record(self, result: dict[str, Any]) -> None:
        """Store one report of run_trial at once (also used without Ray, e.g. by tests)."""
        self.flush()
        self.record_many([result])

    def record_many(self, results: list[dict[str, Any]]) -> None:
        """Store reports of run_trial (TrialReport.as_dict, with whatever Ray added), in order, in one
        transaction."""
        reports = [TrialReport.from_dict(r) for r in results]
        with session_scope(self.engine) as s:
            record_results(s, [(self.trial_ids[r.config_hash], {
                "epoch": r.epoch, "images_seen": r.images_seen, "train_loss": r.train_loss,
                "test_loss": r.test_loss, "test_acc": r.test_acc, "wall_seconds": r.epoch_seconds,
                "val_loss": r.val_loss, "val_acc": r.val_acc,
            }, r.layer_stats) for r in reports])
            record_rungs(s, [(self.trial_ids[r.config_hash], r.rung) for r in reports if r.rung])
            update_trials(s, [(self.trial_ids[r.config_hash], _trial_values(r)) for r in reports])

    def record_statuses(self, statuses: dict[str, Status], **values) -> None:
        """Each trial's new status (config hash -> status; those never stored, such as retrying, left out)."""
        self.flush()
        with session_scope(self.engine) as s:
            for key, status in statuses.items():
                if status in STORED:
                    ended = {"finished_at": utcnow()} if status in ENDED else {}
                    update_trial(s, self.trial_ids[key], status=status, **ended, **values)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.record_statuses(self.ledger.changed)  # completed: the members not ended by their own report

    def on_trial_recover(self, iteration, trials, trial, **info):
        if self.ledger.changed:  # its last attempt (failed), or retrying: nothing stored
            self.record_statuses(self.ledger.changed, error=self.failures.attempt(trial).error.text)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.record_statuses(self.ledger.changed, error=self.failures.attempt(trial).error.text)


def _trial_values(report: TrialReport) -> dict[str, Any]:
    """The trial row's columns after this report."""
    values = {
        "epochs_done": report.epoch,
        "images_seen": report.images_seen,
        "train_seconds": report.train_seconds,
        "run_seconds": report.run_seconds,
        "best_test_acc": report.best_test_acc,
        "best_epoch": report.best_epoch,
        "bundle": report.bundle,
        "device": report.device,
        "node": report.node,
    }
    if report.kernels is not None:  # a checkpoint's replay saved before kernels were recorded does not say
        values["kernels"] = report.kernels
    if report.status != Status.DIVERGED:
        # A diverged epoch's own numbers go to epoch_metrics; the trial keeps its last finite final metrics.
        # A stopped trial's last epoch is an ordinary one: its figures count.
        values.update(final_test_acc=report.test_acc, final_test_loss=report.test_loss)
        if report.train_loss is not None:
            values["final_train_loss"] = report.train_loss
    if report.status in ENDED_BY_REPORT:
        values.update(status=report.status, error=report.reason)
        if report.status in ENDED:  # a waiting trial goes on later
            values["finished_at"] = utcnow()
    return values
