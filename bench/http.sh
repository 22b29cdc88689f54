#!/usr/bin/env bash
# HTTP benchmark: payi's HTTP API under wrk (durable appends, one event per
# request and NDJSON batches), and in the same run the ceiling of this
# machine's HTTP path (a bare libmicrohttpd server answering a constant
# reply), the JSON parser's parse-only rate on the same event lines, and
# PostgreSQL 15 doing the same append the usual way (a PL/pgSQL function
# under pgbench).  bench/lib/http_report.py writes bench/results/http.json
# and bench/results/http.md.
#
# The targets of the commands issue are for POST /commands/{Name}, which is
# not built yet: today payi is measured on POST /streams/{stream} (raw
# appends).  When the command route exists, fill in run_payi_commands below
# (one call to payi_workload); the report already uses a "payi_command"
# result for the targets when there is one.
#
# Usage: bench/http.sh            (bench/run.sh calls it; see bench/README.md)
# Environment (all optional):
#   BENCH_SECONDS=10          length of each wrk run (-d) and of the pgbench run (-T)
#   BENCH_CONNECTIONS=64      wrk -c and pgbench -c
#   BENCH_THREADS=2           wrk -t and pgbench -j
#   BENCH_STREAMS=1000        streams the requests are spread over (chosen at random per request)
#   BENCH_NDJSON_LINES=100    events per NDJSON request
#   BENCH_JSON_SECONDS=3      length of the parse-only run
#   BENCH_MIN_FREE_GB=4       refuse to start with less free space than this
#   BENCH_REQUIRE_PAYI=1      exit 1 when payi's part is missing (default: the rest only, exit 0)
#   PAYI_BIN=build/payi       the payi binary to measure
#
# Every step is bounded (wrk -d, pgbench -T, timeout around each command,
# bounded waits for servers); servers listen on 127.0.0.1 only, on ports the
# kernel picks; all data lives in one scratch directory on the repository's
# filesystem, removed on exit even on failure.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/peers.sh
source "$REPO/bench/lib/peers.sh"
# shellcheck source=bench/lib/common.sh
source "$REPO/bench/lib/common.sh"

BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-64}
BENCH_THREADS=${BENCH_THREADS:-2}
BENCH_STREAMS=${BENCH_STREAMS:-1000}
BENCH_NDJSON_LINES=${BENCH_NDJSON_LINES:-100}
BENCH_JSON_SECONDS=${BENCH_JSON_SECONDS:-3}
BENCH_MIN_FREE_GB=${BENCH_MIN_FREE_GB:-4}
BENCH_REQUIRE_PAYI=${BENCH_REQUIRE_PAYI:-0}
PAYI_BIN=${PAYI_BIN:-$REPO/build/payi}

PYTHON=/usr/bin/python3
REPORT=$REPO/bench/lib/http_report.py
WRK_LUA=$REPO/bench/wrk/post.lua
RESULTS=$REPO/bench/results
PAYLOAD_BYTES=100          # the event's data object, as in the append bench
WRK_TIMEOUT=$((BENCH_SECONDS + 30))

SCRATCH=
RAW=
PIECES=
BIN=
SERVER_PID=                # the payi or bare server running now, if any

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
report() { "$PYTHON" "$REPORT" "$@"; }

# ------------------------------------------------------------ scratch & cleanup

# make_scratch_dir: one directory for all data (see scratch_base).
make_scratch_dir() {
  local base
  base=$(scratch_base)
  SCRATCH=$(mktemp -d --suffix=.tmp "$base/payi-bench-http.XXXXXX")
  chmod 711 "$SCRATCH"      # the postgres user must reach $SCRATCH/pg
  RAW=$SCRATCH/raw
  PIECES=$SCRATCH/pieces
  BIN=$SCRATCH/bin
  mkdir -p "$RAW" "$PIECES" "$BIN"
  log "scratch directory $SCRATCH ($(df -P "$SCRATCH" | awk 'NR==2 {print $1}'))"
}

