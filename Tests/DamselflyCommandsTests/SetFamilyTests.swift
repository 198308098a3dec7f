import Testing
@testable import DamselflyCommands

/// ``SetFamily`` run through the real shard set (4 loops, 4 shards): Redis
/// 7.0's replies and errors, and multi-key commands across shards.
@Suite struct SetFamilyTests {
    let h: CommandHarness

    init() {
        h = CommandHarness()
        SetFamily.register(h.registry)
    }

    func sorted(_ reply: RV) -> [String] { (reply.items ?? []).compactMap(\.string).sorted() }

    @Test func addRemoveAndMembership() {
        #expect(h.run(["sadd", "s", "3", "1", "2", "1"]) == 3)
        #expect(h.run(["object", "encoding", "s"]) == "intset")
        #expect(h.run(["smembers", "s"]) == .strings(["1", "2", "3"]))
        #expect(h.run(["sadd", "s", "a"]) == 1)
        #expect(h.run(["object", "encoding", "s"]) == "hashtable")
        #expect(h.run(["scard", "s"]) == 4)
        #expect(h.run(["sismember", "s", "a"]) == 1)
        #expect(h.run(["sismember", "s", "b"]) == 0)
        #expect(h.run(["smismember", "s", "a", "b", "1"]) == .array([1, 0, 1]))
        #expect(h.run(["smismember", "nokey", "a"]) == .array([0]))
        #expect(h.run(["srem", "s", "a", "1", "zz"]) == 2)
        #expect(h.run(["srem", "s", "2", "3"]) == 2)
        #expect(h.run(["exists", "s"]) == 0)
        #expect(h.run(["smembers", "s"]) == .array([]))
        #expect(h.run(["scard", "s"]) == 0)
        #expect(h.run(["sadd", "t", "x"]) == 1)
        #expect(h.run(["object", "encoding", "t"]) == "hashtable")
    }

    @Test func errors() {
        h.run(["set", "str", "x"])
        let wrong = RV.error("WRONGTYPE Operation against a key holding the wrong kind of value")
        for cmd in [["sadd", "str", "a"], ["srem", "str", "a"], ["smembers", "str"], ["spop", "str"],
                    ["srandmember", "str"], ["sinter", "nokey", "str"], ["sunion", "str"], ["sdiff", "nokey", "str"],
                    ["sinterstore", "d", "nokey", "str"], ["sintercard", "2", "nokey", "str"], ["sscan", "str", "0"],
                    ["smove", "str", "d", "a"]] {
            #expect(h.run(cmd) == wrong, "\(cmd)")
        }
        #expect(h.run(["spop", "s", "-1"]) == .error("ERR value is out of range, must be positive"))
        #expect(h.run(["spop", "s", "1", "2"]) == .error("ERR syntax error"))
        #expect(h.run(["srandmember", "s", "x", "2"]) == .error("ERR syntax error"))
        #expect(h.run(["sintercard", "0", "s"]) == .error("ERR numkeys should be greater than 0"))
        #expect(h.run(["sintercard", "3", "s"]) == .error("ERR Number of keys can't be greater than number of args"))
        #expect(h.run(["sintercard", "1", "s", "limit", "-1"]) == .error("ERR LIMIT can't be negative"))
        #expect(h.run(["sintercard", "1", "s", "foo"]) == .error("ERR syntax error"))
        #expect(h.run(["sscan", "s", " 1"]) == .error("ERR invalid cursor"))
        #expect(h.run(["sadd", "s"]) == arityError("sadd"))
    }

    @Test func popAndRandom() {
        #expect(h.run(["spop", "nokey"]) == .null)
        #expect(h.run(["spop", "nokey", "3"]) == .array([]))
        #expect(h.run(["srandmember", "nokey"]) == .null)
        #expect(h.run(["srandmember", "nokey", "-3"]) == .array([]))
        h.run(["sadd", "s", "a", "b", "c", "d"])
        #expect(h.run(["srandmember", "s", "-10"]).items?.count == 10)
        #expect(Set(sorted(h.run(["srandmember", "s", "3"]))).count == 3)
        #expect(sorted(h.run(["srandmember", "s", "30"])) == ["a", "b", "c", "d"])
        let popped = sorted(h.run(["spop", "s", "2"]))
        #expect(popped.count == 2)
        #expect(h.run(["scard", "s"]) == 2)
        let rest = sorted(h.run(["spop", "s", "5"]))
        #expect(Set(popped + rest) == ["a", "b", "c", "d"])
        #expect(h.run(["exists", "s"]) == 0)
        h.run(["sadd", "one", "x"])
        #expect(h.run(["spop", "one"]) == "x")
        #expect(h.run(["exists", "one"]) == 0)
    }

