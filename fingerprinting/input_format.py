"""What a model expects to receive, and how a spec says it.

The fingerprint stores 8-bit NHWC pixels, what a deployed model receives. A
model made elsewhere may want them otherwise: as floats in [0, 1], channels
first (PyTorch's NCHW), normalised by a mean and a standard deviation.
`InputFormat` says which and makes the batch, from uint8 pixels for a suspect
(`prepare`) or, differentiably, from float pixels for a white-box source
(`prepare_float`). A spec may carry the format after it, as flags
(`model.onnx --layout=nchw --mean=0.5 --std=0.25`): `parse_line`.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from fingerprinting import config as config_lib
from fingerprinting import errors

PIXELS = ("uint8", "float")
LAYOUTS = ("nhwc", "nchw")
SuspectError = errors.SuspectError


@dataclasses.dataclass(frozen=True)
class InputFormat:
    """What a suspect expects to receive, made from the 8-bit NHWC pixels the
    fingerprint stores: `pixels` uint8 (0..255) or float (float32 in [0, 1]);
    `layout` nhwc or nchw (PyTorch's); `mean` and `std`, one value or one per
    channel, on the [0, 1] scale (torchvision's convention), normalise the float
    pixels as (x - mean) / std. Normalising implies float pixels."""

    pixels: str = "uint8"
    layout: str = "nhwc"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self):
        if self.pixels not in PIXELS:
            raise SuspectError(
                f"unknown pixel format {self.pixels!r}; expected {' or '.join(PIXELS)}"
            )
        if self.layout not in LAYOUTS:
            raise SuspectError(f"unknown layout {self.layout!r}; expected {' or '.join(LAYOUTS)}")
        if any(not np.isfinite(v) for v in (*self.mean, *self.std)):
            raise SuspectError("--mean and --std must be finite numbers")
        if any(v <= 0 for v in self.std):
            raise SuspectError(f"--std must be positive, got {list(self.std)}")

    @property
    def normalised(self) -> bool:
        return bool(self.mean or self.std)

    @property
    def is_default(self) -> bool:
        return self == InputFormat()

    def _per_channel(self, values: tuple[float, ...], c: int, what: str, default: float):
        if not values:
            return np.full((c,), default, np.float32)
        if len(values) not in (1, c):
            raise SuspectError(f"--{what} has {len(values)} values; the inputs have {c} channels")
        return np.broadcast_to(np.asarray(values, np.float32), (c,))

    def _normalise(self, x01_NxHxWxC):
        """(x - mean) / std per channel, on float pixels in [0, 1] (numpy or jnp)."""
        c = x01_NxHxWxC.shape[-1]
        mean = self._per_channel(self.mean, c, "mean", 0.0)
        std = self._per_channel(self.std, c, "std", 1.0)
        return (x01_NxHxWxC - mean) / std

    def _in_layout(self, x_NxHxWxC):
        return x_NxHxWxC.transpose(0, 3, 1, 2) if self.layout == "nchw" else x_NxHxWxC

    def prepare(self, x_uint8) -> np.ndarray:
        """The batch as the suspect wants it, from uint8 NHWC pixels."""
        x = np.asarray(x_uint8, np.uint8)
        if self.pixels == "float" or self.normalised:
            x = self._normalise(x.astype(np.float32) / 255.0)
        return np.ascontiguousarray(self._in_layout(x))

    def shape_of(self, input_shape_HxWxC) -> tuple[int, ...]:
        """One input's shape as the suspect receives it."""
        h, w, c = input_shape_HxWxC
        return (c, h, w) if self.layout == "nchw" else (h, w, c)

    def prepare_float(self, x_NxHxWxC):
        """The batch as the model wants it, from float pixels in [0, 1], in jnp:
        what a white-box source is given, so that gradients flow through it."""
        x = jnp.asarray(x_NxHxWxC, jnp.float32)
        if self.pixels == "uint8" and not self.normalised:
            return self._in_layout(x * 255.0)
        return self._in_layout(self._normalise(x))

    @classmethod
    def from_flags(cls, flags: dict) -> InputFormat:
        """The format that flags as strings name (`parse_line`'s), defaults elsewhere."""
        return cls(
            pixels=flags.get("pixels", "uint8"),
            layout=flags.get("layout", "nhwc"),
            mean=tuple(config_lib.parse_floats(flags.get("mean", ""))),
            std=tuple(config_lib.parse_floats(flags.get("std", ""))),
        )


LINE_FLAGS = ("pixels", "layout", "mean", "std")  # what a line may set for its suspect


@dataclasses.dataclass(frozen=True)
class Entry:
    spec: str
    flags: dict  # name -> value, of LINE_FLAGS


def parse_line(line: str, where: str) -> Entry:
    """A spec and the input-format flags after it (`where` names the line in errors)."""
    spec, *rest = line.split()
    flags = {}
    for token in rest:
        name, eq, value = token.removeprefix("--").partition("=")
        if not token.startswith("--") or not eq or name not in LINE_FLAGS:
            raise errors.ConfigError(
                f"{where}: {token!r} is not one of --{'=, --'.join(LINE_FLAGS)}= "
                "(a spec holding spaces is not supported)"
            )
        flags[name] = value
    return Entry(spec, flags)
