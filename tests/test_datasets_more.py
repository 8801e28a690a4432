"""Data sets beyond Fashion-MNIST: every named set read offline from its files in torchvision's own layout
(made here, tiny, in the formats the real files have), an image folder, and a user's data factory; and every
refusal as its one line, with nothing created and nothing downloaded."""
import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from sweep.data.datasets import (DATASETS, NORMALISATION, Arrays, DataError, load_dataset, synthetic,
                                 validation_split)

# The published per-channel means and stds, written out here as the datasets module's table must have them.
PUBLISHED = {
    "kmnist": ((0.1918,), (0.3483,)),
    "emnist": ((0.1751,), (0.3332,)),
    "qmnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test here fails if anything tries a download."""
    import urllib.request

    def refuse(*args, **kwargs):
        raise AssertionError("a download was tried")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def refused(name: str, data_dir: Path | None, **kwargs) -> str:
    """load_dataset's refusal, as its one line; the folder's tree must be as it was."""
    root = data_dir if data_dir is not None and data_dir.is_dir() else None
    before = tree(root) if root else None
    with pytest.raises(DataError) as err:
        load_dataset(name, data_dir, **kwargs)
    if root:
        assert tree(root) == before  # nothing created
    if data_dir is not None and root is None:
        assert not data_dir.exists()  # a data_dir that is not there is never made
    assert "\n" not in str(err.value)
    return str(err.value)


def expected(raw: np.ndarray, name: str) -> np.ndarray:
    """One image's (C, H, W) uint8 bytes as the loader must give them: in [0, 1], standardised with the
    published numbers, in float32 arithmetic."""
    means, stds = (np.array(v, dtype=np.float32)[:, None, None] for v in PUBLISHED[name])
    return (raw.astype(np.float32) / np.float32(255) - means) / stds


# --- the formats of the real files ---------------------------------------------------------------------------

def write_idx(path: Path, array: np.ndarray) -> None:
    """The idx format (MNIST's): two zero bytes, the type (0x08 unsigned byte, 0x0C int32), the number of
    dimensions, each size as a big-endian uint32, then the data, big-endian."""
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}[array.dtype]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
                     + array.astype(array.dtype.newbyteorder(">")).tobytes())


