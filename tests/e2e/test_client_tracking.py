"""CLIENT TRACKING (client-side caching, issue 12 §3), compared with redis-server.

Every scenario runs on redis-server and on Damselfly with one thread and with four
(keys on several shards); what each client receives is reduced to the *set* of keys
invalidated (message order across shards is not promised) plus the messages' shapes,
and the three must be equal.
"""

import socket
import time

import pytest

from resp import RespConn, to_py

IDLE_S = 0.4  # a client has received everything once nothing came for this long


@pytest.fixture(scope="module")
def servers(redis_server, damselfly_module):
    return {
        "redis": redis_server,
        "damselfly-1": damselfly_module("--proactor_threads=1"),
        "damselfly-4": damselfly_module("--proactor_threads=4"),
    }


def conn(server, resp3=False):
    c = RespConn(server.port, timeout=5)
    if resp3:
        assert to_py(c.call("HELLO", "3"))[b"proto"] == 3
    return c


def drain(c, idle=IDLE_S):
    """Every message that arrives until the connection has been quiet for `idle` seconds."""
    out = []
    c.sock.settimeout(idle)
    try:
        while True:
            try:
                out.append(c.read_reply())
            except socket.timeout:
                return out
    finally:
        c.sock.settimeout(5)


def invalidated(messages):
    """(shape, key set): the kinds of messages received and every key they named (None: a flush)."""
    kinds, keys = set(), set()
    for kind, value in messages:
        items = [to_py(v) for v in value]
        if kind == ">" and items[0] == b"invalidate":
            payload = items[1]
            kinds.add("push")
        elif kind == "*" and items[:2] == [b"message", b"__redis__:invalidate"]:
            payload = items[2]
            kinds.add("message")
        else:
            kinds.add(repr((kind, items)))
            continue
        if payload is None:
            keys.add(None)
        else:
            keys.update(payload)
    return kinds, keys


def info_of(c):
    """CLIENT TRACKINGINFO as a dict (RESP2 gives a flat list of pairs)."""
    info = to_py(c.call("CLIENT", "TRACKINGINFO"))
    if isinstance(info, list):
        info = dict(zip(info[::2], info[1::2]))
    return info


def redirect_receiver(server, resp3=False):
    r = conn(server, resp3)
    rid = to_py(r.call("CLIENT", "ID"))
    if not resp3:
        r.call("SUBSCRIBE", "__redis__:invalidate")
    return r, rid


KEYS = [f"key:{i}" for i in range(12)]  # spread over the shards of a 4-thread server


def scenario_resp3_default(server):
    a, b = conn(server, resp3=True), conn(server)
    b.call("FLUSHALL")
    b.call("MSET", *sum(([k, "v"] for k in KEYS), []))
    assert a.call("CLIENT", "TRACKING", "ON") == ("+", b"OK")
    for k in KEYS[:6]:
        a.call("GET", k)
    a.call("MGET", *KEYS[6:9])
    for k in ["key:0", "key:3", "key:7", "key:10"]:  # key:10 was never read
        b.call("SET", k, "w")
    b.call("DEL", "key:1")
    b.call("MSET", "key:2", "x", "key:8", "x")
    first = invalidated(drain(a))
    b.call("SET", "key:0", "again")  # invalidated once until read again
    second = invalidated(drain(a))
    pong = a.call("PING")
    a.close(), b.close()
    return first, second, pong


def scenario_resp2_redirect(server):
    r, rid = redirect_receiver(server)
    a, b = conn(server), conn(server)
    assert a.call("CLIENT", "TRACKING", "ON", "REDIRECT", rid) == ("+", b"OK")
    info = info_of(a)
    redir = to_py(a.call("CLIENT", "GETREDIR")) == rid
    a.call("MGET", *KEYS)
    b.call("INCR", "key:4")
    b.call("LPUSH", "key:5", "x")
    b.call("DEL", "key:6", "key:9")
    got = invalidated(drain(r))
    a.close(), b.close(), r.close()
    info[b"redirect"] = info[b"redirect"] == rid
    return got, info, redir


def scenario_bcast(server):
    a, b = conn(server, resp3=True), conn(server)
    assert a.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "user:", "PREFIX", "obj:")[0] == "+"
    b.call("MSET", "user:1", 1, "user:2", 2, "obj:1", 1, "other:1", 1)
    b.call("INCR", "obj:2")
    b.call("SET", "user", "no")
    got = invalidated(drain(a))
    more = a.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "x:")
    b.call("SET", "x:1", 1)
    added = invalidated(drain(a))
    info = info_of(a)
    info[b"prefixes"] = sorted(info[b"prefixes"])
    a.close(), b.close()
    return got, more, added, info


