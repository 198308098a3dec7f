"""MIGRATE, compared with redis-server: the same commands from a Damselfly source and from a
redis-server source, into the same kind of target, give the same replies and leave the same
keys on both sides; a Damselfly source's payloads restore on a real redis-server too."""

import redis

import pytest


def _call(c, *args):
    try:
        return c.execute_command(*args)
    except redis.ResponseError as e:
        return "error: " + str(e)


def _state(c, keys, db=0):
    c.execute_command("SELECT", db)
    out = {}
    for k in keys:
        if c.exists(k):
            out[k] = (c.type(k), c.dump(k) is not None, c.pttl(k) > 0)
    c.execute_command("SELECT", 0)
    return out


KEYS = ["s", "l", "h", "z", "set", "ttl", "k1", "k2", "k3", "k4", "busy"]


def _scenario(source, target):
    s = source.client(decode_responses=True)
    t = target.client(decode_responses=True)
    for c in (s, t):
        c.flushall()
    s.set("s", "v")
    s.rpush("l", "a", "b", "c")
    s.hset("h", mapping={"f": "1", "g": "2"})
    s.zadd("z", {"m": 1.5, "n": 2})
    s.sadd("set", "x", "y")
    s.set("ttl", "v", px=100000)
    for i in range(1, 5):
        s.set(f"k{i}", str(i))
    s.set("busy", "here")
    t.set("busy", "there")
    host, port = "127.0.0.1", str(target.port)
    replies = [
        _call(s, "MIGRATE", host, port, "s", "0", "5000"),
        _call(s, "MIGRATE", host, port, "missing", "0", "5000"),
        _call(s, "MIGRATE", host, port, "l", "9", "5000", "COPY"),
        _call(s, "MIGRATE", host, port, "busy", "0", "5000"),
        _call(s, "MIGRATE", host, port, "busy", "0", "5000", "COPY", "REPLACE"),
        _call(s, "MIGRATE", host, port, "", "0", "5000", "KEYS", "h", "z", "nothere", "set", "ttl"),
        # keys on several shards, one the target already has: the others still move
        _call(s, "MIGRATE", host, port, "", "0", "5000", "KEYS", "k1", "k2", "busy", "k3"),
        _call(s, "MIGRATE", host, port, "", "0", "5000", "KEYS", "nothere", "alsonot"),
        _call(s, "MIGRATE", host, port, "k4", "0", "5000", "KEYS", "k4"),
        _call(s, "MIGRATE", host, port, "k4", "0", "5000", "BOGUS"),
        _call(s, "MIGRATE", host, port, "k4", "0", "5000", "AUTH"),
        _call(s, "MIGRATE", host, port, "k4", "0", "5000", "AUTH2", "user"),
        _call(s, "MIGRATE", host, port, "k4", "0", "soon"),
        _call(s, "MIGRATE", host, port, "k4", "db", "5000"),
        _call(s, "MIGRATE", host, port, "k4", "0", "5000", "AUTH", "secret"),
        _call(s, "MIGRATE", host, port, "k4", "0", "5000", "AUTH2", "nobody", "secret"),
        _call(s, "MIGRATE", host, port, "k4", "99", "5000"),
        _call(s, "MIGRATE", host, port, "k4"),
    ]
    return replies, _state(s, KEYS), _state(t, KEYS), _state(t, KEYS, db=9)


def test_migrate_equal_redis(damselfly, redis_server):
    target = damselfly()
    from_damselfly = _scenario(damselfly("--proactor_threads=4"), target)
    from_redis = _scenario(redis_server, target)
    assert from_damselfly == from_redis


def test_migrate_to_a_closed_port_is_an_ioerr(damselfly, redis_server):
    d = damselfly()
    closed = damselfly()
    port = str(closed.port)
    closed.stop()
    replies = []
    for server in (d, redis_server):
        c = server.client()
        c.set("gone", "v")
        replies.append((_call(c, "MIGRATE", "127.0.0.1", port, "gone", "0", "1000"), c.exists("gone")))
        c.delete("gone")
    assert replies[0] == replies[1]


def test_payloads_from_damselfly_restore_on_redis(damselfly, redis_server):
    d = damselfly("--proactor_threads=2").client()
    r = redis_server.client()
    r.flushall()
    d.rpush("ml", *[str(i) for i in range(300)])
    d.hset("mh", mapping={f"f{i}": "v" * i for i in range(50)})
    d.zadd("mz", {f"m{i}": i / 3 for i in range(200)})
    d.set("ms", "x" * 10000)
    expected = (d.lrange("ml", 0, -1), d.hgetall("mh"), d.zrange("mz", 0, -1, withscores=True), d.get("ms"))
    assert _call(d, "MIGRATE", "127.0.0.1", str(redis_server.port), "", "0", "5000",
                 "KEYS", "ml", "mh", "mz", "ms") == b"OK"
    assert d.exists("ml", "mh", "mz", "ms") == 0
    assert (r.lrange("ml", 0, -1), r.hgetall("mh"), r.zrange("mz", 0, -1, withscores=True), r.get("ms")) == expected
    r.flushall()


@pytest.mark.parametrize("args", [
    ["MIGRATE", "h", "1", "k", "0", "10"],
    ["MIGRATE", "h", "1", "", "0", "10", "KEYS", "a", "b"],
    ["MIGRATE", "h", "1", "", "0", "10", "COPY", "AUTH", "pw", "KEYS", "a"],
])
def test_migrate_key_positions_equal_redis(damselfly, redis_server, args):
    replies = []
    for server in (damselfly(), redis_server):
        with server.raw() as c:
            keys = c.call("COMMAND", "GETKEYS", *args)
            info = c.call("COMMAND", "INFO", "migrate")
        replies.append((keys, info[1][0][1][:3]))  # name, arity, flags
    assert replies[0] == replies[1]
    assert ("+", b"movablekeys") in replies[0][1][2][1]
