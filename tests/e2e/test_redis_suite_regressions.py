"""Crashes Redis's own test suite found (scripts/redis-suite.sh), pinned here so the quick
e2e run catches them too; each is compared with redis-server."""

import pytest
import redis

UNPACKS = [
    "return {unpack({1,2,3}, -2, 2147483647)}",
    "return {unpack({1,2,3}, 0, 2147483647)}",
    "return {unpack({1,2,3}, -2147483648, -2)}",
    "return {unpack({1,2,3}, -1, -2)}",
    "return {unpack({1,2,3}, 2)}",
    "return {unpack({'a','b'})}",
    # lua-bitop negated the digit count: -2^31 overflowed and wrote past its buffer.
    "return bit.tohex(65535, -2147483648)",
    "return bit.tohex(65535, 2147483648)",
    "return bit.tohex(65535, -3)",
    "return bit.tohex(-1)",
    "return bit.tohex(65535, 12)",
]


def answer(c, script):
    try:
        return c.eval(script, 0)
    except redis.ResponseError as e:
        return "ERR " + str(e).split(" script:")[0]


@pytest.mark.parametrize("script", UNPACKS)
def test_lua_unpack_and_tohex_bounds_are_checked(damselfly, redis_server, script):
    # The system Lua 5.1 computes unpack's count in an int: a huge range wrapped and the
    # server crashed writing past the Lua stack.
    d = damselfly("--proactor_threads=2")
    c = d.client()
    assert answer(c, script) == answer(redis_server.client(), script)
    assert c.ping()


def test_hash_listpack_holds_values_longer_than_255_bytes(damselfly, redis_server):
    # "Hash ziplist of various encodings": with hash-max-ziplist-value raised, a 300-byte
    # value stayed packed behind a one-byte length and HSET trapped.
    d = damselfly()
    for c in (d.client(), redis_server.client()):
        c.flushall()
        c.config_set("hash-max-ziplist-entries", 1000)
        c.config_set("hash-max-ziplist-value", 1000000)
    sizes = [1, 127, 128, 255, 256, 300, 16383, 16384, 70000]
    replies = []
    for c in (d.client(), redis_server.client()):
        got = []
        for n in sizes:
            got.append(c.hset("k", f"f{n}", "x" * n))
        for n in sizes:  # replace across the length boundaries
            got.append(c.hset("k", f"f{n}", "y" * sizes[(sizes.index(n) + 4) % len(sizes)]))
        got.append(c.hgetall("k"))
        got.append(c.object("encoding", "k"))
        got.append(c.hdel("k", "f128", "f16383"))
        got.append(c.hgetall("k"))
        replies.append(got)
        c.config_set("hash-max-ziplist-entries", 128)
        c.config_set("hash-max-ziplist-value", 64)
    assert replies[0] == replies[1]
    assert replies[0][-3] == b"listpack"


def _wait_blocked(c, n):
    import time
    deadline = time.monotonic() + 5
    while c.info("clients")["blocked_clients"] != n:
        assert time.monotonic() < deadline, "clients never blocked"
        time.sleep(0.01)


def _blocked_move_onto_wrong_type(server, source, target, other):
    """Two BRPOPLPUSH clients block on `source`, the first into a string: it gets
    WRONGTYPE and the element stays; the second is served."""
    import threading
    c = server.client()
    c.flushall()
    c.set(target, "nolist")
    replies = {}

    def block(name, dest):
        b = server.client()
        try:
            replies[name] = b.brpoplpush(source, dest, 5)
        except redis.ResponseError as e:
            replies[name] = str(e).split()[0]

    first = threading.Thread(target=block, args=("first", target))
    first.start()
    _wait_blocked(c, 1)
    second = threading.Thread(target=block, args=("second", other))
    second.start()
    _wait_blocked(c, 2)
    c.rpush(source, "a", "b", "c")
    first.join()
    second.join()
    return replies, c.lrange(source, 0, -1), c.get(target), c.lrange(other, 0, -1)


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_blocked_brpoplpush_into_wrong_type_gets_wrongtype(damselfly, redis_server, threads):
    # "BRPOPLPUSH with wrong destination type": a served waiter replaced the string with a
    # list (the string was lost) and desynchronised the suite's list unit.
    d = damselfly(f"--proactor_threads={threads}")
    for source, target, other in [("blist{t}", "target{t}", "other{t}"), ("blist", "target", "elsewhere")]:
        expected = _blocked_move_onto_wrong_type(redis_server, source, target, other)
        assert expected == ({"first": "WRONGTYPE", "second": b"c"}, [b"a", b"b"], b"nolist", [b"c"])
        assert _blocked_move_onto_wrong_type(d, source, target, other) == expected


