#!/usr/bin/env bash
# Run the benchmarks in bench/: every bench/*.sh except this file (today only
# append.sh), or just the ones named: bench/run.sh append
# `make bench` builds build/payi first and then calls this; run directly, it
# measures whatever build/payi is already there.
# Each benchmark writes bench/results/<name>.json and <name>.md.
# Exit status: 0 if every benchmark exited 0, else 1 (all of them still run).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The peers (postgresql, redis-server) and perf; installs only what is missing.
scripts/deps.sh bench

status=0
ran=0
for script in bench/*.sh; do
  name=$(basename "$script" .sh)
  [ "$name" = run ] && continue
  if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
  ran=$((ran + 1))
  echo "== bench/$name.sh" >&2
  if ! bash "$script"; then
    echo "bench: $script failed" >&2
    status=1
  fi
done

if [ "$ran" -eq 0 ]; then
  echo "bench: no benchmark matched: $*" >&2
  exit 2
fi
exit "$status"
