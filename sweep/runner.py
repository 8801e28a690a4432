"""Run a sweep: check everything, then hand the trials to Ray Tune.

Order matters: every check that can fail (spec, data, output folder,
database, resources) runs before any trial starts, and a bad spec never
reaches this module.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from db.engine import DatabaseError, init_db, make_engine, safe_url, session_scope
from db.queries import ensure_sweep, ensure_trials, trial_statuses, update_trial
from sweep.data import DataError, load_dataset
from sweep.grid import TrialConfig, expand_grid
from sweep.spec import DEFAULT_GPU_SHARE, SweepSpec


class RunError(Exception):
    """The sweep cannot start; the message is one line for the user."""


@dataclass(frozen=True)
class RunSummary:
    total: int
    skipped: int  # already completed before this run
    statuses: dict[str, int]  # final status -> count, for the trials this run scheduled
    interrupted: bool

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.statuses.get("failed") else 0


def trial_row(t: TrialConfig) -> dict:
    """The trials-table columns that describe a configuration."""
    return {
        "config_hash": t.config_hash, "name": t.name, "label": t.label, "model": t.model,
        "activation": t.activation, "init": t.init, "gain": t.gain, "optimizer": t.optimizer,
        "lr": t.lr, "optimizer_params_json": json.dumps(dict(t.optimizer_params), sort_keys=True),
        "seed": t.seed, "config_json": json.dumps(t.to_dict(), sort_keys=True), "logdir": t.logdir,
    }


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as exc:
        raise RunError(f"output folder {folder} is not writable: {exc.strerror or exc}") from None


def _resources(spec: SweepSpec, cluster: dict) -> tuple[float, float]:
    cpus, gpus = cluster.get("CPU", 0), cluster.get("GPU", 0)
    cpu = spec.resources.cpu
    if cpu > cpus:
        raise RunError(f"resources.cpu: {cpu:g} per trial, but the Ray cluster has {cpus:g} CPUs")
    gpu = spec.resources.gpu
    if gpu == "auto":
        gpu = DEFAULT_GPU_SHARE if gpus > 0 else 0.0
    elif gpu > 0 and gpus == 0:
        raise RunError(f"resources.gpu: {gpu:g} requested, but the Ray cluster has no GPU; use 0 or auto")
    elif gpu > gpus:
        raise RunError(f"resources.gpu: {gpu:g} per trial, but the Ray cluster has {gpus:g} GPUs")
    return cpu, gpu


def run_sweep(spec: SweepSpec, address: str | None = None, out: TextIO = sys.stdout,
              progress_interval: float = 15.0) -> RunSummary:
    """Train every configuration of `spec` not already completed; record everything.

    Completed trials (by config hash, with at least spec.epochs epochs) are
    skipped; others start or continue from their last checkpoint.
    """
    trials = expand_grid(spec)
    try:
        data = load_dataset(spec.dataset.name, Path(spec.dataset.data_dir).resolve(),
                            spec.dataset.train_limit, spec.dataset.test_limit)
    except DataError as exc:
        raise RunError(str(exc)) from None

    _check_writable(spec.sweep_dir)
    url = spec.database_url
    try:
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        engine = make_engine(url)
        init_db(engine)
        with session_scope(engine) as s:
            sweep_id = ensure_sweep(s, spec.name, json.dumps(asdict(spec), sort_keys=True))
            trial_ids = ensure_trials(s, sweep_id, [trial_row(t) for t in trials])
            done = trial_statuses(s, sweep_id)
            todo = [t for t in trials
                    if not (done[t.config_hash][0] == "completed" and done[t.config_hash][1] >= spec.epochs)]
            for t in todo:
                update_trial(s, trial_ids[t.config_hash], status="pending", error=None)
    except DatabaseError as exc:
        raise RunError(str(exc)) from None
    except Exception as exc:  # driver-level SQLAlchemy errors: bad URL, unreachable server
        raise RunError(f"database {safe_url(url)}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from None

    skipped = len(trials) - len(todo)
    print(f"sweep {spec.name}: {len(trials)} trials ({skipped} already completed), "
          f"database {safe_url(url)}, TensorBoard logs in {spec.sweep_dir}", file=out, flush=True)
    if not todo:
        return RunSummary(len(trials), skipped, {}, False)

    return _tune(spec, todo, data, engine, trial_ids, address, out, progress_interval, len(trials), skipped)


def _tune(spec, todo, data, engine, trial_ids, address, out, progress_interval, total, skipped) -> RunSummary:
    # Ray's own result files and TensorBoard loggers would duplicate what
    # we write; keep its verbose tables and worker logs off the terminal.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray
    from ray import tune

    from sweep.recorder import DatabaseRecorder, ProgressPrinter
    from sweep.trial import ray_trainable

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR", configure_logging=True)
    try:
        cpu, gpu = _resources(spec, ray.cluster_resources())
        recorder = DatabaseRecorder(engine, trial_ids)
        printer = ProgressPrinter(len(todo), len(todo) * spec.epochs, progress_interval, out)
        trainable = tune.with_resources(tune.with_parameters(ray_trainable, data=data), {"cpu": cpu, "gpu": gpu})
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search([t.to_dict() for t in todo]), "cpus": cpu},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=spec.resources.max_concurrent,
                # A fresh worker pays seconds of `import torch` per trial; reuse it.
                reuse_actors=True,
                trial_name_creator=lambda tr: TrialConfig.from_dict(tr.config["trial"]).name,
                trial_dirname_creator=lambda tr: TrialConfig.from_dict(tr.config["trial"]).name,
            ),
            run_config=tune.RunConfig(
                name=spec.name,
                storage_path=str((Path(spec.output) / ".ray").resolve()),
                verbose=0,
                callbacks=[recorder, printer],
                failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
            ),
        )
        tuner.fit()
    finally:
        if started_here:
            ray.shutdown()

    # A trial Ray stopped without a final status (Ctrl-C, SIGTERM) is interrupted:
    # its checkpoint lets the next run continue it.
    statuses: dict[str, int] = {}
    interrupted = False
    with session_scope(engine) as s:
        for t in todo:
            status = recorder.final_status.get(t.config_hash)
            if status is None:
                status, interrupted = "interrupted", True
                update_trial(s, trial_ids[t.config_hash], status="interrupted")
            statuses[status] = statuses.get(status, 0) + 1
    print(printer.line(), file=out, flush=True)
    return RunSummary(total, skipped, statuses, interrupted)