def _multi_pushes_serve(server, a, b):
    """Four BLMPOP clients wait on two keys; one MULTI fills both: the key filled first
    serves first (Redis's "BLMPOP with multiple blocked clients")."""
    import threading
    c = server.client()
    c.flushall()
    replies = [None] * 4
    threads = []
    for i, (where, count) in enumerate([("LEFT", 1), ("RIGHT", 10), ("LEFT", 10), ("RIGHT", 1)]):
        def block(i=i, where=where, count=count):
            replies[i] = server.client().execute_command("BLMPOP", 2, 2, a, b, where, "COUNT", count)
        t = threading.Thread(target=block)
        t.start()
        threads.append(t)
        _wait_blocked(c, i + 1)
    p = c.pipeline(transaction=True)
    p.lpush(a, "a", "b", "c", "d", "e")
    p.lpush(b, "1", "2", "3", "4", "5")
    p.execute()
    for t in threads:
        t.join()
    return replies, c.exists(a, b)


@pytest.mark.parametrize("threads", [1, 2])
def test_ready_keys_serve_in_the_order_they_became_ready(damselfly, redis_server, threads):
    # Serving took the last key made ready first: the first client got the second key.
    # On several threads the two keys share a shard here: keys on two shards are served
    # by each shard on its own, in no promised order between them.
    from util import keys_on_shards
    d = damselfly(f"--proactor_threads={threads}")
    pairs = [("blist{t}", "blist2{t}"), ("ka", "kb")] if threads == 1 else [tuple(keys_on_shards(threads, 2, "rk")[0])]
    for a, b in pairs:
        expected = _multi_pushes_serve(redis_server, a, b)
        assert _multi_pushes_serve(d, a, b) == expected


# --- Differences the suite's small units found (slowlog, quit, bitops, set, lazyfree, dump) ---


def test_slowlog_keeps_the_arguments_of_commands_that_hopped(damselfly, redis_server):
    # unit/slowlog "Rewritten commands are logged as their original command" / "too many
    # arguments are trimmed": a command run on another thread's shard was logged by name only.
    d = damselfly("--proactor_threads=4")
    commands = [
        ["SADD", f"set{i}", *[str(n) for n in range(3, 3 + 31 + i)]] for i in range(6)
    ] + [["SPOP", f"set{i}", "10"] for i in range(6)] + [["SET", f"s{i}", "A" * 200] for i in range(6)]
    logged = []
    for server in (redis_server, d):
        c = server.client()
        c.flushall()
        c.config_set("slowlog-log-slower-than", 0)
        got = []
        for cmd in commands:
            c.slowlog_reset()
            c.execute_command(*cmd)
            entry = c.execute_command("SLOWLOG", "GET", "1")[0]
            got.append(entry[3])
        c.config_set("slowlog-log-slower-than", 10000)
        logged.append(got)
    assert logged[1] == logged[0]


@pytest.mark.parametrize("tail_size", [3, 1024])
def test_pipelined_commands_after_quit_are_not_run(damselfly, redis_server, tail_size):
    # unit/quit: a SET pipelined behind QUIT was executed (Redis drops it and closes).
    import socket
    d = damselfly("--proactor_threads=2")
    results = []
    for server in (redis_server, d):
        server.client().delete("foo")
        value = b"x" * tail_size
        frame = b"*1\r\n$4\r\nQUIT\r\n" + b"*3\r\n$3\r\nSET\r\n$3\r\nfoo\r\n$%d\r\n%s\r\n" % (len(value), value)
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        s.sendall(frame)
        received = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            received += chunk
        s.close()
        results.append((received, server.client().get("foo")))
    assert results[0] == (b"+OK\r\n", None)
    assert results[1] == results[0]


def _changes(c):
    return c.info("persistence")["rdb_changes_since_last_save"]


