"""SORT / SORT_RO against a real redis-server 7.0.

Random lists, sets and sorted sets, and BY / GET patterns that name string
keys and hash fields spread over every shard of a 4-shard Damselfly: the same
commands go to both servers and every reply must match (RESP2 and RESP3).
Only what Redis leaves unspecified is compared as a multiset: a set read with
BY nosort and no STORE (its hash-table order), and ALPHA BY where two
elements sort by equal or missing values (qsort's order).
"""

import random
import threading
import time

import pytest

from difftools import fresh
from resp import RespConn

SEED = 9151
ROUNDS = 12
CMDS_PER_ROUND = 120


@pytest.fixture(scope="module")
def pair(damselfly_module, redis_server):
    d = damselfly_module("--proactor_threads=4")
    return d, redis_server



def _dataset(rng):
    """Commands that build one random keyspace."""
    nums = [str(x) for x in rng.sample(range(-50, 200), 14)] + ["3.5", "-0.25", "1e2", "007"]
    words = ["apple", "Banana", "cherry", "date", "", "fig", "grape", "Zeta", "10", "9", "a b"]
    cmds = []
    for name, pool in (("nums", nums), ("words", words)):
        elems = rng.sample(pool, rng.randint(0, len(pool)))
        if elems:
            cmds.append(["RPUSH", f"l:{name}"] + elems)
            cmds.append(["SADD", f"s:{name}"] + elems)
            zargs = []
            for e in elems:
                zargs += [str(rng.choice([0, 1, 2, rng.randint(-5, 5)])), e]
            cmds.append(["ZADD", f"z:{name}"] + zargs)
    every = sorted(set(nums + words))
    weights = rng.sample(range(1000), len(every))  # distinct: ALPHA BY is then fully ordered
    for e, w in zip(every, weights):
        if rng.random() < 0.85:
            cmds.append(["SET", f"w_{e}", str(w)])
        cmds.append(["SET", f"a_{e}", f"v{w:04d}"])
        cmds.append(["HSET", f"h_{e}", "f", str(rng.randint(-9, 9)), "g", f"g{w}"])
        if rng.random() < 0.5:
            cmds.append(["SET", f"o_{e}", f"obj-{e}"])
    cmds.append(["SET", "bad_3.5", "notanumber"])
    cmds.append(["SET", "str", "x"])
    cmds.append(["HSET", "hashkey", "a", "1"])
    return cmds


SOURCES = ["l:nums", "s:nums", "z:nums", "l:words", "s:words", "z:words", "missing", "str", "hashkey"]
BY = [None, None, "w_*", "w_*", "h_*->f", "a_*", "h_*->g", "nosort", "bad_*", "w_*->f", "h_*->", "x_*"]
GETS = ["#", "o_*", "w_*", "h_*->g", "h_*->missing", "nostar", "a_*"]


def _sort_command(rng, store_key=None, ro=False):
    src = rng.choice(SOURCES)
    args = ["SORT_RO" if ro else "SORT", src]
    by = rng.choice(BY)
    alpha = rng.random() < 0.4 or src.endswith("words") or by in ("a_*", "h_*->g")
    if by:
        args += ["BY", by]
    for _ in range(rng.choice([0, 0, 1, 2, 3])):
        args += ["GET", rng.choice(GETS)]
    if rng.random() < 0.4:
        args += ["LIMIT", str(rng.randint(-2, 8)), str(rng.randint(-2, 8))]
    if rng.random() < 0.5:
        args.append(rng.choice(["ASC", "DESC"]))
    if alpha and rng.random() < 0.9:
        args.append("ALPHA")
    if store_key:
        args += ["STORE", store_key]
    return args, src, by


def _unordered(args, src, by):
    upper = [a.upper() if isinstance(a, str) else a for a in args]
    if src.startswith("s:") and by == "nosort" and "STORE" not in upper:
        return True
    if "ALPHA" in upper and by not in (None, "nosort", "w_*", "a_*"):
        return True  # equal or missing BY values: qsort's order is unspecified
    if "ALPHA" in upper and by == "w_*":
        return True  # some w_ keys are missing on purpose
    return False


