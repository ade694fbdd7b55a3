"""Calibrated decisions: how often does an independent model agree by chance?

Calibration references (independent models held out of extraction) each agree
with the verification keys on k_i of n fingerprint inputs. Two nulls for "the
suspect is independent":
- binomial: one pooled chance rate p0 = sum k_i / sum n_i. It ignores that
  chance agreement varies a lot from model to model, and so is overconfident;
- beta-binomial: the agreement rate itself varies across independent models
  as Beta(a, b). With a handful of calibration models a single fitted (a, b)
  is overconfident too: four models that happen to agree alike say little
  about how far a fifth may stray. The decision therefore uses the posterior
  predictive tail: P(K >= k) averaged over every Beta(mean, concentration)
  on a grid, weighted by how well it explains the calibration counts (flat
  prior on the mean and on the log concentration). Few models leave wide
  dispersions plausible and the p-value conservative; many models sharpen it.
Each gives a one-sided p-value P(K >= k | independent); the maximum-likelihood
fit (a, b) is kept as a summary.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize
from scipy import special
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


# The grid of the posterior predictive: Beta means and log-spaced
# concentrations a + b from very dispersed (0.2) to nearly fixed rates (1e4).
_MEANS = (np.arange(100) + 0.5) / 100
_CONCENTRATIONS = np.logspace(np.log10(0.2), 4, 80)


def _betabinom_logpmf(j, n: int, a, b):
    """log P(K = j) of BetaBin(n, a, b), broadcasting j against a and b."""
    log_choose = special.gammaln(n + 1) - special.gammaln(j + 1) - special.gammaln(n - j + 1)
    return log_choose + special.betaln(j + a, n - j + b) - special.betaln(a, b)


def predictive_p_value(k: int, n: int, agree_counts, n_calibration: int) -> float:
    """P(K >= k) for a new independent model, averaged over the posterior of
    Beta(mean, concentration) given calibration counts k_i of n_calibration."""
    mean, conc = np.meshgrid(_MEANS, _CONCENTRATIONS, indexing="ij")
    a, b = (mean * conc).ravel()[None], ((1.0 - mean) * conc).ravel()[None]
    counts = np.asarray(agree_counts, float)[:, None]
    loglik = _betabinom_logpmf(counts, n_calibration, a, b).sum(0)
    w = np.exp(loglik - loglik.max())
    tail_j = np.arange(max(k, 0), n + 1, dtype=float)[:, None]
    tail = np.exp(_betabinom_logpmf(tail_j, n, a, b)).sum(0)  # 0 when k > n
    return float(np.clip((w * tail).sum() / w.sum(), 0.0, 1.0))


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
    """Both p-values of 'this suspect is independent' (None without calibration):
    the beta-binomial posterior predictive (the decision) and the pooled binomial."""
    if "pooled_rate" not in calibration or n == 0:
        return {"p_value": None, "p_value_binomial": None}
    pb = binomial_p_value(k, n, calibration["pooled_rate"])
    pbb = predictive_p_value(k, n, calibration["agree_counts"], calibration["n"])
    return {"p_value": pbb, "p_value_binomial": pb}
