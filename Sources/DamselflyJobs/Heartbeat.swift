import Logging
import CDamselfly
import Glibc

/// Sidekiq's `Launcher#❤`, every 5 s: the stats and the `<identity>:workers` hash in one MULTI,
/// then the `processes` set and the process hash (info, busy, beat, rtt_us, quiet, rss) with
/// a 60 s TTL in another, popping a remote signal (`TSTP`, `TERM`) from `<identity>-signals`.
final class Heartbeat: Sendable {
    static let statsTTL = String(5 * 365 * 24 * 60 * 60)

    let identity: String
    let info: String
    let redis: RedisPool
    let state: WorkerState
    let logger: Logger
    let onSignal: @Sendable (String) -> Void

    init(identity: String, info: JSONValue, redis: RedisPool, state: WorkerState, logger: Logger,
         onSignal: @escaping @Sendable (String) -> Void) {
        self.identity = identity
        self.info = info.serialized()
        self.redis = redis
        self.state = state
        self.logger = logger
        self.onSignal = onSignal
    }

    static func hostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, 255)
        return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `hostname:pid:nonce`, as Sidekiq names a process.
    static func makeIdentity(hostname: String) -> String {
        let nonce = JobPayload.newJID().prefix(12)
        return "\(hostname):\(getpid()):\(nonce)"
    }

    func beat() async {
        let (processed, failed) = state.takeCounters()
        let workersKey = identity + ":workers"
        let today = JobPayload.utcDate()
        var block: [[String]] = [
            ["INCRBY", "stat:processed", String(processed)],
            ["INCRBY", "stat:processed:\(today)", String(processed)],
            ["EXPIRE", "stat:processed:\(today)", Heartbeat.statsTTL],
            ["INCRBY", "stat:failed", String(failed)],
            ["INCRBY", "stat:failed:\(today)", String(failed)],
            ["EXPIRE", "stat:failed:\(today)", Heartbeat.statsTTL],
            ["UNLINK", workersKey],
        ]
        let work = state.workSnapshot()
        for (tid, json) in work { block.append(["HSET", workersKey, tid, json]) }
        block.append(["EXPIRE", workersKey, "60"])
        do {
            _ = try await redis.transaction(block)
        } catch {
            logger.error("heartbeat: \(error)")
            state.restore(processed: processed, failed: failed)
            return
        }
        do {
            let started = dfly_monotonic_ns()
            try await redis.call("PING")
            let rtt = (dfly_monotonic_ns() - started) / 1000
            let rssKB = dfly_rss_bytes() / 1024
            let replies = try await redis.transaction([
                ["SADD", "processes", identity],
                ["EXISTS", identity],
                ["HSET", identity, "info", info, "busy", String(work.count), "beat", JSONValue.format(JobPayload.now()),
                 "rtt_us", String(rtt), "quiet", state.isQuiet ? "true" : "false", "rss", String(rssKB)],
                ["EXPIRE", identity, "60"],
                ["RPOP", identity + "-signals"],
            ])
            if let signal = replies.last?.text { onSignal(signal) }
        } catch {
            logger.error("heartbeat: \(error)")
        }
    }

    /// `Launcher#clear_heartbeat` on the way out.
    func clear() async {
        _ = try? await redis.pipeline([["SREM", "processes", identity], ["UNLINK", identity + ":workers"]])
    }

    /// `Launcher.flush_stats` at exit: counts of jobs finished since the last beat.
    func flushStats() async {
        let (processed, failed) = state.takeCounters()
        guard processed + failed > 0 else { return }
        let today = JobPayload.utcDate()
        _ = try? await redis.pipeline([
            ["INCRBY", "stat:processed", String(processed)],
            ["INCRBY", "stat:processed:\(today)", String(processed)],
            ["EXPIRE", "stat:processed:\(today)", Heartbeat.statsTTL],
            ["INCRBY", "stat:failed", String(failed)],
            ["INCRBY", "stat:failed:\(today)", String(failed)],
            ["EXPIRE", "stat:failed:\(today)", Heartbeat.statsTTL],
        ])
    }
}

/// `Sidekiq::ProcessSet`: the processes that beat recently.
public enum ProcessSet {
    /// Drops members whose process hash expired; returns how many.
    @discardableResult
    public static func cleanup(redis: RedisPool) async throws -> Int {
        let procs = try await redis.call("SMEMBERS", "processes").elements.compactMap(\.text).sorted()
        guard !procs.isEmpty else { return 0 }
        let infos = try await redis.pipeline(procs.map { ["HGET", $0, "info"] })
        let prune = zip(procs, infos).filter { $0.1.isNull }.map(\.0)
        guard !prune.isEmpty else { return 0 }
        return Int(try await redis.call(["SREM", "processes"] + prune).int ?? 0)
    }
}
