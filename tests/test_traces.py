"""The hot loops compile once and keep their data on the device.

Each test wraps the function that a jitted program traces with
`chex.assert_max_traces(n=1)` (through monkeypatch, so the library code is
the code under test) and drives the loop over several chunks, batches or
steps: a second trace, e.g. from an argument whose shape, dtype or
weak-typedness changes between calls, fails the test.
"""

import chex
import jax
import ml_collections
import numpy as np
import pytest

from fingerprinting import ensemble
from fingerprinting import fingerprint
from fingerprinting import fit
from fingerprinting import models
from fingerprinting import zoo
from _configs import common

SHAPE = (8, 8, 1)


@pytest.fixture(autouse=True)
def _fresh_trace_counters():
    chex.clear_trace_counter()
    yield
    chex.clear_trace_counter()


def _traced_at_most_once(monkeypatch, module, name):
    """Makes every function `module.name` returns fail on its second trace."""
    original = getattr(module, name)
    monkeypatch.setattr(
        module, name, lambda *a, **k: chex.assert_max_traces(original(*a, **k), n=1)
    )


@pytest.mark.parametrize("loop", ["fori", "python"])
def test_training_traces_its_step_once(monkeypatch, loop):
    _traced_at_most_once(monkeypatch, ensemble, "map_members")
    cfg = common.base().train
    cfg.update(batch_size=8, chunk_steps=2, loop=loop)
    x = jax.random.uniform(jax.random.PRNGKey(0), (30, *SHAPE))
    t = jax.nn.one_hot(jax.random.randint(jax.random.PRNGKey(1), (30,), 0, 10), 10)
    # 4 steps an epoch in 2 chunks, 2 epochs: 4 chunks, 8 steps, one trace.
    variables = fit.train_group(
        models.get_model("cnn_small", 10),
        x,
        t,
        size=2,
        cfg=cfg,
        epochs=2,
        rng=jax.random.PRNGKey(2),
    )
    chex.assert_tree_all_finite(variables)


def _cbim_inputs(batches: int):
    groups, variables = [], []
    for i, (arch, n) in enumerate((("cnn_small", 2), ("mlp", 2))):
        model = models.get_model(arch, 10)
        groups.append(ensemble.Group(arch, arch, model, n))
        variables.append(ensemble.init_members(model, jax.random.PRNGKey(i), n, SHAPE))
    ecfg = ml_collections.ConfigDict(
        {"eps": 0.1, "alpha": 0.02, "steps": 4, "dropout": 0.5, "dropout_kind": "member"}
    )
    ecfg.update(loss="linear", beta=1.0, gamma=1.0)
    xs = jax.random.uniform(jax.random.PRNGKey(3), (batches, 5, *SHAPE))
    ys = jax.random.randint(jax.random.PRNGKey(4), (batches, 5), 0, 10)
    return groups[:1], variables[:1], groups[1:], variables[1:], ecfg, xs, ys


@pytest.mark.parametrize("loop", ["fori", "python"])
def test_cbim_traces_once_and_stays_on_device(monkeypatch, loop):
    _traced_at_most_once(monkeypatch, fingerprint, "make_probs_fn")
    surr_groups, surr_vars, ref_groups, ref_vars, ecfg, xs, ys = _cbim_inputs(batches=3)
    run = fingerprint.make_cbim_fn(surr_groups, ref_groups, ecfg, loop=loop)
    # Inside the attack nothing comes back to the host; in one program (fori)
    # nothing goes to the device either (the Python loop sends its step index).
    to_device = "disallow" if loop == "fori" else "allow"
    for b in range(len(xs)):
        args = (surr_vars, ref_vars, xs[b], ys[b], jax.random.fold_in(jax.random.PRNGKey(5), b))
        with (
            jax.transfer_guard_host_to_device(to_device),
            jax.transfer_guard_device_to_host("disallow"),
        ):
            x = run(*args)
        assert np.abs(np.asarray(x) - np.asarray(xs[b])).max() <= ecfg.eps + 1e-6


def test_a_group_labels_a_fingerprint_in_one_call(monkeypatch):
    _traced_at_most_once(monkeypatch, ensemble, "map_members")
    calls = []
    jitted = fit._logits_chunk
    monkeypatch.setattr(fit, "_logits_chunk", lambda *a, **k: calls.append(1) or jitted(*a, **k))
    model = models.get_model("cnn_medium", 10)
    variables = ensemble.init_members(model, jax.random.PRNGKey(0), 5, (9, 9, 1))
    trained = zoo.TrainedGroup(
        "testing_reference", ensemble.Group("g", "cnn_medium", model, 5), variables, np.zeros(5)
    )
    x = np.random.default_rng(0).random((50, 9, 9, 1), np.float32)
    labels = fingerprint.labels_of([trained], x)
    assert labels.shape == (5, 50) and len(calls) == 1  # five models, one call

    # Longer inputs go in equal, padded batches: one compiled shape for all.
    chex.clear_trace_counter()
    calls.clear()
    logits = fit.predict_logits(model, variables, x, batch_size=20)
    assert len(calls) == 3 and logits.shape == (5, 50, 10)
    np.testing.assert_array_equal(logits.argmax(-1), labels)
