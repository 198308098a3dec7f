import CDamselfly
import Glibc
import Synchronization

/// One proactor thread: an I/O loop (io_uring, or epoll as the fallback), an
/// inbox of tasks from other threads, and periodic timers.
///
/// Everything a loop owns — its sockets, its shard's keyspace, its
/// connections — is touched only on its own thread. Other threads reach it
/// only through ``post(_:)``, which enqueues into a bounded lock-free queue and
/// wakes the loop through its eventfd only when the loop is asleep.
public final class EventLoop: @unchecked Sendable {
    // Invariant behind @unchecked Sendable: every stored property except
    // `inbox`, `sleeping` and `wakeFD` is read and written on the loop's own
    // thread only (checked by `assertOnLoop()` in debug builds); those three
    // are thread-safe by construction.

    /// The loop's index among all loops; loop i owns shard i when i < shard count.
    public let index: Int
    public let inbox: MPSCQueue<InboxTask>
    let sleeping = Atomic<Bool>(false)
    let wakeFD: Int32
    /// Whether this loop runs on io_uring (decided by the server's probe, and
    /// confirmed when the ring is created on the loop's thread).
    public private(set) var usesIOUring: Bool
    @usableFromInline var driver: IODriver!
    var threadID: Int32 = 0
    var timers: [PeriodicTimer] = []
    /// The earliest `nextFire` among `timers` (`.max`: none): an iteration looks
    /// at the timers only once one is due. Scanned every iteration, the ten or so
    /// a server sets cost some 100 instructions per request at P1.
    var nextTimerFire: UInt64 = .max
    let stopRequested = Atomic<Bool>(false)
    /// Set once ``run()`` has returned: nothing drains the inbox any more, so
    /// a sender that finds it full drops its task instead of waiting forever
    /// (a loop stopped first at shutdown while another still answers it).
    let exited = Atomic<Bool>(false)
    var deferred: [() -> Void] = []
    let readyFlag = Atomic<Bool>(false)
    /// When this loop last did any work (monotonic ns).
    var lastWorkNanos: UInt64 = 0
    /// How long a loop keeps polling after its last work before it sleeps
    /// (`--poll_before_sleep_us`); set once at start-up, before loops run.
    nonisolated(unsafe) public static var spinNanos: UInt64 = 0

    /// Whether the loop has created its driver and is running.
    public var isReady: Bool { readyFlag.load(ordering: .acquiring) }

    /// Counts for INFO and tests.
    public let wakeupsSent = Atomic<Int>(0)

    struct PeriodicTimer {
        var intervalNanos: UInt64
        var nextFire: UInt64
        var callback: () -> Void
    }

    /// Creates the loop's resources. Call ``run()`` on the thread that will own
    /// it: io_uring with SINGLE_ISSUER must be created and used by one thread,
    /// so the ring itself is created lazily in `run()`.
    public init(index: Int, preferIOUring: Bool, inboxCapacity: Int = 65536) {
        self.index = index
        self.inbox = MPSCQueue(capacity: inboxCapacity)
        self.wakeFD = dfly_eventfd()
        self.usesIOUring = preferIOUring
    }

    /// Creates the driver on the calling (the loop's) thread.
    private func makeDriver() {
        if usesIOUring, let uring = UringDriver.make(wakeFD: wakeFD) {
            driver = .uring(uring)
        } else {
            usesIOUring = false
            driver = .epoll(EpollDriver(wakeFD: wakeFD))
        }
    }

    /// Probes whether io_uring with the features we rely on can be set up here.
    public static func ioUringAvailable() -> Bool {
        guard let probe = UringDriver.make(wakeFD: -1) else { return false }
        probe.shutdown()
        return true
    }

    // MARK: - Cross-thread tasks

    /// Runs `task` on this loop's thread, soon. Safe from any thread.
    ///
    /// The wake-up (an eventfd write) is skipped while the loop is awake: the
    /// loop always drains its inbox before it sleeps and re-checks it after
    /// announcing it will sleep, so no task is left behind.
    public func post(_ task: @escaping () -> Void) {
        post(InboxTask(.closure(task)))
    }

    /// ``post(_:)`` for work that is an object of its own (``InboxJob``): the
    /// object itself travels, so a caller that keeps everything a trip needs
    /// in it (a hop there and back) allocates nothing more for the trip.
    @inlinable
    public func post(job: InboxJob) {
        post(InboxTask(.job(job)))
    }

