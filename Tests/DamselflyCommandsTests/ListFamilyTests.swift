import Testing
@testable import DamselflyCommands

/// ``ListFamily`` run through the real shard set (4 loops, 4 shards), with
/// Redis 7.0's replies and error texts (checked against redis-server 7.0.15).
@Suite struct ListFamilyTests {
    let h: CommandHarness

    init() {
        h = CommandHarness()
        // Registering again is harmless when the harness already does.
        ListFamily.register(h.registry)
    }

    static let wrongType = RV.error("WRONGTYPE Operation against a key holding the wrong kind of value")
    static let outOfRange = RV.error("ERR value is out of range, must be positive")
    static let notInteger = RV.error("ERR value is not an integer or out of range")
    static let syntax = RV.error("ERR syntax error")

    func list(_ key: String) -> [String?] {
        (h.run(["lrange", key, "0", "-1"]).items ?? []).map { $0.string }
    }

    // MARK: - Push and pop

    @Test func pushAndPop() {
        #expect(h.run(["lpush", "l", "a", "b", "c"]) == 3)
        #expect(h.run(["rpush", "l", "d"]) == 4)
        #expect(list("l") == ["c", "b", "a", "d"])
        #expect(h.run(["lpop", "l"]) == "c")
        #expect(h.run(["rpop", "l"]) == "d")
        #expect(h.run(["llen", "l"]) == 2)
        #expect(h.run(["lpop", "l", "5"]) == .strings(["b", "a"]))
        // Emptied: the key is gone.
        #expect(h.run(["exists", "l"]) == 0)
        #expect(h.run(["lpop", "l"]) == .null)
        #expect(h.run(["lpop", "l", "2"]) == .nullArray)
        #expect(h.run(["lpop", "l", "0"]) == .nullArray)
    }

    /// The one-element forms (their own path: no array around the element): a push
    /// creates the list or appends, a pop without count deletes the key it empties.
    @Test func oneElementPushAndPop() {
        #expect(h.run(["rpush", "q", "a"]) == 1)
        #expect(h.run(["lpush", "q", "b"]) == 2)
        #expect(h.run(["rpushx", "q", "c"]) == 3)
        #expect(h.run(["lpushx", "none", "c"]) == 0)
        #expect(list("q") == ["b", "a", "c"])
        #expect(h.run(["rpop", "q"]) == "c")
        #expect(h.run(["lpop", "q"]) == "b")
        #expect(h.run(["rpop", "q"]) == "a")
        #expect(h.run(["exists", "q"]) == 0)
        #expect(h.run(["rpop", "q"]) == .null)
        h.run(["set", "s", "v"])
        #expect(h.run(["rpush", "s", "a"]) == Self.wrongType)
        #expect(h.run(["lpop", "s"]) == Self.wrongType)
    }

    @Test func popCountRules() {
        h.run(["rpush", "l", "a", "b", "c"])
        #expect(h.run(["lpop", "l", "0"]) == .array([]))
        #expect(h.run(["rpop", "l", "2"]) == .strings(["c", "b"]))
        #expect(h.run(["lpop", "l", "-1"]) == Self.outOfRange)
        #expect(h.run(["lpop", "l", "x"]) == Self.outOfRange)
        #expect(h.run(["lpop", "nokey", "-1"]) == Self.outOfRange)
        #expect(h.run(["lpop", "l", "1", "2"]) == arityError("lpop"))
        h.run(["set", "s", "v"])
        #expect(h.run(["lpop", "s", "0"]) == Self.wrongType)
        #expect(h.run(["rpop", "s"]) == Self.wrongType)
    }

    @Test func pushX() {
        #expect(h.run(["lpushx", "l", "a"]) == 0)
        #expect(h.run(["exists", "l"]) == 0)
        h.run(["rpush", "l", "m"])
        #expect(h.run(["lpushx", "l", "a", "b"]) == 3)
        #expect(h.run(["rpushx", "l", "z"]) == 4)
        #expect(list("l") == ["b", "a", "m", "z"])
        h.run(["set", "s", "v"])
        #expect(h.run(["lpushx", "s", "a"]) == Self.wrongType)
        #expect(h.run(["lpush", "s", "a"]) == Self.wrongType)
    }

