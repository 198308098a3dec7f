"""MULTI / EXEC / DISCARD / WATCH / UNWATCH end to end.

Command sequences (queuing errors, runtime errors, nesting, keyless blocks,
blocks across shards, RESP3 reply shapes, Sidekiq's heartbeat and dead-set
trim) are sent to Damselfly (4 threads / 4 shards) and to a real
redis-server 7.0; the raw tagged replies must be equal.  WATCH scenarios with a
second connection are deterministic and compared too.  The atomicity checks
under concurrent writers on other threads are Damselfly-only and bounded.
"""

import threading
import time

import pytest

from resp import RespConn, to_py
from util import keys_on_shards

NUM_SHARDS = 4


@pytest.fixture(scope="module")
def dfly(damselfly_module):
    return damselfly_module(f"--proactor_threads={NUM_SHARDS}")


@pytest.fixture(scope="module")
def servers(dfly, redis_server):
    return [("damselfly", dfly), ("redis", redis_server)]


def keys(prefix, n=1):
    return keys_on_shards(NUM_SHARDS, n, prefix)


def run_both(servers, scenario):
    out = {}
    for name, srv in servers:
        with RespConn(srv.port) as admin:
            admin.call("FLUSHALL")
        out[name] = scenario(srv.port)
    a, b = out["damselfly"], out["redis"]
    assert a == b, "\n".join(f"{i}: dfly={x!r}\n   redis={y!r}" for i, (x, y) in enumerate(zip(a, b)) if x != y) or (a, b)
    return a


def seq(servers, cmds, proto=2):
    def scenario(port):
        with RespConn(port) as c:
            if proto == 3:
                c.call("HELLO", "3")
            return [c.call(*cmd) for cmd in cmds]
    return run_both(servers, scenario)


KS = keys("mx", 2)
K0, K1, K2, K3 = (KS[s][0] for s in range(NUM_SHARDS))
K0b = KS[0][1]

SEQUENCES = {
    "basic": [["MULTI"], ["SET", K0, "1"], ["INCR", K0], ["GET", K0], ["EXEC"], ["GET", K0]],
    "empty": [["MULTI"], ["EXEC"]],
    "nested": [["MULTI"], ["SET", K0, "a"], ["MULTI"], ["GET", K0], ["EXEC"], ["GET", K0]],
    "exec_without_multi": [["EXEC"], ["DISCARD"], ["SET", K0, "v"], ["EXEC"], ["GET", K0]],
    "discard": [["SET", K0, "old"], ["MULTI"], ["SET", K0, "new"], ["DEL", K1], ["DISCARD"], ["GET", K0],
                ["EXEC"], ["MULTI"], ["DISCARD"], ["DISCARD"]],
    "unknown_command_aborts": [["MULTI"], ["SET", K0, "1"], ["FOOBAR", K1], ["SET", K1, "2"], ["EXEC"],
                               ["MGET", K0, K1], ["EXEC"]],
    "wrong_arity_aborts": [["MULTI"], ["SET", K0, "1"], ["GET"], ["INCR", K0], ["EXEC"], ["GET", K0]],
    "wrong_arity_then_discard": [["MULTI"], ["SET", K0], ["DISCARD"], ["MULTI"], ["SET", K0, "x"], ["EXEC"]],
    "watch_inside_multi": [["MULTI"], ["SET", K0, "1"], ["WATCH", K1], ["UNWATCH"], ["EXEC"], ["GET", K0]],
    "runtime_errors_in_place": [["SET", K0, "str"], ["MULTI"], ["LPUSH", K0, "x"], ["INCR", K0], ["APPEND", K0, "!"],
                                ["SET", K1, "5"], ["INCRBY", K1, "notanint"], ["INCR", K1], ["GET", K0],
                                ["EXEC"]],
    "keyless": [["MULTI"], ["PING"], ["ECHO", "hi"], ["PING", "x"], ["EXEC"]],
    "cross_shard": [["MULTI"], ["SET", K0, "a"], ["SET", K1, "b"], ["MSET", K2, "c", K3, "d"],
                    ["MGET", K0, K1, K2, K3], ["RENAME", K0, K3], ["DEL", K1, K2], ["EXISTS", K0, K1, K2, K3],
                    ["GET", K3], ["EXEC"], ["MGET", K0, K1, K2, K3]],
    "lists_sets_hashes": [["MULTI"], ["RPUSH", K0, "a", "b"], ["LMOVE", K0, K1, "LEFT", "RIGHT"], ["SADD", K2, "m"],
                          ["SMEMBERS", K2], ["HSET", K3, "f", "v"], ["HGETALL", K3], ["LRANGE", K1, "0", "-1"],
                          ["EXEC"]],
    "zrange_withscores": [["MULTI"], ["ZADD", K0, "1", "a", "2.5", "b"], ["ZRANGE", K0, "0", "-1", "WITHSCORES"],
                          ["ZSCORE", K0, "b"], ["ZINCRBY", K0, "1", "a"], ["EXEC"]],
    "select_inside": [["MULTI"], ["SET", K0, "db0"], ["SELECT", "1"], ["SET", K0, "db1"], ["GET", K0],
                      ["SELECT", "0"], ["GET", K0], ["EXEC"], ["GET", K0], ["SELECT", "1"], ["GET", K0],
                      ["FLUSHDB"], ["SELECT", "0"]],
    "flushdb_inside": [["SET", K1, "x"], ["MULTI"], ["SET", K0, "1"], ["FLUSHDB"], ["SET", K2, "2"], ["DBSIZE"],
                       ["EXEC"], ["MGET", K0, K1, K2]],
    "sidekiq_heartbeat": [["MULTI"], ["SADD", "processes", "host:1:abc"], ["EXISTS", "host:1:abc"],
                          ["HSET", "host:1:abc", "info", '{"hostname":"host"}', "busy", "0", "beat", "1700000000.5",
                           "quiet", "false", "rss", "1024"],
                          ["EXPIRE", "host:1:abc", "60"], ["RPOP", "host:1:abc-signals"], ["EXEC"],
                          ["TTL", "host:1:abc"], ["SMEMBERS", "processes"]],
    "sidekiq_dead_trim": [["MULTI"], ["ZADD", "dead", "1700000000.5", '{"jid":"1"}'],
                          ["ZREMRANGEBYSCORE", "dead", "-inf", "1600000000"],
                          ["ZREMRANGEBYRANK", "dead", "0", "-10001"], ["EXEC"], ["ZCARD", "dead"]],
    "queued_replies": [["MULTI"], ["SET", K0, "1"], ["GET", K0], ["BOGUSCMD"], ["DISCARD"], ["GET", K0]],
}


