"""Replication settings that change what happens to a link, each checked
against a redis-server 7.0 doing the same: `repl-timeout` on both sides,
`repl-backlog-ttl`, `client-output-buffer-limit replica`, and `--replicaof`
with CONFIG REWRITE (a replica that restarts from its rewritten flagfile is a
replica again).

A stalled peer is made with SIGSTOP (its sockets stay open and the kernel
keeps accepting for it, as with a hung process), and resumed with SIGCONT.
"""
import contextlib
import os
import signal
import socket
import time

import pytest

from conftest import Factory, _failed, free_port
from test_replication import assert_same_dataset, repl_info, stats, wait_for, wait_in_sync


@pytest.fixture
def servers(request, tmp_path):
    f = Factory(str(tmp_path))
    yield f
    f.close(failed=_failed(request.node))


def start_master(servers, kind):
    if kind == "redis":
        return servers.start_redis("--repl-diskless-sync-delay", "0")
    return servers.start("--proactor_threads=2")


@contextlib.contextmanager
def stopped(server):
    """The process frozen (SIGSTOP) for the block, then resumed."""
    server.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.proc.send_signal(signal.SIGCONT)


def log_text(server):
    with open(server.logpath, "rb") as f:
        return f.read().decode(errors="replace")


def read_reply_line(sock, buf):
    while b"\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "connection closed during the handshake"
        buf += chunk
    line, _, rest = buf.partition(b"\r\n")
    return line.lstrip(b"\n"), rest  # Redis's keep-alive newlines come without \r


