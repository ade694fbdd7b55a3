"""Stacked training: members independent, strategies equal, resumable, loud on NaN."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from absl.testing import parameterized
from sklearn import datasets

from fingerprinting import ensemble
from fingerprinting import fit
from fingerprinting import models
from fingerprinting import zoo


def _cfg(**kw):
    c = ml_collections.ConfigDict(
        dict(
            optimizer="adam",
            learning_rate=3e-3,
            weight_decay=0.0,
            schedule="cosine",
            batch_size=32,
            augment_crop=0,
            augment_flip=False,
            chunk_steps=4,
        )
    )
    c.update(kw)
    return c


@pytest.fixture(scope="module")
def digits():
    d = datasets.load_digits()
    x = (d.images[:256] / 16.0).astype(np.float32)[..., None]
    y = d.target[:256].astype(np.int32)
    return x, np.eye(10, dtype=np.float32)[y], y


def test_members_are_independent_of_group_size(digits):
    x, t, _ = digits
    model = models.get_model("cnn_small", 10)
    kw = dict(cfg=_cfg(), epochs=1, rng=jax.random.PRNGKey(3), strategy="unroll")
    two = fit.train_group(model, x, t, size=2, **kw)
    three = fit.train_group(model, x, t, size=3, **kw)
    for i in range(2):
        chex.assert_trees_all_close(ensemble.member(two, i), ensemble.member(three, i), atol=1e-5)
    assert not np.allclose(
        ensemble.member(three, 0)["params"]["head"]["kernel"],
        ensemble.member(three, 1)["params"]["head"]["kernel"],
    )


def test_strategies_and_loops_train_identically(digits):
    x, t, _ = digits
    model = models.get_model("cnn_medium", 10)  # BatchNorm statistics are stacked state too
    kw = dict(size=2, epochs=1, rng=jax.random.PRNGKey(0))
    aug = dict(augment_crop=1, augment_flip=True)
    results = [
        fit.train_group(model, x, t, strategy=s, cfg=_cfg(loop="python", **aug), **kw)
        for s in ensemble.STRATEGIES
    ]
    results.append(
        fit.train_group(model, x, t, strategy="unroll", cfg=_cfg(loop="fori", **aug), **kw)
    )
    for r in results[1:]:
        chex.assert_trees_all_close(r, results[0], atol=2e-4, rtol=2e-4)


def test_map_on_one_device_trains_member_by_member_like_the_stacked_program(
    digits, monkeypatch
):
    """Under 'map' every chunk sees one member, so groups of any size share one
    compiled program; per-member targets and masks reach the right member."""
    x, t, _ = digits
    model = models.get_model("cnn_small", 10)
    sizes = []
    make = fit.make_chunk_fn

    def spy(*args, **kwargs):
        chunk = make(*args, **kwargs)

        def counted(state, *rest):
            sizes.append(ensemble.num_members(state.params))
            return chunk(state, *rest)

        return counted

    monkeypatch.setattr(fit, "make_chunk_fn", spy)
    # Member 1 learns shuffled labels and may not change its head's bias.
    targets = np.stack([t, t[np.random.default_rng(0).permutation(len(t))], t])
    init = fit.train_group(model, x, t, size=3, cfg=_cfg(), epochs=1, rng=jax.random.PRNGKey(4))
    params = jax.tree_util.tree_map(lambda _: True, dict(init["params"]))
    params["head"] = {"kernel": True, "bias": np.array([True, False, True])[:, None]}
    kw = dict(size=3, cfg=_cfg(), epochs=1, rng=jax.random.PRNGKey(5), trainable={"params": params})
    sizes.clear()
    one_by_one = fit.train_group(model, x, targets, strategy="map", init=init, **kw)
    assert fit.member_by_member("map") and sizes and set(sizes) == {1}
    sizes.clear()
    stacked = fit.train_group(model, x, targets, strategy="vmap", init=init, **kw)
    assert set(sizes) == {3}
    chex.assert_trees_all_close(one_by_one, stacked, atol=2e-4, rtol=2e-4)
    bias = lambda v, m: ensemble.member(v, m)["params"]["head"]["bias"]
    np.testing.assert_array_equal(bias(one_by_one, 1), bias(init, 1))
    assert not np.allclose(bias(one_by_one, 0), bias(init, 0))


def test_stacked_step_equals_step_of_each_member(digits):
    x, t, _ = digits
    model = models.get_model("cnn_medium", 10)
    cfg = _cfg()
    tx = fit.make_optimizer(cfg, 10, 1)
    state = fit.init_state(model, tx, jax.random.PRNGKey(0), 3, x.shape[1:])
    xb = np.stack([x[:16], x[16:32], x[32:48]])
    tb = np.stack([t[:16], t[16:32], t[32:48]])
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    step = lambda s, xx, tt, k: fit.member_train_step(
        s, xx, tt, k, model=model, tx=tx, temperature=1.0, crop=0, flip=False
    )
    stacked, _ = jax.jit(ensemble.map_members(step, (0, 0, 0, 0), "unroll"))(state, xb, tb, keys)
    for i in range(3):
        alone, _ = step(ensemble.member(state, i), xb[i], tb[i], keys[i])
        chex.assert_trees_all_close(ensemble.member(stacked, i), alone, atol=1e-4, rtol=1e-3)


def test_learns_digits(digits):
    x, t, y = digits
    model = models.get_model("cnn_small", 10)
    v = fit.train_group(model, x, t, size=2, cfg=_cfg(), epochs=8, rng=jax.random.PRNGKey(0))
    acc = fit.accuracies(model, v, x, y, batch_size=100)
    assert acc.shape == (2,) and acc.min() > 0.8


def test_resume_after_kill_equals_uninterrupted(digits, tmp_path, monkeypatch):
    x, t, _ = digits
    model = models.get_model("mlp", 10)
    kw = dict(size=2, cfg=_cfg(), epochs=3, rng=jax.random.PRNGKey(0))
    full = fit.train_group(model, x, t, ckpt_dir=str(tmp_path / "a"), **kw)

    chunks, _ = fit.plan_chunks(len(x), 32, 4)
    calls = {"n": 0}
    real_update = fit.progress.Bar.update

    def dying_update(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2 * chunks + 1:  # after the first chunk of epoch 3
            raise KeyboardInterrupt
        return real_update(self, *a, **k)

    monkeypatch.setattr(fit.progress.Bar, "update", dying_update)
    with pytest.raises(KeyboardInterrupt):
        fit.train_group(model, x, t, ckpt_dir=str(tmp_path / "b"), **kw)
    monkeypatch.setattr(fit.progress.Bar, "update", real_update)
    resumed = fit.train_group(model, x, t, ckpt_dir=str(tmp_path / "b"), **kw)
    chex.assert_trees_all_close(resumed, full, atol=1e-6)


def test_non_finite_loss_stops_with_the_group_named(digits):
    x, t, _ = digits
    t = t.copy()
    t[5] = np.nan
    with pytest.raises(
        fit.NonFiniteLossError, match=r"bad-group: non-finite loss at steps 1-\d+ \(epoch 1\)"
    ):
        fit.train_group(
            models.get_model("mlp", 10),
            x,
            t,
            size=1,
            cfg=_cfg(),
            epochs=1,
            rng=jax.random.PRNGKey(0),
            desc="bad-group",
        )


@pytest.mark.parametrize("loop", ensemble.LOOPS)
def test_chunk_function_compiles_once(digits, loop):
    x, t, _ = digits
    model = models.get_model("mlp", 10)
    cfg = _cfg()
    tx = fit.make_optimizer(cfg, 8, 2)
    chunk = fit.make_chunk_fn(model, tx, cfg, strategy="unroll", loop=loop)
    state = fit.init_state(model, tx, jax.random.PRNGKey(0), 2, x.shape[1:])
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    perm = fit._permutations(keys, len(x))
    for first in (0, 4, 8, 12):
        state, _ = chunk(state, x, t, perm, keys, first, 4)
    assert chunk.jitted._cache_size() == 1


def test_augment_identity_and_shapes():
    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 8, 8, 1))
    chex.assert_trees_all_close(fit.augment(x, jax.random.PRNGKey(1), crop=0, flip=False), x)
    out = fit.augment(x, jax.random.PRNGKey(1), crop=2, flip=True)
    chex.assert_shape(out, x.shape)
    assert float(out.max()) <= 1.0 and float(out.min()) >= 0.0


@pytest.mark.parametrize(
    "field,value,match",
    [("optimizer", "rmsprop", "unknown optimizer"), ("schedule", "step", "unknown schedule")],
)
def test_bad_optimizer_config(field, value, match):
    with pytest.raises(ValueError, match=match):
        fit.make_optimizer(_cfg(**{field: value}), 10, 1)


def test_per_member_targets_train_each_member_on_its_own(digits):
    x, t, _ = digits
    model = models.get_model("mlp", 10)
    other = np.roll(t, 1, axis=-1)  # every label moved to the next class
    kw = dict(cfg=_cfg(), epochs=1, rng=jax.random.PRNGKey(4))
    both = fit.train_group(model, x, np.stack([t, other]), size=2, **kw)
    shared = fit.train_group(model, x, other, size=2, **kw)
    chex.assert_trees_all_close(ensemble.member(both, 1), ensemble.member(shared, 1), atol=1e-6)
    with pytest.raises(ValueError, match="targets for 2 members, the group has 3"):
        fit.train_group(model, x, np.stack([t, other]), size=3, **kw)


def test_subsets_train_a_member_on_its_part_only(digits):
    x, t, _ = digits
    model = models.get_model("mlp", 10)
    kw = dict(size=1, cfg=_cfg(), epochs=2, rng=jax.random.PRNGKey(5))
    part = np.arange(40, 136)
    on_part = fit.train_group(model, x, t, subsets=part[None], **kw)
    alone = fit.train_group(model, x[part], t[part], **kw)
    chex.assert_trees_all_close(on_part, alone, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_trainable_mask_keeps_what_it_freezes(digits, optimizer):
    x, t, _ = digits
    model = models.get_model("cnn_medium", 10)
    init = ensemble.init_members(model, jax.random.PRNGKey(1), 2, x.shape[1:])
    kernel = init["params"]["Conv_0"]["kernel"]
    # Member 0: only the head and BatchNorm statistics; member 1: half of the first kernel too.
    half = np.stack(
        [
            np.zeros(kernel.shape[1:], bool),
            np.arange(kernel[0].size).reshape(kernel.shape[1:]) % 2 == 0,
        ]
    )
    trainable = {
        "params": {k: (half if k == "Conv_0" else k == "head") for k in init["params"]},
    }
    out = fit.train_group(
        model,
        x,
        t,
        size=2,
        cfg=_cfg(optimizer=optimizer, weight_decay=1e-3),
        epochs=1,
        rng=jax.random.PRNGKey(0),
        init=init,
        trainable=trainable,
    )
    for name in init["params"]:
        before, after = (
            ensemble.member(init, 0)["params"][name],
            ensemble.member(out, 0)["params"][name],
        )
        changed = [
            not np.array_equal(a, b)
            for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after))
        ]
        assert all(changed) if name == "head" else not any(changed), name
    moved = np.asarray(out["params"]["Conv_0"]["kernel"][1]) != np.asarray(kernel[1])
    assert np.all(~moved[~half[1]]) and moved[half[1]].mean() > 0.9
    assert not np.array_equal(
        out["batch_stats"]["BatchNorm_0"]["mean"], init["batch_stats"]["BatchNorm_0"]["mean"]
    )
    frozen_stats = {"params": trainable["params"], "batch_stats": False}
    out = fit.train_group(
        model,
        x,
        t,
        size=2,
        cfg=_cfg(),
        epochs=1,
        rng=jax.random.PRNGKey(0),
        init=init,
        trainable=frozen_stats,
    )
    chex.assert_trees_all_equal(out["batch_stats"], init["batch_stats"])  # init survives donation


def test_restored_init_compiles_the_step_once(digits, tmp_path, monkeypatch):
    x, t, _ = digits
    model = models.get_model("cnn_medium", 10)
    group = ensemble.Group("g", "cnn_medium", model, 1)
    zoo.save_variables(
        str(tmp_path / "v"), ensemble.init_members(model, jax.random.PRNGKey(0), 1, x.shape[1:])
    )
    restored = zoo.load_variables(str(tmp_path / "v"), group, x.shape[1:])  # committed arrays
    chunks = []
    real = fit.make_chunk_fn
    monkeypatch.setattr(
        fit, "make_chunk_fn", lambda *a, **k: chunks.append(real(*a, **k)) or chunks[-1]
    )
    fit.train_group(
        model, x, t, size=1, cfg=_cfg(), epochs=2, rng=jax.random.PRNGKey(0), init=restored
    )
    assert chunks[0].jitted._cache_size() == 1
    assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(restored))  # not donated


class _TinyDense(nn.Module):
    """One Dense layer on the flattened input: a gradient a person can write down."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        del train
        return nn.Dense(3, name="head")(x.reshape(x.shape[0], -1))


