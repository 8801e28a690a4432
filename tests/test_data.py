"""Data: the real Fashion-MNIST from Debian's package, and the synthetic set."""
import numpy as np
import pytest

from sweep.data import DataError, load_dataset, prepare_fashion_mnist, synthetic


def test_fashion_mnist_unpacks_into_torchvision_layout_and_loads(tmp_path):
    raw = prepare_fashion_mnist(tmp_path)
    assert raw == tmp_path / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == [
        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "train-images-idx3-ubyte", "train-labels-idx1-ubyte"]
    data = load_dataset("fashion_mnist", tmp_path)
    assert data.train_x.shape == (60000, 1, 28, 28) and data.test_x.shape == (10000, 1, 28, 28)
    assert data.train_x.dtype == np.float32 and data.train_y.dtype == np.int64
    assert data.train_x.min() == 0.0 and data.train_x.max() == 1.0
    assert np.bincount(data.train_y).tolist() == [6000] * 10
    assert np.bincount(data.test_y).tolist() == [1000] * 10
    assert data.train_y[0] == 9  # the first training image is an ankle boot


def test_limits_take_the_first_examples(tmp_path):
    prepare_fashion_mnist(tmp_path)
    full = load_dataset("fashion_mnist", tmp_path)
    small = load_dataset("fashion_mnist", tmp_path, train_limit=100, test_limit=50)
    assert small.train_x.shape[0] == 100 and small.test_y.shape[0] == 50
    assert np.array_equal(small.train_y, full.train_y[:100])


def test_synthetic_is_deterministic_and_in_range():
    a, b = synthetic(64, 32), synthetic(64, 32)
    assert np.array_equal(a.train_x, b.train_x) and np.array_equal(a.test_y, b.test_y)
    assert a.train_x.shape == (64, 1, 28, 28) and 0.0 <= a.train_x.min() and a.train_x.max() <= 1.0
    assert set(np.unique(a.train_y)) <= set(range(10))


def test_a_data_dir_that_does_not_exist_is_one_line_and_never_made(tmp_path):
    missing = tmp_path / "dta"  # a typo of data
    with pytest.raises(DataError) as refused:
        load_dataset("fashion_mnist", missing)
    assert str(refused.value) == (
        f"Fashion-MNIST not found: dataset.data_dir {missing} does not exist (it is never created at run time); "
        "create it (Debian's dataset-fashion-mnist, from `apt-get install dataset-fashion-mnist`, is unpacked there "
        "once) or set dataset.data_dir to the folder that holds FashionMNIST/raw")
    with pytest.raises(DataError) as refused:
        load_dataset("mnist", missing)
    assert str(refused.value) == (
        f"MNIST not found: dataset.data_dir {missing} does not exist (it is never created at run time); "
        "set dataset.data_dir to the folder that holds MNIST/raw")
    assert list(tmp_path.iterdir()) == []


def test_mnist_without_its_files_is_never_downloaded(tmp_path, monkeypatch):
    import urllib.request

    def no_network(*args, **kwargs):
        raise AssertionError("a download was tried")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(DataError) as refused:
        load_dataset("mnist", tmp_path)
    assert str(refused.value) == (
        f"MNIST not found in {tmp_path}/MNIST/raw (missing train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; nothing is downloaded at run time): put the four unpacked "
        "idx files there, or set dataset.data_dir to the folder that holds MNIST/raw")
    assert list(tmp_path.iterdir()) == []  # no empty MNIST/raw left behind


def test_mnist_reads_its_idx_files_from_data_dir(tmp_path):
    # Fashion-MNIST's files have MNIST's format: in MNIST/raw they load as MNIST, offline.
    raw = prepare_fashion_mnist(tmp_path)
    (tmp_path / "MNIST").mkdir()
    raw.rename(tmp_path / "MNIST" / "raw")
    data = load_dataset("mnist", tmp_path, train_limit=10, test_limit=5)
    assert data.train_x.shape == (10, 1, 28, 28) and data.train_y[0] == 9
