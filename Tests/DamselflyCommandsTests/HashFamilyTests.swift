import Testing
@testable import DamselflyCommands

/// ``HashFamily`` run through the real shard set (4 loops, 4 shards), with
/// Redis 7.0's replies and error texts.
@Suite struct HashFamilyTests {
    let h: CommandHarness

    init() {
        h = CommandHarness()
        // Registered before any hash command is posted to a loop.
        HashFamily.register(h.registry)
    }

    @Test func setGetAndCounts() {
        #expect(h.run(["hset", "h", "a", "1", "b", "2"]) == 2)
        #expect(h.run(["hset", "h", "a", "10", "c", "3"]) == 1)
        #expect(h.run(["hget", "h", "a"]) == "10")
        #expect(h.run(["hget", "h", "zz"]) == .null)
        #expect(h.run(["hget", "nokey", "a"]) == .null)
        #expect(h.run(["hmget", "h", "a", "zz", "c"]) == .strings(["10", nil, "3"]))
        #expect(h.run(["hmget", "nokey", "a", "b"]) == .strings([nil, nil]))
        #expect(h.run(["hlen", "h"]) == 3)
        #expect(h.run(["hlen", "nokey"]) == 0)
        #expect(h.run(["hexists", "h", "b"]) == 1)
        #expect(h.run(["hexists", "h", "x"]) == 0)
        #expect(h.run(["hstrlen", "h", "a"]) == 2)
        #expect(h.run(["hstrlen", "h", "x"]) == 0)
        // Insertion order (listpack), updates in place.
        #expect(h.run(["hgetall", "h"]) == .strings(["a", "10", "b", "2", "c", "3"]))
        #expect(h.run(["hkeys", "h"]) == .strings(["a", "b", "c"]))
        #expect(h.run(["hvals", "h"]) == .strings(["10", "2", "3"]))
        #expect(h.run(["hgetall", "nokey"]) == .array([]))
        #expect(h.run(["hmset", "h", "d", "4"]) == .ok)
        #expect(h.run(["hsetnx", "h", "d", "5"]) == 0)
        #expect(h.run(["hsetnx", "h", "e", "5"]) == 1)
        #expect(h.run(["hget", "h", "d"]) == "4")
        #expect(h.run(["type", "h"]) == .simple("hash"))
        #expect(h.run(["object", "encoding", "h"]) == "listpack")
    }

    @Test func deleteRemovesEmptyKey() {
        h.run(["hset", "h", "a", "1", "b", "2"])
        #expect(h.run(["hdel", "h", "a", "zz"]) == 1)
        #expect(h.run(["hdel", "h", "b", "b"]) == 1)
        #expect(h.run(["exists", "h"]) == 0)
        #expect(h.run(["hdel", "h", "a"]) == 0)
    }

    @Test func errors() {
        h.run(["set", "s", "x"])
        let wrong = RV.error("WRONGTYPE Operation against a key holding the wrong kind of value")
        for cmd in [["hset", "s", "a", "1"], ["hget", "s", "a"], ["hgetall", "s"], ["hdel", "s", "a"],
                    ["hincrby", "s", "a", "1"], ["hincrbyfloat", "s", "a", "1"], ["hrandfield", "s"],
                    ["hscan", "s", "0"], ["hlen", "s"], ["hsetnx", "s", "a", "b"], ["hmget", "s", "a"]] {
            #expect(h.run(cmd) == wrong, "\(cmd)")
        }
        #expect(h.run(["hset", "h", "a"]) == arityError("hset"))
        #expect(h.run(["hset", "h", "a", "1", "b"]) == arityError("hset"))
        #expect(h.run(["hmset", "h", "a", "1", "b"]) == arityError("hmset"))
        #expect(h.run(["hget", "h"]) == arityError("hget"))
        #expect(h.run(["hscan", "h", "x"]) == .error("ERR invalid cursor"))
        #expect(h.run(["hscan", "nokey", "0", "bogus"]) == .array(["0", .array([])]))
        h.run(["hset", "h", "a", "1"])
        #expect(h.run(["hscan", "h", "0", "bogus"]) == .error("ERR syntax error"))
        #expect(h.run(["hscan", "h", "0", "count", "0"]) == .error("ERR syntax error"))
        #expect(h.run(["hscan", "h", "0", "count", "x"]) == .error("ERR value is not an integer or out of range"))
    }

