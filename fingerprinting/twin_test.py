"""The twin test: beyond the paper, for thieves that distil through the source's API.

A thief who distils the source through its prediction API sends the API its
transfer set, and its student learns the source's answers on exactly those
inputs, the source's own quirks among them. An independent model has no
reason to side with the source rather than with a *twin* of it (the source's
architecture, data and training recipe, another random key): for it the
source and its twins are exchangeable, whatever its own architecture, data
or accuracy. So the test asks the suspect, label-only, for its labels on a
sample of the queries the API answered (the *query log*) and measures

    d = agreement(suspect, source) - mean over twins of agreement(suspect, twin),

which is 0 in expectation for every independent model. Given the twins at
hand it is not quite 0 (a twin may happen to sit a little further from
every model than the source does, and an innocent model trained on the
logged images with their true labels sides with whichever of the source and
the twin is right more often there), so the null is measured, not assumed:
the d of the defender's own independent models on the log (calibration and
training references), and of the calibration references on images of their
own training data that the source never saw (as an innocent model trained on
the logged images sees them). With mean m and standard deviation s over
those n values, a suspect's z = (d - m) / (s * sqrt(1 + 1/n)), whose p-value
is Student's t with n - 1 degrees of freedom (the prediction interval of one
more draw).

Where the paper's fingerprint accuracy fails on Fashion-MNIST (an innocent
model of the source's architecture agrees with a C-BIM fingerprint as much as
a thief does, and so does a twin of the source), this statistic carries the
signal: a thief's d is many standard deviations above an innocent's, but only
on the inputs the thief trained on. On any other natural or mixed images
neither thieves nor innocents side with the source (docs/validation.md).
"""

from __future__ import annotations

import os

import numpy as np
from scipy import stats

from fingerprinting import artifact
from fingerprinting import data as data_lib
from fingerprinting import errors
from fingerprinting import progress

# The defender's models that measure d's spread under independence.
NULL_KINDS = ("calibration_reference", "training_reference")


def excess(labels_N, keys_N, twin_labels_KxN) -> float:
    """d: the suspect's agreement with the source less its mean agreement with the twins."""
    labels_N = np.asarray(labels_N)
    twins = (labels_N[None] == np.asarray(twin_labels_KxN)).mean(1).mean()
    return float((labels_N == np.asarray(keys_N)).mean() - twins)


def calibrate(d_null, models, data=None) -> dict:
    """The null of the twin test: the d of each independent model, by name, and
    the data each was measured on ("log", or "own": its own training images)."""
    data = list(data) if data is not None else ["log"] * len(d_null)
    return {"d": [float(d) for d in d_null], "models": list(models), "data": data}


def p_value(d: float, calibration: dict, leave_out: str | None = None) -> dict:
    """z and the one-sided p-value of d under independence (`leave_out`: a
    model of the null judged by the others, every value of it left out).
    Needs two values in the null."""
    null = np.array(
        [v for v, name in zip(calibration["d"], calibration["models"]) if name != leave_out]
    )
    if len(null) < 2:
        return {"twin_d": d, "twin_z": None, "twin_p_value": None}
    scale = null.std(ddof=1) * np.sqrt(1 + 1 / len(null))
    excess_d = d - null.mean()
    z = excess_d / scale if scale > 0 else (np.inf if excess_d > 0 else 0.0)
    p = float(stats.t.sf(z, df=len(null) - 1))
    return {"twin_d": d, "twin_z": float(z), "twin_p_value": p}


