"""Data sets as in-memory arrays, loaded once by the driver.

The driver loads a data set once and hands it to every trial through Ray's
object store (`tune.with_parameters`), where numpy arrays are shared
zero-copy by all workers of a node: no per-trial decompression, no
per-example PIL conversion. Images are float32, shape (N, C, H, W); labels
int64 in 0..classes-1. Fashion-MNIST, MNIST and synthetic are in [0, 1] (what
the blog's ToTensor gives), the other named sets standardised per channel
(NORMALISATION), an image folder in [0, 1], a data factory's arrays as given.

Nothing is downloaded at run time, and a `data_dir` that does not exist is
never created: a missing data set is one line naming the folder looked in and
what to do.
"""
from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

# Debian's dataset-fashion-mnist package puts the original .gz files here.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DATASETS = ("fashion_mnist", "mnist", "kmnist", "emnist", "qmnist", "cifar10", "cifar100", "svhn", "imagefolder",
            "synthetic")
NUM_CLASSES = 10

# Per-channel (means, stds) of each set's training split, pixels scaled to [0, 1]: the values commonly
# published for these sets and used to standardise them (x - mean) / std. QMNIST's are MNIST's (PyTorch's
# examples/mnist), its training set being MNIST's 60,000 digits; CIFAR's stds are over all training pixels.
# Fashion-MNIST and MNIST are not here: they stay in [0, 1], as their recorded trials had them; an image
# folder stays in [0, 1] and a data factory's arrays are as given.
NORMALISATION = {
    "kmnist": ((0.1918,), (0.3483,)),
    "emnist": ((0.1751,), (0.3332,)),
    "qmnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}


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
    classes: int | None = None

    @property
    def num_classes(self) -> int:
        """`classes` where the loader set it, else the largest label + 1."""
        if self.classes is not None:
            return self.classes
        return int(max(self.train_y.max(), self.test_y.max())) + 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape, e.g. (1, 28, 28)."""
        return tuple(self.train_x.shape[1:])


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


@dataclass(frozen=True)
class Named:
    """A data set read by torchvision's own class from its own layout; how the error lines name it."""

    title: str  # how its lines name it
    cls: str  # the torchvision.datasets class
    folder: str  # where its files are, under data_dir ("" for data_dir itself)
    files: tuple[str, ...]  # every file it reads there
    put: str  # what to do, said where files are missing
    classes: int
    split: str = "train"  # the keyword that picks the split: train=True/False, or <split>="train"/"test"
    args: tuple[tuple[str, Any], ...] = ()  # further keywords for the class
    channels_last: bool = False  # its .data is (N, H, W, C)

    @property
    def holds(self) -> str:
        return self.folder or " and ".join(self.files)


IDX = "put the four unpacked idx files there"
EMNIST_FILES = tuple(f"emnist-balanced-{s}-{k}-ubyte" for s in ("train", "test")
                     for k in ("images-idx3", "labels-idx1"))
# QMNIST with download=False reads these four, uncompressed (the .gz names less .gz), from QMNIST/raw.
QMNIST_FILES = tuple(f"qmnist-{s}-{k}" for s in ("train", "test") for k in ("images-idx3-ubyte", "labels-idx2-int"))
CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
NAMED = {
    "fashion_mnist": Named("FashionMNIST", "FashionMNIST", "FashionMNIST/raw", RAW_FILES, IDX, 10),
    "mnist": Named("MNIST", "MNIST", "MNIST/raw", RAW_FILES, IDX, 10),
    "kmnist": Named("KMNIST", "KMNIST", "KMNIST/raw", RAW_FILES, IDX, 10),
    "emnist": Named("EMNIST", "EMNIST", "EMNIST/raw", EMNIST_FILES,
                    "put the balanced split's four idx files of EMNIST's gzip.zip there unpacked", 47,
                    args=(("split", "balanced"),)),
    "qmnist": Named("QMNIST", "QMNIST", "QMNIST/raw", QMNIST_FILES, "put QMNIST's four idx files there unpacked",
                    10, split="what"),
    "cifar10": Named("CIFAR-10", "CIFAR10", "cifar-10-batches-py", CIFAR10_FILES,
                     "put the files of cifar-10-python.tar.gz there unpacked", 10, channels_last=True),
    "cifar100": Named("CIFAR-100", "CIFAR100", "cifar-100-python", ("train", "test", "meta"),
                      "put the files of cifar-100-python.tar.gz there unpacked", 100, channels_last=True),
    "svhn": Named("SVHN", "SVHN", "", ("train_32x32.mat", "test_32x32.mat"),
                  "put SVHN's train_32x32.mat and test_32x32.mat there", 10, split="split"),
}


def _said(exc: BaseException) -> str:
    """An error as one line: its type and its message's last line."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[-1]}" if lines else type(exc).__name__


def _unchecked(cls: type, files: list[Path]) -> type:
    """torchvision's `cls` without its md5 checks. CIFAR and SVHN compare their files' md5 with the published
    archives' (`_check_integrity`, and CIFAR's `_load_meta` for its meta file); sweep takes files a user (or
    a test) made in the same layout, so it checks only that they exist, and a corrupt file is refused when
    it is read."""
    if not hasattr(cls, "_check_integrity"):  # the MNIST family checks only that its files exist
        return cls
    attrs: dict[str, Any] = {"_check_integrity": lambda self: all(f.is_file() for f in files)}
    if hasattr(cls, "meta"):
        attrs["meta"] = {**cls.meta, "md5": None}  # check_integrity(path, None): the file exists
    return type(cls.__name__, (cls,), attrs)


def _torchvision(name: str, data_dir: Path) -> Arrays:
    """Named set `name` from its files in torchvision's layout under data_dir; never downloaded."""
    import torchvision

    row = NAMED[name]
    folder = data_dir / row.folder
    paths = [folder / f for f in row.files]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{row.title} not found in {folder} (missing {', '.join(missing)}; nothing is downloaded at "
                        f"run time): {row.put}, or set dataset.data_dir to the folder that holds {row.holds}")
    cls = _unchecked(getattr(torchvision.datasets, row.cls), paths)
    try:
        splits = []
        for train in (True, False):
            which = {"train": train} if row.split == "train" else {row.split: "train" if train else "test"}
            data = cls(str(data_dir), download=False, **which, **dict(row.args))
            x = data.data.numpy() if hasattr(data.data, "numpy") else np.asarray(data.data)
            x = x.transpose(0, 3, 1, 2) if row.channels_last else x[:, None] if x.ndim == 3 else x
            y = np.asarray(data.labels if hasattr(data, "labels") else data.targets).astype(np.int64)
            y = y[:, 0] if y.ndim == 2 else y  # QMNIST: the class, then the digit's NIST provenance
            if len(y) != len(x):
                raise ValueError(f"{len(y)} labels for {len(x)} images")
            if len(y) and not 0 <= y.min() <= y.max() < row.classes:
                raise ValueError(f"labels {y.min()}..{y.max()}, not within 0..{row.classes - 1}")
            splits += [_scaled(x, name), y]
    except Exception as exc:  # files there but unreadable
        if name in ("mnist", "fashion_mnist"):  # their line, as it was
            raise DataError(f"{row.title} in {folder} cannot be read: {exc}") from None
        raise DataError(f"{row.title} in {folder} cannot be read ({_said(exc)}): {row.put} "
                        f"({', '.join(row.files)})") from None
    return Arrays(*splits, classes=row.classes)


