"""Data sets as in-memory arrays, loaded once by the driver.

The driver loads a data set once and hands it to every trial through Ray's
object store (`tune.with_parameters`), where numpy arrays are shared
zero-copy by all workers of a node: no per-trial decompression, no
per-example PIL conversion. Images are float32 in [0, 1] (what the blog's
ToTensor gives), shape (N, 1, 28, 28); labels int64.

Nothing is downloaded at run time, and a `data_dir` that does not exist is
never created: a missing data set is one line naming the folder looked in and
what to do.
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
    """One data set in memory; with a validation split, the examples held out of the training set."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    val_x: np.ndarray | None = None
    val_y: np.ndarray | None = None


# The permutation that picks the validation examples: fixed, so that they are the same for every trial, seed
# and sweep of a data set, and never trained on.
VALIDATION_SEED = 2010


def validation_size(validation: int | float, train_size: int) -> int:
    """How many training examples `validation` holds out: a count as it is, a fraction (below 1) of
    `train_size` rounded to the nearest whole example."""
    return validation if isinstance(validation, int) else int(round(validation * train_size))


def validation_split(labels: np.ndarray, size: int) -> np.ndarray:
    """The indices of `size` training examples held out for validation, sorted: stratified by class (each
    class's count its share of `size`, the largest remainders rounded up), each class's examples taken from
    a permutation fixed by VALIDATION_SEED.

    Example: validation_split(np.array([0, 0, 1, 1]), 2) -> array([0, 2])
    """
    rng = np.random.default_rng(VALIDATION_SEED)
    classes, counts = np.unique(labels, return_counts=True)
    exact = size * counts / counts.sum()
    take = np.floor(exact).astype(int)
    take[np.argsort(-(exact - take), kind="stable")[:size - take.sum()]] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


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
            f"Fashion-MNIST not found in {raw} or {source}: install Debian's package "
            "(`apt-get install dataset-fashion-mnist`), or set dataset.data_dir to the folder that holds "
            "FashionMNIST/raw"
        )
    raw.mkdir(parents=True, exist_ok=True)
    for name in RAW_FILES:
        tmp = raw / f"{name}.part"
        with gzip.open(source / f"{name}.gz", "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.replace(raw / name)  # atomic: a killed copy never looks complete
    return raw


def _missing_folder(title: str, data_dir: Path, holds: str, how: str = "") -> DataError:
    return DataError(f"{title} not found: dataset.data_dir {data_dir} does not exist (it is never created at run "
                     f"time); {how}set dataset.data_dir to the folder that holds {holds}")


def _torchvision(cls_name: str, data_dir: Path) -> Arrays:
    """A torchvision data set from its files under data_dir/<cls_name>/raw; never downloaded."""
    import torchvision

    cls = getattr(torchvision.datasets, cls_name)
    raw = data_dir / cls_name / "raw"
    missing = [name for name in RAW_FILES if not (raw / name).is_file()]
    if missing:
        raise DataError(f"{cls_name} not found in {raw} (missing {', '.join(missing)}; nothing is downloaded at "
                        f"run time): put the four unpacked idx files there, or set dataset.data_dir to the folder "
                        f"that holds {cls_name}/raw")
    try:
        train = cls(str(data_dir), train=True, download=False)
        test = cls(str(data_dir), train=False, download=False)
    except (RuntimeError, OSError, ValueError) as exc:  # files there but unreadable
        raise DataError(f"{cls_name} in {raw} cannot be read: {exc}") from None
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
    validation: int | float | None = None,
) -> Arrays:
    """Load data set `name` (one of DATASETS), capped to the first N examples if asked. With `validation`
    (a count, or a fraction below 1 of the training set), those examples are held out of the training set
    first (validation_split) and `train_limit` counts from the rest."""
    if name == "fashion_mnist":
        if not data_dir.is_dir():
            raise _missing_folder("Fashion-MNIST", data_dir, "FashionMNIST/raw",
                                  "create it (Debian's dataset-fashion-mnist, from `apt-get install dataset-fashion-mnist`, is "
                                  "unpacked there once) or ")
        prepare_fashion_mnist(data_dir)
        arrays = _torchvision("FashionMNIST", data_dir)
    elif name == "mnist":
        # No Debian package, and nothing is downloaded: the files must be under data_dir already.
        if not data_dir.is_dir():
            raise _missing_folder("MNIST", data_dir, "MNIST/raw")
        arrays = _torchvision("MNIST", data_dir)
    elif name == "synthetic":
        base = train_limit or 2048
        arrays = synthetic(base + (validation_size(validation, base) if validation else 0), test_limit or 512)
    else:
        raise DataError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    train_x, train_y, val_x, val_y = arrays.train_x, arrays.train_y, None, None
    if validation:
        size = validation_size(validation, len(train_y))
        if not 0 < size < len(train_y):
            raise DataError(f"dataset.validation: {validation} holds out {size} of the {len(train_y)} training "
                            "examples; it must leave some on each side")
        held = np.zeros(len(train_y), dtype=bool)
        held[validation_split(train_y, size)] = True
        val_x, val_y = np.ascontiguousarray(train_x[held]), np.ascontiguousarray(train_y[held])
        train_x, train_y = train_x[~held], train_y[~held]
    return Arrays(
        np.ascontiguousarray(train_x[:train_limit]),
        np.ascontiguousarray(train_y[:train_limit]),
        np.ascontiguousarray(arrays.test_x[:test_limit]),
        np.ascontiguousarray(arrays.test_y[:test_limit]),
        val_x, val_y,
    )
