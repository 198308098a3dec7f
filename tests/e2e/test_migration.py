"""Connection migration (--migrate_connections, issue 5).

A connection whose blocking pops all go to one shard owned by another thread
moves to that thread first, so a worker consuming one queue is served inline
whichever thread accepted it. INFO counts the moves as connection_migrations.

Every test runs on both engines: io_uring (the default; there the socket moves
only once its multishot receive has posted its final CQE and its sends have
completed, see UringDriver.detach) and epoll (--force_epoll), with 2 and 4
proactor threads.
"""
import random
import socket
import threading
import time

import pytest

from util import key_on_shard, keys_on_shards

ENGINES = [pytest.param((), id="iouring"), pytest.param(("--force_epoll",), id="epoll")]
THREADS = [pytest.param(2, id="t2"), pytest.param(4, id="t4")]


def info_int(client, section, field):
    return int(client.info(section)[field])


def tx_counts(client):
    line = client.info("transaction")["tx_type_cnt"]
    if isinstance(line, dict):
        return {k: int(v) for k, v in line.items()}
    return {k: int(v) for k, v in (p.split("=") for p in line.split(","))}


def start(damselfly, threads, engine, *extra):
    """Starts the server; skips the io_uring case where the kernel has none."""
    srv = damselfly(f"--proactor_threads={threads}", f"--num_shards={threads}", *engine, *extra)
    api = srv.client().info("server")["multiplexing_api"]
    if not engine and api != "iouring":
        pytest.skip(f"io_uring unavailable here (multiplexing_api={api})")
    assert api == ("epoll" if engine else "iouring")
    return srv


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("threads", THREADS)
def test_worker_moves_to_its_queues_thread_and_runs_inline(damselfly, threads, engine):
    srv = start(damselfly, threads, engine)
    queue = key_on_shard(0, threads, prefix="queue:")
    admin = srv.client()
    admin.rpush(queue, *[str(i) for i in range(400)])
    # One worker per thread (connections are spread over the threads), so
    # all but one start away from the queue's owner.
    workers = [srv.client() for _ in range(threads)]
    for w in workers:
        w.ping()
    before = info_int(admin, "stats", "connection_migrations")
    got = []
    for w in workers:
        for _ in range(50):
            got.append(w.brpop(queue, 1)[1])
    after = info_int(admin, "stats", "connection_migrations")
    assert after - before >= 1, "a worker on another thread should have moved"
    # Every element once, in order, none lost across the moves.
    assert got == [str(i).encode() for i in reversed(range(400 - 50 * threads, 400))]
    # From now on every worker runs BRPOP inline (no hop, no transaction id).
    start_tx = tx_counts(admin)
    for w in workers:
        for _ in range(20):
            w.brpop(queue, 1)
    end_tx = tx_counts(admin)
    assert end_tx["inline"] - start_tx["inline"] >= 20 * threads
    assert end_tx["quick"] == start_tx["quick"] and end_tx["normal"] == start_tx["normal"]
    assert admin.llen(queue) == 400 - 70 * threads
    # A moved connection keeps working for other commands, and does not move again.
    for w in workers:
        assert w.ping() is True
    assert info_int(admin, "stats", "connection_migrations") == after


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("threads", THREADS)
def test_pipelined_commands_travel_with_the_connection(damselfly, threads, engine):
    """Commands behind the moving BRPOP in the same read run once, in order, on the new thread."""
    srv = start(damselfly, threads, engine)
    queue = key_on_shard(threads - 1, threads, prefix="queue:")
    admin = srv.client()
    admin.rpush(queue, *[str(i) for i in range(10)])
    before = info_int(admin, "stats", "connection_migrations")
    for _ in range(threads):
        w = srv.client()
        pipe = w.pipeline(transaction=False)
        pipe.set("before", "1").brpop(queue, 1).incr("counter").brpop(queue, 1).get("before")
        out = pipe.execute()
        assert out[0] is True and out[4] == b"1"
        assert out[1][0] == queue.encode() and out[3][0] == queue.encode()
        w.close()
    assert int(admin.get("counter")) == threads
    assert admin.llen(queue) == 10 - 2 * threads
    assert info_int(admin, "stats", "connection_migrations") - before >= 1


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("threads", THREADS)
def test_parked_worker_moves_and_is_served(damselfly, threads, engine):
    srv = start(damselfly, threads, engine)
    queue = key_on_shard(1, threads, prefix="queue:")
    admin = srv.client()
    admin.ping()
    workers = [srv.client() for _ in range(threads)]
    for w in workers:
        w.ping()
    results = []

    def consume(w):
        results.append(w.brpop(queue, 5))

    consumers = [threading.Thread(target=consume, args=(w,)) for w in workers]
    for t in consumers:
        t.start()
    deadline = time.time() + 3
    while info_int(admin, "clients", "blocked_clients") < threads and time.time() < deadline:
        time.sleep(0.02)
    assert info_int(admin, "clients", "blocked_clients") == threads
    elements = [f"e{i}" for i in range(threads)]
    admin.lpush(queue, *elements)
    for t in consumers:
        t.join(6)
    assert sorted(r[1] for r in results) == sorted(e.encode() for e in elements)
    assert info_int(admin, "clients", "blocked_clients") == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_migration_can_be_turned_off(damselfly, engine):
    srv = start(damselfly, 2, engine, "--nomigrate_connections")
    queue = key_on_shard(0, 2, prefix="queue:")
    admin = srv.client()
    admin.rpush(queue, *[str(i) for i in range(20)])
    workers = [srv.client() for _ in range(2)]
    for w in workers:
        for _ in range(5):
            w.brpop(queue, 1)
    assert info_int(admin, "stats", "connection_migrations") == 0


