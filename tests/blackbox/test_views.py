"""Black-box tests of the views: `payi serve --spec` with CREATE VIEW.

The oracle test posts randomized events (declared types, an undeclared one,
deletions) and checks every view of specs/shop.payi, built live, rebuilt by
`payi replay` beside the running server, and resumed after a restart,
against SQLite itself evaluating the same SELECT over a table of every event
of the log (read back with GET /all).  The same runs against PostgreSQL when
PAYI_TEST_PG_URL names a server (tests/run.sh starts one).

How the oracle reads the views' SQL: each event type is an SQLite view over
the table of all events (so `FROM Sale` is the same text), date_trunc is a
Python function, and three spellings SQLite lacks are rewritten: x::type
becomes CAST(x AS type), latest(x)/earliest(x) become latest(x,
event_position)/earliest(x, event_position) (SQLite gives no order inside an
aggregate).  DELETE ON has no SELECT equivalent: its oracle is written out.
"""
import datetime as dt
import json
import math
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import PAYI_BIN, run_payi
from test_commands import Server, assert_clean, assert_error

SPECS = Path(__file__).resolve().parent / "specs"
SHOP = SPECS / "shop.payi"
PG_URL = os.environ.get("PAYI_TEST_PG_URL")

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


# ---------------------------------------------------------------------------
# the spec's views, and their oracles


def spec_views(path=SHOP):
    """{name: (select_sql, delete_type)} from the spec file."""
    text = re.sub(r"--[^\n]*", "", path.read_text())
    views = {}
    for m in re.finditer(r"CREATE VIEW (\w+)(?: DELETE ON (\w+))? AS\s+(.*?);", text, re.S):
        views[m.group(1)] = (" ".join(m.group(3).split()), m.group(2))
    return views


ORACLE_OVERRIDE = {
    # DELETE ON: only a shop's sales after its last ShopClosed count.
    "open_shops": """SELECT shop, latest(qty, event_position) AS last_qty, count(*) AS sales_since_open
                     FROM Sale s WHERE event_position > coalesce(
                       (SELECT max(c.event_position) FROM ShopClosed c WHERE c.shop = s.shop), -1)
                     GROUP BY shop""",
}


def oracle_sql(name, sql):
    if name in ORACLE_OVERRIDE:
        return ORACLE_OVERRIDE[name]
    sql = re.sub(r"\b(latest|earliest)\(([^()]*)\)", r"\1(\2, event_position)", sql)
    sql = re.sub(r"(\w+)::(text|bigint|double precision)", lambda m: f"CAST({m.group(1)} AS "
                 + {"text": "TEXT", "bigint": "INTEGER", "double precision": "REAL"}[m.group(2)] + ")", sql)
    sql = re.sub(r"\bLIMIT \d+", "", sql)   # the test reads every row (see view_rows)
    return sql


def _ts(s):
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def _fmt_ts(t):
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def date_trunc(unit, s):
    if s is None:
        return None
    t = _ts(s)
    if unit == "month":
        t = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    elif unit == "day":
        t = t.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        raise ValueError(unit)
    return _fmt_ts(t)


class Positional:
    """latest(x, pos) / earliest(x, pos): the value of the highest / lowest pos."""

    def __init__(self, latest):
        self.latest, self.best, self.value = latest, None, None

    def step(self, value, pos):
        if self.best is None or (pos > self.best if self.latest else pos < self.best):
            self.best, self.value = pos, value

    def finalize(self):
        return self.value


class Latest(Positional):
    def __init__(self):
        super().__init__(True)


class Earliest(Positional):
    def __init__(self):
        super().__init__(False)


FIELDS = ["shop", "item", "qty", "price", "day", "at", "paid", "page", "ms", "visitor"]


