@testable import DamselflyPersistence

/// Keys covering every type and every encoding choice (listpack vs. quicklist nodes,
/// intset vs. hashtable, listpack vs. skiplist), TTLs, and three databases.
enum Dataset {
    static func entries(nowMs: Int64) -> [RDBEntry] {
        let ttl = nowMs + 3_600_000
        var out = [RDBEntry]()
        func add(_ db: Int, _ key: String, _ value: RDBValue, expire: Bool = false) {
            out.append(RDBEntry(database: db, key: b(key), value: value, expireAtMs: expire ? ttl + Int64(out.count) : nil))
        }
        func strings(_ s: [String]) -> [[UInt8]] { s.map(b) }

        add(0, "s:raw", .string(b("hello world")))
        add(0, "s:int8", .string(b("-100")))
        add(0, "s:int16", .string(b("30000")))
        add(0, "s:int32", .string(b("-2000000000")))
        add(0, "s:int64", .string(b("9223372036854775807")))
        add(0, "s:leading-zero", .string(b("0123")))
        add(0, "s:empty", .string([]))
        add(0, "s:binary", .string([0, 255, 13, 10, 1, 2, 0x80]))
        add(0, "s:compressible", .string(b(String(repeating: "abcdefgh", count: 2000))))
        add(0, "s:ttl", .string(b("bye")), expire: true)

        add(0, "l:small", .list(strings([
            "a", "1", "-3", "4095", "-4096", "70000", "-9000000", "5000000000", "-0", "007",
            String(repeating: "x", count: 100), String(repeating: "y", count: 5000),
        ])), expire: true)
        add(0, "l:large", .list((0..<20000).map { b($0 % 3 == 0 ? String($0 * 7919) : "item-\($0)") }))
        add(0, "l:huge-items", .list((0..<3).map { b(String(repeating: "\($0)", count: 10_000)) }))

        add(0, "set:intset16", .set(strings(["1", "2", "3", "-7", "300"])))
        add(0, "set:intset64", .set(strings(["1", "5000000000", "-5000000000"])))
        add(0, "set:strings", .set(strings(["apple", "banana", "42", "cherry"])))
        add(0, "set:bigints", .set((0..<600).map { b(String($0 * 3)) }))

        add(0, "h:small", .hash([(b("f1"), b("v1")), (b("n"), b("12345")), (b("neg"), b("-1"))]), expire: true)
        add(0, "h:large", .hash((0..<600).map { (b("field:\($0)"), b("value-\($0 * 13)")) }))
        add(0, "h:long-value", .hash([(b("f"), b(String(repeating: "v", count: 100))), (b("g"), b("1"))]))

        add(0, "z:small", .zset([
            (b("a"), 1), (b("b"), 2.5), (b("c"), -.infinity), (b("d"), .infinity),
            (b("e"), 1e20), (b("f"), -0.125), (b("g"), 3), (b("h"), 0.1),
        ]))
        add(0, "z:large", .zset((0..<200).map { (b("member:\($0)"), Double($0) * 1.5 - 50) }), expire: true)
        add(0, "z:long-member", .zset([(b(String(repeating: "m", count: 100)), 1), (b("x"), 2)]))

        add(1, "s:raw", .string(b("in db1")))
        add(1, "set:x", .set(strings(["p", "q"])), expire: true)
        add(5, "h:db5", .hash([(b("a"), b("b"))]))
        add(5, "l:db5", .list(strings(["only"])))
        return out
    }

    /// The Redis 7.0 `OBJECT ENCODING` each collection key should load with.
    static let expectedEncodings: [String: String] = [
        "set:intset16": "intset", "set:intset64": "intset", "set:strings": "hashtable",
        "set:bigints": "hashtable", "h:small": "listpack", "h:large": "hashtable",
        "h:long-value": "hashtable", "z:small": "listpack", "z:large": "skiplist",
        "z:long-member": "skiplist", "l:small": "quicklist", "l:large": "quicklist",
    ]

    /// Writes `entries` as an RDB file, draining the writer in slices as a shard would.
    static func rdb(_ entries: [RDBEntry], extraAux: [(String, String)] = [], sliceBytes: Int = 4096) -> [UInt8] {
        var w = RDBWriter()
        var file = [UInt8]()
        w.writeHeader(aux: RDBWriter.standardAux(usedMemory: 1 << 20) + extraAux)
        for db in Set(entries.map(\.database)).sorted() {
            let inDB = entries.filter { $0.database == db }
            w.beginDatabase(db, keys: inDB.count, expires: inDB.filter { $0.expireAtMs != nil }.count)
            for e in inDB {
                w.write(e)
                if w.bufferedCount >= sliceBytes { file += w.takeBytes() }
            }
        }
        file += w.finish()
        return file
    }
}
