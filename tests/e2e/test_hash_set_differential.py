"""Differential test for hashes and sets: the same random command stream goes
to Damselfly (--proactor_threads=4) and to a real redis-server 7.0; every raw
RESP reply must match, in RESP2 and RESP3.

Only what Redis leaves unspecified is compared loosely:

* replies of unordered collections (SMEMBERS, SINTER, SUNION, SDIFF, SPOP with
  a count, and HGETALL/HKEYS/HVALS of a "hashtable" hash) are compared as
  sorted multisets, with the reply type still exact;
* SPOP, SRANDMEMBER and HRANDFIELD are random: the reply type, length,
  distinctness and membership are checked, and after SPOP Damselfly's set is
  brought back in line with Redis's (re-adding what it popped, removing what
  Redis popped) so the streams stay comparable;
* HSCAN/SSCAN are run to completion and the union of what they returned is
  compared.

After each stream every key's TYPE, OBJECT ENCODING and contents must match,
so the listpack/intset -> hashtable switch-overs happen at the same points.
"""

import random

import pytest

from difftools import fresh
from resp import RespConn, encode
from util import keys_on_shards

SEED = 7031
N_RESP2 = 2500
N_RESP3 = 1200
NUM_SHARDS = 4

# two hash keys and three set keys on every shard, so multi-key commands
# routinely span shards; string keys for WRONGTYPE material
HKEYS = [k for s in range(NUM_SHARDS) for k in keys_on_shards(NUM_SHARDS, 2, "hk")[s]]
SKEYS = [k for s in range(NUM_SHARDS) for k in keys_on_shards(NUM_SHARDS, 3, "sk")[s]]
STRKEYS = ["str:1", "str:2"]

FIELDS = ["a", "b", "c", "f1", "f2", "", "10", "-3", "x" * 64, "y" * 65]
HVALUES = ["1", "-5", "0", "abc", "", "3.5", "9223372036854775807", "-9223372036854775808",
           "1e3", " 7", "10.50", "v" * 64, "w" * 65]
INT_ARGS = ["0", "1", "-1", "5", "-100", "9223372036854775807", "-9223372036854775808", "abc", "1.5", ""]
FLOAT_ARGS = ["0", "1", "-1", "0.5", "-2.25", "1e3", "3.0e1", "abc", "inf", "-inf", "1.5e400", " 1", ""]
MEMBERS = ["1", "2", "3", "-7", "100", "0", "007", "+1", "-0", "9223372036854775807", "a", "b", "c", "", "hello"]
PATTERNS = ["*", "a*", "?", "1*", "*0*", "[ab]*", "nomatch"]
COUNTS = ["-5", "-1", "0", "1", "2", "3", "10", "100", "x", "-9223372036854775808"]


def _hk(c):
    r = c.random()
    if r < 0.06:
        return c.choice(SKEYS)
    if r < 0.1:
        return c.choice(STRKEYS)
    return c.choice(HKEYS)


def _sk(c):
    r = c.random()
    if r < 0.06:
        return c.choice(HKEYS)
    if r < 0.1:
        return c.choice(STRKEYS)
    return c.choice(SKEYS)


def _sks(c, lo=1, hi=4):
    return [_sk(c) for _ in range(c.randint(lo, hi))]


def _pairs(c, lo=1, hi=4):
    out = []
    for _ in range(c.randint(lo, hi)):
        out += [c.choice(FIELDS), c.choice(HVALUES)]
    return out


def _scan_opts(c):
    opts = []
    for _ in range(c.randint(0, 2)):
        opts += c.choice([["MATCH", c.choice(PATTERNS)], ["COUNT", c.choice(["1", "3", "10", "1000"])]])
    if c.random() < 0.05:
        opts += c.choice([["COUNT", "0"], ["COUNT", "x"], ["BOGUS"], ["MATCH"]])
    return opts


def _big_hset(c):
    base = c.randint(0, 5) * 100
    return ["HSET", _hk(c)] + [x for i in range(base, base + 120) for x in (f"big{i}", str(i))]


def _big_sadd(c):
    return ["SADD", _sk(c)] + [str(c.randint(0, 900)) for _ in range(150)]


