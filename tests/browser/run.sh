#!/usr/bin/env bash
# The dashboard's browser test: headless Chromium (Debian's /usr/bin/chromium)
# driven by playwright-core, against build/payi (or $PAYI_BIN).
#   1. npm ci in tests/browser when node_modules is missing or stale
#   2. scripts/web.sh: build the dashboard into web/dist
#   3. node dashboard.test.mjs: ends with "N passed, N failed"
# Exits non-zero when anything failed.  Needs: node + npm, chromium
# (apt-get install chromium), build/payi (make).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
cd "$HERE"

fail() { echo "payi browser test: $*" >&2; echo "0 passed, 1 failed"; exit 1; }

command -v node >/dev/null 2>&1 || fail "node is missing (apt-get install nodejs npm)"
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || fail "${CHROMIUM:-/usr/bin/chromium} is missing (apt-get install chromium)"
[ -x "${PAYI_BIN:-$REPO/build/payi}" ] || fail "${PAYI_BIN:-$REPO/build/payi} is missing (make)"

if [ ! -d node_modules/playwright-core ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error >&2 || fail "npm ci in tests/browser failed"
fi
"$REPO/scripts/web.sh" || fail "scripts/web.sh failed"

exec node dashboard.test.mjs
