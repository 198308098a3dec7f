"""String and keyspace commands through redis-py (RESP2 and RESP3).

A small smoke set runs on every server configuration; the broad command
coverage runs on one multi-shard configuration to keep the suite fast.
"""

import time

import pytest
import redis

from conftest import SELFTEST_REDIS, parse_info, parse_kv_list
from resp import RespConn, to_py
from util import spread_keys

CONFIGS = {
    "t1": ("--proactor_threads=1",),
    "t2": ("--proactor_threads=2",),
    "t4": ("--proactor_threads=4",),
    "t2-epoll": ("--proactor_threads=2", "--force_epoll"),
}
BROAD = ("--proactor_threads=4", "--dbnum=16")
FAR = 10 ** 6  # a TTL long enough that timing can never matter


@pytest.fixture(scope="module", params=list(CONFIGS), ids=list(CONFIGS))
def cfg_server(request, damselfly_module):
    srv = damselfly_module(*CONFIGS[request.param])
    srv.config_name = request.param
    srv.flags = CONFIGS[request.param]
    return srv


@pytest.fixture(scope="module")
def broad_server(damselfly_module):
    return damselfly_module(*BROAD)


def _raw(r):
    """A raw RESP connection to the same server as redis-py client `r`."""
    return RespConn(r.connection_pool.connection_kwargs["port"])


def _client(srv, proto):
    c = srv.client(protocol=proto, decode_responses=True)
    c.flushall()
    return c


# ---------------------------------------------------------------------------
# every configuration x RESP2/RESP3
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("proto", [2, 3])
def test_smoke_per_config(cfg_server, proto):
    r = _client(cfg_server, proto)
    keys = spread_keys(4, 2, "smoke")
    assert r.set("a", "1") is True
    assert r.get("a") == "1"
    assert r.incr("a") == 2
    assert r.mset({k: f"v{i}" for i, k in enumerate(keys)}) is True
    assert r.mget(keys + ["missing"]) == [f"v{i}" for i in range(len(keys))] + [None]
    assert r.exists(*keys, "missing") == len(keys)
    assert r.expire(keys[0], FAR) is True
    assert FAR - 5 <= r.ttl(keys[0]) <= FAR
    assert r.ttl(keys[1]) == -1
    assert r.ttl("missing") == -2
    assert r.delete(*keys, "missing") == len(keys)
    assert r.dbsize() == 1
    assert r.get("missing") is None
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'get' command"):
        r.execute_command("GET")


def test_info_per_config(cfg_server):
    info = cfg_server.info()
    assert info["redis_version"].startswith("7."), info.get("redis_version")
    api = info["multiplexing_api"]
    if SELFTEST_REDIS:
        assert api == "epoll"
        return
    assert api in ("iouring", "epoll")
    if "--force_epoll" in cfg_server.flags:
        assert api == "epoll"
    threads = int(next(f.split("=")[1] for f in cfg_server.flags if f.startswith("--proactor_threads=")))
    assert int(info["thread_count"]) == threads


# ---------------------------------------------------------------------------
# broad coverage on one configuration
# ---------------------------------------------------------------------------

@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def r(request, broad_server):
    c = _client(broad_server, request.param)
    yield c
    c.close()


