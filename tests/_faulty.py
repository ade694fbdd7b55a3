"""A prediction server that misbehaves on purpose, for the tests of remote suspects.

It answers honestly (label = a function of the pixels) or, chosen by the model
name in the URL, slowly, with the wrong number of answers, with something that
is not JSON, with HTTP 500 (always, or once), labels out of range, NaN scores,
or 404; model 'auth' answers only requests that carry the API key SECRET.
"""

import http.server
import json
import socket
import threading
import time

import numpy as np

from fingerprinting import remote

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
        protocol, mode = remote.parse_path(self.path)
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
            remote.encode_v1_answer(labels)
            if protocol == "v1"
            else remote.encode_v2_answer(labels, mode)
        )
        self.reply(200, json.dumps(answer).encode())


def start(handler=None):
    """A server on a free 127.0.0.1 port in a daemon thread: (base URL, server)."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler or FaultyHandler)
    srv.daemon_threads = True
    srv.hits = {}
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
