#!/usr/bin/env bash
# Append benchmark: payi's own `payi bench append`, and in the same run the
# disk (dd) and two peers (PostgreSQL 15, Redis 7) doing the same job —
# durable appends of 100-byte events — then bench/lib/report.py writes
# bench/results/append.json and bench/results/append.md.
#
# Usage: bench/append.sh            (bench/run.sh calls it; see bench/README.md)
# Environment (all optional):
#   BENCH_SECONDS=10       length of each peer run (pgbench -T; Redis -n sized to it)
#   BENCH_DD_RUNS=3        dd repetitions; the median is the disk figure
#   BENCH_MIN_FREE_GB=4    refuse to start with less free space than this
#   BENCH_REQUIRE_PAYI=1   exit 1 when payi's part is missing (default: peers only, exit 0)
#   PAYI_BIN=build/payi    the payi binary to measure
#   PAYI_TIMEOUT=300       hard limit on `payi bench append`, seconds
#
# Every step is bounded (pgbench -T, redis-benchmark -n, timeout around each
# command); servers listen on 127.0.0.1 only; all data lives in one scratch
# directory on the repository's filesystem, removed on exit even on failure.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/peers.sh
source "$REPO/bench/lib/peers.sh"
# shellcheck source=bench/lib/common.sh
source "$REPO/bench/lib/common.sh"

BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_DD_RUNS=${BENCH_DD_RUNS:-3}
BENCH_MIN_FREE_GB=${BENCH_MIN_FREE_GB:-4}
BENCH_REQUIRE_PAYI=${BENCH_REQUIRE_PAYI:-0}
PAYI_BIN=${PAYI_BIN:-$REPO/build/payi}
PAYI_TIMEOUT=${PAYI_TIMEOUT:-300}

PYTHON=/usr/bin/python3
REPORT=$REPO/bench/lib/report.py
RESULTS=$REPO/bench/results
NPROC=$(nproc)
PAYLOAD_BYTES=100          # every engine appends 100-byte event bodies
PG_BATCH_ROWS=100          # rows per multi-row INSERT in the batched workload
REDIS_PIPELINE=100         # -P for the pipelined workload (Redis's batching)
REDIS_MAX_REQUESTS=20000000  # upper bound on -n whatever the calibration says

SCRATCH=
RAW=
PIECES=

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
report() { "$PYTHON" "$REPORT" "$@"; }

# ------------------------------------------------------------ scratch & cleanup

# cleanup: runs on every exit.  Stops the servers we started (by data
# directory / pid, never by name) and removes the scratch directory.
cleanup() {
  local rc=$?
  set +e
  pg_stop
  redis_stop
  if [ -n "$SCRATCH" ] && [ -d "$SCRATCH" ]; then rm -rf -- "$SCRATCH"; fi
  if [ "$rc" -ne 0 ]; then
    log "exit $rc; servers stopped, scratch directory removed"
  fi
  exit "$rc"
}

# ------------------------------------------------------------ payloads


# redis_payload: $PAYLOAD_BYTES bytes with no quote or comma, because
# redis-benchmark puts the command line, unescaped, into its CSV output.
redis_payload() {
  printf '%*s' "$PAYLOAD_BYTES" '' | tr ' ' v
}

# ------------------------------------------------------------ 1. disk

run_disk() {
  local i rc outputs=()
  for i in $(seq 1 "$BENCH_DD_RUNS"); do
    sync
    rc=0
    LC_ALL=C timeout 120 dd if=/dev/zero of="$SCRATCH/dd" bs=1M count=1024 conv=fdatasync \
      2>"$RAW/dd.$i.txt" || rc=$?
    rm -f "$SCRATCH/dd"
    if [ "$rc" -ne 0 ]; then
      log "dd run $i failed (exit $rc): $(tail -n 1 "$RAW/dd.$i.txt")"
    else
      log "dd run $i: $(tail -n 1 "$RAW/dd.$i.txt")"
    fi
    outputs+=("$RAW/dd.$i.txt")
  done
  sync
  report dd --out "$PIECES/disk.json" "${outputs[@]}"
}

# ------------------------------------------------------------ 2. PostgreSQL

