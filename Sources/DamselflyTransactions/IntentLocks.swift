/// How a transaction holds a key: readers share, writers exclude.
public enum LockMode: Sendable {
    case shared
    case exclusive
}

/// A key's lock identity: its 64-bit hash mixed with its database index.
///
/// VLL locks are intents, not mutexes: they are counts that say "a scheduled
/// transaction will touch this key". Two different keys that collide on the
/// fingerprint only cause a false conflict (a wait), never a wrong result.
public typealias LockFingerprint = UInt64

@inlinable
public func lockFingerprint(keyHash: UInt64, database: Int) -> LockFingerprint {
    keyHash ^ (UInt64(truncatingIfNeeded: database) &* 0x9E37_79B9_7F4A_7C15)
}

/// The keys a transaction holds on one shard.
public struct ShardLockSet: Sendable {
    public var fingerprints: [LockFingerprint]
    public var mode: LockMode
    public init(fingerprints: [LockFingerprint], mode: LockMode) {
        self.fingerprints = fingerprints
        self.mode = mode
    }

    /// Whether the two could not be held at once: a key in both, and one of them exclusive.
    func conflicts(with other: ShardLockSet) -> Bool {
        if mode == .shared && other.mode == .shared { return false }
        for fingerprint in fingerprints where other.fingerprints.contains(fingerprint) { return true }
        return false
    }
}

/// Per-shard table of intent-lock counts (Dragonfly's `IntentLock` per key).
struct IntentLockTable {
    struct Counts {
        var shared: Int32 = 0
        var exclusive: Int32 = 0
    }

    /// A fingerprint as the table's key. It is a hash already (xxh64 mixed
    /// with the database): the table takes its bits, with the table's seed,
    /// instead of hashing them again with SipHash (some 90 instructions,
    /// five or six times per key a transaction locks and releases).
    struct Key: Hashable {
        let fingerprint: LockFingerprint
        init(_ fingerprint: LockFingerprint) { self.fingerprint = fingerprint }
        func hash(into hasher: inout Hasher) { hasher.combine(fingerprint) }
        func _rawHashValue(seed: Int) -> Int {
            Int(truncatingIfNeeded: fingerprint ^ (UInt64(truncatingIfNeeded: seed) &* 0x9E37_79B9_7F4A_7C15))
        }
    }

    private var counts: [Key: Counts] = [:]
    /// Transactions that lock the whole shard (FLUSHALL, FLUSHDB).
    private(set) var globalHolders = 0

    var isEmpty: Bool { counts.isEmpty && globalHolders == 0 }

    /// A global transaction holds every key of the shard.
    var isGloballyHeld: Bool { globalHolders > 0 }

    /// Whether `set` could be granted now without waiting for anyone.
    func isFree(_ set: ShardLockSet) -> Bool {
        if globalHolders > 0 { return false }
        for fingerprint in set.fingerprints {
            guard let c = counts[Key(fingerprint)] else { continue }
            switch set.mode {
            case .shared: if c.exclusive > 0 { return false }
            case .exclusive: if c.exclusive > 0 || c.shared > 0 { return false }
            }
        }
        return true
    }

    @inline(__always)
    func isFree(_ fingerprint: LockFingerprint, mode: LockMode) -> Bool {
        if globalHolders > 0 { return false }
        guard let c = counts[Key(fingerprint)] else { return true }
        switch mode {
        case .shared: return c.exclusive == 0
        case .exclusive: return c.exclusive == 0 && c.shared == 0
        }
    }

    mutating func acquire(_ set: ShardLockSet) {
        for fingerprint in set.fingerprints {
            switch set.mode {
            case .shared: counts[Key(fingerprint), default: Counts()].shared += 1
            case .exclusive: counts[Key(fingerprint), default: Counts()].exclusive += 1
            }
        }
    }

    mutating func release(_ set: ShardLockSet) {
        for fingerprint in set.fingerprints {
            guard var c = counts[Key(fingerprint)] else { continue }
            switch set.mode {
            case .shared: c.shared -= 1
            case .exclusive: c.exclusive -= 1
            }
            if c.shared <= 0 && c.exclusive <= 0 {
                counts.removeValue(forKey: Key(fingerprint))
            } else {
                counts[Key(fingerprint)] = c
            }
        }
    }

    mutating func acquireGlobal() { globalHolders += 1 }
    mutating func releaseGlobal() { globalHolders -= 1 }
}
