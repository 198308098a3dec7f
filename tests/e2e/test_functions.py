"""Redis 7 functions end to end: FUNCTION LOAD / LIST / DELETE / FLUSH / DUMP /
RESTORE / STATS and FCALL / FCALL_RO.

Differential: every scenario runs against Damselfly (4 threads / 4 shards)
and a real redis-server 7.0, and the replies must be equal byte for byte
(tagged replies), in RESP2 and RESP3.  Redis lists libraries and functions in
hash-table order, so FUNCTION LIST replies are compared after sorting (the
reply types and nesting are still compared exactly).  FUNCTION DUMP payloads
cross both ways: Damselfly restores what redis-server dumped and the other
way round, and an RDB snapshot Damselfly wrote with libraries in it loads in
redis-server (and Damselfly's own restart).
"""

import shutil

import pytest

import difftools as dt

from conftest import SELFTEST_REDIS
from persist_util import Servers, client, kill9
from resp import RespConn, to_py
from util import keys_on_shards

NUM_SHARDS = 4
KS = keys_on_shards(NUM_SHARDS, 2, "fn")
K = [KS[s][0] for s in range(NUM_SHARDS)]

LIB = """#!lua name=mylib
redis.register_function('echo', function(keys, args) return {keys, args} end)
redis.register_function('put', function(keys, args)
  for i, k in ipairs(keys) do redis.call('set', k, args[1]) end
  return #keys
end)
redis.register_function{function_name='peek', callback=function(keys) return redis.call('get', keys[1]) end,
  flags={'no-writes', 'allow-stale'}, description='reads one key'}
redis.register_function{function_name='sneaky', callback=function(keys) return redis.call('set', keys[1], 'x') end,
  flags={'no-writes'}}
redis.register_function('conv', function(keys, args)
  return {1, 3.99, true, false, 'str', {ok='fine'}, redis.call('incr', keys[1]), redis.pcall('hget', keys[1], 'f')}
end)
redis.register_function('resp3', function(keys, args)
  redis.setresp(3)
  redis.call('hset', keys[1], 'a', '1')
  return redis.call('hgetall', keys[1])
end)
"""

ERRS = """#!lua name=errs
redis.register_function('boom', function() error('boom') end)
redis.register_function('unknown', function() return redis.call('nosuch') end)
redis.register_function('reply', function() return redis.error_reply('MY err') end)
redis.register_function('table', function() error({err='MYERR x'}) end)
redis.register_function('global', function() gx = 1 end)
redis.register_function('keys', function() return KEYS end)
redis.register_function('wrongtype', function(keys) return redis.call('incr', keys[1]) end)
"""


@pytest.fixture(scope="module")
def dfly(damselfly_module):
    return damselfly_module(f"--proactor_threads={NUM_SHARDS}")


@pytest.fixture(scope="module")
def servers(dfly, redis_server):
    return [("damselfly", dfly), ("redis", redis_server)]


def sort_listing(reply):
    """FUNCTION LIST with libraries (and each library's functions) sorted by name."""
    t, libs = reply
    if t not in "*":
        return reply

    def fields(lib):
        lt, v = lib
        return lt, (v if lt == "%" else [(v[i], v[i + 1]) for i in range(0, len(v), 2)])

    def norm_lib(lib):
        lt, pairs = fields(lib)
        out = []
        for k, v in pairs:
            if k[1] == b"functions":
                ft, funcs = v
                v = (ft, sorted(funcs, key=lambda f: repr(fields(f)[1][0][1])))
            out.append((k, v))
        return lt, out

    libs = [norm_lib(lib) for lib in libs]
    return t, sorted(libs, key=lambda lib: lib[1][0][1][1])


def run_both(servers, scenario):
    return dt.run_on_both(servers, scenario, reset=[["FLUSHALL"], ["FUNCTION", "FLUSH"]])


def both(servers, cmds, proto=2):
    def scenario(port):
        with RespConn(port) as c:
            if proto == 3:
                c.call("HELLO", "3")
            replies = []
            for cmd in cmds:
                r = c.call(*cmd)
                if [str(x).upper() for x in cmd[:2]] == ["FUNCTION", "LIST"]:
                    r = sort_listing(r)
                replies.append(r)
            return replies
    return run_both(servers, scenario)


