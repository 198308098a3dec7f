"""Crashes Redis's own test suite found (scripts/redis-suite.sh), pinned here so the quick
e2e run catches them too; each is compared with redis-server."""

import pytest
import redis

UNPACKS = [
    "return {unpack({1,2,3}, -2, 2147483647)}",
    "return {unpack({1,2,3}, 0, 2147483647)}",
    "return {unpack({1,2,3}, -2147483648, -2)}",
    "return {unpack({1,2,3}, -1, -2)}",
    "return {unpack({1,2,3}, 2)}",
    "return {unpack({'a','b'})}",
    # lua-bitop negated the digit count: -2^31 overflowed and wrote past its buffer.
    "return bit.tohex(65535, -2147483648)",
    "return bit.tohex(65535, 2147483648)",
    "return bit.tohex(65535, -3)",
    "return bit.tohex(-1)",
    "return bit.tohex(65535, 12)",
]


def answer(c, script):
    try:
        return c.eval(script, 0)
    except redis.ResponseError as e:
        return "ERR " + str(e).split(" script:")[0]


@pytest.mark.parametrize("script", UNPACKS)
def test_lua_unpack_and_tohex_bounds_are_checked(damselfly, redis_server, script):
    # The system Lua 5.1 computes unpack's count in an int: a huge range wrapped and the
    # server crashed writing past the Lua stack.
    d = damselfly("--proactor_threads=2")
    c = d.client()
    assert answer(c, script) == answer(redis_server.client(), script)
    assert c.ping()
