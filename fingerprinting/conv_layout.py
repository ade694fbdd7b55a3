"""Convolutions rewritten into XLA:CPU's canonical layout, derivatives included.

XLA:CPU hands a convolution to its fast library kernel only in the canonical
layout (input NHWC, kernel HWIO, output NHWC). At the top level of a program
it transposes other convolutions into that form itself; inside a while loop
it does not, and they run as naive loop nests. The backward passes JAX derives
are not canonical (the input gradient convolves with an HWOI kernel, the
weight gradient swaps batch and features), so a member loop (lax.map) or a
step loop (lax.scan) ran 6x (input gradients) to 28x (weight gradients)
slower than the same code unrolled. `canonical_convs` rewrites every
convolution of a function, and of its derivatives, into the canonical form.

`canonical_convs(fn)` is `fn` with every convolution, and every convolution
of its derivatives (a custom VJP), in the canonical layout; values and
gradients are unchanged (tested). `ensemble.map_members` applies it to every
member function, so training steps and C-BIM iterations stay inside one
compiled loop on every backend.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
from jax import lax
from jax.extend import core as jax_core


def _canonical_dimension_numbers(ndim: int) -> lax.ConvDimensionNumbers:
    channels_last = (0, ndim - 1, *range(1, ndim - 1))
    return lax.ConvDimensionNumbers(
        channels_last, (ndim - 1, ndim - 2, *range(ndim - 2)), channels_last
    )


def _conv_in_canonical_layout(lhs, rhs, params: tuple):
    params = dict(params)
    lhs_spec, rhs_spec, out_spec = params.pop("dimension_numbers")
    canonical = _canonical_dimension_numbers(lhs.ndim)
    lhs = lax.transpose(lhs, (lhs_spec[0], *lhs_spec[2:], lhs_spec[1]))
    rhs = lax.transpose(rhs, (*rhs_spec[2:], rhs_spec[1], rhs_spec[0]))
    out = lax.conv_general_dilated_p.bind(lhs, rhs, dimension_numbers=canonical, **params)
    # Output dimension out_spec[i] holds what the canonical output has at canonical.out_spec[i].
    to_spec = [0] * lhs.ndim
    for d, c in zip(out_spec, canonical.out_spec):
        to_spec[d] = c
    return lax.transpose(out, tuple(to_spec))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _canonical_conv(lhs, rhs, params: tuple):
    return _conv_in_canonical_layout(lhs, rhs, params)


def _canonical_conv_fwd(lhs, rhs, params):
    return _canonical_conv(lhs, rhs, params), (lhs, rhs)


def _canonical_conv_bwd(params, residuals, ct):
    lhs, rhs = residuals
    conv = lambda lhs, rhs: lax.conv_general_dilated_p.bind(lhs, rhs, **dict(params))

    def transposed(ct):  # JAX's own backward convolutions, rewritten below
        (ct_lhs,) = jax.linear_transpose(lambda lhs: conv(lhs, rhs), lhs)(ct)
        (ct_rhs,) = jax.linear_transpose(lambda rhs: conv(lhs, rhs), rhs)(ct)
        return ct_lhs, ct_rhs

    return canonical_convs(transposed)(ct)


_canonical_conv.defvjp(_canonical_conv_fwd, _canonical_conv_bwd)


def _has_conv(jaxpr) -> bool:
    return any(e.primitive is lax.conv_general_dilated_p for e in jaxpr.eqns) or any(
        _has_conv(sub) for sub in jax_core.subjaxprs(jaxpr)
    )


def _eval_canonical(jaxpr, consts, args) -> list:
    """Evaluates a jaxpr with its convolutions (also those of inner jits) canonical."""
    env = dict(zip(jaxpr.constvars, consts)) | dict(zip(jaxpr.invars, args))
    read = lambda v: v.val if isinstance(v, jax_core.Literal) else env[v]
    for eqn in jaxpr.eqns:
        inputs = [read(v) for v in eqn.invars]
        inner = eqn.params.get("jaxpr")
        if eqn.primitive is lax.conv_general_dilated_p:
            outputs = [_canonical_conv(*inputs, tuple(eqn.params.items()))]
        elif eqn.primitive.name == "jit" and _has_conv(inner.jaxpr):
            outputs = _eval_canonical(inner.jaxpr, inner.consts, inputs)  # inlined
        else:
            with eqn.ctx.manager:
                outputs = eqn.primitive.bind(*inputs, **eqn.primitive.get_bind_params(eqn.params))
            outputs = outputs if eqn.primitive.multiple_results else [outputs]
        env.update(zip(eqn.outvars, outputs))
    return [read(v) for v in jaxpr.outvars]


def canonical_convs(fn: Callable) -> Callable:
    """`fn` with every convolution in XLA:CPU's canonical layout, in its value and
    in its derivatives: equal values, and fast inside loops on a CPU."""

    @functools.wraps(fn)
    def wrapped(*args):
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        out = _eval_canonical(closed.jaxpr, closed.consts, jax.tree_util.tree_leaves(args))
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), out)

    return wrapped
