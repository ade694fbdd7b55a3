"""MobileNetV2 (Sandler et al. 2018), CIFAR variant for 32x32 inputs.

Inverted-residual blocks (1x1 expand-BN-ReLU6, 3x3 depthwise-BN-ReLU6, 1x1
project-BN) with the paper's (t, c, n, s) table, adapted for 32x32 as in the
usual CIFAR ports: the stem conv (32 channels) has stride 1 and the second
stage (24 channels) stride 1 instead of 2, so only three stride-2 stages remain
(32 -> 16 -> 8 -> 4). Residuals are identity-only, used when stride is 1 and
channels match (no projection shortcuts, unlike some CIFAR ports). Then a 1x1
conv to 1280, global average pooling and the `head` Dense. With 10 classes and
32x32x3 input it has 2,236,682 trainable parameters (BatchNorm running stats excluded).
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
    normalize,
)

# (expansion t, output channels c, repeats n, first stride s); the second row's
# stride is 1 (ImageNet: 2) so 32x32 inputs still end at a 4x4 feature map.
CIFAR_CONFIG: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    features: int
    expansion: int
    stride: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        in_features = x.shape[-1]
        strides = down_strides(x) if self.stride == 2 else (1, 1)
        hidden = in_features * self.expansion

        y = x
        if self.expansion != 1:
            y = nn.Conv(hidden, (1, 1), use_bias=False, kernel_init=conv_init, dtype=self.dtype)(y)
            y = nn.relu6(batch_norm(train, self.dtype)(y))
        y = nn.Conv(
            hidden,
            (3, 3),
            strides,
            padding="SAME",
            feature_group_count=hidden,
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
        )(y)
        y = nn.relu6(batch_norm(train, self.dtype)(y))
        # Linear bottleneck: no activation after the projection.
        y = nn.Conv(self.features, (1, 1), use_bias=False, kernel_init=conv_init, dtype=self.dtype)(
            y
        )
        y = batch_norm(train, self.dtype)(y)

        # The residual is decided by the block's nominal stride so the parameter
        # structure does not depend on the input size.
        if self.stride == 1 and in_features == self.features:
            y = y + x
        return y


class MobileNetV2(nn.Module):
    num_classes: int
    width_multiplier: float = 1.0
    block_config: tuple[tuple[int, int, int, int], ...] = CIFAR_CONFIG
    last_features: int = 1280
    pixel_mean: float = 0.5
    pixel_std: float = 0.25
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        def width(c: int) -> int:
            return max(8, int(round(c * self.width_multiplier)))

        x = normalize(x, self.pixel_mean, self.pixel_std, self.dtype)
        x = nn.Conv(
            width(32),
            (3, 3),
            padding="SAME",
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
        )(x)
        x = nn.relu6(batch_norm(train, self.dtype)(x))
        for expansion, features, repeats, stride in self.block_config:
            for i in range(repeats):
                x = InvertedResidual(
                    width(features), expansion, stride if i == 0 else 1, dtype=self.dtype
                )(x, train)
        # As in the paper, the last conv is never narrowed below its nominal width.
        last = max(self.last_features, width(self.last_features))
        x = nn.Conv(last, (1, 1), use_bias=False, kernel_init=conv_init, dtype=self.dtype)(x)
        x = nn.relu6(batch_norm(train, self.dtype)(x))
        x = global_avg_pool(x)
        return classifier_head(x, self.num_classes, self.dtype)


def mobilenetv2(num_classes: int, **kwargs) -> MobileNetV2:
    return MobileNetV2(num_classes=num_classes, **kwargs)
