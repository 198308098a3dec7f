"""DEBUG (OBJECT, PROTOCOL, SET-ACTIVE-EXPIRE, RELOAD, POPULATE, SLEEP), MEMORY (STATS,
DOCTOR, MALLOC-STATS, PURGE, HELP) and LATENCY (LATEST, HISTORY, RESET, GRAPH, DOCTOR)
against Damselfly (4 threads) and a real redis-server 7.0 started with DEBUG enabled:
replies compared raw where Redis's answer is deterministic, by shape and field names
where it reports its own allocator."""

import re
import time

import pytest

from conftest import Factory
from resp import RespConn


@pytest.fixture(scope="module")
def pair(damselfly_module, tmp_path_factory):
    f = Factory(str(tmp_path_factory.mktemp("redis-debug")))
    r = f.start_redis("--enable-debug-command", "yes")
    yield damselfly_module("--proactor_threads=4"), r
    f.close()


def both(pair, proto, *cmds):
    """Runs the commands on both servers (after FLUSHALL) and returns both transcripts."""
    out = []
    for srv in pair:
        with RespConn(srv.port) as c:
            c.call("HELLO", str(proto))
            c.call("FLUSHALL")
            out.append([c.call(*cmd) for cmd in cmds])
    return out


@pytest.mark.parametrize("proto", [2, 3])
def test_debug_protocol_equal_redis(pair, proto):
    types = ["string", "integer", "double", "bignum", "null", "array", "set", "map", "verbatim",
             "true", "false", "nosuchtype"]
    if proto == 2:
        types += ["attrib", "push"]
    d, r = both(pair, proto, *[("DEBUG", "PROTOCOL", t) for t in types])
    assert d == r


def test_debug_protocol_attrib_and_push_frames_resp3(pair):
    raw = []
    for srv in pair:
        with RespConn(srv.port) as c:
            c.call("HELLO", "3")
            c.send_raw(b"DEBUG PROTOCOL attrib\r\nDEBUG PROTOCOL push\r\nPING\r\n")
            data = b""
            while not data.endswith(b"+PONG\r\n"):
                data += c.sock.recv(65536)
            raw.append(data)
    assert raw[0] == raw[1]


def test_debug_object_and_errors_equal_redis(pair):
    cmds = [("SET", "s", "hello"), ("SET", "n", "12345"), ("SET", "big", "".join(chr(33 + (i * 37) % 90) for i in range(100))),
            ("DEBUG", "OBJECT", "nokey"), ("DEBUG", "NOSUCH"), ("DEBUG", "OBJECT"),
            ("DEBUG", "SLEEP", "0"), ("DEBUG", "CHANGE-REPL-ID"),
            ("DEBUG", "QUICKLIST-PACKED-THRESHOLD", "100")]
    d, r = both(pair, 2, *cmds)
    assert d == r
    fields = []
    for srv in pair:
        with RespConn(srv.port) as c:
            line = {}
            for key in ("s", "n", "big"):
                kind, text = c.call("DEBUG", "OBJECT", key)
                assert kind == "+"
                m = re.fullmatch(rb"Value at:0x[0-9a-f]+ refcount:(\d+) encoding:(\S+) serializedlength:(\d+) "
                                 rb"lru:\d+ lru_seconds_idle:(\d+)", text)
                assert m, text
                line[key] = m.group(1, 2, 3)
            fields.append(line)
    assert fields[0] == fields[1]


def test_debug_set_active_expire_equal_redis(pair):
    seen = []
    for srv in pair:
        with RespConn(srv.port) as c:
            c.call("FLUSHALL")
            out = [c.call("DEBUG", "SET-ACTIVE-EXPIRE", "0")]
            for i in range(20):
                c.call("SET", f"k{i}", "v", "PX", "30")
            time.sleep(0.5)
            out.append(c.call("DBSIZE"))          # nothing expired them in the background
            out.append(c.call("DEBUG", "SET-ACTIVE-EXPIRE", "1"))
            deadline = time.monotonic() + 5
            while c.call("DBSIZE") != (":", 0) and time.monotonic() < deadline:
                time.sleep(0.05)
            out.append(c.call("DBSIZE"))
            seen.append(out)
    assert seen[0] == seen[1] == [("+", b"OK"), (":", 20), ("+", b"OK"), (":", 0)]


