"""Long scripts: --lua_time_limit, BUSY, SCRIPT KILL, UNKILLABLE, SHUTDOWN NOSAVE,
and --default_lua_flags.

Damselfly runs a script on one loop thread.  Once the script has run past
``--lua_time_limit`` every client gets Redis's BUSY error except for the
commands Redis 7.0 allows while busy (SCRIPT KILL, SHUTDOWN NOSAVE, MULTI,
HELLO, ...): clients on other threads from their own loops, clients on the
script's own thread from the script's hook, which polls that loop's sockets
(as Redis's hook does).  The tests open their connections first (the server
hands them to its threads in turn), start a looping script on the first one,
and ask the others until they answer BUSY.  Nothing asserts timing: waits are
bounded loops.

Texts checked against redis-server 7.0 (these tests also pass with
DAMSELFLY_BIN=tests/e2e/redis_as_damselfly.sh).
"""

import hashlib
import socket
import threading
import time

import pytest

from resp import ConnectionClosed, RespConn, encode
from util import keys_on_shards

BUSY = b"BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
UNKILLABLE = (b"UNKILLABLE Sorry the script already executed write commands against the dataset. You can either "
              b"wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.")
NOTBUSY = b"NOTBUSY No scripts in execution right now."
LOOP = "local i = 0 while true do i = i + 1 end"
# writes, then loops (bounded) until the server clock has moved on by 2 s
WRITE_THEN_WAIT = ("redis.call('SET', KEYS[1], 'written') local t0 = tonumber(redis.call('TIME')[1]) "
                   "while tonumber(redis.call('TIME')[1]) < t0 + 2 do end return 'done'")


def sha1(text):
    return hashlib.sha1(text.encode()).hexdigest()


class LongCall:
    """Runs a command on its own connection in a thread; `.reply` once it returns."""

    def __init__(self, conn, *command):
        self.reply = None
        self.error = None

        def run():
            try:
                self.reply = conn.call(*command)
            except Exception as e:  # noqa: BLE001
                self.error = e
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self):
        self.thread.join(60)
        assert not self.thread.is_alive(), "the command never returned"


def LongScript(conn, script, keys=()):  # noqa: N802 (reads as the class it was)
    return LongCall(conn, "EVAL", script, str(len(keys)), *keys)


def busy_peer(conns, busy=BUSY):
    """The first of `conns` to answer BUSY to PING (PONG: the script has not
    run past the limit yet, so ask again).  Every connection answers, on
    whichever thread it lives."""
    for _ in range(200):
        for c in conns:
            rep = c.call("PING")
            if rep == ("-", busy):
                return c
            assert rep == ("+", b"PONG"), rep
        time.sleep(0.05)
    raise AssertionError("no connection was told BUSY")


@pytest.fixture
def busy_server(damselfly):
    return damselfly("--proactor_threads=2", "--lua_time_limit=100")


def test_busy_then_script_kill(busy_server):
    conns = [RespConn(busy_server.port, timeout=30) for _ in range(5)]
    assert conns[1].call("CONFIG", "GET", "lua-time-limit")[1][1] == ("$", b"100")
    script = LongScript(conns[0], LOOP)
    peer = busy_peer(conns[2:])
    # refused while busy, as redis-server 7.0 does
    for cmd in (["GET", "k"], ["SET", "k", "v"], ["ECHO", "x"], ["SCRIPT", "FLUSH"], ["EVAL", "return 1", "0"],
                ["INFO"], ["SHUTDOWN"]):
        assert peer.call(*cmd) == ("-", BUSY), cmd
    assert peer.call("SCRIPT", "KILL", "extra") == ("-", b"ERR wrong number of arguments for 'script|kill' command")
    # allowed while busy
    assert peer.call("MULTI") == ("+", b"OK")
    assert peer.call("SET", "k", "v") == ("-", BUSY)
    assert peer.call("DISCARD") == ("+", b"OK")
    assert peer.call("HELLO", "2")[0] == "*"
    assert peer.call("SCRIPT", "KILL") == ("+", b"OK")
    script.join()
    assert script.reply == ("-", b"ERR Script killed by user with SCRIPT KILL... script: %s, on @user_script:1."
                            % sha1(LOOP).encode()), script.error
    # served normally afterwards, on every connection
    assert peer.call("SCRIPT", "KILL") == ("-", NOTBUSY)
    for i, c in enumerate(conns):
        assert c.call("SET", f"k{i}", "v") == ("+", b"OK")
        assert c.call("GET", f"k{i}") == ("$", b"v")
    assert conns[0].call("EVAL", "return redis.call('GET', KEYS[1])", "1", "k0") == ("$", b"v")
    for c in conns:
        c.close()


