"""Search spaces for continuous hyper-parameters: `{log_uniform: [low, high]}` or `{uniform: [low, high]}` in an
optimizer entry with `samples: N`, drawn from a scrambled Sobol sequence with a fixed scramble."""
import math
import subprocess
import sys

import pytest
import yaml

from sweep.spec.grid import expand_grid, sample_points
from sweep.spec.spec import SpecError, parse_spec
from sweep.spec.optimizer import RangeSpec
from sweep_process import ENV


def spec_with(optimizer: dict, **grid):
    return parse_spec({"name": "t", "grid": {"activation": ["relu", "tanh"], "init": ["default", "xavier_uniform"],
                                             "seed": [0, 1], **grid, "optimizer": [optimizer]}})


SGD = {"name": "sgd", "lr": {"log_uniform": [1e-3, 1]}, "momentum": {"uniform": [0, 0.99]}, "samples": 8}


def test_more_samples_extend_the_same_sequence():
    ranges = [RangeSpec("lr", "log_uniform", 1e-3, 1.0), RangeSpec("momentum", "uniform", 0.0, 0.99)]
    sixteen = sample_points(ranges, 16)
    assert sample_points(ranges, 8) == sixteen[:8]
    assert len(set(sixteen)) == 16
    assert sample_points(ranges, 8) == sample_points(ranges, 8)  # a spec always gives the same trials


def test_points_lie_in_their_ranges_rounded_to_three_significant_digits():
    lrs, momenta = zip(*sample_points([RangeSpec("lr", "log_uniform", 1e-3, 1.0),
                                       RangeSpec("momentum", "uniform", 0.0, 0.99)], 64))
    assert all(1e-3 <= v <= 1.0 and float(f"{v:.3g}") == v for v in lrs)
    assert all(0.0 <= v <= 0.99 and float(f"{v:.3g}") == v for v in momenta)
    # log_uniform fills each decade alike: about a third of 64 points in each of the three
    decades = [sum(1 for v in lrs if 10 ** (k - 3) <= v < 10 ** (k - 2)) for k in range(3)]
    assert min(decades) >= 18 and sum(decades) == 64


def test_every_scientific_configuration_gets_the_same_points():
    trials = expand_grid(spec_with(SGD))
    assert len(trials) == 2 * 2 * 8 * 2
    by_config: dict[tuple, set] = {}
    for t in trials:
        by_config.setdefault((t.activation, t.init, t.seed), set()).add((t.lr, dict(t.optimizer_params)["momentum"]))
    points = set(sample_points([RangeSpec("lr", "log_uniform", 1e-3, 1.0), RangeSpec("momentum", "uniform", 0.0, 0.99)], 8))
    assert all(p == points for p in by_config.values())
    first = sorted(points)[0]
    assert f"-sgd-lr{first[0]:g}-momentum{first[1]:g}-s0" in {t.name[t.name.index("-sgd"):] for t in trials}


def test_ranges_combine_with_listed_values_by_product():
    trials = expand_grid(spec_with({"name": "sgd", "lr": {"log_uniform": [1e-3, 1]}, "momentum": [0, 0.9],
                                    "nesterov": [False], "samples": 3}, activation=["relu"], init=["default"],
                                   seed=[0]))
    lrs = [p[0] for p in sample_points([RangeSpec("lr", "log_uniform", 1e-3, 1.0)], 3)]
    assert [(t.lr, dict(t.optimizer_params)["momentum"]) for t in trials] == \
        [(lr, m) for m in (0.0, 0.9) for lr in lrs]


@pytest.mark.parametrize("optimizer, message", [
    ({"name": "sgd", "lr": {"log_uniform": [0, 1]}, "samples": 4},
     "grid.optimizer[0].lr.log_uniform: [0, 1]: a log range must lie above 0 (its low end is 0)"),
    ({"name": "sgd", "lr": {"log_uniform": [-1, 1]}, "samples": 4},
     "grid.optimizer[0].lr.log_uniform: [-1, 1]: a log range must lie above 0 (its low end is -1)"),
    ({"name": "sgd", "lr": 0.1, "momentum": {"uniform": [-0.5, 0.9]}, "samples": 4},
     "grid.optimizer[0].momentum.uniform: [-0.5, 0.9]: momentum must be >= 0 over the whole range"),
    ({"name": "sgd", "lr": {"log_uniform": [1, 1e-3]}, "samples": 4},
     "grid.optimizer[0].lr.log_uniform: [1, 0.001]: low must be below high"),
    ({"name": "sgd", "lr": 0.1, "samples": 4},
     "grid.optimizer[0].samples: draws points over the entry's ranges, and it has none; give a hyper-parameter "
     "as {log_uniform: [low, high]} or {uniform: [low, high]}"),
    ({"name": "sgd", "lr": {"log_uniform": [1e-3, 1]}},
     "grid.optimizer[0].lr: a range needs samples: N beside it, the number of points to draw over the entry's "
     "ranges (e.g. samples: 8)"),
    ({"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": {"uniform": [0, 1]}, "samples": 4},
     "grid.optimizer[0].nesterov: nesterov is true or false; a range applies to a numeric hyper-parameter only"),
    ({"name": "sgd", "lr": {"log_unifrom": [1e-3, 1]}, "samples": 4},
     "grid.optimizer[0].lr: expected {log_uniform: [low, high]} or {uniform: [low, high]}, got {log_unifrom}; "
     "did you mean 'log_uniform'?"),
    ({"name": "sgd", "lr": {"uniform": [0.1]}, "samples": 4},
     "grid.optimizer[0].lr.uniform: expected [low, high], two numbers, got list"),
    ({"name": "adam", "lr": 0.01, "beta1": {"uniform": [0.5, 1.5]}, "samples": 4},
     "grid.optimizer[0]: torch refuses adam with lr: 0.01, beta1: 1.5: Invalid beta parameter at index 0: 1.5"),
])
def test_a_bad_range_is_refused_in_one_line(optimizer, message):
    with pytest.raises(SpecError) as err:
        spec_with(optimizer)
    assert str(err.value) == message


def test_raising_samples_trains_only_the_new_points(tmp_path):
    def run(samples: int) -> str:
        spec = {"name": "s", "dataset": {"name": "synthetic", "train_limit": 128, "test_limit": 64}, "epochs": 1,
                "output": str(tmp_path / "runs"),
                "grid": {"activation": ["relu"], "optimizer": [{"name": "sgd", "lr": {"log_uniform": [1e-3, 1]},
                                                                 "samples": samples}]}}
        (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
        done = subprocess.run([sys.executable, "-m", "sweep.cli", "run", "s.yaml"], cwd=tmp_path, env=ENV,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    assert "sweep s: 2 trials (0 already finished" in run(2)
    again = run(4)
    assert "sweep s: 4 trials (2 already finished" in again
    assert "done: 2 completed; 2 already finished before this run" in again
    lrs = sorted(p[0] for p in sample_points([RangeSpec("lr", "log_uniform", 1e-3, 1.0)], 4))
    folders = sorted(p.name for p in (tmp_path / "runs" / "s").iterdir() if p.is_dir())
    assert folders == sorted(f"relu-default-sgd-lr{lr:g}-s0" for lr in lrs)
    assert math.isclose(lrs[0], min(lrs))
