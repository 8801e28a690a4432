"""Fused training vs the same members trained unfused: equivalence by construction (HFTA's test).

Every member is built as run_trial builds a trial (torch.manual_seed(seed),
build_model, init_weights, make_optimizer; its own seeded generator for the
batch order) and trained next to its unfused twin on the same batches. Both
run as the trial loop runs on the CPU: batches in the net's measured memory
layout (channels-last for LeNet, nets.memory_format) and the optimizers'
CPU step (fused.step_options).

Tolerances, derived (tests/rounding.py). The fused forward computes the same
sums as the unfused one in another order (a grouped conv, a batched matmul), so
on the same weights the two differ by float32 rounding: each value within EPS x
the sums on its path x TERMS_FACTOR (the first step's losses and statistics,
the evaluation). After that, training grows the difference without a bound one
can derive in float32: a ReLU input or an Adam gradient within rounding of zero
goes one way in one, the other way in the other, and the trajectories part
by an amount that changes from CPU to CPU. So every comparison over several
steps trains both sides in float64 (RTOL64). A wrong
member's batch, hyper-parameter, optimizer group or a 1/K gradient scale each
moves a member by the order of its whole movement (each of these faults,
planted in models/fused.py, fails several tests here).
"""
import io
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F

from sweep.models.fused import FusedNet, step_options
from sweep.models.kernels import choose
from sweep.models.nets import build_model, memory_format, to_layout, weight_layers
from sweep.models.registry import ACTIVATIONS, OPTIMIZERS, init_weights, make_optimizer, recommended_gain
from sweep.models.stats import snapshot_stats
from sweep.data.datasets import synthetic
from rounding import EPS, EPS64, TERMS_FACTOR, assert_rows_close, loss_terms, path_terms

DATA = synthetic(train_size=256, test_size=100)
TRAIN_X, TRAIN_Y = torch.from_numpy(DATA.train_x), torch.from_numpy(DATA.train_y)
TEST_X, TEST_Y = torch.from_numpy(DATA.test_x), torch.from_numpy(DATA.test_y)
INPUTS = {torch.float32: TRAIN_X, torch.float64: TRAIN_X.double()}
BATCH = 16
STEPS = 50
FIRST_STEPS = 5
# Fused against unfused, both in float64, over up to STEPS steps (of the losses, and of how far training moved
# the weights): a step's rounding moves a value by EPS64 (2.2e-16) x at most 10,283 terms (LeNet's conv1
# gradient at a batch of 16; tests/rounding.py) x TERMS_FACTOR, at most 50 such steps, each grown by training up
# to 1000 times (a stated allowance; float64 keeps none of float32's near-ties): 4.6e-7. The faults above
# miss by about 1.
RTOL64 = EPS64 * 10_283 * TERMS_FACTOR * STEPS * 1000
MODELS = {"lenet": (), "mlp": (64, 32)}


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """An unfused module's mean cross-entropy and accuracy over a set: the reference for FusedNet.evaluate."""
    model.eval()
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for start in range(0, len(x), 1000):
        logits, _ = model(to_layout(x[start:start + 1000], memory_format(model, x.device)), record=False)
        target = y[start:start + 1000]
        loss += F.cross_entropy(logits, target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    model.train()
    total_loss, total_correct = torch.stack([loss, correct]).tolist()
    return total_loss / len(x), total_correct / len(x)


class Member(NamedTuple):
    activation: str
    init: str
    optimizer: str
    hyper: dict
    seed: int


# Activations in runs, optimizer settings interleaved (their groups are not
# contiguous), SGD with and without momentum (and weight decay), Adam.
MEMBERS = (
    Member("sigmoid", "default", "sgd", {"lr": 0.1}, 0),
    Member("sigmoid", "xavier_uniform", "adam", {"lr": 0.001}, 1),
    Member("tanh", "default", "sgd", {"lr": 0.05, "momentum": 0.9}, 2),
    Member("tanh", "xavier_uniform", "adam", {"lr": 0.001}, 3),
    Member("relu", "default", "sgd", {"lr": 0.1}, 4),
    Member("relu", "xavier_uniform", "sgd", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01}, 5),
)


