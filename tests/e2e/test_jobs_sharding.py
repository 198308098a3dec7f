"""Reliable fetch stays on one shard under ``--shard_round_robin_prefix=queue: --lock_on_hashtags``.

``ReliableFetch`` moves a job with ``BLMOVE queue:<q> {queue:<q>}:inprogress:<identity>``:
the private list's hashtag is the queue's whole name, so with ``--lock_on_hashtags`` it shards
by ``queue:<q>``, and with the round-robin prefix the tag itself matches ``queue:``, so the
queue and every private list of it share the queue's round-robin shard. Observed through
``INFO TRANSACTION``: a multi-shard transaction counts in ``tx_width_freq`` w2..wN (and as
``normal`` / ``ooo`` / ``global``); a single-shard command counts as ``inline`` (on the
owner's thread) or ``quick`` (one hop) only.

4 shards so that a cross-shard pair would show up for most queue names (with the negative
control proving the counters see it).
"""

import os
import subprocess
import threading
import time

import pytest

from conftest import parse_kv_list
from resp import RespConn
from test_jobs_interop import JOBS_BIN, _jobs_bin_or_skip

NUM = 4
FLAGS = (f"--proactor_threads={NUM}", "--shard_round_robin_prefix=queue:", "--lock_on_hashtags")
QUEUES = [f"queue:q{i}" for i in range(6)]


def counters(srv):
    info = srv.info("transaction")
    cnt = {k: int(v) for k, v in parse_kv_list(info["tx_type_cnt"]).items()}
    width = {k: int(v) for k, v in parse_kv_list(info["tx_width_freq"]).items()}
    return cnt, width


def multi_shard(cnt, width):
    """Transactions that spanned more than one shard (and any global/normal/ooo scheduling)."""
    return sum(v for k, v in width.items() if k != "w1"), cnt["global"] + cnt["normal"] + cnt["ooo"]


def delta(srv, body):
    c0, w0 = counters(srv)
    out = body()
    c1, w1 = counters(srv)
    dc = {k: c1[k] - c0[k] for k in c1}
    dw = {k: w1.get(k, 0) - w0.get(k, 0) for k in w1}
    return dc, dw, out


@pytest.fixture
def queued(damselfly, only_damselfly):
    return damselfly(*FLAGS)


def test_blmove_into_private_list_is_single_shard(queued):
    srv = queued
    identity = "host1:4242:0123456789ab"
    with RespConn(srv.port) as c:
        for q in QUEUES:
            assert c.call("RPUSH", q, "a", "b", "c") == (":", 3)

        # A job is there: BLMOVE serves it at once.
        def ready():
            return [c.call("BLMOVE", q, "{%s}:inprogress:%s" % (q, identity), "RIGHT", "LEFT", "1") for q in QUEUES]
        dc, dw, replies = delta(srv, ready)
        assert replies == [("$", b"c")] * len(QUEUES)
        assert multi_shard(dc, dw) == (0, 0), (dc, dw)
        assert dc["inline"] + dc["quick"] == len(QUEUES), dc

        # The queue is empty: BLMOVE blocks and an LPUSH from another connection wakes it.
        q = QUEUES[0]
        private = "{%s}:inprogress:%s" % (q, identity)
        assert c.call("DEL", q) == (":", 1)

        def blocked():
            def pusher():
                time.sleep(0.3)
                with RespConn(srv.port) as other:
                    other.call("LPUSH", q, "late")
            t = threading.Thread(target=pusher)
            t.start()
            reply = c.call("BLMOVE", q, private, "RIGHT", "LEFT", "5")
            t.join()
            return reply
        dc, dw, reply = delta(srv, blocked)
        assert reply == ("$", b"late")
        assert multi_shard(dc, dw) == (0, 0), (dc, dw)

        # The acknowledgement (LREM on the private list) and a requeue (RPUSH queue + LREM
        # private in one MULTI) are single-shard too.
        def ack_and_requeue():
            r1 = c.call("LREM", private, "1", "late")
            r2 = [c.call("MULTI"), c.call("RPUSH", q, "c"), c.call("LREM", private, "1", "c"), c.call("EXEC")]
            return r1, r2
        dc, dw, (r1, r2) = delta(srv, ack_and_requeue)
        assert r1 == (":", 1) and r2[-1][0] == "*", r2
        # EXEC's two commands run squashed (--multi_exec_squash) as one single-shard operation:
        # no transaction id at all, the LREM before it likewise.
        assert multi_shard(dc, dw) == (0, 0) and dw["w1"] == 0, (dc, dw)
        assert dc["inline"] + dc["quick"] == 2, dc

        # Negative control: a private list without the hashtag lands elsewhere for most queues.
        def untagged():
            return [c.call("LMOVE", q, "inprogress:%s:%s" % (identity, q), "RIGHT", "LEFT") for q in QUEUES[1:]]
        dc, dw, _ = delta(srv, untagged)
        assert multi_shard(dc, dw)[0] > 0, (dc, dw)


def test_reliable_worker_fetch_stays_on_one_shard(queued, tmp_path):
    _jobs_bin_or_skip()
    srv = queued
    url = f"redis://127.0.0.1:{srv.port}/0"
    n = 3000
    out = subprocess.run([JOBS_BIN, "push", "--class", "NoopJob", "--queue", "q", "--count", str(n), "--url", url],
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr.decode()
    c0, w0 = counters(srv)
    log = open(tmp_path / "worker.log", "wb")
    worker = subprocess.Popen([JOBS_BIN, "work", "--url", url, "-q", "q", "-c", "10", "--log-level", "warn"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        client = srv.client()
        deadline = time.monotonic() + 30
        while client.llen("queue:q") > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.llen("queue:q") == 0, "the worker drains the queue"
        deadline = time.monotonic() + 10
        while (any(client.llen(k) for k in client.keys("{queue:q}:inprogress:*"))
               and time.monotonic() < deadline):
            time.sleep(0.05)
        assert not any(client.llen(k) for k in client.keys("{queue:q}:inprogress:*")), "every job acknowledged"
    finally:
        worker.terminate()
        worker.wait(15)
        log.close()
    c1, w1 = counters(srv)
    dc = {k: c1[k] - c0[k] for k in c1}
    dw = {k: w1.get(k, 0) - w0.get(k, 0) for k in w1}
    wide, scheduled = multi_shard(dc, dw)
    # Each job: one BLMOVE and one LREM, both single-shard (inline or one hop). What spans
    # shards is the heartbeat's MULTI blocks, registration and shutdown: a handful, not per job.
    # (Every transaction, of any width, scheduled rather than inline/quick, counts in `scheduled`.)
    assert dc["inline"] + dc["quick"] >= 2 * n, dc
    assert wide <= 20 and scheduled <= 20, (dc, dw, open(tmp_path / "worker.log").read()[-2000:])
