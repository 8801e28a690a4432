"""torchvision's ResNet-18 for 28x28 one-channel images: a sweep factory (sweeps-resnet.yaml).

Its stem (a 7x7 stride-2 conv and a max pooling, drawn for 224x224 photographs) becomes one 3x3 conv on the
data's channels, as the CIFAR ResNets have it; every ReLU becomes the grid's activation. Everything else,
BatchNorm, the residual blocks and torchvision's own Kaiming initialisation (the `default` init), is
torchvision's.
"""
import torchvision
from torch import nn


def build(activation, num_classes, input_shape):
    net = torchvision.models.resnet18(num_classes=num_classes)
    net.conv1 = nn.Conv2d(input_shape[0], 64, 3, padding=1, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision's own stem
    net.maxpool = nn.Identity()
    for name, module in list(net.named_modules()):
        if isinstance(module, nn.ReLU):
            parent, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent) if parent else net, child, activation())
    return net
