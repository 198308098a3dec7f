"""Differential tests for sorted sets and bit commands: the same random command
streams go to Damselfly (--proactor_threads=4) and a real redis-server and every
raw reply must match (RESP2 and RESP3), except where Redis itself is random
(ZRANDMEMBER: shape and membership only) or iterates a hash table (ZSCAN of a
"skiplist" set: the full iteration is compared as a set).

Keys sit on every shard, so ZUNIONSTORE/ZINTERSTORE/ZDIFFSTORE, ZUNION/ZINTER/
ZDIFF, ZRANGESTORE, ZMPOP and BITOP routinely span shards."""

import random

import pytest

from difftools import fresh
from resp import RespConn
from util import keys_on_shards

NUM_SHARDS = 4
_BY = keys_on_shards(NUM_SHARDS, 3, "zk")
ZKEYS = [k for s in range(NUM_SHARDS) for k in _BY[s]]
_BB = keys_on_shards(NUM_SHARDS, 2, "bk")
# Lex ranges are only defined when all scores are equal (Redis answers
# depend on its skip list's random levels otherwise), so lex commands use
# keys that only ever get score 0.
_BL = keys_on_shards(NUM_SHARDS, 1, "lk")
LKEYS = [k for s in range(NUM_SHARDS) for k in _BL[s]]
BKEYS = [k for s in range(NUM_SHARDS) for k in _BB[s]]

MEMBERS = ["a", "b", "c", "d", "e", "f", "alpha", "beta", "", "x" * 70, "m1", "m2", "10", "Z"]
SCORES = ["0", "1", "-1", "2", "2.5", "0.1", "1e3", "-3.75", "inf", "-inf", "+inf", "1e-7",
          "123456789012", "abc", "", "nan", "1.5e400", "0x10", " 1"]
RANGE_SCORES = ["-inf", "+inf", "inf", "0", "(0", "1", "(1", "2.5", "(2.5", "-1", "(-inf", "abc", "(", "",
                "1e3", "(abc", " 2"]
LEX = ["-", "+", "[a", "(a", "[b", "(c", "[alpha", "(beta", "[", "(", "a", "[zz", "+x", "-x"]
INTS = ["0", "1", "-1", "2", "3", "-2", "5", "10", "-10", "100", "abc", "9223372036854775807",
        "-9223372036854775808"]


def _zk(rng):
    return rng.choice(ZKEYS)


def _bk(rng):
    return rng.choice(BKEYS)


def _zadd(rng):
    opts = rng.choice([[], [], [], ["NX"], ["XX"], ["CH"], ["GT"], ["LT"], ["GT", "CH"], ["XX", "LT"],
                       ["INCR"], ["NX", "INCR"], ["GT", "INCR"], ["NX", "XX"], ["GT", "LT"], ["NX", "GT"],
                       ["INCR", "XX"]])
    n = 1 if "INCR" in opts and rng.random() < 0.8 else rng.randint(1, 4)
    args = []
    for _ in range(n):
        args += [rng.choice(SCORES[:13]) if rng.random() < 0.9 else rng.choice(SCORES), rng.choice(MEMBERS)]
    if rng.random() < 0.03:
        args = args[:-1]
    return ["ZADD", _zk(rng)] + opts + args


def _bulk_zadd(rng):
    # enough members to cross the listpack limit
    n = rng.choice([100, 130, 200])
    args = []
    for i in range(n):
        args += [str(rng.randint(-50, 50) / 4), f"bulk{rng.randint(0, 300)}"]
    return ["ZADD", _zk(rng)] + args


