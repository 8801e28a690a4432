"""What a sweep has recorded, read and written by a run: its trials' rows and statuses, the spec it ran with
(in its database, and its fixed settings in its folder's settings file), read once into a SweepState before
a run and written once (record_plan) when the run starts training."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace

from sweep.db.engine import safe_url, session_scope
from sweep.db.queries import ensure_sweep, ensure_trials, trial_statuses, update_trial
from sweep.spec.grid import TrialConfig
from sweep.spec.spec import SweepSpec, fixed_settings
from sweep.status import Status

# The fixed settings a sweep ran with, beside its trials' folders: a second spec reusing the sweep's name and
# output with another database still finds them.
SETTINGS_FILE = "settings.json"


def trial_row(t: TrialConfig) -> dict:
    """The trials-table columns that describe a configuration."""
    return {
        "config_hash": t.config_hash, "name": t.name, "label": t.label, "model": t.model,
        "activation": t.activation, "init": t.init, "gain": t.gain, "optimizer": t.optimizer,
        "lr": t.lr, "optimizer_params_json": json.dumps(dict(t.optimizer_params), sort_keys=True),
        "seed": t.seed, "config_json": json.dumps(t.to_dict(), sort_keys=True), "logdir": t.logdir,
    }


@dataclass(frozen=True)
class SweepState:
    """The sweep as its database holds it before a run: the spec it last ran with (None before its first run)
    and {config hash: (status, epochs done)} of its trials, a stopped trial whose stop no longer holds under
    the spec's `stop:` as RELEASED."""

    where: str
    stored_spec: dict | None
    statuses: dict[str, tuple[Status, int]]
    # config hash -> the kernels it trained on (sweep.models.kernels), where recorded
    kernels: dict[str, str] = field(default_factory=dict)


def read_state(engine, spec: SweepSpec) -> SweepState:
    """The sweep's state, read once from its (opened) database."""
    from sqlalchemy import select

    from sweep.db.schema import Sweep

    with session_scope(engine) as s:
        stored = s.scalar(select(Sweep.spec_json).where(Sweep.name == spec.name))
        recorded = trial_statuses(s, spec.name)
    statuses = {h: (status, done) for h, (status, done, _) in recorded.items()}
    kernels = {h: k for h, (_, _, k) in recorded.items() if k is not None}
    return SweepState(f"database {safe_url(spec.database_url)}", json.loads(stored) if stored else None,
                      _release_stops(spec, engine, statuses, _classes(stored)), kernels)


def _classes(stored: str | None) -> int:
    """The number of classes the sweep's data had when it last ran (its stored spec), for the chance rule."""
    from sweep.measures import DEFAULT_CLASSES

    return (json.loads(stored or "{}").get("dataset") or {}).get("classes") or DEFAULT_CLASSES


def _release_stops(spec: SweepSpec, engine, done: dict[str, tuple[Status, int]],
                   classes: int) -> dict[str, tuple[Status, int]]:
    """`done` with each stopped trial whose stop no longer holds under the spec's `stop:` (a rule's patience
    raised, its threshold loosened, the rule or asha removed: sweep.run.stopping.stays_stopped on its recorded
    epochs) as RELEASED: not finished, so it continues from its checkpoint, judged by the rules as now set."""
    if not any(state == Status.STOPPED for state, _ in done.values()):
        return done
    from sweep.db.queries import epoch_metrics_frame, trials_frame
    from sweep.measures import judged_accuracy
    from sweep.run.stopping import stays_stopped

    trials = trials_frame(engine, spec.name)
    epochs = epoch_metrics_frame(engine, spec.name)
    out = dict(done)
    for row in trials[trials["status"] == Status.STOPPED].itertuples():
        rows = epochs[(epochs["trial_id"] == row.trial_id) & (epochs["epoch"] >= 1)].sort_values("epoch")
        history = [{k: (None if v != v else v) for k, v in r.items()} for r in rows.to_dict("records")]
        history = [{**r, "test_acc": judged_accuracy(r["test_acc"], r.get("val_acc"))} for r in history]
        start = epochs.loc[(epochs["trial_id"] == row.trial_id) & (epochs["epoch"] == 0), "test_loss"].max()
        if row.config_hash in out and not stays_stopped(spec.stop, row.error or "", history, start, classes):
            out[row.config_hash] = (Status.RELEASED, out[row.config_hash][1])
    return out


def record_plan(engine, spec: SweepSpec, trials: list[TrialConfig], todo: list[TrialConfig]) -> dict[str, int]:
    """The sweep row and one row per configuration (`todo` set pending); trial ids by config hash."""
    # The resolved spec goes into the database for whoever reads the results: never the database's password.
    stored = asdict(replace(spec, database=spec.database and safe_url(spec.database)))
    with session_scope(engine) as s:
        sweep_id = ensure_sweep(s, spec.name, json.dumps(stored, sort_keys=True))
        trial_ids = ensure_trials(s, sweep_id, [trial_row(t) for t in trials])
        for t in todo:
            update_trial(s, trial_ids[t.config_hash], status=Status.PENDING, error=None)
    spec.sweep_dir.mkdir(parents=True, exist_ok=True)
    settings = spec.sweep_dir / SETTINGS_FILE
    tmp = settings.with_suffix(".tmp")
    tmp.write_text(json.dumps(fixed_settings(stored), sort_keys=True) + "\n")
    os.replace(tmp, settings)
    return trial_ids
