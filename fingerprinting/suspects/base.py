"""The suspect interface: `Suspect` (anything that maps 8-bit NHWC pixels to
labels), `SuspectError`, the pixel formats, and the validation of every answer."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from fingerprinting import errors
from fingerprinting import progress


# The input formats live in `input_format` (white-box sources use them too).
from fingerprinting.input_format import LAYOUTS  # noqa: F401
from fingerprinting.input_format import PIXELS  # noqa: F401
from fingerprinting.input_format import InputFormat


SuspectError = errors.SuspectError  # every suspect kind raises it


def printable(text: str, limit: int = 200) -> str:
    """Text from a suspect, safe to echo: at most `limit` characters, each
    non-printable one (a terminal escape, a line break) written as an escape,
    so that a server cannot redraw the terminal or forge a line of output."""
    clipped = text[:limit] + ("..." if len(text) > limit else "")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in clipped)


@dataclasses.dataclass
class Suspect:
    name: str
    protocol: str
    fn: Callable[[np.ndarray], np.ndarray]
    num_classes: int | None = None
    input_shape: tuple[int, ...] | None = None
    batch_size: int = 256
    # requests: batches answered; retries: requests repeated after a failure (HTTP).
    counters: dict = dataclasses.field(default_factory=lambda: {"requests": 0, "retries": 0})

    def predict(self, x_uint8, *, batch_size: int | None = None) -> np.ndarray:
        """Labels for every input, asked `batch_size` inputs at a time."""
        bs = batch_size or self.batch_size
        out = []
        with progress.Bar(f"query {self.name}", total=len(x_uint8), unit="inputs") as bar:
            for i in range(0, len(x_uint8), bs):
                xb = x_uint8[i : i + bs]
                out.append(answers_to_labels(self.fn(xb), len(xb), self.num_classes, self.name))
                self.counters["requests"] += 1
                bar.update(len(xb), f"{self.counters['requests']} requests")
        return np.concatenate(out) if out else np.zeros((0,), np.int64)


def check_fits(suspect: Suspect, num_classes: int, input_shape, what: str) -> None:
    """Refuses a suspect that declares another class count or input shape than
    `what` (the fingerprint, the data) has."""
    if suspect.num_classes is not None and suspect.num_classes != num_classes:
        raise SuspectError(
            f"{suspect.name} predicts {suspect.num_classes} classes; {what} has {num_classes}"
        )
    if suspect.input_shape is not None and tuple(suspect.input_shape) != tuple(input_shape):
        raise SuspectError(
            f"{suspect.name} takes inputs of shape {tuple(suspect.input_shape)}; {what}'s are "
            f"{tuple(input_shape)}"
        )


def to_pixels(x_uint8, pixels) -> np.ndarray:
    """What a callable or an API receives: uint8 as is, float32 in [0, 1], or
    whatever an `InputFormat` makes of them."""
    fmt = as_format(pixels)
    if np.ndim(x_uint8) != 4:  # no batch (a check before any query): the format is valid
        return np.asarray(x_uint8)
    return fmt.prepare(x_uint8)


def as_format(pixels) -> InputFormat:
    """An `InputFormat`, given one or the name of a pixel format."""
    return pixels if isinstance(pixels, InputFormat) else InputFormat(pixels=pixels)


def answers_to_labels(answer, n: int, num_classes: int | None, name: str) -> np.ndarray:
    """Labels from a suspect's answer (labels or scores), validated."""
    try:
        a = np.asarray(answer)
    except Exception as e:  # noqa: BLE001 (any garbage a callable returns)
        raise SuspectError(f"{name}: answer is not an array ({e})") from None
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise SuspectError(f"{name}: answer is not numeric (dtype {a.dtype})")
    if a.ndim == 2 and a.shape[1] == 1:  # a column of labels, as servers often shape them
        a = a[:, 0]
    if a.ndim == 2:
        if not np.all(np.isfinite(a)):
            raise SuspectError(f"{name}: scores contain NaN or infinity")
        if num_classes is not None and a.shape[1] != num_classes:
            raise SuspectError(
                f"{name}: {a.shape[1]} scores per input, the fingerprint has {num_classes} classes"
            )
        a = a.argmax(-1)
    elif a.ndim != 1:
        raise SuspectError(
            f"{name}: answer of shape {a.shape}; expected labels [N] or scores [N, K]"
        )
    if len(a) != n:
        raise SuspectError(f"{name}: {len(a)} answers for {n} inputs")
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        raise SuspectError(f"{name}: labels contain NaN or infinity")
    if np.issubdtype(a.dtype, np.floating) and not np.all(a == np.round(a)):
        raise SuspectError(f"{name}: labels are not integers")
    a = a.astype(np.int64)
    if num_classes is not None and (a.min(initial=0) < 0 or a.max(initial=0) >= num_classes):
        raise SuspectError(f"{name}: labels out of range 0..{num_classes - 1}")
    return a
