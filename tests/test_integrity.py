"""Results never mix: a sweep's fixed settings, checkpoints of one configuration only, flags on comparable data."""
import json
import math
from dataclasses import fields, replace
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from sweep.db.engine import init_db, make_engine, session_scope
from reference import compute_flags
from sweep.db.flags import FlagThresholds, flags_frame
from sweep.db.queries import ensure_sweep, ensure_trials, record_results, update_trial
from sweep import cli
from sweep.data.datasets import load_dataset, synthetic
from sweep.spec.grid import TrialConfig, expand_grid
from sweep.run.records import SETTINGS_FILE, read_state, record_plan
from sweep.run.runner import check_settings
from sweep.spec.spec import FIXED_SETTINGS, SpecError, load_spec, parse_spec
from sweep.run.trial import CHECKPOINT, CheckpointMismatch, closing_batch, run_trial

BASE = {
    "name": "fixed", "dataset": {"name": "synthetic", "train_limit": 64, "test_limit": 32},
    "model": {"name": "mlp", "hidden": [16, 16]}, "epochs": 2, "batch_size": 32, "stats_every": 2,
    "grid": {"activation": ["tanh"], "optimizer": [{"name": "sgd", "lr": 0.1}]},
}


def _write(folder: Path, raw: dict) -> Path:
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    for kind, text in (("model", OWN_NETS), ("dataset", OWN_DATA)):  # the user's own code a spec names, beside it
        factory = (raw.get(kind) or {}).get("factory") if isinstance(raw.get(kind), dict) else None
        if factory and not (folder / factory.split(":")[0]).exists():
            (folder / factory.split(":")[0]).write_text(text)
    return path


OWN_NETS = """from torch import nn
def build(activation, width=8, num_classes=10, input_shape=(1, 28, 28)):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, width), activation(), nn.Linear(width, num_classes))
"""
OWN_DATA = """import torch
def load(n=64):
    return (torch.rand(n, 1, 28, 28), torch.arange(n) % 10), (torch.rand(32, 1, 28, 28), torch.arange(32) % 10)
"""
OWN = {**BASE, "model": {"factory": "nets.py:build", "args": {"width": 8}},
       "dataset": {"factory": "data.py:load", "args": {"n": 64}}}


def _edit(name: str):
    """A change to the user's file `name` beside the spec (its code, not the spec)."""
    def change(folder: Path) -> dict:
        (folder / name).write_text((folder / name).read_text() + "# tuned\n")
        return {}
    change.file = name
    return change


def _code(path: Path) -> str:
    """A file's code digest as the refusal shows it (sweep.spec.code: sha256 of name, NUL, bytes, NUL)."""
    import hashlib

    return json.dumps(hashlib.sha256(path.name.encode() + b"\0" + path.read_bytes() + b"\0").hexdigest()[:16])


def _has_run(folder: Path, raw: dict) -> None:
    """What a `sweep run` of `raw` leaves before its first trial: the sweep row, the trial rows, the settings file."""
    spec = load_spec(_write(folder, raw))
    spec.sweep_dir.mkdir(parents=True)
    engine = make_engine(spec.database_url)
    init_db(engine)
    record_plan(engine, spec, expand_grid(spec), [])
    engine.dispose()


def _state(folder: Path) -> tuple:
    """Every file below `folder` with its bytes (the database's rows included)."""
    return tuple(sorted((str(p.relative_to(folder)), p.read_bytes()) for p in folder.rglob("*")
                        if p.is_file() and p.name not in ("spec.yaml", "nets.py", "data.py")))


