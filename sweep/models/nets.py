"""The networks: the study's LeNet-style CNN and a configurable MLP.

Both return (logits, activations): `activations` maps a layer name to the
output of that layer's activation function, so statistics never need hooks.
Weight layers carry the same names, so activation and gradient statistics of
one layer line up.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from sweep.models.kernels import TORCH, check_name, conv2d, max_pool2, require
from sweep.models.registry import ACTIVATIONS

# Activations that never decrease: for them max_pool2d(act(z)) is act(max_pool2d(z)), value for value.
_MONOTONE = (nn.Sigmoid, nn.Tanh, nn.Softsign, nn.ReLU, nn.ELU, nn.SELU, nn.LeakyReLU)


def never_decreases(act: nn.Module) -> bool:
    """Whether activation module `act` is non-decreasing (a fused bundle's member activation: all of its)."""
    if hasattr(act, "runs"):  # models.fused._MemberActivation
        return all(never_decreases(a) for a, _ in act.runs)
    if isinstance(act, nn.LeakyReLU):
        return act.negative_slope >= 0
    if isinstance(act, nn.ELU):
        return act.alpha >= 0
    return isinstance(act, _MONOTONE)


class Conv2d(nn.Conv2d):
    """nn.Conv2d that carries its trial's choice of kernels (`kernels`, one of models.kernels.KERNELS):
    with "compiled", its convolution goes through sweep's compiled CPU kernel where that applies (one input
    channel per group, channels-last on the CPU; LeNet's conv1). Same parameters, state dict and hooks as
    nn.Conv2d.

        Conv2d(1, 6, 5, kernels="compiled")
    """

    def __init__(self, *args, kernels: str = TORCH, **kwargs):
        super().__init__(*args, **kwargs)
        require(kernels)
        self.kernels = kernels

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            return super()._conv_forward(x, weight, bias)
        return conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups, kernels=self.kernels)


