#!/usr/bin/python3
"""Parse benchmark outputs into JSON pieces, and combine pieces into a report.

Stdlib only; run with /usr/bin/python3.  bench/append.sh calls one
subcommand per measurement, each writing one small JSON "piece" into a
directory; `combine` then reads every piece and writes
bench/results/append.json (all raw numbers) and bench/results/append.md
(the comparison table and the target checks).

A piece always has: engine, name, ok (bool), error (str or null).  A failed
measurement is recorded as a piece with ok=false rather than dropped, so the
report shows what is missing and why.

Subcommands:
  machine  --scratch DIR --repo DIR --payi-bin PATH --out F
  dd       --out F DD_OUTPUT...                 (dd's stderr, one file per run)
  pgbench  --out F --name N --kind batched|single --clients C --threads J
           --rows R --seconds S --rc RC --stdout F --log-prefix P
           [--verify 'streams|rows|gapless'] [--wal-bytes B]
  redis    --out F --name N --kind pipelined|single --clients C --pipeline P
           --requests N --rc RC --csv F [--xlen N] [--aof-bytes B]
           [--calibration-rps X] [--aof-enabled 0|1] [--appendfsync S]
  payi     --out F --bin PATH --rc RC --stdout F --stderr F   (or --missing REASON)
  error    --out F --engine E --name N --reason TEXT
  busy     --out F                                  (CPU busy sample, end of run)
  combine  --pieces DIR --json OUT --md OUT [--require-payi]
           exit 0: all peers measured (payi measured, or absent and not
           required); 1: a peer or payi's run failed, or payi required and absent.
"""

import argparse
import csv
import datetime
import glob
import io
import json
import math
import os
import platform
import re
import subprocess
import sys
import time

# The targets payi is held to (see bench/README.md).
TARGET_BYTES_VS_DD = 0.60      # payi batched bytes/s >= 60 % of dd's
TARGET_BATCHED_VS_PG = 15.0    # payi batched events/s >= 15x best PG batched
TARGET_CONC8_VS_REDIS = 5.0    # payi @8 appenders >= 5x Redis -P 1 -c 8

# If the CPUs are busier than this (fraction of all CPU time, iowait counted
# as busy) in the second before the bench starts, something else is using the
# machine; the report says so, since every number may then be low.
BUSY_FRACTION = 0.25

PG_WORKLOADS = ["pg_batched_c1", "pg_batched_c8",
                "pg_single_c1", "pg_single_c8", "pg_single_c64"]
REDIS_WORKLOADS = ["redis_pipelined_c1", "redis_pipelined_c8",
                   "redis_single_c1", "redis_single_c8", "redis_single_c64"]
PAYI_APPENDERS = [1, 8, 64]


# ---------------------------------------------------------------- helpers

def write_json(path, obj):
    """Write obj to path atomically (tmp file + rename), so a reader never
    sees half a file."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


def write_text(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def run_version(cmd):
    """First line a command prints about its version, or None."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        text = (out.stdout or out.stderr).strip()
        return text.splitlines()[0] if text else None
    except (OSError, subprocess.SubprocessError):
        return None


