/// Redis 7's `maxmemory-policy` values: which keys may be evicted and in what order.
public enum EvictionPolicy: String, CaseIterable, Sendable {
    case volatileLRU = "volatile-lru"
    case volatileLFU = "volatile-lfu"
    case volatileRandom = "volatile-random"
    case volatileTTL = "volatile-ttl"
    case allkeysLRU = "allkeys-lru"
    case allkeysLFU = "allkeys-lfu"
    case allkeysRandom = "allkeys-random"
    case noEviction = "noeviction"

    /// Only keys with a TTL are candidates: a persistent key (a job queue,
    /// a list a client blocks on) is never evicted under these.
    public var onlyVolatile: Bool {
        switch self {
        case .volatileLRU, .volatileLFU, .volatileRandom, .volatileTTL: return true
        default: return false
        }
    }

    /// The entry's access field holds an LFU counter (Redis's `MAXMEMORY_FLAG_LFU`).
    public var usesLFU: Bool { self == .volatileLFU || self == .allkeysLFU }

    public var isRandom: Bool { self == .volatileRandom || self == .allkeysRandom }
}

/// The eviction settings every shard applies: `maxmemory-policy`, `maxmemory-samples`,
/// `maxmemory-eviction-tenacity`, `lfu-log-factor`, `lfu-decay-time`.
public struct EvictionSettings: Sendable, Equatable {
    public var policy: EvictionPolicy
    public var samples: Int
    public var tenacity: Int
    public var lfuLogFactor: Int
    public var lfuDecayMinutes: Int

    public init(
        policy: EvictionPolicy = .noEviction, samples: Int = 5, tenacity: Int = 10, lfuLogFactor: Int = 10,
        lfuDecayMinutes: Int = 1
    ) {
        self.policy = policy
        self.samples = samples
        self.tenacity = tenacity
        self.lfuLogFactor = lfuLogFactor
        self.lfuDecayMinutes = lfuDecayMinutes
    }
}

/// One key found by sampling, ranked by how much it deserves eviction (higher first).
public struct EvictionCandidate: Sendable {
    public var score: UInt64
    public var database: Int
    public var key: [UInt8]
    public var hash: UInt64
}

/// Redis's eviction pool: the best candidates seen by the sampling rounds so far, kept
/// across evictions so that each eviction compares more than `maxmemory-samples` keys
/// (what makes the sampled LRU close to the true one). Sorted by ascending score.
public struct EvictionPool: Sendable {
    public static let capacity = 16
    public private(set) var candidates: [EvictionCandidate] = []

    public init() {}

    public var isEmpty: Bool { candidates.isEmpty }

    /// Whether `offer` could change the pool for a key of this score and hash: room, a better
    /// score than the worst kept, or (maybe) the same key pooled already. Sampling copies a key
    /// out of its table only then.
    public func mightTake(score: UInt64, hash: UInt64, database: Int) -> Bool {
        candidates.count < EvictionPool.capacity || score > candidates[0].score
            || candidates.contains { $0.hash == hash && $0.database == database }
    }

    /// Offers a sampled key: kept when the pool has room or it beats the worst one kept.
    /// A key already pooled keeps one slot, with its fresh score.
    public mutating func offer(_ candidate: EvictionCandidate) {
        if let same = candidates.firstIndex(where: {
            $0.hash == candidate.hash && $0.database == candidate.database && $0.key == candidate.key
        }) {
            candidates.remove(at: same)
        }
        if candidates.count >= EvictionPool.capacity {
            guard candidate.score > candidates[0].score else { return }
            candidates.removeFirst()
        }
        var position = candidates.count
        while position > 0 && candidates[position - 1].score > candidate.score { position -= 1 }
        candidates.insert(candidate, at: position)
    }

    /// Takes the best candidate out of the pool.
    public mutating func popBest() -> EvictionCandidate? {
        candidates.popLast()
    }

    public mutating func removeAll() { candidates.removeAll(keepingCapacity: true) }
}

/// Redis's approximated LFU: an 8-bit logarithmic counter and the 16-bit minute of its last
/// decrement, packed as `minutes << 8 | counter` in the entry's access field.
public enum LFU {
    /// The counter a new key starts with, so it is not evicted before it had a chance to be read.
    public static let initialCounter: UInt32 = 5

    /// Unix minutes, modulo 2^16.
    @inlinable
    public static func minutes(_ nowMs: Int64) -> UInt32 {
        UInt32(truncatingIfNeeded: max(0, nowMs) / 60_000) & 0xFFFF
    }

    /// Minutes since `since` on the wrapping 16-bit clock.
    @inlinable
    public static func elapsed(since: UInt32, nowMs: Int64) -> UInt32 {
        let now = minutes(nowMs)
        return now >= since ? now - since : 0xFFFF - since + now
    }

    /// The access field of a key created now.
    @inlinable
    public static func initial(nowMs: Int64) -> UInt32 {
        minutes(nowMs) << 8 | initialCounter
    }

