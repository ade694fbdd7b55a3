"""Building blocks shared by every classifier family in `fingerprinting.models`.

Owns the conventions the rest of the codebase relies on: in-model pixel
normalization (so attacks operate on raw [0, 1] pixels), the BatchNorm settings
(`momentum=0.9`, statistics in `batch_stats`), the He initialiser used for
ReLU networks, and size-aware downsampling that is skipped once a spatial dim
has reached 1 so every model also runs on tiny (8x8) inputs.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any

# He (fan-in) init keeps activation variance stable through ReLU stacks; the
# flax default (LeCun) under-scales deep ReLU nets trained from scratch.
conv_init = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")


def normalize(x: jnp.ndarray, mean: float, std: float, dtype: Dtype) -> jnp.ndarray:
    """Map [0, 1] pixels to the network's input scale; first op of every model."""
    x = jnp.asarray(x, jnp.float32)
    return ((x - mean) / std).astype(dtype)


def batch_norm(train: bool, dtype: Dtype, name: str | None = None) -> nn.BatchNorm:
    return nn.BatchNorm(
        use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name
    )


def down_strides(x: jnp.ndarray, factor: int = 2) -> tuple[int, int]:
    """Per-dim downsampling factor, 1 where the dim is already too small.

    A dim is only reduced while it is >= `factor`, so on small inputs the late
    downsampling stages degrade gracefully to stride 1 instead of failing.
    """
    _, h, w, _ = x.shape
    return (factor if h >= factor else 1, factor if w >= factor else 1)


def _pool_2x2_if_possible(x: jnp.ndarray, reduce_fn) -> jnp.ndarray:
    # Written as reshape + reduce instead of `nn.max_pool` / `nn.avg_pool`: the
    # gradient of XLA's reduce_window (select-and-scatter for max) is several
    # times slower on CPU, where the small models train.
    sh, sw = down_strides(x)
    if (sh, sw) == (1, 1):
        return x
    b, h, w, c = x.shape
    x = x[:, : h - h % sh, : w - w % sw, :]
    return reduce_fn(x.reshape(b, h // sh, sh, w // sw, sw, c), axis=(2, 4))


def max_pool_if_possible(x: jnp.ndarray) -> jnp.ndarray:
    """2x2 max-pool, stride 2, VALID (floor on odd sizes); skipped per dim once it is < 2."""
    return _pool_2x2_if_possible(x, jnp.max)


def avg_pool_if_possible(x: jnp.ndarray) -> jnp.ndarray:
    """2x2 average-pool, stride 2, VALID (floor on odd sizes); skipped per dim once it is < 2."""
    return _pool_2x2_if_possible(x, jnp.mean)


def global_avg_pool(x: jnp.ndarray) -> jnp.ndarray:
    # Reduce in float32 so low-precision compute dtypes do not lose the mean.
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(x.dtype)


def classifier_head(x: jnp.ndarray, num_classes: int, dtype: Dtype) -> jnp.ndarray:
    """The last layer of every model; removal attacks target `params["head"]`."""
    logits = nn.Dense(num_classes, dtype=dtype, name="head")(x)
    return logits.astype(jnp.float32)
