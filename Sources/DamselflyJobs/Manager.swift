import Logging
import Synchronization

/// A group of queues with its own concurrency and its own connection pool (Sidekiq 7's
/// capsule): for example a capsule of 1 for a `thread_unsafe` queue beside a default of 10.
public struct Capsule: Sendable {
    public var name: String
    public var queues: QueueList
    public var concurrency: Int
    /// Connections of the capsule's pool; default `concurrency + 5` as Sidekiq sizes it
    /// (every processor may hold one in a blocking fetch, job code shares the rest).
    public var poolSize: Int?
    /// Jobs a fetch may take beyond the one it runs (`--prefetch`): a processor whose fetch
    /// finds jobs takes up to this many more in the same round trip and leaves them to the
    /// capsule's processors, which run them before fetching again. The capsule holds at most
    /// `concurrency × prefetch` fetched and not started. 0 is Sidekiq's one job per fetch.
    /// With basic fetch the jobs held are lost on a crash like the running ones; with
    /// reliable fetch they wait in the private list like the running ones.
    public var prefetch: Int

    public init(name: String = "default", queues: QueueList, concurrency: Int = 10, poolSize: Int? = nil,
                prefetch: Int = Capsule.defaultPrefetch) {
        self.name = name
        self.queues = queues
        self.concurrency = concurrency
        self.poolSize = poolSize
        self.prefetch = prefetch
    }

    public static let defaultPrefetch = 3
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
    let held: PrefetchBuffer

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
        self.held = PrefetchBuffer(perFetch: max(0, capsule.prefetch), capacity: max(0, capsule.prefetch) * capsule.concurrency)
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

    /// Fetch, run, and hand the finished jobs to the next fetch, which acknowledges them in
    /// the same round trip (``Fetcher/retrieve(after:limit:)``); the last ones are
    /// acknowledged alone. A fetch that finds jobs takes up to ``Capsule/prefetch`` more for
    /// the capsule's processors, which run them before fetching again (a processor fetches
    /// only when none is held); one that took held jobs sends their acknowledgements with its
    /// next fetch, or alone once `prefetch + 1` are waiting.
    func processorLoop(tid: String) async {
        var done: [UnitOfWork] = []
        let maxUnacknowledged = held.perFetch + 1
        while !state.isQuiet {
            if let work = held.take() {
                if done.count >= maxUnacknowledged {
                    do {
                        try await fetcher.acknowledge(done)
                        done = []
                    } catch {
                        logger.error("acknowledge: \(error)", metadata: ["tid": "\(tid)"])
                    }
                }
                if let finished = await process(work, tid: tid) { done.append(finished) }
                continue
            }
            let extra = held.reserve()
            let fetched: [UnitOfWork]
            do {
                fetched = try await fetcher.retrieve(after: done, limit: 1 + extra)
                done = []
            } catch {
                held.release(extra)
                // `done` is kept: acknowledging it twice is harmless, never doing it is not.
                logger.error("fetch: \(error)", metadata: ["tid": "\(tid)"])
                try? await Task.sleep(for: .seconds(1))
                continue
            }
            guard let work = fetched.first else { held.release(extra); continue }
            if state.isQuiet {
                // Fetched while quieting: not ours to start any more (back in running order).
                held.release(extra)
                try? await fetcher.requeue(fetched.reversed())
                break
            }
            held.store(fetched.dropFirst(), releasing: extra)
            if let finished = await process(work, tid: tid) { done.append(finished) }
        }
        do { try await fetcher.acknowledge(done) } catch { logger.error("acknowledge: \(error)", metadata: ["tid": "\(tid)"]) }
        await requeueHeld()
    }

    /// Puts the jobs fetched but not started back at the head of their queues, the first to
    /// run last pushed (so read first); the processors leaving and the shutdown call it.
    func requeueHeld() async {
        let left = held.takeAll()
        guard !left.isEmpty else { return }
        do {
            try await fetcher.requeue(left.reversed())
        } catch {
            logger.error("Failed to requeue \(left.count) fetched jobs: \(error)")
        }
    }

