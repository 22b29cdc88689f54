#!/usr/bin/env bash
# COVID-19 bench (issue 5, the case study's performance section): the whole
# JHU CSSE history (confirmed and deaths, 2 × 289 rows × 1,143 days) ingested
# by `payi demo --fast` through the real command path, with every view and
# both generators of examples/covid/covid.payi up to date; and in the same
# run the same work done the PostgreSQL way: the CSVs loaded with COPY and
# the views computed in SQL (bench/lib/covid_pg.sql).  After each run the
# two results are cross-checked (payi's views over HTTP against PostgreSQL's
# tables); a disagreement fails the bench.
# bench/lib/covid_report.py writes bench/results/covid.json and covid.md.
#
# Usage: bench/covid.sh            (bench/run.sh covid calls it; see bench/README.md)
# Environment (all optional):
#   BENCH_RUNS=3               runs of each side; the medians are the figures
#   BENCH_MIN_FREE_GB=2        refuse to start with less free space than this
#   BENCH_REQUIRE_PAYI=1       exit 1 when payi is missing (default: report it, exit 0)
#   PAYI_BIN=build/payi        the payi binary to measure (copied into the scratch directory)
#   PAYI_TIMEOUT=120           seconds to wait for payi's "up to date" line
#   PG_TIMEOUT=300             hard limit on one PostgreSQL run, seconds
#
# Each run: PostgreSQL (a fresh database), then payi (a fresh data
# directory), then the cross-check, so both sides see the same machine
# weather.  PostgreSQL is started once (bench/lib/peers.sh) and idles during
# payi's runs; a CHECKPOINT and a sync after its runs keep its writeback out
# of payi's.  All servers on 127.0.0.1, ports picked by the kernel; all data
# in one scratch directory on the repository's filesystem, removed on exit
# even on failure; servers stopped by pid, never by name.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/peers.sh
source "$REPO/bench/lib/peers.sh"
# shellcheck source=bench/lib/common.sh
source "$REPO/bench/lib/common.sh"

BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_MIN_FREE_GB=${BENCH_MIN_FREE_GB:-2}
BENCH_REQUIRE_PAYI=${BENCH_REQUIRE_PAYI:-0}
PAYI_BIN=${PAYI_BIN:-$REPO/build/payi}
PAYI_TIMEOUT=${PAYI_TIMEOUT:-120}
PG_TIMEOUT=${PG_TIMEOUT:-300}

PYTHON=/usr/bin/python3
REPORT=$REPO/bench/lib/covid_report.py
PG_SQL=$REPO/bench/lib/covid_pg.sql
APP_SRC=$REPO/examples/covid
# EpiEstim's discr_si(0:1142, 4.7, 2.9): the repository's copy (tests/data/rt),
# else the shared data it was copied from.
SI_SRC=$REPO/tests/data/rt/si_distr_parametric_mean4.7_sd2.9.csv
[ -r "$SI_SRC" ] || SI_SRC=/work/shared/data/rt/si_distr_parametric_mean4.7_sd2.9.csv
RESULTS=$REPO/bench/results
CONFIRMED=time_series_covid19_confirmed_global.csv.gz
DEATHS=time_series_covid19_deaths_global.csv.gz
READY='views and generators up to date after'

SCRATCH=
RAW=
PIECES=
BIN=
APP=
PAYI_PID=
PAYI_URL=

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
report() { "$PYTHON" "$REPORT" "$@"; }

# ------------------------------------------------------------ scratch & cleanup

# payi_stop: SIGINT the payi demo (by pid) as Ctrl-C would, wait for it to
# exit (bounded), SIGKILL after 30 s.  Sets PAYI_RC to its exit status.
PAYI_RC=
payi_stop() {
  [ -n "$PAYI_PID" ] || return 0
  local pid=$PAYI_PID
  PAYI_PID=
  stop_pid "$pid" INT 30
  PAYI_RC=$STOPPED_RC
}

cleanup() {
  local rc=$?
  set +e
  payi_stop
  pg_stop
  if [ -n "$SCRATCH" ] && [ -d "$SCRATCH" ]; then rm -rf -- "$SCRATCH"; fi
  if [ "$rc" -ne 0 ]; then
    log "exit $rc; servers stopped, scratch directory removed"
  fi
  exit "$rc"
}

# ------------------------------------------------------------ CPU accounting

# proc_ticks PID: utime+stime of a live process (all its threads), clock ticks.
proc_ticks() {
  if [ -r "/proc/$1/stat" ]; then sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; else echo 0; fi
}

# machine_busy_ticks: non-idle CPU time of the whole machine so far (user,
# nice, system, irq, softirq, steal over all CPUs; /proc/stat), clock ticks.
# Over a run, less the measured process's own CPU, it is what everything
# else on the machine took: the report flags runs that shared the CPUs.
machine_busy_ticks() {
  awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}