def percentile(sorted_values, p):
    """Nearest-rank percentile (p in 0..100) of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def piece(engine, name, ok=True, error=None, **fields):
    d = {"engine": engine, "name": name, "ok": ok, "error": error}
    d.update(fields)
    return d


# ---------------------------------------------------------------- machine

def cpu_busy_fraction(interval=1.0):
    """Share of all CPU time not idle over `interval` seconds (iowait counts as
    busy: someone else's disk traffic disturbs an fsync benchmark as much as
    their CPU use)."""
    def sample():
        f = [int(x) for x in read_text("/proc/stat").splitlines()[0].split()[1:]]
        return sum(f[:8]), f[3]          # total (user..steal), idle
    t0, i0 = sample()
    time.sleep(interval)
    t1, i1 = sample()
    return round(1.0 - (i1 - i0) / (t1 - t0), 3) if t1 > t0 else None


def cmd_machine(a):
    cpu_model = None
    for line in read_text("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_kib = None
    m = re.search(r"^MemTotal:\s+(\d+) kB", read_text("/proc/meminfo"), re.M)
    if m:
        mem_kib = int(m.group(1))

    def df_line(path):
        r = subprocess.run(["df", "-P", "-T", path], capture_output=True, text=True)
        rows = r.stdout.strip().splitlines()
        if len(rows) < 2:
            return None
        f = rows[-1].split()
        return {"device": f[0], "fstype": f[1], "mount": f[-1],
                "available_bytes": int(f[4]) * 1024}

    def git(*args):
        r = subprocess.run(["git", "-C", a.repo] + list(args),
                           capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None

    payi = None
    if os.path.exists(a.payi_bin):
        st = os.stat(a.payi_bin)
        payi = {"path": a.payi_bin,
                "mtime": datetime.datetime.fromtimestamp(
                    st.st_mtime, datetime.timezone.utc).isoformat(timespec="seconds")}
    status = git("status", "--porcelain")
    write_json(a.out, piece(
        "machine", "machine",
        date_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        hostname=platform.node(),
        loadavg_at_start=[float(x) for x in read_text("/proc/loadavg").split()[:3]],
        cpu_busy_at_start=cpu_busy_fraction(),
        nproc=os.cpu_count(),
        kernel=platform.release(),
        cpu_model=cpu_model,
        mem_total_bytes=mem_kib * 1024 if mem_kib else None,
        scratch_dir=a.scratch,
        scratch_fs=df_line(a.scratch),
        repo_fs=df_line(a.repo),
        git_commit=git("rev-parse", "HEAD"),
        git_dirty=bool(status) if status is not None else None,
        payi_binary=payi,
        versions={
            "postgres": run_version(["/usr/lib/postgresql/15/bin/postgres", "--version"]),
            "pgbench": run_version(["pgbench", "--version"]),
            "redis_server": run_version(["redis-server", "--version"]),
            "redis_benchmark": run_version(["redis-benchmark", "--version"]),
            "python": platform.python_version(),
        }))


# ---------------------------------------------------------------- dd

# LC_ALL=C dd prints e.g.
#   1073741824 bytes (1.1 GB, 1.0 GiB) copied, 2.13564 s, 503 MB/s
DD_RE = re.compile(r"^(\d+) bytes .* copied, ([0-9.]+) s,", re.M)


def cmd_dd(a):
    runs, errors = [], []
    for path in a.outputs:
        m = DD_RE.search(read_text(path))
        if not m:
            errors.append("%s: no 'N bytes ... copied, S s' line" % os.path.basename(path))
            continue
        nbytes, secs = int(m.group(1)), float(m.group(2))
        runs.append({"bytes": nbytes, "seconds": secs,
                     "bytes_per_s": nbytes / secs if secs > 0 else None})
    rates = sorted(r["bytes_per_s"] for r in runs if r["bytes_per_s"])
    if not rates:
        write_json(a.out, piece("disk", "dd", ok=False,
                                error="; ".join(errors) or "no dd output"))
        return
    # Median, not best: this VM's disk varies run to run (0.5-1.7 GB/s seen),
    # and the median is the figure least moved by one lucky or unlucky run.
    median = rates[len(rates) // 2] if len(rates) % 2 else \
        (rates[len(rates) // 2 - 1] + rates[len(rates) // 2]) / 2
    write_json(a.out, piece(
        "disk", "dd", ok=not errors, error="; ".join(errors) or None,
        command="dd if=/dev/zero of=SCRATCH/dd bs=1M count=1024 conv=fdatasync",
        runs=runs, bytes_per_s=median, min_bytes_per_s=rates[0],
        max_bytes_per_s=rates[-1]))


# ---------------------------------------------------------------- pgbench

def parse_pgbench_logs(prefix):
    """Per-transaction latencies (µs) from pgbench --log files.  pgbench
    writes PREFIX.PID for thread 0 and PREFIX.PID.N for the others; the third
    column is the transaction's latency in µs (or a word for failures)."""
    lat, failed, files = [], 0, sorted(glob.glob(glob.escape(prefix) + ".*"))
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                cols = line.split()
                if len(cols) < 3:
                    continue
                if cols[2].isdigit():
                    lat.append(int(cols[2]))
                else:
                    failed += 1
    lat.sort()
    return lat, failed, len(files)


