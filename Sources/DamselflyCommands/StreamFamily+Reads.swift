import DamselflyRuntime
import DamselflyStorage
import DamselflyTransactions

/// XREAD and XREADGROUP, blocking or not.
///
/// One atomic step over every stream's shard (one operation when they all
/// live on one shard, else a two-phase transaction, as blocking pops do):
/// each shard checks its streams (type, group, and whether anything is
/// there after the requested ID, resolving `$` to the stream's last ID),
/// then either every stream with something serves the client, or — nothing
/// anywhere and BLOCK given — the same step parks a ``Waiter`` on every
/// stream, so no XADD can slip in between the look and the registration.
/// A stream that later gets entries past the waiter's ID serves it (first
/// come, first served; for a group, each entry goes to exactly one waiter,
/// since the first one served moves the group's last delivered ID).
extension StreamFamily {
    /// What an ID argument of XREAD / XREADGROUP asks for.
    enum ReadID {
        case dollar
        case greater
        case id(StreamID)
        case invalid
    }

    /// Per stream of one call: written only on the stream's shard, read on
    /// the connection's loop after every shard has finished its step.
    final class ReadSlot {
        var after = StreamID.zero
        var error: Reply? = nil
        var ready = false
        var served: Reply? = nil
    }

    /// What the shards' checks decided.
    enum ReadDecision {
        case serve
        case park
        case reply(Reply)
    }

    static func xread(_ call: CommandCall, group isGroup: Bool) {
        let argc = call.args.count
        var blockMs: Int64? = nil
        var count = 0
        var streamsAt = 0
        var groupName: [UInt8]? = nil
        var consumerName: [UInt8] = []
        var noAck = false
        var i = 1
        while i < argc {
            let more = argc - i - 1
            if call.isArg(i, "block") && more > 0 {
                if call.script != nil {
                    return call.reply(.error("ERR \(call.args.string(0)) command is not allowed with BLOCK option from scripts"))
                }
                i += 1
                guard let ms = call.integer(i) else { return call.reply(.error("ERR timeout is not an integer or out of range")) }
                guard ms >= 0 else { return call.reply(.error("ERR timeout is negative")) }
                blockMs = ms
            } else if call.isArg(i, "count") && more > 0 {
                i += 1
                guard let n = call.integer(i) else { return call.reply(.notInteger) }
                count = Int(max(n, 0))
            } else if call.isArg(i, "streams") && more > 0 {
                streamsAt = i + 1
                guard (argc - streamsAt) % 2 == 0 else {
                    return call.reply(.error("ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified."))
                }
                break
            } else if call.isArg(i, "group") && more >= 2 {
                guard isGroup else {
                    return call.reply(.error("ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead."))
                }
                groupName = call.args.bytes(i + 1)
                consumerName = call.args.bytes(i + 2)
                i += 2
            } else if call.isArg(i, "noack") {
                guard isGroup else {
                    return call.reply(.error("ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead."))
                }
                noAck = true
            } else {
                return call.reply(.syntaxError)
            }
            i += 1
        }
        guard streamsAt > 0 else { return call.reply(.syntaxError) }
        if isGroup && groupName == nil { return call.reply(.error("ERR Missing GROUP option for XREADGROUP")) }
        let n = (argc - streamsAt) / 2
        let keys = (0..<n).map { call.key(streamsAt + $0) }
        let ids: [ReadID] = (0..<n).map { k in
            let arg = call.args[streamsAt + n + k]
            if arg.count == 1 && arg[0] == UInt8(ascii: "$") { return .dollar }
            if arg.count == 1 && arg[0] == UInt8(ascii: ">") { return .greater }
            return StreamID.parse(arg, strict: true).map { .id($0.id) } ?? .invalid
        }
        let reader = StreamReader(
            keys: keys, ids: ids, group: groupName, consumer: consumerName, noAck: noAck, count: count,
            resp3: call.client.protocolVersion == 3, journaling: call.engine.journaling)
        reader.run(call, blockMs: blockMs)
    }
}

/// One XREAD / XREADGROUP call: its arguments, its per-stream slots, and
/// the shard-side steps (check, serve, wait).
final class StreamReader {
    let keys: [KeyRef]
    let ids: [StreamFamily.ReadID]
    let group: [UInt8]?
    let consumer: [UInt8]
    let noAck: Bool
    let count: Int
    let resp3: Bool
    let journaling: Bool
    let slots: [StreamFamily.ReadSlot]

    init(keys: [KeyRef], ids: [StreamFamily.ReadID], group: [UInt8]?, consumer: [UInt8], noAck: Bool, count: Int, resp3: Bool, journaling: Bool) {
        self.keys = keys
        self.ids = ids
        self.group = group
        self.consumer = consumer
        self.noAck = noAck
        self.count = count
        self.resp3 = resp3
        self.journaling = journaling
        self.slots = keys.map { _ in StreamFamily.ReadSlot() }
    }

