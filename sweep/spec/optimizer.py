"""A spec's `optimizer:` entries: each one's listed values and sampled ranges, checked once here the way
torch would check them at train time (sweep.models.registry, imported where an entry is parsed: it imports
torch, which `sweep report` and `sweep plot` never need)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sweep.spec.checks import _choice, _did_you_mean, _fail, _int, _items, _mapping, _number, _show, _unique


@dataclass(frozen=True)
class RangeSpec:
    """A hyper-parameter searched over a range: `kind` log_uniform or uniform, from `low` to `high`."""

    key: str
    kind: str
    low: float
    high: float


RANGE_KINDS = ("log_uniform", "uniform")


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer entry: each listed hyper-parameter a tuple of grid values, and `samples` points drawn
    over its `ranges` (sweep.spec.grid.sample_points), combined with the listed values by product."""

    name: str
    params: tuple[tuple[str, tuple[Any, ...]], ...]
    ranges: tuple[RangeSpec, ...] = ()
    samples: int = 0


def parse_optimizer(raw: Any, path: str) -> OptimizerSpec:
    from sweep.models.registry import OPTIMIZERS

    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        _fail(path, f"expected a mapping like {{name: adam, lr: 0.001}}, got {_show(raw)}")
    if "name" not in raw:
        _fail(f"{path}.name", "missing required key")
    name = _choice(raw["name"], OPTIMIZERS, f"{path}.name", "optimizer")
    types = OPTIMIZERS[name].params
    _mapping(raw, path, ("name", *types, "samples"))
    if "lr" not in raw:
        _fail(f"{path}.lr", "missing required key")
    params, ranges = [], []
    for key in sorted(k for k in raw if k not in ("name", "samples")):
        kpath = f"{path}.{key}"
        if isinstance(raw[key], dict):
            ranges.append(_range(raw[key], kpath, key, types[key]))
            continue
        checked = []
        for vpath, v in _items(raw[key], kpath):
            if types[key] is bool:
                if not isinstance(v, bool):
                    _fail(vpath, f"{_show(v)} is not true or false")
                checked.append(v)
            else:
                checked.append(_number(v, vpath, positive=(key == "lr"), minimum=0.0))
        _unique(checked, kpath)
        params.append((key, tuple(checked)))
    samples = 0 if raw.get("samples") is None else _int(raw["samples"], f"{path}.samples")
    if samples and not ranges:
        _fail(f"{path}.samples", "draws points over the entry's ranges, and it has none; give a hyper-parameter "
                                 "as {log_uniform: [low, high]} or {uniform: [low, high]}")
    if ranges and not samples:
        _fail(f"{path}.{ranges[0].key}", "a range needs samples: N beside it, the number of points to draw over "
                                         "the entry's ranges (e.g. samples: 8)")
    # Every value a range can take lies between its ends: torch checks them with the listed values.
    _buildable(name, params + [(r.key, (r.low, r.high)) for r in ranges], path)
    return OptimizerSpec(name, tuple(params), tuple(ranges), samples)


def _range(raw: dict, path: str, key: str, kind_of_value: type) -> RangeSpec:
    """`{log_uniform: [low, high]}` or `{uniform: [low, high]}` for a numeric hyper-parameter."""
    if kind_of_value is bool:
        _fail(path, f"{key} is true or false; a range applies to a numeric hyper-parameter only")
    if len(raw) != 1 or next(iter(raw)) not in RANGE_KINDS:
        kind = str(next(iter(raw), ""))
        _fail(path, f"expected {{log_uniform: [low, high]}} or {{uniform: [low, high]}}, got {{{', '.join(map(str, raw))}}}"
                    f"{_did_you_mean(kind, RANGE_KINDS)}")
    kind, bounds = next(iter(raw.items()))
    where = f"{path}.{kind}"
    if not isinstance(bounds, list) or len(bounds) != 2:
        _fail(where, f"expected [low, high], two numbers, got {_show(bounds)}")
    low, high = (_number(b, f"{where}[{i}]") for i, b in enumerate(bounds))
    if kind == "log_uniform" and low <= 0:
        _fail(where, f"[{low:g}, {high:g}]: a log range must lie above 0 (its low end is {low:g})")
    if low < 0:
        _fail(where, f"[{low:g}, {high:g}]: {key} must be >= 0 over the whole range")
    if low >= high:
        _fail(where, f"[{low:g}, {high:g}]: low must be below high")
    if key == "lr" and low <= 0:
        _fail(where, f"[{low:g}, {high:g}]: lr must be > 0 over the whole range")
    return RangeSpec(key, kind, low, high)


# What torch.optim says when every hyper-parameter passed its checks and only the parameters are missing.
_NO_PARAMETERS = "optimizer got an empty parameter list"


def _buildable(name: str, params: list[tuple[str, tuple]], path: str) -> None:
    """Build the optimizer of every value combination once: what torch would refuse at train time (nesterov
    without momentum, a beta of 1 or more) is refused here, in one line. Built over no parameters: torch
    checks every hyper-parameter first, then refuses the empty list (which means they passed), and never
    reaches add_param_group, whose first call imports TorchDynamo and would slow the driver's start
    (docs/benchmarks.md, "The test suite")."""
    import itertools

    from sweep.models.registry import make_optimizer

    keys = [k for k, _ in params]
    for values in itertools.product(*(v for _, v in params)):
        hyper = dict(zip(keys, values))
        try:
            make_optimizer(name, [], hyper)
        except (ValueError, TypeError, RuntimeError) as exc:
            if str(exc) == _NO_PARAMETERS:
                continue
            shown = ", ".join(f"{k}: {_fmt_value(v)}" for k, v in hyper.items())
            _fail(path, f"torch refuses {name} with {shown}: {str(exc).splitlines()[0]}")


def _fmt_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else f"{value:g}"