def test_set_options(r):
    assert r.set("k", "v1", nx=True) is True
    assert r.set("k", "v2", nx=True) is None
    assert r.set("nope", "x", xx=True) is None
    assert r.exists("nope") == 0
    assert r.set("k", "v3", xx=True) is True
    assert r.set("k", "v4", get=True) == "v3"
    assert r.set("new", "n", get=True) is None
    assert r.get("new") == "n"
    r.set("k", "v", ex=100)
    assert 95 <= r.ttl("k") <= 100
    r.set("k", "v", px=100000)
    assert 95000 <= r.pttl("k") <= 100000
    at = int(time.time()) + 1000
    r.set("k", "v", exat=at)
    assert r.expiretime("k") == at
    r.set("k", "v", pxat=at * 1000 + 123)
    assert r.pexpiretime("k") == at * 1000 + 123
    r.set("k", "w", keepttl=True)
    assert r.pexpiretime("k") == at * 1000 + 123
    assert r.get("k") == "w"
    r.set("k", "z")  # plain SET clears the TTL
    assert r.ttl("k") == -1
    # NX + GET (allowed since 7.0): returns old value, does not overwrite
    with _raw(r) as c:
        assert c.call("SET", "k", "q", "NX", "GET") == ("$", b"z")
        assert c.call("SET", "k2", "q", "XX", "GET") == ("$", None)
    assert r.get("k") == "z"
    for bad, msg in [
        (("SET", "k", "v", "NX", "XX"), "syntax error"),
        (("SET", "k", "v", "EX"), "syntax error"),
        (("SET", "k", "v", "EX", "10", "PX", "100"), "syntax error"),
        (("SET", "k", "v", "BOGUS"), "syntax error"),
        (("SET", "k", "v", "EX", "abc"), "value is not an integer or out of range"),
        (("SET", "k", "v", "EX", "0"), "invalid expire time in 'set' command"),
        (("SET", "k", "v", "PX", "-5"), "invalid expire time in 'set' command"),
        (("SET", "k"), "wrong number of arguments for 'set' command"),
    ]:
        with pytest.raises(redis.ResponseError) as ei:
            r.execute_command(*bad)
        assert str(ei.value) == msg, bad


def test_setnx_setex_getset_getdel_getex(r):
    assert r.setnx("a", "1") is True
    assert r.setnx("a", "2") is False
    assert r.get("a") == "1"
    assert r.execute_command("SETEX", "b", 100, "x")
    assert 95 <= r.ttl("b") <= 100
    assert r.psetex("c", 100000, "y") is True
    assert 95000 <= r.pttl("c") <= 100000
    with pytest.raises(redis.ResponseError, match="invalid expire time in 'setex' command"):
        r.execute_command("SETEX", "b", 0, "x")
    assert r.getset("a", "3") == "1"
    assert r.getset("fresh", "f") is None
    assert r.getdel("a") == "3"
    assert r.getdel("a") is None
    assert r.exists("a") == 0
    r.set("g", "v")
    assert r.getex("g", ex=100) == "v"
    assert 95 <= r.ttl("g") <= 100
    assert r.getex("g", persist=True) == "v"
    assert r.ttl("g") == -1
    assert r.getex("g", px=50000) == "v"
    assert 45000 <= r.pttl("g") <= 50000
    assert r.getex("missing", ex=10) is None
    with pytest.raises(redis.ResponseError, match="syntax error"):
        r.execute_command("GETEX", "g", "EX", "10", "PERSIST")


def test_mget_mset_msetnx_across_shards(r):
    keys = spread_keys(4, 3, "m")
    assert r.mset({k: k.upper() for k in keys}) is True
    assert r.mget(keys) == [k.upper() for k in keys]
    assert r.msetnx({keys[0]: "x", "m:new": "y"}) is False
    assert r.exists("m:new") == 0
    assert r.get(keys[0]) == keys[0].upper()
    fresh = spread_keys(4, 1, "fresh")
    assert r.msetnx({k: "n" for k in fresh}) is True
    assert r.mget(fresh) == ["n"] * 4
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'mset' command"):
        r.execute_command("MSET", "a", "1", "b")
    # duplicate keys in one MSET: last one wins
    r.execute_command("MSET", "d", "1", "d", "2")
    assert r.get("d") == "2"


