"""Smoke runs of the load generator, damselfly-bench, so it never rots.

A few thousand requests against a Damselfly started by the fixtures, then the JSON report's
fields are checked. The queue mode needs LPUSH/BRPOP: it runs against Damselfly once lists
exist and against a real redis-server meanwhile.

The binary comes from ``DAMSELFLY_BENCH_BIN``, else ``damselfly-bench`` beside the Damselfly
binary, else ``.build-bench/release``; when none exists it is built
(``swift build -c release --product damselfly-bench``).
"""

import json
import os
import pathlib
import shutil
import subprocess

import pytest

from conftest import DAMSELFLY_BIN, REPO

BUILD_TIMEOUT_S = 900
RUN_TIMEOUT_S = 60


def _bench_bin():
    env = os.environ.get("DAMSELFLY_BENCH_BIN")
    if env:
        return str(pathlib.Path(env) if os.path.isabs(env) else REPO / env)
    candidates = [pathlib.Path(DAMSELFLY_BIN).parent / "damselfly-bench",
                  REPO / ".build" / "release" / "damselfly-bench",
                  REPO / ".build-bench" / "release" / "damselfly-bench"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    if not shutil.which("swift"):
        pytest.skip("damselfly-bench not built and no swift toolchain to build it")
    subprocess.run(["swift", "build", "-c", "release", "--product", "damselfly-bench"],
                   cwd=str(REPO), check=True, timeout=BUILD_TIMEOUT_S)
    return str(REPO / ".build" / "release" / "damselfly-bench")


@pytest.fixture(scope="module")
def bench_bin():
    return _bench_bin()


@pytest.fixture(scope="module")
def server(damselfly_module):
    return damselfly_module("--proactor_threads=2")


def run_bench(bench_bin, tmp_path, port, *flags, expect_rc=0):
    out = tmp_path / "bench.json"
    argv = [bench_bin, "--host=127.0.0.1", f"--port={port}", f"--json-out={out}", *flags]
    p = subprocess.run(argv, capture_output=True, timeout=RUN_TIMEOUT_S)
    assert p.returncode == expect_rc, (argv, p.returncode, p.stdout.decode(), p.stderr.decode())
    return json.loads(out.read_text()) if out.exists() else None, p.stdout.decode()


def check_latency(lat):
    assert set(lat) >= {"avg", "p50", "p99", "p999", "max"}, lat
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"] * 1.001 + 0.01, lat
    assert lat["avg"] > 0


def test_kv_requests_mode(bench_bin, server, tmp_path):
    r, table = run_bench(bench_bin, tmp_path, server.port, "--threads=2", "--clients=4", "--pipeline=8",
                         "--requests=500", "--ratio=1:1", "--key-maximum=999", "--data-size=16")
    assert r["tool"] == "damselfly-bench" and r["mode"] == "kv"
    assert r["config"]["threads"] == 2 and r["config"]["clients"] == 4 and r["config"]["pipeline"] == 8
    assert r["connections"] == 8
    assert r["total_ops"] == 2 * 4 * 500
    assert r["errors"] == 0 and r["failure"] is None
    assert r["duration_s"] > 0 and r["ops_per_sec"] > 0
    check_latency(r["latency_us"])
    s, g = r["commands"]["SET"], r["commands"]["GET"]
    assert s["ops"] + g["ops"] == r["total_ops"]
    assert s["ops"] == g["ops"] == 2000  # 1:1 over an even request count per connection
    assert g["hits"] + g["misses"] == g["ops"]
    check_latency(s["latency_us"])
    assert "Totals" in table and "Sets" in table and "Gets" in table
    # The SETs really landed: keys key:000 .. key:999.
    c = server.client()
    assert 0 < c.dbsize() <= 1000
    assert c.get(c.keys("key:*")[0]) == b"x" * 16


def test_kv_test_time_resp3_warmup(bench_bin, server, tmp_path):
    r, _ = run_bench(bench_bin, tmp_path, server.port, "--threads=1", "--clients=2", "--test-time=0.5",
                     "--warmup-seconds=0.2", "--protocol=3", "--key-pattern=G", "--ratio=1:4", "--quiet")
    assert r["config"]["protocol"] == 3 and r["config"]["requests"] is None
    assert r["config"]["test_time"] == 0.5 and r["config"]["key_pattern"] == "G"
    assert r["errors"] == 0 and r["failure"] is None
    assert r["total_ops"] > 100
    assert 0.3 < r["duration_s"] < 5
    check_latency(r["latency_us"])


def test_kv_sequential_pattern(bench_bin, server, tmp_path):
    c = server.client()
    c.flushall()
    r, _ = run_bench(bench_bin, tmp_path, server.port, "--threads=1", "--clients=1", "--pipeline=16",
                     "--requests=320", "--ratio=1:0", "--key-pattern=S", "--key-minimum=1", "--key-maximum=320",
                     "--key-prefix=seq:", "--quiet")
    assert r["total_ops"] == 320 and r["commands"]["GET"]["ops"] == 0
    # Sequential keys: every key of the range written exactly once, zero-padded to 3 digits.
    assert c.dbsize() == 320
    assert c.exists("seq:001") and c.exists("seq:320") and not c.exists("seq:000")


@pytest.mark.parametrize("shape", ["push", "push-pipelined"])
def test_push_shapes(bench_bin, server, redis_server, tmp_path, shape):
    """--shape: Sidekiq's push as one request (a MULTI block, or a pipelined pair), every job
    landing in its queue, against Damselfly and redis-server alike."""
    for srv in (server, redis_server):
        c = srv.client()
        c.flushall()
        r, _ = run_bench(bench_bin, tmp_path, srv.port, "--threads=1", "--clients=3", "--pipeline=4",
                         "--requests=200", f"--shape={shape}", "--key-prefix=queue:q", "--key-maximum=7", "--quiet")
        assert r["errors"] == 0 and r["failure"] is None
        assert r["total_ops"] == 600 and r["commands"]["SET"]["ops"] == 600
        assert c.smembers("queues") == {b"default"}
        queues = c.keys("queue:q*")
        assert 0 < len(queues) <= 8
        assert sum(c.llen(q) for q in queues) == 600
        assert b'"class":"HardJob"' in c.lindex(queues[0], 0)


def test_bad_flags_exit_2(bench_bin, tmp_path):
    p = subprocess.run([bench_bin, "--ratio=abc"], capture_output=True, timeout=RUN_TIMEOUT_S)
    assert p.returncode == 2 and b"--ratio" in p.stderr
    p = subprocess.run([bench_bin, "--no-such-flag=1"], capture_output=True, timeout=RUN_TIMEOUT_S)
    assert p.returncode == 2
    p = subprocess.run([bench_bin, "--shape=pop"], capture_output=True, timeout=RUN_TIMEOUT_S)
    assert p.returncode == 2 and b"--shape" in p.stderr


def test_connection_refused_fails(bench_bin, tmp_path):
    from conftest import free_port
    p = subprocess.run([bench_bin, f"--port={free_port()}", "--requests=10"], capture_output=True,
                       timeout=RUN_TIMEOUT_S)
    assert p.returncode == 1 and b"cannot connect" in p.stderr


def _supports_lpush(srv):
    import redis
    c = srv.client()
    try:
        c.lpush("__bench_probe", "x")
    except redis.ResponseError:
        return False
    c.delete("__bench_probe")
    return True


@pytest.mark.parametrize("drain_mode,fill_mode", [("per-queue", "pipeline"), ("all", "bulk")])
def test_queue_mode(bench_bin, server, redis_server, tmp_path, drain_mode, fill_mode):
    target = server if _supports_lpush(server) else redis_server
    r, table = run_bench(bench_bin, tmp_path, target.port, "--threads=2", "--queues=3", "--elements=700",
                         "--consumers=4", f"--drain-mode={drain_mode}", f"--fill-mode={fill_mode}",
                         "--fill-batch=50", "--pipeline=32")
    assert r["mode"] == "queue" and r["failure"] is None, r
    assert r["config"]["queues"] == 3 and r["config"]["consumers"] == 4
    assert r["fill"]["jobs"] == 2100 and r["drain"]["jobs"] == 2100
    assert r["total_ops"] == 2100 and r["errors"] == 0
    assert r["drain"]["jobs_per_sec"] > 0 and r["ops_per_sec"] == r["drain"]["jobs_per_sec"]
    check_latency(r["drain"]["latency_us"])
    assert "Drain" in table
    c = target.client()
    assert c.exists("queue:0", "queue:1", "queue:2") == 0


def test_queue_mode_reports_missing_lpush(bench_bin, server, tmp_path, only_damselfly):
    if _supports_lpush(server):
        pytest.skip("Damselfly implements LPUSH now")
    r, _ = run_bench(bench_bin, tmp_path, server.port, "--queues=1", "--elements=10", expect_rc=1)
    assert r["mode"] == "queue" and "LPUSH" in r["failure"]
