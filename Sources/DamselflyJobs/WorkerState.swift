import Synchronization

/// What the heartbeat reports and shutdown needs: processed / failed counters since the last
/// beat (Sidekiq's `PROCESSED` / `FAILURE`), the jobs running now per processor (`WORK_STATE`),
/// and the quiet / stopping flags. One lock, held for a few instructions.
public final class WorkerState: Sendable {
    struct Running {
        var work: UnitOfWork
        var capsule: Int
        var runAt: Int64
    }
    struct State {
        var processed = 0
        var failed = 0
        var running: [String: Running] = [:]
        var quiet = false
        var stopping = false
        var processors = 0
    }
    private let state = Mutex(State())

    public init() {}

    public var isQuiet: Bool { state.withLock { $0.quiet } }
    public var isStopping: Bool { state.withLock { $0.stopping } }
    public var busy: Int { state.withLock { $0.running.count } }
    /// Processor tasks still in their loop: one may hold a finished job to acknowledge or a
    /// fetch in flight, so shutdown waits for them (within its timeout) before it leaves.
    public var liveProcessors: Int { state.withLock { $0.processors } }

    func processorStarted() { state.withLock { $0.processors += 1 } }
    func processorEnded() { state.withLock { $0.processors -= 1 } }

    func setQuiet() { state.withLock { $0.quiet = true } }
    func setStopping() { state.withLock { $0.quiet = true; $0.stopping = true } }

    func begin(tid: String, capsule: Int, work: UnitOfWork) {
        let now = Int64(JobPayload.now())
        state.withLock { $0.running[tid] = Running(work: work, capsule: capsule, runAt: now) }
    }

    func end(tid: String, failed: Bool) {
        state.withLock {
            $0.running[tid] = nil
            $0.processed += 1
            if failed { $0.failed += 1 }
        }
    }

    /// Takes the counters for a heartbeat; give them back with ``restore(processed:failed:)``
    /// when the write failed, so no count is lost.
    func takeCounters() -> (processed: Int, failed: Int) {
        state.withLock { s in
            defer { s.processed = 0; s.failed = 0 }
            return (s.processed, s.failed)
        }
    }

    func restore(processed: Int, failed: Int) {
        state.withLock { $0.processed += processed; $0.failed += failed }
    }

    /// `<tid>` → `{"queue":..,"payload":"<json>","run_at":..}` for the `<identity>:workers` hash.
    func workSnapshot() -> [(String, String)] {
        state.withLock { s in
            s.running.map { tid, r in
                (tid, JSONValue.object([
                    ("queue", .string(r.work.queueName)),
                    ("payload", .string(r.work.job)),
                    ("run_at", .int(r.runAt)),
                ]).serialized())
            }
        }
    }

    /// Jobs still running, removed from the table: shutdown pushes them back.
    func abandonRunning() -> [(capsule: Int, work: UnitOfWork)] {
        state.withLock { s in
            defer { s.running.removeAll() }
            return s.running.values.map { ($0.capsule, $0.work) }
        }
    }
}
