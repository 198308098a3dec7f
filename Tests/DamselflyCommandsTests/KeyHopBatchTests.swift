import DamselflyRESP
import DamselflyRuntime
import DamselflyStorage
@testable import DamselflyTransactions
import Glibc
import Synchronization
import Testing
@testable import DamselflyCommands

/// ``KeyHopBatch``: the hops of a squashed pipeline run to one shard of
/// another loop travel as one message there and one back, and each command
/// still runs, is answered and is counted as its own hop would have been.
@Suite(.serialized) struct KeyHopBatchTests {
    /// The replies of a run, in the order they came: (command index, reply).
    /// Written on the origin loop only; published by `count` (a release
    /// store, an acquire load: ThreadSanitizer sees these, where it does not
    /// see `Synchronization.Mutex`'s futex path).
    final class Log: @unchecked Sendable {
        // Invariant behind @unchecked Sendable: one writer thread; the test
        // reads `list` only once `count` has reached what it waits for, after
        // which nothing more is written.
        private var list: [(Int, Reply)] = []
        private let published = Atomic<Int>(0)

        func append(_ entry: (Int, Reply)) {
            list.append(entry)
            published.store(list.count, ordering: .releasing)
        }

        var count: Int { published.load(ordering: .acquiring) }

        /// Everything written, once `count` has been seen at its final value.
        var entries: [(Int, Reply)] { list }
    }

    /// A run's sink as the connection's squash slots are: one reply each, in a
    /// shared log, and the run's batch. It owns its command's argument bytes
    /// and frees them when it goes, after its reply: as the connection keeps
    /// its receive buffer in place while a run is out (a batched key is read
    /// there in place, ``ReplySink/hopBatch``).
    final class RunSink: ReplySink, @unchecked Sendable {
        // Invariant: immutable; `complete` runs on the origin loop and writes the log (see Log).
        let index: Int
        let batch: KeyHopBatch?
        let log: Log
        let bytes: UnsafeMutableRawPointer

        init(index: Int, batch: KeyHopBatch?, log: Log, bytes: UnsafeMutableRawPointer) {
            self.index = index
            self.batch = batch
            self.log = log
            self.bytes = bytes
        }

        deinit { bytes.deallocate() }

        var hopBatch: KeyHopBatch? { batch }

        func complete(_ reply: Reply) { log.append((index, reply)) }
    }

    /// Dispatches `commands` on loop 0 in one task (one post batch, as a
    /// squashed run is), each with its own sink: sink `i` has the batch when
    /// `batched[i]`. `inOrder`: as one run in order over two shards (the
    /// connection's calls around such a run's handlers). Returns the log the replies land in.
    func runOnLoop0(_ h: CommandHarness, _ commands: [[String]], batched: [Bool], batch: KeyHopBatch,
                    inOrder: Bool = false) -> Log {
        let log = Log()
        let done = Atomic<Bool>(false)
        let engine = h.engine
        let client = h.clients[0]
        let loop = h.loops[0]
        nonisolated(unsafe) let batch = batch
        loop.post {
            loop.beginPostBatch()
            if inOrder { batch.beginRunInOrder(from: loop) }
            for (i, command) in commands.enumerated() {
                let (arguments, bytes) = CommandHarness.arguments(command.map { Array($0.utf8) })
                let sink = RunSink(index: i, batch: batched[i] ? batch : nil, log: log, bytes: bytes)
                if inOrder { batch.currentSink = sink }
                CommandHarness.dispatch(arguments, client: client, engine: engine, sink: sink)
            }
            if inOrder { batch.endRunInOrder(from: loop) }
            loop.endPostBatch()
            done.store(true, ordering: .releasing)
        }
        while !done.load(ordering: .acquiring) { usleep(100) }
        return log
    }

    /// The counters these tests read, taken at once (`#expect` cannot take an atomic).
    struct Counts {
        let quick, normal, hopBatches, batchedHops: Int
        init(_ stats: TransactionStats) {
            quick = stats.quick.load(ordering: .relaxed)
            normal = stats.normal.load(ordering: .relaxed)
            hopBatches = stats.hopBatches.load(ordering: .relaxed)
            batchedHops = stats.batchedHops.load(ordering: .relaxed)
        }
    }