    @usableFromInline
    func post(_ task: consuming InboxTask) {
        if let current = EventLoop.current { return post(task, from: current) }
        push(task)
    }

    /// ``post(job:)`` from `current`, the calling thread's own loop, which
    /// the caller knows: no thread-local lookup (some fifty instructions, on
    /// each of a hop's two trips). Call on `current`'s thread only.
    @inlinable
    public func post(job: InboxJob, from current: EventLoop) {
        post(InboxTask(.job(job)), from: current)
    }

    @usableFromInline
    func post(_ task: consuming InboxTask, from current: EventLoop) {
        assert(current.inLoopThread, "posting from a loop that is not this thread's")
        if current.postBatchDepth > 0, current !== self { return current.hold(task, for: self) }
        push(task)
    }

    /// The inbox push and wake-up behind ``post(_:)``.
    private func push(_ task: InboxTask) {
        while !inbox.tryPush(task) {
            if exited.load(ordering: .acquiring) { return }
            helpWhileFull()
        }
        wakeIfSleeping()
    }

    /// ``push(_:)`` for a run of `count` consecutive tasks a batch held for
    /// this loop (the first `count` live tasks of `outbox`): moved in with one
    /// compare-and-swap when there is room for all of them, else as room
    /// appears, in order. The wake-up is the sender's, once its whole batch
    /// is in (``sendOutbox()``). Tasks held while this waits for room (the
    /// sender runs some of its own inbox meanwhile) go after the run.
    private func push(run count: Int, from outbox: HeldTasks) {
        var left = count
        while left > 0 {
            // Re-read each time: helping may have grown (moved) the buffer.
            let run = min(left, 1024)
            if inbox.tryPush(movingFrom: outbox.tasks + outbox.start, count: run) {
                outbox.start += run
                left -= run
            } else if inbox.tryPush(movingFrom: outbox.tasks + outbox.start, count: 1) {
                // Too little room for the run: one at a time, in order.
                outbox.start += 1
                left -= 1
            } else if exited.load(ordering: .acquiring) {
                // Full for good: the loop has stopped (see `exited`).
                outbox.drop(left)
                left = 0
            } else {
                // Full: this loop may be asleep with what was pushed so far
                // unseen; wake it before waiting for it to make room.
                wakeIfSleeping()
                helpWhileFull()
            }
        }
    }

    /// The inbox is full: help our own loop make progress so that a loop
    /// posting to us is not blocked forever behind us, then retry.
    private func helpWhileFull() {
        if let current = EventLoop.current, current !== self {
            current.drainInbox(limit: 64)
        } else {
            sched_yield()
        }
    }

    @inline(__always)
    private func wakeIfSleeping() {
        if sleeping.load(ordering: .acquiring) {
            if sleeping.exchange(false, ordering: .acquiringAndReleasing) {
                _ = dfly_eventfd_signal(wakeFD)
                wakeupsSent.add(1, ordering: .relaxed)
            }
        }
    }

    // MARK: - One message per destination

    /// Above zero while this loop batches what it posts to other loops (see
    /// ``beginPostBatch()``); touched on this loop's thread only.
    private var postBatchDepth = 0
    /// What the batch holds for other loops, in the order posted.
    private let outbox = HeldTasks()
    /// The loops ``sendOutbox()`` pushed to and wakes once its pushes are done.
    private var toWake: [Unmanaged<EventLoop>] = []

    /// From now until the matching ``endPostBatch()``, tasks this thread posts
    /// to other loops are held and then sent together: at most one wake-up
    /// per destination, and one compare-and-swap for each run of tasks posted
    /// in a row to one destination. They go into the inboxes **in the order
    /// they were posted**, across destinations too: a task that tells loop C
    /// something is done is never in C's inbox before a task posted earlier
    /// to loop Y is in Y's, so what C then sends Y comes after it (a BLMOVE
    /// that pushes to Y's shard and answers a client on C, whose next command
    /// goes to Y, relies on it). Call on this loop's thread, and only around
    /// work that never waits for another loop's answer: the tasks leave at
    /// ``endPostBatch()``, not before. Nests. Every iteration of ``run()`` is
    /// one batch; a squashed pipeline run is another inside it.
    @inline(__always)
    public func beginPostBatch() {
        postBatchDepth += 1
    }

