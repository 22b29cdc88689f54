#!/usr/bin/env bash
# Run every fuzz target for FUZZ_SECONDS (default 30) each from its seed corpus.
# Prints "fuzz: N passed, N failed".  A crash leaves its input in build-fuzz/.
set -uo pipefail
cd "$(dirname "$0")/../.."
secs=${FUZZ_SECONDS:-30}
tests/fuzz/build.sh >/dev/null || { echo "fuzz: 0 passed, 1 failed (build)"; exit 1; }
passed=0; failed=0
for t in record json expr schema spec command; do
  seeds=tests/fuzz/corpus/$t
  work=$(mktemp -d)
  [ -d "$seeds" ] && cp -r "$seeds"/. "$work"/ 2>/dev/null
  if build-fuzz/fuzz_$t -max_total_time="$secs" -print_final_stats=0 -artifact_prefix=build-fuzz/crash-$t- \
       "$work" >build-fuzz/fuzz_$t.log 2>&1; then
    passed=$((passed+1)); echo "fuzz $t: ok ($(grep -c . build-fuzz/fuzz_$t.log) log lines, ${secs}s)"
  else
    failed=$((failed+1)); echo "fuzz $t: FAILED, see build-fuzz/fuzz_$t.log"; tail -20 build-fuzz/fuzz_$t.log
  fi
  rm -rf "$work"
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
