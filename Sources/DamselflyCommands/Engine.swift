import DamselflyACL
import DamselflyRuntime
import DamselflyStorage
import DamselflyTransactions
import Synchronization

/// The server-wide objects every command can reach: the shards, the command
/// table and the few settings commands consult. Shared by all threads.
public final class Engine: Sendable {
    public let shardSet: ShardSet
    public let registry: CommandRegistry
    public let databaseCount: Int
    /// `--maxmemory` in bytes; 0 means no limit. CONFIG SET changes it.
    public let maxMemory = Atomic<Int>(0)
    public var maxBulkLength: Int { maxBulkLengthSetting.load(ordering: .relaxed) }
    /// `proto-max-bulk-len`, which CONFIG SET may change while commands run.
    public let maxBulkLengthSetting: Atomic<Int>
    public let startTimeMs: Int64
    /// Per-loop counters read by INFO.
    public let loopCounters: [LoopCounters]
    /// Lua scripts and the per-thread interpreters.
    public let scripts: ScriptRuntime
    /// Redis 7 function libraries and the per-thread function engines.
    public let functions: FunctionRuntime
    /// Per-loop registries of clients parked on blocking commands.
    public let blockedClients: [BlockedClientRegistry]
    /// `--singlehop_blocking`: a blocking pop whose keys share a shard finds
    /// and pops in one hop.
    public let singleHopBlocking: Bool
    /// `--appendonly`, or replication started: write commands are journaled
    /// by the shards that run them.
    @inlinable public var journaling: Bool { journalingFlag.load(ordering: .relaxed) }
    /// Turned on (never off) when the first replica connects.
    public let journalingFlag: Atomic<Bool>
    /// Clients in MONITOR mode, fed by connections and by scripts' redis.call.
    public let monitors = MonitorFeed()
    private let password: Mutex<String>
    /// ACL users and the ACL log; `requirepass` is the default user's password.
    public let acl = ACLRegistry()
    /// How a client is described (CLIENT LIST's line), for ACL LOG's client-info; set
    /// by the server, which owns that format.
    public let clientDescriber = Mutex<(@Sendable (ClientState) -> String)?>(nil)

    public init(
        shardSet: ShardSet, registry: CommandRegistry, databaseCount: Int, maxMemory: Int, maxBulkLength: Int,
        requirePass: String, singleHopBlocking: Bool = true, journaling: Bool = false
    ) {
        self.journalingFlag = Atomic(journaling)
        self.blockedClients = shardSet.loops.map { _ in BlockedClientRegistry() }
        self.scripts = ScriptRuntime(loopCount: shardSet.loops.count)
        self.functions = FunctionRuntime(loopCount: shardSet.loops.count, scripts: scripts)
        self.singleHopBlocking = singleHopBlocking
        self.shardSet = shardSet
        self.registry = registry
        self.databaseCount = databaseCount
        self.maxBulkLengthSetting = Atomic(maxBulkLength)
        self.startTimeMs = Clock.wallMillis()
        self.loopCounters = shardSet.loops.map { _ in LoopCounters() }
        self.password = Mutex(requirePass)
        self.maxMemory.store(maxMemory, ordering: .relaxed)
        acl.setDefaultPassword(requirePass)
    }

    /// `requirepass`; read on AUTH and connection set-up only.
    public var requirePass: String {
        get { password.withLock { $0 } }
    }

    public func setRequirePass(_ value: String) {
        password.withLock { $0 = value }
        acl.setDefaultPassword(value)
    }

    /// The memory all shards account, summed from their published counters.
    @inlinable
    public var usedMemory: Int {
        var total = 0
        for shard in shardSet.shards { total += shard.usedMemory.load(ordering: .relaxed) }
        return total
    }

    /// `min-replicas-to-write` is set and fewer replicas than that acknowledged the
    /// stream within `min-replicas-max-lag` seconds: writes get ``noReplicasError``
    /// (Redis's checkGoodReplicasStatus). Kept by the replication master's timer.
    public let tooFewReplicas = Atomic<Bool>(false)

