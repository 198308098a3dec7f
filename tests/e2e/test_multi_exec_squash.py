"""Squashed EXEC (--multi_exec_squash) and multi-shard transactions in one round trip.

EXEC runs the shard work of its queued commands as one operation per shard,
under the transaction's locks, when no key is WATCHed and every command has
keys, all on one shard; otherwise one command at a time as before.  A
multi-shard transaction whose other shards are all on one other thread is
scheduled and run in one round trip (``Transaction.run``).

* Blocks of many command types (strings, lists, sets, hashes, sorted sets,
  TTLs, multi-key commands with their keys on one shard, runtime errors,
  Sidekiq's push) go to Damselfly at 1, 2 and 4 threads, with squashing on
  and off, and to redis-server: replies and the final state must be equal.
* The INFO counters say which blocks were squashed: not those with WATCH, a
  keyless command or a command across shards.
* A client blocked on a list a block pushes to is served after the block.
* Two threads: writers' blocks and MSETs across both threads' shards are
  never seen half done by readers (MGET, a block of GETs, GETs one by one).
"""

import threading
import time

import pytest

from resp import RespConn, to_py
from util import info_ints, keys_on_shards, wait_for

CONFIGS = [(1, True), (2, True), (4, True), (2, False)]


@pytest.fixture(scope="module")
def servers(damselfly_module):
    return {cfg: damselfly_module(f"--proactor_threads={cfg[0]}", f"--multi_exec_squash={str(cfg[1]).lower()}")
            for cfg in CONFIGS}


def shard_keys(threads, prefix):
    """Three keys on shard 0, and three on the last shard (the same shard with one thread)."""
    by = keys_on_shards(threads, 3, prefix)
    return by[0], by[threads - 1]


def blocks(threads):
    (a, b, c), (x, y, z) = shard_keys(threads, "sq")
    job = '{"class":"HardJob","args":[1,2,3],"queue":"default","jid":"b4a577edbccf1d805744efa9"}'
    return [
        # Sidekiq's push, three in a pipeline.
        [["MULTI"], ["SADD", "queues", "default"], ["LPUSH", "queue:default", job], ["EXEC"]] * 3,
        [["MULTI"], ["SET", a, "1"], ["INCR", a], ["INCRBY", a, "nope"], ["APPEND", a, "0"], ["GET", a],
         ["STRLEN", a], ["SETNX", a, "x"], ["GETSET", b, "g"], ["SET", c, "v", "EX", "100", "GET"], ["TTL", c],
         ["PERSIST", c], ["TTL", c], ["TYPE", a], ["EXEC"]],
        [["MULTI"], ["RPUSH", x, "1", "2", "3"], ["LPUSH", x, "0"], ["LRANGE", x, "0", "-1"], ["LPOP", x],
         ["RPOPLPUSH", x, y], ["LMOVE", y, z, "LEFT", "RIGHT"], ["LLEN", x], ["LINDEX", x, "0"], ["LREM", x, "0", "1"],
         ["LRANGE", z, "0", "-1"], ["EXEC"]],
        [["MULTI"], ["SADD", a + "s", "m"], ["SADD", a + "s", "m"], ["SISMEMBER", a + "s", "m"],
         ["SCARD", a + "s"], ["HSET", b, "f", "1"], ["HINCRBY", b, "f", "2"], ["HGET", b, "f"], ["HLEN", b],
         ["ZADD", c + "z", "1", "m", "2.5", "n"], ["ZINCRBY", c + "z", "1", "m"], ["ZRANGE", c + "z", "0", "-1", "WITHSCORES"],
         ["ZREMRANGEBYSCORE", c + "z", "-inf", "2"], ["ZCARD", c + "z"], ["EXEC"]],
        # Multi-key commands whose keys share a shard: one operation each, two-phase ones included.
        [["MULTI"], ["MSET", x, "1", y, "2"], ["MGET", x, y, z], ["EXISTS", x, y, z], ["RENAME", x, z],
         ["MSETNX", x, "a", y, "b"], ["DEL", y, z], ["EXISTS", x, y, z], ["SET", y, "5"], ["EXEC"], ["MGET", x, y, z]],
        # Errors at run time stay in place; the block goes on.
        [["SET", a, "str"], ["MULTI"], ["LPUSH", a, "x"], ["INCR", a], ["HSET", a, "f", "v"], ["GET", a],
         ["DEL", a], ["LPUSH", a, "y"], ["LRANGE", a, "0", "-1"], ["EXEC"]],
        # Not squashed: a command across shards, a keyless command, WATCH.
        [["MULTI"], ["SET", a, "1"], ["MSET", b, "2", y, "3"], ["MGET", a, b, y], ["EXEC"]],
        [["MULTI"], ["SET", a, "1"], ["PING"], ["GET", a], ["EXEC"]],
        [["WATCH", a], ["MULTI"], ["INCR", a], ["INCR", x], ["EXEC"]],
        # Expiry set and read inside one block.
        # (TTL, not PTTL: a millisecond may pass in either server.)
        [["MULTI"], ["SET", b, "t"], ["PEXPIRE", b, "100000"], ["TTL", b], ["EXPIRE", b, "0"], ["EXISTS", b],
         ["EXEC"]],
    ]