@pytest.mark.parametrize("proto", [2, 3])
def test_load_list_stats_delete_equal_redis(servers, proto):
    both(servers, [
        ["FUNCTION", "LOAD", LIB],
        ["FUNCTION", "LOAD", LIB],
        ["FUNCTION", "LOAD", "REPLACE", LIB],
        ["FUNCTION", "LOAD", ERRS],
        ["FUNCTION", "LIST"],
        ["FUNCTION", "LIST", "WITHCODE"],
        ["FUNCTION", "LIST", "LIBRARYNAME", "MY*"],
        ["FUNCTION", "LIST", "WITHCODE", "LIBRARYNAME", "e?rs"],
        ["FUNCTION", "LIST", "LIBRARYNAME", "nothing*"],
        ["FUNCTION", "STATS"],
        ["FUNCTION", "DELETE", "errs"],
        ["FUNCTION", "DELETE", "errs"],
        ["FUNCTION", "STATS"],
        ["FCALL", "boom", "0"],
        ["FUNCTION", "FLUSH", "SYNC"],
        ["FUNCTION", "LIST"],
        ["FUNCTION", "STATS"],
    ], proto)


def test_load_errors_equal_redis(servers):
    bad = [
        "return 1", "#!lua", "#!lua\nreturn 1", "#!python name=x\n", "#!lua name=x foo=bar\n",
        "#!lua name=x name=y\n", "#!lua name=x-y\n", "#!lua name=x\nreturn 1", "#!lua name=x\n(((",
        "#!lua name=x\nredis.call('set','a','b')",
        "#!lua name=x\nlocal t = string",
        "#!lua name=x\nlocal t = redis.setresp",
        "#!lua name=x\nredis.register_function('f', function() end)\nfoo = 1",
        "#!lua name=x\nredis.register_function('f-1', function() end)",
        "#!lua name=x\nredis.register_function('f', function() end)\nredis.register_function('f', function() end)",
        "#!lua name=x\nredis.register_function{function_name='f', callback=function() end, flags={'bad'}}",
        "#!lua name=x\nredis.register_function{function_name='f', callback=function() end, flags='no-writes'}",
        "#!lua name=x\nredis.register_function{function_name='f', callback=function() end, foo=1}",
        "#!lua name=x\nredis.register_function{function_name='f', callback=function() end, description={}}",
        "#!lua name=x\nredis.register_function{function_name={}, callback=function() end}",
        "#!lua name=x\nredis.register_function{function_name='f', callback='g'}",
        "#!lua name=x\nredis.register_function{callback=function() end}",
        "#!lua name=x\nredis.register_function{function_name='f'}",
        "#!lua name=x\nredis.register_function('f')",
        "#!lua name=x\nredis.register_function('f', 'g')",
        "#!lua name=x\nredis.register_function({}, function() end)",
        "#!lua name=x\nredis.register_function('f', function() end, 3)",
        "#!lua name=x\nredis.register_function()",
        "#!lua name=x\nlocal a = nil; a.b = 1",
        "#!lua name=x\nerror('at load')",
        "#!lua name=x\nerror({err='CUSTOM at load'})",
        "#!lua name=x\nwhile true do end",  # stopped by the 500 ms load limit
        # The #! line is split as sdssplitargs splits it: quotes, and an empty engine.
        "#! name=x\nredis.register_function('f', function() return 1 end)",
        '#!lua name="fo"o"\nredis.register_function(\'f\', function() return 1 end)',
        '#!lua name=""\nredis.register_function(\'f\', function() return 1 end)',
        '#!lua name=foo"\nredis.register_function(\'f\', function() return 1 end)',
        "#!lua name='bad\nredis.register_function('f', function() return 1 end)",
        '#!lua name="quoted"\nredis.register_function(\'quotedf\', function() return 1 end)',
    ]
    cmds = [["FUNCTION", "LOAD", code] for code in bad]
    cmds += [
        ["FUNCTION", "LOAD", LIB],
        ["FUNCTION", "LOAD", "#!lua name=other\nredis.register_function('ECHO', function() end)"],
        ["FUNCTION", "LOAD", "#!LUA name=numbered\nredis.register_function(1, function() return 'one' end)"],
        ["FCALL", "1", "0"],
        ["FUNCTION", "LOAD", "foo", "bar"],
        ["FUNCTION", "LOAD", "REPLACE"],
        ["FUNCTION", "LIST", "LIBRARYNAME"],
        ["FUNCTION", "LIST", "WITHCODE", "WITHCODE"],
        ["FUNCTION", "LIST", "bogus"],
        ["FUNCTION", "FLUSH", "lazy"],
        ["FUNCTION", "FLUSH", "sync", "async"],
        ["FUNCTION", "DELETE"],
        ["FUNCTION", "DELETE", "a", "b"],
        ["FUNCTION", "STATS", "x"],
        ["FUNCTION", "DUMP", "x"],
        ["FUNCTION", "RESTORE"],
        ["FUNCTION", "RESTORE", "garbage"],
        ["FUNCTION", "RESTORE", "arg1", "arg2", "arg3"],  # the count before the policy
        ["FUNCTION", "RESTORE", "garbage", "FLUSH"],
        ["FUNCTION", "KILL"],
        ["FUNCTION", "nosub"],
        ["FUNCTION"],
        ["FUNCTION", "HELP"],
        ["FUNCTION", "STATS"],
    ]
    both(servers, cmds)


