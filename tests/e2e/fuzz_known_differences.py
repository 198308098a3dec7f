"""The one list of known differences between Damselfly and redis-server that the fuzzers
(``test_fuzz_args.py``) accept, each with its reason.

An entry matches a mismatch by command name (lower case), the kind of difference
(``error-class``, ``error-text``, ``reply``, ``state``) and optionally a predicate on
(arguments, damselfly reply, redis reply). ``status`` is honest about why it is here:

* ``intentional``   Damselfly answers differently on purpose (documented in
                    docs/compatibility.md or docs/reliability.md);
* ``not yet fixed`` a real incompatibility found by the fuzzer and not fixed yet.
"""


def _err(reply):
    return reply[1] if reply and reply[0] in "-!" else b""


TTL_SETTERS = {"set", "setex", "psetex", "getex", "expire", "pexpire", "expireat", "pexpireat", "restore",
               "getset", "copy", "rename", "renamenx", "move"}

LEX_RANGE = {"zrangebylex", "zrevrangebylex", "zlexcount", "zremrangebylex", "zrangestore", "zrange"}

KNOWN = [
    {
        "command": "*", "kinds": {"reply", "state"}, "status": "not yet fixed",
        "only": LEX_RANGE,
        "match": lambda args, d, r: args and args[0] == "fz:zset",
        "reason": "lex ranges over a sorted set whose scores differ (Redis documents the result as "
                  "unspecified): Redis walks in score order and stops at the first member outside "
                  "the range; Damselfly matches every member in the range (found with FUZZ_SEED=21: "
                  "ZREMRANGEBYLEX fz:zset - (inf)",
    },
    {
        "command": "*", "kinds": {"redis-stalls"}, "status": "intentional",
        "only": {"srandmember", "hrandfield", "zrandmember"},
        "reason": "a negative count in the billions: redis-server streams the reply for ever (and stops "
                  "serving); Damselfly builds replies as values and refuses counts past its bound with "
                  "'ERR value is out of range' (only Damselfly is sent these)",
    },
    {
        "command": "migrate", "kinds": {"error-class", "error-text", "reply", "state"}, "status": "intentional",
        "match": lambda args, d, r: len(args) >= 2 and _nowhere(args[0], args[1]),
        "reason": "MIGRATE to no server: a host in 0.0.0.0/8 ('01' is 0.0.0.1) or a port that is not a "
                  "number (read as 0). redis-server's non-blocking connect to such an address does not "
                  "fail, and it answered +OK and deleted the key (seen with FUZZ_SEED=1: MIGRATE 01 STREAM "
                  "fz:zset -2147483648 2147483648); Damselfly answers IOERR, as for any target it cannot "
                  "reach, and keeps the key",
    },
    {
        "command": "*", "kinds": {"state"}, "status": "intentional",
        "match": lambda args, d, r: True,
        "only": TTL_SETTERS,
        "reason": "fuzzer timing: a TTL of a few milliseconds can run out between the call and the "
                  "state read on one server and not the other",
    },
]


def _nowhere(host, port):
    """Whether MIGRATE's target is no server at all: an IPv4 address in 0.0.0.0/8 as inet_aton
    reads it (so "01" and "7" count), or a port that is not a number."""
    import socket
    if not str(port).isdigit() or int(port) == 0:
        return True
    try:
        return socket.inet_aton(str(host))[0] == 0
    except OSError:
        return False


def known(cmd, kind, dfly, redis):
    """The entry that explains this mismatch, or None."""
    name = cmd[0].lower()
    for entry in KNOWN:
        if entry["command"] not in (name, "*"):
            continue
        if "only" in entry and name not in entry["only"]:
            continue
        if kind not in entry["kinds"]:
            continue
        match = entry.get("match")
        if match is not None and not match(cmd[1:], dfly, redis):
            continue
        return entry
    return None
