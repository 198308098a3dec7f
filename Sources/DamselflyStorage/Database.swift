import CDamselfly

/// One database (SELECT n): a chained hash table owned by this project.
///
/// Only the owning shard thread touches it, so there is no locking. Layout:
/// - `entries` is a slab (`EntrySlab`: 64-byte-aligned, one cache line per `Entry`) with a free
///   list, so an `EntryIndex` stays valid while the table grows or shrinks; keys of up to 26 bytes
///   live inside their entry, so a lookup costs two dependent cache misses (bucket, entry), not
///   three (bucket, entry, key bytes);
/// - `buckets` holds the head of each intrusive chain (`Int32` links through `Entry.next`); the
///   bucket count is a power of two, indexed by the low bits of the key hash;
/// - the table doubles when the load factor exceeds 1 and shrinks when it falls below 1/8 (never
///   under `minimumBuckets`); rehashing relinks chains, entries keep their index;
/// - `ttlIndex` is a dense array of the entries that have a TTL (each entry remembers its position,
///   so removal is O(1) by swapping with the last) which active expiry samples.
///
/// Memory accounting (`usedBytes`): the capacities of the three arrays times their element sizes
/// (`MemoryLayout<Entry>.stride` = 64 per slab slot, 4 bytes per bucket and per TTL slot) plus the
/// heap bytes of every key and value, the latter kept incrementally on every insert, set, modify and
/// remove. An inline key counts 0 (its bytes are in the slot); a longer key counts its malloc chunk
/// (`Entry.keyHeapBytes`); a value counts its array's 32-byte header + capacity (`.int` counts 0).
public final class Database {
    /// Smallest bucket array; the table never shrinks below it.
    @usableFromInline static var minimumBuckets: Int { 4 }
    /// Bytes per bucket head and per TTL index slot.
    @usableFromInline static var linkBytes: Int { MemoryLayout<Int32>.stride }
    /// Fixed bytes charged for the database object itself.
    @usableFromInline static var objectOverhead: Int { 128 }

    @exclusivity(unchecked) @usableFromInline var entries = EntrySlab()
    @usableFromInline var buckets: ContiguousArray<Int32>
    @usableFromInline var mask: UInt64
    @usableFromInline var freeHead: Int32 = -1
    // The scalar counters below skip Swift's run-time exclusivity check (`@exclusivity(unchecked)`):
    // the shard reads them for every database after every operation (`Shard.publishStats`), where
    // the checks cost more than the rest of a short command (callgrind, docs/benchmarks.md
    // "Streams"), and an overlapping access to a plain Int cannot touch freed memory.
    @exclusivity(unchecked) @usableFromInline var liveCount: Int = 0
    @usableFromInline var ttlIndex: ContiguousArray<Int32> = []
    /// Where active expiry resumes in `ttlIndex`, so successive rounds cover every TTL key.
    @usableFromInline var ttlCursor: Int = 0
    /// Sum of `expireAt` over `ttlIndex`, for an exact O(1) average TTL.
    @usableFromInline var expireSum: Int128 = 0
    /// Heap bytes of keys and values of live entries.
    @exclusivity(unchecked) @usableFromInline var dataBytes: Int = 0
    /// The latest time seen by `find`/`touch`, used as the access time of inserted keys.
    @exclusivity(unchecked) @usableFromInline var clockMs: Int64 = 0
    /// State of the SplitMix64 generator used by `randomEntry`.
    @usableFromInline var randomState: UInt64
    /// Under an LFU `maxmemory-policy` the entries' access field holds Redis's packed LFU
    /// counter instead of the last access second (see ``LFU``); set by the shard.
    @usableFromInline var lfuMode = false
    @usableFromInline var lfuLogFactor = 10
    @usableFromInline var lfuDecayMinutes = 1

    /// CLIENT PAUSE's hold: while held, expired keys read as missing but stay (see ``ExpiryHold``).
    public var expiryHold: ExpiryHold?

    /// Whether access tracking is LFU (OBJECT FREQ answers) rather than LRU (OBJECT IDLETIME).
    public var tracksFrequency: Bool { lfuMode }

    /// Keys removed by lazy or active expiry since creation (never reset by `removeAll`).
    @exclusivity(unchecked) public private(set) var expiredKeys: Int = 0

