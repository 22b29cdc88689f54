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
(not run on purpose, e.g. BENCH_RAW_APPENDS=0).

Subcommands:
  machine     --scratch DIR --repo DIR --payi-bin PATH --out F
  wrk         --out F --engine E --name N --path P --content-type T
              --events-per-request K --connections C --threads T --seconds S
              --keys K --rc RC --stdout F --cpu-before 'S T I' --cpu-after 'S T I'
              --clk-tck HZ
  payi-check  --piece F --head H [--head-before H0] --metrics F --serve-log F
              [--stream-file KEY=NDJSON ...]
              (adds the acknowledgement check, /metrics and the read-back
              check of a few counter streams to a payi wrk piece)
  jsonrate    --out F --name N --rc RC --stdout F --stderr F [--lines-file F]
  pgbench     --out F --name N --clients C --threads J --seconds S --streams K
              --rc RC --stdout F --log-prefix P --script F
              [--verify 'streams|rows|gapless[|totals]'] [--settings S]
  perf        --out F --workload N --self F --children F --comm F --dso F
              (perf report --stdio texts: the "where the time goes" breakdown)
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

# The targets of the commands issue (issue 3, DESIGN.md section 7), all on
# POST /commands/{Name}: one command per request (payi_command) against the
# bare server and PostgreSQL's count_command (pg_command), NDJSON batches of
# commands (payi_command_ndjson) against the parse-only rate of the same
# command lines (json_rate_command).
TARGET_VS_BARE_RPS = 0.60     # payi requests/s >= 60 % of the bare server's
TARGET_VS_BARE_P99 = 2.0      # payi p99 <= 2x the bare server's p99
TARGET_VS_PG = 10.0           # payi requests/s >= 10x PostgreSQL's
TARGET_NDJSON_VS_PARSE = 0.50  # NDJSON commands/s >= 50 % of the parse-only rate

WORKLOADS = ["bare_single", "payi_command", "payi_command_ndjson", "payi_single", "payi_ndjson",
             "pg_command", "pg_append", "json_rate_command", "json_rate"]

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


def stream_check(specs):
    """Read back a few counter streams (payi read --stream c-kN, NDJSON): the
    versions are 0..n-1, every event is Counted for its key, and its total is
    the sum of the stream's n's up to it (the command read the right state)."""
    out = {"streams": [], "problems": []}
    for spec in specs:
        key, _, path = spec.partition("=")
        events = []
        for i, line in enumerate(read_text(path).splitlines()):
            if not line.strip():
                continue
            try:
                events.append(json.loads(line))
            except ValueError:
                out["problems"].append("c-%s line %d is not JSON" % (key, i + 1))
                break
        total, bad = 0, None
        for v, e in enumerate(events):
            d = e.get("data") or {}
            total += d.get("n", 0) if isinstance(d.get("n"), int) else 0
            if e.get("version") != v:
                bad = "version %s at index %d" % (e.get("version"), v)
            elif e.get("type") != "Counted" or d.get("key") != key:
                bad = "event %d is %s for key %s" % (v, e.get("type"), d.get("key"))
            elif d.get("total") != total:
                bad = "version %d total %s, sum of n's %d" % (v, d.get("total"), total)
            if bad:
                out["problems"].append("c-%s: %s" % (key, bad))
                break
        out["streams"].append({"stream": "c-" + key, "events": len(events),
                               "last_total": total if not bad else None, "ok": bad is None})
    if not any(s["events"] for s in out["streams"]):
        out["problems"].append("no event read back from %d streams" % len(out["streams"]))
    out["ok"] = not out["problems"]
    return out


