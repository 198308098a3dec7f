import CDamselfly

/// Clocks used on the command path: cheap, vDSO-backed.
public enum Clock {
    /// Monotonic nanoseconds, for durations.
    @inlinable public static func monotonicNanos() -> UInt64 { dfly_monotonic_ns() }
    /// Unix time in milliseconds, for TTLs (Redis keeps absolute unix-ms expiry times).
    @inlinable public static func wallMillis() -> Int64 { dfly_wall_ms() }
    /// Unix time in microseconds, for TIME and SLOWLOG.
    @inlinable public static func wallMicros() -> Int64 { dfly_wall_us() }
    /// Whole seconds from the monotonic instant `since` to now (CLIENT LIST's idle, `timeout`).
    @inlinable public static func idleSeconds(since: UInt64) -> Int {
        let now = monotonicNanos()
        return now > since ? Int((now - since) / 1_000_000_000) : 0
    }
}
