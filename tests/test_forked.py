"""sweep.view.forked: a function in a forked process, its answer or its failure back in this one."""
import io
import os
import signal

import pytest

from sweep.view import forked
from sweep.cli import CliError
from sweep.view.forked import Forked


@pytest.mark.parametrize("fork", [True, False])
def test_the_answer_comes_back_from_the_process_that_computed_it(fork):
    child = Forked(lambda: (os.getpid(), {"rows": list(range(5))}), fork=fork)
    pid, value = child.result()
    assert value == {"rows": [0, 1, 2, 3, 4]}
    assert (pid != os.getpid()) == fork


@pytest.mark.parametrize("fork", [True, False])
def test_a_failure_is_raised_here_as_it_was_raised_there(fork):
    def bad_option():
        raise CliError("--epochs: no statistics for epoch 7; available: 0, 1", 2)

    with pytest.raises(CliError) as failed:
        Forked(bad_option, fork=fork).result()
    assert (str(failed.value), failed.value.code) == ("--epochs: no statistics for epoch 7; available: 0, 1", 2)


def test_a_failure_that_cannot_be_pickled_arrives_as_its_text():
    class Local(Exception):  # defined in a function: pickle cannot find it by name
        pass

    def fails():
        raise Local("the database is locked")

    with pytest.raises(RuntimeError, match="^Local: the database is locked\nin the forked process:\nTraceback"):
        Forked(fails).result()


def test_a_child_that_dies_without_an_answer_is_an_error():
    with pytest.raises(RuntimeError, match=r"^drawing x.png ended without an answer \(exit status -9\)$"):
        Forked(lambda: os.kill(os.getpid(), signal.SIGKILL), what="drawing x.png").result()


def test_reap_waits_for_the_child_and_drops_its_failure():
    child = Forked(lambda: 1 / 0)
    child.reap()
    assert child.pid is None
    with pytest.raises(ZeroDivisionError):  # still there for result()
        child.result()


@pytest.mark.parametrize("cores, loadavg, spare", [
    (2, "0.90 1.20 1.50 2/345 6789\n", True),  # a core free over the last minute, though not this instant
    (2, "2.90 2.20 1.50 1/345 6789\n", True),  # a busy minute, but nothing else runnable now
    (2, "2.90 2.20 1.50 2/345 6789\n", False),  # busy by both counts
    (1, "0.00 0.00 0.00 1/345 6789\n", False),  # one core: nothing to spare
    (4, "3.60 3.00 3.00 3/345 6789\n", True),
    (4, "3.60 3.00 3.00 4/345 6789\n", False),
])
def test_spare_core_wants_a_core_free_over_the_last_minute_or_now(monkeypatch, cores, loadavg, spare):
    monkeypatch.setattr(forked.os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(forked.os, "getloadavg", lambda: tuple(float(x) for x in loadavg.split()[:3]))
    monkeypatch.setattr(forked, "open", lambda path: io.StringIO(loadavg), raising=False)
    assert forked.spare_core() is spare