GENERATORS = [
    # hashes
    (8, lambda c: ["HSET", _hk(c)] + _pairs(c)),
    (2, lambda c: ["HMSET", _hk(c)] + _pairs(c)),
    (3, lambda c: ["HSETNX", _hk(c), c.choice(FIELDS), c.choice(HVALUES)]),
    (6, lambda c: ["HGET", _hk(c), c.choice(FIELDS)]),
    (3, lambda c: ["HMGET", _hk(c)] + [c.choice(FIELDS) for _ in range(c.randint(1, 4))]),
    (3, lambda c: ["HGETALL", _hk(c)]),
    (2, lambda c: ["HKEYS", _hk(c)]),
    (2, lambda c: ["HVALS", _hk(c)]),
    (4, lambda c: ["HDEL", _hk(c)] + [c.choice(FIELDS) for _ in range(c.randint(1, 3))]),
    (2, lambda c: ["HEXISTS", _hk(c), c.choice(FIELDS)]),
    (2, lambda c: ["HLEN", _hk(c)]),
    (2, lambda c: ["HSTRLEN", _hk(c), c.choice(FIELDS)]),
    (4, lambda c: ["HINCRBY", _hk(c), c.choice(FIELDS), c.choice(INT_ARGS)]),
    (4, lambda c: ["HINCRBYFLOAT", _hk(c), c.choice(FIELDS), c.choice(FLOAT_ARGS)]),
    (3, lambda c: ["HRANDFIELD", _hk(c)] + c.choice([[], [c.choice(COUNTS)], [c.choice(COUNTS), "WITHVALUES"],
                                                     [c.choice(COUNTS), "BOGUS"], ["1", "WITHVALUES", "x"]])),
    (2, lambda c: ["HSCAN", _hk(c), c.choice(["0", "0", "0", "x", " 1"])] + _scan_opts(c)),
    (1, _big_hset),
    # sets
    (8, lambda c: ["SADD", _sk(c)] + [c.choice(MEMBERS) for _ in range(c.randint(1, 4))]),
    (4, lambda c: ["SREM", _sk(c)] + [c.choice(MEMBERS) for _ in range(c.randint(1, 3))]),
    (3, lambda c: ["SMEMBERS", _sk(c)]),
    (3, lambda c: ["SISMEMBER", _sk(c), c.choice(MEMBERS)]),
    (2, lambda c: ["SMISMEMBER", _sk(c)] + [c.choice(MEMBERS) for _ in range(c.randint(1, 4))]),
    (2, lambda c: ["SCARD", _sk(c)]),
    (3, lambda c: ["SPOP", _sk(c)] + c.choice([[], [c.choice(["0", "1", "2", "5", "1000", "-1", "x"])],
                                               ["1", "2"]])),
    (3, lambda c: ["SRANDMEMBER", _sk(c)] + c.choice([[], [c.choice(COUNTS)], ["1", "2"]])),
    (4, lambda c: ["SMOVE", _sk(c), _sk(c), c.choice(MEMBERS)]),
    (3, lambda c: ["SINTER"] + _sks(c)),
    (3, lambda c: ["SUNION"] + _sks(c)),
    (3, lambda c: ["SDIFF"] + _sks(c)),
    (2, lambda c: ["SINTERSTORE", _sk(c)] + _sks(c)),
    (2, lambda c: ["SUNIONSTORE", _sk(c)] + _sks(c)),
    (2, lambda c: ["SDIFFSTORE", _sk(c)] + _sks(c)),
    (3, lambda c: (lambda ks: ["SINTERCARD", str(len(ks))] + ks + c.choice(
        [[], ["LIMIT", c.choice(["0", "1", "2", "-1", "x"])], ["BOGUS"], ["LIMIT"]]))(_sks(c))),
    (1, lambda c: ["SINTERCARD", c.choice(["0", "x", "9"]), _sk(c)]),
    (2, lambda c: ["SSCAN", _sk(c), c.choice(["0", "0", "0", "x", "+0", ""])] + _scan_opts(c)),
    (1, _big_sadd),
    # shared material
    (2, lambda c: ["SET", c.choice(STRKEYS + SKEYS[:2] + HKEYS[:2]), "v"]),
    (2, lambda c: ["DEL", c.choice(SKEYS + HKEYS)]),
    (1, lambda c: ["TYPE", c.choice(SKEYS + HKEYS)]),
    (1, lambda c: ["OBJECT", "ENCODING", c.choice(SKEYS + HKEYS)]),
    # wrong arity
    (2, lambda c: c.choice([["HSET", "h", "a"], ["HSET", "h", "a", "1", "b"], ["HMSET", "h", "a", "1", "b"],
                            ["HGET", "h"], ["HSETNX", "h", "a"], ["HDEL", "h"], ["HINCRBY", "h", "a"],
                            ["HRANDFIELD"], ["HSCAN", "h"], ["SADD", "s"], ["SREM", "s"], ["SPOP"],
                            ["SMOVE", "a", "b"], ["SINTER"], ["SINTERSTORE", "d"], ["SINTERCARD", "1"],
                            ["SSCAN", "s"], ["SMISMEMBER", "s"], ["SCARD"]])),
]
_TABLE = [g for w, g in GENERATORS for _ in range(w)]

