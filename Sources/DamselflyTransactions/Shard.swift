import DamselflyRuntime
import DamselflyStorage
import Synchronization

/// One shard: a slice of the keyspace owned by one loop's thread, with the
/// intent locks and the transaction queue that order multi-key transactions.
///
/// Only the owning loop's thread touches the keyspace, the locks and the
/// queue; other threads reach the shard through ``EventLoop/post(_:)``.
public final class Shard: @unchecked Sendable {
    // Invariant behind @unchecked Sendable: `keyspace`, `locks`, `queue`,
    // `committedTxid` are used only on `loop`'s thread (asserted in debug
    // builds by `assertOnShard()`); the published counters are atomics.

    public let index: Int
    public let loop: EventLoop
    public let keyspace: Keyspace
    var locks = IntentLockTable()
    /// Scheduled transactions in transaction-id order.
    var queue: [ShardTransaction] = []
    /// The highest transaction id that has run here: an older transaction
    /// arriving afterwards must be refused, or two shards could run the same
    /// pair of transactions in opposite orders.
    var committedTxid: UInt64 = 0
    /// Watched keys (WATCH), dirtied by writes.
    var watches = WatchTable()
    /// Set by a write command's operation that found nothing to change (a
    /// DEL of missing keys, an SADD of present members, ...) and consumed by
    /// the next ``noteWritten(_:changed:)`` on this shard, which then leaves
    /// WATCHers, blocked clients and the save counter alone, as Redis's
    /// `signalModifiedKey` is never called on such paths.
    public var keysUnchanged = false
    /// Set by an operation that wrote only some of the keys it holds (a
    /// store command's destination, the one key LMPOP popped, SMOVE's source
    /// when the member was already in the destination): the next
    /// ``noteWritten(_:changed:)`` signals only these, as Redis signals
    /// only the keys it modified.
    public var onlyWritten: [LockFingerprint]?
    /// Set by an operation that changed only a stream's consumer-group bookkeeping
    /// (XACK, XCLAIM, XAUTOCLAIM, XGROUP on an existing stream, XSETID): the next
    /// ``noteWritten(_:changed:)`` counts the change for saves and wakes blocked
    /// readers but leaves WATCHers and tracking clients alone, as Redis 7.0 calls
    /// no `signalModifiedKey` there.
    public var bookkeepingOnly = false
    /// Clients blocked on keys of this shard.
    var blocking = BlockingTable()
    /// CLIENT TRACKING: who may cache which of this shard's keys, and BCAST prefixes.
    public internal(set) var tracking = TrackingTable()
    /// The tracking context of the operation running now (nil when nobody tracks).
    public internal(set) var trackingOp: TrackingOp?
    /// Set by ``ShardSet``: the server-wide tracking totals and delivery.
    public internal(set) var trackingHub: TrackingHub?
    /// The databases call ``invalidateTracked(name:database:hash:)`` on expiry.
    var expiryHookInstalled = false
    /// A global transaction lent this shard's keyspace to its coordinating
    /// thread (a Lua script touching undeclared keys): lock-free work
    /// (expiry, SCAN, KEYS, INFO's walk) waits until it is handed back.
    public private(set) var isLent = false
    /// Index + 1 of the loop the keyspace is lent to (0: not lent); read
    /// from that loop to run lock-free work synchronously while it borrows.
    public let lentToLoop = Atomic<Int>(0)
    private var waitingForReturn: [() -> Void] = []
    /// The append-only journal (`--appendonly`), nil when off.
    public var journal: ShardJournal?
    /// Every shard of the server (set once by ``ShardSet``), for messages between shards.
    public internal(set) var peers: [Shard] = []

