#!/usr/bin/env bash
# Build the dashboard's assets: web/src/* and the charting library (uPlot,
# from npm) into web/dist/, which `payi serve` serves at / and /assets/
# (src/http/static.c).  No bundler: the page loads uPlot's IIFE build and
# app.js as two plain scripts.
#
#   scripts/web.sh            npm ci in web/ when node_modules is missing or
#                             older than package-lock.json, then copy
#
# The output is written to web/dist.tmp and renamed into place, so a running
# server never serves half a build.  Needs node and npm (the machine's
# Node.js; Debian's nodejs + npm packages work too).
set -euo pipefail
cd "$(dirname "$0")/../web"

if ! command -v npm >/dev/null 2>&1; then
  echo "payi web: npm is missing (apt-get install nodejs npm)" >&2
  exit 1
fi
if [ ! -d node_modules/uplot ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "payi web: npm ci in web/" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi

rm -rf dist.tmp
mkdir -p dist.tmp/assets
cp src/index.html dist.tmp/index.html
cp src/app.js src/style.css src/favicon.svg dist.tmp/assets/
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css dist.tmp/assets/
cp node_modules/uplot/LICENSE dist.tmp/assets/uPlot.LICENSE.txt
rm -rf dist.old
[ -d dist ] && mv dist dist.old
mv dist.tmp dist
rm -rf dist.old
echo "payi web: built $(cd dist && find . -type f | wc -l) files into web/dist" >&2
