"""CLIENT PAUSE / UNPAUSE, the same scenarios against Damselfly (several threads) and a real
redis-server 7.0: what is held under WRITE and ALL (writes, may-replicate commands,
scripts by their flags, EXEC by its queue), the held clients resumed when the pause ends,
expiry held meanwhile, argument errors byte for byte.

Timing is asserted loosely (a loaded 2-core machine): a held command is one INFO counts in
`blocked_clients` and whose reply has not come; nothing waits on a millisecond deadline."""

import select
import time

import pytest

from resp import RespConn, to_py


@pytest.fixture(scope="module")
def servers(damselfly_module, redis_server):
    return {"damselfly": damselfly_module("--proactor_threads=4"), "redis": redis_server}


@pytest.fixture(params=["damselfly", "redis"])
def server(request, servers):
    srv = servers[request.param]
    with RespConn(srv.port) as c:
        c.call("CLIENT", "UNPAUSE")
        c.call("FLUSHALL")
        c.call("FUNCTION", "FLUSH")
    yield srv
    with RespConn(srv.port) as c:
        c.call("CLIENT", "UNPAUSE")


def info_field(conn, field):
    text = to_py(conn.call("INFO"))
    text = text.decode() if isinstance(text, bytes) else text
    return int(text.split(field + ":")[1].split()[0])


