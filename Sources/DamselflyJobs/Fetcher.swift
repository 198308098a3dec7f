import Logging
import DamselflyRESP
import Glibc
import Synchronization

/// The queues a capsule reads, in strict or weighted order (`-q critical,2 -q default`).
///
/// Sidekiq's rule: with no weights (all 1) the order is strict, the first queue with jobs
/// wins; with weights each fetch shuffles a list holding every queue `weight` times and keeps
/// the first occurrence of each, so a queue of weight 2 comes first about twice as often.
public struct QueueList: Sendable, Equatable {
    public private(set) var weighted: [String] = []
    public private(set) var strict = true

    public init(_ entries: [(name: String, weight: Int)]) {
        for (name, weight) in entries {
            weighted += Array(repeating: name, count: max(weight, 1))
            if weight > 1 { strict = false }
        }
    }

    /// Parses `-q` values: `name` or `name,weight`.
    public init(parsing specs: [String]) {
        self.init(specs.map { spec -> (name: String, weight: Int) in
            let parts = spec.split(separator: ",", maxSplits: 1)
            return (String(parts[0]), parts.count > 1 ? Int(parts[1]) ?? 1 : 1)
        })
    }

    /// Distinct queue names, first occurrence first.
    public var names: [String] {
        var seen = Set<String>()
        return weighted.filter { seen.insert($0).inserted }
    }

    /// The order for one fetch (queue names, not keys).
    public func order<G: RandomNumberGenerator>(using g: inout G) -> [String] {
        if strict { return names }
        var seen = Set<String>()
        return weighted.shuffled(using: &g).filter { seen.insert($0).inserted }
    }

    public func order() -> [String] {
        var g = SystemRandomNumberGenerator()
        return order(using: &g)
    }
}

/// A fetched job: the raw payload and where it came from.
public struct UnitOfWork: Sendable {
    /// `queue:<name>`.
    public let queueKey: String
    public let job: String
    public var queueName: String { String(queueKey.dropFirst(6)) }
}

/// How processors take jobs off the queues.
public protocol Fetcher: Sendable {
    /// The next job, or `nil` after a timeout with nothing to do.
    func retrieve() async throws -> UnitOfWork?
    /// The job is done (ran, retried or died): forget it.
    func acknowledge(_ work: UnitOfWork) async throws
    /// Puts unfinished jobs back at the head of their queues (the end BRPOP reads next).
    func requeue(_ work: [UnitOfWork]) async throws
    /// Acknowledges `done` (when given) and fetches the next job. A fetcher whose
    /// acknowledgement is a Redis command sends both in one write: one round trip per job
    /// instead of two. On a thrown error `done` may or may not be acknowledged; passing it
    /// again must be harmless.
    func retrieve(after done: UnitOfWork?) async throws -> UnitOfWork?
    /// Acknowledges `done` and takes up to `limit` (at least 1) jobs in one round trip: at
    /// once when the queues hold jobs, else blocking until one comes (or the fetch timeout,
    /// giving `[]`). The jobs come in the order they are to run. With `limit` 1 this is
    /// ``retrieve(after:)``, the command Sidekiq sends.
    func retrieve(after done: [UnitOfWork], limit: Int) async throws -> [UnitOfWork]
    /// Acknowledges several jobs (in one round trip where it is a Redis command).
    func acknowledge(_ work: [UnitOfWork]) async throws
}

extension Fetcher {
    public func retrieve(after done: UnitOfWork?) async throws -> UnitOfWork? {
        if let done { try await acknowledge(done) }
        return try await retrieve()
    }

    public func acknowledge(_ work: [UnitOfWork]) async throws {
        for unit in work { try await acknowledge(unit) }
    }

    public func retrieve(after done: [UnitOfWork], limit: Int) async throws -> [UnitOfWork] {
        for work in done.dropLast() { try await acknowledge(work) }
        return try await retrieve(after: done.last).map { [$0] } ?? []
    }
}

/// Sidekiq's `BasicFetch`: `BRPOP queue:a queue:b ... 2`. A job in a process that dies is lost.
public struct BasicFetch: Fetcher {
    public static let timeout = "2"
    let redis: RedisPool
    let queues: QueueList
    /// Whether the server knows LMPOP (cleared on its first "unknown command").
    private let lmpop = SharedFlag(true)

