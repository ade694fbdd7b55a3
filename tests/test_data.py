"""Tests for fingerprinting.data: readers on tiny fake trees, split rules."""

import gzip
import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from fingerprinting import data


def cfg(name, **kw):
    base = dict(
        name=name,
        dir=None,
        seed=0,
        d1_size=None,
        d2_size=None,
        test_size=None,
        resize=None,
        channels=None,
    )
    base.update(kw)
    return ml_collections.ConfigDict(base)


def rows(split):
    return {r.tobytes() for r in split.x.reshape(len(split), -1)}


# ------------------------------------------------------------------ digits --


def test_digits_defaults_shapes_and_range():
    s = data.load_splits(cfg("digits"))
    assert (len(s.d1), len(s.d2), len(s.test)) == (719, 719, 359)
    assert s.input_shape == (8, 8, 1) and s.num_classes == 10
    assert s.class_names == tuple("0123456789")
    for part in (s.d1, s.d2, s.test):
        assert part.x.dtype == np.float32 and part.y.dtype == np.int32
        assert part.x.min() >= 0.0 and part.x.max() <= 1.0
    assert s.d1.x.max() == 1.0  # 16 / 16: scaled by 16, not 255


def test_digits_disjoint_parties_and_test():
    s = data.load_splits(cfg("digits", seed=3))
    a, b, t = rows(s.d1), rows(s.d2), rows(s.test)
    assert len(a) == len(s.d1) and not a & b and not a & t and not b & t


def test_digits_deterministic_per_seed():
    a = data.load_splits(cfg("digits", seed=1, d1_size=50, d2_size=40))
    b = data.load_splits(cfg("digits", seed=1, d1_size=50, d2_size=40))
    c = data.load_splits(cfg("digits", seed=2, d1_size=50, d2_size=40))
    for p in ("d1", "d2", "test"):
        np.testing.assert_array_equal(getattr(a, p).x, getattr(b, p).x)
        np.testing.assert_array_equal(getattr(a, p).y, getattr(b, p).y)
    assert not np.array_equal(a.d1.x, c.d1.x)
    assert not np.array_equal(a.test.x, c.test.x)


def test_digits_test_holdout_does_not_depend_on_party_sizes():
    a = data.load_splits(cfg("digits", d1_size=10, d2_size=10, test_size=20))
    b = data.load_splits(cfg("digits", d1_size=700, d2_size=5))
    np.testing.assert_array_equal(a.test.x, b.test.x[:20])
    np.testing.assert_array_equal(a.d1.x, b.d1.x[:10])


def test_load_raw_digits_and_take():
    pool, test, names = data.load_raw("digits")
    assert len(pool) == 1797 and len(test) == 0 and len(names) == 10
    assert pool.x.shape == (1797, 8, 8, 1) and test.x.shape == (0, 8, 8, 1)
    head = pool.take(5)
    assert len(head) == 5 and np.array_equal(head.y, pool.y[:5])
    with pytest.raises(data.DataError):
        pool.take(2000)


def test_too_many_requested():
    with pytest.raises(data.DataError, match="only 1438"):
        data.load_splits(cfg("digits", d1_size=1000, d2_size=1000))
    with pytest.raises(data.DataError, match="only 359"):
        data.load_splits(cfg("digits", test_size=400))


def test_unknown_name_lists_known():
    with pytest.raises(data.DataError, match="cifar10.*cinic10.*imagenet32"):
        data.load_splits(cfg("mnist"))
    with pytest.raises(data.DataError, match="digits, fashion_mnist"):
        data.load_raw("svhn")


def test_bad_config_values():
    with pytest.raises(data.DataError, match="channels"):
        data.load_splits(cfg("digits", channels=2))
    with pytest.raises(data.DataError, match="d1_size"):
        data.load_splits(cfg("digits", d1_size=-1))


