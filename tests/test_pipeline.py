"""The work directory's config pin and config validation."""

import json
import os

import pytest

from fingerprinting import pipeline
from _configs import common


def test_pin_refuses_result_changes_and_allows_speed_changes(tmp_path):
    wd = str(tmp_path)
    c = common.base()
    pipeline.pin_config(c, wd)
    speed = common.base()
    speed.train.loop, speed.models.strategy, speed.extract.steps = "fori", "vmap", 7
    pipeline.pin_config(speed, wd)  # speed knobs and later stages may change
    # config.json keeps the first run's config: it records what made the models.
    assert json.load(open(os.path.join(wd, "config.json")))["extract"]["steps"] == 100
    other = common.base()
    other.train.learning_rate = 0.5
    with pytest.raises(pipeline.WorkdirError, match="train.learning_rate: 0.002 -> 0.5"):
        pipeline.pin_config(other, wd)


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("extract.tau", 1.2, "extract.tau = 1.2 is out of range"),
        ("extract.dropout", 1.0, "extract.dropout"),
        ("verify.theta", 0.0, "verify.theta"),
        ("train.loop", "threads", "unknown loop"),
        ("models.strategy", "pmap", "unknown member strategy"),
        ("models.surrogate_labels", "oracle", "unknown label source"),
        ("models.training_references", "lenet:2", "unknown architecture 'lenet'"),
        ("models.calibration_data", "d3", "calibration_data"),
        ("models.surrogate_data", "d2", "surrogate_data"),
        (
            "models.surrogate_data",
            "d1_holdout",
            "surrogate_data 'd1_holdout' needs data.source_holdout",
        ),
        (
            "models.calibration_data",
            "d1_holdout",
            "calibration_data 'd1_holdout' needs data.source",
        ),
        ("data.source_holdout", 1.0, "data.source_holdout = 1.0 is out of range"),
        ("models.selection_references", "mlp:2", "needs selection surrogates"),
        ("models.label_only_surrogates", "cnn_big:1", "unknown architecture 'cnn_big'"),
    ],
)
def test_validate_names_the_bad_field(field, value, match):
    c = common.base()
    section, name = field.split(".")
    setattr(getattr(c, section), name, value)
    with pytest.raises(ValueError, match=match):
        pipeline.validate(c)
