"""Registries of activations, weight initialisations and optimizers.

The keys of these dicts are the only list of valid names in the project:
the spec validator, the grid and the trial all look names up here.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import nn


@dataclass(frozen=True)
class Activation:
    """An activation function and what initialisation needs to know of it."""

    make: Callable[[], nn.Module]
    # Name torch.nn.init.calculate_gain understands, or None where torch has
    # no recommended gain (then the gain is 1, as for a linear layer).
    gain_name: str | None
    # (low, high) asymptotes of a bounded activation, None for unbounded ones.
    bounds: tuple[float, float] | None = None


ACTIVATIONS: Mapping[str, Activation] = {
    "sigmoid": Activation(nn.Sigmoid, "sigmoid", (0.0, 1.0)),
    "tanh": Activation(nn.Tanh, "tanh", (-1.0, 1.0)),
    "softsign": Activation(nn.Softsign, None, (-1.0, 1.0)),
    "relu": Activation(nn.ReLU, "relu"),
    "leaky_relu": Activation(nn.LeakyReLU, "leaky_relu"),
    "elu": Activation(nn.ELU, None),
    # Self-normalising networks want the linear gain (PyTorch's documentation of calculate_gain and SELU),
    # not calculate_gain("selu") = 3/4: both `gain: auto` and Kaiming use 1.
    "selu": Activation(nn.SELU, None),
    "gelu": Activation(nn.GELU, None),
    "silu": Activation(nn.SiLU, None),
}


def recommended_gain(activation: str) -> float:
    """torch's recommended init gain for an activation (1.0 where torch has none)."""
    name = ACTIVATIONS[activation].gain_name
    return nn.init.calculate_gain(name) if name else 1.0


# Kaiming's initialisation (He et al., 2015) draws weights with std gain / sqrt(fan_in), the gain chosen so
# that each layer keeps the second moment of its input: gain^2 = 1 / E[f(z)^2], z ~ N(0, 1). That is torch's
# sqrt(2) for ReLU and sqrt(2 / (1 + a^2)) for a leaky ReLU; torch's Kaiming knows no other activation of
# these and would use the linear gain 1 (LeCun's initialisation, not He's). For these, the same integral is
# taken numerically. SELU keeps the linear gain its self-normalisation wants (see ACTIVATIONS).
SECOND_MOMENT_KAIMING = frozenset({"softsign", "elu", "gelu", "silu"})


def _kaiming_nonlinearity(activation: str) -> str:
    """The `nonlinearity` torch's Kaiming initialisers are given for an activation."""
    name = ACTIVATIONS[activation].gain_name
    return name if name in ("relu", "leaky_relu", "tanh", "sigmoid") else "linear"


@functools.cache
def second_moment_gain(activation: str) -> float:
    """1 / sqrt(E[f(z)^2]) for z ~ N(0, 1): the gain that keeps a layer's second moment through activation f
    (He et al.'s derivation; sqrt(2) for ReLU), by the trapezoid rule in float64 over [-12, 12]."""
    z = torch.linspace(-12.0, 12.0, 240_001, dtype=torch.float64)
    density = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    with torch.no_grad():
        f = ACTIVATIONS[activation].make()(z)
    return float(1.0 / torch.sqrt(torch.trapezoid(f * f * density, z)))


def kaiming_gain(activation: str) -> float:
    """The gain Kaiming's initialisers use for an activation: torch's for the activations it knows (a = 0, their
    default slope), second_moment_gain for SECOND_MOMENT_KAIMING, 1 for SELU."""
    if activation in SECOND_MOMENT_KAIMING:
        return second_moment_gain(activation)
    return nn.init.calculate_gain(_kaiming_nonlinearity(activation), 0)


def _kaiming(fn):
    # Kaiming's formula is written for the activation's slope; torch names it with `nonlinearity`. Where torch
    # knows no gain for the activation, its linear draw is scaled to kaiming_gain (the trial's stored gain).
    def init(weight: torch.Tensor, gain: float, activation: str) -> None:
        fn(weight, a=0, nonlinearity=_kaiming_nonlinearity(activation))
        if activation in SECOND_MOMENT_KAIMING:
            with torch.no_grad():
                weight.mul_(kaiming_gain(activation))

    return init


