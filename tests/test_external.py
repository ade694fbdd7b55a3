"""The owner's own Flax model as the source (`models.source=package.module:function`):
checked against the data, never trained, pinned by its parameters' hash, and
white box in C-BIM like a source trained here."""

import json
import os

import numpy as np
import pytest

from fingerprinting import errors
from fingerprinting import external
from fingerprinting import fingerprint as fp_lib
from fingerprinting import pipeline
from fingerprinting import zoo as zoo_lib
from _configs import common
from _configs import smallest_zoo
from tests import _flax_source

SOURCE = "tests._flax_source:digits_source"


def config_with(source=SOURCE):
    c = smallest_zoo(common.base())
    c.models.source = source
    return c


@pytest.mark.parametrize(
    "spec, ok",
    [
        ("pkg.mod:fn", True),
        ("mod:fn", True),
        ("cnn_small", False),
        ("pkg.mod:", False),
        ("/abs/path:fn", False),
        ("a b:fn", False),
    ],
)
def test_is_external(spec, ok):
    assert external.is_external(spec) is ok


def test_the_source_is_checked_loaded_and_pinned(tmp_path, monkeypatch):
    wd = str(tmp_path / "wd")
    zoo = pipeline.open_zoo(config_with(), wd)
    src = zoo.source()
    assert src.group.arch == SOURCE and src.test_accuracy[0] > 0.9  # it saw these digits
    record = json.load(open(os.path.join(wd, "models", "source-external", "result.json")))
    assert record["parameter_hash"] and not os.path.exists(
        os.path.join(wd, "models", "source-external", "final")
    )  # never written: the owner keeps the model
    # logits through the tool's path equal the owner's own function
    apply_fn, params = _flax_source.digits_source()
    x = zoo.splits.test.x[:16]
    ours = zoo.source_logits("d1")[:16]
    np.testing.assert_allclose(ours, np.asarray(apply_fn(params, zoo.splits.d1.x[:16])), atol=1e-5)
    assert x.shape[1:] == (8, 8, 1)
    # a source that now returns other weights is refused
    monkeypatch.setitem(_flax_source.SHIFT, "value", 0.01)
    external._load.cache_clear()
    with pytest.raises(zoo_lib.CheckpointError, match="now returns other weights"):
        pipeline.open_zoo(config_with(), wd).source()
    external._load.cache_clear()


@pytest.mark.parametrize(
    "source, match",
    [
        ("tests._flax_source:seven_classes", r"outputs of shape \(2, 7\).*10 classes"),
        ("tests._flax_source:not_a_pair", "returning \\(apply_fn, variables\\)"),
        ("tests._flax_source:missing", "cannot import it"),
        ("no_such_module_here:fn", "cannot import it"),
    ],
)
def test_a_source_that_does_not_fit_is_one_error(tmp_path, source, match):
    wd = tmp_path / "wd"
    with pytest.raises(external.SourceError, match=match):
        pipeline.open_zoo(config_with(source), str(wd))
    assert issubclass(external.SourceError, errors.UserError)
    assert not wd.exists()  # refused before anything is written


def test_removal_attacks_need_a_built_in_architecture(tmp_path):
    c = config_with()
    c.removal.attacks = "ftal"
    with pytest.raises(errors.ConfigError, match="removal attacks retrain"):
        pipeline.validate(c)
    c.models.source = "resnet7"
    with pytest.raises(errors.ConfigError, match="package.module:function for your own model"):
        pipeline.validate(c)


def test_extraction_runs_on_the_owners_model(tmp_path):
    """C-BIM through the owner's model: the keys are its labels, so it verifies itself."""
    wd = str(tmp_path / "wd")
    fp = pipeline.run_extract(config_with(), wd)
    assert fp.meta["source_architecture"] == SOURCE and len(fp) > 0
    labels = _flax_source.predict(fp.x)
    np.testing.assert_array_equal(labels, fp.keys)
    result = fp_lib.verify_labels(fp, labels)
    assert result["fingerprint_accuracy"] == 1.0 and result["verified"]


def test_an_onnx_file_is_a_white_box_source(tmp_path):
    """A graph taking normalised NCHW images, given with its flags: the tool's
    logits equal the graph's, and C-BIM takes its gradients."""
    from tests import _onnx_models as om  # pylint: disable=g-import-not-at-top

    w, b = om.weights((8, 8, 1), 10, seed=4)
    path = om.linear_onnx(
        tmp_path / "owner.onnx", w, b, (8, 8, 1), layout="nchw", mean=(0.5,), std=(0.25,)
    )
    spec = f"{path} --layout=nchw --mean=0.5 --std=0.25"
    assert external.is_external(spec)
    wd = str(tmp_path / "wd")
    zoo = pipeline.open_zoo(config_with(spec), wd)
    x = zoo.splits.d1.x
    want = x.reshape(len(x), -1) @ w + b
    np.testing.assert_allclose(zoo.source_logits("d1"), want, rtol=1e-4, atol=1e-4)
    fp = pipeline.run_extract(config_with(spec), wd, zoo=zoo)
    assert fp.meta["source_access"] == "white_box" and len(fp) > 0
    np.testing.assert_array_equal(fp.keys, om.reference_scores(fp.x, w, b).argmax(-1))


@pytest.mark.parametrize(
    "graph, content, match",
    [
        (dict(uint8=True), None, "no gradient"),
        (dict(extra_input=True), None, "takes 2 inputs"),
        (None, b"not a graph", "not an ONNX model"),
    ],
)
def test_onnx_sources_that_cannot_be_white_box(tmp_path, graph, content, match):
    from tests import _onnx_models as om  # pylint: disable=g-import-not-at-top

    path = tmp_path / "m.onnx"
    if content is None:
        w, b = om.weights((8, 8, 1), 10, seed=4)
        om.linear_onnx(path, w, b, (8, 8, 1), **graph)
    else:
        path.write_bytes(content)
    with pytest.raises(external.SourceError, match=match):
        pipeline.open_zoo(config_with(str(path)), str(tmp_path / "wd"))
    assert not (tmp_path / "wd").exists()


def test_cli_refuses_a_source_that_does_not_fit(tmp_path):
    from tests import _cli  # pylint: disable=g-import-not-at-top

    wd = tmp_path / "wd"
    proc = _cli.run(
        "train",
        _cli.SMOKE,
        "--config.models.source=tests._flax_source:seven_classes",
        "--config.removal.attacks=",
        f"--workdir={wd}",
        check=False,
    )
    _cli.assert_one_line_error(proc, "the data has 10 classes")
    assert not wd.exists()
