"""Helpers for the persistence tests: servers restarted on the same --dir,
canonical dataset dumps, dataset fillers, snapshot / journal file helpers."""

import os
import shutil
import signal
import subprocess
import time

import redis

from conftest import DAMSELFLY_BIN, Server, ServerError, binary_present, free_port


class Servers:
    """Starts Damselfly / redis-server processes on chosen directories and
    stops every one still running at teardown (SIGTERM, then SIGKILL)."""

    def __init__(self, logdir):
        self.logdir = str(logdir)
        self.servers = []

    def damselfly(self, dir_, *flags, threads=2, timeout=30.0):
        if not binary_present():
            raise ServerError(f"damselfly binary not found at {DAMSELFLY_BIN}")
        port = free_port()
        argv = [DAMSELFLY_BIN, f"--port={port}", "--bind=127.0.0.1", "--logtostdout",
                f"--proactor_threads={threads}", f"--dir={dir_}", *flags]
        srv = Server("damselfly", argv, port, self.logdir, False, dir_)
        self.servers.append(srv)
        srv.wait_ready(timeout=timeout)
        return srv

    def damselfly_expect_exit(self, dir_, *flags, threads=2, timeout=20.0):
        """Starts Damselfly expecting it to refuse to start: returns (rc, log, answered)."""
        port = free_port()
        argv = [DAMSELFLY_BIN, f"--port={port}", "--bind=127.0.0.1", "--logtostdout",
                f"--proactor_threads={threads}", f"--dir={dir_}", *flags]
        srv = Server("damselfly", argv, port, self.logdir, False, dir_)
        self.servers.append(srv)
        answered = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and srv.proc.poll() is None:
            try:
                c = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
                c.ping()
                answered = True
                c.close()
            except Exception:  # noqa: BLE001
                pass
            time.sleep(0.05)
        rc = srv.proc.poll()
        if rc is None:
            kill9(srv)
            rc = None
        else:
            srv.returncode = rc
            srv._log.close()
        return rc, srv.log_tail(200), answered

    def redis(self, dir_, *extra):
        if not shutil.which("redis-server"):
            import pytest
            pytest.skip("redis-server not installed")
        port = free_port()
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(dir_), *extra]
        srv = Server("redis", argv, port, self.logdir, True, dir_)
        self.servers.append(srv)
        srv.wait_ready(timeout=30)
        return srv

    def close(self):
        for s in self.servers:
            if s.returncode is None and s.proc.poll() is None:
                try:
                    s.stop(check=False)
                except Exception:  # noqa: BLE001
                    pass
            try:
                s._log.close()
            except Exception:  # noqa: BLE001
                pass
        self.servers = []


def kill9(srv):
    if srv.proc.poll() is None:
        srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(10)
    srv.returncode = srv.proc.returncode
    try:
        srv._log.close()
    except Exception:  # noqa: BLE001
        pass


def term(srv, timeout=60):
    """SIGTERM and wait (a save at shutdown may take a while); returns the exit code."""
    if srv.proc.poll() is None:
        srv.proc.send_signal(signal.SIGTERM)
    srv.proc.wait(timeout)
    srv.returncode = srv.proc.returncode
    srv._log.close()
    return srv.returncode


def wait_exit(srv, timeout=60):
    srv.proc.wait(timeout)
    srv.returncode = srv.proc.returncode
    srv._log.close()
    return srv.returncode


def client(srv, db=0, timeout=60):
    return redis.Redis(host="127.0.0.1", port=srv.port, db=db, socket_timeout=timeout)


# --- canonical dumps -----------------------------------------------------------

def canonical(srv, dbs=range(16)):
    """{db: {key: (type, value, pttl)}} with values in a comparable form."""
    out = {}
    for db in dbs:
        c = client(srv, db)
        keys = list(c.scan_iter(count=1000))
        if not keys:
            c.close()
            continue
        pipe = c.pipeline(transaction=False)
        for k in keys:
            pipe.type(k)
        types = pipe.execute()
        pipe = c.pipeline(transaction=False)
        for k, t in zip(keys, types):
            t = t.decode()
            if t == "string":
                pipe.get(k)
            elif t == "list":
                pipe.lrange(k, 0, -1)
            elif t == "hash":
                pipe.hgetall(k)
            elif t == "set":
                pipe.smembers(k)
            elif t == "zset":
                pipe.zrange(k, 0, -1, withscores=True)
            else:
                pipe.type(k)
            pipe.pttl(k)
        res = pipe.execute()
        d = {}
        for i, (k, t) in enumerate(zip(keys, types)):
            v, ttl = res[2 * i], res[2 * i + 1]
            if isinstance(v, set):
                v = sorted(v)
            elif isinstance(v, dict):
                v = sorted(v.items())
            d[k] = (t.decode(), v, ttl)
        out[db] = d
        c.close()
    return out


