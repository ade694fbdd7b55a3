"""CIFAR DenseNet-BC (Huang et al. 2017): depth 100, growth rate k = 12, compression 0.5.

Structure: a 3x3 stem conv with 2k channels, then three dense blocks of
(depth - 4) / 6 = 16 bottleneck layers (BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k),
output concatenated to the input), separated by transitions
(BN-ReLU-Conv1x1 halving the channels, then 2x2 average pooling); a final
BN-ReLU, global average pooling and the `head` Dense on 342 features. With 10
classes and 32x32x3 input it has 769,162 trainable parameters (BatchNorm
running stats excluded).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from fingerprinting import errors
from fingerprinting.models._layers import (
    Dtype,
    avg_pool_if_possible,
    batch_norm,
    classifier_head,
    conv_init,
    global_avg_pool,
    normalize,
)


class Bottleneck(nn.Module):
    growth_rate: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        y = nn.relu(batch_norm(train, self.dtype)(x))
        y = nn.Conv(
            4 * self.growth_rate, (1, 1), use_bias=False, kernel_init=conv_init, dtype=self.dtype
        )(y)
        y = nn.relu(batch_norm(train, self.dtype)(y))
        y = nn.Conv(
            self.growth_rate,
            (3, 3),
            padding="SAME",
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
        )(y)
        return jnp.concatenate([x, y], axis=-1)


class Transition(nn.Module):
    features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        x = nn.relu(batch_norm(train, self.dtype)(x))
        x = nn.Conv(self.features, (1, 1), use_bias=False, kernel_init=conv_init, dtype=self.dtype)(
            x
        )
        return avg_pool_if_possible(x)


class DenseNet(nn.Module):
    """DenseNet-BC for 32x32 inputs (three dense blocks)."""

    num_classes: int
    depth: int = 100
    growth_rate: int = 12
    compression: float = 0.5
    pixel_mean: float = 0.5
    pixel_std: float = 0.25
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        if (self.depth - 4) % 6 != 0:
            raise errors.ConfigError(f"DenseNet-BC depth must be 6n + 4, got {self.depth}")
        layers_per_block = (self.depth - 4) // 6

        x = normalize(x, self.pixel_mean, self.pixel_std, self.dtype)
        x = nn.Conv(
            2 * self.growth_rate,
            (3, 3),
            padding="SAME",
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
        )(x)
        for block in range(3):
            for _ in range(layers_per_block):
                x = Bottleneck(self.growth_rate, dtype=self.dtype)(x, train)
            if block < 2:
                x = Transition(int(x.shape[-1] * self.compression), dtype=self.dtype)(x, train)
        x = nn.relu(batch_norm(train, self.dtype)(x))
        x = global_avg_pool(x)
        return classifier_head(x, self.num_classes, self.dtype)


def densenet(num_classes: int, **kwargs) -> DenseNet:
    return DenseNet(num_classes=num_classes, **kwargs)