    @Test func algebraAcrossShards() {
        // Four keys, one on each shard.
        let k = h.keysOnEveryShard(prefix: "set")
        h.run(["sadd", k[0], "1", "2", "3", "a"])
        h.run(["sadd", k[1], "2", "3", "4"])
        h.run(["sadd", k[2], "3", "9"])
        #expect(sorted(h.run(["sinter", k[0], k[1]])) == ["2", "3"])
        #expect(sorted(h.run(["sinter", k[0], k[1], k[2]])) == ["3"])
        #expect(h.run(["sinter", k[0], k[3]]) == .array([]))
        #expect(sorted(h.run(["sunion", k[0], k[1], k[3]])) == ["1", "2", "3", "4", "a"])
        #expect(sorted(h.run(["sdiff", k[0], k[1], k[3]])) == ["1", "a"])
        #expect(h.run(["sdiff", k[0], k[0]]) == .array([]))
        #expect(h.run(["sintercard", "2", k[0], k[1]]) == 2)
        #expect(h.run(["sintercard", "2", k[0], k[1], "limit", "1"]) == 1)
        #expect(h.run(["sintercard", "2", k[0], k[3]]) == 0)
        // STORE forms write the destination on its own shard.
        #expect(h.run(["sinterstore", k[3], k[0], k[1]]) == 2)
        #expect(h.run(["smembers", k[3]]) == .strings(["2", "3"]))
        #expect(h.run(["object", "encoding", k[3]]) == "intset")
        #expect(h.run(["sunionstore", k[3], k[0], k[2]]) == 5)
        #expect(h.run(["object", "encoding", k[3]]) == "hashtable")
        #expect(h.run(["sdiffstore", k[3], k[1], k[0]]) == 1)
        #expect(h.run(["smembers", k[3]]) == .strings(["4"]))
        #expect(h.run(["sinterstore", k[3], k[0], "nokey"]) == 0)
        #expect(h.run(["exists", k[3]]) == 0)
        // The destination may have held another type: it is replaced.
        h.run(["set", k[3], "string"])
        #expect(h.run(["sunionstore", k[3], k[2]]) == 2)
        #expect(h.run(["type", k[3]]) == .simple("set"))
    }

    @Test func moveAcrossShards() {
        let k = h.keysOnEveryShard(prefix: "mv")
        h.run(["sadd", k[0], "a", "b"])
        #expect(h.run(["smove", k[0], k[1], "a"]) == 1)
        #expect(h.run(["smembers", k[1]]) == .strings(["a"]))
        #expect(h.run(["object", "encoding", k[1]]) == "hashtable")
        #expect(h.run(["smove", k[0], k[1], "zz"]) == 0)
        #expect(h.run(["smove", k[0], k[1], "b"]) == 1)
        #expect(h.run(["exists", k[0]]) == 0)
        #expect(h.run(["smove", k[0], k[1], "b"]) == 0)
        #expect(h.run(["smove", k[1], k[1], "a"]) == 1)
        #expect(h.run(["smove", k[1], k[1], "q"]) == 0)
        h.run(["set", k[2], "x"])
        #expect(h.run(["smove", k[1], k[2], "a"]) == .error("WRONGTYPE Operation against a key holding the wrong kind of value"))
        #expect(h.run(["scard", k[1]]) == 2)
        #expect(h.run(["smove", k[3], k[2], "a"]) == 0)  // missing source first
        h.run(["sadd", k[3], "5"])
        #expect(h.run(["smove", k[3], "fresh", "5"]) == 1)
        #expect(h.run(["object", "encoding", "fresh"]) == "intset")
    }

    @Test func encodingSwitchOverAndScan() {
        for i in 0..<512 { h.run(["sadd", "big", "\(i)"]) }
        #expect(h.run(["object", "encoding", "big"]) == "intset")
        #expect(h.run(["sscan", "big", "0"]).items?[1].items?.count == 512)
        h.run(["sadd", "big", "512"])
        #expect(h.run(["object", "encoding", "big"]) == "hashtable")
        var cursor = "0"
        var seen = Set<String>()
        repeat {
            let reply = h.run(["sscan", "big", cursor, "count", "20"]).items!
            cursor = reply[0].string!
            for m in reply[1].items! { seen.insert(m.string!) }
        } while cursor != "0"
        #expect(seen.count == 513)
        #expect(h.run(["sscan", "big", "0", "match", "51?", "count", "10000"]).items?[1].items?.count == 3)
        for i in 0..<513 { h.run(["srem", "big", "\(i)"]) }
        #expect(h.run(["exists", "big"]) == 0)
    }
}
