"""MONITOR, CLIENT REPLY and the reads that leave a key's access time alone, each
compared with redis-server (issue 12: unit/introspection and introspection-2)."""

import re
import socket
import time

import pytest

from resp import RespConn, encode


def _recv_until(sock, done, received=b""):
    """Reads from `sock` until `done(received)`; a close before that fails the test."""
    while not done(received):
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        received += chunk
    return received


def _monitor_lines(server, commands):
    """Starts a MONITOR on a raw socket, runs `commands` (lists of arguments) from a
    second client, and returns the monitor's lines with the timestamp and the client's
    port taken out."""
    mon = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    mon.sendall(b"*1\r\n$7\r\nMONITOR\r\n")
    assert _recv_until(mon, lambda r: r.endswith(b"\r\n")) == b"+OK\r\n"
    with RespConn(server.port, timeout=5) as c:
        for cmd in commands:
            c.call(*cmd)
        c.call("PING", "last")
    received = _recv_until(mon, lambda r: b'"ping" "last"' in r.lower())
    mon.close()
    lines = received.decode("latin-1").split("\r\n")[:-1]
    normalised = []
    for line in lines:
        assert re.match(r"^\+\d+\.\d{6} \[\d+ [^\]]+\] ", line), line
        normalised.append(re.sub(r"^\+\d+\.\d{6} \[(\d+) (127\.0\.0\.1:\d+|lua)\]",
                                 lambda m: f"[{m.group(1)} {'lua' if m.group(2) == 'lua' else 'client'}]", line))
    return normalised


MONITORED = [
    ["SET", "foo", "bar"],
    ["GET", "foo"],
    ["SET", "a b", 'x"y\n\\z\x01\xff'],
    ["EVAL", "redis.call('set', KEYS[1], ARGV[1]) return redis.call('get', KEYS[1])", "1", "k", "v"],
    ["MULTI"], ["SET", "m", "1"], ["INCR", "m"], ["EXEC"],
    ["MULTI"], ["NOSUCHCOMMAND"], ["EXEC"],
    ["CONFIG", "GET", "maxmemory"],          # admin: not reported
    ["SELECT", "3"], ["GET", "k3"], ["SELECT", "0"],
    ["AUTH", "secret"],                      # redacted (and refused: no password set)
    ["AUTH", "user", "secret"],
    ["HELLO", "2", "AUTH", "user", "secret"],
    ["BLPOP", "nokey", "0.01"],
    ["LPUSH", "q", "job"], ["RPOP", "q"],
]


@pytest.mark.parametrize("threads", [1, 2])
def test_monitor_reports_what_redis_reports(damselfly, redis_server, threads):
    d = damselfly(f"--proactor_threads={threads}")
    redis_server.client().flushall()
    d.client().flushall()
    expected = _monitor_lines(redis_server, MONITORED)
    assert any('"(redacted)"' in line for line in expected)
    assert _monitor_lines(d, MONITORED) == expected


def test_monitor_ends_with_reset_and_close(damselfly):
    d = damselfly("--proactor_threads=2")
    mon = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    mon.sendall(b"MONITOR\r\n")
    assert mon.recv(5) == b"+OK\r\n"
    d.client().set("x", "1")
    received = _recv_until(mon, lambda r: b'"set" "x" "1"' in r.lower())
    mon.sendall(b"RESET\r\n")  # leaves MONITOR mode
    _recv_until(mon, lambda r: b"+RESET\r\n" in r, received)
    d.client().set("after", "reset")
    mon.sendall(b"PING\r\n")
    tail = _recv_until(mon, lambda r: r.endswith(b"+PONG\r\n"))
    assert b"after" not in tail
    mon.close()
    for _ in range(50):  # the server forgets the closed monitor; commands keep working
        assert d.client().set("y", "2")
    info = d.client().info("clients")
    assert info["connected_clients"] >= 1


