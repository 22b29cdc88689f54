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
