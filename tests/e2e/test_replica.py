"""Replication in Redis's protocol, replica side: Damselfly as the replica
(REPLICAOF / SLAVEOF) of a stock redis-server 7.0 and of Damselfly, under a
concurrent write load during and after the full sync; partial resync after a
cut link; promotion; the read-only refusal; ROLE and INFO replication.

Helpers (the write load, the key-by-key comparison) come from
test_replication.py, the master-side tests.
"""
import time

import pytest
import redis

from conftest import Factory, _failed
from test_replication import Load, assert_same_dataset, repl_info, stats, wait_for, wait_in_sync


@pytest.fixture
def servers(request, tmp_path):
    f = Factory(str(tmp_path))
    yield f
    f.close(failed=_failed(request.node))


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
    replica = servers.start("--proactor_threads=3")
    r = replica.client()
    r.set("stale", "gone after the sync")
    load = Load(master.port, 4.0).start()
    time.sleep(0.5)
    follow(r, master)
    load.join()
    wait_in_sync(m, r)
    assert r.get("stale") is None
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
    wait_in_sync(m, r)
    load = Load(master.port, 2.5).start()
    time.sleep(0.7)
    assert r.execute_command("CLIENT", "KILL", "TYPE", "master") == 1
    load.join()
    wait_in_sync(m, r)
    assert_same_dataset(m, r)
    st = stats(m)
    assert st["sync_full"] == 1
    assert st["sync_partial_ok"] >= 1


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
