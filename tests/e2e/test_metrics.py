"""Prometheus /metrics on the main port (issue 19 §1): recognised by its first bytes,
answered from the same counters INFO reads, valid for promtool, and RESP unaffected."""

import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
import redis


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
    promtool = shutil.which("promtool")
    if not promtool:
        if os.environ.get("CI"):
            pytest.fail("promtool missing (scripts/install-deps.sh installs prometheus)")
        pytest.skip("promtool not installed")
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
