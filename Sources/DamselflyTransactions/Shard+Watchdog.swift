import DamselflyRuntime
import Synchronization

/// The transaction watchdog's work on one shard (`--tx_schedule_timeout_ms`).
///
/// No clock is read per transaction: a periodic sweep on each shard's loop
/// counts, for every coordinated transaction that is armed with a step and
/// still waiting for its turn in the queue, how many sweeps found it waiting.
/// At the bound it tells the coordinator (``Transaction/watchdogFired()``),
/// which asks every participant to hold the step back (``withhold(_:)``) and
/// then either abandons the transaction everywhere (``abandon(_:)``) or, when
/// some shard already ran a step that cannot be taken back, lets it go on
/// (``restore(_:)``) and only reports it.
extension Shard {
    /// One sweep: entries that have waited `limit` sweeps are reported once.
    func sweepWaitingTransactions(limit: Int) {
        assertOnShard()
        for entry in queue where entry.pendingStep != nil {
            guard let coordinator = entry.coordinator else { continue }
            entry.waitedSweeps += 1
            if entry.waitedSweeps == limit {
                coordinator.loop.post { coordinator.watchdogFired() }
            }
        }
    }

    /// Holds back `entry`'s armed step. True when nothing of the transaction
    /// that cannot be taken back has run here (so abandoning it is safe).
    func withhold(_ entry: ShardTransaction) -> Bool {
        assertOnShard()
        guard !entry.ranIrreversibly, queue.contains(where: { $0 === entry }) else { return false }
        if let step = entry.pendingStep {
            entry.withheldStep = step
            entry.pendingStep = nil
        }
        return true
    }

    /// Gives `entry` back the step ``withhold(_:)`` took: it waits on as before.
    func restore(_ entry: ShardTransaction) {
        assertOnShard()
        guard let step = entry.withheldStep else { return }
        entry.withheldStep = nil
        entry.pendingStep = step
        entry.waitedSweeps = 0
        poll()
    }

    /// Takes back what the transaction's reversible steps did here, removes it
    /// from the queue and releases its locks; whatever waited behind it runs.
    func abandon(_ entry: ShardTransaction) {
        assertOnShard()
        entry.withheldStep = nil
        entry.pendingStep = nil
        entry.pendingUndo = nil
        if let undo = entry.undo {
            entry.undo = nil
            undo(self)
        }
        cancel(entry)
    }
}

extension ShardSet {
    /// Starts the watchdog: a transaction armed on a shard and still waiting
    /// there after about `timeoutMillis` is reported to its coordinator
    /// (0: off). Call once, before clients arrive; `log` gets one line per
    /// transaction abandoned or found stuck.
    public func startWatchdog(timeoutMillis: Int, log: @escaping @Sendable (String) -> Void) {
        guard timeoutMillis > 0 else { return }
        // About ten sweeps per bound, between 10 ms and 1 s apart; one more
        // sweep than the bound needs, as the first may come right after arming.
        let interval = min(1000, max(10, timeoutMillis / 10))
        let limit = (timeoutMillis + interval - 1) / interval + 1
        watchdog.withLock { $0 = Watchdog(log: log) }
        watchdogOn.store(true, ordering: .releasing)
        for shard in shards {
            shard.loop.post {
                shard.loop.addPeriodicTimer(intervalMillis: interval) { shard.sweepWaitingTransactions(limit: limit) }
            }
        }
    }

    func watchdogLog(_ line: String) {
        let log = watchdog.withLock { $0?.log }
        log?(line)
    }
}

/// What the watchdog was started with.
struct Watchdog: Sendable {
    let log: @Sendable (String) -> Void
}
