"""Replication in Redis's protocol, replica side: Damselfly as the replica
(REPLICAOF / SLAVEOF) of a stock redis-server 7.0 and of Damselfly, under a
concurrent write load during and after the full sync; partial resync after a
cut link; promotion; the read-only refusal; ROLE and INFO replication.

Helpers (the write load, the key-by-key comparison) come from
test_replication.py, the master-side tests.
"""
import threading
import time

import pytest
import redis

from conftest import Factory, _failed
from test_replication import Load, assert_same_dataset, cut_link_under_load, repl_info, stats, wait_for, wait_in_sync


@pytest.fixture
def servers(request, tmp_path):
    f = Factory(str(tmp_path))
    yield f
    f.close(failed=_failed(request.node))


LIBRARY = ("#!lua name=replib\n"
           "redis.register_function('bump', function(keys, args) redis.call('incr', keys[1]); "
           "return redis.call('rpush', keys[2], args[1]) end)")


class LoadWithFunctions(Load):
    """The master-side tests' load plus FCALL of a library loaded before the sync."""

    def start(self):
        super().start()
        self.run(self.fcalls)
        return self

    def fcalls(self):
        c = redis.Redis(host="127.0.0.1", port=self.port)
        i = 0
        while time.time() < self.stop_at:
            i += 1
            c.fcall("bump", 2, "fn:count", "fn:list", i)
            c.hincrbyfloat("hf", f"x{i % 5}", 0.1)


def start_master(servers, kind):
    if kind == "redis":
        return start_redis_master(servers)
    return servers.start("--proactor_threads=4")


def start_redis_master(servers, *extra):
    # No 5-second wait for more replicas before a diskless full sync.
    return servers.start_redis("--repl-diskless-sync-delay", "0", *extra)


def follow(replica_client, master):
    assert replica_client.execute_command("REPLICAOF", "127.0.0.1", master.port) == b"OK"


@pytest.mark.parametrize("kind", ["redis", "damselfly"])
def test_damselfly_replica_full_sync_under_load(servers, kind):
    master = start_master(servers, kind)
    m = master.client()
    for i in range(3000):
        m.set(f"pre:{i}", i)
    m.hset("pre:h", mapping={f"f{i}": i for i in range(100)})
    m.set("pre:ttl", 1, ex=500)
    m.rpush("pre:list", *range(50))
    m.function_load(LIBRARY)
    replica = servers.start("--proactor_threads=3")
    r = replica.client()
    r.set("stale", "gone after the sync")
    load = LoadWithFunctions(master.port, 4.0).start()
    time.sleep(0.5)
    follow(r, master)
    load.join()
    wait_in_sync(m, r)
    assert r.get("stale") is None
    assert [dict(zip(lib[::2], lib[1::2]))[b"library_name"] for lib in r.function_list()] == [b"replib"]
    assert int(r.get("fn:count")) == r.llen("fn:list") > 0
    n = assert_same_dataset(m, r)
    assert n > 3000
    assert stats(m)["sync_full"] == 1
    # Writes after the sync keep flowing, MULTI/EXEC applied whole.
    p = m.pipeline(transaction=True)
    p.set("after:a", 1).lpush("after:l", "x").hset("after:h", "f", "v")
    p.execute()
    wait_for(lambda: r.get("after:a") == b"1" and r.hget("after:h", "f") == b"v", what="writes after the sync")
    wait_in_sync(m, r)
    assert_same_dataset(m, r)


@pytest.mark.parametrize("kind", ["redis", "damselfly"])
def test_link_cut_resumes_with_partial_resync(servers, kind):
    master = start_master(servers, kind)
    m = master.client()
    m.set("k", 1)
    replica = servers.start("--proactor_threads=2")
    r = replica.client()
    follow(r, master)
    cut_link_under_load(m, r, master.port)


