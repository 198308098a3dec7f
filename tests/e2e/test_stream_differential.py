"""Differential tests for the stream commands: the same random command
sequences go to Damselfly (--proactor_threads=4) and to a real redis-server
7.0, and every raw reply must match, in RESP2 and RESP3; the streams
(entries, counters, groups, PELs, consumers) are compared after.

IDs are explicit (a per-key clock the generator advances, with `ms-*`, stale
and malformed IDs mixed in), so both servers agree without masking XADD.
Only time-dependent fields are masked: idle times (XPENDING, XINFO
CONSUMERS), delivery and seen times (XINFO STREAM FULL), and
radix-tree-nodes (a detail of Redis's radix tree). Keys sit on all 4
shards, so XREAD / XREADGROUP over several streams span shards.
"""

import random

import pytest

import difftools as dt
from difftools import fresh
from resp import RespConn
from util import keys_on_shards

SEED = 7_0_15
NUM_SHARDS = 4

_BY_SHARD = keys_on_shards(NUM_SHARDS, 2, "sk")
KEYS = [k for s in range(NUM_SHARDS) for k in _BY_SHARD[s]]
STRING_KEY = _BY_SHARD[0][1]
GROUPS = ["g1", "g2", "g3"]
CONSUMERS = ["alice", "bob", "carol"]
FIELDS = ["job", "state", "n", "attempt"]
VALUES = ["1", "0", "-5", "email", "new", "done", "x" * 20, "", "007", "9223372036854775807"]
COUNTS = ["0", "1", "2", "3", "10", "-1", "x"]
MASK = ("masked", None)


