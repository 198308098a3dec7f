import DamselflyRESP
import DamselflyRuntime
import DamselflyStorage
import DamselflyTransactions
import Synchronization

/// Where a command's reply goes: the connection (or the test harness).
public protocol ReplySink: AnyObject {
    /// Called exactly once per command, on the connection's loop.
    func complete(_ reply: Reply)
    /// Where a command answering here sends its hop to another loop's shard
    /// along with others (a squashed pipeline run's); nil: alone.
    ///
    /// A sink that has a batch promises that the command's argument bytes
    /// stay where they are, unchanged, until ``complete(_:)`` is called: a
    /// key that travels in the batch is read there in place, not copied
    /// (the connection keeps its receive buffer from moving while a squashed
    /// run is out).
    var hopBatch: KeyHopBatch? { get }
    /// Where a command inside a squashed EXEC leaves its shard work, to run
    /// with the other commands' under the transaction's locks (``ExecBatch``);
    /// nil: each piece is a plain hop of its own.
    var execBatch: ExecBatch? { get }
    /// ``complete(_:)`` for a reply that arrived at `nanos` (``Clock/monotonicNanos()``),
    /// read once for all the replies of a ``KeyHopBatch``; a sink that times
    /// its command takes it instead of reading the clock.
    func complete(_ reply: Reply, arrivedAt nanos: UInt64)
}

extension ReplySink {
    public var hopBatch: KeyHopBatch? { nil }
    public var execBatch: ExecBatch? { nil }
    public func complete(_ reply: Reply, arrivedAt nanos: UInt64) { complete(reply) }
}

/// A key copied out of the receive buffer with its hash, ready to travel to
/// its shard.
public struct KeyRef: @unchecked Sendable {
    // Invariant behind @unchecked Sendable: a borrowing key (``borrowedBits``
    // non-zero) is made only by ``CommandCall/runOnKey(argument:mode:journal:_:)``,
    // for an operation that either runs at once on the connection's own thread
    // (gone when the handler returns) or travels in a ``KeyHopBatch``, whose
    // sink keeps the bytes in place until the reply (``ReplySink/hopBatch``):
    // the shard's thread reads them after the batch's post (a release and an
    // acquire) and before its return; every other key owns its bytes.
    /// The key's own bytes; nil for a borrowing key (no array to count
    /// references of, where an empty one cost a retain and a release at every copy).
    @usableFromInline let owned: [UInt8]?
    public let hash: UInt64
    /// A borrowing key's bytes in the receive buffer: the address in the low
    /// 48 bits, the length in the high 16 (0: the key owns its bytes). One
    /// word, so that a key still fits an operation's existential in place
    /// (three words): a key of two words more cost GET's hop a boxed operation.
    @usableFromInline let borrowedBits: UInt

    /// Whether the key reads its bytes in place (see the invariant above): the
    /// operation it was made for may read its other arguments in place too
    /// (``ArgumentBytes``).
    @inlinable public var isBorrowed: Bool { borrowedBits != 0 }

    /// The key's bytes (a copy, for a borrowing key: what keeps them is the caller's).
    @inlinable public var bytes: [UInt8] {
        if borrowedBits != 0 { return withBytes { [UInt8]($0) } }
        return owned!
    }

    @inlinable
    public init(_ bytes: [UInt8]) {
        self.owned = bytes
        self.hash = bytes.withUnsafeBytes { KeyHash.hash($0) }
        self.borrowedBits = 0
    }

    /// A key whose hash (``KeyHash/hash(_:)`` of `bytes`) is already known.
    @inlinable
    public init(_ bytes: [UInt8], hash: UInt64) {
        self.owned = bytes
        self.hash = hash
        self.borrowedBits = 0
    }

    /// A key that reads `bytes` in place (see the invariant above), or nil
    /// when they cannot be packed into one word (a key of 64 KiB or more, an
    /// address above 2^48, an empty key).
    @inlinable
    init?(borrowing bytes: UnsafeRawBufferPointer, hash: UInt64) {
        guard let base = bytes.baseAddress, bytes.count > 0, bytes.count < 1 << 16 else { return nil }
        let address = UInt(bitPattern: base)
        guard address < 1 << 48 else { return nil }
        self.owned = nil
        self.hash = hash
        self.borrowedBits = address | UInt(bytes.count) << 48
    }

    @inlinable
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if borrowedBits != 0 {
            let base = UnsafeRawPointer(bitPattern: borrowedBits & (1 << 48 - 1))
            return try body(UnsafeRawBufferPointer(start: base, count: Int(borrowedBits >> 48)))
        }
        return try owned!.withUnsafeBytes(body)
    }
}

/// Another argument of a command whose operation
/// ``CommandCall/runOnKey(argument:mode:journal:_:)`` builds: read in place
/// when the operation's key is (``KeyRef/isBorrowed``), under the key's
/// invariant (the bytes stay where they are until the reply), else copied.
/// A one-element LPUSH's value was allocated, copied and freed on every push
/// only to be copied again into the list.
public struct ArgumentBytes: @unchecked Sendable {
    // Invariant behind @unchecked Sendable: that of a borrowing KeyRef, whose
    // operation alone holds a borrowing value (`owned` nil).
    @usableFromInline let owned: [UInt8]?
    @usableFromInline let borrowed: UnsafeRawBufferPointer

    /// Argument `index` of `args`, in place when `inPlace` (the operation's key is borrowed).
    @inlinable @inline(__always)
    public init(_ args: CommandArguments, _ index: Int, inPlace: Bool) {
        if inPlace {
            owned = nil
            borrowed = args[index]
        } else {
            owned = args.bytes(index)
            borrowed = UnsafeRawBufferPointer(start: nil, count: 0)
        }
    }

    @inlinable
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if let owned { return try owned.withUnsafeBytes(body) }
        return try body(borrowed)
    }

    /// The bytes as an array: a copied argument's as it is, one read in place copied once.
    @inlinable
    public var array: [UInt8] {
        if let owned { return owned }
        return [UInt8](borrowed)
    }

    /// The bytes as a string value to store: a copied argument's array as it is, one
    /// read in place copied once (``StoredValue/string(_:)``).
    @inlinable
    public var storedString: StoredValue {
        if let owned { return .string(owned) }
        return .string(borrowed)
    }
}

