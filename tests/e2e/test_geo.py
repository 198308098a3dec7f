"""GEO commands, differential against redis-server: the same random command
streams go to Damselfly (--proactor_threads=4) and a real redis-server, and
every raw reply must match (RESP2 and RESP3), then the keys' scores.

Points are random over the whole valid range plus clusters around a few
centres (so radius and box searches find many members, near the poles and
the antimeridian too); radii and boxes are random in every unit; options are
drawn from every combination Redis accepts and many it refuses. Sources and
STORE destinations sit on different shards, so STORE / STOREDIST /
GEOSEARCHSTORE run as transactions across shards."""

import random

import pytest

from difftools import fresh
from resp import RespConn
from util import keys_on_shards

NUM_SHARDS = 4
_BY = keys_on_shards(NUM_SHARDS, 2, "geo")
KEYS = [k for s in range(NUM_SHARDS) for k in _BY[s]]
_BD = keys_on_shards(NUM_SHARDS, 1, "dst")
DESTS = [k for s in range(NUM_SHARDS) for k in _BD[s]]
LAT_MAX = 85.05112878
CENTRES = [(13.36, 38.11), (-0.12, 51.5), (179.9, -16.5), (-179.95, 65.0), (2.35, 84.9), (-70.6, -33.4),
           (0.0, 0.0), (139.7, 35.7)]
UNITS = [("m", 1), ("km", 1000), ("ft", 0.3048), ("mi", 1609.34), ("KM", 1000), ("Mi", 1609.34)]


def _coord(rng):
    if rng.random() < 0.75:
        lon, lat = rng.choice(CENTRES)
        spread = rng.choice([0.001, 0.05, 0.5, 3.0])
        lon = max(-180.0, min(180.0, lon + rng.uniform(-spread, spread)))
        lat = max(-LAT_MAX, min(LAT_MAX, lat + rng.uniform(-spread, spread)))
    else:
        lon, lat = rng.uniform(-180, 180), rng.uniform(-LAT_MAX, LAT_MAX)
    return [repr(lon), repr(lat)]


def _member(rng):
    return f"m{rng.randint(0, 150)}"


def _distance(rng, max_m=2_500_000):
    unit, factor = rng.choice(UNITS)
    metres = rng.choice([0, 1, 50, 1000, 20_000, 150_000, 600_000, max_m]) * rng.random()
    return [repr(round(metres / factor, rng.choice([0, 2, 6]))), unit]


def _geoadd(rng):
    opts = rng.choice([[], [], [], ["NX"], ["XX"], ["CH"], ["XX", "CH"], ["CH", "NX"]])
    args = []
    for _ in range(rng.randint(1, 6)):
        args += _coord(rng) + [_member(rng)]
    return ["GEOADD", rng.choice(KEYS)] + opts + args


def _bulk_geoadd(rng):
    args = []
    for _ in range(rng.choice([40, 150])):
        args += _coord(rng) + [_member(rng)]
    return ["GEOADD", rng.choice(KEYS)] + args


def _options(rng, store_ok, search_store=False):
    opts = []
    if not store_ok or rng.random() < 0.7:
        for o in ("WITHDIST", "WITHHASH", "WITHCOORD"):
            if not search_store and rng.random() < 0.4:
                opts.append(o)
    r = rng.random()
    if r < 0.25:
        opts += ["COUNT", str(rng.randint(1, 12))]
    elif r < 0.35:
        opts += ["COUNT", str(rng.randint(1, 12)), "ANY"]
    if rng.random() < 0.5:
        opts.append(rng.choice(["ASC", "DESC"]))
    if store_ok and rng.random() < 0.3 and not any(o.startswith("WITH") for o in opts):
        opts += [rng.choice(["STORE", "STOREDIST"]), rng.choice(DESTS)]
    if search_store and rng.random() < 0.4:
        opts.append("STOREDIST")
    rng.shuffle(opts) if rng.random() < 0.2 and "STORE" not in opts and "STOREDIST" not in opts else None
    return opts


def _georadius(rng):
    name = rng.choice(["GEORADIUS", "GEORADIUS_RO"])
    return [name, rng.choice(KEYS)] + _coord(rng) + _distance(rng) + _options(rng, name == "GEORADIUS")


def _georadiusbymember(rng):
    name = rng.choice(["GEORADIUSBYMEMBER", "GEORADIUSBYMEMBER_RO"])
    return [name, rng.choice(KEYS), _member(rng)] + _distance(rng) + _options(rng, name == "GEORADIUSBYMEMBER")


