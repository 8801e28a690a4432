"""Spec loading, validation messages and grid expansion."""
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from sweep.cli import main
from sweep.spec.grid import expand_grid
from sweep.spec.spec import SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parent.parent

MINIMAL = {
    "name": "t",
    "grid": {"activation": ["relu"], "optimizer": [{"name": "adam", "lr": 0.001}]},
}


def with_(path: str, value):
    """MINIMAL with the key at dotted `path` set to `value`."""
    import copy

    spec = copy.deepcopy(MINIMAL)
    node = spec
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return spec


def test_default_study_expands_to_sixteen_named_trials():
    spec = load_spec(ROOT / "sweeps.yaml")
    trials = expand_grid(spec)
    assert len(trials) == 16
    names = [t.name for t in trials]
    assert names[:4] == [
        "sigmoid-default-sgd-lr0.001-s0",
        "sigmoid-default-adam-lr0.001-s0",
        "sigmoid-xavier_uniform-sgd-lr0.001-s0",
        "sigmoid-xavier_uniform-adam-lr0.001-s0",
    ]
    assert names[-1] == "relu-xavier_uniform-adam-lr0.001-s0"
    assert len({t.config_hash for t in trials}) == 16
    assert spec.batch_size == 64 and spec.stats_every == 100 and spec.dataset.name == "fashion_mnist"


def test_full_study_spec_is_valid():
    spec = load_spec(ROOT / "sweeps-full.yaml")
    assert spec.epochs == 200 and len(expand_grid(spec)) == 16


def test_defaults():
    spec = parse_spec(MINIMAL)
    assert (spec.epochs, spec.batch_size, spec.stats_every, spec.metric) == (5, 64, 100, "final_test_acc")
    assert spec.database_url == "sqlite:///runs/sweep.db"
    assert spec.grid.seed == (0,) and spec.grid.init[0].name == "default"
    assert spec.resources.gpu == "auto" and spec.resources.cpu == 1.0


@pytest.mark.parametrize("value, expected", [("auto", "auto"), ("off", "off"), (False, "off"), (4, 4)])
def test_fuse_is_auto_off_or_a_bundle_size(value, expected):
    assert parse_spec(with_("resources.fuse", value)).resources.fuse == expected  # YAML reads a bare off as false
    assert parse_spec(MINIMAL).resources.fuse == "auto"


def test_lists_of_hyper_parameters_multiply_the_grid():
    spec = parse_spec({"name": "t", "grid": {
        "activation": ["relu"], "seed": [0, 1, 2],
        "optimizer": [{"name": "sgd", "lr": [0.1, 0.01], "momentum": [0.0, 0.9]}],
    }})
    trials = expand_grid(spec)
    assert len(trials) == 2 * 2 * 3
    assert trials[0].name == "relu-default-sgd-lr0.1-momentum0-s0"
    assert {t.label for t in trials} == {
        "relu-default-sgd-lr0.1-momentum0", "relu-default-sgd-lr0.1-momentum0.9",
        "relu-default-sgd-lr0.01-momentum0", "relu-default-sgd-lr0.01-momentum0.9",
    }


def test_config_hash_ignores_epochs_but_not_training_settings():
    base = expand_grid(parse_spec(MINIMAL))[0]
    longer = expand_grid(parse_spec(with_("epochs", 50)))[0]
    other_batch = expand_grid(parse_spec(with_("batch_size", 32)))[0]
    assert base.config_hash == longer.config_hash
    assert base.config_hash != other_batch.config_hash


def test_auto_gain_is_resolved_per_activation():
    spec = parse_spec({"name": "t", "grid": {
        "activation": ["tanh", "relu"], "init": [{"name": "xavier_uniform", "gain": "auto"}],
        "optimizer": [{"name": "adam", "lr": 0.001}],
    }})
    tanh, relu = expand_grid(spec)
    assert tanh.gain == pytest.approx(5 / 3) and relu.gain == pytest.approx(2 ** 0.5)
    assert tanh.name == "tanh-xavier_uniform-gauto-adam-lr0.001-s0"


