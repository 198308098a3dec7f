import DamselflyRuntime
import DamselflyStorage
@testable import DamselflyTransactions
import Glibc
import Synchronization
import Testing
@testable import DamselflyCommands

/// The transaction framework seen through commands: which path each command
/// takes (the `# Transaction` counters), atomicity of multi-shard commands
/// under concurrency, and freedom from deadlock.
@Suite(.serialized) struct TransactionTests {
    /// A snapshot of one loop's ``TransactionStats``.
    struct Counts: Equatable, CustomStringConvertible {
        var inline = 0, quick = 0, normal = 0, ooo = 0, global = 0, cancels = 0
        var widths: [Int] = []

        init(_ stats: TransactionStats) {
            inline = stats.inline.load(ordering: .relaxed)
            quick = stats.quick.load(ordering: .relaxed)
            normal = stats.normal.load(ordering: .relaxed)
            ooo = stats.outOfOrder.load(ordering: .relaxed)
            global = stats.global.load(ordering: .relaxed)
            cancels = stats.scheduleCancels.load(ordering: .relaxed)
            widths = (1...stats.maxWidth).map { stats.widthCount($0) }
        }

        init() {}

        static func - (a: Counts, b: Counts) -> Counts {
            var d = Counts()
            d.inline = a.inline - b.inline
            d.quick = a.quick - b.quick
            d.normal = a.normal - b.normal
            d.ooo = a.ooo - b.ooo
            d.global = a.global - b.global
            d.cancels = a.cancels - b.cancels
            d.widths = zip(a.widths, b.widths).map { $0 - $1 }
            return d
        }

        static func + (a: Counts, b: Counts) -> Counts {
            var d = Counts()
            d.inline = a.inline + b.inline
            d.quick = a.quick + b.quick
            d.normal = a.normal + b.normal
            d.ooo = a.ooo + b.ooo
            d.global = a.global + b.global
            d.cancels = a.cancels + b.cancels
            d.widths = a.widths.isEmpty ? b.widths : b.widths.isEmpty ? a.widths : zip(a.widths, b.widths).map { $0 + $1 }
            return d
        }

        var description: String {
            "inline \(inline) quick \(quick) normal \(normal) ooo \(ooo) global \(global) cancels \(cancels) widths \(widths)"
        }
    }

    /// The counters `command` adds on loop `loop`.
    func delta(_ h: CommandHarness, on loop: Int, _ command: [String], expect reply: RV,
               sourceLocation: SourceLocation = #_sourceLocation) -> Counts {
        let before = Counts(h.shardSet.stats[loop])
        #expect(h.run(command, on: loop) == reply, sourceLocation: sourceLocation)
        return Counts(h.shardSet.stats[loop]) - before
    }

    // MARK: - Paths

    @Test func ownShardRunsInline() {
        let h = CommandHarness()
        for shard in 0..<4 {
            let key = h.key(onShard: shard)
            let d = delta(h, on: shard, ["get", key], expect: .null)
            #expect(d.inline == 1 && d.quick == 0 && d.normal == 0 && d.ooo == 0, "\(d)")
            #expect(d.widths.allSatisfy { $0 == 0 })
        }
        // Each loop counted its own command only.
        for loop in 0..<4 {
            let c = Counts(h.shardSet.stats[loop])
            #expect(c.inline == 1 && c.quick == 0, "\(c)")
        }
    }

    @Test func otherShardRunsQuick() {
        let h = CommandHarness()
        for loop in 0..<4 {
            for shard in 0..<4 where shard != loop {
                let key = h.key(onShard: shard)
                let d = delta(h, on: loop, ["set", key, "v"], expect: .ok)
                #expect(d.quick == 1 && d.inline == 0 && d.normal == 0 && d.ooo == 0, "\(d)")
            }
        }
    }

