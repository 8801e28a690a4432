"""sweep plot's pictures: legends beside the panels (never over a plotted point, measured in display
coordinates), every configuration of a 16-configuration study named in one colour across the pictures, the
best and worst of a big sweep, seed bands within [0, 1], the layers over training (dynamics.png) and what the
database reads for them, the heat map's colour scale."""
import matplotlib.pyplot as plt
import pytest

from sweep.view.plot import legend_beside

LONG = "tanh-xavier_normal-gauto-sgd-lr0.01-dampening0.1-momentum0.9-nesterovtrue-weight_decay0.0001"


@pytest.mark.parametrize("name, lines, columns", [
    ("relu-default-adam-lr0.001", 4, 1),
    (LONG, 60, 2),  # two columns of long names
])
def test_legend_is_right_of_every_panel_without_a_gap(name, lines, columns):
    fig, axes = plt.subplots(2, 1, figsize=(8, 9), squeeze=False)  # plot_depth's size for one epoch
    for i in range(lines):
        for ax in axes.flat:
            ax.plot([0, 1, 2], [i, i + 1, i], label=f"{name}-{i}")
    legend = legend_beside(fig, *axes[0, 0].get_legend_handles_labels())
    renderer = fig.canvas.get_renderer()
    box = legend.get_window_extent(renderer)
    assert all(box.x0 >= ax.get_window_extent(renderer).x1 for ax in axes.flat)
    assert box.x1 <= fig.bbox.width and box.y0 >= 0 and box.y1 <= fig.bbox.height
    assert len(legend.get_texts()) == lines and legend._ncols == columns
    # The figure is the panels' 8 inches and the legend's width: the legend starts where the panels end.
    assert fig.get_figwidth() == pytest.approx(8 + box.width / fig.dpi + 0.2)
    gap = box.x0 - max(ax.get_window_extent(renderer).x1 for ax in axes.flat)
    assert 0 <= gap <= 0.2 * fig.dpi
    plt.close(fig)


# A big sweep's pictures: at most MAX_NAMED configurations named per panel, the rest grey.

import matplotlib.image  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402

from sweep.view import plot

from sweep.view import plot_dynamics  # noqa: E402

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
    monkeypatch.setattr(plot_dynamics, "_save", keep)
    return figures


def legend_names(legend) -> list[str]:
    return [t.get_text() for t in legend.get_texts()]


def test_big_sweep_curves_name_the_best_and_worst_ten_per_panel(drawn, tmp_path):
    configs = configurations(30)
    ranking = [label for _, label in configs][::-1]  # best first: the last configurations of each panel
    path = plot.plot_curves(curves_frame(configs), tmp_path / "accuracy.png", "activation", ranking)
    fig, = drawn
    legend = fig.legends[0]
    height, width = matplotlib.image.imread(path).shape[:2]
    assert height == 450 and width == int(fig.get_figwidth() * 100) and width > 1400  # 4 panels, the legend
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [f"activation = {a}" for a in ACTIVATIONS]
    named = []
    for ax, activation in zip(panels, ACTIVATIONS):
        mine = [label for a, label in configs if a == activation]
        best, worst = mine[::-1][:5], mine[::-1][-5:]
        named += best + worst
        assert [line.get_label() for line in ax.get_lines()] == best + worst
        rest, = [c for c in ax.collections if isinstance(c, LineCollection)]
        assert len(rest.get_segments()) == 20 and all(len(s) == 51 for s in rest.get_segments())
        bands, = [c for c in ax.collections if isinstance(c, PolyCollection) and not isinstance(c, LineCollection)]
        assert len(bands.get_paths()) == plot.MAX_NAMED  # a 95% band for each named configuration only
    # One legend for the figure: the named configurations panel by panel, the grey ones, what the bands are.
    assert legend_names(legend) == [*named, "40 more configurations", plot.BAND["ci"]]
    assert panels[0].get_ylim() == panels[1].get_ylim()  # one accuracy scale for all panels
    colors = line_colors(fig)
    assert all(len(c) == 1 for c in colors.values())
    for ax in panels:  # the configurations a panel names look different from each other
        looks = [(line.get_color(), line.get_marker()) for line in ax.get_lines()]
        assert len({matplotlib.colors.to_hex(c) for c, _ in looks}) == plot.MAX_NAMED
    assert points_under_legends(fig) == []


