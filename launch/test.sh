#!/usr/bin/env bash
# The test suite, in the repository's own virtual environment.
set -euo pipefail
source "$(dirname "$0")/_venv.sh" test
# One worker per core; each test file stays on one worker, so a module's
# expensive fixtures are built once. PYTEST_WORKERS=0 runs in this process.
# Without paths pytest runs tests/ (testpaths in pyproject.toml).
python -m pytest -n "${PYTEST_WORKERS:-auto}" --dist loadfile "$@"
