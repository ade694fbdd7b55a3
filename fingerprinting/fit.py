"""Stacked multi-model training and evaluation.

One jitted step trains every member of a group at once, each with its own
initialization, data order and augmentation, and optionally its own targets
(a sweep over label noise), its own part of the data (an ensemble on disjoint
subsets) and its own mask of what may change (frozen layers, pruned weights).
The step is written for one member and vectorized by `ensemble.map_members`;
an epoch runs as a few `lax.scan` chunks so a person sees progress without
paying Python dispatch per step. Where members run one after another anyway
(strategy 'map' on one device), each chunk runs member by member through one
single-member program, which every group of that architecture and data
shares whatever its size: the same steps, compiled once instead of per size.
A group's state is checkpointed with Orbax after every epoch, and
`train_group` resumes from the last checkpoint it finds.
"""

from __future__ import annotations

import functools
import math
import os
import time
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from fingerprinting import ensemble
from fingerprinting import errors
from fingerprinting import faults
from fingerprinting import progress
from fingerprinting import sharding


class NonFiniteLossError(errors.UserError, FloatingPointError):
    pass


@flax.struct.dataclass
class TrainState:
    params: Any
    batch_stats: Any
    opt_state: Any


def variables_of(state: TrainState) -> dict:
    v = {"params": state.params}
    if state.batch_stats:
        v["batch_stats"] = state.batch_stats
    return v


def make_optimizer(cfg, steps_per_epoch: int, epochs: int) -> optax.GradientTransformation:
    """The optimizer and schedule a training config names."""
    total = max(1, steps_per_epoch * epochs)
    lr = cfg.learning_rate
    if cfg.schedule == "constant":
        schedule = optax.constant_schedule(lr)
    elif cfg.schedule == "cosine":
        schedule = optax.cosine_decay_schedule(lr, total)
    elif cfg.schedule == "warmup_cosine":
        warmup = min(total // 2, steps_per_epoch)
        schedule = optax.warmup_cosine_decay_schedule(0.0, lr, warmup, total)
    else:
        raise errors.ConfigError(
            f"unknown schedule {cfg.schedule!r}; expected constant, cosine or warmup_cosine"
        )
    if cfg.optimizer == "adam":
        return (
            optax.adamw(schedule, weight_decay=cfg.weight_decay)
            if cfg.weight_decay
            else optax.adam(schedule)
        )
    if cfg.optimizer == "sgd":
        return optax.chain(
            optax.add_decayed_weights(cfg.weight_decay),
            optax.sgd(schedule, momentum=0.9, nesterov=True),
        )
    raise errors.ConfigError(f"unknown optimizer {cfg.optimizer!r}; expected adam or sgd")


def init_state(model: nn.Module, tx, rng, size: int, input_shape) -> TrainState:
    """Stacked training state of `size` fresh members."""
    variables = ensemble.init_members(model, rng, size, input_shape)
    params = variables["params"]
    return TrainState(
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=jax.vmap(tx.init)(params),
    )


def augment(x_BxHxWxC, rng, *, crop: int, flip: bool):
    """Random crop after zero padding by `crop` pixels, and random horizontal flip."""
    b, h, w, _ = x_BxHxWxC.shape
    k_crop, k_flip = jax.random.split(rng)
    if crop:
        padded = jnp.pad(x_BxHxWxC, ((0, 0), (crop, crop), (crop, crop), (0, 0)))
        offsets = jax.random.randint(k_crop, (b, 2), 0, 2 * crop + 1)
        x_BxHxWxC = jax.vmap(
            lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, im.shape[-1]))
        )(padded, offsets)
    if flip:
        do = jax.random.bernoulli(k_flip, 0.5, (b, 1, 1, 1))
        x_BxHxWxC = jnp.where(do, x_BxHxWxC[:, :, ::-1], x_BxHxWxC)
    return x_BxHxWxC


