import DamselflyRuntime
import DamselflyTransactions

/// A client parked on a blocking command, as its own loop sees it: the
/// shared ``Waiter`` plus what to do on timeout or cancellation.
public final class BlockedClient {
    public let waiter: Waiter
    let shardSet: ShardSet
    let counters: LoopCounters
    /// Ends the parked command (on the client's loop): replies with the
    /// reply, or only forgets the waiter when nil (the client disconnected).
    /// It also drops the client from its loop's registry and from
    /// `blocked_clients`: that count is decremented there and nowhere else.
    let finish: (Reply?) -> Void
    /// The reply on timeout (a null array for the list and zset pops).
    let timeoutReply: Reply

    init(waiter: Waiter, shardSet: ShardSet, counters: LoopCounters, timeoutReply: Reply, finish: @escaping (Reply?) -> Void) {
        self.waiter = waiter
        self.shardSet = shardSet
        self.counters = counters
        self.timeoutReply = timeoutReply
        self.finish = finish
    }

    /// What the client gets when it times out (CLIENT UNBLOCK TIMEOUT too).
    public var timeoutReplyValue: Reply { timeoutReply }

    /// Gives up waiting (timeout, disconnect, CLIENT UNBLOCK) unless a shard
    /// served it first; answers with `reply` when given. Returns whether it
    /// was still waiting.
    @discardableResult
    public func cancel(reply: Reply?) -> Bool {
        guard waiter.cancel() else { return false }
        for registration in waiter.registrations {
            let shard = shardSet.shards[registration.shard]
            let waiter = self.waiter
            let fingerprints = registration.fingerprints
            shard.postWhenAvailable { shard.unregister(waiter, fingerprints: fingerprints) }
        }
        finish(reply)
        return true
    }
}

/// The clients parked on one loop, checked for timeouts by the loop's timer.
public final class BlockedClientRegistry: @unchecked Sendable {
    // Invariant: touched only on its loop's thread.
    private var parked: [ObjectIdentifier: (client: ClientState, blocked: BlockedClient)] = [:]

    public init() {}

    public var count: Int { parked.count }

    func add(_ client: ClientState, _ blocked: BlockedClient) {
        parked[ObjectIdentifier(blocked)] = (client, blocked)
    }

    func remove(_ blocked: BlockedClient) {
        parked.removeValue(forKey: ObjectIdentifier(blocked))
    }

    /// Asks every parked client's connection whether its peer has gone
    /// unnoticed (``ClientState/checkPeer``): one system call each, from the
    /// loop's timer once a second. A parked client whose close was missed
    /// is then unparked within a second instead of never.
    public func checkPeers() {
        guard !parked.isEmpty else { return }
        for (_, entry) in parked { entry.client.checkPeer?() }
    }

    /// Times out every waiter whose deadline passed.
    public func expire(nowNanos: UInt64) {
        guard !parked.isEmpty else { return }
        for (_, entry) in parked {
            if let deadline = entry.blocked.waiter.deadlineNanos, deadline <= nowNanos {
                entry.blocked.cancel(reply: entry.blocked.timeoutReply)
            }
        }
    }
}
