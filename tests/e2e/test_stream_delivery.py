"""Stream delivery through a consumer group: every entry exactly once.

P producers XADD unique jobs to S streams (on different shards) while C
consumers of one group loop on ``XREADGROUP ... COUNT 10 BLOCK t STREAMS
s0..sN > ...`` and XACK what they got, so consumers are both served at once
and parked and woken. One consumer "crashes": half-way to its 300th entry it stops acking, then
closes its connection with about 150 entries still pending. After the producers are
done and the others drained the streams, a rescuer walks each stream's PEL
with XAUTOCLAIM (min-idle 0) and acks what it is handed.

At the end every produced entry was acknowledged exactly once, the crashed
consumer's unacknowledged entries are exactly those XAUTOCLAIM handed over,
and every PEL is empty. Run with 1 and 4 shards, single-hop blocking on and
off; each case takes a few seconds.
"""

import collections
import threading
import time

import pytest

from conftest import SELFTEST_REDIS
from resp import RespConn, encode
from util import keys_on_shards

STREAMS = 4
PRODUCERS = 4
PER_PRODUCER = 1500
CONSUMERS = 6
DEADLINE_S = 40.0


def _flags(threads, singlehop):
    flags = [f"--proactor_threads={threads}"]
    if not SELFTEST_REDIS:
        flags.append("--singlehop_blocking" if singlehop else "--nosinglehop_blocking")
    return flags


def _entries(reply):
    """[(stream, id)] from an XREADGROUP reply (RESP2), [] on a timeout."""
    t, v = reply
    assert t == "*", reply
    out = []
    for item in v or []:
        stream, entries = item[1]
        for e in entries[1]:
            out.append((stream[1].decode(), e[1][0][1].decode()))
    return out


@pytest.mark.parametrize("threads,singlehop", [(1, True), (4, True), (4, False)],
                         ids=["1shard", "4shards-singlehop", "4shards-transactions"])
def test_stream_group_delivers_exactly_once(damselfly, threads, singlehop):
    srv = damselfly(*_flags(threads, singlehop))
    names = [k for s in range(STREAMS) for k in keys_on_shards(STREAMS, 1, "jobs")[s]]
    with RespConn(srv.port) as admin:
        for s in names:
            assert admin.call("XGROUP", "CREATE", s, "workers", "$", "MKSTREAM") == ("+", b"OK")

    lock = threading.Lock()
    produced = {}                           # (stream, id) -> producer
    acked = collections.Counter()           # (stream, id) -> times acked
    crashed_unacked = set()
    done = threading.Event()
    errors = []

    def producer(p):
        try:
            with RespConn(srv.port) as c:
                for i in range(PER_PRODUCER):
                    s = names[(p + i) % STREAMS]
                    rep = c.call("XADD", s, "*", "producer", str(p), "job", str(i))
                    assert rep[0] == "$", rep
                    with lock:
                        produced[(s, rep[1].decode())] = p
                    if i % 200 == 0:
                        time.sleep(0.01)  # let consumers park now and then
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    def consumer(n, crash_after=None):
        try:
            c = RespConn(srv.port)
            got = 0
            while not done.is_set():
                rep = c.call("XREADGROUP", "GROUP", "workers", f"c{n}", "COUNT", "10", "BLOCK", "200",
                             "STREAMS", *names, *([">"] * STREAMS))
                items = _entries(rep)
                got += len(items)
                if crash_after is not None and got > crash_after // 2:
                    # It stops acking half-way, then dies with its entries pending.
                    with lock:
                        crashed_unacked.update(items)
                    if got >= crash_after:
                        c.close()
                        return
                    continue
                by_stream = collections.defaultdict(list)
                for s, i in items:
                    by_stream[s].append(i)
                for s, ids in by_stream.items():
                    assert c.call("XACK", s, "workers", *ids) == (":", len(ids))
                with lock:
                    acked.update(items)
            c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads_ = [threading.Thread(target=producer, args=(p,)) for p in range(PRODUCERS)]
    threads_ += [threading.Thread(target=consumer, args=(n, 300 if n == 0 else None)) for n in range(CONSUMERS)]
    for t in threads_:
        t.start()
    total = PRODUCERS * PER_PRODUCER
    start = time.time()
    while time.time() - start < DEADLINE_S:
        with lock:
            if len(produced) == total and len(acked) + len(crashed_unacked) >= total:
                break
        time.sleep(0.05)
    done.set()
    for t in threads_:
        t.join(10)
    assert not errors, errors
    assert len(produced) == total
    assert crashed_unacked, "the crashing consumer never got anything"

    # The rescuer: XAUTOCLAIM walks each PEL and hands the orphans over.
    claimed = set()
    with RespConn(srv.port) as c:
        for s in names:
            cursor = "0-0"
            while True:
                t, (nxt, entries, deleted) = c.call("XAUTOCLAIM", s, "workers", "rescuer", "0", cursor, "COUNT", "25")
                assert deleted[1] == []
                ids = [e[1][0][1].decode() for e in entries[1]]
                if ids:
                    assert c.call("XACK", s, "workers", *ids) == (":", len(ids))
                claimed.update((s, i) for i in ids)
                cursor = nxt[1].decode()
                if cursor == "0-0":
                    break
            summary = c.call("XPENDING", s, "workers")
            assert summary[1][0] == (":", 0), summary

    assert claimed == crashed_unacked
    acked.update(claimed)
    assert set(acked) == set(produced), "lost entries: %d" % len(set(produced) - set(acked))
    twice = [k for k, n in acked.items() if n != 1]
    assert not twice, twice[:5]
    print(f"\nstream delivery[{threads} threads, singlehop={singlehop}]: {total} entries, "
          f"{len(claimed)} reclaimed by XAUTOCLAIM, {time.time() - start:.1f}s")


