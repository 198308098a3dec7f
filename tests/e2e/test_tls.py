"""TLS (issue 18): Redis's `tls-port` model (`--tls_port` beside the plain port) and
Dragonfly's `--tls` (the client port itself), over OpenSSL with memory BIOs so the loops
keep doing the I/O. Certificates are made per session with the `openssl` tool; the same
clients are tried against redis-server 7.0.15 configured alike, which must accept and
refuse exactly the same ones."""

import os
import socket
import ssl
import subprocess
import threading
import time

import pytest
import redis

from conftest import DAMSELFLY_BIN, free_port
from util import require_tool


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    require_tool("openssl")
    d = tmp_path_factory.mktemp("certs")
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
                 "-days", "2", "-subj", f"/CN=Damselfly test {ca}", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ca, ext in (("server", "ca", ["-extfile", "server.ext"]), ("client", "ca", []), ("stranger", "other-ca", [])):
        _openssl("req", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", *ext, cwd=d)
    return d


def server_tls_flags(certs, auth="yes"):
    return [f"--tls_cert_file={certs / 'server.crt'}", f"--tls_key_file={certs / 'server.key'}",
            f"--tls_ca_cert_file={certs / 'ca.crt'}", f"--tls_auth_clients={auth}"]


def redis_tls_args(certs, port, auth="yes"):
    return ["--tls-port", str(port), "--tls-cert-file", str(certs / "server.crt"), "--tls-key-file",
            str(certs / "server.key"), "--tls-ca-cert-file", str(certs / "ca.crt"), "--tls-auth-clients", auth]


def tls_client(port, certs, cert="client", **kw):
    extra = {"ssl_certfile": str(certs / f"{cert}.crt"), "ssl_keyfile": str(certs / f"{cert}.key")} if cert else {}
    return redis.Redis(port=port, ssl=True, ssl_ca_certs=str(certs / "ca.crt"), socket_timeout=15, **extra, **kw)


def can_talk(port, certs, cert):
    """Whether a TLS client with `cert` (None: no client certificate) gets PONG."""
    c = tls_client(port, certs, cert)
    try:
        return c.ping()
    except (redis.ConnectionError, ssl.SSLError, OSError):
        return False
    finally:
        c.close()


@pytest.mark.parametrize("engine", ["io_uring", "epoll"])
def test_tls_port_serves_every_kind_of_traffic(damselfly, certs, engine):
    tls_port = free_port()
    d = damselfly("--proactor_threads=2", f"--tls_port={tls_port}", *server_tls_flags(certs),
                  *(["--force_epoll"] if engine == "epoll" else []))
    plain = d.client()
    c = tls_client(tls_port, certs)
    assert c.ping()
    # Values larger than a TLS record (16 KiB) in both directions, and many records in one write.
    big = os.urandom(1 << 20)
    assert c.set("big", big)
    assert plain.get("big") == big and c.get("big") == big
    p = c.pipeline(transaction=False)
    for i in range(2000):
        p.set(f"k{i}", i)
        p.incr(f"k{i}")
    replies = p.execute()
    assert replies[0::2] == [True] * 2000 and replies[1::2] == [i + 1 for i in range(2000)]
    assert [int(v) for v in c.mget([f"k{i}" for i in range(2000)])] == [i + 1 for i in range(2000)]
    # MULTI/EXEC over keys of both shards.
    t = c.pipeline(transaction=True)
    t.set("a", 1).set("b", 2).set("c", 3).mget("a", "b", "c")
    assert t.execute()[-1] == [b"1", b"2", b"3"]
    # A blocking pop on TLS served by a plain client's push, and pub/sub the other way.
    got = []
    waiter = threading.Thread(target=lambda: got.append(tls_client(tls_port, certs).blpop("q", timeout=10)))
    waiter.start()
    deadline = time.monotonic() + 10
    while plain.info("clients")["blocked_clients"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    plain.rpush("q", "job")
    waiter.join()
    assert got == [(b"q", b"job")]
    sub = tls_client(tls_port, certs).pubsub()
    sub.subscribe("news")
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    plain.publish("news", "hello")
    msg = sub.get_message(timeout=5)
    assert msg and msg["data"] == b"hello"
    sub.close()
    # RESP3 over TLS.
    r3 = tls_client(tls_port, certs, protocol=3)
    assert r3.hset("h", mapping={"f": "v"}) == 1 and r3.hgetall("h") == {b"f": b"v"}
    # The plain port is still plain, and plaintext on the TLS port is not served.
    assert plain.ping()
    with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as s:
        s.sendall(b"PING\r\n")
        s.settimeout(5)
        try:
            data = s.recv(100)
        except (ConnectionResetError, socket.timeout):
            data = b""
        assert b"PONG" not in data
    assert c.dbsize() == plain.dbsize() > 2000
    # /metrics over HTTPS on the TLS port.
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    ctx.load_cert_chain(str(certs / "client.crt"), str(certs / "client.key"))
    with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        body = b""
        while chunk := s.recv(65536):
            body += chunk
    assert body.startswith(b"HTTP/1.1 200 OK") and b"damselfly_connected_clients" in body


@pytest.mark.parametrize("auth", ["yes", "optional", "no"])
def test_client_certificates_are_checked_as_redis_checks_them(damselfly, certs, auth):
    """The same clients against Damselfly and redis-server, both with `tls-auth-clients
    <auth>`: a certificate from the trusted CA, none, and one from another CA."""
    tls_port = free_port()
    damselfly("--proactor_threads=2", f"--tls_port={tls_port}", *server_tls_flags(certs, auth))
    redis_port = free_port()
    r = subprocess.Popen(["redis-server", "--port", "0", "--save", "", "--appendonly", "no",
                          "--dir", str(certs), *redis_tls_args(certs, redis_port, auth)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not can_talk(redis_port, certs, "client"):
            assert time.monotonic() < deadline, "redis-server with TLS did not start"
            time.sleep(0.1)
        outcomes = {}
        for cert in ("client", None, "stranger"):
            outcomes[cert] = (can_talk(tls_port, certs, cert), can_talk(redis_port, certs, cert))
        assert all(ours == theirs for ours, theirs in outcomes.values()), outcomes
        assert outcomes["client"] == (True, True)
        assert outcomes[None][0] == (auth != "yes")
        assert outcomes["stranger"][0] == (auth == "no")
    finally:
        r.terminate()
        r.wait(timeout=10)


def test_tls_on_the_client_port_and_config_get(certs, tmp_path):
    """Dragonfly's `--tls`: the client port itself speaks TLS (here without client
    certificates); CONFIG GET shows Redis's tls-* parameters; the TLS port is fixed."""
    port = free_port()
    proc = subprocess.Popen([DAMSELFLY_BIN, f"--port={port}", "--bind=127.0.0.1", f"--dir={tmp_path}", "--tls",
                             *server_tls_flags(certs, "no")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not can_talk(port, certs, None):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        c = tls_client(port, certs, None)
        cfg = c.config_get("tls-*")
        assert cfg["tls-auth-clients"] == "no" and cfg["tls-cert-file"] == str(certs / "server.crt")
        with pytest.raises(redis.ResponseError):
            c.config_set("tls-port", str(port + 1))  # the port is fixed at start-up
        out = subprocess.run(["redis-cli", "-p", str(port), "--tls", "--cacert", str(certs / "ca.crt"), "SET", "x", "1"],
                             capture_output=True, text=True, timeout=20)
        assert out.stdout.strip() == "OK", out.stderr
        assert c.get("x") == b"1"
        c.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_bad_tls_settings_stop_the_start(certs, tmp_path):
    for flags, words in (
        ([f"--tls_cert_file={certs / 'server.crt'}", f"--tls_key_file={tmp_path / 'missing.key'}"], "private key"),
        ([f"--tls_cert_file={certs / 'server.crt'}", f"--tls_key_file={certs / 'client.key'}"], "mismatch"),
        ([f"--tls_cert_file={certs / 'server.crt'}", f"--tls_key_file={certs / 'server.key'}"], "tls_ca_cert_file"),
        ([*server_tls_flags(certs), "--tls_protocols=SSLv3"], "tls-protocols"),
    ):
        out = subprocess.run([DAMSELFLY_BIN, f"--port={free_port()}", f"--tls_port={free_port()}", f"--dir={tmp_path}",
                              *flags], capture_output=True, text=True, timeout=30)
        assert out.returncode != 0 and "cannot set up TLS" in out.stderr and words in out.stderr, out.stderr


def test_a_redis_replica_syncs_over_tls(damselfly, redis_server_factory_tls, certs):
    """redis-server with `tls-replication yes` replicates from Damselfly's TLS port: the
    full sync (RDB) and the stream after it both travel encrypted."""
    tls_port = free_port()
    d = damselfly("--proactor_threads=2", f"--tls_port={tls_port}", *server_tls_flags(certs))
    m = d.client()
    m.mset({f"pre:{i}": i for i in range(2000)})
    m.rpush("q", *range(100))
    replica = redis_server_factory_tls(
        "--tls-replication", "yes", "--tls-cert-file", str(certs / "client.crt"), "--tls-key-file",
        str(certs / "client.key"), "--tls-ca-cert-file", str(certs / "ca.crt"),
        "--replicaof", "127.0.0.1", str(tls_port))
    r = replica.client()
    for i in range(500):
        m.set(f"live:{i}", i)
    m.hset("h", mapping={"a": 1, "b": 2})
    deadline = time.monotonic() + 30
    while True:
        info = r.info("replication")
        if info.get("master_link_status") == "up" and r.dbsize() == m.dbsize() and r.exists("h"):
            break
        assert time.monotonic() < deadline, (info, r.dbsize(), m.dbsize())
        time.sleep(0.1)
    assert r.get("pre:1999") == b"1999" and r.get("live:499") == b"499"
    assert r.lrange("q", 0, -1) == m.lrange("q", 0, -1) and r.hgetall("h") == {b"a": b"1", b"b": b"2"}
    assert m.info("replication")["connected_slaves"] == 1


@pytest.fixture
def redis_server_factory_tls(tmp_path):
    from conftest import Factory
    f = Factory(str(tmp_path))
    yield f.start_redis
    f.close()


def test_the_job_runner_speaks_rediss(damselfly, certs, tmp_path):
    """`damselfly-jobs` over `rediss://` (redis-py's query parameters name the CA and the
    client certificate): jobs pushed and worked over TLS; without the client certificate
    the server refuses the runner, as it refuses any client."""
    from test_jobs_interop import JOBS_BIN, Proc, _jobs_bin_or_skip, wait_for

    _jobs_bin_or_skip()
    tls_port = free_port()
    d = damselfly("--proactor_threads=2", f"--tls_port={tls_port}", *server_tls_flags(certs))
    url = (f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={certs / 'ca.crt'}"
           f"&ssl_certfile={certs / 'client.crt'}&ssl_keyfile={certs / 'client.key'}")
    out = subprocess.run([JOBS_BIN, "push", "--url", url, "--class", "NoopJob", "--count", "25"],
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr.decode()
    plain = d.client()
    assert plain.llen("queue:default") == 25
    w = Proc([JOBS_BIN, "work", "--url", url, "-q", "default"], str(tmp_path / "worker.log"))
    try:
        wait_for(lambda: plain.get("stat:processed") == b"25", 30, "25 jobs processed over TLS", [w])
    finally:
        w.stop()
    refused = subprocess.run([JOBS_BIN, "stats", "--url", f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={certs / 'ca.crt'}"],
                             capture_output=True, timeout=30)
    assert refused.returncode != 0


def test_config_set_remakes_the_tls_context(damselfly, certs, tmp_path):
    """CONFIG SET tls-* applies to new TLS clients at once (Redis remakes its context the
    same way); a setting the context cannot be made from changes nothing and answers Redis's
    error (an encrypted key without its passphrase)."""
    tls_port = free_port()
    d = damselfly("--proactor_threads=2", f"--tls_port={tls_port}", *server_tls_flags(certs))
    c = d.client()
    assert not can_talk(tls_port, certs, None)
    assert c.config_set("tls-auth-clients", "no")
    assert can_talk(tls_port, certs, None)
    assert c.config_set("tls-auth-clients", "optional") and can_talk(tls_port, certs, None)
    assert not can_talk(tls_port, certs, "stranger")
    assert c.config_set("tls-auth-clients", "yes") and not can_talk(tls_port, certs, None)
    encrypted = tmp_path / "server.key.encrypted"
    _openssl("rsa", "-in", str(certs / "server.key"), "-out", str(encrypted), "-aes256", "-passout", "pass:1234",
             cwd=tmp_path)
    with pytest.raises(redis.ResponseError) as e:
        c.config_set("tls-key-file", str(encrypted))
    # Redis 7.0's text (config.c, applyTlsCfg), as unit/tls expects it.
    assert str(e.value) == ("CONFIG SET failed (possibly related to argument 'tls-key-file') - "
                            "Unable to update TLS configuration. Check server logs.")
    assert c.config_get("tls-key-file")["tls-key-file"] == str(certs / "server.key")
    assert can_talk(tls_port, certs, "client")
    assert c.config_set("tls-key-file-pass", "1234") and c.config_set("tls-key-file", str(encrypted))
    assert can_talk(tls_port, certs, "client")
    with pytest.raises(redis.ResponseError):
        c.config_set("tls-auth-clients", "maybe")
