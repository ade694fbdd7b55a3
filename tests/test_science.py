"""Table 1's figures (`harness.score_method`) and the paper's accuracy band,
on label matrices written by hand."""

import numpy as np
import pytest

from fingerprinting import fingerprint as fp_lib
from fingerprinting import harness
from fingerprinting import report

TRUTH = np.array([0, 1, 2, 3, 4])
# The source's labels on the five attacked inputs: adversarial on 0, 2 and 4 (label != truth).
KEYS = np.array([1, 1, 0, 3, 2])
SURROGATES = np.array(
    [
        [1, 1, 0, 0, 2],
        [1, 0, 1, 3, 2],
        [0, 1, 0, 3, 2],
    ]
)  # agree with KEYS on 2/3, 2/3, 2/3, 2/3, 3/3
REFERENCES = np.array(
    [
        [1, 1, 2, 3, 2],
        [0, 1, 2, 3, 0],
    ]
)  # agree with KEYS on 1/2, 2/2, 0/2, 2/2, 1/2


class _Zoo:
    """Just enough of a zoo for `score_examples`: groups are names, their labels a table."""

    strategy = None

    def source(self):
        return "source"

    def get(self, kind):
        return [kind]

    def groups(self, kinds):
        return [kinds] if isinstance(kinds, str) else list(kinds)


@pytest.fixture
def hand_labels(monkeypatch):
    table = {"source": KEYS[None], "testing_surrogate": SURROGATES, "testing_reference": REFERENCES}
    monkeypatch.setattr(fp_lib, "labels_of", lambda groups, x, strategy=None: table[groups[0]])
    return table


def test_score_method_gives_table_1_on_the_successful_examples(hand_labels):
    x = np.zeros((5, 2, 2, 1), np.uint8)
    row = harness.score_method(_Zoo(), x, TRUTH)
    assert row["success_rate"] == pytest.approx(3 / 5)
    # Over the adversarial examples 0, 2, 4 only:
    # transferability to references (Eq. 9): (1/2 + 0 + 1/2) / 3;
    assert row["transferability"] == pytest.approx(1 / 3)
    # conferrability (Eq. 10) per example: 2/3 (1 - 1/2), 2/3 (1 - 0), 1 (1 - 1/2).
    np.testing.assert_allclose(row["per_example_conferrability"], [0.3333, 0.6667, 0.5])
    assert row["conferrability"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert row["surrogate_transfer"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def test_score_method_without_a_successful_example(hand_labels):
    x = np.zeros((5, 2, 2, 1), np.uint8)
    row = harness.score_method(_Zoo(), x, KEYS)  # the truth is the source's labels
    assert row["success_rate"] == 0.0
    assert row["transferability"] == row["conferrability"] == row["surrogate_transfer"] == 0.0
    assert row["per_example_conferrability"] == []


def test_within_five_points_of_the_source():
    # Test accuracies from hand-made labels on 20 test inputs: the source gets 16 right.
    truth = np.arange(20) % 10
    accuracy = lambda right: float((np.where(np.arange(20) < right, truth, -1) == truth).mean())
    source = accuracy(16)  # 0.80
    band = lambda right: report.within_band({"test_accuracy": accuracy(right)}, source)
    assert band(16) and band(15) and band(17), "0.80, 0.75 and 0.85 are within 5 points"
    assert not band(14) and not band(18), "0.70 and 0.90 are 10 points away"
    assert not report.within_band({"test_accuracy": source}, None), "no source, no band"
    assert report.ACCURACY_BAND == 0.05
