import DamselflyRuntime
import DamselflyTransactions

/// The one-key commands of a squashed pipeline run that go to one shard of
/// another loop, sent there as **one** message and back as one (issue 16:
/// "one message per destination"), where each would otherwise be a
/// ``KeyHop`` of its own: an object, a post and an inbox pop each way.
///
/// One per connection, reused by every run (``ReplySink/hopBatch``). The
/// first command of a run to hop posts the batch; it is held in the loop's
/// post batch until the batch ends, and each later command of the run for
/// the same shard is added to it while it is still the last task held
/// (``EventLoop/holdsLast(_:)``), so it keeps its place among everything
/// else the run posts. Any other hop, an add once the batch has left or a
/// command for another shard travels as a ``KeyHop``, as before.
///
/// On the shard's loop each command runs as its KeyHop would have, in the
/// order added: at once where its key is free, else queued behind the
/// transaction holding it. When all are done the batch goes back (once
/// the journal is durable with `appendfsync always`), and on the origin
/// each reply goes to its sink, in order.
///
/// Invariant behind `@unchecked Sendable`, as for ``SingleShardHop``: the
/// object is on one thread at a time. The origin fills it while it is held
/// in its own post batch (nothing has left the thread), the shard's thread
/// runs and answers the commands after the inbox pop, the origin delivers
/// after the pop on the way back; each hand-over is a release and an
/// acquire. `inFlight` is the origin's alone, `pending` the shard's.
///
/// **In order over two shards** (`--pipeline_squash_transactions`): a run may
/// also hold this loop's commands between the other shard's. Then nothing
/// leaves or runs while the run is built: each command's work waits in the
/// batch (an entry, or collected work, ``RunCollector``). When the run ends,
/// its keys on this loop's shard are held (``Shard/hold(_:txid:)``), the
/// batch goes to the other shard, whose part runs at once if all its keys
/// are free (else nothing runs there), and back here this loop's part runs
/// under the held keys: one round trip, each shard's commands in the
/// pipeline's order, and no other client sees one shard's part without the
/// other's, so no one can see the pipeline's writes out of order. A refused
/// part, or keys busy here, runs the run's stretches of one shard in turn; a
/// run over other mixes of shards (or with replicas) runs as one
/// ``Transaction``, whose steps on different shards may run at once: each
/// touches only its own entries, places' answers and work, and `places` and
/// `works` are not changed while the run is out. A run that ends up holding
/// the other shard's commands only leaves as a plain batch.
public final class KeyHopBatch: InboxJob, @unchecked Sendable, RunCollector {
    /// What a command needs on the shard's thread, consumed there when it runs.
    @usableFromInline
    struct Entry: ~Copyable {
        let step: KeyStep
        /// In place when it fits an existential's three words (GET's key);
        /// else a ``StoredOperation`` pointing into ``operations`` (boxed,
        /// SET's operation was allocated and freed on every hop).
        let operation: any KeyOperation
        let mode: LockMode
    }

    /// What the origin needs of a command: where its reply goes, and the reply.
    /// Apart from ``Entry`` so that neither is moved whole more than once: an
    /// entry (some 170 bytes) is moved out to run and not moved back, and the
    /// delivery moves only these three words and the reply.
    /// Noncopyable: delivered by moving it out, its sink is borrowed for the
    /// call (copied, it was retained once more and released twice).
    @usableFromInline
    struct Answer: ~Copyable {
        let sink: ReplySink
        var reply: Reply = .ok
    }

