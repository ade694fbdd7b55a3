"""The evasion game (Section 5.1): its pieces, its settings, one tiny game end to end."""

import os

import ml_collections
import numpy as np
import pytest

from fingerprinting import evasion
from fingerprinting import fingerprint as fp_lib
from fingerprinting import pipeline
from _configs import common


def test_auc_and_roc():
    auc, roc = evasion.auc_and_roc(np.array([3.0, 4.0, 5.0]), np.array([0.0, 1.0, 2.0]))
    assert auc == 1.0 and roc[1] == [0.025, 1.0]  # every positive caught at a low FPR
    assert roc[-1] == [1.0, 1.0] and len(roc) == len(evasion.ROC_GRID)
    same = np.arange(10.0)
    assert evasion.auc_and_roc(same, same)[0] == 0.5
    assert evasion.auc_and_roc(np.zeros(3), np.ones(3))[0] == 0.0


def test_evade_answers_randomly_only_where_flagged():
    labels = np.full(1000, 3)
    flagged = np.arange(1000) < 500
    out = evasion.evade(labels, flagged, 10, np.random.default_rng(0))
    assert np.all(out[~flagged] == 3)
    assert set(out[flagged]) == set(range(10))  # uniform over the classes


def test_settings_defaults_and_checks():
    c = common.base()
    assert evasion.settings(c) == evasion.DEFAULTS
    c.evasion = ml_collections.ConfigDict(dict(epochs=2, detector="mlp"))
    s = evasion.settings(c)
    assert s["epochs"] == 2 and s["detector"] == "mlp" and s["max_cost"] == 0.05
    for bad, match in (
        (dict(detector="resnet1000"), "unknown evasion.detector"),
        (dict(false_positive_rate=1.5), "false_positive_rate = 1.5 is out of range"),
        (dict(epochs=0), "epochs = 0"),
        (dict(max_auc=0.4), "max_auc = 0.4"),
        (dict(epoch=3), "unknown evasion setting"),
    ):
        c.evasion = ml_collections.ConfigDict(bad)
        with pytest.raises(ValueError, match=match):
            evasion.settings(c)


@pytest.fixture(scope="module")
def game(tmp_path_factory):
    """A tiny run whose thief makes large, easily seen perturbations."""
    wd = str(tmp_path_factory.mktemp("evasion"))
    c = common.smoke(common.base())
    one = "mlp:1"
    c.models.source = "mlp"
    c.models.training_surrogates = c.models.training_references = one
    c.models.testing_surrogates = "mlp:2"
    c.models.testing_references = c.models.calibration_references = one
    c.extract.update(dict(eps=0.3, alpha=0.05, steps=8, num_candidates=64, batch_size=64))
    c.evasion = ml_collections.ConfigDict(dict(detector="mlp", num_candidates=96, epochs=30))
    zoo = pipeline.open_zoo(c, wd)
    fp = pipeline.run_extract(c, wd, zoo=zoo)
    return zoo, fp, c, evasion.run_evasion(zoo, fp, c), wd


def test_game_rows(game):
    zoo, fp, _, rows, _ = game
    assert [r["name"] for r in rows] == [
        "testing_surrogate-mlp/0+evasion",
        "testing_surrogate-mlp/1+evasion",
    ]
    for r, tg_labels in zip(rows, fp_lib.labels_of(zoo.get("testing_surrogate"), fp.inputs)):
        assert r["kind"] == "evasion" and 0 <= r["auc_fingerprint"] <= 1
        plain = fp_lib.verify_labels(fp, tg_labels)
        assert r["fingerprint_accuracy_without"] == plain["fingerprint_accuracy"]
        assert r["accuracy_cost"] == pytest.approx(r["test_accuracy_without"] - r["test_accuracy"])
        # Only flagged inputs change, so the cost is bounded by what was flagged.
        assert abs(r["accuracy_cost"]) <= r["flagged_benign"] + 1e-9
        assert r["caught"] == (r["verified"] or r["verified_calibrated"])
        assert r["defender_wins"] == (
            r["auc_fingerprint"] <= 0.6 or r["accuracy_cost"] > 0.05 or r["caught"]
        )
        for key in ("test_accuracy", "fingerprint_accuracy", "verified", "p_value"):
            assert key in r  # a verdict row like any other in metrics.jsonl
    # The thief's own examples are perturbed by up to 0.3: its detector sees them.
    assert rows[0]["auc_own"] > 0.75
    assert 0.0 <= rows[0]["flagged_benign"] <= 0.5


def test_report_section(game):
    *_, rows, wd = game
    md = evasion.report_section(rows + [{"kind": "testing_surrogate"}], wd)
    assert "Non-evasiveness" in md and md.count("+evasion |") == 2
    assert f"{rows[0]['auc_fingerprint']:.3f}" in md
    assert os.path.getsize(os.path.join(wd, evasion.PLOT)) > 1000
    assert evasion.report_section([], wd) == ""
