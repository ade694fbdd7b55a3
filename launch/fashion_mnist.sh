#!/usr/bin/env bash
# Fashion-MNIST end to end on a CPU (Debian's dataset-fashion-mnist files, or
# tensorflow-datasets online): 31 small models (the source on 20,000 images,
# its students 15 epochs each), extraction, verification, the removal attacks,
# Table 1. About three hours on 2 cores (an estimate); resumes if rerun.
#   sudo apt-get install dataset-fashion-mnist   # once, for the offline files
#   bash launch/fashion_mnist.sh [--config.field=value ...]
set -euo pipefail
source "$(dirname "$0")/_venv.sh" ""  # no extras (not this script's arguments)
python -m fingerprinting.evaluate --config=configs/fashion_mnist.py \
  --workdir="${WORKDIR:-runs/fashion_mnist}" "$@"
