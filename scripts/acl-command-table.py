#!/usr/bin/env python3
"""Regenerates Sources/DamselflyACL/ACLCommandTable+Generated.swift from Redis 7.0.15's
command descriptions (src/commands/*.json in the source package), the facts ACL needs:
every command and subcommand Redis has outside Sentinel, its ACL categories (the ones
the file names plus the ones Redis derives from the command flags at start-up), whether
it is allowed before AUTH, and its key specs (where the keys are and whether each is
read, written or both) for `%R~` / `%W~`; for COMMAND INFO / GETKEYS and CLIENT PAUSE, the
command flags Damselfly's own table does not carry (`movablekeys`, `may_replicate`,
`no_mandatory_keys`).

    scripts/acl-command-table.py [path/to/redis/src/commands]

The default path is the source package scripts/redis-suite.sh unpacks under
.cache/redis-src/src/src/commands. Only facts are taken; the output is a Swift table.
"""

import glob
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".cache", "redis-src", "src", "src", "commands")
OUT = os.path.join(ROOT, "Sources", "DamselflyACL", "ACLCommandTable+Generated.swift")

# Redis's ACLCommandCategories order: ACL CAT lists them so, and the describer tries them so.
CATEGORIES = ["keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap",
              "hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow", "blocking",
              "dangerous", "connection", "transaction", "scripting"]
KEY_FLAGS = ["RO", "RW", "OW", "RM", "ACCESS", "UPDATE", "INSERT", "DELETE", "NOT_KEY",
             "INCOMPLETE", "VARIABLE_FLAGS"]


def categories(cmd):
    """The categories as Redis's setImplicitACLCategories leaves them."""
    cats = {c.lower() for c in cmd.get("acl_categories", [])}
    flags = set(cmd.get("command_flags", []))
    if "WRITE" in flags:
        cats.add("write")
    if "READONLY" in flags and "scripting" not in cats:
        cats.add("read")
    if "ADMIN" in flags:
        cats |= {"admin", "dangerous"}
    if "PUBSUB" in flags:
        cats.add("pubsub")
    if "FAST" in flags:
        cats.add("fast")
    if "BLOCKING" in flags:
        cats.add("blocking")
    if "fast" not in cats:
        cats.add("slow")
    return cats


def key_spec(spec):
    flags = ", ".join("." + f.lower().replace("_k", "K").replace("_f", "F") for f in spec["flags"] if f in KEY_FLAGS)
    bs = spec["begin_search"]
    if "index" in bs:
        begin = ".index(%d)" % bs["index"]["pos"]
    elif "keyword" in bs:
        begin = '.keyword("%s", startFrom: %d)' % (bs["keyword"]["keyword"].lower(), bs["keyword"]["startfrom"])
    else:
        begin = ".unknown"
    fk = spec["find_keys"]
    if "range" in fk:
        r = fk["range"]
        find = ".range(lastKey: %d, step: %d, limit: %d)" % (r["lastkey"], r["step"], r["limit"])
    elif "keynum" in fk:
        k = fk["keynum"]
        find = ".keyNumber(index: %d, firstKey: %d, step: %d)" % (k["keynumidx"], k["firstkey"], k["step"])
    else:
        find = ".unknown"
    return "ACLKeySpec(flags: [%s], begin: %s, find: %s)" % (flags, begin, find)


def movable_keys(specs):
    """Redis's `movablekeys` (populateCommandLegacyRangeSpec): keys the legacy
    (first, last, step) triple cannot cover: a spec that is not a fixed index with a
    range, a range of step > 1 or not right after the one before, or an incomplete one."""
    def plain(s):
        return "index" in s["begin_search"] and "range" in s["find_keys"]
    if not specs:
        return False
    if len(specs) == 1 and plain(specs[0]):
        return "INCOMPLETE" in specs[0]["flags"]
    movable = False
    found = False
    last = 0
    previous = 0
    for s in specs:
        if not plain(s):
            movable = True
            continue
        pos = s["begin_search"]["index"]["pos"]
        r = s["find_keys"]["range"]
        if r["step"] != 1 or (previous and previous != pos - 1):
            movable = True
            continue
        if "INCOMPLETE" in s["flags"]:
            movable = True
        found = True
        absolute = r["lastkey"] + pos if r["lastkey"] >= 0 else r["lastkey"]
        last = max(last % (1 << 32), absolute % (1 << 32))  # Redis compares them unsigned
        previous = last
    return movable or not found


def extra_flags(cmd):
    """The derived `movablekeys` and the JSON's MAY_REPLICATE and NO_MANDATORY_KEYS, as
    Swift `ACLCommandFlags`."""
    flags = set(cmd.get("command_flags", []))
    out = []
    if movable_keys(cmd.get("key_specs", [])):
        out.append(".movableKeys")
    if "MAY_REPLICATE" in flags:
        out.append(".mayReplicate")
    if "NO_MANDATORY_KEYS" in flags:
        out.append(".noMandatoryKeys")
    return "[" + ", ".join(out) + "]"


def main():
    commands = {}
    for path in sorted(glob.glob(os.path.join(SRC, "*.json"))):
        with open(path) as f:
            for name, cmd in json.load(f).items():
                if "ONLY_SENTINEL" in cmd.get("command_flags", []):
                    continue
                parent = cmd.get("container")
                full = (parent.lower() + "|" + name.lower()) if parent else name.lower()
                commands[full] = cmd
    names = sorted(n for n in commands if "|" not in n)
    rows = []
    for name in names:
        order = [name] + sorted(n for n in commands if n.startswith(name + "|"))
        for full in order:
            cmd = commands[full]
            cats = categories(cmd)
            mask = "0x%06x" % sum(1 << i for i, c in enumerate(CATEGORIES) if c in cats)
            no_auth = "NO_AUTH" in cmd.get("command_flags", [])
            specs = ", ".join(key_spec(s) for s in cmd.get("key_specs", []))
            names = " ".join("@" + c for c in CATEGORIES if c in cats)
            rows.append('        ACLCommandEntry("%s", arity: %d, categories: %s, noAuth: %s, flags: %s, keySpecs: [%s]),  // %s'
                        % (full, cmd["arity"], mask, "true" if no_auth else "false", extra_flags(cmd), specs, names))
    body = "\n".join(rows)
    text = f"""// Generated by scripts/acl-command-table.py from Redis 7.0.15's src/commands/*.json. Do not edit.

extension ACLCommandTable {{
    /// Every Redis 7.0 command and subcommand (Sentinel's aside), a container before its
    /// subcommands, in name order: {len(rows)} entries. Categories are bits of ``ACLCategory``.
    static let generated: [ACLCommandEntry] = [
{body}
    ]
}}
"""
    with open(OUT, "w") as f:
        f.write(text)
    print("wrote %d entries to %s" % (len(rows), os.path.relpath(OUT, ROOT)))


if __name__ == "__main__":
    main()
