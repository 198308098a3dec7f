"""Replication in Redis's protocol, master side: a stock redis-server 7.0 as
the replica of Damselfly (SYNC / PSYNC, the RDB, the write stream, the
backlog), WAIT, ROLE and INFO replication.

Each test starts its own servers; a dataset comparison walks every key of
both servers with typed reads (the DUMP payloads' encodings may differ
between the two implementations while the values are equal).
"""
import random
import threading
import time

import pytest
import redis

from conftest import Factory, _failed
from util import wait_for


@pytest.fixture
def servers(request, tmp_path):
    f = Factory(str(tmp_path))
    yield f
    f.close(failed=_failed(request.node))


def repl_info(client):
    """INFO replication as redis-py parses it (slaveN as a dict)."""
    return client.info("replication")


def stats(client):
    return client.info("stats")


def start_replica(servers, master_port):
    return servers.start_redis("--replicaof", "127.0.0.1", str(master_port), "--repl-diskless-load", "disabled")


def wait_in_sync(master, replica, timeout=30.0):
    """Until the replica is linked and has processed the master's whole stream."""
    def caught_up():
        r = repl_info(replica)
        if r.get("master_link_status") != "up":
            return False
        m = repl_info(master)
        return r.get("slave_repl_offset", -1) == m["master_repl_offset"]
    wait_for(caught_up, timeout=timeout, what="replica to catch up")


def snapshot(client, dbs=(0, 1)):
    """Every key of `dbs` as (type, value, expiry): the absolute expiry in
    seconds (PEXPIRETIME / 1000, -1 for none), so that two walks made at
    different times compare equal (a relative TTL read by the second walk is
    lower by however long the first took: seconds on a loaded machine)."""
    out = {}
    for db in dbs:
        c = redis.Redis(host="127.0.0.1", port=client.connection_pool.connection_kwargs["port"], db=db)
        for key in c.scan_iter(count=1000):
            t = c.type(key).decode()
            if t == "string":
                v = c.get(key)
            elif t == "list":
                v = c.lrange(key, 0, -1)
            elif t == "hash":
                v = sorted(c.hgetall(key).items())
            elif t == "set":
                v = sorted(c.smembers(key))
            elif t == "zset":
                v = c.zrange(key, 0, -1, withscores=True)
            elif t == "stream":
                v = c.xrange(key)
            elif t == "none":
                continue  # expired between SCAN and TYPE
            else:
                v = c.dump(key)
            at = c.pexpiretime(key)
            if at == -2:
                continue  # expired while being read
            out[(db, key)] = (t, v, at / 1000.0 if at >= 0 else -1)
    return out


def assert_same_dataset(master, replica, ttl_tolerance=1):
    a = snapshot(master)
    b = snapshot(replica)
    # A key about to expire may be gone by the time the second walk reaches it.
    soon = time.time() + 3
    short = {k for k, v in list(a.items()) + list(b.items()) if 0 <= v[2] <= soon}
    a = {k: v for k, v in a.items() if k not in short}
    b = {k: v for k, v in b.items() if k not in short}
    only_master = sorted(set(a) - set(b))
    only_replica = sorted(set(b) - set(a))
    assert not only_master and not only_replica, f"only on master: {only_master[:10]}, only on replica: {only_replica[:10]}"
    for k in a:
        ta, va, tla = a[k]
        tb, vb, tlb = b[k]
        assert (ta, va) == (tb, vb), f"{k}: {a[k]} != {b[k]}"
        assert (tla < 0) == (tlb < 0), f"{k}: ttl {tla} vs {tlb}"
        if ttl_tolerance is not None:
            assert abs(tla - tlb) <= ttl_tolerance, f"{k}: ttl {tla} vs {tlb}"
    return len(a)