def scenario_optin_optout(server):
    b = conn(server)
    a = conn(server, resp3=True)
    a.call("CLIENT", "TRACKING", "ON", "OPTIN")
    a.call("GET", "key:0")
    a.call("CLIENT", "CACHING", "YES")
    a.call("GET", "key:1")
    a.call("GET", "key:2")  # CACHING covers one command only
    b.call("MSET", "key:0", 1, "key:1", 1, "key:2", 1)
    optin = invalidated(drain(a))
    a.call("CLIENT", "TRACKING", "OFF")
    a.call("CLIENT", "TRACKING", "ON", "OPTOUT")
    a.call("CLIENT", "CACHING", "NO")
    a.call("GET", "key:3")
    a.call("GET", "key:4")
    b.call("MSET", "key:3", 1, "key:4", 1)
    optout = invalidated(drain(a))
    errors = [a.call("CLIENT", "CACHING", "YES"), a.call("CLIENT", "CACHING", "maybe")]
    a.close(), b.close()
    return optin, optout, errors


def scenario_noloop_and_own_writes(server):
    a, b = conn(server, resp3=True), conn(server)
    a.call("CLIENT", "TRACKING", "ON", "NOLOOP")
    a.call("MGET", "key:0", "key:1", "key:2")
    a.call("SET", "key:0", "mine")
    b.call("SET", "key:1", "theirs")
    noloop = invalidated(drain(a))
    a.call("CLIENT", "TRACKING", "OFF")
    a.call("CLIENT", "TRACKING", "ON")
    a.call("HSET", "key:5", "f", 1)
    a.call("HGET", "key:5", "f")
    # Our own write: the reply first, then the invalidation.
    own = [a.call("HDEL", "key:5", "f"), invalidated([a.read_reply()])]
    a.close(), b.close()
    return noloop, own


def scenario_multi_and_scripts(server):
    a, b = conn(server, resp3=True), conn(server)
    a.call("CLIENT", "TRACKING", "ON")
    a.call("MULTI")
    a.call("GET", "key:0")
    a.call("GET", "key:5")
    a.call("INCR", "key:6")
    exec_reply = to_py(a.call("EXEC"))
    b.call("MSET", "key:0", 1, "key:5", 1)
    multi = invalidated(drain(a))
    a.call("EVAL", "redis.call('set', KEYS[1], 'x')", 1, "{s}1")  # no read: nothing tracked
    a.call("EVAL", "return redis.call('get', KEYS[1])", 2, "{s}2", "{s}3")  # a read: both declared keys
    b.call("MSET", "{s}1", 1, "{s}2", 1, "{s}3", 1)
    script = invalidated(drain(a))
    a.close(), b.close()
    return exec_reply, multi, script


def scenario_flush(server):
    r, rid = redirect_receiver(server)
    a, b = conn(server, resp3=True), conn(server)
    a.call("CLIENT", "TRACKING", "ON")
    c = conn(server)
    c.call("CLIENT", "TRACKING", "ON", "REDIRECT", rid)
    a.call("GET", "key:1")
    c.call("GET", "key:2")
    b.call("FLUSHALL")
    got = (invalidated(drain(a)), invalidated(drain(r)))
    b.call("SET", "key:1", 1)  # forgotten by the flush
    after = invalidated(drain(a))
    a.close(), b.close(), c.close(), r.close()
    return got, after


def scenario_redirect_broken(server):
    r, rid = redirect_receiver(server)
    a, b = conn(server, resp3=True), conn(server)
    a.call("CLIENT", "TRACKING", "ON", "REDIRECT", rid)
    a.call("GET", "key:3")
    r.call("QUIT")
    r.close()
    time.sleep(0.1)
    b.call("SET", "key:3", 1)
    messages = [to_py(m) for m in drain(a)]
    messages = [[m[0], m[1] == rid] for m in messages]
    info = info_of(a)
    info[b"redirect"] = info[b"redirect"] == rid
    missing = a.call("CLIENT", "TRACKING", "ON", "REDIRECT", rid)
    a.close(), b.close()
    return messages, info, missing


