#!/usr/bin/env bash
# HTTP benchmark: payi's HTTP API under wrk — durable commands
# (POST /commands/Count of bench/specs/counter.payi, one command per request
# and NDJSON batches) and durable raw appends (POST /streams/{stream}, the
# same two shapes) — and in the same run the ceiling of this machine's HTTP
# path (a bare libmicrohttpd server answering a constant reply), the JSON
# parser's parse-only rate on the same command lines and event lines, and
# PostgreSQL 15 doing the same command and the same append the usual way
# (PL/pgSQL functions under pgbench).  bench/lib/http_report.py writes
# bench/results/http.json and bench/results/http.md.
#
# Usage: bench/http.sh [--json]   (bench/run.sh and `payi bench http` call it;
#                                  see bench/README.md).  At the end it prints
#                                  bench/results/http.md, or http.json with --json.
# Environment (all optional):
#   BENCH_SECONDS=10          length of each wrk run (-d) and of each pgbench run (-T)
#   BENCH_CONNECTIONS=64      wrk -c and pgbench -c
#   BENCH_THREADS=2           wrk -t and pgbench -j
#   BENCH_STREAMS=1000        keys (streams) the requests are spread over (chosen at random per request)
#   BENCH_NDJSON_LINES=100    commands (events) per NDJSON request
#   BENCH_JSON_SECONDS=3      length of each parse-only run
#   BENCH_RAW_APPENDS=1       0: skip the raw-append workloads (payi_single, payi_ndjson, pg_append)
#   BENCH_PERF=0              1: perf record -g the payi server during one workload; the report
#                             gets a symbol/thread/syscall breakdown
#   BENCH_PERF_WORKLOAD=payi_command   the workload profiled (any payi_* name)
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
BENCH_RAW_APPENDS=${BENCH_RAW_APPENDS:-1}
BENCH_PERF=${BENCH_PERF:-0}
BENCH_PERF_WORKLOAD=${BENCH_PERF_WORKLOAD:-payi_command}
BENCH_MIN_FREE_GB=${BENCH_MIN_FREE_GB:-4}
BENCH_REQUIRE_PAYI=${BENCH_REQUIRE_PAYI:-0}
PAYI_BIN=${PAYI_BIN:-$REPO/build/payi}
PAYI_RUN=$PAYI_BIN            # what runs: a copy of PAYI_BIN in the scratch directory (main)

PYTHON=/usr/bin/python3
REPORT=$REPO/bench/lib/http_report.py
WRK_LUA=$REPO/bench/wrk/post.lua
SPEC=$REPO/bench/specs/counter.payi   # the command measured: Count (key, n) FOR counter
COMMAND=Count
RESULTS=$REPO/bench/results
PAYLOAD_BYTES=100          # the event's data object, as in the append bench
WRK_TIMEOUT=$((BENCH_SECONDS + 30))

SCRATCH=
RAW=
PIECES=
BIN=
SERVER_PID=                # the payi or bare server running now, if any
PERF_PID=                  # perf record, while it runs
OUTPUT=md                  # what is printed at the end: md, or json (--json)

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
report() { "$PYTHON" "$REPORT" "$@"; }

# ------------------------------------------------------------ scratch & cleanup

# server_stop: SIGTERM the server server_start started (by pid), wait up to
# 15 s for it to exit, then SIGKILL that pid.  Safe to call twice.
server_stop() {
  [ -n "$SERVER_PID" ] || return 0
  local pid=$SERVER_PID
  SERVER_PID=
  stop_pid "$pid" TERM 15
}

cleanup() {
  local rc=$?
  set +e
  if [ -n "$PERF_PID" ]; then kill -INT "$PERF_PID" 2>/dev/null; wait "$PERF_PID" 2>/dev/null; fi
  server_stop
  pg_stop
  if [ -n "$SCRATCH" ] && [ -d "$SCRATCH" ]; then rm -rf -- "$SCRATCH"; fi
  if [ "$rc" -ne 0 ]; then
    log "exit $rc; servers stopped, scratch directory removed"
  fi
  exit "$rc"
}

