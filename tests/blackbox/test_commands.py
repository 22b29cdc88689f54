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
                body = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
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
    for s in servers:          # signal them all, then wait for each
        if s.proc.poll() is None:
            s.proc.send_signal(signal.SIGTERM)
    for s in servers:
        s.stop()
    for s in servers:
        assert_clean(s)


@pytest.fixture
def bank(start):
    return start()


SANITIZER_WORDS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")


def assert_clean(s):
    """The server stopped cleanly (SIGTERM -> 0) and no sanitizer spoke."""
    err = s.stderr()
    assert not any(w in err for w in SANITIZER_WORDS), err[-4000:]
    assert s.proc.returncode == 0, f"exit {s.proc.returncode}\n{err[-4000:]}"


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


def n_events(answer):
    ev = answer["events"]
    return len(ev) if isinstance(ev, list) else ev


def ndjson_lines(raw):
    return [json.loads(l) for l in raw.decode().splitlines() if l.strip()]


# ---------------------------------------------------------------------------
# every feature of the spec, through HTTP


def test_open_account_defaults_upper_coalesce_and_jsonb(bank):
    tags = {"vip": True, "list": [1, "x", None, 2.5], "nested": {"deep": {"er": []}}, "s": "é\n\"/"}
    j = open_account(bank, "a1", owner="Ann Lee", opened_on="2021-03-04", tags=tags)
    (e,) = assert_answer(j, "account-a1", ["AccountOpened"], "OpenAccount")
    assert (j["version"], e["version"]) == (0, 0)
    # upper(owner); the command's DEFAULT 0 for overdraft; tags (jsonb) passed through
    assert e["data"] == {"account": "a1", "owner": "ANN LEE", "opened_on": "2021-03-04", "overdraft": 0, "tags": tags}
    # explicit null overdraft: COALESCE(overdraft, 0); missing tags: NULL
    (e2,) = open_account(bank, "a2", owner="bob", overdraft=None)["events"]
    assert e2["data"] == {"account": "a2", "owner": "BOB", "opened_on": "2021-01-01", "overdraft": 0, "tags": None}
    (e3,) = open_account(bank, "a3", owner="zoë", overdraft=250, tags=[1, 2])["events"]
    assert e3["data"]["overdraft"] == 250 and e3["data"]["tags"] == [1, 2]
    assert e3["data"]["owner"] == "ZOë"   # upper() maps ASCII only (C collation, spec/expr.h)
    # the stream holds what the answer said
    got = bank.stream("account-a1")
    assert len(got) == 1 and got[0] == e
    assert bank.head() == e3["position"] + 1


@pytest.mark.parametrize("text", [
    b'{"a":1}', b'[1, 2]', b'{"a" : 1, "b" :\n [true, null]}', b' "x" ', b'{"k":"\\u00e9 \\n"}', b'12.50', b'{ }',
], ids=["compact", "array with spaces", "object with spaces", "string", "escapes", "number", "empty object"])
def test_jsonb_command_field_takes_any_json(bank, text):
    body = b'{"account":"j","owner":"o","opened_on":"2021-01-01","tags":' + text + b'}'
    status, _, raw, j = bank.request("POST", "/commands/OpenAccount", body)
    assert status == 201, f"tags {text!r}: {status} {raw[:300]!r}"
    assert j["events"][0]["data"]["tags"] == json.loads(text)
    assert bank.stream("account-j")[0]["data"]["tags"] == json.loads(text)


def test_deposit_emits_big_deposit_from_10000_and_coalesces_the_note(bank):
    open_account(bank, "d")
    (e,) = assert_answer(bank.ok("Deposit", {"account": "d", "amount": 9999}), "account-d", ["Deposited"], "Deposit")
    assert e["data"] == {"account": "d", "amount": 9999, "at": None, "note": "none"}
    j = bank.ok("Deposit", {"account": "d", "amount": 10000, "at": "2021-05-06T07:08:09.5+02:00", "note": "pay"})
    dep, big = assert_answer(j, "account-d", ["Deposited", "BigDeposit"], "Deposit")
    assert dep["data"] == {"account": "d", "amount": 10000, "at": "2021-05-06T05:08:09.500000Z", "note": "pay"}
    assert big["data"] == {"account": "d", "amount": 10000}
    assert (dep["version"], big["version"], j["version"]) == (2, 3, 3)
    (e,) = bank.ok("Deposit", {"account": "d", "amount": 1, "note": None})["events"]
    assert e["data"]["note"] == "none"
    assert [e["type"] for e in bank.stream("account-d")] == \
        ["AccountOpened", "Deposited", "Deposited", "BigDeposit", "Deposited"]
    # the fold: balance = 9999 + 10000 + 1 (BigDeposit does not count twice)
    assert_error(*bank.cmd("Withdraw", {"account": "d", "amount": 20001}), 422, "rejected",
                 message="insufficient funds")
    (w,) = assert_answer(bank.ok("Withdraw", {"account": "d", "amount": 20000, "at": "2022-01-01T00:00:00Z"}),
                         "account-d", ["Withdrawn"], "Withdraw")
    assert w["data"] == {"account": "d", "amount": 20000, "at": "2022-01-01T00:00:00.000000Z"}
    assert_error(*bank.cmd("Withdraw", {"account": "d", "amount": 1}), 422, "rejected", message="insufficient funds")


def test_overdraft_is_part_of_the_state(bank):
    open_account(bank, "o", overdraft=100)
    bank.ok("Deposit", {"account": "o", "amount": 50})
    assert_error(*bank.cmd("Withdraw", {"account": "o", "amount": 151}), 422, "rejected", message="insufficient funds")
    bank.ok("Withdraw", {"account": "o", "amount": 150})           # balance -100 = -overdraft
    assert_error(*bank.cmd("Withdraw", {"account": "o", "amount": 1}), 422, "rejected", message="insufficient funds")
    bank.ok("Deposit", {"account": "o", "amount": 1})
    bank.ok("Withdraw", {"account": "o", "amount": 1})


def test_reject_if_rules_in_order(bank):
    head = bank.head()
    for name, fields in [("Deposit", {"account": "n", "amount": 5}), ("Withdraw", {"account": "n", "amount": 10 ** 12}),
                         ("SetRate", {"account": "n", "rate": 0.1})]:
        assert_error(*bank.cmd(name, fields), 422, "rejected", message="no such account")
        assert bank.cmd(name, fields)[1]["error"]["message"] == "no such account"
    assert_error(*bank.cmd("OpenAccount", {"account": "n", "owner": "x", "opened_on": "1999-12-31"}), 422, "rejected",
                 message="accounts opened before 2000 are not accepted")
    assert bank.head() == head
    open_account(bank, "n", opened_on="2000-01-01")                 # the boundary is accepted
    # both rules fail: the first one's message
    status, j = bank.cmd("OpenAccount", {"account": "n", "owner": "x", "opened_on": "1999-01-01"})
    assert_error(status, j, 422, "rejected")
    assert j["error"]["message"] == "account already open"
    # the rule a rejection answers is the first that holds
    status, j = bank.cmd("Withdraw", {"account": "n", "amount": 1})
    assert_error(status, j, 422, "rejected")
    assert j["error"]["message"] == "insufficient funds" and "field" not in j["error"]
    assert bank.head() == head + 1


