#!/usr/bin/env bash
# The README's run command (`make up`): install what is missing, then run the whole system in
# the foreground with `ticketing dev`. Ctrl-C stops everything. Arguments go to `ticketing dev`.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
scripts/install.sh
if [ -z "${TICKETING_MYSQL_URL:-}" ]; then
    "$VENV/bin/python" scripts/ensure_mysql.py   # starts the local MariaDB when it is stopped
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    scripts/ensure_packages.sh
fi
npm ci --prefix web --no-audit --no-fund --loglevel=error
if [ -z "${TICKETING_OIDC_ISSUER:-}" ]; then
    npm ci --prefix deploy/dev-idp --no-audit --no-fund --loglevel=error
fi
exec "$VENV/bin/ticketing" dev "$@"