class LeNet(nn.Module):
    """conv 1->6 (5x5), pool 2, conv 6->16 (3x3), pool 2, linear 400->120->84->10.

    The activation follows each conv and the first two linear layers. `kernels` (models.kernels.KERNELS)
    is the trial's choice for its convolutions and poolings: "compiled" runs sweep's compiled CPU kernels
    where they apply, "torch" torch's everywhere.
    """

    # Memory layout of its batches (and so of its conv activations) per device type, where one beats
    # torch's default (NCHW): channels-last trained every default-grid configuration faster per CPU second
    # (bench/bench_layout.py; docs/benchmarks.md, "CPU trials: channels-last, fused optimizer steps, pooling
    # first, compiled kernels"). No GPU has measured it: CUDA keeps the default layout.
    layouts = {"cpu": torch.channels_last}

    def __init__(self, activation: str, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 kernels: str = TORCH):
        super().__init__()
        self.kernels = kernels  # its poolings'; its convs check it (Conv2d)
        channels, height, width = input_shape
        self.conv1 = Conv2d(channels, 6, 5, kernels=kernels)
        self.conv2 = Conv2d(6, 16, 3, kernels=kernels)
        # The feature map after conv 5, pool 2, conv 3, pool 2: 5x5 for the 28x28 images it was drawn for.
        self.fc1 = nn.Linear(16 * (((height - 4) // 2 - 2) // 2) * (((width - 4) // 2 - 2) // 2), 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)
        self.act = ACTIVATIONS[activation].make()

    def forward(self, x: torch.Tensor, record: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and activations. record=False (a training step that takes no statistics) leaves out the
        conv layers' activations and, on the CPU where the activation never decreases, pools before the
        activation: the same values (a non-decreasing function keeps the window's maximum where it is) on a
        quarter of the elements, where torch's CPU tanh is slow (docs/benchmarks.md, "CPU trials: channels-last,
        fused optimizer steps, pooling first, compiled kernels", item 3). The gradient differs only
        where a window ties after the activation but not before (a saturated sigmoid or tanh, a negative
        ReLU input), where the activation's derivative is zero in both orders."""
        acts: dict[str, torch.Tensor] = {}
        if not record and x.device.type == "cpu" and never_decreases(self.act):
            x = self.act(max_pool2(self.conv1(x), self.kernels))
            x = flatten_features(self.act(max_pool2(self.conv2(x), self.kernels)))
        else:
            x = acts["conv1"] = self.act(self.conv1(x))
            x = max_pool2(x, self.kernels)
            x = acts["conv2"] = self.act(self.conv2(x))
            x = flatten_features(max_pool2(x, self.kernels))
        x = acts["fc1"] = self.act(self.fc1(x))
        x = acts["fc2"] = self.act(self.fc2(x))
        return self.fc3(x), acts


class MLP(nn.Module):
    """Fully connected net with the activation after every hidden layer (Glorot & Bengio's setting)."""

    def __init__(self, activation: str, hidden: Sequence[int], in_features: int = 784, num_classes: int = 10):
        super().__init__()
        sizes = [in_features, *hidden, num_classes]
        self.layers = nn.ModuleDict(
            {f"fc{i + 1}": nn.Linear(a, b) for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))}
        )
        self.act = ACTIVATIONS[activation].make()

    def forward(self, x: torch.Tensor, record: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and every hidden layer's activation (`record` changes nothing here: LeNet's argument)."""
        acts: dict[str, torch.Tensor] = {}
        x = x.flatten(1)
        names = list(self.layers)
        for name in names[:-1]:
            x = acts[name] = self.act(self.layers[name](x))
        return self.layers[names[-1]](x), acts


# Builders by name: (activation, hidden sizes, kernels, input shape (C, H, W), classes) -> network. LeNet's
# layers are fixed; the MLP has no convolution or pooling, so no use for the kernels' choice.
MODELS = {
    "lenet": lambda activation, hidden, kernels, shape, classes: LeNet(activation, shape, classes, kernels=kernels),
    "mlp": lambda activation, hidden, kernels, shape, classes: MLP(activation, hidden, math.prod(shape), classes),
}


def build_model(name: str, activation: str, hidden: Sequence[int] = (), kernels: str = TORCH,
                input_shape: Sequence[int] = (1, 28, 28), classes: int = 10) -> nn.Module:
    """Build network `name` (a key of MODELS) with the given activation, training on `kernels` (one of
    models.kernels.KERNELS, the trial's choice: models.kernels.choose), for the data's `input_shape` (C, H, W)
    and `classes`. A network that uses the compiled kernels refuses to be built where they are missing
    (models.kernels.KernelsMissing); the MLP uses none.

        build_model("lenet", "tanh", kernels=choose(on_cpu=True))
    """
    check_name(kernels)
    return MODELS[name](activation, hidden, kernels, tuple(input_shape), classes)


def memory_format(model: nn.Module, device: str | torch.device) -> torch.memory_format:
    """The memory layout `model`'s batches take on `device` (its class's measured `layouts`; default NCHW)."""
    return getattr(type(model), "layouts", {}).get(torch.device(device).type, torch.contiguous_format)


def to_layout(x: torch.Tensor, layout: torch.memory_format) -> torch.Tensor:
    """A (B, C, H, W) batch in `layout`. A one-channel batch is the same memory in both layouts, but torch's
    .contiguous(memory_format=torch.channels_last) leaves its NCHW strides, which a conv reads as NCHW:
    it gets channels-last strides on the same memory instead (a view, no copy)."""
    if layout == torch.contiguous_format or x.dim() != 4:
        return x
    if x.shape[1] == 1 and layout == torch.channels_last:
        x = x.contiguous()
        return x.as_strided(x.shape, (x.shape[2] * x.shape[3], 1, x.shape[3], 1))
    return x.contiguous(memory_format=layout)


def _channels_last_grad(grad: torch.Tensor) -> torch.Tensor:
    return grad.contiguous(memory_format=torch.channels_last)


def flatten_features(x: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W).flatten(1): the features in NCHW order, as the first linear layer's weight takes them.

    A channels-last x is copied into that order, and the gradient flowing back through the copy arrives in
    NCHW order too: the pooling's backward then converted it (and its input) to channels-last and back, three
    copies. A hook hands the layers below x its gradient in channels-last instead, one copy: the same values,
    in a fraction of the pooling backward's time (docs/benchmarks.md, "CPU trials: channels-last, fused
    optimizer steps, pooling first, compiled kernels", item 4)."""
    if x.requires_grad and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        x.register_hook(_channels_last_grad)
    return x.flatten(1)


def weight_layers(model: nn.Module) -> dict[str, torch.Tensor]:
    """Weight tensors of the conv/linear layers, by layer name, input to output (a network of its own order
    and names, models.network.Network, says them)."""
    if hasattr(model, "weight_layers"):
        return model.weight_layers()
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            out[name.split(".")[-1]] = module.weight
    return out