def test_read_only_refusal_matches_redis(servers):
    master = start_redis_master(servers)
    real_replica = servers.start_redis("--replicaof", "127.0.0.1", str(master.port))
    replica = servers.start("--proactor_threads=2")
    r = replica.client()
    follow(r, master)
    wait_in_sync(master.client(), r)
    wait_in_sync(master.client(), real_replica.client())
    for client in (r, real_replica.client()):
        with pytest.raises(redis.exceptions.ReadOnlyError) as e:
            client.set("x", 1)
        assert str(e.value) == "You can't write against a read only replica."
    # Inside MULTI the write is refused when queued, and EXEC aborts.
    replies = []
    for client in (r, real_replica.client()):
        p = client.pipeline(transaction=True)
        p.get("a").lpush("l", 1)
        with pytest.raises(redis.exceptions.ResponseError) as e:
            p.execute()
        replies.append((type(e.value), str(e.value)))
    assert replies[0] == replies[1]
    # Reads are served; CONFIG SET replica-read-only no lets writes in.
    r.config_set("replica-read-only", "no")
    assert r.set("local", 1)
    r.config_set("replica-read-only", "yes")


SCRIPT_LIBRARY = ("#!lua name=rolib\n"
                  "redis.register_function('w', function(keys, args) return redis.call('set', keys[1], 1) end)\n"
                  "redis.register_function{function_name='r', callback=function(keys, args) "
                  "return redis.call('get', keys[1]) end, flags={'no-writes'}}")

SCRIPT_CALLS = [
    ("EVAL", "return redis.call('get', KEYS[1])", 1, "k"),
    ("EVAL", "redis.call('get', KEYS[1]); return redis.call('set', KEYS[1], 1)", 1, "k"),
    ("EVAL", "return redis.pcall('incr', KEYS[1])", 1, "k"),
    ("EVAL", "local ok = pcall(redis.call, 'set', KEYS[1], 1); return redis.call('get', KEYS[1])", 1, "k"),
    ("EVAL", "#!lua\nreturn redis.call('get', KEYS[1])", 1, "k"),
    ("EVAL", "#!lua flags=no-writes\nreturn redis.call('get', KEYS[1])", 1, "k"),
    ("EVAL_RO", "return redis.call('set', KEYS[1], 1)", 1, "k"),
    ("EVAL_RO", "#!lua\nreturn 1", 0),
    ("EVAL", "return redis.call('publish', 'chan', 'x')", 0),
    ("FCALL", "w", 1, "k"),
    ("FCALL", "r", 1, "k"),
    ("FCALL_RO", "r", 1, "k"),
    ("FCALL_RO", "w", 1, "k"),
]


def test_scripts_on_read_only_replica_match_redis(servers):
    """A script runs on a read-only replica and fails at its first write from
    redis.call (error text and script location as Redis's); one that declares
    writes (a #!lua line without no-writes, a function without the flag) is
    refused whole; read-only scripts and functions work."""
    master = start_redis_master(servers)
    m = master.client()
    m.set("k", "v")
    m.function_load(SCRIPT_LIBRARY)
    real = servers.start_redis("--replicaof", "127.0.0.1", str(master.port))
    dfly = servers.start("--proactor_threads=2")
    follow(dfly.client(), master)
    out = []
    for server in (real, dfly):
        c = server.client()
        wait_in_sync(m, c)
        got = []
        for args in SCRIPT_CALLS:
            try:
                got.append(c.execute_command(*args))
            except redis.exceptions.ResponseError as e:
                got.append((type(e).__name__, str(e)))
        # The same script by its SHA; and with replica-read-only no it writes.
        sha = c.script_load("redis.call('get', KEYS[1]); return redis.call('set', KEYS[1], 'local')")
        try:
            got.append(c.evalsha(sha, 1, "k"))
        except redis.exceptions.ResponseError as e:
            got.append((type(e).__name__, str(e)))
        c.config_set("replica-read-only", "no")
        got.append(c.evalsha(sha, 1, "k"))
        got.append(c.fcall("w", 1, "k2"))
        c.config_set("replica-read-only", "yes")
        got.append(c.get("k"))
        out.append(got)
    assert out[0] == out[1]
    assert out[0][1][1].startswith("You can't write against a read only replica. script: ")
    assert out[0][4] == ("ReadOnlyError", "You can't write against a read only replica.")


