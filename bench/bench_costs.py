"""What the trial loop's side work costs: the statistics snapshot, TensorBoard, and denormal numbers.

(1) run_trial with TensorBoard on and off, and with statistics every 100 batches against only the epoch's
    closing snapshot, taking turns in one process; images per CPU second of the training epoch.
(2) Denormals: how many subnormal floats the activations, gradients and optimizer state of a trial hold at
    its epoch's end (a saturating sigmoid with SGD, a tanh with Adam), and the step's speed with
    torch.set_flush_denormal on and off on those weights.

    python bench/bench_costs.py --images 12800 --rounds 3
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sweep.data.datasets import load_dataset  # noqa: E402
from sweep.spec.grid import expand_grid  # noqa: E402
from sweep.spec.spec import load_spec  # noqa: E402


def config(activation: str, optimizer: str, init: str = "default"):
    spec = load_spec(ROOT / "sweeps.yaml")
    return next(t for t in expand_grid(spec) if t.activation == activation and t.init == init
                and t.optimizer == optimizer)


def epoch_rate(cfg, data, images: int, tensorboard: bool) -> float:
    """Images per CPU second of run_trial's training epoch (evaluation excluded): bench_train's clocks."""
    from bench_train import epoch_clocks  # bench/, this script's folder

    with tempfile.TemporaryDirectory() as tmp:
        cfg = replace(cfg, epochs=1, train_limit=images, logdir=str(Path(tmp) / "t"))
        return epoch_clocks(cfg, data, images, tensorboard=tensorboard)[1]


def side_work(args, data) -> None:
    cfg = config("relu", "adam", "xavier_uniform")
    variants = {"statistics every 100, TensorBoard on (the loop)": (cfg, True),
                "statistics every 100, TensorBoard off": (cfg, False),
                "closing snapshot only, TensorBoard on": (replace(cfg, stats_every=10 ** 9), True)}
    got = {name: [] for name in variants}
    epoch_rate(cfg, data, args.images, True)  # warm-up
    for _ in range(args.rounds):
        for name, (c, tb) in variants.items():
            got[name].append(epoch_rate(c, data, args.images, tb))
    base = statistics.median(got[next(iter(got))])
    for name, rates in got.items():
        print(f"{name:<52} {statistics.median(rates):>8,.0f} images/CPU-s  ({statistics.median(rates) / base:.3f})")


def subnormals(t: torch.Tensor) -> int:
    t = t.detach().float()
    return int(((t != 0) & (t.abs() < torch.finfo(torch.float32).tiny)).sum())


def denormals(args, data) -> None:
    from sweep.models.fused import FusedNet
    from sweep.models.kernels import choose
    from sweep.models.nets import build_model
    from sweep.models.registry import init_weights

    x_all, y_all = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y)
    for activation, optimizer in (("sigmoid", "sgd"), ("tanh", "adam")):
        cfg = config(activation, optimizer)
        torch.manual_seed(cfg.seed)
        module = build_model(cfg.model, cfg.activation, cfg.hidden, kernels=choose(on_cpu=True))
        init_weights(module, cfg.init, cfg.gain, cfg.activation)
        net = FusedNet([module], [(cfg.optimizer, cfg.hyper())], "cpu")
        order = torch.Generator().manual_seed(0)
        perm = torch.randperm(len(x_all), generator=order)
        batches = [perm[i:i + 64] for i in range(0, len(perm) - 63, 64)]
        for idx in batches:
            net.train_step(x_all[idx][None], y_all[idx][None], record=False)
            net.step()
        _, acts = net.train_step(x_all[batches[0]][None], y_all[batches[0]][None])
        counts = {f"activation {k}": subnormals(a) for k, a in acts.items()}
        counts.update({f"gradient {k}": subnormals(g) for k, g in net.weight_grads().items()})
        state = [v for g in net._groups for s in g.optimizer.state.values() for v in s.values()
                 if isinstance(v, torch.Tensor) and v.dim() > 0]
        counts["optimizer state"] = sum(subnormals(v) for v in state)
        total = sum(a.numel() for a in acts.values()) + sum(g.numel() for g in net.weight_grads().values()) \
            + sum(v.numel() for v in state)
        print(f"{activation} + {optimizer} after {len(batches)} steps: {sum(counts.values())} subnormal values of "
              f"{total:,} ({', '.join(f'{k}: {v}' for k, v in counts.items() if v) or 'none anywhere'})")
        rates = {False: [], True: []}
        for _ in range(args.rounds):
            for flush in (False, True):
                torch.set_flush_denormal(flush)
                cpu = time.process_time()
                for idx in batches[:100]:
                    net.train_step(x_all[idx][None], y_all[idx][None], record=False)
                    net.step()
                rates[flush].append(100 * 64 / (time.process_time() - cpu))
        torch.set_flush_denormal(False)
        print(f"  step: {statistics.median(rates[False]):,.0f} images/CPU-s as is, "
              f"{statistics.median(rates[True]):,.0f} with denormals flushed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=12800)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("fashion_mnist", ROOT / "data", args.images, None)
    side_work(args, data)
    denormals(args, data)


if __name__ == "__main__":
    main()