class Gen:
    """Random commands with a per-key ID clock so most XADDs succeed."""

    def __init__(self, rng):
        self.c = dt.RandomChooser(rng)
        self.rng = rng
        self.clock = {k: 0 for k in KEYS}

    def key(self):
        return self.c.choice(KEYS)

    def known_id(self, key):
        top = self.clock[key]
        if top == 0:
            return "0-1"
        return f"{self.rng.randint(1, top)}-{self.rng.randint(0, 2)}"

    def any_id(self, key):
        return self.c.choice([self.known_id(key), self.known_id(key), "0", "0-0", "-", "+", "abc", "1-x",
                              "18446744073709551615-18446744073709551615", f"{self.clock[key] + 5}"])

    def range_id(self, key, end):
        base = self.c.choice([self.known_id(key), "-" if not end else "+", str(self.rng.randint(0, self.clock[key] + 2))])
        if self.rng.randint(0, 4) == 0 and base not in "-+":
            base = "(" + base
        return base

    def fields(self):
        n = self.c.choice([1, 2, 2, 2, 3])
        if self.rng.randint(0, 3):
            names = FIELDS[:n]  # the same shape most of the time (master fields)
        else:
            names = [self.c.choice(FIELDS) for _ in range(n)]
        out = []
        for f in names:
            out += [f, self.c.choice(VALUES)]
        return out

    def xadd(self):
        key = self.c.choice(KEYS + [STRING_KEY])
        args = ["XADD", key]
        if self.rng.randint(0, 9) == 0:
            args.append("NOMKSTREAM")
        r = self.rng.randint(0, 9)
        if r == 0:
            args += ["MAXLEN", self.c.choice(["=", "~", ""]), self.c.choice(["0", "5", "50", "150", "-1", "x"])]
        elif r == 1:
            args += ["MINID", self.c.choice(["=", "~", ""]), self.known_id(key)]
        elif r == 2:
            args += ["MAXLEN", "~", self.c.choice(["10", "120"]), "LIMIT", self.c.choice(["0", "50", "100", "-1"])]
        args = [a for a in args if a != ""]
        clock = self.clock.get(key, 0)
        s = self.rng.randint(0, 19)
        if s == 0:
            id_ = self.known_id(key) if key in self.clock else "1-1"  # stale
        elif s == 1:
            id_ = self.c.choice(["0-0", "abc", "-", "1-2-3"])
        elif s == 2:
            id_ = f"{clock}-*"
        else:
            clock += self.rng.randint(0, 3)
            id_ = f"{clock}-*" if self.rng.randint(0, 3) == 0 else f"{clock}-{self.rng.randint(1, 3)}"
            if key in self.clock:
                self.clock[key] = clock
        args.append(id_)
        f = self.fields()
        if self.rng.randint(0, 30) == 0:
            f = f[:-1]  # odd number of arguments
        return args + f

    def group_cmd(self):
        key = self.key()
        g = self.c.choice(GROUPS)
        return self.c.choice([
            lambda: ["XGROUP", "CREATE", key, g, self.c.choice(["$", "0", self.known_id(key), "-"])]
            + self.c.choice([[], [], ["MKSTREAM"], ["ENTRIESREAD", self.c.choice(["0", "3", "-1", "-2"])], ["BOGUS"]]),
            lambda: ["XGROUP", "SETID", key, g, self.c.choice(["$", "0", self.known_id(key)])]
            + self.c.choice([[], ["ENTRIESREAD", self.c.choice(["0", "2", "-1"])], ["MKSTREAM"]]),
            lambda: ["XGROUP", "DESTROY", key, g],
            lambda: ["XGROUP", "CREATECONSUMER", key, g, self.c.choice(CONSUMERS)],
            lambda: ["XGROUP", "DELCONSUMER", key, g, self.c.choice(CONSUMERS)],
            lambda: ["XGROUP", self.c.choice(["CREATE", "FOO", "DESTROY", "HELP"]), key],
        ])()

    def xreadgroup(self):
        keys = [self.key() for _ in range(self.rng.randint(1, 3))]
        args = ["XREADGROUP", "GROUP", self.c.choice(GROUPS), self.c.choice(CONSUMERS)]
        if self.rng.randint(0, 1):
            args += ["COUNT", self.c.choice(COUNTS)]
        if self.rng.randint(0, 5) == 0:
            args.append("NOACK")
        ids = [self.c.choice([">", ">", ">", "0", self.known_id(k), "$"]) for k in keys]
        return args + ["STREAMS"] + keys + ids

    def xread(self):
        keys = [self.key() for _ in range(self.rng.randint(1, 3))]
        args = ["XREAD"]
        if self.rng.randint(0, 1):
            args += ["COUNT", self.c.choice(COUNTS)]
        ids = [self.c.choice(["0", self.known_id(k), "$", "0-0"]) for k in keys]
        return args + ["STREAMS"] + keys + ids

    def claim(self):
        key = self.key()
        g = self.c.choice(GROUPS)
        ids = [self.known_id(key) for _ in range(self.rng.randint(1, 3))]
        opts = []
        for _ in range(self.rng.randint(0, 3)):
            opts += self.c.choice([["JUSTID"], ["FORCE"], ["RETRYCOUNT", self.c.choice(["0", "5", "x"])],
                                   ["TIME", "1000"], ["IDLE", "3600000"], ["LASTID", self.known_id(key)], ["BOGUS"]])
        return ["XCLAIM", key, g, self.c.choice(CONSUMERS), self.c.choice(["0", "0", "3600000", "x"])] + ids + opts

    def autoclaim(self):
        key = self.key()
        args = ["XAUTOCLAIM", key, self.c.choice(GROUPS), self.c.choice(CONSUMERS),
                self.c.choice(["0", "0", "3600000", "x"]), self.c.choice(["0", "-", self.known_id(key), "(" + self.known_id(key)])]
        if self.rng.randint(0, 1):
            args += ["COUNT", self.c.choice(["1", "2", "5", "0", "x"])]
        if self.rng.randint(0, 2) == 0:
            args.append("JUSTID")
        return args

    def xpending(self):
        key = self.key()
        g = self.c.choice(GROUPS)
        if self.rng.randint(0, 2) == 0:
            return ["XPENDING", key, g]
        args = ["XPENDING", key, g]
        if self.rng.randint(0, 3) == 0:
            args += ["IDLE", self.c.choice(["0", "3600000", "x"])]
        args += [self.range_id(key, False), self.range_id(key, True), self.c.choice(COUNTS)]
        if self.rng.randint(0, 1):
            args.append(self.c.choice(CONSUMERS))
        return args

    def command(self):
        key = self.key()
        table = [
            (14, self.xadd),
            (2, lambda: ["XLEN", self.c.choice(KEYS + [STRING_KEY])]),
            (4, lambda: [self.c.choice(["XRANGE", "XREVRANGE"]), key, self.range_id(key, False), self.range_id(key, True)]
             + self.c.choice([[], [], ["COUNT", self.c.choice(COUNTS)], ["BOGUS"]])),
            (3, lambda: ["XDEL", key] + [self.any_id(key) for _ in range(self.rng.randint(1, 3))]),
            (2, lambda: ["XTRIM", key, self.c.choice(["MAXLEN", "MINID", "maxlen"]), self.c.choice(["=", "~"]),
                         self.c.choice(["5", "30", "0", self.known_id(key)])]),
            (1, lambda: ["XSETID", key, self.c.choice([f"{self.clock[key] + 10}-0", self.known_id(key), "0-1"])]
             + self.c.choice([[], ["ENTRIESADDED", self.c.choice(["0", "500", "-1"])], ["MAXDELETEDID", self.known_id(key)]])),
            (4, self.xread),
            (5, self.group_cmd),
            (8, self.xreadgroup),
            (4, lambda: ["XACK", key, self.c.choice(GROUPS)] + [self.known_id(key) for _ in range(self.rng.randint(1, 4))]),
            (4, self.xpending),
            (3, self.claim),
            (3, self.autoclaim),
            (2, lambda: ["XINFO", "STREAM", key] + self.c.choice([[], ["FULL"], ["FULL", "COUNT", self.c.choice(["0", "2", "x"])], ["BOGUS"]])),
            (2, lambda: ["XINFO", "GROUPS", key]),
            (2, lambda: ["XINFO", "CONSUMERS", key, self.c.choice(GROUPS)]),
            (1, lambda: ["TYPE", key]),
            (1, lambda: ["OBJECT", "ENCODING", key]),
            (1, lambda: ["EXISTS", key]),
            (1, lambda: ["SET", STRING_KEY, "v"]),
            (1, lambda: ["DEL", self.c.choice(KEYS)] if self.rng.randint(0, 5) == 0 else ["EXISTS", STRING_KEY]),
        ]
        weighted = [f for w, f in table for _ in range(w)]
        return self.c.choice(weighted)()