def _geosearch(rng):
    store = rng.random() < 0.35
    head = ["GEOSEARCHSTORE", rng.choice(DESTS), rng.choice(KEYS)] if store else ["GEOSEARCH", rng.choice(KEYS)]
    frm = ["FROMMEMBER", _member(rng)] if rng.random() < 0.5 else ["FROMLONLAT"] + _coord(rng)
    if rng.random() < 0.5:
        by = ["BYRADIUS"] + _distance(rng)
    else:
        w, unit = _distance(rng)
        h, _ = _distance(rng)
        by = ["BYBOX", w, h, unit]
    parts = [frm, by]
    rng.shuffle(parts)
    return head + parts[0] + parts[1] + _options(rng, False, search_store=store)


def _reads(rng):
    k = rng.choice(KEYS)
    c = rng.randint(0, 2)
    if c == 0:
        return ["GEOPOS", k] + [_member(rng) for _ in range(rng.randint(1, 4))]
    if c == 1:
        return ["GEOHASH", k] + [_member(rng) for _ in range(rng.randint(1, 4))]
    unit = [rng.choice(UNITS)[0]] if rng.random() < 0.6 else []
    return ["GEODIST", k, _member(rng), _member(rng)] + unit


def _gen(rng):
    r = rng.random()
    if r < 0.02:
        return _bulk_geoadd(rng)
    if r < 0.22:
        return _geoadd(rng)
    if r < 0.27:
        return ["ZREM", rng.choice(KEYS), _member(rng)]
    if r < 0.45:
        return _reads(rng)
    if r < 0.62:
        return _georadius(rng)
    if r < 0.75:
        return _georadiusbymember(rng)
    return _geosearch(rng)


def snapshot(conn):
    return {k: conn.call("ZRANGE", k, "0", "-1", "WITHSCORES") for k in KEYS + DESTS}


@pytest.fixture(scope="module")
def pair(damselfly_module, redis_server):
    d = damselfly_module("--proactor_threads=4")
    return d, redis_server



def _compare(dc, rc, cmd, i, history, label):
    a, b = dc.call(*cmd), rc.call(*cmd)
    if a != b:
        recent = "\n".join("  " + " ".join(map(str, x))[:200] for x in history[-20:])
        pytest.fail(f"mismatch at command {i} ({label})\ncommand:   {cmd}\n"
                    f"damselfly: {a!r}\nredis:     {b!r}\nlast commands:\n{recent}")
    return a


@pytest.mark.parametrize("proto,seed", [(2, 101), (3, 102), (2, 103), (3, 104)])
def test_geo_random(pair, proto, seed):
    d, r = pair
    rng = random.Random(seed)
    found = 0
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        fresh(dc, proto)
        fresh(rc, proto)
        history = []
        for i in range(1500):
            cmd = _gen(rng)
            history.append(cmd)
            rep = _compare(dc, rc, cmd, i, history, f"resp{proto}, seed {seed}")
            if cmd[0].startswith("GEOR") or cmd[0].startswith("GEOS"):
                found += (rep[0] == "*" and len(rep[1]) > 0) or (rep[0] == ":" and rep[1] > 0)
            if i % 250 == 249:
                assert snapshot(dc) == snapshot(rc), f"keys differ after {i + 1} commands"
        assert snapshot(dc) == snapshot(rc)
    # The stream must exercise real matches, not only empty answers.
    assert found > 100, found


def test_geo_huge_radius_and_poles(pair):
    """Radii of thousands of km (coarse cells, repeated neighbours) and
    centres at the latitude limits and the antimeridian."""
    d, r = pair
    rng = random.Random(7)
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        fresh(dc, 2)
        fresh(rc, 2)
        history = []
        for _ in range(6):
            cmd = ["GEOADD", KEYS[0]]
            for j in range(100):
                cmd += [repr(rng.uniform(-180, 180)), repr(rng.uniform(-LAT_MAX, LAT_MAX)), f"p{rng.randint(0, 400)}"]
            _compare(dc, rc, cmd, 0, history, "fill")
        for i in range(200):
            centre = rng.choice([["180", "85.05112878"], ["-180", "-85.05112878"], ["0", "0"], ["179.99", "0"],
                                 _coord(rng), _coord(rng)])
            radius = repr(rng.choice([3000, 5000, 8000, 12000, 20000]) * rng.random())
            opts = rng.choice([[], ["WITHDIST", "ASC"], ["COUNT", "5"], ["COUNT", "3", "ANY", "WITHCOORD"], ["DESC"]])
            cmd = ["GEORADIUS_RO", KEYS[0]] + centre + [radius, "km"] + opts
            history.append(cmd)
            _compare(dc, rc, cmd, i, history, "huge radius")
            box = ["GEOSEARCH", KEYS[0], "FROMLONLAT"] + centre + ["BYBOX", radius, repr(rng.random() * 9000), "km"]
            history.append(box)
            _compare(dc, rc, box + opts, i, history, "huge box")


