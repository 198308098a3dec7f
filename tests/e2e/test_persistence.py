"""Persistence: RDB snapshots (SAVE/BGSAVE, load at start-up, interop with
redis-server 7.0), shutdown saving, the append-only journal under kill -9,
and the Sidekiq case (issue 7).

Every test runs on 127.0.0.1 in its own temporary directory and is bounded
in time (servers are started and stopped by the ``servers`` fixture)."""

import json
import os
import random
import shutil
import signal
import threading
import time

import pytest
import redis

from conftest import SELFTEST_REDIS
from persist_util import (Servers, assert_same, canonical, check_rdb, client, fill_every_type,
                          journal_files, kill9, term, wait_bgsave, wait_exit)

pytestmark = pytest.mark.skipif(SELFTEST_REDIS, reason="persistence tests start Damselfly with its own flags")


class Deadline(Exception):
    pass


def deadline(seconds):
    def mark(fn):
        fn.deadline_s = seconds
        return fn
    return mark


@pytest.fixture(autouse=True)
def _deadline(request):
    """Bounds every test in time (``@deadline(seconds)``, default 120 s)
    without the pytest-timeout plugin: SIGALRM raises in the test's thread."""
    seconds = getattr(request.function, "deadline_s", 120)

    def expired(_sig, _frame):
        raise Deadline(f"test ran past its {seconds}s deadline")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def servers(tmp_path):
    s = Servers(tmp_path)
    yield s
    s.close()


def mkdir(tmp_path, name):
    d = tmp_path / name
    d.mkdir()
    return d


# 1. Snapshot round trip ---------------------------------------------------------

@deadline(120)
def test_snapshot_round_trip_every_type(servers, tmp_path):
    d = mkdir(tmp_path, "data")
    a = servers.damselfly(d, threads=2)
    fill_every_type(a)
    before = canonical(a)
    assert client(a).save() is True
    assert (d / "dump.rdb").exists()
    assert term(a) == 0
    # another thread count: keys land on other shards
    b = servers.damselfly(d, threads=3)
    after = canonical(b)
    assert_same(before, after)
    # object encodings survive semantically: still the right lengths
    c = client(b)
    assert c.llen("l:big") == 2000 and c.hlen("h:large") == 1000 and c.zcard("z:large") == 600
    assert c.incr("s:int") == 12346  # int-encoded string is still a number
    ok, out = check_rdb(d / "dump.rdb")
    assert ok is not False, out


@deadline(60)
def test_lastsave_and_dbfilename(servers, tmp_path):
    d = mkdir(tmp_path, "data")
    a = servers.damselfly(d, "--dbfilename=snap.rdb")
    c = client(a)
    c.set("k", "v")
    t0 = c.lastsave()
    time.sleep(1.1)
    assert c.save() is True
    assert c.lastsave() > t0
    assert (d / "snap.rdb").exists() and not (d / "dump.rdb").exists()
    # no temporary file left behind
    assert sorted(os.listdir(d)) == ["snap.rdb"]
    assert term(a) == 0
    b = servers.damselfly(d, "--dbfilename=snap.rdb")
    assert client(b).get("k") == b"v"


# 2. Interop with redis-server 7.0 -------------------------------------------------

@deadline(180)
def test_damselfly_snapshot_loads_in_redis(servers, tmp_path):
    d = mkdir(tmp_path, "dfly")
    r_dir = mkdir(tmp_path, "redis")
    a = servers.damselfly(d)
    fill_every_type(a)
    client(a).save()
    expected = canonical(a)
    shutil.copy(d / "dump.rdb", r_dir / "dump.rdb")
    ok, out = check_rdb(r_dir / "dump.rdb")
    if ok is None:
        pytest.skip(out)
    assert ok, out
    r = servers.redis(r_dir, "--dbfilename", "dump.rdb")
    assert r.info("keyspace"), "redis-server loaded nothing"
    assert_same(expected, canonical(r))


