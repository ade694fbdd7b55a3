#!/usr/bin/env bash
# The paper's experiments (Section 6) on a GPU machine: CINIC-10 (Tables 1, 2,
# 4) and ImageNet32 (Tables 1, 3, 5), and CIFAR-10 from tensorflow-datasets.
#   bash launch/paper.sh cinic10 /data/CINIC-10
#   bash launch/paper.sh imagenet32 /data/Imagenet32
#   bash launch/paper.sh cifar10            # tensorflow-datasets' data dir
# Install jax for the GPU into .venv first (pip install -U "jax[cuda12]").
# Expected cost: see README.md. Resumes if rerun.
set -euo pipefail
dataset="${1:?usage: launch/paper.sh cinic10|imagenet32|cifar10 [DATA_DIR] [overrides...]}"
shift
dir=""
if [[ $# -gt 0 && "$1" != --* ]]; then dir="$1"; shift; fi
source "$(dirname "$0")/_venv.sh"
python -m fingerprinting.evaluate --config="configs/${dataset}.py" \
  ${dir:+--config.data.dir="$dir"} --workdir="${WORKDIR:-runs/$dataset}" "$@"
