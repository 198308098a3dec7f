"""COMMAND GETKEYS / GETKEYSANDFLAGS / LIST / INFO / DOCS and CLIENT LIST's fields against a
real redis-server 7.0: replies compared raw in RESP2 and RESP3 where Damselfly has the
command; COMMAND LIST compared over the commands both servers have."""

import pytest

from resp import RespConn, to_py


@pytest.fixture(scope="module")
def pair(damselfly_module, redis_server):
    return damselfly_module("--proactor_threads=2"), redis_server


GETKEYS = [
    ["GET", "key"], ["SET", "k1", "v1"], ["SET", "k1", "v1", "GET"], ["MSET", "k1", "v1", "k2", "v2"],
    ["LMOVE", "k1", "k2", "left", "right"], ["SORT", "k1", "STORE", "k2"], ["SORT", "k1", "BY", "w*", "GET", "#"],
    ["SORT", "abc", "STORE", "invalid", "STORE", "stillbad", "STORE", "def"], ["SORT", "k", "LIMIT", "0", "1", "STORE", "d"],
    ["SORT_RO", "k1"], ["MEMORY", "USAGE", "key"], ["XGROUP", "CREATE", "key", "g", "$"],
    ["EVAL", "return 1", "1", "key"], ["EVAL", "return 1", "0"], ["EVAL", "return 1", "2", "a"],
    ["EVALSHA", "x" * 40, "2", "a", "b", "c"], ["FCALL", "f", "1", "k", "arg"], ["FCALL_RO", "f", "0"],
    ["LCS", "key1", "key2"], ["ZUNIONSTORE", "target", "3", "a", "b", "c"], ["ZUNIONSTORE", "target", "5", "a", "b"],
    ["ZUNIONSTORE", "target", "0"], ["ZINTER", "2", "a", "b", "WITHSCORES"], ["ZDIFFSTORE", "d", "1", "a"],
    ["XREAD", "COUNT", "2", "STREAMS", "s1", "s2", "0", "0"], ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"],
    ["GEORADIUS", "k", "0", "0", "1", "km", "STORE", "dst"], ["GEORADIUS", "k", "0", "0", "1", "km", "STOREDIST", "dst"],
    ["LMPOP", "2", "a", "b", "LEFT"], ["BLMPOP", "0", "1", "a", "RIGHT"], ["ZMPOP", "1", "z", "MIN"],
    ["SINTERCARD", "2", "a", "b"], ["ZINTERCARD", "2", "a", "b", "LIMIT", "1"], ["BITFIELD", "k", "GET", "u8", "0"],
    ["BITFIELD", "k", "SET", "u8", "0", "1"], ["BLPOP", "a", "b", "0"], ["RENAME", "a", "b"], ["DEL", "a", "b", "c"],
    ["OBJECT", "ENCODING", "k"], ["XINFO", "STREAM", "s"], ["BITOP", "AND", "d", "a", "b"],
    # Errors: unknown command or subcommand, keyless, wrong arity, too few arguments for COMMAND itself.
    ["NOSUCH", "a"], ["MEMORY", "NOSUCH", "k"], ["PING"], ["CONFIG", "GET", "x"], ["GET"], ["GET", "a", "b"],
    ["MEMORY"], ["LMOVE", "a"],
]


@pytest.mark.parametrize("proto", [2, 3])
def test_getkeys_as_redis(pair, proto):
    d, r = pair
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        dc.call("HELLO", str(proto))
        rc.call("HELLO", str(proto))
        for sub in ("GETKEYS", "GETKEYSANDFLAGS"):
            for cmd in GETKEYS:
                assert dc.call("COMMAND", sub, *cmd) == rc.call("COMMAND", sub, *cmd), (sub, cmd)
        many = [f"key{i}" for i in range(1, 261)]
        assert to_py(dc.call("COMMAND", "GETKEYS", "ZUNIONSTORE", "target", "260", *many)) == \
            [b"target"] + [k.encode() for k in many]