def build(member: Member, model: str = "lenet", dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The member's network exactly as run_trial builds it (a CPU trial: the compiled kernels where built);
    `dtype` float64 for the comparisons over several steps (RTOL64)."""
    torch.manual_seed(member.seed)
    net = build_model(model, member.activation, MODELS[model], kernels=choose(on_cpu=True))
    init_weights(net, member.init, recommended_gain(member.activation), member.activation)
    return net.to(dtype)


def fused(members, model: str = "lenet", dtype: torch.dtype = torch.float32) -> FusedNet:
    return FusedNet([build(m, model, dtype) for m in members], [(m.optimizer, m.hyper) for m in members])


def raw_values(acts: dict, grads: dict) -> dict:
    """The values a statistics snapshot reads, by (layer, kind): one member's activations and weight gradients."""
    return {**{(layer, "activation"): a.detach().clone() for layer, a in acts.items()},
            **{(layer, "gradient"): g.detach().clone() for layer, g in grads.items()}}


class Unfused:
    """The members as separate trials: a module and an optimizer each."""

    def __init__(self, members, model: str = "lenet", dtype: torch.dtype = torch.float32):
        self.members = members
        self.inputs = INPUTS[dtype]
        self.modules = [build(m, model, dtype) for m in members]
        self.optimizers = [make_optimizer(m.optimizer, net.parameters(), {**m.hyper, **step_options(m.optimizer, "cpu")})
                           for m, net in zip(members, self.modules)]

    def train_step(self, idx: torch.Tensor, snapshot: bool = False, values: list | None = None):
        """run_trial's inner loop for every member on its row of idx: losses (K,) and, if asked, statistics
        (and, given `values`, the raw values they read appended to it, one dict per member)."""
        losses, snaps = [], []
        for k, (m, net, opt) in enumerate(zip(self.members, self.modules, self.optimizers)):
            logits, acts = net(to_layout(self.inputs[idx[k]], memory_format(net, "cpu")), record=snapshot)
            loss = F.cross_entropy(logits, TRAIN_Y[idx[k]])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if snapshot:
                snaps.append(snapshot_stats(acts, weight_layers(net), ACTIVATIONS[m.activation].bounds))
                if values is not None:
                    values.append(raw_values(acts, {layer: w.grad for layer, w in weight_layers(net).items()}))
            opt.step()
            losses.append(loss.detach())
        return torch.stack(losses), snaps


def fused_step(net: FusedNet, idx: torch.Tensor, members=None, values: list | None = None,
               dtype: torch.dtype = torch.float32):
    """One fused step on idx (K, B): losses (K,) and, given the members, their statistics (and, given
    `values`, the raw values they read appended to it, one dict per member)."""
    # as the trial loop: activations where a snapshot reads them
    logits, acts = net(INPUTS[dtype][idx], record=bool(members))
    losses = net.member_losses(logits, TRAIN_Y[idx])
    net.zero_grad()
    losses.sum().backward()
    snaps = net.snapshots(acts, [ACTIVATIONS[m.activation].bounds for m in members]) if members else []
    if members and values is not None:
        grads = net.weight_grads()
        values += [raw_values({layer: a[k] for layer, a in acts.items()}, {layer: g[k] for layer, g in grads.items()})
                   for k in range(len(members))]
    net.step()
    return losses.detach(), snaps


def batches(members, steps: int) -> list[torch.Tensor]:
    """Each member's batches in its run_trial order (a new permutation from its generator every epoch),
    gathered as one (K, B) index tensor per step."""
    orders = [torch.Generator().manual_seed(m.seed) for m in members]
    n = len(TRAIN_X)
    rows = [[] for _ in members]
    while len(rows[0]) < steps:
        for row, order in zip(rows, orders):
            perm = torch.randperm(n, generator=order)
            row += [perm[start:start + BATCH] for start in range(0, n, BATCH)]
    return [torch.stack([row[step] for row in rows]) for step in range(steps)]


def float32_bounds(values: dict) -> dict:
    """Each statistics row's per-value bound, as a share of its scale, for a step on the same weights in
    float32: EPS x the sums on its path x TERMS_FACTOR (tests/rounding.py)."""
    weights = {layer: v for (layer, kind), v in values.items() if kind == "gradient"}
    acts = {layer: v for (layer, kind), v in values.items() if kind == "activation"}
    return {key: EPS * TERMS_FACTOR * n for key, n in path_terms(weights, acts, BATCH).items()}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, as a 1-CPU trial has: two threads on two shared cores are several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=list(MODELS))
