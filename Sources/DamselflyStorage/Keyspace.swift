/// The keyspace of one shard: `databaseCount` databases (default 16, `--dbnum`).
///
/// Every shard thread owns one; a key of database n lives in database n of the shard its hash
/// picks, so the databases of one shard hold only that shard's part of each logical database.
public final class Keyspace {
    public private(set) var databases: [Database]

    public init(databaseCount: Int = 16, events: KeyspaceEvents? = nil) {
        precondition(databaseCount > 0, "a keyspace needs at least one database")
        databases = (0..<databaseCount).map { _ in Database() }
        for (i, db) in databases.enumerated() {
            db.notifyIndex = i
            db.notifier = events
        }
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