def member_train_step(
    state: TrainState,
    x,
    targets_BxK,
    rng,
    trainable=None,
    *,
    model,
    tx,
    temperature: float,
    crop: int,
    flip: bool,
):
    """One optimizer step of ONE member on soft targets (cross-entropy, Eq. 2).

    `trainable` (None: everything) is a bool mask shaped like the member's
    variables ({'params': ..., 'batch_stats': ...}); what it marks False keeps
    its value, which fine-tuning attacks (frozen layers) and pruning (zeroed
    weights) use.
    """
    x = augment(x, rng, crop=crop, flip=flip)

    def loss_fn(params):
        variables = variables_of(state.replace(params=params))
        logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
        loss = optax.softmax_cross_entropy(logits / temperature, targets_BxK).mean()
        return loss, (logits, updates)

    (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    batch_stats = updates.get("batch_stats", state.batch_stats)
    if trainable is not None:
        grads = jax.tree_util.tree_map(lambda g, t: g * t, grads, trainable["params"])
    updates_p, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates_p)
    if trainable is not None:  # weight decay and momentum must not move frozen weights either
        keep = lambda new, old, t: jnp.where(t, new, old)
        params = jax.tree_util.tree_map(keep, params, state.params, trainable["params"])
        if batch_stats:
            batch_stats = jax.tree_util.tree_map(
                keep, batch_stats, state.batch_stats, trainable["batch_stats"]
            )
    acc = jnp.mean(jnp.argmax(logits, -1) == jnp.argmax(targets_BxK, -1))
    return TrainState(params, batch_stats, opt_state), {"loss": loss, "accuracy": acc}


def make_vec_train_step(model, tx, cfg, *, strategy=None, temperature=1.0):
    """`vec_train_step(state, x_MxB.., targets_MxBxK, keys_M, trainable_M=None)`: one
    step of every member."""
    step = functools.partial(
        member_train_step,
        model=model,
        tx=tx,
        temperature=temperature,
        crop=cfg.augment_crop,
        flip=cfg.augment_flip,
    )
    return ensemble.map_members(step, (0, 0, 0, 0, 0), strategy)


def expand_mask(trainable, variables):
    """A mask of what training may change, as a prefix of the stacked `variables`
    (e.g. {'params': {'head': True, ...}, 'batch_stats': False}), broadcast to
    one bool array per leaf. A leaf of the mask is a bool, an array shaped like
    one member's leaf (shared), or one with the member axis (per member)."""
    variables = {"batch_stats": {}, **variables}  # a model without BatchNorm has none
    return jax.tree_util.tree_map(
        lambda t, sub: jax.tree_util.tree_map(
            lambda leaf: jnp.broadcast_to(jnp.asarray(t, bool), leaf.shape), sub
        ),
        {"batch_stats": True, **trainable},
        variables,
    )


def make_chunk_fn(model, tx, cfg, *, strategy=None, temperature=1.0, loop=None):
    """`chunk(state, x_N, targets, perm_MxN, keys_M, first, length, trainable=None) ->
    (state, metrics)`: `length` steps of every member, batch i of member m being
    perm[m, i*B:(i+1)*B] (wrapping around the permutation). `targets` is one
    [N, K] array for every member or [M, N, K], one per member; `trainable` is
    None or a mask from `expand_mask`. With loop 'fori' the steps run in one
    jitted `lax.scan`; with 'python' one jitted step is called per step (see
    `ensemble.resolve_loop`). `chunk.jitted` is the compiled function.
    """
    vec_train_step = make_vec_train_step(model, tx, cfg, strategy=strategy, temperature=temperature)
    batch = cfg.batch_size

    def step(state, x_N, targets, perm_MxN, keys_M, i, trainable):
        pos = i * batch + jnp.arange(batch)
        idx_MxB = perm_MxN[:, pos % perm_MxN.shape[1]]
        if targets.ndim == 3:  # one set of targets per member
            targets_MxBxK = jnp.take_along_axis(targets, idx_MxB[..., None], axis=1)
        else:
            targets_MxBxK = targets[idx_MxB]
        rngs = jax.vmap(jax.random.fold_in, (0, None))(keys_M, i)
        return vec_train_step(state, x_N[idx_MxB], targets_MxBxK, rngs, trainable)

    if ensemble.resolve_loop(loop) == "fori":

        def scanned(state, x_N, targets, perm_MxN, keys_M, first, length, trainable=None):
            body = lambda s, i: step(s, x_N, targets, perm_MxN, keys_M, first + i, trainable)
            state, metrics = jax.lax.scan(body, state, jnp.arange(length))
            return state, jax.tree_util.tree_map(lambda m: m.mean(0), metrics)

        chunk = jax.jit(scanned, static_argnums=(6,), donate_argnums=(0,))
        chunk.jitted = chunk
        return chunk

    jitted = jax.jit(step, donate_argnums=(0,))

    def chunk(state, x_N, targets, perm_MxN, keys_M, first, length, trainable=None):
        metrics = []
        for i in range(first, first + length):
            state, m = jitted(state, x_N, targets, perm_MxN, keys_M, i, trainable)
            metrics.append(m)
        return state, jax.tree_util.tree_map(lambda *m: jnp.stack(m).mean(0), *metrics)

    chunk.jitted = jitted
    return chunk


