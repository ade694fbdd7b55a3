"""Tests for the baseline attacks in ``fingerprinting.attacks``: feasibility (eps ball and [0, 1]),
analytic answers on linear models (FGSM, DeepFool), success of targeted / untargeted attacks on a small
MLP trained here on sklearn's 8x8 digits, the per-step rng of the shared sign-gradient loop, C-BIM's
losses and step on a tiny linear ensemble computed by hand (Eq. 11-14), and the absence of
retracing under jit.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

from fingerprinting.attacks import cbim as cbim_lib
from fingerprinting.attacks import (
    ATTACKS,
    bim,
    cw_l2,
    deepfool,
    fgsm,
    l2_norm,
    pgd,
    sign_gradient_descent,
)

SLACK = 1e-6  # float slack on the eps-ball and [0, 1] guarantees


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------


def linear_logits(params, x):
    w, b = params
    return x.reshape(x.shape[0], -1) @ w + b[None]


def mlp_init(key, d_in, d_hidden, n_classes, scale=1.0):
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (d_in, d_hidden)) * scale / np.sqrt(d_in),
        "b1": jnp.zeros(d_hidden),
        "w2": jax.random.normal(k2, (d_hidden, n_classes)) * scale / np.sqrt(d_hidden),
        "b2": jnp.zeros(n_classes),
    }


def mlp_logits(params, x):
    h = jax.nn.relu(x.reshape(x.shape[0], -1) @ params["w1"] + params["b1"][None])
    return h @ params["w2"] + params["b2"][None]


def linf_dist(a, b):
    return jnp.max(jnp.abs(a - b).reshape(a.shape[0], -1), axis=1)


def l2_dist(a, b):
    return l2_norm(a - b, keepdims=False)


# ----------------------------------------------------------------------------------------------
# Property: every result stays inside the eps ball and [0, 1], also for pixels at 0 and 1.
# ----------------------------------------------------------------------------------------------

_SHAPE = (8, 4, 4, 3)
_K = 5

# name -> (attack(logits_fn, x, y) -> x_adv, norm of the eps guarantee or None, eps)
_BOUND_CASES = {
    "fgsm_inf": (lambda f, x, y: fgsm(f, x, y, eps=0.1), "inf", 0.1),
    "fgsm_inf_targeted": (lambda f, x, y: fgsm(f, x, y, eps=0.1, targeted=True), "inf", 0.1),
    "fgsm_l2": (lambda f, x, y: fgsm(f, x, y, eps=0.5, norm=2), "l2", 0.5),
    "bim": (lambda f, x, y: bim(f, x, y, eps=0.05, alpha=0.02, steps=10), "inf", 0.05),
    "bim_targeted": (
        lambda f, x, y: bim(f, x, y, eps=0.05, alpha=0.02, steps=10, targeted=True),
        "inf",
        0.05,
    ),
    "pgd_l2_random_start": (
        lambda f, x, y: pgd(f, x, y, eps=0.5, alpha=0.2, steps=10, rng=jax.random.PRNGKey(3)),
        "l2",
        0.5,
    ),
    "pgd_l2_large_eps": (lambda f, x, y: pgd(f, x, y, eps=3.0, alpha=1.0, steps=10), "l2", 3.0),
    "pgd_inf_random_start": (
        lambda f, x, y: pgd(
            f, x, y, eps=0.05, alpha=0.02, steps=10, norm="inf", rng=jax.random.PRNGKey(4)
        ),
        "inf",
        0.05,
    ),
    "deepfool_inf_eps": (lambda f, x, y: deepfool(f, x, steps=10, eps=0.02), "inf", 0.02),
    "deepfool_l2_no_eps": (lambda f, x, y: deepfool(f, x, steps=10, norm=2), None, None),
    "cw_eps": (lambda f, x, y: cw_l2(f, x, y, steps=10, lr=0.1, eps=0.05), "inf", 0.05),
    "cw_targeted_no_eps": (
        lambda f, x, y: cw_l2(f, x, y, steps=10, lr=0.1, targeted=True),
        None,
        None,
    ),
    "sign_gradient_descent": (
        lambda f, x, y: sign_gradient_descent(
            lambda z, k: jnp.sum(jax.random.normal(k, z.shape) * z) + jnp.sum(f(z)),
            x,
            eps=0.05,
            alpha=0.03,
            steps=5,
            rng=jax.random.PRNGKey(0),
        ),
        "inf",
        0.05,
    ),
}


def _bounds_inputs(seed):
    rng = np.random.RandomState(seed)
    x = rng.uniform(size=_SHAPE).astype(np.float32)
    # Put a good fraction of pixels exactly on the bounds, where clipping must take over.
    u = rng.uniform(size=_SHAPE)
    x[u < 0.25] = 0.0
    x[u > 0.75] = 1.0
    y = rng.randint(0, _K, size=_SHAPE[0]).astype(np.int32)
    return jnp.asarray(x), jnp.asarray(y)


@pytest.mark.parametrize("case", sorted(_BOUND_CASES))
def test_result_stays_in_eps_ball_and_pixel_box(case):
    attack, norm, eps = _BOUND_CASES[case]
    # Params are an argument (not a closure constant) so one compilation serves every random model.
    run = jax.jit(lambda p, x, y: attack(functools.partial(mlp_logits, p), x, y))
    d_in = int(np.prod(_SHAPE[1:]))
    for seed in range(3):
        # Large weights give large, varied gradients, so steps actually hit the constraints.
        params = mlp_init(jax.random.PRNGKey(seed), d_in, 16, _K, scale=3.0)
        x, y = _bounds_inputs(seed)
        x_adv = run(params, x, y)
        chex.assert_equal_shape([x_adv, x])
        assert x_adv.dtype == x.dtype
        chex.assert_tree_all_finite(x_adv)
        assert float(jnp.min(x_adv)) >= 0.0 and float(jnp.max(x_adv)) <= 1.0
        if norm == "inf":
            assert float(jnp.max(linf_dist(x_adv, x))) <= eps + SLACK
        elif norm == "l2":
            assert float(jnp.max(l2_dist(x_adv, x))) <= eps + SLACK
        # The attack should do something (not silently return x).
        assert float(jnp.max(jnp.abs(x_adv - x))) > 0.0


def test_pgd_random_start_is_uniform_in_ball_and_optional():
    x = jnp.full((64, 2, 2, 1), 0.5, jnp.float32)
    y = jnp.zeros((64,), jnp.int32)
    f = lambda z: jnp.zeros((z.shape[0], 2))  # noqa: E731  (zero gradient: only the start moves)
    pgd0 = jax.jit(
        lambda x, y, k, norm, random_start: pgd(
            f, x, y, eps=0.2, steps=0, rng=k, norm=norm, random_start=random_start
        ),
        static_argnames=("norm", "random_start"),
    )
    key = jax.random.PRNGKey(0)
    x_l2 = pgd0(x, y, key, 2, True)
    d = l2_dist(x_l2, x)
    assert float(jnp.max(d)) <= 0.2 + SLACK and float(jnp.min(d)) > 0.0
    # Uniform in a 4-d ball: E[r] = 4/5 eps.
    np.testing.assert_allclose(float(jnp.mean(d)), 0.8 * 0.2, rtol=0.1)
    x_inf = pgd0(x, y, key, "inf", True)
    assert float(jnp.max(linf_dist(x_inf, x))) <= 0.2 + SLACK
    assert float(jnp.max(linf_dist(x_inf, x))) > 0.15
    # No rng, or random_start=False: the iteration starts at x.
    np.testing.assert_array_equal(pgd(f, x, y, eps=0.2, steps=0), x)
    np.testing.assert_array_equal(pgd0(x, y, key, 2, False), x)


# ----------------------------------------------------------------------------------------------
# Known answers on linear models.
# ----------------------------------------------------------------------------------------------


def _linear_problem(n_classes, seed, w_scale=1.0, batch=6, hw=4):
    rng = np.random.RandomState(seed)
    d = hw * hw
    w = (rng.normal(size=(d, n_classes)) * w_scale).astype(np.float32)
    b = (rng.normal(size=(n_classes,)) * 0.1).astype(np.float32)
    # Inputs in the middle of [0, 1] so that no clipping is active.
    x = rng.uniform(0.3, 0.7, size=(batch, hw, hw, 1)).astype(np.float32)
    y = rng.randint(0, n_classes, size=batch).astype(np.int32)
    return w, b, x, y


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class FGSMKnownAnswerTest(chex.TestCase):
    """FGSM (Eq. 6) on a linear model equals the step computed by hand."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.product(n_classes=(2, 3), targeted=(False, True), norm=("inf", 2))
    def test_fgsm_matches_hand_computed_step(self, n_classes, targeted, norm):
        w, b, x, y = _linear_problem(n_classes, seed=n_classes)
        eps = 0.1
        run = self.variant(
            lambda xx, yy: fgsm(
                functools.partial(linear_logits, (w, b)),
                xx,
                yy,
                eps=eps,
                targeted=targeted,
                norm=norm,
            )
        )
        x_adv = np.asarray(run(jnp.asarray(x), jnp.asarray(y)))

        xf = x.reshape(x.shape[0], -1).astype(np.float64)
        if n_classes == 2:
            # d CE / dx = p_other * (W[:, other] - W[:, y]); only its direction matters here.
            other = 1 - y
            grad = (w[:, other] - w[:, y]).T.astype(np.float64)
        else:
            p = _softmax(xf @ w + b)
            grad = (p - np.eye(n_classes)[y]) @ w.T.astype(np.float64)
        if norm == "inf":
            step = np.sign(grad)
        else:
            step = grad / np.linalg.norm(grad, axis=1, keepdims=True)
        expected = xf + (-eps if targeted else eps) * step
        np.testing.assert_allclose(x_adv.reshape(xf.shape), expected, atol=1e-6)