def test_small_sweep_curves_name_every_configuration(drawn, tmp_path):
    configs = configurations(4)
    plot.plot_curves(curves_frame(configs), tmp_path / "accuracy.png", "activation", [c for _, c in configs])
    fig, = drawn
    assert legend_names(fig.legends[0]) == [c for _, c in configs] + [plot.BAND["ci"]]
    for ax in (ax for ax in fig.axes if ax.get_title()):
        assert not [c for c in ax.collections if isinstance(c, LineCollection)]


def test_big_sweep_depth_profiles_name_the_best_and_worst_ten(drawn, tmp_path):
    configs = configurations(30)
    ranking = [label for _, label in configs]
    path = plot.plot_depth(depth_frame(configs, [1, 5]), tmp_path / "depth.png", [1, 5], ranking)
    fig, = drawn
    height, width = matplotlib.image.imread(path).shape[:2]
    assert height == 900 and width > 1000
    names = legend_names(fig.legends[0])
    assert names == [*ranking[:5], *ranking[-5:], "50 more configurations"]
    for ax in fig.axes:
        rest, = ax.collections
        assert len(rest.get_segments()) == 50
        assert len(ax.get_lines()) == plot.MAX_NAMED
    renderer = FigureCanvasAgg(fig).get_renderer()  # closed figures lose theirs
    box = fig.legends[0].get_window_extent(renderer)
    assert all(box.x0 >= ax.get_window_extent(renderer).x1 for ax in fig.axes)
    assert points_under_legends(fig) == []


def test_curves_frame_pools_the_seeds_of_each_configuration(db_url, tmp_path):
    """curves_frame (grouped by the database) is the mean, sample std and count of each configuration's
    seeds per images seen, configurations in the order of their first trial, on SQLite and PostgreSQL."""
    from test_report_db import SPEC, TRIALS, build

    from sweep.db import epoch_metrics_frame, make_engine
    from sweep.db.queries import curves_frame

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
    np.testing.assert_allclose(merged["mean"], merged["mean_pandas"])  # float64 means of a few: EPS64s, not 1e-7
    # The std as sqrt(mean of squares - mean^2) (db.queries, float64, accuracies <= 1): the difference keeps the
    # few seeds' roundings, up to ~40 EPS64, which its root turns into sqrt(40 EPS64) = 9.4e-8 at a std of 0
    np.testing.assert_allclose(merged["std"], merged["std_pandas"], atol=1e-7)  # NaN where one seed is left


def test_pictures_are_drawn_in_the_plot_style_and_leave_matplotlib_s_settings_alone(monkeypatch, tmp_path):
    hinting = []
    save = plot._save
    for module in (plot, plot_dynamics):
        monkeypatch.setattr(module, "_save", lambda fig, path: hinting.append(matplotlib.rcParams["text.hinting"])
                            or save(fig, path))
    configs = configurations(3)
    with matplotlib.rc_context({"text.hinting": "force_autohint"}):  # a user's own setting
        plot.plot_curves(curves_frame(configs), tmp_path / "a.png")
        plot.plot_depth(depth_frame(configs, [1]), tmp_path / "d.png", [1])
        dynamics = pd.DataFrame([{"label": label, "activation": a, "kind": "activation", "layer": "conv1",
                                  "images_seen": 100 * i, "value": 0.5, "n": 1}
                                 for a, label in configs for i in range(3)])
        plot_dynamics.plot_dynamics(dynamics, tmp_path / "y.png")
        assert matplotlib.rcParams["text.hinting"] == "force_autohint"
    assert hinting == [plot.STYLE["text.hinting"]] * 3 == ["no_hinting"] * 3


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


def test_draw_all_draws_the_first_pictures_in_one_process_and_the_others_in_this_one(tmp_path):
    """forked=2: the first two pictures are drawn, in order, in the forked process, the others here."""
    import os

    def picture(name):
        path = tmp_path / name

        def draw():
            with open(tmp_path / "order.txt", "a") as f:
                f.write(f"{name} {os.getpid()}\n")
            fig, ax = plt.subplots(figsize=(2, 1))
            plot._save(fig, path)
        return path, draw

    names = ["a.png", "b.png", "c.png", "d.png"]
    assert plot.draw_all([picture(n) for n in names], fork=True, forked=2) == [tmp_path / n for n in names]
    drawn = dict(line.split() for line in (tmp_path / "order.txt").read_text().splitlines())
    assert sorted(drawn) == names and all((tmp_path / n).exists() for n in names)
    here = str(os.getpid())
    assert drawn["a.png"] == drawn["b.png"] != here and drawn["c.png"] == drawn["d.png"] == here
    lines = (tmp_path / "order.txt").read_text().split()
    assert lines.index("a.png") < lines.index("b.png") and lines.index("c.png") < lines.index("d.png")


