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
from tests import _flax_source

SOURCE = "tests._flax_source:digits_source"


def config_with(source=SOURCE):
    c = common.smoke(common.base())
    c.models.source = source
    c.removal.attacks = ""
    # the smallest zoo that extracts: one student and one reference a side
    c.models.training_surrogates = c.models.training_references = "mlp:1"
    c.models.testing_surrogates = c.models.testing_references = "mlp:1"
    c.models.label_only_surrogates = ""
    c.models.calibration_references = "mlp:1"
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
        pipeline.open_zoo(config_with(source), str(wd)).source()
    assert issubclass(external.SourceError, errors.UserError)
    assert not (wd / "models").exists() or not any((wd / "models").iterdir())


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
