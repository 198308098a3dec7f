import Foundation
import Testing
@testable import DamselflyPersistence

/// Cross-checks with the installed `redis-server` 7.0: its loader and `redis-check-rdb`
/// accept what Damselfly writes, and Damselfly reads what Redis writes (files and DUMP).
@Suite(.enabled(if: RedisTools.available, RedisTools.skipReason))
struct RedisInteropTests {
    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    @Test func redisLoadsDamselflySnapshot() throws {
        let dir = try TempDirectory()
        let entries = Dataset.entries(nowMs: Self.nowMs())
        let file = Dataset.rdb(entries, extraAux: [("damselfly-placement", "3:0,1,2")])
        let path = dir.file("damselfly.rdb")
        try Data(file).write(to: URL(fileURLWithPath: path))

        let check = try RedisTools.run(RedisTools.checkRDB!, [path], outputFile: dir.file("check.out"))
        #expect(check.status == 0, "redis-check-rdb:\n\(check.output)")

        let server = try RedisServer(directory: dir, dbfilename: "damselfly.rdb")
        let redis = try server.connect()
        for db in [0, 1, 5] {
            try redis.must("SELECT", String(db))
            let size = try redis.must("DBSIZE")
            #expect(size == .integer(Int64(entries.filter { $0.database == db }.count)), "db\(db)")
        }
        for e in entries {
            let (value, expire) = try redis.fetch(database: e.database, key: e.key)
            #expect(value.map(normalized) == normalized(e.value), "\(describe(e))")
            #expect(expire == e.expireAtMs, "\(describe(e))")
            if e.database == 0, let want = Dataset.expectedEncodings[String(decoding: e.key, as: UTF8.self)] {
                let got = try redis.must([b("OBJECT"), b("ENCODING"), e.key]).text
                #expect(got == want, "\(describe(e)): \(got ?? "nil")")
            }
        }
        #expect(!server.log.contains("empty keys skipped"))
    }

    @Test func damselflyReadsRedisSnapshot() throws {
        let dir = try TempDirectory()
        let server = try RedisServer(directory: dir)
        let redis = try server.connect()
        // Elements of 6000+ bytes go into PLAIN quicklist nodes, smaller ones into listpacks.
        try redis.must("DEBUG", "QUICKLIST-PACKED-THRESHOLD", "6000")
        let entries = Dataset.entries(nowMs: Self.nowMs())
        try redis.populate(entries)
        try redis.must("SAVE")
        let file = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir.file("dump.rdb"))))

        var reader = RDBReader(bytes: file)
        let read = try reader.readAll()
        #expect(reader.version == 10)
        #expect(reader.aux.contains { $0.0 == "redis-ver" && $0.1.hasPrefix("7.") })
        let byKey = Dictionary(uniqueKeysWithValues: read.map { ("\($0.database)/\(String(decoding: $0.key, as: UTF8.self))", $0) })
        #expect(read.count == entries.count)
        for e in entries {
            guard let r = byKey["\(e.database)/\(String(decoding: e.key, as: UTF8.self))"] else {
                Issue.record("\(describe(e)) missing from Redis's dump")
                continue
            }
            #expect(normalized(r.value) == normalized(e.value), "\(describe(e))")
            #expect(r.expireAtMs == e.expireAtMs, "\(describe(e))")
        }
        // The encodings this test is meant to cover really occurred in Redis's file:
        // LZF for the repetitive string, PLAIN quicklist nodes (themselves LZF) for the 10 KB elements.
        func after(_ key: String) -> ArraySlice<UInt8>? {
            let k = b(key)
            guard let i = (0...(file.count - k.count)).first(where: { file[$0..<($0 + k.count)].elementsEqual(k) }) else { return nil }
            return file[(i + k.count)...].prefix(3)
        }
        #expect(after("s:compressible")?.first == 0xC3)
        #expect(after("l:huge-items").map(Array.init) == [3, 1, 0xC3])  // 3 nodes, PLAIN, LZF
    }

    @Test func dumpPayloadsInterchangeWithRedis() throws {
        let dir = try TempDirectory()
        let server = try RedisServer(directory: dir)
        let redis = try server.connect()
        try redis.must("DEBUG", "QUICKLIST-PACKED-THRESHOLD", "6000")
        let entries = Dataset.entries(nowMs: Self.nowMs()).filter { $0.database == 0 }
        try redis.populate(entries)
        try redis.must("SELECT", "0")
        for e in entries {
            // Redis's DUMP → our decoder.
            guard let payload = try redis.must([b("DUMP"), e.key]).bytes else {
                Issue.record("no DUMP for \(describe(e))")
                continue
            }
            #expect(try normalized(DumpPayload.decode(payload)) == normalized(e.value), "\(describe(e))")
            // Our encoder → Redis's RESTORE.
            let copy = b("copy:") + e.key
            let restored = try redis.call([b("RESTORE"), copy, b("0"), DumpPayload.encode(e.value)])
            #expect(restored == .simple("OK"), "\(describe(e))")
            let (value, _) = try redis.fetch(database: 0, key: copy)
            #expect(value.map(normalized) == normalized(e.value), "\(describe(e))")
        }
    }

    /// Types Redis 7.0 no longer writes but still loads (ziplists, quicklist v1, the text
    /// scores of `ZSET`): built by hand here, checked by Redis's RESTORE, then decoded by us.
    @Test func olderEncodingsMatchRedis() throws {
        let dir = try TempDirectory()
        let server = try RedisServer(directory: dir)
        let redis = try server.connect()
        let mixed = ["7", "0", "12", "-100", "1000", "100000", "10000000", "10000000000", "str", "-1",
                     String(repeating: "L", count: 100), String(repeating: "P", count: 300), "after-300",
                     String(repeating: "W", count: 20000), "end"].map(b)
        var cases: [(String, [UInt8], RDBValue)] = []

        cases.append(("list-ziplist", [10] + lengthPrefixed(Ziplist.build(mixed)), .list(mixed)))
        var quicklist: [UInt8] = [14, 2]
        quicklist += lengthPrefixed(Ziplist.build(Array(mixed[0..<6])))
        quicklist += lengthPrefixed(Ziplist.build(Array(mixed[6...])))
        cases.append(("list-quicklist", quicklist, .list(mixed)))

        let hashPairs = [("f1", "v1"), ("num", "12345"), ("neg", "-7"), ("big", "10000000000")].map { (b($0.0), b($0.1)) }
        cases.append(("hash-ziplist", [13] + lengthPrefixed(Ziplist.build(hashPairs.flatMap { [$0.0, $0.1] })), .hash(hashPairs)))

        let zsetPairs: [([UInt8], Double)] = [(b("a"), -2.5), (b("b"), 0), (b("c"), 1), (b("d"), 3.25), (b("e"), 1e10)]
        cases.append(("zset-ziplist", [12] + lengthPrefixed(Ziplist.build(zsetPairs.flatMap { [$0.0, renderScore($0.1)] })), .zset(zsetPairs)))

        var textZset: [UInt8] = [3, 4]
        for (m, s) in [("inf", "\u{FE}"), ("minf", "\u{FF}"), ("half", "0.5"), ("neg", "-12")] {
            textZset += lengthPrefixed(b(m))
            if s.count == 1 { textZset.append(s.unicodeScalars.first!.value == 0xFE ? 254 : 255) } else { textZset += lengthPrefixed(b(s)) }
        }
        cases.append(("zset-text", textZset, .zset([(b("inf"), .infinity), (b("minf"), -.infinity), (b("half"), 0.5), (b("neg"), -12)])))

        var linkedList: [UInt8] = [1, 3]
        for s in ["x", "12", "y"] { linkedList += lengthPrefixed(b(s)) }
        cases.append(("list-linked", linkedList, .list([b("x"), b("12"), b("y")])))

        for (name, body, expected) in cases {
            var payload = body + [10, 0]
            let crc = CRC64.checksum(payload)
            for i in 0..<8 { payload.append(UInt8(truncatingIfNeeded: crc >> (8 * UInt64(i)))) }
            let ours = try DumpPayload.decode(payload)
            #expect(normalized(ours) == normalized(expected), "\(name)")
            let reply = try redis.call([b("RESTORE"), b(name), b("0"), payload])
            #expect(reply == .simple("OK"), "\(name): \(reply)")
            let (theirs, _) = try redis.fetch(database: 0, key: b(name))
            #expect(theirs.map(normalized) == normalized(ours), "\(name)")
        }
    }
}