@pytest.mark.parametrize("raw, message", [
    ([1, 2], "expected a mapping, got list"),
    (with_("epochs", 0), "epochs: 0 must be >= 1"),
    (with_("epochs", "ten"), "epochs: 'ten' is not an integer"),
    (with_("batch_size", -5), "batch_size: -5 must be >= 1"),
    (with_("grid.activation", ["relu", "tahn"]),
     "grid.activation[1]: 'tahn' is not a known activation; allowed: sigmoid, tanh, softsign, relu, "
     "leaky_relu, elu, selu, gelu, silu; did you mean 'tanh'?"),
    (with_("grid.activation", []), "grid.activation: empty list; give at least one value"),
    (with_("grid.activation", ["relu", "relu"]),
     "grid.activation[1]: duplicate value 'relu'; each grid value may appear once"),
    (with_("grid.optimizer", [{"name": "adma", "lr": 0.1}]),
     "grid.optimizer[0].name: 'adma' is not a known optimizer; allowed: sgd, adam, adamw, rmsprop; "
     "did you mean 'adam'?"),
    (with_("grid.optimizer", [{"name": "adam", "lr": 0}]), "grid.optimizer[0].lr: 0 must be > 0"),
    (with_("grid.optimizer", [{"name": "adam", "lr": [0.1, -1]}]), "grid.optimizer[0].lr[1]: -1 must be > 0"),
    (with_("grid.optimizer", [{"name": "adam"}]), "grid.optimizer[0].lr: missing required key"),
    (with_("grid.optimizer", [{"name": "sgd", "lr": 0.1, "momentun": 0.9}]),
     "grid.optimizer[0].momentun: unknown key; allowed: name, lr, momentum, dampening, nesterov, "
     "weight_decay, samples; did you mean 'momentum'?"),
    (with_("grid.init", ["xavier"]),
     "grid.init[0].name: 'xavier' is not a known init; allowed: default, xavier_uniform, xavier_normal, "
     "kaiming_uniform, kaiming_normal, orthogonal; did you mean 'xavier_normal'?"),
    (with_("grid.init", [{"name": "default", "gain": 2}]),
     "grid.init[0].gain: default takes no gain; gain applies to orthogonal, xavier_normal, xavier_uniform"),
    (with_("grid.seed", [0, 1.5]), "grid.seed[1]: 1.5 is not an integer"),
    (with_("grid.sed", [0]), "grid.sed: unknown key; allowed: activation, init, optimizer, seed; did you mean 'seed'?"),
    (with_("epoch", 3), "epoch: unknown key; allowed: name, dataset, model, epochs, batch_size, stats_every, "
     "metric, grid, resources, stop, tune, output, database; did you mean 'epochs'?"),
    (with_("dataset", "fashion"),
     "dataset.name: 'fashion' is not a known dataset; allowed: fashion_mnist, mnist, kmnist, emnist, qmnist, cifar10, "
     "cifar100, svhn, imagefolder, synthetic; did you mean 'fashion_mnist'?"),
    (with_("model", "resnet"), "model.name: 'resnet' is not a known model; allowed: lenet, mlp; did you mean 'lenet'?"),
    (with_("model", {"name": "lenet", "hidden": [10]}), "model.hidden: lenet has a fixed shape; hidden applies to mlp only"),
    (with_("name", "../etc"), "name: '../etc' is not a safe folder name; use letters, digits, '.', '_' or '-' "
     "(starting with a letter or digit, at most 100 characters)"),
    (with_("metric", "acc"), "metric: 'acc' is not a known metric; allowed: final_test_acc, best_test_acc, "
     "final_test_loss, final_train_loss, final_val_acc, best_val_acc, final_val_loss"),
    (with_("metric", "final_val_acc"), "metric: final_val_acc is read on the validation split, and this spec has none; "
     "add dataset.validation: N (a count, or a fraction below 1)"),
    (with_("resources.gpu", -1), "resources.gpu: -1 must be >= 0"),
    (with_("resources.fuse", "on"), "resources.fuse: 'on' is not auto, off or a number of configurations >= 1"),
    (with_("resources.fuse", 0), "resources.fuse: 0 is not auto, off or a number of configurations >= 1"),
    (with_("resources.fuse", True), "resources.fuse: True is not auto, off or a number of configurations >= 1"),
    (with_("database", "runs/x.db"), "database: 'runs/x.db' is not a database URL like sqlite:///runs/sweep.db"),
    (with_("database", "my db://x"), "database: 'my db://x' is not a database URL like sqlite:///runs/sweep.db"),
    (with_("grid.init", [{"name": "xavier_uniform", "gain": "autoo"}]),
     "grid.init[0].gain: 'autoo' is neither a number > 0 nor auto (did you mean auto?)"),
    (with_("grid.init", [{"name": "xavier_uniform", "gain": "big"}]),
     "grid.init[0].gain: 'big' is neither a number > 0 nor auto"),
    ({"grid": MINIMAL["grid"]}, "name: missing required key"),
])
def test_bad_specs_name_the_key_the_value_and_what_is_allowed(raw, message):
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert str(err.value) == message


