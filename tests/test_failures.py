"""What a failed trial leaves: its cause as a user would write it (no Ray wrapper, no colours), whether a retry
could fix it, and the statuses the recorder writes (failed, halted, stopped by a stop rule)."""
import errno
import json
import logging
import os
import sqlite3
import traceback
from pathlib import Path
from types import SimpleNamespace

import pytest
from ray.exceptions import RayTaskError

from sweep.db.engine import init_db, make_engine
from sweep.run import recorder
from events import Events
from sweep.data.datasets import synthetic
from sweep.spec.grid import expand_grid
from sweep.run.ledger import Ledger
from sweep.analysis.report import short_error
from sweep.run.recorder import DatabaseRecorder, Failures, HaltSweep, RayLog, TrialError, error_of, parse_error, unfixable
from sweep.run.records import record_plan
from sweep.spec.spec import parse_spec
from sweep.run.trial import run_trial

TRIAL_PY = Path(__file__).resolve().parent.parent / "sweep" / "run" / "trial.py"
AGAIN = "run `sweep run` again; finished epochs are kept"


def small_spec(tmp_path: Path, activations=("relu",)):
    return parse_spec({"name": "e", "dataset": {"name": "synthetic", "train_limit": 64, "test_limit": 32},
                       "epochs": 2, "batch_size": 32, "stats_every": 1,
                       "grid": {"activation": list(activations), "optimizer": [{"name": "sgd", "lr": 0.1}]},
                       "output": str(tmp_path / "out")})


def as_ray_raises_it(exc: BaseException, formatted: str) -> BaseException:
    """`exc`, raised in a trial, as the driver receives it from Ray: a RayTaskError carrying the trial's
    traceback text under Ray's coloured header, that is also an instance of the cause's class."""
    return RayTaskError("ImplicitFunc.train", formatted, exc, proctitle="ray::ImplicitFunc.train()", pid=4242,
                        ip="127.0.0.1", actor_repr="ray_trainable", actor_id="ab" * 14).as_instanceof_cause()


def failing_trial(tmp_path: Path):
    """Run a real trial whose report raises an ordinary exception; (the exception as Ray hands it over, the
    trial's own last frame as Python recorded it)."""
    cfg, = expand_grid(small_spec(tmp_path))

    def report(result):
        raise ValueError(f"no room for epoch {result['epoch']}")

    try:
        run_trial(cfg, synthetic(64, 32), report, tensorboard=False)
    except ValueError as exc:
        own = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(TRIAL_PY)][-1]
        return as_ray_raises_it(exc, traceback.format_exc()), own
    raise AssertionError("the trial did not fail")


def test_the_error_text_of_an_ordinary_exception_inside_a_trial(tmp_path):
    wrapped, own = failing_trial(tmp_path)
    assert isinstance(wrapped, ValueError)
    assert "\x1b[" in str(wrapped) and "ray::ImplicitFunc.train()" in str(wrapped)  # what trials.error held
    error = error_of(wrapped)
    assert error.text == (f'  File "sweep/run/trial.py", line {own.lineno}, in {own.name}\n'
                          f"    {own.line}\n"
                          f"ValueError: no room for epoch 0")
    assert own.line.startswith("self.report(")
    assert error.line == "ValueError: no room for epoch 0"
    assert short_error(error.text) == error.line  # what the report shows of it
    # Read back from Tune's error.txt (the fallback when the exception was not caught on its way): the same.
    error_txt = tmp_path / "error.txt"
    error_txt.write_text(f"Failure # 1 (occurred at 2026-12-01_19-11-13)\nRuntimeError: an earlier attempt\n"
                         f"Failure # 2 (occurred at 2026-12-01_19-11-15)\n{wrapped}\n")
    failures = Failures(tmp_path, max_failures=2)
    attempt = failures.attempt(SimpleNamespace(config={"bundle": [expand_grid(small_spec(tmp_path))[0].to_dict()]},
                                               run_metadata=SimpleNamespace(num_failures=2), error_file=error_txt))
    assert (attempt.error, attempt.number, attempt.of, attempt.halt, attempt.retried) == (error, 2, 3, None, True)


def test_a_failure_without_a_traceback_is_its_type_and_first_line():
    assert error_of(RuntimeError("the actor died unexpectedly\n\tpid: 12")).text == "RuntimeError: the actor died unexpectedly"
    assert parse_error("").text == "Error: the trial failed without a message"
    # An exception without a message closes its traceback with its bare type.
    assert parse_error('Traceback (most recent call last):\n  File "/x/sweep/run/trial.py", line 5, in f\n    g()\n'
                       "KeyError").line == "KeyError"
    # Only Ray's header (it names the process, not the cause): the cause's type alone.
    assert parse_error("RayTaskError(KeyError): ray::ImplicitFunc.train() (pid=1, ip=127.0.0.1)").text == "KeyError"


