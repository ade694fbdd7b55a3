"""A fixed linear map of the pixels, numpy only: the model that tests host on
a third-party server (tests/_oip_model.py), whose every label a test can
compute without training anything or importing the server."""

import numpy as np

INPUT_SHAPE = (8, 8, 1)
NUM_CLASSES = 10


def logits(x_NxHxWxC: np.ndarray, seed: int) -> np.ndarray:
    """Logits [N, K] of 8-bit pixels (integers) or float pixels in [0, 1]."""
    w = np.random.default_rng(seed).normal(size=(int(np.prod(INPUT_SHAPE)), NUM_CLASSES))
    x = np.asarray(x_NxHxWxC)
    x = x.astype(np.float64) / (255.0 if np.issubdtype(x.dtype, np.integer) else 1.0)
    return x.reshape(len(x), -1) @ w


def labels(x_NxHxWxC: np.ndarray, seed: int) -> np.ndarray:
    return logits(x_NxHxWxC, seed).argmax(-1)
