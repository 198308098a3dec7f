import DamselflyACL
import DamselflyCommands
import DamselflyRESP
import DamselflyRuntime
import DamselflyStorage
import DamselflyTransactions

/// MULTI / EXEC / DISCARD / WATCH / UNWATCH.
///
/// Between MULTI and EXEC the connection queues commands (see
/// `Connection.dispatch`). EXEC locks the keys of every queued command (and
/// the watched keys) in one transaction — whole shards when a queued command
/// has no keys but touches the keyspace (FLUSHDB, KEYS, ...) — waits until it
/// is at the head of every shard queue, checks WATCH, and then runs the
/// commands one after another straight on their shards: nothing else can
/// touch those keys until the last one is done. Without WATCH, a block of
/// commands whose keys each lie on one shard runs squashed instead
/// (``SquashedExec``, `--multi_exec_squash`): each shard's share as one
/// operation, in one round trip.
enum MultiFamily {
    static func register(_ r: CommandRegistry, server: Server) {
        let g = "transactions"
        r.register("multi", arity: 1, flags: [.fast, .loading, .stale, .noscript], group: g) { call in
            guard call.client.multiQueue == nil else { return call.reply(.error("ERR MULTI calls can not be nested")) }
            call.client.multiQueue = []
            call.client.multiFailed = false
            call.reply(.ok)
        }
        r.register("discard", arity: 1, flags: [.fast, .loading, .stale, .noscript], group: g) { call in
            guard call.client.multiQueue != nil else { return call.reply(.error("ERR DISCARD without MULTI")) }
            call.client.multiQueue = nil
            unwatch(call.client, shardSet: call.shardSet)
            call.reply(.ok)
        }
        r.register("watch", arity: -2, flags: [.fast, .loading, .stale, .noscript], firstKey: 1, lastKey: -1, keyStep: 1, group: g) { call in
            guard call.client.multiQueue == nil else { return call.reply(.error("ERR WATCH inside MULTI is not allowed")) }
            let client = call.client
            let token = client.watchToken ?? WatchToken()
            client.watchToken = token
            let database = client.database
            var byShard: [Int: [KeyRef]] = [:]
            for i in 1..<call.args.count {
                let key = call.key(i)
                let shard = key.withBytes { call.shardSet.shardIndex(of: $0, hash: key.hash) }
                byShard[shard, default: []].append(key)
                client.watchedKeys.append((shard, database, key.hash))
            }
            let plan = byShard.sorted { $0.key < $1.key }
            var remaining = plan.count
            for (shardIndex, keys) in plan {
                call.shardSet.hop(from: call.loop, to: shardIndex, { shard -> [KeyRef] in
                    let db = shard.database(database)
                    let now = Clock.wallMillis()
                    var existing: [KeyRef] = []
                    for key in keys {
                        shard.watch(lockFingerprint(keyHash: key.hash, database: database), token)
                        if key.withBytes({ db.find($0, hash: key.hash, nowMs: now) }) != nil { existing.append(key) }
                    }
                    return existing
                }, done: { existing in
                    for key in existing { client.watchedExisting.append((shardIndex, database, key.bytes, key.hash)) }
                    remaining -= 1
                    if remaining == 0 { call.reply(.ok) }
                })
            }
        }
        r.register("unwatch", arity: 1, flags: [.fast, .loading, .stale, .noscript], group: g) { call in
            unwatch(call.client, shardSet: call.shardSet)
            call.reply(.ok)
        }
        r.register("exec", arity: 1, flags: [.loading, .stale, .noscript], group: g) { call in
            exec(call, server: server)
        }
    }

    /// Forgets the client's watched keys (on their shards, asynchronously).
    static func unwatch(_ client: ClientState, shardSet: ShardSet) {
        guard let token = client.watchToken else { return }
        for (shardIndex, database, hash) in client.watchedKeys {
            let shard = shardSet.shards[shardIndex]
            let fingerprint = lockFingerprint(keyHash: hash, database: database)
            if shard.loop === client.loop {
                shard.whenAvailable { shard.unwatch(fingerprint, token) }
            } else {
                shard.postWhenAvailable { shard.unwatch(fingerprint, token) }
            }
        }
        client.watchedKeys = []
        client.watchedExisting = []
        client.watchToken = nil
    }

