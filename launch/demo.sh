#!/usr/bin/env bash
# The main job end to end on the bundled digits data: train the source, its
# surrogates and the references, extract the fingerprint, verify every model,
# compare the attack methods, write runs/digits/report.md. Resumes if rerun.
# Extra arguments go to the evaluate entry point (e.g. --config.extract.eps=0.2).
set -euo pipefail
source "$(dirname "$0")/_venv.sh" ""  # no extras (not this script's arguments)
python -m fingerprinting.evaluate --config=configs/digits.py --workdir="${WORKDIR:-runs/digits}" "$@"
echo "report: ${WORKDIR:-runs/digits}/report.md" >&2
