"""Malformed input: exact Redis error texts, connection handling, robustness.

Every byte sequence is also sent to a real redis-server; Damselfly must answer
byte-for-byte the same and close (or keep) the connection the same way.
"""

import random
import resource
import socket
import time

import pytest

from resp import RespConn, encode

# (bytes sent, exact reply expected from Redis 7, whether the server closes the connection)
CASES = [
    (b"*abc\r\n", b"-ERR Protocol error: invalid multibulk length\r\n", True),
    (b"*99999999999\r\n", b"-ERR Protocol error: invalid multibulk length\r\n", True),
    (b"*1\r\n+foo\r\n", b"-ERR Protocol error: expected '$', got '+'\r\n", True),
    (b"*2\r\n$3\r\nGET\r\n:1\r\n", b"-ERR Protocol error: expected '$', got ':'\r\n", True),
    (b"*1\r\n$-5\r\n", b"-ERR Protocol error: invalid bulk length\r\n", True),
    (b"*1\r\n$abc\r\n", b"-ERR Protocol error: invalid bulk length\r\n", True),
    (b"*1\r\n$1048576000\r\n", b"-ERR Protocol error: invalid bulk length\r\n", True),
    (b'set "a b\r\n', b"-ERR Protocol error: unbalanced quotes in request\r\n", True),
    (b"set 'a b\r\n", b"-ERR Protocol error: unbalanced quotes in request\r\n", True),
    (b'set "a"b c\r\n', b"-ERR Protocol error: unbalanced quotes in request\r\n", True),
    (b"x" * 70000, b"-ERR Protocol error: too big inline request\r\n", True),
    (b"FOO a b\r\n", b"-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n", False),
    (b"FOO\r\n", b"-ERR unknown command 'FOO', with args beginning with: \r\n", False),
    (encode("foo", "a", "b"), b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n", False),
    (b"GET\r\n", b"-ERR wrong number of arguments for 'get' command\r\n", False),
    (encode("GET"), b"-ERR wrong number of arguments for 'get' command\r\n", False),
    (encode("get", "a", "b"), b"-ERR wrong number of arguments for 'get' command\r\n", False),
    (encode("SET", "a"), b"-ERR wrong number of arguments for 'set' command\r\n", False),
    (encode("ping", "a", "b"), b"-ERR wrong number of arguments for 'ping' command\r\n", False),
    # empty frames / blank lines are silently ignored
    (b"*0\r\n\r\n*-1\r\nPING\r\n", b"+PONG\r\n", False),
    # pipelined: a good command, then a protocol error -> reply to the first, error, close
    (encode("PING") + b"*1\r\n+x\r\n", b"+PONG\r\n-ERR Protocol error: expected '$', got '+'\r\n", True),
    # inline commands with quotes and escapes
    (b'ECHO "a\\x41\\n"\r\n', b"$3\r\naA\n\r\n", False),
]


SENTINEL = b"sentinel-7f3a9c"
SENTINEL_REPLY = b"$%d\r\n%s\r\n" % (len(SENTINEL), SENTINEL)


def exchange(port, data, timeout=3.0):
    """Send raw bytes followed by ECHO <sentinel>; return (reply bytes, closed_by_server).

    A server that keeps the connection open answers the sentinel, which marks the
    end of the replies to `data` (no sleeping needed); one that closes it never does.
    """
    c = RespConn(port)
    try:
        if len(data) > 65536:
            # an over-long inline request: adding a newline would change its meaning
            c.send_raw(data)
            return c.read_all_until_close(timeout)
        # one write, so a server that closes on an error has read everything (FIN, not RST)
        c.send_raw(data + encode("ECHO", SENTINEL))
        out = b""
        deadline = time.monotonic() + timeout
        c.sock.settimeout(0.1)
        while time.monotonic() < deadline:
            try:
                chunk = c.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return out, True
            if not chunk:
                return out, True
            out += chunk
            if out.endswith(SENTINEL_REPLY):
                return out[: -len(SENTINEL_REPLY)], False
        raise AssertionError(f"neither a reply to the sentinel nor a close within {timeout}s: {out!r}")
    finally:
        c.close()


@pytest.fixture(scope="module")
def pair(damselfly_module, redis_server):
    return damselfly_module("--proactor_threads=2"), redis_server


@pytest.mark.parametrize("data,expected,closes", CASES, ids=[repr(c[0][:24]) for c in CASES])
def test_error_texts_match_redis(pair, data, expected, closes):
    d, r = pair
    r_reply, r_closed = exchange(r.port, data)
    # the harness's expectations are checked against Redis itself first
    assert (r_reply, r_closed) == (expected, closes), "expectation does not match redis-server"
    d_reply, d_closed = exchange(d.port, data)
    assert d_reply == r_reply
    assert d_closed == r_closed, "connection must be closed iff Redis closes it"


def test_connection_survives_command_errors(pair):
    d, r = pair
    for srv in (d, r):
        with srv.raw() as c:
            assert c.call("NOSUCHCMD")[0] == "-"
            assert c.call("GET")[0] == "-"
            assert c.call("PING") == ("+", b"PONG")


def _ping_fresh(port):
    with RespConn(port, timeout=5) as c:
        return c.call("PING")


def test_random_garbage_half_frames_and_many_connections(damselfly):
    srv = damselfly("--proactor_threads=2")
    with srv.raw() as c:
        assert c.call("SET", "precious", "data") == ("+", b"OK")
        assert c.call("MSET", *[x for i in range(50) for x in (f"pk:{i}", f"val{i}")]) == ("+", b"OK")

    rng = random.Random(1234)
    # random garbage on 50 connections
    for i in range(50):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        try:
            head = rng.choice([b"", b"*", b"$", b"*3\r\n", b"*2\r\n$", b"\r\n", b"*1\r\n$5\r\n"])
            s.sendall(head + bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 2048))))
            s.settimeout(0.05)
            try:
                s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                pass
        finally:
            s.close()
    assert srv.alive()
    assert _ping_fresh(srv.port) == ("+", b"PONG")

    # half frames, then disconnect: nothing may be executed
    halves = [encode("SET", "half", "x")[:n] for n in (1, 4, 9, 14, 20, 25)]
    halves += [b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$100\r\n" + b"y" * 50, b'SET half "x']
    for h in halves:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.sendall(h)
        s.close()
    time.sleep(0.2)
    assert srv.alive()
    with srv.raw() as c:
        assert c.call("EXISTS", "half") == (":", 0)

    # 1,000 concurrent connections, each doing PING
    n = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft < want:
        new_soft = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
        if new_soft < want:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} too low for {n} connections")
    socks = []
    try:
        deadline = time.monotonic() + 60
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=10))
            assert time.monotonic() < deadline
        ping = encode("PING")
        for s in socks:
            s.sendall(ping)
        for s in socks:
            buf = b""
            while len(buf) < 7:
                chunk = s.recv(16)
                assert chunk, "server closed a connection"
                buf += chunk
            assert buf == b"+PONG\r\n"
        assert int(srv.info("clients")["connected_clients"]) >= n
    finally:
        for s in socks:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    # afterwards: fresh connections work and earlier data is intact
    assert srv.alive()
    assert _ping_fresh(srv.port) == ("+", b"PONG")
    with srv.raw() as c:
        assert c.call("GET", "precious") == ("$", b"data")
        got = c.call("MGET", *[f"pk:{i}" for i in range(50)])
        assert got == ("*", [("$", f"val{i}".encode()) for i in range(50)])
        assert c.call("DBSIZE") == (":", 51)