    /// Runs a job; returns it when it is to be acknowledged (it ran, was retried or buried),
    /// `nil` when recording its failure failed (it stays for a peer to put back).
    func process(_ work: UnitOfWork, tid: String) async -> UnitOfWork? {
        state.begin(tid: tid, capsule: index, work: work)
        var failed = false
        defer { state.end(tid: tid, failed: failed) }
        let fields: [JSONValue?]
        do {
            fields = try JSONValue.parseFields(work.job, ["class", "jid", "args", "enqueued_at"])
        } catch {
            // Sidekiq sends unparseable jobs straight to the dead set.
            logger.error("Invalid JSON for job, sent to the dead set: \(work.job)")
            failed = true
            try? await retry.kill(work.job, redis: pool)
            return work
        }
        let className = fields[0]?.stringValue ?? ""
        let jid = fields[1]?.stringValue ?? ""
        // Built only when a line is written (no-op jobs ran at a few µs; this was a share).
        let logContext: () -> Logger.Metadata = { ["tid": "\(tid)", "class": "\(className)", "jid": "\(jid)"] }
        let context = JobContext(jid: jid, className: className, queue: work.queueName, rawPayload: work.job, redis: pool)
        let args = fields[2]?.arrayValue ?? []
        let started = JobPayload.now()
        JobMetrics.started(queue: work.queueName, className: className, enqueuedAt: fields[3]?.doubleValue, now: started)
        defer { JobMetrics.finished(queue: work.queueName, className: className, seconds: JobPayload.now() - started, failed: failed) }
        logger.info("start", metadata: logContext())
        do {
            guard let entry = registry.entry(className) else {
                throw JobError("uninitialized constant \(className)", errorClass: "NameError")
            }
            try await runMiddleware(0, context: context, args: args) { try await entry.perform(args, context) }
            logger.info("done: \(elapsed(started)) sec", metadata: logContext())
        } catch {
            failed = true
            logger.warning("fail: \(elapsed(started)) sec: \(JobRetry.errorClass(of: error)): \(JobRetry.message(of: error))", metadata: logContext())
            // The whole payload only now: the retry carries every field on.
            let decision = retry.decide(payload: context.payload, queue: work.queueName, error: error)
            JobMetrics.decided(decision, queue: work.queueName, className: className)
            do {
                try await retry.apply(decision, redis: pool)
            } catch {
                // The job stays un-acknowledged: with reliable fetch a peer puts it back.
                logger.error("could not record the failure: \(error)", metadata: logContext())
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

/// The jobs a capsule fetched ahead and has not started, first to run first, and the room
/// fetches in flight have claimed: each fetch claims up to ``perFetch``, and held plus claimed
/// never exceeds ``capacity``, however many processors fetch at once. One lock, held for a
/// few instructions.
final class PrefetchBuffer: Sendable {
    struct State {
        var jobs: [UnitOfWork] = []
        var head = 0
        var reserved = 0
        var count: Int { jobs.count - head }
    }
    let perFetch: Int
    let capacity: Int
    private let state = Mutex(State())

    init(perFetch: Int, capacity: Int) {
        self.perFetch = perFetch
        self.capacity = capacity
    }

    var count: Int { state.withLock { $0.count } }

    /// The next job held, if any.
    func take() -> UnitOfWork? {
        guard capacity > 0 else { return nil }
        return state.withLock { s in
            guard s.head < s.jobs.count else { return nil }
            let work = s.jobs[s.head]
            s.head += 1
            if s.head == s.jobs.count { s.jobs.removeAll(keepingCapacity: true); s.head = 0 }
            return work
        }
    }

    /// Claims room for the extra jobs of one fetch; give it back with ``store(_:releasing:)``
    /// or ``release(_:)``.
    func reserve() -> Int {
        guard capacity > 0 else { return 0 }
        return state.withLock { s in
            let room = min(perFetch, max(0, capacity - s.count - s.reserved))
            s.reserved += room
            return room
        }
    }

    func release(_ reserved: Int) {
        guard reserved > 0 else { return }
        state.withLock { $0.reserved -= reserved }
    }

    /// Adds a fetch's extra jobs (at most what it reserved) and frees its claim.
    func store<C: Collection>(_ work: C, releasing reserved: Int) where C.Element == UnitOfWork {
        guard reserved > 0 || !work.isEmpty else { return }
        state.withLock { s in
            s.reserved -= reserved
            s.jobs.append(contentsOf: work)
        }
    }

    func takeAll() -> [UnitOfWork] {
        state.withLock { s in
            defer { s.jobs.removeAll(); s.head = 0 }
            return Array(s.jobs[s.head...])
        }
    }
}
