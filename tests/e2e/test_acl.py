"""ACL (issue 18 §1), differential against redis-server 7.0.15: ACL CAT, SETUSER's error
texts, random rule sets (seeded) with GETUSER / LIST / DRYRUN and commands run as those
users compared reply for reply, ACL LOG entries, the aclfile round trip, and redis-py's
ACL helpers used as an application would.

ACL LIST and GETUSER describe command rules as `+@all`/`-@all`, then categories, then
single commands; Redis emits the single commands in its hash table's (random) order, so
those are compared as a set, the rest exactly."""

import os
import random

import pytest
import redis

from conftest import Factory

POOL = [
    "on", "off", "nopass", "resetpass", ">pw1", ">pw2", "<pw1", "allkeys", "resetkeys", "~k*", "~user:*",
    "%R~r*", "%W~w*", "%RW~rw*", "allchannels", "resetchannels", "&news", "&chat.*", "+@all", "-@all",
    "+@read", "+@write", "-@write", "+@string", "-@string", "+@hash", "+@list", "-@dangerous", "+@keyspace",
    "-@keyspace", "+@pubsub", "+@scripting", "+@connection", "+@transaction", "-@fast", "+@slow",
    "+get", "-get", "+set", "-set", "+mget", "+del", "+hset", "-hset", "+publish", "+eval", "+client|id",
    "-client", "+client", "+config|get", "-config|set", "+select|0", "+acl|whoami", "allcommands",
    "nocommands", "(+get ~sel*)", "(+@write %W~w2*)", "clearselectors", "reset", "sanitize-payload",
    "skip-sanitize-payload", "+object|encoding", "+multi", "+exec",
]

COMMANDS = [
    ["GET", "k1"], ["GET", "r1"], ["GET", "w1"], ["GET", "rw1"], ["GET", "sel1"], ["GET", "user:1"], ["GET", "zz"],
    ["SET", "k1", "v"], ["SET", "r1", "v"], ["SET", "w1", "v"], ["SET", "rw1", "v"], ["SET", "w2x", "v"],
    ["SET", "w1", "v", "GET"], ["MGET", "k1", "r1"], ["MSET", "k1", "1", "w1", "2"], ["DEL", "k1", "w1"],
    ["HSET", "k:h", "f", "v"], ["HSET", "w1h", "f", "v"], ["LPUSH", "user:l", "a"], ["EXISTS", "k1", "zz"],
    ["TYPE", "r1"], ["PUBLISH", "news", "hi"], ["PUBLISH", "chat.1", "hi"], ["PUBLISH", "other", "hi"],
    ["EVAL", "return redis.call('get', KEYS[1])", "1", "k1"], ["EVAL", "return redis.call('set', KEYS[1], 'x')", "1", "r1"],
    ["CLIENT", "ID"], ["CONFIG", "GET", "maxmemory-policy"], ["CONFIG", "SET", "maxmemory-policy", "noeviction"],
    ["SELECT", "0"], ["SELECT", "1"], ["ACL", "WHOAMI"], ["OBJECT", "ENCODING", "k1"], ["PING"], ["ECHO", "x"],
    ["LRANGE", "user:l", "0", "-1"], ["INCR", "rw1"], ["COPY", "r1", "w1"], ["SORT", "user:l", "ALPHA", "STORE", "w3"],
]


def describe_rules(text):
    """A rule line with its single-command part (Redis's hash order) made order-free."""
    out = []
    for part in text.split(" ("):
        words = part.rstrip(")").split(" ")
        fixed = [w for w in words if not (w[:1] in "+-" and not w.startswith(("+@", "-@")))]
        single = sorted(w for w in words if w[:1] in "+-" and not w.startswith(("+@", "-@")))
        out.append((fixed, single))
    return out


def as_dict(reply):
    """A map reply as a dict, whichever protocol carried it."""
    return dict(reply) if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2]))


