"""Each statistic on hand-made tensors with known answers."""
import math

import numpy as np
import pytest
import torch

from sweep.models.stats import STAT_NAMES, percentile, snapshot_stats, tensor_stats

# float32's epsilon (2^-23): a rounding to nearest moves a value by at most EPS / 2 of it.
EPS = torch.finfo(torch.float32).eps


def stat(values, **kw):
    return dict(zip(STAT_NAMES, tensor_stats(values, **kw).tolist()))


def test_zero_frac_counts_exact_zeros_only():
    t = torch.tensor([[0.0, 1e-12, -0.0, 2.0], [0.0, 3.0, 4.0, 5.0]])
    assert stat(t, per_unit=False)["zero_frac"] == 3 / 8  # an exact count over a power of two: exact


def test_dead_frac_is_units_zero_for_every_example():
    # batch of 3, 4 units: unit 0 zero everywhere (dead), unit 1 zero in two of
    # three examples (alive), unit 2 never zero, unit 3 zero everywhere (dead).
    # The blog's bug (counting units that are never zero) would give 1/4.
    t = torch.tensor([
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 2.0, 0.0],
        [0.0, 5.0, 3.0, 0.0],
    ])
    s = stat(t, per_unit=True)
    assert s["dead_frac"] == 0.5
    assert s["zero_frac"] == pytest.approx(8 / 12, rel=EPS)  # fp32: an exact count / 12 rounds once: EPS / 2


def test_dead_frac_treats_every_non_batch_position_as_a_unit():
    t = torch.ones(2, 3, 2, 2)  # 12 units per example
    t[:, 1, 0, 1] = 0.0  # one dead unit
    t[0, 2, 1, 1] = 0.0  # zero in one example only: alive
    assert stat(t, per_unit=True)["dead_frac"] == pytest.approx(1 / 12, rel=EPS)  # fp32: one rounding, EPS / 2


def test_gradient_rows_have_no_dead_or_saturation_share():
    s = stat(torch.zeros(5, 5), per_unit=False)
    assert math.isnan(s["dead_frac"]) and math.isnan(s["sat_frac"])
    assert s["zero_frac"] == 1.0


def test_mean_and_std_match_numpy_sample_std():
    values = torch.tensor([1.0, 2.0, 3.0, 4.0])
    s = stat(values, per_unit=False)
    assert s["mean"] == 2.5
    # fp32 on small integers: every sum is exact; / 3 and the root round once each: 3/4 EPS (ddof=0: 13% off)
    assert s["std"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1), rel=EPS)


@pytest.mark.parametrize("n", [1, 2, 3, 50, 101, 1000, 4097])
def test_p98_matches_numpy_linear_percentile(n):
    values = torch.randn(n, generator=torch.Generator().manual_seed(n))
    assert percentile(values, 98).item() == pytest.approx(p98_float64(values), abs=lerp_bound(values))


def p98_float64(values: torch.Tensor) -> float:
    """numpy's linear percentile of the values in float64: the reference, without float32's roundings."""
    return float(np.percentile(values.double().numpy(), 98))


def lerp_bound(values: torch.Tensor) -> float:
    """How far percentile's float32 low + (high - low) * frac can be from the exact interpolation of the same
    two order statistics (kthvalue picks them exactly): four roundings (frac's cast, the difference, the
    product, the sum), each by EPS / 2 of a value within 2 max|v|: 4 EPS max|v|. A neighbouring order
    statistic instead is off by the gap between values, for randn(n) about 1 / (0.05 n) near p98."""
    return 4 * EPS * values.abs().max().item()


def test_p98_of_known_values():
    # 0..100: the 98th percentile is exactly 98.
    assert percentile(torch.arange(101.0), 98).item() == 98.0
    # 0..9: position 0.98 * 9 = 8.82 -> 8 + 0.82 * (9 - 8)
    # fp32: 0.82 and the sum 8.82 round once each: EPS / 2 x 9.64, under EPS x 8.82
    assert percentile(torch.arange(10.0), 98).item() == pytest.approx(8.82, rel=EPS)


def test_p98_works_beyond_torch_quantile_limit():
    n = 16 * 1024 * 1024 + 5  # torch.quantile refused more than 16M elements (the blog's crash)
    values = torch.rand(n, generator=torch.Generator().manual_seed(0))
    assert percentile(values, 98).item() == pytest.approx(p98_float64(values), abs=lerp_bound(values))


def test_saturation_share_within_three_percent_of_an_asymptote():
    # sigmoid bounds (0, 1): margin 0.03 -> values <= 0.03 or >= 0.97 count.
    t = torch.tensor([[0.0, 0.02, 0.03, 0.5, 0.969, 0.97, 0.99, 1.0]])
    assert stat(t, per_unit=True, bounds=(0.0, 1.0))["sat_frac"] == 6 / 8  # a count over a power of two: exact
    # tanh bounds (-1, 1): margin 0.06.
    t = torch.tensor([[-1.0, -0.95, 0.0, 0.93, 0.95]])
    assert stat(t, per_unit=True, bounds=(-1.0, 1.0))["sat_frac"] == pytest.approx(3 / 5, rel=EPS)  # fp32: 1 rounding


def test_snapshot_covers_each_activation_and_each_weight_gradient():
    layer = torch.nn.Linear(3, 2)
    x = torch.ones(4, 3)
    out = torch.relu(layer(x))
    out.sum().backward()
    rows = snapshot_stats({"fc1": out}, {"fc1": layer.weight, "fc2": torch.nn.Parameter(torch.ones(2))})
    assert [(l, k) for l, k, _ in rows] == [("fc1", "activation"), ("fc1", "gradient")]
    grad = dict(zip(STAT_NAMES, rows[1][2]))
    assert grad["mean"] == layer.weight.grad.mean().item()  # the same mean of the same tensor: exact
