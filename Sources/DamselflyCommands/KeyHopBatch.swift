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
public final class KeyHopBatch: InboxJob, @unchecked Sendable {
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
    /// consumes its entry. (Moved out: run in place through the pointer, the
    /// step and the operation were copied, +114 instructions per GET.)
    private func operate(_ i: Int, on shard: Shard) {
        let entry = (entries.base! + i).move()
        answers.base![i].reply = entry.step.run(on: shard) { entry.operation.run(&$0) }
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
        var done = answers
        answers = spare ?? MovingBuffer()
        spare = nil
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
        done.count = 0
        if spare == nil { spare = done } else { done.free() }
    }
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