def cmd_pgbench(a):
    out = read_text(a.stdout)
    base = dict(kind=a.kind, clients=a.clients, threads=a.threads,
                rows_per_transaction=a.rows, seconds_requested=a.seconds,
                pgbench_output=out.strip().splitlines()[-12:])

    def num(pattern, conv=float):
        m = re.search(pattern, out, re.M)
        return conv(m.group(1)) if m else None

    tps = num(r"^tps = ([0-9.]+) \(without initial connection time\)")
    lat_avg = num(r"^latency average = ([0-9.]+) ms")
    processed = num(r"^number of transactions actually processed: (\d+)", int)
    failed = num(r"^number of failed transactions: (\d+)", int)
    duration = num(r"^duration: (\d+) s", int)

    problems = []
    if a.rc != 0:
        problems.append("pgbench exited %d" % a.rc)
    if tps is None:
        problems.append("no 'tps =' line in pgbench output")
    if failed is None:
        problems.append("no 'number of failed transactions' line")
    elif failed != 0:
        problems.append("%d failed transactions" % failed)

    lat, log_failed, nlogs = parse_pgbench_logs(a.log_prefix)
    if nlogs == 0:
        problems.append("no pgbench --log files")
    elif log_failed:
        problems.append("%d failed transactions in the --log files" % log_failed)

    verify = None
    if a.verify:
        # 'streams|rows|gapless' from the check query in append.sh.
        parts = a.verify.strip().split("|")
        try:
            verify = {"streams": int(parts[0]), "rows": int(parts[1]),
                      "gapless": parts[2] == "t"}
        except (IndexError, ValueError):
            problems.append("unreadable verification %r" % a.verify)
        if verify:
            if verify["streams"] != a.clients:
                problems.append("%d streams in the table, expected one per client (%d)"
                                % (verify["streams"], a.clients))
            if not verify["gapless"]:
                problems.append("some stream's versions are not 1..n without gaps")
            if processed is not None and verify["rows"] != processed * a.rows:
                problems.append("table has %d rows, pgbench reported %d x %d"
                                % (verify["rows"], processed, a.rows))
    else:
        problems.append("no table verification")

    events_per_s = tps * a.rows if tps is not None else None
    fields = dict(base,
                  seconds=duration, transactions=processed, failed_transactions=failed,
                  tps=tps, events_per_s=events_per_s,
                  latency_avg_ms=lat_avg,
                  tx_latency_samples=len(lat),
                  p50_us=percentile(lat, 50), p99_us=percentile(lat, 99),
                  p999_us=percentile(lat, 99.9),
                  verify=verify,
                  wal_bytes=a.wal_bytes,
                  wal_bytes_per_event=(a.wal_bytes / verify["rows"]
                                       if a.wal_bytes is not None and verify
                                       and verify["rows"] else None))
    write_json(a.out, piece("postgresql", a.name, ok=not problems,
                            error="; ".join(problems) or None, **fields))


# ---------------------------------------------------------------- redis

def cmd_redis(a):
    text = read_text(a.csv)
    row = None
    # redis-benchmark --csv: a header line, then one quoted row per test.
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    if len(rows) >= 2 and rows[0][:2] == ["test", "rps"]:
        row = dict(zip(rows[0], rows[1]))
    problems = []
    if a.rc != 0:
        problems.append("redis-benchmark exited %d" % a.rc)
    if row is None:
        problems.append("no CSV result from redis-benchmark")

    def f(key, scale=1.0):
        try:
            return float(row[key]) * scale if row else None
        except (KeyError, ValueError):
            return None

    # redis-benchmark counts error replies as completed requests, so the only
    # proof that every XADD appended an entry is the stream's length.
    if a.xlen is None:
        problems.append("stream length not checked")
    elif a.xlen != a.requests:
        problems.append("XLEN is %d after %d XADDs" % (a.xlen, a.requests))
    if a.aof_enabled is not None and a.aof_enabled != 1:
        problems.append("AOF is not enabled (aof_enabled:%s)" % a.aof_enabled)
    if a.appendfsync is not None and a.appendfsync != "always":
        problems.append("appendfsync is %r, not 'always'" % a.appendfsync)

    rps = f("rps")
    fields = dict(kind=a.kind, clients=a.clients, pipeline=a.pipeline,
                  requests=a.requests, calibration_rps=a.calibration_rps,
                  events_per_s=rps,
                  seconds=(a.requests / rps if rps else None),
                  latency_avg_ms=f("avg_latency_ms"),
                  p50_us=f("p50_latency_ms", 1000.0), p95_us=f("p95_latency_ms", 1000.0),
                  p99_us=f("p99_latency_ms", 1000.0), max_us=f("max_latency_ms", 1000.0),
                  xlen=a.xlen, aof_enabled=a.aof_enabled, appendfsync=a.appendfsync,
                  aof_bytes=a.aof_bytes,
                  aof_bytes_per_event=(a.aof_bytes / a.xlen
                                       if a.aof_bytes is not None and a.xlen else None),
                  csv=text.strip().splitlines())
    write_json(a.out, piece("redis", a.name, ok=not problems,
                            error="; ".join(problems) or None, **fields))


