"""The twin test: its statistic, its null, the fingerprint's query log, and a run."""

import io
import json
import os

import numpy as np
import pytest

from _cli import SMOKE, assert_one_line_error, run
from fingerprinting import artifact
from fingerprinting import config as config_lib
from fingerprinting import errors
from fingerprinting import fingerprint as fp_lib
from fingerprinting import twin_test
from fingerprinting import zoo as zoo_lib
from fingerprinting.suspects import base as suspects_base


def copies(reference, share, rng, k=10):
    """`reference` with a random share of its labels replaced by others."""
    out = np.array(reference)
    flip = rng.random(len(out)) < share
    out[flip] = (out[flip] + rng.integers(1, k, flip.sum())) % k
    return out


def test_excess_is_agreement_with_the_source_less_agreement_with_the_twins():
    keys = np.array([0, 1, 2, 3])
    twins = np.array([[0, 1, 9, 9], [0, 9, 9, 3]])  # each agrees with the source on 2 of 4
    assert twin_test.excess(keys, keys, twins) == pytest.approx(1.0 - 0.5)
    assert twin_test.excess(twins[0], keys, twins) == pytest.approx(0.5 - (1.0 + 0.5) / 2)
    assert twin_test.excess(np.full(4, 7), keys, twins) == 0.0


def test_exchangeable_models_are_rarely_verified_and_a_student_of_the_source_always():
    """Source, twins and independent models all noisy copies of one truth: the
    independent ones side with the source as often as with a twin, and the test
    flags about `significance` of them; a student that learnt the source's own
    answers on the log is flagged every time."""
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 10, 4000)
    source, twins = copies(truth, 0.2, rng), np.stack([copies(truth, 0.2, rng) for _ in range(2)])
    null = [twin_test.excess(copies(truth, 0.2, rng), source, twins) for _ in range(12)]
    cal = twin_test.calibrate(null, [f"m{i}" for i in range(12)])
    independent = [
        twin_test.p_value(twin_test.excess(copies(truth, 0.2, rng), source, twins), cal)
        for _ in range(200)
    ]
    false_positives = np.mean([r["twin_p_value"] < 0.01 for r in independent])
    assert false_positives <= 0.04
    students = [
        twin_test.p_value(twin_test.excess(copies(source, 0.1, rng), source, twins), cal)
        for _ in range(20)
    ]
    assert all(r["twin_p_value"] < 1e-6 for r in students)


def test_a_model_of_the_null_is_judged_by_the_others():
    cal = twin_test.calibrate([0.01, -0.01, 0.0, 0.30], ["a", "b", "c", "d"])
    with_itself = twin_test.p_value(0.30, cal)
    without = twin_test.p_value(0.30, cal, leave_out="d")
    # the others: mean 0, standard deviation 0.01, three of them
    assert without["twin_z"] == pytest.approx(0.30 / (0.01 * np.sqrt(1 + 1 / 3)))
    assert without["twin_p_value"] < with_itself["twin_p_value"]
    assert (
        twin_test.p_value(0.1, twin_test.calibrate([0.0, 0.1], ["a", "b"]), "a")["twin_z"] is None
    )


def test_the_null_is_centred_on_what_the_twins_at_hand_give_independent_models():
    """Every independent model a little closer to the source than to this twin:
    the offset is measured, so an independent model at the offset is not
    flagged, and one far above it is."""
    cal = twin_test.calibrate([0.020, 0.024, 0.018, 0.022, 0.021, 0.019], list("abcdef"))
    assert twin_test.p_value(0.021, cal)["twin_p_value"] > 0.3
    assert twin_test.p_value(0.040, cal)["twin_p_value"] < 1e-3


def _fp_with_log(rng, log=200, twins=2):
    fp = fp_lib_fixture(rng)
    fp.log_x = rng.integers(0, 256, (log, 8, 8, 1), dtype=np.uint8)
    fp.log_keys = rng.integers(0, 10, log).astype(np.int32)
    fp.log_twin_labels = np.stack([copies(fp.log_keys, 0.3, rng) for _ in range(twins)]).astype(
        np.int32
    )
    fp.meta["twin_calibration"] = twin_test.calibrate([0.01, -0.02, 0.015, 0.0], list("abcd"))
    return fp


