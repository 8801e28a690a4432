"""Any PyTorch classifier as a sweep network: the user's own (a factory) or torchvision's (its activations
swapped for the grid's), returning (logits, activations) as the study's networks do (models/nets.py).

- Activations: the output of every call of an activation module the grid chose, taken by a forward hook,
  named by the module's path ("layer1.0.relu"); a module called twice in one forward gives two layers
  ("layer1.0.relu", "layer1.0.relu#2"), never one mixed. In the order of the forward pass.
- Weight layers: every Conv and Linear weight at any depth, by module path, in the order of first use in
  the forward pass (found by one forward of two zero images in eval mode, when the network is built: it
  changes no parameter, buffer or random state).
- A network that takes no activation (torchvision's) has every module of SWAPPED replaced by the grid's
  activation, a new instance per place. One that also calls an activation as a function (F.relu in a
  forward: torchvision's DenseNet, GoogLeNet, Inception) cannot be swapped so: it is refused before any
  trial starts, naming the call (`functional_calls`), rather than trained with two activations.

A factory is `build(activation, **args) -> nn.Module`, `activation` a zero-argument callable returning a fresh
module (as nn.ReLU is); it also gets `num_classes` and `input_shape` (C, H, W) where its signature takes them.
"""
from __future__ import annotations

import inspect
import io
import re
import textwrap
import tokenize
from typing import Any, Callable, Mapping

import torch
from torch import nn

from sweep.models.registry import ACTIVATIONS
from sweep.spec.code import last_line

# Activation modules swapped in a network that takes no activation. nn.Sigmoid and nn.Hardsigmoid are left
# alone: in torchvision's networks they are gates (squeeze-and-excitation's scale), not a layer's activation.
SWAPPED = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
           nn.Mish, nn.Hardswish, nn.Hardtanh, nn.Tanh, nn.Softsign, nn.Softplus)
# Calls of an activation as a function, in a module's source: F.relu(x), torch.relu(x), x.relu(), ...
_FUNCTIONAL = re.compile(
    r"(?:\b(?:F|functional|torch|nn\.functional)\.(?:relu6?|gelu|silu|hardswish|elu|selu|celu|leaky_relu|mish|"
    r"hardtanh|tanh|softsign|softplus)_?\s*\(|\.(?:relu|tanh)_?\(\))")
# Marks the activation modules sweep put in a network (and so probes).
_MARK = "_sweep_activation"
WEIGHT_MODULES = (nn.modules.conv._ConvNd, nn.Linear)


class NetworkError(ValueError):
    """A network cannot be built or trained as sweep trains one; the message is one line for the user."""


def grid_activation(activation: str) -> Callable[[], nn.Module]:
    """The zero-argument callable a factory gets: a fresh, marked module of the grid's activation per call."""
    def make() -> nn.Module:
        module = ACTIVATIONS[activation].make()
        setattr(module, _MARK, True)
        return module

    make.__name__ = f"{activation}_activation"
    return make


def swap_activations(net: nn.Module, activation: str) -> dict[str, nn.Module]:
    """Replace every SWAPPED module of `net` by the grid's activation (a new instance per place, never in
    place); the modules replaced, by path (Network puts back those whose output is not per example)."""
    make = grid_activation(activation)
    replaced = {}
    for name, module in list(net.named_modules()):
        if isinstance(module, SWAPPED):
            _put(net, name, make())
            replaced[name] = module
    return replaced


def _put(net: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, child = path.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, child, module)


def functional_calls(net: nn.Module) -> list[str]:
    """Activation calls written as functions in the source of `net`'s module classes ("DenseNet.forward:
    F.relu(features"), which swapping modules cannot reach; [] where there are none."""
    found = []
    for cls in dict.fromkeys(type(m) for m in net.modules()):
        if cls.__module__.startswith("torch.nn"):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(cls))
        except (OSError, TypeError):
            continue
        method = cls.__name__
        for line in _code_lines(source):
            head = re.match(r"\s*def (\w+)", line)
            if head:
                method = f"{cls.__name__}.{head.group(1)}"
            if _FUNCTIONAL.search(line):
                found.append(f"{method}: {line.strip()[:60]}")
    return found


