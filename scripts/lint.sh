#!/usr/bin/env bash
# Lint the project with the repository's ruff configuration (pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m ruff check hangar tests scripts examples "$@"
# the layers contract (pyproject.toml [tool.importlinter]); lint-imports comes with the test extra
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" lint-imports --no-cache
