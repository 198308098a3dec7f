"""Differential testing: the same random command stream goes to Damselfly
(--proactor_threads=4) and to a real redis-server; every raw RESP reply must match."""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import difftools as dt
from resp import RespConn

SEED = 20240601
N_RESP2 = 3000
N_RESP3 = 1000


@pytest.fixture(scope="module")
def pair(damselfly_module, redis_server):
    d = damselfly_module("--proactor_threads=4", "--dbnum=16")
    return d, redis_server


def snapshot(conn, dbs=(0, 1, 2)):
    """Everything observable about the keyspace (values, types, whether a TTL is set)."""
    out = {}
    for db in dbs:
        assert conn.call("SELECT", str(db)) == ("+", b"OK")
        keys = sorted(x[1] for x in conn.call("KEYS", "*")[1])
        for k in keys:
            typ = conn.call("TYPE", k)
            val = conn.call("GET", k) if typ == ("+", b"string") else None
            ttl = conn.call("TTL", k)[1]
            out[(db, k)] = (typ, val, "ttl" if ttl > 0 else ttl)
    conn.call("SELECT", "0")
    return out


def _fresh(conn, proto):
    assert conn.call("FLUSHALL") == ("+", b"OK")
    assert conn.call("SELECT", "0") == ("+", b"OK")
    rep = conn.call("HELLO", str(proto))
    assert rep[0] in "*%", rep


@pytest.mark.parametrize("proto,n,seed", [(2, N_RESP2, SEED), (3, N_RESP3, SEED + 1)], ids=["resp2", "resp3"])
def test_differential_random(pair, proto, n, seed):
    d, r = pair
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        _fresh(dc, proto)
        _fresh(rc, proto)
        types = [t for t in dt.probe_type_commands(dc) if t in dt.probe_type_commands(rc)]
        chooser = dt.RandomChooser(random.Random(seed))
        commands = [dt.gen_command(chooser, types) for _ in range(n)]
        compared = dt.compare_sequence(dc, rc, commands)
        assert snapshot(dc) == snapshot(rc)
    print(f"\ndifferential[resp{proto}]: compared {compared} commands "
          f"(seed {seed}, wrong-type material: {types or 'none'})")
    assert compared >= n


class DataChooser:
    """Chooser backed by hypothesis' data.draw, so failures shrink per choice."""

    def __init__(self, data):
        self.data = data

    def choice(self, seq):
        return self.data.draw(st.sampled_from(list(seq)))

    def randint(self, a, b):
        return self.data.draw(st.integers(a, b))


@pytest.fixture(scope="module")
def hyp_total():
    total = [0, 0]  # commands, examples
    yield total
    print(f"\ndifferential[hypothesis]: compared {total[0]} commands in {total[1]} examples")


@settings(max_examples=40, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data(), length=st.integers(1, 40))
def test_differential_hypothesis(pair, hyp_total, data, length):
    d, r = pair
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        _fresh(dc, 2)
        _fresh(rc, 2)
        c = DataChooser(data)
        commands = [dt.gen_command(c) for _ in range(length)]
        hyp_total[0] += dt.compare_sequence(dc, rc, commands)
        hyp_total[1] += 1
        assert snapshot(dc) == snapshot(rc)

