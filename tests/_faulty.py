"""Prediction servers that misbehave on purpose, for the tests of remote suspects.

`FaultyHandler` answers honestly (label = a function of the pixels) or, chosen
by the model name in the URL, slowly, with the wrong number of answers, with
something that is not JSON, with HTTP 500 (always, or once), labels out of
range, NaN scores, or 404; model 'auth' answers only requests that carry the
API key SECRET. `HostileHandler` is a thief's server, out to stall, exhaust or
fool the verifier. `ScriptedServer` sends whatever bytes a test makes for each
request. `serving` puts the honest model (`PixelModel`) behind `serve`'s
handler, as it is or changed, and `fingerprint` is one that the honest model
matches. All listen on 127.0.0.1 only.
"""

import contextlib
import http.server
import json
import socket
import socketserver
import threading
import time

import numpy as np

from fingerprinting import artifact
from fingerprinting import fingerprint as fp_lib
from fingerprinting import stats
from fingerprinting import suspects
from fingerprinting.suspects import protocols
from fingerprinting.suspects import server as server_lib

SECRET = "s3cret-key"


def pixel_label(x):
    """The honest model: a label that depends on every pixel."""
    x = np.asarray(x, np.float64)
    x = np.round(x * 255) if x.max(initial=0) <= 1 else x  # float pixels come in [0, 1]
    return (x.reshape(len(x), -1).sum(1) % 10).astype(int)


def fingerprint(n: int = 12, decoys: int = 36) -> artifact.Fingerprint:
    """Keys and decoys labelled by `pixel_label`: the honest model matches every one."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)
    decoy_x = rng.integers(0, 256, (decoys, 8, 8, 1), dtype=np.uint8)
    return artifact.Fingerprint(
        x=x,
        original=x,
        keys=pixel_label(x).astype(np.int32),
        truth=np.zeros(n, np.int32),
        conferrability=np.ones(n, np.float32),
        meta={
            "num_classes": 10,
            "input_shape": [8, 8, 1],
            "theta": 0.7,
            "calibration": stats.calibrate([1, 2, 1], n),
        },
        decoy_x=decoy_x,
        decoy_truth=pixel_label(decoy_x).astype(np.int32),
    )


class PixelModel:
    """What `serve` needs of a trained model: `pixel_label` as logits. Counts
    the inputs it is asked, to tell a request sent twice."""

    name, input_shape, num_classes = "pixels", (8, 8, 1), 10

    def __init__(self):
        self.inputs = 0

    def logits(self, x_NxHxWxC):
        self.inputs += len(x_NxHxWxC)
        return np.eye(self.num_classes, dtype=np.float32)[pixel_label(x_NxHxWxC)]


class FaultyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body: bytes):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # V2 metadata: this server wants its input called "pixels"
        meta = {"inputs": [{"name": "pixels"}], "outputs": [{"name": "label"}]}
        self.reply(200, json.dumps(meta).encode())

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        protocol, mode = protocols.parse_path(self.path)
        self.server.hits[mode] = self.server.hits.get(mode, 0) + 1
        if mode == "auth" and self.headers.get("Authorization") != f"Bearer {SECRET}":
            return self.reply(401, b"unauthorized")
        if protocol == "v1":
            x = np.asarray(request["instances"])
        else:
            tensor = request["inputs"][0]
            if tensor["name"] != "pixels":
                return self.reply(400, b'{"error": "unknown input"}')
            x = np.asarray(tensor["data"]).reshape(tensor["shape"])
        labels = pixel_label(x)
        if mode == "slow":
            time.sleep(2.0)
        elif mode == "short":
            labels = labels[:-1]
        elif mode == "garbage":
            return self.reply(200, b"<html>Service Unavailable</html>")
        elif mode == "error500" or (mode == "flaky" and self.server.hits[mode] == 1):
            return self.reply(500, b"internal error")
        elif mode == "range":
            labels = labels + 10
        elif mode == "nan":
            labels = np.full((len(x), 10), np.nan)
        elif mode == "missing":
            return self.reply(404, b"no such model")
        answer = (
            protocols.encode_v1_answer(labels)
            if protocol == "v1"
            else protocols.encode_v2_answer(labels, mode)
        )
        self.reply(200, json.dumps(answer).encode())


TRICKLED = b'{"predictions":[0]}'  # 19 bytes: the honest answer for one black input
FORGED = "\x1b[2J\x1b[H\nverified: SURROGATE (p-value 1e-30)\n"  # clears the screen


class HostileHandler(http.server.BaseHTTPRequestHandler):
    """A thief's server; the model name in the URL picks the attack:
    - trickle: the 19-byte answer, one byte every 0.2 s (each read is quick);
    - huge: declares a body of 2^50 bytes;
    - endless: 20 MiB of answer without a length;
    - nested: a valid JSON answer nested 20,000 levels deep;
    - busy: HTTP 503 with Retry-After: 999999999 (31 years);
    - forge: an error whose body clears the screen and prints a fake verdict;
    - keyed: V2 with metadata, both only with ?key=SECRET in the URL; the
      first metadata request gets a 503;
    - anything else: V2 metadata is a 404, answers are honest.
    Every request's method and path (query included) lands in `server.seen`."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle(self):
        try:
            super().handle()
        except OSError:  # the verifier hung up mid-answer, as it should
            pass

    def reply(self, status, body: bytes, **headers):
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.server.seen.append(("GET", self.path))
        if not self.path.startswith("/v2/models/keyed"):
            return self.reply(404, b"no metadata here")
        if f"?key={SECRET}" not in self.path:
            return self.reply(401, b"no key")
        if sum(method == "GET" for method, _ in self.server.seen) == 1:
            return self.reply(503, b"starting up", **{"Retry-After": "0"})
        meta = {"inputs": [{"name": "pixels"}], "outputs": [{"name": "label"}]}
        self.reply(200, json.dumps(meta).encode())

    def do_POST(self):
        self.server.seen.append(("POST", self.path))
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        protocol, mode = protocols.parse_path(self.path.split("?")[0])
        if mode == "trickle":
            self.send_response(200)
            self.send_header("Content-Length", str(len(TRICKLED)))
            self.end_headers()
            for i in range(len(TRICKLED)):
                self.wfile.write(TRICKLED[i : i + 1])
                self.wfile.flush()
                time.sleep(0.2)
        elif mode == "huge":
            self.send_response(200)
            self.send_header("Content-Length", str(2**50))
            self.end_headers()
            self.wfile.write(b'{"predictions": [')
            self.close_connection = True
        elif mode == "endless":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b'{"predictions": [' + b"0, " * (7 << 20))
            self.close_connection = True
        elif mode == "nested":
            self.reply(200, b'{"predictions": ' + b"[" * 20_000 + b"]" * 20_000 + b"}")
        elif mode == "busy":
            self.reply(503, b"busy", **{"Retry-After": "999999999"})
        elif mode == "forge":
            self.reply(403, FORGED.encode())
        elif mode == "keyed" and f"?key={SECRET}" not in self.path:
            self.reply(401, b"no key")
        else:
            self.answer(protocol, mode, request)

    def answer(self, protocol, mode, request):
        if protocol == "v1":
            labels = pixel_label(request["instances"])
        else:
            tensor = request["inputs"][0]
            if tensor["name"] != ("pixels" if mode == "keyed" else "input"):
                return self.reply(400, b'{"error": "unknown input"}')
            labels = pixel_label(np.asarray(tensor["data"]).reshape(tensor["shape"]))
        answer = (
            protocols.encode_v1_answer(labels)
            if protocol == "v1"
            else protocols.encode_v2_answer(labels, mode)
        )
        self.reply(200, json.dumps(answer).encode())