    @Test func typeAndEncoding() {
        h.run(["rpush", "l", "a"])
        #expect(h.run(["type", "l"]) == .simple("list"))
        #expect(h.run(["object", "encoding", "l"]) == "quicklist")
    }

    // MARK: - Reading

    @Test func rangeAndIndex() {
        h.run(["rpush", "l", "a", "b", "c", "d", "e"])
        #expect(h.run(["lrange", "l", "1", "2"]) == .strings(["b", "c"]))
        #expect(h.run(["lrange", "l", "-2", "-1"]) == .strings(["d", "e"]))
        #expect(h.run(["lrange", "l", "-100", "100"]) == .strings(["a", "b", "c", "d", "e"]))
        #expect(h.run(["lrange", "l", "3", "1"]) == .array([]))
        #expect(h.run(["lrange", "l", "9", "10"]) == .array([]))
        #expect(h.run(["lrange", "l", "-9223372036854775808", "9223372036854775807"]).items?.count == 5)
        #expect(h.run(["lrange", "nokey", "0", "-1"]) == .array([]))
        #expect(h.run(["lrange", "l", "x", "1"]) == Self.notInteger)
        #expect(h.run(["lindex", "l", "0"]) == "a")
        #expect(h.run(["lindex", "l", "-1"]) == "e")
        #expect(h.run(["lindex", "l", "5"]) == .null)
        #expect(h.run(["lindex", "l", "-6"]) == .null)
        #expect(h.run(["lindex", "l", "x"]) == Self.notInteger)
        // LINDEX looks the key up before it parses the index.
        #expect(h.run(["lindex", "nokey", "x"]) == .null)
        h.run(["set", "s", "v"])
        #expect(h.run(["lindex", "s", "x"]) == Self.wrongType)
        #expect(h.run(["llen", "s"]) == Self.wrongType)
        #expect(h.run(["llen", "nokey"]) == 0)
    }

    // MARK: - Editing

    @Test func lset() {
        #expect(h.run(["lset", "nokey", "0", "x"]) == .error("ERR no such key"))
        #expect(h.run(["lset", "nokey", "x", "x"]) == .error("ERR no such key"))
        h.run(["rpush", "l", "a", "b", "c"])
        #expect(h.run(["lset", "l", "1", "B"]) == .ok)
        #expect(h.run(["lset", "l", "-1", "a much longer value than before"]) == .ok)
        #expect(list("l") == ["a", "B", "a much longer value than before"])
        #expect(h.run(["lset", "l", "3", "x"]) == .error("ERR index out of range"))
        #expect(h.run(["lset", "l", "x", "x"]) == Self.notInteger)
        h.run(["set", "s", "v"])
        #expect(h.run(["lset", "s", "x", "x"]) == Self.wrongType)
    }

    @Test func linsert() {
        #expect(h.run(["linsert", "nokey", "before", "a", "x"]) == 0)
        #expect(h.run(["linsert", "nokey", "middle", "a", "x"]) == Self.syntax)
        h.run(["rpush", "l", "a", "b", "a"])
        #expect(h.run(["linsert", "l", "BEFORE", "a", "x"]) == 4)
        #expect(h.run(["linsert", "l", "after", "b", "y"]) == 5)
        #expect(h.run(["linsert", "l", "after", "zz", "y"]) == -1)
        #expect(list("l") == ["x", "a", "b", "y", "a"])
        h.run(["set", "s", "v"])
        #expect(h.run(["linsert", "s", "before", "a", "x"]) == Self.wrongType)
    }

