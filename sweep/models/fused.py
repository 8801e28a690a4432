"""Fused training: K members of one network trained as one stacked model.

Horizontal fusion (HFTA, Wang et al., MLSys 2021). The members share the
network's shape and differ in activation, initial weights and optimizer
setting; each is still exactly its own unfused training:

- Parameters carry a leading member axis. Members with the same optimizer
  setting share stacked leaf tensors and one stock torch.optim optimizer,
  built by models.registry.make_optimizer with exactly that setting. SGD,
  Adam, AdamW and RMSprop act elementwise (their one scalar, Adam's step, is
  the same for every member of a group), so a stacked leaf updates exactly as
  the members' separate tensors would.
- The forward concatenates the groups' leaves in member order and runs the
  net's own forward (models/nets.py) on a twin in which every conv is one
  grouped conv (groups=K), every linear layer one batched matmul, and the
  activation applies each member's own activation module to its members'
  slice (consecutive members with equal activations form one run).
- Inside the twin a conv layer's output keeps the members folded into its
  channels, (B, K*C, H, W), so the nets' max_pool2d and flatten(1) act on each
  member unchanged; a linear layer's output is member-major, (K, B, F).
- The loss is the sum of the members' mean losses: each member's gradient is
  then exactly its unfused one (the mean over members would scale it by 1/K).
- A bundle of one (every CPU trial, where fusion is off) runs the net's own
  module on views of its stacked leaves, with its own loss: the unfused
  trial's operations, bit for bit its numbers.
- The members share their modules' choice of kernels (models/kernels.py):
  the twin's grouped conv1 and its poolings take it, so on the CPU a member
  gets exactly its unfused trial's conv1 from the compiled kernel.

This layout beat torch.func.vmap(functional_call) run once per activation run
on CPU time, and it launches fewer operations (what counts on a launch-bound
GPU): docs/benchmarks.md, "CPU trials: channels-last, fused optimizer steps,
pooling first, compiled kernels", candidates left alone.
"""
from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sweep.models.kernels import TORCH, conv2d
from sweep.models.nets import memory_format, to_layout, weight_layers
from sweep.models.registry import make_optimizer
from sweep.models.stats import snapshot_rows, snapshot_table

# Test-set examples per forward in FusedNet.evaluate (as in the unfused evaluation).
EVAL_BATCH = 1000

# Optimizers whose fused CPU kernel (one pass over all parameters instead of a dozen operations per
# parameter) the CPU uses: far faster for Adam and AdamW, no slower for SGD (bench/bench_layout.py
# --optimizers; docs/benchmarks.md, "CPU trials: channels-last, fused optimizer steps, pooling first,
# compiled kernels", item 2). Same update, its float rounding may differ.
FUSED_ON_CPU = frozenset({"sgd", "adam", "adamw"})


def step_options(name: str, device: str | torch.device) -> dict[str, bool]:
    """How optimizer `name` computes its step on `device`, as torch.optim options: {"fused": True} on the CPU
    where torch has a fused kernel, else torch's own choice ({}). A trial, a bundle and the tests that hold
    one to the other all build their optimizers with these."""
    return {"fused": True} if torch.device(device).type == "cpu" and name in FUSED_ON_CPU else {}


def _kernel_choices(module: nn.Module) -> dict[str, str]:
    """The kernels' choice (models/kernels.py) of each submodule of `module` that carries one, by name."""
    return {name: m.kernels for name, m in module.named_modules() if isinstance(getattr(m, "kernels", None), str)}


def _member_dim(t: torch.Tensor) -> int:
    """Axis holding the members: 0 after a linear layer (K, B, F), 1 (folded into channels) after a conv."""
    return 0 if t.dim() == 3 else 1


def _member_major(t: torch.Tensor, k: int) -> torch.Tensor:
    """A twin's activation as (K, B, ...): a view, no copy."""
    return t if _member_dim(t) == 0 else t.unflatten(1, (k, -1)).transpose(0, 1)


