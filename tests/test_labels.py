"""Label sources produce valid targets and mean what their names say."""

import numpy as np
import pytest

from fingerprinting import labels


@pytest.fixture
def logits():
    return np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32) * 3


def test_ground_truth_and_hard_labels(logits):
    y = np.arange(50) % 4
    np.testing.assert_array_equal(
        labels.make_targets("ground_truth", y, num_classes=4).argmax(-1), y
    )
    hard = labels.make_targets("source_hard", y, logits, num_classes=4)
    np.testing.assert_array_equal(hard.argmax(-1), logits.argmax(-1))
    assert set(np.unique(hard)) == {0.0, 1.0}


@pytest.mark.parametrize(
    "name,kw",
    [
        ("source_soft", {"temperature": 2.0}),
        ("jagielski", {"temperature": 0.5}),
        ("noisy", {"noise": 0.3}),
        ("mixed_truth", {"truth_share": 0.2}),
    ],
)
def test_every_source_gives_distributions(logits, name, kw):
    t = labels.make_targets(name, np.zeros(50, int), logits, num_classes=4, **kw)
    assert t.shape == (50, 4) and t.min() >= 0
    np.testing.assert_allclose(t.sum(-1), 1.0, atol=1e-5)


def test_temperature_softens(logits):
    sharp = labels.make_targets("source_soft", None, logits, num_classes=4, temperature=1.0)
    soft = labels.make_targets("source_soft", None, logits, num_classes=4, temperature=10.0)
    assert soft.max(-1).mean() < sharp.max(-1).mean()


def test_mixed_truth_share(logits):
    y = (logits.argmax(-1) + 1) % 4  # truth always differs from the source
    t = labels.make_targets("mixed_truth", y, logits, num_classes=4, truth_share=0.4)
    assert (t.argmax(-1) == y).sum() == 20
    full = labels.make_targets("mixed_truth", y, logits, num_classes=4, truth_share=1.0)
    np.testing.assert_array_equal(full, labels.make_targets("ground_truth", y, num_classes=4))


def test_errors(logits):
    with pytest.raises(ValueError, match="unknown label source"):
        labels.make_targets("oracle", None, logits, num_classes=4)
    with pytest.raises(ValueError, match="needs the source"):
        labels.make_targets("source_soft", np.zeros(3, int), num_classes=4)


def test_noise_weight_moves_labels_towards_uniform_random_vectors(logits):
    p = labels.softmax(logits)
    clean = labels.make_targets("noisy", None, logits, num_classes=4, noise=0.0)
    np.testing.assert_allclose(clean, p, atol=1e-6)
    half = labels.noisy(None, logits, noise=0.5, rng=np.random.default_rng(3))
    pure = labels.noisy(None, logits, noise=1.0, rng=np.random.default_rng(3))
    np.testing.assert_allclose(half, 0.5 * p + 0.5 * pure, atol=1e-6)  # Noise: (1 - l) p + l u
    assert not np.allclose(pure.argmax(-1), p.argmax(-1))


def test_jagielski_is_the_renormalised_power_of_the_probabilities():
    z = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, -1.0]])
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    for t in (0.5, 1.0, 2.0):
        q = p ** (1.0 / t)
        want = q / q.sum(-1, keepdims=True)  # p_i^(1/T') / sum_j p_j^(1/T')
        got = labels.make_targets("jagielski", None, z, num_classes=3, temperature=t)
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=f"T'={t}")
    # T' = 0.5 on [2, 1, 0]: p^2 renormalised is [e^4, e^2, 1] / (e^4 + e^2 + 1).
    half = labels.jagielski(None, z[:1], temperature=0.5)
    np.testing.assert_allclose(half, [[0.86681, 0.11731, 0.01588]], atol=1e-5)


def test_jagielski_temperature_acts_as_a_temperature():
    # A confident 10-class source: logit 4 on class 0, p_0 = e^4 / (e^4 + 9) = 0.8585. Eq. 4 read
    # literally, softmax(p^(1/T')), would cap the top label near 0.2 and flatten it as T' shrinks.
    z = np.array([[4.0] + [0.0] * 9])
    top = lambda t: float(labels.jagielski(None, z, temperature=t)[0, 0])
    assert top(1.0) == pytest.approx(np.exp(4) / (np.exp(4) + 9), rel=1e-6)  # 0.8585: p itself
    assert top(2.0) == pytest.approx(np.exp(2) / (np.exp(2) + 9), rel=1e-6)  # 0.4509: softer
    assert top(0.5) == pytest.approx(np.exp(8) / (np.exp(8) + 9), rel=1e-6)  # 0.9970: sharper
    assert top(1e3) == pytest.approx(0.1, abs=1e-3)  # T' -> inf: uniform