# --- reconnect churn -------------------------------------------------------

CHURN_IDS = 3000
CHURN_CONSUMERS = 8
CHURN_DEADLINE_S = 60.0


class Churn:
    """Producers push unique ids; consumers pop them over many short-lived
    redis-py connections (1 to 4 commands each, then a disconnect), with
    BRPOP or a reliable-fetch BLMOVE + LREM; ghosts connect, send a BRPOP on
    a queue of another thread (a move starts) and vanish at once."""

    def __init__(self, srv, threads):
        self.srv = srv
        by_shard = keys_on_shards(threads, 1 + CHURN_CONSUMERS, prefix="churn")
        # One queue per shard; private lists on their queue's shard, so the
        # BLMOVE is one-shard and migrates too.
        self.queues = [by_shard[s][0] for s in range(threads)]
        self.privates = {}
        for c in range(CHURN_CONSUMERS):
            s = c % threads
            self.privates[c] = (self.queues[s], by_shard[s][1 + c])
        self.ghost_queue = key_on_shard(threads - 1, threads, prefix="ghost")
        self.lock = threading.Lock()
        self.pushed = {}
        self.delivered = {}
        self.twice = []
        self.errors = []
        self.connections = 0
        self.producers_done = threading.Event()
        self.stop_ghosts = threading.Event()
        self.deadline = time.monotonic() + CHURN_DEADLINE_S

    def producer(self, p, count):
        rng = random.Random(p)
        try:
            c = self.srv.client()
            i = 0
            while i < count:
                q = rng.choice(self.queues)
                ids = [f"p{p}-{i + j}" for j in range(min(rng.randint(1, 4), count - i))]
                with self.lock:
                    for ident in ids:
                        self.pushed[ident] = q
                c.lpush(q, *ids)
                i += len(ids)
                if rng.random() < 0.02:   # queues run dry now and then: consumers park
                    time.sleep(0.003)
            c.close()
        except Exception as e:  # noqa: BLE001 - reported by the test
            with self.lock:
                self.errors.append(f"producer {p}: {e!r}")

    def record(self, ident, queue):
        with self.lock:
            if ident in self.delivered:
                self.twice.append(ident)
            self.delivered[ident] = queue

    def consumer(self, c):
        rng = random.Random(100 + c)
        queue, private = self.privates[c]
        reliable = c % 2 == 1
        try:
            while time.monotonic() < self.deadline:
                conn = self.srv.client()
                with self.lock:
                    self.connections += 1
                finished = False
                for _ in range(rng.randint(1, 4)):
                    done_before = self.producers_done.is_set()
                    if reliable:
                        ident = conn.blmove(queue, private, 0.3, "RIGHT", "LEFT")
                        if ident is not None:
                            self.record(ident.decode(), queue)
                            if conn.lrem(private, 1, ident) != 1:
                                raise AssertionError(f"LREM {private} {ident!r} did not remove it")
                    else:
                        r = conn.brpop(queue, 0.3)
                        ident = None if r is None else r[1]
                        if r is not None:
                            self.record(ident.decode(), r[0].decode())
                    if ident is None and done_before:
                        finished = True   # empty for good: only this side pops
                        break
                conn.close()
                if finished:
                    return
            with self.lock:
                self.errors.append(f"consumer {c}: deadline passed")
        except Exception as e:  # noqa: BLE001
            with self.lock:
                self.errors.append(f"consumer {c}: {e!r}")

    def ghost(self, g):
        """Raw sockets that start a move and disconnect during it."""
        rng = random.Random(200 + g)
        cmd = f"*3\r\n$5\r\nBRPOP\r\n${len(self.ghost_queue)}\r\n{self.ghost_queue}\r\n$3\r\n0.2\r\n".encode()
        try:
            while not self.stop_ghosts.is_set() and time.monotonic() < self.deadline:
                s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=5)
                if rng.random() < 0.5:
                    s.sendall(b"*1\r\n$4\r\nPING\r\n")
                    s.recv(64)
                s.sendall(cmd + (b"*1\r\n$4\r\nPING\r\n" if rng.random() < 0.5 else b""))
                if rng.random() < 0.3:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
                s.close()
        except Exception as e:  # noqa: BLE001
            with self.lock:
                self.errors.append(f"ghost {g}: {e!r}")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("threads", THREADS)