def _shape(reply):
    t, v = reply
    if t in "*~" and v is not None:
        return (t, [("len", 0)] * len(v))
    return reply


def _norm(reply):
    t, v = reply
    if t in "*~" and v is not None:
        return (t, sorted((x[0], x[1] if x[1] is not None else b"\x00nil") for x in v))
    return reply


@pytest.mark.parametrize("proto", [2, 3])
def test_sort_differential(pair, proto):
    d, r = pair
    rng = random.Random(SEED + proto)
    compared = 0
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        for _round in range(ROUNDS):
            fresh(dc, proto)
            fresh(rc, proto)
            for cmd in _dataset(rng):
                assert dc.call(*cmd) == rc.call(*cmd), cmd
            for _ in range(CMDS_PER_ROUND):
                kind = rng.random()
                store = None
                if kind < 0.3:
                    store = rng.choice(["dst", "dst2", "l:nums", "str", "{x}dst"])
                args, src, by = _sort_command(rng, store_key=store, ro=(store is None and kind > 0.85))
                a, b = dc.call(*args), rc.call(*args)
                if _unordered(args, src, by):
                    if "LIMIT" in args:
                        # which elements fall in the window is unspecified too
                        a, b = _shape(a), _shape(b)
                    a, b = _norm(a), _norm(b)
                    if store:
                        dst_a, dst_b = dc.call("LRANGE", store, "0", "-1"), rc.call("LRANGE", store, "0", "-1")
                        if "LIMIT" in args:
                            dst_a, dst_b = _shape(dst_a), _shape(dst_b)
                        dst_a, dst_b = _norm(dst_a), _norm(dst_b)
                        assert dst_a == dst_b, (args, dst_a, dst_b)
                        # its order may differ: start the destination afresh on both
                        assert dc.call("DEL", store) == rc.call("DEL", store)
                assert a == b, (args, a, b)
                if store and not _unordered(args, src, by):
                    for probe in (["TYPE", store], ["LRANGE", store, "0", "-1"], ["TTL", store]):
                        assert dc.call(*probe) == rc.call(*probe), (args, probe)
                compared += 1
    print(f"\nsort differential[resp{proto}]: {compared} SORTs (seed {SEED + proto})")


FIXED = [
    ["RPUSH", "l", "3", "1", "2"],
    ["SORT", "l"], ["SORT", "l", "DESC"], ["SORT", "l", "LIMIT", "1", "1"],
    ["SORT", "l", "LIMIT", "x", "1"], ["SORT", "l", "LIMIT", "1"], ["SORT", "l", "BOGUS"],
    ["SORT", "l", "STORE"], ["SORT_RO", "l", "STORE", "d"], ["SORT", "l", "GET"],
    ["SORT", "l", "BY"], ["SORT", "l", "BY", "nosort", "DESC", "LIMIT", "0", "2"],
    ["SORT", "l", "LIMIT", "0", "9223372036854775807"], ["SORT", "l", "LIMIT", "-9223372036854775808", "2"],
    ["SORT", "l", "LIMIT", "9223372036854775807", "9223372036854775807"],
    ["RPUSH", "bad", "1", "x"], ["SORT", "bad"], ["SORT", "bad", "STORE", "d"], ["EXISTS", "d"],
    ["RPUSH", "sp", " 1", "", "2 ", "0x10", "inf", "-inf"], ["SORT", "sp"],
    ["RPUSH", "nan", "nan"], ["SORT", "nan"], ["RPUSH", "big", "1e400"], ["SORT", "big"],
    ["SET", "d", "old"], ["EXPIRE", "d", "100"], ["SORT", "l", "STORE", "d"], ["TTL", "d"], ["TYPE", "d"],
    ["SORT", "nosuchkey", "STORE", "d"], ["EXISTS", "d"],
    ["SET", "s", "x"], ["SORT", "s"], ["SORT", "s", "BOGUS"], ["SORT_RO", "s"],
    ["SADD", "set", "c", "a", "b"], ["SORT", "set", "BY", "nosort", "STORE", "d2"], ["LRANGE", "d2", "0", "-1"],
    ["EVAL", "return redis.call('sort', KEYS[1], 'by', 'nosort')", "1", "set"],
    ["EVAL", "return redis.call('sort', KEYS[1], 'by', 'w_*', 'get', '#', 'get', 'w_*')", "1", "l"],
    ["EVAL_RO", "return redis.call('sort', KEYS[1])", "1", "l"],
    ["EVAL_RO", "return redis.call('sort_ro', KEYS[1], 'get', 'h_*->f')", "1", "l"],
    ["ZADD", "z", "1", "b", "1", "a", "2", "c", "0", "d"],
    ["SORT", "z", "BY", "nosort"], ["SORT", "z", "BY", "nosort", "DESC"],
    ["SORT", "z", "BY", "nosort", "LIMIT", "1", "2"], ["SORT", "z", "BY", "nosort", "DESC", "LIMIT", "1", "2"],
    ["SORT", "z", "BY", "nosort", "DESC", "LIMIT", "3", "10"], ["SORT", "z", "ALPHA", "DESC"],
    ["SORT", "z", "BY", "nosort", "LIMIT", "5", "1"], ["SORT", "z", "BY", "nosort", "LIMIT", "2", "0"],
]


