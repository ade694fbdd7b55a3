"""Stacked ensembles equal their members applied one by one, for every strategy."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.extend import core as jax_core

from fingerprinting import conv_layout
from fingerprinting import ensemble
from fingerprinting import models
from fingerprinting.attacks import cbim as cbim_lib


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

    def test_input_gradient_of_every_strategy_equals_loop(self):
        # C-BIM differentiates the members' outputs w.r.t. their shared input.
        model = models.get_model("cnn_medium", 10)
        variables = ensemble.init_members(model, jax.random.PRNGKey(1), 3, (8, 8, 1))
        x = jax.random.uniform(jax.random.PRNGKey(2), (4, 8, 8, 1))

        def loss(xb, strategy):
            logits = ensemble.apply_members(model, variables, xb, strategy=strategy)
            return jax.nn.log_softmax(logits)[..., 3].sum()

        want = jax.grad(lambda xb: loss(xb, "unroll"))(x)
        for strategy in ("map", "vmap"):
            got = jax.jit(jax.grad(lambda xb, s=strategy: loss(xb, s)))(x)
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

    def test_unknown_strategy_and_loop(self):
        with pytest.raises(ValueError, match="unknown member strategy"):
            ensemble.resolve_strategy("threads")
        with pytest.raises(ValueError, match="unknown loop"):
            ensemble.resolve_loop("while")

    def test_defaults_per_backend(self):
        assert ensemble.default_strategy("cpu") == "map"
        assert ensemble.default_strategy("gpu") == "vmap"
        assert ensemble.resolve_loop("auto") == "fori"


# (dimension numbers, strides, padding, rhs dilation, feature groups)
CONVS = (
    (("NHWC", "HWIO", "NHWC"), (1, 1), "SAME", (1, 1), 1),
    (("NHWC", "HWIO", "NHWC"), (2, 2), "SAME", (1, 1), 1),
    (("NHWC", "HWIO", "NHWC"), (1, 2), ((2, 0), (1, 1)), (2, 1), 1),
    (("NCHW", "OIHW", "NCHW"), (2, 1), "VALID", (1, 1), 1),
    (("NHWC", "HWIO", "NHWC"), (1, 1), "SAME", (1, 1), 2),  # grouped
)


def _conv_fn(dn, strides, padding, dilation, groups):
    def f(x, w):
        return lax.conv_general_dilated(
            x,
            w,
            strides,
            padding,
            rhs_dilation=dilation,
            dimension_numbers=dn,
            feature_group_count=groups,
        )

    return f


def _operands(dn, groups):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 6, 4))  # NHWC
    w = jax.random.normal(jax.random.PRNGKey(1), (3, 2, 4 // groups, 6))  # HWIO
    if dn[0] == "NCHW":
        x, w = x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1)
    return x, w


def _conv_specs(closed) -> list:
    """Dimension numbers of every convolution in a jaxpr, inner jaxprs included."""

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive is lax.conv_general_dilated_p:
                yield eqn.params["dimension_numbers"]
        for sub in jax_core.subjaxprs(jaxpr):
            yield from walk(sub)

    return list(walk(closed.jaxpr))


class CanonicalConvsTest(chex.TestCase):
    def test_same_values_and_gradients(self):
        for case in CONVS:
            f = _conv_fn(*case)
            x, w = _operands(case[0], case[-1])
            loss = lambda x, w, f=f: jnp.sum(jnp.sin(f(x, w)))
            chex.assert_trees_all_close(
                conv_layout.canonical_convs(f)(x, w), f(x, w), atol=1e-4, rtol=1e-5
            )
            want = jax.grad(loss, (0, 1))(x, w)
            # Differentiated through the rewrite (C-BIM), and rewritten after (training).
            through = jax.grad(conv_layout.canonical_convs(loss), (0, 1))(x, w)
            after = conv_layout.canonical_convs(jax.grad(loss, (0, 1)))(x, w)
            chex.assert_trees_all_close(through, want, atol=1e-4, rtol=1e-4)
            chex.assert_trees_all_close(after, want, atol=1e-4, rtol=1e-4)

    def test_every_convolution_of_value_and_gradient_is_canonical(self):
        canonical = conv_layout._canonical_dimension_numbers(4)
        for case in CONVS:
            f = _conv_fn(*case)
            x, w = _operands(case[0], case[-1])
            loss = lambda x, w, f=f: jnp.sum(f(x, w) ** 2)
            plain = _conv_specs(jax.make_jaxpr(jax.grad(loss, (0, 1)))(x, w))
            # Without the rewrite JAX's backward convolutions are not canonical.
            assert any(spec != canonical for spec in plain)
            for fn in (
                jax.grad(conv_layout.canonical_convs(loss), (0, 1)),
                conv_layout.canonical_convs(jax.grad(loss, (0, 1))),
            ):
                specs = _conv_specs(jax.make_jaxpr(fn)(x, w))
                assert len(specs) >= 3 and all(spec == canonical for spec in specs), specs


class ComposeTest(chex.TestCase):
    def test_eq_13_without_dropout(self):
        surr = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(0), (4, 6, 5)))
        ref = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(1), (3, 6, 5)))
        s, r, m_e = cbim_lib.compose(surr, ref)
        chex.assert_trees_all_close(m_e, (1 - ref.mean(0)) * surr.mean(0), atol=1e-6)

    def test_member_dropout_keeps_some_and_renormalizes(self):
        probs = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(0), (8, 2, 5)))
        for seed in range(20):
            keep = cbim_lib.member_keep_mask(jax.random.PRNGKey(seed), 8, 0.9)
            assert keep.sum() >= 1
            mean = cbim_lib.masked_mean(probs, keep)
            chex.assert_trees_all_close(mean.sum(-1), jnp.ones(2), atol=1e-5)
        masks = np.stack(
            [cbim_lib.member_keep_mask(jax.random.PRNGKey(s), 8, 0.5) for s in range(200)]
        )
        assert 0.4 < masks.mean() < 0.6

    def test_output_dropout_and_bad_kind(self):
        surr = jnp.full((2, 3, 4), 0.25)
        _, _, m_e = cbim_lib.compose(
            surr, surr, rng=jax.random.PRNGKey(0), dropout=0.5, dropout_kind="output"
        )
        assert set(np.unique(np.round(np.asarray(m_e), 5))) <= {0.0, round(0.25 * 0.75 * 2, 5)}
        with pytest.raises(ValueError, match="dropout kind"):
            cbim_lib.compose(surr, surr, rng=jax.random.PRNGKey(0), dropout=0.5, dropout_kind="x")
