"""The batches' memory layout (nets.memory_format) changes how fast a conv net trains, not what it reports.

Channels-last and NCHW compute the same convolutions with sums in another order, so activations agree to
float rounding; the statistics read them as values (a mean, an order statistic, shares of zeros), never
through their strides.
"""
import pytest
import torch

from sweep.models.fused import FusedNet
from sweep.models.kernels import choose
from sweep.models.nets import LeNet, MLP, build_model, memory_format, to_layout
from sweep.models.registry import ACTIVATIONS, init_weights
from sweep.models.stats import STAT_NAMES, tensor_stats
from rounding import EPS, TERMS_FACTOR, assert_rows_close, loss_terms, path_terms

ACTS = ["sigmoid", "tanh", "softsign", "relu"]  # the default grid's


def _modules(activations):
    modules = []
    for seed, act in enumerate(activations):
        torch.manual_seed(seed)
        module = build_model("lenet", act, (), kernels=choose(on_cpu=True))  # as a CPU trial builds it
        init_weights(module, "xavier_uniform", 1.0, act)
        modules.append(module)
    return modules


def _batch(k: int, b: int = 32):
    g = torch.Generator().manual_seed(7)
    return torch.randn(k, b, 1, 28, 28, generator=g), torch.randint(0, 10, (k, b), generator=g)


def test_the_measured_layouts():
    assert memory_format(LeNet("relu"), "cpu") == torch.channels_last
    assert memory_format(LeNet("relu"), "cuda") == torch.contiguous_format  # until a GPU measures it
    assert memory_format(MLP("relu", (8,)), "cpu") == torch.contiguous_format


def test_a_one_channel_batch_gets_channels_last_strides_on_the_same_memory():
    x = torch.randn(4, 1, 6, 6)
    y = to_layout(x, torch.channels_last)
    assert y.data_ptr() == x.data_ptr() and torch.equal(x, y)
    assert y.stride() == (36, 1, 6, 1)
    assert torch.nn.Conv2d(1, 2, 3)(y).is_contiguous(memory_format=torch.channels_last)
    three = to_layout(torch.randn(4, 3, 6, 6), torch.channels_last)
    assert three.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("bounds", [None, (-1.0, 1.0)])
def test_statistics_of_one_tensor_do_not_depend_on_its_layout(bounds):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 6, 12, 12, generator=g).tanh()
    x[:, 2] = 0.0  # a dead channel
    x[x.abs() < 0.05] = 0.0
    cl = x.contiguous(memory_format=torch.channels_last)
    assert cl.stride() != x.stride()
    got, want = tensor_stats(cl, per_unit=True, bounds=bounds), tensor_stats(x, per_unit=True, bounds=bounds)
    # The order statistic and the shares count the same values: exactly equal. Mean and std sum in another order.
    exact = [STAT_NAMES.index(s) for s in ("p98", "zero_frac", "dead_frac", "sat_frac")]
    assert torch.equal(got[exact].nan_to_num(), want[exact].nan_to_num())
    # fp32: each order's sum of the n = 13,824 values (or squares) within n EPS / 2 of their magnitude
    # (gamma_n): the two within n EPS x their rms = 1.6e-3 of it (the std: half that, Welford's a quarter)
    bound = EPS * x.numel() * x.square().mean().sqrt().item()
    for name in ("mean", "std"):
        i = STAT_NAMES.index(name)
        assert abs(got[i] - want[i]).item() <= bound, (name, got[i], want[i])


@pytest.mark.parametrize("activations", [ACTS[:1], ACTS[1:2], ACTS[2:3], ACTS[3:], ACTS],
                         ids=["sigmoid", "tanh", "softsign", "relu", "bundle of four"])
def test_statistics_are_equal_in_both_layouts_on_the_same_weights_and_batch(activations):
    nets = {layout: FusedNet(_modules(activations), [("sgd", {"lr": 0.1})] * len(activations), "cpu",
                             layout=layout)
            for layout in (torch.contiguous_format, torch.channels_last)}
    x, y = _batch(len(activations))
    snaps = {}
    for layout, net in nets.items():
        losses, acts = net.train_step(x, y)
        if len(activations) == 1:  # the layout reached the convolutions
            assert acts["conv1"][0].is_contiguous(memory_format=layout)
        values = [{**{(layer, "activation"): a[k] for layer, a in acts.items()},
                   **{(layer, "gradient"): g[k] for layer, g in net.weight_grads().items()}}
                  for k in range(len(activations))]
        snaps[layout] = (losses, net.snapshots(acts, [ACTIVATIONS[a].bounds for a in activations]), values)
    (loss_a, snap_a, values_a), (loss_b, snap_b, values_b) = snaps.values()
    # The layouts sum the convolutions in other orders (tests/rounding.py): each value within EPS x the
    # terms on its path x TERMS_FACTOR of its row's scale, the loss of its own (LeNet, batch 32: 725 terms,
    # 3.5e-4); another member's weights or activation miss by far more.
    weights = {layer: g[0] for layer, g in net.weight_grads().items()}
    terms = path_terms(weights, {layer: a[0] for layer, a in acts.items()}, x.shape[1])
    torch.testing.assert_close(loss_a, loss_b, rtol=EPS * TERMS_FACTOR * loss_terms(weights, x.shape[1]), atol=0)
    per_value = {key: EPS * TERMS_FACTOR * n for key, n in terms.items()}
    for k, (rows_a, rows_b) in enumerate(zip(snap_a, snap_b)):
        assert_rows_close(rows_a, rows_b, values_a[k], values_b[k], per_value, ACTIVATIONS[activations[k]].bounds,
                          where=activations[k])