class _MemberConv2d(nn.Module):
    """K convolutions as one grouped convolution; weight (K, O, C, kh, kw) is bound before each forward. It
    runs on the members' kernels (their conv's `kernels`; torch's for a plain nn.Conv2d)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.groups != 1 or conv.padding_mode != "zeros":
            raise NotImplementedError(f"fused conv needs groups=1 and zero padding, got {conv}")
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.kernels = getattr(conv, "kernels", TORCH)
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.weight.shape[0]
        bias = None if self.bias is None else self.bias.flatten()
        return conv2d(x, self.weight.flatten(0, 1), bias, self.stride, self.padding, self.dilation, groups=k,
                      kernels=self.kernels)


class _MemberLinear(nn.Module):
    """K linear layers as one batched matmul; weight (K, O, I) is bound before each forward."""

    def __init__(self):
        super().__init__()
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _member_dim(x) == 1:  # flattened conv features (B, K*I)
            x = x.unflatten(1, (self.weight.shape[0], -1)).transpose(0, 1)
        if self.bias is None:
            return torch.bmm(x, self.weight.transpose(1, 2))
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


class _MemberActivation(nn.Module):
    """Each run of consecutive members with equal activations gets that activation."""

    def __init__(self, activations: Sequence[nn.Module]):
        super().__init__()
        self.set_members(activations)

    def set_members(self, activations: Sequence[nn.Module]) -> None:
        self.size = len(activations)
        runs: list[list] = []  # [activation module, member count]
        for act in activations:
            if runs and repr(runs[-1][0]) == repr(act):
                runs[-1][1] += 1
            else:
                runs.append([act, 1])
        self.runs = [(act, count) for act, count in runs]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.runs) == 1:
            return self.runs[0][0](x)
        dim = _member_dim(x)
        width = x.shape[dim] // self.size
        # split, not narrow: split's backward is one cat, narrow's a zero-filled
        # full-size tensor per run (docs/benchmarks.md, "CPU trials: channels-last, fused optimizer
        # steps, pooling first, compiled kernels", candidates left alone).
        parts = x.split([count * width for _, count in self.runs], dim)
        return torch.cat([act(part) for (act, _), part in zip(self.runs, parts)], dim)


class _Group:
    """Members with one optimizer setting: their stacked leaves and the optimizer over them."""

    def __init__(self, setting: tuple[str, Mapping], members: list[int], leaves: list[torch.Tensor],
                 capturable: bool = False):
        self.setting = setting
        self.members = members  # positions in the bundle, ascending
        self.leaves = leaves  # one (len(members), ...) tensor per parameter, in parameter order
        self.capturable = capturable
        name, hyper = setting
        # A step captured in a CUDA graph keeps its capturable optimizer as it is.
        how = {} if capturable else step_options(name, leaves[0].device)
        self.optimizer = make_optimizer(name, leaves, {**hyper, **how}, capturable=capturable)

    def per_member(self, i: int, value) -> bool:
        """Whether optimizer state `value` of parameter i has one slice per member (else it is
        shared by the group, like Adam's step)."""
        return isinstance(value, torch.Tensor) and value.shape == self.leaves[i].shape


def _setting_key(name: str, hyper: Mapping) -> tuple:
    return name, tuple(sorted(hyper.items()))


class FusedNet:
    """K networks of one shape (models/nets.py) with their optimizers, trained as one.

    `modules` are the members' built and initialised networks (their weights
    are copied, the modules themselves are not used again); `optimizers` holds
    each member's (name, hyper-parameters) in the spec's form, as
    models.registry.make_optimizer takes them. Member k is modules[k]
    everywhere: inputs, outputs, member_state, drop.

        net = FusedNet(modules, [("sgd", {"lr": 0.01}), ("adam", {"lr": 1e-3})], "cpu")
        logits, acts = net.forward(x)          # x: (K, B, 1, 28, 28)
        losses = net.member_losses(logits, y)  # y: (K, B)
        net.zero_grad(); losses.sum().backward(); net.step()
    """

    def __init__(self, modules: Sequence[nn.Module], optimizers: Sequence[tuple[str, Mapping]],
                 device: str | torch.device = "cpu", capturable: bool = False,
                 layout: torch.memory_format | None = None):
        if not modules or len(modules) != len(optimizers):
            raise ValueError(f"need one optimizer setting per member: {len(modules)} modules, "
                             f"{len(optimizers)} settings")
        template = modules[0]
        shape = [(name, p.shape) for name, p in template.named_parameters()]
        for k, module in enumerate(modules):
            if type(module) is not type(template) or [(n, p.shape) for n, p in module.named_parameters()] != shape:
                raise ValueError(f"member {k}'s network differs in shape from member 0's")
            if _kernel_choices(module) != _kernel_choices(template):
                raise ValueError(f"member {k}'s network trains on other kernels than member 0's "
                                 f"({_kernel_choices(module)} against {_kernel_choices(template)}): "
                                 "a bundle's members share one choice")
        # A network of the user's or torchvision's (models.network.Network) trains alone: fusing it would need
        # torch.func and a test that shows it exact, and BatchNorm's running statistics would not stack.
        self._solo = not getattr(template, "fuses", True)
        if len(modules) > 1 and self._solo:
            raise NotImplementedError(f"{template.label} trains alone: sweep fuses only its own networks")
        if len(modules) > 1 and next(template.buffers(), None) is not None:
            raise NotImplementedError("fused networks with buffers (e.g. batch norm) are not supported")
        self._names = [name for name, _ in shape]
        # The batches' memory layout: the net's measured one for the device (models/nets.py), unless given.
        self.layout = memory_format(template, device) if layout is None else layout
        # Layer name (as the nets' activations and weight_layers call it) -> weight parameter name.
        by_id = {id(p): name for name, p in template.named_parameters()}
        self._weight_names = {layer: by_id[id(w)] for layer, w in weight_layers(template).items()}
        self._activations = [getattr(module, "act", None) for module in modules]
        self._twin = None if self._solo else self._make_twin(template)
        self._plain = self._make_plain(template).to(device)  # its buffers (BatchNorm's statistics) on the device
        # Its buffers' names: a member's state has them beside its parameters (a bundle of one only).
        self._buffer_names = list(self._plain.state_dict())
        self._set_plain_activation()

        groups: dict[tuple, list[int]] = {}
        for k, (name, hyper) in enumerate(optimizers):
            groups.setdefault(_setting_key(name, hyper), []).append(k)
        params = [dict(module.named_parameters()) for module in modules]
        self._groups = []
        for members in groups.values():
            leaves = [torch.stack([params[k][name].detach() for k in members]).to(device).requires_grad_()
                      for name in self._names]
            name, hyper = optimizers[members[0]]
            self._groups.append(_Group((name, dict(hyper)), members, leaves, capturable))
        self._reorder()

    # --- structure -----------------------------------------------------------------

    def _make_twin(self, template: nn.Module) -> nn.Module:
        if not hasattr(template, "act"):
            raise NotImplementedError("fused networks keep their activation in `act`, as models/nets.py does")
        twin = copy.deepcopy(template)
        for name, module in list(twin.named_modules()):
            if isinstance(module, nn.Conv2d):
                member = _MemberConv2d(module)
            elif isinstance(module, nn.Linear):
                member = _MemberLinear()
            else:
                if next(module.parameters(recurse=False), None) is not None:
                    raise NotImplementedError(f"fused networks have only conv and linear layers, got {module}")
                continue
            parent, _, child = name.rpartition(".")
            setattr(twin.get_submodule(parent), child, member)
        twin.act = _MemberActivation(self._activations)
        self._twin_slots = self._slots(twin)
        return twin

    def _make_plain(self, template: nn.Module) -> nn.Module:
        """The net's own module for a bundle of one, its parameters taken out: forward binds views of the
        stacked leaves, so a one-member bundle computes exactly what its unfused trial computes, with the
        same operations, and faster than through the twin (bench/bench_train.py --loops trial bare;
        docs/benchmarks.md, "The test suite")."""
        plain = copy.deepcopy(template)
        for module in plain.modules():
            for kind, param in list(module._parameters.items()):
                if param is not None:  # a layer without bias keeps its None
                    del module._parameters[kind]
        self._plain_slots = self._slots(plain)
        return plain

    def _slots(self, net: nn.Module) -> list[tuple[nn.Module, str]]:
        """(module, attribute) that takes each parameter, in parameter order."""
        slots = []
        for name in self._names:
            layer, _, kind = name.rpartition(".")
            slots.append((net.get_submodule(layer), kind))
        return slots

    def _set_plain_activation(self) -> None:
        if len(self._activations) == 1 and self._activations[0] is not None:
            self._plain.act = self._activations[0]

    def _reorder(self) -> None:
        """Index that puts the groups' concatenated leaves in member order (None: already in order)."""
        order = [k for group in self._groups for k in group.members]
        self._order = None
        if order != sorted(order):
            device = self._groups[0].leaves[0].device
            self._order = torch.tensor(order, device=device).argsort()

    def __len__(self) -> int:
        return len(self._activations)

    def _stack(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """One tensor per group -> the (K, ...) tensor in member order."""
        out = tensors[0] if len(tensors) == 1 else torch.cat(tensors)
        return out if self._order is None else out.index_select(0, self._order)

    def _locate(self, k: int) -> tuple[_Group, int]:
        if not 0 <= k < len(self):
            raise IndexError(f"member {k} out of range for a bundle of {len(self)}")
        for group in self._groups:
            if k in group.members:
                return group, group.members.index(k)
        raise AssertionError("every member is in a group")

    # --- training ------------------------------------------------------------------

    def forward(self, x: torch.Tensor, record: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits (K, B, classes) and activations {layer: (K, B, ...)} of x (K, B, ...): member k sees x[k].

        The activations are views into the forward's tensors: the same names
        and, member by member, the same values as the unfused nets' own.
        `record` goes to the net's forward (False: a step without statistics,
        which may leave layers out; models/nets.py).
        """
        k, b = x.shape[:2]
        if k != len(self):
            raise ValueError(f"input has {k} members, the bundle {len(self)}")
        if k == 1:  # the net's own module on views of the leaves: exactly the unfused trial's operations
            for (module, kind), leaf in zip(self._plain_slots, self._groups[0].leaves):
                # Straight into the instance's attributes: nn.Module.__setattr__ costs more than the view.
                module.__dict__[kind] = leaf.view(leaf.shape[1:])
            logits, acts = self._plain(to_layout(x[0], self.layout), record)
            return logits.unsqueeze(0), {layer: a.unsqueeze(0) for layer, a in acts.items()}
        for i, (module, kind) in enumerate(self._twin_slots):
            module.__dict__[kind] = self._stack([g.leaves[i] for g in self._groups])
        # (K, B, C, ...) -> (B, K*C, ...): members folded into channels.
        if self.layout == torch.channels_last and x.dim() == 5:  # one copy, straight into (B, H, W, K*C)
            # (reshape alone would give a view where it can: with one channel, the members' memory order)
            folded = x.permute(1, 3, 4, 0, 2).contiguous().view(b, *x.shape[3:], -1).permute(0, 3, 1, 2)
        else:
            folded = x.transpose(0, 1).reshape(b, -1, *x.shape[3:])
        logits, acts = self._twin(folded, record)
        return logits, {layer: _member_major(a, k) for layer, a in acts.items()}

    __call__ = forward

    @staticmethod
    def member_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each member's mean cross-entropy, shape (K,). Train on their sum, never their mean."""
        k, b = y.shape
        if k == 1:  # as the unfused trial computes it
            return F.cross_entropy(logits[0], y[0]).unsqueeze(0)
        return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(k, b).mean(1)

    def train_step(self, x: torch.Tensor, y: torch.Tensor,
                   record: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward, the members' losses and backward for a batch x (K, B, ...), y (K, B); then `step()`.

        The one training step, eager or replayed from a CUDA graph (models/graph.py): no value is read
        on the host, no branch depends on one, and every shape follows from x's. Returns the members'
        losses (K,), detached and on the device, and the activations for a statistics snapshot (record=False:
        a step that takes none; forward's `record`).
        """
        logits, acts = self.forward(x, record)
        losses = self.member_losses(logits, y)
        self.zero_grad()
        losses.sum().backward()
        return losses.detach(), acts

    def zero_grad(self) -> None:
        """Clear every member's gradients (set to None, as the unfused trial does)."""
        for group in self._groups:
            group.optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        """One optimizer step for every member."""
        for group in self._groups:
            group.optimizer.step()

    def weight_grads(self) -> dict[str, torch.Tensor]:
        """Weight gradients {layer: (K, ...)} as backward left them (layers without one are left out)."""
        out = {}
        for layer, name in self._weight_names.items():
            i = self._names.index(name)
            grads = [g.leaves[i].grad for g in self._groups]
            if all(grad is not None for grad in grads):
                out[layer] = self._stack(grads)
        return out

    def snapshots(self, acts: dict[str, torch.Tensor],
                  bounds: Sequence[tuple[float, float] | None]) -> list[list[tuple[str, str, list[float]]]]:
        """models.stats.snapshot_stats of every member: its activations in `acts` (from forward), its
        current weight gradients and its activation's bounds[k]. Member k's rows have the same order,
        names and values as its unfused trial's."""
        grads = self.weight_grads()
        # snapshot_table reads `.grad` off the weights it is given. Every member has the same rows: their
        # tables travel to the host as one (K, rows, stats) copy, not one per member.
        tables = [
            snapshot_table({layer: a[k] for layer, a in acts.items()},
                           {layer: SimpleNamespace(grad=grad[k]) for layer, grad in grads.items()}, bounds[k])
            for k in range(len(self))
        ]
        keys = tables[0][0]
        if tables[0][1] is None:
            return [[] for _ in tables]
        values = torch.stack([table for _, table in tables]).cpu().tolist()
        return [snapshot_rows(keys, member) for member in values]

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, chunk: int = EVAL_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's mean cross-entropy and accuracy on one set (x, y), as two (K,) tensors.

        Left on the device: one host copy for the whole bundle when the caller reads them.
        """
        k = len(self)
        loss = torch.zeros(k, device=x.device)
        correct = torch.zeros(k, device=x.device)
        nets = [net for net in (self._plain, self._twin) if net is not None]
        for net in nets:  # BatchNorm on its running statistics, no Dropout
            net.eval()
        try:
            for start in range(0, len(x), chunk):
                xb, yb = x[start:start + chunk], y[start:start + chunk]
                logits, _ = self.forward(xb.expand(k, *xb.shape), record=False)
                loss += F.cross_entropy(logits.flatten(0, 1), yb.repeat(k), reduction="none").view(k, -1).sum(1)
                correct += (logits.argmax(2) == yb).sum(1)
        finally:
            for net in nets:
                net.train()
        return loss / len(x), correct / len(x)

    # --- members in the unfused format ---------------------------------------------

    def member_state(self, k: int) -> tuple[dict[str, torch.Tensor], dict]:
        """Member k as (module.state_dict(), optimizer.state_dict()) of its unfused trial, on the CPU.

        Same keys, same parameter indices, same hyper-parameters: an unfused
        trial loads them with load_state_dict and goes on as this member would.
        """
        group, j = self._locate(k)
        model = {name: leaf[j].detach().cpu().clone() for name, leaf in zip(self._names, group.leaves)}
        model.update({name: b.detach().cpu().clone() for name, b in self._plain.state_dict().items()})
        full = group.optimizer.state_dict()
        state = {
            i: {key: (value[j] if group.per_member(i, value) else value).detach().cpu().clone()
                if isinstance(value, torch.Tensor) else copy.deepcopy(value)
                for key, value in entry.items()}
            for i, entry in full["state"].items()
        }
        return model, {"state": state, "param_groups": copy.deepcopy(full["param_groups"])}

    def load_member_state(self, k: int, model_state: Mapping[str, torch.Tensor], optimizer_state: Mapping) -> None:
        """Set member k from its unfused trial's (module.state_dict(), optimizer.state_dict()).

        The members of one optimizer group share its scalar state (Adam's
        step): load every member of a group from the same step, or none.
        """
        group, j = self._locate(k)
        if set(model_state) != {*self._names, *self._buffer_names}:
            raise ValueError(f"member {k}'s model state has keys {sorted(model_state)}, expected "
                             f"{[*self._names, *self._buffer_names]}")
        for name, leaf in zip(self._names, group.leaves):
            if model_state[name].shape != leaf.shape[1:]:
                raise ValueError(f"member {k}'s {name} has shape {tuple(model_state[name].shape)}, "
                                 f"expected {tuple(leaf.shape[1:])}")
        full = group.optimizer.state_dict()
        self._check_hyper(k, full["param_groups"], optimizer_state["param_groups"])
        state = {i: dict(entry) for i, entry in full["state"].items()}
        for i, entry in optimizer_state["state"].items():
            i = int(i)
            mine = state.setdefault(i, {})
            if full["state"] and set(entry) != set(mine):
                raise ValueError(f"member {k}'s optimizer state has {sorted(entry)}, its group's {sorted(mine)}: "
                                 "members of one optimizer setting must be at the same step")
            for key, value in entry.items():
                if isinstance(value, torch.Tensor) and value.shape == group.leaves[i].shape[1:]:
                    stacked = mine.get(key)
                    stacked = torch.zeros_like(group.leaves[i]) if stacked is None else stacked.clone()
                    stacked[j] = value
                    mine[key] = stacked
                elif key in mine and not _same(mine[key], value):
                    raise ValueError(f"member {k}'s optimizer {key} is {value}, its group's {mine[key]}: "
                                     "members of one optimizer setting must be at the same step")
                else:
                    # A copy: the optimizer updates some of these in place (Adam's step).
                    mine[key] = value.clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)
        if full["state"] and not optimizer_state["state"]:
            raise ValueError(f"member {k}'s optimizer has no state, its group's has: "
                             "members of one optimizer setting must be at the same step")
        # Checked everything first: a refused state leaves the member as it was.
        with torch.no_grad():
            for name, leaf in zip(self._names, group.leaves):
                leaf[j].copy_(model_state[name])
            buffers = self._plain.state_dict()
            for name in self._buffer_names:
                buffers[name].copy_(model_state[name])
        group.optimizer.load_state_dict({"state": state, "param_groups": full["param_groups"]})

    def _check_hyper(self, k: int, mine: list[dict], theirs: list[dict]) -> None:
        if len(theirs) != len(mine):
            raise ValueError(f"member {k}'s optimizer state has {len(theirs)} parameter groups, expected {len(mine)}")
        for a, b in zip(mine, theirs):
            differ = {key for key in a.keys() & b.keys() if key not in _HOW and a[key] != b[key]}
            if differ or len(a["params"]) != len(b["params"]):
                raise ValueError(f"member {k}'s optimizer state is for another setting: "
                                 + ", ".join(f"{key}={b[key]} (bundle: {a[key]})" for key in sorted(differ)))

    def drop(self, members: Sequence[int]) -> None:
        """Remove `members` (e.g. one whose loss became NaN); the others keep their parameters and
        optimizer state and go on exactly as before. The remaining members are renumbered in order."""
        gone = set(members)
        for k in gone:
            self._locate(k)
        if len(gone) == len(self):
            raise ValueError("cannot drop every member of a bundle")
        keep = [k for k in range(len(self)) if k not in gone]
        renumber = {old: new for new, old in enumerate(keep)}
        groups = []
        for group in self._groups:
            rows = [j for j, k in enumerate(group.members) if k not in gone]
            if not rows:
                continue
            index = torch.tensor(rows, device=group.leaves[0].device)
            full = group.optimizer.state_dict()
            for i, entry in full["state"].items():
                for key, value in entry.items():
                    if group.per_member(i, value):
                        entry[key] = value.index_select(0, index)
            leaves = [leaf.detach().index_select(0, index).requires_grad_() for leaf in group.leaves]
            kept = _Group(group.setting, [renumber[group.members[j]] for j in rows], leaves, group.capturable)
            kept.optimizer.load_state_dict(full)
            groups.append(kept)
        self._groups = groups
        self._activations = [self._activations[k] for k in keep]
        if self._twin is not None:
            self._twin.act.set_members(self._activations)
        self._set_plain_activation()
        self._reorder()


# Optimizer options that say how a step is computed, not what it computes: a member saved from a CUDA graph's
# capturable optimizer continues on the CPU and the other way round (the group's own options are kept).
_HOW = frozenset({"params", "capturable", "foreach", "fused", "differentiable"})


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return torch.equal(torch.as_tensor(a).cpu(), torch.as_tensor(b).cpu())
    return a == b