# ---------------------------------------------------------------- payi

def check_payi_shape(obj):
    """List what is wrong with payi's `bench append --json` object (empty if
    it has the agreed shape)."""
    problems = []
    if not isinstance(obj, dict):
        return ["not a JSON object"]
    if obj.get("bench") != "append":
        problems.append("bench is %r, not 'append'" % obj.get("bench"))
    b = obj.get("batched")
    if not isinstance(b, dict):
        problems.append("no 'batched' object")
    else:
        for k in ("events", "seconds", "events_per_s", "bytes_per_s", "batch_events"):
            if not isinstance(b.get(k), (int, float)):
                problems.append("batched.%s missing or not a number" % k)
    c = obj.get("concurrent")
    if not isinstance(c, list):
        problems.append("no 'concurrent' list")
    else:
        seen = {e.get("appenders"): e for e in c if isinstance(e, dict)}
        for n in PAYI_APPENDERS:
            e = seen.get(n)
            if e is None:
                problems.append("concurrent has no entry for %d appenders" % n)
                continue
            for k in ("events", "seconds", "events_per_s", "p50_us", "p99_us", "p999_us"):
                if not isinstance(e.get(k), (int, float)):
                    problems.append("concurrent[appenders=%d].%s missing or not a number"
                                    % (n, k))
    return problems


def cmd_payi(a):
    if a.missing:
        write_json(a.out, piece("payi", "payi", ok=False, error=a.missing,
                                status="missing", bin=a.bin))
        return
    out, err = read_text(a.stdout), read_text(a.stderr)
    problems, obj = [], None
    if a.rc != 0:
        problems.append("exited %d" % a.rc)
    if not out.strip():
        problems.append("printed nothing on stdout")
    else:
        try:
            obj = json.loads(out)
        except ValueError as e:
            problems.append("stdout is not one JSON object (%s)" % e)
    if obj is not None:
        problems += check_payi_shape(obj)
    warnings = []
    if isinstance(obj, dict):
        if obj.get("durability") != "fsync":
            warnings.append("payi reported durability %r, not 'fsync': the peers fsync "
                            "every acknowledged write, so this is not like for like"
                            % obj.get("durability"))
        if obj.get("payload_bytes") != 100:
            warnings.append("payi reported payload_bytes %r; the peers use 100"
                            % obj.get("payload_bytes"))
    write_json(a.out, piece("payi", "payi", ok=not problems,
                            error="; ".join(problems) or None,
                            status="ok" if not problems else "failed",
                            bin=a.bin, rc=a.rc, result=obj, warnings=warnings,
                            stderr_tail=err.strip().splitlines()[-20:]))


def cmd_busy(a):
    write_json(a.out, piece("machine", "busy_end", cpu_busy=cpu_busy_fraction()))


def cmd_error(a):
    write_json(a.out, piece(a.engine, a.name, ok=False, error=a.reason))


def add_machine_parsers(sub, machine=None):
    """The subcommands every bench's report has: `machine` (the machine's
    facts, before the first run; `machine` may wrap cmd_machine to add some)
    and `busy` (how busy the CPUs were, after the last run)."""
    s = sub.add_parser("machine")
    s.add_argument("--scratch", required=True)
    s.add_argument("--repo", required=True)
    s.add_argument("--payi-bin", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(fn=machine or cmd_machine)
    s = sub.add_parser("busy")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_busy)


# ---------------------------------------------------------------- combine

def load_pieces(directory):
    pieces = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        with open(path, encoding="utf-8") as f:
            p = json.load(f)
        pieces[(p["engine"], p["name"])] = p
    return pieces


def fmt_rate(x):
    return "—" if x is None else "{:,.0f}".format(x)


def fmt_bytes_rate(x):
    return "—" if x is None else "{:,.1f} MB/s".format(x / 1e6)