    func waitFor(_ count: Int, in log: Log) -> [(Int, RV)] {
        let deadline = Clock.monotonicNanos() + 5_000_000_000
        while log.count < count && Clock.monotonicNanos() < deadline { usleep(100) }
        return log.entries.map { ($0.0, RV($0.1)) }
    }

    @Test func aRunsHopsToOneShardTravelAsOneMessage() {
        let h = CommandHarness(loops: 2, shards: 2)
        defer { h.shutdown() }
        let k = h.key(onShard: 1, prefix: "k")
        let n = h.key(onShard: 1, prefix: "n")
        let stats = h.shardSet.stats[0]
        let quickBefore = Counts(stats).quick
        let batch = KeyHopBatch(shardSet: h.shardSet)
        let commands = [["set", k, "a"], ["incr", n], ["incr", n], ["get", k], ["set", k, "b"], ["get", k]]
        let log = runOnLoop0(h, commands, batched: Array(repeating: true, count: commands.count), batch: batch)
        let replies = waitFor(commands.count, in: log)
        #expect(replies.map(\.0) == Array(0..<commands.count))
        #expect(replies.map(\.1) == [.ok, .int(1), .int(2), .bulk("a"), .ok, .bulk("b")])
        #expect(Counts(stats).hopBatches == 1)
        #expect(Counts(stats).batchedHops == commands.count)
        #expect(Counts(stats).quick - quickBefore == commands.count)

        // The batch is reused by the next run.
        let again = runOnLoop0(h, [["incr", n], ["get", k]], batched: [true, true], batch: batch)
        #expect(waitFor(2, in: again).map(\.1) == [.int(3), .bulk("b")])
        #expect(Counts(stats).hopBatches == 2)
        #expect(Counts(stats).batchedHops == commands.count + 2)
    }

    /// Dispatches `commands` on loop 0 within one post batch, the first in a
    /// batch and the second alone, and overwrites byte `overwrite` of each
    /// one's argument buffer with `z` before the run's posts leave (after its
    /// dispatch); returns their replies, in command order.
    func dispatchAndOverwrite(_ h: CommandHarness, _ commands: [[String]], overwrite: [Int]) -> [RV] {
        let log = Log()
        let done = Atomic<Bool>(false)
        let engine = h.engine
        let client = h.clients[0]
        let loop = h.loops[0]
        nonisolated(unsafe) let batch = KeyHopBatch(shardSet: h.shardSet)
        loop.post {
            loop.beginPostBatch()
            for (i, command) in commands.enumerated() {
                let (arguments, bytes) = CommandHarness.arguments(command.map { Array($0.utf8) })
                let sink = RunSink(index: i, batch: i == 0 ? batch : nil, log: log, bytes: bytes)
                CommandHarness.dispatch(arguments, client: client, engine: engine, sink: sink)
                bytes.storeBytes(of: UInt8(ascii: "z"), toByteOffset: overwrite[i], as: UInt8.self)
            }
            loop.endPostBatch()
            done.store(true, ordering: .releasing)
        }
        while !done.load(ordering: .acquiring) { usleep(100) }
        return waitFor(commands.count, in: log).sorted { $0.0 < $1.0 }.map(\.1)
    }

    @Test func aBatchedKeyIsReadInPlaceALoneHopsKeyIsCopied() {
        // GET k twice, from the same kind of argument buffer: once in the
        // batch, once alone. Before the run's posts leave, the key's bytes
        // are overwritten in both buffers. The lone hop took a copy and finds
        // `k`; the batched command reads the bytes where they are, so it
        // looks up the overwritten key (under `k`'s hash): nothing there.
        let h = CommandHarness(loops: 2, shards: 2)
        defer { h.shutdown() }
        let k = h.key(onShard: 1, prefix: "k")
        #expect(h.run(["set", k, "v"], on: 0) == .ok)
        // The key follows "get": its first byte becomes another letter.
        let replies = dispatchAndOverwrite(h, [["get", k], ["get", k]], overwrite: [3, 3])
        #expect(replies == [.null, .bulk("v")])
        #expect(Counts(h.shardSet.stats[0]).batchedHops == 1)
    }

