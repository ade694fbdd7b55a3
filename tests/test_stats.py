"""Calibrated p-values: the beta-binomial accounts for model-to-model spread."""

import numpy as np
import pytest

from fingerprinting import stats


def test_binomial_matches_definition():
    from math import comb

    n, k, p = 20, 15, 0.3
    want = sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
    assert stats.binomial_p_value(k, n, p) == pytest.approx(want, rel=1e-9)


def test_beta_binomial_fit_recovers_spread():
    rng = np.random.default_rng(0)
    rates = rng.beta(2.0, 6.0, size=400)
    k = rng.binomial(100, rates)
    a, b = stats.fit_beta_binomial(k, np.full(400, 100))
    assert a / (a + b) == pytest.approx(0.25, abs=0.03)
    assert 3 < a + b < 16  # over-dispersed: far from the binomial limit a + b -> inf


def test_over_dispersion_makes_p_values_honest():
    # Independent models agreeing 6%..72% (FINDINGS.md): a pooled binomial calls a
    # 72% agreement impossible under independence; the beta-binomial does not.
    counts = [6, 58, 18, 35, 9, 26, 39, 6]
    cal = stats.calibrate(counts, 100)
    p = stats.p_values(72, 100, cal)
    assert p["p_value_binomial"] < 1e-12
    assert p["p_value"] > 1e-3
    assert stats.p_values(100, 100, cal)["p_value"] < p["p_value"]


def test_degenerate_calibration_stays_finite():
    for counts in ([0, 0, 0], [10, 10, 10], [5]):
        cal = stats.calibrate(counts, 10)
        assert np.isfinite(cal["beta_a"]) and np.isfinite(cal["beta_b"])
        assert 0 <= stats.p_values(9, 10, cal)["p_value"] <= 1
    assert stats.p_values(3, 10, stats.calibrate([], 10))["p_value"] is None
