"""Per-layer statistics of activations and weight gradients.

Definitions (DESIGN.md):
- zero_frac: share of exactly-zero values in the tensor;
- dead_frac (activations only): share of units (every non-batch position)
  that are zero for every example in the batch;
- p98: the 98th percentile of all values with linear interpolation (numpy's
  default), computed with two order statistics so that it works on tensors
  of any size (torch.quantile refuses inputs above 16M elements);
- sat_frac (bounded activations only): share of values within 3% of the
  activation's range from either asymptote.

Everything is computed on the tensor's device and returned as one tensor, so
a snapshot costs a single host copy.
"""
from __future__ import annotations

import math

import torch

# Column order of the rows returned by layer_stats.
STAT_NAMES = ("mean", "std", "p98", "zero_frac", "dead_frac", "sat_frac")

SATURATION_MARGIN = 0.03


def percentile(values: torch.Tensor, q: float) -> torch.Tensor:
    """q-th percentile (0..100) of all values, linear interpolation, any size."""
    flat = values.detach().reshape(-1)
    n = flat.numel()
    pos = q / 100.0 * (n - 1)
    lo = math.floor(pos)
    frac = pos - lo
    low = torch.kthvalue(flat, lo + 1).values
    if frac == 0.0:
        return low
    high = torch.kthvalue(flat, min(lo + 2, n)).values
    return low + (high - low) * frac


def tensor_stats(
    values: torch.Tensor,
    *,
    per_unit: bool,
    bounds: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Statistics of one tensor as a 1-D tensor in STAT_NAMES order.

    `per_unit` adds dead_frac (dim 0 is the batch); `bounds` adds sat_frac.
    Statistics that do not apply are NaN.
    """
    v = values.detach().float()
    nan = torch.full((), float("nan"), device=v.device)
    zero = v == 0
    dead = zero.reshape(v.shape[0], -1).all(dim=0).float().mean() if per_unit else nan
    if bounds is not None:
        low, high = bounds
        margin = SATURATION_MARGIN * (high - low)
        sat = ((v <= low + margin) | (v >= high - margin)).float().mean()
    else:
        sat = nan
    std = v.std() if v.numel() > 1 else torch.zeros((), device=v.device)
    return torch.stack([v.mean(), std, percentile(v, 98.0), zero.float().mean(), dead, sat])


def snapshot_table(
    activations: dict[str, torch.Tensor],
    weights: dict[str, torch.Tensor],
    bounds: tuple[float, float] | None = None,
) -> tuple[list[tuple[str, str]], torch.Tensor | None]:
    """Statistics of every activation layer and every weight gradient, left on the device.

    Returns the rows' (layer, kind) keys, kind "activation" or "gradient", and
    their values as one (rows, len(STAT_NAMES)) tensor (None without rows).
    """
    keys: list[tuple[str, str]] = []
    rows: list[torch.Tensor] = []
    for layer, act in activations.items():
        keys.append((layer, "activation"))
        rows.append(tensor_stats(act, per_unit=True, bounds=bounds))
    for layer, weight in weights.items():
        if weight.grad is None:
            continue
        keys.append((layer, "gradient"))
        rows.append(tensor_stats(weight.grad, per_unit=False))
    return keys, (torch.stack(rows) if rows else None)


def snapshot_rows(keys: list[tuple[str, str]], values: list[list[float]]) -> list[tuple[str, str, list[float]]]:
    """(layer, kind, values) rows of a snapshot_table once copied to the host."""
    return [(layer, kind, vals) for (layer, kind), vals in zip(keys, values)]


def snapshot_stats(
    activations: dict[str, torch.Tensor],
    weights: dict[str, torch.Tensor],
    bounds: tuple[float, float] | None = None,
) -> list[tuple[str, str, list[float]]]:
    """Statistics of every activation layer and every weight gradient.

    Returns rows (layer, kind, values) with kind "activation" or "gradient" and
    values in STAT_NAMES order (NaN where a statistic does not apply). One
    device-to-host copy for the whole snapshot.
    """
    keys, table = snapshot_table(activations, weights, bounds)
    return [] if table is None else snapshot_rows(keys, table.cpu().tolist())