def normalize_getuser(reply):
    if reply is None:
        return None
    d = as_dict(reply)
    d["commands"] = describe_rules(d["commands"])
    d["flags"] = sorted(d["flags"])
    d["selectors"] = [{k: (describe_rules(v) if k == "commands" else v) for k, v in as_dict(s).items()}
                      for s in d["selectors"]]
    return d


def plain(reply):
    """Errors inside an EXEC reply as ("error", text), comparable across servers."""
    if isinstance(reply, Exception):
        return ("error", str(reply))
    if isinstance(reply, list):
        return [plain(x) for x in reply]
    return reply


def call(c, *args):
    try:
        return plain(c.execute_command(*args))
    except (redis.ResponseError, redis.AuthenticationError) as e:
        return ("error", type(e).__name__, str(e))


@pytest.fixture
def pair(damselfly, redis_server):
    d = damselfly()
    dc = d.client(decode_responses=True)
    rc = redis_server.client(decode_responses=True)
    for c in (dc, rc):
        c.flushall()
        for name in c.execute_command("ACL", "USERS"):
            if name != "default":
                c.execute_command("ACL", "DELUSER", name)
        c.execute_command("ACL", "LOG", "RESET")
    return d, redis_server, dc, rc


def test_acl_cat_matches_redis(pair):
    _, _, dc, rc = pair
    cats = rc.execute_command("ACL", "CAT")
    assert dc.execute_command("ACL", "CAT") == cats
    for cat in cats:
        assert sorted(dc.execute_command("ACL", "CAT", cat)) == sorted(rc.execute_command("ACL", "CAT", cat)), cat
    assert call(dc, "ACL", "CAT", "nosuch") == call(rc, "ACL", "CAT", "nosuch")


def test_setuser_errors_match_redis(pair):
    _, _, dc, rc = pair
    bad = ["%X~a", "+select|0|1", "+config|get|x", "+config|", "#abc", "<nope", "bogus", "-select|0", "+@nosuch",
           "+nosuch", "(~a", "%R", "!" + "0" * 64, "(+get bogus)", "&a b"]
    for rule in bad:
        assert call(dc, "ACL", "SETUSER", "bad", rule) == call(rc, "ACL", "SETUSER", "bad", rule), rule
    for args in (["ACL", "SETUSER", "u", "allkeys", "~x"], ["ACL", "SETUSER", "u", "allchannels", "&x"],
                 ["ACL", "SETUSER", "a b"], ["ACL", "DELUSER", "default"], ["ACL", "GETUSER", "nobody"],
                 ["ACL", "GENPASS", "0"], ["ACL", "GENPASS", "x"], ["ACL", "LOG", "x"], ["ACL", "NOSUCH"],
                 ["ACL", "WHOAMI", "x"], ["ACL", "DRYRUN", "nobody", "get", "x"], ["ACL", "DRYRUN", "default", "nosuch"],
                 ["ACL", "DRYRUN", "default", "get"], ["ACL", "LOAD"], ["ACL", "SAVE"], ["ACL", "USERS"],
                 ["ACL", "CAT", "a", "b"], ["ACL", "GETUSER", "a", "b"], ["ACL", "LIST", "x"], ["ACL", "LOG", "1", "2"],
                 ["ACL", "HELP", "x"], ["ACL", "GENPASS", "1", "2"], ["ACL", "HELP"]):
        assert call(dc, *args) == call(rc, *args), args
    assert len(dc.execute_command("ACL", "GENPASS")) == 64
    assert len(dc.execute_command("ACL", "GENPASS", "5")) == 2


