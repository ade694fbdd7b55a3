"""A model owner's own data: a folder of images with one sub-folder per class
(`image_folder`), or arrays in an npz file (`npz`). Both are read into the
same `Raw` as the built-in data sets, so the party splits are cut from them
by the same rules; data that cannot be used is refused with a `DataError`
that names the file, before any training.

image_folder: `dir` is a folder ROOT holding ROOT/CLASS/IMAGE, or
ROOT/train/CLASS/IMAGE plus an optional ROOT/test/CLASS/IMAGE (the official
test split, which may leave out classes but not add any).
  - Class names are the class folders' names, sorted as strings; a label is
    its class's index in that order. Images are .png, .jpg, .jpeg, .bmp and
    .gif files (the first frame of an animation). Entries whose names start
    with '.' and files of other types are skipped; a class folder holding a
    folder is refused (nested folders are not read).
  - Every image has the same width and height. The images have one channel
    when every one of them is grayscale (Pillow modes 1, L, LA), else three:
    grayscale images are repeated into three channels, palette images (most
    GIFs) expanded. Alpha is dropped. Images of more than 8 bits per pixel
    (16-bit, float) are refused.

npz: `dir` is the file. It holds `x` (or `x_train`), uint8 [N, H, W, C] with
C = 1 or 3, or [N, H, W] for one channel, or floats in [0, 1]; `y` (or
`y_train`), integer labels [N] (or [N, 1]); optionally `x_test` and `y_test`
(the official test split: the same dtype and image shape) and `class_names`
(K strings; labels then lie in 0..K-1). Without class_names, K is the largest
label + 1 and every label 0..K-1 must occur in y. Nothing else may be in the
file, and pickled (object) arrays are refused.

Without an official test split, `splits` holds out a seeded 20% of the pool;
it also refuses non-square images unless data.resize makes them square.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from fingerprinting.data.base import DataError
from fingerprinting.data.base import Raw
from fingerprinting.data.base import load_plain_npz

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_GRAY_MODES = ("1", "L", "LA")
_COLOUR_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV")
# Arrays an npz may hold, and the Keras names taken as the first two.
_NPZ_KEYS = ("x", "y", "x_test", "y_test", "class_names")
_NPZ_ALIASES = {"x_train": "x", "y_train": "y"}


def _path(data_dir: str | None, name: str, what: str) -> str:
    if not data_dir:
        raise DataError(f"{name}: needs data.dir, {what} (--config.data.dir=PATH).")
    path = os.path.expanduser(data_dir)
    if not os.path.exists(path):
        raise DataError(f"{name}: {path!r} does not exist; expected {what}.")
    return path


# ------------------------------------------------------------ image folder --


def _entries(folder: str) -> tuple[list[str], list[str]]:
    """(sub-folders, image files) of a folder, sorted; hidden entries skipped."""
    try:
        names = sorted(n for n in os.listdir(folder) if not n.startswith("."))
    except OSError as e:
        raise DataError(f"image_folder: cannot list {folder!r} ({e.strerror}).") from None
    dirs = [n for n in names if os.path.isdir(os.path.join(folder, n))]
    images = [n for n in names if n.lower().endswith(IMAGE_EXTENSIONS) and n not in dirs]
    return dirs, images


def _class_files(root: str) -> dict[str, list[str]]:
    """Class name -> its image paths (sorted), for ROOT/CLASS/IMAGE."""
    dirs, loose = _entries(root)
    if not dirs:
        found = f"; it holds {len(loose)} images but no class folders" if loose else ""
        raise DataError(
            f"image_folder: {root!r} has no class sub-folders{found};"
            " expected one folder of images per class."
        )
    if loose:
        raise DataError(
            f"image_folder: {os.path.join(root, loose[0])!r} lies outside every"
            f" class folder ({len(loose)} such images); move it into its class's folder."
        )
    classes = {}
    for cls in dirs:
        folder = os.path.join(root, cls)
        nested, images = _entries(folder)
        if nested:
            raise DataError(
                f"image_folder: class folder {folder!r} holds the folder {nested[0]!r};"
                " class folders must hold image files only (nested folders are not read)."
            )
        if not images:
            raise DataError(
                f"image_folder: class folder {folder!r} holds no images"
                f" ({', '.join(IMAGE_EXTENSIONS)})."
            )
        classes[cls] = [os.path.join(folder, f) for f in images]
    return classes


def _split_roots(root: str) -> tuple[str, str | None]:
    """(pool folder, test folder or None): ROOT, or ROOT/train and ROOT/test."""
    dirs, _ = _entries(root)
    if "train" not in dirs and "test" not in dirs:
        return root, None
    if "train" not in dirs:
        raise DataError(f"image_folder: {root!r} has a test/ folder but no train/ folder.")
    others = [d for d in dirs if d not in ("train", "test")]
    if others:
        raise DataError(
            f"image_folder: {root!r} has a train/ folder, so its only other folder"
            f" may be test/; found {others[0]!r}."
        )
    test = os.path.join(root, "test")
    return os.path.join(root, "train"), test if "test" in dirs else None


def _open_errors():
    from PIL import Image  # pylint: disable=g-import-not-at-top

    # Broken files fail in many ways inside Pillow's decoders.
    return (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)


def _header(path: str) -> tuple[tuple[int, int], str]:
    """(width, height) and Pillow mode, read without decoding the pixels."""
    from PIL import Image  # pylint: disable=g-import-not-at-top

    try:
        with Image.open(path) as im:
            size, mode = im.size, im.mode
    except _open_errors() as e:
        raise DataError(f"image_folder: cannot read image {path!r} ({e}).") from None
    if mode not in _GRAY_MODES + _COLOUR_MODES:
        raise DataError(
            f"image_folder: {path!r} has Pillow mode {mode!r} (more than 8 bits"
            " per pixel); save it with 8 bits per channel."
        )
    return size, mode


def _pixels(path: str, channels: int) -> np.ndarray:
    from PIL import Image  # pylint: disable=g-import-not-at-top

    try:
        with Image.open(path) as im:
            img = im.convert("L" if channels == 1 else "RGB")
            return np.asarray(img, np.uint8).reshape(img.height, img.width, channels)
    except _open_errors() as e:
        raise DataError(f"image_folder: cannot read image {path!r} ({e}).") from None


def _read_images(paths: list[str]) -> np.ndarray:
    """uint8 [N, H, W, C] of same-sized images; C as the module docstring says."""
    heads = [_header(p) for p in paths]
    (w, h), _ = heads[0]
    for path, (size, _) in zip(paths, heads):
        if size != (w, h):
            raise DataError(
                f"image_folder: images differ in size: {paths[0]!r} is {w}x{h} but"
                f" {path!r} is {size[0]}x{size[1]} (width x height); resize them"
                " to one size first."
            )
    channels = 1 if all(mode in _GRAY_MODES for _, mode in heads) else 3
    x = np.empty((len(paths), h, w, channels), np.uint8)
    for i, path in enumerate(paths):
        x[i] = _pixels(path, channels)
    return x


def read_image_folder(data_dir: str | None) -> Raw:
    root = _path(data_dir, "image_folder", "a folder with one sub-folder of images per class")
    if not os.path.isdir(root):
        raise DataError(
            f"image_folder: {root!r} is a file; expected a folder with one sub-folder"
            " per class (an .npz file is data.name=npz)."
        )
    pool_root, test_root = _split_roots(root)
    pool = _class_files(pool_root)
    names = tuple(pool)
    if len(names) < 2:
        raise DataError(
            f"image_folder: {pool_root!r} has only one class folder ({names[0]!r});"
            " a classifier needs at least two."
        )
    test = _class_files(test_root) if test_root else {}
    extra = [c for c in test if c not in pool]
    if extra:
        raise DataError(
            f"image_folder: {test_root!r} has the class folder {extra[0]!r},"
            f" which {pool_root!r} lacks; the test split's classes must be training classes."
        )
    paths, labels = [], []
    for part in (pool, test):
        paths.append([p for files in part.values() for p in files])
        labels.append(np.array([names.index(c) for c, f in part.items() for _ in f], np.int32))
    x = _read_images(paths[0] + paths[1])
    n = len(paths[0])
    return Raw(x[:n], labels[0], x[n:], labels[1], names, 255.0)


# --------------------------------------------------------------------- npz --


def _npz_arrays(path: str) -> dict[str, np.ndarray]:
    """The arrays of an npz file under their canonical names (x, y, ...)."""

    def read(f):
        keys = list(f.files)
        unknown = [k for k in keys if k not in _NPZ_KEYS and k not in _NPZ_ALIASES]
        if unknown:
            raise DataError(
                f"npz: {path!r} holds arrays this reader does not know ({unknown});"
                f" expected x, y and optionally x_test, y_test, class_names."
            )
        for alias, key in _NPZ_ALIASES.items():
            if alias in keys and key in keys:
                raise DataError(f"npz: {path!r} holds both {key!r} and {alias!r}; keep one.")
        return {_NPZ_ALIASES.get(k, k): f[k] for k in keys}

    return load_plain_npz(
        path, "npz", read, "Save plain numeric arrays (and class_names as strings)."
    )


def _images(x: np.ndarray, key: str, path: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[3] not in (1, 3) or 0 in x.shape[1:]:
        raise DataError(
            f"npz: {path!r} {key!r} has shape {x.shape}; expected images"
            " [N, H, W, C] with C = 1 or 3 (or [N, H, W] for one channel)."
        )
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind != "f":
        raise DataError(
            f"npz: {path!r} {key!r} is {x.dtype}; expected uint8 pixels (0..255)"
            " or floats in [0, 1]."
        )
    if x.size and not (np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
        raise DataError(
            f"npz: {path!r} {key!r} holds float pixels outside [0, 1] (from"
            f" {np.nanmin(x)} to {np.nanmax(x)}, or NaN/inf); scale them, or save uint8."
        )
    return x


def _labels(y: np.ndarray, key: str, path: str, n: int, x_key: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(
            f"npz: {path!r} {key!r} is {y.dtype} {y.shape}; expected integer labels"
            f" [N] (convert whole-number floats with {key}.astype(np.int64))."
        )
    if len(y) != n:
        raise DataError(f"npz: {path!r} {x_key!r} holds {n} images but {key!r} {len(y)} labels.")
    if len(y) and y.min() < 0:
        i = int(np.argmin(y))
        raise DataError(f"npz: {path!r} {key!r} holds negative labels ({key}[{i}] = {y[i]}).")
    return y


def _class_names(arrays: dict, path: str) -> tuple[str, ...] | None:
    if "class_names" not in arrays:
        return None
    a = arrays["class_names"]
    if a.ndim != 1 or a.dtype.kind not in "US":
        raise DataError(
            f"npz: {path!r} 'class_names' is {a.dtype} {a.shape}; expected one string per class."
        )
    names = tuple(s.decode() if isinstance(s, bytes) else str(s) for s in a.tolist())
    if len(set(names)) != len(names) or not all(names):
        raise DataError(f"npz: {path!r} 'class_names' must be distinct, non-empty strings.")
    return names


def _check_label_range(y, key: str, path: str, k: int, names_given: bool) -> None:
    if len(y) and y.max() >= k:
        i = int(np.argmax(y))
        known = "class_names names" if names_given else "'y' uses"
        raise DataError(
            f"npz: {path!r} {key}[{i}] = {y[i]} is out of range: {known} {k}"
            f" classes (labels 0..{k - 1})."
        )


def read_npz(data_dir: str | None) -> Raw:
    path = _path(data_dir, "npz", "an .npz file with arrays x and y")
    if os.path.isdir(path):
        raise DataError(
            f"npz: {path!r} is a folder; expected an .npz file (a folder of images"
            " is data.name=image_folder)."
        )
    arrays = _npz_arrays(path)
    for need in ("x", "y"):
        if need not in arrays:
            raise DataError(
                f"npz: {path!r} has no {need!r} array (it has {sorted(arrays)});"
                " expected x [N, H, W, C] and y [N]."
            )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"npz: {path!r} needs both x_test and y_test, or neither.")
    x = _images(arrays["x"], "x", path)
    y = _labels(arrays["y"], "y", path, len(x), "x")
    if len(x) == 0:
        raise DataError(f"npz: {path!r} 'x' holds no images: the data set is empty.")
    tx, ty = x[:0], y[:0]
    if "x_test" in arrays:
        tx = _images(arrays["x_test"], "x_test", path)
        ty = _labels(arrays["y_test"], "y_test", path, len(tx), "x_test")
        if len(tx) == 0:
            raise DataError(
                f"npz: {path!r} 'x_test' is empty; leave it out to hold out a test split."
            )
        if tx.dtype != x.dtype or tx.shape[1:] != x.shape[1:]:
            raise DataError(
                f"npz: {path!r} 'x_test' is {tx.dtype} {tx.shape[1:]} but 'x' is"
                f" {x.dtype} {x.shape[1:]}; both need the same dtype and image shape."
            )
    names = _class_names(arrays, path)
    k = len(names) if names is not None else int(y.max()) + 1
    for key, labels in (("y", y), ("y_test", ty)):
        _check_label_range(labels, key, path, k, names is not None)
    if names is None:
        present = np.unique(y)  # sorted: the first gap is where it differs from 0, 1, ...
        if len(present) < k:
            gap = int(np.flatnonzero(present != np.arange(len(present)))[0])
            raise DataError(
                f"npz: {path!r} 'y' has no label {gap}; without class_names the"
                f" labels are 0..{k - 1} and each occurs (1-based labels? subtract 1)."
            )
        names = tuple(str(i) for i in range(k))
    if k < 2:
        raise DataError(f"npz: {path!r} has only one class; a classifier needs at least two.")
    scale = 1.0 if x.dtype.kind == "f" else 255.0
    return Raw(x, y.astype(np.int32), tx, ty.astype(np.int32), names, scale)