def trained_model(request):
    return request.param


@pytest.fixture(scope="module")
def trajectory(trained_model):
    """MEMBERS trained STEPS steps fused and unfused on the same batches, in float32 as trials train."""
    return train(trained_model, torch.float32)


@pytest.fixture(scope="module")
def trajectory64(trained_model):
    """The same in float64: the comparisons over several steps (RTOL64)."""
    return train(trained_model, torch.float64)


def train(model: str, dtype: torch.dtype) -> dict:
    net, ref = fused(MEMBERS, model, dtype), Unfused(MEMBERS, model, dtype)
    start = [net.member_state(k)[0] for k in range(len(MEMBERS))]
    fused_losses, unfused_losses, fused_stats, unfused_stats, fused_values, unfused_values = [], [], [], [], [], []
    for step, idx in enumerate(batches(MEMBERS, STEPS)):
        snapshot = step in (0, FIRST_STEPS - 1)
        got, snaps = fused_step(net, idx, MEMBERS if snapshot else None, fused_values, dtype)
        want, ref_snaps = ref.train_step(idx, snapshot, unfused_values)
        fused_losses.append(got)
        unfused_losses.append(want)
        fused_stats += snaps
        unfused_stats += ref_snaps
    return {
        "model": model, "start": start, "net": net, "ref": ref,
        "fused_losses": torch.stack(fused_losses), "unfused_losses": torch.stack(unfused_losses),
        "fused_stats": fused_stats, "unfused_stats": unfused_stats,
        "fused_values": fused_values, "unfused_values": unfused_values,
    }


def test_initial_weights_are_bit_identical_to_the_unfused_trials(trajectory):
    for k, member in enumerate(MEMBERS):
        want = build(member, trajectory["model"]).state_dict()
        got = trajectory["start"][k]
        assert list(got) == list(want)
        for name in want:
            assert torch.equal(got[name], want[name]), (k, name)


def test_first_steps_losses_match_the_unfused_trials(trajectory, trajectory64):
    # The first step, on the same weights in float32: EPS x the terms on the loss's path x TERMS_FACTOR
    # (LeNet at a batch of 16: 709 terms, 3.4e-4; tests/rounding.py). The next ones in float64: RTOL64.
    got, want = trajectory["fused_losses"], trajectory["unfused_losses"]
    weights = weight_layers(trajectory["ref"].modules[0])
    torch.testing.assert_close(got[0], want[0], rtol=EPS * TERMS_FACTOR * loss_terms(weights, BATCH), atol=0)
    torch.testing.assert_close(trajectory64["fused_losses"][:FIRST_STEPS], trajectory64["unfused_losses"][:FIRST_STEPS],
                               rtol=RTOL64, atol=0)
    # The members really differ, and really learn: the comparison is not between equal numbers.
    assert len({round(v, 4) for v in want[0].tolist()}) == len(MEMBERS)
    assert want[-5:].mean() < want[:5].mean()


