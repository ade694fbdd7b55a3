"""The member axis split over devices, and over hosts, gives the results of one device.

XLA fixes the number of CPU devices when the backend starts, so each setting
runs in its own processes, all at once: one device; four devices
(`--xla_force_host_platform_device_count=4`); and two processes of two
devices each joined by `jax.distributed` on 127.0.0.1, standing for two
hosts. Each runs the same C-BIM attack and the same training steps through
the library and saves what it got; the tests compare them. The zoo mixes
groups that divide over four devices (split) with one that does not (run
whole on every device).
"""

import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from fingerprinting import sharding
from _configs import common

SURROGATES = (("cnn_small", 4), ("mlp", 2))
REFERENCES = (("cnn_medium", 4),)
SHAPE = (8, 8, 1)


def _zoo(kind, specs, num_classes=10):
    import jax

    from fingerprinting import ensemble
    from fingerprinting import models

    groups, variables = [], []
    for i, (arch, n) in enumerate(specs):
        model = models.get_model(arch, num_classes)
        groups.append(ensemble.Group(f"{kind}-{arch}", arch, model, n))
        rng = jax.random.PRNGKey(100 * len(kind) + i)
        variables.append(ensemble.init_members(model, rng, n, SHAPE))
    return groups, variables


def _collectives(hlo: str) -> dict:
    """The result shapes of each kind of collective in compiled HLO text."""
    found = {}
    for op in ("all-gather", "all-reduce", "all-to-all", "collective-permute"):
        pattern = rf"= \(?([^=\n]*?)\)? {op}(?:-start)?\("
        found[op] = [
            tuple(int(d) for d in dims.split(",") if d)
            for result in re.findall(pattern, hlo)
            for dims in re.findall(r"\[([\d,]*)\]", result)
        ]
    return found


def _cbim(results: dict) -> None:
    import jax
    import ml_collections

    from fingerprinting import fingerprint

    surr_groups, surr_vars = _zoo("surr", SURROGATES)
    ref_groups, ref_vars = _zoo("ref", REFERENCES)
    ecfg = ml_collections.ConfigDict(
        {"eps": 0.1, "alpha": 0.02, "steps": 2, "dropout": 0.5, "dropout_kind": "member"}
    )
    ecfg.update(loss="linear", beta=1.0, gamma=1.0)
    x0 = jax.random.uniform(jax.random.PRNGKey(7), (6, *SHAPE))
    y = jax.random.randint(jax.random.PRNGKey(8), (6,), 0, 10)
    args = (surr_vars, ref_vars, x0, y, jax.random.PRNGKey(9))
    run = fingerprint.make_cbim_fn(surr_groups, ref_groups, ecfg)  # the defaults: map, fori
    compiled = run.lower(*args).compile()
    results["cbim"] = np.asarray(compiled(*args))
    results["cbim_collectives"] = _collectives(compiled.as_text())


def _training_steps(results: dict) -> None:
    """Three steps of a stacked group, and the collectives of its compiled step."""
    import jax

    from fingerprinting import models
    from fingerprinting import fit

    cfg = common.base().train
    model = models.get_model("cnn_small", 10)
    tx = fit.make_optimizer(cfg, 3, 1)
    state = fit.init_state(model, tx, jax.random.PRNGKey(0), 4, SHAPE)
    step = jax.jit(fit.make_vec_train_step(model, tx, cfg), donate_argnums=(0,))
    xs = jax.random.uniform(jax.random.PRNGKey(1), (4, 8, *SHAPE))
    ts = jax.nn.one_hot(jax.random.randint(jax.random.PRNGKey(6), (4, 8), 0, 10), 10)
    keys = jax.random.split(jax.random.PRNGKey(2), 4)
    compiled = step.lower(state, xs, ts, keys).compile()
    results["train_collectives"] = _collectives(compiled.as_text())
    for _ in range(3):
        state, metrics = compiled(state, xs, ts, keys)
    results["steps"] = sharding.to_host((state.params, metrics["loss"]))


