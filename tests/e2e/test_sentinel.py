"""Redis Sentinel (Debian's redis-sentinel, 7.0) managing a Damselfly master.

Two sentinels on loopback monitor a Damselfly master with a stock
redis-server replica. They must see both (INFO replication, SENTINEL MASTER /
REPLICAS), find each other through `__sentinel__:hello` messages that pass
through Damselfly's PUBLISH / SUBSCRIBE, and, when the master is killed with
SIGKILL during a write load whose writes are acknowledged by `WAIT 1 1000`,
promote the replica without losing an acknowledged write. The same with Damselfly
on both sides: a Damselfly replica (REPLICAOF) is promoted, and the old master,
restarted on its port, is turned into a replica of the new one by the sentinel.
Another test has a sentinel stop a runaway script with SCRIPT KILL.

Timeouts are small (down-after 1 s, failover-timeout 3 s) so the file stays
well under a minute.
"""
import os
import threading
import time

import pytest
import redis

from conftest import DAMSELFLY_BIN, Server, private_dir
from resp import to_py
from util import require_tool, wait_for

MASTER = "mymaster"


def start_sentinel(servers, master_port, quorum=1):
    binary = require_tool("redis-sentinel")

    def argv(port, workdir):
        conf = os.path.join(workdir, "sentinel.conf")
        with open(conf, "w") as f:
            f.write(
                f"port {port}\nbind 127.0.0.1\ndir {workdir}\nsentinel resolve-hostnames no\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {master_port} {quorum}\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\n"
                f"sentinel failover-timeout {MASTER} 3000\n"
                f"sentinel parallel-syncs {MASTER} 1\n")
        return [binary, conf]
    return servers.start_tool("sentinel", argv)


def fields(reply):
    """SENTINEL MASTER / REPLICAS entries (flat field, value lists) as a dict of str."""
    return {reply[i].decode(): reply[i + 1].decode() for i in range(0, len(reply), 2)}


def sentinel_cmd(sentinel, *args):
    """SENTINEL's raw reply (redis-py would reshape SENTINEL MASTER & co)."""
    with sentinel.raw() as c:
        return to_py(c.call("SENTINEL", *args))


def kill9(servers, srv):
    """SIGKILL, and tell the factory not to expect a clean exit from it."""
    srv.proc.kill()
    srv.proc.wait()
    servers.servers.remove(srv)


@pytest.fixture(scope="module")
def servers(factory_module):
    return factory_module


@pytest.fixture(scope="module")
def setup(servers):
    master = servers.start("--proactor_threads=2")
    replica = servers.start_redis("--replicaof", "127.0.0.1", str(master.port))
    wait_for(lambda: master.client().info("replication").get("slave0", {}).get("state") == "online",
             what="replica online")
    sentinels = [start_sentinel(servers, master.port) for _ in range(2)]
    return master, replica, sentinels


