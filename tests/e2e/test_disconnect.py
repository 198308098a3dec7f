"""Sending any command and closing before the reply never ends the server (issue 13).

Twenty connections that sent DBSIZE and closed without reading used to kill
Damselfly (``Attempted to read an unowned reference``): the command's work
crossed to the shards and came back to a connection that was gone.  Here every
command that ``COMMAND`` lists (except those that legitimately end or take over
the server) is sent with plausible arguments — keys spread over the shards,
each of the type the command wants — on a fresh connection that is closed at
once without reading (a plain close, and an abortive one: SO_LINGER 0 makes the
kernel answer with RST), many times, and in bursts of concurrent connections.
Afterwards the server must still answer PING and serve data.  It runs on
io_uring and epoll, with 1, 2 and 4 threads.
"""

import os
import socket
import struct
import time

import pytest

from resp import RespConn, encode, to_py
from util import blocked_clients_settled, keys_on_shards

# Commands that end the server, replace its role or take the connection over
# for good: not sent.
SKIP = {
    "shutdown", "debug", "monitor", "sync", "psync", "replicaof", "slaveof", "failover",
    "replconf", "cluster", "readonly", "readwrite", "asking",
}

REPEATS = int(os.environ.get("DISCONNECT_REPEATS", "6"))


def typed_keys(threads):
    by = keys_on_shards(threads, 1, "dct")
    spread = [by[s][0] for s in range(threads)]
    out = {}
    for t in ("str", "list", "hash", "set", "zset"):
        out[t] = [f"{t}:{k}" for k in spread]
    return out


def populate(conn, keys):
    cmds = []
    for k in keys["str"]:
        cmds.append(("SET", k, "12"))
    for k in keys["list"]:
        cmds.append(("RPUSH", k, *[f"e{i}" for i in range(20)]))
    for k in keys["hash"]:
        cmds.append(("HSET", k, "f1", "1", "f2", "v2", "f3", "3"))
    for k in keys["set"]:
        cmds.append(("SADD", k, "a", "b", "c", "1", "2"))
    for k in keys["zset"]:
        cmds.append(("ZADD", k, "1", "a", "2", "b", "3", "c", "4", "d"))
    for r in conn.pipeline(cmds):
        assert r[0] != "-", r