    /// Ends a batch begun by ``beginPostBatch()``; the outermost end sends what was held.
    @inline(__always)
    public func endPostBatch() {
        postBatchDepth -= 1
        if postBatchDepth == 0 && outbox.count > 0 { sendOutbox() }
    }

    /// Whether a post batch is open on this loop (call on its thread): what
    /// is posted to other loops now is held until the batch ends.
    @inline(__always)
    public var isBatchingPosts: Bool { postBatchDepth > 0 }

    /// Whether `job` is the last task the open batch holds, posted and not
    /// yet sent (call on this loop's thread): its poster may still add work
    /// to it, which then keeps its place among the batch's posts, the object
    /// still being this thread's alone (a squashed run's hop batch relies on it).
    @inline(__always)
    public func holdsLast(_ job: InboxJob) -> Bool {
        postBatchDepth > 0 && outbox.lastIs(job)
    }

    /// Sends what the current batch holds now, leaving the batch open: before
    /// work that may keep this thread from ending its batch for long (a busy
    /// script serving clients from its hook), so replies already made leave.
    public func flushPostBatch() {
        if outbox.count > 0 { sendOutbox() }
    }

    @inline(__always)
    private func hold(_ task: consuming InboxTask, for destination: EventLoop) {
        outbox.append(task, to: destination)
    }

    private func sendOutbox() {
        // Tasks run on this thread while a destination's inbox is full may
        // post again: they are held (the depth stays above zero), after what
        // is being sent, and go in this same send, so nothing overtakes.
        postBatchDepth += 1
        defer { postBatchDepth -= 1 }
        while outbox.start < outbox.count {
            let destination = outbox.destination(at: outbox.start)
            var end = outbox.start + 1
            while end < outbox.count && outbox.destination(at: end).toOpaque() == destination.toOpaque() { end += 1 }
            let loop = destination.takeUnretainedValue()
            loop.push(run: end - outbox.start, from: outbox)
            if !toWake.contains(where: { $0.toOpaque() == destination.toOpaque() }) { toWake.append(destination) }
        }
        outbox.start = 0
        outbox.count = 0
        for loop in toWake { loop.takeUnretainedValue().wakeIfSleeping() }
        toWake.removeAll(keepingCapacity: true)
    }

    /// With `appendfsync always`: makes this loop's journal durable (one
    /// fsync for everything the iteration journaled). Nil otherwise.
    public var syncHook: (() -> Void)? {
        didSet { hasSyncHook = syncHook != nil }
    }
    /// Whether ``syncHook`` is set: tested on every reply and every hop, a
    /// plain load, where the optional closure's test counted its context up and down.
    public private(set) var hasSyncHook = false
    @usableFromInline var durableActions: [() -> Void] = []

    /// Runs `action` once what this loop journaled so far is on disk: at the
    /// end of the current iteration, after a single fsync (group commit).
    /// Without a sync hook it runs at once.
    @inline(__always)
    public func whenDurable(_ action: @escaping () -> Void) {
        if !hasSyncHook { return action() }
        durableActions.append(action)
    }

    /// Posts `job` to `destination` once what this loop journaled so far is
    /// durable (``whenDurable(_:)``): at once, and with no closure made, without
    /// a sync hook. A hop's way back from the shard's loop.
    @inlinable
    public func postWhenDurable(job: InboxJob, to destination: EventLoop) {
        // On this loop's thread: now, or from runDurable(), here too.
        if !hasSyncHook { return destination.post(job: job, from: self) }
        durableActions.append { destination.post(job: job, from: self) }
    }

    @inline(__always)
    private func runDurable() -> Int {
        guard !durableActions.isEmpty else { return 0 }
        return runDurableActions()
    }

    private func runDurableActions() -> Int {
        syncHook?()
        var ran = 0
        while !durableActions.isEmpty {
            let actions = durableActions
            durableActions.removeAll(keepingCapacity: true)
            for action in actions { action() }
            ran += actions.count
        }
        return ran
    }

    /// Runs `task` after the current batch of I/O and inbox work, on this thread.
    public func defer_(_ task: @escaping () -> Void) {
        deferred.append(task)
    }