@deadline(180)
def test_redis_snapshot_loads_in_damselfly(servers, tmp_path):
    r_dir = mkdir(tmp_path, "redis")
    d = mkdir(tmp_path, "dfly")
    r = servers.redis(r_dir, "--dbfilename", "dump.rdb")
    fill_every_type(r)
    rc = client(r)
    # also the encodings only redis writes by itself: compressed strings, quicklist nodes
    rc.config_set("rdbcompression", "yes")
    assert rc.save() is True
    expected = canonical(r)
    shutil.copy(r_dir / "dump.rdb", d / "dump.rdb")
    a = servers.damselfly(d, threads=3)
    assert_same(expected, canonical(a))


@deadline(120)
def test_dump_restore_both_ways(servers, tmp_path):
    d = mkdir(tmp_path, "dfly")
    r_dir = mkdir(tmp_path, "redis")
    a = servers.damselfly(d)
    r = servers.redis(r_dir)
    fill_every_type(r)
    src = canonical(r, dbs=[0])[0]
    ac, rc = client(a), client(r)
    # redis -> damselfly
    for k, (_t, _v, pttl) in src.items():
        payload = rc.dump(k)
        assert payload is not None
        ac.restore(k, max(pttl, 0), payload)
    got = canonical(a, dbs=[0])[0]
    assert_same({0: src}, {0: got})
    # damselfly -> redis (into db 2 of redis)
    r2 = client(r, db=2)
    for k, (_t, _v, pttl) in got.items():
        r2.restore(k, max(pttl, 0), ac.dump(k))
    assert_same({0: got}, {0: canonical(r, dbs=[2])[2]})
    # REPLACE / BUSYKEY / bad payload behave like Redis
    with pytest.raises(redis.ResponseError, match="BUSYKEY"):
        ac.restore("s:str", 0, rc.dump("s:int"))
    ac.restore("s:str", 0, rc.dump("s:int"), replace=True)
    assert ac.get("s:str") == b"12345"
    bad = bytearray(rc.dump("h:small"))
    bad[3] ^= 0xFF
    with pytest.raises(redis.ResponseError, match="checksum"):
        ac.restore("bad", 0, bytes(bad))


# 3. BGSAVE while writers run --------------------------------------------------------

