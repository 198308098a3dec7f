"""Differences from Redis 7.0 that its stream and stream-cgroups units found
(scripts/redis-suite.sh), pinned here against redis-server so the quick e2e
run catches them: every reply is compared with the real server's."""

import threading
import time

import pytest
import redis

from util import key_on_shard


def _reply(c, *args):
    try:
        return c.execute_command(*args)
    except redis.ResponseError as e:
        return "ERR " + str(e)


def _node_limits_workload(c):
    """stream-node-max-entries / -bytes decide where nodes end, so which
    entries `~` trimming (and its LIMIT) may drop, and XINFO's key count."""
    out = []
    c.delete("s")
    for entries, nbytes in [("10", "4096"), ("2", "4096"), ("0", "4096"), ("100", "64"), ("0", "0")]:
        out.append(_reply(c, "CONFIG", "SET", "stream-node-max-entries", entries))
        out.append(_reply(c, "CONFIG", "SET", "stream-node-max-bytes", nbytes))
        out.append(_reply(c, "CONFIG", "GET", "stream-node-max-*"))
        c.delete("s")
        for i in range(1, 101):
            c.execute_command("XADD", "s", f"{i}-1", "xitem", "v" * (i % 7))
        info = c.execute_command("XINFO", "STREAM", "s")
        out.append((info[b"length"], info[b"radix-tree-keys"]))
        out.append(_reply(c, "XADD", "s", "MAXLEN", "~", "55", "LIMIT", "30", "101-1", "xitem", "v"))
        out.append(c.xlen("s"))
        out.append(_reply(c, "XADD", "s", "MAXLEN", "~", "55", "LIMIT", "30", "102-1", "xitem", "v"))
        out.append(c.xlen("s"))
        out.append(_reply(c, "XTRIM", "s", "MAXLEN", "~", "0", "LIMIT", "1"))
        out.append(_reply(c, "XTRIM", "s", "MAXLEN", "~", "0", "LIMIT", "25"))
        out.append(_reply(c, "XTRIM", "s", "MINID", "~", "90"))  # the default LIMIT: 100 nodes' worth
        out.append(_reply(c, "XRANGE", "s", "-", "+", "COUNT", "3"))
        out.append(c.xlen("s"))
    out.append(_reply(c, "CONFIG", "SET", "stream-node-max-entries", "-1"))
    out.append(_reply(c, "CONFIG", "SET", "stream-node-max-bytes", "1kb"))
    out.append(_reply(c, "CONFIG", "GET", "stream-node-max-bytes"))
    c.config_set("stream-node-max-entries", 100)
    c.config_set("stream-node-max-bytes", 4096)
    return out


def test_stream_node_limits_follow_config_set(damselfly, redis_server):
    # "XADD with LIMIT consecutive calls", "XTRIM with LIMIT delete entries no more than
    # limit": CONFIG SET stream-node-max-entries was stored but nodes kept 100 entries.
    ours = _node_limits_workload(damselfly().client())
    theirs = _node_limits_workload(redis_server.client())
    assert ours == theirs


def _wait_blocked(c, n):
    deadline = time.monotonic() + 5
    while c.info("clients")["blocked_clients"] != n:
        assert time.monotonic() < deadline, "clients never blocked"
        time.sleep(0.01)


def _flush_while_blocked(server, key, flush):
    """A group reader and a plain reader block on `key`; `flush` runs. The group
    reader is told its stream is gone; the plain reader stays parked until an XADD."""
    c = server.client()
    c.flushall()
    c.xadd(key, {"f": "v"}, id="1-1")
    c.xgroup_create(key, "g", "$")
    replies = {}

    def read(name, *args):
        try:
            replies[name] = server.client().execute_command(*args)
        except redis.ResponseError as e:
            replies[name] = "ERR " + str(e)

    group = threading.Thread(target=read, args=("group", "XREADGROUP", "GROUP", "g", "alice", "BLOCK", "0",
                                                "STREAMS", key, ">"))
    group.start()
    _wait_blocked(c, 1)
    plain = threading.Thread(target=read, args=("plain", "XREAD", "BLOCK", "0", "STREAMS", key, "$"))
    plain.start()
    _wait_blocked(c, 2)
    c.execute_command(*flush)
    group.join(5)
    assert not group.is_alive(), "the group reader stayed blocked after " + " ".join(flush)
    _wait_blocked(c, 1)
    c.xadd(key, {"after": "flush"}, id="5-1")
    plain.join(5)
    assert not plain.is_alive()
    return replies


