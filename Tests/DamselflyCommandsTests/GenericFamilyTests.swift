import Testing
@testable import DamselflyCommands

/// ``GenericFamily`` run through the real shard set (4 loops, 4 shards):
/// multi-key commands pick keys on different shards with ``CommandHarness/key(onShard:prefix:excluding:)``.
@Suite struct GenericFamilyTests {
    let h = CommandHarness()

    /// Sets `key` to `value` (checks the reply).
    func set(_ key: String, _ value: String = "v", sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(h.run(["set", key, value]) == .ok, sourceLocation: sourceLocation)
    }

    // MARK: - DEL, UNLINK, EXISTS, TOUCH, TYPE

    @Test func delExistsTouchCountAcrossShards() {
        let keys = h.keysOnEveryShard()
        for key in keys { set(key) }
        #expect(h.run(["exists"] + keys + ["missing"]) == 4)
        #expect(h.run(["exists", keys[0], keys[0], keys[3]], on: 2) == 3)  // duplicates count, as Redis
        #expect(h.run(["exists", "missing"]) == 0)
        #expect(h.run(["touch"] + keys + ["missing"], on: 1) == 4)
        #expect(h.run(["del", keys[0], keys[1], "missing"], on: 3) == 2)
        #expect(h.run(["del", keys[0]]) == 0)
        #expect(h.run(["exists"] + keys) == 2)
        #expect(h.run(["del", keys[2], keys[2]]) == 1)  // deleted once
        #expect(h.run(["unlink", keys[3], keys[1]]) == 1)
        #expect(h.run(["exists"] + keys) == 0)
        #expect(h.run(["dbsize"]) == 0)
        #expect(h.run(["del"]) == arityError("del"))
        #expect(h.run(["exists"]) == arityError("exists"))
    }

    @Test func type() {
        #expect(h.run(["type", "k"]) == .simple("none"))
        set("k")
        #expect(h.run(["type", "k"]) == .simple("string"))
        set("n", "12")
        #expect(h.run(["type", "n"], on: 3) == .simple("string"))
    }

    // MARK: - TTLs

    @Test func expireFamilySetsTTLs() {
        #expect(h.run(["expire", "missing", "10"]) == 0)
        set("k")
        #expect(h.run(["ttl", "k"]) == -1)
        #expect(h.run(["pttl", "k"]) == -1)
        #expect(h.run(["expiretime", "k"]) == -1)
        #expect(h.run(["pexpiretime", "k"]) == -1)
        #expect(h.run(["expire", "k", "100"]) == 1)
        #expect(h.run(["ttl", "k"]) == 100)
        #expect(h.run(["pexpire", "k", "200000"]) == 1)
        let pttl = h.run(["pttl", "k"]).integer ?? -100
        #expect(pttl > 199_000 && pttl <= 200_000)
        let at = nowMillis() / 1000 + 300
        #expect(h.run(["expireat", "k", "\(at)"]) == 1)
        #expect(h.run(["expiretime", "k"]) == .int(Int(at)))
        #expect(h.run(["pexpiretime", "k"]) == .int(Int(at) * 1000))
        let pat = nowMillis() + 400_000
        #expect(h.run(["pexpireat", "k", "\(pat)"]) == 1)
        #expect(h.run(["pexpiretime", "k"]) == .int(Int(pat)))
        #expect(h.run(["ttl", "missing"]) == -2)
        #expect(h.run(["pttl", "missing"]) == -2)
        #expect(h.run(["expiretime", "missing"]) == -2)
        #expect(h.run(["pexpiretime", "missing"]) == -2)
    }

    @Test func expireInThePastDeletes() {
        set("a"); set("b"); set("c"); set("d")
        #expect(h.run(["expire", "a", "0"]) == 1)
        #expect(h.run(["pexpire", "b", "-10"]) == 1)
        #expect(h.run(["expireat", "c", "1"]) == 1)
        #expect(h.run(["pexpireat", "d", "1"]) == 1)
        #expect(h.run(["exists", "a", "b", "c", "d"]) == 0)
    }

    @Test func expiredKeysVanish() {
        set("k")
        #expect(h.run(["pexpire", "k", "30"]) == 1)
        sleepMillis(80)
        #expect(h.run(["ttl", "k"]) == -2)
        #expect(h.run(["exists", "k"]) == 0)
        #expect(h.run(["dbsize"]) == 0)
    }

