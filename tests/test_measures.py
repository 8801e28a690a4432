"""The rules are their flags (sweep/measures.py): real trials stopped by each rule with patience 1 stop
exactly where the database's flag first appears, and the database's flags are the module's tests."""
import math

import pytest

from sweep.data.datasets import synthetic
from sweep.db.engine import init_db, make_engine
from sweep.db.flags import flags_frame
from sweep.db.queries import epoch_metrics_frame, trials_frame
from sweep.spec.grid import expand_grid
from sweep.measures import DEFAULTS, FLAGS, FlagThresholds, fires, loss_ratio, threshold_of
from events import record_trials
from sweep.run.records import record_plan
from sweep.spec.spec import parse_spec
from sweep.run.stopping import Stopper

EPOCHS = 3
# Thresholds none of which is the default, chosen so that on GRID each flag appears in some trials and not
# in others, at epoch 1 for some and later for others; exploding appears on the gradient ratio (tanh with
# Adam, epoch 1) and on the loss alone (tanh with SGD at lr 2: its train loss 28x the loss before
# training at epoch 2, its gradient ratio 0).
THRESHOLDS = FlagThresholds(saturated=0.3, dead=0.28, vanishing=0.0045, exploding=10.0, chance_margin=0.03)
GRID = {"activation": ["sigmoid", "relu", "tanh"], "init": ["xavier_uniform"],
        "optimizer": [{"name": "sgd", "lr": 0.001}, {"name": "adam", "lr": 0.01}, {"name": "sgd", "lr": 2.0}]}


def spec_of(name: str, out, stop=None):
    return parse_spec({"name": name, "dataset": {"name": "synthetic", "train_limit": 256, "test_limit": 128},
                       "epochs": EPOCHS, "batch_size": 32, "stats_every": 4, "output": str(out), "grid": GRID,
                       **({"stop": stop} if stop else {})})


def record(engine, spec, data) -> None:
    """The spec's trials, one after another, through run_trial with the spec's stop rules, into the database as
    a sweep's driver writes them (DatabaseRecorder)."""
    trials = expand_grid(spec)
    stopper = Stopper(spec.stop, spec.metric, spec.epochs) if spec.stop.rules else None
    record_trials(engine, record_plan(engine, spec, trials, []), trials, data, tensorboard=False, stopper=stopper)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """One database: sweep "none" without stop rules, and for each flag a sweep whose only rule is that flag's
    with patience 1 at THRESHOLDS."""
    out = tmp_path_factory.mktemp("measures")
    engine = make_engine(f"sqlite:///{out / 'sweep.db'}")
    init_db(engine)
    data = synthetic(256, 128)
    record(engine, spec_of("none", out), data)
    for flag in FLAGS:
        key = FLAGS[flag][1]
        record(engine, spec_of(flag, out, {flag: {key: threshold_of(flag, THRESHOLDS), "epochs": 1}}), data)
    yield engine
    engine.dispose()


def first_flags(flags) -> dict[tuple[str, str], int]:
    """(trial, flag) -> the first epoch the flag names (exploding: on the gradients or the loss)."""
    out = {}
    for r in flags.itertuples():
        out[r.trial, r.flag] = min(out.get((r.trial, r.flag), r.epoch), r.epoch)
    return out


@pytest.mark.parametrize("flag", list(FLAGS))
def test_a_rule_with_patience_one_stops_where_its_flag_first_appears(sweeps, flag):
    """Trained for real, the rule judged on the trial's own measures (epoch_measures of each epoch's closing
    snapshot), the flag by the database from what was recorded: a trial stops at E by the rule exactly when
    the flag first appears at E (a flag first at the last epoch: the trial completes, no stop is due)."""
    trials = trials_frame(sweeps, flag).astype(object)
    trials = trials.where(trials.notna(), None)
    flags = flags_frame(sweeps, flag, THRESHOLDS)
    first = first_flags(flags)
    stopped = completed = 0
    for t in trials.itertuples():
        at = first.get((t.name, flag))
        if at is not None and at < EPOCHS:
            assert (t.status, t.epochs_done, t.error) == ("stopped", at, f"stopped@{at} {flag}"), t.name
            stopped += 1
        else:
            assert (t.status, t.epochs_done) == ("completed", EPOCHS) and t.error is None, (t.name, at, t.error)
            completed += 1
    assert stopped >= 1 and completed >= 1
    if flag == "exploding":  # a trial whose loss exploded, its gradient ratio never above the threshold
        assert set(flags[flags["flag"] == "exploding"]["layer"]) >= {"loss", "conv1"}
        loss_only = {r.trial for r in flags.itertuples() if r.layer == "loss"} - {
            r.trial for r in flags.itertuples() if r.flag == "exploding" and r.layer != "loss"}
        assert loss_only and all(trials.set_index("name").loc[n, "status"] == "stopped" for n in loss_only)


def module_flags(engine, sweep: str, thresholds: FlagThresholds) -> dict[tuple[str, str], int]:
    """(trial, flag) -> epoch, from sweep.measures' tests on each recorded epoch row (its summary columns,
    test accuracy and loss ratio): each flag at its first epoch, chance at the start of its final run; read
    as the report reads (diverged trials up to the epoch before)."""
    trials = trials_frame(engine, sweep).set_index("trial_id")
    epochs = epoch_metrics_frame(engine, sweep)
    out = {}
    for trial_id, rows in epochs.groupby("trial_id"):
        t = trials.loc[trial_id]
        last = t.epochs_done - 1 if t.status == "diverged" else EPOCHS
        start = rows.loc[rows["epoch"] == 0, "test_loss"].max()
        history = [{**{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()},
                    "loss_ratio": loss_ratio(r["train_loss"], start)}
                   for r in rows.sort_values("epoch").to_dict("records") if 1 <= r["epoch"] <= last]
        for flag in FLAGS:
            hits = [fires(flag, m, threshold_of(flag, thresholds), thresholds.classes) for m in history]
            if flag == "chance":
                if hits and hits[-1]:
                    run = max((i for i, h in enumerate(hits) if not h), default=-1) + 1  # the final run's start
                    out[t["name"], flag] = history[run]["epoch"]
            elif any(hits):
                out[t["name"], flag] = history[hits.index(True)]["epoch"]
    return out


@pytest.mark.parametrize("thresholds", [DEFAULTS, THRESHOLDS], ids=["default", "lax"])
def test_the_databases_flags_are_the_modules_tests_on_recorded_sweeps(sweeps, recorded_db, thresholds):
    engines = [(sweeps, s) for s in ("none", *FLAGS)] + [(make_engine(f"sqlite:///{recorded_db / 'sweep.db'}"), "rec")]
    seen = set()
    for engine, sweep in engines:
        got = {k: v for k, v in first_flags(flags_frame(engine, sweep, thresholds)).items() if k[1] != "diverged"}
        assert got == module_flags(engine, sweep, thresholds), sweep
        seen |= {flag for _, flag in got}
    if thresholds == THRESHOLDS:
        assert seen == set(FLAGS)
