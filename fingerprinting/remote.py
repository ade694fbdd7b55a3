"""Prediction APIs over HTTP: the two protocols model servers speak, both sides.

- V1, TF-Serving REST and KServe V1: `POST .../v1/models/NAME[/versions/V]:predict`
  with `{"instances": [...]}`, answered by `{"predictions": [...]}`.
- V2, the Open Inference Protocol (KServe V2, Triton, MLServer):
  `POST .../v2/models/NAME[/versions/V]/infer` with `{"inputs": [{"name",
  "shape", "datatype", "data"}]}`, answered by `{"outputs": [...]}` alike.

Images travel as NHWC pixels: integers are 8-bit pixels (0..255), floats lie
in [0, 1]. Answers may be labels [N] or scores [N, K].

The client queries as a careful verifier would: batches over one kept-alive
connection, a timeout on every request, bounded retries with exponential
back-off after refused connections, timeouts, HTTP 429 and 5xx, and a limit
on requests per second. Any failure raises `suspects.SuspectError` with one
line naming it; answers are used only when every request succeeded. The
codecs serve both sides: `serve.py` decodes requests and encodes answers with
them. Standard library only.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import math
import os
import re
import time
import urllib.parse

import numpy as np

from fingerprinting import progress
from fingerprinting import suspects

PROTOCOLS = ("v1", "v2")
_PATHS = {
    "v1": re.compile(r"/v1/models/(?P<name>[^/:]+)(/versions/[^/:]+)?:predict$"),
    "v2": re.compile(r"/v2/models/(?P<name>[^/]+)(/versions/[^/]+)?/infer$"),
}
RETRIED_STATUS = (429, 500, 502, 503, 504)  # the server may recover; others will not
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


def _malformed(name: str, what: str) -> suspects.SuspectError:
    return suspects.SuspectError(f"{name}: malformed answer ({what})")


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
    if not _is_shape(shape):
        raise _malformed(name, f"output {out.get('name')!r} has no valid shape")
    try:
        a = np.asarray(data)
        if a.dtype == object or a.size != math.prod(shape):
            raise ValueError
        return a.reshape(shape)
    except ValueError:
        raise _malformed(
            name, f"output {out.get('name')!r} does not hold {math.prod(shape)} values"
        ) from None


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


def parse_v1_request(request) -> np.ndarray:
    if not isinstance(request, dict) or not isinstance(request.get("instances"), list):
        raise ValueError('expected a JSON object with an "instances" list')
    try:
        a = np.asarray(request["instances"])
    except ValueError:
        raise ValueError("instances of different shapes") from None
    return _unit_pixels(a, np.issubdtype(a.dtype, np.integer))


def parse_v2_request(request) -> np.ndarray:
    inputs = request.get("inputs") if isinstance(request, dict) else None
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ValueError('expected a JSON object with one tensor in "inputs"')
    tensor = inputs[0]
    datatype, shape = tensor.get("datatype"), tensor.get("shape")
    if datatype not in _INTEGER_TYPES + _FLOAT_TYPES:
        raise ValueError(f"unsupported datatype {datatype!r}")
    if not _is_shape(shape):
        raise ValueError("the input has no valid shape")
    try:
        a = np.asarray(tensor.get("data")).reshape(shape)
    except (ValueError, TypeError):
        raise ValueError(f"the data do not fill shape {shape}") from None
    return _unit_pixels(a, datatype in _INTEGER_TYPES)


def encode_v1_answer(out: np.ndarray) -> dict:
    return {"predictions": out.tolist()}


def encode_v2_answer(out: np.ndarray, model_name: str) -> dict:
    scores = out.ndim == 2
    return {
        "model_name": model_name,
        "outputs": [
            {
                "name": "probabilities" if scores else "label",
                "shape": list(out.shape),
                "datatype": "FP32" if scores else "INT64",
                "data": out.ravel().tolist(),
            }
        ],
    }


# --- The client. ---


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token


def parse_header(text: str, environ=None) -> tuple[str, str]:
    """('Name', 'value') from 'Name: value'. `$VAR` and `${VAR}` in the value are
    read from the environment, so that a secret need not be on the command line
    (write the flag in single quotes); an unset variable is an error. Error
    messages name the header, never its value; `Options.check` validates it."""
    environ = os.environ if environ is None else environ
    name, colon, value = text.partition(":")
    name = name.strip()
    if not colon:  # the text may be the secret itself: not repeated
        raise suspects.SuspectError("an HTTP header must be given as 'Name: value'")

    def lookup(m):
        var = m.group(1) or m.group(2)
        if var not in environ:
            raise suspects.SuspectError(
                f"HTTP header {name}: environment variable {var} is not set"
            )
        return environ[var]

    return name, re.sub(r"\$\{(\w+)\}|\$(\w+)", lookup, value.strip())


@dataclasses.dataclass
class Options:
    """How carefully an API is queried."""

    timeout: float = 30.0  # seconds per request
    retries: int = 3  # further tries of a failed request
    backoff: float = 0.5  # seconds before the first retry; doubles after each
    rate_limit: float = 0.0  # requests per second at most; 0: no limit
    protocol: str = "auto"  # v1, v2, or auto: from the URL's path
    headers: tuple = ()  # (name, value) pairs sent with every request, e.g. an API key

    def check(self) -> None:
        checks = [
            ("timeout", self.timeout > 0),
            ("retries", self.retries >= 0),
            ("backoff", self.backoff >= 0),
            ("rate_limit", self.rate_limit >= 0),
        ]
        for field, ok in checks:
            if not ok:
                raise suspects.SuspectError(f"{field} = {getattr(self, field)!r} is out of range")
        for name, value in self.headers:
            if not _HEADER_NAME.fullmatch(name):
                raise suspects.SuspectError(f"HTTP header name {name[:40]!r} is not a valid name")
            if any(c in value for c in "\r\n\0"):  # header injection
                raise suspects.SuspectError(f"HTTP header {name}: not a valid header value")
        if self.protocol not in ("auto",) + PROTOCOLS:
            raise suspects.SuspectError(
                f"unknown protocol {self.protocol!r}; expected auto, {' or '.join(PROTOCOLS)}"
            )


class Client:
    """JSON over HTTP to one server, with the timeouts, retries and pacing of `Options`.

    `counters["retries"]` counts the requests sent again after a failure.
    """

    def __init__(self, url: str, options: Options, counters: dict):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise suspects.SuspectError(f"{url}: not an http(s) URL")
        self.url, self.options, self.counters = url, options, counters
        self.scheme, self.netloc = parts.scheme, parts.netloc
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        self._conn = None
        self._last_start = -math.inf

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = (
                http.client.HTTPSConnection
                if self.scheme == "https"
                else http.client.HTTPConnection
            )
            self._conn = cls(self.netloc, timeout=self.options.timeout)
        return self._conn

    def _pace(self) -> None:
        if self.options.rate_limit > 0:
            wait = self._last_start + 1.0 / self.options.rate_limit - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        self._last_start = time.monotonic()

    def _exchange(self, method: str, path: str, body: bytes | None):
        conn = self._connection()
        headers = dict(self.options.headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheader("Retry-After"), response.read()
        except BaseException:
            conn.close()  # the next try starts a fresh connection
            self._conn = None
            raise

    def _send(self, method: str, path: str, body: bytes | None):
        reused = self._conn is not None
        try:
            return self._exchange(method, path, body)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if not reused:
                raise
            return self._exchange(method, path, body)  # the server closed an idle connection

    def attempt(self, method: str, path: str, body: bytes | None):
        """One paced try: (answer bytes, None) or (None, (problem, whether a retry
        may help, seconds the server asked to wait))."""
        self._pace()
        try:
            status, retry_after, data = self._send(method, path, body)
        except ConnectionRefusedError:
            return None, ("connection refused", True, 0.0)
        except TimeoutError:
            return None, (f"timed out (no answer within {self.options.timeout:g} s)", True, 0.0)
        except (OSError, http.client.HTTPException) as e:
            return None, (f"connection failed ({type(e).__name__}: {e})", True, 0.0)
        if status == 200:
            return data, None
        text = " ".join(data.decode("utf-8", "replace").split())[:200]
        wait = float(retry_after) if retry_after and retry_after.isdigit() else 0.0
        return None, (f"HTTP {status}{': ' + text if text else ''}", status in RETRIED_STATUS, wait)

    def post(self, payload):
        """The JSON answer to one POST of `payload`; retried while a retry may help."""
        body = json.dumps(payload).encode()
        tries = self.options.retries + 1
        for attempt in range(tries):
            data, problem = self.attempt("POST", self.path, body)
            if problem is None:
                try:
                    return json.loads(data)
                except ValueError as e:
                    raise suspects.SuspectError(
                        f"{self.url}: malformed JSON in the answer ({e})"
                    ) from None
            what, retry, wait = problem
            if not retry:
                raise suspects.SuspectError(f"{self.url}: {what}")
            if attempt + 1 < tries:
                wait = max(wait, self.options.backoff * 2**attempt)
                progress.log(f"{self.url}: {what}; retry {attempt + 1}/{tries - 1} in {wait:g} s")
                time.sleep(wait)
                self.counters["retries"] += 1
        raise suspects.SuspectError(f"{self.url}: {what} after {tries} tries")


def v2_tensor_names(client: Client) -> tuple[str, str | None]:
    """(input name, output name) from the model's V2 metadata, so that servers
    which check tensor names (Triton) accept the request; ('input', None) when
    the server publishes none (then the first output of each answer is used)."""
    data, _ = client.attempt("GET", re.sub(r"/infer$", "", client.path.split("?")[0]), None)
    try:
        meta = json.loads(data)
        return str(meta["inputs"][0]["name"]), str(meta["outputs"][0]["name"])
    except (TypeError, ValueError, KeyError, IndexError):
        return "input", None


def from_url(url: str, *, options: Options, pixels: str = "uint8") -> suspects.Suspect:
    """A suspect behind a prediction URL; the protocol comes from its path unless
    `options.protocol` names it."""
    options.check()
    suspects.to_pixels(np.zeros(0, np.uint8), pixels)
    protocol = options.protocol
    if protocol == "auto":
        found = parse_path(urllib.parse.urlsplit(url).path)
        if found is None:
            raise suspects.SuspectError(
                f"{url}: cannot tell the protocol from the path; expected "
                ".../v1/models/NAME:predict or .../v2/models/NAME/infer (or pass the protocol)"
            )
        protocol = found[0]
    suspect = suspects.Suspect(url, f"http-{protocol}", fn=None, batch_size=64)
    client = Client(url, options, suspect.counters)
    if protocol == "v1":
        encode, decode = encode_v1, decode_v1
    else:
        names = v2_tensor_names(client)
        encode, decode = (lambda x: encode_v2(x, *names)), decode_v2
    suspect.fn = lambda x: decode(client.post(encode(suspects.to_pixels(x, pixels))), url)
    return suspect
