#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The "listpack" encoding of a small hash: every field and value packed
/// into one byte buffer as `[field length][field][value length][value]`,
/// in insertion order, searched linearly — as Redis's listpack, one
/// allocation for the whole hash instead of two per entry.
///
/// Lengths fit one byte because the encoding only holds strings of at
/// most ``HashValue/maxListpackValue`` (64) bytes; a longer one converts the
/// hash to a ``ByteTable`` first.
public struct PackedPairs {
    @usableFromInline var buffer: [UInt8] = []
    public private(set) var count = 0

    public init() {}

    /// Where an entry sits in the buffer.
    public struct Position {
        /// Offset of the field's length byte.
        public let entry: Int
        /// Offset and length of the value bytes.
        public let valueStart: Int
        public let valueLength: Int
        /// Offset just past the entry.
        public var end: Int { valueStart + valueLength }

        @inlinable
        init(entry: Int, valueStart: Int, valueLength: Int) {
            self.entry = entry
            self.valueStart = valueStart
            self.valueLength = valueLength
        }
    }

    /// Calls `body` with each entry's position, field and value, in order;
    /// stops when `body` returns false.
    @inlinable
    public func forEach(_ body: (Position, UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool) rethrows {
        try buffer.withUnsafeBytes { raw in
            var i = 0
            while i < raw.count {
                let fieldLength = Int(raw[i])
                let fieldStart = i + 1
                let valueLength = Int(raw[fieldStart + fieldLength])
                let valueStart = fieldStart + fieldLength + 1
                let position = Position(entry: i, valueStart: valueStart, valueLength: valueLength)
                let field = UnsafeRawBufferPointer(rebasing: raw[fieldStart..<(fieldStart + fieldLength)])
                let value = UnsafeRawBufferPointer(rebasing: raw[valueStart..<(valueStart + valueLength)])
                if try !body(position, field, value) { return }
                i = valueStart + valueLength
            }
        }
    }

    /// The position of `field`'s entry.
    @inlinable
    public func find(_ field: UnsafeRawBufferPointer) -> Position? {
        var found: Position? = nil
        forEach { position, f, _ in
            if f.count == field.count && (f.count == 0 || memcmp(f.baseAddress!, field.baseAddress!, f.count) == 0) {
                found = position
                return false
            }
            return true
        }
        return found
    }

    /// The value at a position.
    @inlinable
    public func value(at position: Position) -> [UInt8] {
        Array(buffer[position.valueStart..<position.end])
    }

    /// All entries as (field, value) arrays, in order.
    public var pairs: [([UInt8], [UInt8])] {
        var out: [([UInt8], [UInt8])] = []
        out.reserveCapacity(count)
        forEach { _, f, v in
            out.append((Array(f), Array(v)))
            return true
        }
        return out
    }

    /// Sets `field` to `value` (both at most 255 bytes), replacing an
    /// existing value in place or appending a new entry. Whether it was new.
    @discardableResult
    public mutating func set(_ field: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Bool {
        if let position = find(field) {
            setValue(value, at: position)
            return false
        }
        buffer.reserveCapacity(buffer.count + field.count + value.count + 2)
        buffer.append(UInt8(field.count))
        buffer.append(contentsOf: field)
        buffer.append(UInt8(value.count))
        buffer.append(contentsOf: value)
        count += 1
        return true
    }

    /// Replaces the value of the entry at `position`.
    public mutating func setValue(_ value: UnsafeRawBufferPointer, at position: Position) {
        buffer[position.valueStart - 1] = UInt8(value.count)
        buffer.replaceSubrange(position.valueStart..<position.end, with: value)
    }

    /// Removes `field`; whether it was there.
    @discardableResult
    public mutating func remove(_ field: UnsafeRawBufferPointer) -> Bool {
        guard let position = find(field) else { return false }
        remove(at: position)
        return true
    }

    /// Removes the entry at `position`.
    public mutating func remove(at position: Position) {
        buffer.removeSubrange(position.entry..<position.end)
        count -= 1
        if count == 0 { buffer = [] }
    }

    /// The entry with index `n` (0-based, in order).
    public func entry(_ n: Int) -> ([UInt8], [UInt8]) {
        var k = 0
        var out: ([UInt8], [UInt8]) = ([], [])
        forEach { _, f, v in
            if k == n {
                out = (Array(f), Array(v))
                return false
            }
            k += 1
            return true
        }
        return out
    }

    /// Heap bytes of the buffer.
    public var memoryUsage: Int { ByteArray.heapBytes(buffer) }
}