# replies whose element order Redis does not define
UNORDERED = {"SMEMBERS", "SINTER", "SUNION", "SDIFF"}
HASH_READS = {"HGETALL", "HKEYS", "HVALS"}
RANDOM = {"SPOP", "SRANDMEMBER", "HRANDFIELD"}


class Chooser:
    def __init__(self, rng):
        self.rng = rng

    def choice(self, seq):
        return self.rng.choice(seq)

    def randint(self, a, b):
        return self.rng.randint(a, b)

    def random(self):
        return self.rng.random()


def gen_command(c):
    return c.choice(_TABLE)(c)


def is_err(rep):
    return rep[0] in "-!"


def norm(rep):
    """A reply with collection order erased (the tags stay)."""
    t, v = rep
    if t in "*~" and v is not None:
        return (t, sorted((norm(x) for x in v), key=repr))
    if t == "%":
        return (t, sorted(((norm(a), norm(b)) for a, b in v), key=repr))
    return rep


def hgetall_dict(rep):
    """HGETALL's reply (RESP2 flat array or RESP3 map) as a dict."""
    if rep[0] == "%":
        return {k[1]: v[1] for k, v in rep[1]}
    items = [x[1] for x in rep[1]]
    return dict(zip(items[0::2], items[1::2]))


def flat_items(rep):
    """Elements of an array/set reply as a list of raw values."""
    return [x[1] for x in rep[1]]


class Mismatch(AssertionError):
    pass