# pg_server_ticks: the CPU time of the whole PostgreSQL server so far: the
# postmaster's own and that of its children it has reaped (cutime+cstime:
# every backend that has exited, with the parallel workers and the gunzip
# of COPY FROM PROGRAM they waited for), plus its live children (checkpointer,
# WAL writer, ...).
pg_server_ticks() {
  local pm total child
  pm=$(head -n 1 "$PG_DIR/postmaster.pid")
  total=$(sed 's/^.*) //' "/proc/$pm/stat" | awk '{print $12 + $13 + $14 + $15}')
  # shellcheck disable=SC2013  # the children files hold space-separated pids
  for child in $(cat "/proc/$pm/task/"*/children 2>/dev/null); do
    total=$((total + $(proc_ticks "$child")))
  done
  echo "$total"
}

# ------------------------------------------------------------ PostgreSQL

# pg_run I: covid_pg.sql on the empty database covid_I, timed from psql's
# start to its exit.
pg_run() {
  local i=$1 db=covid_$1 rc=0 t0 t1 c0 c1 m0 m1
  pg_sql "CREATE DATABASE $db" >/dev/null
  pg_sql "CHECKPOINT" >/dev/null
  sync
  log "run $i/$BENCH_RUNS: PostgreSQL (load the CSVs, compute the views in SQL)"
  c0=$(pg_server_ticks)
  m0=$(machine_busy_ticks)
  t0=$EPOCHREALTIME
  timeout --kill-after=10 "$PG_TIMEOUT" \
    psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$db" \
      -v confirmed="$APP/data/$CONFIRMED" -v deaths="$APP/data/$DEATHS" -v si="$SCRATCH/si.csv" \
      -f "$PG_SQL" >"$RAW/pg_run$i.out" 2>"$RAW/pg_run$i.err" || rc=$?
  t1=$EPOCHREALTIME
  m1=$(machine_busy_ticks)
  sleep 0.2   # let the postmaster reap the session's backend, so its CPU is in cutime
  c1=$(pg_server_ticks)
  report pg --out "$PIECES/pg_run$i.json" --name "run$i" --psql-out "$RAW/pg_run$i.out" \
    --psql-err "$RAW/pg_run$i.err" --rc "$rc" --wall "$(echo "$t1 - $t0" | bc -l)" \
    --server-ticks "$((c1 - c0))" --machine-ticks "$((m1 - m0))" --pg-version "$(pg_sql 'SHOW server_version' || true)" \
    --pg-settings "$(pg_sql "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings
                              WHERE name IN ('synchronous_commit', 'fsync', 'shared_buffers', 'max_wal_size',
                                             'jit', 'max_parallel_workers_per_gather',
                                             'autovacuum')" || true)"
  # Its dirty pages and WAL go to disk now, not during payi's run.
  pg_sql "CHECKPOINT" >/dev/null
  sync
  return "$rc"
}

# ------------------------------------------------------------ payi

# payi_run I: a fresh `payi demo --fast`; wait for its "up to date" line,
# take its CPU time and memory at that moment, cross-check its views against
# covid_I, then SIGINT it.  Returns non-zero when the cross-check disagrees.
payi_run() {
  local i=$1
  local dir=$SCRATCH/payi_run$i errlog=$RAW/payi_run$i.err t0 t1='' check_rc=0
  local ut=0 st=0 rss=0 m0 m1=0
  local flags=()
  local cmd=("$BIN/payi" demo --fast --data "$dir" --listen 127.0.0.1:0 --app "$APP")
  printf '%q ' "${cmd[@]}" | sed "s|$SCRATCH|SCRATCH|g" >"$RAW/payi_run$i.cmd"
  sync
  log "run $i/$BENCH_RUNS: payi demo --fast"
  : >"$errlog"   # exists before the watcher opens it
  m0=$(machine_busy_ticks)
  t0=$EPOCHREALTIME
  "${cmd[@]}" >"$RAW/payi_run$i.out" 2>"$errlog" &
  PAYI_PID=$!
  if read -r t1 ut st rss m1 < <(report wait --file "$errlog" --pattern "$READY" --pid "$PAYI_PID" \
                                --timeout "$PAYI_TIMEOUT"); then
    PAYI_URL=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$errlog" | head -n 1)
    local full=()
    if [ "$i" = "$BENCH_RUNS" ]; then full=(--full); fi
    log "run $i/$BENCH_RUNS: cross-check payi ($PAYI_URL) against PostgreSQL covid_$i${full:+ (every row)}"
    timeout --kill-after=10 600 "$PYTHON" "$REPORT" check --out "$PIECES/check_run$i.json" --name "run$i" \
      --url "$PAYI_URL" --pg-port "$PG_PORT" --pg-db "covid_$i" "${full[@]}" || check_rc=$?
  else
    t1=''
    flags+=(--timed-out)
    log "payi printed no '$READY' line within ${PAYI_TIMEOUT}s: $(tail -n 2 "$errlog" | tr '\n' ' ')"
  fi
  payi_stop
  if [ -n "$t1" ]; then
    flags+=(--launch-to-ready "$(echo "$t1 - $t0" | bc -l)" --machine-ticks "$((m1 - m0))")
  fi
  report payi --out "$PIECES/payi_run$i.json" --name "run$i" --stderr "$errlog" \
    --ticks-user "$ut" --ticks-sys "$st" --rss-kib "$rss" --exit-rc "${PAYI_RC:-0}" \
    --cmd "$RAW/payi_run$i.cmd" --spec "$APP/covid.payi" "${flags[@]}"
  rm -rf -- "$dir"
  sync
  return "$check_rc"
}

