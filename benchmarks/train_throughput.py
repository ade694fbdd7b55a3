"""Training throughput: a stacked group of models versus the same models one by one.

What it measures
----------------
The library trains a group of M models of one architecture with ONE jitted
step over a stacked state: `training.member_train_step`, written for one
model, vectorized by `ensemble.map_members`. This benchmark times that step,
on random data generated once and kept on the device, against the obvious
alternative in the same process:

  sequential  M single-model steps run one after another: one jitted step on
              a state of size 1 (strategy "unroll" at size 1, i.e. the plain
              single-model step), compiled once and reused for every model,
              as a user looping over models would do. A "round" steps each
              of the M models once.
  stacked     one jitted step over all M members, for each member execution
              strategy of `ensemble.map_members`: "unroll" (a Python loop
              unrolled inside the jit), "vmap" (jax.vmap; on a CPU its
              convolutions become grouped convolutions, which the library
              found 5-10x slower than unroll), "map" (lax.map, a loop XLA
              keeps rolled); "auto" is what the library picks (unroll on a
              CPU, vmap on an accelerator).
  resnet20    one ResNet-20 training step, batch 128, 32x32x3, one model: the
              paper's source-model step (SGD, crop 4 and flip, as in
              `fingerprinting.config.paper`).

Small CPU models use the base training config (Adam, no augmentation); paper
architectures use the paper's (SGD with Nesterov momentum, crop and flip).
Every step is dispatched from Python and waited for with
`jax.block_until_ready` before the next one, so the sequential rows pay M
dispatches per round, as a user loop would. (The library's own training loop
runs these steps inside `lax.scan` chunks, which removes the per-step dispatch
for both.) Each measurement is compiled with `jax.jit(...).lower(...).compile()`
with the persistent compilation cache switched off, then warmed up (`--warmup`
steps, at least 2), then timed `--repeats` times over `--steps` steps; the
median repeat is reported.

How to run (from the repository root)
-------------------------------------
    python -m benchmarks.train_throughput                      # the issue's setting
    python -m benchmarks.train_throughput --onednn             # the same with oneDNN
    python -m benchmarks.train_throughput --arch=cnn_medium --members=4 \\
        --strategies=auto --noresnet --json_out=/tmp/bench.jsonl
    python -m benchmarks.train_throughput --steps=5 --resnet_steps=3   # smoke check

`--onednn` appends `--xla_cpu_use_onednn=true` to XLA_FLAGS before jax is
imported (XLA reads the flags once per process, so compare two runs, with and
without). It was measured to give about +40% on ResNet-20 training on the
project's 2-core CPU machine; whether the small CNNs gain too is what a run
with and without it shows. `--json_out` appends
one JSON line per measurement (with the environment), so several runs can be
collected in one file.

How to read the figures
-----------------------
  images/s        image-models per second: M * batch images per stacked step
                  or per sequential round (8 models on 128 images = 1024), so
                  stacked and sequential rows of one run compare directly.
                  The resnet20 row is plain images/s of one model.
  ms/step         wall time of one stacked step, or of one sequential round
                  (M single-model steps).
  trace s         tracing and lowering to StableHLO (Python side).
  compile s       XLA compilation of the lowered step. Both are paid once per
                  group shape; the sequential step is compiled once for all M
                  models. On a CPU with short runs (the digits demo) compile
                  time can matter as much as the step rate.
  spread          (max - min) / median of the repeats' rates. Above ~10% the
                  machine was busy: rerun on a quiet machine.
  vs sequential   stacked images/s / sequential images/s. The project's goal
                  is at least 2x for the default strategy on a CPU.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import statistics
import sys
import time

from absl import app
from absl import flags
from absl import logging

_ARCH = flags.DEFINE_string(
    "arch", "cnn_small", "Architecture of the group (a models.get_model name)."
)
_MEMBERS = flags.DEFINE_integer("members", 8, "Models per group (M).", lower_bound=1)
_BATCH = flags.DEFINE_integer("batch", 128, "Images per model per step.", lower_bound=1)
_INPUT = flags.DEFINE_string("input", "28x28x1", "Input image shape HxWxC.")
_CLASSES = flags.DEFINE_integer("classes", 10, "Number of classes.", lower_bound=2)
_STEPS = flags.DEFINE_integer(
    "steps", 30, "Timed steps (stacked) or rounds (sequential) per repeat.", lower_bound=1
)
_REPEATS = flags.DEFINE_integer(
    "repeats", 3, "Timing repeats; the median is reported.", lower_bound=1
)
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after compiling.", lower_bound=2)
_STRATEGIES = flags.DEFINE_list(
    "strategies",
    ["unroll", "vmap", "map"],
    "Member strategies for the stacked step: unroll, vmap, map, auto.",
)
_SEQUENTIAL = flags.DEFINE_bool("sequential", True, "Time the M sequential single-model steps.")
_RESNET = flags.DEFINE_bool(
    "resnet", True, "Also time a ResNet-20 step (1 model, batch 128, 32x32x3)."
)
_RESNET_STEPS = flags.DEFINE_integer(
    "resnet_steps", None, "Timed ResNet-20 steps per repeat (default: --steps).", lower_bound=1
)
_ONEDNN = flags.DEFINE_bool(
    "onednn",
    False,
    "Set XLA_FLAGS=--xla_cpu_use_onednn=true before "
    "importing jax (measured +40% on ResNet-20 training on a 2-core CPU).",
)
_JSON_OUT = flags.DEFINE_string(
    "json_out", None, "Append one JSON line per measurement to this file."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random data and of the models.")

RESNET_ARCH, RESNET_BATCH, RESNET_INPUT = "resnet20", 128, (32, 32, 3)
ONEDNN_FLAG = "--xla_cpu_use_onednn=true"

# Bound by _import_jax() once XLA_FLAGS is final: jax must not be imported earlier.
jax = jnp = config = ensemble = models = training = None


def _import_jax() -> None:
    global jax, jnp, config, ensemble, models, training
    if _ONEDNN.value:
        if "jax" in sys.modules:
            print(
                "warning: jax was imported before --onednn could set XLA_FLAGS; "
                "it may have no effect",
                file=sys.stderr,
            )
        flags_now = os.environ.get("XLA_FLAGS", "")
        if ONEDNN_FLAG not in flags_now.split():
            os.environ["XLA_FLAGS"] = f"{flags_now} {ONEDNN_FLAG}".strip()
    import jax as _jax
    import jax.numpy as _jnp
    from fingerprinting import config as _config
    from fingerprinting import ensemble as _ensemble
    from fingerprinting import models as _models
    from fingerprinting import training as _training

    jax, jnp, config, ensemble, models, training = (
        _jax,
        _jnp,
        _config,
        _ensemble,
        _models,
        _training,
    )
    # Compile times must be real compiles, not hits of a cache left by earlier runs.
    jax.config.update("jax_enable_compilation_cache", False)


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise app.UsageError(f"--input must look like 28x28x1 (HxWxC), got {text!r}")
    return shape


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _environment() -> dict:
    import jaxlib

    dev = jax.devices()[0]
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return dict(
        jax=jax.__version__,
        jaxlib=jaxlib.__version__,
        backend=jax.default_backend(),
        device_kind=dev.device_kind,
        device_count=jax.device_count(),
        cpu_model=_cpu_model(),
        cpu_count=os.cpu_count(),
        cpus_usable=usable,
        xla_flags=os.environ.get("XLA_FLAGS", ""),
        onednn=_ONEDNN.value,
        default_strategy=ensemble.default_strategy(),
        load_avg_at_start=[round(v, 2) for v in os.getloadavg()],
        python=platform.python_version(),
    )


def _train_cfg(arch: str):
    """The training config the project uses for `arch`: paper's for paper models, else base."""
    if arch in models.PAPER_ARCHITECTURES:
        return config.paper(config.base()).train
    return config.base().train


