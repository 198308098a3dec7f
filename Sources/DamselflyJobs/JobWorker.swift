import Logging
import Dispatch
import Glibc
import Synchronization

/// How a worker process runs.
public struct WorkerOptions: Sendable {
    public var redis = RedisConfig()
    public var capsules: [Capsule] = [Capsule(queues: QueueList([("default", 1)]))]
    /// Reliable fetch (`BLMOVE` into a private list); off = Sidekiq's `BRPOP`.
    public var reliable = true
    /// Seconds between SIGTERM and pushing unfinished jobs back (`-t`, 25).
    public var shutdownTimeout: Double = 25
    /// `poll_interval_average`; `nil`: 5 s × processes, as Sidekiq scales it.
    public var pollIntervalAverage: Double?
    public var heartbeatInterval: Double = 5
    /// How often reliable fetch looks for dead peers.
    public var recoveryInterval: Double = 5
    public var maxRecoveries = 3
    public var retry = JobRetry()
    public var tag = ""
    public var labels: [String] = []
    /// Used when ``logger`` is nil (a `damselfly.jobs` logger from `LoggingSystem`).
    public var logLevel: Logger.Level = .info
    /// Where the runner logs: swift-log, so an embedding app's own backend gets the lines;
    /// nil: `Logger(label: "damselfly.jobs")` at ``logLevel`` (`damselfly-jobs` bootstraps
    /// ``SidekiqLogHandler``, Sidekiq's line format).
    public var logger: Logger?

    public init() {}
}

/// A worker process, as Sidekiq's launcher assembles it: a ``Manager`` per capsule (fetcher and
/// processors), the scheduled/retry ``Poller``, the ``Heartbeat``, and with reliable fetch the
/// recovery of dead peers. No global state: several workers can live in one process, embedded
/// in a server, each with its own pools.
public final class JobWorker: Sendable {
    public let options: WorkerOptions
    public let registry: JobRegistry
    public let identity: String
    public let hostname: String
    public let state = WorkerState()
    let logger: Logger
    let middleware: [any ServerMiddleware]
    /// Pool per capsule (handed to jobs) and a small one for the poller, heartbeat and recovery.
    public let pools: [RedisPool]
    public let controlPool: RedisPool
    private let stopRequested = MutexBox<[CheckedContinuation<Void, Never>]?>([])

    public init(options: WorkerOptions, registry: JobRegistry, middleware: [any ServerMiddleware] = []) {
        self.options = options
        self.registry = registry
        self.middleware = middleware
        self.logger = options.logger ?? {
            var logger = Logger(label: "damselfly.jobs")
            logger.logLevel = options.logLevel
            return logger
        }()
        hostname = Heartbeat.hostname()
        identity = Heartbeat.makeIdentity(hostname: hostname)
        pools = options.capsules.map { RedisPool(config: options.redis, limit: $0.poolSize ?? $0.concurrency + 5) }
        controlPool = RedisPool(config: options.redis, limit: 3)
    }

    var allQueues: [String] {
        var seen = Set<String>()
        return options.capsules.flatMap(\.queues.names).filter { seen.insert($0).inserted }
    }

    var info: JSONValue {
        .object([
            ("hostname", .string(hostname)),
            ("started_at", .double(JobPayload.now())),
            ("pid", .int(Int64(getpid()))),
            ("tag", .string(options.tag)),
            ("concurrency", .int(Int64(options.capsules.reduce(0) { $0 + $1.concurrency }))),
            ("queues", .array(allQueues.map(JSONValue.string))),
            ("labels", .array(options.labels.map(JSONValue.string))),
            ("identity", .string(identity)),
        ])
    }

    // MARK: - Control

    /// Stop fetching new jobs (SIGTSTP); running ones finish.
    public func quiet() {
        guard !state.isQuiet else { return }
        logger.info("Terminating quiet threads")
        state.setQuiet()
    }

    /// Begin the shutdown (SIGTERM): ``run()`` returns within the shutdown timeout.
    public func stop() {
        state.setStopping()
        let waiters = stopRequested.withLock { w -> [CheckedContinuation<Void, Never>] in
            defer { w = nil }
            return w ?? []
        }
        for w in waiters { w.resume() }
    }