def _scaled(pixels: np.ndarray, name: str) -> np.ndarray:
    """uint8 images as float32 in [0, 1], standardised per channel with NORMALISATION where it has `name`."""
    x = pixels.astype(np.float32) / 255.0
    if name not in NORMALISATION:
        return x
    means, stds = (np.array(v, dtype=np.float32)[None, :, None, None] for v in NORMALISATION[name])
    return (x - means) / stds


def _image_folder(data_dir: Path) -> Arrays:
    """data_dir/train/<class>/<image> and data_dir/test/<class>/<image>: classes are train's folders, sorted;
    all images one size; 1 channel if all are grayscale ("L"), else RGB; in [0, 1]."""
    from PIL import Image
    from torchvision.datasets import ImageFolder

    missing = [s for s in ("train", "test") if not (data_dir / s).is_dir()]
    if missing:
        raise DataError(f"Image folder not found in {data_dir} (missing {', '.join(missing)}; nothing is downloaded "
                        f"at run time): put one folder of images per class in train/ and in test/ there, or set "
                        f"dataset.data_dir to the folder that holds train/ and test/")
    try:
        train, test = (ImageFolder(str(data_dir / s)) for s in ("train", "test"))
    except Exception as exc:
        raise DataError(f"Image folder {data_dir} cannot be read ({_said(exc)})") from None
    if test.classes != train.classes:
        raise DataError(f"Image folder {data_dir / 'test'} has the classes {', '.join(test.classes)}, train's are "
                        f"{', '.join(train.classes)}: the test split must have the same class folders")
    images, size = [], None
    for path, _ in train.samples + test.samples:
        try:
            with Image.open(path) as image:
                image.load()
        except Exception as exc:
            raise DataError(f"Image folder {data_dir}: {path} cannot be read ({_said(exc)})") from None
        size = size or (image.size, path)
        if image.size != size[0]:
            raise DataError(f"Image folder {data_dir}: {path} is {image.size[0]}x{image.size[1]} pixels, not "
                            f"{size[0][0]}x{size[0][1]} as {size[1]} is: all images must be one size")
        images.append(image)
    gray = all(image.mode == "L" for image in images)
    x = np.stack([np.asarray(image if gray else image.convert("RGB")) for image in images])
    x = _scaled(x[:, None] if gray else x.transpose(0, 3, 1, 2), "imagefolder")
    y = np.array([label for _, label in train.samples + test.samples], dtype=np.int64)
    n = len(train.samples)
    return Arrays(x[:n], y[:n], x[n:], y[n:], classes=len(train.classes))


