#!/usr/bin/env bash
# The benchmark table on one GPU in under 5 minutes: the C-BIM step and
# stacked training of ResNet-20 and cnn_small, K = 1, 16, 64 members at batch
# 128, JAX's vmap (the accelerator default) against PyTorch on the same GPU,
# with each JAX row's TFLOP/s and share of the device's peak; then the
# unrolled member loop, whose compile time grows with K, at the sizes it
# compiles in time. Each part has its own time limit, so a slow compile cannot
# eat the run; rows print as they finish.
#   bash launch/gpu_benchmark.sh            # results in $OUT (default runs/benchmark_gpu)
# Uses the Python that has JAX with CUDA and PyTorch (PYTHON, default python3)
# and the repository on PYTHONPATH. On a machine without a package index, put
# wheels of missing pure-Python dependencies (e.g. ml_collections) in .whl/.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-runs/benchmark_gpu}"
py="${PYTHON:-python3}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
  $py -m pip install -q --no-index --no-deps --target /tmp/fingerprinting_site .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/fingerprinting_site"
fi
$py - <<'EOF' || exit 1
import importlib.util, sys
need = ("jax", "flax", "optax", "chex", "ml_collections", "orbax.checkpoint", "absl", "scipy", "torch")
missing = [m for m in need if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing Python packages: {', '.join(missing)}")
import jax, torch
print("jax", jax.__version__, jax.devices(), "| torch", torch.__version__, torch.cuda.is_available())
EOF
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || true

bench() { # limit_s out_subdir flags...
  timeout "$1" $py -m benchmarks.run --out_dir="$out/$2" --batches=128 --steps_per_call=2 \
    --seconds=0.5 --repeats=3 "${@:3}" || echo "(part '$2' stopped after $1 s)"
}
bench 190 vmap --strategies=vmap --members=1,16,64
bench 90 unroll --strategies=unroll --notorch --members=16,64 --archs=cnn_small
bench 60 unroll_resnet20 --strategies=unroll --notorch --members=16 --archs=resnet20