def wait_blocked(conn, n, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        count = info_field(conn, "blocked_clients")
        if count == n:
            return
        assert time.monotonic() < deadline, f"blocked_clients stayed {count}, wanted {n}"
        time.sleep(0.02)


def no_reply_yet(conn, wait=0.2):
    """Nothing has arrived on `conn` within `wait` seconds (it is held)."""
    if conn.buf:
        return False
    readable, _, _ = select.select([conn.sock], [], [], wait)
    return not readable


def send(conn, *args):
    from resp import encode
    conn.send_raw(encode(*args))


def test_write_pause_holds_writes_and_may_replicate_not_reads(server):
    with RespConn(server.port) as ctl, RespConn(server.port) as w, RespConn(server.port) as p, \
            RespConn(server.port) as pf, RespConn(server.port) as reader:
        ctl.call("PFADD", "hll", "a")
        assert ctl.call("CLIENT", "PAUSE", "100000", "WRITE") == ("+", b"OK")
        send(w, "SET", "k", "v")
        send(p, "PUBLISH", "ch", "m")
        send(pf, "PFCOUNT", "hll")
        wait_blocked(ctl, 3)
        # Reads and admin commands run meanwhile.
        assert reader.call("GET", "k") == ("$", None)
        assert reader.call("PING") == ("+", b"PONG")
        assert reader.call("EVAL_RO", "return redis.call('get', KEYS[1])", "1", "k") == ("$", None)
        # A command refused anyway is answered at once (Redis checks arity before the pause).
        assert reader.call("SET", "k")[0] == "-"
        assert reader.call("NOSUCHCOMMAND")[0] == "-"
        assert no_reply_yet(w) and no_reply_yet(p) and no_reply_yet(pf)
        assert ctl.call("CLIENT", "UNPAUSE") == ("+", b"OK")
        assert w.read_reply() == ("+", b"OK")
        assert p.read_reply() == (":", 0)
        assert pf.read_reply() == (":", 1)
        wait_blocked(ctl, 0)
        assert reader.call("GET", "k") == ("$", b"v")


def test_scripts_held_by_their_flags(server):
    with RespConn(server.port) as ctl, RespConn(server.port) as a, RespConn(server.port) as b, \
            RespConn(server.port) as f, RespConn(server.port) as ro:
        ctl.call("FUNCTION", "LOAD", "#!lua name=lib\n"
                 "redis.register_function{function_name='reader', callback=function() return 'r' end, flags={'no-writes'}}\n"
                 "redis.register_function('writer', function() return 'w' end)")
        sha = to_py(ctl.call("SCRIPT", "LOAD", "#!lua flags=no-writes\nreturn 2"))
        ctl.call("CLIENT", "PAUSE", "100000", "WRITE")
        send(a, "EVAL", "return 1", "0")  # no shebang: may replicate
        send(b, "EVAL", "#!lua\nreturn 1", "0")  # declares flags, not no-writes
        send(f, "FCALL", "writer", "0")
        wait_blocked(ctl, 3)
        assert ro.call("EVAL", "#!lua flags=no-writes\nreturn 'unique script'", "0") == ("$", b"unique script")
        assert ro.call("EVALSHA", sha, "0") == (":", 2)
        assert ro.call("FCALL", "reader", "0") == ("$", b"r")
        assert ro.call("FCALL_RO", "reader", "0") == ("$", b"r")
        # A read-only script may not call what may replicate (that would bypass the pause).
        err = ro.call("EVAL_RO", "return redis.call('publish', 'ch', 'm')", "0")
        assert err[0] == "-" and err[1].startswith(b"ERR Write commands are not allowed from read-only scripts."), err
        ctl.call("CLIENT", "UNPAUSE")
        assert a.read_reply() == (":", 1)
        assert b.read_reply() == (":", 1)
        assert f.read_reply() == ("$", b"w")


def test_exec_held_by_its_queue_and_pause_starts_after_exec(server):
    with RespConn(server.port) as ctl, RespConn(server.port) as tx, RespConn(server.port) as rtx, \
            RespConn(server.port) as other:
        assert tx.call("MULTI") == ("+", b"OK")
        assert tx.call("SET", "a", "1") == ("+", b"QUEUED")
        ctl.call("CLIENT", "PAUSE", "100000", "WRITE")
        # A transaction of reads runs; one with a write waits at EXEC.
        assert rtx.call("MULTI") == ("+", b"OK")
        assert rtx.call("GET", "a") == ("+", b"QUEUED")
        assert rtx.call("EXEC") == ("*", [("$", None)])
        send(tx, "EXEC")
        wait_blocked(ctl, 1)
        assert no_reply_yet(tx)
        ctl.call("CLIENT", "UNPAUSE")
        assert tx.read_reply() == ("*", [("+", b"OK")])
        # CLIENT PAUSE inside a transaction: the rest of it still runs, what follows waits.
        tx.call("MULTI")
        tx.call("SET", "b1", "x")
        tx.call("CLIENT", "PAUSE", "100000", "WRITE")
        tx.call("SET", "b2", "x")
        assert tx.call("EXEC") == ("*", [("+", b"OK"), ("+", b"OK"), ("+", b"OK")])
        send(other, "SET", "b3", "x")
        wait_blocked(ctl, 1)
        assert ctl.call("MGET", "b1", "b2", "b3") == ("*", [("$", b"x"), ("$", b"x"), ("$", None)])
        ctl.call("CLIENT", "UNPAUSE")
        assert other.read_reply() == ("+", b"OK")


def test_held_clients_resume_in_order_on_one_thread(damselfly, redis_server):
    for srv in (damselfly("--proactor_threads=1"), redis_server):
        with RespConn(srv.port) as ctl:
            ctl.call("DEL", "order")
            ctl.call("CLIENT", "PAUSE", "100000", "WRITE")
            conns = [RespConn(srv.port) for _ in range(3)]
            try:
                for i, c in enumerate(conns):
                    send(c, "RPUSH", "order", str(i))
                    wait_blocked(ctl, i + 1)
                ctl.call("CLIENT", "UNPAUSE")
                assert [c.read_reply() for c in conns] == [(":", 1), (":", 2), (":", 3)]
            finally:
                for c in conns:
                    c.close()
            assert ctl.call("LRANGE", "order", "0", "-1") == ("*", [("$", b"0"), ("$", b"1"), ("$", b"2")])


def test_all_pause_holds_every_command_until_the_deadline(server):
    with RespConn(server.port) as ctl, RespConn(server.port) as a:
        assert ctl.call("CLIENT", "PAUSE", "1500", "ALL") == ("+", b"OK")
        started = time.monotonic()
        send(a, "GET", "k")
        assert no_reply_yet(a, 0.3)
        assert a.read_reply() == ("$", None)
        assert time.monotonic() - started >= 1.0
        # Over: nothing is held any more.
        assert a.call("SET", "k", "v") == ("+", b"OK")


def test_a_later_pause_extends_never_shortens(server):
    with RespConn(server.port) as ctl, RespConn(server.port) as w:
        ctl.call("CLIENT", "PAUSE", "100000", "WRITE")
        ctl.call("CLIENT", "PAUSE", "1", "WRITE")
        time.sleep(0.2)
        send(w, "SET", "k", "v")
        wait_blocked(ctl, 1)
        ctl.call("CLIENT", "UNPAUSE")
        assert w.read_reply() == ("+", b"OK")


def test_expiry_held_while_paused(server):
    with RespConn(server.port) as c:
        before = info_field(c, "expired_keys")
        c.call("MULTI")
        c.call("SET", "e1", "v", "PX", "20")
        c.call("SET", "e2", "v", "PX", "20")
        c.call("CLIENT", "PAUSE", "100000", "WRITE")
        c.call("EXEC")
        time.sleep(0.4)  # past the TTL, several active-expiry rounds
        # Logically gone, not deleted.
        assert c.call("GET", "e1") == ("$", None)
        assert c.call("EXISTS", "e2") == (":", 0)
        assert info_field(c, "expired_keys") == before
        c.call("CLIENT", "UNPAUSE")
        c.call("GET", "e1")
        c.call("GET", "e2")
        deadline = time.monotonic() + 10
        while info_field(c, "expired_keys") != before + 2:
            assert time.monotonic() < deadline, "expired keys were not deleted after the pause"
            time.sleep(0.05)


def test_held_client_that_disconnects_is_no_longer_counted(server):
    with RespConn(server.port) as ctl:
        ctl.call("CLIENT", "PAUSE", "100000", "WRITE")
        w = RespConn(server.port)
        send(w, "SET", "k", "v")
        wait_blocked(ctl, 1)
        w.close()
        wait_blocked(ctl, 0)
        ctl.call("CLIENT", "UNPAUSE")
        assert ctl.call("EXISTS", "k") == (":", 0)


def test_argument_errors_as_redis(servers):
    cases = [
        ["CLIENT", "PAUSE", "abc"], ["CLIENT", "PAUSE", "-1"], ["CLIENT", "PAUSE", "10", "foo"],
        ["CLIENT", "PAUSE", "99999999999999999999"], ["CLIENT", "PAUSE", "1", "WRITE", "extra"],
        ["CLIENT", "UNPAUSE", "x"], ["CLIENT", "PAUSE", "0", "ALL"], ["CLIENT", "UNPAUSE"],
    ]
    with RespConn(servers["damselfly"].port) as d, RespConn(servers["redis"].port) as r:
        for cmd in cases:
            assert d.call(*cmd) == r.call(*cmd), cmd
