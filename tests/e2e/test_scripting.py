"""Lua scripting end to end: EVAL, EVALSHA, SCRIPT LOAD / EXISTS / FLUSH.

Scripts run against Damselfly (4 threads / 4 shards) and a real redis-server
7.0; replies must be equal byte for byte (tagged replies).  Covered: the
reply conversions (numbers truncated, false -> nil, {ok=..}, {err=..}, nested
tables, nil ending an array), redis.pcall error tables, redis.error_reply /
status_reply / sha1hex, cjson and bit, KEYS/ARGV, numkeys errors, NOSCRIPT,
scripts whose declared keys live on several shards and scripts that declare
no key yet touch keys on every shard (both must be atomic: checked under
concurrent writers), and Sidekiq 6.4.1's scheduler script (``zpopbyscore``,
read from the installed ruby-sidekiq gem) through SCRIPT LOAD + EVALSHA.

Error texts are Redis 7.0's, byte for byte (``test_error_texts_equal_redis``):
errors raised inside a script (runtime errors, error(), redis.call failures,
the sandbox's) end with `` script: <sha>, on @user_script:<line>.``; errors
redis.pcall returns, error tables a script returns and compile errors do not.
"""

import hashlib
import os
import re
import subprocess
import threading

import pytest

import difftools as dt

from resp import RespConn, to_py
from util import keys_on_shards

NUM_SHARDS = 4


@pytest.fixture(scope="module")
def dfly(damselfly_module):
    return damselfly_module(f"--proactor_threads={NUM_SHARDS}")


@pytest.fixture(scope="module")
def servers(dfly, redis_server):
    return [("damselfly", dfly), ("redis", redis_server)]


def run_both(servers, scenario):
    return dt.run_on_both(servers, scenario, reset=[["FLUSHALL"], ["SCRIPT", "FLUSH"]])


def both(servers, cmds, proto=2):
    def scenario(port):
        with RespConn(port) as c:
            if proto == 3:
                c.call("HELLO", "3")
            return [c.call(*cmd) for cmd in cmds]
    return run_both(servers, scenario)


def sha1(text):
    return hashlib.sha1(text.encode()).hexdigest()


KS = keys_on_shards(NUM_SHARDS, 2, "lua")
K = [KS[s][0] for s in range(NUM_SHARDS)]

CONVERSIONS = [
    "return 1", "return 3.99", "return -3.99", "return 0.5", "return true", "return false", "return nil",
    "return 'str'", "return ''", "return {}", "return {1, 2, {3, 'x', {4}}, 'y'}",
    "return {1, 2, nil, 4}", "return {1, false, 'a'}", "return {1.9, -2.9, '3.5'}",
    "return {ok='fine'}", "return {err='My bad'}", "return {err='ERR custom'}",
    "return redis.error_reply('oops')", "return redis.error_reply('WRONG thing')",
    "return redis.status_reply('DONE')", "return {redis.status_reply('A'), redis.error_reply('B')}",
    "return redis.sha1hex('')", "return redis.sha1hex('abc')", "return tostring(12)", "return tonumber('42')",
    "return #KEYS + #ARGV", "return {KEYS[1], ARGV[1], ARGV[2]}", "return type(KEYS)",
    "return cjson.encode({a=1})", "return cjson.decode('[1,2,\"x\"]')", "return cjson.decode('{\"n\":7}').n",
    "return bit.band(12, 10)", "return bit.bor(1, 4)", "return bit.tohex(255)",
    "return string.format('%d-%s', 5, 'x')", "return table.concat({'a','b'}, ',')",
    "return math.floor(7.8)", "return {math.huge ~= nil}", "return 2^31", "return -2^31 - 0.5",
    "local t = {} t[1] = 'a' t[3] = 'c' return t",
]