# Each pgbench client appends to its own stream 'c<client_id>' with versions
# 1, 2, 3, … kept in the client's own pgbench variable :v (pgbench variables
# are per client and survive from one transaction to the next; -D v=0 starts
# every client at 0).  So versions are gapless and (stream, version) never
# collides, and the check after each run proves it.
write_pg_scripts() {
  {
    echo '\set v :v + 1'
    echo "INSERT INTO events(stream, version, type, data)"
    echo "  VALUES ('c' || :client_id, :v, 'bench', '$(json_payload 1)');"
  } >"$RAW/pg_single.sql"
  # One multi-row INSERT of $PG_BATCH_ROWS rows: versions base+1 … base+100.
  {
    echo '\set base :v'
    echo "\\set v :v + $PG_BATCH_ROWS"
    echo "INSERT INTO events(stream, version, type, data) VALUES"
    local i sep
    for i in $(seq 1 "$PG_BATCH_ROWS"); do
      sep=,
      if [ "$i" -eq "$PG_BATCH_ROWS" ]; then sep=';'; fi
      echo "  ('c' || :client_id, :base::bigint + $i, 'bench', '$(json_payload "$i")')$sep"
    done
  } >"$RAW/pg_batched.sql"
}

# One row per client stream: 'streams|rows|every stream is exactly 1..n'.
PG_VERIFY_SQL="SELECT count(*), coalesce(sum(n), 0), coalesce(bool_and(minv = 1 AND maxv = n), false)
  FROM (SELECT stream, count(*) AS n, min(version) AS minv, max(version) AS maxv
        FROM events GROUP BY stream) s"

# run_pg_workload NAME KIND CLIENTS: one pgbench run on an empty table.
run_pg_workload() {
  local name=$1 kind=$2 clients=$3
  local rows=1 script=$RAW/pg_single.sql
  if [ "$kind" = batched ]; then rows=$PG_BATCH_ROWS; script=$RAW/pg_batched.sql; fi
  local threads=$((clients < NPROC ? clients : NPROC))
  log "PostgreSQL $name: $kind, $clients client(s), ${BENCH_SECONDS}s"

  # Every run starts from an empty table and a fresh checkpoint, so a run
  # neither inherits a bigger index nor pays for the previous run's dirty pages.
  if ! pg_sql "TRUNCATE events RESTART IDENTITY" >/dev/null || ! pg_sql "CHECKPOINT" >/dev/null; then
    report error --out "$PIECES/pg.$name.json" --engine postgresql --name "$name" \
      --reason "could not truncate/checkpoint before the run"
    return 0
  fi
  local lsn0 rc=0 wal verify
  lsn0=$(pg_sql "SELECT pg_current_wal_lsn()") || lsn0=
  timeout --kill-after=10 $((BENCH_SECONDS + 60)) \
    pgbench -n -h 127.0.0.1 -p "$PG_PORT" -U postgres -M prepared -f "$script" -D v=0 \
    -c "$clients" -j "$threads" -T "$BENCH_SECONDS" \
    --log --log-prefix="$RAW/$name.txlog" postgres >"$RAW/$name.out" 2>&1 || rc=$?
  wal=$(pg_sql "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0')::bigint") || wal=
  verify=$(pg_sql "$PG_VERIFY_SQL") || verify=
  report pgbench --out "$PIECES/pg.$name.json" --name "$name" --kind "$kind" \
    --clients "$clients" --threads "$threads" --rows "$rows" --seconds "$BENCH_SECONDS" \
    --rc "$rc" --stdout "$RAW/$name.out" --log-prefix "$RAW/$name.txlog" \
    ${verify:+--verify "$verify"} ${wal:+--wal-bytes "$wal"}
  rm -f "$RAW/$name".txlog.*
  log "PostgreSQL $name: $(grep -E '^tps' "$RAW/$name.out" || echo 'no tps line'); $(grep -E '^number of failed' "$RAW/$name.out" || true)"
}