BAD = [
    ["GEOADD", "k", "200", "100", "a"],
    ["GEOADD", "k", "1", "86", "a"],
    ["GEOADD", "k", "nan", "1", "a"],
    ["GEOADD", "k", "1", "2", "a", "3"],
    ["GEOADD", "k", "xx", "nx", "1", "2", "a"],
    ["GEOADD", "k", "ch", "ch", "ch"],
    ["GEOADD", "k", "gt", "1", "2", "a"],
    ["GEOADD", "k", "abc", "2", "a"],
    ["GEOADD", "k"],
    ["GEODIST", "pts", "a", "b", "yd"],
    ["GEODIST", "pts", "a", "b", "km", "x"],
    ["GEODIST", "nokey", "a", "b"],
    ["GEODIST", "str", "a", "b"],
    ["GEOPOS", "str", "a"],
    ["GEOHASH", "nokey", "a", "b"],
    ["GEORADIUS", "pts", "a", "2", "1", "m"],
    ["GEORADIUS", "pts", "1", "2", "x", "m"],
    ["GEORADIUS", "pts", "1", "2", "-1", "m"],
    ["GEORADIUS", "pts", "1", "2", "1", "parsec"],
    ["GEORADIUS", "pts", "1", "2", "1", "m", "store"],
    ["GEORADIUS", "pts", "1", "2", "1", "m", "withdist", "store", "d"],
    ["GEORADIUS", "pts", "1", "2", "1", "m", "count", "0"],
    ["GEORADIUS", "pts", "1", "2", "1", "m", "count", "x"],
    ["GEORADIUS", "pts", "1", "2", "1", "m", "any"],
    ["GEORADIUS", "pts", "1", "2", "1", "m", "frommember", "a"],
    ["GEORADIUS_RO", "pts", "1", "2", "1", "m", "store", "d"],
    ["GEORADIUS", "str", "1", "2", "1", "m"],
    ["GEORADIUS", "nokey", "1", "2", "x", "m"],
    ["GEORADIUS", "nokey", "1", "2", "1", "m", "store", "d"],
    ["GEORADIUSBYMEMBER", "pts", "zz", "1", "m"],
    ["GEORADIUSBYMEMBER", "pts", "zz", "x", "m"],
    ["GEORADIUSBYMEMBER", "pts", "a", "x", "m"],
    ["GEORADIUSBYMEMBER", "nokey", "a", "x", "m"],
    ["GEORADIUSBYMEMBER", "nokey", "a", "x", "m", "bogus"],
    ["GEORADIUSBYMEMBER", "pts", "zz", "x", "m", "bogus"],
    ["GEORADIUSBYMEMBER_RO", "pts", "a", "1", "m", "storedist", "d"],
    ["GEOSEARCH", "pts", "frommember", "zz", "byradius", "1", "m"],
    ["GEOSEARCH", "nokey", "frommember", "zz", "byradius", "1", "m"],
    ["GEOSEARCH", "pts", "frommember", "zz", "byradius", "x", "m"],
    ["GEOSEARCH", "pts", "byradius", "x", "m", "frommember", "zz"],
    ["GEOSEARCH", "pts", "fromlonlat", "1", "2", "frommember", "a", "byradius", "1", "m"],
    ["GEOSEARCH", "pts", "frommember", "a", "fromlonlat", "1", "2", "byradius", "1", "m"],
    ["GEOSEARCH", "pts", "frommember", "a", "bybox", "1", "1", "m", "byradius", "1", "m"],
    ["GEOSEARCH", "pts", "frommember", "a", "byradius", "1", "m", "bybox", "1", "1", "m"],
    ["geoSearch", "pts", "bybox", "1", "1", "m", "count", "1"],
    ["GEOSEARCH", "pts", "frommember", "a", "count", "1"],
    ["GEOSEARCH", "pts", "fromlonlat", "1", "2", "bybox", "x", "1", "m"],
    ["GEOSEARCH", "pts", "fromlonlat", "1", "2", "bybox", "1", "x", "m"],
    ["GEOSEARCH", "pts", "fromlonlat", "1", "2", "bybox", "1", "-1", "m"],
    ["GEOSEARCH", "pts", "fromlonlat", "1", "2", "bybox", "1", "1", "yd"],
    ["GEOSEARCH", "pts", "fromlonlat", "1", "2", "bybox", "1", "1"],
    ["GEOSEARCH", "pts", "fromlonlat", "1", "200", "byradius", "1", "m"],
    ["GEOSEARCH", "pts", "fromlonlat", "1", "2", "byradius", "1", "m", "store", "d"],
    ["GEOSEARCH", "pts", "fromlonlat", "1", "2", "byradius", "1", "m", "storedist"],
    ["GEOSEARCH", "pts", "fromlonlat", "1", "2", "byradius", "1", "m", "count", "2", "any", "desc", "withhash"],
    ["GEOSEARCH", "str", "fromlonlat", "1", "2", "byradius", "1", "m"],
    ["GEOSEARCHSTORE", "d", "pts", "fromlonlat", "1", "2", "byradius", "1", "m", "withdist"],
    ["GEOSEARCHSTORE", "d", "pts", "frommember", "zz", "byradius", "1", "m"],
    ["GEOSEARCHSTORE", "d", "nokey", "frommember", "zz", "byradius", "1", "m"],
    ["GEOSEARCHSTORE", "str", "pts", "fromlonlat", "13", "38", "byradius", "500", "km"],
    ["GEOSEARCHSTORE", "d", "str", "fromlonlat", "13", "38", "byradius", "500", "km"],
]


