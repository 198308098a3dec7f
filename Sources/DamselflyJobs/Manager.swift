/// A group of queues with its own concurrency and its own connection pool (Sidekiq 7's
/// capsule): for example a capsule of 1 for a `thread_unsafe` queue beside a default of 10.
public struct Capsule: Sendable {
    public var name: String
    public var queues: QueueList
    public var concurrency: Int
    /// Connections of the capsule's pool; default `concurrency + 5` as Sidekiq sizes it
    /// (every processor may hold one in a blocking fetch, job code shares the rest).
    public var poolSize: Int?

    public init(name: String = "default", queues: QueueList, concurrency: Int = 10, poolSize: Int? = nil) {
        self.name = name
        self.queues = queues
        self.concurrency = concurrency
        self.poolSize = poolSize
    }
}

/// Runs around every job (Sidekiq's server middleware); call `next` to run the job.
public protocol ServerMiddleware: Sendable {
    func call(context: JobContext, args: [JSONValue], next: @Sendable () async throws -> Void) async throws
}

/// One capsule at work: its fetcher and `concurrency` processors, each a task that fetches a
/// job, runs it through the middleware, retries or buries it on failure, and acknowledges it.
final class Manager: Sendable {
    let index: Int
    let capsule: Capsule
    let pool: RedisPool
    let fetcher: any Fetcher
    let registry: JobRegistry
    let middleware: [any ServerMiddleware]
    let retry: JobRetry
    let state: WorkerState
    let logger: Logger

    init(index: Int, capsule: Capsule, pool: RedisPool, fetcher: any Fetcher, registry: JobRegistry,
         middleware: [any ServerMiddleware], retry: JobRetry, state: WorkerState, logger: Logger) {
        self.index = index
        self.capsule = capsule
        self.pool = pool
        self.fetcher = fetcher
        self.registry = registry
        self.middleware = middleware
        self.retry = retry
        self.state = state
        self.logger = logger
    }

    /// Starts the processors; each task ends once the worker is quiet.
    func start() -> [Task<Void, Never>] {
        (0..<capsule.concurrency).map { _ in
            let tid = Manager.newTID()
            state.processorStarted()
            return Task {
                await self.processorLoop(tid: tid)
                self.state.processorEnded()
            }
        }
    }

    /// A short base-36 thread id, like Sidekiq's `tid`.
    static func newTID() -> String {
        String(UInt64.random(in: 1 << 40 ..< 1 << 50), radix: 36)
    }

    /// Fetch, run, and hand the finished job to the next fetch, which acknowledges it in the
    /// same round trip (``Fetcher/retrieve(after:)``); the last one is acknowledged alone.
    func processorLoop(tid: String) async {
        var done: UnitOfWork?
        while !state.isQuiet {
            let work: UnitOfWork?
            do {
                work = try await fetcher.retrieve(after: done)
                done = nil
            } catch {
                // `done` is kept: acknowledging it twice is harmless, never doing it is not.
                logger.error("fetch: \(error)", context: "tid=\(tid)")
                try? await Task.sleep(for: .seconds(1))
                continue
            }
            guard let work else { continue }
            if state.isQuiet {
                // Fetched while quieting: it is not ours to start any more.
                try? await fetcher.requeue([work])
                break
            }
            done = await process(work, tid: tid)
        }
        if let done {
            do { try await fetcher.acknowledge(done) } catch { logger.error("acknowledge: \(error)", context: "tid=\(tid)") }
        }
    }

    /// Runs a job; returns it when it is to be acknowledged (it ran, was retried or buried),
    /// `nil` when recording its failure failed (it stays for a peer to put back).
    func process(_ work: UnitOfWork, tid: String) async -> UnitOfWork? {
        state.begin(tid: tid, capsule: index, work: work)
        var failed = false
        defer { state.end(tid: tid, failed: failed) }
        let payload: JSONValue
        do {
            payload = try JSONValue.parse(work.job)
            guard case .object = payload else { throw JSONParseError(offset: 0, "not an object") }
        } catch {
            // Sidekiq sends unparseable jobs straight to the dead set.
            logger.error("Invalid JSON for job, sent to the dead set: \(work.job)")
            failed = true
            try? await retry.kill(work.job, redis: pool)
            return work
        }
        let className = payload["class"]?.stringValue ?? ""
        let jid = payload["jid"]?.stringValue ?? ""
        let logContext = "tid=\(tid) class=\(className) jid=\(jid)"
        let context = JobContext(jid: jid, className: className, queue: work.queueName, payload: payload, redis: pool)
        let args = payload["args"]?.arrayValue ?? []
        let started = JobPayload.now()
        logger.info("start", context: logContext)
        do {
            guard let entry = registry.entry(className) else {
                throw JobError("uninitialized constant \(className)", errorClass: "NameError")
            }
            try await runMiddleware(0, context: context, args: args) { try await entry.perform(args, context) }
            logger.info("done: \(elapsed(started)) sec", context: logContext)
        } catch {
            failed = true
            logger.warn("fail: \(elapsed(started)) sec: \(JobRetry.errorClass(of: error)): \(JobRetry.message(of: error))", context: logContext)
            let decision = retry.decide(payload: payload, queue: work.queueName, error: error)
            do {
                try await retry.apply(decision, redis: pool)
            } catch {
                // The job stays un-acknowledged: with reliable fetch a peer puts it back.
                logger.error("could not record the failure: \(error)", context: logContext)
                return nil
            }
        }
        return work
    }

    private func runMiddleware(_ i: Int, context: JobContext, args: [JSONValue], body: @escaping @Sendable () async throws -> Void) async throws {
        if i == middleware.count { return try await body() }
        try await middleware[i].call(context: context, args: args) {
            try await self.runMiddleware(i + 1, context: context, args: args, body: body)
        }
    }

    private func elapsed(_ since: Double) -> String {
        let ms = Int(((JobPayload.now() - since) * 1000).rounded())
        return "\(ms / 1000).\(String(repeating: "0", count: 3 - String(ms % 1000).count))\(ms % 1000)"
    }
}