def test_parameters_after_training_match_the_unfused_trials(trajectory64):
    net, ref = trajectory64["net"], trajectory64["ref"]
    for k in range(len(MEMBERS)):
        got, want, start = net.member_state(k)[0], ref.modules[k].state_dict(), trajectory64["start"][k]
        diff = torch.cat([(got[n] - want[n]).flatten() for n in want]).norm()
        moved = torch.cat([(want[n] - start[n]).flatten() for n in want]).norm()
        assert moved > 0.05, k
        assert diff < RTOL64 * moved, (k, diff.item(), moved.item())


def test_statistics_are_the_unfused_trials_statistics(trajectory, trajectory64):
    got, want = trajectory["fused_stats"], trajectory["unfused_stats"]
    assert len(got) == len(want) == 2 * len(MEMBERS)
    k = len(MEMBERS)
    # The first step's, on the same weights in float32 (float32_bounds).
    for member, fused_rows, unfused_rows, fused_values, unfused_values in zip(
            MEMBERS, got[:k], want[:k], trajectory["fused_values"][:k], trajectory["unfused_values"][:k]):
        assert_rows_close(fused_rows, unfused_rows, fused_values, unfused_values, float32_bounds(unfused_values),
                          ACTIVATIONS[member.activation].bounds, where=(trajectory["model"], member.activation))
    # Step FIRST_STEPS, trained in float64 (values within RTOL64) and read in float32: each value rounds to
    # float32 once on either side, EPS / 2 each.
    got, want = trajectory64["fused_stats"], trajectory64["unfused_stats"]
    for member, fused_rows, unfused_rows, fused_values, unfused_values in zip(
            MEMBERS, got[k:], want[k:], trajectory64["fused_values"][k:], trajectory64["unfused_values"][k:]):
        assert_rows_close(fused_rows, unfused_rows, fused_values, unfused_values,
                          dict.fromkeys(unfused_values, EPS + RTOL64), ACTIVATIONS[member.activation].bounds,
                          where=(trajectory64["model"], member.activation))
    layers = {layer for layer, _, _ in want[0]}
    assert layers == set(weight_layers(trajectory["ref"].modules[0]))


def test_evaluation_is_the_unfused_evaluation(trajectory):
    net, model = trajectory["net"], trajectory["model"]
    loss, acc = net.evaluate(TEST_X, TEST_Y, chunk=32)  # 100 examples: the last chunk is short
    for k, member in enumerate(MEMBERS):
        module = build(member, model)
        module.load_state_dict(net.member_state(k)[0])
        want_loss, want_acc = evaluate(module, TEST_X, TEST_Y)
        # The same weights, the sums in another order: the summed loss of the 100 examples within EPS x the
        # terms on its path x TERMS_FACTOR (tests/rounding.py); another member's weights miss by far more.
        weights = weight_layers(module)
        assert loss[k].item() == pytest.approx(want_loss, rel=EPS * TERMS_FACTOR * loss_terms(weights, len(TEST_X)))
        # The same count of correct answers, but for examples whose two top logits lie within both sides'
        # rounding of each other (in practice none); then count / 100 rounds once in float32 (EPS / 2).
        with torch.no_grad():
            logits, _ = module(to_layout(TEST_X, memory_format(module, "cpu")), record=False)
        top = logits.topk(2, dim=1).values
        within = 2 * EPS * TERMS_FACTOR * (loss_terms(weights, 0, 0)) * logits.abs().max().item()
        near_ties = int((top[:, 0] - top[:, 1] <= within).sum().item())
        assert abs(acc[k].item() - want_acc) <= near_ties / len(TEST_X) + EPS, (k, near_ties)
    assert len(set(acc.tolist())) > 1