# ---------------------------------------------------------------- a hand-made 16-configuration study

import math  # noqa: E402

from sweep.db.engine import init_db, make_engine, session_scope  # noqa: E402
from sweep.db import queries  # noqa: E402
from sweep.db.queries import record_results, update_trial  # noqa: E402
from sweep.db.series import dynamics_frame  # noqa: E402
from sweep.spec.grid import expand_grid  # noqa: E402
from sweep.run.records import record_plan  # noqa: E402
from sweep.spec.spec import parse_spec  # noqa: E402

STUDY = {"name": "study", "dataset": "synthetic", "epochs": 2,
         "grid": {"activation": ["sigmoid", "tanh", "softsign", "relu"], "init": ["default", "xavier_uniform"],
                  "optimizer": [{"name": "sgd", "lr": 0.001}, {"name": "adam", "lr": 0.001}], "seed": [0]}}
ACTIVATION_LAYERS, GRADIENT_LAYERS = ("conv1", "fc1"), ("conv1", "fc1", "fc2")
SNAPSHOTS = 3  # per epoch, 100 images apart; the last one closes the epoch
IMAGES = 100 * SNAPSHOTS  # per epoch


def accuracy(k: int, label: str, seed: int, epoch: int) -> float:
    """Test accuracy of configuration k: sigmoid with SGD at chance throughout (its two curves coincide, as in
    the study), the others rising towards the lower right corner where a legend used to sit."""
    if label.startswith("sigmoid") and "-sgd-" in label:
        return 0.1
    return 0.1 + (0.5 + 0.025 * k) * (1 - 0.5 ** epoch) + 0.01 * seed


def layer_value(k: int, seed: int, kind: str, layer: int, step: int) -> float:
    """A layer's statistic (the same for every statistic column) at a snapshot: distinct per configuration,
    layer and step, seeds 0.01 apart."""
    scale = 1.0 if kind == "activation" else 1e-3
    return scale * (0.1 * (k + 1) + 0.02 * layer + 0.0001 * step + 0.01 * seed)


def build_study(folder, spec: dict = STUDY, epochs: int = 2, stopped: dict | None = None):
    """A sweep as the recorder writes it: every epoch's test accuracy, SNAPSHOTS statistics snapshots per epoch
    (epoch 0 none). `stopped`: label -> the epoch a stop rule ended its trials at (status stopped)."""
    spec = parse_spec({**spec, "output": str(folder)})
    configs = expand_grid(spec)
    engine = make_engine(spec.database_url)
    init_db(engine)
    ids = record_plan(engine, spec, configs, [])
    labels = list(dict.fromkeys(c.label for c in configs))
    with session_scope(engine) as s:
        for c in configs:
            k = labels.index(c.label)
            last = (stopped or {}).get(c.label, epochs)
            for epoch in range(last + 1):
                rows = []
                for snap in range(SNAPSHOTS if epoch else 0):
                    step = (epoch - 1) * IMAGES + 100 * (snap + 1)
                    for kind, layers in (("activation", ACTIVATION_LAYERS), ("gradient", GRADIENT_LAYERS)):
                        for i, layer in enumerate(layers):
                            v = layer_value(k, c.seed, kind, i, step)
                            rows.append({"epoch": epoch, "step": step, "layer": layer, "kind": kind, "mean": v,
                                         "std": v, "p98": v, "zero_frac": v, "dead_frac": v,
                                         "sat_frac": v if c.activation != "relu" else None})
                acc = accuracy(k, c.label, c.seed, epoch)
                record_results(s, [(ids[c.config_hash], {
                    "epoch": epoch, "images_seen": IMAGES * epoch, "test_acc": acc, "wall_seconds": 1.0,
                    "train_loss": None if epoch == 0 else 1 - acc, "test_loss": 1 - acc}, rows)])
            update_trial(s, ids[c.config_hash], status="stopped" if last < epochs else "completed",
                         epochs_done=last)
    return engine, labels


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The 16-configuration study (one seed), with relu-xavier_uniform-adam stopped after its first epoch."""
    engine, labels = build_study(tmp_path_factory.mktemp("study"), stopped={"relu-xavier_uniform-adam-lr0.001": 1})
    yield engine, labels
    engine.dispose()


def points_under_legends(fig) -> list[tuple[str, float, float]]:
    """Every plotted point of every line (and grey line collection) that a legend's box covers, in display
    coordinates: (the line's label, x, y). Points outside their panel are not drawn and do not count."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    boxes = [legend.get_window_extent(renderer) for legend in
             [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]]
    assert boxes, "a figure with lines has a legend"
    covered = []
    for ax in fig.axes:
        frame = ax.get_window_extent(renderer)
        series = [(line.get_label(), line.get_xydata()) for line in ax.get_lines()]
        series += [("grey", np.asarray(seg)) for c in ax.collections if isinstance(c, LineCollection)
                   for seg in c.get_segments()]
        for name, xy in series:
            shown = ax.transData.transform(np.asarray(xy, dtype=float))
            shown = shown[np.isfinite(shown).all(axis=1)]
            inside = ((shown[:, 0] >= frame.x0) & (shown[:, 0] <= frame.x1) & (shown[:, 1] >= frame.y0)
                      & (shown[:, 1] <= frame.y1))
            for x, y in shown[inside]:
                if any(box.x0 <= x <= box.x1 and box.y0 <= y <= box.y1 for box in boxes):
                    covered.append((name, x, y))
    return covered


