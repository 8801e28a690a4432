"""One trial: train a configuration, log to TensorBoard, report each epoch.

`run_trial` knows nothing of Ray: it takes the data arrays and a `report`
function, so tests and the benchmark call it directly; `ray_trainable` wraps
it for Ray Tune. The x axis everywhere is training images seen.

A trial checkpoints after every epoch into its own folder (model, optimizer,
RNG states, images seen) and continues from there when it starts again.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from models.nets import build_model, weight_layers
from models.registry import ACTIVATIONS, init_weights, make_optimizer
from models.stats import STAT_NAMES, snapshot_stats
from sweep.data import Arrays
from sweep.grid import TrialConfig
from sweep.hold import hold, holds_for
from sweep.hparams import write_session_end, write_session_start

CHECKPOINT = "checkpoint.pt"
EVAL_BATCH = 1000
# Reports kept in the checkpoint and sent again on resume: a trial can be
# killed after saving an epoch but before the driver stored its report (or the
# driver itself can die); the driver's upserts make the replay harmless.
REPLAY_EPOCHS = 5


def _tensor(array, device: torch.device) -> torch.Tensor:
    # Arrays from Ray's object store are read-only shared memory; we never
    # write to them, so skip the copy torch would otherwise want.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array).to(device)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a whole set, one host sync at the end."""
    model.eval()
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for start in range(0, len(x), EVAL_BATCH):
        logits, _ = model(x[start:start + EVAL_BATCH])
        target = y[start:start + EVAL_BATCH]
        loss += F.cross_entropy(logits, target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    model.train()
    total_loss, total_correct = torch.stack([loss, correct]).tolist()
    return total_loss / len(x), total_correct / len(x)


def _save(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a crash never leaves half a checkpoint


def _forget_earlier_attempts(logdir: Path) -> None:
    """Delete the event files of attempts that left no checkpoint.

    A trial starting from scratch recomputes everything; the points an earlier
    attempt wrote (a step-0 evaluation, the first statistics) would otherwise
    show twice in TensorBoard, since purge_step needs a checkpointed step.
    """
    for events in logdir.glob("events.out.tfevents.*"):
        events.unlink()


def _stats_rows(epoch: int, step: int, snapshot, bounded: bool) -> list[dict[str, Any]]:
    """Database rows of one snapshot. A statistic that does not apply (dead_frac
    of a gradient, sat_frac of an unbounded activation) is None, so that a NaN
    left in a row is a real NaN of a diverging network."""
    rows = []
    for layer, kind, values in snapshot:
        row = {"epoch": epoch, "step": step, "layer": layer, "kind": kind, **dict(zip(STAT_NAMES, values))}
        if kind == "gradient":
            row["dead_frac"] = row["sat_frac"] = None
        elif not bounded:
            row["sat_frac"] = None
        rows.append(row)
    return rows


def run_trial(
    cfg: TrialConfig,
    data: Arrays,
    report: Callable[[dict[str, Any]], None],
    device: str | torch.device = "cpu",
    tensorboard: bool = True,
) -> None:
    """Train `cfg` on `data`, calling `report` once before training and after each epoch.

    Each report holds the epoch's metrics and the layer statistics of every
    snapshot (every `stats_every` batches) taken during that epoch.
    """
    device = torch.device(device)
    logdir = Path(cfg.logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    ckpt_path = logdir / CHECKPOINT
    replay: list[dict[str, Any]] = []

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.activation, cfg.hidden)
    init_weights(model, cfg.init, cfg.gain, cfg.activation)
    model.to(device)
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), cfg.hyper())
    order = torch.Generator().manual_seed(cfg.seed)  # batch order, independent of init
    weights = weight_layers(model)
    bounds = ACTIVATIONS[cfg.activation].bounds

    train_x, train_y = _tensor(data.train_x, device), _tensor(data.train_y, device)
    test_x, test_y = _tensor(data.test_x, device), _tensor(data.test_y, device)
    n = len(train_x)

    began = time.perf_counter()
    state = {"epoch": 0, "images_seen": 0, "train_seconds": 0.0, "run_seconds": 0.0,
             "best_test_acc": None, "best_epoch": None}
    if ckpt_path.exists():
        # On the CPU: RNG states must stay CPU tensors; load_state_dict moves
        # weights and optimizer state to the parameters' device.
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        order.set_state(ckpt["order_rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        state = ckpt["state"]
        replay = ckpt["replay"]
    run_seconds_before = state["run_seconds"]
    resumed_from = state["epoch"] or None

    holds = holds_for(cfg.name)
    writer = None
    if tensorboard:
        if state["epoch"] == 0:
            _forget_earlier_attempts(logdir)
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops points a killed run wrote after its last checkpoint,
        # so a resumed curve has no duplicated or overlapping points.
        writer = SummaryWriter(str(logdir), purge_step=state["images_seen"] + 1 if state["epoch"] else None)
        if state["epoch"] == 0:
            write_session_start(writer, cfg)

    def scalar(tag: str, value: float, step: int) -> None:
        # NaN means "does not apply" for the statistics; a diverged loss is
        # recorded in the database and the trial's status instead.
        if writer is not None and not math.isnan(value):
            writer.add_scalar(tag, value, step)

    def epoch_result(epoch: int, train_loss: float | None, wall: float, rows, status: str, reason=None):
        test_loss, test_acc = evaluate(model, test_x, test_y)
        step = state["images_seen"]
        scalar("loss/test", test_loss, step)
        scalar("accuracy/test", test_acc, step)
        if train_loss is not None:
            scalar("loss/train_epoch", train_loss, step)
        state["run_seconds"] = run_seconds_before + time.perf_counter() - began
        # A diverged epoch's numbers are stored as they are, but never become the best.
        if (status != "diverged" and math.isfinite(test_acc)
                and (state["best_test_acc"] is None or test_acc > state["best_test_acc"])):
            state["best_test_acc"], state["best_epoch"] = test_acc, epoch
        return {
            "epoch": epoch, "images_seen": step, "train_loss": train_loss, "test_loss": test_loss,
            "test_acc": test_acc, "epoch_seconds": wall, "train_seconds": state["train_seconds"],
            "run_seconds": state["run_seconds"],
            "best_test_acc": state["best_test_acc"], "best_epoch": state["best_epoch"],
            "layer_stats": rows, "status": status, "reason": reason, "config_hash": cfg.config_hash,
            "resumed_from": resumed_from,
        }

    try:
        if state["epoch"] == 0:
            report(epoch_result(0, None, 0.0, [], "running"))
        for past in replay:
            report({**past, "resumed_from": resumed_from})
        model.train()
        for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
            started = time.perf_counter()
            perm = torch.randperm(n, generator=order).to(device)
            epoch_loss = torch.zeros((), device=device)
            window_loss = torch.zeros((), device=device)
            window_batches = 0
            epoch_images = 0
            rows: list[dict[str, Any]] = []
            reason = None
            batches = math.ceil(n / cfg.batch_size)
            for batch, start in enumerate(range(0, n, cfg.batch_size), 1):
                idx = perm[start:start + cfg.batch_size]
                logits, acts = model(train_x[idx])
                loss = F.cross_entropy(logits, train_y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                state["images_seen"] += len(idx)
                epoch_images += len(idx)
                epoch_loss += loss.detach() * len(idx)
                window_loss += loss.detach()
                window_batches += 1
                # Every stats_every batches, and at the end of each epoch so that
                # every epoch has statistics however short it is.
                if batch % cfg.stats_every == 0 or batch == batches:
                    # Gradients as backward left them, before the step and the next clear.
                    snap = snapshot_stats(acts, weights, bounds)
                    step = state["images_seen"]
                    train_loss = (window_loss / window_batches).item()
                    window_loss.zero_()
                    window_batches = 0
                    scalar("loss/train", train_loss, step)
                    for layer, kind, values in snap:
                        for stat, value in zip(STAT_NAMES, values):
                            scalar(f"{kind}/{layer}/{stat}", value, step)
                    rows += _stats_rows(epoch, step, snap, bounds is not None)
                    if not math.isfinite(train_loss):
                        reason = f"train loss {train_loss} at epoch {epoch}, step {step}"
                        break
                optimizer.step()
                if holds:
                    hold(cfg.name, f"epoch{epoch}.batch{batch}", holds, before=writer.flush if writer else None)
            mean_loss = epoch_loss.item() / epoch_images
            if reason is None and not math.isfinite(mean_loss):
                reason = f"train loss {mean_loss} at epoch {epoch}"
            wall = time.perf_counter() - started
            state["train_seconds"] += wall
            state["epoch"] = epoch
            if reason is not None:
                result = epoch_result(epoch, mean_loss, wall, rows, "diverged", reason)
                if writer is not None:
                    write_session_end(writer, cfg, success=False)
                report(result)
                return
            result = epoch_result(epoch, mean_loss, wall, rows, "running")
            if writer is not None:
                writer.flush()
            replay = [*replay, result][-REPLAY_EPOCHS:]
            _save(ckpt_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "order_rng": order.get_state(), "torch_rng": torch.get_rng_state(), "state": dict(state),
                "replay": replay,
            })
            if writer is not None and epoch == cfg.epochs:
                write_session_end(writer, cfg, success=True)
            hold(cfg.name, f"saved{epoch}", holds)
            report(result)
    finally:
        if writer is not None:
            writer.close()


def ray_trainable(config: dict[str, Any], data: Arrays) -> None:
    """Ray Tune entry point: config = {"trial": TrialConfig dict, "cpus": N}."""
    import ray
    from ray import tune

    cfg = TrialConfig.from_dict(config["trial"])
    # Measured here: two 1-thread processes train LeNet 2.2x faster than one
    # 2-thread process, so a trial uses exactly the CPUs it was given.
    torch.set_num_threads(max(1, int(config["cpus"])))
    device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    run_trial(cfg, data, tune.report, device=device)
