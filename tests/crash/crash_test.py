#!/usr/bin/env python3
"""Crash test for `payi append`: kill -9 at random moments, then verify the log.

Each cycle starts `payi append --data DIR` (default fsync durability), feeds it
events with client-chosen UUID ids from a thread as fast as it accepts them
(single events and atomic array lines, across a few streams, no expected_version
or "any"), records every ack from stdout in another thread, and kill -9s the
process after 10-300 ms.  Then it checks with `payi read --all` and `payi check`:

  * every acked event is present exactly once (by id) at the acked position
    and version; duplicate acks carry the original position;
  * positions are dense from 0, ids unique, each stream's versions are gapless
    and in position order, every event is one we sent with the data we sent;
  * array lines are all-or-nothing and contiguous;
  * what a reader saw after one crash is still there, unchanged, after the next
    (a writer's tail repair never removes complete records);
  * `payi check` exits 0.

The next cycle first re-sends some lines that were sent but not acked (and a
few that were acked, which must come back as duplicates).  A final clean run
re-sends every line that was never fully acked; afterwards each must be present
exactly once.

Usage:  /usr/bin/python3 tests/crash/crash_test.py          (or via pytest)
Env:    CRASH_CYCLES (default 50), CRASH_SECONDS (time budget, default 230),
        CRASH_SEED, PAYI_BIN, CRASH_KEEP=1 keeps the data directory on failure.
"""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAYI = Path(os.environ.get("PAYI_BIN", REPO / "build" / "payi"))
STREAMS = ["acct-1", "acct-2", "acct-3", "acct-4"]
TYPES = ["Deposited", "Withdrawn", "Noted"]


class CrashFailure(AssertionError):
    pass


def fail(msg):
    raise CrashFailure(msg)


class Line:
    __slots__ = ("lid", "events", "text")

    def __init__(self, lid, events):
        self.lid = lid
        self.events = events  # list of dicts as sent
        # single events go as a bare object, or (odd line ids) as a one-element array
        obj = events[0] if len(events) == 1 and lid % 2 == 0 else events
        self.text = (json.dumps(obj, separators=(",", ":")) + "\n").encode()


class Model:
    def __init__(self):
        self.sent = {}  # id -> event dict
        self.lines = {}  # lid -> Line
        self.line_of = {}  # id -> lid
        self.acked = {}  # id -> (position, version)
        self.prev_log = []  # [(id, position, stream, version)] seen after the previous cycle
        self.seq = 0
        self.next_lid = 0
        self.total_acks = 0
        self.dup_acks = 0
        self.dup_of_unacked = 0
        self.resent_unacked = 0
        self.resent_acked = 0

    def new_line(self, rnd, cycle):
        stream = rnd.choice(STREAMS)
        n = rnd.choice([2, 3, 4]) if rnd.random() < 0.2 else 1
        lid = self.next_lid
        self.next_lid += 1
        events = []
        for _ in range(n):
            e = {"stream": stream, "type": rnd.choice(TYPES), "id": str(uuid.uuid4()),
                 "data": {"seq": self.seq, "cycle": cycle, "amount": rnd.randint(-10**6, 10**6),
                          "note": "x" * rnd.randint(0, 60)}}
            self.seq += 1
            r = rnd.random()
            # payi accepts expected_version only on the first event of an array
            if r < 0.25 and not events:
                e["expected_version"] = "any"
            elif r < 0.35:
                e["meta"] = {"lid": lid}
            events.append(e)
        line = Line(lid, events)
        self.lines[lid] = line
        for e in events:
            self.sent[e["id"]] = e
            self.line_of[e["id"]] = lid
        return line

    def unacked_lines(self, lids):
        return [self.lines[l] for l in lids if any(e["id"] not in self.acked for e in self.lines[l].events)]


