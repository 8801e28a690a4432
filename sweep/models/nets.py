"""The networks: the study's LeNet-style CNN and a configurable MLP.

Both return (logits, activations): `activations` maps a layer name to the
output of that layer's activation function, so statistics never need hooks.
Weight layers carry the same names, so activation and gradient statistics of
one layer line up.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from sweep.models.registry import ACTIVATIONS


class LeNet(nn.Module):
    """conv 1->6 (5x5), pool 2, conv 6->16 (3x3), pool 2, linear 400->120->84->10.

    The activation follows each conv and the first two linear layers.
    """

    def __init__(self, activation: str, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 3)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)
        self.act = ACTIVATIONS[activation].make()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        acts: dict[str, torch.Tensor] = {}
        x = acts["conv1"] = self.act(self.conv1(x))
        x = F.max_pool2d(x, 2)
        x = acts["conv2"] = self.act(self.conv2(x))
        x = F.max_pool2d(x, 2).flatten(1)
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

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        acts: dict[str, torch.Tensor] = {}
        x = x.flatten(1)
        names = list(self.layers)
        for name in names[:-1]:
            x = acts[name] = self.act(self.layers[name](x))
        return self.layers[names[-1]](x), acts


# Builders by name: (activation, hidden sizes) -> network. LeNet's shape is fixed.
MODELS = {
    "lenet": lambda activation, hidden: LeNet(activation),
    "mlp": lambda activation, hidden: MLP(activation, hidden),
}


def build_model(name: str, activation: str, hidden: Sequence[int] = ()) -> nn.Module:
    """Build network `name` (a key of MODELS) with the given activation."""
    return MODELS[name](activation, hidden)


def weight_layers(model: nn.Module) -> dict[str, torch.Tensor]:
    """Weight tensors of the conv/linear layers, by layer name, input to output."""
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            out[name.split(".")[-1]] = module.weight
    return out
