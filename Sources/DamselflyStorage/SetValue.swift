/// A set stored under one key. A reference type: the value lives in one
/// shard's keyspace and is mutated in place there; replies copy out what
/// they send.
///
/// Two encodings, as Redis 7.0 (7.2 added a listpack in between; 7.0 has
/// none): "intset" — a sorted array of integers, binary-searched — while
/// every member is a canonical 64-bit integer and there are at most
/// ``maxIntsetEntries``; otherwise "hashtable" (``ByteTable``). Like Redis,
/// a set never converts back.
public final class SetValue {
    /// `set-max-intset-entries` (default 512), settable with CONFIG SET.
    public static var maxIntsetEntries: Int { EncodingLimits.setMaxIntsetEntries.load(ordering: .relaxed) }

    /// The members while the encoding is "intset", ascending.
    @usableFromInline var ints: [Int64] = []
    /// Non-nil once converted to the "hashtable" encoding.
    @usableFromInline var table: ByteTable? = nil

    /// An empty "intset".
    public init() {}

    /// An empty set in the encoding Redis's `setTypeCreate` picks for its
    /// first member: "intset" for an integer, "hashtable" otherwise.
    public init(firstMember: [UInt8]) {
        if Self.integerValue(firstMember) == nil { table = ByteTable(withValues: false) }
    }

    /// Number of members.
    @inlinable
    public var count: Int { table?.count ?? ints.count }

    /// The name TYPE reports.
    public var typeName: String { "set" }

    /// The name OBJECT ENCODING reports.
    public var encodingName: String { table == nil ? "intset" : "hashtable" }

    @inlinable
    public var isIntset: Bool { table == nil }

    /// Approximate heap bytes, for MEMORY USAGE and used_memory.
    public var memoryUsage: Int {
        48 + (table?.memoryUsage ?? (ints.capacity == 0 ? 0 : ByteArray.headerBytes + ints.capacity * 8))
    }

    /// A member as an intset integer: Redis's `string2ll` rule.
    @inlinable
    static func integerValue(_ member: [UInt8]) -> Int64? {
        member.withUnsafeBytes { RedisNumber.parseInt64($0) }
    }

    @inlinable
    static func bytes(_ value: Int64) -> [UInt8] {
        RedisNumber.withDecimalBytes(of: value) { Array($0) }
    }

    /// Index of the first element not below `value` in `ints`.
    @inlinable
    func lowerBound(_ value: Int64) -> Int {
        var lo = 0, hi = ints.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if ints[mid] < value { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    // MARK: - Reading

    public func contains(_ member: [UInt8]) -> Bool {
        if let table { return member.withUnsafeBytes { table.contains($0) } }
        guard let v = Self.integerValue(member) else { return false }
        let i = lowerBound(v)
        return i < ints.count && ints[i] == v
    }

    /// Every member, in the encoding's order (ascending for intset).
    public var members: [[UInt8]] {
        if let table {
            var out: [[UInt8]] = []
            out.reserveCapacity(table.count)
            table.forEachSlot { out.append(table.key(at: $0)) }
            return out
        }
        return ints.map(Self.bytes)
    }

    /// Calls `body` with every member, in encoding order.
    public func forEach(_ body: ([UInt8]) -> Void) {
        if let table {
            table.forEachSlot { body(table.key(at: $0)) }
        } else {
            for v in ints { body(Self.bytes(v)) }
        }
    }

    /// A uniformly random member (the set must not be empty).
    public func randomMember<G: RandomNumberGenerator>(using rng: inout G) -> [UInt8] {
        if let table { return table.key(at: table.randomSlot(using: &rng)) }
        return Self.bytes(ints[Int.random(in: 0..<ints.count, using: &rng)])
    }

    // MARK: - Writing

    /// Adds `member`; whether it was new. Converts to "hashtable" on a
    /// non-integer member or past ``maxIntsetEntries`` (Redis's `setTypeAdd`).
    @discardableResult
    public func add(_ member: [UInt8]) -> Bool {
        if table != nil { return table!.set(member) }
        guard let v = Self.integerValue(member) else {
            convertToTable()
            return table!.set(member)
        }
        let i = lowerBound(v)
        if i < ints.count && ints[i] == v { return false }
        ints.insert(v, at: i)
        if ints.count > Self.maxIntsetEntries { convertToTable() }
        return true
    }

    /// Removes `member`; whether it was there.
    @discardableResult
    public func remove(_ member: [UInt8]) -> Bool {
        if table != nil { return member.withUnsafeBytes { table!.remove($0) } }
        guard let v = Self.integerValue(member) else { return false }
        let i = lowerBound(v)
        guard i < ints.count && ints[i] == v else { return false }
        ints.remove(at: i)
        if ints.isEmpty { ints = [] }
        return true
    }

    /// Removes and returns a uniformly random member (the set must not be empty).
    public func popRandom<G: RandomNumberGenerator>(using rng: inout G) -> [UInt8] {
        if table != nil {
            let slot = table!.randomSlot(using: &rng)
            let member = table!.key(at: slot)
            table!.removeSlot(slot)
            return member
        }
        return Self.bytes(ints.remove(at: Int.random(in: 0..<ints.count, using: &rng)))
    }

    /// Switches to the "hashtable" encoding, keeping the contents.
    public func convertToTable() {
        guard table == nil else { return }
        var t = ByteTable(withValues: false, capacity: ints.count + 1)
        for v in ints { t.set(Self.bytes(v)) }
        ints = []
        table = t
    }

    // MARK: - SSCAN

    /// One SSCAN step: an intset returns everything with cursor 0 (as Redis
    /// does); a hashtable walks buckets from `cursor` until about `count`
    /// members are collected (at most `count * 10` buckets, like Redis).
    public func scan(cursor: UInt64, count: Int, _ visit: ([UInt8]) -> Void) -> UInt64 {
        guard let table else {
            forEach(visit)
            return 0
        }
        var next = cursor
        var seen = 0
        var buckets = count * 10
        repeat {
            next = table.scan(cursor: next) { slot in
                visit(table.key(at: slot))
                seen += 1
            }
            buckets -= 1
        } while next != 0 && buckets > 0 && seen < count
        return next
    }
}