# ------------------------------------------------------------ payloads


# The raw-append event lines: line i is {"type":"bench","data":<json_payload i>}.
# The single-event request body is line 1; the NDJSON body is lines
# 1..BENCH_NDJSON_LINES; the parse-only rate is measured on that same NDJSON
# body; PostgreSQL's append_event stores line 1's data.
#
# The command line is {"key":"k{n}","n":1} (post.lua puts the request's key,
# 0..BENCH_STREAMS-1, in place of {n}; the stream is 'c-k<key>').  The
# NDJSON body is BENCH_NDJSON_LINES such lines, all for the request's key (as
# the raw-append NDJSON body is for one stream).  The parse-only rate of
# command lines is measured on that body with {n} replaced by 123 (a key of
# three digits, like most of the 1,000).
write_bodies() {
  local i
  printf '{"type":"bench","data":%s}' "$(json_payload 1)" >"$RAW/event.json"
  for i in $(seq 1 "$BENCH_NDJSON_LINES"); do
    printf '{"type":"bench","data":%s}\n' "$(json_payload "$i")"
  done >"$RAW/events.ndjson"
  printf '{"key":"k{n}","n":1}' >"$RAW/command.json"
  for i in $(seq 1 "$BENCH_NDJSON_LINES"); do
    printf '{"key":"k{n}","n":1}\n'
  done >"$RAW/commands.ndjson"
  sed 's/{n}/123/g' "$RAW/commands.ndjson" >"$RAW/commands.parse.ndjson"
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
  # Same wrk script, path and body as payi's one-command-per-request workload.
  run_wrk bare_single bare "/commands/$COMMAND" "$RAW/command.json" application/json 1 0
  server_stop
}

# ------------------------------------------------------------ 2. payi

# payi_head: GET /health's head (the next position), or nothing.
payi_head() {
  curl -s --max-time 5 "$SERVER_URL/health" |
    "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["head"])' 2>/dev/null || true
}

# payi_stable_head: the head once it stays the same for 0.5 s (at most 5 s):
# in-flight appends finish first.
payi_stable_head() {
  local head='' prev='' _
  for _ in $(seq 1 50); do
    head=$(payi_head)
    if [ -n "$head" ] && [ "$head" = "$prev" ]; then break; fi
    prev=$head
    sleep 0.1
  done
  printf '%s' "$head"
}

# perf_start / perf_stop: BENCH_PERF=1 samples the server (cpu-clock, 999 Hz,
# kernel call chains) while wrk runs; perf_stop writes the text reports the
# report reads (by symbol, self and inclusive; by thread; by library).
perf_start() {
  local name=$1
  PERF_PID=
  [ "$BENCH_PERF" = 1 ] || return 0
  if ! command -v perf >/dev/null; then
    log "BENCH_PERF=1 but perf is missing (scripts/deps.sh bench installs linux-perf)"
    return 0
  fi
  perf record -q -e cpu-clock -F 999 -g -p "$SERVER_PID" -o "$RAW/$name.perf.data" \
    >"$RAW/$name.perf.err" 2>&1 &
  PERF_PID=$!
}
perf_stop() {
  local name=$1 pid=$PERF_PID
  [ -n "$pid" ] || return 0
  PERF_PID=
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local d=$RAW/$name.perf.data
  if [ ! -s "$d" ]; then
    log "perf wrote nothing: $(tail -n 2 "$RAW/$name.perf.err" | tr '\n' ' ')"
    return 0
  fi
  local opts=(-i "$d" --stdio -g none --percent-limit 0.3)
  timeout 120 perf report "${opts[@]}" --no-children --sort symbol >"$RAW/$name.perf.self.txt" 2>/dev/null || true
  timeout 120 perf report "${opts[@]}" --children --sort symbol >"$RAW/$name.perf.children.txt" 2>/dev/null || true
  timeout 120 perf report "${opts[@]}" --no-children --sort comm >"$RAW/$name.perf.comm.txt" 2>/dev/null || true
  timeout 120 perf report "${opts[@]}" --no-children --sort dso >"$RAW/$name.perf.dso.txt" 2>/dev/null || true
  report perf --out "$PIECES/perf.json" --workload "$name" \
    --self "$RAW/$name.perf.self.txt" --children "$RAW/$name.perf.children.txt" \
    --comm "$RAW/$name.perf.comm.txt" --dso "$RAW/$name.perf.dso.txt"
  rm -f -- "$d"
}

