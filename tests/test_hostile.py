"""Hostile suspects: the verifier against servers a thief controls, and `serve`
against clients out to exhaust it (issue 14). One test per threat, on 127.0.0.1
only, each bounded in time: a stalled test is a failed one.

The servers are `_faulty.HostileHandler` (picked by the model name in the URL)
and `server_lib.make_server` around a stand-in model that records its batches.
"""

import dataclasses
import datetime
import email.utils
import http.client
import json
import socket
import threading
import time

import numpy as np
import pytest

from fingerprinting import artifact
from fingerprinting import fingerprint as fp_lib
from fingerprinting import progress
from fingerprinting import stats
from fingerprinting import suspects
from fingerprinting.suspects import client as http_client
from fingerprinting.suspects import protocols
from fingerprinting.suspects import server as server_lib

import _faulty
from _cli import assert_one_line_error, run
from _faulty import HostileHandler, start, url

X = np.zeros((1, 2, 2, 1), np.uint8)  # one black input: the honest label is 0
ONCE = http_client.Options(timeout=2.0, retries=0)


@pytest.fixture(scope="module")
def hostile():
    base, srv = start(HostileHandler)
    yield base, srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def logs(monkeypatch):
    """What the client says on stderr (progress is quiet in tests)."""
    lines = []
    monkeypatch.setattr(progress, "log", lines.append)
    return lines


def ask(api: str, options=ONCE, num_classes=10) -> np.ndarray:
    suspect = suspects.load_suspect(api, http=options)
    suspect.num_classes = num_classes  # as `verify_suspect` sets it
    return suspect.predict(X)


# --- The verifier's side: the client in suspects/client.py. ---


def test_timeout_bounds_the_whole_answer(hostile):
    """19 bytes over 3.8 s, each read well within the timeout: refused at 0.5 s."""
    options = http_client.Options(timeout=0.5, retries=0)
    start_ = time.monotonic()
    with pytest.raises(suspects.SuspectError, match=r"timed out \(no whole answer within 0.5 s\)"):
        ask(url(hostile[0], "v1", "trickle"), options)
    assert time.monotonic() - start_ < 1.5


@pytest.mark.parametrize(
    "mode,match",
    [
        ("huge", r"too large \(1125899906842624 bytes declared; the cap for this request is \d+\)"),
        ("endless", r"answer too large \(over the cap of \d+ bytes for this request\)$"),
    ],
)
def test_answers_over_the_cap_are_refused(hostile, mode, match):
    with pytest.raises(suspects.SuspectError, match=match):
        ask(url(hostile[0], "v1", mode))


def test_the_cap_grows_with_the_request():
    assert (
        http_client.answer_cap(64, 10)
        < http_client.answer_cap(64, 1000)
        == http_client.answer_cap(64, None)
    )
    honest = json.dumps(protocols.encode_v2_answer(np.full((64, 1000), 1 / 3, np.float32), "m"))
    assert len(honest) < http_client.answer_cap(64, 1000) < 64 * 1024 * 1024


def test_deep_json_is_the_suspects_error(hostile):
    with pytest.raises(suspects.SuspectError, match=r"malformed JSON in the answer \(nested too"):
        ask(url(hostile[0], "v1", "nested"))
    deep = {"outputs": [{"name": "y", "shape": [1], "data": json.loads("[" * 900 + "]" * 900)}]}
    with pytest.raises(suspects.SuspectError, match="does not hold 1 values"):
        protocols.decode_v2(deep, "s")


def test_retry_after_is_capped(hostile, logs):
    options = http_client.Options(timeout=2.0, retries=2, backoff=0.01, max_backoff=0.05)
    start_ = time.monotonic()
    with pytest.raises(suspects.SuspectError, match="HTTP 503: busy after 3 tries"):
        ask(url(hostile[0], "v1", "busy"), options)
    assert time.monotonic() - start_ < 1.0
    assert [line.split("; ")[-1] for line in logs] == ["retry 1/2 in 0.05 s", "retry 2/2 in 0.05 s"]