    @Test func lrem() {
        h.run(["rpush", "l", "a", "b", "a", "c", "a"])
        #expect(h.run(["lrem", "l", "1", "a"]) == 1)
        #expect(list("l") == ["b", "a", "c", "a"])
        #expect(h.run(["lrem", "l", "-1", "a"]) == 1)
        #expect(list("l") == ["b", "a", "c"])
        #expect(h.run(["lrem", "l", "0", "zz"]) == 0)
        #expect(h.run(["lrem", "l", "0", "a"]) == 1)
        #expect(h.run(["lrem", "l", "-9223372036854775808", "b"]) == 1)
        #expect(h.run(["lrem", "l", "0", "c"]) == 1)
        #expect(h.run(["exists", "l"]) == 0)
        #expect(h.run(["lrem", "l", "x", "a"]) == Self.notInteger)
        #expect(h.run(["lrem", "nokey", "0", "a"]) == 0)
    }

    @Test func ltrim() {
        h.run(["rpush", "l", "a", "b", "c", "d", "e"])
        #expect(h.run(["ltrim", "l", "1", "-2"]) == .ok)
        #expect(list("l") == ["b", "c", "d"])
        #expect(h.run(["ltrim", "l", "-9223372036854775808", "9223372036854775807"]) == .ok)
        #expect(list("l") == ["b", "c", "d"])
        #expect(h.run(["ltrim", "l", "2", "1"]) == .ok)
        #expect(h.run(["exists", "l"]) == 0)
        #expect(h.run(["ltrim", "nokey", "0", "1"]) == .ok)
        #expect(h.run(["ltrim", "l", "x", "1"]) == Self.notInteger)
    }

    // MARK: - LPOS

    @Test func lpos() {
        h.run(["rpush", "l", "a", "b", "a", "c", "a"])
        #expect(h.run(["lpos", "l", "a"]) == 0)
        #expect(h.run(["lpos", "l", "a", "rank", "2"]) == 2)
        #expect(h.run(["lpos", "l", "a", "rank", "-1"]) == 4)
        #expect(h.run(["lpos", "l", "a", "count", "0"]) == .array([0, 2, 4]))
        #expect(h.run(["lpos", "l", "a", "count", "2", "rank", "-1"]) == .array([4, 2]))
        #expect(h.run(["lpos", "l", "a", "rank", "-2", "count", "2", "maxlen", "3"]) == .array([2]))
        #expect(h.run(["lpos", "l", "a", "maxlen", "1", "rank", "2"]) == .null)
        #expect(h.run(["lpos", "l", "zz"]) == .null)
        #expect(h.run(["lpos", "l", "zz", "count", "1"]) == .array([]))
        #expect(h.run(["lpos", "nokey", "a"]) == .null)
        #expect(h.run(["lpos", "nokey", "a", "count", "0"]) == .array([]))
        // Redis 7.0's LONG_MIN rank: every match from the tail.
        #expect(h.run(["lpos", "l", "a", "rank", "-9223372036854775808", "count", "1"]) == .array([4, 2, 0]))
        #expect(h.run(["lpos", "l", "a", "rank", "-9223372036854775808"]) == 4)
        #expect(h.run(["lpos", "l", "a", "rank", "0"]).isError)
        #expect(h.run(["lpos", "l", "a", "rank", "x"]) == Self.notInteger)
        #expect(h.run(["lpos", "l", "a", "count", "-1"]) == .error("ERR COUNT can't be negative"))
        #expect(h.run(["lpos", "l", "a", "maxlen", "x"]) == .error("ERR MAXLEN can't be negative"))
        #expect(h.run(["lpos", "l", "a", "rank"]) == Self.syntax)
        #expect(h.run(["lpos", "l", "a", "foo", "1"]) == Self.syntax)
    }

    // MARK: - Moves

    @Test func lmoveAcrossShards() {
        let keys = h.keysOnEveryShard(prefix: "list")
        let (a, b) = (keys[0], keys[1])
        h.run(["rpush", a, "1", "2", "3"])
        #expect(h.run(["lmove", a, b, "left", "right"]) == "1")
        #expect(h.run(["rpoplpush", a, b]) == "3")
        #expect(list(a) == ["2"])
        #expect(list(b) == ["3", "1"])
        #expect(h.run(["lmove", a, b, "RIGHT", "LEFT"]) == "2")
        #expect(h.run(["exists", a]) == 0)
        #expect(h.run(["lmove", a, b, "left", "left"]) == .null)
        #expect(h.run(["lmove", a, b, "up", "left"]) == Self.syntax)
        h.run(["set", keys[2], "v"])
        #expect(h.run(["lmove", b, keys[2], "left", "left"]) == Self.wrongType)
        #expect(h.run(["lmove", keys[2], b, "left", "left"]) == Self.wrongType)
        // Source missing: the destination's type is never looked at.
        #expect(h.run(["lmove", a, keys[2], "left", "left"]) == .null)
        #expect(list(b) == ["2", "3", "1"])
    }

