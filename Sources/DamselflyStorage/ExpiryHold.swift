import Synchronization

/// CLIENT PAUSE's hold on the dataset (Redis 7.0 keeps it constant while clients are
/// paused): until ``untilMs``, an expired key reads as missing but is not deleted (lazy
/// expiry), active expiry skips its rounds and eviction waits. Once the pause ends, the
/// next read or the next active-expiry round deletes what had expired meanwhile.
///
/// One per server, shared by every shard's databases; written by CLIENT PAUSE / UNPAUSE
/// on any thread, read with one relaxed load, and only on the paths that would delete an
/// expired key or evict (never on a plain hit).
public final class ExpiryHold: Sendable {
    /// Wall-clock milliseconds until which nothing expires or is evicted; 0: no hold.
    @usableFromInline let until = Atomic<Int64>(0)
    /// Set while the server is a replica: its master's DELs expire keys, never its own clock.
    @usableFromInline let replica = Atomic<Bool>(false)

    public init() {}

    /// Whether deletion by expiry or eviction is held at `nowMs`.
    @inlinable
    public func isHeld(nowMs: Int64) -> Bool { until.load(ordering: .relaxed) > nowMs || replica.load(ordering: .relaxed) }

    /// Holds until `untilMs` (0 releases).
    public func hold(untilMs: Int64) { until.store(untilMs, ordering: .relaxed) }

    /// REPLICAOF host port (true) / NO ONE (false): a replica hides expired keys but keeps them.
    public func holdForReplica(_ on: Bool) { replica.store(on, ordering: .relaxed) }
}