def fmt_us(x):
    if x is None:
        return "—"
    return "{:,.0f}".format(x) if x >= 100 else "{:.1f}".format(x)


def fmt_ratio(num, den):
    if num is None or not den:
        return "—"
    return "{:.2f}×".format(num / den)


def ok_value(p, key):
    """p[key] if the piece exists and measured successfully, else None."""
    if not p or not p.get("ok"):
        return None
    return p.get(key)


def build_targets(dd, payi_obj, pg, redis, payi_reason):
    """The three target checks.  Each has met = True / False, or None with a
    'why' when a figure needed for it is missing."""
    batched = (payi_obj or {}).get("batched") or {}
    conc = {e.get("appenders"): e for e in (payi_obj or {}).get("concurrent") or []
            if isinstance(e, dict)}
    dd_bps = ok_value(dd, "bytes_per_s")
    pg_batched = [(n, ok_value(pg.get(n), "events_per_s"))
                  for n in ("pg_batched_c1", "pg_batched_c8")]
    pg_best_name, pg_best = max(
        ((n, v) for n, v in pg_batched if v is not None),
        key=lambda t: t[1], default=(None, None))
    redis8 = ok_value(redis.get("redis_single_c8"), "events_per_s")

    def target(tid, text, value, reference, threshold, missing):
        t = {"id": tid, "text": text, "payi": value, "reference": reference,
             "threshold": threshold, "ratio": None, "met": None, "why": None,
             "payi_needs": reference * threshold if reference else None}
        if value is None or not reference:
            t["why"] = "; ".join(m for m in missing if m) or "figure missing"
        else:
            t["ratio"] = value / reference
            t["met"] = t["ratio"] >= threshold
        return t

    no_payi = None if payi_obj else ("payi's part is missing: " + (payi_reason or "not run"))
    return [
        target("a1", "payi batched bytes/s ≥ 60 % of dd sequential write bandwidth",
               batched.get("bytes_per_s"), dd_bps, TARGET_BYTES_VS_DD,
               [no_payi, None if dd_bps else "dd figure missing"]),
        target("a2", "payi batched events/s ≥ 15× the best PostgreSQL batched events/s"
               + (" (%s)" % pg_best_name if pg_best_name else ""),
               batched.get("events_per_s"), pg_best, TARGET_BATCHED_VS_PG,
               [no_payi, None if pg_best else "PostgreSQL batched figures missing"]),
        target("b", "payi at 8 concurrent appenders ≥ 5× Redis non-pipelined at 8 clients",
               (conc.get(8) or {}).get("events_per_s"), redis8, TARGET_CONC8_VS_REDIS,
               [no_payi, None if redis8 else "Redis -P 1 -c 8 figure missing"]),
    ]


def target_line(t):
    """One plain line per target: met / NOT MET with the numbers and the
    ratio, or NOT CHECKED with why and what payi would need."""
    bytes_target = t["id"] == "a1"

    def shown(x):
        return fmt_bytes_rate(x) if bytes_target else fmt_rate(x) + " events/s"

    def as_ratio(r, digits=2):
        if bytes_target:
            return "{:.{d}f} %".format(r * 100, d=max(digits - 1, 0))
        return "{:.{d}f}×".format(r, d=digits)

    if t["met"] is None:
        needs = (" (payi would need ≥ %s)" % shown(t["payi_needs"])) if t["payi_needs"] else ""
        return "- **(%s) NOT CHECKED** — %s. %s%s" % (t["id"], t["text"], t["why"], needs)
    verdict = "met" if t["met"] else "NOT MET"
    return "- **(%s) %s** — %s: payi %s vs %s → %s (needs ≥ %s)" % (
        t["id"], verdict, t["text"], shown(t["payi"]), shown(t["reference"]),
        as_ratio(t["ratio"]), as_ratio(t["threshold"], 0))


def busy_samples(machine):
    """[(when, fraction)] for the busy-CPU samples at or above BUSY_FRACTION."""
    out = []
    for key, when in (("cpu_busy_at_start", "before the start"),
                      ("cpu_busy_at_end", "after the last run")):
        b = machine.get(key)
        if b is not None and b >= BUSY_FRACTION:
            out.append((when, b))
    return out