@pytest.mark.parametrize("proto", [2, 3])
def test_reply_conversions_equal_redis(servers, proto):
    cmds = [["EVAL", s, "1", "key:a", "arg1", "arg2"] for s in CONVERSIONS]
    both(servers, cmds, proto)


def test_redis_call_and_pcall_equal_redis(servers):
    scripts = [
        ("redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])", [K[0]], ["v1"]),
        ("return redis.call('GET', KEYS[1])", [K[1]], []),                         # nil -> false -> nil
        ("return redis.call('GET', KEYS[1]) == false", [K[1]], []),
        ("return type(redis.call('GET', KEYS[1]))", [K[1]], []),
        ("return redis.call('INCRBY', KEYS[1], ARGV[1])", [K[1]], ["5"]),
        ("redis.call('RPUSH', KEYS[1], 'a', 'b', 'c') return redis.call('LRANGE', KEYS[1], 0, -1)", [K[2]], []),
        ("return redis.call('HSET', KEYS[1], 'f', 1.5)", [K[3]], []),
        ("return redis.call('HGETALL', KEYS[1])", [K[3]], []),
        ("return redis.call('SET', KEYS[1], 'x')", [K[0]], []),                    # status reply table
        ("local r = redis.call('SET', KEYS[1], 'x') return r.ok", [K[0]], []),
        ("local r = redis.call('PING') return {type(r), r.ok}", [], []),
        ("local r = redis.pcall('INCR', KEYS[1]) return r", [K[0]], []),             # error table returned
        ("local r = redis.pcall('INCR', KEYS[1]) return type(r)", [K[0]], []),
        ("local r = redis.pcall('INCR', KEYS[1]) return r.err", [K[0]], []),
        ("local r = redis.pcall('LPUSH', KEYS[1], 'x') return r['err']", [K[0]], []),
        ("local r = redis.pcall('INCR', KEYS[1]) if r.err then return 'caught' end return 'no'", [K[0]], []),
        ("return redis.pcall('GET', KEYS[1])", [K[0]], []),
        ("return redis.call('EXISTS', KEYS[1], KEYS[2])", [K[0], K[1]], []),
        ("return redis.call('DEL', KEYS[1])", [K[2]], []),
        ("return redis.call('ZADD', KEYS[1], 1, 'a', 2, 'b')", [K[2]], []),
        ("return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')", [K[2]], []),
        ("return redis.call('ZSCORE', KEYS[1], 'b')", [K[2]], []),
        ("return redis.call('INCRBYFLOAT', KEYS[1], '1.5')", [K[1]], []),
        ("return redis.call('ECHO', 'x') .. redis.call('ECHO', 'y')", [], []),
    ]
    cmds = [["EVAL", s, str(len(keys))] + keys + argv for s, keys, argv in scripts]
    both(servers, cmds)
    both(servers, cmds[:8], proto=3)


def test_script_cache_and_noscript_equal_redis(servers):
    body = "return {KEYS[1], ARGV[1]}"
    digest = sha1(body)
    other = sha1("return 7")

    def scenario(port):
        with RespConn(port) as c:
            out = [c.call("EVALSHA", digest, "1", "k", "a")]                # NOSCRIPT
            out.append(c.call("SCRIPT", "LOAD", body))
            out.append(c.call("EVALSHA", digest, "1", "k", "a"))
            out.append(c.call("EVALSHA", digest.upper(), "1", "k", "b"))    # sha case-insensitive
            out.append(c.call("SCRIPT", "EXISTS", digest, other, "nothex"))
            out.append(c.call("EVAL", "return 7", "0"))                    # EVAL caches too
            out.append(c.call("EVALSHA", other, "0"))
            out.append(c.call("SCRIPT", "EXISTS", digest, other))
            out.append(c.call("EVALSHA_RO", other, "0"))
            out.append(c.call("SCRIPT", "FLUSH"))
            out.append(c.call("SCRIPT", "EXISTS", digest, other))
            out.append(c.call("EVALSHA", digest, "0"))
            out.append(c.call("EVALSHA", "short", "0"))
            out.append(c.call("SCRIPT", "LOAD", body))
            out.append(c.call("SCRIPT", "FLUSH", "ASYNC"))
            out.append(c.call("SCRIPT", "FLUSH", "SYNC"))
            out.append(c.call("SCRIPT", "LOAD", ""))
            out.append(c.call("EVAL", "", "0"))
            return out
    run_both(servers, scenario)


