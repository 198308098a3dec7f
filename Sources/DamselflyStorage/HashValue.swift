/// A hash stored under one key. A reference type: the value lives in one
/// shard's keyspace and is mutated in place there; replies copy out what
/// they send.
///
/// Two encodings, as Redis 7.0: "listpack" (``PackedPairs``, one buffer,
/// insertion order, linear search) while the hash has at most
/// ``maxListpackEntries`` entries and no field or value longer than
/// ``maxListpackValue`` bytes; then "hashtable" (``ByteTable``). Like Redis,
/// a hash never converts back.
public final class HashValue {
    /// `hash-max-listpack-entries` (Redis 7.0's built-in default 512; its
    /// sample redis.conf once said 128), settable with CONFIG SET.
    public static var maxListpackEntries: Int { EncodingLimits.hashMaxListpackEntries.load(ordering: .relaxed) }
    /// `hash-max-listpack-value` (default 64), settable with CONFIG SET.
    public static var maxListpackValue: Int { EncodingLimits.hashMaxListpackValue.load(ordering: .relaxed) }

    @usableFromInline var packed = PackedPairs()
    /// Non-nil once converted to the "hashtable" encoding.
    @usableFromInline var table: ByteTable? = nil

    public init() {}

    /// Number of fields.
    @inlinable
    public var count: Int { table?.count ?? packed.count }

    /// The name TYPE reports.
    public var typeName: String { "hash" }

    /// The name OBJECT ENCODING reports.
    public var encodingName: String { table == nil ? "listpack" : "hashtable" }

    @inlinable
    public var isListpack: Bool { table == nil }

    /// Approximate heap bytes, for MEMORY USAGE and used_memory.
    public var memoryUsage: Int { 48 + (table?.memoryUsage ?? packed.memoryUsage) }

    // MARK: - Reading

    /// The value of `field`.
    @inlinable
    public func get(_ field: UnsafeRawBufferPointer) -> [UInt8]? {
        if let table {
            return table.find(field).map { table.value(at: $0) }
        }
        return packed.find(field).map { packed.value(at: $0) }
    }

    @inlinable
    public func get(_ field: [UInt8]) -> [UInt8]? { field.withUnsafeBytes { get($0) } }

    @inlinable
    public func contains(_ field: [UInt8]) -> Bool {
        field.withUnsafeBytes { f in
            if let table { return table.contains(f) }
            return packed.find(f) != nil
        }
    }

    /// HSTRLEN: the length of `field`'s value (0 when absent).
    public func valueLength(_ field: [UInt8]) -> Int {
        field.withUnsafeBytes { f in
            if let table { return table.find(f).map { table.value(at: $0).count } ?? 0 }
            return packed.find(f)?.valueLength ?? 0
        }
    }

    /// Every (field, value), in the encoding's order (insertion order for
    /// listpack, table order for hashtable).
    public var pairs: [([UInt8], [UInt8])] {
        if let table {
            var out: [([UInt8], [UInt8])] = []
            out.reserveCapacity(table.count)
            table.forEachSlot { out.append((table.key(at: $0), table.value(at: $0))) }
            return out
        }
        return packed.pairs
    }

    /// Calls `body` with every field and value, in encoding order.
    public func forEach(_ body: ([UInt8], [UInt8]) -> Void) {
        if let table {
            table.forEachSlot { body(table.key(at: $0), table.value(at: $0)) }
        } else {
            packed.forEach { _, f, v in
                body(Array(f), Array(v))
                return true
            }
        }
    }

    /// ``forEach(_:)`` with each field and value read where it is stored: no array
    /// made per element (a reply encoded on the shard copies them once, into itself).
    public func forEachInPlace(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void) {
        if let table {
            table.forEachSlot { slot in
                table.key(at: slot).withUnsafeBytes { field in table.value(at: slot).withUnsafeBytes { body(field, $0) } }
            }
        } else {
            packed.forEach { _, f, v in
                body(f, v)
                return true
            }
        }
    }

    /// A uniformly random (field, value) (the hash must not be empty).
    public func randomPair<G: RandomNumberGenerator>(using rng: inout G) -> ([UInt8], [UInt8]) {
        if let table {
            let slot = table.randomSlot(using: &rng)
            return (table.key(at: slot), table.value(at: slot))
        }
        return packed.entry(Int.random(in: 0..<packed.count, using: &rng))
    }

    // MARK: - Writing

    /// Converts to "hashtable" when a string about to be stored is longer
    /// than the listpack allows (Redis's `hashTypeTryConversion`, which
    /// HSET and HSETNX run on their arguments before anything else).
    public func convertIfLonger(_ lengths: Int...) {
        guard table == nil else { return }
        if lengths.contains(where: { $0 > Self.maxListpackValue }) { convertToTable() }
    }

    /// Sets `field` to `value`; whether the field was new. Converts to
    /// "hashtable" when the entry count or a length passes the thresholds.
    @discardableResult
    public func set(_ field: [UInt8], _ value: [UInt8]) -> Bool {
        if table == nil && (field.count > Self.maxListpackValue || value.count > Self.maxListpackValue) {
            convertToTable()
        }
        if table != nil { return table!.set(field, value) }
        let isNew = field.withUnsafeBytes { f in value.withUnsafeBytes { v in packed.set(f, v) } }
        if packed.count > Self.maxListpackEntries { convertToTable() }
        return isNew
    }

    /// Removes `field`; whether it was there.
    @discardableResult
    public func remove(_ field: [UInt8]) -> Bool {
        field.withUnsafeBytes { f in
            if table != nil { return table!.remove(f) }
            return packed.remove(f)
        }
    }

    /// Switches to the "hashtable" encoding, keeping the contents.
    public func convertToTable() {
        guard table == nil else { return }
        var t = ByteTable(withValues: true, capacity: packed.count)
        packed.forEach { _, f, v in
            t.set(Array(f), Array(v))
            return true
        }
        packed = PackedPairs()
        table = t
    }

    // MARK: - HSCAN

    /// One HSCAN step: a listpack returns everything with cursor 0 (as
    /// Redis does for compact encodings); a hashtable walks buckets from
    /// `cursor` until about `count` entries are collected (at most
    /// `count * 10` buckets, like Redis).
    public func scan(cursor: UInt64, count: Int, _ visit: ([UInt8], [UInt8]) -> Void) -> UInt64 {
        guard let table else {
            forEach(visit)
            return 0
        }
        var next = cursor
        var seen = 0
        var buckets = count * 10
        repeat {
            next = table.scan(cursor: next) { slot in
                visit(table.key(at: slot), table.value(at: slot))
                seen += 1
            }
            buckets -= 1
        } while next != 0 && buckets > 0 && seen < count
        return next
    }
}
