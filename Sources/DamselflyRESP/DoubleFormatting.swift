/// C's `%.17g` for a `Double`, the way Redis 7.0 formats doubles in replies, without `snprintf`:
/// Swift cannot call variadic C functions, and `withVaList` + `vsnprintf` allocates.
///
/// The digits are exact: the double is turned into a big integer (m·2^e, or m·5^k for negative
/// exponents, scaled by 10^-k), printed fully in decimal, then rounded to 17 significant digits
/// half-to-even, exactly as glibc's printf does. Scratch memory is on the stack.
///
/// Non-finite values: "inf", "-inf", "nan" (Redis prints these explicitly; NaN's sign is dropped).
@usableFromInline
enum DoubleFormatting {
    /// Appends the `%.17g` text of `value` to `out`.
    @usableFromInline
    static func appendG17(_ value: Double, to out: inout [UInt8]) {
        if value.isNaN {
            out.append(contentsOf: [0x6E, 0x61, 0x6E])  // nan
            return
        }
        if value.isInfinite {
            if value < 0 { out.append(UInt8(ascii: "-")) }
            out.append(contentsOf: [0x69, 0x6E, 0x66])  // inf
            return
        }
        if value.sign == .minus { out.append(UInt8(ascii: "-")) }
        if value == 0 {
            out.append(UInt8(ascii: "0"))
            return
        }
        // value = mantissa * 2^exponent exactly.
        let bits = value.bitPattern
        let biased = Int((bits >> 52) & 0x7FF)
        var mantissa = bits & ((1 << 52) - 1)
        var exponent: Int
        if biased == 0 {
            exponent = -1074
        } else {
            mantissa |= 1 << 52
            exponent = biased - 1075
        }
        while mantissa & 1 == 0 {  // smaller numbers, same value
            mantissa >>= 1
            exponent += 1
        }

        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 96) { limbs in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 900) { digits in
                // Big integer N (little-endian base 2^32) and decimal scale: value = N * 10^scale.
                limbs[0] = UInt32(truncatingIfNeeded: mantissa)
                limbs[1] = UInt32(truncatingIfNeeded: mantissa >> 32)
                var used = limbs[1] == 0 ? 1 : 2
                var scale = 0
                func multiply(by factor: UInt32) {
                    var carry: UInt64 = 0
                    for i in 0..<used {
                        let product = UInt64(limbs[i]) * UInt64(factor) + carry
                        limbs[i] = UInt32(truncatingIfNeeded: product)
                        carry = product >> 32
                    }
                    if carry != 0 {
                        limbs[used] = UInt32(carry)
                        used += 1
                    }
                }
                if exponent >= 0 {
                    var left = exponent
                    while left > 0 {
                        let step = Swift.min(left, 31)
                        multiply(by: UInt32(1) << UInt32(step))
                        left -= step
                    }
                } else {
                    // m / 2^k = m * 5^k / 10^k
                    var left = -exponent
                    scale = exponent
                    while left > 0 {
                        let step = Swift.min(left, 13)  // 5^13 < 2^32
                        var factor: UInt32 = 1
                        for _ in 0..<step { factor *= 5 }
                        multiply(by: factor)
                        left -= step
                    }
                }
                // Decimal digits of N, least significant first, nine at a time.
                var count = 0
                while used > 0 {
                    var remainder: UInt64 = 0
                    var i = used - 1
                    while i >= 0 {
                        let current = (remainder << 32) | UInt64(limbs[i])
                        limbs[i] = UInt32(current / 1_000_000_000)
                        remainder = current % 1_000_000_000
                        i -= 1
                    }
                    while used > 0 && limbs[used - 1] == 0 { used -= 1 }
                    var chunk = UInt32(remainder)
                    for _ in 0..<9 {
                        digits[count] = UInt8(chunk % 10)
                        chunk /= 10
                        count += 1
                        if used == 0 && chunk == 0 { break }
                    }
                }
                while count > 1 && digits[count - 1] == 0 { count -= 1 }
                // digits[count-1] is the most significant. Decimal exponent of the first digit:
                var decimalExponent = count - 1 + scale
                // Round to 17 significant digits, half to even on the exact value.
                withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 18) { sig in
                    for j in 0..<17 {
                        let index = count - 1 - j
                        sig[j] = index >= 0 ? digits[index] : 0
                    }
                    if count > 17 {
                        let next = digits[count - 18]
                        var sticky = false
                        var k = count - 19
                        while k >= 0 {
                            if digits[k] != 0 { sticky = true; break }
                            k -= 1
                        }
                        let roundUp = next > 5 || (next == 5 && (sticky || sig[16] & 1 == 1))
                        if roundUp {
                            var j = 16
                            while j >= 0 {
                                if sig[j] == 9 {
                                    sig[j] = 0
                                    j -= 1
                                } else {
                                    sig[j] += 1
                                    break
                                }
                            }
                            if j < 0 {
                                sig[0] = 1  // 99..9 rounded to 100..0
                                decimalExponent += 1
                            }
                        }
                    }
                    var last = 16
                    while last > 0 && sig[last] == 0 { last -= 1 }
                    let zero = UInt8(ascii: "0")
                    if decimalExponent < -4 || decimalExponent >= 17 {
                        out.append(zero + sig[0])
                        if last > 0 {
                            out.append(UInt8(ascii: "."))
                            for j in 1...last { out.append(zero + sig[j]) }
                        }
                        out.append(UInt8(ascii: "e"))
                        out.append(decimalExponent < 0 ? UInt8(ascii: "-") : UInt8(ascii: "+"))
                        let magnitude = abs(decimalExponent)
                        if magnitude >= 100 { out.append(zero + UInt8(magnitude / 100)) }
                        out.append(zero + UInt8(magnitude / 10 % 10))
                        out.append(zero + UInt8(magnitude % 10))
                    } else if decimalExponent >= 0 {
                        for j in 0...decimalExponent { out.append(zero + sig[j]) }
                        if last > decimalExponent {
                            out.append(UInt8(ascii: "."))
                            for j in (decimalExponent + 1)...last { out.append(zero + sig[j]) }
                        }
                    } else {
                        out.append(zero)
                        out.append(UInt8(ascii: "."))
                        for _ in 0..<(-decimalExponent - 1) { out.append(zero) }
                        for j in 0...last { out.append(zero + sig[j]) }
                    }
                }
            }
        }
    }
}
