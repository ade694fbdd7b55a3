"""The work directory's config pin, config validation, and the order of the stages."""

import json
import os

import pytest

import _configs
from fingerprinting import files
from fingerprinting import fingerprint as fp_lib
from fingerprinting import harness
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
        ("data.fingerprint_pool", 1.0, "data.fingerprint_pool = 1.0 is out of range"),
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


def test_outsider_calibration_references_train_after_the_extraction(tmp_path):
    """models.calibration_data=d1_without_fingerprint: `train` leaves the
    calibration references out, `extract` trains them on D1 without the
    fingerprint's images, and `evaluate` verifies those same models."""
    c = _configs.smallest_zoo(common.base())
    c.models.calibration_data = "d1_without_fingerprint"
    c.evaluate.evasion = False
    wd = str(tmp_path / "wd")
    rows = pipeline.run_train(c, wd)
    assert rows and not any(r["kind"] == "calibration_reference" for r in rows)

    def calibration_dirs():
        return [d for d in os.listdir(os.path.join(wd, "models")) if d.startswith("calibration")]

    assert calibration_dirs() == []
    zoo = pipeline.open_zoo(c, wd)
    fp = pipeline.run_extract(c, wd, zoo=zoo)
    cal = fp.meta["calibration"]
    assert cal["data"] == "d1_without_fingerprint" and cal["num_models"] == 1 and len(fp) > 0
    assert calibration_dirs() == [f"calibration_reference-mlp-fp{zoo.fingerprint_tag}"]
    seen = zoo.party("calibration_reference")
    originals = {r.tobytes() for r in fp.original.reshape(len(fp), -1)}
    assert not originals & {r.tobytes() for r in fp_lib.to_uint8(seen.x).reshape(len(seen), -1)}
    assert len(zoo.splits.d1) - len(fp) <= len(seen) < len(zoo.splits.d1)
    listed = files.read_jsonl(os.path.join(wd, "models.jsonl"))
    assert [r["kind"] for r in listed].count("calibration_reference") == 1

    result = os.path.join(wd, "models", calibration_dirs()[0], "result.json")
    before = os.stat(result).st_mtime_ns
    rows = harness.run_evaluate(c, wd)
    assert os.stat(result).st_mtime_ns == before  # loaded, not trained again
    calibration = [r for r in rows if r["kind"] == "calibration_reference"]
    assert [r["part"] for r in calibration] == ["d1_without_fingerprint"]
    counts = [round(r["fingerprint_accuracy"] * len(fp)) for r in calibration]
    assert counts == cal["agree_counts"]


def test_a_fingerprint_pool_and_a_source_holdout_are_refused_together():
    c = common.base()
    c.data.update(dict(fingerprint_pool=0.5, source_holdout=0.25))
    with pytest.raises(ValueError, match="cannot be combined"):
        pipeline.validate(c)


def test_the_fingerprint_starts_from_its_pool_against_outsider_references(tmp_path):
    """data.fingerprint_pool: C-BIM starts from the pool, which the source
    trains on and the outsider references never see; both kinds of training
    reference are on C-BIM's reference side."""
    c = _configs.smallest_zoo(common.base())
    c.data.fingerprint_pool = 0.5
    c.models.training_outsider_references = "mlp:1"
    wd = str(tmp_path / "wd")
    zoo = pipeline.open_zoo(c, wd)
    fp = pipeline.run_extract(c, wd, zoo=zoo)
    assert len(fp) > 0

    def rows(split):
        return {r.tobytes() for r in fp_lib.to_uint8(split.x).reshape(len(split), -1)}

    originals = {r.tobytes() for r in fp.original.reshape(len(fp), -1)}
    assert originals <= rows(zoo.split("d1_pool"))
    assert originals <= rows(zoo.party("training_reference"))
    assert not originals & rows(zoo.party("training_outsider_reference"))
    assert len(zoo.party("source")) == len(zoo.splits.d1)
    scored = fp_lib.score_examples(zoo, fp.x, fp.truth)
    assert scored["reference_labels"].shape[0] == 2  # one training, one outsider reference
