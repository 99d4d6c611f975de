#!/usr/bin/env bash
# Create the virtualenv (VENV, default .venv) when missing and install the project with its
# dev tools into it. Used by `make test` and `make up`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet --editable '.[dev]'
