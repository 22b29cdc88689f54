# shellcheck shell=bash
# Throwaway PostgreSQL 15 and Redis 7 servers for the benchmarks.
#
# Sourced by bench/*.sh.  Every server listens on 127.0.0.1 only, keeps all its
# files under a directory the caller gives (inside the bench's temporary
# directory), and is stopped by pid/data directory — never by process name, so
# a PostgreSQL or Redis that someone else runs on this machine is left alone.
#
# State kept in globals so the caller's cleanup trap can stop whatever is up:
#   PG_DIR PG_PORT          set by pg_start, cleared by pg_stop
#   REDIS_PID REDIS_PORT    set by redis_start, cleared by redis_stop

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_DIR=
PG_PORT=
REDIS_PID=
REDIS_PORT=

# free_port: print a TCP port on 127.0.0.1 that nothing listens on right now.
# The kernel picks it (bind to port 0), so two concurrent runs don't collide.
free_port() {
  /usr/bin/python3 -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# as_postgres CMD...: PostgreSQL refuses to run as root, so run as the
# "postgres" system user when we are root (we are, on the project machines).
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# pg_start DIR PORT: initdb a fresh cluster in DIR and start it on
# 127.0.0.1:PORT with durable commits (fsync + synchronous_commit on), a
# shared_buffers large enough to hold the benchmark table, and max_wal_size
# large enough that no checkpoint is forced by WAL volume during a run.
# The Unix socket also goes into DIR (-k) so nothing is written to /run.
pg_start() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$dir"; fi
  chmod 700 "$dir"
  as_postgres "$PG_BIN/initdb" -D "$dir" -A trust -U postgres -E UTF8 \
    --no-instructions >"$dir.initdb.log" 2>&1 ||
    { cat "$dir.initdb.log" >&2; return 1; }
  PG_DIR=$dir
  PG_PORT=$port
  as_postgres "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -t 60 -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c synchronous_commit=on -c fsync=on -c shared_buffers=256MB -c max_wal_size=4GB" \
    start >/dev/null ||
    { cat "$dir/server.log" >&2; return 1; }
}

# pg_stop: fast shutdown of the cluster pg_start started; safe to call twice
# and when nothing was started.  Falls back to SIGQUIT on the postmaster's own
# pid (read from its pid file) if pg_ctl cannot stop it in time.
pg_stop() {
  [ -n "$PG_DIR" ] || return 0
  local dir=$PG_DIR
  PG_DIR=
  [ -f "$dir/postmaster.pid" ] || return 0
  if ! as_postgres "$PG_BIN/pg_ctl" -D "$dir" -m fast -t 30 -w stop >/dev/null 2>&1; then
    local pid
    pid=$(head -n 1 "$dir/postmaster.pid" 2>/dev/null || true)
    if [ -n "$pid" ]; then kill -QUIT "$pid" 2>/dev/null || true; fi
  fi
}

# pg_sql SQL: run SQL as postgres over TCP, unaligned, tuples only, stopping on
# the first error.
pg_sql() {
  psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
    -At -c "$1"
}

# redis_start DIR PORT: start redis-server in the background on
# 127.0.0.1:PORT with every write appended to the AOF and fsynced before the
# reply (appendfsync always), and no RDB snapshots.  AOF auto-rewrite is
# turned off: it is background compaction, not appending, and a rewrite fork
# landing inside one run but not another would make the runs incomparable.
# Waits (bounded) until the server answers PING.
redis_start() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" \
    --appendonly yes --appendfsync always --save '' --daemonize no \
    --auto-aof-rewrite-percentage 0 --protected-mode yes \
    --logfile "$dir/server.log" &
  REDIS_PID=$!
  REDIS_PORT=$port
  local _
  for _ in $(seq 1 100); do
    if redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$REDIS_PID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "redis-server did not come up on 127.0.0.1:$port" >&2
  cat "$dir/server.log" >&2 || true
  return 1
}

# redis_stop: SHUTDOWN NOSAVE the server redis_start started, then wait
# (bounded) for its pid to exit; SIGKILL that pid if it does not.
redis_stop() {
  [ -n "$REDIS_PID" ] || return 0
  local pid=$REDIS_PID
  REDIS_PID=
  timeout 10 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  local _
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# redis_cmd ARGS...: one redis-cli command against the server we started.
redis_cmd() {
  timeout 60 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"
}