    static func exec(_ call: CommandCall, server: Server) {
        let client = call.client
        guard let queued = client.multiQueue else { return call.reply(.error("ERR EXEC without MULTI")) }
        client.multiQueue = nil
        if client.multiFailed {
            client.multiFailed = false
            unwatch(client, shardSet: call.shardSet)
            return call.reply(.error("EXECABORT Transaction discarded because of previous errors."))
        }
        let shardSet = call.shardSet
        let token = client.watchToken
        let watched = client.watchedKeys
        let watchedExisting = client.watchedExisting
        // Which locks: every key of every queued command, plus the watched
        // keys; whole shards when a command walks the keyspace or changes
        // the database mid-way.
        var global = false
        var byShard: [Int: [LockFingerprint]] = [:]
        var database = client.database
        // Squashed (see ExecBatch): no WATCH, and every command has keys, all
        // on one shard, and nothing that reaches past them.
        var squash = server.config.multiExecSquash && token == nil && watched.isEmpty
        for command in queued {
            let spec = command.spec
            if spec.execLocksEveryShard { global = true }
            let positions = command.keyPositions
            if positions.isEmpty && spec.firstKey == 0 && spec.group != "connection" && spec.group != "server" && spec.group != "transactions" {
                global = true
            }
            if squash && (positions.isEmpty || !SquashedExec.admits(spec)) { squash = false }
            var commandShard = -1
            for p in positions {
                let key = KeyRef(command.arguments[p])
                let shard = key.withBytes { shardSet.shardIndex(of: $0, hash: key.hash) }
                byShard[shard, default: []].append(lockFingerprint(keyHash: key.hash, database: database))
                if commandShard != shard {
                    if commandShard >= 0 { squash = false }
                    commandShard = shard
                }
            }
            if spec.execLocksEveryShard, spec.name == "select", command.arguments.count == 2,
               let n = Int(String(decoding: command.arguments[1], as: UTF8.self)) {
                database = n
            }
        }
        for (shard, db, hash) in watched {
            byShard[shard, default: []].append(lockFingerprint(keyHash: hash, database: db))
        }
        let finish: ([Reply]?) -> Void = { replies in
            unwatch(client, shardSet: shardSet)
            call.reply(replies.map { .array($0) } ?? .nullArray)
        }
        if !global && byShard.isEmpty {
            // Nothing to lock (PING, ECHO, INFO, ...).
            if token?.dirty.load(ordering: .acquiring) == true { return finish(nil) }
            ExecRunner(call: call, queued: queued) { finish($0) }.start()
            return
        }
        let locks = byShard.sorted { $0.key < $1.key }.map { ($0.key, ShardLockSet(fingerprints: $0.value, mode: .exclusive)) }
        // Over several shards the squashed commands run at once: keep them one
        // at a time while someone may see their order (keyspace notifications,
        // client tracking's invalidations), as pipeline squashing does.
        if squash && byShard.count > 1
            && (shardSet.keyspaceEvents.flags.load(ordering: .relaxed) != 0 || shardSet.tracking.isActive) {
            squash = false
        }
        if squash && !global {
            SquashedExec(call: call, queued: queued, locks: locks) { finish($0) }.start()
            return
        }
        let transaction = Transaction(shardSet: shardSet, loop: call.loop, locksByShard: locks, global: global)
        transaction.label = "exec"
        transaction.onAbandon = {
            unwatch(client, shardSet: shardSet)
            call.reply(.error(CommandCall.abandonedError))
        }
        transaction.schedule {
            // Reach the head of every queue first; from then on nothing else
            // runs on these keys until the transaction concludes.
            // Clients blocked on keys the block pushes to are served after the
            // whole block, so they see its final state.
            transaction.execute(conclude: false, { shard in
                shard.suspendServing()
                // A watched key that existed at WATCH and is gone now expired
                // meanwhile: Redis counts that as a change.
                let now = Clock.wallMillis()
                for (shardIndex, db, key, hash) in watchedExisting where shardIndex == shard.index {
                    let gone = key.withUnsafeBytes { shard.database(db).find($0, hash: hash, nowMs: now) } == nil
                    if gone { token?.dirty.store(true, ordering: .releasing) }
                }
                return 0
            }, undo: { shard in shard.resumeServing() }, done: { _ in
                let release: () -> Void = {
                    transaction.execute(conclude: true, { shard in shard.resumeServing(); shard.publishStats(); return 0 }, done: { _ in })
                }
                if token?.dirty.load(ordering: .acquiring) == true {
                    release()
                    return finish(nil)
                }
                ExecRunner(call: call, queued: queued) { replies in
                    release()
                    finish(replies)
                }.start()
            })
        }
    }
}