def _vec_step(model, tx, cfg, strategy: str):
    """`vec_step(state, x_MxB..., t_MxBxK, keys_M)`: the library's own step."""
    return training.make_vec_train_step(model, tx, cfg, strategy=strategy)


def _compile(fn, args):
    """(compiled, trace_s, compile_s) of jit(fn) at args; the state (arg 0) is donated."""
    jitted = jax.jit(fn, donate_argnums=(0,))
    t0 = time.perf_counter()
    lowered = jitted.lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return compiled, t1 - t0, t2 - t1


def _time(run_round, *, steps: int) -> list[float]:
    """Seconds per round of each repeat, after the warm-up rounds."""
    for _ in range(_WARMUP.value):
        run_round()
    seconds = []
    for _ in range(_REPEATS.value):
        t0 = time.perf_counter()
        for _ in range(steps):
            run_round()
        seconds.append((time.perf_counter() - t0) / steps)
    return seconds


def _copy(tree):
    return jax.tree_util.tree_map(jnp.copy, tree)


def _setup(arch: str, members: int, batch: int, shape, classes: int, seed: int):
    """Model, optimizer, config, the stacked initial state and random data on device."""
    model = models.get_model(arch, classes)
    cfg = _train_cfg(arch)
    tx = training.make_optimizer(cfg, steps_per_epoch=1000, epochs=1)
    kx, kt, kk, ki = jax.random.split(jax.random.PRNGKey(seed), 4)
    state = training.init_state(model, tx, ki, members, shape)
    x = jax.random.uniform(kx, (members, batch, *shape), jnp.float32)
    t = jax.nn.one_hot(
        jax.random.randint(kt, (members, batch), 0, classes), classes, dtype=jnp.float32
    )
    keys = jax.random.split(kk, members)
    jax.block_until_ready((state, x, t, keys))
    return model, tx, cfg, state, (x, t, keys)