    @Test func expireConditions() {
        set("k")
        // NX: only without a TTL.
        #expect(h.run(["expire", "k", "100", "NX"]) == 1)
        #expect(h.run(["expire", "k", "200", "nx"]) == 0)
        #expect(h.run(["ttl", "k"]) == 100)
        // XX: only with a TTL.
        #expect(h.run(["expire", "k", "150", "XX"]) == 1)
        #expect(h.run(["ttl", "k"]) == 150)
        #expect(h.run(["persist", "k"]) == 1)
        #expect(h.run(["expire", "k", "150", "XX"]) == 0)
        #expect(h.run(["ttl", "k"]) == -1)
        // GT: a key without a TTL counts as infinite, so GT never sets one.
        #expect(h.run(["expire", "k", "100", "GT"]) == 0)
        #expect(h.run(["ttl", "k"]) == -1)
        // LT: a key without a TTL gets one.
        #expect(h.run(["expire", "k", "100", "LT"]) == 1)
        #expect(h.run(["ttl", "k"]) == 100)
        #expect(h.run(["expire", "k", "50", "GT"]) == 0)
        // Equal is neither greater nor less.
        let at = "\(nowMillis() + 100_000)"
        #expect(h.run(["pexpireat", "k", at]) == 1)
        #expect(h.run(["pexpireat", "k", at, "GT"]) == 0)
        #expect(h.run(["pexpireat", "k", at, "LT"]) == 0)
        #expect(h.run(["expire", "k", "200", "GT"]) == 1)
        #expect(h.run(["ttl", "k"]) == 200)
        #expect(h.run(["expire", "k", "300", "LT"]) == 0)
        #expect(h.run(["expire", "k", "50", "lt"]) == 1)
        #expect(h.run(["ttl", "k"]) == 50)
        // XX with GT together.
        #expect(h.run(["expire", "k", "60", "XX", "GT"]) == 1)
        #expect(h.run(["ttl", "k"]) == 60)
    }

    @Test func expireErrors() {
        set("k")
        #expect(h.run(["expire", "k", "10", "NX", "XX"]) == .error("ERR NX and XX, GT or LT options at the same time are not compatible"))
        #expect(h.run(["expire", "k", "10", "NX", "GT"]) == .error("ERR NX and XX, GT or LT options at the same time are not compatible"))
        #expect(h.run(["expire", "k", "10", "GT", "LT"]) == .error("ERR GT and LT options at the same time are not compatible"))
        #expect(h.run(["expire", "k", "10", "foo"]) == .error("ERR Unsupported option foo"))
        #expect(h.run(["expire", "k", "abc"]) == .error("ERR value is not an integer or out of range"))
        #expect(h.run(["expire", "k", "9223372036854775807"]) == .error("ERR invalid expire time in 'expire' command"))
        #expect(h.run(["pexpire", "k", "9223372036854775807"]) == .error("ERR invalid expire time in 'pexpire' command"))
        #expect(h.run(["expireat", "k", "9223372036854775807"]) == .error("ERR invalid expire time in 'expireat' command"))
        #expect(h.run(["expire", "k"]) == arityError("expire"))
        #expect(h.run(["ttl", "k"]) == -1)
    }

    @Test func persist() {
        #expect(h.run(["persist", "missing"]) == 0)
        set("k")
        #expect(h.run(["persist", "k"]) == 0)
        #expect(h.run(["expire", "k", "100"]) == 1)
        #expect(h.run(["persist", "k"]) == 1)
        #expect(h.run(["ttl", "k"]) == -1)
        #expect(h.run(["get", "k"]) == "v")
    }

    // MARK: - RENAME, RENAMENX

    @Test func renameOnOneShard() {
        let a = h.key(onShard: 2, prefix: "a"), b = h.key(onShard: 2, prefix: "b")
        #expect(h.run(["rename", a, b]) == .error("ERR no such key"))
        set(a, "1")
        #expect(h.run(["expire", a, "100"]) == 1)
        #expect(h.run(["rename", a, b]) == .ok)
        #expect(h.run(["exists", a]) == 0)
        #expect(h.run(["get", b]) == "1")
        #expect(h.run(["ttl", b]) == 100)
    }

