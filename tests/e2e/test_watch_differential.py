"""WATCH against redis-server: a write that changes nothing must not abort EXEC.

Redis dirties a watched key only where it calls ``signalModifiedKey``: a SETNX on a
present key, an LPUSH refused with WRONGTYPE, a DEL of a missing key, an EXPIRE of a
missing key... change nothing, so a transaction watching the key still runs. Each
scenario below runs on Damselfly (4 shards, keys spread over them) and on a real
redis-server: setup, WATCH, the commands in between (on the watching connection or on
another one), then ``MULTI; GET; EXEC``. Every reply must match, the EXEC outcome
(array or nil) included. Forms that do change the key are in the list too, so the
test fails both ways.
"""

import pytest

from util import keys_on_shards

NUM_SHARDS = 4
_K = keys_on_shards(NUM_SHARDS, 2, "wk")
K, K2, K3, K4 = _K[0][0], _K[1][0], _K[2][0], _K[3][0]
K0B = _K[0][1]  # on K's shard

# A stream with two entries, group g whose consumer c1 has 1-1 pending.
STREAM_SETUP = [("XADD", K, "1-1", "f", "v"), ("XADD", K, "2-1", "f", "v"), ("XGROUP", "CREATE", K, "g", "0"),
                ("XREADGROUP", "GROUP", "g", "c1", "COUNT", "1", "STREAMS", K, ">")]

# BLPOP / BRPOP that find an element or an error at once. Kept apart so that they run on
# one thread too, where the connection's loop owns every key and the pop runs inline.
BLOCKING_SCENARIOS = [
    ("brpop-wrongtype", [("SET", K, "v")], [K], [("BRPOP", K, "1")], False),
    ("blpop-wrongtype-after-empty", [("SET", K0B, "v")], [K0B], [("BLPOP", K, K0B, "1")], False),
    ("brpop-ready-before-wrongtype", [("RPUSH", K, "a"), ("SET", K0B, "v")], [K0B], [("BRPOP", K, K0B, "0")], False),
    ("blpop-other-key-same-shard", [("RPUSH", K0B, "a", "b")], [K], [("BLPOP", K, K0B, "0")], False),
    ("blpop-other-key-other-shard", [("RPUSH", K2, "a")], [K], [("BLPOP", K, K2, "0")], False),
    ("brpop-watched-key", [("RPUSH", K, "a", "b")], [K], [("BRPOP", K, "0")], False),
    ("blpop-second-key-watched", [("RPUSH", K0B, "a")], [K0B], [("BLPOP", K, K0B, "0")], True),
    ("brpop-times-out", [("RPUSH", K2, "a")], [K, K2], [("BRPOP", K, "0.05")], True),
    ("blpop-times-out-on-two-shards", [("SET", K0B, "v")], [K, K3], [("BLPOP", K, K3, "0.05")], True),
    ("bzpopmin-times-out", [], [K], [("BZPOPMIN", K, "0.05")], True),
    ("bzpopmax-other-key", [("ZADD", K0B, "1", "a")], [K], [("BZPOPMAX", K, K0B, "0")], False),
    ("blmpop-other-key", [("RPUSH", K2, "a", "b")], [K], [("BLMPOP", "0", "2", K, K2, "LEFT")], False),
    ("bzmpop-watched-key", [("ZADD", K, "1", "a")], [K], [("BZMPOP", "0", "1", K, "MIN")], False),
    ("blmove-times-out-watched-destination", [], [K2], [("BLMOVE", K, K2, "LEFT", "RIGHT", "0.05")], True),
    ("blmove-wrongtype-destination", [("RPUSH", K, "a"), ("SET", K2, "v")], [K, K2],
     [("BLMOVE", K, K2, "LEFT", "RIGHT", "0")], False),
    ("blmove-into-watched-destination", [("RPUSH", K, "a", "b")], [K2], [("BLMOVE", K, K2, "LEFT", "RIGHT", "0")], False),
    ("brpoplpush-same-shard-watched-source", [("RPUSH", K, "a", "b")], [K], [("BRPOPLPUSH", K, K0B, "0")], False),
    ("brpop-emptied-watched-key", [("RPUSH", K, "a")], [K], [("BRPOP", K, K2, "0")], True),
]