def member_by_member(strategy) -> bool:
    """Whether `train_group` runs each chunk one member at a time: with 'map'
    on one device (members are sequential there, so nothing is lost, and a
    1-member program is reused by groups of every size); elsewhere the stacked
    program keeps members in parallel (vmap) or split over devices."""
    return ensemble.resolve_strategy(strategy) == "map" and jax.device_count() == 1


def _chunk_each_member(chunk, state, x_N, targets, perm_MxN, keys_M, first, length, mask):
    """`chunk` on every member alone, in order; results restacked. Per-member
    targets and masks are sliced so the program never sees the group's size.
    Slicing and restacking go through host memory (this runs on a CPU), so
    they compile nothing for a new group size."""
    state, mask = jax.tree_util.tree_map(np.asarray, (state, mask))
    per_member_targets = np.asarray(targets) if targets.ndim == 3 else None
    perm_MxN, keys_M = np.asarray(perm_MxN), np.asarray(keys_M)
    states, metrics = [], []
    for m in range(perm_MxN.shape[0]):
        one = lambda tree: jax.tree_util.tree_map(lambda a: a[m : m + 1], tree)
        s, met = chunk(
            one(state),
            x_N,
            targets if per_member_targets is None else per_member_targets[m],
            perm_MxN[m : m + 1],
            keys_M[m : m + 1],
            first,
            length,
            one(mask),
        )
        states.append(s)
        metrics.append(met)
    join = lambda *a: jnp.asarray(np.concatenate(a, 0))
    return jax.tree_util.tree_map(join, *states), jax.tree_util.tree_map(join, *metrics)


def plan_chunks(num_examples: int, batch_size: int, chunk_steps: int) -> tuple[int, int]:
    """(chunks per epoch, steps per chunk) covering one epoch with equal chunks."""
    steps = max(1, math.ceil(num_examples / batch_size))
    chunks = max(1, math.ceil(steps / max(1, chunk_steps)))
    return chunks, math.ceil(steps / chunks)


@functools.partial(jax.jit, static_argnums=(1,))
def _permutation(key, n):
    return jax.random.permutation(key, n)


def _permutations(keys_M, n):
    """One permutation of range(n) per member key, [M, n]; compiled once for
    every group size."""
    return jnp.asarray(np.stack([_permutation(k, n) for k in keys_M]))


def _checkpoint_manager(directory: str) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True, enable_async_checkpointing=False
        ),
    )


def student_epochs(train_cfg) -> int:
    """How long the source's students train, the thieves' included:
    `student_epochs`, or `epochs` when that is 0."""
    return train_cfg.get("student_epochs", 0) or train_cfg.epochs


def _first_state(model, tx, rng, size: int, input_shape, init) -> TrainState:
    """Fresh members (each from its own key), or `init`'s variables with a new
    optimizer state."""
    if init is None:
        return init_state(model, tx, jax.random.fold_in(rng, 10_000), size, input_shape)
    # A fresh, uncommitted copy: the step donates its state, and committed
    # arrays (an Orbax restore) would make it compile twice.
    init = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a)), init)
    return TrainState(
        params=init["params"],
        batch_stats=init.get("batch_stats", {}),
        opt_state=jax.vmap(tx.init)(init["params"]),
    )


def _check_finite(loss, desc: str, steps: tuple[int, int], epoch: int, manager) -> None:
    """Stops a diverging run with the steps and members that diverged, and says
    whether a good checkpoint is left."""
    if np.all(np.isfinite(loss)):
        return
    bad = [int(i) for i in np.flatnonzero(~np.isfinite(loss))]
    kept = manager.latest_step() if manager is not None else None
    raise NonFiniteLossError(
        f"{desc}: non-finite loss at steps {steps[0]}-{steps[1]} "
        f"(epoch {epoch + 1}), members {bad}; "
        + (
            f"the last good checkpoint (epoch {kept}) is kept"
            if kept is not None
            else "no checkpoint was written"
        )
    )