def test_sentinels_see_master_replica_and_each_other(setup):
    master, replica, sentinels = setup
    run_id = master.client().info("server")["run_id"]

    # Each sentinel announces itself on the master's hello channel every 2 s: read them
    # from Damselfly itself, so the discovery below is known to pass through it.
    sub = master.client().pubsub()
    sub.subscribe("__sentinel__:hello")
    heard = set()
    deadline = time.time() + 10
    while time.time() < deadline and len(heard) < 2:
        m = sub.get_message(timeout=0.5)
        if m and m["type"] == "message":
            f = m["data"].decode().split(",")
            assert len(f) == 8 and f[4] == MASTER and f[6] == str(master.port), f
            heard.add(int(f[1]))
    sub.close()
    assert heard == {s.port for s in sentinels}

    for s in sentinels:
        wait_for(lambda: fields(sentinel_cmd(s, "MASTER", MASTER))["num-other-sentinels"] == "1",
                 what="the other sentinel discovered through hello messages")
        wait_for(lambda: fields(sentinel_cmd(s, "MASTER", MASTER))["num-slaves"] == "1", what="replica discovered")
        m = fields(sentinel_cmd(s, "MASTER", MASTER))
        assert (m["ip"], m["port"], m["runid"], m["flags"], m["role-reported"]) == (
            "127.0.0.1", str(master.port), run_id, "master", "master")
        wait_for(lambda: fields(sentinel_cmd(s, "REPLICAS", MASTER)[0]).get("master-link-status") == "ok",
                 what="replica's INFO read")
        r = fields(sentinel_cmd(s, "REPLICAS", MASTER)[0])
        assert (r["ip"], r["port"], r["flags"], r["master-host"], r["master-port"]) == (
            "127.0.0.1", str(replica.port), "slave", "127.0.0.1", str(master.port))
        others = [fields(x) for x in sentinel_cmd(s, "SENTINELS", MASTER)]
        assert [int(o["port"]) for o in others] == [x.port for x in sentinels if x is not s]
        assert sentinel_cmd(s, "GET-MASTER-ADDR-BY-NAME", MASTER) == [b"127.0.0.1", str(master.port).encode()]

    # Sentinel's two links per instance, named as it names them.
    names = [c["name"] for c in master.client().client_list()]
    assert sum(n.startswith("sentinel-") and n.endswith("-cmd") for n in names) == 2
    assert sum(n.startswith("sentinel-") and n.endswith("-pubsub") for n in names) == 2


def test_failover_keeps_every_acknowledged_write(servers, setup):
    master, replica, sentinels = setup
    acked = acknowledged_writes_until_killed(servers, master, "w")

    for s in sentinels:
        wait_for(lambda: sentinel_cmd(s, "GET-MASTER-ADDR-BY-NAME", MASTER)[1] == str(replica.port).encode(),
                 timeout=30, what="the replica promoted")
    c = replica.client()
    assert c.execute_command("ROLE")[0] == b"master"
    values = c.mget([f"w:{i}" for i in acked])
    missing = [i for i, v in zip(acked, values) if v != str(i).encode()]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged writes missing on the new master"


def acknowledged_writes_until_killed(servers, master, prefix):
    """Writes acknowledged by WAIT 1 1000 until the master is killed (at least 200 of them)."""
    acked = []
    stop = threading.Event()

    def writer():
        c = master.client(socket_timeout=3)
        i = 0
        try:
            while not stop.is_set():
                c.set(f"{prefix}:{i}", i)
                if c.execute_command("WAIT", 1, 1000) >= 1:
                    acked.append(i)
                i += 1
        except (redis.ConnectionError, redis.TimeoutError):
            pass

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    wait_for(lambda: len(acked) >= 200, timeout=15, step=0.02, what="acknowledged writes")
    kill9(servers, master)
    t.join(10)
    stop.set()
    assert acked
    return acked


def test_damselfly_replica_promoted_and_old_master_rejoins(servers, tmp_path):
    flagfiles = [tmp_path / "master.flags", tmp_path / "replica.flags"]
    for f in flagfiles:
        f.write_text("--hz=10\n")  # CONFIG REWRITE, which Sentinel sends, needs a file
    master = servers.start(f"--flagfile={flagfiles[0]}", "--proactor_threads=2")
    replica = servers.start(f"--flagfile={flagfiles[1]}", "--proactor_threads=2")
    assert replica.client().execute_command("REPLICAOF", "127.0.0.1", master.port) == b"OK"
    wait_for(lambda: master.client().info("replication").get("slave0", {}).get("state") == "online",
             what="Damselfly replica online")
    sentinel = start_sentinel(servers, master.port)
    wait_for(lambda: fields(sentinel_cmd(sentinel, "MASTER", MASTER))["num-slaves"] == "1", what="replica discovered")
    wait_for(lambda: fields(sentinel_cmd(sentinel, "REPLICAS", MASTER)[0]).get("master-link-status") == "ok",
             what="replica's INFO read")

    old_port = master.port
    acked = acknowledged_writes_until_killed(servers, master, "d")
    wait_for(lambda: sentinel_cmd(sentinel, "GET-MASTER-ADDR-BY-NAME", MASTER)[1] == str(replica.port).encode(),
             timeout=30, what="the Damselfly replica promoted")
    c = replica.client()
    assert c.execute_command("ROLE")[0] == b"master"
    values = c.mget([f"d:{i}" for i in acked])
    assert all(v == str(i).encode() for i, v in zip(acked, values)), "an acknowledged write is missing"
    c.set("after-failover", "1")

    # The old master comes back empty on its old port: the sentinel makes it a replica of
    # the new master, and it receives the data.
    workdir = private_dir(servers.tmpdir, "damselfly")
    old = Server("damselfly", [DAMSELFLY_BIN, f"--port={old_port}", "--bind=127.0.0.1", "--logtostdout",
                               f"--dir={workdir}", f"--flagfile={flagfiles[0]}", "--proactor_threads=2"],
                 old_port, servers.tmpdir, False, workdir)
    old.wait_ready()
    servers.servers.append(old)
    wait_for(lambda: old.client().info("replication").get("master_port") == replica.port
             and old.client().info("replication").get("master_link_status") == "up",
             timeout=40, step=0.2, what="the old master reconfigured as a replica of the new one")
    wait_for(lambda: old.client().get("after-failover") == b"1", what="the data on the rejoined replica")
    assert old.client().execute_command("ROLE")[0] == b"slave"