MASKED_KEYS = {b"radix-tree-nodes", b"idle", b"seen-time"}


def mask(cmd, reply):
    """Replaces the time-dependent parts of a reply (see the module docstring)."""
    name = cmd[0].upper()
    if name == "XPENDING" and len(cmd) > 3 and reply[0] == "*":
        return ("*", [(t, [v[0], v[1], MASK, v[3]]) if t == "*" else (t, v) for t, v in reply[1]])
    if name == "XINFO":
        return _mask_info(reply)
    return reply


def _mask_info(reply, parent=None):
    t, v = reply
    if t == "%":
        return (t, [(k, MASK if k[1] in MASKED_KEYS else _mask_info(x, k[1])) for k, x in v])
    if t == "*" and v is not None:
        # RESP2 maps are flat arrays: mask the value after a masked key.
        out = []
        for i, x in enumerate(v):
            prev = v[i - 1] if i > 0 else None
            if prev is not None and prev[0] == "$" and prev[1] in MASKED_KEYS and i % 2 == 1:
                out.append(MASK)
            else:
                out.append(_mask_info(x, prev[1] if prev is not None and prev[0] == "$" and i % 2 == 1 else None))
        if parent == b"pending":
            # XINFO STREAM FULL: [id, consumer, time, count] or [id, time, count]
            return (t, [(a, [e[0], e[1], MASK, e[3]] if len(e) == 4 else [e[0], MASK, e[2]]) if a == "*" else (a, e)
                        for a, e in v])
        return (t, out)
    return reply


def snapshot(conn):
    """Every key's type; for streams the entries, counters and groups."""
    out = {}
    keys = sorted(x[1] for x in conn.call("KEYS", "*")[1])
    for k in keys:
        typ = conn.call("TYPE", k)
        if typ == ("+", b"stream"):
            full = _mask_info(conn.call("XINFO", "STREAM", k, "FULL", "COUNT", "0"))
            out[k] = (typ, conn.call("XRANGE", k, "-", "+"), full)
        else:
            out[k] = (typ, conn.call("GET", k))
    return out


@pytest.fixture(scope="module")
def pair(damselfly_module, redis_server):
    d = damselfly_module("--proactor_threads=4")
    return d, redis_server