def build_oracle(events):
    """An in-memory SQLite database: table ev (attributes + every field) and a
    view per event type, plus `events`."""
    db = sqlite3.connect(":memory:")
    db.create_function("date_trunc", 2, date_trunc, deterministic=True)
    db.create_aggregate("latest", 2, Latest)
    db.create_aggregate("earliest", 2, Earliest)
    cols = ", ".join(FIELDS)
    db.execute(f"CREATE TABLE ev (event_position INTEGER PRIMARY KEY, event_stream TEXT, event_version INTEGER,"
               f" event_time TEXT, event_type TEXT, {cols})")
    rows = []
    for e in events:
        if e["stream"].startswith("$"):    # payi's own streams are not data: no view sees them
            continue
        d = e["data"] if isinstance(e["data"], dict) else {}
        vals = []
        for f in FIELDS:
            v = d.get(f)
            if isinstance(v, bool):
                v = int(v)
            elif isinstance(v, str) and f == "at":
                v = _fmt_ts(_ts(v))
            elif isinstance(v, (dict, list)):
                v = json.dumps(v)
            vals.append(v)
        rows.append([e["position"], e["stream"], e["version"], e["time"], e["type"]] + vals)
    db.executemany(f"INSERT INTO ev VALUES ({', '.join('?' * (5 + len(FIELDS)))})", rows)
    for t in ("Sale", "ShopClosed", "Click"):
        db.execute(f"CREATE VIEW {t} AS SELECT * FROM ev WHERE event_type = '{t}'")
    db.execute("CREATE VIEW events AS SELECT * FROM ev")
    return db


def oracle_rows(db, name, sql):
    cur = db.execute(oracle_sql(name, sql))
    names = [c[0] for c in cur.description]
    return names, [dict(zip(names, r)) for r in cur.fetchall()]


# ---------------------------------------------------------------------------
# comparing rows


def norm(v):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, str) and TS_RE.match(v):
        return _fmt_ts(_ts(v))
    return v


def same_value(a, b):
    a, b = norm(a), norm(b)
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def row_key(r, cols):
    return tuple(json.dumps(norm(r[c]) if not isinstance(r[c], float) else round(r[c], 6)) for c in cols)


def assert_same_rows(name, got, want, cols):
    assert len(got) == len(want), f"view {name}: {len(got)} rows, the oracle has {len(want)}\n" \
                                  f"payi: {sorted(got, key=str)[:5]}\noracle: {sorted(want, key=str)[:5]}"
    got_s = sorted(got, key=lambda r: row_key(r, cols))
    want_s = sorted(want, key=lambda r: row_key(r, cols))
    for g, w in zip(got_s, want_s):
        for c in cols:
            assert same_value(g.get(c), w.get(c)), f"view {name}, column {c}: payi {g} oracle {w}"


# ---------------------------------------------------------------------------
# random events


SHOPS = [f"s{i}" for i in range(8)]
ITEMS = ["Apple", "apple", "APPLE", "Pear", "pear", "Fig", "fig", None]


def random_events(rng, n):
    """(stream, event) pairs: mostly sales, some clicks (untyped), a few closings."""
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.75:
            shop = rng.choice(SHOPS)
            data = {"shop": shop}
            if rng.random() < 0.9:
                data["item"] = rng.choice(ITEMS)
            if rng.random() < 0.9:
                data["qty"] = rng.randint(0, 10)
            if rng.random() < 0.9:
                data["price"] = round(rng.uniform(0, 100), 2)
            if rng.random() < 0.9:
                data["day"] = (dt.date(2020, 1, 1) + dt.timedelta(days=rng.randint(0, 90))).isoformat()
            if rng.random() < 0.9:
                t = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(
                    seconds=rng.randint(0, 365 * 86400), microseconds=rng.randint(0, 999999))
                data["at"] = _fmt_ts(t)
            if rng.random() < 0.9:
                data["paid"] = rng.random() < 0.6
            out.append((f"sales-{shop}", {"type": "Sale", "data": data}))
        elif r < 0.97:
            data = {"page": rng.choice(["home", "cart", "pay", "h\u00e9llo"])}
            if rng.random() < 0.9:
                data["ms"] = rng.randint(1, 5000)
            if rng.random() < 0.8:
                data["visitor"] = f"v{rng.randint(0, 30)}"
            out.append((f"clicks-{rng.randint(0, 3)}", {"type": "Click", "data": data}))
        else:
            shop = rng.choice(SHOPS)
            out.append((f"sales-{shop}", {"type": "ShopClosed", "data": {"shop": shop}}))
    return out


