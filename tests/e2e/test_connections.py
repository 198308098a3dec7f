"""10,000 concurrent connections (issue 13 item 5).

One test process opens 10,000 non-blocking sockets (selectors, no threads), each sends PING
(every tenth also a SET and GET of its own key) and must read its own reply; they all stay
connected while INFO's ``connected_clients`` counts them and one more connection is refused
at ``--maxclients`` with Redis's text; then half are reset (RST) and half closed politely,
and the server must go back to one client and keep answering. On io_uring and epoll, with
1, 2 and 4 threads.

Both processes need more than 10,000 descriptors: the test raises its own soft
RLIMIT_NOFILE to the hard limit (the server inherits it) and skips when the hard limit is
too low.
"""

import errno
import resource
import selectors
import socket
import struct
import time

import pytest

from resp import RespConn

N = 10_000
# The control connection (INFO) is the one more that --maxclients admits.
MAXCLIENTS = N + 1


@pytest.fixture
def many_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Ours (N sockets + pytest's) and the server's (N clients + its rings and listeners).
    need = N + 200
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"hard RLIMIT_NOFILE is {hard}, below the {need} descriptors this test needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else need * 2, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def _connect_all(port, n, deadline):
    """n connected non-blocking sockets (connect in flight for all of them at once)."""
    sel = selectors.DefaultSelector()
    socks = []
    pending = 0
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex(("127.0.0.1", port))
        assert err in (0, errno.EINPROGRESS), (i, errno.errorcode.get(err, err))
        socks.append(s)
        sel.register(s, selectors.EVENT_WRITE, i)
        pending += 1
        # Keep the listen backlog from overflowing (SYNs would be retried after 1 s).
        while pending > 1000:
            pending -= _drain_connects(sel, deadline)
    while pending:
        pending -= _drain_connects(sel, deadline)
    sel.close()
    return socks


def _drain_connects(sel, deadline):
    done = 0
    for key, _ in sel.select(timeout=1.0):
        s = key.fileobj
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        assert err == 0, f"connection {key.data} failed: {errno.errorcode.get(err, err)}"
        sel.unregister(s)
        done += 1
    assert time.monotonic() < deadline, "connecting took too long"
    return done


def _exchange_all(socks, requests, expected, deadline):
    """Sends requests[i] on socks[i] and reads exactly expected[i] back, all at once."""
    sel = selectors.DefaultSelector()
    outgoing = {}
    incoming = {}
    for i, s in enumerate(socks):
        outgoing[i] = requests[i]
        incoming[i] = b""
        sel.register(s, selectors.EVENT_WRITE | selectors.EVENT_READ, i)
    remaining = len(socks)
    while remaining:
        assert time.monotonic() < deadline, f"{remaining} connections still waiting for their replies"
        for key, events in sel.select(timeout=1.0):
            i, s = key.data, key.fileobj
            if events & selectors.EVENT_WRITE and outgoing[i]:
                sent = s.send(outgoing[i])
                outgoing[i] = outgoing[i][sent:]
                if not outgoing[i]:
                    sel.modify(s, selectors.EVENT_READ, i)
            if events & selectors.EVENT_READ:
                data = s.recv(4096)
                assert data, f"connection {i} closed by the server ({incoming[i]!r} so far)"
                incoming[i] += data
                assert expected[i].startswith(incoming[i]), (i, incoming[i], expected[i])
                if incoming[i] == expected[i]:
                    sel.unregister(s)
                    remaining -= 1
    sel.close()


def _connected_clients(control):
    reply = control.call("INFO", "clients")
    assert reply[0] == "$", reply
    for line in reply[1].decode().splitlines():
        if line.startswith("connected_clients:"):
            return int(line.split(":", 1)[1])
    raise AssertionError(f"no connected_clients in {reply!r}")


def _wait_clients(control, want, seconds):
    deadline = time.monotonic() + seconds
    while True:
        got = _connected_clients(control)
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


CONFIGS = [
    pytest.param(1, False, id="t1-uring"),
    pytest.param(2, False, id="t2-uring"),
    pytest.param(2, True, id="t2-epoll"),
    pytest.param(4, True, id="t4-epoll"),
]


@pytest.mark.parametrize("threads,epoll", CONFIGS)
def test_ten_thousand_connections(damselfly, many_fds, threads, epoll):
    flags = [f"--proactor_threads={threads}", f"--maxclients={MAXCLIENTS}"]
    if epoll:
        flags.append("--force_epoll")
    srv = damselfly(*flags)
    deadline = time.monotonic() + 40
    control = RespConn(srv.port, timeout=10)
    socks = []
    try:
        socks = _connect_all(srv.port, N, deadline)
        requests, expected = [], []
        for i in range(N):
            if i % 10 == 0:
                value = b"v%d" % i
                requests.append(_encode("PING") + _encode("SET", f"conn:{i}", value) + _encode("GET", f"conn:{i}"))
                expected.append(b"+PONG\r\n+OK\r\n$%d\r\n%s\r\n" % (len(value), value))
            else:
                requests.append(_encode("PING"))
                expected.append(b"+PONG\r\n")
        _exchange_all(socks, requests, expected, deadline)
        assert _wait_clients(control, N + 1, 10) == N + 1

        # One more than --maxclients: Redis's text, then the server closes it.
        with RespConn(srv.port, timeout=10) as extra:
            data, closed = extra.read_all_until_close(timeout=5)
        assert data == b"-ERR max number of clients reached\r\n" and closed, data

        # Every one of them is still served (nothing was dropped while they idled).
        _exchange_all(socks, [_encode("PING")] * N, [b"+PONG\r\n"] * N, deadline)

        # Half reset (SO_LINGER 0 sends RST), half closed politely.
        linger = struct.pack("ii", 1, 0)
        for i, s in enumerate(socks):
            if i % 2 == 0:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            s.close()
        socks = []
        assert _wait_clients(control, 1, 15) == 1
        assert control.call("PING") == ("+", b"PONG")
        assert control.call("GET", "conn:9990") == ("$", b"v9990")
        assert srv.alive()
    finally:
        for s in socks:
            s.close()
        control.close()
