#!/usr/bin/python3
"""Parse the COVID-19 benchmark's outputs into JSON pieces, cross-check payi
against PostgreSQL, and combine everything into bench/results/covid.json and
covid.md.

Stdlib only; run with /usr/bin/python3.  bench/covid.sh calls one subcommand
per step, each writing one JSON "piece" into a directory; `combine` reads
them all.  Machine facts and the busy-CPU sample come from bench/lib/report.py.

A piece always has: engine, name, ok (bool), error (str or null).

Subcommands:
  machine  --scratch DIR --repo DIR --payi-bin PATH --out F
  busy     --out F
  error    --out F --engine E --name N --reason TEXT
  payi     --out F --name N --stderr F --launch-to-ready S --ticks-user T --ticks-sys T
           --rss-kib K --exit-rc RC [--timed-out] --cmd F --spec F
           (one `payi demo --fast` run: the two figures payi prints, the wall
           clock from launch to that line, CPU and memory at that moment)
  wait     --file F --pattern TEXT --pid PID --timeout S
           (wait for payi's "up to date" line: prints the time it was seen
           and the process's CPU ticks and peak memory at that moment)
  pg       --out F --name N --psql-out F --psql-err F --rc RC --wall S --server-ticks T
           [--pg-version V] [--pg-settings S]
           (one run of bench/lib/covid_pg.sql: wall clock, server CPU, the
           time of each step from psql's \\timing)
  check    --out F --name N --url URL --pg-port P --pg-db DB [--full]
           (the cross-check: payi's views over HTTP against PostgreSQL's
           tables; exit 1 when they disagree)
  explain  --out F --sql FILE --pg-port P --pg-db DB
           (EXPLAIN ANALYZE of the costliest step of covid_pg.sql, on the
           tables of the last run)
  combine  --pieces DIR --json OUT --md OUT --runs N [--require-payi]
           exit 0: every run measured and every cross-check agreed (or payi
           absent and not required); 1 otherwise.  A missed target does not
           change the exit status.
"""

import argparse
import csv
import io
import json
import os
import re
import statistics
import subprocess
import sys
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report as common  # noqa: E402  (bench/lib/report.py)

# Targets (issue 5, the COVID-19 case study's performance section).
TARGET_PAYI_S = 2.0        # the whole history in, views and generators up to date
TARGET_VS_PG = 10.0        # x faster than loading the CSVs into PostgreSQL and computing the views in SQL

# A run during which other processes used this many CPUs on average (of the
# machine's non-idle time, less the measured side's own) is flagged.
OTHERS_BUSY = 0.25

# The cross-check.
RT_REL_TOL = 1e-9
CIV = ("Cote d'Ivoire", 88263, 834, "2023-03-09")   # as in the files (README, covid.h)
RT_COUNTRIES = ("Cote d'Ivoire", "Germany", "US")
RT_DAYS = ("2020-04-01", "2021-12-31", "2023-03-09")   # early, the Omicron wave, the last day

DEMO_LINE = re.compile(r"the whole history is in: (\d+) events from (\d+) days in ([0-9.]+) s; "
                       r"views and generators up to date after ([0-9.]+) s")
STEP_LINE = re.compile(r"^@step (\w+)\s*$")
TIME_LINE = re.compile(r"^Time: ([0-9.]+) ms")

write_json = common.write_json
read_text = common.read_text
piece = common.piece


def tail(path, n=20):
    return read_text(path).strip().splitlines()[-n:] if path and os.path.exists(path) else []


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ticks_s(t):
    return None if t is None else t / float(os.sysconf("SC_CLK_TCK"))


def others(machine_ticks, own_ticks):
    """CPU seconds the rest of the machine used during a run: the machine's
    non-idle time less the measured side's own (never below 0: the two are
    sampled a few ms apart)."""
    if machine_ticks is None or own_ticks is None:
        return None
    return max(0.0, ticks_s(machine_ticks - own_ticks))


# ---------------------------------------------------------------- small pieces

def spec_text(path):
    return "\n".join(l for l in read_text(path).splitlines() if not l.lstrip().startswith("--"))


def spec_generators(path):
    """[(name, kind)] of the CREATE GENERATOR statements of a spec."""
    return re.findall(r"CREATE\s+GENERATOR\s+(\w+)\s+USING\s+(\w+)", spec_text(path), re.I)


def spec_views(path):
    return re.findall(r"CREATE\s+VIEW\s+(\w+)", spec_text(path), re.I)


# ---------------------------------------------------------------- payi