@pytest.mark.parametrize("proto", [2, 3])
def test_sort_fixed_cases(pair, proto):
    d, r = pair
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        fresh(dc, proto)
        fresh(rc, proto)
        for cmd in FIXED:
            assert dc.call(*cmd) == rc.call(*cmd), cmd


def test_sort_store_wakes_blocked_client_and_touches_watch(pair):
    """SORT ... STORE (with patterns, so every shard is lent) serves a client
    blocked on the destination and aborts a transaction WATCHing it."""
    d, _ = pair
    with RespConn(d.port) as c, RespConn(d.port) as blocked, RespConn(d.port) as watcher:
        fresh(c, 2)
        c.call("RPUSH", "src", "2", "1")
        c.call("SET", "w_1", "10")
        c.call("SET", "w_2", "5")
        blocked.send_raw(b"*3\r\n$5\r\nBLPOP\r\n$4\r\ndest\r\n$1\r\n5\r\n")
        deadline = time.time() + 5
        while "blocked_clients:1" not in c.call("INFO", "clients")[1].decode():
            assert time.time() < deadline
            time.sleep(0.01)
        watcher.call("WATCH", "dest")
        assert c.call("SORT", "src", "BY", "w_*", "STORE", "dest") == (":", 2)
        assert blocked.read_reply() == ("*", [("$", b"dest"), ("$", b"2")])
        assert c.call("LRANGE", "dest", "0", "-1") == ("*", [("$", b"1")])
        watcher.call("MULTI")
        watcher.call("PING")
        assert watcher.call("EXEC") == ("*", None)


def test_sort_with_patterns_is_atomic(pair):
    """Writers move a weight between two keys on different shards (MSET,
    atomic); SORT BY/GET over them never sees a half-done move."""
    d, _ = pair
    with RespConn(d.port) as c:
        fresh(c, 2)
        c.call("RPUSH", "items", "a", "b")
        c.call("MSET", "w_a", "1", "w_b", "2")
    stop = threading.Event()

    def writer():
        with RespConn(d.port) as w:
            i = 0
            while not stop.is_set():
                i += 1
                w.call("MSET", "w_a", str(i), "w_b", str(-i))

    t = threading.Thread(target=writer)
    t.start()
    try:
        with RespConn(d.port) as c:
            end = time.time() + 2
            while time.time() < end:
                t_, rows = c.call("SORT", "items", "BY", "nosort", "GET", "w_*")
                a, b = int(rows[0][1]), int(rows[1][1])
                assert a == -b or (a, b) == (1, 2), rows
    finally:
        stop.set()
        t.join()
