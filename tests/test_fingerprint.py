"""Conferrability (Eq. 9-10), C-BIM (Section 4.4) and Verify (Algorithm 1)."""

from math import comb

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fingerprinting import artifact
from fingerprinting import ensemble
from fingerprinting import fingerprint as fp_lib
from fingerprinting import stats
from fingerprinting import suspects
from fingerprinting.attacks import cbim as cbim_lib


def test_transferability_and_conferrability():
    target = np.array([0, 1, 2])
    surr = np.array([[0, 1, 0], [0, 1, 1]])
    refs = np.array([[0, 0, 2], [1, 0, 2]])
    np.testing.assert_allclose(fp_lib.transferability(surr, target), [1.0, 1.0, 0.0])
    np.testing.assert_allclose(fp_lib.conferrability(surr, refs, target), [0.5, 1.0, 0.0])


def test_conferrability_is_zero_when_references_agree_with_surrogates():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (4, 30))
    target = labels[0]
    same = np.repeat(labels[:1], 4, 0)
    np.testing.assert_allclose(fp_lib.conferrability(same, same, target), 0.0)


def test_rank_puts_held_out_conferrability_first_and_breaks_ties_on_training():
    ok = np.array([True, True, False, True, True])
    training = np.array([1.0, 0.5, 1.0, 1.0, 0.75])
    np.testing.assert_array_equal(fp_lib.rank(ok, training), [0, 3, 4, 1])  # stable
    held_out = np.array([0.25, 0.5, 1.0, 0.25, 0.5])
    # Index 2 did not pass; 1 and 4 tie on the held-out models, 4 wins on training.
    np.testing.assert_array_equal(fp_lib.rank(ok, training, held_out), [4, 1, 0, 3])
    assert fp_lib.rank(np.zeros(5, bool), training, held_out).size == 0


def _linear_probs_fn(w_surr, w_ref):
    def probs_fn(x):
        flat = x.reshape(x.shape[0], -1)
        s = jax.nn.softmax(jnp.einsum("bd,mdk->mbk", flat, w_surr), -1)
        r = jax.nn.softmax(jnp.einsum("bd,mdk->mbk", flat, w_ref), -1)
        return s, r

    return probs_fn


@pytest.mark.parametrize("loss", cbim_lib.LOSSES)
def test_cbim_stays_in_ball_and_raises_m_e(loss):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    w_surr = jax.random.normal(k1, (3, 16, 4)) * 2
    w_ref = jax.random.normal(k2, (3, 16, 4)) * 2
    probs_fn = _linear_probs_fn(w_surr, w_ref)
    x0 = jax.random.uniform(k3, (8, 4, 4, 1))
    x0 = x0.at[0].set(0.0).at[1].set(1.0)  # pixel bounds
    y = jnp.argmax(probs_fn(x0)[0][0], -1)
    run = jax.jit(
        lambda x, r: cbim_lib.cbim(
            probs_fn, x, y, eps=0.1, alpha=0.01, steps=40, rng=r, dropout=0.5, loss=loss
        )
    )
    x = run(x0, jax.random.PRNGKey(1))
    chex.assert_shape(x, x0.shape)
    assert float(jnp.abs(x - x0).max()) <= 0.1 + 1e-6
    assert float(x.min()) >= 0 and float(x.max()) <= 1

    def best_wrong_m_e(z):  # in numpy: the expectation must not call the code under test
        s, r = (np.asarray(p, np.float64) for p in probs_fn(z))
        m_e = (1 - r.mean(0)) * s.mean(0)  # Eq. 13
        m_e[np.arange(len(m_e)), np.asarray(y)] = -np.inf  # the target is a wrong class
        return m_e.max(-1).mean()

    assert best_wrong_m_e(x) > best_wrong_m_e(x0)


def test_cbim_dropout_uses_the_key():
    w = jax.random.normal(jax.random.PRNGKey(0), (4, 16, 3))
    probs_fn = _linear_probs_fn(w, -w)
    x0 = jax.random.uniform(jax.random.PRNGKey(1), (4, 4, 4, 1))
    y = jnp.zeros(4, jnp.int32)
    a = cbim_lib.cbim(probs_fn, x0, y, eps=0.2, steps=10, rng=jax.random.PRNGKey(0), dropout=0.5)
    b = cbim_lib.cbim(probs_fn, x0, y, eps=0.2, steps=10, rng=jax.random.PRNGKey(0), dropout=0.5)
    c = cbim_lib.cbim(probs_fn, x0, y, eps=0.2, steps=10, rng=jax.random.PRNGKey(5), dropout=0.5)
    chex.assert_trees_all_close(a, b)
    assert not np.allclose(a, c)
    with pytest.raises(ValueError, match="unknown C-BIM loss"):
        cbim_lib.cbim(probs_fn, x0, y, eps=0.1, loss="hinge")


