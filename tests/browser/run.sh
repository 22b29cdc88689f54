#!/usr/bin/env bash
# The dashboard's browser test: headless Chromium (Debian's /usr/bin/chromium)
# driven by playwright-core, against build/payi (or $PAYI_BIN).
#   1. npm ci in tests/browser when node_modules is missing or stale
#   2. scripts/web.sh: build the dashboard into web/dist
#   3. node dashboard.test.mjs (the page against a small spec and synthetic
#      events), then node app.test.mjs (the real COVID-19 app: payi demo on
#      the JHU data); each ends with "N passed, N failed"
# Closes with one line "N passed, N failed" summing both (tests/run.sh reads
# it).  Exits non-zero when anything failed.  Needs: node + npm, chromium
# (apt-get install chromium), build/payi (make).  PAYI_WEB defaults to this
# repository's web/dist, so that a payi binary copied elsewhere ($PAYI_BIN)
# serves the dashboard just built.
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

export PAYI_WEB="${PAYI_WEB:-$REPO/web/dist}"

total_pass=0; total_fail=0; status=0
for t in dashboard.test.mjs app.test.mjs; do
  log=$(mktemp "${TMPDIR:-/tmp}/payi-browser-XXXXXX")
  start=$(date +%s)
  set +e
  timeout -k 10 300 node "$t" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1 || true)
  rm -f "$log"
  p=0; f=0
  if [[ $line =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then p=${BASH_REMATCH[1]}; f=${BASH_REMATCH[2]}; fi
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # died before its summary (or timed out)
  [ "$rc" -eq 0 ] || status=1
  echo "== $t: $p passed, $f failed in $(( $(date +%s) - start )) s"
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ] && exit "$status"
exit 1