    private let shardSet: ShardSet
    /// The commands of the run in flight, in the order added: a plain
    /// buffer (entries are moved in and out, no copy-on-write check, no
    /// generic array path), kept with its capacity from run to run. Each
    /// entry is moved out when it runs; the buffer is empty again when the
    /// batch leaves the shard.
    private var entries = MovingBuffer<Entry>()
    /// The run's replies and their sinks, in the same order.
    private var answers = MovingBuffer<Answer>()
    /// Where the run's operations too big to travel in place lie
    /// (``StoredOperation``): stored by the origin as they are added, run and
    /// deinitialized on the shard's thread, the memory reused from the start
    /// once the batch is back.
    private var operations = OperationArena()
    /// An empty buffer with capacity, taken as `answers` while a delivery
    /// walks the last run's (a reply may start the next run at once). From
    /// the second run on, the two buffers take turns: no allocation per run.
    private var spare: MovingBuffer<Answer>?
    /// The run's destination and origin, and the origin's counters.
    private var shard: Shard?
    private var origin: EventLoop?
    private var stats: TransactionStats?
    /// Keys whose lookups the shard started ahead (``lookAhead(on:)``), counted on the origin.
    private var lookedAhead = 0
    private let lookahead: Bool
    /// Between the first add of a run and its delivery (the origin's).
    private var inFlight = false
    /// Set on the shard's thread before the way back.
    private var returning = false
    /// Commands not yet answered on the shard's thread, plus one while they are being started.
    private var pending = 0
    /// How many of the run's commands waited in the shard's queue (set on
    /// the shard's thread, read and cleared on the origin's after the trip back).
    private var queuedCount = 0

    /// One command of a run in order: its shard, and its entry (`item` ≥ 0,
    /// an index into `entries`) or its collected work (`-1 - item` into `works`).
    struct Place {
        let shard: Int
        let item: Int
    }

    /// Work a command of a run in order handed to ``ShardSet/runSingleShard(from:shard:locks:_:done:)``:
    /// run on its shard, it leaves what delivers its result back on the origin.
    final class Work {
        let locks: ShardLockSet
        let run: (Shard) -> () -> Void
        var delivery: (() -> Void)?
        init(locks: ShardLockSet, run: @escaping (Shard) -> () -> Void) {
            self.locks = locks
            self.run = run
        }
    }

    /// A run in order is being built (see the type's comment).
    public private(set) var isCollectingInOrder = false
    /// The run in order's commands, in the pipeline's order; a spare buffer
    /// takes turns with it, as `spare` does for `answers`.
    private var places = MovingBuffer<Place>()
    private var sparePlaces: MovingBuffer<Place>?
    private var works: [Work] = []
    /// The run in order's shard on the origin's loop, once a command has work there.
    private var localShard: Shard?
    /// The run holds two shards of the origin's loop (more shards than loops;
    /// the connection keeps to one, this is the batch's own guard).
    private var spansMoreShards = false
    /// The sink of the command whose handler runs, for work collected without
    /// one (the connection sets it before each handler of a run in order).
    /// Not retained (set per command, a retain and a release each time): the
    /// connection's slots outlive its batch's runs, and it is cleared when the run ends.
    public unowned(unsafe) var currentSink: ReplySink?
    private static let nowhere = DiscardingSink()

    /// `lookahead`: start the memory reads of a run's key lookups together
    /// when it arrives (`--pipeline_lookahead` above 0).
    public init(shardSet: ShardSet, lookahead: Bool = true) {
        self.shardSet = shardSet
        self.lookahead = lookahead
        super.init()
    }

    deinit {
        entries.free()
        answers.free()
        spare?.free()
        operations.free()
    }

    /// Whether a command's hop to `shard` (another loop's) from `loop`, the
    /// connection's, may join this batch (``add(_:_:mode:sink:shard:from:)``); false: it travels alone.
    @usableFromInline
    func accepts(_ shard: Shard, from loop: EventLoop) -> Bool {
        if isCollectingInOrder { return self.shard == nil || shard === self.shard }
        if inFlight { return shard === self.shard && loop === origin && loop.holdsLast(self) }
        // Only while the loop batches its posts: the batch must stay on this
        // thread, held, while the run's later commands are added.
        return loop.isBatchingPosts
    }

