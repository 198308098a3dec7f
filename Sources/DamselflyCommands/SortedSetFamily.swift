import DamselflyRESP
import DamselflyStorage
import DamselflyTransactions

/// Sorted sets: ZADD and friends, ranges by rank, score and lex, pops,
/// random members, ZSCAN, and the union/intersection/difference commands.
///
/// Handlers parse and validate on the connection's thread (in Redis's order
/// of checks, which decides which error wins); the `op…` functions run on
/// the owning shard. Multi-key commands go through ``CommandCall/runOnKeys``
/// or ``CommandCall/runOnKeysTwoPhase`` so they are atomic across shards.
/// Range and set-algebra commands live in `SortedSetFamily+Ranges.swift`
/// and `SortedSetFamily+Algebra.swift`.
public enum SortedSetFamily {
    public static func register(_ r: CommandRegistry) {
        let g = "sorted_set"
        r.register("zadd", arity: -4, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            zadd(call, scoreIndex: 2, forceIncr: false)
        }
        r.register("zincrby", arity: 4, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            zadd(call, scoreIndex: 2, forceIncr: true)
        }
        r.register("zrem", arity: -3, flags: [.write, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1)
            let members = (2..<call.args.count).map { call.args.bytes($0) }
            call.runOnKey(key, mode: .exclusive) { ctx in
                guard let found = ctx.lookupWrite(key) else { return .integer(0) }
                guard case .zset = ctx.database.value(at: found) else { return .wrongType }
                let removed = modify(ctx, found) { z in members.reduce(0) { $0 + (z.remove($1) != nil ? 1 : 0) } }
                if removed > 0 { ctx.notifyRemoval(.zset, "zrem", key) }
                return .integer(removed)
            }
        }
        r.register("zcard", arity: 2, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1)
            call.runOnKey(key, mode: .shared) { ctx in
                switch read(ctx, key) {
                case .missing: return .integer(0)
                case .wrongType: return .wrongType
                case .found(let z): return .integer(z.count)
                }
            }
        }
        r.register("zscore", arity: 3, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1), member = call.args.bytes(2)
            call.runOnKey(key, mode: .shared) { ctx in
                switch read(ctx, key) {
                case .missing: return .null
                case .wrongType: return .wrongType
                case .found(let z): return z.score(of: member).map { .double($0) } ?? .null
                }
            }
        }
        r.register("zmscore", arity: -3, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1)
            let members = (2..<call.args.count).map { call.args.bytes($0) }
            call.runOnKey(key, mode: .shared) { ctx in
                switch read(ctx, key) {
                case .missing: return .array(members.map { _ in .null })
                case .wrongType: return .wrongType
                case .found(let z): return .array(members.map { m in z.score(of: m).map { .double($0) } ?? .null })
                }
            }
        }
        for (name, reverse) in [("zrank", false), ("zrevrank", true)] {
            r.register(name, arity: 3, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
                let key = call.key(1), member = call.args.bytes(2)
                call.runOnKey(key, mode: .shared) { ctx in
                    switch read(ctx, key) {
                    case .missing: return .null
                    case .wrongType: return .wrongType
                    case .found(let z):
                        guard let (rank, _) = z.rank(of: member) else { return .null }
                        return .integer(reverse ? z.count - 1 - rank : rank)
                    }
                }
            }
        }
        for (name, max) in [("zpopmin", false), ("zpopmax", true)] {
            r.register(name, arity: -2, flags: [.write, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
                zpop(call, max: max)
            }
        }
        r.register("zmpop", arity: -4, flags: [.write], group: g, handler: zmpop)
        r.register("zrandmember", arity: -2, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: zrandmember)
        r.register("zscan", arity: -3, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: zscan)
        registerRanges(r, group: g)
        registerAlgebra(r, group: g)
    }

    // MARK: - Shard-side helpers

    /// What a key holds, for sorted-set commands.
    public enum Lookup {
        case missing
        case wrongType
        case found(SortedSetValue)
    }

    /// Looks `key` up for a read (hit/miss accounting).
    @inlinable
    public static func read(_ ctx: ShardContext, _ key: KeyRef) -> Lookup {
        guard let found = ctx.lookupRead(key) else { return .missing }
        guard case .zset(let z) = ctx.database.value(at: found) else { return .wrongType }
        return .found(z)
    }

    /// Runs `body` on the sorted set at `found` in place, so the database
    /// re-accounts its memory afterwards; deletes the key when the set ends
    /// up empty (Redis never keeps an empty aggregate).
    @inlinable
    public static func modify<R>(_ ctx: ShardContext, _ found: EntryIndex, _ body: (SortedSetValue) -> R) -> R {
        var emptied = false
        let result: R = ctx.database.modifyValue(at: found) { value in
            guard case .zset(let z) = value else { fatalError("modify called on a non-zset value") }
            let r = body(z)
            emptied = z.count == 0
            return r
        }
        if emptied { ctx.database.remove(at: found) }
        return result
    }

    /// Scores as Redis 7.0 writes them inside strings (ZSCAN): `%.17g`,
    /// "inf", "-inf". Uses the reply builder's formatter so the digits are
    /// the ones ZSCORE sends.
    static func scoreText(_ score: Double) -> [UInt8] {
        var builder = ReplyBuilder(protocolVersion: 3, capacity: 32)
        builder.double(score)  // ",<text>\r\n"
        return Array(builder.buffer[1..<(builder.buffer.count - 2)])
    }

    /// Elements with scores as a reply: RESP2 a flat array, RESP3 (when
    /// `withScores`) an array of [member, score] pairs, as Redis 7.0 does.
    static func scoredReply(_ entries: [ZEntry], withScores: Bool, resp3: Bool) -> Reply {
        if !withScores { return .array(entries.map { .bulk($0.member) }) }
        if resp3 { return .array(entries.map { .array([.bulk($0.member), .double($0.score)]) }) }
        var out: [Reply] = []
        out.reserveCapacity(entries.count * 2)
        for e in entries {
            out.append(.bulk(e.member))
            out.append(.double(e.score))
        }
        return .array(out)
    }

    // MARK: - ZADD / ZINCRBY

    /// ZADD's flags.
    struct AddFlags {
        var nx = false, xx = false, gt = false, lt = false, ch = false, incr = false
    }

    static func zadd(_ call: CommandCall, scoreIndex start: Int, forceIncr: Bool) {
        var flags = AddFlags()
        flags.incr = forceIncr
        var scoreIndex = start
        // ZINCRBY goes through the same option loop, as in Redis: `ZINCRBY k NX 5` is a
        // syntax error (one element left), not "value is not a valid float".
        while scoreIndex < call.args.count {
            if call.isArg(scoreIndex, "nx") { flags.nx = true }
            else if call.isArg(scoreIndex, "xx") { flags.xx = true }
            else if call.isArg(scoreIndex, "ch") { flags.ch = true }
            else if call.isArg(scoreIndex, "incr") { flags.incr = true }
            else if call.isArg(scoreIndex, "gt") { flags.gt = true }
            else if call.isArg(scoreIndex, "lt") { flags.lt = true }
            else { break }
            scoreIndex += 1
        }
        let elements = call.args.count - scoreIndex
        guard elements > 0, elements % 2 == 0 else { return call.reply(.syntaxError) }
        if flags.nx && flags.xx {
            return call.reply(.error("ERR XX and NX options at the same time are not compatible"))
        }
        if (flags.gt && flags.nx) || (flags.lt && flags.nx) || (flags.gt && flags.lt) {
            return call.reply(.error("ERR GT, LT, and/or NX options at the same time are not compatible"))
        }
        if flags.incr && elements > 2 {
            return call.reply(.error("ERR INCR option supports a single increment-element pair"))
        }
        let options = flags
        if elements == 2 {
            // One element: the key and the member read in place when inline or in a
            // squashed run's batch, else copied (as LPUSH's one element).
            guard let score = call.double(scoreIndex) else { return call.reply(.notFloat) }
            let memberIndex = scoreIndex + 1
            return call.runOnKey(argument: 1, mode: .exclusive) { key, args in
                AddOneOperation(
                    key: key, score: score, member: ArgumentBytes(args, memberIndex, inPlace: key.isBorrowed), flags: options)
            }
        }
        var pairs: [ZEntry] = []
        pairs.reserveCapacity(elements / 2)
        var i = scoreIndex
        while i < call.args.count {
            guard let score = call.double(i) else { return call.reply(.notFloat) }
            pairs.append(ZEntry(score: score, member: call.args.bytes(i + 1)))
            i += 2
        }
        let key = call.key(1)
        call.runOnKey(key, mode: .exclusive) { ctx in opAdd(ctx, key, options, pairs) }
    }

    /// A one-element ZADD/ZINCRBY on its shard, as a value: no closure, key copy or
    /// element array on the inline path. Keeps nothing of its key after `run`.
    struct AddOneOperation: KeyOperation {
        let key: KeyRef
        let score: Double
        let member: ArgumentBytes
        let flags: AddFlags

        func run(_ ctx: inout ShardContext) -> Reply {
            opAdd(ctx, key, flags, CollectionOfOne(ZEntry(score: score, member: member.array)))
        }
    }

    static let nanError = Reply.error("ERR resulting score is not a number (NaN)")

    /// Redis's `zaddGenericCommand` + `zsetAdd` on the shard.
    static func opAdd<Pairs: Collection<ZEntry>>(_ ctx: ShardContext, _ key: KeyRef, _ flags: AddFlags, _ pairs: Pairs) -> Reply {
        var added = 0, updated = 0, processed = 0
        var lastScore = 0.0
        var failed = false
        /// One element; false on a NaN result.
        func addOne(_ z: SortedSetValue, _ pair: ZEntry) -> Bool {
            var score = pair.score
            if let current = z.score(of: pair.member) {
                if flags.nx { return true }
                if flags.incr {
                    score += current
                    if score.isNaN { return false }
                }
                if (flags.lt && score >= current) || (flags.gt && score <= current) { return true }
                if score != current {
                    z.update(pair.member, from: current, to: score)
                    updated += 1
                }
                processed += 1
                lastScore = score
            } else if !flags.xx {
                z.insert(pair.member, score: score)
                added += 1
                processed += 1
                lastScore = score
            }
            return true
        }
        if let found = ctx.lookupWrite(key) {
            guard case .zset = ctx.database.value(at: found) else { return .wrongType }
            modify(ctx, found) { z in
                for pair in pairs where !addOne(z, pair) {
                    failed = true
                    break
                }
            }
        } else if !flags.xx {
            let z = SortedSetValue(firstMemberLength: pairs.first!.member.count)
            for pair in pairs where !addOne(z, pair) {
                failed = true
                break
            }
            if z.count > 0 { ctx.store(key, .zset(z)) }
        }
        if failed { return nanError }
        // Redis signals only when an element was added or its score moved.
        if added + updated == 0 { ctx.markUnchanged() } else { ctx.notify(.zset, flags.incr ? "zincr" : "zadd", key) }
        if flags.incr { return processed > 0 ? .double(lastScore) : .null }
        return .integer(flags.ch ? added + updated : added)
    }

    // MARK: - Pops

    /// What a pop found: shard-side result shared by ZPOPMIN/ZPOPMAX, ZMPOP
    /// and the blocking variants.
    public enum PopResult {
        case missing
        case wrongType
        /// The popped elements, in pop order (ascending for MIN, descending for MAX).
        case popped([ZEntry])
    }

    /// Pops up to `count` elements from the low (or, with `max`, the high)
    /// end of the sorted set at `key`, deleting the key when it empties.
    /// A `count` of 0 only checks the key.
    public static func opPop(_ ctx: ShardContext, _ key: KeyRef, max: Bool, count: Int) -> PopResult {
        guard let found = ctx.lookupWrite(key) else { return .missing }
        guard case .zset = ctx.database.value(at: found) else { return .wrongType }
        if count <= 0 { return .popped([]) }
        let popped = modify(ctx, found) { z in
            let n = Swift.min(count, z.count)
            let ranks = max ? (z.count - n)..<z.count : 0..<n
            let out = z.entries(ranks: ranks, reverse: max)
            z.removeRanks(ranks)
            return out
        }
        if !popped.isEmpty { ctx.notifyRemoval(.zset, max ? "zpopmax" : "zpopmin", key) }
        return .popped(popped)
    }

    static func zpop(_ call: CommandCall, max: Bool) {
        guard call.args.count <= 3 else { return call.reply(.syntaxError) }
        var count = 1
        let hasCount = call.args.count == 3
        if hasCount {
            guard let n = call.integer(2), n >= 0 else {
                return call.reply(.error("ERR value is out of range, must be positive"))
            }
            count = Int(n)
        }
        let key = call.key(1)
        let nested = hasCount && call.client.protocolVersion >= 3
        call.runOnKey(key, mode: .exclusive) { ctx in
            switch opPop(ctx, key, max: max, count: count) {
            case .missing: return .array([])
            case .wrongType: return .wrongType
            case .popped(let entries):
                if nested { return .array(entries.map { .array([.bulk($0.member), .double($0.score)]) }) }
                return scoredReply(entries, withScores: true, resp3: false)
            }
        }
    }

    /// Carries ZMPOP's popped elements from the apply phase to the reply.
    final class PoppedBox {
        var entries: [ZEntry] = []
    }

    /// ZMPOP's state of one key.
    enum KeyState {
        case missing, wrongType, nonEmpty
    }

    static func zmpop(_ call: CommandCall) {
        guard let numkeys = call.integer(1), numkeys > 0 else {
            return call.reply(.error("ERR numkeys should be greater than 0"))
        }
        guard numkeys <= Int64(call.args.count - 3) else { return call.reply(.syntaxError) }
        let whereIndex = 2 + Int(numkeys)
        let max: Bool
        if call.isArg(whereIndex, "min") { max = false }
        else if call.isArg(whereIndex, "max") { max = true }
        else { return call.reply(.syntaxError) }
        guard let popCount = call.popCount(from: whereIndex + 1) else { return }
        let keys = (2..<whereIndex).map { call.key($0) }
        let box = PoppedBox()
        call.runOnKeysTwoPhase(keys, mode: .exclusive, check: { ctx, positions -> [(Int, KeyState)] in
            positions.map { p in
                guard let found = ctx.lookupWrite(keys[p]) else { return (p, .missing) }
                guard case .zset = ctx.database.value(at: found) else { return (p, .wrongType) }
                return (p, .nonEmpty)
            }
        }, decide: { checks -> Int? in
            // The first key, in argument order, that exists decides; -1 is WRONGTYPE.
            var states = [KeyState](repeating: .missing, count: keys.count)
            for part in checks { for (p, state) in part { states[p] = state } }
            for (p, state) in states.enumerated() {
                switch state {
                case .missing: continue
                case .wrongType: return -1
                case .nonEmpty: return p
                }
            }
            return nil
        }, apply: { ctx, positions, chosen in
            // Only the key popped from is written (WATCH on the others holds).
            guard let chosen, chosen >= 0, positions.contains(chosen) else { return ctx.markUnchanged() }
            ctx.markOnlyWritten([keys[chosen]])
            if case .popped(let entries) = opPop(ctx, keys[chosen], max: max, count: popCount) {
                box.entries = entries
            }
        }, reply: { chosen in
            guard let chosen else { return .nullArray }
            if chosen < 0 { return .wrongType }
            return .array([
                .bulk(keys[chosen].bytes),
                .array(box.entries.map { .array([.bulk($0.member), .double($0.score)]) }),
            ])
        })
    }

    // MARK: - ZRANDMEMBER

    /// Most picks a ZRANDMEMBER with a negative count may ask for.
    static let maxRandomPicks = 1 << 26

    static func zrandmember(_ call: CommandCall) {
        let key = call.key(1)
        if call.args.count == 2 {
            call.runOnKey(key, mode: .shared) { ctx in
                switch read(ctx, key) {
                case .missing: return .null
                case .wrongType: return .wrongType
                case .found(let z): return .bulk(z.entry(at: Int.random(in: 0..<z.count)).member)
                }
            }
            return
        }
        guard let count = call.integer(2) else { return call.reply(.notInteger) }
        guard count != Int64.min else {
            return call.reply(.error(
                "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"))
        }
        if call.args.count > 4 || (call.args.count == 4 && !call.isArg(3, "withscores")) {
            return call.reply(.syntaxError)
        }
        let withScores = call.args.count == 4
        if withScores && (count < -Int64.max / 2 || count > Int64.max / 2) {
            return call.reply(.error("ERR value is out of range"))
        }
        // Redis streams a huge negative-count reply forever; a reply built
        // as a value must stay bounded, so absurd counts are refused.
        if count < -Int64(maxRandomPicks) {
            return call.reply(.error("ERR value is out of range"))
        }
        let resp3 = call.client.protocolVersion >= 3
        call.runOnKey(key, mode: .shared) { ctx in
            switch read(ctx, key) {
            case .missing: return .array([])
            case .wrongType: return .wrongType
            case .found(let z):
                if count == 0 { return .array([]) }
                var picked: [ZEntry] = []
                if count < 0 {
                    let n = Int(-count)
                    picked.reserveCapacity(n)
                    for _ in 0..<n { picked.append(z.entry(at: Int.random(in: 0..<z.count))) }
                } else if Int(count) >= z.count {
                    picked = z.allEntries
                } else {
                    // Distinct picks, reported in set order (as Redis does
                    // for a listpack).
                    var ranks = Set<Int>()
                    while ranks.count < Int(count) { ranks.insert(Int.random(in: 0..<z.count)) }
                    picked = ranks.sorted().map { z.entry(at: $0) }
                }
                return scoredReply(picked, withScores: withScores, resp3: resp3)
            }
        }
    }

    // MARK: - ZSCAN

    static func zscan(_ call: CommandCall) {
        guard let cursor = ScanArguments.parseCursor(call.args[2]) else { return call.reply(.error("ERR invalid cursor")) }
        // Options are checked after the key (Redis parses them in
        // scanGenericCommand, once the key is known to be a sorted set).
        var count = 10
        var pattern: [UInt8]? = nil
        var optionError: Reply? = nil
        var i = 3
        while i < call.args.count {
            guard i + 1 < call.args.count else { optionError = .syntaxError; break }
            if call.isArg(i, "count") {
                guard let n = call.integer(i + 1) else { optionError = .notInteger; break }
                guard n >= 1 else { optionError = .syntaxError; break }
                count = Int(Swift.min(n, 1 << 30))
            } else if call.isArg(i, "match") {
                pattern = call.args.bytes(i + 1)
            } else {
                optionError = .syntaxError
                break
            }
            i += 2
        }
        let key = call.key(1)
        let filter = pattern, step = count, failure = optionError
        call.runOnKey(key, mode: .shared) { ctx in
            let z: SortedSetValue
            switch read(ctx, key) {
            case .missing: return .array([.bulkString("0"), .array([])])
            case .wrongType: return .wrongType
            case .found(let found): z = found
            }
            if let failure { return failure }
            // A listpack is returned whole (as Redis does); a large set is
            // walked by rank, the cursor being the next rank.
            let start = z.isListpack ? 0 : Int(Swift.min(cursor, UInt64(z.count)))
            let end = z.isListpack ? z.count : Swift.min(z.count, start + step)
            var items: [Reply] = []
            let everything = filter.map { p in p.withUnsafeBytes { GlobPattern.matchesEverything($0) } } ?? true
            z.forEach(ranks: start..<end) { e in
                if !everything {
                    let matched = filter!.withUnsafeBytes { p in
                        e.member.withUnsafeBytes { GlobPattern.matches(pattern: p, string: $0) }
                    }
                    if !matched { return }
                }
                items.append(.bulk(e.member))
                items.append(.bulk(scoreText(e.score)))
            }
            let next = end >= z.count ? 0 : end
            return .array([.bulkString(String(next)), .array(items)])
        }
    }
}
