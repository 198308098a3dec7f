"""Differential tests for the list commands: the same random command streams go
to Damselfly (--proactor_threads=4) and to a real redis-server 7.0, and every
raw reply must match, in RESP2 and RESP3.

Keys are spread over Damselfly's 4 shards, so LMOVE, RPOPLPUSH and LMPOP
routinely span shards; string keys among them supply the WRONGTYPE cases.
A second stream works on long lists (many packed nodes) so LINSERT, LSET,
LREM and LTRIM split, refill and merge nodes in the middle. The encoding
test grows a list past the node size and the old ziplist limits and shrinks
it again, checking OBJECT ENCODING and the contents at every step.
"""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import difftools as dt
from difftools import fresh
from resp import RespConn, encode
from util import keys_on_shards

SEED = 7_0_15
NUM_SHARDS = 4

_BY_SHARD = keys_on_shards(NUM_SHARDS, 3, "lk")
KEYS = [k for s in range(NUM_SHARDS) for k in _BY_SHARD[s]]
# SET only touches these (one per shard), so most keys stay lists while
# WRONGTYPE still turns up on every shard
STRING_KEYS = [_BY_SHARD[s][2] for s in range(NUM_SHARDS)]
VALUES = ["a", "b", "c", "", "0", "1", "-5", "10", "007", "9223372036854775807", "hello world",
          "x" * 63, "x" * 64, "x" * 65, "y" * 130, "z" * 300]
INDEXES = ["0", "1", "2", "-1", "-2", "-3", "5", "-6", "100", "-100",
           "9223372036854775807", "-9223372036854775808", "x", "", "1.5"]
COUNTS = ["0", "1", "2", "3", "10", "-1", "-2", "x", "9223372036854775807", "-9223372036854775808"]


def _key(c):
    return c.choice(KEYS)


def _val(c):
    return c.choice(VALUES)


def _vals(c, lo=1, hi=5):
    return [_val(c) for _ in range(c.randint(lo, hi))]


def _side(c):
    return c.choice(["LEFT", "RIGHT", "left", "right", "LEFT", "RIGHT", "up"])


def _lpos(c):
    args = ["LPOS", _key(c), _val(c)]
    for _ in range(c.randint(0, 3)):
        opt = c.choice(["RANK", "COUNT", "MAXLEN", "rank", "count", "BOGUS"])
        if opt.upper() == "RANK":
            args += [opt, c.choice(["1", "2", "-1", "-2", "3", "0", "x", "-9223372036854775808",
                                    "9223372036854775807"])]
        elif opt.upper() == "COUNT":
            args += [opt, c.choice(["0", "1", "2", "5", "-1", "x"])]
        elif opt.upper() == "MAXLEN":
            args += [opt, c.choice(["0", "1", "3", "10", "-1", "x"])]
        else:
            args += [opt]
    if c.randint(0, 20) == 0:
        args.append("RANK")  # option without its value
    return args


def _lmpop(c):
    n = c.randint(1, 4)
    keys = [_key(c) for _ in range(n)]
    numkeys = c.choice([str(n)] * 12 + ["0", "-1", "x", str(n + 1), "9223372036854775807"])
    args = ["LMPOP", numkeys] + keys + [c.choice(["LEFT", "RIGHT", "left", "right", "LEFT", "middle"])]
    args += c.choice([[], [], [], ["COUNT", c.choice(COUNTS)], ["COUNT", c.choice(["1", "2", "5"])],
                      ["COUNT"], ["COUNT", "1", "COUNT", "2"], ["FOO", "1"]])
    return args