run_postgres() {
  local port
  port=$(free_port)
  log "PostgreSQL: initdb + start on 127.0.0.1:$port"
  if ! pg_start "$SCRATCH/pg" "$port" 2>"$RAW/pg_start.err"; then
    log "PostgreSQL did not start: $(tail -n 5 "$RAW/pg_start.err")"
    report error --out "$PIECES/pg.phase.json" --engine postgresql --name phase \
      --reason "PostgreSQL did not start: $(tail -n 1 "$RAW/pg_start.err")"
    pg_stop
    return 0
  fi
  if ! pg_sql "CREATE TABLE events(position bigserial PRIMARY KEY, stream text NOT NULL,
                 version bigint NOT NULL, type text NOT NULL, data jsonb NOT NULL,
                 UNIQUE (stream, version))" >/dev/null 2>"$RAW/pg_create.err"; then
    report error --out "$PIECES/pg.phase.json" --engine postgresql --name phase \
      --reason "CREATE TABLE failed: $(tail -n 1 "$RAW/pg_create.err")"
    pg_stop
    return 0
  fi
  write_pg_scripts
  run_pg_workload pg_batched_c1 batched 1
  run_pg_workload pg_batched_c8 batched 8
  run_pg_workload pg_single_c1 single 1
  run_pg_workload pg_single_c8 single 8
  run_pg_workload pg_single_c64 single 64
  pg_stop
  rm -rf -- "$SCRATCH/pg"
  sync
}

# ------------------------------------------------------------ 3. Redis

# redis_field NAME: one field of INFO persistence.
redis_field() {
  redis_cmd info persistence | tr -d '\r' | awk -F: -v k="$1" '$1 == k {print $2}'
}

# csv_rps FILE: the rps column of redis-benchmark --csv output.
csv_rps() {
  awk -F'","' 'NR == 2 {print $2}' "$1"
}

# run_redis_workload NAME KIND CLIENTS PIPELINE: XADD of a 100-byte field
# value to one stream, on a fresh server with an empty AOF — so every run
# starts empty like the PostgreSQL runs, and the AOF of the pipelined runs
# (GBs) does not pile up on the disk.  redis-benchmark has no time limit, only
# a request count, so a short calibration run measures the rate and -n is set
# to last about $BENCH_SECONDS (bounded by REDIS_MAX_REQUESTS and a timeout).
run_redis_workload() {
  local name=$1 kind=$2 clients=$3 pipeline=$4
  local port dir=$SCRATCH/redis.$name
  port=$(free_port)
  if ! redis_start "$dir" "$port" 2>"$RAW/$name.start.err"; then
    report error --out "$PIECES/redis.$name.json" --engine redis --name "$name" \
      --reason "redis-server did not start: $(tail -n 1 "$RAW/$name.start.err")"
    redis_stop
    return 0
  fi
  measure_redis_workload "$name" "$kind" "$clients" "$pipeline"
  redis_stop
  rm -rf -- "$dir"
  sync
}

