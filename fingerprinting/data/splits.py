"""The party splits: D1 (the defender's data), D2 (the adversary's, disjoint
from D1) and a test split, cut deterministically for a seed, as float32 NHWC
images in [0, 1] and int32 labels; resized or recoloured where one data set
stands in for another."""

from __future__ import annotations

import numpy as np

from fingerprinting.data.base import DATASETS
from fingerprinting.data.base import DataError
from fingerprinting.data.base import Split
from fingerprinting.data.base import Splits
from fingerprinting.data.readers import read

# (d1, d2, test) defaults; other data sets (digits, a user's) halve the pool
# between the parties and test on the whole test split (see _indices).
_DEFAULT_SIZES = {
    "fashion_mnist": (30_000, 30_000, 10_000),
    "cifar10": (25_000, 25_000, 10_000),
    "cinic10": (85_000, 95_000, 90_000),  # the paper's split
    "imagenet32": (64_000, 64_000, 5_000),  # the paper's split
}
# Share of the pool held out as the test split where a data set has none
# (digits, a user's data without one).
_HOLDOUT = 0.2

# ITU-R BT.601 luma weights: the usual RGB -> gray conversion (PIL's "L").
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def to_split(x: np.ndarray, y: np.ndarray, scale: float) -> Split:
    out = x.astype(np.float32)
    np.divide(out, np.float32(scale), out=out)  # in place: no second copy
    return Split(out, y.astype(np.int32))


def load_raw(name: str, data_dir: str | None = None) -> tuple[Split, Split, tuple[str, ...]]:
    """(pool, test, class_names): pool = all images the parties share.

    The pool is the train split (+ valid for cinic10). test is the official
    test split; it is empty for digits and for a user's data without one
    (load_splits then holds out a seeded 20% of the pool).
    """
    raw = read(name, data_dir)
    return (
        to_split(raw.pool_x, raw.pool_y, raw.scale),
        to_split(raw.test_x, raw.test_y, raw.scale),
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
    total = n_pool + n_test
    perm = np.random.default_rng(seed).permutation(n_pool)
    held = None
    if n_test == 0:  # no official test split: hold out a seeded 20% of the pool
        n_test = int(round(_HOLDOUT * n_pool))
        held, perm = perm[:n_test], perm[n_test:]
    half = len(perm) // 2
    default = _DEFAULT_SIZES.get(name, (half, len(perm) - half, n_test))
    d1 = default[0] if d1 is None else d1
    d2 = default[1] if d2 is None else d2
    nt = default[2] if nt is None else nt
    if min(d1, d2, nt) < 1:
        raise DataError(
            f"{name}: {total} images are too few"
            f" for the party splits: D1 would get {d1}, D2 {d2} and the test split"
            f" {nt}; each needs at least one."
        )
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


def to_channels(x: np.ndarray, c: int) -> np.ndarray:
    if x.shape[3] == c:
        return x
    if c == 3 and x.shape[3] == 1:
        return np.repeat(x, 3, axis=3)
    if c == 1 and x.shape[3] == 3:
        return np.einsum("nhwc,c->nhw", x, _LUMA)[..., None].astype(np.float32)
    raise DataError(f"Cannot convert {x.shape[3]}-channel images to {c}.")


def adapt(s: Split, resize: int | None, channels: int | None) -> Split:
    """Resize / recolour so that one data set can stand in for another."""
    x = s.x
    # Both maps are linear, so their order only changes cost: go to one channel
    # before resizing and to three after.
    if channels == 1:
        x = to_channels(x, 1)
    if resize:
        x = _resize(x, resize)
    if channels == 3:
        x = to_channels(x, 3)
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

    raw = read(name, getattr(config, "dir", None))
    h, w = raw.pool_x.shape[1:3]
    if h != w and not resize:  # Knockoff's transfer sets, for one, are square
        raise DataError(
            f"{name}: the images are {w}x{h} (width x height); the models need square"
            " images: set data.resize=S to resize them to S x S."
        )
    i1, i2, held, itest = _indices(name, len(raw.pool_y), len(raw.test_y), int(seed), *sizes)
    # Index the uint8 arrays, then convert only what is kept to float32.
    pick = lambda x, y, i: adapt(to_split(x[i], y[i], raw.scale), resize, channels)
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