    /// Where this database reports that what ``usedBytes`` and ``expiredKeys`` read may have
    /// changed: its ``Keyspace``'s ``Keyspace/changedDatabases`` word, bit `changeBit` (nil
    /// outside a keyspace). The shard re-reads only the databases marked there after an
    /// operation, so a command that changed nothing (a GET that found its key, or none) pays
    /// nothing for the published figures. Every write to `dataBytes`, `expiredKeys` and the
    /// slab, bucket and TTL arrays is in this file, each beside an ``accountingChanged()``.
    @exclusivity(unchecked) @usableFromInline var changeMask: UnsafeMutablePointer<UInt64>?
    @exclusivity(unchecked) @usableFromInline var changeBit: UInt64 = 0

    /// Marks this database in its keyspace's ``Keyspace/changedDatabases``.
    @inlinable @inline(__always)
    func accountingChanged() {
        if let changeMask { changeMask.pointee |= changeBit }
    }

    /// Called with an entry's index before the entry is looked up, changed or
    /// removed, while a snapshot is being written: the snapshot serializes
    /// the entry's old value first, so the file is the dataset at the moment
    /// the snapshot began (Dragonfly's forkless design). Nil otherwise: the
    /// cost on the command path is one nil check.
    public var accessHook: ((EntryIndex) -> Void)?

    /// The keyspace notification classes in force (``KeyspaceEvents``), a plain copy kept by
    /// the owning shard's thread: 0 (the default) makes every notifying path one compare.
    public var notifyFlags = 0
    /// This database's number, for the notification channels (follows SWAPDB).
    public var notifyIndex = 0
    /// Where notifications go; nil in a database that belongs to no server.
    public var notifier: KeyspaceEvents?

    /// Emits keyspace notification `event` of class `type` for `key` when that class is on.
    @inlinable
    public func notify(_ type: KeyspaceEventClass, _ event: StaticString, key: [UInt8]) {
        if notifyFlags & type.rawValue != 0 { emitNotification(event, key: key) }
    }

    public func emitNotification(_ event: StaticString, key: [UInt8]) {
        notifier?.emit(event, key: key, database: notifyIndex, flags: notifyFlags)
    }

    /// Called with the key's name and hash when lazy or active expiry deletes
    /// it, while some client tracks keys of this shard (CLIENT TRACKING: an
    /// expired key is invalidated like a written one). Nil otherwise.
    public var expiryHook: (([UInt8], UInt64) -> Void)?

    /// Number of slab slots (live or free): a snapshot walks `0..<slotCount`.
    public var slotCount: Int { entries.count }

    /// Whether slab slot `slot` holds a key.
    public func isLive(slot: Int) -> Bool { slot < entries.count && !entries[slot].isFree }

    public init() {
        buckets = ContiguousArray(repeating: -1, count: Database.minimumBuckets)
        mask = UInt64(Database.minimumBuckets - 1)
        var generator = SystemRandomNumberGenerator()
        randomState = generator.next()
    }

    deinit { entries.deallocate() }

    /// Number of keys (including expired ones not yet removed, as Redis's dbsize).
    @inlinable
    public var count: Int { liveCount }

    /// Number of keys with a TTL.
    @inlinable
    public var expiresCount: Int { ttlIndex.count }

    /// Number of buckets (a power of two); exposed for tests and INFO-style diagnostics.
    @inlinable
    public var bucketCount: Int { buckets.count }

    // MARK: Lookup

    /// Finds a live key. An expired key is deleted on the spot (lazy expiry), counted in
    /// `expiredKeys`, and nil is returned; while CLIENT PAUSE holds expiry it is only
    /// reported missing.
    @inlinable
    public func find(_ key: UnsafeRawBufferPointer, hash: UInt64, nowMs: Int64) -> EntryIndex? {
        clockMs = nowMs
        guard let index = lookup(key, hash: hash) else { return nil }
        if entries[Int(index)].expireAt <= nowMs {
            if let expiryHold, expiryHold.isHeld(nowMs: nowMs) { return nil }
            expire(at: index)
            return nil
        }
        return index
    }

    /// Finds a key whether or not it has expired, without deleting anything (for callers that
    /// must not mutate, e.g. read-only inspection).
    @inlinable
    public func lookup(_ key: UnsafeRawBufferPointer, hash: UInt64) -> EntryIndex? {
        var index = buckets[Int(truncatingIfNeeded: hash & mask)]
        while index >= 0 {
            let i = Int(index)
            if entries[i].hash == hash && entries.keyEquals(at: i, key) {
                if let accessHook { accessHook(index) }
                return index
            }
            index = entries[i].next
        }
        return nil
    }