def silent_replica_lifetime(port):
    """A hand-made replica: PSYNC, read the RDB, then never ACK. Returns how
    long the master keeps it after the RDB (None: still connected at 12 s)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(10)
    s.sendall(b"REPLCONF listening-port 1\r\n")
    line, buf = read_reply_line(s, b"")
    assert line == b"+OK"
    s.sendall(b"PSYNC ? -1\r\n")
    line, buf = read_reply_line(s, buf)
    assert line.startswith(b"+FULLRESYNC"), line
    line, buf = b"", buf
    while not line:  # newlines while the RDB is prepared
        line, buf = read_reply_line(s, buf)
    assert line.startswith(b"$") and not line.startswith(b"$EOF"), line
    left = int(line[1:]) - len(buf)
    while left > 0:
        chunk = s.recv(65536)
        assert chunk
        left -= len(chunk)
    online = time.time()
    s.settimeout(0.2)
    try:
        while time.time() - online < 12:
            try:
                if not s.recv(65536):
                    return time.time() - online
            except socket.timeout:
                pass
            except ConnectionResetError:
                return time.time() - online
        return None
    finally:
        s.close()


@pytest.mark.parametrize("kind", ["redis", "damselfly"])
def test_master_drops_replica_silent_past_repl_timeout(servers, kind):
    master = start_master(servers, kind)
    m = master.client()
    m.config_set("repl-timeout", 2)
    m.set("k", "v")
    lifetime = silent_replica_lifetime(master.port)
    assert lifetime is not None and 1.5 <= lifetime <= 6, lifetime
    wait_for(lambda: repl_info(m)["connected_slaves"] == 0, what="the silent replica to be gone")
    assert "Disconnecting timedout replica (streaming sync)" in log_text(master)


@pytest.mark.parametrize("kind", ["redis", "damselfly"])
def test_replica_drops_master_silent_past_repl_timeout(servers, kind):
    master = servers.start_redis("--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1")
    m = master.client()
    replica = (servers.start_redis("--replicaof", "127.0.0.1", str(master.port))
               if kind == "redis" else servers.start("--proactor_threads=2"))
    r = replica.client()
    r.config_set("repl-timeout", 2)
    if kind == "damselfly":
        assert r.execute_command("REPLICAOF", "127.0.0.1", master.port) == b"OK"
    m.set("k", "v")
    wait_in_sync(m, r)
    # Pinged every second, the link outlives its 2 s timeout.
    time.sleep(3)
    assert repl_info(r)["master_link_status"] == "up"
    with stopped(master):
        t0 = time.time()
        wait_for(lambda: repl_info(r)["master_link_status"] == "down", timeout=10, what="the link to time out")
        # Counted from the master's last PING, up to a second before the stop.
        assert 0.5 <= time.time() - t0 <= 6
    assert "MASTER timeout: no data nor PING received" in log_text(replica)
    # The master back, the link comes back and continues where it stood.
    m.set("k2", "v2")
    wait_in_sync(m, r)
    assert r.get("k2") == b"v2"
    assert stats(m)["sync_full"] == 1 and stats(m)["sync_partial_ok"] >= 1


def backlog_ttl_outcome(servers, kind):
    master = start_master(servers, kind)
    m = master.client()
    m.config_set("repl-backlog-ttl", 1)
    replica = servers.start_redis("--replicaof", "127.0.0.1", str(master.port))
    r = replica.client()
    m.mset({f"k{i}": i for i in range(100)})
    wait_in_sync(m, r)
    before = repl_info(m)
    assert before["repl_backlog_active"] == 1
    # Pointed at a port nobody listens on, the replica keeps its history (its cached master).
    r.replicaof("127.0.0.1", free_port())
    wait_for(lambda: repl_info(m)["connected_slaves"] == 0, what="the replica to leave")
    wait_for(lambda: repl_info(m)["repl_backlog_active"] == 0, timeout=8, what="the backlog to be freed")
    freed = repl_info(m)
    assert freed["master_replid"] != before["master_replid"]
    assert freed["master_replid2"] in (0, "0" * 40)  # redis-py reads forty zeros as 0
    assert freed["repl_backlog_histlen"] == 0
    assert "Replication backlog freed after 1 seconds without connected replicas." in log_text(master)
    m.set("after", 1)
    r.replicaof("127.0.0.1", master.port)
    wait_in_sync(m, r)
    assert repl_info(m)["repl_backlog_active"] == 1
    assert_same_dataset(m, r)
    st = stats(m)
    return st["sync_full"], st["sync_partial_ok"], st["sync_partial_err"]


def test_backlog_ttl_frees_backlog_as_redis(servers):
    """Without the TTL the returning replica would continue (+CONTINUE); with
    its backlog freed and a new ID, the master answers with a full sync."""
    expected = backlog_ttl_outcome(servers, "redis")
    assert expected == (2, 0, 1)
    assert backlog_ttl_outcome(servers, "damselfly") == expected


def output_limit_outcome(servers, kind):
    master = start_master(servers, kind)
    m = master.client()
    m.config_set("client-output-buffer-limit", "replica 1mb 512kb 60")
    m.config_set("repl-backlog-size", "64kb")
    replica = servers.start_redis("--replicaof", "127.0.0.1", str(master.port))
    r = replica.client()
    m.set("k", "v")
    wait_in_sync(m, r)
    value = b"x" * 65536
    with stopped(replica):
        # Far more than the socket buffers hold: the stream piles up on the master.
        p = m.pipeline(transaction=False)
        for i in range(600):
            p.set(f"big:{i % 50}", value + str(i).encode())
        p.execute()
        wait_for(lambda: repl_info(m)["connected_slaves"] == 0, timeout=10, what="the replica to be dropped")
    assert "scheduled to be closed ASAP for overcoming of output buffer limits" in log_text(master)
    wait_in_sync(m, r)
    assert_same_dataset(m, r)
    st = stats(m)
    return st["sync_full"]


def test_replica_output_buffer_limit_as_redis(servers):
    """A stalled replica whose stream passes the hard limit is dropped; it comes
    back with a full sync (the 64 kB backlog no longer holds its offset)."""
    expected = output_limit_outcome(servers, "redis")
    assert expected == 2
    assert output_limit_outcome(servers, "damselfly") == expected


def test_replicaof_flag_both_forms(servers):
    master = servers.start("--proactor_threads=2")
    m = master.client()
    m.mset({"a": 1, "b": 2})
    real = servers.start_redis("--replicaof", "127.0.0.1", str(master.port))
    colon = servers.start("--proactor_threads=2", f"--replicaof=127.0.0.1:{master.port}")
    spaced = servers.start("--proactor_threads=2", "--replicaof", f"127.0.0.1 {master.port}")
    for replica in (real, colon, spaced):
        wait_in_sync(m, replica.client())
        assert replica.client().get("b") == b"2"
        assert replica.client().config_get("replicaof") == {"replicaof": f"127.0.0.1 {master.port}"}
        assert replica.client().config_get("slaveof") == {"slaveof": f"127.0.0.1 {master.port}"}
    # A master shows it empty, as redis-server does.
    assert m.config_get("replicaof") == {"replicaof": ""}
    assert stats(m)["sync_full"] == 3


def test_config_rewrite_keeps_replicaof(servers, tmp_path):
    """What Sentinel does to a replica (REPLICAOF, CONFIG REWRITE) survives a restart."""
    master = servers.start("--proactor_threads=2")
    m = master.client()
    m.set("k", "v")
    flagfile = tmp_path / "replica.flags"
    flagfile.write_text("--hz=10\n")
    replica = servers.start("--proactor_threads=2", f"--flagfile={flagfile}")
    r = replica.client()
    assert r.execute_command("REPLICAOF", "127.0.0.1", master.port) == b"OK"
    assert r.config_rewrite()
    assert f"--replicaof=127.0.0.1:{master.port}\n" in flagfile.read_text()
    replica.stop()
    again = servers.start("--proactor_threads=2", f"--flagfile={flagfile}")
    a = again.client()
    m.set("k2", "v2")
    wait_in_sync(m, a)
    assert a.execute_command("ROLE")[0] == b"slave" and a.get("k2") == b"v2"
    assert a.execute_command("REPLICAOF", "NO", "ONE") == b"OK"
    assert a.config_rewrite()
    assert "--replicaof=\n" in flagfile.read_text()
    again.stop()
    third = servers.start("--proactor_threads=2", f"--flagfile={flagfile}")
    assert third.client().execute_command("ROLE")[0] == b"master"


def test_replicaof_flag_rejects_a_bad_master(tmp_path):
    from conftest import DAMSELFLY_BIN, binary_present
    if not binary_present():
        pytest.skip("no binary")
    import subprocess
    out = subprocess.run([DAMSELFLY_BIN, "--replicaof=nohostport", f"--dir={tmp_path}"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "replicaof" in out.stdout + out.stderr


def raw_full_sync_header(port, capa_eof=True):
    """PSYNC ? -1 by hand: the +FULLRESYNC line and the RDB's header line."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(15)
    buf = b""
    if capa_eof:
        s.sendall(b"REPLCONF capa eof capa psync2\r\n")
        line, buf = read_reply_line(s, buf)
        assert line == b"+OK"
    s.sendall(b"PSYNC ? -1\r\n")
    line = b""
    while not line:  # Redis sends newlines while a replica waits for its snapshot
        line, buf = read_reply_line(s, buf)
    header = b""
    while not header:
        header, buf = read_reply_line(s, buf)
    return s, line, header, buf


