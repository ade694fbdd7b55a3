"""The HTTP client and both protocol codecs, against a faulty server in a thread.

The server below answers honestly (label = a function of the pixels) or
misbehaves on purpose, chosen by the model name in the URL: slow, wrong number
of answers, not JSON, HTTP 500 (always, or once), labels out of range, NaN
scores. Each failure must give one error naming it and no verdict.
"""

import dataclasses
import json
import time

import numpy as np
import pytest

from fingerprinting import artifact
from fingerprinting import fingerprint as fp_lib
from fingerprinting import suspects
from fingerprinting.suspects import client as http_client
from fingerprinting.suspects import protocols

import _faulty
from _cli import assert_one_line_error, run
from _faulty import free_port, start, url

# Retries without waiting. The timeout is generous: tests count requests, and on
# a loaded machine a short one turns a slow answer into a retry.
FAST = http_client.Options(timeout=10.0, retries=2, backoff=0.01)


@pytest.mark.parametrize(
    "path,want",
    [
        ("/v1/models/mnist:predict", ("v1", "mnist")),
        ("/gateway/v1/models/m-2/versions/7:predict", ("v1", "m-2")),
        ("/v2/models/resnet/infer", ("v2", "resnet")),
        ("/v2/models/resnet/versions/1/infer", ("v2", "resnet")),
        ("/v2/models/resnet", None),
        ("/predict", None),
    ],
)
def test_parse_path(path, want):
    assert protocols.parse_path(path) == want


def test_codecs_round_trip():
    x = np.random.default_rng(0).integers(0, 256, (3, 4, 4, 2), dtype=np.uint8)
    np.testing.assert_allclose(protocols.parse_v1_request(protocols.encode_v1(x)), x / 255.0)
    np.testing.assert_allclose(
        protocols.parse_v1_request(protocols.encode_v1(x.astype(np.float32) / 255)),
        x / 255.0,
        atol=1e-7,
    )
    request = json.loads(json.dumps(protocols.encode_v2(x, "pixels", "label")))
    assert request["inputs"][0]["datatype"] == "UINT8" and request["outputs"] == [{"name": "label"}]
    np.testing.assert_allclose(protocols.parse_v2_request(request), x / 255.0)
    f = protocols.encode_v2(x.astype(np.float32) / 255)
    assert f["inputs"][0]["datatype"] == "FP32"
    np.testing.assert_allclose(protocols.parse_v2_request(f), x / 255.0, atol=1e-7)
    scores = np.array([[0.1, 0.9], [0.7, 0.3]], np.float32)
    labels = np.array([1, 0])
    for out in (scores, labels):
        v1 = json.loads(json.dumps(protocols.encode_v1_answer(out)))
        np.testing.assert_allclose(protocols.decode_v1(v1, "s"), out)
        v2 = json.loads(json.dumps(protocols.encode_v2_answer(out, "m")))
        np.testing.assert_allclose(protocols.decode_v2(v2, "s"), out)
    nested = {
        "outputs": [{"name": "y", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]}]
    }
    assert protocols.decode_v2(nested, "s").shape == (2, 2)


@pytest.mark.parametrize(
    "answer,match",
    [
        ({"instances": [1]}, 'no "outputs"'),
        ({"outputs": []}, 'no "outputs"'),
        ({"outputs": [{"name": "y", "shape": [3], "data": [1, 2]}]}, "does not hold 3 values"),
        ({"outputs": [{"name": "y", "shape": "3", "data": [1, 2, 3]}]}, "no valid shape"),
        ({"outputs": [{"name": "y", "shape": [2], "data": [[1], [2, 3]]}]}, "does not hold"),
    ],
)
def test_malformed_v2_answers(answer, match):
    with pytest.raises(suspects.SuspectError, match=match):
        protocols.decode_v2(answer, "s")
    with pytest.raises(suspects.SuspectError, match='no "predictions"'):
        protocols.decode_v1([1, 2], "s")


@pytest.mark.parametrize(
    "parse,request_,match",
    [
        (protocols.parse_v1_request, {"inputs": [[1]]}, "instances"),
        (protocols.parse_v1_request, {"instances": [[0, 300]]}, "0..255"),
        (protocols.parse_v1_request, {"instances": [[0.5, 1.5]]}, r"\[0, 1\]"),
        (protocols.parse_v1_request, {"instances": [[1, 2], [3]]}, "different shapes"),
        (protocols.parse_v1_request, {"instances": [["a"]]}, "not numbers"),
        (protocols.parse_v2_request, {"inputs": []}, "one tensor"),
        (
            protocols.parse_v2_request,
            {"inputs": [{"name": "x", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}]},
            "datatype",
        ),
        (
            protocols.parse_v2_request,
            {"inputs": [{"name": "x", "shape": [3], "datatype": "UINT8", "data": [1, 2]}]},
            "do not fill",
        ),
        (  # JSON's false is a Python bool, which is an int (found by hypothesis)
            protocols.parse_v2_request,
            {"inputs": [{"name": "", "shape": [False], "datatype": "UINT8", "data": []}]},
            "no valid shape",
        ),
    ],
)
def test_server_side_parse_errors(parse, request_, match):
    with pytest.raises(ValueError, match=match):
        parse(request_)


@pytest.fixture(scope="module")
def server():
    base, srv = start()
    yield base, srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def fp():
    return _faulty.fingerprint()


