"""Delivery stress: every pushed job is delivered exactly once (issue 5).

P producer threads LPUSH unique ids into Q queues while C consumer threads
BRPOP them (some consumers on one queue, some on several queues, timeouts of
0.2 to 1 s).  At the end every id was delivered exactly once (none lost, none
twice), from the queue it was pushed to, and every queue is empty.

Run over ``--proactor_threads`` 1, 2 and 4, ``--singlehop_blocking`` on and off,
and round-robin placement (``--shard_round_robin_prefix=queue:``) on and off;
two more cases with ``--force_epoll``; on both engines connection migration
moves the one-queue consumers to their queue's thread while jobs flow.
A second test has the consumers use the reliable-fetch shape of job runners:
``BLMOVE queue private RIGHT LEFT t`` into a per-consumer list, then ``LREM``
once the job is "done"; the private lists must end empty too.

Producers vary their shape (one id per LPUSH, several ids per LPUSH, pipelined
bursts) and pause now and then, so consumers are both served at once (list
non-empty) and parked and woken (list empty): both paths of the blocking code
are exercised.  Each case takes about 1 to 3 s.
"""

import collections
import random
import threading
import time

import pytest

from conftest import SELFTEST_REDIS, parse_info
from resp import RespConn, is_error, to_py

QUEUES = 4
PRODUCERS = 3
IDS_PER_PRODUCER = 2000
TIMEOUTS = ("0.2", "0.3", "0.5", "1")
CASE_DEADLINE_S = 40.0   # a lost wake-up shows up as a failed check, never as a hung run
QNAMES = [f"queue:stress{i}" for i in range(QUEUES)]


def _config_flags(threads, singlehop, round_robin, epoll=False):
    flags = [f"--proactor_threads={threads}"]
    if SELFTEST_REDIS:   # harness self-test: the redis-server shim knows no Damselfly-only flags
        return flags
    flags.append("--singlehop_blocking" if singlehop else "--nosinglehop_blocking")
    if round_robin:
        flags.append("--shard_round_robin_prefix=queue:")
    if epoll:   # the epoll engine (both engines migrate a one-queue consumer to its queue's thread)
        flags.append("--force_epoll")
    return flags