def test_eval_argument_errors_equal_redis(servers):
    both(servers, [
        ["EVAL", "return 1", "-1"], ["EVAL", "return 1", "3", "a"], ["EVAL", "return 1", "abc"],
        ["EVAL", "return 1"], ["EVALSHA", "x"], ["EVAL", "return 1", "1"],
        ["EVAL_RO", "return redis.call('GET', KEYS[1])", "1", "k"],
        ["EVAL", "return {ARGV[1], KEYS[2]}", "2", "a", "b", "c"],
        ["SCRIPT", "EXISTS"], ["SCRIPT", "LOAD"], ["SCRIPT", "LOAD", "a", "b"], ["SCRIPT", "FLUSH", "BOGUS"],
        ["SCRIPT", "FLUSH", "SYNC", "ASYNC"], ["SCRIPT", "KILL", "x"], ["SCRIPT", "NOPE"], ["SCRIPT", "KILL"],
    ])


ERROR_SCRIPTS = [
    # compile errors
    ("if true then return 1", [], []),
    ("return 1 +", [], []),
    # runtime errors: position in the text and in the suffix
    ("return x", [], []),
    ("local y = 1\nlocal z = nosuch", [], []),
    ("x = 1", [], []),
    ("function f() end", [], []),
    ("print = nil", [], []),
    ("redis.call = nil", [], []),
    ("cjson.encode = nil", [], []),
    ("string.x = 1", [], []),
    ("setmetatable(_G, nil)", [], []),
    ("rawset(_G, 'x', 1)", [], []),
    ("local t = {} t.x = 1 return t.x", [], []),
    ("getmetatable('').__index.len = nil", [], []),
    ("getmetatable('').__index = nil", [], []),
    ("return {('abc'):upper(), ('x'):rep(3), type(getmetatable('')), type(getmetatable(_G))}", [], []),
    ("getmetatable(_G).__index = nil", [], []),
    ("return _G.redis ~= nil", [], []),
    ("\nlocal a = 1\nlocal b = nil + 1", [], []),
    ("local function f() error('deep') end\n\nf()", [], []),
    ("error('boom')", [], []),
    ("error('boom', 0)", [], []),
    ("error({err='MY thing'})", [], []),
    ("error(12)", [], []),
    ("error(nil)", [], []),
    # redis.call failures raise; redis.pcall returns the error table
    ("return redis.call('INCR', KEYS[1])", ["strkey"], []),
    ("\nlocal a = 1\nreturn redis.call('LPUSH', KEYS[1], 'x')", ["strkey"], []),
    ("return redis.pcall('LPUSH', KEYS[1], 'x')", ["strkey"], []),
    ("return redis.call('NOSUCHCMD')", [], []),
    ("return redis.pcall('NOSUCHCMD')", [], []),
    ("return redis.call('GET')", [], []),
    ("return redis.pcall('GET')", [], []),
    ("return redis.call('GET', {})", [], []),
    ("return redis.pcall('GET', {})", [], []),
    ("return redis.call()", [], []),
    ("return redis.pcall()", [], []),
    ("return redis.call('EVAL', 'return 1', 0)", [], []),
    ("return redis.pcall('EVAL', 'return 1', 0)", [], []),
    ("redis.setresp(4)", [], []),
    # pcall (Redis 7's) hands back the err string of error tables
    ("local ok, e = pcall(redis.call, 'INCR', KEYS[1]) return {tostring(ok), e}", ["strkey"], []),
    ("local ok, e = pcall(redis.call, 'INCR', KEYS[1]) error(e)", ["strkey"], []),
    ("local ok, e = pcall(error, {err='x'}) return {tostring(ok), e}", [], []),
    ("local ok, e = pcall(error, 'x') return {tostring(ok), e}", [], []),
    ("local ok, e = pcall(function() return x end) return e", [], []),
    # error replies returned (not raised): no suffix
    ("return redis.error_reply('MY thing')", [], []),
    ("return {err='x y'}", [], []),
    ("return {err='a\\r\\nb'}", [], []),
]


