"""Stacked ensembles: N models of one architecture as one pytree.

Every leaf of a group's variables has a leading member axis. `map_members`
turns a function written for ONE member into one over all members, executed by
`jax.vmap` (an accelerator's fast path), by a loop unrolled inside the
caller's jit, or by `lax.map`, which traces and compiles one member whatever
the group size (the CPU default: on a CPU, vmapped convolutions become grouped
convolutions that run 5-10x slower). With more than one device the members are
split over them (`sharding`). Several architectures are a tuple of `Group`s
evaluated inside one jitted function (`attacks.cbim.compose` builds the
paper's ensemble output, Eq. 11-13, from their outputs). Convolutions go
through `conv_layout.canonical_convs`, so that member and step loops stay
fast on a CPU.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from fingerprinting import conv_layout
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


def parameter_hash(variables) -> str:
    """SHA-256 of a model's parameters: the source's identity in the fingerprint."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
        a = np.asarray(leaf)
        h.update(jax.tree_util.keystr(path).encode() + a.dtype.str.encode() + str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


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
        fn = conv_layout.canonical_convs(
            fn
        )  # the loops around it may be rolled: ours, or a caller's

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


@functools.partial(jax.jit, static_argnums=(0, 2))
def _init_member(model: nn.Module, key, input_shape: tuple) -> dict:
    return dict(model.init(key, jnp.zeros((1, *input_shape), jnp.float32), train=False))


def init_members(model: nn.Module, rng, size: int, input_shape) -> dict:
    """Stacked variables of `size` independently initialized members.

    Member i's key depends on i alone, so a member is the same in any group
    size. The members are initialized one by one by one compiled program per
    architecture, which serves every group size (run op by op, initialization
    compiled dozens of small programs for every size: about 9 s of a 4-member
    `cnn_small` group's 16 s on 2 CPU cores).
    """
    shape = tuple(int(d) for d in input_shape)
    return stack([_init_member(model, jax.random.fold_in(rng, i), shape) for i in range(size)])


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
