"""Knockoff's transfer sets: images of another data set, or patches of
scikit-learn's two bundled photographs, resized to the attacked model's input."""

from __future__ import annotations

import numpy as np

from fingerprinting.data.base import DataError
from fingerprinting.data.base import TRANSFER_SETS
from fingerprinting.data.readers import read
from fingerprinting.data.splits import adapt
from fingerprinting.data.splits import to_channels
from fingerprinting.data.splits import to_split


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
        return to_channels(_sample_image_patches(size, side, seed), channels)
    if name not in TRANSFER_SETS:
        raise DataError(f"Unknown transfer set {name!r}; known: {', '.join(TRANSFER_SETS)}.")
    raw = read(name, data_dir)
    if size > len(raw.pool_y):
        raise DataError(
            f"{name}: {size} transfer images asked for, but its pool has only {len(raw.pool_y)}."
        )
    idx = np.random.default_rng(seed).permutation(len(raw.pool_y))[:size]
    return adapt(to_split(raw.pool_x[idx], raw.pool_y[idx], raw.scale), side, channels).x
