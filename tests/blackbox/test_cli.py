"""Black-box tests of the payi CLI: append / read / check, driven as subprocesses.

Run:  /usr/bin/python3 -m pytest tests/blackbox
"""
import json
import os
import queue
import random
import re
import signal
import subprocess
import threading
import time
import uuid
from datetime import datetime, timezone

import pytest

from conftest import PAYI_BIN, Payi, encode_line, ev, run_payi

# ---------------------------------------------------------------------------
# helpers

ERR_RE = re.compile(r"^payi: line (\d+): ([a-z_]+): (.+)$")
ACK_KEYS = {"position", "stream", "version"}
EVENT_KEYS = {"position", "stream", "version", "type", "id", "time", "data", "meta"}
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
SEG_RE = re.compile(r"^\d{20}\.seg$")


def uid():
    return str(uuid.uuid4())


def exact(text):
    """Parse JSON keeping number text, key order and duplicate keys."""
    return json.loads(
        text,
        parse_float=lambda s: ("num", s),
        parse_int=lambda s: ("num", s),
        parse_constant=lambda s: ("const", s),
        object_pairs_hook=lambda pairs: ("obj", pairs),
    )


def exact_field(line, key):
    tag, pairs = exact(line)
    assert tag == "obj", line
    vals = [v for k, v in pairs if k == key]
    assert len(vals) == 1, f"key {key!r} appears {len(vals)} times in {line!r}"
    return vals[0]


def parse_error(r, line=None):
    """Assert stderr is exactly one `payi: line N: code: message`; return (N, code, message)."""
    lines = r.err_lines
    assert len(lines) == 1, f"expected exactly one stderr message\n{r}"
    m = ERR_RE.match(lines[0])
    assert m, f"stderr does not match 'payi: line N: <code>: <message>'\n{r}"
    n, code, msg = int(m.group(1)), m.group(2), m.group(3)
    if line is not None:
        assert n == line, f"error names line {n}, expected line {line}\n{r}"
    return n, code, msg


def has_word(text, word_re):
    return re.search(r"(?<![A-Za-z0-9_])(?:" + word_re + r")(?![A-Za-z0-9_])", text, re.I) is not None


def ack(position, stream, version, duplicate=False):
    a = {"position": position, "stream": stream, "version": version}
    if duplicate:
        a["duplicate"] = True
    return a


def seg_file(p):
    segs = p.segments()
    assert len(segs) == 1, f"expected exactly one segment file, got {[s.name for s in segs]}"
    return segs[0]


class LineReader:
    """Reads a pipe line by line in a thread; lines (with arrival time) go to a queue."""

    def __init__(self, pipe):
        self.q = queue.Queue()
        self.t = threading.Thread(target=self._run, args=(pipe,), daemon=True)
        self.t.start()

    def _run(self, pipe):
        for raw in iter(pipe.readline, b""):
            self.q.put((time.monotonic(), raw.decode("utf-8", "replace").rstrip("\n")))
        self.q.put((time.monotonic(), None))

    def get(self, n, timeout):
        """n lines within timeout seconds (total); returns [(t, line)]."""
        deadline = time.monotonic() + timeout
        got = []
        while len(got) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                item = self.q.get(timeout=left)
            except queue.Empty:
                break
            if item[1] is None:
                self.q.put(item)
                break
            got.append(item)
        return got


def kill_proc(p):
    if p.poll() is None:
        p.kill()
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


# ---------------------------------------------------------------------------
# round trips


