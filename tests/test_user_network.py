"""Your own network on your own data: a factory's network (BatchNorm, Dropout, a residual block whose activation
module is called twice) and a data factory beside the spec, through `sweep run`, report, plot and page; a
torchvision network with its activations swapped; every refusal in one line, before Ray starts."""
import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from sweep.data.datasets import Arrays
from sweep.models.fused import FusedNet
from sweep.models.nets import build_model
from sweep.models.network import SWAPPED, Network, NetworkError, build_network, build_torchvision
from sweep.run.runner import InputError, run_sweep
from sweep.run.trial import run_trial
from sweep.spec.checks import SpecError
from sweep.spec.code import load_callable
from sweep.spec.grid import expand_grid
from sweep.spec.spec import load_spec, parse_spec
from sweep_process import ENV

SWEEP = str(Path(sys.executable).parent / "sweep")

NETS = '''import torch
from torch import nn


class Block(nn.Module):
    """A residual block: its activation module is called twice in one forward."""

    def __init__(self, width, activation):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act = activation()

    def forward(self, x):
        y = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(y)) + x)


class Net(nn.Module):
    def __init__(self, activation, width, num_classes, input_shape):
        super().__init__()
        self.stem = nn.Conv2d(input_shape[0], width, 3, padding=1)
        self.stem_act = activation()
        self.block = Block(width, activation)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.block(self.stem_act(self.stem(x)))
        return self.head(self.drop(x.mean((2, 3))))


def build(activation, width=8, num_classes=10, input_shape=(1, 28, 28)):
    return Net(activation, width, num_classes, input_shape)


def broken(activation):
    raise ValueError("bad width\\nwidth must be positive")


def not_a_module(activation):
    return {"layers": 3}


def wrong_output(activation, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, num_classes + 3), activation())


def no_activation(activation):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 4))
'''

DATA = '''import torch


def load(classes=4, size=12):
    g = torch.Generator().manual_seed(0)
    protos = torch.rand(classes, 3, size, size, generator=g)

    def draw(n):
        y = torch.randint(0, classes, (n,), generator=g)
        return (protos[y] + 0.3 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1), y

    return draw(192), draw(64)
'''

SPEC = {"name": "mine", "model": {"factory": "nets.py:build", "args": {"width": 8}},
        "dataset": {"factory": "data.py:load", "args": {"classes": 4}}, "epochs": 2, "batch_size": 32,
        "stats_every": 3,
        "grid": {"activation": ["relu", "tanh"], "init": ["kaiming_normal"],
                 "optimizer": [{"name": "adam", "lr": 0.01}]}}
ACTIVATIONS = ["stem_act", "block.act", "block.act#2"]  # forward order; block.act called twice
GRADIENTS = ["stem", "block.conv1", "block.conv2", "head"]  # first use


def digest(path: Path) -> str:
    """sweep.spec.code's digest of one file, computed here from its definition."""
    return hashlib.sha256(path.name.encode() + b"\0" + path.read_bytes() + b"\0").hexdigest()[:16]


def project(folder: Path, spec: dict = SPEC) -> Path:
    (folder / "nets.py").write_text(NETS)
    (folder / "data.py").write_text(DATA)
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    return folder


def sweep(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SWEEP, *args], cwd=folder, env=ENV, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    folder = project(tmp_path_factory.mktemp("mine"))
    return folder, sweep(folder, "run", "spec.yaml")


