// MARK: - Streaming writer

/// Writes an RDB file (version 10, as Redis 7.0) in slices.
///
/// The writer buffers what it encodes; a caller drains the buffer with ``takeBytes()``
/// whenever it likes (say past 64 KiB) and writes it out, so a shard can serialize a few
/// entries between commands without holding the whole file. The CRC64 runs over every
/// byte as it is drained, and ``finish()`` appends `EOF` and the checksum.
///
/// ```swift
/// var w = RDBWriter()
/// w.writeHeader(aux: RDBWriter.standardAux(usedMemory: 0))
/// w.beginDatabase(0, keys: 1, expires: 0)
/// w.write(RDBEntry(key: Array("k".utf8), value: .string(Array("v".utf8))))
/// let file = w.finish()
/// ```
public struct RDBWriter {
    private var buffer: [UInt8] = []
    private var crc: UInt64 = 0
    /// Bytes drained so far plus those still buffered.
    public private(set) var bytesWritten = 0

    public init() {}

    /// Bytes encoded but not yet taken.
    public var bufferedCount: Int { buffer.count }

    /// The aux fields Redis writes at the top of every file. Redis only logs them on load.
    public static func standardAux(
        redisVersion: String = "7.0.15",
        ctime: Int64? = nil,
        usedMemory: Int,
        aofBase: Bool = false
    ) -> [(String, String)] {
        let now = ctime ?? currentUnixSeconds()
        return [
            ("redis-ver", redisVersion),
            ("redis-bits", String(Int.bitWidth)),
            ("ctime", String(now)),
            ("used-mem", String(usedMemory)),
            ("aof-base", aofBase ? "1" : "0"),
        ]
    }

    /// `REDIS0010` then one `AUX` opcode per field (standard and extra alike).
    public mutating func writeHeader(aux: [(String, String)]) {
        buffer.append(contentsOf: Array("REDIS00\(rdbVersionWritten)".utf8))
        for (key, value) in aux {
            buffer.append(RDBOpcode.aux)
            RDBEncoder.appendString(&buffer, Array(key.utf8))
            RDBEncoder.appendString(&buffer, Array(value.utf8))
        }
    }

    /// `SELECTDB` and the `RESIZEDB` sizing hint for the entries that follow.
    public mutating func beginDatabase(_ index: Int, keys: Int, expires: Int) {
        buffer.append(RDBOpcode.selectDB)
        RDBEncoder.appendLength(&buffer, index)
        buffer.append(RDBOpcode.resizeDB)
        RDBEncoder.appendLength(&buffer, keys)
        RDBEncoder.appendLength(&buffer, expires)
    }

    /// One key: `EXPIRETIME_MS` if it has a TTL, the type, the key and the value.
    /// The entry's `database` is not consulted: call ``beginDatabase(_:keys:expires:)`` first.
    public mutating func write(_ entry: RDBEntry) {
        if let at = entry.expireAtMs {
            buffer.append(RDBOpcode.expireTimeMs)
            appendLE(&buffer, UInt64(bitPattern: at), 8)
        }
        let type = RDBEncoder.type(of: entry.value)
        buffer.append(type)
        RDBEncoder.appendString(&buffer, entry.key)
        RDBEncoder.appendValue(&buffer, entry.value, type: type)
    }

    /// Auxiliary field written after the header (Redis allows them anywhere before EOF).
    public mutating func writeAux(_ key: String, _ value: String) {
        buffer.append(RDBOpcode.aux)
        RDBEncoder.appendString(&buffer, Array(key.utf8))
        RDBEncoder.appendString(&buffer, Array(value.utf8))
    }

    /// A function library (`FUNCTION2` and its code). Redis writes them after the
    /// header, before the first database; ``RDBReader/functionLibraries`` reads them back.
    public mutating func writeFunctionLibrary(_ code: [UInt8]) {
        buffer.append(RDBOpcode.function2)
        RDBEncoder.appendString(&buffer, code)
    }

    /// Drains the buffered bytes (for writing to a file), folding them into the checksum.
    public mutating func takeBytes() -> [UInt8] {
        crc = CRC64.update(crc, buffer)
        bytesWritten += buffer.count
        defer { buffer = [] }
        return buffer
    }

    /// Appends `EOF` and the CRC64, and returns what is still buffered (the whole file if
    /// ``takeBytes()`` was never called). The writer is spent afterwards.
    public mutating func finish() -> [UInt8] {
        buffer.append(RDBOpcode.eof)
        crc = CRC64.update(crc, buffer)
        appendLE(&buffer, crc, 8)
        bytesWritten += buffer.count
        defer { buffer = [] }
        return buffer
    }
}

func currentUnixSeconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec)
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