def fp_lib_fixture(rng, n=20):
    return artifact.Fingerprint(
        x=rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8),
        original=rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8),
        keys=rng.integers(0, 10, n).astype(np.int32),
        truth=rng.integers(0, 10, n).astype(np.int32),
        conferrability=np.ones(n, np.float32),
        meta={"num_classes": 10, "input_shape": [8, 8, 1], "theta": 0.7, "calibration": {}},
        decoy_x=rng.integers(0, 256, (30, 8, 8, 1), dtype=np.uint8),
        decoy_truth=rng.integers(0, 10, 30).astype(np.int32),
    )


def test_the_query_log_round_trips_and_a_changed_log_is_refused(tmp_path):
    fp = _fp_with_log(np.random.default_rng(1))
    path = str(tmp_path / "fp.npz")
    artifact.save(path, fp)
    got = artifact.load(path)
    assert got.has_twin_test and got.meta["format_version"] == 3
    for name in artifact.LOG_ARRAYS:
        np.testing.assert_array_equal(getattr(got, name), getattr(fp, name))
    with np.load(path) as z:
        contents = {k: z[k] for k in z.files}
    contents["log_keys"] = (contents["log_keys"] + 1) % 10
    buf = io.BytesIO()
    np.savez(buf, **contents)
    with pytest.raises(artifact.FingerprintError, match="SHA-256"):
        artifact.from_bytes(buf.getvalue())


def test_a_fingerprint_without_a_log_has_no_twin_test(tmp_path):
    fp = fp_lib_fixture(np.random.default_rng(2))
    path = str(tmp_path / "fp.npz")
    artifact.save(path, fp)
    got = artifact.load(path)
    assert not got.has_twin_test and got.log_x.shape == (0, 8, 8, 1)
    result = fp_lib.verify_labels(got, got.keys, log_labels=np.zeros(0))
    assert "twin_d" not in result and "verified_twin" not in result


def test_a_suspect_gets_the_log_among_its_queries_and_is_judged_on_it():
    """The suspect answers by looking its inputs up: a copy of the source is
    verified by the twin test, a copy of a twin is not."""
    rng = np.random.default_rng(3)
    fp = _fp_with_log(rng)
    table = {x.tobytes(): int(k) for x, k in zip(fp.log_x, fp.log_keys)}
    twin = {x.tobytes(): int(k) for x, k in zip(fp.log_x, fp.log_twin_labels[0])}

    def answers(lookup):
        return lambda xb: np.array([lookup.get(x.tobytes(), 0) for x in xb])

    copy = suspects_base.Suspect("copy", "callable", answers(table), 10, (8, 8, 1))
    result = fp_lib.verify_suspect(fp, copy, rng=np.random.default_rng(0))
    assert result["n_queries"] == len(fp) + 30 + len(fp.log_keys)
    assert result["log_queries"] == len(fp.log_keys)
    assert result["twin_d"] == pytest.approx(
        1.0 - (fp.log_twin_labels == fp.log_keys[None]).mean(), abs=1e-9
    )
    assert result["verified_twin"]
    other = suspects_base.Suspect("twin", "callable", answers(twin), 10, (8, 8, 1))
    assert not fp_lib.verify_suspect(fp, other)["verified_twin"]


def test_wrong_length_answers_on_the_log_are_refused():
    fp = _fp_with_log(np.random.default_rng(4))
    with pytest.raises(errors.SuspectError, match="query log"):
        fp_lib.verify_labels(fp, fp.keys, log_labels=fp.log_keys[:-1])


def _config(**models):
    c = config_lib.load_module("configs/digits.py").get_config("smoke")
    c.models.update(models)
    return c


