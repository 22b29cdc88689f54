#!/usr/bin/python3
"""Parse the HTTP benchmark's outputs into JSON pieces, and combine them.

Stdlib only; run with /usr/bin/python3.  bench/http.sh calls one subcommand
per measurement, each writing one JSON "piece" into a directory; `combine`
reads them all and writes bench/results/http.json (every raw number) and
bench/results/http.md (the table, the ratios, the target checks).  Helpers
shared with the append bench (machine facts, busy-CPU sample, pgbench --log
parsing, percentiles) come from bench/lib/report.py.

A piece always has: engine, name, ok (bool), error (str or null), and here
also status: "ok", "failed", "missing" (payi binary absent) or "skipped"
(workload not available yet, e.g. POST /commands).

Subcommands:
  machine     --scratch DIR --repo DIR --payi-bin PATH --out F
  wrk         --out F --engine E --name N --path P --content-type T
              --events-per-request K --connections C --threads T --seconds S
              --keys K --rc RC --stdout F --cpu-before 'S T I' --cpu-after 'S T I'
              --clk-tck HZ
  payi-check  --piece F --head H --metrics F --serve-log F [--pid PID]
              (adds the acknowledgement check and /metrics to a payi wrk piece)
  jsonrate    --out F --rc RC --stdout F --stderr F
  pgbench     --out F --name N --clients C --threads J --seconds S --streams K
              --rc RC --stdout F --log-prefix P --script F [--verify 'streams|rows|gapless']
              [--settings S]
  error       --out F --engine E --name N --reason TEXT [--missing | --skipped]
  busy        --out F
  combine     --pieces DIR --json OUT --md OUT [--require-payi]
              exit 0: every measurement that ran passed its checks (payi
              measured, or absent and not required); 1 otherwise.  A missed
              target does not change the exit status.
"""

import argparse
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report as common  # noqa: E402  (bench/lib/report.py)

# The targets of the commands issue (issue 3, DESIGN.md section 7).
TARGET_VS_BARE_RPS = 0.60     # payi requests/s >= 60 % of the bare server's
TARGET_VS_BARE_P99 = 2.0      # payi p99 <= 2x the bare server's p99
TARGET_VS_PG = 10.0           # payi requests/s >= 10x PostgreSQL's
TARGET_NDJSON_VS_PARSE = 0.50  # NDJSON events/s >= 50 % of the parse-only rate

WORKLOADS = ["bare_single", "payi_single", "payi_ndjson", "payi_command", "pg_append", "json_rate"]

write_json = common.write_json
write_text = common.write_text
read_text = common.read_text
piece = common.piece
fmt_rate = common.fmt_rate
fmt_us = common.fmt_us


# ---------------------------------------------------------------- machine

def cmd_machine(a):
    common.cmd_machine(a)
    with open(a.out, encoding="utf-8") as f:
        m = json.load(f)
    v = m.setdefault("versions", {})
    v.pop("redis_server", None)
    v.pop("redis_benchmark", None)
    wrk = common.run_version(["wrk", "-v"])
    v["wrk"] = wrk.split(" Copyright")[0] if wrk else None
    v["libmicrohttpd"] = common.run_version(["pkg-config", "--modversion", "libmicrohttpd"])
    v["cc"] = common.run_version(["cc", "--version"])
    write_json(a.out, m)


# ---------------------------------------------------------------- wrk

def cpu_fields(before, after, clk_tck, requests, duration_s):
    """Server CPU and machine busy share over the run, from two cpu_sample
    lines 'server_ticks total_ticks idle_ticks'."""
    try:
        s0, t0, i0 = (int(x) for x in before.split())
        s1, t1, i1 = (int(x) for x in after.split())
    except (AttributeError, ValueError):
        return {}
    server_s = (s1 - s0) / clk_tck
    ncpu = os.cpu_count() or 1
    wall = (t1 - t0) / clk_tck / ncpu if t1 > t0 else None
    busy = 1.0 - (i1 - i0) / (t1 - t0) if t1 > t0 else None
    out = {"server_cpu_s": round(server_s, 3),
           "machine_busy": round(busy, 3) if busy is not None else None,
           "window_s": round(wall, 3) if wall else None}
    if requests:
        out["server_cpu_us_per_request"] = round(server_s * 1e6 / requests, 2)
    if duration_s and wall:
        # CPUs' worth used by the server while wrk ran (0..nproc).
        out["server_cpus"] = round(server_s / wall, 2)
        if busy is not None:
            out["other_cpus"] = round(busy * ncpu - server_s / wall, 2)   # mostly wrk
    return out