def _bit_writes_dirty(c):
    c.flushall()
    deltas = []
    steps = [
        [("SETBIT", "foo", 0, 0), ("BITFIELD", "foo2", "SET", "i5", 0, 0)],  # created: counted
        [("SETBIT", "foo", 0, 0), ("BITFIELD", "foo2", "SET", "i5", 0, 0)],  # no change
        [("SETBIT", "foo", 0, 1), ("SETBIT", "foo", 0, 1), ("SETBIT", "foo", 0, 0), ("SETBIT", "foo", 0, 0),
         ("BITFIELD", "foo2", "SET", "i5", 0, 1), ("BITFIELD", "foo2", "SET", "i5", 0, 1),
         ("BITFIELD", "foo2", "SET", "i5", 0, 0), ("BITFIELD", "foo2", "SET", "i5", 0, 0)],
        [("BITFIELD", "foo3", "INCRBY", "i5", 0, 1), ("BITFIELD", "foo3", "INCRBY", "i5", 0, 1)],
        [("SETBIT", "foo", 90, 0), ("BITFIELD", "foo2", "SET", "i5", 90, 0)],  # grew only
        [("BITFIELD", "foo3", "OVERFLOW", "FAIL", "INCRBY", "u2", 0, 100)],  # failed: nothing
    ]
    for step in steps:
        before = _changes(c)
        for cmd in step:
            c.execute_command(*cmd)
        deltas.append(_changes(c) - before)
    return deltas


def test_setbit_and_bitfield_count_a_change_only_when_a_bit_changed(damselfly, redis_server):
    # unit/bitops "SETBIT/BITFIELD only increase dirty when the value changed".
    d = damselfly()
    expected = _bit_writes_dirty(redis_server.client())
    assert expected[:5] == [2, 0, 4, 2, 2]
    assert _bit_writes_dirty(d.client()) == expected


def _watch_survives(server, setup, watched, other):
    """WATCH `watched`, run `other` from a second client, then EXEC: True when EXEC ran."""
    c = server.client()
    c.flushall()
    for cmd in setup:
        c.execute_command(*cmd)
    p = server.client().pipeline(transaction=True)
    p.watch(watched)
    other_client = server.client()
    try:
        other_client.execute_command(*other)
    except redis.ResponseError:
        pass
    p.multi()
    p.get("unrelated")
    try:
        p.execute()
        return True
    except redis.WatchError:
        return False


# (setup, watched key, command from another client): for each, WATCH holds or aborts as in Redis.
WATCH_CASES = [
    # unit/type/set "SMOVE only notify dstset when the addition is successful"
    ([("SADD", "src", "a", "b"), ("SADD", "dst", "a")], "dst", ("SMOVE", "src", "dst", "a")),
    ([("SADD", "src", "a", "b"), ("SADD", "dst", "a")], "src", ("SMOVE", "src", "dst", "a")),
    ([("SADD", "src", "a", "b"), ("SADD", "dst", "x")], "dst", ("SMOVE", "src", "dst", "a")),
    # store commands signal their destination only, never their sources
    ([("SADD", "s1", "a"), ("SADD", "s2", "b")], "s1", ("SUNIONSTORE", "out", "s1", "s2")),
    ([("SADD", "s1", "a"), ("SADD", "s2", "b")], "out", ("SUNIONSTORE", "out", "s1", "s2")),
    ([("SADD", "s1", "a"), ("SADD", "s2", "a")], "s2", ("SINTERSTORE", "out", "s1", "s2")),
    ([("SADD", "s1", "a"), ("SADD", "s2", "a")], "s1", ("SDIFFSTORE", "out", "s1", "s2")),
    ([("ZADD", "z1", 1, "a"), ("ZADD", "z2", 2, "b")], "z2", ("ZUNIONSTORE", "out", 2, "z1", "z2")),
    ([("ZADD", "z1", 1, "a"), ("ZADD", "z2", 2, "a")], "z1", ("ZINTERSTORE", "out", 2, "z1", "z2")),
    ([("ZADD", "z1", 1, "a"), ("ZADD", "z2", 2, "b")], "z1", ("ZDIFFSTORE", "out", 2, "z1", "z2")),
    ([("ZADD", "z1", 1, "a", 2, "b")], "z1", ("ZRANGESTORE", "out", "z1", 0, -1)),
    ([("ZADD", "z1", 1, "a", 2, "b")], "out", ("ZRANGESTORE", "out", "z1", 0, -1)),
    ([("SET", "b1", "ab"), ("SET", "b2", "cd")], "b2", ("BITOP", "AND", "out", "b1", "b2")),
    ([("PFADD", "h1", "a"), ("PFADD", "h2", "b")], "h2", ("PFMERGE", "out", "h1", "h2")),
    ([("PFADD", "h1", "a"), ("PFADD", "h2", "b")], "out", ("PFMERGE", "out", "h1", "h2")),
    ([("GEOADD", "g", 13.36, 38.11, "p")], "g", ("GEOSEARCHSTORE", "out", "g", "FROMLONLAT", 13.36, 38.11,
                                                  "BYRADIUS", 10, "km")),
    ([("RPUSH", "l", 3, 1, 2)], "l", ("SORT", "l", "STORE", "out")),
    ([("SET", "c1", "v")], "c1", ("COPY", "c1", "c2")),
    ([("SET", "c1", "v")], "c2", ("COPY", "c1", "c2")),
    # LMPOP / ZMPOP write only the key they popped from
    ([("RPUSH", "l2", "x")], "l1", ("LMPOP", 2, "l1", "l2", "LEFT")),
    ([("RPUSH", "l1", "x"), ("RPUSH", "l2", "x")], "l2", ("LMPOP", 2, "l1", "l2", "LEFT")),
    ([("RPUSH", "l1", "x"), ("RPUSH", "l2", "x")], "l1", ("LMPOP", 2, "l1", "l2", "LEFT")),
    ([("ZADD", "z2", 1, "x")], "z1", ("ZMPOP", 2, "z1", "z2", "MIN")),
    ([("ZADD", "z1", 1, "x"), ("ZADD", "z2", 1, "y")], "z2", ("ZMPOP", 2, "z1", "z2", "MIN")),
    # SETBIT / BITFIELD that change nothing
    ([("SETBIT", "bits", 3, 1)], "bits", ("SETBIT", "bits", 3, 1)),
    ([("SETBIT", "bits", 3, 1)], "bits", ("SETBIT", "bits", 3, 0)),
    ([("SETBIT", "bits", 3, 1)], "bits", ("BITFIELD", "bits", "SET", "u1", 3, 1)),
]


