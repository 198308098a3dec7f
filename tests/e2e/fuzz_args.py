"""Differential argument fuzzer: the generator, the reference state and the comparison.

Used by ``test_fuzz_args.py`` (seeded, time-bounded, in CI) and runnable by hand for a
longer release run::

    FUZZ_SEED=1234 FUZZ_SECONDS=600 DAMSELFLY_BIN=.build/release/damselfly CI=1 \
        python3 -m pytest tests/e2e/test_fuzz_args.py -q -s

Every iteration resets a small key pool holding every type on both servers, sends one
generated call to Damselfly and to redis-server, compares the replies (error class,
error text, and the reply itself for deterministic commands), and, after a write,
compares the state of the whole pool. Known, explained differences live in
``fuzz_known_differences.py``.
"""

import random
import socket
import time

from resp import ConnectionClosed, RespConn, encode, to_py

# ---------------------------------------------------------------------------
# the key pool: one key of every type (and shape), reset before every call
# ---------------------------------------------------------------------------

POOL = {
    "fz:str": [("SET", "fz:str", "hello")],
    "fz:int": [("SET", "fz:int", "42")],
    "fz:float": [("SET", "fz:float", "3.5")],
    "fz:bits": [("SET", "fz:bits", b"\xff\x00\x0f")],
    "fz:list": [("RPUSH", "fz:list", "a", "b", "c", "1", "2", "a")],
    "fz:hash": [("HSET", "fz:hash", "f1", "v1", "f2", "2", "f3", "3.5")],
    "fz:set": [("SADD", "fz:set", "a", "b", "c", "1")],
    "fz:iset": [("SADD", "fz:iset", "1", "2", "3")],
    "fz:zset": [("ZADD", "fz:zset", "1", "a", "2", "b", "3", "c", "-inf", "m", "inf", "p")],
    "fz:zlex": [("ZADD", "fz:zlex", "0", "a", "0", "b", "0", "c", "0", "d")],
    "fz:geo": [("GEOADD", "fz:geo", "13.361389", "38.115556", "Palermo", "15.087269", "37.502669", "Catania")],
    # Explicit ids: both servers must hold the same entries.
    "fz:stream": [("XADD", "fz:stream", "1-1", "f1", "v1"), ("XADD", "fz:stream", "2-1", "f2", "2"),
                  ("XGROUP", "CREATE", "fz:stream", "grp", "0"),
                  ("XREADGROUP", "GROUP", "grp", "alice", "COUNT", "1", "STREAMS", "fz:stream", ">")],
    "fz:missing": [],
}
KEYS = list(POOL)

BIG = "x" * (1024 * 1024)

VALUES = [
    "0", "1", "-1", "2", "3", "-2", "10", "100",
    "2147483647", "2147483648", "-2147483648", "-2147483649",
    "4294967296", "9223372036854775807", "-9223372036854775808",
    "9223372036854775808", "-9223372036854775809", "18446744073709551616",
    "4611686018427387904", "-4611686018427387904", "536870912", "4294967295", "8589934592",
    "1e308", "-1e308", "1e309", "inf", "-inf", "+inf", "nan", "-nan", "1.5", "-0", "0.0", "1e-320",
    "0x10", " 1", "1 ", "01", "+1", "",
    "abc", "a", "b", "c", "f1", "f2", "m", "hello",
    "\x00", "a\x00b", "\r\n", "a\r\nb", "\xff\xfe", "\u00e9t\u00e9", "\U0001f600",
    "*", "?", "[a-z]", "\\", "(", "[", "-", "+", "(1", "[a", "(a", "(inf", "[-", "-inf", "+inf",
    # streams (ids, groups, consumers), geo (members, coordinates, radii)
    "0-0", "1-1", "2-1", "1-0", "18446744073709551615-18446744073709551615", "$", ">", "grp", "alice",
    "Palermo", "Catania", "13.361389", "38.115556", "-180", "85.05112879", "200", "1000",
]

