// MARK: - Listpack (Redis 7's compact sequence encoding)

/// Builds a listpack: `<total-bytes u32><count u16> <entry>* 0xFF`, each entry an encoding
/// byte, its data, and a back-length so the list can be walked from the tail.
struct ListpackBuilder {
    private(set) var body: [UInt8] = []
    private(set) var count = 0

    /// Bytes the finished listpack takes (header, entries, terminator).
    var totalBytes: Int { 6 + body.count + 1 }

    /// Bytes one more element would add (for sizing quicklist nodes).
    static func entrySize(_ element: [UInt8]) -> Int {
        let encoded: Int
        if let v = IntegerString.parse(element) {
            encoded = integerEncodingSize(v)
        } else if element.count < 64 {
            encoded = 1 + element.count
        } else if element.count < 4096 {
            encoded = 2 + element.count
        } else {
            encoded = 5 + element.count
        }
        return encoded + backlenSize(encoded)
    }

    mutating func append(_ element: [UInt8]) {
        if let v = IntegerString.parse(element) { append(integer: v); return }
        let start = body.count
        let n = element.count
        if n < 64 {
            body.append(0x80 | UInt8(n))
        } else if n < 4096 {
            body.append(0xE0 | UInt8(n >> 8))
            body.append(UInt8(n & 0xff))
        } else {
            body.append(0xF0)
            appendLE(UInt64(n), bytes: 4)
        }
        body.append(contentsOf: element)
        appendBacklen(body.count - start)
        count += 1
    }

    mutating func append(integer v: Int64) {
        let start = body.count
        if v >= 0, v <= 127 {
            body.append(UInt8(v))
        } else if v >= -4096, v <= 4095 {
            let u = v < 0 ? (1 << 13) + v : v
            body.append(0xC0 | UInt8(u >> 8))
            body.append(UInt8(u & 0xff))
        } else if v >= Int64(Int16.min), v <= Int64(Int16.max) {
            body.append(0xF1)
            appendLE(UInt64(bitPattern: v), bytes: 2)
        } else if v >= -(1 << 23), v < (1 << 23) {
            body.append(0xF2)
            appendLE(UInt64(bitPattern: v), bytes: 3)
        } else if v >= Int64(Int32.min), v <= Int64(Int32.max) {
            body.append(0xF3)
            appendLE(UInt64(bitPattern: v), bytes: 4)
        } else {
            body.append(0xF4)
            appendLE(UInt64(bitPattern: v), bytes: 8)
        }
        appendBacklen(body.count - start)
        count += 1
    }

    func finish() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(totalBytes)
        let total = UInt32(truncatingIfNeeded: totalBytes)
        for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: total >> (8 * UInt32(i)))) }
        let n = UInt16(min(count, 65535))
        out.append(UInt8(n & 0xff))
        out.append(UInt8(n >> 8))
        out.append(contentsOf: body)
        out.append(0xFF)
        return out
    }

    private static func integerEncodingSize(_ v: Int64) -> Int {
        if v >= 0, v <= 127 { return 1 }
        if v >= -4096, v <= 4095 { return 2 }
        if v >= Int64(Int16.min), v <= Int64(Int16.max) { return 3 }
        if v >= -(1 << 23), v < (1 << 23) { return 4 }
        if v >= Int64(Int32.min), v <= Int64(Int32.max) { return 5 }
        return 9
    }

    static func backlenSize(_ l: Int) -> Int {
        if l <= 127 { return 1 }
        if l < 16383 { return 2 }
        if l < 2_097_151 { return 3 }
        if l < 268_435_455 { return 4 }
        return 5
    }

    /// Redis's `lpEncodeBacklen`: big-endian 7-bit groups, all but the first flagged 0x80.
    static func backlen(_ l: Int) -> [UInt8] {
        let size = backlenSize(l)
        var out = [UInt8](repeating: 0, count: size)
        for i in 0..<size {
            let shift = 7 * (size - 1 - i)
            let group = UInt8((l >> shift) & 127)
            out[i] = i == 0 ? UInt8(truncatingIfNeeded: l >> shift) : group | 128
        }
        return out
    }

    private mutating func appendBacklen(_ l: Int) { body.append(contentsOf: Self.backlen(l)) }

    private mutating func appendLE(_ v: UInt64, bytes: Int) {
        for i in 0..<bytes { body.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }
}

