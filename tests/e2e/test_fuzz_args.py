"""Differential argument fuzzer: every command of Damselfly's COMMAND table, called with
adversarial arguments, must answer as redis-server does and never end the server.

Seeded and time-bounded: ``FUZZ_SEED`` (default: 1 under CI, else random; printed) and ``FUZZ_SECONDS``
(default 45). A release run: ``FUZZ_SECONDS=600``. See fuzz_args.py for the generator and
fuzz_known_differences.py for the accepted differences.
"""

import collections
import os
import random
import sys
import time

import pytest

import fuzz_args as fz
from fuzz_known_differences import known
from resp import RespConn


def _seed():
    """FUZZ_SEED, else a fixed seed under CI (a gate must not fail on a draw), else a random one."""
    value = os.environ.get("FUZZ_SEED")
    if value:
        return int(value)
    return 1 if os.environ.get("CI") else random.randrange(1 << 31)


def test_fuzz_arguments_against_redis(damselfly, redis_server):
    seed = _seed()
    seconds = float(os.environ.get("FUZZ_SECONDS", "45"))
    print(f"\nfuzz_args: FUZZ_SEED={seed} FUZZ_SECONDS={seconds}", file=sys.stderr)
    srv = damselfly("--proactor_threads=2")
    dconn, rconn = RespConn(srv.port), RespConn(redis_server.port)
    gen = fz.Generator(seed, fz.command_table(dconn))
    unexplained = {}
    explained = {}
    calls = 0
    # The last calls, named when a server stops answering outside call_both (a reply
    # still owed to an earlier call shows up as a timeout in the next pool reset).
    recent = collections.deque(maxlen=5)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            try:
                fz.reset_pool(dconn)
                fz.reset_pool(rconn)
            except (TimeoutError, OSError) as e:
                raise AssertionError(f"pool reset failed ({e!r}; seed {seed}) after "
                                     f"{[fz.short(c) for c in recent]}") from e
            cmd = gen.call()
            recent.append(cmd)
            calls += 1
            if fz.redis_would_stall(cmd):
                dfly, _ = fz.call_both(dconn, None, cmd)
                assert dfly[0] not in ("timeout", "closed"), f"no reply to {fz.short(cmd)} (seed {seed})"
                assert dconn.call("PING") == ("+", b"PONG"), f"no PING after {fz.short(cmd)} (seed {seed})"
                entry = known(cmd, "redis-stalls", dfly, None)
                assert entry is not None, f"{fz.short(cmd)} would stall redis-server but is not a known difference"
                explained[entry["reason"]] = explained.get(entry["reason"], 0) + 1
                continue
            dfly, redis = fz.call_both(dconn, rconn, cmd)
            if dfly[0] in ("timeout", "closed") or redis[0] in ("timeout", "closed"):
                dconn.close()
                rconn.close()
                assert srv.alive(), f"Damselfly exited (seed {seed}) on {fz.short(cmd)}\n{srv.log_tail(30)}"
                dconn, rconn = RespConn(srv.port), RespConn(redis_server.port)
            assert dconn.call("PING") == ("+", b"PONG"), f"no PING after {fz.short(cmd)} (seed {seed})"
            kind = fz.classify(cmd, dfly, redis)
            if kind is None and cmd[0].lower() not in fz.NONDETERMINISTIC and not fz.is_err(dfly):
                if fz.pool_state(dconn) != fz.pool_state(rconn):
                    kind = "state"
            if kind is None:
                continue
            entry = known(cmd, kind, dfly, redis)
            bucket = (cmd[0].lower(), kind, fz.is_err(dfly) and dfly[1][:60], fz.is_err(redis) and redis[1][:60])
            if entry is not None:
                explained[entry["reason"]] = explained.get(entry["reason"], 0) + 1
                continue
            if bucket not in unexplained:
                unexplained[bucket] = (fz.short(cmd), dfly if len(repr(dfly)) < 300 else repr(dfly)[:300],
                                       redis if len(repr(redis)) < 300 else repr(redis)[:300])
    finally:
        dconn.close()
        rconn.close()
    print(f"fuzz_args: {calls} calls, {sum(explained.values())} known differences, "
          f"{len(unexplained)} unexplained kinds (seed {seed})", file=sys.stderr)
    for reason, n in sorted(explained.items(), key=lambda x: -x[1]):
        print(f"  known x{n}: {reason}", file=sys.stderr)
    report = "\n".join(f"{b[1]}: {cmd}\n   damselfly={d!r}\n   redis=    {r!r}"
                       for b, (cmd, d, r) in sorted(unexplained.items(), key=lambda x: repr(x[0])))
    assert not unexplained, f"{len(unexplained)} unexplained differences (FUZZ_SEED={seed}):\n{report}"
    assert calls > 100, f"only {calls} calls in {seconds}s"
