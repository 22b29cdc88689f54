#!/usr/bin/env bash
# Install the Debian packages payi needs for a goal, only those missing.
# Usage: scripts/deps.sh build|test|bench|demo
# Runs apt-get only when something is missing, so a prepared machine pays nothing.
set -euo pipefail

build_pkgs=(gcc make pkg-config libmicrohttpd-dev libpg-query-dev libluajit-5.1-dev libsqlite3-dev libpq-dev)
test_pkgs=(clang libclang-rt-14-dev python3-pytest postgresql sqlite3 chromium)
bench_pkgs=(postgresql redis-server linux-perf wrk)

case "${1:-build}" in
  build) want=("${build_pkgs[@]}") ;;
  test)  want=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  bench) want=("${build_pkgs[@]}" "${bench_pkgs[@]}") ;;
  demo)  want=("${build_pkgs[@]}") ;;
  *) echo "usage: $0 build|test|bench|demo" >&2; exit 2 ;;
esac

# The dashboard is built with npm and tested with playwright-core: take the
# machine's Node.js when there is one, else Debian's.
if [ "${1:-build}" = demo ] || [ "${1:-build}" = test ]; then
  command -v npm >/dev/null 2>&1 || want+=(nodejs npm)
fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "payi: installing missing packages: ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