    @Test func incrBy() {
        #expect(h.run(["hincrby", "h", "n", "5"]) == 5)
        #expect(h.run(["hincrby", "h", "n", "-7"]) == -2)
        #expect(h.run(["hincrby", "h", "n", "x"]) == .error("ERR value is not an integer or out of range"))
        h.run(["hset", "h", "s", "abc", "big", "9223372036854775807", "sp", " 1"])
        #expect(h.run(["hincrby", "h", "s", "1"]) == .error("ERR hash value is not an integer"))
        #expect(h.run(["hincrby", "h", "sp", "1"]) == .error("ERR hash value is not an integer"))
        #expect(h.run(["hincrby", "h", "big", "1"]) == .error("ERR increment or decrement would overflow"))
        #expect(h.run(["hincrbyfloat", "h", "f", "1.5"]) == "1.5")
        #expect(h.run(["hincrbyfloat", "h", "f", "0.1"]) == "1.6")
        #expect(h.run(["hincrbyfloat", "h", "n", "2.0e1"]) == "18")
        #expect(h.run(["hincrbyfloat", "h", "s", "1"]) == .error("ERR hash value is not a float"))
        #expect(h.run(["hincrbyfloat", "h", "f", "abc"]) == .error("ERR value is not a valid float"))
        #expect(h.run(["hincrbyfloat", "h", "f", "inf"]) == .error("ERR value is NaN or Infinity"))
        #expect(h.run(["hincrbyfloat", "nokey", "f", "x"]) == .error("ERR value is not a valid float"))
        #expect(h.run(["exists", "nokey"]) == 0)
    }

    @Test func randomField() {
        #expect(h.run(["hrandfield", "nokey"]) == .null)
        #expect(h.run(["hrandfield", "nokey", "3"]) == .array([]))
        h.run(["hset", "h", "a", "1", "b", "2", "c", "3"])
        let one = h.run(["hrandfield", "h"])
        #expect(["a", "b", "c"].map { RV.bulk($0) }.contains(one))
        #expect(h.run(["hrandfield", "h", "0"]) == .array([]))
        #expect(h.run(["hrandfield", "h", "10"]) == .strings(["a", "b", "c"]))
        #expect(h.run(["hrandfield", "h", "2"]).items?.count == 2)
        let distinct = h.run(["hrandfield", "h", "2"]).items!.compactMap(\.string)
        #expect(Set(distinct).count == 2)
        #expect(h.run(["hrandfield", "h", "-7"]).items?.count == 7)
        let pairs = h.run(["hrandfield", "h", "-4", "withvalues"]).items!
        #expect(pairs.count == 8)
        for i in stride(from: 0, to: 8, by: 2) {
            #expect(h.run(["hget", "h", pairs[i].string!]) == pairs[i + 1])
        }
        #expect(h.run(["hrandfield", "h", "1", "bogus"]) == .error("ERR syntax error"))
        #expect(h.run(["hrandfield", "h", "x"]) == .error("ERR value is not an integer or out of range"))
        #expect(h.run(["hrandfield", "h", "-9223372036854775808"]) == .error(
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"))
        #expect(h.run(["hrandfield", "h", "-5000000000000000000", "withvalues"]) == .error("ERR value is out of range"))
    }

    @Test func encodingSwitchOverAndScan() {
        for i in 0..<512 { #expect(h.run(["hset", "big", "f\(i)", "v\(i)"]) == 1) }
        #expect(h.run(["object", "encoding", "big"]) == "listpack")
        #expect(h.run(["hset", "big", "f512", "v512"]) == 1)
        #expect(h.run(["object", "encoding", "big"]) == "hashtable")
        // HSCAN walks the table with a cursor and sees every field.
        var cursor = "0"
        var seen: [String: String] = [:]
        repeat {
            let reply = h.run(["hscan", "big", cursor, "count", "7"]).items!
            cursor = reply[0].string!
            let items = reply[1].items!
            for i in stride(from: 0, to: items.count, by: 2) { seen[items[i].string!] = items[i + 1].string! }
        } while cursor != "0"
        #expect(seen.count == 513)
        #expect(seen["f77"] == "v77")
        for i in 0..<513 { h.run(["hdel", "big", "f\(i)"]) }
        #expect(h.run(["exists", "big"]) == 0)
        // A long value converts at once; HSETNX on an existing field changes nothing.
        h.run(["hset", "lv", "a", String(repeating: "x", count: 64)])
        #expect(h.run(["object", "encoding", "lv"]) == "listpack")
        #expect(h.run(["hsetnx", "lv", "a", String(repeating: "x", count: 65)]) == 0)
        #expect(h.run(["object", "encoding", "lv"]) == "listpack")
        #expect(h.run(["hsetnx", "lv", "b", String(repeating: "x", count: 65)]) == 1)
        #expect(h.run(["object", "encoding", "lv"]) == "hashtable")
        // MATCH on a listpack returns every match in one call.
        h.run(["hset", "m", "foo", "1", "bar", "2", "food", "3"])
        #expect(h.run(["hscan", "m", "0", "match", "foo*"]) == .array(["0", .strings(["foo", "1", "food", "3"])]))
    }
}
