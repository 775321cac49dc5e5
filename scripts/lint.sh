#!/usr/bin/env bash
# Lint the project with the repository's ruff configuration (pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m ruff check hangar tests scripts examples "$@"