def test_lua_handler_success_reject_and_errors(bank):
    open_account(bank, "l")
    (e,) = assert_answer(bank.ok("SetRate", {"account": "l", "rate": 0.3}), "account-l", ["RateSet"], "SetRate")
    assert e["data"] == {"account": "l", "rate": 0.3, "vip": False}
    assert_error(*bank.cmd("SetRate", {"account": "l", "rate": 0.7}), 422, "rejected",
                 message="a rate above 0.5 needs vip")
    (e,) = bank.ok("SetRate", {"account": "l", "rate": 0.7, "vip": True})["events"]
    assert e["data"] == {"account": "l", "rate": 0.7, "vip": True} and e["type"] == "RateSet"
    head = bank.head()
    # the handler's event fails RateSet's table CHECK (rate < 1)
    status, j = bank.cmd("SetRate", {"account": "l", "rate": 1.5, "vip": True})
    assert_error(status, j, 500, "handler_error")
    assert "CHECK (rate >= 0 AND rate < 1)" in j["error"]["message"], j
    # a run-time error names the spec's line
    status, j = bank.cmd("SetRate", {"account": "l", "rate": 0.99})
    assert_error(status, j, 500, "handler_error", message="bank.payi:80:")
    # an endless loop is stopped by the time limit
    t0 = time.monotonic()
    status, j = bank.cmd("SetRate", {"account": "l", "rate": 0.98})
    assert_error(status, j, 500, "handler_error", message="time limit")
    assert time.monotonic() - t0 < 5
    assert bank.head() == head
    # the handler still works afterwards, and other commands on the stream too
    (e,) = bank.ok("SetRate", {"account": "l", "rate": 0, "vip": None})["events"]
    assert e["data"] == {"account": "l", "rate": 0, "vip": False}
    bank.ok("Deposit", {"account": "l", "amount": 3})
    assert [e["version"] for e in bank.stream("account-l")] == [0, 1, 2, 3, 4]


def test_stateless_note_case_lower_and_date_arithmetic(bank):
    j = bank.ok("Note", {"topic": "Hello World", "due": "2021-02-25"})
    (e,) = assert_answer(j, "notes-hello world", ["Noted"], "Note")
    assert e["data"] == {"topic": "Hello World", "body": "(empty)", "due": "2021-03-04"}
    (e,) = bank.ok("Note", {"topic": "HELLO world", "body": "hi"})["events"]
    assert e["stream"] == "notes-hello world" and e["version"] == 1
    assert e["data"] == {"topic": "HELLO world", "body": "hi", "due": None}
    for due, want in [("2024-02-25", "2024-03-03"), ("2021-12-28", "2022-01-04"), ("9999-12-24", "9999-12-31"),
                      ("2000-02-22", "2000-02-29")]:
        (e,) = bank.ok("Note", {"topic": "dates", "body": "", "due": due})["events"]
        assert e["data"] == {"topic": "dates", "body": "", "due": want}, due
    (e,) = bank.ok("Note", {"topic": "été", "body": None})["events"]
    assert e["stream"] == "notes-été" and e["data"]["body"] == "(empty)"
    assert [e["version"] for e in bank.stream("notes-dates")] == [0, 1, 2, 3]
    # the stream name's limit: 'notes-' + 249 bytes = 255 is the longest
    assert bank.ok("Note", {"topic": "x" * 249})["stream"] == "notes-" + "x" * 249
    head = bank.head()
    assert_error(*bank.cmd("Note", {"topic": "x" * 250}), 400, "validation", "stream")
    assert_error(*bank.cmd("Note", {"topic": "é" * 125}), 400, "validation", "stream")   # 256 bytes, 131 chars
    assert bank.head() == head


def test_due_date_overflow_is_an_error_not_an_event(bank):
    head = bank.head()
    status, j = bank.cmd("Note", {"topic": "t", "due": "9999-12-31"})   # + 7 leaves the date range
    assert 400 <= status < 600 and status != 201 and "error" in j, (status, j)
    assert bank.head() == head


def test_commands_that_emit_nothing_answer_200(start):
    s = start(spec=QUIET)
    head = s.head()
    for name, fields in [("Ping", {"box": "b", "loud": False}), ("Hush", {"box": "b"})]:
        status, j = s.cmd(name, fields)
        assert status == 200, j
        assert j == {"position": None, "stream": "box-b", "version": -1, "events": []}
    assert s.head() == head
    (e,) = s.ok("Ping", {"box": "b"})["events"]
    assert e["data"] == {"box": "b", "n": 1} and e["version"] == 0
    (e,) = s.ok("Ping", {"box": "b", "loud": True})["events"]
    assert e["data"] == {"box": "b", "n": 2} and e["version"] == 1
    for name, fields in [("Ping", {"box": "b", "loud": False}), ("Hush", {"box": "b"})]:
        status, j = s.cmd(name, fields)
        assert status == 200 and j == {"position": None, "stream": "box-b", "version": 1, "events": []}, j
    assert s.head() == head + 2
    assert_error(*s.cmd("Ping", {"box": "b", "loud": None}), 400, "validation", "loud")


def test_lua_sandbox_keeps_no_globals_and_bounds_memory(start):
    s = start(spec=QUIET)
    for what in ("os", "io", "load", "loadstring", "dofile", "loadfile", "require", "package", "debug", "ffi", "jit",
                 "collectgarbage", "getfenv", "setfenv", "string.dump"):
        status, j = s.cmd("Sandbox", {"box": "s", "what": what})
        assert status == 201, f"{what} is reachable from a handler: {j}"
        # a global set by one call is gone for the next
        assert j["events"][0]["data"] == {"box": "s", "n": 1}, j
    for what in ("math", "string.rep", "pairs", "table.insert", "tostring"):   # the check itself works
        assert_error(*s.cmd("Sandbox", {"box": "s", "what": what}), 422, "rejected", message="reachable: " + what)
    head = s.head()
    t0 = time.monotonic()
    status, j = s.cmd("Hog", {"box": "h"})
    assert_error(status, j, 500, "handler_error", message="quiet.payi:")
    assert "memory" in j["error"]["message"] or "time limit" in j["error"]["message"], j
    assert time.monotonic() - t0 < 5 and s.head() == head
    assert s.ok("Sandbox", {"box": "s", "what": "nothing"})["events"][0]["data"]["n"] == 1


