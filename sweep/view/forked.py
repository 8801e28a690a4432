"""A function run in a forked process while this one goes on: `sweep plot` reads the database in one
process while the other imports matplotlib, then draws its biggest picture in one while the other draws
the rest. Drawing and importing are Python holding the GIL, so threads would take turns.

    reading = Forked(read)        # read() runs in a child, from now on
    ...                           # this process goes on
    frames = reading.result()     # read()'s return value, or its exception raised here

The child shares this process's memory (copy on write), so whatever it needs is already there; it sends
its return value back pickled through a pipe and leaves with os._exit (no atexit handlers, no second flush
of this process's buffers). Start one with no other thread running (a lock held by one at the fork stays
held in the child). The engines of db.engine open connections of their own in the child (at fork).

With fork=False (a platform without os.fork, or no spare core) the function runs at once, in this process,
and result() gives what it gave: the same calls serve both.
"""
from __future__ import annotations

import os
import pickle
import sys
import traceback
from typing import Any, Callable


def spare_core() -> bool:
    """Whether a second process would find a core of its own: at least two cores, and either the load
    average of the last minute leaves half a core or more, or at most cores - 1 processes are runnable
    now (this one included; /proc/loadavg, where there is one). Only a machine full by both counts is
    busy: there the fork and the pages it copies only add to the wall time (docs/benchmarks.md, "Big sweeps
    (2-core CPU, 24 GiB)"). The minute's average alone lags: right after a `sweep plot` it still counts that
    plot's two processes, and a single reading of the runnable count catches passing ones."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    try:
        with open("/proc/loadavg") as f:
            runnable = int(f.read().split()[3].split("/")[0])  # "0.52 0.58 0.59 2/345 6789": 2 runnable
    except (OSError, IndexError, ValueError):
        runnable = cores
    return cores >= 2 and (load <= cores - 0.5 or runnable <= cores - 1)


class Forked:
    """`function()` run in a forked child (with `fork`, where os.fork exists), else here at once.

    result() waits for the child and returns what the function returned, or raises what it raised (with
    the child's traceback as a note where exceptions take notes: Python 3.11 on). A child that dies
    without an answer (killed, out of memory) is a RuntimeError naming `what` and its exit status.
    """

    def __init__(self, function: Callable[[], Any], fork: bool = True, what: str = "a forked process"):
        self.what = what
        self.pid = None
        if not (fork and hasattr(os, "fork")):
            try:
                self.answer = (True, function())
            except Exception as exc:
                self.answer = (False, exc)
            return
        sys.stdout.flush()
        sys.stderr.flush()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: the function, its answer, then gone
            os.close(read)
            try:
                try:
                    answer = pickle.dumps((True, function()))
                except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
                    answer = _pickled_failure(exc)
                with os.fdopen(write, "wb") as pipe:
                    pipe.write(answer)
            finally:
                os._exit(0)
        os.close(write)
        self.pid, self.pipe = pid, read

    def reap(self) -> None:
        """Wait for the child, its answer dropped (where this process has an error of its own to raise)."""
        try:
            self.result()
        except Exception:
            pass

    def result(self) -> Any:
        if self.pid is not None:
            with os.fdopen(self.pipe, "rb") as pipe:
                data = pipe.read()
            code = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
            self.pid = None
            if not data:
                self.answer = (False, RuntimeError(f"{self.what} ended without an answer (exit status {code})"))
            else:
                self.answer = pickle.loads(data)
        ok, value = self.answer
        if ok:
            return value
        raise value


def _pickled_failure(exc: BaseException) -> bytes:
    """(False, the exception) pickled, the child's traceback attached; an exception that cannot be pickled
    becomes a RuntimeError with its text."""
    text = "".join(traceback.format_exception(exc))
    try:
        if hasattr(exc, "add_note"):
            exc.add_note(f"in the forked process:\n{text}")
        return pickle.dumps((False, exc))
    except Exception:
        return pickle.dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}\nin the forked process:\n{text}")))