# Option keywords of every family (sent in both cases at random).
KEYWORDS = [
    "NX", "XX", "GT", "LT", "CH", "INCR", "EX", "PX", "EXAT", "PXAT", "KEEPTTL", "PERSIST", "GET",
    "WITHSCORES", "WITHSCORE", "LIMIT", "BYSCORE", "BYLEX", "REV", "COUNT", "MATCH", "TYPE",
    "LEFT", "RIGHT", "BEFORE", "AFTER", "RANK", "MAXLEN", "IDLETIME", "FREQ", "REPLACE", "ABSTTL",
    "ASYNC", "SYNC", "WEIGHTS", "AGGREGATE", "SUM", "MIN", "MAX", "AND", "OR", "XOR", "NOT",
    "BIT", "BYTE", "OVERFLOW", "WRAP", "SAT", "FAIL", "SET", "INCRBY", "u8", "i8", "u63", "i64",
    "u64", "i65", "#0", "#-1", "#9223372036854775807", "WITHVALUES", "LEN", "IDX", "MINMATCHLEN",
    "WITHMATCHLEN", "DB", "STORE", "BY", "ASC", "DESC", "ALPHA", "NOVALUES", "ENCODING",
    "REFCOUNT", "HELP", "USAGE", "SAMPLES", "NUMSUB", "NUMPAT", "CHANNELS", "SHARDCHANNELS",
    # streams
    "MKSTREAM", "NOMKSTREAM", "MINID", "~", "=", "BLOCK", "STREAMS", "GROUP", "NOACK", "ID",
    "ENTRIESREAD", "JUSTID", "IDLE", "TIME", "RETRYCOUNT", "FORCE", "LASTID", "FULL", "CREATE",
    "CREATECONSUMER", "DELCONSUMER", "DESTROY", "SETID", "CONSUMERS", "GROUPS", "STREAM",
    # geo
    "WITHCOORD", "WITHDIST", "WITHHASH", "FROMMEMBER", "FROMLONLAT", "BYRADIUS", "BYBOX",
    "M", "KM", "FT", "MI", "ANY", "STOREDIST",
    # SORT patterns
    "#", "*->f1", "fz:*", "nosort",
]

# Container commands: the subcommands tried for each.
SUBCOMMANDS = {
    "object": ["ENCODING", "REFCOUNT", "IDLETIME", "FREQ", "HELP", "NOPE"],
    "pubsub": ["CHANNELS", "NUMSUB", "NUMPAT", "SHARDCHANNELS", "SHARDNUMSUB", "HELP", "NOPE"],
    "memory": ["USAGE", "HELP", "NOPE"],
    "xinfo": ["STREAM", "GROUPS", "CONSUMERS", "HELP", "NOPE"],
    "xgroup": ["CREATE", "SETID", "DESTROY", "CREATECONSUMER", "DELCONSUMER", "HELP", "NOPE"],
}

# Commands never sent: they end, stall or reconfigure the server, change the connection's
# mode, or are covered by their own differential suites (scripting, transactions).
SKIP = {
    "shutdown", "debug", "monitor", "subscribe", "psubscribe", "ssubscribe", "unsubscribe",
    "punsubscribe", "sunsubscribe", "save", "bgsave", "bgrewriteaof", "client", "config",
    "hello", "quit", "reset", "multi", "exec", "discard", "watch", "unwatch", "sync", "psync",
    "replicaof", "slaveof", "failover", "cluster", "module", "acl", "latency", "slowlog",
    "info", "command", "time", "lastsave", "eval", "evalsha", "eval_ro", "evalsha_ro",
    "fcall", "fcall_ro", "function", "script", "wait", "waitaof", "auth", "readonly",
    "readwrite", "asking", "role", "lolwut", "swapdb", "memory",
    # Redis's HyperLogLog self-test runs for seconds (over 13 s on this loaded VM: the 10-minute
    # run of seed 199205679 timed out on redis-server's side); it takes no input to fuzz.
    "pfselftest",
}