def train_group(
    model,
    x_N,
    targets,
    *,
    size: int,
    cfg,
    epochs: int,
    rng,
    ckpt_dir: str | None = None,
    strategy=None,
    temperature: float = 1.0,
    init=None,
    trainable=None,
    subsets=None,
    desc: str = "train",
) -> dict:
    """Trains `size` members of one architecture; returns their stacked variables.

    `targets` is [N, K], shared, or [size, N, K], one set per member (variants
    of a sweep that differ only in their labels). `subsets` ([size, n] indices
    into x_N, or None for all of it) gives each member its own part of the
    data. `trainable` masks what may change (see `expand_mask`; None: all).
    Resumes from the newest checkpoint in `ckpt_dir` when there is one, else
    starts from `init` (stacked variables, e.g. a copy of the source for
    fine-tuning) or from scratch. Every member m draws its init, data order and
    augmentation from `fold_in(rng, m)`.
    """
    x_N = jnp.asarray(x_N)
    targets = jnp.asarray(targets, jnp.float32)
    if targets.ndim == 3 and targets.shape[0] != size:
        raise ValueError(f"{desc}: targets for {targets.shape[0]} members, the group has {size}")
    n = x_N.shape[0] if subsets is None else np.shape(subsets)[1]
    chunks, chunk_len = plan_chunks(n, cfg.batch_size, cfg.chunk_steps)
    tx = make_optimizer(cfg, chunks * chunk_len, epochs)
    member_keys = jax.vmap(lambda m: jax.random.fold_in(rng, m))(jnp.arange(size))
    state = _first_state(model, tx, rng, size, x_N.shape[1:], init)
    mask = None if trainable is None else expand_mask(trainable, variables_of(state))
    manager = _checkpoint_manager(ckpt_dir) if ckpt_dir else None
    start = 0
    if manager is not None and manager.latest_step() is not None:
        start = manager.latest_step()
        state = manager.restore(start, args=ocp.args.StandardRestore(state))
        progress.log(f"{desc}: resuming from the checkpoint of epoch {start}/{epochs}")
    # Split over the devices before the first step: the step's outputs are split
    # too, so its inputs keep one sharding and it compiles once.
    state = sharding.place_members(state)
    chunk = make_chunk_fn(
        model, tx, cfg, strategy=strategy, temperature=temperature, loop=cfg.get("loop")
    )
    if member_by_member(strategy):
        chunk = functools.partial(_chunk_each_member, chunk)
    bar = progress.Bar(desc, total=(epochs - start) * chunks, unit="chunk")
    last_save = time.time()
    for epoch in range(start, epochs):
        epoch_keys = jax.vmap(jax.random.fold_in, (0, None))(member_keys, epoch)
        perm = _permutations(epoch_keys, n)
        if subsets is not None:
            perm = jnp.take_along_axis(jnp.asarray(subsets), perm, axis=1)
        for c in range(chunks):
            state, metrics = chunk(
                state,
                x_N,
                targets,
                perm,
                epoch_keys,
                epoch * chunks * chunk_len + c * chunk_len,
                chunk_len,
                mask,
            )
            metrics = sharding.to_host(metrics)
            loss = metrics["loss"]
            first = epoch * chunks * chunk_len + c * chunk_len
            _check_finite(loss, desc, (first + 1, first + chunk_len), epoch, manager)
            faults.point("train_chunk")
            bar.update(
                1,
                f"epoch {epoch + 1}/{epochs} loss {loss.mean():.3f} "
                f"acc {metrics['accuracy'].mean():.3f}",
            )
        # Save at most every `checkpoint_seconds` (and after the last epoch, which
        # the caller saves as final variables): on small data an epoch takes less
        # time than writing its checkpoint.
        due = time.time() - last_save >= cfg.get("checkpoint_seconds", 0.0) or epoch + 1 == epochs
        if manager is not None and due:
            manager.save(epoch + 1, args=ocp.args.StandardSave(state))
            manager.wait_until_finished()
            last_save = time.time()
    bar.close()
    return variables_of(state)


@functools.partial(jax.jit, static_argnames=("model", "strategy"))
def _logits_chunk(variables, x, *, model, strategy):
    return ensemble.apply_members(model, variables, x, strategy=strategy)


def predict_logits(model, variables, x, *, batch_size: int = 512, strategy=None) -> np.ndarray:
    """Inference logits of every member on x, [M, N, K], evaluated in batches."""
    strategy = ensemble.resolve_strategy(strategy)
    if len(x) == 0:
        k = jax.eval_shape(
            lambda v: ensemble.apply_members(model, v, jnp.zeros((1, *x.shape[1:]))), variables
        )
        return np.zeros((ensemble.num_members(variables), 0, k.shape[-1]), np.float32)
    out = []
    for i in range(0, len(x), batch_size):
        xb = np.asarray(x[i : i + batch_size])
        pad = batch_size - len(xb) if len(x) > batch_size else 0
        if pad:  # one compiled shape for every batch
            xb = np.concatenate([xb, np.repeat(xb[-1:], pad, 0)])
        out.append(
            sharding.to_host(_logits_chunk(variables, xb, model=model, strategy=strategy))[
                :, : batch_size - pad
            ]
        )
    return np.concatenate(out, axis=1)


def accuracies(model, variables, x, y, **kwargs) -> np.ndarray:
    """Test accuracy of each member, [M]."""
    logits = predict_logits(model, variables, x, **kwargs)
    return (logits.argmax(-1) == np.asarray(y)[None]).mean(-1)
