"""Gradient-based baseline attacks (FGSM, BIM, PGD) and the shared sign-gradient loop.

All functions are pure, operate on a batch of float32 NHWC images in [0, 1], and are meant to be
called inside ``jax.jit`` (iterations run in ``lax.fori_loop``; nothing branches on traced values).
``sign_gradient_descent`` is the projected sign-gradient loop of BIM (Kurakin et al., Eq. 7 of Lukas et
al.) written against an arbitrary loss, so that C-BIM can reuse it with its conferrability loss;
``fgsm`` implements Eq. 6, ``bim`` Eq. 7 with the cross-entropy loss, and ``pgd`` the L-inf / L2 projected
gradient method of Madry et al. with an optional random start. Every result lies in [0, 1] and within
``eps`` of the clean input in the attack's norm.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax

from fingerprinting import errors

Array = jax.Array
LogitsFn = Callable[[Array], Array]
LossFn = Callable[[Array, Optional[Array]], Array]

# Guards divisions by per-example gradient / perturbation norms that can be exactly zero
# (e.g. a saturated softmax); a zero gradient then yields a zero step instead of NaN.
_TINY = 1e-12


def canonical_norm(norm: Any) -> str:
    """Maps the accepted spellings of a norm ("inf", np.inf, "linf", 2, "2", "l2") to "inf" or "l2"."""
    if isinstance(norm, str):
        key = norm.lower()
        if key in ("inf", "linf", "l_inf", "l-inf"):
            return "inf"
        if key in ("2", "l2", "l_2"):
            return "l2"
    elif norm == float("inf"):
        return "inf"
    elif norm == 2:
        return "l2"
    raise errors.ConfigError(f"Unsupported norm {norm!r}; expected 'inf' or 2.")


def _batch_axes(x: Array) -> tuple[int, ...]:
    return tuple(range(1, x.ndim))


def l2_norm(v: Array, keepdims: bool = True) -> Array:
    """Per-example L2 norm over all non-batch axes."""
    return jnp.sqrt(jnp.sum(jnp.square(v), axis=_batch_axes(v), keepdims=keepdims))


def project_linf(x: Array, x0: Array, eps: Any) -> Array:
    """Projects ``x`` onto the L-inf ball of radius ``eps`` around ``x0`` (the clip_{x0,eps} of Eq. 7)."""
    return jnp.clip(x, x0 - eps, x0 + eps)


def project_l2(x: Array, x0: Array, eps: Any) -> Array:
    """Projects each example of ``x`` onto the L2 ball of radius ``eps`` around the matching ``x0``."""
    delta = x - x0
    norm = l2_norm(delta)
    # Only shrink (factor <= 1): points already inside the ball are left untouched.
    factor = jnp.minimum(1.0, eps / jnp.maximum(norm, _TINY))
    return x0 + delta * factor


def project(x: Array, x0: Array, eps: Any, norm: str) -> Array:
    """Projects onto the eps ball of ``norm`` around ``x0`` and then into the pixel box [0, 1].

    Clipping to [0, 1] after the ball projection never leaves the ball: as ``x0`` lies in [0, 1], the
    clip moves every coordinate towards ``x0`` and so can only shrink any Lp distance to it.
    """
    x = project_linf(x, x0, eps) if norm == "inf" else project_l2(x, x0, eps)
    return jnp.clip(x, 0.0, 1.0)


def cross_entropy(logits_fn: LogitsFn, x: Array, y: Array) -> Array:
    """Cross-entropy of ``logits_fn(x)`` w.r.t. integer labels ``y``, summed over the batch.

    The sum (not the mean) keeps each example's input gradient independent of the batch size.
    """
    logits = logits_fn(x)
    return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def descent_step(
    loss_fn: LossFn,
    x: Array,
    x0: Array,
    i: Any,
    *,
    eps: Any,
    alpha: Any,
    norm: str = "inf",
    rng: Optional[Array] = None,
) -> Array:
    """Step ``i`` of projected steepest descent: the body of BIM, PGD and C-BIM.

    The steepest-descent direction of the L-inf norm is sign(grad) (BIM / L-inf PGD); that of the L2 norm
    is grad / ||grad||_2 per example (L2 PGD). Exposed so that a caller can drive the loop from Python
    (loop 'python', one jitted step per call) as well as inside `lax.fori_loop`.
    """
    # A fresh key per step so that stochastic losses (C-BIM's dropout) see new noise every step.
    key = None if rng is None else jax.random.fold_in(rng, i)
    g = jax.grad(loss_fn)(x, key)
    if norm == "inf":
        direction = jnp.sign(g)
    else:
        direction = g / jnp.maximum(l2_norm(g), _TINY)
    x = x - alpha * direction
    return project(x, x0, eps, norm).astype(x0.dtype)


def _projected_descent(
    loss_fn: LossFn,
    x0: Array,
    x_init: Array,
    *,
    eps: Any,
    alpha: Any,
    steps: int,
    norm: str,
    rng: Optional[Array],
) -> Array:
    """Projected steepest descent on ``loss_fn`` starting from ``x_init`` and constrained around ``x0``.

    The steepest-descent direction of the L-inf norm is sign(grad) (BIM / L-inf PGD); that of the L2 norm
    is grad / ||grad||_2 per example (L2 PGD).
    """
    body = lambda i, x: descent_step(loss_fn, x, x0, i, eps=eps, alpha=alpha, norm=norm, rng=rng)
    return jax.lax.fori_loop(0, steps, body, x_init.astype(x0.dtype))


def sign_gradient_descent(
    loss_fn: LossFn,
    x0: Array,
    *,
    eps: Any,
    alpha: Any,
    steps: int,
    rng: Optional[Array] = None,
) -> Array:
    """The BIM loop (Eq. 7) shared by BIM and C-BIM, written as a minimization.

    Each of the ``steps`` iterations does ``x <- clip_[0,1](clip_{x0,eps}(x - alpha * sign(grad loss_fn)))``,
    starting from ``x0``.

    Args:
      loss_fn: ``loss_fn(x, rng) -> scalar`` to MINIMIZE. It should sum (not average) per-example terms so
        that the gradient of one example does not depend on the others.
      x0: clean inputs in [0, 1], any shape with a leading batch axis.
      eps: L-inf radius of the allowed perturbation (pixel units).
      alpha: step size (pixel units).
      steps: number of iterations (static Python int).
      rng: PRNGKey; step ``i`` passes ``jax.random.fold_in(rng, i)`` to ``loss_fn``. ``None`` -> ``loss_fn``
        receives ``None`` every step.

    Returns:
      Adversarial inputs with the shape and dtype of ``x0``, in [0, 1] and within ``eps`` of ``x0``.
    """
    return _projected_descent(
        loss_fn, x0, x0, eps=eps, alpha=alpha, steps=steps, norm="inf", rng=rng
    )


def _ce_objective(logits_fn: LogitsFn, y: Array, targeted: bool) -> LossFn:
    """The loss to minimize: CE towards the target (targeted) or negative CE on the true label."""
    sign = 1.0 if targeted else -1.0

    def loss_fn(x: Array, _rng: Optional[Array]) -> Array:
        return sign * cross_entropy(logits_fn, x, y)

    return loss_fn


def fgsm(
    logits_fn: LogitsFn,
    x: Array,
    y: Array,
    *,
    eps: Any,
    targeted: bool = False,
    norm: Any = "inf",
) -> Array:
    """Fast gradient (sign) method, Eq. 6: one step of size ``eps``.

    Untargeted: ``x + eps * sign(grad_x CE(f(x), y))`` (increases the loss on the true label ``y``);
    targeted: ``x - eps * sign(grad_x CE(f(x), y))`` (decreases the loss towards target ``y``). With
    ``norm=2`` the sign is replaced by the per-example L2-normalized gradient (fast gradient method).
    The result is clipped to [0, 1].
    """
    norm = canonical_norm(norm)
    g = jax.grad(lambda z: cross_entropy(logits_fn, z, y))(x)
    if norm == "inf":
        direction = jnp.sign(g)
    else:
        direction = g / jnp.maximum(l2_norm(g), _TINY)
    step = -eps * direction if targeted else eps * direction
    return project(x + step, x, eps, norm).astype(x.dtype)


def bim(
    logits_fn: LogitsFn,
    x: Array,
    y: Array,
    *,
    eps: Any,
    alpha: Any = 0.01,
    steps: int = 100,
    targeted: bool = False,
) -> Array:
    """Basic iterative method / iterative gradient method (Kurakin et al.), Eq. 7, L-inf.

    Repeats FGSM steps of size ``alpha`` on the cross-entropy, projecting into the L-inf ``eps`` ball and
    [0, 1] after each step. Defaults follow Table 6 (100 iterations, alpha 0.01).
    """
    return sign_gradient_descent(
        _ce_objective(logits_fn, y, targeted), x, eps=eps, alpha=alpha, steps=steps
    )


def _random_start(rng: Array, x: Array, eps: Any, norm: str) -> Array:
    """Uniform sample from the eps ball around ``x`` (then clipped to [0, 1])."""
    if norm == "inf":
        delta = jax.random.uniform(rng, x.shape, x.dtype, minval=-1.0, maxval=1.0) * eps
    else:
        # Uniform in the L2 ball: a uniform direction (normalized Gaussian) and a radius distributed as
        # eps * U^(1/d), since the ball's volume grows as r^d.
        k_dir, k_rad = jax.random.split(rng)
        z = jax.random.normal(k_dir, x.shape, x.dtype)
        d = x[0].size
        u = jax.random.uniform(k_rad, (x.shape[0],) + (1,) * (x.ndim - 1), x.dtype)
        delta = eps * u ** (1.0 / d) * z / jnp.maximum(l2_norm(z), _TINY)
    return project(x + delta, x, eps, norm)


def pgd(
    logits_fn: LogitsFn,
    x: Array,
    y: Array,
    *,
    eps: Any,
    alpha: Any = 0.01,
    steps: int = 100,
    norm: Any = 2,
    rng: Optional[Array] = None,
    random_start: bool = True,
    targeted: bool = False,
) -> Array:
    """Projected gradient descent (Madry et al.) in the L2 (default, Table 6) or L-inf norm.

    L2 steps are ``x + alpha * g / ||g||_2`` per example (``-`` when targeted), followed by projection
    onto the L2 ball of radius ``eps`` around ``x`` and clipping to [0, 1]; L-inf steps use ``sign(g)``
    and the L-inf ball. With ``rng`` given and ``random_start``, the iteration starts from a point drawn
    uniformly from the eps ball (clipped to [0, 1]); otherwise it starts at ``x``.
    """
    norm = canonical_norm(norm)
    x_init = x
    if rng is not None and random_start:
        x_init = _random_start(rng, x, eps, norm)
    return _projected_descent(
        _ce_objective(logits_fn, y, targeted),
        x,
        x_init,
        eps=eps,
        alpha=alpha,
        steps=steps,
        norm=norm,
        rng=None,
    )