    private func waitForStop() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resumeNow = stopRequested.withLock { w -> Bool in
                if w == nil { return true }
                w!.append(c)
                return false
            }
            if resumeNow { c.resume() }
        }
    }

    /// SIGTERM and SIGINT stop, SIGTSTP quiets, SIGTTIN logs what runs (Sidekiq's signals).
    /// Returns the sources; keep them alive as long as the worker.
    public func installSignalHandlers() -> [any DispatchSourceSignal] {
        let actions: [(Int32, @Sendable () -> Void)] = [
            (SIGTERM, { [self] in logger.info("Received TERM, shutting down"); stop() }),
            (SIGINT, { [self] in logger.info("Received INT, shutting down"); stop() }),
            (SIGTSTP, { [self] in logger.info("Received TSTP, no longer accepting new work"); quiet() }),
            (SIGTTIN, { [self] in logger.info("busy: \(state.busy), \(state.workSnapshot())") }),
        ]
        return actions.map { signo, action in
            signal(signo, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signo, queue: .global())
            source.setEventHandler(handler: action)
            source.resume()
            return source
        }
    }

    // MARK: - Running

    /// Runs until ``stop()``; then waits up to the shutdown timeout for running jobs, pushes
    /// back the ones still running, clears the heartbeat and returns.
    public func run() async throws {
        let heartbeat = Heartbeat(identity: identity, info: info, redis: controlPool, state: state, logger: logger) { [self] signal in
            switch signal {
            case "TSTP": quiet()
            case "TERM": stop()
            default: logger.warning("unknown remote signal \(signal)")
            }
        }
        logger.info("Starting processing, hit Ctrl-C to stop (identity \(identity), queues \(allQueues), reliable fetch \(options.reliable ? "on" : "off"))")
        await heartbeat.beat()

        var fetchers: [any Fetcher] = []
        var reliable: ReliableFetch?
        for (i, capsule) in options.capsules.enumerated() {
            if options.reliable {
                var fetch = ReliableFetch(redis: pools[i], queues: capsule.queues, identity: identity)
                fetch.maxRecoveries = options.maxRecoveries
                fetchers.append(fetch)
                reliable = reliable ?? fetch
            } else {
                fetchers.append(BasicFetch(redis: pools[i], queues: capsule.queues))
            }
        }
        if var reliable {
            reliable = ReliableFetch(redis: controlPool, queues: reliable.queues, identity: identity)
            reliable.maxRecoveries = options.maxRecoveries
            try await reliable.register()
            try await reliable.recoverDeadPeers(hostname: hostname, extraQueues: allQueues, retry: options.retry, log: logger)
        }

        var processors: [Task<Void, Never>] = []
        var managers: [Manager] = []
        for (i, capsule) in options.capsules.enumerated() {
            let manager = Manager(index: i, capsule: capsule, pool: pools[i], fetcher: fetchers[i], registry: registry,
                                  middleware: middleware, retry: options.retry, state: state, logger: logger)
            managers.append(manager)
            processors += manager.start()
        }
        let client = JobClient(redis: controlPool, registry: registry)
        let poller = Poller(redis: controlPool, client: client, state: state, logger: logger, pollIntervalAverage: options.pollIntervalAverage)
        let background: [Task<Void, Never>] = [
            Task { await poller.run() },
            Task { [self] in
                while !state.isStopping {
                    await sleep(options.heartbeatInterval)
                    if state.isStopping { break }
                    await heartbeat.beat()
                }
            },
            Task { [self] in
                guard let reliable else { return }
                let recovery = ReliableFetch(redis: controlPool, queues: reliable.queues, identity: identity)
                while !state.isQuiet {
                    await sleep(options.recoveryInterval)
                    if state.isQuiet { break }
                    do {
                        try await recovery.recoverDeadPeers(hostname: hostname, extraQueues: allQueues, retry: options.retry, log: logger)
                    } catch {
                        logger.error("recovery: \(error)")
                    }
                }
            },
        ]

        await waitForStop()
        logger.info("Shutting down")
        let deadline = JobPayload.now() + options.shutdownTimeout
        // Processors leave once their fetch returns (at most its 2 s timeout; a job fetched
        // while quiet goes back to its queue) and after acknowledging their last job: a fetch
        // left in flight could move a job into the private list of a process that is gone.
        while (state.busy > 0 || state.liveProcessors > 0) && JobPayload.now() < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        let unfinished = state.abandonRunning()
        if !unfinished.isEmpty {
            logger.warning("Terminating \(unfinished.count) busy threads")
            for (i, fetcher) in fetchers.enumerated() {
                let mine = unfinished.filter { $0.capsule == i }.map(\.work)
                do {
                    try await fetcher.requeue(mine)
                    if !mine.isEmpty { logger.info("Pushed \(mine.count) jobs back to Redis") }
                } catch {
                    logger.error("Failed to requeue \(mine.count) jobs: \(error)")
                }
            }
        }
        // Jobs fetched ahead and not started (processors still busy past the timeout leave
        // some): back to their queues too, before the private lists are given up.
        for manager in managers { await manager.requeueHeld() }
        for task in processors { task.cancel() }
        for task in background { task.cancel() }
        await heartbeat.flushStats()
        await heartbeat.clear()
        if let reliable, unfinished.isEmpty || options.reliable {
            // Everything finished or was pushed back: our private lists are empty.
            try? await ReliableFetch(redis: controlPool, queues: reliable.queues, identity: identity).unregister()
        }
        logger.info("Bye!")
    }

    private func sleep(_ seconds: Double) async {
        var left = seconds
        while left > 0 && !state.isStopping {
            let step = min(left, 0.1)
            try? await Task.sleep(for: .milliseconds(Int(step * 1000)))
            left -= step
        }
    }
}
