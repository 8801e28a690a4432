"""Run a sweep: check everything, then hand the trials to Ray Tune.

Order matters: every check that can fail (spec, data, output folder,
database, resources) runs before any trial starts, and a bad spec never
reaches this module.
"""
from __future__ import annotations

import errno
import functools
import json
import os
import shutil
import signal
import sys
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from sweep.db.engine import (DatabaseError, check_sqlite_location, error_line, init_db, make_engine, safe_url,
                             sqlite_path)
from sweep.run.cluster import ClusterError, FolderError, check_shared_storage, ray_session, writable_folder
from sweep.data.datasets import DataError, load_dataset
from sweep.run.bundles import free_gpu_bytes, member_bytes, bundle_size, plan_bundles, start_order
from sweep.spec.grid import TrialConfig, bundle_name, expand_grid
from sweep.run.hparams import write_experiment
from sweep.run.records import SETTINGS_FILE, SweepState, read_state, record_plan
from sweep.spec.spec import DEFAULT_GPU_SHARE, SpecError, SweepSpec, changed_setting
from sweep.status import Status, finished

# The sweep's log, beside them: Ray's own logging, with the whole traceback of every failed attempt.
LOG_FILE = "sweep.log"
# SWEEP_VERBOSE=1 (or run_sweep(verbose=True)): Ray's output on the terminal as Ray prints it, for debugging.
VERBOSE_ENV = "SWEEP_VERBOSE"


class RunError(Exception):
    """The sweep cannot start, or cannot go on; the message is one line for the user."""

    code = 1  # the command's exit status


class InputError(RunError):
    """The spec's data or network cannot be used (missing files, a factory that fails, a network the data does
    not fit): found before Ray starts, nothing written; exit status 2, as a bad spec's."""

    code = 2


class SweepHalted(RunError):
    """A failure no retry can fix (a full or read-only output folder) ended the sweep after its running trials
    stopped; what was trained is recorded. The message says what to do."""


@dataclass(frozen=True)
class RunSummary:
    total: int
    skipped: int  # already finished (completed, diverged, or stopped unless resumed) before this run
    statuses: dict[Status, int]  # final status -> count, for the trials this run scheduled
    interrupted: bool
    interrupt_code: int = 130  # 128 + the signal that stopped the run

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return self.interrupt_code
        return 1 if self.statuses.get(Status.FAILED) else 0


def _check_writable(folder: Path) -> None:
    """The sweep's folder, made (with its parents) once it is known that it can be written there."""
    try:
        writable_folder(folder, parents=True)
        folder.mkdir(parents=True, exist_ok=True)
    except FolderError as exc:
        raise RunError(f"output {exc}") from None
    except OSError as exc:
        raise RunError(f"output folder {folder} is not writable: {exc.strerror or exc}") from None


def _resources(spec: SweepSpec, cluster: dict, fused: bool) -> tuple[float, float]:
    cpus, gpus = cluster.get("CPU", 0), cluster.get("GPU", 0)
    cpu = spec.resources.cpu
    if cpu > cpus:
        raise RunError(f"resources.cpu: {cpu:g} per trial, but the Ray cluster has {cpus:g} CPUs")
    gpu = spec.resources.gpu
    if gpu == "auto":
        # A fused bundle fills a GPU by itself; single trials share one.
        gpu = (1.0 if fused else DEFAULT_GPU_SHARE) if gpus > 0 else 0.0
    elif gpu > 0 and gpus == 0:
        raise RunError(f"resources.gpu: {gpu:g} requested, but the Ray cluster has no GPU; use 0 or auto")
    elif gpu > gpus:
        raise RunError(f"resources.gpu: {gpu:g} per trial, but the Ray cluster has {gpus:g} GPUs")
    return cpu, gpu


class SweepLock:
    """An exclusive lock on a sweep's folder, holding the owner's pid.

    flock is released by the kernel when the holder dies, even by SIGKILL,
    so a crashed driver never leaves a stale lock behind.
    """

    def __init__(self, folder: Path):
        self.path = folder / ".lock"
        self.fh = None

    def __enter__(self) -> "SweepLock":
        import fcntl

        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "unknown"
            self.fh.close()
            raise RunError(f"sweep {self.path.parent.name} is already running (pid {holder}, lock {self.path}); "
                           "wait for it to finish or stop it first") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(str(os.getpid()))
        self.fh.flush()
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()