def test_debug_populate_and_reload_equal_redis(pair):
    cmds = [("DEBUG", "POPULATE", "200"), ("DBSIZE",), ("GET", "key:7"),
            ("DEBUG", "POPULATE", "10", "p", "12"), ("GET", "p:3"), ("DEBUG", "POPULATE", "5", "p", "3"),
            ("GET", "p:4"), ("RPUSH", "list", "a", "b"), ("HSET", "h", "f", "v"),
            ("DEBUG", "RELOAD"), ("DBSIZE",), ("LRANGE", "list", "0", "-1"), ("HGETALL", "h"), ("GET", "key:199")]
    d, r = both(pair, 2, *cmds)
    assert d == r


@pytest.mark.parametrize("proto", [2, 3])
def test_memory_commands_equal_redis(pair, proto):
    cmds = [("MEMORY", "DOCTOR"), ("MEMORY", "PURGE"), ("MEMORY", "HELP"), ("MEMORY", "STATS", "x"),
            ("MEMORY", "NOSUCH"), ("MEMORY", "USAGE", "missing")]
    d, r = both(pair, proto, *cmds)
    assert d == r


@pytest.mark.parametrize("proto", [2, 3])
def test_memory_stats_fields_as_redis(pair, proto):
    names = []
    for srv in pair:
        with RespConn(srv.port) as c:
            c.call("HELLO", str(proto))
            c.call("FLUSHALL")
            c.call("SET", "a", "1")
            c.call("SET", "b", "2", "EX", "100")
            kind, body = c.call("MEMORY", "STATS")
            if proto == 3:
                assert kind == "%"
                pairs = body
            else:
                assert kind == "*"
                pairs = list(zip(body[::2], body[1::2]))
            stats = {k[1].decode(): v for k, v in pairs}
            names.append(list(stats))
            assert stats["keys.count"] == (":", 2)
            db0 = stats["db.0"]
            inner = db0[1] if proto == 3 else list(zip(db0[1][::2], db0[1][1::2]))
            assert [k[1] for k, _ in inner] == [b"overhead.hashtable.main", b"overhead.hashtable.expires",
                                                b"overhead.hashtable.slot-to-keys"]
            assert stats["total.allocated"][0] == ":"
            assert stats["dataset.percentage"][0] == ("," if proto == 3 else "$")
    assert names[0] == names[1]


def test_malloc_stats_is_a_text(pair):
    d = pair[0]
    with RespConn(d.port) as c:
        kind, text = c.call("MEMORY", "MALLOC-STATS")
        assert kind == "$" and text


def test_latency_monitor_equal_redis(pair):
    shapes = []
    for srv in pair:
        with RespConn(srv.port) as c:
            out = [c.call("LATENCY", "RESET")]
            out.append(c.call("CONFIG", "SET", "latency-monitor-threshold", "0"))
            out.append(c.call("LATENCY", "DOCTOR"))
            out.append(c.call("LATENCY", "GRAPH", "command"))
            out.append(c.call("CONFIG", "SET", "latency-monitor-threshold", "100"))
            out.append(c.call("LATENCY", "DOCTOR"))
            out.append(c.call("DEBUG", "SLEEP", "0.25"))
            kind, latest = c.call("LATENCY", "LATEST")
            assert kind == "*" and len(latest) == 1, latest
            event, at, last, top = latest[0][1]
            assert event == ("$", b"command")
            assert abs(at[1] - time.time()) < 5 and 250 <= last[1] < 1000 and top == last
            kind, history = c.call("LATENCY", "HISTORY", "command")
            assert len(history) == 1 and history[0][1][1] == last
            kind, graph = c.call("LATENCY", "GRAPH", "command")
            assert re.search(rb"command - high \d+ ms, low \d+ ms \(all time high \d+ ms\)", graph), graph
            kind, doctor = c.call("LATENCY", "DOCTOR")
            assert b"1. command: 1 latency spikes" in doctor, doctor
            out.append(c.call("LATENCY", "RESET", "command", "nosuch"))
            out.append(c.call("LATENCY", "HISTORY", "command"))
            out.append(c.call("LATENCY", "LATEST"))
            out.append(c.call("LATENCY", "NOSUCH"))
            out.append(c.call("CONFIG", "SET", "latency-monitor-threshold", "0"))
            shapes.append(out)
    assert shapes[0] == shapes[1]
