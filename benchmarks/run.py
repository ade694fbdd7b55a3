"""Throughput of the stacked ensemble against PyTorch, in one process.

    python -m benchmarks.run                  # the full grid on this machine
    python -m benchmarks.run --quick          # a one-minute sanity run
    python -m benchmarks.run --benchmarks=cbim --archs=resnet20 --members=16 --batches=64 \\
        --strategies=map,unroll,vmap

Two measurements, each for ResNet-20 (32x32x3) and the small CPU CNN
`cnn_small` (28x28x1), K members and a batch per member:

  cbim   one C-BIM iteration (Section 4.4): the input gradient of Eq. 14
         through K models (ceil(K/2) surrogates, the source first, and
         floor(K/2) references; BatchNorm in inference mode, member dropout
         0.5), a sign step and the projection. JAX runs the library's
         `fingerprint.make_cbim_fn`; K = 1 has no reference and is skipped.
  train  one training step of each of K models on its own batch, with the
         project's optimizer and augmentation for the architecture (the
         paper's SGD, crop and flip for ResNet-20; Adam for cnn_small). JAX
         runs the library's `fit.make_chunk_fn` on the stacked group.

PyTorch runs the same architectures (`benchmarks/torch_models.py`, checked to
give the same logits as the Flax models on copied weights before anything is
timed) one model after another (`benchmarks/torch_steps.py`), in the same
process on the same inputs. PyTorch is optional (`pip install torch==2.13.0`,
the `bench` extra): without it only the JAX rows are printed.

Figures
  image-models/s  K * batch / seconds per step: one step of K models on
                  `batch` images each. Median over `--repeats`, each repeat
                  running for about `--seconds`.
  compile s       JAX: tracing, lowering and XLA compilation of the program
                  (the persistent compilation cache is off). PyTorch: -.
  peak MiB        CPU: growth of the process's peak resident memory while
                  the measurement runs (after compiling). GPU: PyTorch's peak
                  allocation; for JAX, XLA's buffers of the program
                  (arguments, outputs and temporaries).
  vs torch        JAX image-models/s / PyTorch image-models/s of the same
                  benchmark, architecture, K and batch.
  cpu ms/step     CPU only: process CPU time per step, all threads. On a
                  machine shared with other jobs wall times are noise; the
                  CPU-time ratio ('vs torch cpu') still compares the work.
  TFLOP/s, % peak accelerators: XLA's FLOP count of the step over its time,
                  and its share of the device's dense TF32 peak (the f32
                  convolutions run as TF32 there); `--peak_tflops` overrides.

Threads: XLA's CPU client uses every core the process may run on; PyTorch is
set to the same number (`torch.set_num_threads`). Run under `taskset -c` to
compare on fewer cores. Results go to `--out_dir`: results.jsonl (one line
per measurement, appended, environment included) and results.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time

from absl import app
from absl import flags

import jax
import numpy as np
import ml_collections

from fingerprinting import config as config_lib
from fingerprinting import ensemble
from fingerprinting import fingerprint
from fingerprinting import fit
from fingerprinting import models

_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
common = config_lib.load_module(os.path.join(_CONFIGS, "_common.py"))
paper = config_lib.load_module(os.path.join(_CONFIGS, "_paper.py"))

try:
    import torch
except ImportError:
    torch = None

BENCHMARKS = ("cbim", "train")
INPUTS = {"resnet20": (32, 32, 3), "cnn_small": (28, 28, 1)}
NUM_CLASSES = 10
# Dense TF32 tensor-core peak, TFLOP/s, by device kind (f32 convolutions run as TF32).
PEAK_TFLOPS = {"H200": 494.7, "H100": 494.7, "A100": 156.0}

_BENCHMARKS = flags.DEFINE_list("benchmarks", list(BENCHMARKS), "Some of: cbim, train.")
_ARCHS = flags.DEFINE_list("archs", list(INPUTS), "Architectures: resnet20, cnn_small.")
_MEMBERS = flags.DEFINE_list("members", ["1", "4", "8", "16"], "Member counts K.")
_BATCHES = flags.DEFINE_list("batches", ["64", "128"], "Images per member per step.")
_STRATEGIES = flags.DEFINE_list(
    "strategies", ["auto"], "Member strategies of the JAX rows: auto, map, unroll, vmap."
)
_TORCH = flags.DEFINE_bool("torch", True, "Time PyTorch too (when it is installed).")
_STEPS_PER_CALL = flags.DEFINE_integer(
    "steps_per_call", 2, "Steps inside one compiled JAX call (its loop).", lower_bound=1
)
_SECONDS = flags.DEFINE_float("seconds", 4.0, "Approximate length of one timing repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timing repeats; the median is reported.")
_PEAK_TFLOPS = flags.DEFINE_float("peak_tflops", None, "Peak of the device, TFLOP/s.")
_OUT_DIR = flags.DEFINE_string("out_dir", "runs/benchmark", "Where the results go.")
_QUICK = flags.DEFINE_bool("quick", False, "Sanity run: K = 1, 4; batch 64; one short repeat.")


@dataclasses.dataclass(frozen=True)
class Case:
    bench: str
    arch: str
    members: int
    batch: int

    @property
    def shape(self):
        return INPUTS[self.arch]


def _rss_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


class PeakMemory:
    """Peak memory of what runs inside the block: device allocations on an
    accelerator (PyTorch), the process's peak resident set on a CPU."""

    def __enter__(self):
        if _on_gpu() and torch is not None:
            torch.cuda.reset_peak_memory_stats()
        elif os.path.exists("/proc/self/clear_refs"):
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current resident set
        self.before = _rss_mib("VmRSS:")
        return self

    def __exit__(self, *exc):
        if _on_gpu() and torch is not None:
            self.mib = torch.cuda.max_memory_allocated() / 2**20
        else:
            self.mib = _rss_mib("VmHWM:") - self.before


