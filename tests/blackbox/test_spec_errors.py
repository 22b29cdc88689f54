"""Black-box tests of spec mistakes: `payi serve --spec FILE` must print
FILE:LINE:COL: message (Lua: FILE:LINE: message), exit 1, and not start,
nor create or touch the data directory.

Every case gives its line and column by hand, and the text expected there:
the test checks the spec itself too, so that a wrong hand count shows up as
such rather than as a payi bug.  Columns count bytes.
"""
import signal
import subprocess

import pytest

from conftest import PAYI_BIN, run_payi

# (id, spec text, line, col or None for Lua, text at line:col, words of the message (any one suffices))
CASES = [
    ("unknown type",
     "CREATE EVENT A (x texty);",
     1, 19, "texty", ["type"]),
    ("unknown type after a multi-byte char",
     "-- é\nCREATE EVENT A (x text DEFAULT 'é', y texty);",
     2, 40, "texty", ["type"]),
    ("unknown event in ON",
     "CREATE EVENT A (x text);\nCREATE AGGREGATE g (n bigint) STREAM 'a' ON B SET n = 1;",
     2, 45, "B SET", ["not declared"]),
    ("unknown event in EMIT",
     "CREATE EVENT A (x text);\nCREATE COMMAND C (x text) STREAM x EMIT B (x);",
     2, 41, "B (x)", ["not declared"]),
    ("unknown aggregate in FOR",
     "CREATE EVENT A (x text);\nCREATE COMMAND C (x text) FOR nope EMIT A (x);",
     2, 31, "nope", ["not declared"]),
    ("aggregate declared after its command",
     "CREATE EVENT A (x text);\nCREATE COMMAND C (x text) FOR g EMIT A (x);\n"
     "CREATE AGGREGATE g (n bigint) STREAM x ON A SET n = 1;",
     2, 31, "g EMIT", ["not declared"]),
    ("undeclared column inside an EMIT expression",
     "CREATE EVENT A (x text);\nCREATE COMMAND C (x text) STREAM 's-' || x\n  EMIT A (upper(y) AS x);",
     3, 17, "y) AS", ["does not exist"]),
    ("undeclared column in EMIT ... IF",
     "CREATE EVENT A (x text);\nCREATE COMMAND C (x text) STREAM x\n"
     "  REJECT IF length(x) > 3 MESSAGE 'long'\n  EMIT A (x) IF length(zz) > 1;",
     4, 24, "zz", ["does not exist"]),
    ("state column of a stateless command",
     "CREATE EVENT A (x text);\nCREATE COMMAND C (x text) STREAM x\n  REJECT IF state.n > 1 MESSAGE 'x' EMIT A (x);",
     3, 13, "state.n", ["does not exist"]),
    ("unknown state column in SET",
     "CREATE EVENT A (x text);\nCREATE AGGREGATE g (n bigint) STREAM x ON A SET n = state.nn + 1;",
     2, 53, "state.nn", ["does not exist"]),
    ("SET of an unknown state field",
     "CREATE EVENT A (x text);\nCREATE AGGREGATE g (n bigint) STREAM x ON A SET m = 1;",
     2, 49, "m = 1", ["no state field"]),
    ("type mismatch in SET",
     "CREATE EVENT A (x text, n bigint);\nCREATE AGGREGATE g (n bigint) STREAM x\n  ON A SET n = x;",
     3, 16, "x;", ["text", "bigint"]),
    ("type mismatch in EMIT",
     "CREATE EVENT A (x text, n bigint NOT NULL);\nCREATE COMMAND C (x text) STREAM x\n  EMIT A (x, x AS n);",
     3, 14, "x AS n", ["text", "bigint"]),
    ("operator on the wrong types in EMIT",
     "CREATE EVENT A (x text, d date);\nCREATE COMMAND C (x text) STREAM x EMIT A (x, x + 1 AS d);",
     2, 49, "+ 1", ["operator does not exist"]),
    ("EMIT of an unknown event field",
     "CREATE EVENT A (x text);\nCREATE COMMAND C (x text) STREAM x EMIT A (x AS y);",
     2, 49, "y)", ["no field"]),
    ("EMIT gives a field twice",
     "CREATE EVENT A (x text);\nCREATE COMMAND C (x text) STREAM x EMIT A (x, x);",
     2, 47, "x)", ["twice"]),
    ("EMIT misses a NOT NULL field without DEFAULT",
     "CREATE EVENT A (x text, n bigint NOT NULL);\nCREATE COMMAND C (x text) STREAM x\n  EMIT A (x);",
     3, 3, "EMIT", ["NOT NULL"]),
    ("duplicate event",
     "CREATE EVENT A (x text);\nCREATE EVENT A (y text);",
     2, 14, "A (y", ["twice"]),
    ("duplicate aggregate",
     "CREATE EVENT A (x text);\nCREATE AGGREGATE g (n bigint) STREAM x ON A SET n = 1;\n"
     "CREATE AGGREGATE g (n bigint) STREAM x ON A SET n = 1;",
     3, 18, "g (n", ["twice"]),
    ("duplicate command",
     "CREATE EVENT A (x text);\nCREATE COMMAND C (x text) STREAM x EMIT A (x);\n"
     "CREATE COMMAND C (x text) STREAM x EMIT A (x);",
     3, 16, "C (x", ["twice"]),
    ("duplicate field",
     "CREATE EVENT A (x text, x bigint);",
     1, 25, "x bigint", ["twice"]),
    ("duplicate command field",
     "CREATE EVENT A (x text);\nCREATE COMMAND C (x text, x text) STREAM x EMIT A (x);",
     2, 27, "x text)", ["twice"]),
    ("missing ';' at the end",
     "CREATE EVENT A (x text)",
     1, 24, "", ["';'"]),
    ("garbage after a statement",
     "CREATE EVENT A (x text);\nCREATE COMMAND C (x text) STREAM x EMIT A (x); garbage",
     2, 48, "garbage", ["garbage"]),
    ("CREATE TABLE",
     "CREATE TABLE A (x text);",
     1, 8, "TABLE", ["TABLE"]),
    ("unterminated string",
     "CREATE EVENT A (x text DEFAULT 'abc);",
     1, 32, "'abc", ["unterminated"]),
    ("unterminated comment",
     "CREATE EVENT A (x text);\n  /* CREATE EVENT B (x text);",
     2, 3, "/*", ["unterminated"]),
    ("unterminated $$",
     "CREATE EVENT A (x text);\nCREATE COMMAND C (x text) STREAM x LANGUAGE lua AS $$\nfunction decide(s, c)\n"
     "  return {}\nend\n",
     2, 52, "$$", ["unterminated"]),
    ("REJECT IF not boolean",
     "CREATE EVENT A (x text);\nCREATE COMMAND C (x text) STREAM x\n  REJECT IF x || 1 MESSAGE 'no'\n  EMIT A (x);",
     3, 13, "x || 1", ["boolean"]),
    ("EMIT IF not boolean",
     "CREATE EVENT A (x text);\nCREATE COMMAND C (x text) STREAM x EMIT A (x) IF x;",
     2, 50, "x;", ["boolean"]),
    ("field CHECK not boolean",
     "CREATE EVENT A (x text CHECK (length(x)));",
     1, 31, "length", ["boolean"]),
    ("table CHECK not boolean",
     "CREATE EVENT A (x text, CHECK (x));",
     1, 32, "x))", ["boolean"]),
    ("STREAM not text",
     "CREATE EVENT A (x text);\nCREATE COMMAND C (n bigint) STREAM n + 1 EMIT A (n::text AS x);",
     2, 36, "n + 1", ["text"]),
    ("DEFAULT refers to a field",
     "CREATE EVENT A (x text, n bigint DEFAULT n + 1);",
     1, 42, "n + 1", ["constant"]),
    ("DEFAULT not deterministic",
     "CREATE EVENT A (x text DEFAULT now()::text);",
     1, 32, "now()", ["now()"]),
    ("DEFAULT of the wrong type",
     "CREATE EVENT A (n bigint DEFAULT 'abc');",
     1, 34, "'abc'", ["bigint"]),
    ("unknown function",
     "CREATE EVENT A (x text);\nCREATE COMMAND C (x text) STREAM frobnicate(x) EMIT A (x);",
     2, 34, "frobnicate", ["frobnicate"]),
    ("bad expression syntax",
     "CREATE EVENT A (x text);\nCREATE COMMAND C (x text) STREAM x\n  EMIT A ((x ||) AS x);",
     3, 16, ") AS", ["syntax error"]),
    ("LANGUAGE python",
     "CREATE EVENT A (x text);\nCREATE COMMAND C (x text) STREAM x LANGUAGE python AS $$ x $$;",
     2, 45, "python", ["python"]),
    ("Lua syntax error",
     "CREATE EVENT A (x text);\n-- a comment line\nCREATE COMMAND C (x text) STREAM x LANGUAGE lua AS $$\n"
     "function decide(s, c)\n  local t = 1\n  return {\nend\n$$;",
     7, None, "end", ["end"]),
    ("Lua syntax error in the first line of the body",
     "CREATE EVENT A (x text);\nCREATE COMMAND C (x text) STREAM x LANGUAGE lua AS $$ function decide(s, c) return { end $$;",
     2, None, "", ["end"]),
    ("Lua error while loading",
     "CREATE EVENT A (x text);\nCREATE COMMAND C (x text) STREAM x LANGUAGE lua AS $$\n\n\nerror('boom')\n"
     "function decide(s, c) return {} end\n$$;",
     5, None, "error", ["boom"]),
    ("Lua without decide",
     "CREATE EVENT A (x text);\nCREATE COMMAND C (x text) STREAM x LANGUAGE lua AS $$\nlocal y = 1\n$$;",
     2, None, "", ["decide"]),
]