class OneStepKnownAnswerTest(chex.TestCase):
    """One optimizer step of a tiny Dense model equals the update computed by hand."""

    X = np.array([1.0, 0.5, 0.0, 0.25, 0.0, 1.0, 0.5, 0.75]).reshape(2, 2, 2, 1)
    TARGETS = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    W = np.array([[0.5, -0.25, 0.0], [0.25, 0.5, -0.5], [-0.5, 0.0, 0.25], [0.0, 0.25, 0.5]])
    B = np.array([0.1, 0.0, -0.1])
    T = 2.0  # the distillation temperature of the loss (Eq. 2)

    def _hand_gradient(self):
        """Mean soft cross-entropy of softmax(z / T), z = x W + b, and its gradient by hand:
        dL/dz = (softmax(z / T) - targets) / (T B)."""
        x = self.X.reshape(2, -1)
        z = (x @ self.W + self.B) / self.T
        q = np.exp(z - z.max(-1, keepdims=True))
        q /= q.sum(-1, keepdims=True)
        loss = -(self.TARGETS * np.log(q)).sum(-1).mean()
        dz = (q - self.TARGETS) / (self.T * len(x))
        return loss, x.T @ dz, dz.sum(0)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("sgd", "sgd"), ("adam", "adam"))
    def test_step(self, optimizer):
        lr, wd = 0.1, 0.01 if optimizer == "sgd" else 0.0
        cfg = _cfg(optimizer=optimizer, learning_rate=lr, weight_decay=wd, schedule="constant")
        tx = fit.make_optimizer(cfg, 10, 1)
        params = {"head": {"kernel": jnp.asarray(self.W, jnp.float32), "bias": jnp.asarray(self.B)}}
        state = fit.TrainState(params=params, batch_stats={}, opt_state=tx.init(params))
        step = self.variant(
            functools.partial(
                fit.member_train_step,
                model=_TinyDense(),
                tx=tx,
                temperature=self.T,
                crop=0,
                flip=False,
            )
        )
        x, targets = jnp.asarray(self.X, jnp.float32), jnp.asarray(self.TARGETS, jnp.float32)
        new, metrics = step(state, x, targets, jax.random.PRNGKey(0))
        loss, g_w, g_b = self._hand_gradient()
        if optimizer == "sgd":
            # Weight decay, then Nesterov momentum 0.9 from a zero trace: g + 0.9 g.
            want_w = self.W - lr * 1.9 * (g_w + wd * self.W)
            want_b = self.B - lr * 1.9 * (g_b + wd * self.B)
        else:
            # Adam's first bias-corrected step: lr g / (|g| + 1e-8).
            want_w = self.W - lr * g_w / (np.abs(g_w) + 1e-8)
            want_b = self.B - lr * g_b / (np.abs(g_b) + 1e-8)
        np.testing.assert_allclose(new.params["head"]["kernel"], want_w, atol=1e-6)
        np.testing.assert_allclose(new.params["head"]["bias"], want_b, atol=1e-6)
        np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
        # Example 0's logits top on class 0, as its target; example 1's on class 1, its target on 2.
        np.testing.assert_allclose(metrics["accuracy"], 0.5)