# ------------------------------------------------------------ main

main() {
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local tool
  for tool in psql bc gunzip; do
    if ! command -v "$tool" >/dev/null; then
      log "$tool is missing (scripts/deps.sh bench installs postgresql)"
      exit 1
    fi
  done
  make_scratch_dir covid
  APP=$SCRATCH/app           # the app (spec and data) payi demo serves
  check_free_space
  # Inputs: a private copy of the app (spec and data) and the serial interval,
  # readable by the postgres user (COPY FROM PROGRAM runs as the server).
  cp -r -- "$APP_SRC" "$APP"
  cp -- "$SI_SRC" "$SCRATCH/si.csv"
  chmod -R a+rX "$APP" "$SCRATCH/si.csv"
  GIT_OPTIONAL_LOCKS=0 report machine --out "$PIECES/machine.json" --scratch "$SCRATCH" --repo "$REPO" \
    --payi-bin "$PAYI_BIN"
  local have_payi=1
  if [ -x "$PAYI_BIN" ]; then
    # Measure a copy: a rebuild of build/payi by someone else mid-run changes nothing here.
    cp -- "$PAYI_BIN" "$BIN/payi"
  else
    have_payi=0
    log "============================================================"
    log "payi is MISSING: $PAYI_BIN does not exist (build it with 'make'); PostgreSQL only."
    log "============================================================"
    report error --out "$PIECES/payi_missing.json" --engine payi --name missing --reason "$PAYI_BIN does not exist"
  fi

  local port
  port=$(free_port)
  log "PostgreSQL: initdb + start on 127.0.0.1:$port"
  pg_start "$SCRATCH/pg" "$port"
  # No autovacuum: its VACUUM/ANALYZE of one run's fresh tables (a minute
  # later, when the launcher wakes) would land inside the next measurement,
  # payi's or PostgreSQL's.  The script ANALYZEs what it needs itself.
  pg_sql "ALTER SYSTEM SET autovacuum = off" >/dev/null
  pg_sql "SELECT pg_reload_conf()" >/dev/null

  local i status=0
  for i in $(seq 1 "$BENCH_RUNS"); do
    pg_run "$i" || { log "PostgreSQL run $i failed: $(tail -n 2 "$RAW/pg_run$i.err" | tr '\n' ' ')"; status=1; }
    if [ "$have_payi" = 1 ]; then
      payi_run "$i" || { log "run $i: payi and PostgreSQL DISAGREE (see covid.md)"; status=1; }
    fi
    # Keep the last database for EXPLAIN ANALYZE.
    if [ "$i" != "$BENCH_RUNS" ]; then pg_sql "DROP DATABASE IF EXISTS covid_$i" >/dev/null; fi
  done
  log "EXPLAIN ANALYZE of the costliest step, on covid_$BENCH_RUNS"
  report explain --out "$PIECES/pg_explain.json" --sql "$PG_SQL" --pg-port "$PG_PORT" \
    --pg-db "covid_$BENCH_RUNS" || log "EXPLAIN failed"
  pg_stop
  report busy --out "$PIECES/busy_end.json"

  mkdir -p "$RESULTS"
  local rc=0 flags=()
  if [ "$BENCH_REQUIRE_PAYI" = 1 ]; then flags+=(--require-payi); fi
  report combine --pieces "$PIECES" --json "$RESULTS/covid.json" --md "$RESULTS/covid.md" \
    --runs "$BENCH_RUNS" "${flags[@]}" || rc=$?
  echo
  cat "$RESULTS/covid.md"
  log "wrote $RESULTS/covid.json and $RESULTS/covid.md (exit $rc)"
  if [ "$status" != 0 ]; then rc=1; fi
  return "$rc"
}

main "$@"