@pytest.mark.parametrize("activation", ACTS + ["leaky_relu", "elu", "selu"])
def test_pooling_before_a_non_decreasing_activation_gives_the_same_values(activation):
    """LeNet's step without statistics pools before the activation (nets.LeNet.forward): the same numbers."""
    from sweep.models.nets import never_decreases

    act = ACTIVATIONS[activation].make()
    assert never_decreases(act)
    g = torch.Generator().manual_seed(1)
    for layout in (torch.contiguous_format, torch.channels_last):
        z = (4 * torch.randn(8, 6, 24, 24, generator=g)).contiguous(memory_format=layout)
        assert torch.equal(torch.nn.functional.max_pool2d(act(z), 2), act(torch.nn.functional.max_pool2d(z, 2)))
    net = _modules([activation] if activation in ACTS else ["relu"])[0]
    net.act = act
    x = torch.randn(16, 1, 28, 28, generator=g)
    recorded, acts = net(x)
    plain, fewer = net(x, record=False)
    assert torch.equal(recorded, plain)
    assert set(acts) - set(fewer) == {"conv1", "conv2"}


@pytest.mark.parametrize("activation", ["gelu", "silu"])
def test_an_activation_that_dips_keeps_the_pooling_after_it(activation):
    from sweep.models.nets import never_decreases

    assert not never_decreases(ACTIVATIONS[activation].make())
    net = _modules(["relu"])[0]
    net.act = ACTIVATIONS[activation].make()
    _, acts = net(torch.randn(4, 1, 28, 28), record=False)
    assert "conv1" in acts


@pytest.mark.parametrize("record", [True, False])
def test_the_flatten_hands_back_a_channels_last_gradient_of_the_same_values(record):
    """nets.flatten_features: the layers below the flatten get their gradient in channels-last (the pooling's
    fast backward), value for value the gradient of a plain flatten; forward values unchanged."""
    from sweep.models.nets import flatten_features

    g = torch.Generator().manual_seed(3)
    z = torch.randn(8, 16, 10, 10, generator=g).contiguous(memory_format=torch.channels_last)
    w = torch.randn(400, 7, generator=g)
    grads = {}
    for name, flatten in (("plain", lambda t: t.flatten(1)), ("hooked", flatten_features)):
        leaf = z.clone().requires_grad_()
        pooled = torch.nn.functional.max_pool2d(leaf, 2)
        seen = {}
        out = flatten(pooled)
        # What the pooling's backward receives (a node's pre-hooks run after the tensor's hooks).
        pooled.grad_fn.register_prehook(lambda grads: seen.update(grad=grads[0]))
        assert torch.equal(out, pooled.flatten(1))
        (out @ w).square().sum().backward()
        grads[name] = (seen["grad"], leaf.grad)
    assert torch.equal(grads["plain"][0], grads["hooked"][0])
    assert torch.equal(grads["plain"][1], grads["hooked"][1])
    assert grads["hooked"][0].is_contiguous(memory_format=torch.channels_last)
    # A whole LeNet, both forwards: the gradients reach every parameter as before (an NCHW net has no hook).
    net = _modules(["tanh"])[0]
    x = to_layout(torch.randn(16, 1, 28, 28, generator=g), torch.channels_last)
    logits, _ = net(x, record=record)
    logits.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_the_batch_gather_is_plain_indexing():
    from sweep.models.graph import gather

    data = torch.randn(50, 1, 28, 28)
    labels = torch.randint(0, 10, (50,))
    idx = torch.randint(0, 50, (3, 16))
    assert torch.equal(gather(data, idx), data[idx])
    assert torch.equal(gather(labels, idx), labels[idx])
    assert gather(data, idx[:, :5]).shape == (3, 5, 1, 28, 28)