def _code_lines(source: str) -> list[str]:
    """`source`'s lines with its strings (docstrings too) and comments blanked: only code is searched."""
    lines = source.splitlines()
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return lines
    for tok in reversed(tokens):
        if tok.type in (tokenize.STRING, tokenize.COMMENT):
            (r0, c0), (r1, c1) = tok.start, tok.end
            for row in range(r0, r1 + 1):
                text = lines[row - 1]
                start = c0 if row == r0 else 0
                end = c1 if row == r1 else len(text)
                lines[row - 1] = text[:start] + " " * (end - start) + text[end:]
    return lines


class Network(nn.Module):
    """A user's or torchvision's network `net` (its activation modules those of the grid, marked), giving
    (logits, activations) like the study's networks; `input_shape` (C, H, W) and `classes` are the data's.

    Trains alone (`fuses` False: sweep.models.fused fuses the study's networks only); BatchNorm, Dropout and
    residual connections train as `net` says, and the evaluation runs in eval mode (FusedNet.evaluate)."""

    fuses = False

    def __init__(self, net: nn.Module, input_shape: tuple[int, ...], classes: int, name: str,
                 originals: Mapping[str, nn.Module] | None = None):
        super().__init__()
        self.net = net
        self.input_shape, self.classes, self.label = tuple(input_shape), classes, name
        self._acts: dict[str, torch.Tensor] | None = None
        self._calls: dict[str, int] = {}
        hooks = {}
        for path, module in net.named_modules():
            if getattr(module, _MARK, False):
                module._sweep_path = path
                hooks[path] = module.register_forward_hook(self._probe)
        if not hooks:
            raise NetworkError(f"{name} uses none of the activation modules the grid gives it (the activation "
                               "argument): a factory must build its activations by calling activation()")
        try:
            self._order = self._first_use(hooks, originals or {})
        except NetworkError:
            for hook in hooks.values():  # a network refused is left as it was given
                hook.remove()
            raise

    def _probe(self, module: nn.Module, inputs, output) -> None:
        if self._acts is not None:
            name = module._sweep_path
            calls = self._calls[name] = self._calls.get(name, 0) + 1
            self._acts[name if calls == 1 else f"{name}#{calls}"] = output

    def _first_use(self, probes: dict, originals: Mapping[str, nn.Module]) -> list[str]:
        """The weight layers' paths in the order of their first use, from one forward of two zero images in
        eval mode (nothing it computes is kept); checks the output is (batch, classes). An activation module
        whose output is not per example (batch first: Swin V2's position-bias MLP) gets no statistics, and a
        swapped one is put back as the network had it (`originals`)."""
        order: list[str] = []
        paths = {id(m): p for p, m in self.net.named_modules() if isinstance(m, WEIGHT_MODULES)}
        hooks = [m.register_forward_hook(lambda mod, i, o: order.append(paths[id(mod)]))
                 for p, m in self.net.named_modules() if isinstance(m, WEIGHT_MODULES)]
        was = self.training
        self._acts, self._calls = {}, {}
        try:
            self.eval()
            with torch.no_grad():
                out = self.net(torch.zeros(2, *self.input_shape))
            seen = self._acts
        except Exception as exc:  # noqa: BLE001: the user's network failing on the data is said in one line
            raise NetworkError(f"{self.label} cannot take this data's {self.input_shape} inputs: "
                               f"{last_line(exc)}") from None
        finally:
            for h in hooks:
                h.remove()
            self.train(was)
            self._acts = None
        for name, value in seen.items():
            path = name.partition("#")[0]
            if path in probes and not (isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == 2):
                probes.pop(path).remove()
                if path in originals:
                    _put(self.net, path, originals[path])
        if not probes:
            raise NetworkError(f"{self.label} has no activation whose output is per example (batch first)")
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, self.classes):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise NetworkError(f"{self.label} gives {shape} for a batch of 2 inputs of shape {self.input_shape}; "
                               f"a classifier gives (batch, classes) = (2, {self.classes})")
        used = list(dict.fromkeys(order))
        return used + [p for p in paths.values() if p not in used]

    def forward(self, x: torch.Tensor, record: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and, with `record`, every activation call's output by name in forward order."""
        self._acts, self._calls = ({} if record else None), {}
        try:
            logits = self.net(x)
            return logits, self._acts or {}
        finally:
            self._acts = None

    def weight_layers(self) -> dict[str, torch.Tensor]:
        """Every Conv and Linear weight by module path, in the order of first use."""
        return {path: self.net.get_submodule(path).weight for path in self._order}


def call_factory(build: Callable, activation: str, args: Mapping[str, Any], input_shape: tuple[int, ...],
                 classes: int, name: str) -> nn.Module:
    """build(activation, **args), with num_classes and input_shape where its signature takes them (and `args`
    does not set them); NetworkError in one line where it raises or returns no nn.Module."""
    kwargs = dict(args)
    try:
        params = inspect.signature(build).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    for key, value in (("num_classes", classes), ("input_shape", tuple(input_shape))):
        if key not in kwargs and (key in params or takes_any):
            kwargs[key] = value
    try:
        net = build(grid_activation(activation), **kwargs)
    except Exception as exc:  # noqa: BLE001: the user's code failing is said in one line
        raise NetworkError(f"{name} raised {last_line(exc)}") from None
    if not isinstance(net, nn.Module):
        raise NetworkError(f"{name} returned a {type(net).__name__}, not a torch.nn.Module")
    return net


def torchvision_builders() -> list[str]:
    """The names of torchvision's classification networks."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def build_torchvision(name: str, activation: str, args: Mapping[str, Any], classes: int,
                      label: str) -> tuple[nn.Module, dict[str, nn.Module]]:
    """torchvision.models' `name` (no weights: trained from the init), num_classes from the data unless
    `args` sets it, its activations swapped for the grid's, and the modules swapped out by path (Network puts
    back those whose output is not per example); NetworkError where it calls an activation as a function
    (functional_calls) or has no activation module to swap."""
    import torchvision

    kwargs = {"num_classes": classes, **args}
    try:
        net = torchvision.models.get_model(name, weights=None, **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise NetworkError(f"{label} raised {last_line(exc)}") from None
    calls = functional_calls(net)
    if calls:
        raise NetworkError(f"{label} calls an activation as a function ({calls[0]}"
                           f"{f', and {len(calls) - 1} more' if len(calls) > 1 else ''}), which swapping its "
                           "activation modules cannot reach: use a network whose activations are modules, or "
                           "wrap it in a factory of your own")
    originals = swap_activations(net, activation)
    if not originals:
        raise NetworkError(f"{label} has no activation module to swap ({', '.join(c.__name__ for c in SWAPPED[:6])}"
                           ", ...)")
    return net, originals


def network_label(network: Mapping[str, Any]) -> str:
    """How errors and the report name a network setting: "model.factory nets.py:build", "model.torchvision
    resnet18"."""
    kind = "factory" if "factory" in network else "torchvision"
    return f"model.{kind} {network[kind]}"


def build_network(model: str, activation: str, hidden, kernels: str, network: Mapping[str, Any] | None,
                  input_shape: tuple[int, ...], classes: int, build: Callable | None = None) -> nn.Module:
    """A trial's network: the study's `model` (models/nets.py) where `network` is None, else the spec's
    factory or torchvision network ({"factory": "nets.py:build", "args": {...}} or {"torchvision": "resnet18",
    "args": {...}}) as a Network. `build`: the factory's callable where the caller has it (the driver, which
    read it from its file); else it is imported by its module name (a worker: from Ray's py_modules)."""
    from sweep.models.nets import build_model

    if network is None:
        return build_model(model, activation, hidden, kernels, input_shape, classes)
    label = network_label(network)
    args = network.get("args") or {}
    originals = None
    if "torchvision" in network:
        inner, originals = build_torchvision(network["torchvision"], activation, args, classes, label)
    else:
        if build is None:
            from sweep.spec.code import load_callable, module_ref

            build = load_callable(module_ref(network["factory"]), from_path=False)
        inner = call_factory(build, activation, args, input_shape, classes, label)
    return Network(inner, input_shape, classes, label, originals)