def test_resize_and_channels():
    s = data.load_splits(cfg("digits", d1_size=6, d2_size=4, test_size=3, resize=16, channels=3))
    assert s.input_shape == (16, 16, 3)
    assert s.d2.x.shape == (4, 16, 16, 3) and s.test.x.shape == (3, 16, 16, 3)
    assert s.d1.x.dtype == np.float32
    assert 0.0 <= s.d1.x.min() and s.d1.x.max() <= 1.0
    np.testing.assert_array_equal(s.d1.x[..., 0], s.d1.x[..., 2])
    # A constant image stays constant through bilinear resizing.
    flat = data.splits._resize(np.full((2, 8, 8, 1), 0.25, np.float32), 5)
    np.testing.assert_allclose(flat, 0.25, atol=1e-6)
    gray = data.splits.to_channels(np.ones((1, 2, 2, 3), np.float32), 1)
    assert gray.shape == (1, 2, 2, 1)
    np.testing.assert_allclose(gray, 1.0, atol=1e-6)


# ----------------------------------------------------------- fashion_mnist --


def write_idx(path, magic, arr):
    head = np.array([magic, *arr.shape], ">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(head + arr.astype(np.uint8).tobytes())


@pytest.fixture
def fashion_dir(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("t10k", 10)):
        write_idx(
            tmp_path / f"{split}-images-idx3-ubyte.gz", 2051, rng.integers(0, 256, (n, 28, 28))
        )
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", 2049, np.arange(n) % 10)
    return tmp_path


def test_fashion_mnist_from_idx(fashion_dir):
    pool, test, names = data.load_raw("fashion_mnist", str(fashion_dir))
    assert pool.x.shape == (20, 28, 28, 1) and test.x.shape == (10, 28, 28, 1)
    assert names[0] == "T-shirt/top" and names[9] == "Ankle boot"
    np.testing.assert_array_equal(pool.y, np.arange(20) % 10)
    s = data.load_splits(
        cfg("fashion_mnist", dir=str(fashion_dir), d1_size=8, d2_size=12, test_size=10)
    )
    assert (len(s.d1), len(s.d2), len(s.test)) == (8, 12, 10)
    assert not rows(s.d1) & rows(s.d2)
    assert rows(s.test) == rows(test)  # the whole test split, shuffled


def test_fashion_mnist_defaults_exceed_fake_data(fashion_dir):
    with pytest.raises(data.DataError, match="only 20"):
        data.load_splits(cfg("fashion_mnist", dir=str(fashion_dir)))


def test_fashion_mnist_bad_magic(fashion_dir):
    write_idx(fashion_dir / "t10k-labels-idx1-ubyte.gz", 2051, np.zeros(10))
    with pytest.raises(data.DataError, match="magic number 2051.*2049"):
        data.load_raw("fashion_mnist", str(fashion_dir))


def test_fashion_mnist_size_mismatch(fashion_dir):
    path = fashion_dir / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(np.array([2051, 20, 28, 28], ">u4").tobytes() + b"\0" * 100)
    with pytest.raises(data.DataError, match="declares dims"):
        data.load_raw("fashion_mnist", str(fashion_dir))


def test_fashion_mnist_missing_file(fashion_dir):
    os.remove(fashion_dir / "train-labels-idx1-ubyte.gz")
    with pytest.raises(data.DataError, match="train-labels-idx1-ubyte.gz"):
        data.load_raw("fashion_mnist", str(fashion_dir))


def test_fashion_mnist_debian_default(fashion_dir, monkeypatch):
    monkeypatch.setattr(data.readers, "_FASHION_DEBIAN_DIR", str(fashion_dir))
    pool, test, _ = data.load_raw("fashion_mnist")
    assert (len(pool), len(test)) == (20, 10)


# ----------------------------------------------------------------- cinic10 --


@pytest.fixture
def cinic_dir(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 2), ("valid", 1), ("test", 1)):
        for cls in data.CINIC10_CLASSES:
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(img).save(folder / f"{cls}_{i}.png")
    # CINIC holds a few grayscale PNGs.
    gray = np.full((32, 32), 77, np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "valid" / "cat" / "g.png")
    return tmp_path


