#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Parses a memory size the way Redis's `memtoull` does: decimal digits followed by an optional,
/// case-insensitive unit: `b` (1), `k` (1000), `kb` (1024), `m` (1000²), `mb` (1024²),
/// `g` (1000³), `gb` (1024³). Returns nil for anything else (signs, fractions, empty digits,
/// unknown units) or on overflow of `Int`.
public func parseHumanSize(_ text: String) -> Int? {
    let bytes = Array(text.utf8)
    var i = 0
    while i < bytes.count, bytes[i] >= 0x30, bytes[i] <= 0x39 { i += 1 }
    guard i > 0 else { return nil }
    var value = 0
    for b in bytes[0..<i] {
        let (m, o1) = value.multipliedReportingOverflow(by: 10)
        let (s, o2) = m.addingReportingOverflow(Int(b - 0x30))
        if o1 || o2 { return nil }
        value = s
    }
    let unit = String(decoding: bytes[i...], as: UTF8.self).lowercased()
    let multiplier: Int
    switch unit {
    case "", "b": multiplier = 1
    case "k": multiplier = 1000
    case "kb": multiplier = 1024
    case "m": multiplier = 1000 * 1000
    case "mb": multiplier = 1024 * 1024
    case "g": multiplier = 1000 * 1000 * 1000
    case "gb": multiplier = 1024 * 1024 * 1024
    default: return nil
    }
    let (result, overflow) = value.multipliedReportingOverflow(by: multiplier)
    return overflow ? nil : result
}

/// Formats a byte count like Redis's `bytesToHuman` (used by INFO's `*_human` fields):
/// `"%lluB"` under 1 KiB, then `"%.2fK"`, `"%.2fM"`, `"%.2fG"`, `"%.2fT"`, `"%.2fP"`,
/// and `"%lluB"` again beyond that. Negative values are printed as plain bytes.
public func humanBytes(_ n: Int) -> String {
    if n < 1024 { return "\(n)B" }
    let units: [(Double, String)] = [
        (1024, "K"), (1024 * 1024, "M"), (1024 * 1024 * 1024, "G"),
        (1024.0 * 1024 * 1024 * 1024, "T"), (1024.0 * 1024 * 1024 * 1024 * 1024, "P"),
    ]
    let d = Double(n)
    for (unit, suffix) in units where d < unit * 1024 {
        return formatTwoDecimals(d / unit) + suffix
    }
    return "\(n)B"
}

/// `%.2f` through the C library, so rounding matches Redis exactly.
func formatTwoDecimals(_ value: Double) -> String {
    var buffer = [CChar](repeating: 0, count: 64)
    _ = withVaList([value]) { args in
        buffer.withUnsafeMutableBufferPointer { vsnprintf($0.baseAddress, $0.count, "%.2f", args) }
    }
    return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

/// The shortest exact rendering of a size in the units `parseHumanSize` accepts:
/// `512mb`, `4gb`, `10kb`, or plain bytes. Used for defaults in help and flagfiles.
func compactHumanSize(_ n: Int) -> String {
    if n == 0 { return "0" }
    let gib = 1024 * 1024 * 1024, mib = 1024 * 1024, kib = 1024
    if n % gib == 0 { return "\(n / gib)gb" }
    if n % mib == 0 { return "\(n / mib)mb" }
    if n % kib == 0 { return "\(n / kib)kb" }
    return "\(n)"
}
