"""Trials: train configurations, log to TensorBoard, report each epoch.

`run_bundle` trains one or more configurations (members) as one stacked
network (models/fused.py); `run_trial` is its one-member case, so there is one
training loop. Neither knows Ray: they take the data arrays and a `report`
function, so tests and benchmarks call them directly; `ray_trainable` wraps
them for Ray Tune. The x axis everywhere is training images seen.

Every member stays a trial of its own: its TensorBoard folder, HParams
session, statistics, reports (keyed by config hash) and checkpoint. It
checkpoints after every epoch into its own folder, in the format of an
unfused trial (model and optimizer state dicts, RNG states, images seen), and
continues from there when it starts again, fused or not.
"""
from __future__ import annotations

import json
import math
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch

from sweep.models.fused import FusedNet
from sweep.models.kernels import choose as choose_kernels
from sweep.models.graph import StepRunner, why_no_graphs
from sweep.models.network import build_network
from sweep.models.registry import ACTIVATIONS, init_weights
from sweep.models.stats import STAT_NAMES
from sweep.data.datasets import Arrays
from sweep.spec.grid import TrialConfig, bundle_name
from sweep.run.hold import hold, holds_for
from sweep.run.hparams import STOPPED_TAG, write_session_end, write_session_start
from sweep.measures import epoch_measures, judged_accuracy
from sweep.status import Status, TrialReport
from sweep.run.stopping import Stopper

CHECKPOINT = "checkpoint.pt"
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


