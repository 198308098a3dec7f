"""Differential scripting: random Lua scripts over the data-type commands.

Each script is a random sequence of ``redis.pcall`` calls drawn from the
generators of the data-type differential tests (strings and keys, lists,
hashes and sets, sorted sets and bits), collecting every reply into the table
it returns.  Every key a command names is declared in KEYS (the key positions
come from redis-server's ``COMMAND GETKEYS``), so the keys of one script often
live on several shards of Damselfly (``--proactor_threads=4``).  The same
script runs on Damselfly and on a real redis-server 7.0 by EVAL, then again by
EVALSHA (on Damselfly the second run of a script whose keys share a shard
takes the one-shard path); the replies must be equal byte for byte, in RESP2
and RESP3, and so must every key's type and contents afterwards.

Commands whose replies depend on hash-table order or randomness in Redis
itself (KEYS, SCAN, SMEMBERS, HGETALL, SPOP, ...) or on the clock (TTL) are
left out of scripts: they are covered, with order-free comparison, by the
data-type differential tests.
"""

import hashlib
import random

import pytest

import difftools as dt
import test_hash_set_differential as hs
import test_list_differential as ls
import test_zset_bits_differential as zs
from resp import RespConn

SEED = 20261201
N_SCRIPTS = {2: 400, 3: 200}

UNORDERED_OR_TIMED = {
    "KEYS", "SCAN", "SSCAN", "HSCAN", "ZSCAN", "RANDOMKEY", "SPOP", "SRANDMEMBER", "HRANDFIELD", "ZRANDMEMBER",
    "SMEMBERS", "SINTER", "SUNION", "SDIFF", "HGETALL", "HKEYS", "HVALS", "TTL", "PTTL", "EXPIRETIME",
    "PEXPIRETIME", "OBJECT", "DEBUG", "SELECT", "SWAPDB", "FLUSHALL", "FLUSHDB", "MOVE", "DBSIZE", "SORT",
}
ALL_KEYS = sorted(set(dt.KEYS) | set(ls.KEYS) | set(hs.HKEYS) | set(hs.SKEYS)
                  | set(hs.STRKEYS) | set(zs.ZKEYS) | set(zs.LKEYS) | set(zs.BKEYS))


def _gen(rng):
    """One command from one of the data-type generators."""
    family = rng.randint(0, 3)
    if family == 0:
        return dt.gen_command(rng)
    if family == 1:
        return ls.gen_command(rng)
    if family == 2:
        return hs.gen_command(rng)
    return zs._zgen(rng)


def _lua_string(value):
    """A Lua string literal for any bytes: escapes all but letters and digits."""
    raw = value.encode() if isinstance(value, str) else value
    return "'" + "".join(chr(b) if chr(b).isalnum() and b < 128 else "\\%d" % b for b in raw) + "'"


class ScriptMaker:
    """Builds scripts with redis-server telling which arguments are keys."""

    def __init__(self, redis_conn):
        self.redis = redis_conn

    def key_positions(self, cmd):
        rep = self.redis.call("COMMAND", "GETKEYS", *cmd)
        if rep[0] in "-!":
            return None  # malformed: left out (it might touch a key before failing)
        keys = [x[1].decode() for x in rep[1]]
        positions, start = [], 1
        for k in keys:
            i = cmd.index(k, start) if k in cmd[start:] else None
            if i is None:
                return None
            positions.append(i)
            start = i + 1
        return positions

    def script(self, rng, length):
        keys, lines = [], ["local r = {}"]
        while len(lines) - 1 < length:
            cmd = [str(x) for x in _gen(rng)]
            if cmd[0].upper() in UNORDERED_OR_TIMED:
                continue
            positions = self.key_positions(cmd)
            if positions is None:
                continue
            parts = []
            for i, arg in enumerate(cmd):
                if i in positions:
                    if arg not in keys:
                        keys.append(arg)
                    parts.append("KEYS[%d]" % (keys.index(arg) + 1))
                else:
                    parts.append(_lua_string(arg))
            lines.append("r[#r+1] = redis.pcall(%s)" % ", ".join(parts))
        lines.append("return r")
        return "\n".join(lines), keys


def snapshot(conn):
    """Type and contents of every key the generators use (on a RESP2 connection)."""
    out = {}
    for k in ALL_KEYS:
        typ = conn.call("TYPE", k)[1]
        if typ == b"none":
            continue
        if typ == b"string":
            val = conn.call("GET", k)
        elif typ == b"list":
            val = conn.call("LRANGE", k, "0", "-1")
        elif typ == b"hash":
            items = [x[1] for x in conn.call("HGETALL", k)[1]]  # RESP2: a flat array
            val = sorted(zip(items[0::2], items[1::2]))
        elif typ == b"set":
            val = sorted(x[1] for x in conn.call("SMEMBERS", k)[1])
        else:
            val = conn.call("ZRANGE", k, "0", "-1", "WITHSCORES")
        out[k] = (typ, val)
    return out


@pytest.fixture(scope="module")
def pair(damselfly_module, redis_server):
    return damselfly_module("--proactor_threads=4"), redis_server


@pytest.mark.parametrize("proto", [2, 3], ids=["resp2", "resp3"])
def test_random_scripts_equal_redis(pair, proto):
    d, r = pair
    rng = random.Random(SEED + proto)
    with RespConn(d.port) as dc, RespConn(r.port) as rc, RespConn(r.port) as probe:
        for conn in (dc, rc):
            assert conn.call("FLUSHALL") == ("+", b"OK")
            assert conn.call("SCRIPT", "FLUSH") == ("+", b"OK")
        maker = ScriptMaker(probe)
        shapes = set()
        for n in range(N_SCRIPTS[proto]):
            body, keys = maker.script(rng, rng.randint(1, 8))
            sha = hashlib.sha1(body.encode()).hexdigest()
            for how in ("EVAL", "EVALSHA"):
                for conn in (dc, rc):
                    conn.call("HELLO", str(proto))
                cmd = [how, body if how == "EVAL" else sha, str(len(keys))] + keys
                a, b = dc.call(*cmd), rc.call(*cmd)
                assert a == b, f"script {n} ({how}) differs\n{body}\nKEYS={keys}\ndamselfly: {a!r}\nredis:     {b!r}"
                shapes.add(a[0])
            for conn in (dc, rc):
                conn.call("HELLO", "2")
            if n % 25 == 24:
                assert snapshot(dc) == snapshot(rc), f"data differs after script {n}"
        assert snapshot(dc) == snapshot(rc)
        assert "*" in shapes
    print(f"\nscripting differential[resp{proto}]: {N_SCRIPTS[proto]} random scripts, each by EVAL and EVALSHA")