def test_cinic10_reads_tree(cinic_dir):
    pool, test, names = data.load_raw("cinic10", str(cinic_dir))
    assert names == data.CINIC10_CLASSES
    assert pool.x.shape == (31, 32, 32, 3)  # 20 train + 10 valid + 1 gray
    assert test.x.shape == (10, 32, 32, 3)
    assert np.bincount(pool.y).tolist() == [3, 3, 3, 4, 3, 3, 3, 3, 3, 3]
    is_gray = np.all(pool.x == np.float32(77 / 255), axis=(1, 2, 3))
    assert is_gray.sum() == 1 and pool.y[is_gray][0] == 3
    s = data.load_splits(cfg("cinic10", dir=str(cinic_dir), d1_size=10, d2_size=21, test_size=4))
    assert s.input_shape == (32, 32, 3) and len(s.d2) == 21


def test_cinic10_missing_class_folder(cinic_dir):
    for f in os.listdir(cinic_dir / "test" / "frog"):
        os.remove(cinic_dir / "test" / "frog" / f)
    os.rmdir(cinic_dir / "test" / "frog")
    with pytest.raises(data.DataError, match="frog"):
        data.load_raw("cinic10", str(cinic_dir))


def test_cinic10_missing_valid(cinic_dir):
    os.rename(cinic_dir / "valid", cinic_dir / "validation")
    with pytest.raises(data.DataError, match="valid"):
        data.load_raw("cinic10", str(cinic_dir))


def test_cinic10_empty_class_folder(cinic_dir):
    folder = cinic_dir / "train" / "ship"
    for f in os.listdir(folder):
        os.remove(folder / f)
    with pytest.raises(data.DataError, match="no .png"):
        data.load_raw("cinic10", str(cinic_dir))


def test_cinic10_missing_dir(tmp_path):
    with pytest.raises(data.DataError, match="does not exist"):
        data.load_raw("cinic10", str(tmp_path / "nope"))
    with pytest.raises(data.DataError, match="data dir"):
        data.load_raw("cinic10")


# -------------------------------------------------------------- imagenet32 --


def planar(n, fill=0):
    return np.full((n, 3072), fill, np.uint8)


@pytest.fixture
def imagenet_dir(tmp_path):
    # Each train batch: kit fox (1), English setter (2, not among the 100),
    # pole (923), sandal (751).
    for i in range(1, 11):
        np.savez(
            tmp_path / f"train_data_batch_{i}.npz",
            data=planar(4, i),
            labels=[1, 2, 923, 751],
            mean=np.zeros(3072),
        )
    np.savez(tmp_path / "val_data.npz", data=planar(3), labels=[2, 10, 3])
    return tmp_path


def test_imagenet32_builtin_table():
    assert len(data.IMAGENET32_CLASSES) == 100
    assert len(set(data.IMAGENET32_CLASSES)) == 100
    idx = data.classes._IMAGENET32_CLSLOC
    assert len(idx) == 100 and len(set(idx)) == 100
    assert all(1 <= i <= 1000 for i in idx)


def test_imagenet32_restrict_and_relabel(imagenet_dir):
    pool, test, names = data.load_raw("imagenet32", str(imagenet_dir))
    assert names == data.IMAGENET32_CLASSES
    assert pool.x.shape == (30, 32, 32, 3)  # 3 of 4 kept, x 10 batches
    pole, sandal = names.index("pole"), names.index("sandal")
    assert pool.y[:3].tolist() == [0, pole, sandal]
    assert test.y.tolist() == [names.index("Persian cat")]
    np.testing.assert_allclose(pool.x[:3], 1 / 255)  # batch 1 is filled with 1
    np.testing.assert_allclose(pool.x[-3:], 10 / 255)


def test_imagenet32_planar_to_nhwc(imagenet_dir):
    x = planar(2)
    # Pixel (row 2, col 5) of image 1: R=200, G=100, B=50.
    x[1, 0 * 1024 + 2 * 32 + 5] = 200
    x[1, 1 * 1024 + 2 * 32 + 5] = 100
    x[1, 2 * 1024 + 2 * 32 + 5] = 50
    np.savez(imagenet_dir / "val_data.npz", data=x, labels=[1, 1])
    _, test, _ = data.load_raw("imagenet32", str(imagenet_dir))
    np.testing.assert_allclose(test.x[1, 2, 5] * 255, [200, 100, 50], rtol=1e-6)
    assert test.x[1].sum() * 255 == pytest.approx(350)
    assert test.x[0].sum() == 0


