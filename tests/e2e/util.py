"""Shared helpers: key placement on Damselfly's shards, INFO fields, FLUSHALL."""

import xxhash


def shard_of(key, num_shards):
    """Damselfly places a key on shard (XXH64(key, seed=0) >> 32) % num_shards."""
    if isinstance(key, str):
        key = key.encode()
    return (xxhash.xxh64_intdigest(key, seed=0) >> 32) % num_shards


def keys_on_shards(num_shards, per_shard, prefix="key"):
    """Return {shard: [keys...]} with `per_shard` keys on every shard (deterministic)."""
    out = {s: [] for s in range(num_shards)}
    i = 0
    while any(len(v) < per_shard for v in out.values()):
        assert i < 100000, "could not spread keys over shards"
        k = f"{prefix}:{i}"
        s = shard_of(k, num_shards)
        if len(out[s]) < per_shard:
            out[s].append(k)
        i += 1
    return out


def key_on_shard(shard, num_shards, prefix="key"):
    return keys_on_shards(num_shards, 1, prefix)[shard][0]


def spread_keys(num_shards, per_shard, prefix="key"):
    """Flat list, interleaved so consecutive keys sit on different shards."""
    by = keys_on_shards(num_shards, per_shard, prefix)
    return [by[s][i] for i in range(per_shard) for s in range(num_shards)]


def blocked_clients_settled(conn, timeout=5.0, poll=0.02):
    """Polls INFO clients until ``blocked_clients`` is 0 or ``timeout`` passes; returns the last count."""
    import time
    from resp import to_py
    deadline = time.monotonic() + timeout
    while True:
        info = to_py(conn.call("INFO", "clients")).decode()
        blocked = int(info.split("blocked_clients:")[1].split()[0])
        if blocked == 0 or time.monotonic() > deadline:
            return blocked
        time.sleep(poll)


def rss_kb(pid):
    """A process's resident set (VmRSS) in kB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def require_tool(name, package=None):
    """The path of command-line tool `name`; a missing one fails the test under CI (where
    scripts/install-deps.sh installs it, from Debian's `package`) and skips it elsewhere."""
    import os
    import shutil

    import pytest

    path = shutil.which(name)
    if path:
        return path
    message = f"{name} missing (scripts/install-deps.sh installs {package or name})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def wait_for(predicate, timeout=20.0, step=0.05, what="condition"):
    """Polls `predicate` until it is true; an AssertionError naming `what` after `timeout` s."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def info_ints(port, section, *fields):
    """The INFO `section` fields as ints, read on a connection of its own."""
    from conftest import parse_info
    from resp import RespConn, to_py
    with RespConn(port) as c:
        info = parse_info(to_py(c.call("INFO", section)))
    return tuple(int(info[f]) for f in fields)


def flushall(port):
    from resp import RespConn
    with RespConn(port) as c:
        assert c.call("FLUSHALL") == ("+", b"OK")
