"""CONFIG GET / CONFIG SET against redis-server 7.0 (issue 12 §2.1), differential.

Redis's whole parameter table, glob patterns and several names per GET, several pairs per
SET with Redis's validation and error texts (all or nothing), and the encoding thresholds
honoured by the hash, sorted set and set encodings.
"""

import pytest
import redis

# Parameters whose value differs on purpose (Damselfly's own defaults or the harness's flags).
OWN_VALUES = {
    "port", "dir", "maxclients",  # per server; Damselfly's default maxclients is 64000
    "appendfsync", "save", "appendonly", "appendfilename", "dbfilename",
    "repl-diskless-sync-delay",  # 0: no wait before a diskless full sync (a forkless snapshot, no fork to share)
}


@pytest.fixture(scope="module")
def pair(damselfly_module, redis_server):
    return damselfly_module("--proactor_threads=2"), redis_server


def reply(c, *args):
    try:
        return c.execute_command(*args)
    except redis.ResponseError as e:
        return f"ERR:{e}"


def test_config_get_lists_every_redis_parameter_with_its_default(pair):
    d, r = pair
    dc, rc = d.client(decode_responses=True), r.client(decode_responses=True)
    ours, theirs = dc.config_get("*"), rc.config_get("*")
    assert set(ours) == set(theirs)
    differ = {k: (ours[k], theirs[k]) for k in theirs if ours[k] != theirs[k] and k not in OWN_VALUES}
    assert differ == {}


def test_config_get_patterns_and_several_names(pair):
    d, r = pair
    dc, rc = d.client(decode_responses=True), r.client(decode_responses=True)
    for args in (["maxmemory*"], ["*max-*-entries"], ["hz", "timeout"], ["hash-max-*", "zset-max-*"],
                 ["slowlog-*", "slowlog-max-len"], ["nosuch*"], ["[hz]z"],
                 ["key-load-delay"], ["key-load-*"], ["maxmemory", "maxmemory*", "bind", "*of"]):
        assert dc.execute_command("CONFIG", "GET", *args) == rc.execute_command("CONFIG", "GET", *args), args


@pytest.mark.parametrize("args", [
    ["daemonize", "yes"],                                     # immutable
    ["enable-debug-command", "yes"],                          # immutable
    ["nosuch-parameter", "1"],
    ["hz", "abc"],
    ["list-compress-depth", "-1"],                            # out of range
    ["lazyfree-lazy-user-del", "maybe"],                      # yes/no
    ["acl-pubsub-default", "sometimes"],                      # one of
    ["zset-max-listpack-entries", "1.5"],
    ["hash-max-listpack-value", "-1"],                        # memory
    ["maxmemory", "1gb", "foo"],                              # odd arguments
    ["hz", "5", "hz", "6"],                                   # duplicate
    ["hz", "5", "hash-max-ziplist-entries", "6", "hash-max-listpack-entries", "7"],  # duplicate via alias
    ["client-output-buffer-limit", "normal 1 2"],
    ["client-output-buffer-limit", "nosuch 1 2 3"],
    ["oom-score-adj-values", "1 2"],
    ["maxmemory-clients", "200%"],
])
def test_config_set_errors_match_redis(pair, args):
    d, r = pair
    ours = reply(d.client(), "CONFIG", "SET", *args)
    theirs = reply(r.client(), "CONFIG", "SET", *args)
    assert ours == theirs


def test_config_set_several_pairs_all_or_nothing(pair):
    d, r = pair
    for s in (d, r):
        c = s.client(decode_responses=True)
        before = c.config_get("*")
        err = reply(c, "CONFIG", "SET", "hz", "20", "lazyfree-lazy-user-del", "yes", "list-compress-depth", "-5")
        assert err.startswith("ERR:CONFIG SET failed (possibly related to argument 'list-compress-depth')"), err
        after = c.config_get("*")
        assert {k: v for k, v in after.items() if before[k] != v} == {}
        assert c.execute_command("CONFIG", "SET", "hz", "20", "lazyfree-lazy-user-del", "yes",
                                 "client-output-buffer-limit", "pubsub 1mb 2kb 30") == "OK"
        got = c.config_get("*")
        assert (got["hz"], got["lazyfree-lazy-user-del"]) == ("20", "yes")
        assert got["client-output-buffer-limit"] == "normal 0 0 0 slave 268435456 67108864 60 pubsub 1048576 2048 30"
        # Aliases share one value, and memory values are shown in bytes.
        c.execute_command("CONFIG", "SET", "hash-max-ziplist-value", "1kb", "list-max-ziplist-size", "-3")
        got = c.config_get("*")
        assert got["hash-max-listpack-value"] == got["hash-max-ziplist-value"] == "1024"
        assert got["list-max-listpack-size"] == "-3"
        c.execute_command("CONFIG", "SET", "hz", "10", "lazyfree-lazy-user-del", "no", "hash-max-listpack-value", "64",
                          "list-max-listpack-size", "-2",
                          "client-output-buffer-limit", "pubsub 33554432 8388608 60")


