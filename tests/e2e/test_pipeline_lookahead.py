"""Pipeline look-ahead (issue 16 §3): before a connection parses the pipelined commands waiting in
its input, it reads each one's argument 1 ahead, hashes it, starts the memory reads of that key's
lookup when its shard is the connection's own (a squashed run's shard does the same for the run's
keys), and hands the hash and shard to the command's parse.

What could go wrong is a hash or shard handed to the wrong command (a key in a buffer that moved,
an argument 1 that is not a key, a frame cut between two reads) or a round-robin placement taken
by a look at something that is not a queue. Differential: the same pipelines, in one write and cut
into pieces that arrive apart, to Damselfly at 1, 2 and 4 threads and to redis-server; the replies
must be equal. The INFO counters show that the look-ahead took place, and not for lone commands
or with --pipeline_lookahead=0. A command over many keys starts their lookups together on each
shard the same way: its replies are checked on every path (one shard, a transaction, MULTI, a
script).
"""

import random
import time

import pytest

from resp import RespConn, encode
from util import flushall, info_ints, spread_keys


@pytest.fixture(scope="module")
def redis_port(redis_server):
    return redis_server.port


def _counters(port):
    return info_ints(port, "TRANSACTION", "pipeline_lookahead_keys", "pipeline_prefetched_keys")


def _send(port, cmds, pieces=None, seed=0):
    """The commands in one write, or cut at random byte offsets into `pieces` writes that arrive
    apart; the replies, in order."""
    data = b"".join(encode(*cmd) for cmd in cmds)
    with RespConn(port) as c:
        if not pieces:
            c.send_raw(data)
        else:
            rnd = random.Random(seed)
            cuts = sorted(rnd.sample(range(1, len(data)), pieces - 1))
            for a, b in zip([0] + cuts, cuts + [len(data)]):
                c.send_raw(data[a:b])
                time.sleep(0.002)
        return [c.read_reply() for _ in cmds]


# Each maker takes (key, i, rnd, keys) and gives one command.
_MAKERS = [
    lambda k, i, rnd, keys: ("SET", k, f"v{i}"),
    lambda k, i, rnd, keys: ("GET", k),
    lambda k, i, rnd, keys: ("INCR", "n:" + k),
    lambda k, i, rnd, keys: ("RPUSH", "l:" + k, i),
    lambda k, i, rnd, keys: ("LPOP", "l:" + k),
    lambda k, i, rnd, keys: ("HSET", "h:" + k, f"f{i % 3}", i),
    lambda k, i, rnd, keys: ("HGETALL", "h:" + k),
    lambda k, i, rnd, keys: ("ECHO", k),
    lambda k, i, rnd, keys: ("PUBLISH", k, "m"),
    lambda k, i, rnd, keys: ("OBJECT", "ENCODING", k),
    lambda k, i, rnd, keys: ("PING",),
    lambda k, i, rnd, keys: ("SELECT", rnd.choice([0, 1])),
    lambda k, i, rnd, keys: ("EXISTS", k, rnd.choice(keys)),
    lambda k, i, rnd, keys: ("MSET", k, f"m{i}", rnd.choice(keys), f"m{i}"),
    lambda k, i, rnd, keys: ("SET", "{tag}" + k, "x" * rnd.choice([1, 50, 3000])),
    lambda k, i, rnd, keys: ("STRLEN", "{tag}" + k),
    lambda k, i, rnd, keys: ("CONFIG", "GET", "maxmemory"),
    lambda k, i, rnd, keys: ("INCR", k),  # not an integer once k holds text
]


def _commands(keys, n, seed):
    """Pipelines whose argument 1 is a key (strings, lists, hashes, counters, hashtags), is not
    a key (ECHO, PUBLISH, OBJECT's subcommand, CONFIG GET), or is absent (PING); SELECT in the
    middle, multi-key commands, errors."""
    rnd = random.Random(seed)
    cmds = [rnd.choice(_MAKERS)(rnd.choice(keys), i, rnd, keys) for i in range(n)]
    cmds.append(("SELECT", 0))
    return cmds


@pytest.mark.parametrize("lookahead", [16, 0])
@pytest.mark.parametrize("threads", [1, 2, 4])
def test_pipelines_match_redis(damselfly, redis_port, threads, lookahead):
    srv = damselfly(f"--proactor_threads={threads}", f"--pipeline_lookahead={lookahead}")
    keys = spread_keys(threads, 6, prefix="la")
    looked_before, prefetched_before = _counters(srv.port)
    for seed, n, pieces in ((1, 40, None), (2, 500, None), (3, 500, 7), (4, 2000, 40)):
        flushall(srv.port)
        flushall(redis_port)
        cmds = _commands(keys, n, seed)
        got = _send(srv.port, cmds, pieces, seed)
        want = _send(redis_port, cmds, pieces, seed)
        for i, (g, w) in enumerate(zip(got, want)):
            assert g == w, f"seed {seed} command {i} {cmds[i]}: {g!r} != {w!r}"
    looked, prefetched = _counters(srv.port)
    if lookahead:
        assert looked > looked_before, "no key was read ahead"
        assert prefetched > prefetched_before, "no lookup was started ahead"
    else:
        assert (looked, prefetched) == (looked_before, prefetched_before), "--pipeline_lookahead=0 read ahead"


