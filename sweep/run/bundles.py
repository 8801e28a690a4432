"""Which trials train together and in which order: the size of fused bundles (GPU memory, GPUs), the
bundles themselves, and the order an ASHA sweep's trials start in."""
from __future__ import annotations

import math

from sweep.spec.grid import TrialConfig

# Most members per fused bundle on one GPU: a LeNet bundle's throughput grows little beyond 128 members
# on an H100, and a sweep split into fewer, larger bundles leaves GPUs idle (docs/benchmarks.md,
# "The test suite").
FUSE_GPU_MAX = 128
# Share of a GPU's free memory fused bundles may plan for.
FUSE_MEMORY_SHARE = 0.5


def bundle_size(fuse: int | str, todo: int, gpus: float, free_gpu_bytes: int | None = None,
                member_bytes: int | None = None) -> int:
    """How many configurations train together in one fused bundle (1: unfused).

    `auto` fuses on GPUs only: it splits the sweep evenly over the GPUs (every
    GPU gets work), at most FUSE_GPU_MAX members per bundle, and no more than
    FUSE_MEMORY_SHARE of a GPU's free memory holds at `member_bytes` each.
    """
    if fuse == "off" or todo == 0:
        return 1
    if fuse != "auto":
        return int(fuse)
    if gpus < 1:
        return 1
    size = min(math.ceil(todo / int(gpus)), FUSE_GPU_MAX)
    if free_gpu_bytes and member_bytes:
        size = min(size, max(1, int(free_gpu_bytes * FUSE_MEMORY_SHARE) // member_bytes))
    return size


def start_order(trials: list[TrialConfig]) -> list[TrialConfig]:
    """The order an ASHA sweep's trials start in: by config hash, a fixed shuffle of the grid (the same for
    a spec wherever and under whatever name it runs; a trial added later takes its place without moving
    the others), so that no activation, init, optimizer or seed systematically reaches a rung last, against
    a bar its predecessors raised. Trials reaching a rung together are judged in this order too."""
    return sorted(trials, key=lambda t: t.config_hash)


def plan_bundles(todo: list[TrialConfig], size: int) -> list[list[TrialConfig]]:
    """`todo` in bundles of at most `size` members, as even as possible.

    Members are ordered by activation, then optimizer setting, so that within
    a bundle each activation and each optimizer covers a contiguous run.
    """
    if size <= 1:
        return [[t] for t in todo]
    ordered = sorted(todo, key=lambda t: (t.activation, t.optimizer, t.lr, t.optimizer_params, t.init, t.gain, t.seed))
    count = math.ceil(len(ordered) / size)
    cuts = [round(i * len(ordered) / count) for i in range(count + 1)]
    return [ordered[a:b] for a, b in zip(cuts[:-1], cuts[1:])]


def member_bytes(trial: TrialConfig, input_shape: tuple[int, ...] = (1, 28, 28), classes: int = 10) -> int:
    """GPU memory one fused member needs, from its network's measured sizes: weights, gradients and up to
    four optimizer/stacking copies of them, plus every layer output of a batch kept for backward (x3)."""
    import torch

    from sweep.models.nets import build_model

    model = build_model(trial.model, trial.activation, trial.hidden, input_shape=input_shape, classes=classes)
    sizes: list[int] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: sizes.append(out.numel()))
             for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for h in hooks:
        h.remove()
    params = sum(p.numel() for p in model.parameters())
    return 4 * (6 * params + 3 * trial.batch_size * sum(sizes))


def free_gpu_bytes() -> int | None:
    """Free memory of this machine's first GPU (None without one, e.g. a driver off the cluster's GPUs)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.mem_get_info()[0]
