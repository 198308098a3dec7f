"""Smaller reply differences from issue 20, each checked against a real redis-server.

SCAN-family cursors parsed as Redis's ``strtoul`` does (``-1`` wraps), globs whose
ranges hold bytes >= 0x80 (Redis compares signed chars), EXEC with arguments (EXECABORT,
and the transaction ends), UNSUBSCRIBE queued inside MULTI, the order of argument checks
(EVALSHA, SET with two expiry options), RESTORE of payloads from a newer RDB version and
FREQ out of range. Every reply must be byte-identical.
"""

import struct

import pytest


@pytest.fixture(scope="module")
def servers(damselfly_module, redis_server):
    return {"damselfly": damselfly_module("--proactor_threads=4"), "redis": redis_server}


def both(servers, fn):
    out = {}
    for name, srv in servers.items():
        with srv.raw() as c:
            c.call("SELECT", "0")
            assert c.call("FLUSHALL") == ("+", b"OK")
            out[name] = fn(c)
    assert out["damselfly"] == out["redis"]
    return out["redis"]


CURSORS = ["-1", "18446744073709551615", "18446744073709551616", "-18446744073709551615",
           "-18446744073709551616", "1.5", " 1", "1 ", "+1", "-0", "", "-", "+", "0x10", "00", "abc"]


def test_scan_cursors(servers):
    def run(c):
        out = [c.call("SCAN", cur) for cur in CURSORS]
        out += [c.call("SCAN", cur, "MATCH", "x*", "COUNT", "5") for cur in CURSORS[:4]]
        # small collections come back whole whatever the cursor (listpack / intset)
        c.call("ZADD", "z", "1", "a", "2", "b")
        c.call("HSET", "h", "f", "v", "g", "w")
        c.call("SADD", "s", "1", "2", "3")
        for cmd, key in (("ZSCAN", "z"), ("HSCAN", "h"), ("SSCAN", "s"), ("ZSCAN", "missing")):
            out += [c.call(cmd, key, cur) for cur in CURSORS]
        return out
    replies = both(servers, run)
    assert replies[0] == ("*", [("$", b"0"), ("*", [])])  # SCAN -1 is accepted
    assert replies[2][0] == "-"


KEYS = [b"a", b"z", b"A", b"0", b"\x7f", b"\x80", b"\xc3\xa9", b"\xff", b"\xfe-x", b"b\x90"]
PATTERNS = [b"[a-\xff]*", b"[\xff-a]*", b"[\x80-z]*", b"[^a-\xff]*", b"[\x00-\xff]*", b"[\x90-\xa0]",
            b"b[\x80-\xff]", b"?[\x7f-\x91]", b"[\xc0-\xd0]*", b"[\x01-\x7f]"]


def test_glob_ranges_with_high_bytes(servers):
    def run(c):
        for k in KEYS:
            c.call("SET", k, "1")
        out = []
        for p in PATTERNS:
            r = c.call("KEYS", p)
            out.append((p, sorted(v for _, v in r[1])))
            cur, seen = b"0", []
            while True:
                r = c.call("SCAN", cur, "MATCH", p, "COUNT", "1000")
                cur, items = r[1][0][1], r[1][1][1]
                seen += [v for _, v in items]
                if cur == b"0":
                    break
            out.append((b"scan " + p, sorted(seen)))
        return out
    replies = both(servers, run)
    assert replies[0][1] and len(replies[0][1]) < len(KEYS)  # the range really splits the keys


def test_exec_with_arguments(servers):
    def run(c):
        return [c.call(*cmd) for cmd in [
            ("EXEC", "x"),
            ("MULTI",), ("SET", "a", "1"), ("EXEC", "x"), ("EXEC",), ("GET", "a"),
            ("WATCH", "k"), ("MULTI",), ("EXEC", "a", "b"), ("EXEC",), ("DISCARD",),
            ("MULTI",), ("DISCARD", "x"), ("EXEC",),
        ]]
    both(servers, run)


def test_unsubscribe_inside_multi(servers):
    def run(c):
        return [c.call(*cmd) for cmd in [
            ("MULTI",), ("UNSUBSCRIBE",), ("PUNSUBSCRIBE", "x"), ("UNSUBSCRIBE", "a", "b"), ("PING",), ("EXEC",),
            ("PING",),
        ]]
    both(servers, run)


def test_check_order(servers):
    def run(c):
        sha = "f" * 40
        return [c.call(*cmd) for cmd in [
            ("EVALSHA", "fff", "5"), ("EVALSHA", "fff", "x"), ("EVALSHA", sha, "x"), ("EVALSHA", sha, "-1"),
            ("EVALSHA", sha, "5"), ("EVALSHA", sha, "0"), ("EVALSHA", "F" * 40, "1", "k"),
            ("SET", "k", "v", "EX", "10", "EXAT", "100"), ("SET", "k", "v", "EX", "x", "EXAT", "100"),
            ("SET", "k", "v", "EXAT", "100", "EX", "x"), ("SET", "k", "v", "EX", "-1", "PX", "5"),
            ("SET", "k", "v", "EX", "x", "KEEPTTL"), ("SET", "k", "v", "KEEPTTL", "EX", "x"),
            ("SET", "k", "v", "EX", "x", "NX", "XX"), ("SET", "k", "v", "EX", "x"), ("SET", "k", "v", "EX", "0"),
            ("SET", "k", "v", "PX", "x", "GET"), ("SET", "k", "v", "EX", "99999999999999999"),
        ]]
    both(servers, run)