    @discardableResult
    func drainInbox(limit: Int = .max) -> Int {
        var ran = 0
        while ran < limit, let task = inbox.pop() {
            task.run()
            ran += 1
        }
        return ran
    }

    // MARK: - Serving clients while a script is busy

    /// True while ``serveClientsWhileBusy()`` runs: the loop is inside a
    /// script that has run past the busy threshold, and its sockets are being
    /// served from the script's hook. A handler then must answer without
    /// touching this thread's shards or its script interpreters (BUSY, or one
    /// of the few commands Redis allows while busy).
    public private(set) var isServingWhileBusy = false

    /// Polls this loop's sockets once without blocking, from inside a long
    /// script on this thread (Redis's `processEventsWhileBlocked`): accepts,
    /// receives and sends run, and handlers see ``isServingWhileBusy``.
    ///
    /// The inbox, deferred tasks, durable actions and timers are left alone:
    /// they may carry work for this loop's shards, which the script holds;
    /// they run once the script has ended and the loop goes round again.
    /// Not re-entrant: a nested call returns at once.
    public func serveClientsWhileBusy() {
        assertOnLoop()
        guard !isServingWhileBusy, driver != nil else { return }
        // The script may run on for long: what this iteration already made
        // for other loops (replies to their hops) goes now.
        flushPostBatch()
        isServingWhileBusy = true
        defer { isServingWhileBusy = false }
        switch driver! {
        case .uring(let d): _ = d.pollWhileBusy(loop: self)
        case .epoll(let d): _ = d.pollWhileBusy(loop: self)
        }
    }

    // MARK: - The loop

    /// The loop running on the calling thread, if any.
    public static var current: EventLoop? {
        currentLoopKey.get()
    }

    /// Adds a timer that fires every `intervalMillis` on this loop's thread.
    public func addPeriodicTimer(intervalMillis: Int, _ callback: @escaping () -> Void) {
        let interval = UInt64(max(1, intervalMillis)) * 1_000_000
        let nextFire = Clock.monotonicNanos() + interval
        timers.append(PeriodicTimer(intervalNanos: interval, nextFire: nextFire, callback: callback))
        nextTimerFire = min(nextTimerFire, nextFire)
    }

    /// Lets the io_uring driver drop the resident pages of its receive pool
    /// once nothing is waiting in it (see ``MemoryTrim``); nothing under epoll,
    /// whose one scratch buffer is small. On the loop's thread.
    public func releaseIdlePages() {
        assertOnLoop()
        guard let driver, case .uring(let d) = driver else { return }
        d.requestPoolRelease()
    }

    /// Asks the loop to return from ``run()``.
    ///
    /// No task is posted for it: the inbox may be full, and a full inbox of a
    /// loop that is stopping must not keep the caller waiting. The loop
    /// re-checks the flag after announcing it will sleep, so the flag and a
    /// wake-up of a sleeping loop are enough.
    public func stop() {
        stopRequested.store(true, ordering: .sequentiallyConsistent)
        wakeIfSleeping()
    }

