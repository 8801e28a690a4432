"""A real TensorBoard server over a finished sweep folder, read through its HTTP data endpoints."""
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sweep.data.datasets import load_dataset
from sweep.spec.grid import expand_grid
from sweep.run.hparams import write_experiment
from sweep.spec.spec import parse_spec
from sweep.run.stopping import Stopper
from sweep.run.trial import run_trial


RAW = {"name": "tbsweep", "dataset": "synthetic", "epochs": 2, "batch_size": 32, "stats_every": 4,
       "grid": {"activation": ["tanh", "relu"], "init": ["default", "xavier_uniform"],
                "optimizer": [{"name": "sgd", "lr": 0.05, "momentum": 0.9}]}}
STOPPED = "relu-xavier_uniform-sgd-lr0.05-momentum0.9-s0"


@pytest.fixture(scope="module")
def sweep_folder(tmp_path_factory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("tb")
    spec = parse_spec({**RAW, "output": str(out)})
    trials = expand_grid(spec)
    data = load_dataset("synthetic", None, 128, 64, validation=32)  # 32 held out for validation
    write_experiment(spec.sweep_dir, trials)
    # One trial is stopped by a rule after its first epoch (a chance margin it always meets).
    stops = parse_spec({**RAW, "stop": {"chance": {"margin": 0.99, "epochs": 1}}, "output": str(out)}).stop
    for t in trials:
        stopper = Stopper(stops, "final_test_acc", 2) if t.name == STOPPED else None
        run_trial(t, data, lambda result: None, stopper=stopper)
    return spec.sweep_dir, trials


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(sweep_folder):
    folder, _ = sweep_folder
    port = _free_port()
    exe = Path(sys.executable).with_name("tensorboard")
    proc = subprocess.Popen([str(exe), "--logdir", str(folder), "--host", "127.0.0.1", "--port", str(port),
                             "--reload_interval", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:  # until the server is up and has loaded every run
            try:
                runs = json.load(urllib.request.urlopen(f"{base}/data/runs", timeout=5))
                if len(runs) >= 5:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "TensorBoard did not come up with the sweep's runs"
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def get(url):
    return json.load(urllib.request.urlopen(url, timeout=30))


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=30))


def test_runs_are_listed_under_their_readable_names(server, sweep_folder):
    _, trials = sweep_folder
    assert sorted(get(f"{server}/data/runs")) == sorted([".", *(t.name for t in trials)])


def test_scalar_tags_exist_for_every_trial(server, sweep_folder):
    _, trials = sweep_folder
    tags = get(f"{server}/data/plugin/scalars/tags")
    for t in trials:
        assert {"accuracy/test", "loss/test", "loss/train", "loss/train_epoch", "activation/conv1/std",
                "activation/fc2/dead_frac", "gradient/fc3/p98"} <= set(tags[t.name])
    assert "activation/conv1/sat_frac" in tags["tanh-default-sgd-lr0.05-momentum0.9-s0"]
    assert "activation/conv1/sat_frac" not in tags["relu-default-sgd-lr0.05-momentum0.9-s0"]


def test_hparams_experiment_lists_every_trial_with_its_factors(server, sweep_folder):
    _, trials = sweep_folder
    experiment = post(f"{server}/data/plugin/hparams/experiment", {"experimentName": ""})
    infos = {h["name"]: h for h in experiment["hparamInfos"]}
    assert set(infos) == {"activation", "init", "gain", "gain_value", "optimizer", "lr", "seed", "momentum"}
    assert infos["activation"]["domainDiscrete"] == ["relu", "tanh"]
    assert infos["init"]["domainDiscrete"] == ["default", "xavier_uniform"]
    # whole numbers stay whole: the seed and the gain as the report writes them
    assert (infos["seed"]["type"], infos["seed"]["domainDiscrete"]) == ("DATA_TYPE_STRING", ["0"])
    assert (infos["gain"]["type"], infos["gain"]["domainDiscrete"]) == ("DATA_TYPE_STRING", ["1"])
    assert {m["name"]["tag"] for m in experiment["metricInfos"]} == {"accuracy/test", "loss/test", "loss/train_epoch",
                                                                     "accuracy/val", "loss/val", "stopped/epoch"}

    groups = post(f"{server}/data/plugin/hparams/session_groups", {
        "experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                                                  "STATUS_RUNNING"],
        "colParams": [], "startIndex": 0, "sliceSize": 100})
    sessions = {s["name"]: (g["hparams"], s) for g in groups["sessionGroups"] for s in g["sessions"]}
    assert sorted(sessions) == sorted(t.name for t in trials)
    for t in trials:
        hparams, session = sessions[t.name]
        assert hparams["activation"] == t.activation and hparams["init"] == t.init
        assert hparams["lr"] == pytest.approx(0.05) and hparams["momentum"] == pytest.approx(0.9)
        assert (hparams["seed"], hparams["gain"]) == ("0", "1")
        metrics = {m["name"]["tag"]: m for m in session["metricValues"]}
        if t.name == STOPPED:
            assert session["status"] == "STATUS_FAILURE"
            assert (metrics["stopped/epoch"]["value"], metrics["stopped/epoch"]["trainingStep"]) == (1, 128)
            assert metrics["accuracy/test"]["trainingStep"] == 128  # stopped after its first epoch of 128 images
            continue
        assert session["status"] == "STATUS_SUCCESS" and "stopped/epoch" not in metrics
        assert metrics["accuracy/val"]["trainingStep"] == 256 and 0 <= metrics["accuracy/val"]["value"] <= 1
        assert metrics["accuracy/test"]["trainingStep"] == 256  # 2 epochs x 128 images
