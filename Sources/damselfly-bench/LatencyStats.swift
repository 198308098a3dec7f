import Histogram

/// Latencies of one command type, in nanoseconds, in an HDR histogram (3 significant digits,
/// up to 60 s), plus the operation count. One per thread; merged after the threads join.
struct LatencyStats {
    static let highestTrackable: UInt64 = 60_000_000_000

    var histogram = Histogram<UInt64>(
        lowestDiscernibleValue: 1, highestTrackableValue: LatencyStats.highestTrackable, numberOfSignificantValueDigits: .three)
    var ops = 0

    /// Records `count` replies that all took `nanos` (the replies of one batch read together).
    @inline(__always)
    mutating func record(_ nanos: UInt64, count: Int) {
        guard count > 0 else { return }
        _ = histogram.record(Swift.min(Swift.max(nanos, 1), LatencyStats.highestTrackable), count: UInt64(count))
        ops += count
    }

    mutating func merge(_ other: LatencyStats) {
        histogram.add(other.histogram)
        ops += other.ops
    }

    /// Microseconds.
    var averageMicros: Double { ops == 0 ? 0 : histogram.mean / 1000 }
    func percentileMicros(_ p: Double) -> Double { ops == 0 ? 0 : Double(histogram.valueAtPercentile(p)) / 1000 }
    var maxMicros: Double { ops == 0 ? 0 : Double(histogram.max) / 1000 }

    /// `{"avg":…,"p50":…,"p99":…,"p999":…,"max":…}` in microseconds.
    var json: String {
        "{\"avg\": \(fixed(averageMicros, 2)), \"p50\": \(fixed(percentileMicros(50), 2)), "
            + "\"p99\": \(fixed(percentileMicros(99), 2)), \"p999\": \(fixed(percentileMicros(99.9), 2)), "
            + "\"max\": \(fixed(maxMicros, 2))}"
    }
}

/// `value` with `digits` decimals, without Foundation's `String(format:)`.
func fixed(_ value: Double, _ digits: Int) -> String {
    guard value.isFinite else { return "0" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = (abs(value) * scale).rounded()
    let whole = Int(scaled / scale)
    let fraction = Int(scaled - Double(whole) * scale)
    var s = (value < 0 && scaled != 0 ? "-" : "") + String(whole)
    if digits > 0 {
        let f = String(fraction)
        s += "." + String(repeating: "0", count: max(0, digits - f.count)) + f
    }
    return s
}

/// `s` padded on the left to `width` characters.
func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
}

/// `s` as a JSON string literal.
func jsonString(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 {
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}
