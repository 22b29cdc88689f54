"""Black-box tests of the command side of `payi serve --spec`.

The server runs the test spec (specs/bank.payi, which uses every feature of
the spec language) and is driven over HTTP with the standard library only:
http.client for requests, raw sockets for slow clients, threads for
concurrency.  Every bad request must answer its error and leave the log's
head where it was.
"""
import http.client
import json
import random
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import PAYI_BIN, run_payi

SPECS = Path(__file__).resolve().parent / "specs"
BANK = SPECS / "bank.payi"
QUIET = SPECS / "quiet.payi"
LISTEN_RE = re.compile(r"^payi: listening on http://127\.0\.0\.1:(\d+)$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
EVENT_KEYS = {"position", "stream", "version", "type", "id", "time", "data", "meta"}
ANSWER_KEYS = {"position", "stream", "version", "events"}


# ---------------------------------------------------------------------------
# the server under test


class Server:
    """`payi serve --spec SPEC --listen 127.0.0.1:0`; the port is read from its stderr."""

    def __init__(self, data_dir, *flags, spec=BANK):
        self.data = Path(data_dir)
        self.lines = []
        self.ready = threading.Event()
        self.port = None
        argv = [str(PAYI_BIN), "serve", "--data", str(data_dir), "--listen", "127.0.0.1:0"]
        if spec is not None:
            argv += ["--spec", str(spec)]
        self.proc = subprocess.Popen(argv + [str(f) for f in flags], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()
        deadline = time.monotonic() + 30
        while not self.ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.reader.join(5)
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait()
                raise AssertionError(f"payi serve did not start (exit {self.proc.returncode}):\n{self.stderr()}")

    def _drain(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            m = LISTEN_RE.match(line)
            if m and self.port is None:
                self.port = int(m.group(1))
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

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(10)

    # -- HTTP
    def conn(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, conn=None):
        """(status, response, body bytes, parsed JSON or None)."""
        c = conn or self.conn()
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
            elif isinstance(body, str):
                body = body.encode()
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            raw = r.read()
            parsed = None
            if raw and r.getheader("Content-Type", "").startswith("application/json"):
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    raise AssertionError(f"{method} {path}: answer is not JSON: {raw[:500]!r}")
            return r.status, r, raw, parsed
        finally:
            if conn is None:
                c.close()

    def cmd(self, name, fields, headers=None, conn=None):
        """POST /commands/{name}: (status, JSON answer)."""
        status, _, _, j = self.request("POST", "/commands/" + name, fields, headers=headers, conn=conn)
        return status, j

    def ok(self, name, fields, want=201, **kw):
        status, j = self.cmd(name, fields, **kw)
        assert status == want, f"{name} {fields}: {status} {j}"
        return j

    def post(self, stream_path, body, **kw):
        return self.request("POST", "/streams/" + stream_path, body, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def stream(self, name):
        status, _, _, j = self.get(f"/streams/{name}?limit=100000")
        assert status == 200, j
        return j["events"]

    def head(self):
        status, _, _, j = self.get("/health")
        assert status == 200 and j["status"] == "ok", j
        return j["head"]


@pytest.fixture
def start(tmp_path):
    servers = []

    def start_server(*flags, data=None, spec=BANK):
        s = Server(data or tmp_path / f"data{len(servers)}", *flags, spec=spec)
        servers.append(s)
        return s

    yield start_server
    for s in servers:
        s.kill()


@pytest.fixture
def bank(start):
    return start()


def assert_error(status, j, want_status, code, field=None, message=None):
    assert status == want_status, f"status {status}, wanted {want_status}: {j}"
    assert j is not None and set(j) == {"error"}, j
    err = j["error"]
    assert err["code"] == code, j
    assert isinstance(err["message"], str) and err["message"], j
    if field is not None:
        assert err.get("field") == field, j
    if message is not None:
        assert message in err["message"], j


def open_account(s, account, owner="ann", opened_on="2021-01-01", **extra):
    return s.ok("OpenAccount", dict(account=account, owner=owner, opened_on=opened_on, **extra))


def assert_answer(j, stream, types, command):
    """A 201 answer: its shape, dense positions and versions, the events' own fields."""
    assert set(j) == ANSWER_KEYS, j
    assert j["stream"] == stream, j
    evs = j["events"]
    assert [e["type"] for e in evs] == types, j
    for i, e in enumerate(evs):
        assert set(e) == EVENT_KEYS, e
        assert e["stream"] == stream and UUID_RE.match(e["id"]) and TIME_RE.match(e["time"]), e
        assert e["meta"]["command"] == command, e
        if i:
            assert e["position"] == evs[i - 1]["position"] + 1 and e["version"] == evs[i - 1]["version"] + 1, j
    assert j["position"] == evs[-1]["position"] and j["version"] == evs[-1]["version"], j
    return evs