def _zrange(rng):
    k = _zk(rng)
    kind = rng.choice(["rank", "rank", "score", "lex"])
    if kind == "rank":
        args = ["ZRANGE", k, rng.choice(INTS[:10]), rng.choice(INTS[:10])]
        opts = rng.choice([[], ["WITHSCORES"], ["REV"], ["REV", "WITHSCORES"], ["LIMIT", "0", "1"], ["BYLEX"]])
    elif kind == "score":
        args = ["ZRANGE", k, rng.choice(RANGE_SCORES), rng.choice(RANGE_SCORES), "BYSCORE"]
        opts = rng.choice([[], ["WITHSCORES"], ["REV"], ["REV", "WITHSCORES"],
                           ["LIMIT", rng.choice(INTS[:8]), rng.choice(INTS[:8])],
                           ["REV", "LIMIT", "1", "2", "WITHSCORES"], ["LIMIT", "0"], ["BYLEX"]])
    else:
        args = ["ZRANGE", rng.choice(LKEYS), rng.choice(LEX), rng.choice(LEX), "BYLEX"]
        opts = rng.choice([[], ["REV"], ["LIMIT", rng.choice(INTS[:8]), rng.choice(INTS[:8])], ["WITHSCORES"]])
    return args + opts


def _legacy_range(rng):
    k = _zk(rng)
    cmd = rng.choice(["ZRANGEBYSCORE", "ZREVRANGEBYSCORE", "ZRANGEBYLEX", "ZREVRANGEBYLEX", "ZREVRANGE"])
    if cmd == "ZREVRANGE":
        return [cmd, k, rng.choice(INTS[:10]), rng.choice(INTS[:10])] + rng.choice([[], ["WITHSCORES"], ["REV"]])
    if "LEX" in cmd:
        return [cmd, rng.choice(LKEYS), rng.choice(LEX), rng.choice(LEX)] + rng.choice([[], ["LIMIT", "1", "2"], ["WITHSCORES"]])
    return [cmd, k, rng.choice(RANGE_SCORES), rng.choice(RANGE_SCORES)] + rng.choice(
        [[], ["WITHSCORES"], ["LIMIT", rng.choice(INTS[:8]), rng.choice(INTS[:8])],
         ["WITHSCORES", "LIMIT", "0", "2"], ["BYSCORE"], ["REV"]])


def _algebra(rng):
    cmd = rng.choice(["ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE", "ZUNION", "ZINTER", "ZDIFF"])
    n = rng.randint(1, 4)
    keys = [rng.choice(ZKEYS + BKEYS[:1]) for _ in range(n)]
    numkeys = str(n) if rng.random() < 0.93 else rng.choice(["0", "-1", "abc", str(n + 1)])
    args = [cmd] + ([_zk(rng)] if cmd.endswith("STORE") else []) + [numkeys] + keys
    opts = []
    if rng.random() < 0.4:
        opts += ["WEIGHTS"] + [rng.choice(["1", "2", "0", "-1", "0.5", "inf", "abc"]) for _ in range(n)]
    if rng.random() < 0.4:
        opts += ["AGGREGATE", rng.choice(["SUM", "MIN", "MAX", "sum", "bad"])]
    if rng.random() < 0.4:
        opts += ["WITHSCORES"]
    return args + opts


def _zmpop(rng):
    n = rng.randint(1, 3)
    args = ["ZMPOP", str(n)] + [_zk(rng) for _ in range(n)] + [rng.choice(["MIN", "MAX", "min", "bad"])]
    if rng.random() < 0.5:
        args += ["COUNT", rng.choice(["1", "2", "5", "0", "-1", "abc"])]
    return args


def _bitfield(rng):
    args = [rng.choice(["BITFIELD", "BITFIELD", "BITFIELD_RO"]), _bk(rng)]
    for _ in range(rng.randint(0, 3)):
        t = rng.choice(["i8", "u8", "i5", "u3", "i16", "u16", "i64", "u63", "i1", "u1", "u64", "i65", "x8", "i0"])
        off = rng.choice(["0", "3", "7", "8", "13", "#1", "#3", "100", "-1", "abc"])
        op = rng.choice(["GET", "SET", "INCRBY", "OVERFLOW"])
        if op == "GET":
            args += ["GET", t, off]
        elif op == "OVERFLOW":
            args += ["OVERFLOW", rng.choice(["WRAP", "SAT", "FAIL", "wrap", "bad"])]
        else:
            args += [op, t, off, rng.choice(["0", "1", "-1", "100", "127", "128", "-129", "255", "256",
                                              "9223372036854775807", "-9223372036854775808", "abc"])]
    return args


