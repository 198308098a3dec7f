import Logging
/// Moves due jobs from the `retry` and `schedule` sorted sets to their queues: Sidekiq's
/// `Scheduled::Poller`, with its own Lua script loaded once (`SCRIPT LOAD`) and run with
/// `EVALSHA`. On a server without scripting it falls back to `ZRANGEBYSCORE ... LIMIT 0 1`
/// then `ZREM`, where only the client whose `ZREM` removed the job pushes it.
final class Poller: Sendable {
    static let sets = ["retry", "schedule"]
    static let zpopByScore = """
        local key, now = KEYS[1], ARGV[1]
        local jobs = redis.call("zrangebyscore", key, "-inf", now, "limit", 0, 1)
        if jobs[1] then
          redis.call("zrem", key, jobs[1])
          return jobs[1]
        end

        """

    enum Mode: Sendable { case unknown, script(String), noScripting }

    let redis: RedisPool
    let client: JobClient
    let state: WorkerState
    let logger: Logger
    /// `poll_interval_average`; `nil` scales with the process count (5 s per process).
    let pollIntervalAverage: Double?
    private let mode = MutexBox<Mode>(.unknown)
    private let calls = MutexBox<Int>(0)

    init(redis: RedisPool, client: JobClient, state: WorkerState, logger: Logger, pollIntervalAverage: Double?) {
        self.redis = redis
        self.client = client
        self.state = state
        self.logger = logger
        self.pollIntervalAverage = pollIntervalAverage
    }

    func run() async {
        // Sidekiq waits 10 s + rand(5) before its first poll; with an explicit average only a
        // random part of it (so short test intervals stay short).
        let first = pollIntervalAverage.map { Double.random(in: 0..<1) * $0 } ?? 10 + 5 * Double.random(in: 0..<1)
        await sleepUnlessQuiet(first)
        while !state.isQuiet {
            do {
                try await enqueueDue()
            } catch {
                logger.error("scheduler: \(error)")
            }
            await sleepUnlessQuiet(await randomPollInterval())
        }
    }

    func sleepUnlessQuiet(_ seconds: Double) async {
        var left = seconds
        while left > 0 && !state.isQuiet {
            let step = min(left, 0.1)
            try? await Task.sleep(for: .milliseconds(Int(step * 1000)))
            left -= step
        }
    }

    /// `random_poll_interval`.
    func randomPollInterval() async -> Double {
        let count = await processCount()
        let average = pollIntervalAverage ?? Double(count) * 5
        return count < 10 ? average * Double.random(in: 0..<1) + average / 2 : average * Double.random(in: 0..<1)
    }

    /// `Sidekiq::ProcessSet.new(clean).size`, cleaning dead entries every tenth call.
    func processCount() async -> Int {
        let n = calls.withLock { c -> Int in defer { c += 1 }; return c }
        if n % 10 == 0 { _ = try? await ProcessSet.cleanup(redis: redis) }
        let size = (try? await redis.call("SCARD", "processes").int) ?? 1
        return max(Int(size), 1)
    }

    func enqueueDue() async throws {
        for set in Poller.sets {
            while !state.isQuiet, let job = try await popDue(set) {
                guard let payload = try? JSONValue.parse(job) else {
                    logger.error("invalid JSON in \(set): \(job)")
                    continue
                }
                try await client.pushPayloads([payload])
                logger.debug("enqueued \(set): \(job)")
            }
        }
    }

    func popDue(_ set: String) async throws -> String? {
        let now = JobPayload.now()
        let nowText = String(now)
        switch mode.value {
        case .unknown:
            let reply = try await redis.pipeline([["SCRIPT", "LOAD", Poller.zpopByScore]])[0]
            if let sha = reply.text, case .bulk = reply {
                mode.value = .script(sha)
            } else if case .simpleString(let sha) = reply {
                mode.value = .script(sha)
            } else {
                logger.info("server has no scripting (\(reply)): polling with ZRANGEBYSCORE + ZREM")
                mode.value = .noScripting
            }
            return try await popDue(set)
        case .script(let sha):
            let reply = try await redis.pipeline([["EVALSHA", sha, "1", set, nowText]])[0]
            if case .error(let message) = reply {
                if message.hasPrefix("NOSCRIPT") {
                    mode.value = .unknown
                    return try await popDue(set)
                }
                if message.lowercased().contains("unknown command") {
                    mode.value = .noScripting
                    return try await popDue(set)
                }
                throw RedisError.server(message)
            }
            return reply.text
        case .noScripting:
            while true {
                let reply = try await redis.call("ZRANGEBYSCORE", set, "-inf", nowText, "LIMIT", "0", "1")
                guard let job = reply.elements.first?.text else { return nil }
                if try await redis.call("ZREM", set, job).int == 1 { return job }
            }
        }
    }
}

/// A value behind a lock, for the few mutable fields of otherwise immutable workers.
final class MutexBox<Value: Sendable>: Sendable {
    private let lock: Mutex<Value>
    init(_ value: Value) { lock = Mutex(value) }
    var value: Value {
        get { lock.withLock { $0 } }
        set { lock.withLock { $0 = newValue } }
    }
    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { lock.withLock { body(&$0) } }
}

import Synchronization
