"""Data: the real Fashion-MNIST from Debian's package, and the synthetic set."""
import numpy as np
import pytest

from sweep.data.datasets import DataError, load_dataset, prepare_fashion_mnist, synthetic, validation_split


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


def test_validation_is_held_out_of_training_stratified_and_the_same_every_time(tmp_path):
    """dataset.validation: 5000 of Fashion-MNIST's 60,000 training images, 500 per class, never in the training
    arrays (the trials draw every batch from those, whatever their seed), the same on every load; train_limit
    counts from the rest."""
    prepare_fashion_mnist(tmp_path)
    full = load_dataset("fashion_mnist", tmp_path)
    split = load_dataset("fashion_mnist", tmp_path, 20000, 1000, 5000)
    assert (split.train_x.shape[0], split.val_x.shape[0], split.test_x.shape[0]) == (20000, 5000, 1000)
    assert np.bincount(split.val_y).tolist() == [500] * 10
    held = validation_split(full.train_y, 5000)
    rest = np.setdiff1d(np.arange(60000), held)
    np.testing.assert_array_equal(split.val_x, full.train_x[held])
    np.testing.assert_array_equal(split.train_x, full.train_x[rest[:20000]])  # the first 20,000 of the rest
    assert not np.isin(rest[:20000], held).any()
    again = load_dataset("fashion_mnist", tmp_path, None, None, 5000)
    np.testing.assert_array_equal(again.val_y, split.val_y)
    fraction = load_dataset("fashion_mnist", tmp_path, None, None, 0.1)
    assert (fraction.val_x.shape[0], fraction.train_x.shape[0]) == (6000, 54000)


def test_synthetic_holds_validation_out_beside_its_train_limit():
    data = load_dataset("synthetic", None, 256, 64, 64)
    assert (len(data.train_y), len(data.val_y), len(data.test_y)) == (256, 64, 64)
    assert load_dataset("synthetic", None, 256, 64).val_x is None


def test_a_validation_that_leaves_nothing_to_train_on_is_one_line(tmp_path):
    prepare_fashion_mnist(tmp_path)
    with pytest.raises(DataError) as err:
        load_dataset("fashion_mnist", tmp_path, validation=60000)
    assert str(err.value) == ("dataset.validation: 60000 holds out 60000 of the 60000 training examples; it must "
                              "leave some on each side")
