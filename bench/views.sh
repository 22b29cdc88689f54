#!/usr/bin/env bash
# View benchmark: payi's views maintained over the Nexmark benchmark's events
# (`payi bench views`, bench/specs/nexmark.payi: q0, q1, q2, q12, q15, q16,
# q17), folded into SQLite and into PostgreSQL, beside the same q17 aggregate
# maintained the usual way (one INSERT ... ON CONFLICT DO UPDATE per event,
# 1,000 per transaction) in SQLite and PostgreSQL; then the latency from a
# command's acknowledgement to its change on /views/{name}/changes at a fixed
# command rate (`payi bench views-latency` against `payi serve`).
# bench/lib/views_report.py writes bench/results/views.json and views.md.
#
# Usage: bench/views.sh            (bench/run.sh views calls it; see bench/README.md)
# Environment (all optional):
#   BENCH_EVENTS=1000000       Nexmark events generated (the same events, seed 42, in every phase)
#   BENCH_PEER_SECONDS=10      each upsert peer stops after this long (or when the bids run out)
#   BENCH_LATENCY_RATE=10000   commands per second in the latency phase
#   BENCH_LATENCY_SECONDS=10   length of each latency run
#   BENCH_PERF=1               perf record the SQLite phase (0: no profile)
#   BENCH_MIN_FREE_GB=4        refuse to start with less free space than this
#   BENCH_REQUIRE_PAYI=1       exit 1 when payi is missing (default: report it, exit 0)
#   PAYI_BIN=build/payi        the payi binary to measure (copied into the scratch directory)
#   PAYI_TIMEOUT=900           hard limit on each `payi bench views` run, seconds
#
# Phases (each bounded by `timeout`; all servers on 127.0.0.1, ports picked
# by the kernel; all data in one scratch directory on the repository's
# filesystem, removed on exit even on failure; servers stopped by pid):
#   1. sqlite:   payi bench views --run all=sqlite:... --run q17=sqlite:...
#                --peer sqlite:...   (under perf record when BENCH_PERF=1)
#   2. postgres: a throwaway PostgreSQL 15 (bench/lib/peers.sh), one database
#                per run; payi bench views --run all=PG --run q17=PG
#                --peer PG (pipelined) --peer-sync PG (one round trip each)
#   3. latency:  payi serve --spec nexmark.payi (all seven views), then a spec
#                with only q17 (its events and PlaceBid); for each, payi bench
#                views-latency at BENCH_LATENCY_RATE commands/s
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/peers.sh
source "$REPO/bench/lib/peers.sh"
# shellcheck source=bench/lib/common.sh
source "$REPO/bench/lib/common.sh"

BENCH_EVENTS=${BENCH_EVENTS:-1000000}
BENCH_PEER_SECONDS=${BENCH_PEER_SECONDS:-10}
BENCH_LATENCY_RATE=${BENCH_LATENCY_RATE:-10000}
BENCH_LATENCY_SECONDS=${BENCH_LATENCY_SECONDS:-10}
BENCH_PERF=${BENCH_PERF:-1}
BENCH_MIN_FREE_GB=${BENCH_MIN_FREE_GB:-4}
BENCH_REQUIRE_PAYI=${BENCH_REQUIRE_PAYI:-0}
PAYI_BIN=${PAYI_BIN:-$REPO/build/payi}
PAYI_TIMEOUT=${PAYI_TIMEOUT:-900}

PYTHON=/usr/bin/python3
REPORT=$REPO/bench/lib/views_report.py
SPEC=$REPO/bench/specs/nexmark.payi
RESULTS=$REPO/bench/results
SEED=42

SCRATCH=
RAW=
PIECES=
BIN=
SERVER_PID=

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
report() { "$PYTHON" "$REPORT" "$@"; }

# ------------------------------------------------------------ scratch & cleanup

# server_stop: SIGTERM the payi server (by pid), SIGKILL after 15 s.
server_stop() {
  [ -n "$SERVER_PID" ] || return 0
  local pid=$SERVER_PID
  SERVER_PID=
  stop_pid "$pid" TERM 15
}

cleanup() {
  local rc=$?
  set +e
  server_stop
  pg_stop
  if [ -n "$SCRATCH" ] && [ -d "$SCRATCH" ]; then rm -rf -- "$SCRATCH"; fi
  if [ "$rc" -ne 0 ]; then
    log "exit $rc; servers stopped, scratch directory removed"
  fi
  exit "$rc"
}

# ------------------------------------------------------------ 1. SQLite

