"""Long scripts: --lua_time_limit, BUSY, SCRIPT KILL, UNKILLABLE, SHUTDOWN NOSAVE,
and --default_lua_flags.

Damselfly runs a script on one loop thread, which serves none of its other
clients until the script ends; clients on the other threads are answered, and
once the script has run past ``--lua_time_limit`` they get Redis's BUSY error
except for the commands Redis 7.0 allows while busy (SCRIPT KILL, SHUTDOWN
NOSAVE, MULTI, HELLO, ...).  The tests open their connections first (the
server hands them to its threads in turn), start a looping script on the
first one, and find a connection on another thread as one whose PING is
answered; a connection on the script's thread gets its reply once the script
ends.  Nothing asserts timing: socket timeouts only tell which thread a
connection is on, and waits are bounded loops.

Texts checked against redis-server 7.0 (these tests also pass with
DAMSELFLY_BIN=tests/e2e/redis_as_damselfly.sh, where every other connection
counts as "another thread").
"""

import hashlib
import socket
import threading
import time

import pytest

from resp import ConnectionClosed, RespConn
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


class LongScript:
    """Runs EVAL on its own connection in a thread; `.reply` once it returns."""

    def __init__(self, conn, script, keys=()):
        self.reply = None
        self.error = None

        def run():
            try:
                self.reply = conn.call("EVAL", script, str(len(keys)), *keys)
            except Exception as e:  # noqa: BLE001
                self.error = e
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self):
        self.thread.join(60)
        assert not self.thread.is_alive(), "the script never returned"


def busy_peer(conns, stuck):
    """A connection on another thread than the script, once it answers BUSY.

    PING on each candidate: a timeout means the connection shares the
    script's thread (its reply is read later, see `drain`); PONG means the
    script has not run past the limit yet, so ask again."""
    for _ in range(200):
        for c in conns:
            if c in stuck:
                continue
            c.sock.settimeout(1.0)
            try:
                rep = c.call("PING")
            except (TimeoutError, socket.timeout):
                stuck.add(c)
                continue
            finally:
                c.sock.settimeout(30)
            if rep == ("-", BUSY):
                return c
            assert rep == ("+", b"PONG"), rep
        time.sleep(0.05)
    raise AssertionError("no connection on another thread was told BUSY")


def drain(stuck):
    """The PINGs sent on the script's thread are answered once it ends."""
    for c in stuck:
        c.sock.settimeout(30)
        assert c.read_reply() == ("+", b"PONG")


@pytest.fixture
def busy_server(damselfly):
    return damselfly("--proactor_threads=2", "--lua_time_limit=100")


def test_busy_then_script_kill(busy_server):
    conns = [RespConn(busy_server.port, timeout=30) for _ in range(5)]
    assert conns[1].call("CONFIG", "GET", "lua-time-limit")[1][1] == ("$", b"100")
    script = LongScript(conns[0], LOOP)
    stuck = set()
    peer = busy_peer(conns[2:], stuck)
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
    drain(stuck)
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
    stuck = set()
    peer = busy_peer(conns[1:], stuck)
    assert peer.call("SCRIPT", "KILL") == ("+", b"OK")
    script.join()
    assert script.reply[0] == "-" and script.reply[1].startswith(b"ERR Script killed by user with SCRIPT KILL..."), \
        script.reply
    drain(stuck)
    for c in conns:
        c.close()


def test_script_that_wrote_is_unkillable(busy_server):
    key = "written"
    conns = [RespConn(busy_server.port, timeout=30) for _ in range(4)]
    script = LongScript(conns[0], WRITE_THEN_WAIT, [key])
    stuck = set()
    peer = busy_peer(conns[1:], stuck)
    assert peer.call("SCRIPT", "KILL") == ("-", UNKILLABLE)
    script.join()
    assert script.reply == ("$", b"done"), script.error
    drain(stuck)
    assert peer.call("SCRIPT", "KILL") == ("-", NOTBUSY)
    assert peer.call("GET", key) == ("$", b"written")
    for c in conns:
        c.close()


def test_shutdown_nosave_while_busy(busy_server):
    conns = [RespConn(busy_server.port, timeout=30) for _ in range(4)]
    script = LongScript(conns[0], LOOP)
    stuck = set()
    peer = busy_peer(conns[1:], stuck)
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
    result = {}

    def run():
        result["reply"] = conns[0].call("FCALL", "spin", "0")
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    stuck = set()
    for _ in range(200):
        peer = next((c for c in conns[2:] if c not in stuck and _answers_busy(c, stuck, function_busy)), None)
        if peer:
            break
        time.sleep(0.05)
    assert peer is not None, "no connection on another thread was told BUSY"
    assert peer.call("GET", "k") == ("-", function_busy)
    assert peer.call("SCRIPT", "KILL") == ("-", function_busy)
    assert peer.call("FUNCTION", "KILL") == ("+", b"OK")
    thread.join(60)
    assert not thread.is_alive()
    assert result["reply"] == ("-", b"ERR Script killed by user with SCRIPT KILL... script: spin, on @user_function:2.")
    drain(stuck)
    assert peer.call("FUNCTION", "KILL") == ("-", NOTBUSY)
    assert peer.call("SET", "k", "v") == ("+", b"OK")
    for c in conns:
        c.close()


def _answers_busy(c, stuck, busy):
    """PING on `c`: True once it answers `busy`; a timeout puts it in `stuck` (the function's thread)."""
    c.sock.settimeout(1.0)
    try:
        rep = c.call("PING")
    except (TimeoutError, socket.timeout):
        stuck.add(c)
        return False
    finally:
        c.sock.settimeout(30)
    if rep == ("-", busy):
        return True
    assert rep == ("+", b"PONG"), rep
    return False
