"""Random command generator and reply comparison for the differential tests.

The generator draws every choice through a small `Chooser` interface so the same
vocabulary drives both a seeded `random.Random` run and a hypothesis run (where
shrinking then works on individual choices).
"""

import time

from util import keys_on_shards

FAR = 10 ** 6          # seconds: TTLs long enough that timing never matters
NUM_SHARDS = 4         # Damselfly runs with --proactor_threads=4 (one shard per thread)


class RandomChooser:
    def __init__(self, rng):
        self.rng = rng

    def choice(self, seq):
        return self.rng.choice(seq)

    def randint(self, a, b):
        return self.rng.randint(a, b)

    def sample(self, seq, k):
        return self.rng.sample(seq, k)


# three keys on every shard, so multi-key commands routinely span shards
_BY_SHARD = keys_on_shards(NUM_SHARDS, 3, "dk")
KEYS = [k for s in range(NUM_SHARDS) for k in _BY_SHARD[s]]
VALUES = ["", "0", "1", "-1", "42", "9223372036854775806", "9223372036854775807",
          "-9223372036854775808", "3.5", "abc", "hello world", "x" * 50, "12a", " 7", "007"]
INT_ARGS = ["0", "1", "-1", "5", "-100", "9223372036854775807", "-9223372036854775808",
            "abc", "1.5", "", "9223372036854775808"]
FLOAT_ARGS = ["0", "1", "-1", "0.5", "-2.25", "1e3", "3.0e1", "abc", "inf", "1.5e400"]


def _key(c):
    return c.choice(KEYS)


def _keys(c, lo=1, hi=5):
    return [_key(c) for _ in range(c.randint(lo, hi))]


def _val(c):
    return c.choice(VALUES)


def _set(c):
    args = ["SET", _key(c), _val(c)]
    opts = c.choice([[], [], ["NX"], ["XX"], ["GET"], ["EX", str(FAR)], ["PX", str(FAR * 1000)],
                     ["KEEPTTL"], ["EXAT", str(int(time.time()) + FAR)], ["NX", "GET"], ["XX", "GET"],
                     ["NX", "XX"], ["EX"], ["EX", "0"], ["EX", "abc"], ["PX", "-1"], ["EX", "1", "KEEPTTL"],
                     ["BOGUS"]])
    return args + opts


def _expire(c):
    cmd = c.choice(["EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"])
    if cmd == "EXPIRE":
        t = FAR + c.randint(0, 1000)
    elif cmd == "PEXPIRE":
        t = (FAR + c.randint(0, 1000)) * 1000
    elif cmd == "EXPIREAT":
        t = int(time.time()) + FAR + c.randint(0, 1000)
    else:
        t = (int(time.time()) + FAR + c.randint(0, 1000)) * 1000
    opt = c.choice([[], [], ["NX"], ["XX"], ["GT"], ["LT"], ["NX", "XX"], ["GT", "LT"], ["BAD"]])
    t = c.choice([str(t), str(t), "abc"])
    return [cmd, _key(c), t] + opt


GENERATORS = [
    # (weight, generator)
    (8, _set),
    (8, lambda c: ["GET", _key(c)]),
    (3, lambda c: ["SETNX", _key(c), _val(c)]),
    (2, lambda c: ["SETEX", _key(c), c.choice([str(FAR), "0", "-5", "x"]), _val(c)]),
    (2, lambda c: ["PSETEX", _key(c), c.choice([str(FAR * 1000), "0"]), _val(c)]),
    (3, lambda c: ["GETSET", _key(c), _val(c)]),
    (3, lambda c: ["GETDEL", _key(c)]),
    (3, lambda c: ["GETEX", _key(c)] + c.choice([[], ["PERSIST"], ["EX", str(FAR)], ["PX", str(FAR * 1000)],
                                                  ["EX", "0"], ["EX", str(FAR), "PERSIST"], ["FOO"]])),
    (4, lambda c: ["APPEND", _key(c), _val(c)]),
    (3, lambda c: ["STRLEN", _key(c)]),
    (3, lambda c: [c.choice(["GETRANGE", "SUBSTR"]), _key(c), str(c.randint(-20, 20)), str(c.randint(-20, 60))]),
    (3, lambda c: ["SETRANGE", _key(c), c.choice([str(c.randint(0, 30)), "-1", "x"]), _val(c)]),
    (4, lambda c: [c.choice(["INCR", "DECR"]), _key(c)]),
    (4, lambda c: [c.choice(["INCRBY", "DECRBY"]), _key(c), c.choice(INT_ARGS)]),
    (2, lambda c: ["INCRBYFLOAT", _key(c), c.choice(FLOAT_ARGS)]),
    (5, lambda c: ["MGET"] + _keys(c, 1, 6)),
    (5, lambda c: ["MSET"] + [x for k in _keys(c, 1, 5) for x in (k, _val(c))]),
    (2, lambda c: ["MSETNX"] + [x for k in _keys(c, 1, 4) for x in (k, _val(c))]),
    (4, lambda c: [c.choice(["DEL", "UNLINK"])] + _keys(c, 1, 4)),
    (4, lambda c: ["EXISTS"] + _keys(c, 1, 6)),
    (2, lambda c: ["TOUCH"] + _keys(c, 1, 4)),
    (2, lambda c: ["TYPE", _key(c)]),
    (3, lambda c: [c.choice(["RENAME", "RENAMENX"]), _key(c), _key(c)]),
    (3, lambda c: ["COPY", _key(c), _key(c)] + c.choice([[], ["REPLACE"], ["DB", "1"], ["DB", "1", "REPLACE"],
                                                          ["DB", "99"], ["BOGUS"]])),
    (2, lambda c: ["MOVE", _key(c), c.choice(["1", "2", "0", "99", "x"])]),
    (1, lambda c: ["SELECT", c.choice(["0", "0", "0", "1", "2", "99", "x"])]),
    (4, _expire),
    (2, lambda c: ["PERSIST", _key(c)]),
    (4, lambda c: [c.choice(["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"]), _key(c)]),
    (1, lambda c: ["DBSIZE"]),
    (1, lambda c: ["KEYS", c.choice(["*", "dk:1*", "dk:?", "nomatch"])]),
    (1, lambda c: ["SCAN"]),  # expanded into a full iteration by the runner
    (1, lambda c: ["RANDOMKEY"]),
    (1, lambda c: ["ECHO", _val(c)]),
    (1, lambda c: ["PING"]),
    # wrong arity
    (3, lambda c: c.choice([["GET"], ["GET", "a", "b"], ["SET", "a"], ["MGET"], ["MSET", "a"],
                            ["MSET", "a", "1", "b"], ["DEL"], ["EXISTS"], ["INCR"], ["INCRBY", "a"],
                            ["APPEND", "a"], ["RENAME", "a"], ["EXPIRE", "a"], ["TTL"], ["STRLEN", "a", "b"],
                            ["GETRANGE", "a", "1"], ["SETEX", "a", "10"], ["COPY", "a"], ["TYPE"],
                            ["DBSIZE", "x"], ["MSETNX", "a"], ["GETDEL"], ["KEYS"], ["SELECT"]])),
    # unknown commands
    (1, lambda c: [c.choice(["FOOBAR", "sett", "gett"])] + _keys(c, 0, 3)),
]
_TABLE = [g for w, g in GENERATORS for _ in range(w)]

