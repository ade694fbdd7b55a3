#!/usr/bin/env bash
# The test suite, in the repository's own virtual environment.
set -euo pipefail
source "$(dirname "$0")/_venv.sh" test
python -m pytest tests "$@"
