import DamselflyRESP
import DamselflyStorage
import DamselflyTransactions

/// Sets: membership, random picks, SSCAN, and the multi-key algebra
/// (SINTER, SUNION, SDIFF, their STORE forms, SINTERCARD, SMOVE), atomic
/// across shards through the transaction framework.
///
/// Multi-key reads gather each shard's members (``runOnKeys``) and combine
/// them on the connection's thread; STORE forms and SMOVE check on every
/// shard and then apply on the destination's shard under the same locks
/// (``CommandCall/runOnKeysTwoPhase``), so no other command sees a half-done
/// result.
public enum SetFamily {
    public static func register(_ r: CommandRegistry) {
        let g = "set"
        r.register("sadd", arity: -3, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            guard call.args.count > 3 else {
                // One member: the key and the member read in place when inline or in a
                // squashed run's batch, else copied (as LPUSH's one element).
                return call.runOnKey(argument: 1, mode: .exclusive) { key, args in
                    AddOneOperation(key: key, member: ArgumentBytes(args, 2, inPlace: key.isBorrowed))
                }
            }
            let key = call.key(1)
            let members = (2..<call.args.count).map { call.args.bytes($0) }
            call.runOnKey(key, mode: .exclusive) { ctx in opAdd(&ctx, key, members) }
        }
        r.register("srem", arity: -3, flags: [.write, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1)
            let members = (2..<call.args.count).map { call.args.bytes($0) }
            call.runOnKey(key, mode: .exclusive) { ctx in opRemove(&ctx, key, members) }
        }
        r.register("smembers", arity: 2, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1)
            call.runOnKey(key, mode: .shared) { ctx in
                read(&ctx, key, empty: .set([])) { set in
                    var out: [Reply] = []
                    out.reserveCapacity(set.count)
                    set.forEach { out.append(.bulk($0)) }
                    return .set(out)
                }
            }
        }
        r.register("sismember", arity: 3, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1), member = call.args.bytes(2)
            call.runOnKey(key, mode: .shared) { ctx in
                read(&ctx, key, empty: .integer(0)) { .integer($0.contains(member) ? 1 : 0) }
            }
        }
        r.register("smismember", arity: -3, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1)
            let members = (2..<call.args.count).map { call.args.bytes($0) }
            call.runOnKey(key, mode: .shared) { ctx in
                read(&ctx, key, empty: .array(Array(repeating: .integer(0), count: members.count))) { set in
                    .array(members.map { .integer(set.contains($0) ? 1 : 0) })
                }
            }
        }
        r.register("scard", arity: 2, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1)
            call.runOnKey(key, mode: .shared) { ctx in
                read(&ctx, key, empty: .integer(0)) { .integer($0.count) }
            }
        }
        r.register("spop", arity: -2, flags: [.write, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: spop)
        r.register("srandmember", arity: -2, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: srandmember)
        r.register("smove", arity: 4, flags: [.write, .fast], firstKey: 1, lastKey: 2, keyStep: 1, group: g, handler: smove)
        r.register("sinter", arity: -2, flags: [.readonly], firstKey: 1, lastKey: -1, keyStep: 1, group: g) { call in
            algebra(call, .intersection, firstSource: 1, store: false)
        }
        r.register("sunion", arity: -2, flags: [.readonly], firstKey: 1, lastKey: -1, keyStep: 1, group: g) { call in
            algebra(call, .union, firstSource: 1, store: false)
        }
        r.register("sdiff", arity: -2, flags: [.readonly], firstKey: 1, lastKey: -1, keyStep: 1, group: g) { call in
            algebra(call, .difference, firstSource: 1, store: false)
        }
        r.register("sinterstore", arity: -3, flags: [.write, .denyOOM], firstKey: 1, lastKey: -1, keyStep: 1, group: g) { call in
            algebra(call, .intersection, firstSource: 2, store: true)
        }
        r.register("sunionstore", arity: -3, flags: [.write, .denyOOM], firstKey: 1, lastKey: -1, keyStep: 1, group: g) { call in
            algebra(call, .union, firstSource: 2, store: true)
        }
        r.register("sdiffstore", arity: -3, flags: [.write, .denyOOM], firstKey: 1, lastKey: -1, keyStep: 1, group: g) { call in
            algebra(call, .difference, firstSource: 2, store: true)
        }
        r.register("sintercard", arity: -3, flags: [.readonly], firstKey: 0, lastKey: 0, keyStep: 0, group: g, handler: sintercard)
        r.register("sscan", arity: -3, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: sscan)
    }

    // MARK: - Lookup

    typealias Lookup = TypedLookup<SetValue>

    static func value(_ stored: StoredValue) -> SetValue? {
        if case .set(let v) = stored { return v }
        return nil
    }

    static func lookup(_ ctx: inout ShardContext, _ key: KeyRef, write: Bool) -> Lookup {
        ctx.lookup(key, write: write, as: value)
    }

    static func read(_ ctx: inout ShardContext, _ key: KeyRef, empty: Reply, _ body: (SetValue) -> Reply) -> Reply {
        ctx.read(key, empty: empty, as: value, body)
    }

    /// Runs `body` on an existing set with its memory re-accounted, and
    /// deletes the key if `body` emptied the set.
    static func modify<R>(_ ctx: inout ShardContext, _ index: EntryIndex, _ set: SetValue, _ body: (SetValue) -> R) -> R {
        let result = ctx.database.modifyValue(at: index) { _ in body(set) }
        if set.count == 0 { ctx.database.remove(at: index) }
        return result
    }

    /// A removal's events: `event`, then `del` when it emptied (and so deleted) the set.
    static func notifyRemoved(_ ctx: inout ShardContext, _ key: KeyRef, _ set: SetValue, _ event: StaticString) {
        ctx.notify(.set, event, key)
        if set.count == 0 { ctx.notify(.generic, "del", key) }
    }

    // MARK: - Single key

    /// A one-member SADD on its shard, as a value: no closure, key copy or member
    /// array on the inline path. Keeps nothing of its key after `run`.
    struct AddOneOperation: KeyOperation {
        let key: KeyRef
        let member: ArgumentBytes

        func run(_ ctx: inout ShardContext) -> Reply { opAdd(&ctx, key, CollectionOfOne(member.array)) }
    }

    static func opAdd<Members: Collection<[UInt8]>>(_ ctx: inout ShardContext, _ key: KeyRef, _ members: Members) -> Reply {
        switch lookup(&ctx, key, write: true) {
        case .wrongType:
            return .wrongType
        case .missing:
            let set = SetValue(firstMember: members.first!)
            var added = 0
            for m in members where set.add(m) { added += 1 }
            ctx.store(key, .set(set))
            ctx.notify(.set, "sadd", key)
            return .integer(added)
        case .found(let index, let set):
            let added = modify(&ctx, index, set) { set in
                var added = 0
                for m in members where set.add(m) { added += 1 }
                return added
            }
            if added > 0 { ctx.notify(.set, "sadd", key) }
            return .integer(added)
        }
    }

    static func opRemove(_ ctx: inout ShardContext, _ key: KeyRef, _ members: [[UInt8]]) -> Reply {
        switch lookup(&ctx, key, write: true) {
        case .missing: return .integer(0)
        case .wrongType: return .wrongType
        case .found(let index, let set):
            let removed = modify(&ctx, index, set) { set in
                var removed = 0
                for m in members where set.remove(m) {
                    removed += 1
                    if set.count == 0 { break }
                }
                return removed
            }
            if removed > 0 { notifyRemoved(&ctx, key, set, "srem") }
            return .integer(removed)
        }
    }

    static func spop(_ call: CommandCall) {
        let key = call.key(1)
        if call.args.count > 3 { return call.reply(.syntaxError) }
        if call.args.count == 2 {
            call.runOnKey(key, mode: .exclusive) { ctx in
                switch lookup(&ctx, key, write: true) {
                case .missing: return .null
                case .wrongType: return .wrongType
                case .found(let index, let set):
                    var rng = SplitMix64()
                    let popped = modify(&ctx, index, set) { $0.popRandom(using: &rng) }
                    notifyRemoved(&ctx, key, set, "spop")
                    return .bulk(popped)
                }
            }
            return
        }
        guard let count = call.integer(2), count >= 0 else {
            return call.reply(.error("ERR value is out of range, must be positive"))
        }
        call.runOnKey(key, mode: .exclusive) { ctx in
            switch lookup(&ctx, key, write: true) {
            case .missing: return .set([])
            case .wrongType: return .wrongType
            case .found(let index, let set):
                if count == 0 { return .set([]) }
                if count >= set.count {
                    // Everything: the whole set, and the key goes.
                    var out: [Reply] = []
                    out.reserveCapacity(set.count)
                    set.forEach { out.append(.bulk($0)) }
                    ctx.database.remove(at: index)
                    ctx.notify(.set, "spop", key)
                    ctx.notify(.generic, "del", key)
                    return .set(out)
                }
                var rng = SplitMix64()
                let popped: [Reply] = modify(&ctx, index, set) { set in
                    (0..<Int(count)).map { _ in .bulk(set.popRandom(using: &rng)) }
                }
                notifyRemoved(&ctx, key, set, "spop")
                return .set(popped)
            }
        }
    }

    static func srandmember(_ call: CommandCall) {
        let key = call.key(1)
        if call.args.count > 3 { return call.reply(.syntaxError) }
        if call.args.count == 2 {
            call.runOnKey(key, mode: .shared) { ctx in
                var rng = SplitMix64()
                return read(&ctx, key, empty: .null) { .bulk($0.randomMember(using: &rng)) }
            }
            return
        }
        guard let count = call.integer(2) else { return call.reply(.notInteger) }
        guard count != Int64.min else {
            return call.reply(.error(
                "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"))
        }
        // As ZRANDMEMBER: a reply is built as a value, so absurd negative counts are
        // refused rather than allocated (redis-server 7.0 loops on them for ever).
        if count < -Int64(SortedSetFamily.maxRandomPicks) {
            return call.reply(.error("ERR value is out of range"))
        }
        call.runOnKey(key, mode: .shared) { ctx in
            read(&ctx, key, empty: .array([])) { set in
                var rng = SplitMix64()
                if count == 0 { return .array([]) }
                if count < 0 {
                    return .array((0..<Int(-count)).map { _ in .bulk(set.randomMember(using: &rng)) })
                }
                var members = set.members
                if count < members.count {
                    let n = Int(count)
                    for i in 0..<n { members.swapAt(i, Int.random(in: i..<members.count, using: &rng)) }
                    members.removeSubrange(n...)
                }
                return .array(members.map { .bulk($0) })
            }
        }
    }

    // MARK: - SMOVE

    /// What SMOVE found on one shard.
    struct MoveCheck {
        var source: Int8 = 0  // 0 not here, 1 missing, 2 wrong type, 3 set without member, 4 set with member
        var destinationWrongType = false
    }

    static func smove(_ call: CommandCall) {
        let source = call.key(1), destination = call.key(2), member = call.args.bytes(3)
        if source.bytes == destination.bytes {
            call.runOnKey(source, mode: .exclusive) { ctx in
                ctx.markUnchanged()  // a move onto itself changes nothing (Redis signals nothing either)
                switch lookup(&ctx, source, write: true) {
                case .missing: return .integer(0)
                case .wrongType: return .wrongType
                case .found(_, let set): return .integer(set.contains(member) ? 1 : 0)
                }
            }
            return
        }
        call.runOnKeysTwoPhase([source, destination], mode: .exclusive, check: { ctx, positions -> MoveCheck in
            var check = MoveCheck()
            for p in positions {
                if p == 0 {
                    switch lookup(&ctx, source, write: true) {
                    case .missing: check.source = 1
                    case .wrongType: check.source = 2
                    case .found(_, let set): check.source = set.contains(member) ? 4 : 3
                    }
                } else if case .wrongType = lookup(&ctx, destination, write: true) {
                    check.destinationWrongType = true
                }
            }
            return check
        }, decide: { checks -> Reply in
            let sourceState = checks.map(\.source).max() ?? 1
            if sourceState == 1 { return .integer(0) }
            if sourceState == 2 || checks.contains(where: \.destinationWrongType) { return .wrongType }
            return .integer(sourceState == 4 ? 1 : 0)
        }, apply: { ctx, positions, decision in
            guard case .integer(1) = decision else { return ctx.markUnchanged() }
            var written: [KeyRef] = []
            for p in positions {
                if p == 0 {
                    if case .found(let index, let set) = lookup(&ctx, source, write: true) {
                        _ = modify(&ctx, index, set) { $0.remove(member) }
                        notifyRemoved(&ctx, source, set, "srem")
                    }
                    written.append(source)
                } else if case .integer(let added) = opAdd(&ctx, destination, [member]), added > 0 {
                    written.append(destination)
                }
            }
            // A member already in the destination leaves it untouched: Redis
            // signals only the source then (WATCH on the destination holds).
            ctx.markOnlyWritten(written)
        }, reply: { $0 })
    }

    // MARK: - Algebra

    enum Operation { case intersection, union, difference }

    /// One source key's contents, as gathered on its shard.
    enum Source {
        case missing
        case wrongType
        case members([[UInt8]])
    }

    /// Reads `keys[p]` for each of `positions` on one shard.
    static func gather(_ ctx: inout ShardContext, _ keys: [KeyRef], _ positions: [Int], from first: Int, write: Bool) -> [(Int, Source)] {
        positions.compactMap { p -> (Int, Source)? in
            guard p >= first else { return nil }
            switch lookup(&ctx, keys[p], write: write) {
            case .missing: return (p, .missing)
            case .wrongType: return (p, .wrongType)
            case .found(_, let set): return (p, .members(set.members))
            }
        }
    }

    /// The sources in key order, or nil when one has the wrong type.
    static func ordered(_ parts: [[(Int, Source)]], count: Int, from first: Int) -> [[[UInt8]]?]? {
        var sources = [[[UInt8]]?](repeating: nil, count: count)
        for part in parts {
            for (p, source) in part {
                switch source {
                case .wrongType: return nil
                case .missing: sources[p - first] = nil
                case .members(let m): sources[p - first] = m
                }
            }
        }
        return sources
    }

    /// Computes SINTER/SUNION/SDIFF as Redis 7.0 does, into a fresh set
    /// built by the same sequence of adds and removes, so a STORE result
    /// gets the encoding Redis would give it (and an intset replies in
    /// ascending order, as Redis's does).
    static func compute(_ operation: Operation, _ sources: [[[UInt8]]?]) -> SetValue {
        let result = SetValue()
        switch operation {
        case .intersection:
            if sources.contains(where: { $0 == nil }) { return result }
            let sets = sources.map { $0! }
            // Walk the smallest set, test membership in the others.
            let order = sets.indices.sorted { sets[$0].count < sets[$1].count }
            let lookups = order.dropFirst().map { Set(sets[$0]) }
            for m in sets[order[0]] where lookups.allSatisfy({ $0.contains(m) }) { result.add(m) }
        case .union:
            for case let members? in sources { for m in members { result.add(m) } }
        case .difference:
            guard let first = sources[0] else { return result }
            // Redis's choice between its two algorithms (it affects only the
            // stored encoding): per-element checks, or add-all-then-remove.
            var one = 0, two = 0
            for case let members? in sources {
                one += first.count
                two += members.count
            }
            if one / 2 <= two {
                let others = sources.dropFirst().compactMap { $0.map(Set.init) }
                for m in first where !others.contains(where: { $0.contains(m) }) { result.add(m) }
            } else {
                for m in first { result.add(m) }
                for case let members? in sources.dropFirst() {
                    for m in members { result.remove(m) }
                    if result.count == 0 { break }
                }
            }
        }
        return result
    }

    static func algebra(_ call: CommandCall, _ operation: Operation, firstSource: Int, store: Bool) {
        let keys = (1..<call.args.count).map { call.key($0) }
        let first = firstSource - 1  // index of the first source in `keys`
        let sourceCount = keys.count - first
        // SDIFF of a key with itself later in the list is empty (Redis's `sameset`).
        let sameSet = operation == .difference && keys[(first + 1)...].contains { $0.bytes == keys[first].bytes }
        if !store {
            call.runOnKeys(keys, mode: .shared, perShard: { ctx, positions in
                gather(&ctx, keys, positions, from: first, write: false)
            }, merge: { parts in
                guard let sources = ordered(parts, count: sourceCount, from: first) else { return .wrongType }
                if sameSet { return .set([]) }
                var out: [Reply] = []
                compute(operation, sources).forEach { out.append(.bulk($0)) }
                return .set(out)
            })
            return
        }
        call.runOnKeysTwoPhase(keys, mode: .exclusive, check: { ctx, positions in
            gather(&ctx, keys, positions, from: first, write: true)
        }, decide: { parts -> SetValue? in
            guard let sources = ordered(parts, count: sourceCount, from: first) else { return nil }
            return sameSet ? SetValue() : compute(operation, sources)
        }, apply: { ctx, positions, result in
            guard let result, positions.contains(0) else { return }
            if result.count > 0 {
                ctx.store(keys[0], .set(result))
                ctx.notify(.set, operation == .intersection ? "sinterstore" : operation == .union ? "sunionstore" : "sdiffstore", keys[0])
            } else if ctx.delete(keys[0]) {
                ctx.notify(.generic, "del", keys[0])
            }
        }, reply: { result in
            guard let result else { return .wrongType }
            return .integer(result.count)
        }, writtenPositions: [0])
    }

    static func sintercard(_ call: CommandCall) {
        guard let numKeys = call.integer(1), numKeys >= 1 else {
            return call.reply(.error("ERR numkeys should be greater than 0"))
        }
        guard numKeys <= call.args.count - 2 else {
            return call.reply(.error("ERR Number of keys can't be greater than number of args"))
        }
        let n = Int(numKeys)
        var limit = 0
        var i = 2 + n
        while i < call.args.count {
            if call.isArg(i, "limit") && i + 1 < call.args.count {
                guard let l = call.integer(i + 1), l >= 0 else {
                    return call.reply(.error("ERR LIMIT can't be negative"))
                }
                limit = Int(l)
                i += 2
            } else {
                return call.reply(.syntaxError)
            }
        }
        let keys = (2..<(2 + n)).map { call.key($0) }
        let cap = limit
        call.runOnKeys(keys, mode: .shared, perShard: { ctx, positions in
            gather(&ctx, keys, positions, from: 0, write: false)
        }, merge: { parts in
            guard let sources = ordered(parts, count: keys.count, from: 0) else { return .wrongType }
            if sources.contains(where: { $0 == nil }) { return .integer(0) }
            let sets = sources.map { $0! }
            let order = sets.indices.sorted { sets[$0].count < sets[$1].count }
            let lookups = order.dropFirst().map { Set(sets[$0]) }
            var found = 0
            for m in sets[order[0]] where lookups.allSatisfy({ $0.contains(m) }) {
                found += 1
                if cap > 0 && found >= cap { break }
            }
            return .integer(found)
        })
    }

    // MARK: - SSCAN

    static func sscan(_ call: CommandCall) {
        guard let cursor = ScanArguments.parseCursor(call.args[2]) else {
            return call.reply(.error("ERR invalid cursor"))
        }
        let options = ScanArguments(call, from: 3)
        let key = call.key(1)
        call.runOnKey(key, mode: .shared) { ctx in
            read(&ctx, key, empty: ScanArguments.emptyReply) { set in
                if let error = options.error { return error }
                var items: [Reply] = []
                let next = set.scan(cursor: cursor, count: options.count) { m in
                    if options.matches(m) { items.append(.bulk(m)) }
                }
                return .array([.bulkString(String(next)), .array(items)])
            }
        }
    }
}
