#!/usr/bin/env bash
# Fashion-MNIST end to end on a CPU (Debian's dataset-fashion-mnist files, or
# tensorflow-datasets online): 29 small models on 20,000 images per party,
# extraction, verification, Table 1. About half an hour on 2 cores; resumes if rerun.
#   sudo apt-get install dataset-fashion-mnist   # once, for the offline files
#   bash launch/fashion_mnist.sh [--config.field=value ...]
set -euo pipefail
source "$(dirname "$0")/_venv.sh" ""  # no extras (not this script's arguments)
python -m fingerprinting.evaluate --config=configs/fashion_mnist.py \
  --workdir="${WORKDIR:-runs/fashion_mnist}" "$@"