def test_idempotency_key_race(bank):
    """Many clients send one key at once: one decision, one event; the others repeat it or get 409."""
    open_account(bank, "race")
    head = bank.head()
    n = 16
    barrier = threading.Barrier(n)
    answers = []

    def send(i):
        c = bank.conn()
        c.connect()
        barrier.wait()
        answers.append(bank.cmd("Deposit", {"account": "race", "amount": 7}, headers={"Idempotency-Key": "same"},
                                conn=c))
        c.close()

    pool = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for p in pool:
        p.start()
    for p in pool:
        p.join(60)
    ok = [j for status, j in answers if status == 201]
    assert ok and all(j == ok[0] for j in ok), answers
    assert all(status in (201, 409) for status, _ in answers), answers
    for status, j in answers:
        if status == 409:
            assert j["error"]["code"] == "conflict", j
    assert bank.head() == head + 1
    assert [e["data"]["amount"] for e in bank.stream("account-race") if e["type"] == "Deposited"] == [7]
    assert bank.ok("Deposit", {"account": "race", "amount": 7}, headers={"Idempotency-Key": "same"}) == ok[0]


def test_idempotency_key(bank):
    open_account(bank, "i")
    body = {"account": "i", "amount": 5}
    first = bank.ok("Deposit", body, headers={"Idempotency-Key": "key-1"})
    head = bank.head()
    for _ in range(2):
        again = bank.ok("Deposit", body, headers={"Idempotency-Key": "key-1"})
        assert (again["position"], again["version"]) == (first["position"], first["version"])
        assert [(e["id"], e["position"], e["time"], e["data"]) for e in again["events"]] == \
            [(e["id"], e["position"], e["time"], e["data"]) for e in first["events"]]
    assert bank.head() == head
    status, j = bank.cmd("Deposit", {"account": "i", "amount": 6}, headers={"Idempotency-Key": "key-1"})
    assert_error(status, j, 400, "validation", "Idempotency-Key")
    assert bank.head() == head
    # another key is another command
    assert bank.ok("Deposit", body, headers={"Idempotency-Key": "key-2"})["position"] == head
    assert [e["data"]["amount"] for e in bank.stream("account-i") if e["type"] == "Deposited"] == [5, 5]
    # a rejected first answer is repeated too
    w = {"account": "i", "amount": 11}
    assert_error(*bank.cmd("Withdraw", w, headers={"Idempotency-Key": "key-3"}), 422, "rejected")
    assert_error(*bank.cmd("Withdraw", w, headers={"Idempotency-Key": "key-3"}), 422, "rejected")
    assert bank.head() == head + 1


def restart_after_keyed_withdraw(start, data):
    """Account r: deposit 10, withdraw 5 with Idempotency-Key W; restart; retry it. (server, first, again)"""
    s = start(data=data)
    open_account(s, "r")
    s.ok("Deposit", {"account": "r", "amount": 10})
    first = s.ok("Withdraw", {"account": "r", "amount": 5}, headers={"Idempotency-Key": "W"})
    assert s.stop() == 0, s.stderr()
    s = start(data=data)
    head = s.head()
    status, again = s.cmd("Withdraw", {"account": "r", "amount": 5}, headers={"Idempotency-Key": "W"})
    assert status in (200, 201), again
    assert s.head() == head, "the retry appended again"
    return s, first, again


def test_idempotent_retry_after_restart_answers_the_stored_events(start, tmp_path):
    s, first, again = restart_after_keyed_withdraw(start, tmp_path / "idem")
    assert (again["position"], again["version"]) == (first["position"], first["version"]), again
    stored = s.stream("account-r")[first["version"]]
    for e in (first["events"][0], again["events"][0]):
        assert (e["id"], e["position"], e["version"], e["type"], e["data"]) == \
            (stored["id"], stored["position"], stored["version"], stored["type"], stored["data"])
    assert again["events"][0]["time"] == stored["time"] == first["events"][0]["time"], (first, again, stored)


def test_idempotent_retry_after_restart_does_not_count_twice(start, tmp_path):
    s, _, _ = restart_after_keyed_withdraw(start, tmp_path / "idem")
    # the balance is 10 - 5 = 5: the deduplicated retry must not count in the state the next command sees
    status, j = s.cmd("Withdraw", {"account": "r", "amount": 5})
    assert status == 201, f"Withdraw 5 of a balance of 5 after the retry: {status} {j}"
    assert_error(*s.cmd("Withdraw", {"account": "r", "amount": 1}), 422, "rejected", message="insufficient funds")


def test_ndjson_batch_of_commands(bank):
    open_account(bank, "b")
    bank.ok("Deposit", {"account": "b", "amount": 100})
    head = bank.head()
    body = b"\n".join([
        b'{"account":"b","amount":60}',
        b'{"account":"b","amount":60}',        # sees the line before: rejected
        b"",                                   # blank: skipped, but counted
        b'{"account":"b","amount":',           # bad JSON
        b'{"account":"b","amount":0}',         # CHECK
        b'{"account":"b","amount":40}\r',      # CRLF
        b'{"account":"nobody","amount":1}',
        b'[1]',
        b'   ',
    ]) + b"\n"
    status, r, raw, _ = bank.request("POST", "/commands/Withdraw", body,
                                     headers={"Content-Type": "application/x-ndjson"})
    assert status == 200, raw
    assert r.getheader("Content-Type", "").startswith("application/x-ndjson")
    lines = ndjson_lines(raw)
    assert len(lines) == 7, raw
    # an ack per line; its events in full or as their number (command.h: "events":N)
    assert lines[0]["stream"] == "account-b" and n_events(lines[0]) == 1, lines[0]
    want = [(2, "rejected", None), (4, "bad_json", None), (5, "validation", "amount"), (7, "rejected", None),
            (8, "validation", None)]
    errs = [lines[1], lines[2], lines[3], lines[5], lines[6]]
    for (n, code, field), got in zip(want, errs):
        assert set(got) == {"error"} and got["error"]["code"] == code and got["error"]["line"] == n, got
        if field:
            assert got["error"]["field"] == field, got
    assert lines[1]["error"]["message"] == "insufficient funds"
    assert lines[5]["error"]["message"] == "no such account"
    assert n_events(lines[4]) == 1 and lines[4]["version"] == lines[0]["version"] + 1
    assert lines[4]["position"] == lines[0]["position"] + 1 == head + 1
    evs = bank.stream("account-b")
    assert [(e["type"], e["data"]["amount"], e["version"]) for e in evs[-2:]] == \
        [("Withdrawn", 60, lines[0]["version"]), ("Withdrawn", 40, lines[4]["version"])]
    assert bank.head() == head + 2
    assert_error(*bank.cmd("Withdraw", {"account": "b", "amount": 1}), 422, "rejected", message="insufficient funds")
    # an empty batch answers nothing
    status, _, raw, _ = bank.request("POST", "/commands/Withdraw", b"\n\n",
                                     headers={"Content-Type": "application/x-ndjson"})
    assert status == 200 and raw.strip() == b""
    assert bank.head() == head + 2


def test_method_not_allowed_and_unknown_commands(bank):
    for method in ("GET", "PUT", "DELETE"):
        status, r, _, j = bank.request(method, "/commands/Deposit", b"{}" if method != "GET" else None)
        assert_error(status, j, 405, "method_not_allowed")
        assert "POST" in r.getheader("Allow", ""), r.getheaders()
    for name in ("Nope", "deposit", "DEPOSIT", "Deposited", "account", "Deposit%20"):
        assert_error(*bank.cmd(name, {"account": "a", "amount": 1}), 404, "unknown_command")
    assert bank.head() == 6   # the six schemas the spec registered


