import Testing
@testable import DamselflyStorage

/// Keys inline in the slab's entries (up to `Entry.inlineKeyCapacity` bytes) and in their own
/// heap block beyond: lookup, key access, slot reuse, rehashing and memory accounting across the
/// boundary.
@Suite struct EntryTests {
    /// Inserts raw key bytes with a string value, optionally under a forced hash (collisions).
    @discardableResult
    static func insert(_ db: Database, _ key: [UInt8], value: String = "v", hash: UInt64? = nil, expireAtMs: Int64? = nil) -> EntryIndex {
        key.withUnsafeBytes { k in
            withBytes(value) { v in
                db.insert(k, hash: hash ?? KeyHash.hash(k), value: .string(v), expireAtMs: expireAtMs)
            }
        }
    }

    static func find(_ db: Database, _ key: [UInt8], hash: UInt64? = nil, nowMs: Int64 = 0) -> EntryIndex? {
        key.withUnsafeBytes { db.find($0, hash: hash ?? KeyHash.hash($0), nowMs: nowMs) }
    }

    static let capacity = Entry.inlineKeyCapacity

    /// Keys around the boundary: empty, 1, N-1, N, N+1, long, and binary ones with zero bytes.
    static var boundaryKeys: [[UInt8]] {
        let n = capacity
        return [
            [], [0], [0, 0], [UInt8(ascii: "a")],
            Array(repeating: UInt8(ascii: "x"), count: n - 1),
            Array(repeating: UInt8(ascii: "x"), count: n),
            Array(repeating: UInt8(ascii: "x"), count: n + 1),
            Array(repeating: 0, count: n), Array(repeating: 0, count: n + 1),
            (0..<n).map { UInt8(truncatingIfNeeded: $0 * 37) }, (0...n).map { UInt8(truncatingIfNeeded: $0 * 37) },
            Array(repeating: 0xFF, count: n), Array(repeating: 0xFF, count: 300),
            Array("key:000000012345".utf8), Array("queue:default".utf8),
            Array(repeating: UInt8(ascii: "k"), count: 70_000),
        ]
    }

    /// The layout the doc comment of `Entry` promises: one cache line, 26 inline key bytes.
    @Test func layoutIsOneCacheLine() {
        #expect(MemoryLayout<Entry>.size == 64)
        #expect(MemoryLayout<Entry>.stride == 64)
        #expect(MemoryLayout<Entry>.offset(of: \Entry.keyBytes) == 26)
        #expect(MemoryLayout<Entry>.offset(of: \Entry.next) == 52)
        #expect(EntryTests.capacity == 26)
        let db = Database()
        EntryTests.insert(db, [1])
        #expect(UInt(bitPattern: db.entries.base) % 64 == 0)
    }

    @Test func boundaryKeysRoundTrip() {
        let db = Database()
        let keys = EntryTests.boundaryKeys
        var indexes: [EntryIndex] = []
        for (i, key) in keys.enumerated() {
            #expect(EntryTests.find(db, key) == nil)
            indexes.append(EntryTests.insert(db, key, value: "value\(i)"))
        }
        #expect(db.count == keys.count)
        for (i, key) in keys.enumerated() {
            #expect(EntryTests.find(db, key) == indexes[i])
            #expect(db.key(at: indexes[i]) == key)
            #expect(db.withKey(at: indexes[i]) { Array($0) } == key)
            #expect(db.valueString(at: indexes[i]) == "value\(i)")
            #expect(db.entries[Int(indexes[i])].keyLength == (key.count <= EntryTests.capacity ? UInt8(key.count) : Entry.heapKey))
        }
        // A key that is a prefix or an extension of a stored one is a different key.
        #expect(EntryTests.find(db, [0, 0, 0]) == nil)
        #expect(EntryTests.find(db, Array(repeating: UInt8(ascii: "x"), count: EntryTests.capacity + 2)) == nil)
        for key in keys {
            #expect(key.withUnsafeBytes { db.remove($0, hash: KeyHash.hash($0), nowMs: 0) })
            #expect(EntryTests.find(db, key) == nil)
        }
        #expect(db.count == 0)
        #expect(db.dataBytes == 0)
    }

    /// Under one hash, keys that differ only in length (or in one byte past the inline part)
    /// are told apart by length and bytes.
    @Test func collidingHashesCompareLengthAndBytes() {
        let db = Database()
        let keys: [[UInt8]] = [
            [], [0], [0, 0], Array("ab".utf8), Array("ab".utf8) + [0],
            Array(repeating: 7, count: EntryTests.capacity), Array(repeating: 7, count: EntryTests.capacity + 1),
            Array(repeating: 7, count: 40) + [1], Array(repeating: 7, count: 40) + [2],
        ]
        let indexes = keys.map { EntryTests.insert(db, $0, hash: 12_345) }
        for (key, index) in zip(keys, indexes) {
            #expect(EntryTests.find(db, key, hash: 12_345) == index)
        }
        #expect(EntryTests.find(db, Array("a".utf8), hash: 12_345) == nil)
        #expect(EntryTests.find(db, Array(repeating: 7, count: 40) + [3], hash: 12_345) == nil)
        for key in keys.reversed() {
            #expect(key.withUnsafeBytes { db.remove($0, hash: 12_345, nowMs: 0) })
            #expect(EntryTests.find(db, key, hash: 12_345) == nil)
        }
        #expect(db.count == 0)
    }