def test_keys_read_ahead_survive_buffer_moves(damselfly, redis_port):
    """Big values among small commands make the input buffer grow and compact while keys read
    ahead still wait for their parse (a hash kept for a key's old address must not be used)."""
    srv = damselfly("--proactor_threads=2")
    keys = spread_keys(2, 4, prefix="mv")
    rnd = random.Random(9)
    cmds = []
    for i in range(300):
        k = rnd.choice(keys)
        if i % 25 == 0:
            cmds.append(("SET", k, "b" * rnd.choice([70_000, 300_000])))
        elif i % 2:
            cmds.append(("STRLEN", k))
        else:
            cmds.append(("APPEND", k, f"+{i}"))
    for pieces in (None, 13, 90):
        flushall(srv.port)
        flushall(redis_port)
        got = _send(srv.port, cmds, pieces, 5)
        want = _send(redis_port, cmds, pieces, 5)
        for i, (g, w) in enumerate(zip(got, want)):
            assert g == w, f"pieces {pieces} command {i} {cmds[i][:2]}: {g!r} != {w!r}"


def test_a_lone_command_is_not_read_ahead(damselfly):
    """Pipeline 1: each command runs as soon as it is parsed, with nothing to overlap."""
    srv = damselfly("--proactor_threads=1")
    with RespConn(srv.port) as c:
        looked, prefetched = _counters(srv.port)
        for i in range(50):
            assert c.call("SET", f"lone:{i}", "v") == ("+", b"OK")
            assert c.call("GET", f"lone:{i}") == ("$", b"v")
        assert _counters(srv.port) == (looked, prefetched)
        # Pipelined, the same commands are.
        c.send_raw(b"".join(encode("GET", f"lone:{i}") for i in range(50)))
        assert [c.read_reply() for _ in range(50)] == [("$", b"v")] * 50
        after = _counters(srv.port)
        assert after[0] > looked and after[1] > prefetched


def test_one_key_pipelines_pause_the_look_ahead(damselfly, redis_port):
    """A batch whose keys are all one (a producer filling one queue) has nothing to overlap: the
    connection stops looking ahead for a while (256 commands), then looks again."""
    srv = damselfly("--proactor_threads=1")
    flushall(redis_port)
    one_key = [("RPUSH", "queue:one", f"job{i}") for i in range(600)]
    spread = [("SET", f"spread:{i}", i) for i in range(600)]
    with RespConn(srv.port) as c, RespConn(redis_port) as r:
        looked, _ = _counters(srv.port)
        for conn in (c, r):
            conn.send_raw(b"".join(encode(*cmd) for cmd in one_key))
        assert [c.read_reply() for _ in one_key] == [r.read_reply() for _ in one_key]
        paused, _ = _counters(srv.port)
        # Without the pause every command's key would be read ahead once (600).
        assert 0 < paused - looked <= 4 * 17, paused - looked
        for conn in (c, r):
            conn.send_raw(b"".join(encode(*cmd) for cmd in spread))
        assert [c.read_reply() for _ in spread] == [r.read_reply() for _ in spread]
        resumed, _ = _counters(srv.port)
        # The pause ends within 256 commands; the rest are read ahead.
        assert resumed - paused >= 600 - 256 - 17, resumed - paused


@pytest.mark.parametrize("threads", [1, 4])
def test_multi_key_commands_match_redis(damselfly, redis_port, threads):
    """A command over several keys of one shard starts their lookups together (the same stages,
    inside the command): MGET, MSET, EXISTS, DEL over many keys, alone (one shard or a
    transaction over several), inside MULTI and inside a script, against redis-server."""
    srv = damselfly(f"--proactor_threads={threads}")
    keys = spread_keys(threads, 12, prefix="mk")
    rnd = random.Random(11)
    script = "return {redis.call('MSET', unpack(ARGV)), redis.call('MGET', unpack(KEYS))}"
    cmds = []
    for i in range(40):
        some = rnd.sample(keys, rnd.choice([2, 5, len(keys)]))
        pairs = [x for k in some for x in (k, f"v{i}:{k}")]
        cmds += [("MSET", *pairs), ("MGET", *rnd.sample(keys, 7)), ("EXISTS", *some),
                 ("MULTI",), ("MGET", *some), ("DEL", *rnd.sample(some, len(some) // 2)), ("EXEC",),
                 ("EVAL", script, len(some), *some, *pairs[: 2 * len(some)])]
    for port in (srv.port, redis_port):
        flushall(port)
    got = _send(srv.port, cmds)
    want = _send(redis_port, cmds)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"command {i} {cmds[i][:3]}: {g!r} != {w!r}"