def _save(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a crash never leaves half a checkpoint


class CheckpointMismatch(RuntimeError):
    """A trial's folder holds the checkpoint of another configuration: never resumed, an error for the trial."""


def _checkpoint_hash(ckpt: dict[str, Any]) -> str | None:
    """The config hash a checkpoint was saved for (older checkpoints: that of its replayed reports)."""
    if "config_hash" in ckpt:
        return ckpt["config_hash"]
    return ckpt["replay"][-1]["config_hash"] if ckpt.get("replay") else None


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


class _Member:
    """One configuration of a bundle: its model as built, its batch order, its folder and its progress."""

    def __init__(self, cfg: TrialConfig, tensorboard: bool, bundle: str | None, device: str, node: str | None,
                 kernels: str, threads: int, input_shape: tuple[int, ...], classes: int):
        self.cfg = cfg
        # Where it trains, for the database: its bundle's name (None alone), the device, the node and the
        # kernels its steps run on (sweep.models.kernels; the run chose them, the checkpoint keeps them).
        self.bundle, self.device, self.node, self.kernels = bundle, device, node, kernels
        # torch's threads for its steps: a sum split over more threads rounds otherwise (the test loss did),
        # so a trial keeps the count it started with (its checkpoint's), whatever resources.cpu says later.
        self.threads = threads
        self.logdir = Path(cfg.logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        # Built exactly as an unfused trial always was: seed, network, initialisation.
        torch.manual_seed(cfg.seed)
        self.module = build_network(cfg.model, cfg.activation, cfg.hidden, kernels,
                                    json.loads(cfg.network) if cfg.network else None, input_shape, classes)
        init_weights(self.module, cfg.init, cfg.gain, cfg.activation)
        self.order = torch.Generator().manual_seed(cfg.seed)  # batch order, independent of init
        self.bounds = ACTIVATIONS[cfg.activation].bounds
        self.optimizer_state = None
        # Whether its steps draw from torch's generator (Dropout), which the checkpoint then keeps: such a
        # network trains alone (models.fused), so the generator's state is its own.
        self.draws = any(isinstance(m, torch.nn.modules.dropout._DropoutNd) for m in self.module.modules())
        self.replay: list[dict[str, Any]] = []
        # measures: each epoch's figures the stop rules read (sweep/run/stopping.py), from epoch 1.
        self.state = {"epoch": 0, "images_seen": 0, "train_seconds": 0.0, "run_seconds": 0.0,
                      "best_test_acc": None, "best_epoch": None, "best_val_acc": None, "measures": []}
        ckpt_path = self.logdir / CHECKPOINT
        # A save cut short (a full disk, a kill inside torch.save) leaves its temporary file: never a checkpoint.
        ckpt_path.with_suffix(".tmp").unlink(missing_ok=True)
        if ckpt_path.exists():
            # On the CPU: RNG states must stay CPU tensors; the bundle moves the rest to its device.
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            saved_for = _checkpoint_hash(ckpt)
            if saved_for is not None and saved_for != cfg.config_hash:
                raise CheckpointMismatch(
                    f"{ckpt_path} was saved by another configuration (config hash {saved_for}, this trial's "
                    f"{cfg.config_hash}): not resumed; move that folder away, or give the sweep a new name")
            if ckpt.get("kernels", kernels) != kernels:
                raise CheckpointMismatch(
                    f"{cfg.name} trained on {ckpt['kernels']} kernels ({ckpt_path}), this run on {kernels}: their "
                    "float rounding differs, so it is not continued; run it where sweep's install is as it was, "
                    "or give the sweep a new name")
            self.threads = ckpt.get("threads", threads)
            self.module.load_state_dict(ckpt["model"])
            self.optimizer_state = ckpt["optimizer"]
            self.order.set_state(ckpt["order_rng"])
            if "torch_rng" in ckpt:  # Dropout's draws: a trial alone owns torch's generator
                torch.set_rng_state(ckpt["torch_rng"])
            self.state, self.replay = {"measures": [], **ckpt["state"]}, ckpt["replay"]
        self.run_seconds_before = self.state["run_seconds"]
        self.resumed_from = self.state["epoch"] or None
        self.holds = holds_for(cfg.name)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            if self.state["epoch"] == 0:
                _forget_earlier_attempts(self.logdir)
            # purge_step drops points a killed run wrote after its last checkpoint,
            # so a resumed curve has no duplicated or overlapping points.
            self.writer = SummaryWriter(str(self.logdir),
                                        purge_step=self.state["images_seen"] + 1 if self.state["epoch"] else None)
            if self.state["epoch"] == 0:
                write_session_start(self.writer, cfg)

    def scalar(self, tag: str, value: float, step: int) -> None:
        # NaN means "does not apply" for the statistics; a diverged loss is
        # recorded in the database and the trial's status instead.
        if self.writer is not None and not math.isnan(value):
            self.writer.add_scalar(tag, value, step)

    def log_snapshot(self, epoch: int, train_loss: float, snap) -> list[dict[str, Any]]:
        """TensorBoard points and database rows of one statistics snapshot."""
        step = self.state["images_seen"]
        self.scalar("loss/train", train_loss, step)
        for layer, kind, values in snap:
            for stat, value in zip(STAT_NAMES, values):
                self.scalar(f"{kind}/{layer}/{stat}", value, step)
        return _stats_rows(epoch, step, snap, self.bounds is not None)

    def result(self, *, epoch: int, train_loss: float | None, test: tuple[float, ...], wall: float,
               rows: list[dict[str, Any]], began: float, status: Status = Status.RUNNING,
               reason: str | None = None) -> TrialReport:
        """The epoch's report; also its test (and validation) points in TensorBoard and the running bests.
        `test`: (test loss, test accuracy), then (validation loss, validation accuracy) with a split."""
        test_loss, test_acc, *val = test
        val_loss, val_acc = val if val else (None, None)
        step = self.state["images_seen"]
        self.scalar("loss/test", test_loss, step)
        self.scalar("accuracy/test", test_acc, step)
        if val:
            self.scalar("loss/val", val_loss, step)
            self.scalar("accuracy/val", val_acc, step)
            best = self.state.get("best_val_acc")
            if status != Status.DIVERGED and math.isfinite(val_acc) and (best is None or val_acc > best):
                self.state["best_val_acc"] = val_acc
        if train_loss is not None:
            self.scalar("loss/train_epoch", train_loss, step)
        self.state["run_seconds"] = self.run_seconds_before + time.perf_counter() - began
        # A diverged epoch's numbers are stored as they are, but never become the best.
        if (status != Status.DIVERGED and math.isfinite(test_acc)
                and (self.state["best_test_acc"] is None or test_acc > self.state["best_test_acc"])):
            self.state["best_test_acc"], self.state["best_epoch"] = test_acc, epoch
        return TrialReport(
            config_hash=self.cfg.config_hash, epoch=epoch, images_seen=step, train_loss=train_loss,
            test_loss=test_loss, test_acc=test_acc, val_loss=val_loss, val_acc=val_acc, epoch_seconds=wall,
            train_seconds=self.state["train_seconds"], run_seconds=self.state["run_seconds"],
            best_test_acc=self.state["best_test_acc"], best_epoch=self.state["best_epoch"],
            best_val_acc=self.state.get("best_val_acc"), layer_stats=rows, status=status, reason=reason,
            resumed_from=self.resumed_from, bundle=self.bundle, device=self.device, node=self.node,
            kernels=self.kernels)

    def save(self, result: TrialReport, model_state, optimizer_state) -> None:
        """Checkpoint the epoch just finished, in the unfused format."""
        if self.writer is not None:
            self.writer.flush()
        self.replay = [*self.replay, result.as_dict()][-REPLAY_EPOCHS:]
        # The batch order's generator is the only random state training draws from after the weights are
        # built (torch's global generator serves only the initialisation, from the seed), so it is all a
        # resumed trial needs to continue exactly.
        _save(self.logdir / CHECKPOINT, {
            "config_hash": self.cfg.config_hash, "kernels": self.kernels, "threads": self.threads,
            "model": model_state, "optimizer": optimizer_state,
            "order_rng": self.order.get_state(), "state": dict(self.state), "replay": self.replay,
            **({"torch_rng": torch.get_rng_state()} if self.draws else {}),
        })

    def end_session(self, status: Status, epoch: int) -> None:
        """End the trial's HParams session as it ended (hparams.SESSION_END); a stopped one logs its epoch."""
        if self.writer is not None:
            if status == Status.STOPPED:
                self.scalar(STOPPED_TAG, epoch, self.state["images_seen"])
            write_session_end(self.writer, self.cfg, status)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def run_trial(cfg: TrialConfig, data: Arrays, report: Callable[[dict[str, Any]], None], *args, **options) -> None:
    """Train `cfg` on `data`, calling `report` once before training and after each epoch: a one-member bundle
    (run_bundle's arguments after these three, as run_bundle takes them)."""
    run_bundle([cfg], data, report, *args, **options)


def run_bundle(
    cfgs: list[TrialConfig],
    data: Arrays,
    report: Callable[[dict[str, Any]], None],
    device: str | torch.device = "cpu",
    tensorboard: bool = True,
    node: str | None = None,
    stopper: Stopper | None = None,
    kernels: str | None = None,
    threads: int | None = None,
) -> None:
    """Train configurations that share network shape, batch size, epochs and data as one stacked network.

    Each member reports once before training and after each epoch (its
    epoch's metrics and the layer statistics of every snapshot, taken every
    `stats_every` batches), exactly as it would alone. Members continue from
    their own checkpoints; members checkpointed at different epochs train in
    turn, one stacked network per starting epoch. `node` names the machine
    in the reports (None outside a Ray cluster). `stopper` (sweep/run/stopping.py) ends members early after an
    epoch: each leaves the bundle with status `stopped`, as a diverged member leaves it. `kernels`: which kernels
    the steps run on (sweep.models.kernels; a run decides it once for all its trials; None: `choose_kernels`
    for the device). `threads`: torch's threads for a member that starts fresh (None: as torch has them now); a
    resumed member trains on the count it started with, so that its numbers do not depend on a later run's.
    """
    device = torch.device(device)
    if kernels is None:
        kernels = choose_kernels(on_cpu=device.type == "cpu")
    began = time.perf_counter()
    tensors = _Tensors(*(None if a is None else _tensor(a, device)
                         for a in (data.train_x, data.train_y, data.test_x, data.test_y, data.val_x, data.val_y)))
    members: list[_Member] = []
    try:
        bundle = bundle_name(cfgs) if len(cfgs) > 1 else None
        for cfg in cfgs:
            members.append(_Member(cfg, tensorboard, bundle, str(device), node, kernels,
                                   threads or torch.get_num_threads(), data.input_shape, data.num_classes))
        for start, count in sorted({(m.state["epoch"], m.threads) for m in members}):
            with _torch_threads(count):
                _train(_Bundle([m for m in members if (m.state["epoch"], m.threads) == (start, count)], tensors,
                               report, began), stopper)
    finally:
        for m in members:
            m.close()


@contextmanager
def _torch_threads(count: int):
    """torch's intra-op threads set to `count` for the block, as they were after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(bundle: "_Bundle", stopper: Stopper | None) -> None:
    """Train a bundle's members to their last epoch, or until each has diverged or been stopped."""
    bundle.start()
    cfg = bundle.members[0].cfg
    closing = closing_batch(bundle.images, cfg.batch_size)
    for epoch in range(bundle.members[0].state["epoch"] + 1, cfg.epochs + 1):
        bundle.begin_epoch(epoch)
        for batch, idx in enumerate(bundle.batches(), 1):
            # A snapshot every stats_every batches, and on the epoch's last full batch (closing_batch), so
            # that every epoch has statistics however short it is.
            snapshot = batch % cfg.stats_every == 0 or batch == closing
            train_losses = bundle.train_batch(idx, snapshot)
            if train_losses is not None:  # a diverged member leaves before this step, as its unfused trial
                bundle.diverge(train_losses, lambda k, loss: f"train loss {loss} at epoch {epoch}, step "
                               f"{bundle.members[k].state['images_seen']}")
            if not bundle.members:
                return
            bundle.hold(f"epoch{epoch}.batch{batch}")
        bundle.end_epoch(epoch, stopper)
        if not bundle.members:
            return


class _Tensors(NamedTuple):
    """The data on the bundle's device; the validation split's are None without one."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    val_x: torch.Tensor | None
    val_y: torch.Tensor | None


class _Bundle:
    """Members that stand at the same epoch, trained as one FusedNet; a member leaves it when it diverges or
    a stop rule ends it. Its per-epoch running sums are per member, in the members' order."""

    def __init__(self, members: list[_Member], data: _Tensors, report: Callable[[dict[str, Any]], None],
                 began: float):
        self.members, self.data, self.report, self.began = members, data, report, began
        self.device = data.train_x.device
        self.images = len(data.train_x)
        self.net = FusedNet([m.module for m in members], [(m.cfg.optimizer, m.cfg.hyper()) for m in members],
                            self.device, capturable=why_no_graphs(self.device) is None)
        self.runner = StepRunner(self.net, data.train_x, data.train_y, bundle_name([m.cfg for m in members]))
        for k, m in enumerate(members):
            if m.optimizer_state is not None:
                self.net.load_member_state(k, m.module.state_dict(), m.optimizer_state)

    def evaluate(self) -> list[tuple[float, ...]]:
        """Each member's (test loss, test accuracy), and (validation loss, accuracy) with a split."""
        d = self.data
        figures = [*self.net.evaluate(d.test_x, d.test_y),
                   *(self.net.evaluate(d.val_x, d.val_y) if d.val_x is not None else ())]
        return list(zip(*torch.stack(figures).tolist()))

    def start(self) -> None:
        """Epoch 0's evaluation (for members not yet trained), then the reports a resumed member replays."""
        if self.members[0].state["epoch"] == 0:
            for m, test in zip(self.members, self.evaluate()):
                m.state["start_test_loss"] = test[0]  # the exploding loss's measure divides by it
                self.send(m.result(epoch=0, train_loss=None, test=test, wall=0.0, rows=[], began=self.began))
        for m in self.members:
            for past in m.replay:
                self.send(replace(TrialReport.from_dict(past), resumed_from=m.resumed_from))

    def send(self, report: TrialReport) -> None:
        """A member's report to whoever listens (Ray Tune's tune.report, a test): as a dict."""
        self.report(report.as_dict())

    def begin_epoch(self, epoch: int) -> None:
        k, device = len(self.members), self.device
        self.epoch, self.started = epoch, time.perf_counter()
        self.perm = torch.stack([torch.randperm(self.images, generator=m.order) for m in self.members]).to(device)
        self.epoch_loss, self.window_loss = torch.zeros(k, device=device), torch.zeros(k, device=device)
        self.window_batches = self.epoch_images = 0
        self.rows: list[list[dict[str, Any]]] = [[] for _ in self.members]

    def batches(self):
        """The epoch's batch indices, (members, batch size), each member in its own order."""
        size = self.members[0].cfg.batch_size
        for start in range(0, self.images, size):
            yield self.perm[:, start:start + size]

    def train_batch(self, idx: torch.Tensor, snapshot: bool) -> list[float] | None:
        """One step. With a snapshot: the statistics logged, and the members' mean train losses since the
        last one returned, before the optimizers' step (which a diverged member must not take)."""
        size = idx.shape[1]
        whole = not snapshot and size == self.members[0].cfg.batch_size
        if whole:
            losses = self.runner.step(idx)  # the whole step, from a CUDA graph where one is captured
        else:
            losses, acts = self.runner.forward_backward(idx)
        self.epoch_images += size
        self.epoch_loss += losses * size
        self.window_loss += losses
        self.window_batches += 1
        for m in self.members:
            m.state["images_seen"] += size
        if not snapshot:
            if not whole:  # a short last batch
                self.net.step()
            return None
        # Gradients as backward left them, before the step and the next clear.
        train_losses = (self.window_loss / self.window_batches).tolist()
        self.window_loss.zero_()
        self.window_batches = 0
        snaps = self.net.snapshots(acts, [m.bounds for m in self.members])
        for k, m in enumerate(self.members):
            self.rows[k] += m.log_snapshot(self.epoch, train_losses[k], snaps[k])
        return train_losses

    def diverge(self, losses: list[float], why: Callable[[int, float], str],
                ended: tuple[float, list] | None = None) -> list[int]:
        """The one divergence path: members whose loss is NaN or infinite are reported `diverged` with their
        epoch as far as it went, and leave the bundle. `ended`: the epoch's (wall time, evaluation) at its
        end; mid-epoch (None) the others then take the step their batch's snapshot held back. The members
        that diverged are returned."""
        diverged = [k for k, loss in enumerate(losses) if not math.isfinite(loss)]
        if diverged:
            mean_losses = (self.epoch_loss / self.epoch_images).tolist()
            wall, tests = ended if ended is not None else (time.perf_counter() - self.started, self.evaluate())
            for k in diverged:
                m = self.members[k]
                m.state["train_seconds"] += wall
                m.state["epoch"] = self.epoch
                self.send(m.result(epoch=self.epoch, train_loss=mean_losses[k], test=tests[k], wall=wall,
                                   rows=self.rows[k], began=self.began, status=Status.DIVERGED,
                                   reason=why(k, losses[k])))
                m.end_session(Status.DIVERGED, self.epoch)
        if ended is None:
            if len(diverged) < len(self.members):
                self.net.step()
            self.leave(diverged)
        return diverged

    def end_epoch(self, epoch: int, stopper: Stopper | None) -> None:
        """Evaluate; report the diverged; measure, judge, checkpoint and report the others; the diverged and
        the stopped leave."""
        mean_losses = (self.epoch_loss / self.epoch_images).tolist()
        wall = time.perf_counter() - self.started
        tests = self.evaluate()
        diverged = self.diverge(mean_losses, lambda k, loss: f"train loss {loss} at epoch {epoch}", (wall, tests))
        going = [k for k in range(len(self.members)) if k not in diverged]
        results = {}
        for k in going:
            m = self.members[k]
            m.state["train_seconds"] += wall
            m.state["epoch"] = epoch
            val_acc = tests[k][3] if self.data.val_x is not None else None
            m.state["measures"] = [*m.state["measures"], epoch_measures(
                epoch, judged_accuracy(tests[k][1], val_acc), self.rows[k], mean_losses[k],
                m.state.get("start_test_loss"))]
            results[k] = m.result(epoch=epoch, train_loss=mean_losses[k], test=tests[k], wall=wall, rows=self.rows[k],
                                  began=self.began)
        stopped: dict[int, str] = {}  # member -> why a stop rule ends it after this epoch
        if stopper is not None and going:
            decided, judged = stopper.decide(epoch, [self.members[k].state["measures"] for k in going],
                                             [results[k].as_dict() for k in going])
            stopped = {going[j]: reason for j, reason in decided.items()}
            for j, rung in judged.items():  # the ASHA decision travels with the epoch's report (rung_results)
                results[going[j]] = replace(results[going[j]], rung=rung)
        # Halving: a member at a rung waits there (its checkpoint saved), holding no worker: it leaves the bundle,
        # and the run judges its population once every member is there (sweep/run/halving.py).
        waiting = [k for k in going if k not in stopped and stopper is not None
                   and stopper.waits(epoch, self.members[k].cfg.config_hash)]
        last = epoch == self.members[0].cfg.epochs
        for k in going:
            m, result = self.members[k], results[k]
            # The checkpoint keeps the epoch as trained (running): resumed, the trial goes on from it.
            m.save(result, *self.net.member_state(k))
            if last or k in stopped:
                m.end_session(Status.STOPPED if k in stopped else Status.COMPLETED, epoch)
            self.hold(f"saved{epoch}", [m])
            if k in stopped:
                result = replace(result, status=Status.STOPPED, reason=stopped[k])
            elif k in waiting:
                result = replace(result, status=Status.WAITING, reason=f"waiting@{epoch} halving")
            self.send(result)
        self.leave([*diverged, *stopped, *waiting])

    def leave(self, gone: list[int]) -> None:
        """Members `gone` leave the network, and their place in the epoch's running sums."""
        if not gone:
            return
        self.members = [m for k, m in enumerate(self.members) if k not in gone]
        if not self.members:
            return
        self.net.drop(sorted(gone))
        self.runner.reset(self.net)
        self.rows = [r for k, r in enumerate(self.rows) if k not in gone]
        keep = torch.tensor([k for k in range(len(self.perm)) if k not in gone], device=self.device)
        self.perm, self.epoch_loss, self.window_loss = (
            t.index_select(0, keep) for t in (self.perm, self.epoch_loss, self.window_loss))

    def hold(self, moment: str, members: list[_Member] | None = None) -> None:
        """The hold point hook (sweep/run/hold.py): a member a fault test holds at `moment` waits there, its
        bundle's TensorBoard points on disk first."""
        for m in members if members is not None else self.members:
            if m.holds:
                hold(m.cfg.name, moment, m.holds, before=self.flush)

    def flush(self) -> None:
        for m in self.members:
            if m.writer is not None:
                m.writer.flush()


def closing_batch(images: int, batch_size: int) -> int:
    """The batch (from 1) whose snapshot closes an epoch: its last full batch, so that statistics such as
    dead_frac ("zero for every example of the batch") never judge a short remainder of one example; the
    only batch where the epoch has no full one."""
    return max(1, images // batch_size)


def ray_trainable(config: dict[str, Any], data: Arrays) -> None:
    """Ray Tune entry point: config = {"bundle": [TrialConfig dict, ...], "cpus": N, "kernels": the run's
    choice (sweep.models.kernels), and where the spec
    has stop rules, "stop": StopSpec.to_dict(), "metric": the spec's metric, "exempt": config hashes
    resumed after a stop, "order": config hash -> place in the grid}."""
    import ray
    from ray import tune

    cfgs = [TrialConfig.from_dict(d) for d in config["bundle"]]
    stopper = None
    if config.get("stop"):
        from sweep.spec.spec import parse_stop
        from sweep.run.stopping import ray_judge

        stop = parse_stop(config["stop"])
        stopper = Stopper(stop, config["metric"], cfgs[0].epochs,
                          ray_judge(cfgs[0].sweep) if stop.asha is not None else None, config.get("exempt", ()),
                          config.get("order"), data.num_classes)
    device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    # A trial starts on as many torch threads as it was given CPUs (docs/design.md says why).
    run_bundle(cfgs, data, tune.report, device=device, node=node_name(), stopper=stopper, kernels=config["kernels"],
               threads=max(1, int(config["cpus"])))


def node_name() -> str:
    """This Ray node as the database names it: host name and the start of Ray's node id ("gpu07/3f9c2a1b");
    the id tells apart nodes that share a host, like a test cluster on one machine."""
    import socket

    import ray

    return f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:8]}"
