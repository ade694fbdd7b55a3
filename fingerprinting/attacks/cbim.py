"""Conferrable BIM (Section 4.4): BIM on the composed ensemble M_E.

`probs_fn(x)` returns the softmax outputs of the surrogate side (the source
first, then the surrogates: S_M of Eq. 11) and of the references, stacked per
member. Two losses:
- "linear" (Eq. 14): -M_E(x)[t] with M_E = (1 - Ref) * Surr (Eq. 13) and t the
  best wrong class of M_E, recomputed at every step;
- "three_term" (the published version of the paper):
  H(1, max_t M_E(x')) - beta * H(M(x0), M(x')) + gamma * H(M(x'), Surr(x')),
  the max over the wrong classes t != y.
Dropout on the ensemble's output (whole members by default) is resampled at
every step from the step's key, so the example cannot overfit a fixed subset
of the training models. Input diversity (optional) does the same on the input
side: every step the ensemble sees the example shifted by a few pixels and
with Gaussian noise added, so that the perturbation must survive small
changes of the input rather than exploit one model's exact pixel grid, a
known way to make adversarial examples transfer to unseen architectures
(Xie et al., "Improving transferability of adversarial examples with input
diversity", 2019).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from fingerprinting import errors
from fingerprinting.attacks.gradient import descent_step
from fingerprinting.attacks.gradient import sign_gradient_descent

LOSSES = ("linear", "three_term")
_EPS = 1e-12


def member_keep_mask(rng, num: int, rate: float) -> jnp.ndarray:
    """Whole-member dropout: keeps each member with probability 1 - rate and
    always at least one, so the renormalized mean is defined."""
    if rate <= 0.0 or rng is None:
        return jnp.ones((num,), jnp.float32)
    k1, k2 = jax.random.split(rng)
    keep = jax.random.bernoulli(k1, 1.0 - rate, (num,))
    fallback = jax.nn.one_hot(jax.random.randint(k2, (), 0, num), num) > 0
    keep = jnp.where(keep.any(), keep, fallback)
    return keep.astype(jnp.float32)


def masked_mean(probs_MxBxK, keep_M):
    """Mean over the kept members (Eq. 11-12 under member dropout)."""
    w = keep_M / keep_M.sum()
    return jnp.einsum("m,mbk->bk", w, probs_MxBxK)


def compose(
    surr_probs_MxBxK,
    ref_probs_MxBxK,
    *,
    rng=None,
    dropout: float = 0.0,
    dropout_kind: str = "member",
    keep_source: bool = False,
):
    """Compose(M, S, R) of Section 4.4: (Surr, Ref, M_E), each [B, K].

    surr_probs holds the source and the surrogates (S_M), ref_probs the
    references. Dropout 'member' drops whole models and renormalizes the means;
    'output' drops entries of the ensemble's output vector (Keras-style dropout
    before the output, scaled by 1/(1-rate)). With `keep_source` member dropout
    never drops member 0 of the surrogate side, the source: the keys are its
    labels, so every step should push towards what it answers.
    """
    ks, kr, ko = jax.random.split(rng, 3) if rng is not None else (None,) * 3
    if dropout_kind == "member" and dropout > 0:
        keep = member_keep_mask(ks, surr_probs_MxBxK.shape[0], dropout)
        if keep_source:
            keep = keep.at[0].set(1.0)
        surr = masked_mean(surr_probs_MxBxK, keep)
        ref = masked_mean(ref_probs_MxBxK, member_keep_mask(kr, ref_probs_MxBxK.shape[0], dropout))
    else:
        surr, ref = surr_probs_MxBxK.mean(0), ref_probs_MxBxK.mean(0)
    m_e = (1.0 - ref) * surr  # Eq. 13
    if dropout_kind == "output" and dropout > 0 and ko is not None:
        keep = jax.random.bernoulli(ko, 1.0 - dropout, m_e.shape)
        m_e = jnp.where(keep, m_e / (1.0 - dropout), 0.0)
    elif dropout_kind not in ("member", "output"):
        raise errors.ConfigError(
            f"unknown ensemble dropout kind {dropout_kind!r}; expected 'member' or 'output'"
        )
    return surr, ref, m_e


def best_wrong_class(scores_BxK, y_B):
    """The highest-scoring class other than the true label."""
    masked = jnp.where(jax.nn.one_hot(y_B, scores_BxK.shape[-1]) > 0, -jnp.inf, scores_BxK)
    return jnp.argmax(masked, -1)


def linear_loss(surr_BxK, ref_BxK, m_e_BxK, y_B, **_):
    t = jax.lax.stop_gradient(best_wrong_class(m_e_BxK, y_B))
    return -jnp.take_along_axis(m_e_BxK, t[:, None], -1).sum()  # Eq. 14


def three_term_loss(
    surr_BxK, ref_BxK, m_e_BxK, y_B, *, source_BxK, source0_BxK, beta: float, gamma: float
):
    # max_t runs over the wrong classes: with t = y the term would reward inputs
    # on which only the references change their mind, the opposite of the goal.
    t = jax.lax.stop_gradient(best_wrong_class(m_e_BxK, y_B))
    h_max = -jnp.log(jnp.take_along_axis(m_e_BxK, t[:, None], -1)[:, 0] + _EPS)
    h_away = -(source0_BxK * jnp.log(source_BxK + _EPS)).sum(-1)
    h_agree = -(source_BxK * jnp.log(surr_BxK + _EPS)).sum(-1)
    return (h_max - beta * h_away + gamma * h_agree).sum()


def diversify(x_BxHxWxC, key, *, shift: int = 0, noise: float = 0.0):
    """x moved by up to `shift` pixels per example (edges repeated) plus N(0, noise^2).

    Differentiable in x; the identity when both are 0.
    """
    k_shift, k_noise = jax.random.split(key)
    if shift:
        b, h, w, _ = x_BxHxWxC.shape
        padded = jnp.pad(x_BxHxWxC, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="edge")
        offsets_Bx2 = jax.random.randint(k_shift, (b, 2), 0, 2 * shift + 1)

        def crop(image, offset):
            return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, image.shape[-1]))

        x_BxHxWxC = jax.vmap(crop)(padded, offsets_Bx2)
    if noise:
        x_BxHxWxC = x_BxHxWxC + noise * jax.random.normal(k_noise, x_BxHxWxC.shape)
    return x_BxHxWxC


def cbim_loss(
    probs_fn: Callable,
    x0,
    y,
    *,
    dropout: float = 0.5,
    dropout_kind: str = "member",
    keep_source: bool = False,
    loss: str = "linear",
    beta: float = 1.0,
    gamma: float = 1.0,
    shift: int = 0,
    noise: float = 0.0,
):
    """loss_fn(x, key) of C-BIM for the sign-gradient loop.

    `shift` and `noise` turn on input diversity (see `diversify`); without
    them the step's key goes to dropout alone, as before.
    """
    if loss not in LOSSES:
        raise errors.ConfigError(
            f"unknown C-BIM loss {loss!r}; expected one of {', '.join(LOSSES)}"
        )
    source0 = jax.lax.stop_gradient(probs_fn(x0)[0][0]) if loss == "three_term" else None

    def loss_fn(x, key):
        if (shift or noise) and key is not None:
            key, k_input = jax.random.split(key)
            x = diversify(x, k_input, shift=shift, noise=noise)
        surr_probs, ref_probs = probs_fn(x)
        surr, ref, m_e = compose(
            surr_probs,
            ref_probs,
            rng=key,
            dropout=dropout,
            dropout_kind=dropout_kind,
            keep_source=keep_source,
        )
        if loss == "linear":
            return linear_loss(surr, ref, m_e, y)
        return three_term_loss(
            surr, ref, m_e, y, source_BxK=surr_probs[0], source0_BxK=source0, beta=beta, gamma=gamma
        )

    return loss_fn


def cbim(
    probs_fn: Callable,
    x0,
    y,
    *,
    eps: float,
    alpha: float = 0.01,
    steps: int = 100,
    rng=None,
    **loss_kwargs,
):
    """C-BIM from clean inputs x0 with true labels y; returns x' in the eps ball.

    `probs_fn(x) -> (surr_MxBxK, ref_MxBxK)`, member 0 of surr being the source;
    `loss_kwargs` go to `cbim_loss` (dropout, dropout_kind, keep_source, loss,
    beta, gamma, shift, noise).
    """
    loss_fn = cbim_loss(probs_fn, x0, y, **loss_kwargs)
    return sign_gradient_descent(loss_fn, x0, eps=eps, alpha=alpha, steps=steps, rng=rng)


def cbim_step(
    probs_fn: Callable, x, x0, y, i, *, eps: float, alpha: float = 0.01, rng=None, **loss_kwargs
):
    """Step i of `cbim`, for a loop driven from Python (equal results)."""
    loss_fn = cbim_loss(probs_fn, x0, y, **loss_kwargs)
    return descent_step(loss_fn, x, x0, i, eps=eps, alpha=alpha, norm="inf", rng=rng)