    /// Runs the loop on the calling thread until ``stop()``.
    public func run() {
        threadID = dfly_gettid()
        currentLoopKey.set(self)
        makeDriver()
        readyFlag.store(true, ordering: .releasing)
        // A local copy: polling through the stored optional copied the enum,
        // a retain and a release of the driver, on every iteration.
        let driver = self.driver!
        while !stopRequested.load(ordering: .acquiring) {
            // One message per destination loop per iteration: what the I/O,
            // the inbox and the deferred work post to another loop is held
            // and moved into that loop's inbox as one run of slots (one
            // compare-and-swap, at most one wake-up) when the iteration's work is done. Nothing on a loop's thread
            // waits for another loop's answer, so holding delays, never blocks.
            beginPostBatch()
            var worked = driver.poll(loop: self, block: false, timeoutNanos: 0)
            worked += drainInbox(limit: 4096)
            worked += runDeferred()
            worked += runDurable()
            endPostBatch()
            let now = Clock.monotonicNanos()
            if now >= nextTimerFire {
                for i in timers.indices where timers[i].nextFire <= now {
                    timers[i].callback()
                    timers[i].nextFire = now + timers[i].intervalNanos
                    worked += 1
                }
                // Over every timer, those a callback added included.
                nextTimerFire = timers.reduce(UInt64.max) { min($0, $1.nextFire) }
            }
            let nextTimer = min(now + 100_000_000, nextTimerFire)
            if worked > 0 {
                lastWorkNanos = now
                continue
            }
            // Stay awake a few microseconds after the last work: a reply from
            // another shard usually follows a hop within that time, and
            // catching it without a sleep and an eventfd wake-up saves two
            // context switches per hop on pipelined cross-shard traffic.
            if EventLoop.spinNanos > 0 && now &- lastWorkNanos < EventLoop.spinNanos {
                // Poll only the inbox (no system call) until a message comes
                // or the window closes, then go round again.
                while inbox.isEmpty && Clock.monotonicNanos() &- lastWorkNanos < EventLoop.spinNanos {}
                lastWorkNanos = inbox.isEmpty ? 0 : Clock.monotonicNanos()
                continue
            }
            // About to sleep: announce it, then re-check the inbox so a task
            // posted just before the announcement is not missed.
            sleeping.store(true, ordering: .sequentiallyConsistent)
            if !inbox.isEmpty || stopRequested.load(ordering: .sequentiallyConsistent) {
                sleeping.store(false, ordering: .relaxed)
                continue
            }
            let wait = nextTimer > now ? nextTimer - now : 0
            // The batch opens after the batch above was sent: nothing is held while asleep.
            beginPostBatch()
            _ = driver.poll(loop: self, block: true, timeoutNanos: wait)
            endPostBatch()
            sleeping.store(false, ordering: .relaxed)
        }
        // Give every remaining task a chance, then release the ring.
        drainInbox()
        _ = runDeferred()
        exited.store(true, ordering: .releasing)
        driver.closeAll(loop: self)
    }

    @inline(__always)
    private func runDeferred() -> Int {
        guard !deferred.isEmpty else { return 0 }
        return runDeferredTasks()
    }

    private func runDeferredTasks() -> Int {
        let tasks = deferred
        deferred.removeAll(keepingCapacity: true)
        for task in tasks { task() }
        return tasks.count
    }

    /// Whether the calling thread is this loop's thread.
    public var inLoopThread: Bool { EventLoop.current === self }

    @inlinable
    func assertOnLoop() {
        assert(EventLoop.current === self, "touched off its event loop")
    }

    // MARK: - Sockets

    /// Starts accepting on the listening socket `fd` (a loop may have several:
    /// the client port and `--admin_port`); `onAccept` runs on this loop for every new fd.
    public func listen(fd: Int32, onAccept: @escaping (Int32) -> Void) {
        driver.listen(loop: self, fd: fd, onAccept: onAccept)
    }

    /// Registers a connected socket and starts receiving into `handler`.
    public func register(fd: Int32, handler: SocketHandler) -> SocketID {
        driver.register(loop: self, fd: fd, handler: handler)
    }

    /// Queues `bytes` for sending. The array is taken (swapped out) when
    /// nothing else is queued, so the caller gets an empty buffer back to reuse
    /// with its capacity: replies go out in one send per batch without a copy.
    @inlinable
    public func write(_ socket: SocketID, _ bytes: inout [UInt8]) {
        driver.write(loop: self, socket: socket, bytes: &bytes)
    }

    /// Bytes written to `socket` that the peer has not taken yet (0 once closed).
    public func queuedBytes(_ socket: SocketID) -> Int {
        switch driver! {
        case .uring(let d): return d.queuedBytes(socket: socket)
        case .epoll(let d): return d.queuedBytes(socket: socket)
        }
    }

    /// Whether the peer has closed `socket` while this loop has not heard of
    /// it yet: one `recv(MSG_PEEK)`. The multishot receive of io_uring can
    /// miss an end of file that races with the data before it (a kernel race,
    /// liburing issue #1549); a client parked on a blocking command would
    /// then wait for ever, and could be served a job no one reads.
    public func peerHasClosed(_ socket: SocketID) -> Bool {
        switch driver! {
        case .uring(let d): return d.peerHasClosed(socket: socket)
        case .epoll(let d): return d.peerHasClosed(socket: socket)
        }
    }

    /// Closes the socket once what was written so far is sent.
    public func close(_ socket: SocketID) {
        driver.close(loop: self, socket: socket)
    }