    /// Whether the entry's expiry time has passed.
    @inlinable
    public func isExpired(at index: EntryIndex, nowMs: Int64) -> Bool {
        entries[Int(index)].expireAt <= nowMs
    }

    /// A copy of the key's bytes: one allocation. Paths run per command use `withKey` instead.
    @inlinable
    public func key(at index: EntryIndex) -> [UInt8] {
        entries.withKey(at: Int(index)) { ByteArray.copy($0) }
    }

    /// Calls `body` with the key bytes where they are stored (in the slab for a short key), without
    /// copying or allocating. The bytes are valid only during the call, and `body` must not insert
    /// into or remove from this database (the slab may move).
    @inlinable
    public func withKey<R>(at index: EntryIndex, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try entries.withKey(at: Int(index), body)
    }

    /// The hash stored with the entry (the hash the key was inserted with).
    @inlinable
    public func hash(at index: EntryIndex) -> UInt64 {
        entries[Int(index)].hash
    }

    // MARK: Prefetch

    /// A lookup's three dependent reads (the bucket, the entry it names, the
    /// value's heap object) each wait for memory when the key is cold. For a
    /// batch of pipelined commands the reads of every key are started ahead,
    /// one stage for the whole batch at a time, so they overlap: by the time
    /// a stage reads what the one before fetched, it has arrived (Redis 8
    /// does the same for the commands of a batch). These are hints: they
    /// change nothing, and a key that is not there, or not first in its
    /// chain, is simply not helped.

    /// The three stages for a batch of keys known in advance (a command's
    /// keys, a squashed run's): every bucket, then every first entry, then
    /// every value.
    public func prefetch(_ hashes: UnsafeBufferPointer<UInt64>) {
        withBucketTable { table in
            for hash in hashes { table.prefetchBucket(hash: hash) }
        }
        prefetchEntriesAndValues(hashes)
    }

    /// Calls `body` with the bucket table and its mask, for a batch's stage 1
    /// (``BucketTable/prefetchBucket(hash:)``) while the batch's keys are still
    /// being found (a connection's walk of its input): one access to the table for the batch,
    /// where each access costs a retain and a release. Nothing may insert into
    /// or remove from this database during the call.
    @inlinable
    public func withBucketTable<R>(_ body: (BucketTable) throws -> R) rethrows -> R {
        try buckets.withUnsafeBufferPointer { try body(BucketTable(heads: $0.baseAddress!, mask: mask)) }
    }

    /// A database's bucket heads, lent by ``withBucketTable(_:)``.
    public struct BucketTable {
        @usableFromInline let heads: UnsafePointer<Int32>
        @usableFromInline let mask: UInt64
        @inlinable init(heads: UnsafePointer<Int32>, mask: UInt64) {
            self.heads = heads
            self.mask = mask
        }

        /// Stage 1: the bucket of `hash`.
        @inlinable
        public func prefetchBucket(hash: UInt64) {
            dfly_prefetch(heads + Int(truncatingIfNeeded: hash & mask))
        }
    }

    /// Stages 2 and 3 for a batch whose buckets were prefetched: each
    /// bucket's first entry, then the heap object of that entry's value when
    /// its hash is the key's (its header, the reference count a read or a
    /// replacement touches first, and the line after it, a short string's
    /// bytes). A payload's first word is its object's address for every case
    /// but `.int`, whose number is prefetched harmlessly.
    public func prefetchEntriesAndValues(_ hashes: UnsafeBufferPointer<UInt64>) {
        guard let base = entries.base, !hashes.isEmpty else { return }
        let mask = self.mask
        buckets.withUnsafeBufferPointer { table in
            for hash in hashes {
                let index = table[Int(truncatingIfNeeded: hash & mask)]
                if index >= 0 { dfly_prefetch(base + Int(index)) }
            }
            for hash in hashes {
                let index = table[Int(truncatingIfNeeded: hash & mask)]
                guard index >= 0 else { continue }
                let entry = base + Int(index)
                guard entry.pointee.hash == hash else { continue }
                let word = UnsafeRawPointer(entry).load(fromByteOffset: Entry.valueOffset, as: UInt.self)
                guard let object = UnsafeRawPointer(bitPattern: word) else { continue }
                dfly_prefetch(object)
                dfly_prefetch(object + 32)
            }
        }
    }