@pytest.mark.parametrize("proto", [2, 3])
def test_fcall_equal_redis(servers, proto):
    both(servers, [
        ["FUNCTION", "LOAD", LIB],
        ["FUNCTION", "LOAD", ERRS],
        ["FCALL", "echo", "2", K[0], K[1], "a", "b"],
        ["FCALL", "ECHO", "0"],
        ["FCALL", "put", str(NUM_SHARDS)] + K + ["v"],
        ["MGET"] + K,
        ["FCALL_RO", "peek", "1", K[2]],
        ["FCALL", "peek", "1", K[3]],
        ["FCALL", "conv", "1", "fn:counter"],
        ["FCALL", "conv", "1", "fn:counter"],
        ["FCALL", "resp3", "1", "fn:hash"],
        ["FCALL", "boom", "0"],
        ["FCALL", "unknown", "0"],
        ["FCALL", "reply", "0"],
        ["FCALL", "table", "0"],
        ["FCALL", "global", "0"],
        ["FCALL", "keys", "0"],
        ["FCALL", "wrongtype", "1", "fn:hash"],
        ["FCALL", "nosuch", "0"],
        ["FCALL", "echo", "x"],
        ["FCALL", "echo", "-1"],
        ["FCALL", "echo", "3", "a"],
        ["FCALL", "echo"],
        ["FCALL_RO", "put", "1", K[0], "x"],
        ["FCALL_RO", "sneaky", "1", K[0]],
        ["FCALL", "sneaky", "1", K[0]],
        ["GET", K[0]],
        ["FUNCTION", "DELETE", "mylib"],
        ["FCALL", "echo", "0"],
    ], proto)


def test_fcall_and_eval_inside_multi_equal_redis(servers):
    # A queued script makes EXEC hold every shard; the script borrows them
    # from EXEC (before, EVAL inside MULTI waited for EXEC forever).
    both(servers, [
        ["FUNCTION", "LOAD", LIB],
        ["MULTI"],
        ["FCALL", "put", str(NUM_SHARDS)] + K + ["m"],
        ["FCALL_RO", "peek", "1", K[1]],
        ["EVAL", "return redis.call('incr', KEYS[1])", "1", "fn:ctr"],
        ["FCALL", "conv", "1", "fn:ctr"],
        ["SET", K[3], "after"],
        ["EXEC"],
        ["MGET"] + K + ["fn:ctr"],
        ["MULTI"],
        ["FCALL", "nosuch", "0"],
        ["EXEC"],
        ["PING"],
    ])