def post_events(server, pairs):
    """POST /streams/{stream} with NDJSON bodies, one per stream, in order of
    first appearance (each stream's events keep their order)."""
    by_stream = {}
    for stream, e in pairs:
        by_stream.setdefault(stream, []).append(e)
    c = server.conn()
    try:
        for stream, evs in by_stream.items():
            body = "\n".join(json.dumps(e, separators=(",", ":")) for e in evs) + "\n"
            status, _, raw, _ = server.request("POST", "/streams/" + stream, body,
                                               headers={"Content-Type": "application/x-ndjson"}, conn=c)
            assert status == 200, raw[:500]
            for line in raw.decode().splitlines():
                assert "error" not in json.loads(line), line
    finally:
        c.close()


def all_events(server):
    out, frm = [], 0
    while True:
        status, _, _, j = server.get(f"/all?from={frm}&limit=100000")
        assert status == 200, j
        out += j["events"]
        if not j["events"] or out[-1]["position"] + 1 >= j["head"]:
            return out
        frm = out[-1]["position"] + 1


def view_rows(server, name, head, extra=""):
    status, _, _, j = server.get(f"/views/{name}?min_position={head}{extra}")
    assert status == 200, (name, j)
    assert j["view"] == name and j["position"] >= head, j
    return j["rows"]


def check_all_views(server, label):
    head = server.head()
    events = all_events(server)
    assert len(events) == head
    db = build_oracle(events)
    for name, (sql, _) in spec_views().items():
        cols, want = oracle_rows(db, name, sql)
        got = view_rows(server, name, head)
        if name == "paid_by_day":          # ORDER BY day DESC, shop LIMIT 50: the first 50 in that order
            # PostgreSQL's order: NULL sorts above every value (first in DESC)
            want = sorted(want, key=lambda r: r["shop"])
            want = sorted(want, key=lambda r: (r["day"] is None, r["day"] or ""), reverse=True)[:50]
            assert [(r["day"], r["shop"]) for r in got] == [(r["day"], r["shop"]) for r in want], label
        assert_same_rows(f"{name} ({label})", got, want, cols)
    return head


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture
def start(tmp_path):
    servers = []

    def start_server(*flags, data=None, spec=SHOP):
        s = Server(data or tmp_path / f"data{len(servers)}", *flags, spec=spec)
        servers.append(s)
        return s

    yield start_server
    for s in servers:
        if s.proc.poll() is None:
            s.proc.send_signal(signal.SIGTERM)
    for s in servers:
        s.stop()
    for s in servers:
        assert_clean(s)


def fresh_pg_database():
    """A new database on the test PostgreSQL server, so runs do not share tables."""
    name = f"payi_t{os.getpid()}_{random.randrange(1 << 30)}"
    out = subprocess.run(["psql", PG_URL, "-v", "ON_ERROR_STOP=1", "-qAtc", f"CREATE DATABASE {name}"],
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    base = PG_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request):
    if request.param == "postgresql":
        if not PG_URL:
            pytest.skip("PAYI_TEST_PG_URL is not set (tests/run.sh starts a PostgreSQL server and sets it)")
        return fresh_pg_database()
    return None


# ---------------------------------------------------------------------------
# the oracle


def test_views_equal_the_oracle_live_replayed_and_restarted(start, store, tmp_path):
    rng = random.Random(20231126)
    data = tmp_path / "d"
    flags = ["--store", store] if store else []
    s = start(*flags, data=data)
    post_events(s, random_events(rng, 1500))
    check_all_views(s, "live, first batch")
    post_events(s, random_events(rng, 1500))      # merges into existing rows
    head = check_all_views(s, "live, second batch")

    # payi replay beside the running server: rebuilt tables swapped in.
    r = run_payi(["replay", "--spec", str(SHOP), "--data", str(data)] + flags, timeout=120)
    assert r.rc == 0, r
    assert f"{head} / {head} events" in r.err, r.err
    check_all_views(s, "after payi replay")
    post_events(s, random_events(rng, 500))      # the server goes on from the swapped-in table
    check_all_views(s, "live after replay")

    assert s.stop() == 0
    s2 = start(*flags, data=data)                 # resumes from the checkpoints
    post_events(s2, random_events(rng, 300))
    check_all_views(s2, "after a restart")