def _row(
    name, arch, strategy, members, batch, shape, trace_s, compile_s, seconds, losses, steps
) -> dict:
    rates = [members * batch / s for s in seconds]
    med = statistics.median(rates)
    finite = all(map(lambda v: v == v and abs(v) != float("inf"), losses))
    if not finite:
        print(f"warning: {name}/{strategy}: non-finite loss {losses}", file=sys.stderr)
    return dict(
        measurement=name,
        arch=arch,
        strategy=strategy,
        members=members,
        batch=batch,
        input="x".join(map(str, shape)),
        trace_s=trace_s,
        compile_s=compile_s,
        step_s=statistics.median(seconds),
        images_per_s=med,
        images_per_s_repeats=rates,
        spread=(max(rates) - min(rates)) / med,
        steps=steps,
        repeats=len(seconds),
        warmup=_WARMUP.value,
        final_loss=float(statistics.fmean(losses)),
        loss_finite=finite,
    )


def bench_sequential(arch, members, batch, shape, classes, seed, steps) -> dict:
    """M single-model steps per round, one compiled size-1 step reused for every model."""
    model, tx, cfg, state, (x, t, keys) = _setup(arch, members, batch, shape, classes, seed)
    one = lambda a, m: a[m : m + 1]
    states = [jax.tree_util.tree_map(functools.partial(one, m=m), state) for m in range(members)]
    data = [(one(x, m), one(t, m), one(keys, m)) for m in range(members)]
    del state
    compiled, trace_s, compile_s = _compile(
        _vec_step(model, tx, cfg, "unroll"), (states[0], *data[0])
    )
    last = [None] * members

    def run_round():
        for m in range(members):
            states[m], last[m] = compiled(states[m], *data[m])
            jax.block_until_ready((states[m], last[m]))

    seconds = _time(run_round, steps=steps)
    losses = [float(l["loss"][0]) for l in last]
    return _row(
        "sequential",
        arch,
        "unroll (size 1)",
        members,
        batch,
        shape,
        trace_s,
        compile_s,
        seconds,
        losses,
        steps,
    )


def bench_stacked(arch, members, batch, shape, classes, seed, steps, strategy) -> dict:
    """One step of all M members, stacked, executed by `strategy`."""
    model, tx, cfg, state, data = _setup(arch, members, batch, shape, classes, seed)
    resolved = ensemble.resolve_strategy(strategy)
    compiled, trace_s, compile_s = _compile(_vec_step(model, tx, cfg, resolved), (state, *data))
    box = {"state": state, "metrics": None}

    def run_round():
        box["state"], box["metrics"] = compiled(box["state"], *data)
        jax.block_until_ready(box)

    seconds = _time(run_round, steps=steps)
    losses = [float(v) for v in box["metrics"]["loss"]]
    label = resolved if strategy == resolved else f"{strategy} ({resolved})"
    return _row(
        "stacked", arch, label, members, batch, shape, trace_s, compile_s, seconds, losses, steps
    )


def bench_resnet(classes, seed, steps) -> dict:
    row = bench_sequential(RESNET_ARCH, 1, RESNET_BATCH, RESNET_INPUT, classes, seed, steps)
    row.update(measurement="resnet20 step", strategy="single model")
    return row


