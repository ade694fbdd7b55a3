"""Suspects: models the verifier can only query for labels.

A suspect is anything with `predict(x_uint8_NxHxWxC) -> labels [N]`. Specs:
- `WORKDIR/models/GROUP[/MEMBER]`: a model trained by this tool (member 0 by
  default), loaded from its Orbax checkpoint;
- `package.module:function`: a Python callable taking an NHWC batch and
  returning labels [N] or scores [N, K];
- `http://HOST:PORT/v1/models/NAME:predict` or `.../v2/models/NAME/infer`: a
  prediction API speaking TF-Serving / KServe V1 or the Open Inference
  Protocol (see `remote.py`).
Inputs are 8-bit pixels, what a deployed model receives: callables and APIs
get them as uint8 (0..255) or, with `pixels="float"`, as float32 in [0, 1].
Every answer is validated whole (`answers_to_labels`); a suspect that answers
garbage raises `SuspectError`, never yields a partial set of labels.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
from collections.abc import Callable

import numpy as np

from fingerprinting import ensemble
from fingerprinting import errors
from fingerprinting import files
from fingerprinting import models
from fingerprinting import progress
from fingerprinting import training
from fingerprinting import zoo as zoo_lib

PIXELS = ("uint8", "float")


SuspectError = errors.SuspectError  # raised here and by the HTTP client in `remote`


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


def to_pixels(x_uint8, pixels: str) -> np.ndarray:
    """What a callable or an API receives: uint8 as is, or float32 in [0, 1]."""
    if pixels not in PIXELS:
        raise SuspectError(f"unknown pixel format {pixels!r}; expected {' or '.join(PIXELS)}")
    x = np.asarray(x_uint8, np.uint8)
    return x if pixels == "uint8" else x.astype(np.float32) / 255.0


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


@dataclasses.dataclass
class CheckpointModel:
    """One member of a group trained by this tool, ready for inference."""

    name: str
    group: ensemble.Group
    variables: dict  # stacked, one member
    num_classes: int
    input_shape: tuple[int, ...]
    strategy: str | None = None

    def logits(self, x_NxHxWxC) -> np.ndarray:
        """Logits [N, K] of float pixels in [0, 1]. Batches are padded to a power
        of two, so a server answering requests of any size compiles few shapes."""
        n = len(x_NxHxWxC)
        padded = min(512, 1 << max(3, (n - 1).bit_length())) if n <= 512 else n
        x = np.asarray(x_NxHxWxC, np.float32)
        x = np.concatenate([x, np.zeros((padded - n, *x.shape[1:]), np.float32)])
        return training.predict_logits(self.group.model, self.variables, x, strategy=self.strategy)[
            0, :n
        ]


def load_checkpoint(spec: str, strategy=None) -> CheckpointModel:
    """The model a spec WORKDIR/models/GROUP[/MEMBER] names."""
    path, member = spec.rstrip("/"), 0
    if not os.path.exists(os.path.join(path, "result.json")):
        head, tail = os.path.split(path)
        if tail.isdigit() and os.path.exists(os.path.join(head, "result.json")):
            path, member = head, int(tail)
        else:
            raise SuspectError(f"{spec}: not a model group directory (no result.json)")
    try:
        info = files.read_json(os.path.join(path, "result.json"))
        size, arch = len(info["test_accuracy"]), info["architecture"]
        k, shape = int(info["num_classes"]), tuple(info["input_shape"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SuspectError(f"{spec}: unreadable model record ({e})") from None
    if member >= size:
        raise SuspectError(f"{spec}: the group has {size} members (0..{size - 1})")
    group = ensemble.Group(os.path.basename(path), arch, models.get_model(arch, k), size)
    try:
        variables = zoo_lib.load_variables(os.path.join(path, "final"), group, shape)
    except Exception as e:  # noqa: BLE001 (orbax raises many kinds on a corrupt checkpoint)
        raise SuspectError(
            f"{spec}: cannot restore the checkpoint ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    one = ensemble.stack([ensemble.member(variables, member)])
    return CheckpointModel(f"{group.name}/{member}", group, one, k, shape, strategy)


def from_checkpoint(spec: str, strategy=None) -> Suspect:
    """A member of a group trained by this tool: WORKDIR/models/GROUP[/MEMBER]."""
    model = load_checkpoint(spec, strategy)
    fn = lambda x_uint8: model.logits(np.asarray(x_uint8, np.float32) / 255.0)
    return Suspect(model.name, "checkpoint", fn, model.num_classes, model.input_shape)


def from_callable(spec: str, pixels: str = "uint8") -> Suspect:
    """`package.module:function`, called on uint8 or float NHWC batches."""
    module_name, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise SuspectError(f"{spec}: cannot import the callable ({e})") from None
    if not callable(fn):
        raise SuspectError(f"{spec}: {attr} is not callable")
    to_pixels(np.zeros(0, np.uint8), pixels)  # a bad format fails before any query
    return Suspect(spec, "callable", lambda x: fn(to_pixels(x, pixels)))


def is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


_CALLABLE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


def is_callable_spec(spec: str) -> bool:
    """`package.module:function` and nothing else: a path holding a ':' must not
    become a module search on sys.path (the current directory included)."""
    return _CALLABLE.fullmatch(spec) is not None


def load_suspect(
    spec: str, *, pixels: str = "uint8", batch_size: int | None = None, http=None
) -> Suspect:
    """The suspect a spec names (see the module docstring); `http` holds the
    `remote.Options` of an API (timeout, retries, back-off, rate limit)."""
    if is_url(spec):
        from fingerprinting import remote  # remote builds on this module

        suspect = remote.from_url(spec, options=http or remote.Options(), pixels=pixels)
    elif is_callable_spec(spec) and not os.path.exists(spec):
        suspect = from_callable(spec, pixels)
    elif os.path.exists(spec) or os.path.exists(os.path.dirname(spec.rstrip("/"))):
        suspect = from_checkpoint(spec)
    else:
        raise SuspectError(
            f"{spec}: names no suspect; expected WORKDIR/models/GROUP[/MEMBER], "
            "package.module:function or an http(s):// prediction URL"
        )
    if batch_size is not None:
        if batch_size < 1:
            raise SuspectError(f"batch size must be at least 1, got {batch_size}")
        suspect.batch_size = batch_size
    return suspect