    /// Stops serving the socket on this loop without closing it: once the
    /// receive in flight is cancelled and queued bytes are sent, `done` gets
    /// the fd (on this loop) to hand to another loop. Bytes that arrive
    /// meanwhile still go to the handler. Returns false when it cannot detach now.
    public func detach(_ socket: SocketID, done: @escaping (Int32) -> Void) -> Bool {
        driver.detach(loop: self, socket: socket, done: done)
    }

    /// Stops accepting new connections.
    public func stopListening() {
        driver.stopListening(loop: self)
    }
}

/// One task in a loop's inbox.
///
/// A wrapper, not the bare closure: the queue is generic, and a closure
/// stored as a generic `Element` is re-abstracted, which allocates a thunk
/// context per push (and calls through it per pop). A struct whose field is
/// the closure keeps the closure as it is: one allocation per cross-thread
/// task fewer.
public struct InboxTask {
    @usableFromInline
    enum Work {
        case closure(() -> Void)
        case job(InboxJob)
    }
    @usableFromInline let work: Work

    @inlinable
    init(_ work: Work) { self.work = work }

    @inline(__always)
    func run() {
        switch work {
        case .closure(let body): body()
        case .job(let job): job.run()
        }
    }
}

/// The tasks a post batch holds, in the order posted, each with its
/// destination loop: a plain buffer whose tasks are moved, not copied, into
/// the destinations' inboxes (no reference counted up here and down again on
/// the other thread), a run of consecutive tasks for one loop at a time, and
/// which keeps its capacity from batch to batch. Used on its loop's thread only.
final class HeldTasks {
    /// Live tasks are `tasks[start..<count]`; those before `start` were moved out.
    private(set) var tasks: UnsafeMutablePointer<InboxTask>
    /// `destinations[i]` is where `tasks[i]` goes. Unretained: loops outlive
    /// the batches their threads make.
    private var destinations: UnsafeMutablePointer<Unmanaged<EventLoop>>
    var start = 0
    var count = 0
    private var capacity = 16

    init() {
        tasks = .allocate(capacity: capacity)
        destinations = .allocate(capacity: capacity)
    }

    deinit {
        (tasks + start).deinitialize(count: count - start)
        tasks.deallocate()
        destinations.deallocate()
    }

    @inline(__always)
    func append(_ task: consuming InboxTask, to loop: EventLoop) {
        if count == capacity { grow() }
        (tasks + count).initialize(to: task)
        destinations[count] = Unmanaged.passUnretained(loop)
        count += 1
    }

    @inline(__always)
    func destination(at i: Int) -> Unmanaged<EventLoop> { destinations[i] }

    /// Whether the last live task is `job`.
    @inline(__always)
    func lastIs(_ job: InboxJob) -> Bool {
        guard count > start, case .job(let last) = tasks[count - 1].work else { return false }
        return last === job
    }

    /// Drops the next `n` live tasks (their destination will never run them).
    func drop(_ n: Int) {
        (tasks + start).deinitialize(count: n)
        start += n
    }

    private func grow() {
        let live = count - start
        capacity = max(capacity, 2 * live)
        let grown = UnsafeMutablePointer<InboxTask>.allocate(capacity: capacity)
        grown.moveInitialize(from: tasks + start, count: live)
        tasks.deallocate()
        tasks = grown
        let grownDestinations = UnsafeMutablePointer<Unmanaged<EventLoop>>.allocate(capacity: capacity)
        grownDestinations.initialize(from: destinations + start, count: live)
        destinations.deallocate()
        destinations = grownDestinations
        start = 0
        count = live
    }
}

/// Work that travels to a loop as an object of its own (``EventLoop/post(job:)``).
///
/// The object is the inbox entry: a one-key command's hop keeps its operation,
/// its result and where the result goes in one such object, posted to the
/// shard's loop and posted back, instead of a closure for each leg. A class,
/// not a protocol: the entry stays one reference, called through the vtable.
open class InboxJob {
    public init() {}

    /// Runs on the loop the job was posted to.
    open func run() {}
}

/// The per-thread "current loop" pointer, kept in pthread TLS (no Swift
/// concurrency, no locks).
let currentLoopKey = ThreadLocalLoop()