@pytest.mark.parametrize("proto", [2, 3])
def test_geo_errors_and_edges(pair, proto):
    d, r = pair
    setup = [["GEOADD", "pts", "13.361389", "38.115556", "a", "15.087269", "37.502669", "b"],
             ["SET", "str", "x"], ["ZADD", "pts", "-5", "neg", "9007199254740993", "big", "0.5", "half"]]
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        fresh(dc, proto)
        fresh(rc, proto)
        for cmd in setup:
            _compare(dc, rc, cmd, 0, [], "setup")
        checks = BAD + [["GEOPOS", "pts", "neg", "big", "half", "a"], ["GEOHASH", "pts", "neg", "big", "half"],
                        ["GEODIST", "pts", "neg", "a", "mi"],
                        ["GEORADIUS", "pts", "15", "37", "200", "km", "WITHDIST", "WITHHASH", "WITHCOORD", "ASC"],
                        ["GEORADIUS", "pts", "15", "37", "200", "km", "storedist", "dd"],
                        ["ZRANGE", "dd", "0", "-1", "WITHSCORES"], ["ZRANGE", "d", "0", "-1", "WITHSCORES"],
                        ["GEOSEARCHSTORE", "d", "pts", "frommember", "a", "bybox", "400", "400", "km", "storedist"],
                        ["ZRANGE", "d", "0", "-1", "WITHSCORES"], ["TYPE", "str"]]
        history = []
        for i, cmd in enumerate(checks):
            history.append(cmd)
            _compare(dc, rc, cmd, i, history, f"errors resp{proto}")


def test_georadius_without_store_leaves_watch_clean(pair):
    """GEORADIUS is a write command, but without STORE it writes nothing: a
    transaction WATCHing its key still commits (as on redis-server); with
    STORE the destination is written and a WATCH on it aborts."""
    d, r = pair
    script = [["GEOADD", "w", "13.361389", "38.115556", "a"], ["WATCH", "w"],
              ["GEORADIUS", "w", "13", "38", "100", "km"], ["GEORADIUSBYMEMBER", "w", "a", "1", "km"],
              ["MULTI"], ["PING"], ["EXEC"],
              ["WATCH", DESTS[1]], ["GEORADIUS", "w", "13", "38", "100", "km", "STORE", DESTS[1]],
              ["MULTI"], ["PING"], ["EXEC"], ["ZRANGE", DESTS[1], "0", "-1", "WITHSCORES"]]
    with RespConn(d.port) as dc, RespConn(r.port) as rc:
        fresh(dc, 2)
        fresh(rc, 2)
        replies = [_compare(dc, rc, cmd, i, script[:i + 1], "watch") for i, cmd in enumerate(script)]
    assert replies[6] == ("*", [("+", b"PONG")])
    assert replies[11][0] == "*" and replies[11][1] is None
