/// What `sidekiqmon` shows, read from the same keys (`Sidekiq::Stats`, `Sidekiq::Queue`,
/// `Sidekiq::ProcessSet`), so it reads a Ruby Sidekiq's state as well as ours.
public struct JobStats: Sendable {
    public struct QueueInfo: Sendable {
        public var name: String
        public var size: Int
        /// Seconds since the oldest job was enqueued.
        public var latency: Double
    }
    public struct ProcessInfo: Sendable {
        public var identity: String
        public var info: JSONValue
        public var busy: Int
        public var beat: Double
        public var quiet: Bool
    }

    public var processed = 0
    public var failed = 0
    public var scheduled = 0
    public var retries = 0
    public var dead = 0
    public var busy = 0
    public var enqueued = 0
    public var queues: [QueueInfo] = []
    public var processes: [ProcessInfo] = []

    public static func read(redis: RedisPool) async throws -> JobStats {
        try await ProcessSet.cleanup(redis: redis)
        let base = try await redis.pipeline([
            ["GET", "stat:processed"], ["GET", "stat:failed"], ["ZCARD", "schedule"], ["ZCARD", "retry"],
            ["ZCARD", "dead"], ["SMEMBERS", "processes"], ["SMEMBERS", "queues"],
        ])
        var s = JobStats()
        s.processed = Int(base[0].int ?? 0)
        s.failed = Int(base[1].int ?? 0)
        s.scheduled = Int(base[2].int ?? 0)
        s.retries = Int(base[3].int ?? 0)
        s.dead = Int(base[4].int ?? 0)
        let procs = base[5].elements.compactMap(\.text).sorted()
        let queueNames = base[6].elements.compactMap(\.text).sorted()
        if !queueNames.isEmpty {
            var commands: [[String]] = []
            for q in queueNames { commands += [["LLEN", "queue:" + q], ["LRANGE", "queue:" + q, "-1", "-1"]] }
            let replies = try await redis.pipeline(commands)
            let now = JobPayload.now()
            for (i, q) in queueNames.enumerated() {
                let size = Int(replies[2 * i].int ?? 0)
                var latency = 0.0
                if let oldest = replies[2 * i + 1].elements.first?.text, let job = try? JSONValue.parse(oldest),
                   let at = job["enqueued_at"]?.doubleValue {
                    latency = max(0, now - at)
                }
                s.queues.append(QueueInfo(name: q, size: size, latency: latency))
                s.enqueued += size
            }
        }
        if !procs.isEmpty {
            let replies = try await redis.pipeline(procs.map { ["HMGET", $0, "info", "busy", "beat", "quiet"] })
            for (identity, reply) in zip(procs, replies) {
                let f = reply.elements
                guard f.count == 4, let infoText = f[0].text else { continue }
                let busy = Int(f[1].int ?? 0)
                s.busy += busy
                s.processes.append(ProcessInfo(
                    identity: identity, info: (try? JSONValue.parse(infoText)) ?? .null, busy: busy,
                    beat: Double(f[2].text ?? "") ?? 0, quiet: f[3].text == "true"))
            }
        }
        return s
    }

    /// The report, laid out like `sidekiqmon`'s.
    public func render() -> String {
        var out = "---- Overview ----\n"
        for (label, value) in [("Processed", processed), ("Failed", failed), ("Busy", busy), ("Enqueued", enqueued),
                               ("Retries", retries), ("Scheduled", scheduled), ("Dead", dead)] {
            out += "  \(label): \(value)\n"
        }
        out += "\n---- Processes (\(processes.count)) ----\n"
        let now = JobPayload.now()
        for p in processes {
            let queues = p.info["queues"]?.arrayValue?.compactMap(\.stringValue).joined(separator: ", ") ?? ""
            let concurrency = p.info["concurrency"]?.intValue ?? 0
            out += "\(p.identity)\(p.quiet ? " [quiet]" : "")\n"
            out += "  Started: \(Int(now - (p.info["started_at"]?.doubleValue ?? now)))s ago\n"
            out += "  Threads: \(concurrency) (\(p.busy) busy)\n"
            out += "  Queues: \(queues)\n"
            out += "  Last beat: \(String(format1: now - p.beat))s ago\n"
        }
        out += "\n---- Queues (\(queues.count)) ----\n"
        out += "NAME                 SIZE     LATENCY\n"
        for q in queues {
            out += q.name.padding(20) + " " + String(q.size).padding(8) + " " + String(format1: q.latency) + "\n"
        }
        return out
    }
}

extension String {
    init(format1 value: Double) {
        let tenths = Int((value * 10).rounded())
        self = "\(tenths / 10).\(abs(tenths % 10))"
    }

    func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