@pytest.mark.parametrize("protocol", protocols.PROTOCOLS)
@pytest.mark.parametrize("pixels", suspects.PIXELS)
def test_honest_server_verifies_through_the_shuffle(server, fp, protocol, pixels):
    suspect = suspects.load_suspect(
        url(server[0], protocol, "honest"), pixels=pixels, batch_size=10, http=FAST
    )
    res = fp_lib.verify_suspect(fp, suspect)
    assert res["fingerprint_accuracy"] == 1.0 and res["decoy_accuracy"] == 1.0
    assert res["verified"] and res["protocol"] == f"http-{protocol}"
    assert res["n_queries"] == 48 and res["requests"] == 5 and res["retries"] == 0


def test_transient_failure_is_retried(server, fp):
    suspect = suspects.load_suspect(url(server[0], "v1", "flaky"), batch_size=48, http=FAST)
    res = fp_lib.verify_suspect(fp, suspect)
    assert res["fingerprint_accuracy"] == 1.0 and res["retries"] == 1 and res["requests"] == 1


@pytest.mark.parametrize(
    "protocol,mode,match",
    [
        ("v1", "slow", "timed out .* after 2 tries"),
        ("v2", "short", "47 answers for 48 inputs"),
        ("v1", "garbage", "malformed JSON"),
        ("v2", "garbage", "malformed JSON"),
        ("v1", "error500", "HTTP 500: internal error after 3 tries"),
        ("v1", "range", r"labels out of range 0..9"),
        ("v2", "range", r"labels out of range 0..9"),
        ("v1", "nan", "NaN"),
        ("v2", "nan", "NaN"),
    ],
)
def test_faults_raise_one_clear_error(server, fp, protocol, mode, match):
    options = http_client.Options(timeout=0.3, retries=1 if mode == "slow" else 2, backoff=0.01)
    suspect = suspects.load_suspect(url(server[0], protocol, mode), batch_size=48, http=options)
    with pytest.raises(suspects.SuspectError, match=match) as e:
        fp_lib.verify_suspect(fp, suspect)
    assert "\n" not in str(e.value) and url(server[0], protocol, mode) in str(e.value)


def test_client_errors_are_not_retried(server, fp):
    base, srv = server
    suspect = suspects.load_suspect(url(base, "v1", "missing"), http=FAST)
    with pytest.raises(suspects.SuspectError, match="HTTP 404: no such model$"):
        fp_lib.verify_suspect(fp, suspect)
    assert srv.hits["missing"] == 1


def test_refused_connection(fp):
    suspect = suspects.load_suspect(
        f"http://127.0.0.1:{free_port()}/v1/models/m:predict", http=FAST
    )
    with pytest.raises(suspects.SuspectError, match="connection refused after 3 tries"):
        fp_lib.verify_suspect(fp, suspect)


def test_rate_limit_spaces_requests(server, fp):
    options = http_client.Options(timeout=2, rate_limit=20.0)
    suspect = suspects.load_suspect(url(server[0], "v1", "honest"), batch_size=12, http=options)
    start = time.monotonic()
    res = fp_lib.verify_suspect(fp, suspect)
    assert res["requests"] == 4 and time.monotonic() - start >= 3 / 20.0


@pytest.mark.parametrize(
    "options,match",
    [
        (http_client.Options(timeout=0), "timeout = 0"),
        (http_client.Options(retries=-1), "retries = -1"),
        (http_client.Options(rate_limit=-2), "rate_limit = -2"),
        (http_client.Options(protocol="grpc"), "unknown protocol"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(suspects.SuspectError, match=match):
        suspects.load_suspect("http://127.0.0.1:1/v1/models/m:predict", http=options)


def test_cli_exits_2_without_a_verdict(server, fp, tmp_path):
    path = str(tmp_path / "fp.npz")
    artifact.save(path, fp)
    for protocol, mode, match in (
        ("v1", "garbage", "malformed JSON"),
        ("v2", "error500", "HTTP 500"),
    ):
        proc = run(
            "verify",
            f"--fingerprint={path}",
            f"--suspect={url(server[0], protocol, mode)}",
            "--retries=1",
            "--backoff=0.01",
            check=False,
        )
        assert_one_line_error(proc, match)
        assert proc.stdout == ""  # no verdict


def test_api_key_header_from_the_environment(server, fp, tmp_path):
    path = str(tmp_path / "fp.npz")
    artifact.save(path, fp)
    api = url(server[0], "v2", "auth")
    args = ("verify", f"--fingerprint={path}", f"--suspect={api}", "--retries=0")
    header = "--header=Authorization: Bearer $API_TOKEN"
    proc = run(*args, header, env={"API_TOKEN": _faulty.SECRET})
    assert json.loads(proc.stdout)["fingerprint_accuracy"] == 1.0
    for extra, env, match in (
        ((), {}, "HTTP 401: unauthorized"),
        ((header,), {"API_TOKEN": "wrong"}, "HTTP 401: unauthorized"),
        ((header,), {}, "environment variable API_TOKEN is not set"),
        ((f"--header={_faulty.SECRET}",), {}, "must be given as 'Name: value'"),
        (("--header=Bad Name: x",), {}, "is not a valid name"),
    ):
        proc = run(*args, *extra, env=env, check=False)
        assert_one_line_error(proc, match)
        assert _faulty.SECRET not in proc.stderr + proc.stdout


def test_headers_reach_the_server_and_are_checked(server, fp):
    options = dataclasses.replace(FAST, headers=(("Authorization", f"Bearer {_faulty.SECRET}"),))
    suspect = suspects.load_suspect(url(server[0], "v1", "auth"), http=options)
    assert fp_lib.verify_suspect(fp, suspect)["fingerprint_accuracy"] == 1.0
    options = dataclasses.replace(FAST, headers=(("X-Key", "a\r\nInjected: 1"),))
    with pytest.raises(suspects.SuspectError, match="not a valid header"):
        suspects.load_suspect(url(server[0], "v1", "auth"), http=options)
