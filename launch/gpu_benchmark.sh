#!/usr/bin/env bash
# GPU figures of the benchmarks on one accelerator, in about 6 minutes:
# stacked training of every paper architecture (vmap against an unrolled loop
# and against one-by-one training for ResNet-20 and the small CPU CNN) and the
# C-BIM step through 16 and 64 ResNet-20s. Writes JSON lines to $OUT (default
# /tmp/gpu_bench) and the tables to stdout. Each measurement has its own time
# limit, so one slow compile cannot eat the whole run.
#   bash launch/gpu_benchmark.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu_bench}"
mkdir -p "$out"
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
py="${PYTHON:-python3}"
$py -c "import jax; print('jax', jax.__version__, jax.devices())"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>/dev/null || true

bench() { timeout "$1" $py -m "${@:2}" --json_out="$out/bench.jsonl" || echo "(stopped: $2 ${*:3})"; }

bench 120 benchmarks.train_throughput --arch=resnet20 --members=8 --batch=128 --input=32x32x3 \
  --strategies=vmap,unroll --steps=10 --repeats=2 --resnet_steps=10
bench 50 benchmarks.train_throughput --arch=cnn_small --members=8 --batch=128 --input=28x28x1 \
  --strategies=vmap,unroll --steps=20 --repeats=2 --noresnet
for arch in resnet56 densenet vgg16 vgg19 mobilenetv2; do
  bench 50 benchmarks.train_throughput --arch=$arch --members=4 --batch=128 --input=32x32x3 \
    --strategies=vmap --nosequential --steps=5 --repeats=2 --noresnet
done
bench 100 benchmarks.cbim_step --arch=resnet20 --members=16 --batch=64 --strategies=vmap,unroll --steps=10
bench 50 benchmarks.cbim_step --arch=resnet20 --members=64 --batch=64 --strategies=vmap --steps=5