# payi_workload NAME PATH BODY CTYPE EVENTS NDJSON [SPEC]: a fresh payi server
# (empty data directory, default fsync durability; --spec SPEC when given),
# one wrk run, then the acknowledgement check: once the server is quiet,
# GET /health's head, less the head before the run (a spec registers its
# event schemas first), must lie between the events wrk saw acknowledged
# (2xx) and the events it sent — wrk stops at its deadline with up to -c
# requests in flight, which payi may append without wrk reading the answer.
# Each command emits one event, so for commands "events" are commands.
# /metrics is kept (fsyncs, group commits, commands).  With a spec, a few
# streams are read back afterwards (payi read) and checked: versions 0..n-1
# and every event's total = the sum of the n's up to it.
payi_workload() {
  local name=$1 path=$2 body=$3 ctype=$4 events=$5 ndjson=$6 spec=${7:-}
  local data=$SCRATCH/payi.$name
  local cmd=("$PAYI_RUN" serve --data "$data" --listen 127.0.0.1:0)
  if [ -n "$spec" ]; then cmd+=(--spec "$spec"); fi
  if ! server_start payi "$RAW/$name.serve.err" "${cmd[@]}"; then
    report error --out "$PIECES/$name.json" --engine payi --name "$name" \
      --reason "payi serve did not start: $(tail -n 1 "$RAW/$name.serve.err")"
    return 0
  fi
  local head0 head
  head0=$(payi_stable_head)
  if [ "$name" = "$BENCH_PERF_WORKLOAD" ]; then perf_start "$name"; fi
  run_wrk "$name" payi "$path" "$body" "$ctype" "$events" "$ndjson"
  if [ "$name" = "$BENCH_PERF_WORKLOAD" ]; then perf_stop "$name"; fi
  head=$(payi_stable_head)
  curl -s --max-time 5 "$SERVER_URL/metrics" >"$RAW/$name.metrics.txt" || true
  server_stop
  local check_args=()
  if [ -n "$spec" ]; then
    local k
    for k in 0 1 $((BENCH_STREAMS / 2)) $((BENCH_STREAMS - 1)); do
      timeout 60 "$PAYI_RUN" read --data "$data" --stream "c-k$k" >"$RAW/$name.c-k$k.ndjson" \
        2>>"$RAW/$name.read.err" || true
      check_args+=(--stream-file "k$k=$RAW/$name.c-k$k.ndjson")
    done
  fi
  report payi-check --piece "$PIECES/$name.json" --head "${head:-}" --head-before "${head0:-}" \
    --metrics "$RAW/$name.metrics.txt" --serve-log "$RAW/$name.serve.err" "${check_args[@]}"
  log "$name: GET /health head ${head0:-?} before, ${head:-?} after"
  rm -rf -- "$data" "$RAW/$name".c-k*.ndjson
  sync
}

run_payi_streams() {
  payi_workload payi_single "/streams/s-{n}" "$RAW/event.json" application/json 1 0
  payi_workload payi_ndjson "/streams/s-{n}" "$RAW/events.ndjson" application/x-ndjson \
    "$BENCH_NDJSON_LINES" 1
}