class Runner:
    def __init__(self, dc, rc, proto):
        self.dc, self.rc, self.proto = dc, rc, proto
        self.done = []
        self.compared = 0

    def fail(self, cmd, a, b, why=""):
        recent = "\n".join("  " + " ".join(map(str, x)) for x in self.done[-25:])
        raise Mismatch(f"{why} after {len(self.done)} commands (resp{self.proto})\ncommand:   {cmd}\n"
                       f"damselfly: {a!r}\nredis:     {b!r}\nlast commands:\n{recent}")

    def run(self, cmd):
        name = cmd[0].upper()
        self.done.append(cmd)
        if name in ("HSCAN", "SSCAN") and len(cmd) >= 3:
            return self.scan(cmd)
        a = self.dc.call(*cmd)
        b = self.rc.call(*cmd)
        self.compared += 1
        if is_err(a) or is_err(b) or name not in RANDOM:
            if a == b:
                return
            if name in UNORDERED and norm(a) == norm(b):
                return
            if name in HASH_READS and norm(a) == norm(b) and \
                    self.rc.call("OBJECT", "ENCODING", cmd[1]) == ("$", b"hashtable"):
                return
            self.fail(cmd, a, b, "reply mismatch")
        self.check_random(cmd, a, b)

    # -- random commands ---------------------------------------------------
    def check_random(self, cmd, a, b):
        name = cmd[0].upper()
        if a[0] != b[0] or (a[1] is None) != (b[1] is None):
            self.fail(cmd, a, b, "random reply shape differs")
        if a[1] is None:
            return
        key = cmd[1]
        if a[0] == "$":  # one member / field
            if name == "SPOP":
                self.resync_spop(cmd, [a[1]], [b[1]])
                return
            probe = ("HEXISTS" if name == "HRANDFIELD" else "SISMEMBER")
            if self.rc.call(probe, key, a[1]) != (":", 1):
                self.fail(cmd, a, b, "random pick is not a member")
            return
        if len(a[1]) != len(b[1]):
            self.fail(cmd, a, b, "random reply length differs")
        count = int(cmd[2])
        if name == "SPOP":
            popped_a, popped_b = flat_items(a), flat_items(b)
            if len(set(popped_a)) != len(popped_a):
                self.fail(cmd, a, b, "SPOP returned duplicates")
            self.resync_spop(cmd, popped_a, popped_b)
            return
        if name == "SRANDMEMBER":
            picks = flat_items(a)
            members = set(flat_items(self.rc.call("SMEMBERS", key)))
            if not set(picks) <= members:
                self.fail(cmd, a, b, "SRANDMEMBER returned a non-member")
            if count > 0 and len(set(picks)) != len(picks):
                self.fail(cmd, a, b, "SRANDMEMBER with positive count repeated a member")
            if count >= len(members) and sorted(picks) != sorted(members):
                self.fail(cmd, a, b, "SRANDMEMBER count >= size must return the whole set")
            return
        # HRANDFIELD with a count
        withvalues = len(cmd) == 4
        if withvalues and self.proto == 3:
            if any(x[0] != "*" or len(x[1]) != 2 for x in a[1]):
                self.fail(cmd, a, b, "HRANDFIELD WITHVALUES RESP3 must be [field, value] pairs")
            pairs = [(x[1][0][1], x[1][1][1]) for x in a[1]]
        elif withvalues:
            items = flat_items(a)
            pairs = list(zip(items[0::2], items[1::2]))
        else:
            pairs = [(f, None) for f in flat_items(a)]
        everything = hgetall_dict(self.rc.call("HGETALL", key))
        for f, v in pairs:
            if f not in everything or (v is not None and everything[f] != v):
                self.fail(cmd, a, b, "HRANDFIELD returned a wrong field or value")
        fields = [f for f, _ in pairs]
        if count > 0 and len(set(fields)) != len(fields):
            self.fail(cmd, a, b, "HRANDFIELD with positive count repeated a field")
        if count >= len(everything) and sorted(fields) != sorted(everything):
            self.fail(cmd, a, b, "HRANDFIELD count >= size must return the whole hash")

    def resync_spop(self, cmd, popped_a, popped_b):
        """Make Damselfly's set equal Redis's again after both popped at random."""
        key = cmd[1]
        if self.dc.call("EXISTS", key) == (":", 0) and self.rc.call("EXISTS", key) == (":", 0):
            return
        self.dc.call("SADD", key, *popped_a)
        self.dc.call("SREM", key, *popped_b)

    # -- scans ---------------------------------------------------------------
    def scan(self, cmd):
        name, key, cursor, opts = cmd[0].upper(), cmd[1], cmd[2], cmd[3:]
        results = []
        for conn in (self.dc, self.rc):
            seen, cur, rounds = [], cursor, 0
            while True:
                rep = conn.call(name, key, cur, *opts)
                if is_err(rep):
                    seen = rep
                    break
                cur = rep[1][0][1]
                items = flat_items(rep[1][1])
                if name == "HSCAN":
                    seen += list(zip(items[0::2], items[1::2]))
                else:
                    seen += items
                rounds += 1
                assert rounds < 100000, "scan did not terminate"
                if cur == b"0":
                    seen = ("scan", sorted(set(seen)))
                    break
            results.append(seen)
        self.compared += 1
        if results[0] != results[1]:
            self.fail(cmd, results[0], results[1], "scan mismatch")