class Load:
    """A concurrent write load of several types: strings with TTLs, lists
    popped by blocked clients, hashes, sets, sorted sets, MULTI/EXEC across
    shards, EVAL over several keys, and a second database."""

    def __init__(self, port, seconds):
        self.port = port
        self.stop_at = time.time() + seconds
        self.errors = []
        self.threads = []

    def run(self, fn, *args):
        def body():
            try:
                fn(*args)
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.errors.append(repr(e))
        t = threading.Thread(target=body, daemon=True)
        self.threads.append(t)
        t.start()

    def start(self):
        self.run(self.writer, 1)
        self.run(self.writer, 2)
        self.run(self.transactions)
        self.run(self.popper)
        return self

    def join(self):
        for t in self.threads:
            t.join(30)
        assert not self.errors, self.errors

    def writer(self, seed):
        rnd = random.Random(seed)
        c = redis.Redis(host="127.0.0.1", port=self.port)
        c1 = redis.Redis(host="127.0.0.1", port=self.port, db=1)
        i = 0
        while time.time() < self.stop_at:
            i += 1
            k = rnd.randrange(200)
            op = rnd.randrange(9)
            if op == 0:
                c.set(f"s:{k}", f"v{i}")
            elif op == 1:
                c.set(f"ttl:{k}", i, ex=rnd.choice([1, 100, 1000]))
            elif op == 2:
                c.hset(f"h:{k % 20}", f"f{k}", i)
            elif op == 3:
                c.sadd(f"set:{k % 20}", i % 50)
            elif op == 4:
                c.zadd(f"z:{k % 20}", {f"m{k}": i})
            elif op == 5:
                c.rpush(f"q:{k % 4}", i)
            elif op == 6:
                c.incrbyfloat(f"f:{k % 10}", 0.5)
            elif op == 7:
                c1.set(f"db1:{k}", i)
            else:
                c.delete(f"s:{k}")

    def transactions(self):
        c = redis.Redis(host="127.0.0.1", port=self.port)
        i = 0
        while time.time() < self.stop_at:
            i += 1
            p = c.pipeline(transaction=True)
            p.set("tx:a", i).set("tx:b", i).incr("tx:count").lpush("tx:list", i).ltrim("tx:list", 0, 9)
            p.execute()
            c.mset({f"m:{j}": i for j in range(6)})
            c.eval("redis.call('set', KEYS[1], ARGV[1]); redis.call('hincrby', KEYS[2], 'n', 1); "
                   "return redis.call('rpush', KEYS[3], ARGV[1])", 3, "ev:a", "ev:h", "ev:l", i)
            c.sunionstore("u:dest", ["set:1", "set:2", "set:3"])

    def popper(self):
        c = redis.Redis(host="127.0.0.1", port=self.port)
        while time.time() < self.stop_at:
            c.blpop([f"q:{j}" for j in range(4)], timeout=0.2)


def test_redis_replica_full_sync_under_load(servers):
    master = servers.start("--proactor_threads=4")
    m = master.client()
    for i in range(3000):
        m.set(f"pre:{i}", i)
    m.hset("pre:h", mapping={f"f{i}": i for i in range(100)})
    m.set("pre:ttl", 1, ex=500)
    load = Load(master.port, 4.0).start()
    time.sleep(0.5)
    replica = start_replica(servers, master.port)
    load.join()
    r = replica.client()
    wait_in_sync(m, r)
    n = assert_same_dataset(m, r)
    assert n > 3000
    st = stats(m)
    assert st["sync_full"] == 1
    # Writes after the sync keep flowing.
    m.set("after", "yes")
    wait_for(lambda: r.get("after") == b"yes", what="write after sync")


def test_link_cut_resumes_with_partial_resync(servers):
    master = servers.start("--proactor_threads=4")
    m = master.client()
    m.set("k", 1)
    replica = start_replica(servers, master.port)
    r = replica.client()
    cut_link_under_load(m, r, master.port)


def cut_link_under_load(m, r, master_port):
    """CLIENT KILL TYPE master on replica `r` while a load runs on `m`: the
    link comes back with a partial resync and the datasets end equal."""
    wait_in_sync(m, r)
    load = Load(master_port, 2.5).start()
    time.sleep(0.6)
    assert r.execute_command("CLIENT", "KILL", "TYPE", "master") == 1
    load.join()
    wait_in_sync(m, r)
    assert_same_dataset(m, r)
    st = stats(m)
    assert st["sync_full"] == 1
    assert st["sync_partial_ok"] >= 1


def test_wait_counts_replicas(servers):
    master = servers.start("--proactor_threads=2")
    m = master.client()
    assert m.execute_command("WAIT", 0, 0) == 0
    t0 = time.time()
    assert m.execute_command("WAIT", 1, 200) == 0
    assert time.time() - t0 >= 0.15
    replica = start_replica(servers, master.port)
    r = replica.client()
    wait_in_sync(m, r)
    m.set("w", 1)
    assert m.execute_command("WAIT", 1, 5000) == 1
    t0 = time.time()
    assert m.execute_command("WAIT", 2, 300) == 1
    assert time.time() - t0 >= 0.25


