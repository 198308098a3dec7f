"""Timed-out, cancelled and disconnected blocking pops leave nothing behind (issue 20, item 1).

Every BLPOP that timed out used to keep its whole parked state alive (a
reference cycle between the park state, the blocked client and the waiter's
closures): about 1 KB per call, for ever, FLUSHALL or not.  Here thousands of
timed-out BLPOP / BZPOPMIN / multi-key BLPOP (keys on both shards, two
threads) are sent after a warm-up, and the server's resident set
(/proc/<pid>/status VmRSS) may grow by less than a bound; the same load is run
against redis-server for the record.  A second case does it with one timed-out
pop per connection, a third with CLIENT UNBLOCK and with disconnects of
parked clients.
"""

import socket
import time

import pytest

from conftest import Factory
from resp import RespConn, encode, to_py
from util import keys_on_shards, rss_kb

THREADS = 2
CALLS = 3000
# Allocator noise and the first growth of per-loop tables fit in this; the leak
# was 1-6 KB per call (18 MB for 5,000 mixed calls).
BOUND_KB = 1024
# redis-server gets a fifth of each load: its 0.001 s timeouts cost ~2 ms each even at hz 500.
REDIS_SHARE = 5


def timed_out_pops(port, n):
    """n timed-out pops on one connection: BLPOP, BZPOPMIN, multi-key BLPOP over both shards."""
    by = keys_on_shards(THREADS, 2, "bm")
    multi = [by[0][0], by[1][0], by[0][1], by[1][1]]
    shapes = [
        ("BLPOP", by[0][0], "0.001"),
        ("BLPOP", by[1][0], "0.001"),
        ("BZPOPMIN", by[1][1], "0.001"),
        ("BLPOP", *multi, "0.001"),
        ("BRPOP", *multi, "0.001"),
        ("BZPOPMAX", by[0][1], by[1][1], "0.001"),
    ]
    with RespConn(port) as c:
        batch = 100
        for start in range(0, n, batch):
            cmds = [shapes[(start + i) % len(shapes)] for i in range(min(batch, n - start))]
            for r in c.pipeline(cmds):
                assert r in (("*", None), ("_", None)), r


def one_pop_per_connection(port, n):
    socks = []
    try:
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(encode("BLPOP", f"bmc:{i % 7}", "0.001"))
            socks.append(s)
            if len(socks) >= 200:
                for s in socks:
                    s.settimeout(5)
                    assert s.recv(16).startswith(b"*-1")
                    s.close()
                socks = []
    finally:
        for s in socks:
            s.close()


def cancelled_and_disconnected(port, n):
    """n parked pops, half ended by CLIENT UNBLOCK, half by closing the socket."""
    by = keys_on_shards(THREADS, 1, "bmx")
    with RespConn(port) as admin:
        for start in range(0, n, 100):
            conns = []
            for _ in range(100):
                c = RespConn(port)
                cid = to_py(c.call("CLIENT", "ID"))
                c.send_raw(encode("BRPOP", by[0][0], by[1][0], "0"))
                conns.append((c, cid))
            deadline = time.monotonic() + 5
            while int(_info(admin)["blocked_clients"]) < len(conns):
                assert time.monotonic() < deadline, "clients did not park"
                time.sleep(0.002)
            for i, (c, cid) in enumerate(conns):
                if i % 2:
                    assert to_py(admin.call("CLIENT", "UNBLOCK", cid)) == 1
                    assert c.read_reply() in (("*", None), ("_", None))
                c.close()
            deadline = time.monotonic() + 5
            while int(_info(admin)["blocked_clients"]) > 0:
                assert time.monotonic() < deadline, "disconnected clients stayed parked"
                time.sleep(0.002)


def _info(conn):
    text = to_py(conn.call("INFO", "CLIENTS")).decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def growth_kb(srv, load, n):
    pid = srv.proc.pid
    load(srv.port, n)  # warm-up: per-loop tables, allocator arenas, ...
    time.sleep(0.2)
    before = rss_kb(pid)
    load(srv.port, n)
    time.sleep(0.2)
    after = rss_kb(pid)
    return before, after, after - before


@pytest.fixture(scope="module")
def dfly(damselfly_module):
    return damselfly_module(f"--proactor_threads={THREADS}")


@pytest.fixture(scope="module")
def fast_redis(tmp_path_factory):
    """redis-server for the record; hz 500, or its 0.001 s timeouts take up to 100 ms each."""
    f = Factory(str(tmp_path_factory.mktemp("redis")))
    srv = f.start_redis("--hz", "500")
    yield srv
    f.close()


@pytest.mark.parametrize("load,n", [
    (timed_out_pops, CALLS),
    (one_pop_per_connection, 1500),
    (cancelled_and_disconnected, 1000),
], ids=["timeouts", "per-connection", "unblock-and-close"])
def test_parked_pops_leave_nothing_behind(dfly, fast_redis, load, n):
    before, after, grown = growth_kb(dfly, load, n)
    r_before, r_after, r_grown = growth_kb(fast_redis, load, n // REDIS_SHARE)
    print(f"\n{load.__name__} x{n}: damselfly RSS {before} -> {after} kB ({grown:+d} kB); "
          f"redis-server x{n // REDIS_SHARE}: {r_before} -> {r_after} kB ({r_grown:+d} kB)")
    assert grown < BOUND_KB, f"RSS grew by {grown} kB over {n} calls after warm-up (redis-server: {r_grown} kB)"
    with RespConn(dfly.port) as c:
        assert int(_info(c)["blocked_clients"]) == 0