measure_redis_workload() {
  local name=$1 kind=$2 clients=$3 pipeline=$4
  local value chunk cal_n n cal_rps rc=0 aof0 aof1 xlen aof_enabled
  aof_enabled=$(redis_field aof_enabled) || aof_enabled=
  if [ "$aof_enabled" != 1 ]; then
    report error --out "$PIECES/redis.$name.json" --engine redis --name "$name" \
      --reason "INFO persistence says the AOF is off (aof_enabled:$aof_enabled)"
    return 0
  fi
  value=$(redis_payload)
  chunk=$((clients * pipeline))
  local bench=(redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c "$clients" -P "$pipeline" --csv)
  local cmd=(XADD bench '*' data "$value")

  cal_n=$((chunk * 200 > 2000 ? chunk * 200 : 2000))
  timeout --kill-after=5 60 "${bench[@]}" -n "$cal_n" "${cmd[@]}" >"$RAW/$name.cal.csv" 2>&1 || true
  cal_rps=$(csv_rps "$RAW/$name.cal.csv")
  if [ -z "$cal_rps" ]; then
    report error --out "$PIECES/redis.$name.json" --engine redis --name "$name" \
      --reason "calibration run failed: $(head -c 300 "$RAW/$name.cal.csv")"
    return 0
  fi
  # n = rate × seconds, a whole number of pipelines per client, within bounds.
  n=$("$PYTHON" -c "import sys
r, s, c, lo, hi = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
n = min(max(int(r * s), lo), hi)
print(max(c, n // c * c))" "$cal_rps" "$BENCH_SECONDS" "$chunk" "$cal_n" "$REDIS_MAX_REQUESTS")
  log "Redis $name: -c $clients -P $pipeline, calibrated at ${cal_rps}/s -> -n $n"

  redis_cmd flushall >/dev/null
  aof0=$(redis_field aof_current_size)
  timeout --kill-after=10 $((BENCH_SECONDS * 3 + 30)) \
    "${bench[@]}" -n "$n" "${cmd[@]}" >"$RAW/$name.csv" 2>&1 || rc=$?
  xlen=$(redis_cmd xlen bench) || xlen=
  aof1=$(redis_field aof_current_size) || aof1=
  local aof_bytes=
  if [ -n "$aof0" ] && [ -n "$aof1" ]; then aof_bytes=$((aof1 - aof0)); fi
  report redis --out "$PIECES/redis.$name.json" --name "$name" --kind "$kind" \
    --clients "$clients" --pipeline "$pipeline" --requests "$n" --rc "$rc" \
    --csv "$RAW/$name.csv" --calibration-rps "$cal_rps" \
    --aof-enabled "$aof_enabled" \
    --appendfsync "$(redis_cmd config get appendfsync | tail -n 1)" \
    ${xlen:+--xlen "$xlen"} ${aof_bytes:+--aof-bytes "$aof_bytes"}
  log "Redis $name: $(csv_rps "$RAW/$name.csv" || true) requests/s, XLEN $xlen of $n"
}

run_redis() {
  log "Redis: one fresh server per run on 127.0.0.1 (appendonly yes, appendfsync always)"
  run_redis_workload redis_pipelined_c1 pipelined 1 "$REDIS_PIPELINE"
  run_redis_workload redis_pipelined_c8 pipelined 8 "$REDIS_PIPELINE"
  run_redis_workload redis_single_c1 single 1 1
  run_redis_workload redis_single_c8 single 8 1
  run_redis_workload redis_single_c64 single 64 1
}

# ------------------------------------------------------------ 4. payi

run_payi() {
  if [ ! -x "$PAYI_BIN" ]; then
    log "============================================================"
    log "payi's part is MISSING: $PAYI_BIN does not exist (build it with 'make')."
    log "Measuring the disk and the peers only; no payi numbers, no target verdicts."
    log "============================================================"
    report payi --out "$PIECES/payi.json" --bin "$PAYI_BIN" \
      --missing "$PAYI_BIN does not exist"
    return 0
  fi
  log "payi: $PAYI_BIN bench append --data $SCRATCH/payi --json (limit ${PAYI_TIMEOUT}s)"
  mkdir -p "$SCRATCH/payi"
  local rc=0
  timeout --kill-after=10 "$PAYI_TIMEOUT" \
    "$PAYI_BIN" bench append --data "$SCRATCH/payi" --json \
    >"$RAW/payi.out" 2>"$RAW/payi.err" || rc=$?
  if [ "$rc" -eq 124 ]; then log "payi: killed after ${PAYI_TIMEOUT}s"; fi
  report payi --out "$PIECES/payi.json" --bin "$PAYI_BIN" --rc "$rc" \
    --stdout "$RAW/payi.out" --stderr "$RAW/payi.err"
  rm -rf -- "$SCRATCH/payi"
  sync
}

# ------------------------------------------------------------ main

main() {
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  make_scratch_dir append
  check_free_space
  report machine --out "$PIECES/machine.json" --scratch "$SCRATCH" --repo "$REPO" \
    --payi-bin "$PAYI_BIN"

  # Order: payi right after dd, so the figure payi's bytes/s is compared
  # with is measured as close in time as possible (this disk's speed drifts).
  # Each phase stops its server, deletes its data and syncs before the next,
  # so no phase's writeback lands in another's measurement.
  log "1/4 disk: dd 1 GiB with fdatasync, $BENCH_DD_RUNS run(s)"
  run_disk
  log "2/4 payi"
  run_payi
  log "3/4 PostgreSQL"
  run_postgres
  log "4/4 Redis"
  run_redis
  # A second look at how busy the machine is: other work that started
  # mid-run would not show in the sample taken at the start.
  report busy --out "$PIECES/busy_end.json"

  mkdir -p "$RESULTS"
  local rc=0 combine_flags=()
  if [ "$BENCH_REQUIRE_PAYI" = 1 ]; then combine_flags+=(--require-payi); fi
  report combine --pieces "$PIECES" --json "$RESULTS/append.json" --md "$RESULTS/append.md" \
    "${combine_flags[@]}" || rc=$?
  echo
  cat "$RESULTS/append.md"
  log "wrote $RESULTS/append.json and $RESULTS/append.md (exit $rc)"
  return "$rc"
}

main "$@"
