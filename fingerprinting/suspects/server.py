"""The server library: one model trained here, answering both prediction
protocols over HTTP (the entry point is `fingerprinting.serve`).

It answers
- `POST /v1/models/NAME:predict` (TF-Serving / KServe V1),
- `POST /v2/models/NAME/infer` (Open Inference Protocol: KServe V2, Triton),
- `GET /v2` (server metadata), `GET /v2/models/NAME[/versions/V]` (model
  metadata) and `.../ready` (model readiness), `GET /v1/models/NAME` (V1
  status), `GET /v2/health/live` and `/v2/health/ready`,
with class probabilities, or only labels (the paper's label-only API).
V2 tensors travel as JSON: a request in the binary tensor data extension
(`Inference-Header-Content-Length`) is a 400 that says so; a response echoes
the request's `id`, and a request for an output the model lacks is a 400.
Connections are kept alive (HTTP/1.1), or closed after the answer, said by
`Connection: close`, for an HTTP/1.0 client or one that asks.

Clients may be hostile: a connection silent for `Limits.timeout` s is closed,
at most `Limits.max_connections` are held at once (one more is answered 503
and closed), a request holds at most `Limits.max_inputs` inputs (400 above),
which go through the model in batches of at most 256, and malformed JSON,
however deep, is a 400.
"""

from __future__ import annotations

import dataclasses
import http.server
import importlib.metadata
import json
import re
import threading

import numpy as np

from fingerprinting import errors
from fingerprinting import labels
from fingerprinting.suspects import protocols
from fingerprinting.suspects.local import CheckpointModel


ANSWERS = ("scores", "labels")
MAX_BODY = 64 << 20  # bytes of one request
SERVER_NAME = "fingerprinting-serve"
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one client may take of the server."""

    timeout: float = 30.0  # seconds a connection may stay silent (idle, or mid-request)
    max_connections: int = 32  # connections held at once
    max_inputs: int = 4096  # inputs in one request
    batch_size: int = 256  # inputs through the model at once

    def check(self) -> None:
        for field in dataclasses.fields(self):
            if not getattr(self, field.name) > 0:
                raise errors.ConfigError(
                    f"{field.name} = {getattr(self, field.name)!r} must be positive"
                )


def _output(answer: str, num_classes: int) -> dict:
    """The V2 metadata of the one output: probabilities, or labels."""
    if answer == "scores":
        return {"name": "probabilities", "datatype": "FP32", "shape": [-1, num_classes]}
    return {"name": "label", "datatype": "INT64", "shape": [-1]}


def _metadata_routes(name: str, input_shape, output: dict) -> dict:
    """What each GET path answers: health, server and model metadata (V2), status (V1)."""
    h, w, c = input_shape
    return {
        "/v2": {"name": SERVER_NAME, "version": _version(), "extensions": []},
        "/v2/health/live": {"live": True},
        "/v2/health/ready": {"ready": True},
        f"/v2/models/{name}/ready": {"name": name, "ready": True},
        f"/v2/models/{name}": {
            "name": name,
            "versions": ["1"],
            "platform": "jax",
            "inputs": [{"name": "input", "datatype": "UINT8", "shape": [-1, h, w, c]}],
            "outputs": [output],
        },
        f"/v1/models/{name}": {
            "model_version_status": [
                {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK"}}
            ]
        },
    }


def _infer(body: bytes, protocol: str, name: str, output_name: str, predict, limits):
    """(status, answer) of one inference request's body; bad requests get a 400."""
    try:
        request = json.loads(body)
        if protocol == "v1":
            x = protocols.parse_v1_request(request, max_inputs=limits.max_inputs)
        else:
            x = protocols.parse_v2_request(request, max_inputs=limits.max_inputs)
            for wanted in protocols.requested_outputs(request):
                if wanted != output_name:
                    raise ValueError(f"no output {wanted!r}; this model has {output_name!r}")
        out = predict(x)
    except ValueError as e:  # json.JSONDecodeError is one
        return 400, {"error": str(e)}
    except RecursionError:
        return 400, {"error": "the JSON is nested too deeply"}
    if protocol == "v1":
        return 200, protocols.encode_v1_answer(out)
    return 200, protocols.encode_v2_answer(out, name, request.get("id"))


