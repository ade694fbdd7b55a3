"""Suspects: models the verifier can only query for labels.

A suspect is anything with `predict(x_uint8_NxHxWxC) -> labels [N]`. Specs:
- `WORKDIR/models/GROUP[/MEMBER]`: a model trained by this tool (member 0 by
  default), loaded from its Orbax checkpoint;
- `package.module:function`: a Python callable taking a uint8 NHWC batch and
  returning labels [N] or scores [N, K].
Inputs are sent as 8-bit pixels, what a deployed model receives.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Callable

import numpy as np

from fingerprinting import ensemble
from fingerprinting import files
from fingerprinting import models
from fingerprinting import training
from fingerprinting import zoo as zoo_lib


class SuspectError(ValueError):
    pass


@dataclasses.dataclass
class Suspect:
    name: str
    protocol: str
    fn: Callable[[np.ndarray], np.ndarray]
    num_classes: int | None = None
    input_shape: tuple[int, ...] | None = None

    def predict(self, x_uint8, *, batch_size: int = 256) -> np.ndarray:
        out = []
        for i in range(0, len(x_uint8), batch_size):
            xb = x_uint8[i : i + batch_size]
            out.append(answers_to_labels(self.fn(xb), len(xb), self.num_classes, self.name))
        return np.concatenate(out) if out else np.zeros((0,), np.int64)


def answers_to_labels(answer, n: int, num_classes: int | None, name: str) -> np.ndarray:
    """Labels from a suspect's answer (labels or scores), validated."""
    try:
        a = np.asarray(answer)
    except Exception as e:  # noqa: BLE001 (any garbage a callable returns)
        raise SuspectError(f"{name}: answer is not an array ({e})") from None
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise SuspectError(f"{name}: answer is not numeric (dtype {a.dtype})")
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
    if np.issubdtype(a.dtype, np.floating) and not np.all(a == np.round(a)):
        raise SuspectError(f"{name}: labels are not integers")
    a = a.astype(np.int64)
    if num_classes is not None and (a.min(initial=0) < 0 or a.max(initial=0) >= num_classes):
        raise SuspectError(f"{name}: labels out of range 0..{num_classes - 1}")
    return a


def from_checkpoint(spec: str, strategy=None) -> Suspect:
    """A member of a group trained by this tool: WORKDIR/models/GROUP[/MEMBER]."""
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

    def fn(x_uint8):
        x = np.asarray(x_uint8, np.float32) / 255.0
        return training.predict_logits(group.model, one, x, strategy=strategy)[0]

    return Suspect(f"{group.name}/{member}", "checkpoint", fn, k, shape)


def from_callable(spec: str) -> Suspect:
    module_name, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise SuspectError(f"{spec}: cannot import the callable ({e})") from None
    if not callable(fn):
        raise SuspectError(f"{spec}: {attr} is not callable")
    return Suspect(spec, "callable", fn)


def load_suspect(spec: str, **kwargs) -> Suspect:
    """The suspect a spec names (see the module docstring)."""
    if ":" in spec and not os.path.exists(spec):
        return from_callable(spec)
    if os.path.exists(spec) or os.path.exists(os.path.dirname(spec.rstrip("/"))):
        return from_checkpoint(spec, **kwargs)
    raise SuspectError(
        f"{spec}: names no suspect; expected WORKDIR/models/GROUP[/MEMBER] "
        "or package.module:function"
    )