CHANGES = [  # (fixed key, the change, how the refusal shows the stored and the new value)
    ("dataset.name", {"dataset": {"name": "fashion_mnist", "train_limit": 64, "test_limit": 32}},
     '"synthetic"', '"fashion_mnist"'),
    ("dataset.train_limit", {"dataset": {"name": "synthetic", "train_limit": 65, "test_limit": 32}}, "64", "65"),
    ("dataset.test_limit", {"dataset": {"name": "synthetic", "train_limit": 64}}, "32", "not set"),
    ("dataset.validation", {"dataset": {"name": "synthetic", "train_limit": 64, "test_limit": 32, "validation": 0.1}},
     "not set", "0.1"),
    ("model.name", {"model": "lenet"}, '"mlp"', '"lenet"'),
    ("model.hidden", {"model": {"name": "mlp", "hidden": [16, 8]}}, "[16, 16]", "[16, 8]"),
    ("batch_size", {"batch_size": 16}, "32", "16"),
    ("stats_every", {"stats_every": 3}, "2", "3"),
    # The user's own network and data (their factory is model.name / dataset.name): arguments and code.
    ("model.args", {"model": {"factory": "nets.py:build", "args": {"width": 9}}}, '"{\\"width\\": 8}"',
     '"{\\"width\\": 9}"', OWN),
    ("model.code", _edit("nets.py"), None, None, OWN),  # the digests before and after
    ("dataset.args", {"dataset": {"factory": "data.py:load", "args": {"n": 40}}}, '"{\\"n\\": 64}"',
     '"{\\"n\\": 40}"', OWN),
    ("dataset.code", _edit("data.py"), None, None, OWN),
]


def test_every_fixed_setting_is_tested_and_is_what_the_config_hash_adds_to_the_grid():
    assert [c[0] for c in CHANGES] == list(FIXED_SETTINGS)
    # The trial's identity (its config hash) = the grid's values + the fixed settings: nothing else can part
    # a trial's hash from its folder name.
    grid = {"activation", "init", "gain", "gain_label", "optimizer", "lr", "optimizer_params", "seed"}
    not_identity = {"sweep", "epochs", "logdir"}
    settings = {f.name for f in fields(TrialConfig)} - grid - not_identity
    feeds = {"dataset": ["dataset.name"], "train_limit": ["dataset.train_limit"], "test_limit": ["dataset.test_limit"],
             "validation": ["dataset.validation"], "model": ["model.name"], "hidden": ["model.hidden"],
             "batch_size": ["batch_size"], "stats_every": ["stats_every"],
             # a user's network and data: what builds them (the factory as named, its arguments, its code)
             "network": ["model.name", "model.args", "model.code"],
             "data": ["dataset.name", "dataset.args", "dataset.code"]}
    assert settings == set(feeds)
    assert {key for keys in feeds.values() for key in keys} == set(FIXED_SETTINGS)