    // Published for INFO (written by this shard only).
    public let queueLength = Atomic<Int>(0)
    public let usedMemory = Atomic<Int>(0)
    /// Counted with ``Atomic/addOwned(_:)``: reset them on this shard's loop (``resetStatistics()``).
    public let keyspaceHits = Atomic<Int>(0)
    public let keyspaceMisses = Atomic<Int>(0)
    /// Keys expired since the start or the last CONFIG RESETSTAT.
    public let expiredKeys = Atomic<Int>(0)
    /// The keyspace's ``Keyspace/changedDatabases``: the databases whose counters changed since
    /// the last publish mark themselves there (bit i for database i, bit 63 for any from 63
    /// up). After an operation only these are re-read (``publishTouched()``) instead of every
    /// database of the keyspace, and none when nothing changed: merely reaching a database
    /// (a GET, hit or miss) marks nothing.
    @usableFromInline let changedDatabases: UnsafeMutablePointer<UInt64>
    /// What the last publish read of each database, and the sums published.
    private var published: [(used: Int, expired: Int)] = []
    private var usedTotal = 0
    private var expiredTotal = 0
    /// `expiredTotal` at the last CONFIG RESETSTAT: the databases count expiries
    /// since their creation, ``expiredKeys`` since the reset.
    private var expiredAtReset = 0
    /// Write commands since the last successful snapshot (INFO's rdb_changes_since_last_save).
    /// Written on the shard's thread only (the snapshot resets it there): `addOwned`.
    public let changesSinceSave = Atomic<Int>(0)
    /// Keys evicted under `maxmemory` (INFO's evicted_keys).
    public let evictedKeys = Atomic<Int>(0)

    /// This shard's share of `maxmemory` in bytes; 0 when there is no limit, so the
    /// check after each operation is one compare (see Shard+Eviction.swift).
    public internal(set) var evictionLimit = 0
    var evictionSettings = EvictionSettings()
    var evictionPool = EvictionPool()

    public init(index: Int, loop: EventLoop, databaseCount: Int, events: KeyspaceEvents? = nil) {
        self.index = index
        self.loop = loop
        self.keyspace = Keyspace(databaseCount: databaseCount, events: events)
        self.changedDatabases = keyspace.changedDatabases
    }

    @inline(__always)
    func assertOnShard() {
        assert(loop.inLoopThread, "shard \(index) touched off its thread")
    }

    /// The database `index` of this shard's keyspace. What a command changes there reaches the
    /// published counters by itself (the database marks ``changedDatabases``).
    @inlinable
    public func database(_ index: Int) -> Database {
        keyspace.databases[index]
    }

    /// Whether a command holding `locks` could run right now without a transaction id.
    @inline(__always)
    public func locksAreFree(_ locks: ShardLockSet) -> Bool { self.locks.isFree(locks) }

    /// Whether nothing holds `fingerprint` against `mode` here (a hop that
    /// arrived may run at once). On the shard's thread.
    @inline(__always)
    public func keyIsFree(_ fingerprint: LockFingerprint, _ mode: LockMode) -> Bool {
        locks.isFree(fingerprint, mode: mode)
    }

    /// Whether a one-key operation sent from `loop` may run here at once (the
    /// inline path): `loop` owns this shard and nothing holds `fingerprint` against `mode`.
    @inline(__always)
    public func runsInline(from loop: EventLoop, _ fingerprint: LockFingerprint, _ mode: LockMode) -> Bool {
        self.loop === loop && keyIsFree(fingerprint, mode)
    }

    /// On this shard's thread: lends the keyspace out (see ``isLent``).
    public func lend(to borrower: EventLoop) {
        isLent = true
        lentToLoop.store(borrower.index + 1, ordering: .releasing)
    }

    /// Whether `loop` currently borrows this shard's keyspace.
    @inline(__always)
    public func isLent(to loop: EventLoop) -> Bool {
        lentToLoop.load(ordering: .acquiring) == loop.index + 1
    }

    /// On this shard's thread: takes the keyspace back and runs what waited.
    public func takeBack() {
        isLent = false
        lentToLoop.store(0, ordering: .releasing)
        let pending = waitingForReturn
        waitingForReturn = []
        for task in pending { task() }
    }

    /// Runs `task` now, or once the keyspace is handed back.
    public func whenAvailable(_ task: @escaping () -> Void) {
        if isLent { waitingForReturn.append(task) } else { task() }
    }

    /// Runs `task` on this shard's thread once the keyspace is not lent out:
    /// how work that touches shard state outside a transaction (a cancelled
    /// waiter's unregistration, an UNWATCH, the push half of a cross-shard
    /// BLMOVE) reaches a shard. A plain `loop.post` would run it on the owning
    /// thread while a borrower (a script's or SORT's global transaction) is
    /// using the same tables from its own thread.
    public func postWhenAvailable(_ task: @escaping () -> Void) {
        loop.post { [self] in whenAvailable(task) }
    }

    /// Runs after every operation on this shard: serves clients blocked on
    /// keys the operation made ready, then refreshes the published counters.
    @inline(__always)
    public func afterOperation() {
        if !blocking.readyKeys.isEmpty { serveReadyKeys() }
        if evictionLimit > 0 { evictIfNeeded() }
        if tracking.hasPendingBroadcast && queue.isEmpty { flushTrackingBroadcasts() }
        if changedDatabases.pointee != 0 { publishTouched() }
    }

