"""Suspects: models the verifier can only query for labels.

A suspect is anything with `predict(x_uint8_NxHxWxC) -> labels [N]`. Specs:
- `WORKDIR/models/GROUP[/MEMBER]`: a model trained by this tool (member 0 by
  default), loaded from its Orbax checkpoint;
- `package.module:function`: a Python callable taking a batch of images and
  returning labels [N] or scores [N, K];
- `model.onnx`: an exported model, run with onnxruntime (see `onnx_file`);
- `http(s)://HOST:PORT/v1/models/NAME:predict` or `.../v2/models/NAME/infer`: a
  prediction API speaking TF-Serving / KServe V1 or the Open Inference
  Protocol (see `client` and `protocols`); https certificates are always
  checked, against the system's authorities or `client.Options.ca_cert`.
Inputs are 8-bit pixels, what a deployed model receives: callables, ONNX files
and APIs get them as an `InputFormat` says: uint8 (0..255) or float32 in
[0, 1], NHWC or NCHW, optionally normalised by a mean and a standard deviation.
Every answer is validated whole (`answers_to_labels`); a suspect that answers
garbage raises `SuspectError`, never yields a partial set of labels.

`base` holds the interface, `local` the checkpoint and callable suspects,
`onnx_file` the ONNX suspects, `protocols` the two protocols' codecs, `client` the HTTP client and `server`
the server library.
"""

from __future__ import annotations

import os
import re

from fingerprinting.suspects import client
from fingerprinting.suspects.base import LAYOUTS
from fingerprinting.suspects.base import PIXELS
from fingerprinting.suspects.base import InputFormat
from fingerprinting.suspects.base import Suspect
from fingerprinting.suspects.base import SuspectError
from fingerprinting.suspects.base import answers_to_labels
from fingerprinting.suspects.base import check_fits
from fingerprinting.suspects.base import as_format
from fingerprinting.suspects.base import printable
from fingerprinting.suspects.base import to_pixels
from fingerprinting.suspects.local import CheckpointModel
from fingerprinting.suspects.local import from_callable
from fingerprinting.suspects.local import from_checkpoint
from fingerprinting.suspects.local import load_checkpoint
from fingerprinting.suspects.onnx_file import from_onnx


def is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


_CALLABLE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


def is_callable_spec(spec: str) -> bool:
    """`package.module:function` and nothing else: a path holding a ':' must not
    become a module search on sys.path (the current directory included)."""
    return _CALLABLE.fullmatch(spec) is not None


def is_onnx_spec(spec: str) -> bool:
    return spec.lower().endswith(".onnx")


def load_suspect(
    spec: str, *, pixels: str | InputFormat = "uint8", batch_size: int | None = None, http=None
) -> Suspect:
    """The suspect a spec names (see the module docstring). `pixels` is the
    `InputFormat` a callable, ONNX file or API expects (or just its pixel
    format); `http` holds the `client.Options` of an API (timeout, retries,
    back-off, rate limit)."""
    fmt = as_format(pixels)
    if is_url(spec):
        suspect = client.from_url(spec, options=http or client.Options(), pixels=fmt)
    elif is_onnx_spec(spec):
        if not os.path.isfile(spec):
            raise SuspectError(f"{spec}: no such ONNX file")
        suspect = from_onnx(spec, fmt)
    elif is_callable_spec(spec) and not os.path.exists(spec):
        suspect = from_callable(spec, fmt)
    elif os.path.exists(spec) or os.path.exists(os.path.dirname(spec.rstrip("/"))):
        if not fmt.is_default:
            raise SuspectError(
                f"{spec}: a model trained by this tool takes its own input format; "
                "--pixels, --layout, --mean and --std are for callables, ONNX files and URLs"
            )
        suspect = from_checkpoint(spec)
    else:
        raise SuspectError(
            f"{spec}: names no suspect; expected WORKDIR/models/GROUP[/MEMBER], "
            "package.module:function, an .onnx file or an http(s):// prediction URL"
        )
    if batch_size is not None:
        if batch_size < 1:
            raise SuspectError(f"batch size must be at least 1, got {batch_size}")
        suspect.batch_size = batch_size
    return suspect


__all__ = [
    "CheckpointModel",
    "InputFormat",
    "LAYOUTS",
    "PIXELS",
    "Suspect",
    "SuspectError",
    "answers_to_labels",
    "as_format",
    "check_fits",
    "from_callable",
    "from_checkpoint",
    "from_onnx",
    "is_callable_spec",
    "is_onnx_spec",
    "is_url",
    "load_checkpoint",
    "load_suspect",
    "printable",
    "to_pixels",
]