    /// The reply for the streams that served, in argument order.
    func reply(_ parts: [(KeyRef, Reply)]) -> Reply {
        if resp3 { return .map(parts.map { (.bulk($0.0.bytes), $0.1) }) }
        return .array(parts.map { .array([.bulk($0.0.bytes), $0.1]) })
    }

    // MARK: - Shard side

    /// The first look at stream `p` (on its shard): errors in Redis's order
    /// (type, group, then the ID), and whether it can serve now.
    func checkStream(_ ctx: inout ShardContext, _ p: Int) {
        let slot = slots[p]
        let key = keys[p]
        var stream: StreamValue? = nil
        switch ctx.lookup(key, write: false, as: StreamFamily.value) {
        case .wrongType:
            slot.error = .wrongType
            return
        case .missing: break
        case .found(_, let s): stream = s
        }
        var streamGroup: StreamGroup? = nil
        if let group {
            guard let stream, let g = stream.group(group) else {
                slot.error = .error("NOGROUP No such key '\(printfText(key.bytes))' or consumer group '\(printfText(group))' in XREADGROUP with GROUP option")
                return
            }
            streamGroup = g
        }
        switch ids[p] {
        case .invalid:
            slot.error = StreamFamily.invalidID
        case .dollar:
            if group != nil {
                slot.error = .error("ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.")
                return
            }
            slot.after = stream?.lastID ?? .zero
        case .greater:
            guard let streamGroup, let stream else {
                slot.error = .error("ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.")
                return
            }
            slot.ready = stream.count > 0 && stream.lastValidID > streamGroup.lastID
        case .id(let id):
            slot.after = id
            if group != nil {
                slot.ready = true  // the consumer's history is always served
            } else if let stream {
                slot.ready = stream.count > 0 && stream.lastValidID > id
            }
        }
    }

    /// Serves stream `p` (on its shard): its entries after the slot's ID,
    /// or for a group new entries (recorded as pending) or the consumer's
    /// history.
    func serve(_ ctx: ShardContext, _ p: Int) -> Reply {
        let key = keys[p]
        guard let index = ctx.lookupWrite(key), let stream = StreamFamily.value(ctx.database.value(at: index)) else {
            return .array([])
        }
        guard let group else {
            guard let start = slots[p].after.successor else { return .array([]) }
            return StreamFamily.encodedRange(stream, start, .max, limit: count, protocolVersion: resp3 ? 3 : 2)
        }
        guard let g = stream.group(group) else { return .array([]) }
        return ctx.database.modifyValue(at: index) { _ in
            let (owner, created) = g.findOrCreateConsumer(consumer, nowMs: ctx.nowMs)
            owner.seenTime = ctx.nowMs
            if created { ctx.notify(.stream, "xgroup-createconsumer", key) }
            if created && journaling {
                ctx.journal([Array("XGROUP".utf8), Array("CREATECONSUMER".utf8), key.bytes, g.name, consumer])
            }
            if case .id = ids[p] {
                guard let start = slots[p].after.successor else { return .array([]) }
                let history = stream.pendingHistory(g, of: owner, from: start, limit: count, nowMs: ctx.nowMs)
                if journaling {
                    for (id, fields) in history where fields != nil {
                        StreamFamily.journalClaim(ctx, key, g, consumer: consumer, id, g.pel[id])
                    }
                }
                return .array(history.map { StreamFamily.entryReply($0.0, $0.1) })
            }
            var encoder = StreamFamily.EntriesEncoder(protocolVersion: resp3 ? 3 : 2)
            let ids = stream.deliverNew(
                g, to: owner, limit: count, noAck: noAck, nowMs: ctx.nowMs,
                entry: { encoder.entry($0, $1) }, string: { encoder.string($0) })
            if journaling && !ids.isEmpty {
                if noAck {
                    ctx.journal([Array("XGROUP".utf8), Array("SETID".utf8), key.bytes, g.name, g.lastID.bytes,
                                 Array("ENTRIESREAD".utf8), Array(String(g.entriesRead).utf8)])
                } else {
                    for id in ids { StreamFamily.journalClaim(ctx, key, g, consumer: consumer, id, g.pel[id]) }
                }
            }
            return encoder.reply()
        }
    }

    /// Whether a parked reader of stream `p` has something to take (or,
    /// for a group, must be told the stream or group went away).
    func waiterReady(_ ctx: ShardContext, _ p: Int) -> Bool {
        guard let index = ctx.lookupWrite(keys[p]), let stream = StreamFamily.value(ctx.database.value(at: index)) else {
            return group != nil
        }
        guard let group else { return stream.count > 0 && stream.lastValidID > slots[p].after }
        guard let g = stream.group(group) else { return true }
        return stream.count > 0 && stream.lastValidID > g.lastID
    }

    /// Serves a parked reader from stream `p`.
    func waiterServe(_ ctx: ShardContext, _ p: Int) -> Reply {
        if group != nil {
            guard let index = ctx.lookupWrite(keys[p]), let stream = StreamFamily.value(ctx.database.value(at: index)) else {
                return .error("UNBLOCKED the stream key no longer exists")
            }
            guard stream.group(group!) != nil else {
                return .error("NOGROUP the consumer group this client was blocked on no longer exists")
            }
            let entries = serve(ctx, p)
            ctx.shard.noteWritten([lockFingerprint(keyHash: keys[p].hash, database: ctx.databaseIndex)])
            return reply([(keys[p], entries)])
        }
        return reply([(keys[p], serve(ctx, p))])
    }