    /// Adds a command ``accepts(_:from:)`` took; the first of a run posts the batch.
    @usableFromInline
    func add<Operation: KeyOperation>(
        _ step: consuming KeyStep, _ operation: consuming Operation, mode: LockMode, sink: ReplySink, shard: Shard,
        from loop: EventLoop
    ) {
        // Each branch builds its entry, so the operation moves straight in.
        if MemoryLayout<Operation>.size <= 3 * MemoryLayout<Int>.size
            && MemoryLayout<Operation>.alignment <= MemoryLayout<Int>.alignment {
            entries.append(Entry(step: step, operation: operation, mode: mode))
        } else {
            entries.append(Entry(step: step, operation: StoredOperation(pointer: operations.store(operation)), mode: mode))
        }
        answers.append(Answer(sink: sink))
        if isCollectingInOrder {
            places.append(Place(shard: shard.index, item: entries.count - 1))
            if shard.loop === loop {
                if let local = localShard, local !== shard { spansMoreShards = true }
                localShard = shard
            } else {
                self.shard = shard
            }
            return
        }
        guard !inFlight else { return }
        inFlight = true
        self.shard = shard
        if origin !== loop {
            origin = loop
            stats = shardSet.stats[loop.index]
        }
        shard.loop.post(job: self, from: loop)
    }

    public override func run() {
        switch trip {
        case .home: break
        case .there: return runThere()
        case .back: return backHere()
        }
        if returning { return deliver() }
        let shard = self.shard!
        pending = entries.count + 1
        if lookahead && entries.count > 1 { lookAhead(on: shard) }
        for i in 0..<entries.count {
            let entry = entries.base! + i
            let fingerprint = entry.pointee.step.fingerprint
            let mode = entry.pointee.mode
            if shard.keyIsFree(fingerprint, mode) {
                operate(i, on: shard)
                shard.afterOperation()
                pending -= 1
            } else {
                // Held by a queued transaction: wait behind it, as a lone hop would.
                queuedCount += 1
                let txid = shardSet.takeTxid()
                shard.enqueueSingle(locks: ShardLockSet(fingerprints: [fingerprint], mode: mode), txid: txid) { [self] shard in
                    operate(i, on: shard)
                    commandDone()
                }
            }
        }
        commandDone()
    }

