"""INFO as clients read it (issue 12 §2.9): Redis 7.0's sections, in its order, differential."""

import re


def raw_info(srv, *args):
    with srv.raw() as c:
        kind, text = c.call("INFO", *args)
    assert kind == "$", text
    return text.decode()


def test_default_sections_match_redis(damselfly, redis_server):
    d = damselfly("--proactor_threads=2")
    ours = re.findall(r"^# (\w+)", raw_info(d), re.M)
    theirs = re.findall(r"^# (\w+)", raw_info(redis_server), re.M)
    assert ours == theirs
    for section in ("cluster", "modules", "errorstats", "keyspace", "replication"):
        assert re.findall(r"^# (\w+)", raw_info(d, section), re.M) == \
            re.findall(r"^# (\w+)", raw_info(redis_server, section), re.M), section


def test_cluster_enabled_and_version_as_clients_read_them(damselfly, redis_server):
    d = damselfly("--proactor_threads=2")
    c = d.client()
    assert c.info("cluster") == {"cluster_enabled": 0}
    # The version claimed is the one whose behaviour is implemented: 7.0, like the reference.
    assert c.info("server")["redis_version"] == redis_server.client().info("server")["redis_version"] == "7.0.15"
    with d.raw() as r:
        hello = r.call("HELLO", "2")
    assert b"7.0.15" in repr(hello).encode() or "7.0.15" in repr(hello)
    assert c.eval("return redis.REDIS_VERSION", 0) == b"7.0.15"
    repl = c.info("replication")
    for field in ("master_replid2", "second_repl_offset", "repl_backlog_active", "master_failover_state"):
        assert field in repl, field
