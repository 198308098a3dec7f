import Testing
@testable import DamselflyStorage

@Suite struct DatabaseTests {
    @Test func insertFindRemove() {
        let db = Database()
        let a = db.insert("a", "1")
        #expect(db.count == 1)
        #expect(db.find("a") == a)
        #expect(db.find("b") == nil)
        #expect(db.valueString(at: a) == "1")
        #expect(db.keyString(at: a) == "a")
        #expect(db.remove("a"))
        #expect(!db.remove("a"))
        #expect(db.count == 0)
        #expect(db.find("a") == nil)
    }

    /// The look-ahead's stages read the table only: on an empty table, on free
    /// slots, on every kind of value (an `.int`'s number is not an address)
    /// and on hashes that are absent or share a bucket, they leave every key
    /// and value as it was, and reach nothing out of bounds.
    @Test func prefetchStagesChangeNothing() {
        let db = Database()
        func stages(_ key: String) {
            let hash = withBytes(key) { KeyHash.hash($0) }
            db.withBucketTable { $0.prefetchBucket(hash: hash) }
            [hash].withUnsafeBufferPointer { db.prefetchEntriesAndValues($0) }
        }
        stages("nothing yet")
        var keys: [String] = []
        for i in 0..<500 {
            let key = "k\(i)"
            keys.append(key)
            // Integers, short and long strings.
            db.insert(key, i % 3 == 0 ? "\(i)" : String(repeating: "v", count: i % 3 == 1 ? 8 : 200))
        }
        for i in stride(from: 0, to: 500, by: 7) { db.remove("k\(i)") }  // free slots in chains
        for key in keys + (0..<500).map({ "absent\($0)" }) { stages(key) }
        // A whole batch at once, as a connection's look-ahead gives it.
        let hashes = keys.map { key in withBytes(key) { KeyHash.hash($0) } }
        hashes.withUnsafeBufferPointer { db.prefetchEntriesAndValues($0) }
        #expect(Entry.valueOffset == 16)  // after the hash and the expiry time
        stages("")
        for (i, key) in keys.enumerated() {
            if i % 7 == 0 {
                #expect(db.find(key) == nil)
                continue
            }
            guard let found = db.find(key) else {
                Issue.record("\(key) lost")
                continue
            }
            #expect(db.valueString(at: found) == (i % 3 == 0 ? "\(i)" : String(repeating: "v", count: i % 3 == 1 ? 8 : 200)))
        }
    }

