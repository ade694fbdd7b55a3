"""Small classifiers sized for CPU-only experiments (MNIST-scale, 2 cores).

Four deliberately different families so that fingerprint transfer is tested
across architectures, not just across seeds:
`cnn_small` (3x3 stride-2 convs 16/32, flatten, Dense 128; no BatchNorm),
`cnn_pool` (three 3x3 convs 32/32/64, each followed by a 2x2 max-pool, flatten,
Dense 64; the digits config keeps it out of the defender's zoo as the thief's
own design),
`cnn_medium` (3x3 convs 32/64/64 with BatchNorm, strides 2/2/1, global average
pooling), `cnn_wide` (5x5 convs 64/128 with max-pools, flatten, linear head; no
BatchNorm) and `mlp` (flatten, two ReLU hidden layers of 256). Downsampling is
mostly done by strided convs: on XLA:CPU full-resolution convs followed by
pooling cost several times more per step. The flattening models have a
parameter count that depends on the input size (fixed by `init`).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from fingerprinting.models._layers import (
    Dtype,
    batch_norm,
    classifier_head,
    conv_init,
    down_strides,
    global_avg_pool,
    max_pool_if_possible,
    normalize,
)


def _flatten(x: jnp.ndarray) -> jnp.ndarray:
    return x.reshape(x.shape[0], -1)


class CNNSmall(nn.Module):
    """Classic MNIST-style CNN; flattening keeps the spatial layout for the dense layer."""

    num_classes: int
    features: tuple[int, ...] = (16, 32)
    hidden: int = 128
    pixel_mean: float = 0.5
    pixel_std: float = 0.25
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        del train  # No BatchNorm / dropout: train and eval are identical.
        x = normalize(x, self.pixel_mean, self.pixel_std, self.dtype)
        for features in self.features:
            x = nn.Conv(
                features,
                (3, 3),
                down_strides(x),
                padding="SAME",
                kernel_init=conv_init,
                dtype=self.dtype,
            )(x)
            x = nn.relu(x)
        x = nn.relu(nn.Dense(self.hidden, kernel_init=conv_init, dtype=self.dtype)(_flatten(x)))
        return classifier_head(x, self.num_classes, self.dtype)


class CNNMedium(nn.Module):
    """Three Conv-BN-ReLU layers and global average pooling (input-size independent)."""

    num_classes: int
    features: tuple[int, ...] = (32, 64, 64)
    strides: tuple[int, ...] = (2, 2, 1)
    pixel_mean: float = 0.5
    pixel_std: float = 0.25
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        x = normalize(x, self.pixel_mean, self.pixel_std, self.dtype)
        for features, stride in zip(self.features, self.strides, strict=True):
            strides = down_strides(x) if stride == 2 else (1, 1)
            x = nn.Conv(
                features,
                (3, 3),
                strides,
                padding="SAME",
                use_bias=False,
                kernel_init=conv_init,
                dtype=self.dtype,
            )(x)
            x = nn.relu(batch_norm(train, self.dtype)(x))
        x = global_avg_pool(x)
        return classifier_head(x, self.num_classes, self.dtype)


class CNNWide(nn.Module):
    """Two wide 5x5 conv layers, no normalization layers, linear head on the flat map.

    The first conv has stride 2: a full-resolution 5x5x64 conv on 28x28 inputs
    alone would dominate the CPU step time.
    """

    num_classes: int
    features: tuple[int, int] = (64, 128)
    kernel_size: int = 5
    pixel_mean: float = 0.5
    pixel_std: float = 0.25
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        del train
        x = normalize(x, self.pixel_mean, self.pixel_std, self.dtype)
        k = (self.kernel_size, self.kernel_size)
        for i, features in enumerate(self.features):
            strides = down_strides(x) if i == 0 else (1, 1)
            x = nn.Conv(
                features, k, strides, padding="SAME", kernel_init=conv_init, dtype=self.dtype
            )(x)
            x = max_pool_if_possible(nn.relu(x))
        return classifier_head(_flatten(x), self.num_classes, self.dtype)


class CNNPool(nn.Module):
    """A thief's own design: three 3x3 conv + 2x2 max-pool stages, no
    normalization layers, a small dense layer. The digits config keeps it out of
    the defender's zoo, so that the fingerprint must transfer to an architecture
    the defender never saw; Fashion-MNIST's zoo has it (its unseen family is
    `cnn_wide`)."""

    num_classes: int
    features: tuple[int, ...] = (32, 32, 64)
    hidden: int = 64
    pixel_mean: float = 0.5
    pixel_std: float = 0.25
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        del train
        x = normalize(x, self.pixel_mean, self.pixel_std, self.dtype)
        for features in self.features:
            x = nn.Conv(features, (3, 3), padding="SAME", kernel_init=conv_init, dtype=self.dtype)(
                x
            )
            x = max_pool_if_possible(nn.relu(x))
        x = nn.relu(nn.Dense(self.hidden, kernel_init=conv_init, dtype=self.dtype)(_flatten(x)))
        return classifier_head(x, self.num_classes, self.dtype)


class MLP(nn.Module):
    """Fully connected baseline on raw (normalized) pixels."""

    num_classes: int
    hidden: tuple[int, ...] = (256, 256)
    pixel_mean: float = 0.5
    pixel_std: float = 0.25
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        del train
        x = _flatten(normalize(x, self.pixel_mean, self.pixel_std, self.dtype))
        for width in self.hidden:
            x = nn.relu(nn.Dense(width, kernel_init=conv_init, dtype=self.dtype)(x))
        return classifier_head(x, self.num_classes, self.dtype)


def cnn_small(num_classes: int, **kwargs) -> CNNSmall:
    return CNNSmall(num_classes=num_classes, **kwargs)


def cnn_medium(num_classes: int, **kwargs) -> CNNMedium:
    return CNNMedium(num_classes=num_classes, **kwargs)


def cnn_pool(num_classes: int, **kwargs) -> CNNPool:
    return CNNPool(num_classes=num_classes, **kwargs)


def cnn_wide(num_classes: int, **kwargs) -> CNNWide:
    return CNNWide(num_classes=num_classes, **kwargs)


def mlp(num_classes: int, **kwargs) -> MLP:
    return MLP(num_classes=num_classes, **kwargs)