def line_colors(fig) -> dict[str, set]:
    """label -> the colours its lines are drawn in, over all panels."""
    found = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            found.setdefault(line.get_label(), set()).add(matplotlib.colors.to_hex(line.get_color()))
    return found


def draw_study(engine, out, ranking=None, stat="std"):
    """accuracy.png, depth.png and dynamics.png of a sweep, each drawn with the sweep's palette, as sweep plot
    draws them."""
    curves = queries.curves_frame(engine, "study", "activation")
    palette = plot.sweep_palette(curves, "activation", ranking)
    plot.plot_curves(curves, out / "accuracy.png", "activation", ranking, colors=palette)
    plot.plot_depth(queries.depth_frame(engine, "study", [1, 2]), out / "depth.png", [1, 2], ranking, colors=palette)
    plot_dynamics.plot_dynamics(dynamics_frame(engine, "study", stat), out / "dynamics.png", stat, ranking, colors=palette)
    return palette


def test_a_16_configuration_study_named_in_one_colour_each_and_no_legend_over_a_point(drawn, study, tmp_path):
    engine, labels = study
    palette = draw_study(engine, tmp_path)
    accuracy_fig, depth_fig, dynamics_fig = drawn
    hexes = {label: matplotlib.colors.to_hex(look.color) for label, look in palette.items()}
    assert list(palette) == labels and len(set(hexes.values())) == 16  # 16 colours, in the sweep's order
    for fig in drawn:
        assert points_under_legends(fig) == []
    # Every configuration named: in the legends of depth.png and dynamics.png, and of accuracy.png.
    for fig in (accuracy_fig, depth_fig):
        names = legend_names(fig.legends[0])
        assert names[:16] == labels if fig is depth_fig else sorted(names[:16]) == sorted(labels)
        assert not any(name.endswith("more configurations") for name in names)
        assert line_colors(fig) == {label: {hexes[label]} for label in labels}  # one colour per configuration
        handles = fig.legends[0].legend_handles[:16]
        assert [matplotlib.colors.to_hex(h.get_color()) for h in handles] == [hexes[n] for n in names[:16]]
    # The two sigmoid SGD curves coincide at chance: the one drawn later is on top with smaller markers of
    # another shape, so the one under it shows around them.
    sigmoid = [ax for ax in accuracy_fig.axes if ax.get_title() == "activation = sigmoid"][0]
    under, over = [line for line in sigmoid.get_lines() if "-sgd-" in line.get_label()]
    np.testing.assert_array_equal(under.get_ydata(), over.get_ydata())
    assert under.get_marker() != over.get_marker() and under.get_markersize() > over.get_markersize() + 1
    assert under.get_zorder() < over.get_zorder()
    names = legend_names(dynamics_fig.legends[0])
    assert names == ["layers (input to output):", "conv1", "fc1", "fc2", "configurations (frames):", *labels]
    patches = dynamics_fig.legends[0].legend_handles[-16:]
    assert [matplotlib.colors.to_hex(p.get_facecolor()) for p in patches] == [hexes[label] for label in labels]
    # dynamics.png: a cell per configuration (its title's box and frame in its colour), laid out activation x
    # (init, optimizer); one line per layer; every panel on the same axes.
    titled = {ax.get_title().replace("\n", ""): ax for ax in dynamics_fig.axes if ax.get_title()}
    assert sorted(titled) == sorted(labels)
    for label, ax in titled.items():
        assert matplotlib.colors.to_hex(ax.title.get_bbox_patch().get_facecolor()) == hexes[label]
        assert {matplotlib.colors.to_hex(s.get_edgecolor()) for s in ax.spines.values()} == {hexes[label]}
    boxes = {label: ax.get_position() for label, ax in titled.items()}
    rows = sorted({round(b.y0, 6) for b in boxes.values()}, reverse=True)
    cols = sorted({round(b.x0, 6) for b in boxes.values()})
    assert len(rows) == len(cols) == 4
    for label, box in boxes.items():
        a, rest = label.split("-", 1)
        assert rows.index(round(box.y0, 6)) == STUDY["grid"]["activation"].index(a)
        assert cols.index(round(box.x0, 6)) == ["default-sgd-lr0.001", "default-adam-lr0.001",
                                                "xavier_uniform-sgd-lr0.001", "xavier_uniform-adam-lr0.001"].index(rest)
    panels = dynamics_fig.axes
    assert len(panels) == 32
    assert len({ax.get_xlim() for ax in panels}) == 1
    assert len({ax.get_ylim() for ax in panels if ax.get_title()}) == 1  # the activation panels
    assert len({ax.get_ylim() for ax in panels if not ax.get_title()}) == 1  # the gradient panels, log scale
    assert {ax.get_yscale() for ax in panels if not ax.get_title()} == {"log"}
    top = titled["tanh-default-sgd-lr0.001"]
    assert [line.get_label() for line in top.get_lines()] == ["conv1", "fc1"]
    # Tick labels on the left column and under the lowest row only (the scales are shared).
    left = min(ax.get_position().x0 for ax in panels)
    low = min(ax.get_position().y0 for ax in panels)
    for ax in panels:
        assert bool(len(ax.get_yticks())) == (ax.get_position().x0 == left)
        assert bool(len(ax.get_xticks())) == (ax.get_position().y0 == low)