@deadline(240)
def test_bgsave_point_in_time_under_writes(servers, tmp_path):
    d = mkdir(tmp_path, "data")
    a = servers.damselfly(d)
    c = client(a)
    n_pre = 150_000
    p = c.pipeline(transaction=False)
    for i in range(n_pre):
        p.set(f"pre:{i}", "p" * 100)
        if i % 5000 == 4999:
            p.execute()
    p.execute()
    c.set("ctr", 0)
    info = a.info("persistence")
    for f in ("rdb_bgsave_in_progress", "rdb_last_bgsave_status", "rdb_changes_since_last_save",
              "current_snapshot_perc"):
        assert f in info, f
    assert int(info["rdb_changes_since_last_save"]) >= n_pre

    # Sequencing writer: op i = SET k:i new; SET n:i x (new key); INCR ctr (-> i)
    stop = threading.Event()
    acked = [0]
    n_keys = 20000
    c.mset({f"k:{i}": "old" for i in range(1, n_keys + 1)})

    def sequencer():
        w = client(a)
        i = 0
        while not stop.is_set() and i < n_keys:
            i += 1
            w.set(f"k:{i}", "new")
            w.set(f"n:{i}", "x")
            assert w.incr("ctr") == i
            acked[0] = i

    def noise(seed):
        w = client(a)
        rnd = random.Random(seed)
        while not stop.is_set():
            p = w.pipeline(transaction=False)
            for _ in range(50):
                p.set(f"pre:{rnd.randrange(n_pre)}", f"noise{seed}")
            p.execute()

    threads = [threading.Thread(target=sequencer)] + [threading.Thread(target=noise, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        lo = acked[0]
        assert c.bgsave() is True
        hi = acked[0] + 1
        saw_progress = []
        while True:
            info = a.info("persistence")
            assert 0 <= int(info["current_snapshot_perc"]) <= 100
            if info["rdb_bgsave_in_progress"] == "1":
                saw_progress.append(int(info["current_snapshot_perc"]))
            else:
                break
            time.sleep(0.01)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    info = a.info("persistence")
    assert info["rdb_bgsave_in_progress"] == "0"
    assert info["rdb_last_bgsave_status"] == "ok"
    assert int(info["rdb_changes_since_last_save"]) > 0  # writes after the snapshot began
    ok, out = check_rdb(d / "dump.rdb")
    assert ok is not False, out

    # Load the snapshot elsewhere: exactly the dataset at one moment
    d2 = mkdir(tmp_path, "copy")
    shutil.copy(d / "dump.rdb", d2 / "dump.rdb")
    term(a)
    b = servers.damselfly(d2)
    bc = client(b)
    snap_ctr = int(bc.get("ctr"))
    assert lo <= snap_ctr <= hi, (lo, snap_ctr, hi)
    p = bc.pipeline(transaction=False)
    for i in range(1, n_keys + 1):
        p.get(f"k:{i}")
        p.exists(f"n:{i}")
    res = p.execute()
    ks, ns = res[0::2], res[1::2]
    for i in range(1, n_keys + 1):
        k, n = ks[i - 1], ns[i - 1]
        if i <= snap_ctr:
            assert k == b"new" and n == 1, (i, snap_ctr, k, n)
        elif i == snap_ctr + 1:
            assert not (k == b"old" and n == 1), (i, snap_ctr, k, n)  # SET n:i came after SET k:i
        else:
            assert k == b"old" and n == 0, (i, snap_ctr, k, n)
    assert n_pre + n_keys + 1 + snap_ctr <= bc.dbsize() <= n_pre + n_keys + 2 + snap_ctr


@deadline(60)
def test_bgsave_schedule_and_double_bgsave(servers, tmp_path):
    d = mkdir(tmp_path, "data")
    a = servers.damselfly(d)
    c = client(a)
    p = c.pipeline(transaction=False)
    for i in range(100_000):
        p.set(f"k{i}", "v" * 50)
    p.execute()
    assert c.bgsave() is True
    try:
        r = c.execute_command("BGSAVE", "SCHEDULE")
        assert r in (b"Background saving scheduled", b"Background saving started", "OK", True), r
    except redis.ResponseError as e:  # the first one may already be over
        raise AssertionError(f"BGSAVE SCHEDULE failed: {e}")
    wait_bgsave(a)
    wait_bgsave(a)
    assert a.info("persistence")["rdb_last_bgsave_status"] == "ok"
    assert c.save() is True
    assert int(a.info("persistence")["rdb_changes_since_last_save"]) == 0


# 4. Corrupt and truncated snapshots ----------------------------------------------------

def _make_snapshot(servers, d):
    a = servers.damselfly(d)
    c = client(a)
    p = c.pipeline(transaction=False)
    for i in range(3000):
        p.set(f"key:{i}", f"value-{i}-" + "q" * 40)
    p.rpush("list", *[f"e{i}" for i in range(3000)])
    p.execute()
    c.save()
    term(a)
    return (d / "dump.rdb").read_bytes()


@deadline(90)
@pytest.mark.parametrize("damage", ["truncated-half", "truncated-tail", "flipped-byte", "garbage"])
def test_corrupt_snapshot_refused(servers, tmp_path, damage):
    d = mkdir(tmp_path, "data")
    data = _make_snapshot(servers, d)
    if damage == "truncated-half":
        bad = data[: len(data) // 2]
    elif damage == "truncated-tail":
        bad = data[:-5]
    elif damage == "flipped-byte":
        b = bytearray(data)
        b[len(b) // 2] ^= 0x20
        bad = bytes(b)
    else:
        bad = b"REDIS0010" + os.urandom(5000)
    (d / "dump.rdb").write_bytes(bad)
    rc, log, answered = servers.damselfly_expect_exit(d)
    assert rc is not None, f"server kept running on a damaged snapshot\n{log}"
    assert rc != 0, log
    assert not answered, "server answered clients while loading a damaged snapshot"
    assert "offset" in log.lower(), log
    # the damaged file is left alone
    assert (d / "dump.rdb").read_bytes() == bad


# 5. SHUTDOWN SAVE / NOSAVE / SIGTERM with save rules ---------------------------------------

@deadline(120)
@pytest.mark.parametrize("rules,how,saved", [
    ("", "sigterm", False),
    ("3600 1", "sigterm", True),
    ("", "shutdown", False),
    ("3600 1", "shutdown", True),
    ("", "shutdown save", True),
    ("3600 1", "shutdown nosave", False),
])
def test_shutdown_saving(servers, tmp_path, rules, how, saved):
    d = mkdir(tmp_path, "data")
    a = servers.damselfly(d, f"--save={rules}")
    c = client(a)
    c.set("k", "v")
    c.rpush("jobs", *[f"j{i}" for i in range(1000)])
    if how == "sigterm":
        assert term(a) == 0
    else:
        try:
            c.execute_command(*how.upper().split())
        except redis.ConnectionError:
            pass
        assert wait_exit(a) == 0
    assert (d / "dump.rdb").exists() == saved, os.listdir(d)
    b = servers.damselfly(d)
    bc = client(b)
    if saved:
        assert bc.get("k") == b"v" and bc.llen("jobs") == 1000
    else:
        assert bc.dbsize() == 0


@deadline(60)
def test_save_rule_triggers_background_save(servers, tmp_path):
    d = mkdir(tmp_path, "data")
    a = servers.damselfly(d, "--save=1 2")
    c = client(a)
    c.set("a", 1)
    time.sleep(2.5)
    assert not (d / "dump.rdb").exists(), "one change must not satisfy '1 2'"
    c.set("b", 2)
    deadline = time.monotonic() + 10
    while not (d / "dump.rdb").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (d / "dump.rdb").exists()
    wait_bgsave(a)
    kill9(a)
    b = servers.damselfly(d)
    assert client(b).mget("a", "b") == [b"1", b"2"]


# 6. The journal ------------------------------------------------------------------------------

class JournalLoad:
    """Writers: LPUSH jobs:<t> (tracks acknowledged values), MSET groups of keys
    spread across shards (all keys of a group get the same round number), INCR."""

    GROUPS = 20
    GROUP_KEYS = 8

    def __init__(self, srv, n_pushers=3):
        self.srv = srv
        self.stop = threading.Event()
        self.pushed = {t: [] for t in range(n_pushers)}   # (ack time, value)
        self.mset_acked = {}                                 # group -> last acked round
        self.incr_acked = [0, 0.0]
        self.errors = []
        self.threads = [threading.Thread(target=self._pusher, args=(t,)) for t in range(n_pushers)]
        self.threads += [threading.Thread(target=self._msetter), threading.Thread(target=self._incr)]

    def _guard(fn):
        def run(self, *a):
            try:
                fn(self, *a)
            except (redis.ConnectionError, redis.TimeoutError, ConnectionResetError, OSError):
                pass  # the server was killed
            except Exception as e:  # noqa: BLE001
                self.errors.append(repr(e))
        return run

    @_guard
    def _pusher(self, t):
        c = client(self.srv, timeout=10)
        i = 0
        while not self.stop.is_set():
            v = f"job-{t}-{i}"
            c.lpush(f"jobs:{t}", v)
            self.pushed[t].append((time.monotonic(), v))
            i += 1

    @_guard
    def _msetter(self):
        c = client(self.srv, timeout=10)
        r = 0
        while not self.stop.is_set():
            r += 1
            g = r % self.GROUPS
            c.mset({f"grp:{g}:{j}": str(r) for j in range(self.GROUP_KEYS)})
            self.mset_acked[g] = r

    @_guard
    def _incr(self):
        c = client(self.srv, timeout=10)
        while not self.stop.is_set():
            v = c.incr("counter")
            self.incr_acked[:] = [v, time.monotonic()]

    def start(self):
        for t in self.threads:
            t.start()

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def _check_journal_recovery(b, load, killed_at, lost_window_s):
    c = client(b)
    assert not load.errors, load.errors
    total = 0
    for t, pushed in load.pushed.items():
        got = [x.decode() for x in reversed(c.lrange(f"jobs:{t}", 0, -1))]
        total += len(pushed)
        must = [v for (at, v) in pushed if at <= killed_at - lost_window_s]
        # a prefix of the pushes, in order, covering every acknowledged one
        assert got == [v for (_a, v) in pushed][:len(got)] or got[:len(pushed)] == [v for (_a, v) in pushed], \
            f"jobs:{t} is not a prefix of the pushes"
        assert len(got) >= len(must), f"jobs:{t}: {len(must) - len(got)} acknowledged pushes lost"
        assert len(got) <= len(pushed) + 1
    assert total > 100, "the load did not run"
    for g in range(JournalLoad.GROUPS):
        vals = c.mget([f"grp:{g}:{j}" for j in range(JournalLoad.GROUP_KEYS)])
        assert len(set(vals)) == 1, f"group {g} half-applied: {vals}"
        if lost_window_s == 0 and g in load.mset_acked:
            assert vals[0] is not None and int(vals[0]) >= load.mset_acked[g], (g, vals[0], load.mset_acked[g])
    ctr = int(c.get("counter") or 0)
    if lost_window_s == 0:
        assert load.incr_acked[0] <= ctr <= load.incr_acked[0] + 1, (ctr, load.incr_acked)
    else:
        assert ctr <= load.incr_acked[0] + 1


@deadline(180)
@pytest.mark.parametrize("fsync,lost_window_s", [("always", 0.0), ("everysec", 1.5)])
def test_journal_kill9_under_load(servers, tmp_path, fsync, lost_window_s):
    d = mkdir(tmp_path, "data")
    flags = ("--appendonly", f"--appendfsync={fsync}")
    a = servers.damselfly(d, *flags)
    # something in a snapshot first, then journal on top of it
    c = client(a)
    c.rpush("base", *range(100))
    c.save()
    c.rpush("base", "after-save")
    load = JournalLoad(a)
    load.start()
    time.sleep(3.0)
    killed_at = time.monotonic()
    kill9(a)
    load.join()
    assert journal_files(d), os.listdir(d)
    b = servers.damselfly(d, *flags)
    assert client(b).llen("base") == 101
    _check_journal_recovery(b, load, killed_at, lost_window_s)
    # and a second restart replays the same again (idempotent start-up)
    before = canonical(b)
    kill9(b)
    b2 = servers.damselfly(d, *flags)
    assert_same(before, canonical(b2))


@deadline(180)
def test_journal_multi_exec_and_expiry_replay(servers, tmp_path):
    d = mkdir(tmp_path, "data")
    flags = ("--appendonly", "--appendfsync=always")
    a = servers.damselfly(d, *flags)
    c = client(a)
    p = c.pipeline(transaction=True)
    for i in range(10):
        p.set(f"tx:{i}", "1")
    p.incrby("tx:0", 5)
    p.execute()
    c.set("ttl-rel", "v", ex=1000)
    c.set("ttl-gone", "v", px=300)
    c.rpush("src", "a", "b", "c")
    c.lmove("src", "dst", "LEFT", "RIGHT")
    c.delete("tx:9")
    c.hset("h", mapping={"a": 1, "b": 2})
    c.hincrby("h", "a", 10)
    c.zadd("z", {"m": 1})
    c.zincrby("z", 2.5, "m")
    c.sadd("s", "x", "y")
    c.srem("s", "x")
    c1 = client(a, db=3)
    c1.set("db3key", "three")
    time.sleep(0.5)  # ttl-gone has expired
    expected = canonical(a)
    assert b"ttl-gone" not in expected[0]
    kill9(a)
    b = servers.damselfly(d, *flags)
    got = canonical(b)
    assert_same(expected, got, ttl_tolerance_ms=5000)
    assert client(b).get("ttl-gone") is None
    assert client(b).get("tx:0") == b"6"


@deadline(180)
def test_bgrewriteaof_then_restart(servers, tmp_path):
    d = mkdir(tmp_path, "data")
    flags = ("--appendonly", "--appendfsync=always")
    a = servers.damselfly(d, *flags)
    c = client(a)
    for r in range(3):
        p = c.pipeline(transaction=False)
        for i in range(500):
            p.lpush("q", f"job-{r}-{i}")
            p.incr("n")
            p.set(f"k{i % 300}", r)
        p.execute()
    old = journal_files(d)
    assert old, os.listdir(d)
    old_gens = {g for g, _ in old}
    assert c.bgrewriteaof()
    wait_bgsave(a)
    time.sleep(0.2)
    now = journal_files(d)
    new_gens = {g for g, _ in now}
    assert (d / "dump.rdb").exists()
    assert len(new_gens) == 1 and not (new_gens & old_gens), (old, now)
    # more writes after the rewrite go to the new generation
    c.lpush("q", "after-rewrite")
    c.incr("n")
    expected = canonical(a)
    kill9(a)
    b = servers.damselfly(d, *flags)
    assert_same(expected, canonical(b))
    assert client(b).get("n") == b"1501"
    assert {g for g, _ in journal_files(d)} >= new_gens


# 7. The Sidekiq case ----------------------------------------------------------------------

def _sidekiq_fill(srv, n_jobs=100_000, n_sched=1000, n_retry=100):
    c = client(srv)
    rnd = random.Random(7)
    now = 1_700_000_000.0
    batch = []
    p = c.pipeline(transaction=False)
    for i in range(n_jobs):
        job = json.dumps({"class": "HardWorker", "args": [i], "retry": True, "queue": "default",
                          "jid": f"{rnd.getrandbits(96):024x}", "created_at": now + i / 1000.0},
                         separators=(",", ":"))
        batch.append(job)
        if len(batch) == 100:
            p.lpush("queue:default", *batch)
            batch = []
        if i % 10_000 == 9_999:
            p.execute()
    if batch:
        p.lpush("queue:default", *batch)
    p.sadd("queues", "default")
    for i in range(n_sched):
        p.zadd("schedule", {json.dumps({"class": "Later", "args": [i], "jid": f"s{i:06d}"}): now + 60 + i})
    for i in range(n_retry):
        p.zadd("retry", {json.dumps({"class": "Flaky", "args": [i], "jid": f"r{i:04d}", "retry_count": i % 5,
                                     "error_message": "boom"}): now + 30 + i * 0.5})
    p.execute()
    assert c.llen("queue:default") == n_jobs
    assert 100 <= len(c.lindex("queue:default", 0)) <= 140  # ~120-byte jobs


def _sidekiq_state(srv):
    c = client(srv)
    return (c.lrange("queue:default", 0, -1), c.zrange("schedule", 0, -1, withscores=True),
            c.zrange("retry", 0, -1, withscores=True), c.smembers("queues"))


@deadline(240)
def test_sidekiq_jobs_survive_restart_via_save(servers, tmp_path):
    d = mkdir(tmp_path, "data")
    a = servers.damselfly(d)
    _sidekiq_fill(a)
    expected = _sidekiq_state(a)
    assert client(a).save()
    term(a)
    b = servers.damselfly(d, threads=1)
    got = _sidekiq_state(b)
    assert len(got[0]) == 100_000 and len(got[1]) == 1000 and len(got[2]) == 100
    assert got == expected


@deadline(240)
def test_sidekiq_jobs_survive_kill9_via_journal(servers, tmp_path):
    d = mkdir(tmp_path, "data")
    flags = ("--appendonly", "--appendfsync=always")
    a = servers.damselfly(d, *flags)
    _sidekiq_fill(a)
    expected = _sidekiq_state(a)
    kill9(a)
    b = servers.damselfly(d, *flags, timeout=120)
    got = _sidekiq_state(b)
    assert len(got[0]) == 100_000 and len(got[1]) == 1000 and len(got[2]) == 100
    assert got == expected
