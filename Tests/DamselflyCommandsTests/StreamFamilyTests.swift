import Foundation
import Testing
import DamselflyRESP
import DamselflyStorage
@testable import DamselflyCommands

/// ``StreamFamily`` through the real shard set (4 loops, 4 shards): Redis
/// 7.0's replies and errors, groups, and blocking reads woken by XADD.
@Suite struct StreamFamilyTests {
    let h: CommandHarness

    init() {
        h = CommandHarness()
        StreamFamily.register(h.registry)
    }

    func entry(_ id: String, _ fields: [String]) -> RV { .array([.bulk(id), .strings(fields)]) }

    @Test func addRangeDeleteTrim() {
        #expect(h.run(["xadd", "s", "1-1", "a", "1"]) == "1-1")
        #expect(h.run(["xadd", "s", "1-*", "a", "2"]) == "1-2")
        #expect(h.run(["xadd", "s", "5", "b", "3"]) == "5-0")
        #expect(h.run(["xadd", "s", "5-0", "b", "3"])
                == .error("ERR The ID specified in XADD is equal or smaller than the target stream top item"))
        #expect(h.run(["xadd", "s", "0-0", "a", "1"]) == .error("ERR The ID specified in XADD must be greater than 0-0"))
        #expect(h.run(["xadd", "s", "9-9", "a"]) == .error("ERR wrong number of arguments for 'xadd' command"))
        #expect(h.run(["xadd", "nokey", "nomkstream", "*", "a", "1"]) == .nullArray)
        #expect(h.run(["xlen", "s"]) == 3)
        #expect(h.run(["xrange", "s", "-", "+", "count", "2"]) == .array([entry("1-1", ["a", "1"]), entry("1-2", ["a", "2"])]))
        #expect(h.run(["xrevrange", "s", "+", "(1-2"]) == .array([entry("5-0", ["b", "3"])]))
        #expect(h.run(["xrange", "s", "-", "+", "count", "0"]) == .nullArray)
        #expect(h.run(["xrange", "s", "(-", "+"]) == .error("ERR Invalid stream ID specified as stream command argument"))
        #expect(h.run(["xdel", "s", "1-2", "7-7"]) == 1)
        #expect(h.run(["xtrim", "s", "maxlen", "1"]) == 1)
        #expect(h.run(["xrange", "s", "-", "+"]) == .array([entry("5-0", ["b", "3"])]))
        #expect(h.run(["type", "s"]) == .simple("stream"))
        #expect(h.run(["object", "encoding", "s"]) == "stream")
        h.run(["set", "str", "x"])
        #expect(h.run(["xadd", "str", "*", "a", "1"]) == .error("WRONGTYPE Operation against a key holding the wrong kind of value"))
    }

    /// XRANGE / XREAD / XREADGROUP encode entries straight from the nodes: byte for byte
    /// what the `Reply` tree of the same entries encodes to, in RESP2 and RESP3.
    @Test func encodedEntriesMatchReplyTree() {
        let s = StreamValue()
        for i in 1...150 {
            let fields: [[UInt8]] = i % 5 == 0 ? [Array("x".utf8), Array("\(i)".utf8)]
                : [Array("class".utf8), Array("Job".utf8), Array("jid".utf8), Array("j\(i)".utf8)]
            s.append(StreamID(UInt64(1000 + i), UInt64(i)), fields)
        }
        _ = s.delete([StreamID(1010, 10), StreamID(1101, 101)])
        for protocolVersion in [2, 3] {
            for (start, limit) in [(StreamID.zero, 0), (StreamID(1090, 0), 20), (StreamID.max, 0)] {
                var tree = ReplyBuilder(protocolVersion: protocolVersion, capacity: 64)
                StreamFamily.entriesReply(s.range(start, .max, limit: limit)).encode(into: &tree)
                var encoded = ReplyBuilder(protocolVersion: protocolVersion, capacity: 64)
                StreamFamily.encodedRange(s, start, .max, limit: limit, protocolVersion: protocolVersion).encode(into: &encoded)
                #expect(encoded.buffer == tree.buffer)
            }
        }
    }

    @Test func groupsPendingAndClaims() {
        for i in 1...5 { h.run(["xadd", "q", "\(i)-0", "n", "\(i)"]) }
        #expect(h.run(["xgroup", "create", "q", "g", "0"]) == .ok)
        #expect(h.run(["xgroup", "create", "q", "g", "0"]) == .error("BUSYGROUP Consumer Group name already exists"))
        let read = h.run(["xreadgroup", "group", "g", "alice", "count", "2", "streams", "q", ">"])
        #expect(read == .array([.array([.bulk("q"), .array([entry("1-0", ["n", "1"]), entry("2-0", ["n", "2"])])])]))
        #expect(h.run(["xpending", "q", "g"]) == .array([.int(2), .bulk("1-0"), .bulk("2-0"), .array([.strings(["alice", "2"])])]))
        #expect(h.run(["xack", "q", "g", "1-0", "1-0"]) == 1)
        #expect(h.run(["xclaim", "q", "g", "bob", "0", "2-0", "justid"]) == .array([.bulk("2-0")]))
        let auto = h.run(["xautoclaim", "q", "g", "carol", "0", "0", "count", "10", "justid"])
        #expect(auto == .array([.bulk("0-0"), .array([.bulk("2-0")]), .array([])]))
        #expect(h.run(["xgroup", "delconsumer", "q", "g", "carol"]) == 1)
        #expect(h.run(["xpending", "q", "nog"]) == .error("NOGROUP No such key 'q' or consumer group 'nog'"))
        #expect(h.run(["xreadgroup", "group", "g", "a", "streams", "q", "$"]).description.contains("meaningless"))
    }

    @Test func blockingReadIsWokenByAddOnAnotherShard() throws {
        let key = h.key(onShard: 2, prefix: "bs")
        h.run(["xgroup", "create", key, "g", "$", "mkstream"])
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var got: RV = .null
        let thread = Thread {
            got = self.h.run(["xreadgroup", "group", "g", "c", "block", "0", "streams", key, ">"], on: 0)
            done.signal()
        }
        thread.start()
        // The reader parks (nothing there yet); an XADD from another loop wakes it.
        Thread.sleep(forTimeInterval: 0.2)
        #expect(h.run(["xadd", key, "7-1", "f", "v"], on: 1) == "7-1")
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(got == .array([.array([.bulk(key), .array([entry("7-1", ["f", "v"])])])]))
        // Nothing new past the last ID: without BLOCK a null array at once.
        #expect(h.run(["xread", "streams", key, "$"]) == .nullArray)
        #expect(h.run(["xpending", key, "g"]).description.contains("7-1"))
    }
}