# Replies that legitimately differ between two correct servers: only the reply class
# (error or not) and the error text are compared.
NONDETERMINISTIC = {
    "spop", "srandmember", "hrandfield", "zrandmember", "randomkey", "scan", "sscan", "hscan",
    "zscan", "dump", "object", "pubsub",
    # ids from the clock (XADD *) and idle / delivery times
    "xadd", "xautoclaim", "xclaim", "xpending", "xinfo",
}

# Replies whose element order is unspecified: compared as multisets (pairs for maps).
UNORDERED = {"smembers", "sinter", "sunion", "sdiff", "hkeys", "hvals", "keys"}
UNORDERED_PAIRS = {"hgetall"}

BLOCKING_TIMEOUT_AT = {  # argument index of the timeout (negative: from the end)
    "blpop": -1, "brpop": -1, "brpoplpush": -1, "blmove": -1, "bzpopmin": -1, "bzpopmax": -1,
    "blmpop": 1, "bzmpop": 1,
}
TIMEOUTS = ["0.01", "0.001", "-1", "nan", "inf", "-inf", "abc", "", "1e308", "-0.5", "0.0001"]


RANDOM_MEMBER = {"srandmember", "hrandfield", "zrandmember"}
GROWING_WRITES = {"setbit", "setrange", "bitfield"}