/// One command being run: its arguments (views into the receive buffer,
/// valid only until the handler returns), the client, and the engine.
public struct CommandCall {
    public let args: CommandArguments
    public let client: ClientState
    /// Unowned, as `spec`: a call is built for every command and copied into
    /// the closures it sends, and counting these two references cost more than
    /// the command's lookup. Safe because the engine (owned by the server, or
    /// by the test harness) outlives every command it runs: a stopped server's
    /// loops run nothing more.
    public unowned(unsafe) let engine: Engine
    /// Unowned: every spec is registered when the engine starts and is kept
    /// by its registry as long as the engine lives.
    public unowned(unsafe) let spec: CommandSpec
    /// Held strongly: the closures a command sends to other threads capture
    /// the call or its sink, and may come back after the connection closed
    /// (a hop, a transaction, a parked pop, a script); the sink must still be
    /// there to take, and drop, the reply. See "Who owns a connection" in
    /// docs/architecture.md.
    public let sink: ReplySink
    /// The command runs inside EXEC, whose transaction already holds every
    /// lock it needs and sits at the head of every shard queue it touches:
    /// shard work is sent straight to the shards, with no scheduling.
    public let insideExec: Bool
    /// The command was called by a Lua script (redis.call): it runs
    /// synchronously, on the script's shard or on shards lent to the script.
    public let script: ScriptExecution?

    public init(
        args: CommandArguments, client: ClientState, engine: Engine, spec: CommandSpec, sink: ReplySink,
        insideExec: Bool = false, script: ScriptExecution? = nil
    ) {
        self.args = args
        self.client = client
        self.engine = engine
        self.spec = spec
        self.sink = sink
        self.insideExec = insideExec
        self.script = script
    }

    /// Whether the command may park the client (not inside EXEC or a script).
    public var canBlock: Bool { !insideExec && script == nil }

    /// Inside a script: the shards of `shardIndexes` as the script may use
    /// them, or nil (and the script marked) when one is out of its reach.
    @usableFromInline func scriptShards(_ script: ScriptExecution, _ shardIndexes: [Int]) -> [Shard]? {
        var result: [Shard] = []
        for index in shardIndexes {
            switch script.mode {
            case .onShard(let shard):
                guard shard.index == index else {
                    script.touchedForeignKey = true
                    return nil
                }
                result.append(shard)
            case .lentShards:
                script.touchedShards.insert(index)
                result.append(shardSet.shards[index])
            }
        }
        return result
    }

    /// Whether shards must tell WATCHers about this command's keys.
    @inlinable var writes: Bool { spec.flags.contains(.write) }

    /// The command's arguments copied for the append-only journal, when the
    /// journal is on and this is a write that journals itself (blocking pops
    /// journal the pop they performed instead, scripts the commands they ran,
    /// INCRBYFLOAT the SET KEEPTTL of its result, HINCRBYFLOAT the HSET).
    @inlinable
    func journalArguments() -> [[UInt8]]? {
        guard engine.journaling, writes, !spec.flags.contains(.blocking), spec.name != "incrbyfloat", spec.name != "hincrbyfloat" else { return nil }
        return (0..<args.count).map { args.bytes($0) }
    }

    /// Commands whose TTL is relative on the wire: the journal follows them
    /// with the absolute PEXPIREAT the key ended up with.
    @usableFromInline static let relativeTTLCommands: Set<String> = [
        "set", "setex", "psetex", "getex", "expire", "pexpire", "restore", "getset",
    ]

    /// The relative TTL commands that journal only the absolute PEXPIREAT, not themselves.
    @usableFromInline static let expireCommands: Set<String> = ["expire", "pexpire"]

    @inlinable public var loop: EventLoop { client.loop }
    @inlinable public var shardSet: ShardSet { engine.shardSet }

    /// Sends the reply (on the connection's loop).
    @inlinable
    public func reply(_ reply: Reply) { sink.complete(reply) }

    /// Argument `i` as an owned key with its hash.
    @inlinable
    public func key(_ i: Int) -> KeyRef { KeyRef(args.bytes(i), hash: args.keyHash(i)) }

    /// Argument `i` parsed as a strict 64-bit integer.
    @inlinable
    public func integer(_ i: Int) -> Int64? { RedisNumber.parseInt64(args[i]) }

    @inlinable
    public func double(_ i: Int) -> Double? { RedisNumber.parseDouble(args[i]) }

    /// Argument `i` as Redis's `getIntFromObjectOrReply` reads it (a 64-bit integer that must
    /// also fit 32 bits, with Redis's two error texts); nil once it has replied.
    public func int32OrReply(_ i: Int) -> Int? {
        guard let n = integer(i) else { reply(.notInteger); return nil }
        guard n >= Int64(Int32.min), n <= Int64(Int32.max) else {
            reply(.error("ERR value is out of range, value must between -2147483648 and 2147483647"))
            return nil
        }
        return Int(n)
    }

    @inlinable
    public func isArg(_ i: Int, _ lowercase: StaticString) -> Bool { args.equalsASCIICaseInsensitive(i, lowercase) }

    /// The `[COUNT n]` tail of LMPOP, ZMPOP, BLMPOP and BZMPOP, starting at
    /// argument `start`: 1 when absent. On a malformed tail it replies with
    /// Redis's error and returns nil.
    public func popCount(from start: Int) -> Int? {
        var count: Int64? = nil
        var i = start
        while i < args.count {
            guard count == nil, i + 1 < args.count, isArg(i, "count") else {
                reply(.syntaxError)
                return nil
            }
            guard let c = integer(i + 1), c > 0 else {
                reply(.error("ERR count should be greater than 0"))
                return nil
            }
            count = c
            i += 2
        }
        return Int(count ?? 1)
    }

    /// The wrong-arity error for this command, Redis's text.
    public var arityError: Reply { .error("ERR wrong number of arguments for '\(spec.name)' command") }

    // MARK: - Running on shards

    /// Runs `operation` on the shard owning `key` (inline, quick or queued),
    /// then replies with what it returns.
    ///
    /// `journal: false`: the operation journals what it did itself (XADD with the ID it chose).
    @inlinable
    public func runOnKey(_ key: KeyRef, mode: LockMode, journal: Bool = true, _ operation: @escaping (inout ShardContext) -> Reply) {
        runOnKey(key, mode: mode, journal: journal, operation: ClosureKeyOperation(body: operation))
    }

    /// ``runOnKey(_:mode:journal:_:)`` with the operation as a value: on the
    /// inline path nothing is allocated for it; a hop to another loop's shard
    /// is one ``KeyHop`` object, there and back.
    @inlinable
    public func runOnKey<Operation: KeyOperation>(_ key: KeyRef, mode: LockMode, journal: Bool = true, operation: Operation) {
        runOnKey(key, shardIndex: key.withBytes { shardSet.shardIndex(of: $0, hash: key.hash) }, mode: mode, journal: journal,
                 operation: operation)
    }

