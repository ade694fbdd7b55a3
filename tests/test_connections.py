"""Any conforming prediction server works (issue 28), and no server can crash
the verifier.

Against servers that close connections (HTTP/1.0, `Connection: close`, a
silent drop after a few requests), answer in chunks, or publish no usable V2
metadata, `verify` gives the verdict it gives against `serve` and sends every
input once. Redirects are refused by name and never followed. Whatever bytes a
server sends end in a verdict or one `SuspectError`, in bounded time (a
property test). `serve` answers HTTP/1.0 clients whole. TLS: test_tls.py.
"""

import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fingerprinting import artifact
from fingerprinting import suspects
from fingerprinting.suspects import client as http_client
from fingerprinting.suspects import protocols

import _faulty
from _cli import assert_one_line_error, run
from _faulty import ScriptedServer, http10, pixel_label, serving, url, verdict

# No retries: a connection the server closed must be replaced, not retried.
OPTIONS = http_client.Options(timeout=10.0, retries=0)
X = np.random.default_rng(1).integers(0, 256, (3, 2, 2, 1), dtype=np.uint8)
FLOOD = json.dumps({"predictions": [0] * (1 << 20)}).encode()  # 3 MiB: over the cap for X


@pytest.fixture(scope="module")
def fp():
    return _faulty.fingerprint()


def chunked_answer(body: bytes, size: int = 65536, first_size: bytes | None = None) -> bytes:
    """An HTTP/1.1 200 with `body` in chunks of `size` bytes and no Content-Length;
    `first_size` replaces the first chunk's size line."""
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    lines = [b"%x" % len(c) for c in chunks]
    if first_size is not None and lines:
        lines[0] = first_size
    framed = b"".join(line + b"\r\n" + c + b"\r\n" for line, c in zip(lines, chunks))
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + framed + b"0\r\n\r\n"


def ask(api: str, options=OPTIONS) -> np.ndarray:
    suspect = suspects.load_suspect(api, http=options)
    suspect.num_classes = 10  # as `verify_suspect` sets it
    return suspect.predict(X)


# --- Servers that close connections, chunk answers, or lack metadata. ---


def connection_close_every(k: int):
    def variant(handler):
        class Handler(handler):
            def end_headers(self):
                self.server.answers = getattr(self.server, "answers", 0) + 1
                if self.server.answers % k == 0:
                    self.send_header("Connection", "close")
                super().end_headers()

        return Handler

    return variant


def silent_close_after(n: int):
    def variant(handler):
        class Handler(handler):
            answered = 0

            def handle_one_request(self):
                super().handle_one_request()
                self.answered += 1
                # No `Connection: close`: the client learns it on its next request.
                self.close_connection = self.close_connection or self.answered == n

        return Handler

    return variant


def chunked(handler):
    class Handler(handler):
        def send_json(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 100):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(body[i : i + 100]), body[i : i + 100]))
            self.wfile.write(b"0\r\n\r\n")

    return Handler


def metadata(status: int, body: bytes):
    def variant(handler):
        class Handler(handler):
            def do_GET(self):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    return variant


CONNECTIONS = {
    "http/1.0": http10,
    "connection-close": connection_close_every(1),
    "connection-close-every-third": connection_close_every(3),
    "silent-close-after-2": silent_close_after(2),
    "chunked": chunked,
}
METADATA = {
    "metadata-empty": metadata(200, b""),
    "metadata-404": metadata(404, b'{"error": "not here"}'),
    "metadata-without-inputs": metadata(200, b'{"name": "m", "outputs": [{"name": "y"}]}'),
}
CASES = [(name, protocol) for name in CONNECTIONS for protocol in protocols.PROTOCOLS]
CASES += [(name, "v2") for name in METADATA]


@pytest.fixture(scope="module")
def reference(fp):
    """The verdict against `serve` itself, by protocol."""
    with serving() as (model, base):
        return {p: verdict(fp, url(base, p, "m"), OPTIONS) for p in protocols.PROTOCOLS}


