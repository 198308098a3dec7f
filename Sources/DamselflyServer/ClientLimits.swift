import DamselflyRuntime
import Synchronization

/// The per-client limits CONFIG SET can change while clients are connected: every loop
/// reads them (relaxed atomics, one load per check), CONFIG SET stores them.
///
/// Redis's rules, kept as they are:
/// - `client-query-buffer-limit`: a client whose unprocessed input grows past it is closed.
/// - `client-output-buffer-limit <class> <hard> <soft> <soft-seconds>`: a client whose unsent
///   replies reach `hard` bytes, or stay above `soft` for `soft-seconds`, is closed; 0 turns a
///   limit off. Classes `normal`, `pubsub` (a client with subscriptions) and `replica` (a
///   connection that sent SYNC / PSYNC: a replica that falls that far behind is dropped and
///   resyncs, rather than the master holding its stream without bound).
/// - `maxclients`, `timeout`: checked at accept and once a second.
/// - `protected-mode`: with no password, a client not on this machine gets Redis's
///   DENIED text at accept and is closed.
final class ClientLimits: Sendable {
    struct OutputLimit: Equatable, Sendable {
        var hard: Int
        var soft: Int
        var softSeconds: Int

        /// Whether `queued` unsent bytes break the limit, given since when they have been
        /// above the soft one (`overSoftSinceMs`, 0 when not; kept up to date here).
        func exceeded(queued: Int, overSoftSinceMs: inout Int64) -> Bool {
            var exceeded = hard > 0 && queued >= hard
            if soft > 0 && queued >= soft {
                let now = Clock.wallMillis()
                if overSoftSinceMs == 0 { overSoftSinceMs = now }
                if now - overSoftSinceMs >= Int64(softSeconds) * 1000 { exceeded = true }
            } else {
                overSoftSinceMs = 0
            }
            return exceeded
        }
    }

    let queryBufferLimit: Atomic<Int>
    let maxClients: Atomic<Int>
    let timeoutSeconds: Atomic<Int>
    let protectedMode: Atomic<Bool>
    /// One per class, in ``classes``'s order (normal, replica, pubsub).
    private let outputLimits = ClientLimits.classes.map { _ in AtomicOutputLimit() }

    static let classes = ["normal", "replica", "pubsub"]

    init(_ config: ServerConfig) {
        queryBufferLimit = Atomic(config.clientQueryBufferLimit)
        maxClients = Atomic(config.maxclients)
        timeoutSeconds = Atomic(config.timeout)
        protectedMode = Atomic(config.protectedMode)
        apply(config)
    }

    func apply(_ config: ServerConfig) {
        queryBufferLimit.store(config.clientQueryBufferLimit, ordering: .relaxed)
        maxClients.store(config.maxclients, ordering: .relaxed)
        timeoutSeconds.store(config.timeout, ordering: .relaxed)
        protectedMode.store(config.protectedMode, ordering: .relaxed)
        let limits = Self.parseOutputLimits(config.clientOutputBufferLimit, base: Self.defaultOutputLimits)
            ?? Self.defaultOutputLimits
        for (stored, limit) in zip(outputLimits, limits) { stored.store(limit) }
    }

    /// The output limit of a normal client, of one with subscriptions, or of a replica link.
    func outputLimit(pubsub: Bool, replica: Bool = false) -> OutputLimit {
        outputLimits[replica ? 1 : pubsub ? 2 : 0].load()
    }

    /// One class's limit, read by every loop and set by CONFIG SET.
    private final class AtomicOutputLimit: Sendable {
        private let hard = Atomic<Int>(0), soft = Atomic<Int>(0), softSeconds = Atomic<Int>(0)

        func store(_ limit: OutputLimit) {
            hard.store(limit.hard, ordering: .relaxed)
            soft.store(limit.soft, ordering: .relaxed)
            softSeconds.store(limit.softSeconds, ordering: .relaxed)
        }

        func load() -> OutputLimit {
            OutputLimit(
                hard: hard.load(ordering: .relaxed), soft: soft.load(ordering: .relaxed),
                softSeconds: softSeconds.load(ordering: .relaxed))
        }
    }

    // MARK: - client-output-buffer-limit syntax

    /// Redis 7's defaults: normal unlimited, replica 256mb 64mb 60, pubsub 32mb 8mb 60.
    static let defaultOutputLimits = [
        OutputLimit(hard: 0, soft: 0, softSeconds: 0),
        OutputLimit(hard: 256 << 20, soft: 64 << 20, softSeconds: 60),
        OutputLimit(hard: 32 << 20, soft: 8 << 20, softSeconds: 60),
    ]
    static let defaultOutputLimitText = render(defaultOutputLimits)

    /// Parses `<class> <hard> <soft> <seconds>` groups over `base` (classes not named keep
    /// their value); nil when the text is not valid, as Redis rejects it.
    static func parseOutputLimits(_ text: String, base: [OutputLimit]) -> [OutputLimit]? {
        let words = text.split(separator: " ").map(String.init)
        guard words.count % 4 == 0 else { return nil }
        var limits = base
        var i = 0
        while i < words.count {
            var name = words[i].lowercased()
            if name == "slave" { name = "replica" }
            guard let index = classes.firstIndex(of: name),
                  let hard = parseHumanSize(words[i + 1]), let soft = parseHumanSize(words[i + 2]),
                  let seconds = Int(words[i + 3]), seconds >= 0 else { return nil }
            limits[index] = OutputLimit(hard: hard, soft: soft, softSeconds: seconds)
            i += 4
        }
        return limits
    }

    /// CONFIG GET's form: `normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60`.
    static func render(_ limits: [OutputLimit]) -> String {
        zip(["normal", "slave", "pubsub"], limits).map { "\($0) \($1.hard) \($1.soft) \($1.softSeconds)" }
            .joined(separator: " ")
    }
}
