"""Data sets and the party splits: who sees which images.

`readers` reads each data set from disk (`user_data` a model owner's own
image folder or npz file), `classes` holds their class names,
`splits` cuts them, deterministically for a seed, into the defender's data
D1, the adversary's data D2 (disjoint from D1) and a test split, and
`transfer` draws Knockoff's transfer sets. Everything downstream receives
float32 NHWC images in [0, 1] and int32 labels; every user-facing failure is
a `DataError` that says what was expected and where.
"""

from fingerprinting.data.base import BUILTIN_DATASETS
from fingerprinting.data.base import DATASETS
from fingerprinting.data.base import DataError
from fingerprinting.data.base import NEEDS_DIR
from fingerprinting.data.base import Split
from fingerprinting.data.base import Splits
from fingerprinting.data.base import TRANSFER_SETS
from fingerprinting.data.base import USER_DATASETS
from fingerprinting.data.classes import CINIC10_CLASSES
from fingerprinting.data.classes import FASHION_MNIST_CLASSES
from fingerprinting.data.classes import IMAGENET32_CLASSES
from fingerprinting.data.splits import load_raw
from fingerprinting.data.splits import load_splits
from fingerprinting.data.transfer import load_transfer

__all__ = [
    "BUILTIN_DATASETS",
    "CINIC10_CLASSES",
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "IMAGENET32_CLASSES",
    "NEEDS_DIR",
    "TRANSFER_SETS",
    "USER_DATASETS",
    "DataError",
    "Split",
    "Splits",
    "load_raw",
    "load_splits",
    "load_transfer",
]
