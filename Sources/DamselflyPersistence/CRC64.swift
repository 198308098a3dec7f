/// Redis's CRC-64 (Jones polynomial `0xad93d23594c935a9`, reflected, initial value 0,
/// no final xor), as in Redis's `crc64.c`; `CRC64.checksum("123456789") == 0xe9c6d914c4b8d9ca`.
///
/// Slicing-by-8: eight 256-entry tables let the loop fold eight bytes per step, which
/// keeps checksumming a multi-gigabyte snapshot well below the cost of writing it.
public enum CRC64 {
    /// The reflected form of the Jones polynomial.
    static let reflectedPolynomial: UInt64 = 0x95ac_9329_ac4b_c9b5

    /// `tables[k][b]`: the CRC of byte `b` followed by `k` zero bytes.
    static let tables: [[UInt64]] = {
        var t0 = [UInt64](repeating: 0, count: 256)
        for i in 0..<256 {
            var c = UInt64(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ reflectedPolynomial : c >> 1 }
            t0[i] = c
        }
        var tables = [t0]
        for k in 1..<8 {
            var t = [UInt64](repeating: 0, count: 256)
            for i in 0..<256 {
                let prev = tables[k - 1][i]
                t[i] = (prev >> 8) ^ t0[Int(prev & 0xff)]
            }
            tables.append(t)
        }
        return tables
    }()

    /// Continues `crc` over `bytes`; start from 0.
    public static func update(_ crc: UInt64, _ bytes: UnsafeBufferPointer<UInt8>) -> UInt64 {
        let tables = Self.tables
        return tables.withUnsafeBufferPointer { tablePtr in
            tablePtr[0].withUnsafeBufferPointer { t0 in
            tablePtr[1].withUnsafeBufferPointer { t1 in
            tablePtr[2].withUnsafeBufferPointer { t2 in
            tablePtr[3].withUnsafeBufferPointer { t3 in
            tablePtr[4].withUnsafeBufferPointer { t4 in
            tablePtr[5].withUnsafeBufferPointer { t5 in
            tablePtr[6].withUnsafeBufferPointer { t6 in
            tablePtr[7].withUnsafeBufferPointer { t7 in
                var c = crc
                var i = 0
                let n = bytes.count
                while i + 8 <= n {
                    var word = UInt64(bytes[i])
                    for j in 1..<8 { word |= UInt64(bytes[i + j]) << (8 * UInt64(j)) }
                    c ^= word
                    c = t7[Int(c & 0xff)] ^ t6[Int((c >> 8) & 0xff)]
                        ^ t5[Int((c >> 16) & 0xff)] ^ t4[Int((c >> 24) & 0xff)]
                        ^ t3[Int((c >> 32) & 0xff)] ^ t2[Int((c >> 40) & 0xff)]
                        ^ t1[Int((c >> 48) & 0xff)] ^ t0[Int(c >> 56)]
                    i += 8
                }
                while i < n {
                    c = t0[Int((c ^ UInt64(bytes[i])) & 0xff)] ^ (c >> 8)
                    i += 1
                }
                return c
            }}}}}}}}
        }
    }

    /// Continues `crc` over a slice of bytes.
    public static func update<C: Collection>(_ crc: UInt64, _ bytes: C) -> UInt64 where C.Element == UInt8 {
        if let result = bytes.withContiguousStorageIfAvailable({ update(crc, $0) }) { return result }
        return Array(bytes).withUnsafeBufferPointer { update(crc, $0) }
    }

    /// The checksum of `bytes` from a zero start.
    public static func checksum<C: Collection>(_ bytes: C) -> UInt64 where C.Element == UInt8 {
        update(0, bytes)
    }
}