def snapshot(conn, proto):
    """Every key: type, encoding and contents (collections sorted)."""
    out = {}
    for k in sorted(x[1] for x in conn.call("KEYS", "*")[1]):
        typ = conn.call("TYPE", k)[1]
        enc = conn.call("OBJECT", "ENCODING", k)[1]
        if typ == b"hash":
            val = norm(conn.call("HGETALL", k))
        elif typ == b"set":
            val = norm(conn.call("SMEMBERS", k))
        else:
            val = conn.call("GET", k)
        out[k] = (typ, enc, val)
    return out


@pytest.fixture(scope="module")
def pair(damselfly_module, redis_server):
    d = damselfly_module("--proactor_threads=4")
    return d, redis_server



@pytest.mark.parametrize("proto,n,seed", [(2, N_RESP2, SEED), (3, N_RESP3, SEED + 1)], ids=["resp2", "resp3"])
def test_hash_set_differential(pair, proto, n, seed):
    d, r = pair
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        fresh(dc, proto)
        fresh(rc, proto)
        c = Chooser(random.Random(seed))
        runner = Runner(dc, rc, proto)
        for i in range(n):
            runner.run(gen_command(c))
            if i % 250 == 249:
                a, b = snapshot(dc, proto), snapshot(rc, proto)
                if a != b:
                    runner.fail(["<snapshot>"], a, b, "keyspace differs")
        assert snapshot(dc, proto) == snapshot(rc, proto)
    print(f"\nhash/set differential[resp{proto}]: compared {runner.compared} commands (seed {seed})")


@pytest.mark.parametrize("proto", [2, 3], ids=["resp2", "resp3"])
def test_hgetall_reply_in_every_context(pair, proto):
    """HGETALL's fields and values are encoded on the shard and the header by the connection
    for its protocol (RESP2 `*2n`, RESP3 `%n`): the same bytes as Redis's for a listpack hash
    (insertion order), the same pairs for a hashtable one, on its own, pipelined, inside
    MULTI/EXEC and as a script's redis.call result; an empty or missing hash and a key of
    another type as Redis answers them."""
    d, r = pair
    small, big, empty = HKEYS[0], HKEYS[5], HKEYS[2]
    pairs = ["", "empty-field", "n", "-12", "bin", "\x00\r\n$1\r\n", "long", "v" * 60]
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        for conn in (dc, rc):
            fresh(conn, proto)
            conn.call("HSET", small, *pairs)
            conn.call("HSET", big, *[x for i in range(300) for x in (f"f{i}", "w" * (i % 80))])
            conn.call("SET", STRKEYS[0], "text")
        for key in (small, empty, STRKEYS[0]):
            assert dc.call("HGETALL", key) == rc.call("HGETALL", key), key
        assert hgetall_dict(dc.call("HGETALL", big)) == hgetall_dict(rc.call("HGETALL", big))
        pipeline = [["HGETALL", small], ["HLEN", small], ["HGETALL", small], ["HGETALL", empty]]
        for conn in (dc, rc):
            conn.send_raw(b"".join(encode(*c) for c in pipeline))
        assert [dc.read_reply() for _ in pipeline] == [rc.read_reply() for _ in pipeline]
        for conn in (dc, rc):
            conn.call("MULTI")
            conn.call("HGETALL", small)
            conn.call("HGETALL", empty)
        assert dc.call("EXEC") == rc.call("EXEC")
        cmd = ["EVAL", "return redis.call('HGETALL', KEYS[1])", "1", small]
        assert dc.call(*cmd) == rc.call(*cmd)
        got = dc.call("EVAL", "return redis.call('HGETALL', KEYS[1])", "1", big)
        want = rc.call("EVAL", "return redis.call('HGETALL', KEYS[1])", "1", big)
        assert hgetall_dict(got) == hgetall_dict(want)


def _grow_and_shrink(conn, add, remove, key, members, probe):
    """Apply `add` for each member, then `remove`; record (encoding, contents) after each step."""
    trail = []
    for m in members:
        conn.call(*add(key, m))
        trail.append((conn.call("OBJECT", "ENCODING", key), norm(probe(key))))
    for m in members:
        conn.call(*remove(key, m))
        trail.append((conn.call("OBJECT", "ENCODING", key), norm(probe(key))))
    return trail