final class ThreadLocalLoop: @unchecked Sendable {
    // Invariant: pthread keys are thread-safe; each thread sees its own value.
    private var key = pthread_key_t()
    init() { pthread_key_create(&key, nil) }
    func get() -> EventLoop? {
        guard let raw = pthread_getspecific(key) else { return nil }
        return Unmanaged<EventLoop>.fromOpaque(raw).takeUnretainedValue()
    }
    func set(_ loop: EventLoop) {
        pthread_setspecific(key, Unmanaged.passUnretained(loop).toOpaque())
    }
}

/// The two I/O drivers behind one switch, so the loop calls them directly
/// (no existential on the per-event path).
@usableFromInline
enum IODriver {
    case uring(UringDriver)
    case epoll(EpollDriver)

    func poll(loop: EventLoop, block: Bool, timeoutNanos: UInt64) -> Int {
        switch self {
        case .uring(let d): return d.poll(loop: loop, block: block, timeoutNanos: timeoutNanos)
        case .epoll(let d): return d.poll(loop: loop, block: block, timeoutNanos: timeoutNanos)
        }
    }
    func listen(loop: EventLoop, fd: Int32, onAccept: @escaping (Int32) -> Void) {
        switch self {
        case .uring(let d): d.listen(fd: fd, onAccept: onAccept)
        case .epoll(let d): d.listen(fd: fd, onAccept: onAccept)
        }
    }
    func stopListening(loop: EventLoop) {
        switch self {
        case .uring(let d): d.stopListening()
        case .epoll(let d): d.stopListening()
        }
    }
    func register(loop: EventLoop, fd: Int32, handler: SocketHandler) -> SocketID {
        switch self {
        case .uring(let d): return d.register(fd: fd, handler: handler)
        case .epoll(let d): return d.register(fd: fd, handler: handler)
        }
    }
    @usableFromInline
    func write(loop: EventLoop, socket: SocketID, bytes: inout [UInt8]) {
        switch self {
        case .uring(let d): d.write(socket: socket, bytes: &bytes)
        case .epoll(let d): d.write(socket: socket, bytes: &bytes)
        }
    }
    func detach(loop: EventLoop, socket: SocketID, done: @escaping (Int32) -> Void) -> Bool {
        switch self {
        case .uring(let d): return d.detach(socket: socket, done: done)
        case .epoll(let d): return d.detach(socket: socket, done: done)
        }
    }
    func close(loop: EventLoop, socket: SocketID) {
        switch self {
        case .uring(let d): d.close(socket: socket)
        case .epoll(let d): d.close(socket: socket)
        }
    }
    func closeAll(loop: EventLoop) {
        switch self {
        case .uring(let d): d.closeAll(); d.shutdown()
        case .epoll(let d): d.closeAll()
        }
    }
}

/// A slab of socket states addressed by ``SocketID``; shared by both drivers.
@usableFromInline
struct SocketTable {
    var states: [SocketState] = []
    var free: [Int32] = []

    mutating func add(fd: Int32, handler: SocketHandler) -> SocketID {
        let slot: Int32
        if let reused = free.popLast() {
            slot = reused
            let s = states[Int(slot)]
            s.generation &+= 1
            s.fd = fd
            s.handler = handler
            s.pending.removeAll(keepingCapacity: false)
            s.inflight.removeAll(keepingCapacity: false)
            s.inflightOffset = 0
            s.sending = false
            s.closeRequested = false
            s.receiving = false
            s.dead = false
            s.onDetached = nil
            s.inUse = true
        } else {
            slot = Int32(states.count)
            let s = SocketState(fd: fd, generation: 1)
            s.handler = handler
            s.inUse = true
            states.append(s)
        }
        return SocketID(slot: slot, generation: states[Int(slot)].generation)
    }

    @inline(__always)
    func lookup(_ id: SocketID) -> SocketState? {
        guard id.slot >= 0, Int(id.slot) < states.count else { return nil }
        let s = states[Int(id.slot)]
        guard s.inUse, s.generation == id.generation, !s.dead else { return nil }
        return s
    }

    mutating func release(slot: Int32) {
        let s = states[Int(slot)]
        s.inUse = false
        s.handler = nil
        // A detach left behind on a released slot would hand the next
        // socket in this slot to the old connection's migration.
        s.onDetached = nil
        s.pending = []
        s.inflight = []
        free.append(slot)
    }
}
