"""Adaptive attacks: Ensemble (n surrogates on disjoint parts of D2, deployed
as their average), Noise (probabilities mixed with uniform noise), True
labels (a share of D2 with ground-truth labels)."""

from __future__ import annotations


import numpy as np

from fingerprinting import config as config_lib
from fingerprinting import labels as labels_lib
from fingerprinting.removal.base import Stolen
from fingerprinting.removal.base import distill_epochs
from fingerprinting.removal.base import probabilities
from fingerprinting.removal.base import train


def ensemble_attack(source, data, cfg):
    """n surrogates, each distilled from a disjoint part of D2, answering as the
    average of their probabilities."""
    n = cfg.removal.ensemble_size
    part = len(data.x) // n
    subsets = np.arange(n * part).reshape(n, part)
    variables = train(
        source,
        data.x,
        probabilities(data.logits),
        cfg,
        epochs=distill_epochs(cfg),
        size=n,
        subsets=subsets,
    )
    return Stolen(variables, [{"n": n}] * n, deploy="mean")


def _label_sweep(source, data, cfg, key, values, make_targets) -> Stolen:
    """One member per value, each on its own targets, all in one stacked group."""
    targets = np.stack(
        [make_targets(v, np.random.default_rng([cfg.seed, i])) for i, v in enumerate(values)]
    )
    variables = train(source, data.x, targets, cfg, epochs=distill_epochs(cfg), size=len(values))
    return Stolen(variables, [{key: v} for v in values], sweep=key)


def noise(source, data, cfg):
    """Distillation on the source's probabilities mixed with uniform noise of
    weight lambda, one member per lambda."""
    values = config_lib.parse_floats(cfg.removal.noise_lambdas)
    make = lambda lam, rng: labels_lib.noisy(None, data.logits, noise=lam, rng=rng)
    return _label_sweep(source, data, cfg, "lambda", values, make)


def true_labels(source, data, cfg):
    """Distillation where a share rho of D2 carries ground-truth labels, one
    member per rho."""
    values = config_lib.parse_floats(cfg.removal.truth_shares)
    make = lambda rho, rng: labels_lib.mixed_truth(
        data.y, data.logits, num_classes=data.num_classes, truth_share=rho, rng=rng
    )
    return _label_sweep(source, data, cfg, "rho", values, make)
