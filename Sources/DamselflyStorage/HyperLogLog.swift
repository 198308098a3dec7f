#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// HyperLogLog values with Redis 7.0's exact byte layout, so an HLL key's
/// string (GET, DUMP, snapshots) is interchangeable with redis-server's and
/// PFCOUNT's estimate is the same number.
///
/// Layout (all stored as an ordinary string):
/// - a 16-byte header: "HYLL", the encoding byte (0 dense, 1 sparse), three
///   unused bytes, and the cached cardinality as 8 little-endian bytes whose
///   top bit set means "stale, recompute";
/// - dense: 16384 6-bit registers packed LSB first (12288 bytes);
/// - sparse: run-length opcodes: ZERO `00xxxxxx` (1–64 zero registers),
///   XZERO `01xxxxxx yyyyyyyy` (1–16384 zero registers) and VAL `1vvvvvxx`
///   (1–4 registers holding 1–32).
///
/// Every function here is pure over a byte array; the family's shard
/// operations call them. Functions that can meet a corrupted string report
/// it (nil / false / `.corrupted`) instead of trapping, since any client can
/// SETRANGE an HLL key.
public enum HyperLogLog {
    /// Precision: 2^14 registers, the index taken from the hash's low bits.
    public static let precision = 14
    public static let registerCount = 1 << precision
    /// Hash bits left for the run of zeros.
    static let q = 64 - precision
    static let bitsPerRegister = 6
    static let registerMax: UInt8 = 63
    public static let headerSize = 16
    public static let denseSize = headerSize + (registerCount * bitsPerRegister + 7) / 8
    public static let denseEncoding: UInt8 = 0
    public static let sparseEncoding: UInt8 = 1

    static let sparseValMaxValue = 32
    static let sparseValMaxLength = 4
    static let sparseZeroMaxLength = 64
    static let sparseXZeroMaxLength = 16384
    /// Redis's `HLL_ALPHA_INF`, 0.5 / ln 2.
    static let alphaInf = 0.721347520444481703680

    /// Result of adding an element or setting a register.
    public enum Update: Equatable {
        case unchanged
        case updated
        /// The sparse opcodes do not describe exactly 16384 registers.
        case corrupted
    }

    // MARK: - Header

    /// A new, empty HLL: sparse, one XZERO opcode covering every register,
    /// cached cardinality 0 (valid), as Redis's `createHLLObject` builds it.
    public static func empty() -> [UInt8] {
        var bytes: [UInt8] = Array("HYLL".utf8) + [sparseEncoding, 0, 0, 0] + [UInt8](repeating: 0, count: 8)
        let length = registerCount - 1
        bytes.append(UInt8(length >> 8) | 0x40)
        bytes.append(UInt8(length & 0xFF))
        return bytes
    }

    /// Redis's `isHLLObjectOrReply` check on a string's bytes: long enough,
    /// the magic, a known encoding, and a dense one of exactly the dense size.
    public static func isValid(_ bytes: [UInt8]) -> Bool {
        guard bytes.count >= headerSize, bytes[0] == 72, bytes[1] == 89, bytes[2] == 76, bytes[3] == 76 else {
            return false
        }
        guard bytes[4] <= sparseEncoding else { return false }
        return bytes[4] != denseEncoding || bytes.count == denseSize
    }

    public static func isSparse(_ bytes: [UInt8]) -> Bool { bytes[4] == sparseEncoding }

    /// The cached cardinality, nil when marked stale.
    public static func cachedCardinality(_ bytes: [UInt8]) -> UInt64? {
        guard bytes[15] & 0x80 == 0 else { return nil }
        var card: UInt64 = 0
        for i in 0..<8 { card |= UInt64(bytes[8 + i]) << UInt64(8 * i) }
        return card
    }

    public static func setCachedCardinality(_ bytes: inout [UInt8], _ card: UInt64) {
        for i in 0..<8 { bytes[8 + i] = UInt8(truncatingIfNeeded: card >> UInt64(8 * i)) }
    }