class Run:
    """Shared state of one stress case."""

    def __init__(self, port):
        self.port = port
        self.producers_done = threading.Event()
        self.lock = threading.Lock()
        self.pushed = {}                                # id -> queue
        self.delivered = collections.defaultdict(list)  # id -> [(consumer, queue)]
        self.errors = []
        self.deadline = time.monotonic() + CASE_DEADLINE_S

    def error(self, msg):
        with self.lock:
            self.errors.append(msg)

    # producers -----------------------------------------------------------
    def producer(self, p):
        rng = random.Random(1000 + p)
        try:
            with RespConn(self.port) as c:
                i = 0
                while i < IDS_PER_PRODUCER:
                    q = rng.choice(QNAMES)
                    if p % 3 == 0:                       # one id per LPUSH
                        batch = [[q, f"p{p}-{i}"]]
                    elif p % 3 == 1:                     # several ids per LPUSH
                        k = min(rng.randint(1, 5), IDS_PER_PRODUCER - i)
                        batch = [[q] + [f"p{p}-{i + j}" for j in range(k)]]
                    else:                                # a pipelined burst over several queues
                        k = min(rng.randint(1, 8), IDS_PER_PRODUCER - i)
                        batch = [[rng.choice(QNAMES), f"p{p}-{i + j}"] for j in range(k)]
                    with self.lock:
                        for cmd in batch:
                            for ident in cmd[1:]:
                                self.pushed[ident] = cmd[0]
                    replies = c.pipeline([["LPUSH", *cmd] for cmd in batch])
                    for r in replies:
                        if is_error(r):
                            self.error(f"producer {p}: LPUSH error {r!r}")
                            return
                    i += sum(len(cmd) - 1 for cmd in batch)
                    if rng.random() < 0.01:              # let the queues run dry: consumers park
                        time.sleep(0.005)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error(f"producer {p}: {e!r}")

    # consumers -----------------------------------------------------------
    def _record(self, name, ident, queue):
        with self.lock:
            self.delivered[ident].append((name, queue))

    def brpop_consumer(self, name, keys, timeout):
        try:
            with RespConn(self.port) as c:
                while True:
                    if time.monotonic() > self.deadline:
                        self.error(f"{name}: deadline passed")
                        return
                    done_before = self.producers_done.is_set()
                    r = c.call("BRPOP", *keys, timeout)
                    if is_error(r):
                        self.error(f"{name}: BRPOP error {r!r}")
                        return
                    if r[1] is None:
                        # Timed out on a BRPOP sent after the last push: its keys are
                        # empty for good (the others only pop).
                        if done_before:
                            return
                        continue
                    key, ident = to_py(r)
                    self._record(name, ident.decode(), key.decode())
        except Exception as e:  # noqa: BLE001
            self.error(f"{name}: {e!r}")

    def blmove_consumer(self, name, queue, private, timeout):
        try:
            with RespConn(self.port) as c:
                while True:
                    if time.monotonic() > self.deadline:
                        self.error(f"{name}: deadline passed")
                        return
                    done_before = self.producers_done.is_set()
                    r = c.call("BLMOVE", queue, private, "RIGHT", "LEFT", timeout)
                    if is_error(r):
                        self.error(f"{name}: BLMOVE error {r!r}")
                        return
                    if r[1] is None:
                        if done_before:
                            return
                        continue
                    ident = r[1]
                    self._record(name, ident.decode(), queue)
                    removed = c.call("LREM", private, 1, ident)
                    if removed != (":", 1):
                        self.error(f"{name}: LREM {private} {ident!r} answered {removed!r}, expected 1")
        except Exception as e:  # noqa: BLE001
            self.error(f"{name}: {e!r}")

    # driver --------------------------------------------------------------
    def go(self, consumers):
        """consumers: [(target, args)]; starts them, then the producers."""
        cthreads = [threading.Thread(target=t, args=a, daemon=True) for t, a in consumers]
        pthreads = [threading.Thread(target=self.producer, args=(p,), daemon=True) for p in range(PRODUCERS)]
        for t in cthreads:
            t.start()
        time.sleep(0.05)   # consumers park on empty queues first
        for t in pthreads:
            t.start()
        for t in pthreads:
            t.join(max(0.1, self.deadline - time.monotonic()))
        self.producers_done.set()
        for t in cthreads:
            t.join(max(0.1, self.deadline - time.monotonic() + 2))
        hung = [t for t in cthreads + pthreads if t.is_alive()]
        assert not hung, f"{len(hung)} client threads still running at the deadline; errors: {self.errors[:5]}"

    def check(self, server, extra_empty=()):
        assert not self.errors, "\n".join(self.errors[:20])
        total = PRODUCERS * IDS_PER_PRODUCER
        assert len(self.pushed) == total
        lost = [i for i in self.pushed if i not in self.delivered]
        twice = {i: d for i, d in self.delivered.items() if len(d) > 1}
        unknown = [i for i in self.delivered if i not in self.pushed]
        wrong_queue = {i: (self.pushed[i], d) for i, d in self.delivered.items()
                       if i in self.pushed and any(q != self.pushed[i] for _, q in d)}
        assert not lost, f"{len(lost)} of {total} ids lost, e.g. {sorted(lost)[:10]}"
        assert not twice, f"{len(twice)} ids delivered more than once, e.g. {list(twice.items())[:5]}"
        assert not unknown, f"ids never pushed were delivered: {unknown[:10]}"
        assert not wrong_queue, f"ids delivered from the wrong queue: {list(wrong_queue.items())[:5]}"
        with RespConn(server.port) as c:
            lens = {k: c.call("LLEN", k)[1] for k in [*QNAMES, *extra_empty]}
            assert all(n == 0 for n in lens.values()), f"lists not empty at the end: {lens}"
            assert c.call("EXISTS", *QNAMES, *extra_empty) == (":", 0)
            if not server.is_redis:
                # Every consumer left after a timeout: nobody may still count as blocked.
                blocked = None
                for _ in range(50):
                    blocked = parse_info(to_py(c.call("INFO", "CLIENTS"))).get("blocked_clients")
                    if blocked == "0":
                        break
                    time.sleep(0.02)
                assert blocked == "0", f"blocked_clients={blocked} after every consumer left"
        assert server.alive()


