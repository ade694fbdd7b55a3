#!/usr/bin/env bash
# One config over several seeds: a full evaluate run per seed (resumed if
# rerun, in the background of a session: progress and the time left go to
# stderr), then RUNDIR/study.md and RUNDIR/plots/study.png over the seeds,
# rewritten as each seed finishes. Trained models are shared with every other
# run beside RUNDIR through runs/model-store.
# Usage: bash launch/study.sh [CONFIG] [SEEDS] [extra --config.X=Y ...]
#   bash launch/study.sh configs/digits.py 0,1,2
#   bash launch/study.sh configs/fashion_mnist.py 0,1,2
#   bash launch/study.sh configs/fashion_mnist.py:source=cnn_pool 0,1,2
set -euo pipefail
source "$(dirname "$0")/_venv.sh" ""  # no extras (not this script's arguments)
config="${1:-configs/digits.py}"
seeds="${2:-0,1,2}"
shift $(( $# < 2 ? $# : 2 ))
name="$(basename "${config%%:*}" .py)"
[[ "$config" == *:* ]] && name="$name-${config#*:}"  # configs/x.py:source=y -> x-source=y
python -m fingerprinting.study --config="$config" --seeds="$seeds" \
  --workdir="${WORKDIR:-runs/study-$name}" "$@"
echo "study: ${WORKDIR:-runs/study-$name}/study.md" >&2
