// MARK: - Constants of the RDB format (Redis's rdb.h)

/// The RDB version Damselfly writes: Redis 7.0's. Redis 7.0 refuses files above it.
public let rdbVersionWritten = 10
/// The newest version the reader accepts: 7.2's 11 adds only `SET_LISTPACK` and a stream type.
public let rdbVersionReadable = 11

/// Object types that start a key's value.
enum RDBType {
    static let string: UInt8 = 0
    static let list: UInt8 = 1
    static let set: UInt8 = 2
    static let zset: UInt8 = 3
    static let hash: UInt8 = 4
    static let zset2: UInt8 = 5
    static let module: UInt8 = 6
    static let module2: UInt8 = 7
    static let hashZipmap: UInt8 = 9
    static let listZiplist: UInt8 = 10
    static let setIntset: UInt8 = 11
    static let zsetZiplist: UInt8 = 12
    static let hashZiplist: UInt8 = 13
    static let listQuicklist: UInt8 = 14
    static let streamListpacks: UInt8 = 15
    static let hashListpack: UInt8 = 16
    static let zsetListpack: UInt8 = 17
    static let listQuicklist2: UInt8 = 18
    static let streamListpacks2: UInt8 = 19
    static let setListpack: UInt8 = 20
    static let streamListpacks3: UInt8 = 21
}

/// Opcodes that sit between keys.
enum RDBOpcode {
    static let function2: UInt8 = 245
    static let functionPreGA: UInt8 = 246
    static let moduleAux: UInt8 = 247
    static let idle: UInt8 = 248
    static let freq: UInt8 = 249
    static let aux: UInt8 = 250
    static let resizeDB: UInt8 = 251
    static let expireTimeMs: UInt8 = 252
    static let expireTime: UInt8 = 253
    static let selectDB: UInt8 = 254
    static let eof: UInt8 = 255
}

/// Thresholds Redis 7.0 uses by default to pick compact encodings; the writer follows them
/// (redis.conf's values; the compiled-in hash default is 512). Redis re-applies its own
/// configured limits on load, so these only decide the file's encoding.
enum RDBLimits {
    static let hashMaxListpackEntries = 128
    static let hashMaxListpackValue = 64
    static let zsetMaxListpackEntries = 128
    static let zsetMaxListpackValue = 64
    static let setMaxIntsetEntries = 512
    /// `list-max-listpack-size -2`: a quicklist node holds at most 8 KiB of listpack.
    static let listMaxListpackBytes = 8192
    /// Elements at least this large get a PLAIN quicklist node (Redis's `packed_threshold`).
    static let listPlainThreshold = 1 << 30
    /// Quicklist node containers.
    static let quicklistPlain: UInt64 = 1
    static let quicklistPacked: UInt64 = 2
}

// MARK: - Integer strings

enum IntegerString {
    /// The value of `bytes` if it is the canonical decimal form of an `Int64` (Redis's
    /// `string2ll` rules: no sign but '-', no leading zeros, no "-0"), else `nil`.
    static func parse<C: Collection>(_ bytes: C) -> Int64? where C.Element == UInt8 {
        let count = bytes.count
        guard count > 0, count <= 20 else { return nil }
        var it = bytes.makeIterator()
        var first = it.next()!
        let negative = first == UInt8(ascii: "-")
        if negative {
            guard count > 1 else { return nil }
            first = it.next()!
        }
        guard first >= UInt8(ascii: "0"), first <= UInt8(ascii: "9") else { return nil }
        if first == UInt8(ascii: "0") { return (count == 1) ? 0 : nil }
        var magnitude = UInt64(first - UInt8(ascii: "0"))
        while let c = it.next() {
            guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else { return nil }
            let (m1, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (m2, o2) = m1.addingReportingOverflow(UInt64(c - UInt8(ascii: "0")))
            guard !o1, !o2 else { return nil }
            magnitude = m2
        }
        if negative {
            guard magnitude <= UInt64(Int64.max) + 1 else { return nil }
            return magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
        }
        guard magnitude <= UInt64(Int64.max) else { return nil }
        return Int64(magnitude)
    }

    static func render(_ value: Int64) -> [UInt8] { Array(String(value).utf8) }
}

/// Parses a score as Redis's `strtod` would (digits, exponents, "inf", "-inf").
func parseScore<C: Collection>(_ bytes: C) -> Double? where C.Element == UInt8 {
    guard !bytes.isEmpty, bytes.count < 128 else { return nil }
    return Double(String(decoding: bytes, as: UTF8.self))
}

/// The shortest text that reads back as `score` (what a listpack or old ZSET stores).
func renderScore(_ score: Double) -> [UInt8] {
    if score == score.rounded(), abs(score) < 1e17 { return IntegerString.render(Int64(score)) }
    if score == .infinity { return Array("inf".utf8) }
    if score == -.infinity { return Array("-inf".utf8) }
    return Array(score.description.utf8)
}
