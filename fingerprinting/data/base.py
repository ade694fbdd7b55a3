"""What every part of the data package shares: a data set as read, the
splits, the data set names, and the one error a user sees for bad data."""

from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import Callable, NamedTuple

import numpy as np

from fingerprinting import errors


class DataError(errors.UserError, ValueError):
    """A data set is unknown, missing, malformed, or too small for a request."""


def load_plain_npz(path: str, reader: str, read: Callable, plain: str):
    """`read(f)` on the npz file at `path`, never unpickling (a data file must
    not be able to run code): an archive of pickled (object) arrays, a corrupt
    or a non-npz file each become one DataError line that names `reader`;
    `plain` says what the file should hold instead of pickles."""
    if os.path.isfile(path) and not zipfile.is_zipfile(path):
        raise DataError(f"{reader}: {path!r} is not an npz archive (as np.savez writes).")
    try:
        with np.load(path, allow_pickle=False) as f:
            return read(f)
    except DataError:
        raise
    except ValueError as e:
        if "pickle" not in str(e):
            raise DataError(f"{reader}: cannot read {path!r} ({e}).") from None
        raise DataError(
            f"{reader}: {path!r} holds pickled (object) arrays; refusing to load it. {plain}"
        ) from None
    except Exception as e:  # pylint: disable=broad-except
        # Corrupt or truncated files fail in several ways (BadZipFile, zlib.error, OSError).
        raise DataError(f"{reader}: cannot read {path!r} ({type(e).__name__}: {e}).") from None


class Raw(NamedTuple):
    """A data set as stored, kept small (uint8) until the split is cut."""

    pool_x: np.ndarray  # uint8 [N, H, W, C] (or float in [0, 1], scale 1)
    pool_y: np.ndarray  # int32 [N]
    test_x: np.ndarray  # empty when there is no official test split
    test_y: np.ndarray
    names: tuple[str, ...]
    scale: float  # the pixel value that maps to 1.0


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


# The data sets this project knows, each with its own config.
BUILTIN_DATASETS: tuple[str, ...] = (
    "digits",
    "fashion_mnist",
    "cifar10",
    "cinic10",
    "imagenet32",
)
# A model owner's own data, in the file layout the name says (configs/custom.py).
USER_DATASETS: tuple[str, ...] = ("image_folder", "npz")
DATASETS: tuple[str, ...] = BUILTIN_DATASETS + USER_DATASETS
# Knockoff transfer sets: any built-in data set, or patches of scikit-learn's
# sample photographs.
TRANSFER_SETS: tuple[str, ...] = BUILTIN_DATASETS + ("sample_images",)
# Data sets that only exist in a directory the user names.
NEEDS_DIR: tuple[str, ...] = ("cinic10", "imagenet32")