def _train_group(results: dict) -> None:
    import jax

    from fingerprinting import models
    from fingerprinting import fit

    cfg = common.base().train
    cfg.update(batch_size=8, chunk_steps=2)
    x = jax.random.uniform(jax.random.PRNGKey(3), (24, *SHAPE))
    t = jax.nn.one_hot(jax.random.randint(jax.random.PRNGKey(4), (24,), 0, 10), 10)
    model = models.get_model("cnn_medium", 10)
    chunks, make = [], fit.make_chunk_fn

    def recording(*args, **kwargs):
        chunks.append(make(*args, **kwargs))
        return chunks[-1]

    fit.make_chunk_fn = recording
    try:
        variables = fit.train_group(
            model, x, t, size=4, cfg=cfg, epochs=1, rng=jax.random.PRNGKey(5)
        )
    finally:
        fit.make_chunk_fn = make
    results["train_compiles"] = chunks[0].jitted._cache_size()
    results["train"] = sharding.to_host(variables)
    results["train_spec"] = tuple(
        getattr(variables["params"]["head"]["kernel"].sharding, "spec", ())
    )


def _worker(out_path: str) -> None:
    import pickle

    import jax

    from fingerprinting import files

    if sharding.initialize_distributed():
        out_path = f"{out_path}.{jax.process_index()}"
        # A shared work directory: only process 0 writes.
        files.write_text_atomic(f"{out_path}.written", "x")
    results = {"devices": jax.device_count(), "processes": jax.process_count()}
    _cbim(results)
    _training_steps(results)
    _train_group(results)
    with open(out_path, "wb") as f:
        pickle.dump(results, f)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(devices: int, out, **env) -> subprocess.Popen:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", **env)
    return subprocess.Popen(
        [sys.executable, __file__, str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Results on one device, on four, and on two hosts of two devices."""
    import pickle

    tmp = tmp_path_factory.mktemp("sharding")
    alone = {sharding.DISTRIBUTED_ENV: "0"}
    hosts = {
        sharding.DISTRIBUTED_ENV: "1",
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}",
        "JAX_NUM_PROCESSES": "2",
    }
    procs = [
        _start(1, tmp / "one", **alone),
        _start(4, tmp / "four", **alone),
        *(_start(2, tmp / "hosts", **hosts, JAX_PROCESS_ID=str(i)) for i in range(2)),
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
    results = {}
    for name in ("one", "four", "hosts.0", "hosts.1"):
        with open(tmp / name, "rb") as f:
            results[name] = pickle.load(f)
        results[name]["wrote"] = os.path.exists(tmp / f"{name}.written")
    return results


def _assert_close(a, b, **tol):
    import jax

    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(x, y, **tol)


def test_cbim_on_four_devices_and_two_hosts_equals_one_device(runs):
    one = runs["one"]
    assert (one["devices"], runs["four"]["devices"], runs["hosts.1"]["devices"]) == (1, 4, 4)
    assert runs["hosts.0"]["processes"] == 2
    assert runs["hosts.0"]["wrote"] and not runs["hosts.1"]["wrote"]
    assert not np.allclose(one["cbim"], 0.0)
    for name in ("four", "hosts.0", "hosts.1"):
        np.testing.assert_allclose(runs[name]["cbim"], one["cbim"], atol=1e-6)


def test_cbim_moves_no_weights_between_devices(runs):
    found = runs["four"]["cbim_collectives"]
    # Only per-member outputs [M, B, K] move between devices (to line the groups
    # up for the ensemble means); the means of Eq. 11-12 and the input gradient
    # are reduced. No weight ever leaves its device.
    moved = found["all-gather"] + found["all-to-all"] + found["collective-permute"]
    assert all(shape[-2:] == (6, 10) for shape in moved), moved
    assert found["all-reduce"], "the ensemble means must be reduced over devices"


def test_training_on_four_devices_and_two_hosts_equals_one_device(runs):
    one = runs["one"]
    for name in ("four", "hosts.0", "hosts.1"):
        _assert_close(runs[name]["steps"], one["steps"], rtol=1e-4, atol=1e-5)
    for name in ("four", "hosts.0", "hosts.1"):
        _assert_close(runs[name]["train"], one["train"], rtol=1e-4, atol=1e-5)
        assert runs[name]["train_spec"] == (sharding.MEMBER_AXIS,)
    for name in ("one", "four", "hosts.0", "hosts.1"):  # the chunk compiled once
        assert runs[name]["train_compiles"] == 1, name
    # Members train independently: a step moves nothing between devices.
    assert not any(runs["four"]["train_collectives"].values()), runs["four"]["train_collectives"]


if __name__ == "__main__":
    _worker(sys.argv[1])