def test_pcall_cannot_swallow_the_kill(busy_server):
    """Killed inside pcall: the error is caught, but every later line raises it again."""
    body = "local n = 0\nwhile true do\n  pcall(function() while true do end end)\n  n = n + 1\nend"
    conns = [RespConn(busy_server.port, timeout=30) for _ in range(4)]
    script = LongScript(conns[0], body)
    peer = busy_peer(conns[1:])
    assert peer.call("SCRIPT", "KILL") == ("+", b"OK")
    script.join()
    assert script.reply[0] == "-" and script.reply[1].startswith(b"ERR Script killed by user with SCRIPT KILL..."), \
        script.reply
    for c in conns:
        c.close()


def test_script_that_wrote_is_unkillable(busy_server):
    key = "written"
    conns = [RespConn(busy_server.port, timeout=30) for _ in range(4)]
    script = LongScript(conns[0], WRITE_THEN_WAIT, [key])
    peer = busy_peer(conns[1:])
    assert peer.call("SCRIPT", "KILL") == ("-", UNKILLABLE)
    script.join()
    assert script.reply == ("$", b"done"), script.error
    assert peer.call("SCRIPT", "KILL") == ("-", NOTBUSY)
    assert peer.call("GET", key) == ("$", b"written")
    for c in conns:
        c.close()


def test_shutdown_nosave_while_busy(busy_server):
    conns = [RespConn(busy_server.port, timeout=30) for _ in range(4)]
    script = LongScript(conns[0], LOOP)
    peer = busy_peer(conns[1:])
    peer.send_raw(b"*2\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n")
    with pytest.raises((ConnectionClosed, ConnectionResetError)):
        peer.read_reply()                      # no reply: the server goes away
    script.join()                              # the script's client is let go too
    busy_server.proc.wait(30)
    assert busy_server.proc.returncode == 0
    for c in conns:
        c.close()


def test_time_limit_is_a_config_parameter(busy_server):
    with RespConn(busy_server.port) as c:
        assert c.call("CONFIG", "SET", "busy-reply-threshold", "250") == ("+", b"OK")
        assert c.call("CONFIG", "GET", "lua-time-limit")[1][1] == ("$", b"250")
        assert c.call("CONFIG", "SET", "lua-time-limit", "-1")[0] == "-"
        assert c.call("SCRIPT", "KILL") == ("-", NOTBUSY)


# A script whose declared key is on one shard, writes it, then (on the second
# run only) writes an undeclared key on the other shard.  Without
# allow-undeclared-keys its second run takes the one-shard fast path and fails
# (it wrote before reaching the foreign key); with the flag, from the script's
# first line or from --default_lua_flags, it always runs with every shard lent.
CONDITIONAL_FOREIGN = ("redis.call('SET', KEYS[1], 'v') if ARGV[1] == 'x' then redis.call('SET', ARGV[2], 'u') end "
                       "return redis.call('EXISTS', KEYS[1])")


def run_conditional(port, body):
    ks = keys_on_shards(2, 1, "flags")
    with RespConn(port) as c:
        first = c.call("EVAL", body, "1", ks[0][0], "n", ks[1][0])
        second = c.call("EVAL", body, "1", ks[0][0], "x", ks[1][0])
        return first, second, c.call("GET", ks[1][0])