@pytest.mark.parametrize("message,expected", [
    ("[Errno 28] No space left on device", "output folder {out} is full: free space and " + AGAIN),
    ("[Errno 122] Disk quota exceeded",
     "output folder {out} is over its disk quota: free space (or raise the quota) and " + AGAIN),
    ("[Errno 30] Read-only file system: '{out}/e/x/checkpoint.tmp'",
     "output folder {out} is on a read-only file system: make it writable and " + AGAIN),
    ("[Errno 28] No space left on device: '/dev/shm/x'",
     "folder /dev/shm (writing /dev/shm/x) is full: free space and " + AGAIN),
    ("[Errno 2] No such file or directory: '{out}/e/x/events'", None),  # the folder is there: a retry may do
    ("[Errno 13] Permission denied", None),  # root writes anywhere; the folder is writable
    ("[Errno 5] Input/output error", None),
])
def test_failures_no_retry_can_fix_are_told_apart(tmp_path, message, expected):
    out = tmp_path / "out"
    out.mkdir()
    error = TrialError("OSError", message.format(out=out))
    assert unfixable(error, out) == (expected and expected.format(out=out))
    assert unfixable(TrialError("ValueError", "boom"), out) is None


@pytest.mark.parametrize("kind, message", [
    ("ModuleNotFoundError", "No module named 'sweep.models.fused'; 'sweep' is not a package"),
    ("ImportError", "cannot import name 'LeNet' from 'models.nets'"),
])
def test_an_import_that_fails_in_a_trial_is_unfixable(tmp_path, kind, message):
    assert unfixable(TrialError(kind, message), tmp_path) == (
        f"a trial cannot import what it needs ({kind}: {message}): fix the Python environment the trials run in "
        "(on a cluster, every node's) and " + AGAIN)


def test_a_missing_output_folder_is_unfixable(tmp_path):
    gone = tmp_path / "gone"
    error = TrialError("FileNotFoundError", f"[Errno 2] No such file or directory: '{gone}/e/x/checkpoint.tmp'")
    assert unfixable(error, gone) == f"output folder {gone} is missing: restore (or mount) it and " + AGAIN


def test_torch_save_failing_on_a_full_disk_is_a_full_disk(tmp_path, monkeypatch):
    error = TrialError("RuntimeError", "[enforce fail at inline_container.cc:672] . unexpected pos 30656 vs 30544")
    monkeypatch.setattr(recorder, "_free_bytes", lambda folder: 0)
    assert unfixable(error, tmp_path) == f"output folder {tmp_path} is full: free space and " + AGAIN
    monkeypatch.setattr(recorder, "_free_bytes", lambda folder: 10 << 30)  # space left: some other failure
    assert unfixable(error, tmp_path) is None


# --- the recorder's statuses, on a real database ----------------------------------------------------------------

def ray_trial(cfg, failures: int = 0):
    return SimpleNamespace(trial_id=cfg.name, config={"bundle": [cfg.to_dict()]},
                           run_metadata=SimpleNamespace(num_failures=failures), error_file=None)


def epoch_result(cfg, epoch: int, status: str = "running", reason: str | None = None, test_acc: float = 0.5) -> dict:
    return {"epoch": epoch, "images_seen": 64 * epoch, "train_loss": None if epoch == 0 else 1.0, "test_loss": 2.0,
            "test_acc": test_acc, "epoch_seconds": 0.1, "layer_stats": [], "train_seconds": 0.1 * epoch,
            "run_seconds": 0.2 * epoch, "best_test_acc": test_acc, "best_epoch": epoch, "bundle": None,
            "device": "cpu", "node": None, "status": status, "reason": reason, "config_hash": cfg.config_hash,
            "kernels": "torch"}


@pytest.fixture
def planned(tmp_path):
    spec = small_spec(tmp_path, ("relu", "tanh"))
    trials = expand_grid(spec)
    Path(spec.output).mkdir()
    engine = make_engine(spec.database_url)
    init_db(engine)
    ids = record_plan(engine, spec, trials, trials)
    yield spec, trials, engine, ids
    engine.dispose()


def rows(spec, sql: str) -> list[tuple]:
    with sqlite3.connect(Path(spec.output) / "sweep.db") as conn:
        return conn.execute(sql).fetchall()