GENERATORS = [
    (10, lambda c: [c.choice(["LPUSH", "RPUSH"]), _key(c)] + _vals(c)),
    (3, lambda c: [c.choice(["LPUSHX", "RPUSHX"]), _key(c)] + _vals(c, 1, 3)),
    (5, lambda c: [c.choice(["LPOP", "RPOP"]), _key(c)]),
    (4, lambda c: [c.choice(["LPOP", "RPOP"]), _key(c), c.choice(COUNTS)]),
    (3, lambda c: ["LLEN", _key(c)]),
    (6, lambda c: ["LRANGE", _key(c), c.choice(INDEXES), c.choice(INDEXES)]),
    (4, lambda c: ["LINDEX", _key(c), c.choice(INDEXES)]),
    (3, lambda c: ["LSET", _key(c), c.choice(INDEXES), _val(c)]),
    (3, lambda c: ["LINSERT", _key(c), c.choice(["BEFORE", "AFTER", "before", "after", "middle"]), _val(c), _val(c)]),
    (3, lambda c: ["LREM", _key(c), c.choice(COUNTS), _val(c)]),
    (3, lambda c: ["LTRIM", _key(c), c.choice(INDEXES), c.choice(INDEXES)]),
    (5, _lpos),
    (5, lambda c: ["LMOVE", _key(c), _key(c), _side(c), _side(c)]),
    (3, lambda c: ["RPOPLPUSH", _key(c), _key(c)]),
    (5, _lmpop),
    # wrong-type material and keyspace views
    (2, lambda c: ["SET", c.choice(STRING_KEYS), _val(c)]),
    (3, lambda c: ["DEL", c.choice(STRING_KEYS + [_key(c)])]),
    (1, lambda c: ["EXISTS", _key(c)]),
    (1, lambda c: ["TYPE", _key(c)]),
    (1, lambda c: ["OBJECT", "ENCODING", _key(c)]),
    (1, lambda c: ["EXPIRE", _key(c), "100000"]),
    (1, lambda c: ["TTL", _key(c)]),
    # wrong arity
    (2, lambda c: c.choice([["LPUSH", "k"], ["RPUSH"], ["LPOP"], ["LPOP", "k", "1", "2"], ["RPOP", "k", "1", "x"],
                            ["LLEN"], ["LRANGE", "k", "0"], ["LINDEX", "k"], ["LSET", "k", "0"],
                            ["LINSERT", "k", "BEFORE", "a"], ["LREM", "k", "0"], ["LTRIM", "k", "0"], ["LPOS", "k"],
                            ["LMOVE", "a", "b", "LEFT"], ["RPOPLPUSH", "a"], ["LMPOP", "1", "k"], ["LMPOP", "-1", "k"],
                            ["LPUSHX", "k"], ["RPUSHX"]])),
]
_TABLE = [g for w, g in GENERATORS for _ in range(w)]


def gen_command(c):
    return c.choice(_TABLE)(c)


def snapshot(conn):
    """Every key's type and, for lists, the whole list."""
    out = {}
    keys = sorted(x[1] for x in conn.call("KEYS", "*")[1])
    for k in keys:
        typ = conn.call("TYPE", k)
        val = conn.call("LRANGE", k, "0", "-1") if typ == ("+", b"list") else conn.call("GET", k)
        out[k] = (typ, val)
    return out


@pytest.fixture(scope="module")
def pair(damselfly_module, redis_server):
    d = damselfly_module("--proactor_threads=4")
    return d, redis_server



@pytest.mark.parametrize("proto,n,seed", [(2, 4000, SEED), (3, 2500, SEED + 1)], ids=["resp2", "resp3"])
def test_list_differential_random(pair, proto, n, seed):
    d, r = pair
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        fresh(dc, proto)
        fresh(rc, proto)
        chooser = dt.RandomChooser(random.Random(seed))
        commands = [gen_command(chooser) for _ in range(n)]
        compared = dt.compare_sequence(dc, rc, commands)
        assert snapshot(dc) == snapshot(rc)
    print(f"\nlist differential[resp{proto}]: compared {compared} commands (seed {seed})")
    assert compared == n


# Long lists: a few keys (on different shards) holding thousands of elements,
# so edits in the middle land inside packed nodes and split or merge them.
LONG_KEYS = [_BY_SHARD[s][0] for s in range(NUM_SHARDS)]
LONG_VALUES = ["p", "q", "r" * 40, "s" * 120, "t" * 700, "u" * 5000, "v" * 9000]


