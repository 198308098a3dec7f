import DamselflyJobs
import Glibc

/// Does nothing: what the benchmark runs.
struct NoopJob: Job {
    func perform(_ args: [JSONValue], context: JobContext) async throws {}
}

/// Sleeps `args[0]` seconds; with `args[1]` a list key, records `<jid>:swift` there when done
/// (what the reliability tests count).
struct SleepJob: Job {
    func perform(_ args: [JSONValue], context: JobContext) async throws {
        let seconds = args.first?.doubleValue ?? 1
        try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
        if args.count > 1, let key = args[1].stringValue {
            try await context.redis.call("RPUSH", key, "\(context.jid):swift")
        }
    }
}

/// Records `<jid>:swift` in the list `args[0]` (default `jobs:ran`): the interop tests'
/// witness that the Swift side ran a job. A Ruby `RecordJob` writes `<jid>:ruby`.
struct RecordJob: Job {
    func perform(_ args: [JSONValue], context: JobContext) async throws {
        let key = args.first?.stringValue ?? "jobs:ran"
        try await context.redis.call("RPUSH", key, "\(context.jid):swift")
    }
}

/// Fails its first `args[0]` attempts (every attempt when negative), then succeeds.
struct FailingJob: Job {
    func perform(_ args: [JSONValue], context: JobContext) async throws {
        let failures = args.first?.intValue ?? -1
        let attempt = context.retryCount.map { $0 + 1 } ?? 0
        if failures < 0 || attempt < failures {
            throw JobError("FailingJob failed on purpose (attempt \(attempt))")
        }
    }
}

/// Fails while the key `args[0]` is missing, then records `<jid>:swift` in the list `args[1]`:
/// a job that fails until someone fixes its cause, then is retried by hand (the dashboard's
/// "Retry now" test). Retrying by hand lowers `retry_count`, so a job that counts its own
/// attempts, like ``FailingJob``, would fail again there.
struct FlakyJob: Job {
    func perform(_ args: [JSONValue], context: JobContext) async throws {
        let flag = args.first?.stringValue ?? "flaky:fixed"
        guard try await context.redis.call("EXISTS", flag).int == 1 else {
            throw JobError("FlakyJob failed: \(flag) is not set")
        }
        if args.count > 1, let key = args[1].stringValue {
            try await context.redis.call("RPUSH", key, "\(context.jid):swift")
        }
    }
}

/// Kills its own process (SIGKILL): a worker crash in the middle of work.
struct CrashJob: Job {
    func perform(_ args: [JSONValue], context: JobContext) async throws {
        kill(getpid(), SIGKILL)
    }
}

/// Runs `args[1]` `INCR args[0]` concurrently with a task group through the worker's pool:
/// the connections are the pool's, however many commands run at once.
struct PoolJob: Job {
    func perform(_ args: [JSONValue], context: JobContext) async throws {
        let key = args.first?.stringValue ?? "pool:counter"
        let n = Int(args.count > 1 ? args[1].intValue ?? 100 : 100)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<n {
                group.addTask { try await context.redis.call("INCR", key) }
            }
            try await group.waitForAll()
        }
    }
}

func exampleRegistry() -> JobRegistry {
    var registry = JobRegistry()
    registry.register(NoopJob.self)
    registry.register(SleepJob.self)
    registry.register(RecordJob.self)
    registry.register(FailingJob.self)
    registry.register(FlakyJob.self)
    registry.register(CrashJob.self)
    registry.register(PoolJob.self)
    return registry
}
