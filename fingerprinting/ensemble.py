"""Stacked ensembles: N models of one architecture as one pytree.

Every leaf of a group's variables has a leading member axis. `map_members`
turns a function written for ONE member into one over all members, executed by
`jax.vmap` or by a loop unrolled inside the caller's jit (on a CPU, vmapped
convolutions become grouped convolutions that run 5-10x slower than the
unrolled loop; on an accelerator vmap is the fast path). Several architectures
are a tuple of `Group`s evaluated inside one jitted function; `compose` builds
the paper's ensemble output (Eq. 11-13) from such groups.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

STRATEGIES = ("vmap", "unroll", "map")


def default_strategy(backend: str | None = None) -> str:
    """The fastest member execution measured on each backend."""
    backend = backend or jax.default_backend()
    return "unroll" if backend == "cpu" else "vmap"


def resolve_strategy(strategy: str | None) -> str:
    if strategy in (None, "", "auto"):
        return default_strategy()
    if strategy not in STRATEGIES:
        raise ValueError(
            f"unknown member strategy {strategy!r}; expected one of "
            f"{', '.join(STRATEGIES)} or 'auto'"
        )
    return strategy


LOOPS = ("python", "fori")


def resolve_loop(loop: str | None, backend: str | None = None) -> str:
    """How iterations (training steps, attack steps) run.

    'fori' keeps them inside one compiled program (lax.scan / fori_loop): no
    Python dispatch, the accelerator's way. 'python' jits one step and drives
    it from Python: XLA:CPU runs convolutions inside a while loop an order of
    magnitude slower than at the top level (measured here: 10 training steps
    of a small CNN, 35 s in a scan against 1.6 s unrolled), so 'auto' picks
    'python' on a CPU.
    """
    if loop in (None, "", "auto"):
        return "python" if (backend or jax.default_backend()) == "cpu" else "fori"
    if loop not in LOOPS:
        raise ValueError(f"unknown loop {loop!r}; expected auto, {' or '.join(LOOPS)}")
    return loop


def num_members(tree) -> int:
    return jax.tree_util.tree_leaves(tree)[0].shape[0]


def member(tree, i: int):
    """Member i of a stacked pytree."""
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def stack(trees: Sequence[Any]):
    """Stacks per-member pytrees along a new leading member axis."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def map_members(fn: Callable, in_axes=0, strategy: str | None = None):
    """Vectorizes `fn` (written for one member) over the leading member axis.

    `in_axes` follows `jax.vmap`: 0 for an argument with a member axis, None for
    one shared by all members. Every strategy computes the same values; they
    differ only in speed and compile time.
    """
    strategy = resolve_strategy(strategy)
    if strategy == "vmap":
        return jax.vmap(fn, in_axes=in_axes)

    def split_args(args):
        axes = in_axes if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
        mapped = [a for a, ax in zip(args, axes) if ax == 0]
        if not mapped:
            raise ValueError("map_members needs at least one argument with in_axes=0")
        return axes, num_members(mapped[0])

    def call(args, axes, i):
        return fn(*[member(a, i) if ax == 0 else a for a, ax in zip(args, axes)])

    if strategy == "unroll":

        def unrolled(*args):
            axes, n = split_args(args)
            return stack([call(args, axes, i) for i in range(n)])

        return unrolled

    def mapped(*args):
        axes, _ = split_args(args)
        stacked = tuple(a for a, ax in zip(args, axes) if ax == 0)

        def body(xs):
            it = iter(xs)
            return fn(*[next(it) if ax == 0 else a for a, ax in zip(args, axes)])

        return jax.lax.map(body, stacked)

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
):
    """Compose(M, S, R) of Section 4.4: (Surr, Ref, M_E), each [B, K].

    surr_probs holds the source and the surrogates (S_M), ref_probs the
    references. Dropout 'member' drops whole models and renormalizes the means;
    'output' drops entries of the ensemble's output vector (Keras-style dropout
    before the output, scaled by 1/(1-rate)).
    """
    ks, kr, ko = jax.random.split(rng, 3) if rng is not None else (None,) * 3
    if dropout_kind == "member" and dropout > 0:
        surr = masked_mean(
            surr_probs_MxBxK, member_keep_mask(ks, surr_probs_MxBxK.shape[0], dropout)
        )
        ref = masked_mean(ref_probs_MxBxK, member_keep_mask(kr, ref_probs_MxBxK.shape[0], dropout))
    else:
        surr, ref = surr_probs_MxBxK.mean(0), ref_probs_MxBxK.mean(0)
    m_e = (1.0 - ref) * surr  # Eq. 13
    if dropout_kind == "output" and dropout > 0 and ko is not None:
        keep = jax.random.bernoulli(ko, 1.0 - dropout, m_e.shape)
        m_e = jnp.where(keep, m_e / (1.0 - dropout), 0.0)
    elif dropout_kind not in ("member", "output"):
        raise ValueError(
            f"unknown ensemble dropout kind {dropout_kind!r}; expected 'member' or 'output'"
        )
    return surr, ref, m_e