def test_role_and_info_replication_match_redis(servers):
    dfly = servers.start("--proactor_threads=2")
    real = servers.start_redis()
    shapes = []
    for master in (dfly, real):
        m = master.client()
        m.set("x", 1)
        replica = start_replica(servers, master.port)
        r = replica.client()
        wait_in_sync(m, r)
        m.set("y", 2)
        wait_in_sync(m, r)
        assert m.execute_command("WAIT", 1, 5000) == 1  # asks for a fresh ACK
        role = m.execute_command("ROLE")
        assert role[0] == b"master"
        assert role[1] == int(repl_info(m)["master_repl_offset"])
        assert len(role[2]) == 1
        assert role[2][0][1] == str(replica.port).encode()
        inf = repl_info(m)
        assert inf["role"] == "master" and inf["connected_slaves"] == 1
        fields = inf["slave0"]
        assert fields["ip"] == "127.0.0.1" and fields["port"] == replica.port and fields["state"] == "online"
        assert fields["offset"] > 0
        shapes.append((sorted(inf.keys()), sorted(fields.keys()), [type(x) for x in role]))
        assert inf["repl_backlog_active"] == 1
        assert inf["repl_backlog_histlen"] > 0
    assert shapes[0] == shapes[1]


def test_stream_carries_effects_not_commands(servers):
    """What a replica receives, seen by MONITOR on a redis-server replica:
    INCRBYFLOAT as SET ... KEEPTTL, HINCRBYFLOAT as HSET, and a key that
    expired on the master as DEL."""
    master = servers.start("--proactor_threads=2")
    m = master.client()
    replica = start_replica(servers, master.port)
    r = replica.client()
    wait_in_sync(m, r)
    seen = []
    mon = redis.Redis(host="127.0.0.1", port=replica.port)
    with mon.monitor() as feed:
        m.incrbyfloat("f", 1.5)
        m.hincrbyfloat("h", "x", 0.25)
        m.set("gone", 1, px=50)
        time.sleep(0.2)
        assert m.get("gone") is None  # lazy expiry on the master
        m.set("end", 1)
        for event in feed.listen():
            seen.append(event["command"])
            if event["command"].startswith("SET end"):
                break
    assert "SET f 1.5 KEEPTTL" in seen, seen
    assert "HSET h x 0.25" in seen, seen
    assert "DEL gone" in seen, seen
    assert not any(c.startswith("INCRBYFLOAT") or c.startswith("HINCRBYFLOAT") for c in seen), seen


def _refusals(c):
    """What min-replicas-to-write 1 without a good replica refuses and lets through."""
    out = []
    for cmd in (("SET", "x", "2"), ("GET", "x"), ("INCR", "n"), ("PING",)):
        try:
            out.append(c.execute_command(*cmd))
        except redis.ResponseError as e:
            out.append(f"error: {e}")
    for body in ("return redis.call('get', KEYS[1])", "#!lua flags=no-writes\nreturn redis.call('get', KEYS[1])",
                 "#!lua\nreturn redis.call('get', KEYS[1])", "return redis.call('set', KEYS[1], 3)"):
        try:
            out.append(c.eval(body, 1, "x"))
        except redis.ResponseError as e:
            out.append(f"error: {str(e).split(' script:')[0]}")
    p = c.pipeline(transaction=True)
    p.set("x", 4)
    try:
        p.execute()
        out.append("exec ran")
    except redis.ResponseError as e:
        out.append(f"exec error: {e}")
    return out


def test_min_replicas_to_write_as_redis(servers):
    """min-replicas-to-write refuses writes (commands, write scripts, MULTI) with NOREPLICAS
    while fewer replicas acknowledged within min-replicas-max-lag, as redis-server does."""
    master = servers.start("--proactor_threads=2")
    redis_master = servers.start_redis()
    replies = []
    for srv in (master, redis_master):
        c = srv.client()
        c.set("x", "1")
        assert c.config_set("min-replicas-to-write", 1)
        replies.append(_refusals(c))
    assert replies[0] == replies[1], replies
    assert replies[0][0] == "error: NOREPLICAS Not enough good replicas to write."
    assert replies[0][1] == b"1"

    # A replica that acknowledges makes writes possible again; asking for two refuses again.
    start_replica(servers, master.port)
    m = master.client()
    wait_for(lambda: _try_set(m), timeout=10, what="writes accepted with a good replica")
    assert m.config_set("min-replicas-to-write", 2)
    assert _refusals(m)[0] == "error: NOREPLICAS Not enough good replicas to write."
    assert m.config_set("min-replicas-to-write", 0)
    assert m.set("x", "5")


def _try_set(c):
    try:
        return c.set("x", "ok")
    except redis.ResponseError:
        return False