/// Runs EXEC's queued commands one after another on the connection's loop,
/// collecting their replies. Iterative, so a long block of inline commands
/// does not grow the stack.
final class ExecRunner: ReplySink {
    private let call: CommandCall
    private let queued: [QueuedCommand]
    private let done: ([Reply]) -> Void
    private var replies: [Reply] = []
    private var index = 0
    private var running = false
    private var completedDuringHandler = false
    private let arguments = CommandArguments()
    private var keepAlive: ExecRunner?

    /// The connection that sent EXEC.
    var connection: Connection? { call.sink as? Connection }

    init(call: CommandCall, queued: [QueuedCommand], done: @escaping ([Reply]) -> Void) {
        self.call = call
        self.queued = queued
        self.done = done
    }

    func start() {
        keepAlive = self
        runFromCurrent()
    }

    private func runFromCurrent() {
        while index < queued.count {
            let command = queued[index]
            arguments.removeAll()
            command.view(into: arguments)
            if let refusal = ExecRunner.refusal(call, command, arguments) {
                replies.append(refusal)
                index += 1
                continue
            }
            running = true
            completedDuringHandler = false
            command.spec.handler(CommandCall(
                args: arguments, client: call.client, engine: call.engine, spec: command.spec, sink: self, insideExec: true))
            running = false
            if !completedDuringHandler { return }  // resumes from complete()
        }
        keepAlive = nil
        done(replies)
    }

    func complete(_ reply: Reply) {
        ExecRunner.count(queued[index], reply, on: call.loop)
        replies.append(reply)
        index += 1
        if running {
            completedDuringHandler = true
        } else {
            runFromCurrent()
        }
    }
}

extension QueuedCommand {
    /// Appends views of the command's arguments to `arguments` (valid while the command lives).
    func view(into arguments: CommandArguments) {
        for argument in self.arguments {
            argument.withUnsafeBytes { arguments.append($0) }
        }
    }
}

extension ExecRunner {
    /// The reply of a queued command the client's ACL rules no longer allow
    /// at EXEC (allowed when it was queued; the rules changed since), nil
    /// when it may run. Like Redis, such a command is not run and not counted.
    static func refusal(_ call: CommandCall, _ command: QueuedCommand, _ arguments: CommandArguments) -> Reply? {
        guard let user = call.client.user, !user.unrestricted.load(ordering: .relaxed),
              let refusal = call.engine.aclRefusal(call.client, user, command.spec, arguments, context: .multi)
        else { return nil }
        return .error(AclFamily.execRefusal(refusal))
    }

    /// A command run by EXEC, in its stats (calls, and failed calls).
    static func count(_ command: QueuedCommand, _ reply: Reply, on loop: EventLoop) {
        let list = command.arguments.count > 1
            ? command.arguments[1].withUnsafeBytes { command.spec.statsList(subcommand: $0) }
            : command.spec.statsList(subcommand: nil)
        if let stats = list?[loop.index] {
            stats.calls.addOwned(1)
            if reply.isError { stats.failedCalls.addOwned(1) }
        }
    }
}

/// EXEC with its commands' shard work squashed (`--multi_exec_squash`,
/// ``ExecBatch``): the handlers run first, one after another on the
/// connection's loop, leaving their work in the batch; then one operation
/// per shard runs that shard's pieces in order, under locks on every key of
/// the transaction: on one shard as a single-shard command (inline when it
/// is this loop's and the keys are free), on several as one transaction
/// step that concludes it. Nothing else touches those keys in between, so
/// no client sees the transaction half done, as with the one-command-at-a-
/// time path; the commands of different shards run at the same time.
final class SquashedExec {
    /// One queued command's place: its arguments (kept until its work has
    /// run, which may read them) and its reply.
    final class Slot: ReplySink {
        let arguments = CommandArguments()
        var reply: Reply?
        /// Refused by ACL at EXEC: not run, so not counted (as ``ExecRunner``).
        var refused = false
        unowned let owner: SquashedExec
        init(owner: SquashedExec) { self.owner = owner }
        var execBatch: ExecBatch? { owner.batch }
        func complete(_ reply: Reply) {
            self.reply = reply
            owner.slotDone()
        }
    }

    private let call: CommandCall
    private let queued: [QueuedCommand]
    private let locks: [(Int, ShardLockSet)]
    private let done: ([Reply]) -> Void
    let batch: ExecBatch
    private var slots: [Slot] = []
    private var pending = 0
    private var ran = false
    private var keepAlive: SquashedExec?