def _fp(keys, calib_counts):
    n = len(keys)
    return artifact.Fingerprint(
        x=np.zeros((n, 8, 8, 1), np.uint8),
        original=np.zeros((n, 8, 8, 1), np.uint8),
        keys=np.asarray(keys, np.int32),
        truth=np.zeros(n, np.int32),
        conferrability=np.ones(n, np.float32),
        meta={
            "num_classes": 10,
            "input_shape": [8, 8, 1],
            "theta": 0.7,
            "calibration": stats.calibrate(calib_counts, n),
        },
    )


def test_verify_labels_algorithm_1():
    keys = np.arange(20) % 10
    fp = _fp(keys, [2, 4, 3, 6])
    same = fp_lib.verify_labels(fp, keys)
    assert same["fingerprint_accuracy"] == 1.0 and same["verified"] and same["n_queries"] == 20
    assert same["p_value"] < 1e-3
    other = keys.copy()
    other[:7] = (other[:7] + 1) % 10  # 13/20 = 0.65 < 0.7
    res = fp_lib.verify_labels(fp, other)
    assert res["fingerprint_accuracy"] == pytest.approx(0.65) and not res["verified"]
    assert fp_lib.verify_labels(fp, other, theta=0.6)["verified"]
    with pytest.raises(ValueError, match="expected 20 labels"):
        fp_lib.verify_labels(fp, keys[:5])


def test_verify_labels_exact_counts_p_values_and_the_theta_boundary():
    keys = np.arange(20) % 10
    fp = _fp(keys, [])
    # A calibration given by hand: four independent models, each 5 of 20 (pooled rate 1/4).
    cal = {"n": 20, "agree_counts": [5, 5, 5, 5], "num_models": 4, "pooled_rate": 0.25}
    fp.meta["calibration"] = dict(cal, beta_a=5.0, beta_b=15.0)
    labels = keys.copy()
    labels[:6] = (labels[:6] + 1) % 10  # 14 of 20 agree: accuracy 0.7 == theta
    res = fp_lib.verify_labels(fp, labels)
    assert res["agreements"] == 14 and res["n_queries"] == 20
    assert res["fingerprint_accuracy"] == 0.7 and res["theta"] == 0.7
    assert res["verified"], "Algorithm 1, line 3: verified when p_ret >= theta"
    # P(K >= 14) under Bin(20, 1/4), summed by hand.
    binomial_tail = sum(comb(20, i) * 0.25**i * 0.75 ** (20 - i) for i in range(14, 21))
    assert res["p_value_binomial"] == pytest.approx(binomial_tail, rel=1e-9)
    # The calibrated p-value is P(K >= 14) of 20: stats pins its value, Verify its arguments.
    calibrated = stats.p_values(14, 20, fp.meta["calibration"])["p_value"]
    assert res["p_value"] == pytest.approx(calibrated, rel=1e-12)
    labels[6] = (labels[6] + 1) % 10  # 13 of 20
    res13 = fp_lib.verify_labels(fp, labels)
    assert res13["agreements"] == 13 and not res13["verified"]
    assert res13["p_value"] > res["p_value"]


def test_to_uint8_rounds_and_clips():
    np.testing.assert_array_equal(
        fp_lib.to_uint8(np.array([-0.1, 0.0, 0.5, 1.0, 1.3])), [0, 0, 128, 255, 255]
    )


def test_parameter_hash_changes_with_any_weight():
    v = {"params": {"a": np.zeros((2, 2), np.float32), "b": np.ones(3, np.float32)}}
    h = ensemble.parameter_hash(v)
    v2 = {"params": {"a": np.zeros((2, 2), np.float32), "b": np.array([1, 1, 1.0001], np.float32)}}
    assert ensemble.parameter_hash(v2) != h and ensemble.parameter_hash(v) == h