def test_retry_after_reads_digits_or_a_date():
    soon = email.utils.format_datetime(
        datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=30), usegmt=True
    )
    assert http_client.retry_after("120") == 120.0
    assert 25 < http_client.retry_after(soon) <= 30
    assert http_client.retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # past
    for junk in ("²", "１２", "-5", "1e9", "soon", "", None, "9" * 400 + "x"):
        assert http_client.retry_after(junk) == 0.0, junk
    assert http_client.retry_after("9" * 400) == float("inf")  # then capped by max_backoff


def test_echoed_text_is_escaped(hostile):
    with pytest.raises(suspects.SuspectError) as e:
        ask(url(hostile[0], "v1", "forge"))
    message = str(e.value)
    assert message.isprintable() and "\x1b" not in message
    assert r"HTTP 403: \x1b[2J\x1b[H verified: SURROGATE" in message
    assert suspects.printable("a\rb\u202ec" + "x" * 300) == "a\\rb\\u202ec" + "x" * 195 + "..."


def test_a_secret_in_clear_text_is_warned_about(logs):
    key = (("Authorization", f"Bearer {_faulty.SECRET}"),)
    for api, headers, warned in (
        ("http://192.0.2.1:8500/v1/models/m:predict", key, True),  # TEST-NET: never contacted
        ("http://192.0.2.1:8500/v1/models/m:predict", (), False),
        ("https://192.0.2.1:8500/v1/models/m:predict", key, False),
        ("http://127.0.0.1:8500/v1/models/m:predict", key, False),
        ("http://[::1]:8500/v1/models/m:predict", key, False),
        ("http://localhost:8500/v1/models/m:predict", key, False),
    ):
        logs.clear()
        suspects.load_suspect(api, http=http_client.Options(headers=headers))  # V1: no request yet
        assert bool(logs) == warned, (api, logs)
        assert all("use https" in line and _faulty.SECRET not in line for line in logs)


def test_v2_metadata_keeps_the_query_and_is_retried(hostile):
    base, srv = hostile
    api = f"{url(base, 'v2', 'keyed')}?key={_faulty.SECRET}"
    srv.seen.clear()
    options = http_client.Options(timeout=2.0, retries=1, backoff=0.01)
    suspect = suspects.load_suspect(api, http=options)
    np.testing.assert_array_equal(suspect.predict(X), [0])  # the server wants "pixels"
    meta = f"/v2/models/keyed?key={_faulty.SECRET}"
    assert srv.seen == [("GET", meta), ("GET", meta), ("POST", api.removeprefix(base))]
    assert suspect.counters["retries"] == 1


def test_v2_without_metadata_says_so(hostile, logs):
    np.testing.assert_array_equal(ask(url(hostile[0], "v2", "plain")), [0])
    assert len(logs) == 1 and "no usable V2 metadata (HTTP 404: no metadata here)" in logs[0]


# --- The command line: one error line, exit 2. ---


@pytest.fixture(scope="module")
def fp_path(tmp_path_factory):
    x = np.zeros((4, 2, 2, 1), np.uint8)
    fp = artifact.Fingerprint(
        x=x,
        original=x,
        keys=np.zeros(4, np.int32),
        truth=np.zeros(4, np.int32),
        conferrability=np.ones(4, np.float32),
        meta={
            "num_classes": 10,
            "input_shape": [2, 2, 1],
            "theta": 0.7,
            "calibration": stats.calibrate([1, 2, 1], 4),
        },
    )
    path = str(tmp_path_factory.mktemp("hostile") / "fp.npz")
    artifact.save(path, fp)
    return path


def test_cli_deep_json_is_one_error_line(hostile, fp_path):
    api = url(hostile[0], "v1", "nested")
    proc = run("verify", f"--fingerprint={fp_path}", f"--suspect={api}", "--retries=0", check=False)
    assert_one_line_error(proc, f"{api}: malformed JSON in the answer (nested too deeply)")
    assert proc.stdout == ""


def test_cli_refuses_levels_that_invert_the_verdict(fp_path):
    proc = run("verify", f"--fingerprint={fp_path}", "--suspect=x:f", "--theta=1.5", check=False)
    assert_one_line_error(proc, "--theta=1.5: a threshold on accuracy lies in (0, 1]")
    for theta, significance, match in (
        (0.0, 0.01, "--theta=0"),
        (float("nan"), 0.01, "--theta=nan"),
        (None, 7.0, "--significance=7: a test's level lies in (0, 1)"),
        (None, 0.0, "--significance=0"),
        (None, 1.0, "--significance=1"),
    ):
        with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
            fp_lib.check_levels(theta, significance)
    fp_lib.check_levels(1.0, 0.5)
    fp_lib.check_levels(None, 1e-9)