def test_a_stopped_trial_keeps_its_status_and_reason_when_its_ray_trial_completes(planned):
    spec, (relu, tanh), engine, ids = planned
    ledger = Ledger.of([relu, tanh])
    rec = Events(ledger, DatabaseRecorder(engine, ids, ledger))
    bundle = SimpleNamespace(config={"bundle": [relu.to_dict(), tanh.to_dict()]})
    rec.on_trial_start(0, [], bundle)
    for cfg in (relu, tanh):
        rec.on_trial_result(0, [], bundle, epoch_result(cfg, 0))
    rec.on_trial_result(0, [], bundle, epoch_result(relu, 1, "stopped", "stopped@1 chance", test_acc=0.1))
    rec.on_trial_result(0, [], bundle, epoch_result(tanh, 1, test_acc=0.6))
    rec.on_trial_result(0, [], bundle, epoch_result(tanh, 2, test_acc=0.7))
    rec.on_trial_complete(0, [], bundle)
    got = rows(spec, "SELECT name, status, error, epochs_done, final_test_acc, finished_at IS NOT NULL FROM trials")
    assert sorted(got) == [(relu.name, "stopped", "stopped@1 chance", 1, 0.1, 1),  # its last epoch counts
                           (tanh.name, "completed", None, 2, 0.7, 1)]
    assert rows(spec, f"SELECT epoch FROM epoch_metrics WHERE trial_id = {ids[relu.config_hash]}") == [(0,), (1,)]


def test_an_unfixable_failure_is_the_trials_last_attempt_and_halts_the_sweep(planned, tmp_path):
    spec, (relu, tanh), engine, ids = planned
    with RayLog(tmp_path / "sweep.log") as log:
        failures = Failures(Path(spec.output), spec.resources.max_failures, log)
        ledger = Ledger.of([relu, tanh], failures)
        rec = Events(ledger, DatabaseRecorder(engine, ids, ledger, failures=failures))
        halt = HaltSweep(failures)
        for cfg in (relu, tanh):
            rec.on_trial_start(0, [], ray_trial(cfg))
        # An ordinary failure keeps its retries: still running, nothing recorded, no halt.
        tune_logger = logging.getLogger("ray.tune.execution.tune_controller")
        tune_logger.error(f"Trial task failed for trial {tanh.name}", exc_info=ValueError("boom"))
        rec.on_trial_recover(0, [], ray_trial(tanh, failures=1))
        assert not halt.stop_all()
        full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        tune_logger.error(f"Trial task failed for trial {relu.name}", exc_info=full)
        rec.on_trial_recover(0, [], ray_trial(relu, failures=1))
        assert halt.stop_all()
        rec.on_trial_start(0, [], ray_trial(relu, failures=1))  # a restart Tune had queued changes nothing
    assert failures.halt == f"output folder {spec.output} is full: free space and " + AGAIN
    assert sorted(rows(spec, "SELECT name, status, error FROM trials")) == [
        (relu.name, "failed", "OSError: [Errno 28] No space left on device"), (tanh.name, "running", None)]
    assert (ledger.status(relu.config_hash), ledger.status(tanh.config_hash)) == ("failed", "retrying")
    assert json.loads(json.dumps(HaltSweep(failures).__getstate__())) == {"failures": None}  # pickles without state


def test_ray_logging_goes_to_the_sweep_log_unless_verbose(tmp_path):
    import ray  # noqa: F401: Ray puts its own handler, writing to the terminal, on the "ray" logger

    ray_logger = logging.getLogger("ray")
    tune_logger = logging.getLogger("ray.tune.execution.tune_controller")
    terminal = list(ray_logger.handlers)
    assert terminal
    with RayLog(tmp_path / "quiet.log"):
        assert not set(terminal) & set(ray_logger.handlers)  # nothing of Ray's on the terminal
        tune_logger.error("Trial task failed for trial x", exc_info=ValueError("boom"))
        tune_logger.warning("Trial controller checkpointing failed")
    logged = (tmp_path / "quiet.log").read_text()
    assert "ERROR ray.tune.execution.tune_controller: Trial task failed for trial x\nValueError: boom\n" in logged
    assert logged.endswith("WARNING ray.tune.execution.tune_controller: Trial controller checkpointing failed\n")
    with RayLog(tmp_path / "loud.log", verbose=True):
        assert set(terminal) <= set(ray_logger.handlers)  # Ray's output on the terminal as well
        tune_logger.error("Trial task failed for trial y", exc_info=ValueError("bang"))
    assert (tmp_path / "loud.log").read_text().endswith("ValueError: bang\n")
    assert ray_logger.handlers == terminal  # as it was