def _bits(rng):
    k = _bk(rng)
    c = rng.randint(0, 9)
    if c == 0:
        return ["SETBIT", k, rng.choice(["0", "1", "7", "8", "15", "33", "100", "-1", "abc", "4294967296"]),
                rng.choice(["0", "1", "1", "2", "-1", "x"])]
    if c == 1:
        return ["GETBIT", k, rng.choice(["0", "1", "7", "8", "15", "33", "100000", "-1", "abc"])]
    if c == 2:
        extra = rng.choice([[], [], ["0", "-1"], ["1", "2"], ["-2", "-1"], ["0", "5", "BIT"], ["3", "20", "BIT"],
                            ["-9", "-3", "BIT"], ["1", "1", "BYTE"], ["0"], ["0", "1", "bad"], ["a", "b"],
                            ["-1", "-5"], ["5", "1"]])
        return ["BITCOUNT", k] + extra
    if c == 3:
        extra = rng.choice([[], [], ["0"], ["1"], ["-1"], ["0", "-1"], ["1", "2"], ["0", "5", "BIT"],
                            ["3", "20", "BIT"], ["2", "-1", "BIT"], ["7", "9", "BIT"], ["1", "1", "BYTE"],
                            ["0", "1", "bad"], ["a"], ["5", "1"], ["9", "BIT"]])
        return ["BITPOS", k, rng.choice(["0", "1", "1", "2", "x"])] + extra
    if c == 4:
        op = rng.choice(["AND", "OR", "XOR", "NOT", "and", "bad"])
        n = 1 if op == "NOT" and rng.random() < 0.8 else rng.randint(1, 4)
        return ["BITOP", op, _bk(rng)] + [rng.choice(BKEYS + ZKEYS[:1]) for _ in range(n)]
    if c == 5:
        return _bitfield(rng)
    if c == 6:
        return ["SET", k, rng.choice(["", "a", "hello", "\xff\x00\x0f", "12345", "-7", "0", "foobar" * 5])]
    if c == 7:
        return ["APPEND", k, rng.choice(["\x00", "\xff", "xyz"])]
    if c == 8:
        return ["GET", k]
    return ["OBJECT", "ENCODING", k]


