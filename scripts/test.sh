#!/usr/bin/env bash
# Set up a virtual environment (first run only) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${HANGAR_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# the console-script tests run `hangar` itself: the venv's bin comes first on PATH
PATH="$(cd "$VENV/bin" && pwd):$PATH"
export PATH
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e '.[test]'
# optional extras the loader tests exercise: torch (a local CPU wheel, fast), tensorflow-cpu and dask
# (with dask.distributed: to_dask on a LocalCluster of worker processes)
"$VENV/bin/python" -m pip install -q torch==2.13.0 || echo "WARNING: torch not installed: torch loader tests will skip"
"$VENV/bin/python" -m pip install -q tensorflow-cpu "dask[array,distributed]" \
  || echo "WARNING: tensorflow-cpu/dask not installed: their loader tests will skip"
"$VENV/bin/python" -m ruff check hangar tests scripts examples
# types: strict on plumbing/store/records (config: [tool.mypy] in pyproject.toml)
"$VENV/bin/python" -m mypy
# the layers contract (pyproject.toml [tool.importlinter]); what the lint-imports script runs
"$VENV/bin/python" -c "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())" \
  --no-cache
# two worker processes (pytest-xdist), one per core: most of the suite's time is spent waiting on
# servers, git and child processes, so two workers took 0.64x the wall time of one on the
# server-heavy files (docs/testing.md); HANGAR_TEST_WORKERS=0 runs in this process alone
"$VENV/bin/python" -m pytest -q -p no:cacheprovider -n "${HANGAR_TEST_WORKERS:-2}" "$@"
