"""The readers of each on-disk format: scikit-learn's digits, Fashion-MNIST
as IDX files (or through TFDS), CIFAR-10 through TFDS, CINIC-10 as the
official PNG tree, the 100-class ImageNet32 subset of the paper from the
official npz batches; a user's own image folder or npz file through
`user_data`. Each returns the data set as stored (uint8 pixels); every
failure is a `DataError` that says what was expected and where."""

from __future__ import annotations

import gzip
import math
import os

import numpy as np

from fingerprinting.data.base import DATASETS
from fingerprinting.data.base import DataError
from fingerprinting.data.base import Raw
from fingerprinting.data.base import load_plain_npz
from fingerprinting.data.classes import CINIC10_CLASSES
from fingerprinting.data.classes import FASHION_MNIST_CLASSES
from fingerprinting.data.classes import IMAGENET32_CLASSES
from fingerprinting.data.classes import _IMAGENET32_CLSLOC
from fingerprinting.data.user_data import read_image_folder
from fingerprinting.data.user_data import read_npz

# Debian's fashion-mnist package installs the IDX files here.
_FASHION_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
_FASHION_FILES = {
    "train_x": "train-images-idx3-ubyte.gz",
    "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz",
    "test_y": "t10k-labels-idx1-ubyte.gz",
}
_IDX_IMAGES, _IDX_LABELS = 2051, 2049

_IMAGENET32_BATCHES = tuple(f"train_data_batch_{i}.npz" for i in range(1, 11))
_IMAGENET32_VAL = "val_data.npz"
_IMAGENET32_MAP = "map_clsloc.txt"


# ---------------------------------------------------------------- readers --


def _need_dir(path: str, what: str) -> None:
    if not os.path.isdir(path):
        raise DataError(f"{what}: expected a directory at {path!r}; it does not exist.")


def _read_digits(_: str | None) -> Raw:
    from sklearn import datasets  # pylint: disable=g-import-not-at-top

    d = datasets.load_digits()
    x = d.images.astype(np.uint8)[..., None]  # values 0..16
    y = d.target.astype(np.int32)
    return Raw(x, y, x[:0], y[:0], tuple(str(i) for i in range(10)), 16.0)


