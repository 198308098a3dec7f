"""Redis 7's protected mode (issue 18 §3): with no password, a client that is not on this
machine gets Redis's DENIED text and is closed; loopback clients, a password or
`protected-mode no` let clients in. Compared with redis-server bound the same way."""

import socket
import subprocess

import pytest
import redis

from conftest import Factory


def outside_address():
    """A non-loopback address of this machine (connecting to it is not "local")."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout.split()
    except (OSError, subprocess.SubprocessError):
        out = []
    for a in out:
        if "." in a and not a.startswith("127."):
            return a
    pytest.skip("no non-loopback IPv4 address on this machine")


def first_reply(address, port):
    """What the server says to a new connection before it is asked anything, and
    whether it then closed it."""
    with socket.create_connection((address, port), timeout=5) as s:
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                return data, True
            data += chunk
        try:
            return data, s.recv(4096) == b""
        except ConnectionResetError:
            return data, True


@pytest.fixture
def factory(tmp_path):
    f = Factory(str(tmp_path))
    yield f
    f.close()


def test_outside_clients_are_denied_as_redis_denies_them(factory):
    host = outside_address()
    d = factory.start("--bind=0.0.0.0")
    r = factory.start_redis("--bind", "0.0.0.0")
    got = {name: first_reply(host, s.port) for name, s in (("damselfly", d), ("redis", r))}
    assert got["damselfly"] == got["redis"]
    text, closed = got["damselfly"]
    assert text.startswith(b"-DENIED Redis is running in protected mode") and closed
    # Loopback clients are served; the refusal is counted.
    for s in (d, r):
        c = s.client()
        assert c.ping()
        assert c.info("stats")["rejected_connections"] == 1
    # CONFIG SET protected-mode no (from the loopback) lets outside clients in.
    for s in (d, r):
        s.client().config_set("protected-mode", "no")
        assert redis.Redis(host=host, port=s.port).ping()
        assert s.client().config_get("protected-mode") == {"protected-mode": "no"}


def test_a_password_or_the_flag_lifts_protected_mode(factory):
    host = outside_address()
    d = factory.start("--bind=0.0.0.0", "--requirepass=secret")
    assert redis.Redis(host=host, port=d.port, password="secret").ping()
    e = factory.start("--bind=0.0.0.0", "--protected_mode=false")
    assert redis.Redis(host=host, port=e.port).ping()
    assert e.client().config_get("protected-mode") == {"protected-mode": "no"}
