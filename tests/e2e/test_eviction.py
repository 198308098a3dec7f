"""Eviction past maxmemory with every Redis 7 policy: a fill beyond the limit keeps
used_memory under it, evicts only what the policy allows (never a persistent key under
volatile-*), LRU keeps recently read keys, LFU frequently read ones, volatile-ttl the
farthest expiries; noeviction refuses with Redis's OOM text. Where the outcome is
deterministic enough the same workload runs on redis-server 7.0 and both must agree.
Damselfly runs with 2 shards: each evicts its own keys against half the limit."""

import time

import pytest
import redis

POLICIES = ["noeviction", "allkeys-lru", "volatile-lru", "allkeys-lfu", "volatile-lfu",
            "allkeys-random", "volatile-random", "volatile-ttl"]
# redis-py maps the `-OOM` prefix to OutOfMemoryError and keeps the rest as the message.
OOM = "command not allowed when used memory > 'maxmemory'."


def _is_oom(error):
    return isinstance(error, redis.exceptions.OutOfMemoryError) and str(error) == OOM
VALUE = "v" * 200


@pytest.fixture(scope="module")
def servers(damselfly_module, redis_server):
    return damselfly_module("--proactor_threads=2"), redis_server


def _reset(c):
    c.config_resetstat()
    c.config_set("maxmemory", 0)
    c.config_set("maxmemory-policy", "noeviction")
    c.config_set("maxmemory-samples", 5)
    c.config_set("lfu-log-factor", 10)
    c.flushall()


def _used(c):
    return int(c.info("memory")["used_memory"])


def _fill(c, prefix, n, ex=None, start=0):
    pipe = c.pipeline(transaction=False)
    for i in range(start, start + n):
        pipe.set(f"{prefix}:{i}", VALUE, ex=ex(i) if ex else None)
    return pipe.execute(raise_on_error=False)


def test_policy_config_and_errors(servers):
    d, r = servers
    for srv in (d, r):
        c = srv.client()
        for policy in POLICIES:
            assert c.config_set("maxmemory-policy", policy)
            assert c.config_get("maxmemory-policy") == {"maxmemory-policy": policy}
        for name, value in (("maxmemory-samples", "7"), ("maxmemory-eviction-tenacity", "20"),
                            ("lfu-log-factor", "3"), ("lfu-decay-time", "2")):
            assert c.config_set(name, value)
            assert c.config_get(name) == {name: value}
        _reset(c)
        c.config_set("maxmemory-eviction-tenacity", 10)
        c.config_set("lfu-decay-time", 1)
    errors = []
    for srv in (d, r):
        with pytest.raises(redis.ResponseError) as e:
            srv.client().config_set("maxmemory-policy", "lru-please")
        errors.append(str(e.value))
    assert errors[0] == errors[1]


def test_flag_sets_policy(damselfly):
    d = damselfly("--proactor_threads=2", "--maxmemory_policy=allkeys-lfu", "--maxmemory_samples=9")
    c = d.client()
    assert c.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lfu"}
    assert c.config_get("maxmemory-samples") == {"maxmemory-samples": "9"}
    assert c.info("memory")["maxmemory_policy"] == "allkeys-lfu"


def test_object_freq_and_idletime_follow_the_policy(servers):
    d, r = servers
    seen = []
    for srv in (d, r):
        c = srv.client()
        _reset(c)
        c.set("k", "v")
        with pytest.raises(redis.ResponseError) as lfu_off:
            c.object("freq", "k")
        c.config_set("maxmemory-policy", "allkeys-lfu")
        c.config_set("lfu-log-factor", 0)  # every access counts: the counter is exact
        c.set("fresh", "v")
        freq0 = c.object("freq", "fresh")
        for _ in range(7):
            c.get("fresh")
        with pytest.raises(redis.ResponseError) as idle_off:
            c.object("idletime", "fresh")
        seen.append((str(lfu_off.value), freq0, c.object("freq", "fresh"), str(idle_off.value)))
        _reset(c)
    assert seen[0] == seen[1]
    assert seen[0][1:3] == (5, 12)


def test_noeviction_refuses_with_redis_text(servers):
    d, r = servers
    for srv in (d, r):
        c = srv.client()
        _reset(c)
        c.config_set("maxmemory", _used(c) + 200_000)
        results = _fill(c, "k", 3000)
        errors = [x for x in results if isinstance(x, Exception)]
        assert errors, srv
        assert _is_oom(errors[0])
        assert c.info("stats")["evicted_keys"] == 0
        # Reads and deletes still work past the limit.
        assert c.get("k:0") == VALUE.encode()
        assert c.delete("k:0") == 1
        _reset(c)


@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-lfu", "allkeys-random"])
def test_allkeys_fill_stays_under_limit(servers, policy):
    d = servers[0]
    c = d.client()
    _reset(c)
    limit = _used(c) + 400_000
    c.config_set("maxmemory-policy", policy)
    c.config_set("maxmemory", limit)
    for batch in range(8):
        results = _fill(c, "k", 1000, start=batch * 1000)
        assert not [x for x in results if isinstance(x, Exception)], policy
        assert _used(c) <= limit
    stats = c.info("stats")
    assert stats["evicted_keys"] > 0
    assert c.dbsize() + stats["evicted_keys"] == 8000
    raw = c.execute_command("INFO", "stats")
    line = raw["evicted_keys_per_shard"]
    per_shard = [int(x) for x in line] if isinstance(line, list) else [int(x) for x in str(line).split(",")]
    assert len(per_shard) == 2 and sum(per_shard) == stats["evicted_keys"]
    _reset(c)


