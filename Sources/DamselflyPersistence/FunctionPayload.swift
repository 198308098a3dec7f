// MARK: - FUNCTION DUMP / RESTORE payloads

/// The serialization of FUNCTION DUMP and FUNCTION RESTORE, as Redis 7.0 writes it: one
/// `FUNCTION2` opcode (245) and the library's code as an RDB string per library, then the
/// RDB version (u16 LE) and a CRC64 (LE) over everything before it — the trailer of DUMP.
/// RDB files carry the same opcode-and-code pairs before their first database.
public enum FunctionPayload {
    /// Why a payload could not be read; the texts are Redis 7.0's replies.
    public enum Failure: Error, Equatable {
        /// Too short, a newer RDB version, or a wrong checksum.
        case versionOrChecksum
        /// An opcode other than a function library.
        case notAFunction
        /// A library string that does not parse.
        case malformed

        public var message: String {
            switch self {
            case .versionOrChecksum: return "ERR DUMP payload version or checksum are wrong"
            case .notAFunction: return "ERR given type is not a function"
            case .malformed: return "ERR failed loading the given functions payload"
            }
        }
    }

    public static func encode(_ libraries: [[UInt8]]) -> [UInt8] {
        var out = [UInt8]()
        for code in libraries {
            out.append(RDBOpcode.function2)
            RDBEncoder.appendString(&out, code)
        }
        appendLE(&out, UInt64(rdbVersionWritten), 2)
        appendLE(&out, CRC64.checksum(out), 8)
        return out
    }

    /// The libraries' code, in payload order.
    public static func decode(_ bytes: [UInt8]) throws(Failure) -> [[UInt8]] {
        let n = bytes.count
        guard n >= 10 else { throw .versionOrChecksum }
        guard Int(readLE(bytes, n - 10, 2)) <= rdbVersionWritten else { throw .versionOrChecksum }
        guard readLE(bytes, n - 8, 8) == CRC64.checksum(bytes[0..<(n - 8)]) else { throw .versionOrChecksum }
        var cursor = RDBCursor(bytes: bytes, end: n - 10)
        var libraries: [[UInt8]] = []
        while cursor.remaining > 0 {
            guard let type = try? cursor.byte(), type == RDBOpcode.function2 else { throw .notAFunction }
            guard let code = try? cursor.string() else { throw .malformed }
            libraries.append(code)
        }
        return libraries
    }
}