    /// ``runOnKey(_:mode:journal:operation:)`` with the key's shard already worked out.
    @inlinable
    func runOnKey<Operation: KeyOperation>(_ key: KeyRef, shardIndex: Int, mode: LockMode, journal: Bool, operation: Operation) {
        // The step is built in each branch, so the hop takes it without a copy.
        if script == nil && !insideExec {
            let shard = shardSet.shards[shardIndex]
            if shard.loop !== loop {
                // Another loop's shard: one object makes the trip there and back,
                // the run's batch where the command is part of a squashed run.
                if let batch = sink.hopBatch, batch.accepts(shard, from: loop) {
                    return batch.add(keyStep(key, journal: journal), operation, mode: mode, sink: sink, shard: shard, from: loop)
                }
                return KeyHop(call: self, shard: shard, step: keyStep(key, journal: journal), mode: mode, operation: operation).start()
            }
            // A squashed run in order: the command waits in it, runs with it.
            if let batch = sink.hopBatch, batch.isCollectingInOrder {
                return batch.add(keyStep(key, journal: journal), operation, mode: mode, sink: sink, shard: shard, from: loop)
            }
            // The inline path (this loop owns the shard, the key is free): the
            // operation runs now, with no closure, lock array or reply hop built.
            let step = keyStep(key, journal: journal)
            if shard.runsInline(from: loop, step.fingerprint, mode) {
                return sink.complete(shardSet.runInline(on: shard, from: loop) { step.run(on: shard) { operation.run(&$0) } })
            }
            return submitStep(step, shardIndex, mode: mode, operation: operation)
        }
        submitStep(keyStep(key, journal: journal), shardIndex, mode: mode, operation: operation)
    }

    /// ``runOnKey(_:mode:journal:operation:)`` for the key in argument `i`,
    /// with the operation built from the key and the arguments by `makeOperation`
    /// (passed in, not captured: a closure that captured the arguments retained them
    /// around the call, one that captured the call copied it whole). When the
    /// operation can run inline (this loop's shard, the key free, not in a
    /// script or EXEC, nobody tracking keys) its key reads the argument in
    /// place, and so it does when the command travels in a squashed run's
    /// ``KeyHopBatch``; otherwise the key is copied as ``key(_:)`` does and the command
    /// takes runOnKey's usual path. Only for operations that use their key (and
    /// their ``ArgumentBytes``) during `run` and keep nothing of it: what they store,
    /// they copy (GET, SET, one-element LPUSH, SADD, HSET, ZADD, INCR).
    @inlinable
    public func runOnKey<Operation: KeyOperation>(
        argument i: Int, mode: LockMode, journal: Bool = true, _ makeOperation: (KeyRef, CommandArguments) -> Operation
    ) {
        let hash = args.keyHash(i)
        let bytes = args[i]
        let shardSet = self.shardSet
        // The connection's checks may have worked the shard out (several threads); not kept here.
        let shardIndex = args.rememberedShard(of: i) ?? shardSet.shardIndex(of: bytes, hash: hash)
        if script == nil && !insideExec && !shardSet.tracking.isActive {
            let shard = shardSet.shards[shardIndex]
            if shard.loop === loop {
                if let key = KeyRef(borrowing: bytes, hash: hash) {
                    // A squashed run in order: the command waits in it (its
                    // bytes stay in place as for a hop), and runs with it.
                    if let batch = sink.hopBatch, batch.isCollectingInOrder {
                        return batch.add(
                            keyStep(key, journal: journal), makeOperation(key, args), mode: mode, sink: sink, shard: shard,
                            from: loop)
                    }
                    let step = keyStep(key, journal: journal)
                    if shard.runsInline(from: loop, step.fingerprint, mode) {
                        let operation = makeOperation(key, args)
                        return sink.complete(shardSet.runInline(on: shard, from: loop) { step.run(on: shard) { operation.run(&$0) } })
                    }
                }
            } else if let batch = sink.hopBatch, batch.accepts(shard, from: loop),
                      let key = KeyRef(borrowing: bytes, hash: hash) {
                // A squashed run's hop: the sink keeps the bytes in place until
                // the reply (``ReplySink/hopBatch``), so the key is not copied.
                return batch.add(
                    keyStep(key, journal: journal), makeOperation(key, args), mode: mode, sink: sink, shard: shard, from: loop)
            }
        }
        let key = KeyRef(args.bytes(i), hash: hash)
        runOnKey(key, shardIndex: shardIndex, mode: mode, journal: journal, operation: makeOperation(key, args))
    }

    /// What ``runOnKey(_:mode:journal:operation:)`` needs besides the operation.
    /// Always inlined: called, it cost a copy of the step and some 50 instructions per command.
    @inlinable @inline(__always)
    func keyStep(_ key: KeyRef, journal: Bool) -> KeyStep {
        let database = client.database
        let journalArgs = journal ? journalArguments() : nil
        let fixTTL = journalArgs != nil && CommandCall.relativeTTLCommands.contains(spec.name)
        return KeyStep(
            key: key, fingerprint: lockFingerprint(keyHash: key.hash, database: database), database: database,
            noTouch: client.noTouch, journalArgs: journalArgs, fixTTL: fixTTL,
            ttlOnly: fixTTL && CommandCall.expireCommands.contains(spec.name), tracking: trackingOp([key]),
            writes: writes, unchangedWhen: spec.unchangedWhen, script: script)
    }

    /// runOnKey's other paths (its key is locked on this loop's shard, inside a script or EXEC).
    @inlinable
    func submitStep<Operation: KeyOperation>(_ step: KeyStep, _ shardIndex: Int, mode: LockMode, operation: Operation) {
        submit(shardIndex, locks: ShardLockSet(fingerprints: [step.fingerprint], mode: mode)) { shard in
            step.run(on: shard) { operation.run(&$0) }
        }
    }

    /// Runs `work` on one shard holding `locks` there (inline, quick or
    /// queued; a plain hop inside EXEC), tells WATCHers when the command
    /// writes, and replies with the result.
    @inlinable
    public func runOnShard(
        _ shardIndex: Int, locks: ShardLockSet, keys: @autoclosure () -> [KeyRef] = [],
        _ work: @escaping (Shard) -> Reply
    ) {
        let writes = self.writes
        let tracking = trackingOp(keys())
        if let script {
            guard let shard = scriptShards(script, [shardIndex])?.first else {
                return sink.complete(ScriptExecution.foreignKeyError)
            }
            let reply = shard.withTracking(tracking) {
                let reply = work(shard)
                if writes {
                    script.wrote = true
                    shard.noteWritten(locks.fingerprints, changed: self.spec.mayHaveChanged(reply))
                }
                return reply
            }
            return sink.complete(reply)
        }
        let spec = self.spec
        submit(shardIndex, locks: locks) { shard in
            shard.withTracking(tracking) {
                let reply = work(shard)
                if writes { shard.noteWritten(locks.fingerprints, changed: spec.mayHaveChanged(reply)) }
                return reply
            }
        }
    }