    @Test func aBatchedPushReadsItsValueInPlaceALonePushCopiesIt() {
        // A one-element LPUSH onto two lists of shard 1, once in the batch and
        // once alone; before the run's posts leave, the value's first byte is
        // overwritten in both argument buffers. The lone push copied its value
        // (`value`); the batched one reads it in place when it runs (`zalue`).
        let h = CommandHarness(loops: 2, shards: 2)
        defer { h.shutdown() }
        ListFamily.register(h.registry)
        let batched = h.key(onShard: 1, prefix: "batched")
        let alone = h.key(onShard: 1, prefix: "alone")
        // The value follows "lpush" and the key.
        let replies = dispatchAndOverwrite(
            h, [["lpush", batched, "value"], ["lpush", alone, "value"]],
            overwrite: [5 + batched.utf8.count, 5 + alone.utf8.count])
        #expect(replies == [.int(1), .int(1)])
        #expect(h.run(["lrange", batched, "0", "-1"], on: 0) == .array([.bulk("zalue")]))
        #expect(h.run(["lrange", alone, "0", "-1"], on: 0) == .array([.bulk("value")]))
        #expect(Counts(h.shardSet.stats[0]).batchedHops == 1)
    }

    @Test func operationsTooBigToTravelInPlaceFillSeveralChunksAndAreReused() {
        // SET's operation (key, value, options) is bigger than an existential's
        // three words: it waits in the batch's arena. 60 of them fill several
        // 1 KiB chunks; the next run stores its own in the same memory.
        let h = CommandHarness(loops: 2, shards: 2)
        defer { h.shutdown() }
        let k = h.key(onShard: 1, prefix: "big")
        let batch = KeyHopBatch(shardSet: h.shardSet)
        for round in 0..<2 {
            let sets = (0..<60).map { ["set", "\(k):\($0)", "value-\(round)-\($0)", "px", "100000"] }
            let gets = (0..<60).map { ["get", "\(k):\($0)"] }
            // The keys share `k`'s prefix, not its shard: only those on shard 1 join the batch.
            let log = runOnLoop0(h, sets + gets, batched: Array(repeating: true, count: 120), batch: batch)
            let replies = waitFor(120, in: log).sorted { $0.0 < $1.0 }.map(\.1)
            #expect(replies.count == 120)
            #expect(Array(replies.prefix(60)) == Array(repeating: .ok, count: 60))
            #expect(Array(replies.suffix(60)) == (0..<60).map { .bulk("value-\(round)-\($0)") })
        }
        // Every command on shard 1, SET and GET, both rounds, went in the batch.
        let remote = (0..<60).filter { h.shard(of: "\(k):\($0)") == 1 }.count
        #expect(remote > 16)
        #expect(Counts(h.shardSet.stats[0]).batchedHops == 2 * 2 * remote)
    }

    @Test func aPostBetweenEndsTheBatchSoNothingOvertakesIt() {
        // INCR (batched), INCR (alone, posted after the batch), INCR (with a
        // batch sink): the third must not join the batch, which has been
        // overtaken in the post order; it travels alone, after the second.
        let h = CommandHarness(loops: 2, shards: 2)
        defer { h.shutdown() }
        let n = h.key(onShard: 1, prefix: "n")
        let stats = h.shardSet.stats[0]
        let batch = KeyHopBatch(shardSet: h.shardSet)
        let log = runOnLoop0(h, [["incr", n], ["incr", n], ["incr", n]], batched: [true, false, true], batch: batch)
        let replies = waitFor(3, in: log).sorted { $0.0 < $1.0 }
        #expect(replies.map(\.1) == [.int(1), .int(2), .int(3)])
        #expect(Counts(stats).hopBatches == 1)
        #expect(Counts(stats).batchedHops == 1)
    }

    @Test func anotherShardsCommandTravelsAlone() {
        let h = CommandHarness(loops: 3, shards: 3)
        defer { h.shutdown() }
        let a = h.key(onShard: 1, prefix: "a")
        let b = h.key(onShard: 2, prefix: "b")
        let stats = h.shardSet.stats[0]
        let batch = KeyHopBatch(shardSet: h.shardSet)
        let log = runOnLoop0(h, [["incr", a], ["incr", b], ["incr", a]], batched: [true, true, true], batch: batch)
        let replies = waitFor(3, in: log).sorted { $0.0 < $1.0 }
        #expect(replies.map(\.1) == [.int(1), .int(1), .int(2)])
        // `b` is another shard's: alone. The second `a` comes after a post to
        // another loop, so the batch is no longer the last task held: alone too.
        #expect(Counts(stats).hopBatches == 1)
        #expect(Counts(stats).batchedHops == 1)
    }