def test_commands_without_a_spec_answer_404(start):
    s = start(spec=None)
    status, j = s.cmd("Deposit", {"account": "a", "amount": 1})
    assert status == 404 and j["error"]["code"] in ("unknown_command", "not_found"), j
    assert s.head() == 0


# ---------------------------------------------------------------------------
# raw appends of declared event types


def test_raw_appends_of_declared_types_are_validated_and_typed(bank):
    head = bank.head()
    bad = [
        ({"type": "Deposited", "data": {"account": "a", "amount": -1}}, "data.amount", "CHECK (amount > 0) failed"),
        ({"type": "Deposited", "data": {"account": "a", "amount": "5"}}, "data.amount", None),
        ({"type": "Deposited", "data": {"account": "a", "amount": 1.5}}, "data.amount", None),
        ({"type": "Deposited", "data": {"account": "a"}}, "data.amount", None),
        ({"type": "Deposited", "data": {"account": None, "amount": 1}}, "data.account", None),
        ({"type": "Deposited", "data": {"account": "a", "amount": 1, "colour": "red"}}, "data.colour", None),
        ({"type": "Deposited", "data": {"account": "a", "amount": 1, "at": "2021-02-29T00:00:00Z"}}, "data.at", None),
        ({"type": "AccountOpened", "data": {"account": "a", "owner": "o", "opened_on": "2021-01-01",
                                            "overdraft": -5}}, "data.overdraft", "CHECK (overdraft >= 0) failed"),
        ({"type": "RateSet", "data": {"account": "a", "rate": 1.5}}, None, "CHECK (rate >= 0 AND rate < 1) failed"),
        ({"type": "Noted", "data": {"topic": "a\u0000b"}}, "data.topic", None),
        ([{"type": "Deposited", "data": {"account": "a", "amount": 1}},
          {"type": "Deposited", "data": {"account": "a", "amount": 0}}], "[1].data.amount", None),
    ]
    for body, field, message in bad:
        status, _, _, j = bank.post("raw-1", body)
        assert_error(status, j, 400, "validation", field, message)
    assert bank.head() == head
    assert bank.post("raw-1", {"type": "Deposited", "data": {"account": "a", "amount": 5}})[0] == 201
    assert bank.post("raw-1", {"type": "Deposited", "data": {"account": "a", "amount": 7, "note": None,
                                                             "at": "2021-01-01T00:30:00+01:00"}})[0] == 201
    assert bank.post("raw-1", {"type": "AccountOpened", "data": {"account": "a", "owner": "o",
                                                                 "opened_on": "2021-01-01"}})[0] == 201
    assert bank.post("raw-1", {"type": "Undeclared", "data": {"anything": [1, {"goes": None}]}})[0] == 201
    evs = bank.stream("raw-1")
    assert [e["data"] for e in evs] == [
        {"account": "a", "amount": 5, "at": None, "note": "none"},            # every field; the DEFAULT
        {"account": "a", "amount": 7, "at": "2020-12-31T23:30:00.000000Z", "note": None},   # explicit null stays
        {"account": "a", "owner": "o", "opened_on": "2021-01-01", "overdraft": 0, "tags": None},
        {"anything": [1, {"goes": None}]},
    ]
    assert [e["type"] for e in evs] == ["Deposited", "Deposited", "AccountOpened", "Undeclared"]
    # NDJSON appends are validated line by line
    body = b'{"type":"Deposited","data":{"account":"a","amount":0}}\n{"type":"Deposited","data":{"account":"a","amount":2}}\n'
    status, _, raw, _ = bank.post("raw-1", body, headers={"Content-Type": "application/x-ndjson"})
    lines = ndjson_lines(raw)
    assert status == 200 and len(lines) == 2, raw
    assert lines[0]["error"]["code"] == "validation" and lines[0]["error"]["field"] == "data.amount"
    assert lines[0]["error"]["line"] == 1 and lines[1]["version"] == 4
    assert bank.head() == head + 5


def test_dollar_streams_are_reserved_and_schemas_are_readable(bank):
    head = bank.head()
    for path in ("%24schemas", "$schemas", "$x", "%24", "$"):
        status, _, _, j = bank.post(path, {"type": "SchemaRegistered", "data": {"name": "Evil", "fields": []}})
        assert_error(status, j, 400, "validation", "stream")
    status, _, _, j = bank.post("ok", [{"type": "T", "data": {}}, {"stream": "$schemas", "type": "T", "data": {}}])
    assert status == 400 and j["error"]["code"] == "validation", j
    assert bank.head() == head
    evs = bank.stream("$schemas")
    assert [e["data"]["name"] for e in evs] == ["AccountOpened", "Deposited", "Withdrawn", "BigDeposit", "RateSet",
                                               "Noted"]
    assert [e["version"] for e in evs] == list(range(6))
    dep = evs[1]["data"]
    assert [f["name"] for f in dep["fields"]] == ["account", "amount", "at", "note"]
    fields = {f["name"]: f for f in dep["fields"]}
    assert fields["amount"]["type"] == "bigint" and fields["amount"]["not_null"] is True
    assert "amount > 0" in fields["amount"]["check"]
    assert fields["note"]["not_null"] is False and "none" in fields["note"]["default"]
    assert "rate < 1" in json.dumps(evs[4]["data"])


def test_raw_append_to_an_aggregate_stream_is_seen_by_the_next_command(bank):
    open_account(bank, "r")
    bank.ok("Deposit", {"account": "r", "amount": 5})           # the command side now holds this state
    status, _, _, j = bank.post("account-r", {"type": "Deposited", "data": {"account": "r", "amount": 500}})
    assert status == 201, j
    # the stream's balance is 505: a command decided on an older state would reject this
    status, j = bank.cmd("Withdraw", {"account": "r", "amount": 505})
    assert status == 201, f"Withdraw 505 of a balance of 505: {status} {j}"
    assert_error(*bank.cmd("Withdraw", {"account": "r", "amount": 1}), 422, "rejected", message="insufficient funds")


def test_fold_overflow_is_refused_and_changes_nothing(bank):
    open_account(bank, "big")
    bank.ok("Deposit", {"account": "big", "amount": 9223372036854775807})
    head = bank.head()
    status, j = bank.cmd("Deposit", {"account": "big", "amount": 1})    # balance would leave bigint
    assert status == 400 and j["error"]["code"] == "validation", (status, j)
    assert bank.head() == head
    bank.ok("Withdraw", {"account": "big", "amount": 9223372036854775807})
    assert_error(*bank.cmd("Withdraw", {"account": "big", "amount": 1}), 422, "rejected")


# ---------------------------------------------------------------------------
# the table of bad input: each answers its error and changes nothing


def body(**fields):
    return json.dumps(fields, separators=(",", ":")).encode()