    public init(redis: RedisPool, queues: QueueList) {
        self.redis = redis
        self.queues = queues
    }

    public func retrieve() async throws -> UnitOfWork? {
        let keys = queues.order().map { "queue:" + $0 }
        let reply = try await redis.call(["BRPOP"] + keys + [BasicFetch.timeout])
        let items = reply.elements
        guard items.count == 2, let key = items[0].text, let job = items[1].text else { return nil }
        return UnitOfWork(queueKey: key, job: job)
    }

    /// Several jobs in one round trip when the queues have a backlog:
    /// `LMPOP n queue:a queue:b ... RIGHT COUNT limit` (Redis 7.0) pops up to `limit` from the
    /// first non-empty queue of this fetch's order, from the end BRPOP reads. Only when every
    /// queue is empty does it wait, with Sidekiq's BRPOP, for one job: a fetch that waited
    /// never takes more than one, so jobs pushed to idle processors go to all of them rather
    /// than queue up behind one. A server without LMPOP (Redis 6) gets BRPOP from then on.
    public func retrieve(after done: [UnitOfWork], limit: Int) async throws -> [UnitOfWork] {
        if limit > 1 && lmpop.isSet {
            let keys = queues.order().map { "queue:" + $0 }
            let reply = try await redis.pipeline([["LMPOP", String(keys.count)] + keys + ["RIGHT", "COUNT", String(limit)]])[0]
            if case .error(let message) = reply {
                guard message.lowercased().contains("unknown command") else { throw RedisError.server(message) }
                lmpop.clear()
            } else {
                let items = reply.elements
                if items.count == 2, let key = items[0].text {
                    let jobs = items[1].elements.compactMap { $0.text.map { UnitOfWork(queueKey: key, job: $0) } }
                    if !jobs.isEmpty { return jobs }
                }
            }
        }
        return try await retrieve().map { [$0] } ?? []
    }

    public func acknowledge(_ work: UnitOfWork) async throws {}

    public func requeue(_ work: [UnitOfWork]) async throws {
        guard !work.isEmpty else { return }
        _ = try await redis.pipeline(work.map { ["RPUSH", $0.queueKey, $0.job] })
    }
}

/// Reliable fetch: every job moves atomically (`BLMOVE` / `LMOVE`) from its queue into a
/// private in-progress list of this process and leaves it (`LREM`) only when done, so a
/// process that dies holds its jobs where a peer finds and requeues them.
///
/// The private list of `queue:<name>` is `{queue:<name>}:inprogress:<identity>`: its Redis
/// Cluster hashtag is the queue's whole key name, so it hashes to the queue's slot (the same
/// cluster node) and, on Damselfly with `--lock_on_hashtags` and
/// `--shard_round_robin_prefix=queue:`, to the queue's shard: the move stays a single-shard,
/// inline operation. Identities with private lists are kept in the set `damselfly:reliable`.
public struct ReliableFetch: Fetcher {
    public static let registryKey = "damselfly:reliable"
    let redis: RedisPool
    let queues: QueueList
    public let identity: String
    /// A job recovered from dead processes more than this many times goes to the dead set.
    public var maxRecoveries = 3

    public init(redis: RedisPool, queues: QueueList, identity: String) {
        self.redis = redis
        self.queues = queues
        self.identity = identity
    }

    public static func privateList(queueKey: String, identity: String) -> String {
        "{\(queueKey)}:inprogress:\(identity)"
    }

    public func retrieve() async throws -> UnitOfWork? {
        try await retrieve(after: nil)
    }

    /// The finished job's `LREM` goes out in the same write as the first fetch command
    /// (`LMOVE`, or `BLMOVE` with a single queue) on one connection, which the server runs in
    /// order: the job leaves the private list before the next one enters it, and each job is
    /// always in exactly one of its queue, a private list, or done — the LREM only ever
    /// removes a finished job, so pipelining it changes when it runs, never what it removes.
    public func retrieve(after done: UnitOfWork?) async throws -> UnitOfWork? {
        try await retrieveOne(after: done.map { [$0] } ?? [])
    }

