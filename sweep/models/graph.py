"""A bundle's plain training step, replayed from a CUDA graph where one can be captured.

On a GPU the fused step is launch-bound: a LeNet bundle's step dispatches about
385 small operations whatever its size, so Python and kernel launches, not
arithmetic, set its speed. Captured once as a CUDA graph (gather the batch by
index from the resident data into static buffers, FusedNet.train_step, the
optimizers' step), it is replayed as one launch.

`StepRunner.step` runs the steps that take no statistics snapshot on a full
batch; the trial loop runs every other step (statistics, a short last batch)
eagerly with the same FusedNet.train_step and step, so graph and eager run the
same code. Where capture is off or impossible (the CPU, SWEEP_CUDA_GRAPHS
unset, a failure on some card or torch version) every step runs eagerly and
`reason` says why, once, in the trial's log: never a crash, never a silent
difference.

Capture is opt-in (SWEEP_CUDA_GRAPHS=1) until the GPU check (bench/gpu/gpu_check.sh)
has compared graph and eager steps on a card: no GPU has run this code yet.
"""
from __future__ import annotations

import logging
import os

import torch

from sweep.models.fused import FusedNet

GRAPHS_ENV = "SWEEP_CUDA_GRAPHS"
# Eager steps before a capture (and after a member leaves): the optimizers' state (Adam's moments and
# step, SGD's momentum buffers) must exist before capture, and CUDA's libraries warm up their workspaces.
WARMUP_STEPS = 3

log = logging.getLogger("sweep.run.trial")


def why_no_graphs(device: torch.device) -> str | None:
    """Why a step is not captured as a CUDA graph on `device`, in one line; None where it may be."""
    if device.type != "cuda":
        return f"CUDA graphs off: the bundle trains on {device.type}"
    if os.environ.get(GRAPHS_ENV, "0") != "1":
        return f"CUDA graphs off: {GRAPHS_ENV}=1 turns them on"
    return None


def gather(data: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """data[idx] for batch indices idx (K, B): one index_select of whole rows, the same values as aten::index's
    advanced indexing and faster on the CPU (docs/benchmarks.md, "What changed, and the measurement behind
    each decision")."""
    return data.index_select(0, idx.reshape(-1)).view(*idx.shape, *data.shape[1:])


class StepRunner:
    """A FusedNet's plain steps (no statistics) on full batches: captured once, then replayed."""

    def __init__(self, net: FusedNet, train_x: torch.Tensor, train_y: torch.Tensor, name: str):
        self.net, self.train_x, self.train_y, self.name = net, train_x, train_y, name
        self.reason = why_no_graphs(train_x.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.eager_before_capture = WARMUP_STEPS
        self.logged = False
        if self.reason is not None:
            self._log()

    def _log(self) -> None:
        if not self.logged:
            log.info("%s: %s", self.name, self.reason)
            self.logged = True

    def reset(self, net: FusedNet) -> None:
        """After members left (net.drop): the captured graph holds the old tensors; capture again."""
        self.net, self.graph = net, None
        self.eager_before_capture = WARMUP_STEPS

    def forward_backward(self, idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The step before the optimizer's, eagerly (a statistics step calls net.step() itself)."""
        return self.net.train_step(gather(self.train_x, idx), gather(self.train_y, idx))

    def step(self, idx: torch.Tensor) -> torch.Tensor:
        """One whole step (train_step, then the optimizers' step) on batch indices idx (K, B); the losses (K,)."""
        if self.reason is None and self.graph is None and self.eager_before_capture <= 0:
            self._capture(idx)
        if self.graph is not None:
            self.static_idx.copy_(idx)
            self.graph.replay()
            return self.static_losses.clone()
        self.eager_before_capture -= 1
        losses, _ = self.net.train_step(gather(self.train_x, idx), gather(self.train_y, idx), record=False)
        self.net.step()
        return losses

    def _capture(self, idx: torch.Tensor) -> None:
        """Record one step into a graph; nothing runs while it records, so a failed capture changes nothing."""
        try:
            torch.cuda.synchronize()
            self.static_idx = idx.clone()
            graph = torch.cuda.CUDAGraph()
            self.net.zero_grad()  # backward allocates the gradients in the graph's own memory pool
            with torch.cuda.graph(graph):
                losses, _ = self.net.train_step(gather(self.train_x, self.static_idx),
                                                gather(self.train_y, self.static_idx), record=False)
                self.net.step()
                self.static_losses = losses
            self.graph = graph
        except Exception as exc:  # noqa: BLE001: any failure to capture means eager steps, said once
            self.graph = None
            self.reason = f"CUDA graphs off: capture failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            self._log()