    @Test func renameAcrossShards() {
        for (from, to) in [(0, 1), (1, 0), (2, 3), (3, 1)] {
            let a = h.key(onShard: from, prefix: "src\(from)\(to)-"), b = h.key(onShard: to, prefix: "dst\(from)\(to)-")
            #expect(h.shard(of: a) != h.shard(of: b))
            set(a, "value")
            #expect(h.run(["pexpire", a, "100000"]) == 1)
            set(b, "old")  // overwritten, its value and TTL replaced
            // From every loop, including ones that own neither key.
            #expect(h.run(["rename", a, b], on: (from + 2) % 4) == .ok)
            #expect(h.run(["exists", a]) == 0)
            #expect(h.run(["get", b]) == "value")
            let pttl = h.run(["pttl", b]).integer ?? -100
            #expect(pttl > 99_000 && pttl <= 100_000)
            // And back, with no TTL on the source now.
            #expect(h.run(["persist", b]) == 1)
            #expect(h.run(["rename", b, a], on: from) == .ok)
            #expect(h.run(["ttl", a]) == -1)
            #expect(h.run(["exists", b]) == 0)
        }
        #expect(h.run(["dbsize"]) == 4)
    }

    @Test func renameToItself() {
        #expect(h.run(["rename", "k", "k"]) == .error("ERR no such key"))
        set("k")
        #expect(h.run(["rename", "k", "k"]) == .ok)
        #expect(h.run(["renamenx", "k", "k"]) == 0)
        #expect(h.run(["get", "k"]) == "v")
    }

    @Test func renamenx() {
        let a = h.key(onShard: 0, prefix: "a"), b = h.key(onShard: 3, prefix: "b"), c = h.key(onShard: 0, prefix: "c")
        #expect(h.run(["renamenx", a, b]) == .error("ERR no such key"))
        set(a, "1")
        set(b, "2")
        #expect(h.run(["renamenx", a, b], on: 1) == 0)
        #expect(h.run(["mget", a, b]) == .strings(["1", "2"]))
        #expect(h.run(["renamenx", b, c], on: 2) == 1)
        #expect(h.run(["mget", a, b, c]) == .strings(["1", nil, "2"]))
        #expect(h.run(["renamenx", a, b]) == 1)
        #expect(h.run(["mget", a, b, c]) == .strings([nil, "1", "2"]))
    }

    // MARK: - COPY, MOVE

    @Test func copyAcrossShards() {
        let a = h.key(onShard: 1, prefix: "a"), b = h.key(onShard: 2, prefix: "b"), c = h.key(onShard: 1, prefix: "c")
        #expect(h.run(["copy", a, b]) == 0)
        set(a, "hello")
        #expect(h.run(["expire", a, "100"]) == 1)
        #expect(h.run(["copy", a, b], on: 3) == 1)
        #expect(h.run(["copy", a, c]) == 1)  // same shard
        #expect(h.run(["mget", a, b, c]) == .strings(["hello", "hello", "hello"]))
        #expect(h.run(["ttl", b]) == 100)
        // The copies are independent values.
        #expect(h.run(["append", a, " world"]) == 11)
        #expect(h.run(["mget", a, b, c]) == .strings(["hello world", "hello", "hello"]))
        // An existing destination needs REPLACE.
        #expect(h.run(["copy", a, b]) == 0)
        #expect(h.run(["get", b]) == "hello")
        #expect(h.run(["copy", a, b, "REPLACE"]) == 1)
        #expect(h.run(["get", b]) == "hello world")
    }

    @Test func copyBetweenDatabases() {
        set("k", "v")
        #expect(h.run(["copy", "k", "k", "DB", "3"]) == 1)
        let db3 = h.makeClient(on: 2, database: 3)
        #expect(h.run(["get", "k"], client: db3) == "v")
        #expect(h.run(["copy", "k", "k", "DB", "3"]) == 0)
        #expect(h.run(["copy", "k", "other", "db", "3", "replace"]) == 1)
        #expect(h.run(["dbsize"], client: db3) == 2)
        #expect(h.run(["dbsize"]) == 1)
    }

    @Test func copyErrors() {
        set("k")
        #expect(h.run(["copy", "k", "k"]) == .error("ERR source and destination objects are the same"))
        #expect(h.run(["copy", "k", "k", "DB", "0"]) == .error("ERR source and destination objects are the same"))
        #expect(h.run(["copy", "k", "x", "DB", "16"]) == .error("ERR DB index is out of range"))
        #expect(h.run(["copy", "k", "x", "DB", "-1"]) == .error("ERR DB index is out of range"))
        #expect(h.run(["copy", "k", "x", "DB", "abc"]) == .error("ERR value is not an integer or out of range"))
        #expect(h.run(["copy", "k", "x", "DB"]) == .error("ERR syntax error"))
        #expect(h.run(["copy", "k", "x", "foo"]) == .error("ERR syntax error"))
        #expect(h.run(["exists", "x"]) == 0)
    }