CONFIGS = [
    pytest.param(threads, singlehop, rr, False,
                 id=f"t{threads}-{'single' if singlehop else 'multi'}hop-{'rr' if rr else 'hash'}")
    for threads in (1, 2, 4) for singlehop in (True, False) for rr in (True, False)
] + [
    # --force_epoll: the same with the epoll engine; connection migration
    # (--migrate_connections, default on) moves the one-queue consumers while jobs flow.
    pytest.param(2, True, True, True, id="t2-singlehop-rr-epoll"),
    pytest.param(4, True, False, True, id="t4-singlehop-hash-epoll"),
]


@pytest.mark.parametrize("threads,singlehop,round_robin,epoll", CONFIGS)
def test_brpop_delivery_exactly_once(damselfly, threads, singlehop, round_robin, epoll):
    server = damselfly(*_config_flags(threads, singlehop, round_robin, epoll))
    run = Run(server.port)
    rng = random.Random(threads * 100 + singlehop * 10 + round_robin)
    consumers = []
    # One consumer per queue (so every queue is drained), then several multi-queue consumers
    # whose keys sit on different shards in the multi-threaded configurations.
    for i, q in enumerate(QNAMES):
        consumers.append((run.brpop_consumer, (f"single{i}", [q], rng.choice(TIMEOUTS))))
    consumers.append((run.brpop_consumer, ("all", list(QNAMES), rng.choice(TIMEOUTS))))
    consumers.append((run.brpop_consumer, ("all-reversed", list(reversed(QNAMES)), rng.choice(TIMEOUTS))))
    consumers.append((run.brpop_consumer, ("pair31", [QNAMES[3], QNAMES[1]], rng.choice(TIMEOUTS))))
    consumers.append((run.brpop_consumer, ("pair02", [QNAMES[0], QNAMES[2]], rng.choice(TIMEOUTS))))
    # A second single-queue consumer on one queue: FIFO among waiters on the same key.
    consumers.append((run.brpop_consumer, ("single0b", [QNAMES[0]], rng.choice(TIMEOUTS))))
    run.go(consumers)
    run.check(server)
    if threads > 1 and not server.is_redis:
        stats = server.info("STATS")
        print(f"connection_migrations={stats.get('connection_migrations')}")


@pytest.mark.parametrize("threads,singlehop,round_robin,tagged", [
    # private list {queue:x}:inprogress:<id> follows its queue: a one-shard BLMOVE
    pytest.param(4, True, True, True, id="t4-singlehop-rr-tagged"),
    # private list inprogress:<id> hashed anywhere: BLMOVE across shards
    pytest.param(2, True, False, False, id="t2-singlehop-hash-crossshard"),
    pytest.param(4, False, True, False, id="t4-multihop-rr-crossshard"),
])
def test_blmove_reliable_fetch_exactly_once(damselfly, threads, singlehop, round_robin, tagged):
    server = damselfly(*_config_flags(threads, singlehop, round_robin))
    run = Run(server.port)
    rng = random.Random(7 + threads)
    consumers, privates = [], []
    for i, q in enumerate(QNAMES):
        for j in range(2):   # two consumers per queue
            name = f"c{i}{j}"
            private = f"{{{q}}}:inprogress:{name}" if tagged else f"inprogress:{name}"
            privates.append(private)
            consumers.append((run.blmove_consumer, (name, q, private, rng.choice(TIMEOUTS))))
    run.go(consumers)
    run.check(server, extra_empty=privates)