def test_sentinel_kills_a_busy_script(servers):
    master = servers.start("--proactor_threads=2", "--lua_time_limit=100")
    sentinel = start_sentinel(servers, master.port)
    wait_for(lambda: fields(sentinel_cmd(sentinel, "MASTER", MASTER))["role-reported"] == "master",
             what="sentinel connected")
    result = {}

    def runaway():
        try:
            master.client(socket_timeout=30).eval("while true do end", 0)
        except redis.ResponseError as e:
            result["error"] = str(e)

    t = threading.Thread(target=runaway, daemon=True)
    t.start()
    # BUSY answers to its PINGs for down-after-milliseconds mark the master down, and the
    # sentinel sends SCRIPT KILL.
    t.join(20)
    assert not t.is_alive(), "the script was not killed"
    assert "killed" in result.get("error", "").lower(), result
    assert master.client().ping()
    stats = master.client().info("commandstats")
    # Only the sentinel sends SCRIPT here (Redis counts it as cmdstat_script|kill).
    script = stats.get("cmdstat_script|kill") or stats.get("cmdstat_script") or {}
    assert script.get("calls") == 1


def test_reconfiguration_block_as_sentinel_sends_it(servers, tmp_path):
    """What Sentinel sends an instance it reconfigures, less the REPLICAOF (Damselfly is no
    replica yet): CONFIG REWRITE and CLIENT KILL TYPE normal / pubsub inside one MULTI."""
    flagfile = tmp_path / "damselfly.flags"
    flagfile.write_text("--hz=10\n")
    srv = servers.start(f"--flagfile={flagfile}", "--proactor_threads=2")
    normal, subscriber = srv.raw(), srv.raw()
    assert normal.call("PING") == ("+", b"PONG")
    assert subscriber.call("SUBSCRIBE", "__sentinel__:hello")[0] == "*"
    with srv.raw() as s:
        s.call("CLIENT", "SETNAME", "sentinel-test-cmd")
        replies = s.pipeline([("MULTI",), ("CONFIG", "SET", "hz", "20"), ("CONFIG", "REWRITE"),
                              ("CLIENT", "KILL", "TYPE", "normal"), ("CLIENT", "KILL", "TYPE", "pubsub"), ("EXEC",)])
        assert replies[0] == ("+", b"OK") and all(r == ("+", b"QUEUED") for r in replies[1:5])
        assert replies[5] == ("*", [("+", b"OK"), ("+", b"OK"), (":", 1), (":", 1)])
        assert s.call("PING") == ("+", b"PONG")  # SKIPME: the sender stays
    for conn in (normal, subscriber):
        data, closed = conn.read_all_until_close(timeout=5)
        assert closed
        conn.close()
    assert "--hz=20" in flagfile.read_text()
