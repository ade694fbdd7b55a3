"""Prediction servers that misbehave on purpose, for the tests of remote suspects.

`FaultyHandler` answers honestly (label = a function of the pixels) or, chosen
by the model name in the URL, slowly, with the wrong number of answers, with
something that is not JSON, with HTTP 500 (always, or once), labels out of
range, NaN scores, or 404; model 'auth' answers only requests that carry the
API key SECRET. `HostileHandler` is a thief's server, out to stall, exhaust or
fool the verifier. Both listen on 127.0.0.1 only.
"""

import http.server
import json
import socket
import threading
import time

import numpy as np

from fingerprinting.suspects import protocols

SECRET = "s3cret-key"


def pixel_label(x):
    """The honest model: a label that depends on every pixel."""
    x = np.asarray(x, np.float64)
    x = np.round(x * 255) if x.max(initial=0) <= 1 else x  # float pixels come in [0, 1]
    return (x.reshape(len(x), -1).sum(1) % 10).astype(int)


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