    @Test func move() {
        set("k", "v")
        #expect(h.run(["expire", "k", "100"]) == 1)
        #expect(h.run(["move", "k", "1"], on: 3) == 1)
        #expect(h.run(["exists", "k"]) == 0)
        let db1 = h.makeClient(on: 1, database: 1)
        #expect(h.run(["get", "k"], client: db1) == "v")
        #expect(h.run(["ttl", "k"], client: db1) == 100)
        // Back is refused when the key exists there.
        set("k", "new")
        #expect(h.run(["move", "k", "0"], client: db1) == 0)
        #expect(h.run(["get", "k"]) == "new")
        #expect(h.run(["move", "missing", "1"]) == 0)
        #expect(h.run(["move", "k", "0"]) == .error("ERR source and destination objects are the same"))
        #expect(h.run(["move", "k", "16"]) == .error("ERR DB index is out of range"))
        #expect(h.run(["move", "k", "abc"]) == .error("ERR value is not an integer or out of range"))
    }

    // MARK: - KEYS, SCAN, DBSIZE, FLUSH

    @Test func keysAcrossShards() {
        var all: Set<String> = []
        for i in 0..<40 {
            set("user:\(i)")
            all.insert("user:\(i)")
        }
        for i in 0..<10 {
            set("item:\(i)")
            all.insert("item:\(i)")
        }
        func keys(_ pattern: String, on loop: Int = 0) -> [String] {
            (h.run(["keys", pattern], on: loop).items ?? []).compactMap(\.string).sorted()
        }
        #expect(keys("*") == all.sorted())
        #expect(keys("*", on: 2) == all.sorted())
        #expect(Set(all.map(h.shard(of:))).count == 4)
        #expect(keys("item:*") == (0..<10).map { "item:\($0)" }.sorted())
        #expect(keys("user:?") == (0..<10).map { "user:\($0)" }.sorted())
        #expect(keys("user:[1-2]?") == (10..<30).map { "user:\($0)" }.sorted())
        #expect(keys("nothing*") == [])
        // Expired keys are not listed.
        #expect(h.run(["pexpire", "item:0", "1"]) == 1)
        sleepMillis(20)
        #expect(keys("item:*").count == 9)
    }

    @Test func scanCoversTheKeyspaceExactly() {
        var expected: Set<String> = []
        for i in 0..<500 {
            expected.insert("key:\(i)")
        }
        // Written with MSET in batches (multi-shard transactions).
        let sorted = expected.sorted()
        for batch in stride(from: 0, to: sorted.count, by: 50) {
            #expect(h.run(["mset"] + sorted[batch..<(batch + 50)].flatMap { [$0, "x"] }) == .ok)
        }
        #expect(h.run(["dbsize"]) == 500)
        for count in [1, 7, 100, 1000] {
            var seen: [String] = []
            var cursor = "0"
            var calls = 0
            repeat {
                let reply = h.run(["scan", cursor, "COUNT", "\(count)"], on: calls % 4)
                guard let parts = reply.items, parts.count == 2, let next = parts[0].string, let keys = parts[1].items else {
                    Issue.record("bad SCAN reply \(reply)")
                    return
                }
                seen += keys.compactMap(\.string)
                cursor = next
                calls += 1
            } while cursor != "0" && calls < 10_000
            #expect(cursor == "0")
            #expect(seen.count == expected.count, "COUNT \(count): \(seen.count) keys returned")
            #expect(Set(seen) == expected, "COUNT \(count)")
        }
    }