def test_default_lua_flags(damselfly, only_damselfly):
    plain = damselfly("--proactor_threads=2")
    first, second, _ = run_conditional(plain.port, CONDITIONAL_FOREIGN)
    assert first == (":", 1)
    assert second[0] == "-" and b"not declared and lives on another shard" in second[1], second
    declared = "--!df flags=allow-undeclared-keys\n" + CONDITIONAL_FOREIGN
    assert run_conditional(plain.port, declared) == ((":", 1), (":", 1), ("$", b"u"))

    flagged = damselfly("--proactor_threads=2", "--default_lua_flags=allow-undeclared-keys")
    assert run_conditional(flagged.port, CONDITIONAL_FOREIGN) == ((":", 1), (":", 1), ("$", b"u"))
    # a flags line replaces the defaults
    own_flags = "--!df flags=disable-atomicity\n" + CONDITIONAL_FOREIGN + " "
    first, second, _ = run_conditional(flagged.port, own_flags)
    assert first == (":", 1) and second[0] == "-", second


SPIN_LIBRARY = ("#!lua name=spinlib\n"
                "redis.register_function('spin', function(keys, args) local i = 0 while true do i = i + 1 end end)")


def test_busy_function_then_function_kill(busy_server):
    """FCALL past the limit: BUSY names FUNCTION KILL, SCRIPT KILL is refused with it, FUNCTION KILL stops it."""
    function_busy = b"BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
    conns = [RespConn(busy_server.port, timeout=30) for _ in range(5)]
    assert conns[1].call("FUNCTION", "LOAD", SPIN_LIBRARY) == ("$", b"spinlib")
    assert conns[1].call("FUNCTION", "KILL") == ("-", NOTBUSY)
    spin = LongCall(conns[0], "FCALL", "spin", "0")
    peer = busy_peer(conns[2:], function_busy)
    assert peer.call("GET", "k") == ("-", function_busy)
    assert peer.call("SCRIPT", "KILL") == ("-", function_busy)
    assert peer.call("FUNCTION", "KILL") == ("+", b"OK")
    spin.join()
    assert spin.reply == ("-", b"ERR Script killed by user with SCRIPT KILL... script: spin, on @user_function:2.")
    assert peer.call("FUNCTION", "KILL") == ("-", NOTBUSY)
    assert peer.call("SET", "k", "v") == ("+", b"OK")
    for c in conns:
        c.close()


# --- The script's own thread (issue 12) ---------------------------------------
# A client whose connection lives on the busy script's thread is served from
# the script's hook: BUSY, and the commands allowed while busy, on io_uring
# and on epoll, with one thread and with two.

DRIVERS = {"uring": (), "epoll": ("--force_epoll",)}


def start_busy(damselfly, threads, driver, limit=100):
    srv = damselfly(f"--proactor_threads={threads}", f"--num_shards={threads}", f"--lua_time_limit={limit}",
                    *DRIVERS[driver])
    api = srv.info("server")["multiplexing_api"]
    if driver == "uring" and api != "iouring":
        pytest.skip(f"io_uring unavailable here (multiplexing_api={api})")
    assert api == ("epoll" if driver == "epoll" else "iouring")
    return srv


def thread_of(c):
    """The loop a connection lives on (Damselfly's CLIENT INFO `thread=`)."""
    rep = c.call("CLIENT", "INFO")
    assert rep[0] in ("$", "="), rep
    return int(rep[1].decode().rsplit("thread=", 1)[1].split()[0])


