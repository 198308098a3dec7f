import DamselflyRESP
import DamselflyRuntime
import DamselflyStorage
import DamselflyTransactions
import Synchronization

/// Blocking list pops: BLPOP, BRPOP, BLMOVE, BRPOPLPUSH.
///
/// The first attempt finds the first non-empty key (in argument order) and
/// pops it; when every key is empty the same shard operation registers a
/// ``Waiter`` on each key, so no push can slip in between the look and the
/// registration. With `--singlehop_blocking` (the default) keys on one shard
/// take one hop — inline on the owning thread — and otherwise a two-step
/// transaction (find on every shard, then pop or park). A push that makes a
/// key ready serves its waiters first come, first served, after the pushing
/// command (or EXEC block) is done.
public enum BlockingFamily {
    public static func register(_ r: CommandRegistry) {
        let g = "list"
        r.register("blpop", arity: -3, flags: [.write, .blocking, .noscript], firstKey: 1, lastKey: -2, keyStep: 1, group: g) { call in
            blockingPop(call, fromLeft: true)
        }
        r.register("brpop", arity: -3, flags: [.write, .blocking, .noscript], firstKey: 1, lastKey: -2, keyStep: 1, group: g) { call in
            blockingPop(call, fromLeft: false)
        }
        r.register("blmove", arity: 6, flags: [.write, .denyOOM, .blocking, .noscript], firstKey: 1, lastKey: 2, keyStep: 1, group: g) { call in
            guard let from = side(call, 3), let to = side(call, 4) else { return call.reply(.syntaxError) }
            blockingMove(call, fromLeft: from, toLeft: to, timeoutIndex: 5)
        }
        r.register("brpoplpush", arity: 4, flags: [.write, .denyOOM, .blocking, .noscript], firstKey: 1, lastKey: 2, keyStep: 1, group: g) { call in
            blockingMove(call, fromLeft: false, toLeft: true, timeoutIndex: 3)
        }
        r.register("blmpop", arity: -5, flags: [.write, .blocking], firstKey: 0, lastKey: 0, keyStep: 0, group: g) { call in
            blockingMultiPop(call, sorted: false)
        }
        r.register("bzpopmin", arity: -3, flags: [.write, .blocking, .fast, .noscript], firstKey: 1, lastKey: -2, keyStep: 1, group: "sorted_set") { call in
            blockingZPop(call, max: false)
        }
        r.register("bzpopmax", arity: -3, flags: [.write, .blocking, .fast, .noscript], firstKey: 1, lastKey: -2, keyStep: 1, group: "sorted_set") { call in
            blockingZPop(call, max: true)
        }
        r.register("bzmpop", arity: -5, flags: [.write, .blocking], firstKey: 0, lastKey: 0, keyStep: 0, group: "sorted_set") { call in
            blockingMultiPop(call, sorted: true)
        }
    }

    static func zsetState(_ ctx: ShardContext, _ key: KeyRef) -> KeyState {
        guard let found = ctx.lookupWrite(key) else { return .empty }
        guard case .zset(let zset) = ctx.database.value(at: found) else { return .wrongType }
        return zset.count > 0 ? .ready : .empty
    }

    // MARK: - BZPOPMIN / BZPOPMAX

    static func blockingZPop(_ call: CommandCall, max: Bool) {
        let deadline: UInt64?
        switch timeout(call, call.args.count - 1) {
        case .failure(let error): return call.reply(error.reply)
        case .success(let d): deadline = d
        }
        let keys = (1..<(call.args.count - 1)).map { call.key($0) }
        let park = Parking(call: call, keys: keys, deadline: deadline, timeoutReply: .nullArray, giveBack: .zset,
                           keyState: { BlockingFamily.zsetState($0, $1) }) {
            (ctx: ShardContext, position: Int, _: Bool) -> Reply in
            let key = keys[position]
            guard case .popped(let entries) = SortedSetFamily.opPop(ctx, key, max: max, count: 1), let first = entries.first else {
                return .nullArray
            }
            ctx.shard.noteWritten([lockFingerprint(keyHash: key.hash, database: ctx.databaseIndex)])
            ctx.journal([Array((max ? "ZPOPMAX" : "ZPOPMIN").utf8), key.bytes])
            return .array([.bulk(key.bytes), .bulk(first.member), .double(first.score)])
        }
        park.run()
    }

    // MARK: - BLMPOP / BZMPOP

