"""A real full disk: a small file system mounted for the test (a loop-mounted
ext4, where payi writes with O_DIRECT, and a tmpfs, where it writes through the
page cache).  payi must answer insufficient_storage, keep every acknowledged
event, damage nothing, and append again once space is back.

Mounting needs root; where the sandbox refuses it the test says so and skips.
"""
import json
import os
import shutil
import subprocess
import uuid

import pytest

from conftest import Payi


def sh(*argv):
    return subprocess.run(argv, capture_output=True, text=True)


@pytest.fixture(params=["ext4-loop", "tmpfs"])
def small_fs(request, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if request.param == "ext4-loop":
        img = tmp_path / "fs.img"
        with open(img, "wb") as f:
            f.truncate(24 << 20)
        if not shutil.which("mkfs.ext4"):
            pytest.skip("mkfs.ext4 not installed")
        r = sh("mkfs.ext4", "-q", "-F", str(img))
        assert r.returncode == 0, r.stderr
        r = sh("mount", "-o", "loop", str(img), str(mnt))
    else:
        r = sh("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt))
    if r.returncode != 0:
        pytest.skip(f"cannot mount a test file system here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        sh("umount", "-l", str(mnt))


def fill(mnt, leave_bytes):
    """Fill the file system to the last block (root may use reserved blocks,
    and metadata takes its share), then give back about leave_bytes."""
    filler = mnt / "filler"
    chunk = b"\0" * (64 << 10)
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as e:
            assert e.errno == 28, e
        try:
            os.fsync(f.fileno())
        except OSError:
            pass
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave_bytes))
    return filler


def lines(n, start=0):
    return [{"stream": f"s{i % 5}", "type": "Filled", "id": str(uuid.uuid4()),
             "data": {"i": start + i, "pad": "x" * 400}} for i in range(n)]


def test_full_disk_answers_insufficient_storage_and_keeps_every_ack(small_fs):
    payi = Payi(small_fs / "data")
    payi.append_ok([])   # create the log and its first segment before the disk fills
    filler = fill(small_fs, 256 << 10)
    events = lines(2000)   # ~1 MB: more than the space left
    r = payi.append(events)
    assert r.rc == 1, r
    assert "insufficient_storage" in r.err, r
    acked = r.json_lines()
    assert 0 < len(acked) < len(events), r
    assert [a["position"] for a in acked] == list(range(len(acked)))

    # every acknowledged event is there, once, as sent; nothing else is
    got = payi.read_all()
    assert [e["data"]["i"] for e in got] == list(range(len(acked)))
    assert [e["id"] for e in got] == [e["id"] for e in events[: len(acked)]]
    c = payi.check()
    assert c.rc == 0, c

    # space is back: appending goes on where it stopped, and the events that were
    # refused can be sent again (their ids were never taken)
    filler.unlink()
    rest = events[len(acked):len(acked) + 50]
    acks = payi.append_ok(rest)
    assert [a["position"] for a in acks] == list(range(len(acked), len(acked) + 50))
    assert not any(a.get("duplicate") for a in acks)
    assert payi.check().rc == 0