    @Test func aLockedKeyWaitsInTheQueueAndTheBatchComesBackWhole() {
        let h = CommandHarness(loops: 2, shards: 2)
        defer { h.shutdown() }
        let a = h.key(onShard: 1, prefix: "a")
        let b = h.key(onShard: 1, prefix: "b")
        let shard = h.shardSet.shards[1]
        let locks = ShardLockSet(
            fingerprints: [Array(a.utf8).withUnsafeBytes { lockFingerprint(keyHash: KeyHash.hash($0), database: 0) }],
            mode: .exclusive)
        // A transaction scheduled on the shard and not yet armed (a multi-shard
        // command waiting for its other shards) holds `a` at the head of the queue.
        let holder = ShardTransaction(txid: h.shardSet.takeTxid(), locks: locks, isGlobal: false)
        let held = Atomic<Bool>(false)
        shard.loop.post {
            shard.locks.acquire(locks)
            shard.queue.append(holder)
            held.store(true, ordering: .releasing)
        }
        while !held.load(ordering: .acquiring) { usleep(100) }

        let stats = h.shardSet.stats[0]
        let normalBefore = Counts(stats).normal
        let quickBefore = Counts(stats).quick
        let batch = KeyHopBatch(shardSet: h.shardSet)
        let log = runOnLoop0(h, [["incr", a], ["incr", b], ["incr", a]], batched: [true, true, true], batch: batch)
        // `b` has run, but the batch waits for both `a`s.
        usleep(50_000)
        #expect(log.count == 0)
        #expect(h.run(["get", b], on: 1) == .bulk("1"))

        let released = Atomic<Bool>(false)
        shard.loop.post {
            // The holder runs its step and concludes: the queued `a`s follow, in order.
            shard.arm(holder, outOfOrder: false, conclude: true) { _ in released.store(true, ordering: .releasing) }
        }
        let replies = waitFor(3, in: log)
        let wasReleased = released.load(ordering: .acquiring)
        #expect(wasReleased)
        #expect(replies.map(\.0) == [0, 1, 2])
        #expect(replies.map(\.1) == [.int(1), .int(1), .int(2)])
        #expect(Counts(stats).normal - normalBefore == 2)
        #expect(Counts(stats).quick - quickBefore == 1)
        #expect(Counts(stats).batchedHops == 3)
    }

    // MARK: - Runs in order over two shards (`--pipeline_squash_transactions`)

    /// Dispatches `commands` on loop 0 as one run in order; returns the log the replies land in.
    func runInOrderOnLoop0(_ h: CommandHarness, _ commands: [[String]], batch: KeyHopBatch) -> Log {
        runOnLoop0(h, commands, batched: Array(repeating: true, count: commands.count), batch: batch, inOrder: true)
    }

    /// An exclusive lock on `key` held on `shard`'s loop (as a run in order holds its keys there).
    func hold(_ h: CommandHarness, _ key: String, on shardIndex: Int) -> ShardTransaction {
        let shard = h.shardSet.shards[shardIndex]
        let locks = ShardLockSet(
            fingerprints: [Array(key.utf8).withUnsafeBytes { lockFingerprint(keyHash: KeyHash.hash($0), database: 0) }],
            mode: .exclusive)
        nonisolated(unsafe) var entry: ShardTransaction?
        let held = Atomic<Bool>(false)
        shard.loop.post {
            entry = shard.hold(locks, txid: h.shardSet.takeTxid())
            held.store(true, ordering: .releasing)
        }
        while !held.load(ordering: .acquiring) { usleep(100) }
        return entry!
    }

