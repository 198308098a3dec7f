// MARK: - Neutral value model

/// A value as the RDB format sees it, independent of how the keyspace stores it.
///
/// The server converts its own encodings into an ``RDBValue`` slice by slice while a
/// snapshot runs, and back when it loads one; the format layer never sees the keyspace.
/// Collections keep the caller's order: ``RDBWriter`` chooses the on-disk encoding
/// (listpack, intset, quicklist, hashtable) from sizes alone, as Redis 7.0 would.
public enum RDBValue: Equatable, Sendable {
    case string([UInt8])
    case list([[UInt8]])
    case set([[UInt8]])
    /// Field/value pairs in storage order.
    case hash([([UInt8], [UInt8])])
    /// Member/score pairs; NaN is not a valid score.
    case zset([([UInt8], Double)])
    /// A stream with its consumer groups.
    case stream(RDBStream)

    public static func == (lhs: RDBValue, rhs: RDBValue) -> Bool {
        switch (lhs, rhs) {
        case let (.string(a), .string(b)): return a == b
        case let (.list(a), .list(b)): return a == b
        case let (.set(a), .set(b)): return a == b
        case let (.hash(a), .hash(b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case let (.zset(a), .zset(b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case let (.stream(a), .stream(b)): return a == b
        default: return false
        }
    }

    /// Elements (list items, set members, hash pairs, zset members), or 1 for a string.
    public var count: Int {
        switch self {
        case .string: return 1
        case let .list(items): return items.count
        case let .set(members): return members.count
        case let .hash(pairs): return pairs.count
        case let .zset(pairs): return pairs.count
        case let .stream(s): return s.entries.count
        }
    }
}

/// One key of one logical database, as stored in (or read from) an RDB file.
public struct RDBEntry: Equatable, Sendable {
    public var database: Int
    public var key: [UInt8]
    public var value: RDBValue
    /// Absolute expiry in Unix milliseconds, or `nil` for a persistent key.
    public var expireAtMs: Int64?

    public init(database: Int = 0, key: [UInt8], value: RDBValue, expireAtMs: Int64? = nil) {
        self.database = database
        self.key = key
        self.value = value
        self.expireAtMs = expireAtMs
    }
}