    // MARK: Values

    @inlinable
    public func value(at index: EntryIndex) -> StoredValue {
        entries[Int(index)].value
    }

    /// Replaces the value, keeping memory accounting right.
    @inlinable
    public func setValue(_ value: StoredValue, at index: EntryIndex) {
        let i = Int(index)
        dataBytes += value.memoryUsage - entries[i].value.memoryUsage
        entries[i].value = value
        accountingChanged()
    }

    /// Mutates the value in place without copying it: the value is swapped out of the slab so an
    /// array inside is uniquely referenced while `body` runs (APPEND and SETRANGE grow it in place),
    /// then swapped back and its memory re-accounted. `body` must not access this entry's value
    /// through the database (it reads as `.int(0)` meanwhile).
    @inlinable
    public func modifyValue<R>(at index: EntryIndex, _ body: (inout StoredValue) throws -> R) rethrows -> R {
        let i = Int(index)
        var value = StoredValue.int(0)
        swap(&value, &entries[i].value)
        let before = value.memoryUsage
        defer {
            dataBytes += value.memoryUsage - before
            swap(&value, &entries[i].value)
            accountingChanged()
        }
        return try body(&value)
    }

    // MARK: Expiry times

    /// Absolute expiry in unix ms, nil when the key is persistent.
    @inlinable
    public func expireTime(at index: EntryIndex) -> Int64? {
        let i = Int(index)
        return entries[i].ttlSlot >= 0 ? entries[i].expireAt : nil
    }

    /// Sets (or with nil clears) the expiry, maintaining `expiresCount`, the TTL index used by active
    /// expiry and the average-TTL sum.
    public func setExpireTime(_ ms: Int64?, at index: EntryIndex) {
        accountingChanged()  // the TTL index may grow
        let i = Int(index)
        if let ms {
            if entries[i].ttlSlot >= 0 {
                expireSum -= Int128(entries[i].expireAt)
            } else {
                entries[i].ttlSlot = Int32(truncatingIfNeeded: ttlIndex.count)
                ttlIndex.append(index)
            }
            entries[i].expireAt = ms
            expireSum += Int128(ms)
        } else if entries[i].ttlSlot >= 0 {
            removeFromTTLIndex(index)
        }
    }

    /// Drops the entry from the TTL index by moving the last index entry into its place.
    @usableFromInline
    func removeFromTTLIndex(_ index: EntryIndex) {
        let i = Int(index)
        let slot = Int(entries[i].ttlSlot)
        expireSum -= Int128(entries[i].expireAt)
        let last = ttlIndex.removeLast()
        if last != index {
            ttlIndex[slot] = last
            entries[Int(last)].ttlSlot = Int32(truncatingIfNeeded: slot)
        }
        entries[i].ttlSlot = Entry.noTTL
        entries[i].expireAt = Entry.persistent
    }

    // MARK: Insert and remove

    /// Inserts a key known to be absent and returns its index. The key bytes are copied once; the
    /// access time is the latest time seen by `find`/`touch` unless `nowMs` is given.
    @discardableResult
    public func insert(_ key: UnsafeRawBufferPointer, hash: UInt64, value: StoredValue, expireAtMs: Int64?, nowMs: Int64? = nil) -> EntryIndex {
        if let nowMs { clockMs = nowMs }
        if let expiryHold, expiryHold.isHeld(nowMs: clockMs), let stale = lookup(key, hash: hash) {
            // `find` reported an expired key missing under a CLIENT PAUSE hold (a write
            // the pause lets through, such as the rest of the EXEC that paused): the
            // write replaces it, so it goes now rather than live on beside the new one.
            expire(at: stale)
        }
        let bucket = Int(truncatingIfNeeded: hash & mask)
        let access = lfuMode ? LFU.initial(nowMs: clockMs) : Database.seconds(clockMs)
        let entry = Entry(value: value, hash: hash, next: buckets[bucket], accessSeconds: access)
        let index: EntryIndex
        if freeHead >= 0 {
            index = freeHead
            freeHead = entries[Int(index)].next
            entries[Int(index)] = entry
        } else {
            precondition(entries.count < Int(Int32.max), "Database is full")
            index = Int32(truncatingIfNeeded: entries.count)
            entries.append(entry)
        }
        entries.setKey(key, at: Int(index))
        buckets[bucket] = index
        liveCount += 1
        dataBytes += Entry.keyHeapBytes(length: key.count) + value.memoryUsage
        accountingChanged()
        if let expireAtMs {
            setExpireTime(expireAtMs, at: index)
        }
        if liveCount > buckets.count {
            rehash(bucketCount: buckets.count * 2)
        }
        if notifyFlags & KeyspaceEventClass.new.rawValue != 0 { emitNotification("new", key: ByteArray.copy(key)) }
        return index
    }

