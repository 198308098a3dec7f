"""Transaction-type counters (INFO TRANSACTION) with 2 threads / 2 shards.

    inline  - single-shard command run on the connection's own thread/shard
    quick   - single-shard command on another thread's shard
    normal / ooo - multi-shard command (MSET over both shards)
    global  - whole-keyspace command (FLUSHALL)

Which thread a connection lives on is not assumed from accept order alone: it is
measured (GET on a shard-0 key is inline exactly on thread 0), and round-robin
placement is then checked on consecutively opened connections.
"""

import pytest

from conftest import parse_info, parse_kv_list
from resp import RespConn, to_py
from util import key_on_shard, shard_of

TX_KINDS = ("global", "normal", "ooo", "quick", "inline")


def tx_counters(conn):
    info = parse_info(to_py(conn.call("INFO", "TRANSACTION")))
    assert "tx_type_cnt" in info, f"no tx_type_cnt in INFO TRANSACTION: {sorted(info)}"
    cnt = {k: int(v) for k, v in parse_kv_list(info["tx_type_cnt"]).items()}
    assert set(cnt) >= set(TX_KINDS), cnt
    width = {k: int(v) for k, v in parse_kv_list(info.get("tx_width_freq", "")).items()}
    return cnt, width, info


def test_parse_helpers():
    text = (b"# Transaction\r\ntx_type_cnt:global=0,normal=3,ooo=1,quick=10,inline=20\r\n"
            b"tx_width_freq:w1=5,w2=7\r\ntx_schedule_cancel_total:0\r\ntx_queue_len:0\r\n")
    info = parse_info(text)
    assert parse_kv_list(info["tx_type_cnt"]) == {"global": "0", "normal": "3", "ooo": "1",
                                                  "quick": "10", "inline": "20"}
    assert parse_kv_list(info["tx_width_freq"]) == {"w1": "5", "w2": "7"}
    assert info["tx_queue_len"] == "0"
    k0, k1 = key_on_shard(0, 2, "tx"), key_on_shard(1, 2, "tx")
    assert (shard_of(k0, 2), shard_of(k1, 2)) == (0, 1)


@pytest.fixture
def tx_server(damselfly, only_damselfly):
    return damselfly("--proactor_threads=2", "--num_shards=2")


class Probe:
    """Measures counter deltas caused by one command, net of what INFO itself adds."""

    def __init__(self, stats_conn):
        self.stats = stats_conn
        a, _, _ = tx_counters(stats_conn)
        b, _, _ = tx_counters(stats_conn)
        self.info_cost = {k: b[k] - a[k] for k in TX_KINDS}

    def delta(self, conn, *cmd, expect=None):
        before, wb, _ = tx_counters(self.stats)
        rep = conn.call(*cmd)
        if expect is not None:
            assert rep == expect, (cmd, rep)
        after, wa, _ = tx_counters(self.stats)
        d = {k: after[k] - before[k] - self.info_cost[k] for k in TX_KINDS}
        dw = {k: wa.get(k, 0) - wb.get(k, 0) for k in set(wa) | set(wb)}
        return d, dw


def thread_of(probe, conn, k0, k1):
    """0 or 1: GET k0 is inline on thread 0, GET k1 is inline on thread 1."""
    d0, _ = probe.delta(conn, "GET", k0)
    d1, _ = probe.delta(conn, "GET", k1)
    assert sorted([d0["inline"], d1["inline"]]) == [0, 1], (d0, d1)
    return 0 if d0["inline"] == 1 else 1


def test_tx_type_counters(tx_server):
    k0, k1 = key_on_shard(0, 2, "tx"), key_on_shard(1, 2, "tx")
    # Open connections in order; round robin puts consecutive ones on different threads.
    conns = [RespConn(tx_server.port) for _ in range(3)]
    try:
        for c in conns:
            assert c.call("PING") == ("+", b"PONG")  # accepted in this order
        stats = conns[2]
        probe = Probe(stats)
        t_a, t_b = thread_of(probe, conns[0], k0, k1), thread_of(probe, conns[1], k0, k1)
        assert t_a != t_b, "consecutive connections must land on different threads (round robin)"
        c0 = conns[0] if t_a == 0 else conns[1]  # lives on thread 0 / shard 0
        c1 = conns[1] if t_a == 0 else conns[0]

        d, _ = probe.delta(c0, "SET", k0, "v", expect=("+", b"OK"))
        assert d == {"global": 0, "normal": 0, "ooo": 0, "quick": 0, "inline": 1}, d
        d, _ = probe.delta(c0, "GET", k0, expect=("$", b"v"))
        assert d == {"global": 0, "normal": 0, "ooo": 0, "quick": 0, "inline": 1}, d
        d, _ = probe.delta(c0, "GET", k1, expect=("$", None))
        assert d == {"global": 0, "normal": 0, "ooo": 0, "quick": 1, "inline": 0}, d
        d, _ = probe.delta(c1, "GET", k1, expect=("$", None))
        assert d["inline"] == 1 and d["quick"] == 0, d
        d, _ = probe.delta(c1, "GET", k0, expect=("$", b"v"))
        assert d["quick"] == 1 and d["inline"] == 0, d

        d, w = probe.delta(c0, "MSET", k0, "a", k1, "b", expect=("+", b"OK"))
        assert d["normal"] + d["ooo"] == 1, d
        assert d["global"] == 0 and d["quick"] == 0 and d["inline"] == 0, d
        assert w.get("w2", 0) == 1, f"tx_width_freq w2 should grow by 1 for a 2-shard MSET: {w}"
        assert c1.call("MGET", k0, k1) == ("*", [("$", b"a"), ("$", b"b")])

        d, _ = probe.delta(c1, "FLUSHALL", expect=("+", b"OK"))
        assert d["global"] == 1, d
        assert d["normal"] == d["ooo"] == d["quick"] == d["inline"] == 0, d

        _, _, info = tx_counters(stats)
        assert int(info["tx_queue_len"]) >= 0
        assert int(info["tx_schedule_cancel_total"]) >= 0
    finally:
        for c in conns:
            c.close()