    @Test func lmoveSameKeyRotates() {
        h.run(["rpush", "l", "a", "b", "c"])
        #expect(h.run(["lmove", "l", "l", "left", "right"]) == "a")
        #expect(list("l") == ["b", "c", "a"])
        #expect(h.run(["rpoplpush", "l", "l"]) == "a")
        #expect(list("l") == ["a", "b", "c"])
        h.run(["del", "l"])
        h.run(["rpush", "l", "only"])
        h.run(["expire", "l", "1000"])
        #expect(h.run(["lmove", "l", "l", "left", "left"]) == "only")
        #expect(h.run(["ttl", "l"]).integer ?? 0 > 0)
    }

    @Test func lmpop() {
        let keys = h.keysOnEveryShard(prefix: "mp")
        h.run(["rpush", keys[2], "a", "b", "c"])
        h.run(["rpush", keys[3], "x"])
        #expect(h.run(["lmpop", "3", keys[0], keys[1], keys[2], "left"]) == .array([.bulk(keys[2]), .strings(["a"])]))
        #expect(h.run(["lmpop", "2", keys[3], keys[2], "RIGHT", "COUNT", "5"]) == .array([.bulk(keys[3]), .strings(["x"])]))
        #expect(h.run(["exists", keys[3]]) == 0)
        #expect(h.run(["lmpop", "4", keys[0], keys[1], keys[2], keys[3], "right", "count", "9"])
                == .array([.bulk(keys[2]), .strings(["c", "b"])]))
        #expect(h.run(["lmpop", "2", keys[0], keys[1], "left"]) == .nullArray)
        h.run(["set", keys[1], "v"])
        #expect(h.run(["lmpop", "2", keys[0], keys[1], "left"]) == Self.wrongType)
        h.run(["rpush", keys[0], "z"])
        #expect(h.run(["lmpop", "2", keys[0], keys[1], "left"]) == .array([.bulk(keys[0]), .strings(["z"])]))
        // Argument errors, in Redis's order.
        #expect(h.run(["lmpop", "0", "k", "left"]) == .error("ERR numkeys should be greater than 0"))
        #expect(h.run(["lmpop", "x", "k", "left"]) == .error("ERR numkeys should be greater than 0"))
        #expect(h.run(["lmpop", "3", "k", "left"]) == Self.syntax)
        #expect(h.run(["lmpop", "1", "k", "middle"]) == Self.syntax)
        #expect(h.run(["lmpop", "1", "k", "left", "count", "0"]) == .error("ERR count should be greater than 0"))
        #expect(h.run(["lmpop", "1", "k", "left", "count"]) == Self.syntax)
        #expect(h.run(["lmpop", "1", "k", "left", "count", "1", "count", "1"]) == Self.syntax)
        #expect(h.run(["lmpop", "1", "k"]) == arityError("lmpop"))
    }

    @Test func manyElementsThroughEveryLoop() {
        // Enough 120-byte payloads for many packed nodes, pushed from every loop.
        let payload = String(repeating: "j", count: 120)
        for i in 0..<2000 { h.run(["lpush", "queue", "\(payload)\(i)"], on: i % 4) }
        #expect(h.run(["llen", "queue"]) == 2000)
        #expect(h.run(["lindex", "queue", "1000"]) == .bulk("\(payload)999"))
        for i in 0..<2000 { #expect(h.run(["rpop", "queue"], on: i % 4) == .bulk("\(payload)\(i)")) }
        #expect(h.run(["exists", "queue"]) == 0)
    }
}
