"""Tests for fingerprinting.data.user_data: a model owner's image folder or npz
file, read and cut into the party splits, every kind of bad data refused
with one clear error, and configs/custom.py from the command line."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from _cli import assert_one_line_error
from _cli import run
from fingerprinting import data
from fingerprinting import errors
from test_data import cfg as data_cfg


def cfg(name, path, **kw):
    return data_cfg(name, dir=str(path), **kw)


def save(path, pixels, fmt=None):
    """uint8 pixels [H, W] (L), [H, W, 2] (LA), [H, W, 3] (RGB) or [H, W, 4] (RGBA)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(pixels, np.uint8)).save(path, fmt)


def write_folder(root, per_class, side=8, start=0):
    """ROOT/CLASS/NNN.png, grayscale; image i of the folder is the constant
    start + i (+ 50 per class), so every image is distinct and its pixels known."""
    for k, (cls, n) in enumerate(per_class.items()):
        for i in range(n):
            save(os.path.join(root, cls, f"{i:03d}.png"), np.full((side, side), start + 50 * k + i))
    return root


def rows(split):
    return {r.tobytes() for r in split.x.reshape(len(split), -1)}


def raises(match):
    return pytest.raises(data.DataError, match=match)


# ------------------------------------------------------------ image folder --


def test_folder_classes_labels_and_pixels(tmp_path):
    root = write_folder(tmp_path / "imgs", {"dog": 3, "Zebra": 2, "cat": 4})
    pool, test, names = data.load_raw("image_folder", str(root))
    # Sorted as strings: upper case first, as the folders sort.
    assert names == ("Zebra", "cat", "dog")
    assert pool.x.shape == (9, 8, 8, 1) and len(test) == 0
    assert pool.y.tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2]
    # cat is the third folder written (k = 2): its images are 100..103.
    cat = pool.x[pool.y == 1]
    np.testing.assert_allclose(cat[:, 0, 0, 0], np.arange(100, 104) / 255, atol=1e-6)
    assert np.all(cat == cat[:, :1, :1])  # constant images stay constant


def test_folder_reads_every_format_and_goes_rgb_when_any_image_has_colour(tmp_path):
    root = tmp_path / "imgs"
    save(root / "a" / "gray.png", np.full((4, 4), 200))
    save(root / "a" / "gray.bmp", np.full((4, 4), 10))
    save(root / "a" / "rgba.png", np.dstack([np.full((4, 4), v) for v in (255, 0, 0, 0)]))
    save(root / "b" / "rgb.jpg", np.zeros((4, 4, 3)), fmt="JPEG")
    Image.new("P", (4, 4), 0).save(root / "b" / "palette.gif")
    pool, _, names = data.load_raw("image_folder", str(root))
    assert names == ("a", "b") and pool.x.shape == (5, 4, 4, 3)
    by_file = dict(zip(["gray.bmp", "gray.png", "rgba.png", "palette.gif", "rgb.jpg"], pool.x))
    # Grayscale is repeated into three channels; alpha is dropped, not blended.
    np.testing.assert_allclose(by_file["gray.png"], 200 / 255, atol=1e-6)
    np.testing.assert_allclose(by_file["gray.bmp"], 10 / 255, atol=1e-6)
    np.testing.assert_allclose(by_file["rgba.png"][..., 0], 1.0)
    np.testing.assert_allclose(by_file["rgba.png"][..., 1:], 0.0)


def test_folder_keeps_one_channel_when_every_image_is_gray(tmp_path):
    root = tmp_path / "imgs"
    save(root / "a" / "l.png", np.full((4, 4), 7))
    save(root / "b" / "la.png", np.dstack([np.full((4, 4), 9), np.zeros((4, 4))]))
    Image.new("1", (4, 4), 1).save(root / "b" / "bw.png")
    pool, _, _ = data.load_raw("image_folder", str(root))
    assert pool.x.shape == (3, 4, 4, 1)
    np.testing.assert_allclose(pool.x[:, 0, 0, 0], [7 / 255, 1.0, 9 / 255], atol=1e-6)