def state(c, threads):
    """The keys the blocks touch, read back type by type."""
    (a, b, c_), (x, y, z) = shard_keys(threads, "sq")
    out = [to_py(c.call("SMEMBERS", "queues")), to_py(c.call("LLEN", "queue:default"))]
    for k in (a, b, c_, x, y, z, a + "s", c_ + "z"):
        t = to_py(c.call("TYPE", k))
        out.append((k, t))
        if t == b"string":
            out.append(to_py(c.call("GET", k)))
        elif t == b"list":
            out.append(to_py(c.call("LRANGE", k, "0", "-1")))
        elif t == b"hash":
            out.append(to_py(c.call("HGET", k, "f")))
        elif t == b"zset":
            out.append(to_py(c.call("ZRANGE", k, "0", "-1", "WITHSCORES")))
        elif t == b"set":
            out.append(to_py(c.call("SCARD", k)))
        ttl = to_py(c.call("TTL", k))
        out.append(ttl if ttl <= 0 else "ttl>0")
    return out


def replay(port, threads):
    with RespConn(port) as c:
        c.call("FLUSHALL")
        replies = [c.pipeline(block) for block in blocks(threads)]
        return replies, state(c, threads)


@pytest.mark.parametrize("cfg", CONFIGS, ids=[f"{t}t-squash-{'on' if s else 'off'}" for t, s in CONFIGS])
def test_blocks_equal_redis(servers, redis_server, cfg):
    threads = cfg[0]
    ours = replay(servers[cfg].port, threads)
    theirs = replay(redis_server.port, threads)
    for i, (got, want) in enumerate(zip(ours[0], theirs[0])):
        assert got == want, f"block {i}:\n dfly={got}\nredis={want}"
    assert ours[1] == theirs[1]


def test_counters_say_which_blocks_were_squashed(servers):
    port = servers[(2, True)].port
    (a, b, _), (x, _, _) = shard_keys(2, "cnt")
    with RespConn(port) as c:
        def squashed(block):
            before = info_ints(port, "transaction", "multi_squash_execution_total", "multi_squash_commands_total")
            c.pipeline(block)
            after = info_ints(port, "transaction", "multi_squash_execution_total", "multi_squash_commands_total")
            return after[0] - before[0], after[1] - before[1]

        assert squashed([["MULTI"], ["SET", a, "1"], ["INCR", a], ["LPUSH", x, "j"], ["EXEC"]]) == (1, 3)
        assert squashed([["MULTI"], ["MSET", a, "1", b, "2"], ["GET", b], ["EXEC"]]) == (1, 2)
        assert squashed([["MULTI"], ["MSET", a, "1", x, "2"], ["EXEC"]]) == (0, 0)
        assert squashed([["MULTI"], ["SET", a, "1"], ["PING"], ["EXEC"]]) == (0, 0)
        assert squashed([["WATCH", a], ["MULTI"], ["SET", a, "1"], ["EXEC"]]) == (0, 0)
        assert squashed([["MULTI"], ["EXEC"]]) == (0, 0)
    off = servers[(2, False)].port
    with RespConn(off) as c:
        c.pipeline([["MULTI"], ["SET", a, "1"], ["INCR", a], ["EXEC"]])
    assert info_ints(off, "transaction", "multi_squash_execution_total") == (0,)


def blocked_pop_after_block(port, key):
    with RespConn(port) as admin, RespConn(port) as waiter, RespConn(port) as writer:
        admin.call("DEL", key)
        waiter.send_raw(b"*3\r\n$5\r\nBLPOP\r\n$%d\r\n%s\r\n$1\r\n5\r\n" % (len(key), key.encode()))
        wait_for(lambda: int(to_py(admin.call("INFO", "clients")).split(b"blocked_clients:")[1].split(b"\r\n")[0]) == 1,
                 what="the BLPOP to block")
        block = writer.pipeline([["MULTI"], ["RPUSH", key, "a"], ["RPUSH", key, "b"], ["LPOP", key], ["EXEC"]])
        return block, to_py(waiter.read_reply()), to_py(admin.call("LRANGE", key, "0", "-1"))


@pytest.mark.parametrize("cfg", [(1, True), (2, True)], ids=["1t", "2t"])
def test_blocked_client_served_after_the_block(servers, redis_server, cfg):
    for key in keys_on_shards(cfg[0], 1, "bq")[0] + keys_on_shards(cfg[0], 1, "bq")[cfg[0] - 1]:
        assert blocked_pop_after_block(servers[cfg].port, key) == blocked_pop_after_block(redis_server.port, key)