@pytest.mark.parametrize("threads", [1, 4])
def test_watch_is_dirtied_only_by_keys_the_command_changed(damselfly, redis_server, threads):
    d = damselfly(f"--proactor_threads={threads}")
    expected = [_watch_survives(redis_server, *case) for case in WATCH_CASES]
    got = [_watch_survives(d, *case) for case in WATCH_CASES]
    assert [(case[2][0], case[1], g) for case, g in zip(WATCH_CASES, got)] == \
        [(case[2][0], case[1], e) for case, e in zip(WATCH_CASES, expected)]


def test_info_has_the_lazyfree_and_migrate_fields_the_suite_waits_on(damselfly, redis_server):
    # unit/lazyfree waits for lazyfree_pending_objects to be 0; unit/dump for migrate_cached_sockets:0.
    d = damselfly()
    for server in (redis_server, d):
        info = server.client().info("everything")
        assert info["lazyfree_pending_objects"] == 0
        assert info["migrate_cached_sockets"] == 0
        assert "lazyfreed_objects" in info


def _replication_stream(port):
    """A connection that sent SYNC and read past the snapshot: what follows is the stream."""
    from resp import RespConn
    c = RespConn(port)
    c.send_raw(b"SYNC\r\n")
    while True:
        c.buf = c.buf.lstrip(b"\n")
        i = c.buf.find(b"\r\n")
        if c.buf.startswith(b"$") and i > 0:
            size = int(c.buf[1:i])
            while len(c.buf) < i + 2 + size:
                c._fill()
            c.buf = c.buf[i + 2 + size:]
            return c
        c._fill()


def _stream_of_expires(server):
    stream = _replication_stream(server.port)
    c = server.client()
    c.set("k", "v")
    c.pexpire("k", 100000)
    c.expire("k", 200)
    c.expire("nokey", 10)
    c.pexpire("k", -1)
    c.set("end", "1")
    seen = []
    while not seen or seen[-1][:2] != ["set", "end"]:
        _, args = stream.read_reply()
        words = [a.decode() for _, a in args]
        if words[0].lower() != "ping":
            seen.append([words[0].lower()] + words[1:2])
    stream.sock.close()
    return seen