    /// BLMPOP timeout numkeys key... LEFT|RIGHT [COUNT n] and
    /// BZMPOP timeout numkeys key... MIN|MAX [COUNT n].
    /// Checked in Redis's order: numkeys, the side, COUNT, and the timeout last.
    static func blockingMultiPop(_ call: CommandCall, sorted: Bool) {
        guard let numkeys = call.integer(2), numkeys > 0 else {
            return call.reply(.error("ERR numkeys should be greater than 0"))
        }
        guard numkeys <= Int64(call.args.count - 4) else { return call.reply(.syntaxError) }
        let whereIndex = 3 + Int(numkeys)
        let fromLow: Bool
        if sorted {
            if call.isArg(whereIndex, "min") { fromLow = true } else if call.isArg(whereIndex, "max") { fromLow = false } else {
                return call.reply(.syntaxError)
            }
        } else {
            guard let left = side(call, whereIndex) else { return call.reply(.syntaxError) }
            fromLow = left
        }
        guard let popCount = call.popCount(from: whereIndex + 1) else { return }
        // Redis reads the timeout last, once the rest parsed.
        let deadline: UInt64?
        switch timeout(call, 1) {
        case .failure(let error): return call.reply(error.reply)
        case .success(let d): deadline = d
        }
        let keys = (3..<whereIndex).map { call.key($0) }
        let state: (ShardContext, KeyRef) -> KeyState = { ctx, key in
            sorted ? BlockingFamily.zsetState(ctx, key) : BlockingFamily.listState(ctx, key)
        }
        let park = Parking(call: call, keys: keys, deadline: deadline, timeoutReply: .nullArray,
                           giveBack: sorted ? .zset : .list(fromLeft: fromLow), keyState: state) {
            (ctx: ShardContext, position: Int, _: Bool) -> Reply in
            let key = keys[position]
            var context = ctx
            let reply: Reply
            if sorted {
                guard case .popped(let entries) = SortedSetFamily.opPop(ctx, key, max: !fromLow, count: popCount) else { return .nullArray }
                reply = .array([.bulk(key.bytes), .array(entries.map { .array([.bulk($0.member), .double($0.score)]) })])
            } else {
                guard case .success(let values?) = ListFamily.opPop(&context, key, fromLeft: fromLow, count: popCount) else { return .nullArray }
                reply = .array([.bulk(key.bytes), .array(values.map { .bulk($0) })])
            }
            ctx.shard.noteWritten([lockFingerprint(keyHash: key.hash, database: ctx.databaseIndex)])
            let name = sorted ? (fromLow ? "ZPOPMIN" : "ZPOPMAX") : (fromLow ? "LPOP" : "RPOP")
            ctx.journal([Array(name.utf8), key.bytes, Array(String(popCount).utf8)])
            return reply
        }
        park.run()
    }

    static func side(_ call: CommandCall, _ i: Int) -> Bool? {
        if call.isArg(i, "left") { return true }
        if call.isArg(i, "right") { return false }
        return nil
    }

    /// Parses a blocking timeout (seconds, fractions allowed) as Redis does;
    /// nil deadline means wait for ever.
    static func timeout(_ call: CommandCall, _ i: Int) -> Result<UInt64?, TimeoutError> {
        timeoutSeconds(call, i).map { deadline(seconds: $0, call) }
    }

    /// The timeout argument in seconds, checked as Redis checks it (0: for ever).
    static func timeoutSeconds(_ call: CommandCall, _ i: Int) -> Result<Double, TimeoutError> {
        // Workers send whole seconds ("2"): read as an integer they cost no strtod, and
        // every integer that parses reads as the same double.
        let seconds: Double
        if let whole = call.integer(i) {
            seconds = Double(whole)
        } else {
            guard let parsed = call.double(i), !parsed.isNaN else {
                return .failure(TimeoutError(reply: .error("ERR timeout is not a float or out of range")))
            }
            seconds = parsed
        }
        if seconds < 0 { return .failure(TimeoutError(reply: .error("ERR timeout is negative"))) }
        let millis = seconds * 1000
        // Redis 7.0 casts the milliseconds to a long long: past 2^63 that comes out negative.
        guard millis < 9.223372036854775e18 else { return .failure(TimeoutError(reply: .error("ERR timeout is negative"))) }
        return .success(seconds)
    }

    /// The monotonic deadline `seconds` after the command started (nil: 0, for ever).
    /// The start is the dispatch's own clock read: a pop that finds an element reads no clock.
    static func deadline(seconds: Double, _ call: CommandCall) -> UInt64? {
        if seconds == 0 { return nil }
        // A deadline past the monotonic clock's range is "for ever" in all but name.
        let (nanos, overflow) = UInt64((seconds * 1000).rounded(.down)).multipliedReportingOverflow(by: 1_000_000)
        let start = call.client.lastCommandAtNanos
        let (deadline, late) = (start == 0 ? Clock.monotonicNanos() : start).addingReportingOverflow(nanos)
        return overflow || late ? UInt64.max : deadline
    }

    struct TimeoutError: Error {
        let reply: Reply
    }

    /// What one key looks like to a blocking pop.
    enum KeyState { case empty, ready, wrongType }

    static func listState(_ ctx: ShardContext, _ key: KeyRef) -> KeyState {
        guard let found = ctx.lookupWrite(key) else { return .empty }
        guard case .list(let list) = ctx.database.value(at: found) else { return .wrongType }
        return list.count > 0 ? .ready : .empty
    }

    /// Pops one element from the list at `key` (deleting it when emptied).
    static func popOne(_ ctx: ShardContext, _ key: KeyRef, fromLeft: Bool) -> [UInt8]? {
        guard let found = ctx.lookupWrite(key), case .list(let list) = ctx.database.value(at: found) else { return nil }
        var element: [UInt8]? = nil
        ctx.database.modifyValue(at: found) { _ in
            element = fromLeft ? list.popFront() : list.popBack()
        }
        if element != nil { ctx.notify(.list, fromLeft ? "lpop" : "rpop", key) }
        if list.count == 0 {
            ctx.database.remove(at: found)
            ctx.notify(.generic, "del", key)
        }
        return element
    }

