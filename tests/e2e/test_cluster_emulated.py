"""--cluster_mode=emulated: Damselfly answers CLUSTER as a one-node Redis 7.0
cluster owning all 16,384 slots (plus its online replicas), so cluster-mode
clients work unchanged.

The replies are compared field by field with a real `redis-server
--cluster-enabled yes` given every slot (CLUSTER ADDSLOTSRANGE 0 16383), in
RESP2 and RESP3; node IDs, addresses, ports and offsets are replaced by
placeholders first, since they differ between any two nodes.
"""
import random
import time

import pytest
from redis.cluster import RedisCluster

from resp import RespConn, to_py
from util import wait_for

SLOTS = 16384


@pytest.fixture(scope="module")
def servers(factory_module):
    return factory_module


def start_cluster_redis(servers, name):
    srv = servers.start_redis("--cluster-enabled", "yes", "--cluster-config-file", f"{name}.conf")
    return srv


@pytest.fixture(scope="module")
def emulated(servers):
    return servers.start("--cluster_mode=emulated", "--proactor_threads=2")


@pytest.fixture(scope="module")
def redis_node(servers):
    """A one-node Redis cluster owning every slot, no replica."""
    srv = start_cluster_redis(servers, "single")
    c = srv.client()
    assert c.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, SLOTS - 1) == b"OK"
    wait_for(lambda: b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO"), what="redis cluster state ok")
    return srv


@pytest.fixture(scope="module")
def redis_pair(servers):
    """A Redis cluster master owning every slot with one replica (CLUSTER MEET + REPLICATE)."""
    master = start_cluster_redis(servers, "master")
    replica = start_cluster_redis(servers, "replica")
    m, r = master.client(), replica.client()
    m.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, SLOTS - 1)
    r.execute_command("CLUSTER", "MEET", "127.0.0.1", master.port)
    wait_for(lambda: len(m.execute_command("CLUSTER", "NODES").decode().splitlines()) == 2, what="meet")
    myid = m.execute_command("CLUSTER", "MYID").decode()
    wait_for(lambda: myid in r.execute_command("CLUSTER", "NODES").decode(), what="replica sees master")
    r.execute_command("CLUSTER", "REPLICATE", myid)
    wait_for(lambda: m.info("replication").get("slave0", {}).get("state") == "online", what="redis replica online")
    wait_for(lambda: b"cluster_state:ok" in m.execute_command("CLUSTER", "INFO"), what="cluster ok")
    # CLUSTER SLOTS lists a replica once gossip reports it healthy (synced, not loading).
    wait_for(lambda: len(m.execute_command("CLUSTER", "SLOTS")[0]) == 4, what="replica in CLUSTER SLOTS")
    return master, replica


@pytest.fixture(scope="module")
def emulated_with_replica(servers):
    """An emulated-cluster Damselfly with a stock redis-server replica online."""
    dfly = servers.start("--cluster_mode=emulated", "--proactor_threads=2")
    replica = servers.start_redis("--replicaof", "127.0.0.1", str(dfly.port))
    wait_for(lambda: dfly.client().info("replication").get("slave0", {}).get("state") == "online",
             what="replica online")
    return dfly, replica


def call(port, *args, resp3=False):
    with RespConn(port) as c:
        if resp3:
            assert c.call("HELLO", "3")[0] == "%"
        return c.call(*args)


def normalize(reply, ids, ports):
    """Replace what legitimately differs between two nodes by placeholders, keeping the
    reply's types: node IDs, ports, IPs (a Redis node that never met a peer announces ""),
    replication offsets and CLUSTER NODES' pong times."""
    t, v = reply
    if t in "$=" and v is not None:
        if v in ids:
            return (t, b"<id%d>" % ids.index(v))
        if v in (b"", b"127.0.0.1"):
            return (t, b"<ip>")
        if t == "=" and v.startswith(b"txt:"):
            return (t, b"txt:" + normalize_nodes_text(v[4:], ids, ports))
        if b" connected" in v:
            return (t, normalize_nodes_text(v, ids, ports))
        return (t, v)
    if t == ":" and v in ports:
        return (t, "<port%d>" % ports.index(v))
    if t in "*~" and v is not None:
        return (t, [normalize(x, ids, ports) for x in v])
    if t == "%":
        return (t, [(normalize(k, ids, ports), normalize_field(k, x, ids, ports)) for k, x in v])
    return reply


