"""CIFAR VGG16 and VGG19 with BatchNorm (Simonyan & Zisserman 2015, CIFAR variant).

Conv stacks 64-64-M-128-128-M-256x3(4)-M-512x3(4)-M-512x3(4)-M of 3x3
Conv-BN-ReLU layers (convs without bias, since BN supplies the shift), followed
by global average pooling and a single linear classifier, the `head` Dense on
512 features (the common CIFAR variant: at 32x32 the five pools leave 1x1, so
GAP equals flattening, and the ImageNet 4096-wide FC layers are dropped).
Max-pools are skipped once a spatial dim has reached 1, so 8x8 inputs work.
With 10 classes and 32x32x3 input: VGG16 = 14,724,042 and VGG19 = 20,035,018
trainable parameters (BatchNorm running stats excluded).
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
    global_avg_pool,
    max_pool_if_possible,
    normalize,
)

# "M" marks a 2x2 max-pool.
VGG_CONFIGS: dict[int, tuple[int | str, ...]] = {
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        512,
        "M",
    ),
}


class VGG(nn.Module):
    num_classes: int
    depth: int = 16
    # Optional layer list overriding `depth` (ints are conv widths, "M" pools);
    # lets tests exercise the same code with a few layers.
    config: tuple[int | str, ...] | None = None
    pixel_mean: float = 0.5
    pixel_std: float = 0.25
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        config = self.config
        if config is None:
            if self.depth not in VGG_CONFIGS:
                raise errors.ConfigError(
                    f"VGG depth must be one of {sorted(VGG_CONFIGS)}, got {self.depth}"
                )
            config = VGG_CONFIGS[self.depth]
        x = normalize(x, self.pixel_mean, self.pixel_std, self.dtype)
        for item in config:
            if item == "M":
                x = max_pool_if_possible(x)
            else:
                x = nn.Conv(
                    item,
                    (3, 3),
                    padding="SAME",
                    use_bias=False,
                    kernel_init=conv_init,
                    dtype=self.dtype,
                )(x)
                x = nn.relu(batch_norm(train, self.dtype)(x))
        x = global_avg_pool(x)
        return classifier_head(x, self.num_classes, self.dtype)


def vgg16(num_classes: int, **kwargs) -> VGG:
    return VGG(num_classes=num_classes, depth=16, **kwargs)


def vgg19(num_classes: int, **kwargs) -> VGG:
    return VGG(num_classes=num_classes, depth=19, **kwargs)