@pytest.mark.parametrize("key,change,old,new,base", [(*c, BASE)[:5] for c in CHANGES], ids=[c[0] for c in CHANGES])
def test_a_changed_fixed_setting_is_refused_in_one_line_with_nothing_written(tmp_path, capsys, key, change, old, new,
                                                                             base):
    _has_run(tmp_path, base)
    before = _state(tmp_path)
    if callable(change):
        old = _code(tmp_path / change.file)
        spec_path = _write(tmp_path, {**base, **change(tmp_path)})
        new = _code(tmp_path / change.file)
    else:
        spec_path = _write(tmp_path, {**base, **change})
    assert cli.main(["run", str(spec_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"Error: {key}: sweep 'fixed' ran with {old} (")
    assert f", this spec says {new}; " in err
    assert "give this spec a new name, or an output (or database) elsewhere" in err
    assert _state(tmp_path) == before


def test_the_settings_file_refuses_a_spec_with_another_database_in_the_same_output(tmp_path):
    _has_run(tmp_path, BASE)
    other = {**BASE, "batch_size": 16, "database": f"sqlite:///{tmp_path / 'elsewhere.db'}"}
    with pytest.raises(SpecError, match=r"^batch_size: sweep 'fixed' ran with 32 \(.*settings\.json\)"):
        check_settings(load_spec(_write(tmp_path, other)))
    # A nested setting too: the file holds it flat ("dataset.train_limit").
    nested = {**other, "batch_size": 32, "dataset": {**BASE["dataset"], "train_limit": 65}}
    with pytest.raises(SpecError, match=r"^dataset.train_limit: sweep 'fixed' ran with 64 \(.*settings\.json\)"):
        check_settings(load_spec(_write(tmp_path, nested)))
    assert not (tmp_path / "elsewhere.db").exists()
    assert json.loads((tmp_path / "runs" / "fixed" / SETTINGS_FILE).read_text())["batch_size"] == 32


def test_the_database_refuses_a_spec_whose_folder_lost_its_settings(tmp_path):
    _has_run(tmp_path, BASE)
    (tmp_path / "runs" / "fixed" / SETTINGS_FILE).unlink()
    spec = load_spec(_write(tmp_path, {**BASE, "stats_every": 5}))
    check_settings(spec)  # the folder has no record
    with pytest.raises(SpecError, match=r"^stats_every: sweep 'fixed' ran with 2 \(database sqlite:///"):
        check_settings(spec, read_state(make_engine(spec.database_url), spec))


def test_new_grid_values_more_epochs_and_other_resources_are_allowed(tmp_path):
    _has_run(tmp_path, BASE)
    grown = {**BASE, "epochs": 5, "metric": "final_test_loss", "resources": {"fuse": "off", "max_concurrent": 1},
             "grid": {"activation": ["tanh", "relu"], "init": ["default", "xavier_uniform"],
                      "optimizer": [{"name": "sgd", "lr": [0.1, 0.01]}, {"name": "adam", "lr": "1e-3"}],
                      "seed": [0, 1]}}
    for spec in (load_spec(_write(tmp_path, grown)),
                 # A new sweep name in the same output and database is a new sweep, whatever its settings.
                 load_spec(_write(tmp_path, {**BASE, "name": "fixed-b16", "batch_size": 16}))):
        check_settings(spec)  # no error
        check_settings(spec, read_state(make_engine(spec.database_url), spec))


# ----------------------------------------------------------------------------------------------- checkpoints

DATA = synthetic(train_size=64, test_size=32)


def _config(tmp_path, **changes) -> TrialConfig:
    spec = parse_spec({**BASE, "output": str(tmp_path), **changes})
    return expand_grid(spec)[0]


def test_a_checkpoint_of_another_configuration_is_never_resumed(tmp_path):
    first = _config(tmp_path)
    run_trial(first, DATA, lambda r: None)
    other = _config(tmp_path, batch_size=16)
    assert other.logdir == first.logdir and other.config_hash != first.config_hash
    folder = Path(first.logdir)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(CheckpointMismatch, match=f"config hash {first.config_hash}, this trial's {other.config_hash}"):
        run_trial(other, DATA, lambda r: None)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no event file, no checkpoint written

    # A checkpoint from before checkpoints carried their hash: known by its replayed reports' hash.
    ckpt = torch.load(folder / CHECKPOINT, weights_only=True)
    assert set(ckpt) == {"config_hash", "kernels", "threads", "model", "optimizer", "order_rng", "state", "replay"}
    del ckpt["config_hash"]
    torch.save(ckpt, folder / CHECKPOINT)
    with pytest.raises(CheckpointMismatch):
        run_trial(other, DATA, lambda r: None)
    reports = []
    run_trial(replace(first, epochs=3), DATA, reports.append)  # its own configuration resumes
    assert [r["epoch"] for r in reports] == [1, 2, 3]


def test_a_leftover_temporary_checkpoint_is_removed_and_never_read(tmp_path):
    cfg = _config(tmp_path)
    folder = Path(cfg.logdir)
    folder.mkdir(parents=True)
    (folder / "checkpoint.tmp").write_bytes(b"half a checkpoint")
    reports = []
    run_trial(cfg, DATA, reports.append)
    assert [r["epoch"] for r in reports] == [0, 1, 2]
    assert not (folder / "checkpoint.tmp").exists() and (folder / CHECKPOINT).exists()


# ------------------------------------------------------------------------------- the epoch's closing snapshot

def test_the_closing_snapshot_is_the_epochs_last_full_batch():
    assert closing_batch(2048, 64) == 32
    assert closing_batch(2049, 64) == 32  # batch 33 holds one example
    assert closing_batch(100, 32) == 3
    assert closing_batch(20, 32) == 1  # no full batch: the only one


@pytest.fixture(scope="module")
def fashion():
    data_dir = Path(__file__).resolve().parent.parent / "data"
    return load_dataset("fashion_mnist", data_dir, 2049, 1000)


def test_dead_units_do_not_depend_on_how_the_data_divides_by_the_batch_size(tmp_path, fashion):
    """ReLU, default init, SGD lr 0.01, one epoch, batch 64: before, the closing dead_frac at 2048 vs 2049
    images was conv1 0.30 vs 0.73, conv2 0.06 vs 0.32, fc1 0.24 vs 0.47, fc2 0.42 vs 0.50."""
    closing = {}
    for limit in (2048, 2049):
        spec = parse_spec({"name": f"d{limit}", "dataset": {"name": "fashion_mnist", "train_limit": limit},
                           "epochs": 1, "batch_size": 64, "output": str(tmp_path),
                           "grid": {"activation": ["relu"], "optimizer": [{"name": "sgd", "lr": 0.01}]}})
        data = replace(fashion, train_x=fashion.train_x[:limit], train_y=fashion.train_y[:limit])
        reports = []
        run_trial(expand_grid(spec)[0], data, reports.append, tensorboard=False)
        rows = reports[-1]["layer_stats"]
        last = max(r["step"] for r in rows)
        assert last == 2048  # the snapshot of batch 32, full in both
        closing[limit] = {r["layer"]: r["dead_frac"] for r in rows if r["step"] == last and r["kind"] == "activation"}
    assert set(closing[2048]) == {"conv1", "conv2", "fc1", "fc2"}
    for layer, dead in closing[2048].items():
        assert abs(dead - closing[2049][layer]) < 0.1, (layer, closing)
        assert (dead > 0.5) == (closing[2049][layer] > 0.5)  # the same `dead` flags


# --------------------------------------------------------------------------------------- flags, like with like

TRIALS = pd.DataFrame([
    {"trial_id": 1, "name": "long", "label": "l", "status": "completed", "epochs_done": 4},
    {"trial_id": 2, "name": "nan", "label": "n", "status": "diverged", "epochs_done": 3},
    {"trial_id": 3, "name": "huge", "label": "h", "status": "completed", "epochs_done": 3},
    {"trial_id": 4, "name": "flat", "label": "f", "status": "completed", "epochs_done": 3},
])
EPOCHS = {  # trial -> [(train_loss, test_loss, test_acc)] from epoch 0
    1: [(None, 2.3, 0.1), (0.9, 0.8, 0.7), (0.7, 0.6, 0.8), (0.6, 0.5, 0.85), (9.0, 9.0, 0.1)],  # epoch 4 > sweep's
    2: [(None, 2.3, 0.1), (1.0, 0.9, 0.6), (0.8, 0.7, 0.7), (math.nan, math.nan, 0.1)],  # diverged at 3
    3: [(None, 2.3, 0.1), (200.0, 180.0, 0.2), (1.4e8, 2e8, 0.3), (1e9, 1e9, 0.3)],  # finite, exploding from 2
    4: [(None, 2.3, 0.1), (2.3, 2.3, 0.1), (2.3, 2.3, 0.1), (2.3, 2.3, 0.1)],  # chance from 1
}


def _epoch_frame() -> pd.DataFrame:
    return pd.DataFrame([{"trial_id": t, "trial": TRIALS.name[t - 1], "label": TRIALS.label[t - 1], "epoch": e,
                          "train_loss": tr, "test_loss": te, "test_acc": acc}
                         for t, rows in EPOCHS.items() for e, (tr, te, acc) in enumerate(rows)])


EXPECTED = {("nan", "diverged"): (None, 3), ("huge", "exploding"): ("loss", 2), ("flat", "chance"): (None, 1)}


def test_flags_read_the_sweeps_epochs_and_never_a_diverged_epoch_as_chance():
    flags = compute_flags(TRIALS, _epoch_frame(), pd.DataFrame(), sweep_epochs=3)
    got = {(r.trial, r.flag): (r.layer, r.epoch) for r in flags.itertuples()}
    assert got == EXPECTED
    assert flags[flags.flag == "exploding"].value.iloc[0] == pytest.approx(1.4e8 / 2.3)
    # Read past the sweep's epochs, the long trial would be at chance; with the diverged epoch, the NaN trial.
    unbounded = compute_flags(TRIALS.assign(status="completed"), _epoch_frame(), pd.DataFrame())
    assert {(r.trial, r.flag) for r in unbounded.itertuples()} >= {("long", "chance"), ("nan", "chance")}
    # A finite loss below the threshold's multiple is no flag.
    assert "exploding" not in set(compute_flags(TRIALS, _epoch_frame(), pd.DataFrame(),
                                                FlagThresholds(exploding=1e9), sweep_epochs=3).flag)


def test_the_databases_flags_read_the_same_epochs(db_url):
    engine = make_engine(db_url)
    init_db(engine)
    with session_scope(engine) as s:
        sweep_id = ensure_sweep(s, "like", json.dumps({"epochs": 3}))
        ids = ensure_trials(s, sweep_id, [
            {"config_hash": r.name, "name": r.name, "label": r.label, "model": "lenet", "activation": "tanh",
             "init": "default", "gain": 1.0, "optimizer": "sgd", "lr": 0.1, "optimizer_params_json": "{}",
             "seed": 0, "config_json": "{}", "logdir": "/tmp/x"} for r in TRIALS.itertuples()])
        for r in TRIALS.itertuples():
            update_trial(s, ids[r.name], status=r.status, epochs_done=r.epochs_done)
        record_results(s, [(ids[r.trial], {"epoch": r.epoch, "images_seen": 100 * r.epoch, "train_loss": r.train_loss,
                                           "test_loss": r.test_loss, "test_acc": r.test_acc}, [])
                           for r in _epoch_frame().itertuples()])
    got = flags_frame(engine, "like")
    engine.dispose()
    assert {(r.trial, r.flag): (r.layer, r.epoch) for r in got.itertuples()} == EXPECTED
    assert got[got.flag == "exploding"].value.iloc[0] == pytest.approx(1.4e8 / 2.3)
    pd.testing.assert_frame_equal(got, compute_flags(TRIALS, _epoch_frame(), pd.DataFrame(), sweep_epochs=3))


# ---------------------------------------------------------------------------------------- gains and numbers

def _one(tmp_path, init, activation="relu", **opt):
    return expand_grid(parse_spec({**BASE, "output": str(tmp_path), "grid": {
        "activation": [activation], "init": [init], "optimizer": [{"name": "sgd", "lr": 0.1, **opt}]}}))[0]


def test_kaiming_stores_the_gain_it_uses_and_accepts_auto(tmp_path):
    relu = _one(tmp_path, "kaiming_normal")
    assert relu.gain == pytest.approx(math.sqrt(2)) and relu.gain_label == "auto"
    assert relu.name == "relu-kaiming_normal-sgd-lr0.1-s0"  # the name as before: Kaiming's gain is always auto
    assert _one(tmp_path, {"name": "kaiming_uniform", "gain": "auto"}, "tanh").gain == pytest.approx(5 / 3)
    # The constant to 5 decimals (half a unit of its last place: 5e-6); the rule's own error is far below
    assert _one(tmp_path, "kaiming_uniform", "softsign").gain == pytest.approx(2.33753, abs=1e-5)
    with pytest.raises(SpecError, match=r"grid.init\[0\].gain: 2.0: kaiming_normal takes its gain from the activation"):
        _one(tmp_path, {"name": "kaiming_normal", "gain": 2.0})
    # The weights are drawn with that gain: std = gain / sqrt(fan_in) for Kaiming normal.
    torch.manual_seed(0)
    w = torch.empty(400, 1000)
    from sweep.models.registry import INITS
    INITS["kaiming_normal"](w, relu.gain, "relu")
    # Sampling: the std of n = 400,000 normal draws is off by a relative standard error of 1 / sqrt(2 n) =
    # 1.1e-3, so 1% is 9 of them; a gain of 1 instead of sqrt(2) misses by 29%
    assert w.std().item() == pytest.approx(relu.gain / math.sqrt(1000), rel=0.01)


@pytest.mark.parametrize("activation, gain", [("gelu", 1.53353), ("silu", 1.67653), ("elu", 1.24520)])
@pytest.mark.parametrize("init", ["kaiming_normal", "kaiming_uniform"])
def test_kaiming_keeps_the_second_moment_where_torch_has_no_gain(tmp_path, activation, gain, init):
    """He's gain, 1 / sqrt(E[f(z)^2]) for z ~ N(0, 1), not the linear gain 1 (LeCun's initialisation): the
    trial stores it, the report shows it, and the weights are drawn with std gain / sqrt(fan_in)."""
    trial = _one(tmp_path, init, activation)
    # The constants to 5 decimals (half a unit of their last place: 5e-6); the rule's own error is far below
    assert trial.gain == pytest.approx(gain, abs=1e-5) and trial.gain_label == "auto"
    torch.manual_seed(0)
    w = torch.empty(400, 1000)
    from sweep.models.registry import INITS
    INITS[init](w, trial.gain, activation)
    # Sampling: the std of n = 400,000 draws, a relative standard error of at most 1.1e-3 (normal 1 / sqrt(2 n),
    # uniform 1 / sqrt(5 n)): 1% is 9 of them; the linear gain 1 misses by 19% or more
    assert w.std().item() == pytest.approx(gain / math.sqrt(1000), rel=0.01)


def test_the_second_moment_gain_is_hes_where_torch_has_one():
    from sweep.models.registry import second_moment_gain

    # float64 trapezoid rule, step 1e-4, the kink at the node 0: its error is O(h^4) = 1e-16 on either smooth
    # side; the sum of 240,001 terms rounds by at most n EPS64 = 5e-11 of the integral
    assert second_moment_gain("relu") == pytest.approx(math.sqrt(2), abs=1e-9)
    assert second_moment_gain("leaky_relu") == pytest.approx(torch.nn.init.calculate_gain("leaky_relu", 0.01), abs=1e-9)


def test_selu_takes_the_linear_gain(tmp_path):
    assert _one(tmp_path, {"name": "xavier_uniform", "gain": "auto"}, "selu").gain == 1.0
    assert _one(tmp_path, "kaiming_normal", "selu").gain == 1.0


def test_numbers_in_scientific_notation_are_numbers(tmp_path):
    raw = {**BASE, "grid": {"activation": ["tanh"], "optimizer": [
        {"name": "adam", "lr": ["1e-3", "5E-4", "1.5e+0"], "eps": "1e-8"}]}}
    spec_path = _write(tmp_path, raw)
    lrs = [t.lr for t in expand_grid(load_spec(spec_path))]
    assert lrs == [0.001, 0.0005, 1.5]
    assert dict(expand_grid(load_spec(spec_path))[0].optimizer_params) == {"eps": 1e-8}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**BASE, "grid": {
        "activation": ["tanh"], "optimizer": [{"name": "adam", "lr": "1e-3x"}]}}))
    with pytest.raises(SpecError, match=r"grid.optimizer\[0\].lr\[0\]|grid.optimizer\[0\].lr: '1e-3x' is not a finite"):
        load_spec(tmp_path / "bad.yaml")


def test_an_optimizer_setting_torch_refuses_is_refused_when_the_spec_is_loaded(tmp_path, capsys):
    raw = {**BASE, "grid": {"activation": ["tanh"], "optimizer": [
        {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True},
        {"name": "sgd", "lr": 0.01, "nesterov": True}]}}
    spec_path = _write(tmp_path, raw)
    assert cli.main(["run", str(spec_path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"Error: {spec_path}: grid.optimizer[1]: torch refuses sgd with lr: 0.01, nesterov: true: "
                   "Nesterov momentum requires a momentum and zero dampening\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]  # nothing written
    raw["grid"]["optimizer"] = [{"name": "adam", "lr": 0.1, "beta1": [0.9, 1.0]}]
    with pytest.raises(SpecError, match=r"grid.optimizer\[0\]: torch refuses adam with beta1: 1, lr: 0.1: "
                                        r"Invalid beta parameter at index 0: 1.0"):
        load_spec(_write(tmp_path, raw))