class Python2Pickler(pickle._Pickler):
    """Pickles bytes as Python 2's str (SHORT_BINSTRING / BINSTRING), as CIFAR's files were written (by Python
    2's cPickle): read with encoding="latin1" (torchvision) their keys are "data", "labels"..., with
    encoding="bytes" (the CIFAR page's recipe) b"data", b"labels"..."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256
                   else pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def write_cifar_pickle(path: Path, entry: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = io.BytesIO()
    Python2Pickler(out, protocol=2).dump(entry)
    path.write_bytes(out.getvalue())


def images(rng, n: int, *shape: int) -> np.ndarray:
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8)


def make_mnist_like(data_dir: Path, folder: str, names: tuple[str, ...], classes: int, sizes=(30, 20)) -> dict:
    """Four idx files (train images, labels, test images, labels) in data_dir/folder; returns what was written."""
    rng = np.random.default_rng(len(folder))
    written = {}
    for (image_file, label_file), n, split in zip((names[:2], names[2:]), sizes, ("train", "test")):
        x, y = images(rng, n, 28, 28), rng.integers(0, classes, n).astype(np.uint8)
        write_idx(data_dir / folder / image_file, x)
        write_idx(data_dir / folder / label_file, y)
        written[split] = (x, y)
    return written


IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
EMNIST = ("emnist-balanced-train-images-idx3-ubyte", "emnist-balanced-train-labels-idx1-ubyte",
          "emnist-balanced-test-images-idx3-ubyte", "emnist-balanced-test-labels-idx1-ubyte")
QMNIST = ("qmnist-train-images-idx3-ubyte", "qmnist-train-labels-idx2-int", "qmnist-test-images-idx3-ubyte",
          "qmnist-test-labels-idx2-int")
CIFAR10 = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
           "batches.meta")


def make_qmnist(data_dir: Path) -> dict:
    """QMNIST's labels are idx2-int: (N, 8) int32, the class first, then the digit's NIST provenance (HSF
    series, writer, digit index, NIST class code, global index, duplicate, unused)."""
    rng = np.random.default_rng(5)
    written = {}
    for split, n in (("train", 30), ("test", 20)):
        x, y = images(rng, n, 28, 28), rng.integers(0, 10, n)
        labels = np.column_stack([y, rng.integers(0, 8, n), rng.integers(0, 4000, n), rng.integers(0, 130, n),
                                  48 + y, np.arange(n), np.zeros(n), np.zeros(n)]).astype(np.int32)
        write_idx(data_dir / "QMNIST" / "raw" / f"qmnist-{split}-images-idx3-ubyte", x)
        write_idx(data_dir / "QMNIST" / "raw" / f"qmnist-{split}-labels-idx2-int", labels)
        written[split] = (x, y)
    return written


def make_cifar10(data_dir: Path) -> dict:
    """Five training batches of 6 and a test batch of 20, each {data: (n, 3072) uint8 rows of R, G, B planes,
    labels, batch_label, filenames}, and batches.meta."""
    rng = np.random.default_rng(10)
    folder = data_dir / "cifar-10-batches-py"
    batches = []
    for i, (file, n) in enumerate(zip(CIFAR10[:6], (6, 6, 6, 6, 6, 20))):
        data, labels = images(rng, n, 3072), [int(v) for v in rng.integers(0, 10, n)]
        label = f"training batch {i + 1} of 5" if i < 5 else "testing batch 1 of 1"
        write_cifar_pickle(folder / file, {b"batch_label": label.encode(), b"labels": labels, b"data": data,
                                           b"filenames": [f"image_{i}_{k}.png".encode() for k in range(n)]})
        batches.append((data, labels))
    write_cifar_pickle(folder / "batches.meta", {
        b"num_cases_per_batch": 10000, b"num_vis": 3072,
        b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship",
                         b"truck"]})
    return {"train": (np.concatenate([d for d, _ in batches[:5]]), sum((l for _, l in batches[:5]), [])),
            "test": batches[5]}


def make_cifar100(data_dir: Path) -> dict:
    """train and test, each {filenames, batch_label, fine_labels, coarse_labels, data}, and meta."""
    rng = np.random.default_rng(100)
    folder = data_dir / "cifar-100-python"
    written = {}
    for split, n in (("train", 40), ("test", 20)):
        data, fine = images(rng, n, 3072), [int(v) for v in rng.integers(0, 100, n)]
        write_cifar_pickle(folder / split, {
            b"filenames": [f"{split}_{k}.png".encode() for k in range(n)],
            b"batch_label": f"{split}ing batch 1 of 1".encode(),
            b"fine_labels": fine, b"coarse_labels": [v // 5 for v in fine], b"data": data})
        written[split] = (data, fine)
    write_cifar_pickle(folder / "meta", {b"fine_label_names": [f"class{k}".encode() for k in range(100)],
                                         b"coarse_label_names": [f"super{k}".encode() for k in range(20)]})
    return written


def make_svhn(data_dir: Path) -> dict:
    """train_32x32.mat and test_32x32.mat: X (32, 32, 3, N) uint8, y (N, 1) uint8 with 10 for the digit 0."""
    rng = np.random.default_rng(32)
    data_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in (("train", 30), ("test", 20)):
        X, digits = images(rng, 32, 32, 3, n), rng.integers(0, 10, n)
        digits[:2] = 0  # some zeros, stored as 10
        scipy.io.savemat(data_dir / f"{split}_32x32.mat", {"X": X, "y": np.where(digits == 0, 10, digits)
                                                           .astype(np.uint8)[:, None]})
        written[split] = (X, digits)
    return written


# --- every named set, as written ---------------------------------------------------------------------------

def check(data: Arrays, shapes: tuple, classes: int) -> None:
    assert (data.train_x.shape, data.test_x.shape) == shapes
    assert data.train_x.dtype == data.test_x.dtype == np.float32
    assert data.train_y.dtype == data.test_y.dtype == np.int64
    assert data.classes == data.num_classes == classes
    assert data.input_shape == shapes[0][1:]
    assert data.val_x is None and data.val_y is None


@pytest.mark.parametrize("name, folder, files, classes", [
    ("kmnist", "KMNIST/raw", IDX, 10),
    ("emnist", "EMNIST/raw", EMNIST, 47),
])
def test_idx_sets_load_from_torchvisions_layout_standardised(tmp_path, name, folder, files, classes):
    written = make_mnist_like(tmp_path, folder, files, classes)
    data = load_dataset(name, tmp_path)
    check(data, ((30, 1, 28, 28), (20, 1, 28, 28)), classes)
    np.testing.assert_array_equal(data.train_y, written["train"][1].astype(np.int64))
    np.testing.assert_array_equal(data.test_y, written["test"][1].astype(np.int64))
    np.testing.assert_array_equal(data.train_x[7], expected(written["train"][0][7][None], name))
    np.testing.assert_array_equal(data.test_x[19], expected(written["test"][0][19][None], name))


def test_qmnist_reads_its_uncompressed_idx2_int_labels_and_takes_the_class_column(tmp_path):
    written = make_qmnist(tmp_path)
    data = load_dataset("qmnist", tmp_path)
    check(data, ((30, 1, 28, 28), (20, 1, 28, 28)), 10)
    np.testing.assert_array_equal(data.train_y, written["train"][1])
    np.testing.assert_array_equal(data.test_y, written["test"][1])
    np.testing.assert_array_equal(data.test_x[3], expected(written["test"][0][3][None], "qmnist"))


def test_the_written_cifar_pickles_have_the_real_files_keys(tmp_path):
    make_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        assert sorted(pickle.load(f, encoding="bytes")) == [b"batch_label", b"data", b"filenames", b"labels"]
    with open(tmp_path / "cifar-10-batches-py" / "batches.meta", "rb") as f:
        assert sorted(pickle.load(f, encoding="latin1")) == ["label_names", "num_cases_per_batch", "num_vis"]


def test_cifar10_loads_its_batches_in_order_channels_first_standardised(tmp_path):
    written = make_cifar10(tmp_path)
    data = load_dataset("cifar10", tmp_path)  # no md5 check: these files are not the published ones
    check(data, ((30, 3, 32, 32), (20, 3, 32, 32)), 10)
    np.testing.assert_array_equal(data.train_y, written["train"][1])
    np.testing.assert_array_equal(data.test_y, written["test"][1])
    # training image 13: data_batch_3's second row, its 3072 bytes the R, G and B planes of 32 rows of 32
    np.testing.assert_array_equal(data.train_x[13], expected(written["train"][0][13].reshape(3, 32, 32), "cifar10"))
    np.testing.assert_array_equal(data.test_x[0], expected(written["test"][0][0].reshape(3, 32, 32), "cifar10"))
    assert data.train_x.flags.c_contiguous and data.test_x.flags.c_contiguous


def test_cifar100_loads_fine_labels_with_100_classes(tmp_path):
    written = make_cifar100(tmp_path)
    data = load_dataset("cifar100", tmp_path)
    check(data, ((40, 3, 32, 32), (20, 3, 32, 32)), 100)
    np.testing.assert_array_equal(data.train_y, written["train"][1])
    np.testing.assert_array_equal(data.test_y, written["test"][1])
    np.testing.assert_array_equal(data.train_x[39], expected(written["train"][0][39].reshape(3, 32, 32), "cifar100"))


def test_svhn_reads_its_mat_files_with_label_10_as_the_digit_0(tmp_path):
    written = make_svhn(tmp_path)
    data = load_dataset("svhn", tmp_path)
    check(data, ((30, 3, 32, 32), (20, 3, 32, 32)), 10)
    np.testing.assert_array_equal(data.train_y, written["train"][1])
    np.testing.assert_array_equal(data.test_y, written["test"][1])
    assert data.train_y[:2].tolist() == [0, 0] and data.train_y.max() <= 9
    X = written["test"][0]  # (H, W, C, N)
    np.testing.assert_array_equal(data.test_x[5], expected(X[:, :, :, 5].transpose(2, 0, 1), "svhn"))


def test_the_normalisation_table_is_the_published_numbers():
    assert NORMALISATION == PUBLISHED


def test_datasets_lists_every_set():
    assert DATASETS == ("fashion_mnist", "mnist", "kmnist", "emnist", "qmnist", "cifar10", "cifar100", "svhn",
                        "imagefolder", "synthetic")


def test_mnist_stays_in_0_1_with_ten_classes(tmp_path):
    written = make_mnist_like(tmp_path, "MNIST/raw", IDX, 10)
    data = load_dataset("mnist", tmp_path, train_limit=10)
    check(data, ((10, 1, 28, 28), (20, 1, 28, 28)), 10)
    np.testing.assert_array_equal(data.train_x[:, 0], written["train"][0][:10].astype(np.float32) / 255.0)


def test_limits_and_validation_keep_the_classes(tmp_path):
    make_cifar100(tmp_path)
    data = load_dataset("cifar100", tmp_path, train_limit=20, test_limit=5, validation=10)
    assert (len(data.train_y), len(data.val_y), len(data.test_y)) == (20, 10, 5)
    assert data.classes == 100  # not the largest label seen + 1
    assert load_dataset("synthetic", None, 64, 32, 16).classes == 10
    assert synthetic(8, 8).classes == 10


def test_num_classes_without_classes_is_the_largest_label_plus_one():
    data = Arrays(np.zeros((3, 2), np.float32), np.array([0, 4, 1]), np.zeros((2, 2), np.float32), np.array([6, 0]))
    assert data.classes is None and data.num_classes == 7 and data.input_shape == (2,)


# --- an image folder -----------------------------------------------------------------------------------------

def write_png(path: Path, pixels: np.ndarray, mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode).save(path)


def make_image_folder(data_dir: Path, rgb: str | None = None, size=(6, 8)) -> dict:
    """train/{cat,dog,emu}/ and test/{cat,dog,emu}/ of grayscale PNGs (8 rows of 6); `rgb` names one that is
    RGB instead. Returns {path: pixels} in the order the loader reads them."""
    rng = np.random.default_rng(3)
    written = {}
    for split, per_class in (("train", 7), ("test", 3)):
        for label in ("cat", "dog", "emu"):
            for k in range(per_class):
                path = data_dir / split / label / f"{k:02d}.png"
                if str(path.relative_to(data_dir)) == rgb:
                    pixels = images(rng, 1, size[1], size[0], 3)[0]
                    write_png(path, pixels, "RGB")
                else:
                    pixels = images(rng, 1, size[1], size[0])[0]
                    write_png(path, pixels, "L")
                written[path] = pixels
    return written


def test_an_image_folder_of_grayscale_pngs_is_one_channel_in_0_1(tmp_path):
    written = make_image_folder(tmp_path)
    data = load_dataset("imagefolder", tmp_path)
    check(data, ((21, 1, 8, 6), (9, 1, 8, 6)), 3)
    assert data.train_y.tolist() == [0] * 7 + [1] * 7 + [2] * 7 and data.test_y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    pixels = list(written.values())
    np.testing.assert_array_equal(data.train_x[:, 0], np.stack(pixels[:21]).astype(np.float32) / 255.0)
    np.testing.assert_array_equal(data.test_x[:, 0], np.stack(pixels[21:]).astype(np.float32) / 255.0)


def test_an_image_folder_with_any_colour_image_is_rgb(tmp_path):
    written = make_image_folder(tmp_path, rgb="test/dog/01.png")
    data = load_dataset("imagefolder", tmp_path)
    check(data, ((21, 3, 8, 6), (9, 3, 8, 6)), 3)
    gray = written[tmp_path / "train" / "cat" / "00.png"]
    np.testing.assert_array_equal(data.train_x[0], np.stack([gray] * 3).astype(np.float32) / 255.0)
    colour = written[tmp_path / "test" / "dog" / "01.png"]
    np.testing.assert_array_equal(data.test_x[4], colour.transpose(2, 0, 1).astype(np.float32) / 255.0)


def test_an_image_folder_of_two_sizes_is_refused_naming_the_first_other(tmp_path):
    make_image_folder(tmp_path)
    odd = tmp_path / "train" / "dog" / "02.png"
    write_png(odd, np.zeros((5, 6), np.uint8), "L")
    write_png(tmp_path / "test" / "emu" / "02.png", np.zeros((9, 9), np.uint8), "L")
    assert refused("imagefolder", tmp_path) == (
        f"Image folder {tmp_path}: {odd} is 6x5 pixels, not 6x8 as {tmp_path}/train/cat/00.png is: all images "
        "must be one size")


def test_an_image_folder_whose_test_classes_differ_is_refused(tmp_path):
    make_image_folder(tmp_path)
    (tmp_path / "test" / "emu").rename(tmp_path / "test" / "eel")
    assert refused("imagefolder", tmp_path) == (
        f"Image folder {tmp_path}/test has the classes cat, dog, eel, train's are cat, dog, emu: the test split "
        "must have the same class folders")


def test_an_image_folder_without_test_or_with_a_corrupt_image_is_refused(tmp_path):
    make_image_folder(tmp_path / "a")
    bad = tmp_path / "a" / "test" / "cat" / "01.png"
    bad.write_bytes(bad.read_bytes()[:20])
    assert refused("imagefolder", tmp_path / "a") == (
        f"Image folder {tmp_path}/a: {bad} cannot be read (OSError: Truncated File Read)")
    (tmp_path / "b" / "train").mkdir(parents=True)
    assert refused("imagefolder", tmp_path / "b") == (
        f"Image folder not found in {tmp_path}/b (missing test; nothing is downloaded at run time): put one folder "
        "of images per class in train/ and in test/ there, or set dataset.data_dir to the folder that holds train/ "
        "and test/")
    assert refused("imagefolder", tmp_path / "c") == (
        f"Image folder not found: dataset.data_dir {tmp_path}/c does not exist (it is never created at run time); "
        "set dataset.data_dir to the folder that holds train/ and test/, each with one folder of images per class")


# --- refusals of the named sets ------------------------------------------------------------------------------

MAKE = {
    "kmnist": lambda d: make_mnist_like(d, "KMNIST/raw", IDX, 10),
    "emnist": lambda d: make_mnist_like(d, "EMNIST/raw", EMNIST, 47),
    "qmnist": make_qmnist,
    "cifar10": make_cifar10,
    "cifar100": make_cifar100,
    "svhn": make_svhn,
}

NOT_THERE = {
    "kmnist": "KMNIST not found: dataset.data_dir {d} does not exist (it is never created at run time); set "
              "dataset.data_dir to the folder that holds KMNIST/raw/ with train-images-idx3-ubyte, "
              "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte",
    "emnist": "EMNIST not found: dataset.data_dir {d} does not exist (it is never created at run time); set "
              "dataset.data_dir to the folder that holds EMNIST/raw/ with emnist-balanced-train-images-idx3-ubyte, "
              "emnist-balanced-train-labels-idx1-ubyte, emnist-balanced-test-images-idx3-ubyte, "
              "emnist-balanced-test-labels-idx1-ubyte",
    "qmnist": "QMNIST not found: dataset.data_dir {d} does not exist (it is never created at run time); set "
              "dataset.data_dir to the folder that holds QMNIST/raw/ with qmnist-train-images-idx3-ubyte, "
              "qmnist-train-labels-idx2-int, qmnist-test-images-idx3-ubyte, qmnist-test-labels-idx2-int",
    "cifar10": "CIFAR-10 not found: dataset.data_dir {d} does not exist (it is never created at run time); set "
               "dataset.data_dir to the folder that holds cifar-10-batches-py/ with data_batch_1, data_batch_2, "
               "data_batch_3, data_batch_4, data_batch_5, test_batch, batches.meta",
    "cifar100": "CIFAR-100 not found: dataset.data_dir {d} does not exist (it is never created at run time); set "
                "dataset.data_dir to the folder that holds cifar-100-python/ with train, test, meta",
    "svhn": "SVHN not found: dataset.data_dir {d} does not exist (it is never created at run time); set "
            "dataset.data_dir to the folder that holds train_32x32.mat and test_32x32.mat",
}


@pytest.mark.parametrize("name", sorted(NOT_THERE))
def test_a_data_dir_that_does_not_exist_is_one_line_and_never_made(tmp_path, name):
    assert refused(name, tmp_path / "dta") == NOT_THERE[name].format(d=tmp_path / "dta")
    assert list(tmp_path.iterdir()) == []


MISSING = {  # (the file removed, the line)
    "kmnist": ("t10k-labels-idx1-ubyte",
               "KMNIST not found in {d}/KMNIST/raw (missing t10k-labels-idx1-ubyte; nothing is downloaded at run "
               "time): put the four unpacked idx files there, or set dataset.data_dir to the folder that holds "
               "KMNIST/raw"),
    "emnist": ("emnist-balanced-train-images-idx3-ubyte",
               "EMNIST not found in {d}/EMNIST/raw (missing emnist-balanced-train-images-idx3-ubyte; nothing is "
               "downloaded at run time): put the balanced split's four idx files of EMNIST's gzip.zip there "
               "unpacked, or set dataset.data_dir to the folder that holds EMNIST/raw"),
    "qmnist": ("qmnist-test-labels-idx2-int",
               "QMNIST not found in {d}/QMNIST/raw (missing qmnist-test-labels-idx2-int; nothing is downloaded at "
               "run time): put QMNIST's four idx files there unpacked, or set dataset.data_dir to the folder that "
               "holds QMNIST/raw"),
    "cifar10": ("data_batch_4",
                "CIFAR-10 not found in {d}/cifar-10-batches-py (missing data_batch_4; nothing is downloaded at run "
                "time): put the files of cifar-10-python.tar.gz there unpacked, or set dataset.data_dir to the "
                "folder that holds cifar-10-batches-py"),
    "cifar100": ("meta",
                 "CIFAR-100 not found in {d}/cifar-100-python (missing meta; nothing is downloaded at run time): put "
                 "the files of cifar-100-python.tar.gz there unpacked, or set dataset.data_dir to the folder that "
                 "holds cifar-100-python"),
    "svhn": ("test_32x32.mat",
             "SVHN not found in {d} (missing test_32x32.mat; nothing is downloaded at run time): put SVHN's "
             "train_32x32.mat and test_32x32.mat there, or set dataset.data_dir to the folder that holds "
             "train_32x32.mat and test_32x32.mat"),
}


@pytest.mark.parametrize("name", sorted(MISSING))
def test_a_missing_file_is_one_line_naming_it_and_nothing_is_fetched(tmp_path, name):
    MAKE[name](tmp_path)
    file, line = MISSING[name]
    next(tmp_path.rglob(file)).unlink()
    assert refused(name, tmp_path) == line.format(d=tmp_path)


def test_an_empty_data_dir_names_every_file(tmp_path):
    assert refused("cifar10", tmp_path) == (
        f"CIFAR-10 not found in {tmp_path}/cifar-10-batches-py (missing data_batch_1, data_batch_2, data_batch_3, "
        "data_batch_4, data_batch_5, test_batch, batches.meta; nothing is downloaded at run time): put the files of "
        "cifar-10-python.tar.gz there unpacked, or set dataset.data_dir to the folder that holds cifar-10-batches-py")
    assert list(tmp_path.iterdir()) == []


def truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_a_truncated_cifar_pickle_is_one_line(tmp_path):
    make_cifar10(tmp_path)
    truncate(tmp_path / "cifar-10-batches-py" / "data_batch_2", 500)
    assert refused("cifar10", tmp_path) == (
        f"CIFAR-10 in {tmp_path}/cifar-10-batches-py cannot be read (UnpicklingError: pickle data was truncated): "
        "put the files of cifar-10-python.tar.gz there unpacked (data_batch_1, data_batch_2, data_batch_3, "
        "data_batch_4, data_batch_5, test_batch, batches.meta)")


def test_a_truncated_idx_file_is_one_line(tmp_path):
    make_mnist_like(tmp_path, "KMNIST/raw", IDX, 10)
    truncate(tmp_path / "KMNIST" / "raw" / "t10k-images-idx3-ubyte", 1000)
    assert refused("kmnist", tmp_path) == (
        f"KMNIST in {tmp_path}/KMNIST/raw cannot be read (RuntimeError: shape '[20, 28, 28]' is invalid for input "
        "of size 984): put the four unpacked idx files there (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte)")
    make_qmnist(tmp_path)
    truncate(tmp_path / "QMNIST" / "raw" / "qmnist-train-labels-idx2-int", 100)
    assert refused("qmnist", tmp_path) == (
        f"QMNIST in {tmp_path}/QMNIST/raw cannot be read (AssertionError): put QMNIST's four idx files there "
        "unpacked (qmnist-train-images-idx3-ubyte, qmnist-train-labels-idx2-int, qmnist-test-images-idx3-ubyte, "
        "qmnist-test-labels-idx2-int)")
    make_mnist_like(tmp_path, "MNIST/raw", IDX, 10)  # MNIST keeps its line
    truncate(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte", 116)
    assert refused("mnist", tmp_path) == (
        f"MNIST in {tmp_path}/MNIST/raw cannot be read: shape '[30, 28, 28]' is invalid for input of size 100")


def test_a_corrupt_svhn_mat_file_and_labels_out_of_range_are_one_line(tmp_path):
    make_svhn(tmp_path)
    truncate(tmp_path / "train_32x32.mat", 1000)
    assert refused("svhn", tmp_path) == (
        f"SVHN in {tmp_path} cannot be read (OSError: could not read bytes): put SVHN's train_32x32.mat and "
        "test_32x32.mat there (train_32x32.mat, test_32x32.mat)")
    make_mnist_like(tmp_path, "EMNIST/raw", EMNIST, 47)
    write_idx(tmp_path / "EMNIST" / "raw" / EMNIST[3], np.full(20, 47, np.uint8))
    assert refused("emnist", tmp_path) == (
        f"EMNIST in {tmp_path}/EMNIST/raw cannot be read (ValueError: labels 47..47, not within 0..46): put the "
        "balanced split's four idx files of EMNIST's gzip.zip there unpacked (emnist-balanced-train-images-idx3-ubyte, "
        "emnist-balanced-train-labels-idx1-ubyte, emnist-balanced-test-images-idx3-ubyte, "
        "emnist-balanced-test-labels-idx1-ubyte)")


# --- a data factory ------------------------------------------------------------------------------------------

WHO = "dataset.factory data.py:load"


def from_factory(result, **kwargs) -> Arrays:
    return load_dataset("ignored", None, factory=lambda: result, factory_name=WHO, **kwargs)


def factory_refusal(result) -> str:
    with pytest.raises(DataError) as err:
        from_factory(result)
    assert "\n" not in str(err.value)
    return str(err.value)


class Items(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_a_factory_of_tensor_pairs_is_taken_as_given(tmp_path):
    g = torch.Generator().manual_seed(0)
    train = (torch.rand(30, 3, 4, 5, generator=g), torch.randint(0, 4, (30,), generator=g))
    test = (np.arange(2 * 60, dtype=np.uint8).reshape(2, 3, 4, 5), np.array([7, 0], dtype=np.int32))
    data = from_factory((train, test))
    check(data, ((30, 3, 4, 5), (2, 3, 4, 5)), 8)  # 8: the largest label (test's 7) + 1
    np.testing.assert_array_equal(data.train_x, train[0].numpy())  # no normalisation
    np.testing.assert_array_equal(data.train_y, train[1].numpy())
    np.testing.assert_array_equal(data.test_x, np.arange(120, dtype=np.float32).reshape(2, 3, 4, 5))
    assert data.test_y.tolist() == [7, 0]
    assert list(tmp_path.iterdir()) == []


def test_a_factory_of_datasets_reads_every_item_and_gives_images_a_channel_axis():
    rng = np.random.default_rng(1)
    pixels = rng.random((12, 6, 5)).astype(np.float64)
    train = Items([(pixels[i], i % 3) for i in range(10)])  # x arrays, y ints
    test = torch.utils.data.TensorDataset(torch.tensor(pixels[10:]), torch.tensor([2, 1]))  # y 0-d tensors
    data = from_factory([train, test])
    check(data, ((10, 1, 6, 5), (2, 1, 6, 5)), 3)
    np.testing.assert_array_equal(data.train_x[:, 0], pixels[:10].astype(np.float32))
    assert data.train_y.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0] and data.test_y.tolist() == [2, 1]
    flat = from_factory(((np.ones((4, 7), np.int64), np.array([0, 1, 0, 1])),
                         (np.zeros((2, 7)), np.array([1, 0]))))
    check(flat, ((4, 7), (2, 7)), 2)  # (N, features) stays as it is
    images = from_factory(((torch.zeros(4, 6, 5), torch.tensor([0, 1, 0, 1])),
                           (torch.zeros(2, 6, 5), torch.tensor([1, 0]))))
    assert images.input_shape == (1, 6, 5)


def test_limits_and_validation_work_on_a_factorys_data():
    x = np.arange(40 * 3, dtype=np.float32).reshape(40, 3)
    y = np.arange(40) % 4
    data = from_factory(((x, y), (x[:10], y[:10])), train_limit=20, test_limit=5, validation=8)
    held = validation_split(y, 8)
    rest = np.setdiff1d(np.arange(40), held)
    np.testing.assert_array_equal(data.val_x, x[held])
    np.testing.assert_array_equal(data.val_y, y[held])
    assert np.bincount(data.val_y).tolist() == [2, 2, 2, 2]
    np.testing.assert_array_equal(data.train_x, x[rest[:20]])
    np.testing.assert_array_equal(data.test_y, y[:5])
    assert data.classes == 4 and data.input_shape == (3,)
    assert from_factory(((x, y), (x, y)), validation=0.25).val_y.shape == (10,)


def test_a_factory_that_raises_is_its_errors_last_line():
    def load():
        raise FileNotFoundError("looked in:\n  /data/a\nno file /data/a/train.npz")

    with pytest.raises(DataError) as err:
        load_dataset("fashion_mnist", None, factory=load, factory_name=WHO)
    assert str(err.value) == f"{WHO} raised FileNotFoundError: no file /data/a/train.npz"
    with pytest.raises(DataError) as err:
        load_dataset("fashion_mnist", None, factory=lambda: 1 / 0)
    assert str(err.value) == "dataset.factory raised ZeroDivisionError: division by zero"


def pair(n=4, shape=(3,), labels=None):
    return np.zeros((n, *shape), np.float32), np.array(labels if labels is not None else [0, 1] * (n // 2))


FORM = ("it must return (train, test), each a torch Dataset of (x, y) items or an (x, y) pair of tensors or "
        "arrays")


@pytest.mark.parametrize("result, line", [
    (torch.zeros(3), f"{WHO} returned Tensor; {FORM}"),
    ((pair(), pair(), pair()), f"{WHO} returned tuple of 3; {FORM}"),
    ((pair(), {"x": 1}), f"{WHO}: its test set is dict; {FORM}"),
    (((np.array([["a", "b"]] * 2), np.array([0, 1])), pair()), f"{WHO}: train x is <U1, not numbers"),
    (((np.zeros(4), np.array([0, 1, 0, 1])), pair()),
     f"{WHO}: train x has shape (4,); it must be (N, features) at least"),
    ((pair(), pair(labels=[0.0, 1.0, 0.0, 1.0])), f"{WHO}: test y is float64; labels must be integers"),
    ((pair(), (np.zeros((4, 3)), np.zeros((4, 1), np.int64))),
     f"{WHO}: test y has shape (4, 1); it must be (4,), one label per example"),
    ((pair(), (np.zeros((4, 3)), np.array([0, 1, 2]))),
     f"{WHO}: test y has shape (3,); it must be (4,), one label per example"),
    ((pair(labels=[0, -1, 0, 1]), pair()), f"{WHO}: train y has the label -1; labels must be 0 or more"),
    ((pair(n=0, labels=[]), pair()), f"{WHO}: its train set is empty"),
    ((pair(), Items([])), f"{WHO}: its test set is empty"),
    ((pair(shape=(3, 8, 8)), pair(shape=(3, 8, 9))),
     f"{WHO}: train examples have shape (3, 8, 8), test examples (3, 8, 9): they must be the same"),
    ((pair(shape=(6, 5)), pair(shape=(2, 6, 5))),  # (N, 6, 5) images get their channel axis first
     f"{WHO}: train examples have shape (1, 6, 5), test examples (2, 6, 5): they must be the same"),
    ((Items([(np.zeros(3), 0), np.zeros(3)]), pair()), f"{WHO}: train item 1 is ndarray, not an (x, y) pair"),
    ((Items([(np.zeros(3), 0), (np.zeros(4), 1)]), pair()),
     f"{WHO}: train item 1's x has shape (4,), item 0's (3,): all must be one shape"),
    (((np.zeros((2, 3)), [[0], [1, 2]]), pair()),
     f"{WHO}: its train x and y cannot be made arrays (ValueError: setting an array element with a sequence. The "
     "requested array has an inhomogeneous shape after 1 dimensions. The detected shape was (2,) + inhomogeneous "
     "part.)"),
], ids=lambda v: "" if not isinstance(v, str) else v[len(WHO) + 2:][:40])
def test_a_factorys_result_is_checked_with_one_line(result, line):
    assert factory_refusal(result) == line


def test_a_dataset_whose_items_raise_is_one_line():
    class Broken(Items):
        def __getitem__(self, i):
            if i == 2:
                raise KeyError("img_0002.png")
            return np.zeros(3), 0

    assert factory_refusal((Broken([0] * 4), pair())) == f"{WHO}: reading its train set raised KeyError: 'img_0002.png'"
