"""LCS, ZINTERCARD and SWAPDB against a real redis-server 7.0 (4-shard
Damselfly, keys on different shards): random inputs with fixed seeds, every
reply compared raw in RESP2 and RESP3, plus SWAPDB's WATCH and blocking rules."""

import random
import time

import pytest

from difftools import fresh
from resp import RespConn


@pytest.fixture(scope="module")
def pair(damselfly_module, redis_server):
    d = damselfly_module("--proactor_threads=4")
    return d, redis_server



def _same(dc, rc, cmd):
    a, b = dc.call(*cmd), rc.call(*cmd)
    assert a == b, (cmd, a, b)
    return a


@pytest.mark.parametrize("proto", [2, 3])
def test_lcs_differential(pair, proto):
    d, r = pair
    rng = random.Random(4401 + proto)
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        fresh(dc, proto)
        fresh(rc, proto)
        for cmd in (["SET", "k1", "ohmytext"], ["SET", "k2", "mynewtext"], ["RPUSH", "list", "x"],
                    ["SET", "n", "12345"], ["SET", "e", ""]):
            _same(dc, rc, cmd)
        fixed = [
            ["LCS", "k1", "k2"], ["LCS", "k1", "k2", "LEN"], ["LCS", "k1", "k2", "IDX"],
            ["LCS", "k1", "k2", "IDX", "WITHMATCHLEN"], ["LCS", "k1", "k2", "IDX", "MINMATCHLEN", "4"],
            ["LCS", "k1", "k2", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN"], ["LCS", "k1", "k2", "LEN", "IDX"],
            ["LCS", "k1", "k2", "MINMATCHLEN"], ["LCS", "k1", "k2", "MINMATCHLEN", "x"], ["LCS", "k1", "k2", "BOGUS"],
            ["LCS", "k1", "list"], ["LCS", "list", "k1", "BOGUS"], ["LCS", "k1", "missing"], ["LCS", "missing", "e", "IDX"],
            ["LCS", "n", "k1"], ["LCS", "n", "n", "IDX", "WITHMATCHLEN"], ["LCS", "k1", "k2", "IDX", "MINMATCHLEN", "-3"],
        ]
        for cmd in fixed:
            _same(dc, rc, cmd)
        alphabet = "abcab"
        for i in range(150):
            a = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
            b = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
            ka, kb = f"a:{i % 7}", f"b:{i % 5}"
            _same(dc, rc, ["SET", ka, a])
            _same(dc, rc, ["SET", kb, b])
            opts = rng.choice([[], ["LEN"], ["IDX"], ["IDX", "WITHMATCHLEN"],
                               ["IDX", "MINMATCHLEN", str(rng.randint(0, 4))],
                               ["IDX", "MINMATCHLEN", str(rng.randint(0, 4)), "WITHMATCHLEN"]])
            _same(dc, rc, ["LCS", ka, kb] + opts)


@pytest.mark.parametrize("proto", [2, 3])
def test_zintercard_differential(pair, proto):
    d, r = pair
    rng = random.Random(4501 + proto)
    keys = [f"z:{i}" for i in range(8)] + ["s:1", "s:2"]
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        fresh(dc, proto)
        fresh(rc, proto)
        for k in keys:
            members = rng.sample(range(30), rng.randint(1, 25))
            if k.startswith("s:"):
                _same(dc, rc, ["SADD", k] + [str(m) for m in members])
            else:
                args = []
                for m in members:
                    args += [str(rng.randint(0, 5)), str(m)]
                _same(dc, rc, ["ZADD", k] + args)
        _same(dc, rc, ["SET", "str", "x"])
        fixed = [
            ["ZINTERCARD", "0", "z:0"], ["ZINTERCARD", "-1", "z:0"], ["ZINTERCARD", "x", "z:0"],
            ["ZINTERCARD", "3", "z:0", "z:1"], ["ZINTERCARD", "1", "z:0", "z:1"], ["ZINTERCARD", "1", "z:0", "LIMIT"],
            ["ZINTERCARD", "1", "z:0", "LIMIT", "-1"], ["ZINTERCARD", "1", "z:0", "LIMIT", "a"],
            ["ZINTERCARD", "2", "z:0", "str"], ["ZINTERCARD", "2", "str", "z:0", "LIMIT", "-1"],
            ["ZINTERCARD", "2", "z:0", "missing"], ["ZINTERCARD", "1", "z:0", "WEIGHTS", "1"],
            ["ZINTERCARD", "2", "z:0", "z:1", "LIMIT", "0"], ["ZINTERCARD", "2", "z:0", "z:1", "LIMIT", "1", "LIMIT", "2"],
        ]
        for cmd in fixed:
            _same(dc, rc, cmd)
        for _ in range(200):
            ks = rng.sample(keys, rng.randint(1, 4))
            cmd = ["ZINTERCARD", str(len(ks))] + ks
            if rng.random() < 0.5:
                cmd += ["LIMIT", str(rng.randint(0, 6))]
            _same(dc, rc, cmd)


def test_swapdb_differential(pair):
    d, r = pair
    rng = random.Random(4601)
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        fresh(dc, 2)
        fresh(rc, 2)
        for cmd in (["SWAPDB", "0"], ["SWAPDB", "x", "1"], ["SWAPDB", "0", "x"], ["SWAPDB", "0", "16"],
                    ["SWAPDB", "-1", "0"], ["SWAPDB", "0", "4294967296"], ["SWAPDB", "3", "3"]):
            _same(dc, rc, cmd)
        for _ in range(60):
            db = str(rng.randint(0, 3))
            _same(dc, rc, ["SELECT", db])
            k = f"k{rng.randint(0, 20)}"
            _same(dc, rc, rng.choice([["SET", k, db], ["RPUSH", k, db], ["DEL", k], ["EXPIRE", k, "1000"]]))
            if rng.random() < 0.3:
                _same(dc, rc, ["SWAPDB", str(rng.randint(0, 3)), str(rng.randint(0, 3))])
        for db in range(4):
            _same(dc, rc, ["SELECT", str(db)])
            _same(dc, rc, ["DBSIZE"])
            for i in range(21):
                _same(dc, rc, ["TYPE", f"k{i}"])
                _same(dc, rc, ["TTL", f"k{i}"])


def test_swapdb_touches_watched_keys_and_wakes_blocked_clients(pair):
    d, _ = pair
    with RespConn(d.port) as c, RespConn(d.port) as w1, RespConn(d.port) as w2, RespConn(d.port) as blocked:
        fresh(c, 2)
        c.call("SELECT", "1")
        c.call("RPUSH", "jobs", "j1")
        c.call("SET", "present", "1")
        # watched in db 0: 'present' appears by the swap; 'absent' exists in neither db
        w1.call("WATCH", "present")
        w2.call("WATCH", "absent")
        blocked.send_raw(b"*3\r\n$5\r\nBLPOP\r\n$4\r\njobs\r\n$1\r\n5\r\n")
        deadline = time.time() + 5
        while "blocked_clients:1" not in c.call("INFO", "clients")[1].decode():
            assert time.time() < deadline
            time.sleep(0.01)
        assert c.call("SWAPDB", "0", "1") == ("+", b"OK")
        assert blocked.read_reply() == ("*", [("$", b"jobs"), ("$", b"j1")])
        w1.call("MULTI")
        w1.call("PING")
        assert w1.call("EXEC") == ("*", None)
        w2.call("MULTI")
        w2.call("PING")
        assert w2.call("EXEC") == ("*", [("+", b"PONG")])
        c.call("SELECT", "0")
        assert c.call("GET", "present") == ("$", b"1")
