"""Prometheus /metrics on the main port (issue 19 §1): recognised by its first bytes,
answered from the same counters INFO reads, valid for promtool, and RESP unaffected."""

import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
import redis
from util import require_tool


def scrape(port, path="/metrics"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


def samples(text):
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_during_a_load_agree_with_info(damselfly):
    d = damselfly("--proactor_threads=2")
    c = d.client()
    stop = threading.Event()

    def load():
        w = d.client()
        i = 0
        while not stop.is_set():
            w.set(f"k{i % 500}", i)
            w.lpush("q", i)
            w.rpop("q")
            i += 1

    workers = [threading.Thread(target=load) for _ in range(2)]
    for w in workers:
        w.start()
    try:
        deadline = time.monotonic() + 10
        while not c.info("commandstats").get("cmdstat_set"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        seen = []
        for _ in range(5):
            status, ctype, body = scrape(d.port)
            assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
            seen.append(samples(body))
            time.sleep(0.1)
    finally:
        stop.set()
        for w in workers:
            w.join()
    # Counters only grow between scrapes taken during the load.
    calls = [s['damselfly_commands_total{cmd="set"}'] for s in seen]
    assert calls == sorted(calls) and calls[-1] > calls[0] > 0
    # Quiet now: a scrape and INFO agree.
    info = c.info("all")
    s = samples(scrape(d.port)[2])
    assert s['damselfly_db_keys{db="0"}'] == info["db0"]["keys"] == c.dbsize()
    assert s['damselfly_commands_total{cmd="set"}'] == info["cmdstat_set"]["calls"]
    assert s['damselfly_commands_total{cmd="lpush"}'] == info["cmdstat_lpush"]["calls"]
    assert s["damselfly_connected_clients"] >= 1  # the scrape's own connection counts too
    assert s["damselfly_memory_used_bytes"] > 0
    assert s['damselfly_tx_type_total{type="quick"}'] + s['damselfly_tx_type_total{type="inline"}'] > 0
    # INFO counts its own call: the scrape itself is not a command.
    assert s["damselfly_commands_processed_total"] == info["total_commands_processed"] + 1


def test_promtool_accepts_the_exposition(damselfly):
    promtool = require_tool("promtool", "prometheus")
    d = damselfly()
    c = d.client()
    c.set("a", 1)
    c.expire("a", 100)
    d.client(db=3).hset("h", "f", "v")
    try:
        c.execute_command("NOSUCH")
    except redis.ResponseError:
        pass
    body = scrape(d.port)[2]
    errors = c.info("errorstats")["errorstat_ERR"]["count"]
    assert 'damselfly_db_keys{db="3"} 1' in body
    assert f'damselfly_errors_total{{prefix="ERR"}} {errors}' in body
    check = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0 and check.stdout.strip() == "" and check.stderr.strip() == "", check.stdout + check.stderr


def test_other_paths_and_resp_clients_are_unaffected(damselfly):
    d = damselfly()
    with pytest.raises(urllib.error.HTTPError) as e:
        scrape(d.port, "/nope")
    assert e.value.code == 404
    c = d.client()
    # An inline GET of a key that looks like a path stays a command.
    with socket.create_connection(("127.0.0.1", d.port)) as s:
        c.set("/metrics", "v")
        s.sendall(b"GET /metrics\r\n")
        assert s.recv(100) == b"$1\r\nv\r\n"
    # A request split over several packets is still one request.
    with socket.create_connection(("127.0.0.1", d.port)) as s:
        for part in (b"GE", b"T /met", b"rics HTTP/1.1\r\nHost: x\r\n", b"\r\n"):
            s.sendall(part)
            time.sleep(0.05)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"damselfly_connected_clients" in data
    assert c.ping()


def test_admin_port_serves_resp_and_metrics_past_maxclients(damselfly):
    """`--admin_port` (Dragonfly's flag): the same RESP and /metrics as the client port, but
    `maxclients` does not turn its clients away, so a full server can still be inspected."""
    from conftest import free_port

    admin = free_port()
    d = damselfly("--proactor_threads=2", "--maxclients=2", f"--admin_port={admin}")
    held = [d.client(), d.client()]
    for c in held:
        assert c.ping()
    with socket.create_connection(("127.0.0.1", d.port), timeout=5) as s:
        s.sendall(b"PING\r\n")
        assert s.recv(100) == b"-ERR max number of clients reached\r\n"
    # Several admin clients at once, past the limit, served like any client.
    admins = [redis.Redis(port=admin, socket_timeout=10) for _ in range(3)]
    for i, a in enumerate(admins):
        assert a.set(f"admin{i}", i)
    assert held[0].get("admin2") == b"2"
    assert admins[0].info("clients")["connected_clients"] >= 5
    status, ctype, body = scrape(admin)
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    assert samples(body)['damselfly_db_keys{db="0"}'] == 3
    for a in admins:
        a.close()


def test_a_real_prometheus_scrapes_it(damselfly, tmp_path):
    """Prometheus itself (Debian's package) scrapes /metrics on the admin port and stores
    the samples: `up` is 1 and the command counter it read matches the server's."""
    from conftest import free_port

    prometheus = require_tool("prometheus")
    admin = free_port()
    d = damselfly(f"--admin_port={admin}")
    c = d.client()
    for i in range(100):
        c.set(f"k{i}", i)
    web = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: damselfly\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{admin}']\n")
    proc = subprocess.Popen(
        [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{web}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def query(expr):
        url = f"http://127.0.0.1:{web}/api/v1/query?query=" + urllib.request.quote(expr)
        with urllib.request.urlopen(url, timeout=5) as r:
            import json
            return json.loads(r.read())["data"]["result"]

    try:
        deadline = time.monotonic() + 60
        up = sets = []
        while time.monotonic() < deadline:
            try:
                up = query('up{job="damselfly"}')
                sets = query('damselfly_commands_total{cmd="set"}')
                if up and up[0]["value"][1] == "1" and sets and float(sets[0]["value"][1]) >= 100:
                    break
            except (urllib.error.URLError, ConnectionError, KeyError):
                pass
            time.sleep(0.5)
        assert up and up[0]["value"][1] == "1", up
        assert float(sets[0]["value"][1]) == c.info("commandstats")["cmdstat_set"]["calls"] == 100
        keys = query('damselfly_db_keys{db="0"}')
        assert float(keys[0]["value"][1]) == 100
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_pubsub_counts_in_info_and_metrics(damselfly, redis_server):
    """INFO stats' `pubsub_channels` / `pubsub_patterns` / `pubsubshard_channels` (Redis 7.0's
    fields, equal to redis-server's for the same subscriptions) reach /metrics as gauges."""
    d = damselfly("--proactor_threads=2")
    fields = ("pubsub_channels", "pubsub_patterns", "pubsubshard_channels")
    seen, metrics = [], []
    for client in (d.client(), redis_server.client()):
        p = client.pubsub()
        p.subscribe("a", "b")
        p.psubscribe("n*")
        p.execute_command("SSUBSCRIBE", "s")
        deadline = time.monotonic() + 10
        while client.info("stats").get("pubsubshard_channels", 0) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        stats = client.info("stats")
        seen.append(tuple(stats[f] for f in fields))
        if not metrics:
            s = samples(scrape(d.port)[2])
            metrics.append(tuple(int(s["damselfly_" + f]) for f in fields))
        p.close()
    assert seen[0] == seen[1] == metrics[0] == (2, 1, 1)
