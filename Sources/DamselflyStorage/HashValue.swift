/// Hashes stored under one key. A reference type: the value lives in one
/// shard's keyspace and is mutated in place there; replies copy out what
/// they send. (Stub: the data-type work fills this in.)
public final class HashValue {
    public init() {}

    /// Number of elements.
    public var count: Int { 0 }

    /// The name TYPE reports.
    public var typeName: String { "hash" }

    /// The name OBJECT ENCODING reports.
    public var encodingName: String { "listpack" }

    /// Approximate heap bytes, for MEMORY USAGE and used_memory.
    public var memoryUsage: Int { 64 }
}