run_sqlite() {
  local dir=$SCRATCH/sqlite rc=0
  mkdir -p "$dir"
  local cmd=("$BIN/payi" bench views --events "$BENCH_EVENTS" --seed "$SEED" --spec "$SPEC"
             --data "$dir/data" --run "all=sqlite:$dir/all.db" --run "q17=sqlite:$dir/q17.db"
             --peer "sqlite:$dir/peer.db" --peer-seconds "$BENCH_PEER_SECONDS" --json)
  printf '%q ' "${cmd[@]}" | sed "s|$SCRATCH|SCRATCH|g" >"$RAW/sqlite.cmd"
  if [ "$BENCH_PERF" = 1 ] && command -v perf >/dev/null; then
    log "1/3 SQLite: payi bench views (${BENCH_EVENTS} events) under perf record -e cpu-clock -F 999 -g"
    timeout --kill-after=10 "$PAYI_TIMEOUT" \
      perf record -q -e cpu-clock -F 999 -g -o "$RAW/sqlite.perf.data" -- "${cmd[@]}" \
      >"$RAW/sqlite.json" 2>"$RAW/sqlite.err" || rc=$?
  else
    if [ "$BENCH_PERF" = 1 ]; then log "perf is missing (scripts/deps.sh bench installs linux-perf): no profile"; fi
    log "1/3 SQLite: payi bench views (${BENCH_EVENTS} events)"
    timeout --kill-after=10 "$PAYI_TIMEOUT" "${cmd[@]}" >"$RAW/sqlite.json" 2>"$RAW/sqlite.err" || rc=$?
  fi
  report payi --out "$PIECES/sqlite.json" --name sqlite --rc "$rc" --stdout "$RAW/sqlite.json" \
    --stderr "$RAW/sqlite.err" --cmd "$RAW/sqlite.cmd"
  if [ -s "$RAW/sqlite.perf.data" ]; then
    log "perf report (view threads, by symbol and library)"
    report perf --out "$PIECES/perf.json" --data "$RAW/sqlite.perf.data" --bench-json "$RAW/sqlite.json" \
      --binary "$BIN/payi" || log "perf report failed"
    rm -f -- "$RAW/sqlite.perf.data"
  fi
  rm -rf -- "$dir"
  sync
}

# ------------------------------------------------------------ 2. PostgreSQL

run_postgres() {
  local port rc=0 dir=$SCRATCH/pgrun
  port=$(free_port)
  log "2/3 PostgreSQL: initdb + start on 127.0.0.1:$port"
  if ! pg_start "$SCRATCH/pg" "$port" 2>"$RAW/pg_start.err"; then
    log "PostgreSQL did not start: $(tail -n 3 "$RAW/pg_start.err" | tr '\n' ' ')"
    report error --out "$PIECES/postgres.json" --name postgres \
      --reason "PostgreSQL did not start: $(tail -n 1 "$RAW/pg_start.err")"
    pg_stop
    return 0
  fi
  local db
  for db in views_all views_q17 peer_pipelined peer_sync; do
    pg_sql "CREATE DATABASE $db" >/dev/null
  done
  local url=postgresql://postgres@127.0.0.1:$port
  mkdir -p "$dir"
  local cmd=("$BIN/payi" bench views --events "$BENCH_EVENTS" --seed "$SEED" --spec "$SPEC"
             --data "$dir/data" --run "all=$url/views_all" --run "q17=$url/views_q17"
             --peer "$url/peer_pipelined" --peer-sync "$url/peer_sync"
             --peer-seconds "$BENCH_PEER_SECONDS" --json)
  printf '%q ' "${cmd[@]}" | sed -e "s|$SCRATCH|SCRATCH|g" -e "s|:$port/|:PORT/|g" >"$RAW/postgres.cmd"
  log "2/3 PostgreSQL: payi bench views (${BENCH_EVENTS} events) into PostgreSQL, then the upsert peers"
  timeout --kill-after=10 "$PAYI_TIMEOUT" "${cmd[@]}" >"$RAW/postgres.json" 2>"$RAW/postgres.err" || rc=$?
  report payi --out "$PIECES/postgres.json" --name postgres --rc "$rc" --stdout "$RAW/postgres.json" \
    --stderr "$RAW/postgres.err" --cmd "$RAW/postgres.cmd" \
    --pg-version "$(pg_sql 'SHOW server_version' || true)" \
    --pg-settings "$(pg_sql "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings
                              WHERE name IN ('synchronous_commit', 'fsync', 'shared_buffers', 'max_wal_size',
                                             'wal_level', 'full_page_writes')" || true)"
  pg_stop
  rm -rf -- "$dir" "$SCRATCH/pg"
  sync
}

# ------------------------------------------------------------ 3. latency

