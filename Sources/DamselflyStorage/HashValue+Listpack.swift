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
/// Each length is a little-endian base-128 varint: one byte for the default
/// thresholds (strings of at most 64 bytes), more when CONFIG SET
/// hash-max-listpack-value allows longer strings (Redis's suite packs
/// 16 KiB values this way), so no threshold can overflow a length.
public struct PackedPairs {
    @usableFromInline var buffer: [UInt8] = []
    public private(set) var count = 0

    public init() {}

    /// Where an entry sits in the buffer.
    public struct Position {
        /// Offset of the field's length prefix.
        public let entry: Int
        /// Offset of the value's length prefix.
        public let valueHeader: Int
        /// Offset and length of the value bytes.
        public let valueStart: Int
        public let valueLength: Int
        /// Offset just past the entry.
        public var end: Int { valueStart + valueLength }

        @inlinable
        init(entry: Int, valueHeader: Int, valueStart: Int, valueLength: Int) {
            self.entry = entry
            self.valueHeader = valueHeader
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
                var fieldStart = i
                let fieldLength = Self.readLength(raw, &fieldStart)
                let valueHeader = fieldStart + fieldLength
                var valueStart = valueHeader
                let valueLength = Self.readLength(raw, &valueStart)
                let position = Position(entry: i, valueHeader: valueHeader, valueStart: valueStart, valueLength: valueLength)
                let field = UnsafeRawBufferPointer(rebasing: raw[fieldStart..<(fieldStart + fieldLength)])
                let value = UnsafeRawBufferPointer(rebasing: raw[valueStart..<(valueStart + valueLength)])
                if try !body(position, field, value) { return }
                i = valueStart + valueLength
            }
        }
    }

    /// Reads the varint length at `offset`, leaving `offset` just past it.
    @inlinable
    static func readLength(_ raw: UnsafeRawBufferPointer, _ offset: inout Int) -> Int {
        var length = 0
        var shift = 0
        while true {
            let byte = raw[offset]
            offset += 1
            length |= Int(byte & 0x7F) << shift
            if byte < 0x80 { return length }
            shift += 7
        }
    }

    /// `length` as a varint.
    @inlinable
    static func lengthBytes(_ length: Int) -> [UInt8] {
        var out: [UInt8] = []
        var rest = length
        while rest >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        out.append(UInt8(rest))
        return out
    }

    /// Appends `length` as a varint.
    @inlinable
    mutating func appendLength(_ length: Int) {
        if length < 0x80 {
            buffer.append(UInt8(length))
        } else {
            buffer.append(contentsOf: Self.lengthBytes(length))
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

    /// Sets `field` to `value` (any lengths), replacing an
    /// existing value in place or appending a new entry. Whether it was new.
    @discardableResult
    public mutating func set(_ field: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Bool {
        if let position = find(field) {
            setValue(value, at: position)
            return false
        }
        buffer.reserveCapacity(buffer.count + field.count + value.count + 2)
        appendLength(field.count)
        buffer.append(contentsOf: field)
        appendLength(value.count)
        buffer.append(contentsOf: value)
        count += 1
        return true
    }

    /// Replaces the value of the entry at `position`.
    public mutating func setValue(_ value: UnsafeRawBufferPointer, at position: Position) {
        if position.valueStart - position.valueHeader == 1 && value.count < 0x80 {
            buffer[position.valueHeader] = UInt8(value.count)
            buffer.replaceSubrange(position.valueStart..<position.end, with: value)
        } else {
            buffer.replaceSubrange(position.valueHeader..<position.end, with: Self.lengthBytes(value.count) + Array(value))
        }
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
