/// What happens to a failed job: Sidekiq's `JobRetry#attempt_retry`, as a pure function
/// (``JobRetry/decide(payload:queue:error:now:)``) and the Redis writes that carry it out.
public struct JobRetry: Sendable {
    /// Retries when the payload says `retry: true` (Sidekiq's `max_retries`, 25).
    public var maxRetries = 25
    /// Seconds before retry number `count` (0-based); `nil` uses Sidekiq's
    /// `count**4 + 15 + rand(10) * (count + 1)`. Tests shorten it.
    public var delay: (@Sendable (Int) -> Double)?
    /// Dead set bounds (`Sidekiq::DeadSet`): 10,000 jobs, 180 days.
    public var deadMaxJobs = 10_000
    public var deadTimeout: Double = 180 * 24 * 60 * 60

    public init() {}

    /// Sidekiq's default backoff for retry `count` with `jitter` = `rand(10)`.
    public static func sidekiqDelay(count: Int, jitter: Int) -> Double {
        Double(count * count * count * count + 15 + jitter * (count + 1))
    }

    public enum Decision: Sendable, Equatable {
        /// `ZADD retry <at> <payload>`.
        case retry(at: Double, payload: JSONValue)
        /// Into the dead set.
        case dead(payload: JSONValue)
        /// `retry: false`, or `dead: false` once retries ran out: the job is gone.
        case discard
    }

    /// The updated payload and where it goes, exactly as Sidekiq 6.4 computes them.
    public func decide(payload: JSONValue, queue: String, error: any Error, now: Double = JobPayload.now()) -> Decision {
        let setting = RetrySetting(json: payload["retry"])
        if setting == .disabled { return .discard }
        let maxAttempts: Int
        if case .attempts(let n) = setting { maxAttempts = n } else { maxAttempts = maxRetries }
        var msg = payload
        msg["queue"] = .string(payload["retry_queue"]?.stringValue ?? queue)
        msg["error_message"] = .string(JobRetry.message(of: error))
        msg["error_class"] = .string(JobRetry.errorClass(of: error))
        let count: Int
        if let previous = msg["retry_count"]?.intValue {
            msg["retried_at"] = .double(now)
            count = Int(previous) + 1
        } else {
            msg["failed_at"] = .double(now)
            count = 0
        }
        msg["retry_count"] = .int(Int64(count))
        let className = payload["class"]?.stringValue ?? ""
        if let lines = ErrorBacktrace.selectLines(ErrorBacktrace.lines(for: error, className: className), option: payload["backtrace"]) {
            msg["error_backtrace"] = .string(ErrorBacktrace.compress(lines))
        }
        if count < maxAttempts {
            let seconds = delay?(count) ?? JobRetry.sidekiqDelay(count: count, jitter: Int.random(in: 0..<10))
            return .retry(at: now + seconds, payload: msg)
        }
        if payload["dead"]?.boolValue == false { return .discard }
        return .dead(payload: msg)
    }

    /// Carries out a decision.
    public func apply(_ decision: Decision, redis: RedisPool) async throws {
        switch decision {
        case .retry(let at, let payload):
            try await redis.call("ZADD", "retry", JSONValue.format(at), payload.serialized())
        case .dead(let payload):
            try await kill(payload.serialized(), redis: redis)
        case .discard:
            break
        }
    }

    /// `Sidekiq::DeadSet#kill`: add, then trim by age and by count, in one MULTI.
    public func kill(_ payload: String, redis: RedisPool, now: Double = JobPayload.now()) async throws {
        _ = try await redis.transaction([
            ["ZADD", "dead", JSONValue.format(now), payload],
            ["ZREMRANGEBYSCORE", "dead", "-inf", JSONValue.format(now - deadTimeout)],
            ["ZREMRANGEBYRANK", "dead", "0", String(-deadMaxJobs)],
        ])
    }

    static func message(of error: any Error) -> String {
        if let e = error as? JobError { return e.message }
        return String(describing: error)
    }

    static func errorClass(of error: any Error) -> String {
        if let e = error as? JobError { return e.errorClass }
        return String(reflecting: type(of: error))
    }
}
