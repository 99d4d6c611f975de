#!/usr/bin/env bash
# Node.js runs the development OIDC server (deploy/dev-idp). Install it from Debian when missing.
set -euo pipefail
if command -v node >/dev/null && command -v npm >/dev/null; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "ensure_node: installing nodejs and npm from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    exit 0
fi
echo "ensure_node: Node.js 20+ and npm are needed (apt-get install nodejs npm)" >&2
exit 1
