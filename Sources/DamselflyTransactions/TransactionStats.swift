import DamselflyRuntime
import Synchronization

/// Counters of the paths transactions took, kept per coordinating thread
/// (written by that thread only, read by INFO from any thread). The counters of every
/// command's path are bumped with ``Atomic/addOwned(_:)``, plain moves, so ``reset()``
/// runs on that thread too; the rare ones a watchdog may bump stay locked adds.
///
/// Field names follow Dragonfly v1.14's `# Transaction` section.
public final class TransactionStats: @unchecked Sendable {
    // Invariant: all state is atomics; `widths` is allocated once and freed in deinit.
    /// Whole-server transactions (FLUSHALL, FLUSHDB).
    public let global = Atomic<Int>(0)
    /// Transactions that took a transaction id and ran in queue order.
    public let normal = Atomic<Int>(0)
    /// Multi-shard transactions whose locks were all free: ran out of order.
    public let outOfOrder = Atomic<Int>(0)
    /// Single-shard commands on another thread's shard, keys free: no id, one hop.
    public let quick = Atomic<Int>(0)
    /// Single-shard commands on the connection's own shard, keys free: a direct call.
    public let inline = Atomic<Int>(0)
    /// Schedules refused by a shard (an older id arrived after a newer one ran); retried.
    public let scheduleCancels = Atomic<Int>(0)
    /// Transactions the watchdog abandoned (waited past `--tx_schedule_timeout_ms`).
    public let scheduleTimeouts = Atomic<Int>(0)
    /// Transactions that waited past the bound but could not be abandoned.
    public let stuck = Atomic<Int>(0)
    /// Pipeline squashing (`--pipeline_squash`): runs of two or more pipelined
    /// commands dispatched together, and the commands in them.
    public let squashedBatches = Atomic<Int>(0)
    public let squashedCommands = Atomic<Int>(0)
    /// Messages that carried a squashed run's hops to one shard of another
    /// loop and back (a `KeyHopBatch`), and the commands they carried.
    public let hopBatches = Atomic<Int>(0)
    public let batchedHops = Atomic<Int>(0)
    /// Squashed runs that held this loop's shard's commands and another
    /// loop's, run in order as one transaction (`--pipeline_squash_transactions`).
    public let squashTransactions = Atomic<Int>(0)
    /// Pipelined commands' keys read ahead of their parse (hash and shard
    /// handed to the parse), and keys whose lookups were started ahead, by
    /// the connection on its own loop's shards or by a squashed run's shard.
    public let lookaheadKeys = Atomic<Int>(0)
    public let prefetchedKeys = Atomic<Int>(0)
    /// EXECs whose commands' shard work ran squashed, one operation per
    /// shard (`--multi_exec_squash`), and the commands in them.
    public let multiSquashExecutions = Atomic<Int>(0)
    public let multiSquashCommands = Atomic<Int>(0)
    /// How many shards each id-taking transaction touched: index w-1.
    private let widths: UnsafeMutablePointer<Atomic<Int>>
    public let maxWidth: Int

    public init(maxWidth: Int) {
        self.maxWidth = max(1, maxWidth)
        widths = .allocate(capacity: self.maxWidth)
        for i in 0..<self.maxWidth { (widths + i).initialize(to: Atomic(0)) }
    }

    deinit {
        widths.deinitialize(count: maxWidth)
        widths.deallocate()
    }

    @inline(__always)
    public func countWidth(_ width: Int) {
        widths[min(max(width, 1), maxWidth) - 1].addOwned(1)
    }

    /// A single-shard command that went to its shard: normal (width 1) when it
    /// waited in the shard's queue, quick when its keys were free there.
    @inline(__always)
    public func countSingleShard(queued: Bool) {
        if queued {
            normal.addOwned(1)
            countWidth(1)
        } else {
            quick.addOwned(1)
        }
    }

    /// ``countSingleShard(queued:)`` for `count` commands at once, `queued` of
    /// them normal: the commands of a squashed run's hop batch.
    @inline(__always)
    public func countSingleShards(_ count: Int, queued: Int) {
        if count > queued { quick.addOwned(count - queued) }
        if queued > 0 {
            normal.addOwned(queued)
            widths[0].addOwned(queued)
        }
    }

    /// Transactions that touched `width` shards.
    public func widthCount(_ width: Int) -> Int {
        widths[width - 1].load(ordering: .relaxed)
    }

    public func reset() {
        global.store(0, ordering: .relaxed)
        normal.store(0, ordering: .relaxed)
        outOfOrder.store(0, ordering: .relaxed)
        quick.store(0, ordering: .relaxed)
        inline.store(0, ordering: .relaxed)
        scheduleCancels.store(0, ordering: .relaxed)
        scheduleTimeouts.store(0, ordering: .relaxed)
        stuck.store(0, ordering: .relaxed)
        squashedBatches.store(0, ordering: .relaxed)
        squashTransactions.store(0, ordering: .relaxed)
        squashedCommands.store(0, ordering: .relaxed)
        hopBatches.store(0, ordering: .relaxed)
        batchedHops.store(0, ordering: .relaxed)
        lookaheadKeys.store(0, ordering: .relaxed)
        prefetchedKeys.store(0, ordering: .relaxed)
        multiSquashExecutions.store(0, ordering: .relaxed)
        multiSquashCommands.store(0, ordering: .relaxed)
        for i in 0..<maxWidth { widths[i].store(0, ordering: .relaxed) }
    }
}
