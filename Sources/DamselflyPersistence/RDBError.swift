/// Why an RDB file or DUMP payload was refused. Every case names the byte offset
/// where reading stopped, so a start-up failure can say where the file went wrong.
public enum RDBError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The input ended at `offset` while `needed` more bytes were expected.
    case truncated(offset: Int, needed: Int)
    /// A structure at `offset` is malformed.
    case corrupt(offset: Int, reason: String)
    /// The stored CRC64 (at `offset`) does not match the bytes before it.
    case checksumMismatch(offset: Int, stored: UInt64, computed: UInt64)
    /// Valid RDB, but something this layer does not load (modules, streams, newer versions).
    case unsupported(offset: Int, reason: String)

    /// The byte offset the error refers to.
    public var offset: Int {
        switch self {
        case let .truncated(offset, _), let .corrupt(offset, _), let .unsupported(offset, _): return offset
        case let .checksumMismatch(offset, _, _): return offset
        }
    }

    public var description: String {
        switch self {
        case let .truncated(offset, needed):
            return "RDB truncated at offset \(offset) (\(needed) more bytes expected)"
        case let .corrupt(offset, reason):
            return "RDB corrupt at offset \(offset): \(reason)"
        case let .checksumMismatch(offset, stored, computed):
            return "RDB checksum mismatch at offset \(offset): stored \(hex(stored)), computed \(hex(computed))"
        case let .unsupported(offset, reason):
            return "RDB unsupported at offset \(offset): \(reason)"
        }
    }

    private func hex(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return "0x" + String(repeating: "0", count: 16 - s.count) + s
    }
}
