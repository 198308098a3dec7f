import Testing
@testable import DamselflyCommands

/// ``SortedSetFamily`` run through the real shard set (4 loops, 4 shards):
/// Redis 7.0's replies and errors, and multi-key commands across shards.
@Suite struct SortedSetFamilyTests {
    let h: CommandHarness

    init() {
        h = CommandHarness()
        SortedSetFamily.register(h.registry)
        SetFamily.register(h.registry)
    }

    @Test func addAndRead() {
        #expect(h.run(["zadd", "z", "1", "a", "2", "b", "0.1", "c"]) == 3)
        #expect(h.run(["zrange", "z", "0", "-1", "withscores"]) == .strings(["c", "0.10000000000000001", "a", "1", "b", "2"]))
        #expect(h.run(["zscore", "z", "a"]) == "1")
        #expect(h.run(["zscore", "z", "x"]) == .null)
        #expect(h.run(["zmscore", "z", "a", "x"]) == .array(["1", .null]))
        #expect(h.run(["zrank", "z", "b"]) == 2)
        #expect(h.run(["zrevrank", "z", "b"]) == 0)
        #expect(h.run(["zcard", "z"]) == 3)
        #expect(h.run(["zadd", "z", "ch", "5", "a", "7", "d"]) == 2)
        #expect(h.run(["zadd", "z", "incr", "1", "a"]) == "6")
        #expect(h.run(["zadd", "z", "nx", "incr", "1", "a"]) == .null)
        #expect(h.run(["zadd", "z", "gt", "ch", "1", "a", "100", "b"]) == 1)
        #expect(h.run(["zincrby", "z", "inf", "c"]) == "inf")
        #expect(h.run(["zincrby", "z", "-inf", "c"]) == .error("ERR resulting score is not a number (NaN)"))
        #expect(h.run(["zcount", "z", "(6", "+inf"]) == 3)
        #expect(h.run(["zrangebyscore", "z", "(6", "+inf", "limit", "1", "1"]) == .strings(["b"]))
        #expect(h.run(["zrevrangebyscore", "z", "+inf", "-inf", "limit", "0", "2"]) == .strings(["c", "b"]))
        #expect(h.run(["zrem", "z", "a", "b", "c", "d"]) == 4)
        #expect(h.run(["exists", "z"]) == 0)
    }

    @Test func errors() {
        h.run(["set", "str", "x"])
        let wrong = RV.error("WRONGTYPE Operation against a key holding the wrong kind of value")
        for cmd in [["zadd", "str", "1", "a"], ["zrange", "str", "0", "1"], ["zcard", "str"], ["zpopmin", "str"],
                    ["zunion", "2", "nokey", "str"], ["zmpop", "2", "nokey", "str", "min"], ["zscan", "str", "0"]] {
            #expect(h.run(cmd) == wrong, "\(cmd)")
        }
        #expect(h.run(["zadd", "z", "nx", "xx", "1", "a"]) == .error("ERR XX and NX options at the same time are not compatible"))
        #expect(h.run(["zadd", "z", "gt", "lt", "1", "a"]) == .error("ERR GT, LT, and/or NX options at the same time are not compatible"))
        #expect(h.run(["zadd", "z", "incr", "1", "a", "2", "b"]) == .error("ERR INCR option supports a single increment-element pair"))
        #expect(h.run(["zadd", "z", "x", "a"]) == .error("ERR value is not a valid float"))
        #expect(h.run(["zadd", "z", "1", "a", "2"]) == .error("ERR syntax error"))
        #expect(h.run(["zcount", "z", "x", "1"]) == .error("ERR min or max is not a float"))
        #expect(h.run(["zlexcount", "z", "a", "b"]) == .error("ERR min or max not valid string range item"))
        #expect(h.run(["zrange", "z", "0", "1", "limit", "0", "1"]) == .error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"))
        #expect(h.run(["zunion", "0", "z"]) == .error("ERR at least 1 input key is needed for 'zunion' command"))
        #expect(h.run(["zpopmin", "z", "-1"]) == .error("ERR value is out of range, must be positive"))
        #expect(h.run(["zmpop", "0", "z", "min"]) == .error("ERR numkeys should be greater than 0"))
    }

