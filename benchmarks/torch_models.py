"""PyTorch twins of the Flax ResNet-20 and cnn_small, for the benchmark's ratios.

Each matches its `fingerprinting.models` counterpart layer for layer: the same
pixel normalization, convolutions with the same TensorFlow-style "SAME"
padding (asymmetric on stride-2 layers), BatchNorm with the same momentum and
epsilon, option-A shortcuts, and the same head. `load_flax` copies one member
of a Flax model's variables into the twin, so the benchmark can check that
both compute the same logits before it times them. Inputs are NCHW, as
PyTorch code would feed them; the benchmark converts its data once.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

PIXEL_MEAN, PIXEL_STD = 0.5, 0.25


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) of TensorFlow/XLA 'SAME' padding along one dimension."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _down_stride(size: int) -> int:
    return 2 if size >= 2 else 1  # fingerprinting.models._layers.down_strides


class SameConv2d(nn.Conv2d):
    """A square-kernel convolution with 'SAME' padding for the given input size."""

    def __init__(self, cin, cout, kernel, stride, size, bias):
        lo, hi = _same_padding(size, kernel, stride)
        symmetric = lo == hi
        super().__init__(cin, cout, kernel, stride, padding=lo if symmetric else 0, bias=bias)
        self.extra_pad = None if symmetric else (lo, hi, lo, hi)

    def forward(self, x):
        if self.extra_pad is not None:
            x = F.pad(x, self.extra_pad)
        return super().forward(x)


def _batch_norm(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)  # Flax momentum 0.9 = PyTorch 0.1


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, downsample: bool, size: int):
        super().__init__()
        self.stride = _down_stride(size) if downsample else 1
        self.conv0 = SameConv2d(cin, cout, 3, self.stride, size, bias=False)
        self.bn0 = _batch_norm(cout)
        self.conv1 = SameConv2d(cout, cout, 3, 1, -(-size // self.stride), bias=False)
        self.bn1 = _batch_norm(cout)
        missing = cout - cin
        self.pad = (0, 0, 0, 0, missing // 2, missing - missing // 2)

    def forward(self, x):
        y = F.relu(self.bn0(self.conv0(x)))
        y = self.bn1(self.conv1(y))
        shortcut = x[:, :, :: self.stride, :: self.stride]
        if any(self.pad):
            shortcut = F.pad(shortcut, self.pad)  # option A: zero channels
        return F.relu(y + shortcut)


class ResNet20(nn.Module):
    def __init__(self, num_classes: int = 10, channels: int = 3, size: int = 32):
        super().__init__()
        self.stem = SameConv2d(channels, 16, 3, 1, size, bias=False)
        self.stem_bn = _batch_norm(16)
        blocks, cin = [], 16
        for stage, cout in enumerate((16, 32, 64)):
            for block in range(3):
                down = stage > 0 and block == 0
                blocks.append(BasicBlock(cin, cout, down, size))
                size = -(-size // blocks[-1].stride)
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(64, num_classes)

    def forward(self, x):
        x = (x - PIXEL_MEAN) / PIXEL_STD
        x = F.relu(self.stem_bn(self.stem(x)))
        x = self.blocks(x)
        return self.head(x.mean((2, 3)))


class CNNSmall(nn.Module):
    def __init__(self, num_classes: int = 10, channels: int = 1, size: int = 28):
        super().__init__()
        convs = []
        for cin, cout in ((channels, 16), (16, 32)):
            stride = _down_stride(size)
            convs.append(SameConv2d(cin, cout, 3, stride, size, bias=True))
            size = -(-size // stride)
        self.convs = nn.ModuleList(convs)
        self.dense = nn.Linear(32 * size * size, 128)
        self.head = nn.Linear(128, num_classes)

    def forward(self, x):
        x = (x - PIXEL_MEAN) / PIXEL_STD
        for conv in self.convs:
            x = F.relu(conv(x))
        # Flattened channels-first; load_flax reorders the dense weights to match.
        return self.head(F.relu(self.dense(x.flatten(1))))


def build(arch: str, num_classes: int, input_shape) -> nn.Module:
    """The twin of `fingerprinting.models.get_model(arch)` for HxWxC inputs."""
    h, w, c = input_shape
    if h != w:
        raise ValueError(f"the PyTorch twins take square inputs, got {h}x{w}")
    if arch == "resnet20":
        return ResNet20(num_classes, c, h)
    if arch == "cnn_small":
        return CNNSmall(num_classes, c, h)
    raise ValueError(f"no PyTorch twin of {arch!r}; expected resnet20 or cnn_small")


def _tensor(a) -> torch.Tensor:
    return torch.from_numpy(np.array(a, np.float32))


def _load_conv(conv: nn.Conv2d, p) -> None:
    conv.weight.data = _tensor(p["kernel"]).permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW
    if conv.bias is not None:
        conv.bias.data = _tensor(p["bias"])


def _load_bn(bn: nn.BatchNorm2d, p, stats) -> None:
    bn.weight.data, bn.bias.data = _tensor(p["scale"]), _tensor(p["bias"])
    bn.running_mean.data, bn.running_var.data = _tensor(stats["mean"]), _tensor(stats["var"])


def _load_dense(dense: nn.Linear, p, kernel=None) -> None:
    dense.weight.data = _tensor(p["kernel"] if kernel is None else kernel).T.contiguous()
    dense.bias.data = _tensor(p["bias"])


def load_flax(model: nn.Module, variables) -> nn.Module:
    """Copies ONE member's Flax variables (no member axis) into the twin."""
    p, s = variables["params"], variables.get("batch_stats", {})
    if isinstance(model, ResNet20):
        _load_conv(model.stem, p["Conv_0"])
        _load_bn(model.stem_bn, p["BatchNorm_0"], s["BatchNorm_0"])
        for i, block in enumerate(model.blocks):
            bp, bs = p[f"BasicBlock_{i}"], s[f"BasicBlock_{i}"]
            _load_conv(block.conv0, bp["Conv_0"])
            _load_bn(block.bn0, bp["BatchNorm_0"], bs["BatchNorm_0"])
            _load_conv(block.conv1, bp["Conv_1"])
            _load_bn(block.bn1, bp["BatchNorm_1"], bs["BatchNorm_1"])
    elif isinstance(model, CNNSmall):
        for i, conv in enumerate(model.convs):
            _load_conv(conv, p[f"Conv_{i}"])
        c = model.convs[-1].out_channels
        kernel = np.asarray(p["Dense_0"]["kernel"])
        hw = kernel.shape[0] // c
        # Flax flattens H, W, C; the twin flattens C, H, W.
        kernel = kernel.reshape(hw, c, -1).transpose(1, 0, 2).reshape(hw * c, -1)
        _load_dense(model.dense, p["Dense_0"], kernel)
    else:
        raise TypeError(f"no Flax layout known for {type(model).__name__}")
    _load_dense(model.head, p["head"])
    return model