# wrong-type material: only used when the server under test implements the command
TYPE_MAKERS = {
    "LPUSH": lambda c: ["LPUSH", _key(c), _val(c)],
    "SADD": lambda c: ["SADD", _key(c), _val(c)],
    "HSET": lambda c: ["HSET", _key(c), "f", _val(c)],
}


def gen_command(c, type_makers=()):
    if type_makers and c.randint(0, 40) == 0:
        return TYPE_MAKERS[c.choice(list(type_makers))](c)
    return c.choice(_TABLE)(c)


# ---------------------------------------------------------------------------
# running and comparing
# ---------------------------------------------------------------------------

TTL_TOLERANCE = {"TTL": 1, "PTTL": 1500, "EXPIRETIME": 1, "PEXPIRETIME": 1500}


def _scan_all(conn, rounds_limit=10000):
    keys, cursor = set(), b"0"
    for _ in range(rounds_limit):
        rep = conn.call("SCAN", cursor, "COUNT", "7")
        if rep[0] in "-!":
            return rep
        cursor, batch = rep[1][0][1], rep[1][1][1]
        keys.update(x[1] for x in batch)
        if cursor == b"0":
            return ("scan-set", frozenset(keys))
    raise AssertionError("SCAN did not terminate")


def fresh(conn, proto):
    """Empties the server and switches `conn` to RESP `proto` (2 or 3): the start of
    every differential stream."""
    assert conn.call("FLUSHALL") == ("+", b"OK")
    rep = conn.call("HELLO", str(proto))
    assert rep[0] in "*%", rep


def run_one(conn, cmd):
    if cmd == ["SCAN"]:
        return _scan_all(conn)
    return conn.call(*cmd)


def replies_equal(cmd, a, b):
    """Compare two tagged replies for `cmd`, allowing only inherent nondeterminism."""
    name = cmd[0].upper()
    if name in TTL_TOLERANCE and a[0] == ":" and b[0] == ":":
        if a[1] < 0 or b[1] < 0:
            return a == b
        return abs(a[1] - b[1]) <= TTL_TOLERANCE[name]
    if name == "KEYS" and a[0] == b[0] == "*":
        return sorted(a[1]) == sorted(b[1])
    if name == "RANDOMKEY":
        return (a[0], a[1] is None) == (b[0], b[1] is None) and a[0] in "$_"
    return a == b


def probe_type_commands(conn):
    """Which wrong-type material does this server support? (LPUSH/SADD/HSET)"""
    ok = []
    for name in TYPE_MAKERS:
        rep = conn.call(name, "__probe__", "f", "v") if name == "HSET" else conn.call(name, "__probe__", "v")
        if rep[0] not in "-!":
            ok.append(name)
        conn.call("DEL", "__probe__")
    return ok


class Mismatch(AssertionError):
    pass


def compare_sequence(dconn, rconn, commands, history=20):
    """Send each command to both; raise Mismatch with recent history on the first difference."""
    done = []
    for cmd in commands:
        a = run_one(dconn, cmd)
        b = run_one(rconn, cmd)
        done.append(cmd)
        if not replies_equal(cmd, a, b):
            recent = "\n".join("  " + " ".join(map(str, x)) for x in done[-history:])
            raise Mismatch(f"reply mismatch after {len(done)} commands\n"
                           f"command:   {cmd}\ndamselfly: {a!r}\nredis:     {b!r}\nlast commands:\n{recent}")
    return len(done)


def run_on_both(servers, scenario, reset):
    """Runs `scenario(port)` on Damselfly and on redis-server, each after the
    `reset` commands, and requires equal results; returns Damselfly's."""
    from resp import RespConn
    out = {}
    for name, srv in servers:
        with RespConn(srv.port) as admin:
            for cmd in reset:
                admin.call(*cmd)
        out[name] = scenario(srv.port)
    a, b = out["damselfly"], out["redis"]
    assert a == b, "\n".join(f"{i}: dfly={x!r}\n   redis={y!r}" for i, (x, y) in enumerate(zip(a, b)) if x != y) or (a, b)
    return a