def _check_local_gpu(spec: SweepSpec) -> None:
    gpu = spec.resources.gpu
    if gpu != "auto" and gpu > 0:
        import torch

        if torch.cuda.device_count() == 0:
            raise SpecError(f"resources.gpu: {gpu:g} requested, but this machine has no GPU; use 0 or auto")


def _open_database(url: str):
    try:
        check_sqlite_location(url)  # before anything is created there
        if sqlite_path(url) is not None:
            sqlite_path(url).parent.mkdir(parents=True, exist_ok=True)
        engine = make_engine(url)
        init_db(engine)
        return engine
    except DatabaseError as exc:
        raise RunError(str(exc)) from None
    except Exception as exc:  # driver-level SQLAlchemy/OS errors: bad URL, unreachable server, read-only file
        raise RunError(error_line(url, exc)) from None


def run_sweep(spec: SweepSpec, address: str | None = None, out: TextIO = sys.stdout,
              progress_interval: float = 15.0, resume_stopped: bool = False, verbose: bool | None = None) -> RunSummary:
    """Train every configuration of `spec` not already finished; record everything.

    Finished trials (by config hash: completed with at least spec.epochs
    epochs, diverged, or stopped by a stop rule unless `resume_stopped`) are
    skipped; the others (new, failed, interrupted, or left running by a
    driver that died) start or continue from their last checkpoint. With
    nothing left to do it says so without starting Ray. Every check (data,
    folder, lock, database version, cluster resources; on a cluster: the
    address, the token, the versions, the shared output folder) runs before
    the first sweep or trial row is written.

    In order: the checks that read nothing of the sweep (its folder's fixed
    settings, the GPU); then, holding the sweep's lock, the database opened
    once and the sweep's state read once (`read_state`), checked, and made
    the run's `Plan`; then the data and Ray.

    Ray's logging goes to runs/<sweep>/sweep.log, not the terminal, unless
    `verbose` (default: SWEEP_VERBOSE=1 in the environment). A failure no
    retry can fix ends the sweep: SweepHalted, after the running trials have
    stopped and everything is recorded.
    """
    if verbose is None:
        verbose = os.environ.get(VERBOSE_ENV, "") not in ("", "0")
    check_settings(spec)  # the folder's record, before anything is opened or made
    if address is None:
        _check_local_gpu(spec)
    made = _first_missing(spec.sweep_dir)
    database = sqlite_path(spec.database_url)
    database_made = database is not None and not database.exists()
    try:
        _check_writable(spec.sweep_dir)
        with SweepLock(spec.sweep_dir):
            engine = _open_database(spec.database_url)
            try:
                state = read_state(engine, spec)
                check_settings(spec, state)
                plan = make_plan(spec, state, resume_stopped, out, progress_interval, verbose)
                if not plan.todo:
                    _plan_line(plan, state, out)
                    _forget(made, None)  # a folder made only to hold the lock
                    return RunSummary(len(plan.trials), len(plan.trials), {}, False)
                data = _load_data(spec)
                _check_network(spec, data)
                # The data's classes go into the sweep's record (the report's chance flag reads them there).
                plan = replace(plan, spec=replace(spec, dataset=replace(spec.dataset, classes=data.num_classes)))
                shipped = [spec.model.ship] if spec.model.ship else []
                with ray_session(address, verbose, py_modules=shipped):
                    if address is not None:
                        check_shared_storage(spec.sweep_dir)
                    _plan_line(plan, state, out)  # once the cluster has answered: a refusal is the one line
                    return _tune(plan, state, data, engine)
            finally:
                engine.dispose()
    except (ClusterError, RunError, SpecError) as exc:
        # Nothing was trained: leave no empty folder (or lock, or fresh database) behind.
        if not isinstance(exc, SweepHalted):
            _forget(made, database if database_made else None)
        if isinstance(exc, ClusterError):
            raise RunError(str(exc)) from None
        raise