# run_payi_commands: POST /commands/Count of bench/specs/counter.payi — the
# workloads the issue's targets are about: one command per request, and
# NDJSON batches of BENCH_NDJSON_LINES commands (answered line by line).
run_payi_commands() {
  payi_workload payi_command "/commands/$COMMAND" "$RAW/command.json" application/json 1 0 "$SPEC"
  payi_workload payi_command_ndjson "/commands/$COMMAND" "$RAW/commands.ndjson" \
    application/x-ndjson "$BENCH_NDJSON_LINES" 1 "$SPEC"
}

run_payi() {
  local n
  if [ ! -x "$PAYI_BIN" ]; then
    log "============================================================"
    log "payi's part is MISSING: $PAYI_BIN does not exist (build it with 'make')."
    log "============================================================"
    for n in payi_command payi_command_ndjson payi_single payi_ndjson; do
      report error --out "$PIECES/$n.json" --engine payi --name "$n" \
        --reason "$PAYI_BIN does not exist" --missing
    done
    return 0
  fi
  run_payi_commands
  if [ "$BENCH_RAW_APPENDS" = 1 ]; then
    run_payi_streams
  else
    for n in payi_single payi_ndjson; do
      report error --out "$PIECES/$n.json" --engine payi --name "$n" \
        --reason "BENCH_RAW_APPENDS=0" --skipped
    done
  fi
}

# ------------------------------------------------------------ 3. JSON parse-only

# json_rate_run NAME FILE: one parse-only run on FILE's lines.
json_rate_run() {
  local name=$1 file=$2 rc=0
  timeout --kill-after=5 $((BENCH_JSON_SECONDS + 30)) \
    "$BIN/json_rate" "$file" "$BENCH_JSON_SECONDS" \
    >"$RAW/$name.out" 2>"$RAW/$name.err" || rc=$?
  report jsonrate --out "$PIECES/$name.json" --name "$name" --rc "$rc" --lines-file "$file" \
    --stdout "$RAW/$name.out" --stderr "$RAW/$name.err"
  log "JSON parse-only $name: $(cat "$RAW/$name.out" 2>/dev/null || true)"
}

# Parse-only rates: of the command lines (what target h4 compares the NDJSON
# commands with) and of the raw-append event lines.
run_json_rate() {
  log "JSON parse-only: cc -O2 bench/bare/json_rate.c src/base/{json,buf,mem}.c, ${BENCH_JSON_SECONDS}s per run"
  local n
  if ! cc -std=c11 -D_GNU_SOURCE -O2 -pthread -I"$REPO/src" -o "$BIN/json_rate" \
       "$REPO/bench/bare/json_rate.c" "$REPO/src/base/json.c" "$REPO/src/base/buf.c" \
       "$REPO/src/base/mem.c" -lm 2>"$RAW/json_rate_cc.err"; then
    for n in json_rate_command json_rate; do
      report error --out "$PIECES/$n.json" --engine json --name "$n" \
        --reason "json_rate.c did not compile: $(head -c 300 "$RAW/json_rate_cc.err")"
    done
    return 0
  fi
  json_rate_run json_rate_command "$RAW/commands.parse.ndjson"
  if [ "$BENCH_RAW_APPENDS" = 1 ]; then
    json_rate_run json_rate "$RAW/events.ndjson"
  else
    report error --out "$PIECES/json_rate.json" --engine json --name json_rate \
      --reason "BENCH_RAW_APPENDS=0" --skipped
  fi
}

# ------------------------------------------------------------ 4. PostgreSQL