def test_cbim_python_loop_equals_fori_loop():
    w = jax.random.normal(jax.random.PRNGKey(0), (4, 16, 3))
    probs_fn = _linear_probs_fn(w, -w)
    x0 = jax.random.uniform(jax.random.PRNGKey(1), (4, 4, 4, 1))
    y = jnp.zeros(4, jnp.int32)
    kw = dict(eps=0.2, alpha=0.01, dropout=0.5, loss="linear")
    key = jax.random.PRNGKey(3)
    want = cbim_lib.cbim(probs_fn, x0, y, steps=7, rng=key, **kw)
    x = x0
    for i in range(7):
        x = cbim_lib.cbim_step(probs_fn, x, x0, y, i, rng=key, **kw)
    chex.assert_trees_all_close(x, want, atol=1e-6)


def _pixel_label(x_uint8):
    """A suspect whose label is a function of the input alone."""
    return x_uint8.reshape(len(x_uint8), -1).sum(1) % 10


def _fp_with_decoys(n=20, d=60):
    rng = np.random.default_rng(1)
    fp = _fp(np.zeros(n), [2, 4, 3, 6])
    fp.x = rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)
    fp.keys = _pixel_label(fp.x).astype(np.int32)
    fp.decoy_x = rng.integers(0, 256, (d, 8, 8, 1), dtype=np.uint8)
    fp.decoy_truth = _pixel_label(fp.decoy_x).astype(np.int32)
    return fp


def _recording_suspect(fn=_pixel_label):
    batches = []

    def record(x):
        batches.append(np.array(x))
        return fn(x)

    return suspects.Suspect("s", "callable", record, batch_size=16), batches


def test_verify_suspect_hides_the_fingerprint_among_decoys():
    fp = _fp_with_decoys()
    suspect, batches = _recording_suspect()
    res = fp_lib.verify_suspect(fp, suspect, rng=np.random.default_rng(0))
    # Answers are matched back to their inputs whatever the order they went out in.
    assert res["fingerprint_accuracy"] == 1.0 and res["decoy_accuracy"] == 1.0
    assert res["n_queries"] == 80 and res["fingerprint_size"] == 20 and res["decoys"] == 60
    assert res["requests"] == 5 and res["protocol"] == "callable" and "note" not in res
    sent = np.concatenate(batches)
    is_fp = np.array([any((q == x).all() for x in fp.x) for q in sent])
    assert is_fp.sum() == 20 and 0 < is_fp[:20].sum() < 20  # spread out, not first
    suspect2, batches2 = _recording_suspect()
    fp_lib.verify_suspect(fp, suspect2)  # a fresh order every time
    assert not np.array_equal(np.concatenate(batches2), sent)


def test_verify_suspect_decoy_count_and_old_files():
    fp = _fp_with_decoys()
    wrong = lambda x: (_pixel_label(x) + 1) % 10
    res = fp_lib.verify_suspect(fp, _recording_suspect(wrong)[0], decoys=10)
    assert res["n_queries"] == 30 and res["decoys"] == 10
    assert res["fingerprint_accuracy"] == 0.0 and res["decoy_accuracy"] == 0.0
    with pytest.raises(ValueError, match="holds 60"):
        fp_lib.verify_suspect(fp, _recording_suspect()[0], decoys=61)
    old = _fp(np.arange(20) % 10, [2, 4, 3, 6])  # no decoys stored
    res = fp_lib.verify_suspect(old, _recording_suspect(lambda x: np.arange(len(x)) % 10)[0])
    assert res["decoys"] == 0 and res["decoy_accuracy"] is None and "no decoys" in res["note"]


def test_no_verdict_from_partial_answers():
    fp = _fp_with_decoys()
    calls = []

    def fails_on_third_batch(x):
        calls.append(len(x))
        if len(calls) == 3:
            raise suspects.SuspectError("s: HTTP 500 after 4 tries")
        return _pixel_label(x)

    with pytest.raises(suspects.SuspectError, match="HTTP 500"):
        fp_lib.verify_suspect(fp, _recording_suspect(fails_on_third_batch)[0])
    bad = _recording_suspect(lambda x: _pixel_label(x)[:-1])[0]
    with pytest.raises(suspects.SuspectError, match="15 answers for 16 inputs"):
        fp_lib.verify_suspect(fp, bad)
