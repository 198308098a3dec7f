import Synchronization
import DamselflyRuntime
import DamselflyStorage

/// Eviction under `maxmemory` (Redis's `performEvictions`), shard by shard.
///
/// The rule: each shard keeps its own keyspace's accounted bytes under its share of
/// `maxmemory` (the limit divided by the number of shards), evicting only its own keys,
/// so no shard ever waits for another. It runs after every operation on the shard
/// (``Shard/afterOperation()``), so a write that took the shard over its share is paid
/// for before the next command runs here; a write refused with OOM is one that arrives
/// while the whole server is still over the limit because the policy found nothing it
/// may evict (`noeviction`, or a `volatile-*` policy with no key that has a TTL).
extension Shard {
    /// Applies `maxmemory` (the shard's share of it, `limit`) and the eviction settings,
    /// then evicts at once if the shard is already over.
    public func configureEviction(limit: Int, settings: EvictionSettings) {
        if settings.policy != evictionSettings.policy { evictionPool.removeAll() }
        let lfu = settings.policy.usesLFU
        for db in keyspace.databases {
            db.configureAccessTracking(lfu: lfu, logFactor: settings.lfuLogFactor, decayMinutes: settings.lfuDecayMinutes)
        }
        evictionSettings = settings
        evictionLimit = settings.policy == .noEviction ? 0 : limit
        if evictionLimit > 0 { evictIfNeeded() }
        publishStats()
    }

    /// Evicts keys chosen by the policy until the keyspace is under the shard's share,
    /// or nothing more may be evicted. Keys a queued transaction holds are skipped, and
    /// nothing is evicted while a global transaction holds the shard or the keyspace is lent.
    public func evictIfNeeded() {
        guard evictionLimit > 0, !isLent, !locks.isGloballyHeld else { return }
        var used = keyspace.usedBytes
        guard used > evictionLimit else { return }
        let nowMs = Clock.wallMillis()
        // CLIENT PAUSE keeps the dataset as it is (Redis's performEvictions waits too).
        if let hold = keyspace.expiryHold, hold.isHeld(nowMs: nowMs) { return }
        while used > evictionLimit {
            guard let (database, index) = nextVictim(nowMs: nowMs) else { break }
            evict(database: database, at: index)
            used = keyspace.usedBytes
        }
    }

    /// Deletes one key as eviction does: counted in `evicted_keys`, journaled as a DEL
    /// (so a replay or a replica drops it too) and dirtying the WATCHers of the key.
    func evict(database databaseIndex: Int, at index: EntryIndex) {
        let database = keyspace.databases[databaseIndex]
        let hash = database.hash(at: index)
        let key = database.key(at: index)
        if let journal { journal.append(database: databaseIndex, [Array("DEL".utf8), key]) }
        if !tracking.isEmpty { invalidateTracked(name: key, database: databaseIndex, hash: hash) }
        database.remove(at: index)
        evictedKeys.add(1, ordering: .relaxed)
        database.notify(.evicted, "evicted", key: key)
        if hasWatchers { touchWatchers([lockFingerprint(keyHash: hash, database: databaseIndex)]) }
    }

    /// The next key the policy gives up, nil when it has none left to give.
    func nextVictim(nowMs: Int64) -> (Int, EntryIndex)? {
        let settings = evictionSettings
        let volatile = settings.policy.onlyVolatile
        let databases = keyspace.databases
        if settings.policy.isRandom {
            // Any database with candidates, then any of its candidates.
            for (d, db) in databases.enumerated() where (volatile ? db.expiresCount : db.count) > 0 {
                for _ in 0..<16 {
                    let picked = volatile ? db.randomSample(volatile: true) : db.randomEntry(nowMs: nowMs)
                    guard let index = picked else { continue }
                    if isEvictable(db, d, index) { return (d, index) }
                }
            }
            return nil
        }
        // Sampled LRU / LFU / TTL through the pool, as Redis: sample every database,
        // then take the best pooled key that still exists.
        for _ in 0..<4 {
            var sampled = false
            for (d, db) in databases.enumerated() where (volatile ? db.expiresCount : db.count) > 0 {
                db.sampleForEviction(
                    policy: settings.policy, count: settings.samples, nowMs: nowMs, databaseIndex: d, into: &evictionPool)
                sampled = true
            }
            while let candidate = evictionPool.popBest() {
                let db = databases[candidate.database]
                guard let index = candidate.key.withUnsafeBytes({ db.lookup($0, hash: candidate.hash) }) else { continue }
                if isEvictable(db, candidate.database, index) { return (candidate.database, index) }
            }
            if !sampled { return nil }
        }
        return nil
    }

    private func isEvictable(_ db: Database, _ databaseIndex: Int, _ index: EntryIndex) -> Bool {
        if evictionSettings.policy.onlyVolatile && db.expireTime(at: index) == nil { return false }
        return locks.isFree(lockFingerprint(keyHash: db.hash(at: index), database: databaseIndex), mode: .exclusive)
    }
}

extension ShardSet {
    /// Hands every shard its share of `maxMemory` and the eviction settings (on its own
    /// thread); a shard already over its share evicts at once. `done`, when given, runs on
    /// `loop` once every shard has applied them: CONFIG SET replies then, as Redis's does
    /// after its own eviction pass, so a write sent after the reply finds room made.
    public func configureEviction(
        maxMemory: Int, settings: EvictionSettings, from loop: EventLoop? = nil, done: (() -> Void)? = nil
    ) {
        let share = maxMemory > 0 ? max(1, maxMemory / shards.count) : 0
        onEveryShard(from: loop, { $0.configureEviction(limit: share, settings: settings) }, done: done)
    }

    /// Applies the keyspace notification classes on every shard, then calls `done` on
    /// `loop`: a command sent after CONFIG SET's reply already notifies under the new classes.
    public func configureNotifications(_ flags: KeyspaceEventClass, from loop: EventLoop, done: @escaping () -> Void) {
        keyspaceEvents.flags.store(flags.rawValue, ordering: .relaxed)
        onEveryShard(from: loop, { $0.keyspace.setNotifyFlags(flags.rawValue) }, done: done)
    }

    /// Runs `task` on every shard's thread once its keyspace is not lent out, then `done`
    /// on `loop` after the last shard ran it (when both are given).
    public func onEveryShard(from loop: EventLoop?, _ task: @escaping (Shard) -> Void, done: (() -> Void)?) {
        let finish = loop.flatMap { loop in done.map { ShardBarrier(remaining: shards.count, loop: loop, done: $0) } }
        for shard in shards {
            shard.postWhenAvailable {
                task(shard)
                finish?.arrive()
            }
        }
    }
}

/// Counts the shards that ran a task of ``ShardSet/onEveryShard(from:_:done:)``; the last one posts `done`.
private final class ShardBarrier: @unchecked Sendable {
    // Invariant: `remaining` is atomic; `done` runs once, on `loop`.
    private let remaining: Atomic<Int>
    private let loop: EventLoop
    private let done: () -> Void

    init(remaining: Int, loop: EventLoop, done: @escaping () -> Void) {
        self.remaining = Atomic(remaining)
        self.loop = loop
        self.done = done
    }

    func arrive() {
        if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { loop.post(done) }
    }
}