def test_row_view_rows_are_keyed_by_position(start):
    s = start()
    post_events(s, [("sales-a", {"type": "Sale", "data": {"shop": "a", "qty": 5, "item": "x"}}),
                    ("sales-a", {"type": "Sale", "data": {"shop": "a", "qty": 1}}),
                    ("sales-b", {"type": "Sale", "data": {"shop": "b", "qty": 9, "price": 60.5}})])
    rows = view_rows(s, "sale_rows", s.head())
    positions = [r["event_position"] for r in rows]
    assert len(rows) == 2 and len(set(positions)) == 2
    by_shop = {r["shop"]: r for r in rows}
    assert by_shop["a"]["double_qty"] == 10 and by_shop["a"]["label"] == "X" and by_shop["a"]["band"] == "low"
    assert by_shop["b"]["label"] == "-" and by_shop["b"]["band"] == "high"


# ---------------------------------------------------------------------------
# reads: filters, order, limit, min_position, errors


def seed_small(s):
    post_events(s, [(f"sales-{sh}", {"type": "Sale", "data": {"shop": sh, "qty": q, "price": p, "item": "Fig"}})
                    for sh, q, p in [("a", 1, 10.0), ("a", 2, 20.0), ("b", 3, 30.0), ("c", 4, 40.0), ("c", 5, 50.0)]])
    return s.head()


def test_filters_order_and_limit(start):
    s = start()
    head = seed_small(s)
    rows = view_rows(s, "by_shop", head, "&shop=c")
    assert len(rows) == 1 and rows[0]["shop"] == "c" and rows[0]["qty"] == 9 and rows[0]["n"] == 2
    assert rows[0]["avg_price"] == pytest.approx(45.0) and rows[0]["lo"] == 40.0 and rows[0]["hi"] == 50.0
    rows = view_rows(s, "by_shop", head, "&order=qty.desc,shop.desc&limit=2")   # a and b tie on qty
    assert [r["shop"] for r in rows] == ["c", "b"]
    rows = view_rows(s, "by_shop", head, "&n=2&order=shop")
    assert [r["shop"] for r in rows] == ["a", "c"]
    assert view_rows(s, "by_shop", head, "&shop=nobody") == []


def test_having_applies_when_reading(start):
    s = start()
    post_events(s, [("sales-a", {"type": "Sale", "data": {"shop": "a"}})] * 3 +
                [("sales-b", {"type": "Sale", "data": {"shop": "b"}})] * 2)
    rows = view_rows(s, "big_sales", s.head())
    assert [r["shop"] for r in rows] == ["a"]
    # the table itself holds every group
    status, _, _, j = s.request("POST", "/sql", "SELECT shop FROM big_sales ORDER BY shop")
    assert status == 200 and j["rows"] == [["a"], ["b"]], j


@pytest.mark.parametrize("query,status,code,field", [
    ("/views/nope", 404, "not_found", "view"),
    ("/views/by_shop?colour=red", 400, "validation", "colour"),
    ("/views/by_shop?qty=abc", 400, "validation", "qty"),
    ("/views/by_shop?limit=-1", 400, "validation", "limit"),
    ("/views/by_shop?limit=x", 400, "validation", "limit"),
    ("/views/by_shop?order=colour", 400, "validation", "colour"),
    ("/views/by_shop?min_position=zz", 400, "validation", "min_position"),
    ("/views/by_shop?shop=%zz", 400, "validation", None),
    ("/views/monthly?month=yesterday", 400, "validation", "month"),
])
def test_bad_reads(start, query, status, code, field):
    s = start()
    seed_small(s)
    got, _, _, j = s.get(query)
    assert_error(got, j, status, code, field)


def test_min_position_waits_then_times_out(start):
    s = start()
    head = seed_small(s)
    t0 = time.monotonic()
    status, _, _, j = s.get(f"/views/by_shop?min_position={head + 1000}")
    took = time.monotonic() - t0
    assert_error(status, j, 504, "timeout", "min_position")
    assert 9 <= took < 20, took
    # meanwhile other requests were served (the wait has a thread of its own)
    assert s.head() == head


def test_read_your_writes_through_a_command_free_append(start):
    s = start()
    for i in range(20):
        status, _, _, j = s.post("sales-z", {"type": "Sale", "data": {"shop": "z", "qty": 1}})
        assert status == 201, j
        rows = view_rows(s, "by_shop", j["position"] + 1, "&shop=z")
        assert rows[0]["n"] == i + 1


def test_views_methods_and_without_views(start):
    s = start(spec=None)
    status, _, _, j = s.get("/views/by_shop")
    assert_error(status, j, 404, "not_found")
    s2 = start()
    status, _, _, j = s2.request("POST", "/views/by_shop", "{}")
    assert_error(status, j, 405, "method_not_allowed")
    status, _, _, j = s2.get("/sql")
    assert_error(status, j, 405, "method_not_allowed")