func lengthPrefixed(_ s: [UInt8]) -> [UInt8] {
    var out = [UInt8]()
    RDBEncoder.appendLength(&out, s.count)
    return out + s
}

/// A test-only ziplist encoder, written from the format description independently of the
/// decoder (Redis's RESTORE validates what it builds).
enum Ziplist {
    static func build(_ items: [[UInt8]]) -> [UInt8] {
        var body = [UInt8]()
        var prevlen = 0
        var tail = 10
        for item in items {
            var entry = [UInt8]()
            if prevlen < 254 { entry.append(UInt8(prevlen)) } else { entry.append(0xFE); le(&entry, UInt64(prevlen), 4) }
            if let v = IntegerString.parse(item) {
                if v >= 0, v <= 12 { entry.append(0xF1 + UInt8(v)) }
                else if v >= -128, v <= 127 { entry.append(0xFE); le(&entry, UInt64(bitPattern: v), 1) }
                else if v >= -32768, v <= 32767 { entry.append(0xC0); le(&entry, UInt64(bitPattern: v), 2) }
                else if v >= -(1 << 23), v < (1 << 23) { entry.append(0xF0); le(&entry, UInt64(bitPattern: v), 3) }
                else if v >= Int64(Int32.min), v <= Int64(Int32.max) { entry.append(0xD0); le(&entry, UInt64(bitPattern: v), 4) }
                else { entry.append(0xE0); le(&entry, UInt64(bitPattern: v), 8) }
            } else if item.count < 64 {
                entry.append(UInt8(item.count))
                entry += item
            } else if item.count < 16384 {
                entry += [0x40 | UInt8(item.count >> 8), UInt8(item.count & 0xff)]
                entry += item
            } else {
                entry += [0x80, UInt8(item.count >> 24), UInt8((item.count >> 16) & 0xff),
                          UInt8((item.count >> 8) & 0xff), UInt8(item.count & 0xff)]
                entry += item
            }
            tail = 10 + body.count
            body += entry
            prevlen = entry.count
        }
        var out = [UInt8]()
        le(&out, UInt64(10 + body.count + 1), 4)
        le(&out, UInt64(tail), 4)
        le(&out, UInt64(items.count), 2)
        return out + body + [0xFF]
    }

    private static func le(_ out: inout [UInt8], _ v: UInt64, _ n: Int) {
        for i in 0..<n { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }
}