def test_stale_data_refusal_matches_redis(servers):
    """A replica whose master is unreachable, with replica-serve-stale-data no."""
    real = servers.start_redis()
    dfly = servers.start("--proactor_threads=2")
    dead = real.port + 1 if real.port < 65000 else real.port - 1
    out = []
    for server in (real, dfly):
        c = server.client()
        c.config_set("replica-serve-stale-data", "no")
        c.execute_command("REPLICAOF", "127.0.0.1", dead)
        got = []
        for args in (("GET", "k"), ("SET", "k", 1), ("PING",), ("ECHO", "e"), ("INFO", "replication")):
            try:
                reply = c.execute_command(*args)
                got.append("ok" if args[0] == "INFO" else reply)
            except redis.exceptions.ResponseError as e:
                got.append((type(e).__name__, str(e)))
        assert repl_info(c)["master_link_status"] == "down"
        out.append(got)
    assert out[0] == out[1]
    assert out[0][0][1].startswith("Link with MASTER is down")


def test_replicaof_replies_and_errors_match_redis(servers):
    master = start_redis_master(servers)
    real = servers.start_redis()
    dfly = servers.start("--proactor_threads=2")
    for server in (real, dfly):
        c = server.client()
        out = []
        for args in (("REPLICAOF", "127.0.0.1", "notaport"), ("REPLICAOF", "127.0.0.1", "70000"), ("SLAVEOF", "a")):
            try:
                out.append(c.execute_command(*args))
            except redis.exceptions.ResponseError as e:
                out.append(("error", str(e)))
        assert c.execute_command("REPLICAOF", "NO", "ONE") == b"OK"
        assert c.execute_command("REPLICAOF", "127.0.0.1", master.port) == b"OK"
        out.append(c.execute_command("SLAVEOF", "127.0.0.1", master.port))
        assert c.execute_command("REPLICAOF", "no", "one") == b"OK"
        if server is real:
            expected = out
        else:
            assert out == expected


def test_promotion_keeps_history_and_accepts_writes(servers):
    master = start_redis_master(servers)
    m = master.client()
    # No PING into the stream meanwhile: the second replica must find the offset the first was promoted at.
    m.config_set("repl-ping-replica-period", 3600)
    m.set("a", 1)
    replica = servers.start("--proactor_threads=2")
    r = replica.client()
    follow(r, master)
    wait_in_sync(m, r)
    m.set("b", 2)
    wait_in_sync(m, r)
    before = repl_info(r)
    assert before["role"] == "slave" and before["master_link_status"] == "up"
    assert before["master_replid"] == repl_info(m)["master_replid"]
    role = r.execute_command("ROLE")
    assert role[0] == b"slave" and role[2] == master.port and role[3] == b"connected"
    assert role[4] == before["slave_repl_offset"]
    assert r.execute_command("REPLICAOF", "NO", "ONE") == b"OK"
    after = repl_info(r)
    assert after["role"] == "master"
    assert after["master_replid2"] == before["master_replid"]
    assert after["second_repl_offset"] == before["slave_repl_offset"] + 1
    assert r.set("c", 3) and r.get("a") == b"1" and r.get("b") == b"2"
    # A redis-server replica of the old master PSYNCs on with the promoted one.
    other = servers.start_redis("--replicaof", "127.0.0.1", str(master.port))
    o = other.client()
    wait_in_sync(m, o)
    o.execute_command("REPLICAOF", "127.0.0.1", replica.port)
    wait_for(lambda: repl_info(o).get("master_link_status") == "up", what="replica of the promoted server")
    assert stats(r)["sync_partial_ok"] == 1 and stats(r)["sync_full"] == 0
    r.set("d", 4)
    wait_for(lambda: o.get("d") == b"4", what="write through the promoted master")
    assert o.get("c") == b"3"


def test_replica_hides_expired_keys_until_masters_del(servers):
    master = start_redis_master(servers, "--enable-debug-command", "yes")
    m = master.client()
    replica = servers.start("--proactor_threads=2")
    r = replica.client()
    follow(r, master)
    wait_in_sync(m, r)
    m.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", 0)
    m.set("short", 1, px=200)
    wait_in_sync(m, r)
    time.sleep(0.4)
    assert r.get("short") is None and r.exists("short") == 0
    assert r.dbsize() == 1  # kept until the master's DEL
    assert m.get("short") is None  # the master's lazy expiry sends DEL
    wait_for(lambda: r.dbsize() == 0, what="the master's DEL")