    @Test func multiKeyAcrossShards() {
        let k = h.keysOnEveryShard(prefix: "zs")
        h.run(["zadd", k[0], "1", "a", "2", "b"])
        h.run(["zadd", k[1], "10", "b", "20", "c"])
        h.run(["sadd", k[2], "a", "c"])
        #expect(h.run(["zunionstore", k[3], "3", k[0], k[1], k[2]]) == 3)
        #expect(h.run(["zrange", k[3], "0", "-1", "withscores"]) == .strings(["a", "2", "b", "12", "c", "21"]))
        #expect(h.run(["zinter", "2", k[0], k[1], "aggregate", "max", "withscores"]) == .strings(["b", "10"]))
        #expect(h.run(["zdiff", "2", k[0], k[1]]) == .strings(["a"]))
        #expect(h.run(["zunion", "2", k[0], k[1], "weights", "2", "0.5"]) == .strings(["a", "b", "c"]))
        #expect(h.run(["zrangestore", k[2], k[1], "0", "0"]) == 1)
        #expect(h.run(["type", k[2]]) == .simple("zset"))
        #expect(h.run(["zmpop", "3", "nokey", k[1], k[0], "max", "count", "5"])
                == .array([.bulk(k[1]), .array([.array(["c", "20"]), .array(["b", "10"])])]))
        #expect(h.run(["exists", k[1]]) == 0)
        #expect(h.run(["zmpop", "1", "nokey", "min"]) == .nullArray)
        #expect(h.run(["zinterstore", k[3], "2", k[0], "nokey"]) == 0)
        #expect(h.run(["exists", k[3]]) == 0)
    }

    /// Issue 20: a result built from plain sets (members in hash order, score
    /// 1) must be stored and replied in (score, member) order. Random set and
    /// sorted-set sources through every algebra command and ZRANGESTORE; each
    /// stored result's ZRANGE must be ordered (and, in debug builds,
    /// `SortedSetValue(sortedEntries:)` asserts the same).
    @Test func algebraResultsAreOrdered() {
        let k = h.keysOnEveryShard(prefix: "ord")
        var rng = SystemRandomNumberGenerator()
        let universe = ["1", "2", "10", "a", "b", "c", "B", "aa", "-1", "x y", "zz", "0"]
        /// True when a WITHSCORES reply is in Redis's order.
        func ordered(_ reply: RV) -> Bool {
            guard case .array(let flat) = reply, flat.count % 2 == 0 else { return false }
            var pairs: [(Double, [UInt8])] = []
            var i = 0
            while i < flat.count {
                guard case .bulk(let m) = flat[i], case .bulk(let sc) = flat[i + 1],
                      let score = Double(String(decoding: sc, as: UTF8.self)) else { return false }
                pairs.append((score, m))
                i += 2
            }
            return zip(pairs, pairs.dropFirst()).allSatisfy { a, b in
                a.0 < b.0 || (a.0 == b.0 && a.1.lexicographicallyPrecedes(b.1))
            }
        }
        for round in 0..<60 {
            for source in k.prefix(3) {
                h.run(["del", source])
                let members = universe.filter { _ in Bool.random(using: &rng) }
                guard !members.isEmpty else { continue }
                if Bool.random(using: &rng) {
                    h.run(["sadd", source] + members)
                } else {
                    h.run(["zadd", source] + members.flatMap { [String(Int.random(in: -2...2, using: &rng)), $0] })
                }
            }
            let sources = Array(k.prefix(3)).shuffled(using: &rng)
            let extra = round % 3 == 0 ? ["weights", "2", "1", "0.5"] : round % 3 == 1 ? ["aggregate", "max"] : []
            for command in ["zunionstore", "zinterstore", "zdiffstore"] {
                let options = command == "zdiffstore" ? [] : extra
                h.run([command, k[3], "3"] + sources + options)
                let stored = h.run(["zrange", k[3], "0", "-1", "withscores"])
                #expect(ordered(stored), "\(command) \(sources) \(options): \(stored)")
                let reply = h.run([String(command.dropLast(5)), "3"] + sources + options + ["withscores"])
                #expect(reply == stored, "\(command) reply and stored result differ")
            }
            h.run(["zrangestore", k[2], k[3], "0", "-1", "rev"])
            #expect(ordered(h.run(["zrange", k[2], "0", "-1", "withscores"])))
        }
        h.run(["del", k[0], k[1]])
        h.run(["sadd", k[0], "a", "b", "c", "1", "2"])
        #expect(h.run(["zdiffstore", k[1], "1", k[0]]) == 5)
        #expect(h.run(["zrange", k[1], "0", "-1"]) == .strings(["1", "2", "a", "b", "c"]))
    }

    @Test func largeSetRanges() {
        var args = ["zadd", "big"]
        for i in 0..<1000 { args += [String(i), "m\(i)"] }
        #expect(h.run(args) == 1000)
        #expect(h.run(["object", "encoding", "big"]) == "skiplist")
        #expect(h.run(["zrank", "big", "m500"]) == 500)
        #expect(h.run(["zrangebyscore", "big", "(997", "+inf"]) == .strings(["m998", "m999"]))
        #expect(h.run(["zremrangebyrank", "big", "0", "899"]) == 900)
        #expect(h.run(["zrange", "big", "0", "0"]) == .strings(["m900"]))
        #expect(h.run(["zpopmax", "big", "2"]) == .strings(["m999", "999", "m998", "998"]))
        #expect(h.run(["zcard", "big"]) == 98)
    }
}