@pytest.mark.parametrize("name,protocol", CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_the_verdict_of_serve_whatever_the_connection(fp, reference, name, protocol):
    with serving({**CONNECTIONS, **METADATA}[name]) as (model, base):
        result = verdict(fp, url(base, protocol, "m"), OPTIONS)
    assert result == reference[protocol]
    assert result["fingerprint_accuracy"] == 1.0 and result["retries"] == 0
    assert model.inputs == result["n_queries"] == 48  # each input sent once


@pytest.mark.parametrize(
    "first_size,match",
    [
        (None, r"answer too large \(over the cap of \d+ bytes for this request\)"),
        # http.client reads a chunk of size -1 to the close: the bytes read are capped
        (b"-1", r"answer too large \(over \d+ bytes for this request, counting headers and"),
    ],
)
def test_chunked_answers_are_capped(first_size, match):
    answer = chunked_answer(FLOOD, first_size=first_size)
    with ScriptedServer(lambda *request: (answer, False)) as srv:
        with pytest.raises(suspects.SuspectError, match=match):
            ask(url(srv.base, "v1", "m"))


# --- Redirects: refused by name, never followed. ---


class Redirecting(http.server.BaseHTTPRequestHandler):
    """Sends every request to `server.location` with status `server.status`."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def redirect(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(self.server.status)
        self.send_header("Location", self.server.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = redirect


@pytest.fixture(scope="module")
def elsewhere():
    """Where redirects point: a server that records every request it gets."""
    base, srv = _faulty.start(_faulty.HostileHandler)
    yield base, srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def redirecting():
    base, srv = _faulty.start(Redirecting)
    yield base, srv
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("protocol", protocols.PROTOCOLS)
def test_redirects_are_named_and_never_followed(redirecting, elsewhere, status, protocol):
    base, srv = redirecting
    srv.status, srv.location = status, url(elsewhere[0], protocol, "plain")
    options = http_client.Options(
        timeout=5.0, retries=2, backoff=0.01, headers=(("Authorization", "Bearer k"),)
    )
    elsewhere[1].seen.clear()
    with pytest.raises(suspects.SuspectError) as e:
        ask(url(base, protocol, "m"), options)
    assert str(e.value) == (
        f"{url(base, protocol, 'm')}: HTTP {status} redirects to {srv.location}; redirects "
        "are not followed (name that URL as the suspect if it is the same API)"
    )
    assert elsewhere[1].seen == []  # neither the request nor its API key went there


def test_cli_redirect_is_one_error_line(fp, redirecting, tmp_path):
    path = str(tmp_path / "fp.npz")
    artifact.save(path, fp)
    base, srv = redirecting
    srv.status, srv.location = 307, "https://elsewhere.invalid/\x1b[2J"  # escaped when shown
    api = url(base, "v1", "m")
    proc = run("verify", f"--fingerprint={path}", f"--suspect={api}", check=False)
    assert_one_line_error(proc, "HTTP 307 redirects to https://elsewhere.invalid/\\x1b[2J;")
    assert proc.stdout == ""


# --- Whatever a server sends: a verdict or one SuspectError, in bounded time. ---

# The same examples on every run; HYPOTHESIS_EXPLORE=1 draws new ones.
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=not os.environ.get("HYPOTHESIS_EXPLORE"),
)
HOSTILE = http_client.Options(timeout=0.25, retries=1, backoff=0.01, max_backoff=0.02)
SLACK = 1.0  # seconds for everything but waiting on the server, on a loaded machine

# Each list leans to what a conforming server sends, so that verdicts are
# common enough to check; "junk" draws random bytes.
STATUS_LINES = (
    [b"HTTP/1.1 200 OK"] * 12
    + [b"HTTP/1.0 200 OK"] * 4
    + [
        b"HTTP/1.1 200",
        b"HTTP/1.1 204 No Content",
        b"HTTP/1.1 103 Early Hints",
        b"HTTP/1.1 301 Moved",
        b"HTTP/1.1 404 Not Found",
        b"HTTP/1.1 429 Slow Down",
        b"HTTP/1.1 503 Busy",
        b"HTTP/2 200",
        b"HTTP/1.1 2000 OK",
        b"HTTP/1.1 abc",
        b"ICY 200 OK",
        b"",
        b"HTTP/1.1 200 " + b"x" * 70_000,  # over http.client's 64 KiB line
        "junk",
    ]
)
HEADERS = [b"Content-Type: application/json", b"Server: x", b"Connection: keep-alive"] * 3 + [
    b"Connection: close",
    b"Connection: Close",
    b"Connection: close, TE",
    b"Connection: upgrade",
    b"Connection: \x01\xff",
    b"Keep-Alive: timeout=0, max=1",
    b"Retry-After: 999999999",
    b"Retry-After: Wed, 21 Oct 2015 07:28:00 GMT",
    b"Location: http://elsewhere.invalid/\x1b[2J",
    b"Transfer-Encoding: gzip",
    b"Transfer-Encoding: chunked",
    b"Content-Length: 3",
    b"X-Huge: " + b"a" * 70_000,
    b"X-Big: " + b"b" * 60_000,
    b"\r\n".join(b"X-%d: 1" % i for i in range(120)),  # over http.client's 100
    b"no colon here",
    b": no name",
    b" folded: line",
]
LENGTHS = {  # Content-Length values, given the body's length
    "exact": lambda n: [b"%d" % n],
    "longer": lambda n: [b"%d" % (n + 7)],
    "shorter": lambda n: [b"%d" % max(n - 7, 0)],
    "negative": lambda n: [b"-1"],
    "signed": lambda n: [b"+%d" % n],
    "underscored": lambda n: [b"%d_0" % n],
    "junk": lambda n: [b"twelve"],
    "huge": lambda n: [b"9" * 5000],  # more digits than Python's int() takes
    "duplicated": lambda n: [b"%d" % n] * 2,
    "conflicting": lambda n: [b"%d" % n, b"%d" % (n + 7)],
}
CHUNK_SIZES = [None] * 4 + [b"-1", b"-5", b"zz", b"f" * 20, b"+8", b"8;ext=1", b""]


@st.composite
def answers(draw):
    """How a server answers one request (`render` makes the bytes)."""
    junk = lambda choice: draw(st.binary(max_size=40)) if choice == "junk" else choice
    return dict(
        continue_first=draw(st.booleans()),
        status=junk(draw(st.sampled_from(STATUS_LINES))),
        headers=draw(st.lists(st.sampled_from(HEADERS), max_size=2)),
        body=junk(draw(st.sampled_from(["honest"] * 8 + ["short", "empty", "flood", "junk"]))),
        framing=draw(st.sampled_from(["length", "chunked", "none"])),
        length=draw(st.sampled_from(["exact"] * 5 + sorted(LENGTHS))),
        chunk=draw(st.integers(1, 40)),
        first_size=draw(st.sampled_from(CHUNK_SIZES)),
        end=draw(st.sampled_from(["close", "keep"] * 2 + ["cut"])),
        cut=draw(st.floats(0, 1)),
    )


def honest_labels(method: str, path: str, request: bytes):
    """The labels a conforming server answers a POST with; None for a GET."""
    if method != "POST":
        return None
    protocol, _ = protocols.parse_path(path)
    parse = protocols.parse_v1_request if protocol == "v1" else protocols.parse_v2_request
    return protocol, pixel_label(parse(json.loads(request)))


def body_of(kind, method: str, path: str, request: bytes) -> bytes:
    if isinstance(kind, bytes) or kind in ("empty", "flood"):
        return {"empty": b"", "flood": FLOOD}.get(kind, kind)
    answered = honest_labels(method, path, request)
    if answered is None:  # V2 metadata
        return json.dumps({"inputs": [{"name": "input"}], "outputs": [{"name": "y"}]}).encode()
    protocol, labels = answered
    labels = labels[:-1] if kind == "short" else labels
    if protocol == "v1":
        return json.dumps(protocols.encode_v1_answer(labels)).encode()
    return json.dumps(protocols.encode_v2_answer(labels, "m")).encode()


def render(answer: dict, method: str, path: str, request: bytes) -> tuple[bytes, bool]:
    """(bytes to send, whether to keep the connection) for one request."""
    body = body_of(answer["body"], method, path, request)
    headers = list(answer["headers"])
    if answer["framing"] == "length":
        headers += [b"Content-Length: " + v for v in LENGTHS[answer["length"]](len(body))]
    elif answer["framing"] == "chunked":
        framed = chunked_answer(body, answer["chunk"], answer["first_size"])
        body = framed.split(b"\r\n\r\n", 1)[1]
        headers.append(b"Transfer-Encoding: chunked")
    head = b"\r\n".join([answer["status"], *headers]) + b"\r\n\r\n"
    data = (b"HTTP/1.1 100 Continue\r\n\r\n" if answer["continue_first"] else b"") + head + body
    if answer["end"] == "cut":
        return data[: int(len(data) * answer["cut"])], False
    return data, answer["end"] == "keep"


@SETTINGS
@given(script=st.lists(answers(), min_size=1, max_size=3), protocol=st.sampled_from(["v1", "v2"]))
def test_whatever_a_server_sends(script, protocol):
    """The n-th request gets the n-th answer of the script (the last one after)."""

    def answer(number, method, path, request):
        return render(script[min(number, len(script) - 1)], method, path, request)

    with ScriptedServer(answer) as srv:
        start = time.monotonic()
        try:
            labels = ask(url(srv.base, protocol, "m"), HOSTILE)
        except suspects.SuspectError as e:
            labels, message = None, str(e)
        seconds = time.monotonic() - start
    event("verdict" if labels is not None else "error")  # --hypothesis-show-statistics
    if labels is None:
        assert message.isprintable(), message  # one line, the server's text escaped
    else:
        np.testing.assert_array_equal(labels, pixel_label(X))  # never a wrong verdict
    exchanges, tries = (2 if protocol == "v2" else 1), HOSTILE.retries + 1
    waits = HOSTILE.retries * HOSTILE.max_backoff
    assert seconds < exchanges * (tries * HOSTILE.timeout + waits) + SLACK
    assert srv.requests <= exchanges * tries * 2  # a kept connection found closed: once more


def test_cli_garbled_framing_is_one_error_line(fp, tmp_path):
    """http.client raises ValueError on a negative chunk size: once a traceback."""
    path = str(tmp_path / "fp.npz")
    artifact.save(path, fp)
    answer = chunked_answer(b'{"predictions": [0]}', first_size=b"-5")
    with ScriptedServer(lambda *request: (answer, False)) as srv:
        api = url(srv.base, "v1", "m")
        args = (f"--fingerprint={path}", f"--suspect={api}", "--retries=0")
        proc = run("verify", *args, check=False)
    assert_one_line_error(proc, f"{api}: connection failed (ValueError: ")
    assert proc.stdout == ""


# --- `serve` as a server others call. ---


@pytest.fixture(scope="module")
def served():
    with serving(answer="labels") as (model, base):
        yield base


IMAGES = np.random.default_rng(2).integers(0, 256, (2, 8, 8, 1), dtype=np.uint8)
LABELS = {"predictions": pixel_label(IMAGES).tolist()}


def instances() -> bytes:
    return json.dumps(protocols.encode_v1(IMAGES)).encode()


def until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends; a server that does not close fails the test."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


CLOSE = b"Connection: close\r\n"


@pytest.mark.parametrize(
    "version,connection", [(b"HTTP/1.0", b""), (b"HTTP/1.0", CLOSE), (b"HTTP/1.1", CLOSE)]
)
def test_serve_answers_whole_and_closes(served, version, connection):
    body = instances()
    request = b"POST /v1/models/m:predict %s\r\nContent-Length: %d\r\n" % (version, len(body))
    port = int(served.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request + connection + b"\r\n" + body)
        head, _, answer = until_closed(sock).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK" and "Connection: close" in lines
    assert f"Content-Length: {len(answer)}" in lines
    assert json.loads(answer) == LABELS


def test_serve_answers_http_client_asking_to_close(served):
    conn = http.client.HTTPConnection(served.removeprefix("http://"), timeout=5)
    conn.request("GET", "/v2/models/m", headers={"Connection": "close"})
    response = conn.getresponse()
    meta = json.loads(response.read())
    assert response.status == 200 and response.will_close and meta["inputs"][0]["name"] == "input"
    conn.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_serve_answers_curl_http10(served):
    command = ["curl", "--http1.0", "-sS", "--max-time", "10", "--data-binary", "@-"]
    proc = subprocess.run(
        [*command, f"{served}/v1/models/m:predict"],
        input=instances(),
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert json.loads(proc.stdout) == LABELS
