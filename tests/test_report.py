"""The report's verdict line, separation summary and study table, on hand-made rows."""

import os

import pytest

from configs import digits
from fingerprinting import report


def _row(kind, fp_acc, verified=False, calibrated=False, test_acc=0.9, **extra):
    return dict(
        name=f"{kind}-x/0",
        kind=kind,
        test_accuracy=test_acc,
        fingerprint_accuracy=fp_acc,
        verified=verified,
        verified_calibrated=calibrated,
        **extra,
    )


ROWS = [
    _row("source", 1.0, True, True, test_acc=0.92),
    _row("testing_surrogate", 0.9, True, True),
    _row("testing_surrogate", 0.6, False, True),
    _row("label_only_surrogate", 0.5),
    _row("testing_reference", 0.5),
    _row("testing_reference", 0.2),
    _row("calibration_reference", 0.75, True, False),
    _row("training_surrogate", 0.0),  # never reported: the attack saw it
]


def test_roc_auc_counts_pairs_and_ties():
    assert report.roc_auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert report.roc_auc([0.1], [0.9]) == 0.0
    # 0.9 beats 3 of 3; 0.5 beats 0.2, ties 0.5, loses to 0.75: (3 + 1.5) / 6.
    assert report.roc_auc([0.9, 0.5], [0.5, 0.2, 0.75]) == pytest.approx(4.5 / 6)
    assert report.roc_auc([], [0.1]) is None


def test_separation_counts_derived_and_independent_models():
    sep = report.separation(ROWS)
    assert (sep["derived"], sep["independent"]) == (3, 3)
    assert sep["min_surrogate"] == 0.5 and sep["max_reference"] == 0.75
    assert sep["margin"] == pytest.approx(-0.25)
    # Pairs (derived, independent): 0.9 wins 3; 0.6 wins 2 (0.5, 0.2);
    # 0.5 ties 0.5, wins 0.2: (3 + 2 + 1.5) / 9.
    assert sep["auc"] == pytest.approx(6.5 / 9)
    assert (sep["derived_verified"], sep["derived_verified_calibrated"]) == (1, 2)
    assert (sep["independent_verified"], sep["independent_verified_calibrated"]) == (1, 0)


def test_verdict_line_says_both_decisions_for_both_kinds():
    line = report.verdict_line(report.separation(ROWS), 0.7, 0.01)
    assert line.startswith("**Verdict: 1 of 3 derived models verified at theta = 0.7, 2 of 3")
    assert "1 of 3 independent models wrongly verified at theta, 0 of 3 by the calibrated" in line
    assert "ROC AUC 0.72" in line


def test_study_table_and_plot(tmp_path):
    attack = dict(attack="retraining", parameters={})
    rows = ROWS + [
        _row("attack", 0.8, True, True, test_acc=0.90, **attack),
        _row("attack", 0.3, test_acc=0.89, **dict(attack, attack="noise")),
        _row("attack", 0.9, True, True, test_acc=0.50, **dict(attack, attack="prune")),
    ]
    study = [report.study_row(0, rows), report.study_row(1, ROWS)]
    assert study[0]["attacks_within_band"] == 2  # prune lost 42 points: not counted
    assert study[0]["attacks_caught"] == 1 and study[0]["attacks_missed"] == ["noise"]
    os.makedirs(tmp_path / "plots")
    text = report.write_study(str(tmp_path), study, 0.7, 0.01)
    assert (
        "| 0 | 0.920 | 0.50 | 0.75 | -0.25 | 0.72 | 1 / 2 of 3 | 1 / 0 of 3 | 1 of 2 (missed: noise) |"
        in text
    )
    assert os.path.getsize(tmp_path / "plots" / "study.png") > 1000
    assert (tmp_path / "study.md").read_text() == text


def test_summary_says_when_held_out_models_ranked_the_fingerprint():
    meta = {"dataset": "digits", "candidates": 400, "adversarial": 390, "passed_tau": 150}
    fp = type("FP", (), {"meta": meta, "__len__": lambda self: 100})()
    config = digits.get_config()
    assert not any("held-out" in line for line in report.summary_section(fp, ROWS, config))
    meta.update(
        selection_models=15,
        mean_selection_conferrability=0.52,
        mean_selection_conferrability_passed=0.41,
    )
    (line,) = [line for line in report.summary_section(fp, ROWS, config) if "held-out" in line]
    assert "15 held-out models" in line and "0.520 on the examples kept" in line
    assert "0.410 on all that passed" in line


def test_per_architecture_splits_derived_from_independent_and_pools_seeds():
    arch = {"testing_surrogate": "mlp", "label_only_surrogate": "cnn_small"}
    rows = [dict(r, architecture=arch.get(r["kind"], "cnn_small")) for r in ROWS]
    small, mlp = report.per_architecture(rows)
    assert small["architecture"] == "cnn_small" and mlp["architecture"] == "mlp"
    assert mlp["derived_accuracies"] == [0.9, 0.6] and mlp["independent_accuracies"] == []
    assert (mlp["derived_verified"], mlp["derived_verified_p"]) == (1, 2)
    # The source and the training surrogate are neither derived nor independent here.
    assert small["derived_accuracies"] == [0.5]
    assert small["independent_accuracies"] == [0.5, 0.2, 0.75]
    assert (small["independent_verified"], small["independent_verified_p"]) == (1, 0)
    pooled = report.pooled_architectures([{"per_architecture": [small, mlp]}] * 2)
    assert pooled[0]["independent_accuracies"] == [0.5, 0.2, 0.75] * 2
    assert pooled[1]["derived_verified_p"] == 4 and small["derived_accuracies"] == [0.5]
    table = report.architecture_table(pooled, source_arch="mlp")
    assert "| mlp (source's) | 0.60 0.60 0.90 0.90 | - | 2 / 4 of 4 | 0 / 0 of 0 |" in table
