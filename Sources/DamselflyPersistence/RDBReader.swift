// MARK: - Reader

/// Reads an RDB file (versions 1 through 11) entry by entry.
///
/// The checksum is verified before the first entry is returned whenever the file ends in
/// `EOF` and a non-zero CRC64, so a flipped byte anywhere is reported as
/// ``RDBError/checksumMismatch(offset:stored:computed:)`` before any entry is applied; a
/// truncated file fails where its structure runs out. Either way the error names the offset.
///
/// ```swift
/// var r = RDBReader(bytes: file)
/// while let entry = try r.next() { load(entry) }
/// print(r.aux)
/// ```
public struct RDBReader {
    private var cursor: RDBCursor
    private let allowTrailingData: Bool
    private var started = false
    private var finished = false
    private var checksumVerified = false
    private var currentDatabase = 0

    /// The file's RDB version, once ``next()`` has read the header.
    public private(set) var version = 0
    /// Aux fields met so far, in file order (all of them once ``next()`` returned `nil`).
    public private(set) var aux: [(String, String)] = []
    /// Function library sources (`FUNCTION2` opcodes), in file order, for the caller to load.
    public private(set) var functionLibraries: [[UInt8]] = []
    /// The last `RESIZEDB` hint: keys and keys-with-expiry of the current database.
    public private(set) var sizeHint: (keys: Int, expires: Int)?

    /// - Parameter allowTrailingData: accept bytes after the checksum (an RDB preamble
    ///   followed by an AOF tail); ``offset`` then says where the RDB part ended.
    public init(bytes: [UInt8], allowTrailingData: Bool = false) {
        cursor = RDBCursor(bytes: bytes)
        self.allowTrailingData = allowTrailingData
    }

    /// Bytes consumed so far.
    public var offset: Int { cursor.position }

    /// The next key, or `nil` after `EOF` and a valid checksum.
    public mutating func next() throws(RDBError) -> RDBEntry? {
        if finished { return nil }
        if !started { try readHeader() }
        var expireAtMs: Int64?
        while true {
            let opOffset = cursor.position
            let type = try cursor.byte()
            switch type {
            case RDBOpcode.eof:
                try readChecksum(eofOffset: opOffset)
                finished = true
                return nil
            case RDBOpcode.selectDB:
                currentDatabase = try cursor.count()
            case RDBOpcode.resizeDB:
                sizeHint = (try cursor.count(), try cursor.count())
            case RDBOpcode.aux:
                let key = try cursor.string()
                let value = try cursor.string()
                aux.append((String(decoding: key, as: UTF8.self), String(decoding: value, as: UTF8.self)))
            case RDBOpcode.expireTime:
                expireAtMs = Int64(Int32(bitPattern: UInt32(try cursor.littleEndian(4)))) * 1000
            case RDBOpcode.expireTimeMs:
                expireAtMs = Int64(bitPattern: try cursor.littleEndian(8))
            case RDBOpcode.idle:
                _ = try cursor.length()
            case RDBOpcode.freq:
                _ = try cursor.byte()
            case RDBOpcode.function2:
                functionLibraries.append(try cursor.string())
            case RDBOpcode.functionPreGA:
                throw .unsupported(offset: opOffset, reason: "FUNCTION opcode of a Redis 7.0 release candidate")
            case RDBOpcode.moduleAux:
                throw .unsupported(offset: opOffset, reason: "module aux data")
            default:
                let key = try cursor.string()
                let value = try cursor.value(type: type, typeOffset: opOffset)
                return RDBEntry(database: currentDatabase, key: key, value: value, expireAtMs: expireAtMs)
            }
        }
    }

    /// Reads every remaining entry.
    public mutating func readAll() throws(RDBError) -> [RDBEntry] {
        var entries = [RDBEntry]()
        while let e = try next() { entries.append(e) }
        return entries
    }

    private mutating func readHeader() throws(RDBError) {
        started = true
        let magic = try cursor.take(9)
        guard magic.prefix(5).elementsEqual("REDIS".utf8) else {
            throw .corrupt(offset: 0, reason: "not an RDB file (no REDIS magic)")
        }
        guard let v = Int(String(decoding: magic.suffix(4), as: UTF8.self)), v >= 1 else {
            throw .corrupt(offset: 5, reason: "invalid RDB version")
        }
        guard v <= rdbVersionReadable else { throw .unsupported(offset: 5, reason: "RDB version \(v)") }
        version = v
        // Verify up front when the file ends like an RDB: EOF, then a non-zero CRC64.
        let bytes = cursor.bytes
        let n = bytes.count
        if !allowTrailingData, v >= 5, n >= 18, bytes[n - 9] == RDBOpcode.eof {
            let stored = readLE(bytes, n - 8, 8)
            if stored != 0 {
                let computed = CRC64.checksum(bytes[0..<(n - 8)])
                guard stored == computed else {
                    throw .checksumMismatch(offset: n - 8, stored: stored, computed: computed)
                }
                checksumVerified = true
            }
        }
    }

    private mutating func readChecksum(eofOffset: Int) throws(RDBError) {
        if version >= 5 {
            let at = cursor.position
            let stored = try cursor.littleEndian(8)
            let alreadyChecked = checksumVerified && at == cursor.bytes.count - 8
            if stored != 0, !alreadyChecked {
                let computed = CRC64.checksum(cursor.bytes[0..<at])
                guard stored == computed else {
                    throw .checksumMismatch(offset: at, stored: stored, computed: computed)
                }
            }
        }
        if !allowTrailingData, cursor.remaining > 0 {
            throw .corrupt(offset: cursor.position, reason: "\(cursor.remaining) bytes after the end of the RDB")
        }
    }
}

// MARK: - DUMP / RESTORE payloads

/// The serialization of DUMP and RESTORE: `<type><value><rdb-version u16 LE><crc64 LE>`,
/// the CRC covering everything before it. Interchangeable with Redis 7.0's payloads.
public enum DumpPayload {
    public static func encode(_ value: RDBValue) -> [UInt8] {
        var out = [UInt8]()
        let type = RDBEncoder.type(of: value)
        out.append(type)
        RDBEncoder.appendValue(&out, value, type: type)
        appendLE(&out, UInt64(rdbVersionWritten), 2)
        appendLE(&out, CRC64.checksum(out), 8)
        return out
    }

    /// Decodes a payload; errors name offsets within `bytes`. Like Redis, refuses a payload
    /// from a newer RDB version, a wrong checksum, and bytes left over after the value.
    public static func decode(_ bytes: [UInt8]) throws(RDBError) -> RDBValue {
        let n = bytes.count
        guard n >= 11 else { throw .truncated(offset: n, needed: 11 - n) }
        let version = Int(readLE(bytes, n - 10, 2))
        // Redis 7.0's verifyDumpPayload: nothing newer than the version it
        // writes (files from 7.2 load; a 7.2 DUMP payload does not restore).
        guard version <= rdbVersionWritten else {
            throw .unsupported(offset: n - 10, reason: "DUMP payload of RDB version \(version)")
        }
        let stored = readLE(bytes, n - 8, 8)
        let computed = CRC64.checksum(bytes[0..<(n - 8)])
        guard stored == computed else { throw .checksumMismatch(offset: n - 8, stored: stored, computed: computed) }
        var cursor = RDBCursor(bytes: bytes, end: n - 10)
        let type = try cursor.byte()
        let value = try cursor.value(type: type, typeOffset: 0)
        guard cursor.remaining == 0 else {
            throw .corrupt(offset: cursor.position, reason: "\(cursor.remaining) bytes after the value")
        }
        return value
    }
}