    /// Sends a finished shard operation on its way: run at once inside a script, a
    /// plain hop inside EXEC, otherwise `runSingleShard` with `locks`; replies with its result.
    @inlinable
    func submit(_ shardIndex: Int, locks: ShardLockSet, _ operation: @escaping (Shard) -> Reply) {
        let sink = self.sink
        if let script {
            guard let shard = scriptShards(script, [shardIndex])?.first else {
                return sink.complete(ScriptExecution.foreignKeyError)
            }
            return sink.complete(operation(shard))
        }
        if insideExec {
            execHop(shardIndex, operation, done: { reply in sink.complete(reply) })
            return
        }
        shardSet.runSingleShard(from: loop, shard: shardIndex, locks: locks, operation, done: { reply in sink.complete(reply) })
    }

    /// What a client gets when the transaction watchdog abandons its command
    /// (`--tx_schedule_timeout_ms`): nothing of it ran.
    public static let abandonedError =
        "ERR command timed out waiting for keys locked by another transaction (tx_schedule_timeout_ms)"

    /// Lets the watchdog abandon `transaction` (nothing of it ran yet) with
    /// ``abandonedError`` as this command's reply.
    public func abandonable(_ transaction: Transaction) -> Transaction {
        let sink = self.sink
        transaction.label = spec.name
        transaction.onAbandon = { sink.complete(.error(Self.abandonedError)) }
        return transaction
    }

    /// The tracking context of this command for the shards (see
    /// ``TrackingOp``): nil, after one relaxed load, while no client tracks.
    @inlinable
    func trackingOp(_ keys: @autoclosure () -> [KeyRef]) -> TrackingOp? {
        // The keys are an autoclosure so that a one-key command builds no array while nobody tracks.
        guard shardSet.tracking.isActive else { return nil }
        return makeTrackingOp(keys())
    }

    @usableFromInline
    func makeTrackingOp(_ keys: [KeyRef]) -> TrackingOp {
        let database = client.database
        let readOnly = spec.flags.contains(.readonly)
        var reader = 0
        if let script {
            // Redis remembers the script command's declared keys for its
            // caller whenever the script calls a read-only command.
            if readOnly, let caller = script.caller, caller.remembersReads, !script.declaredKeys.isEmpty {
                rememberDeclaredKeys(script, caller)
            }
        } else if readOnly && client.remembersReads {
            reader = client.id
        }
        // BCAST keys gather on the connection's own client (a script's calls
        // run as a view of it), to be sent after the whole command's reply.
        let owner = script?.caller ?? client
        if owner.trackingBroadcasts == nil { owner.trackingBroadcasts = TrackingBroadcastBuffer(loop: owner.loop) }
        return TrackingOp(
            writer: client.id, reader: reader, database: database, names: keys.map(\.bytes),
            fingerprints: keys.map { lockFingerprint(keyHash: $0.hash, database: database) },
            broadcasts: owner.trackingBroadcasts)
    }

    /// A script's read: its caller may now cache the script's declared keys,
    /// remembered on their shards (the script holds them all).
    private func rememberDeclaredKeys(_ script: ScriptExecution, _ caller: ClientState) {
        let keys = script.declaredKeys
        let database = caller.database
        let op = TrackingOp(
            writer: caller.id, reader: caller.id, database: database, names: keys.map(\.bytes),
            fingerprints: keys.map { lockFingerprint(keyHash: $0.hash, database: database) })
        for (shardIndex, positions) in positionsByShard(keys) {
            let shard: Shard
            switch script.mode {
            case .onShard(let own): guard own.index == shardIndex else { continue }; shard = own
            case .lentShards: shard = shardSet.shards[shardIndex]
            }
            shard.rememberTracked(op, positions)
        }
    }

    /// A transaction over the shards of `byShard`, locking each shard's keys.
    func multiShardTransaction(_ keys: [KeyRef], _ byShard: [Int: [Int]], mode: LockMode) -> Transaction {
        let database = client.database
        return abandonable(Transaction(
            shardSet: shardSet, loop: loop,
            locksByShard: byShard.sorted { $0.key < $1.key }.map { shard, positions in
                (shard, ShardLockSet(
                    fingerprints: positions.map { lockFingerprint(keyHash: keys[$0].hash, database: database) },
                    mode: mode))
            }))
    }

    /// The positions (into `keys`) of the keys each shard owns.
    func positionsByShard(_ keys: [KeyRef]) -> [Int: [Int]] {
        // Grouped in an array by shard first, then one dictionary entry per shard: a
        // dictionary update per key hashed its shard each time (an MSET of ten keys
        // spent more on that than on its stores).
        let shardSet = self.shardSet
        var groups = [[Int]](repeating: [], count: shardSet.count)
        var used = 0
        for (i, key) in keys.enumerated() {
            let shard = key.withBytes { shardSet.shardIndex(of: $0, hash: key.hash) }
            if groups[shard].isEmpty { used += 1 }
            groups[shard].append(i)
        }
        var byShard: [Int: [Int]] = [:]
        byShard.reserveCapacity(used)
        for (shard, positions) in groups.enumerated() where !positions.isEmpty { byShard[shard] = positions }
        return byShard
    }

    /// Inside EXEC: runs `work` on each shard of `plan` by plain hops (the
    /// EXEC transaction holds the locks) and gathers the results in plan order.
    func hopEach<R>(_ plan: [Int], _ work: @escaping (Shard) -> R, done: @escaping ([R]) -> Void) {
        let gather = Gather<R>(count: plan.count, done: done)
        for (i, shardIndex) in plan.enumerated() {
            execHop(shardIndex, work, done: { gather.deliver(i, $0) })
        }
    }

    /// Inside EXEC, every piece of shard work: left in the squashed EXEC's
    /// batch while it collects its commands' work, else a plain hop (the
    /// EXEC transaction holds the locks).
    @usableFromInline
    func execHop<R>(_ shardIndex: Int, _ work: @escaping (Shard) -> R, done: @escaping (R) -> Void) {
        if let batch = sink.execBatch, batch.collecting {
            return batch.add(shardIndex, work, done: done)
        }
        sink.execBatch?.noteLateHop()
        shardSet.hop(from: loop, to: shardIndex, work, done: done)
    }