def cmd_wrk(a):
    out = read_text(a.stdout)
    problems, warnings = [], []
    m = re.search(r"^WRKJSON (\{.*\})\s*$", out, re.M)
    w = None
    if a.rc != 0:
        problems.append("wrk exited %d" % a.rc)
    if not m:
        problems.append("no WRKJSON line in wrk's output (did the lua script run?)")
    else:
        try:
            w = json.loads(m.group(1))
        except ValueError as e:
            problems.append("unreadable WRKJSON line (%s)" % e)
    fields = dict(path=a.path, content_type=a.content_type,
                  events_per_request=a.events_per_request, connections=a.connections,
                  threads=a.threads, seconds_requested=a.seconds, keys=a.keys,
                  wrk_output=[l for l in out.strip().splitlines() if not l.startswith("WRKJSON")][-16:])
    if w:
        dur = w["duration_us"] / 1e6
        lat = w["latency_us"]
        rps = w["requests"] / dur if dur > 0 else None
        fields.update(
            seconds=round(dur, 3), requests=w["requests"], requests_per_s=rps,
            events_per_s=(w["acked"] / dur if dur > 0 and a.engine == "payi" else None),
            p50_us=lat["p50"], p75_us=lat["p75"], p90_us=lat["p90"], p99_us=lat["p99"],
            p999_us=lat["p999"], p9999_us=lat["p9999"], max_us=lat["max"],
            mean_us=lat["mean"], stdev_us=lat["stdev"],
            sent_events=w["sent"], ok_responses=w["ok"], acked_events=w["acked"],
            non2xx=w["non2xx"], ndjson_line_errors=w["line_errors"],
            ndjson_bad_answers=w["bad_lines"], first_bad=w["first_bad"] or None,
            socket_errors=w["errors"], bytes_read=w["bytes"])
        if w["non2xx"]:
            problems.append("%d non-2xx answers (first: %s)" % (w["non2xx"], w["first_bad"]))
        if w["line_errors"]:
            problems.append("%d NDJSON lines answered with an error (first: %s)"
                            % (w["line_errors"], w["first_bad"]))
        if w["bad_lines"]:
            problems.append("%d NDJSON answers without one line per event" % w["bad_lines"])
        if w["ok"] != w["requests"] - w["non2xx"]:
            warnings.append("lua counted %d 2xx + %d other answers, wrk %d requests"
                            % (w["ok"], w["non2xx"], w["requests"]))
        e = w["errors"]
        sock = {k: v for k, v in e.items() if k != "status" and v}
        if sock:
            warnings.append("wrk socket errors: %s" % ", ".join("%s %d" % kv for kv in sorted(sock.items())))
        if w["requests"] == 0:
            problems.append("no request completed")
        fields.update(cpu_fields(a.cpu_before, a.cpu_after, a.clk_tck, w["requests"], dur))
    write_json(a.out, piece(a.engine, a.name, ok=not problems, error="; ".join(problems) or None,
                            status="ok" if not problems else "failed", warnings=warnings, **fields))


