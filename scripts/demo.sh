#!/usr/bin/env bash
# Set up a virtual environment (first run only) and run the end-to-end tour.
# The package is (re)installed only when it is missing or its build inputs (pyproject.toml,
# setup.py, the optional C extension) changed since the last install, so a second run starts
# the tour at once.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${HANGAR_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
STAMP="$VENV/.hangar-demo-installed"
WANT="$(cat pyproject.toml setup.py hangar/plumbing/_rowhash.c | cksum) $PWD"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ] || ! "$VENV/bin/python" -c "import hangar" 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e .
  echo "$WANT" > "$STAMP"
fi
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q torch==2.13.0 || echo "torch not installed: the tour skips the torch step"
fi
if [ -f examples/tour.py ]; then
  "$VENV/bin/python" examples/tour.py "$@"
else
  "$VENV/bin/python" examples/quickstart.py "$@"
fi
