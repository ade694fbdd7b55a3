"""Adversarial training (FGM, PGD): the source fine-tuned on D2 inputs plus
adversarial examples crafted on it from them."""

from __future__ import annotations


import jax
import numpy as np

from fingerprinting import attacks
from fingerprinting import ensemble
from fingerprinting.removal.base import AttackConfig
from fingerprinting.removal.base import Stolen
from fingerprinting.removal.base import in_batches
from fingerprinting.removal.base import train
from fingerprinting.removal.finetune import finetune_set


def craft_adversarial(source, x, labels, method: str, cfg: AttackConfig) -> np.ndarray:
    """Untargeted L-inf adversarial examples on the source, away from `labels`."""
    r = cfg.removal
    model, variables = source.group.model, ensemble.member(source.variables, 0)

    @jax.jit
    def run(variables, xb, yb, offset):
        logits_fn = lambda z: model.apply(variables, z, train=False)
        if method == "fgm":
            return attacks.fgsm(logits_fn, xb, yb, eps=r.adversarial_eps)
        key = jax.random.fold_in(cfg.rng, offset)
        return attacks.pgd(
            logits_fn,
            xb,
            yb,
            eps=r.adversarial_eps,
            alpha=r.adversarial_alpha,
            steps=r.adversarial_steps,
            norm="inf",
            rng=key,
        )

    return in_batches(lambda xb, yb, i: run(variables, xb, yb, i), 256, x, labels)


def _adversarial_training(source, data, cfg, method: str) -> Stolen:
    """Fine-tunes the whole source on the fine-tuning set plus adversarial
    examples of its first `adversarial_size` inputs, labelled as their originals."""
    r = cfg.removal
    x, targets = finetune_set(data, cfg)
    k = min(r.adversarial_size, len(x))
    x_adv = craft_adversarial(source, x[:k], targets[:k].argmax(-1), method, cfg)
    variables = train(
        source,
        np.concatenate([x, x_adv]),
        np.concatenate([targets, targets[:k]]),
        cfg,
        epochs=r.finetune_epochs,
        lr_scale=r.finetune_lr_scale,
        init=source.variables,
    )
    return Stolen(variables, [{"examples": k, "eps": round(r.adversarial_eps, 4)}])


def fgm(source, data, cfg):
    """Adversarial training on fast-gradient-sign examples."""
    return _adversarial_training(source, data, cfg, "fgm")


def pgd(source, data, cfg):
    """Adversarial training on L-inf PGD examples (Madry et al.)."""
    return _adversarial_training(source, data, cfg, "pgd")