    /// Removes the entry; its index becomes invalid (and may be reused by a later insert).
    public func remove(at index: EntryIndex) {
        if let accessHook { accessHook(index) }
        let i = Int(index)
        let bucket = Int(truncatingIfNeeded: entries[i].hash & mask)
        var previous = buckets[bucket]
        if previous == index {
            buckets[bucket] = entries[i].next
        } else {
            while entries[Int(previous)].next != index {
                previous = entries[Int(previous)].next
            }
            entries[Int(previous)].next = entries[i].next
        }
        if entries[i].ttlSlot >= 0 {
            removeFromTTLIndex(index)
        }
        dataBytes -= Entry.keyHeapBytes(length: entries.keyCount(at: i)) + entries[i].value.memoryUsage
        accountingChanged()
        EntrySlab.freeKey(entries.base.unsafelyUnwrapped + i)
        entries[i].value = .int(0)
        entries[i].ttlSlot = Entry.freeSlot
        entries[i].next = freeHead
        freeHead = index
        liveCount -= 1
        if liveCount == 0 {
            // Nothing is live, so no index can be held: reset the slab, releasing a large one.
            entries.removeAll(keepingCapacity: entries.capacity <= 1024)
            freeHead = -1
        }
        if buckets.count > Database.minimumBuckets && liveCount * 8 < buckets.count {
            var target = Database.minimumBuckets
            while target < liveCount * 2 { target <<= 1 }
            rehash(bucketCount: target)
        }
    }

    /// Removes a key if present. An expired key is removed too (counted as expired) but reported as
    /// absent, as DEL does in Redis.
    @discardableResult
    public func remove(_ key: UnsafeRawBufferPointer, hash: UInt64, nowMs: Int64) -> Bool {
        guard let index = find(key, hash: hash, nowMs: nowMs) else {
            // A held expired key (a replica waits for its master's DEL): the DEL removes it.
            if let expiryHold, expiryHold.isHeld(nowMs: nowMs), let stale = lookup(key, hash: hash) { expire(at: stale) }
            return false
        }
        remove(at: index)
        return true
    }

    /// Deletes an expired entry and counts it (lazy and active expiry).
    @usableFromInline
    func expire(at index: EntryIndex) {
        // The key is copied out (the slot is freed below) only when someone is told about it.
        let notifying = notifyFlags & KeyspaceEventClass.expired.rawValue != 0
        let key = notifying || expiryHook != nil ? self.key(at: index) : nil
        if let expiryHook, let key { expiryHook(key, entries[Int(index)].hash) }
        remove(at: index)
        expiredKeys += 1
        accountingChanged()
        if notifying, let key { emitNotification("expired", key: key) }
    }

    /// FLUSHDB: drops every key and returns to the minimum table; `expiredKeys` is kept.
    public func removeAll() {
        if let accessHook {
            for slot in 0..<entries.count where !entries[slot].isFree { accessHook(EntryIndex(slot)) }
        }
        entries.deallocate()
        buckets = ContiguousArray(repeating: -1, count: Database.minimumBuckets)
        mask = UInt64(Database.minimumBuckets - 1)
        freeHead = -1
        liveCount = 0
        ttlIndex = []
        ttlCursor = 0
        expireSum = 0
        dataBytes = 0
        accountingChanged()
    }

    /// Rebuilds the bucket array at a new power-of-two size by relinking every live entry; walking
    /// the slab in order is cache friendly and never moves an entry.
    @usableFromInline
    func rehash(bucketCount: Int) {
        accountingChanged()
        var newBuckets = ContiguousArray<Int32>(repeating: -1, count: bucketCount)
        let newMask = UInt64(bucketCount - 1)
        let slab = entries
        newBuckets.withUnsafeMutableBufferPointer { heads in
            for i in 0..<slab.count where !slab[i].isFree {
                let bucket = Int(truncatingIfNeeded: slab[i].hash & newMask)
                slab[i].next = heads[bucket]
                heads[bucket] = Int32(truncatingIfNeeded: i)
            }
        }
        buckets = newBuckets
        mask = newMask
    }

