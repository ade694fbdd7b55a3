"""A source the defender can only query (`models.source_api`): its answers
train every surrogate, C-BIM runs without it, its answers are the keys, and
nothing is asked twice."""

import numpy as np
import pytest

from fingerprinting import errors
from fingerprinting import fingerprint as fp_lib
from fingerprinting import label_only
from fingerprinting import labels as labels_lib
from fingerprinting import pipeline
from _configs import common
from _configs import smallest_zoo
from tests import _flax_source
from tests import _onnx_models as om

API = "tests._flax_source:predict"


def config_with(api=API):
    c = smallest_zoo(common.base())
    c.models.source_api = api
    return c


def test_the_api_trains_the_surrogates_and_gives_the_keys(tmp_path):
    wd = str(tmp_path / "wd")
    zoo = pipeline.open_zoo(config_with(), wd)
    assert zoo.white_box_sources() == []  # C-BIM cannot take an API's gradients
    assert zoo.source().test_accuracy[0] > 0.9
    d2 = zoo.splits.d2
    answers = _flax_source.predict(fp_lib.to_uint8(d2.x))
    targets = zoo.targets("testing_surrogate")  # soft labels by default: hard here
    np.testing.assert_array_equal(targets, labels_lib.one_hot(answers, 10))
    fp = pipeline.run_extract(config_with(), wd, zoo=zoo)
    assert fp.meta["source_access"] == "label_only" and fp.meta["source_hash"] is None
    np.testing.assert_array_equal(fp.keys, _flax_source.predict(fp.x))
    # a rerun on the same work directory asks the API nothing
    asked = _flax_source.ASKED["inputs"]
    zoo = pipeline.open_zoo(config_with(), wd)
    zoo.targets("training_surrogate")
    pipeline.run_extract(config_with(), wd, zoo=zoo)
    assert _flax_source.ASKED["inputs"] == asked


def test_a_source_api_that_does_not_fit_is_refused(tmp_path):
    w, b = om.weights((8, 8, 1), 7, seed=0)
    path = om.linear_onnx(tmp_path / "seven.onnx", w, b, (8, 8, 1), uint8=True)
    with pytest.raises(errors.SuspectError, match="predicts 7 classes; the data has 10"):
        pipeline.open_zoo(config_with(path), str(tmp_path / "wd"))
    w, b = om.weights((6, 6, 1), 10, seed=0)
    path = om.linear_onnx(tmp_path / "small.onnx", w, b, (6, 6, 1), uint8=True)
    with pytest.raises(errors.SuspectError, match=r"inputs of shape \(6, 6, 1\); the data's"):
        pipeline.open_zoo(config_with(path), str(tmp_path / "wd"))
    assert not (tmp_path / "wd").exists()  # refused before anything is written


@pytest.mark.parametrize(
    "api, attacks, match",
    [
        (API + " --batch_size=3", "", "is not one of --pixels="),
        (API + " --mean=x", "", "comma-separated numbers"),
        (API, "ftal", "removal attacks retrain"),
    ],
)
def test_bad_settings_are_refused_before_any_query(api, attacks, match):
    c = config_with(api)
    c.removal.attacks = attacks
    asked = _flax_source.ASKED["inputs"]
    with pytest.raises(errors.ConfigError, match=match):
        pipeline.validate(c)
    assert _flax_source.ASKED["inputs"] == asked


def test_the_spec_carries_its_input_format():
    spec, fmt = label_only.parse(config_with("m.onnx --layout=nchw --mean=0.5 --std=0.25"))
    assert spec == "m.onnx" and fmt.layout == "nchw" and fmt.mean == (0.5,) and fmt.std == (0.25,)