def scenario_errors_and_info(server):
    a = conn(server)
    tries = [
        ["CLIENT", "TRACKING", "ON", "PREFIX", "a"],
        ["CLIENT", "TRACKING", "ON", "BCAST", "OPTIN"],
        ["CLIENT", "TRACKING", "ON", "OPTIN", "OPTOUT"],
        ["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "FOOBAR", "PREFIX", "FOO"],
        ["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "FOO", "PREFIX", "FOOBAR"],
        ["CLIENT", "TRACKING", "ON", "REDIRECT", "1", "REDIRECT", "2"],
        ["CLIENT", "TRACKING", "ON", "REDIRECT", "notanumber"],
        ["CLIENT", "TRACKING", "ON", "NOSUCHOPTION"],
        ["CLIENT", "TRACKING", "MAYBE"],
        ["CLIENT", "CACHING", "YES"],
        ["CLIENT", "GETREDIR"],
        ["CLIENT", "TRACKINGINFO"],
        ["CLIENT", "TRACKING", "ON", "OPTIN"],
        ["CLIENT", "TRACKING", "ON", "OPTOUT"],
        ["CLIENT", "TRACKING", "ON", "BCAST"],
        ["CLIENT", "TRACKINGINFO"],
        ["CLIENT", "GETREDIR"],
        ["CLIENT", "TRACKING", "OFF"],
        ["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "p:"],
        ["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "p"],
        ["CLIENT", "TRACKINGINFO"],
    ]
    replies = [to_py(a.call(*t)) for t in tries]
    b = conn(server)
    b.call("FLUSHALL")
    b.call("CLIENT", "TRACKING", "ON")
    b.call("MGET", "key:0", "key:1", "key:2")
    info = server.info()
    counts = {k: info.get(k) for k in ("tracking_clients", "tracking_total_keys", "tracking_total_items",
                                        "tracking_total_prefixes")}
    flags = [f for f in to_py(b.call("CLIENT", "INFO")).decode().split() if f.startswith("flags=")]
    a.close(), b.close()
    return replies, counts, flags


def scenario_table_limit(server):
    r, rid = redirect_receiver(server)
    a, b = conn(server), conn(server)
    b.call("CONFIG", "SET", "tracking-table-max-keys", 1000000)
    a.call("CLIENT", "TRACKING", "ON", "REDIRECT", rid)
    a.call("MGET", *KEYS)
    b.call("CONFIG", "SET", "tracking-table-max-keys", 3)
    deadline = time.monotonic() + 3
    got = 0
    while got < len(KEYS) - 3 and time.monotonic() < deadline:
        got += len(drain(r, idle=0.3))
    extra = len(drain(r, idle=0.5))
    left = server.info().get("tracking_total_keys")
    b.call("CONFIG", "SET", "tracking-table-max-keys", 1000000)
    a.close(), b.close(), r.close()
    return got, extra, left


def scenario_streams(server):
    """Stream writes that change the entries invalidate as every other type's do, in default
    and BCAST mode (XADD goes through the one-key shard path and passes its key to tracking).
    Consumer-group bookkeeping (XACK, XCLAIM, XAUTOCLAIM, XGROUP ...) and XSETID invalidate
    nothing in Redis 7.0 (no signalModifiedKey), nor here; XREADGROUP does here (compatibility.md)."""
    a, bc, b = conn(server, resp3=True), conn(server, resp3=True), conn(server)
    streams = [f"s:{i}" for i in range(5)]  # over the shards of a 4-thread server
    for s in streams:
        b.call("XADD", s, "1-1", "f", "v")
    b.call("XGROUP", "CREATE", "s:3", "g", "0")
    b.call("XREADGROUP", "GROUP", "g", "c1", "STREAMS", "s:3", ">")
    assert a.call("CLIENT", "TRACKING", "ON") == ("+", b"OK")
    assert bc.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "s:") == ("+", b"OK")
    for s in streams[:4]:
        a.call("XRANGE", s, "-", "+")
    b.call("XADD", "s:0", "2-1", "f", "v")
    b.call("XDEL", "s:1", "1-1")
    b.call("XTRIM", "s:2", "MAXLEN", 0)
    b.call("XADD", "s:4", "3-1", "f", "v")  # not read by a: BCAST only
    b.call("XADD", "s:new", "1-1", "f", "v")
    b.call("XACK", "s:3", "g", "1-1")
    b.call("XCLAIM", "s:3", "g", "c2", 0, "1-1")
    b.call("XAUTOCLAIM", "s:3", "g", "c2", 0, "0")
    b.call("XGROUP", "SETID", "s:3", "g", "0")
    b.call("XGROUP", "CREATECONSUMER", "s:3", "g", "c9")
    b.call("XSETID", "s:3", "9-9")
    got = invalidated(drain(a)), invalidated(drain(bc))
    a.close(), bc.close(), b.close()
    return got


SCENARIOS = [
    scenario_resp3_default, scenario_resp2_redirect, scenario_bcast, scenario_optin_optout,
    scenario_noloop_and_own_writes, scenario_multi_and_scripts, scenario_flush, scenario_redirect_broken,
    scenario_errors_and_info, scenario_table_limit, scenario_streams,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__.removeprefix("scenario_"))
def test_tracking_matches_redis(servers, scenario):
    results = {}
    for name, server in servers.items():
        with RespConn(server.port, timeout=5) as c:
            c.call("FLUSHALL")
        results[name] = scenario(server)
    expected = results.pop("redis")
    for name, got in results.items():
        assert got == expected, name