DEP = b'{"account":"a","amount":%s}'
OPEN = b'{"account":"q","owner":"o","opened_on":%s}'
AT = b'{"account":"a","amount":1,"at":%s}'
NOTE = b'{"account":"a","amount":1,"note":%s}'
C = "/commands/"

BAD_COMMANDS = [
    # (name, path, body, status, code, field, message part)
    # -- not JSON
    ("malformed: trailing comma", C + "Deposit", b'{"account":"a","amount":1,}', 400, "bad_json", None, None),
    ("malformed: single quotes", C + "Deposit", b"{'account':'a','amount':1}", 400, "bad_json", None, None),
    ("truncated", C + "Deposit", b'{"account":"a","amount":1', 400, "bad_json", None, None),
    ("truncated string", C + "Deposit", b'{"account":"a', 400, "bad_json", None, None),
    ("empty body", C + "Deposit", b"", 400, "bad_json", None, None),
    ("blank body", C + "Deposit", b" \r\n\t ", 400, "bad_json", None, None),
    ("trailing garbage", C + "Deposit", b'{"account":"a","amount":1} x', 400, "bad_json", None, None),
    ("two objects", C + "Deposit", b'{"account":"a","amount":1}{"account":"a","amount":1}', 400, "bad_json", None,
     None),
    ("duplicate key", C + "Deposit", b'{"account":"a","account":"b","amount":1}', 400, "bad_json", None, None),
    ("leading zero", C + "Deposit", DEP % b"01", 400, "bad_json", None, None),
    ("NaN", C + "Deposit", DEP % b"NaN", 400, "bad_json", None, None),
    ("Infinity", C + "Deposit", DEP % b"Infinity", 400, "bad_json", None, None),
    ("-Infinity", C + "SetRate", b'{"account":"a","rate":-Infinity}', 400, "bad_json", None, None),
    ("invalid utf-8 0xff", C + "Deposit", NOTE % b'"\xff"', 400, "bad_json", None, None),
    ("truncated utf-8", C + "Deposit", NOTE % b'"\xc3("', 400, "bad_json", None, None),
    ("overlong utf-8", C + "Deposit", NOTE % b'"\xc0\xaf"', 400, "bad_json", None, None),
    ("utf-8 surrogate", C + "Deposit", NOTE % b'"\xed\xa0\x80"', 400, "bad_json", None, None),
    ("invalid utf-8 in a key", C + "Deposit", b'{"acc\xffount":"a","amount":1}', 400, "bad_json", None, None),
    ("unpaired \\ud800", C + "Deposit", NOTE % b'"\\ud800"', 400, "bad_json", None, None),
    ("nested 10000 [", C + "Deposit", b"[" * 10000, 400, "bad_json", None, None),
    ("nested 10000 objects", C + "Deposit", b'{"a":' * 10000 + b"1" + b"}" * 10000, 400, "bad_json", None, None),
    ("nested jsonb", C + "OpenAccount", b'{"account":"q","owner":"o","opened_on":"2021-01-01","tags":' + b"[" * 10000
     + b"]" * 10000 + b"}", 400, "bad_json", None, None),
    # -- JSON, but not an object
    ("array instead of object", C + "Deposit", b'[{"account":"a","amount":1}]', 400, "validation", None, None),
    ("empty array", C + "Deposit", b"[]", 400, "validation", None, None),
    ("null", C + "Deposit", b"null", 400, "validation", None, None),
    ("string", C + "Deposit", b'"Deposit"', 400, "validation", None, None),
    ("number", C + "Deposit", b"42", 400, "validation", None, None),
    ("huge array", C + "Deposit", b"[" + b"1," * 100000 + b"1]", 400, "validation", None, None),
    # -- wrong JSON types
    ("string for bigint", C + "Deposit", DEP % b'"1"', 400, "validation", "amount", None),
    ("boolean for bigint", C + "Deposit", DEP % b"true", 400, "validation", "amount", None),
    ("object for bigint", C + "Deposit", DEP % b'{"v":1}', 400, "validation", "amount", None),
    ("number for text", C + "Deposit", b'{"account":5,"amount":1}', 400, "validation", "account", None),
    ("array for text", C + "Deposit", NOTE % b'["x"]', 400, "validation", "note", None),
    ("huge array for text", C + "Deposit", NOTE % (b"[" + b"1," * 100000 + b"1]"), 400, "validation", "note", None),
    ("object for date", C + "OpenAccount", OPEN % b"{}", 400, "validation", "opened_on", None),
    ("number for date", C + "OpenAccount", OPEN % b"20210101", 400, "validation", "opened_on", None),
    ("string for double", C + "SetRate", b'{"account":"a","rate":"0.1"}', 400, "validation", "rate", None),
    ("string for boolean", C + "SetRate", b'{"account":"a","rate":0.1,"vip":"yes"}', 400, "validation", "vip", None),
    ("number for boolean", C + "SetRate", b'{"account":"a","rate":0.1,"vip":1}', 400, "validation", "vip", None),
    ("number for timestamptz", C + "Deposit", AT % b"12", 400, "validation", "at", None),
    # -- numbers
    ("bigint 2^63", C + "Deposit", DEP % b"9223372036854775808", 400, "validation", "amount", "out of range"),
    ("bigint -2^63-1", C + "Deposit", DEP % b"-9223372036854775809", 400, "validation", "amount", "out of range"),
    ("bigint 10^29", C + "Deposit", DEP % b"100000000000000000000000000000", 400, "validation", "amount", None),
    ("1.5 for bigint", C + "Deposit", DEP % b"1.5", 400, "validation", "amount", None),
    ("1e3 for bigint", C + "Deposit", DEP % b"1e3", 400, "validation", "amount", None),
    ("1.0 for bigint", C + "Deposit", DEP % b"1.0", 400, "validation", "amount", None),
    ("double overflow", C + "SetRate", b'{"account":"a","rate":1e400}', 400, "validation", "rate", None),
    # -- fields
    ("missing NOT NULL", C + "Deposit", b'{"account":"a"}', 400, "validation", "amount", None),
    ("missing NOT NULL text", C + "Deposit", b'{"amount":1}', 400, "validation", "account", None),
    ("missing NOT NULL date", C + "OpenAccount", b'{"account":"q","owner":"o"}', 400, "validation", "opened_on",
     None),
    ("empty object", C + "Note", b"{}", 400, "validation", "topic", None),
    ("null for NOT NULL", C + "Deposit", b'{"account":null,"amount":1}', 400, "validation", "account", None),
    ("null for NOT NULL bigint", C + "Deposit", DEP % b"null", 400, "validation", "amount", None),
    ("unknown field", C + "Deposit", b'{"account":"a","amount":1,"colour":"red"}', 400, "validation", "colour",
     None),
    ("field names are case-sensitive", C + "Deposit", b'{"account":"a","Amount":1}', 400, "validation", "Amount",
     None),
    ("state is not a field", C + "Deposit", b'{"account":"a","amount":1,"balance":5}', 400, "validation",
     "balance", None),
    ("\\u0000 in text", C + "Deposit", NOTE % b'"a\\u0000b"', 400, "validation", "note", None),
    ("\\u0000 in the stream's field", C + "Deposit", b'{"account":"a\\u0000","amount":1}', 400, "validation",
     "account", None),
    # -- dates and timestamps
    ("2021-02-29", C + "OpenAccount", OPEN % b'"2021-02-29"', 400, "validation", "opened_on", None),
    ("month 13", C + "OpenAccount", OPEN % b'"2021-13-01"', 400, "validation", "opened_on", None),
    ("year 0", C + "OpenAccount", OPEN % b'"0000-01-01"', 400, "validation", "opened_on", None),
    ("date word", C + "OpenAccount", OPEN % b'"yesterday"', 400, "validation", "opened_on", None),
    ("hour 25", C + "Deposit", AT % b'"2021-01-01T25:00:00Z"', 400, "validation", "at", None),
    ("second 60", C + "Deposit", AT % b'"2021-01-01T10:00:60Z"', 400, "validation", "at", None),
    ("february 30", C + "Deposit", AT % b'"2021-02-30T00:00:00Z"', 400, "validation", "at", None),
    ("offset +25:00", C + "Deposit", AT % b'"2021-01-01T10:00:00+25:00"', 400, "validation", "at", None),
    ("timestamp word", C + "Deposit", AT % b'"not a time"', 400, "validation", "at", None),
    ("empty timestamp", C + "Deposit", AT % b'""', 400, "validation", "at", None),
    # -- CHECK
    ("CHECK amount 0", C + "Deposit", DEP % b"0", 400, "validation", "amount", "CHECK (amount > 0) failed"),
    ("CHECK amount -5", C + "Withdraw", DEP % b"-5", 400, "validation", "amount", "CHECK (amount > 0) failed"),
    ("CHECK amount -0", C + "Deposit", DEP % b"-0", 400, "validation", "amount", "CHECK (amount > 0) failed"),
    ("CHECK length 300", C + "OpenAccount", body(account="x" * 300, owner="o", opened_on="2021-01-01"), 400,
     "validation", "account", "CHECK (length(account) BETWEEN 1 AND 40) failed"),
    ("CHECK length 0", C + "OpenAccount", body(account="", owner="o", opened_on="2021-01-01"), 400, "validation",
     "account", "CHECK (length(account) BETWEEN 1 AND 40) failed"),
    ("event CHECK on EMIT", C + "OpenAccount", body(account="q", owner="o", opened_on="2021-01-01", overdraft=-1),
     400, "validation", None, "CHECK (overdraft >= 0) failed"),
    # -- the stream a command names
    ("stream with a control char", C + "Note", body(topic="a\u0001b"), 400, "validation", "stream", None),
    ("stream with DEL", C + "Note", body(topic="a\u007fb"), 400, "validation", "stream", None),
    ("stream with a newline", C + "Note", body(topic="a\nb"), 400, "validation", "stream", None),
    ("stream of 306 bytes", C + "Note", body(topic="x" * 300), 400, "validation", "stream", None),
    # -- rules
    ("reject: no such account", C + "Deposit", b'{"account":"nobody","amount":5}', 422, "rejected", None,
     "no such account"),
    ("reject: already open", C + "OpenAccount", b'{"account":"a","owner":"o","opened_on":"2021-01-01"}', 422,
     "rejected", None, "account already open"),
    ("reject: before 2000", C + "OpenAccount", OPEN % b'"1999-12-31"', 422, "rejected", None, "before 2000"),
    ("reject: insufficient funds", C + "Withdraw", DEP % b"101", 422, "rejected", None, "insufficient funds"),
    ("reject: lua no such account", C + "SetRate", b'{"account":"nobody","rate":0.1}', 422, "rejected", None,
     "no such account"),
    ("reject: lua vip", C + "SetRate", b'{"account":"a","rate":0.6}', 422, "rejected", None,
     "a rate above 0.5 needs vip"),
    ("fold leaves bigint", C + "Deposit", DEP % b"9223372036854775807", 400, "validation", None, None),
    # -- the Lua handler fails
    ("lua: event fails CHECK", C + "SetRate", b'{"account":"a","rate":1.5,"vip":true}', 500, "handler_error", None,
     "rate < 1"),
    ("lua: runtime error", C + "SetRate", b'{"account":"a","rate":0.99}', 500, "handler_error", None,
     "bank.payi:80:"),
    ("lua: endless loop", C + "SetRate", b'{"account":"a","rate":0.98}', 500, "handler_error", None, "time limit"),
    # -- the command's name
    ("unknown command", C + "Transfer", b'{"account":"a","amount":1}', 404, "unknown_command", None, None),
    ("command names keep their case", C + "deposit", b'{"account":"a","amount":1}', 404, "unknown_command", None,
     None),
    ("an event type is no command", C + "Deposited", b'{"account":"a","amount":1}', 404, "unknown_command", None,
     None),
    # -- raw appends next to the commands
    ("raw: version conflict", "/streams/account-a", b'{"type":"Deposited","data":{"account":"a","amount":1},'
     b'"expected_version":5}', 409, "conflict", "expected_version", None),
    ("raw: declared type checked", "/streams/account-a", b'{"type":"Deposited","data":{"account":"a","amount":-1}}',
     400, "validation", "data.amount", "CHECK (amount > 0) failed"),
    ("raw: $ stream", "/streams/%24schemas", b'{"type":"T","data":{}}', 400, "validation", "stream", None),
]


