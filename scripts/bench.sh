#!/usr/bin/env bash
# `make bench`: a benchmark run, not a test. Starts the stack with `ticketing dev`, drives it
# through the gateway from a separate process (wrk and Python), measures the ceilings in the
# same run, and writes docs/benchmarks.md, docs/benchmarks.json and the pictures in docs/img/.
# Takes two to four minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/ticketing" ]; then
    echo "bench: run make test (or make up) once first to install the project" >&2
    exit 1
fi
if ! command -v wrk >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
# The pictures need matplotlib, the bench's own dependency (the `bench` extra).
if ! "$VENV/bin/python" -c "import matplotlib" 2>/dev/null; then
    "$VENV/bin/python" -m pip install --quiet --editable '.[bench]'
fi
"$VENV/bin/python" scripts/ensure_mysql.py
exec "$VENV/bin/python" -m benchmarks "$@"