@pytest.mark.parametrize("kind", ["redis", "damselfly"])
def test_disk_sync_goes_through_the_dump_file(servers, kind):
    """repl-diskless-sync no: the RDB is saved to dir/dbfilename and sent with its
    length even to a replica that takes EOF-marked payloads; yes: EOF-marked."""
    master = start_master(servers, kind)
    m = master.client()
    m.mset({f"k{i}": i for i in range(1000)})
    dump = os.path.join(master.workdir, "dump.rdb")
    assert not os.path.exists(dump)
    s, line, header, _ = raw_full_sync_header(master.port)
    s.close()
    assert line.startswith(b"+FULLRESYNC") and header.startswith(b"$EOF:")
    m.config_set("repl-diskless-sync", "no")
    s, line, header, buf = raw_full_sync_header(master.port)
    try:
        assert line.startswith(b"+FULLRESYNC") and header.startswith(b"$") and not header.startswith(b"$EOF")
        length = int(header[1:])
        while len(buf) < length:
            chunk = s.recv(1 << 16)
            assert chunk
            buf += chunk
        assert buf[:5] == b"REDIS"
        wait_for(lambda: os.path.exists(dump), what="the dump file")
        with open(dump, "rb") as f:
            assert f.read() == buf[:length]
    finally:
        s.close()