    /// One job (Sidekiq's one per fetch), the finished jobs' `LREM`s in the same write.
    func retrieveOne(after done: [UnitOfWork]) async throws -> UnitOfWork? {
        var ack = done.map { Self.acknowledgement($0, identity: identity) }
        let order = queues.order().map { "queue:" + $0 }
        if order.count > 1 {
            for key in order {
                let replies = try await redis.pipeline(ack + [["LMOVE", key, Self.privateList(queueKey: key, identity: identity), "RIGHT", "LEFT"]])
                ack = []
                if let job = try Self.moved(replies.last) { return UnitOfWork(queueKey: key, job: job) }
            }
        }
        // Everything empty (or a single queue): block on the first queue of this order.
        let key = order[0]
        let timeout = order.count > 1 ? "1" : BasicFetch.timeout
        let replies = try await redis.pipeline(ack + [["BLMOVE", key, Self.privateList(queueKey: key, identity: identity), "RIGHT", "LEFT", timeout]])
        guard let job = try Self.moved(replies.last) else { return nil }
        return UnitOfWork(queueKey: key, job: job)
    }

    /// Several jobs per round trip when the queues have a backlog, each moved into the
    /// private list by its own `LMOVE`, so a job taken ahead of time is as safe as a running
    /// one: a process that dies holds it where a peer puts it back. One write carries the
    /// finished jobs' `LREM`s and `limit` `LMOVE queue private RIGHT LEFT`s, to each queue of
    /// the fetch's order in turn until one gives jobs (the strict or weighted order holds for
    /// every batch). Only when all are empty does it block, with `BLMOVE` as
    /// ``retrieve(after:)`` does, for one job: a fetch that waited never takes more than one,
    /// so jobs pushed to idle processors go to all of them rather than queue up behind one.
    /// Every command touches only one queue and its private list: one shard.
    public func retrieve(after done: [UnitOfWork], limit: Int) async throws -> [UnitOfWork] {
        // Every finished job is acknowledged, however many: a processor that ran held jobs may
        // find no room left for extras and fetch one.
        if limit <= 1 { return try await retrieveOne(after: done).map { [$0] } ?? [] }
        var ack = done.map { Self.acknowledgement($0, identity: identity) }
        let order = queues.order().map { "queue:" + $0 }
        for key in order {
            let move = ["LMOVE", key, Self.privateList(queueKey: key, identity: identity), "RIGHT", "LEFT"]
            let replies = try await redis.pipeline(ack + Array(repeating: move, count: limit))
            ack = []
            let jobs = try Self.movedAll(replies.suffix(limit))
            if !jobs.isEmpty { return jobs.map { UnitOfWork(queueKey: key, job: $0) } }
        }
        // Everything empty: wait on the first queue of this order.
        let key = order[0]
        let timeout = order.count > 1 ? "1" : BasicFetch.timeout
        let reply = try await redis.pipeline([["BLMOVE", key, Self.privateList(queueKey: key, identity: identity), "RIGHT", "LEFT", timeout]])[0]
        return try Self.moved(reply).map { [UnitOfWork(queueKey: key, job: $0)] } ?? []
    }

    /// Every job the moves moved. Not only up to the first empty reply: an LMOVE that found
    /// the queue empty may be followed by one that found a job pushed just after, and that
    /// job is in the private list now, so it must run. An error is thrown only when nothing moved (it
    /// could only be a wrongly typed key, and would be the same for every move).
    static func movedAll<C: Collection>(_ replies: C) throws -> [String] where C.Element == RESPValue {
        var jobs: [String] = []
        var failure: String?
        for reply in replies {
            if case .error(let message) = reply { failure = message; continue }
            if let job = reply.text { jobs.append(job) }
        }
        if jobs.isEmpty, let failure { throw RedisError.server(failure) }
        return jobs
    }

    /// The job an (B)LMOVE moved, `nil` for none; a server error is thrown. (The LREM's reply
    /// before it is a count; it could only fail on a wrongly typed private list, where the
    /// job then stays for recovery.)
    static func moved(_ reply: RESPValue?) throws -> String? {
        if case .error(let message)? = reply { throw RedisError.server(message) }
        return reply?.text
    }

    static func acknowledgement(_ work: UnitOfWork, identity: String) -> [String] {
        ["LREM", privateList(queueKey: work.queueKey, identity: identity), "1", work.job]
    }

    public func acknowledge(_ work: UnitOfWork) async throws {
        try await redis.call(Self.acknowledgement(work, identity: identity))
    }