    /// The events of a pop whose own were held back (BLMOVE: Redis sends the push first):
    /// the pop, and `del` when the list is gone.
    static func notifyPopped(_ ctx: ShardContext, _ key: KeyRef, fromLeft: Bool) {
        ctx.notifyRemoval(.list, fromLeft ? "lpop" : "rpop", key)
    }

    /// Pushes `element` onto the list at `key`, creating it.
    static func pushOne(_ ctx: ShardContext, _ key: KeyRef, _ element: [UInt8], toLeft: Bool) {
        if let found = ctx.lookupWrite(key), case .list(let list) = ctx.database.value(at: found) {
            ctx.database.modifyValue(at: found) { _ in
                if toLeft { list.pushFront(element) } else { list.pushBack(element) }
            }
        } else {
            let list = ListValue()
            list.pushBack(element)
            ctx.store(key, .list(list))
        }
        ctx.notify(.list, toLeft ? "lpush" : "rpush", key)
    }

    // MARK: - BLPOP / BRPOP

    static func blockingPop(_ call: CommandCall, fromLeft: Bool) {
        let timeoutIndex = call.args.count - 1
        let seconds: Double
        switch timeoutSeconds(call, timeoutIndex) {
        case .failure(let error): return call.reply(error.reply)
        case .success(let s): seconds = s
        }
        if popInline(call, keys: 1..<timeoutIndex, fromLeft: fromLeft) { return }
        let keys = (1..<timeoutIndex).map { call.key($0) }
        let popAt: (ShardContext, KeyRef, Int) -> Reply?
        if fromLeft { popAt = BlockingFamily.popFirstReady } else { popAt = BlockingFamily.popLastReady }
        let ready = popReady(call, keys, giveBack: .list(fromLeft: fromLeft), popAt, orElse: { call in
            parkPop(call, keys, fromLeft: fromLeft, seconds: seconds)
        })
        if !ready { parkPop(call, keys, fromLeft: fromLeft, seconds: seconds) }
    }

    /// A worker's BLPOP / BRPOP when this loop owns the shard of every key, the keys are
    /// free and one holds elements (the drain's common case on one thread, or with the
    /// connection on its queue's thread): popped now, the keys read in place from the
    /// receive buffer, with none of ``popReady(_:_:giveBack:_:orElse:)``'s key copies,
    /// closures or lock set built. False, and nothing changed, when the command is not of
    /// this shape or no key holds an element: the caller takes the usual path, which
    /// looks again (a parked client needs its own copies of the keys anyway).
    static func popInline(_ call: CommandCall, keys: Range<Int>, fromLeft: Bool) -> Bool {
        let shardSet = call.shardSet, loop = call.loop, args = call.args
        // The same conditions as popReady's; a client that has gone takes the full path,
        // which hands a popped element back.
        guard call.canBlock, call.engine.singleHopBlocking, !shardSet.tracking.isActive,
              !call.client.life.isClosed else { return false }
        let database = call.client.database, noTouch = call.client.noTouch
        let firstHash = args.keyHash(keys.lowerBound)
        let shardIndex = args.rememberedShard(of: keys.lowerBound) ?? shardSet.shardIndex(of: args[keys.lowerBound], hash: firstHash)
        let shard = shardSet.shards[shardIndex]
        guard shard.loop === loop else { return false }
        let reply: Reply? = withUnsafeTemporaryAllocation(of: UInt64.self, capacity: keys.count) { hashes in
            // Every key on this shard and free before anything is looked at, as the
            // full path would lock them all.
            for (slot, i) in keys.enumerated() {
                let hash = slot == 0 ? firstHash : KeyHash.hash(args[i])
                hashes[slot] = hash
                guard slot == 0 || shardSet.shardIndex(of: args[i], hash: hash) == shardIndex,
                      shard.keyIsFree(lockFingerprint(keyHash: hash, database: database), .exclusive) else { return nil }
            }
            return shardSet.runInline(on: shard, from: loop) { () -> Reply? in
                let ctx = ShardContext(shard: shard, databaseIndex: database, noTouch: noTouch)
                for (slot, i) in keys.enumerated() {
                    // The bytes stay in place until the command returns: it runs now.
                    let key = KeyRef(borrowing: args[i], hash: hashes[slot]) ?? KeyRef(args.bytes(i), hash: hashes[slot])
                    guard let reply = popListReady(ctx, key, fromLeft: fromLeft) else { continue }
                    if !reply.isError { shard.noteWritten(lockFingerprint(keyHash: key.hash, database: database)) }
                    return reply
                }
                return nil
            }
        }
        guard let reply else { return false }
        call.sink.complete(reply)
        return true
    }

    /// BLPOP / BRPOP through the full path: ``Parking`` pops, or parks the client.
    static func parkPop(_ call: CommandCall, _ keys: [KeyRef], fromLeft: Bool, seconds: Double) {
        let park = Parking(call: call, keys: keys, deadline: deadline(seconds: seconds, call), timeoutReply: .nullArray,
                           giveBack: .list(fromLeft: fromLeft)) { ctx, position, _ in
            // Only a key found ready gets here (a list with elements).
            let key = keys[position]
            guard let reply = popListReady(ctx, key, fromLeft: fromLeft) else { return .nullArray }
            ctx.shard.noteWritten([lockFingerprint(keyHash: key.hash, database: ctx.databaseIndex)])
            return reply
        }
        park.run()
    }