def test_roundtrip_all_fields(payi):
    eid = uid()
    stream = 'orders-é "q" \\ 🚀'
    typ = 'Order"Placed'
    data = {"customer": "Zoë", "items": [{"sku": "A-1", "qty": 2}], "total": 12.5, "ok": True, "none": None}
    meta = {"corr": "abc", "n": [1, 2]}
    before = datetime.now(timezone.utc)
    r = payi.append([ev(stream, data, type=typ, id=eid, meta=meta), ev(stream, {"x": 1})])
    after = datetime.now(timezone.utc)
    assert r.rc == 0, r
    assert r.err == "", f"default durability must not print anything on stderr\n{r}"
    acks = r.json_lines()
    assert acks == [ack(0, stream, 0), ack(1, stream, 1)], r

    for args in (["--stream", stream], ["--all"]):
        rr = payi.read(*args)
        assert rr.rc == 0, rr
        evs = rr.json_lines()
        assert len(evs) == 2, rr
        e0, e1 = evs
        for e in evs:
            assert set(e) == EVENT_KEYS, f"event keys {sorted(e)}"
            assert UUID_RE.match(e["id"]), e
            assert TIME_RE.match(e["time"]), f"time not RFC 3339 UTC: {e['time']!r}"
            t = datetime.strptime(e["time"][:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
            assert before.replace(microsecond=0).timestamp() - 2 <= t.timestamp() <= after.timestamp() + 2, e["time"]
        assert (e0["position"], e0["stream"], e0["version"], e0["type"], e0["id"]) == (0, stream, 0, typ, eid)
        assert e0["data"] == data and e0["meta"] == meta
        assert (e1["position"], e1["stream"], e1["version"], e1["type"]) == (1, stream, 1, "t")
        assert e1["data"] == {"x": 1}
        assert e1["meta"] == {}, "meta must be {} when none was given"
        assert e1["id"] != eid, "generated id must differ"


def test_generated_ids_are_unique_uuids(payi):
    payi.append_ok([ev("s", {"i": i}) for i in range(50)])
    evs = payi.read_all()
    ids = [e["id"] for e in evs]
    assert all(UUID_RE.match(i) for i in ids), ids
    assert len(set(ids)) == 50


def test_data_numbers_and_key_order_kept_exactly(payi):
    sent = (
        '{"z":1.10,"a":2.50,"m":-0,"n":-0.0,"e":1e5,"E":1E+2,"big":12345678901234567890123,'
        '"huge":1e400,"small":0.1e-7,"trail":123.456000,"neg":-17,'
        '"nested":{"y":[3.0,1.000,{"b":0,"a":1}],"x":{}},"arr":[],"t":true,"f":false,"nul":null}'
    )
    spaced = sent.replace(",", " ,\t").replace(":", " : ").replace("{", "{ ").replace("[", "[\t")
    line = '{ "stream" : "nums" , "type" : "t" , "data" : ' + spaced + ' , "meta" : {"v" : 1.50} }'
    r = payi.append([line])
    assert r.rc == 0, r
    rr = payi.read("--stream", "nums")
    assert rr.rc == 0 and len(rr.out_lines) == 1, rr
    out = rr.out_lines[0]
    assert exact_field(out, "data") == exact(sent), f"data changed:\nsent {sent}\ngot  {out}"
    assert exact_field(out, "meta") == exact('{"v":1.50}'), out


def test_data_strings_round_trip(payi):
    data = {
        "quote": 'he said "hi"',
        "backslash": "a\\b",
        "ctl": "tab\there\nnewline\r\x01\x1f",
        "nul": "a\x00b",
        "unicode": "café ß 日本 😀",
        "slash": "a/b",
        "": "empty key",
    }
    # escaped (ensure_ascii) and raw UTF-8 forms, including a surrogate-pair escape
    line1 = json.dumps(ev("str", data), ensure_ascii=True)
    line2 = json.dumps(ev("str", data), ensure_ascii=False)
    payi.append_ok([line1, line2])
    evs = payi.read_ok("--stream", "str")
    assert [e["data"] for e in evs] == [data, data]


def test_positions_dense_versions_gapless_across_streams(payi):
    rnd = random.Random(7)
    streams = ["alpha", "beta", "gamma", "delta"]
    order = [rnd.choice(streams) for _ in range(40)]
    acks1 = payi.append_ok([ev(s, {"i": i}) for i, s in enumerate(order[:25])])
    acks2 = payi.append_ok([ev(s, {"i": i + 25}) for i, s in enumerate(order[25:])])
    acks = acks1 + acks2
    expected, ver = [], {}
    for i, s in enumerate(order):
        expected.append(ack(i, s, ver.get(s, 0)))
        ver[s] = ver.get(s, 0) + 1
    assert acks == expected

    evs = payi.read_all()
    assert [e["position"] for e in evs] == list(range(40))
    assert [(e["stream"], e["version"], e["data"]["i"]) for e in evs] == [(a["stream"], a["version"], i) for i, a in enumerate(expected)]
    for s in streams:
        se = payi.read_ok("--stream", s)
        assert [e["version"] for e in se] == list(range(ver.get(s, 0)))
        assert [e["position"] for e in se] == [a["position"] for a in expected if a["stream"] == s]
        assert all(e["stream"] == s for e in se)


@pytest.fixture
def ten_in_s(payi):
    """Stream s gets versions 0..9 interleaved with stream o; returns s's positions."""
    lines = []
    for i in range(10):
        lines.append(ev("s", {"i": i}))
        lines.append(ev("o", {"i": i}))
    payi.append_ok(lines)
    return [2 * i for i in range(10)]


@pytest.mark.parametrize(
    "flags, versions",
    [
        ([], list(range(10))),
        (["--from", "3"], list(range(3, 10))),
        (["--from", "9"], [9]),
        (["--from", "10"], []),
        (["--from", "500"], []),
        (["--limit", "2"], [0, 1]),
        (["--from", "4", "--limit", "3"], [4, 5, 6]),
        (["--from", "8", "--limit", "5"], [8, 9]),
        (["--backwards"], list(range(9, -1, -1))),
        (["--backwards", "--from", "3"], [3, 2, 1, 0]),
        (["--backwards", "--from", "0"], [0]),
        (["--backwards", "--limit", "3"], [9, 8, 7]),
        (["--backwards", "--from", "5", "--limit", "2"], [5, 4]),
    ],
    ids=lambda x: (" ".join(x) or "plain") if isinstance(x, list) and all(isinstance(i, str) for i in x) else None,
)
def test_read_stream_from_limit_backwards(payi, ten_in_s, flags, versions):
    evs = payi.read_ok("--stream", "s", *flags)
    assert [e["version"] for e in evs] == versions
    assert [e["position"] for e in evs] == [ten_in_s[v] for v in versions]
    assert [e["data"]["i"] for e in evs] == versions


@pytest.mark.parametrize(
    "flags, positions",
    [
        ([], list(range(20))),
        (["--from", "5"], list(range(5, 20))),
        (["--from", "19"], [19]),
        (["--from", "20"], []),
        (["--limit", "4"], [0, 1, 2, 3]),
        (["--from", "7", "--limit", "3"], [7, 8, 9]),
        (["--backwards"], list(range(19, -1, -1))),
        (["--backwards", "--from", "5"], [5, 4, 3, 2, 1, 0]),
        (["--backwards", "--limit", "2"], [19, 18]),
    ],
    ids=lambda x: (" ".join(x) or "plain") if isinstance(x, list) and all(isinstance(i, str) for i in x) else None,
)
def test_read_all_from_limit_backwards(payi, ten_in_s, flags, positions):
    evs = payi.read_ok("--all", *flags)
    assert [e["position"] for e in evs] == positions
    for e in evs:
        assert e["stream"] == ("s" if e["position"] % 2 == 0 else "o")
        assert e["version"] == e["position"] // 2


def test_read_missing_stream_prints_nothing(payi):
    payi.append_ok([ev("exists")])
    r = payi.read("--stream", "does-not-exist")
    assert r.rc == 0 and r.out == "", r
    r = payi.read("--stream", "exist")  # prefix of an existing stream
    assert r.rc == 0 and r.out == "", r


def test_read_missing_data_dir_is_error(payi):
    r = payi.read("--all")
    assert r.rc == 1, r
    assert r.out == "", r
    assert r.err.strip(), r
    assert not payi.data.exists(), "read must not create the data directory"


def test_empty_input_creates_dir_and_reads_empty(payi):
    r = payi.append(b"")
    assert r.rc == 0 and r.out == "", r
    assert payi.data.is_dir()
    r = payi.read("--all")
    assert r.rc == 0 and r.out == "", r
    r = payi.check()
    assert r.rc == 0, r


def test_default_data_dir_is_payi_data_in_cwd(tmp_path):
    r = run_payi(["append"], input=[ev("s")], cwd=tmp_path)
    assert r.rc == 0, r
    assert (tmp_path / "payi-data").is_dir()
    r = run_payi(["read", "--all"], cwd=tmp_path)
    assert r.rc == 0 and len(r.json_lines()) == 1, r


def test_blank_lines_skipped_and_counted(payi):
    r = payi.append(b'\n{"stream":"s","type":"t","data":{}}\n\n\n{"stream":"s","type":"t","data":{"a":1}}\n\n')
    assert r.rc == 0, r
    assert r.json_lines() == [ack(0, "s", 0), ack(1, "s", 1)]
    # line numbers in errors count physical lines, blank ones included
    r = payi.append(b'{"stream":"s","type":"t","data":{}}\n\n\n{"stream":"s"\n')
    assert r.rc == 1, r
    parse_error(r, line=4)


def test_last_line_without_newline_is_appended(payi):
    r = payi.append(b'{"stream":"s","type":"t","data":{"a":1}}\n{"stream":"s","type":"t","data":{"a":2}}')
    assert r.rc == 0, r
    assert r.json_lines() == [ack(0, "s", 0), ack(1, "s", 1)]


def test_truncated_last_line_at_eof(payi):
    r = payi.append(b'{"stream":"s","type":"t","data":{"a":1}}\n{"stream":"s","type":"t","data":{"a":')
    assert r.rc == 1, r
    assert r.json_lines() == [ack(0, "s", 0)]
    _, code, _ = parse_error(r, line=2)
    assert code == "bad_json"
    assert len(payi.read_all()) == 1


def test_bad_first_line_appends_nothing(payi):
    r = payi.append(['{"stream":"s","type":"t"}', ev("s")])
    assert r.rc == 1, r
    assert r.out == "", r
    _, code, _ = parse_error(r, line=1)
    assert code == "validation"
    rr = payi.read("--all")
    assert rr.rc in (0, 1) and rr.out == "", rr


# ---------------------------------------------------------------------------
# expected_version

CONFLICT = "conflict"


@pytest.mark.parametrize(
    "existing, expected, outcome",
    [
        (0, "any", 0),
        (2, "any", 2),
        (0, "no_stream", 0),
        (2, "no_stream", CONFLICT),
        (0, "exists", CONFLICT),
        (2, "exists", 2),
        (1, 0, 1),
        (2, 1, 2),
        (0, 0, CONFLICT),
        (2, 0, CONFLICT),
        (2, 2, CONFLICT),
        (2, 5, CONFLICT),
    ],
    ids=lambda x: repr(x),
)
def test_expected_version(payi, existing, expected, outcome):
    # another stream first, so global positions differ from stream versions
    payi.append_ok([ev("other", {"i": i}) for i in range(3)])
    if existing:
        payi.append_ok([ev("x", {"i": i}) for i in range(existing)])
    before = payi.read_all()
    r = payi.append([ev("x", {"new": 1}, expected_version=expected), ev("later", {"after": 1})])
    if outcome == CONFLICT:
        assert r.rc == 1, r
        assert r.out == "", r
        _, code, msg = parse_error(r, line=1)
        assert code == "conflict", r
        exp_word = str(expected) if isinstance(expected, int) else expected.replace("_", "[_ ]")
        assert has_word(msg, exp_word), f"conflict message must name the expected version {expected!r}: {msg!r}"
        if existing:
            assert has_word(msg, str(existing - 1)), f"conflict message must name the actual version {existing - 1}: {msg!r}"
        else:
            assert has_word(msg, r"-1|no[_ ]stream|none|not exist|does not exist|no such stream|missing|absent"), \
                f"conflict message must say the stream does not exist: {msg!r}"
        assert payi.read_all() == before, "a conflict must append nothing"
    else:
        assert r.rc == 0, r
        assert r.json_lines() == [ack(3 + existing, "x", outcome), ack(4 + existing, "later", 0)]
        evs = payi.read_ok("--stream", "x")
        assert [e["version"] for e in evs] == list(range(existing + 1))


# ---------------------------------------------------------------------------
# multi-event array lines (atomic)


def test_array_line_appends_all(payi):
    payi.append_ok([ev("o")])
    batch = [ev("b", {"i": i}, id=uid()) for i in range(3)]
    acks = payi.append_ok([batch, ev("b", {"i": 3})])
    assert acks == [ack(1, "b", 0), ack(2, "b", 1), ack(3, "b", 2), ack(4, "b", 3)]
    evs = payi.read_ok("--stream", "b")
    assert [e["id"] for e in evs[:3]] == [b["id"] for b in batch]
    assert [e["data"]["i"] for e in evs] == [0, 1, 2, 3]


def test_array_line_conflict_appends_nothing(payi):
    payi.append_ok([ev("b", {"i": 0})])
    before = payi.read_all()
    batch = [ev("b", {"i": 1}, expected_version="no_stream"), ev("b", {"i": 2}), ev("b", {"i": 3})]
    r = payi.append([ev("c"), batch, ev("c")])
    assert r.rc == 1, r
    assert r.json_lines() == [ack(1, "c", 0)]
    _, code, _ = parse_error(r, line=2)
    assert code == "conflict"
    after = payi.read_all()
    assert after[:1] == before and len(after) == 2 and after[1]["stream"] == "c"


@pytest.mark.parametrize(
    "batch, code",
    [
        ([ev("b", {"i": 1}), ev("b", {"i": 2}), ev("b", [3])], "validation"),  # last element bad
        ([ev("b", {"i": 1}), ev("b", {"i": 2}, expected_version=99)], "conflict"),  # later element conflicts
        ([ev("b", {"i": 1}), ev("other", {"i": 2})], "validation"),  # mixed streams
        ([ev("b", {"i": 1}), {"stream": "b", "type": "t", "data": {}, "junk": 1}], "validation"),
        ([ev("b", {"i": 1}), 5], "validation"),
    ],
    ids=["last-bad-data", "later-conflict", "mixed-streams", "unknown-key", "non-object"],
)
def test_array_line_invalid_appends_nothing(payi, batch, code):
    payi.append_ok([ev("b", {"i": 0})])
    r = payi.append([batch, ev("b")])
    assert r.rc == 1, r
    assert r.out == "", r
    _, got, _ = parse_error(r, line=1)
    allowed = {code}
    if batch[-1] == 5:
        allowed.add("bad_json")
    if code == "conflict":
        allowed.add("validation")  # an implementation may refuse expected_version on a non-first element
    assert got in allowed, r
    assert len(payi.read_all()) == 1, "nothing of a failed array line may be appended"


# ---------------------------------------------------------------------------
# idempotent ids


def test_duplicate_id_within_one_run(payi):
    x = uid()
    acks = payi.append_ok([ev("a", {"v": 1}, id=x), ev("b"), ev("a", {"v": 1}, id=x), ev("a")])
    assert acks == [ack(0, "a", 0), ack(1, "b", 0), ack(0, "a", 0, duplicate=True), ack(2, "a", 1)]
    evs = payi.read_all()
    assert [e["id"] for e in evs].count(x) == 1
    assert [e["position"] for e in evs] == [0, 1, 2]


def test_duplicate_id_across_runs(payi):
    ids = [uid() for _ in range(200)]
    lines = [ev(f"s{i % 3}", {"i": i}, id=x) for i, x in enumerate(ids)]
    first = payi.append_ok(lines)
    assert [a["position"] for a in first] == list(range(200))
    assert all("duplicate" not in a for a in first)

    again = payi.append_ok([ev("fresh")] + lines + [ev("fresh")])
    assert again[0] == ack(200, "fresh", 0)
    assert again[1:201] == [dict(a, duplicate=True) for a in first]
    assert again[201] == ack(201, "fresh", 1)
    evs = payi.read_all()
    assert len(evs) == 202
    assert [e["position"] for e in evs] == list(range(202))
    assert sorted(e["id"] for e in evs[:200]) == sorted(ids)


def test_duplicate_id_in_array_line_later_run(payi):
    a, b = uid(), uid()
    first = payi.append_ok([[ev("s", {"i": 0}, id=a), ev("s", {"i": 1}, id=b)]])
    again = payi.append_ok([[ev("s", {"i": 0}, id=a), ev("s", {"i": 1}, id=b)]])
    assert again == [dict(x, duplicate=True) for x in first]
    assert len(payi.read_all()) == 2


def test_duplicate_id_under_another_stream_is_refused(payi):
    """An id names one event of one stream: reusing it for another stream is a
    client bug, refused with the original's position, and appends nothing."""
    x = uid()
    payi.append_ok([ev("s"), ev("s"), ev("s", {"v": 1}, id=x), ev("o")])
    r = payi.append([ev("o", {"v": 2}, id=x)])
    assert r.rc == 1, r
    assert "validation" in r.err and "position 2" in r.err and "another stream" in r.err, r
    # the same within one run: the first line stands, the second is refused
    y = uid()
    r = payi.append([ev("z", id=y), ev("w", id=y)])
    assert r.rc == 1, r
    assert r.json_lines() == [ack(4, "z", 0)], r
    assert "line 2" in r.err and "position 4" in r.err, r
    assert [(e["stream"], e["version"]) for e in payi.read_all()] == [("s", 0), ("s", 1), ("s", 2), ("o", 0), ("z", 0)]


# ---------------------------------------------------------------------------
# segments


def test_segment_roll(payi):
    pad = "p" * 120
    ids = [uid() for _ in range(600)]
    streams = ["r0", "r1", "r2"]
    lines = [ev(streams[i % 3], {"i": i, "pad": pad}, id=x) for i, x in enumerate(ids)]
    acks = payi.append_ok(lines, "--segment-size", "16384")
    assert [a["position"] for a in acks] == list(range(600))

    segs = payi.segments()
    names = [s.name for s in segs]
    assert len(segs) >= 3, f"--segment-size 16384 with ~100 KB of events made only {names}"
    assert all(SEG_RE.match(n) for n in names), names
    assert names[0] == "0" * 20 + ".seg", names
    firsts = [int(n[:20]) for n in names]
    assert firsts == sorted(set(firsts)) and firsts[-1] < 600, names
    for s in segs[:-1]:
        assert s.stat().st_size <= 16384 * 2, f"{s.name} is {s.stat().st_size} bytes, far beyond --segment-size"

    evs = payi.read_all()
    assert [e["position"] for e in evs] == list(range(600))
    assert [e["id"] for e in evs] == ids
    assert [e["data"]["i"] for e in evs] == list(range(600))
    for k, s in enumerate(streams):
        se = payi.read_ok("--stream", s)
        assert [e["data"]["i"] for e in se] == list(range(k, 600, 3))
        assert [e["version"] for e in se] == list(range(200))
    back = payi.read_ok("--stream", "r1", "--backwards", "--from", "150", "--limit", "60")
    assert [e["version"] for e in back] == list(range(150, 90, -1))
    mid = payi.read_ok("--all", "--from", "333", "--limit", "100")
    assert [e["position"] for e in mid] == list(range(333, 433))

    r = payi.check()
    assert r.rc == 0, r

    # reopen: duplicates of ids in the first segment are found, positions continue
    again = payi.append_ok([ev("r0", {"i": 0, "pad": pad}, id=ids[0]), ev("r9", {"i": 600})], "--segment-size", "16384")
    assert again == [ack(0, "r0", 0, duplicate=True), ack(600, "r9", 0)]
    more = payi.append_ok([ev("r0", {"i": 601, "pad": pad}) for _ in range(100)], "--segment-size", "16384")
    assert [a["position"] for a in more] == list(range(601, 701))
    assert [a["version"] for a in more] == list(range(200, 300))
    # and without the flag
    assert payi.append_ok([ev("r1", {"i": 701})]) == [ack(701, "r1", 200)]
    evs = payi.read_all()
    assert [e["position"] for e in evs] == list(range(702))
    assert len(payi.segments()) > len(segs)
    r = payi.check()
    assert r.rc == 0, r


# ---------------------------------------------------------------------------
# follow


def test_follow_sees_appends_from_another_process(payi):
    payi.append_ok([ev("f", {"i": 0}), ev("g", {"i": 1})])
    p = payi.popen("read", "--all", "--follow", stdin=subprocess.DEVNULL)
    try:
        rd = LineReader(p.stdout)
        got = rd.get(2, timeout=10)
        assert [json.loads(l)["position"] for _, l in got] == [0, 1], got

        for round_ in range(3):
            if round_ == 2:
                time.sleep(1.5)  # an idle follower must still wake up
            base = 2 + 3 * round_
            r = payi.append([ev("f", {"i": base + k}) for k in range(3)])
            t_acked = time.monotonic()
            assert r.rc == 0, r
            got = rd.get(3, timeout=5)
            evs = [json.loads(l) for _, l in got]
            assert [e["position"] for e in evs] == [base, base + 1, base + 2], (round_, got)
            assert [e["data"]["i"] for e in evs] == [base, base + 1, base + 2]
            assert set(evs[0]) == EVENT_KEYS
            lag = got[-1][0] - t_acked
            assert lag < 1.0, f"follower saw the events {lag:.3f}s after the append finished"
        assert p.poll() is None, "follower exited on its own"
    finally:
        p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            pytest.fail("follower did not exit within 5 s of SIGTERM")


def test_follow_stream_across_segment_rolls(payi):
    payi.append_ok([ev("want", {"i": -1})], "--segment-size", "8192")
    p = payi.popen("read", "--stream", "want", "--follow", stdin=subprocess.DEVNULL)
    try:
        rd = LineReader(p.stdout)
        got = rd.get(1, timeout=10)
        assert len(got) == 1, got
        pad = "z" * 200
        lines = []
        for i in range(300):
            lines.append(ev("want" if i % 2 == 0 else "skip", {"i": i, "pad": pad}))
        r = payi.append(lines, "--segment-size", "8192")
        assert r.rc == 0, r
        assert len(payi.segments()) >= 3
        got = rd.get(150, timeout=10)
        evs = [json.loads(l) for _, l in got]
        assert [e["data"]["i"] for e in evs] == list(range(0, 300, 2))
        assert [e["version"] for e in evs] == list(range(1, 151))
        assert all(e["stream"] == "want" for e in evs)
        assert rd.get(1, timeout=0.5) == [], "follower printed an event of another stream"
    finally:
        kill_proc(p)


def follow_then_append(payi, selector):
    p = payi.popen("read", *selector, "--follow", stdin=subprocess.DEVNULL)
    try:
        rd = LineReader(p.stdout)
        time.sleep(0.5)
        if p.poll() is not None:
            pytest.fail(f"follower exited with status {p.returncode} before any event: {p.stderr.read()!r}")
        assert rd.get(1, timeout=0.1) == []
        payi.append_ok([ev("s", {"i": 0}), ev("s", {"i": 1})])
        got = rd.get(2, timeout=5)
        assert [json.loads(l)["data"]["i"] for _, l in got] == [0, 1], got
    finally:
        kill_proc(p)


@pytest.mark.parametrize("selector", [["--all"], ["--stream", "s"]], ids=["all", "stream"])
def test_follow_on_log_without_events(payi, selector):
    payi.append_ok([])  # the data directory exists, the log holds no event yet
    assert payi.read_ok("--all") == []
    follow_then_append(payi, selector)


@pytest.mark.parametrize("selector", [["--all"], ["--stream", "s"]], ids=["all", "stream"])
def test_follow_on_empty_data_directory(payi, selector):
    payi.data.mkdir()  # exists, no segment yet: read and check accept it, so must follow
    assert payi.read_ok("--all") == []
    follow_then_append(payi, selector)


# ---------------------------------------------------------------------------
# single writer lock


def test_second_writer_is_refused_while_first_holds_lock(payi):
    w1 = payi.popen("append", stdin=subprocess.PIPE)
    try:
        rd = LineReader(w1.stdout)
        w1.stdin.write(encode_line(ev("held", {"i": 0})) + b"\n")
        w1.stdin.flush()
        got = rd.get(1, timeout=10)
        assert [json.loads(l) for _, l in got] == [ack(0, "held", 0)], got

        t0 = time.monotonic()
        r2 = payi.append([ev("second")], timeout=20)
        elapsed = time.monotonic() - t0
        assert r2.rc == 1, r2
        assert r2.out == "", r2
        assert elapsed < 3, f"second writer took {elapsed:.1f}s to fail; must fail at once"
        low = r2.err.lower()
        assert "locked" in low or "in use" in low, r2
        assert str(payi.data) in r2.err, f"message must name the data directory {payi.data}\n{r2}"

        # readers are not writers: reading works while the lock is held
        assert [e["stream"] for e in payi.read_all()] == ["held"]

        # first writer still works after the refused attempt
        w1.stdin.write(encode_line(ev("held", {"i": 1})) + b"\n")
        w1.stdin.flush()
        got = rd.get(1, timeout=10)
        assert [json.loads(l) for _, l in got] == [ack(1, "held", 1)], got
        w1.stdin.close()
        assert w1.wait(timeout=10) == 0
    finally:
        kill_proc(w1)
    # released: a new writer works
    assert payi.append_ok([ev("third")]) == [ack(2, "third", 0)]


def test_lock_released_when_writer_is_killed(payi):
    w1 = payi.popen("append", stdin=subprocess.PIPE)
    try:
        rd = LineReader(w1.stdout)
        w1.stdin.write(encode_line(ev("k")) + b"\n")
        w1.stdin.flush()
        assert len(rd.get(1, timeout=10)) == 1
        w1.send_signal(signal.SIGKILL)
        w1.wait(timeout=10)
    finally:
        kill_proc(w1)
    assert payi.append_ok([ev("k")]) == [ack(1, "k", 1)]


# ---------------------------------------------------------------------------
# bad input table: good line, bad line, good line


def nested(depth, open_, close_, inner="1"):
    return open_ * depth + inner + close_ * depth


def raw(s):
    return s.encode("utf-8") if isinstance(s, str) else s


BAD_CASES = [
    # id, bad line, extra flags, allowed codes, keyword regexes (all must match the message)
    ("malformed-json", raw('{"stream":"s" "type":"t","data":{}}'), [], {"bad_json"}, []),
    ("trailing-comma", raw('{"stream":"s","type":"t","data":{},}'), [], {"bad_json"}, []),
    ("single-quotes", raw("{'stream':'s','type':'t','data':{}}"), [], {"bad_json"}, []),
    ("leading-zero", raw('{"stream":"s","type":"t","data":{"n":01}}'), [], {"bad_json"}, []),
    ("nan", raw('{"stream":"s","type":"t","data":{"n":NaN}}'), [], {"bad_json"}, []),
    ("bad-escape", raw('{"stream":"s","type":"t","data":{"k":"\\x41"}}'), [], {"bad_json"}, []),
    ("trailing-garbage", raw('{"stream":"s","type":"t","data":{}} x'), [], {"bad_json"}, []),
    ("two-objects", raw('{"stream":"s","type":"t","data":{}}{"stream":"s","type":"t","data":{}}'), [], {"bad_json"}, []),
    ("truncated-line", raw('{"stream":"s","type":"t","data":{"a":[1,2'), [], {"bad_json"}, []),
    ("raw-ctl-in-string", b'{"stream":"s","type":"t","data":{"k":"a\tb"}}', [], {"bad_json"}, []),
    ("raw-nul", b'{"stream":"s\x00x","type":"t","data":{}}', [], {"bad_json"}, []),
    ("not-an-object", raw("42"), [], {"validation", "bad_json"}, []),
    ("missing-stream", raw('{"type":"t","data":{}}'), [], {"validation"}, ["stream"]),
    ("missing-type", raw('{"stream":"s","data":{}}'), [], {"validation"}, ["type"]),
    ("missing-data", raw('{"stream":"s","type":"t"}'), [], {"validation"}, ["data"]),
    ("data-array", raw('{"stream":"s","type":"t","data":[1,2]}'), [], {"validation"}, ["data"]),
    ("data-string", raw('{"stream":"s","type":"t","data":"x"}'), [], {"validation"}, ["data"]),
    ("data-null", raw('{"stream":"s","type":"t","data":null}'), [], {"validation"}, ["data"]),
    ("meta-not-object", raw('{"stream":"s","type":"t","data":{},"meta":[1]}'), [], {"validation"}, ["meta"]),
    ("stream-not-string", raw('{"stream":7,"type":"t","data":{}}'), [], {"validation"}, ["stream"]),
    ("empty-stream", raw('{"stream":"","type":"t","data":{}}'), [], {"validation"}, ["stream"]),
    ("empty-type", raw('{"stream":"s","type":"","data":{}}'), [], {"validation"}, ["type"]),
    ("stream-256-ascii", encode_line(ev("a" * 256)), [], {"validation"}, ["stream"]),
    ("stream-256-bytes-128-chars", encode_line(ev("é" * 128)), [], {"validation"}, ["stream"]),
    ("type-256", encode_line(ev("s", type="t" * 256)), [], {"validation"}, ["type"]),
    ("ctl-char-in-stream", raw('{"stream":"a\\u0001b","type":"t","data":{}}'), [], {"validation"}, ["stream"]),
    ("newline-in-stream", raw('{"stream":"a\\nb","type":"t","data":{}}'), [], {"validation"}, ["stream"]),
    ("nul-escape-in-type", raw('{"stream":"s","type":"a\\u0000","data":{}}'), [], {"validation"}, ["type"]),
    ("utf8-ff-in-stream", b'{"stream":"s\xff","type":"t","data":{}}', [], {"bad_json"}, []),
    ("utf8-bad-cont-in-data", b'{"stream":"s","type":"t","data":{"k":"\xc3\x28"}}', [], {"bad_json"}, []),
    ("utf8-overlong", b'{"stream":"s","type":"t","data":{"k":"\xc0\xaf"}}', [], {"bad_json"}, []),
    ("utf8-surrogate", b'{"stream":"s","type":"t","data":{"k":"\xed\xa0\x80"}}', [], {"bad_json"}, []),
    ("utf8-above-10ffff", b'{"stream":"s","type":"t","data":{"k":"\xf5\x80\x80\x80"}}', [], {"bad_json"}, []),
    ("utf8-truncated-seq", b'{"stream":"s","type":"t","data":{"k":"\xe2\x82"}}', [], {"bad_json"}, []),
    ("utf8-in-key", b'{"stream":"s","type":"t","data":{"\xfe":1}}', [], {"bad_json"}, []),
    ("unknown-key", raw('{"stream":"s","type":"t","data":{},"bogus":1}'), [], {"validation"}, ["bogus"]),
    ("bad-uuid", raw('{"stream":"s","type":"t","data":{},"id":"not-a-uuid"}'), [], {"validation"}, ["id"]),
    ("uuid-no-dashes", raw('{"stream":"s","type":"t","data":{},"id":"0123456789abcdef0123456789abcdef"}'), [], {"validation"}, ["id"]),
    ("uuid-bad-hex", raw('{"stream":"s","type":"t","data":{},"id":"01234567-89ab-cdef-0123-456789abcdeg"}'), [], {"validation"}, ["id"]),
    ("uuid-not-string", raw('{"stream":"s","type":"t","data":{},"id":12}'), [], {"validation"}, ["id"]),
    ("ev-negative", raw('{"stream":"s","type":"t","data":{},"expected_version":-1}'), [], {"validation"}, ["expected[_ ]version"]),
    ("ev-word", raw('{"stream":"s","type":"t","data":{},"expected_version":"sometimes"}'), [], {"validation"}, ["expected[_ ]version"]),
    ("ev-fraction", raw('{"stream":"s","type":"t","data":{},"expected_version":1.5}'), [], {"validation"}, ["expected[_ ]version"]),
    ("ev-numeric-string", raw('{"stream":"s","type":"t","data":{},"expected_version":"1"}'), [], {"validation"}, ["expected[_ ]version"]),
    ("ev-bool", raw('{"stream":"s","type":"t","data":{},"expected_version":true}'), [], {"validation"}, ["expected[_ ]version"]),
    ("too-large", encode_line(ev("s", {"pad": "x" * 200})), ["--max-event-size", "100"], {"too_large"}, []),
    ("too-large-default-1MiB", encode_line(ev("s", {"pad": "x" * (1024 * 1024 + 10)})), [], {"too_large"}, []),
    ("wrong-expected-version", encode_line(ev("good", expected_version=5)), [], {"conflict"}, ["5", "0"]),
    ("nested-10000-arrays", raw('{"stream":"s","type":"t","data":{"a":' + nested(10000, "[", "]") + "}}"), [],
     {"bad_json", "validation"}, ["nest\\w*|depth|deep\\w*|level\\w*"]),
    ("nested-10000-objects", raw('{"stream":"s","type":"t","data":' + nested(10000, '{"a":', "}") + "}"), [],
     {"bad_json", "validation"}, ["nest\\w*|depth|deep\\w*|level\\w*"]),
]


@pytest.mark.parametrize("bad, flags, codes, keywords", [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_input(payi, bad, flags, codes, keywords):
    good1 = encode_line(ev("good", {"n": 1}))
    good2 = encode_line(ev("good", {"n": 2}))
    r = payi.append(good1 + b"\n" + bad + b"\n" + good2 + b"\n", *flags)
    assert r.rc == 1, r
    assert r.json_lines() == [ack(0, "good", 0)], f"only the first line's ack may be on stdout\n{r}"
    _, code, msg = parse_error(r, line=2)
    assert code in codes, f"code {code!r}, expected one of {sorted(codes)}\n{r}"
    for kw in keywords:
        assert has_word(msg, kw), f"message {msg!r} should mention {kw!r}"
    evs = payi.read_all()
    assert len(evs) == 1 and evs[0]["data"] == {"n": 1}, f"log changed beyond the good line: {evs}"


def test_stream_and_type_of_exactly_255_bytes_accepted(payi):
    s255 = "é" * 127 + "a"  # 255 bytes, 128 characters
    t255 = "t" * 255
    assert len(s255.encode()) == 255
    acks = payi.append_ok([ev(s255, type=t255)])
    assert acks == [ack(0, s255, 0)]
    evs = payi.read_ok("--stream", s255)
    assert len(evs) == 1 and evs[0]["type"] == t255


def test_max_event_size_boundary(payi):
    # size = stream + type + data + meta bytes (compact JSON as sent)
    limit = 200
    meta = {"m": 1}
    base = len("s") + len("t") + len(json.dumps(meta, separators=(",", ":"))) + len('{"p":""}')

    def event_of(size):
        return ev("s", {"p": "x" * (size - base)}, meta=meta)

    line = encode_line(event_of(limit))
    assert len(b"s") + len(b"t") + len(b'{"m":1}') + len(json.dumps(event_of(limit)["data"], separators=(",", ":"))) == limit
    assert payi.append_ok([line], "--max-event-size", str(limit)) == [ack(0, "s", 0)]
    r = payi.append([event_of(limit + 1)], "--max-event-size", str(limit))
    assert r.rc == 1, r
    _, code, _ = parse_error(r, line=1)
    assert code == "too_large"
    assert len(payi.read_all()) == 1


def test_event_just_under_default_limit_round_trips(payi):
    big = "y" * (1024 * 1024 - 200)
    assert payi.append_ok([ev("big", {"b": big})]) == [ack(0, "big", 0)]
    evs = payi.read_ok("--stream", "big")
    assert len(evs) == 1 and evs[0]["data"]["b"] == big
    assert payi.check().rc == 0


def test_error_after_several_good_lines(payi):
    lines = [ev("s", {"i": i}) for i in range(5)] + ['{"stream":"s","type":"t","data":5}'] + [ev("s", {"i": 9})]
    r = payi.append(lines)
    assert r.rc == 1, r
    assert r.json_lines() == [ack(i, "s", i) for i in range(5)]
    parse_error(r, line=6)
    assert [e["data"]["i"] for e in payi.read_all()] == list(range(5))


# ---------------------------------------------------------------------------
# data directory problems


def test_data_dir_under_regular_file(tmp_path):
    f = tmp_path / "plainfile"
    f.write_text("not a dir")
    bad = f / "data"
    r = run_payi(["append", "--data", str(bad)], input=[ev("s")])
    assert r.rc == 1, r
    assert r.out == "", r
    assert str(bad) in r.err, f"error must name the directory {bad}\n{r}"
    assert f.read_text() == "not a dir"


def test_data_dir_is_regular_file(tmp_path):
    f = tmp_path / "plainfile"
    f.write_text("not a dir")
    r = run_payi(["append", "--data", str(f)], input=[ev("s")])
    assert r.rc == 1, r
    assert r.out == "", r
    assert str(f) in r.err, f"error must name the directory {f}\n{r}"
    assert f.read_text() == "not a dir"


def test_data_dir_created_if_missing(tmp_path):
    d = tmp_path / "newdir"
    r = run_payi(["append", "--data", str(d)], input=[ev("s")])
    assert r.rc == 0, r
    assert d.is_dir()
    assert any(SEG_RE.match(p.name) for p in d.iterdir()), list(d.iterdir())


# ---------------------------------------------------------------------------
# check and recovery


def test_check_clean_log(payi):
    payi.append_ok([ev(f"s{i % 4}", {"i": i}) for i in range(100)])
    payi.append_ok([[ev("arr", {"i": 0}), ev("arr", {"i": 1})]])
    r = payi.check()
    assert r.rc == 0, r
    assert len(r.out_lines) == 1, f"check must print one summary line\n{r}"
    assert "102" in r.out or "events" in r.out.lower() or "records" in r.out.lower(), r


def build_log(payi, n=5, pad=300):
    """n events, each appended by its own process; returns (segment, ids, ends).

    ends[k] is the segment size after event k-1 (ends[0] = size before any event),
    so record k occupies bytes [ends[k], ends[k+1]).
    """
    payi.append_ok([])
    segs = payi.segments()
    ends = [segs[0].stat().st_size if segs else 0]
    ids = []
    for k in range(n):
        x = uid()
        ids.append(x)
        assert payi.append_ok([ev(f"s{k % 2}", {"k": k, "pad": "q" * pad}, id=x)]) == [ack(k, f"s{k % 2}", k // 2)]
        seg = seg_file(payi)
        ends.append(seg.stat().st_size)
        assert ends[-1] - ends[-2] > pad, f"segment did not grow by a record ({ends}); test assumes append-only segment files"
    return seg, ids, ends


def assert_repaired(payi, seg, ids, keep):
    """After damage to the tail: the next writer repairs, the first `keep` events are intact."""
    x = uid()
    r = payi.append([ev("after", {"new": 1}, id=x)])
    assert r.rc == 0, f"writer must repair a torn tail\n{r}"
    assert r.json_lines() == [ack(keep, "after", 0)], r
    evs = payi.read_all()
    assert [e["id"] for e in evs] == ids[:keep] + [x]
    assert [e["position"] for e in evs] == list(range(keep + 1))
    assert [e["data"].get("k") for e in evs[:keep]] == list(range(keep))
    r = payi.check()
    assert r.rc == 0, f"check after repair\n{r}"


@pytest.mark.parametrize("where", ["one-byte", "quarter", "middle", "minus-one"])
def test_torn_tail_truncation_repaired(payi, where):
    seg, ids, ends = build_log(payi)
    start, end = ends[4], ends[5]
    cut = {"one-byte": start + 1, "quarter": start + (end - start) // 4,
           "middle": (start + end) // 2, "minus-one": end - 1}[where]
    os.truncate(seg, cut)
    assert_repaired(payi, seg, ids, keep=4)


@pytest.mark.parametrize("kind", ["random", "zeros", "partial-record-copy", "one-byte"])
def test_tail_garbage_repaired(payi, kind):
    seg, ids, ends = build_log(payi)
    blob = seg.read_bytes()
    rec = blob[ends[4]:ends[5]]
    junk = {
        "random": random.Random(1).randbytes(100),
        "zeros": b"\0" * 4096,
        "partial-record-copy": rec[: len(rec) // 2],
        "one-byte": b"\x01",
    }[kind]
    with open(seg, "ab") as f:
        f.write(junk)
    assert_repaired(payi, seg, ids, keep=5)


@pytest.mark.parametrize("rel", ["first", "middle", "last"])
def test_bit_flip_in_last_record_repaired(payi, rel):
    seg, ids, ends = build_log(payi)
    start, end = ends[4], ends[5]
    off = {"first": start, "middle": (start + end) // 2, "last": end - 1}[rel]
    b = bytearray(seg.read_bytes())
    b[off] ^= 0x01 if rel != "first" else 0x80
    seg.write_bytes(bytes(b))
    assert_repaired(payi, seg, ids, keep=4)


def names_file_and_offset(text, seg, offsets):
    if seg.name not in text:
        return False
    return any(re.search(r"(?<![0-9])%d(?![0-9])" % o, text) for o in offsets)


@pytest.mark.parametrize(
    "rel, mask",
    [(0, 0x80), (1, 0x80), (2, 0x80), (3, 0x80), (4, 0x80), (5, 0x80), (6, 0x80), (7, 0x80),
     ("middle", 0x01), ("last", 0x01)],
    ids=lambda x: str(x),
)
def test_mid_log_bit_flip_refused(payi, rel, mask):
    seg, ids, ends = build_log(payi)
    start, end = ends[2], ends[3]  # record of event 2, followed by events 3 and 4
    off = start + rel if isinstance(rel, int) else ((start + end) // 2 if rel == "middle" else end - 1)
    b = bytearray(seg.read_bytes())
    b[off] ^= mask
    seg.write_bytes(bytes(b))
    damaged = seg.read_bytes()

    r = payi.append([ev("after")])
    assert r.rc == 1, f"append must refuse a log with mid-log corruption\n{r}"
    assert r.out == "", r
    assert names_file_and_offset(r.err, seg, {start, off}), \
        f"append must name {seg.name} and offset {start} (record) or {off} (byte)\n{r}"
    assert seg.read_bytes() == damaged, "a refused writer must not modify (truncate) the segment"
    assert payi.segments() == [seg]

    c = payi.check()
    assert c.rc == 1, f"check must report the corruption\n{c}"
    assert names_file_and_offset(c.out + c.err, seg, {start, off}), \
        f"check must name {seg.name} and offset {start} (record) or {off} (byte)\n{c}"
    assert seg.read_bytes() == damaged


def test_corruption_in_sealed_segment_found_by_read_and_check(payi):
    """Sealed segments are trusted through their index at open (that is what
    makes reopening fast); a flipped bit in one is caught by every read of the
    record and by check, which name the file and the offset."""
    pad = "w" * 150
    payi.append_ok([ev("s", {"i": i, "pad": pad}) for i in range(300)], "--segment-size", "8192")
    segs = payi.segments()
    assert len(segs) >= 3
    first = segs[0]
    b = bytearray(first.read_bytes())
    off = len(b) // 2
    b[off] ^= 0x04
    first.write_bytes(bytes(b))

    r = payi.run("read", "--all")
    assert r.rc == 1, r
    assert first.name in r.err and "corrupt" in r.err, r
    good = [json.loads(l) for l in r.out_lines]
    assert [e["position"] for e in good] == list(range(len(good))) and 0 < len(good) < 300, r
    c = payi.check()
    assert c.rc == 1, c
    assert first.name in c.out + c.err, c
    assert re.search(r"offset \d+", c.out + c.err), c


# ---------------------------------------------------------------------------
# durability modes


def test_durability_none_warns_loudly(payi):
    r = payi.append([ev("d", {"i": 0}), ev("d", {"i": 1})], "--durability", "none")
    assert r.rc == 0, r
    assert r.json_lines() == [ack(0, "d", 0), ack(1, "d", 1)]
    assert "warn" in r.err.lower(), f"--durability none must print a warning on stderr\n{r}"
    assert [e["data"]["i"] for e in payi.read_all()] == [0, 1]


@pytest.mark.parametrize("mode", ["fsync", "interval"])
def test_durability_modes_work(payi, mode):
    acks = payi.append_ok([ev("d", {"i": i}) for i in range(20)], "--durability", mode)
    assert [a["position"] for a in acks] == list(range(20))
    assert len(payi.read_all()) == 20


def test_durability_bad_value_is_usage_error(payi):
    r = payi.append([ev("d")], "--durability", "sometimes")
    assert r.rc == 2, r
    assert r.out == ""


# ---------------------------------------------------------------------------
# usage


@pytest.mark.parametrize(
    "verb, flags",
    [
        ("append", ["--data", "--durability", "--max-event-size", "--segment-size"]),
        ("read", ["--data", "--stream", "--all", "--from", "--limit", "--backwards", "--follow"]),
        ("check", ["--data"]),
    ],
)
def test_help(verb, flags, tmp_path):
    r = run_payi([verb, "--help"], cwd=tmp_path)
    assert r.rc == 0, r
    assert "usage" in r.out.lower(), r
    assert verb in r.out, r
    for f in flags:
        assert f in r.out, f"{verb} --help does not mention {f}\n{r}"
    assert not (tmp_path / "payi-data").exists(), "--help must not create a data directory"


def test_no_verb_prints_usage_to_stderr(tmp_path):
    r = run_payi([], cwd=tmp_path)
    assert r.rc == 2, r
    assert r.out == "", r
    assert "usage" in r.err.lower(), r


@pytest.mark.parametrize(
    "args",
    [
        ["append", "--bogus"],
        ["read", "--all", "--bogus"],
        ["check", "--bogus"],
        ["frobnicate"],
        ["read"],  # neither --stream nor --all
        ["read", "--all", "--from", "abc"],
        ["append", "--max-event-size", "lots"],
    ],
    ids=lambda a: " ".join(a),
)
def test_usage_errors_exit_2(args, tmp_path):
    r = run_payi(args[:1] + ["--data", str(tmp_path / "d")] + args[1:] if args[0] in ("append", "read", "check") else args,
                 input=[ev("s")], cwd=tmp_path)
    assert r.rc == 2, r
    assert r.out == "", r
    assert r.err.strip(), r