def parse_metrics(text):
    """The unlabelled payi_* samples of a Prometheus text page."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(payi_[a-z_]+) ([0-9.eE+-]+)$", line)
        if m:
            v = float(m.group(2))
            out[m.group(1)] = int(v) if v.is_integer() else v
    return out


def cmd_payi_check(a):
    with open(a.piece, encoding="utf-8") as f:
        p = json.load(f)
    problems = [p["error"]] if p.get("error") else []
    metrics = parse_metrics(read_text(a.metrics))
    head = int(a.head) if a.head and a.head.isdigit() else None
    check = {"head": head, "acked": p.get("acked_events"), "sent": p.get("sent_events")}
    if head is None:
        problems.append("GET /health gave no head after the run")
        check["ok"] = False
    elif check["acked"] is not None and check["sent"] is not None:
        # wrk stops at its deadline with requests in flight: payi may append
        # them without wrk reading the answer, so the head can exceed the
        # acknowledged count, by at most what was sent and not answered.
        check["in_flight_appended"] = head - check["acked"]
        check["in_flight_max"] = check["sent"] - check["acked"]
        check["ok"] = check["acked"] <= head <= check["sent"]
        if head < check["acked"]:
            problems.append("GET /health head %d < %d events acknowledged to wrk: acknowledged "
                            "events are missing" % (head, check["acked"]))
        elif head > check["sent"]:
            problems.append("GET /health head %d > %d events sent" % (head, check["sent"]))
    p["ack_check"] = check
    p["metrics"] = metrics
    fs, ev = metrics.get("payi_fsyncs_total"), metrics.get("payi_events_total")
    if fs and ev:
        p["events_per_fsync"] = round(ev / fs, 2)
        if p.get("seconds"):
            p["fsyncs_per_s"] = round(fs / p["seconds"], 1)
    p["serve_log_tail"] = read_text(a.serve_log).strip().splitlines()[-5:]
    p["ok"] = not problems
    p["error"] = "; ".join(problems) or None
    p["status"] = "ok" if not problems else "failed"
    write_json(a.piece, p)


# ---------------------------------------------------------------- JSON parse-only

def cmd_jsonrate(a):
    out, err = read_text(a.stdout), read_text(a.stderr)
    problems, obj = [], None
    if a.rc != 0:
        problems.append("json_rate exited %d: %s" % (a.rc, err.strip()[:300]))
    try:
        obj = json.loads(out)
    except ValueError:
        problems.append("json_rate printed no JSON object")
    fields = obj if isinstance(obj, dict) else {}
    write_json(a.out, piece("json", "json_rate", ok=not problems, error="; ".join(problems) or None,
                            status="ok" if not problems else "failed", **fields))


# ---------------------------------------------------------------- PostgreSQL

def cmd_pgbench(a):
    out = read_text(a.stdout)

    def num(pattern, conv=float):
        m = re.search(pattern, out, re.M)
        return conv(m.group(1)) if m else None

    tps = num(r"^tps = ([0-9.]+) \(without initial connection time\)")
    processed = num(r"^number of transactions actually processed: (\d+)", int)
    failed = num(r"^number of failed transactions: (\d+)", int)
    duration = num(r"^duration: (\d+) s", int)
    aborted = len(re.findall(r"^client \d+ aborted", out, re.M))
    problems = []
    if a.rc != 0:
        problems.append("pgbench exited %d" % a.rc)
    if tps is None:
        problems.append("no 'tps =' line in pgbench output")
    if failed is None:
        problems.append("no 'number of failed transactions' line")
    elif failed:
        problems.append("%d failed transactions" % failed)
    if aborted:
        problems.append("%d clients aborted (an error pgbench does not retry)" % aborted)
    lat, log_failed, nlogs = common.parse_pgbench_logs(a.log_prefix)
    if nlogs == 0:
        problems.append("no pgbench --log files")
    elif log_failed:
        problems.append("%d failed transactions in the --log files" % log_failed)
    verify = None
    if a.verify:
        parts = a.verify.strip().split("|")
        try:
            verify = {"streams": int(parts[0]), "rows": int(parts[1]), "gapless": parts[2] == "t"}
        except (IndexError, ValueError):
            problems.append("unreadable verification %r" % a.verify)
        if verify:
            if verify["streams"] > a.streams:
                problems.append("%d streams in the table, more than %d" % (verify["streams"], a.streams))
            if not verify["gapless"]:
                problems.append("some stream's versions are not 0..n-1 without gaps")
            if processed is not None and verify["rows"] != processed:
                problems.append("table has %d rows, pgbench reported %d transactions"
                                % (verify["rows"], processed))
    else:
        problems.append("no table verification")
    write_json(a.out, piece(
        "postgresql", a.name, ok=not problems, error="; ".join(problems) or None,
        status="ok" if not problems else "failed",
        clients=a.clients, threads=a.threads, seconds_requested=a.seconds, streams=a.streams,
        seconds=duration, transactions=processed, failed_transactions=failed,
        aborted_clients=aborted, tps=tps, requests_per_s=tps, events_per_s=tps,
        tx_latency_samples=len(lat),
        p50_us=common.percentile(lat, 50), p99_us=common.percentile(lat, 99),
        p999_us=common.percentile(lat, 99.9), max_us=lat[-1] if lat else None,
        verify=verify, settings=a.settings, script=read_text(a.script).splitlines(),
        pgbench_output=out.strip().splitlines()[-14:]))


# ---------------------------------------------------------------- small ones

def cmd_error(a):
    status = "missing" if a.missing else "skipped" if a.skipped else "failed"
    write_json(a.out, piece(a.engine, a.name, ok=False, error=a.reason, status=status))


def cmd_busy(a):
    common.cmd_busy(a)


# ---------------------------------------------------------------- combine

def ms(us):
    return "—" if us is None else "{:.2f}".format(us / 1000.0)


def measured(p, key):
    return p.get(key) if p and p.get("ok") else None


def build_targets(w):
    """The four target checks, on payi_command when it was measured, else on
    the raw append (payi_single)."""
    cmd = w.get("payi_command") or {}
    single = cmd if cmd.get("ok") else (w.get("payi_single") or {})
    label = "POST /commands" if cmd.get("ok") else "POST /streams (raw append)"
    bare, pg, nd, jr = (w.get(n) or {} for n in ("bare_single", "pg_append", "payi_ndjson", "json_rate"))

    def target(tid, text, value, reference, threshold, unit, higher_is_better=True, why_missing=()):
        t = {"id": tid, "text": text, "payi": value, "reference": reference,
             "threshold": threshold, "unit": unit, "ratio": None, "met": None, "why": None}
        if value is None or not reference:
            t["why"] = "; ".join(x for x in why_missing if x) or "figure missing"
        else:
            t["ratio"] = value / reference
            t["met"] = t["ratio"] >= threshold if higher_is_better else t["ratio"] <= threshold
        return t

    def why(p, what):
        if p.get("ok"):
            return None
        return "%s: %s" % (what, p.get("error") or "not run")

    return [
        target("h1", "payi %s requests/s ≥ 60 %% of the bare libmicrohttpd server's" % label,
               measured(single, "requests_per_s"), measured(bare, "requests_per_s"),
               TARGET_VS_BARE_RPS, "requests/s",
               why_missing=(why(single, "payi"), why(bare, "bare server"))),
        target("h2", "payi %s p99 ≤ 2× the bare server's p99" % label,
               measured(single, "p99_us"), measured(bare, "p99_us"), TARGET_VS_BARE_P99, "µs",
               higher_is_better=False,
               why_missing=(why(single, "payi"), why(bare, "bare server"))),
        target("h3", "payi %s requests/s ≥ 10× PostgreSQL append_event() transactions/s" % label,
               measured(single, "requests_per_s"), measured(pg, "tps"), TARGET_VS_PG, "requests/s",
               why_missing=(why(single, "payi"), why(pg, "PostgreSQL"))),
        target("h4", "payi NDJSON events/s ≥ 50 % of the parse-only rate of the same lines (1 thread)",
               measured(nd, "events_per_s"), measured(jr, "lines_per_s"), TARGET_NDJSON_VS_PARSE,
               "events/s", why_missing=(why(nd, "payi NDJSON"), why(jr, "parse-only"))),
    ]


def target_line(t):
    def shown(x):
        if t["unit"] == "µs":
            return "%s µs" % fmt_us(x)
        return "%s %s" % (fmt_rate(x), t["unit"])
    if t["met"] is None:
        return "- **(%s) not checked** — %s. %s" % (t["id"], t["text"], t["why"])
    verdict = "met" if t["met"] else "not met"
    if t["unit"] == "µs":
        ratio, need = "{:.2f}×".format(t["ratio"]), "≤ {:.0f}×".format(t["threshold"])
    elif t["threshold"] < 1:
        ratio, need = "{:.1f} %".format(t["ratio"] * 100), "≥ {:.0f} %".format(t["threshold"] * 100)
    else:
        ratio, need = "{:.2f}×".format(t["ratio"]), "≥ {:.0f}×".format(t["threshold"])
    return "- **(%s) %s** — %s: payi %s vs %s → %s (needs %s)" % (
        t["id"], verdict, t["text"], shown(t["payi"]), shown(t["reference"]), ratio, need)


def render_md(rep):
    m = rep["machine"]
    w = rep["workloads"]
    L = []
    L.append("# payi HTTP benchmark")
    L.append("")
    L.append("Generated by `bench/run.sh` (bench/http.sh) at %s on %s: %s CPUs (%s), kernel %s, "
             "scratch on %s (%s). payi commit %s%s. %s; %s; libmicrohttpd %s."
             % (m.get("date_utc"), m.get("hostname"), m.get("nproc"), m.get("cpu_model"),
                m.get("kernel"), (m.get("scratch_fs") or {}).get("device"),
                (m.get("scratch_fs") or {}).get("fstype"), (m.get("git_commit") or "?")[:12],
                " (dirty tree)" if m.get("git_dirty") else "",
                m["versions"].get("wrk"), m["versions"].get("postgres"),
                m["versions"].get("libmicrohttpd")))
    s = w.get("payi_single") or w.get("bare_single") or {}
    L.append("Load: `wrk -t%s -c%s -d%ss --latency`, keep-alive, wrk on the same 2 CPUs as the "
             "server; one POST per request to a stream chosen at random among %s; event "
             "`{\"type\":\"bench\",\"data\":<100-byte object>}`. Every payi append is durable "
             "(fsync) before its answer; PostgreSQL runs synchronous_commit=on. "
             "What each number means: bench/README.md."
             % (s.get("threads", "?"), s.get("connections", "?"), s.get("seconds_requested", "?"),
                s.get("keys", "?")))
    L.append("")
    cmd = w.get("payi_command") or {}
    if not cmd.get("ok"):
        L.append("> **These are raw-append figures.** The issue's targets are for `POST "
                 "/commands/{Name}`, which is %s; until it exists payi is measured on "
                 "`POST /streams/{stream}` (one event per request, and NDJSON batches), and "
                 "the targets below are checked against that."
                 % ("not built yet" if cmd.get("status") in (None, "skipped")
                    else "failing: %s" % cmd.get("error")))
        L.append("")
    for when, b in common.busy_samples(m):
        L.append("> **Warning:** the machine was %.0f %% busy %s (a one-second sample outside "
                 "the runs): something else was running; numbers may be low or noisy."
                 % (b * 100, when))
        L.append("")

    L.append("## Results")
    L.append("")
    L.append("| workload | requests/s | events/s | p50 ms | p99 ms | p99.9 ms | server CPU µs/request |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = [
        ("bare_single", "bare libmicrohttpd, constant 201 reply (the ceiling)"),
        ("payi_single", "payi POST /streams/{s}, 1 event per request"),
        ("payi_ndjson", "payi POST /streams/{s}, NDJSON, %s events per request"
         % ((w.get("payi_ndjson") or {}).get("events_per_request") or "?")),
        ("payi_command", "payi POST /commands/{Name}, 1 command per request"),
        ("pg_append", "PostgreSQL `SELECT append_event(...)`, pgbench -c %s"
         % ((w.get("pg_append") or {}).get("clients") or s.get("connections") or "?")),
    ]
    for name, label in rows:
        p = w.get(name) or {}
        if not p.get("ok"):
            L.append("| %s | %s | | | | | |" % (label, "not built yet" if p.get("status") == "skipped"
                                                else "missing" if p.get("status") == "missing"
                                                else "**failed**"))
            continue
        L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            label, fmt_rate(p.get("requests_per_s")),
            fmt_rate(p.get("events_per_s")) if name != "bare_single" else "—",
            ms(p.get("p50_us")), ms(p.get("p99_us")), ms(p.get("p999_us")),
            p.get("server_cpu_us_per_request", "—")))
    jr = w.get("json_rate") or {}
    L.append("| JSON parse-only of the same NDJSON lines (src/base/json.c, 1 thread, no HTTP) | — | %s | | | | |"
             % (fmt_rate(jr.get("lines_per_s")) if jr.get("ok") else "**failed**"))
    L.append("")
    L.append("Latency: wrk's, per request from write to full answer (p99.9 from the lua `done()`); "
             "PostgreSQL: per transaction from `pgbench --log`. Server CPU: utime+stime of the "
             "server process over the run ÷ requests (not for PostgreSQL).")
    L.append("")

    # ---- ratios & targets
    L.append("## Targets")
    L.append("")
    for t in rep["targets"]:
        L.append(target_line(t))
    L.append("")

    # ---- ack checks
    L.append("## Acknowledgement checks")
    L.append("")
    L.append("| workload | events sent | events acknowledged (2xx) | non-2xx | GET /health head | "
             "appended, answer unread at wrk's stop | check |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name in ("payi_single", "payi_ndjson", "payi_command"):
        p = w.get(name) or {}
        c = p.get("ack_check")
        if not c:
            continue
        L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            name, fmt_rate(c.get("sent")), fmt_rate(c.get("acked")), p.get("non2xx", "—"),
            fmt_rate(c.get("head")), fmt_rate(c.get("in_flight_appended")),
            "ok (acked ≤ head ≤ sent)" if c.get("ok") else "**FAILED**"))
    L.append("")
    L.append("wrk stops at its deadline with up to one request per connection in flight; payi "
             "appends those, but wrk never reads their answers. So the head is the acknowledged "
             "count plus those, and never less than the acknowledged count.")
    L.append("")

    # ---- where the time goes
    L.append("## Where the time goes")
    L.append("")
    for name in ("bare_single", "payi_single", "payi_ndjson"):
        p = w.get(name) or {}
        if not p.get("ok"):
            continue
        extra = ""
        if p.get("events_per_fsync"):
            extra = "; %s fsyncs/s, %s events per fsync (group commit)" % (
                fmt_rate(p.get("fsyncs_per_s")), p["events_per_fsync"])
        L.append("- %s: server used %s CPUs (%s µs CPU per request), the rest of the machine "
                 "(wrk, and anything else running) %s CPUs; machine %s %% busy%s." % (
                     name, p.get("server_cpus", "?"), p.get("server_cpu_us_per_request", "?"),
                     p.get("other_cpus", "?"),
                     "{:.0f}".format(p["machine_busy"] * 100) if p.get("machine_busy") is not None else "?",
                     extra))
    nd = w.get("payi_ndjson") or {}
    if nd.get("ok") and jr.get("ok") and nd.get("server_cpu_us_per_request") and nd.get("events_per_request"):
        per_event = nd["server_cpu_us_per_request"] / nd["events_per_request"]
        parse = 1e6 / jr["lines_per_s"]
        L.append("- NDJSON: payi spends %.2f µs of CPU per event end to end; parsing one line "
                 "alone takes %.3f µs (%.0f %% of it)." % (per_event, parse, 100 * parse / per_event))
    L.append("")

    # ---- PostgreSQL semantics
    pg = w.get("pg_append") or {}
    L.append("## PostgreSQL: what was run")
    L.append("")
    L.append("`append_event(stream, type, data)` takes `pg_advisory_xact_lock(hashtextextended(stream, 0))`, "
             "reads the stream's last version (`ORDER BY version DESC LIMIT 1`) and inserts the next "
             "one into `events(position bigserial primary key, stream, version, type, data jsonb, "
             "unique(stream, version))`. The per-stream lock makes concurrent appends to one stream "
             "queue instead of colliding on the unique constraint (pgbench 15 would abort the client "
             "on that error), so every transaction appends exactly one event, versions gapless from 0.")
    if pg.get("verify"):
        v = pg["verify"]
        L.append("After the run: %s streams, %s rows (= %s transactions), every stream gapless: %s; "
                 "failed transactions %s, aborted clients %s. Settings: %s."
                 % (v["streams"], fmt_rate(v["rows"]), fmt_rate(pg.get("transactions")),
                    "yes" if v["gapless"] else "**no**", pg.get("failed_transactions"),
                    pg.get("aborted_clients"), pg.get("settings")))
    L.append("")

    failed = [p for p in w.values() if not p.get("ok") and p.get("status") not in ("skipped",)]
    warn = [(p["name"], x) for p in w.values() for x in p.get("warnings") or []]
    if failed or warn:
        L.append("## Failed measurements and warnings")
        L.append("")
        for p in failed:
            L.append("- %s %s (%s): %s" % (p.get("engine"), p.get("name"), p.get("status"), p.get("error")))
        for n, x in warn:
            L.append("- %s: %s" % (n, x))
        L.append("")
    L.append("Raw numbers, wrk/pgbench output, /metrics and machine facts: bench/results/http.json.")
    L.append("")
    return "\n".join(L)


def cmd_combine(a):
    pieces = common.load_pieces(a.pieces)
    machine = pieces.get(("machine", "machine"), {"versions": {}})
    machine["cpu_busy_at_end"] = (pieces.get(("machine", "busy_end")) or {}).get("cpu_busy")
    w = {}
    for (engine, name), p in pieces.items():
        if engine != "machine":
            w[name] = p
    for n in WORKLOADS:
        w.setdefault(n, piece("?", n, ok=False, error="not run", status="failed"))
    targets = build_targets(w)
    rep = {"bench": "http", "machine": machine,
           "workloads": {n: w[n] for n in WORKLOADS + sorted(set(w) - set(WORKLOADS))},
           "targets": targets,
           "note": "The issue's targets are for POST /commands/{Name}; unless workloads.payi_command "
                   "is ok they are checked against the raw append POST /streams/{stream}."}
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    write_json(a.json, rep)
    write_text(a.md, render_md(rep))

    for when, b in common.busy_samples(machine):
        print("bench: WARNING: the machine was %.0f %% busy %s; numbers may be low" % (b * 100, when),
              file=sys.stderr)
    for t in targets:
        print(target_line(t).replace("**", ""), file=sys.stderr)
    rc = 0
    for n in WORKLOADS:
        p = w[n]
        if p.get("ok") or p.get("status") == "skipped":
            continue
        if p.get("status") == "missing":
            print("bench: %s is MISSING (%s)" % (n, p.get("error")), file=sys.stderr)
            if a.require_payi:
                rc = 1
            continue
        print("bench: FAILED %s: %s" % (n, p.get("error")), file=sys.stderr)
        rc = 1
    return rc


# ---------------------------------------------------------------- main

def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("machine")
    s.add_argument("--scratch", required=True)
    s.add_argument("--repo", required=True)
    s.add_argument("--payi-bin", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_machine)

    s = sub.add_parser("wrk")
    for k in ("--out", "--engine", "--name", "--path", "--content-type", "--stdout"):
        s.add_argument(k, required=True)
    for k in ("--events-per-request", "--connections", "--threads", "--seconds", "--keys", "--rc",
              "--clk-tck"):
        s.add_argument(k, type=int, required=True)
    s.add_argument("--cpu-before")
    s.add_argument("--cpu-after")
    s.set_defaults(fn=cmd_wrk)

    s = sub.add_parser("payi-check")
    s.add_argument("--piece", required=True)
    s.add_argument("--head", default="")
    s.add_argument("--metrics", required=True)
    s.add_argument("--serve-log", required=True)
    s.set_defaults(fn=cmd_payi_check)

    s = sub.add_parser("jsonrate")
    s.add_argument("--out", required=True)
    s.add_argument("--rc", type=int, required=True)
    s.add_argument("--stdout", required=True)
    s.add_argument("--stderr", required=True)
    s.set_defaults(fn=cmd_jsonrate)

    s = sub.add_parser("pgbench")
    for k in ("--out", "--name", "--stdout", "--log-prefix", "--script"):
        s.add_argument(k, required=True)
    for k in ("--clients", "--threads", "--seconds", "--streams", "--rc"):
        s.add_argument(k, type=int, required=True)
    s.add_argument("--verify")
    s.add_argument("--settings")
    s.set_defaults(fn=cmd_pgbench)

    s = sub.add_parser("error")
    s.add_argument("--out", required=True)
    s.add_argument("--engine", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--reason", required=True)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--missing", action="store_true")
    g.add_argument("--skipped", action="store_true")
    s.set_defaults(fn=cmd_error)

    s = sub.add_parser("busy")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_busy)

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