def test_multipop_check_order(servers):
    """BLMPOP / BZMPOP check numkeys, the side, COUNT, and the timeout last."""
    def run(c):
        out = []
        for name, side in (("BLMPOP", "LEFT"), ("BZMPOP", "MIN")):
            out += [c.call(*cmd) for cmd in [
                (name, "abc", "0", "k", side), (name, "abc", "x", "k", side), (name, "abc", "5", "k", side),
                (name, "abc", "1", "k", "bogus"), (name, "abc", "1", "k", side, "COUNT", "0"),
                (name, "abc", "1", "k", side, "COUNT"), (name, "abc", "1", "k", side), (name, "-1", "1", "k", side),
                (name, "-1", "0", "k", side), (name, "0.01", "2", "k1", "k2", side, "COUNT", "2"),
            ]]
        return out
    both(servers, run)


def _crc64(data):
    """Redis's CRC-64 (Jones, reflected), as DUMP payloads carry it."""
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x95AC9329AC4BC9B5 if crc & 1 else crc >> 1
    return crc


def _with_version(payload, version):
    body = payload[:-10] + struct.pack("<H", version)
    return body + struct.pack("<Q", _crc64(body))


def test_restore_versions_and_freq(servers):
    def run(c):
        out = []
        c.call("SET", "s", "hello")
        payload = c.call("DUMP", "s")[1]
        assert struct.pack("<Q", _crc64(payload[:-8])) == payload[-8:]
        for sanitize in ("no", "yes"):
            c.call("CONFIG", "SET", "sanitize-dump-payload", sanitize)
            for v in (9, 10, 11, 12, 65535):
                out.append(c.call("RESTORE", f"k{v}{sanitize}", "0", _with_version(payload, v)))
            for args in (("FREQ", "300"), ("FREQ", "256"), ("FREQ", "-1"), ("FREQ", "x"), ("FREQ", "255"),
                         ("IDLETIME", "-1"), ("IDLETIME", "x"), ("FREQ", "5", "IDLETIME", "5")):
                out.append(c.call("RESTORE", "f" + "".join(args) + sanitize, "0", payload, *args))
        c.call("CONFIG", "SET", "sanitize-dump-payload", "no")
        return out
    replies = both(servers, run)
    assert replies[2][0] == "-"  # version 11 refused


def test_sorted_results_from_plain_sets(servers):
    """ZDIFFSTORE over a plain set stored its members in set order (issue 20)."""
    members = ["a", "b", "c", "1", "2", "10", "-1", "B", "x y", "aa", "zz", "0"]

    def run(c):
        out = []
        c.call("SADD", "s", *members)
        c.call("SADD", "ints", "5", "3", "1", "20")
        c.call("SADD", "t", "b", "2", "zz")
        c.call("ZADD", "z", "1", "c", "0", "b", "-2", "q", "1", "1")
        for cmd in (("ZDIFFSTORE", "d", "1", "s"), ("ZDIFFSTORE", "d", "2", "s", "t"), ("ZDIFFSTORE", "d", "2", "s", "z"),
                    ("ZDIFFSTORE", "d", "1", "ints"), ("ZDIFFSTORE", "d", "2", "z", "t"),
                    ("ZUNIONSTORE", "d", "3", "s", "t", "z"), ("ZUNIONSTORE", "d", "2", "s", "ints", "WEIGHTS", "3", "-1"),
                    ("ZINTERSTORE", "d", "2", "s", "t"), ("ZINTERSTORE", "d", "2", "s", "z", "AGGREGATE", "MAX"),
                    ("ZUNIONSTORE", "d", "2", "z", "s", "AGGREGATE", "MIN", "WEIGHTS", "2", "0.5")):
            out.append(c.call(*cmd))
            out.append(c.call("ZRANGE", "d", "0", "-1", "WITHSCORES"))
            out.append(c.call("ZRANGEBYLEX", "d", "-", "+"))
            out.append(c.call("ZRANK", "d", "a"))
            out.append(c.call("ZRANGESTORE", "r", "d", "0", "-1", "REV"))
            out.append(c.call("ZRANGE", "r", "0", "-1", "WITHSCORES"))
        for cmd in (("ZDIFF", "1", "s", "WITHSCORES"), ("ZDIFF", "2", "s", "t"), ("ZUNION", "2", "s", "ints", "WITHSCORES"),
                    ("ZINTER", "2", "s", "z", "WITHSCORES")):
            out.append(c.call(*cmd))
        return out
    replies = both(servers, run)
    assert replies[1][1][0] == ("$", b"-1")  # ZDIFFSTORE d 1 s sorted: "-1" first