def _on_gpu() -> bool:
    return jax.default_backend() == "gpu"


def _time(call, steps_per_call: int) -> dict:
    """Seconds per step (median of the repeats), their spread, and CPU time per step."""
    t0 = time.perf_counter()
    call()  # warm-up, and an estimate of one call
    calls = max(1, round(_SECONDS.value / max(time.perf_counter() - t0, 1e-6)))
    wall, cpu = [], []
    for _ in range(_REPEATS.value):
        w, c = time.perf_counter(), time.process_time()
        for _ in range(calls):
            call()
        steps = calls * steps_per_call
        wall.append((time.perf_counter() - w) / steps)
        cpu.append((time.process_time() - c) / steps)
    step_s = statistics.median(wall)
    return dict(
        step_ms=1e3 * step_s,
        cpu_ms_per_step=1e3 * statistics.median(cpu),
        spread=(max(wall) - min(wall)) / step_s,
        timed_steps=_REPEATS.value * calls * steps_per_call,
    )


def _compile(jitted, *args):
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    memory = compiled.memory_analysis()
    xla_mib = None
    if memory is not None:
        used = memory.argument_size_in_bytes + memory.output_size_in_bytes
        xla_mib = (used + memory.temp_size_in_bytes - memory.alias_size_in_bytes) / 2**20
    flops = (compiled.cost_analysis() or {}).get("flops")
    return compiled, time.perf_counter() - t0, xla_mib, flops