class JobLoad:
    """A job queue in use: a producer LPUSHes job ids, workers BRPOP them and
    count each run in a hash. `switch(port)` moves everyone to another server
    between two operations (as a deploy does after the cut-over)."""

    def __init__(self, port, workers=3):
        self.port = port
        self.produced = 0
        self.stop = threading.Event()
        self.hold = threading.Event()
        self.idle = [threading.Event() for _ in range(workers + 1)]
        self.errors = []
        self.threads = [threading.Thread(target=self.guard, args=(self.producer, 0), daemon=True)]
        self.threads += [threading.Thread(target=self.guard, args=(self.worker, i + 1), daemon=True) for i in range(workers)]

    def guard(self, fn, slot):
        try:
            fn(slot)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(e))

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)

    def pause_point(self, slot, port):
        """Between operations: parks while held; returns the client to use next."""
        if self.hold.is_set():
            self.idle[slot].set()
            while self.hold.is_set() and not self.stop.is_set():
                time.sleep(0.01)
            self.idle[slot].clear()
        return port != self.port

    def producer(self, slot):
        c, port = self.client(), self.port
        while not self.stop.is_set():
            if self.pause_point(slot, port):
                c, port = self.client(), self.port
            if self.stop.is_set():
                break
            self.produced += 1
            c.lpush("jobs", self.produced)
            time.sleep(0.002)

    def worker(self, slot):
        c, port = self.client(), self.port
        while True:
            if self.pause_point(slot, port):
                c, port = self.client(), self.port
            got = c.brpop("jobs", timeout=0.1)
            if got:
                c.hincrby("runs", got[1], 1)
            elif self.stop.is_set():
                break

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def switch(self, before_switch):
        self.hold.set()
        for e in self.idle:
            assert e.wait(10), "a job thread did not reach a pause point"
        before_switch()
        self.port = self.new_port
        self.hold.clear()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(20)
        assert not self.errors, self.errors


def test_live_migration_from_redis_loses_no_job(servers):
    """redis-server with data and a running job queue; Damselfly REPLICAOF it,
    catches up, the clients stop for the cut-over, REPLICAOF NO ONE, and the
    jobs go on on Damselfly: every job produced ran exactly once."""
    master = start_redis_master(servers)
    m = master.client()
    for i in range(0, 20000, 1000):
        m.mset({f"data:{j}": j for j in range(i, i + 1000)})
    jobs = JobLoad(master.port).start()
    time.sleep(0.5)
    dfly = servers.start("--proactor_threads=3")
    d = dfly.client()
    follow(d, master)
    wait_for(lambda: repl_info(d).get("master_link_status") == "up", what="the link")
    time.sleep(1.0)  # the queue keeps running against redis meanwhile

    def cut_over():
        wait_in_sync(m, d)
        assert d.execute_command("REPLICAOF", "NO", "ONE") == b"OK"

    jobs.new_port = dfly.port
    jobs.switch(cut_over)
    time.sleep(1.0)  # and now against Damselfly
    jobs.finish()
    wait_for(lambda: d.llen("jobs") == 0, what="the queue to drain")
    runs = {int(k): int(v) for k, v in d.hgetall("runs").items()}
    assert jobs.produced > 100
    assert sorted(runs) == list(range(1, jobs.produced + 1)), "a job was lost"
    assert set(runs.values()) == {1}, "a job ran twice"
    assert d.dbsize() == 20000 + 1
    # Nothing was written to redis after the cut-over.
    assert m.hlen("runs") < len(runs)


def test_masterauth_and_masteruser(servers):
    """A master that wants AUTH: the password alone (masterauth), then an ACL user (masteruser)."""
    master = start_redis_master(servers, "--requirepass", "sekret")
    m = redis.Redis(host="127.0.0.1", port=master.port, password="sekret")
    m.execute_command("ACL", "SETUSER", "repl", "on", ">replpw", "+psync", "+replconf", "+ping")
    m.set("k", "v")
    replica = servers.start("--proactor_threads=2")
    r = replica.client()
    follow(r, master)
    time.sleep(0.5)
    assert repl_info(r)["master_link_status"] == "down"  # no password yet
    r.config_set("masterauth", "sekret")
    wait_for(lambda: r.get("k") == b"v", what="sync with masterauth")
    r.execute_command("REPLICAOF", "NO", "ONE")
    r.flushall()
    r.config_set("masteruser", "repl")
    r.config_set("masterauth", "replpw")
    follow(r, master)
    wait_for(lambda: r.get("k") == b"v", what="sync as masteruser")
