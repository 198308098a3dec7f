"""Crashes Redis's own test suite found (scripts/redis-suite.sh), pinned here so the quick
e2e run catches them too; each is compared with redis-server."""

import pytest
import redis

UNPACKS = [
    "return {unpack({1,2,3}, -2, 2147483647)}",
    "return {unpack({1,2,3}, 0, 2147483647)}",
    "return {unpack({1,2,3}, -2147483648, -2)}",
    "return {unpack({1,2,3}, -1, -2)}",
    "return {unpack({1,2,3}, 2)}",
    "return {unpack({'a','b'})}",
    # lua-bitop negated the digit count: -2^31 overflowed and wrote past its buffer.
    "return bit.tohex(65535, -2147483648)",
    "return bit.tohex(65535, 2147483648)",
    "return bit.tohex(65535, -3)",
    "return bit.tohex(-1)",
    "return bit.tohex(65535, 12)",
]


def answer(c, script):
    try:
        return c.eval(script, 0)
    except redis.ResponseError as e:
        return "ERR " + str(e).split(" script:")[0]


@pytest.mark.parametrize("script", UNPACKS)
def test_lua_unpack_and_tohex_bounds_are_checked(damselfly, redis_server, script):
    # The system Lua 5.1 computes unpack's count in an int: a huge range wrapped and the
    # server crashed writing past the Lua stack.
    d = damselfly("--proactor_threads=2")
    c = d.client()
    assert answer(c, script) == answer(redis_server.client(), script)
    assert c.ping()


def test_hash_listpack_holds_values_longer_than_255_bytes(damselfly, redis_server):
    # "Hash ziplist of various encodings": with hash-max-ziplist-value raised, a 300-byte
    # value stayed packed behind a one-byte length and HSET trapped.
    d = damselfly()
    for c in (d.client(), redis_server.client()):
        c.flushall()
        c.config_set("hash-max-ziplist-entries", 1000)
        c.config_set("hash-max-ziplist-value", 1000000)
    sizes = [1, 127, 128, 255, 256, 300, 16383, 16384, 70000]
    replies = []
    for c in (d.client(), redis_server.client()):
        got = []
        for n in sizes:
            got.append(c.hset("k", f"f{n}", "x" * n))
        for n in sizes:  # replace across the length boundaries
            got.append(c.hset("k", f"f{n}", "y" * sizes[(sizes.index(n) + 4) % len(sizes)]))
        got.append(c.hgetall("k"))
        got.append(c.object("encoding", "k"))
        got.append(c.hdel("k", "f128", "f16383"))
        got.append(c.hgetall("k"))
        replies.append(got)
        c.config_set("hash-max-ziplist-entries", 128)
        c.config_set("hash-max-ziplist-value", 64)
    assert replies[0] == replies[1]
    assert replies[0][-3] == b"listpack"


def _wait_blocked(c, n):
    import time
    deadline = time.monotonic() + 5
    while c.info("clients")["blocked_clients"] != n:
        assert time.monotonic() < deadline, "clients never blocked"
        time.sleep(0.01)


def _blocked_move_onto_wrong_type(server, source, target, other):
    """Two BRPOPLPUSH clients block on `source`, the first into a string: it gets
    WRONGTYPE and the element stays; the second is served."""
    import threading
    c = server.client()
    c.flushall()
    c.set(target, "nolist")
    replies = {}

    def block(name, dest):
        b = server.client()
        try:
            replies[name] = b.brpoplpush(source, dest, 5)
        except redis.ResponseError as e:
            replies[name] = str(e).split()[0]

    first = threading.Thread(target=block, args=("first", target))
    first.start()
    _wait_blocked(c, 1)
    second = threading.Thread(target=block, args=("second", other))
    second.start()
    _wait_blocked(c, 2)
    c.rpush(source, "a", "b", "c")
    first.join()
    second.join()
    return replies, c.lrange(source, 0, -1), c.get(target), c.lrange(other, 0, -1)


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_blocked_brpoplpush_into_wrong_type_gets_wrongtype(damselfly, redis_server, threads):
    # "BRPOPLPUSH with wrong destination type": a served waiter replaced the string with a
    # list (the string was lost) and desynchronised the suite's list unit.
    d = damselfly(f"--proactor_threads={threads}")
    for source, target, other in [("blist{t}", "target{t}", "other{t}"), ("blist", "target", "elsewhere")]:
        expected = _blocked_move_onto_wrong_type(redis_server, source, target, other)
        assert expected == ({"first": "WRONGTYPE", "second": b"c"}, [b"a", b"b"], b"nolist", [b"c"])
        assert _blocked_move_onto_wrong_type(d, source, target, other) == expected


def _multi_pushes_serve(server, a, b):
    """Four BLMPOP clients wait on two keys; one MULTI fills both: the key filled first
    serves first (Redis's "BLMPOP with multiple blocked clients")."""
    import threading
    c = server.client()
    c.flushall()
    replies = [None] * 4
    threads = []
    for i, (where, count) in enumerate([("LEFT", 1), ("RIGHT", 10), ("LEFT", 10), ("RIGHT", 1)]):
        def block(i=i, where=where, count=count):
            replies[i] = server.client().execute_command("BLMPOP", 2, 2, a, b, where, "COUNT", count)
        t = threading.Thread(target=block)
        t.start()
        threads.append(t)
        _wait_blocked(c, i + 1)
    p = c.pipeline(transaction=True)
    p.lpush(a, "a", "b", "c", "d", "e")
    p.lpush(b, "1", "2", "3", "4", "5")
    p.execute()
    for t in threads:
        t.join()
    return replies, c.exists(a, b)


@pytest.mark.parametrize("threads", [1, 2])
def test_ready_keys_serve_in_the_order_they_became_ready(damselfly, redis_server, threads):
    # Serving took the last key made ready first: the first client got the second key.
    # On several threads the two keys share a shard here: keys on two shards are served
    # by each shard on its own, in no promised order between them.
    from util import keys_on_shards
    d = damselfly(f"--proactor_threads={threads}")
    pairs = [("blist{t}", "blist2{t}"), ("ka", "kb")] if threads == 1 else [tuple(keys_on_shards(threads, 2, "rk")[0])]
    for a, b in pairs:
        expected = _multi_pushes_serve(redis_server, a, b)
        assert _multi_pushes_serve(d, a, b) == expected
