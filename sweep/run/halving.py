"""Synchronous successive halving: each population judged at a rung against the same cohort.

`stop: {halving: {grace: G, reduction: R}}`. A population is one seed's trials (as for ASHA: each seed a
replicate of the whole study). The rungs are Ray's HyperBand bracket times (sweep.run.stopping.halving_rungs).
A trial that trains a rung epoch saves its checkpoint, reports `waiting` and leaves its Ray trial: it holds no
CPU or GPU while it waits. The run trains in waves (runner._fit): after each, `judge` decides every rung whose
population is complete (every member there, or ended: diverged, failed, stopped by a rule or an earlier rung),
as Ray's _Bracket.successive_halving decides it (stopping.halve: ceil(size / R) continue, the best by the
spec's metric at the rung epoch, ties to the later trial in the grid's order); the others end `stopped` with
`stopped@E halving`. The winners train on in the next wave, from their checkpoints, to the next rung.

Nothing depends on the order trials arrive in: a verdict reads only the population's values at the rung,
so one trial at a time, two, or all at once, fused or not, stop the same trials (a test). The decisions are
stored in rung_results (rung k, milestone = its epoch): a rerun judges what is complete and keeps what was
decided; a trial added to a population later (a new grid value) continues where its value at the rung
reaches the lowest that continued there; a seed added later is a population of its own; more `epochs` add
rungs, judged as the trials reach them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from sweep.measures import RANKING
from sweep.run.stopping import halve, halving_rungs
from sweep.spec.grid import TrialConfig
from sweep.status import Status


@dataclass(frozen=True)
class Verdict:
    """One trial judged at one rung."""

    config_hash: str
    rung: int  # k: the rung's index
    epoch: int  # the rung's epoch
    value: float  # the metric there, as reported (NaN where it has none)
    continued: bool


def rung_value(metric: str, epochs: dict[int, dict[str, Any]], at: int) -> float:
    """A trial's value of the ranking `metric` at epoch `at` from its epoch rows (epoch -> row), signed so that
    higher is better: a loss negated; a best_* metric the best of its epochs 1..at. NaN where it has none."""
    column, higher = RANKING[metric].column, RANKING[metric].higher_is_better
    if column.startswith("best_"):
        values = [_number(epochs[e].get(column.removeprefix("best_"))) for e in epochs if 1 <= e <= at]
        values = [v for v in values if not math.isnan(v)]
        value = max(values) if values else math.nan
    else:
        value = _number(epochs.get(at, {}).get(column))
    return value if higher or math.isnan(value) else -value


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def decide(trials: Sequence[TrialConfig], states: dict[str, tuple[Status, int, str | None]],
           values: dict[str, dict[int, dict[str, Any]]], stored: Sequence[dict[str, Any]], rungs: list[int],
           reduction: float, metric: str, exempt: frozenset[str] = frozenset()) -> list[Verdict]:
    """The new verdicts: for each population (seed) of `trials` (in the grid's order), each rung in turn that is
    complete and not yet decided. `states`: config hash -> (status, epochs done, error); `values`: config hash
    -> epoch -> its epoch row; `stored`: the rung results already recorded (db.queries.rung_results)."""
    verdicts: list[Verdict] = []
    populations: dict[int, list[TrialConfig]] = {}
    for t in trials:
        if t.config_hash not in exempt:
            populations.setdefault(t.seed, []).append(t)
    decided = {(row["config_hash"], row["rung"]): bool(row["continued"]) for row in stored
               if row["rung"] < len(rungs) and row["milestone"] == rungs[row["rung"]]}
    for members in populations.values():
        size = len(members)  # Ray's bracket size: the population at the first rung
        going = [t.config_hash for t in members]
        for k, at in enumerate(rungs):
            there, complete = [], True
            for key in going:
                status, done, error = states.get(key, (Status.PENDING, 0, None))
                # A rule's stop (not a rung's verdict) ends a trial as a divergence does: it leaves the
                # population before the rung, as Ray's bracket drops a trial that ends.
                ended = status in (Status.DIVERGED, Status.FAILED) or (
                    status == Status.STOPPED and not (error or "").endswith(" halving"))
                if done >= at and not ended:
                    there.append(key)
                elif not ended and status != Status.STOPPED:
                    complete = False  # still on its way there
            if not complete:
                break
            entries = [(key, rung_value(metric, values.get(key, {}), at)) for key in there]
            known = {key: decided[(key, k)] for key in there if (key, k) in decided}
            if not known:
                kept, size = halve(entries, size, reduction)
            else:  # decided before: newcomers meet the lowest value that continued there
                size = math.ceil(size / reduction)
                bar = min((v for key, v in entries if known.get(key)), default=math.inf)
                kept = {key for key, v in entries if known.get(key, not math.isnan(v) and v >= bar)}
            for key, value in entries:
                if key not in known:
                    verdicts.append(Verdict(key, k, at, value if RANKING[metric].higher_is_better else -value,
                                            key in kept))
            going = [key for key in there if key in kept]
    return verdicts


def judge(engine, spec, trials: Sequence[TrialConfig], todo: Sequence[TrialConfig],
          exempt: frozenset[str] = frozenset()) -> tuple[list[Verdict], set[str]]:
    """Decide every complete rung of the sweep from its database (read once) and record the verdicts:
    rung_results, and the losers `stopped` with `stopped@E halving` (E the rung's epoch). Returns the new
    verdicts, and the trials of `todo` that stand at a rung their population has not decided yet (their latest
    epoch a rung's, not ended): they stay out of the next wave, whatever their status says (the plan sets a
    trial it will train pending)."""
    from sweep.db.engine import session_scope
    from sweep.db.queries import epoch_metrics_frame, record_rungs, rung_results, trials_frame, update_trial

    rungs = halving_rungs(spec.stop.halving, spec.epochs)
    rows = trials_frame(engine, spec.name)
    states = {r.config_hash: (Status(r.status), int(r.epochs_done), r.error) for r in rows.itertuples()}
    ids = dict(zip(rows["config_hash"], rows["trial_id"]))
    by_id = dict(zip(rows["trial_id"], rows["config_hash"]))
    values: dict[str, dict[int, dict[str, Any]]] = {}
    for row in epoch_metrics_frame(engine, spec.name).to_dict("records"):
        values.setdefault(by_id[row["trial_id"]], {})[int(row["epoch"])] = row
    stored = rung_results(engine, spec.name)
    verdicts = decide(trials, states, values, stored, rungs, spec.stop.halving.reduction, spec.metric, exempt)
    with session_scope(engine) as s:
        record_rungs(s, [(ids[v.config_hash], {"rung": v.rung, "milestone": float(v.epoch), "epoch": v.epoch,
                                                "value": v.value, "continued": v.continued}) for v in verdicts])
        for v in verdicts:
            if not v.continued:
                update_trial(s, ids[v.config_hash], status=Status.STOPPED, error=f"stopped@{v.epoch} halving")
    stopped = {v.config_hash for v in verdicts if not v.continued}
    decided = {(row["config_hash"], row["milestone"]) for row in stored} | {
        (v.config_hash, float(v.epoch)) for v in verdicts}
    at = {key: done for key, (status, done, _) in states.items()
          if key not in stopped and status not in (Status.STOPPED, Status.DIVERGED, Status.FAILED)}
    blocked = {t.config_hash for t in todo
               if at.get(t.config_hash) in rungs and (t.config_hash, float(at[t.config_hash])) not in decided}
    return verdicts, blocked