def cmd_payi(a):
    err = read_text(a.stderr)
    m = DEMO_LINE.search(err)
    problems = []
    if a.timed_out:
        problems.append("no 'up to date' line: payi exited first or the time limit ran out")
    elif not m:
        problems.append("payi demo printed no 'views and generators up to date' line")
    if a.exit_rc not in (0, None) and not a.timed_out:
        problems.append("payi demo exited with status %d after SIGINT" % a.exit_rc)
    fields = {}
    if m:
        fields = {"events": int(m.group(1)), "days": int(m.group(2)),
                  "ingest_s": float(m.group(3)), "up_to_date_s": float(m.group(4))}
        if fields["events"] <= 0:
            problems.append("payi reports %d events" % fields["events"])
    gens = spec_generators(a.spec)
    write_json(a.out, piece(
        "payi", a.name, ok=not problems, error="; ".join(problems) or None,
        launch_to_ready_s=a.launch_to_ready, cpu_user_s=ticks_s(a.ticks_user), cpu_sys_s=ticks_s(a.ticks_sys),
        cpu_s=ticks_s((a.ticks_user or 0) + (a.ticks_sys or 0)) if a.ticks_user is not None else None,
        machine_cpu_s=ticks_s(a.machine_ticks),
        others_cpu_s=others(a.machine_ticks, (a.ticks_user or 0) + (a.ticks_sys or 0)),
        max_rss_bytes=a.rss_kib * 1024 if a.rss_kib else None, exit_rc=a.exit_rc,
        command=read_text(a.cmd).strip(), generators=[{"name": n, "kind": k} for n, k in gens],
        views=spec_views(a.spec),
        stderr_tail=tail(a.stderr), **fields))


def cmd_wait(a):
    """Wait for a line of a growing log file, watching it every 10 ms from one
    process (a shell loop of grep and sleep would fork ~100 times a second on
    the two CPUs payi is using).  Prints "EPOCH UTIME_TICKS STIME_TICKS
    VMHWM_KIB" of the process at the moment the line was seen; exit 1 when
    the process exits or the time runs out first.  A fifth field: the whole
    machine's non-idle CPU ticks at that moment (as machine_busy_ticks in
    covid.sh)."""
    import time
    deadline = time.monotonic() + a.timeout
    pattern = a.pattern.encode()
    data = b""
    with open(a.file, "rb") as f:
        while time.monotonic() < deadline:
            data += f.read()
            if pattern in data:
                now = time.time()
                f5 = read_text("/proc/stat").splitlines()[0].split()
                busy = sum(int(f5[i]) for i in (1, 2, 3, 6, 7, 8))
                try:
                    stat = read_text("/proc/%d/stat" % a.pid).rsplit(")", 1)[1].split()
                    hwm = re.search(r"^VmHWM:\s+(\d+)", read_text("/proc/%d/status" % a.pid), re.M)
                    print("%.6f %s %s %s %d" % (now, stat[11], stat[12], hwm.group(1) if hwm else 0, busy))
                except (IndexError, OSError):
                    print("%.6f 0 0 0 %d" % (now, busy))
                return 0
            if not os.path.exists("/proc/%d" % a.pid):
                return 1
            time.sleep(0.01)
    return 1


# ---------------------------------------------------------------- PostgreSQL

def parse_steps(text):
    """[(step, ms, statements)] from covid_pg.sql's output: every "Time: X ms"
    line belongs to the last "@step NAME" line before it."""
    steps, cur = [], None
    for line in text.splitlines():
        m = STEP_LINE.match(line)
        if m:
            cur = [m.group(1), 0.0, 0]
            steps.append(cur)
            continue
        m = TIME_LINE.match(line)
        if m and cur is not None:
            cur[1] += float(m.group(1))
            cur[2] += 1
    return [{"step": s, "ms": round(ms, 3), "statements": n} for s, ms, n in steps if s != "done"]


def cmd_pg(a):
    out = read_text(a.psql_out)
    problems = []
    if a.rc == 124:
        problems.append("psql killed by timeout")
    elif a.rc != 0:
        problems.append("psql exit status %d: %s" % (a.rc, " ".join(tail(a.psql_err, 3))))
    if not problems and "@step done" not in out:
        problems.append("the script did not reach its last step")
    steps = parse_steps(out)
    write_json(a.out, piece(
        "postgresql", a.name, ok=not problems, error="; ".join(problems) or None,
        wall_s=a.wall, server_cpu_s=ticks_s(a.server_ticks), machine_cpu_s=ticks_s(a.machine_ticks),
        others_cpu_s=others(a.machine_ticks, a.server_ticks), steps=steps,
        steps_total_ms=round(sum(s["ms"] for s in steps), 3), psql_err_tail=tail(a.psql_err),
        pg_version=a.pg_version, pg_settings=a.pg_settings))


# ---------------------------------------------------------------- the cross-check

def http_rows(url, view, params=None):
    q = "?" + urllib.parse.urlencode(params) if params else ""
    with urllib.request.urlopen("%s/views/%s%s" % (url, view, q), timeout=120) as r:
        return json.load(r)["rows"]


def http_json(url, path):
    with urllib.request.urlopen(url + path, timeout=30) as r:
        return json.load(r)


def pg_rows(port, db, sql):
    """Rows of sql as lists of strings (NULL as None), through psql's COPY TO STDOUT."""
    r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port),
                        "-U", "postgres", "-d", db, "-c",
                        "COPY (%s) TO STDOUT (FORMAT csv, FORCE_QUOTE *)" % sql],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError("psql: " + r.stderr.strip())
    # FORCE_QUOTE: an empty quoted string is "", NULL is an unquoted empty field.
    rows = []
    for line in csv.reader(io.StringIO(r.stdout)):
        rows.append(line)
    return rows


