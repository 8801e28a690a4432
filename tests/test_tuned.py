"""A fair comparison (sweep.analysis.tuning): each configuration at its own best learning rate, chosen on the
validation split, with the test figure of that choice beside it; edge flags; the same in --by, csv and json."""
import html
import json

import pytest

from sweep.cli import main
from test_report_db import build, rows, unwrapped

# Validation accuracy (vals) and test accuracy (accs) after epochs 0, 1, 2, both seeds alike.
CURVES = {
    # relu: the best on test (lr 0.01, 0.9) is not the best on validation (lr 0.1, 0.8): the choice is 0.1
    ("relu", 0.01): ([0.1, 0.4, 0.6], [0.1, 0.5, 0.9]),
    ("relu", 0.1): ([0.1, 0.6, 0.8], [0.1, 0.6, 0.7]),
    ("relu", 1.0): ([0.1, 0.6, 0.7], [0.1, 0.5, 0.6]),
    # tanh: the best is the largest lr tried, an edge of the search
    ("tanh", 0.01): ([0.1, 0.3, 0.5], [0.1, 0.3, 0.5]),
    ("tanh", 0.1): ([0.1, 0.4, 0.6], [0.1, 0.4, 0.6]),
    ("tanh", 1.0): ([0.1, 0.6, 0.75], [0.1, 0.6, 0.72]),
}
SPEC = {"name": "tuned", "dataset": {"name": "synthetic", "validation": 64}, "epochs": 2, "tune": ["lr"],
        "grid": {"activation": ["relu", "tanh"], "optimizer": [{"name": "sgd", "lr": [0.01, 0.1, 1.0]}],
                 "seed": [0, 1]}}
TRIALS = {f"{act}-default-sgd-lr{lr:g}-s{seed}": {"vals": vals, "accs": accs}
          for (act, lr), (vals, accs) in CURVES.items() for seed in (0, 1)}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return build(tmp_path_factory.mktemp("tuned"), SPEC, TRIALS)


def report(capsys, db, *args):
    code = main(["report", "--db", str(db), *args])
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), err
    return unwrapped(out)  # the title on one line


def test_each_configuration_at_its_best_lr_chosen_on_validation(capsys, db):
    got = rows(report(capsys, db, "--format", "csv"))
    assert [(r["rank"], r["activation"], r["lr"], r["final_val_acc_mean"], r["final_test_acc_mean"], r["n"],
             r["settings"], r["edge"]) for r in got] == [
        ("1", "relu", "0.1", "0.8", "0.7", "2", "3", ""),
        ("2", "tanh", "1.0", "0.75", "0.72", "2", "3", "edge lr")]
    title = report(capsys, db).splitlines()[0]
    assert title == ("sweep tuned: 2 configurations ranked by mean final_val_acc over seeds, each at its best lr "
                     "chosen on final_val_acc, at 2 epochs")


def test_tune_none_shows_every_configuration_and_the_test_choice_says_so(capsys, db):
    assert len(rows(report(capsys, db, "--tune", "none", "--format", "csv"))) == 6
    title = report(capsys, db, "--metric", "final_test_acc").splitlines()[0]
    assert title.endswith("each at its best lr chosen on final_test_acc; selection used the test set (no "
                          "validation split), at 2 epochs")
    # chosen on test, relu's lr 0.01 wins with the test figure it was chosen by
    got = rows(report(capsys, db, "--metric", "final_test_acc", "--format", "csv"))
    assert [(r["activation"], r["lr"], r["final_test_acc_mean"]) for r in got] == [("relu", "0.01", "0.9"),
                                                                                     ("tanh", "1.0", "0.72")]


def test_by_and_the_matrix_compare_each_cell_at_its_own_best_lr(capsys, db):
    records = json.loads(report(capsys, db, "--by", "activation", "--format", "json"))
    assert [(r["activation"], r["lr"], r["final_test_acc_mean"], r["edge"]) for r in records] == [
        ("relu", 0.1, pytest.approx(0.7), ""), ("tanh", 1.0, pytest.approx(0.72), "edge lr")]
    out = report(capsys, db, "--by", "activation,optimizer").splitlines()
    assert out[0] == ("sweep tuned: mean final_test_acc by activation x optimizer, each at its best lr chosen on "
                      "final_val_acc, at 2 epochs")
    assert out[1:] == ["activation     sgd", "relu        0.7000", "tanh        0.7200"]


