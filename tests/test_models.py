"""Network shapes, initialisation variances and the optimizer registry."""
import math

import pytest
import torch
from torch import nn

from sweep.models.nets import LeNet, build_model, weight_layers
from sweep.models.registry import ACTIVATIONS, INITS, OPTIMIZERS, init_weights, make_optimizer, recommended_gain


def test_lenet_is_the_study_network():
    net = LeNet("tanh")
    assert (net.conv1.in_channels, net.conv1.out_channels, net.conv1.kernel_size) == (1, 6, (5, 5))
    assert (net.conv2.in_channels, net.conv2.out_channels, net.conv2.kernel_size) == (6, 16, (3, 3))
    assert [(l.in_features, l.out_features) for l in (net.fc1, net.fc2, net.fc3)] == [(400, 120), (120, 84), (84, 10)]
    logits, acts = net(torch.zeros(7, 1, 28, 28))
    assert logits.shape == (7, 10)
    assert {k: tuple(v.shape) for k, v in acts.items()} == {
        "conv1": (7, 6, 24, 24), "conv2": (7, 16, 10, 10), "fc1": (7, 120), "fc2": (7, 84),
    }
    assert list(weight_layers(net)) == ["conv1", "conv2", "fc1", "fc2", "fc3"]


def test_activations_are_outputs_of_the_activation_function():
    _, acts = LeNet("relu")(torch.randn(3, 1, 28, 28))
    assert all((a >= 0).all() for a in acts.values())
    _, acts = LeNet("sigmoid")(torch.randn(3, 1, 28, 28))
    assert all(((a > 0) & (a < 1)).all() for a in acts.values())


def test_mlp_hidden_sizes_and_names():
    net = build_model("mlp", "softsign", (32, 16, 8))
    logits, acts = net(torch.zeros(5, 1, 28, 28))
    assert logits.shape == (5, 10)
    assert {k: v.shape[1] for k, v in acts.items()} == {"fc1": 32, "fc2": 16, "fc3": 8}
    assert list(weight_layers(net)) == ["fc1", "fc2", "fc3", "fc4"]


# The sample variance of n draws is off the distribution's by a relative standard error of sqrt((kurtosis - 1)
# / n): uniform sqrt(0.8 / n), normal sqrt(2 / n), at most 0.29% for the n >= 240,000 weights below, so 2%
# is 7 standard errors. The faults it is there for miss by more: fan_in for fan_out 17% (40% for Kaiming's
# 500 x 700), a missing gain of 5/3 180%.
VARIANCE_RTOL = 0.02


def _variance_after(init, fan_in, fan_out, gain=1.0, activation="tanh"):
    torch.manual_seed(0)
    layer = nn.Linear(fan_in, fan_out)
    init_weights(layer, init, gain, activation)
    return layer.weight.var().item(), layer.bias


@pytest.mark.parametrize("init", ["xavier_uniform", "xavier_normal"])
def test_xavier_variance_is_two_over_fan_in_plus_fan_out(init):
    var, bias = _variance_after(init, 600, 400)
    assert var == pytest.approx(2 / (600 + 400), rel=VARIANCE_RTOL)
    assert torch.count_nonzero(bias) == 0  # Glorot & Bengio: zero biases


def test_xavier_with_auto_gain_scales_variance_by_gain_squared():
    gain = recommended_gain("tanh")
    assert gain == pytest.approx(5 / 3)
    var, _ = _variance_after("xavier_uniform", 600, 400, gain=gain)
    assert var == pytest.approx(gain ** 2 * 2 / 1000, rel=VARIANCE_RTOL)
    assert recommended_gain("softsign") == 1.0  # torch recommends none


@pytest.mark.parametrize("init", ["kaiming_uniform", "kaiming_normal"])
def test_kaiming_for_relu_is_two_over_fan_in(init):
    var, _ = _variance_after(init, 500, 700, activation="relu")
    assert var == pytest.approx(2 / 500, rel=VARIANCE_RTOL)


def test_default_init_leaves_pytorch_initialisation():
    torch.manual_seed(1)
    expected = nn.Linear(10, 5).state_dict()
    torch.manual_seed(1)
    layer = nn.Linear(10, 5)
    init_weights(layer, "default", 1.0, "relu")
    for key, value in layer.state_dict().items():
        assert torch.equal(value, expected[key])


def test_orthogonal_rows_are_orthonormal():
    layer = nn.Linear(50, 20)
    init_weights(layer, "orthogonal", 1.0, "tanh")
    w = layer.weight.detach().double()  # the product in float64: only the weights' own error is left
    # fp32 Householder QR of the 50 x 20 draw: each column within gamma(mn) of an orthonormal one (Higham, Thm
    # 19.4), so w w^T within 2 x 50 x 20 x EPS / 2 = 1.2e-4 of I; a row left out of the orthogonalisation
    # misses by about 1 / sqrt(50) = 0.14, a gain of sqrt(2) by 1.
    assert torch.allclose(w @ w.T, torch.eye(20, dtype=torch.float64), rtol=0,
                          atol=50 * 20 * torch.finfo(torch.float32).eps)


def test_registries_hold_the_study_names():
    assert {"sigmoid", "tanh", "softsign", "relu"} <= set(ACTIVATIONS)
    assert {"default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal"} == set(INITS)
    assert {"sgd", "adam", "adamw", "rmsprop"} == set(OPTIMIZERS)


def test_make_optimizer_maps_spec_names_to_torch_arguments():
    params = [nn.Parameter(torch.zeros(2))]
    adam = make_optimizer("adam", params, {"lr": 0.01, "beta1": 0.8})
    assert adam.defaults["betas"] == (0.8, 0.999) and adam.defaults["lr"] == 0.01
    sgd = make_optimizer("sgd", params, {"lr": 0.1, "momentum": 0.9, "nesterov": True})
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] is True
    assert math.isclose(sgd.defaults["momentum"], 0.9)