def pg_rows_nulls(port, db, sql, ncols):
    """Like pg_rows, with NULLs told apart from empty strings: each column is
    sent as a JSON value (to_json), decoded here."""
    cols = ", ".join("to_json(c%d)::text" % i for i in range(ncols))
    inner = "SELECT %s FROM (%s) AS q(%s)" % (cols, sql, ", ".join("c%d" % i for i in range(ncols)))
    return [[None if v == "" else json.loads(v) for v in row] for row in pg_rows(port, db, inner)]


def rel(a, b):
    if a == b:
        return 0.0
    if a is None or b is None:
        return float("inf")
    den = max(abs(a), abs(b))
    return abs(a - b) / den if den else 0.0


def cmd_check(a):
    mism, notes = [], {}
    port, db = a.pg_port, a.pg_db

    def mismatch(what):
        if len(mism) < 50:
            mism.append(what)
        notes["mismatches"] = notes.get("mismatches", 0) + 1

    try:
        health = http_json(a.url, "/health")
        notes["payi_log_head"] = health.get("head")

        # totals_by_country: every country, every column.
        payi_tot = {r["country"]: r for r in http_rows(a.url, "totals_by_country", {"limit": 1000})}
        pg_tot = {r[0]: r for r in pg_rows_nulls(
            port, db, "SELECT country, cases, deaths, first_case_day, last_day FROM totals_by_country", 5)}
        notes["countries_payi"], notes["countries_pg"] = len(payi_tot), len(pg_tot)
        for c in sorted(set(payi_tot) | set(pg_tot)):
            p, g = payi_tot.get(c), pg_tot.get(c)
            if p is None or g is None:
                mismatch("totals_by_country: %r only in %s" % (c, "PostgreSQL" if p is None else "payi"))
                continue
            mine = [p["cases"], p["deaths"], p["first_case_day"], p["last_day"]]
            if mine != g[1:]:
                mismatch("totals_by_country %r: payi %s, PostgreSQL %s" % (c, mine, g[1:]))
        civ = {}
        for side, t in (("payi", payi_tot.get(CIV[0])), ("postgresql", pg_tot.get(CIV[0]))):
            if isinstance(t, dict):
                got = (t["cases"], t["deaths"], t["last_day"])
            elif t:
                got = (t[1], t[2], t[4])
            else:
                got = None
            civ[side] = got
            if got != CIV[1:]:
                mismatch("%s: %s has %s, the files say cases %d, deaths %d, last day %s"
                         % (CIV[0], side, got, *CIV[1:]))
        notes["cote_divoire"] = civ

        # weekly_world: every week.
        payi_w = {r["week"]: [r["new_cases"], r["new_deaths"]] for r in http_rows(a.url, "weekly_world")}
        pg_w = {r[0]: r[1:] for r in pg_rows_nulls(port, db, "SELECT week, new_cases, new_deaths FROM weekly_world", 3)}
        notes["weeks_payi"], notes["weeks_pg"] = len(payi_w), len(pg_w)
        for w in sorted(set(payi_w) | set(pg_w)):
            if payi_w.get(w) != pg_w.get(w):
                mismatch("weekly_world %s: payi %s, PostgreSQL %s" % (w, payi_w.get(w), pg_w.get(w)))

        # Rt at a few (country, day) pairs, read one by one with the view's filters.
        pairs = []
        for c in RT_COUNTRIES:
            for d in RT_DAYS:
                rows = http_rows(a.url, "rt_by_country", {"country": c, "day": d})
                g = pg_rows_nulls(port, db, "SELECT mean, sd FROM rt_by_country WHERE country = %s AND day = %s"
                                  % (sql_lit(c), sql_lit(d)), 2)
                pm = rows[0]["mean"] if len(rows) == 1 else None
                ps = rows[0]["sd"] if len(rows) == 1 else None
                gm = g[0][0] if len(g) == 1 else None
                gs = g[0][1] if len(g) == 1 else None
                r_m, r_s = rel(pm, gm), rel(ps, gs)
                pairs.append({"country": c, "day": d, "payi_mean": pm, "pg_mean": gm, "rel_mean": r_m,
                              "payi_sd": ps, "pg_sd": gs, "rel_sd": r_s,
                              "payi_median": rows[0].get("median") if len(rows) == 1 else None,
                              "payi_q025": rows[0].get("q025") if len(rows) == 1 else None,
                              "payi_q975": rows[0].get("q975") if len(rows) == 1 else None})
                if not (r_m <= RT_REL_TOL and r_s <= RT_REL_TOL):
                    mismatch("rt_by_country %r %s: payi mean %r sd %r, PostgreSQL mean %r sd %r"
                             % (c, d, pm, ps, gm, gs))
        notes["rt_pairs"] = pairs

        if a.full:
            # Every row of daily_by_country and of rt_by_country.
            payi_d = {(r["country"], r["day"]): [r["new_cases"], r["new_deaths"]]
                      for r in http_rows(a.url, "daily_by_country")}
            pg_d = {(r[0], r[1]): r[2:] for r in pg_rows_nulls(
                port, db, "SELECT country, day, new_cases, new_deaths FROM daily_by_country", 4)}
            notes["daily_rows_payi"], notes["daily_rows_pg"] = len(payi_d), len(pg_d)
            for k in sorted(set(payi_d) | set(pg_d)):
                if payi_d.get(k) != pg_d.get(k):
                    mismatch("daily_by_country %s: payi %s, PostgreSQL %s" % (k, payi_d.get(k), pg_d.get(k)))
            payi_rt = {(r["country"], r["day"]): (r["mean"], r["sd"]) for r in http_rows(a.url, "rt_by_country")}
            pg_rt = {(r[0], r[1]): (r[2], r[3]) for r in pg_rows_nulls(
                port, db, "SELECT country, day, mean, sd FROM rt_by_country", 4)}
            notes["rt_rows_payi"], notes["rt_rows_pg"] = len(payi_rt), len(pg_rt)
            worst_m, worst_s, worst_at = 0.0, 0.0, None
            for k in sorted(set(payi_rt) | set(pg_rt)):
                p, g = payi_rt.get(k), pg_rt.get(k)
                if p is None or g is None:
                    mismatch("rt_by_country %s only in %s" % (k, "PostgreSQL" if p is None else "payi"))
                    continue
                r_m, r_s = rel(p[0], g[0]), rel(p[1], g[1])
                if r_m > worst_m:
                    worst_m, worst_at = r_m, k
                worst_s = max(worst_s, r_s)
                if not (r_m <= RT_REL_TOL and r_s <= RT_REL_TOL):
                    mismatch("rt_by_country %s: payi %s, PostgreSQL %s" % (k, p, g))
            notes["rt_max_rel_mean"], notes["rt_max_rel_sd"] = worst_m, worst_s
            notes["rt_max_rel_mean_at"] = list(worst_at) if worst_at else None
    except Exception as e:  # noqa: BLE001  (any failure to read either side is a failed check)
        mism.append("the cross-check could not run: %s: %s" % (type(e).__name__, e))
        notes["mismatches"] = notes.get("mismatches", 0) + 1
    ok = not mism
    write_json(a.out, piece("check", a.name, ok=ok, error=None if ok else "; ".join(mism[:5]),
                            full=a.full, tolerance_rel=RT_REL_TOL, first_mismatches=mism, **notes))
    return 0 if ok else 1