@pytest.mark.parametrize("flush", [("FLUSHALL",), ("FLUSHDB",), ("FLUSHALL", "ASYNC")])
@pytest.mark.parametrize("threads", [1, 3])
def test_flush_unblocks_group_readers(damselfly, redis_server, flush, threads):
    # "Blocking XREADGROUP: flushed DB" waited out the unit's test timeout: a flush
    # removed the stream without looking at the clients parked on it.
    d = damselfly(f"--proactor_threads={threads}")
    key = key_on_shard(threads - 1, threads, "s")  # on another thread than shard 0 when threads > 1
    ours = _flush_while_blocked(d, key, flush)
    theirs = _flush_while_blocked(redis_server, key, flush)
    assert ours == theirs
    assert ours["group"] == "ERR UNBLOCKED the stream key no longer exists"


def _flush_other_database(server):
    c = server.client()
    c.flushall()
    c.xgroup_create("s", "g", "$", mkstream=True)
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("r", server.client().execute_command(
        "XREADGROUP", "GROUP", "g", "alice", "BLOCK", "0", "STREAMS", "s", ">")))
    t.start()
    _wait_blocked(c, 1)
    other = server.client(db=3)
    other.set("x", "1")
    other.flushdb()
    time.sleep(0.1)
    parked = t.is_alive()
    c.xadd("s", {"f": "v"}, id="7-1")
    t.join(5)
    return parked, got.get("r")


def test_flushdb_of_another_database_leaves_group_reader_parked(damselfly, redis_server):
    ours = _flush_other_database(damselfly("--proactor_threads=2"))
    assert ours == _flush_other_database(redis_server)
    assert ours[0] and ours[1]


# DUMP of a stream made by Redis 5 (RDB type 15, the unit's "Loading from legacy" payload):
# XADD x 1-0 .. 6-0 data a..f, XDEL x 3-0, XGROUP CREATE x g1 0, XGROUP CREATE x g2 0,
# XREADGROUP GROUP g1 c11 COUNT 4 STREAMS x >, XTRIM x MAXLEN = 2.
LEGACY_STREAM_DUMP = bytes.fromhex(
    "0F011000000000000000010000000000000000C3404A4057165700000023000201040101018464617461050001030100"
    "20010381610204200A0001400A0062600A0002400A0063600A4022018164200A4039200A0065600A0005400A0066200A"
    "00FF02060002026731050004000000000000000100000000000000003EF783437A010000010000000000000002000000"
    "00000000003EF783437A01000001000000000000000400000000000000003EF783437A01000001000000000000000500"
    "000000000000003EF783437A0100000101036331313EF783437A01000004000000000000000100000000000000000000"
    "000000000002000000000000000000000000000000040000000000000000000000000000000500000000000000000267"
    "320000000009003D52EF6867521DFA")


def _legacy_restore(c):
    c.delete("x")
    c.restore("x", 0, LEGACY_STREAM_DUMP)
    info = c.execute_command("XINFO", "STREAM", "x", "FULL")
    groups = info[b"groups"]
    return ([info[k] for k in (b"length", b"max-deleted-entry-id", b"entries-added", b"recorded-first-entry-id")],
            [(g[b"name"], g[b"entries-read"], g[b"lag"]) for g in groups],
            c.execute_command("XINFO", "GROUPS", "x"))


def test_legacy_stream_restore_estimates_group_counters(damselfly, redis_server):
    # "Loading from legacy (Redis <= v6.2.x, rdb_ver < 10) persistence": an RDB type 15
    # stream has no entries-read per group; Redis estimates it from the stream on load
    # (g1 read up to the first entry: 1, g2 before it: 0), we left it unknown.
    ours = _legacy_restore(damselfly().client())
    assert ours == _legacy_restore(redis_server.client())
    assert ours[1] == [(b"g1", 1, 1), (b"g2", 0, 2)]
