"""Ray Tune's driver callbacks called as Tune calls them, without Ray: the run's ledger first, then the recorder
and the progress line that read what it made of each event (sweep/run/ledger.py)."""
from types import SimpleNamespace

from sweep.run.ledger import Ledger
from sweep.run.recorder import DatabaseRecorder
from sweep.run.trial import run_trial


class Events:
    """Calls each callback's method of an event in the run's order: Events(ledger, recorder).on_trial_start(...)."""

    def __init__(self, *callbacks):
        self.callbacks = callbacks

    def __getattr__(self, name: str):
        having = [c for c in self.callbacks if hasattr(c, name)]  # record: the recorder's own
        if not having:
            raise AttributeError(name)
        return lambda *args, **kwargs: [getattr(c, name)(*args, **kwargs) for c in having]


def ray_trial(*cfgs):
    """A Ray trial of `cfgs` (a fused bundle where several) as the runner builds it."""
    return SimpleNamespace(config={"bundle": [c.to_dict() for c in cfgs]})


def record_trials(engine, trial_ids, trials, data, **trial_args) -> None:
    """`trials`, one after another through run_trial, into the database as a sweep's driver writes them: each
    report through the ledger and the recorder, as Ray Tune hands them over."""
    ledger = Ledger.of(trials)
    events = Events(ledger, DatabaseRecorder(engine, trial_ids, ledger))
    for t in trials:
        trial = ray_trial(t)
        events.on_trial_start(0, [], trial)
        run_trial(t, data, lambda result: events.on_trial_result(0, [], trial, result), **trial_args)
        events.on_trial_complete(0, [], trial)
