#!/usr/bin/env bash
# System packages the tests need: Node.js (the dev OIDC server, the docs assets), Chromium (the
# docs render test) and docker-compose (validates deploy/compose.yml; no engine is needed).
# Installed from Debian when missing.
set -euo pipefail
missing=()
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=(chromium)
command -v docker-compose >/dev/null || missing+=(docker-compose)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "ensure_packages: installing ${missing[*]} from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    exit 0
fi
echo "ensure_packages: please install ${missing[*]} (apt-get install ${missing[*]})" >&2
exit 1
