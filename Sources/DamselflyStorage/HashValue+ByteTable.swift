/// The "hashtable" encoding shared by ``HashValue`` (field → value) and
/// ``SetValue`` (members only): a chained hash table over byte strings.
///
/// Why not `Dictionary<[UInt8], [UInt8]>`: HSCAN and SSCAN need Redis's
/// cursor guarantee (every element present for the whole iteration is
/// returned at least once, even when the table grows or shrinks between
/// calls). That needs the bucket index to be a pure function of the hash and
/// the bucket count, which a chained table with power-of-two buckets and a
/// reverse-binary cursor gives (Redis's `dictScan`), and Swift's open
/// addressing with backward-shift deletion does not.
///
/// Layout: entries live in parallel arrays indexed by slot (`keys`,
/// `values`, `hashes`, `next`); `heads` holds each bucket's first slot.
/// Freed slots form a free list threaded through `next` (encoded below
/// -1), and the arrays are compacted when more than half of them are free,
/// so a random occupied slot is found in a couple of probes (SPOP,
/// SRANDMEMBER, HRANDFIELD).
public struct ByteTable {
    @usableFromInline var heads: [Int32] = []
    @usableFromInline var keys: [[UInt8]] = []
    @usableFromInline var values: [[UInt8]] = []
    @usableFromInline var hashes: [UInt32] = []
    /// Chain link for occupied slots (-1 ends a chain); for free slots
    /// `-3 - nextFree` (so -2 ends the free list).
    @usableFromInline var next: [Int32] = []
    @usableFromInline var freeHead: Int32 = -1
    public private(set) var count = 0
    /// Whether entries carry a value (hash) or only a key (set).
    public let withValues: Bool
    /// Heap bytes held by the element arrays (keys and values).
    @usableFromInline var elementBytes = 0

    public init(withValues: Bool, capacity: Int = 0) {
        self.withValues = withValues
        if capacity > 0 { rebuild(buckets: Self.bucketCount(for: capacity)) }
    }