def test_imagenet32_map_file_overrides(imagenet_dir):
    # A map that numbers the 100 classes 1000, 999, ... in the paper's order.
    lines = ["folder label name"]
    for i, name in enumerate(data.IMAGENET32_CLASSES):
        lines.append(f"n{i:08d} {1000 - i} {name.replace(' ', '_')}")
    lines.append("n99999999 2 English_setter")
    (imagenet_dir / "map_clsloc.txt").write_text("\n".join(lines) + "\n")
    np.savez(imagenet_dir / "val_data.npz", data=planar(4), labels=[1000, 901, 2, 1])
    _, test, _ = data.load_raw("imagenet32", str(imagenet_dir))
    assert test.y.tolist() == [0, 99]


def test_imagenet32_map_file_missing_class(imagenet_dir):
    (imagenet_dir / "map_clsloc.txt").write_text("n02119789 1 kit_fox\n")
    with pytest.raises(data.DataError, match="map_clsloc.txt.*Persian cat"):
        data.load_raw("imagenet32", str(imagenet_dir))


def test_imagenet32_missing_batch(imagenet_dir):
    os.remove(imagenet_dir / "train_data_batch_7.npz")
    with pytest.raises(data.DataError, match="train_data_batch_7.npz"):
        data.load_raw("imagenet32", str(imagenet_dir))


def test_imagenet32_refuses_pickle(imagenet_dir, tmp_path_factory):
    marker = tmp_path_factory.mktemp("m") / "unpickled"

    class Boom:
        def __reduce__(self):  # unpickling would create the marker directory
            return (os.mkdir, (str(marker),))

    obj = np.empty(1, dtype=object)
    obj[0] = Boom()
    np.savez(imagenet_dir / "train_data_batch_3.npz", data=obj, labels=[1])
    with pytest.raises(data.DataError, match="pickle"):
        data.load_raw("imagenet32", str(imagenet_dir))
    assert not marker.exists()


def test_imagenet32_bad_labels(imagenet_dir):
    np.savez(imagenet_dir / "val_data.npz", data=planar(2), labels=[0, 1])
    with pytest.raises(data.DataError, match="1..1000"):
        data.load_raw("imagenet32", str(imagenet_dir))


# ----------------------------------------------------------------- cifar10 --


def test_cifar10_through_mocked_tfds():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        pool, test, names = data.load_raw("cifar10")
        s = data.load_splits(cfg("cifar10", d1_size=5, d2_size=7, test_size=3))
    assert pool.x.shape == (12, 32, 32, 3) and len(test) == 12
    assert pool.x.dtype == np.float32 and pool.y.dtype == np.int32
    assert 0.0 <= pool.x.min() and pool.x.max() <= 1.0
    assert len(names) == 10
    assert (len(s.d1), len(s.d2), len(s.test)) == (5, 7, 3)
    assert s.num_classes == 10


def test_cifar10_tfds_failure_is_data_error(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")

    def missing(*args, **kwargs):
        raise FileNotFoundError("no such dataset")

    monkeypatch.setattr(tfds, "data_source", missing)
    with pytest.raises(data.DataError, match="tfds build cifar10"):
        data.load_raw("cifar10", "/nonexistent")


def test_imagenet32_corrupt_or_foreign_batch_is_one_clear_error(imagenet_dir):
    batch = imagenet_dir / "train_data_batch_2.npz"
    batch.write_text("not an archive")
    with pytest.raises(data.DataError, match="train_data_batch_2.npz' is not an npz archive"):
        data.load_raw("imagenet32", str(imagenet_dir))
    np.savez(batch, data=planar(2), labels=[1, 2])
    batch.write_bytes(batch.read_bytes()[:-40])  # truncated: the zip's directory is gone
    with pytest.raises(data.DataError, match="imagenet32: .*train_data_batch_2.npz"):
        data.load_raw("imagenet32", str(imagenet_dir))
