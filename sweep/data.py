"""Data sets as in-memory arrays, loaded once by the driver.

The driver loads a data set once and hands it to every trial through Ray's
object store (`tune.with_parameters`), where numpy arrays are shared
zero-copy by all workers of a node: no per-trial decompression, no
per-example PIL conversion. Images are float32 in [0, 1] (what the blog's
ToTensor gives), shape (N, 1, 28, 28); labels int64.
"""
from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Debian's dataset-fashion-mnist package puts the original .gz files here.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DATASETS = ("fashion_mnist", "mnist", "synthetic")
NUM_CLASSES = 10


class DataError(Exception):
    """A data set cannot be found or read."""


@dataclass(frozen=True)
class Arrays:
    """One data set in memory."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def prepare_fashion_mnist(data_dir: Path, source: Path = DEBIAN_FASHION_MNIST) -> Path:
    """Decompress Debian's Fashion-MNIST into torchvision's layout, once.

    Debian rewrote the gzip headers, so torchvision's md5 check rejects the
    .gz files; the decompressed idx files are byte-identical to upstream's.
    Returns the raw folder.
    """
    raw = data_dir / "FashionMNIST" / "raw"
    if all((raw / name).exists() for name in RAW_FILES):
        return raw
    if not all((source / f"{name}.gz").exists() for name in RAW_FILES):
        raise DataError(
            f"Fashion-MNIST not found in {raw} or {source}: "
            "install it with `apt-get install dataset-fashion-mnist`"
        )
    raw.mkdir(parents=True, exist_ok=True)
    for name in RAW_FILES:
        tmp = raw / f"{name}.part"
        with gzip.open(source / f"{name}.gz", "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.replace(raw / name)  # atomic: a killed copy never looks complete
    return raw


def _torchvision(cls_name: str, data_dir: Path, download: bool) -> Arrays:
    import torchvision

    cls = getattr(torchvision.datasets, cls_name)
    try:
        train = cls(str(data_dir), train=True, download=download)
        test = cls(str(data_dir), train=False, download=download)
    except RuntimeError as exc:  # torchvision's "Dataset not found"
        raise DataError(f"{cls_name} not found under {data_dir}: {exc}") from None
    return Arrays(_images(train.data), train.targets.numpy().astype(np.int64),
                  _images(test.data), test.targets.numpy().astype(np.int64))


def _images(data) -> np.ndarray:
    return (data.numpy().astype(np.float32) / 255.0)[:, None, :, :]


def synthetic(train_size: int = 2048, test_size: int = 512, seed: int = 0) -> Arrays:
    """A small learnable 10-class image set made from a fixed seed.

    Each class is a smooth random prototype; examples are the prototype plus
    noise, clipped to [0, 1]. Fast enough for tests, hard enough that the
    activation choice shows.
    """
    rng = np.random.default_rng(seed)
    coarse = rng.random((NUM_CLASSES, 7, 7))
    protos = np.kron(coarse, np.ones((4, 4))).astype(np.float32)  # 28x28

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, NUM_CLASSES, n)
        x = protos[y] + rng.normal(0.0, 0.35, (n, 28, 28)).astype(np.float32)
        return np.clip(x, 0.0, 1.0)[:, None].astype(np.float32), y.astype(np.int64)

    train_x, train_y = draw(train_size)
    test_x, test_y = draw(test_size)
    return Arrays(train_x, train_y, test_x, test_y)


def load_dataset(
    name: str,
    data_dir: Path,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> Arrays:
    """Load data set `name` (one of DATASETS), capped to the first N examples if asked."""
    if name == "fashion_mnist":
        prepare_fashion_mnist(data_dir)
        arrays = _torchvision("FashionMNIST", data_dir, download=False)
    elif name == "mnist":
        # No Debian package: use files already under data_dir, else
        # torchvision's download (needs internet).
        arrays = _torchvision("MNIST", data_dir, download=not (data_dir / "MNIST" / "raw").exists())
    elif name == "synthetic":
        arrays = synthetic(train_limit or 2048, test_limit or 512)
    else:
        raise DataError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    return Arrays(
        np.ascontiguousarray(arrays.train_x[:train_limit]),
        np.ascontiguousarray(arrays.train_y[:train_limit]),
        np.ascontiguousarray(arrays.test_x[:test_limit]),
        np.ascontiguousarray(arrays.test_y[:test_limit]),
    )