    @Test func randomOperationsAgreeWithDictionary() {
        let db = Database()
        var reference: [String: (value: String, index: EntryIndex)] = [:]
        var rng = SplitMix(state: 42)
        for step in 0..<100_000 {
            let key = "k\(Int.random(in: 0..<30_000, using: &rng))"
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<6:
                if let existing = reference[key] {
                    #expect(db.find(key) == existing.index)
                    let v = "v\(step)"
                    withBytes(v) { db.setValue(.string($0), at: existing.index) }
                    reference[key] = (v, existing.index)
                } else {
                    #expect(db.find(key) == nil)
                    let v = "\(step)"
                    reference[key] = (v, db.insert(key, v))
                }
            case 6..<9:
                #expect(db.remove(key) == (reference.removeValue(forKey: key) != nil))
            default:
                let found = db.find(key)
                #expect(found == reference[key]?.index)
            }
        }
        #expect(db.count == reference.count)
        for (key, entry) in reference {
            #expect(db.find(key) == entry.index)
            #expect(db.valueString(at: entry.index) == entry.value)
        }
        var seen = 0
        db.forEach(nowMs: 0) { _ in seen += 1 }
        #expect(seen == reference.count)
        // The table respects its load bounds.
        #expect(db.count <= db.bucketCount && db.count * 8 >= db.bucketCount / 2)
    }

    @Test func indexesStableAcrossGrowthAndShrink() {
        let db = Database()
        let first = db.insert("first", "x")
        var indexes: [EntryIndex] = []
        for i in 0..<100_000 { indexes.append(db.insert("key:\(i)", "v\(i)")) }
        #expect(db.bucketCount >= 100_000)
        #expect(db.find("first") == first)
        for i in stride(from: 0, to: 100_000, by: 1) where i % 100 != 0 { db.remove("key:\(i)") }
        #expect(db.count == 1_001)
        #expect(db.bucketCount < 16_384)
        #expect(db.find("first") == first)
        for i in stride(from: 0, to: 100_000, by: 100) {
            #expect(db.find("key:\(i)") == indexes[i])
            #expect(db.valueString(at: indexes[i]) == "v\(i)")
        }
    }

    func scanAll(_ db: Database, cursor: UInt64, count: Int) -> (UInt64, [String]) {
        var keys: [String] = []
        let next = db.scan(cursor: cursor, count: count, nowMs: 0) { keys.append(db.keyString(at: $0)) }
        return (next, keys)
    }

    @Test func scanReturnsEveryKeyOfAStableTable() {
        let db = Database()
        for i in 0..<5_000 { db.insert("key:\(i)", "v") }
        var cursor: UInt64 = 0
        var seen = Set<String>()
        var calls = 0
        repeat {
            let (next, keys) = scanAll(db, cursor: cursor, count: 10)
            seen.formUnion(keys)
            cursor = next
            calls += 1
        } while cursor != 0
        #expect(seen.count == 5_000)
        #expect(calls > 100)
    }

    @Test func scanSurvivesGrowthAndShrink() {
        let db = Database()
        // Keys that exist for the whole scan, and keys that will be deleted to force shrinking.
        for i in 0..<2_000 { db.insert("stable:\(i)", "v") }
        for i in 0..<30_000 { db.insert("doomed:\(i)", "v") }
        var cursor: UInt64 = 0
        var seen = Set<String>()
        var call = 0
        var grown = 0
        var doomed = 0
        var sizes = Set<Int>()
        repeat {
            let (next, keys) = scanAll(db, cursor: cursor, count: 20)
            seen.formUnion(keys)
            cursor = next
            call += 1
            sizes.insert(db.bucketCount)
            switch call % 6 {
            case 1:
                // Shrink: delete many of the doomed keys.
                for _ in 0..<4_000 where doomed < 30_000 {
                    db.remove("doomed:\(doomed)")
                    doomed += 1
                }
            case 3:
                // Grow: insert enough new keys to double the table at least once.
                for _ in 0..<12_000 {
                    db.insert("grown:\(grown)", "v")
                    grown += 1
                }
            case 5:
                // Shrink again: remove every grown key.
                while grown > 0 {
                    grown -= 1
                    db.remove("grown:\(grown)")
                }
            default:
                break
            }
        } while cursor != 0
        #expect(sizes.count >= 3, "table size changed during the scan: \(sizes.sorted())")
        for i in 0..<2_000 {
            #expect(seen.contains("stable:\(i)"), "missing stable:\(i)")
        }
    }

    @Test func scanSkipsExpiredKeysAndStopsOnEmpty() {
        let db = Database()
        #expect(db.scan(cursor: 0, count: 10, nowMs: 0) { _ in } == 0)
        db.insert("live", "v")
        db.insert("dead", "v", expireAtMs: 100)
        var keys: [String] = []
        var cursor: UInt64 = 0
        repeat {
            cursor = db.scan(cursor: cursor, count: 1, nowMs: 200) { keys.append(db.keyString(at: $0)) }
        } while cursor != 0
        #expect(keys == ["live"])
    }

    @Test func lazyExpiry() {
        let db = Database()
        let k = db.insert("k", "v", expireAtMs: 1_000)
        #expect(db.expiresCount == 1)
        #expect(db.expireTime(at: k) == 1_000)
        #expect(db.find("k", nowMs: 999) == k)
        #expect(db.expiredKeys == 0)
        #expect(db.find("k", nowMs: 1_000) == nil)
        #expect(db.expiredKeys == 1)
        #expect(db.count == 0)
        #expect(db.expiresCount == 0)
        // DEL of an expired key reports absent but still counts as expired.
        db.insert("j", "v", expireAtMs: 10)
        #expect(!db.remove("j", nowMs: 20))
        #expect(db.expiredKeys == 2)
        db.removeAll()
        #expect(db.expiredKeys == 2)
    }

    /// CLIENT PAUSE's hold: an expired key reads as missing but stays, active expiry
    /// deletes nothing, a write over it replaces it; after the hold both delete again.
    /// A one-database keyspace with an expiry hold (not holding yet) and `expiredKeys` expired at 10 ms.
    func heldKeyspace(expiredKeys: [String]) -> (Keyspace, ExpiryHold) {
        let ks = Keyspace(databaseCount: 1)
        let hold = ExpiryHold()
        ks.setExpiryHold(hold)
        for key in expiredKeys { ks.databases[0].insert(key, "v", expireAtMs: 10) }
        return (ks, hold)
    }

    @Test func expiryHoldKeepsExpiredKeys() {
        let (ks, hold) = heldKeyspace(expiredKeys: ["a", "b", "c"])
        let db = ks.databases[0]
        hold.hold(untilMs: 500)
        #expect(db.find("a", nowMs: 100) == nil)
        #expect(ks.activeExpire(nowMs: 100) == 0)
        #expect(db.randomEntry(nowMs: 100) == nil)  // only expired keys: none, and no spin
        #expect(db.count == 3 && db.expiredKeys == 0)
        // A write the pause lets through replaces the expired key rather than duplicating it.
        db.insert("c", "new")
        #expect(db.count == 3 && db.expiredKeys == 1)
        #expect(db.find("c", nowMs: 100).map { db.valueString(at: $0) } == "new")
        // Past the hold's deadline (or released) expiry goes on.
        #expect(db.find("a", nowMs: 600) == nil)
        #expect(db.expiredKeys == 2)
        hold.hold(untilMs: 0)
        #expect(ks.activeExpire(nowMs: 100) == 1)
        #expect(db.count == 1)
    }

    /// A replica's hold (no deadline): expired keys read as missing and stay until
    /// a DEL (its master's) removes them, reported as absent and counted as expired.
    @Test func replicaHoldKeepsExpiredKeysUntilDel() {
        let (ks, hold) = heldKeyspace(expiredKeys: ["a", "b"])
        let db = ks.databases[0]
        hold.holdForReplica(true)
        #expect(db.find("a", nowMs: 1_000_000) == nil)
        #expect(ks.activeExpire(nowMs: 1_000_000) == 0)
        #expect(db.count == 2 && db.expiredKeys == 0)
        #expect(!db.remove("a", nowMs: 1_000_000))
        #expect(db.count == 1 && db.expiredKeys == 1)
        hold.holdForReplica(false)
        #expect(ks.activeExpire(nowMs: 1_000_000) == 1)
        #expect(db.count == 0)
    }

    @Test func expiresCountFollowsTTLChanges() {
        let db = Database()
        let a = db.insert("a", "1")
        let b = db.insert("b", "2", expireAtMs: 5_000)
        let c = db.insert("c", "3")
        #expect(db.expiresCount == 1)
        db.setExpireTime(6_000, at: a)
        #expect(db.expiresCount == 2)
        db.setExpireTime(7_000, at: a)
        #expect(db.expiresCount == 2)
        #expect(db.expireTime(at: a) == 7_000)
        db.setExpireTime(nil, at: b)
        #expect(db.expiresCount == 1)
        #expect(db.expireTime(at: b) == nil)
        db.setExpireTime(nil, at: c)
        #expect(db.expiresCount == 1)
        db.remove(at: a)
        #expect(db.expiresCount == 0)
        db.setExpireTime(1, at: c)
        #expect(db.expiresCount == 1)
        db.removeAll()
        #expect(db.expiresCount == 0)
        #expect(db.count == 0)
    }

    @Test func activeExpiryDeletesOnlyExpiredKeys() {
        let db = Database()
        for i in 0..<1_000 { db.insert("expired:\(i)", "v", expireAtMs: 500) }
        for i in 0..<1_000 { db.insert("future:\(i)", "v", expireAtMs: 10_000) }
        for i in 0..<1_000 { db.insert("persistent:\(i)", "v") }
        #expect(db.expiresCount == 2_000)
        #expect(db.averageTTL(nowMs: 0) == (500 + 10_000) / 2)
        var deleted = 0
        var calls = 0
        while db.expiresCount > 1_000 && calls < 10_000 {
            let n = db.activeExpire(nowMs: 1_000)
            #expect(n <= 20 * 16)
            deleted += n
            calls += 1
        }
        #expect(deleted == 1_000)
        #expect(db.expiredKeys == 1_000)
        #expect(db.count == 2_000)
        #expect(db.expiresCount == 1_000)
        #expect(db.averageTTL(nowMs: 1_000) == 9_000)
        for i in 0..<1_000 {
            #expect(db.find("future:\(i)", nowMs: 1_000) != nil)
            #expect(db.find("persistent:\(i)", nowMs: 1_000) != nil)
        }
        #expect(db.activeExpire(nowMs: 1_000) == 0)
        #expect(db.averageTTL(nowMs: 20_000) == 0)
    }

    @Test func randomEntrySkipsExpired() {
        let db = Database()
        #expect(db.randomEntry(nowMs: 0) == nil)
        for i in 0..<100 { db.insert("dead:\(i)", "v", expireAtMs: 10) }
        let live = db.insert("live", "v")
        for _ in 0..<20 { #expect(db.randomEntry(nowMs: 100) == live) }
        db.remove(at: live)
        #expect(db.randomEntry(nowMs: 100) == nil)
        #expect(db.count == 0)
        // Roughly uniform over live keys. A bucket is picked, then a key in its chain (as
        // Redis's dictGetRandomKey does): keys that share a bucket get fewer picks (two in
        // one of nine buckets: about 556 each, not 1,000), so the bounds leave room for that
        // and for chance (a bound of 500 failed in CI).
        for i in 0..<10 { db.insert("k\(i)", "v") }
        var hits = [String: Int]()
        for _ in 0..<10_000 { hits[db.keyString(at: db.randomEntry(nowMs: 0)!), default: 0] += 1 }
        #expect(hits.count == 10)
        for (_, n) in hits { #expect(n > 350 && n < 1_800) }
    }

    @Test func memoryAccounting() {
        let db = Database()
        let empty = db.usedBytes
        let k = db.insert("key", String(repeating: "x", count: 100))
        #expect(db.usedBytes > empty + 100)
        #expect(db.memoryUsage(at: k) >= 100 + 3)
        let before = db.usedBytes
        db.modifyValue(at: k) { value in
            if case .bytes(var array) = value {
                value = .int(0)
                array.append(contentsOf: [UInt8](repeating: 1, count: 1_000))
                value = .bytes(array)
            }
        }
        // Accounting follows the arrays' capacities, which malloc rounds: the
        // growth is about the 1,000 bytes appended, give or take a size class.
        #expect(db.usedBytes >= before + 900)
        #expect(db.value(at: k).stringLength == 1_100)
        db.setValue(.int(5), at: k)
        db.remove(at: k)
        #expect(db.usedBytes <= empty + 2_048)
        for i in 0..<10_000 { db.insert("k\(i)", "value-\(i)") }
        db.removeAll()
        #expect(db.usedBytes == empty)
    }

    @Test func modifyValueDoesNotCopyTheArray() {
        let db = Database()
        let k = db.insert("key", "hello world, a value long enough to be bytes")
        let before = db.value(at: k).withStringBytes { $0.baseAddress! }
        db.modifyValue(at: k) { value in
            guard case .bytes(var array) = value else { return }
            value = .int(0)  // drop the enum's reference so the array is unique
            array.reserveCapacity(0)
            array[0] = UInt8(ascii: "J")
            value = .bytes(array)
        }
        let after = db.value(at: k).withStringBytes { $0.baseAddress! }
        #expect(before == after)
        #expect(db.valueString(at: k).hasPrefix("Jello"))
    }

    @Test func accessTime() {
        let db = Database()
        _ = db.find("x", nowMs: 5_000)
        let k = db.insert("k", "v")
        #expect(db.lastAccessMs(at: k) == 5_000)
        db.touch(at: k, nowMs: 12_345)
        #expect(db.lastAccessMs(at: k) == 12_000)
    }

    @Test func keyspaceSums() {
        let ks = Keyspace(databaseCount: 4)
        #expect(ks.databases.count == 4)
        ks.databases[0].insert("a", "1")
        ks.databases[3].insert("b", "2", expireAtMs: 100)
        #expect(ks.totalKeys() == 2)
        #expect(ks.totalExpires() == 1)
        #expect(ks.usedBytes == ks.databases.reduce(0) { $0 + $1.usedBytes })
        #expect(ks.activeExpire(nowMs: 1_000) == 1)
        #expect(ks.totalKeys() == 1)
        #expect(ks.totalExpiredKeys() == 1)
    }

    /// A shard re-reads only the databases marked in `changedDatabases`, so every change to
    /// what `usedBytes` or `expiredKeys` reads must mark, and a read that changes nothing must
    /// not (that is the point: a GET publishes nothing).
    @Test func databasesMarkTheirAccountingChanges() {
        let ks = Keyspace(databaseCount: 3)
        let db = ks.databases[1]
        let bit = Keyspace.changeBit(1)
        func changed(_ body: () -> Void) -> Bool {
            ks.changedDatabases.pointee = 0
            let before = (db.usedBytes, db.expiredKeys)
            body()
            let marked = ks.changedDatabases.pointee
            #expect(marked & ~bit == 0, "only database 1 may be marked")
            // Whatever moved the figures marked the database.
            if (db.usedBytes, db.expiredKeys) != before { #expect(marked == bit) }
            return marked == bit
        }
        var a: EntryIndex = 0
        #expect(changed { a = db.insert("a", "1") })
        #expect(!changed { _ = db.find("a") })
        #expect(!changed { _ = db.find("missing") })
        #expect(!changed { _ = db.value(at: a) })
        #expect(changed { withBytes("longer value") { db.setValue(.string($0), at: a) } })
        #expect(changed { db.modifyValue(at: a) { _ in } })
        #expect(changed { db.setExpireTime(5_000, at: a) })
        #expect(!changed { _ = db.find("a", nowMs: 1_000) })
        #expect(changed { _ = db.find("a", nowMs: 10_000) })  // lazy expiry
        #expect(db.expiredKeys == 1)
        for i in 0..<100 { db.insert("k\(i)", "v") }  // grows the slab and the buckets
        #expect(changed { for i in 0..<100 { _ = db.remove("k\(i)") } })
        #expect(changed { db.insert("b", "2") })
        #expect(changed { db.removeAll() })
        // SWAPDB: the bits follow the databases' new places.
        ks.swapDatabases(0, 1)
        ks.changedDatabases.pointee = 0
        ks.databases[0].insert("c", "3")
        #expect(ks.changedDatabases.pointee == Keyspace.changeBit(0))
        // Database 63 and up share bit 63.
        #expect(Keyspace.changeBit(62) == 1 << 62)
        #expect(Keyspace.changeBit(63) == 1 << 63 && Keyspace.changeBit(100) == 1 << 63)
        // A database outside a keyspace has nowhere to report, and does not need to.
        let lone = Database()
        lone.insert("x", "y")
        #expect(lone.count == 1)
    }
}