# proc_ticks PID: utime+stime of a process, in clock ticks.
proc_ticks() {
  if [ -r "/proc/$1/stat" ]; then sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; else echo 0; fi
}

# q17_spec OUT: nexmark.payi's events, the PlaceBid command and q17 only.
q17_spec() {
  "$PYTHON" - "$SPEC" "$1" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
body = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("--"))
keep = [s.strip() for s in body.split(";")
        if re.match(r"\s*CREATE\s+(EVENT|COMMAND)\b", s) or re.match(r"\s*CREATE\s+VIEW\s+q17\b", s)]
open(sys.argv[2], "w").write("-- generated by bench/views.sh from nexmark.payi: events, PlaceBid, q17\n"
                             + ";\n\n".join(keep) + ";\n")
EOF
}

run_latency_one() {
  local name=$1 spec=$2 views=$3 rc=0 _ url=
  local errlog=$RAW/$name.server.err
  "$BIN/payi" serve --spec "$spec" --data "$SCRATCH/$name" --listen 127.0.0.1:0 2>"$errlog" &
  SERVER_PID=$!
  for _ in $(seq 1 150); do
    url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$errlog" | head -n 1)
    if [ -n "$url" ]; then break; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if [ -z "$url" ]; then
    log "payi serve did not start: $(tail -n 3 "$errlog" | tr '\n' ' ')"
    report error --out "$PIECES/$name.json" --name "$name" --reason "payi serve did not start: $(tail -n 1 "$errlog")"
    server_stop
    return 0
  fi
  local cmd=("$BIN/payi" bench views-latency --url "$url" --rate "$BENCH_LATENCY_RATE"
             --seconds "$BENCH_LATENCY_SECONDS" --views "$views" --json)
  printf '%q ' "${cmd[@]}" | sed "s|$url|URL|g" >"$RAW/$name.cmd"
  log "3/3 latency ($name): $BENCH_LATENCY_RATE commands/s for ${BENCH_LATENCY_SECONDS}s, changes of $views"
  local t0 t1
  t0=$(proc_ticks "$SERVER_PID")
  timeout --kill-after=10 $((BENCH_LATENCY_SECONDS + 60)) "${cmd[@]}" \
    >"$RAW/$name.json" 2>"$RAW/$name.err" || rc=$?
  t1=$(proc_ticks "$SERVER_PID")
  curl -s --max-time 5 "$url/metrics" >"$RAW/$name.metrics.txt" 2>/dev/null || true
  server_stop
  report payi --out "$PIECES/$name.json" --name "$name" --rc "$rc" --stdout "$RAW/$name.json" \
    --stderr "$RAW/$name.err" --cmd "$RAW/$name.cmd" --server-ticks "$((t1 - t0))" \
    --metrics "$RAW/$name.metrics.txt" --spec-file "$spec"
  rm -rf -- "${SCRATCH:?}/$name"
  sync
}

run_latency() {
  q17_spec "$SCRATCH/q17.payi"
  run_latency_one latency_all "$SPEC" q0,q17
  run_latency_one latency_q17 "$SCRATCH/q17.payi" q17
}

# ------------------------------------------------------------ main

main() {
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  make_scratch_dir views
  check_free_space
  report machine --out "$PIECES/machine.json" --scratch "$SCRATCH" --repo "$REPO" --payi-bin "$PAYI_BIN"
  if [ ! -x "$PAYI_BIN" ]; then
    log "============================================================"
    log "payi is MISSING: $PAYI_BIN does not exist (build it with 'make'); nothing to measure."
    log "============================================================"
    report error --out "$PIECES/sqlite.json" --name sqlite --reason "$PAYI_BIN does not exist"
  else
    # Measure a copy: a rebuild of build/payi by someone else mid-run changes nothing here.
    cp "$PAYI_BIN" "$BIN/payi"
    run_sqlite
    run_postgres
    run_latency
  fi
  report busy --out "$PIECES/busy_end.json"
  mkdir -p "$RESULTS"
  local rc=0 flags=()
  if [ "$BENCH_REQUIRE_PAYI" = 1 ]; then flags+=(--require-payi); fi
  report combine --pieces "$PIECES" --json "$RESULTS/views.json" --md "$RESULTS/views.md" \
    --events "$BENCH_EVENTS" --peer-seconds "$BENCH_PEER_SECONDS" --latency-rate "$BENCH_LATENCY_RATE" \
    --latency-seconds "$BENCH_LATENCY_SECONDS" "${flags[@]}" || rc=$?
  echo
  cat "$RESULTS/views.md"
  log "wrote $RESULTS/views.json and $RESULTS/views.md (exit $rc)"
  return "$rc"
}

main "$@"