    @inlinable
    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        UInt32(truncatingIfNeeded: KeyHash.hash(bytes))
    }

    static func bucketCount(for count: Int) -> Int {
        var n = 4
        while n < count { n <<= 1 }
        return n
    }

    // MARK: - Lookup

    /// The slot holding `key`, if any.
    @inlinable
    public func find(_ key: UnsafeRawBufferPointer) -> Int? {
        if heads.isEmpty { return nil }
        let h = Self.hash(key)
        var slot = heads[Int(h) & (heads.count - 1)]
        while slot >= 0 {
            let i = Int(slot)
            if hashes[i] == h && ByteArray.equals(keys[i], key) { return i }
            slot = next[i]
        }
        return nil
    }

    @inlinable
    public func contains(_ key: UnsafeRawBufferPointer) -> Bool { find(key) != nil }

    @inlinable
    public func key(at slot: Int) -> [UInt8] { keys[slot] }

    @inlinable
    public func value(at slot: Int) -> [UInt8] { values[slot] }

    @inlinable
    public func isOccupied(_ slot: Int) -> Bool { next[slot] >= -1 }

    /// One past the highest slot index (iterate `0..<slotCount` and skip
    /// unoccupied slots).
    @inlinable
    public var slotCount: Int { keys.count }

    /// Calls `body` with every occupied slot, in slot order.
    @inlinable
    public func forEachSlot(_ body: (Int) throws -> Void) rethrows {
        for i in 0..<keys.count where next[i] >= -1 { try body(i) }
    }

    // MARK: - Changes

    /// Inserts `key` (with `value` in a hash table), or replaces the value
    /// of an existing key. Whether the key was new.
    @discardableResult
    public mutating func set(_ key: [UInt8], _ value: [UInt8] = []) -> Bool {
        let found = key.withUnsafeBytes { find($0) }
        if let found {
            if withValues {
                elementBytes += ByteArray.heapBytes(value) - ByteArray.heapBytes(values[found])
                values[found] = value
            }
            return false
        }
        insertNew(key, value, hash: key.withUnsafeBytes { Self.hash($0) })
        return true
    }

    /// Replaces the value in an occupied slot.
    public mutating func setValue(_ value: [UInt8], at slot: Int) {
        elementBytes += ByteArray.heapBytes(value) - ByteArray.heapBytes(values[slot])
        values[slot] = value
    }

    /// Inserts a key known to be absent.
    mutating func insertNew(_ key: [UInt8], _ value: [UInt8], hash h: UInt32) {
        if count + 1 > heads.count { rebuild(buckets: Self.bucketCount(for: count + 1)) }
        let bucket = Int(h) & (heads.count - 1)
        let slot: Int
        if freeHead >= 0 {
            slot = Int(freeHead)
            freeHead = -3 - next[slot]
            keys[slot] = key
            if withValues { values[slot] = value }
            hashes[slot] = h
            next[slot] = heads[bucket]
        } else {
            slot = keys.count
            keys.append(key)
            if withValues { values.append(value) }
            hashes.append(h)
            next.append(heads[bucket])
        }
        heads[bucket] = Int32(slot)
        count += 1
        elementBytes += ByteArray.heapBytes(key) + (withValues ? ByteArray.heapBytes(value) : 0)
    }

    /// Removes `key`; whether it was there.
    @discardableResult
    public mutating func remove(_ key: UnsafeRawBufferPointer) -> Bool {
        guard let slot = find(key) else { return false }
        removeSlot(slot)
        return true
    }

    /// Removes the entry in an occupied slot.
    public mutating func removeSlot(_ slot: Int) {
        let bucket = Int(hashes[slot]) & (heads.count - 1)
        // Unlink from the bucket chain.
        if heads[bucket] == Int32(slot) {
            heads[bucket] = next[slot]
        } else {
            var p = Int(heads[bucket])
            while next[p] != Int32(slot) { p = Int(next[p]) }
            next[p] = next[slot]
        }
        elementBytes -= ByteArray.heapBytes(keys[slot]) + (withValues ? ByteArray.heapBytes(values[slot]) : 0)
        keys[slot] = []
        if withValues { values[slot] = [] }
        next[slot] = -3 - freeHead
        freeHead = Int32(slot)
        count -= 1
        if count == 0 {
            self = ByteTable(withValues: withValues)
        } else if count * 8 < heads.count && heads.count > 4 {
            rebuild(buckets: Self.bucketCount(for: count))
        } else if keys.count > 16 && count * 2 < keys.count {
            rebuild(buckets: heads.count)
        }
    }

    /// Re-lays the table densely (slots 0..<count, original slot order) over
    /// `buckets` buckets. Bucket placement depends only on the hash, so a
    /// scan cursor stays valid across this.
    mutating func rebuild(buckets: Int) {
        var newKeys: [[UInt8]] = []
        var newValues: [[UInt8]] = []
        var newHashes: [UInt32] = []
        var newNext: [Int32] = []
        newKeys.reserveCapacity(max(count, buckets))
        newHashes.reserveCapacity(max(count, buckets))
        newNext.reserveCapacity(max(count, buckets))
        if withValues { newValues.reserveCapacity(max(count, buckets)) }
        var newHeads = [Int32](repeating: -1, count: buckets)
        for i in 0..<keys.count where next[i] >= -1 {
            let slot = newKeys.count
            let bucket = Int(hashes[i]) & (buckets - 1)
            newKeys.append(keys[i])
            if withValues { newValues.append(values[i]) }
            newHashes.append(hashes[i])
            newNext.append(newHeads[bucket])
            newHeads[bucket] = Int32(slot)
        }
        keys = newKeys
        values = newValues
        hashes = newHashes
        next = newNext
        heads = newHeads
        freeHead = -1
    }

    // MARK: - Random and scan

    /// A uniformly random occupied slot (the table must not be empty).
    public func randomSlot<G: RandomNumberGenerator>(using rng: inout G) -> Int {
        precondition(count > 0)
        while true {
            let i = Int.random(in: 0..<keys.count, using: &rng)
            if next[i] >= -1 { return i }
        }
    }

    /// Visits the entries of the bucket named by `cursor` (and, like
    /// Redis's `dictScan`, returns the next cursor in reverse-binary order;
    /// 0 when the walk is complete).
    public func scan(cursor: UInt64, _ visit: (Int) -> Void) -> UInt64 {
        if heads.isEmpty { return 0 }
        let mask = UInt64(heads.count - 1)
        var slot = heads[Int(cursor & mask)]
        while slot >= 0 {
            visit(Int(slot))
            slot = next[Int(slot)]
        }
        // Increment the reversed cursor (only the masked bits count).
        var v = cursor | ~mask
        v = reverseBits(v)
        v &+= 1
        v = reverseBits(v)
        return v
    }

    @inlinable
    func reverseBits(_ value: UInt64) -> UInt64 {
        var v = value
        var r: UInt64 = 0
        for _ in 0..<64 {
            r = (r << 1) | (v & 1)
            v >>= 1
        }
        return r
    }

    // MARK: - Memory

    /// Heap bytes: the element arrays plus the table's own arrays.
    public var memoryUsage: Int {
        var total = elementBytes
        total += heads.capacity * 4 + hashes.capacity * 4 + next.capacity * 4
        total += keys.capacity * 8 + values.capacity * 8
        return total + 4 * ByteArray.headerBytes
    }
}