    /// A freed slot takes a key of the other kind: a short key where a long one was and back.
    @Test func freedSlotsTakeEitherKind() {
        let db = Database()
        let keep = EntryTests.insert(db, Array("keep".utf8))
        let long = Array(repeating: UInt8(ascii: "L"), count: 100)
        let short = Array("s".utf8)
        let a = EntryTests.insert(db, long)
        db.remove(at: a)
        let b = EntryTests.insert(db, short)
        #expect(b == a)
        #expect(db.key(at: b) == short)
        #expect(EntryTests.find(db, long) == nil)
        db.remove(at: b)
        let c = EntryTests.insert(db, long + [1])
        #expect(c == a)
        #expect(db.key(at: c) == long + [1])
        #expect(EntryTests.find(db, short) == nil)
        #expect(db.key(at: keep) == Array("keep".utf8))
    }

    /// Growing and shrinking the table with short and long keys mixed keeps every key findable,
    /// and the accounted heap bytes are exactly the long keys' chunks (short keys cost none).
    @Test func rehashWithMixedKeys() {
        let db = Database()
        func key(_ i: Int) -> [UInt8] {
            let base = Array("key:\(i)".utf8)
            return i % 3 == 0 ? base + Array(repeating: UInt8(ascii: "-"), count: 30) : base
        }
        var indexes: [EntryIndex] = []
        for i in 0..<5_000 { indexes.append(EntryTests.insert(db, key(i), value: "\(i)x")) }
        #expect(db.bucketCount >= 4_096)
        // Values are charged at their arrays' real capacities (malloc may round), so they are
        // read back; the keys' part is the layout's.
        func expectedData(_ live: some Sequence<Int>) -> Int {
            live.reduce(0) { sum, i in
                sum + Entry.keyHeapBytes(length: key(i).count) + db.value(at: indexes[i]).memoryUsage
            }
        }
        #expect(db.dataBytes == expectedData(0..<5_000))
        for i in 0..<5_000 where i % 10 != 0 { #expect(EntryTests.find(db, key(i)) == indexes[i]); db.remove(at: indexes[i]) }
        #expect(db.count == 500)
        #expect(db.bucketCount == 2_048)  // shrunk from 8,192 (load under 1/8), 500 keys
        for i in stride(from: 0, to: 5_000, by: 10) {
            #expect(EntryTests.find(db, key(i)) == indexes[i])
            #expect(db.key(at: indexes[i]) == key(i))
        }
        #expect(db.dataBytes == expectedData(stride(from: 0, to: 5_000, by: 10)))
        for i in stride(from: 0, to: 5_000, by: 10) { db.remove(at: indexes[i]) }
        #expect(db.dataBytes == 0)
    }

    /// MEMORY USAGE and `usedBytes` follow the layout: an inline key adds nothing beyond its slot,
    /// a long key adds its malloc chunk.
    @Test func memoryAccountingFollowsTheLayout() {
        let db = Database()
        let empty = db.usedBytes
        let slot = MemoryLayout<Entry>.stride + Database.linkBytes
        let shortKey = Array(repeating: UInt8(ascii: "s"), count: EntryTests.capacity)
        let s = shortKey.withUnsafeBytes { db.insert($0, hash: KeyHash.hash($0), value: .int(1), expireAtMs: nil) }
        #expect(db.memoryUsage(at: s) == slot)
        let longKey = shortKey + [UInt8(ascii: "s")]
        let l = longKey.withUnsafeBytes { db.insert($0, hash: KeyHash.hash($0), value: .int(1), expireAtMs: nil) }
        #expect(Entry.keyHeapBytes(length: longKey.count) == 48)
        #expect(db.memoryUsage(at: l) == slot + 48)
        #expect(db.dataBytes == 48)
        #expect(db.usedBytes == Database.objectOverhead + db.entries.capacity * 64
            + (db.buckets.capacity + db.ttlIndex.capacity) * Database.linkBytes + 48)
        db.setExpireTime(1_000, at: l)
        #expect(db.memoryUsage(at: l) == slot + Database.linkBytes + 48)
        db.remove(at: l)
        #expect(db.dataBytes == 0)
        db.remove(at: s)
        // The emptied slab keeps its first block (16 slots); the TTL index keeps its capacity.
        #expect(db.usedBytes <= empty + 16 * 64 + db.ttlIndex.capacity * Database.linkBytes)
        for i in 0..<2_000 { EntryTests.insert(db, Array(repeating: UInt8(truncatingIfNeeded: i), count: 20 + i % 20) + [UInt8(i >> 8)]) }
        db.removeAll()
        #expect(db.usedBytes == empty)
        #expect(db.count == 0)
        EntryTests.insert(db, longKey)
        #expect(EntryTests.find(db, longKey) != nil)
    }

    /// Expiry hands the hook and the notifier the right key, whichever way it is stored.
    @Test func expiryReportsInlineAndHeapKeys() {
        let db = Database()
        var expired: [[UInt8]] = []
        db.expiryHook = { key, hash in
            expired.append(key)
            #expect(hash == key.withUnsafeBytes { KeyHash.hash($0) })
        }
        let short = Array("short".utf8)
        let long = Array(repeating: UInt8(ascii: "q"), count: 64)
        EntryTests.insert(db, short, expireAtMs: 10)
        EntryTests.insert(db, long, expireAtMs: 10)
        #expect(EntryTests.find(db, short, nowMs: 20) == nil)
        #expect(db.activeExpire(nowMs: 20) == 1)
        #expect(expired == [short, long])
        #expect(db.count == 0)
        #expect(db.expiredKeys == 2)
    }
}