    /// Starts the memory reads of every command's key lookup, one stage for
    /// the whole run at a time (``Database/prefetch(_:)``): the misses of a
    /// run's random keys overlap instead of coming one by one. (Keys of
    /// another database than the first command's, after a SELECT inside the
    /// run, are not helped.)
    private func lookAhead(on shard: Shard) {
        let count = entries.count
        let base = entries.base!
        let databaseIndex = base.pointee.step.database
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: count) { hashes in
            var n = 0
            for i in 0..<count where (base + i).pointee.step.database == databaseIndex {
                hashes[n] = (base + i).pointee.step.key.hash
                n += 1
            }
            shard.database(databaseIndex).prefetch(UnsafeBufferPointer(rebasing: hashes[0..<n]))
            lookedAhead = n
        }
    }

    /// Runs command `i` (shard code, which never reaches this object) and
    /// consumes its entry; its reply goes to answer `answer` (`i` but in a run in order).
    /// (Moved out: run in place through the pointer, the
    /// step and the operation were copied, +114 instructions per GET.)
    private func operate(_ i: Int, answer: Int? = nil, on shard: Shard) {
        let entry = (entries.base! + i).move()
        answers.base![answer ?? i].reply = entry.step.run(on: shard) { entry.operation.run(&$0) }
    }

    // MARK: - Runs in order over two shards

    /// Starts building a run in order on `loop` (the connection's): from now
    /// until ``endRunInOrder(from:)`` every command's shard work waits in the batch.
    public func beginRunInOrder(from loop: EventLoop) {
        isCollectingInOrder = true
        shard = nil
        localShard = nil
        spansMoreShards = false
        if origin !== loop {
            origin = loop
            stats = shardSet.stats[loop.index]
        }
        shardSet.collectors[loop.index].current = self
    }

    /// ``RunCollector``: work handed to `runSingleShard` while the run is built.
    public func collect<R>(shard shardIndex: Int, locks: ShardLockSet, _ operation: @escaping (Shard) -> R,
                           done: @escaping (R) -> Void) {
        works.append(Work(locks: locks) { shard in
            let result = operation(shard)
            return { done(result) }
        })
        places.append(Place(shard: shardIndex, item: -works.count))
        answers.append(Answer(sink: currentSink ?? KeyHopBatch.nowhere))
        let target = shardSet.shards[shardIndex]
        if target.loop === origin { localShard = target } else if shard == nil { shard = target }
    }

    /// The run is built: it leaves, as a plain batch when it holds the other
    /// shard's commands only, else as one transaction over its shards.
    public func endRunInOrder(from loop: EventLoop) {
        isCollectingInOrder = false
        currentSink = nil
        shardSet.collectors[loop.index].current = nil
        guard places.count > 0 else { return }
        if localShard == nil && works.isEmpty, let shard {
            // Entries for the other shard only: the plain batch, whose answers are in the same order.
            places.count = 0
            inFlight = true
            shard.loop.post(job: self, from: loop)
            return
        }
        inFlight = true
        stats!.squashTransactions.addOwned(1)
        // (Not with replicas: from then on transactions run in id order only, ``ShardSet/inOrderOnly``.)
        if works.isEmpty, !spansMoreShards, let local = localShard, let remote = shard, remote.loop !== loop,
           !shardSet.inOrderOnly.load(ordering: .relaxed) {
            // The common case, this loop's shard and one other loop's: the
            // keys are held here while the other part runs there, at once,
            // then this part runs; one round trip, no transaction object.
            // (The part there checks its keys one by one.)
            let here = localLocks(local.index)
            guard local.locksAreFree(here) else {
                // Busy here: each shard's part in turn, in the pipeline's order.
                return runSegments(from: 0)
            }
            held = local.hold(here, txid: shardSet.takeTxid())
            trip = .there
            remote.loop.post(job: self, from: loop)
            return
        }
        let locks = locks(of: 0..<places.count)
        if locks.count == 1 {
            return runSegments(from: 0)
        }
        // Any other mix of shards: one transaction over all of them.
        let transaction = Transaction(shardSet: shardSet, loop: loop, locksByShard: locks)
        transaction.label = "pipeline"
        transaction.onAbandon = { [self] in abandonInOrder() }
        // Scheduled and run in one round trip where it can (``Transaction/run(_:done:)``).
        transaction.run({ [self] shard in
            runPlaces(0..<places.count, on: shard)
            return 0
        }, done: { [self] _ in deliverInOrder() })
    }

    /// The locks of the run's entries on shard `index`: every key, exclusive
    /// where any of its commands writes (entries only: no collected work).
    private func localLocks(_ index: Int) -> ShardLockSet {
        var fingerprints: [LockFingerprint] = []
        fingerprints.reserveCapacity(places.count)
        var mode = LockMode.shared
        for p in 0..<places.count where places.base![p].shard == index {
            let entry = entries.base! + places.base![p].item
            fingerprints.append(entry.pointee.step.fingerprint)
            if entry.pointee.mode == .exclusive { mode = .exclusive }
        }
        return ShardLockSet(fingerprints: fingerprints, mode: mode)
    }

    /// The locks of places `range`, per shard in shard order: every key,
    /// exclusive where any of its commands there writes.
    private func locks(of range: Range<Int>) -> [(Int, ShardLockSet)] {
        // Two shards most often: a list, not a dictionary.
        var locks: [(Int, ShardLockSet)] = []
        locks.reserveCapacity(2)
        func lock(_ shardIndex: Int, _ fingerprint: LockFingerprint, _ mode: LockMode) {
            var k = 0
            while k < locks.count && locks[k].0 != shardIndex { k += 1 }
            if k == locks.count {
                locks.append((shardIndex, ShardLockSet(fingerprints: [], mode: .shared)))
                locks[k].1.fingerprints.reserveCapacity(range.count)
            }
            locks[k].1.fingerprints.append(fingerprint)
            if mode == .exclusive { locks[k].1.mode = .exclusive }
        }
        for p in range {
            let place = places.base![p]
            if place.item >= 0 {
                let entry = entries.base! + place.item
                lock(place.shard, entry.pointee.step.fingerprint, entry.pointee.mode)
            } else {
                let work = works[-1 - place.item]
                for fingerprint in work.locks.fingerprints { lock(place.shard, fingerprint, work.locks.mode) }
            }
        }
        if locks.count == 2 && locks[0].0 > locks[1].0 { locks.swapAt(0, 1) }
        if locks.count > 2 { locks.sort { $0.0 < $1.0 } }
        return locks
    }

    /// The run's trip when it runs in order over two loops: at home (building,
    /// or back with the plain batch's), on its way there, on its way back.
    enum Trip { case home, there, back }
    private var trip = Trip.home
    /// The keys held on this loop's shard while the other part runs.
    private var held: ShardTransaction?
    /// Whether the other part found its keys free and ran (set there).
    private var ranThere = false
    /// This loop's part ran under the held keys, and whether the origin waits for it.
    private var heldRan = false
    private var waitingForHeld = false

    /// On the other shard's loop: its part runs now if every key is free;
    /// else nothing runs (waiting there could close a cycle with a run the
    /// other way holding those keys), and the origin takes each shard's part in turn.
    private func runThere() {
        let shard = self.shard!
        let index = shard.index
        var free = true
        for p in 0..<places.count where places.base![p].shard == index {
            let item = places.base![p].item
            if item >= 0 {
                let entry = entries.base! + item
                free = shard.keyIsFree(entry.pointee.step.fingerprint, entry.pointee.mode)
            } else {
                free = shard.locksAreFree(works[-1 - item].locks)
            }
            if !free { break }
        }
        ranThere = free
        if free { runPlaces(0..<places.count, on: shard) }
        trip = .back
        shard.loop.postWhenDurable(job: self, to: origin!)
    }

    /// Back on the origin: this loop's part runs under the held keys, or,
    /// the other part refused, the keys go back and each part runs in turn.
    private func backHere() {
        trip = .home
        let local = localShard!
        let held = self.held!
        self.held = nil
        guard ranThere else {
            local.releaseHeld(held)
            return runSegments(from: 0)
        }
        heldRan = false
        waitingForHeld = false
        local.runHeld(held) { [self] shard in
            runPlaces(0..<places.count, on: shard)
            // Answered after the shard's bookkeeping (a reply may start the next run).
            if waitingForHeld { shard.loop.defer_ { [self] in deliverInOrder() } } else { heldRan = true }
        }
        if heldRan { deliverInOrder() } else { waitingForHeld = true }
    }

    /// The places from `start` on, one shard's consecutive places after the
    /// other's, each group a single-shard command of its own: the pipeline's
    /// order, a round trip per group on another loop.
    private func runSegments(from start: Int) {
        guard start < places.count else { return deliverInOrder() }
        let shardIndex = places.base![start].shard
        var end = start + 1
        while end < places.count && places.base![end].shard == shardIndex { end += 1 }
        let locks = locks(of: start..<end)[0].1
        shardSet.runSingleShard(from: origin!, shard: shardIndex, locks: locks, { [self] shard in
            runPlaces(start..<end, on: shard)
            return 0
        }, done: { [self] _ in runSegments(from: end) })
    }

    /// On `shard`'s thread: the run's commands in `range` for it, in order,
    /// each as a hop's would run (blocked clients served after each).
    private func runPlaces(_ range: Range<Int>, on shard: Shard) {
        let index = shard.index
        let base = places.base!
        if lookahead && range.count > 1, let first = entries.base {
            // The lookups' memory reads started together, as ``lookAhead(on:)`` does.
            let databaseIndex = first.pointee.step.database
            withUnsafeTemporaryAllocation(of: UInt64.self, capacity: range.count) { hashes in
                var n = 0
                for p in range where base[p].shard == index && base[p].item >= 0 {
                    let entry = UnsafePointer(first + base[p].item)
                    guard entry.pointee.step.database == databaseIndex else { continue }
                    hashes[n] = entry.pointee.step.key.hash
                    n += 1
                }
                if n > 1 { shard.database(databaseIndex).prefetch(UnsafeBufferPointer(rebasing: hashes[0..<n])) }
            }
        }
        for p in range where base[p].shard == index {
            let item = base[p].item
            if item >= 0 {
                operate(item, answer: p, on: shard)
            } else {
                let work = works[-1 - item]
                work.delivery = work.run(shard)
            }
            shard.afterOperation()
        }
    }

    /// On the origin, every shard's part done: each command answered in the
    /// pipeline's order. The batch is free for the next run first.
    private func deliverInOrder() {
        inFlight = false
        operations.reset()
        entries.count = 0
        let done = takeAnswers()
        var order = places
        places = sparePlaces ?? MovingBuffer()
        sparePlaces = nil
        let works = self.works
        self.works.removeAll(keepingCapacity: true)
        let arrived = Clock.monotonicNanos()
        for p in 0..<order.count {
            let item = order.base![p].item
            let answer = (done.base! + p).move()
            if item >= 0 {
                answer.sink.complete(answer.reply, arrivedAt: arrived)
            } else {
                works[-1 - item].delivery?()
            }
        }
        keepAsSpare(done)
        order.count = 0
        if sparePlaces == nil { sparePlaces = order } else { order.free() }
    }

    /// The watchdog abandoned the run's transaction before anything of it
    /// ran: every command is answered with the abandonment's error.
    private func abandonInOrder() {
        for p in 0..<places.count where places.base![p].item >= 0 {
            (entries.base! + places.base![p].item).deinitialize(count: 1)
        }
        for p in 0..<answers.count { answers.base![p].reply = .error(CommandCall.abandonedError) }
        works.removeAll(keepingCapacity: true)
        let done = takeAnswers()
        places.count = 0
        entries.count = 0
        operations.reset()
        inFlight = false
        for p in 0..<done.count {
            let answer = (done.base! + p).move()
            answer.sink.complete(answer.reply)
        }
        keepAsSpare(done)
    }

    /// The run's answers, taken for delivery; the batch answers into the
    /// spare buffer from now on (a reply may start the next run at once).
    private func takeAnswers() -> MovingBuffer<Answer> {
        let done = answers
        answers = spare ?? MovingBuffer()
        spare = nil
        return done
    }

    /// A delivered run's answer buffer (every answer moved out), kept as the
    /// spare unless the next run already took one.
    private func keepAsSpare(_ done: consuming MovingBuffer<Answer>) {
        done.count = 0
        if spare == nil { spare = done } else { done.free() }
    }

    /// Sends the batch back once every command has its reply.
    private func commandDone() {
        pending -= 1
        guard pending == 0 else { return }
        // Every entry was moved out by its operate: the buffer is empty.
        entries.count = 0
        returning = true
        shard!.loop.postWhenDurable(job: self, to: origin!)
    }

    /// On the origin: each reply to its sink, in order. The batch is free for
    /// the next run first: a reply may let the connection start one at once.
    private func deliver() {
        returning = false
        inFlight = false
        // Every operation ran and is gone: their memory serves the next run.
        operations.reset()
        let done = takeAnswers()
        let stats = self.stats!
        stats.hopBatches.addOwned(1)
        stats.batchedHops.addOwned(done.count)
        if lookedAhead > 0 {
            stats.prefetchedKeys.addOwned(lookedAhead)
            lookedAhead = 0
        }
        // Counted here, on the origin, as a lone hop's trip is: quick, or
        // normal for those that waited in the shard's queue.
        stats.countSingleShards(done.count, queued: queuedCount)
        queuedCount = 0
        // The replies arrived together: one clock reading times them all.
        let arrived = Clock.monotonicNanos()
        for i in 0..<done.count {
            let answer = (done.base! + i).move()
            answer.sink.complete(answer.reply, arrivedAt: arrived)
        }
        keepAsSpare(done)
    }
}

