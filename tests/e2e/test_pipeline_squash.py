"""Pipeline squashing (--pipeline_squash, issue 16 §2): pipelined commands of one key each are
dispatched together, with one message per thread whose shards they use, and answered in order.

Differential: each pipeline goes in one write to Damselfly (2 and 4 threads, keys spread over
every shard) and to redis-server, and the replies must be equal, byte for byte and in order —
pipelines of squashable commands only, and pipelines where MULTI, a blocking pop, errors,
SELECT or QUIT end a run in the middle — in both modes: runs of one shard's commands (the
default, which keeps every client's view of the order) and runs across shards
(--pipeline_squash_across_shards). The INFO counters show that squashing took place, which
runs each mode makes, and that --pipeline_squash=0 turns it off. Readers running beside a
writer's pipelines never see its writes to different shards out of order.
"""

import random
import time

import pytest

from resp import RespConn, encode, to_py
from util import flushall, info_ints, keys_on_shards, spread_keys

# The kinds of run: another thread's shard's commands with this thread's between them, run in
# order as one transaction (the default); one shard's commands only; any shards' (Dragonfly's).
MODES = [
    "--pipeline_squash_across_shards=false",
    "--pipeline_squash_transactions=false",
    "--pipeline_squash_across_shards=true",
]


def _send(port, cmds):
    """One write holding every command; the replies, in order."""
    with RespConn(port) as c:
        c.send_raw(b"".join(encode(*cmd) for cmd in cmds))
        return [c.read_reply() for _ in cmds]


def _squash_counters(port):
    return info_ints(port, "ALL", "total_pipelined_squashed_commands", "pipeline_squashed_batches")


def _transaction_runs(port):
    """Runs over this thread's shard and another's, run in order as one transaction."""
    return info_ints(port, "ALL", "pipeline_squashed_transactions")[0]


def _hop_counters(port):
    """Messages that carried a run's hops to the other thread's shard, and the commands in them."""
    return info_ints(port, "ALL", "pipeline_squashed_hop_messages", "pipeline_squashed_hop_commands")


def _mixed_commands(keys, n, seed):
    """Squashable commands over `keys`: strings, lists, hashes, sets, sorted sets, with some
    same-key chains (INCR, APPEND, LPUSH/RPOP, ZINCRBY) whose replies show order, and some errors
    (WRONGTYPE, not an integer). The one-element writes (SADD, HSET, HMSET, ZADD, INCR, DECRBY)
    and LRANGE, whose reply is encoded on the shard, read their arguments in place in a run."""
    rnd = random.Random(seed)
    cmds = []
    for i in range(n):
        k = rnd.choice(keys)
        op = rnd.randrange(20)
        if op == 0:
            cmds.append(("SET", "s:" + k, f"v{i}"))
        elif op == 1:
            cmds.append(("GET", "s:" + k))
        elif op == 2:
            cmds.append(("INCR", "n:" + k))
        elif op == 3:
            cmds.append(("APPEND", "s:" + k, f"+{i}"))
        elif op == 4:
            cmds.append(("LPUSH", "l:" + k, f"e{i}"))
        elif op == 5:
            cmds.append(("RPOP", "l:" + k))
        elif op == 6:
            cmds.append(("HSET", "h:" + k, f"f{i % 5}", i))
        elif op == 7:
            cmds.append(("HGET", "h:" + k, f"f{i % 5}"))
        elif op == 8:
            cmds.append(("SADD", "t:" + k, i % 7))
        elif op == 9:
            cmds.append(("SCARD", "t:" + k))
        elif op == 10:
            cmds.append(("LPUSH", "s:" + k, "x"))  # WRONGTYPE once s:k holds a string
        elif op == 11:
            cmds.append(("INCR", "s:" + k))  # not an integer once s:k holds text
        elif op == 12:
            cmds.append(("STRLEN", "s:" + k))
        elif op == 13:
            cmds.append(("LLEN", "l:" + k))
        elif op == 14:
            cmds.append(("ZADD", "z:" + k, rnd.choice(["1", "2.5", "-inf", "x"]), f"m{i % 6}"))
        elif op == 15:
            cmds.append(("ZINCRBY", "z:" + k, 2, f"m{i % 6}"))
        elif op == 16:
            cmds.append(("LRANGE", "l:" + k, rnd.choice([0, 1, -3]), rnd.choice([-1, 2, 100])))
        elif op == 17:
            cmds.append(("HMSET", "h:" + k, f"f{i % 5}", "x" * rnd.choice([1, 70])))
        elif op == 18:
            cmds.append(("DECRBY", "n:" + k, rnd.choice([1, 7, -3])))
        else:
            cmds.append(("ZSCORE", "z:" + k, f"m{i % 6}"))
    return cmds