    @Test func multiShardCommandsAreTransactions() {
        let h = CommandHarness()
        let keys = h.keysOnEveryShard()
        // Four shards: one transaction of width 4, out of order when idle.
        var d = delta(h, on: 0, ["mset", keys[0], "1", keys[1], "1", keys[2], "1", keys[3], "1"], expect: .ok)
        #expect(d.normal + d.ooo == 1, "\(d)")
        #expect(d.ooo == 1, "an idle server grants every lock free: \(d)")
        #expect(d.widths == [0, 0, 0, 1], "\(d)")
        #expect(d.inline == 0 && d.quick == 0)
        // Two shards, neither of them the caller's.
        d = delta(h, on: 0, ["mget", keys[2], keys[3]], expect: .strings(["1", "1"]))
        #expect(d.normal + d.ooo == 1 && d.widths == [0, 1, 0, 0], "\(d)")
        // Three shards with DEL.
        d = delta(h, on: 3, ["del", keys[0], keys[1], keys[3]], expect: 3)
        #expect(d.normal + d.ooo == 1 && d.widths == [0, 0, 1, 0], "\(d)")
        // Two keys on one shard: the single-shard path.
        let other = h.key(onShard: 2, prefix: "other")
        d = delta(h, on: 1, ["mset", keys[2], "2", other, "2"], expect: .ok)
        #expect(d.quick == 1 && d.normal + d.ooo == 0, "\(d)")
        // A cross-shard RENAME is one transaction of two steps.
        d = delta(h, on: 0, ["rename", keys[2], keys[1]], expect: .ok)
        #expect(d.normal + d.ooo == 1 && d.widths == [0, 1, 0, 0], "\(d)")
        // MSETNX likewise.
        d = delta(h, on: 2, ["msetnx", keys[0], "a", keys[3], "b"], expect: 1)
        #expect(d.normal + d.ooo == 1 && d.widths == [0, 1, 0, 0], "\(d)")
    }

    @Test func flushIsGlobal() {
        let h = CommandHarness()
        for key in h.keysOnEveryShard() { h.run(["set", key, "v"]) }
        var d = delta(h, on: 1, ["flushall"], expect: .ok)
        #expect(d.global == 1 && d.normal == 0 && d.ooo == 0, "\(d)")
        #expect(d.widths == [0, 0, 0, 1])
        d = delta(h, on: 2, ["flushdb"], expect: .ok)
        #expect(d.global == 1, "\(d)")
        #expect(h.run(["dbsize"]) == 0)
        // Broadcast reads take no transaction at all.
        d = delta(h, on: 0, ["dbsize"], expect: 0)
        #expect(d == Counts(TransactionStats(maxWidth: 4)), "\(d)")
    }

    @Test func loopsWithoutShardsCoordinate() {
        // Six loops, four shards: loops 4 and 5 own nothing and hop for everything.
        let h = CommandHarness(loops: 6, shards: 4)
        let keys = h.keysOnEveryShard()
        for key in keys {
            let d = delta(h, on: 5, ["set", key, "v"], expect: .ok)
            #expect(d.quick == 1, "\(d)")
        }
        let d = delta(h, on: 4, ["mget"] + keys, expect: .strings(["v", "v", "v", "v"]))
        #expect(d.normal + d.ooo == 1 && d.widths == [0, 0, 0, 1], "\(d)")
        #expect(h.run(["dbsize"], on: 4) == 4)
        #expect(h.run(["flushall"], on: 5) == .ok)
        #expect(h.run(["exists"] + keys, on: 4) == 0)
    }

    // MARK: - Atomicity under concurrency