/// Reads a listpack blob into its elements (integers rendered in decimal), checking the
/// header, every entry's bounds and back-length, and the terminator.
enum ListpackDecoder {
    /// - Parameter base: the blob's offset in the enclosing input, for error messages.
    static func decode(_ blob: ArraySlice<UInt8>, base: Int) throws(RDBError) -> [[UInt8]] {
        let s = blob.startIndex
        func at(_ i: Int) -> Int { base + (i - s) }
        guard blob.count >= 7 else { throw .corrupt(offset: base, reason: "listpack shorter than its header") }
        let total = Int(readLE(blob, s, 4))
        guard total == blob.count else {
            throw .corrupt(offset: base, reason: "listpack header says \(total) bytes, blob has \(blob.count)")
        }
        let declared = Int(readLE(blob, s + 4, 2))
        let last = blob.endIndex - 1
        guard blob[last] == 0xFF else { throw .corrupt(offset: at(last), reason: "listpack without terminator") }
        var items = [[UInt8]]()
        items.reserveCapacity(min(declared, blob.count / 2))
        var p = s + 6
        while p < last {
            let b = blob[p]
            var encLen: Int
            var element: [UInt8]
            func need(_ n: Int) throws(RDBError) {
                guard p + n <= last else { throw .corrupt(offset: at(p), reason: "listpack entry runs past the end") }
            }
            if b & 0x80 == 0 {
                encLen = 1
                element = IntegerString.render(Int64(b & 0x7f))
            } else if b & 0xC0 == 0x80 {
                let n = Int(b & 0x3f)
                encLen = 1 + n
                try need(encLen)
                element = Array(blob[(p + 1)..<(p + encLen)])
            } else if b & 0xE0 == 0xC0 {
                encLen = 2
                try need(2)
                var v = Int64(b & 0x1f) << 8 | Int64(blob[p + 1])
                if v >= 1 << 12 { v -= 1 << 13 }
                element = IntegerString.render(v)
            } else if b & 0xF0 == 0xE0 {
                try need(2)
                let n = Int(b & 0x0f) << 8 | Int(blob[p + 1])
                encLen = 2 + n
                try need(encLen)
                element = Array(blob[(p + 2)..<(p + encLen)])
            } else {
                switch b {
                case 0xF0:
                    try need(5)
                    let n = Int(readLE(blob, p + 1, 4))
                    encLen = 5 + n
                    try need(encLen)
                    element = Array(blob[(p + 5)..<(p + encLen)])
                case 0xF1, 0xF2, 0xF3, 0xF4:
                    let width = [2, 3, 4, 8][Int(b - 0xF1)]
                    encLen = 1 + width
                    try need(encLen)
                    element = IntegerString.render(signExtend(readLE(blob, p + 1, width), width: width))
                default:
                    throw .corrupt(offset: at(p), reason: "listpack entry with invalid encoding byte \(b)")
                }
            }
            let expected = ListpackBuilder.backlen(encLen)
            try need(encLen + expected.count)
            guard blob[(p + encLen)..<(p + encLen + expected.count)].elementsEqual(expected) else {
                throw .corrupt(offset: at(p + encLen), reason: "listpack entry with a wrong back-length")
            }
            items.append(element)
            p += encLen + expected.count
        }
        if declared != 65535, declared != items.count {
            throw .corrupt(offset: base, reason: "listpack header counts \(declared) entries, found \(items.count)")
        }
        return items
    }
}

// MARK: - Ziplist (Redis ≤ 6.2's compact encoding, still read from old files)

