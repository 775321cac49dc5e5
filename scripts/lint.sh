#!/usr/bin/env bash
# Lint and type-check the project with the repository's ruff and mypy configuration (pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m ruff check hangar tests scripts examples "$@"
python3 -m mypy
# the layers contract (pyproject.toml [tool.importlinter]); lint-imports comes with the test extra
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" lint-imports --no-cache