def test_every_parameter_can_be_set_to_its_own_value(pair):
    # Redis's "CONFIG sanity": CONFIG SET of each listed parameter to its current value
    # succeeds and changes nothing (immutable and protected ones excepted, as there).
    d, r = pair
    refused = {}
    for name, s in (("damselfly", d), ("redis", r)):
        c = s.client(decode_responses=True)
        before = c.config_get("*")
        refused[name] = set()
        for k, v in before.items():
            try:
                c.execute_command("CONFIG", "SET", k, v)
            except redis.ResponseError:
                refused[name].add(k)
        assert c.config_get("*") == before
    assert refused["damselfly"] <= refused["redis"] | {"dir", "dbfilename"}


def test_notify_keyspace_events_parses_and_prints_as_redis(pair):
    d, r = pair
    dc, rc = d.client(decode_responses=True), r.client(decode_responses=True)
    for text in ["KEA", "AKE", "EA", "gKE", "$lshzxeKE", "Kg$lshzxetdnm", "Ag", "A$", "n", "Em", "KEAn", "xE", "", "Q", "KE?", "a"]:
        ours = reply(dc, "CONFIG", "SET", "notify-keyspace-events", text)
        theirs = reply(rc, "CONFIG", "SET", "notify-keyspace-events", text)
        assert ours == theirs, text
        assert dc.config_get("notify-keyspace-events") == rc.config_get("notify-keyspace-events"), text
    dc.config_set("notify-keyspace-events", "")
    rc.config_set("notify-keyspace-events", "")


def encodings(c):
    """Fills one hash, sorted set and set past thresholds of 4 / 8 bytes; their encodings."""
    c.delete("h", "z", "s", "hl", "zl")
    c.execute_command("CONFIG", "SET", "hash-max-ziplist-entries", "4", "zset-max-ziplist-entries", "4",
                      "set-max-intset-entries", "4", "hash-max-listpack-value", "8", "zset-max-listpack-value", "8")
    try:
        out = []
        for i in range(4):
            c.hset("h", f"f{i}", i)
            c.zadd("z", {f"m{i}": i})
            c.sadd("s", i)
        out.append([c.object("encoding", k) for k in ("h", "z", "s")])
        c.hset("h", "f4", 4)
        c.zadd("z", {"m4": 4})
        c.sadd("s", 4)
        out.append([c.object("encoding", k) for k in ("h", "z", "s")])
        c.hset("hl", "f", "123456789")
        c.zadd("zl", {"123456789": 1})
        out.append([c.object("encoding", k) for k in ("hl", "zl")])
        c.execute_command("CONFIG", "SET", "zset-max-listpack-entries", "0")
        c.delete("z0")
        c.zadd("z0", {"a": 1})
        out.append(c.object("encoding", "z0"))
        return out
    finally:
        c.execute_command("CONFIG", "SET", "hash-max-ziplist-entries", "512", "zset-max-ziplist-entries", "128",
                          "set-max-intset-entries", "512", "hash-max-listpack-value", "64",
                          "zset-max-listpack-value", "64")


def test_encoding_thresholds_are_honoured(pair):
    d, r = pair
    ours, theirs = encodings(d.client()), encodings(r.client())
    assert ours == theirs
    assert ours[0] == [b"listpack", b"listpack", b"intset"]
    assert ours[1] == [b"hashtable", b"skiplist", b"hashtable"]


def test_protected_configs_are_refused_as_redis_does(pair):
    # Redis 7: dir and dbfilename are protected (enable-protected-configs no by default).
    out = {}
    for name, s in (("damselfly", pair[0]), ("redis", pair[1])):
        c = s.client()
        out[name] = [reply(c, "CONFIG", "SET", "dir", "/tmp"), reply(c, "CONFIG", "SET", "dbfilename", "x.rdb"),
                     reply(c, "CONFIG", "SET", "timeout", "0", "dir", "/tmp"),
                     reply(c, "CONFIG", "SET", "enable-protected-configs", "yes"),
                     c.config_get("enable-protected-configs"), c.config_get("dbfilename")]
    assert out["damselfly"] == out["redis"]
    assert out["damselfly"][0].endswith("can't set protected config")


def test_protected_configs_can_be_enabled(damselfly):
    d = damselfly("--enable_protected_configs=local")
    c = d.client()
    assert c.config_get("enable-protected-configs") == {"enable-protected-configs": "local"}
    assert c.config_set("dbfilename", "other.rdb")  # the test client is on loopback
    assert c.config_get("dbfilename") == {"dbfilename": "other.rdb"}