def _from_factory(factory: Callable[[], Any], who: str) -> Arrays:
    """A data factory's (train, test), checked; x float32 as given ((N, H, W) gets a channel axis), y int64."""
    import torch

    try:
        result = factory()
    except Exception as exc:
        raise DataError(f"{who} raised {_said(exc)}") from None
    form = ("it must return (train, test), each a torch Dataset of (x, y) items or an (x, y) pair of tensors or "
            "arrays")
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise DataError(f"{who} returned {type(result).__name__}"
                        f"{f' of {len(result)}' if isinstance(result, (tuple, list)) else ''}; {form}")

    def array(v: Any) -> np.ndarray:
        return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)

    parts = []
    for split, part in zip(("train", "test"), result):
        if isinstance(part, torch.utils.data.Dataset):
            try:  # every item
                items = [part[i] for i in range(len(part))] if hasattr(part, "__len__") else list(part)
            except Exception as exc:
                raise DataError(f"{who}: reading its {split} set raised {_said(exc)}") from None
            if not items:
                raise DataError(f"{who}: its {split} set is empty")
            bad = next((i for i, item in enumerate(items)
                        if not isinstance(item, (tuple, list)) or len(item) != 2), None)
            if bad is not None:
                raise DataError(f"{who}: {split} item {bad} is {type(items[bad]).__name__}, not an (x, y) pair")
            xs, ys = zip(*items)
        elif isinstance(part, (tuple, list)) and len(part) == 2:
            xs, ys = part
        else:
            raise DataError(f"{who}: its {split} set is {type(part).__name__}; {form}")
        try:
            if isinstance(part, torch.utils.data.Dataset):
                xs, ys = [array(x) for x in xs], [array(y) for y in ys]
                other = next((i for i, x in enumerate(xs) if x.shape != xs[0].shape), None)
                if other is not None:
                    raise DataError(f"{who}: {split} item {other}'s x has shape {xs[other].shape}, item 0's "
                                    f"{xs[0].shape}: all must be one shape")
                x, y = np.stack(xs), np.stack(ys)
            else:
                x, y = array(xs), array(ys)
        except (ValueError, TypeError) as exc:  # ragged lists, objects that are not arrays
            raise DataError(f"{who}: its {split} x and y cannot be made arrays ({_said(exc)})") from None
        if x.dtype.kind not in "biuf":
            raise DataError(f"{who}: {split} x is {x.dtype}, not numbers")
        if x.ndim < 2:
            raise DataError(f"{who}: {split} x has shape {x.shape}; it must be (N, features) at least")
        if not len(x):
            raise DataError(f"{who}: its {split} set is empty")
        if y.dtype.kind not in "iu":
            raise DataError(f"{who}: {split} y is {y.dtype}; labels must be integers")
        if y.shape != (len(x),):
            raise DataError(f"{who}: {split} y has shape {y.shape}; it must be ({len(x)},), one label per example")
        if y.min() < 0:
            raise DataError(f"{who}: {split} y has the label {y.min()}; labels must be 0 or more")
        parts += [(x[:, None] if x.ndim == 3 else x).astype(np.float32), y.astype(np.int64)]
    if parts[0].shape[1:] != parts[2].shape[1:]:
        raise DataError(f"{who}: train examples have shape {parts[0].shape[1:]}, test examples "
                        f"{parts[2].shape[1:]}: they must be the same")
    return Arrays(*parts, classes=int(max(parts[1].max(), parts[3].max())) + 1)


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
    return Arrays(train_x, train_y, test_x, test_y, classes=NUM_CLASSES)


