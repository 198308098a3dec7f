"""Keyspace notifications against redis-server: the same commands, the same messages.

Damselfly (1 and 4 threads) and redis-server 7.0 both get `notify-keyspace-events KEA`, a
PSUBSCRIBE `__key*__:*` client, and one sequence of commands that covers every notifying
command of every type (strings, bits, HyperLogLog, generic, lists incl. LMOVE and the blocking
pops, sets, hashes, sorted sets and GEO stores, streams and consumer groups, SORT STORE,
RESTORE, MULTI/EXEC, EVAL), lazy and active expiry, and eviction. The messages received must
be equal:

- on 1 thread, as one sequence (the exact order Redis sends them);
- on 4 threads, key by key. Every event of a key is sent by the thread of its shard (or, for
  the two keys of RENAME and LMOVE, by the source's shard, so the pair keeps Redis's order),
  and one shard's events reach a subscriber in the order they happened; events of keys on
  different shards are sent by different threads at the same time and may interleave
  differently than Redis's single thread interleaves them.
"""

import time

import pytest
import redis

QUIET_S = 0.6
MAX_WAIT_S = 10.0


def drain(pubsub, expect_at_least=0):
    """Messages (channel, data) until none arrived for QUIET_S (and at least `expect_at_least`)."""
    out = []
    deadline = time.monotonic() + MAX_WAIT_S
    last = time.monotonic()
    while time.monotonic() < deadline:
        m = pubsub.get_message(timeout=0.05)
        if m is None:
            if time.monotonic() - last > QUIET_S and len(out) >= expect_at_least:
                break
            continue
        if m["type"] not in ("message", "pmessage"):
            continue
        out.append((m["channel"], m["data"]) if m["type"] == "pmessage" else ("=" + m["channel"], m["data"]))
        last = time.monotonic()
    return out