def normalize_field(key, value, ids, ports):
    if key[1] == b"replication-offset":
        return (":", "<offset>")
    return normalize(value, ids, ports)


def pairs(flat):
    """RESP2's flattened map (an array of alternating keys and values) as a RESP3 map."""
    t, v = flat
    return ("%", [(v[i], v[i + 1]) for i in range(0, len(v), 2)])


def normalize_nodes_text(text, ids, ports):
    lines = []
    for line in text.decode().splitlines():
        f = line.split(" ")
        for i, node in enumerate(ids):
            f = [x.replace(node.decode(), f"<id{i}>") for x in f]
        f[1] = "<addr>"  # ip:port@cport; Damselfly has no bus port
        f[5] = "<pong>"
        f[6] = "<epoch>"
        lines.append(" ".join(f))
    # Redis lists nodes in its dictionary's order; each line ends with a newline.
    return ("\n".join(sorted(lines)) + ("\n" if text.endswith(b"\n") else "")).encode()


def ids_and_ports(master, replica=None):
    ids = [call(master.port, "CLUSTER", "MYID")[1]]
    ports = [master.port]
    if replica is not None:
        rid = call(replica.port, "CLUSTER", "MYID")
        # A stock redis-server replica of Damselfly is not a cluster node: its ID is the one
        # its master reports.
        if rid[0] == "-":
            nodes = call(master.port, "CLUSTER", "NODES")[1].decode().splitlines()
            rid = ("$", nodes[1].split(" ")[0].encode())
        ids.append(rid[1])
        ports.append(replica.port)
    return ids, ports


# -- standalone ----------------------------------------------------------------


def test_standalone_refuses_cluster(damselfly, redis_server):
    d = damselfly()
    for args in (("CLUSTER", "INFO"), ("CLUSTER", "SLOTS"), ("READONLY",), ("READWRITE",), ("ASKING",)):
        assert call(d.port, *args) == call(redis_server.port, *args) == ("-", b"ERR This instance has cluster support disabled")
    assert d.client().info("cluster")["cluster_enabled"] == 0
    assert d.client().info("server")["redis_mode"] == "standalone"
    assert to_py(call(d.port, "HELLO", "3"))[b"mode"] == b"standalone"


# -- one node, no replica ----------------------------------------------------


@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
@pytest.mark.parametrize("sub", ["SLOTS", "SHARDS", "NODES", "MYID", "LINKS"])
def test_topology_as_redis_single_node(emulated, redis_node, sub, resp3):
    mine = normalize(call(emulated.port, "CLUSTER", sub, resp3=resp3), *ids_and_ports(emulated))
    theirs = normalize(call(redis_node.port, "CLUSTER", sub, resp3=resp3), *ids_and_ports(redis_node))
    assert mine == theirs


@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
def test_info_as_redis_single_node(emulated, redis_node, resp3):
    mine = call(emulated.port, "CLUSTER", "INFO", resp3=resp3)
    theirs = call(redis_node.port, "CLUSTER", "INFO", resp3=resp3)
    assert mine[0] == theirs[0] == ("=" if resp3 else "$")
    parse = lambda r: dict(line.split(":", 1) for line in r[1].decode().removeprefix("txt:").split("\r\n") if line)
    m, t = parse(mine), parse(theirs)
    assert list(m) == list(t)
    assert m == t, "a fresh one-node Redis cluster has the same values (epochs 0, no messages)"
    assert mine[1].endswith(b"\r\n")


def test_myid_is_stable_and_forty_hex_digits(emulated):
    a = call(emulated.port, "CLUSTER", "MYID")[1]
    b = call(emulated.port, "CLUSTER", "MYID")[1]
    assert a == b and len(a) == 40 and all(c in b"0123456789abcdef" for c in a)
    assert a.decode() != emulated.client().info("server")["run_id"]


def test_info_and_hello_say_cluster(emulated, redis_node):
    for srv in (emulated, redis_node):
        c = srv.client()
        assert c.info("cluster")["cluster_enabled"] == 1
        assert c.info("server")["redis_mode"] == "cluster"
        assert to_py(call(srv.port, "HELLO", "3"))[b"mode"] == b"cluster"