def _zoo(case: Case):
    """Groups and stacked variables of the two sides of the C-BIM ensemble."""
    model = models.get_model(case.arch, NUM_CLASSES)
    sizes = {"surrogates": math.ceil(case.members / 2), "references": case.members // 2}
    groups, variables = {}, {}
    for i, (side, n) in enumerate(sizes.items()):
        groups[side] = [ensemble.Group(side, case.arch, model, n)]
        variables[side] = [ensemble.init_members(model, jax.random.PRNGKey(i), n, case.shape)]
    return groups, variables


def _cbim_config(steps: int) -> ml_collections.ConfigDict:
    ecfg = common.base().extract
    ecfg.update(steps=steps, eps=0.05, alpha=0.01, dropout=0.5, dropout_kind="member")
    return ecfg


def _batch(case: Case, seed: int = 0):
    x = jax.random.uniform(jax.random.PRNGKey(seed), (case.batch, *case.shape))
    y = jax.random.randint(jax.random.PRNGKey(seed + 1), (case.batch,), 0, NUM_CLASSES)
    return x, y


def jax_cbim(case: Case, strategy: str) -> dict:
    groups, variables = _zoo(case)
    ecfg = _cbim_config(_STEPS_PER_CALL.value)
    run = fingerprint.make_cbim_fn(
        groups["surrogates"], groups["references"], ecfg, strategy, loop="fori"
    )
    x0, y = _batch(case)
    args = (variables["surrogates"], variables["references"], x0, y, jax.random.PRNGKey(2))
    compiled, compile_s, xla_mib, flops = _compile(run, *args)
    with PeakMemory() as peak:
        timing = _time(lambda: jax.block_until_ready(compiled(*args)), _STEPS_PER_CALL.value)
    return dict(compile_s=compile_s, xla_mib=xla_mib, peak_mib=peak.mib, flops=flops, **timing)


def _train_config(arch: str):
    if arch in models.PAPER_ARCHITECTURES:
        return paper.paper(common.base()).train
    return common.base().train


def jax_train(case: Case, strategy: str) -> dict:
    model = models.get_model(case.arch, NUM_CLASSES)
    cfg = _train_config(case.arch)
    cfg.batch_size = case.batch
    tx = fit.make_optimizer(cfg, steps_per_epoch=1000, epochs=1)
    chunk = fit.make_chunk_fn(model, tx, cfg, strategy=strategy, loop="fori")
    n = case.batch * _STEPS_PER_CALL.value
    x = jax.random.uniform(jax.random.PRNGKey(0), (n, *case.shape))
    t = jax.nn.one_hot(jax.random.randint(jax.random.PRNGKey(1), (n,), 0, NUM_CLASSES), 10)
    keys = jax.random.split(jax.random.PRNGKey(2), case.members)
    perm = jax.vmap(lambda k: jax.random.permutation(k, n))(keys)
    state = fit.init_state(model, tx, jax.random.PRNGKey(3), case.members, case.shape)
    steps = _STEPS_PER_CALL.value
    compiled, compile_s, xla_mib, flops = _compile(chunk.jitted, state, x, t, perm, keys, 0, steps)
    box = [state]

    def call():
        box[0], metrics = compiled(box[0], x, t, perm, keys, 0)
        jax.block_until_ready(metrics)

    with PeakMemory() as peak:
        timing = _time(call, steps)
    return dict(compile_s=compile_s, xla_mib=xla_mib, peak_mib=peak.mib, flops=flops, **timing)


def _torch_device():
    return torch.device("cuda" if _on_gpu() and torch.cuda.is_available() else "cpu")


def _to_torch(x_NHWC):
    x = torch.from_numpy(np.array(x_NHWC)).to(_torch_device())
    return x.permute(0, 3, 1, 2).contiguous() if x.ndim == 4 else x


def _torch_sync():
    if _torch_device().type == "cuda":
        torch.cuda.synchronize()


def torch_cbim(case: Case) -> dict:
    from benchmarks import torch_models
    from benchmarks import torch_steps

    _, variables = _zoo(case)
    dev = _torch_device()

    def twins(stacked):
        n = ensemble.num_members(stacked)
        return [
            torch_models.load_flax(
                torch_models.build(case.arch, NUM_CLASSES, case.shape),
                ensemble.member(stacked, i),
            ).to(dev)
            for i in range(n)
        ]

    ecfg = _cbim_config(1)
    step = torch_steps.make_cbim_step(
        twins(variables["surrogates"][0]),
        twins(variables["references"][0]),
        eps=ecfg.eps,
        alpha=ecfg.alpha,
        dropout=ecfg.dropout,
    )
    x0, y = _batch(case)
    x0, y = _to_torch(x0), _to_torch(y).long()

    def call():
        x = x0
        for _ in range(_STEPS_PER_CALL.value):
            x = step(x, x0, y)
        _torch_sync()

    with PeakMemory() as peak:
        timing = _time(call, _STEPS_PER_CALL.value)
    return dict(peak_mib=peak.mib, **timing)


def torch_train(case: Case) -> dict:
    from benchmarks import torch_steps

    cfg = _train_config(case.arch)
    train_round = torch_steps.make_train_round(
        case.arch, case.members, case.shape, NUM_CLASSES, cfg, _torch_device()
    )
    x = _to_torch(
        jax.random.uniform(jax.random.PRNGKey(0), (case.members * case.batch, *case.shape))
    )
    x = x.reshape(case.members, case.batch, *x.shape[1:])
    labels = np.random.default_rng(1).integers(0, NUM_CLASSES, (case.members, case.batch))
    t = torch.nn.functional.one_hot(torch.from_numpy(labels), NUM_CLASSES).float()
    t = t.to(_torch_device())

    def call():
        for _ in range(_STEPS_PER_CALL.value):
            train_round(x, t)
        _torch_sync()

    with PeakMemory() as peak:
        timing = _time(call, _STEPS_PER_CALL.value)
    return dict(peak_mib=peak.mib, **timing)


def check_twins(arch: str) -> float:
    """Max |logit difference| of the Flax model and its PyTorch twin on copied weights."""
    from benchmarks import torch_models

    model = models.get_model(arch, NUM_CLASSES)
    variables = ensemble.member(
        ensemble.init_members(model, jax.random.PRNGKey(0), 1, INPUTS[arch]), 0
    )
    x, _ = _batch(Case("check", arch, 1, 8))
    want = np.asarray(model.apply(variables, x, train=False))
    twin = torch_models.load_flax(torch_models.build(arch, NUM_CLASSES, INPUTS[arch]), variables)
    with torch.no_grad():
        got = twin.to(_torch_device()).eval()(_to_torch(x)).cpu().numpy()
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1.0))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    import jaxlib

    dev = jax.devices()[0]
    return dict(
        jax=jax.__version__,
        jaxlib=jaxlib.__version__,
        torch=torch.__version__ if torch is not None else None,
        backend=jax.default_backend(),
        device_kind=dev.device_kind,
        device_count=jax.device_count(),
        cpu=_cpu_model(),
        cores_usable=len(os.sched_getaffinity(0)),
        torch_threads=torch.get_num_threads() if torch is not None else None,
        xla_flags=os.environ.get("XLA_FLAGS", ""),
        default_strategy=ensemble.default_strategy(),
        load_avg=[round(v, 2) for v in os.getloadavg()],
        python=platform.python_version(),
    )


