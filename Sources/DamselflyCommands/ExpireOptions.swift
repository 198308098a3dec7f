import DamselflyStorage

/// Turning a relative or absolute expiry argument into an absolute unix-ms
/// time the way Redis does, with its overflow checks.
public enum ExpireUnit {
    case seconds, milliseconds, unixSeconds, unixMilliseconds

    /// The absolute expiry in unix ms, or nil when the value overflows.
    @inlinable
    public func absoluteMillis(_ value: Int64, nowMs: Int64) -> Int64? {
        var ms = value
        switch self {
        case .seconds, .unixSeconds:
            let (product, overflow) = value.multipliedReportingOverflow(by: 1000)
            if overflow { return nil }
            ms = product
        case .milliseconds, .unixMilliseconds:
            break
        }
        switch self {
        case .seconds, .milliseconds:
            let (sum, overflow) = ms.addingReportingOverflow(nowMs)
            if overflow { return nil }
            return sum
        case .unixSeconds, .unixMilliseconds:
            return ms
        }
    }
}
