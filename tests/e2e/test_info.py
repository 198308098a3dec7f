"""INFO as clients read it (issue 12 §2.9): Redis 7.0's sections, in its order, differential."""

import re
import time


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


# Calls whose statistics Redis 7.0 keeps under a container's subcommand (`config|get`),
# refuses for a subcommand's arity, or keeps nowhere (an unknown subcommand).
SUBCOMMAND_CALLS = [
    ("CONFIG", "GET"),                       # rejected: config|get's arity
    ("CONFIG", "GET", "maxmemory"),
    ("CONFIG",),                             # rejected: the container's own arity
    ("CONFIG", "NO-SUCH-SUBCOMMAND"),        # no cmdstat at all
    ("CLIENT", "GETNAME"),
    ("MEMORY", "USAGE"),                     # rejected: memory|usage's arity
    ("OBJECT", "ENCODING", "missing"),
    ("SET", "k", "v"),
    ("GET", "k"),
    ("EVAL", "return redis.call('config', 'get')", "0"),   # the script's call is refused for arity
    ("EVAL", "return redis.call('object', 'encoding', 'k')", "0"),
    ("MULTI",),
    ("CLIENT", "GETNAME"),
    ("CONFIG", "GET"),                       # refused while queueing: the transaction aborts
    ("EXEC",),
    ("MULTI",),
    ("CLIENT", "GETNAME"),
    ("EXEC",),
    ("COMMAND",),                            # a container alone: counted as itself
    ("COMMAND", "COUNT"),
]
# Replies that differ by design: Damselfly's own error text, its own command table.
REPLIES_NOT_COMPARED = {("CONFIG", "NO-SUCH-SUBCOMMAND"), ("COMMAND",), ("COMMAND", "COUNT")}


def _section(srv, name):
    out = {}
    for line in raw_info(srv, name).splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition(":")
            out[key] = value
    return out


def _run_calls(srv):
    with srv.raw() as c:
        assert c.call("CONFIG", "RESETSTAT")[0] == "+"
        replies = [c.call(*call) for call in SUBCOMMAND_CALLS]
    commandstats = {
        k: re.sub(r"usec=\d+,usec_per_call=[\d.]+,", "", v)
        for k, v in _section(srv, "commandstats").items() if k != "cmdstat_info"}
    return replies, commandstats


def test_commandstats_count_subcommands_and_their_arity_as_redis(damselfly, redis_server):
    d = damselfly("--proactor_threads=2")
    ours, our_stats = _run_calls(d)
    theirs, their_stats = _run_calls(redis_server)
    for call, a, b in zip(SUBCOMMAND_CALLS, ours, theirs):
        if call in REPLIES_NOT_COMPARED:
            assert a[0] == b[0], (call, a, b)
        else:
            assert a == b, call
    assert our_stats == their_stats
    assert "cmdstat_config|get" in our_stats and "cmdstat_client|getname" in our_stats


def test_latencystats_lists_what_redis_lists_with_its_percentiles(damselfly, redis_server):
    d = damselfly("--proactor_threads=2")
    names = {}
    for srv in (d, redis_server):
        _run_calls(srv)
        stats = {k: v for k, v in _section(srv, "latencystats").items() if k != "latency_percentiles_usec_info"}
        for value in stats.values():
            assert re.fullmatch(r"p50=\d+\.\d{3},p99=\d+\.\d{3},p99\.9=\d+\.\d{3}", value), value
        names[srv] = set(stats)
        # Labels follow latency-tracking-info-percentiles, Redis's trimmed %f.
        with srv.raw() as c:
            assert c.call("CONFIG", "SET", "latency-tracking-info-percentiles", "25 99.99 100")[0] == "+"
        line = _section(srv, "latencystats")["latency_percentiles_usec_client|getname"]
        with srv.raw() as c:
            assert c.call("CONFIG", "SET", "latency-tracking-info-percentiles", "50 99 99.9")[0] == "+"
        assert re.fullmatch(r"p25=\d+\.\d{3},p99\.99=\d+\.\d{3},p100=\d+\.\d{3}", line), line
    assert names[d] == names[redis_server]
    assert "latency_percentiles_usec_config|resetstat" in names[d]
    # INFO ALL places it, and commandstats, where Redis 7.0 does.
    sections = re.findall(r"^# (\w+)", raw_info(d, "all"), re.M)
    theirs = re.findall(r"^# (\w+)", raw_info(redis_server, "all"), re.M)
    assert [s for s in sections if s != "Transaction"] == theirs


def test_resetstat_zeroes_keyspace_hits_misses_and_expired_keys(damselfly, redis_server):
    d = damselfly("--proactor_threads=2")
    for srv in (d, redis_server):
        c = srv.client()
        c.set("hit", "1")
        c.set("gone", "1", px=1)
        time.sleep(0.05)
        c.get("hit")
        c.get("miss")
        c.get("gone")
        before = c.info("stats")
        assert before["keyspace_hits"] >= 1 and before["keyspace_misses"] >= 2 and before["expired_keys"] >= 1
        assert before["total_reads_processed"] > 0 and before["total_writes_processed"] > 0
        c.config_resetstat()
        after = c.info("stats")
        for field in ("keyspace_hits", "keyspace_misses", "expired_keys"):
            assert after[field] == 0, (srv, field)
        c.get("hit")
        assert c.info("stats")["keyspace_hits"] == 1


def test_instantaneous_kbps_follow_the_traffic(damselfly, redis_server):
    import threading
    d = damselfly("--proactor_threads=2")
    for srv in (d, redis_server):
        stop = threading.Event()

        def traffic():
            c = srv.client()
            payload = "x" * 2000
            while not stop.is_set():
                p = c.pipeline(transaction=False)
                for i in range(20):
                    p.set(f"kbps:{i}", payload)
                    p.get(f"kbps:{i}")
                p.execute()

        t = threading.Thread(target=traffic)
        t.start()
        try:
            time.sleep(2.3)
            text = raw_info(srv, "stats")
        finally:
            stop.set()
            t.join()
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        for name in ("instantaneous_input_kbps", "instantaneous_output_kbps"):
            assert re.fullmatch(r"\d+\.\d\d", fields[name]), (srv, name, fields[name])
            assert float(fields[name]) > 10, (srv, name, fields[name])


def test_resetstat_while_a_script_borrows_the_shards(damselfly):
    """CONFIG RESETSTAT while a script holds every shard (keys on both threads): a
    lent shard resets once it is back, and the server keeps serving."""
    import threading
    d = damselfly("--proactor_threads=2")
    keys = [f"lend:{i}" for i in range(8)]
    c = d.client()
    for k in keys:
        c.set(k, "v")
    script = "local n = 0 for i = 1, 30000 do for _, k in ipairs(KEYS) do if redis.call('get', k) then n = n + 1 end end end return n"
    result = {}

    def run():
        result["n"] = d.client().eval(script, len(keys), *keys)

    t = threading.Thread(target=run)
    t.start()
    r = d.client()
    while t.is_alive():
        assert r.config_resetstat()
    t.join()
    assert result["n"] == 30000 * len(keys)
    assert r.config_resetstat()
    r.get(keys[0])
    stats = r.info("stats")
    assert stats["keyspace_hits"] == 1 and stats["keyspace_misses"] == 0