def run(args, timeout=120):
    try:
        p = subprocess.run([str(PAYI)] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        fail(f"payi {' '.join(map(str, args))} timed out after {timeout}s")
    return p


def process_acks(model, sent_events, raw_acks, where):
    """Match acks (in input order) to the events sent; returns the number matched."""
    acks = []
    for raw in raw_acks:
        if not raw.endswith(b"\n"):
            break  # cut by the kill: not an ack
        try:
            acks.append(json.loads(raw))
        except ValueError:
            fail(f"{where}: ack is not JSON: {raw!r}")
    if len(acks) > len(sent_events):
        fail(f"{where}: {len(acks)} acks for {len(sent_events)} events sent")
    for e, a in zip(sent_events, acks):
        if not isinstance(a, dict) or not isinstance(a.get("position"), int) or not isinstance(a.get("version"), int):
            fail(f"{where}: malformed ack {a!r}")
        if a.get("stream") != e["stream"]:
            fail(f"{where}: ack {a} for an event of stream {e['stream']!r} (id {e['id']})")
        eid = e["id"]
        if eid in model.acked:
            if a.get("duplicate") is not True:
                fail(f"{where}: id {eid} was acked before at {model.acked[eid]} and was appended again: {a}")
            if (a["position"], a["version"]) != model.acked[eid]:
                fail(f"{where}: duplicate ack {a} for id {eid} does not match the original ack {model.acked[eid]}")
            model.dup_acks += 1
        else:
            if a.get("duplicate") is True:
                model.dup_of_unacked += 1
                model.dup_acks += 1
            elif "duplicate" in a:
                fail(f"{where}: ack has duplicate={a['duplicate']!r}: {a}")
            model.acked[eid] = (a["position"], a["version"])
    model.total_acks += len(acks)
    return len(acks)


def verify(model, data, where):
    """Check the log against the model; returns the log."""
    if not data.exists():
        if model.acked:
            fail(f"{where}: data directory vanished with {len(model.acked)} acked events")
        return []
    p = run(["read", "--data", data, "--all"])
    if p.returncode != 0:
        fail(f"{where}: payi read --all exit {p.returncode}: {p.stderr.decode(errors='replace')}")
    log = []
    for raw in p.stdout.splitlines():
        try:
            log.append(json.loads(raw))
        except ValueError:
            fail(f"{where}: read printed a non-JSON line {raw[:200]!r}")

    pos_of = {}
    next_ver = {}
    for i, e in enumerate(log):
        if e.get("position") != i:
            fail(f"{where}: positions not dense: index {i} has position {e.get('position')}")
        eid = e.get("id")
        if eid in pos_of:
            fail(f"{where}: id {eid} present twice, at positions {pos_of[eid]} and {i}")
        pos_of[eid] = i
        sent = model.sent.get(eid)
        if sent is None:
            fail(f"{where}: position {i} has id {eid} that was never sent: {e}")
        if e.get("stream") != sent["stream"] or e.get("type") != sent["type"] or e.get("data") != sent["data"]:
            fail(f"{where}: position {i} differs from what was sent:\n  sent {sent}\n  read {e}")
        if e.get("meta", {}) != sent.get("meta", {}):
            fail(f"{where}: position {i} meta {e.get('meta')} != sent {sent.get('meta', {})}")
        s = e["stream"]
        if e.get("version") != next_ver.get(s, 0):
            fail(f"{where}: stream {s} version gap/order: position {i} has version {e.get('version')}, expected {next_ver.get(s, 0)}")
        next_ver[s] = next_ver.get(s, 0) + 1

    for eid, (pos, ver) in model.acked.items():
        if eid not in pos_of:
            fail(f"{where}: acked event {eid} (position {pos}) is missing; log has {len(log)} events")
        if pos_of[eid] != pos or log[pos]["version"] != ver:
            fail(f"{where}: acked event {eid} acked at position {pos} version {ver}, "
                 f"found at position {pos_of[eid]} version {log[pos_of[eid]]['version']}")

    for line in model.lines.values():
        if len(line.events) < 2:
            continue
        present = [e["id"] in pos_of for e in line.events]
        if any(present) and not all(present):
            fail(f"{where}: array line {line.lid} is partly in the log: {present}")
        if all(present):
            ps = [pos_of[e["id"]] for e in line.events]
            if ps != list(range(ps[0], ps[0] + len(ps))):
                fail(f"{where}: array line {line.lid} not contiguous: positions {ps}")

    now = [(e["id"], e["position"], e["stream"], e["version"]) for e in log]
    if now[: len(model.prev_log)] != model.prev_log:
        k = next((i for i, (a, b) in enumerate(zip(now, model.prev_log)) if a != b), min(len(now), len(model.prev_log)))
        fail(f"{where}: events seen by a reader earlier were lost or changed: earlier log had "
             f"{len(model.prev_log)} events, now {len(now)}; first difference at position {k}")
    model.prev_log = now

    c = run(["check", "--data", data])
    if c.returncode != 0:
        fail(f"{where}: payi check exit {c.returncode}\nstdout: {c.stdout.decode(errors='replace')}"
             f"\nstderr: {c.stderr.decode(errors='replace')}")
    return log


def crash_cycle(model, data, cycle, rnd, resend):
    proc = subprocess.Popen([str(PAYI), "append", "--data", str(data)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    stop = threading.Event()
    lock = threading.Lock()
    sent_lines, sent_events, raw_acks, err = [], [], [], []

    def writer():
        lines = iter(resend)
        try:
            while not stop.is_set():
                line = next(lines, None)
                with lock:
                    if line is None:
                        line = model.new_line(rnd_w, cycle)
                    sent_lines.append(line)
                    sent_events.extend(line.events)
                view = memoryview(line.text)
                while view:
                    n = proc.stdin.write(view)
                    view = view[n:]
        except (BrokenPipeError, OSError, ValueError):
            pass

    def reader():
        for raw in iter(proc.stdout.readline, b""):
            raw_acks.append(raw)

    def errreader():
        err.append(proc.stderr.read())

    rnd_w = random.Random(rnd.random())
    threads = [threading.Thread(target=f, daemon=True) for f in (writer, reader, errreader)]
    try:
        for t in threads:
            t.start()
        time.sleep(rnd.uniform(0.010, 0.300))
        rc_before = proc.poll()
        proc.kill()
        proc.wait(timeout=30)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for t in threads:
            t.join(timeout=30)
        try:
            proc.stdin.close()
        except OSError:
            pass
    where = f"cycle {cycle}"
    stderr = err[0].decode(errors="replace") if err else ""
    if rc_before is not None:
        fail(f"{where}: payi append exited by itself (status {rc_before}) before the kill; stderr: {stderr}")
    n = process_acks(model, sent_events, raw_acks, where)
    if stderr.strip():
        fail(f"{where}: payi append wrote to stderr: {stderr}")
    return sent_lines, n


def final_run(model, data, lines):
    """A clean run (stdin closed, no kill) re-sending lines; everything must be acked."""
    payload = b"".join(l.text for l in lines)
    events = [e for l in lines for e in l.events]
    try:
        p = subprocess.run([str(PAYI), "append", "--data", str(data)], input=payload,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    except subprocess.TimeoutExpired:
        fail("final run timed out")
    if p.returncode != 0:
        fail(f"final run: exit {p.returncode}: {p.stderr.decode(errors='replace')}")
    n = process_acks(model, events, p.stdout.splitlines(keepends=True), "final run")
    if n != len(events):
        fail(f"final run: {n} acks for {len(events)} events")


def run_crash_test(cycles=None, budget=None, seed=None, log=print):
    cycles = int(os.environ.get("CRASH_CYCLES", 50)) if cycles is None else cycles
    budget = float(os.environ.get("CRASH_SECONDS", 230)) if budget is None else budget
    seed = int(os.environ.get("CRASH_SEED", random.randrange(1 << 30))) if seed is None else seed
    if not (PAYI.is_file() and os.access(PAYI, os.X_OK)):
        fail(f"payi binary not found at {PAYI}: run `make` first")
    rnd = random.Random(seed)
    model = Model()
    tmp = Path(tempfile.mkdtemp(prefix="payi-crash-"))
    data = tmp / "data"
    t0 = time.monotonic()
    done = 0
    ok = False
    try:
        prev_lids = []
        for cycle in range(cycles):
            # keep ~15 s for the final run and verification
            if cycle > 0 and time.monotonic() - t0 > budget - 15:
                break
            unacked = model.unacked_lines(prev_lids)
            resend = rnd.sample(unacked, min(len(unacked), rnd.randint(0, 6)))
            acked = [model.lines[l] for l in prev_lids if all(e["id"] in model.acked for e in model.lines[l].events)]
            resend += rnd.sample(acked, min(len(acked), rnd.randint(0, 3)))
            rnd.shuffle(resend)
            model.resent_unacked += sum(1 for l in resend if l in unacked)
            model.resent_acked += sum(1 for l in resend if l not in unacked)
            sent_lines, _ = crash_cycle(model, data, cycle, rnd, resend)
            verify(model, data, f"cycle {cycle}")
            prev_lids = [l.lid for l in sent_lines]
            done += 1

        # lines never fully acked; those already (partly) in the log first
        in_log = {x[0] for x in model.prev_log}
        never = model.unacked_lines(list(model.lines))
        never.sort(key=lambda l: not any(e["id"] in in_log for e in l.events))
        final_lines = never[:500]
        final_run(model, data, final_lines)
        # every re-sent id is now acked, so verify() proves it is present exactly once
        logv = verify(model, data, "after final run")
        elapsed = time.monotonic() - t0
        summary = (f"crash test: seed {seed}, {done} cycles, {model.total_acks} acks "
                   f"({len(model.acked)} distinct events acked, {model.dup_acks} duplicate acks, "
                   f"{model.dup_of_unacked} of them for events written but never acked), "
                   f"{model.resent_unacked} unacked + {model.resent_acked} acked lines re-sent, "
                   f"{len(final_lines)} lines re-sent in the final run, log {len(logv)} events, {elapsed:.1f}s")
        log(summary)
        ok = True
        return {"cycles": done, "acked": len(model.acked), "log": len(logv), "seed": seed, "summary": summary}
    except CrashFailure as e:
        raise CrashFailure(f"seed {seed} (CRASH_SEED={seed} to replay), data {data}: {e}") from None
    finally:
        if ok or not os.environ.get("CRASH_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)


def test_crash_recovery():
    res = run_crash_test()
    assert res["cycles"] >= min(5, int(os.environ.get("CRASH_CYCLES", 50))), res
    assert res["acked"] > 0, f"no event was ever acked: {res}"


def main():
    try:
        run_crash_test()
    except CrashFailure as e:
        print(f"crash test FAILED: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
