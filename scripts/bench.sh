#!/usr/bin/env bash
# `make bench`: a benchmark run, not a test. Starts the stack with `ticketing dev`, drives it
# through the gateway from a separate process (wrk and Python), measures the ceilings in the
# same run, and writes docs/benchmarks.md and docs/benchmarks.json. Takes two to four minutes.
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
"$VENV/bin/python" scripts/ensure_mysql.py
exec "$VENV/bin/python" -m benchmarks "$@"
