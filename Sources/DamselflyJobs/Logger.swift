import Glibc

/// Sidekiq's log line: `2024-05-01T10:00:00.123Z pid=1 tid=abc class=X jid=Y INFO: start`.
public struct Logger: Sendable {
    public enum Level: Int, Sendable, Comparable {
        case debug, info, warn, error
        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
        var label: String {
            switch self {
            case .debug: return "DEBUG"
            case .info: return "INFO"
            case .warn: return "WARN"
            case .error: return "ERROR"
            }
        }
    }

    public var level: Level

    public init(level: Level = .info) { self.level = level }

    public func log(_ level: Level, _ message: @autoclosure () -> String, context: @autoclosure () -> String = "") {
        guard level >= self.level else { return }
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = ts.tv_sec
        var parts = tm()
        gmtime_r(&t, &parts)
        func pad(_ v: Int, _ n: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, n - s.count)) + s
        }
        let stamp = "\(parts.tm_year + 1900)-\(pad(Int(parts.tm_mon + 1), 2))-\(pad(Int(parts.tm_mday), 2))T"
            + "\(pad(Int(parts.tm_hour), 2)):\(pad(Int(parts.tm_min), 2)):\(pad(Int(parts.tm_sec), 2)).\(pad(ts.tv_nsec / 1_000_000, 3))Z"
        let context = context()
        let ctx = context.isEmpty ? "" : " " + context
        let line = "\(stamp) pid=\(getpid())\(ctx) \(level.label): \(message())\n"
        var bytes = Array(line.utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }

    public func debug(_ m: @autoclosure () -> String, context: @autoclosure () -> String = "") { log(.debug, m(), context: context()) }
    public func info(_ m: @autoclosure () -> String, context: @autoclosure () -> String = "") { log(.info, m(), context: context()) }
    public func warn(_ m: @autoclosure () -> String, context: @autoclosure () -> String = "") { log(.warn, m(), context: context()) }
    public func error(_ m: @autoclosure () -> String, context: @autoclosure () -> String = "") { log(.error, m(), context: context()) }
}