def test_script_and_function_flush_are_separate(servers):
    both(servers, [
        ["FUNCTION", "LOAD", LIB],
        ["SCRIPT", "LOAD", "return 1"],
        ["SCRIPT", "FLUSH"],
        ["FCALL", "echo", "0"],
        ["SCRIPT", "LOAD", "return 1"],
        ["FUNCTION", "FLUSH"],
        ["SCRIPT", "EXISTS", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"],
        ["FCALL", "echo", "0"],
    ])


def dump_of(port, *libraries):
    with RespConn(port) as c:
        c.call("FUNCTION", "FLUSH")
        for code in libraries:
            t, v = c.call("FUNCTION", "LOAD", code)
            assert t == "$", v
        t, payload = c.call("FUNCTION", "DUMP")
        assert t == "$"
        c.call("FUNCTION", "FLUSH")
        return payload


BIG = "#!lua name=big\n" + "\n".join(
    f"redis.register_function('f{i}', function(keys, args) return {{{i}, keys[1]}} end)" for i in range(40))


def test_dump_restore_both_ways(dfly, redis_server):
    libraries = [LIB, BIG]
    from_redis = dump_of(redis_server.port, *libraries)   # LZF-compressed strings
    from_dfly = dump_of(dfly.port, *libraries)

    def listing(port):
        with RespConn(port) as c:
            return sort_listing(c.call("FUNCTION", "LIST", "WITHCODE"))

    expected = None
    for payload in (from_redis, from_dfly):
        for srv in (dfly, redis_server):
            with RespConn(srv.port) as c:
                c.call("FUNCTION", "FLUSH")
                assert c.call("FUNCTION", "RESTORE", payload) == ("+", b"OK")
                assert c.call("FCALL", "f39", "1", "k") == ("*", [(":", 39), ("$", b"k")])
            got = listing(srv.port)
            expected = expected or got
            assert got == expected
    # Policies and collisions, compared with redis-server's answers. Redis
    # checks a payload's libraries (and functions) in hash-table order, so
    # only one of them collides at a time here.
    one = dump_of(redis_server.port, LIB)
    steps = [
        ["FUNCTION", "RESTORE", one],
        ["FUNCTION", "RESTORE", one, "APPEND"],
        ["FUNCTION", "RESTORE", from_redis, "REPLACE"],
        ["FUNCTION", "RESTORE", from_redis, "bogus"],
        ["FUNCTION", "DELETE", "big"],
        ["FUNCTION", "LOAD", "#!lua name=holder\nredis.register_function('f3', function() return 'held' end)"],
        ["FUNCTION", "RESTORE", from_dfly, "REPLACE"],
        ["FCALL", "f3", "0"],
        ["FUNCTION", "RESTORE", from_dfly, "FLUSH"],
        ["FCALL", "f3", "0"],
        ["FUNCTION", "RESTORE", from_dfly[:-1] + bytes([from_dfly[-1] ^ 1])],
        ["FUNCTION", "STATS"],
    ]
    both([("damselfly", dfly), ("redis", redis_server)], steps)
    assert dump_of(dfly.port) == dump_of(redis_server.port)  # the empty payload


@pytest.mark.skipif(SELFTEST_REDIS, reason="starts Damselfly with its own flags")
def test_libraries_persist_in_snapshots(tmp_path):
    servers = Servers(tmp_path)
    try:
        d, r_dir = tmp_path / "dfly", tmp_path / "redis"
        d.mkdir()
        r_dir.mkdir()
        a = servers.damselfly(d, threads=3)
        ca = client(a)
        assert ca.execute_command("FUNCTION", "LOAD", LIB) == b"mylib"
        assert ca.execute_command("FUNCTION", "LOAD", BIG) == b"big"
        ca.set("plain", "key")
        assert ca.save() is True
        expected = sorted(ca.execute_command("FUNCTION", "DUMP").split(b"\xf5"))
        # Damselfly reloads its own snapshot...
        ca.shutdown(nosave=True)
        b = servers.damselfly(d, threads=2)
        cb = client(b)
        assert cb.execute_command("FCALL", "f7", "1", "x") == [7, b"x"]
        assert sorted(cb.execute_command("FUNCTION", "DUMP").split(b"\xf5")) == expected
        assert cb.get("plain") == b"key"
        # ...and redis-server 7.0 loads it, functions included.
        shutil.copy(d / "dump.rdb", r_dir / "dump.rdb")
        r = servers.redis(r_dir, "--dbfilename", "dump.rdb")
        cr = client(r)
        assert cr.execute_command("FCALL", "f7", "1", "x") == [7, b"x"]
        assert cr.execute_command("FCALL", "echo", "1", "k", "a") == [[b"k"], [b"a"]]
        assert cr.get("plain") == b"key"
        # A redis-server snapshot with libraries loads in Damselfly.
        cr.execute_command("FUNCTION", "DELETE", "big")
        cr.execute_command("FUNCTION", "LOAD", "#!lua name=fromredis\nredis.register_function('fr', function() return 'r' end)")
        assert cr.save() is True
        e = tmp_path / "dfly2"
        e.mkdir()
        shutil.copy(r_dir / "dump.rdb", e / "dump.rdb")
        c = servers.damselfly(e, threads=2)
        cc = client(c)
        assert cc.execute_command("FCALL", "fr", "0") == b"r"
        with RespConn(c.port) as rc:
            assert rc.call("FCALL", "f7", "0") == ("-", b"ERR Function not found")  # big was deleted on redis
            t, stats = rc.call("FUNCTION", "STATS")
            assert stats[3][1][1] == ("*", [("$", b"libraries_count"), (":", 2), ("$", b"functions_count"), (":", 7)])
    finally:
        servers.close()


@pytest.mark.skipif(SELFTEST_REDIS, reason="starts Damselfly with its own flags")
def test_function_commands_survive_kill9_with_the_journal(tmp_path):
    servers = Servers(tmp_path)
    try:
        d = tmp_path / "aof"
        d.mkdir()
        flags = ("--appendonly", "--appendfsync=always")
        a = servers.damselfly(d, *flags, threads=3)
        ca = client(a)
        ca.execute_command("FUNCTION", "LOAD", "#!lua name=first\nredis.register_function('one', function() return 1 end)")
        ca.execute_command("FUNCTION", "LOAD", LIB)
        assert ca.save() is True  # both libraries in the snapshot; the journal rolls over
        ca.execute_command("FUNCTION", "DELETE", "first")
        ca.execute_command("FUNCTION", "LOAD", "REPLACE", LIB.replace("return #keys", "return -#keys"))
        payload = dump_of_libraries("#!lua name=restored\nredis.register_function('three', function() return 3 end)")
        ca.execute_command("FUNCTION", "RESTORE", payload)
        assert ca.execute_command("FCALL", "put", "2", K[0], K[1], "w") == -2
        kill9(a)
        b = servers.damselfly(d, *flags, threads=2)
        cb = client(b)
        with RespConn(b.port) as rc:
            names = sorted(to_py(lib)[1] for lib in rc.call("FUNCTION", "LIST")[1])
        assert names == [b"mylib", b"restored"]
        assert cb.execute_command("FCALL", "put", "1", K[2], "x") == -1
        assert cb.execute_command("FCALL", "three", "0") == 3
        assert cb.mget(K[0], K[1], K[2]) == [b"w", b"w", b"x"]
        cb.execute_command("FUNCTION", "FLUSH")
        kill9(b)
        c = servers.damselfly(d, *flags, threads=2)
        with RespConn(c.port) as rc:
            assert rc.call("FUNCTION", "LIST") == ("*", [])
    finally:
        servers.close()


def dump_of_libraries(*codes):
    """A FUNCTION DUMP payload built by hand: FUNCTION2 records, RDB version 10, CRC64."""
    out = b""
    for code in codes:
        data = code.encode()
        assert len(data) < 16384
        out += b"\xf5" + (bytes([len(data)]) if len(data) < 64 else bytes([0x40 | (len(data) >> 8), len(data) & 0xFF])) + data
    out += b"\x0a\x00"
    return out + crc64(out).to_bytes(8, "little")


def crc64(data):
    """Redis's CRC-64 (Jones polynomial, reflected)."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x95AC9329AC4BC9B5 if crc & 1 else 0)
    return crc


@pytest.mark.skipif(SELFTEST_REDIS, reason="INFO fields are Damselfly's")
def test_info_memory_counts_functions(dfly):
    with RespConn(dfly.port) as c:
        c.call("FUNCTION", "FLUSH")
        c.call("FUNCTION", "LOAD", LIB)
        c.call("FCALL", "echo", "0")
        info = dict(line.split(":", 1) for line in c.call("INFO", "memory")[1].decode().splitlines() if ":" in line)
        assert info["number_of_functions"] == "6"
        assert info["number_of_libraries"] == "1"
        assert int(info["used_memory_vm_functions"]) > 0
        assert int(info["used_memory_functions"]) > 0
        c.call("FUNCTION", "FLUSH")