    // MARK: Iteration

    /// SCAN with Redis's reverse-binary cursor over bucket indexes.
    ///
    /// Incrementing the cursor in bit-reversed order means the buckets already visited at one size
    /// map to buckets already visited at any other power-of-two size, so every key present for the
    /// whole scan is returned even if the table grows or shrinks between calls (duplicates are
    /// possible after a shrink). Each visited bucket is visited whole; at least `count` buckets are
    /// visited, and more while nothing was found, up to `10 * count`. Expired keys are skipped, not
    /// deleted. Returns the next cursor, 0 when the scan is complete. `visit` must not mutate the table.
    public func scan(cursor: UInt64, count: Int, nowMs: Int64, _ visit: (EntryIndex) -> Void) -> UInt64 {
        if liveCount == 0 { return 0 }
        let minimumVisits = max(1, count)
        let maximumVisits = minimumVisits > Int.max / 10 ? Int.max : minimumVisits * 10
        let m = mask
        var v = cursor
        var visited = 0
        var found = 0
        repeat {
            var index = buckets[Int(truncatingIfNeeded: v & m)]
            while index >= 0 {
                let i = Int(index)
                if entries[i].expireAt > nowMs {
                    visit(index)
                    found += 1
                }
                index = entries[i].next
            }
            visited += 1
            v |= ~m
            v = Database.reverseBits(Database.reverseBits(v) &+ 1)
        } while v != 0 && (visited < minimumVisits || (found == 0 && visited < maximumVisits))
        return v
    }

    @inlinable
    static func reverseBits(_ value: UInt64) -> UInt64 {
        var v = value
        v = ((v >> 1) & 0x5555_5555_5555_5555) | ((v & 0x5555_5555_5555_5555) << 1)
        v = ((v >> 2) & 0x3333_3333_3333_3333) | ((v & 0x3333_3333_3333_3333) << 2)
        v = ((v >> 4) & 0x0F0F_0F0F_0F0F_0F0F) | ((v & 0x0F0F_0F0F_0F0F_0F0F) << 4)
        return v.byteSwapped
    }

    /// Calls `body` for every live (unexpired) entry in table order (KEYS). Expired entries are
    /// skipped, not deleted; `body` must not mutate the table.
    public func forEach(nowMs: Int64, _ body: (EntryIndex) -> Void) {
        for bucket in 0..<buckets.count {
            var index = buckets[bucket]
            while index >= 0 {
                let i = Int(index)
                if entries[i].expireAt > nowMs { body(index) }
                index = entries[i].next
            }
        }
    }

    /// RANDOMKEY: picks a random non-empty bucket, then a random entry of its chain (uniform-ish;
    /// the table keeps load at least 1/8 so few probes are needed). Expired picks are deleted and
    /// another is tried; nil when no live key remains.
    public func randomEntry(nowMs: Int64) -> EntryIndex? {
        var heldPicks = 0
        while liveCount > 0 {
            var head: Int32
            repeat {
                head = buckets[Int(truncatingIfNeeded: nextRandom() & mask)]
            } while head < 0
            var length = 0
            var index = head
            while index >= 0 {
                length += 1
                index = entries[Int(index)].next
            }
            var skip = Int(truncatingIfNeeded: nextRandom() % UInt64(length))
            index = head
            while skip > 0 {
                index = entries[Int(index)].next
                skip -= 1
            }
            if entries[Int(index)].expireAt <= nowMs {
                if let expiryHold, expiryHold.isHeld(nowMs: nowMs) {
                    // CLIENT PAUSE: nothing is deleted, so a table of expired keys must not
                    // spin; after a few expired picks it reports none.
                    heldPicks += 1
                    if heldPicks >= 100 { return nil }
                    continue
                }
                expire(at: index)
                continue
            }
            return index
        }
        return nil
    }

