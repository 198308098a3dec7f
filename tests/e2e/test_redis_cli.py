"""redis-cli against Damselfly; outputs are compared with a real redis-server."""

import re
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(not shutil.which("redis-cli"), reason="redis-cli not installed")


@pytest.fixture(scope="module")
def servers(damselfly_module, redis_server):
    return damselfly_module("--proactor_threads=2"), redis_server


def cli(port, *args, stdin=None):
    p = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
                       input=stdin, capture_output=True, timeout=20)
    assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p.stdout.decode()


def both(servers, *args, stdin=None):
    d, r = servers
    return cli(d.port, *args, stdin=stdin), cli(r.port, *args, stdin=stdin)


def test_set_get_raw(servers):
    d, _ = servers
    cli(d.port, "flushall")
    assert cli(d.port, "set", "k", "v") == "OK\n"
    assert cli(d.port, "get", "k") == "v\n"
    assert cli(d.port, "get", "missing") == "\n"
    assert cli(d.port, "incr", "n") == "1\n"


NO_RAW_CASES = [
    (("flushall",), 'OK\n'),
    (("set", "k", "v"), 'OK\n'),
    (("get", "k"), '"v"\n'),
    (("get", "missing"), '(nil)\n'),
    (("incr", "n"), '(integer) 1\n'),
    (("mget", "k", "missing", "n"), '1) "v"\n2) (nil)\n3) "1"\n'),
    (("exists", "k", "k", "missing"), '(integer) 2\n'),
    (("keys", "nomatch*"), '(empty array)\n'),
    (("set", "k"), "(error) ERR wrong number of arguments for 'set' command\n"),
    (("incr", "k"), "(error) ERR value is not an integer or out of range\n"),
    (("append", "k", " with space"), '(integer) 12\n'),
    (("get", "k"), '"v with space"\n'),
]


def test_no_raw_output_shapes(servers):
    for args, expected in NO_RAW_CASES:
        dout, rout = both(servers, "--no-raw", *args)
        assert rout == expected, ("harness expectation wrong vs redis-server", args, rout)
        assert dout == expected, args


def test_resp3_hello(servers):
    dout, rout = both(servers, "-3", "--no-raw", "hello", "3")

    def shape(out):
        # '1# "server" => "redis"' -> ('server', kind-of-value)
        rows = []
        for line in out.splitlines():
            m = re.match(r'^\s*\d+# "(\w+)" => (.*)$', line)
            assert m, line
            v = m.group(2)
            kind = "int" if v.startswith("(integer)") else ("str" if v.startswith('"') else v)
            rows.append((m.group(1), kind))
        return rows

    assert shape(dout) == shape(rout)
    assert '"proto" => (integer) 3' in dout
    assert '"mode" => "standalone"' in dout
    assert '"modules" => (empty array)' in dout
    # in RESP3 redis-cli shows a null for a missing key the same way
    assert both(servers, "-3", "--no-raw", "get", "nope-resp3")[0] == "(nil)\n"


def test_info_server(servers):
    d, _ = servers
    out = cli(d.port, "info", "server")
    assert out.startswith("# Server")
    assert re.search(r"^multiplexing_api:(iouring|epoll)\r?$", out, re.M), out
    assert re.search(r"^redis_version:7\.", out, re.M)


def test_pipe_commands_through_stdin(servers):
    script = b"flushall\nset a 1\nincr a\nget a\nget zz\nmget a zz\nset 'b c' \"d e\"\nget \"b c\"\n"
    dout, rout = both(servers, stdin=script)
    assert rout == "OK\nOK\n2\n2\n\n2\n\nOK\nd e\n"
    assert dout == rout
    dout, rout = both(servers, "--no-raw", stdin=script)
    assert dout == rout
