"""Live migration of a Sidekiq deployment from redis-server to Damselfly (issue 17): a
redis-server holding 1,000,000 keys (DEBUG POPULATE) and a running Sidekiq load (a Ruby
Sidekiq 6.4 worker running RecordJob, a Ruby Sidekiq client enqueuing RecordJob without
pause); Damselfly REPLICAOF it and catches up while the load runs; cut-over: the worker is
quieted (SIGTSTP) and stopped (SIGTERM: Sidekiq pushes what it fetched but did not run back on
the queue), the producer stopped, Damselfly catches up and REPLICAOF NO ONE; a new worker and a
new producer then run against Damselfly. Every job enqueued ran exactly once, on one side or
the other, and nothing ran on redis after the cut-over.

Reuses the replica tests' helpers (test_replica.py) and the Sidekiq interop tests' processes
(test_jobs_interop.py); skips when Ruby Sidekiq is not installed.
"""
import collections
import os
import signal
import time

from test_jobs_interop import RUBY, Proc, _ruby_or_skip, procs, records, ruby_worker, url, wait_for  # noqa: F401
from test_replica import follow, repl_info, servers, start_redis_master, wait_in_sync  # noqa: F401

KEYS = 1_000_000
WITNESS = "ran"  # RecordJob's list: "<jid>:ruby" once per run


def producer(srv, procs, tmp_path):
    """`client.rb produce`: RecordJob.perform_async in a loop (Sidekiq::Client: SADD queues,
    LPUSH queue:default), one every 4 ms, each jid printed once its push returned."""
    env = dict(os.environ, REDIS_URL=url(srv))
    p = Proc(["ruby", str(RUBY / "client.rb"), "produce", WITNESS, "0.004"],
             str(tmp_path / f"producer-{len(procs)}.log"), env)
    procs.append(p)
    return p


def enqueued(p):
    with open(p.logpath, "rb") as f:
        return [line.split()[1] for line in f.read().decode(errors="replace").splitlines()
                if line.startswith("enqueued ")]


def stop(p, what):
    """SIGTERM and wait for a clean exit (the producer and Sidekiq both exit 0 on TERM)."""
    p.proc.send_signal(signal.SIGTERM)
    rc = p.proc.wait(30)
    assert rc == 0, f"{what} exited with {rc}\n{p.tail()}"


def test_live_migration_of_sidekiq_from_redis_loses_no_job(servers, procs, tmp_path):
    _ruby_or_skip()
    t0 = time.monotonic()
    master = start_redis_master(servers, "--enable-debug-command", "yes")
    m = master.client(socket_timeout=30)
    assert m.execute_command("DEBUG", "POPULATE", KEYS) == b"OK"
    assert m.dbsize() == KEYS

    # The Sidekiq load on redis.
    old_worker = ruby_worker(master, procs, tmp_path, "-c", "5", "-q", "default", "-t", "10")
    old_producer = producer(master, procs, tmp_path)
    wait_for(lambda: m.llen(WITNESS) >= 50, 30, "the Sidekiq load to run on redis", procs)

    # Damselfly follows redis while the load runs.
    dfly = servers.start("--proactor_threads=3")
    d = dfly.client(socket_timeout=30)
    follow(d, master)
    wait_for(lambda: repl_info(d).get("master_link_status") == "up", 60, "the link (full sync of 1M keys)", procs)
    synced_at = m.llen(WITNESS)
    wait_for(lambda: d.llen(WITNESS) > synced_at + 50, 20, "redis-era job records to stream to Damselfly", procs)
    wait_in_sync(m, d)  # caught up with the load running

    # Cut-over. The worker first: quiet (it fetches no more), then TERM (it requeues on redis
    # whatever it fetched and did not run); the producer keeps enqueuing meanwhile, so a
    # backlog of jobs no one ran on redis crosses over through replication.
    old_worker.proc.send_signal(signal.SIGTSTP)
    time.sleep(0.5)
    stop(old_worker, "the redis-side Sidekiq worker")
    time.sleep(0.3)
    stop(old_producer, "the redis-side producer")
    wait_in_sync(m, d)
    backlog = m.llen("queue:default")
    ran_on_redis = records(m, WITNESS)
    assert d.dbsize() == m.dbsize()
    assert records(d, WITNESS) == ran_on_redis
    assert d.lrange("queue:default", 0, -1) == m.lrange("queue:default", 0, -1)
    assert d.execute_command("REPLICAOF", "NO", "ONE") == b"OK"
    assert repl_info(d)["role"] == "master"

    # The deployment, switched to Damselfly.
    new_worker = ruby_worker(dfly, procs, tmp_path, "-c", "5", "-q", "default", "-t", "10")
    new_producer = producer(dfly, procs, tmp_path)
    wait_for(lambda: len(enqueued(new_producer)) >= 100, 30, "the producer to enqueue on Damselfly", procs)
    time.sleep(1.0)
    stop(new_producer, "the Damselfly-side producer")
    jids = enqueued(old_producer) + enqueued(new_producer)
    wait_for(lambda: d.llen("queue:default") == 0, 30, f"the queue to drain on Damselfly ({len(jids)} jobs)", procs)
    settle = time.monotonic() + 5  # the last jobs fetched finish (a lost job shows as missing below)
    while d.llen(WITNESS) < len(jids) and time.monotonic() < settle:
        time.sleep(0.05)
    stop(new_worker, "the Damselfly-side Sidekiq worker")
    assert d.llen("queue:default") == 0, "the worker stopped with jobs still to run"

    ran = records(d, WITNESS)
    print(f"\n{len(jids)} jobs ({len(enqueued(new_producer))} enqueued on Damselfly), {len(ran_on_redis)} ran on "
          f"redis, backlog crossing over {backlog}, {len(ran) - len(ran_on_redis)} ran on Damselfly; "
          f"{time.monotonic() - t0:.1f}s")
    assert len(enqueued(old_producer)) > 100 and len(enqueued(new_producer)) >= 100
    assert all(r.endswith(":ruby") for r in ran)
    ran_jids = [r[:-len(":ruby")] for r in ran]
    twice = {j for j, n in collections.Counter(ran_jids).items() if n > 1}
    assert not twice, f"{len(twice)} jobs ran twice: {sorted(twice)[:10]}"
    missing = set(jids) - set(ran_jids)
    assert not missing, f"{len(missing)} jobs lost: {sorted(missing)[:10]}"
    assert set(ran_jids) == set(jids), "only the jobs enqueued ran"
    assert ran[:len(ran_on_redis)] == ran_on_redis, "the redis-era records, replicated, come first"
    assert d.zcard("retry") == 0 and d.zcard("dead") == 0, "no job failed"

    # Nothing ran on (or was written to) redis after the cut-over.
    assert records(m, WITNESS) == ran_on_redis
    assert m.llen("queue:default") == backlog
    # Damselfly holds the populated keys: the count and a sample of values.
    assert d.dbsize() >= KEYS + 1
    sample = list(range(0, KEYS, 9973)) + [KEYS - 1]
    assert d.mget([f"key:{i}" for i in sample]) == [f"value:{i}".encode() for i in sample]