def test_expire_is_replicated_as_the_pexpireat_it_set(damselfly, redis_server):
    # unit/type/list's "SWAPDB wants to wake blocked client" reads the stream and expects the
    # absolute PEXPIREAT alone, as Redis propagates it (the journal sent PEXPIRE, then PEXPIREAT).
    ours, theirs = _stream_of_expires(damselfly("--proactor_threads=2")), _stream_of_expires(redis_server)
    assert ours == theirs
    assert [w[0] for w in ours] == ["select", "set", "pexpireat", "pexpireat", "del", "set"]


def _restore_access(server):
    c = server.client()
    c.flushall()
    c.set("foo", "bar")
    payload = c.dump("foo")
    out = []
    for policy, option, value in [("allkeys-lru", "IDLETIME", 1000), ("allkeys-lfu", "FREQ", 100),
                                  ("allkeys-lru", "FREQ", 100), ("allkeys-lfu", "IDLETIME", 1000)]:
        c.config_set("maxmemory-policy", policy)
        c.delete("foo")
        c.execute_command("RESTORE", "foo", 0, payload, option, value)
        if policy == "allkeys-lru":
            idle = c.object("idletime", "foo")
            out.append((policy, option, 1000 <= idle <= 1010 if option == "IDLETIME" else idle < 10))
        else:
            out.append((policy, option, c.object("freq", "foo")))
    c.config_set("maxmemory-policy", "noeviction")
    return out


def test_restore_sets_idle_time_or_frequency(damselfly, redis_server):
    # unit/dump's "RESTORE can set LRU / LFU": the options were parsed and then dropped.
    ours = _restore_access(damselfly("--proactor_threads=2"))
    assert ours == _restore_access(redis_server)
    assert ours[0][2] is True and ours[1][2] == 100


# unit/scripting: Redis 7.0's sandbox has no print, loads no bytecode (loadstring and load
# hand every chunk to the text parser), and redis.sha1hex wants exactly one argument.
SANDBOX = [
    "print('some data')",
    "return loadstring(string.dump(function() return 1 end))()",
    "local f, e = loadstring(string.dump(function() return 1 end)); return {tostring(f), e}",
    "local f, e = loadstring(string.dump(function() return 1 end), 'named'); return e",
    "local s = string.dump(function() return 1 end); local done = false\n"
    "local f, e = load(function() if done then return nil end; done = true; return s end)\n"
    "return {tostring(f), e}",
    "return loadstring('return 7')()",
    "local f, e = loadstring('return +'); return {tostring(f), e}",
    "local parts = {'return ', '8'}; local i = 0; return load(function() i = i + 1; return parts[i] end)()",
    "return redis.sha1hex()",
    "return redis.sha1hex('a', 'b')",
    "return redis.sha1hex({})",
    "return redis.sha1hex(12)",
    "return redis.sha1hex('')",
]


def test_lua_sandbox_has_no_print_no_bytecode_and_a_strict_sha1hex(damselfly, redis_server):
    c = damselfly().client()
    r = redis_server.client()
    assert [answer(c, s) for s in SANDBOX] == [answer(r, s) for s in SANDBOX]


ACL_CHECKS = [
    "return redis.acl_check_cmd('set', 'xx', 1)",       # allowed: command and key
    "return redis.acl_check_cmd('hset', 'xx', 'f', 1)",  # command not allowed
    "return redis.acl_check_cmd('set', 'yy', 1)",       # key not allowed
    "return redis.acl_check_cmd('get', 'x', 'y')",      # no arity check, only the ACL
    "return redis.acl_check_cmd('invalid-cmd', 'arg')",
    "return redis.acl_check_cmd('config', 'nosuch')",
    "return redis.acl_check_cmd()",
    "return redis.acl_check_cmd('set', {})",
    "return redis.acl_check_cmd(1)",
]


def test_redis_acl_check_cmd_asks_the_script_users_acl(damselfly, redis_server):
    # "Script ACL check": redis.acl_check_cmd answers for the user running the script,
    # from EVAL and from a function alike.
    library = "#!lua name=aclcheck\nredis.register_function('aclcheck', function(keys, args) " \
              "return redis.acl_check_cmd(unpack(args)) end)"
    results = []
    for server in (redis_server, damselfly()):
        admin = server.client()
        admin.execute_command("ACL", "SETUSER", "scriptbob", "on", ">123", "+@scripting", "+set", "~x*")
        admin.execute_command("FUNCTION", "LOAD", "REPLACE", library)
        try:
            c = server.client()
            unrestricted = [answer(c, s) for s in ACL_CHECKS]
            c.execute_command("AUTH", "scriptbob", "123")
            got = [answer(c, s) for s in ACL_CHECKS]
            got.append(c.fcall("aclcheck", 0, "set", "xx", "1"))
            got.append(c.fcall("aclcheck", 0, "get", "xx"))
            results.append((unrestricted, got))
        finally:
            admin.execute_command("ACL", "DELUSER", "scriptbob")
            admin.execute_command("FUNCTION", "DELETE", "aclcheck")
    assert results[0] == results[1]


