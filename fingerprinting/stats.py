"""Calibrated decisions: how often does an independent model agree by chance?

Calibration references (independent models held out of extraction) each agree
with the verification keys on k_i of n fingerprint inputs. Two nulls for "the
suspect is independent":
- binomial: one pooled chance rate p0 = sum k_i / sum n_i. It ignores that
  chance agreement varies a lot from model to model, and so is overconfident;
- beta-binomial: the agreement rate itself varies across independent models
  as Beta(a, b), fitted by maximum likelihood over the calibration models.
Each gives a one-sided p-value P(K >= k | independent).
"""

from __future__ import annotations

import numpy as np
from scipy import optimize
from scipy import stats


def binomial_p_value(k: int, n: int, p0: float) -> float:
    return float(stats.binom.sf(k - 1, n, min(max(p0, 1e-12), 1 - 1e-12)))


def beta_binomial_p_value(k: int, n: int, a: float, b: float) -> float:
    return float(stats.betabinom.sf(k - 1, n, a, b))


def fit_beta_binomial(k, n) -> tuple[float, float]:
    """Maximum-likelihood Beta(a, b) for agreement counts k_i out of n_i.

    A weak Beta(1, 1) prior on the rate (Jeffreys-like regularization) keeps the
    fit finite with few or degenerate calibration models (all 0, all equal).
    """
    k, n = np.asarray(k, float), np.asarray(n, float)

    def nll(log_ab):
        a, b = np.exp(log_ab)
        ll = stats.betabinom.logpmf(k, n, a, b).sum()
        # log-prior: rate ~ Beta(1,1) around the mean, and a gentle pull of a+b to moderate values
        return -(ll - 0.01 * (log_ab**2).sum())

    mean = (k.sum() + 0.5) / (n.sum() + 1.0)
    start = np.log([max(mean * 10, 1e-2), max((1 - mean) * 10, 1e-2)])
    res = optimize.minimize(
        nll, start, method="Nelder-Mead", options=dict(xatol=1e-6, fatol=1e-9, maxiter=2000)
    )
    a, b = np.exp(np.clip(res.x, -7, 12))
    return float(a), float(b)


def calibrate(agree_counts, n: int) -> dict:
    """Calibration statistics stored with the fingerprint."""
    k = [int(c) for c in agree_counts]
    out = {"n": int(n), "agree_counts": k, "num_models": len(k)}
    if not k or n == 0:
        return out
    out["pooled_rate"] = sum(k) / (len(k) * n)
    out["beta_a"], out["beta_b"] = fit_beta_binomial(k, [n] * len(k))
    return out


def p_values(k: int, n: int, calibration: dict) -> dict:
    """Both p-values of 'this suspect is independent' (None without calibration)."""
    if "pooled_rate" not in calibration or n == 0:
        return {"p_value": None, "p_value_binomial": None}
    pb = binomial_p_value(k, n, calibration["pooled_rate"])
    pbb = beta_binomial_p_value(k, n, calibration["beta_a"], calibration["beta_b"])
    return {"p_value": pbb, "p_value_binomial": pb}
