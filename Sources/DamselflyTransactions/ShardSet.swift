import DamselflyRuntime
import DamselflyStorage
import Synchronization

/// All shards of the server, the loops that own them, and the global
/// transaction-id counter. Shared by every thread; immutable after start.
public final class ShardSet: Sendable {
    public let shards: [Shard]
    /// The index of the loop owning each shard (`shards[i].loop.index`): for
    /// a connection's "is this shard mine" on every command, a load instead
    /// of three object references counted up and down.
    public let ownerLoopIndex: [Int]
    /// Every loop (there may be more loops than shards: loops beyond the
    /// shard count only coordinate).
    public let loops: [EventLoop]
    public let lockOnHashtags: Bool
    /// `--shard_round_robin_prefix` placement, when set.
    public let roundRobin: RoundRobinPlacement?
    /// The next transaction id: a global order for multi-shard transactions.
    let nextTxid = Atomic<UInt64>(1)
    /// Per-loop transaction counters, indexed by loop.
    public let stats: [TransactionStats]
    /// Set once replication starts: no out-of-order transactions from then on.
    public let inOrderOnly = Atomic<Bool>(false)
    /// Set by ``startWatchdog(timeoutMillis:log:)``: coordinated transactions
    /// are then reachable from their shards' entries (Shard+Watchdog.swift).
    public let watchdogOn = Atomic<Bool>(false)
    let watchdog = Mutex<Watchdog?>(nil)

    /// Keyspace notifications of every shard's databases (see ``KeyspaceEvents``).
    public let keyspaceEvents: KeyspaceEvents

    /// Per loop: what takes the single-shard work its commands start while
    /// a connection there collects a squashed run that runs as one
    /// transaction (``RunCollector``); nil otherwise.
    public let collectors: [CollectorSlot]

    public init(
        loops: [EventLoop], shardCount: Int, databaseCount: Int, lockOnHashtags: Bool, roundRobinPrefix: String = "",
        keyspaceEvents: KeyspaceEvents = KeyspaceEvents()
    ) {
        self.keyspaceEvents = keyspaceEvents
        precondition(shardCount >= 1 && shardCount <= loops.count)
        self.loops = loops
        self.lockOnHashtags = lockOnHashtags
        self.roundRobin = roundRobinPrefix.isEmpty
            ? nil : RoundRobinPlacement(prefix: Array(roundRobinPrefix.utf8), shardCount: shardCount, loopCount: loops.count)
        self.shards = (0..<shardCount).map { Shard(index: $0, loop: loops[$0], databaseCount: databaseCount, events: keyspaceEvents) }
        self.ownerLoopIndex = (0..<shardCount).map { loops[$0].index }
        self.stats = loops.map { _ in TransactionStats(maxWidth: max(shardCount, 1)) }
        self.collectors = loops.map { _ in CollectorSlot() }
        for shard in shards {
            shard.peers = shards
            shard.trackingHub = tracking
        }
    }

    /// CLIENT TRACKING's server-wide state (see ``TrackingHub``).
    public let tracking = TrackingHub()

    public var count: Int { shards.count }

    /// The shard that owns `key` (with its full 64-bit hash already computed).
    @inlinable
    public func shardIndex(of key: UnsafeRawBufferPointer, hash: UInt64) -> Int {
        if let roundRobin, let shard = roundRobin.shard(of: key) { return shard }
        return hashedShardIndex(of: key, hash: hash)
    }

    /// `shardIndex(of:hash:)` without its side effect: nil for a key placed
    /// round robin, whose first sight takes the next shard in turn (a look
    /// ahead at what may not even be a key must not).
    public func shardIndexWithoutPlacing(of key: UnsafeRawBufferPointer, hash: UInt64) -> Int? {
        if let roundRobin, roundRobin.placementName(key) != nil { return nil }
        return hashedShardIndex(of: key, hash: hash)
    }

    /// The shard of a key not placed round robin: by its hash (or its hashtag's).
    @inlinable @inline(__always)
    func hashedShardIndex(of key: UnsafeRawBufferPointer, hash: UInt64) -> Int {
        KeyHash.shard(of: key, hash: hash, shardCount: shards.count, lockOnHashtags: lockOnHashtags)
    }

    public func takeTxid() -> UInt64 { nextTxid.add(1, ordering: .relaxed).newValue }

    /// The last transaction ID handed out (replication: transactions after it start after a given moment).
    public var lastTxid: UInt64 { nextTxid.load(ordering: .acquiring) }

    // MARK: - Single shard

