"""The two protocols model servers speak, both sides of each.

- V1, TF-Serving REST and KServe V1: `POST .../v1/models/NAME[/versions/V]:predict`
  with `{"instances": [...]}`, answered by `{"predictions": [...]}`.
- V2, the Open Inference Protocol (KServe V2, Triton, MLServer):
  `POST .../v2/models/NAME[/versions/V]/infer` with `{"inputs": [{"name",
  "shape", "datatype", "data"}]}`, answered by `{"outputs": [...]}` alike.

Images travel as NHWC pixels: integers are 8-bit pixels (0..255), floats lie
in [0, 1]. Answers may be labels [N] or scores [N, K]. The client encodes
requests and decodes answers with these codecs, the server decodes requests
and encodes answers. Standard library and numpy only.
"""

from __future__ import annotations

import math
import re

import numpy as np

from fingerprinting.suspects.base import SuspectError
from fingerprinting.suspects.base import printable


PROTOCOLS = ("v1", "v2")
_PATHS = {
    "v1": re.compile(r"/v1/models/(?P<name>[^/:]+)(/versions/[^/:]+)?:predict$"),
    "v2": re.compile(r"/v2/models/(?P<name>[^/]+)(/versions/[^/]+)?/infer$"),
}
_INTEGER_TYPES = ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64")
_FLOAT_TYPES = ("FP16", "FP32", "FP64")


def parse_path(path: str) -> tuple[str, str] | None:
    """(protocol, model name) of a prediction path, or None."""
    for protocol, pattern in _PATHS.items():
        m = pattern.search(path)
        if m:
            return protocol, m.group("name")
    return None


# --- The codecs. Client side: encode_* a batch, decode_* the answer. ---


def encode_v1(x_NxHxWxC: np.ndarray) -> dict:
    return {"instances": x_NxHxWxC.tolist()}


def encode_v2(x_NxHxWxC: np.ndarray, input_name: str = "input", output_name=None) -> dict:
    request = {
        "inputs": [
            {
                "name": input_name,
                "shape": list(x_NxHxWxC.shape),
                "datatype": "UINT8" if x_NxHxWxC.dtype == np.uint8 else "FP32",
                "data": x_NxHxWxC.ravel().tolist(),
            }
        ]
    }
    if output_name:
        request["outputs"] = [{"name": output_name}]
    return request


def _malformed(name: str, what: str) -> SuspectError:
    return SuspectError(f"{name}: malformed answer ({what})")


def decode_v1(answer, name: str):
    if not isinstance(answer, dict) or "predictions" not in answer:
        raise _malformed(name, 'no "predictions" in the JSON object')
    return answer["predictions"]


def _is_shape(shape) -> bool:
    """A V2 tensor shape: a list of non-negative integers (JSON's true and false
    are Python ints too, and are not dimensions)."""
    return isinstance(shape, list) and all(type(s) is int and s >= 0 for s in shape)


def decode_v2(answer, name: str) -> np.ndarray:
    """The first output, shaped as it says: labels [N] (or [N, 1]) or scores [N, K]."""
    outputs = answer.get("outputs") if isinstance(answer, dict) else None
    if not isinstance(outputs, list) or not outputs or not isinstance(outputs[0], dict):
        raise _malformed(name, 'no "outputs" list in the JSON object')
    out = outputs[0]
    shape, data = out.get("shape"), out.get("data")
    output = printable(repr(out.get("name")), 60)  # the server's text
    if not _is_shape(shape):
        raise _malformed(name, f"output {output} has no valid shape")
    try:
        a = np.asarray(data)
        if a.dtype == object or a.size != math.prod(shape):
            raise ValueError
        return a.reshape(shape)
    except (ValueError, RecursionError, MemoryError):
        raise _malformed(name, f"output {output} does not hold {math.prod(shape)} values") from None


# --- Server side: requests to float pixels in [0, 1], answers to JSON. ---


def _unit_pixels(a: np.ndarray, integer: bool) -> np.ndarray:
    if a.dtype == object or not np.issubdtype(a.dtype, np.number):
        raise ValueError("pixels are not numbers")
    if integer:
        if a.size and (a.min() < 0 or a.max() > 255):
            raise ValueError("integer pixels must lie in 0..255")
        return a.astype(np.float32) / 255.0
    if a.size and not (np.all(np.isfinite(a)) and a.min() >= 0 and a.max() <= 1):
        raise ValueError("float pixels must lie in [0, 1]")
    return a.astype(np.float32)


def _check_count(n: int, max_inputs: int | None) -> None:
    """Counted before any array is built: a huge request is refused, not run."""
    if max_inputs is not None and n > max_inputs:
        raise ValueError(f"{n} inputs in one request; this server takes at most {max_inputs}")


def parse_v1_request(request, max_inputs: int | None = None) -> np.ndarray:
    if not isinstance(request, dict) or not isinstance(request.get("instances"), list):
        raise ValueError('expected a JSON object with an "instances" list')
    _check_count(len(request["instances"]), max_inputs)
    try:
        a = np.asarray(request["instances"])
    except ValueError:
        raise ValueError("instances of different shapes") from None
    return _unit_pixels(a, np.issubdtype(a.dtype, np.integer))


def parse_v2_request(request, max_inputs: int | None = None) -> np.ndarray:
    inputs = request.get("inputs") if isinstance(request, dict) else None
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ValueError('expected a JSON object with one tensor in "inputs"')
    tensor = inputs[0]
    datatype, shape = tensor.get("datatype"), tensor.get("shape")
    if datatype not in _INTEGER_TYPES + _FLOAT_TYPES:
        raise ValueError(f"unsupported datatype {datatype!r}")
    if not _is_shape(shape):
        raise ValueError("the input has no valid shape")
    _check_count(shape[0] if shape else 1, max_inputs)
    try:
        a = np.asarray(tensor.get("data")).reshape(shape)
    except (ValueError, TypeError):
        raise ValueError(f"the data do not fill shape {shape}") from None
    return _unit_pixels(a, datatype in _INTEGER_TYPES)


def requested_outputs(request: dict) -> list[str]:
    """The output names a V2 request asks for; none named: every output."""
    wanted = request.get("outputs", [])
    if not isinstance(wanted, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in wanted
    ):
        raise ValueError('"outputs" must be a list of objects, each with a "name"')
    return [o["name"] for o in wanted]


def encode_v1_answer(out: np.ndarray) -> dict:
    return {"predictions": out.tolist()}


def encode_v2_answer(out: np.ndarray, model_name: str, request_id=None) -> dict:
    """The answer to a request, with its `id` when it had one (a string)."""
    scores = out.ndim == 2
    answer = {"model_name": model_name}
    if isinstance(request_id, str):
        answer["id"] = request_id
    answer["outputs"] = [
        {
            "name": "probabilities" if scores else "label",
            "shape": list(out.shape),
            "datatype": "FP32" if scores else "INT64",
            "data": out.ravel().tolist(),
        }
    ]
    return answer