def _zgen(rng):
    r = rng.random()
    k = _zk(rng)
    if r < 0.20:
        return _zadd(rng)
    if r < 0.22:
        return _bulk_zadd(rng)
    if r < 0.30:
        return _zrange(rng)
    if r < 0.36:
        return _legacy_range(rng)
    if r < 0.43:
        return _algebra(rng)
    if r < 0.46:
        return _zmpop(rng)
    if r < 0.48:
        return ["ZRANGESTORE", _zk(rng), _zk(rng)] + rng.choice(
            [["0", "-1"], ["1", "2", "REV"], ["(0", "+inf", "BYSCORE"], ["0", "-1", "REV"],
             ["-inf", "+inf", "BYSCORE", "LIMIT", "1", "3"], ["0", "-1", "WITHSCORES"]])
    choices = [
        lambda: ["ZINCRBY", k, rng.choice(SCORES[:13] + ["abc"]), rng.choice(MEMBERS)],
        lambda: ["ZREM", k] + rng.sample(MEMBERS, rng.randint(1, 3)),
        lambda: ["ZCARD", k],
        lambda: ["ZSCORE", k, rng.choice(MEMBERS)],
        lambda: ["ZMSCORE", k] + rng.sample(MEMBERS, rng.randint(1, 3)),
        lambda: [rng.choice(["ZRANK", "ZREVRANK"]), k, rng.choice(MEMBERS)],
        lambda: ["ZCOUNT", k, rng.choice(RANGE_SCORES), rng.choice(RANGE_SCORES)],
        lambda: ["ZLEXCOUNT", rng.choice(LKEYS), rng.choice(LEX), rng.choice(LEX)],
        lambda: ["ZADD", rng.choice(LKEYS)] + [x for m in rng.sample(MEMBERS, rng.randint(1, 4)) for x in ("0", m)],
        lambda: ["ZREM", rng.choice(LKEYS)] + rng.sample(MEMBERS, rng.randint(1, 2)),
        lambda: ["ZRANGESTORE", _zk(rng), rng.choice(LKEYS), rng.choice(LEX), rng.choice(LEX), "BYLEX"],
        lambda: [rng.choice(["ZPOPMIN", "ZPOPMAX"]), k] + rng.choice([[], ["1"], ["2"], ["0"], ["-1"], ["abc"],
                                                                       ["1", "2"]]),
        lambda: ["ZREMRANGEBYSCORE", k, rng.choice(RANGE_SCORES), rng.choice(RANGE_SCORES)],
        lambda: ["ZREMRANGEBYRANK", k, rng.choice(INTS[:10]), rng.choice(INTS[:10])],
        lambda: ["ZREMRANGEBYLEX", rng.choice(LKEYS), rng.choice(LEX), rng.choice(LEX)],
        lambda: ["ZRANDMEMBER", k] + rng.choice([[], ["1"], ["3"], ["-3"], ["0"], ["100"], ["2", "WITHSCORES"],
                                                 ["-2", "WITHSCORES"], ["abc"], ["1", "bad"]]),
        lambda: ["ZSCAN", k, rng.choice(["0", "0", "abc"])] + rng.choice([[], ["MATCH", "*a*"], ["COUNT", "0"],
                                                                         ["COUNT", "2"], ["FOO"]]),
        lambda: ["TYPE", k],
        lambda: ["OBJECT", "ENCODING", k],
        lambda: ["DEL", k],
        lambda: ["SET", k, "str"],   # wrong-type material
        lambda: ["EXISTS", k],
    ]
    return rng.choice(choices)()


def _scan_all(conn, key):
    items, cursor = set(), b"0"
    for _ in range(100000):
        rep = conn.call("ZSCAN", key, cursor, "COUNT", "7")
        if rep[0] in "-!":
            return rep
        cursor = rep[1][0][1]
        flat = [x[1] for x in rep[1][1][1]]
        items.update(zip(flat[0::2], flat[1::2]))
        if cursor == b"0":
            return ("zscan-set", frozenset(items))
    raise AssertionError("ZSCAN did not terminate")


def _items(rep):
    """Members (and scores) out of a ZRANDMEMBER reply, flattened."""
    out = []
    for x in rep[1] or []:
        if x[0] == "*":
            out.append(tuple(y[1] for y in x[1]))
        else:
            out.append(x[1])
    return out


def run_and_compare(dc, rc, cmd, proto):
    name = cmd[0].upper()
    skiplist = name == "ZSCAN" and rc.call("OBJECT", "ENCODING", cmd[1]) == ("$", b"skiplist")
    if skiplist and cmd[2] == "0" and len(cmd) == 3:
        return _scan_all(dc, cmd[1]), _scan_all(rc, cmd[1])
    a, b = dc.call(*cmd), rc.call(*cmd)
    if skiplist and a[0] == b[0] == "*":
        # a hash-table cursor: only the shape can match
        return ("scan", len(a[1])), ("scan", len(b[1]))
    if name == "ZRANDMEMBER" and a[0] == b[0] and a[0] not in "-!":
        if a[0] in "$_":
            return (a[0], a[1] is None), (b[0], b[1] is None)
        ia, ib = _items(a), _items(b)
        count = int(cmd[2])
        card = dc.call("ZCARD", cmd[1])[1]
        if count >= card:
            return ("items", sorted(map(str, ia))), ("items", sorted(map(str, ib)))
        # same length; every pick is a member (with its true score)
        assert len(ia) == len(ib), (cmd, a, b)
        return ("len", len(ia)), ("len", len(ib))
    return a, b


