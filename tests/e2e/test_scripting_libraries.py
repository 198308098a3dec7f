"""cmsgpack and struct in scripts, compared byte for byte with redis-server 7.0.

Redis bundles lua-cmsgpack and Roberto Ierusalimschy's struct library and
exposes them as the globals ``cmsgpack`` and ``struct``; Damselfly has its own
C for both (Sources/CLuaBridge/lua_cmsgpack.c, lua_struct.c).  Every script
here returns packed bytes as bulk strings, or unpacked values, or the error a
bad input raises, and both servers must answer the same bytes: which integer
width, float32 or float64, fixstr/str8/str16/str32, array or map (and the
map's key order), the nesting limit, offsets from unpack_one/unpack_limit,
struct's alignment, byte order, sign extension and its error messages.
"""

import pytest

from resp import RespConn

NUM_SHARDS = 2


@pytest.fixture(scope="module")
def servers(damselfly_module, redis_server):
    return [("damselfly", damselfly_module(f"--proactor_threads={NUM_SHARDS}")), ("redis", redis_server)]


def both(servers, cmds):
    out = {}
    for name, srv in servers:
        with RespConn(srv.port) as c:
            c.call("FLUSHALL")
            out[name] = [c.call(*cmd) for cmd in cmds]
    a, b = out["damselfly"], out["redis"]
    diffs = [f"{cmds[i][1][:80]!r}\n  dfly={x!r}\n  redis={y!r}" for i, (x, y) in enumerate(zip(a, b)) if x != y]
    assert not diffs, "\n".join(diffs)
    return a


def evals(scripts):
    return [["EVAL", s, "0"] for s in scripts]


CMSGPACK_PACK = [
    "return cmsgpack.pack({a=1, b={1, 2, 3}, c='x', d=1.5, e=true})",
    # every integer width, both signs, and the edges between them
    "return cmsgpack.pack(0, 1, -1, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296, "
    "-32, -33, -128, -129, -32768, -32769, -2147483648, -2147483649, 2^53, -2^53)",
    # floats: float32 when exact, else float64; huge and special values
    "return cmsgpack.pack(0.5, 0.1, -0.0, 1/0, -1/0, 3.14159, 1e300, 2^63, -2^63, 1.5e-45)",
    "return cmsgpack.pack(string.rep('a', 31), string.rep('b', 32), string.rep('c', 255), "
    "string.rep('d', 256), string.rep('e', 65535), string.rep('f', 65536))",
    "return cmsgpack.pack(nil, true, false, {}, {{}}, {1, nil, 3}, {[1]=1, [2]=2, [4]=4}, {[0]='z'}, "
    "{[1.5]='x'}, {n=1}, {[true]=1, [2.5]='x'})",
    "local t = {} for i = 1, 20 do t[i] = i end return cmsgpack.pack(t)",
    "local t = {} for i = 1, 20 do t['k' .. i] = i * 1000 end return cmsgpack.pack(t)",
    "local t = {} for i = 1, 70000 do t[i] = i % 3 end return cmsgpack.pack(t)",
    "local t = {} for i = 1, 70000 do t['k' .. i] = 1 end return #cmsgpack.pack(t)",
    # deeper than 16 levels: the innermost tables pack as nil
    "local t = {} local c = t for i = 1, 20 do c[1] = {} c = c[1] end return cmsgpack.pack(t)",
    "return cmsgpack.pack(redis.call, 'after a function')",
    "return cmsgpack.pack()",
    "cmsgpack.pack = nil",
    "return {cmsgpack._NAME, cmsgpack._VERSION, cmsgpack._COPYRIGHT, cmsgpack._DESCRIPTION}",
]

