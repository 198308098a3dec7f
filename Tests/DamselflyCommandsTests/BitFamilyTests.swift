import Testing
@testable import DamselflyCommands

/// ``BitFamily`` through the real shard set: Redis 7.0's replies and errors.
@Suite struct BitFamilyTests {
    let h: CommandHarness

    init() {
        h = CommandHarness()
        BitFamily.register(h.registry)
    }

    @Test func setGetCount() {
        #expect(h.run(["setbit", "b", "7", "1"]) == 0)
        #expect(h.run(["setbit", "b", "7", "1"]) == 1)
        #expect(h.run(["get", "b"]) == .bulk([1]))
        #expect(h.run(["object", "encoding", "b"]) == "raw")
        #expect(h.run(["getbit", "b", "7"]) == 1)
        #expect(h.run(["getbit", "b", "100"]) == 0)
        h.run(["set", "s", "foobar"])
        #expect(h.run(["bitcount", "s"]) == 26)
        #expect(h.run(["bitcount", "s", "1", "1"]) == 6)
        #expect(h.run(["bitcount", "s", "5", "30", "bit"]) == 17)
        #expect(h.run(["bitpos", "s", "1"]) == 1)
        #expect(h.run(["bitpos", "s", "0", "0", "-1"]) == 0)
        h.run(["set", "ones", "\u{7f}"])
        #expect(h.run(["bitpos", "nokey", "1"]) == -1)
        #expect(h.run(["bitcount", "nokey", "a", "b"]) == 0)
    }

    @Test func errors() {
        #expect(h.run(["setbit", "b", "-1", "1"]) == .error("ERR bit offset is not an integer or out of range"))
        #expect(h.run(["setbit", "b", "1", "2"]) == .error("ERR bit is not an integer or out of range"))
        #expect(h.run(["bitpos", "b", "2"]) == .error("ERR The bit argument must be 1 or 0."))
        #expect(h.run(["bitfield", "b", "get", "u64", "0"]) == .error(
            "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is."))
        #expect(h.run(["bitfield", "b", "overflow", "x"]) == .error("ERR Invalid OVERFLOW type specified"))
        #expect(h.run(["bitfield_ro", "b", "set", "i8", "0", "1"]) == .error("ERR BITFIELD_RO only supports the GET subcommand"))
        #expect(h.run(["bitop", "not", "d", "a", "b"]) == .error("ERR BITOP NOT must be called with a single source key."))
    }

    @Test func bitfieldOverflow() {
        #expect(h.run(["bitfield", "f", "set", "i8", "#1", "300", "incrby", "u8", "0", "200",
                       "overflow", "sat", "incrby", "u8", "0", "200", "overflow", "fail", "incrby", "u8", "0", "200"])
                == .array([0, 200, 255, .null]))
        #expect(h.run(["bitfield", "f", "get", "i8", "8"]) == .array([44]))
        #expect(h.run(["bitfield", "g", "incrby", "i64", "0", "9223372036854775807"]) == .array([.int(Int.max)]))
        #expect(h.run(["bitfield", "g", "incrby", "i64", "0", "1"]) == .array([.int(Int.min)]))
        #expect(h.run(["bitfield", "g", "overflow", "sat", "incrby", "i64", "0", "-1"]) == .array([.int(Int.min)]))
    }

    @Test func bitopAcrossShards() {
        let k = h.keysOnEveryShard(prefix: "bo")
        h.run(["set", k[0], "abc"])
        h.run(["set", k[1], "a"])
        #expect(h.run(["bitop", "or", k[2], k[0], k[1], "nokey"]) == 3)
        #expect(h.run(["get", k[2]]) == "abc")
        #expect(h.run(["bitop", "and", k[3], k[0], k[1]]) == 3)
        #expect(h.run(["get", k[3]]) == .bulk([0x61, 0, 0]))
        #expect(h.run(["bitop", "and", k[3], "nokey"]) == 0)
        #expect(h.run(["exists", k[3]]) == 0)
    }
}
