"""The depth plot's legend never covers its panels, however long the configuration names."""
import matplotlib.pyplot as plt
import pytest

from sweep.plot import legend_beside

LONG = "tanh-xavier_normal-gauto-sgd-lr0.01-dampening0.1-momentum0.9-nesterovtrue-weight_decay0.0001"


@pytest.mark.parametrize("name, lines, width", [
    ("relu-default-adam-lr0.001", 4, 8.0),  # fits the 3 inches kept for it: plot_depth's size is kept
    (LONG, 60, None),  # two columns of long names: the figure grows
])
def test_legend_is_right_of_every_panel(name, lines, width):
    fig, axes = plt.subplots(2, 1, figsize=(8, 9), squeeze=False)  # plot_depth's size for one epoch
    for i in range(lines):
        for ax in axes.flat:
            ax.plot([0, 1, 2], [i, i + 1, i], label=f"{name}-{i}")
    legend = legend_beside(fig, *axes[0, 0].get_legend_handles_labels())
    box = legend.get_window_extent(fig.canvas.get_renderer())
    assert all(box.x0 >= ax.get_window_extent().x1 for ax in axes.flat)
    assert box.x1 <= fig.bbox.width and box.y0 >= 0 and box.y1 <= fig.bbox.height
    assert len(legend.get_texts()) == lines
    assert fig.get_figwidth() == width if width else fig.get_figwidth() > 8.0
    plt.close(fig)


# A big sweep's pictures: at most MAX_NAMED configurations named per panel, the rest grey.

import matplotlib.image  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402

from sweep import plot  # noqa: E402

ACTIVATIONS = ("relu", "tanh")


def configurations(per_activation: int) -> list[tuple[str, str]]:
    return [(a, f"{a}-init{i}-sgd-lr0.01") for a in ACTIVATIONS for i in range(per_activation)]


def curves_frame(configs, epochs: int = 50) -> pd.DataFrame:
    """What db's curves_frame returns: 3 seeds pooled per configuration and epoch."""
    rows = []
    for k, (activation, label) in enumerate(configs):
        for e in range(epochs + 1):
            rows.append({"label": label, "activation": activation, "images_seen": 1000 * e, "n": 3,
                         "mean": 0.1 + 0.8 * (1 - np.exp(-e / (2 + k))), "std": 0.01})
    return pd.DataFrame(rows)