def _compare(dc, rc, commands):
    done = []
    for cmd in commands:
        a = mask(cmd, dt.run_one(dc, cmd))
        b = mask(cmd, dt.run_one(rc, cmd))
        done.append(cmd)
        if a != b:
            recent = "\n".join("  " + " ".join(map(str, x)) for x in done[-25:])
            raise dt.Mismatch(f"reply mismatch after {len(done)} commands\ncommand:   {cmd}\n"
                              f"damselfly: {a!r}\nredis:     {b!r}\nlast commands:\n{recent}")
    return len(done)


@pytest.mark.parametrize("proto,n,seed", [(2, 3000, SEED), (3, 2000, SEED + 1)], ids=["resp2", "resp3"])
def test_stream_differential_random(pair, proto, n, seed):
    d, r = pair
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        fresh(dc, proto)
        fresh(rc, proto)
        gen = Gen(random.Random(seed))
        commands = [gen.command() for _ in range(n)]
        compared = _compare(dc, rc, commands)
        assert snapshot(dc) == snapshot(rc)
    print(f"\nstream differential[resp{proto}]: compared {compared} commands (seed {seed})")
    assert compared == n


def test_stream_long_streams_and_trimming(pair):
    """Thousands of entries per stream (many nodes), records of one shape
    and of mixed shapes, approximate and exact trimming, deletions in the
    middle, then group reads over them: replies and data equal."""
    d, r = pair
    rng = random.Random(SEED + 7)
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        fresh(dc, 2)
        fresh(rc, 2)
        commands = []
        for k, key in enumerate(KEYS[:4]):
            for i in range(1, 1500):
                f = ["job", str(i), "state", "new"] if k % 2 == 0 or i % 7 else ["other", "y" * (i % 60)]
                commands.append(["XADD", key, f"{i}-1"] + f)
            commands.append(["XGROUP", "CREATE", key, "g", "0"])
        for _ in range(400):
            key = rng.choice(KEYS[:4])
            commands.append(rng.choice([
                ["XDEL", key, f"{rng.randint(1, 1600)}-1"],
                ["XTRIM", key, "MAXLEN", "~", str(rng.randint(500, 1500))],
                ["XTRIM", key, "MINID", rng.choice(["~", "="]), f"{rng.randint(1, 400)}-1"],
                ["XRANGE", key, f"{rng.randint(1, 1500)}", "+", "COUNT", "5"],
                ["XREVRANGE", key, "+", f"({rng.randint(1, 1500)}-1", "COUNT", "3"],
                ["XREADGROUP", "GROUP", "g", rng.choice(CONSUMERS), "COUNT", "7", "STREAMS", key, ">"],
                ["XACK", key, "g", f"{rng.randint(1, 1500)}-1"],
                ["XINFO", "STREAM", key],
                ["XINFO", "GROUPS", key],
                ["XLEN", key],
            ]))
        _compare(dc, rc, commands)
        assert snapshot(dc) == snapshot(rc)


def test_stream_errors_and_arity(pair):
    d, r = pair
    cases = [
        ["XADD", "s"], ["XADD", "s", "1-1"], ["XADD", "s", "1-1", "a"], ["XLEN"], ["XRANGE", "s", "-"],
        ["XDEL", "s"], ["XTRIM", "s", "MAXLEN"], ["XREAD", "STREAMS"], ["XREAD", "COUNT", "1", "STREAMS", "s"],
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s"], ["XREAD", "BLOCK", "x", "STREAMS", "s", "0"],
        ["XREAD", "BLOCK", "-1", "STREAMS", "s", "0"], ["XREAD", "FOO", "STREAMS", "s", "0"],
        ["XREADGROUP", "COUNT", "1", "STREAMS", "s", ">"], ["XACK", "s", "g"], ["XPENDING", "s"],
        ["XCLAIM", "s", "g", "c", "0"], ["XAUTOCLAIM", "s", "g", "c", "0"], ["XINFO"], ["XINFO", "STREAM"],
        ["XINFO", "HELP"], ["XGROUP", "HELP"], ["XGROUP"], ["XGROUP", "CREATE", "s", "g"], ["XSETID", "s"],
        ["XINFO", "FOO", "s"], ["XGROUP", "FOO", "s", "g"],
    ]
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        for proto in (2, 3):
            fresh(dc, proto)
            fresh(rc, proto)
            _compare(dc, rc, cases)