    /// Refreshes the counters INFO and the `maxmemory` check read from other threads, from
    /// every database: after work that reaches databases without ``database(_:)`` (FLUSHALL,
    /// SWAPDB, a snapshot's load, active expiry, eviction) and `hz` times a second.
    public func publishStats() {
        changedDatabases.pointee = 0
        let databases = keyspace.databases
        if published.count != databases.count {
            published = Array(repeating: (0, 0), count: databases.count)
        }
        usedTotal = 0
        expiredTotal = 0
        for (i, db) in databases.enumerated() {
            published[i] = (db.usedBytes, db.expiredKeys)
            usedTotal += published[i].used
            expiredTotal += published[i].expired
        }
        usedMemory.store(usedTotal, ordering: .relaxed)
        expiredKeys.store(expiredTotal &- expiredAtReset, ordering: .relaxed)
    }

    /// CONFIG RESETSTAT's part here: keyspace hits and misses and expired keys
    /// back to zero. Call on this shard's loop, the counters' only writer, while
    /// the keyspace is not lent (``whenAvailable(_:)``).
    public func resetStatistics() {
        keyspaceHits.store(0, ordering: .relaxed)
        keyspaceMisses.store(0, ordering: .relaxed)
        publishStats()
        expiredAtReset = expiredTotal
        expiredKeys.store(0, ordering: .relaxed)
    }

    /// ``publishStats()`` for the databases an operation changed: the published sums move by
    /// what changed in them. A command changes one database, so this reads two counters and
    /// three capacities where reading all sixteen databases cost a third of a short command.
    @usableFromInline
    func publishTouched() {
        var mask = changedDatabases.pointee
        guard mask & (1 << 63) == 0, published.count == keyspace.databaseCount else { return publishStats() }
        changedDatabases.pointee = 0
        // Through buffer pointers, each database borrowed: after every write,
        // the array's and the database's reference counts were a third of
        // this function's cost.
        keyspace.databases.withUnsafeBufferPointer { databases in
            published.withUnsafeMutableBufferPointer { published in
                while mask != 0 {
                    let i = mask.trailingZeroBitCount
                    mask &= mask &- 1
                    let now = Unmanaged.passUnretained(databases[i])._withUnsafeGuaranteedRef {
                        (used: $0.usedBytes, expired: $0.expiredKeys)
                    }
                    usedTotal += now.used &- published[i].used
                    expiredTotal += now.expired &- published[i].expired
                    published[i] = now
                }
            }
        }
        usedMemory.store(usedTotal, ordering: .relaxed)
        expiredKeys.store(expiredTotal &- expiredAtReset, ordering: .relaxed)
    }

    // MARK: - Transaction queue

    /// Tries to schedule a multi-shard (or global) transaction here.
    ///
    /// VLL's rule: accept when the transaction's id is newer than any
    /// coordinated transaction that already ran here, and either its locks
    /// are free (it may then run out of order) or it can take its place in
    /// id order (``mayQueueInOrder(_:)``). Otherwise refuse; the coordinator
    /// cancels it everywhere and retries with a fresh id.
    ///
    /// Queued single-shard commands (``enqueueSingle(locks:txid:_:)``) count
    /// for neither: one that ran does not raise `committedTxid`, and an older
    /// transaction is queued ahead of those still waiting. The rule keeps two
    /// transactions of several shards from running in opposite orders on two
    /// of them; a single-shard command is ordered on its one shard only, by
    /// the queue, so it can be no part of such a cycle. Counting them made a
    /// hot key (Sidekiq's `queues`, in every push) refuse nearly every
    /// multi-shard schedule whose message crossed a queued command's id
    /// (two refusals per transaction at two threads).
    func schedule(_ entry: ShardTransaction) -> (accepted: Bool, lockGranted: Bool) {
        assertOnShard()
        guard entry.txid > committedTxid else { return (false, false) }
        let free: Bool
        if entry.isGlobal {
            free = locks.isEmpty && queue.isEmpty
        } else {
            free = locks.isFree(entry.locks)
        }
        guard free || mayQueueInOrder(entry) else { return (false, false) }
        if entry.isGlobal { locks.acquireGlobal() } else { locks.acquire(entry.locks) }
        entry.lockGranted = free
        insertSorted(entry)
        return (true, free)
    }