@pytest.mark.parametrize("norm", ["l2", "inf"])
@pytest.mark.parametrize("overshoot", [0.0, 0.02])
def test_deepfool_two_class_linear_lands_on_analytic_projection(norm, overshoot):
    # Small weights so that the boundary is a short step away and no pixel clip is active.
    w, b, x, _ = _linear_problem(2, seed=7, w_scale=0.05, batch=8, hw=8)
    wd = (w[:, 1] - w[:, 0]).astype(np.float64)  # gradient of s(x) = Z_1 - Z_0
    xf = x.reshape(x.shape[0], -1).astype(np.float64)
    # Centre the bias on the batch so that examples lie on both sides of the boundary.
    b[1] = b[0] - float(np.median(xf @ wd))
    s = xf @ wd + (b[1] - b[0])
    assert np.min(np.abs(s)) > 1e-3  # every example starts clearly off the boundary

    f = functools.partial(linear_logits, (w, b))
    x_adv = jax.jit(lambda z: deepfool(f, z, norm=norm, overshoot=overshoot))(jnp.asarray(x))
    x_adv = np.asarray(x_adv).reshape(xf.shape).astype(np.float64)
    assert np.all((x_adv > 0.0) & (x_adv < 1.0))  # no clipping involved

    # Analytic minimal perturbation onto the hyperplane s = 0 in the chosen geometry.
    if norm == "l2":
        r_star = -s[:, None] * wd[None] / np.sum(wd**2)
        dist = np.abs(s) / np.linalg.norm(wd)
        measured = np.linalg.norm(x_adv - xf, axis=1)
        dual = np.linalg.norm(wd)
    else:
        r_star = -s[:, None] * np.sign(wd)[None] / np.sum(np.abs(wd))
        dist = np.abs(s) / np.sum(np.abs(wd))
        measured = np.max(np.abs(x_adv - xf), axis=1)
        dual = np.sum(np.abs(wd))
    # The implementation adds 1e-4 (logit units) to |s| so the step ends strictly past the boundary.
    tol = 2e-4 / dual + 1e-6
    np.testing.assert_allclose(x_adv - xf, (1.0 + overshoot) * r_star, atol=tol)
    np.testing.assert_allclose(measured, (1.0 + overshoot) * dist, atol=tol)

    s_adv = x_adv @ wd + (b[1] - b[0])
    if overshoot == 0.0:
        np.testing.assert_allclose(s_adv, 0.0, atol=2e-4)  # on the boundary (up to the 1e-4 margin)
    assert np.all(np.sign(s_adv) == -np.sign(s))  # label flipped
    if overshoot > 0.0:
        # s + (1 + o) * (-(s + sign(s) * 1e-4)) = -o * s - (1 + o) * sign(s) * 1e-4
        assert np.all(np.abs(s_adv + overshoot * s) <= 2e-4 + 1e-3 * np.abs(s))


