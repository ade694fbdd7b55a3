"""The Open Inference Protocol as others speak it, on 127.0.0.1 only.

tests/test_serve.py and tests/test_remote.py show that our client and our
server agree with each other; here each meets a third-party implementation:
- MLServer, a third-party OIP server, hosts linear models that the test makes
  (tests/_linear.py, served by tests/_oip_model.py), and
  `python -m fingerprinting.verify` verifies them through their URLs: 1.0 for
  the model whose labels the fingerprint stores, exactly its agreement for
  another;
- tritonclient's HTTP client, a third-party OIP client, reads the health,
  metadata and answers of `python -m fingerprinting.serve`, which must equal
  the served model's own scores and labels.
"""

import importlib.util
import json
import re
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from fingerprinting import artifact
from fingerprinting import ensemble
from fingerprinting import models
from fingerprinting import suspects
from fingerprinting import zoo
from fingerprinting.suspects import protocols
from fingerprinting.suspects import server as server_lib

import _linear
import _mlserver as servers
from _cli import ROOT, run
from _mlserver import START_S, stop, wait_ready

THIEF, INNOCENT = 1, 2  # seeds of the two hosted linear models


# --- (a) verify against a model hosted by MLServer. ---


@pytest.fixture(scope="module")
def fingerprint(tmp_path_factory):
    """40 fingerprint inputs and 60 decoys, labelled by the THIEF linear model."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, *_linear.INPUT_SHAPE), dtype=np.uint8)
    decoys = rng.integers(0, 256, (60, *_linear.INPUT_SHAPE), dtype=np.uint8)
    fp = artifact.Fingerprint(
        x=x,
        original=x,
        keys=_linear.labels(x, THIEF).astype(np.int32),
        truth=_linear.labels(x, THIEF).astype(np.int32),
        conferrability=np.ones(len(x), np.float32),
        meta={
            "num_classes": _linear.NUM_CLASSES,
            "input_shape": list(_linear.INPUT_SHAPE),
            "theta": 0.7,
        },
        decoy_x=decoys,
        decoy_truth=_linear.labels(decoys, THIEF).astype(np.int32),
    )
    path = str(tmp_path_factory.mktemp("interop") / "fingerprint.npz")
    artifact.save(path, fp)
    return path, fp


def _model_settings(name, seed, answer, version=None):
    output = (
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, _linear.NUM_CLASSES]}
        if answer == "scores"
        else {"name": "label", "datatype": "INT64", "shape": [-1]}
    )
    parameters = {"extra": {"seed": seed, "answer": answer}}
    if version:
        parameters["version"] = version
    return {
        "name": name,
        "implementation": "_oip_model.LinearModel",
        "parameters": parameters,
        "inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [-1, *_linear.INPUT_SHAPE]}],
        "outputs": [output],
    }


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory):
    """MLServer on a free port hosting `thief` (version 1, scores) and
    `innocent` (labels); its base URL."""
    # Imported by the server process only (it takes seconds): checked here.
    assert importlib.util.find_spec("mlserver"), "mlserver is missing: install the test extra"
    models = {
        "thief": _model_settings("thief", THIEF, "scores", "1"),
        "innocent": _model_settings("innocent", INNOCENT, "labels"),
    }
    with servers.mlserver(tmp_path_factory.mktemp("mlserver"), models) as base:
        yield base


def verify(fingerprint_path, suspect, *flags):
    proc = run("verify", f"--fingerprint={fingerprint_path}", f"--suspect={suspect}", *flags)
    return json.loads(proc.stdout)


def test_verify_finds_the_model_mlserver_hosts(fingerprint, mlserver):
    path, _ = fingerprint
    result = verify(path, f"{mlserver}/v2/models/thief/versions/1/infer", "--batch_size=32")
    assert result["protocol"] == "http-v2"
    assert result["fingerprint_accuracy"] == 1.0 and result["verified"] is True
    assert result["decoy_accuracy"] == 1.0
    assert result["n_queries"] == 100 and result["requests"] == 4 and result["retries"] == 0


def test_verify_clears_another_model_mlserver_hosts(fingerprint, mlserver):
    path, fp = fingerprint
    want = float(np.mean(_linear.labels(fp.x, INNOCENT) == fp.keys))
    assert want < 0.5  # two random linear maps agree by chance only
    result = verify(path, f"{mlserver}/v2/models/innocent/infer", "--pixels=float")
    assert result["fingerprint_accuracy"] == want and result["verified"] is False
    assert result["protocol"] == "http-v2"


# --- (b) tritonclient against `python -m fingerprinting.serve`. ---

NAME = "digits"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained MLP saved as a group trained here: a model to serve that
    costs no training."""
    gdir = tmp_path_factory.mktemp("ckpt") / "models" / "g-mlp"
    gdir.mkdir(parents=True)
    shape = _linear.INPUT_SHAPE
    model = models.get_model("mlp", _linear.NUM_CLASSES)
    zoo.save_variables(
        str(gdir / "final"), ensemble.init_members(model, jax.random.PRNGKey(3), 1, shape)
    )
    record = {
        "test_accuracy": [0.1],
        "kind": "source",
        "architecture": "mlp",
        "num_classes": _linear.NUM_CLASSES,
        "input_shape": list(shape),
    }
    (gdir / "result.json").write_text(json.dumps(record))
    return str(gdir / "0")


@pytest.fixture(scope="module")
def model(checkpoint):
    return suspects.load_checkpoint(checkpoint)