def load_dataset(
    name: str,
    data_dir: Path,
    train_limit: int | None = None,
    test_limit: int | None = None,
    validation: int | float | None = None,
    factory: Callable[[], Any] | None = None,
    factory_name: str = "",
) -> Arrays:
    """Load data set `name` (one of DATASETS), capped to the first N examples if asked. With `validation`
    (a count, or a fraction below 1 of the training set), those examples are held out of the training set
    first (validation_split) and `train_limit` counts from the rest.

    With `factory` (a callable of no arguments returning (train, test), each a torch Dataset of (x, y) items
    or an (x, y) pair of tensors or arrays), `name` is ignored and its data is used; `factory_name` is how
    errors name it (e.g. "dataset.factory data.py:load")."""
    if factory is not None:
        arrays = _from_factory(factory, factory_name or "dataset.factory")
    elif name == "fashion_mnist":
        if not data_dir.is_dir():
            raise _missing_folder("Fashion-MNIST", data_dir, "FashionMNIST/raw",
                                  "create it (Debian's dataset-fashion-mnist, from `apt-get install dataset-fashion-mnist`, is "
                                  "unpacked there once) or ")
        prepare_fashion_mnist(data_dir)
        arrays = _torchvision("fashion_mnist", data_dir)
    elif name == "mnist":
        # No Debian package, and nothing is downloaded: the files must be under data_dir already.
        if not data_dir.is_dir():
            raise _missing_folder("MNIST", data_dir, "MNIST/raw")
        arrays = _torchvision("mnist", data_dir)
    elif name in NAMED:
        if not data_dir.is_dir():
            row = NAMED[name]
            raise _missing_folder(row.title, data_dir, f"{row.folder}/ with {', '.join(row.files)}" if row.folder
                                  else row.holds)
        arrays = _torchvision(name, data_dir)
    elif name == "imagefolder":
        if not data_dir.is_dir():
            raise _missing_folder("Image folder", data_dir,
                                  "train/ and test/, each with one folder of images per class")
        arrays = _image_folder(data_dir)
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
        val_x, val_y, arrays.classes,
    )