@pytest.mark.parametrize("proto", [2, 3], ids=["resp2", "resp3"])
def test_encoding_switch_over(pair, proto):
    """Grow each encoding past its threshold and shrink it back to nothing:
    OBJECT ENCODING and the contents agree with Redis at every step."""
    d, r = pair
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        fresh(dc, proto)
        fresh(rc, proto)
        cases = [
            # hash: 512 entries stay listpack, the 513th converts (Redis 7.0's
            # built-in hash-max-listpack-entries)
            (lambda k, m: ("HSET", k, f"f{m}", str(m)), lambda k, m: ("HDEL", k, f"f{m}"),
             "h:count", list(range(520)), "HGETALL"),
            # hash: a 65-byte value converts at once
            (lambda k, m: ("HSET", k, f"f{m}", "x" * (60 + m)), lambda k, m: ("HDEL", k, f"f{m}"),
             "h:len", list(range(8)), "HGETALL"),
            # set: 512 integers stay intset, the 513th converts
            (lambda k, m: ("SADD", k, str(m * 7 - 1000)), lambda k, m: ("SREM", k, str(m * 7 - 1000)),
             "s:count", list(range(530)), "SMEMBERS"),
            # set: a non-integer converts at once
            (lambda k, m: ("SADD", k, str(m) if m != 5 else "five"),
             lambda k, m: ("SREM", k, str(m) if m != 5 else "five"), "s:str", list(range(10)), "SMEMBERS"),
        ]
        for add, remove, key, members, probe in cases:
            ta = _grow_and_shrink(dc, add, remove, key, members, lambda k: dc.call(probe, k))
            tb = _grow_and_shrink(rc, add, remove, key, members, lambda k: rc.call(probe, k))
            for step, (a, b) in enumerate(zip(ta, tb)):
                assert a == b, f"{key} step {step}: damselfly {a!r} redis {b!r}"
            assert dc.call("EXISTS", key) == (":", 0)
        # STORE results take the encoding Redis gives them
        dc.call("SADD", "src:ints", *[str(i) for i in range(600)])
        rc.call("SADD", "src:ints", *[str(i) for i in range(600)])
        dc.call("SADD", "src:few", *[str(i) for i in range(300)])
        rc.call("SADD", "src:few", *[str(i) for i in range(300)])
        for cmd in (["SINTERSTORE", "dst", "src:ints", "src:few"], ["SUNIONSTORE", "dst", "src:few"],
                    ["SDIFFSTORE", "dst", "src:ints", "src:few"], ["SDIFFSTORE", "dst", "src:few", "src:ints"],
                    ["SDIFFSTORE", "dst", "src:ints", "nokey"], ["SUNIONSTORE", "dst", "src:ints"]):
            assert dc.call(*cmd) == rc.call(*cmd), cmd
            assert dc.call("OBJECT", "ENCODING", "dst") == rc.call("OBJECT", "ENCODING", "dst"), cmd
            assert norm(dc.call("SMEMBERS", "dst")) == norm(rc.call("SMEMBERS", "dst")), cmd


def test_cross_shard_smove_is_atomic(pair):
    """Writers SMOVE members back and forth between sets on different shards
    while a reader takes SUNION and SINTER of both: every member is always in
    exactly one of them, so no reader ever sees a half-done move."""
    import threading

    d, _ = pair
    by = keys_on_shards(NUM_SHARDS, 1, "atom")
    a, b = by[0][0], by[1][0]
    members = [f"m{i}" for i in range(40)]
    with RespConn(d.port) as c:
        c.call("DEL", a, b)
        c.call("SADD", a, *members)
    stop = threading.Event()
    errors = []

    def writer(seed):
        rng = random.Random(seed)
        with RespConn(d.port) as c:
            while not stop.is_set():
                src, dst = (a, b) if rng.random() < 0.5 else (b, a)
                rep = c.call("SMOVE", src, dst, rng.choice(members))
                if rep[0] != ":":
                    errors.append(rep)

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    try:
        with RespConn(d.port) as c:
            for _ in range(400):
                union = c.call("SUNION", a, b)
                inter = c.call("SINTERCARD", "2", a, b)
                assert len(union[1]) == len(members), union
                assert inter == (":", 0), inter
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
