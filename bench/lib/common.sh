# common.sh — helpers shared by the bench drivers (sourced; they define log,
# REPO, RESULTS, SCRATCH, BENCH_MIN_FREE_GB and PAYLOAD_BYTES before calling these).

# check_free_space: refuse to run with less than BENCH_MIN_FREE_GB under SCRATCH.
check_free_space() {
  local avail_kib
  avail_kib=$(df -Pk "$SCRATCH" | awk 'NR==2 {print $4}')
  if [ "$avail_kib" -lt $((BENCH_MIN_FREE_GB * 1024 * 1024)) ]; then
    log "only $((avail_kib / 1024)) MiB free under $SCRATCH; need ${BENCH_MIN_FREE_GB} GiB (BENCH_MIN_FREE_GB)"
    exit 1
  fi
}

# json_payload N: a JSON object of exactly $PAYLOAD_BYTES bytes,
# {"n":"00N","pad":"<x repeated>"}; N makes the payloads of one batch differ.
json_payload() {
  local head tail pad
  head=$(printf '{"n":"%03d","pad":"' "$1")
  tail='"}'
  pad=$(printf '%*s' $((PAYLOAD_BYTES - ${#head} - ${#tail})) '' | tr ' ' x)
  printf '%s%s%s' "$head" "$pad" "$tail"
}

# scratch_base: where to make the scratch directory: on the repository's
# filesystem, the disk payi is judged on, so that dd, the peers and payi all
# write to the same device.  $TMPDIR (or /tmp) when df shows it on that
# device; otherwise bench/results/ (its *.tmp entries are ignored by git).
scratch_base() {
  local base=${TMPDIR:-/tmp}
  local repo_dev base_dev
  repo_dev=$(df -P "$REPO" | awk 'NR==2 {print $1}')
  base_dev=$(df -P "$base" 2>/dev/null | awk 'NR==2 {print $1}' || true)
  if [ "$base_dev" != "$repo_dev" ]; then
    log "$base is on ${base_dev:-?}, not on the repository's $repo_dev; using bench/results/"
    base=$RESULTS
    mkdir -p "$base"
  fi
  printf '%s' "$base"
}

# make_scratch_dir NAME: a fresh scratch directory for the bench NAME under
# scratch_base, with raw/ (tool outputs), pieces/ (report pieces) and bin/;
# sets SCRATCH, RAW, PIECES and BIN.
make_scratch_dir() {
  local base
  base=$(scratch_base)
  SCRATCH=$(mktemp -d --suffix=.tmp "$base/payi-bench-$1.XXXXXX")
  chmod 711 "$SCRATCH"      # the postgres user must reach $SCRATCH/pg: traverse only
  RAW=$SCRATCH/raw
  PIECES=$SCRATCH/pieces
  BIN=$SCRATCH/bin
  mkdir -p "$RAW" "$PIECES" "$BIN"
  log "scratch directory $SCRATCH ($(df -P "$SCRATCH" | awk 'NR==2 {print $1}'))"
}

# stop_pid PID SIGNAL SECONDS: send SIGNAL to PID (a child of this shell),
# wait up to SECONDS for it to exit, then SIGKILL it.  Sets STOPPED_RC to
# its exit status.
stop_pid() {
  local pid=$1 sig=$2 secs=$3 _
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((secs * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid did not stop within $secs s of SIG$sig; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  STOPPED_RC=0
  wait "$pid" 2>/dev/null || STOPPED_RC=$?
}