@pytest.fixture(scope="module")
def table_srv(tmp_path_factory):
    """One server for the table: account a (balance 100, overdraft 0). Every case checks the head itself."""
    s = Server(tmp_path_factory.mktemp("cmdbad") / "data")
    open_account(s, "a")
    s.ok("Deposit", {"account": "a", "amount": 100})
    yield s
    s.stop()
    assert_clean(s)


@pytest.mark.parametrize("name,path,raw,status,code,field,message", BAD_COMMANDS, ids=[b[0] for b in BAD_COMMANDS])
def test_bad_command_changes_nothing(table_srv, name, path, raw, status, code, field, message):
    before = table_srv.head()
    got, r, answer, j = table_srv.request("POST", path, raw)
    assert r.getheader("Content-Type", "").startswith("application/json"), answer[:300]
    assert_error(got, j, status, code, field, message)
    if code in ("validation", "bad_json") and field is None and path.startswith(C) and j["error"].get("field"):
        # a field named must be one of the command's, or the stream, or an EMIT's
        assert j["error"]["field"] in ("stream",) or j["error"]["field"].startswith("EMIT "), j
    assert table_srv.head() == before
    # the account is as it was: balance 100
    assert_error(*table_srv.cmd("Withdraw", {"account": "a", "amount": 101}), 422, "rejected",
                 message="insufficient funds")
    assert table_srv.head() == before


def test_bad_commands_leave_the_server_serving(table_srv):
    before = table_srv.head()
    j = table_srv.ok("Withdraw", {"account": "a", "amount": 100})
    assert j["version"] == 2 and j["position"] == before
    table_srv.ok("Deposit", {"account": "a", "amount": 100})