@pytest.mark.parametrize("proto", [2, 3])
def test_error_texts_equal_redis(servers, proto):
    cmds = [["SET", "strkey", "abc"]]
    cmds += [["EVAL", s, str(len(keys))] + keys + argv for s, keys, argv in ERROR_SCRIPTS]
    cmds += [["EVAL_RO", "return redis.call('SET', KEYS[1], 'v')", "1", "k"],
             ["EVAL_RO", "return redis.pcall('SET', KEYS[1], 'v')", "1", "k"],
             ["GET", "k"]]
    both(servers, cmds, proto)


def test_keys_on_several_shards_and_undeclared_keys_equal_redis(servers):
    multi = ("for i, k in ipairs(KEYS) do redis.call('SET', k, ARGV[i]) end "
             "redis.call('RPUSH', KEYS[1] .. ':l', unpack(ARGV)) "
             "return {redis.call('MGET', unpack(KEYS)), redis.call('LRANGE', KEYS[1] .. ':l', 0, -1)}")
    # declares no key, touches keys on every shard (as BullMQ / Sidekiq Pro scripts do)
    undeclared = ("local out = {} for i = 1, #ARGV do redis.call('INCRBY', ARGV[i], i) "
                  "out[i] = redis.call('GET', ARGV[i]) end "
                  "redis.call('RENAME', ARGV[1], ARGV[1] .. ':moved') "
                  "return {out, redis.call('EXISTS', unpack(ARGV)), redis.call('GET', ARGV[1] .. ':moved')}")
    second = [KS[s][1] for s in range(NUM_SHARDS)]
    both(servers, [
        ["EVAL", multi, "4", *K, "a", "b", "c", "d"],
        ["EVAL", multi, "4", *K, "1", "2", "3", "4"],
        ["EVAL", undeclared, "0", *K],
        ["EVAL", undeclared, "0", *second],
        ["EVAL", undeclared, "0", *second],
        ["EVAL", "return redis.call('MGET', ARGV[1], ARGV[2])", "1", K[0], K[1], K[2]],
        ["MGET", *K, *second],
        ["EVAL", "redis.call('DEL', unpack(KEYS)) return redis.call('EXISTS', unpack(KEYS))", "4", *K],
        # declared keys on one shard, undeclared writes elsewhere
        ["EVAL", "redis.call('SET', KEYS[1], 'd') redis.call('SET', ARGV[1], 'u') "
                 "return redis.call('MGET', KEYS[1], ARGV[1])", "1", K[0], K[3]],
        ["MGET", K[0], K[3]],
    ])


def test_keyspace_wide_commands_from_scripts_equal_redis(servers):
    """Redis lets scripts call DBSIZE, KEYS, SCAN, RANDOMKEY, EXISTS over anything."""
    both(servers, [
        ["MSET", *[x for k in K for x in (k, "v")]],
        ["EVAL", "return redis.call('DBSIZE')", "0"],
        ["EVAL", "return #redis.call('KEYS', '*')", "0"],
        ["EVAL", "local r = redis.call('SCAN', 0, 'COUNT', 1000) return #r[2]", "0"],
        ["EVAL", "return redis.call('RANDOMKEY') ~= false", "0"],
        ["EVAL", "return redis.call('TIME')[1] ~= nil", "0"],
    ])