def test_two_threads_never_seen_half_done(servers, only_damselfly):
    port = servers[(2, True)].port
    (a, _, _), (b, _, _) = shard_keys(2, "half")
    with RespConn(port) as c:
        c.call("MSET", a, "0", b, "0")
    errors, stop = [], threading.Event()
    done = {"writes": 0, "reads": 0}

    def until_stopped(name, body):
        """A client thread: `body(conn)` over and over until the stop; any exception is an error."""
        def run():
            try:
                with RespConn(port) as c:
                    while not stop.is_set():
                        body(c)
            except Exception as e:  # noqa: BLE001
                errors.append((name, repr(e)))
        return threading.Thread(target=run)

    def write(c):
        rep = c.pipeline([["MULTI"], ["INCR", a], ["INCR", b], ["EXEC"]])
        vals = [v[1] for v in rep[-1][1]]
        if vals[0] != vals[1]:
            errors.append(("exec", vals))
        done["writes"] += 1

    def read(c):
        m = [int(v) for v in to_py(c.call("MGET", a, b))]
        if m[0] != m[1]:
            errors.append(("mget", m))
        rep = c.pipeline([["MULTI"], ["GET", a], ["GET", b], ["EXEC"]])
        vals = [int(v[1]) for v in rep[-1][1]]
        if vals[0] != vals[1]:
            errors.append(("exec-get", vals))
        first = int(to_py(c.call("GET", a)))
        second = int(to_py(c.call("GET", b)))
        if second < first:
            errors.append(("get-get", first, second))
        done["reads"] += 1

    def mset(c):
        n = done["msets"] = done.get("msets", 0) + 1
        c.call("MSET", a + ":m", str(n), b + ":m", str(n))
        got = [int(v) for v in to_py(c.call("MGET", a + ":m", b + ":m"))]
        if got[0] != got[1]:
            errors.append(("mset", got))

    threads = [until_stopped(name, body) for name, body in
               (("writer", write), ("writer", write), ("reader", read), ("reader", read), ("msetter", mset), ("msetter", mset))]
    for t in threads:
        t.start()
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join(10)
    assert not errors, errors[:5]
    assert done["writes"] > 50 and done["reads"] > 50, done
    with RespConn(port) as c:
        assert to_py(c.call("MGET", a, b)) == [str(done["writes"]).encode()] * 2


def keyevents_of_block(port, block):
    """The keyspace events (channel, key) a block's commands send, in the order a subscriber gets them."""
    with RespConn(port) as admin, RespConn(port) as sub, RespConn(port) as c:
        admin.call("FLUSHALL")
        admin.call("CONFIG", "SET", "notify-keyspace-events", "KEA")
        try:
            sub.call("PSUBSCRIBE", "__keyevent@0__:*")
            c.pipeline(block)
            c.call("SET", "end-marker", "1")
            events = []
            while True:
                msg = to_py(sub.read_reply())
                events.append((msg[2], msg[3]))
                if msg[3] == b"end-marker":
                    return events
        finally:
            admin.call("CONFIG", "SET", "notify-keyspace-events", "")


@pytest.mark.parametrize("cfg", [(2, True), (4, True)], ids=["2t", "4t"])
def test_keyspace_events_keep_the_block_order(servers, redis_server, cfg):
    """With notifications on, a block over several shards runs one command at a time: a subscriber
    gets its events in command order, as from Redis (squashed, the shards would run at once)."""
    (a, b, _), (x, y, _) = shard_keys(cfg[0], "ev")
    block = [["MULTI"], ["SET", a, "1"], ["LPUSH", x, "j"], ["SET", b, "2"], ["INCR", a], ["RPUSH", y, "k"],
             ["DEL", x], ["EXEC"]]
    assert keyevents_of_block(servers[cfg].port, block) == keyevents_of_block(redis_server.port, block)


def acl_changed_before_exec(port):
    """A user queues SET and GET, loses SET before EXEC: the block's replies, and whether the
    refused SET was counted in INFO commandstats (Redis neither runs nor counts it)."""
    with RespConn(port) as admin, RespConn(port) as c:
        admin.call("FLUSHALL")
        admin.call("CONFIG", "RESETSTAT")
        admin.call("ACL", "SETUSER", "sq", "on", ">pw", "+@all", "~*")
        try:
            c.call("AUTH", "sq", "pw")
            queued = [c.call("MULTI"), c.call("SET", "acl:k", "v"), c.call("GET", "acl:k")]
            admin.call("ACL", "SETUSER", "sq", "-set")
            replies = to_py(c.call("EXEC"))
            stats = to_py(admin.call("INFO", "commandstats"))
            set_calls = [line for line in stats.split(b"\r\n") if line.startswith(b"cmdstat_set:")]
            return queued, [r if not isinstance(r, Exception) else str(r) for r in replies], set_calls
        finally:
            admin.call("ACL", "DELUSER", "sq")


@pytest.mark.parametrize("cfg", [(2, True), (2, False)], ids=["squash-on", "squash-off"])
def test_acl_refusal_at_exec_equal_redis(servers, redis_server, cfg):
    assert acl_changed_before_exec(servers[cfg].port) == acl_changed_before_exec(redis_server.port)