def test_keyslot_as_redis(emulated, redis_node):
    rng = random.Random(17)
    keys = ["", "{}", "foo", "foo{bar}", "{user1000}.following", "foo{{bar}}zap", "a{}b{c}", "{bar", "}{x}"]
    alphabet = "ab{}xyz:01"
    keys += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(300)]
    with RespConn(emulated.port) as a, RespConn(redis_node.port) as b:
        cmds = [("CLUSTER", "KEYSLOT", k) for k in keys]
        assert a.pipeline(cmds) == b.pipeline(cmds)
        raw = bytes(range(256))
        assert a.call("CLUSTER", "KEYSLOT", raw) == b.call("CLUSTER", "KEYSLOT", raw)


@pytest.mark.parametrize("args", [
    ("CLUSTER", "COUNTKEYSINSLOT", "16384"), ("CLUSTER", "COUNTKEYSINSLOT", "-1"), ("CLUSTER", "COUNTKEYSINSLOT", "x"),
    ("CLUSTER", "GETKEYSINSLOT", "1", "-1"), ("CLUSTER", "GETKEYSINSLOT", "x", "1"), ("CLUSTER", "GETKEYSINSLOT", "16384", "1"),
    ("CLUSTER", "GETKEYSINSLOT", "1"), ("CLUSTER", "KEYSLOT"), ("CLUSTER", "KEYSLOT", "a", "b"), ("CLUSTER", "INFO", "x"),
    ("CLUSTER", "NOSUCH"), ("CLUSTER",), ("SELECT", "1"), ("SELECT", "0"), ("READONLY",), ("READWRITE",), ("ASKING",),
])
def test_errors_as_redis(emulated, redis_node, args):
    assert call(emulated.port, *args) == call(redis_node.port, *args)


def test_help_lists_what_is_answered(emulated):
    lines = [x for x in to_py(call(emulated.port, "CLUSTER", "HELP"))]
    assert lines[0].startswith(b"CLUSTER <subcommand>")
    for sub in (b"INFO", b"MYID", b"NODES", b"SLOTS", b"SHARDS", b"KEYSLOT", b"COUNTKEYSINSLOT", b"GETKEYSINSLOT", b"HELP"):
        assert any(line.startswith(sub) for line in lines), sub
    assert call(emulated.port, "CLUSTER", "MEET", "127.0.0.1", "1")[0] == "-"


def test_keys_in_slot_as_redis(emulated, redis_node):
    """COUNTKEYSINSLOT / GETKEYSINSLOT over the same keys on both (tags put several in one slot)."""
    keys = [f"{{tag{i % 7}}}:k{i}" for i in range(70)] + [f"plain:{i}" for i in range(50)]
    for srv in (emulated, redis_node):
        c = srv.client()
        c.flushall()
        for k in keys:
            c.set(k, "v")
        c.set("gone{tag0}", "v", px=1)
    time.sleep(0.05)
    # Reading the expired key deletes it on both: whether redis-server's active expiry has
    # already reclaimed it 50 ms later is timing (its COUNTKEYSINSLOT counts it until then).
    for srv in (emulated, redis_node):
        assert srv.client().get("gone{tag0}") is None
    slots = sorted({to_py(call(redis_node.port, "CLUSTER", "KEYSLOT", k)) for k in keys})
    with RespConn(emulated.port) as a, RespConn(redis_node.port) as b:
        for slot in slots + [0, 1, 16383]:
            assert a.call("CLUSTER", "COUNTKEYSINSLOT", slot) == b.call("CLUSTER", "COUNTKEYSINSLOT", slot)
            mine, theirs = a.call("CLUSTER", "GETKEYSINSLOT", slot, 100), b.call("CLUSTER", "GETKEYSINSLOT", slot, 100)
            assert mine[0] == theirs[0] == "*"
            assert sorted(mine[1]) == sorted(theirs[1])
            assert a.call("CLUSTER", "GETKEYSINSLOT", slot, 0) == ("*", [])
        tagged = to_py(a.call("CLUSTER", "KEYSLOT", "{tag3}"))
        assert len(to_py(a.call("CLUSTER", "GETKEYSINSLOT", tagged, 4))) == 4
        assert to_py(a.call("CLUSTER", "COUNTKEYSINSLOT", tagged)) == 10


# -- with a replica ------------------------------------------------------------


