"""No job is handed to a connection that is gone (issue 13).

A worker that sent a multi-key BRPOP (its queue plus priority keys, on several
shards) and closed within a millisecond used to stay parked: the next LPUSH
was handed to the closed connection and lost.  Here, in rounds:

1. consumers open connections and send blocking pops — BLPOP / BRPOP on one
   key and on keys of several shards, BLMPOP, BLMOVE, BRPOPLPUSH, BZPOPMIN,
   BZPOPMAX, BZMPOP — and most of them close at a random moment 0-5 ms later
   (before the command is parsed, while it is scheduled or parking, or once
   parked; half with an abortive RST), while a producer pushes "racing" ids;
2. 50 ms after the last close, "late" ids are pushed to every queue;
3. the consumers still open read their replies.

Then every id is looked for: popped by an open consumer that read it, or still
in a list / sorted set (BLMOVE's destinations included).  A late id — pushed
well after every close — must be found exactly once; a racing id may have been
served to a closing client (as in Redis) but never twice.  Runs with 1, 2 and
4 threads, io_uring and epoll, with and without connection migration.
``DISCONNECT_STRESS_SECONDS`` sets each configuration's duration (CI: 2 s).

The exact pattern of the report is a regression test of its own: a multi-key
BRPOP, a close within 1 ms, then 30 LPUSHes: all 30 values must stay poppable.
"""

import itertools
import os
import random
import socket
import struct
import threading
import time

import pytest

from resp import RespConn, encode, to_py
from util import blocked_clients_settled, keys_on_shards

SECONDS = float(os.environ.get("DISCONNECT_STRESS_SECONDS", "2"))
CONSUMERS = 24


def _close(sock, abortive):
    if abortive:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    sock.close()


class Ids:
    """Unique ids, from the test thread and the producer thread alike."""

    def __init__(self):
        self.counter = itertools.count(1)  # next() is atomic in CPython

    def take(self, kind):
        return f"{kind}{next(self.counter)}"


def pop_commands(queues, zsets, dsts, rnd):
    """(command, how to read the reply) for a random blocking pop."""
    q = rnd.sample(queues, min(3, len(queues)))
    z = rnd.sample(zsets, min(2, len(zsets)))
    choice = rnd.randrange(9)
    if choice == 0:
        return ("BLPOP", q[0], "0"), "pair"
    if choice in (1, 2):
        return ("BRPOP", *q, "0"), "pair"  # the reported shape: several shards
    if choice == 3:
        return ("BLMPOP", "0", str(len(q)), *q, rnd.choice(["LEFT", "RIGHT"]), "COUNT", "2"), "multi"
    if choice == 4:
        return ("BLMOVE", q[0], rnd.choice(dsts), "RIGHT", "LEFT", "0"), "moved"
    if choice == 5:
        return ("BRPOPLPUSH", q[0], rnd.choice(dsts), "0"), "moved"
    if choice == 6:
        return ("BZPOPMIN", *z, "0"), "zpair"
    if choice == 7:
        return ("BZPOPMAX", z[0], "0"), "zpair"
    return ("BZMPOP", "0", str(len(z)), *z, "MIN", "COUNT", "2"), "zmulti"


def popped_ids(kind, reply):
    v = to_py(reply)
    if v is None or kind == "moved":
        return []  # BLMOVE's element is found in its destination list
    if kind in ("pair", "zpair"):
        return [v[1].decode()]
    if kind == "multi":
        return [x.decode() for x in v[1]]
    return [m[0].decode() for m in v[1]]


def push(admin, queues, zsets, ids, kind, per_key):
    pushed = []
    cmds = []
    for key in queues:
        batch = [ids.take(kind) for _ in range(per_key)]
        pushed += batch
        cmds.append(("LPUSH", key, *batch))
    for key in zsets:
        batch = [ids.take(kind) for _ in range(per_key)]
        pushed += batch
        args = []
        for member in batch:
            args += [str(int(member[1:])), member]
        cmds.append(("ZADD", key, *args))
    for r in admin.pipeline(cmds):
        assert r[0] == ":", r
    return pushed


