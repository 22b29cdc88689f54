"""Fixtures and helpers for the payi black-box tests.

Every test drives the real binary (build/payi, or $PAYI_BIN) as a subprocess.
The `payi` fixture gives a helper bound to a fresh, not-yet-created data
directory under pytest's tmp_path.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAYI_BIN = Path(os.environ.get("PAYI_BIN", REPO / "build" / "payi"))

DEFAULT_TIMEOUT = 60


def encode_line(item):
    """One NDJSON line (without the newline) as bytes.

    dict/list -> compact JSON (UTF-8, not ASCII-escaped); str -> UTF-8; bytes as is.
    """
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_input(lines):
    """An iterable of lines -> stdin bytes, each line newline-terminated."""
    if lines is None:
        return b""
    if isinstance(lines, (bytes, str)):
        return lines.encode("utf-8") if isinstance(lines, str) else lines
    return b"".join(encode_line(x) + b"\n" for x in lines)


def ev(stream, data=None, type="t", **extra):
    """An event object for `payi append`."""
    e = {"stream": stream, "type": type, "data": {} if data is None else data}
    e.update(extra)
    return e


class Result:
    def __init__(self, args, proc):
        self.args = args
        self.rc = proc.returncode
        self.raw_out = proc.stdout
        self.raw_err = proc.stderr
        self.out = proc.stdout.decode("utf-8", "replace")
        self.err = proc.stderr.decode("utf-8", "replace")

    @property
    def out_lines(self):
        return [l for l in self.out.split("\n") if l.strip()]

    @property
    def err_lines(self):
        return [l for l in self.err.split("\n") if l.strip()]

    def json_lines(self):
        objs = []
        for l in self.out_lines:
            try:
                objs.append(json.loads(l))
            except ValueError as e:
                raise AssertionError(f"stdout line is not JSON: {l!r} ({e})\n{self}")
        return objs

    def __str__(self):
        out = self.out if len(self.out) < 4000 else self.out[:4000] + "...[cut]"
        err = self.err if len(self.err) < 4000 else self.err[:4000] + "...[cut]"
        return f"$ {' '.join(map(str, self.args))}\nexit {self.rc}\n--- stdout\n{out}\n--- stderr\n{err}"

    __repr__ = __str__


def run_payi(args, input=None, timeout=DEFAULT_TIMEOUT, cwd=None):
    """Run build/payi with args; input is None, bytes, str or a list of lines."""
    argv = [str(PAYI_BIN)] + [str(a) for a in args]
    stdin_bytes = encode_input(input) if input is not None else None
    try:
        proc = subprocess.run(
            argv,
            input=stdin_bytes,
            stdin=subprocess.DEVNULL if stdin_bytes is None else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=timeout,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"payi timed out after {timeout}s: {argv}\nstdout={e.stdout!r:.2000}\nstderr={e.stderr!r:.2000}")
    return Result(argv, proc)


class Payi:
    """Helper bound to one data directory."""

    def __init__(self, data_dir):
        self.bin = PAYI_BIN
        self.data = Path(data_dir)

    # -- raw
    def run(self, *args, input=None, timeout=DEFAULT_TIMEOUT, data=True):
        """`payi VERB --data DIR REST...` (data=False leaves --data out)."""
        args = list(args)
        if data and args:
            args = [args[0], "--data", str(self.data)] + args[1:]
        return run_payi(args, input=input, timeout=timeout)

    def popen(self, *args, data=True, **kw):
        args = list(args)
        if data and args:
            args = [args[0], "--data", str(self.data)] + args[1:]
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen([str(self.bin)] + [str(a) for a in args], **kw)

    # -- verbs
    def append(self, lines, *flags, timeout=DEFAULT_TIMEOUT):
        return self.run("append", *flags, input=lines if lines is not None else b"", timeout=timeout)

    def append_ok(self, lines, *flags, timeout=DEFAULT_TIMEOUT):
        r = self.append(lines, *flags, timeout=timeout)
        assert r.rc == 0, f"append failed\n{r}"
        return r.json_lines()

    def read(self, *flags, timeout=DEFAULT_TIMEOUT):
        return self.run("read", *flags, timeout=timeout)

    def read_ok(self, *flags, timeout=DEFAULT_TIMEOUT):
        r = self.read(*flags, timeout=timeout)
        assert r.rc == 0, f"read failed\n{r}"
        return r.json_lines()

    def read_all(self):
        return self.read_ok("--all")

    def check(self, timeout=DEFAULT_TIMEOUT):
        return self.run("check", timeout=timeout)

    # -- files
    def segments(self):
        return sorted(p for p in self.data.iterdir() if p.name.endswith(".seg"))


@pytest.fixture(scope="session", autouse=True)
def _payi_binary():
    if not PAYI_BIN.is_file() or not os.access(PAYI_BIN, os.X_OK):
        pytest.fail(f"payi binary not found at {PAYI_BIN}: run `make` first (or set PAYI_BIN)", pytrace=False)
    return PAYI_BIN


@pytest.fixture
def data_dir(tmp_path):
    """A data directory path that does not exist yet."""
    return tmp_path / "data"


@pytest.fixture
def payi(data_dir):
    return Payi(data_dir)


@pytest.fixture
def make_payi(tmp_path):
    """Factory for extra data directories in one test."""
    n = [0]

    def make(name=None):
        n[0] += 1
        return Payi(tmp_path / (name or f"data{n[0]}"))

    return make