@pytest.mark.parametrize("policy", ["volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"])
def test_volatile_never_evicts_persistent_keys(servers, policy):
    d, r = servers
    for srv in (d, r):
        c = srv.client()
        _reset(c)
        base = _used(c)
        _fill(c, "keep", 300)
        c.rpush("jobs", *[f"job{i}" for i in range(50)])
        c.config_set("maxmemory-policy", policy)
        c.config_set("maxmemory", base + 300_000)
        results = _fill(c, "ttl", 3000, ex=lambda i: 1000 + i)
        assert not [x for x in results if isinstance(x, Exception)], (srv, policy)
        assert c.info("stats")["evicted_keys"] > 0, srv
        assert all(c.exists(f"keep:{i}") for i in range(300)), (srv, policy)
        assert c.llen("jobs") == 50
        # Nothing volatile left to give up: persistent writes end in OOM, as in Redis.
        results = _fill(c, "more", 3000)
        errors = [x for x in results if isinstance(x, Exception)]
        assert errors and _is_oom(errors[0]), (srv, policy)
        assert all(c.exists(f"keep:{i}") for i in range(300)), (srv, policy)
        _reset(c)


def test_volatile_ttl_evicts_nearest_expiry(servers):
    d, r = servers
    for srv in (d, r):
        c = srv.client()
        _reset(c)
        c.config_set("maxmemory-samples", 10)
        base = _used(c)
        _fill(c, "t", 2000, ex=lambda i: 10_000 + i * 10)
        data = _used(c) - base
        c.config_set("maxmemory-policy", "volatile-ttl")
        c.config_set("maxmemory", base + data // 2)
        c.set("trigger", "x", ex=100_000)
        near = sum(c.exists(f"t:{i}") for i in range(400))
        far = sum(c.exists(f"t:{i}") for i in range(1600, 2000))
        assert far >= 380 and near <= 100, (srv, near, far)
        _reset(c)


def test_lru_keeps_recently_read_keys(servers):
    d, r = servers
    for srv in (d, r):
        c = srv.client()
        _reset(c)
        c.config_set("maxmemory-samples", 10)
        base = _used(c)
        _fill(c, "k", 3000)
        data = _used(c) - base
        time.sleep(2.1)  # LRU has a one-second clock, as Redis's
        pipe = c.pipeline(transaction=False)
        for i in range(0, 3000, 10):
            pipe.get(f"k:{i}")
        pipe.execute()
        c.config_set("maxmemory-policy", "allkeys-lru")
        c.config_set("maxmemory", base + data * 6 // 10)
        _fill(c, "new", 300)
        hot = sum(c.exists(f"k:{i}") for i in range(0, 3000, 10))
        cold = sum(c.exists(f"k:{i}") for i in range(3000) if i % 10 != 0)
        assert c.info("stats")["evicted_keys"] > 0
        assert hot >= 285, (srv, hot, cold)
        assert cold < 2700 * 0.75, (srv, hot, cold)
        _reset(c)


def test_lfu_keeps_frequently_read_keys(servers):
    d, r = servers
    for srv in (d, r):
        c = srv.client()
        _reset(c)
        c.config_set("maxmemory-policy", "allkeys-lfu")
        c.config_set("maxmemory-samples", 10)
        base = _used(c)
        _fill(c, "k", 3000)
        data = _used(c) - base
        pipe = c.pipeline(transaction=False)
        for _ in range(5):
            for i in range(0, 3000, 10):
                pipe.get(f"k:{i}")
        pipe.execute()
        c.config_set("maxmemory", base + data * 6 // 10)
        _fill(c, "new", 300)
        hot = sum(c.exists(f"k:{i}") for i in range(0, 3000, 10))
        assert c.info("stats")["evicted_keys"] > 0
        assert hot >= 285, (srv, hot)
        _reset(c)


def test_eviction_dirties_watch(servers):
    d, r = servers
    outcomes = []
    for srv in (d, r):
        c = srv.client()
        _reset(c)
        _fill(c, "keep", 200)
        c.set("victim", "x" * 100_000, ex=1000)
        c.config_set("maxmemory-policy", "volatile-ttl")
        pipe = c.pipeline(transaction=True)
        pipe.watch("victim")
        c.config_set("maxmemory", _used(c) - 20_000)
        c.set("keep:0", VALUE)  # any write: the server evicts before (Redis) or after (Damselfly)
        pipe.multi()
        pipe.set("victim", "mine")
        try:
            pipe.execute()
            outcomes.append("ran")
        except redis.WatchError:
            outcomes.append("aborted")
        outcomes.append(c.exists("victim"))
        _reset(c)
    assert outcomes == ["aborted", 0, "aborted", 0]


def test_journal_replays_evictions(damselfly, tmp_path):
    d = damselfly("--proactor_threads=2", "--appendonly=yes", "--maxmemory_policy=allkeys-random")
    c = d.client()
    limit = _used(c) + 200_000
    c.config_set("maxmemory", limit)
    _fill(c, "k", 3000)
    evicted = c.info("stats")["evicted_keys"]
    assert evicted > 0
    kept = c.dbsize()
    assert kept == 3000 - evicted
    workdir = d.workdir
    d.stop()
    d2 = damselfly("--proactor_threads=2", "--appendonly=yes", f"--dir={workdir}")
    assert d2.client().dbsize() == kept
