import DamselflyStorage

/// Conversions between the keyspace's values and the RDB format's neutral
/// model: what a snapshot writes and what a load (or RESTORE) builds.
public enum RDBConversion {
    /// The RDB form of a stored value.
    public static func rdbValue(_ value: StoredValue) -> RDBValue {
        switch value {
        case .int(let n): return .string(Array(String(n).utf8))
        case .bytes(let b), .raw(let b): return .string(b)
        case .list(let list): return .list(list.elements)
        case .hash(let hash): return .hash(hash.pairs)
        case .set(let set): return .set(set.members)
        case .zset(let zset): return .zset(zset.allEntries.map { ($0.member, $0.score) })
        case .stream(let stream): return .stream(RDBStream(stream))
        }
    }

    /// The stored form of an RDB value, in the encodings the data types
    /// pick for that size (so OBJECT ENCODING matches after a reload).
    public static func storedValue(_ value: RDBValue) -> StoredValue {
        switch value {
        case .string(let bytes):
            return bytes.withUnsafeBytes { StoredValue.string($0) }
        case .list(let items):
            let list = ListValue()
            for item in items { list.pushBack(item) }
            return .list(list)
        case .hash(let pairs):
            let hash = HashValue()
            for (field, v) in pairs {
                hash.convertIfLonger(field.count, v.count)
                _ = hash.set(field, v)
            }
            return .hash(hash)
        case .set(let members):
            let set = SetValue()
            for member in members { _ = set.add(member) }
            return .set(set)
        case .zset(let pairs):
            let zset = SortedSetValue()
            for (member, score) in pairs {
                if zset.score(of: member) == nil { zset.insert(member, score: score) }
            }
            return .zset(zset)
        case .stream(let stream):
            return .stream(stream.storedValue())
        }
    }
}