def cmd_payi_check(a):
    with open(a.piece, encoding="utf-8") as f:
        p = json.load(f)
    problems = [p["error"]] if p.get("error") else []
    metrics = parse_metrics(read_text(a.metrics))
    head = int(a.head) if a.head and a.head.isdigit() else None
    head0 = int(a.head_before) if a.head_before and a.head_before.isdigit() else 0
    # The head before the run: events the server wrote itself (a spec
    # registers its event schemas at start), not sent by wrk.
    appended = head - head0 if head is not None else None
    check = {"head": head, "head_before": head0, "appended": appended,
             "acked": p.get("acked_events"), "sent": p.get("sent_events")}
    if head is None:
        problems.append("GET /health gave no head after the run")
        check["ok"] = False
    elif check["acked"] is not None and check["sent"] is not None:
        # wrk stops at its deadline with requests in flight: payi may append
        # them without wrk reading the answer, so the head can exceed the
        # acknowledged count, by at most what was sent and not answered.
        check["in_flight_appended"] = appended - check["acked"]
        check["in_flight_max"] = check["sent"] - check["acked"]
        check["ok"] = check["acked"] <= appended <= check["sent"]
        if appended < check["acked"]:
            problems.append("GET /health head %d - %d = %d events appended < %d acknowledged to "
                            "wrk: acknowledged events are missing"
                            % (head, head0, appended, check["acked"]))
        elif appended > check["sent"]:
            problems.append("GET /health head %d - %d = %d events appended > %d events sent"
                            % (head, head0, appended, check["sent"]))
    p["ack_check"] = check
    if a.stream_file:
        sc = stream_check(a.stream_file)
        p["stream_check"] = sc
        if not sc["ok"]:
            problems.append("read-back of counter streams: %s" % "; ".join(sc["problems"][:3]))
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
    if a.lines_file:
        lines = [l for l in read_text(a.lines_file).splitlines() if l.strip()]
        fields["line_sample"] = lines[0] if lines else None
        fields["line_bytes"] = len(lines[0].encode()) if lines else None
    write_json(a.out, piece("json", a.name, ok=not problems, error="; ".join(problems) or None,
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
            if len(parts) > 3:
                verify["totals"] = parts[3] == "t"
        except (IndexError, ValueError):
            problems.append("unreadable verification %r" % a.verify)
        if verify:
            if verify["streams"] > a.streams:
                problems.append("%d streams in the table, more than %d" % (verify["streams"], a.streams))
            if not verify["gapless"]:
                problems.append("some stream's versions are not 0..n-1 without gaps")
            if verify.get("totals") is False:
                problems.append("some event's total is not the sum of its stream's n's up to it")
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


# ---------------------------------------------------------------- perf

PERF_LINE = re.compile(r"^\s+([0-9.]+)%\s+(?:([0-9.]+)%\s+)?(.*?)\s*$")


def perf_rows(path):
    """(percent, second percent or None, label) rows of a perf report --stdio
    text, plus the header's sample count."""
    rows, samples = [], None
    for line in read_text(path).splitlines():
        if line.startswith("#"):
            m = re.match(r"^# Samples: (\S+)", line)
            if m and samples is None:
                samples = m.group(1)
            continue
        m = PERF_LINE.match(line)
        if not m:
            continue
        label = re.sub(r"(\s+-)+$", "", m.group(3)).strip()
        rows.append((float(m.group(1)), float(m.group(2)) if m.group(2) else None, label))
    return rows, samples


def is_named_symbol(label):
    """A resolved symbol ("[k] name" or "[.] name"), not a bare address."""
    name = label[4:] if label[:4] in ("[k] ", "[.] ") else label
    return bool(name) and not re.match(r"^(0x)?[0-9a-f]+$", name)


def cmd_perf(a):
    self_rows, samples = perf_rows(a.self)
    child_rows, _ = perf_rows(a.children)
    comm_rows, _ = perf_rows(a.comm)
    dso_rows, _ = perf_rows(a.dso)
    top = [{"percent": pct, "symbol": lab} for pct, _, lab in self_rows if is_named_symbol(lab)][:20]
    # User-space entry points, inclusive: with kernel call chains (the binary
    # has no frame pointers, so user-space chains stop at the leaf), a libc
    # syscall wrapper's "children" share is the syscall's whole kernel cost.
    entries = [{"inclusive": pct, "self": self_pct, "symbol": lab}
               for pct, self_pct, lab in child_rows
               if lab.startswith("[.] ") and is_named_symbol(lab) and pct >= 1.0][:15]
    problems = [] if self_rows else ["perf report gave no rows"]
    write_json(a.out, piece("perf", "perf", ok=not problems, error="; ".join(problems) or None,
                            status="ok" if not problems else "failed", workload=a.workload,
                            samples=samples, event="cpu-clock, 999 Hz, -g (kernel call chains)",
                            top_self=top, entry_points_inclusive=entries,
                            threads=[{"percent": p_, "thread": lab} for p_, _, lab in comm_rows][:8],
                            dsos=[{"percent": p_, "dso": lab} for p_, _, lab in dso_rows][:8]))


# ---------------------------------------------------------------- small ones

def cmd_error(a):
    status = "missing" if a.missing else "skipped" if a.skipped else "failed"
    write_json(a.out, piece(a.engine, a.name, ok=False, error=a.reason, status=status))


# ---------------------------------------------------------------- combine

def ms(us):
    return "—" if us is None else "{:.2f}".format(us / 1000.0)


def measured(p, key):
    return p.get(key) if p and p.get("ok") else None


def make_target(tid, text, value, reference, threshold, unit, higher_is_better=True, why_missing=()):
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


def yardsticks(w, ids, single_name, ndjson_name, pg_name, parse_name, what):
    """(h1)-(h4) for one pair of payi workloads: single requests vs the bare
    server and PostgreSQL, NDJSON vs the parse-only rate of the same lines."""
    single, nd = w.get(single_name) or {}, w.get(ndjson_name) or {}
    bare, pg, jr = (w.get(n) or {} for n in ("bare_single", pg_name, parse_name))
    pg_fn = "count_command()" if pg_name == "pg_command" else "append_event()"
    unit = "commands/s" if parse_name == "json_rate_command" else "events/s"
    return [
        make_target(ids[0], "payi %s, one per request: requests/s ≥ 60 %% of the bare "
                    "libmicrohttpd server's" % what,
                    measured(single, "requests_per_s"), measured(bare, "requests_per_s"),
                    TARGET_VS_BARE_RPS, "requests/s",
                    why_missing=(why(single, "payi"), why(bare, "bare server"))),
        make_target(ids[1], "payi %s, one per request: p99 ≤ 2× the bare server's p99" % what,
                    measured(single, "p99_us"), measured(bare, "p99_us"), TARGET_VS_BARE_P99, "µs",
                    higher_is_better=False,
                    why_missing=(why(single, "payi"), why(bare, "bare server"))),
        make_target(ids[2], "payi %s, one per request: requests/s ≥ 10× PostgreSQL %s "
                    "transactions/s (pgbench, same concurrency)" % (what, pg_fn),
                    measured(single, "requests_per_s"), measured(pg, "tps"), TARGET_VS_PG, "requests/s",
                    why_missing=(why(single, "payi"), why(pg, "PostgreSQL"))),
        make_target(ids[3], "payi %s in NDJSON batches: %s ≥ 50 %% of the parse-only rate of the "
                    "same lines (1 thread)" % (what, unit),
                    measured(nd, "events_per_s"), measured(jr, "lines_per_s"), TARGET_NDJSON_VS_PARSE,
                    unit, why_missing=(why(nd, "payi NDJSON"), why(jr, "parse-only"))),
    ]


def build_targets(w):
    """The four targets of the issue, on POST /commands/Count."""
    return yardsticks(w, ("h1", "h2", "h3", "h4"), "payi_command", "payi_command_ndjson",
                      "pg_command", "json_rate_command", "commands")


def build_raw_yardsticks(w):
    """The same four comparisons for the raw append (for reference, not targets)."""
    if all((w.get(n) or {}).get("status") == "skipped" for n in ("payi_single", "payi_ndjson")):
        return []
    return yardsticks(w, ("r1", "r2", "r3", "r4"), "payi_single", "payi_ndjson",
                      "pg_append", "json_rate", "raw appends (POST /streams)")


def target_line(t):
    def shown(x):
        if t["unit"] == "µs":
            return "%s µs" % fmt_us(x)
        return "%s %s" % (fmt_rate(x), t["unit"])
    if t["met"] is None:
        return "- **(%s) NOT CHECKED** — %s. %s" % (t["id"], t["text"], t["why"])
    verdict = "MET" if t["met"] else "NOT MET"
    if t["unit"] == "µs":
        ratio, need = "{:.2f}×".format(t["ratio"]), "≤ {:.0f}×".format(t["threshold"])
    elif t["threshold"] < 1:
        ratio, need = "{:.1f} %".format(t["ratio"] * 100), "≥ {:.0f} %".format(t["threshold"] * 100)
    else:
        ratio, need = "{:.2f}×".format(t["ratio"]), "≥ {:.0f}×".format(t["threshold"])
    return "- **(%s) %s** — %s: payi %s vs %s → %s (needs %s)" % (
        t["id"], verdict, t["text"], shown(t["payi"]), shown(t["reference"]), ratio, need)


def unit_cpu(p):
    """Server CPU µs per command/event (per request ÷ its events)."""
    c, k = p.get("server_cpu_us_per_request"), p.get("events_per_request")
    if c is None or not k:
        return None
    return c / k


def render_md(rep):
    m = rep["machine"]
    w = rep["workloads"]
    L = []
    L.append("# payi HTTP benchmark")
    L.append("")
    L.append("Generated by `bench/http.sh` (`payi bench http`, `bench/run.sh http`) at %s on %s: "
             "%s CPUs (%s), kernel %s, scratch on %s (%s). payi commit %s%s. %s; %s; libmicrohttpd %s."
             % (m.get("date_utc"), m.get("hostname"), m.get("nproc"), m.get("cpu_model"),
                m.get("kernel"), (m.get("scratch_fs") or {}).get("device"),
                (m.get("scratch_fs") or {}).get("fstype"), (m.get("git_commit") or "?")[:12],
                " (dirty tree)" if m.get("git_dirty") else "",
                m["versions"].get("wrk"), m["versions"].get("postgres"),
                m["versions"].get("libmicrohttpd")))
    s = w.get("payi_command") or w.get("bare_single") or {}
    L.append("Load: `wrk -t%s -c%s -d%ss --latency`, keep-alive, wrk on the same 2 CPUs as the "
             "server; one POST per request, its key chosen at random among %s. The command is "
             "`Count` of `bench/specs/counter.payi`: `POST /commands/Count` with "
             "`{\"key\":\"k<key>\",\"n\":1}`; it reads the counter's state (stream `c-k<key>`), "
             "checks it and emits one `Counted` event with the new total. Every payi answer is sent "
             "after its event is durable (fsync); PostgreSQL runs synchronous_commit=on. "
             "What each number means: bench/README.md."
             % (s.get("threads", "?"), s.get("connections", "?"), s.get("seconds_requested", "?"),
                s.get("keys", "?")))
    L.append("")
    for when, b in common.busy_samples(m):
        L.append("> **Warning:** the machine was %.0f %% busy %s (a one-second sample outside "
                 "the runs): something else was running; numbers may be low or noisy."
                 % (b * 100, when))
        L.append("")

    def cell_status(p):
        st = p.get("status")
        return ("skipped" if st == "skipped" else "missing" if st == "missing" else "**failed**")

    def result_rows(rows):
        for name, label in rows:
            p = w.get(name) or {}
            if not p.get("ok"):
                L.append("| %s | %s | | | | | | |" % (label, cell_status(p)))
                continue
            uc = unit_cpu(p)
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                label, fmt_rate(p.get("requests_per_s")),
                fmt_rate(p.get("events_per_s")) if name != "bare_single" else "—",
                ms(p.get("p50_us")), ms(p.get("p99_us")), ms(p.get("p999_us")),
                p.get("server_cpu_us_per_request", "—"),
                "{:.2f}".format(uc) if uc is not None and name != "bare_single" else "—"))

    def parse_row(name, label):
        jr = w.get(name) or {}
        if jr.get("status") == "skipped":
            return
        L.append("| %s | — | %s | | | | | %s |" % (
            label, fmt_rate(jr.get("lines_per_s")) if jr.get("ok") else cell_status(jr),
            "{:.3f} (parse only)".format(1e6 / jr["lines_per_s"]) if jr.get("ok") and jr.get("lines_per_s") else ""))

    nd_lines = ((w.get("payi_command_ndjson") or {}).get("events_per_request")
                or (w.get("payi_ndjson") or {}).get("events_per_request") or "?")
    clients = (w.get("pg_command") or {}).get("clients") or s.get("connections") or "?"
    L.append("## Results: commands (the targets)")
    L.append("")
    L.append("| workload | requests/s | commands/s | p50 ms | p99 ms | p99.9 ms | server CPU µs/request | µs/command |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    result_rows([
        ("bare_single", "bare libmicrohttpd, constant 201 reply, same requests (the ceiling)"),
        ("payi_command", "payi POST /commands/Count, 1 command per request"),
        ("payi_command_ndjson", "payi POST /commands/Count, NDJSON, %s commands per request" % nd_lines),
        ("pg_command", "PostgreSQL `SELECT count_command(key, 1)`, pgbench -c %s" % clients),
    ])
    parse_row("json_rate_command", "JSON parse-only of the same command lines (src/base/json.c, 1 thread, no HTTP)")
    L.append("")

    L.append("## Targets")
    L.append("")
    for t in rep["targets"]:
        L.append(target_line(t))
    L.append("")

    if rep.get("raw_yardsticks"):
        L.append("## Raw appends (POST /streams), for reference")
        L.append("")
        L.append("| workload | requests/s | events/s | p50 ms | p99 ms | p99.9 ms | server CPU µs/request | µs/event |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        result_rows([
            ("payi_single", "payi POST /streams/s-{n}, 1 event per request"),
            ("payi_ndjson", "payi POST /streams/s-{n}, NDJSON, %s events per request" % nd_lines),
            ("pg_append", "PostgreSQL `SELECT append_event(...)`, pgbench -c %s" % clients),
        ])
        parse_row("json_rate", "JSON parse-only of the same event lines (125 bytes each)")
        L.append("")
        L.append("The same yardsticks (not targets; the bare server answered the command requests):")
        L.append("")
        for t in rep["raw_yardsticks"]:
            L.append(target_line(t).replace("**(r", "(r").replace("MET**", "MET").replace("CHECKED**", "CHECKED"))
        L.append("")

    L.append("Latency: wrk's, per request from write to full answer (p99.9 from the lua `done()`); "
             "PostgreSQL: per transaction from `pgbench --log`. Server CPU: utime+stime of the "
             "server process over the run ÷ requests (not for PostgreSQL); per command (event): "
             "÷ the lines of a request too.")
    L.append("")

    # ---- ack checks
    L.append("## Acknowledgement checks")
    L.append("")
    L.append("| workload | sent | acknowledged (2xx) | non-2xx | head before → after | "
             "appended | appended, answer unread at wrk's stop | check |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name in ("payi_command", "payi_command_ndjson", "payi_single", "payi_ndjson"):
        p = w.get(name) or {}
        c = p.get("ack_check")
        if not c:
            continue
        L.append("| %s | %s | %s | %s | %s → %s | %s | %s | %s |" % (
            name, fmt_rate(c.get("sent")), fmt_rate(c.get("acked")), p.get("non2xx", "—"),
            fmt_rate(c.get("head_before")), fmt_rate(c.get("head")), fmt_rate(c.get("appended")),
            fmt_rate(c.get("in_flight_appended")),
            "ok (acked ≤ appended ≤ sent)" if c.get("ok") else "**FAILED**"))
    L.append("")
    L.append("Commands and events count alike: each Count command emits one event. The head before "
             "the run is what the server wrote itself (the spec's event schemas). wrk stops at its "
             "deadline with up to one request per connection in flight; payi appends those, but wrk "
             "never reads their answers, so appended = acknowledged + those, never fewer than "
             "acknowledged.")
    for name in ("payi_command", "payi_command_ndjson"):
        sc = (w.get(name) or {}).get("stream_check")
        if sc:
            L.append("%s read-back (`payi read --stream`): %s — %s." % (
                name, ", ".join("%s %s events, last total %s" % (x["stream"], fmt_rate(x["events"]),
                                                                  fmt_rate(x["last_total"]))
                                for x in sc["streams"]),
                "versions 0..n-1 and every total = the sum of the n's up to it" if sc["ok"]
                else "**FAILED: %s**" % "; ".join(sc["problems"])))
    L.append("")

    # ---- where the time goes
    L.append("## Where the time goes")
    L.append("")
    for name in ("bare_single", "payi_command", "payi_command_ndjson", "payi_single", "payi_ndjson"):
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
    bare, cmd = w.get("bare_single") or {}, w.get("payi_command") or {}
    if bare.get("ok") and cmd.get("ok") and bare.get("server_cpu_us_per_request") and cmd.get("server_cpu_us_per_request"):
        b, c = bare["server_cpu_us_per_request"], cmd["server_cpu_us_per_request"]
        L.append("- One command per request: payi spends %.1f µs of CPU per request, the bare server "
                 "%.1f µs (HTTP alone); the command path (decide, append, group commit, the larger "
                 "answer, suspend/resume) adds %.1f µs, %.1f× the bare cost." % (c, b, c - b, c / b))
    for nd_name, jr_name, what in (("payi_command_ndjson", "json_rate_command", "command"),
                                   ("payi_ndjson", "json_rate", "event")):
        nd, jr = w.get(nd_name) or {}, w.get(jr_name) or {}
        uc = unit_cpu(nd)
        if nd.get("ok") and jr.get("ok") and uc and jr.get("lines_per_s"):
            parse = 1e6 / jr["lines_per_s"]
            L.append("- %s: payi spends %.2f µs of CPU per %s end to end; parsing one line alone "
                     "takes %.3f µs (%.1f %% of it)." % (nd_name, uc, what, parse, 100 * parse / uc))
    L.append("")
    pf = w.get("perf") or {}
    if pf.get("ok"):
        L.append("### perf profile of the payi server during %s (BENCH_PERF=1)" % pf.get("workload"))
        L.append("")
        L.append("`perf record -e cpu-clock -F 999 -g -p <payi>` over the wrk run (%s samples); "
                 "percentages are of the server's own CPU time." % pf.get("samples"))
        L.append("")
        L.append("- by thread: " + ", ".join("%s %.1f %%" % (t["thread"], t["percent"]) for t in pf.get("threads", [])))
        L.append("- by binary: " + ", ".join("%s %.1f %%" % (d["dso"], d["percent"]) for d in pf.get("dsos", [])))
        L.append("- user-space entry points, inclusive (a syscall wrapper includes its kernel work): " +
                 ", ".join("%s %.1f %%" % (e["symbol"][4:], e["inclusive"]) for e in pf.get("entry_points_inclusive", [])))
        L.append("")
        L.append("Top 20 symbols by own (self) time:")
        L.append("")
        L.append("| % | symbol |")
        L.append("| ---: | --- |")
        for r in pf.get("top_self", []):
            L.append("| %.2f | `%s` |" % (r["percent"], r["symbol"]))
        L.append("")
        L.append("`[k]` kernel, `[.]` user space. On this paravirtualised guest, kernel time spent with "
                 "interrupts disabled is sampled when they are enabled again, so `pvm_irq_enable` "
                 "stands for kernel work (mostly the loopback TCP path and the disk flush) whose real "
                 "location the inclusive figures above give; `iowrite16` is the virtio doorbell "
                 "(a disk or network kick).")
        L.append("")
    elif pf:
        L.append("perf profile: %s" % pf.get("error"))
        L.append("")

    # ---- PostgreSQL semantics
    L.append("## PostgreSQL: what was run")
    L.append("")
    L.append("Table `events(position bigserial primary key, stream, version, type, data jsonb, "
             "unique(stream, version))`. `count_command(key, n)` is the Count command done the usual "
             "way: take `pg_advisory_xact_lock(hashtextextended('c-' || key, 0))`, read the stream's "
             "last event (`ORDER BY version DESC LIMIT 1`: its version and `data->>'total'`), refuse "
             "n ≤ 0 or an overflow, insert `Counted {key, n, total + n}` at version + 1. "
             "`append_event(stream, type, data)` is the raw append the same way. The per-stream lock "
             "makes concurrent calls on one stream queue instead of colliding on the unique constraint "
             "(pgbench 15 would abort the client on that error), so every transaction appends exactly "
             "one event, versions gapless from 0. Each run starts on an empty table.")
    L.append("")
    for name in ("pg_command", "pg_append"):
        pg = w.get(name) or {}
        v = pg.get("verify")
        if not v:
            continue
        L.append("- %s after the run: %s streams, %s rows (= %s transactions), every stream gapless: %s%s; "
                 "failed transactions %s, aborted clients %s. Settings: %s."
                 % (name, v["streams"], fmt_rate(v["rows"]), fmt_rate(pg.get("transactions")),
                    "yes" if v["gapless"] else "**no**",
                    "" if "totals" not in v else ", every total = the sum of its stream's n's: %s"
                    % ("yes" if v["totals"] else "**no**"),
                    pg.get("failed_transactions"), pg.get("aborted_clients"), pg.get("settings")))
    L.append("")

    failed = [p for n, p in w.items() if n != "perf" and not p.get("ok") and p.get("status") not in ("skipped",)]
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
    raw = build_raw_yardsticks(w)
    rep = {"bench": "http", "machine": machine,
           "workloads": {n: w[n] for n in WORKLOADS + sorted(set(w) - set(WORKLOADS))},
           "targets": targets, "raw_yardsticks": raw,
           "note": "targets: payi_command vs bare_single (h1, h2) and pg_command (h3); "
                   "payi_command_ndjson vs json_rate_command (h4). raw_yardsticks: the same "
                   "comparisons for the raw append (payi_single, payi_ndjson, pg_append, json_rate)."}
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    write_json(a.json, rep)
    write_text(a.md, render_md(rep))

    for when, b in common.busy_samples(machine):
        print("bench: WARNING: the machine was %.0f %% busy %s; numbers may be low" % (b * 100, when),
              file=sys.stderr)
    for t in targets:
        print(target_line(t).replace("**", ""), file=sys.stderr)
    rc = 0
    for n in WORKLOADS + (["perf"] if "perf" in w else []):
        p = w[n]
        if p.get("ok") or p.get("status") == "skipped":
            continue
        if p.get("status") == "missing":
            print("bench: %s is MISSING (%s)" % (n, p.get("error")), file=sys.stderr)
            if a.require_payi:
                rc = 1
            continue
        if n == "perf":   # the profile is optional: a failure is reported, not fatal
            print("bench: perf profile failed: %s" % p.get("error"), file=sys.stderr)
            continue
        print("bench: FAILED %s: %s" % (n, p.get("error")), file=sys.stderr)
        rc = 1
    return rc


# ---------------------------------------------------------------- main

def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    common.add_machine_parsers(sub, cmd_machine)

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
    s.add_argument("--head-before", default="")
    s.add_argument("--stream-file", action="append", default=[])
    s.add_argument("--metrics", required=True)
    s.add_argument("--serve-log", required=True)
    s.set_defaults(fn=cmd_payi_check)

    s = sub.add_parser("jsonrate")
    s.add_argument("--out", required=True)
    s.add_argument("--name", default="json_rate")
    s.add_argument("--lines-file")
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

    s = sub.add_parser("perf")
    for k in ("--out", "--workload", "--self", "--children", "--comm", "--dso"):
        s.add_argument(k, required=True)
    s.set_defaults(fn=cmd_perf)

    s = sub.add_parser("error")
    s.add_argument("--out", required=True)
    s.add_argument("--engine", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--reason", required=True)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--missing", action="store_true")
    g.add_argument("--skipped", action="store_true")
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
