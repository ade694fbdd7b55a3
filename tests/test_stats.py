"""Calibrated p-values: the beta-binomial accounts for model-to-model spread."""

from fractions import Fraction
from math import comb
from math import factorial

import numpy as np
import pytest

from fingerprinting import fingerprint
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


def _beta_binomial_pmf(i: int, n: int, a: int, b: int) -> Fraction:
    """P(K = i) of BetaBin(n, a, b), exactly, for integer a and b:
    C(n, i) B(i + a, n - i + b) / B(a, b), with B(p, q) = (p-1)! (q-1)! / (p+q-1)!."""
    beta = lambda p, q: Fraction(factorial(p - 1) * factorial(q - 1), factorial(p + q - 1))
    return comb(n, i) * beta(i + a, n - i + b) / beta(a, b)


def test_beta_binomial_p_value_is_the_upper_tail_of_the_pmf():
    # P(K >= 7), n = 10, Beta(2, 3): the pmf summed over 7..10 is 25/143.
    want = sum(_beta_binomial_pmf(i, 10, 2, 3) for i in range(7, 11))
    assert want == Fraction(25, 143)
    assert stats.beta_binomial_p_value(7, 10, 2.0, 3.0) == pytest.approx(float(want), rel=1e-9)
    # The tail from k = n is the single term P(K = n) = 1/91; from k = 0 it is everything.
    p_n = _beta_binomial_pmf(10, 10, 2, 3)
    assert p_n == Fraction(1, 91)
    assert stats.beta_binomial_p_value(10, 10, 2.0, 3.0) == pytest.approx(float(p_n), rel=1e-9)
    assert stats.beta_binomial_p_value(0, 10, 2.0, 3.0) == pytest.approx(1.0, rel=1e-12)


def test_calibrate_pools_the_agreement_rate():
    cal = stats.calibrate([2, 4, 3, 6], 20)
    assert cal["pooled_rate"] == 15 / 80  # sum k_i / sum n_i
    assert (cal["n"], cal["num_models"], cal["agree_counts"]) == (20, 4, [2, 4, 3, 6])


def test_predictive_p_value_is_conservative_with_few_calibration_models():
    n = 56
    few, many = [8, 8, 8, 8], [8] * 32
    p_few = stats.predictive_p_value(20, n, few, n)
    p_many = stats.predictive_p_value(20, n, many, n)
    # Four models that agree alike leave wide dispersions plausible: the tail is
    # heavier than with 32 such models, and far heavier than the pooled binomial.
    assert p_few > 3 * p_many
    assert p_many > stats.binomial_p_value(20, n, 8 / 56)
    assert p_few > 10 * stats.binomial_p_value(20, n, 8 / 56)


def test_predictive_p_value_is_a_tail_probability():
    counts, n = [11, 7, 3, 3], 56
    p = [stats.predictive_p_value(k, n, counts, n) for k in range(n + 1)]
    assert p[0] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(p, p[1:]))  # P(K >= k) falls with k
    assert 0 < p[-1] < 1e-3
    # The decision of `p_values` is the predictive tail; the binomial is beside it.
    cal = stats.calibrate(counts, n)
    assert stats.p_values(28, n, cal)["p_value"] == pytest.approx(p[28])
    assert stats.p_values(28, n, cal)["p_value_binomial"] == pytest.approx(
        stats.binomial_p_value(28, n, sum(counts) / (4 * n))
    )


def test_a_calibration_reference_is_judged_by_the_null_of_the_others():
    calibration = dict(
        stats.calibrate([10, 12, 11, 9, 60], 100), models=["a", "b", "c", "d", "e"], data="d1"
    )
    rest = fingerprint.calibration_without(calibration, "e")
    assert rest["models"] == ["a", "b", "c", "d"] and rest["agree_counts"] == [10, 12, 11, 9]
    assert rest["num_models"] == 4 and rest["data"] == "d1"
    assert rest["pooled_rate"] == pytest.approx(42 / 400)
    # With itself in the null an outlier looks less extreme than it is.
    with_itself = stats.p_values(60, 100, calibration)["p_value"]
    assert stats.p_values(60, 100, rest)["p_value"] < with_itself
    assert fingerprint.calibration_without(calibration, "not a member") is calibration