def test_where_keeps_its_meaning_under_tuning(capsys, db):
    got = rows(report(capsys, db, "--where", "lr=0.01,1", "--format", "csv"))
    assert [(r["activation"], r["lr"], r["settings"]) for r in got] == [("tanh", "1.0", "2"), ("relu", "1.0", "2")]


def test_tuning_png_draws_each_trial_against_lr_and_stars_the_choice(db, tmp_path):
    """The playbook's axis plot: validation accuracy of every trial against lr on a log axis (0.01 to 1
    spans 100x), a panel per activation, each group's chosen lr starred, no legend over a point."""
    from test_plot import points_under_legends

    from sweep.view import plot as plot_module
    from sweep.db.engine import make_engine
    from sweep.analysis.results import sweep_results
    from sweep.view.tuning_plot import CHOSEN, plot_tuning, tuned_factors_to_draw

    engine = make_engine(f"sqlite:///{db}")
    results = sweep_results(engine, "tuned", 2)
    engine.dispose()
    assert tuned_factors_to_draw(results, ["lr"]) == ["lr"]
    figures = []
    save = plot_module._save
    import sweep.view.tuning_plot as tuning_plot
    tuning_plot._save = lambda fig, path: (figures.append(fig), save(fig, path))[1]
    try:
        path = plot_tuning(results, "final_val_acc", "lr", ["lr"], True, tmp_path / "tuning.png")
    finally:
        tuning_plot._save = save
    assert path.stat().st_size > 0
    fig, = figures
    relu, tanh = [ax for ax in fig.axes if ax.get_title()]
    assert (relu.get_title(), tanh.get_title(), relu.get_xscale()) == ("activation = relu", "activation = tanh", "log")
    stars = [tuple(c.get_offsets()[0]) for c in relu.collections if len(c.get_offsets())]
    assert stars == [(0.1, 0.8)]
    assert [tuple(c.get_offsets()[0]) for c in tanh.collections if len(c.get_offsets())] == [(1.0, 0.75)]
    line, = relu.get_lines()
    assert list(zip(*line.get_data())) == [(0.01, 0.6), (0.01, 0.6), (0.1, 0.8), (0.1, 0.8), (1.0, 0.7), (1.0, 0.7)]
    names = [t.get_text() for t in fig.legends[0].get_texts()]
    assert names == ["relu-default-sgd-lr0.1", "tanh-default-sgd-lr1", CHOSEN]
    assert points_under_legends(fig) == []