# The command and the append done the usual way: PL/pgSQL functions that read
# the stream's last event and insert the next one, unique(stream, version)
# guarding it.
#
# count_command(key, n) is the Count command of bench/specs/counter.payi:
# refuse n <= 0 (the CHECK), read the last event of stream 'c-' || key (its
# version and its total), refuse an overflow (the REJECT rule), insert event
# Counted {key, n, total + n} at version + 1.  append_event(stream, type,
# data) is the raw append: read the last version, insert the next.
#
# Concurrency: two calls on one stream at the same moment would read the same
# last event and one would hit the unique constraint (pgbench 15 does not
# retry that: the client aborts).  So both functions first take a
# transaction-level advisory lock on the stream's 64-bit name hash: calls on
# one stream queue behind each other (a hash collision only makes two streams
# queue together), every call succeeds, and versions are gapless from 0 like
# payi's.  The lock is released at commit, after the row is visible, so the
# next call reads it.
PG_SCHEMA_SQL=$(cat <<'SQL'
CREATE TABLE events(position bigserial PRIMARY KEY, stream text NOT NULL, version bigint NOT NULL,
                    type text NOT NULL, data jsonb NOT NULL, UNIQUE (stream, version));
CREATE FUNCTION count_command(key text, n bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  s text := 'c-' || count_command.key;
  last_version bigint;
  last_total bigint;
BEGIN
  IF count_command.n IS NULL OR count_command.n <= 0 THEN
    RAISE EXCEPTION 'n must be > 0';
  END IF;
  PERFORM pg_advisory_xact_lock(hashtextextended(s, 0));
  SELECT e.version, (e.data->>'total')::bigint INTO last_version, last_total
    FROM events e WHERE e.stream = s ORDER BY e.version DESC LIMIT 1;
  last_total := coalesce(last_total, 0);
  IF last_total + count_command.n > 1000000000000 THEN
    RAISE EXCEPTION 'counter overflow';
  END IF;
  INSERT INTO events(stream, version, type, data)
  VALUES (s, coalesce(last_version + 1, 0), 'Counted',
          jsonb_build_object('key', count_command.key, 'n', count_command.n,
                             'total', last_total + count_command.n));
  RETURN last_total + count_command.n;
END $$;
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
PG_VERIFY_APPEND_SQL="SELECT count(*), coalesce(sum(n), 0), coalesce(bool_and(minv = 0 AND maxv = n - 1), false)
  FROM (SELECT stream, count(*) AS n, min(version) AS minv, max(version) AS maxv
        FROM events GROUP BY stream) s"
# The same plus '|every event's total = the sum of its stream's n up to it
# (so each stream's last total = the sum of its n's), its key names its stream'.
PG_VERIFY_COMMAND_SQL="SELECT count(*), coalesce(sum(n), 0), coalesce(bool_and(minv = 0 AND maxv = n - 1), false),
         coalesce(bool_and(totals_ok), false)
  FROM (SELECT stream, count(*) AS n, min(version) AS minv, max(version) AS maxv, bool_and(ok) AS totals_ok
        FROM (SELECT stream, version,
                     type = 'Counted' AND stream = 'c-' || (data->>'key')
                     AND (data->>'total')::bigint
                         = sum((data->>'n')::bigint) OVER (PARTITION BY stream ORDER BY version) AS ok
              FROM events) e
        GROUP BY stream) s"

# pg_run NAME SCRIPT VERIFY_SQL WHAT: one pgbench run on an empty table.
pg_run() {
  local name=$1 script=$2 verify_sql=$3 what=$4
  pg_sql "TRUNCATE events RESTART IDENTITY" >/dev/null || true
  pg_sql "CHECKPOINT" >/dev/null || true
  log "PostgreSQL $name: pgbench -c $BENCH_CONNECTIONS -j $BENCH_THREADS -T $BENCH_SECONDS, $what over $BENCH_STREAMS streams"
  local rc=0 verify settings
  timeout --kill-after=10 $((BENCH_SECONDS + 60)) \
    pgbench -n -h 127.0.0.1 -p "$PG_PORT" -U postgres -M prepared -f "$script" \
    -c "$BENCH_CONNECTIONS" -j "$BENCH_THREADS" -T "$BENCH_SECONDS" \
    --log --log-prefix="$RAW/$name.txlog" postgres >"$RAW/$name.out" 2>&1 || rc=$?
  verify=$(pg_sql "$verify_sql") || verify=
  settings=$(pg_sql "SELECT string_agg(name || '=' || setting, ',' ORDER BY name) FROM pg_settings
                     WHERE name IN ('synchronous_commit', 'fsync', 'shared_buffers', 'transaction_isolation')") || settings=
  report pgbench --out "$PIECES/$name.json" --name "$name" --clients "$BENCH_CONNECTIONS" \
    --threads "$BENCH_THREADS" --seconds "$BENCH_SECONDS" --streams "$BENCH_STREAMS" \
    --rc "$rc" --stdout "$RAW/$name.out" --log-prefix "$RAW/$name.txlog" \
    --script "$script" ${verify:+--verify "$verify"} ${settings:+--settings "$settings"}
  rm -f "$RAW/$name".txlog.*
  log "PostgreSQL $name: $(grep -E '^tps' "$RAW/$name.out" || echo 'no tps line'); $(grep -E '^number of failed' "$RAW/$name.out" || true); verify ${verify:-?}"
}

run_postgres() {
  local port n names=(pg_command)
  if [ "$BENCH_RAW_APPENDS" = 1 ]; then
    names+=(pg_append)
  else
    report error --out "$PIECES/pg_append.json" --engine postgresql --name pg_append \
      --reason "BENCH_RAW_APPENDS=0" --skipped
  fi
  port=$(free_port)
  log "PostgreSQL: initdb + start on 127.0.0.1:$port"
  if ! pg_start "$SCRATCH/pg" "$port" 2>"$RAW/pg_start.err"; then
    log "PostgreSQL did not start: $(tail -n 5 "$RAW/pg_start.err")"
    for n in "${names[@]}"; do
      report error --out "$PIECES/$n.json" --engine postgresql --name "$n" \
        --reason "PostgreSQL did not start: $(tail -n 1 "$RAW/pg_start.err")"
    done
    pg_stop
    return 0
  fi
  if ! pg_sql "$PG_SCHEMA_SQL" >/dev/null 2>"$RAW/pg_create.err"; then
    for n in "${names[@]}"; do
      report error --out "$PIECES/$n.json" --engine postgresql --name "$n" \
        --reason "schema failed: $(grep -m 1 ERROR "$RAW/pg_create.err" || tail -n 1 "$RAW/pg_create.err")"
    done
    pg_stop
    return 0
  fi
  {
    echo "\\set s random(0, $((BENCH_STREAMS - 1)))"
    echo "SELECT count_command('k' || :s, 1);"
  } >"$RAW/pg_command.sql"
  {
    echo "\\set s random(0, $((BENCH_STREAMS - 1)))"
    echo "SELECT append_event('s-' || :s, 'bench', '$(json_payload 1)');"
  } >"$RAW/pg_append.sql"
  pg_run pg_command "$RAW/pg_command.sql" "$PG_VERIFY_COMMAND_SQL" "SELECT count_command('k' || key, 1)"
  if [ "$BENCH_RAW_APPENDS" = 1 ]; then
    pg_run pg_append "$RAW/pg_append.sql" "$PG_VERIFY_APPEND_SQL" "SELECT append_event(...)"
  fi
  pg_stop
  rm -rf -- "$SCRATCH/pg"
  sync
}

# ------------------------------------------------------------ main

main() {
  local arg
  for arg in "$@"; do
    case $arg in
      --json) OUTPUT=json ;;
      -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; return 0 ;;
      *) echo "bench/http.sh: unknown argument '$arg' (usage: bench/http.sh [--json])" >&2; return 2 ;;
    esac
  done
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
  make_scratch_dir http
  check_free_space
  # Measure a private copy: other sessions may rebuild build/payi during the run.
  if [ -x "$PAYI_BIN" ]; then
    log "payi binary: $PAYI_BIN (copied to the scratch directory for the run)"
    cp -- "$PAYI_BIN" "$BIN/payi"
    PAYI_RUN=$BIN/payi
  fi
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
  if [ "$OUTPUT" = json ]; then
    cat "$RESULTS/http.json"
  else
    echo
    cat "$RESULTS/http.md"
  fi
  log "wrote $RESULTS/http.json and $RESULTS/http.md (exit $rc)"
  return "$rc"
}

main "$@"
