/// The keyspace of one shard: `databaseCount` databases (default 16, `--dbnum`).
///
/// Every shard thread owns one; a key of database n lives in database n of the shard its hash
/// picks, so the databases of one shard hold only that shard's part of each logical database.
public final class Keyspace {
    public private(set) var databases: [Database]

    /// Databases whose ``Database/usedBytes`` or ``Database/expiredKeys`` may have changed
    /// since their owner last read them: bit i for database i, bit 63 for any from 63 up. The
    /// databases set their bit themselves; the owning shard reads and clears the word
    /// (`Shard.publishTouched`). A pointer, so that a database reaches it without holding
    /// its keyspace.
    public let changedDatabases: UnsafeMutablePointer<UInt64>

    /// The bit of database `index` in ``changedDatabases``.
    @inlinable
    public static func changeBit(_ index: Int) -> UInt64 {
        index < 63 ? 1 << UInt64(index) : 1 << 63
    }

    public init(databaseCount: Int = 16, events: KeyspaceEvents? = nil) {
        precondition(databaseCount > 0, "a keyspace needs at least one database")
        databases = (0..<databaseCount).map { _ in Database() }
        changedDatabases = .allocate(capacity: 1)
        changedDatabases.initialize(to: 0)
        for (i, db) in databases.enumerated() {
            db.notifyIndex = i
            db.notifier = events
            db.changeMask = changedDatabases
            db.changeBit = Keyspace.changeBit(i)
        }
    }

    deinit {
        // A database that outlives its keyspace must not write to the freed word.
        for db in databases { db.changeMask = nil }
        changedDatabases.deallocate()
    }

    /// Sets the keyspace notification classes of every database (on the owning shard's thread).
    public func setNotifyFlags(_ flags: Int) {
        for db in databases { db.notifyFlags = flags }
    }

    @inlinable
    public var databaseCount: Int { databases.count }

    /// CLIENT PAUSE's hold, shared by every database (set once, before the shard runs).
    public private(set) var expiryHold: ExpiryHold?

    public func setExpiryHold(_ hold: ExpiryHold) {
        expiryHold = hold
        for db in databases { db.expiryHold = hold }
    }

    /// SWAPDB: databases `a` and `b` trade places (their keys, TTLs and
    /// accounting go with them).
    public func swapDatabases(_ a: Int, _ b: Int) {
        databases.swapAt(a, b)
        databases[a].notifyIndex = a
        databases[b].notifyIndex = b
        databases[a].changeBit = Keyspace.changeBit(a)
        databases[b].changeBit = Keyspace.changeBit(b)
        databases[a].accountingChanged()
        databases[b].accountingChanged()
    }

    /// Accounted bytes of all databases.
    public var usedBytes: Int {
        var total = 0
        for db in databases { total += db.usedBytes }
        return total
    }

    /// Keys in all databases.
    public func totalKeys() -> Int {
        var total = 0
        for db in databases { total += db.count }
        return total
    }

    /// Keys with a TTL in all databases.
    public func totalExpires() -> Int {
        var total = 0
        for db in databases { total += db.expiresCount }
        return total
    }

    /// Keys removed by expiry in all databases (INFO expired_keys).
    public func totalExpiredKeys() -> Int {
        var total = 0
        for db in databases { total += db.expiredKeys }
        return total
    }

    /// Runs active expiry on every database that has keys with a TTL; returns how many were deleted.
    public func activeExpire(nowMs: Int64, maxSamples: Int = 20) -> Int {
        var total = 0
        for db in databases where db.expiresCount > 0 {
            total += db.activeExpire(nowMs: nowMs, maxSamples: maxSamples)
        }
        return total
    }
}
