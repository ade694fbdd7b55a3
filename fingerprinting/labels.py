"""Label sources ("oracles"): what a model is trained to predict.

A label source turns a data split (and, for distillation, the source model's
logits on it) into training targets: one probability vector per example,
[N, K]. Ground truth trains references; the source's hard or soft labels at a
temperature T (Section 2.2) train surrogates. Removal attacks add the
Jagielski soft labels (Eq. 4), uniform noise and ground-truth mixing. A new
source is one small function registered in `LABEL_SOURCES`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from fingerprinting import errors


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def one_hot(y: np.ndarray, k: int) -> np.ndarray:
    return np.eye(k, dtype=np.float32)[np.asarray(y)]


def ground_truth(y, source_logits, *, num_classes, **_):
    return one_hot(y, num_classes)


def source_hard(y, source_logits, *, num_classes, **_):
    return one_hot(np.argmax(source_logits, -1), num_classes)


def source_soft(y, source_logits, *, temperature=1.0, **_):
    return softmax(source_logits / temperature).astype(np.float32)


def log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def jagielski(y, source_logits, *, temperature=1.0, **_):
    """Eq. 4, read as the source's probabilities p raised to 1/T' and renormalised:
    M'(x)_i = p_i^(1/T') / sum_j p_j^(1/T') = softmax(log(p) / T')_i.

    Eq. 4 as printed applies the softmax to the powers p_i^(1/T') themselves, most
    likely a typo: on probabilities in [0, 1] that caps the top label of a confident
    10-class source at e / (e + 9) = 0.23, and a smaller T' makes the labels flatter,
    the opposite of a temperature. Renormalised, T' is a temperature: T' = 1 gives p
    (the Retraining labels), T' > 1 softens them, T' < 1 sharpens them. As log(p)
    differs from the logits by a constant per example, these are `source_soft`'s
    labels at T = T': the adversary tempers the probabilities it receives.
    """
    return softmax(log_softmax(np.asarray(source_logits, np.float64)) / temperature).astype(
        np.float32
    )


def noisy(y, source_logits, *, noise=0.0, rng=None, **_):
    """Source probabilities mixed with uniform random noise of weight lambda
    (the Noise attack); the random vectors are normalized so every label stays a
    probability distribution."""
    rng = rng if rng is not None else np.random.default_rng(0)
    p = softmax(source_logits)
    u = rng.uniform(size=p.shape)
    u /= u.sum(-1, keepdims=True)
    return ((1.0 - noise) * p + noise * u).astype(np.float32)


def mixed_truth(y, source_logits, *, num_classes, truth_share=0.0, rng=None, **_):
    """A share rho of examples labelled with the ground truth, the rest with the
    source's probabilities (the True-labels attack)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    targets = softmax(source_logits).astype(np.float32)
    n = len(y)
    chosen = rng.permutation(n)[: int(round(truth_share * n))]
    targets[chosen] = one_hot(np.asarray(y)[chosen], num_classes)
    return targets


LABEL_SOURCES: dict[str, Callable] = {
    "ground_truth": ground_truth,
    "source_hard": source_hard,
    "source_soft": source_soft,
    "jagielski": jagielski,
    "noisy": noisy,
    "mixed_truth": mixed_truth,
}

NEEDS_SOURCE = frozenset(LABEL_SOURCES) - {"ground_truth"}


def make_targets(name: str, y, source_logits=None, *, num_classes: int, **kwargs):
    """Training targets [N, K] from the label source `name`."""
    if name not in LABEL_SOURCES:
        raise errors.ConfigError(
            f"unknown label source {name!r}; expected one of {', '.join(LABEL_SOURCES)}"
        )
    if name in NEEDS_SOURCE and source_logits is None:
        raise errors.ConfigError(f"label source {name!r} needs the source model's logits")
    return LABEL_SOURCES[name](y, source_logits, num_classes=num_classes, **kwargs)