# server_stop: SIGTERM the server server_start started (by pid), wait up to
# 15 s for it to exit, then SIGKILL that pid.  Safe to call twice.
server_stop() {
  [ -n "$SERVER_PID" ] || return 0
  local pid=$SERVER_PID _
  SERVER_PID=
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  log "server pid $pid did not stop within 15 s; SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
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

# ------------------------------------------------------------ payloads


# The event lines every workload uses: line i is
# {"type":"bench","data":<json_payload i>}.  The single-event request body is
# line 1; the NDJSON body is lines 1..BENCH_NDJSON_LINES; the parse-only rate
# is measured on that same NDJSON body; PostgreSQL stores line 1's data.
write_bodies() {
  local i
  printf '{"type":"bench","data":%s}' "$(json_payload 1)" >"$RAW/event.json"
  for i in $(seq 1 "$BENCH_NDJSON_LINES"); do
    printf '{"type":"bench","data":%s}\n' "$(json_payload "$i")"
  done >"$RAW/events.ndjson"
}

# ------------------------------------------------------------ CPU accounting

# cpu_sample PID: "server_ticks total_ticks idle_ticks" — the process's
# utime+stime (all its threads) and the machine's /proc/stat totals, in clock
# ticks, so the report can say how much CPU the server used per request and
# how busy the machine was (wrk takes the rest).
cpu_sample() {
  local pid=$1 st=0
  if [ -r "/proc/$pid/stat" ]; then
    # Fields after the ")" of the command name: utime is the 12th, stime the 13th.
    st=$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')
  fi
  awk -v s="$st" 'NR==1 {t=0; for (i=2; i<=9; i++) t+=$i; print s, t, $5 + $6; exit}' /proc/stat
}

# ------------------------------------------------------------ servers

# server_start NAME LOG CMD...: start an HTTP server in the background that
# prints "...listening on http://HOST:PORT" on stderr once ready; waits up to
# 15 s for that line and sets SERVER_PID and SERVER_URL.
SERVER_URL=
server_start() {
  local name=$1 errlog=$2 _
  shift 2
  "$@" 2>"$errlog" &
  SERVER_PID=$!
  SERVER_URL=
  for _ in $(seq 1 150); do
    SERVER_URL=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$errlog" | head -n 1)
    if [ -n "$SERVER_URL" ]; then return 0; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  log "$name did not start: $(tail -n 3 "$errlog" | tr '\n' ' ')"
  server_stop
  return 1
}

# run_wrk NAME ENGINE PATH BODY CTYPE EVENTS NDJSON [EXTRA REPORT ARGS...]:
# one wrk run against $SERVER_URL with bench/wrk/post.lua, then (for payi)
# the health/metrics check, then one report piece.
run_wrk() {
  local name=$1 engine=$2 path=$3 body=$4 ctype=$5 events=$6 ndjson=$7
  shift 7
  local rc=0 cpu0 cpu1
  log "$name: wrk -t$BENCH_THREADS -c$BENCH_CONNECTIONS -d${BENCH_SECONDS}s --latency, POST $path ($ctype, $events event(s)/request, $BENCH_STREAMS keys)"
  cpu0=$(cpu_sample "$SERVER_PID")
  BENCH_PATH=$path BENCH_BODY=$body BENCH_CONTENT_TYPE=$ctype BENCH_EVENTS=$events \
    BENCH_NDJSON=$ndjson BENCH_KEYS=$BENCH_STREAMS \
    timeout --kill-after=5 "$WRK_TIMEOUT" \
    wrk -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d"${BENCH_SECONDS}s" --latency \
    -s "$WRK_LUA" "$SERVER_URL" >"$RAW/$name.wrk.txt" 2>&1 || rc=$?
  cpu1=$(cpu_sample "$SERVER_PID")
  log "$name: $(grep -E '^Requests/sec' "$RAW/$name.wrk.txt" || echo 'no Requests/sec line') (wrk exit $rc)"
  report wrk --out "$PIECES/$name.json" --engine "$engine" --name "$name" \
    --path "$path" --content-type "$ctype" --events-per-request "$events" \
    --connections "$BENCH_CONNECTIONS" --threads "$BENCH_THREADS" --seconds "$BENCH_SECONDS" \
    --keys "$BENCH_STREAMS" --rc "$rc" --stdout "$RAW/$name.wrk.txt" \
    --cpu-before "$cpu0" --cpu-after "$cpu1" --clk-tck "$(getconf CLK_TCK)" "$@"
}

# ------------------------------------------------------------ 1. bare libmicrohttpd

run_bare() {
  log "bare libmicrohttpd: cc -O2 bench/bare/bare_mhd.c"
  if ! cc -std=c11 -O2 -Wall -o "$BIN/bare_mhd" "$REPO/bench/bare/bare_mhd.c" \
       $(pkg-config --cflags --libs libmicrohttpd) 2>"$RAW/bare_cc.err"; then
    report error --out "$PIECES/bare_single.json" --engine bare --name bare_single \
      --reason "bare_mhd.c did not compile: $(head -c 300 "$RAW/bare_cc.err")"
    return 0
  fi
  if ! server_start bare "$RAW/bare.err" "$BIN/bare_mhd" 127.0.0.1 0; then
    report error --out "$PIECES/bare_single.json" --engine bare --name bare_single \
      --reason "bare_mhd did not start: $(tail -n 1 "$RAW/bare.err")"
    return 0
  fi
  # Same wrk script, paths and body as payi's single-event workload.
  run_wrk bare_single bare "/streams/s-{n}" "$RAW/event.json" application/json 1 0
  server_stop
}

# ------------------------------------------------------------ 2. payi

# payi_health: GET /health's head, or nothing.
payi_head() {
  curl -s --max-time 5 "$SERVER_URL/health" |
    "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["head"])' 2>/dev/null || true
}

# payi_workload NAME PATH BODY CTYPE EVENTS NDJSON: a fresh payi server
# (empty data directory, default fsync durability), one wrk run, then the
# acknowledgement check: once the server is quiet, GET /health's head must lie
# between the events wrk saw acknowledged (2xx) and the events it sent —
# wrk stops at its deadline with up to -c requests in flight, which payi may
# append without wrk reading the answer.  /metrics is kept (fsyncs, batches).
payi_workload() {
  local name=$1 path=$2 body=$3 ctype=$4 events=$5 ndjson=$6
  local data=$SCRATCH/payi.$name
  if ! server_start payi "$RAW/$name.serve.err" \
       "$PAYI_BIN" serve --data "$data" --listen 127.0.0.1:0; then
    report error --out "$PIECES/$name.json" --engine payi --name "$name" \
      --reason "payi serve did not start: $(tail -n 1 "$RAW/$name.serve.err")"
    return 0
  fi
  # The run, then wait (at most 5 s) for in-flight appends to finish: the
  # head is read until it stays the same for 0.5 s.
  run_wrk "$name" payi "$path" "$body" "$ctype" "$events" "$ndjson"
  local head prev= _
  for _ in $(seq 1 50); do
    head=$(payi_head)
    if [ -n "$head" ] && [ "$head" = "$prev" ]; then break; fi
    prev=$head
    sleep 0.1
  done
  curl -s --max-time 5 "$SERVER_URL/metrics" >"$RAW/$name.metrics.txt" || true
  server_stop
  report payi-check --piece "$PIECES/$name.json" --head "${head:-}" \
    --metrics "$RAW/$name.metrics.txt" --serve-log "$RAW/$name.serve.err"
  log "$name: GET /health head ${head:-?}"
  rm -rf -- "$data"
  sync
}

run_payi_streams() {
  payi_workload payi_single "/streams/s-{n}" "$RAW/event.json" application/json 1 0
  payi_workload payi_ndjson "/streams/s-{n}" "$RAW/events.ndjson" application/x-ndjson \
    "$BENCH_NDJSON_LINES" 1
}

# run_payi_commands: POST /commands/{Name}, one command per request — the
# workload the issue's targets are about.  The route is not built yet, so
# this records that it was skipped.  When it exists, this function becomes
# (with a command body template in $RAW, "{n}" standing for the key):
#   payi_workload payi_command "/commands/ReportCases" "$RAW/command.json" application/json 1 0
# (plus whatever `payi serve` then needs to load the spec).  http_report.py
# uses payi_command for the targets whenever that piece is there.
run_payi_commands() {
  report error --out "$PIECES/payi_command.json" --engine payi --name payi_command \
    --reason "POST /commands/{Name} is not built yet" --skipped
}

run_payi() {
  if [ ! -x "$PAYI_BIN" ]; then
    log "============================================================"
    log "payi's part is MISSING: $PAYI_BIN does not exist (build it with 'make')."
    log "============================================================"
    report error --out "$PIECES/payi_single.json" --engine payi --name payi_single \
      --reason "$PAYI_BIN does not exist" --missing
    report error --out "$PIECES/payi_ndjson.json" --engine payi --name payi_ndjson \
      --reason "$PAYI_BIN does not exist" --missing
    return 0
  fi
  run_payi_streams
  run_payi_commands
}

# ------------------------------------------------------------ 3. JSON parse-only

run_json_rate() {
  log "JSON parse-only: cc -O2 bench/bare/json_rate.c src/base/{json,buf,mem}.c, ${BENCH_JSON_SECONDS}s"
  local rc=0
  if ! cc -std=c11 -D_GNU_SOURCE -O2 -pthread -I"$REPO/src" -o "$BIN/json_rate" \
       "$REPO/bench/bare/json_rate.c" "$REPO/src/base/json.c" "$REPO/src/base/buf.c" \
       "$REPO/src/base/mem.c" -lm 2>"$RAW/json_rate_cc.err"; then
    report error --out "$PIECES/json_rate.json" --engine json --name json_rate \
      --reason "json_rate.c did not compile: $(head -c 300 "$RAW/json_rate_cc.err")"
    return 0
  fi
  timeout --kill-after=5 $((BENCH_JSON_SECONDS + 30)) \
    "$BIN/json_rate" "$RAW/events.ndjson" "$BENCH_JSON_SECONDS" \
    >"$RAW/json_rate.out" 2>"$RAW/json_rate.err" || rc=$?
  report jsonrate --out "$PIECES/json_rate.json" --rc "$rc" \
    --stdout "$RAW/json_rate.out" --stderr "$RAW/json_rate.err"
  log "JSON parse-only: $(cat "$RAW/json_rate.out" 2>/dev/null || true)"
}

# ------------------------------------------------------------ 4. PostgreSQL

# The append done the usual way: a PL/pgSQL function that reads the stream's
# last version and inserts the next one, unique(stream, version) guarding it.
# Two appends to one stream at the same moment would read the same last
# version and one would hit the unique constraint (pgbench 15 does not retry
# that: the client aborts).  So the function first takes a transaction-level
# advisory lock on the stream's 64-bit name hash: appends to one stream queue
# behind each other (a hash collision only makes two streams queue together),
# every append succeeds, and versions are gapless from 0 like payi's.  The
# lock is released at commit, after the row is visible, so the next append
# reads it.
PG_SCHEMA_SQL=$(cat <<'SQL'
CREATE TABLE events(position bigserial PRIMARY KEY, stream text NOT NULL, version bigint NOT NULL,
                    type text NOT NULL, data jsonb NOT NULL, UNIQUE (stream, version));
CREATE FUNCTION append_event(stream text, type text, data jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  last_version bigint;
  new_version bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended(append_event.stream, 0));
  SELECT e.version INTO last_version FROM events e WHERE e.stream = append_event.stream
   ORDER BY e.version DESC LIMIT 1;
  new_version := coalesce(last_version + 1, 0);
  INSERT INTO events(stream, version, type, data)
  VALUES (append_event.stream, new_version, append_event.type, append_event.data);
  RETURN new_version;
END $$;
SQL
)

# 'streams|rows|every stream holds exactly versions 0..n-1'
PG_VERIFY_SQL="SELECT count(*), coalesce(sum(n), 0), coalesce(bool_and(minv = 0 AND maxv = n - 1), false)
  FROM (SELECT stream, count(*) AS n, min(version) AS minv, max(version) AS maxv
        FROM events GROUP BY stream) s"

run_postgres() {
  local port name=pg_append
  port=$(free_port)
  log "PostgreSQL: initdb + start on 127.0.0.1:$port"
  if ! pg_start "$SCRATCH/pg" "$port" 2>"$RAW/pg_start.err"; then
    log "PostgreSQL did not start: $(tail -n 5 "$RAW/pg_start.err")"
    report error --out "$PIECES/$name.json" --engine postgresql --name "$name" \
      --reason "PostgreSQL did not start: $(tail -n 1 "$RAW/pg_start.err")"
    pg_stop
    return 0
  fi
  if ! pg_sql "$PG_SCHEMA_SQL" >/dev/null 2>"$RAW/pg_create.err"; then
    report error --out "$PIECES/$name.json" --engine postgresql --name "$name" \
      --reason "schema failed: $(grep -m 1 ERROR "$RAW/pg_create.err" || tail -n 1 "$RAW/pg_create.err")"
    pg_stop
    return 0
  fi
  {
    echo "\\set s random(0, $((BENCH_STREAMS - 1)))"
    echo "SELECT append_event('s-' || :s, 'bench', '$(json_payload 1)');"
  } >"$RAW/pg_append.sql"
  pg_sql "CHECKPOINT" >/dev/null || true
  log "PostgreSQL $name: pgbench -c $BENCH_CONNECTIONS -j $BENCH_THREADS -T $BENCH_SECONDS, SELECT append_event(...) over $BENCH_STREAMS streams"
  local rc=0 verify settings
  timeout --kill-after=10 $((BENCH_SECONDS + 60)) \
    pgbench -n -h 127.0.0.1 -p "$PG_PORT" -U postgres -M prepared -f "$RAW/pg_append.sql" \
    -c "$BENCH_CONNECTIONS" -j "$BENCH_THREADS" -T "$BENCH_SECONDS" \
    --log --log-prefix="$RAW/$name.txlog" postgres >"$RAW/$name.out" 2>&1 || rc=$?
  verify=$(pg_sql "$PG_VERIFY_SQL") || verify=
  settings=$(pg_sql "SELECT string_agg(name || '=' || setting, ',' ORDER BY name) FROM pg_settings
                     WHERE name IN ('synchronous_commit', 'fsync', 'shared_buffers', 'transaction_isolation')") || settings=
  report pgbench --out "$PIECES/$name.json" --name "$name" --clients "$BENCH_CONNECTIONS" \
    --threads "$BENCH_THREADS" --seconds "$BENCH_SECONDS" --streams "$BENCH_STREAMS" \
    --rc "$rc" --stdout "$RAW/$name.out" --log-prefix "$RAW/$name.txlog" \
    --script "$RAW/pg_append.sql" ${verify:+--verify "$verify"} ${settings:+--settings "$settings"}
  rm -f "$RAW/$name".txlog.*
  log "PostgreSQL $name: $(grep -E '^tps' "$RAW/$name.out" || echo 'no tps line'); $(grep -E '^number of failed' "$RAW/$name.out" || true)"
  pg_stop
  rm -rf -- "$SCRATCH/pg"
  sync
}

# ------------------------------------------------------------ main

main() {
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local tool
  for tool in wrk pgbench cc pkg-config curl; do
    if ! command -v "$tool" >/dev/null; then
      log "$tool is missing (scripts/deps.sh bench installs wrk, postgresql, libmicrohttpd-dev)"
      exit 1
    fi
  done
  make_scratch_dir
  check_free_space
  write_bodies
  report machine --out "$PIECES/machine.json" --scratch "$SCRATCH" --repo "$REPO" \
    --payi-bin "$PAYI_BIN"

  # Order: the bare ceiling first, then payi, then the CPU-only parse rate,
  # then PostgreSQL.  Each phase stops its server and deletes its data (and
  # syncs) before the next starts.
  log "1/4 bare libmicrohttpd server (the HTTP ceiling)"
  run_bare
  log "2/4 payi serve"
  run_payi
  log "3/4 JSON parse-only rate"
  run_json_rate
  log "4/4 PostgreSQL"
  run_postgres
  report busy --out "$PIECES/busy_end.json"

  mkdir -p "$RESULTS"
  local rc=0 combine_flags=()
  if [ "$BENCH_REQUIRE_PAYI" = 1 ]; then combine_flags+=(--require-payi); fi
  report combine --pieces "$PIECES" --json "$RESULTS/http.json" --md "$RESULTS/http.md" \
    "${combine_flags[@]}" || rc=$?
  echo
  cat "$RESULTS/http.md"
  log "wrote $RESULTS/http.json and $RESULTS/http.md (exit $rc)"
  return "$rc"
}

main "$@"