def on_thread(conns, thread):
    found = [c for c in conns if thread_of(c) == thread]
    assert found, f"no connection on thread {thread}"
    return found


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("threads", [1, 2])
def test_own_thread_gets_busy_and_script_kill(damselfly, only_damselfly, threads, driver):
    srv = start_busy(damselfly, threads, driver)
    conns = [RespConn(srv.port, timeout=30) for _ in range(6)]
    owner = conns[0]
    mates = on_thread(conns[1:], thread_of(owner))
    script = LongScript(owner, LOOP)
    peer = busy_peer(mates)
    assert peer.call("GET", "k") == ("-", BUSY)
    assert peer.call("MULTI") == ("+", b"OK")
    assert peer.call("SET", "k", "v") == ("-", BUSY)
    assert peer.call("EXEC") == ("-", b"EXECABORT Transaction discarded because of: " + BUSY)
    # a client connecting now is served too (accepted from the hook)
    late = RespConn(srv.port, timeout=30)
    assert late.call("PING") == ("-", BUSY)
    # pipelined: answered in order, the kill included
    other = mates[-1]
    other.send_raw(b"*1\r\n$4\r\nPING\r\n*2\r\n$6\r\nSCRIPT\r\n$4\r\nKILL\r\n*2\r\n$4\r\nECHO\r\n$1\r\nx\r\n")
    assert other.read_reply() == ("-", BUSY)
    assert other.read_reply() == ("+", b"OK")
    script.join()
    assert script.reply == ("-", b"ERR Script killed by user with SCRIPT KILL... script: %s, on @user_script:1."
                            % sha1(LOOP).encode()), script.error
    # the ECHO after the kill: BUSY if the script had not stopped yet, else served
    assert other.read_reply() in (("-", BUSY), ("$", b"x"))
    for c in conns + [late]:
        assert c.call("PING") == ("+", b"PONG")
        c.close()


@pytest.mark.parametrize("driver", DRIVERS)
def test_script_on_another_threads_shard_serves_that_thread(damselfly, only_damselfly, driver):
    """A script whose keys are on the other thread's shard runs there (after
    its first, lent, run): that thread's clients are served from its hook,
    this one's from their own loop."""
    srv = start_busy(damselfly, 2, driver)
    conns = [RespConn(srv.port, timeout=30) for _ in range(6)]
    owner = conns[0]
    here = thread_of(owner)
    key = keys_on_shards(2, 1, "busy")[1 - here][0]
    body = "if ARGV[1] == 'spin' then local i = 0 while true do i = i + 1 end end return 1"
    assert owner.call("EVAL", body, "1", key, "once") == (":", 1)
    mates = on_thread(conns[1:], 1 - here)
    spin = LongCall(owner, "EVALSHA", sha1(body), "1", key, "spin")
    peer = busy_peer(mates)
    assert peer.call("SCRIPT", "KILL") == ("+", b"OK")
    spin.join()
    assert spin.reply[0] == "-" and spin.reply[1].startswith(b"ERR Script killed by user"), spin.reply
    for c in conns:
        assert c.call("PING") == ("+", b"PONG")
        c.close()


@pytest.mark.parametrize("driver", DRIVERS)
def test_own_thread_function_kill_and_unkillable(damselfly, only_damselfly, driver):
    function_busy = b"BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
    srv = start_busy(damselfly, 1, driver)
    conns = [RespConn(srv.port, timeout=30) for _ in range(3)]
    assert conns[1].call("FUNCTION", "LOAD", SPIN_LIBRARY) == ("$", b"spinlib")
    spin = LongCall(conns[0], "FCALL", "spin", "0")
    peer = busy_peer(conns[1:], function_busy)
    assert peer.call("SCRIPT", "KILL") == ("-", function_busy)
    stats = peer.call("FUNCTION", "STATS")       # allowed while busy: names the running function
    assert stats[0] == "*" and stats[1][0] == ("$", b"running_script"), stats
    running = stats[1][1][1]
    assert running[:4] == [("$", b"name"), ("$", b"spin"), ("$", b"command"),
                           ("*", [("$", b"FCALL"), ("$", b"spin"), ("$", b"0")])], running
    assert running[4] == ("$", b"duration_ms") and running[5][0] == ":" and running[5][1] >= 100, running
    assert peer.call("FUNCTION", "KILL") == ("+", b"OK")
    spin.join()
    assert spin.reply == ("-", b"ERR Script killed by user with SCRIPT KILL... script: spin, on @user_function:2.")
    # a script that wrote cannot be killed; its own connection gets its reply once it ends
    script = LongScript(conns[0], WRITE_THEN_WAIT, ["written"])
    peer = busy_peer(conns[1:])
    assert peer.call("FUNCTION", "STATS") == ("-", BUSY)   # an EVAL script: Redis's answer
    assert peer.call("SCRIPT", "KILL") == ("-", UNKILLABLE)
    script.join()
    assert script.reply == ("$", b"done"), script.error
    assert peer.call("GET", "written") == ("$", b"written")
    for c in conns:
        c.close()


