#!/usr/bin/env bash
# The whole test suite: what `make test` and CI run.
#   1. dev build (-Werror) and the C unit tests
#   2. black-box tests of the real binary and the crash test (pytest)
#   3. the fuzz targets, briefly (FUZZ_SECONDS, default 30 each); the
#      dashboard in headless Chromium (tests/browser)
#   4. the ASan+UBSan build: unit tests and black-box tests again
# Closes with one line "N passed, N failed" summing every suite.
set -uo pipefail
cd "$(dirname "$0")/.."
export TMPDIR=${TMPDIR:-/tmp}
PYTEST=(/usr/bin/python3 -m pytest -q -p no:cacheprovider)

total_pass=0; total_fail=0
suite_failed=()

count() {   # count NAME PASSED FAILED
  total_pass=$((total_pass + $2)); total_fail=$((total_fail + $3))
  [ "$3" -eq 0 ] || suite_failed+=("$1")
}

# Parse "unit: N passed, M failed" or pytest's "N passed, M failed, K errors in Xs".
tally() {   # tally NAME LOGFILE EXIT
  local line p f e
  line=$(grep -E '([0-9]+ (passed|failed|error))' "$2" | tail -1)
  p=$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+' || true)
  f=$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+' || true)
  e=$(grep -oE '[0-9]+ errors?' <<<"$line" | grep -oE '[0-9]+' || true)
  p=${p:-0}; f=$(( ${f:-0} + ${e:-0} ))
  if [ "$3" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # a crash before the summary still fails
  count "$1" "$p" "$f"
  echo "== $1: $p passed, $f failed"
}

run_suite() {   # run_suite NAME COMMAND...
  local name=$1; shift
  local log="$TMPDIR/payi-test-$name.log"
  echo "== $name: $*"
  "$@" 2>&1 | tee "$log" | grep -E 'FAIL|Error|error:|failed|passed' | grep -v '^payi: ' | tail -40
  tally "$name" "$log" "${PIPESTATUS[0]}"
}

# A throwaway PostgreSQL on loopback for the store tests (the views run on
# it too): its own data directory, stopped on exit whatever happens.
# shellcheck source=bench/lib/peers.sh
source bench/lib/peers.sh
PG_SCRATCH=$(mktemp -d "$TMPDIR/payi-test-pg.XXXXXX")
chmod 711 "$PG_SCRATCH"
trap 'pg_stop; rm -rf "$PG_SCRATCH"' EXIT
if pg_start "$PG_SCRATCH/pg" "$(free_port)" 2>"$PG_SCRATCH/start.err"; then
  export PAYI_TEST_PG_URL="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
  echo "== PostgreSQL for the store tests: $PAYI_TEST_PG_URL"
else
  echo "== PostgreSQL did not start: $(tail -n 3 "$PG_SCRATCH/start.err")"
  count postgresql 0 1
fi

if ! make -j2 all build/test_unit >"$TMPDIR/payi-build.log" 2>&1; then
  cat "$TMPDIR/payi-build.log"; echo "0 passed, 1 failed"; exit 1
fi

run_suite unit build/test_unit
run_suite blackbox env PAYI_BIN="$PWD/build/payi" "${PYTEST[@]}" tests/blackbox tests/crash/crash_test.py
run_suite fuzz tests/fuzz/run.sh
if scripts/web.sh >"$TMPDIR/payi-web.log" 2>&1; then
  run_suite browser env PAYI_BIN="$PWD/build/payi" tests/browser/run.sh
else
  tail -5 "$TMPDIR/payi-web.log"; count browser 0 1
fi

if make -j2 SANITIZE=address,undefined build-san/payi build-san/test_unit >"$TMPDIR/payi-build-san.log" 2>&1; then
  export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_suite unit-asan build-san/test_unit
  run_suite blackbox-asan env PAYI_BIN="$PWD/build-san/payi" CRASH_CYCLES=10 "${PYTEST[@]}" tests/blackbox tests/crash/crash_test.py
else
  tail -30 "$TMPDIR/payi-build-san.log"; count build-asan 0 1
fi

echo
[ ${#suite_failed[@]} -eq 0 ] || echo "failing suites: ${suite_failed[*]}"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
