/// A decoded reply (client side: load generator and tests). RESP3 attributes are parsed and
/// dropped by the decoder, so they have no case here.
public indirect enum RESPValue: Equatable, Sendable {
    case simpleString(String)
    /// `-...` and RESP3 blob errors `!...`, with the code ("ERR ...").
    case error(String)
    case integer(Int64)
    /// `nil` for the RESP2 null bulk `$-1`.
    case bulk([UInt8]?)
    /// `nil` for the RESP2 null array `*-1`.
    case array([RESPValue]?)
    /// RESP3 `_`.
    case null
    case double(Double)
    case boolean(Bool)
    /// Pairs in wire order (keys may repeat or be aggregates, so not a Dictionary).
    case map([(RESPValue, RESPValue)])
    case set([RESPValue])
    case push([RESPValue])
    case verbatim(format: String, text: String)
    case bigNumber(String)

    /// Structural equality; doubles compare by value, with NaN equal to NaN so that decoded
    /// replies can be compared in tests.
    public static func == (lhs: RESPValue, rhs: RESPValue) -> Bool {
        switch (lhs, rhs) {
        case let (.simpleString(a), .simpleString(b)): return a == b
        case let (.error(a), .error(b)): return a == b
        case let (.integer(a), .integer(b)): return a == b
        case let (.bulk(a), .bulk(b)): return a == b
        case let (.array(a), .array(b)): return a == b
        case (.null, .null): return true
        case let (.double(a), .double(b)): return a == b || (a.isNaN && b.isNaN)
        case let (.boolean(a), .boolean(b)): return a == b
        case let (.map(a), .map(b)):
            guard a.count == b.count else { return false }
            for i in a.indices where a[i].0 != b[i].0 || a[i].1 != b[i].1 { return false }
            return true
        case let (.set(a), .set(b)): return a == b
        case let (.push(a), .push(b)): return a == b
        case let (.verbatim(f1, t1), .verbatim(f2, t2)): return f1 == f2 && t1 == t2
        case let (.bigNumber(a), .bigNumber(b)): return a == b
        default: return false
        }
    }
}

/// Malformed reply bytes.
public struct RESPDecodeError: Error, Equatable, Sendable {
    /// What was wrong.
    public var message: String
    /// Offset of the reply element that could not be decoded.
    public var offset: Int

    public init(_ message: String, offset: Int) {
        self.message = message
        self.offset = offset
    }
}
