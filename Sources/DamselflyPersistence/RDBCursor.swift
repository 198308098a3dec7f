// MARK: - Reading primitives

/// A bounds-checked position in RDB input: lengths, strings, doubles and whole values.
/// Every failure names the offset where the item being read began.
struct RDBCursor {
    let bytes: [UInt8]
    var position: Int
    let end: Int

    init(bytes: [UInt8], position: Int = 0, end: Int? = nil) {
        self.bytes = bytes
        self.position = position
        self.end = end ?? bytes.count
    }

    var remaining: Int { end - position }

    mutating func byte() throws(RDBError) -> UInt8 {
        guard position < end else { throw .truncated(offset: position, needed: 1) }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func take(_ n: Int) throws(RDBError) -> ArraySlice<UInt8> {
        guard n <= remaining else { throw .truncated(offset: position, needed: n - remaining) }
        defer { position += n }
        return bytes[position..<(position + n)]
    }

    mutating func littleEndian(_ width: Int) throws(RDBError) -> UInt64 {
        let s = try take(width)
        return readLE(s, s.startIndex, width)
    }

    /// A length, or (`encoded` true) the special-encoding tag of a string.
    mutating func length() throws(RDBError) -> (value: UInt64, encoded: Bool) {
        let start = position
        let b = try byte()
        switch b >> 6 {
        case 0: return (UInt64(b & 0x3f), false)
        case 1: return (UInt64(b & 0x3f) << 8 | UInt64(try byte()), false)
        case 2:
            if b == 0x80 { return (try bigEndian(4), false) }
            if b == 0x81 { return (try bigEndian(8), false) }
            throw .corrupt(offset: start, reason: "unknown length encoding \(b)")
        default: return (UInt64(b & 0x3f), true)
        }
    }

    /// A plain length that must fit an `Int` (counts, database numbers, byte lengths).
    mutating func count() throws(RDBError) -> Int {
        let start = position
        let (v, encoded) = try length()
        guard !encoded else { throw .corrupt(offset: start, reason: "encoded value where a length was expected") }
        guard v <= UInt64(Int.max / 2) else { throw .corrupt(offset: start, reason: "length \(v) out of range") }
        return Int(v)
    }

    private mutating func bigEndian(_ width: Int) throws(RDBError) -> UInt64 {
        var v: UInt64 = 0
        for b in try take(width) { v = v << 8 | UInt64(b) }
        return v
    }

    /// A string object: raw, integer-encoded (int8/16/32), or LZF-compressed.
    mutating func string() throws(RDBError) -> [UInt8] {
        let start = position
        let (v, encoded) = try length()
        if !encoded {
            guard v <= UInt64(remaining) else { throw .truncated(offset: position, needed: Int(clamping: v) - remaining) }
            return Array(try take(Int(v)))
        }
        switch v {
        case 0: return IntegerString.render(Int64(Int8(bitPattern: try byte())))
        case 1: return IntegerString.render(signExtend(try littleEndian(2), width: 2))
        case 2: return IntegerString.render(signExtend(try littleEndian(4), width: 4))
        case 3:
            let compressed = try count()
            let original = try count()
            let dataStart = position
            let data = try take(compressed)
            // LZF expands at most 264 bytes per 2-byte back-reference; anything more is corrupt.
            guard original <= compressed * 132 + 64,
                  let plain = LZF.decompress(data, expectedLength: original)
            else { throw .corrupt(offset: dataStart, reason: "invalid LZF data (\(compressed) → \(original) bytes)") }
            return plain
        default:
            throw .corrupt(offset: start, reason: "unknown string encoding \(v)")
        }
    }

    /// A string that carries an encoded blob (listpack, ziplist, intset), with its offset.
    mutating func blob() throws(RDBError) -> (bytes: ArraySlice<UInt8>, offset: Int) {
        let before = position
        let (v, encoded) = try length()
        if !encoded {
            let offset = position
            guard v <= UInt64(remaining) else { throw .truncated(offset: position, needed: Int(clamping: v) - remaining) }
            return (try take(Int(v)), offset)
        }
        position = before
        let s = try string()
        // An LZF-compressed blob: its offset is the compressed data's, the closest there is.
        return (s[...], before)
    }

    /// A `ZSET` (type 3) score: a length byte then ASCII; 253 NaN, 254 +inf, 255 -inf.
    mutating func stringDouble() throws(RDBError) -> Double {
        let start = position
        let n = try byte()
        switch n {
        case 253: return .nan
        case 254: return .infinity
        case 255: return -.infinity
        default:
            guard let d = parseScore(try take(Int(n))) else {
                throw .corrupt(offset: start, reason: "unparseable double")
            }
            return d
        }
    }

    mutating func binaryDouble() throws(RDBError) -> Double {
        Double(bitPattern: try littleEndian(8))
    }

    // MARK: Values

    /// Reads the value of a key whose type byte (at `typeOffset`) was `type`.
    mutating func value(type: UInt8, typeOffset: Int) throws(RDBError) -> RDBValue {
        switch type {
        case RDBType.string:
            return .string(try string())
        case RDBType.list, RDBType.set:
            let n = try count()
            var items = [[UInt8]]()
            items.reserveCapacity(min(n, remaining))
            for _ in 0..<n { items.append(try string()) }
            return type == RDBType.list ? .list(items) : .set(items)
        case RDBType.hash:
            let n = try count()
            var pairs = [([UInt8], [UInt8])]()
            pairs.reserveCapacity(min(n, remaining))
            for _ in 0..<n { pairs.append((try string(), try string())) }
            return .hash(pairs)
        case RDBType.zset, RDBType.zset2:
            let n = try count()
            var pairs = [([UInt8], Double)]()
            pairs.reserveCapacity(min(n, remaining))
            for _ in 0..<n {
                let member = try string()
                let scoreOffset = position
                let score = type == RDBType.zset ? try stringDouble() : try binaryDouble()
                guard !score.isNaN else { throw .corrupt(offset: scoreOffset, reason: "zset score is NaN") }
                pairs.append((member, score))
            }
            return .zset(pairs)
        case RDBType.setIntset:
            let (blob, at) = try blob()
            return .set(try IntsetDecoder.decode(blob, base: at))
        case RDBType.setListpack:
            let (blob, at) = try blob()
            return .set(try ListpackDecoder.decode(blob, base: at))
        case RDBType.listZiplist:
            let (blob, at) = try blob()
            return .list(try ZiplistDecoder.decode(blob, base: at))
        case RDBType.listQuicklist, RDBType.listQuicklist2:
            let nodes = try count()
            var items = [[UInt8]]()
            for _ in 0..<nodes {
                if type == RDBType.listQuicklist {
                    let (blob, at) = try blob()
                    items += try ZiplistDecoder.decode(blob, base: at)
                    continue
                }
                let containerOffset = position
                let container = try count()
                if container == Int(RDBLimits.quicklistPlain) {
                    items.append(try string())
                } else if container == Int(RDBLimits.quicklistPacked) {
                    let (blob, at) = try blob()
                    items += try ListpackDecoder.decode(blob, base: at)
                } else {
                    throw .corrupt(offset: containerOffset, reason: "quicklist node container \(container)")
                }
            }
            return .list(items)
        case RDBType.hashZiplist, RDBType.hashListpack:
            let (blob, at) = try blob()
            let flat = type == RDBType.hashZiplist
                ? try ZiplistDecoder.decode(blob, base: at) : try ListpackDecoder.decode(blob, base: at)
            guard flat.count % 2 == 0 else { throw .corrupt(offset: at, reason: "hash with an odd number of entries") }
            return .hash(stride(from: 0, to: flat.count, by: 2).map { (flat[$0], flat[$0 + 1]) })
        case RDBType.zsetZiplist, RDBType.zsetListpack:
            let (blob, at) = try blob()
            let flat = type == RDBType.zsetZiplist
                ? try ZiplistDecoder.decode(blob, base: at) : try ListpackDecoder.decode(blob, base: at)
            guard flat.count % 2 == 0 else { throw .corrupt(offset: at, reason: "zset with an odd number of entries") }
            var pairs = [([UInt8], Double)]()
            pairs.reserveCapacity(flat.count / 2)
            for i in stride(from: 0, to: flat.count, by: 2) {
                guard let score = parseScore(flat[i + 1]), !score.isNaN else {
                    throw .corrupt(offset: at, reason: "zset entry with an invalid score")
                }
                pairs.append((flat[i], score))
            }
            return .zset(pairs)
        case RDBType.hashZipmap:
            throw .unsupported(offset: typeOffset, reason: "zipmap-encoded hash (Redis < 2.6)")
        case RDBType.module, RDBType.module2:
            throw .unsupported(offset: typeOffset, reason: "module value")
        case RDBType.streamListpacks, RDBType.streamListpacks2, RDBType.streamListpacks3:
            return .stream(try stream(type: type))
        default:
            throw .corrupt(offset: typeOffset, reason: "unknown value type \(type)")
        }
    }
}