def rows(folder: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(folder / "runs" / "sweep.db") as conn:
        return conn.execute(sql).fetchall()


def test_a_users_network_and_data_run_with_statistics_for_every_activation_call_in_forward_order(ran):
    folder, run = ran
    assert run.returncode == 0, run.stderr[-3000:]
    assert "2/2 done" in run.stdout
    assert rows(folder, "SELECT status, epochs_done, model FROM trials") == [("completed", 2, "nets.py:build")] * 2
    for (trial,) in rows(folder, "SELECT trial_id FROM trials"):
        first = rows(folder, f"SELECT layer, kind FROM layer_stats WHERE trial_id = {trial} AND step = "
                             f"(SELECT MIN(step) FROM layer_stats WHERE trial_id = {trial}) ORDER BY layer_stat_id")
        assert first == [(a, "activation") for a in ACTIVATIONS] + [(g, "gradient") for g in GRADIENTS]
    # Input shape and classes came from the data: 3x12x12 images, 4 classes (chance is 1/4).
    stored = json.loads(rows(folder, "SELECT spec_json FROM sweeps")[0][0])
    assert stored["dataset"]["classes"] == 4
    config = json.loads(rows(folder, "SELECT config_json FROM trials LIMIT 1")[0][0])
    assert json.loads(config["network"]) == {"factory": "nets.py:build", "args": {"width": 8},
                                             "code": digest(folder / "nets.py")}
    assert json.loads(config["data"]) == {"factory": "data.py:load", "args": {"classes": 4},
                                          "code": digest(folder / "data.py")}


def test_report_says_which_code_ran_and_plot_and_page_draw_the_networks_layers(ran):
    folder, _ = ran
    report = sweep(folder, "report", "--spec", "spec.yaml")
    assert report.returncode == 0, report.stderr
    assert (f'ran: model.factory nets.py:build (code {digest(folder / "nets.py")}) args {{"width": 8}}; '
            f'dataset.factory data.py:load (code {digest(folder / "data.py")}) args {{"classes": 4}}'
            ) in " ".join(report.stdout.split())  # as the terminal's width wrapped it
    plot = sweep(folder, "plot", "--spec", "spec.yaml")
    assert plot.returncode == 0, plot.stderr
    assert {"depth.png", "dynamics.png"} <= {Path(p).name for p in plot.stdout.split()}
    page = sweep(folder, "page", "--spec", "spec.yaml")
    assert page.returncode == 0, page.stderr
    html = Path(page.stdout.split()[-1]).read_text()
    assert all(layer in html for layer in [*ACTIVATIONS, *GRADIENTS])


def test_tensorboard_has_the_second_call_of_a_module_as_its_own_layer(ran):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder, _ = ran
    acc = EventAccumulator(str(folder / "runs" / "mine" / "relu-kaiming_normal-adam-lr0.01-s0"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {f"activation/{a}/std" for a in ACTIVATIONS} <= set(tags)
    assert {f"gradient/{g}/std" for g in GRADIENTS} <= set(tags)


def test_a_changed_nets_py_under_the_same_sweep_name_is_refused(ran):
    folder, _ = ran
    before = digest(folder / "nets.py")
    (folder / "nets.py").write_text(NETS + "# tuned\n")
    try:
        changed = digest(folder / "nets.py")
        run = sweep(folder, "run", "spec.yaml")
    finally:
        (folder / "nets.py").write_text(NETS)
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == (f'Error: model.code: sweep \'mine\' ran with "{before}" ({folder}/runs/mine/settings.json), '
                          f'this spec says "{changed}"; a sweep\'s settings other than its grid values and epochs are '
                          "fixed once it has run: give this spec a new name, or an output (or database) elsewhere\n")


def _bad(tmp_path, model=None, dataset=None, resources=None) -> str:
    """The one line `sweep run` says for a spec with this model/dataset; nothing written."""
    spec = {**SPEC, "output": "out"}
    if model is not None:
        spec["model"] = model
    if dataset is not None:
        spec["dataset"] = dataset
    if resources is not None:
        spec["resources"] = resources
    project(tmp_path, spec)
    try:
        run_sweep(load_spec(tmp_path / "spec.yaml"))
    except (SpecError, InputError) as exc:
        assert sorted(p.name for p in tmp_path.iterdir()) == ["data.py", "nets.py", "spec.yaml"]
        return str(exc).replace(str(tmp_path), "DIR")
    raise AssertionError("not refused")


@pytest.mark.parametrize("model, dataset, resources, line", [
    ({"factory": "net.py:build"}, None, None,
     "DIR/spec.yaml: model.factory: DIR/net.py does not exist (a factory file is relative to the spec's folder, DIR)"),
    ({"factory": "nets.py"}, None, None, "DIR/spec.yaml: model.factory: 'nets.py' is not a factory like nets.py:build "
                                         "(a file beside the spec) or mypkg.nets:build (a module)"),
    ({"factory": "nets.py:biuld"}, None, None,
     "model.factory nets.py:biuld: cannot be loaded: AttributeError: nets has no biuld"),
    ({"factory": "nets.py:broken"}, None, None,
     "model.factory nets.py:broken raised ValueError: width must be positive"),
    ({"factory": "nets.py:not_a_module"}, None, None,
     "model.factory nets.py:not_a_module returned a dict, not a torch.nn.Module"),
    ({"factory": "nets.py:wrong_output"}, None, None,
     "model.factory nets.py:wrong_output gives (2, 7) for a batch of 2 inputs of shape (3, 12, 12); a classifier "
     "gives (batch, classes) = (2, 4)"),
    ({"factory": "nets.py:no_activation"}, None, None,
     "model.factory nets.py:no_activation uses none of the activation modules the grid gives it (the activation "
     "argument): a factory must build its activations by calling activation()"),
    ({"factory": "mypkg.nets:build"}, None, None,
     "DIR/spec.yaml: model.factory: no module mypkg.nets (neither a package folder DIR/mypkg beside the spec nor an "
     "installed module)"),
    ({"torchvision": "resnet81"}, None, None,
     "DIR/spec.yaml: model.torchvision: 'resnet81' is not a known classification network of torchvision.models; "
     "allowed: "),
    ({"torchvision": "resnet18", "args": {"num_classes": 7}}, None, None,
     "model.torchvision resnet18 gives (2, 7) for a batch of 2 inputs of shape (3, 12, 12); a classifier gives "
     "(batch, classes) = (2, 4)"),
    ({"torchvision": "densenet121"}, None, None,
     "model.torchvision densenet121 calls an activation as a function (DenseNet.forward: out = F.relu(features, "
     "inplace=True)), which swapping its activation modules cannot reach: use a network whose activations are "
     "modules, or wrap it in a factory of your own"),
    (None, None, {"fuse": 4},
     "DIR/spec.yaml: resources.fuse: 4: nets.py:build trains alone (sweep fuses its own networks, lenet and mlp, "
     "only); write fuse: auto or off"),
    (None, {"factory": "data.py:nope"}, None, "dataset.factory data.py:nope: cannot be loaded: AttributeError: data "
                                               "has no nope"),
    ({"name": "lenet"}, {"factory": "data.py:load", "args": {"size": 6}}, None,
     "model lenet cannot take this data's (3, 6, 6) inputs: RuntimeError: "),
])
def test_every_bad_network_or_data_is_one_line_before_ray_starts_nothing_written(tmp_path, model, dataset,
                                                                                   resources, line):
    said = _bad(tmp_path, model, dataset, resources)
    assert said.startswith(line) if line.endswith(": ") else said == line, said
    assert "\n" not in said


def test_a_factory_named_like_an_installed_module_is_refused(tmp_path):
    project(tmp_path)
    (tmp_path / "numpy.py").write_text(NETS)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({**SPEC, "model": {"factory": "numpy.py:build"}}))
    with pytest.raises(SpecError) as refused:
        load_spec(tmp_path / "spec.yaml")
    assert str(refused.value) == (
        f"{tmp_path}/spec.yaml: model.factory: numpy.py has the name of the installed module numpy "
        f"({np.__file__}); rename it, e.g. my_numpy.py, so that the workers import yours")


def _trials(folder: Path, **changes):
    folder.mkdir(exist_ok=True)
    project(folder)
    spec = parse_spec({**SPEC, "output": str(folder / "runs"), **changes}, folder)
    load_callable(spec.model.ref(), from_path=True)  # as the driver reads it; a worker imports it by name
    return expand_grid(spec)


def _data(shape=(3, 12, 12), classes=4, n=96) -> Arrays:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n + 32, *shape, generator=g).numpy()
    y = torch.randint(0, classes, (n + 32,), generator=g).numpy()
    return Arrays(x[:n], y[:n], x[n:], y[n:], classes=classes)


def test_a_resumed_trial_with_dropout_and_batchnorm_is_bit_for_bit_the_uninterrupted_one(tmp_path):
    whole = _trials(tmp_path / "whole")[0]
    reports_whole, reports_cut = [], []
    run_trial(whole, _data(), reports_whole.append, tensorboard=False)
    cut = _trials(tmp_path / "cut")[0]
    from dataclasses import replace

    run_trial(replace(cut, epochs=1), _data(), reports_cut.append, tensorboard=False)
    run_trial(cut, _data(), reports_cut.append, tensorboard=False)  # resumes from epoch 1's checkpoint
    last = [r for r in reports_whole if r["epoch"] == 2][0]
    resumed = [r for r in reports_cut if r["epoch"] == 2][0]
    keys = ("train_loss", "test_loss", "test_acc")
    assert resumed["resumed_from"] == 1
    assert [resumed[k] for k in keys] == [last[k] for k in keys]


def test_evaluation_runs_in_eval_mode_and_leaves_batchnorm_statistics_alone(tmp_path):
    cfg = _trials(tmp_path)[0]
    build = load_callable(parse_spec({**SPEC}, tmp_path).model.ref(), from_path=True)
    net = build_network(cfg.model, "relu", (), "torch", json.loads(cfg.network), (3, 12, 12), 4, build)
    fused = FusedNet([net], [("sgd", {"lr": 0.1})])
    x, y = torch.rand(40, 3, 12, 12), torch.randint(0, 4, (40,))
    before = {k: v.clone() for k, v in fused.member_state(0)[0].items()}
    first, second = fused.evaluate(x, y), fused.evaluate(x, y)  # Dropout on would draw other masks
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    after = fused.member_state(0)[0]
    assert all(torch.equal(before[k], after[k]) for k in before)  # running_mean/var and num_batches_tracked
    assert "net.block.bn1.running_mean" in after
    with pytest.raises(NotImplementedError, match="nets.py:build trains alone"):
        FusedNet([net, net], [("sgd", {"lr": 0.1})] * 2)


def test_a_torchvision_network_has_every_activation_swapped_and_a_module_called_twice_gives_two_layers():
    net = build_network("resnet18", "relu", (), "torch", {"torchvision": "resnet18", "args": {}}, (3, 32, 32), 10)
    swapped = [m for m in net.modules() if isinstance(m, SWAPPED)]
    assert len(swapped) == 9 and all(type(m) is nn.ReLU and not m.inplace for m in swapped)
    assert len({id(m) for m in swapped}) == 9  # a new instance per place
    logits, acts = net(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    names = [f"layer{i}.{j}.relu{k}" for i in range(1, 5) for j in range(2) for k in ("", "#2")]
    assert list(acts) == ["relu", *names]
    assert acts["layer1.0.relu"].data_ptr() != acts["layer1.0.relu#2"].data_ptr()
    layers = list(net.weight_layers())
    assert layers[:3] == ["conv1", "layer1.0.conv1", "layer1.0.conv2"] and layers[-1] == "fc"
    # A block's shortcut is used after its second conv: first use, not definition order.
    assert layers.index("layer2.0.downsample.0") == layers.index("layer2.0.conv2") + 1
    tanh, swapped_out = build_torchvision("resnet18", "tanh", {}, 10, "x")
    assert len(swapped_out) == 9 and all(type(m) is nn.ReLU for m in swapped_out.values())
    assert {type(m) for m in tanh.modules() if isinstance(m, SWAPPED)} == {nn.Tanh}


def test_a_network_calling_an_activation_as_a_function_is_refused_naming_the_call():
    with pytest.raises(NetworkError) as refused:
        build_torchvision("googlenet", "tanh", {"aux_logits": False, "init_weights": False}, 10,
                          "model.torchvision googlenet")
    assert str(refused.value) == (
        "model.torchvision googlenet calls an activation as a function (BasicConv2d.forward: return F.relu(x, "
        "inplace=True)), which swapping its activation modules cannot reach: use a network whose "
        "activations are modules, or wrap it in a factory of your own")


def test_the_study_networks_take_the_datas_shape_and_classes():
    lenet = build_model("lenet", "tanh", input_shape=(3, 32, 32), classes=4)
    assert lenet(torch.rand(2, 3, 32, 32))[0].shape == (2, 4)
    assert lenet.fc1.in_features == 16 * 6 * 6
    mlp = build_model("mlp", "tanh", (16,), input_shape=(3, 12, 12), classes=4)
    assert mlp(torch.rand(2, 3, 12, 12))[0].shape == (2, 4) and mlp.layers["fc1"].in_features == 432
    # The study's own shapes stay: 28x28 one-channel images, ten classes.
    assert build_model("lenet", "tanh").fc1.in_features == 400


def test_an_activation_whose_output_is_not_per_example_is_left_as_the_network_has_it():
    """Swin V2's position-bias MLP has a ReLU whose output is a table (1, 15, 15, heads), not a batch: swapped, it
    would change the attention, and its dead_frac would read the table's first axis as examples."""
    net = build_network("swin_v2_t", "tanh", (), "torch", {"torchvision": "swin_v2_t", "args": {}}, (3, 64, 64), 10)
    _, acts = net(torch.rand(3, 3, 64, 64))
    assert len(acts) == 12 and all(a.shape[0] == 3 for a in acts.values())
    bias_mlps = [m for name, m in net.named_modules() if name.endswith("attn.cpb_mlp.1")]
    assert len(bias_mlps) == 12 and all(type(m) is nn.ReLU for m in bias_mlps)
    assert sum(type(m) is nn.Tanh for m in net.modules()) == 12  # the blocks' MLP activations: swapped


def test_a_refused_network_is_left_without_sweeps_hooks(tmp_path):
    project(tmp_path)
    build = load_callable(parse_spec({**SPEC, "model": {"factory": "nets.py:wrong_output"}}, tmp_path).model.ref(),
                          from_path=True)
    from sweep.models.network import call_factory

    inner = call_factory(build, "relu", {}, (3, 12, 12), 4, "x")
    with pytest.raises(NetworkError):
        Network(inner, (3, 12, 12), 4, "x")
    assert all(not m._forward_hooks for m in inner.modules())