def argument_lists(name, info, keys):
    """Plausible calls of `name` (COMMAND's arity / key positions as a fallback)."""
    S, L, H, St, Z = keys["str"], keys["list"], keys["hash"], keys["set"], keys["zset"]
    spec = {
        "get": [[S[0]]], "set": [[S[0], "v"], [S[1 % len(S)], "v", "EX", "100"]],
        "mget": [S + L], "mset": [[x for k in S for x in (k, "1")]], "msetnx": [[x for k in S for x in (k + "n", "1")]],
        "del": [S + L + Z], "unlink": [H + St], "exists": [S + L + H], "touch": [S + Z],
        "copy": [[S[0], S[-1] + "c"]], "rename": [[S[0], S[-1] + "r"]], "renamenx": [[S[-1], S[0] + "x"]],
        "move": [[S[0], "1"]], "sort": [[L[0], "ALPHA"]],
        "lpush": [[L[0], "x"]], "rpush": [[L[-1], "x"]], "lpushx": [[L[0], "y"]], "rpushx": [[L[0], "y"]],
        "lpop": [[L[0]]], "rpop": [[L[-1], "2"]], "lrange": [[L[0], "0", "-1"]], "lindex": [[L[0], "1"]],
        "linsert": [[L[0], "BEFORE", "e3", "z"]], "lset": [[L[0], "0", "q"]], "lrem": [[L[0], "0", "e4"]],
        "ltrim": [[L[0], "0", "100"]], "lpos": [[L[0], "e5"]], "llen": [[L[0]]],
        "lmove": [[L[0], L[-1], "LEFT", "RIGHT"]], "rpoplpush": [[L[-1], L[0]]],
        "lmpop": [[str(len(L)), *L, "LEFT"]],
        "blpop": [[*L, "0"], [S[0] + "e", L[0] + "e", "0"]], "brpop": [[*(k + "e" for k in L), "0"], [*L, "0.01"]],
        "blmove": [[L[0] + "e", L[-1], "LEFT", "RIGHT", "0"], [L[0], L[-1], "RIGHT", "LEFT", "0"]],
        "brpoplpush": [[L[-1] + "e", L[0], "0"]],
        "blmpop": [["0", str(len(L)), *(k + "e" for k in L), "LEFT"], ["0", str(len(L)), *L, "RIGHT", "COUNT", "2"]],
        "bzpopmin": [[*(k + "e" for k in Z), "0"], [*Z, "0"]], "bzpopmax": [[*Z, "0"]],
        "bzmpop": [["0", str(len(Z)), *(k + "e" for k in Z), "MIN"], ["0", str(len(Z)), *Z, "MAX"]],
        "hset": [[H[0], "f", "v"]], "hget": [[H[0], "f1"]], "hgetall": [[H[0]]], "hmset": [[H[0], "a", "b"]],
        "hincrby": [[H[0], "f1", "1"]], "hincrbyfloat": [[H[0], "f3", "1.5"]], "hscan": [[H[0], "0"]],
        "sadd": [[St[0], "x"]], "smembers": [[St[0]]], "sinter": [St], "sunion": [St], "sdiff": [St],
        "sinterstore": [[St[0] + "d", *St]], "sunionstore": [[St[-1] + "d", *St]], "sdiffstore": [[St[0] + "d", *St]],
        "sintercard": [[str(len(St)), *St]], "smove": [[St[0], St[-1], "a"]], "spop": [[St[0]]], "sscan": [[St[0], "0"]],
        "zadd": [[Z[0], "5", "e"]], "zrange": [[Z[0], "0", "-1", "WITHSCORES"]], "zscan": [[Z[0], "0"]],
        "zunionstore": [[Z[0] + "d", str(len(Z)), *Z]], "zinterstore": [[Z[-1] + "d", str(len(Z)), *Z]],
        "zdiffstore": [[Z[0] + "d", str(len(Z)), *Z]], "zunion": [[str(len(Z)), *Z]], "zinter": [[str(len(Z)), *Z]],
        "zdiff": [[str(len(Z)), *Z]], "zintercard": [[str(len(Z)), *Z]], "zrangestore": [[Z[0] + "r", Z[-1], "0", "-1"]],
        "zmpop": [[str(len(Z)), *Z, "MIN"]], "zpopmin": [[Z[0]]], "zpopmax": [[Z[-1], "2"]],
        "zrangebyscore": [[Z[0], "-inf", "+inf"]], "zrevrangebyscore": [[Z[0], "+inf", "-inf"]],
        "zrangebylex": [[Z[0], "-", "+"]], "zrevrangebylex": [[Z[0], "+", "-"]], "zrevrange": [[Z[0], "0", "-1"]],
        "zrank": [[Z[0], "a"]], "zrevrank": [[Z[0], "a"]], "zscore": [[Z[0], "a"]], "zincrby": [[Z[0], "1", "a"]],
        "zcount": [[Z[0], "-inf", "+inf"]], "zlexcount": [[Z[0], "-", "+"]], "zmscore": [[Z[0], "a", "b"]],
        "zrandmember": [[Z[0], "-5"]], "zremrangebyscore": [[Z[0], "0", "1"]], "zremrangebyrank": [[Z[0], "0", "0"]],
        "zremrangebylex": [[Z[0], "[a", "[a"]], "zrem": [[Z[0], "b"]],
        "incr": [[S[0] + "i"]], "decr": [[S[0] + "i"]], "incrby": [[S[0] + "i", "5"]], "decrby": [[S[0] + "i", "5"]],
        "incrbyfloat": [[S[0] + "f", "1.5"]], "append": [[S[0], "x"]], "setrange": [[S[0], "3", "x"]],
        "getrange": [[S[0], "0", "-1"]], "substr": [[S[0], "0", "-1"]], "setbit": [[S[0] + "b", "7", "1"]],
        "getbit": [[S[0], "3"]], "bitcount": [[S[0]]], "bitpos": [[S[0], "1"]], "bitop": [["AND", S[0] + "o", *S]],
        "bitfield": [[S[0], "GET", "u8", "0"]], "bitfield_ro": [[S[0], "GET", "u8", "0"]],
        "getex": [[S[0], "PERSIST"]], "getdel": [[S[-1]]], "getset": [[S[0], "z"]], "setex": [[S[0], "100", "v"]],
        "psetex": [[S[0], "100000", "v"]], "setnx": [[S[0] + "n", "v"]], "strlen": [[S[0]]], "lcs": [[S[0], S[-1]]],
        "expire": [[S[0], "100"]], "pexpire": [[S[0], "100000"]], "expireat": [[S[0], "99999999999"]],
        "pexpireat": [[S[0], "99999999999000"]], "persist": [[S[0]]], "ttl": [[S[0]]], "pttl": [[S[0]]],
        "expiretime": [[S[0]]], "pexpiretime": [[S[0]]], "type": [[Z[0]]], "dump": [[L[0]]],
        "restore": [[S[0] + "rs", "0", "\x00\x03abc\x0a\x00\x8e\x5c\x8e\x96\x4e\xd9\x1d\x43"]],
        "object": [["ENCODING", L[0]], ["FREQ", L[0]]], "memory": [["USAGE", H[0]], ["STATS"]],
        "scan": [["0"], ["0", "MATCH", "*", "COUNT", "1000"]], "keys": [["*"]], "randomkey": [[]], "dbsize": [[]],
        "flushdb": [[]], "flushall": [[], ["ASYNC"]], "info": [[], ["keyspace"], ["clients"]],
        "watch": [S + L + Z], "unwatch": [[]], "multi": [[]], "exec": [[]], "discard": [[]],
        "select": [["1"]], "swapdb": [["0", "1"]], "wait": [["0", "0"]],
        "client": [["ID"], ["LIST"], ["INFO"], ["SETNAME", "x"], ["GETNAME"], ["UNBLOCK", "1"]],
        "config": [["GET", "maxmemory"], ["GET", "*"]], "command": [[], ["COUNT"], ["INFO", "get"], ["DOCS", "set"]],
        "slowlog": [["GET"], ["LEN"]], "pubsub": [["CHANNELS"], ["NUMSUB", "c"]], "publish": [["c", "m"]],
        "subscribe": [["c"]], "psubscribe": [["c*"]], "unsubscribe": [[]], "punsubscribe": [[]],
        "ssubscribe": [["c"]], "sunsubscribe": [[]], "spublish": [["c", "m"]],
        "eval": [["return redis.call('DBSIZE')", "0"],
                 ["redis.call('SET', KEYS[1], '1'); return redis.call('GET', KEYS[1])", "1", S[0]],
                 ["return redis.call('LPOP', KEYS[1])", "1", L[0]]],
        "eval_ro": [["return redis.call('GET', KEYS[1])", "1", S[0]]],
        "evalsha": [["e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0"]],
        "evalsha_ro": [["e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0"]],
        "script": [["LOAD", "return 1"], ["EXISTS", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"]],
        "function": [["LIST"], ["STATS"]], "fcall": [["nofunc", "0"]], "fcall_ro": [["nofunc", "0"]],
        "save": [[]], "bgsave": [[]], "bgrewriteaof": [[]], "lastsave": [[]], "time": [[]],
        "ping": [[]], "echo": [["x"]], "hello": [["3"], ["2"]], "auth": [["pw"]], "reset": [[]], "quit": [[]],
        "xadd": [[S[0] + "x", "*", "f", "v"]], "xread": [["COUNT", "1", "STREAMS", S[0] + "x", "0"],
                                                 ["BLOCK", "0", "STREAMS", S[0] + "y", S[-1] + "y", "$", "$"]],
        "xreadgroup": [["GROUP", "g", "c", "BLOCK", "0", "STREAMS", S[0] + "x", ">"]],
    }
    if name in spec:
        return spec[name]
    # Fallback: arity from COMMAND, keys at the declared positions, "1" elsewhere.
    arity, first, last, step = info
    n = abs(arity) - 1
    if arity < 0:
        n = max(n, 2)
    args = ["1"] * n
    if first > 0:
        last_i = n if last < 0 else min(last, n)
        pool = S + L
        j = 0
        for i in range(first, last_i + 1, max(step, 1)):
            if i - 1 < n:
                args[i - 1] = pool[j % len(pool)]
                j += 1
    return [args]


def command_table(conn):
    out = {}
    for entry in to_py(conn.call("COMMAND")):
        name = entry[0].decode().lower()
        out[name] = (entry[1], entry[3], entry[4], entry[5])
    return out


def send_and_close(port, frame, abortive):
    s = socket.create_connection(("127.0.0.1", port))
    if abortive:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.sendall(frame)
    s.close()


def burst(port, frame, n):
    """n connections send `frame` together, then all close at once without reading."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    for s in socks:
        s.sendall(frame)
    for s in socks:
        s.close()


def assert_alive(srv, admin):
    assert srv.alive(), f"server died:\n{srv.log_tail()}"
    assert admin.call("PING") == ("+", b"PONG")


CONFIGS = [(t, e) for e in ("uring", "epoll") for t in (1, 2, 4)]


@pytest.mark.parametrize("threads,engine", CONFIGS, ids=[f"{e}-{t}t" for t, e in CONFIGS])
def test_every_command_then_close(damselfly, tmp_path, threads, engine):
    flags = [f"--proactor_threads={threads}", f"--dir={tmp_path}"]
    if engine == "epoll":
        flags.append("--force_epoll")
    srv = damselfly(*flags)
    keys = typed_keys(threads)
    with RespConn(srv.port) as admin:
        table = command_table(admin)
        assert "dbsize" in table
        # The reported crash first, exactly: 20 connections, DBSIZE, close.
        for _ in range(5):
            burst(srv.port, encode("DBSIZE"), 20)
        assert_alive(srv, admin)
        sent = 0
        for name in sorted(table):
            if name in SKIP:
                continue
            for args in argument_lists(name, table[name], keys):
                frame = encode(name.upper(), *args)
                for i in range(REPEATS):
                    if i % 3 == 0:
                        # Fresh data, so the command has something to do.
                        admin.call("SELECT", "0")
                        populate(admin, keys)
                    send_and_close(srv.port, frame, abortive=bool(i % 2))
                    sent += 1
                burst(srv.port, frame, 8)
                # Two commands in one write, the second crossing threads too.
                send_and_close(srv.port, frame + encode("DBSIZE") + frame, abortive=False)
            if not srv.alive():
                pytest.fail(f"server died after {name.upper()}:\n{srv.log_tail()}")
        time.sleep(0.2)
        assert_alive(srv, admin)
        # Still serving data on every shard; nobody is left parked.
        admin.call("FLUSHALL")
        populate(admin, keys)
        for k in keys["list"]:
            assert to_py(admin.call("LLEN", k)) == 20
        blocked = blocked_clients_settled(admin, poll=0.05)
        # On failure, the clients still there (flags=b: parked; cmd=: what they ran) name the path.
        assert blocked == 0, "closed connections stayed parked:\n" + to_py(admin.call("CLIENT", "LIST")).decode()
        assert sent > 300
