import Glibc
import Logging

/// A swift-log handler that writes Sidekiq's log line to stderr:
/// `2024-05-01T10:00:00.123Z pid=1 tid=abc class=X jid=Y INFO: start`.
///
/// `damselfly-jobs` bootstraps `LoggingSystem` with it, so the runner prints what Sidekiq
/// prints. The runner itself only logs through a swift-log `Logger` (``WorkerOptions/logger``),
/// so an application that embeds it and bootstraps its own backend gets the runner's lines
/// there, with `tid`, `class` and `jid` as metadata.
public struct SidekiqLogHandler: LogHandler {
    public var logLevel: Logging.Logger.Level = .info
    public var metadata: Logging.Logger.Metadata = [:]
    public var metadataProvider: Logging.Logger.MetadataProvider?
    let output: @Sendable (String) -> Void

    public init(label: String) {
        self.init(label: label, metadataProvider: nil)
    }

    public init(label: String, metadataProvider: Logging.Logger.MetadataProvider?) {
        self.metadataProvider = metadataProvider
        output = { line in
            var bytes = Array(line.utf8)
            _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
        }
    }

    /// A handler that hands each line to `output` (the tests read them).
    init(output: @escaping @Sendable (String) -> Void) {
        self.output = output
    }

    public subscript(metadataKey key: String) -> Logging.Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Sidekiq's level names.
    static func label(_ level: Logging.Logger.Level) -> String {
        switch level {
        case .trace, .debug: return "DEBUG"
        case .info, .notice: return "INFO"
        case .warning: return "WARN"
        case .error: return "ERROR"
        case .critical: return "FATAL"
        }
    }

    /// Sidekiq's context keys first, in its order, then any others sorted.
    static let contextOrder = ["tid", "class", "jid"]

    public func log(event: LogEvent) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { $1 } }
        if let own = event.metadata { all.merge(own) { $1 } }
        var context = ""
        for key in SidekiqLogHandler.contextOrder { if let v = all.removeValue(forKey: key) { context += " \(key)=\(v)" } }
        for key in all.keys.sorted() { context += " \(key)=\(all[key]!)" }
        output("\(SidekiqLogHandler.timestamp()) pid=\(getpid())\(context) \(SidekiqLogHandler.label(event.level)): \(event.message)\n")
    }

    /// UTC with milliseconds, as Sidekiq's formatter writes it.
    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = ts.tv_sec
        var parts = tm()
        gmtime_r(&t, &parts)
        func pad(_ v: Int, _ n: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, n - s.count)) + s
        }
        return "\(parts.tm_year + 1900)-\(pad(Int(parts.tm_mon + 1), 2))-\(pad(Int(parts.tm_mday), 2))T"
            + "\(pad(Int(parts.tm_hour), 2)):\(pad(Int(parts.tm_min), 2)):\(pad(Int(parts.tm_sec), 2)).\(pad(ts.tv_nsec / 1_000_000, 3))Z"
    }
}