def sql_lit(s):
    return "'" + s.replace("'", "''") + "'"


# ---------------------------------------------------------------- EXPLAIN ANALYZE

def statement_of_step(sql_text, step):
    """The CREATE TABLE ... AS statement of a step of covid_pg.sql, as EXPLAIN
    (ANALYZE, BUFFERS) of its query; and the SET lines at the top (work_mem)."""
    part = sql_text.split("\\echo @step %s\n" % step, 1)[1].split("\\echo @step", 1)[0]
    body = "\n".join(l for l in part.splitlines() if not l.lstrip().startswith("--"))
    m = re.search(r"CREATE TABLE \w+ AS\s+(.*?);", body, re.S)
    sets = re.findall(r"^SET [^;]+;", sql_text, re.M)
    return sets, "EXPLAIN (ANALYZE, BUFFERS) " + m.group(1) if m else None


def cmd_explain(a):
    sql = read_text(a.sql)
    plans, problems = {}, []
    for step in ("rt_lambda",):
        sets, stmt = statement_of_step(sql, step)
        if not stmt:
            problems.append("no CREATE TABLE ... AS in step %s" % step)
            continue
        r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(a.pg_port),
                            "-U", "postgres", "-d", a.pg_db, "-At"],
                           input="\n".join(sets + [stmt + ";"]) + "\n", capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            problems.append("%s: %s" % (step, r.stderr.strip()))
            continue
        plans[step] = {"statement": stmt, "plan": r.stdout.rstrip("\n").splitlines()}
    write_json(a.out, piece("postgresql", "explain", ok=not problems, error="; ".join(problems) or None,
                            plans=plans))


# ---------------------------------------------------------------- combine

def fmt_s(x, digits=2):
    return "—" if x is None else "%.*f" % (digits, x)


def fmt_ratio(x):
    return "—" if x is None else "%.1f×" % x


def div(a, b):
    return a / b if a is not None and b else None