    /// Runs `body(thread)` on `count` OS threads at once and joins them.
    static func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        let threads = (0..<count).map { i in LoopThread.spawn(name: "test-client\(i)") { body(i) } }
        for thread in threads { LoopThread.join(thread) }
    }

    @Test func multiShardWritesAreNeverSeenHalfDone() {
        neverSeenHalfDone(CommandHarness())
    }

    /// The same with two loops: every multi-shard command is scheduled and
    /// run in one round trip (``Transaction/run(_:done:)``).
    @Test func multiShardWritesInOneRoundTripAreNeverSeenHalfDone() {
        neverSeenHalfDone(CommandHarness(loops: 2, shards: 2))
    }

    func neverSeenHalfDone(_ h: CommandHarness) {
        let loops = h.loops.count
        let keys = h.keysOnEveryShard(prefix: "atomic")
        h.run(["mset"] + keys.flatMap { [$0, "init"] })
        let deadline = Clock.monotonicNanos() + 1_500_000_000
        let reads = SharedCounter(), writes = SharedCounter(), mixes = SharedCounter(), failures = SharedCounter()
        // Threads 0..<4 write from loops 0..<4; threads 4..<7 read from loops 3, 0, 1 (modulo the loops).
        Self.onThreads(7) { t in
            var n = 0
            while Clock.monotonicNanos() < deadline {
                n += 1
                if t < 4 {
                    let value = "w\(t)-\(n)"
                    let reply = h.run(["mset"] + keys.flatMap { [$0, value] }, on: t % loops)
                    if reply != .ok { failures.add() }
                    writes.add()
                } else {
                    // Every order of the keys, so the transaction's shard order is exercised.
                    let ordered = n % 2 == 0 ? keys : keys.reversed()
                    let reply = h.run(["mget"] + ordered, on: (t + 3) % 4 % loops)
                    guard let values = reply.items?.map(\.string), values.count == keys.count, values.allSatisfy({ $0 != nil }) else {
                        failures.add()
                        continue
                    }
                    if Set(values).count != 1 { mixes.add() }
                    reads.add()
                }
            }
        }
        #expect(failures.value == 0)
        #expect(mixes.value == 0, "MGET saw a mix of two MSETs")
        #expect(reads.value > 50)
        #expect(writes.value > 50)
        // A reply can reach its client a moment before the shard has taken the
        // finished transaction off its queue: give the queues a bounded moment.
        let settle = Clock.monotonicNanos() + 2_000_000_000
        while h.shardSet.shards.contains(where: { $0.queueLength.load(ordering: .relaxed) != 0 }),
              Clock.monotonicNanos() < settle {
            usleep(1_000)
        }
        for shard in h.shardSet.shards { #expect(shard.queueLength.load(ordering: .relaxed) == 0) }
    }

    @Test func conflictingTransactionsFinishAndStayConsistent() {
        let h = CommandHarness()
        // Pairs (x, y) on different shards: exactly one of each pair exists at
        // any moment, whatever RENAMEs run between them.
        let pairCount = 12
        let pairs: [(String, String)] = (0..<pairCount).map { i in
            let x = h.key(onShard: i % 4, prefix: "x\(i)-")
            let y = h.key(onShard: (i + 1 + i / 4) % 4, prefix: "y\(i)-")
            return (x, y)
        }
        for (x, _) in pairs { h.run(["set", x, "pair"]) }
        let group = h.keysOnEveryShard(prefix: "group")
        h.run(["mset"] + group.flatMap { [$0, "0"] })
        let counters = (0..<4).map { h.key(onShard: $0, prefix: "counter") }
        let before = (0..<4).map { Counts(h.shardSet.stats[$0]) }

        let deadline = Clock.monotonicNanos() + 1_500_000_000
        let keyed = SharedCounter()
        let increments = Shared<[Int]>([0, 0, 0, 0])
        let violations = Shared<[String]>([])
        let violation: @Sendable (String) -> Void = { text in violations.withLock { if $0.count < 20 { $0.append(text) } } }

        Self.onThreads(6) { t in
            var random = SplitMix(seed: UInt64(t + 1) * 0x9E37_79B9)
            var n = 0
            while Clock.monotonicNanos() < deadline {
                n += 1
                let loop = Int(random.next() % 4)
                let pair = pairs[Int(random.next() % UInt64(pairCount))]
                switch random.next() % 6 {
                case 0, 1:
                    let (from, to) = random.next() % 2 == 0 ? pair : (pair.1, pair.0)
                    let reply = h.run(["rename", from, to], on: loop)
                    if reply != .ok && reply != .error("ERR no such key") { violation("RENAME → \(reply)") }
                case 2:
                    let reply = h.run(["mget", pair.0, pair.1], on: loop)
                    let present = reply.items?.filter { $0 != .null }.count
                    if present != 1 { violation("pair \(pair) → \(reply)") }
                case 3:
                    let reply = h.run(["mset"] + group.flatMap { [$0, "\(t)-\(n)"] }, on: loop)
                    if reply != .ok { violation("MSET → \(reply)") }
                case 4:
                    let reply = h.run(["mget"] + group.shuffled(using: &random), on: loop)
                    let items = reply.items ?? []
                    if items.count != 4 || !items.allSatisfy({ $0 == items[0] && $0 != .null }) {
                        violation("group → \(reply)")
                    }
                default:
                    let c = Int(random.next() % 4)
                    let reply = h.run(["incr", counters[c]], on: loop)
                    if reply.integer == nil { violation("INCR → \(reply)") }
                    increments.withLock { $0[c] += 1 }
                }
                keyed.add()
            }
        }
        // Counters first: the checks below run commands too.
        let total = (0..<4).map { Counts(h.shardSet.stats[$0]) - before[$0] }.reduce(Counts(), +)

        let found = violations.withLock { $0 }
        #expect(found.isEmpty, "\(found)")
        // Every pair still has exactly one member.
        for (x, y) in pairs { #expect(h.run(["exists", x, y]) == 1, "pair \(x) \(y)") }
        let expectedCounters = increments.withLock { $0 }
        for c in 0..<4 {
            let value = expectedCounters[c] == 0 ? RV.null : RV.bulk("\(expectedCounters[c])")
            #expect(h.run(["get", counters[c]]) == value)
        }
        let presentCounters = expectedCounters.filter { $0 > 0 }.count
        #expect(h.run(["dbsize"]) == .int(pairCount + 4 + presentCounters))
        // Every keyed command took exactly one path; nothing is left queued.
        #expect(total.inline + total.quick + total.normal + total.ooo == keyed.value, "\(total)")
        #expect(total.widths.reduce(0, +) == total.normal + total.ooo + total.global, "\(total)")
        #expect(keyed.value > 100)
        for shard in h.shardSet.shards { #expect(shard.queueLength.load(ordering: .relaxed) == 0) }
    }

    /// A queued single-shard command counts for neither half of VLL's rule:
    /// an older coordinated transaction is queued ahead of it (not refused
    /// for being older than the tail), and once it ran it does not make an
    /// older coordinated transaction too old either. Coordinated ones still do.
    @Test func queuedSingleShardCommandsDoNotRefuseOlderTransactions() {
        let h = CommandHarness(loops: 1, shards: 1)
        let shard = h.shardSet.shards[0]
        let key = Array("k".utf8).withUnsafeBytes { lockFingerprint(keyHash: KeyHash.hash($0), database: 0) }
        let locks = ShardLockSet(fingerprints: [key], mode: .exclusive)
        let log = Shared<[String]>([])
        let finished = Atomic<Bool>(false)
        h.loops[0].post {
            func entry(_ txid: UInt64) -> ShardTransaction {
                ShardTransaction(txid: txid, locks: locks, isGlobal: false, participants: 2)
            }
            func record(_ s: String) -> (Shard) -> Void { { _ in log.withLock { $0.append(s) } } }
            let a = entry(10)
            log.withLock { $0.append("a \(shard.schedule(a))") }
            shard.enqueueSingle(locks: locks, txid: 20, record("single 20 ran"))
            // Older than the queued single-shard command, the key busy: queued ahead of it.
            let b = entry(15)
            log.withLock { $0.append("b \(shard.schedule(b))") }
            shard.arm(a, outOfOrder: false, conclude: true, record("a ran"))
            shard.arm(b, outOfOrder: false, conclude: true, record("b ran"))
            // The single-shard command (20) ran: 17 is still newer than every coordinated one (15).
            let c = entry(17)
            log.withLock { $0.append("c \(shard.schedule(c))") }
            shard.arm(c, outOfOrder: false, conclude: true, record("c ran"))
            // A coordinated one that ran (17) still makes an older one (16) too old.
            log.withLock { $0.append("d \(shard.schedule(entry(16)))") }
            finished.store(true, ordering: .releasing)
        }
        #expect(TransactionTests.waitUntil { finished.load(ordering: .acquiring) })
        #expect(log.withLock { $0 } == [
            "a (accepted: true, lockGranted: true)", "b (accepted: true, lockGranted: false)",
            "a ran", "b ran", "single 20 ran",
            "c (accepted: true, lockGranted: true)", "c ran", "d (accepted: false, lockGranted: false)",
        ])
    }

    /// An older transaction whose keys are busy takes its place in id order,
    /// ahead of newer ones that wait in the queue; it is refused only by a
    /// newer conflicting one that may already be ahead of it: granted its
    /// locks free (it may run out of order), or with a step run here.
    @Test func olderTransactionQueuesAheadOfNewerOnesThatWait() {
        let h = CommandHarness(loops: 1, shards: 1)
        let shard = h.shardSet.shards[0]
        func locks(_ name: String) -> ShardLockSet {
            let fingerprint = Array(name.utf8).withUnsafeBytes { lockFingerprint(keyHash: KeyHash.hash($0), database: 0) }
            return ShardLockSet(fingerprints: [fingerprint], mode: .exclusive)
        }
        let log = Shared<[String]>([])
        let finished = Atomic<Bool>(false)
        h.loops[0].post {
            func entry(_ txid: UInt64, _ key: String) -> ShardTransaction {
                ShardTransaction(txid: txid, locks: locks(key), isGlobal: false, participants: 2)
            }
            func note(_ s: String) { log.withLock { $0.append(s) } }
            func record(_ s: String) -> (Shard) -> Void { { _ in note(s) } }
            // k: held by 5, 20 waits behind it, then 10 arrives.
            let (e5, e20, e10) = (entry(5, "k"), entry(20, "k"), entry(10, "k"))
            note("5 \(shard.schedule(e5).accepted) 20 \(shard.schedule(e20).accepted) 10 \(shard.schedule(e10).accepted)")
            shard.arm(e20, outOfOrder: false, conclude: true, record("20 ran"))
            shard.arm(e10, outOfOrder: false, conclude: true, record("10 ran"))
            shard.arm(e5, outOfOrder: false, conclude: true, record("5 ran"))
            // j: 30 granted free (it may run out of order): the older 25 is refused.
            let e30 = entry(30, "j")
            note("30 \(shard.schedule(e30).lockGranted) 25 \(shard.schedule(entry(25, "j")).accepted)")
            shard.arm(e30, outOfOrder: false, conclude: true, record("30 ran"))
            // m: 50 waits behind 41, then runs a first step and stays: the older 45 is refused.
            let (e41, e50) = (entry(41, "m"), entry(50, "m"))
            note("41 \(shard.schedule(e41).lockGranted) 50 \(shard.schedule(e50).lockGranted)")
            shard.arm(e41, outOfOrder: false, conclude: true, record("41 ran"))
            shard.arm(e50, outOfOrder: false, conclude: false, record("50 step 1 ran"))
            note("45 \(shard.schedule(entry(45, "m")).accepted)")
            shard.arm(e50, outOfOrder: false, conclude: true, record("50 step 2 ran"))
            finished.store(true, ordering: .releasing)
        }
        #expect(TransactionTests.waitUntil { finished.load(ordering: .acquiring) })
        #expect(log.withLock { $0 } == [
            "5 true 20 true 10 true", "5 ran", "10 ran", "20 ran",
            "30 true 25 false", "30 ran",
            "41 true 50 false", "41 ran", "50 step 1 ran", "45 false", "50 step 2 ran",
        ])
        #expect(shard.queueLength.load(ordering: .relaxed) == 0)
    }

    // MARK: - Watchdog (--tx_schedule_timeout_ms)

    /// A transaction started on loop 0 that takes `locksByShard` (every shard
    /// whole when nil), runs a first step and then holds its locks until
    /// `release` is called: the holder that never lets go.
    final class Holder: @unchecked Sendable {
        // Invariant: `transaction` is only touched on loop 0's thread.
        private var transaction: Transaction?
        let holding = Atomic<Bool>(false)
        let released = Atomic<Bool>(false)
        let h: CommandHarness

        init(_ h: CommandHarness, locksByShard: [(shard: Int, locks: ShardLockSet)]?) {
            self.h = h
            let loop = h.loops[0]
            loop.post { [self] in
                let t = locksByShard.map { Transaction(shardSet: h.shardSet, loop: loop, locksByShard: $0) }
                    ?? Transaction(globalOn: h.shardSet, loop: loop)
                transaction = t
                t.schedule {
                    t.execute(conclude: false, { _ in 0 }, done: { [self] _ in holding.store(true, ordering: .releasing) })
                }
            }
            #expect(TransactionTests.waitUntil { holding.load(ordering: .acquiring) })
        }

        func release() {
            h.loops[0].post { [self] in
                transaction?.execute(conclude: true, { _ in 0 }, done: { [self] _ in released.store(true, ordering: .releasing) })
            }
            #expect(TransactionTests.waitUntil { released.load(ordering: .acquiring) })
        }
    }

    static func waitUntil(seconds: Double = 5, _ condition: () -> Bool) -> Bool {
        let deadline = Clock.monotonicNanos() + UInt64(seconds * 1e9)
        while !condition() {
            if Clock.monotonicNanos() > deadline { return false }
            usleep(1_000)
        }
        return true
    }

    func watchdogCounts(_ h: CommandHarness) -> (timeouts: Int, stuck: Int) {
        h.shardSet.stats.reduce((0, 0)) {
            ($0.0 + $1.scheduleTimeouts.load(ordering: .relaxed), $0.1 + $1.stuck.load(ordering: .relaxed))
        }
    }

    func queueLengths(_ h: CommandHarness) -> [Int] {
        h.shardSet.shards.map { $0.queueLength.load(ordering: .relaxed) }
    }

    @Test func watchdogAbandonsATransactionThatCannotGetItsTurn() {
        let h = CommandHarness()
        let log = Shared<[String]>([])
        h.shardSet.startWatchdog(timeoutMillis: 100) { line in log.withLock { $0.append(line) } }
        let (a, b) = (h.key(onShard: 1), h.key(onShard: 2))
        h.run(["set", a, "before"])
        // Every shard is held by a transaction that never concludes.
        let holder = Holder(h, locksByShard: nil)
        #expect(queueLengths(h) == [1, 1, 1, 1])

        // A multi-shard write queued behind it on shards 1 and 2: nothing of
        // it can run, so it is abandoned with the error and its locks go.
        let started = Clock.monotonicNanos()
        #expect(h.run(["mset", a, "x", b, "y"], on: 3) == .error(CommandCall.abandonedError))
        let waited = Double(Clock.monotonicNanos() - started) / 1e9
        #expect(waited >= 0.09 && waited < 2, "abandoned after \(waited) s")
        #expect(TransactionTests.waitUntil { queueLengths(h) == [1, 1, 1, 1] }, "\(queueLengths(h))")
        // A global transaction (FLUSHALL) behind it: the same.
        #expect(h.run(["flushall"], on: 2) == .error(CommandCall.abandonedError))
        #expect(TransactionTests.waitUntil { queueLengths(h) == [1, 1, 1, 1] }, "\(queueLengths(h))")
        #expect(watchdogCounts(h) == (2, 0))
        #expect(h.shardSet.stats[3].scheduleTimeouts.load(ordering: .relaxed) == 1)
        let lines = log.withLock { $0 }
        #expect(lines.count == 2)
        #expect(lines.first?.contains("(mset)") == true && lines.first?.contains("shards 1,2:") == true, "\(lines)")
        #expect(lines.last?.contains("(flushall)") == true && lines.last?.contains("shards 0,1,2,3:") == true, "\(lines)")

        // Once the holder lets go nothing of the abandoned ones is left: no
        // lock, no queued entry, no write; the same commands now run.
        holder.release()
        #expect(TransactionTests.waitUntil { queueLengths(h) == [0, 0, 0, 0] }, "\(queueLengths(h))")
        for shard in h.shardSet.shards { #expect(shard.locks.isEmpty, "shard \(shard.index) still locked") }
        #expect(h.run(["mget", a, b]) == .array([.bulk("before"), .null]))
        #expect(h.run(["mset", a, "x", b, "y"], on: 3) == .ok)
        #expect(h.run(["mget", a, b]) == .array([.bulk("x"), .bulk("y")]))
        #expect(watchdogCounts(h) == (2, 0))
    }

    /// One round trip (two loops, ``Transaction/run(_:done:)``): the other
    /// loop's part runs first and this loop's after it. Held on the other
    /// loop's shard, nothing of an MSET has run, so the watchdog abandons it;
    /// held on this loop's shard, the other part ran, so it is only reported.
    @Test func watchdogAndOneRoundTrip() {
        let h = CommandHarness(loops: 2, shards: 2)
        let log = Shared<[String]>([])
        h.shardSet.startWatchdog(timeoutMillis: 100) { line in log.withLock { $0.append(line) } }
        let (a, b) = (h.key(onShard: 0), h.key(onShard: 1))
        #expect(h.shardSet.shards[0].loop === h.loops[0] && h.shardSet.shards[1].loop === h.loops[1])
        func fingerprint(_ key: String) -> LockFingerprint {
            Array(key.utf8).withUnsafeBytes { lockFingerprint(keyHash: KeyHash.hash($0), database: 0) }
        }
        // b (the other loop's) held: abandoned, nothing written.
        var holder = Holder(h, locksByShard: [(1, ShardLockSet(fingerprints: [fingerprint(b)], mode: .exclusive))])
        #expect(h.run(["mset", a, "x", b, "y"], on: 0) == .error(CommandCall.abandonedError))
        #expect(watchdogCounts(h) == (1, 0))
        holder.release()
        #expect(TransactionTests.waitUntil { queueLengths(h) == [0, 0] }, "\(queueLengths(h))")
        #expect(h.run(["mget", a, b]) == .array([.null, .null]))
        // a (this loop's) held: b's part ran; reported once, then finished.
        holder = Holder(h, locksByShard: [(0, ShardLockSet(fingerprints: [fingerprint(a)], mode: .exclusive))])
        let reply = h.start(["mset", a, "x", b, "y"].map { Array($0.utf8) }, on: 0)
        #expect(TransactionTests.waitUntil { watchdogCounts(h).stuck == 1 }, "\(watchdogCounts(h))")
        #expect(reply.take() == nil)
        #expect(h.run(["get", b], on: 1) == .bulk("y"))
        holder.release()
        #expect(TransactionTests.waitUntil { reply.take() != nil })
        #expect(reply.take().map(RV.init) == .ok)
        #expect(h.run(["mget", a, b]) == .array([.bulk("x"), .bulk("y")]))
        #expect(TransactionTests.waitUntil { queueLengths(h) == [0, 0] }, "\(queueLengths(h))")
        #expect(watchdogCounts(h) == (1, 1))
        #expect(log.withLock { $0.count } == 2)
    }

    @Test func watchdogOnlyReportsATransactionThatAlreadyRanSomewhere() {
        let h = CommandHarness()
        let log = Shared<[String]>([])
        h.shardSet.startWatchdog(timeoutMillis: 100) { line in log.withLock { $0.append(line) } }
        let (a, b) = (h.key(onShard: 1), h.key(onShard: 2))
        let fingerprint = Array(b.utf8).withUnsafeBytes { lockFingerprint(keyHash: KeyHash.hash($0), database: 0) }
        // Only shard 2's key is held: MSET's write on shard 1 runs at once,
        // so abandoning it would leave half a command behind.
        let holder = Holder(h, locksByShard: [(2, ShardLockSet(fingerprints: [fingerprint], mode: .exclusive))])
        let reply = h.start(["mset", a, "x", b, "y"].map { Array($0.utf8) }, on: 3)
        #expect(TransactionTests.waitUntil { watchdogCounts(h).stuck == 1 }, "\(watchdogCounts(h))")
        #expect(reply.take() == nil)
        #expect(log.withLock { $0.first?.contains("cannot be abandoned") } == true)
        // Reported once, however long it waits.
        usleep(300_000)
        #expect(watchdogCounts(h) == (0, 1))
        holder.release()
        #expect(TransactionTests.waitUntil { reply.take() != nil })
        #expect(reply.take().map(RV.init) == .ok)
        #expect(h.run(["mget", a, b]) == .array([.bulk("x"), .bulk("y")]))
        #expect(TransactionTests.waitUntil { queueLengths(h) == [0, 0, 0, 0] }, "\(queueLengths(h))")
        #expect(log.withLock { $0.count } == 1)
    }
}

/// An atomic counter that closures can share.
final class SharedCounter: Sendable {
    private let count = Atomic<Int>(0)
    func add(_ n: Int = 1) { count.add(n, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

/// A value behind a lock that closures can share.
final class Shared<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}

/// A small deterministic generator for the stress tests.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