def _forget(made: Path | None, database: Path | None) -> None:
    """Remove what a run that trained nothing made: the outermost folder it created, a SQLite file it created."""
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)
    if database is not None and database.is_file():
        database.unlink()


def _load_data(spec: SweepSpec):
    """The spec's data, loaded once by the driver (a data factory called here, from its file)."""
    d, factory = spec.dataset, None
    if d.factory is not None:
        fn = _user_callable(d.ref(), "dataset.factory")
        factory = functools.partial(fn, **json.loads(d.args or "{}"))
    try:
        return load_dataset(d.name, Path(d.data_dir).resolve(), d.train_limit, d.test_limit, d.validation,
                            factory=factory, factory_name=f"dataset.factory {d.factory}")
    except DataError as exc:
        raise InputError(str(exc)) from None


def _user_callable(ref, key: str):
    """The callable a spec's factory names, read from its file; InputError in one line where it cannot be."""
    from sweep.spec.code import last_line, load_callable

    try:
        return load_callable(ref, from_path=True)
    except Exception as exc:  # noqa: BLE001: the user's module failing to import is said in one line
        raise InputError(f"{key} {ref.text}: cannot be loaded: {last_line(exc)}") from None


def _check_network(spec: SweepSpec, data) -> None:
    """Build the spec's network once for the data, as a trial will, and run two inputs through it: a factory
    that fails, a torchvision network that cannot be swapped, a network the data does not fit or whose output
    is not (batch, classes) is one line (InputError) before Ray starts."""
    import torch

    from sweep.models.network import NetworkError, build_network
    from sweep.spec.code import last_line

    ref = spec.model.ref()
    build = _user_callable(ref, "model.factory") if ref is not None else None
    try:
        # A Network (the user's or torchvision's) checks itself as it is built.
        net = build_network(spec.model.name, spec.grid.activation[0], spec.model.hidden, "torch",
                            spec.model.network(), data.input_shape, data.num_classes, build)
        if spec.model.fuses:
            with torch.no_grad():
                logits, _ = net.eval()(torch.zeros(2, *data.input_shape))
            if tuple(logits.shape) != (2, data.num_classes):
                raise NetworkError(f"model {spec.model.name} gives {tuple(logits.shape)} for 2 inputs; the data has "
                                   f"{data.num_classes} "
                                   "classes")
    except NetworkError as exc:
        raise InputError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001: the study's networks on data they do not fit
        raise InputError(f"model {spec.model.name} cannot take this data's {data.input_shape} inputs: "
                         f"{last_line(exc)}") from None


