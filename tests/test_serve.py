"""One trained model, verified four ways: checkpoint, Python callable, and
`python -m fingerprinting.serve` over real HTTP in both protocols. Every way
must see the same labels, so every way gives the same verdict."""

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from fingerprinting import artifact
from fingerprinting import fingerprint as fp_lib
from fingerprinting import pipeline
from fingerprinting import stats
from fingerprinting import suspects
from fingerprinting.suspects import server as server_lib

from _cli import ROOT, run
from _configs import common

GROUP = "testing_reference-mlp"
_MODEL = {}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Two tiny MLPs on digits, and a fingerprint whose keys are member 1's labels
    on noisy test images, so that member 0 agrees with some keys but not all."""
    wd = str(tmp_path_factory.mktemp("serve"))
    config = common.smoke(common.base())
    config.models.testing_references = "mlp:2"
    zoo = pipeline.open_zoo(config, wd)
    (group,) = zoo.get("testing_reference")
    test = zoo.splits.test
    rng = np.random.default_rng(0)
    x = fp_lib.to_uint8(np.clip(test.x[:40] + rng.normal(0, 0.3, test.x[:40].shape), 0, 1))
    keys = fp_lib.labels_of([group], x.astype(np.float32) / 255.0)[1]
    fp = artifact.Fingerprint(
        x=x,
        original=fp_lib.to_uint8(test.x[:40]),
        keys=keys.astype(np.int32),
        truth=test.y[:40].astype(np.int32),
        conferrability=np.ones(40, np.float32),
        meta={
            "num_classes": 10,
            "input_shape": list(zoo.splits.input_shape),
            "theta": 0.7,
            "calibration": stats.calibrate([8, 12, 5], 40),
        },
        decoy_x=fp_lib.to_uint8(test.x[40:160]),
        decoy_truth=test.y[40:160].astype(np.int32),
    )
    artifact.save(os.path.join(wd, "fingerprint.npz"), fp)
    return wd


def predict(x_uint8):
    """The callable suspect: the checkpoint behind a plain function."""
    return _MODEL["m"].logits(x_uint8.astype(np.float32) / 255.0)


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def post(url, obj):
    request = urllib.request.Request(url, data=json.dumps(obj).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def served(workdir):
    """`python -m fingerprinting.serve` on a free port; its two URLs."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fingerprinting.serve",
            f"--checkpoint={workdir}/models/{GROUP}/0",
            "--port=0",
            "--name=digits",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = []
    reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=120)
    try:
        assert first and first[0], f"the server did not start: {proc.stderr.read()[-2000:]}"
        v1, v2 = re.findall(r"http://\S+", first[0])
        base = v1.split("/v1/")[0]
        deadline = time.time() + 30
        while get(f"{base}/v2/health/ready")[0] != 200:
            assert time.time() < deadline, "the server never became ready"
            time.sleep(0.1)
        yield v1, v2
    finally:
        proc.kill()
        proc.wait()


def test_every_way_gives_the_same_verdict(workdir, served):
    fp = artifact.load(os.path.join(workdir, "fingerprint.npz"))
    checkpoint = f"{workdir}/models/{GROUP}/0"
    _MODEL["m"] = suspects.load_checkpoint(checkpoint)
    v1, v2 = served
    ways = [
        (checkpoint, {}),
        (f"{__name__}:predict", {}),
        (v1, {}),
        (v2, {}),
        (v2, {"pixels": "float", "batch_size": 7}),
    ]
    results = [fp_lib.verify_suspect(fp, suspects.load_suspect(s, **kw)) for s, kw in ways]
    accuracies = {(r["fingerprint_accuracy"], r["decoy_accuracy"]) for r in results}
    assert len(accuracies) == 1, results
    fp_acc, decoy_acc = accuracies.pop()
    assert 0.0 < fp_acc < 1.0  # member 0 agrees with member 1 on some keys only
    assert decoy_acc > 0.5  # the decoys are ordinary test images
    protocols = [r["protocol"] for r in results]
    assert protocols == ["checkpoint", "callable", "http-v1", "http-v2", "http-v2"]
    assert [r["requests"] for r in results][-3:] == [3, 3, 23]  # 160 queries
    member1 = fp_lib.verify_suspect(fp, suspects.load_suspect(f"{workdir}/models/{GROUP}/1"))
    assert member1["fingerprint_accuracy"] == 1.0


def test_cli_verifies_over_http(workdir, served):
    proc = run(
        "verify",
        f"--fingerprint={workdir}/fingerprint.npz",
        f"--suspect={served[1]}",
        "--decoys=20",
        "--batch_size=16",
        "--rate_limit=100",
    )
    result = json.loads(proc.stdout)
    assert result["protocol"] == "http-v2" and result["n_queries"] == 60
    assert result["decoys"] == 20 and result["requests"] == 4 and result["seconds"] > 0
    assert "decoys" in proc.stderr.splitlines()[-1]


@pytest.fixture(scope="module")
def labels_server(workdir):
    """The same model in-process, answering labels only."""
    model = suspects.load_checkpoint(f"{workdir}/models/{GROUP}/0")
    server = server_lib.make_server(model, name="m", answer="labels")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield model, server_lib.urls(server, "m")
    server.shutdown()
    server.server_close()


def test_label_only_answers(workdir, labels_server):
    model, (v1, v2) = labels_server
    fp = artifact.load(os.path.join(workdir, "fingerprint.npz"))
    want = fp_lib.verify_labels(fp, model.logits(fp.inputs).argmax(-1))["fingerprint_accuracy"]
    for url in (v1, v2):
        assert fp_lib.verify_suspect(fp, suspects.load_suspect(url))["fingerprint_accuracy"] == want
    status, meta = get(v2.replace("/infer", ""))
    assert status == 200 and meta["inputs"][0]["shape"] == [-1, 8, 8, 1]
    assert meta["outputs"][0]["name"] == "label"


@pytest.mark.parametrize(
    "path,body,status,match",
    [
        ("v1", {"instances": [[[[0]]]]}, 400, "expected \\[N, 8, 8, 1\\]"),
        ("v1", {"instances": np.full((1, 8, 8, 1), 2.0).tolist()}, 400, "float pixels"),
        ("v1", {"wrong": 1}, 400, "instances"),
        (
            "v2",
            {"inputs": [{"name": "x", "shape": [1, 8, 8, 1], "datatype": "UINT8"}]},
            400,
            "fill",
        ),
        ("other", {"instances": []}, 404, "no model"),
    ],
)
def test_bad_requests_get_http_errors(labels_server, path, body, status, match):
    _, (v1, v2) = labels_server
    url = {"v1": v1, "v2": v2, "other": v1.replace("/m:", "/other:")}[path]
    got, answer = post(url, body)
    assert got == status and re.search(match, answer["error"])


def test_garbage_body_is_a_400(labels_server):
    _, (v1, _) = labels_server
    request = urllib.request.Request(v1, data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=5)
    assert e.value.code == 400