def test_incr_family(r):
    assert r.incr("n") == 1
    assert r.incrby("n", 10) == 11
    assert r.decr("n") == 10
    assert r.decrby("n", 20) == -10
    assert r.execute_command("INCRBY", "n", "-5") == -15
    r.set("big", str(2 ** 63 - 1))
    with pytest.raises(redis.ResponseError) as ei:
        r.incr("big")
    assert str(ei.value) == "increment or decrement would overflow"
    r.set("small", str(-2 ** 63))
    with pytest.raises(redis.ResponseError, match="increment or decrement would overflow"):
        r.decr("small")
    r.set("s", "abc")
    with pytest.raises(redis.ResponseError, match="value is not an integer or out of range"):
        r.incr("s")
    r.set("sp", " 1")
    with pytest.raises(redis.ResponseError, match="value is not an integer or out of range"):
        r.incr("sp")
    with pytest.raises(redis.ResponseError, match="value is not an integer or out of range"):
        r.execute_command("INCRBY", "n", "1.5")
    # INCRBYFLOAT (the examples from the Redis documentation)
    r.set("f", "10.50")
    assert r.incrbyfloat("f", 0.1) == pytest.approx(10.6)
    assert r.execute_command("GET", "f") == "10.6"
    assert r.execute_command("INCRBYFLOAT", "f", "-5") in ("5.6", 5.6)
    assert r.get("f") == "5.6"
    r.set("f", "5.0e3")
    r.execute_command("INCRBYFLOAT", "f", "2.0e2")
    assert r.get("f") == "5200"
    r.execute_command("INCRBYFLOAT", "nf", "3")
    assert r.get("nf") == "3"
    with pytest.raises(redis.ResponseError, match="value is not a valid float"):
        r.execute_command("INCRBYFLOAT", "s", "1")
    with pytest.raises(redis.ResponseError, match="value is not a valid float"):
        r.execute_command("INCRBYFLOAT", "f", "abc")


def test_append_strlen_ranges(r):
    assert r.append("s", "Hello") == 5
    assert r.append("s", " World") == 11
    assert r.strlen("s") == 11
    assert r.strlen("missing") == 0
    assert r.getrange("s", 0, 4) == "Hello"
    assert r.getrange("s", -5, -1) == "World"
    assert r.getrange("s", 5, 2) == ""
    assert r.getrange("s", 0, 100) == "Hello World"
    assert r.getrange("missing", 0, 10) == ""
    assert r.execute_command("SUBSTR", "s", 0, 4) == "Hello"
    assert r.setrange("s", 6, "Redis") == 11
    assert r.get("s") == "Hello Redis"
    assert r.setrange("pad", 5, "x") == 6
    assert r.get("pad") == "\x00" * 5 + "x"
    assert r.setrange("empty", 0, "") == 0
    assert r.exists("empty") == 0
    with pytest.raises(redis.ResponseError, match="offset is out of range"):
        r.setrange("s", -1, "x")


def test_del_unlink_exists_touch_type(r):
    keys = spread_keys(4, 2, "d")
    r.mset({k: "1" for k in keys})
    assert r.exists(keys[0], keys[0], "nope") == 2  # duplicates count twice
    assert r.touch(*keys, "nope") == len(keys)
    assert r.type(keys[0]) == "string"
    assert r.type("nope") == "none"
    assert r.delete(keys[0], keys[1], "nope") == 2
    assert r.unlink(*keys[2:5], "nope") == 3
    assert r.exists(*keys) == len(keys) - 5
    assert r.delete("nope") == 0


