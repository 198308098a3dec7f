import DamselflyRESP

/// A command's reply as a value: produced on the shard that ran the command,
/// carried back to the connection's thread, encoded there for the client's
/// protocol (RESP2 or RESP3).
///
/// Byte payloads are `[UInt8]` arrays shared with the keyspace (copy on
/// write), so returning a stored string does not copy it.
public enum Reply: Sendable {
    case ok
    case simple(String)
    case error(String)
    case integer(Int)
    case bulk([UInt8])
    case bulkString(String)
    /// An integer sent as a bulk string (GET of an int-encoded string).
    case bulkInteger(Int64)
    case null
    case nullArray
    case array([Reply])
    /// A RESP3 map; a flat array of pairs under RESP2.
    case map([(Reply, Reply)])
    case set([Reply])
    case double(Double)
    case boolean(Bool)
    /// A RESP3 verbatim string (INFO); a bulk string under RESP2.
    case verbatim(String)
    /// Bytes already encoded for the client's protocol.
    case raw([UInt8])
    /// A map of `pairs` field-value pairs whose elements are already encoded (bulk
    /// strings, the same in both protocols, written on the shard): only the header
    /// follows the client's protocol (RESP3 `%n`, RESP2 `*2n`). HGETALL: a `Reply`
    /// per field and value cost more than the command itself.
    case encodedMap(pairs: Int, body: [UInt8])
    /// No reply at all (the command already replied, or QUIT-like flows).
    case none

    public static let wrongType = Reply.error("WRONGTYPE Operation against a key holding the wrong kind of value")
    public static let notInteger = Reply.error("ERR value is not an integer or out of range")
    public static let notFloat = Reply.error("ERR value is not a valid float")
    public static let syntaxError = Reply.error("ERR syntax error")
    public static let overflow = Reply.error("ERR increment or decrement would overflow")
    public static let outOfRangeDB = Reply.error("ERR DB index is out of range")
    /// A value would grow past `proto-max-bulk-len` (SETRANGE, APPEND, SETBIT, BITFIELD, ...).
    public static let stringTooLong = Reply.error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")

    public var isError: Bool {
        if case .error = self { return true }
        return false
    }

    /// Encodes the reply into `out` for its protocol version.
    public func encode(into out: inout ReplyBuilder) {
        switch self {
        case .ok: out.simpleString("OK" as StaticString)
        case .simple(let s): out.simpleString(s)
        case .error(let e): out.error(e)
        case .integer(let v): out.integer(v)
        case .bulk(let b): out.bulk(b)
        case .bulkString(let s): out.bulk(s)
        case .bulkInteger(let v): out.bulkInteger(Int(v))
        case .null: out.null()
        case .nullArray: out.nullArray()
        case .array(let items):
            out.arrayHeader(items.count)
            for item in items { item.encode(into: &out) }
        case .map(let pairs):
            out.mapHeader(pairs.count)
            for (k, v) in pairs {
                k.encode(into: &out)
                v.encode(into: &out)
            }
        case .set(let items):
            out.setHeader(items.count)
            for item in items { item.encode(into: &out) }
        case .double(let d): out.double(d)
        case .boolean(let b): out.boolean(b)
        case .verbatim(let s): out.verbatim(s)
        case .raw(let bytes): out.appendRaw(bytes)
        case .encodedMap(let pairs, let body):
            out.mapHeader(pairs)
            out.appendRaw(body)
        case .none: break
        }
    }
}


/// Text for an error reply that Redis formats with `%s`: C strings end at the
/// first NUL, so a name holding one is cut there, as redis-server cuts it.
public func printfText(_ bytes: some Collection<UInt8>) -> String {
    String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
}