def assert_same(a, b, ttl_tolerance_ms=15000):
    """Compares two canonical dumps: same dbs, keys, types, values; TTLs both
    persistent or both within the tolerance."""
    assert sorted(a) == sorted(b), f"databases differ: {sorted(a)} vs {sorted(b)}"
    for db in a:
        ka, kb = set(a[db]), set(b[db])
        assert ka == kb, (f"db {db}: keys only in first {sorted(ka - kb)[:10]}, "
                          f"only in second {sorted(kb - ka)[:10]}")
        for k in a[db]:
            ta, va, pa = a[db][k]
            tb, vb, pb = b[db][k]
            assert ta == tb, f"db {db} key {k!r}: type {ta} vs {tb}"
            assert va == vb, f"db {db} key {k!r} ({ta}): values differ"
            if pa < 0 or pb < 0:
                assert pa == pb, f"db {db} key {k!r}: PTTL {pa} vs {pb}"
            else:
                assert abs(pa - pb) <= ttl_tolerance_ms, f"db {db} key {k!r}: PTTL {pa} vs {pb}"


# --- dataset ---------------------------------------------------------------------

def fill_every_type(srv):
    """Every type and encoding the project has, TTLs, several databases."""
    c = client(srv, 0)
    p = c.pipeline(transaction=False)
    # strings: raw, int-encoded, negative, 64-bit, big (LZF-compressible), binary, empty
    p.set("s:str", "hello world")
    p.set("s:int", "12345")
    p.set("s:neg", "-7")
    p.set("s:zero", "0")
    p.set("s:i64", str(2 ** 63 - 1))
    p.set("s:i64min", str(-(2 ** 63)))
    p.set("s:notint", "0123")
    p.set("s:float", "3.14159")
    p.set("s:big", "abcdefgh" * 5000)
    p.set("s:rand", os.urandom(3000))
    p.set("s:bin", bytes(range(256)))
    p.set("s:empty", "")
    # lists: small (listpack), > 8 KB (quicklist of several nodes), big elements, int elements
    p.rpush("l:small", "a", "b", "1", "-2", "300000")
    p.rpush("l:big", *[f"element-{i:06d}-{'x' * 20}" for i in range(2000)])
    p.rpush("l:bigelems", *[("y" * 10000) + str(i) for i in range(5)])
    p.rpush("l:ints", *[str(i * 7919 - 50000) for i in range(600)])
    # hashes: small, > 128 fields, a value > 64 bytes
    p.hset("h:small", mapping={"f1": "v1", "f2": "2", "n": "-3"})
    p.hset("h:large", mapping={f"field{i}": f"value{i}" for i in range(1000)})
    p.hset("h:longval", mapping={"a": "b", "long": "z" * 200})
    # sets: intset small / large, strings small / large
    p.sadd("set:int", 1, 2, 3, -4, 2 ** 40)
    p.sadd("set:intbig", *range(0, 3000, 3))
    p.sadd("set:str", "apple", "banana", "cherry")
    p.sadd("set:strbig", *[f"member-{i}" for i in range(1000)])
    # sorted sets: small, > 128 members, a long member, special scores
    p.zadd("z:small", {"a": 1, "b": 2.5, "c": -3.25})
    p.zadd("z:large", {f"m{i}": i * 1.5 for i in range(600)})
    p.zadd("z:long", {"x" * 100: 1, "y": 2})
    p.zadd("z:special", {"ninf": float("-inf"), "pinf": float("inf"), "tiny": 1e-300, "zero": 0})
    # TTLs on every type
    p.set("ttl:str", "v", px=500000)
    p.rpush("ttl:list", "a", "b")
    p.pexpire("ttl:list", 400000)
    p.hset("ttl:hash", "f", "v")
    p.expire("ttl:hash", 3600)
    p.sadd("ttl:set", "a")
    p.expire("ttl:set", 7200)
    p.zadd("ttl:zset", {"a": 1})
    p.expire("ttl:zset", 86400 * 30)
    p.execute()
    for db in (1, 5, 15):
        cd = client(srv, db)
        p = cd.pipeline(transaction=False)
        p.set("s:str", f"db{db}")
        p.set("s:int", str(db))
        p.rpush("l:small", *[str(db)] * 3)
        p.hset("h:small", "db", db)
        p.sadd("set:int", db, db + 1)
        p.zadd("z:small", {"db": db})
        p.set(f"only-in-{db}", "x", ex=1000 + db)
        for i in range(200):
            p.set(f"db{db}:k{i}", f"v{i}")
        p.execute()
        cd.close()
    c.close()


def wait_bgsave(srv, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = srv.info("persistence")
        if info.get("rdb_bgsave_in_progress") == "0" and info.get("aof_rewrite_in_progress", "0") == "0":
            return info
        time.sleep(0.02)
    raise AssertionError("BGSAVE did not finish in time")


def check_rdb(path):
    """Runs redis-check-rdb on `path`; returns (ok, output)."""
    exe = shutil.which("redis-check-rdb")
    if not exe:
        return None, "redis-check-rdb not installed"
    r = subprocess.run([exe, str(path)], capture_output=True, timeout=120)
    out = (r.stdout + r.stderr).decode(errors="replace")
    return (r.returncode == 0 and "RDB looks OK" in out), out


def journal_files(dir_, base="appendonly.aof"):
    out = []
    for name in os.listdir(dir_):
        if name.startswith(base + "."):
            parts = name[len(base) + 1:].split(".")
            if len(parts) == 2 and all(p.isdigit() for p in parts):
                out.append((int(parts[0]), int(parts[1])))
    return sorted(out)