    /// Whether EXEC may run `spec`'s shard work in a batch, as far as the
    /// command goes: keys at table positions (EXEC checks they are all on one
    /// shard), nothing that blocks, reaches past them or administers the
    /// server. The same test as a squashed pipeline's, less the one key: a
    /// command with all its keys on one shard hands all its shard work over
    /// while its handler runs (one piece; the two-step commands' steps run as
    /// one piece on one shard).
    static func admits(_ spec: CommandSpec) -> Bool {
        spec.firstKey > 0 && !spec.flags.contains(.blocking) && !spec.flags.contains(.admin)
            && !spec.flags.contains(.noscript) && !spec.tableFlags.contains(.movableKeys) && !spec.hasSubcommands
    }

    init(call: CommandCall, queued: [QueuedCommand], locks: [(Int, ShardLockSet)], done: @escaping ([Reply]) -> Void) {
        self.call = call
        self.queued = queued
        self.locks = locks
        self.done = done
        batch = ExecBatch(commands: queued.count)
        slots.reserveCapacity(queued.count)
    }

    func start() {
        keepAlive = self
        let stats = call.shardSet.stats[call.loop.index]
        stats.multiSquashExecutions.addOwned(1)
        stats.multiSquashCommands.addOwned(queued.count)
        pending = queued.count
        batch.collecting = true
        for command in queued {
            let slot = Slot(owner: self)
            slots.append(slot)
            command.view(into: slot.arguments)
            if let refusal = ExecRunner.refusal(call, command, slot.arguments) {
                slot.refused = true
                slot.complete(refusal)
                continue
            }
            command.spec.handler(CommandCall(
                args: slot.arguments, client: call.client, engine: call.engine, spec: command.spec, sink: slot,
                insideExec: true))
        }
        batch.collecting = false
        guard !batch.pieces.isEmpty else { return ranEverywhere() }
        let shardSet = call.shardSet
        // One shard: a single-shard command's path (a transaction of its own
        // with replicas, whose stream takes EXEC's writes as one unit).
        if locks.count == 1, batch.pieces.allSatisfy({ $0.shard == locks[0].0 }), !shardSet.inOrderOnly.load(ordering: .relaxed) {
            let batch = self.batch
            shardSet.runSingleShard(from: call.loop, shard: locks[0].0, locks: locks[0].1, { shard in
                batch.run(on: shard)
            }, done: { [self] deliveries in
                for deliver in deliveries { deliver() }
                ranEverywhere()
            })
            return
        }
        let transaction = Transaction(shardSet: shardSet, loop: call.loop, locksByShard: locks)
        transaction.label = "exec"
        transaction.onAbandon = { [self] in
            keepAlive = nil
            call.reply(.error(CommandCall.abandonedError))
        }
        let batch = self.batch
        // Scheduled and run in one round trip where it can (``Transaction/run(_:done:)``).
        transaction.run({ shard in
            // Clients blocked on these keys are served after the whole
            // block, so they see its final state.
            shard.suspendServing()
            let deliveries = batch.run(on: shard)
            shard.resumeServing()
            return deliveries
        }, done: { [self] results in
            for deliveries in results {
                for deliver in deliveries { deliver() }
            }
            ranEverywhere()
        })
    }

    /// The transaction's operations ran. Pieces for a shard it did not lock
    /// (a command whose work is not where its keys are) go now, by plain
    /// hops, one after another in their order, as EXEC's commands did before
    /// the batch; none is expected.
    private func ranEverywhere() {
        let rest = batch.pieces.filter { piece in !locks.contains { $0.0 == piece.shard } }
        runLeft(rest[...])
    }

    private func runLeft(_ rest: ArraySlice<ExecBatch.Piece>) {
        guard let piece = rest.first else {
            ran = true
            return finishIfDone()
        }
        call.shardSet.hop(from: call.loop, to: piece.shard, { shard in piece.run(shard) }, done: { [self] deliver in
            deliver()
            runLeft(rest.dropFirst())
        })
    }

    fileprivate func slotDone() {
        pending -= 1
        finishIfDone()
    }

    private func finishIfDone() {
        guard ran, pending == 0, keepAlive != nil else { return }
        keepAlive = nil
        var replies: [Reply] = []
        replies.reserveCapacity(slots.count)
        for (command, slot) in zip(queued, slots) {
            let reply = slot.reply ?? .error("ERR EXEC lost a reply")
            if !slot.refused { ExecRunner.count(command, reply, on: call.loop) }
            replies.append(reply)
        }
        done(replies)
    }
}