@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
@pytest.mark.parametrize("sub", ["SLOTS", "SHARDS", "NODES"])
def test_topology_with_replica_as_redis(emulated_with_replica, redis_pair, sub, resp3):
    dfly, dfly_replica = emulated_with_replica
    master, replica = redis_pair
    mine = normalize(call(dfly.port, "CLUSTER", sub, resp3=resp3), *ids_and_ports(dfly, dfly_replica))
    theirs = normalize(call(master.port, "CLUSTER", sub, resp3=resp3), *ids_and_ports(master, replica))
    assert mine == theirs


def test_info_counts_the_replica(emulated_with_replica):
    dfly, _ = emulated_with_replica
    info = dfly.client().execute_command("CLUSTER", "INFO").decode()
    assert "cluster_known_nodes:2\r\n" in info and "cluster_size:1\r\n" in info


def test_replica_offset_in_shards(emulated_with_replica):
    dfly, replica = emulated_with_replica
    c = dfly.client()
    for i in range(20):
        c.set(f"r{i}", i)
    assert c.execute_command("WAIT", 1, 5000) == 1
    offset = c.info("replication")["master_repl_offset"]

    def offsets():
        shard = to_py(call(dfly.port, "CLUSTER", "SHARDS", resp3=True))[0]
        return [n[b"replication-offset"] for n in shard[b"nodes"]]
    wait_for(lambda: offsets() == [offset, offset], what="the replica's acknowledged offset in SHARDS")
    assert to_py(call(dfly.port, "CLUSTER", "SLOTS"))[0][3][1] == replica.port


# -- a cluster client ---------------------------------------------------------


def test_redis_py_cluster_client_works_unchanged(emulated):
    rc = RedisCluster(host="127.0.0.1", port=emulated.port, socket_timeout=10)
    try:
        nodes = rc.get_nodes()
        assert [(n.host, n.port, n.server_type) for n in nodes] == [("127.0.0.1", emulated.port, "primary")]
        for i in range(200):
            rc.set(f"key:{i}", i)
        assert [rc.get(f"key:{i}") for i in range(200)] == [str(i).encode() for i in range(200)]

        pipe = rc.pipeline()
        for i in range(100):
            pipe.incr(f"counter:{i % 10}")
        pipe.get("key:7")
        results = pipe.execute()
        assert results[-1] == b"7" and results[:10] == [1] * 10 and results[90:100] == [10] * 10

        # Multi-key commands on one slot (hash tags), and across slots as redis-py splits them.
        assert rc.mset({"{user1}:name": "ann", "{user1}:age": "41"})
        assert rc.mget("{user1}:name", "{user1}:age") == [b"ann", b"41"]
        assert rc.mget_nonatomic([f"key:{i}" for i in range(0, 200, 40)]) == [b"0", b"40", b"80", b"120", b"160"]
        assert rc.sadd("{s}:a", "x", "y") == 2 and rc.sadd("{s}:b", "y", "z") == 2
        assert rc.sinter("{s}:a", "{s}:b") == {b"y"}
        assert rc.delete(*[f"key:{i}" for i in range(200)]) == 200
        assert rc.keyslot("foo{bar}") == rc.cluster_keyslot("foo{bar}") == 5061

        with rc.pipeline(transaction=True) as tx:  # MULTI/EXEC on one slot
            tx.set("{t}:a", 1).incr("{t}:a").get("{t}:a")
            ok, n, value = tx.execute()
            assert ok in (True, b"OK") and (n, value) == (2, b"2")  # redis-py leaves SET's reply raw here
    finally:
        rc.close()

    # What the cluster client wrote is there for a plain client, in database 0.
    plain = emulated.client()
    assert plain.get("{user1}:name") == b"ann" and plain.get("{t}:a") == b"2"


def test_redis_py_cluster_client_sees_the_replica(emulated_with_replica):
    """The replica is in the client's node table; reads stay on the primary by default (a stock
    redis-server replica is no cluster node: it refuses READONLY, so replica reads need a replica
    that runs in cluster mode)."""
    dfly, replica = emulated_with_replica
    rc = RedisCluster(host="127.0.0.1", port=dfly.port, socket_timeout=10)
    try:
        kinds = sorted((n.port, n.server_type) for n in rc.get_nodes())
        assert kinds == sorted([(dfly.port, "primary"), (replica.port, "replica")])
        rc.set("{rr}:x", "1")
        assert dfly.client().execute_command("WAIT", 1, 5000) == 1
        assert rc.get("{rr}:x") == b"1"
        assert replica.client().get("{rr}:x") == b"1"
    finally:
        rc.close()