@pytest.mark.parametrize("kind", ["redis", "damselfly"])
def test_diskless_sync_delay_shares_one_snapshot(servers, kind):
    """Two replicas within repl-diskless-sync-delay get one snapshot: the same
    +FULLRESYNC offset although writes went on between their PSYNCs."""
    master = start_master(servers, kind)
    m = master.client()
    # Redis counts the delay in whole seconds of the replicas' idle time: 2 leaves at least one.
    m.config_set("repl-diskless-sync-delay", 2)
    m.config_set("repl-ping-replica-period", 3600)
    m.set("k", 0)
    def psync():
        s = socket.create_connection(("127.0.0.1", master.port))
        s.settimeout(15)
        s.sendall(b"REPLCONF capa eof capa psync2\r\n")
        ok, buf = read_reply_line(s, b"")
        assert ok == b"+OK"
        s.sendall(b"PSYNC ? -1\r\n")
        return s, buf

    first = psync()
    time.sleep(0.1)
    for i in range(50):
        m.incr("k")
    second = psync()
    lines = []
    for s, buf in (first, second):
        line = b""
        while not line:
            line, buf = read_reply_line(s, buf)
        lines.append(line)
        s.close()
    assert lines[0].startswith(b"+FULLRESYNC") and lines[0] == lines[1]
    assert stats(m)["sync_full"] == 2


@pytest.mark.parametrize("mode", ["disabled", "on-empty-db", "swapdb"])
def test_repl_diskless_load_modes(servers, mode):
    """repl-diskless-load on a Damselfly replica: `disabled` takes the RDB
    through a temporary file in dir (removed after loading), `swapdb` and
    `on-empty-db` on an empty replica load straight from the socket."""
    master = servers.start_redis("--repl-diskless-sync-delay", "0")
    m = master.client()
    # More keys than one load batch (16,384), checked with MGET rather than key by key.
    keys = [f"k{i}" for i in range(40000)]
    for i in range(0, len(keys), 5000):
        m.mset({k: k[::-1] for k in keys[i:i + 5000]})
    m.hset("h", mapping={f"f{i}": i for i in range(500)})
    m.rpush("l", *range(300))
    m.set("ttl", 1, ex=1000)
    replica = servers.start("--proactor_threads=2")
    r = replica.client()
    r.config_set("repl-diskless-load", mode)
    assert r.execute_command("REPLICAOF", "127.0.0.1", master.port) == b"OK"
    wait_in_sync(m, r)
    assert r.dbsize() == m.dbsize() == 40003
    for i in range(0, len(keys), 5000):
        assert r.mget(keys[i:i + 5000]) == m.mget(keys[i:i + 5000])
    assert r.hgetall("h") == m.hgetall("h") and r.lrange("l", 0, -1) == m.lrange("l", 0, -1)
    assert r.pexpiretime("ttl") == m.pexpiretime("ttl")
    text = log_text(replica)
    if mode == "disabled":
        assert "receiving the RDB to disk (" in text
    else:
        assert "receiving the RDB to memory" in text
    assert not [f for f in os.listdir(replica.workdir) if f.startswith("temp-")]