@pytest.fixture(scope="module")
def redis_port(redis_server):
    return redis_server.port


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("threads", [2, 4])
def test_squashable_pipeline_matches_redis(damselfly, redis_port, threads, mode):
    srv = damselfly(f"--proactor_threads={threads}", "--pipeline_squash=32", mode)
    keys = spread_keys(threads, 8, prefix="sq")
    before, _ = _squash_counters(srv.port)
    for seed, n in ((1, 50), (2, 400), (3, 3000)):
        flushall(srv.port)
        flushall(redis_port)
        cmds = _mixed_commands(keys, n, seed)
        got = _send(srv.port, cmds)
        want = _send(redis_port, cmds)
        for i, (g, w) in enumerate(zip(got, want)):
            assert g == w, f"seed {seed} command {i} {cmds[i]}: {g!r} != {w!r}"
    after, _ = _squash_counters(srv.port)
    assert after > before, "no command was squashed"


def _mixed_with_breaks(keys):
    """Runs of squashable commands broken by commands that end a run."""
    k = keys
    return [
        ("SET", k[0], "a"), ("SET", k[1], "b"), ("INCR", k[2]), ("GET", k[0]),
        # MULTI in the middle: queued commands, EXEC's array, then more squashable ones.
        ("MULTI",), ("SET", k[3], "m"), ("INCR", k[2]), ("GET", k[1]), ("EXEC",),
        ("GET", k[3]), ("INCR", k[2]), ("APPEND", k[1], "c"),
        # A blocking pop that finds an element, one that times out, then more.
        ("RPUSH", k[4], "x", "y"), ("BLPOP", k[4], 1), ("GET", k[0]), ("BLPOP", k[5], "0.05"),
        ("LLEN", k[4]), ("GET", k[1]),
        # Errors of every kind in the middle of a run.
        ("NOSUCHCOMMAND", k[0]), ("GET",), ("INCR", k[0]), ("SET", k[6], "v", "EX", "notanumber"),
        ("GET", k[6]), ("GET", k[2]),
        # SELECT in the middle: the next commands use the other database.
        ("SELECT", 1), ("SET", k[0], "db1"), ("GET", k[0]), ("INCR", k[2]),
        ("SELECT", 0), ("GET", k[0]), ("GET", k[2]),
        # A multi-key command (its own transaction) among one-key ones.
        ("MSET", k[0], "p", k[1], "q", k[2], "r"), ("GET", k[0]), ("MGET", k[0], k[1], k[2]),
        ("DEL", k[1]), ("EXISTS", k[1]), ("GET", k[2]),
    ]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("threads", [2, 4])
def test_runs_broken_by_other_commands_match_redis(damselfly, redis_port, threads, mode):
    srv = damselfly(f"--proactor_threads={threads}", "--pipeline_squash=32", mode)
    keys = spread_keys(threads, 4, prefix="br")
    cmds = _mixed_with_breaks(keys)
    flushall(srv.port)
    flushall(redis_port)
    got = _send(srv.port, cmds)
    want = _send(redis_port, cmds)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"command {i} {cmds[i]}: {g!r} != {w!r}"
    # Twice in a row, to catch state a run leaves behind.
    got = _send(srv.port, cmds)
    flushall(redis_port)
    _send(redis_port, cmds)
    assert got == _send(redis_port, cmds)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("threads", [2, 4])
def test_quit_in_the_middle_of_a_run(damselfly, redis_port, threads, mode):
    srv = damselfly(f"--proactor_threads={threads}", "--pipeline_squash=32", mode)
    keys = spread_keys(threads, 4, prefix="q")
    head = [("SET", k, "before") for k in keys] + [("INCR", keys[0] + ":n")]
    tail = [("SET", k, "after") for k in keys] + [("SET", "after-quit", "1")]
    results = []
    for port in (srv.port, redis_port):
        flushall(port)
        with RespConn(port) as c:
            c.send_raw(b"".join(encode(*cmd) for cmd in head + [("QUIT",)] + tail))
            replies = [c.read_reply() for _ in head + [("QUIT",)]]
            rest, closed = c.read_all_until_close()
            assert closed and rest == b"", (port, rest)
        with RespConn(port) as c:
            state = [c.call("GET", k) for k in keys] + [c.call("EXISTS", "after-quit")]
        results.append((replies, state))
    assert results[0] == results[1]
    assert results[0][1][-1] == (":", 0)