def test_cli_rejects_a_bad_spec_with_one_line_exit_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = with_("grid.activation", ["rleu"]) | {"output": str(tmp_path / "out")}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    assert main(["run", "s.yaml"]) == 2
    err = capsys.readouterr().err
    assert err == ("Error: s.yaml: grid.activation[0]: 'rleu' is not a known activation; allowed: sigmoid, tanh, "
                   "softsign, relu, leaky_relu, elu, selu, gelu, silu; did you mean 'relu'?\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


def test_cli_reports_yaml_syntax_errors_with_position(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text("name: [unclosed\n")
    assert main(["run", str(tmp_path / "s.yaml")]) == 2
    assert capsys.readouterr().err == f"Error: {tmp_path / 's.yaml'}: not valid YAML at line 2, column 1: " \
                                      "expected ',' or ']', but got '<stream end>'\n"


def test_cli_rejects_a_spec_that_is_not_text_with_one_line_exit_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.bin").write_bytes(b"\x90" + bytes(range(256)) * 16)
    assert main(["run", "spec.bin"]) == 2
    assert capsys.readouterr().err == ("Error: spec.bin: not a text file: byte 0x90 at position 0 is not UTF-8; "
                                       "a spec is a YAML text file like sweeps.yaml\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.bin"]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_load_spec_on_any_bytes_raises_only_spec_error(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("fuzz") / "s.yaml"
    path.write_bytes(blob)
    try:
        load_spec(path)
    except SpecError:
        pass


def test_relative_paths_resolve_against_the_spec_folder(tmp_path, monkeypatch):
    folder = tmp_path / "studies"
    folder.mkdir()
    (folder / "a.yaml").write_text(yaml.safe_dump(MINIMAL | {"output": "out", "database": "sqlite:///db/a.db"}))
    (folder / "b.yaml").write_text(yaml.safe_dump(MINIMAL | {"dataset": {"name": "synthetic", "data_dir": "/d"}}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    a = load_spec("../studies/a.yaml")
    assert (a.output, a.database_url, a.dataset.data_dir) == (
        str(folder / "out"), f"sqlite:///{folder / 'db' / 'a.db'}", str(folder / "data"))
    assert expand_grid(a)[0].logdir == str(folder / "out" / "t" / "relu-default-adam-lr0.001-s0")
    b = load_spec(folder / "b.yaml")  # defaults too; absolute paths stay as written
    assert (b.output, b.database_url, b.dataset.data_dir) == (
        str(folder / "runs"), f"sqlite:///{folder / 'runs' / 'sweep.db'}", "/d")


def test_cli_reports_a_missing_spec_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err == f"Error: {tmp_path / 'nope.yaml'}: cannot read: No such file or directory\n"


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 300) | st.floats(allow_nan=True) | st.text(max_size=8)
    | st.sampled_from(["relu", "adam", "sgd", "lenet", "mlp", "synthetic", "auto", "xavier_uniform"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["name", "grid", "activation", "optimizer", "lr", "seed", "init", "gain", "epochs",
                         "model", "hidden", "dataset", "resources", "gpu", "cpu", "x"]), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(yaml_values)
def test_fuzz_parse_spec_raises_only_spec_error(raw):
    try:
        parse_spec(raw)
    except SpecError:
        pass


def test_gpu_request_on_a_machine_without_gpu_is_a_spec_error(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)  # as on the CI machine
    monkeypatch.chdir(tmp_path)
    spec = with_("resources.gpu", 1) | {"dataset": "synthetic", "output": "out"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    assert main(["run", "s.yaml"]) == 2
    assert capsys.readouterr().err == \
        "Error: resources.gpu: 1 requested, but this machine has no GPU; use 0 or auto\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


NUMBERS_AS_WRITTEN = """name: t
dataset: {name: synthetic, train_limit: 6e3, test_limit: 1.0e+3}
epochs: 2.0e1
batch_size: 6.4e1
resources: {fuse: 4e0, max_failures: 1e0}
grid:
  activation: relu
  init: xavier_uniform
  optimizer: {name: sgd, lr: 1e-1, momentum: 0.9}
  seed: 0
stop: {chance: 2e0, asha: {grace: 1e0, reduction: 3}}
"""


def test_numbers_and_lone_values_are_read_as_people_write_them(tmp_path):
    (tmp_path / "s.yaml").write_text(NUMBERS_AS_WRITTEN)
    spec = load_spec(tmp_path / "s.yaml")
    got = (spec.dataset.train_limit, spec.dataset.test_limit, spec.epochs, spec.batch_size, spec.resources.fuse,
           spec.resources.max_failures)
    assert got == (6000, 1000, 20, 64, 4, 1)
    assert all(type(v) is int for v in got)
    assert (spec.stop.rules[0].epochs, spec.stop.asha.grace) == (2, 1)
    # a lone value is a list of one
    assert [t.name for t in expand_grid(spec)] == ["relu-xavier_uniform-sgd-lr0.1-momentum0.9-s0"]
    assert expand_grid(spec)[0].seed == 0 and type(expand_grid(spec)[0].seed) is int


@pytest.mark.parametrize("raw, message", [
    (with_("dataset", {"name": "synthetic", "train_limit": "6.05e1"}),
     "dataset.train_limit: '6.05e1' is not an integer"),
    (with_("epochs", 2.5), "epochs: 2.5 is not an integer"),
    (with_("grid.seed", 1.5), "grid.seed: 1.5 is not an integer"),
    (with_("grid.activation", "tahn"),
     "grid.activation: 'tahn' is not a known activation; allowed: sigmoid, tanh, softsign, relu, "
     "leaky_relu, elu, selu, gelu, silu; did you mean 'tanh'?"),
    (with_("grid.seed", None), "grid.seed: expected a value or a list, got None"),
])
def test_a_number_that_is_not_whole_or_a_bad_lone_value_is_refused_in_one_line(raw, message):
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert str(err.value) == message