def _client_reply_exchange(server):
    """CLIENT REPLY OFF / SKIP / ON on one connection, as unit/introspection drives them:
    the bytes the client receives."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    cmd = encode
    s.sendall(cmd("CLIENT", "REPLY", "OFF") + cmd("SET", "a", "1") + cmd("GET", "a") + cmd("NOSUCH")
              + cmd("CLIENT", "REPLY", "ON") + cmd("GET", "a")
              + cmd("CLIENT", "REPLY", "SKIP") + cmd("SET", "b", "2") + cmd("GET", "b")
              + cmd("CLIENT", "REPLY", "SKIP") + cmd("CLIENT", "REPLY", "ON") + cmd("PING")
              + cmd("CLIENT", "REPLY", "SKIP") + cmd("BLPOP", "nolist", "0.05") + cmd("ECHO", "end"))
    received = _recv_until(s, lambda r: r.endswith(b"$3\r\nend\r\n"))
    s.close()
    return received


def test_client_reply_off_skip_on(damselfly, redis_server):
    d = damselfly("--proactor_threads=2")
    expected = _client_reply_exchange(redis_server)
    assert expected == b"+OK\r\n$1\r\n1\r\n$1\r\n2\r\n+OK\r\n+PONG\r\n$3\r\nend\r\n"
    assert _client_reply_exchange(d) == expected


def test_ttl_type_exists_leave_the_access_time_alone(damselfly, redis_server):
    # unit/introspection-2 "TTL, TYPE and EXISTS do not alter the last access time of a key"
    d = damselfly()
    clients = [redis_server.client(), d.client()]
    for c in clients:
        c.set("idle", "v")
        c.set("touched", "v")
    time.sleep(2.1)
    got = []
    for c in clients:
        c.ttl("idle"), c.type("idle"), c.exists("idle"), c.pttl("idle")
        c.get("touched")
        got.append((c.object("idletime", "idle") >= 2, c.object("idletime", "touched")))
    assert got[0] == (True, 0)
    assert got[1] == got[0]


def _pubsub_under_reply_off(server, proto):
    """unit/pubsub "PubSub messages with CLIENT REPLY OFF": confirmations and messages are
    pushes and still arrive."""
    import redis
    s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    s.sendall(b"HELLO %d\r\n" % proto)
    time.sleep(0.2)
    s.recv(65536)
    s.sendall(b"CLIENT REPLY OFF\r\nSUBSCRIBE channel\r\nPSUBSCRIBE ch*\r\n")
    time.sleep(0.2)
    redis.Redis(port=server.port).publish("channel", "hello")
    s.sendall(b"UNSUBSCRIBE channel\r\nPUNSUBSCRIBE ch*\r\nECHO x\r\nCLIENT REPLY ON\r\nECHO end\r\n")
    received = _recv_until(s, lambda r: r.endswith(b"$3\r\nend\r\n"))
    s.close()
    return received


@pytest.mark.parametrize("proto", [2, 3])
def test_pubsub_pushes_arrive_under_client_reply_off(damselfly, redis_server, proto):
    d = damselfly("--proactor_threads=2")
    expected = _pubsub_under_reply_off(redis_server, proto)
    assert b"hello" in expected
    assert _pubsub_under_reply_off(d, proto) == expected


def _kill_by_type(server):
    """CLIENT KILL TYPE against one subscriber and one plain client, from a third."""
    import redis
    out = []
    for kind in ["master", "replica", "pubsub", "normal"]:
        sub = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sub.sendall(b"SUBSCRIBE ch\r\n")
        sub.recv(4096)
        plain = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        plain.sendall(b"PING\r\n")
        plain.recv(4096)
        c = redis.Redis(port=server.port)
        out.append((kind, c.execute_command("CLIENT", "KILL", "TYPE", kind)))
        for s in (sub, plain):
            s.sendall(b"PING\r\n")
            try:
                out.append(bool(s.recv(4096)))
            except OSError:
                out.append(False)
            s.close()
        c.close()
    for bad in (["CLIENT", "KILL"], ["CLIENT", "KILL", "TYPE", "wrong"], ["CLIENT", "KILL", "MAXAGE", "10"]):
        try:
            redis.Redis(port=server.port).execute_command(*bad)
        except redis.ResponseError as e:
            out.append(str(e))
    return out


def test_client_kill_by_type(damselfly, redis_server):
    # CLIENT KILL TYPE was accepted and ignored: TYPE normal killed every client.
    d = damselfly("--proactor_threads=2")
    expected = _kill_by_type(redis_server)
    assert ("pubsub", 1) in expected and ("normal", 1) in expected
    assert _kill_by_type(d) == expected
