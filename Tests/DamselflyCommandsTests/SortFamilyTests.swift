import Testing
@testable import DamselflyCommands

/// ``SortFamily`` and the other commands of its task (LCS, ZINTERCARD, SWAPDB)
/// through the real shard set (4 loops, 4 shards), so BY/GET patterns reach
/// keys on other shards; plus the pure pieces (pattern substitution, SORT's
/// reading of numbers, COMMAND GETKEYS's key finding).
@Suite struct SortFamilyTests {
    let h: CommandHarness

    init() {
        h = CommandHarness()
        ListFamily.register(h.registry)
        HashFamily.register(h.registry)
        SetFamily.register(h.registry)
        SortedSetFamily.register(h.registry)
        SortFamily.register(h.registry)
        StringFamily.registerLCS(h.registry)
        GenericFamily.registerSwapDB(h.registry)
    }

    func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    /// The key and field a pattern names for `element`, as strings.
    func named(_ pattern: String, _ element: String) -> [String?]? {
        guard let (key, field) = SortFamily.substitute(bytes(pattern), bytes(element)) else { return nil }
        return [String(decoding: key, as: UTF8.self), field.map { String(decoding: $0, as: UTF8.self) }]
    }

    @Test func patternSubstitution() {
        #expect(named("w_*", "a") == ["w_a", nil])
        #expect(named("h_*_x->f", "1") == ["h_1_x", "f"])
        // "->" with nothing after it is part of the key name
        #expect(named("h_*->", "1") == ["h_1->", nil])
        // only the first '*' is replaced; a "->" before it does not count
        #expect(named("a->b*c*", "Z") == ["a->bZc*", nil])
        #expect(named("nosort", "a") == nil)
    }

    @Test func numbersAsSortReadsThem() {
        #expect(SortFamily.sortScore(bytes("")) == 0)
        #expect(SortFamily.sortScore(bytes(" 1.5")) == 1.5)
        #expect(SortFamily.sortScore(bytes("0x10")) == 16)
        #expect(SortFamily.sortScore(bytes("-inf")) == -.infinity)
        #expect(SortFamily.sortScore(bytes("1 ")) == nil)
        #expect(SortFamily.sortScore(bytes("nan")) == nil)
        #expect(SortFamily.sortScore(bytes("1e400")) == nil)
        #expect(SortFamily.sortScore(bytes("abc")) == nil)
    }

    @Test func getKeysFindsTheLastStore() {
        let args = ["sort", "abc", "store", "invalid", "limit", "store", "1", "get", "store", "store", "def"].map(bytes)
        #expect(SortFamily.keyPositions(args) == [1, 10])
        #expect(SortFamily.keyPositions(["sort", "k", "by", "store"].map(bytes)) == [1])
    }