    /// This server is a replica with `replica-read-only yes`. Connections refuse
    /// writes before they run; a script without a `#!lua` line is only refused at
    /// its first write (``readOnlyReplicaError`` from `redis.call`), as Redis's
    /// scriptVerifyWriteCommandAllow does. Kept by the replica side.
    public let readOnlyReplica = Atomic<Bool>(false)

    public static let readOnlyReplicaError = "READONLY You can't write against a read only replica."

    public static let noReplicasError = "NOREPLICAS Not enough good replicas to write."

    /// Whether a write that may grow memory must be refused (noeviction).
    @inlinable
    public var isOverMemoryLimit: Bool {
        let limit = maxMemory.load(ordering: .relaxed)
        return limit > 0 && usedMemory > limit
    }
}

/// Counters of one loop, written by that loop only and read by INFO, which
/// hops to each loop to read them.
public final class LoopCounters: @unchecked Sendable {
    // Invariant: touched only on its loop's thread (INFO reads it via a post
    // to that loop), except the atomics.
    public var commandsProcessed = 0
    public var connectionsReceived = 0
    public var rejectedConnections = 0
    public var netInputBytes = 0
    public var netOutputBytes = 0
    /// Received buffers and sent replies (INFO total_reads_processed / total_writes_processed).
    public var readsProcessed = 0
    public var writesProcessed = 0
    public var errorReplies: [String: Int] = [:]
    public var totalErrorReplies = 0
    public let connectedClients = Atomic<Int>(0)
    /// Commands per second over the last sampling period, published by the loop.
    public let instantaneousOps = Atomic<Int>(0)
    /// KiB per second received and sent over the last sampling period, in hundredths
    /// (INFO instantaneous_input_kbps / instantaneous_output_kbps, printed with two decimals).
    public let instantaneousInputCentiKbps = Atomic<Int>(0)
    public let instantaneousOutputCentiKbps = Atomic<Int>(0)
    private var lastSampleCommands = 0
    private var lastSampleInput = 0
    private var lastSampleOutput = 0
    private var lastSampleNanos: UInt64 = 0

    /// Called by the loop's own timer: refreshes ``instantaneousOps`` and the byte rates.
    public func sampleOps(nowNanos: UInt64) {
        if lastSampleNanos != 0, nowNanos > lastSampleNanos {
            let perSecond = 1e9 / Double(nowNanos - lastSampleNanos)
            let rate = Double(commandsProcessed - lastSampleCommands) * perSecond
            instantaneousOps.store(Int(rate.rounded()), ordering: .relaxed)
            let kibPerSecond = perSecond / 1024 * 100
            instantaneousInputCentiKbps.store(Int((Double(netInputBytes - lastSampleInput) * kibPerSecond).rounded()), ordering: .relaxed)
            instantaneousOutputCentiKbps.store(Int((Double(netOutputBytes - lastSampleOutput) * kibPerSecond).rounded()), ordering: .relaxed)
        }
        lastSampleCommands = commandsProcessed
        lastSampleInput = netInputBytes
        lastSampleOutput = netOutputBytes
        lastSampleNanos = nowNanos
    }
    public let blockedClients = Atomic<Int>(0)

    public init() {}

    public func countError(_ message: String) {
        totalErrorReplies += 1
        var prefix = Substring(message)
        if let space = prefix.firstIndex(of: " ") { prefix = prefix[..<space] }
        errorReplies[String(prefix), default: 0] += 1
    }

    public func reset() {
        commandsProcessed = 0
        connectionsReceived = 0
        rejectedConnections = 0
        netInputBytes = 0
        netOutputBytes = 0
        readsProcessed = 0
        writesProcessed = 0
        errorReplies = [:]
        totalErrorReplies = 0
        lastSampleCommands = 0
        lastSampleInput = 0
        lastSampleOutput = 0
    }
}