@pytest.mark.parametrize("driver", DRIVERS)
def test_own_thread_shutdown_nosave(damselfly, only_damselfly, driver):
    srv = start_busy(damselfly, 1, driver)
    conns = [RespConn(srv.port, timeout=30) for _ in range(3)]
    script = LongScript(conns[0], LOOP)
    peer = busy_peer(conns[1:])
    peer.send_raw(b"*2\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n")
    with pytest.raises((ConnectionClosed, ConnectionResetError)):
        peer.read_reply()
    script.join()
    srv.proc.wait(30)
    assert srv.proc.returncode == 0
    for c in conns:
        c.close()


@pytest.mark.parametrize("driver", DRIVERS)
def test_pipeline_on_script_thread_answered_in_order_after(damselfly, only_damselfly, driver):
    """Under the limit nothing is read on the script's thread; what was sent
    meanwhile is answered in order once the script ends.  Past the limit, a
    WATCH (which the hook leaves for later) keeps the commands behind it in
    order too."""
    srv = start_busy(damselfly, 1, driver, limit=5000)
    conns = [RespConn(srv.port, timeout=30) for _ in range(2)]
    wait = ("local t0 = tonumber(redis.call('TIME')[1]) "
            "while tonumber(redis.call('TIME')[1]) < t0 + 1 do end return 'slept'")
    script = LongScript(conns[0], wait)
    time.sleep(0.2)
    conns[1].send_raw(encode("SET", "n", "1") + encode("INCR", "n") + encode("INCR", "n") + encode("GET", "n"))
    assert [conns[1].read_reply() for _ in range(4)] == [("+", b"OK"), (":", 2), (":", 3), ("$", b"3")]
    script.join()
    assert script.reply == ("$", b"slept"), script.error
    assert conns[1].call("CONFIG", "SET", "lua-time-limit", "100") == ("+", b"OK")
    script = LongScript(conns[0], LOOP)
    peer = busy_peer(conns[1:])
    peer.send_raw(encode("PING") + encode("WATCH", "n") + encode("UNWATCH") + encode("ECHO", "e"))
    assert peer.read_reply() == ("-", BUSY)
    with RespConn(srv.port, timeout=30) as killer:
        assert busy_peer([killer]).call("SCRIPT", "KILL") == ("+", b"OK")
    script.join()
    assert [peer.read_reply() for _ in range(3)] == [("+", b"OK"), ("+", b"OK"), ("$", b"e")]
    for c in conns:
        c.close()


def test_query_buffer_limit_holds_while_the_clients_own_script_runs(busy_server):
    """Bytes that reach a connection while its own script runs (its thread's sockets served
    from the script's hook) count against client-query-buffer-limit as its buffer does,
    those held aside while its handler is on the stack included: 3 MB of a SET's value
    sent meanwhile closes the connection, the SET never runs, the server stays up."""
    conns = [RespConn(busy_server.port, timeout=30) for _ in range(5)]
    assert conns[1].call("CONFIG", "SET", "client-query-buffer-limit", "1mb") == ("+", b"OK")
    script = LongScript(conns[0], LOOP)
    peer = busy_peer(conns[2:])
    try:  # on the script's own connection, raw, while its EVAL waits for the reply
        conns[0].sock.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nq\r\n$3000000\r\n")
        for _ in range(30):
            conns[0].sock.sendall(b"x" * 100000)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert peer.call("SCRIPT", "KILL") == ("+", b"OK")
    script.join()
    _data, closed = conns[0].read_all_until_close(timeout=3)
    assert closed
    assert peer.call("EXISTS", "q") == (":", 0)
    assert peer.call("PING") == ("+", b"PONG")
    for c in conns[1:]:
        c.close()