def build(pieces, a):
    machine = pieces.get(("machine", "machine"), {})
    busy_end = pieces.get(("machine", "busy_end"), {})
    if busy_end.get("cpu_busy") is not None:
        machine["cpu_busy_at_end"] = busy_end["cpu_busy"]
    runs = []
    for i in range(1, a.runs + 1):
        runs.append({"run": i,
                     "payi": pieces.get(("payi", "run%d" % i)),
                     "postgresql": pieces.get(("postgresql", "run%d" % i)),
                     "check": pieces.get(("check", "run%d" % i))})
    payi_ok = [r["payi"] for r in runs if r["payi"] and r["payi"].get("ok")]
    pg_ok = [r["postgresql"] for r in runs if r["postgresql"] and r["postgresql"].get("ok")]
    missing = pieces.get(("payi", "missing"))

    def med(side, key):
        return median([p.get(key) for p in side])

    s = {
        "payi_ingest_s": med(payi_ok, "ingest_s"),
        "payi_up_to_date_s": med(payi_ok, "up_to_date_s"),
        "payi_launch_to_ready_s": med(payi_ok, "launch_to_ready_s"),
        "payi_cpu_s": med(payi_ok, "cpu_s"),
        "pg_wall_s": med(pg_ok, "wall_s"),
        "pg_server_cpu_s": med(pg_ok, "server_cpu_s"),
    }
    s["ratio_pg_over_payi"] = div(s["pg_wall_s"], s["payi_up_to_date_s"])
    s["ratio_pg_over_payi_launch"] = div(s["pg_wall_s"], s["payi_launch_to_ready_s"])
    # CPU seconds move less than wall time when other processes share the CPUs.
    s["cpu_ratio_pg_over_payi"] = div(s["pg_server_cpu_s"], s["payi_cpu_s"])

    # Per step: the median over runs of each step's time.
    step_names = []
    for p in pg_ok:
        for st in p.get("steps", []):
            if st["step"] not in step_names:
                step_names.append(st["step"])
    steps = []
    for name in step_names:
        ms = [next((st["ms"] for st in p["steps"] if st["step"] == name), None) for p in pg_ok]
        steps.append({"step": name, "median_ms": median(ms), "runs_ms": ms})

    checks = [r["check"] for r in runs if r["check"]]
    checks_ok = bool(checks) and all(c.get("ok") for c in checks) and len(checks) == len(payi_ok)
    gens = (payi_ok[0] if payi_ok else (runs[0]["payi"] or {})).get("generators") or []

    targets = []
    u = s["payi_up_to_date_s"]
    targets.append({"id": "c1", "text": "payi: the whole history in, views and generators up to date, ≤ 2 s",
                    "value": u, "threshold": TARGET_PAYI_S,
                    "met": None if u is None else u <= TARGET_PAYI_S})
    r = s["ratio_pg_over_payi"]
    targets.append({"id": "c2", "text": "≥ 10× faster than the PostgreSQL way", "value": r,
                    "threshold": TARGET_VS_PG, "met": None if r is None else r >= TARGET_VS_PG})

    ok = (len(pg_ok) == a.runs and (missing is not None or (len(payi_ok) == a.runs and checks_ok)))
    return {"bench": "covid", "machine": machine, "runs": runs, "summary": s, "pg_steps": steps,
            "explain": pieces.get(("postgresql", "explain")), "targets": targets,
            "cross_check_ok": checks_ok if payi_ok else None, "payi_missing": missing is not None,
            "payi_missing_reason": (missing or {}).get("error"), "generators": gens, "ok": ok}


