"""Stacked ensembles equal their members applied one by one, for every strategy."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fingerprinting import ensemble
from fingerprinting import models


def _members_one_by_one(model, variables, x, per_member):
    outs = []
    for i in range(ensemble.num_members(variables)):
        xi = x[i] if per_member else x
        outs.append(model.apply(ensemble.member(variables, i), xi, train=False))
    return jnp.stack(outs)


class ApplyMembersTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_every_strategy_equals_loop(self):
        for arch in ("cnn_medium", "mlp"):  # with and without BatchNorm
            model = models.get_model(arch, 10)
            variables = ensemble.init_members(model, jax.random.PRNGKey(1), 3, (8, 8, 1))
            x = jax.random.uniform(jax.random.PRNGKey(2), (3, 5, 8, 8, 1))
            for per_member in (False, True):
                xin = x if per_member else x[0]
                want = _members_one_by_one(model, variables, xin, per_member)
                for strategy in ensemble.STRATEGIES:
                    fn = self.variant(
                        lambda v, xb, s=strategy, p=per_member, model=model: ensemble.apply_members(
                            model, v, xb, strategy=s, per_member_inputs=p
                        )
                    )
                    got = fn(variables, xin)
                    chex.assert_shape(got, (3, 5, 10))
                    chex.assert_trees_all_close(got, want, atol=1e-5, rtol=1e-5)

    def test_members_differ_and_depend_on_their_key_only(self):
        model = models.get_model("cnn_small", 10)
        v3 = ensemble.init_members(model, jax.random.PRNGKey(0), 3, (8, 8, 1))
        v5 = ensemble.init_members(model, jax.random.PRNGKey(0), 5, (8, 8, 1))
        a = ensemble.member(v3, 0)["params"]["head"]["kernel"]
        b = ensemble.member(v3, 1)["params"]["head"]["kernel"]
        assert not np.allclose(a, b)
        alone = model.init(
            jax.random.fold_in(jax.random.PRNGKey(0), 1), jnp.zeros((1, 8, 8, 1)), train=False
        )
        chex.assert_trees_all_close(ensemble.member(v3, 1), dict(alone))
        assert ensemble.num_members(v5) == 5
        chex.assert_trees_all_close(ensemble.member(v5, 2), ensemble.member(v3, 2))

    def test_unknown_strategy(self):
        with pytest.raises(ValueError, match="unknown member strategy"):
            ensemble.resolve_strategy("threads")


class ComposeTest(chex.TestCase):
    def test_eq_13_without_dropout(self):
        surr = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(0), (4, 6, 5)))
        ref = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(1), (3, 6, 5)))
        s, r, m_e = ensemble.compose(surr, ref)
        chex.assert_trees_all_close(m_e, (1 - ref.mean(0)) * surr.mean(0), atol=1e-6)

    def test_member_dropout_keeps_some_and_renormalizes(self):
        probs = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(0), (8, 2, 5)))
        for seed in range(20):
            keep = ensemble.member_keep_mask(jax.random.PRNGKey(seed), 8, 0.9)
            assert keep.sum() >= 1
            mean = ensemble.masked_mean(probs, keep)
            chex.assert_trees_all_close(mean.sum(-1), jnp.ones(2), atol=1e-5)
        masks = np.stack(
            [ensemble.member_keep_mask(jax.random.PRNGKey(s), 8, 0.5) for s in range(200)]
        )
        assert 0.4 < masks.mean() < 0.6

    def test_output_dropout_and_bad_kind(self):
        surr = jnp.full((2, 3, 4), 0.25)
        _, _, m_e = ensemble.compose(
            surr, surr, rng=jax.random.PRNGKey(0), dropout=0.5, dropout_kind="output"
        )
        assert set(np.unique(np.round(np.asarray(m_e), 5))) <= {0.0, round(0.25 * 0.75 * 2, 5)}
        with pytest.raises(ValueError, match="dropout kind"):
            ensemble.compose(surr, surr, rng=jax.random.PRNGKey(0), dropout=0.5, dropout_kind="x")
