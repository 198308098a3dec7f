/// A stream entry ID: a millisecond time and a sequence number, ordered as a
/// pair (Redis's `streamID`).
public struct StreamID: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var ms: UInt64
    public var seq: UInt64

    @inlinable
    public init(_ ms: UInt64, _ seq: UInt64) {
        self.ms = ms
        self.seq = seq
    }

    public static let zero = StreamID(0, 0)
    public static let max = StreamID(.max, .max)

    @inlinable
    public static func < (a: StreamID, b: StreamID) -> Bool {
        a.ms != b.ms ? a.ms < b.ms : a.seq < b.seq
    }

    @inlinable public var isZero: Bool { ms == 0 && seq == 0 }

    /// The next ID in order, nil after ``max``.
    @inlinable
    public var successor: StreamID? {
        if seq != .max { return StreamID(ms, seq + 1) }
        if ms != .max { return StreamID(ms + 1, 0) }
        return nil
    }

    /// The previous ID in order, nil before ``zero``.
    @inlinable
    public var predecessor: StreamID? {
        if seq != 0 { return StreamID(ms, seq - 1) }
        if ms != 0 { return StreamID(ms - 1, .max) }
        return nil
    }

    public var description: String { "\(ms)-\(seq)" }

    /// The `ms-seq` text as bytes, for replies: written digit by digit into
    /// one allocation (every XADD replies with one; `description` goes
    /// through String interpolation).
    public var bytes: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: 41) { out, n in
            n = StreamID.writeDecimal(ms, out, at: 0)
            out[n] = UInt8(ascii: "-")
            n = StreamID.writeDecimal(seq, out, at: n + 1)
        }
    }

    /// The `ms-seq` text in a stack buffer, valid during `body`: for replies encoded in
    /// place, with no array per ID.
    public func withText<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 41) { out in
            var n = StreamID.writeDecimal(ms, out, at: 0)
            out[n] = UInt8(ascii: "-")
            n = StreamID.writeDecimal(seq, out, at: n + 1)
            return body(UnsafeRawBufferPointer(UnsafeMutableBufferPointer(rebasing: out[0..<n])))
        }
    }

    /// Writes `v` in decimal at `at`; returns the index after its last digit.
    static func writeDecimal(_ v: UInt64, _ out: UnsafeMutableBufferPointer<UInt8>, at: Int) -> Int {
        var digits = 1
        var rest = v
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        rest = v
        var i = at + digits
        repeat {
            i -= 1
            out[i] = UInt8(truncatingIfNeeded: rest % 10) &+ UInt8(ascii: "0")
            rest /= 10
        } while rest != 0
        return at + digits
    }

    // MARK: - Parsing

    /// What an ID argument says: a concrete ID, and whether the sequence
    /// was given (false for `ms-*`, which XADD completes).
    public struct Parsed: Sendable {
        public var id: StreamID
        public var seqGiven: Bool
    }

    /// Parses an ID argument by Redis's rules: `ms-seq`, `ms` (the sequence
    /// is then `missingSeq`), `-` and `+` unless `strict`, `ms-*` when
    /// `allowAutoSeq`. Each part is an unsigned 64-bit decimal as Redis's
    /// `string2ull` reads it (strictly, else as `strtoull` would). Nil when
    /// invalid.
    public static func parse(
        _ bytes: UnsafeRawBufferPointer, missingSeq: UInt64 = 0, strict: Bool = false, allowAutoSeq: Bool = false
    ) -> Parsed? {
        guard bytes.count <= 127 else { return nil }
        if bytes.count == 1 && (bytes[0] == UInt8(ascii: "-") || bytes[0] == UInt8(ascii: "+")) {
            if strict { return nil }
            return Parsed(id: bytes[0] == UInt8(ascii: "-") ? .zero : .max, seqGiven: true)
        }
        let dash = bytes.firstIndex(of: UInt8(ascii: "-"))
        let msPart = UnsafeRawBufferPointer(rebasing: bytes[0..<(dash ?? bytes.count)])
        guard let ms = parseUnsigned(msPart) else { return nil }
        guard let dash else { return Parsed(id: StreamID(ms, missingSeq), seqGiven: true) }
        let seqPart = UnsafeRawBufferPointer(rebasing: bytes[(dash + 1)...])
        if allowAutoSeq && seqPart.count == 1 && seqPart[0] == UInt8(ascii: "*") {
            return Parsed(id: StreamID(ms, 0), seqGiven: false)
        }
        guard let seq = parseUnsigned(seqPart) else { return nil }
        return Parsed(id: StreamID(ms, seq), seqGiven: true)
    }

    /// Redis's `string2ull`: a strict signed integer that is not negative,
    /// or else what `strtoull` accepts in full (leading blanks, a sign,
    /// leading zeros; a '-' negates, modulo 2^64), without overflow.
    static func parseUnsigned(_ bytes: UnsafeRawBufferPointer) -> UInt64? {
        if let strict = RedisNumber.parseInt64(bytes) {
            return strict < 0 ? nil : UInt64(strict)
        }
        var i = 0
        let n = bytes.count
        while i < n, bytes[i] == 0x20 || (bytes[i] >= 0x09 && bytes[i] <= 0x0d) { i += 1 }
        return RedisNumber.parseWrappingUnsigned(bytes, from: i)
    }
}