    /// Runs `body` on this connection's thread with every shard's keyspace
    /// lent to it, then `done` with its result once every shard has it back.
    ///
    /// For work that cannot name its keys in advance (a script touching
    /// undeclared keys, SORT with BY/GET patterns): a global transaction
    /// reaches the head of every shard's queue, each shard holds blocked
    /// clients back and lends its keyspace; `body` may then read and write
    /// any key synchronously, and nothing else runs on any key meanwhile.
    /// Inside EXEC (whose transaction is already global, holding every shard)
    /// the shards are lent by plain hops: a transaction of its own would queue
    /// behind EXEC's forever.
    public func withEveryShardLent<R>(_ body: @escaping () -> R, done: @escaping (R) -> Void) {
        let borrower = loop
        if insideExec {
            let all = Array(0..<shardSet.count)
            hopEach(all, { shard in
                shard.lend(to: borrower)
                return 0
            }, done: { _ in
                let result = body()
                self.hopEach(all, { shard in
                    shard.takeBack()
                    return 0
                }, done: { _ in done(result) })
            })
            return
        }
        let transaction = abandonable(Transaction(globalOn: shardSet, loop: loop))
        transaction.schedule {
            transaction.execute(conclude: false, { shard in
                shard.suspendServing()
                shard.lend(to: borrower)
                return 0
            }, undo: { shard in
                shard.takeBack()
                shard.resumeServing()
            }, done: { _ in
                let result = body()
                transaction.execute(conclude: true, { shard in
                    shard.takeBack()
                    shard.resumeServing()
                    shard.publishStats()
                    return 0
                }, done: { _ in done(result) })
            })
        }
    }

    /// Runs a command over several keys atomically: `perShard` runs once on
    /// every shard owning some of them, with the positions (into `keys`) of
    /// its keys; `merge` turns the results into the reply. One shard: the
    /// single-shard path; several: a transaction.
    public func runOnKeys<R>(
        _ keys: [KeyRef], mode: LockMode,
        perShard: @escaping (inout ShardContext, [Int]) -> R,
        merge: @escaping ([R]) -> Reply
    ) {
        let database = client.database
        let noTouch = client.noTouch
        let sink = self.sink
        let byShard = positionsByShard(keys)
        let writes = self.writes
        let fingerprints = keys.map { lockFingerprint(keyHash: $0.hash, database: database) }
        let journalArgs = journalArguments()
        let firstShard = byShard.keys.min() ?? 0
        let tracking = trackingOp(keys)
        if let script {
            let plan = byShard.keys.sorted()
            guard let shards = scriptShards(script, plan) else { return sink.complete(ScriptExecution.foreignKeyError) }
            var results: [R] = []
            for shard in shards {
                var context = ShardContext(shard: shard, databaseIndex: database, noTouch: noTouch)
                let positions = byShard[shard.index]!
                shard.withTracking(tracking, keys: positions) {
                    if positions.count > 1 { context.prefetch(keys, at: positions) }
                    results.append(perShard(&context, positions))
                    if writes {
                        script.wrote = true
                        shard.noteWritten(positions.map { fingerprints[$0] })
                    }
                }
                // Once, on the first shard: replay sends it to every shard.
                if let journalArgs, shard.index == firstShard { shard.journal?.append(database: database, journalArgs) }
            }
            return sink.complete(merge(results))
        }
        if insideExec {
            let plan = byShard.keys.sorted()
            hopEach(plan, { shard in
                var context = ShardContext(shard: shard, databaseIndex: database, noTouch: noTouch)
                let positions = byShard[shard.index]!
                if let journalArgs, shard.index == firstShard { shard.journal?.append(database: database, journalArgs) }
                return shard.withTracking(tracking, keys: positions) {
                    if positions.count > 1 { context.prefetch(keys, at: positions) }
                    let result = perShard(&context, positions)
                    if writes { shard.noteWritten(positions.map { fingerprints[$0] }) }
                    return result
                }
            }, done: { results in sink.complete(merge(results)) })
            return
        }
        if byShard.count == 1, let (shardIndex, positions) = byShard.first {
            let locks = ShardLockSet(fingerprints: fingerprints, mode: mode)
            shardSet.runSingleShard(from: loop, shard: shardIndex, locks: locks, { shard in
                var context = ShardContext(shard: shard, databaseIndex: database, noTouch: noTouch)
                let result = shard.withTracking(tracking, keys: positions) {
                    if positions.count > 1 { context.prefetch(keys, at: positions) }
                    let result = perShard(&context, positions)
                    if writes { shard.noteWritten(fingerprints) }
                    return result
                }
                if let journalArgs { shard.journal?.append(database: database, journalArgs) }
                return result
            }, done: { result in sink.complete(merge([result])) })
            return
        }
        let transaction = multiShardTransaction(keys, byShard, mode: mode)
        let positionsByShard = byShard
        let participants = transaction.participants
        // Scheduled and run in one round trip where it can (``Transaction/run(_:done:)``).
        transaction.run({ shard in
            var context = ShardContext(shard: shard, databaseIndex: database, noTouch: noTouch)
            let positions = positionsByShard[shard.index]!
            let result = shard.withTracking(tracking, keys: positions) {
                if positions.count > 1 { context.prefetch(keys, at: positions) }
                let result = perShard(&context, positions)
                if writes { shard.noteWritten(positions.map { fingerprints[$0] }) }
                return result
            }
            if let journalArgs {
                shard.journal?.appendTransaction(
                    txid: transaction.txid, participants: participants.count, database: database,
                    command: shard.index == participants.first ? journalArgs : nil)
            }
            return result
        }, done: { results in sink.complete(merge(results)) })
    }

    /// Runs a two-step atomic command over several keys: `check` runs on
    /// every owning shard, `decide` combines the checks on the connection's
    /// thread, then `apply` runs on every owning shard with the decision —
    /// all under the same locks, so nothing can change in between (MSETNX,
    /// RENAME and COPY across shards).
    /// Runs a two-step atomic command over several keys: `check` runs on
    /// every owning shard, `decide` combines the checks, then `apply` runs on
    /// every owning shard with the decision — all under the same locks, so
    /// nothing can change in between (MSETNX, RENAME and COPY across shards).
    /// With one shard both steps run in one operation unless `forceTransaction`.
    public func runOnKeysTwoPhase<C, D>(
        _ keys: [KeyRef], mode: LockMode,
        check: @escaping (inout ShardContext, [Int]) -> C,
        decide: @escaping ([C]) -> D,
        apply: @escaping (inout ShardContext, [Int], D) -> Void,
        reply: @escaping (D) -> Reply,
        forceTransaction: Bool = false,
        writtenPositions: [Int]? = nil
    ) {
        let sink = self.sink
        runOnKeysTwoPhaseRaw(
            keys, mode: mode, check: check, decide: decide, apply: apply, reply: reply,
            forceTransaction: forceTransaction, writtenPositions: writtenPositions, completion: { sink.complete($0) })
    }