    public static func invalidateCache(_ bytes: inout [UInt8]) { bytes[15] |= 0x80 }

    // MARK: - Hashing

    /// MurmurHash64A (Austin Appleby), reading the 8-byte blocks little
    /// endian as Redis's endian-neutral copy does.
    public static func murmurHash64A(_ key: UnsafeRawBufferPointer, seed: UInt64) -> UInt64 {
        let m: UInt64 = 0xc6a4_a793_5bd1_e995
        let r: UInt64 = 47
        let len = key.count
        var h = seed ^ (UInt64(len) &* m)
        let blocks = len - (len & 7)
        var i = 0
        while i < blocks {
            var k = UInt64(littleEndian: key.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            k = k &* m
            k ^= k >> r
            k = k &* m
            h ^= k
            h = h &* m
            i += 8
        }
        let tail = len & 7
        if tail > 0 {
            for j in stride(from: tail - 1, through: 0, by: -1) {
                h ^= UInt64(key[blocks + j]) << UInt64(8 * j)
            }
            h = h &* m
        }
        h ^= h >> r
        h = h &* m
        h ^= h >> r
        return h
    }

    /// Redis's `hllPatLen`: the register an element lands in (the hash's low
    /// 14 bits) and the length of the run of zeros, plus one, in the other 50
    /// bits (at most 51, since bit 50 is forced on).
    public static func patternLength(_ element: UnsafeRawBufferPointer) -> (index: Int, count: UInt8) {
        var hash = murmurHash64A(element, seed: 0xadc8_3b19)
        let index = Int(hash & UInt64(registerCount - 1))
        hash >>= UInt64(precision)
        hash |= UInt64(1) << UInt64(q)
        return (index, UInt8(hash.trailingZeroBitCount + 1))
    }

    // MARK: - Dense registers

    @inline(__always)
    static func denseGet(_ p: UnsafeRawBufferPointer, _ base: Int, _ regnum: Int) -> UInt8 {
        let byte = base + regnum * bitsPerRegister / 8
        let fb = UInt8(regnum * bitsPerRegister & 7)
        let b0 = p[byte]
        let b1: UInt8 = byte + 1 < p.count ? p[byte + 1] : 0
        return ((b0 >> fb) | (fb == 0 ? 0 : b1 << (8 - fb))) & registerMax
    }

    @inline(__always)
    static func denseSetRegister(_ p: UnsafeMutableRawBufferPointer, _ base: Int, _ regnum: Int, _ value: UInt8) {
        let byte = base + regnum * bitsPerRegister / 8
        let fb = UInt8(regnum * bitsPerRegister & 7)
        let fb8 = 8 - fb
        p[byte] &= ~(registerMax << fb)
        p[byte] |= value << fb
        if fb8 < 6 {
            p[byte + 1] &= ~(registerMax >> fb8)
            p[byte + 1] |= value >> fb8
        }
    }

    /// Register `regnum` of a dense HLL.
    public static func denseRegister(_ bytes: [UInt8], _ regnum: Int) -> UInt8 {
        bytes.withUnsafeBytes { denseGet($0, headerSize, regnum) }
    }

    /// Raises register `index` to `count` if it is lower (`hllDenseSet`).
    static func denseSet(_ bytes: inout [UInt8], _ index: Int, _ count: UInt8) -> Bool {
        bytes.withUnsafeMutableBytes { p in
            guard count > denseGet(UnsafeRawBufferPointer(p), headerSize, index) else { return false }
            denseSetRegister(p, headerSize, index, count)
            return true
        }
    }

    /// Calls `body(register, value)` for every register of a dense HLL, three
    /// bytes (four registers) at a time: the whole-HLL paths (PFCOUNT of
    /// several keys, PFMERGE, the estimate) read all 16384.
    @inline(__always)
    static func forEachDenseRegister(_ bytes: [UInt8], _ body: (Int, UInt8) -> Void) {
        bytes.withUnsafeBytes { p in
            var byte = headerSize, r = 0
            while r < registerCount {
                let b0 = p[byte], b1 = p[byte + 1], b2 = p[byte + 2]
                body(r, b0 & 63)
                body(r + 1, (b0 >> 6) | ((b1 & 15) << 2))
                body(r + 2, (b1 >> 4) | ((b2 & 3) << 4))
                body(r + 3, b2 >> 2)
                byte += 3
                r += 4
            }
        }
    }

    /// Writes every register of a dense HLL from one byte per register
    /// (each at most 63).
    static func writeDenseRegisters(_ bytes: inout [UInt8], _ registers: [UInt8]) {
        bytes.withUnsafeMutableBytes { p in
            registers.withUnsafeBufferPointer { r in
                var byte = headerSize, i = 0
                while i < registerCount {
                    let r0 = r[i], r1 = r[i + 1], r2 = r[i + 2], r3 = r[i + 3]
                    p[byte] = r0 | (r1 << 6)
                    p[byte + 1] = (r1 >> 2) | (r2 << 4)
                    p[byte + 2] = (r2 >> 4) | (r3 << 2)
                    byte += 3
                    i += 4
                }
            }
        }
    }

    /// PFMERGE's write: raises the registers of `bytes` to `merged` (one
    /// byte per register). A dense HLL is rewritten whole, which is the same
    /// as raising each register since `merged` already holds its own.
    public static func raiseRegisters(_ bytes: inout [UInt8], to merged: [UInt8], sparseMaxBytes: Int) {
        if bytes[4] == denseEncoding {
            var registers = merged
            forEachDenseRegister(bytes) { r, v in if v > registers[r] { registers[r] = v } }
            writeDenseRegisters(&bytes, registers)
            return
        }
        for (i, value) in merged.enumerated() where value != 0 {
            _ = setRegister(&bytes, i, value, sparseMaxBytes: sparseMaxBytes)
        }
    }

    // MARK: - Sparse opcodes

    /// One decoded sparse opcode: `length` registers holding `value` (0 for
    /// ZERO and XZERO), `size` bytes long.
    @inline(__always)
    static func opcode(_ s: UnsafeRawBufferPointer, _ p: Int) -> (value: Int, length: Int, size: Int) {
        let b = s[p]
        if b & 0xC0 == 0 { return (0, Int(b & 0x3F) + 1, 1) }
        if b & 0x80 != 0 { return (Int((b >> 2) & 0x1F) + 1, Int(b & 3) + 1, 1) }
        // XZERO: a truncated one reads its missing byte as 0, like Redis
        // reading the string's terminator.
        let low: Int = p + 1 < s.count ? Int(s[p + 1]) : 0
        return (0, (Int(b & 0x3F) << 8 | low) + 1, 2)
    }

    static func valOpcode(_ value: Int, _ length: Int) -> UInt8 {
        UInt8((value - 1) << 2 | (length - 1)) | 0x80
    }

    /// A run of zeros as one ZERO, or an XZERO when longer than 64.
    static func appendZeros(_ out: inout [UInt8], _ length: Int) {
        if length > sparseZeroMaxLength {
            out.append(UInt8((length - 1) >> 8) | 0x40)
            out.append(UInt8((length - 1) & 0xFF))
        } else {
            out.append(UInt8(length - 1))
        }
    }

    /// Calls `body(firstRegister, value, length)` for each VAL opcode of a
    /// sparse HLL; returns the number of registers described (16384 when
    /// well formed), or -1 as soon as a VAL run would pass the last register
    /// (redis-server refuses such a value whatever follows).
    @inline(__always)
    static func forEachRun(_ bytes: [UInt8], _ body: (Int, Int, Int) -> Void) -> Int {
        bytes.withUnsafeBytes { s in
            var p = headerSize, index = 0
            while p < s.count {
                let op = opcode(s, p)
                if op.value > 0 {
                    if index + op.length > registerCount { return -1 }
                    body(index, op.value, op.length)
                }
                index += op.length
                p += op.size
            }
            return index
        }
    }

    /// Converts a sparse HLL to dense in place (`hllSparseToDense`): the
    /// header (cached cardinality included) is kept. False when the opcodes
    /// are corrupted; the value is then left as it was.
    public static func toDense(_ bytes: inout [UInt8]) -> Bool {
        guard bytes[4] == sparseEncoding else { return true }
        var dense = [UInt8](repeating: 0, count: denseSize)
        for i in 0..<headerSize { dense[i] = bytes[i] }
        dense[4] = denseEncoding
        let described = dense.withUnsafeMutableBytes { d in
            forEachRun(bytes) { first, value, length in
                for r in first..<(first + length) { denseSetRegister(d, headerSize, r, UInt8(value)) }
            }
        }
        guard described == registerCount else { return false }
        bytes = dense
        return true
    }

    /// Raises register `index` of a sparse HLL to `count` (`hllSparseSet`),
    /// rewriting the opcode that covers it into at most three, then merging
    /// equal neighbouring VAL opcodes; promotes the value to dense when the
    /// count does not fit a VAL opcode or the string would pass
    /// `sparseMaxBytes`.
    static func sparseSet(_ bytes: inout [UInt8], _ index: Int, _ count: UInt8, sparseMaxBytes: Int) -> Update {
        if Int(count) > sparseValMaxValue { return promote(&bytes, index, count) }
        // Step 1: find the opcode covering `index`.
        var p = headerSize, first = 0, span = 0
        var prev: Int? = nil
        var op = (value: 0, length: 0, size: 0)
        let end = bytes.count
        bytes.withUnsafeBytes { s in
            while p < end {
                op = opcode(s, p)
                span = op.length
                if index <= first + span - 1 { break }
                prev = p
                p += op.size
                first += span
            }
        }
        if span == 0 || p >= end { return .corrupted }
        let isVal = bytes[p] & 0x80 != 0
        let isXZero = !isVal && bytes[p] & 0x40 != 0
        let runLength = op.length
        var changedInPlace = false
        if isVal {
            if op.value >= Int(count) { return .unchanged }
            if runLength == 1 {
                bytes[p] = valOpcode(Int(count), 1)
                changedInPlace = true
            }
        } else if runLength == 1 {
            bytes[p] = valOpcode(Int(count), 1)
            changedInPlace = true
        }
        if !changedInPlace {
            // Step 2: the replacement sequence, up to 5 bytes.
            let last = first + span - 1
            var seq: [UInt8] = []
            seq.reserveCapacity(5)
            if isVal {
                if index != first { seq.append(valOpcode(op.value, index - first)) }
                seq.append(valOpcode(Int(count), 1))
                if index != last { seq.append(valOpcode(op.value, last - index)) }
            } else {
                if index != first { appendZeros(&seq, index - first) }
                seq.append(valOpcode(Int(count), 1))
                if index != last { appendZeros(&seq, last - index) }
            }
            // Step 3: substitute it, unless the string would grow too large.
            let oldLength = isXZero ? 2 : 1
            if seq.count - oldLength > 0 && bytes.count + seq.count - oldLength > sparseMaxBytes {
                return promote(&bytes, index, count)
            }
            bytes.replaceSubrange(p..<(min(p + oldLength, end)), with: seq)
            // A truncated XZERO as the last byte: Redis grows the string by
            // the sequence's size less two, so its last byte is cut off.
            if p + oldLength > end { bytes.removeLast() }
        }
        // Step 4: merge adjacent VAL opcodes of equal value, scanning up to
        // five opcodes from the one before the change.
        var q = prev ?? headerSize
        var scan = 5
        while q < bytes.count && scan > 0 {
            scan -= 1
            let b = bytes[q]
            if b & 0xC0 == 0x40 { q += 2; continue }
            if b & 0xC0 == 0 { q += 1; continue }
            if q + 1 < bytes.count && bytes[q + 1] & 0x80 != 0 {
                let v1 = Int((b >> 2) & 0x1F) + 1, v2 = Int((bytes[q + 1] >> 2) & 0x1F) + 1
                let length = Int(b & 3) + 1 + Int(bytes[q + 1] & 3) + 1
                if v1 == v2 && length <= sparseValMaxLength {
                    bytes[q + 1] = valOpcode(v1, length)
                    bytes.remove(at: q)
                    continue
                }
            }
            q += 1
        }
        invalidateCache(&bytes)
        return .updated
    }

    static func promote(_ bytes: inout [UInt8], _ index: Int, _ count: UInt8) -> Update {
        guard toDense(&bytes) else { return .corrupted }
        // A register needed a change the sparse form could not hold, so the
        // dense set always changes it.
        _ = denseSet(&bytes, index, count)
        return .updated
    }

    /// Raises register `index` to `count` in either encoding.
    public static func setRegister(_ bytes: inout [UInt8], _ index: Int, _ count: UInt8, sparseMaxBytes: Int) -> Update {
        if bytes[4] == denseEncoding { return denseSet(&bytes, index, count) ? .updated : .unchanged }
        return sparseSet(&bytes, index, count, sparseMaxBytes: sparseMaxBytes)
    }

    /// PFADD of one element (`hllAdd`).
    public static func add(_ bytes: inout [UInt8], _ element: UnsafeRawBufferPointer, sparseMaxBytes: Int) -> Update {
        let (index, count) = patternLength(element)
        return setRegister(&bytes, index, count, sparseMaxBytes: sparseMaxBytes)
    }

    // MARK: - Estimating

    /// Registers of each value (`reghisto`), nil when a sparse HLL does not
    /// describe exactly 16384 registers.
    static func histogram(_ bytes: [UInt8]) -> [Int]? {
        var histo = [Int](repeating: 0, count: 64)
        if bytes[4] == denseEncoding {
            forEachDenseRegister(bytes) { _, v in histo[Int(v)] += 1 }
            return histo
        }
        var index = 0
        bytes.withUnsafeBytes { s in
            var p = headerSize
            while p < s.count {
                let op = opcode(s, p)
                index += op.length
                histo[op.value] += op.length
                p += op.size
            }
        }
        return index == registerCount ? histo : nil
    }

    /// Redis's `hllSigma`.
    static func sigma(_ x0: Double) -> Double {
        if x0 == 1 { return .infinity }
        var x = x0, y = 1.0, z = x0, zPrime = 0.0
        repeat {
            x *= x
            zPrime = z
            z += x * y
            y += y
        } while zPrime != z
        return z
    }

    /// Redis's `hllTau`.
    static func tau(_ x0: Double) -> Double {
        if x0 == 0 || x0 == 1 { return 0 }
        var x = x0, y = 1.0, z = 1 - x0, zPrime = 0.0
        repeat {
            x = x.squareRoot()
            zPrime = z
            y *= 0.5
            z -= pow(1 - x, 2) * y
        } while zPrime != z
        return z / 3
    }

    /// The improved estimator of Ertl's "New cardinality estimation
    /// algorithms for HyperLogLog sketches", as Redis 7.0's `hllCount`.
    static func estimate(_ histo: [Int]) -> UInt64 {
        let m = Double(registerCount)
        var z = m * tau((m - Double(histo[q + 1])) / m)
        for j in stride(from: q, through: 1, by: -1) {
            z += Double(histo[j])
            z *= 0.5
        }
        z += m * sigma(Double(histo[0]) / m)
        return UInt64((alphaInf * m * m / z).rounded(.toNearestOrAwayFromZero))
    }

    /// The estimated cardinality of one HLL, nil when corrupted.
    public static func count(_ bytes: [UInt8]) -> UInt64? {
        histogram(bytes).map(estimate)
    }

    // MARK: - Merging

    /// Raises `registers` (one byte per register) to the registers of
    /// `bytes` (`hllMerge`); false when a sparse HLL is corrupted.
    public static func merge(into registers: inout [UInt8], _ bytes: [UInt8]) -> Bool {
        if bytes[4] == denseEncoding {
            registers.withUnsafeMutableBufferPointer { max in
                forEachDenseRegister(bytes) { r, v in if v > max[r] { max[r] = v } }
            }
            return true
        }
        let described = forEachRun(bytes) { first, value, length in
            for r in first..<(first + length) where UInt8(value) > registers[r] { registers[r] = UInt8(value) }
        }
        return described == registerCount
    }

    /// The estimate over one-byte-per-register registers (PFCOUNT of several keys).
    public static func count(registers: [UInt8]) -> UInt64 {
        var histo = [Int](repeating: 0, count: 256)
        for r in registers { histo[Int(r)] += 1 }
        return estimate(histo)
    }

    // MARK: - Debugging

    /// PFDEBUG DECODE's text: "z:len", "Z:len" and "v:value,len" per opcode.
    public static func decode(_ bytes: [UInt8]) -> String {
        var parts: [String] = []
        bytes.withUnsafeBytes { s in
            var p = headerSize
            while p < s.count {
                let op = opcode(s, p)
                if op.value > 0 { parts.append("v:\(op.value),\(op.length)") }
                else { parts.append(op.size == 2 ? "Z:\(op.length)" : "z:\(op.length)") }
                p += op.size
            }
        }
        return parts.joined(separator: " ")
    }

    /// PFSELFTEST: nil when the checks pass, else what failed. Checks that
    /// dense registers read back what was written next to their neighbours,
    /// that sparse and dense forms of the same HLL estimate the same, and
    /// that the estimate stays within a few standard errors as it grows.
    public static func selfTest() -> String? {
        var state: UInt64 = 0x5EED  // a fixed LCG, so a failure repeats
        var dense = [UInt8](repeating: 0, count: denseSize)
        dense.replaceSubrange(0..<4, with: Array("HYLL".utf8))
        var expected = [UInt8](repeating: 0, count: registerCount)
        for round in 0..<100 {
            dense.withUnsafeMutableBytes { p in
                for r in 0..<registerCount {
                    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                    let v = UInt8(truncatingIfNeeded: state >> 58)
                    expected[r] = v
                    denseSetRegister(p, headerSize, r, v)
                }
            }
            for r in 0..<registerCount where denseRegister(dense, r) != expected[r] {
                return "TESTFAILED Register error at round \(round), register \(r)"
            }
        }
        var sparse = empty()
        var denseHLL = empty()
        _ = toDense(&denseHLL)
        let relativeError = 1.04 / Double(registerCount).squareRoot()
        var checkpoint = 10
        var element = [UInt8](repeating: 0, count: 8)
        for n in 1...10_000 {
            withUnsafeBytes(of: UInt64(n).littleEndian) { raw in
                for i in 0..<8 { element[i] = raw[i] }
            }
            element.withUnsafeBytes { e in
                _ = add(&sparse, e, sparseMaxBytes: Int.max)
                _ = add(&denseHLL, e, sparseMaxBytes: Int.max)
            }
            guard n == checkpoint else { continue }
            checkpoint *= 10
            guard let a = count(sparse), let b = count(denseHLL), a == b else {
                return "TESTFAILED sparse and dense estimates differ at \(n)"
            }
            let error = abs(Double(a) - Double(n)) / Double(n)
            if error > max(5 * relativeError, n < 100 ? 0.05 : 0) {
                return "TESTFAILED too big error. card:\(n) abserr:\(error)"
            }
        }
        return nil
    }
}
