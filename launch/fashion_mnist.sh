#!/usr/bin/env bash
# Fashion-MNIST end to end on a CPU (Debian's dataset-fashion-mnist files, or
# tensorflow-datasets online): the source on 30,000 images, 39 small models of
# five families, extraction, verification, the removal attacks, the evasion
# game, Table 1. Resumes if rerun; the models go to runs/model-store too, so a
# variant in another work directory trains only what it changes.
#   sudo apt-get install dataset-fashion-mnist   # once, for the offline files
#   bash launch/fashion_mnist.sh [--config.field=value ...]
set -euo pipefail
source "$(dirname "$0")/_venv.sh" ""  # no extras (not this script's arguments)
python -m fingerprinting.evaluate --config=configs/fashion_mnist.py \
  --workdir="${WORKDIR:-runs/fashion_mnist}" "$@"
