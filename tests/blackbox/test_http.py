"""Black-box tests of `payi serve`: the HTTP face of the event store.

Each test starts the real binary (PAYI_BIN) on a free port with a fresh data
directory and talks to it with the standard library only (http.client, raw
sockets for Server-Sent Events and slow clients).
"""
import http.client
import json
import re
import signal
import socket
import subprocess
import threading
import time
import uuid

import pytest

from conftest import PAYI_BIN, run_payi

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
EVENT_KEYS = {"position", "stream", "version", "type", "id", "time", "data", "meta"}
LISTEN_RE = re.compile(r"^payi: listening on http://127\.0\.0\.1:(\d+)$")


# ---------------------------------------------------------------------------
# the server under test


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`payi serve` on a free port; stderr is collected by a thread."""

    def __init__(self, data_dir, *flags):
        self.data = data_dir
        self.flags = flags
        self.lines = []
        self.ready = threading.Event()
        for _ in range(5):   # another process may take the free port between our check and the bind
            self.port = free_port()
            self.proc = subprocess.Popen(
                [str(PAYI_BIN), "serve", "--data", str(data_dir), "--listen", f"127.0.0.1:{self.port}", *flags],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.ready.clear()
            self.reader = threading.Thread(target=self._drain, daemon=True)
            self.reader.start()
            if self.ready.wait(30):
                return
            self.proc.wait(10)
            if "Address already in use" not in self.stderr():
                break
        raise AssertionError(f"payi serve did not start:\n{self.stderr()}")

    def _drain(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            m = LISTEN_RE.match(line)
            if m:
                assert int(m.group(1)) == self.port, line
                self.ready.set()

    def stderr(self):
        return "\n".join(self.lines)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"payi serve did not stop on {sig!r} within {timeout}s\n{self.stderr()}")
        self.reader.join(10)
        return self.proc.returncode

    # -- HTTP
    def conn(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, conn=None):
        """(status, headers, body bytes, parsed JSON or None)."""
        c = conn or self.conn()
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
            elif isinstance(body, str):
                body = body.encode()
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            raw = r.read()
            try:
                parsed = json.loads(raw) if raw and r.getheader("Content-Type", "").startswith("application/json") else None
            except ValueError:
                raise AssertionError(f"{method} {path}: answer is not JSON: {raw[:500]!r}")
            return r.status, r, raw, parsed
        finally:
            if conn is None:
                c.close()

    def post(self, stream_path, body, **kw):
        return self.request("POST", "/streams/" + stream_path, body, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def head(self):
        status, _, _, j = self.get("/all?limit=1")
        assert status == 200, j
        return j["head"]

    def metrics(self):
        status, r, raw, _ = self.get("/metrics")
        assert status == 200 and r.getheader("Content-Type").startswith("text/plain")
        out = {}
        for line in raw.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out


@pytest.fixture
def start(tmp_path):
    servers = []

    def start_server(*flags, data=None):
        s = Server(data or tmp_path / f"data{len(servers)}", *flags)
        servers.append(s)
        return s

    yield start_server
    for s in servers:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


@pytest.fixture
def srv(start):
    return start()


def event(type="T", data=None, **extra):
    e = {"type": type, "data": {} if data is None else data}
    e.update(extra)
    return e


def assert_error(status, j, want_status, code, field=None):
    assert status == want_status, f"status {status}, wanted {want_status}: {j}"
    assert j is not None and set(j) == {"error"}, j
    err = j["error"]
    assert err["code"] == code, j
    assert isinstance(err["message"], str) and err["message"], j
    if field is not None:
        assert err.get("field") == field, j


# ---------------------------------------------------------------------------
# appends


def test_append_one_event_answers_201_with_positions(srv):
    status, r, raw, j = srv.post("orders-1", '{"type":"Placed","data":{"amount":1.10,"n":12345678901234567890}}')
    assert status == 201, j
    assert r.getheader("Content-Type") == "application/json"
    assert set(j) == {"position", "stream", "version", "events"}, j
    assert (j["position"], j["stream"], j["version"]) == (0, "orders-1", 0)
    assert len(j["events"]) == 1 and set(j["events"][0]) == {"position", "version", "id"}
    assert j["events"][0]["position"] == 0 and UUID_RE.match(j["events"][0]["id"])
    status, _, raw, j2 = srv.get("/streams/orders-1")
    assert status == 200 and set(j2) == {"events", "head"} and j2["head"] == 1
    e = j2["events"][0]
    assert set(e) == EVENT_KEYS
    assert (e["stream"], e["type"], e["version"], e["id"]) == ("orders-1", "Placed", 0, j["events"][0]["id"])
    assert b'"data":{"amount":1.10,"n":12345678901234567890}' in raw   # numbers kept as written


def test_append_array_is_atomic_and_dense(srv):
    status, _, _, j = srv.post("s", [event("A"), event("B", stream="s"), event("C", meta={"by": "me"})])
    assert status == 201, j
    assert [e["position"] for e in j["events"]] == [0, 1, 2]
    assert [e["version"] for e in j["events"]] == [0, 1, 2]
    assert (j["position"], j["version"]) == (2, 2)
    status, _, _, j = srv.post("s", [event("D"), event(7)])
    assert_error(status, j, 400, "validation", "[1].type")
    assert srv.head() == 3
    _, _, _, j = srv.get("/streams/s")
    assert [e["type"] for e in j["events"]] == ["A", "B", "C"]
    assert j["events"][2]["meta"] == {"by": "me"}


def test_duplicate_id_answers_200_with_the_original(srv):
    eid = str(uuid.uuid4())
    status, _, _, first = srv.post("s", event(id=eid))
    assert status == 201
    srv.post("other", event())
    status, _, _, again = srv.post("s", event(id=eid))
    assert status == 200, again
    assert again["duplicate"] is True and again["events"][0]["duplicate"] is True
    assert again["position"] == first["position"] and again["events"][0]["id"] == eid
    assert srv.head() == 2


def test_expected_version_and_conflict(srv):
    assert srv.post("s", event(expected_version="no_stream"))[0] == 201
    assert srv.post("s", event(expected_version=0))[0] == 201
    assert srv.post("s", event(expected_version="exists"))[0] == 201
    status, _, _, j = srv.post("s", event(expected_version=0))
    assert_error(status, {"error": j["error"]}, 409, "conflict", "expected_version")
    assert "version 2" in j["error"]["message"] and j["error"]["actual_version"] == 2
    status, _, _, j = srv.post("new", event(expected_version="exists"))
    assert status == 409 and j["error"]["actual_version"] == -1
    assert srv.head() == 3


def test_stream_name_is_percent_decoded(srv):
    status, _, _, j = srv.post("a%2Fb%20c%C3%A9", event())
    assert status == 201 and j["stream"] == "a/b cé", j
    status, _, _, j = srv.get("/streams/a%2Fb%20c%C3%A9")
    assert status == 200 and [e["stream"] for e in j["events"]] == ["a/b cé"]
    assert srv.get("/streams/a/b")[0] == 404


def test_ndjson_batch_is_answered_line_by_line(srv):
    srv.post("s", event())
    body = b"\n".join([
        json.dumps(event("A")).encode(),
        json.dumps(event("B", expected_version=5)).encode(),         # conflict: the others still go in
        b"",                                                          # blank: skipped
        b'{"type":"C","data":{',                                      # bad JSON
        json.dumps([event("D"), event("E")]).encode(),               # atomic pair
        json.dumps(event("F", stream="other")).encode(),             # wrong stream
        json.dumps(event("G", expected_version=3)).encode() + b"\r",  # CRLF; version 3 after A, D, E
    ]) + b"\n"
    status, r, raw, _ = srv.post("s", body, headers={"Content-Type": "application/x-ndjson"})
    assert status == 200 and r.getheader("Content-Type") == "application/x-ndjson"
    lines = [json.loads(l) for l in raw.decode().splitlines()]
    assert len(lines) == 6, raw
    assert lines[0]["version"] == 1 and lines[0]["stream"] == "s"
    assert lines[1]["error"]["code"] == "conflict" and lines[1]["error"]["line"] == 2
    assert lines[2]["error"]["code"] == "bad_json" and lines[2]["error"]["line"] == 4
    assert [e["version"] for e in lines[3]["events"]] == [2, 3]
    assert lines[4]["error"]["code"] == "validation" and lines[4]["error"]["field"] == "stream"
    assert lines[5]["version"] == 4, lines[5]
    _, _, _, j = srv.get("/streams/s")
    assert [e["type"] for e in j["events"]] == ["T", "A", "D", "E", "G"]


# ---------------------------------------------------------------------------
# reads


def test_read_stream_and_all_with_params(srv):
    for i in range(5):
        srv.post("a", event(data={"i": i}))
        srv.post("b", event(data={"i": i}))
    _, _, _, j = srv.get("/streams/a?from=1&limit=2")
    assert [(e["version"], e["data"]["i"]) for e in j["events"]] == [(1, 1), (2, 2)] and j["head"] == 10
    _, _, _, j = srv.get("/streams/a?backwards=true&limit=3")
    assert [e["version"] for e in j["events"]] == [4, 3, 2]
    _, _, _, j = srv.get("/streams/a?backwards&from=1")
    assert [e["version"] for e in j["events"]] == [1, 0]
    _, _, _, j = srv.get("/all?from=7")
    assert [e["position"] for e in j["events"]] == [7, 8, 9]
    _, _, _, j = srv.get("/all?limit=4")
    assert [e["position"] for e in j["events"]] == [0, 1, 2, 3]
    _, _, _, j = srv.get("/all?backwards=1&limit=2")
    assert [e["position"] for e in j["events"]] == [9, 8]
    _, _, _, j = srv.get("/streams/missing")
    assert j == {"events": [], "head": 10}


def test_read_your_writes(srv):
    c = srv.conn()
    for i in range(30):
        _, _, _, a = srv.post(f"s{i % 3}", event(data={"i": i}), conn=c)
        _, _, _, j = srv.get(f"/all?from={a['position']}&limit=1", conn=c)
        assert j["events"][0]["data"] == {"i": i} and j["head"] == a["position"] + 1
        _, _, _, j = srv.get(f"/streams/s{i % 3}?from={a['version']}", conn=c)
        assert [e["data"]["i"] for e in j["events"]] == [i]
    c.close()


def test_health_and_metrics(srv):
    status, _, _, j = srv.get("/health")
    assert status == 200 and j == {"status": "ok", "head": 0}
    srv.post("s", [event(), event()])
    assert srv.get("/health")[3] == {"status": "ok", "head": 2}
    srv.get("/nope")
    # A request is counted when libmicrohttpd reports it complete, just after
    # its answer went out: the client may read /metrics before that.
    deadline = time.monotonic() + 5
    m = srv.metrics()
    while 'payi_http_requests_total{route="other",code="404"}' not in m and time.monotonic() < deadline:
        time.sleep(0.05)
        m = srv.metrics()
    assert m["payi_events_total"] == 2 and m["payi_segments"] == 1 and m["payi_log_bytes"] > 0
    assert m["payi_fsyncs_total"] >= 1 and m["payi_batches_total"] >= 1
    assert m['payi_http_requests_total{route="POST /streams/{stream}",code="201"}'] == 1
    assert m['payi_http_requests_total{route="GET /health",code="200"}'] == 2
    assert m['payi_http_requests_total{route="other",code="404"}'] == 1
    assert m['payi_http_request_duration_seconds_count{route="GET /health"}'] == 2
    assert m['payi_http_request_duration_seconds_bucket{route="GET /health",le="+Inf"}'] == 2


def test_unknown_route_404_and_wrong_method_405(srv):
    for method, path, want in [("GET", "/nope", 404), ("GET", "/streams", 404), ("GET", "/alll", 404),
                               ("POST", "/all", 405), ("DELETE", "/streams/s", 405), ("PUT", "/health", 405),
                               ("POST", "/events", 405), ("GET", "/streams/a/b", 404)]:
        status, r, _, j = srv.request(method, path, b"{}" if method != "GET" else None)
        assert status == want, (method, path, status, j)
        assert j["error"]["code"] == ("not_found" if want == 404 else "method_not_allowed")
        if want == 405:
            assert "GET" in r.getheader("Allow")
    assert srv.head() == 0


def test_keep_alive_reuses_one_connection(srv):
    c = srv.conn()
    c.connect()
    local = c.sock.getsockname()
    for i in range(100):
        if i % 2:
            status, r, _, _ = srv.post("k", event(data={"i": i}), conn=c)
            assert status == 201
        else:
            status, r, _, _ = srv.get("/health", conn=c)
            assert status == 200
        assert r.getheader("Connection", "").lower() != "close"
        assert c.sock is not None and c.sock.getsockname() == local, f"request {i} used a new connection"
    c.close()
    assert srv.head() == 50


# ---------------------------------------------------------------------------
# the table of bad input: each answers its error and changes nothing

DEEP = '{"type":"T","data":' + '{"a":' * 100 + "1" + "}" * 100 + "}"

BAD_POSTS = [
    # (name, path, body, status, code, field)
    ("malformed", "s", '{"type":"T","data":{}', 400, "bad_json", None),
    ("truncated", "s", '{"type":"T","da', 400, "bad_json", None),
    ("empty body", "s", "", 400, "bad_json", None),
    ("trailing garbage", "s", '{"type":"T","data":{}} x', 400, "bad_json", None),
    ("duplicate key", "s", '{"type":"T","type":"U","data":{}}', 400, "bad_json", None),
    ("invalid utf-8", "s", b'{"type":"T","data":{"x":"\xff"}}', 400, "bad_json", None),
    ("deeply nested", "s", DEEP, 400, "bad_json", None),
    ("type not a string", "s", '{"type":1,"data":{}}', 400, "validation", "type"),
    ("type empty", "s", '{"type":"","data":{}}', 400, "validation", "type"),
    ("data not an object", "s", '{"type":"T","data":[1]}', 400, "validation", "data"),
    ("data a string", "s", '{"type":"T","data":"x"}', 400, "validation", "data"),
    ("missing type", "s", '{"data":{}}', 400, "validation", "type"),
    ("missing data", "s", '{"type":"T"}', 400, "validation", "data"),
    ("not an object", "s", '"hello"', 400, "validation", None),
    ("unknown field", "s", '{"type":"T","data":{},"colour":"red"}', 400, "validation", "colour"),
    ("meta not an object", "s", '{"type":"T","data":{},"meta":3}', 400, "validation", "meta"),
    ("bad uuid", "s", '{"type":"T","data":{},"id":"not-a-uuid"}', 400, "validation", "id"),
    ("nil uuid", "s", '{"type":"T","data":{},"id":"00000000-0000-0000-0000-000000000000"}', 400, "validation", "id"),
    ("expected_version negative", "s", '{"type":"T","data":{},"expected_version":-1}', 400, "validation",
     "expected_version"),
    ("expected_version word", "s", '{"type":"T","data":{},"expected_version":"soon"}', 400, "validation",
     "expected_version"),
    ("expected_version fraction", "s", '{"type":"T","data":{},"expected_version":1.5}', 400, "validation",
     "expected_version"),
    ("conflict", "existing", '{"type":"T","data":{},"expected_version":5}', 409, "conflict", "expected_version"),
    ("conflict no_stream", "existing", '{"type":"T","data":{},"expected_version":"no_stream"}', 409, "conflict",
     "expected_version"),
    ("stream in body differs", "s", '{"stream":"t","type":"T","data":{}}', 400, "validation", "stream"),
    ("empty array", "s", "[]", 400, "validation", None),
    ("expected_version on 2nd", "s", '[{"type":"T","data":{}},{"type":"T","data":{},"expected_version":0}]', 400,
     "validation", "[1].expected_version"),
    ("event too large", "s", '{"type":"T","data":{"x":"' + "a" * (1 << 20) + '"}}', 413, "too_large", "data"),
    ("path: empty stream", "", '{"type":"T","data":{}}', 400, "validation", "stream"),
    ("path: stream too long", "a" * 256, '{"type":"T","data":{}}', 400, "validation", "stream"),
    ("path: newline", "a%0Ab", '{"type":"T","data":{}}', 400, "validation", "stream"),
    ("path: NUL", "a%00b", '{"type":"T","data":{}}', 400, "validation", "stream"),
    ("path: bad escape", "a%zzb", '{"type":"T","data":{}}', 400, "validation", "stream"),
    ("path: cut escape", "ab%4", '{"type":"T","data":{}}', 400, "validation", "stream"),
    ("path: invalid utf-8", "a%FFb", '{"type":"T","data":{}}', 400, "validation", "stream"),
]

BAD_GETS = [
    ("/all?from=abc", "from"), ("/all?from=-1", "from"), ("/all?from=", "from"), ("/all?limit=0", "limit"),
    ("/all?limit=100001", "limit"), ("/all?limit=1e3", "limit"), ("/all?backwards=maybe", "backwards"),
    ("/streams/s?from=x", "from"), ("/streams/s?limit=-5", "limit"), ("/streams/s?backwards=2", "backwards"),
    ("/streams/", "stream"), ("/streams/a%0Ab", "stream"), ("/events?from=soon", "from"),
    ("/all?from=99999999999999999999999", "from"),
]


@pytest.fixture(scope="module")
def shared_srv(tmp_path_factory):
    """One server for the table (cheaper than one per case); every case checks the head itself."""
    s = Server(tmp_path_factory.mktemp("bad") / "data")
    status, _, _, j = s.post("existing", event())
    assert status == 201, j
    yield s
    s.stop()


@pytest.mark.parametrize("name,path,body,status,code,field", BAD_POSTS, ids=[b[0] for b in BAD_POSTS])
def test_bad_post_changes_nothing(shared_srv, name, path, body, status, code, field):
    before = shared_srv.head()
    got, _, _, j = shared_srv.post(path, body)
    assert_error(got, j, status, code, field)
    if code == "bad_json":
        assert "line" in j["error"]["message"] and j["error"]["line"] >= 1 and j["error"]["col"] >= 1
    if code == "conflict":
        assert "version 0" in j["error"]["message"] and j["error"]["actual_version"] == 0
    assert shared_srv.head() == before
    assert shared_srv.get("/health")[3]["head"] == before


@pytest.mark.parametrize("path,field", BAD_GETS, ids=[b[0] for b in BAD_GETS])
def test_bad_get_params(shared_srv, path, field):
    status, _, _, j = shared_srv.get(path)
    assert_error(status, j, 400, "validation", field)


def test_bad_last_event_id(shared_srv):
    status, _, _, j = shared_srv.get("/events", headers={"Last-Event-ID": "abc"})
    assert_error(status, j, 400, "validation", "Last-Event-ID")


def test_max_body_limits_the_request(start):
    s = start("--max-body", "1k")
    small = json.dumps(event(data={"x": "a" * 900}))
    assert s.post("s", small)[0] == 201
    big = json.dumps(event(data={"x": "a" * 1100}))
    status, _, _, j = s.post("s", big)
    assert_error(status, j, 413, "too_large", "body")
    # a chunked body has no Content-Length: it is refused once it passes the limit
    c = s.conn()
    c.putrequest("POST", "/streams/s")
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    data = big.encode()
    for i in range(0, len(data), 100):
        piece = data[i:i + 100]
        c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
    c.send(b"0\r\n\r\n")
    r = c.getresponse()
    j = json.loads(r.read())
    assert_error(r.status, j, 413, "too_large", "body")
    c.close()
    assert s.head() == 1


# ---------------------------------------------------------------------------
# Server-Sent Events


class SSE:
    """A raw-socket reader of GET /events: headers, then chunked text, then events."""

    def __init__(self, port, path="/events", headers=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{extra}\r\n".encode())
        self.raw = b""
        self.text = b""
        head = self._until(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        self.headers = head.decode("latin-1").lower()

    def _recv(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("server closed the event stream")
        self.raw += chunk

    def _until(self, sep):
        while sep not in self.raw:
            self._recv()
        out, self.raw = self.raw.split(sep, 1)
        return out

    def _dechunk(self):
        """Move complete chunks from raw to text."""
        while True:
            nl = self.raw.find(b"\r\n")
            if nl < 0:
                return
            size = int(self.raw[:nl].split(b";")[0], 16)
            if len(self.raw) < nl + 2 + size + 2:
                return
            self.text += self.raw[nl + 2:nl + 2 + size]
            self.raw = self.raw[nl + 2 + size + 2:]

    def next_block(self, timeout=10):
        """The next "\\n\\n"-terminated block (an event or a comment), as text."""
        deadline = time.monotonic() + timeout
        while b"\n\n" not in self.text:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no SSE block within {timeout}s; have {self.text!r}")
            self.sock.settimeout(left)
            self._recv()
            self._dechunk()
        block, self.text = self.text.split(b"\n\n", 1)
        return block.decode()

    def next_event(self, timeout=10):
        """(id, event JSON), skipping comments."""
        while True:
            block = self.next_block(timeout)
            if block.startswith(":"):
                continue
            fields = dict(line.split(": ", 1) for line in block.split("\n"))
            return int(fields["id"]), json.loads(fields["data"])

    def close(self):
        self.sock.close()


def test_sse_history_then_live(srv):
    for i in range(5):
        srv.post(f"s{i % 2}", event(data={"i": i}))
    sse = SSE(srv.port, "/events?from=2")
    assert sse.status == 200 and "content-type: text/event-stream" in sse.headers
    got = [sse.next_event() for _ in range(3)]
    assert [i for i, _ in got] == [2, 3, 4]
    assert [e["data"]["i"] for _, e in got] == [2, 3, 4] and set(got[0][1]) == EVENT_KEYS
    for k in range(3):   # live: each append arrives quickly
        t0 = time.monotonic()
        _, _, _, a = srv.post("live", event(data={"k": k}))
        pos, e = sse.next_event(timeout=5)
        assert time.monotonic() - t0 < 1.0, "live event took more than 1 s"
        assert pos == a["position"] and e["data"] == {"k": k}
    sse.close()


def test_sse_last_event_id_resumes(srv):
    for i in range(6):
        srv.post("s", event(data={"i": i}))
    sse = SSE(srv.port, "/events?from=0", headers={"Last-Event-ID": "3"})
    assert [sse.next_event()[0] for _ in range(2)] == [4, 5]
    sse.close()


def test_sse_keepalive_and_close_frees_subscription(start):
    s = start("--sse-keepalive", "1")
    sse = SSE(s.port, "/events")
    assert sse.next_block().startswith(":")        # the opening comment
    t0 = time.monotonic()
    assert sse.next_block(timeout=5) == ": keepalive"
    assert time.monotonic() - t0 < 3
    assert s.metrics()["payi_http_sse_clients"] == 1
    sse.close()
    deadline = time.monotonic() + 5
    while s.metrics()["payi_http_sse_clients"] != 0:
        assert time.monotonic() < deadline, "closing the client did not free its subscription"
        time.sleep(0.1)


# ---------------------------------------------------------------------------
# concurrency, slow clients, the verb


def test_concurrent_appends_with_expected_versions(srv):
    threads, per_thread, nstreams = 32, 50, 4
    errors = []

    def worker(t):
        try:
            c = srv.conn()
            stream = f"c{t % nstreams}"
            known = None   # the version this thread last saw
            done = 0
            while done < per_thread:
                ev = event(data={"t": t, "k": done}, expected_version="no_stream" if known is None else known)
                status, _, _, j = srv.post(stream, ev, conn=c)
                if status == 409:
                    v = j["error"]["actual_version"]
                    known = None if v < 0 else v
                    continue
                assert status == 201, j
                known = j["version"]
                done += 1
            c.close()
        except Exception as e:   # reported by the main thread
            errors.append(repr(e))

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for p in pool:
        p.start()
    for p in pool:
        p.join(240)
    assert not errors, errors[:3]
    _, _, _, j = srv.get("/all?limit=100000")
    assert [e["position"] for e in j["events"]] == list(range(threads * per_thread))
    for s in range(nstreams):
        _, _, _, j = srv.get(f"/streams/c{s}?limit=100000")
        assert [e["version"] for e in j["events"]] == list(range(threads // nstreams * per_thread))
        pairs = sorted((e["data"]["t"], e["data"]["k"]) for e in j["events"])
        assert pairs == sorted((t, k) for t in range(s, threads, nstreams) for k in range(per_thread))


def test_slow_client_is_cut_off_without_blocking_others(start):
    s = start("--idle-timeout", "2")
    slow = socket.create_connection(("127.0.0.1", s.port), timeout=15)
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n"
    for b in request[:8]:   # byte by byte, each within the timeout: still connected
        slow.send(bytes([b]))
        time.sleep(0.25)
    t0 = time.monotonic()
    for _ in range(20):     # others are served meanwhile
        assert s.get("/health")[0] == 200
    assert time.monotonic() - t0 < 2, "other clients waited for the slow one"
    went_silent = time.monotonic()
    try:
        data = slow.recv(1024)   # then silence: the server closes the connection
    except ConnectionResetError:
        data = b""
    waited = time.monotonic() - went_silent
    assert not data.startswith(b"HTTP/1.1 200"), data
    assert 0.5 < waited < 8, f"closed after {waited:.1f}s of silence"
    slow.close()
    assert s.get("/health")[0] == 200


def test_sigterm_stops_cleanly_and_keeps_every_ack(start, tmp_path):
    data = tmp_path / "kept"
    s = start(data=data)
    acks = [s.post("s", event(data={"i": i}))[3] for i in range(20)]
    sse = SSE(s.port, "/events")   # an open event stream must not hold up the stop
    assert s.stop() == 0, s.stderr()
    sse.close()
    assert "stopped" in s.stderr()
    r = run_payi(["read", "--data", data, "--all"])
    assert r.rc == 0, r
    assert [json.loads(l)["position"] for l in r.out_lines] == [a["position"] for a in acks]
    assert run_payi(["check", "--data", data]).rc == 0


def test_port_in_use_is_a_clear_error(srv, tmp_path):
    r = run_payi(["serve", "--data", tmp_path / "other", "--listen", f"127.0.0.1:{srv.port}"], timeout=20)
    assert r.rc == 1, r
    assert "listen" in r.err and "Address already in use" in r.err, r


def test_serve_usage(tmp_path):
    r = run_payi(["serve", "--help"])
    assert r.rc == 0 and "usage: payi serve" in r.out and "--listen" in r.out and "--max-body" in r.out
    for bad in (["--listen", "nonsense"], ["--listen", "127.0.0.1:99999"], ["--max-body", "lots"], ["--bogus"]):
        r = run_payi(["serve", "--data", tmp_path / "d", *bad], timeout=20)
        assert r.rc == 2 and "payi serve" in r.err, r
        assert "listening" not in r.err and not (tmp_path / "d").exists()
    r = run_payi(["--help"])
    assert "serve" in r.out