    /// Whether `entry`, whose locks are busy here, may take its place in id
    /// order behind the older transactions and ahead of the newer ones:
    /// unless a newer coordinated transaction that conflicts with it may
    /// already be ahead of it, here or elsewhere — it was granted its locks
    /// free (it may run out of order), or one of its steps ran here — or
    /// either is global. Otherwise the queue keeps every shard's coordinated
    /// transactions in id order, the order VLL's argument needs (the oldest
    /// is at the head of every queue it is in), and the newer one simply
    /// waits behind it. Only a newer one that cannot wait refuses it.
    ///
    /// VLL's plain rule refused `entry` whenever anything newer was queued:
    /// at two threads a message with an older id crosses the other thread's
    /// newer schedules on a hot key (Sidekiq's `queues`) nearly every time.
    private func mayQueueInOrder(_ entry: ShardTransaction) -> Bool {
        for queued in queue.reversed() {
            // The queue is in id order: the rest is older.
            if queued.txid < entry.txid { break }
            guard queued.participants > 0 || queued.isGlobal || queued.isHold else { continue }
            if entry.isGlobal || queued.isGlobal { return false }
            if (queued.lockGranted || queued.ranHere) && queued.locks.conflicts(with: entry.locks) { return false }
        }
        return true
    }

    private func insertSorted(_ entry: ShardTransaction) {
        var position = queue.count
        while position > 0 && queue[position - 1].txid > entry.txid { position -= 1 }
        queue.insert(entry, at: position)
        queueLength.store(queue.count, ordering: .relaxed)
    }

    /// Removes a scheduled transaction that never ran here (its schedule was
    /// refused elsewhere) and releases its locks.
    func cancel(_ entry: ShardTransaction) {
        assertOnShard()
        entry.coordinator = nil
        guard let position = queue.firstIndex(where: { $0 === entry }) else { return }
        queue.remove(at: position)
        release(entry)
        queueLength.store(queue.count, ordering: .relaxed)
        poll()
    }

    private func release(_ entry: ShardTransaction) {
        if entry.isGlobal { locks.releaseGlobal() } else { locks.release(entry.locks) }
    }

    /// Hands a scheduled transaction its next step and runs whatever can run.
    func arm(_ entry: ShardTransaction, outOfOrder: Bool, conclude: Bool, undo: ((Shard) -> Void)? = nil,
             _ step: @escaping (Shard) -> Void) {
        assertOnShard()
        entry.outOfOrder = outOfOrder && entry.lockGranted
        entry.pendingStep = step
        entry.pendingUndo = undo
        entry.concludeAfterStep = conclude
        poll()
    }

    /// Holds `locks`, free now, for a step that comes later (``runHeld(_:_:)``,
    /// or ``releaseHeld(_:)`` if it will not run): a squashed pipeline run in
    /// order holds its keys on its connection's shard while the part of the
    /// run on another loop's shard runs (see `KeyHopBatch`). Queued with a
    /// fresh id and granted, so whatever conflicts with it waits behind it;
    /// an older coordinated transaction that conflicts is refused rather
    /// than queued ahead of it (``mayQueueInOrder(_:)``), as it would be
    /// ahead of a transaction whose step may have run elsewhere.
    public func hold(_ locks: ShardLockSet, txid: UInt64) -> ShardTransaction {
        assertOnShard()
        let entry = ShardTransaction(txid: txid, locks: locks, isGlobal: false)
        entry.isHold = true
        entry.lockGranted = true
        self.locks.acquire(locks)
        insertSorted(entry)
        return entry
    }

    /// Runs `step` under the locks of ``hold(_:txid:)`` (at once, unless a
    /// transaction's step is running here) and releases them.
    public func runHeld(_ entry: ShardTransaction, _ step: @escaping (Shard) -> Void) {
        arm(entry, outOfOrder: true, conclude: true, step)
    }

    /// Releases the locks of ``hold(_:txid:)`` without a step.
    public func releaseHeld(_ entry: ShardTransaction) {
        cancel(entry)
    }

    /// Queues a single-shard command whose keys are busy: it gets a fresh
    /// transaction id (newer than everything queued), waits for its turn and
    /// then runs `step`.
    public func enqueueSingle(locks: ShardLockSet, txid: UInt64, _ step: @escaping (Shard) -> Void) {
        assertOnShard()
        let entry = ShardTransaction(txid: txid, locks: locks, isGlobal: false)
        self.locks.acquire(locks)
        entry.pendingStep = step
        entry.concludeAfterStep = true
        queue.append(entry)
        queueLength.store(queue.count, ordering: .relaxed)
        poll()
    }

