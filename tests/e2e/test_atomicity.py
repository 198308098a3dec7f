"""MSET/MGET across shards are atomic: a reader never sees a mix of two MSETs."""

import threading
import time

import pytest

from resp import RespConn, encode
from util import spread_keys

DURATION_S = 4.0
WRITERS = 3
READERS = 3
PIPELINE = 8  # commands in flight per connection, to raise contention


def _run(port, duration=DURATION_S, keys=None, torn_writer=False):
    """Returns (reads, writes, violations). `torn_writer` makes writers use separate
    SETs instead of MSET: the harness self-test uses it to prove detection works."""
    keys = keys or spread_keys(4, 2, "atom")  # 8 keys, two on each of 4 shards
    stop = time.monotonic() + duration
    stats = {"reads": 0, "writes": 0}
    violations = []
    lock = threading.Lock()
    errors = []

    def writer(wid):
        try:
            with RespConn(port) as c:
                n = 0
                while time.monotonic() < stop and n < 10_000_000:
                    batch = []
                    for _ in range(PIPELINE):
                        n += 1
                        val = f"w{wid}-{n}"
                        if torn_writer:
                            # one round trip per SET so other clients can interleave
                            for k in keys:
                                assert c.call("SET", k, val) == ("+", b"OK")
                        else:
                            batch.append(encode("MSET", *[x for k in keys for x in (k, val)]))
                    c.send_raw(b"".join(batch))
                    for _ in batch:
                        assert c.read_reply() == ("+", b"OK")
                with lock:
                    stats["writes"] += n
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    def reader():
        try:
            with RespConn(port) as c:
                n = 0
                mget = encode("MGET", *keys) * PIPELINE
                while time.monotonic() < stop and n < 10_000_000:
                    c.send_raw(mget)
                    for _ in range(PIPELINE):
                        n += 1
                        rep = c.read_reply()
                        assert rep[0] == "*" and len(rep[1]) == len(keys), rep
                        vals = {v for _, v in rep[1]}
                        if len(vals) != 1:
                            with lock:
                                if len(violations) < 10:
                                    violations.append(rep[1])
                with lock:
                    stats["reads"] += n
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    with RespConn(port) as c:
        assert c.call("MSET", *[x for k in keys for x in (k, "init")]) == ("+", b"OK")
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    threads += [threading.Thread(target=reader) for _ in range(READERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 30)
        assert not t.is_alive(), "worker thread hung"
    assert not errors, errors
    return stats["reads"], stats["writes"], violations


def test_mset_mget_atomic_across_shards(damselfly):
    srv = damselfly("--proactor_threads=4")
    reads, writes, violations = _run(srv.port)
    print(f"\natomicity: {reads} MGETs against {writes} MSETs over 8 keys on 4 shards, "
          f"{len(violations)} torn reads")
    assert not violations, f"MGET saw a mix of values: {violations[:3]}"
    assert reads >= 500 and writes >= 500, "too little work to say anything"


def test_detector_catches_torn_writes(redis_server):
    """Harness self-check: with non-atomic writers the same readers must see mixes."""
    reads, writes, violations = _run(redis_server.port, duration=1.5, torn_writer=True)
    if not violations:
        pytest.fail(f"torn writes went unnoticed ({reads} reads, {writes} writes)")