def test_deepfool_three_class_linear_crosses_nearest_boundary():
    """On a 3-class linear model one DeepFool step reaches the nearest of the two hyperplanes."""
    w, b, x, _ = _linear_problem(3, seed=11, w_scale=0.05, batch=8, hw=8)
    f = functools.partial(linear_logits, (w, b))
    x_adv = np.asarray(jax.jit(lambda z: deepfool(f, z, norm=2, overshoot=0.0, steps=1))(x))
    xf = x.reshape(x.shape[0], -1).astype(np.float64)
    logits = xf @ w + b
    k0 = logits.argmax(1)
    expected = []
    for i in range(len(xf)):
        cands = [k for k in range(3) if k != k0[i]]
        wk = [w[:, k] - w[:, k0[i]] for k in cands]
        fk = [logits[i, k] - logits[i, k0[i]] for k in cands]
        j = int(np.argmin([abs(a) / np.linalg.norm(v) for a, v in zip(fk, wk)]))
        expected.append(xf[i] - fk[j] * wk[j] / np.sum(wk[j] ** 2))
    np.testing.assert_allclose(x_adv.reshape(xf.shape), np.array(expected), atol=1e-3)


def test_deepfool_mask_stops_finished_examples():
    """An example that flips on step 1 must not move on later steps (the result does not depend
    on the step budget once every example has flipped)."""
    w, b, x, _ = _linear_problem(3, seed=5, w_scale=0.05, batch=8, hw=8)
    f = functools.partial(linear_logits, (w, b))
    run = jax.jit(lambda z, steps: deepfool(f, z, steps=steps), static_argnums=1)
    one = run(jnp.asarray(x), 1)
    many = run(jnp.asarray(x), 50)
    flipped = np.asarray(jnp.argmax(f(one), -1) != jnp.argmax(f(jnp.asarray(x)), -1))
    assert flipped.any()
    np.testing.assert_array_equal(np.asarray(one)[flipped], np.asarray(many)[flipped])