def test_random_rule_sets_match_redis(pair):
    d, r, dc, rc = pair
    rng = random.Random(1807)
    for n in range(30):
        name = f"user{n}"
        rules = [rng.choice(POOL) for _ in range(rng.randint(1, 8))] + ["on", ">pw1"]
        created = call(dc, "ACL", "SETUSER", name, *rules)
        assert created == call(rc, "ACL", "SETUSER", name, *rules), rules
        if created != "OK":
            continue
        assert normalize_getuser(dc.execute_command("ACL", "GETUSER", name)) == \
            normalize_getuser(rc.execute_command("ACL", "GETUSER", name)), rules
        for args in rng.sample(COMMANDS, 12):
            assert call(dc, "ACL", "DRYRUN", name, *args) == call(rc, "ACL", "DRYRUN", name, *args), (rules, args)
        du = d.client(decode_responses=True, username=name, password="pw1")
        ru = r.client(decode_responses=True, username=name, password="pw1")
        for args in rng.sample(COMMANDS, 10):
            dr, rr = call(du, *args), call(ru, *args)
            if args[0] == "CLIENT" and not isinstance(rr, tuple):
                assert isinstance(dr, int)
                continue
            if args[0] == "EVAL" and isinstance(rr, tuple):
                # The script's own sha and line follow Redis's text; compare up to them.
                assert isinstance(dr, tuple) and dr[2].split(" script:")[0] == rr[2].split(" script:")[0], (rules, args)
                continue
            assert dr == rr, (rules, args)
        du.close()
        ru.close()
    dl = [describe_rules(x) for x in dc.execute_command("ACL", "LIST")]
    rl = [describe_rules(x) for x in rc.execute_command("ACL", "LIST")]
    assert dl == rl


def test_transaction_and_auth_errors_match(pair):
    d, r, dc, rc = pair
    for c in (dc, rc):
        c.execute_command("ACL", "SETUSER", "tx", "on", ">p", "+multi", "+exec", "+get", "~a*")
    du = d.client(decode_responses=True, username="tx", password="p")
    ru = r.client(decode_responses=True, username="tx", password="p")
    for c in (du, ru):
        c.execute_command("MULTI")
    assert call(du, "GET", "b") == call(ru, "GET", "b")
    assert call(du, "EXEC") == call(ru, "EXEC")
    # Rules that change between queueing and EXEC.
    for c in (du, ru):
        c.execute_command("MULTI")
        c.execute_command("GET", "a1")
    for c in (dc, rc):
        c.execute_command("ACL", "SETUSER", "tx", "-get")
    assert call(du, "EXEC") == call(ru, "EXEC")
    results = []
    for srv in (d, r):
        other = srv.client(decode_responses=True)
        got = [call(other, "AUTH", "tx", "wrong"), call(other, "AUTH", "nobody", "x")]
        got.append(as_dict(call(other, "HELLO", "3", "AUTH", "tx", "p"))["proto"])
        got.append(call(other, "ACL", "WHOAMI"))
        got.append(call(other, "RESET"))
        got.append(call(other, "ACL", "WHOAMI"))
        results.append(got)
        other.close()
    assert results[0] == results[1]
    assert results[0][0] == ("error", "AuthenticationError", "invalid username-password pair or user is disabled.")


def test_acl_log_entries_match(pair):
    d, r, dc, rc = pair
    for c in (dc, rc):
        c.execute_command("ACL", "SETUSER", "lg", "on", ">p", "+get", "+publish", "~a*", "&ok")
    for srv in (d, r):
        u = srv.client(decode_responses=True, username="lg", password="p")
        for args in (["SET", "a", "1"], ["GET", "b"], ["GET", "b"], ["PUBLISH", "no", "x"]):
            call(u, *args)
        call(srv.client(decode_responses=True), "AUTH", "lg", "bad")
        u.close()
    fields = ["count", "reason", "context", "object", "username"]

    def entries(c):
        out = []
        for e in c.execute_command("ACL", "LOG"):
            m = as_dict(e)
            assert list(m) == fields + ["age-seconds", "client-info"]
            assert float(m["age-seconds"]) >= 0 and "user=" in m["client-info"]
            out.append([m[f] for f in fields])
        return out

    assert entries(dc) == entries(rc)
    assert len(dc.execute_command("ACL", "LOG", "1")) == 1
    assert dc.execute_command("ACL", "LOG", "RESET") == "OK"
    assert dc.execute_command("ACL", "LOG") == []