def _table(rows: list[dict]) -> str:
    head = (
        "| measurement | arch | strategy | M | batch | input | trace s | compile s "
        "| ms/step | images/s | spread | vs sequential |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        ratio = f"{r['vs_sequential']:.2f}x" if r.get("vs_sequential") else ""
        lines.append(
            f"| {r['measurement']} | {r['arch']} | {r['strategy']} | {r['members']} | {r['batch']} "
            f"| {r['input']} | {r['trace_s']:.2f} | {r['compile_s']:.2f} | {1e3 * r['step_s']:.1f} "
            f"| {r['images_per_s']:,.0f} | {100 * r['spread']:.0f}% | {ratio} |"
        )
    return "\n".join(lines)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    shape = _parse_shape(_INPUT.value)
    logging.set_verbosity(logging.WARNING)  # jax logs its backend probing at INFO
    _import_jax()
    allowed = (*ensemble.STRATEGIES, "auto")
    for s in _STRATEGIES.value:
        if s not in allowed:
            raise app.UsageError(f"unknown strategy {s!r}; expected some of {', '.join(allowed)}")
    if _ARCH.value not in models.ARCHITECTURES:
        raise app.UsageError(
            f"unknown --arch {_ARCH.value!r}; known: {', '.join(models.ARCHITECTURES)}"
        )

    env = _environment()
    arch, m, b, k, seed, steps = (
        _ARCH.value,
        _MEMBERS.value,
        _BATCH.value,
        _CLASSES.value,
        _SEED.value,
        _STEPS.value,
    )
    rows = []
    progress = lambda what: print(f"... {what}", file=sys.stderr, flush=True)
    sequential = None
    if _SEQUENTIAL.value:
        progress(f"sequential: {m} x {arch}")
        sequential = bench_sequential(arch, m, b, shape, k, seed, steps)
        rows.append(sequential)
    for strategy in _STRATEGIES.value:
        progress(f"stacked: {m} x {arch}, {strategy}")
        row = bench_stacked(arch, m, b, shape, k, seed, steps, strategy)
        if sequential:
            row["vs_sequential"] = row["images_per_s"] / sequential["images_per_s"]
        rows.append(row)
    if _RESNET.value:
        progress("resnet20 step")
        rows.append(bench_resnet(k, seed, _RESNET_STEPS.value or steps))

    print("## Training throughput\n")
    for key in (
        "jax",
        "jaxlib",
        "backend",
        "device_kind",
        "device_count",
        "cpu_model",
        "cpu_count",
        "cpus_usable",
        "xla_flags",
        "default_strategy",
        "load_avg_at_start",
        "python",
    ):
        print(f"- {key}: {env[key] if env[key] != '' else '(not set)'}")
    print(f"- load_avg_at_end: {[round(v, 2) for v in os.getloadavg()]}")
    cfg_small, cfg_resnet = _train_cfg(arch), _train_cfg(RESNET_ARCH)
    print(
        f"- {arch} optimizer: {cfg_small.optimizer}, crop {cfg_small.augment_crop}, "
        f"flip {cfg_small.augment_flip}; resnet20: {cfg_resnet.optimizer}, "
        f"crop {cfg_resnet.augment_crop}, flip {cfg_resnet.augment_flip}"
    )
    print(
        f"- median of {_REPEATS.value} repeats of {steps} steps after {_WARMUP.value} warm-up "
        f"steps; images/s counts M x batch per step (image-models/s)\n"
    )
    print(_table(rows))
    default = [
        r
        for r in rows
        if r["measurement"] == "stacked"
        and r["strategy"].split(" ")[-1].strip("()") == env["default_strategy"]
    ]
    if default and "vs_sequential" in default[0]:
        ratio = default[0]["vs_sequential"]
        print(
            f"\nGoal (stacked with the default strategy {env['default_strategy']!r} >= 2x "
            f"sequential): {ratio:.2f}x, {'met' if ratio >= 2 else 'NOT met'}"
        )

    if _JSON_OUT.value:
        with open(_JSON_OUT.value, "a") as f:
            for r in rows:
                f.write(json.dumps({**r, "env": env}) + "\n")
        print(f"\nappended {len(rows)} lines to {_JSON_OUT.value}", file=sys.stderr)


if __name__ == "__main__":
    app.run(main)