def test_a_stopped_trial_is_drawn_up_to_where_it_stopped(study):
    engine, labels = study
    label = "relu-xavier_uniform-adam-lr0.001"
    curves = queries.curves_frame(engine, "study", "activation")
    assert list(curves.loc[curves["label"] == label, "images_seen"]) == [0, IMAGES]
    dynamics = dynamics_frame(engine, "study", "std", [label])
    assert sorted(set(dynamics["images_seen"])) == [100, 200, 300]


def test_dynamics_frame_pools_the_seeds_of_each_layer_and_snapshot(db_url, tmp_path):
    """The mean over the seeds of each configuration, kind, layer and snapshot, exactly; n the seeds with a
    value (sat_frac: none for relu, NULL); configurations in the sweep's order, layers in network order; on
    SQLite and PostgreSQL."""
    spec = {**STUDY, "database": db_url, "grid": {**STUDY["grid"], "activation": ["tanh", "relu"],
                                                  "init": ["default"], "seed": [0, 1]}}
    engine, labels = build_study(tmp_path, spec)
    got = dynamics_frame(engine, "study", "sat_frac")
    engine.dispose()
    assert list(got.columns) == ["label", "activation", "kind", "layer", "images_seen", "value", "n"]
    assert list(dict.fromkeys(got["label"])) == labels == ["tanh-default-sgd-lr0.001", "tanh-default-adam-lr0.001",
                                                           "relu-default-sgd-lr0.001", "relu-default-adam-lr0.001"]
    steps = [100, 200, 300, 400, 500, 600]
    expected = []
    for k, label in enumerate(labels):
        for kind, layers in (("activation", ACTIVATION_LAYERS), ("gradient", GRADIENT_LAYERS)):
            for step in steps:
                for i, layer in enumerate(layers):
                    values = [layer_value(k, seed, kind, i, step) for seed in (0, 1)]
                    none = kind == "activation" and label.startswith("relu")
                    expected.append((label, label.split("-")[0], kind, layer, step,
                                     math.nan if none else sum(values) / 2, 0 if none else 2))
    assert len(got) == len(expected) == 4 * 6 * 5
    for row, want in zip(got.itertuples(index=False), expected):
        assert tuple(row)[:5] == want[:5] and row.n == want[6]
        # float64 means of two values on both sides (SQL's AVG, sum / 2): the sum rounds once (EPS64 / 2), the
        # halving is exact; 2 EPS64 leaves room for one more rounding on either side
        assert (math.isnan(row.value) and math.isnan(want[5])) or \
            row.value == pytest.approx(want[5], rel=2 * np.finfo(np.float64).eps)


