#!/usr/bin/python3
"""Parse the view benchmark's outputs into JSON pieces, and combine them.

Stdlib only; run with /usr/bin/python3.  bench/views.sh calls one subcommand
per phase, each writing one JSON "piece" into a directory; `combine` reads
them all and writes bench/results/views.json (every raw number) and
bench/results/views.md (the tables, the ratios, the target checks, where the
time goes).  Machine facts and the busy-CPU sample come from
bench/lib/report.py.

A piece always has: engine, name, ok (bool), error (str or null).

Subcommands:
  machine  --scratch DIR --repo DIR --payi-bin PATH --out F
  busy     --out F
  error    --out F --name N --reason TEXT
  payi     --out F --name N --rc RC --stdout F --stderr F --cmd F
           [--pg-version V] [--pg-settings S] [--server-ticks T] [--metrics F]
           [--spec-file F]
           (the JSON object printed by payi bench views / views-latency)
  perf     --out F --data PERF.DATA --bench-json F --binary PATH
           (perf report of the view threads of each run, by symbol and by
           part of the code: "where the time goes")
  combine  --pieces DIR --json OUT --md OUT --events N --peer-seconds S
           --latency-rate R --latency-seconds S [--require-payi]
           exit 0: every phase that ran passed its checks (payi measured, or
           absent and not required); 1 otherwise.  A missed target does not
           change the exit status.
"""

import argparse
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report as common  # noqa: E402  (bench/lib/report.py)

# Targets (the views issue; DESIGN.md section 7: view maintenance, sum/count by key).
TARGET_FOLD_PER_CORE = 5_000_000     # events/s per core folded
TARGET_SQLITE_PER_CORE = 1_000_000   # events/s per core into SQLite
TARGET_VS_PG_UPSERT = 20.0           # x the PostgreSQL upsert way
TARGET_P99_US = 5000.0               # command ack -> change, p99, at 10k commands/s

write_json = common.write_json
read_text = common.read_text
piece = common.piece

# Where the time goes: a sample's part of the code, from its library and, for
# payi's own symbols, the source file that defines the symbol (nm -l).
FOLD_PARTS = ("payi: log read", "payi: view fold", "payi: expressions", "payi: typed fields", "payi: base")
STORE_PARTS = ("payi: store", "SQLite", "libpq")


# ---------------------------------------------------------------- small pieces

def cmd_error(a):
    write_json(a.out, piece("payi", a.name, ok=False, error=a.reason))


def tail(path, n=20):
    try:
        return read_text(path).strip().splitlines()[-n:]
    except OSError:
        return []


def cmd_payi(a):
    out = read_text(a.stdout) if os.path.exists(a.stdout) else ""
    obj, problems = None, []
    try:
        obj = json.loads(out) if out.strip() else None
    except ValueError as e:
        problems.append("payi printed something other than one JSON object (%s)" % e)
    if a.rc == 124:
        problems.append("killed by timeout")
    elif a.rc != 0:
        problems.append("exit status %d" % a.rc)
    if obj is None and not problems:
        problems.append("no output")
    extra = {}
    if a.server_ticks is not None:
        extra["server_cpu_s"] = a.server_ticks / float(os.sysconf("SC_CLK_TCK"))
    if a.metrics and os.path.exists(a.metrics):
        keep = {}
        for line in read_text(a.metrics).splitlines():
            m = re.match(r"^(payi_[a-z_]+)(\{[^}]*\})?\s+([0-9.eE+-]+)$", line)
            if m and ("view" in m.group(1) or "fsync" in m.group(1) or "command" in m.group(1)):
                keep[m.group(1) + (m.group(2) or "")] = float(m.group(3))
        extra["metrics"] = keep
    if a.spec_file and os.path.exists(a.spec_file):
        extra["spec_views"] = re.findall(r"CREATE\s+VIEW\s+(\w+)", read_text(a.spec_file))
    write_json(a.out, piece("payi", a.name, ok=not problems, error="; ".join(problems) or None,
                            rc=a.rc, result=obj, command=read_text(a.cmd).strip() if a.cmd else None,
                            stderr_tail=tail(a.stderr), pg_version=a.pg_version,
                            pg_settings=a.pg_settings, **extra))