CMSGPACK_UNPACK = [
    "return {cmsgpack.unpack(cmsgpack.pack(1, 'two', {3, 4}, {five=5}))}",
    "local t = cmsgpack.unpack(cmsgpack.pack({a=1, b={1, 2, 3}, c='x', d=1.5, e=true})) "
    "return {t.a, t.b, t.c, tostring(t.d), tostring(t.e)}",
    "return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3))}",
    "return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3), 1)}",
    "return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3), 2)}",
    "return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 2)}",
    "return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 0)}",
    "return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 5, 1)}",
    "return {cmsgpack.unpack('')}",
    "return {cmsgpack.unpack_one('')}",
    "local v = {cmsgpack.unpack('\\203\\64\\9\\33\\251\\84\\68\\45\\24', '\\202\\63\\192\\0\\0', "
    "'\\207\\0\\0\\0\\1\\0\\0\\0\\0', '\\211\\255\\255\\255\\255\\255\\255\\255\\255')} "
    "return {tostring(v[1]), tostring(v[2]), v[3], v[4]}",
    "return {cmsgpack.unpack('\\220\\0\\2\\1\\2')}",
    "return {cmsgpack.unpack('\\222\\0\\1\\161a\\1')}",
    "return {cmsgpack.unpack('\\217\\3abc', '\\218\\0\\1z', '\\219\\0\\0\\0\\2yz', '\\192', '\\194', '\\195')}",
    "return cmsgpack.unpack('\\146\\1')",
    # errors
    "return {cmsgpack.unpack_limit('\\1\\2', -1)}",
    "return {cmsgpack.unpack_one('\\1\\2', 5)}",
    "return {cmsgpack.unpack('\\205\\1')}",
    "return {cmsgpack.unpack('\\193')}",
    "return {pcall(cmsgpack.unpack, '\\196\\1a')}",
]


def test_cmsgpack_pack_equal_redis(servers):
    both(servers, evals(CMSGPACK_PACK))


def test_cmsgpack_unpack_equal_redis(servers):
    both(servers, evals(CMSGPACK_UNPACK))


def test_cmsgpack_bullmq_style_round_trip_equal_redis(servers):
    """Options packed into a key by one script, read back by another (as BullMQ keeps job opts)."""
    store = ("local opts = {attempts = tonumber(ARGV[1]), delay = 0, backoff = {type = 'exponential', delay = 1000}, "
             "removeOnComplete = true, jobId = ARGV[2], priority = 2.5, parent = nil, tags = {'a', 'b'}} "
             "redis.call('HSET', KEYS[1], 'opts', cmsgpack.pack(opts), 'name', ARGV[2]) "
             "return redis.call('HGET', KEYS[1], 'opts')")
    load = ("local opts = cmsgpack.unpack(redis.call('HGET', KEYS[1], 'opts')) "
            "return {opts.attempts, opts.backoff.type, opts.backoff.delay, tostring(opts.removeOnComplete), "
            "opts.jobId, tostring(opts.priority), opts.tags[2], tostring(opts.parent)}")
    # the client packs (as msgpackr does), the script unpacks and repacks
    client_packed = b"\x83\xa8attempts\x03\xa5delay\xcd\x03\xe8\xa4lifo\xc2"
    repack = "local t = cmsgpack.unpack(ARGV[1]) t.attempts = t.attempts + 1 return {cmsgpack.pack(t), t.attempts, t.delay}"
    out = both(servers, [
        ["EVAL", store, "1", "bull:q:1", "3", "job-1"],
        ["EVAL", load, "1", "bull:q:1"],
        ["HGET", "bull:q:1", "opts"],
        ["EVAL", repack, "0", client_packed],
    ])
    assert out[0][0] == "$" and out[0][1].startswith(b"\x87")  # 7 keys: parent = nil is no entry