@pytest.mark.parametrize("proto", [2, 3])
@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_sequences_equal_redis(servers, name, proto):
    seq(servers, SEQUENCES[name], proto)


def test_pipelined_block_equal_redis(servers):
    def scenario(port):
        with RespConn(port) as c:
            return c.pipeline([["MULTI"], ["INCR", K0], ["INCR", K1], ["FOO"], ["EXEC"],
                               ["MULTI"], ["INCR", K0], ["INCR", K1], ["LPUSH", K2, "a"], ["EXEC"],
                               ["MGET", K0, K1]])
    run_both(servers, scenario)


# ---------------------------------------------------------------------------
# WATCH
# ---------------------------------------------------------------------------

def two(port):
    return RespConn(port), RespConn(port)


def test_watch_aborts_after_other_clients_write(servers):
    def scenario(port):
        a, b = two(port)
        try:
            out = [a.call("SET", K0, "1"), a.call("WATCH", K0, K2)]
            out.append(b.call("SET", K2, "changed"))          # write by another connection / shard
            out += a.pipeline([["MULTI"], ["SET", K0, "2"], ["GET", K0], ["EXEC"]])   # null array
            out.append(a.call("GET", K0))
            # after EXEC the watch is gone: the next block goes through
            out.append(b.call("SET", K2, "again"))
            out += a.pipeline([["MULTI"], ["SET", K0, "3"], ["EXEC"]])
            return out
        finally:
            a.close()
            b.close()
    out = run_both(servers, scenario)
    assert out[6] == ("*", None), out


@pytest.mark.parametrize("proto", [2, 3])
def test_watch_cases_equal_redis(servers, proto):
    def scenario(port):
        a, b = two(port)
        try:
            if proto == 3:
                a.call("HELLO", "3")
            out = []
            # watched key missing, then created elsewhere
            out += [a.call("WATCH", K1), b.call("LPUSH", K1, "x")]
            out += a.pipeline([["MULTI"], ["GET", K3], ["EXEC"]])
            # UNWATCH forgets
            out += [a.call("WATCH", K1), a.call("UNWATCH"), b.call("DEL", K1)]
            out += a.pipeline([["MULTI"], ["GET", K3], ["EXEC"]])
            # DISCARD forgets
            out += [a.call("WATCH", K2), a.call("MULTI"), a.call("DISCARD"), b.call("SET", K2, "y")]
            out += a.pipeline([["MULTI"], ["SET", K3, "1"], ["EXEC"]])
            # unrelated write does not abort
            out += [a.call("WATCH", K0, K0b), b.call("SET", K1, "other")]
            out += a.pipeline([["MULTI"], ["INCR", K3], ["EXEC"]])
            # own write aborts
            out += [a.call("WATCH", K0b), a.call("SET", K0b, "mine")]
            out += a.pipeline([["MULTI"], ["INCR", K3], ["EXEC"]])
            # a delete of a watched key aborts; FLUSHALL aborts
            out += [a.call("WATCH", K0b), b.call("DEL", K0b)]
            out += a.pipeline([["MULTI"], ["INCR", K3], ["EXEC"]])
            out += [a.call("SET", K2, "z"), a.call("WATCH", K2), b.call("FLUSHALL")]
            out += a.pipeline([["MULTI"], ["INCR", K3], ["EXEC"]])
            # several watched keys on several shards, one touched through MULTI/EXEC of another client
            out += [a.call("WATCH", K0, K1, K2, K3)]
            out += b.pipeline([["MULTI"], ["SET", K1, "m"], ["EXEC"]])
            out += a.pipeline([["MULTI"], ["INCR", K3], ["EXEC"]])
            out.append(a.call("GET", K3))
            return out
        finally:
            a.close()
            b.close()
    run_both(servers, scenario)


