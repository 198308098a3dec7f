/// A value stored under a key.
///
/// Later work adds list, hash, set and sorted-set cases; code in this module switches exhaustively
/// so the compiler points at every place that must learn about a new case.
public enum StoredValue {
    /// A string whose bytes are a canonical signed 64-bit integer (Redis OBJECT ENCODING "int"):
    /// kept as a number so INCR and friends need no parsing and no heap.
    case int(Int64)
    /// Any other string ("embstr" when at most 44 bytes, else "raw").
    case bytes([UInt8])
    /// A string changed in place (APPEND, SETRANGE): Redis reports such a
    /// string as "raw" whatever its length, so we keep that fact.
    case raw([UInt8])
    case list(ListValue)
    case hash(HashValue)
    case set(SetValue)
    case zset(SortedSetValue)
    case stream(StreamValue)

    /// Longest string Redis stores as "embstr"; longer ones report "raw".
    public static let embstrLimit = 44

    /// Builds a string value the way Redis's `tryObjectEncoding` does: bytes that are a canonical
    /// integer (no leading zeros or '+', "-0" excluded, at most 20 characters) become `.int`, so
    /// the encoding reported by OBJECT ENCODING matches Redis.
    @inlinable
    public static func string(_ bytes: UnsafeRawBufferPointer) -> StoredValue {
        if bytes.count <= 20, let n = RedisNumber.parseInt64(bytes) {
            return .int(n)
        }
        return .bytes(ByteArray.copy(bytes))
    }

    /// Builds a string value from an array the caller already owns, without copying it unless it
    /// turns out to be an integer.
    @inlinable
    public static func string(_ array: [UInt8]) -> StoredValue {
        if array.count <= 20, let n = array.withUnsafeBytes({ RedisNumber.parseInt64($0) }) {
            return .int(n)
        }
        return .bytes(array)
    }

    /// The name TYPE reports.
    public var typeName: String {
        switch self {
        case .int, .bytes, .raw: return "string"
        case .list(let v): return v.typeName
        case .hash(let v): return v.typeName
        case .set(let v): return v.typeName
        case .zset(let v): return v.typeName
        case .stream(let v): return v.typeName
        }
    }

    /// The name OBJECT ENCODING reports.
    public var encodingName: String {
        switch self {
        case .int: return "int"
        case .bytes(let b): return b.count <= StoredValue.embstrLimit ? "embstr" : "raw"
        case .raw: return "raw"
        case .list(let v): return v.encodingName
        case .hash(let v): return v.encodingName
        case .set(let v): return v.encodingName
        case .zset(let v): return v.encodingName
        case .stream(let v): return v.encodingName
        }
    }

    /// Whether this value is a string (GET, APPEND, ... accept it; other types get WRONGTYPE).
    @inlinable
    public var isString: Bool {
        switch self {
        case .int, .bytes, .raw: return true
        case .list, .hash, .set, .zset, .stream: return false
        }
    }

    /// Calls `body` with the string bytes: the array's bytes, or the decimal digits of an `.int`
    /// formatted into a stack buffer so reading an integer string never allocates.
    @inlinable
    public func withStringBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch self {
        case .int(let n): return try RedisNumber.withDecimalBytes(of: n, body)
        case .bytes(let b), .raw(let b): return try b.withUnsafeBytes(body)
        case .list, .hash, .set, .zset, .stream: return try body(UnsafeRawBufferPointer(start: nil, count: 0))
        }
    }

    /// STRLEN: the length of the string form.
    @inlinable
    public var stringLength: Int {
        switch self {
        case .int(let n): return RedisNumber.decimalLength(of: n)
        case .bytes(let b), .raw(let b): return b.count
        case .list, .hash, .set, .zset, .stream: return 0
        }
    }

    /// Approximate heap bytes held by the value (not counting the table entry that holds it), used
    /// for MEMORY USAGE and used_memory: `.int` lives inside the entry, so 0; `.bytes` is the array
    /// storage, a 32-byte header plus its capacity.
    @inlinable
    public var memoryUsage: Int {
        switch self {
        case .int: return 0
        case .bytes(let b), .raw(let b): return ByteArray.heapBytes(b)
        case .list(let v): return v.memoryUsage
        case .hash(let v): return v.memoryUsage
        case .set(let v): return v.memoryUsage
        case .zset(let v): return v.memoryUsage
        case .stream(let v): return v.memoryUsage
        }
    }
}

extension StoredValue {
    /// A deep copy: aggregates are reference types mutated in place, so COPY
    /// (and anything else that duplicates a value) must not share them.
    public func duplicate() -> StoredValue {
        switch self {
        case .int, .bytes, .raw:
            return self
        case .list(let list):
            return .list(list.copy())
        case .hash(let hash):
            let copy = HashValue()
            if !hash.isListpack { copy.convertToTable() }
            hash.forEach { field, value in _ = copy.set(field, value) }
            return .hash(copy)
        case .set(let set):
            let copy = SetValue()
            if !set.isIntset { copy.convertToTable() }
            set.forEach { _ = copy.add($0) }
            return .set(copy)
        case .zset(let zset):
            let copy = SortedSetValue(sortedEntries: zset.allEntries)
            if !zset.isListpack && copy.isListpack { copy.convertToSkiplist() }
            return .zset(copy)
        case .stream(let stream):
            return .stream(stream.copy())
        }
    }
}