# ---------------------------------------------------------------------------
# Sidekiq 6.4.1 scheduler
# ---------------------------------------------------------------------------

def sidekiq_zpopbyscore():
    try:
        files = subprocess.run(["dpkg", "-L", "ruby-sidekiq"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("ruby-sidekiq not installed (apt-get install -y ruby-sidekiq)")
    paths = [p for p in files.splitlines() if p.endswith("sidekiq/scheduled.rb")]
    if not paths or not os.path.isfile(paths[0]):
        pytest.skip("sidekiq/scheduled.rb not found")
    text = open(paths[0]).read()
    m = re.search(r"LUA_ZPOPBYSCORE = <<~LUA\n(.*?)\n\s*LUA\n", text, re.S)
    assert m, "zpopbyscore script not found in scheduled.rb"
    lines = m.group(1).split("\n")
    indent = min(len(x) - len(x.lstrip()) for x in lines if x.strip())
    return "\n".join(x[indent:] for x in lines) + "\n"


# Sidekiq 7.1+'s Scheduled::Enq script (ZRANGE ... BYSCORE LIMIT instead of
# ZRANGEBYSCORE); Debian ships 6.4.1, so this one is written out here.
SIDEKIQ_71_ZPOPBYSCORE = """local key, now = KEYS[1], ARGV[1]
local jobs = redis.call("zrange", key, "-inf", now, "byscore", "limit", 0, 1)
if jobs[1] then
  redis.call("zrem", key, jobs[1])
  return jobs[1]
end
"""


@pytest.mark.parametrize("version", ["6.4.1", "7.1"])
def test_sidekiq_scheduler_script_equal_redis(servers, version):
    script = sidekiq_zpopbyscore() if version == "6.4.1" else SIDEKIQ_71_ZPOPBYSCORE
    assert ("zrangebyscore" if version == "6.4.1" else '"byscore"') in script
    now = 1700000000.25
    jobs = [(now - 100 + i * 10, '{"class":"HardJob","queue":"%s","jid":"j%02d","at":%s}' %
             (["default", "critical"][i % 2], i, now - 100 + i * 10)) for i in range(20)]

    def scenario(port):
        with RespConn(port) as c:
            out = []
            for score, payload in jobs:
                c.call("ZADD", "schedule", repr(score), payload)
                c.call("ZADD", "retry", repr(score + 5), payload.replace('"j', '"r'))
            sha = c.call("SCRIPT", "LOAD", script)
            out.append(sha)
            sha = sha[1]
            assert sha.decode() == sha1(script)
            for sorted_set in ("retry", "schedule"):
                for _ in range(40):                       # bounded: at most every job once
                    rep = c.call("EVALSHA", sha, "1", sorted_set, repr(now))
                    out.append(rep)
                    if rep == ("$", None):
                        break
                    job = rep[1].decode()
                    queue = re.search(r'"queue":"(\w+)"', job).group(1)
                    # what Sidekiq::Client.push does with it (atomic_push)
                    out.append(c.pipeline([["MULTI"], ["SADD", "queues", queue],
                                           ["LPUSH", f"queue:{queue}", job], ["EXEC"]])[-1])
            out += [c.call("ZCARD", "schedule"), c.call("ZCARD", "retry"),
                    c.call("LRANGE", "queue:default", "0", "-1"), c.call("LRANGE", "queue:critical", "0", "-1"),
                    c.call("SMEMBERS", "queues")[0]]
            # Sidekiq's retry path: NOSCRIPT after a flush, then load again
            out.append(c.call("SCRIPT", "FLUSH"))
            out.append(c.call("EVALSHA", sha, "1", "schedule", repr(now + 1000)))
            out.append(c.call("SCRIPT", "LOAD", script))
            out.append(c.call("EVALSHA", sha, "1", "schedule", repr(now + 1000)))
            out.append(c.call("ZCARD", "schedule"))
            return out
    out = run_both(servers, scenario)
    assert ("$", None) in out


# ---------------------------------------------------------------------------
# atomicity under concurrency (Damselfly only, bounded)
# ---------------------------------------------------------------------------

INCR_BOTH_DECLARED = "redis.call('INCR', KEYS[1]) redis.call('INCR', KEYS[2]) return 1"
INCR_BOTH_UNDECLARED = "redis.call('INCR', ARGV[1]) redis.call('INCR', ARGV[2]) return 1"
READ_BOTH_UNDECLARED = "return {redis.call('GET', ARGV[1]), redis.call('GET', ARGV[2])}"
READ_BOTH_DECLARED = "return redis.call('MGET', KEYS[1], KEYS[2])"


def test_scripts_atomic_under_concurrent_writers(dfly, only_damselfly):
    a, b = KS[1][1], KS[3][1]
    errors = []
    rounds = 150
    with RespConn(dfly.port) as c:
        c.call("DEL", a, b)

    def writer(i):
        try:
            with RespConn(dfly.port) as c:
                for r in range(rounds):
                    if (i + r) % 3 == 0:
                        rep = c.call("EVAL", INCR_BOTH_DECLARED, "2", a, b)
                    elif (i + r) % 3 == 1:
                        rep = c.call("EVAL", INCR_BOTH_UNDECLARED, "0", a, b)
                    else:
                        rep = c.pipeline([["MULTI"], ["INCR", a], ["INCR", b], ["EXEC"]])[-1]
                    if rep[0] == "-":
                        errors.append(("write", rep))
        except Exception as e:  # noqa: BLE001
            errors.append(("writer", repr(e)))

    stop = threading.Event()

    def reader():
        try:
            with RespConn(dfly.port) as c:
                for r in range(3000):
                    if stop.is_set():
                        break
                    if r % 2:
                        vals = to_py(c.call("EVAL", READ_BOTH_UNDECLARED, "0", a, b))
                    else:
                        vals = to_py(c.call("EVAL", READ_BOTH_DECLARED, "2", a, b))
                    if not isinstance(vals, list) or vals[0] != vals[1]:
                        errors.append(("read", vals))
        except Exception as e:  # noqa: BLE001
            errors.append(("reader", repr(e)))

    ws = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    rs = [threading.Thread(target=reader) for _ in range(2)]
    for t in ws + rs:
        t.start()
    for t in ws:
        t.join(60)
    stop.set()
    for t in rs:
        t.join(10)
    assert not errors, errors[:5]
    with RespConn(dfly.port) as c:
        assert to_py(c.call("MGET", a, b)) == [str(3 * rounds).encode()] * 2


def _info(conn, section):
    text = conn.call("INFO", section)[1].decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


def test_info_counts_script_coordination_and_memory(damselfly):
    """INFO TRANSACTION counts each coordination path of a script; INFO MEMORY
    shows the interpreters' heap and the cached scripts."""
    server = damselfly("--proactor_threads=2")
    ks = keys_on_shards(2, 1, "evalinfo")
    home, other = ks[0][0], ks[1][0]
    # Writes its declared key; reaches for ARGV[1] (undeclared) only when ARGV[2] == 'reach'.
    reach_after_write = ("redis.call('INCR', KEYS[1]) if ARGV[2] == 'reach' then redis.call('GET', ARGV[1]) end "
                         "return 1")
    # Reads the undeclared key before writing anything.
    reach_before_write = ("if ARGV[2] == 'reach' then redis.call('GET', ARGV[1]) end redis.call('INCR', KEYS[1]) "
                          "return 1")
    with RespConn(server.port) as c:
        assert c.call("CONFIG", "RESETSTAT") == ("+", b"OK")
        before = _info(c, "transaction")
        assert before["eval_io_coordination_total"] == "0"
        assert before["eval_shardlocal_coordination_total"] == "0"
        assert _info(c, "memory")["number_of_cached_scripts"] == "0"

        def counters():
            t = _info(c, "transaction")
            return tuple(int(t[k]) for k in ("eval_io_coordination_total", "eval_shardlocal_coordination_total",
                                             "eval_rerun_lent_total", "eval_undeclared_key_errors_total"))

        # first run: lent (io); later runs: on the declared key's shard
        assert c.call("EVAL", reach_before_write, "1", home, other, "stay") == (":", 1)
        assert counters() == (1, 0, 0, 0)
        assert c.call("EVAL", reach_before_write, "1", home, other, "stay") == (":", 1)
        assert counters() == (1, 1, 0, 0)
        # reaching elsewhere before a write: rerun lent, and lent from then on
        assert c.call("EVAL", reach_before_write, "1", home, other, "reach") == (":", 1)
        assert counters() == (2, 2, 1, 0)
        assert c.call("EVAL", reach_before_write, "1", home, other, "stay") == (":", 1)
        assert counters() == (3, 2, 1, 0)
        # reaching elsewhere after a write: an error
        assert c.call("EVAL", reach_after_write, "1", home, other, "stay") == (":", 1)
        assert c.call("EVAL", reach_after_write, "1", home, other, "stay") == (":", 1)
        assert counters() == (4, 3, 1, 0)
        reply = c.call("EVAL", reach_after_write, "1", home, other, "reach")
        assert reply[0] == "-", reply
        assert counters() == (4, 4, 1, 1)
        # a script with keys on both shards is always lent
        assert c.call("EVAL", "return #KEYS", "2", home, other) == (":", 2)
        assert counters() == (5, 4, 1, 1)

        memory = _info(c, "memory")
        assert memory["number_of_cached_scripts"] == "3"
        assert int(memory["used_memory_lua"]) > 0
        assert c.call("SCRIPT", "FLUSH") == ("+", b"OK")
        assert _info(c, "memory")["number_of_cached_scripts"] == "0"
        assert c.call("CONFIG", "RESETSTAT") == ("+", b"OK")
        assert counters() == (0, 0, 0, 0)


def test_select_inside_a_script_keeps_the_callers_database_equal_redis(servers):
    """Redis 7: SELECT in a script changes the database for the rest of the script only."""
    body = "redis.call('SELECT', 1) redis.call('SET', KEYS[1], 'in1') return redis.call('GET', KEYS[1])"
    results = []
    for _, srv in servers:
        with RespConn(srv.port) as c:
            c.call("FLUSHALL")
            results.append((c.call("EVAL", body, "1", "sel:k"), c.call("GET", "sel:k"), c.call("DBSIZE"),
                            c.call("SELECT", "1"), c.call("GET", "sel:k")))
            c.call("FLUSHALL")
    assert results[0] == results[1]
    assert results[0][1] == ("$", None)


@pytest.mark.parametrize("proto", [2, 3])
def test_redis_call_replies_are_resp2_shaped_for_a_resp3_client_equal_redis(servers, proto):
    """Without redis.setresp(3) a script sees RESP2 replies, whatever the client speaks."""
    body = ("redis.call('ZADD', KEYS[1], 1, 'a', 2, 'b') "
            "return {redis.call('ZPOPMAX', KEYS[1], 2), redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')}")
    body3 = "redis.setresp(3) " + body
    results = []
    for _, srv in servers:
        with RespConn(srv.port) as c:
            c.call("HELLO", str(proto))
            results.append((c.call("EVAL", body, "1", "shape:z"), c.call("EVAL", body3, "1", "shape:z")))
            c.call("DEL", "shape:z")
    assert results[0] == results[1]


def test_scripts_over_maxmemory_follow_redis7(damselfly):
    """Over maxmemory (Redis 7.0's rules, checked against redis-server): a script
    without a `#!lua` line runs and fails at its first denyoom command (pcall gets
    the error); a `#!lua` script is refused unless no-writes or allow-oom; a
    function likewise."""
    srv = damselfly("--maxmemory=2mb")
    big = b"x" * 100_000
    with RespConn(srv.port) as c:
        c.call("SET", "k", "v")
        for i in range(200):
            if c.call("SET", f"big:{i}", big)[0] == "-":
                break
        oom = b"OOM command not allowed when used memory > 'maxmemory'."
        assert c.call("SET", "again", "1") == ("-", oom)
        read = "return redis.call('GET', KEYS[1])"
        write = "return redis.call('SET', KEYS[1], 'w')"
        assert c.call("EVAL", read, "1", "k") == ("$", b"v")
        assert c.call("EVAL", write, "1", "k") == (
            "-", oom + b" script: %s, on @user_script:1." % sha1(write).encode())
        assert c.call("EVAL", "return redis.pcall('SET', KEYS[1], 'w')", "1", "k") == ("-", oom)
        assert c.call("EVAL", "#!lua\n" + read, "1", "k") == ("-", oom)
        assert c.call("EVAL", "#!lua flags=no-writes\n" + read, "1", "k") == ("$", b"v")
        assert c.call("EVAL", "#!lua flags=allow-oom\n" + write, "1", "k") == ("+", b"OK")
        assert c.call("GET", "k") == ("$", b"w")
        assert c.call("EVAL_RO", read, "1", "k") == ("$", b"w")
        lib = ("#!lua name=oomlib\n"
               "redis.register_function{function_name='r', callback=function(k) return redis.call('GET', k[1]) end,"
               " flags={'no-writes'}}\n"
               "redis.register_function('w', function(k) return redis.call('SET', k[1], 'x') end)\n"
               "redis.register_function{function_name='a', callback=function(k) return redis.call('SET', k[1], 'a') end,"
               " flags={'allow-oom'}}")
        assert c.call("FUNCTION", "LOAD", lib) == ("$", b"oomlib")
        assert c.call("FCALL", "r", "1", "k") == ("$", b"w")
        assert c.call("FCALL", "w", "1", "k") == ("-", oom)
        assert c.call("FCALL", "a", "1", "k") == ("+", b"OK")
        assert c.call("FCALL_RO", "r", "1", "k") == ("$", b"a")


def test_shebang_lines_equal_redis(servers):
    """Redis 7's `#!lua` first line: flags parsed, the line kept out of Lua with
    line numbers unchanged, bad engines, options and flags refused."""
    cmds = [
        ["EVAL", "#!lua\nreturn x.y", "0"],
        ["EVAL", "#!lua\nreturn 1", "0"],
        ["EVAL", "#!lua", "0"],
        ["EVAL", "#!lua flags=no-writes\nreturn redis.call('SET', KEYS[1], 'b')", "1", "sb:a"],
        ["EVAL", "#!lua flags=no-writes,allow-oom\nreturn redis.call('GET', KEYS[1])", "1", "sb:a"],
        ["EVAL", "#!lua flags=bogus\nreturn 1", "0"],
        ["EVAL", "#!lua name=x\nreturn 1", "0"],
        ["EVAL", "#!python\nreturn 1", "0"],
        ["EVAL_RO", "#!lua\nreturn 1", "0"],
        ["EVAL_RO", "#!lua flags=no-writes\nreturn redis.call('GET', KEYS[1])", "1", "sb:a"],
        ["SCRIPT", "LOAD", "#!lua flags=bad\nreturn 1"],
        ["SCRIPT", "LOAD", "#!lua flags=no-writes\nreturn 2"],
        ["EVALSHA_RO", sha1("#!lua flags=no-writes\nreturn 2"), "0"],
        ["EVAL", "#!lua\nreturn redis.call('SET', KEYS[1], 'c')", "1", "sb:a"],
        ["GET", "sb:a"],
    ]
    both(servers, cmds)
