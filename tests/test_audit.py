"""Paths a mutation audit broke without a test noticing (issue 28): each test here was seen failing on the
broken code before it passed."""
import json
import string

import matplotlib
import matplotlib.figure
import pandas as pd
import pytest

from sweep.cli import main
from sweep.db.engine import init_db, make_engine, session_scope
from reference import compute_flags
from test_report_db import unwrapped
from sweep.db.flags import FlagThresholds, flags_frame
from sweep.db.queries import (ensure_sweep, ensure_trials, epoch_metrics_frame, layer_stats_frame, record_results,
                              trials_frame, update_trial)
from sweep.db.series import ALL_NAMED, MAX_NAMED, shown_configurations


# ---------------------------------------------------------------- `sweep plot` hands depth.png the sweep's palette

def test_sweep_plot_draws_depth_png_in_the_sweeps_palette(tmp_path, monkeypatch):
    """Each configuration's line in depth.png has the colour and marker the sweep's palette gives it (the one
    accuracy.png and dynamics.png use), read back from the drawn figure. The 16-configuration study with its
    first configuration stopped after epoch 1: depth.png at epoch 2 draws the other 15, so a palette of its
    own would colour them all differently."""
    import sweep.view.plot
    from test_plot import build_study

    (tmp_path / "study").mkdir()
    engine, labels = build_study(tmp_path / "study", stopped={"sigmoid-default-sgd-lr0.001": 1})
    engine.dispose()
    assert labels[0] == "sigmoid-default-sgd-lr0.001" and len(labels) == 16
    drawn, palettes = {}, []
    save = matplotlib.figure.Figure.savefig

    def recording_savefig(fig, path, *args, **kwargs):
        drawn[str(path).rsplit("/", 1)[-1]] = {
            line.get_label(): (matplotlib.colors.to_hex(line.get_color()), line.get_marker())
            for ax in fig.axes for line in ax.get_lines() if not line.get_label().startswith("_")}
        return save(fig, path, *args, **kwargs)

    def recording_palette(*args, **kwargs):
        palettes.append(sweep_palette(*args, **kwargs))
        return palettes[-1]

    sweep_palette = sweep.view.plot.sweep_palette
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording_savefig)
    monkeypatch.setattr(sweep.view.plot, "sweep_palette", recording_palette)
    db = tmp_path / "study" / "sweep.db"
    assert main(["plot", "--db", str(db), "--out", str(tmp_path / "p"), "--epochs", "2"]) == 0
    (colors,) = palettes
    depth = drawn["depth.png"]  # drawn in this process (accuracy.png in a forked one, where there is a core)
    assert sorted(depth) == sorted(labels[1:])
    assert depth == {label: (matplotlib.colors.to_hex(colors[label].color), colors[label].marker) for label in depth}


# ---------------------------------------------------------------- no flag reads past the sweep's epochs

@pytest.fixture
def trained_past(db_url):
    """A sweep of 2 epochs whose one trial trained 3 (the spec was shortened after): its layers die, its
    gradients vanish and its loss explodes only in epoch 3."""
    engine = make_engine(db_url)
    init_db(engine)
    with session_scope(engine) as s:
        ids = ensure_trials(s, ensure_sweep(s, "past", json.dumps({"epochs": 2})), [
            {"config_hash": "a", "name": "A", "label": "a", "model": "lenet", "activation": "relu",
             "init": "default", "gain": 1.0, "optimizer": "sgd", "lr": 0.1, "optimizer_params_json": "{}",
             "seed": 0, "config_json": "{}", "logdir": "/tmp/x"}])
        update_trial(s, ids["a"], status="completed", epochs_done=3)
        for epoch, dead, first_std, loss in ((0, 0.0, 1.0, 2.0), (1, 0.1, 1.0, 1.0), (2, 0.2, 1.0, 0.5),
                                              (3, 0.9, 1e-6, 1e4)):
            rows = [{"epoch": epoch, "step": 100 * epoch, "layer": layer, "kind": kind, "mean": 0.0, "std": std,
                     "p98": 1.0, "zero_frac": dead, "dead_frac": dead if kind == "activation" else None,
                     "sat_frac": None}
                    for layer, kind, std in (("conv1", "activation", 1.0), ("conv1", "gradient", first_std),
                                             ("fc3", "gradient", 1.0))] if epoch else []
            record_results(s, [(ids["a"], {"epoch": epoch, "images_seen": 100 * epoch, "train_loss": loss,
                                           "test_loss": 2.0, "test_acc": 0.5}, rows)])
    yield engine
    engine.dispose()


def test_flags_read_no_layer_statistics_past_the_sweeps_epochs_in_sql_and_in_pandas(trained_past):
    everything = compute_flags(trials_frame(trained_past, "past"), epoch_metrics_frame(trained_past, "past"),
                               layer_stats_frame(trained_past, "past"), FlagThresholds())
    assert set(everything["flag"]) == {"dead", "vanishing", "exploding"}  # at epoch 3, uncapped
    assert set(everything["epoch"]) == {3}
    capped = compute_flags(trials_frame(trained_past, "past"), epoch_metrics_frame(trained_past, "past"),
                           layer_stats_frame(trained_past, "past"), FlagThresholds(), sweep_epochs=2)
    assert capped.empty
    assert flags_frame(trained_past, "past").empty


# ---------------------------------------------------------------- `reached` stays in a narrow terminal

def test_reached_stays_in_a_narrow_terminal_under_the_threshold_metric(recorded_db, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    code = main(["report", "--db", str(recorded_db / "sweep.db"), "--threshold", "0.5", "--metric",
                 "images_to_threshold"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    header = unwrapped(out).splitlines()[1].split()  # under the title, wrapped to 40 columns
    assert header[0] == "rank" and "reached" in header and "mean" in header
    monkeypatch.setenv("COLUMNS", "200")
    main(["report", "--db", str(recorded_db / "sweep.db"), "--threshold", "0.5", "--metric", "images_to_threshold"])
    assert len(capsys.readouterr().out.splitlines()[1].split()) > len(header)  # the narrow one did drop columns


# ---------------------------------------------------------------- the pictures name 16 configurations, not 17

def test_pictures_name_every_one_of_16_ranked_configurations_and_ten_of_17():
    labels = [f"cfg-{c}" for c in string.ascii_lowercase[:17]]
    ranking = list(reversed(labels))  # best first: the last label
    assert ALL_NAMED == 16 and MAX_NAMED == 10
    assert shown_configurations(labels[:16], ranking) == labels[:16]  # all of them, in their order
    seventeen = shown_configurations(labels, ranking)
    assert seventeen == ranking[:5] + ranking[-5:]  # the 5 best and the 5 worst, best first
    from sweep.view.plot import palette, sweep_palette

    curves = pd.DataFrame({"label": labels[:16], "activation": ["relu"] * 16})
    assert list(sweep_palette(curves, "activation", ranking)) == labels[:16]
    assert len(palette(shown_configurations(labels, ranking))) == 10
