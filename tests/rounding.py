"""How far float rounding alone can carry the tests' numbers: tolerances derived from the operation.

Two computations of the same sums in another order (fused against unfused, channels-last against NCHW)
each stay within gamma_n = n u (u = EPS / 2) of the exact sum of the terms' magnitudes, for any order
(Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., section 4.2), so they differ by at most
n EPS of it. Through a network the sums on a value's path add up: `path_terms` counts them, forward to
each layer's output and back to each weight's gradient. A value is held within EPS x its path's terms x
TERMS_FACTOR of its statistics row's scale (the terms are larger than the values they sum to: the factor
stands for that ratio), a statistic that sums n values within n EPS more of the values' root mean square.
These are worst cases (rounding on a real CPU stays orders of magnitude inside them); the faults the
tests are there for (another member's slice, activation or bounds) move a statistic by its own size.
"""
from __future__ import annotations

import math

import torch

from sweep.models.stats import SATURATION_MARGIN, STAT_NAMES

# float32's epsilon (2^-23): a rounding to nearest moves a value by at most EPS / 2 of it.
EPS = torch.finfo(torch.float32).eps
EPS64 = torch.finfo(torch.float64).eps
# The terms' magnitudes against the values they sum to (the conventions' stated factor).
TERMS_FACTOR = 4


def loss_terms(weights: dict[str, torch.Tensor], batch: int, classes: int = 10) -> int:
    """The float sums on the path to a batch's mean loss: every layer's fan-in (`weights` by layer, input to
    output: nets.weight_layers), the log-sum-exp over the classes, the mean over the batch. LeNet, a batch
    of 32: 25 + 54 + 400 + 120 + 84 + 10 + 32 = 725."""
    return sum(math.prod(w.shape[1:]) for w in weights.values()) + classes + batch


def path_terms(weights: dict[str, torch.Tensor], acts: dict[str, torch.Tensor], batch: int,
               classes: int = 10) -> dict[tuple[str, str], int]:
    """The float sums on the path to each statistics row's values, by (layer, kind): forward, the fan-ins
    of every layer up to it; for a weight's gradient, the loss (log-sum-exp over the classes, the mean over
    the batch), the fan-outs back down to it and its own sum over the batch and, for a conv, its output's
    positions. `weights` in order from input to output (nets.weight_layers), `acts` one member's recorded
    activations (batch, ...). LeNet with a batch of 32: conv1's activation 25 terms, the loss 725, conv1's
    weight gradient 19,515 (32 x 24 x 24 of them its own sum)."""
    layers = list(weights)
    fan_in = {name: math.prod(w.shape[1:]) for name, w in weights.items()}
    fan_out = {name: w.shape[0] * math.prod(w.shape[2:]) for name, w in weights.items()}
    positions = {name: (acts[name][0].numel() // weights[name].shape[0] if name in acts else 1) for name in layers}
    terms, forward = {}, 0
    for name in layers:
        forward += fan_in[name]
        terms[name, "activation"] = forward
    back = loss_terms(weights, batch, classes)
    for name in reversed(layers):
        terms[name, "gradient"] = back + batch * positions[name]
        back += fan_out[name]
    return terms


def row_scale(values: list[float]) -> float:
    """A statistics row's scale: its largest |mean|, std, |p98| (0 where none is finite)."""
    finite = [abs(values[STAT_NAMES.index(k)]) for k in ("mean", "std", "p98")]
    return max((v for v in finite if math.isfinite(v)), default=0.0)


def _near(values: torch.Tensor, edges: list[float], within: float) -> int:
    return int(sum(((values - edge).abs() <= within).sum().item() for edge in edges))


def assert_rows_close(got: list, want: list, got_values: dict, want_values: dict, per_value: dict,
                      bounds: tuple[float, float] | None, where: str = "") -> None:
    """Statistics rows (layer, kind, values) of one member computed twice, against each other, within
    rounding: each value of row (layer, kind) within per_value[layer, kind] x the row's scale (both
    sides' error), so p98 within that; mean and std within that plus their own sum of n values in another
    order, n EPS x the values' root mean square; a fraction within the share of values that lie that close to a
    threshold it counts at (zero, a saturation edge), on either side. `*_values` hold the raw values the
    rows were computed from, by (layer, kind); `bounds` the activation's (for sat_frac)."""
    assert [(layer, kind) for layer, kind, _ in got] == [(layer, kind) for layer, kind, _ in want], where
    for (layer, kind, have), (_, _, expect) in zip(got, want):
        a, b = got_values[layer, kind].double(), want_values[layer, kind].double()
        scale = row_scale(expect)
        within = per_value[layer, kind] * scale
        n = b.numel()
        own_sum = EPS * n * b.square().mean().sqrt().item()
        edges = {"zero_frac": [0.0], "sat_frac": []}
        if bounds is not None:
            low, high = bounds
            margin = SATURATION_MARGIN * (high - low)
            edges["sat_frac"] = [low + margin, high - margin]
        for name, h, e in zip(STAT_NAMES, have, expect):
            message = (where, layer, kind, name, h, e)
            if math.isnan(e):
                assert math.isnan(h), message
            elif name == "p98":
                assert abs(h - e) <= within, message
            elif name in ("mean", "std"):
                assert abs(h - e) <= within + own_sum, message
            elif name == "dead_frac":  # units zero for the whole batch on one side, within `within` of it on the other
                units = [v.reshape(v.shape[0], -1).abs().amax(0) for v in (a, b)]
                close = sum(int(((u > 0) & (u <= within)).sum().item()) for u in units)
                assert abs(h - e) <= close / units[0].numel(), message
            else:  # zero_frac, sat_frac: values within `within` of an edge can count on either side of it
                close = _near(a[a != 0] if name == "zero_frac" else a, edges[name], within) + \
                    _near(b[b != 0] if name == "zero_frac" else b, edges[name], within)
                assert abs(h - e) <= close / n, message
