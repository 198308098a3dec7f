/// Decimal integers written straight into a byte buffer: replies and requests carry a number
/// in every header, and going through `String` would allocate each time.
@usableFromInline
enum RESPDigits {
    /// Decimal digits of `magnitude`.
    @inlinable
    static func digitCount(_ magnitude: UInt) -> Int {
        var digits = 1
        var probe = magnitude
        while probe >= 10 {
            probe /= 10
            digits += 1
        }
        return digits
    }

    /// Characters `v` takes in decimal, the '-' included.
    @inlinable
    static func count(_ v: Int) -> Int {
        digitCount(v.magnitude) + (v < 0 ? 1 : 0)
    }

    /// Stores the `digits` decimal digits of `magnitude` (``digitCount(_:)``) at `out`.
    @inlinable @inline(__always)
    static func write(_ magnitude: UInt, digits: Int, to out: UnsafeMutableRawPointer) {
        var rest = magnitude
        var i = digits
        repeat {
            i &-= 1
            out.storeBytes(of: UInt8(truncatingIfNeeded: rest % 10) &+ 0x30, toByteOffset: i, as: UInt8.self)
            rest /= 10
        } while i > 0
    }

    /// Appends `v` in decimal (Int.min included: works on the magnitude).
    @inlinable
    static func append(_ v: Int, to buffer: inout [UInt8]) {
        var magnitude = v.magnitude
        if v < 0 { buffer.append(UInt8(ascii: "-")) }
        if magnitude < 10 {
            buffer.append(UInt8(truncatingIfNeeded: magnitude) &+ 0x30)
            return
        }
        // Digits come out least significant first: fill a stack buffer backwards, append once.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var i = 20
            repeat {
                i -= 1
                digits[i] = UInt8(truncatingIfNeeded: magnitude % 10) &+ 0x30
                magnitude /= 10
            } while magnitude != 0
            buffer.append(contentsOf: UnsafeBufferPointer(rebasing: digits[i..<20]))
        }
    }
}
