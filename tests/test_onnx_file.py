"""ONNX suspects: the verifier sends what the graph expects (layout, pixels,
normalisation, batch size) and refuses a file it cannot honestly query."""

import json

import numpy as np
import pytest

from fingerprinting import artifact
from fingerprinting import fingerprint as fp_lib
from fingerprinting import suspects
from tests import _cli
from tests import _onnx_models as om

SHAPE, K = (6, 5, 3), 4


@pytest.fixture(scope="module")
def model():
    w, b = om.weights(SHAPE, K, seed=1)
    return w, b, om.fingerprint_of(w, b, SHAPE, K)


def accuracy(fp, spec, **fmt):
    suspect = suspects.load_suspect(spec, pixels=suspects.InputFormat(**fmt))
    return fp_lib.verify_suspect(fp, suspect)["fingerprint_accuracy"]


@pytest.mark.parametrize(
    "graph,fmt",
    [
        (dict(), dict(pixels="float")),
        (dict(layout="nchw"), dict(pixels="float", layout="nchw")),
        (
            dict(layout="nchw", mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3)),
            dict(layout="nchw", mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3)),
        ),
        (dict(mean=(0.5,), std=(0.5,)), dict(mean=(0.5,), std=(0.5,))),
        (dict(uint8=True), dict()),
        (dict(batch=4), dict(pixels="float")),
    ],
)
def test_the_graph_gets_what_it_expects(tmp_path, model, graph, fmt):
    w, b, fp = model
    path = om.linear_onnx(tmp_path / "m.onnx", w, b, SHAPE, **graph)
    assert accuracy(fp, path, **fmt) == 1.0


def test_a_wrong_format_changes_the_answers(tmp_path):
    """The flags matter: the graph taking normalised NCHW inputs, sent plain float
    pixels, answers something else (so an accuracy of 1.0 above is not luck)."""
    w, b = om.weights((5, 5, 3), K, seed=3)
    path = om.linear_onnx(
        tmp_path / "m.onnx", w, b, (5, 5, 3), layout="nchw", mean=(0.5,), std=(0.1,)
    )
    x = np.random.default_rng(0).integers(0, 256, (50, 5, 5, 3), dtype=np.uint8)
    right = suspects.load_suspect(
        path, pixels=suspects.InputFormat(layout="nchw", mean=(0.5,), std=(0.1,))
    ).predict(x)
    wrong = suspects.load_suspect(path, pixels=suspects.InputFormat(layout="nchw")).predict(x)
    assert (right == wrong).mean() < 0.9


def test_an_independent_graph_scores_low(tmp_path, model):
    _, _, fp = model
    w2, b2 = om.weights(SHAPE, K, seed=2)
    path = om.linear_onnx(tmp_path / "other.onnx", w2, b2, SHAPE)
    assert accuracy(fp, path, pixels="float") < 0.6


def test_declared_shape_and_classes_are_checked_before_any_query(tmp_path, model):
    _, _, fp = model
    w, b = om.weights((6, 5, 1), K, seed=1)
    path = om.linear_onnx(tmp_path / "gray.onnx", w, b, (6, 5, 1))
    with pytest.raises(suspects.SuspectError, match=r"takes inputs of shape \(6, 5, 1\)"):
        fp_lib.verify_suspect(fp, suspects.load_suspect(path))
    w, b = om.weights(SHAPE, 7, seed=1)
    path = om.linear_onnx(tmp_path / "seven.onnx", w, b, SHAPE)
    with pytest.raises(suspects.SuspectError, match="predicts 7 classes"):
        fp_lib.verify_suspect(fp, suspects.load_suspect(path))


@pytest.mark.parametrize(
    "graph,fmt,match",
    [
        (dict(extra_input=True), dict(), "takes 2 inputs"),
        (dict(rank2=True), dict(), "rank 2"),
        (dict(uint8=True), dict(pixels="float"), "takes uint8 pixels"),
        (dict(uint8=True), dict(mean=(0.5,), std=(0.5,)), "takes uint8 pixels"),
    ],
)
def test_graphs_that_cannot_be_queried_are_refused(tmp_path, model, graph, fmt, match):
    w, b, _ = model
    path = om.linear_onnx(tmp_path / "m.onnx", w, b, SHAPE, **graph)
    with pytest.raises(suspects.SuspectError, match=match):
        suspects.load_suspect(path, pixels=suspects.InputFormat(**fmt))


def test_not_a_model(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07 this is not a protobuf of a model")
    with pytest.raises(suspects.SuspectError, match="not an ONNX model"):
        suspects.load_suspect(str(garbage))
    with pytest.raises(suspects.SuspectError, match="no such ONNX file"):
        suspects.load_suspect(str(tmp_path / "missing.onnx"))


def test_input_format_is_validated():
    for kwargs, match in [
        (dict(layout="chwn"), "unknown layout"),
        (dict(std=(0.0,)), "positive"),
        (dict(mean=(float("nan"),)), "finite"),
        (dict(pixels="int4"), "unknown pixel format"),
    ]:
        with pytest.raises(suspects.SuspectError, match=match):
            suspects.InputFormat(**kwargs)
    with pytest.raises(suspects.SuspectError, match="2 values; the inputs have 3 channels"):
        suspects.InputFormat(mean=(0.1, 0.2)).prepare(np.zeros((1, 2, 2, 3), np.uint8))


def test_checkpoints_refuse_format_flags(tmp_path):
    group = tmp_path / "models" / "g"
    group.mkdir(parents=True)
    with pytest.raises(suspects.SuspectError, match="its own input format"):
        suspects.load_suspect(str(group), pixels=suspects.InputFormat(layout="nchw"))


def test_cli_verifies_an_onnx_file(tmp_path, model):
    w, b, fp = model
    fp_path = str(tmp_path / "fp.npz")
    artifact.save(fp_path, fp)
    path = om.linear_onnx(tmp_path / "m.onnx", w, b, SHAPE, layout="nchw", mean=(0.5,), std=(0.5,))
    proc = _cli.run(
        "verify",
        f"--fingerprint={fp_path}",
        f"--suspect={path}",
        "--layout=nchw",
        "--mean=0.5",
        "--std=0.5",
    )
    result = json.loads(proc.stdout)
    assert result["fingerprint_accuracy"] == 1.0 and result["verified"]
    assert result["protocol"] == "onnx" and result["decoy_accuracy"] == 1.0
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model")
    proc = _cli.run("verify", f"--fingerprint={fp_path}", f"--suspect={bad}", check=False)
    _cli.assert_one_line_error(proc, "not an ONNX model")
    assert proc.stdout == ""
    proc = _cli.run(
        "verify", f"--fingerprint={fp_path}", f"--suspect={path}", "--mean=0.5,x", check=False
    )
    _cli.assert_one_line_error(proc, "comma-separated numbers")