def test_folder_skips_hidden_entries_and_other_files(tmp_path):
    root = write_folder(tmp_path / "imgs", {"a": 2, "b": 2})
    (root / ".ipynb_checkpoints").mkdir()
    (root / "notes.txt").write_text("not an image")
    (root / "a" / ".DS_Store").write_bytes(b"\0")
    (root / "a" / "labels.csv").write_text("x")
    save(root / "b" / ".hidden.png", np.zeros((8, 8)))
    pool, _, names = data.load_raw("image_folder", str(root))
    assert names == ("a", "b") and len(pool) == 4


def test_folder_train_and_test_folders_are_the_official_split(tmp_path):
    root = tmp_path / "imgs"
    write_folder(root / "train", {"a": 6, "b": 4})
    write_folder(root / "test", {"a": 3}, start=200)  # test may leave classes out
    pool, test, names = data.load_raw("image_folder", str(root))
    assert names == ("a", "b") and (len(pool), len(test)) == (10, 3)
    assert test.y.tolist() == [0, 0, 0]
    np.testing.assert_allclose(test.x[:, 0, 0, 0], np.arange(200, 203) / 255, atol=1e-6)
    s = data.load_splits(cfg("image_folder", root))
    # Defaults: the pool halved between the parties, the whole test split.
    assert (len(s.d1), len(s.d2), len(s.test)) == (5, 5, 3)
    assert rows(s.test) == rows(test)
    # train/ alone: the test split is held out of it.
    (root / "test").rename(tmp_path / "elsewhere")
    s = data.load_splits(cfg("image_folder", root))
    assert (len(s.d1), len(s.d2), len(s.test)) == (4, 4, 2)


# --------------------------------------------------------------------- npz --


def test_npz_uint8_with_class_names_and_test_split(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 6, 6, 3), dtype=np.uint8)
    tx = rng.integers(0, 256, (4, 6, 6, 3), dtype=np.uint8)
    path = tmp_path / "d.npz"
    np.savez(
        path,
        x=x,
        y=np.arange(12) % 3,
        x_test=tx,
        y_test=np.array([2, 2, 0, 1]),
        class_names=np.array(["ant", "bee", "cow"]),
    )
    pool, test, names = data.load_raw("npz", str(path))
    assert names == ("ant", "bee", "cow")
    np.testing.assert_allclose(pool.x, x / 255, atol=1e-6)
    np.testing.assert_allclose(test.x, tx / 255, atol=1e-6)
    assert pool.y.dtype == np.int32 and test.y.tolist() == [2, 2, 0, 1]
    s = data.load_splits(cfg("npz", path))
    assert (len(s.d1), len(s.d2), len(s.test)) == (6, 6, 4) and s.input_shape == (6, 6, 3)


def test_npz_float_pixels_keras_names_and_default_class_names(tmp_path):
    x = np.linspace(0, 1, 10 * 5 * 5, dtype=np.float64).reshape(10, 5, 5)  # [N, H, W]
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x, y_train=(np.arange(10) % 4)[:, None])  # Keras shapes
    pool, test, names = data.load_raw("npz", str(path))
    assert names == ("0", "1", "2", "3") and len(test) == 0
    assert pool.x.shape == (10, 5, 5, 1) and pool.x.dtype == np.float32
    np.testing.assert_allclose(pool.x[..., 0], x, atol=1e-6)  # floats are not rescaled
    assert pool.y.tolist() == (np.arange(10) % 4).tolist()


# ---------------------------------------------------------- party splits --


@pytest.fixture(params=["image_folder", "npz"])
def source(request, tmp_path):
    """(name, path) of a 40-image data set of 4 classes, every image distinct."""
    if request.param == "image_folder":
        return "image_folder", write_folder(tmp_path / "imgs", {c: 10 for c in "abcd"})
    x = np.arange(40, dtype=np.uint8)[:, None, None, None] * np.ones((1, 8, 8, 1), np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(40) % 4)
    return "npz", tmp_path / "d.npz"