def test_idempotency_key_reused_with_another_body(table_srv):
    before = table_srv.head()
    key = {"Idempotency-Key": "reused-" + str(time.monotonic_ns())}
    first = table_srv.ok("Deposit", {"account": "a", "amount": 1}, headers=key)
    for other in ({"account": "a", "amount": 2}, {"account": "a", "amount": 1, "note": "x"}):
        status, j = table_srv.cmd("Deposit", other, headers=key)
        assert_error(status, j, 400, "validation", "Idempotency-Key")
    assert table_srv.head() == before + 1
    assert table_srv.ok("Deposit", {"account": "a", "amount": 1}, headers=key) == first
    table_srv.ok("Withdraw", {"account": "a", "amount": 1})


@pytest.fixture(scope="module")
def small_srv(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("cmdsmall") / "data", "--max-body", "4096")
    open_account(s, "a")
    yield s
    s.stop()
    assert_clean(s)


def test_oversized_body_is_413(small_srv):
    s = small_srv
    s.ok("Deposit", {"account": "a", "amount": 1, "note": "n" * 3900})        # under the limit
    before = s.head()
    status, j = s.cmd("Deposit", {"account": "a", "amount": 1, "note": "n" * 5000})
    assert_error(status, j, 413, "too_large", "body")
    # a chunked body has no Content-Length: refused once it passes the limit
    c = s.conn()
    c.putrequest("POST", "/commands/Deposit")
    c.putheader("Transfer-Encoding", "chunked")
    c.putheader("Content-Type", "application/json")
    c.endheaders()
    data = body(account="a", amount=1, note="n" * 6000)
    for i in range(0, len(data), 500):
        piece = data[i:i + 500]
        c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
    c.send(b"0\r\n\r\n")
    r = c.getresponse()
    assert_error(r.status, json.loads(r.read()), 413, "too_large", "body")
    c.close()
    # an NDJSON batch counts as one body
    lines = b"\n".join([body(account="a", amount=1)] * 200)
    status, _, raw, j = s.request("POST", "/commands/Deposit", lines, headers={"Content-Type": "application/x-ndjson"})
    assert status == 413, raw[:300]
    assert s.head() == before


def test_slow_header_client_does_not_block_others_and_is_cut_off(start):
    s = start("--idle-timeout", "2")
    open_account(s, "a")
    c = s.conn()
    head = s.head()
    slow = socket.create_connection(("127.0.0.1", s.port), timeout=15)
    request = b"POST /commands/Deposit HTTP/1.1\r\nHost: x\r\nContent-Length: 27\r\n\r\n" + body(account="a", amount=7)
    cut = threading.Event()

    def trickle():
        try:
            for b in request[:4]:      # one byte a second
                slow.send(bytes([b]))
                time.sleep(1)
        except OSError:
            cut.set()

    t = threading.Thread(target=trickle)
    t.start()
    n, worst = 0, 0.0
    while t.is_alive():                # others are served meanwhile, promptly
        t0 = time.monotonic()
        s.ok("Deposit", {"account": "a", "amount": 1}, conn=c)
        worst = max(worst, time.monotonic() - t0)
        n += 1
        time.sleep(0.02)
    t.join()
    assert n >= 20 and worst < 1.0, f"{n} commands, slowest {worst:.2f}s while a client trickled its headers"
    went_silent = time.monotonic()
    try:
        data = slow.recv(1024)         # then silence: the server closes the connection
        while data and not cut.is_set() and time.monotonic() - went_silent < 10:
            more = slow.recv(1024)
            if not more:
                break
            data += more
    except (ConnectionResetError, socket.timeout) as e:
        data = repr(e).encode()
    waited = time.monotonic() - went_silent
    slow.close()
    assert not data.startswith(b"HTTP/1.1 2"), data
    assert b"timeout" not in data, f"not cut off within {waited:.1f}s"
    assert waited < 8, f"cut off after {waited:.1f}s of silence"
    assert s.head() == head + n, "the slow request must not have been executed"
    c.close()


# ---------------------------------------------------------------------------
# the state survives a restart; the CLI sees typed events


def test_state_survives_a_restart_and_the_cli_reads_typed_events(start, tmp_path):
    data = tmp_path / "kept"
    s = start(data=data)
    open_account(s, "a", tags={"k": 1})
    open_account(s, "b", overdraft=20)
    s.ok("Deposit", {"account": "a", "amount": 100})
    s.ok("Deposit", {"account": "a", "amount": 250, "at": "2021-06-01T12:00:00Z"})
    s.ok("Withdraw", {"account": "a", "amount": 50})
    s.ok("SetRate", {"account": "a", "rate": 0.25})
    s.ok("Note", {"topic": "T", "due": "2021-01-01"})
    head = s.head()
    assert s.stop() == 0, s.stderr()
    assert "stopped" in s.stderr()

    # payi read: every event, typed, with every field
    r = run_payi(["read", "--data", data, "--all"])
    assert r.rc == 0, r
    evs = [json.loads(l) for l in r.out_lines]
    assert len(evs) == head and [e["position"] for e in evs] == list(range(head))
    user = [e for e in evs if not e["stream"].startswith("$")]
    assert [e["type"] for e in user] == ["AccountOpened", "AccountOpened", "Deposited", "Deposited", "Withdrawn",
                                         "RateSet", "Noted"]
    assert user[0]["data"] == {"account": "a", "owner": "ANN", "opened_on": "2021-01-01", "overdraft": 0,
                               "tags": {"k": 1}}
    assert user[2]["data"] == {"account": "a", "amount": 100, "at": None, "note": "none"}
    assert user[3]["data"]["at"] == "2021-06-01T12:00:00.000000Z"
    assert user[5]["data"] == {"account": "a", "rate": 0.25, "vip": False}
    assert user[6]["data"] == {"topic": "T", "body": "(empty)", "due": "2021-01-08"}
    assert all(e["meta"].get("command") for e in user)
    assert sum(e["stream"] == "$schemas" for e in evs) == 6

    # the same spec again: nothing new registered, and decisions see the folded state
    s = start(data=data)
    assert s.head() == head
    assert_error(*s.cmd("Withdraw", {"account": "a", "amount": 301}), 422, "rejected", message="insufficient funds")
    j = s.ok("Withdraw", {"account": "a", "amount": 300})
    assert j["position"] == head and j["version"] == 5
    assert_error(*s.cmd("Withdraw", {"account": "a", "amount": 1}), 422, "rejected", message="insufficient funds")
    assert_error(*s.cmd("OpenAccount", {"account": "a", "owner": "x", "opened_on": "2021-01-01"}), 422, "rejected",
                 message="account already open")
    s.ok("Withdraw", {"account": "b", "amount": 20})                   # the overdraft was kept
    assert_error(*s.cmd("Withdraw", {"account": "b", "amount": 1}), 422, "rejected")
    assert [e["type"] for e in s.ok("Deposit", {"account": "a", "amount": 10000})["events"]] == \
        ["Deposited", "BigDeposit"]
    assert_error(*s.cmd("SetRate", {"account": "a", "rate": 0.99}), 500, "handler_error", message="bank.payi:80:")
    assert s.ok("Note", {"topic": "t"})["version"] == 1
    head = s.head()
    assert s.stop() == 0, s.stderr()

    # payi append validates declared types now that the data directory has their schemas
    r = run_payi(["append", "--data", data], input=[{"stream": "cli", "type": "Deposited",
                                                     "data": {"account": "a", "amount": -1}}])
    assert r.rc != 0 and "validation" in r.err and "amount" in r.err, r
    r = run_payi(["append", "--data", data], input=[{"stream": "cli", "type": "Deposited",
                                                     "data": {"account": "a", "amount": "5"}}])
    assert r.rc != 0 and "validation" in r.err, r
    r = run_payi(["append", "--data", data], input=[{"stream": "$schemas", "type": "T", "data": {}}])
    assert r.rc != 0, r
    r = run_payi(["append", "--data", data], input=[{"stream": "cli", "type": "Deposited",
                                                     "data": {"account": "a", "amount": 5}}])
    assert r.rc == 0, r
    r = run_payi(["read", "--data", data, "--all"])
    last = [json.loads(l) for l in r.out_lines]
    assert len(last) == head + 1
    assert last[-1]["data"] == {"account": "a", "amount": 5, "at": None, "note": "none"}