def test_reconnect_churn_delivers_every_id_once(damselfly, threads, engine):
    srv = start(damselfly, threads, engine)
    admin = srv.client()
    before = info_int(admin, "stats", "connection_migrations")
    run = Churn(srv, threads)
    consumers = [threading.Thread(target=run.consumer, args=(c,), daemon=True) for c in range(CHURN_CONSUMERS)]
    ghosts = [threading.Thread(target=run.ghost, args=(g,), daemon=True) for g in range(2)]
    producers = [threading.Thread(target=run.producer, args=(p, CHURN_IDS // 2), daemon=True) for p in range(2)]
    for t in consumers + ghosts:
        t.start()
    time.sleep(0.05)
    for t in producers:
        t.start()
    for t in producers:
        t.join(CHURN_DEADLINE_S)
    run.producers_done.set()
    for t in consumers:
        t.join(max(0.1, run.deadline - time.monotonic() + 2))
    run.stop_ghosts.set()
    for t in ghosts:
        t.join(5)
    hung = [t for t in consumers + producers + ghosts if t.is_alive()]
    assert not hung, f"{len(hung)} client threads still running; errors: {run.errors[:5]}"
    assert not run.errors, "\n".join(run.errors[:20])
    assert len(run.pushed) == CHURN_IDS
    lost = [i for i in run.pushed if i not in run.delivered]
    assert not lost, f"{len(lost)} of {CHURN_IDS} ids lost, e.g. {sorted(lost)[:10]}"
    assert not run.twice, f"{len(run.twice)} ids delivered twice, e.g. {run.twice[:10]}"
    wrong = [i for i, q in run.delivered.items() if run.pushed.get(i) != q]
    assert not wrong, f"ids from the wrong queue or never pushed: {wrong[:10]}"
    keys = run.queues + [p for _, p in run.privates.values()] + [run.ghost_queue]
    assert admin.exists(*keys) == 0
    migrations = info_int(admin, "stats", "connection_migrations") - before
    # Most consumer connections start away from their queue's thread and move.
    assert migrations >= run.connections // 4, (migrations, run.connections)
    deadline = time.time() + 3
    while info_int(admin, "clients", "blocked_clients") and time.time() < deadline:
        time.sleep(0.02)
    assert info_int(admin, "clients", "blocked_clients") == 0
    assert admin.ping() is True
    assert srv.alive()


# --- other commands: a streak on one shard ---------------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_a_streak_of_commands_on_one_shard_moves_the_connection(damselfly, engine):
    """16 keyed commands in a row on another thread's shard move the connection
    (EVALSHA by its declared keys too); a client spreading its keys does not move."""
    srv = start(damselfly, 2, engine)
    admin = srv.client()
    here_and_there = [key_on_shard(s, 2, prefix="streak:") for s in (0, 1)]
    clients = [srv.client() for _ in range(4)]       # spread over both threads
    for c in clients:
        c.ping()
    # Spreading keys over both shards: nobody moves.
    before = info_int(admin, "stats", "connection_migrations")
    for c in clients:
        for i in range(40):
            c.incr(here_and_there[i % 2])
    assert info_int(admin, "stats", "connection_migrations") == before
    # One key: every client away from its shard moves, once, and then runs inline.
    key = here_and_there[1]
    for c in clients:
        for _ in range(20):
            c.incr(key)
    moved = info_int(admin, "stats", "connection_migrations") - before
    assert moved >= 1
    start_tx = tx_counts(admin)
    for c in clients:
        for _ in range(10):
            c.incr(key)
    end_tx = tx_counts(admin)
    assert end_tx["inline"] - start_tx["inline"] == 40 and end_tx["quick"] == start_tx["quick"], (start_tx, end_tx)
    assert int(admin.get(here_and_there[0])) == 4 * 20
    assert int(admin.get(key)) == 4 * 20 + 4 * 20 + 4 * 10
    assert info_int(admin, "stats", "connection_migrations") - before == moved
    # EVALSHA with a declared key on the other thread's shard moves a fresh client too.
    sha = admin.script_load("return redis.call('INCR', KEYS[1])")
    scripted = [srv.client() for _ in range(4)]
    for c in scripted:
        c.ping()
    before = info_int(admin, "stats", "connection_migrations")
    for c in scripted:
        for _ in range(20):
            c.evalsha(sha, 1, key)
    assert info_int(admin, "stats", "connection_migrations") - before >= 1
    assert int(admin.get(key)) == 4 * 20 + 4 * 20 + 4 * 10 + 4 * 20