def test_half_a_twin_test_and_twins_of_a_source_not_trained_here_are_refused():
    c = _config(source_twins=1)
    with pytest.raises(errors.ConfigError, match="both"):
        twin_test.check(c)
    c = _config(source_twins=1, source="my_models:source")
    c.extract.query_log = "d2"
    with pytest.raises(zoo_lib.SpecError, match="source_twins"):
        zoo_lib.validate(c)
    c = _config(source_twins=-1)
    with pytest.raises(zoo_lib.SpecError, match="source_twins"):
        zoo_lib.validate(c)


def test_the_twins_repeat_the_source_recipe_with_other_keys():
    c = _config(source_twins=2)
    (group,) = zoo_lib.groups_of_kind(c, "source_twin", 10)
    assert (group.arch, group.size) == (c.models.source, 2)
    assert zoo_lib.epochs_of(c, "source_twin") == c.train.source_epochs
    assert not np.array_equal(
        zoo_lib.group_seed(c, group.name), zoo_lib.group_seed(c, f"source-{c.models.source}")
    )


def test_a_missing_query_log_is_refused_before_anything_trains(tmp_path):
    proc = run(
        "train",
        SMOKE,
        f"--workdir={tmp_path / 'wd'}",
        "--config.models.source_twins=1",
        f"--config.extract.query_log={tmp_path / 'nowhere.npz'}",
        check=False,
    )
    assert_one_line_error(proc, "no such file")
    assert not os.path.exists(tmp_path / "wd" / "models")


def test_a_query_log_file_of_the_wrong_shape_is_one_error_line(tmp_path):
    log = str(tmp_path / "log.npz")
    np.savez(log, x=np.zeros((10, 5, 5, 1), np.uint8))
    proc = run(
        "extract",
        SMOKE,
        f"--workdir={tmp_path / 'wd'}",
        "--config.models.source_twins=1",
        f"--config.extract.query_log={log}",
        check=False,
    )
    assert_one_line_error(proc, "query_log")


def test_a_run_with_twins_reports_the_twin_test_beside_the_paper(tmp_path):
    wd = str(tmp_path / "wd")
    run(
        "evaluate",
        SMOKE,
        f"--workdir={wd}",
        "--config.models.source_twins=1",
        "--config.extract.query_log=d2",
        "--config.extract.query_log_size=200",
        "--config.data.source_holdout=0.25",
        "--config.data.fingerprint_pool=0",
        "--config.models.training_outsider_references=",
        "--config.models.calibration_data=d1_holdout",
        "--config.removal.attacks=ftll",
        "--config.evaluate.evasion=False",
    )
    with open(os.path.join(wd, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    fp = artifact.load(os.path.join(wd, "fingerprint.npz"))
    assert fp.has_twin_test and len(fp.log_keys) == 200 and fp.log_twin_labels.shape == (1, 200)
    cal = fp.meta["twin_calibration"]
    assert any(n.startswith("calibration_reference") for n in cal["models"])
    assert any(n.startswith("training_reference") for n in cal["models"])
    # the calibration references also on their own training images, which the source never saw
    own = [n for n, w in zip(cal["models"], cal["data"]) if w == "own"]
    assert own and all(n.startswith("calibration_reference") for n in own)
    by_name = {r["name"]: r for r in rows}
    # The source and its fine-tuned copy side with the source on every input a twin does not.
    for name in ("source-cnn_small/0", "attack-ftll/0"):
        assert by_name[name]["twin_d"] > 0.05 and by_name[name]["verified_twin"], by_name[name]
    for r in rows:
        assert "twin_p_value" in r and r["log_queries"] == 200
    for r in (r for r in rows if r["kind"] == "calibration_reference"):
        kept = [i for i, n in enumerate(cal["models"]) if n != r["name"]]
        others = twin_test.calibrate([cal["d"][i] for i in kept], [cal["models"][i] for i in kept])
        assert len(kept) == len(cal["models"]) - 2  # its value on the log and on its own data
        rest = twin_test.p_value(r["twin_d"], others)
        assert r["twin_p_value"] == pytest.approx(rest["twin_p_value"])
    with open(os.path.join(wd, "report.md")) as f:
        assert "Twin test (p < 0.01)" in f.readline() + f.read(4000)