def snapshot(conn):
    out = {}
    for k in ZKEYS + BKEYS + LKEYS:
        typ = conn.call("TYPE", k)
        if typ == ("+", b"zset"):
            out[k] = (typ, conn.call("ZRANGE", k, "0", "-1", "WITHSCORES"), conn.call("OBJECT", "ENCODING", k))
        elif typ == ("+", b"string"):
            out[k] = (typ, conn.call("GET", k), conn.call("OBJECT", "ENCODING", k))
        else:
            out[k] = typ
    return out


def _compare_snapshots(dc, rc, done, history):
    a, b = snapshot(dc), snapshot(rc)
    if a != b:
        diff = {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
        recent = "\n".join("  " + " ".join(map(str, x))[:200] for x in history[-40:])
        pytest.fail(f"snapshot differs after {done} commands: {diff}\nlast commands:\n{recent}")


@pytest.fixture(scope="module")
def pair(damselfly_module, redis_server):
    d = damselfly_module("--proactor_threads=4")
    return d, redis_server



def _run_stream(pair, proto, seed, n, gen):
    d, r = pair
    rng = random.Random(seed)
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        fresh(dc, proto)
        fresh(rc, proto)
        history = []
        for i in range(n):
            cmd = gen(rng)
            history.append(cmd)
            a, b = run_and_compare(dc, rc, cmd, proto)
            if a != b:
                recent = "\n".join("  " + " ".join(map(str, x))[:200] for x in history[-25:])
                pytest.fail(f"mismatch at command {i} (resp{proto}, seed {seed})\ncommand:   {cmd}\n"
                            f"damselfly: {a!r}\nredis:     {b!r}\nlast commands:\n{recent}")
            if i % 200 == 199:
                _compare_snapshots(dc, rc, i + 1, history)
        _compare_snapshots(dc, rc, n, history)
    return n


@pytest.mark.parametrize("proto,seed", [(2, 11), (3, 12), (2, 13), (3, 14)])
def test_zset_random(pair, proto, seed):
    n = _run_stream(pair, proto, seed, 2500, _zgen)
    print(f"\nzset differential resp{proto} seed {seed}: {n} commands")


@pytest.mark.parametrize("proto,seed", [(2, 21), (3, 22)])
def test_bits_random(pair, proto, seed):
    n = _run_stream(pair, proto, seed, 2500, _bits)
    print(f"\nbits differential resp{proto} seed {seed}: {n} commands")


@pytest.mark.parametrize("proto", [2, 3])
def test_large_zset_operations(pair, proto):
    """Thousands of elements (the B+tree encoding): inserts, updates, deletes,
    rank/score/lex ranges and range removals, compared reply by reply."""
    rng = random.Random(31 + proto)
    key = ZKEYS[0]

    def gen(rng):
        c = rng.random()
        m = f"m{rng.randint(0, 6000)}"
        if c < 0.35:
            args = []
            for _ in range(rng.randint(1, 20)):
                args += [str(rng.randint(-2000, 2000) / 8), f"m{rng.randint(0, 6000)}"]
            return ["ZADD", key] + args
        if c < 0.45:
            return ["ZREM", key, m, f"m{rng.randint(0, 6000)}"]
        if c < 0.52:
            return ["ZINCRBY", key, str(rng.randint(-100, 100)), m]
        if c < 0.60:
            return [rng.choice(["ZRANK", "ZREVRANK", "ZSCORE"]), key, m]
        if c < 0.70:
            a = rng.randint(-3000, 3000)
            return ["ZRANGE", key, str(a), str(a + rng.randint(-5, 40))] + rng.choice([[], ["WITHSCORES"], ["REV"]])
        if c < 0.80:
            lo = rng.randint(-2000, 2000) / 8
            return ["ZRANGEBYSCORE", key, f"({lo}" if rng.random() < 0.3 else str(lo), str(lo + rng.randint(0, 30)),
                    "WITHSCORES", "LIMIT", str(rng.randint(0, 5)), str(rng.randint(-1, 30))]
        if c < 0.85:
            lo = rng.randint(-2000, 2000) / 8
            return ["ZCOUNT", key, str(lo), str(lo + rng.randint(0, 200))]
        if c < 0.89:
            a = rng.randint(-3000, 3000)
            return ["ZREMRANGEBYRANK", key, str(a), str(a + rng.randint(0, 120))]
        if c < 0.92:
            lo = rng.randint(-2000, 2000) / 8
            return ["ZREMRANGEBYSCORE", key, str(lo), str(lo + rng.randint(0, 10))]
        if c < 0.95:
            return [rng.choice(["ZPOPMIN", "ZPOPMAX"]), key, str(rng.randint(1, 30))]
        if c < 0.97:
            return ["ZCARD", key]
        return ["ZRANGESTORE", ZKEYS[5], key, str(rng.randint(0, 100)), str(rng.randint(0, 300))]

    with RespConn(pair[0].port) as dc, RespConn(pair[1].port) as rc:
        for conn in (dc, rc):
            fresh(conn, proto)
            args = []
            for i in range(5000):
                args += [str(rng.randint(-2000, 2000) / 8) if False else str((i * 7919) % 4001 / 8 - 250), f"m{i}"]
            assert conn.call("ZADD", key, *args)[0] == ":"
        for i in range(3000):
            cmd = gen(rng)
            a, b = dc.call(*cmd), rc.call(*cmd)
            assert a == b, (i, cmd, a, b)
        assert snapshot(dc) == snapshot(rc)
        assert dc.call("OBJECT", "ENCODING", key) == ("$", b"skiplist")


def test_encoding_switch_over(pair):
    """Grow past zset-max-listpack-entries one element at a time, shrink back,
    long members, stored results: OBJECT ENCODING and contents all the way."""
    d, r = pair
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        for conn in (dc, rc):
            fresh(conn, 2)

        def both(*cmd):
            a, b = dc.call(*cmd), rc.call(*cmd)
            assert a == b, (cmd, a, b)
            return a

        def check(k):
            both("OBJECT", "ENCODING", k)
            both("ZRANGE", k, "0", "-1", "WITHSCORES")

        k = ZKEYS[1]
        for i in range(140):
            both("ZADD", k, str(i % 17), f"member{i}")
            check(k)
        for i in range(140):
            both("ZREM", k, f"member{i}")
            both("EXISTS", k)
            if i % 5 == 0:
                check(k)
        # a long member converts at once, on creation and on insert
        both("ZADD", k, "1", "y" * 65)
        check(k)
        both("ZADD", ZKEYS[2], "1", "a", "2", "y" * 64)
        check(ZKEYS[2])
        both("ZADD", ZKEYS[2], "3", "z" * 65)
        check(ZKEYS[2])
        both("ZREM", ZKEYS[2], "z" * 65)
        check(ZKEYS[2])
        # stored results pick their encoding from their final size
        for i in range(200):
            both("ZADD", ZKEYS[3], str(i), f"e{i}")
        for cmd in (["ZRANGESTORE", ZKEYS[4], ZKEYS[3], "0", "127"],
                    ["ZRANGESTORE", ZKEYS[4], ZKEYS[3], "0", "128"],
                    ["ZRANGESTORE", ZKEYS[5], ZKEYS[3], "10", "+inf", "BYSCORE", "LIMIT", "0", "5"],
                    ["ZUNIONSTORE", ZKEYS[6], "2", ZKEYS[3], ZKEYS[2]],
                    ["ZINTERSTORE", ZKEYS[7], "2", ZKEYS[3], ZKEYS[4]],
                    ["ZDIFFSTORE", ZKEYS[8], "2", ZKEYS[3], ZKEYS[4]],
                    ["ZUNIONSTORE", ZKEYS[9], "1", k]):
            both(*cmd)
            check(cmd[1])
        both("ZREMRANGEBYRANK", ZKEYS[3], "0", "150")
        check(ZKEYS[3])
        both("ZPOPMIN", ZKEYS[3], "100")
        both("EXISTS", ZKEYS[3])