# ---------------------------------------------------------------------------
# read-only SQL


@pytest.mark.parametrize("sql", [
    "INSERT INTO by_shop(shop) VALUES ('x')",
    "UPDATE by_shop SET n = 0",
    "DELETE FROM by_shop",
    "DROP TABLE by_shop",
    "CREATE TABLE t(x)",
    "ATTACH DATABASE '/tmp/x.db' AS x",
    "PRAGMA journal_mode=DELETE",
    "SELECT 1; DELETE FROM by_shop",
])
def test_sql_is_read_only(start, sql):
    s = start()
    head = seed_small(s)
    view_rows(s, "by_shop", head)
    status, _, _, j = s.request("POST", "/sql", sql)
    assert status == 400, (sql, status, j)
    assert j["error"]["code"] == "validation", j
    rows = view_rows(s, "by_shop", head)
    assert len(rows) == 3


def test_sql_answers_rows_text_and_json_body(start):
    s = start()
    head = seed_small(s)
    view_rows(s, "by_shop", head)
    status, _, _, j = s.request("POST", "/sql", "SELECT shop, qty FROM by_shop ORDER BY shop")
    assert status == 200 and j["columns"] == ["shop", "qty"] and j["rows"] == [["a", 3], ["b", 3], ["c", 9]], j
    status, _, _, j = s.request("POST", "/sql", {"sql": "SELECT count(*) AS n FROM by_shop"},
                                headers={"Content-Type": "application/json"})
    assert status == 200 and j["rows"] == [[3]], j
    status, _, _, j = s.request("POST", "/sql", "SELEC oops")
    assert_error(status, j, 400, "validation")
    status, _, _, j = s.request("POST", "/sql", {"nosql": 1}, headers={"Content-Type": "application/json"})
    assert_error(status, j, 400, "validation", "sql")


def test_payi_sql_cli(start, tmp_path):
    data = tmp_path / "cli"
    s = start(data=data)
    head = seed_small(s)
    view_rows(s, "by_shop", head)
    r = run_payi(["sql", "--data", str(data), "SELECT shop, n FROM by_shop ORDER BY shop"])
    assert r.rc == 0, r
    assert r.out.splitlines() == ["shop\tn", "a\t2", "b\t1", "c\t2"]
    r = run_payi(["sql", "--data", str(data), "--json", "SELECT count(*) AS c FROM by_shop"])
    assert r.rc == 0 and json.loads(r.out) == {"columns": ["c"], "rows": [[3]], "truncated": False}, r
    r = run_payi(["sql", "--data", str(data), "DELETE FROM by_shop"])
    assert r.rc == 1 and "read-only" in r.err, r
    r = run_payi(["sql", "--data", str(data)])
    assert r.rc == 2, r


# ---------------------------------------------------------------------------
# changes over SSE