def run_sequence(c):
    """Every notifying command; replies are not compared here (other tests do)."""
    def x(*args):
        try:
            return c.execute_command(*args)
        except redis.ResponseError as e:
            return e

    # Strings and bits.
    x("SET", "s1", "v")
    x("SET", "s1", "v2", "EX", "100")
    x("SET", "s1", "v3", "KEEPTTL")
    x("SET", "s1", "x", "NX")
    x("SETNX", "s2", "1")
    x("SETEX", "s3", "100", "v")
    x("PSETEX", "s4", "100000", "v")
    x("GETSET", "s2", "5")
    x("GETDEL", "s4")
    x("GETEX", "s3", "PERSIST")
    x("GETEX", "s2", "EX", "100")
    x("GETEX", "s2", "PERSIST")
    x("MSET", "m1", "a", "m2", "b", "m3", "c")
    x("MSETNX", "n1", "a", "n2", "b")
    x("MSETNX", "n1", "a", "n3", "b")
    x("INCR", "cnt")
    x("DECRBY", "cnt", "5")
    x("INCRBYFLOAT", "cnt", "1.5")
    x("APPEND", "s1", "tail")
    x("APPEND", "ap", "new")
    x("SETRANGE", "s1", "2", "ZZ")
    x("SETRANGE", "sr", "3", "abc")
    x("SETRANGE", "sr2", "3", "")
    x("SETBIT", "bits", "7", "1")
    x("SETBIT", "bits", "7", "1")
    x("SETBIT", "bits", "100", "0")
    x("BITFIELD", "bf", "SET", "u8", "0", "200", "GET", "u8", "0")
    x("BITOP", "OR", "bitdest", "bits", "bf")
    x("BITOP", "AND", "bitdest", "nosuch1", "nosuch2")
    x("PFADD", "hll", "a", "b", "c")
    x("PFADD", "hll", "a")
    x("PFADD", "hll2", "z")
    x("PFMERGE", "hllm", "hll", "hll2")
    # Generic.
    x("DEL", "m1", "m2", "nosuch")
    x("UNLINK", "m3")
    x("EXPIRE", "s1", "1000")
    x("PEXPIRE", "s1", "2000000", "GT")
    x("EXPIRE", "s1", "10", "NX")
    x("PERSIST", "s1")
    x("PERSIST", "s1")
    x("EXPIREAT", "n2", "1")
    x("RENAME", "s1", "r1")
    x("RENAMENX", "r1", "cnt")
    x("RENAMENX", "r1", "r2")
    x("COPY", "r2", "c1")
    x("COPY", "r2", "c1")
    x("COPY", "r2", "c1", "REPLACE")
    x("COPY", "r2", "c1", "DB", "3")
    x("MOVE", "c1", "2")
    payload = c.execute_command("DUMP", "r2")
    x("RESTORE", "rs", "0", payload)
    x("RESTORE", "rs", "0", payload, "REPLACE")
    x("RESTORE", "rs", "1", payload, "REPLACE", "ABSTTL")
    # Lists.
    x("LPUSH", "l1", "a", "b", "c")
    x("RPUSH", "l1", "d")
    x("LPUSHX", "l1", "e")
    x("RPUSHX", "nolist", "e")
    x("LPOP", "l1")
    x("RPOP", "l1", "2")
    x("LPOP", "l1", "0")
    x("LINSERT", "l1", "BEFORE", "b", "x")
    x("LINSERT", "l1", "BEFORE", "nope", "x")
    x("LSET", "l1", "0", "y")
    x("LREM", "l1", "0", "nope")
    x("LREM", "l1", "1", "y")
    x("RPUSH", "l2", "1", "2", "3", "4")
    x("LTRIM", "l2", "1", "2")
    x("LTRIM", "l2", "5", "1")
    x("RPUSH", "l3", "p", "q")
    x("LMOVE", "l3", "l4", "LEFT", "RIGHT")
    x("RPOPLPUSH", "l3", "l4")
    x("LMOVE", "l4", "l4", "LEFT", "RIGHT")
    x("LMPOP", "2", "nolist", "l4", "LEFT", "COUNT", "5")
    x("RPUSH", "l5", "a", "b")
    x("BLPOP", "l5", "0.1")
    x("BRPOP", "l5", "0.1")
    x("RPUSH", "l6", "a")
    x("BLMOVE", "l6", "l7", "RIGHT", "LEFT", "0.1")
    x("SORT", "l7", "ALPHA", "STORE", "sorted")
    x("SORT", "nolist", "STORE", "sorted")
    # Sets.
    x("SADD", "st1", "a", "b", "c", "d")
    x("SADD", "st1", "a")
    x("SREM", "st1", "zz")
    x("SREM", "st1", "a")
    x("SPOP", "st1")
    x("SPOP", "st1", "1")
    x("SADD", "st2", "x")
    x("SMOVE", "st2", "st3", "x")
    x("SADD", "st4", "1", "2")
    x("SADD", "st5", "2", "3")
    x("SINTERSTORE", "sd1", "st4", "st5")
    x("SUNIONSTORE", "sd2", "st4", "st5")
    x("SDIFFSTORE", "sd1", "st4", "st4")
    x("SDIFFSTORE", "sd3", "st5", "st4")
    x("SPOP", "st4", "10")
    # Hashes.
    x("HSET", "h1", "f", "1", "g", "2")
    x("HMSET", "h1", "f", "3")
    x("HSETNX", "h1", "f", "4")
    x("HSETNX", "h1", "k", "4")
    x("HINCRBY", "h1", "f", "2")
    x("HINCRBYFLOAT", "h1", "f", "0.5")
    x("HDEL", "h1", "zz")
    x("HDEL", "h1", "f", "g", "k")
    # Sorted sets and GEO.
    x("ZADD", "z1", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e", "6", "f")
    x("ZADD", "z1", "1", "a")
    x("ZADD", "z1", "INCR", "1", "a")
    x("ZINCRBY", "z1", "1", "b")
    x("ZREM", "z1", "nope")
    x("ZREM", "z1", "c")
    x("ZPOPMIN", "z1")
    x("ZPOPMAX", "z1", "1")
    x("BZPOPMIN", "z1", "0.1")
    x("ZMPOP", "1", "z1", "MIN")
    x("ZADD", "z2", "1", "a", "2", "b", "3", "c", "0", "m", "0", "n")
    x("ZREMRANGEBYSCORE", "z2", "3", "3")
    x("ZREMRANGEBYRANK", "z2", "10", "20")
    x("ZREMRANGEBYLEX", "z2", "[m", "[n")
    x("ZADD", "z3", "1", "a", "5", "q")
    x("ZUNIONSTORE", "zs1", "2", "z2", "z3")
    x("ZINTERSTORE", "zs2", "2", "z2", "z3")
    x("ZDIFFSTORE", "zs1", "2", "z3", "z3")
    x("ZDIFFSTORE", "zs4", "2", "z3", "z2")
    x("ZADD", "zl", "0", "a", "0", "b", "0", "c")
    x("ZREMRANGEBYLEX", "zl", "[a", "[b")
    x("ZRANGESTORE", "zs3", "z3", "0", "-1")
    x("ZREMRANGEBYRANK", "z2", "0", "-1")
    x("GEOADD", "geo", "13.361389", "38.115556", "Palermo", "15.087269", "37.502669", "Catania")
    x("GEOSEARCHSTORE", "gs", "geo", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "ASC")
    x("GEORADIUS", "geo", "15", "37", "1", "km", "STORE", "gs")
    x("GEORADIUS", "geo", "15", "37", "200", "km", "STORE", "gs2")
    # Streams.
    x("XADD", "x1", "1-1", "f", "v")
    x("XADD", "x1", "MAXLEN", "1", "2-1", "f", "v")
    x("XADD", "x1", "3-1", "f", "v")
    x("XTRIM", "x1", "MAXLEN", "5")
    x("XTRIM", "x1", "MAXLEN", "1")
    x("XDEL", "x1", "9-9")
    x("XDEL", "x1", "3-1")
    x("XSETID", "x1", "10-1")
    x("XADD", "x1", "NOMKSTREAM", "11-1", "f", "v")
    x("XADD", "nostream", "NOMKSTREAM", "1-1", "f", "v")
    x("XGROUP", "CREATE", "x2", "g", "$", "MKSTREAM")
    x("XGROUP", "CREATE", "x2", "g", "$")
    x("XGROUP", "CREATECONSUMER", "x2", "g", "bob")
    x("XGROUP", "CREATECONSUMER", "x2", "g", "bob")
    x("XADD", "x2", "1-1", "f", "v")
    x("XREADGROUP", "GROUP", "g", "alice", "STREAMS", "x2", ">")
    x("XCLAIM", "x2", "g", "mike", "0", "1-1", "FORCE")
    x("XAUTOCLAIM", "x2", "g", "bob", "0", "0")
    x("XAUTOCLAIM", "x2", "g", "zed", "0", "0")
    x("XGROUP", "SETID", "x2", "g", "0")
    x("XGROUP", "DELCONSUMER", "x2", "g", "nobody")
    x("XGROUP", "DELCONSUMER", "x2", "g", "bob")
    x("XGROUP", "DESTROY", "x2", "g")
    x("XGROUP", "DESTROY", "x2", "g")
    # MULTI/EXEC and scripts: events as the commands run.
    p = c.pipeline(transaction=True)
    p.set("t1", "a").lpush("t2", "x").rpop("t2").delete("t1").incr("t3")
    p.execute()
    x("EVAL", "redis.call('SET', KEYS[1], 'a'); redis.call('HSET', KEYS[2], 'f', 'v'); "
      "redis.call('DEL', KEYS[1]); return redis.call('HDEL', KEYS[2], 'f')", "2", "e1", "e2")
    # Expiry: active (nothing touches the key), then a read that may find the second key
    # expired first (lazy); either way one `expired`.
    x("SET", "ex1", "v", "PX", "30")
    time.sleep(0.4)
    x("SET", "ex2", "v", "PX", "30")
    time.sleep(0.1)
    x("GET", "ex2")


def collect(server, extra_steps=None):
    c = server.client()
    c.config_set("notify-keyspace-events", "KEA")
    sub = server.client(decode_responses=True).pubsub()
    sub.psubscribe("__key*__:*")
    assert sub.get_message(timeout=2)["type"] == "psubscribe"
    try:
        run_sequence(c)
        if extra_steps:
            extra_steps(c)
        return drain(sub)
    finally:
        sub.close()
        c.config_set("notify-keyspace-events", "")


def evict_one(c):
    """A lone key evicted by a maxmemory far below the dataset."""
    c.flushall()
    c.config_set("maxmemory-policy", "allkeys-lru")
    c.set("victim", "v")
    c.config_set("maxmemory", "1")
    time.sleep(0.3)
    c.config_set("maxmemory", "0")
    c.config_set("maxmemory-policy", "noeviction")


def by_key(messages):
    """Per key: the ordered (channel kind, event) pairs."""
    keys = {}
    for channel, data in messages:
        prefix, _, rest = channel.partition("__:")
        if prefix.startswith("__keyspace@"):
            key, event = rest, data
        else:
            key, event = data, rest
        keys.setdefault((prefix.split("@")[1], key), []).append((prefix.split("@")[0], event))
    return keys


@pytest.fixture(scope="module")
def redis_events(redis_server):
    return collect(redis_server, evict_one)


def test_one_thread_sends_redis_sequence(damselfly, redis_events):
    events = collect(damselfly("--proactor_threads=1"), evict_one)
    assert len(events) > 300
    assert events == redis_events


def test_four_threads_send_redis_events_key_by_key(damselfly, redis_events):
    events = collect(damselfly("--proactor_threads=4"), evict_one)
    assert len(events) == len(redis_events)
    assert by_key(events) == by_key(redis_events)


def test_classes_mask_and_both_channel_kinds(damselfly, redis_server):
    """Only the asked classes, K or E or both, to SUBSCRIBE as well as PSUBSCRIBE."""
    got = []
    for server in (damselfly("--proactor_threads=1"), redis_server):
        c = server.client()
        per_flags = {}
        for flags in ("Kl", "Eg", "KEs$", "gE$"):
            c.config_set("notify-keyspace-events", flags)
            sub = server.client(decode_responses=True).pubsub()
            sub.subscribe("__keyevent@0__:del", "__keyspace@0__:mylist")
            sub.psubscribe("__key*@0__:*")
            for _ in range(3):
                assert sub.get_message(timeout=2) is not None
            c.set("foo", "bar")
            c.lpush("mylist", "a")
            c.sadd("myset", "a")
            c.delete("mylist", "myset", "foo")
            per_flags[flags] = drain(sub)
            sub.close()
        c.config_set("notify-keyspace-events", "")
        got.append(per_flags)
    assert got[0] == got[1]
    assert got[0]["Kl"] == [("__keyspace@0__:mylist", "lpush"), ("=__keyspace@0__:mylist", "lpush")] or \
        got[0]["Kl"] == [("=__keyspace@0__:mylist", "lpush"), ("__keyspace@0__:mylist", "lpush")]


def test_new_keys_and_key_misses(damselfly, redis_server):
    """`n` (a key added, never an overwrite) and `m` (a read that found no key)."""
    got = []
    for server in (damselfly("--proactor_threads=1"), redis_server):
        c = server.client()
        c.config_set("notify-keyspace-events", "KEnm")
        sub = server.client(decode_responses=True).pubsub()
        sub.psubscribe("__key*__:*")
        assert sub.get_message(timeout=2)["type"] == "psubscribe"
        c.set("a", "1")
        c.set("a", "2")
        c.rpush("l", "x")
        c.rpush("l", "y")
        c.rename("a", "b")
        c.copy("b", "c")
        for cmd in (("GET", "nx1"), ("MGET", "nx2", "b"), ("HGET", "nx3", "f"), ("LRANGE", "nx4", "0", "-1"),
                    ("EXISTS", "nx5"), ("TYPE", "nx6"), ("TTL", "nx7"), ("SCARD", "nx8"), ("STRLEN", "b")):
            c.execute_command(*cmd)
        got.append(drain(sub))
        sub.close()
        c.config_set("notify-keyspace-events", "")
    assert got[0] == got[1]
    assert ("__keyspace@0__:a", "new") in got[1]