# --- The server's side: `serve` against hostile clients. ---


class StandInModel:
    """What `serve` needs of a trained model; records the size of each batch."""

    name, input_shape, num_classes = "stand-in", (2, 2, 1), 3

    def __init__(self):
        self.batches = []

    def logits(self, x_NxHxWxC):
        self.batches.append(len(x_NxHxWxC))
        return np.zeros((len(x_NxHxWxC), self.num_classes), np.float32)


LIMITS = server_lib.Limits(timeout=0.3, max_connections=3, max_inputs=10, batch_size=4)


@pytest.fixture
def serving():
    """Starts `serve` around a stand-in model: serving(limits) -> (model, port)."""
    servers = []

    def start_(limits=LIMITS):
        model = StandInModel()
        server = server_lib.make_server(model, name="m", answer="labels", limits=limits)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return model, server.server_address[1]

    yield start_
    for server in servers:
        server.shutdown()
        server.server_close()


def post(port: int, body: bytes, path="/v1/models/m:predict"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def instances(n: int) -> bytes:
    return json.dumps({"instances": np.zeros((n, 2, 2, 1), int).tolist()}).encode()


def closed_by_server(sock: socket.socket) -> bytes:
    """All the server sends before it closes the connection; a refused client
    whose bytes the server never read may get a reset instead."""
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        data += b"(reset)"
    sock.close()
    return data


SILENT = {
    "idle": b"",
    "stalled-body": b"POST /v1/models/m:predict HTTP/1.1\r\nContent-Length: 67108864\r\n\r\n",
}


@pytest.mark.parametrize("opening", SILENT.values(), ids=SILENT.keys())
def test_silent_clients_are_dropped(serving, opening):
    _, port = serving()
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    for sock in clients:
        sock.sendall(opening)
    start_ = time.monotonic()
    assert [closed_by_server(sock) for sock in clients] == [b""] * 3  # no answer, closed
    assert time.monotonic() - start_ < 2.0  # LIMITS.timeout, with room for a loaded machine
    assert post(port, instances(1)) == (200, {"predictions": [0]})  # every slot is free again


@pytest.mark.parametrize("opening", SILENT.values(), ids=SILENT.keys())
def test_connections_are_capped(serving, opening):
    _, port = serving(dataclasses.replace(LIMITS, timeout=30.0))
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    for sock in held:
        sock.sendall(opening)
    for _ in range(7):  # accepted in order, after the three held ones
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(opening)
        answer = closed_by_server(sock)
        assert answer.startswith(b"HTTP/1.1 503 ") or answer == b"(reset)", answer
    for sock in held:
        sock.close()


def test_requests_are_capped_and_batched(serving):
    model, port = serving()
    status, answer = post(port, instances(11))
    assert status == 400
    assert answer["error"] == "11 inputs in one request; this server takes at most 10"
    v2 = {"inputs": [{"name": "x", "shape": [11, 2, 2, 1], "datatype": "UINT8", "data": [0] * 44}]}
    status, answer = post(port, json.dumps(v2).encode(), "/v2/models/m/infer")
    assert status == 400 and "11 inputs" in answer["error"]
    assert model.batches == []  # refused before the model
    assert post(port, instances(10)) == (200, {"predictions": [0] * 10})
    assert model.batches == [4, 4, 2]


def test_malformed_requests_are_400s(serving):
    _, port = serving()
    status, answer = post(port, b'{"instances": ' + b"[" * 20_000 + b"]" * 20_000 + b"}")
    assert status == 400 and answer["error"] == "the JSON is nested too deeply"
    status, answer = post(port, b'{"instances": ' + b"[" * 100 + b"0" + b"]" * 100 + b"}")
    assert status == 400
    assert post(port, instances(1))[0] == 200  # the server lives on


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="max_inputs = 0 must be positive"):
        server_lib.make_server(StandInModel(), limits=dataclasses.replace(LIMITS, max_inputs=0))