# (name, setup, watched keys, commands in between, by another connection)
SCENARIOS = [
    # -- no-op writes: EXEC runs on redis-server
    ("setnx-existing", [("SET", K, "v")], [K], [("SETNX", K, "y")], False),
    ("set-nx-existing", [("SET", K, "v")], [K], [("SET", K, "y", "NX")], False),
    ("set-xx-missing", [], [K], [("SET", K, "y", "XX")], False),
    ("lpush-wrongtype", [("SET", K, "v")], [K], [("LPUSH", K, "x")], False),
    ("incr-wrongtype", [("RPUSH", K, "a")], [K], [("INCR", K)], True),
    ("del-missing", [], [K], [("DEL", K)], False),
    ("del-missing-cross-shard", [("SET", K2, "x")], [K], [("DEL", K, K3)], False),
    ("unlink-missing", [], [K], [("UNLINK", K)], True),
    ("expire-missing", [], [K], [("EXPIRE", K, "100")], False),
    ("expire-nx-refused", [("SET", K, "v"), ("EXPIRE", K, "100")], [K], [("EXPIRE", K, "200", "NX")], False),
    ("pexpire-xx-refused", [("SET", K, "v")], [K], [("PEXPIRE", K, "200000", "XX")], False),
    ("persist-no-ttl", [("SET", K, "v")], [K], [("PERSIST", K)], False),
    ("hsetnx-existing", [("HSET", K, "f", "v")], [K], [("HSETNX", K, "f", "w")], False),
    ("hdel-missing-field", [("HSET", K, "f", "v")], [K], [("HDEL", K, "zz")], True),
    ("sadd-existing", [("SADD", K, "a")], [K], [("SADD", K, "a")], False),
    ("srem-missing", [("SADD", K, "a")], [K], [("SREM", K, "zz")], False),
    ("smove-not-member", [("SADD", K, "a")], [K, K2], [("SMOVE", K, K2, "zz")], False),
    ("smove-missing-source", [], [K, K2], [("SMOVE", K, K2, "a")], False),
    ("smove-onto-itself", [("SADD", K, "a")], [K], [("SMOVE", K, K, "a")], False),
    ("zadd-nx-existing", [("ZADD", K, "1", "a")], [K], [("ZADD", K, "NX", "2", "a")], False),
    ("zadd-same-score", [("ZADD", K, "1", "a")], [K], [("ZADD", K, "1", "a")], False),
    ("zadd-gt-refused", [("ZADD", K, "5", "a")], [K], [("ZADD", K, "GT", "CH", "1", "a")], False),
    ("zincrby-zero", [("ZADD", K, "1", "a")], [K], [("ZINCRBY", K, "0", "a")], False),
    ("zrem-missing", [("ZADD", K, "1", "a")], [K], [("ZREM", K, "zz")], False),
    ("zremrangebyscore-none", [("ZADD", K, "1", "a")], [K], [("ZREMRANGEBYSCORE", K, "100", "200")], False),
    ("lrem-no-match", [("RPUSH", K, "a", "b")], [K], [("LREM", K, "0", "zz")], False),
    ("linsert-no-pivot", [("RPUSH", K, "a")], [K], [("LINSERT", K, "BEFORE", "zz", "x")], False),
    ("lpushx-missing", [], [K], [("LPUSHX", K, "a")], False),
    ("ltrim-missing", [], [K], [("LTRIM", K, "0", "1")], False),
    ("lpop-missing", [], [K], [("LPOP", K)], False),
    ("spop-missing", [], [K], [("SPOP", K)], False),
    ("zpopmin-missing", [], [K], [("ZPOPMIN", K)], False),
    ("getdel-missing", [], [K], [("GETDEL", K)], False),
    ("lmove-missing", [], [K, K2], [("LMOVE", K, K2, "LEFT", "RIGHT")], False),
    ("rename-missing", [], [K, K2], [("RENAME", K, K2)], False),
    ("rename-same-key", [("SET", K, "v")], [K], [("RENAME", K, K)], False),
    ("renamenx-target-exists", [("SET", K, "v"), ("SET", K2, "w")], [K, K2], [("RENAMENX", K, K2)], False),
    ("msetnx-one-exists", [("SET", K, "v")], [K, K2], [("MSETNX", K2, "a", K, "b")], False),
    ("copy-target-exists", [("SET", K, "v"), ("SET", K2, "w")], [K, K2], [("COPY", K, K2)], False),
    ("flushdb-missing-key", [("SET", K2, "x")], [K], [("FLUSHDB",)], True),
    ("flushall-missing-key", [("SET", K2, "x")], [K], [("FLUSHALL",)], True),
    ("other-db-same-name", [], [K], [("SELECT", "1"), ("SET", K, "v"), ("SELECT", "0")], False),
    ("flushdb-other-db", [("SET", K, "v")], [K], [("SELECT", "1"), ("FLUSHDB",), ("SELECT", "0")], False),
    # -- stream consumer-group bookkeeping and XSETID: no signalModifiedKey in Redis 7.0
    ("xack", STREAM_SETUP, [K], [("XACK", K, "g", "1-1")], True),
    ("xclaim", STREAM_SETUP, [K], [("XCLAIM", K, "g", "c2", "0", "1-1")], True),
    ("xautoclaim", STREAM_SETUP, [K], [("XAUTOCLAIM", K, "g", "c2", "0", "0")], True),
    ("xgroup-create", STREAM_SETUP, [K], [("XGROUP", "CREATE", K, "g2", "0")], True),
    ("xgroup-setid", STREAM_SETUP, [K], [("XGROUP", "SETID", K, "g", "0")], True),
    ("xgroup-createconsumer", STREAM_SETUP, [K], [("XGROUP", "CREATECONSUMER", K, "g", "c9")], True),
    ("xgroup-delconsumer", STREAM_SETUP, [K], [("XGROUP", "DELCONSUMER", K, "g", "c1")], True),
    ("xgroup-destroy", STREAM_SETUP, [K], [("XGROUP", "DESTROY", K, "g")], True),
    ("xsetid", STREAM_SETUP, [K], [("XSETID", K, "5-5")], True),
    # -- blocking pops: only the key popped is dirtied (a WRONGTYPE dirties nothing)
    *BLOCKING_SCENARIOS,
    # -- real changes: EXEC aborts on redis-server
    ("xadd", STREAM_SETUP, [K], [("XADD", K, "3-1", "f", "v")], True),
    ("xgroup-create-mkstream", [], [K], [("XGROUP", "CREATE", K, "g", "0", "MKSTREAM")], True),
    ("xdel", STREAM_SETUP, [K], [("XDEL", K, "1-1")], True),
    ("set", [("SET", K, "v")], [K], [("SET", K, "v")], False),
    ("setnx-missing", [], [K], [("SETNX", K, "y")], True),
    ("del-existing-cross-shard", [("SET", K, "v")], [K], [("DEL", K3, K)], False),
    ("expire-existing", [("SET", K, "v")], [K], [("EXPIRE", K, "100")], False),
    ("incrby-zero", [("SET", K, "1")], [K], [("INCRBY", K, "0")], False),
    ("ltrim-existing", [("RPUSH", K, "a")], [K], [("LTRIM", K, "0", "-1")], False),
    ("zadd-new-score", [("ZADD", K, "1", "a")], [K], [("ZADD", K, "2", "a")], False),
    ("zadd-xx-update", [("ZADD", K, "1", "a")], [K], [("ZADD", K, "XX", "3", "a")], True),
    ("hset-same-value", [("HSET", K, "f", "v")], [K], [("HSET", K, "f", "v")], False),
    ("lpop-existing", [("RPUSH", K, "a")], [K], [("LPOP", K)], False),
    ("rename-into-watched", [("SET", K, "v")], [K2], [("RENAME", K, K2)], False),
    ("smove-into-watched", [("SADD", K, "a")], [K2], [("SMOVE", K, K2, "a")], False),
    ("flushdb-existing-key", [("SET", K, "v")], [K], [("FLUSHDB",)], True),
    ("flushall-key-in-db1", [("SELECT", "1"), ("SET", K, "v"), ("WATCH", K), ("SELECT", "0")], [],
     [("FLUSHALL",)], True),
    ("msetnx-all-new", [], [K, K2], [("MSETNX", K2, "a", K, "b")], False),
]


