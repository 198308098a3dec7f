"""Streams on disk: Redis 7.0's RDB stream type (listpacks v2, with groups,
PELs and consumers) both ways — DUMP / RESTORE, and a snapshot that
redis-check-rdb accepts and redis-server loads — and the journal replaying
every stream write (XADD with `*`, trimming, XDEL, XSETID, groups,
XREADGROUP's PEL changes, XCLAIM, XAUTOCLAIM, XACK) after kill -9.

Streams are compared by XRANGE plus XINFO STREAM FULL with the seen times
masked (a replayed XCLAIM meets its consumer again at replay time), and
radix-tree-nodes (a detail of Redis's radix tree).
"""

import shutil

import pytest

from persist_util import check_rdb, client, kill9
from test_persistence import mkdir as _mkdir, servers  # noqa: F401  (the fixture)
from test_stream_differential import _mask_info


def _fill(c):
    """A stream with deletions, two shapes of record, two groups, pending
    entries over two consumers, an idle consumer; and an empty stream with
    a group."""
    for i in range(1, 350):
        fields = {"job": str(i), "state": "new"} if i % 9 else {"other": "y" * (i % 70)}
        c.xadd("jobs", fields, id=f"{i}-1")
    c.xdel("jobs", "5-1", "150-1")
    c.xgroup_create("jobs", "workers", id="0")
    c.execute_command("XGROUP", "CREATE", "jobs", "audit", "$", "ENTRIESREAD", "3")
    c.xreadgroup("workers", "alice", {"jobs": ">"}, count=20)
    c.xreadgroup("workers", "bob", {"jobs": ">"}, count=5)
    c.xack("jobs", "workers", "3-1", "7-1")
    c.execute_command("XGROUP", "CREATECONSUMER", "jobs", "workers", "idle")
    c.xgroup_create("empty", "g", id="$", mkstream=True)


def _state(c, keys=("jobs", "empty")):
    out = {}
    for k in keys:
        full = c.execute_command("XINFO", "STREAM", k, "FULL", "COUNT", "0")
        out[k] = (c.xrange(k), _strip(full))
    return out


MASKED = (b"seen-time", "seen-time", b"radix-tree-nodes", "radix-tree-nodes")


def _strip(v):
    """Seen times masked, in redis-py's parsed XINFO FULL shape."""
    if isinstance(v, dict):
        return {k: ("masked" if k in MASKED else _strip(x)) for k, x in v.items()}
    if isinstance(v, list):
        out = []
        for i, x in enumerate(v):
            if i > 0 and v[i - 1] in MASKED:
                out.append("masked")
            else:
                out.append(_strip(x))
        return out
    return v


def test_stream_dump_restore_both_ways(servers, tmp_path):
    d = servers.damselfly(_mkdir(tmp_path, "d"))
    r = servers.redis(_mkdir(tmp_path, "r"))
    dc, rc = client(d), client(r)
    _fill(rc)
    for k in ("jobs", "empty"):
        dc.restore(k, 0, rc.dump(k))
    assert _state(dc) == _state(rc)
    for k in ("jobs", "empty"):
        rc.restore(k + "2", 0, dc.dump(k))
        assert rc.xrange(k + "2") == rc.xrange(k)
        assert rc.xpending(k + "2", "workers" if k == "jobs" else "g") == rc.xpending(k, "workers" if k == "jobs" else "g")
        assert rc.xinfo_groups(k + "2") == rc.xinfo_groups(k)
    assert dc.type("jobs") == b"stream" and dc.object("encoding", "jobs") == b"stream"


def test_stream_snapshot_loads_in_redis_and_back(servers, tmp_path):
    d_dir, r_dir = _mkdir(tmp_path, "d"), _mkdir(tmp_path, "r")
    d = servers.damselfly(d_dir)
    _fill(client(d))
    expected = _state(client(d))
    assert client(d).save() is True
    shutil.copy(d_dir / "dump.rdb", r_dir / "dump.rdb")
    ok, out = check_rdb(r_dir / "dump.rdb")
    if ok is None:
        pytest.skip(out)
    assert ok, out
    r = servers.redis(r_dir, "--dbfilename", "dump.rdb")
    assert _state(client(r)) == expected
    # ... and Redis's own snapshot of it loads here.
    assert client(r).save() is True
    back_dir = _mkdir(tmp_path, "back")
    shutil.copy(r_dir / "dump.rdb", back_dir / "dump.rdb")
    b = servers.damselfly(back_dir)
    assert _state(client(b)) == expected


def test_stream_journal_replays_after_kill9(servers, tmp_path):
    d = _mkdir(tmp_path, "j")
    flags = ("--appendonly", "--appendfsync=always")
    a = servers.damselfly(d, *flags)
    c = client(a)
    _fill(c)
    for _ in range(30):
        c.xadd("auto", {"k": "v"})  # `*`: the journal must hold the IDs it made
    c.xadd("auto", {"k": "v"}, maxlen=20, approximate=False)
    c.xgroup_create("auto", "g", id="0")
    c.xreadgroup("g", "c1", {"auto": ">"}, count=6)
    c.xreadgroup("g", "c2", {"auto": ">"}, count=3, noack=True)
    c.xclaim("jobs", "workers", "carol", 0, ["10-1", "11-1"])
    c.xautoclaim("jobs", "workers", "dave", 0, "12-1", count=3)
    c.execute_command("XSETID", "empty", "1000-0", "ENTRIESADDED", "5")
    c.xtrim("jobs", minid="20-1")
    expected = _state(c, ("jobs", "empty", "auto"))
    kill9(a)
    b = servers.damselfly(d, *flags)
    assert _state(client(b), ("jobs", "empty", "auto")) == expected
