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
/// 3. The watchdog (`--tx_schedule_timeout_ms`, Shard+Watchdog.swift): a
///    transaction armed with a step that still waits for its turn on some
///    shard after the bound is abandoned, if its owner gave ``onAbandon`` and
///    nothing of it that cannot be taken back has run on any shard (a step
///    given an `undo` can be taken back); its locks are released everywhere
///    and ``onAbandon`` answers its client. Otherwise it is only logged and
///    counted (`tx_stuck_total`) and keeps waiting.
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
    /// What the watchdog's log line calls this transaction (the command's name).
    public var label = ""
    /// Answers the client when the watchdog abandons this transaction (nil:
    /// it is never abandoned, only reported). None of the pending `done`
    /// callbacks run afterwards.
    public var onAbandon: (() -> Void)?
    private var watchdogBusy = false
    private var reportedStuck = false
    private var abandoned = false
    /// Steps whose results all came back; the watchdog abandons nothing that
    /// moved on while it asked the shards (see ``watchdogFired()``).
    private var stepsDone = 0

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

    /// A fresh transaction id, and an entry for every participant under it
    /// (each knowing its coordinator while the watchdog is on).
    private func takeID() {
        txid = shardSet.takeTxid()
        entries = zip(participants, lockSets).map { _, locks in
            ShardTransaction(txid: txid, locks: locks, isGlobal: isGlobal, participants: participants.count)
        }
        if shardSet.watchdogOn.load(ordering: .relaxed) {
            for entry in entries { entry.coordinator = self }
        }
    }

    /// Every participant accepted: how the transaction runs, and its count in
    /// the coordinating loop's statistics.
    private func noteScheduled(outOfOrder: Bool) {
        let stats = shardSet.stats[loop.index]
        self.outOfOrder = outOfOrder
        if isGlobal {
            stats.global.addOwned(1)
        } else if outOfOrder {
            stats.outOfOrder.addOwned(1)
        } else {
            stats.normal.addOwned(1)
        }
        stats.countWidth(participants.count)
    }

    /// Queues the transaction on every participant; `done` runs on the loop once all accepted.
    public func schedule(_ done: @escaping () -> Void) {
        let stats = shardSet.stats[loop.index]
        takeID()
        let gather = Gather<(Bool, Bool)>(count: participants.count) { [self] outcomes in
            if outcomes.allSatisfy({ $0.0 }) {
                // With replicas, transactions run in txid order on every shard
                // (no out-of-order): the replication stream merges the shards'
                // histories by transaction, which needs one order everywhere.
                noteScheduled(outOfOrder: !isGlobal && outcomes.allSatisfy { $0.1 } && !shardSet.inOrderOnly.load(ordering: .relaxed))
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
    /// `undo` (a step that does not conclude) takes the step back on a shard
    /// where it ran if the watchdog abandons the transaction; without it, a
    /// step that ran anywhere rules the abandonment out.
    @_specialize(where R == Int)
    public func execute<R>(conclude: Bool, _ step: @escaping (Shard) -> R, undo: ((Shard) -> Void)? = nil,
                           done: @escaping ([R]) -> Void) {
        let undo = conclude ? nil : undo
        let gather = Gather<R>(count: participants.count) { [self] results in
            // Abandoned meanwhile: a last result (held back by whenDurable)
            // may still complete the step; it was taken back everywhere.
            guard !abandoned else { return }
            stepsDone &+= 1
            done(results)
        }
        let loop = self.loop
        for (i, shardIndex) in participants.enumerated() {
            let shard = shardSet.shards[shardIndex]
            let entry = entries[i]
            let ooo = outOfOrder
            if shard.loop === loop {
                shard.arm(entry, outOfOrder: ooo, conclude: conclude, undo: undo) { shard in
                    let result = step(shard)
                    // Deliver after the shard finished its bookkeeping.
                    loop.defer_ { gather.deliver(i, result) }
                }
            } else {
                shard.loop.post {
                    shard.arm(entry, outOfOrder: ooo, conclude: conclude, undo: undo) { shard in
                        let result = step(shard)
                        shard.loop.whenDurable { loop.post { gather.deliver(i, result) } }
                    }
                }
            }
        }
    }

    /// ``schedule(_:)`` followed by one concluding ``execute(conclude:_:undo:done:)``
    /// step, in one round trip when every participant of another loop is on
    /// the same one (always, with two threads).
    ///
    /// The participants of this loop are scheduled here first. Their answers
    /// are final: a shard refuses only at scheduling. One message then
    /// schedules the other loop's participants and, if all accept, arms them
    /// with the step at once; it can decide out-of-order there, as it carries
    /// whether this loop's locks were free. Every lock is queued before the
    /// step runs anywhere, as in the two-round path, so no other client sees
    /// the transaction half done. This loop's participants are armed when the
    /// other loop's results come back, so a refusal there (nothing ran
    /// anywhere) only withdraws the transaction here and starts it again with
    /// a fresh id. The oldest transaction is at the head of every queue it is
    /// in, its remote steps run, then its local ones: no cycle of waits.
    ///
    /// Several other loops (more than two threads), or a global transaction,
    /// take the two rounds.
    @_specialize(where R == Int)
    public func run<R>(_ step: @escaping (Shard) -> R, done: @escaping ([R]) -> Void) {
        var remote: EventLoop? = nil
        for shardIndex in participants {
            let other = shardSet.shards[shardIndex].loop
            guard other !== loop else { continue }
            if let remote, remote !== other { return runInTwoRounds(step, done: done) }
            remote = other
        }
        guard let remote, !isGlobal else { return runInTwoRounds(step, done: done) }
        scheduleAndArm(remote, step, done: done)
    }

    private func runInTwoRounds<R>(_ step: @escaping (Shard) -> R, done: @escaping ([R]) -> Void) {
        schedule { [self] in execute(conclude: true, step, done: done) }
    }

    private func scheduleAndArm<R>(_ remote: EventLoop, _ step: @escaping (Shard) -> R, done: @escaping ([R]) -> Void) {
        let stats = shardSet.stats[loop.index]
        takeID()
        var local: [Int] = []
        var remoteIndexes: [Int] = []
        var localFree = true
        for (i, shardIndex) in participants.enumerated() {
            let shard = shardSet.shards[shardIndex]
            guard shard.loop === loop else {
                remoteIndexes.append(i)
                continue
            }
            let outcome = shard.schedule(entries[i])
            guard outcome.accepted else {
                stats.scheduleCancels.add(1, ordering: .relaxed)
                for j in local { shardSet.shards[participants[j]].cancel(entries[j]) }
                return scheduleAndArm(remote, step, done: done)
            }
            local.append(i)
            localFree = localFree && outcome.lockGranted
        }
        let entries = self.entries
        let shards = remoteIndexes.map { shardSet.shards[participants[$0]] }
        let inOrderOnly = shardSet.inOrderOnly.load(ordering: .relaxed)
        let loop = self.loop
        remote.post { [self] in
            var accepted: [Int] = []
            var free = localFree && !inOrderOnly
            for (k, shard) in shards.enumerated() {
                let outcome = shard.schedule(entries[remoteIndexes[k]])
                guard outcome.accepted else {
                    // Nothing ran anywhere: withdraw here, then the coordinator does.
                    for j in accepted { shards[j].cancel(entries[remoteIndexes[j]]) }
                    loop.post { [self] in
                        stats.scheduleCancels.add(1, ordering: .relaxed)
                        for j in local { shardSet.shards[participants[j]].cancel(entries[j]) }
                        scheduleAndArm(remote, step, done: done)
                    }
                    return
                }
                accepted.append(k)
                free = free && outcome.lockGranted
            }
            let outOfOrder = free
            let gather = Gather<R>(count: shards.count) { [self] results in
                remote.whenDurable { loop.post { [self] in armHere(local, remoteIndexes, results, outOfOrder, step, done) } }
            }
            for (k, shard) in shards.enumerated() {
                shard.arm(entries[remoteIndexes[k]], outOfOrder: outOfOrder, conclude: true) { shard in
                    gather.deliver(k, step(shard))
                }
            }
        }
    }

    /// The other loop's part ran: counts the transaction, then runs the step
    /// on this loop's participants.
    private func armHere<R>(
        _ local: [Int], _ remoteIndexes: [Int], _ remoteResults: [R], _ outOfOrder: Bool,
        _ step: @escaping (Shard) -> R, _ done: @escaping ([R]) -> Void
    ) {
        // Abandoned meanwhile by the watchdog: only what could be taken back ran.
        guard !abandoned else { return }
        noteScheduled(outOfOrder: outOfOrder)
        let gather = Gather<R>(count: local.count) { [self] localResults in
            guard !abandoned else { return }
            var results = [R?](repeating: nil, count: participants.count)
            for (k, i) in remoteIndexes.enumerated() { results[i] = remoteResults[k] }
            for (k, i) in local.enumerated() { results[i] = localResults[k] }
            stepsDone &+= 1
            done(results.map { $0! })
        }
        let loop = self.loop
        for (k, i) in local.enumerated() {
            shardSet.shards[participants[i]].arm(entries[i], outOfOrder: outOfOrder, conclude: true) { shard in
                let result = step(shard)
                // Delivered after the shard finished its bookkeeping.
                loop.defer_ { gather.deliver(k, result) }
            }
        }
    }

    /// A shard reported this transaction waiting past the watchdog's bound.
    /// Every participant holds the step back and says whether anything that
    /// cannot be taken back ran there; then the transaction is abandoned
    /// everywhere, or the steps are given back and it is only reported.
    /// While the coordinator waits for these answers it arms nothing new (it
    /// is itself waiting for the step). A shard may still run its step (one
    /// that can be taken back) just before the question reaches it; if that
    /// completed the step everywhere, its results reach this loop before the
    /// answers do, `stepsDone` moves, and nothing is abandoned.
    func watchdogFired() {
        guard !watchdogBusy, !abandoned, !entries.isEmpty else { return }
        watchdogBusy = true
        let stats = shardSet.stats[loop.index]
        let entries = self.entries
        let stepsBefore = stepsDone
        let gather = Gather<Bool>(count: participants.count) { [self] safe in
            watchdogBusy = false
            let shardList = participants.map(String.init).joined(separator: ",")
            let movedOn = stepsDone != stepsBefore
            if let onAbandon, !movedOn, safe.allSatisfy({ $0 }) {
                abandoned = true
                self.onAbandon = nil
                for (i, shardIndex) in participants.enumerated() {
                    let entry = entries[i]
                    post(to: shardSet.shards[shardIndex]) { shard in shard.abandon(entry) }
                }
                stats.scheduleTimeouts.add(1, ordering: .relaxed)
                shardSet.watchdogLog(
                    "damselfly: transaction \(txid) (\(label.isEmpty ? "?" : label)) waited past tx_schedule_timeout_ms "
                        + "for shards \(shardList): abandoned, locks released")
                onAbandon()
                return
            }
            for (i, shardIndex) in participants.enumerated() where safe[i] {
                let entry = entries[i]
                post(to: shardSet.shards[shardIndex]) { shard in shard.restore(entry) }
            }
            if !reportedStuck && !movedOn {
                reportedStuck = true
                stats.stuck.add(1, ordering: .relaxed)
                shardSet.watchdogLog(
                    "damselfly: transaction \(txid) (\(label.isEmpty ? "?" : label)) waited past tx_schedule_timeout_ms "
                        + "for shards \(shardList) and cannot be abandoned (part of it already ran); still waiting")
            }
        }
        let loop = self.loop
        for (i, shardIndex) in participants.enumerated() {
            let shard = shardSet.shards[shardIndex]
            let entry = entries[i]
            if shard.loop === loop {
                gather.deliver(i, shard.withhold(entry))
            } else {
                shard.loop.post {
                    let safe = shard.withhold(entry)
                    loop.post { gather.deliver(i, safe) }
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