    @Test func sortsWithPatternsAcrossShards() {
        #expect(h.run(["rpush", "l", "3", "1", "2"]) == 3)
        for (e, w) in [("1", "30"), ("2", "10"), ("3", "20")] {
            #expect(h.run(["set", "w_\(e)", w]) == .ok)
            #expect(h.run(["hset", "h_\(e)", "name", "n\(e)"]) == 1)
        }
        #expect(h.run(["sort", "l"]) == .strings(["1", "2", "3"]))
        #expect(h.run(["sort", "l", "by", "w_*"]) == .strings(["2", "3", "1"]))
        #expect(h.run(["sort", "l", "by", "w_*", "desc", "get", "#", "get", "h_*->name", "get", "x_*"])
            == .strings(["1", "n1", nil, "3", "n3", nil, "2", "n2", nil]))
        #expect(h.run(["sort", "l", "by", "nosort", "limit", "1", "5"]) == .strings(["1", "2"]))
        #expect(h.run(["sort", "l", "by", "h_*->name", "alpha", "store", "d"]) == 3)
        #expect(h.run(["lrange", "d", "0", "-1"]) == .strings(["1", "2", "3"]))
        #expect(h.run(["sort", "l", "by", "w_*", "get", "missing_*", "store", "d2"]) == 3)
        #expect(h.run(["lrange", "d2", "0", "-1"]) == .strings(["", "", ""]))
        #expect(h.run(["sort", "nokey", "by", "w_*", "store", "d"]) == 0)
        #expect(h.run(["exists", "d"]) == 0)
        #expect(h.run(["sort_ro", "l", "store", "d"]) == .error("ERR syntax error"))
        #expect(h.run(["rpush", "bad", "a"]) == 1)
        #expect(h.run(["sort", "bad"]) == .error("ERR One or more scores can't be converted into double"))
        #expect(h.run(["set", "s", "x"]) == .ok)
        #expect(h.run(["sort", "s", "by", "w_*"]) == .error("WRONGTYPE Operation against a key holding the wrong kind of value"))
        #expect(h.run(["sort", "l", "limit", "0"]) == .error("ERR syntax error"))
    }

    @Test func sortedSetAndSetInputOrders() {
        #expect(h.run(["zadd", "z", "3", "a", "1", "c", "2", "b"]) == 3)
        #expect(h.run(["sort", "z", "by", "nosort"]) == .strings(["c", "b", "a"]))
        #expect(h.run(["sort", "z", "by", "nosort", "desc", "limit", "1", "1"]) == .strings(["b"]))
        #expect(h.run(["sort", "z", "alpha"]) == .strings(["a", "b", "c"]))
        #expect(h.run(["sadd", "set", "z", "x", "y"]) == 3)
        // a set sorted BY nosort into STORE is sorted anyway (ALPHA)
        #expect(h.run(["sort", "set", "by", "nosort", "store", "d"]) == 3)
        #expect(h.run(["lrange", "d", "0", "-1"]) == .strings(["x", "y", "z"]))
    }

    @Test func lcs() {
        #expect(h.run(["set", "a", "ohmytext"]) == .ok)
        #expect(h.run(["set", "b", "mynewtext"]) == .ok)
        #expect(h.run(["lcs", "a", "b"]) == .bulk("mytext"))
        #expect(h.run(["lcs", "a", "b", "len"]) == 6)
        #expect(h.run(["lcs", "a", "b", "idx", "minmatchlen", "4", "withmatchlen"])
            == .array([.bulk("matches"), .array([.array([.array([4, 7]), .array([5, 8]), 4])]), .bulk("len"), 6]))
        #expect(h.run(["lcs", "a", "b", "len", "idx"])
            == .error("ERR If you want both the length and indexes, please just use IDX."))
        #expect(h.run(["rpush", "l", "x"]) == 1)
        #expect(h.run(["lcs", "a", "l"]) == .error("ERR The specified keys must contain string values"))
    }

    @Test func zintercardAndSwapdb() {
        #expect(h.run(["zadd", "z1", "1", "a", "2", "b", "3", "c"]) == 3)
        #expect(h.run(["sadd", "s1", "a", "c", "d"]) == 3)
        #expect(h.run(["zintercard", "2", "z1", "s1"]) == 2)
        #expect(h.run(["zintercard", "2", "z1", "s1", "limit", "1"]) == 1)
        #expect(h.run(["zintercard", "2", "z1", "nokey"]) == 0)
        #expect(h.run(["zintercard", "1", "z1", "limit", "-1"]) == .error("ERR LIMIT can't be negative"))
        #expect(h.run(["zintercard", "0", "z1"]) == .error("ERR at least 1 input key is needed for 'zintercard' command"))
        #expect(h.run(["swapdb", "0", "1"]) == .ok)
        #expect(h.run(["exists", "z1"]) == 0)
        #expect(h.run(["swapdb", "1", "0"]) == .ok)
        #expect(h.run(["zcard", "z1"]) == 3)
        #expect(h.run(["swapdb", "0", "16"]) == .error("ERR DB index is out of range"))
        #expect(h.run(["swapdb", "a", "0"]) == .error("ERR invalid first DB index"))
    }
}