# ----------------------------------------------------------------------------------------------
# Attacks on a small MLP trained on sklearn's 8x8 digits.
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_model():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[..., None]  # [N, 8, 8, 1] in [0, 1]
    y = data.target.astype(np.int32)
    perm = np.random.RandomState(0).permutation(len(x))
    x, y = x[perm], y[perm]
    x_tr, y_tr = jnp.asarray(x[:1500]), jnp.asarray(y[:1500])
    x_te, y_te = jnp.asarray(x[1500:1600]), jnp.asarray(y[1500:1600])

    params = mlp_init(jax.random.PRNGKey(0), 64, 64, 10)
    opt = optax.adam(1e-2)

    def loss(p):
        return optax.softmax_cross_entropy_with_integer_labels(mlp_logits(p, x_tr), y_tr).mean()

    @jax.jit
    def train(p):
        def step(carry, _):
            p, s = carry
            g = jax.grad(loss)(p)
            u, s = opt.update(g, s)
            return (optax.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(step, (p, opt.init(p)), None, length=300)
        return p

    params = train(params)
    logits_fn = functools.partial(mlp_logits, params)
    clean_acc = float(jnp.mean(jnp.argmax(logits_fn(x_te), -1) == y_te))
    assert clean_acc >= 0.9
    return logits_fn, x_te, y_te, clean_acc


def _accuracy(logits_fn, x, y):
    return float(jnp.mean(jnp.argmax(logits_fn(x), -1) == y))


_TARGETED = {
    "bim": lambda f, x, t: bim(f, x, t, eps=0.3, targeted=True),
    "pgd_inf": lambda f, x, t: pgd(
        f, x, t, eps=0.3, norm="inf", targeted=True, rng=jax.random.PRNGKey(0)
    ),
    "pgd_l2": lambda f, x, t: pgd(
        f, x, t, eps=3.0, alpha=0.1, targeted=True, rng=jax.random.PRNGKey(0)
    ),
    # lr 0.1 instead of Table 6's 0.01: the digits are mostly exact 0 / 1 pixels, whose tanh
    # pre-image sits where tanh is flat, so 100 steps at lr 0.01 barely move them.
    "cw_l2": lambda f, x, t: cw_l2(f, x, t, eps=0.3, lr=0.1, targeted=True),
}


@pytest.mark.parametrize("name", sorted(_TARGETED))
def test_targeted_attacks_reach_target(digits_model, name):
    logits_fn, x, y, _ = digits_model
    target = (y + 1) % 10
    x_adv = jax.jit(lambda xx, tt: _TARGETED[name](logits_fn, xx, tt))(x, target)
    assert _accuracy(logits_fn, x_adv, target) >= 0.9


_UNTARGETED = {
    # Table 1 of the paper compares all attacks at eps = 0.15 (L-inf); PGD is L2 (Table 6).
    "fgsm": lambda f, x, y: fgsm(f, x, y, eps=0.15),
    "bim": lambda f, x, y: bim(f, x, y, eps=0.15),
    "pgd": lambda f, x, y: pgd(f, x, y, eps=1.5, alpha=0.05, rng=jax.random.PRNGKey(0)),
    "deepfool": lambda f, x, y: deepfool(f, x, eps=0.15),
    "cw_l2": lambda f, x, y: cw_l2(f, x, y, eps=0.15, lr=0.1),  # lr: see _TARGETED
}


@pytest.mark.parametrize("name", sorted(_UNTARGETED))
def test_untargeted_attacks_reduce_accuracy(digits_model, name):
    logits_fn, x, y, clean_acc = digits_model
    x_adv = jax.jit(lambda xx, yy: _UNTARGETED[name](logits_fn, xx, yy))(x, y)
    assert _accuracy(logits_fn, x_adv, y) <= 0.3 * clean_acc


def test_attacks_registry():
    assert set(ATTACKS) == {"fgsm", "bim", "pgd", "deepfool", "cw_l2"}
    assert ATTACKS["bim"] is bim and ATTACKS["deepfool"] is deepfool


# ----------------------------------------------------------------------------------------------
# The shared sign-gradient loop and its rng.
# ----------------------------------------------------------------------------------------------


def _noisy_loss(x, key):
    """Linear loss whose gradient is a key-dependent random sign pattern (all ones without a key)."""
    if key is None:
        return jnp.sum(x)
    return jnp.sum(jnp.sign(jax.random.normal(key, x.shape)) * x)


def test_sign_gradient_descent_uses_a_fresh_key_per_step():
    x0 = jnp.full((4, 3, 3, 2), 0.5, jnp.float32)
    eps, alpha, steps = 0.2, 0.01, 12
    run = jax.jit(
        lambda x, k: sign_gradient_descent(_noisy_loss, x, eps=eps, alpha=alpha, steps=steps, rng=k)
    )
    key = jax.random.PRNGKey(42)
    out = run(x0, key)

    # Deterministic for a fixed key, different for another key and for rng=None.
    np.testing.assert_array_equal(out, run(x0, key))
    assert not np.array_equal(out, run(x0, jax.random.PRNGKey(43)))
    out_none = jax.jit(
        lambda x: sign_gradient_descent(_noisy_loss, x, eps=eps, alpha=alpha, steps=steps)
    )(x0)
    np.testing.assert_allclose(out_none, x0 - steps * alpha, atol=1e-6)
    assert not np.allclose(out, out_none)

    # Exactly the documented schedule: step i uses fold_in(rng, i).
    expected = np.asarray(x0)
    step_sign = jax.jit(lambda i: jnp.sign(jax.random.normal(jax.random.fold_in(key, i), x0.shape)))
    for i in range(steps):
        g = np.asarray(step_sign(i))
        expected = np.clip(np.clip(expected - alpha * g, x0 - eps, x0 + eps), 0.0, 1.0)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # With the same key every step all moves would add up; fresh keys make them partly cancel.
    assert float(jnp.min(jnp.abs(out - x0))) < steps * alpha - 1e-3


def test_sign_gradient_descent_minimizes_and_projects():
    x0 = jnp.linspace(0.0, 1.0, 2 * 5 * 5).reshape(2, 5, 5, 1).astype(jnp.float32)
    # Minimizing sum((x - 2)^2) pushes every pixel up: the result is min(x0 + eps, 1).
    out = jax.jit(
        lambda x: sign_gradient_descent(
            lambda z, _k: jnp.sum((z - 2.0) ** 2), x, eps=0.1, alpha=0.03, steps=10
        )
    )(x0)
    np.testing.assert_allclose(out, jnp.minimum(x0 + 0.1, 1.0), atol=1e-6)


# ----------------------------------------------------------------------------------------------
# C-BIM (Section 4.4) on a tiny linear ensemble, computed by hand.
# ----------------------------------------------------------------------------------------------

# Two surrogate-side members (the source first, then one surrogate) and one reference, each a
# softmax of a linear map of a 2-pixel input to 3 classes; both inputs have true class 0.
# By hand (3 decimals):   Surr             Ref              M_E = (1 - Ref) Surr (Eq. 13)
#   input 0          [.489 .274 .238]  [.177 .792 .031]  [.402 .057 .230]
#   input 1          [.514 .466 .020]  [.314 .666 .020]  [.352 .156 .019]
# On input 0 the surrogates' best wrong class is 1, but the reference believes in it, so the
# target of M_E is 2: the references change the target. On both inputs M_E scores the true class
# highest, so a target allowed to be the true class would be 0.
CBIM_W_SURR = np.array(
    [[[1.0, 0.0, 2.0], [-1.0, 3.0, -3.0]], [[-1.0, -2.0, -1.0], [3.0, -3.0, -2.0]]]
)
CBIM_W_REF = np.array([[[-1.0, 2.0, -3.0], [2.0, 2.0, -1.0]]])
CBIM_X0 = np.array([0.5, 0.25, 0.25, 0.75]).reshape(2, 1, 2, 1)
CBIM_Y = np.array([0, 0])
CBIM_TARGET = np.array([2, 1])  # best wrong class of M_E, by the table above


def _cbim_probs_fn(x):
    """(surr_MxBxK, ref_MxBxK) of the linear ensemble, as C-BIM's `probs_fn` takes them."""
    flat = x.reshape(x.shape[0], -1)
    surr = jax.nn.softmax(jnp.einsum("bd,mdk->mbk", flat, jnp.asarray(CBIM_W_SURR, x.dtype)))
    ref = jax.nn.softmax(jnp.einsum("bd,mdk->mbk", flat, jnp.asarray(CBIM_W_REF, x.dtype)))
    return surr, ref


def _member_probs_np(w_MxDxK, x):
    """float64 softmax outputs [M, B, K] of linear members."""
    z = np.einsum("bd,mdk->mbk", np.asarray(x, np.float64).reshape(len(x), -1), w_MxDxK)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _m_e_np(x):
    """Surr (Eq. 11), Ref (Eq. 12), M_E (Eq. 13) in numpy, dropout 0."""
    surr = _member_probs_np(CBIM_W_SURR, x).mean(0)
    ref = _member_probs_np(CBIM_W_REF, x).mean(0)
    return surr, ref, (1.0 - ref) * surr


def _best_wrong_np(scores_BxK, y_B):
    scores = np.array(scores_BxK, np.float64)
    scores[np.arange(len(scores)), y_B] = -np.inf
    return scores.argmax(-1)


def _three_term_np(x, x0, beta, gamma):
    """Per-example H(1, max_{t != y} M_E) - beta H(M(x0), M(x)) + gamma H(M(x), Surr), eps 1e-12."""
    surr, _, m_e = _m_e_np(x)
    t = _best_wrong_np(m_e, CBIM_Y)
    source, source0 = _member_probs_np(CBIM_W_SURR, x)[0], _member_probs_np(CBIM_W_SURR, x0)[0]
    h_max = -np.log(m_e[np.arange(len(t)), t] + 1e-12)
    h_away = -(source0 * np.log(source + 1e-12)).sum(-1)
    h_agree = -(source * np.log(surr + 1e-12)).sum(-1)
    return h_max - beta * h_away + gamma * h_agree


def test_cbim_case_is_the_one_described():
    """The fixture itself: the references change the target, and M_E tops on the true class."""
    surr, _, m_e = _m_e_np(CBIM_X0)
    np.testing.assert_array_equal(_best_wrong_np(surr, CBIM_Y), [1, 1])
    np.testing.assert_array_equal(_best_wrong_np(m_e, CBIM_Y), CBIM_TARGET)
    np.testing.assert_array_equal(m_e.argmax(-1), CBIM_Y)
    np.testing.assert_allclose(m_e, [[0.402, 0.057, 0.230], [0.352, 0.156, 0.019]], atol=1e-3)


def test_masked_mean_is_the_mean_of_the_kept_members():
    probs = np.random.default_rng(0).dirichlet(np.ones(4), size=(3, 2))  # [M=3, B=2, K=4]
    for keep in ([1, 0, 1], [0, 1, 0], [1, 1, 1]):
        kept = probs[np.asarray(keep, bool)]
        np.testing.assert_allclose(
            cbim_lib.masked_mean(jnp.asarray(probs, jnp.float32), jnp.asarray(keep, jnp.float32)),
            kept.mean(0),
            atol=1e-6,
            err_msg=f"keep={keep}",
        )


def test_member_dropout_averages_a_subset_of_the_members():
    """With member dropout, Surr is the plain mean of some non-empty subset of the members."""
    probs = np.random.default_rng(1).dirichlet(np.ones(4), size=(3, 2))
    subset_means = [
        probs[np.asarray(m, bool)].mean(0)
        for m in ([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1])
    ]
    p = jnp.asarray(probs, jnp.float32)
    for seed in range(8):
        surr, _, _ = cbim_lib.compose(p, p, rng=jax.random.PRNGKey(seed), dropout=0.5)
        assert any(np.allclose(surr, m, atol=1e-6) for m in subset_means), seed


def test_cbim_linear_loss_is_eq_14_on_the_best_wrong_class_of_m_e():
    loss_fn = cbim_lib.cbim_loss(
        _cbim_probs_fn, jnp.asarray(CBIM_X0, jnp.float32), CBIM_Y, dropout=0.0, loss="linear"
    )
    _, _, m_e = _m_e_np(CBIM_X0)
    # -M_E(x)[t] summed over the batch: -(M_E[0, 2] + M_E[1, 1]).
    want = -(m_e[0, 2] + m_e[1, 1])
    got = float(loss_fn(jnp.asarray(CBIM_X0, jnp.float32), None))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(got, -0.386, atol=1e-3)


def test_cbim_three_term_loss_matches_hand_computation():
    x0 = jnp.asarray(CBIM_X0, jnp.float32)
    x = x0 + jnp.asarray([0.05, -0.05, -0.05, 0.05], jnp.float32).reshape(x0.shape)
    loss_fn = cbim_lib.cbim_loss(
        _cbim_probs_fn, x0, CBIM_Y, dropout=0.0, loss="three_term", beta=0.5, gamma=2.0
    )
    want = _three_term_np(np.asarray(x), CBIM_X0, beta=0.5, gamma=2.0)  # [3.066, 3.156]
    np.testing.assert_allclose(float(loss_fn(x, None)), want.sum(), rtol=1e-5)


def _m_e_target_gradient_np(x, t):
    """d M_E(x)[t] / dx by hand: d softmax_t / dx = p_t (W[:, t] - W p) per member, and
    d[(1 - Ref_t) Surr_t] = (1 - Ref_t) dSurr_t - Surr_t dRef_t (Eq. 13)."""
    flat, rows = np.asarray(x, np.float64).reshape(len(x), -1), np.arange(len(t))

    def mean_and_grad(w_MxDxK):
        p = _member_probs_np(w_MxDxK, flat)  # [M, B, K]
        p_t = p[:, rows, t]  # [M, B]
        w_t = w_MxDxK[:, :, t].transpose(0, 2, 1)  # [M, B, D]
        grad = p_t[..., None] * (w_t - np.einsum("mdk,mbk->mbd", w_MxDxK, p))
        return p_t.mean(0), grad.mean(0)

    surr_t, d_surr = mean_and_grad(CBIM_W_SURR)
    ref_t, d_ref = mean_and_grad(CBIM_W_REF)
    return (1.0 - ref_t)[:, None] * d_surr - surr_t[:, None] * d_ref


class CBIMStepKnownAnswerTest(chex.TestCase):
    """One C-BIM step equals the sign-gradient step computed by hand."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_linear_loss_step(self):
        x0 = jnp.asarray(CBIM_X0, jnp.float32)
        step = self.variant(
            lambda x: cbim_lib.cbim_step(
                _cbim_probs_fn, x, x0, CBIM_Y, 0, eps=0.1, alpha=0.01, dropout=0.0, loss="linear"
            )
        )
        # Descending -M_E[t] moves each pixel by alpha along sign(d M_E[t] / dx):
        # by hand d M_E[t]/dx = [[0.197, -0.746], [-0.340, 0.025]].
        grad = _m_e_target_gradient_np(CBIM_X0, CBIM_TARGET)
        np.testing.assert_allclose(grad, [[0.197, -0.746], [-0.340, 0.025]], atol=1e-3)
        want = CBIM_X0.reshape(2, -1) + 0.01 * np.sign(grad)
        np.testing.assert_allclose(np.asarray(step(x0)).reshape(2, -1), want, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_three_term_loss_step(self):
        x0 = jnp.asarray(CBIM_X0, jnp.float32)
        delta = np.array([0.05, -0.05, -0.05, 0.05]).reshape(CBIM_X0.shape)
        step = self.variant(
            lambda x: cbim_lib.cbim_step(
                _cbim_probs_fn,
                x,
                x0,
                CBIM_Y,
                0,
                eps=0.1,
                alpha=0.01,
                dropout=0.0,
                loss="three_term",
                beta=0.5,
                gamma=2.0,
            )
        )
        # The gradient by central differences of the numpy loss (float64): every component is
        # far from 0 (about [[-0.77, 4.00], [2.33, -0.86]]), so its sign is unambiguous.
        x = (CBIM_X0 + delta).reshape(2, -1)
        loss = lambda z: _three_term_np(z.reshape(CBIM_X0.shape), CBIM_X0, 0.5, 2.0)
        grad = np.zeros_like(x)
        for d in range(x.shape[1]):
            h = np.zeros_like(x)
            h[:, d] = 1e-6
            grad[:, d] = (loss(x + h) - loss(x - h)) / 2e-6
        assert np.abs(grad).min() > 0.5
        got = np.asarray(step(jnp.asarray(x.reshape(CBIM_X0.shape), jnp.float32)))
        np.testing.assert_allclose(got.reshape(2, -1), x - 0.01 * np.sign(grad), atol=1e-6)


def test_diversify_shifts_each_example_by_at_most_shift_pixels():
    """Each output is its input moved by one whole-pixel offset in [-shift, shift]^2, edges repeated."""
    x = jax.random.uniform(jax.random.PRNGKey(0), (16, 9, 9, 1))
    out = np.asarray(cbim_lib.diversify(x, jax.random.PRNGKey(1), shift=2))
    padded = np.pad(np.asarray(x), ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge")
    offsets = set()
    for b in range(len(x)):
        hits = [
            (i, j)
            for i in range(5)
            for j in range(5)
            if np.array_equal(out[b], padded[b, i : i + 9, j : j + 9])
        ]
        assert len(hits) == 1, b
        offsets.add(hits[0])
    assert len(offsets) > 3  # the offsets differ between examples


def test_diversify_noise_has_the_asked_spread_and_nothing_is_the_identity():
    x = jnp.full((64, 8, 8, 1), 0.5)
    key = jax.random.PRNGKey(2)
    np.testing.assert_array_equal(cbim_lib.diversify(x, key), x)
    noisy = np.asarray(cbim_lib.diversify(x, key, noise=0.1)) - 0.5
    assert abs(noisy.std() - 0.1) < 0.005 and abs(noisy.mean()) < 0.005


def test_input_diversity_changes_the_step_only_when_asked():
    """With shift and noise 0 the step's key drives dropout alone (the pinned results hold);
    with noise on, two keys give two different gradients."""
    x0 = jnp.asarray(CBIM_X0, jnp.float32)
    kw = dict(eps=0.1, alpha=0.01, dropout=0.0, loss="linear")
    plain = cbim_lib.cbim_step(_cbim_probs_fn, x0, x0, CBIM_Y, 0, rng=jax.random.PRNGKey(0), **kw)
    keyless = cbim_lib.cbim_step(_cbim_probs_fn, x0, x0, CBIM_Y, 0, **kw)
    np.testing.assert_array_equal(plain, keyless)
    noisy = [
        cbim_lib.cbim_step(
            _cbim_probs_fn, x0, x0, CBIM_Y, 0, rng=jax.random.PRNGKey(k), noise=1.0, **kw
        )
        for k in range(6)
    ]
    assert any(not np.array_equal(noisy[0], n) for n in noisy[1:])
    for n in noisy:  # still one projected sign step
        np.testing.assert_allclose(np.abs(np.asarray(n) - np.asarray(x0)), 0.01, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# No retracing.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bim", "pgd"])
def test_no_retracing(name):
    params = mlp_init(jax.random.PRNGKey(0), 16, 8, 3)
    f = functools.partial(mlp_logits, params)
    calls = {
        "bim": lambda x, y, k: bim(f, x, y, eps=0.1, steps=3),
        "pgd": lambda x, y, k: pgd(f, x, y, eps=0.5, steps=3, rng=k),
    }
    chex.clear_trace_counter()
    run = jax.jit(chex.assert_max_traces(calls[name], n=1))
    rng = np.random.RandomState(0)
    for i in range(2):
        x = jnp.asarray(rng.uniform(size=(4, 4, 4, 1)).astype(np.float32))
        y = jnp.asarray(rng.randint(0, 3, size=4).astype(np.int32))
        run(x, y, jax.random.PRNGKey(i)).block_until_ready()
