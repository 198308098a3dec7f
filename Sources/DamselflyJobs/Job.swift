/// How many times a failed job is retried (Sidekiq's `retry` option).
public enum RetrySetting: Sendable, Equatable {
    /// `retry: true`: the worker's default number of attempts (25).
    case enabled
    /// `retry: false`: a failed job is dropped, neither retried nor sent to the dead set.
    case disabled
    /// `retry: N`: N retries, then the dead set (0 sends it there at once).
    case attempts(Int)

    public var json: JSONValue {
        switch self {
        case .enabled: return .bool(true)
        case .disabled: return .bool(false)
        case .attempts(let n): return .int(Int64(n))
        }
    }

    public init(json: JSONValue?) {
        switch json {
        case .bool(false)?: self = .disabled
        case .int(let n)?: self = .attempts(Int(n))
        case .double(let d)?: self = .attempts(Int(d))
        default: self = .enabled
        }
    }
}

/// A job type's defaults (Sidekiq's `sidekiq_options`).
public struct JobOptions: Sendable, Equatable {
    public var queue: String
    public var retry: RetrySetting
    /// `backtrace`: false, true, or a line count: a failed job then carries `error_backtrace`
    /// (see ``ErrorBacktrace``: Swift stores lines describing the error, not a Ruby backtrace).
    public var backtrace: JSONValue?
    /// `dead: false` drops a job whose retries ran out instead of keeping it in the dead set.
    public var dead: Bool

    public init(queue: String = "default", retry: RetrySetting = .enabled, backtrace: JSONValue? = nil, dead: Bool = true) {
        self.queue = queue
        self.retry = retry
        self.backtrace = backtrace
        self.dead = dead
    }
}

/// What a running job knows about itself, and the pool its Redis commands should use.
public struct JobContext: Sendable {
    public let jid: String
    public let className: String
    public let queue: String
    /// The payload as fetched, the JSON text of ``payload``.
    public let rawPayload: String
    /// The capsule's pool: job code that talks to Redis shares the worker's connections.
    public let redis: RedisPool

    public init(jid: String, className: String, queue: String, rawPayload: String, redis: RedisPool) {
        self.jid = jid
        self.className = className
        self.queue = queue
        self.rawPayload = rawPayload
        self.redis = redis
    }

    /// The whole payload, unknown fields included: parsed when asked for (each time), since
    /// most jobs never look past their arguments.
    public var payload: JSONValue { (try? JSONValue.parse(rawPayload)) ?? .null }
    public var retryCount: Int? { payload["retry_count"]?.intValue.map(Int.init) }
}

/// A background job: a name Sidekiq knows it by, options, and the work.
///
/// A Swift type may answer to a Ruby class name (`static let className = "HardWorker"`), so
/// jobs pushed by a Ruby app run here and the other way round.
public protocol Job: Sendable {
    /// The payload's `class`.
    static var className: String { get }
    static var options: JobOptions { get }
    init()
    func perform(_ args: [JSONValue], context: JobContext) async throws
}

extension Job {
    public static var className: String { String(describing: Self.self) }
    public static var options: JobOptions { JobOptions() }
}

/// An error with the Ruby-style class name that ends up in `error_class`.
///
/// It remembers where it was created (`#fileID`, `#line`, `#function`): the one frame a
/// Swift job can put in `error_backtrace` where Ruby puts its backtrace.
public struct JobError: Error, Sendable, CustomStringConvertible {
    public var errorClass: String
    public var message: String
    public var file: String?
    public var line: Int
    public var function: String
    public init(_ message: String, errorClass: String = "RuntimeError",
                file: String = #fileID, line: Int = #line, function: String = #function) {
        self.message = message
        self.errorClass = errorClass
        self.file = file
        self.line = line
        self.function = function
    }
    public var description: String { message }
}

/// Jobs by class name: what a worker can run. A value, not a global: each embedding builds its own.
public struct JobRegistry: Sendable {
    public typealias Perform = @Sendable ([JSONValue], JobContext) async throws -> Void
    struct Entry: Sendable {
        var options: JobOptions
        var perform: Perform
    }
    var entries: [String: Entry] = [:]

    public init() {}

    /// Registers `type` under its ``Job/className`` or under `name` (a Ruby class name).
    public mutating func register<J: Job>(_ type: J.Type, as name: String? = nil) {
        entries[name ?? J.className] = Entry(options: J.options) { args, context in
            try await J().perform(args, context: context)
        }
    }

    /// Registers a closure as a job.
    public mutating func register(_ name: String, options: JobOptions = JobOptions(), perform: @escaping Perform) {
        entries[name] = Entry(options: options, perform: perform)
    }

    public var names: [String] { entries.keys.sorted() }
    public func options(for name: String) -> JobOptions? { entries[name]?.options }
    func entry(_ name: String) -> Entry? { entries[name] }
}