def _peak_tflops(env) -> float | None:
    if _PEAK_TFLOPS.value:
        return _PEAK_TFLOPS.value
    if env["backend"] != "gpu":
        return None
    return next((v for k, v in PEAK_TFLOPS.items() if k in env["device_kind"]), None)


def _cases():
    members = [1, 4] if _QUICK.value else [int(m) for m in _MEMBERS.value]
    batches = [64] if _QUICK.value else [int(b) for b in _BATCHES.value]
    for bench in _BENCHMARKS.value:
        for arch in _ARCHS.value:
            for k in members:
                if bench == "cbim" and k < 2:
                    continue  # C-BIM needs a reference
                for b in batches:
                    yield Case(bench, arch, k, b)


def _fmt(v, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


TABLE_HEAD = (
    "| benchmark | arch | K | batch | impl | compile s | ms/step | image-models/s "
    "| peak MiB | vs torch | cpu ms/step | vs torch cpu | TFLOP/s | % peak | spread |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def table_row(r: dict) -> str:
    cells = [
        r["bench"],
        r["arch"],
        str(r["members"]),
        str(r["batch"]),
        r["impl"],
        _fmt(r.get("compile_s"), ".1f"),
        _fmt(r["step_ms"], ".1f"),
        _fmt(r["image_models_per_s"], ",.0f"),
        _fmt(r.get("peak_mib"), ",.0f"),
        _fmt(r.get("vs_torch"), ".2f"),
        _fmt(r.get("cpu_ms_per_step") if r["backend"] == "cpu" else None, ".0f"),
        _fmt(r.get("vs_torch_cpu") if r["backend"] == "cpu" else None, ".2f"),
        _fmt(r.get("tflops") if r["backend"] != "cpu" else None, ".1f"),
        _fmt(r.get("percent_peak"), ".1f"),
        f"{100 * r['spread']:.0f}%",
    ]
    return "| " + " | ".join(cells) + " |"


def measure(case: Case, impl: str, peak_tflops) -> dict:
    if impl == "torch":
        figures = (torch_cbim if case.bench == "cbim" else torch_train)(case)
    else:
        strategy = ensemble.resolve_strategy(impl.split(":", 1)[1])
        figures = (jax_cbim if case.bench == "cbim" else jax_train)(case, strategy)
        impl = f"jax:{strategy}"
    row = dict(dataclasses.asdict(case), impl=impl, backend=jax.default_backend(), **figures)
    row["image_models_per_s"] = case.members * case.batch / (row["step_ms"] / 1e3)
    if row.get("flops"):
        per_step = row["flops"] / _STEPS_PER_CALL.value
        row["tflops"] = per_step / (row["step_ms"] / 1e3) / 1e12
        if peak_tflops:
            row["percent_peak"] = 100 * row["tflops"] / peak_tflops
    return row


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if _QUICK.value:
        flags.FLAGS.seconds, flags.FLAGS.repeats = 1.0, 1
    for b in _BENCHMARKS.value:
        if b not in BENCHMARKS:
            raise app.UsageError(f"unknown benchmark {b!r}; expected some of {BENCHMARKS}")
    for a in _ARCHS.value:
        if a not in INPUTS:
            raise app.UsageError(f"no benchmark input for --archs={a}; expected {list(INPUTS)}")
    for s in _STRATEGIES.value:
        ensemble.resolve_strategy(s)  # fails on an unknown name before anything runs
    jax.config.update("jax_enable_compilation_cache", False)  # real compile times
    use_torch = _TORCH.value and torch is not None
    if use_torch:
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    env = environment()
    os.makedirs(_OUT_DIR.value, exist_ok=True)
    print(f"# Stacked ensemble throughput ({env['backend']}, {env['device_kind']})\n")
    for key, value in env.items():
        print(f"- {key}: {value if value not in ('', None) else '-'}")
    if use_torch:
        for arch in _ARCHS.value:
            diff = check_twins(arch)
            print(f"- PyTorch twin of {arch}: max relative logit difference {diff:.1e}")
            if diff > (2e-2 if _on_gpu() else 1e-4):
                raise SystemExit(f"the PyTorch {arch} does not match the Flax model ({diff})")
    else:
        print("- PyTorch is not installed (pip install torch==2.13.0): no 'vs torch' ratios")
    print(f"\n{TABLE_HEAD}", flush=True)
    peak_tflops = _peak_tflops(env)
    rows = []
    for case in _cases():
        impls = [f"jax:{s}" for s in _STRATEGIES.value] + (["torch"] if use_torch else [])
        case_rows = [measure(case, impl, peak_tflops) for impl in impls]
        torch_row = case_rows[-1] if use_torch else None
        for r in case_rows:
            if torch_row is not None and r is not torch_row:
                r["vs_torch"] = r["image_models_per_s"] / torch_row["image_models_per_s"]
                r["vs_torch_cpu"] = torch_row["cpu_ms_per_step"] / r["cpu_ms_per_step"]
            if torch_row is not None and r is torch_row and case_rows[0].get("flops"):
                r["tflops"] = (
                    case_rows[0]["tflops"]
                    * r["image_models_per_s"]
                    / (case_rows[0]["image_models_per_s"])
                )
                if peak_tflops:
                    r["percent_peak"] = 100 * r["tflops"] / peak_tflops
            print(table_row(r), flush=True)
            with open(os.path.join(_OUT_DIR.value, "results.jsonl"), "a") as f:
                f.write(json.dumps({**r, "env": env}) + "\n")
        rows += case_rows
    env["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    with open(os.path.join(_OUT_DIR.value, "results.md"), "w") as f:
        f.write(f"Environment: {json.dumps(env)}\n\n{TABLE_HEAD}\n")
        f.write("\n".join(table_row(r) for r in rows) + "\n")
    print(f"\nload average at the end: {env['load_avg_end']}", file=sys.stderr)
    print(f"wrote {_OUT_DIR.value}/results.md and results.jsonl", file=sys.stderr)


if __name__ == "__main__":
    app.run(main)