def test_watch_expiry_aborts_equal_redis(servers):
    def scenario(port):
        a, b = two(port)
        try:
            out = [a.call("SET", K1, "v", "PX", "60"), a.call("WATCH", K1)]
            time.sleep(0.2)
            out += a.pipeline([["MULTI"], ["SET", K2, "1"], ["EXEC"]])
            out.append(a.call("EXISTS", K2))
            return out
        finally:
            a.close()
            b.close()
    run_both(servers, scenario)


# ---------------------------------------------------------------------------
# atomicity under concurrent writers (Damselfly only, bounded)
# ---------------------------------------------------------------------------

def test_exec_atomic_across_shards_under_concurrency(dfly, only_damselfly):
    ks = keys("atom")
    ctr = [ks[s][0] for s in range(NUM_SHARDS)]
    writers, rounds = 3, 150
    errors = []

    def writer(i):
        try:
            with RespConn(dfly.port) as c:
                for r in range(rounds):
                    rep = c.pipeline([["MULTI"]] + [["INCR", k] for k in ctr] +
                                     [["RPUSH", ctr[0] + ":log", f"{i}:{r}"], ["EXEC"]])
                    vals = [x[1] for x in rep[-1][1]]
                    # inside one block all four counters move together
                    if len(set(vals[:4])) != 1:
                        errors.append(("exec", vals))
        except Exception as e:  # noqa: BLE001
            errors.append(("writer", repr(e)))

    stop = threading.Event()
    seen = {"reads": 0}

    def reader():
        try:
            with RespConn(dfly.port) as c:
                while not stop.is_set() and seen["reads"] < 5000:
                    rep = c.pipeline([["MULTI"]] + [["GET", k] for k in ctr] + [["EXEC"]])
                    vals = [x[1] for x in rep[-1][1]]
                    if len(set(vals)) != 1:
                        errors.append(("read-exec", vals))
                    m = to_py(c.call("MGET", *ctr))
                    if len(set(m)) != 1:
                        errors.append(("mget", m))
                    seen["reads"] += 1
        except Exception as e:  # noqa: BLE001
            errors.append(("reader", repr(e)))

    ts = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    rt = [threading.Thread(target=reader) for _ in range(2)]
    for t in ts + rt:
        t.start()
    for t in ts:
        t.join(60)
    stop.set()
    for t in rt:
        t.join(10)
    assert not errors, errors[:5]
    with RespConn(dfly.port) as c:
        assert to_py(c.call("MGET", *ctr)) == [str(writers * rounds).encode()] * NUM_SHARDS
        assert c.call("LLEN", ctr[0] + ":log") == (":", writers * rounds)
    assert seen["reads"] > 0


def test_watch_optimistic_increment_from_several_threads(dfly, only_damselfly):
    ks = keys("opt")
    k, other = ks[1][0], ks[2][0]
    workers, per_worker = 4, 40
    errors, aborts = [], [0]

    def worker():
        try:
            with RespConn(dfly.port) as c:
                done = 0
                for _attempt in range(per_worker * 50):
                    if done == per_worker:
                        break
                    c.call("WATCH", k)
                    v = int(to_py(c.call("GET", k)) or 0)
                    rep = c.pipeline([["MULTI"], ["SET", k, str(v + 1)], ["INCR", other], ["EXEC"]])
                    if rep[-1] == ("*", None):
                        aborts[0] += 1
                    else:
                        done += 1
                if done != per_worker:
                    errors.append(("starved", done))
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    ts = [threading.Thread(target=worker) for _ in range(workers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors
    with RespConn(dfly.port) as c:
        total = workers * per_worker
        assert to_py(c.call("GET", k)) == str(total).encode()
        assert to_py(c.call("GET", other)) == str(total).encode()   # no lost update, no applied abort