def read_sse(port, path, want, ready, timeout=10):
    """Open an SSE stream, set `ready` once it is open, and collect `want`
    events (dicts with event/data/id)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    buf, events = b"", []
    deadline = time.monotonic() + timeout
    try:
        while len(events) < want and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
            if b": payi view changes" in buf:
                ready.set()
            while b"\n\n" in buf:
                block, buf = buf.split(b"\n\n", 1)
                ev = {}
                for line in block.decode().splitlines():
                    if ":" in line and not line.startswith(":"):
                        k, v = line.split(":", 1)
                        ev[k] = v.strip()
                if "data" in ev:
                    events.append(ev)
    finally:
        sock.close()
    return events


def test_changes_stream_pushes_committed_rows(start):
    s = start()
    view_rows(s, "by_shop", seed_small(s))            # committed before the stream opens: not sent
    got, ready = [], threading.Event()
    t = threading.Thread(target=lambda: got.extend(read_sse(s.port, "/views/by_shop/changes", 2, ready)))
    t.start()
    assert ready.wait(10), "the change stream did not open"
    status, _, _, j = s.post("sales-q", {"type": "Sale", "data": {"shop": "q", "qty": 7}})
    assert status == 201
    time.sleep(0.2)
    s.post("sales-q", {"type": "Sale", "data": {"shop": "q", "qty": 1}})
    t.join(15)
    assert len(got) == 2, got
    rows = [json.loads(e["data"]) for e in got]
    assert all(e["event"] == "row" for e in got)
    assert rows[0]["shop"] == "q" and rows[0]["qty"] == 7 and rows[1]["qty"] == 8, rows
    assert int(got[1]["id"]) == int(got[0]["id"]) + 1


def test_changes_stream_reports_deleted_rows(start):
    s = start()
    post_events(s, [("sales-d", {"type": "Sale", "data": {"shop": "d", "qty": 3}})])
    view_rows(s, "open_shops", s.head())
    got, ready = [], threading.Event()
    t = threading.Thread(target=lambda: got.extend(read_sse(s.port, "/views/open_shops/changes", 1, ready)))
    t.start()
    assert ready.wait(10), "the change stream did not open"
    s.post("sales-d", {"type": "ShopClosed", "data": {"shop": "d"}})
    t.join(15)
    assert got and got[0]["event"] == "delete" and json.loads(got[0]["data"]) == {"shop": "d"}, got
    assert view_rows(s, "open_shops", s.head(), "&shop=d") == []


def test_changes_stream_filtered_by_a_column(start):
    s = start()
    got, ready = [], threading.Event()
    t = threading.Thread(target=lambda: got.extend(read_sse(s.port, "/views/by_shop/changes?shop=f%20two", 2, ready)))
    t.start()
    assert ready.wait(10), "the change stream did not open"
    for shop, qty in [("f one", 1), ("f two", 2), ("f one", 3), ("f two", 4)]:
        status, _, _, _ = s.post("sales-f", {"type": "Sale", "data": {"shop": shop, "qty": qty}})
        assert status == 201
        time.sleep(0.1)          # one commit each: four changes, two of them for "f two"
    t.join(15)
    rows = [json.loads(e["data"]) for e in got]
    assert [(r["shop"], r["qty"]) for r in rows] == [("f two", 2), ("f two", 6)], rows


@pytest.mark.parametrize("query,field,message", [
    ("nope=1", "nope", "view by_shop has no column \"nope\""),
    ("n=abc", "n", "filter n=abc: not a valid bigint"),
])
def test_changes_stream_refuses_a_bad_filter(start, query, field, message):
    s = start()
    status, _, _, j = s.get(f"/views/by_shop/changes?{query}")
    assert status == 400, (status, j)
    assert j["error"]["code"] == "validation" and j["error"]["field"] == field, j
    assert message in j["error"]["message"], j


# ---------------------------------------------------------------------------
# bad events and definitions


def test_an_event_a_view_cannot_evaluate_is_skipped_and_counted(start):
    s = start()
    post_events(s, [("clicks-x", {"type": "Click", "data": {"page": "home", "ms": 5}}),
                    ("clicks-x", {"type": "Click", "data": {"page": "home", "ms": "slow"}}),
                    ("clicks-x", {"type": "Click", "data": {"page": "home", "ms": 7}})])
    rows = view_rows(s, "clicks", s.head())
    assert rows == [{"page": "home", "n": 2, "ms": 12, "visitors": 0}], rows
    status, _, raw, _ = s.get("/metrics")
    assert re.search(rb'payi_view_events_skipped_total\{view="clicks"\} 1\n', raw), raw


REFUSED = [
    ("SELECT a.shop FROM Sale a JOIN Sale b ON a.shop = b.shop", "join"),
    ("SELECT shop FROM Sale, ShopClosed", "FROM"),
    ("SELECT shop FROM (SELECT shop FROM Sale) x", "subquer"),
    ("SELECT shop, row_number() OVER () AS r FROM Sale", "window"),
    ("SELECT DISTINCT shop FROM Sale", "DISTINCT"),
    ("SELECT shop FROM Sale UNION SELECT shop FROM ShopClosed", "UNION"),
    ("SELECT shop, count(*) AS n FROM Sale", "GROUP BY"),
    ("SELECT nosuch FROM Sale", "nosuch"),
    ("SELECT shop, sum(shop) AS s FROM Sale GROUP BY shop", "sum"),
    ("SELECT shop, sum(qty) + 1 AS s FROM Sale GROUP BY shop", "aggregate"),
]


@pytest.mark.parametrize("select,word", REFUSED)
def test_unsupported_definitions_refuse_to_start_with_position(start, tmp_path, select, word):
    spec = tmp_path / "bad.payi"
    spec.write_text("CREATE EVENT Sale (shop text NOT NULL, qty bigint);\n"
                    "CREATE EVENT ShopClosed (shop text NOT NULL);\n"
                    f"CREATE VIEW v AS\n  {select};\n")
    data = tmp_path / "untouched"
    r = run_payi(["serve", "--data", str(data), "--spec", str(spec), "--listen", "127.0.0.1:0"], timeout=30)
    assert r.rc == 1, r
    assert re.search(rf"bad\.payi:4:\d+: .*{re.escape(word)}", r.err, re.I), r.err
    assert not data.exists()


# ---------------------------------------------------------------------------
# crash: kill -9 during view maintenance


def test_kill_9_during_maintenance_counts_nothing_twice(start, tmp_path):
    rng = random.Random(7)
    data = tmp_path / "crash"
    for cycle in range(3):
        s = Server(data, spec=SHOP)     # not the fixture's: it expects a clean exit
        stop = threading.Event()

        def feed():
            while not stop.is_set():
                try:
                    post_events(s, random_events(rng, 400))
                except Exception:
                    return

        t = threading.Thread(target=feed)
        t.start()
        time.sleep(0.5 + rng.random())
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()
        stop.set()
        t.join(30)
        s.reader.join(5)
        assert not any(w in s.stderr() for w in ("AddressSanitizer", "runtime error:")), s.stderr()
    s = start(data=data)
    check_all_views(s, "after 3 kill -9 cycles")


# ---------------------------------------------------------------------------
# a changed definition is rebuilt


def test_changed_definition_is_rebuilt_and_the_old_table_serves_meanwhile(start, tmp_path):
    data = tmp_path / "redef"
    spec1 = tmp_path / "v1.payi"
    spec1.write_text("CREATE EVENT Sale (shop text NOT NULL, qty bigint);\n"
                     "CREATE VIEW by_shop AS SELECT shop, sum(qty) AS qty FROM Sale GROUP BY shop;\n")
    s = start(data=data, spec=spec1)
    post_events(s, [(f"sales-{i % 3}", {"type": "Sale", "data": {"shop": f"s{i % 3}", "qty": i}})
                    for i in range(3000)])
    head = s.head()
    v1 = {r["shop"]: r["qty"] for r in view_rows(s, "by_shop", head)}
    assert v1 == {f"s{k}": sum(range(k, 3000, 3)) for k in range(3)}
    assert s.stop() == 0

    spec2 = tmp_path / "v2.payi"     # same name, another definition: count instead of sum
    spec2.write_text("CREATE EVENT Sale (shop text NOT NULL, qty bigint);\n"
                     "CREATE VIEW by_shop AS SELECT shop, count(*) AS n, max(qty) AS top FROM Sale GROUP BY shop;\n")
    s2 = start(data=data, spec=spec2)
    rows = view_rows(s2, "by_shop", head)
    assert {r["shop"]: (r["n"], r["top"]) for r in rows} == {f"s{k}": (1000, 2997 + k) for k in range(3)}
    status, _, _, j = s2.request("POST", "/sql", "SELECT * FROM by_shop LIMIT 1")
    assert status == 200 and j["columns"] == ["shop", "n", "top"], j
    status, _, _, j = s2.request("POST", "/sql", "SELECT count(*) FROM sqlite_master WHERE name LIKE 'by_shop__%'")
    assert status == 200 and j["rows"] == [[0]], j     # the rebuild table was swapped in, nothing left over


def test_payi_replay_refuses_bad_input(tmp_path):
    r = run_payi(["replay", "--data", str(tmp_path / "d")])
    assert r.rc == 2 and "--spec" in r.err, r
    r = run_payi(["replay", "--spec", str(SHOP), "--view", "nope", "--data", str(tmp_path / "d")])
    assert r.rc == 1 and 'no view named "nope"' in r.err, r
    bad = tmp_path / "bad.payi"
    bad.write_text("CREATE VIEW v AS SELECT x FROM T JOIN U ON true;\n")
    r = run_payi(["replay", "--spec", str(bad), "--data", str(tmp_path / "d")])
    assert r.rc == 1 and re.search(r"bad\.payi:1:\d+: joins are not supported", r.err), r
