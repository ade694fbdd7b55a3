"""Stacked ensembles: N models of one architecture as one pytree.

Every leaf of a group's variables has a leading member axis. `map_members`
turns a function written for ONE member into one over all members, executed by
`jax.vmap` (an accelerator's fast path), by a loop unrolled inside the
caller's jit, or by `lax.map`, which traces and compiles one member whatever
the group size (the CPU default: on a CPU, vmapped convolutions become grouped
convolutions that run 5-10x slower). With more than one device the members are
split over them (`sharding`). Several architectures are a tuple of `Group`s
evaluated inside one jitted function; `compose` builds the paper's ensemble
output (Eq. 11-13) from such groups.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.extend import core as jax_core
from jax.sharding import PartitionSpec as P

from fingerprinting import errors
from fingerprinting import sharding

# 'map:U' runs U members unrolled in each iteration of the member loop (any
# U >= 1; 'map' is 'map:1'). The tuple names one of each kind for tests.
STRATEGIES = ("vmap", "unroll", "map", "map:2")


def default_strategy(backend: str | None = None) -> str:
    """The member execution measured best on each backend.

    On a CPU, 'map' runs a C-BIM step through 16 ResNet-20s as fast as
    'unroll' and compiles in a fifth of the time (one member instead of 16);
    on an accelerator 'vmap' batches the members into one kernel.
    """
    backend = backend or jax.default_backend()
    return "map" if backend == "cpu" else "vmap"


def resolve_strategy(strategy: str | None) -> str:
    if strategy in (None, "", "auto"):
        return default_strategy()
    if strategy in ("vmap", "unroll", "map") or _map_unroll(strategy):
        return strategy
    raise errors.ConfigError(
        f"unknown member strategy {strategy!r}; expected vmap, unroll, map, "
        "map:U (U members per loop iteration) or auto"
    )


def _map_unroll(strategy: str) -> int:
    """U of a 'map:U' strategy, 1 for 'map', 0 for anything else."""
    if strategy == "map":
        return 1
    head, _, count = strategy.partition(":")
    return int(count) if head == "map" and count.isdigit() and int(count) >= 1 else 0


LOOPS = ("python", "fori")


def resolve_loop(loop: str | None) -> str:
    """How iterations (training steps, attack steps) run.

    'fori' keeps them inside one compiled program (lax.scan / fori_loop): no
    Python dispatch, and the data never leaves the device between steps.
    'python' jits one step and drives it from Python. Both give the same
    results. 'auto' is 'fori' on every backend: with `canonical_convs` a CPU
    runs convolutions inside loops as fast as outside (it was an order of
    magnitude slower before).
    """
    if loop in (None, "", "auto"):
        return "fori"
    if loop not in LOOPS:
        raise errors.ConfigError(f"unknown loop {loop!r}; expected auto, {' or '.join(LOOPS)}")
    return loop


# XLA:CPU hands a convolution to its fast library kernel only in the canonical
# layout (input NHWC, kernel HWIO, output NHWC). At the top level of a program
# it transposes other convolutions into that form itself; inside a while loop
# it does not, and they run as naive loop nests. The backward passes JAX derives
# are not canonical (the input gradient convolves with an HWOI kernel, the
# weight gradient swaps batch and features), so a member loop (lax.map) or a
# step loop (lax.scan) ran 6x (input gradients) to 28x (weight gradients)
# slower than the same code unrolled. `canonical_convs` rewrites every
# convolution of a function, and of its derivatives, into the canonical form.


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


def num_members(tree) -> int:
    return jax.tree_util.tree_leaves(tree)[0].shape[0]


def member(tree, i: int):
    """Member i of a stacked pytree."""
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def stack(trees: Sequence[Any]):
    """Stacks per-member pytrees along a new leading member axis."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def _member_axes(in_axes, num_args: int) -> tuple:
    """One axis per passed argument; those of arguments left to their defaults drop out."""
    axes = tuple(in_axes) if isinstance(in_axes, (tuple, list)) else (in_axes,) * num_args
    axes = axes[:num_args]
    if len(axes) != num_args or any(ax not in (0, None) for ax in axes):
        raise ValueError(f"in_axes must give 0 or None for each of {num_args} arguments: {in_axes}")
    if 0 not in axes:
        raise ValueError("map_members needs at least one argument with in_axes=0")
    return axes