    @Test func scanOptions() {
        for i in 0..<100 { set("a:\(i)") }
        for i in 0..<100 { set("b:\(i)") }
        func scanAll(_ options: [String]) -> [String] {
            var seen: [String] = []
            var cursor = "0"
            var calls = 0
            repeat {
                let parts = h.run(["scan", cursor] + options).items ?? []
                guard parts.count == 2 else { return ["<bad reply>"] }
                seen += (parts[1].items ?? []).compactMap(\.string)
                cursor = parts[0].string ?? "0"
                calls += 1
            } while cursor != "0" && calls < 10_000
            return seen.sorted()
        }
        #expect(scanAll(["MATCH", "a:*"]) == (0..<100).map { "a:\($0)" }.sorted())
        #expect(scanAll(["match", "b:1?", "count", "5"]) == (10..<20).map { "b:\($0)" }.sorted())
        #expect(scanAll(["TYPE", "string"]).count == 200)
        #expect(scanAll(["TYPE", "list"]) == [])
        #expect(h.run(["scan", "abc"]) == .error("ERR invalid cursor"))
        #expect(h.run(["scan", "0", "COUNT", "0"]) == .error("ERR syntax error"))
        #expect(h.run(["scan", "0", "COUNT", "x"]) == .error("ERR value is not an integer or out of range"))
        #expect(h.run(["scan", "0", "COUNT"]) == .error("ERR syntax error"))
        #expect(h.run(["scan", "0", "foo", "bar"]) == .error("ERR syntax error"))
        // An empty keyspace ends in one call.
        #expect(h.run(["flushall"]) == .ok)
        #expect(h.run(["scan", "0"]).items?.last == .array([]))
    }

    @Test func dbsizeAndFlush() {
        #expect(h.run(["dbsize"]) == 0)
        for i in 0..<100 { set("k\(i)") }
        #expect(h.run(["dbsize"]) == 100)
        #expect(h.run(["dbsize"], on: 3) == 100)
        let db5 = h.makeClient(on: 1, database: 5)
        for i in 0..<10 { #expect(h.run(["set", "x\(i)", "v"], client: db5) == .ok) }
        #expect(h.run(["dbsize"], client: db5) == 10)
        #expect(h.run(["del", "k0", "k1", "k2"]) == 3)
        #expect(h.run(["dbsize"]) == 97)
        // FLUSHDB clears only the client's database.
        #expect(h.run(["flushdb"], client: db5) == .ok)
        #expect(h.run(["dbsize"], client: db5) == 0)
        #expect(h.run(["dbsize"]) == 97)
        #expect(h.run(["set", "x", "v"], client: db5) == .ok)
        // FLUSHALL clears every database.
        #expect(h.run(["flushall"], on: 2) == .ok)
        #expect(h.run(["dbsize"]) == 0)
        #expect(h.run(["dbsize"], client: db5) == 0)
        #expect(h.run(["get", "k50"]) == .null)
        #expect(h.run(["flushdb", "ASYNC"]) == .ok)
        #expect(h.run(["flushall", "sync"]) == .ok)
        #expect(h.run(["flushall", "foo"]) == .error("ERR syntax error"))
        #expect(h.run(["flushdb", "async", "sync"]) == .error("ERR syntax error"))
        #expect(h.run(["dbsize", "x"]) == arityError("dbsize"))
        // Writing after a flush works on every shard.
        for key in h.keysOnEveryShard() { set(key) }
        #expect(h.run(["dbsize"]) == 4)
    }

    @Test func randomkey() {
        #expect(h.run(["randomkey"]) == .null)
        let keys = Set(h.keysOnEveryShard())
        for key in keys { set(key) }
        for loop in 0..<4 {
            let key = h.run(["randomkey"], on: loop).string ?? "<none>"
            #expect(keys.contains(key))
        }
    }

    // MARK: - OBJECT

    @Test func objectSubcommands() {
        #expect(h.run(["object", "encoding", "missing"]) == .null)
        set("s", "abc")
        set("i", "42")
        #expect(h.run(["object", "encoding", "s"]) == "embstr")
        #expect(h.run(["OBJECT", "ENCODING", "i"]) == "int")
        #expect(h.run(["object", "refcount", "s"]) == 1)
        #expect(h.run(["object", "refcount", "i"]) == .int(Int(Int32.max)))  // shared integer
        #expect(h.run(["object", "idletime", "s"]) == 0)
        #expect(h.run(["object", "freq", "s"]).isError)
        #expect((h.run(["object", "help"]).items?.count ?? 0) > 5)
        #expect(h.run(["object"]) == arityError("object"))
    }

    @Test func objectUnknownSubcommand() {
        set("k")
        // Redis 7 resolves OBJECT's subcommands in its command table.
        #expect(h.run(["object", "foo", "k"]) == .error("ERR unknown subcommand 'foo'. Try OBJECT HELP."))
        #expect(h.run(["object", "foo"]) == .error("ERR unknown subcommand 'foo'. Try OBJECT HELP."))
        #expect(h.run(["object", "encoding"]) == .error("ERR wrong number of arguments for 'object|encoding' command"))
        #expect(h.run(["object", "encoding", "k", "extra"]) == .error("ERR wrong number of arguments for 'object|encoding' command"))
    }
}
