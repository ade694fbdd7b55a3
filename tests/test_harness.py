"""harness: the evaluation harness's parsing and its per-model verdict."""

import numpy as np
import pytest

from fingerprinting import artifact
from fingerprinting import errors
from fingerprinting import harness
from _configs import common


def test_parse_seeds():
    assert harness.parse_seeds("0, 1,2") == [0, 1, 2]
    for bad in ("0,x", "", "1,1"):
        with pytest.raises(errors.ConfigError):
            harness.parse_seeds(bad)


def test_parse_methods_knows_cbim_and_the_baselines():
    assert harness.parse_methods("cbim,fgsm") == ["cbim", "fgsm"]
    with pytest.raises(errors.ConfigError, match="unknown attack method"):
        harness.parse_methods("cbim,magic")


def test_verdict_adds_the_calibrated_decision_at_the_configured_level():
    n = 50
    keys = np.arange(n) % 10
    counts = [5, 6, 7, 4]  # four calibration references agree on about a tenth
    fp = artifact.Fingerprint(
        x=np.zeros((n, 8, 8, 1), np.uint8),
        original=np.zeros((n, 8, 8, 1), np.uint8),
        keys=keys,
        truth=keys,
        conferrability=np.ones(n, np.float32),
        meta={
            "theta": 0.7,
            "calibration": {"agree_counts": counts, "n": n, "pooled_rate": sum(counts) / 4 / n},
        },
    )
    config = common.base()
    copy = harness.verdict(fp, keys, config)
    assert copy["verified"] and copy["verified_calibrated"] and copy["fingerprint_accuracy"] == 1.0
    other = harness.verdict(fp, (keys + 1) % 10, config)
    assert not other["verified"] and not other["verified_calibrated"]
    config.verify.significance = 1e-300  # no p-value is that small
    assert not harness.verdict(fp, keys, config)["verified_calibrated"]
