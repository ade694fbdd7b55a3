"""Distillation attacks: Retraining (the source's probabilities, T = 1),
Jagielski (Eq. 4 soft labels), Papernot (Jacobian-based dataset augmentation
from a small seed set), Knockoff (random queries from a transfer set of
another distribution)."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from fingerprinting import data as data_lib
from fingerprinting import ensemble
from fingerprinting import labels as labels_lib
from fingerprinting.removal.base import Stolen
from fingerprinting.removal.base import distill_epochs
from fingerprinting.removal.base import in_batches
from fingerprinting.removal.base import probabilities
from fingerprinting.removal.base import source_logits
from fingerprinting.removal.base import train


def retraining(source, data, cfg):
    """A fresh model on D2 labelled by the source's probabilities (T = 1)."""
    variables = train(source, data.x, probabilities(data.logits), cfg, epochs=distill_epochs(cfg))
    return Stolen(variables, [{"T": 1.0}])


def jagielski(source, data, cfg):
    """A fresh model on the soft labels of Eq. 4 at temperature T'."""
    t = cfg.removal.jagielski_temperature
    targets = labels_lib.jagielski(None, data.logits, temperature=t)
    variables = train(source, data.x, targets, cfg, epochs=distill_epochs(cfg))
    return Stolen(variables, [{"T'": t}])


def papernot_sizes(seed_size: int, rounds: int) -> list[int]:
    """The training-set size of every round: each augmentation doubles it."""
    return [seed_size * 2**i for i in range(rounds + 1)]


def jacobian_augmentation(model, variables, x, labels, lam: float, batch: int = 256):
    """Papernot et al.'s new points: x + lambda * sign(d F(x)[label] / dx), with F
    the surrogate's probabilities (member 0 of `variables`), clipped to [0, 1]."""

    @jax.jit
    def step(variables, xb, yb):
        prob = lambda z: jnp.sum(
            jnp.take_along_axis(
                jax.nn.softmax(model.apply(variables, z, train=False)), yb[:, None], 1
            )
        )
        return jnp.clip(xb + lam * jnp.sign(jax.grad(prob)(xb)), 0.0, 1.0)

    one = ensemble.member(variables, 0)
    return in_batches(lambda xb, yb, _: step(one, xb, yb), batch, x, labels)


def papernot(source, data, cfg):
    """Jacobian-based dataset augmentation: train on a small labelled seed set,
    add one new point per point along the surrogate's Jacobian, label the new
    points by the source, train again (warm-started); `papernot_rounds` times."""
    r = cfg.removal
    n0 = min(r.papernot_seed_size, len(data.x))
    x, logits = data.x[:n0], data.logits[:n0]
    model, variables = source.group.model, None
    for i in range(r.papernot_rounds + 1):
        if i:
            x_new = jacobian_augmentation(model, variables, x, logits.argmax(-1), r.papernot_lambda)
            x = np.concatenate([x, x_new])
            logits = np.concatenate([logits, source_logits(source, x_new, cfg.strategy)])
        variables = train(
            source,
            x,
            probabilities(logits),
            cfg,
            part=f"round{i}",
            epochs=distill_epochs(cfg),
            init=variables,
            rng=jax.random.fold_in(cfg.rng, i),
        )
    params = {"seed": n0, "rounds": r.papernot_rounds, "lambda": r.papernot_lambda}
    return Stolen(variables, [dict(params, inputs=len(x))])


def knockoff(source, data, cfg):
    """A fresh model on random queries from a transfer set of another
    distribution, labelled by the source's probabilities."""
    r = cfg.removal
    x = data_lib.load_transfer(
        r.knockoff_data,
        r.knockoff_dir or None,
        data.x.shape[1:],
        r.knockoff_size or len(data.x),
        cfg.seed,
    )
    targets = probabilities(source_logits(source, x, cfg.strategy))
    variables = train(source, x, targets, cfg, epochs=distill_epochs(cfg))
    return Stolen(variables, [{"transfer": r.knockoff_data, "inputs": len(x)}])