def test_expire_family(r):
    r.set("k", "v")
    assert r.expire("k", 100, xx=True) is False  # no TTL yet
    assert r.expire("k", 100, nx=True) is True
    assert r.expire("k", 200, nx=True) is False
    assert r.expire("k", 50, gt=True) is False
    assert r.expire("k", 200, gt=True) is True
    assert r.expire("k", 300, lt=True) is False
    assert r.expire("k", 150, lt=True) is True
    assert 145 <= r.ttl("k") <= 150
    assert r.pexpire("k", 100000) is True
    assert 95000 <= r.pttl("k") <= 100000
    at = int(time.time()) + 5000
    assert r.expireat("k", at) is True
    assert r.expiretime("k") == at
    assert r.pexpireat("k", at * 1000 + 7) is True
    assert r.pexpiretime("k") == at * 1000 + 7
    assert r.expiretime("k") == at
    assert r.persist("k") is True
    assert r.persist("k") is False
    assert r.ttl("k") == -1 and r.pttl("k") == -1
    assert r.expiretime("k") == -1 and r.pexpiretime("k") == -1
    assert r.expiretime("missing") == -2
    assert r.expire("missing", 10) is False
    # GT on a key without TTL: no TTL counts as infinite -> GT never applies, LT does
    r.set("p", "v")
    assert r.expire("p", 100, gt=True) is False
    assert r.expire("p", 100, lt=True) is True
    with pytest.raises(redis.ResponseError,
                       match="NX and XX, GT or LT options at the same time are not compatible"):
        r.execute_command("EXPIRE", "p", "10", "NX", "XX")
    with pytest.raises(redis.ResponseError, match="GT and LT options at the same time are not compatible"):
        r.execute_command("EXPIRE", "p", "10", "GT", "LT")
    with pytest.raises(redis.ResponseError, match="Unsupported option BOGUS"):
        r.execute_command("EXPIRE", "p", "10", "BOGUS")
    # expiring in the past deletes
    assert r.expire("p", -1) is True
    assert r.exists("p") == 0
    r.set("q", "v", px=30)
    time.sleep(0.1)
    assert r.get("q") is None
    assert r.exists("q") == 0


def test_rename_copy_move(r):
    r.set("a", "1", ex=FAR)
    assert r.rename("a", "b") is True
    assert r.exists("a") == 0 and r.get("b") == "1"
    assert r.ttl("b") > 0  # TTL travels with the key
    with pytest.raises(redis.ResponseError, match="no such key"):
        r.rename("missing", "x")
    r.set("c", "2")
    assert r.renamenx("b", "c") is False
    assert r.renamenx("b", "d") is True
    assert r.rename("d", "d") is True and r.get("d") == "1"
    # COPY: plain, existing destination, REPLACE, other DB
    assert r.copy("d", "e") is True
    assert r.get("e") == "1" and r.ttl("e") > 0
    assert r.copy("c", "e") is False
    assert r.copy("c", "e", replace=True) is True
    assert r.get("e") == "2"
    assert r.copy("missing", "z") is False
    assert r.copy("c", "other", destination_db=3) is True
    r3 = r.connection_pool.connection_kwargs
    c3 = redis.Redis(host="127.0.0.1", port=r3["port"], db=3, decode_responses=True,
                     protocol=r3.get("protocol", 2))
    assert c3.get("other") == "2"
    # MOVE
    assert r.move("c", 3) is True
    assert r.exists("c") == 0 and c3.get("c") == "2"
    r.set("c", "again")
    assert r.move("c", 3) is False  # exists in target
    assert r.move("missing", 3) is False
    with pytest.raises(redis.ResponseError, match="source and destination objects are the same"):
        r.move("c", 0)
    c3.close()


def test_keys_scan_randomkey_dbsize(r):
    names = [f"user:{i}" for i in range(150)] + [f"item:{i}" for i in range(50)]
    r.mset({n: "x" for n in names})
    assert r.dbsize() == 200
    assert sorted(r.keys("user:1?")) == sorted(f"user:{i}" for i in range(10, 20))
    assert sorted(r.keys("*")) == sorted(names)
    assert r.keys("nomatch*") == []

    def scan_all(**kw):
        seen, cursor, rounds = [], 0, 0
        while True:
            cursor, batch = r.scan(cursor, **kw)
            seen += batch
            rounds += 1
            assert rounds < 10000
            if int(cursor) == 0:
                return seen, rounds

    seen, rounds = scan_all(count=10)
    assert set(seen) == set(names)
    assert rounds > 1  # COUNT 10 over 200 keys must take several rounds
    seen, _ = scan_all(match="item:*", count=20)
    assert set(seen) == {f"item:{i}" for i in range(50)}
    seen, _ = scan_all(_type="string")
    assert set(seen) == set(names)
    seen, _ = scan_all(_type="list")
    assert seen == []
    assert r.randomkey() in set(names)
    r.flushdb()
    assert r.randomkey() is None
    assert r.dbsize() == 0