    /// Runs `operation` on shard `shardIndex` for a command whose keys all live
    /// there, by the cheapest path that keeps it atomic:
    /// - **inline**: the calling loop owns the shard and the keys are free: a direct call, `done` runs before this returns;
    /// - **quick**: another loop owns it and the keys are free there: one hop, no transaction id;
    /// - **normal**: the keys are held by a queued transaction: wait in the shard's queue with an id.
    @inlinable
    public func runSingleShard<R>(
        from loop: EventLoop,
        shard shardIndex: Int,
        locks: ShardLockSet,
        _ operation: @escaping (Shard) -> R,
        done: @escaping (R) -> Void
    ) {
        if let collector = collectors[loop.index].current {
            return collector.collect(shard: shardIndex, locks: locks, operation, done: done)
        }
        let shard = shards[shardIndex]
        let stats = self.stats[loop.index]
        if shard.loop === loop {
            if shard.locksAreFree(locks) {
                done(runInline(on: shard, from: loop) { operation(shard) })
            } else {
                stats.countSingleShard(queued: true)
                shard.enqueueSingle(locks: locks, txid: takeTxid()) { shard in
                    done(operation(shard))
                }
            }
            return
        }
        // The closure is made here, run and destroyed on the owner's thread.
        // The shard set, the shard, this loop and its counters live as long as
        // the server: captured strongly, each would be retained here and
        // released there, their reference counts written from both threads.
        shard.loop.post { [unowned(unsafe) self, unowned(unsafe) shard, unowned(unsafe) loop, unowned(unsafe) stats] in
            if shard.locksAreFree(locks) {
                let result = operation(shard)
                shard.afterOperation()
                shard.reply(result, to: loop, counting: stats, queued: false, done)
            } else {
                let txid = takeTxid()
                shard.enqueueSingle(locks: locks, txid: txid) { shard in
                    let result = operation(shard)
                    shard.reply(result, to: loop, counting: stats, queued: true, done)
                }
            }
        }
    }

    /// The inline path's bookkeeping around `body`, run now on `loop`, which
    /// owns `shard` and found the keys free: counted as inline, then the
    /// shard's after-operation work (blocked clients served, counters published).
    @inlinable
    public func runInline<R>(on shard: Shard, from loop: EventLoop, _ body: () -> R) -> R {
        stats[loop.index].inline.addOwned(1)
        let result = body()
        shard.afterOperation()
        return result
    }

    // MARK: - Without locks

    /// Runs `operation` on every shard with no locks (INFO, DBSIZE, KEYS, SCAN:
    /// reads that Redis itself does not make atomic across a cluster), and
    /// calls `done` on `loop` with the results in shard order.
    public func broadcast<R>(from loop: EventLoop, _ operation: @escaping (Shard) -> R, done: @escaping ([R]) -> Void) {
        let gather = Gather<R>(count: shards.count, done: done)
        for shard in shards {
            if shard.isLent(to: loop) {
                // A script on `loop` borrows every shard: answer at once.
                gather.deliver(shard.index, operation(shard))
            } else if shard.loop === loop && !shard.isLent {
                gather.deliver(shard.index, operation(shard))
            } else {
                shard.loop.post {
                    shard.whenAvailable {
                        let result = operation(shard)
                        loop.post { gather.deliver(shard.index, result) }
                    }
                }
            }
        }
    }

    /// Runs `operation` on one shard with no locks and no accounting.
    public func hop<R>(from loop: EventLoop, to shardIndex: Int, _ operation: @escaping (Shard) -> R, done: @escaping (R) -> Void) {
        let shard = shards[shardIndex]
        if shard.isLent(to: loop) {
            done(operation(shard))
        } else if shard.loop === loop && !shard.isLent {
            let result = operation(shard)
            shard.afterOperation()
            done(result)
        } else {
            shard.loop.post {
                shard.whenAvailable {
                    let result = operation(shard)
                    shard.afterOperation()
                    shard.reply(result, to: loop, done)
                }
            }
        }
    }
}

/// One single-shard command's trip to the shard of another loop and back, as
/// one object: posted to the shard's loop, where ``operate(on:)`` runs at once
/// when the keys are free (quick) or when the shard's queue reaches it
/// (normal), then posted back to the loop it came from, where ``finish()``
/// takes the result. ``ShardSet/runSingleShard(from:shard:locks:_:done:)``
/// makes the same trip with a closure for each leg, a closure for the reply
/// and a lock array: four allocations and their reference counting per
/// command where this takes one.
///
/// For commands whose keys share one fingerprint (one key); subclasses supply
/// the two halves and keep the result between them. Not generic over the
/// result: generic code here would look up the metadata of `R?` in the
/// runtime's cache on each use, some 300 instructions a time.
///
/// Invariant behind `@unchecked Sendable`: the object is on one thread at a
/// time. The origin builds it and posts it; the shard's thread runs
/// ``operate(on:)`` and writes the result, then posts it back; the origin
/// reads the result. Each hand-over is an inbox push and pop, a release and
/// an acquire, so every field written on one side is seen whole on the other.
open class SingleShardHop: InboxJob, @unchecked Sendable {
    /// Held strongly, unlike the closure form's captures: the object is made
    /// and freed on the origin's thread, so these references are counted up
    /// and down there only, while on the shard's thread they are read in
    /// place (an unowned reference is retained for every call made through it).
    @usableFromInline let shardSet: ShardSet
    @usableFromInline let shard: Shard
    @usableFromInline let origin: EventLoop
    /// The origin's counters, taken on the origin.
    @usableFromInline let stats: TransactionStats
    @usableFromInline let fingerprint: LockFingerprint
    @usableFromInline let mode: LockMode
    private var returning = false
    private var queued = false