def render_md(rep):
    m, s = rep["machine"], rep["summary"]
    runs = rep["runs"]
    pg_any = next((r["postgresql"] for r in runs if r["postgresql"] and r["postgresql"].get("ok")), {}) or {}
    L = ["# payi COVID-19 benchmark: the whole JHU history, payi vs PostgreSQL", ""]
    L.append("Generated by `bench/covid.sh` (`bench/run.sh covid`) at %s on %s: %s CPUs (%s), kernel %s, "
             "scratch on %s (%s), load average at start %s. payi commit %s%s. %s."
             % (m.get("date_utc"), m.get("hostname"), m.get("nproc"), m.get("cpu_model"), m.get("kernel"),
                (m.get("scratch_fs") or {}).get("device"), (m.get("scratch_fs") or {}).get("fstype"),
                " / ".join(str(x) for x in (m.get("loadavg_at_start") or [])),
                (m.get("git_commit") or "?")[:12], " (dirty tree)" if m.get("git_dirty") else "",
                pg_any.get("pg_version") and "PostgreSQL " + pg_any["pg_version"]
                or (m.get("versions") or {}).get("postgres")))
    L.append("")
    for when, b in common.busy_samples(m):
        L.append("> **Warning:** the machine was %.0f %% busy %s (a one-second sample outside the runs): "
                 "something else was running; numbers may be high or noisy." % (b * 100, when))
        L.append("")
    disturbed = []
    for r in runs:
        for side, key in (("payi", "launch_to_ready_s"), ("postgresql", "wall_s")):
            p = r[side] or {}
            o, w = p.get("others_cpu_s"), p.get(key)
            if o is not None and w and o / w >= OTHERS_BUSY:
                disturbed.append("run %d %s (%.1f CPU s over %.1f s)" % (r["run"], side, o, w))
    if disturbed:
        L.append("> **Warning:** other processes used ≥ %.2f CPUs on average during %s: those runs shared the "
                 "two CPUs and their times are high; the medians damp one such run, not two."
                 % (OTHERS_BUSY, ", ".join(disturbed)))
        L.append("")
    if rep["payi_missing"]:
        L.append("> **payi is MISSING:** %s. Only PostgreSQL was measured; the targets and the cross-check "
                 "are NOT CHECKED." % rep["payi_missing_reason"])
        L.append("")
    for r in runs:
        for side in ("payi", "postgresql", "check"):
            p = r[side]
            if p and not p.get("ok"):
                L.append("> **run %d, %s failed:** %s" % (r["run"], side, p.get("error")))
                L.append("")

    L.append("Both sides start from the two JHU CSSE files as published (`examples/covid/data/*.csv.gz`: "
             "cumulative confirmed cases and deaths, 289 rows × 1,143 days each, about 660k cumulative "
             "values) and end with every view computed. Each run: PostgreSQL first (an empty database), then "
             "a fresh `payi demo --fast` on an empty data directory, then the cross-check of the two. "
             "Medians of %d runs; what each number means: bench/README.md." % len(runs))
    L.append("")
    L.append("| measure | %s | median |" % " | ".join("run %d" % r["run"] for r in runs))
    L.append("| --- |%s ---: |" % (" ---: |" * len(runs)))

    def row(label, side, key, digits=2):
        vals = [(r[side] or {}).get(key) if (r[side] or {}).get("ok") else None for r in runs]
        return "| %s | %s | %s |" % (label, " | ".join(fmt_s(v, digits) for v in vals),
                                     fmt_s(median(vals), digits))
    L.append(row("payi: the whole history in (ingest done), s — payi's own clock", "payi", "ingest_s"))
    L.append(row("**payi: views and generators up to date, s** — payi's own clock", "payi", "up_to_date_s"))
    L.append(row("payi: launch → up to date, s (wall, process start and spec load included)", "payi",
                 "launch_to_ready_s"))
    L.append(row("payi: CPU s (user + sys, all threads, launch → up to date)", "payi", "cpu_s"))
    L.append(row("**PostgreSQL: end to end, s** (wall, psql start → last table built)", "postgresql", "wall_s"))
    L.append(row("PostgreSQL: server CPU s (backends, parallel workers, gunzip, background)", "postgresql",
                 "server_cpu_s"))
    L.append(row("other processes' CPU s during payi's run (machine non-idle − payi)", "payi", "others_cpu_s"))
    L.append(row("other processes' CPU s during PostgreSQL's run (machine non-idle − server)", "postgresql",
                 "others_cpu_s"))
    ratios = []
    for r in runs:
        p, g = r["payi"] or {}, r["postgresql"] or {}
        ratios.append(div(g.get("wall_s"), p.get("up_to_date_s")) if p.get("ok") and g.get("ok") else None)
    L.append("| **PostgreSQL ÷ payi** (end to end ÷ up to date) | %s | %s |"
             % (" | ".join(fmt_ratio(x) for x in ratios), fmt_ratio(s["ratio_pg_over_payi"])))
    cratios = []
    for r in runs:
        p, g = r["payi"] or {}, r["postgresql"] or {}
        cratios.append(div(g.get("server_cpu_s"), p.get("cpu_s")) if p.get("ok") and g.get("ok") else None)
    L.append("| PostgreSQL ÷ payi in CPU seconds (server CPU ÷ payi CPU) | %s | %s |"
             % (" | ".join(fmt_ratio(x) for x in cratios), fmt_ratio(s["cpu_ratio_pg_over_payi"])))
    L.append("")
    L.append("The median ratio is the ratio of the medians. Against payi's launch-to-ready wall time instead "
             "(the process start, the spec and the files' first read counted too): %s. CPU seconds are less "
             "moved than wall time by other processes sharing the CPUs (see the two \"other processes\" rows)."
             % fmt_ratio(s["ratio_pg_over_payi_launch"]))
    L.append("")

    L.append("## Targets")
    L.append("")
    for t in rep["targets"]:
        verdict = "NOT CHECKED" if t["met"] is None else ("MET" if t["met"] else "NOT MET")
        if t["id"] == "c1":
            detail = "payi median %s s, target ≤ %s s" % (fmt_s(t["value"]), fmt_s(t["threshold"], 0))
        else:
            detail = "PostgreSQL median %s s ÷ payi median %s s = %s, target ≥ %s" % (
                fmt_s(s["pg_wall_s"]), fmt_s(s["payi_up_to_date_s"]), fmt_ratio(t["value"]),
                fmt_ratio(t["threshold"]))
        L.append("- **(%s) %s: %s** (%s)" % (t["id"], t["text"], verdict, detail))
    L.append("")

    L.append("## Cross-check")
    L.append("")
    cc = rep["cross_check_ok"]
    L.append("**%s.** After each run, payi's views read over HTTP against PostgreSQL's tables: "
             "`totals_by_country` for every country (cases, deaths, first case day, last day), `weekly_world` "
             "for every week, `rt_by_country` mean and sd at %d (country, day) pairs to %g relative; on the last "
             "run also every row of `daily_by_country` and every row of `rt_by_country`."
             % ("NOT CHECKED" if cc is None else ("AGREE" if cc else "DISAGREE"),
                len(RT_COUNTRIES) * len(RT_DAYS), RT_REL_TOL))
    L.append("")
    L.append("| run | result | countries (payi / PG) | weeks | Côte d'Ivoire payi / PG (cases, deaths, last day) | "
             "daily rows (payi / PG) | Rt rows (payi / PG) | Rt max relative difference, mean / sd |")
    L.append("| ---: | --- | ---: | ---: | --- | ---: | ---: | ---: |")
    for r in runs:
        c = r["check"]
        if not c:
            L.append("| %d | not run | | | | | | |" % r["run"])
            continue
        civ = c.get("cote_divoire") or {}
        L.append("| %d | %s | %s / %s | %s / %s | %s / %s | %s | %s | %s |" % (
            r["run"], "agree" if c.get("ok") else "**DISAGREE** (%s)" % c.get("mismatches"),
            c.get("countries_payi"), c.get("countries_pg"), c.get("weeks_payi"), c.get("weeks_pg"),
            civ_fmt(civ.get("payi")), civ_fmt(civ.get("postgresql")),
            "%s / %s" % (fmt_int(c.get("daily_rows_payi")), fmt_int(c.get("daily_rows_pg")))
            if c.get("full") else "(last run)",
            "%s / %s" % (fmt_int(c.get("rt_rows_payi")), fmt_int(c.get("rt_rows_pg"))) if c.get("full") else "(last run)",
            "%.1e / %.1e" % (c["rt_max_rel_mean"], c["rt_max_rel_sd"]) if c.get("full") else "(last run)"))
    last = next((r["check"] for r in reversed(runs) if r["check"]), None)
    if last and last.get("rt_pairs"):
        L.append("")
        L.append("Rt at the checked pairs (last run; the median and the 95 % interval exist on payi's side only):")
        L.append("")
        L.append("| country | day | payi mean | PostgreSQL mean | relative difference | payi sd | PostgreSQL sd | "
                 "payi median [95 % CrI] |")
        L.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
        for p in last["rt_pairs"]:
            L.append("| %s | %s | %s | %s | %.1e | %s | %s | %s [%s, %s] |" % (
                p["country"], p["day"], fmt_g(p["payi_mean"]), fmt_g(p["pg_mean"]), p["rel_mean"],
                fmt_g(p["payi_sd"]), fmt_g(p["pg_sd"]), fmt_g(p["payi_median"], 6), fmt_g(p["payi_q025"], 6),
                fmt_g(p["payi_q975"], 6)))
    if last and last.get("first_mismatches"):
        L.append("")
        L.append("First disagreements:")
        L.append("")
        for x in last["first_mismatches"][:10]:
            L.append("- %s" % x)
    L.append("")

    L.append("## Where PostgreSQL spends its time")
    L.append("")
    L.append("Median over the runs of each step of `bench/lib/covid_pg.sql` (psql's `\\timing`, summed over the "
             "step's statements); the rest of the end-to-end time is psql's start and connection.")
    L.append("")
    L.append("| step | what | median ms | share |")
    L.append("| --- | --- | ---: | ---: |")
    total = sum(st["median_ms"] or 0 for st in rep["pg_steps"])
    for st in rep["pg_steps"]:
        L.append("| %s | %s | %s | %s |" % (st["step"], STEP_WHAT.get(st["step"], ""),
                                            "{:,.0f}".format(st["median_ms"]) if st["median_ms"] is not None else "—",
                                            "%.0f %%" % (100 * st["median_ms"] / total) if total and st["median_ms"]
                                            is not None else "—"))
    L.append("| total | | %s | |" % "{:,.0f}".format(total))
    ex = rep.get("explain") or {}
    plan = ((ex.get("plans") or {}).get("rt_lambda") or {}).get("plan")
    if plan:
        L.append("")
        L.append("`EXPLAIN (ANALYZE, BUFFERS)` of the Λ step's query, on the last run's tables (outside the timed "
                 "runs; EXPLAIN ANALYZE's own per-row timing makes it slower than the timed step):")
        L.append("")
        L.append("```")
        L.extend(l for l in plan if l.strip())
        L.append("```")
    L.append("")

    L.append("## What each side computed")
    L.append("")
    p0 = next((r["payi"] for r in runs if r["payi"] and r["payi"].get("ok")), None) or {}
    gens = rep.get("generators") or []
    fc = [g for g in gens if g["kind"] == "renewal_forecast"]
    L.append("- **payi** (`payi demo --fast`, `examples/covid/covid.payi`, default `fsync` durability): both files "
             "read and parsed (wide → long, provinces summed into their country, the five non-country rows left "
             "out), then %s `ReportCases` / `ReportDeaths` commands through the command engine (validated, "
             "decided against each country's state, appended durably as typed events), %s days; the views "
             "%s kept in SQLite; the generators %s run over the whole history, their events appended to the log and folded into their "
             "views. Rt (`rt_cori`) carries the mean, sd, median and 95 %% credible interval (three gamma "
             "quantiles per country and day)."
             % (fmt_int(p0.get("events")), fmt_int(p0.get("days")),
                ", ".join("`%s`" % v for v in p0.get("views") or []) or "(none found in the spec)",
                ", ".join("`%s` (%s)" % (g["name"], g["kind"]) for g in gens) or "(none found in the spec)"))
    if fc:
        L.append("  The spec also has a `renewal_forecast` generator (`%s`: 14-day case forecasts per country, 1,000 "
                 "sample paths each), which payi runs within the time above and the PostgreSQL side does not do "
                 "at all." % fc[0]["name"])
    L.append("- **PostgreSQL** (`bench/lib/covid_pg.sql`, one psql session, ordinary logged tables, "
             "`synchronous_commit=on`, `work_mem=256MB`): the files loaded with `COPY ... FROM PROGRAM 'gunzip -c "
             "...' (FORMAT csv)` into wide staging tables generated from the header, unpivoted and summed per "
             "country (same rules), daily counts with `lag()` (corrections kept negative), the three views as "
             "tables with their primary keys, and Rt **mean and sd only** (no gamma quantile function in "
             "PostgreSQL: the median and the credible interval are left out, in PostgreSQL's favour): Λ by a join "
             "of each country's series with the serial interval (k ≤ 91, payi's truncation), 7-day sums by window "
             "functions. No event log, no commands, no forecast.")
    L.append("")
    return "\n".join(L) + "\n"