def run_rounds(srv, threads, seconds, seed):
    rnd = random.Random(seed)
    by = keys_on_shards(threads, 2, f"st{seed}")
    queues = [by[s][i] for i in range(2) for s in range(threads)]
    bz = keys_on_shards(threads, 1, f"sz{seed}")
    zsets = [bz[s][0] for s in range(threads)]
    dsts = [f"dst{seed}:{s}" for s in range(2)]
    ids = Ids()
    racing, late, popped, left = [], [], [], []
    where = {}  # id -> the open consumer's command that got it (for failure messages)
    rounds = closed_total = 0
    admin = RespConn(srv.port)
    producer_admin = RespConn(srv.port)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rounds += 1
        consumers = []
        for _ in range(CONSUMERS):
            sock = socket.create_connection(("127.0.0.1", srv.port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            cmd, kind = pop_commands(queues, zsets, dsts, rnd)
            consumers.append([sock, cmd, kind, rnd.random() < 0.75, rnd.uniform(0, 0.005), rnd.random() < 0.5])
        # A producer races the closes with a few ids (those may go to a closing client).
        racing_batch = []
        stop = threading.Event()

        def produce():
            while not stop.is_set():
                racing_batch.extend(push(producer_admin, [rnd.choice(queues)], [rnd.choice(zsets)], ids, "r", 1))
                time.sleep(rnd.uniform(0, 0.002))

        producer = threading.Thread(target=produce)
        start = time.monotonic()
        for c in consumers:
            c[0].sendall(encode(*c[1]))
        producer.start()
        for c in sorted((c for c in consumers if c[3]), key=lambda c: c[4]):
            delay = start + c[4] - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            _close(c[0], c[5])
            closed_total += 1
        stop.set()
        producer.join()
        racing += racing_batch
        # Every close is well in the past: from now on nothing may be lost.
        time.sleep(0.05)
        survivors = [c for c in consumers if not c[3]]
        # Enough on every key for every open consumer (BLMPOP/BZMPOP take two).
        late += push(admin, queues, zsets, ids, "l", max(1, 2 * len(survivors)))
        for c in survivors:
            conn = RespConn.__new__(RespConn)
            conn.sock, conn.buf = c[0], b""
            conn.sock.settimeout(5)
            reply = conn.read_reply()
            popped.extend(popped_ids(c[2], reply))
            where.update((x, " ".join(c[1][:2])) for x in popped_ids(c[2], reply))
            conn.close()
        # What is left goes out of the way, so that the next round's
        # consumers (which may close right after a pop, legitimately) only
        # ever see that round's ids.
        drain(admin, queues + dsts, zsets, left, where)
    drain(admin, queues + dsts, zsets, left, where)
    found = popped + left
    counts = {}
    for x in found:
        counts[x] = counts.get(x, 0) + 1
    duplicated = sorted(x for x, n in counts.items() if n > 1)
    lost_late = sorted(x for x in late if x not in counts)
    lost_racing = [x for x in racing if x not in counts]
    blocked = blocked_clients_settled(admin)
    admin.close()
    producer_admin.close()
    return {
        "rounds": rounds, "closed": closed_total, "late": len(late), "racing": len(racing),
        "popped": len(popped), "lost_late": lost_late, "lost_racing": len(lost_racing),
        "duplicated": [(x, where.get(x)) for x in duplicated], "blocked_after": blocked,
    }


def drain(admin, lists, zsets, into, where):
    """Takes every id still in `lists` and `zsets` out, atomically per key."""
    for key, read in [(k, "LRANGE") for k in lists] + [(k, "ZRANGE") for k in zsets]:
        replies = admin.pipeline([("MULTI",), (read, key, "0", "-1"), ("DEL", key), ("EXEC",)])
        ids = [x.decode() for x in to_py(replies[-1])[0]]
        into += ids
        for x in ids:
            where[x] = where.get(x, "") + f" left in {key}"


CONFIGS = [(t, e, m) for e in ("uring", "epoll") for t in (1, 2, 4) for m in (True, False)]


@pytest.mark.parametrize("threads,engine,migrate", CONFIGS,
                         ids=[f"{e}-{t}t-{'migrate' if m else 'nomigrate'}" for t, e, m in CONFIGS])
def test_no_job_lost_to_a_closed_connection(damselfly, threads, engine, migrate):
    flags = [f"--proactor_threads={threads}", f"--migrate_connections={'true' if migrate else 'false'}"]
    if engine == "epoll":
        flags.append("--force_epoll")
    srv = damselfly(*flags)
    result = run_rounds(srv, threads, SECONDS, seed=threads * 10 + (engine == "epoll") * 2 + migrate)
    print(f"\n{engine} {threads}t migrate={migrate}: {result['rounds']} rounds, {result['closed']} closes, "
          f"{result['late']} late ids, {result['racing']} racing ids ({result['lost_racing']} served to closing "
          f"clients), {result['popped']} popped by open clients")
    assert srv.alive()
    assert not result["duplicated"], f"ids found twice: {result['duplicated'][:10]}"
    assert not result["lost_late"], (
        f"{len(result['lost_late'])} ids pushed 50 ms after every close were lost: {result['lost_late'][:10]}")
    assert result["blocked_after"] == 0, "closed connections stayed parked"


@pytest.mark.parametrize("threads,engine", [(2, "uring"), (4, "uring"), (4, "epoll")])
def test_multikey_brpop_quick_close_loses_nothing(damselfly, threads, engine):
    """The pattern of the report: BRPOP queue + priority keys, close within 1 ms, then pushes."""
    flags = [f"--proactor_threads={threads}"]
    if engine == "epoll":
        flags.append("--force_epoll")
    srv = damselfly(*flags)
    by = keys_on_shards(threads, 1, "kombu")
    queue, *priority = [by[s][0] for s in range(threads)]
    with RespConn(srv.port) as producer:
        for round_ in range(30):
            sock = socket.create_connection(("127.0.0.1", srv.port))
            sock.sendall(encode("BRPOP", queue, *priority, "0"))
            time.sleep(random.uniform(0, 0.001))
            sock.close()
        time.sleep(0.05)
        for i in range(30):
            assert to_py(producer.call("LPUSH", queue, f"job{i}")) >= 1
        assert to_py(producer.call("LLEN", queue)) == 30
        # A late close, after parking, loses nothing either.
        sock = socket.create_connection(("127.0.0.1", srv.port))
        sock.sendall(encode("BRPOP", f"{queue}:empty", *priority, "0"))
        time.sleep(0.1)
        sock.close()
        time.sleep(0.05)
        producer.call("LPUSH", f"{queue}:empty", "late")
        got = []
        with RespConn(srv.port) as worker:
            for _ in range(30):
                got.append(to_py(worker.call("BRPOP", queue, *priority, "1"))[1].decode())
            assert to_py(worker.call("LLEN", f"{queue}:empty")) == 1
        assert sorted(got) == sorted(f"job{i}" for i in range(30))