    /// BLPOP's and BRPOP's step for ``popReady(_:_:giveBack:_:orElse:)``: pops `key`
    /// when it holds a list with elements.
    static func popFirstReady(_ ctx: ShardContext, _ key: KeyRef, _ position: Int) -> Reply? {
        popListReady(ctx, key, fromLeft: true)
    }

    static func popLastReady(_ ctx: ShardContext, _ key: KeyRef, _ position: Int) -> Reply? {
        popListReady(ctx, key, fromLeft: false)
    }

    static func popListReady(_ ctx: ShardContext, _ key: KeyRef, fromLeft: Bool) -> Reply? {
        guard let found = ctx.lookupWrite(key) else { return nil }
        guard case .list(let list) = ctx.database.value(at: found) else { return .wrongType }
        return popEncoded(ctx, key, found, list, fromLeft: fromLeft)
    }

    /// A worker's blocking pop on its queues, when they share one shard and one holds jobs
    /// (the drain's common case): one shard operation tries the keys in order with
    /// `popAt` (nil: nothing there; otherwise its reply, WRONGTYPE included, as the full
    /// path would answer) and replies, with none of the parking machinery built. Nothing
    /// ready: `park`, the full path, which looks again under the same locks, so a push in
    /// between is not lost. False, and nothing done, when the command is not of this shape
    /// (inside EXEC, keys on several shards, `singleHopBlocking` off).
    static func popReady(
        _ call: CommandCall, _ keys: [KeyRef], giveBack how: GiveBack,
        _ popAt: @escaping (ShardContext, KeyRef, Int) -> Reply?, orElse park: @escaping (CommandCall) -> Void
    ) -> Bool {
        guard call.canBlock, call.engine.singleHopBlocking else { return false }
        let shardSet = call.shardSet
        let shardIndex = keys[0].withBytes { shardSet.shardIndex(of: $0, hash: keys[0].hash) }
        for key in keys.dropFirst() where key.withBytes({ shardSet.shardIndex(of: $0, hash: key.hash) }) != shardIndex {
            return false
        }
        let database = call.client.database, noTouch = call.client.noTouch
        let fingerprints = keys.map { lockFingerprint(keyHash: $0.hash, database: database) }
        let tracking = call.trackingOp(keys)
        let locks = ShardLockSet(fingerprints: fingerprints, mode: .exclusive)
        // `done` holds the call (the one copy of it this path makes) for `park`, which
        // gets it back as an argument: a continuation that captured it too would copy
        // it again (a command's call holds six references).
        shardSet.runSingleShard(from: call.loop, shard: shardIndex, locks: locks, { shard -> Reply? in
            let ctx = ShardContext(shard: shard, databaseIndex: database, noTouch: noTouch)
            for (position, key) in keys.enumerated() {
                guard let reply = popAt(ctx, key, position) else { continue }
                // The key popped, as Redis signals it; a WRONGTYPE changed nothing.
                if !reply.isError { shard.withTracking(tracking) { shard.noteWritten(fingerprints[position]) } }
                return reply
            }
            return nil
        }, done: { reply in
            guard let reply else { return park(call) }
            if call.client.life.isClosed {
                giveBack(reply, how, shardSet: shardSet, loop: call.loop, database: database)
            } else {
                call.sink.complete(reply)
            }
        })
        return true
    }

    /// Pops one element of the list `list` found at `found` for `key` (deleting the key
    /// when it empties), journaled as the LPOP / RPOP it is, and returns BLPOP's reply
    /// `[key, element]` already encoded: built from the element's bytes in the list node,
    /// one allocation where the element's copy, the array and its two parts took four.
    /// Nil when the list is empty. The shape is the same in RESP2 and RESP3.
    static func popEncoded(_ ctx: ShardContext, _ key: KeyRef, _ found: EntryIndex, _ list: ListValue, fromLeft: Bool) -> Reply? {
        let encoded: [UInt8]? = ctx.database.modifyValue(at: found) { _ in
            list.pop(fromFront: fromLeft) { element in
                key.withBytes { encodePair($0, element) }
            }
        }
        guard let encoded else { return nil }
        ctx.notify(.list, fromLeft ? "lpop" : "rpop", key)
        if list.count == 0 {
            ctx.database.remove(at: found)
            ctx.notify(.generic, "del", key)
        }
        ctx.journal([Array((fromLeft ? "LPOP" : "RPOP").utf8), key.bytes])
        return .raw(encoded)
    }

    // MARK: - BLMOVE / BRPOPLPUSH

