import DamselflyStorage

/// One shard's part of a forkless, point-in-time snapshot.
///
/// At ``begin()`` (run on the shard's thread while a global transaction holds
/// every shard, so all shards begin at the same logical moment) it records
/// which slab slots hold a key and hooks every database: from then on, any
/// access to an entry not yet written serializes its current — still
/// original — value first. ``step(budget:)`` walks the slots between
/// commands; entries created after the start are skipped (their slots were
/// free, or already written when their previous key was removed). The
/// server keeps serving throughout; no fork, no copy of the dataset.
public final class ShardSnapshot {
    private let keyspace: Keyspace
    private var pending: [[Bool]] = []
    private var cursorDatabase = 0
    private var cursorSlot = 0
    private var writer = RDBWriter()
    private var writerDatabase = -1
    public private(set) var keysWritten = 0
    public private(set) var totalKeys = 0
    public private(set) var isFinished = false
    private let nowMs: Int64
    /// Bytes a slice may buffer before it hands them to the file.
    public static let sliceBytes = 1 << 20

    public init(keyspace: Keyspace, nowMs: Int64) {
        self.keyspace = keyspace
        self.nowMs = nowMs
    }

    /// Captures the live slots and installs the hooks (on the shard's thread).
    public func begin() {
        pending = keyspace.databases.map { db in
            (0..<db.slotCount).map { db.isLive(slot: $0) }
        }
        totalKeys = pending.reduce(0) { $0 + $1.filter { $0 }.count }
        for (index, db) in keyspace.databases.enumerated() {
            db.accessHook = { [unowned self] entry in self.serialize(database: index, slot: Int(entry)) }
        }
    }

    /// Writes the entry in `slot` if it belongs to the snapshot and was not
    /// written yet.
    private func serialize(database index: Int, slot: Int) {
        guard slot < pending[index].count, pending[index][slot] else { return }
        pending[index][slot] = false
        let db = keyspace.databases[index]
        // Read through the slab directly: `lookup` would call the hook again.
        let entry = EntryIndex(slot)
        let expireAt = db.expireTime(at: entry)
        if let expireAt, expireAt <= nowMs { return }  // already expired at the start
        if writerDatabase != index {
            writer.beginDatabase(index, keys: 0, expires: 0)
            writerDatabase = index
        }
        writer.write(RDBEntry(
            database: index, key: db.key(at: entry), value: RDBConversion.rdbValue(db.value(at: entry)), expireAtMs: expireAt))
        keysWritten += 1
    }

    /// Serializes up to `budget` slots, or until about ``sliceBytes`` are
    /// buffered (a slice of big keys must not buffer the whole shard);
    /// returns the bytes produced so far (to append to the file). Sets
    /// ``isFinished`` at the end.
    public func step(budget: Int) -> [UInt8] {
        var remaining = budget
        while remaining > 0 && writer.bufferedCount < ShardSnapshot.sliceBytes && cursorDatabase < pending.count {
            let slots = pending[cursorDatabase]
            if cursorSlot >= slots.count {
                cursorDatabase += 1
                cursorSlot = 0
                continue
            }
            serialize(database: cursorDatabase, slot: cursorSlot)
            cursorSlot += 1
            remaining -= 1
        }
        if cursorDatabase >= pending.count && !isFinished {
            isFinished = true
            for db in keyspace.databases { db.accessHook = nil }
            pending = []
        }
        return takeBytes()
    }

    /// Bytes serialized by hooks since the last step (writes between steps).
    public func drain() -> [UInt8] { takeBytes() }

    /// Every chunk handed out starts with its own SELECTDB: the chunks of
    /// all shards are interleaved in one file, so the database another
    /// shard's chunk selected may precede this one.
    private func takeBytes() -> [UInt8] {
        writerDatabase = -1
        return writer.takeBytes()
    }
}