def test_splits_sizes_disjoint_and_deterministic(source):
    name, path = source
    s = data.load_splits(cfg(name, path, seed=3))
    # 20% held out for testing, the rest halved.
    assert (len(s.d1), len(s.d2), len(s.test)) == (16, 16, 8)
    assert s.name == name and s.num_classes == 4 and s.input_shape == (8, 8, 1)
    a, b, t = rows(s.d1), rows(s.d2), rows(s.test)
    assert len(a) == 16 and len(b) == 16 and len(t) == 8
    assert not a & b and not a & t and not b & t
    again = data.load_splits(cfg(name, path, seed=3))
    other = data.load_splits(cfg(name, path, seed=4))
    for p in ("d1", "d2", "test"):
        np.testing.assert_array_equal(getattr(s, p).x, getattr(again, p).x)
        np.testing.assert_array_equal(getattr(s, p).y, getattr(again, p).y)
    assert rows(other.d1) != a
    sized = data.load_splits(cfg(name, path, seed=3, d1_size=5, d2_size=7, test_size=2))
    assert (len(sized.d1), len(sized.d2), len(sized.test)) == (5, 7, 2)


def test_resize_and_channels_apply_to_user_data(source):
    name, path = source
    s = data.load_splits(cfg(name, path, resize=16, channels=3))
    assert s.input_shape == (16, 16, 3)


# ---------------------------------------------------------------- bad data --


def corrupt(root):
    """A two-class folder whose b/001.png is not an image."""
    write_folder(root, {"a": 2, "b": 2})
    (root / "b" / "001.png").write_bytes(b"this is not a PNG")
    return root


def truncated(root):
    write_folder(root, {"a": 2, "b": 2}, side=32)
    path = root / "a" / "000.png"
    save(path, np.random.default_rng(0).integers(0, 256, (32, 32)))  # noise: ~1 kB
    path.write_bytes(path.read_bytes()[:500])
    return root


def mixed_sizes(root):
    write_folder(root, {"a": 2, "b": 2})
    save(root / "b" / "001.png", np.zeros((8, 12)))
    return root


def sixteen_bit(root):
    write_folder(root, {"a": 2, "b": 2})
    Image.fromarray(np.zeros((8, 8), np.uint16)).save(root / "a" / "000.png")
    return root


def nested(root):
    write_folder(root, {"a": 2, "b": 2})
    write_folder(root / "a", {"deeper": 1})
    return root


def loose(root):
    write_folder(root, {"a": 2, "b": 2})
    save(root / "stray.png", np.zeros((8, 8)))
    return root


def extra_test_class(root):
    write_folder(root / "train", {"a": 2, "b": 2})
    write_folder(root / "test", {"a": 1, "c": 1})
    return root


def empty_class(root):
    write_folder(root, {"a": 2})
    (root / "b").mkdir()
    return root


def only_test_folder(root):
    write_folder(root / "test", {"a": 2, "b": 2})
    return root


def train_and_other(root):
    write_folder(root / "train", {"a": 2, "b": 2})
    write_folder(root / "val", {"a": 2, "b": 2})
    return root


def only_images(root):
    save(root / "x.png", np.zeros((8, 8)))
    return root


def nothing(root):
    root.mkdir()
    return root


@pytest.mark.parametrize(
    "make, match",
    [
        (nothing, "has no class sub-folders; expected one folder of images per class"),
        (only_images, "holds 1 images but no class folders"),
        (lambda r: write_folder(r, {"only": 3}), "only one class folder \\('only'\\)"),
        (mixed_sizes, "differ in size: '.*a/000.png' is 8x8 but '.*b/001.png' is 12x8"),
        (corrupt, "cannot read image '.*b/001.png'"),
        (truncated, "cannot read image '.*a/000.png'"),
        (sixteen_bit, "'.*a/000.png' has Pillow mode 'I;16'"),
        (empty_class, "class folder '.*b' holds no images"),
        (nested, "class folder '.*a' holds the folder 'deeper'"),
        (loose, "'.*stray.png' lies outside every class folder"),
        (extra_test_class, "has the class folder 'c', which '.*train' lacks"),
        (only_test_folder, "has a test/ folder but no train/ folder"),
        (train_and_other, "only other folder may be test/; found 'val'"),
        (lambda r: write_folder(r, {"a": 1, "b": 1}), "2 images are too few for the party splits"),
    ],
)
def test_bad_folder_is_one_clear_error(tmp_path, make, match):
    root = make(tmp_path / "imgs")
    with raises(match) as e:
        data.load_splits(cfg("image_folder", root))
    assert isinstance(e.value, errors.UserError)
    assert "\n" not in str(e.value) and str(e.value).startswith("image_folder: ")