def log_split(zoo, spec: str) -> data_lib.Split:
    """The query log: D2, the inputs every thief of the study distilled from
    (`d2`), or an npz file of inputs `x` (uint8 or [0, 1])."""
    if spec == "d2":
        return zoo.split(spec)
    try:
        with np.load(spec, allow_pickle=False) as z:
            x = z["x"]
    except Exception as e:  # noqa: BLE001 (zipfile and numpy raise many kinds on bad bytes)
        raise errors.ConfigError(
            f"extract.query_log {spec!r}: not an npz with inputs x ({type(e).__name__}: {e})"
        ) from None
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    if x.shape[1:] != tuple(zoo.splits.input_shape):
        raise errors.ConfigError(
            f"extract.query_log {spec!r}: inputs of shape {x.shape[1:]}, the source takes "
            f"{tuple(zoo.splits.input_shape)}"
        )
    return data_lib.Split(x, np.zeros(len(x), np.int32))


def _sample(split: data_lib.Split, size: int, seed: int) -> np.ndarray:
    """Up to `size` of a split's inputs, drawn at random, as float pixels of uint8 values."""
    idx = np.random.default_rng(seed).permutation(len(split.x))[:size]
    return artifact.to_uint8(split.x[idx]).astype(np.float32) / 255.0


def build(zoo, config, labels_of) -> dict:
    """The twin test's part of a fingerprint: the sampled log (`x`, uint8), the
    source's and the twins' labels on it, and the null's d
    (`labels_of(groups, x)`)."""
    ecfg = config.extract
    twins = zoo.get("source_twin")

    def d_of(groups, x):  # the d of each member of `groups` on inputs x
        keys, twin_labels = labels_of([zoo.source()], x)[0], labels_of(twins, x)
        return keys, twin_labels, [excess(lab, keys, twin_labels) for lab in labels_of(groups, x)]

    names_of = lambda groups: [r["name"] for tg in groups for r in tg.records()]
    x = _sample(log_split(zoo, ecfg.query_log), ecfg.query_log_size, config.seed)
    null = zoo.groups(NULL_KINDS)
    keys, twin_labels, d_null = d_of(null, x)
    names, data = names_of(null), ["log"] * len(d_null)
    own = own_data(zoo)
    if own is not None:  # innocents trained on the images they are asked about
        cal = zoo.get("calibration_reference")
        d_own = d_of(cal, _sample(own, ecfg.query_log_size, config.seed))[2]
        names, data, d_null = names + names_of(cal), data + ["own"] * len(d_own), d_null + d_own
    progress.log(
        f"extract: twin test on {len(keys)} logged queries, {len(twin_labels)} twin(s); "
        "null d of independent models "
        + " ".join(f"{d:+.3f}{'*' if w == 'own' else ''}" for d, w in zip(d_null, data))
        + " (*: on their own training images)"
    )
    return {
        "x": artifact.to_uint8(x),
        "keys": keys.astype(np.int32),
        "twin_labels": twin_labels.astype(np.int32),
        "calibration": calibrate(d_null, names, data),
    }


def own_data(zoo) -> data_lib.Split | None:
    """The calibration references' training images when the source and its
    twins never saw them (D1's held-out part, or D2), else None."""
    party = zoo.party_name("calibration_reference")
    unseen = party == "d2" or (party == "d1_holdout" and zoo.party_name("source") == "d1_train")
    return zoo.split(party) if unseen else None


def enabled(config) -> bool:
    """Whether a config asks for the twin test (twins and a query log)."""
    return bool(config.models.get("source_twins", 0) and config.extract.get("query_log", ""))


def check(config) -> None:
    """Refuses half a twin test before anything trains."""
    twins, log = config.models.get("source_twins", 0), config.extract.get("query_log", "")
    if bool(twins) != bool(log):
        raise errors.ConfigError(
            "the twin test needs both models.source_twins > 0 and extract.query_log "
            f"(got source_twins={twins!r}, query_log={log!r}); set both or neither"
        )
    if log and config.extract.get("query_log_size", 0) <= 0:
        raise errors.ConfigError("extract.query_log_size must be positive")
    if log and log != "d2" and not os.path.isfile(log):
        raise errors.ConfigError(f"extract.query_log {log!r}: no such file (expected d2 or an npz)")