def _map_on_device(fn: Callable, axes: tuple, strategy: str) -> Callable:
    """`fn` over the members this device holds, executed by `strategy`."""
    if strategy == "vmap":
        return jax.vmap(fn, in_axes=axes)
    if jax.default_backend() == "cpu":
        fn = canonical_convs(fn)  # the loops around it may be rolled: ours, or a caller's

    def call(args, member_args):
        it = iter(member_args)
        return fn(*[next(it) if ax == 0 else a for a, ax in zip(args, axes)])

    def mapped_args(args):
        return tuple(a for a, ax in zip(args, axes) if ax == 0)

    if strategy == "unroll":

        def unrolled(*args):
            stacked = mapped_args(args)
            n = num_members(stacked)
            return stack([call(args, member(stacked, i)) for i in range(n)])

        return unrolled

    unroll = _map_unroll(strategy)

    def looped(*args):
        stacked = mapped_args(args)
        n = num_members(stacked)
        u = min(unroll, n)
        if u == 1:
            return jax.lax.map(lambda xs: call(args, xs), stacked)
        # Members [0, n - n % u) in n // u iterations of u unrolled members each
        # (independent work the CPU runtime overlaps); the rest unrolled after.
        looped_n = n - n % u
        chunks = jax.tree_util.tree_map(
            lambda a: a[:looped_n].reshape(looped_n // u, u, *a.shape[1:]), stacked
        )
        body = lambda xs: stack([call(args, member(xs, i)) for i in range(u)])
        out = jax.tree_util.tree_map(
            lambda a: a.reshape(looped_n, *a.shape[2:]), jax.lax.map(body, chunks)
        )
        if looped_n == n:
            return out
        rest = stack([call(args, member(stacked, i)) for i in range(looped_n, n)])
        return jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), out, rest)

    return looped


def map_members(fn: Callable, in_axes=0, strategy: str | None = None) -> Callable:
    """Vectorizes `fn` (written for ONE member) over the leading member axis.

    `in_axes` follows `jax.vmap`: 0 for an argument with a member axis, None for
    one shared by all members. Every strategy computes the same values; they
    differ only in speed and compile time. With more than one device, a group
    whose size divides over them is split over the 'models' mesh: `jax.shard_map`
    gives each device its own members, run there by the strategy, and shared
    arguments are replicated, so the member weights never cross devices (a
    sharded vmap would instead gather them into one grouped convolution on every
    device). Other groups run unsplit.
    """
    strategy = resolve_strategy(strategy)

    def mapped(*args):
        axes = _member_axes(in_axes, len(args))
        on_device = _map_on_device(fn, axes, strategy)
        n = num_members([a for a, ax in zip(args, axes) if ax == 0])
        if not sharding.shards_members(n):
            return on_device(*args)
        split, shared = P(sharding.MEMBER_AXIS), P()
        return jax.shard_map(
            on_device,
            mesh=sharding.member_mesh(),
            in_specs=tuple(split if ax == 0 else shared for ax in axes),
            out_specs=split,
        )(*args)

    return mapped


@dataclasses.dataclass(frozen=True)
class Group:
    """Members of one architecture: the static half of a stacked ensemble."""

    name: str
    arch: str
    model: nn.Module
    size: int


def init_members(model: nn.Module, rng, size: int, input_shape) -> dict:
    """Stacked variables of `size` independently initialized members."""
    x = jnp.zeros((1, *input_shape), jnp.float32)
    # Member i's key depends on i alone, so a member is the same in any group size.
    keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(size))
    # init is not a hot path: vmap keeps it one compile for any member count.
    return jax.vmap(lambda k: dict(model.init(k, x, train=False)))(keys)


def apply_members(
    model: nn.Module, variables, x, *, strategy=None, per_member_inputs: bool = False
):
    """Inference logits of every member: [M, B, K].

    x is one batch shared by all members ([B, ...]) or, with
    `per_member_inputs`, one batch per member ([M, B, ...]).
    """
    fn = lambda v, xb: model.apply(v, xb, train=False)
    return map_members(fn, (0, 0 if per_member_inputs else None), strategy)(variables, x)


def group_probs(
    groups: Sequence[Group], variables: Sequence[Any], x, *, strategy=None
) -> list[jnp.ndarray]:
    """Softmax outputs [M_g, B, K] of each group on a shared batch."""
    return [
        jax.nn.softmax(apply_members(g.model, v, x, strategy=strategy), -1)
        for g, v in zip(groups, variables)
    ]


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