STEP_WHAT = {
    "header": "read both header lines, check the date columns",
    "create_staging": "generate the two 1,147-column staging tables",
    "copy_confirmed": "COPY the confirmed file (gunzip → COPY csv)",
    "copy_deaths": "COPY the deaths file",
    "unpivot": "join the files' rows, unnest 2 × 1,143 columns per row, sum provinces per country and day",
    "daily_by_country": "lag() per country for cases and deaths, primary key",
    "totals_by_country": "group by country, primary key",
    "weekly_world": "group by week, primary key",
    "rt_si": "load the serial interval, truncate it",
    "rt_incidence": "clamped daily series per country, integer keys, ANALYZE",
    "rt_lambda": "Λ: days with cases × serial interval (13 M rows), group by country and day",
    "rt_by_country": "7-day window sums, posterior mean and sd, primary key",
}


def fmt_int(x):
    return "—" if x is None else "{:,}".format(x)


def fmt_g(x, digits=10):
    return "—" if x is None else "%.*g" % (digits, x)


def civ_fmt(t):
    return "—" if not t else "%s, %s, %s" % (fmt_int(t[0]), fmt_int(t[1]), t[2])


def cmd_combine(a):
    pieces = common.load_pieces(a.pieces)
    rep = build(pieces, a)
    write_json(a.json, rep)
    common.write_text(a.md, render_md(rep))
    for when, b in common.busy_samples(rep["machine"]):
        print("bench: WARNING: the machine was %.0f %% busy %s; numbers may be high" % (b * 100, when),
              file=sys.stderr)
    if rep["payi_missing"]:
        return 1 if a.require_payi else (0 if rep["ok"] else 1)
    return 0 if rep["ok"] else 1


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    common.add_machine_parsers(sub)
    s = sub.add_parser("error")
    s.add_argument("--out", required=True)
    s.add_argument("--engine", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--reason", required=True)
    s.set_defaults(fn=common.cmd_error)
    s = sub.add_parser("payi")
    s.add_argument("--out", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--stderr", required=True)
    s.add_argument("--launch-to-ready", type=float)
    s.add_argument("--ticks-user", type=int)
    s.add_argument("--ticks-sys", type=int)
    s.add_argument("--rss-kib", type=int)
    s.add_argument("--exit-rc", type=int)
    s.add_argument("--timed-out", action="store_true")
    s.add_argument("--machine-ticks", type=int)
    s.add_argument("--cmd", required=True)
    s.add_argument("--spec", required=True)
    s.set_defaults(fn=cmd_payi)
    s = sub.add_parser("wait")
    s.add_argument("--file", required=True)
    s.add_argument("--pattern", required=True)
    s.add_argument("--pid", type=int, required=True)
    s.add_argument("--timeout", type=float, required=True)
    s.set_defaults(fn=cmd_wait)
    s = sub.add_parser("pg")
    s.add_argument("--out", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--psql-out", required=True)
    s.add_argument("--psql-err", required=True)
    s.add_argument("--rc", type=int, required=True)
    s.add_argument("--wall", type=float, required=True)
    s.add_argument("--server-ticks", type=int)
    s.add_argument("--machine-ticks", type=int)
    s.add_argument("--pg-version")
    s.add_argument("--pg-settings")
    s.set_defaults(fn=cmd_pg)
    s = sub.add_parser("check")
    s.add_argument("--out", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--url", required=True)
    s.add_argument("--pg-port", required=True)
    s.add_argument("--pg-db", required=True)
    s.add_argument("--full", action="store_true")
    s.set_defaults(fn=cmd_check)
    s = sub.add_parser("explain")
    s.add_argument("--out", required=True)
    s.add_argument("--sql", required=True)
    s.add_argument("--pg-port", required=True)
    s.add_argument("--pg-db", required=True)
    s.set_defaults(fn=cmd_explain)
    s = sub.add_parser("combine")
    s.add_argument("--pieces", required=True)
    s.add_argument("--json", required=True)
    s.add_argument("--md", required=True)
    s.add_argument("--runs", type=int, required=True)
    s.add_argument("--require-payi", action="store_true")
    s.set_defaults(fn=cmd_combine)
    a = ap.parse_args(argv)
    return a.fn(a) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
