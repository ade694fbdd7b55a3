#!/usr/bin/env bash
# The paper's experiments (Section 6) on a GPU machine: CINIC-10 (Tables 1, 2,
# 4) and ImageNet32 (Tables 1, 3, 5), and CIFAR-10 from tensorflow-datasets.
#   KNOCKOFF_DIR=/data/Imagenet32 bash launch/paper.sh cinic10 /data/CINIC-10
#   KNOCKOFF_DIR=/data/Imagenet32 bash launch/paper.sh cifar10   # tensorflow-datasets' data dir
#   bash launch/paper.sh imagenet32 /data/Imagenet32   # its Knockoff transfer set: CIFAR-10 (tfds)
# KNOCKOFF_DIR is the Knockoff attack's transfer set (ImageNet32 for CIFAR-10
# and CINIC-10); without it, leave knockoff out of --config.removal.attacks.
# Install jax for the GPU into .venv first (pip install -U "jax[cuda12]").
# Expected cost: see README.md. Resumes if rerun.
set -euo pipefail
dataset="${1:?usage: launch/paper.sh cinic10|imagenet32|cifar10 [DATA_DIR] [overrides...]}"
shift
dir=""
if [[ $# -gt 0 && "$1" != --* ]]; then dir="$1"; shift; fi
source "$(dirname "$0")/_venv.sh" ""  # no extras (not this script's arguments)
python -m fingerprinting.evaluate --config="configs/${dataset}.py" \
  ${dir:+--config.data.dir="$dir"} ${KNOCKOFF_DIR:+--config.removal.knockoff_dir="$KNOCKOFF_DIR"} \
  --workdir="${WORKDIR:-runs/$dataset}" "$@"
