"""CIFAR ResNets (He et al. 2016, Sec. 4.2): ResNet-20 and ResNet-56.

Three stages of 16/32/64 channels with n = (depth - 2) / 6 basic blocks each
(n = 3 for ResNet-20, n = 9 for ResNet-56), a 3x3 stem conv, global average
pooling and the `head` Dense. Shortcuts use **option A** of the paper: identity
where shapes match, and otherwise a parameter-free shortcut that subsamples
spatially by 2 and zero-pads the missing channels. Parameter counts with 10
classes (trainable params only; BatchNorm running stats are not counted):
ResNet-20 = 269,722, ResNet-56 = 853,018 (32x32x3 input).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from fingerprinting import errors
from fingerprinting.models._layers import (
    Dtype,
    batch_norm,
    classifier_head,
    conv_init,
    down_strides,
    global_avg_pool,
    normalize,
)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an option-A shortcut."""

    features: int
    downsample: bool
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        strides = down_strides(x) if self.downsample else (1, 1)
        y = nn.Conv(
            self.features,
            (3, 3),
            strides,
            padding="SAME",
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
        )(x)
        y = nn.relu(batch_norm(train, self.dtype)(y))
        y = nn.Conv(
            self.features,
            (3, 3),
            padding="SAME",
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
        )(y)
        y = batch_norm(train, self.dtype)(y)

        shortcut = x[:, :: strides[0], :: strides[1], :]
        missing = self.features - x.shape[-1]
        if missing > 0:
            # Option A: pad the new channels symmetrically with zeros, as in the
            # original CIFAR ResNet, so the shortcut stays parameter-free.
            shortcut = jnp.pad(
                shortcut, ((0, 0), (0, 0), (0, 0), (missing // 2, missing - missing // 2))
            )
        return nn.relu(y + shortcut)


class ResNet(nn.Module):
    """CIFAR ResNet of depth 6n + 2 with option-A shortcuts."""

    num_classes: int
    depth: int = 20
    stage_features: tuple[int, ...] = (16, 32, 64)
    pixel_mean: float = 0.5
    pixel_std: float = 0.25
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        if (self.depth - 2) % 6 != 0:
            raise errors.ConfigError(f"CIFAR ResNet depth must be 6n + 2, got {self.depth}")
        blocks_per_stage = (self.depth - 2) // 6

        x = normalize(x, self.pixel_mean, self.pixel_std, self.dtype)
        x = nn.Conv(
            self.stage_features[0],
            (3, 3),
            padding="SAME",
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
        )(x)
        x = nn.relu(batch_norm(train, self.dtype)(x))
        for stage, features in enumerate(self.stage_features):
            for block in range(blocks_per_stage):
                x = BasicBlock(features, downsample=(stage > 0 and block == 0), dtype=self.dtype)(
                    x, train
                )
        x = global_avg_pool(x)
        return classifier_head(x, self.num_classes, self.dtype)


def resnet20(num_classes: int, **kwargs) -> ResNet:
    return ResNet(num_classes=num_classes, depth=20, **kwargs)


def resnet56(num_classes: int, **kwargs) -> ResNet:
    return ResNet(num_classes=num_classes, depth=56, **kwargs)