/// Where a reply with no command behind it goes (see ``KeyHopBatch/currentSink``).
/// It has no state, so it is `Sendable`.
private final class DiscardingSink: ReplySink, Sendable {
    func complete(_ reply: Reply) {}
}

/// ``KeyHopBatch``'s entries and answers: a buffer allocated at the first
/// append (4 elements), grown by doubling and never shrunk. Its owner moves
/// the elements out (or frees it) before it goes.
struct MovingBuffer<Element: ~Copyable> {
    private(set) var base: UnsafeMutablePointer<Element>?
    var count = 0
    private var capacity = 0

    @inline(__always)
    mutating func append(_ element: consuming Element) {
        if count == capacity { grow() }
        (base! + count).initialize(to: element)
        count += 1
    }

    private mutating func grow() {
        let grown = UnsafeMutablePointer<Element>.allocate(capacity: max(4, 2 * capacity))
        if let base {
            grown.moveInitialize(from: base, count: count)
            base.deallocate()
        }
        base = grown
        capacity = max(4, 2 * capacity)
    }

    func free() {
        guard let base else { return }
        base.deinitialize(count: count)
        base.deallocate()
    }
}

/// An operation too big for an existential's inline buffer, kept in a
/// ``KeyHopBatch``'s ``OperationArena``: runs it once, on the shard's thread,
/// and deinitializes it there (the arena's memory is reused when the batch is back).
struct StoredOperation<Operation: KeyOperation>: KeyOperation {
    let pointer: UnsafeMutablePointer<Operation>

