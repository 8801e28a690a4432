"""Grid expansion: a SweepSpec becomes one TrialConfig per configuration.

`expand_grid` is the only place that takes the product of the factors.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Sequence

from sweep.models.registry import ACTIVATION_GAIN_INITS, init_gain
from sweep.spec.spec import SpecError, SweepSpec
from sweep.spec.optimizer import RangeSpec

# Fields that do not change what a trial computes up to a given epoch: raising
# epochs extends a trial, and paths/sweep name say where it lives, not what it is.
_NOT_IDENTITY = {"sweep", "epochs", "logdir"}
# Settings that joined a trial's identity after sweeps were recorded: absent (None), they leave its hash as
# it was, so that an older sweep's trials keep theirs.
_IDENTITY_WHEN_SET = {"validation", "network", "data"}


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs; travels to Ray workers as a plain dict."""

    sweep: str
    activation: str
    init: str
    gain: float
    gain_label: str  # as written in the spec: "1", "auto", "2.5"
    optimizer: str
    lr: float
    optimizer_params: tuple[tuple[str, Any], ...]  # all but lr, sorted by name
    seed: int
    model: str
    hidden: tuple[int, ...]
    dataset: str
    train_limit: int | None
    test_limit: int | None
    epochs: int
    batch_size: int
    stats_every: int
    logdir: str
    validation: int | float | None = None  # examples held out of the training set (dataset.validation)
    # A network or data of the user's (or torchvision's): canonical JSON of what builds it and its code's
    # digest (sweep.spec.spec.ModelSpec.network; for data {"factory", "args", "code"}); None for the study's own.
    network: str | None = None
    data: str | None = None

    @property
    def name(self) -> str:
        """Readable, unique folder name, e.g. tanh-xavier_uniform-adam-lr0.001-s0."""
        return f"{self.label}-s{self.seed}"

    @property
    def label(self) -> str:
        """The name without the seed: what replicates over seeds share."""
        # Kaiming's gain is always the activation's (auto): the name need not say it.
        plain = self.gain_label == "1" or self.init in ACTIVATION_GAIN_INITS
        init = self.init if plain else f"{self.init}-g{self.gain_label}"
        extra = "".join(f"-{k}{_fmt(v)}" for k, v in self.optimizer_params)
        return f"{self.activation}-{init}-{self.optimizer}-lr{_fmt(self.lr)}{extra}"

    @property
    def config_hash(self) -> str:
        """Stable identity of what this trial computes (epochs excluded)."""
        ident = {k: v for k, v in asdict(self).items()
                 if k not in _NOT_IDENTITY and not (k in _IDENTITY_WHEN_SET and v is None)}
        blob = json.dumps(ident, sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def hyper(self) -> dict[str, Any]:
        """Optimizer keyword arguments: lr plus the entry's other hyper-parameters."""
        return {"lr": self.lr, **dict(self.optimizer_params)}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialConfig":
        d = dict(d)
        d["optimizer_params"] = tuple((k, v) for k, v in d["optimizer_params"])
        d["hidden"] = tuple(d["hidden"])
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


def bundle_name(members: list[TrialConfig]) -> str:
    """A fused bundle's name: its first member's plus how many more (a single trial: its own name)."""
    return members[0].name if len(members) == 1 else f"{members[0].name}+{len(members) - 1}"


def _canonical(value: dict | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


# The scramble of the Sobol sequence: fixed, so that a spec always gives the same trials.
SOBOL_SEED = 0
SIGNIFICANT_DIGITS = 3  # a sampled value is rounded to these before it names and identifies a trial


def sample_points(ranges: Sequence[RangeSpec], samples: int) -> list[tuple[float, ...]]:
    """`samples` points over `ranges` (one coordinate each, in order): a scrambled Sobol sequence with a fixed
    scramble (quasi-random, as the Deep Learning Tuning Playbook advises for nuisance hyper-parameters), each
    coordinate mapped onto its range (on the log scale for log_uniform) and rounded to SIGNIFICANT_DIGITS.
    More samples extend the same sequence: the first N points of 2N are the N points.

    Example: sample_points([RangeSpec("lr", "log_uniform", 1e-3, 1.0)], 2) -> [(0.0266,), (0.0479,)]
    """
    import math

    import torch
    from torch.quasirandom import SobolEngine

    if not ranges or samples < 1:
        return []
    unit = SobolEngine(len(ranges), scramble=True, seed=SOBOL_SEED).draw(samples, dtype=torch.float64).tolist()
    points = []
    for u in unit:
        point = []
        for r, x in zip(ranges, u):
            if r.kind == "log_uniform":
                value = math.exp(math.log(r.low) + x * (math.log(r.high) - math.log(r.low)))
            else:
                value = r.low + x * (r.high - r.low)
            point.append(float(f"{value:.{SIGNIFICANT_DIGITS}g}"))
        points.append(tuple(point))
    return points


def _optimizer_settings(spec: SweepSpec) -> list[tuple[str, float, tuple[tuple[str, Any], ...]]]:
    """(name, lr, other hyper-parameters) for every value combination of every entry: its listed values by
    product, and by product with those its sampled points (the same points for every other factor)."""
    out = []
    for opt in spec.grid.optimizer:
        keys = [k for k, _ in opt.params] + [r.key for r in opt.ranges]
        points = sample_points(opt.ranges, opt.samples) or [()]
        for values in itertools.product(*(v for _, v in opt.params)):
            for point in points:
                hyper = dict(zip(keys, (*values, *point)))
                lr = hyper.pop("lr")
                out.append((opt.name, lr, tuple(sorted(hyper.items()))))
    return out


def expand_grid(spec: SweepSpec) -> list[TrialConfig]:
    """All configurations: activation x init x optimizer setting x seed, in spec order.

    An optimizer entry with lists (e.g. lr: [0.1, 0.01]) contributes one
    setting per combination of its values.
    """
    g = spec.grid
    sweep_dir = spec.sweep_dir.resolve()
    trials = []
    for act, init, (opt, lr, hyper), seed in itertools.product(
        g.activation, g.init, _optimizer_settings(spec), g.seed
    ):
        gain_label = "auto" if init.gain == "auto" else _fmt(float(init.gain))
        trial = TrialConfig(
            sweep=spec.name, activation=act, init=init.name,
            gain=init_gain(init.name, init.gain, act),
            gain_label=gain_label, optimizer=opt, lr=lr, optimizer_params=hyper, seed=seed,
            model=spec.model.name, hidden=spec.model.hidden, dataset=spec.dataset.name,
            train_limit=spec.dataset.train_limit, test_limit=spec.dataset.test_limit,
            validation=spec.dataset.validation,
            network=_canonical(spec.model.network()),
            data=_canonical(spec.dataset.source()),
            epochs=spec.epochs, batch_size=spec.batch_size, stats_every=spec.stats_every,
            logdir="",
        )
        trials.append(replace(trial, logdir=str(sweep_dir / trial.name)))
    seen: set[str] = set()
    for t in trials:
        if t.name in seen:
            raise SpecError(f"grid: two configurations would share the trial name {t.name!r}")
        seen.add(t.name)
    return trials