ERROR_ACCOUNTING = [
    # (setup, eval arguments): "Consistent eval error reporting" and the error_reply tests.
    ([["CONFIG", "SET", "maxmemory", "1"]], ["EVAL", "return redis.call('set','x','y')", "1", "x"]),
    ([["CONFIG", "SET", "maxmemory", "1"]],
     ["EVAL", "local t = redis.pcall('set','x','y'); return t['err'] ~= nil", "1", "x"]),
    ([["CONFIG", "SET", "maxmemory", "1"]], ["EVAL", "return redis.pcall('set','x','y')", "1", "x"]),
    ([], ["EVAL", "return redis.call('select',99)", "0"]),
    ([], ["EVAL", "local t = redis.pcall('select',99); return t['err']", "0"]),
    ([], ["EVAL_RO", "return redis.call('set','x','y')", "1", "x"]),
    ([], ["EVAL_RO", "local t = redis.pcall('set','x','y'); return t['err']", "1", "x"]),
    ([["SET", "Sicily", "1"]], ["EVAL", "return redis.call('GEOADD', 'Sicily', '13.361389', '38.115556', 'Palermo')",
                                "1", "Sicily"]),
    ([], ["EVAL", "return redis.error_reply('MY_ERR_CODE custom msg')", "0"]),
    ([], ["EVAL", "return redis.error_reply('')", "0"]),
    ([], ["EVAL", "return redis.call('nosuchcommand')", "0"]),
    ([], ["EVAL", "return redis.call('get')", "0"]),
    ([], ["EVAL", "error('raised')", "0"]),
]


def _error_accounting(server):
    c = server.client()
    out = []
    for setup, command in ERROR_ACCOUNTING:
        c.execute_command("CONFIG", "RESETSTAT")
        for s in setup:
            c.execute_command(*s)
        try:
            reply = c.execute_command(*command)
        except redis.ResponseError as e:
            reply = "error: " + str(e).split(" script:")[0]
        c.execute_command("CONFIG", "SET", "maxmemory", "0")
        errors = {k: v["count"] for k, v in c.info("errorstats").items()}
        stats = c.info("commandstats")
        calls = {k: (v["calls"], v["rejected_calls"], v["failed_calls"]) for k, v in stats.items()
                 if k in ("cmdstat_set", "cmdstat_eval", "cmdstat_eval_ro", "cmdstat_select", "cmdstat_geoadd")}
        out.append((command[1], reply, errors, c.info("stats")["total_error_replies"], calls))
        c.delete("Sicily", "x")
    return out


def test_script_errors_are_counted_once_where_they_arise(damselfly, redis_server):
    # An error a called command replies is counted (errorstats, the command's failed or
    # rejected calls) when that command fails; the script's reply passing it on counts
    # only a failed call of EVAL. redis.error_reply and Lua errors count at the reply.
    d = damselfly("--proactor_threads=2")
    assert _error_accounting(d) == _error_accounting(redis_server)


def test_config_set_port_nothing_can_listen_on_is_refused_as_redis_and_rolled_back(damselfly, redis_server):
    # "CONFIG SET rollback on apply error": Redis's text for a port in use, and the other
    # parameters of the same CONFIG SET left as they were.
    import socket
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        results = []
        for server in (redis_server, damselfly()):
            c = server.client()
            before = c.config_get("maxmemory")
            try:
                c.execute_command("CONFIG", "SET", "maxmemory", "10000001", "port", str(port))
                reply = "OK"
            except redis.ResponseError as e:
                reply = str(e)
            results.append((reply, c.config_get("maxmemory") == before, c.ping()))
    finally:
        busy.close()
    assert results[0] == results[1]
    assert results[0][0].startswith("CONFIG SET failed (possibly related to argument 'port') - Unable to listen")