@pytest.fixture(scope="module")
def served(checkpoint, tmp_path_factory):
    """`python -m fingerprinting.serve` (scores) on a free port: 'HOST:PORT'."""
    log_path = tmp_path_factory.mktemp("serve") / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fingerprinting.serve",
                f"--checkpoint={checkpoint}",
                "--port=0",
                f"--name={NAME}",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    try:
        first = []
        reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()))
        reader.daemon = True
        start = time.monotonic()
        reader.start()
        reader.join(timeout=START_S)
        found = re.search(r"http://(127\.0\.0\.1:\d+)/", first[0] if first else "")
        if not found:
            stop(proc)
            pytest.fail(f"the server did not start: {log_path.read_text()[-3000:]}")
        wait_ready(proc, [f"http://{found[1]}/v2/health/ready"], log_path)
        print(f"fingerprinting.serve ready in {time.monotonic() - start:.1f} s")
        yield found[1]
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def triton_client(served):
    client = triton.InferenceServerClient(served, network_timeout=30.0)
    yield client
    client.close()


def _images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *_linear.INPUT_SHAPE), dtype=np.uint8)


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_tritonclient_reads_health_and_metadata(triton_client):
    c = triton_client
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready(NAME) and c.is_model_ready(NAME, "1")
    assert not c.is_model_ready("other")
    server = c.get_server_metadata()
    assert server["name"] == server_lib.SERVER_NAME and isinstance(server["version"], str)
    assert server["extensions"] == []
    for version in ("", "1"):
        meta = c.get_model_metadata(NAME, version)
        assert meta["name"] == NAME and meta["versions"] == ["1"]
        assert meta["inputs"] == [{"name": "input", "datatype": "UINT8", "shape": [-1, 8, 8, 1]}]
        assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    with pytest.raises(InferenceServerException) as e:
        c.get_model_metadata("other")
    assert e.value.status() == "404"


@pytest.mark.parametrize(
    "datatype,version,request_output",
    [("UINT8", "", True), ("FP32", "1", True), ("UINT8", "", False)],
)
def test_tritonclient_infers(triton_client, model, datatype, version, request_output):
    x = _images(37)
    want = _softmax(model.logits(x.astype(np.float32) / 255.0))
    data = x if datatype == "UINT8" else x.astype(np.float32) / 255.0
    tensor = triton.InferInput("input", list(x.shape), datatype)
    tensor.set_data_from_numpy(data, binary_data=False)
    # Without requested outputs the client asks for binary outputs, which the
    # server may decline: the answer is JSON either way.
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=False)]
    result = triton_client.infer(
        NAME,
        [tensor],
        model_version=version,
        outputs=outputs if request_output else None,
        request_id="q-7",
    )
    scores = result.as_numpy("probabilities")
    assert scores.dtype == np.float32 and scores.shape == (37, 10)
    np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(scores.argmax(-1), want.argmax(-1))
    response = result.get_response()
    assert response["model_name"] == NAME and response["id"] == "q-7"


def test_tritonclient_binary_tensors_are_refused_by_name(triton_client):
    tensor = triton.InferInput("input", [2, 8, 8, 1], "UINT8")
    tensor.set_data_from_numpy(_images(2))  # binary_data=True: tritonclient's default
    with pytest.raises(InferenceServerException) as e:
        triton_client.infer(NAME, [tensor])
    assert e.value.status() == "400" and "binary tensor data" in e.value.message()


def test_tritonclient_unknown_output_is_refused(triton_client):
    tensor = triton.InferInput("input", [2, 8, 8, 1], "UINT8")
    tensor.set_data_from_numpy(_images(2), binary_data=False)
    with pytest.raises(InferenceServerException) as e:
        triton_client.infer(
            NAME, [tensor], outputs=[triton.InferRequestedOutput("logits", binary_data=False)]
        )
    assert e.value.status() == "400" and "no output 'logits'" in e.value.message()


@pytest.fixture(scope="module")
def labels_server(model):
    """The same model in this process, answering labels only: 'HOST:PORT'."""
    server = server_lib.make_server(model, name=NAME, answer="labels")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_tritonclient_reads_labels(labels_server, model):
    x = _images(20, seed=1)
    client = triton.InferenceServerClient(labels_server)
    try:
        meta = client.get_model_metadata(NAME)
        assert meta["outputs"] == [{"name": "label", "datatype": "INT64", "shape": [-1]}]
        tensor = triton.InferInput("input", list(x.shape), "UINT8")
        tensor.set_data_from_numpy(x, binary_data=False)
        got = client.infer(NAME, [tensor]).as_numpy("label")
    finally:
        client.close()
    assert got.dtype == np.int64 and got.shape == (20,)
    np.testing.assert_array_equal(got, model.logits(x.astype(np.float32) / 255.0).argmax(-1))


@pytest.mark.parametrize(
    "outputs", [{"name": "label"}, [{"binary_data": True}], [{"name": 7}], ["label"]]
)
def test_malformed_requested_outputs(outputs):
    with pytest.raises(ValueError, match="outputs"):
        protocols.requested_outputs({"inputs": [], "outputs": outputs})


def test_answer_echoes_a_string_id_only():
    out = np.array([1, 0])
    assert protocols.encode_v2_answer(out, "m", "r-1")["id"] == "r-1"
    assert "id" not in protocols.encode_v2_answer(out, "m", 5)
    assert "id" not in protocols.encode_v2_answer(out, "m")