STRUCT = [
    "return struct.pack('>I2', 258)",
    "return struct.pack('<I2', 258)",
    "return struct.pack('bBhHlLTiI', -1, 255, -2, 65535, -3, 4, 5, -6, 7)",
    "return struct.pack('>bBhHlLTiI', -1, 255, -2, 65535, -3, 4, 5, -6, 7)",
    "return struct.pack('>i3I5i8I1', -2, 1099511627775, -9, 200)",
    "return struct.pack('<i16', -1)",
    "return struct.pack('>I16', 12345)",
    "return struct.pack('fd', 1.5, -2.25)",
    "return struct.pack('>fd', 1.5, -2.25)",
    "return struct.pack('c', 'abc')",
    "return struct.pack('c3c0s', 'abcdef', 'xy', 'zz')",
    "return struct.pack('!4 b i b d', 1, 2, 3, 4.5)",
    "return struct.pack('! b d', 1, 4.5)",
    "return struct.pack('!2 bxh', 1, 2)",
    "return struct.pack('I4', '12')",
    "return struct.pack('>I4', 2^32 + 5)",
    "return struct.pack('>i4', -2^31 - 1)",
    "return struct.pack('>I2', 1.9)",
    "return struct.size('>I2i4bd')",
    "return struct.size('!8 b d')",
    "return struct.size('c9')",
    "return struct.size('n')",
    "return {struct.unpack('>I2', 'ab')}",
    "return {struct.unpack('>I2', 'abcd', 3)}",
    "return {struct.unpack('<i2', '\\255\\255')}",
    "return {struct.unpack('>bBhH', '\\255\\255\\128\\0\\128\\0')}",
    "return {struct.unpack('>i3I3', '\\255\\255\\254\\255\\255\\254')}",
    "return {struct.unpack('>l', '\\255\\255\\255\\255\\255\\255\\255\\254')}",
    "local a, b, n = struct.unpack('>fd', struct.pack('>fd', 1.5, -2.25)) return {tostring(a), tostring(b), n}",
    "return {struct.unpack('bc0', '\\2abc')}",
    "return {struct.unpack('ss', 'ab\\0cd\\0e')}",
    "return {struct.unpack('c2xc1', 'abcd')}",
    "return {struct.unpack('!4 b i', struct.pack('!4 b i', 1, 2))}",
    "local s = struct.pack('>I2I4', 7, 123456) return {s, struct.unpack('>I2I4', s)}",
    # errors
    "return struct.pack('c')",
    "return struct.pack('c2', 'a')",
    "return struct.pack('q', 1)",
    "return struct.pack('i33', 1)",
    "return struct.pack('!3', 1)",
    "return struct.pack('I4', 'x')",
    "return struct.size('s')",
    "return struct.size('c0')",
    "return struct.size('?')",
    "return {struct.unpack('>I2', 'a')}",
    "return {struct.unpack('>I2', 'abc', 0)}",
    "return {struct.unpack('c0', 'abc')}",
    "return {struct.unpack('bc0', '\\9abc')}",
    "return {struct.unpack('s', 'abc')}",
    "return {struct.unpack('z', 'abc')}",
    "return {struct.unpack('>I2', 'abcd', 10)}",
    "struct.pack = nil",
]


def test_struct_equal_redis(servers):
    both(servers, evals(STRUCT))


def test_struct_values_from_arguments_equal_redis(servers):
    """Binary records built from ARGV, stored, and parsed back by another script."""
    build = ("local rec = struct.pack('>I2i4c0d', tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])) "
             "redis.call('SET', KEYS[1], rec) return rec")
    parse = ("local id, delta, name, score, nxt = struct.unpack('>I2i4c0d', redis.call('GET', KEYS[1])) "
             "return {id, delta, name, tostring(score), nxt}")
    both(servers, [
        ["EVAL", build, "1", "rec:1", "513", "-70000", "hello", "2.5"],
        ["EVAL", parse, "1", "rec:1"],
        ["GET", "rec:1"],
        ["EVAL", build, "1", "rec:2", "65535", "2147483647", "", "-0.125"],
        ["EVAL", parse, "1", "rec:2"],
    ])