    static func blockingMove(_ call: CommandCall, fromLeft: Bool, toLeft: Bool, timeoutIndex: Int) {
        let deadline: UInt64?
        switch timeout(call, timeoutIndex) {
        case .failure(let error): return call.reply(error.reply)
        case .success(let d): deadline = d
        }
        let source = call.key(1), destination = call.key(2)
        let shardSet = call.shardSet
        let destinationShard = destination.withBytes { shardSet.shardIndex(of: $0, hash: destination.hash) }
        let database = call.client.database
        /// Pops from the source, as a recorded write; nil when it is empty.
        let popSource: (ShardContext) -> [UInt8]? = { ctx in
            guard let element = popOne(ctx, source, fromLeft: fromLeft) else { return nil }
            ctx.shard.noteWritten([lockFingerprint(keyHash: source.hash, database: database)])
            ctx.journal([Array((fromLeft ? "LPOP" : "RPOP").utf8), source.bytes])
            return element
        }
        /// Pushes onto `key` on `ctx`'s shard, as a recorded write.
        let push: (ShardContext, KeyRef, [UInt8], Bool) -> Void = { ctx, key, element, left in
            pushOne(ctx, key, element, toLeft: left)
            ctx.shard.noteWritten([lockFingerprint(keyHash: key.hash, database: database)])
            ctx.journal([Array((left ? "LPUSH" : "RPUSH").utf8), key.bytes, element])
        }
        /// Whether `key` holds something other than a list.
        let holdsOtherType: (ShardContext, KeyRef) -> Bool = { ctx, key in
            guard let found = ctx.lookupWrite(key) else { return false }
            if case .list = ctx.database.value(at: found) { return false }
            return true
        }
        let target = shardSet.shards[destinationShard]
        // The waiter watches the source only. Served on the source's shard, as
        // Redis serves a blocked BLMOVE: a destination of another type gets the
        // client WRONGTYPE and leaves the element where it was (never a string
        // overwritten by a list).
        let park = Parking(call: call, keys: [source], extraLockKeys: [destination], deadline: deadline, timeoutReply: .nullArray,
                           nonBlockingEmptyReply: .null, destinationCheck: destination,
                           giveBack: .move(source: source, destination: destination, fromLeft: fromLeft, toLeft: toLeft),
                           pop: { ctx, _, _ in
            // Not parked: the destination's lock is held too and its type was
            // checked; on another shard the push runs on that shard's loop.
            var muted = ctx
            muted.notificationsMuted = destinationShard == ctx.shard.index
            guard let element = popSource(muted) else { return .null }
            if destinationShard == ctx.shard.index {
                push(ctx, destination, element, toLeft)
                notifyPopped(ctx, source, fromLeft: fromLeft)
            } else {
                target.postWhenAvailable {
                    push(ShardContext(shard: target, databaseIndex: database), destination, element, toLeft)
                    target.afterOperation()
                }
            }
            return .bulk(element)
        },
                           serve: { ctx, _, complete in
            if destinationShard == ctx.shard.index {
                if holdsOtherType(ctx, destination) { return complete(.wrongType) }
                var muted = ctx
                muted.notificationsMuted = true
                guard let element = popSource(muted) else { return complete(.null) }
                push(ctx, destination, element, toLeft)
                notifyPopped(ctx, source, fromLeft: fromLeft)
                return complete(.bulk(element))
            }
            // The destination lives on another shard: pop here, then push there
            // on that shard's loop. This shard serves no other waiter until the
            // destination answered: a destination of another type sends the
            // element back to the end it left, and the next waiter gets it, in
            // Redis's order.
            guard let element = popSource(ctx) else { return complete(.null) }
            let here = ctx.shard
            here.suspendServing()
            target.postWhenAvailable {
                let destinationContext = ShardContext(shard: target, databaseIndex: database)
                if holdsOtherType(destinationContext, destination) {
                    return here.postWhenAvailable {
                        let sourceContext = ShardContext(shard: here, databaseIndex: database)
                        if holdsOtherType(sourceContext, source) {
                            // The source was replaced by another type meanwhile: the
                            // element has no list to go back to; the client keeps it.
                            complete(.bulk(element))
                        } else {
                            push(sourceContext, source, element, fromLeft)
                            complete(.wrongType)
                        }
                        here.resumeServing()
                        here.afterOperation()
                    }
                }
                push(destinationContext, destination, element, toLeft)
                target.afterOperation()
                complete(.bulk(element))
                here.postWhenAvailable {
                    here.resumeServing()
                    here.afterOperation()
                }
            }
        })
        park.run()
    }
}

// MARK: - Giving back what a gone connection was served

extension BlockingFamily {
    /// What a blocking pop takes, so that it can be put back.
    enum GiveBack {
        /// BLPOP, BRPOP, BLMPOP: elements from one end of a list.
        case list(fromLeft: Bool)
        /// BZPOPMIN, BZPOPMAX, BZMPOP: members with their scores.
        case zset
        /// BLMOVE, BRPOPLPUSH: one element moved between lists.
        case move(source: KeyRef, destination: KeyRef, fromLeft: Bool, toLeft: Bool)
    }