@pytest.mark.parametrize("mode", MODES)
def test_same_key_chains_keep_order_across_many_runs(damselfly, redis_port, mode):
    """Long pipelines on a few keys: every INCR's reply is its position in the key's chain."""
    srv = damselfly("--proactor_threads=4", "--pipeline_squash=8", mode)
    keys = spread_keys(4, 1, prefix="ord")
    cmds = [("INCR", keys[i % len(keys)]) for i in range(2000)]
    got = _send(srv.port, cmds)
    assert [r[1] for r in got] == [i // len(keys) + 1 for i in range(2000)]


def _grouped_commands():
    """SETs of 8 keys on shard 0, then of 8 keys on shard 1, then their GETs in the same
    groups: with two threads every other group is on the other thread's shard (8 in a row
    stays below the 16 that move a connection to that thread)."""
    by = keys_on_shards(2, 8, prefix="g")
    return [(op, k) + (("v",) if op == "SET" else ()) for op in ("SET", "GET") for s in (0, 1) for k in by[s]]


def _assert_replies_as_redis(redis_port, cmds, *servers):
    """The pipeline, sent to redis-server (flushed first) and to each server, answers alike."""
    flushall(redis_port)
    want = _send(redis_port, cmds)
    for srv in servers:
        assert _send(srv.port, cmds) == want, srv.port


def test_counters_and_off_switch(damselfly, redis_port):
    cmds = _grouped_commands()
    on = damselfly("--proactor_threads=2", "--pipeline_squash=32", "--pipeline_squash_transactions=false")
    off = damselfly("--proactor_threads=2", "--pipeline_squash=0")
    # On by default, with runs in order over both shards.
    default = damselfly("--proactor_threads=2")
    _assert_replies_as_redis(redis_port, cmds, on, off, default)
    # Runs of one shard: the other thread's group, its 8 SETs are one run and its 8 GETs
    # another (the local group runs inline, one command at a time).
    assert _squash_counters(on.port) == (16, 2)
    assert _squash_counters(off.port) == (0, 0)
    # In order: from the first command on the other thread's shard to the end, one run
    # (the first group runs inline when it is this thread's), one transaction.
    assert _squash_counters(default.port) in ((24, 1), (32, 1))
    assert _transaction_runs(default.port) == 1
    assert _transaction_runs(on.port) == 0
    # Each run's 8 hops went to the other thread as one message, and came back as one.
    assert _hop_counters(on.port) == (2, 16)
    assert _hop_counters(off.port) == (0, 0)
    # CONFIG RESETSTAT clears them with the other transaction counters.
    for srv in (on, default):
        with RespConn(srv.port) as c:
            assert c.call("CONFIG", "RESETSTAT") == ("+", b"OK")
        assert _squash_counters(srv.port) == (0, 0)
        assert _hop_counters(srv.port) == (0, 0)
        assert _transaction_runs(srv.port) == 0


def test_runs_hold_one_shard_unless_in_order_or_across_shards(damselfly, redis_port):
    """Keys alternating between the shards: with runs of one shard no two consecutive
    commands share one, so nothing is squashed and each command waits for the one before (no
    client can see the second of two writes before the first); in order (the default), one
    run takes them all and runs as one transaction; across shards, the runs take them all."""
    keys = spread_keys(2, 8, prefix="alt")
    cmds = [("SET", k, "v") for k in keys]
    one_shard = damselfly("--proactor_threads=2", "--pipeline_squash_transactions=false")
    in_order = damselfly("--proactor_threads=2")
    across = damselfly("--proactor_threads=2", "--pipeline_squash_across_shards=true")
    _assert_replies_as_redis(redis_port, cmds, one_shard, in_order, across)
    assert _squash_counters(one_shard.port) == (0, 0)
    # The first command runs inline when it is this thread's; the rest is one run.
    assert _squash_counters(in_order.port) in ((15, 1), (16, 1))
    assert _transaction_runs(in_order.port) == 1
    commands, batches = _squash_counters(across.port)
    assert commands >= 2 and batches >= 1
    # With runs of one shard each remote command is a run of its own: one message each.
    # Across shards the local commands run inline between the remote ones, which still
    # leave together.
    assert _hop_counters(one_shard.port) == (8, 8)
    messages, hopped = _hop_counters(across.port)
    assert messages >= 1 and hopped >= 2 * messages


@pytest.mark.parametrize("threads", [2, 4])
def test_readers_never_see_a_pipelines_writes_out_of_order(damselfly, threads):
    """A writer pipelines rounds of SETs over keys alternating between the shards, each round
    writing its number to every key in turn; readers pipeline GETs of the same keys in reverse
    order. A reader that sees round r on a later key must see r or more on every earlier key:
    the runs in order (the default) hold both shards' keys until their last command has run.
    (Across shards, --pipeline_squash_across_shards, a reader may see a later key first.)"""
    import threading

    srv = damselfly(f"--proactor_threads={threads}", "--migrate_connections=false")
    keys = spread_keys(threads, 6, prefix="seen")
    stop = threading.Event()
    errors = []

    def write():
        with RespConn(srv.port) as c:
            for r in range(1, 400):
                c.send_raw(b"".join(encode("SET", k, r) for k in keys))
                for _ in keys:
                    c.read_reply()
        stop.set()

    def read():
        with RespConn(srv.port) as c:
            while not stop.is_set() and not errors:
                c.send_raw(b"".join(encode("GET", k) for k in reversed(keys)))
                seen = [int(to_py(c.read_reply()) or 0) for _ in keys]
                # seen[0] is the last key written; every key written before it was read after it.
                for later, earlier in zip(seen, seen[1:]):
                    if earlier < later:
                        errors.append(seen)
                        break

    readers = [threading.Thread(target=read) for _ in range(3)]
    writer = threading.Thread(target=write)
    for t in readers + [writer]:
        t.start()
    for t in [writer] + readers:
        t.join(60)
    assert not errors, f"a reader saw a later key's round before an earlier key's: {errors[0]}"
    assert _transaction_runs(srv.port) > 0


def test_monitor_sees_squashed_commands_in_order(damselfly):
    srv = damselfly("--proactor_threads=2", "--pipeline_squash=32")
    keys = spread_keys(2, 5, prefix="mon")
    cmds = [("SET", k, "v") for k in keys] + [("GET", k) for k in keys]
    with RespConn(srv.port) as mon:
        assert mon.call("MONITOR") == ("+", b"OK")
        _send(srv.port, cmds)
        seen = []
        while len(seen) < len(cmds):
            line = to_py(mon.read_reply()).decode()
            seen.append(line.split('"')[1::2][:2])
    assert [(s[0].upper(), s[1]) for s in seen] == [(c[0], c[1]) for c in cmds]


def _conn_on_thread(port, thread, opened):
    """A connection that landed on `thread` (CLIENT INFO's thread=); the others are kept open
    in `opened` so that the next one lands elsewhere."""
    for _ in range(16):
        c = RespConn(port)
        opened.append(c)
        info = to_py(c.call("CLIENT", "INFO")).decode()
        if f" thread={thread}" in info:
            return c
    raise AssertionError(f"no connection landed on thread {thread}")


def test_a_buffer_that_must_move_keeps_the_runs_keys(damselfly):
    """A run's keys travel to the other thread without a copy, read there in place in the
    receive buffer, so that buffer must stay as it is while the run is out. Thread 1 sleeps
    (DEBUG SLEEP) while a client on thread 0 pipelines 20 commands on thread 1's shard and then
    the head of a big SET: the run leaves and waits; the big SET's 256 KB arrive meanwhile, more
    than the buffer holds, so the live bytes move to a new buffer and the old one is kept until
    the run's replies are in. Every reply and every value comes out right."""
    srv = damselfly("--proactor_threads=2", "--migrate_connections=false")
    keys = keys_on_shards(2, 10, prefix="pin")[1]
    opened = []
    try:
        sleeper = _conn_on_thread(srv.port, 1, opened)
        client = _conn_on_thread(srv.port, 0, opened)
        cmds = [("SET", k, f"value-of-{k}") for k in keys] + [("GET", k) for k in keys]
        big = b"x" * (256 * 1024)
        tail = encode("SET", keys[0], big)
        sleeper.send_raw(encode("DEBUG", "SLEEP", "0.5"))
        time.sleep(0.05)
        client.send_raw(b"".join(encode(*c) for c in cmds) + tail[:64])
        time.sleep(0.1)
        client.send_raw(tail[64:])
        replies = [client.read_reply() for _ in range(len(cmds) + 1)]
        assert sleeper.read_reply() == ("+", b"OK")
        assert replies == [("+", b"OK")] * 10 + [("$", f"value-of-{k}".encode()) for k in keys] + [("+", b"OK")]
        assert client.call("GET", keys[0]) == ("$", big)
        assert [client.call("GET", k) for k in keys[1:]] == [("$", f"value-of-{k}".encode()) for k in keys[1:]]
    finally:
        for c in opened:
            c.close()
    # The 20 commands went to thread 1 as one run, in one message.
    assert _squash_counters(srv.port) == (20, 1)
    assert _hop_counters(srv.port) == (1, 20)