def _int(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def redis_would_stall(cmd):
    """Calls redis-server answers by streaming for ever (a negative random-member count in the
    billions): Damselfly refuses them (see fuzz_known_differences.py), so only Damselfly gets them."""
    name = cmd[0].lower()
    if name in RANDOM_MEMBER and len(cmd) >= 3:
        n = _int(cmd[2])
        return n is not None and n < -100000
    return False


class Spec:
    def __init__(self, name, arity, flags, first, last, step):
        self.name, self.arity, self.flags = name, arity, flags
        self.first, self.last, self.step = first, last, step


def command_table(conn):
    """The command table as Damselfly's COMMAND reports it."""
    rep = conn.call("COMMAND")
    specs = []
    for entry in to_py(rep):
        name = entry[0].decode() if isinstance(entry[0], bytes) else entry[0]
        flags = {f.decode() if isinstance(f, bytes) else f for f in entry[2]}
        specs.append(Spec(name.lower(), int(entry[1]), flags, int(entry[3]), int(entry[4]), int(entry[5])))
    return sorted(specs, key=lambda s: s.name)


class Generator:
    def __init__(self, seed, specs):
        self.rng = random.Random(seed)
        self.specs = [s for s in specs if s.name not in SKIP]

    def value(self):
        r = self.rng.random()
        if r < 0.002:
            return BIG
        if r < 0.55:
            return self.rng.choice(VALUES)
        if r < 0.80:
            word = self.rng.choice(KEYWORDS)
            return word.lower() if self.rng.random() < 0.3 else word
        if r < 0.92:
            return self.rng.choice(KEYS)
        return str(self.rng.randint(-5, 12))

    def call(self):
        spec = self.rng.choice(self.specs)
        rng = self.rng
        if spec.arity >= 0:
            count = spec.arity - 1
            if rng.random() < 0.05:
                count = max(0, count + rng.choice([-1, 1]))
        else:
            count = -spec.arity - 1 + rng.choice([0, 0, 1, 1, 2, 2, 3, 4, 6])
            if rng.random() < 0.03 and count > 0:
                count -= 1
        args = [self.value() for _ in range(count)]
        # key positions get pool keys (mostly)
        if spec.first > 0:
            last = spec.last if spec.last >= 0 else count + 1 + spec.last
            step = max(spec.step, 1)
            for p in range(spec.first, min(last, count) + 1, step):
                if rng.random() < 0.93:
                    args[p - 1] = rng.choice(KEYS)
        if spec.name in SUBCOMMANDS and args:
            args[0] = rng.choice(SUBCOMMANDS[spec.name])
        if spec.name in BLOCKING_TIMEOUT_AT and args:
            at = BLOCKING_TIMEOUT_AT[spec.name]
            index = at - 1 if at > 0 else len(args) + at
            if 0 <= index < len(args):
                args[index] = rng.choice(TIMEOUTS)
        if spec.name in GROWING_WRITES:
            # Valid offsets that make both servers allocate hundreds of MB are covered once each
            # in test_hostile_input.py; here they would only slow the run and load the machine.
            for i, a in enumerate(args):
                n = _int(a)
                if n is not None and (1 << 24) <= n < (1 << 33):
                    args[i] = str(n % (1 << 20))
        return [spec.name.upper() if rng.random() < 0.7 else spec.name] + args


# ---------------------------------------------------------------------------
# running and comparing
# ---------------------------------------------------------------------------

def reset_pool(conn):
    cmds = [("SELECT", "0"), ("FLUSHALL",)]
    for setup in POOL.values():
        cmds.extend(setup)
    for rep in conn.pipeline(cmds):
        assert rep[0] not in "-!", rep


def pool_state(conn):
    """Every pool key's type and content, in a canonical form (two pipelined round trips)."""
    types = [r[1] for r in conn.pipeline([("TYPE", key) for key in KEYS])]
    reads = {b"string": ("GET",), b"list": ("LRANGE", "0", "-1"), b"hash": ("HGETALL",),
             b"set": ("SMEMBERS",), b"zset": ("ZRANGE", "0", "-1", "WITHSCORES"), b"stream": ("XRANGE", "-", "+")}
    cmds = [(reads[t][0], key) + reads[t][1:] if t in reads else ("EXISTS", key) for key, t in zip(KEYS, types)]
    cmds.append(("DBSIZE",))
    replies = conn.pipeline(cmds)
    out = []
    for key, t, rep in zip(KEYS + ["dbsize"], types + [None], replies):
        if t == b"hash":
            rep = sorted(map(tuple, _pairs(to_py(rep))))
        elif t == b"set":
            rep = sorted(to_py(rep))
        out.append((key, t, rep))
    return out


def _pairs(flat):
    return [flat[i:i + 2] for i in range(0, len(flat), 2)]


def normalise(name, reply):
    t, v = reply
    if t == "*" and v is not None:
        if name in UNORDERED:
            return ("*sorted", sorted(repr(x) for x in v))
        if name in UNORDERED_PAIRS:
            return ("*pairs", sorted(repr(tuple(p)) for p in _pairs(v)))
    return reply


def is_err(reply):
    return reply[0] in "-!"


class Outcome:
    """What one call produced on both servers."""

    def __init__(self, cmd, dfly, redis):
        self.cmd, self.dfly, self.redis = cmd, dfly, redis


def call_both(dconn, rconn, cmd, timeout=3.0):
    """(damselfly reply, redis reply); 'timeout' or 'closed' for a missing reply."""
    replies = []
    for conn in (dconn, rconn):
        if conn is None:
            replies.append(None)
            continue
        conn.sock.settimeout(timeout)
        try:
            conn.send_raw(encode(*cmd))
            replies.append(conn.read_reply())
        except (socket.timeout, TimeoutError):
            replies.append(("timeout", None))
        except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
            replies.append(("closed", None))
        finally:
            try:
                conn.sock.settimeout(10.0)
            except OSError:
                pass
    return replies[0], replies[1]


def short(cmd):
    parts = []
    for a in cmd:
        if isinstance(a, str) and len(a) > 40:
            a = a[:20] + "...(%d bytes)" % len(a)
        parts.append(a)
    return parts


def classify(cmd, dfly, redis):
    """None when the replies agree, else a short description of the difference."""
    name = cmd[0].lower()
    if dfly[0] in ("timeout", "closed") or redis[0] in ("timeout", "closed"):
        if dfly[0] == redis[0]:
            return None
        return "no-reply: damselfly=%r redis=%r" % (dfly[0], redis[0])
    if is_err(dfly) != is_err(redis):
        return "error-class"
    if is_err(dfly):
        return None if dfly[1] == redis[1] else "error-text"
    if name in NONDETERMINISTIC:
        return None
    if normalise(name, dfly) != normalise(name, redis):
        return "reply"
    return None