def depth_frame(configs, epochs) -> pd.DataFrame:
    rows = []
    for k, (_, label) in enumerate(configs):
        for epoch in epochs:
            for kind, layers in (("activation", ("conv1", "fc1")), ("gradient", ("conv1", "fc1", "fc2"))):
                for i, layer in enumerate(layers):
                    rows.append({"label": label, "epoch": epoch, "kind": kind, "layer": layer,
                                 "std": 0.01 * (1 + k) * (i + 1)})
    return pd.DataFrame(rows)


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plot functions save (closed, still readable)."""
    figures = []
    save = plot._save

    def keep(fig, path):
        figures.append(fig)
        return save(fig, path)

    monkeypatch.setattr(plot, "_save", keep)
    return figures


def legend_names(legend) -> list[str]:
    return [t.get_text() for t in legend.get_texts()]


def test_big_sweep_curves_name_the_best_and_worst_ten_per_panel(drawn, tmp_path):
    configs = configurations(30)
    ranking = [label for _, label in configs][::-1]  # best first: the last configurations of each panel
    path = plot.plot_curves(curves_frame(configs), tmp_path / "accuracy.png", "activation", ranking)
    assert matplotlib.image.imread(path).shape == (450, 1400, 4)
    fig, = drawn
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [f"activation = {a}" for a in ACTIVATIONS]
    for ax, activation in zip(panels, ACTIVATIONS):
        mine = [label for a, label in configs if a == activation]
        best, worst = mine[::-1][:5], mine[::-1][-5:]
        names = legend_names(ax.get_legend())
        assert len(names) == plot.MAX_NAMED + 1
        assert names[0] == "20 more configurations"
        assert names[1:] == [label.replace(f"{activation}-", "", 1) for label in best + worst]
        rest, = [c for c in ax.collections if isinstance(c, LineCollection)]
        assert len(rest.get_segments()) == 20 and all(len(s) == 51 for s in rest.get_segments())
        bands, = [c for c in ax.collections if isinstance(c, PolyCollection) and not isinstance(c, LineCollection)]
        assert len(bands.get_paths()) == plot.MAX_NAMED  # a 95% band for each named configuration only
        assert len(ax.get_lines()) == plot.MAX_NAMED
    assert panels[0].get_ylim() == panels[1].get_ylim()  # one accuracy scale for all panels


def test_small_sweep_curves_name_every_configuration(drawn, tmp_path):
    configs = configurations(4)
    plot.plot_curves(curves_frame(configs), tmp_path / "accuracy.png", "activation", [c for _, c in configs])
    fig, = drawn
    for ax in (ax for ax in fig.axes if ax.get_title()):
        assert len(legend_names(ax.get_legend())) == 4
        assert not [c for c in ax.collections if isinstance(c, LineCollection)]


def test_big_sweep_depth_profiles_name_the_best_and_worst_ten(drawn, tmp_path):
    configs = configurations(30)
    ranking = [label for _, label in configs]
    path = plot.plot_depth(depth_frame(configs, [1, 5]), tmp_path / "depth.png", [1, 5], ranking)
    assert matplotlib.image.imread(path).shape == (900, 1300, 4)
    fig, = drawn
    names = legend_names(fig.legends[0])
    assert names == ["50 more configurations", *ranking[:5], *ranking[-5:]]
    for ax in fig.axes:
        rest, = ax.collections
        assert len(rest.get_segments()) == 50
        assert len(ax.get_lines()) == plot.MAX_NAMED
    renderer = FigureCanvasAgg(fig).get_renderer()  # closed figures lose theirs
    box = fig.legends[0].get_window_extent(renderer)
    assert all(box.x0 >= ax.get_window_extent(renderer).x1 for ax in fig.axes)


def test_curves_frame_pools_the_seeds_of_each_configuration(db_url, tmp_path):
    """curves_frame (grouped by the database) is the mean, sample std and count of each configuration's
    seeds per images seen, configurations in the order of their first trial, on SQLite and PostgreSQL."""
    from test_report_db import SPEC, TRIALS, build

    from db import epoch_metrics_frame, make_engine
    from db.queries import curves_frame

    build(tmp_path, {**SPEC, "database": db_url}, {**TRIALS, "tanh-default-adam-lr0.01-s1": None})
    engine = make_engine(db_url)
    got = curves_frame(engine, "hand", "init")
    epochs = epoch_metrics_frame(engine, "hand")
    engine.dispose()
    pooled = epochs.groupby(["label", "init", "images_seen"], sort=False)["test_acc"]
    expected = pooled.agg(["count", "mean", "std"]).reset_index().rename(columns={"count": "n"})
    assert list(got.columns) == ["label", "init", "images_seen", "n", "mean", "std"]
    assert list(dict.fromkeys(got["label"])) == list(dict.fromkeys(epochs["label"]))
    assert len(got) == len(expected) == 6 + 5 + 5 + 5  # 4 configurations: their longest seed's epochs
    merged = got.merge(expected, on=["label", "init", "images_seen"], suffixes=("", "_pandas"))
    assert len(merged) == len(got) and (merged["n"] == merged["n_pandas"]).all()
    np.testing.assert_allclose(merged["mean"], merged["mean_pandas"])
    np.testing.assert_allclose(merged["std"], merged["std_pandas"], atol=1e-7)  # NaN where one seed is left


def test_pictures_are_drawn_in_the_plot_style_and_leave_matplotlib_s_settings_alone(monkeypatch, tmp_path):
    hinting = []
    save = plot._save
    monkeypatch.setattr(plot, "_save", lambda fig, path: hinting.append(matplotlib.rcParams["text.hinting"])
                        or save(fig, path))
    configs = configurations(3)
    with matplotlib.rc_context({"text.hinting": "force_autohint"}):  # a user's own setting
        plot.plot_curves(curves_frame(configs), tmp_path / "a.png")
        plot.plot_depth(depth_frame(configs, [1]), tmp_path / "d.png", [1])
        assert matplotlib.rcParams["text.hinting"] == "force_autohint"
    assert hinting == [plot.STYLE["text.hinting"]] * 2 == ["no_hinting"] * 2


@pytest.mark.parametrize("fork", [True, False])
def test_draw_all_draws_every_picture_and_raises_for_one_that_fails(tmp_path, capfd, fork):
    """draw_all draws the first picture in a forked process (or here, without a spare core): its file is
    there when draw_all returns, and its failure is raised here (a child that dies must not pass for a
    picture)."""
    def picture(path, fail=False):
        def draw():
            if fail:
                raise ValueError("no such column")
            fig, ax = plt.subplots(figsize=(2, 1))
            plot._save(fig, path)
        return path, draw

    paths = [tmp_path / f"{name}.png" for name in ("a", "b", "c")]
    assert plot.draw_all([picture(p) for p in paths], fork=fork) == paths
    assert all(matplotlib.image.imread(p).shape == (100, 200, 4) for p in paths)
    with pytest.raises(ValueError, match="no such column") as failed:  # forked or not, raised as it is
        plot.draw_all([picture(paths[0], fail=True), picture(paths[1])], fork=fork)
    if fork and hasattr(failed.value, "add_note"):  # with where it came from (notes: Python 3.11 on)
        assert "in the forked process:" in failed.value.__notes__[0]
        assert "raise ValueError(\"no such column\")" in failed.value.__notes__[0]
    with pytest.raises(ValueError, match="no such column"):
        plot.draw_all([picture(paths[0]), picture(paths[1], fail=True)], fork=fork)
    assert capfd.readouterr() == ("", "")  # and nothing printed on the way