    /// A shard popped for a connection that closed before the reply reached
    /// it (the shard could not know: its loop had not seen the close yet).
    /// The reply was never sent, so what it holds goes back where it came
    /// from, at the same end, as the first thing the shard does for this
    /// loop; a moved element (BLMOVE) is moved back when it is still in its
    /// destination (its nearest occurrence to the end it was pushed at: later
    /// pushes there are in front of it), and left there otherwise. Runs on
    /// the connection's loop; `reply` is the pop's own reply.
    static func giveBack(_ reply: Reply, _ how: GiveBack, shardSet: ShardSet, loop: EventLoop, database: Int) {
        switch how {
        case .list(let fromLeft):
            guard case .array(let parts) = decodedRaw(reply), parts.count == 2, case .bulk(let keyBytes) = parts[0] else { return }
            var elements: [[UInt8]] = []
            switch parts[1] {
            case .bulk(let element): elements = [element]
            case .array(let items):
                for case .bulk(let element) in items { elements.append(element) }
            default: return
            }
            // The first popped was nearest the end: it is pushed back last.
            pushBack(KeyRef(keyBytes), elements.reversed(), toLeft: fromLeft, shardSet: shardSet, loop: loop, database: database)
        case .zset:
            guard case .array(let parts) = reply, parts.count >= 2, case .bulk(let keyBytes) = parts[0] else { return }
            var entries: [ZEntry] = []
            if parts.count == 3, case .bulk(let member) = parts[1], case .double(let score) = parts[2] {
                entries = [ZEntry(score: score, member: member)]
            } else if case .array(let items) = parts[1] {
                for case .array(let pair) in items {
                    if pair.count == 2, case .bulk(let member) = pair[0], case .double(let score) = pair[1] {
                        entries.append(ZEntry(score: score, member: member))
                    }
                }
            }
            guard !entries.isEmpty else { return }
            let key = KeyRef(keyBytes)
            onShard(key, shardSet: shardSet, loop: loop, database: database) { ctx in
                var flags = SortedSetFamily.AddFlags()
                flags.nx = true  // a member added again since keeps its new score
                guard case .integer = SortedSetFamily.opAdd(ctx, key, flags, entries) else { return false }
                var journal = [Array("ZADD".utf8), key.bytes, Array("NX".utf8)]
                for entry in entries { journal += [Array("\(entry.score)".utf8), entry.member] }
                ctx.journal(journal)
                return true
            }
        case .move(let source, let destination, let fromLeft, let toLeft):
            guard case .bulk(let element) = reply else { return }
            onShard(destination, shardSet: shardSet, loop: loop, database: database, { ctx in
                var context = ctx
                let count: Int64 = toLeft ? 1 : -1
                guard case .integer(1) = ListFamily.opRemove(&context, destination, count: count, value: element) else { return false }
                ctx.journal([Array("LREM".utf8), destination.bytes, Array(String(count).utf8), element])
                return true
            }, then: { removed in
                // Only what left the destination goes back: never in both.
                if removed { pushBack(source, [element], toLeft: fromLeft, shardSet: shardSet, loop: loop, database: database) }
            })
        }
    }

    /// `*2\r\n$<n>\r\n<first>\r\n$<m>\r\n<second>\r\n` in one array of exactly its size,
    /// written in place, then copied once into the array (through `ReplyBuilder` the
    /// appends and digit loops cost more than the pop itself, and an array made with
    /// `unsafeUninitializedCapacity` here takes the run time's unspecialised allocation
    /// path: ~800 instructions, where `[UInt8](bytes)` takes ~130).
    static func encodePair(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> [UInt8] {
        let firstDigits = decimalDigits(first.count), secondDigits = decimalDigits(second.count)
        let size = 4 + (first.count + firstDigits + 5) + (second.count + secondDigits + 5)
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: size) { buffer in
            let p = buffer.baseAddress!
            p[0] = UInt8(ascii: "*")
            p[1] = UInt8(ascii: "2")
            p[2] = 0x0D
            p[3] = 0x0A
            let next = writeBulk(p + 4, first, digits: firstDigits)
            _ = writeBulk(next, second, digits: secondDigits)
            return [UInt8](UnsafeRawBufferPointer(start: p, count: size))
        }
    }

    /// Writes `$<count>\r\n<bytes>\r\n` at `p` (`digits`: of the count); returns the end.
    @inline(__always)
    static func writeBulk(_ p: UnsafeMutablePointer<UInt8>, _ bytes: UnsafeRawBufferPointer, digits: Int) -> UnsafeMutablePointer<UInt8> {
        p[0] = UInt8(ascii: "$")
        var n = bytes.count
        for i in stride(from: digits, to: 0, by: -1) {
            p[i] = UInt8(truncatingIfNeeded: n % 10) &+ 0x30
            n /= 10
        }
        p[digits + 1] = 0x0D
        p[digits + 2] = 0x0A
        let data = p + digits + 3
        if bytes.count > 0 { data.update(from: bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), count: bytes.count) }
        data[bytes.count] = 0x0D
        data[bytes.count + 1] = 0x0A
        return data + bytes.count + 2
    }

    @inline(__always)
    static func decimalDigits(_ n: Int) -> Int {
        var digits = 1, rest = n
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        return digits
    }

    /// A reply encoded ahead (``popEncoded(_:_:_:_:fromLeft:)``) as the parts it was made
    /// of; any other reply as it is.
    static func decodedRaw(_ reply: Reply) -> Reply {
        guard case .raw(let bytes) = reply else { return reply }
        var decoder = RESPReplyDecoder()
        guard let (value, _) = try? bytes.withUnsafeBytes({ try decoder.decode($0) }),
              case .array(let items?) = value else { return reply }
        return .array(items.map { item in
            if case .bulk(let b?) = item { return .bulk(b) }
            return .none
        })
    }

    /// Pushes `elements` one by one at one end of the list at `key` (not over another type).
    static func pushBack(_ key: KeyRef, _ elements: [[UInt8]], toLeft: Bool, shardSet: ShardSet, loop: EventLoop, database: Int) {
        onShard(key, shardSet: shardSet, loop: loop, database: database) { ctx in
            var context = ctx
            guard case .success = ListFamily.opPush(&context, key, elements, toLeft: toLeft, onlyIfExists: false) else { return false }
            ctx.journal([Array((toLeft ? "LPUSH" : "RPUSH").utf8), key.bytes] + elements)
            return true
        }
    }

    /// Runs `body` on `key`'s shard under its exclusive lock, as a write to it
    /// (WATCHers and waiters on it hear of it), then `then` back on `loop`
    /// with what `body` returned (whether it changed anything).
    private static func onShard(
        _ key: KeyRef, shardSet: ShardSet, loop: EventLoop, database: Int,
        _ body: @escaping (ShardContext) -> Bool, then: @escaping (Bool) -> Void = { _ in }
    ) {
        let shardIndex = key.withBytes { shardSet.shardIndex(of: $0, hash: key.hash) }
        let fingerprint = lockFingerprint(keyHash: key.hash, database: database)
        shardSet.runSingleShard(
            from: loop, shard: shardIndex, locks: ShardLockSet(fingerprints: [fingerprint], mode: .exclusive),
            { shard in
                let changed = body(ShardContext(shard: shard, databaseIndex: database))
                if changed { shard.noteWritten([fingerprint]) }
                return changed
            }, done: then)
    }
}

