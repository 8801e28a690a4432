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
