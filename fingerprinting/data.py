"""Data sets and the party splits: who sees which images.

This module owns reading the raw data sets from disk (scikit-learn's digits,
Fashion-MNIST as IDX files or through TFDS, CIFAR-10 through TFDS, CINIC-10
as the official PNG tree, the 100-class ImageNet32 subset of the paper from
the official npz batches) and cutting them, deterministically for a seed,
into the defender's data D1, the adversary's data D2 (disjoint from D1) and
a test split. Everything downstream receives float32 NHWC images in [0, 1]
and int32 labels; every user-facing failure is a `DataError` that says what
was expected and where. `load_transfer` draws a Knockoff transfer set: images
of another data set, or patches of scikit-learn's two bundled photographs,
resized to the attacked model's input.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
from typing import NamedTuple

import numpy as np

from fingerprinting import errors


class DataError(errors.UserError, ValueError):
    """A data set is unknown, missing, malformed, or too small for a request."""


@dataclasses.dataclass(frozen=True)
class Split:
    x: np.ndarray  # float32 [N, H, W, C] in [0, 1]
    y: np.ndarray  # int32 [N]

    def __post_init__(self):
        if len(self.x) != len(self.y):
            raise DataError(
                f"Split needs as many labels as images; got {len(self.x)} images"
                f" and {len(self.y)} labels."
            )

    def __len__(self) -> int:
        return len(self.y)

    def take(self, n: int) -> Split:
        """The first n examples (a view, no copy)."""
        if not 0 <= n <= len(self):
            raise DataError(f"Cannot take {n} examples from a split of {len(self)}.")
        return Split(self.x[:n], self.y[:n])


@dataclasses.dataclass(frozen=True)
class Splits:
    name: str
    d1: Split  # defender
    d2: Split  # adversary
    test: Split
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.d1.x.shape[1:])


DATASETS: tuple[str, ...] = ("digits", "fashion_mnist", "cifar10", "cinic10", "imagenet32")
# Knockoff transfer sets: any data set, or patches of scikit-learn's sample photographs.
TRANSFER_SETS: tuple[str, ...] = DATASETS + ("sample_images",)
# Data sets that only exist in a directory the user names.
NEEDS_DIR: tuple[str, ...] = ("cinic10", "imagenet32")

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

CINIC10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

IMAGENET32_CLASSES: tuple[str, ...] = (
    "kit fox",
    "Persian cat",
    "gazelle",
    "porcupine",
    "sea lion",
    "killer whale",
    "African elephant",
    "jaguar",
    "otterhound",
    "hyena",
    "sorrel",
    "dalmatian",
    "fox squirrel",
    "tiger",
    "zebra",
    "ram",
    "orangutan",
    "squirrel monkey",
    "komondor",
    "guinea pig",
    "golden retriever",
    "macaque",
    "pug",
    "water buffalo",
    "American black bear",
    "giant panda",
    "armadillo",
    "gibbon",
    "German shepherd",
    "koala",
    "umbrella",
    "soccer ball",
    "starfish",
    "grand piano",
    "laptop",
    "strawberry",
    "airliner",
    "balloon",
    "space shuttle",
    "aircraft carrier",
    "tank",
    "missile",
    "mountain bike",
    "steam locomotive",
    "cab",
    "snowplow",
    "bookcase",
    "toilet seat",
    "pool table",
    "orange",
    "lemon",
    "violin",
    "sax",
    "volcano",
    "coral reef",
    "lakeside",
    "hammer",
    "vulture",
    "hummingbird",
    "flamingo",
    "great white shark",
    "hammerhead",
    "stingray",
    "barracouta",
    "goldfish",
    "American chameleon",
    "green snake",
    "European fire salamander",
    "loudspeaker",
    "microphone",
    "digital clock",
    "sunglass",
    "combination lock",
    "nail",
    "altar",
    "mountain tent",
    "scoreboard",
    "mashed potato",
    "head cabbage",
    "cucumber",
    "plate",
    "necklace",
    "sandal",
    "ski mask",
    "teddy",
    "golf ball",
    "red wine",
    "sunscreen",
    "beer glass",
    "cup",
    "traffic light",
    "lipstick",
    "hotdog",
    "toilet tissue",
    "cassette",
    "lotion",
    "barrel",
    "basketball",
    "barbell",
    "pole",
)

# The 1-based labels of IMAGENET32_CLASSES (same order) in the downsampled
# ImageNet npz files, which number classes by the ILSVRC devkit's
# map_clsloc.txt (NOT by sorted WNID). Read off that file (two independent
# copies agree); e.g. kit_fox is n02119789 -> 1, pole is n03976657 -> 923.
# A `map_clsloc.txt` next to the batches takes precedence over this table.
_IMAGENET32_CLSLOC = (
    1,
    10,
    12,
    13,
    14,
    22,
    24,
    30,
    31,
    34,
    39,
    41,
    53,
    76,
    80,
    81,
    83,
    92,
    97,
    101,
    125,
    138,
    143,
    162,
    163,
    169,
    178,
    185,
    211,
    213,
    220,
    222,
    225,
    227,
    228,
    229,
    230,
    233,
    234,
    246,
    250,
    251,
    255,
    263,
    267,
    278,
    300,
    312,
    314,
    319,
    320,
    343,
    355,
    362,
    365,
    366,
    375,
    399,
    415,
    425,
    442,
    444,
    446,
    447,
    450,
    465,
    480,
    494,
    508,
    509,
    523,
    574,
    583,
    585,
    677,
    728,
    729,
    734,
    736,
    743,
    754,
    755,
    751,
    776,
    786,
    792,
    798,
    810,
    811,
    859,
    861,
    867,
    885,
    889,
    890,
    894,
    905,
    908,
    916,
    923,
)

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

# (d1, d2, test) defaults; digits is derived from its size (see _sizes).
_DEFAULT_SIZES = {
    "fashion_mnist": (30_000, 30_000, 10_000),
    "cifar10": (25_000, 25_000, 10_000),
    "cinic10": (85_000, 95_000, 90_000),  # the paper's split
    "imagenet32": (64_000, 64_000, 5_000),  # the paper's split
}
_DIGITS_HOLDOUT = 0.2  # digits has no official test split

# ITU-R BT.601 luma weights: the usual RGB -> gray conversion (PIL's "L").
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


class _Raw(NamedTuple):
    """A data set as stored: uint8 pixels, kept small until the split is cut."""

    pool_x: np.ndarray  # uint8 [N, H, W, C]
    pool_y: np.ndarray  # int32 [N]
    test_x: np.ndarray  # uint8, empty when there is no official test split
    test_y: np.ndarray
    names: tuple[str, ...]
    scale: float  # the pixel value that maps to 1.0


# ---------------------------------------------------------------- readers --


def _need_dir(path: str, what: str) -> None:
    if not os.path.isdir(path):
        raise DataError(f"{what}: expected a directory at {path!r}; it does not exist.")


def _read_digits(_: str | None) -> _Raw:
    from sklearn import datasets  # pylint: disable=g-import-not-at-top

    d = datasets.load_digits()
    x = d.images.astype(np.uint8)[..., None]  # values 0..16
    y = d.target.astype(np.int32)
    return _Raw(x, y, x[:0], y[:0], tuple(str(i) for i in range(10)), 16.0)


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


def _read_fashion_idx(data_dir: str) -> _Raw:
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
    return _Raw(*parts, FASHION_MNIST_CLASSES, 255.0)


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


def _read_tfds(name: str, data_dir: str | None) -> _Raw:
    px, py, names = _tfds_read(name, "train", data_dir)
    tx, ty, _ = _tfds_read(name, "test", data_dir)
    return _Raw(px, py, tx, ty, names, 255.0)


def _read_fashion(data_dir: str | None) -> _Raw:
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


def _read_cinic(data_dir: str | None) -> _Raw:
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
    return _Raw(np.concatenate([tx, vx]), np.concatenate([ty, vy]), sx, sy, CINIC10_CLASSES, 255.0)


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
    try:
        # Never unpickle: a data file must not be able to run code.
        with np.load(path, allow_pickle=False) as f:
            if not {"data", "labels"} <= set(f.files):
                raise DataError(
                    f"imagenet32: {path!r} lacks the 'data' and 'labels'"
                    f" arrays (it has {sorted(f.files)})."
                )
            return f["data"], np.asarray(f["labels"])
    except DataError:
        raise
    except ValueError as e:
        if "pickle" not in str(e):
            raise DataError(f"imagenet32: cannot read {path!r} ({e}).") from None
        raise DataError(
            f"imagenet32: {path!r} holds pickled (object) arrays;"
            " refusing to load it. Expected plain uint8 'data' and"
            " integer 'labels' arrays."
        ) from None
    except Exception as e:  # pylint: disable=broad-except
        # Truncated or non-zip files fail in several ways (OSError, BadZipFile).
        raise DataError(
            f"imagenet32: cannot read {path!r} as npz ({type(e).__name__}: {e})."
        ) from None


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


def _read_imagenet(data_dir: str | None) -> _Raw:
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
    return _Raw(
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
}


def _read(name: str, data_dir: str | None) -> _Raw:
    if name not in _READERS:
        raise DataError(f"Unknown dataset {name!r}; known: {', '.join(DATASETS)}.")
    return _READERS[name](data_dir)


# --------------------------------------------------------------- splitting --


def _to_split(x: np.ndarray, y: np.ndarray, scale: float) -> Split:
    out = x.astype(np.float32)
    np.divide(out, np.float32(scale), out=out)  # in place: no second copy
    return Split(out, y.astype(np.int32))


def load_raw(name: str, data_dir: str | None = None) -> tuple[Split, Split, tuple[str, ...]]:
    """(pool, test, class_names): pool = all images the parties share.

    The pool is the train split (+ valid for cinic10). test is the official
    test split; it is empty for digits, which has none (load_splits then
    holds out a seeded 20% of the pool).
    """
    raw = _read(name, data_dir)
    return (
        _to_split(raw.pool_x, raw.pool_y, raw.scale),
        _to_split(raw.test_x, raw.test_y, raw.scale),
        raw.names,
    )


def _size(config, field: str) -> int | None:
    v = getattr(config, field, None)
    if v is None or v == 0:
        return None
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
        raise DataError(f"config.{field} should be a non-negative int or None; got {v!r}.")
    return int(v)


def _indices(name: str, n_pool: int, n_test: int, seed: int, d1, d2, nt):
    """Index arrays (d1, d2, test-into-pool-or-None, test-into-test)."""
    perm = np.random.default_rng(seed).permutation(n_pool)
    held = None
    if n_test == 0:  # no official test split: hold out a seeded 20% of the pool
        k = int(round(_DIGITS_HOLDOUT * n_pool))
        held, perm = perm[:k], perm[k:]
        n_test = k
        default = (len(perm) // 2, len(perm) - len(perm) // 2, k)
    else:
        default = _DEFAULT_SIZES[name]
    d1 = default[0] if d1 is None else d1
    d2 = default[1] if d2 is None else d2
    nt = default[2] if nt is None else nt
    if d1 + d2 > len(perm):
        raise DataError(
            f"{name}: d1_size={d1} + d2_size={d2} = {d1 + d2} images asked for,"
            f" but the pool shared by the parties has only {len(perm)}."
        )
    if nt > n_test:
        raise DataError(
            f"{name}: test_size={nt} asked for, but the test split has only {n_test} images."
        )
    if held is not None:
        return perm[:d1], perm[d1 : d1 + d2], held[:nt], None
    # A fresh generator with the same seed: the test order does not depend on
    # the pool size.
    test = np.random.default_rng(seed).permutation(n_test)[:nt]
    return perm[:d1], perm[d1 : d1 + d2], None, test


def _resize(x: np.ndarray, side: int, chunk: int = 4096) -> np.ndarray:
    if x.shape[1:3] == (side, side):
        return x
    import jax  # pylint: disable=g-import-not-at-top

    out = np.empty((len(x), side, side, x.shape[3]), np.float32)
    for i in range(0, len(x), chunk):  # chunks bound the device memory
        part = x[i : i + chunk]
        out[i : i + chunk] = np.asarray(
            jax.image.resize(part, (len(part), side, side, x.shape[3]), "bilinear")
        )
    # Bilinear weights are convex, but antialiasing can round past the ends.
    return np.clip(out, 0.0, 1.0, out=out)


def _channels(x: np.ndarray, c: int) -> np.ndarray:
    if x.shape[3] == c:
        return x
    if c == 3 and x.shape[3] == 1:
        return np.repeat(x, 3, axis=3)
    if c == 1 and x.shape[3] == 3:
        return np.einsum("nhwc,c->nhw", x, _LUMA)[..., None].astype(np.float32)
    raise DataError(f"Cannot convert {x.shape[3]}-channel images to {c}.")


def _adapt(s: Split, resize: int | None, channels: int | None) -> Split:
    """Resize / recolour so that one data set can stand in for another."""
    x = s.x
    # Both maps are linear, so their order only changes cost: go to one channel
    # before resizing and to three after.
    if channels == 1:
        x = _channels(x, 1)
    if resize:
        x = _resize(x, resize)
    if channels == 3:
        x = _channels(x, 3)
    return Split(x, s.y) if x is not s.x else s


def load_splits(config) -> Splits:
    """D1, D2 and test for a config, deterministic in config.seed.

    config: an ml_collections.ConfigDict (or anything with attributes) with
    fields name, dir (None or path), seed (int), d1_size, d2_size, test_size
    (each int, or None/0 meaning 'the default for this dataset'), resize (None
    or int: resize images to resize x resize, used when one dataset stands in
    for another) and channels (None, 1 or 3: convert grayscale <-> RGB).
    """
    name = getattr(config, "name", None)
    if name not in DATASETS:
        raise DataError(f"Unknown dataset {name!r}; known: {', '.join(DATASETS)}.")
    seed = getattr(config, "seed", 0)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise DataError(f"config.seed should be an int; got {seed!r}.")
    resize = getattr(config, "resize", None) or None
    if resize is not None and (not isinstance(resize, (int, np.integer)) or resize < 1):
        raise DataError(f"config.resize should be None or a positive int; got {resize!r}.")
    channels = getattr(config, "channels", None) or None
    if channels not in (None, 1, 3):
        raise DataError(f"config.channels should be None, 1 or 3; got {channels!r}.")
    sizes = [_size(config, f) for f in ("d1_size", "d2_size", "test_size")]

    raw = _read(name, getattr(config, "dir", None))
    i1, i2, held, itest = _indices(name, len(raw.pool_y), len(raw.test_y), int(seed), *sizes)
    # Index the uint8 arrays, then convert only what is kept to float32.
    pick = lambda x, y, i: _adapt(_to_split(x[i], y[i], raw.scale), resize, channels)
    test = (
        pick(raw.pool_x, raw.pool_y, held)
        if held is not None
        else pick(raw.test_x, raw.test_y, itest)
    )
    return Splits(
        name=name,
        d1=pick(raw.pool_x, raw.pool_y, i1),
        d2=pick(raw.pool_x, raw.pool_y, i2),
        test=test,
        class_names=tuple(raw.names),
    )


# ---------------------------------------------------------- transfer sets --


def _sample_image_patches(n: int, side: int, seed: int) -> np.ndarray:
    """n square crops of random size and place from scikit-learn's two bundled
    photographs (427x640 RGB), each resized to side x side: float32 [n, s, s, 3]."""
    from PIL import Image  # pylint: disable=g-import-not-at-top
    from sklearn import datasets  # pylint: disable=g-import-not-at-top

    photos = datasets.load_sample_images().images
    rng = np.random.default_rng(seed)
    short = min(min(p.shape[:2]) for p in photos)
    lo, hi = max(side, short // 16), max(side, short // 2)
    out = np.empty((n, side, side, 3), np.float32)
    for i in range(n):
        photo = photos[rng.integers(len(photos))]
        s = int(rng.integers(lo, hi + 1))
        top = int(rng.integers(photo.shape[0] - s + 1))
        left = int(rng.integers(photo.shape[1] - s + 1))
        crop = Image.fromarray(photo[top : top + s, left : left + s])
        out[i] = np.asarray(crop.resize((side, side), Image.BILINEAR), np.float32) / 255.0
    return out


def load_transfer(name: str, data_dir: str | None, input_shape, size: int, seed: int) -> np.ndarray:
    """`size` images drawn at random (seeded) from the pool of data set `name`,
    or cut from the sample photographs, resized and recoloured to `input_shape`
    (H, W, C with H == W): float32 [size, H, W, C] in [0, 1]."""
    side, channels = int(input_shape[0]), int(input_shape[2])
    if name == "sample_images":
        return _channels(_sample_image_patches(size, side, seed), channels)
    if name not in TRANSFER_SETS:
        raise DataError(f"Unknown transfer set {name!r}; known: {', '.join(TRANSFER_SETS)}.")
    raw = _read(name, data_dir)
    if size > len(raw.pool_y):
        raise DataError(
            f"{name}: {size} transfer images asked for, but its pool has only {len(raw.pool_y)}."
        )
    idx = np.random.default_rng(seed).permutation(len(raw.pool_y))[:size]
    return _adapt(_to_split(raw.pool_x[idx], raw.pool_y[idx], raw.scale), side, channels).x