def _long_val(c):
    return c.choice(LONG_VALUES) + str(c.randint(0, 3))


def gen_long_command(c):
    key = c.choice(LONG_KEYS)
    idx = lambda: str(c.randint(-3000, 3000))  # noqa: E731
    return c.choice([
        lambda: [c.choice(["LPUSH", "RPUSH"]), key] + [_long_val(c) for _ in range(c.randint(1, 40))],
        lambda: [c.choice(["LPUSH", "RPUSH"]), key] + [_long_val(c) for _ in range(c.randint(1, 40))],
        lambda: ["LINSERT", key, c.choice(["BEFORE", "AFTER"]), _long_val(c), _long_val(c)],
        lambda: ["LINSERT", key, c.choice(["BEFORE", "AFTER"]), _long_val(c), _long_val(c)],
        lambda: ["LSET", key, idx(), _long_val(c)],
        lambda: ["LSET", key, idx(), _long_val(c)],
        lambda: ["LREM", key, str(c.randint(-5, 5)), _long_val(c)],
        lambda: ["LTRIM", key, str(c.randint(0, 20)), str(c.randint(-20, -1))],
        lambda: ["LINDEX", key, idx()],
        lambda: ["LRANGE", key, idx(), idx()],
        lambda: ["LPOS", key, _long_val(c), "RANK", c.choice(["1", "-1", "3", "-3"]), "COUNT", c.choice(["0", "2"])],
        lambda: [c.choice(["LPOP", "RPOP"]), key, str(c.randint(0, 10))],
        lambda: ["LMOVE", key, c.choice(LONG_KEYS), _side(c).replace("up", "LEFT"), c.choice(["LEFT", "RIGHT"])],
        lambda: ["LMPOP", "2", key, c.choice(LONG_KEYS), c.choice(["LEFT", "RIGHT"]), "COUNT", str(c.randint(1, 10))],
        lambda: ["LLEN", key],
    ])()


@pytest.mark.parametrize("proto", [2, 3], ids=["resp2", "resp3"])
def test_list_differential_long_lists(pair, proto):
    d, r = pair
    n = 1500
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        fresh(dc, proto)
        fresh(rc, proto)
        chooser = dt.RandomChooser(random.Random(SEED + 10 + proto))
        # start each long key with ~2,000 elements
        setup = [["RPUSH", k] + [_long_val(chooser) for _ in range(500)] for k in LONG_KEYS for _ in range(4)]
        commands = setup + [gen_long_command(chooser) for _ in range(n)]
        compared = dt.compare_sequence(dc, rc, commands)
        assert snapshot(dc) == snapshot(rc)
    print(f"\nlist differential long lists[resp{proto}]: compared {compared} commands")