def test_select_flushdb_flushall(r, broad_server):
    r.set("in0", "x")
    pool = redis.Redis(host="127.0.0.1", port=broad_server.port, db=5, decode_responses=True)
    pool.set("in5", "y")
    assert pool.get("in0") is None
    assert r.get("in5") is None
    assert pool.dbsize() == 1
    pool.flushdb()
    assert pool.dbsize() == 0 and r.dbsize() == 1
    pool.set("in5", "y")
    r.flushall()
    assert pool.dbsize() == 0 and r.dbsize() == 0
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        r.execute_command("SELECT", 16)
    with pytest.raises(redis.ResponseError, match="value is not an integer or out of range"):
        r.execute_command("SELECT", "x")
    pool.close()


def test_object_encoding(r):
    r.set("i", "12345")
    r.set("e", "short string")
    r.set("l", "x" * 45)
    assert r.object("encoding", "i") == "int"
    assert r.object("encoding", "e") == "embstr"
    assert r.object("encoding", "l") == "raw"
    r.append("e", "!")
    assert r.object("encoding", "e") == "raw"
    assert r.object("encoding", "missing") is None


def test_info_fields(broad_server):
    c = broad_server.raw()
    c.call("FLUSHALL")
    c.call("SET", "a", "1")
    c.call("SET", "b", "1", "EX", FAR)
    c.call("SELECT", "2")
    c.call("SET", "z", "1")
    info_text = to_py(c.call("INFO")).decode()
    info = parse_info(info_text)
    for section in ("# Server", "# Clients", "# Keyspace"):
        assert section in info_text
    assert info["redis_version"].startswith("7.")
    assert int(info["connected_clients"]) >= 1
    db0 = parse_kv_list(info["db0"])
    assert db0["keys"] == "2" and db0["expires"] == "1"
    assert int(db0["avg_ttl"]) >= 0  # Redis estimates it lazily (may still be 0)
    assert parse_kv_list(info["db2"]) == {"keys": "1", "expires": "0", "avg_ttl": "0"}
    assert "db1" not in info  # empty databases are not listed
    only_ks = to_py(c.call("INFO", "keyspace")).decode()
    assert "# Keyspace" in only_ks and "redis_version" not in only_ks
    assert "multiplexing_api" in parse_info(to_py(c.call("INFO", "server")))
    c.call("FLUSHALL")
    c.close()


def test_connected_clients_counts(broad_server):
    base = int(broad_server.info()["connected_clients"])
    extra = [broad_server.raw() for _ in range(5)]
    for e in extra:
        assert e.call("PING") == ("+", b"PONG")
    now = int(broad_server.info()["connected_clients"])
    assert now == base + 5
    for e in extra:
        e.close()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and int(broad_server.info()["connected_clients"]) != base:
        time.sleep(0.05)
    assert int(broad_server.info()["connected_clients"]) == base


def test_hello3_map(broad_server):
    with broad_server.raw() as c:
        rep = c.call("HELLO", "3")
        assert rep[0] == "%", rep  # a real RESP3 map
        m = to_py(rep)
        assert set(m) >= {b"server", b"version", b"proto", b"id", b"mode", b"role", b"modules"}
        assert m[b"proto"] == 3
        assert m[b"version"].startswith(b"7.")
        assert isinstance(m[b"id"], int)
        assert m[b"mode"] == b"standalone"
        assert m[b"role"] == b"master"
        assert m[b"modules"] == []
        # in RESP3 a missing key is the RESP3 null, not the RESP2 nil bulk
        assert c.call("GET", "missing-hello") == ("_", None)
        rep2 = c.call("HELLO", "2")
        assert rep2[0] == "*" and to_py(rep2)[to_py(rep2).index(b"proto") + 1] == 2
        assert c.call("GET", "missing-hello") == ("$", None)
        assert c.call("HELLO", "4") == ("-", b"NOPROTO unsupported protocol version")