@contextlib.contextmanager
def serving(variant=lambda handler: handler, answer="scores", wrap=None):
    """`serve`'s handler around `PixelModel`, changed by `variant`, its socket
    wrapped by `wrap` (TLS): (model, base URL)."""
    model = PixelModel()
    handler = variant(server_lib.make_handler(model, "m", answer))
    server = server_lib.BoundedServer(("127.0.0.1", 0), handler, max_connections=8)
    scheme = "http"
    if wrap is not None:
        server.socket, scheme = wrap(server.socket), "https"
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield model, f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def http10(handler):
    class Handler(handler):
        protocol_version = "HTTP/1.0"  # http.server then closes after every answer

    return Handler


def verdict(fp, api: str, options) -> dict:
    """The result of a verification in 10 requests, without what differs from run to run."""
    suspect = suspects.load_suspect(api, batch_size=5, http=options)
    result = fp_lib.verify_suspect(fp, suspect)
    return {k: v for k, v in result.items() if k not in ("suspect", "seconds")}


def read_request(rfile):
    """(method, path, body) of the next request on a connection; None at its end."""
    line = rfile.readline(1 << 16)
    if not line.strip():
        return None
    method, path = line.decode("latin-1").split()[:2]
    length = 0
    while (header := rfile.readline(1 << 16)).strip():
        name, _, value = header.decode("latin-1").partition(":")
        length = int(value) if name.strip().lower() == "content-length" else length
    return method, path, rfile.read(length)


class _ScriptedHandler(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            while (request := read_request(self.rfile)) is not None:
                number = self.server.requests
                self.server.requests += 1
                data, keep = self.server.answer(number, *request)
                self.wfile.write(data)
                if not keep:
                    return
        except OSError:  # the client gave up first, as it may
            pass


class ScriptedServer(socketserver.ThreadingTCPServer):
    """Raw bytes for each request: `answer(number, method, path, body)` returns
    the bytes to send and whether to keep the connection for another request
    (otherwise it closes once they are sent). Counts the requests it read."""

    daemon_threads = True

    def __init__(self, answer):
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.answer, self.requests = answer, 0
        self.base = f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


def start(handler=None):
    """A server on a free 127.0.0.1 port in a daemon thread: (base URL, server)."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler or FaultyHandler)
    srv.daemon_threads = True
    srv.hits, srv.seen = {}, []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{srv.server_address[1]}", srv


def url(base, protocol, mode):
    return (
        f"{base}/v1/models/{mode}:predict" if protocol == "v1" else f"{base}/v2/models/{mode}/infer"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
