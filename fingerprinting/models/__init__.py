"""Classifier architectures for fingerprinting experiments, looked up by name.

Owns the model registry. Every model follows the same contract, which training,
attack and removal code rely on: `__call__(x, train=False)` takes float32 NHWC
pixels in [0, 1] (any H, W >= 8, any channel count), normalizes them inside the
model with `(x - pixel_mean) / pixel_std` (0.5 / 0.25) so attacks work in pixel
space, uses `nn.BatchNorm(momentum=0.9)` with statistics in `batch_stats` (if
any; no dropout, so apply needs no rng), and ends in `nn.Dense(num_classes,
name="head")` whose float32 output is the logits.

Trainable parameter counts with 10 classes (32x32x3 input for the paper
models, 28x28x1 for the CPU models; the flattening ones depend on input size):

    resnet20        269,722   CIFAR ResNet-20, option-A (parameter-free) shortcuts
    resnet56        853,018   CIFAR ResNet-56, option-A (parameter-free) shortcuts
    densenet        769,162   DenseNet-BC, depth 100, k = 12, compression 0.5
    vgg16        14,724,042   VGG16-BN, GAP + single linear classifier
    vgg19        20,035,018   VGG19-BN, GAP + single linear classifier
    mobilenetv2   2,236,682   MobileNetV2, CIFAR strides (stem and stage 2 stride 1)
    cnn_small       206,922   2 strided 3x3 convs 16/32, Dense 128 (flattens)
    cnn_medium       56,554   3 3x3 Conv-BN 32/64/64, GAP
    cnn_wide        218,122   2 5x5 convs 64/128 + max-pools, no BN (flattens)
    cnn_pool         65,642   3 3x3 convs 32/32/64, each + max-pool, Dense 64 (flattens)
    mlp             269,322   Dense 256-256 on flattened pixels
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn

from fingerprinting import errors
from fingerprinting.models.densenet import DenseNet, densenet
from fingerprinting.models.mobilenet import MobileNetV2, mobilenetv2
from fingerprinting.models.resnet import ResNet, resnet20, resnet56
from fingerprinting.models.small import (
    MLP,
    CNNMedium,
    CNNPool,
    CNNSmall,
    CNNWide,
    cnn_medium,
    cnn_pool,
    cnn_small,
    cnn_wide,
    mlp,
)
from fingerprinting.models.vgg import VGG, vgg16, vgg19

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "resnet20": resnet20,
    "resnet56": resnet56,
    "densenet": densenet,
    "vgg16": vgg16,
    "vgg19": vgg19,
    "mobilenetv2": mobilenetv2,
    "cnn_small": cnn_small,
    "cnn_medium": cnn_medium,
    "cnn_wide": cnn_wide,
    "cnn_pool": cnn_pool,
    "mlp": mlp,
}

PAPER_ARCHITECTURES: tuple[str, ...] = (
    "resnet20",
    "resnet56",
    "densenet",
    "vgg16",
    "vgg19",
    "mobilenetv2",
)
CPU_ARCHITECTURES: tuple[str, ...] = ("cnn_small", "cnn_medium", "cnn_wide", "cnn_pool", "mlp")
ARCHITECTURES: tuple[str, ...] = PAPER_ARCHITECTURES + CPU_ARCHITECTURES


def get_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Build the (unbound) Flax module `name`; kwargs override module attributes, e.g. dtype."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise errors.ConfigError(
            f"Unknown architecture {name!r}; known architectures: {', '.join(ARCHITECTURES)}"
        ) from None
    return factory(num_classes, **kwargs)


__all__ = [
    "ARCHITECTURES",
    "CPU_ARCHITECTURES",
    "PAPER_ARCHITECTURES",
    "get_model",
    "ResNet",
    "DenseNet",
    "VGG",
    "MobileNetV2",
    "CNNSmall",
    "CNNMedium",
    "CNNWide",
    "CNNPool",
    "MLP",
]