def names(conn, *args):
    return set(to_py(conn.call("COMMAND", "LIST", *args)))


def test_command_list_filters_as_redis(pair):
    d, r = pair
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        ours = names(dc)
        assert b"set" in ours and b"client|list" in ours and b"config|get" in ours
        assert len([n for n in ours if b"|" not in n]) == to_py(dc.call("COMMAND", "COUNT"))
        for args in (["FILTERBY", "ACLCAT", "scripting"], ["FILTERBY", "ACLCAT", "WRITE"], ["FILTERBY", "ACLCAT", "nosuch"],
                     ["FILTERBY", "PATTERN", "set"], ["FILTERBY", "PATTERN", "config*"], ["FILTERBY", "PATTERN", "config|*re*"],
                     ["FILTERBY", "PATTERN", "cl*help"], ["FILTERBY", "PATTERN", "X*"], ["FILTERBY", "PATTERN", "nosuch*"],
                     ["FILTERBY", "MODULE", "nosuch"]):
            mine, theirs = names(dc, *args), names(rc, *args)
            # Everything listed is Redis's too, and every command of Redis's answer that we have is listed.
            assert mine <= theirs, (args, mine - theirs)
            assert theirs & ours == mine, (args, (theirs & ours) - mine)
        for bad in (["bad_arg"], ["FILTERBY", "bad_arg"], ["FILTERBY", "bad_arg", "x"], ["FILTERBY", "PATTERN"]):
            assert dc.call("COMMAND", "LIST", *bad) == rc.call("COMMAND", "LIST", *bad), bad


def test_command_info_flags_subcommands_and_key_specs(pair):
    d, r = pair
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        for proto in (2, 3):
            dc.call("HELLO", str(proto))
            rc.call("HELLO", str(proto))
            for name in ("set", "get", "mset", "bitfield", "lmove", "lpop", "blpop", "ping", "memory", "rename",
                         "georadius_ro", "zunionstore", "xread", "eval", "sort", "sort_ro", "georadius", "fcall"):
                mine, theirs = to_py(dc.call("COMMAND", "INFO", name))[0], to_py(rc.call("COMMAND", "INFO", name))[0]
                assert (b"movablekeys" in mine[2]) == (b"movablekeys" in theirs[2]), name
                # Key specs as Redis's, less its free-text notes.
                specs = [{k: v for k, v in (s.items() if isinstance(s, dict) else zip(s[::2], s[1::2])) if k != b"notes"}
                         for s in theirs[8]]
                ours = [s if isinstance(s, dict) else dict(zip(s[::2], s[1::2])) for s in mine[8]]
                assert ours == specs, name
            for name in ("config|get", "memory|usage", "client|list", "get|key", "config|get|key", "nosuch|x"):
                mine, theirs = to_py(dc.call("COMMAND", "INFO", name))[0], to_py(rc.call("COMMAND", "INFO", name))[0]
                if theirs is None:
                    assert mine is None, name
                    continue
                assert mine[0] == theirs[0] and mine[1] == theirs[1] and mine[3:7] == theirs[3:7], (name, mine, theirs)
            subs = {s[0] for s in to_py(dc.call("COMMAND", "INFO", "config"))[0][9]}
            assert {b"config|get", b"config|set", b"config|resetstat"} <= subs
            docs = to_py(dc.call("COMMAND", "DOCS", "config|get"))
            assert (docs[0] if isinstance(docs, list) else next(iter(docs))) == b"config|get"


def test_client_list_and_info_fields(pair):
    d, r = pair
    for srv in (d, r):
        with RespConn(srv.port) as c:
            for sub, cmd in (("LIST", b"cmd=client|list"), ("INFO", b"cmd=client|info")):
                line = to_py(c.call("CLIENT", sub))
                # `*2\r\n$6\r\nclient\r\n$4\r\nlist\r\n`: the command being run is in the query buffer.
                assert b" qbuf=26 " in line and cmd in line and b" multi=-1 " in line, (srv, line)
