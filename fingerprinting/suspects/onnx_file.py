"""Suspects given as an ONNX file (`model.onnx`), run with onnxruntime on the CPU.

ONNX is the file a model owner gets from `torch.onnx.export`, tf2onnx or
jax2onnx: a graph of standard operators and its weights, which onnxruntime
runs without executing any code the file holds (unlike a pickled PyTorch
checkpoint). The graph must take one batch of images (rank 4, NHWC or NCHW
as the `InputFormat` says) and give labels [N] or scores [N, K] as its first
output. Whatever the file declares statically (channels, height, width,
classes, a fixed batch size) is checked or used before any query.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from fingerprinting.suspects.base import InputFormat
from fingerprinting.suspects.base import Suspect
from fingerprinting.suspects.base import SuspectError
from fingerprinting.suspects.base import printable

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8,
}


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return printable(text[0] if text else type(e).__name__)


def _session(path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings are not the user's business
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 (onnxruntime raises its own kinds for any bad file)
        raise SuspectError(
            f"{path}: not an ONNX model onnxruntime can run ({_first_line(e)})"
        ) from None


def _static(dim) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def _image_shape(path: str, shape, fmt: InputFormat) -> tuple[int, ...] | None:
    """The NHWC shape of one input the graph declares, or None where a dimension is symbolic."""
    if len(shape) != 4:
        raise SuspectError(
            f"{path}: its input has rank {len(shape)} (shape {shape}); expected a batch of "
            "images, rank 4"
        )
    dims = [_static(d) for d in shape[1:]]
    if None in dims:
        return None
    c, h, w = dims if fmt.layout == "nchw" else (dims[2], dims[0], dims[1])
    return (h, w, c)


def _num_classes(shape) -> int | None:
    if len(shape) == 2 and _static(shape[1]) not in (None, 1):
        return _static(shape[1])
    return None


def from_onnx(path: str, fmt: InputFormat) -> Suspect:
    """The suspect an ONNX file holds, queried as `fmt` says."""
    session = _session(path)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise SuspectError(
            f"{path}: the graph takes {len(inputs)} inputs "
            f"({', '.join(i.name for i in inputs)}); a classifier takes one batch of images"
        )
    x_in, y_out = inputs[0], outputs[0]
    dtype = _DTYPES.get(x_in.type)
    if dtype is None:
        raise SuspectError(
            f"{path}: its input is {x_in.type}; expected float, double, float16 or uint8 images"
        )
    if dtype == np.uint8 and (fmt.pixels == "float" or fmt.normalised):
        raise SuspectError(
            f"{path}: the graph takes uint8 pixels; drop --pixels=float, --mean and --std"
        )
    input_shape = _image_shape(path, x_in.shape, fmt)

    def ask(x_uint8):
        x = fmt.prepare(x_uint8).astype(dtype, copy=False)
        try:
            return session.run([y_out.name], {x_in.name: x})[0]
        except Exception as e:  # noqa: BLE001 (a graph can fail on any input it dislikes)
            raise SuspectError(
                f"{path}: onnxruntime failed on a batch ({_first_line(e)})"
            ) from None

    suspect = Suspect(path, "onnx", ask, _num_classes(y_out.shape), input_shape)
    batch = _static(x_in.shape[0])
    if batch is not None:  # a graph exported with a fixed batch size takes only that
        suspect.batch_size = batch
        suspect.fn = _padded(ask, batch)
    return suspect


def _padded(ask, batch: int):
    """`ask` for a graph that takes exactly `batch` inputs: any request is cut
    into batches of that size, the last one padded."""

    def fn(x_uint8):
        out = []
        for i in range(0, len(x_uint8), batch):
            xb = x_uint8[i : i + batch]
            pad = np.zeros((batch - len(xb), *xb.shape[1:]), xb.dtype)
            out.append(np.asarray(ask(np.concatenate([xb, pad])))[: len(xb)])
        return np.concatenate(out)

    return fn
