"""Which of torchvision's classification networks sweep can train (`model: {torchvision: NAME}`), and what it
records of each: a markdown table on stdout, progress on stderr.

For every name in torchvision.models.list_models(module=torchvision.models):

1. sweep.models.network.build_torchvision(name, "tanh", {}, 10, name): the network without weights, 10
   classes, its activation modules swapped for tanh; refused where it calls an activation as a function.
2. Network(net, (3, 64, 64), 10, name): the forward hooks, the weight layers in first-use order and the check
   that a batch of two images gives (2, 10). inception_v3 takes (3, 299, 299); a network that cannot take
   64x64 images (ViT's fixed image size, MaxViT's partitions) is built again and tried on (3, 224, 224), and
   the input column says which worked.
3. One forward of 2 random images with record=True in training mode, under no_grad (as a statistics
   snapshot's forward): the number of activation calls recorded (len of the acts dict).

Every network is listed. One whose parameters (counted on the meta device, without building it) exceed
--max-params is "not tried (size)" with its count unless --all is given. A failure of one network is caught
and said in its row ("refused": sweep's NetworkError, the one-line message a user sees; "error": any other
exception, which sweep would not have said in one line). The seconds are wall clock for build and check,
every input size tried included.

    python bench/torchvision_networks.py > torchvision_networks.md
    python bench/torchvision_networks.py --only resnet18 vit_b_16
    python bench/torchvision_networks.py --all          # the biggest too (minutes, GBs of memory)
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sweep.models.network import Network, NetworkError, build_torchvision  # noqa: E402

ACTIVATION = "tanh"
CLASSES = 10
FIRST_INPUT = {"inception_v3": (3, 299, 299)}  # its own size; every other network tries 64x64 first
SMALL, LARGE = (3, 64, 64), (3, 224, 224)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parameter_count(name: str) -> tuple[int | None, bool]:
    """The network's parameters and whether the count is exact: built on the meta device (no memory, no init
    time); where that fails (RegNet computes its widths with tensors), torchvision's weights metadata, which
    counts the 1000-class head (not exact); (None, False) where neither has it."""
    import torchvision

    try:
        with torch.device("meta"):
            net = torchvision.models.get_model(name, weights=None, num_classes=CLASSES)
        return sum(p.numel() for p in net.parameters()), True
    except Exception:  # noqa: BLE001: the metadata's count instead
        pass
    try:
        weights = list(torchvision.models.get_model_weights(name))
        return int(weights[0].meta["num_params"]), False
    except Exception:  # noqa: BLE001: the real build says what is wrong
        return None, False


def one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"


def cell(text: str) -> str:
    """Text for a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def check(name: str) -> dict:
    """Build and check one network; its row's figures."""
    began = time.perf_counter()
    row = {"works": "", "input": "—", "acts": "—", "weights": "—"}
    shapes = [FIRST_INPUT[name]] if name in FIRST_INPUT else [SMALL, LARGE]
    failed: list[str] = []
    try:
        for shape in shapes:
            # A fresh network per input size, as a trial builds one (sweep.models.network.build_network).
            net, originals = build_torchvision(name, ACTIVATION, {}, CLASSES, name)
            try:
                network = Network(net, shape, CLASSES, name, originals)
            except NetworkError as exc:
                if shape != shapes[-1] and "cannot take this data's" in str(exc):
                    failed.append(f"{shape[1]}: {exc}")
                    del net
                    gc.collect()
                    continue
                raise
            network.train()
            with torch.no_grad():
                logits, acts = network(torch.rand(2, *shape, generator=torch.Generator().manual_seed(0)),
                                       record=True)
            if tuple(logits.shape) != (2, CLASSES):
                raise RuntimeError(f"training-mode forward gave {tuple(logits.shape)}, not (2, {CLASSES})")
            row.update(works="yes", acts=str(len(acts)), weights=str(len(network.weight_layers())),
                       input=f"{shape[1]}x{shape[2]}" + (" (64x64 failed)" if failed else ""))
            break
    except NetworkError as exc:
        row["works"] = f"refused: {exc}"
        if failed:
            row["input"] = "64x64, 224x224 failed"
    except Exception as exc:  # noqa: BLE001: one network's failure never ends the table
        row["works"] = f"error: {one_line(exc)}"
    row["seconds"] = f"{time.perf_counter() - began:.1f}"
    row["failed"] = failed
    gc.collect()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="try the networks above --max-params too")
    parser.add_argument("--max-params", type=float, default=150e6,
                        help="networks with more parameters are not tried without --all (default 150e6)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these networks only")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import torchvision

    names = sorted(torchvision.models.list_models(module=torchvision.models))
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            parser.error(f"not torchvision classification networks: {', '.join(unknown)}")
        names = [n for n in names if n in args.only]

    rows = []
    total = time.perf_counter()
    for i, name in enumerate(names, 1):
        params, exact = parameter_count(name)
        size = "?" if params is None else f"{'' if exact else '≈'}{params / 1e6:.1f}M"
        if params is not None and params > args.max_params and not args.all:
            rows.append((name, size, {"works": f"not tried (size: {size} parameters; --all tries it)",
                                      "input": "—", "acts": "—", "weights": "—", "seconds": "—", "failed": []}))
            log(f"[{i}/{len(names)}] {name}: not tried ({size} parameters)")
            continue
        log(f"[{i}/{len(names)}] {name} ({size} parameters) ...")
        row = check(name)
        rows.append((name, size, row))
        log(f"[{i}/{len(names)}] {name}: {row['works'][:100]} ({row['seconds']} s)")

    works = sum(r["works"] == "yes" for _, _, r in rows)
    refused = sum(r["works"].startswith("refused") for _, _, r in rows)
    errors = sum(r["works"].startswith("error") for _, _, r in rows)
    skipped = sum(r["works"].startswith("not tried") for _, _, r in rows)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU") if Path("/proc/cpuinfo").exists() else "unknown CPU"
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {cpu} ({os.cpu_count()} logical CPUs), Python {platform.python_version()}, torch "
          f"{torch.__version__}, torchvision {torchvision.__version__}, torch threads {torch.get_num_threads()}")
    print(f"activation {ACTIVATION}, {CLASSES} classes; {len(rows)} networks: {works} work, {refused} refused, "
          f"{errors} errors, {skipped} not tried (size); {time.perf_counter() - total:.0f} s in all")
    print()
    print("| network | parameters | works | input | activation calls recorded | weight layers | build+check s |")
    print("|---|---:|---|---|---:|---:|---:|")
    for name, size, r in rows:
        print(f"| {name} | {size} | {cell(r['works'])} | {r['input']} | {r['acts']} | {r['weights']} | "
              f"{r['seconds']} |")
    if any(size.startswith(("≈", "?")) for _, size, _ in rows):
        print()
        print("≈: torchvision's weights metadata's count, with the 1000-class head (the network would not build on "
              "the meta device); ?: no count")
    retried = [(name, r["failed"]) for name, _, r in rows if r["failed"]]
    if retried:
        print()
        print("Why 64x64 failed, for the networks tried on 224x224:")
        print()
        for name, failed in retried:
            for why in failed:
                print(f"- {name}: {why}")


if __name__ == "__main__":
    main()