def test_client_commands(broad_server):
    c = broad_server.client(decode_responses=True, single_connection_client=True)
    assert c.client_getname() is None
    assert c.client_setname("e2e-conn") is True
    assert c.client_getname() == "e2e-conn"
    cid = c.client_id()
    assert isinstance(cid, int) and cid > 0
    other = broad_server.client(decode_responses=True, single_connection_client=True)
    assert other.client_id() != cid
    listing = c.execute_command("CLIENT", "LIST")
    if isinstance(listing, bytes):
        listing = listing.decode()
    lines = [ln for ln in listing.splitlines() if ln]
    assert len(lines) >= 2
    mine = [ln for ln in lines if f"id={cid} " in ln]
    assert len(mine) == 1 and "name=e2e-conn" in mine[0] and "addr=127.0.0.1:" in mine[0]
    with pytest.raises(redis.ResponseError):
        c.client_setname("has space")
    c.close()
    other.close()


def test_auth_requirepass(damselfly):
    srv = damselfly("--proactor_threads=2", "--requirepass=s3cret")
    with srv.raw() as c:
        assert c.call("GET", "k") == ("-", b"NOAUTH Authentication required.")
        assert c.call("SET", "k", "v") == ("-", b"NOAUTH Authentication required.")
        assert c.call("AUTH", "wrong") == (
            "-", b"WRONGPASS invalid username-password pair or user is disabled.")
        assert c.call("AUTH", "s3cret") == ("+", b"OK")
        assert c.call("SET", "k", "v") == ("+", b"OK")
        assert c.call("GET", "k") == ("$", b"v")
    r = srv.client(password="s3cret", decode_responses=True)
    assert r.get("k") == "v"
    with pytest.raises(redis.AuthenticationError):
        srv.client(password="nope").ping()


def test_maxmemory_oom(damselfly):
    srv = damselfly("--proactor_threads=2", "--maxmemory=2mb")
    r = srv.client()
    r.set("small", "keep")
    big = b"x" * 100_000
    oom_at = None
    for i in range(200):  # 200 x 100 KB = 20 MB, far beyond 2 MB
        try:
            r.set(f"big:{i}", big)
        except redis.ResponseError as e:
            assert str(e) == "command not allowed when used memory > 'maxmemory'."
            oom_at = i
            break
    assert oom_at is not None, "never hit OOM with --maxmemory=2mb"
    assert oom_at >= 1, "OOM before anything could be stored"
    with srv.raw() as c:
        assert c.call("SET", "big:again", big) == ("-", b"OOM command not allowed when used memory > 'maxmemory'.")
        assert c.call("GET", "small") == ("$", b"keep")  # reads still work
        assert c.call("GET", "big:0") == ("$", big)
        assert c.call("DEL", *[f"big:{i}" for i in range(oom_at)]) == (":", oom_at)  # DEL still works
    # after freeing memory, writes are accepted again
    deadline = time.monotonic() + 5
    while True:
        try:
            r.set("after", "ok")
            break
        except redis.ResponseError:
            assert time.monotonic() < deadline, "writes still refused after deleting the big values"
            time.sleep(0.1)
    assert r.get("after") == b"ok"


def test_setrange_huge_offset_is_refused_like_redis(broad_server, redis_server):
    # offset + length past Int64.max once overflowed past the size check and crashed the server.
    answers = []
    for srv in (broad_server, redis_server):
        c = srv.client()
        out = []
        for offset in (9223372036854775807, 2147483647, 536870912):
            try:
                out.append(c.setrange("huge", offset, "A"))
            except redis.ResponseError as e:
                out.append(str(e))
        out.append(c.exists("huge"))
        answers.append(out)
    assert answers[0] == answers[1]
    assert answers[0][0] == "string exceeds maximum allowed size (proto-max-bulk-len)"