@pytest.mark.parametrize("proto", [2, 3], ids=["resp2", "resp3"])
def test_lrange_reply_in_every_context(pair, proto):
    """LRANGE's reply is encoded on the shard, once, into the bytes the client gets: the same
    bytes as Redis's, in RESP2 and RESP3, on its own, in a pipeline, inside MULTI/EXEC and as a
    script's redis.call result (converted to a Lua table and back), for elements of every shape
    (empty, integers, binary, long enough to fill several nodes) and every range."""
    d, r = pair
    values = ["", "0", "-5", "9223372036854775807", "x" * 64, "y" * 9000, "\r\n$3\r\n*1", bytes(range(256))]
    values += ["e%d" % i for i in range(120)]
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        for conn in (dc, rc):
            fresh(conn, proto)
            conn.call("RPUSH", KEYS[0], *values)
            conn.call("SET", STRING_KEYS[1], "text")
        ranges = [("0", "-1"), ("0", "0"), ("-1", "-1"), ("5", "2"), ("100", "1000"), ("-1000", "3"),
                  ("1", "7"), ("127", "130"), ("x", "1")]
        for start, end in ranges:
            for cmd in (["LRANGE", KEYS[0], start, end], ["LRANGE", KEYS[5], start, end],
                        ["LRANGE", STRING_KEYS[1], start, end]):
                assert dc.call(*cmd) == rc.call(*cmd), cmd
        pipeline = [["LRANGE", KEYS[0], s, e] for s, e in ranges] + [["LLEN", KEYS[0]]]
        for conn in (dc, rc):
            conn.send_raw(b"".join(encode(*c) for c in pipeline))
        assert [dc.read_reply() for _ in pipeline] == [rc.read_reply() for _ in pipeline]
        for conn in (dc, rc):
            conn.call("MULTI")
            conn.call("LRANGE", KEYS[0], "0", "9")
            conn.call("LRANGE", KEYS[0], "-3", "-1")
        assert dc.call("EXEC") == rc.call("EXEC")
        script = "return redis.call('LRANGE', KEYS[1], ARGV[1], ARGV[2])"
        for start, end in ranges[:-1]:
            cmd = ["EVAL", script, "1", KEYS[0], start, end]
            assert dc.call(*cmd) == rc.call(*cmd), cmd


def test_list_encoding_switch_over(pair):
    """Grow one list element by element past one packed node, past the old
    128-entry / 64-byte ziplist limits and up to many nodes, then shrink it
    from both ends: OBJECT ENCODING, LLEN and the contents agree with Redis
    at every step (Redis 7.0 reports "quicklist" for every list)."""
    d, r = pair
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        fresh(dc, 2)
        fresh(rc, 2)
        key = LONG_KEYS[1]
        steps = 0

        def check(full):
            nonlocal steps
            steps += 1
            for cmd in (["OBJECT", "ENCODING", key], ["LLEN", key], ["LINDEX", key, "0"], ["LINDEX", key, "-1"]):
                assert dc.call(*cmd) == rc.call(*cmd), cmd
            if full:
                assert dc.call("LRANGE", key, "0", "-1") == rc.call("LRANGE", key, "0", "-1")

        for i in range(600):
            value = ("e%d-" % i) + "w" * (i % 90)  # crosses 64 bytes, fills several 8 KB nodes
            cmd = "RPUSH" if i % 3 else "LPUSH"
            assert dc.call(cmd, key, value) == rc.call(cmd, key, value)
            check(i % 25 == 0 or i in (127, 128, 129))
        for i in range(600):
            cmd = "LPOP" if i % 2 else "RPOP"
            assert dc.call(cmd, key) == rc.call(cmd, key)
            check(i % 25 == 0 or i > 590)
        assert dc.call("EXISTS", key) == rc.call("EXISTS", key) == (":", 0)
    print(f"\nlist encoding switch-over: {steps} checkpoints")


def test_list_memory_usage_is_sane(pair, only_damselfly):
    """MEMORY USAGE of a packed list stays close to the payload size."""
    d, _ = pair
    with RespConn(d.port) as dc:
        fresh(dc, 2)
        payload = "j" * 120
        for _ in range(20):
            dc.call("RPUSH", "mem", *([payload] * 500))
        usage = dc.call("MEMORY", "USAGE", "mem")
        assert usage[0] == ":", usage
        assert 10_000 * 120 <= usage[1] <= 10_000 * 130, usage


class DataChooser:
    def __init__(self, data):
        self.data = data

    def choice(self, seq):
        return self.data.draw(st.sampled_from(list(seq)))

    def randint(self, a, b):
        return self.data.draw(st.integers(a, b))


@settings(max_examples=40, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data(), length=st.integers(1, 40))
def test_list_differential_hypothesis(pair, data, length):
    d, r = pair
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        fresh(dc, 3)
        fresh(rc, 3)
        c = DataChooser(data)
        commands = [gen_command(c) for _ in range(length)]
        dt.compare_sequence(dc, rc, commands)
        assert snapshot(dc) == snapshot(rc)