def out_of_space(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it wraps) says a disk or quota is full: an OSError ENOSPC/EDQUOT,
    SQLite's "database or disk is full", PostgreSQL's disk_full (SQLSTATE 53100)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        orig = getattr(exc, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's exception
        if getattr(orig, "sqlstate", None) == "53100" or "database or disk is full" in str(orig or exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _plan_line(plan: "Plan", state: SweepState, out) -> None:
    """The run's first line: how many trials, how many already finished, where everything goes."""
    todo = {t.config_hash for t in plan.todo}
    finished = [t for t in plan.trials if t.config_hash not in todo]
    stopped = sum(1 for t in finished if state.statuses[t.config_hash][0] == Status.STOPPED)
    print(f"sweep {plan.spec.name}: {len(plan.trials)} trials ({len(finished)} already finished"
          f"{f', {stopped} of them stopped by a stop rule' if stopped else ''}), "
          f"database {safe_url(plan.spec.database_url)}, TensorBoard logs in {plan.spec.sweep_dir}", file=out,
          flush=True)


def _shown(value) -> str:
    return "not set" if value is None else json.dumps(value)


def check_settings(spec: SweepSpec, state: SweepState | None = None) -> None:
    """Refuse (SpecError, before anything is written) a spec that changes a fixed setting of a sweep that has run:
    its trials would resume checkpoints and pool with rows computed under other settings. Without `state`, against
    the sweep folder's record (settings.json, read only); with it, against the database's."""
    if state is None:
        file = spec.sweep_dir / SETTINGS_FILE
        if not file.exists():
            return
        try:
            where, stored = str(file), json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise RunError(f"{file}: cannot read this sweep's settings: {exc}") from None
    elif state.stored_spec is None:
        return
    else:
        where, stored = state.where, state.stored_spec
    changed = changed_setting(stored, spec)
    if changed:
        key, old, new = changed
        raise SpecError(f"{key}: sweep {spec.name!r} ran with {_shown(old)} ({where}), this spec says "
                        f"{_shown(new)}; a sweep's settings other than its grid values and epochs are fixed "
                        "once it has run: give this spec a new name, or an output (or database) elsewhere")


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of `path` that does not exist yet (None if it exists)."""
    path = path.resolve()
    missing = None
    while not path.exists():
        missing, path = path, path.parent
    return missing


@dataclass(frozen=True)
class Plan:
    """What a run trains, from the sweep's state: every trial of the grid, those still to train (in the order
    they start), the epoch each of those starts at, and those exempt from the stop rules (resumed after a stop
    with --resume-stopped); with how the run reports (`out`, every `progress_interval` seconds, Ray's own
    output where `verbose`)."""

    spec: SweepSpec
    trials: list[TrialConfig]
    todo: list[TrialConfig]
    starts: dict[str, int]
    exempt: frozenset[str]
    out: TextIO
    progress_interval: float
    verbose: bool


def make_plan(spec: SweepSpec, state: SweepState, resume_stopped: bool, out: TextIO, progress_interval: float,
              verbose: bool) -> Plan:
    """What to train, and from where, given what the sweep's state says is done."""
    trials = expand_grid(spec)
    done = {t.config_hash: state.statuses.get(t.config_hash, (Status.PENDING, 0)) for t in trials}

    def skipped(status: Status, epochs_done: int) -> bool:
        """Finished (sweep.status.finished), or stopped early and left so: its stop still holds (read_state
        released those whose stop does not), unless `resume_stopped`."""
        return finished(status, epochs_done, spec.epochs) or (status == Status.STOPPED and not resume_stopped)

    start = start_order(trials) if spec.stop.asha is not None else trials
    todo = [t for t in start if not skipped(*done[t.config_hash])]
    # Trials continued by --resume-stopped run to the end, judged by no stop rule.
    exempt = frozenset(t.config_hash for t in todo if done[t.config_hash][0] == Status.STOPPED)
    # Where each trial starts, for the time estimate: trials continue from where they stopped.
    starts = {t.config_hash: done[t.config_hash][1] for t in todo}
    return Plan(spec, trials, todo, starts, exempt, out, progress_interval, verbose)


def _stopping(spec: SweepSpec, trials: list[TrialConfig], engine, exempt: set[str]) -> tuple[dict, object]:
    """What the trials need of the spec's `stop:` (sweep.run.trial.ray_trainable), and the sweep's rung store
    (a Ray actor, seeded with the decisions earlier runs recorded: rung_results) where it has `asha:`."""
    if not spec.stop.rules and spec.stop.asha is None and spec.stop.halving is None:
        return {}, None
    from sweep.db.queries import rung_results
    from sweep.run.stopping import start_rung_store

    seeded = rung_results(engine, spec.name) if spec.stop.asha is not None else []
    # Each seed its own population: a replicate of the whole study (sweep.run.stopping.Rungs).
    store = start_rung_store(spec.stop, spec.metric, spec.epochs, spec.name, seeded,
                             {t.config_hash: t.seed for t in trials})
    order = {t.config_hash: i for i, t in enumerate(start_order(trials))} if spec.stop.asha is not None else {}
    return {"stop": spec.stop.to_dict(), "metric": spec.metric, "exempt": sorted(exempt), "order": order}, store


def _tune(plan: Plan, state: SweepState, data, engine) -> RunSummary:
    # Ray's own result files and TensorBoard loggers would duplicate what
    # we write; keep its verbose tables and worker logs off the terminal.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from sweep.run.recorder import RayLog

    with RayLog(plan.spec.sweep_dir / LOG_FILE, plan.verbose) as log:
        return _fit(plan, state, data, engine, log)


def _kernels(plan: Plan, state: SweepState, on_cpu: bool) -> str:
    """The kernels every trial of this run steps on (sweep.models.kernels), decided once from the run's device
    and sweep's install. A trial that trained on other kernels is not continued on these (their float rounding
    differs): RunError, before any trial starts."""
    from sweep.models.kernels import choose  # torch: imported only to train

    kernels = choose(on_cpu=on_cpu)
    for t in plan.todo:
        before = state.kernels.get(t.config_hash)
        if before is not None and before != kernels and plan.starts[t.config_hash] > 0:
            raise RunError(f"{t.name} trained {plan.starts[t.config_hash]} epoch(s) on {before} kernels, this run "
                           f"would continue it on {kernels}: their float rounding differs; run it where sweep's "
                           "install is as it was (pip install -e . with a C compiler builds the compiled kernels), "
                           "or give the sweep a new name")
    return kernels


def _fit(plan: Plan, state: SweepState, data, engine, log) -> RunSummary:
    """Train the plan's trials with Ray Tune, recording everything; the run's summary."""
    import ray

    from sweep.run.ledger import Ledger
    from sweep.run.progress import Outlook, ProgressPrinter
    from sweep.run.recorder import DatabaseRecorder, Failures

    spec, todo = plan.spec, plan.todo
    received: list[int] = []

    def on_sigterm(signum, frame):
        # Tune stops trials cleanly on SIGINT; treat SIGTERM the same way.
        received.append(signum)
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        cluster = ray.cluster_resources()
        size = bundle_size(spec.resources.fuse, len(todo), cluster.get("GPU", 0),
                           *((free_gpu_bytes(), member_bytes(todo[0], data.input_shape, data.num_classes))
                             if spec.model.fuses else ()))
        if size > 1 and not spec.model.fuses:
            print(f"not fused: {spec.model.name} trains alone (sweep fuses its own networks, lenet and mlp, "
                  "only: a network of yours may hold BatchNorm statistics, in-place writes or data-dependent "
                  "control flow)", file=plan.out, flush=True)
            size = 1
        resources = _resources(spec, cluster, fused=size > 1)
        kernels = _kernels(plan, state, on_cpu=resources[1] == 0)
        trial_ids = record_plan(engine, spec, plan.trials, todo)
        write_experiment(spec.sweep_dir, plan.trials)
        if size > 1:
            print(f"fused: {len(todo)} trials in {len(plan_bundles(todo, size))} bundle(s) of up to {size}",
                  file=plan.out, flush=True)
        from sweep.models.kernels import missing_note

        if note := missing_note(on_cpu=resources[1] == 0):
            print(note, file=plan.out, flush=True)
        failures = Failures(Path(spec.output), spec.resources.max_failures, log)
        # The ledger first: the recorder and the progress line read what it made of each event.
        ledger = Ledger(plan.starts, failures)
        recorder = DatabaseRecorder(engine, trial_ids, ledger, failures=failures)
        printer = ProgressPrinter(ledger, Outlook(spec.epochs, spec.stop.asha, plan.exempt, spec.stop.halving),
                                  plan.progress_interval, plan.out, metric=spec.metric, failures=failures)
        stopping, rung_store = _stopping(spec, plan.trials, engine, plan.exempt)  # the store lives while this frame does
        # One wave trains every trial it can; under halving a trial at a rung waits (holding no worker) until its
        # population is judged, and the winners train on in the next wave (sweep/run/halving.py).
        wave = todo if spec.stop.halving is None else _halving_wave(plan, todo, engine, ledger, recorder, 0)
        waves = 0
        while wave:
            waves += 1
            tuner = _tuner(plan, data, plan_bundles(wave, size), resources, {"kernels": kernels, **stopping},
                           [ledger, recorder, printer], failures)
            try:
                tuner.fit()
            except Exception as exc:
                # The driver's own writes failing for want of space (the database on the full disk): one line too.
                if not out_of_space(exc):
                    raise
                raise SweepHalted(f"database {safe_url(spec.database_url)} cannot be written: its disk is full; "
                                  "free space and run `sweep run` again; finished epochs are kept") from None
            if spec.stop.halving is None or received or failures.halt is not None \
                    or not all(ledger.settled(t.config_hash) for t in wave):
                break  # one wave only, or the run was stopped, or a trial did not end as a trial ends
            wave = _halving_wave(plan, todo, engine, ledger, recorder, waves)
    finally:
        signal.signal(signal.SIGTERM, previous)
    statuses, interrupted = _final_statuses(ledger, recorder, printer)
    print(printer.line(), file=plan.out, flush=True)
    if failures.halt is not None:
        raise SweepHalted(failures.halt)
    signum = signal.SIGTERM if received else signal.SIGINT
    return RunSummary(len(plan.trials), len(plan.trials) - len(todo), statuses, interrupted, 128 + signum)


def _halving_wave(plan: Plan, todo: list[TrialConfig], engine, ledger, recorder, waves: int) -> list[TrialConfig]:
    """Under halving, the trials the next wave trains: every complete rung judged first (halving.judge: its
    losers stopped), then those of `todo` not ended and not waiting for their population's verdict. A trial
    waiting for one is recorded `waiting` (it may stand at its rung from an earlier run)."""
    from sweep.run.halving import judge

    recorder.flush()  # every report of the wave in the database, which the verdicts read
    verdicts, blocked = judge(engine, plan.spec, plan.trials, todo, plan.exempt)
    for verdict in verdicts:
        if not verdict.continued and verdict.config_hash in ledger.entries:
            ledger.settle(verdict.config_hash, Status.STOPPED)  # judge() stored it
    if verdicts:
        kept = sum(v.continued for v in verdicts)
        print(f"halving: {kept} of {len(verdicts)} trial(s) judged at their rung go on", file=plan.out, flush=True)
    for key in blocked:
        if ledger.status(key) != Status.WAITING:
            ledger.settle(key, Status.WAITING)
            recorder.record_statuses({key: Status.WAITING})
    wave = [t for t in todo if t.config_hash not in blocked and not ledger.ended(t.config_hash)]
    if wave and waves:
        print(f"halving: wave {waves + 1}: {len(wave)} trial(s) train on from their rung", file=plan.out, flush=True)
    return wave


def _tuner(plan: Plan, data, bundles: list[list[TrialConfig]], resources: tuple[float, float], settings: dict,
           callbacks: list, failures):
    """Ray Tune's Tuner of the plan: a trial per bundle, each with its CPUs and GPU share, reusing workers."""
    from ray import tune

    from sweep.run.recorder import HaltSweep, members
    from sweep.run.trial import ray_trainable

    spec, (cpu, gpu) = plan.spec, resources
    trainable = tune.with_resources(tune.with_parameters(ray_trainable, data=data), {"cpu": cpu, "gpu": gpu})
    return tune.Tuner(
        trainable,
        param_space={"bundle": tune.grid_search([[t.to_dict() for t in b] for b in bundles]), "cpus": cpu,
                     **settings},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=spec.resources.max_concurrent,
            # A fresh worker pays seconds of `import torch` per trial; reuse it.
            reuse_actors=True,
            trial_name_creator=lambda tr: bundle_name(members(tr)),
            trial_dirname_creator=lambda tr: bundle_name(members(tr)),
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=str((Path(spec.output) / ".ray").resolve()),
            verbose=1 if plan.verbose else 0,
            callbacks=callbacks,
            stop=HaltSweep(failures),
            failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
        ),
    )


def _final_statuses(ledger, recorder, printer) -> tuple[dict[Status, int], bool]:
    """Each trial's status as the run ends ({status: count}), and whether the run was interrupted: a trial Ray
    stopped without a final status (Ctrl-C, SIGTERM) is interrupted, and its checkpoint lets the next run
    continue it; one never started stays pending (Ledger.end_run)."""
    left = ledger.end_run()
    recorder.record_statuses(left)
    printer.ended = True
    return dict(Counter(e.status for e in ledger.entries.values())), bool(left)