enum ZiplistDecoder {
    /// Reads `<zlbytes u32><zltail u32><zllen u16> <prevlen><encoding><data>* 0xFF`.
    static func decode(_ blob: ArraySlice<UInt8>, base: Int) throws(RDBError) -> [[UInt8]] {
        let s = blob.startIndex
        func at(_ i: Int) -> Int { base + (i - s) }
        guard blob.count >= 11 else { throw .corrupt(offset: base, reason: "ziplist shorter than its header") }
        let total = Int(readLE(blob, s, 4))
        guard total == blob.count else {
            throw .corrupt(offset: base, reason: "ziplist header says \(total) bytes, blob has \(blob.count)")
        }
        let declared = Int(readLE(blob, s + 8, 2))
        let last = blob.endIndex - 1
        guard blob[last] == 0xFF else { throw .corrupt(offset: at(last), reason: "ziplist without terminator") }
        var items = [[UInt8]]()
        var p = s + 10
        while p < last {
            func need(_ n: Int) throws(RDBError) {
                guard p + n <= last else { throw .corrupt(offset: at(p), reason: "ziplist entry runs past the end") }
            }
            // prevlen: one byte, or 0xFE and four bytes.
            if blob[p] == 0xFE { try need(5); p += 5 } else { p += 1 }
            try need(1)
            let b = blob[p]
            switch b >> 6 {
            case 0:
                let n = Int(b & 0x3f)
                try need(1 + n)
                items.append(Array(blob[(p + 1)..<(p + 1 + n)]))
                p += 1 + n
            case 1:
                try need(2)
                let n = Int(b & 0x3f) << 8 | Int(blob[p + 1])
                try need(2 + n)
                items.append(Array(blob[(p + 2)..<(p + 2 + n)]))
                p += 2 + n
            case 2:
                try need(5)
                let n = Int(blob[p + 1]) << 24 | Int(blob[p + 2]) << 16 | Int(blob[p + 3]) << 8 | Int(blob[p + 4])
                try need(5 + n)
                items.append(Array(blob[(p + 5)..<(p + 5 + n)]))
                p += 5 + n
            default:
                let width: Int
                switch b {
                case 0xC0: width = 2
                case 0xD0: width = 4
                case 0xE0: width = 8
                case 0xF0: width = 3
                case 0xFE: width = 1
                case 0xF1...0xFD: width = 0
                default: throw .corrupt(offset: at(p), reason: "ziplist entry with invalid encoding byte \(b)")
                }
                try need(1 + width)
                let v = width == 0 ? Int64(b & 0x0f) - 1 : signExtend(readLE(blob, p + 1, width), width: width)
                items.append(IntegerString.render(v))
                p += 1 + width
            }
        }
        if declared != 65535, declared != items.count {
            throw .corrupt(offset: base, reason: "ziplist header counts \(declared) entries, found \(items.count)")
        }
        return items
    }
}

// MARK: - Intset

enum IntsetDecoder {
    /// Reads `<encoding u32: 2|4|8><length u32> <int LE>*`.
    static func decode(_ blob: ArraySlice<UInt8>, base: Int) throws(RDBError) -> [[UInt8]] {
        let s = blob.startIndex
        guard blob.count >= 8 else { throw .corrupt(offset: base, reason: "intset shorter than its header") }
        let width = Int(readLE(blob, s, 4))
        guard width == 2 || width == 4 || width == 8 else {
            throw .corrupt(offset: base, reason: "intset with invalid encoding \(width)")
        }
        let length = Int(readLE(blob, s + 4, 4))
        guard 8 + length * width == blob.count else {
            throw .corrupt(offset: base, reason: "intset of \(length) × \(width) bytes in a \(blob.count)-byte blob")
        }
        var members = [[UInt8]]()
        members.reserveCapacity(length)
        for i in 0..<length {
            members.append(IntegerString.render(signExtend(readLE(blob, s + 8 + i * width, width), width: width)))
        }
        return members
    }

    /// An intset of `values` (sorted, unique) in the narrowest width that holds them all.
    static func encode(_ values: [Int64]) -> [UInt8] {
        let width: Int
        if values.allSatisfy({ $0 >= Int64(Int16.min) && $0 <= Int64(Int16.max) }) {
            width = 2
        } else if values.allSatisfy({ $0 >= Int64(Int32.min) && $0 <= Int64(Int32.max) }) {
            width = 4
        } else {
            width = 8
        }
        var out = [UInt8]()
        out.reserveCapacity(8 + values.count * width)
        appendLE(&out, UInt64(width), 4)
        appendLE(&out, UInt64(values.count), 4)
        for v in values { appendLE(&out, UInt64(bitPattern: v), width) }
        return out
    }
}

// MARK: - Little-endian helpers

@inline(__always)
func readLE(_ bytes: ArraySlice<UInt8>, _ at: Int, _ width: Int) -> UInt64 {
    var v: UInt64 = 0
    for i in 0..<width { v |= UInt64(bytes[at + i]) << (8 * UInt64(i)) }
    return v
}

@inline(__always)
func readLE(_ bytes: [UInt8], _ at: Int, _ width: Int) -> UInt64 {
    var v: UInt64 = 0
    for i in 0..<width { v |= UInt64(bytes[at + i]) << (8 * UInt64(i)) }
    return v
}

@inline(__always)
func signExtend(_ v: UInt64, width: Int) -> Int64 {
    if width >= 8 { return Int64(bitPattern: v) }
    let shift = UInt64(64 - 8 * width)
    return Int64(bitPattern: v << shift) >> Int64(shift)
}

@inline(__always)
func appendLE(_ out: inout [UInt8], _ v: UInt64, _ width: Int) {
    for i in 0..<width { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
}