    // MARK: - Running

    func run(_ call: CommandCall, blockMs: Int64?) {
        let canBlock = call.canBlock
        let shardSet = call.shardSet
        let database = call.client.database
        let keyShards = keys.map { key in key.withBytes { shardSet.shardIndex(of: $0, hash: key.hash) } }
        let positionsOn: (Int) -> [Int] = { shard in (0..<keyShards.count).filter { keyShards[$0] == shard } }
        let singleShard = keyShards.allSatisfy { $0 == keyShards[0] }
        let client = call.client
        let loop = call.loop
        let counters = call.engine.loopCounters[loop.index]
        let registry = call.engine.blockedClients[loop.index]
        let sink = call.sink
        let life = client.life
        let deadline: UInt64? = blockMs.flatMap { $0 == 0 ? nil : Clock.monotonicNanos() + UInt64($0) * 1_000_000 }

        let state = ParkState()
        let deliver: (Reply?) -> Void = { reply in
            guard !state.finished else { return }
            state.finished = true
            if let blocked = state.blocked {
                // The state, the blocked client and its `finish` closure
                // form a cycle: broken here, on every way out.
                state.blocked = nil
                registry.remove(blocked)
                counters.blockedClients.add(-1, ordering: .relaxed)
            }
            client.blockedOn = nil
            if let reply { sink.complete(reply) }
        }
        let makeWaiter: () -> Waiter = { [self] in
            let registrations = Set(keyShards).sorted().map { shard in
                (shard: shard, fingerprints: positionsOn(shard).map { lockFingerprint(keyHash: keys[$0].hash, database: database) })
            }
            let waiter = Waiter(
                loop: loop, owner: life, database: database, registrations: registrations, deadlineNanos: deadline,
                ready: { shard, p in self.waiterReady(ShardContext(shard: shard, databaseIndex: database), p) },
                serve: { shard, p in
                    let reply = self.waiterServe(ShardContext(shard: shard, databaseIndex: database), p)
                    loop.post {
                        if state.parked { deliver(reply) } else { state.earlyReply = reply }
                    }
                })
            // Each reader waits for IDs past its own: one that cannot take
            // anything yet must not hold back those behind it.
            waiter.servesOutOfOrder = true
            return waiter
        }
        let waiterSlot = WaiterSlot()
        if canBlock && blockMs != nil && !singleShard { waiterSlot.waiter = makeWaiter() }

        let check: (inout ShardContext, [Int]) -> Int = { [self] ctx, positions in
            for p in positions { checkStream(&ctx, p) }
            return 0
        }
        let decide: ([Int]) -> StreamFamily.ReadDecision = { [self] _ in
            for slot in slots {
                if let error = slot.error { return .reply(error) }
            }
            if slots.contains(where: \.ready) { return .serve }
            return blockMs != nil && canBlock ? .park : .reply(.nullArray)
        }
        let apply: (inout ShardContext, [Int], StreamFamily.ReadDecision) -> Void = { [self] ctx, positions, decision in
            switch decision {
            case .reply:
                break
            case .serve:
                for p in positions where slots[p].ready { slots[p].served = serve(ctx, p) }
            case .park:
                let waiter: Waiter
                if let made = waiterSlot.waiter {
                    waiter = made
                } else {
                    waiter = makeWaiter()
                    waiterSlot.waiter = waiter
                }
                ctx.shard.register(
                    waiter, fingerprints: positions.map { lockFingerprint(keyHash: keys[$0].hash, database: database) },
                    positions: positions)
            }
        }
        let finish: (StreamFamily.ReadDecision) -> Reply? = { [self] decision in
            switch decision {
            case .reply(let r): return r
            case .park: return nil
            case .serve:
                return reply((0..<keys.count).compactMap { p in slots[p].served.map { (keys[p], $0) } })
            }
        }
        call.runOnKeysTwoPhaseRaw(
            keys, mode: group == nil ? .shared : .exclusive, check: check, decide: decide, apply: apply, reply: finish,
            forceTransaction: !(call.engine.singleHopBlocking && singleShard)
        ) { reply in
            if let reply { return sink.complete(reply) }
            state.parked = true
            if let early = state.earlyReply { return deliver(early) }
            let blocked = BlockedClient(waiter: waiterSlot.waiter!, shardSet: shardSet, counters: counters, timeoutReply: .nullArray) { reply in
                deliver(reply)
            }
            state.blocked = blocked
            client.blockedOn = blocked
            registry.add(client, blocked)
            counters.blockedClients.add(1, ordering: .relaxed)
            if life.isClosed {
                // The connection closed while the read was scheduled or
                // parking, when there was no waiter yet for it to cancel.
                blocked.cancel(reply: nil)
            }
        }
    }
}