/// Where a parked command stands, on its connection's loop.
final class ParkState {
    var parked = false
    var finished = false
    var blocked: BlockedClient?
    /// A shard served the waiter before the coordinator saw it park.
    var earlyReply: Reply?
}

/// The waiter of a parking command, made only when the command parks (most
/// blocking pops find an element and never need one). With every watched key
/// on one shard it is made by that shard's single `apply`; with several it is
/// made up front, before any shard can see it. Kept apart from `ParkState`:
/// the waiter's `serve` holds that state, and the state must not hold it back.
final class WaiterSlot {
    var waiter: Waiter?
}

/// The shared machinery of a blocking pop: try now, else park a waiter on
/// every key; serve, time out or cancel exactly once.
final class Parking {
    typealias Pop = (ShardContext, Int, Bool) -> Reply
    /// Serves a parked waiter for key `position` and hands the reply to the
    /// completion, possibly later and from another shard's loop (BLMOVE
    /// across shards); nil: the waiter serves with ``pop``.
    typealias Serve = (ShardContext, Int, @escaping (Reply) -> Void) -> Void

    let call: CommandCall
    let keys: [KeyRef]
    let extraLockKeys: [KeyRef]
    let deadline: UInt64?
    let timeoutReply: Reply
    let nonBlockingEmptyReply: Reply
    let destinationCheck: KeyRef?
    /// How to put back what was popped for a connection that turned out to be gone.
    let giveBack: BlockingFamily.GiveBack
    /// What a key looks like to this command (a list, or a sorted set).
    let keyState: (ShardContext, KeyRef) -> BlockingFamily.KeyState
    /// Pops for key `position` on its shard and returns the reply.
    let pop: Pop
    let serve: Serve?

    init(
        call: CommandCall, keys: [KeyRef], extraLockKeys: [KeyRef] = [], deadline: UInt64?, timeoutReply: Reply,
        nonBlockingEmptyReply: Reply = .nullArray, destinationCheck: KeyRef? = nil, giveBack: BlockingFamily.GiveBack,
        keyState: @escaping (ShardContext, KeyRef) -> BlockingFamily.KeyState = BlockingFamily.listState,
        pop: @escaping Pop, serve: Serve? = nil
    ) {
        self.serve = serve
        self.keyState = keyState
        self.call = call
        self.keys = keys
        self.extraLockKeys = extraLockKeys
        self.deadline = deadline
        self.timeoutReply = timeoutReply
        self.nonBlockingEmptyReply = nonBlockingEmptyReply
        self.destinationCheck = destinationCheck
        self.giveBack = giveBack
        self.pop = pop
    }

    /// What the first attempt decided.
    enum Decision {
        case pop(position: Int)
        case error(Reply)
        case park
    }

    func run() {
        let shardSet = call.shardSet
        let allKeys = extraLockKeys.isEmpty ? keys : keys + extraLockKeys
        // Where each key lives (watched keys first, then the extra lock
        // keys), resolved once.
        let keyShards = allKeys.map { key in key.withBytes { shardSet.shardIndex(of: $0, hash: key.hash) } }
        // BLMOVE (a destination to check and push to) takes the full path at once.
        if serve == nil, extraLockKeys.isEmpty, destinationCheck == nil {
            let keyState = self.keyState, pop = self.pop
            let ready = BlockingFamily.popReady(call, keys, giveBack: giveBack, { ctx, key, position in
                switch keyState(ctx, key) {
                case .empty: return nil
                case .wrongType: return .wrongType
                case .ready: return pop(ctx, position, false)
                }
            }, orElse: { [self] _ in park(allKeys, keyShards) })
            if ready { return }
        }
        park(allKeys, keyShards)
    }