# ---------------------------------------------------------------- perf

# --sort pid,dso,sym with -n: "  3.87%   197   28185:payi   payi   [.] fold_batch"
PERF_LINE = re.compile(r"^\s*([0-9.]+)%\s+(\d+)\s+(\d+):\S*\s+(\S+)\s+\[(.)\]\s+(.+?)\s*$")


def symbol_files(binary):
    """{symbol: 'src/dir/file.c'} for the binary's functions (nm -l)."""
    r = subprocess.run(["nm", "-l", "--defined-only", binary], capture_output=True, text=True, timeout=60)
    files = {}
    for line in r.stdout.splitlines():
        f = line.split("\t")
        head = f[0].split()
        if len(f) < 2 or len(head) < 3 or head[1] not in "tTwW":
            continue
        path = f[1].rsplit(":", 1)[0]
        i = path.find("/src/")
        files[head[2]] = path[i + 1:] if i >= 0 else path
    return files


def part_of(dso, kind, sym, files):
    if kind == "k" or dso.startswith("[kernel"):
        return "kernel"
    if "sqlite" in dso:
        return "SQLite"
    if "libpq" in dso:
        return "libpq"
    if dso.startswith("libc") or dso.startswith("ld-linux"):
        return "libc"
    if dso == "payi":
        base = re.sub(r"\.(constprop|isra|part|cold)(\.\d+)?", "", sym)
        f = files.get(sym) or files.get(base) or ""
        if f.startswith("src/log/"):
            return "payi: log read"
        if f.startswith("src/view/"):
            return "payi: view fold"
        if f == "src/spec/expr.c":
            return "payi: expressions"
        if f == "src/spec/schema.c":
            return "payi: typed fields"
        if f.startswith("src/store/"):
            return "payi: store"
        if f.startswith("src/base/") or f.startswith("src/event/"):
            return "payi: base"
        return "payi: other"
    return "other (%s)" % dso