@pytest.fixture(scope="module")
def servers(damselfly_module, redis_server):
    return {"damselfly": damselfly_module("--proactor_threads=4"), "redis": redis_server}


@pytest.fixture(scope="module")
def one_thread(damselfly_module):
    return damselfly_module("--proactor_threads=1")


def _run(server, setup, watched, between, other):
    with server.raw() as c, server.raw() as o:
        c.call("SELECT", "0")
        assert c.call("FLUSHALL") == ("+", b"OK")
        out = [("setup", c.call(*cmd)) for cmd in setup]
        if watched:
            out.append(("watch", c.call("WATCH", *watched)))
        for cmd in between:
            out.append((cmd[0], (o if other else c).call(*cmd)))
        out.append(("multi", c.call("MULTI")))
        out.append(("get", c.call("GET", K0B)))
        out.append(("exec", c.call("EXEC")))
        return out


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_watch_matches_redis(servers, scenario):
    name, setup, watched, between, other = scenario
    got = {n: _run(s, setup, watched, between, other) for n, s in servers.items()}
    assert got["damselfly"] == got["redis"], name


@pytest.mark.parametrize("scenario", BLOCKING_SCENARIOS, ids=[s[0] for s in BLOCKING_SCENARIOS])
def test_blocking_pop_watch_matches_redis_on_one_thread(servers, one_thread, scenario):
    """On one thread every key is the connection's own, so a ready pop runs inline."""
    name, setup, watched, between, other = scenario
    assert _run(one_thread, setup, watched, between, other) == _run(servers["redis"], setup, watched, between, other), name


def test_scenarios_cover_both_outcomes(servers):
    """The list holds transactions Redis runs and ones it aborts, so it can fail both ways."""
    outcomes = set()
    for _name, setup, watched, between, other in SCENARIOS[:1] + SCENARIOS[-3:]:
        outcomes.add(_run(servers["redis"], setup, watched, between, other)[-1][1][1] is None)
    assert outcomes == {True, False}