def test_aclfile_round_trip(damselfly, tmp_path):
    path = tmp_path / "users.acl"
    path.write_text("user default on nopass ~* &* +@all\n"
                    "user app on #" + "a" * 64 + " ~app:* resetchannels &jobs -@all +@read +set (~other:* +get)\n")
    d = damselfly(f"--aclfile={path}")
    c = d.client(decode_responses=True)
    listed = c.execute_command("ACL", "LIST")
    assert [describe_rules(x) for x in listed] == [
        describe_rules("user app on #" + "a" * 64 + " ~app:* resetchannels &jobs -@all +@read +set (~other:* resetchannels -@all +get)"),
        describe_rules("user default on nopass ~* &* +@all")]
    assert c.execute_command("ACL", "SETUSER", "extra", "on", ">x", "+ping") == "OK"
    assert c.execute_command("ACL", "SAVE") == "OK"
    saved = c.execute_command("ACL", "LIST")
    # The saved file loads back to the same users, here and in redis-server.
    d2 = damselfly(f"--aclfile={path}")
    assert d2.client(decode_responses=True).execute_command("ACL", "LIST") == saved
    f = Factory(str(tmp_path / "redis"))
    os.makedirs(f.tmpdir, exist_ok=True)
    try:
        r = f.start_redis("--aclfile", str(path)).client(decode_responses=True)
        assert [describe_rules(x) for x in r.execute_command("ACL", "LIST")] == [describe_rules(x) for x in saved]
        # A bad line: Redis's error, and nothing changes.
        path.write_text(path.read_text() + "bogus line\nuser x on +nosuch\n")
        err, rerr = call(c, "ACL", "LOAD"), call(r, "ACL", "LOAD")
        assert err == rerr
        assert "should start with user keyword" in err[2]
        assert c.execute_command("ACL", "LIST") == saved
    finally:
        f.close()


def test_redis_py_helpers_as_an_app(damselfly):
    d = damselfly()
    admin = d.client(decode_responses=True)
    assert admin.acl_setuser("app", enabled=True, passwords=["+secret"], commands=["+get", "+set", "+acl|whoami"],
                             keys=["app:*"], channels=["jobs"])
    info = admin.acl_getuser("app")
    assert info["enabled"] and "+get" in info["commands"] and info["keys"] == ["~app:*"] and info["channels"] == ["&jobs"]
    app = d.client(decode_responses=True, username="app", password="secret")
    assert app.acl_whoami() == "app"
    assert app.set("app:1", "v") and app.get("app:1") == "v"
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.get("other")
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.delete("app:1")
    log = admin.acl_log()
    assert log[0]["reason"] == "command" and log[0]["object"] == "del" and log[0]["username"] == "app"
    assert log[1]["reason"] == "key" and log[1]["object"] == "other"
    assert "app" in admin.acl_users()
    assert admin.acl_deluser("app") == 1
    with pytest.raises(redis.exceptions.ConnectionError):
        app.get("app:1")


def test_default_user_requirepass_and_client_commands(damselfly):
    d = damselfly("--requirepass=hunter2")
    c = d.client(decode_responses=True, password="hunter2")
    assert c.execute_command("ACL", "WHOAMI") == "default"
    u = as_dict(c.execute_command("ACL", "GETUSER", "default"))
    assert u["passwords"] == ["f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7"]
    c.execute_command("ACL", "SETUSER", "worker", "on", ">w", "+@all", "~*")
    w = d.client(decode_responses=True, username="worker", password="w")
    w.ping()
    assert "user=worker" in c.execute_command("CLIENT", "LIST")
    assert call(c, "CLIENT", "KILL", "USER", "nobody") == ("error", "ResponseError", "No such user 'nobody'")
    assert c.execute_command("CLIENT", "KILL", "USER", "worker") == 1
    assert "user=worker" not in c.execute_command("CLIENT", "LIST")
    c.config_set("requirepass", "")
    assert d.client(decode_responses=True).ping()