def perf_samples(data):
    """{tid: [(samples, dso, kind, symbol)]}: self samples by thread and symbol (one perf report;
    perf report's --tid filter miscounted here, so the threads are split from --sort pid)."""
    cmd = ["perf", "report", "-i", data, "--stdio", "--no-children", "-g", "none", "-n",
           "--sort", "pid,dso,sym", "--percent-limit", "0"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    by_tid = {}
    for line in r.stdout.splitlines():
        m = PERF_LINE.match(line)
        if m:
            by_tid.setdefault(int(m.group(3)), []).append(
                (int(m.group(2)), m.group(4), m.group(5), m.group(6)))
    return by_tid, (r.stderr.strip().splitlines() or [""])[-1]


def profile(by_tid, tids, files, top=25):
    merged = {}
    for t in tids:
        for n, dso, kind, sym in by_tid.get(t, []):
            merged[(dso, kind, sym)] = merged.get((dso, kind, sym), 0) + n
    samples = sum(merged.values())
    rows = sorted(((100.0 * n / samples, dso, kind, sym) for (dso, kind, sym), n in merged.items()),
                  key=lambda x: -x[0]) if samples else []
    parts = {}
    for pct, dso, kind, sym in rows:
        p = part_of(dso, kind, sym, files)
        parts[p] = parts.get(p, 0.0) + pct
    fold = sum(parts.get(p, 0.0) for p in FOLD_PARTS)
    store = sum(parts.get(p, 0.0) for p in STORE_PARTS)
    return {
        "tids": tids, "samples": samples,
        "parts_pct": {k: round(v, 2) for k, v in sorted(parts.items(), key=lambda kv: -kv[1])},
        "fold_pct": round(fold, 2), "store_pct": round(store, 2),
        "top": [{"pct": round(pct, 2), "dso": dso, "symbol": sym, "part": part_of(dso, kind, sym, files)}
                for pct, dso, kind, sym in rows[:top]],
    }


def cmd_perf(a):
    bench = json.loads(read_text(a.bench_json))
    files = symbol_files(a.binary)
    by_tid, err = perf_samples(a.data)
    runs = []
    for run in bench.get("runs", []):
        if not run.get("threads_mapped"):
            runs.append({"views": run.get("views"), "store": run.get("store"), "error": "view threads not known"})
            continue
        tids = [v["tid"] for v in run["per_view"]]
        entry = {"views": run["views"], "store": run["store"], "all": profile(by_tid, tids, files, top=30),
                 "per_view": {}}
        for v in run["per_view"]:
            entry["per_view"][v["name"]] = profile(by_tid, [v["tid"]], files, top=12)
        runs.append(entry)
    write_json(a.out, piece("perf", "perf", ok=bool(by_tid), error=None if by_tid else "perf report: " + err,
                            event="cpu-clock", frequency=999, runs=runs,
                            note="self time by symbol (--no-children), samples of the view threads only"))


# ---------------------------------------------------------------- combine

def load_pieces(directory):
    out = {}
    for f in sorted(os.listdir(directory)):
        if f.endswith(".json"):
            with open(os.path.join(directory, f)) as fh:
                p = json.load(fh)
            out[p["name"]] = p
    return out


def fmt_rate(x):
    return common.fmt_rate(x) if x is not None else "—"


def fmt_s(x, d=2):
    return ("{:.%df}" % d).format(x) if x is not None else "—"


def fmt_x(x):
    return "{:.2f}×".format(x) if x is not None else "—"


def fmt_us(x):
    if x is None:
        return "—"
    return "{:,.0f}".format(x) if abs(x) >= 100 else "{:.1f}".format(x)


def div(a, b):
    return a / b if a is not None and b else None


def find_run(p, views, kind):
    for r in ((p or {}).get("result") or {}).get("runs", []):
        if r.get("views") == views and r.get("store_kind") == kind:
            return r
    return None


def find_peer(p, kind, pipeline=None):
    for r in ((p or {}).get("result") or {}).get("peers", []):
        if r.get("store_kind") == kind and (pipeline is None or r.get("pipeline") == pipeline):
            return r
    return None


def run_cpu_with_server(r):
    if not r:
        return None
    return (r.get("process_cpu_s") or 0) + (r.get("server_cpu_s") or 0)


def perf_run(perf, views):
    for r in (perf or {}).get("runs", []):
        if r.get("views") == views:
            return r
    return None


def fold_estimate(events, view, prof):
    """Fold-only rate estimates from a view's thread CPU and its perf samples:
    conservative = events / (thread CPU x share of samples NOT in the store code: SQLite, libpq,
    payi's src/store), counting all kernel and libc time as folding; optimistic = events / (thread
    CPU x share in payi's own fold code: src/log, src/view, expr.c, schema.c, src/base)."""
    if not view or not prof or not prof.get("samples") or not view.get("thread_cpu_s"):
        return None
    cpu = view["thread_cpu_s"]
    rest = 100.0 - prof["store_pct"]
    return {"conservative": events / (cpu * rest / 100.0) if rest > 0 else None,
            "optimistic": events / (cpu * prof["fold_pct"] / 100.0) if prof["fold_pct"] > 0 else None}


def fmt_est(e):
    if not e:
        return "—"
    return "%s – %s" % (fmt_rate(e.get("conservative")), fmt_rate(e.get("optimistic")))


def target(tid, text, value, reference, ok, how, missing=None):
    if value is None:
        return {"id": tid, "text": text, "status": "NOT CHECKED", "how": missing or how}
    return {"id": tid, "text": text, "status": "MET" if ok else "NOT MET", "value": value,
            "reference": reference, "how": how}


def build(pieces, a):
    sq, pg = pieces.get("sqlite"), pieces.get("postgres")
    perf = pieces.get("perf")
    lat_all, lat_q17 = pieces.get("latency_all"), pieces.get("latency_q17")
    events = ((sq or {}).get("result") or {}).get("events") or a.events
    sq_all, sq_q17 = find_run(sq, "all", "sqlite"), find_run(sq, "q17", "sqlite")
    pg_all, pg_q17 = find_run(pg, "all", "postgresql"), find_run(pg, "q17", "postgresql")
    peer_sq = find_peer(sq, "sqlite")
    peer_pg, peer_pg_sync = find_peer(pg, "postgresql", True), find_peer(pg, "postgresql", False)
    perf_all, perf_q17 = perf_run(perf, "all"), perf_run(perf, "q17")

    # Fold-only estimates (per view of the all-views SQLite run, and q17 alone).
    estimates = {}
    for v in (sq_all or {}).get("per_view", []):
        prof = ((perf_all or {}).get("per_view") or {}).get(v["name"])
        estimates[v["name"]] = fold_estimate(events, v, prof)
    q17_alone_view = ((sq_q17 or {}).get("per_view") or [None])[0]
    q17_alone_prof = ((perf_q17 or {}).get("per_view") or {}).get("q17")
    q17_fold = fold_estimate(events, q17_alone_view, q17_alone_prof)

    targets = []
    q17_cons = (q17_fold or {}).get("conservative")
    targets.append(target(
        "v1", "≥ 5M events/s per core folded (sum/count by key: q17)", q17_cons, TARGET_FOLD_PER_CORE,
        q17_cons is not None and q17_cons >= TARGET_FOLD_PER_CORE,
        "ESTIMATE, no fold-only measurement exists (the engine always writes to a store): q17 alone into "
        "SQLite, events ÷ (its thread CPU × the share of its perf samples outside SQLite and the store "
        "code); counting only payi's own fold code (log, view, expressions, typed fields) instead gives %s"
        % fmt_rate((q17_fold or {}).get("optimistic")),
        "needs the perf profile of the SQLite phase (BENCH_PERF=1)"))
    q17_sq_core = div(events, (sq_q17 or {}).get("process_cpu_s"))
    targets.append(target(
        "v2", "≥ 1M events/s per core into SQLite (sum/count by key: q17)", q17_sq_core,
        TARGET_SQLITE_PER_CORE, q17_sq_core is not None and q17_sq_core >= TARGET_SQLITE_PER_CORE,
        "events ÷ payi's process CPU seconds, q17 alone folded into SQLite from position 0 to the head"))
    r_pg = div((pg_q17 or {}).get("events_per_s"), (peer_pg or {}).get("events_per_s"))
    targets.append(target(
        "v3", "≥ 20× the PostgreSQL upsert way (q17 into PostgreSQL)", r_pg, TARGET_VS_PG_UPSERT,
        r_pg is not None and r_pg >= TARGET_VS_PG_UPSERT,
        "events/s (wall) of payi's q17 view into PostgreSQL ÷ events/s of one upsert per bid, 1,000 per "
        "transaction, pipelined (the faster of the two PostgreSQL peers)"))
    lat_res = (lat_all or {}).get("result") or {}
    worst = None
    for v in lat_res.get("views", []):
        p99 = (v.get("ack_to_change_us") or {}).get("p99")
        if p99 is not None and (worst is None or p99 > worst[1]):
            worst = (v["name"], p99)
    rate_ok = lat_res.get("achieved_rate") is not None and lat_res["achieved_rate"] >= 0.95 * a.latency_rate
    targets.append(target(
        "v4", "p99 ≤ 5 ms from a command's acknowledgement to its change on /views/{name}/changes at "
        "10k commands/s", worst[1] if worst else None, TARGET_P99_US,
        worst is not None and worst[1] <= TARGET_P99_US and rate_ok,
        "worst p99 over the watched views (%s) of a server with all seven views; sent at %s/s%s"
        % (", ".join(v["name"] for v in lat_res.get("views", [])), fmt_rate(lat_res.get("achieved_rate")),
           "" if rate_ok else " — BELOW 95 % of the rate asked, which counts as not met")))

    ok = all(p.get("ok") for k, p in pieces.items() if k not in ("machine", "busy_end", "perf"))
    payi_missing = not sq or (sq.get("error") or "").endswith("does not exist")
    machine = pieces.get("machine", {"versions": {}})
    machine["cpu_busy_at_end"] = (pieces.get("busy_end") or {}).get("cpu_busy")
    return {
        "bench": "views", "machine": machine, "events": events,
        "config": {"events": a.events, "peer_seconds": a.peer_seconds, "latency_rate": a.latency_rate,
                   "latency_seconds": a.latency_seconds},
        "phases": {k: v for k, v in pieces.items() if k not in ("machine", "busy_end")},
        "summary": {
            "sqlite_all": sq_all, "sqlite_q17": sq_q17, "postgres_all": pg_all, "postgres_q17": pg_q17,
            "peer_sqlite": peer_sq, "peer_postgres_pipelined": peer_pg, "peer_postgres_sync": peer_pg_sync,
            "fold_only_estimates": estimates, "q17_alone_fold_only_estimate": q17_fold,
        },
        "targets": targets, "ok": ok, "payi_missing": payi_missing,
    }


def render_md(rep):
    m, s = rep["machine"], rep["summary"]
    ph = rep["phases"]
    events = rep["events"]
    gen = (((ph.get("sqlite") or {}).get("result") or {}).get("generate")) or {}
    L = ["# payi view benchmark (Nexmark)", ""]
    L.append("Generated by `bench/views.sh` (`bench/run.sh views`) at %s on %s: %s CPUs (%s), kernel %s, "
             "scratch on %s (%s), load average at start %s. payi commit %s%s. %s."
             % (m.get("date_utc"), m.get("hostname"), m.get("nproc"), m.get("cpu_model"), m.get("kernel"),
                (m.get("scratch_fs") or {}).get("device"), (m.get("scratch_fs") or {}).get("fstype"),
                " / ".join(str(x) for x in (m.get("loadavg_at_start") or [])),
                (m.get("git_commit") or "?")[:12], " (dirty tree)" if m.get("git_dirty") else "",
                (ph.get("postgres") or {}).get("pg_version") and "PostgreSQL " + ph["postgres"]["pg_version"]
                or m["versions"].get("postgres")))
    L.append("")
    L.append("Events: %s Nexmark events from `payi bench views` (seed 42; %s persons, %s auctions, %s bids; "
             "event time at Nexmark's default 10M events/s from 2024-01-01), typed, in one log, appended at "
             "%s events/s (fsync). Views: `bench/specs/nexmark.payi` (q0, q1, q2, q12, q15, q16, q17). "
             "Every figure is measured from position 0 to the head on a fresh store; \"per core\" is "
             "events ÷ CPU seconds (never ÷ wall). What each number means: bench/README.md."
             % (fmt_rate(events), fmt_rate(gen.get("persons")), fmt_rate(gen.get("auctions")),
                fmt_rate(gen.get("bids")), fmt_rate(gen.get("events_per_s"))))
    L.append("")
    for when, b in common.busy_samples(m):
        L.append("> **Warning:** the machine was %.0f %% busy %s (a one-second sample outside the runs): "
                 "something else was running; numbers may be low or noisy." % (b * 100, when))
        L.append("")
    for name, p in sorted(ph.items()):
        if name != "perf" and not p.get("ok"):
            L.append("> **%s failed:** %s" % (name, p.get("error") or "see views.json"))
            L.append("")

    L.append("## End to end: all seven views")
    L.append("")
    L.append("One thread per view, each reading every event of the log; the run ends when the last view "
             "reaches the head.")
    L.append("")
    L.append("| store | wall s | events/s (wall) | payi CPU s | events/s per core (payi CPU) | "
             "view-events/s per core (events × 7 ÷ payi CPU) | server CPU s | events/s per core (payi + server CPU) |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, r in (("SQLite", s["sqlite_all"]), ("PostgreSQL", s["postgres_all"])):
        if not r:
            L.append("| %s | not measured | | | | | | |" % label)
            continue
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, fmt_s(r["wall_s"]), fmt_rate(r.get("events_per_s")), fmt_s(r["process_cpu_s"]),
            fmt_rate(r.get("events_per_process_cpu_s")), fmt_rate(r.get("view_events_per_process_cpu_s")),
            fmt_s(r.get("server_cpu_s")), fmt_rate(r.get("events_per_cpu_s_with_server"))))
    L.append("")
    L.append("Per view (thread CPU = the CPU time of that view's thread: fold + its store writes; the "
             "PostgreSQL server's work is not in it):")
    L.append("")
    L.append("| view | rows | SQLite: done at s | thread CPU s | events/s per core | fold-only estimate (perf): "
             "conservative – optimistic "
             "| PostgreSQL: done at s | thread CPU s | events/s per core (payi side) |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    pgv = {v["name"]: v for v in (s["postgres_all"] or {}).get("per_view", [])}
    for v in (s["sqlite_all"] or {}).get("per_view", []):
        p = pgv.get(v["name"], {})
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            v["name"], fmt_rate(v.get("rows")), fmt_s(v.get("done_s")), fmt_s(v.get("thread_cpu_s")),
            fmt_rate(v.get("events_per_thread_cpu_s")), fmt_est(s["fold_only_estimates"].get(v["name"])),
            fmt_s(p.get("done_s")), fmt_s(p.get("thread_cpu_s")), fmt_rate(p.get("events_per_thread_cpu_s"))))
    L.append("")

    L.append("## q17 alone, and the usual way")
    L.append("")
    L.append("q17's aggregate (per auction and day: count, three filtered counts, min, max, sum; avg) over the "
             "same events. payi: the q17 view alone, from position 0 to the head. The usual way: one "
             "prepared `INSERT ... ON CONFLICT (auction, day) DO UPDATE` per bid, 1,000 per transaction, "
             "the bids taken from memory (no log to read), for at most %s s." % rep["config"]["peer_seconds"])
    L.append("")
    L.append("| way | store | events | wall s | events/s (wall) | CPU s (client + server) | events/s per core | "
             "payi q17 ÷ this (wall) | payi q17 ÷ this (per core) |")
    L.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

    def payi_row(label, r):
        if not r:
            L.append("| %s | not measured | | | | | | | |" % label)
            return
        cpu = run_cpu_with_server(r)
        L.append("| %s | %s | %s | %s | %s | %s + %s | %s | | |" % (
            label, r["store_kind"], fmt_rate(r["events"]), fmt_s(r["wall_s"]), fmt_rate(r.get("events_per_s")),
            fmt_s(r["process_cpu_s"]), fmt_s(r.get("server_cpu_s")), fmt_rate(div(r["events"], cpu))))

    def peer_row(label, p, against):
        if not p:
            L.append("| %s | not measured | | | | | | | |" % label)
            return
        acpu = run_cpu_with_server(against)
        a_core = div((against or {}).get("events"), acpu)
        L.append("| %s | %s | %s | %s | %s | %s + %s | %s | %s | %s |" % (
            label, p["store_kind"], fmt_rate(p["events"]), fmt_s(p["wall_s"]), fmt_rate(p.get("events_per_s")),
            fmt_s(p["client_cpu_s"]), fmt_s(p.get("server_cpu_s")), fmt_rate(p.get("events_per_cpu_s")),
            fmt_x(div((against or {}).get("events_per_s"), p.get("events_per_s"))),
            fmt_x(div(a_core, p.get("events_per_cpu_s")))))

    payi_row("payi, q17 view", s["sqlite_q17"])
    peer_row("upsert per bid (in process)", s["peer_sqlite"], s["sqlite_q17"])
    payi_row("payi, q17 view", s["postgres_q17"])
    peer_row("upsert per bid, pipelined", s["peer_postgres_pipelined"], s["postgres_q17"])
    peer_row("upsert per bid, one round trip each", s["peer_postgres_sync"], s["postgres_q17"])
    L.append("")

    L.append("## Latency: command acknowledged → change on /views/{name}/changes")
    L.append("")
    L.append("`payi serve` (fsync durability, SQLite store) with an empty log; `payi bench views-latency` sends "
             "`POST /commands/PlaceBid` (one Nexmark bid per command) at a fixed rate over 128 keep-alive "
             "connections and reads the SSE streams in the same process; latency = arrival of the change "
             "that makes the command visible − arrival of its acknowledgement (row view q0: the change "
             "carrying its event_position; q17: the first change of its auction whose total_bids reaches "
             "the command's rank). µs.")
    L.append("")
    L.append("| server's views | watched | sent/s (unanswered) | ack p50 / p99 | change − ack p50 | p90 | p99 | p99.9 | max | "
             "before ack | unmatched (resets) | server CPUs |")
    L.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, p in (("all seven", ph.get("latency_all")), ("q17 only", ph.get("latency_q17"))):
        r = (p or {}).get("result")
        if not r:
            L.append("| %s | not measured: %s | | | | | | | | | | |" % (label, (p or {}).get("error")))
            continue
        span = rep["config"]["latency_seconds"]
        cpus = div(p.get("server_cpu_s"), span)
        for v in r.get("views", []):
            d = v.get("ack_to_change_us") or {}
            L.append("| %s | %s | %s (%s) | %s / %s | %s | %s | %s | %s | %s | %s | %s (%s) | %s |" % (
                label, v["name"], fmt_rate(r.get("achieved_rate")), r.get("unanswered", "?"),
                fmt_us((r.get("ack_us") or {}).get("p50")),
                fmt_us((r.get("ack_us") or {}).get("p99")), fmt_us(d.get("p50")), fmt_us(d.get("p90")),
                fmt_us(d.get("p99")), fmt_us(d.get("p999")), fmt_us(d.get("max")), v.get("before_ack"),
                v.get("unmatched"), v.get("resets"), fmt_s(cpus)))
    L.append("")

    L.append("## Targets")
    L.append("")
    for t in rep["targets"]:
        if t["status"] == "NOT CHECKED":
            L.append("- **%s** %s: **NOT CHECKED** — %s" % (t["id"], t["text"], t["how"]))
            continue
        v, ref = t["value"], t["reference"]
        if t["id"] == "v3":
            shown = "%s (target %s×)" % (fmt_x(v), ref)
        elif t["id"] == "v4":
            shown = "%s µs (target ≤ %s µs)" % (fmt_us(v), fmt_us(ref))
        else:
            shown = "%s events/s per core (target %s)" % (fmt_rate(v), fmt_rate(ref))
        L.append("- **%s** %s: **%s** — %s. %s." % (t["id"], t["text"], t["status"], shown, t["how"]))
    L.append("")

    perf = ph.get("perf")
    if perf and perf.get("runs"):
        L.append("## Where the time goes (perf, SQLite phase)")
        L.append("")
        L.append("`perf record -e cpu-clock -F 999 -g` around the SQLite phase; samples of the view threads "
                 "only, self time. Parts: payi's symbols by the source file that defines them (log read = "
                 "src/log, view fold = src/view, expressions = src/spec/expr.c, typed fields = "
                 "src/spec/schema.c, base = src/base + src/event, store = src/store), SQLite, libc, kernel. "
                 "\"fold\" = log read + view fold + expressions + typed fields + base.")
        L.append("")
        names = ["payi: log read", "payi: view fold", "payi: expressions", "payi: typed fields", "payi: base",
                 "payi: store", "SQLite", "libc", "kernel"]
        L.append("| threads | samples | fold % | store % | " + " | ".join(names) + " |")
        L.append("| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in names) + " |")
        for run in perf["runs"]:
            if "all" not in run:
                continue
            if len(run["per_view"]) > 1:
                rows = [("run %s: every view thread" % run["views"], run["all"])]
                rows += [("run %s: %s" % (run["views"], k), v) for k, v in run["per_view"].items()]
            else:
                rows = [("run %s: %s" % (run["views"], k), v) for k, v in run["per_view"].items()]
            for label, pr in rows:
                parts = pr.get("parts_pct", {})
                L.append("| %s | %s | %s | %s | %s |" % (
                    label, fmt_rate(pr.get("samples")), fmt_s(pr.get("fold_pct"), 1), fmt_s(pr.get("store_pct"), 1),
                    " | ".join(fmt_s(parts.get(n), 1) for n in names)))
        L.append("")
        for run in perf["runs"]:
            if "all" not in run:
                continue
            L.append("Top symbols, run `%s` into SQLite (self %%, its view threads):" % run["views"])
            L.append("")
            L.append("| % | library | symbol | part |")
            L.append("| ---: | --- | --- | --- |")
            for t in run["all"]["top"][:20]:
                L.append("| %.2f | %s | `%s` | %s |" % (t["pct"], t["dso"], t["symbol"], t["part"]))
            L.append("")
    L.append("Raw numbers, the commands, per-view profiles and machine facts: bench/results/views.json.")
    L.append("")
    return "\n".join(L)


def cmd_combine(a):
    pieces = load_pieces(a.pieces)
    rep = build(pieces, a)
    write_json(a.json, rep)
    common.write_text(a.md, render_md(rep))
    for when, b in common.busy_samples(rep["machine"]):
        print("bench: WARNING: the machine was %.0f %% busy %s; numbers may be low" % (b * 100, when),
              file=sys.stderr)
    if rep["payi_missing"]:
        return 1 if a.require_payi else 0
    return 0 if rep["ok"] else 1


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    common.add_machine_parsers(sub)
    s = sub.add_parser("error")
    s.add_argument("--out", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--reason", required=True)
    s.set_defaults(fn=cmd_error)
    s = sub.add_parser("payi")
    s.add_argument("--out", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--rc", type=int, required=True)
    s.add_argument("--stdout", required=True)
    s.add_argument("--stderr", required=True)
    s.add_argument("--cmd")
    s.add_argument("--pg-version")
    s.add_argument("--pg-settings")
    s.add_argument("--server-ticks", type=int)
    s.add_argument("--metrics")
    s.add_argument("--spec-file")
    s.set_defaults(fn=cmd_payi)
    s = sub.add_parser("perf")
    s.add_argument("--out", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--bench-json", required=True)
    s.add_argument("--binary", required=True)
    s.set_defaults(fn=cmd_perf)
    s = sub.add_parser("combine")
    s.add_argument("--pieces", required=True)
    s.add_argument("--json", required=True)
    s.add_argument("--md", required=True)
    s.add_argument("--events", type=int, required=True)
    s.add_argument("--peer-seconds", type=float, required=True)
    s.add_argument("--latency-rate", type=float, required=True)
    s.add_argument("--latency-seconds", type=float, required=True)
    s.add_argument("--require-payi", action="store_true")
    s.set_defaults(fn=cmd_combine)
    a = ap.parse_args(argv)
    return a.fn(a) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