def test_validation_examples_never_reach_a_training_batch_for_any_seed(tmp_path):
    """Every validation image is all ones, every training image below 1: the first layer's input in every
    training step (gradients on; evaluation runs without them) never holds a 1, whatever the seed, and the
    trial reports its validation figures every epoch, before training too."""
    import numpy as np
    import torch

    from sweep.data.datasets import Arrays
    from sweep.spec.grid import expand_grid
    from sweep.spec.spec import parse_spec
    from sweep.run.trial import run_trial

    rng = np.random.default_rng(0)
    data = Arrays(rng.uniform(0, 0.9, (256, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 256),
                  rng.uniform(0, 0.9, (64, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 64),
                  np.ones((32, 1, 28, 28), np.float32), rng.integers(0, 10, 32))
    spec = parse_spec({"name": "v", "dataset": {"name": "synthetic", "validation": 32}, "epochs": 2,
                       "output": str(tmp_path),
                       "batch_size": 32, "stats_every": 3,
                       "grid": {"activation": ["relu"], "optimizer": [{"name": "sgd", "lr": 0.1}], "seed": [0, 1, 2]}})
    largest = []
    hook = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda module, args: largest.append(float(args[0].max())) if isinstance(module, torch.nn.Conv2d)
        and torch.is_grad_enabled() and module.in_channels == 1 else None)
    try:
        for cfg in expand_grid(spec):
            reports = []
            run_trial(cfg, data, reports.append, tensorboard=False)
            assert [r["epoch"] for r in reports] == [0, 1, 2]
            assert all(0 <= r["val_acc"] <= 1 and r["val_loss"] > 0 for r in reports)
    finally:
        hook.remove()
    assert len(largest) == 3 * 2 * 8 and max(largest) < 1.0  # 8 batches an epoch, 2 epochs, 3 seeds


def test_the_tuned_view_is_the_same_on_postgresql_as_on_sqlite(db_url, tmp_path, capsys):
    build(tmp_path, {**SPEC, "database": db_url}, TRIALS)
    got = rows(report(capsys, db_url, "--format", "csv"))
    assert [(r["activation"], r["lr"], r["final_val_acc_mean"], r["final_test_acc_mean"], r["edge"]) for r in got] == [
        ("relu", "0.1", "0.8", "0.7", ""), ("tanh", "1.0", "0.75", "0.72", "edge lr")]
    by = rows(report(capsys, db_url, "--by", "activation", "--metric", "best_val_acc", "--format", "csv"))
    # chosen on the best epoch by validation, with the test accuracy at that epoch beside it
    assert [(r["activation"], r["lr"], r["best_val_acc_mean"], r["test_acc_at_best_val_mean"]) for r in by] == [
        ("relu", "0.1", "0.8", "0.7"), ("tanh", "1.0", "0.75", "0.72")]


def test_the_page_shows_the_tuned_view_where_the_spec_tunes(db):
    from sweep.db.engine import make_engine
    from sweep.view.page import PageOptions, build_page

    engine = make_engine(f"sqlite:///{db}")
    page = build_page(engine, "tuned", PageOptions("final_val_acc", 2))
    engine.dispose()
    section = page[page.index('<section id="tuned">'):page.index("</section>", page.index('<section id="tuned">'))]
    assert "Each configuration at its best lr" in section and "chosen on final_val_acc" in section
    assert section.count("<tr") == 3 and "edge lr" in section  # the names, relu at 0.1, tanh at 1 (an edge)
    # The pictures are sweep plot's (sweep.view.pictures): the heat map at each cell's best lr, and tuning.png.
    pictures = page[page.index('<section id="pictures"'):page.index("</section>", page.index('id="pictures"'))]
    captions = [html.unescape(c.split("</figcaption>")[0]) for c in pictures.split("<figcaption>")[1:]]
    assert captions[-2:] == ["mean final_val_acc by activation x init, each at its best lr",
                             "final_val_acc of every trial against lr, each group's chosen lr starred"]


def test_the_heat_map_shows_each_cell_at_its_own_best_lr(db, tmp_path):
    from test_plot import points_under_legends  # noqa: F401 (the plot tests' helpers load matplotlib's Agg)

    from sweep.view import plot as plot_module
    from sweep.db.engine import make_engine
    from sweep.analysis.results import sweep_results

    engine = make_engine(f"sqlite:///{db}")
    results = sweep_results(engine, "tuned", 2)
    engine.dispose()
    figures = []
    save = plot_module._save
    plot_module._save = lambda fig, path: (figures.append(fig), save(fig, path))[1]
    try:
        plot_module.plot_heatmap(results[results["finished"]], "final_val_acc", ("activation", "optimizer"),
                                 tmp_path / "heatmap.png", ["lr"])
    finally:
        plot_module._save = save
    fig, = figures
    ax = fig.axes[0]
    assert ax.get_title() == "final_test_acc by activation x optimizer, each at its best lr"
    assert [t.get_text() for t in ax.texts] == ["0.700", "0.720"]  # relu at lr 0.1, tanh at lr 1 (test figures)


@pytest.mark.parametrize("value, edge", [(1.2e-3, True), (0.0016, True), (0.03, False), (0.5, False), (6.0, True)])
def test_an_edge_of_a_log_range_is_its_outer_tenth_on_the_log_scale(value, edge):
    """[1e-3, 10] spans 4 decades: its outer tenths end at 10^-2.6 (0.00251) and 10^0.6 (3.98)."""
    from sweep.analysis.tuning import edges

    ranges = {"lr": {"kind": "log_uniform", "low": 1e-3, "high": 10.0}}
    assert edges({"lr": value}, {"lr": [value]}, ranges) == (["lr"] if edge else [])
    linear = {"momentum": {"kind": "uniform", "low": 0.0, "high": 0.99}}
    assert edges({"momentum": 0.05}, {"momentum": [0.05]}, linear) == ["momentum"]  # below 0.099
    assert edges({"momentum": 0.5}, {"momentum": [0.5]}, linear) == []
