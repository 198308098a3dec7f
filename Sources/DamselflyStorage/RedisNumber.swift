#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Integer and float parsing/formatting from raw bytes with Redis's exact acceptance rules.
///
/// Many commands (INCR, EXPIRE, SETRANGE, ZADD, ...) must accept and reject exactly what Redis
/// does, and the string type decides its "int" encoding with the same rule, so they all share this.
public enum RedisNumber {
    /// C's `strtoul`/`strtoull` body from `start`: an optional sign (a '-' negates modulo
    /// 2^64), then decimal digits to the end, at least one, without overflow. Nil otherwise.
    /// What may come before `start` (blanks, a strict fast path) is the caller's rule.
    public static func parseWrappingUnsigned(_ bytes: UnsafeRawBufferPointer, from start: Int) -> UInt64? {
        var i = start
        let n = bytes.count
        var negative = false
        if i < n, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") {
            negative = bytes[i] == UInt8(ascii: "-")
            i += 1
        }
        guard i < n else { return nil }
        var value: UInt64 = 0
        while i < n {
            let c = bytes[i]
            guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") else { return nil }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(c - UInt8(ascii: "0")))
            if o1 || o2 { return nil }
            value = s
            i += 1
        }
        return negative ? 0 &- value : value
    }

    /// Redis's `string2ll`: optional '-', then digits with no leading zeros (except "0" itself),
    /// no spaces, no '+', and the value must fit `Int64`. "-0" is rejected.
    @inlinable
    public static func parseInt64(_ bytes: UnsafeRawBufferPointer) -> Int64? {
        let n = bytes.count
        if n == 0 || n > 20 { return nil }
        if n == 1 && bytes[0] == UInt8(ascii: "0") { return 0 }
        var i = 0
        let negative = bytes[0] == UInt8(ascii: "-")
        if negative {
            i = 1
            if n == 1 { return nil }
        }
        let first = bytes[i]
        guard first >= UInt8(ascii: "1") && first <= UInt8(ascii: "9") else { return nil }
        var magnitude: UInt64 = UInt64(first &- UInt8(ascii: "0"))
        i += 1
        while i < n {
            let c = bytes[i]
            guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") else { return nil }
            let (m1, o1) = magnitude.multipliedReportingOverflow(by: 10)
            if o1 { return nil }
            let (m2, o2) = m1.addingReportingOverflow(UInt64(c &- UInt8(ascii: "0")))
            if o2 { return nil }
            magnitude = m2
            i += 1
        }
        if negative {
            if magnitude > UInt64(Int64.max) + 1 { return nil }
            return Int64(truncatingIfNeeded: 0 &- magnitude)
        }
        if magnitude > UInt64(Int64.max) { return nil }
        return Int64(magnitude)
    }

    /// Redis's `string2d` (used by getDoubleFromObject): `strtod` must consume every byte, no leading
    /// whitespace, NaN is rejected, and so are overflow to ±HUGE_VAL and underflow to zero (ERANGE).
    /// Accepts what strtod accepts, e.g. "inf", "-inf", "+inf", "1e5", ".5", "0x1p3".
    public static func parseDouble(_ bytes: UnsafeRawBufferPointer) -> Double? {
        let n = bytes.count
        if n == 0 { return nil }
        switch bytes[0] {
        case 0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D: return nil
        default: break
        }
        // strtod needs a NUL-terminated string; small inputs use a stack buffer.
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: n + 1) { buffer -> Double? in
            let base = buffer.baseAddress!
            memcpy(base, bytes.baseAddress!, n)
            base[n] = 0
            var end: UnsafeMutablePointer<CChar>? = nil
            errno = 0
            let value = strtod(base, &end)
            let rangeError = errno == ERANGE
            guard let end, end - base == n else { return nil }
            if value.isNaN { return nil }
            if rangeError && (value.isInfinite || value == 0) { return nil }
            return value
        }
    }

    /// Number of decimal characters of `value` (with the '-' sign), as Redis's `sdigits10`.
    @inlinable
    public static func decimalLength(of value: Int64) -> Int {
        var m = value.magnitude
        var digits = 1
        while m >= 10 {
            m /= 10
            digits += 1
        }
        return value < 0 ? digits + 1 : digits
    }

    /// Calls `body` with the decimal text of `value`, formatted into a stack buffer (no heap allocation).
    @inlinable
    public static func withDecimalBytes<R>(of value: Int64, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        // 20 characters suffice for "-9223372036854775808"; 24 bytes of stack.
        var storage: (UInt64, UInt64, UInt64) = (0, 0, 0)
        return try withUnsafeMutableBytes(of: &storage) { raw in
            var position = raw.count
            var m = value.magnitude
            repeat {
                position -= 1
                raw[position] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: m % 10)
                m /= 10
            } while m != 0
            if value < 0 {
                position -= 1
                raw[position] = UInt8(ascii: "-")
            }
            return try body(UnsafeRawBufferPointer(rebasing: raw[position...]))
        }
    }
}