    /// The full path: checks every key's shard, pops, or parks the client on every shard
    /// of its keys. `allKeys`: the watched keys then the extra lock keys, on `keyShards`.
    private func park(_ allKeys: [KeyRef], _ keyShards: [Int]) {
        let call = self.call
        let shardSet = call.shardSet
        let database = call.client.database
        let keys = self.keys
        let canBlock = call.canBlock
        let pop = self.pop
        let keyState = self.keyState
        let serve = self.serve
        let destination = destinationCheck
        let firstShard = keyShards.first ?? 0
        let watchedOnOneShard = keyShards.prefix(keys.count).allSatisfy { $0 == firstShard }
        let singleShard = keyShards.allSatisfy { $0 == firstShard }
        /// The watched keys' positions on `shard`, ascending.
        let positionsOn: (Int) -> [Int] = { shard in (0..<keys.count).filter { keyShards[$0] == shard } }
        let client = call.client
        let loop = call.loop
        let counters = call.engine.loopCounters[loop.index]
        let registry = call.engine.blockedClients[loop.index]
        let sink = call.sink
        let timeoutReply = self.timeoutReply
        let emptyReply = nonBlockingEmptyReply
        let life = client.life
        let giveBack = self.giveBack
        /// Sends `reply`, or — the connection closed after a shard popped for
        /// it — puts what was popped back where it came from.
        let answer: (Reply) -> Void = { reply in
            if canBlock && life.isClosed {
                BlockingFamily.giveBack(reply, giveBack, shardSet: shardSet, loop: loop, database: database)
            } else {
                sink.complete(reply)
            }
        }

        // Where the waiter's reply goes, whichever comes first: a shard
        // serving it (possibly before the coordinator even learns it parked),
        // its timeout, a disconnect or CLIENT UNBLOCK.
        let state = ParkState()
        // nil: the client left while parked; nothing to send.
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
            if let reply { answer(reply) }
        }
        let deadline = self.deadline
        let makeWaiter: () -> Waiter = {
            // Per shard of the watched keys, ascending: where to register and clean up.
            let registrations = Set(keyShards.prefix(keys.count)).sorted().map { shard in
                (shard: shard, fingerprints: positionsOn(shard).map { lockFingerprint(keyHash: keys[$0].hash, database: database) })
            }
            return Waiter(
                loop: loop, owner: life, database: database, registrations: registrations, deadlineNanos: deadline,
                ready: { shard, position in
                    let ctx = ShardContext(shard: shard, databaseIndex: database)
                    return keyState(ctx, keys[position]) == .ready
                },
                serve: { shard, position in
                    let ctx = ShardContext(shard: shard, databaseIndex: database)
                    let complete: (Reply) -> Void = { reply in
                        loop.post {
                            if state.parked { deliver(reply) } else { state.earlyReply = reply }
                        }
                    }
                    if let serve { serve(ctx, position, complete) } else { complete(pop(ctx, position, true)) }
                })
        }
        let slot = WaiterSlot()
        if canBlock && !watchedOnOneShard { slot.waiter = makeWaiter() }

        let decide: ([[(Int, BlockingFamily.KeyState)]]) -> Decision = { checks in
            var states = [BlockingFamily.KeyState](repeating: .empty, count: allKeys.count)
            for part in checks { for (p, s) in part { states[p] = s } }
            for p in 0..<keys.count {
                switch states[p] {
                case .wrongType: return .error(.wrongType)
                case .ready:
                    if destination != nil, states[keys.count] == .wrongType { return .error(.wrongType) }
                    return .pop(position: p)
                case .empty: continue
                }
            }
            return canBlock ? .park : .error(emptyReply)
        }
        let check: (inout ShardContext, [Int]) -> [(Int, BlockingFamily.KeyState)] = { ctx, positions in
            positions.map { p in
                if p >= keys.count {
                    // The destination of BLMOVE: only its type matters.
                    guard let found = ctx.lookupWrite(allKeys[p]) else { return (p, .empty) }
                    if case .list = ctx.database.value(at: found) { return (p, .empty) }
                    return (p, .wrongType)
                }
                return (p, keyState(ctx, keys[p]))
            }
        }
        var result: Reply = .none
        let apply: (inout ShardContext, [Int], Decision) -> Void = { ctx, positions, decision in
            switch decision {
            case .pop(let position):
                if positions.contains(position) { result = pop(ctx, position, false) }
            case .park:
                let mine = positionsOn(ctx.shard.index)
                if !mine.isEmpty {
                    let waiter: Waiter
                    if let made = slot.waiter {
                        waiter = made
                    } else {
                        waiter = makeWaiter()
                        slot.waiter = waiter
                    }
                    ctx.shard.register(
                        waiter, fingerprints: mine.map { lockFingerprint(keyHash: keys[$0].hash, database: database) },
                        positions: mine)
                }
            case .error:
                break
            }
        }
        let finish: (Decision) -> Reply? = { decision in
            switch decision {
            case .pop: return result
            case .error(let reply): return reply
            case .park: return nil  // the reply comes later
            }
        }
        call.runOnKeysTwoPhaseRaw(
            allKeys, mode: .exclusive, check: check, decide: decide, apply: apply, reply: finish,
            forceTransaction: !(call.engine.singleHopBlocking && singleShard),
            // Each pop notes the keys it writes itself (Redis signals only those: the key
            // popped, and BLMOVE's destination when it pushed): a key found empty, of
            // another type, or waited on is not written.
            writtenPositions: []
        ) { reply in
            if let reply { return answer(reply) }
            // Registered on every shard.
            state.parked = true
            if let early = state.earlyReply { return deliver(early) }
            let blocked = BlockedClient(waiter: slot.waiter!, shardSet: shardSet, counters: counters, timeoutReply: timeoutReply) { reply in
                deliver(reply)
            }
            state.blocked = blocked
            client.blockedOn = blocked
            registry.add(client, blocked)
            counters.blockedClients.add(1, ordering: .relaxed)
            if life.isClosed {
                // The connection closed while the command was scheduled or
                // parking, when there was no waiter yet for it to cancel.
                blocked.cancel(reply: nil)
            }
        }
    }
}
