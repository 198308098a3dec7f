/// Runs around every push (Sidekiq's client middleware): may edit the payload, or return
/// `false` to drop the job.
public protocol ClientMiddleware: Sendable {
    func call(payload: inout JSONValue, queue: String, redis: RedisPool) async throws -> Bool
}

/// Enqueues jobs exactly as `Sidekiq::Client` does.
///
/// An immediate push is one pipeline: `SADD queues <q>` and `LPUSH queue:<q> <json>...` per
/// queue, every payload stamped with the same `enqueued_at`. A scheduled push is one
/// `ZADD schedule <at> <json> ...` with `at` removed from the stored payload.
public struct JobClient: Sendable {
    public let redis: RedisPool
    public var middleware: [any ClientMiddleware] = []
    /// Class options known locally (queue, retry), used when the caller gives none.
    public var registry: JobRegistry?

    public init(redis: RedisPool, registry: JobRegistry? = nil) {
        self.redis = redis
        self.registry = registry
    }

    /// `perform_async`: returns the jid.
    @discardableResult
    public func push(_ className: String, args: [JSONValue], queue: String? = nil, retry: RetrySetting? = nil) async throws -> String {
        try await pushBulk(className, args: [args], queue: queue, retry: retry)[0]
    }

    /// `perform_async` for a registered Swift job type.
    @discardableResult
    public func push<J: Job>(_ type: J.Type, args: [JSONValue], queue: String? = nil) async throws -> String {
        var options = J.options
        if let queue { options.queue = queue }
        return try await pushPayloads([JobPayload.make(className: J.className, args: args, options: options)], at: nil)[0]
    }

    /// `perform_in` / `perform_at`: `at` is epoch seconds, or seconds from now when below 1e9,
    /// as Sidekiq reads it. A time already past is pushed at once.
    @discardableResult
    public func push(_ className: String, args: [JSONValue], at: Double, queue: String? = nil, retry: RetrySetting? = nil) async throws -> String {
        try await pushBulk(className, args: [args], queue: queue, retry: retry, at: at)[0]
    }

    /// `Sidekiq::Client.push_bulk`: one payload per args list, one round trip.
    @discardableResult
    public func pushBulk(_ className: String, args: [[JSONValue]], queue: String? = nil, retry: RetrySetting? = nil,
                         backtrace: JSONValue? = nil, at: Double? = nil) async throws -> [String] {
        var options = registry?.options(for: className) ?? JobOptions()
        if let queue { options.queue = queue }
        if let retry { options.retry = retry }
        if let backtrace { options.backtrace = backtrace }
        let createdAt = JobPayload.now()
        let payloads = args.map { JobPayload.make(className: className, args: $0, options: options, createdAt: createdAt) }
        return try await pushPayloads(payloads, at: at)
    }

    /// Pushes complete payloads (a poller moving due jobs, a recovered job). Returns the jids
    /// of the payloads pushed (middleware may drop some).
    @discardableResult
    public func pushPayloads(_ payloads: [JSONValue], at: Double? = nil) async throws -> [String] {
        var kept: [JSONValue] = []
        kept.reserveCapacity(payloads.count)
        for var payload in payloads {
            if payload["jid"]?.stringValue == nil { payload["jid"] = .string(JobPayload.newJID()) }
            if payload["created_at"] == nil { payload["created_at"] = .double(JobPayload.now()) }
            let queue = payload["queue"]?.stringValue ?? "default"
            var keep = true
            for m in middleware where keep { keep = try await m.call(payload: &payload, queue: queue, redis: redis) }
            if keep { kept.append(payload) }
        }
        guard !kept.isEmpty else { return [] }
        var commands: [[String]] = []
        let now = JobPayload.now()
        var when = at
        if let t = when, t < 1_000_000_000 { when = now + t }
        if let when, when > now {
            var zadd = ["ZADD", "schedule"]
            for var payload in kept {
                payload["at"] = nil
                zadd += [JSONValue.format(when), payload.serialized()]
            }
            commands.append(zadd)
        } else {
            var byQueue: [(String, [String])] = []
            for var payload in kept {
                payload["at"] = nil
                payload["enqueued_at"] = .double(now)
                let queue = payload["queue"]?.stringValue ?? "default"
                if let i = byQueue.firstIndex(where: { $0.0 == queue }) {
                    byQueue[i].1.append(payload.serialized())
                } else {
                    byQueue.append((queue, [payload.serialized()]))
                }
            }
            for (queue, jobs) in byQueue {
                commands.append(["SADD", "queues", queue])
                commands.append(["LPUSH", "queue:" + queue] + jobs)
            }
        }
        for reply in try await redis.pipeline(commands) {
            if case .error(let message) = reply { throw RedisError.server(message) }
        }
        return kept.map { $0["jid"]?.stringValue ?? "" }
    }
}