    public func acknowledge(_ work: [UnitOfWork]) async throws {
        guard !work.isEmpty else { return }
        _ = try await redis.pipeline(work.map { Self.acknowledgement($0, identity: identity) })
    }

    public func requeue(_ work: [UnitOfWork]) async throws {
        guard !work.isEmpty else { return }
        var commands: [[String]] = []
        for unit in work {
            commands.append(["RPUSH", unit.queueKey, unit.job])
            commands.append(["LREM", Self.privateList(queueKey: unit.queueKey, identity: identity), "1", unit.job])
        }
        _ = try await redis.transaction(commands)
    }

    /// Announces this process as one holding private lists (before its first fetch).
    public func register() async throws {
        try await redis.call("SADD", Self.registryKey, identity)
    }

    /// After a clean stop: nothing is held any more.
    public func unregister() async throws {
        try await redis.call("SREM", Self.registryKey, identity)
    }

    /// Whether a peer is gone: its heartbeat key expired, or it ran on this host and its pid
    /// no longer exists (found at once, without waiting for the heartbeat's 60 s TTL).
    static func peerIsDead(_ peer: String, heartbeatExists: Bool, hostname: String) -> Bool {
        if !heartbeatExists { return true }
        let parts = peer.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count >= 3, let pid = Int32(parts[parts.count - 2]) else { return false }
        let host = parts[0..<(parts.count - 2)].joined(separator: ":")
        guard host == hostname, pid != getpid() else { return false }
        return kill(pid, 0) != 0 && errno == ESRCH
    }

    /// Finds dead peers and puts their in-progress jobs back on their queues (or, past
    /// ``maxRecoveries``, into the dead set). Each job first moves atomically into this
    /// process's own private list, so a crash half-way loses nothing either. Returns the
    /// number of jobs recovered.
    @discardableResult
    public func recoverDeadPeers(hostname: String, extraQueues: [String], retry: JobRetry, log: Logger) async throws -> Int {
        let peers = try await redis.call("SMEMBERS", Self.registryKey).elements.compactMap(\.text).filter { $0 != identity }
        guard !peers.isEmpty else { return 0 }
        let alive = try await redis.pipeline(peers.map { ["EXISTS", $0] })
        var known = Set(try await redis.call("SMEMBERS", "queues").elements.compactMap(\.text))
        known.formUnion(extraQueues)
        var recovered = 0
        for (peer, exists) in zip(peers, alive) {
            guard Self.peerIsDead(peer, heartbeatExists: (exists.int ?? 0) > 0, hostname: hostname) else { continue }
            for queue in known.sorted() {
                let queueKey = "queue:" + queue
                let theirs = Self.privateList(queueKey: queueKey, identity: peer)
                let mine = Self.privateList(queueKey: queueKey, identity: identity)
                while let job = try await redis.call("LMOVE", theirs, mine, "RIGHT", "LEFT").text {
                    var payload = (try? JSONValue.parse(job)) ?? .null
                    let count = (payload["recovery_count"]?.intValue ?? 0) + 1
                    if case .object = payload, count > maxRecoveries {
                        payload["recovery_count"] = .int(count)
                        log.warning("job \(payload["jid"]?.stringValue ?? "?") recovered \(count) times: to the dead set")
                        try await retry.kill(payload.serialized(), redis: redis)
                        try await redis.call("LREM", mine, "1", job)
                    } else {
                        if case .object = payload { payload["recovery_count"] = .int(count) }
                        let back = payload == .null ? job : payload.serialized()
                        _ = try await redis.transaction([["RPUSH", queueKey, back], ["LREM", mine, "1", job]])
                    }
                    recovered += 1
                }
            }
            try await redis.call("SREM", Self.registryKey, peer)
            if recovered > 0 { log.info("recovered \(recovered) in-progress jobs of dead process \(peer)") }
        }
        return recovered
    }
}

/// A flag shared by copies of a value type (a fetcher is a struct, copied into each task).
final class SharedFlag: Sendable {
    private let value: Atomic<Bool>
    init(_ initial: Bool) { value = Atomic(initial) }
    var isSet: Bool { value.load(ordering: .relaxed) }
    func clear() { value.store(false, ordering: .relaxed) }
}