    /// A trip from `origin` to `shard`, which another loop owns, holding `fingerprint` in `mode` there.
    @inlinable
    public init(shardSet: ShardSet, shard: Shard, from origin: EventLoop, fingerprint: LockFingerprint, mode: LockMode) {
        self.shardSet = shardSet
        self.shard = shard
        self.origin = origin
        self.stats = shardSet.stats[origin.index]
        self.fingerprint = fingerprint
        self.mode = mode
        super.init()
    }

    /// The command's work, on the shard's thread with its keys held; the
    /// subclass keeps its result for ``finish()``.
    open func operate(on shard: Shard) {}

    /// What becomes of the result, on the origin's thread.
    open func finish() {}

    /// Sends the trip on its way (from the origin).
    @inlinable
    public final func start() {
        shard.loop.post(job: self, from: origin)
    }

    public final override func run() {
        if returning {
            // Counted here, on the origin: its counters are written by its own thread only.
            stats.countSingleShard(queued: queued)
            return finish()
        }
        if shard.locks.isFree(fingerprint, mode: mode) {
            operate(on: shard)
            shard.afterOperation()
            sendBack()
        } else {
            let txid = shardSet.takeTxid()
            shard.enqueueSingle(locks: ShardLockSet(fingerprints: [fingerprint], mode: mode), txid: txid) { [self] shard in
                queued = true
                operate(on: shard)
                sendBack()
            }
        }
    }

    /// Posts the trip back once what the shard's loop journaled is durable
    /// (`appendfsync always`), as ``Shard/reply(_:to:_:)`` does.
    private func sendBack() {
        returning = true
        shard.loop.postWhenDurable(job: self, to: origin)
    }
}

extension Shard {
    /// Sends an operation's result back to the coordinating `loop`, once what
    /// this shard's loop journaled is durable (`appendfsync always`); without
    /// a sync hook, one closure for the way back instead of two.
    @inlinable
    func reply<R>(_ result: R, to loop: EventLoop, _ done: @escaping (R) -> Void) {
        if !self.loop.hasSyncHook {
            loop.post { done(result) }
        } else {
            self.loop.whenDurable { loop.post { done(result) } }
        }
    }

    /// ``reply(_:to:_:)`` for a single-shard command's hop, which also counts
    /// the path it took (quick, or normal when it queued) in the coordinating
    /// loop's `stats`, there: those counters are written by that loop's thread
    /// only, never from the owner's, so the two threads do not share their
    /// cache line. The same one closure for the way back.
    @inlinable
    func reply<R>(
        _ result: R, to loop: EventLoop, counting stats: TransactionStats, queued: Bool, _ done: @escaping (R) -> Void
    ) {
        let back = { [unowned(unsafe) stats] in
            stats.countSingleShard(queued: queued)
            done(result)
        }
        if !self.loop.hasSyncHook {
            loop.post(back)
        } else {
            self.loop.whenDurable { loop.post(back) }
        }
    }
}

/// Collects one result per participant on the coordinating loop.
public final class Gather<R>: @unchecked Sendable {
    // Invariant: `deliver` is only called on the coordinating loop.
    private var results: [R?]
    private var remaining: Int
    private let done: ([R]) -> Void

    public init(count: Int, done: @escaping ([R]) -> Void) {
        results = Array(repeating: nil, count: count)
        remaining = count
        self.done = done
        if count == 0 { done([]) }
    }

    public func deliver(_ index: Int, _ result: R) {
        results[index] = result
        remaining -= 1
        if remaining == 0 { done(results.map { $0! }) }
    }
}

/// Takes the work a loop's commands hand to ``ShardSet/runSingleShard(from:shard:locks:_:done:)``
/// while a connection there collects a squashed pipeline run that runs as
/// one transaction (`--pipeline_squash_transactions`): the work waits in the
/// run, with its locks, instead of running or leaving now, so that it runs
/// in the pipeline's order with the run's other commands.
public protocol RunCollector: AnyObject {
    func collect<R>(shard: Int, locks: ShardLockSet, _ operation: @escaping (Shard) -> R, done: @escaping (R) -> Void)
}

/// One loop's ``RunCollector`` while it collects.
///
/// Invariant behind `@unchecked Sendable`: `current` is read and written
/// only on its own loop's thread (set and cleared around a run's handlers).
public final class CollectorSlot: @unchecked Sendable {
    public var current: RunCollector?
    init() {}
}
