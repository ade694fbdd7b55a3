#!/usr/bin/env bash
# Fashion-MNIST end to end on a CPU (Debian's dataset-fashion-mnist files, or
# tensorflow-datasets online): 28 small models (the source on 20,000 images),
# extraction, verification, the removal attacks, Table 1. About an hour and a
# half on 2 cores; resumes if rerun.
#   sudo apt-get install dataset-fashion-mnist   # once, for the offline files
#   bash launch/fashion_mnist.sh [--config.field=value ...]
set -euo pipefail
source "$(dirname "$0")/_venv.sh" ""  # no extras (not this script's arguments)
python -m fingerprinting.evaluate --config=configs/fashion_mnist.py \
  --workdir="${WORKDIR:-runs/fashion_mnist}" "$@"
