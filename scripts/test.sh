#!/usr/bin/env bash
# The one test command (`make test`): install, check, start what the tests need, run pytest.
# Extra arguments go to pytest, e.g. `scripts/test.sh -m unit`.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
scripts/install.sh

echo "== static checks"
"$VENV/bin/ruff" check src tests scripts alembic benchmarks
"$VENV/bin/ruff" format --check src tests scripts alembic benchmarks
"$VENV/bin/mypy"
"$VENV/bin/lint-imports"

echo "== infrastructure"
"$VENV/bin/python" scripts/ensure_mysql.py
"$VENV/bin/python" -c "import redis, sys; redis.Redis.from_url('${TICKETING_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}', socket_timeout=5).ping() or sys.exit(1)" \
    || { echo "Redis must answer on ${TICKETING_TEST_REDIS_URL:-redis://127.0.0.1:6379/0} (the shared rate limit's tests)"; exit 1; }
scripts/ensure_packages.sh
npm ci --prefix deploy/dev-idp --no-audit --no-fund --loglevel=error
npm ci --prefix web --no-audit --no-fund --loglevel=error

echo "== tests (the test session starts and stops the Kafka-protocol broker and the OIDC server)"
exec "$VENV/bin/pytest" "$@"