    public func runOnKeysTwoPhaseRaw<C, D, R>(
        _ keys: [KeyRef], mode: LockMode,
        check: @escaping (inout ShardContext, [Int]) -> C,
        decide: @escaping ([C]) -> D,
        apply: @escaping (inout ShardContext, [Int], D) -> Void,
        reply: @escaping (D) -> R,
        forceTransaction: Bool = false,
        writtenPositions: [Int]? = nil,
        completion: @escaping (R) -> Void
    ) {
        let database = client.database
        let noTouch = client.noTouch
                let byShard = positionsByShard(keys)
        let writes = self.writes
        let fingerprints = keys.map { lockFingerprint(keyHash: $0.hash, database: database) }
        // A store command writes its destination only: its sources' WATCHers
        // and blocked clients are left alone, as Redis signals only the
        // destination. `noteWritten` is skipped on a shard holding no written key.
        let isWritten: (Int) -> Bool = writtenPositions.map { written in { written.contains($0) } } ?? { _ in true }
        let tracking = trackingOp(keys)
        func note(_ shard: Shard, _ positions: [Int]) {
            let touched = positions.filter(isWritten)
            shard.withTracking(tracking, keys: positions) {
                if !touched.isEmpty { shard.noteWritten(touched.map { fingerprints[$0] }) }
            }
        }
        let journalArgs = journalArguments()
        let firstShard = byShard.keys.min() ?? 0
        /// Both steps at once, all the keys being on `shard`: one operation
        /// outside EXEC, one piece of work inside it.
        func bothSteps(_ shard: Shard, _ positions: [Int]) -> R {
            var context = ShardContext(shard: shard, databaseIndex: database, noTouch: noTouch)
            let decision = decide([check(&context, positions)])
            apply(&context, positions, decision)
            if writes { note(shard, positions) }
            if let journalArgs { shard.journal?.append(database: database, journalArgs) }
            return reply(decision)
        }
        if let script {
            let plan = byShard.keys.sorted()
            guard let shards = scriptShards(script, plan) else {
                // The caller's reply type is generic: report through the sink.
                return self.sink.complete(ScriptExecution.foreignKeyError)
            }
            var checks: [C] = []
            for shard in shards {
                var context = ShardContext(shard: shard, databaseIndex: database, noTouch: noTouch)
                checks.append(check(&context, byShard[shard.index]!))
            }
            let decision = decide(checks)
            for shard in shards {
                var context = ShardContext(shard: shard, databaseIndex: database, noTouch: noTouch)
                let positions = byShard[shard.index]!
                apply(&context, positions, decision)
                if writes {
                    script.wrote = true
                    note(shard, positions)
                }
                if let journalArgs, shard.index == firstShard { shard.journal?.append(database: database, journalArgs) }
            }
            return completion(reply(decision))
        }
        if insideExec {
            let plan = byShard.keys.sorted()
            if plan.count == 1, let positions = byShard[plan[0]] {
                // One shard: both steps in one piece of work, as outside EXEC
                // (and all of a command's work is then handed over at once,
                // which a squashed EXEC's batch needs).
                execHop(plan[0], { shard in bothSteps(shard, positions) }, done: { result in completion(result) })
                return
            }
            hopEach(plan, { shard in
                var context = ShardContext(shard: shard, databaseIndex: database, noTouch: noTouch)
                return check(&context, byShard[shard.index]!)
            }, done: { checks in
                let decision = decide(checks)
                self.hopEach(plan, { shard in
                    var context = ShardContext(shard: shard, databaseIndex: database, noTouch: noTouch)
                    let positions = byShard[shard.index]!
                    if let journalArgs, shard.index == firstShard { shard.journal?.append(database: database, journalArgs) }
                    apply(&context, positions, decision)
                    if writes { note(shard, positions) }
                    return 0
                }, done: { _ in completion(reply(decision)) })
            })
            return
        }
        if byShard.count == 1, !forceTransaction, let (shardIndex, positions) = byShard.first {
            let locks = ShardLockSet(fingerprints: fingerprints, mode: mode)
            shardSet.runSingleShard(from: loop, shard: shardIndex, locks: locks, { shard in
                bothSteps(shard, positions)
            }, done: { result in completion(result) })
            return
        }
        let transaction = multiShardTransaction(keys, byShard, mode: mode)
        let positionsByShard = byShard
        transaction.schedule {
            transaction.execute(conclude: false, { shard in
                var context = ShardContext(shard: shard, databaseIndex: database, noTouch: noTouch)
                return check(&context, positionsByShard[shard.index]!)
            }, done: { checks in
                let decision = decide(checks)
                let participants = transaction.participants
                transaction.execute(conclude: true, { shard in
                    var context = ShardContext(shard: shard, databaseIndex: database, noTouch: noTouch)
                    let positions = positionsByShard[shard.index]!
                    apply(&context, positions, decision)
                    if writes { note(shard, positions) }
                    if let journalArgs {
                        shard.journal?.appendTransaction(
                            txid: transaction.txid, participants: participants.count, database: database,
                            command: shard.index == participants.first ? journalArgs : nil)
                    }
                    return 0
                }, done: { _ in completion(reply(decision)) })
            })
        }
    }
}

/// What a data-type command finds under a key.
public enum TypedLookup<Value> {
    case missing
    case wrongType
    case found(EntryIndex, Value)
}

/// A one-key command's shard operation as a value (issue 16: "shard operations passed as
/// values"): a struct holding what the command parsed, run by
/// ``CommandCall/runOnKey(_:mode:journal:operation:)`` on the key's shard. Where the shard
/// is the connection's own, it runs in place and costs no allocation; the closure form
/// of runOnKey allocates its context on every command.
public protocol KeyOperation {
    func run(_ context: inout ShardContext) -> Reply
}

/// ``CommandCall/runOnKey(_:mode:journal:operation:)``'s trip to the shard of
/// another loop: the step, the operation and the reply's sink in the one
/// object that travels there and back.
///
/// Not generic over the operation: a generic class's metadata is looked up in
/// the runtime's cache on every allocation (some 500 instructions); the
/// operation is kept as an existential instead, in place when it fits three
/// words (a closure, GET's key) and boxed once otherwise.
@usableFromInline
final class KeyHop: SingleShardHop {
    @usableFromInline let step: KeyStep
    @usableFromInline let operation: any KeyOperation
    @usableFromInline let sink: ReplySink
    /// Written by ``operate(on:)`` on the shard's thread, read by ``finish()`` on the origin's.
    @usableFromInline var reply: Reply = .ok

    @inlinable
    init(call: CommandCall, shard: Shard, step: consuming KeyStep, mode: LockMode, operation: consuming any KeyOperation) {
        self.step = step
        self.operation = operation
        self.sink = call.sink
        super.init(shardSet: call.shardSet, shard: shard, from: call.loop, fingerprint: step.fingerprint, mode: mode)
    }

    override func operate(on shard: Shard) {
        reply = step.run(on: shard) { operation.run(&$0) }
    }

