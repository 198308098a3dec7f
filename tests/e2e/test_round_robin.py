"""Round-robin queue placement: ``--shard_round_robin_prefix=queue:``.

There is no per-shard INFO and no DEBUG SHARD yet, so placement is observed
through ``INFO TRANSACTION``: with one shard per thread, a single-key command
from a connection counts as ``inline`` exactly when the connection's thread
owns the key's shard.  Connections are labelled with the shard they own by
probing keys whose hash placement is known (``util.key_on_shard``); then every
queue's owner is found the same way.

With 4 shards and 8 queues ``queue:q0..q7`` first touched in order, queue i
must sit on shard i % 4 (two per shard), whatever their hashes say; a key
``{queue:q1}:inprogress`` follows its tag onto the queue's shard, so LMOVE
between them is a single-shard command (``tx_width_freq`` does not grow).
Sidekiq's ``queues`` set does not match ``queue:`` and stays hash-placed.
"""

import pytest

from conftest import parse_info, parse_kv_list
from resp import RespConn, encode, to_py
from util import key_on_shard, shard_of

NUM = 4
TX_KINDS = ("global", "normal", "ooo", "quick", "inline")
QUEUES = [f"queue:q{i}" for i in range(8)]


def counters(conn):
    info = parse_info(to_py(conn.call("INFO", "TRANSACTION")))
    cnt = {k: int(v) for k, v in parse_kv_list(info["tx_type_cnt"]).items()}
    width = {k: int(v) for k, v in parse_kv_list(info.get("tx_width_freq", "")).items()}
    return cnt, width


class Placement:
    """Finds which shard owns a key, from a set of connections one per thread."""

    def __init__(self, port):
        self.conns = [RespConn(port) for _ in range(NUM)]
        self.stats = RespConn(port)
        a, _ = counters(self.stats)
        b, _ = counters(self.stats)
        self.info_cost = {k: b[k] - a[k] for k in TX_KINDS}
        self.owner = {}        # shard -> connection
        for s in range(NUM):
            probe = key_on_shard(s, NUM, "rrprobe")
            hits = [c for c in self.conns if self.delta(c, "EXISTS", probe)[0]["inline"] == 1]
            assert len(hits) == 1, f"exactly one connection must be on shard {s}'s thread"
            self.owner[s] = hits[0]
        assert len({id(c) for c in self.owner.values()}) == NUM

    def delta(self, conn, *cmd):
        before, wb = counters(self.stats)
        rep = conn.call(*cmd)
        after, wa = counters(self.stats)
        d = {k: after[k] - before[k] - self.info_cost[k] for k in TX_KINDS}
        dw = {k: wa.get(k, 0) - wb.get(k, 0) for k in set(wa) | set(wb)}
        return d, dw, rep

    def shard_of(self, key):
        found = [s for s, c in self.owner.items() if self.delta(c, "LLEN", key)[0]["inline"] == 1]
        assert len(found) == 1, (key, found)
        return found[0]

    def close(self):
        for c in self.conns + [self.stats]:
            c.close()


@pytest.fixture
def rr(damselfly, only_damselfly):
    srv = damselfly(f"--proactor_threads={NUM}", "--shard_round_robin_prefix=queue:")
    p = Placement(srv.port)
    yield srv, p
    p.close()


def test_queues_spread_round_robin(rr):
    srv, p = rr
    with RespConn(srv.port) as c:
        for i, q in enumerate(QUEUES):                      # first seen in this order
            assert c.call("RPUSH", q, f"job{i}") == (":", 1)
        placed = [p.shard_of(q) for q in QUEUES]
        assert placed == [i % NUM for i in range(8)], placed
        assert sorted(placed.count(s) for s in range(NUM)) == [2] * NUM
        # placement is sticky and survives the key's deletion
        assert c.call("DEL", *QUEUES) == (":", 8)
        assert [p.shard_of(q) for q in QUEUES] == placed
        # Sidekiq's `queues` set is not a queue: hash placement
        c.call("SADD", "queues", "q0")
        d, _, rep = p.delta(p.owner[shard_of("queues", NUM)], "SCARD", "queues")
        assert rep == (":", 1) and d["inline"] == 1, (d, rep)


def test_hashtag_private_lists_share_the_queue_shard(rr):
    srv, p = rr
    with RespConn(srv.port) as c:
        for q in QUEUES:
            c.call("RPUSH", q, "a", "b", "c")
        for i, q in enumerate(QUEUES):
            inprogress = "{%s}:inprogress:host1" % q
            owner = p.owner[p.shard_of(q)]
            d, w, rep = p.delta(owner, "LMOVE", q, inprogress, "RIGHT", "LEFT")
            assert rep == ("$", b"c"), rep
            assert d["inline"] == 1 and d["normal"] == d["ooo"] == 0, (q, d)
            assert not any(w.values()), f"LMOVE {q} -> {inprogress} took a multi-shard transaction: {w}"
            assert p.shard_of(inprogress) == p.shard_of(q)
            # from another thread: one hop, still no multi-shard transaction
            other = p.owner[(p.shard_of(q) + 1) % NUM]
            d, w, rep = p.delta(other, "RPOPLPUSH", q, inprogress)
            assert rep == ("$", b"b") and d["quick"] == 1 and not any(w.values()), (d, w, rep)
            assert to_py(c.call("LRANGE", inprogress, "0", "-1")) == [b"b", b"c"]


def test_brpop_on_round_robin_queue_is_inline_on_owner(rr):
    srv, p = rr
    with RespConn(srv.port) as c:
        for q in QUEUES:
            c.call("RPUSH", q, *[f"{q}:{j}" for j in range(20)])
    for q in QUEUES:
        owner = p.owner[p.shard_of(q)]
        for j in range(20):
            d, w, rep = p.delta(owner, "BRPOP", q, "1")
            assert to_py(rep) == [q.encode(), f"{q}:{19 - j}".encode()]
            assert d["inline"] == 1 and d["normal"] == 0, d
    with RespConn(srv.port) as c:
        assert c.call("EXISTS", *QUEUES) == (":", 0)


def test_without_prefix_queues_follow_the_hash(damselfly, only_damselfly):
    srv = damselfly(f"--proactor_threads={NUM}")
    p = Placement(srv.port)
    try:
        with RespConn(srv.port) as c:
            for q in QUEUES:
                c.call("RPUSH", q, "x")
        assert [p.shard_of(q) for q in QUEUES] == [shard_of(q, NUM) for q in QUEUES]
    finally:
        p.close()


def test_a_look_ahead_takes_no_placement(rr):
    """A pipelined command's argument 1 is read ahead of its parse (issue 16's look-ahead); a
    queue name there that is not a key (ECHO, PUBLISH) must not take a place in the turn."""
    srv, p = rr
    with RespConn(srv.port) as c:
        cmds = []
        for i, q in enumerate(QUEUES):
            cmds += [("ECHO", f"queue:not-a-queue-{i}"), ("PUBLISH", f"queue:channel-{i}", "m"),
                     ("RPUSH", q, f"job{i}")]
        c.send_raw(b"".join(encode(*cmd) for cmd in cmds))
        replies = [c.read_reply() for _ in cmds]
        assert replies[2::3] == [(":", 1)] * len(QUEUES), replies
        assert [p.shard_of(q) for q in QUEUES] == [i % NUM for i in range(8)]