    func run(_ context: inout ShardContext) -> Reply {
        defer { pointer.deinitialize(count: 1) }
        return pointer.pointee.run(&context)
    }
}

/// ``KeyHopBatch``'s operations, each stored in place in chunks of raw
/// memory (1 KiB, or one operation's size if larger), allocated at the first
/// use and kept from run to run; never moved once stored. Its owner
/// deinitializes every operation before ``reset()`` or ``free()``.
struct OperationArena {
    /// The first free byte of the chunk being filled, and its end (0: none yet).
    private var cursor = 0
    private var end = 0
    /// Every chunk (start, end), in the order they are filled.
    private var chunks: [(Int, Int)] = []
    private var current = -1

    @inline(__always)
    mutating func store<Operation: KeyOperation>(_ operation: consuming Operation) -> UnsafeMutablePointer<Operation> {
        let alignment = max(MemoryLayout<Operation>.alignment, 8)
        let start = (cursor + alignment - 1) & ~(alignment - 1)
        let size = max(MemoryLayout<Operation>.size, 1)
        let at = cursor != 0 && start + size <= end ? start : nextChunk(size)
        cursor = at + size
        return UnsafeMutableRawPointer(bitPattern: at)!.initializeMemory(as: Operation.self, to: operation)
    }

    /// The next chunk with room for `size` bytes (chunks are 16-aligned):
    /// its start, which becomes the current one.
    private mutating func nextChunk(_ size: Int) -> Int {
        current += 1
        while current < chunks.count && chunks[current].1 - chunks[current].0 < size { current += 1 }
        if current == chunks.count {
            let capacity = max(1024, size)
            let start = Int(bitPattern: UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16))
            chunks.append((start, start + capacity))
        }
        end = chunks[current].1
        return chunks[current].0
    }

    /// Back to the first chunk (every operation stored was deinitialized).
    mutating func reset() {
        current = -1
        cursor = 0
        end = 0
    }

    func free() {
        for (start, _) in chunks { UnsafeMutableRawPointer(bitPattern: start)!.deallocate() }
    }
}
