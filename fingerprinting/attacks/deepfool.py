"""Multi-class DeepFool (Moosavi-Dezfooli et al., 2016) in the L2 and L-inf geometries.

At every iteration the classifier is linearized around the current point for the ``num_candidates``
classes ranked highest (by the clean logits) other than the original prediction ``k0``; for each
candidate ``k`` the boundary with ``k0`` is the hyperplane ``f_k + w_k . r = 0`` with
``f_k = Z_k - Z_k0`` and ``w_k = grad(Z_k - Z_k0)``. The closest hyperplane (distance
``|f_k| / ||w_k||_q``, ``q`` the dual norm) is chosen and the minimal step onto it is accumulated. The
iterate is ``x0 + (1 + overshoot) * r_total``; an example stops moving as soon as its predicted label
differs from ``k0`` (a mask, so the batch needs no Python branching). The result is clipped to [0, 1]
and, if ``eps`` is given, its perturbation is projected into the L-inf ``eps`` ball.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from fingerprinting.attacks.gradient import canonical_norm, project_linf

Array = jax.Array

# Added to |f_k| when stepping, so that (even with overshoot 0) the step ends strictly past the
# boundary rather than on it, where round-off decides the label. In logit units.
_CROSS_MARGIN = 1e-4
_TINY = 1e-12


def deepfool(
    logits_fn: Callable[[Array], Array],
    x: Array,
    *,
    steps: int = 100,
    num_candidates: int = 10,
    overshoot: float = 0.02,
    norm: Any = "inf",
    eps: Optional[Any] = None,
) -> Array:
    """Untargeted multi-class DeepFool; defaults follow Table 6 (100 iterations, 10 candidates, L-inf).

    Args:
      logits_fn: pure function from a batch of inputs to logits ``[B, K]``.
      x: clean inputs in [0, 1] with a leading batch axis.
      steps: maximum number of linearization steps (static). The loop exits early once every example
        of the batch has changed its label.
      num_candidates: number of candidate classes (highest clean logits, excluding the original
        prediction); clamped to ``K - 1``.
      overshoot: the accumulated perturbation is scaled by ``1 + overshoot`` to cross the boundary.
      norm: "inf" (step ``(|f|+m)/||w||_1 * sign(w)``) or 2 (step ``(|f|+m)/||w||_2^2 * w``).
      eps: optional L-inf bound applied to the final perturbation.

    Returns:
      Adversarial inputs with the shape and dtype of ``x``, in [0, 1].
    """
    norm = canonical_norm(norm)
    batch = x.shape[0]

    logits0 = logits_fn(x)
    num_classes = logits0.shape[-1]
    n_cand = min(num_candidates, num_classes - 1)
    k0 = jnp.argmax(logits0, axis=-1)
    rows = jnp.arange(batch)
    # Rank the other classes by the clean logits; the original class is masked out of the top-k.
    masked = logits0.at[rows, k0].set(-jnp.inf)
    _, cands = jax.lax.top_k(masked, n_cand)  # [B, C]

    def current_point(r_tot: Array) -> Array:
        return jnp.clip(x + (1.0 + overshoot) * r_tot, 0.0, 1.0)

    def step(r_tot: Array) -> tuple[Array, Array]:
        """One linearization step; returns the new total perturbation and the 'still active' mask."""
        x_i = current_point(r_tot)
        logits, vjp_fn = jax.vjp(logits_fn, x_i)
        active = jnp.argmax(logits, axis=-1) == k0  # [B]

        # Cotangent j selects Z_{cand_j} - Z_{k0} for every example: one forward pass and C
        # vectorized backward passes give all w_k at once; examples are independent because the
        # model acts per example, so each example's rows only receive its own gradient.
        onehot_c = jax.nn.one_hot(cands, num_classes, dtype=logits.dtype)  # [B, C, K]
        onehot_0 = jax.nn.one_hot(k0, num_classes, dtype=logits.dtype)[:, None, :]
        cot = jnp.moveaxis(onehot_c - onehot_0, 1, 0)  # [C, B, K]
        (w,) = jax.vmap(vjp_fn)(cot)  # [C, B, ...]
        w = jnp.moveaxis(w, 0, 1)  # [B, C, ...]
        f = jnp.take_along_axis(logits, cands, axis=1) - logits[rows, k0][:, None]  # [B, C]

        w_axes = tuple(range(2, w.ndim))
        if norm == "inf":
            dual = jnp.sum(jnp.abs(w), axis=w_axes)  # L1, the dual of L-inf
        else:
            dual = jnp.sqrt(jnp.sum(jnp.square(w), axis=w_axes))
        dist = jnp.abs(f) / jnp.maximum(dual, _TINY)  # [B, C]
        best = jnp.argmin(dist, axis=1)  # [B]
        w_l = w[rows, best]  # [B, ...]
        f_l = f[rows, best]
        dual_l = jnp.maximum(dual[rows, best], _TINY)
        expand = (slice(None),) + (None,) * (x.ndim - 1)
        scale = jnp.abs(f_l) + _CROSS_MARGIN
        if norm == "inf":
            r_i = (scale / dual_l)[expand] * jnp.sign(w_l)
        else:
            r_i = (scale / jnp.square(dual_l))[expand] * w_l
        # Examples whose label already changed keep their perturbation.
        r_tot = r_tot + jnp.where(active[expand], r_i, 0.0).astype(r_tot.dtype)
        return r_tot, active

    def cond(state: tuple[Array, Array, Array]) -> Array:
        i, _, active = state
        return jnp.logical_and(i < steps, jnp.any(active))

    def body(state: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
        i, r_tot, _ = state
        r_tot, active = step(r_tot)
        return i + 1, r_tot, active

    # A while loop rather than fori_loop: DeepFool typically converges in a few iterations, and each
    # iteration costs num_candidates backward passes, so stopping once the whole batch is done saves
    # most of the 100-step budget. The mask above makes the result independent of this early exit.
    init = (jnp.asarray(0, jnp.int32), jnp.zeros_like(x), jnp.ones((batch,), bool))
    _, r_tot, _ = jax.lax.while_loop(cond, body, init)

    x_adv = current_point(r_tot)
    if eps is not None:
        x_adv = jnp.clip(project_linf(x_adv, x, eps), 0.0, 1.0)
    return x_adv.astype(x.dtype)