SANITIZER_WORDS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")


def serve_spec(tmp_path, text, data=None, name="broken.payi"):
    spec = tmp_path / name
    spec.write_bytes(text.encode() if isinstance(text, str) else text)
    data = data or tmp_path / "data"
    r = run_payi(["serve", "--data", data, "--spec", spec, "--listen", "127.0.0.1:0"], timeout=20)
    return spec, data, r


def assert_no_log(data):
    """The data directory was not created, or holds no segment."""
    if data.exists():
        segs = sorted(p.name for p in data.iterdir() if p.name.endswith(".seg"))
        assert not segs, f"the failed start wrote the log: {sorted(p.name for p in data.iterdir())}"


def test_hand_counted_positions_point_at_the_text():
    """The table's line:col point where each case says: a check of the table itself."""
    for name, text, line, col, at, _ in CASES:
        lines = text.split("\n")
        assert 1 <= line <= len(lines), name
        if col is not None:
            src = lines[line - 1].encode()
            assert 1 <= col <= len(src) + 1, name
            assert src[col - 1:].startswith(at.encode()), f"{name}: {src[col - 1:]!r} does not start with {at!r}"
        else:
            assert at in lines[line - 1], f"{name}: {at!r} is not on line {line}: {lines[line - 1]!r}"


@pytest.mark.parametrize("name,text,line,col,at,words", CASES, ids=[c[0] for c in CASES])
def test_spec_mistake_is_reported_where_it_is(tmp_path, name, text, line, col, at, words):
    spec, data, r = serve_spec(tmp_path, text)
    assert r.rc == 1, r
    assert "listening" not in r.err, r
    where = f"{spec}:{line}:" if col is None else f"{spec}:{line}:{col}:"
    msg_lines = [l for l in r.err_lines if l.startswith(f"{spec}:")]
    assert msg_lines, f"no '{spec}:...' line\n{r}"
    first = msg_lines[0]
    assert first.startswith(where + " "), f"wanted {where}\n{r}"
    if col is None:   # Lua: FILE:LINE: message, no column
        assert not first[len(where):].lstrip().split(":")[0].isdigit(), first
    assert any(w.lower() in first.lower() for w in words), f"none of {words} in {first!r}"
    assert not any(w in r.err for w in SANITIZER_WORDS), r
    assert_no_log(data)