def make_handler(model: CheckpointModel, name: str, answer: str, limits: Limits = Limits()):
    """The request handler of a server for `model`, published as `name`."""
    lock = threading.Lock()  # one batch at a time: the model already uses every core

    def predict(x_NxHxWxC: np.ndarray) -> np.ndarray:
        if x_NxHxWxC.shape[1:] != model.input_shape:
            raise errors.ConfigError(
                f"inputs of shape {list(x_NxHxWxC.shape)}; expected [N, "
                f"{', '.join(map(str, model.input_shape))}]"
            )
        bs = limits.batch_size
        logits = []
        for i in range(0, max(len(x_NxHxWxC), 1), bs):  # an empty request: one empty batch
            with lock:  # released between batches: other clients take turns
                logits.append(model.logits(x_NxHxWxC[i : i + bs]))
        logits = np.concatenate(logits)
        return labels.softmax(logits) if answer == "scores" else logits.argmax(-1)

    output = _output(answer, model.num_classes)
    get_routes = _metadata_routes(name, model.input_shape, output)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: one connection for a whole verification
        # Headers and body go out as two writes; with Nagle's algorithm the second
        # waits for the client's delayed ACK, 40 ms a request.
        disable_nagle_algorithm = True
        server_version = SERVER_NAME
        timeout = limits.timeout  # socket timeout: a silent client loses its connection

        def log_message(self, *args):  # quiet: a verification sends thousands of requests
            pass

        def handle(self):
            try:
                super().handle()
            except ConnectionError:  # the client hung up: nobody to answer, nothing to report
                pass

        def send_json(self, status: int, obj) -> None:
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:  # HTTP/1.0, or asked: tells the client not to reuse it
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?")[0].rstrip("/")
            path = _VERSION.sub(r"\1", path)  # one model, whatever version is asked
            if path in get_routes:
                self.send_json(200, get_routes[path])
            else:
                self.send_json(404, {"error": f"no resource {path}"})

        def do_POST(self):
            length = self.headers.get("Content-Length", "")
            length = int(length) if length.isascii() and length.isdigit() else -1
            if not 0 <= length <= MAX_BODY:
                self.close_connection = True
                return self.send_json(413 if length > MAX_BODY else 411, {"error": "bad length"})
            body = self.rfile.read(length)
            if len(body) < length:  # the client hung up mid-request
                self.close_connection = True
                return
            found = protocols.parse_path(self.path.split("?")[0])
            if found is None or found[1] != name:
                return self.send_json(404, {"error": f"no model at {self.path}; this is {name!r}"})
            protocol = found[0]
            if protocol == "v2" and "Inference-Header-Content-Length" in self.headers:
                return self.send_json(
                    400,
                    {
                        "error": "binary tensor data (Inference-Header-Content-Length) is not "
                        "supported; send the tensors as JSON"
                    },
                )
            self.send_json(*_infer(body, protocol, name, output["name"], predict, limits))

    return Handler


_VERSION = re.compile(r"^(/v2/models/[^/]+)/versions/[^/]+")


def _version() -> str:
    try:
        return importlib.metadata.version("fingerprinting")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"


class BoundedServer(http.server.ThreadingHTTPServer):
    """A thread per connection, for at most `max_connections` connections: one
    more is answered 503 and closed at once, so that idle or stalled clients
    cannot take every thread (and a well-behaved client's retry gets through)."""

    daemon_threads = True

    def __init__(self, address, handler, max_connections: int):
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            try:
                request.settimeout(1.0)
                request.sendall(_BUSY)
            except OSError:
                pass
            return self.shutdown_request(request)
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread took the connection
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):  # ThreadingMixIn's, and a slot
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 (as socketserver: reported, the server lives on)
            self.handle_error(request, client_address)
        finally:
            self._slots.release()  # before the client sees the connection close
            self.shutdown_request(request)


def make_server(
    model: CheckpointModel,
    *,
    name: str = "model",
    answer: str = "scores",
    host: str = "127.0.0.1",
    port: int = 0,
    limits: Limits = Limits(),
) -> BoundedServer:
    """A bound server (call `serve_forever`); port 0 takes a free one."""
    if answer not in ANSWERS:
        raise errors.ConfigError(f"unknown answer {answer!r}; expected {' or '.join(ANSWERS)}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise errors.ConfigError(f"model name {name!r}: use letters, digits, '_', '.', '-'")
    limits.check()
    handler = make_handler(model, name, answer, limits)
    return BoundedServer((host, port), handler, limits.max_connections)


def urls(server: BoundedServer, name: str) -> tuple[str, str]:
    host, port = server.server_address[:2]
    base = f"http://{host}:{port}"
    return f"{base}/v1/models/{name}:predict", f"{base}/v2/models/{name}/infer"