    /// SplitMix64: cheap, good enough for sampling, no syscalls.
    @usableFromInline
    func nextRandom() -> UInt64 {
        randomState &+= 0x9E37_79B9_7F4A_7C15
        var z = randomState
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    // MARK: Active expiry

    /// Active expiry, Redis-style: checks up to `maxSamples` keys with a TTL per round and deletes
    /// the expired ones, repeating while more than 25% of a round had expired, with at most
    /// `maxSamples * 16` checks in all. Samples are taken from a cursor that walks the dense TTL index
    /// (wrapping), so successive calls cover every TTL key rather than re-sampling at random.
    /// Returns the number deleted (also added to `expiredKeys`).
    public func activeExpire(nowMs: Int64, maxSamples: Int = 20) -> Int {
        if let expiryHold, expiryHold.isHeld(nowMs: nowMs) { return 0 }
        let perRound = max(1, maxSamples)
        let budget = perRound > Int.max / 16 ? Int.max : perRound * 16
        var checks = 0
        var deleted = 0
        while !ttlIndex.isEmpty && checks < budget {
            let roundSize = min(perRound, ttlIndex.count)
            var expiredThisRound = 0
            for _ in 0..<roundSize {
                if ttlIndex.isEmpty { break }
                if ttlCursor >= ttlIndex.count { ttlCursor = 0 }
                let index = ttlIndex[ttlCursor]
                checks += 1
                if entries[Int(index)].expireAt <= nowMs {
                    // The last TTL entry moves into this slot, so the cursor stays to check it next.
                    expire(at: index)
                    expiredThisRound += 1
                } else {
                    ttlCursor += 1
                }
            }
            deleted += expiredThisRound
            if expiredThisRound * 4 <= roundSize { break }
        }
        return deleted
    }

    /// Average remaining TTL in ms of keys with a TTL (INFO keyspace avg_ttl), 0 if none. Exact,
    /// from the maintained sum of expiry times; not below 0 when expired keys still linger.
    public func averageTTL(nowMs: Int64) -> Int64 {
        let n = ttlIndex.count
        if n == 0 { return 0 }
        let average = Int64(truncatingIfNeeded: expireSum / Int128(n))
        let remaining = average.subtractingReportingOverflow(nowMs)
        if remaining.overflow { return average > 0 ? .max : 0 }
        return max(0, remaining.partialValue)
    }

    // MARK: Memory

    /// Accounted bytes: slab, bucket and TTL arrays at their capacities, every key's and value's heap
    /// bytes, and a fixed object overhead. The data part is kept incrementally; the rest is O(1).
    public var usedBytes: Int {
        Database.objectOverhead
            + entries.capacity * MemoryLayout<Entry>.stride
            + (buckets.capacity + ttlIndex.capacity) * Database.linkBytes
            + dataBytes
    }

    /// MEMORY STATS's per-database overheads: the slab and bucket arrays (the main table)
    /// and the TTL index (the expires table), at their capacities.
    public var tableOverheadBytes: (main: Int, expires: Int) {
        (entries.capacity * MemoryLayout<Entry>.stride + buckets.capacity * Database.linkBytes,
         ttlIndex.capacity * Database.linkBytes)
    }

    /// MEMORY USAGE key: the slab slot, the bucket link share, the TTL slot if any, and the heap
    /// bytes of the key and the value.
    public func memoryUsage(at index: EntryIndex) -> Int {
        let i = Int(index)
        return MemoryLayout<Entry>.stride + Database.linkBytes
            + (entries[i].ttlSlot >= 0 ? Database.linkBytes : 0)
            + Entry.keyHeapBytes(length: entries.keyCount(at: i)) + entries[i].value.memoryUsage
    }

    // MARK: Access metadata

    @inlinable
    static func seconds(_ ms: Int64) -> UInt32 {
        ms <= 0 ? 0 : UInt32(truncatingIfNeeded: ms / 1000)
    }

    /// Records an access (OBJECT IDLETIME): the time in whole seconds.
    @inlinable
    public func touch(at index: EntryIndex, nowMs: Int64) {
        clockMs = nowMs
        if lfuMode {
            entries[Int(index)].accessSeconds = lfuAccessed(entries[Int(index)].accessSeconds, nowMs: nowMs)
        } else {
            entries[Int(index)].accessSeconds = Database.seconds(nowMs)
        }
    }

    /// The last access time in unix ms (second resolution).
    @inlinable
    public func lastAccessMs(at index: EntryIndex) -> Int64 {
        Int64(entries[Int(index)].accessSeconds) * 1000
    }
}