    override func finish() {
        sink.complete(reply)
    }
}

/// The closure form of runOnKey, as a ``KeyOperation``.
@usableFromInline
struct ClosureKeyOperation: KeyOperation {
    @usableFromInline let body: (inout ShardContext) -> Reply
    @inlinable init(body: @escaping (inout ShardContext) -> Reply) { self.body = body }
    @inlinable func run(_ context: inout ShardContext) -> Reply { body(&context) }
}

/// What a one-key command's shard operation needs besides the operation
/// itself, taken on the connection's thread (``CommandCall/runOnKey(_:mode:journal:_:)``):
/// one value the inline path uses in place and the hop captures whole.
@usableFromInline
struct KeyStep {
    @usableFromInline let key: KeyRef
    @usableFromInline let fingerprint: LockFingerprint
    @usableFromInline let database: Int
    @usableFromInline let noTouch: Bool
    /// The arguments to journal (nil: the journal is off or the operation journals itself).
    @usableFromInline let journalArgs: [[UInt8]]?
    /// The command's TTL is relative on the wire: the journal adds the absolute PEXPIREAT.
    @usableFromInline let fixTTL: Bool
    /// EXPIRE/PEXPIRE: only the PEXPIREAT (or a DEL) is journalled.
    @usableFromInline let ttlOnly: Bool
    @usableFromInline let tracking: TrackingOp?
    @usableFromInline let writes: Bool
    /// The command's ``CommandSpec/unchangedWhen``: the rule, not the spec, which
    /// was retained around every write's check.
    @usableFromInline let unchangedWhen: UnchangedReply
    @usableFromInline let script: ScriptExecution?

    @inlinable
    init(
        key: KeyRef, fingerprint: LockFingerprint, database: Int, noTouch: Bool, journalArgs: [[UInt8]]?,
        fixTTL: Bool, ttlOnly: Bool, tracking: TrackingOp?, writes: Bool, unchangedWhen: UnchangedReply,
        script: ScriptExecution?
    ) {
        self.key = key
        self.fingerprint = fingerprint
        self.database = database
        self.noTouch = noTouch
        self.journalArgs = journalArgs
        self.fixTTL = fixTTL
        self.ttlOnly = ttlOnly
        self.tracking = tracking
        self.writes = writes
        self.unchangedWhen = unchangedWhen
        self.script = script
    }

    /// Runs `operation` on `shard`, the shard's thread, with what runOnShard's
    /// wrapper would add (tracking, journal, WATCH): a one-key command allocates
    /// one operation, not two.
    @inlinable
    func run(on shard: Shard, _ operation: (inout ShardContext) -> Reply) -> Reply {
        shard.withTracking(tracking) {
            var context = ShardContext(shard: shard, databaseIndex: database, noTouch: noTouch)
            let reply = operation(&context)
            if let journalArgs, let journal = shard.journal, !reply.isError {
                if ttlOnly {
                    // As Redis propagates them: the PEXPIREAT that was set, DEL when the
                    // deadline had passed, nothing when the key was left alone.
                    if case .integer(1) = reply, !context.journalAbsoluteTTL(key, journal) {
                        journal.append(database: database, [Array("DEL".utf8), key.bytes])
                    }
                } else {
                    journal.append(database: database, journalArgs)
                    if fixTTL { context.journalAbsoluteTTL(key, journal) }
                }
            }
            if writes {
                script?.wrote = true
                shard.noteWritten(fingerprint, changed: unchangedWhen.mayHaveChanged(reply))
            }
            return reply
        }
    }
}

/// What a shard-side operation sees: its shard, the client's database there,
/// and the time the operation started (one clock read per operation, so a key
/// cannot expire half-way through a command).
public struct ShardContext {
    public let shard: Shard
    public let database: Database
    public let databaseIndex: Int
    public let nowMs: Int64
    public let noTouch: Bool
    /// Set around a step whose events another shard emits for it (LMOVE's push on the
    /// destination's shard: the source's shard sends push and pop in Redis's order).
    public var notificationsMuted = false

    /// Always inlined: called, it retains what it stores beyond what the inlined form does.
    @inlinable @inline(__always)
    public init(shard: Shard, databaseIndex: Int, noTouch: Bool = false) {
        self.shard = shard
        self.databaseIndex = databaseIndex
        self.database = shard.database(databaseIndex)
        self.nowMs = Clock.wallMillis()
        self.noTouch = noTouch
        // A mark left by an operation that no write consumed must not
        // silence the next command here.
        shard.keysUnchanged = false
        // Tested first: the store released the old value, nil nearly always, on every operation.
        if shard.onlyWritten != nil { shard.onlyWritten = nil }
        shard.bookkeepingOnly = false
    }

    /// Tells the shard that this write command changed only a stream's
    /// consumer-group bookkeeping (or its last ID): saves count it and blocked
    /// readers look again, but WATCHers and tracking clients are not told,
    /// as Redis signals no modified key there. Consumed like ``markUnchanged()``.
    @inlinable
    public func markBookkeepingOnly() { shard.bookkeepingOnly = true }