def _blocking_scenario(port, proto):
    """Parks readers on raw connections (send now, read later) and returns
    every reply, for comparison with redis-server."""
    out = []
    conns = [RespConn(port) for _ in range(4)]
    try:
        for c in conns:
            c.call("HELLO", str(proto))
        a, b, c2, admin = conns
        admin.call("FLUSHALL")
        admin.call("XADD", "s", "10-1", "f", "v")
        out.append(admin.call("XREAD", "BLOCK", "100", "STREAMS", "s", "$"))       # times out
        # Two readers wanting different things: the later one is served first.
        a.send_raw(encode("XREAD", "BLOCK", "5000", "STREAMS", "s", "100-0"))
        b.send_raw(encode("XREAD", "BLOCK", "5000", "STREAMS", "s", "$"))
        time.sleep(0.2)
        out.append(admin.call("XADD", "s", "50-1", "f", "early"))
        out.append(b.read_reply())
        out.append(admin.call("XADD", "s", "101-1", "f", "late"))
        out.append(a.read_reply())
        # Group readers: one entry each, first come first served.
        admin.call("XGROUP", "CREATE", "s", "g", "$")
        a.send_raw(encode("XREADGROUP", "GROUP", "g", "ca", "COUNT", "1", "BLOCK", "5000", "STREAMS", "s", ">"))
        time.sleep(0.1)
        b.send_raw(encode("XREADGROUP", "GROUP", "g", "cb", "COUNT", "1", "BLOCK", "5000", "STREAMS", "s", ">"))
        time.sleep(0.2)
        out.append(admin.call("XADD", "s", "200-1", "job", "1"))
        out.append(a.read_reply())
        out.append(admin.call("XADD", "s", "201-1", "job", "2"))
        out.append(b.read_reply())
        out.append(admin.call("XPENDING", "s", "g"))
        # A parked group reader learns its group or stream went away.
        c2.send_raw(encode("XREADGROUP", "GROUP", "g", "cc", "BLOCK", "0", "STREAMS", "s", ">"))
        time.sleep(0.2)
        out.append(admin.call("XGROUP", "DESTROY", "s", "g"))
        out.append(c2.read_reply())
        admin.call("XGROUP", "CREATE", "s", "g2", "$")
        c2.send_raw(encode("XREADGROUP", "GROUP", "g2", "cc", "BLOCK", "0", "STREAMS", "s", ">"))
        time.sleep(0.2)
        out.append(admin.call("DEL", "s"))
        out.append(c2.read_reply())
        # Inside MULTI nothing blocks.
        admin.call("MULTI")
        admin.call("XREAD", "BLOCK", "0", "STREAMS", "s", "$")
        out.append(admin.call("EXEC"))
    finally:
        for c in conns:
            c.close()
    return out


@pytest.mark.parametrize("proto", [2, 3], ids=["resp2", "resp3"])
def test_stream_blocking_reads_match_redis(damselfly, redis_server, proto):
    srv = damselfly("--proactor_threads=4")
    dfly = _blocking_scenario(srv.port, proto)
    redis = _blocking_scenario(redis_server.port, proto)
    assert dfly == redis


def test_stream_consumers_move_to_their_streams_thread(damselfly):
    """XREADGROUP / XREAD name their keys after STREAMS: a consumer whose streams
    live on one shard of another thread moves there and then reads inline; one
    reading streams on two shards stays where it is."""
    if SELFTEST_REDIS:
        pytest.skip("connection migration is Damselfly's")
    threads = 2
    srv = damselfly(f"--proactor_threads={threads}", f"--num_shards={threads}")
    by_shard = keys_on_shards(threads, 1, "jobs")
    home, other = by_shard[0][0], by_shard[1][0]
    admin = srv.client()
    for s in (home, other):
        admin.xgroup_create(s, "g", "0", mkstream=True)
        for i in range(40):
            admin.xadd(s, {"n": str(i)})
    before = int(admin.info("stats")["connection_migrations"])
    # One consumer per thread (connections are spread over the threads), so one
    # starts away from `home`'s owner.
    consumers = [srv.client() for _ in range(threads)]
    for c in consumers:
        c.ping()
    got = []
    for k, c in enumerate(consumers):
        for _ in range(5):
            reply = c.execute_command("XREADGROUP", "GROUP", "g", f"c{k}", "COUNT", "2", "BLOCK", "100",
                                      "STREAMS", home, ">")
            got += [e[0] for e in reply[0][1]]
    moved = int(admin.info("stats")["connection_migrations"])
    assert moved - before >= 1, "a consumer on another thread should have moved to its stream's"
    assert len(got) == len(set(got)) == 2 * 5 * threads
    tx = admin.info("transaction")["tx_type_cnt"]
    start_inline = int(tx["inline"]) if isinstance(tx, dict) else int(dict(p.split("=") for p in tx.split(","))["inline"])
    for c in consumers:  # every consumer now reads inline
        assert c.execute_command("XREAD", "COUNT", "1", "STREAMS", home, "0")
    tx = admin.info("transaction")["tx_type_cnt"]
    end_inline = int(tx["inline"]) if isinstance(tx, dict) else int(dict(p.split("=") for p in tx.split(","))["inline"])
    assert end_inline - start_inline >= threads
    # Streams on two shards: nobody moves.
    for c in consumers:
        c.execute_command("XREAD", "COUNT", "1", "BLOCK", "10", "STREAMS", home, other, "0", "0")
    assert int(admin.info("stats")["connection_migrations"]) == moved