def test_the_cases_are_minimal_mistakes(tmp_path):
    """The fixed version of a few cases starts: the error is the one the case names."""
    fixed = [
        "CREATE EVENT A (x text);",
        "CREATE EVENT A (x text);\nCREATE COMMAND C (x text) STREAM 's-' || x\n  EMIT A (upper(x) AS x);",
        "CREATE EVENT A (x text, n bigint NOT NULL DEFAULT 3);\nCREATE COMMAND C (x text) STREAM x\n  EMIT A (x);",
        "CREATE EVENT A (x text);\nCREATE COMMAND C (x text) STREAM x LANGUAGE lua AS $$\nfunction decide(s, c)\n"
        "  return {}\nend\n$$;",
    ]
    for i, text in enumerate(fixed):
        spec = tmp_path / f"ok{i}.payi"
        spec.write_text(text)
        p = subprocess.Popen([str(PAYI_BIN), "serve", "--data", str(tmp_path / f"d{i}"), "--spec", str(spec),
                              "--listen", "127.0.0.1:0"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        try:
            line = p.stderr.readline().decode()
            assert line.startswith("payi: listening on http://127.0.0.1:"), (text, line, p.stderr.read(2000))
        finally:
            p.send_signal(signal.SIGTERM)
            assert p.wait(30) == 0
            rest = p.stderr.read().decode()
            p.stderr.close()
            assert not any(w in rest for w in SANITIZER_WORDS), rest


def test_a_failed_start_leaves_an_existing_log_alone(tmp_path):
    data = tmp_path / "data"
    r = run_payi(["append", "--data", data], input=['{"stream":"s","type":"T","data":{"i":1}}'])
    assert r.rc == 0, r
    before = {p.name: p.read_bytes() for p in data.iterdir() if p.name != "LOCK"}
    for name, text, *_ in CASES:
        if name in ("Lua syntax error", "unknown event in EMIT", "type mismatch in SET"):
            _, _, r = serve_spec(tmp_path, text, data=data)
            assert r.rc == 1 and "listening" not in r.err, r
            after = {p.name: p.read_bytes() for p in data.iterdir() if p.name != "LOCK"}
            assert after == before, f"{name}: the failed start changed the data directory"
    r = run_payi(["read", "--data", data, "--all"])
    assert r.rc == 0 and len(r.out_lines) == 1, r


def test_unreadable_spec(tmp_path):
    r = run_payi(["serve", "--data", tmp_path / "d", "--spec", tmp_path / "missing.payi", "--listen", "127.0.0.1:0"],
                 timeout=20)
    assert r.rc != 0 and "missing.payi" in r.err and "listening" not in r.err, r
    assert_no_log(tmp_path / "d")


def test_a_mistake_deep_in_the_bank_spec(tmp_path):
    """A mistake deep in a real spec: one character changed in bank.payi."""
    from conftest import REPO
    text = (REPO / "tests" / "blackbox" / "specs" / "bank.payi").read_text()
    lines = text.split("\n")
    n = next(i for i, l in enumerate(lines) if "EMIT BigDeposit (account, amount) IF amount >= 10000;" in l)
    lines[n] = lines[n].replace("IF amount >= 10000", "IF amount >= 'lots'")
    col = lines[n].index("'lots'") + 1
    spec, data, r = serve_spec(tmp_path, "\n".join(lines), name="bank_broken.payi")
    assert r.rc == 1, r
    # bigint >= 'lots': the literal is read as a bigint, and fails (as in PostgreSQL), pointed at
    first = [l for l in r.err_lines if l.startswith(f"{spec}:")][0]
    assert first.startswith(f"{spec}:{n + 1}:{col}: "), (n + 1, col, first)
    assert "lots" in first and "bigint" in first, first
    assert_no_log(data)
