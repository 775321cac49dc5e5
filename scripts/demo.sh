#!/usr/bin/env bash
# Set up a virtual environment (first run only) and run the end-to-end tour.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${HANGAR_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e .
"$VENV/bin/python" -m pip install -q torch==2.13.0 || echo "torch not installed: the tour skips the torch step"
if [ -f examples/tour.py ]; then
  "$VENV/bin/python" examples/tour.py "$@"
else
  "$VENV/bin/python" examples/quickstart.py "$@"
fi