def test_missing_or_wrong_kind_of_path(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2, 2), np.uint8), y=[0, 1, 0, 1])
    for name in ("image_folder", "npz"):
        with raises(f"{name}: '.*nope' does not exist"):
            data.load_splits(cfg(name, tmp_path / "nope"))
        with raises(f"{name}: needs data.dir"):
            data.load_splits(cfg(name, ""))
    with raises("is a file; expected a folder .*data.name=npz"):
        data.load_splits(cfg("image_folder", tmp_path / "d.npz"))
    with raises("is a folder; expected an .npz file .*data.name=image_folder"):
        data.load_splits(cfg("npz", tmp_path))


X = np.zeros((6, 4, 4, 1), np.uint8)
Y = np.array([0, 1, 2, 0, 1, 2])


@pytest.mark.parametrize(
    "arrays, match",
    [
        (dict(y=Y), "has no 'x' array \\(it has \\['y'\\]\\)"),
        (dict(x=X), "has no 'y' array"),
        (dict(x=X, y=Y[:5]), "'x' holds 6 images but 'y' 5 labels"),
        (dict(x=X, y=Y, class_names=np.array(["a", "b"])), "y\\[2\\] = 2 is out of range"),
        (dict(x=X, y=Y - 1), "negative labels \\(y\\[0\\] = -1\\)"),
        (dict(x=X, y=Y.astype(np.float32)), "'y' is float32 .*expected integer labels"),
        (dict(x=X, y=Y.astype(bool)), "'y' is bool"),
        (dict(x=X, y=Y + 1), "'y' has no label 0.*1-based labels"),
        (dict(x=X, y=np.array([0, 1, 3, 3, 0, 1])), "'y' has no label 2; .* labels are 0..3"),
        (dict(x=X[:, :, :, 0, None, None], y=Y), "has shape \\(6, 4, 4, 1, 1\\)"),
        (dict(x=X[:, :, 0, 0], y=Y), "has shape \\(6, 4\\)"),
        (dict(x=np.zeros((6, 4, 4, 4), np.uint8), y=Y), "with C = 1 or 3"),
        (dict(x=X.astype(np.int64), y=Y), "'x' is int64; expected uint8"),
        (dict(x=X.astype(np.float32) + 2, y=Y), "float pixels outside \\[0, 1\\]"),
        (dict(x=X[:0], y=Y[:0]), "'x' holds no images: the data set is empty"),
        (dict(x=X, y=Y * 0), "only one class"),
        (dict(x=X, y=Y, x_test=X), "needs both x_test and y_test"),
        (dict(x=X, y=Y, x_test=X[:2], y_test=np.array([0, 3])), "y_test\\[1\\] = 3 is out"),
        (dict(x=X, y=Y, x_test=X.astype(np.float32), y_test=Y), "'x_test' is float32"),
        (dict(x=X, y=Y, labels=Y), "does not know \\(\\['labels'\\]\\)"),
        (dict(x=X, x_train=X, y=Y), "holds both 'x' and 'x_train'"),
        (dict(x=X, y=Y, class_names=np.array(["a", "a", "b"])), "distinct, non-empty"),
        (dict(x=X[:2], y=Y[:2]), "2 images are too few for the party splits"),
        (dict(x=np.zeros((6, 4, 5, 1), np.uint8), y=Y), "images are 5x4.*data.resize"),
    ],
)
def test_bad_npz_is_one_clear_error(tmp_path, arrays, match):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with raises(match) as e:
        data.load_splits(cfg("npz", path))
    assert isinstance(e.value, errors.UserError)
    assert "\n" not in str(e.value) and str(e.value).startswith("npz: ")