def test_dynamics_frame_reads_each_epochs_last_snapshot_where_lines_would_be_long(study):
    """Past max_points snapshots a trial is read at its epochs' last snapshots (what the flags and depth
    profiles read), and past max_points epochs at every k-th of them, the last included."""
    engine, labels = study
    label = labels[0]
    every = dynamics_frame(engine, "study", "std", [label])
    assert sorted(set(every["images_seen"])) == [100, 200, 300, 400, 500, 600]
    assert sorted(set(dynamics_frame(engine, "study", "std", [label], max_points=5)["images_seen"])) == [300, 600]
    assert sorted(set(dynamics_frame(engine, "study", "std", [label], max_points=1)["images_seen"])) == [600]
    with pytest.raises(ValueError, match="'median' is not a layer statistic; use one of mean, std, p98"):
        dynamics_frame(engine, "study", "median")


def test_two_seeds_show_their_range_and_accuracy_stays_within_0_and_1(drawn, tmp_path):
    """With two seeds a 95% interval (t = 12.7) would span the whole axis: the band is the seeds' range, the
    legend says so, and the axis stays within [0, 1]; with three it is the interval, clipped to [0, 1]."""
    rows = []
    for label, seeds in (("relu-a", (0.2, 0.9)), ("tanh-b", (0.5, 0.6, 0.98))):
        n, mean = len(seeds), float(np.mean(seeds))
        rows += [{"label": label, "activation": label.split("-")[0], "images_seen": 1000 * e, "n": n,
                  "mean": mean, "std": float(np.std(seeds, ddof=1))} for e in range(3)]
    plot.plot_curves(pd.DataFrame(rows), tmp_path / "accuracy.png")
    fig, = drawn
    relu, tanh = [ax for ax in fig.axes if ax.get_title()]
    low, high = relu.get_ylim()
    assert 0 <= low and high <= 1 and relu.get_ylim() == tanh.get_ylim()
    band, = [c for c in relu.collections if isinstance(c, PolyCollection)][0].get_paths()
    assert band.vertices[:, 1].min() == pytest.approx(0.2) and band.vertices[:, 1].max() == pytest.approx(0.9)
    band, = [c for c in tanh.collections if isinstance(c, PolyCollection)][0].get_paths()
    assert band.vertices[:, 1].max() == 1.0  # mean 0.69 + t95(3) x ... clipped at 1
    from sweep.analysis.intervals import t95

    seeds = (0.5, 0.6, 0.98)
    assert band.vertices[:, 1].min() == pytest.approx(np.mean(seeds) - t95(3) * np.std(seeds, ddof=1) / math.sqrt(3))
    assert legend_names(fig.legends[0]) == ["relu-a", "tanh-b", plot.BAND["ci"], plot.BAND["range"]]
    assert points_under_legends(fig) == []