def render_md(report):
    m = report["machine"]
    dd = report["disk"]
    payi = report["payi"]
    payi_obj = payi.get("result") if payi.get("ok") else None
    pg = report["postgresql"]["workloads"]
    rd = report["redis"]["workloads"]
    L = []
    L.append("# payi append benchmark")
    L.append("")
    L.append("Generated by `bench/run.sh` (bench/append.sh) at %s on %s: %s CPUs (%s), "
             "kernel %s, %s GiB RAM, scratch on %s (%s). payi commit %s%s."
             % (m.get("date_utc"), m.get("hostname"), m.get("nproc"), m.get("cpu_model"),
                m.get("kernel"),
                "{:.0f}".format(m["mem_total_bytes"] / 2**30) if m.get("mem_total_bytes") else "?",
                (m.get("scratch_fs") or {}).get("device"),
                (m.get("scratch_fs") or {}).get("fstype"),
                (m.get("git_commit") or "?")[:12], " (dirty tree)" if m.get("git_dirty") else ""))
    L.append("Peers: %s; %s. Every acknowledged write is fsynced by all three "
             "(payi durability=fsync, PostgreSQL synchronous_commit=on, Redis appendfsync "
             "always). Payload 100 bytes per event. What each number means: bench/README.md."
             % (m["versions"].get("postgres"), m["versions"].get("redis_server")))
    L.append("")

    busy = busy_samples(m)
    if busy:
        L.append("> **Warning:** the machine was busy %s, in a one-second sample taken while "
                 "no benchmark was running (share of CPU time not idle across %s CPUs): "
                 "something else was running, and numbers below may be low or noisy."
                 % (" and ".join("%s: %.0f %%" % (w, b * 100) for w, b in busy), m.get("nproc")))
        L.append("")
    if not payi.get("ok"):
        L.append("> **payi's part %s: %s.** The peer numbers below were measured; "
                 "payi's column is empty and no target could be checked."
                 % ("is MISSING" if payi.get("status") == "missing" else "FAILED",
                    payi.get("error")))
        L.append("")
    for w in payi.get("warnings") or []:
        L.append("> **Warning:** %s." % w)
        L.append("")

    # ---- throughput table
    batched = (payi_obj or {}).get("batched") or {}
    conc = {e.get("appenders"): e for e in (payi_obj or {}).get("concurrent") or []
            if isinstance(e, dict)}
    L.append("## Throughput (events/s, higher is better)")
    L.append("")
    L.append("| workload | payi | PostgreSQL | Redis | payi ÷ PostgreSQL | payi ÷ Redis |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: |")

    def row(label, payi_v, pg_name, rd_name):
        pv = ok_value(pg.get(pg_name), "events_per_s")
        rv = ok_value(rd.get(rd_name), "events_per_s")
        L.append("| %s | %s | %s | %s | %s | %s |" % (
            label, fmt_rate(payi_v), fmt_rate(pv), fmt_rate(rv),
            fmt_ratio(payi_v, pv), fmt_ratio(payi_v, rv)))

    bsize = batched.get("batch_events")
    per = batched.get("events_per_append")
    row("batched, 1 writer (payi %s events per submission in %s-event atomic appends; PG 100-row INSERT; Redis -P 100)"
        % (bsize if bsize is not None else "?", per if per is not None else "1"),
        batched.get("events_per_s"), "pg_batched_c1", "redis_pipelined_c1")
    b8 = (payi_obj or {}).get("batched_8") or {}
    row("batched, 8 writers (payi: 8 producers as above; PG 100-row INSERT; Redis -P 100)",
        b8.get("events_per_s"), "pg_batched_c8", "redis_pipelined_c8")
    for n in PAYI_APPENDERS:
        row("one event per durable write, %d writer%s" % (n, "s" if n > 1 else ""),
            (conc.get(n) or {}).get("events_per_s"),
            "pg_single_c%d" % n, "redis_single_c%d" % n)
    L.append("")

    # ---- latency table
    L.append("## Latency of one durable single-event append (µs, p50 / p99)")
    L.append("")
    L.append("| writers | payi | PostgreSQL | Redis |")
    L.append("| ---: | ---: | ---: | ---: |")

    def pair(p50, p99):
        if p50 is None and p99 is None:
            return "—"
        return "%s / %s" % (fmt_us(p50), fmt_us(p99))

    for n in PAYI_APPENDERS:
        c = conc.get(n) or {}
        pgp = pg.get("pg_single_c%d" % n) or {}
        rdp = rd.get("redis_single_c%d" % n) or {}
        L.append("| %d | %s | %s | %s |" % (
            n, pair(c.get("p50_us"), c.get("p99_us")),
            pair(ok_value(pgp, "p50_us"), ok_value(pgp, "p99_us")),
            pair(ok_value(rdp, "p50_us"), ok_value(rdp, "p99_us"))))
    L.append("")
    L.append("PostgreSQL: per-transaction latency from `pgbench --log`, as pgbench sees it "
             "over TCP. Redis: redis-benchmark's per-request latency over TCP. payi: "
             "in-process append call to acknowledgement.")
    L.append("")

    # ---- bytes
    L.append("## Bytes to disk")
    L.append("")
    runs = ", ".join(fmt_bytes_rate(r["bytes_per_s"]) for r in (dd.get("runs") or []))
    L.append("- dd sequential write (1 GiB, conv=fdatasync), median of %d run(s): **%s** "
             "(runs: %s)" % (len(dd.get("runs") or []), fmt_bytes_rate(dd.get("bytes_per_s")),
                             runs or "none"))
    L.append("- payi batched: %s written to its log files%s"
             % (fmt_bytes_rate(batched.get("bytes_per_s")),
                (" (%.1f %% of dd)" % (100 * batched["bytes_per_s"] / dd["bytes_per_s"]))
                if batched.get("bytes_per_s") and dd.get("bytes_per_s") else ""))
    for name in ("pg_batched_c1", "pg_batched_c8", "pg_single_c8"):
        p = pg.get(name) or {}
        if p.get("wal_bytes_per_event"):
            L.append("- PostgreSQL %s: %.0f WAL bytes per event" % (name, p["wal_bytes_per_event"]))
    for name in ("redis_pipelined_c1", "redis_single_c8"):
        p = rd.get(name) or {}
        if p.get("aof_bytes_per_event"):
            L.append("- Redis %s: %.0f AOF bytes per event" % (name, p["aof_bytes_per_event"]))
    L.append("")

    # ---- targets
    L.append("## Targets")
    L.append("")
    for t in report["targets"]:
        L.append(target_line(t))
    L.append("")

    # ---- failures
    failed = [p for p in list(pg.values()) + list(rd.values()) + [dd] if not p.get("ok")]
    if failed:
        L.append("## Failed measurements")
        L.append("")
        for p in failed:
            L.append("- %s %s: %s" % (p.get("engine"), p.get("name"), p.get("error")))
        L.append("")

    # ---- details
    L.append("## Peer runs in detail")
    L.append("")
    L.append("| run | clients | pipeline / rows per tx | seconds | events/s | avg latency ms | p50 µs | p99 µs |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in PG_WORKLOADS:
        p = pg.get(name) or {}
        L.append("| %s%s | %s | %s rows | %s | %s | %s | %s | %s |" % (
            name, "" if p.get("ok") else " (failed)", p.get("clients", "—"),
            p.get("rows_per_transaction", "—"), p.get("seconds", "—"),
            fmt_rate(p.get("events_per_s")), p.get("latency_avg_ms", "—"),
            fmt_us(p.get("p50_us")), fmt_us(p.get("p99_us"))))
    for name in REDIS_WORKLOADS:
        p = rd.get(name) or {}
        L.append("| %s%s | %s | -P %s | %s | %s | %s | %s | %s |" % (
            name, "" if p.get("ok") else " (failed)", p.get("clients", "—"),
            p.get("pipeline", "—"),
            "{:.1f}".format(p["seconds"]) if p.get("seconds") else "—",
            fmt_rate(p.get("events_per_s")), p.get("latency_avg_ms", "—"),
            fmt_us(p.get("p50_us")), fmt_us(p.get("p99_us"))))
    L.append("")
    L.append("Raw numbers, commands' output and machine facts: bench/results/append.json.")
    L.append("")
    return "\n".join(L)


def cmd_combine(a):
    pieces = load_pieces(a.pieces)
    machine = pieces.get(("machine", "machine"), {"versions": {}})
    machine["cpu_busy_at_end"] = (pieces.get(("machine", "busy_end")) or {}).get("cpu_busy")
    dd = pieces.get(("disk", "dd")) or piece("disk", "dd", ok=False, error="dd not run")
    payi = pieces.get(("payi", "payi")) or piece("payi", "payi", ok=False,
                                                 error="payi not run", status="missing")
    phase_errors = {e: p["error"] for (e, n), p in pieces.items() if n == "phase"}

    def workloads(engine, names):
        got = {}
        for n in names:
            got[n] = pieces.get((engine, n)) or piece(
                engine, n, ok=False,
                error=phase_errors.get(engine) or "not run")
        return got

    pg = workloads("postgresql", PG_WORKLOADS)
    rd = workloads("redis", REDIS_WORKLOADS)
    payi_obj = payi.get("result") if payi.get("ok") else None
    targets = build_targets(dd, payi_obj, pg, rd, payi.get("error"))

    report = {
        "bench": "append",
        "machine": machine,
        "disk": dd,
        "payi": payi,
        "postgresql": {"version": machine["versions"].get("postgres"), "workloads": pg},
        "redis": {"version": machine["versions"].get("redis_server"), "workloads": rd},
        "targets": targets,
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    write_json(a.json, report)
    write_text(a.md, render_md(report))

    # Tell the caller (and the person reading the terminal) plainly.
    for when, b in busy_samples(machine):
        print("bench: WARNING: the machine was %.0f %% busy %s; numbers may be low"
              % (b * 100, when), file=sys.stderr)
    for t in targets:
        print(target_line(t).replace("**", ""), file=sys.stderr)
    peer_failures = [p for p in list(pg.values()) + list(rd.values()) + [dd] if not p["ok"]]
    for p in peer_failures:
        print("bench: FAILED %s %s: %s" % (p["engine"], p["name"], p["error"]), file=sys.stderr)
    if payi.get("status") == "missing":
        print("bench: payi's part is MISSING (%s); peer numbers only." % payi.get("error"),
              file=sys.stderr)
    elif not payi.get("ok"):
        print("bench: payi's part FAILED: %s" % payi.get("error"), file=sys.stderr)
    if peer_failures or payi.get("status") == "failed" or \
            (a.require_payi and not payi.get("ok")):
        return 1
    return 0


# ---------------------------------------------------------------- main

def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    add_machine_parsers(sub)

    s = sub.add_parser("dd")
    s.add_argument("--out", required=True)
    s.add_argument("outputs", nargs="+")
    s.set_defaults(fn=cmd_dd)

    s = sub.add_parser("pgbench")
    s.add_argument("--out", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--kind", required=True, choices=["batched", "single"])
    s.add_argument("--clients", type=int, required=True)
    s.add_argument("--threads", type=int, required=True)
    s.add_argument("--rows", type=int, required=True)
    s.add_argument("--seconds", type=int, required=True)
    s.add_argument("--rc", type=int, required=True)
    s.add_argument("--stdout", required=True)
    s.add_argument("--log-prefix", required=True)
    s.add_argument("--verify")
    s.add_argument("--wal-bytes", type=int)
    s.set_defaults(fn=cmd_pgbench)

    s = sub.add_parser("redis")
    s.add_argument("--out", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--kind", required=True, choices=["pipelined", "single"])
    s.add_argument("--clients", type=int, required=True)
    s.add_argument("--pipeline", type=int, required=True)
    s.add_argument("--requests", type=int, required=True)
    s.add_argument("--rc", type=int, required=True)
    s.add_argument("--csv", required=True)
    s.add_argument("--xlen", type=int)
    s.add_argument("--aof-bytes", type=int)
    s.add_argument("--calibration-rps", type=float)
    s.add_argument("--aof-enabled", type=int)
    s.add_argument("--appendfsync")
    s.set_defaults(fn=cmd_redis)

    s = sub.add_parser("payi")
    s.add_argument("--out", required=True)
    s.add_argument("--bin", required=True)
    s.add_argument("--missing")
    s.add_argument("--rc", type=int, default=0)
    s.add_argument("--stdout", default="/dev/null")
    s.add_argument("--stderr", default="/dev/null")
    s.set_defaults(fn=cmd_payi)

    s = sub.add_parser("error")
    s.add_argument("--out", required=True)
    s.add_argument("--engine", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--reason", required=True)
    s.set_defaults(fn=cmd_error)

    s = sub.add_parser("combine")
    s.add_argument("--pieces", required=True)
    s.add_argument("--json", required=True)
    s.add_argument("--md", required=True)
    s.add_argument("--require-payi", action="store_true")
    s.set_defaults(fn=cmd_combine)

    a = ap.parse_args(argv)
    return a.fn(a) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