    @Test func aRunInOrderOverBothShardsIsOneTransactionInOneRoundTrip() {
        let h = CommandHarness(loops: 2, shards: 2)
        defer { h.shutdown() }
        let here = h.key(onShard: 0, prefix: "here")
        let there = h.key(onShard: 1, prefix: "there")
        let stats = h.shardSet.stats[0]
        let batch = KeyHopBatch(shardSet: h.shardSet)
        // Alternating shards, same-key chains on both: each reply shows the order on its key.
        let commands = [
            ["incr", there], ["incr", here], ["set", "\(here):s", "a"], ["incr", there], ["get", "\(here):s"],
            ["incr", here], ["append", "\(here):s", "b"], ["get", there],
        ]
        let log = runInOrderOnLoop0(h, commands, batch: batch)
        let replies = waitFor(commands.count, in: log)
        #expect(replies.map(\.0) == Array(0..<commands.count))
        #expect(replies.map(\.1) == [.int(1), .int(1), .ok, .int(2), .bulk("a"), .int(2), .int(2), .bulk("2")])
        #expect(stats.squashTransactions.load(ordering: .relaxed) == 1)
        // Both shards' locks are released: each key runs inline / quick again.
        #expect(h.run(["incr", here], on: 0) == .int(3))
        #expect(h.run(["incr", there], on: 0) == .int(3))
        #expect(h.shardSet.shards[0].queueLength.load(ordering: .relaxed) == 0)

        // The batch is reused; a run that ends up with the other shard's commands only is a plain batch.
        let again = runInOrderOnLoop0(h, [["incr", there], ["get", there]], batch: batch)
        #expect(waitFor(2, in: again).map(\.1) == [.int(4), .bulk("4")])
        #expect(stats.squashTransactions.load(ordering: .relaxed) == 1)
        #expect(stats.hopBatches.load(ordering: .relaxed) == 1)
    }

    @Test func aRunInOrderWhoseKeysAreBusyThereRunsItsPartsInTurn() {
        let h = CommandHarness(loops: 2, shards: 2)
        defer { h.shutdown() }
        let here = h.key(onShard: 0, prefix: "here")
        let there = h.key(onShard: 1, prefix: "there")
        let blocker = hold(h, there, on: 1)
        let batch = KeyHopBatch(shardSet: h.shardSet)
        // `there` is busy on shard 1: the part there is refused, nothing runs
        // anywhere, and the run's parts go one after another in the pipeline's order.
        let log = runInOrderOnLoop0(h, [["set", here, "1"], ["set", there, "2"], ["incr", here]], batch: batch)
        usleep(50_000)
        // The first part (shard 0) ran; the second waits for `there`; nothing is answered yet.
        #expect(log.count == 0)
        #expect(h.run(["get", here], on: 0) == .bulk("1"))
        let shard1 = h.shardSet.shards[1]
        nonisolated(unsafe) let entry = blocker
        shard1.loop.post { shard1.releaseHeld(entry) }
        let replies = waitFor(3, in: log)
        #expect(replies.map(\.0) == [0, 1, 2])
        #expect(replies.map(\.1) == [.ok, .ok, .int(2)])
        #expect(h.run(["get", there], on: 0) == .bulk("2"))
        #expect(h.shardSet.shards[0].queueLength.load(ordering: .relaxed) == 0)
        #expect(h.shardSet.shards[1].queueLength.load(ordering: .relaxed) == 0)
    }

    @Test func anOlderTransactionThatConflictsIsRefusedRatherThanQueuedAheadOfAHold() {
        // A hold is granted and may already have let its run's other part run:
        // an older coordinated transaction on its key must not slip in ahead.
        let h = CommandHarness(loops: 2, shards: 2)
        defer { h.shutdown() }
        let key = h.key(onShard: 0, prefix: "held")
        let fingerprint = Array(key.utf8).withUnsafeBytes { lockFingerprint(keyHash: KeyHash.hash($0), database: 0) }
        let older = h.shardSet.takeTxid()
        let entry = hold(h, key, on: 0)
        let shard = h.shardSet.shards[0]
        let outcome = Atomic<Int>(-1)
        nonisolated(unsafe) let held = entry
        shard.loop.post {
            let locks = ShardLockSet(fingerprints: [fingerprint], mode: .exclusive)
            let coordinated = ShardTransaction(txid: older, locks: locks, isGlobal: false, participants: 2)
            outcome.store(shard.schedule(coordinated).accepted ? 1 : 0, ordering: .releasing)
            shard.releaseHeld(held)
        }
        while outcome.load(ordering: .acquiring) < 0 { usleep(100) }
        #expect(outcome.load(ordering: .acquiring) == 0)
    }
}
