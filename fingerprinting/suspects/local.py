"""Suspects on this machine: a model trained by this tool, loaded from its
Orbax checkpoint, and a Python callable named `package.module:function`."""

from __future__ import annotations

import dataclasses
import importlib
import os

import numpy as np

from fingerprinting import ensemble
from fingerprinting import files
from fingerprinting import fit
from fingerprinting import models
from fingerprinting import zoo as zoo_lib
from fingerprinting.suspects.base import Suspect
from fingerprinting.suspects.base import SuspectError
from fingerprinting.suspects.base import to_pixels


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
        return fit.predict_logits(self.group.model, self.variables, x, strategy=self.strategy)[
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


def from_callable(spec: str, pixels="uint8") -> Suspect:
    """`package.module:function`, called on batches in the `InputFormat` (or
    pixel format) `pixels`."""
    module_name, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise SuspectError(f"{spec}: cannot import the callable ({e})") from None
    if not callable(fn):
        raise SuspectError(f"{spec}: {attr} is not callable")
    to_pixels(np.zeros(0, np.uint8), pixels)  # a bad format fails before any query
    return Suspect(spec, "callable", lambda x: fn(to_pixels(x, pixels)))