# Each init takes (weight, gain, activation) and fills the weight in place.
# "default" is PyTorch's own layer initialisation: it leaves the layer alone.
INITS: Mapping[str, Callable[[torch.Tensor, float, str], None] | None] = {
    "default": None,
    "xavier_uniform": lambda w, gain, act: nn.init.xavier_uniform_(w, gain=gain),
    "xavier_normal": lambda w, gain, act: nn.init.xavier_normal_(w, gain=gain),
    "kaiming_uniform": _kaiming(nn.init.kaiming_uniform_),
    "kaiming_normal": _kaiming(nn.init.kaiming_normal_),
    "orthogonal": lambda w, gain, act: nn.init.orthogonal_(w, gain=gain),
}

# Inits whose formula takes a gain (the others ignore it).
GAIN_INITS = frozenset({"xavier_uniform", "xavier_normal", "orthogonal"})
# Inits whose gain the activation decides (kaiming_gain); a spec can only say `auto`.
ACTIVATION_GAIN_INITS = frozenset({"kaiming_uniform", "kaiming_normal"})


def init_gain(init: str, gain: float | str, activation: str) -> float:
    """The gain an initialisation actually uses: Kaiming's from the activation, `auto` torch's recommended gain
    for the activation, else the spec's number (1 for inits that take none)."""
    if init in ACTIVATION_GAIN_INITS:
        return kaiming_gain(activation)
    if gain == "auto":
        return recommended_gain(activation)
    return float(gain)


@dataclass(frozen=True)
class Optimizer:
    """A torch optimizer and the hyper-parameters a spec may set, with their types."""

    cls: type[torch.optim.Optimizer]
    params: Mapping[str, type]


OPTIMIZERS: Mapping[str, Optimizer] = {
    "sgd": Optimizer(
        torch.optim.SGD,
        {"lr": float, "momentum": float, "dampening": float, "nesterov": bool, "weight_decay": float},
    ),
    "adam": Optimizer(
        torch.optim.Adam,
        {"lr": float, "beta1": float, "beta2": float, "eps": float, "weight_decay": float, "amsgrad": bool},
    ),
    "adamw": Optimizer(
        torch.optim.AdamW,
        {"lr": float, "beta1": float, "beta2": float, "eps": float, "weight_decay": float, "amsgrad": bool},
    ),
    "rmsprop": Optimizer(
        torch.optim.RMSprop,
        {"lr": float, "alpha": float, "eps": float, "momentum": float, "weight_decay": float, "centered": bool},
    ),
}


def init_weights(model: nn.Module, init: str, gain: float, activation: str) -> None:
    """Initialise every conv/linear weight of `model` with `init`; biases to zero.

    Zero biases follow Glorot & Bengio (2010). "default" keeps PyTorch's own
    initialisation of weights and biases untouched.
    """
    fn = INITS[init]
    if fn is None:
        return
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            fn(module.weight, gain, activation)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


# Optimizers whose step keeps a counter that a CUDA graph can only replay in their capturable form (the
# counter on the device); SGD has none and needs no option.
CAPTURABLE = frozenset({"adam", "adamw", "rmsprop"})


def make_optimizer(name: str, params, hyper: Mapping[str, object], capturable: bool = False) -> torch.optim.Optimizer:
    """Build optimizer `name` over `params` with spec hyper-parameters `hyper`.

    The spec spells Adam's betas as beta1/beta2 so each is a scalar grid value. `capturable`: the form a
    CUDA graph can replay (same numbers; the step counter stays on the device).
    """
    entry = OPTIMIZERS[name]
    kwargs = dict(hyper)
    if "beta1" in kwargs or "beta2" in kwargs:
        kwargs["betas"] = (kwargs.pop("beta1", 0.9), kwargs.pop("beta2", 0.999))
    if capturable and name in CAPTURABLE:
        kwargs["capturable"] = True
    return entry.cls(params, **kwargs)
