"""C-BIM step throughput: one gradient of the conferrability loss through a zoo.

The inner step of extraction (Section 4.4): the gradient of Eq. 14 with
respect to a batch of inputs, through the source, the surrogates and the
references, BatchNorm in inference mode, member dropout on. The zoo is
`--members` models of `--arch`, split half surrogates (the source first) and
half references, as one stacked group per side. Figures are image-models/s:
members * batch per step, so zoos of different sizes compare directly.

    python -m benchmarks.cbim_step --arch=resnet20 --members=16 --batch=64
    python -m benchmarks.cbim_step --arch=cnn_small --members=16 --batch=64 --input=28x28x1

Prints a Markdown table (strategy, compile s, ms/step, image-models/s) and
appends JSON lines to `--json_out` when given.
"""

from __future__ import annotations

import json
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from fingerprinting import ensemble
from fingerprinting import models
from fingerprinting.attacks import cbim as cbim_lib

_ARCH = flags.DEFINE_string("arch", "resnet20", "Architecture of every member.")
_MEMBERS = flags.DEFINE_list("members", ["16"], "Zoo sizes (surrogates + references).")
_BATCH = flags.DEFINE_integer("batch", 64, "Inputs per step.")
_INPUT = flags.DEFINE_string("input", "32x32x3", "HxWxC.")
_STRATEGIES = flags.DEFINE_list("strategies", ["unroll", "vmap"], "Member strategies.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timing repeats (median reported).")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Append one JSON line per measurement.")


def make_step(model, strategy):
    def loss(surr_vars, ref_vars, x, y, key):
        surr = jax.nn.softmax(ensemble.apply_members(model, surr_vars, x, strategy=strategy), -1)
        ref = jax.nn.softmax(ensemble.apply_members(model, ref_vars, x, strategy=strategy), -1)
        s, r, m_e = ensemble.compose(surr, ref, rng=key, dropout=0.5)
        return cbim_lib.linear_loss(s, r, m_e, y)

    return jax.jit(jax.grad(loss, argnums=2))


def measure(arch, members, batch, shape, strategy):
    model = models.get_model(arch, 10)
    half = max(1, members // 2)
    surr = ensemble.init_members(model, jax.random.PRNGKey(0), half, shape)
    ref = ensemble.init_members(model, jax.random.PRNGKey(1), members - half, shape)
    x = jax.random.uniform(jax.random.PRNGKey(2), (batch, *shape))
    y = jnp.zeros((batch,), jnp.int32)
    key = jax.random.PRNGKey(3)
    step = make_step(model, strategy)
    t0 = time.perf_counter()
    compiled = step.lower(surr, ref, x, y, key).compile()
    compile_s = time.perf_counter() - t0
    for _ in range(2):
        jax.block_until_ready(compiled(surr, ref, x, y, key))
    times = []
    for _ in range(_REPEATS.value):
        t0 = time.perf_counter()
        for i in range(_STEPS.value):
            g = compiled(surr, ref, x, y, jax.random.fold_in(key, i))
        jax.block_until_ready(g)
        times.append((time.perf_counter() - t0) / _STEPS.value)
    step_s = float(np.median(times))
    return dict(
        benchmark="cbim_step",
        arch=arch,
        members=members,
        batch=batch,
        input=list(shape),
        strategy=strategy,
        compile_s=round(compile_s, 2),
        ms_per_step=round(1e3 * step_s, 2),
        image_models_per_s=round(members * batch / step_s, 1),
        backend=jax.default_backend(),
        device=jax.devices()[0].device_kind,
        jax=jax.__version__,
    )


def main(argv):
    del argv
    shape = tuple(int(v) for v in _INPUT.value.split("x"))
    print(
        f"C-BIM step: {_ARCH.value}, batch {_BATCH.value}, input {shape}, "
        f"{jax.default_backend()} ({jax.devices()[0].device_kind}), jax {jax.__version__}"
    )
    print("| members | strategy | compile s | ms/step | image-models/s |\n|---|---|---|---|---|")
    for m in (int(v) for v in _MEMBERS.value):
        for strategy in _STRATEGIES.value:
            r = measure(_ARCH.value, m, _BATCH.value, shape, strategy)
            print(
                f"| {m} | {strategy} | {r['compile_s']} | {r['ms_per_step']} | {r['image_models_per_s']} |",
                flush=True,
            )
            if _JSON_OUT.value:
                with open(_JSON_OUT.value, "a") as f:
                    f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    app.run(main)