def test_cli_append_without_schemas_takes_any_data(tmp_path):
    data = tmp_path / "plain"
    r = run_payi(["append", "--data", data], input=[{"stream": "cli", "type": "Deposited",
                                                     "data": {"account": "a", "amount": -1}}])
    assert r.rc == 0, r


# ---------------------------------------------------------------------------
# concurrency: decisions on hot streams are serialized


def test_concurrent_commands_never_overdraw(start):
    s = start()
    naccounts, nthreads, per_thread = 4, 64, 40
    for a in range(naccounts):
        open_account(s, f"c{a}", overdraft=0)
    lock = threading.Lock()
    ok = {a: 0 for a in range(naccounts)}
    acks = []            # (account, type, amount, id, version)
    errors = []

    def worker(t):
        rnd = random.Random(1000 + t)
        c = s.conn(timeout=60)
        try:
            for _ in range(per_thread):
                a = rnd.randrange(naccounts)
                kind = "Deposit" if rnd.random() < 0.5 else "Withdraw"
                amount = rnd.randint(1, 100) if kind == "Deposit" else rnd.randint(1, 150)
                status, j = s.cmd(kind, {"account": f"c{a}", "amount": amount}, conn=c)
                if status == 201:
                    (e,) = j["events"]
                    with lock:
                        ok[a] += 1
                        acks.append((a, e["type"], e["data"]["amount"], e["id"], e["version"]))
                elif not (status == 422 and kind == "Withdraw" and j["error"]["message"] == "insufficient funds"):
                    errors.append((kind, a, amount, status, j))
        except Exception as e:   # reported by the main thread
            errors.append(repr(e))
        finally:
            c.close()

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(nthreads)]
    for p in pool:
        p.start()
    for p in pool:
        p.join(120)
    assert not any(p.is_alive() for p in pool), "clients still running after 120 s"
    assert not errors, errors[:5]
    assert sum(ok.values()) == len(acks) and len(acks) > nthreads * per_thread // 2

    for a in range(naccounts):
        evs = s.stream(f"account-c{a}")
        assert [e["version"] for e in evs] == list(range(len(evs))), f"account c{a}: versions have gaps"
        assert evs[0]["type"] == "AccountOpened"
        moves = [e for e in evs if e["type"] in ("Deposited", "Withdrawn")]
        assert len(moves) == ok[a] == len(evs) - 1, (a, len(moves), ok[a])
        by_id = {e["id"]: e for e in evs}
        for (acc, typ, amount, eid, version) in acks:
            if acc == a:
                e = by_id[eid]
                assert (e["type"], e["data"]["amount"], e["version"]) == (typ, amount, version)
        balance = 0
        for e in evs[1:]:
            balance += e["data"]["amount"] if e["type"] == "Deposited" else -e["data"]["amount"]
            assert balance >= 0, f"account c{a} overdrawn at version {e['version']}: {balance}"
        # the server's state is the fold
        assert_error(*s.cmd("Withdraw", {"account": f"c{a}", "amount": balance + 1}), 422, "rejected",
                     message="insufficient funds")
        if balance > 0:
            s.ok("Withdraw", {"account": f"c{a}", "amount": balance})
            assert_error(*s.cmd("Withdraw", {"account": f"c{a}", "amount": 1}), 422, "rejected")


def test_concurrent_commands_and_raw_appends_on_the_same_streams(start):
    """Raw appends move the streams under the command side: decisions still see every event."""
    s = start()
    naccounts = 2
    for a in range(naccounts):
        open_account(s, f"m{a}")
    errors, gave_up = [], []

    def commands(t):
        rnd = random.Random(2000 + t)
        c = s.conn(timeout=60)
        try:
            for _ in range(30):
                a = rnd.randrange(naccounts)
                status, j = s.cmd("Withdraw", {"account": f"m{a}", "amount": rnd.randint(1, 60)}, conn=c)
                if status == 409 and j["error"]["code"] == "conflict":
                    gave_up.append(j)    # the stream moved under all 8 retries: documented, appends nothing
                elif status != 201 and not (status == 422 and j["error"]["message"] == "insufficient funds"):
                    errors.append((status, j))
        except Exception as e:
            errors.append(repr(e))
        finally:
            c.close()

    def raw(t):
        rnd = random.Random(3000 + t)
        c = s.conn(timeout=60)
        try:
            for _ in range(30):
                a = rnd.randrange(naccounts)
                status, _, _, j = s.post(f"account-m{a}", {"type": "Deposited",
                                                           "data": {"account": f"m{a}", "amount": rnd.randint(1, 50)}},
                                         conn=c)
                if status != 201:
                    errors.append((status, j))
        except Exception as e:
            errors.append(repr(e))
        finally:
            c.close()

    pool = [threading.Thread(target=commands, args=(t,)) for t in range(16)]
    pool += [threading.Thread(target=raw, args=(t,)) for t in range(4)]
    for p in pool:
        p.start()
    for p in pool:
        p.join(120)
    assert not errors, errors[:5]
    # 480 commands on two streams that 4 writers move under them: a few may
    # run out of retries (under ASan, 1 did in one of five runs), most must not.
    assert len(gave_up) <= 10, gave_up[:5]
    for a in range(naccounts):
        evs = s.stream(f"account-m{a}")
        assert [e["version"] for e in evs] == list(range(len(evs)))
        balance = 0
        for e in evs[1:]:
            balance += e["data"]["amount"] if e["type"] == "Deposited" else -e["data"]["amount"]
            assert balance >= 0, f"account m{a} overdrawn at version {e['version']}: {balance}"
        assert_error(*s.cmd("Withdraw", {"account": f"m{a}", "amount": balance + 1}), 422, "rejected",
                     message="insufficient funds")
        if balance > 0:
            s.ok("Withdraw", {"account": f"m{a}", "amount": balance})