    /// The counter after decay: one less per `decayMinutes` elapsed since the last decrement.
    @inlinable
    public static func decayed(_ packed: UInt32, decayMinutes: Int, nowMs: Int64) -> UInt32 {
        let counter = packed & 0xFF
        guard decayMinutes > 0 else { return counter }
        let periods = elapsed(since: (packed >> 8) & 0xFFFF, nowMs: nowMs) / UInt32(clamping: decayMinutes)
        return periods >= counter ? 0 : counter - periods
    }

    /// One access: the counter grows with probability 1 / ((counter - initial) * factor + 1),
    /// so reaching 255 takes about a million hits at the default factor 10.
    @inlinable
    public static func incremented(_ counter: UInt32, logFactor: Int, random: Double) -> UInt32 {
        if counter >= 255 { return 255 }
        let base = counter > initialCounter ? Double(counter - initialCounter) : 0
        return random < 1.0 / (base * Double(logFactor) + 1) ? counter + 1 : counter
    }
}

extension Database {
    /// Under an LFU policy: the access field after one access (decay, then a
    /// probabilistic increment), stamped with the current minute.
    @usableFromInline
    func lfuAccessed(_ packed: UInt32, nowMs: Int64) -> UInt32 {
        let counter = LFU.decayed(packed, decayMinutes: lfuDecayMinutes, nowMs: nowMs)
        let random = Double(nextRandom() >> 11) / Double(1 << 53)
        return LFU.minutes(nowMs) << 8 | LFU.incremented(counter, logFactor: lfuLogFactor, random: random)
    }

    /// RESTORE's IDLETIME / FREQ (Redis's objectSetLRUOrLFU): under an LFU policy the
    /// counter is set to `frequency`, otherwise the last access goes `idleSeconds` back.
    /// Each is ignored under the other kind of policy, as Redis ignores it.
    public func setAccess(at index: EntryIndex, idleSeconds: Int64?, frequency: Int?, nowMs: Int64) {
        if lfuMode, let frequency {
            entries[Int(index)].accessSeconds = LFU.minutes(nowMs) << 8 | UInt32(clamping: min(max(frequency, 0), 255))
        } else if !lfuMode, let idleSeconds {
            entries[Int(index)].accessSeconds = Database.seconds(nowMs - idleSeconds * 1000)
        }
    }

    /// OBJECT FREQ: the decayed LFU counter (meaningful under an LFU policy only).
    public func accessFrequency(at index: EntryIndex, nowMs: Int64) -> Int {
        Int(LFU.decayed(entries[Int(index)].accessSeconds, decayMinutes: lfuDecayMinutes, nowMs: nowMs))
    }

    /// Switches the meaning of every entry's access field (LRU seconds or LFU counter)
    /// for keys touched or created from now on; existing values are reinterpreted,
    /// as in Redis, where switching policies "takes some time to adjust".
    public func configureAccessTracking(lfu: Bool, logFactor: Int, decayMinutes: Int) {
        lfuMode = lfu
        lfuLogFactor = logFactor
        lfuDecayMinutes = decayMinutes
    }

    /// Samples up to `count` keys (only keys with a TTL when the policy is volatile) and
    /// offers each to `pool`, scored as Redis ranks them: idle seconds (LRU), 255 minus
    /// the decayed counter (LFU), or nearness of the expiry (TTL).
    public func sampleForEviction(
        policy: EvictionPolicy, count: Int, nowMs: Int64, databaseIndex: Int, into pool: inout EvictionPool
    ) {
        let volatile = policy.onlyVolatile
        let population = volatile ? ttlIndex.count : liveCount
        guard population > 0 else { return }
        let nowSeconds = Database.seconds(nowMs)
        var taken = 0
        var tries = 0
        // A sparse slab (after many deletions) needs more probes to find live slots.
        let maxTries = max(count, 1) * 8
        while taken < min(count, population) && tries < maxTries {
            tries += 1
            guard let index = randomSample(volatile: volatile) else { continue }
            let i = Int(index)
            let score: UInt64
            switch policy {
            case .volatileTTL:
                score = UInt64.max - UInt64(clamping: entries[i].expireAt)
            case .allkeysLFU, .volatileLFU:
                score = 255 - UInt64(LFU.decayed(entries[i].accessSeconds, decayMinutes: lfuDecayMinutes, nowMs: nowMs))
            default:
                let last = entries[i].accessSeconds
                score = nowSeconds >= last ? UInt64(nowSeconds - last) : 0
            }
            if pool.mightTake(score: score, hash: entries[i].hash, database: databaseIndex) {
                pool.offer(EvictionCandidate(score: score, database: databaseIndex, key: key(at: index), hash: entries[i].hash))
            }
            taken += 1
        }
    }

    /// One random live entry (with a TTL when `volatile`), nil on an unlucky probe.
    public func randomSample(volatile: Bool) -> EntryIndex? {
        if volatile {
            guard !ttlIndex.isEmpty else { return nil }
            return ttlIndex[Int(truncatingIfNeeded: nextRandom() % UInt64(ttlIndex.count))]
        }
        guard liveCount > 0, !entries.isEmpty else { return nil }
        let slot = Int(truncatingIfNeeded: nextRandom() % UInt64(entries.count))
        return entries[slot].isFree ? nil : EntryIndex(truncatingIfNeeded: slot)
    }
}