def test_heat_map_of_a_loss_is_brighter_where_lower_and_of_nothing_finished_is_one_line(drawn, tmp_path, recwarn):
    trials = pd.DataFrame({"activation": ["relu", "relu", "tanh"], "init": ["a", "b", "a"],
                           "final_test_loss": [0.3, 0.5, 0.4], "final_test_acc": [0.9, 0.8, 0.85],
                           "finished": [True, True, True]})
    for metric in ("final_test_loss", "final_test_acc"):
        plot.plot_heatmap(trials, metric, ("activation", "init"), tmp_path / f"{metric}.png")
    for fig, metric, cmap, better in zip(drawn, ("final_test_loss", "final_test_acc"), ("viridis_r", "viridis"),
                                         ("lower", "higher")):
        image, = fig.axes[0].get_images()
        assert image.get_cmap().name == cmap
        assert fig.axes[1].get_ylabel() == f"{metric} ({better} is better)"
        best = image.cmap(image.norm(trials[metric].min() if better == "lower" else trials[metric].max()))
        assert best == matplotlib.colormaps["viridis"](1.0)  # the best cell is the brightest: viridis' yellow
    nothing = trials.assign(final_test_acc=math.nan).iloc[:0]
    assert plot.plot_heatmap(nothing, "final_test_acc", ("activation", "init"), tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists() and not recwarn.list
    assert plot.heatmap_missing(nothing, "final_test_acc", 3) == (
        "no heat map: no trial has finished its 3 epochs with a final_test_acc yet (it pools finished trials, "
        "as sweep report --by does)")
    assert plot.heatmap_missing(trials, "final_test_acc", 3) is None


def test_a_big_sweep_s_dynamics_show_its_best_and_worst_and_say_so(drawn, tmp_path):
    """Past ALL_NAMED configurations, dynamics.png shows the ones shown_configurations chooses (the 5 best and
    worst by the metric), best first in the first row, worst in the second, and the title says so."""
    engine, labels = build_study(tmp_path, {**STUDY, "grid": {**STUDY["grid"], "activation": [
        "sigmoid", "tanh", "softsign", "relu", "elu"]}})
    ranking = labels[::-1]  # best first
    chosen = plot.shown_configurations(labels, ranking)
    assert chosen == ranking[:5] + ranking[-5:]
    frame = dynamics_frame(engine, "study", "p98", chosen)
    engine.dispose()
    plot_dynamics.plot_dynamics(frame, tmp_path / "dynamics.png", "p98", ranking, of=len(labels), metric="final_test_acc")
    fig, = drawn
    assert fig._suptitle.get_text().endswith(
        "\nthe 5 best (first row) and 5 worst (second row) of 20 configurations by mean final_test_acc")
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().replace("\n", "") for ax in sorted(titled, key=lambda a: (-a.get_position().y0,
                                                                                     a.get_position().x0))] == [
        f"{ranking.index(label) + 1}. {label}" for label in chosen]
    assert legend_names(fig.legends[0])[-10:] == chosen
    assert points_under_legends(fig) == []


def test_a_big_sweep_s_palette_tells_apart_the_configurations_shown_together():
    """80 configurations, 16 per accuracy panel (all named there), the sweep's 5 best and 5 worst named in the
    depth and dynamics legends: within a panel and within those legends no two share a colour, and each
    configuration has one colour wherever it is named."""
    configs = [(a, f"{a}-init{i}-sgd-lr0.01") for a in ("relu", "tanh", "elu", "selu", "gelu") for i in range(16)]
    curves = curves_frame(configs, epochs=1)
    ranking = [label for _, label in configs][::-3]  # a third finished, best first
    looks = plot.sweep_palette(curves, "activation", ranking)
    assert set(looks) == {label for _, label in configs}  # every label is named in its panel
    shared = plot.shown_configurations([label for _, label in configs], ranking)
    groups = [[label for a, label in configs if a == activation] for activation in dict.fromkeys(a for a, _ in configs)]
    for group in [*groups, shared]:
        assert len({looks[label].color for label in group}) == len(group)


def test_a_curve_marks_where_its_number_of_seeds_changes(drawn, tmp_path):
    """relu's second seed stopped after 2,000 images: from 3,000 on its mean is one seed's, and an x marks the
    first point of that, with a legend entry saying what it means; tanh's two seeds run to the end unmarked."""
    rows = [{"label": "relu-a", "activation": "relu", "images_seen": 1000 * e, "n": 2 if e <= 2 else 1,
             "mean": 0.5, "std": 0.1 if e <= 2 else math.nan} for e in range(5)]
    rows += [{"label": "tanh-b", "activation": "tanh", "images_seen": 1000 * e, "n": 2, "mean": 0.6, "std": 0.1}
             for e in range(5)]
    plot.plot_curves(pd.DataFrame(rows), tmp_path / "accuracy.png")
    fig, = drawn
    relu, tanh = [ax for ax in fig.axes if ax.get_title()]
    marks = [c for c in relu.collections if c.get_offsets().shape[0] and not isinstance(c, PolyCollection)]
    assert [tuple(m.get_offsets()[0]) for m in marks] == [(3000.0, 0.5)]
    assert [c for c in tanh.collections if not isinstance(c, PolyCollection)] == []
    assert legend_names(fig.legends[0])[-1] == plot.SEEDS_CHANGE
    assert points_under_legends(fig) == []
