"""The job runner's swift-log lines and swift-metrics, end to end: ``damselfly-jobs work
--metrics-port`` against Damselfly, scraped while it works; the counters per queue and class
match what ran, the histograms count every job, promtool finds nothing to say, and the log keeps
Sidekiq's line format through swift-log."""

import os
import re
import shutil
import socket
import subprocess
import urllib.request

import pytest

from test_jobs_interop import JOBS_BIN, Proc, _jobs_bin_or_skip, url, wait_for


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


def sample(body, name, **labels):
    """The value of `name{labels...}` (labels in any order), or 0 when absent."""
    for line in body.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return 0.0


def push(srv, *args):
    out = subprocess.run([JOBS_BIN, "push", "--url", url(srv), *args], capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr.decode()


def test_metrics_scraped_while_working_and_sidekiq_log_lines(damselfly, tmp_path):
    _jobs_bin_or_skip()
    srv = damselfly()
    port = _free_port()
    w = Proc([JOBS_BIN, "work", "--url", url(srv), "-q", "default", "-q", "mail", "--retry-delay", "3600",
              "--metrics-port", str(port)], str(tmp_path / "worker.log"))
    try:
        wait_for(lambda: _up(port), 15, "the metrics endpoint", [w])
        push(srv, "--class", "SleepJob", "--args", "[0.5]")
        push(srv, "--class", "NoopJob", "--count", "40")
        push(srv, "--class", "NoopJob", "--queue", "mail", "--count", "7")
        push(srv, "--class", "FailingJob", "--args", "[-1]", "--count", "3")
        # Scraped while the sleeping job still runs: some counts are in, it is not.
        body = wait_for(lambda: (b := scrape(port)) and sample(b, "damselfly_jobs_processed_total", queue="default", **{"class": "NoopJob"}) == 40 and b,
                        15, "40 NoopJobs counted", [w])
        assert sample(body, "damselfly_jobs_processed_total", queue="default", **{"class": "SleepJob"}) == 0
        body = wait_for(lambda: (b := scrape(port)) and sample(b, "damselfly_jobs_processed_total", queue="default", **{"class": "SleepJob"}) == 1 and b,
                        15, "the SleepJob counted", [w])
        assert sample(body, "damselfly_jobs_processed_total", queue="mail", **{"class": "NoopJob"}) == 7
        assert sample(body, "damselfly_jobs_processed_total", queue="default", **{"class": "FailingJob"}) == 3
        assert sample(body, "damselfly_jobs_failed_total", queue="default", **{"class": "FailingJob"}) == 3
        assert sample(body, "damselfly_jobs_retried_total", queue="default", **{"class": "FailingJob"}) == 3
        assert sample(body, "damselfly_jobs_failed_total", queue="default", **{"class": "NoopJob"}) == 0
        assert sample(body, "damselfly_jobs_duration_seconds_count", queue="mail", **{"class": "NoopJob"}) == 7
        assert sample(body, "damselfly_jobs_latency_seconds_count", queue="default", **{"class": "NoopJob"}) == 40
        # The sleep shows in its duration, not in the no-ops'.
        assert sample(body, "damselfly_jobs_duration_seconds_sum", queue="default", **{"class": "SleepJob"}) >= 0.45
        assert sample(body, "damselfly_jobs_duration_seconds_sum", queue="default", **{"class": "NoopJob"}) < 0.45
        promtool = shutil.which("promtool")
        if promtool:
            check = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=30)
            assert check.returncode == 0 and check.stdout.strip() == "" and check.stderr.strip() == "", check.stdout + check.stderr
        elif os.environ.get("CI"):
            pytest.fail("promtool missing (scripts/install-deps.sh installs prometheus)")
    finally:
        assert w.stop() == 0
    log = open(w.logpath).read()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z pid=\d+"
    assert re.search(rf"^{stamp} tid=\S+ class=NoopJob jid=[0-9a-f]{{24}} INFO: done: \d+\.\d{{3}} sec$", log, re.M), log[-2000:]
    assert re.search(rf"^{stamp} tid=\S+ class=FailingJob jid=[0-9a-f]{{24}} WARN: fail: \d+\.\d{{3}} sec: ", log, re.M), log[-2000:]
    assert re.search(rf"^{stamp} INFO: Bye!$", log, re.M), log[-2000:]


def _up(port):
    try:
        scrape(port)
        return True
    except OSError:
        return False