    /// Starts the lookups of a command's keys on this shard together (the
    /// bucket, entry and value of each, one stage for all at a time:
    /// ``Database/prefetch(_:)``), so that a command over many random keys
    /// (MGET, MSET, DEL) overlaps their cache misses instead of waiting for
    /// each in turn. A hint: it changes nothing.
    public func prefetch(_ keys: [KeyRef], at positions: [Int]) {
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: positions.count) { hashes in
            // Through buffer pointers: a key read out of the array was copied (retained).
            keys.withUnsafeBufferPointer { keys in
                positions.withUnsafeBufferPointer { positions in
                    for i in 0..<positions.count { hashes[i] = keys[positions[i]].hash }
                }
            }
            database.prefetch(UnsafeBufferPointer(hashes))
        }
    }

    /// Tells the shard that this write command's operation changed nothing
    /// here, so no WATCHer is dirtied and no blocked client woken (Redis
    /// skips `signalModifiedKey` on such paths). Only for write commands:
    /// the shard's next ``Shard/noteWritten(_:changed:)`` consumes it.
    @inlinable
    public func markUnchanged() { shard.keysUnchanged = true }

    /// Tells the shard that of the keys this write command holds here it
    /// changed only `keys` (a store command's destination, not its sources):
    /// only their WATCHers are dirtied and their blocked clients woken.
    /// Consumed like ``markUnchanged()``; an empty list is the same as it.
    public func markOnlyWritten(_ keys: [KeyRef]) {
        shard.onlyWritten = keys.map { lockFingerprint(keyHash: $0.hash, database: databaseIndex) }
    }

    /// Emits keyspace notification `event` of class `type` for `key` (Redis's
    /// `notifyKeyspaceEvent`), in this context's database. With the class off (by
    /// default every class is) this is one compare of a field of the database.
    @inlinable
    public func notify(_ type: KeyspaceEventClass, _ event: StaticString, _ key: KeyRef) {
        notify(type, event, key.bytes)
    }

    /// `notify` for a key given as bytes (one found by a scan, a pattern's expansion).
    /// The bytes are an autoclosure: a borrowing key's `bytes` is a copy, made only
    /// for an event that goes out.
    @inlinable
    public func notify(_ type: KeyspaceEventClass, _ event: StaticString, _ key: @autoclosure () -> [UInt8]) {
        if database.notifyFlags & type.rawValue != 0, !notificationsMuted { database.emitNotification(event, key: key()) }
    }

    /// The events of a removal from an aggregate: `event`, then `del` when the removal
    /// emptied and so deleted the key (Redis's order).
    public func notifyRemoval(_ type: KeyspaceEventClass, _ event: StaticString, _ key: KeyRef) {
        guard database.notifyFlags != 0, !notificationsMuted else { return }
        notify(type, event, key)
        if key.withBytes({ database.lookup($0, hash: key.hash) }) == nil { notify(.generic, "del", key) }
    }

    /// Finds a live key for a read, counting keyspace hits and misses.
    @inlinable
    public func lookupRead(_ key: KeyRef) -> EntryIndex? {
        let found = lookupPeek(key)
        if let found, !noTouch { database.touch(at: found, nowMs: nowMs) }
        return found
    }

    /// Finds a live key for a read that leaves its access time alone (TYPE,
    /// TTL, EXISTS: Redis's LOOKUP_NOTOUCH), counting hits and misses.
    @inlinable
    public func lookupPeek(_ key: KeyRef) -> EntryIndex? {
        let found = key.withBytes { database.find($0, hash: key.hash, nowMs: nowMs) }
        if found != nil {
            shard.keyspaceHits.addOwned(1)
        } else {
            shard.keyspaceMisses.addOwned(1)
            notify(.keyMiss, "keymiss", key)
        }
        return found
    }

    /// Finds a live key for a write (no hit/miss accounting, as Redis).
    @inlinable
    public func lookupWrite(_ key: KeyRef) -> EntryIndex? {
        let found = key.withBytes { database.find($0, hash: key.hash, nowMs: nowMs) }
        if let found, !noTouch { database.touch(at: found, nowMs: nowMs) }
        return found
    }

    /// Stores `value` under `key`, replacing any value; the TTL is cleared
    /// unless `keepTTL`, or set to `expireAtMs`.
    @inlinable
    @discardableResult
    public func store(_ key: KeyRef, _ value: StoredValue, expireAtMs: Int64? = nil, keepTTL: Bool = false) -> EntryIndex {
        store(key, value, found: key.withBytes { database.find($0, hash: key.hash, nowMs: nowMs) }, expireAtMs: expireAtMs, keepTTL: keepTTL)
    }

    /// ``store(_:_:expireAtMs:keepTTL:)`` for a caller that has just looked the key up
    /// (`found`, nil when missing) and changed nothing since: no second lookup.
    @inlinable
    @discardableResult
    public func store(_ key: KeyRef, _ value: StoredValue, found: EntryIndex?, expireAtMs: Int64? = nil, keepTTL: Bool = false) -> EntryIndex {
        if let existing = found {
            database.setValue(value, at: existing)
            if !keepTTL { database.setExpireTime(expireAtMs, at: existing) }
            database.touch(at: existing, nowMs: nowMs)
            return existing
        }
        return key.withBytes { database.insert($0, hash: key.hash, value: value, expireAtMs: expireAtMs, nowMs: nowMs) }
    }

    /// Journals the key's absolute expiry (after a command that set a
    /// relative one), so a replay restores the same deadline.
    @discardableResult
    public func journalAbsoluteTTL(_ key: KeyRef, _ journal: ShardJournal) -> Bool {
        guard let found = key.withBytes({ database.lookup($0, hash: key.hash) }),
              let at = database.expireTime(at: found) else { return false }
        journal.append(database: databaseIndex, [Array("PEXPIREAT".utf8), key.bytes, Array(String(at).utf8)])
        return true
    }

    /// Journals what a command did on this shard, when the journal is on
    /// (blocking pops record the pop they performed).
    /// The arguments are built only when there is a journal (a pop per drained job calls this).
    public func journal(_ args: @autoclosure () -> [[UInt8]]) {
        shard.journal?.append(database: databaseIndex, args())
    }

    /// Finds `key` for a command of one data type: missing, another type
    /// (WRONGTYPE), or the entry with its value as `extract` sees it.
    public func lookup<Value>(_ key: KeyRef, write: Bool, as extract: (StoredValue) -> Value?) -> TypedLookup<Value> {
        guard let found = write ? lookupWrite(key) : lookupRead(key) else { return .missing }
        guard let value = extract(database.value(at: found)) else { return .wrongType }
        return .found(found, value)
    }

    /// A read-only command of one data type: `empty` for a missing key,
    /// WRONGTYPE for another type, else `body`'s reply.
    public func read<Value>(_ key: KeyRef, empty: Reply, as extract: (StoredValue) -> Value?, _ body: (Value) -> Reply) -> Reply {
        switch lookup(key, write: false, as: extract) {
        case .missing: return empty
        case .wrongType: return .wrongType
        case .found(_, let value): return body(value)
        }
    }

    /// Deletes `key`; whether it existed.
    @inlinable
    @discardableResult
    public func delete(_ key: KeyRef) -> Bool {
        key.withBytes { database.remove($0, hash: key.hash, nowMs: nowMs) }
    }
}

extension CommandArguments {
    /// ``KeyHash/hash(_:)`` of argument `i`, computed once per command: with
    /// several threads the connection hashes the first key to see where it
    /// lives (connection migration), then the command hashes it again for its
    /// shard; the second call reads the first's result.
    @inlinable
    public func keyHash(_ i: Int) -> UInt64 {
        if let known = rememberedHash(of: i) { return known }
        let hash = KeyHash.hash(self[i])
        remember(hash: hash, of: i)
        return hash
    }

    /// The shard of argument `i`'s key in `shardSet`, worked out once per
    /// command as its hash is (with several threads a squashed command asks
    /// three times: the run, the migration check, the command).
    /// Always inlined: called, it cost the caller a retain and a release of
    /// the arguments and of the shard set, per command.
    @inlinable @inline(__always)
    public func keyShard(_ i: Int, in shardSet: ShardSet) -> Int {
        if let known = rememberedShard(of: i) { return known }
        let shard = shardSet.shardIndex(of: self[i], hash: keyHash(i))
        remember(shard: shard, of: i)
        return shard
    }
}