def test_npz_refuses_pickles_and_other_files(tmp_path):
    np.savez(tmp_path / "obj.npz", x=X, y=np.array([0, "1"], dtype=object))
    with raises("pickled \\(object\\) arrays; refusing"):
        data.load_raw("npz", str(tmp_path / "obj.npz"))
    np.save(tmp_path / "x.npy", X)
    with raises("is not an npz archive"):
        data.load_raw("npz", str(tmp_path / "x.npy"))


def test_non_square_images_need_resize(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((10, 4, 6, 1), np.uint8), y=np.arange(10) % 2)
    s = data.load_splits(cfg("npz", path, resize=4))
    assert s.input_shape == (4, 4, 1)


# ------------------------------------------------------ the command line --


def digits_folder(root, per_class):
    from sklearn import datasets  # pylint: disable=g-import-not-at-top

    d = datasets.load_digits()
    for k in range(10):
        for i, img in enumerate(d.images[d.target == k][:per_class]):
            save(os.path.join(root, f"digit_{k}", f"{i}.png"), np.round(img * 255 / 16))
    return root


# configs/custom.py:smoke with one MLP per kind: every group then compiles to
# the same program, so the run takes ~20 s of CPU instead of the smoke zoo's
# ~50 s (four architectures, cold compilation cache).
ONE_MLP_EACH = [
    "--config.models.source=mlp",
    *(
        f"--config.models.{kind}s=mlp:1"
        for kind in ("training_surrogate", "training_reference", "testing_surrogate")
        + ("testing_reference", "calibration_reference")
    ),
    "--config.models.label_only_surrogates=",
]


def test_custom_smoke_trains_on_an_image_folder(tmp_path):
    """configs/custom.py:smoke end to end on 600 digits as PNGs in class folders."""
    root = digits_folder(str(tmp_path / "digits"), per_class=60)
    workdir = tmp_path / "wd"
    proc = run(
        "train",
        "--config=configs/custom.py:smoke",
        f"--config.data.dir={root}",
        *ONE_MLP_EACH,
        f"--workdir={workdir}",
    )
    assert "source-mlp/0" in proc.stdout
    config = json.loads((workdir / "config.json").read_text())
    assert config["data"]["name"] == "image_folder" and config["data"]["dir"] == root
    rows = [json.loads(line) for line in open(workdir / "models.jsonl")]
    assert {r["kind"] for r in rows} >= {"source", "testing_surrogate", "testing_reference"}
    # 600 images: 120 held out for testing; the source beats chance (0.1) on them.
    source = next(r for r in rows if r["kind"] == "source")
    assert source["test_accuracy"] > 0.3


def test_custom_with_a_bad_folder_is_one_line_and_writes_nothing(tmp_path):
    workdir = tmp_path / "wd"
    workdir.mkdir()
    bad = corrupt(tmp_path / "imgs")
    proc = run(
        "train",
        "--config=configs/custom.py:smoke",
        f"--config.data.dir={bad}",
        f"--workdir={workdir}",
        check=False,
    )
    assert_one_line_error(proc, f"cannot read image '{bad / 'b' / '001.png'}'")
    # Nothing a run leaves (config.json, models): at most a hidden lock file.
    assert [n for n in os.listdir(workdir) if not n.startswith(".")] == []
    fresh = tmp_path / "fresh"
    proc = run(
        "train",
        "--config=configs/custom.py:smoke",
        "--config.data.name=npz",
        f"--config.data.dir={tmp_path / 'missing.npz'}",
        f"--workdir={fresh}",
        check=False,
    )
    assert_one_line_error(proc, "npz: '")
    assert "does not exist" in proc.stderr and not fresh.exists()