    /// Runs armed transactions: the head of the queue in order, and any armed
    /// transaction whose locks were free everywhere (out of order).
    func poll() {
        var progressed = true
        while progressed {
            progressed = false
            // In order: the head runs when it has a step.
            if let head = queue.first, let step = head.pendingStep {
                runStep(head, step)
                progressed = true
                continue
            }
            // Out of order: transactions granted free locks on every shard.
            var i = 1
            while i < queue.count {
                let entry = queue[i]
                if entry.outOfOrder, let step = entry.pendingStep {
                    runStep(entry, step)
                    progressed = true
                    break
                }
                i += 1
            }
        }
    }

    private func runStep(_ entry: ShardTransaction, _ step: (Shard) -> Void) {
        entry.pendingStep = nil
        entry.noteStepRuns()
        // A queued single-shard command does not count (see ``schedule(_:)``).
        if entry.participants > 0 || entry.isGlobal, entry.txid > committedTxid { committedTxid = entry.txid }
        // Replication: a coordinated transaction's writes here, from its first
        // step to its conclusion (EXEC's hops and a lent script's writes
        // included), form this shard's part of one unit of the stream.
        let tap = entry.participants > 0 ? journal?.tap : nil
        if let tap, !entry.unitOpened {
            entry.unitOpened = true
            tap.beginUnit(shard: index, txid: entry.txid, participants: entry.participants)
        }
        step(self)
        if entry.concludeAfterStep, entry.unitOpened, let tap = journal?.tap {
            tap.endUnit(shard: index, txid: entry.txid)
        }
        if entry.concludeAfterStep {
            if let position = queue.firstIndex(where: { $0 === entry }) {
                queue.remove(at: position)
            }
            release(entry)
            entry.coordinator = nil
            queueLength.store(queue.count, ordering: .relaxed)
        }
        afterOperation()
    }
}

/// A transaction's presence on one shard: its locks and the step it was
/// armed with. Created by the coordinator, then used only on the shard.
public final class ShardTransaction: @unchecked Sendable {
    // Invariant: after being posted to its shard, touched only on that shard's thread.
    let txid: UInt64
    let locks: ShardLockSet
    let isGlobal: Bool
    var lockGranted = false
    /// Set by the coordinator when every shard granted the locks free.
    var outOfOrder = false
    var pendingStep: ((Shard) -> Void)?
    var concludeAfterStep = false
    /// Shards of the coordinated transaction this entry belongs to (0: a
    /// queued single-shard command).
    let participants: Int
    /// Replication's unit was opened here (see ``Shard/runStep``).
    var unitOpened = false
    /// Locks held for a step that comes later (``Shard/hold(_:txid:)``).
    var isHold = false

    // The watchdog's view (Shard+Watchdog.swift); all nil / zero when it is off.
    /// The coordinating transaction, while the watchdog is on and this entry is
    /// queued here (cleared at its conclusion or cancellation: no cycle outlives it).
    var coordinator: Transaction?
    /// How to take back the armed step if the transaction is abandoned (nil:
    /// the step cannot be taken back once it ran).
    var pendingUndo: ((Shard) -> Void)?
    /// What takes back the reversible steps that ran here.
    var undo: ((Shard) -> Void)?
    /// A step that ran here and cannot be taken back: no abort from then on.
    var ranIrreversibly = false
    /// Some step ran here (an older transaction may no longer queue ahead).
    var ranHere = false
    /// Sweeps that found this entry armed and still waiting for its turn.
    var waitedSweeps = 0
    /// A step held back while the coordinator decides whether to abandon it.
    var withheldStep: ((Shard) -> Void)?

    @inline(__always)
    func noteStepRuns() {
        ranHere = true
        if let pendingUndo {
            let earlier = undo
            undo = earlier.map { first in { shard in pendingUndo(shard); first(shard) } } ?? pendingUndo
            self.pendingUndo = nil
        } else {
            ranIrreversibly = true
        }
        waitedSweeps = 0
    }

    init(txid: UInt64, locks: ShardLockSet, isGlobal: Bool, participants: Int = 0) {
        self.txid = txid
        self.locks = locks
        self.isGlobal = isGlobal
        self.participants = participants
    }
}
