import DamselflyRuntime
import DamselflyStorage

/// A transaction over several shards, coordinated from the connection's loop.
///
/// 1. ``schedule(_:)`` takes a transaction id and asks every participant to
///    queue it and take its intent locks. A shard refuses when an older id
///    arrives after a newer one ran there; the transaction is then cancelled
///    everywhere and rescheduled with a fresh id (`tx_schedule_cancel_total`).
///    If every shard granted the locks free, the transaction may run out of
///    order (`ooo`); otherwise it runs when it reaches the head of each queue
///    (`normal`).
/// 2. ``execute(conclude:_:done:)`` runs one step on every participant; a
///    transaction can take several steps (RENAME across shards reads on one
///    shard, then writes on another) while keeping its locks. The last step
///    concludes it: locks are released and the queues move on.
///
/// All methods are called on the coordinating loop.
public final class Transaction {
    public let shardSet: ShardSet
    public let loop: EventLoop
    /// Participating shard indexes, ascending.
    public let participants: [Int]
    private var entries: [ShardTransaction] = []
    private let lockSets: [ShardLockSet]
    private let isGlobal: Bool
    private var outOfOrder = false
    public private(set) var txid: UInt64 = 0

    /// A transaction over `locksByShard` (shard index → its keys).
    public init(shardSet: ShardSet, loop: EventLoop, locksByShard: [(shard: Int, locks: ShardLockSet)]) {
        self.shardSet = shardSet
        self.loop = loop
        let sorted = locksByShard.sorted { $0.shard < $1.shard }
        self.participants = sorted.map(\.shard)
        self.lockSets = sorted.map(\.locks)
        self.isGlobal = false
    }

    /// A transaction over `locksByShard` that may also lock some shards whole
    /// (MULTI/EXEC with key-less commands).
    public init(shardSet: ShardSet, loop: EventLoop, locksByShard: [(shard: Int, locks: ShardLockSet)], global: Bool) {
        self.shardSet = shardSet
        self.loop = loop
        if global {
            self.participants = Array(0..<shardSet.count)
            self.lockSets = participants.map { _ in ShardLockSet(fingerprints: [], mode: .exclusive) }
        } else {
            let sorted = locksByShard.sorted { $0.shard < $1.shard }
            self.participants = sorted.map(\.shard)
            self.lockSets = sorted.map(\.locks)
        }
        self.isGlobal = global
    }

    /// A transaction that locks every shard whole (FLUSHALL, FLUSHDB).
    public init(globalOn shardSet: ShardSet, loop: EventLoop) {
        self.shardSet = shardSet
        self.loop = loop
        self.participants = Array(0..<shardSet.count)
        self.lockSets = participants.map { _ in ShardLockSet(fingerprints: [], mode: .exclusive) }
        self.isGlobal = true
    }

    /// Queues the transaction on every participant; `done` runs on the loop once all accepted.
    public func schedule(_ done: @escaping () -> Void) {
        let stats = shardSet.stats[loop.index]
        txid = shardSet.takeTxid()
        entries = zip(participants, lockSets).map { _, locks in
            ShardTransaction(txid: txid, locks: locks, isGlobal: isGlobal, participants: participants.count)
        }
        let gather = Gather<(Bool, Bool)>(count: participants.count) { [self] outcomes in
            if outcomes.allSatisfy({ $0.0 }) {
                // With replicas, transactions run in txid order on every shard
                // (no out-of-order): the replication stream merges the shards'
                // histories by transaction, which needs one order everywhere.
                outOfOrder = !isGlobal && outcomes.allSatisfy { $0.1 } && !shardSet.inOrderOnly.load(ordering: .relaxed)
                if isGlobal {
                    stats.global.add(1, ordering: .relaxed)
                } else if outOfOrder {
                    stats.outOfOrder.add(1, ordering: .relaxed)
                } else {
                    stats.normal.add(1, ordering: .relaxed)
                }
                stats.countWidth(participants.count)
                done()
                return
            }
            // Refused somewhere: withdraw where accepted, then try again.
            // The withdrawal and the new schedule reach each shard in the
            // order they were posted (one producer), so they cannot cross.
            stats.scheduleCancels.add(1, ordering: .relaxed)
            for (i, outcome) in outcomes.enumerated() where outcome.0 {
                let shard = shardSet.shards[participants[i]]
                let entry = entries[i]
                post(to: shard) { shard in shard.cancel(entry) }
            }
            schedule(done)
        }
        for (i, shardIndex) in participants.enumerated() {
            let shard = shardSet.shards[shardIndex]
            let entry = entries[i]
            let loop = self.loop
            if shard.loop === loop {
                let outcome = shard.schedule(entry)
                gather.deliver(i, (outcome.accepted, outcome.lockGranted))
            } else {
                shard.loop.post {
                    let outcome = shard.schedule(entry)
                    loop.post { gather.deliver(i, (outcome.accepted, outcome.lockGranted)) }
                }
            }
        }
    }

    /// Runs `step` on every participant (in parallel); `done` gets the
    /// results in participant order. With `conclude`, the transaction ends.
    public func execute<R>(conclude: Bool, _ step: @escaping (Shard) -> R, done: @escaping ([R]) -> Void) {
        let gather = Gather<R>(count: participants.count, done: done)
        let loop = self.loop
        for (i, shardIndex) in participants.enumerated() {
            let shard = shardSet.shards[shardIndex]
            let entry = entries[i]
            let ooo = outOfOrder
            if shard.loop === loop {
                shard.arm(entry, outOfOrder: ooo, conclude: conclude) { shard in
                    let result = step(shard)
                    // Deliver after the shard finished its bookkeeping.
                    loop.defer_ { gather.deliver(i, result) }
                }
            } else {
                shard.loop.post {
                    shard.arm(entry, outOfOrder: ooo, conclude: conclude) { shard in
                        let result = step(shard)
                        shard.loop.whenDurable { loop.post { gather.deliver(i, result) } }
                    }
                }
            }
        }
    }

    private func post(to shard: Shard, _ body: @escaping (Shard) -> Void) {
        if shard.loop === loop {
            body(shard)
        } else {
            shard.loop.post { body(shard) }
        }
    }
}