def _read_idx(path: str, magic: int, ndim: int) -> np.ndarray:
    """One gzipped IDX file: big-endian uint32 magic and dims, then uint8s."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"fashion_mnist: missing IDX file {path!r}.") from None
    except (OSError, EOFError) as e:
        raise DataError(f"fashion_mnist: {path!r} is not a readable gzip IDX file ({e}).") from None
    head = 4 * (1 + ndim)
    if len(raw) < head:
        raise DataError(f"fashion_mnist: {path!r} is too short for an IDX header.")
    got, *dims = np.frombuffer(raw[:head], ">u4").tolist()
    if got != magic:
        raise DataError(f"fashion_mnist: {path!r} has IDX magic number {got}; expected {magic}.")
    body = np.frombuffer(raw, np.uint8, offset=head)
    if body.size != math.prod(dims):
        raise DataError(
            f"fashion_mnist: {path!r} declares dims {dims}"
            f" ({math.prod(dims)} values) but holds {body.size}."
        )
    return body.reshape(dims)


def _read_fashion_idx(data_dir: str) -> Raw:
    paths = {k: os.path.join(data_dir, v) for k, v in _FASHION_FILES.items()}
    missing = [p for p in paths.values() if not os.path.isfile(p)]
    if missing:
        raise DataError(
            f"fashion_mnist: missing IDX file(s) {missing}; expected"
            f" {sorted(_FASHION_FILES.values())} in {data_dir!r}."
        )
    parts = []
    for split in ("train", "test"):
        x = _read_idx(paths[f"{split}_x"], _IDX_IMAGES, 3)
        y = _read_idx(paths[f"{split}_y"], _IDX_LABELS, 1)
        if len(x) != len(y):
            raise DataError(
                f"fashion_mnist: {paths[f'{split}_x']!r} has {len(x)}"
                f" images but {paths[f'{split}_y']!r} has {len(y)}"
                " labels."
            )
        parts += [x[..., None], y.astype(np.int32)]
    return Raw(*parts, FASHION_MNIST_CLASSES, 255.0)


def _tfds_read(name: str, split: str, data_dir: str | None):
    """All records of a TFDS split as uint8 images, int32 labels, class names.

    Uses the TFDS data-source API, which needs no tensorflow.
    """
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    try:
        ds = tfds.data_source(name, split=split, data_dir=data_dir)
        names = tuple(ds.dataset_info.features["label"].names)
        n = len(ds)
        x, y = None, np.empty(n, np.int32)
        for i, rec in enumerate(ds):
            img = np.asarray(rec["image"], np.uint8)
            if x is None:  # preallocate: no list of n arrays plus a stacked copy
                x = np.empty((n, *img.shape), np.uint8)
            x[i], y[i] = img, rec["label"]
    except DataError:
        raise
    except Exception as e:  # pylint: disable=broad-except
        where = data_dir or "the default TFDS data dir (~/tensorflow_datasets)"
        raise DataError(
            f"{name}: could not read TFDS split {split!r} from {where}"
            f" ({type(e).__name__}: {e}). Prepare it on a machine with network"
            f" access, e.g. `tfds build {name} --file_format=array_record"
            f" [--data_dir DIR]`, and pass that DIR as the data dir."
        ) from e
    if x is None:
        raise DataError(f"{name}: TFDS split {split!r} is empty.")
    return x, y, names


def _read_tfds(name: str, data_dir: str | None) -> Raw:
    px, py, names = _tfds_read(name, "train", data_dir)
    tx, ty, _ = _tfds_read(name, "test", data_dir)
    return Raw(px, py, tx, ty, names, 255.0)


def _read_fashion(data_dir: str | None) -> Raw:
    # A directory holding a TFDS build (a `fashion_mnist/` folder) is a TFDS
    # data dir, not an IDX dir.
    if data_dir is not None and not os.path.isdir(os.path.join(data_dir, "fashion_mnist")):
        _need_dir(data_dir, "fashion_mnist")
        return _read_fashion_idx(data_dir)
    if data_dir is None and os.path.isdir(_FASHION_DEBIAN_DIR):
        return _read_fashion_idx(_FASHION_DEBIAN_DIR)
    raw = _read_tfds("fashion_mnist", data_dir)
    return raw._replace(names=FASHION_MNIST_CLASSES)


def _read_png(path: str) -> np.ndarray:
    from PIL import Image  # pylint: disable=g-import-not-at-top

    try:
        with Image.open(path) as im:
            # CINIC has a few grayscale PNGs: "RGB" replicates their one channel.
            return np.asarray(im.convert("RGB"), np.uint8)
    except OSError as e:
        raise DataError(f"cinic10: cannot read PNG {path!r} ({e}).") from None


def _read_cinic_split(data_dir: str, split: str):
    root = os.path.join(data_dir, split)
    _need_dir(
        root,
        f"cinic10 (the {split!r} folder with one subfolder per"
        f" class: {', '.join(CINIC10_CLASSES)})",
    )
    files, labels = [], []
    for k, cls in enumerate(CINIC10_CLASSES):
        folder = os.path.join(root, cls)
        _need_dir(folder, f"cinic10 (class folder {cls!r})")
        pngs = sorted(f for f in os.listdir(folder) if f.lower().endswith(".png"))
        if not pngs:
            raise DataError(f"cinic10: class folder {folder!r} holds no .png images.")
        files += [os.path.join(folder, f) for f in pngs]
        labels += [k] * len(pngs)
    x = np.empty((len(files), 32, 32, 3), np.uint8)
    for i, path in enumerate(files):
        img = _read_png(path)
        if img.shape != (32, 32, 3):
            raise DataError(
                f"cinic10: {path!r} is {img.shape[1]}x{img.shape[0]}; expected a 32x32 image."
            )
        x[i] = img
    return x, np.asarray(labels, np.int32)


def _read_cinic(data_dir: str | None) -> Raw:
    if data_dir is None:
        raise DataError(
            "cinic10: needs a data dir holding the official release"
            " (train/, valid/, test/ with one folder per class)."
        )
    _need_dir(data_dir, "cinic10")
    tx, ty = _read_cinic_split(data_dir, "train")
    vx, vy = _read_cinic_split(data_dir, "valid")
    sx, sy = _read_cinic_split(data_dir, "test")
    # The paper pools train and valid (180,000 images) for the two parties.
    return Raw(np.concatenate([tx, vx]), np.concatenate([ty, vy]), sx, sy, CINIC10_CLASSES, 255.0)


def _read_clsloc(path: str) -> tuple[int, ...]:
    """The 1-based labels of IMAGENET32_CLASSES per a map_clsloc.txt file."""
    index: dict[str, list[int]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            # Skip blank lines and a header row some copies carry.
            if len(parts) >= 3 and parts[1].isdigit():
                name = " ".join(parts[2:]).replace("_", " ")
                index.setdefault(name, []).append(int(parts[1]))
    missing = [c for c in IMAGENET32_CLASSES if c not in index]
    twice = [c for c in IMAGENET32_CLASSES if len(index.get(c, ())) > 1]
    if missing or twice:
        raise DataError(
            f"imagenet32: {path!r} should list each of the 100 classes once as"
            f" 'WNID INDEX name' lines; missing {missing}, repeated {twice}."
        )
    return tuple(index[c][0] for c in IMAGENET32_CLASSES)


def _load_npz(path: str) -> tuple[np.ndarray, np.ndarray]:
    def read(f):
        if not {"data", "labels"} <= set(f.files):
            raise DataError(
                f"imagenet32: {path!r} lacks the 'data' and 'labels'"
                f" arrays (it has {sorted(f.files)})."
            )
        return f["data"], np.asarray(f["labels"])

    return load_plain_npz(
        path, "imagenet32", read, "Expected plain uint8 'data' and integer 'labels' arrays."
    )


def _planar_to_nhwc(data: np.ndarray, path: str) -> np.ndarray:
    """Rows of planar RGB (all R, then G, then B; each row-major) to NHWC."""
    width = data.shape[1] if data.ndim == 2 else -1
    side = math.isqrt(max(width, 0) // 3)
    if data.dtype != np.uint8 or width <= 0 or 3 * side * side != width:
        raise DataError(
            f"imagenet32: {path!r} 'data' is {data.dtype}"
            f" {data.shape}; expected uint8 [N, 3*S*S] (S=32)."
        )
    return data.reshape(-1, 3, side, side).transpose(0, 2, 3, 1)


def _read_imagenet_file(path: str, lookup: np.ndarray):
    """Images of the 100 classes in one npz batch, relabelled 0..99."""
    data, labels = _load_npz(path)
    labels = labels.reshape(-1)
    ok = (
        labels.dtype.kind in "iu"
        and len(labels) == len(data)
        and (len(labels) == 0 or 1 <= labels.min() <= labels.max() <= 1000)
    )
    if not ok:
        raise DataError(
            f"imagenet32: {path!r} should hold one integer label in"
            f" 1..1000 per image; got {labels.dtype} labels, "
            f"{len(labels)} of them for {len(data)} images."
        )
    x = _planar_to_nhwc(data, path)  # a view: nothing is copied yet
    new = lookup[labels]
    keep = new >= 0  # copy only the kept tenth of the batch
    return x[keep], new[keep].astype(np.int32)


def _read_imagenet(data_dir: str | None) -> Raw:
    if data_dir is None:
        raise DataError(
            "imagenet32: needs a data dir holding the official"
            f" downsampled npz files ({_IMAGENET32_BATCHES[0]} .."
            f" {_IMAGENET32_BATCHES[-1]}, {_IMAGENET32_VAL})."
        )
    _need_dir(data_dir, "imagenet32")
    files = (*_IMAGENET32_BATCHES, _IMAGENET32_VAL)
    missing = [f for f in files if not os.path.isfile(os.path.join(data_dir, f))]
    if missing:
        raise DataError(
            f"imagenet32: {data_dir!r} lacks {missing}; all 10 train"
            f" batches and {_IMAGENET32_VAL} are needed."
        )
    map_path = os.path.join(data_dir, _IMAGENET32_MAP)
    index = _read_clsloc(map_path) if os.path.isfile(map_path) else _IMAGENET32_CLSLOC
    lookup = np.full(1001, -1, np.int64)  # 1-based label -> 0..99 or -1
    lookup[list(index)] = np.arange(len(index))
    train = [_read_imagenet_file(os.path.join(data_dir, f), lookup) for f in _IMAGENET32_BATCHES]
    vx, vy = _read_imagenet_file(os.path.join(data_dir, _IMAGENET32_VAL), lookup)
    return Raw(
        np.concatenate([x for x, _ in train]),
        np.concatenate([y for _, y in train]),
        vx,
        vy,
        IMAGENET32_CLASSES,
        255.0,
    )


_READERS = {
    "digits": _read_digits,
    "fashion_mnist": _read_fashion,
    "cifar10": lambda d: _read_tfds("cifar10", d),
    "cinic10": _read_cinic,
    "imagenet32": _read_imagenet,
    "image_folder": read_image_folder,
    "npz": read_npz,
}


def read(name: str, data_dir: str | None) -> Raw:
    if name not in _READERS:
        raise DataError(f"Unknown dataset {name!r}; known: {', '.join(DATASETS)}.")
    return _READERS[name](data_dir)