def saved(state):
    """Through torch.save and torch.load(weights_only=True), as a checkpoint goes."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_member_state_is_the_unfused_format_and_resumes_unfused():
    # In float64: the steps after the resume are compared within RTOL64.
    f64 = torch.float64
    idx = batches(MEMBERS, 2 * FIRST_STEPS)
    net, ref = fused(MEMBERS, dtype=f64), Unfused(MEMBERS, dtype=f64)
    for step in idx[:FIRST_STEPS]:
        fused_step(net, step, dtype=f64)
        ref.train_step(step)
    resumed = Unfused(MEMBERS, dtype=f64)
    for k, (module, optimizer) in enumerate(zip(resumed.modules, resumed.optimizers)):
        model_sd, optimizer_sd = saved(net.member_state(k))
        want = ref.optimizers[k].state_dict()
        assert list(model_sd) == list(ref.modules[k].state_dict())
        assert optimizer_sd["param_groups"] == want["param_groups"]
        assert {i: sorted(s) for i, s in optimizer_sd["state"].items()} == \
            {i: sorted(s) for i, s in want["state"].items()}
        module.load_state_dict(model_sd)
        optimizer.load_state_dict(optimizer_sd)
    for step in idx[FIRST_STEPS:]:
        got, _ = resumed.train_step(step)
        want, _ = fused_step(net, step, dtype=f64)
        torch.testing.assert_close(got, want, rtol=RTOL64, atol=0)


def test_unfused_state_loads_into_a_bundle_and_goes_on_alike():
    # In float64: the steps after the load are compared within RTOL64.
    f64 = torch.float64
    idx = batches(MEMBERS, 2 * FIRST_STEPS)
    ref = Unfused(MEMBERS, dtype=f64)
    for step in idx[:FIRST_STEPS]:
        ref.train_step(step)
    # Other seeds: every weight the bundle ends up with comes from the loaded state.
    net = fused([m._replace(seed=m.seed + 100) for m in MEMBERS], dtype=f64)
    for k, (module, optimizer) in enumerate(zip(ref.modules, ref.optimizers)):
        net.load_member_state(k, *saved((module.state_dict(), optimizer.state_dict())))
    for k, (module, optimizer) in enumerate(zip(ref.modules, ref.optimizers)):
        model_sd, optimizer_sd = net.member_state(k)
        assert all(torch.equal(model_sd[n], p) for n, p in module.state_dict().items())
        want = optimizer.state_dict()["state"]
        assert all(torch.equal(optimizer_sd["state"][i][key], value)
                   for i, entry in want.items() for key, value in entry.items()), k
    for step in idx[FIRST_STEPS:]:
        got, _ = fused_step(net, step, dtype=f64)
        want, _ = ref.train_step(step)
        torch.testing.assert_close(got, want, rtol=RTOL64, atol=0)


def test_member_state_round_trips_between_bundles_exactly():
    idx = batches(MEMBERS, 2 * FIRST_STEPS)
    net = fused(MEMBERS)
    for step in idx[:FIRST_STEPS]:
        fused_step(net, step)
    copy = fused([m._replace(seed=m.seed + 100) for m in MEMBERS])
    for k in range(len(MEMBERS)):
        copy.load_member_state(k, *saved(net.member_state(k)))
    for step in idx[FIRST_STEPS:]:
        assert torch.equal(fused_step(copy, step)[0], fused_step(net, step)[0])


def test_drop_leaves_the_other_members_as_they_were():
    idx = batches(MEMBERS, 2 * FIRST_STEPS)
    net, clean = fused(MEMBERS), fused(MEMBERS)
    # Member 4 diverges from the start: NaN weights give NaN losses and gradients.
    model_sd, optimizer_sd = net.member_state(4)
    net.load_member_state(4, {n: torch.full_like(p, float("nan")) for n, p in model_sd.items()}, optimizer_sd)
    for step in idx[:FIRST_STEPS]:
        got, _ = fused_step(net, step)
        want, _ = fused_step(clean, step)
        assert got[4].isnan() and not want.isnan().any()
        keep = [0, 1, 2, 3, 5]
        assert torch.equal(got[keep], want[keep])  # the NaN stays in its member
    survivors = [0, 2, 3, 5]
    before = [clean.member_state(k) for k in survivors]
    net.drop([4, 1])
    assert len(net) == len(survivors)
    for new, old in enumerate(before):
        after = net.member_state(new)
        assert all(torch.equal(after[0][n], p) for n, p in old[0].items())
        assert all(torch.equal(after[1]["state"][i][key], value)
                   for i, entry in old[1]["state"].items() for key, value in entry.items())
    # Four members now and six in the clean bundle: each member's sums may run in another order (a grouped
    # conv of 4 groups, not 6), so, on the same weights, float32 bounds the first step after the drop:
    # EPS x the 709 terms on the loss's path (LeNet, batch 16) x TERMS_FACTOR = 3.4e-4 (tests/rounding.py).
    # Then training parts them without a bound one can derive (module docstring);
    # test_drop_leaves_the_others_training_as_before follows them in float64.
    got, _ = fused_step(net, idx[FIRST_STEPS][survivors])
    want, _ = fused_step(clean, idx[FIRST_STEPS])
    terms = loss_terms(weight_layers(build(MEMBERS[0])), BATCH)
    torch.testing.assert_close(got, want[survivors], rtol=EPS * TERMS_FACTOR * terms, atol=0)


def test_drop_leaves_the_others_training_as_before():
    """After a drop the members left train on as in the bundle they left, step for step (in float64: RTOL64)."""
    f64 = torch.float64
    idx = batches(MEMBERS, 2 * FIRST_STEPS)
    net, clean = fused(MEMBERS, dtype=f64), fused(MEMBERS, dtype=f64)
    for step in idx[:FIRST_STEPS]:
        fused_step(net, step, dtype=f64)
        fused_step(clean, step, dtype=f64)
    survivors = [0, 2, 3, 5]
    net.drop([4, 1])
    for step in idx[FIRST_STEPS:]:
        got, _ = fused_step(net, step[survivors], dtype=f64)
        want, _ = fused_step(clean, step, dtype=f64)
        torch.testing.assert_close(got, want[survivors], rtol=RTOL64, atol=0)


def test_every_optimizer_with_every_hyper_parameter_updates_like_its_unfused_twin():
    """Stacked leaves under stock optimizers: every optimizer in the registry, every hyper-parameter set
    away from its default (weight decay included), two members sharing each setting."""
    settings = {
        "sgd": {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "nesterov": False, "weight_decay": 0.1},
        "adam": {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.1, "amsgrad": True},
        "adamw": {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.5, "amsgrad": True},
        "rmsprop": {"lr": 0.001, "alpha": 0.9, "eps": 1e-6, "momentum": 0.5, "weight_decay": 0.1,
                    "centered": True},
    }
    assert set(settings) == set(OPTIMIZERS)
    assert all(set(hyper) == set(OPTIMIZERS[name].params) for name, hyper in settings.items())
    members = [Member("tanh", "xavier_uniform", name, hyper, seed)
               for seed, (name, hyper) in enumerate(list(settings.items()) * 2)]
    # In float64: 20 steps, compared within RTOL64 of how far they moved the weights.
    f64 = torch.float64
    net, ref = fused(members, "mlp", f64), Unfused(members, "mlp", f64)
    start = [ref.modules[k].state_dict() for k in range(len(members))]
    start = [{n: p.clone() for n, p in sd.items()} for sd in start]
    for step in batches(members, 20):
        got, _ = fused_step(net, step, dtype=f64)
        want, _ = ref.train_step(step)
    for k in range(len(members)):
        got, want = net.member_state(k)[0], ref.modules[k].state_dict()
        diff = torch.cat([(got[n] - want[n]).flatten() for n in want]).norm()
        moved = torch.cat([(want[n] - start[k][n]).flatten() for n in want]).norm()
        assert diff < RTOL64 * moved, (members[k].optimizer, diff.item(), moved.item())


def test_loading_another_optimizer_setting_is_refused():
    net = fused(MEMBERS)
    other = Unfused([MEMBERS[1]._replace(hyper={"lr": 0.5})])
    refusal = r"member 1's optimizer state is for another setting: lr=0.5 \(bundle: 0.001\)"
    with pytest.raises(ValueError, match=refusal):
        net.load_member_state(1, other.modules[0].state_dict(), other.optimizers[0].state_dict())
    with pytest.raises(ValueError, match="member 2's network differs in shape from member 0's"):
        FusedNet([build(MEMBERS[0]), build(MEMBERS[1]), build(MEMBERS[2], "mlp")], [("sgd", {"lr": 0.1})] * 3)


def test_a_refused_state_leaves_the_member_as_it_was():
    idx = batches(MEMBERS, 2)
    net = fused(MEMBERS)
    fused_step(net, idx[0])  # Adam's group is at step 1
    before = net.member_state(1)
    fresh = Unfused([MEMBERS[1]])
    with pytest.raises(ValueError, match="member 1's optimizer has no state, its group's has"):
        net.load_member_state(1, fresh.modules[0].state_dict(), fresh.optimizers[0].state_dict())
    fresh.train_step(idx[0][[1]])
    fresh.train_step(idx[1][[1]])
    with pytest.raises(ValueError, match=r"member 1's optimizer step is 2.0, its group's 1.0"):
        net.load_member_state(1, fresh.modules[0].state_dict(), fresh.optimizers[0].state_dict())
    after = net.member_state(1)
    assert all(torch.equal(after[0][n], p) for n, p in before[0].items())


def same_rows(got, want) -> bool:
    """Statistics rows equal value for value, NaN (a statistic that does not apply) equal to NaN."""
    return [(layer, kind, [repr(v) for v in values]) for layer, kind, values in got] == \
        [(layer, kind, [repr(v) for v in values]) for layer, kind, values in want]


def assert_is_its_trial(net: FusedNet, k: int, ref: Unfused, j: int) -> None:
    """Member k of net and trial j of ref hold exactly the same weights and optimizer state."""
    model, optimizer = net.member_state(k)
    want_model, want_optimizer = ref.modules[j].state_dict(), ref.optimizers[j].state_dict()
    assert all(torch.equal(model[name], p) for name, p in want_model.items())
    assert all(torch.equal(optimizer["state"][i][key], value)
               for i, entry in want_optimizer["state"].items() for key, value in entry.items())


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("member", [MEMBERS[1], MEMBERS[5]], ids=["sigmoid-adam", "relu-sgd-momentum"])
def test_a_one_member_bundle_is_exactly_its_trial(model, member):
    """A bundle of one runs the net's own module on views of its leaves: the trial's operations, so its
    losses, statistics, weights and optimizer state are bit-identical to the unfused trial's."""
    net, ref = fused([member], model), Unfused([member], model)
    for step, idx in enumerate(batches([member], 2 * FIRST_STEPS)):
        snapshot = step % FIRST_STEPS == 0
        got, snaps = fused_step(net, idx, [member] if snapshot else None)
        want, ref_snaps = ref.train_step(idx, snapshot)
        assert torch.equal(got, want)
        assert same_rows(snaps[0], ref_snaps[0]) if snapshot else snaps == ref_snaps == []
    assert_is_its_trial(net, 0, ref, 0)


def test_a_bundle_left_with_one_member_goes_on_exactly_as_its_trial():
    """After the others leave, the last member (not the activation the bundle was built with first) trains
    as its unfused trial would from the same state, step for step."""
    members = [MEMBERS[0], MEMBERS[3]]  # sigmoid + SGD, tanh + Adam
    idx = batches(members, 2 * FIRST_STEPS)
    net = fused(members)
    for step in idx[:FIRST_STEPS]:
        fused_step(net, step)
    ref = Unfused([members[1]])
    ref.modules[0].load_state_dict(net.member_state(1)[0])
    ref.optimizers[0].load_state_dict(net.member_state(1)[1])
    net.drop([0])
    for step in idx[FIRST_STEPS:]:
        got, _ = fused_step(net, step[[1]])
        want, _ = ref.train_step(step[[1]])
        assert torch.equal(got, want)
    assert_is_its_trial(net, 0, ref, 0)
