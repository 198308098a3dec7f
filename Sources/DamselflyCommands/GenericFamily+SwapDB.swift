import DamselflyRESP
import DamselflyRuntime
import DamselflyStorage
import DamselflyTransactions

/// SWAPDB index1 index2: every shard swaps its part of the two databases
/// under one global transaction, so no client ever sees one shard swapped
/// and another not.
extension GenericFamily {
    public static func registerSwapDB(_ r: CommandRegistry) {
        r.register("swapdb", arity: 3, flags: [.write, .fast], group: "keyspace", handler: swapdb)
    }

    static func swapdb(_ call: CommandCall) {
        guard let first = call.integer(1), first >= Int64(Int32.min), first <= Int64(Int32.max) else {
            return call.reply(.error("ERR invalid first DB index"))
        }
        guard let second = call.integer(2), second >= Int64(Int32.min), second <= Int64(Int32.max) else {
            return call.reply(.error("ERR invalid second DB index"))
        }
        let count = call.shardSet.shards[0].keyspace.databaseCount
        let a = Int(first), b = Int(second)
        guard a >= 0, a < count, b >= 0, b < count else { return call.reply(.outOfRangeDB) }
        runOnEveryShard(call) { shard in swapOnShard(shard, a, b) }
    }

    /// Runs `work` on every shard at once under a global transaction (inside
    /// EXEC, whose transaction already holds every shard whole, by plain
    /// hops), journals the command once, then replies OK: FLUSHALL, FLUSHDB,
    /// SWAPDB.
    static func runOnEveryShard(_ call: CommandCall, _ work: @escaping (Shard) -> Void) {
        let database = call.client.database
        let journalArgs = call.journalArguments()
        var txid: UInt64 = 0
        let step: (Shard) -> Int = { shard in
            if let journalArgs {
                if call.insideExec || call.script != nil {
                    if shard.index == 0 { shard.journal?.append(database: database, journalArgs) }
                } else {
                    shard.journal?.appendTransaction(
                        txid: txid, participants: call.shardSet.count, database: database,
                        command: shard.index == 0 ? journalArgs : nil)
                }
            }
            work(shard)
            return 0
        }
        if call.insideExec {
            call.shardSet.broadcast(from: call.loop, step, done: { _ in call.reply(.ok) })
            return
        }
        let transaction = call.abandonable(Transaction(globalOn: call.shardSet, loop: call.loop))
        transaction.schedule {
            txid = transaction.txid
            transaction.execute(conclude: true, step, done: { _ in call.reply(.ok) })
        }
    }

    /// One shard's part of SWAPDB. A watched key of either database is
    /// touched when it is live in either of them (its value changes or
    /// appears; Redis's touchAllWatchedKeysInDb both ways), and a client
    /// blocked on a key of either database is woken if the key exists there
    /// after the swap (its own check decides whether it can be served).
    static func swapOnShard(_ shard: Shard, _ a: Int, _ b: Int) {
        guard a != b else { return }
        let now = Clock.wallMillis()
        var touched: [LockFingerprint] = []
        if shard.hasWatchers {
            for index in [a, b] {
                let db = shard.database(index)
                db.forEach(nowMs: now) { entry in
                    let hash = db.hash(at: entry)
                    touched.append(lockFingerprint(keyHash: hash, database: a))
                    touched.append(lockFingerprint(keyHash: hash, database: b))
                }
            }
        }
        shard.keyspace.swapDatabases(a, b)
        shard.touchWatchers(touched)
        if shard.hasBlockedClients {
            for index in [a, b] {
                let db = shard.database(index)
                db.forEach(nowMs: now) { entry in
                    shard.signalKeyReady(lockFingerprint(keyHash: db.hash(at: entry), database: index))
                }
            }
        }
        shard.publishStats()
    }
}
