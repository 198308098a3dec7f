#if canImport(Glibc)
import Glibc
#endif
import DamselflyRESP
import DamselflyStorage
import DamselflyTransactions

/// Lists: pushes and pops at both ends, ranges, positional edits, LPOS, and
/// the moves between lists (LMOVE, RPOPLPUSH, LMPOP), with Redis 7.0's
/// replies, errors and order of checks.
///
/// Handlers parse on the connection's thread; the `op…` functions run on the
/// shard that owns the key and return plain values, so the blocking pops
/// (BLPOP, BRPOP, BLMOVE) can call ``opPop(_:_:fromLeft:count:)`` and
/// ``opPush(_:_:_:toLeft:onlyIfExists:)`` when they wake up.
///
/// Where Redis checks arguments only after it found the key (LINDEX and
/// LSET look the key up before they parse the index), the handler parses
/// early but reports the error from the shard, after the lookup.
public enum ListFamily {
    public static func register(_ r: CommandRegistry) {
        let g = "list"
        r.register("lpush", arity: -3, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            push(call, toLeft: true, onlyIfExists: false)
        }
        r.register("rpush", arity: -3, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            push(call, toLeft: false, onlyIfExists: false)
        }
        r.register("lpushx", arity: -3, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            push(call, toLeft: true, onlyIfExists: true)
        }
        r.register("rpushx", arity: -3, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            push(call, toLeft: false, onlyIfExists: true)
        }
        r.register("lpop", arity: -2, flags: [.write, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            pop(call, fromLeft: true)
        }
        r.register("rpop", arity: -2, flags: [.write, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            pop(call, fromLeft: false)
        }
        r.register("llen", arity: 2, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1)
            call.runOnKey(key, mode: .shared) { ctx in
                guard let found = ctx.lookupRead(key) else { return .integer(0) }
                guard case .list(let list) = ctx.database.value(at: found) else { return .wrongType }
                return .integer(list.count)
            }
        }
        r.register("lrange", arity: 4, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            guard let start = call.integer(2), let end = call.integer(3) else { return call.reply(.notInteger) }
            let key = call.key(1)
            call.runOnKey(key, mode: .shared) { ctx in opRange(&ctx, key, start, end) }
        }
        r.register("lindex", arity: 3, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1), index = call.integer(2)
            call.runOnKey(key, mode: .shared) { ctx in
                guard let found = ctx.lookupRead(key) else { return .null }
                guard case .list(let list) = ctx.database.value(at: found) else { return .wrongType }
                guard let index else { return .notInteger }
                guard let i = resolveIndex(index, count: list.count) else { return .null }
                return .bulk(list.element(at: i))
            }
        }
        r.register("lset", arity: 4, flags: [.write, .denyOOM], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1), index = call.integer(2), value = call.args.bytes(3)
            call.runOnKey(key, mode: .exclusive) { ctx in opSet(&ctx, key, index, value) }
        }
        r.register("linsert", arity: 5, flags: [.write, .denyOOM], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let after: Bool
            if call.isArg(2, "before") {
                after = false
            } else if call.isArg(2, "after") {
                after = true
            } else {
                return call.reply(.syntaxError)
            }
            let key = call.key(1), pivot = call.args.bytes(3), value = call.args.bytes(4)
            call.runOnKey(key, mode: .exclusive) { ctx in opInsert(&ctx, key, pivot: pivot, value: value, after: after) }
        }
        r.register("lrem", arity: 4, flags: [.write], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            guard let n = call.integer(2) else { return call.reply(.notInteger) }
            let key = call.key(1), value = call.args.bytes(3)
            call.runOnKey(key, mode: .exclusive) { ctx in opRemove(&ctx, key, count: n, value: value) }
        }
        r.register("ltrim", arity: 4, flags: [.write], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            guard let start = call.integer(2), let end = call.integer(3) else { return call.reply(.notInteger) }
            let key = call.key(1)
            call.runOnKey(key, mode: .exclusive) { ctx in opTrim(&ctx, key, start, end) }
        }
        r.register("lpos", arity: -3, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: lpos)
        r.register("lmove", arity: 5, flags: [.write, .denyOOM], firstKey: 1, lastKey: 2, keyStep: 1, group: g) { call in
            guard let from = side(call, 3), let to = side(call, 4) else { return call.reply(.syntaxError) }
            move(call, fromLeft: from, toLeft: to)
        }
        r.register("rpoplpush", arity: 3, flags: [.write, .denyOOM], firstKey: 1, lastKey: 2, keyStep: 1, group: g) { call in
            move(call, fromLeft: false, toLeft: true)
        }
        // Movable keys (numkeys): COMMAND reports no key range, as Redis does.
        r.register("lmpop", arity: -4, flags: [.write], firstKey: 0, lastKey: 0, keyStep: 0, group: g, handler: lmpop)
    }

    // MARK: - Shard-side operations

    /// Why a list operation could not run.
    public enum ListError: Error, Equatable {
        /// The key holds another type.
        case wrongType
    }

    /// LPUSH/RPUSH (and the X forms): pushes `values` one by one at the head
    /// (`toLeft`) or the tail, creating the list unless `onlyIfExists`.
    /// Returns the new length (0 when `onlyIfExists` and there was no list).
    @inlinable
    public static func opPush(
        _ ctx: inout ShardContext, _ key: KeyRef, _ values: [[UInt8]], toLeft: Bool, onlyIfExists: Bool
    ) -> Result<Int, ListError> {
        opPush(&ctx, key, toLeft: toLeft, onlyIfExists: onlyIfExists) { pushAll($0, values, toLeft: toLeft) }
    }

    /// The push itself: `pushInto` adds the elements to the list found (or made) under
    /// `key`. A one-element LPUSH passes its element alone, with no array around it.
    @inlinable
    public static func opPush(
        _ ctx: inout ShardContext, _ key: KeyRef, toLeft: Bool, onlyIfExists: Bool, _ pushInto: (ListValue) -> Void
    ) -> Result<Int, ListError> {
        if let found = ctx.lookupWrite(key) {
            let length: Int? = ctx.database.modifyValue(at: found) { value in
                guard case .list(let list) = value else { return nil }
                pushInto(list)
                return list.count
            }
            guard let length else { return .failure(.wrongType) }
            ctx.notify(.list, toLeft ? "lpush" : "rpush", key)
            return .success(length)
        }
        if onlyIfExists { return .success(0) }
        let list = ListValue()
        pushInto(list)
        ctx.store(key, .list(list))
        ctx.notify(.list, toLeft ? "lpush" : "rpush", key)
        return .success(list.count)
    }

    @inlinable
    static func pushAll(_ list: ListValue, _ values: [[UInt8]], toLeft: Bool) {
        if toLeft {
            for v in values { list.pushFront(v) }
        } else {
            for v in values { list.pushBack(v) }
        }
    }

    /// LPOP/RPOP: removes up to `count` elements from the head (`fromLeft`)
    /// or the tail, deleting the key when the list empties. `nil` when there
    /// is no such key.
    @inlinable
    public static func opPop(
        _ ctx: inout ShardContext, _ key: KeyRef, fromLeft: Bool, count: Int
    ) -> Result<[[UInt8]]?, ListError> {
        opPop(&ctx, key, fromLeft: fromLeft) { list in
            let values = fromLeft ? list.popFront(count) : list.popBack(count)
            return (values, !values.isEmpty)
        }
    }

    /// The pops' shared steps around `take`, which removes what it returns from the
    /// list under `key` and says whether it removed anything: the events, and the key
    /// deleted when the list empties. `nil` when there is no such key.
    @inlinable
    public static func opPop<T>(
        _ ctx: inout ShardContext, _ key: KeyRef, fromLeft: Bool, _ take: (ListValue) -> (T, removed: Bool)
    ) -> Result<T?, ListError> {
        guard let found = ctx.lookupWrite(key) else { return .success(nil) }
        let popped: (T, Bool, Bool)? = ctx.database.modifyValue(at: found) { value in
            guard case .list(let list) = value else { return nil }
            let (taken, removed) = take(list)
            return (taken, removed, list.count == 0)
        }
        guard let (taken, removed, emptied) = popped else { return .failure(.wrongType) }
        if removed { ctx.notify(.list, fromLeft ? "lpop" : "rpop", key) }
        if emptied {
            ctx.database.remove(at: found)
            ctx.notify(.generic, "del", key)
        }
        return .success(taken)
    }

    /// What a move's source shard finds: no key, another type, or the
    /// element that the pop will take (read without removing it).
    public enum MoveSource {
        case missing
        case wrongType
        case element([UInt8])
    }

    /// LMOVE's check on the source: the candidate element, not removed.
    public static func opPeek(_ ctx: inout ShardContext, _ key: KeyRef, fromLeft: Bool) -> MoveSource {
        guard let found = ctx.lookupWrite(key) else { return .missing }
        guard case .list(let list) = ctx.database.value(at: found) else { return .wrongType }
        guard let element = fromLeft ? list.first : list.last else { return .missing }
        return .element(element)
    }

    /// Whether `key` holds something other than a list (LMOVE's check on the destination).
    public static func holdsOtherType(_ ctx: inout ShardContext, _ key: KeyRef) -> Bool {
        guard let found = ctx.lookupWrite(key) else { return false }
        if case .list = ctx.database.value(at: found) { return false }
        return true
    }

    static func opRange(_ ctx: inout ShardContext, _ key: KeyRef, _ start: Int64, _ end: Int64) -> Reply {
        guard let found = ctx.lookupRead(key) else { return .array([]) }
        guard case .list(let list) = ctx.database.value(at: found) else { return .wrongType }
        guard let (from, to) = clampRange(start, end, count: list.count) else { return .array([]) }
        // Encoded here, into one array of its exact size (RESP2 and RESP3 frame an array of
        // bulk strings alike), as Redis writes the elements straight into the client's
        // buffer: an array and a `Reply` per element, then the array of them, cost some
        // 1,000 instructions per element to build, encode and free (1.5 × redis-server's LRANGE).
        var size = ReplyBuilder.arrayHeaderSize(to - from + 1)
        list.forEach(from: from) { data, i in
            size &+= ReplyBuilder.bulkSize(data.count)
            return i < to
        }
        var out = ReplyBuilder(protocolVersion: 2, capacity: size)
        out.arrayHeader(to - from + 1)
        list.forEach(from: from) { data, i in
            out.bulk(data)
            return i < to
        }
        return .raw(out.buffer)
    }

    static func opSet(_ ctx: inout ShardContext, _ key: KeyRef, _ index: Int64?, _ value: [UInt8]) -> Reply {
        guard let found = ctx.lookupWrite(key) else { return .error("ERR no such key") }
        return ctx.database.modifyValue(at: found) { stored -> Reply in
            guard case .list(let list) = stored else { return .wrongType }
            guard let index else { return .notInteger }
            guard let i = resolveIndex(index, count: list.count) else { return .error("ERR index out of range") }
            value.withUnsafeBytes { list.replace(at: i, with: $0) }
            ctx.notify(.list, "lset", key)
            return .ok
        }
    }

    static func opInsert(_ ctx: inout ShardContext, _ key: KeyRef, pivot: [UInt8], value: [UInt8], after: Bool) -> Reply {
        guard let found = ctx.lookupWrite(key) else { return .integer(0) }
        return ctx.database.modifyValue(at: found) { stored -> Reply in
            guard case .list(let list) = stored else { return .wrongType }
            let inserted = value.withUnsafeBytes { v in
                pivot.withUnsafeBytes { p in list.insert(v, pivot: p, after: after) }
            }
            if inserted { ctx.notify(.list, "linsert", key) }
            return .integer(inserted ? list.count : -1)
        }
    }

    static func opRemove(_ ctx: inout ShardContext, _ key: KeyRef, count n: Int64, value: [UInt8]) -> Reply {
        guard let found = ctx.lookupWrite(key) else { return .integer(0) }
        // Redis negates the count; LONG_MIN stays negative, so it removes
        // every match scanning from the tail.
        let fromTail = n < 0
        let limit = n == Int64.min ? 0 : Int(n.magnitude)
        let result: (Int, Bool)? = ctx.database.modifyValue(at: found) { stored in
            guard case .list(let list) = stored else { return nil }
            let removed = value.withUnsafeBytes { list.removeAll(equalTo: $0, limit: limit, fromTail: fromTail) }
            return (removed, list.count == 0)
        }
        guard let (removed, emptied) = result else { return .wrongType }
        if removed > 0 { ctx.notify(.list, "lrem", key) }
        if emptied {
            ctx.database.remove(at: found)
            ctx.notify(.generic, "del", key)
        }
        return .integer(removed)
    }

    static func opTrim(_ ctx: inout ShardContext, _ key: KeyRef, _ start: Int64, _ end: Int64) -> Reply {
        guard let found = ctx.lookupWrite(key) else {
            ctx.markUnchanged()
            return .ok
        }
        let emptied: Bool? = ctx.database.modifyValue(at: found) { stored in
            guard case .list(let list) = stored else { return nil }
            let length = list.count
            if let (from, to) = clampRange(start, end, count: length) {
                list.removeLast(length - 1 - to)
                list.removeFirst(from)
            } else {
                list.removeFirst(length)
            }
            return list.count == 0
        }
        guard let emptied else { return .wrongType }
        ctx.notify(.list, "ltrim", key)
        if emptied {
            ctx.database.remove(at: found)
            ctx.notify(.generic, "del", key)
        }
        return .ok
    }

    // MARK: - Index arithmetic

    /// An index as LINDEX/LSET take it (negative from the tail), or nil when
    /// out of range.
    @inlinable
    static func resolveIndex(_ index: Int64, count: Int) -> Int? {
        let i = index < 0 ? index + Int64(count) : index
        return i >= 0 && i < Int64(count) ? Int(i) : nil
    }

    /// LRANGE/LTRIM's clamping of `start...end` into `0..<count`, or nil when
    /// the range is empty.
    @inlinable
    static func clampRange(_ start: Int64, _ end: Int64, count: Int) -> (Int, Int)? {
        let length = Int64(count)
        var s = start < 0 ? start + length : start
        var e = end < 0 ? end + length : end
        if s < 0 { s = 0 }
        if s > e || s >= length { return nil }
        if e >= length { e = length - 1 }
        return (Int(s), Int(e))
    }

    // MARK: - Push and pop handlers

    static func push(_ call: CommandCall, toLeft: Bool, onlyIfExists: Bool) {
        guard call.args.count > 3 else {
            // One element (a queue's LPUSH): the key and the value are read in place
            // when inline or in a squashed run's batch, else copied; pushed as they are.
            call.runOnKey(argument: 1, mode: .exclusive) { key, args in
                PushOneOperation(
                    key: key, value: ArgumentBytes(args, 2, inPlace: key.isBorrowed), toLeft: toLeft,
                    onlyIfExists: onlyIfExists)
            }
            return
        }
        let key = call.key(1)
        let values = (2..<call.args.count).map { call.args.bytes($0) }
        call.runOnKey(key, mode: .exclusive) { ctx in
            lengthReply(opPush(&ctx, key, values, toLeft: toLeft, onlyIfExists: onlyIfExists))
        }
    }

    /// A one-element LPUSH/RPUSH (and the X forms) on its shard, as a value: no
    /// closure is allocated on the inline path. Keeps nothing of its key after `run`
    /// (a blocked pop is woken by the key's fingerprint), as runOnKey(argument:) asks.
    struct PushOneOperation: KeyOperation {
        let key: KeyRef
        let value: ArgumentBytes
        let toLeft: Bool
        let onlyIfExists: Bool

        func run(_ ctx: inout ShardContext) -> Reply {
            let pushed = opPush(&ctx, key, toLeft: toLeft, onlyIfExists: onlyIfExists) { list in
                value.withBytes { if toLeft { list.pushFront($0) } else { list.pushBack($0) } }
            }
            return lengthReply(pushed)
        }
    }

    /// LPOP/RPOP without a count on its shard, as a value (see ``PushOneOperation``).
    struct PopOneOperation: KeyOperation {
        let key: KeyRef
        let fromLeft: Bool

        func run(_ ctx: inout ShardContext) -> Reply {
            let fromLeft = self.fromLeft
            let popped = opPop(&ctx, key, fromLeft: fromLeft) { list -> ([UInt8]?, removed: Bool) in
                let element = fromLeft ? list.popFront() : list.popBack()
                return (element, element != nil)
            }
            switch popped {
            case .success(let element??): return .bulk(element)
            case .success: return .null
            case .failure: return .wrongType
            }
        }
    }

    @inlinable
    static func lengthReply(_ pushed: Result<Int, ListError>) -> Reply {
        switch pushed {
        case .success(let length): return .integer(length)
        case .failure: return .wrongType
        }
    }

    static func pop(_ call: CommandCall, fromLeft: Bool) {
        guard call.args.count <= 3 else { return call.reply(call.arityError) }
        guard call.args.count == 3 else {
            // No count: one element, with no array around it; the key is read in place when inline.
            call.runOnKey(argument: 1, mode: .exclusive) { key, _ in PopOneOperation(key: key, fromLeft: fromLeft) }
            return
        }
        let key = call.key(1)
        guard let n = call.integer(2), n >= 0 else {
            return call.reply(.error("ERR value is out of range, must be positive"))
        }
        let count = Int(n)
        call.runOnKey(key, mode: .exclusive) { ctx in
            switch opPop(&ctx, key, fromLeft: fromLeft, count: count) {
            case .success(let values): return values.map { .array($0.map { .bulk($0) }) } ?? .nullArray
            case .failure: return .wrongType
            }
        }
    }

    // MARK: - LPOS

    static let rankZeroError = Reply.error(
        "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list")

    static func lpos(_ call: CommandCall) {
        var rank: Int64 = 1
        var count: Int64? = nil
        var maxlen: Int64 = 0
        var i = 3
        while i < call.args.count {
            let hasValue = i + 1 < call.args.count
            if hasValue && call.isArg(i, "rank") {
                guard let r = call.integer(i + 1) else { return call.reply(.notInteger) }
                guard r != 0 else { return call.reply(rankZeroError) }
                rank = r
            } else if hasValue && call.isArg(i, "count") {
                guard let c = call.integer(i + 1), c >= 0 else { return call.reply(.error("ERR COUNT can't be negative")) }
                count = c
            } else if hasValue && call.isArg(i, "maxlen") {
                guard let m = call.integer(i + 1), m >= 0 else { return call.reply(.error("ERR MAXLEN can't be negative")) }
                maxlen = m
            } else {
                return call.reply(.syntaxError)
            }
            i += 2
        }
        let key = call.key(1), element = call.args.bytes(2)
        let (r, c, m) = (rank, count, maxlen)
        call.runOnKey(key, mode: .shared) { ctx in opPosition(&ctx, key, element, rank: r, count: c, maxlen: m) }
    }

    /// LPOS on the shard: Redis's walk, including its quirk that a rank of
    /// LONG_MIN (which stays negative when negated) makes every match from
    /// the tail qualify and never stops a COUNT early.
    static func opPosition(
        _ ctx: inout ShardContext, _ key: KeyRef, _ element: [UInt8], rank: Int64, count: Int64?, maxlen: Int64
    ) -> Reply {
        guard let found = ctx.lookupRead(key) else { return count == nil ? .null : .array([]) }
        guard case .list(let list) = ctx.database.value(at: found) else { return .wrongType }
        let fromTail = rank < 0
        let minimal = rank == Int64.min
        let skip = minimal ? 0 : Int64(rank.magnitude) - 1  // matches to pass over before reporting
        let wanted = count ?? 1
        var matches: Int64 = 0
        var positions: [Reply] = []
        var scanned: Int64 = 0
        let length = list.count
        element.withUnsafeBytes { target in
            list.forEach(from: fromTail ? length - 1 : 0, reverse: fromTail) { data, index in
                if maxlen != 0 && scanned >= maxlen { return false }
                scanned += 1
                guard data.count == target.count && ListFamily.equal(data, target) else { return true }
                matches += 1
                guard matches > skip else { return true }
                positions.append(.integer(index))
                if minimal && count != nil { return true }
                return wanted == 0 || Int64(positions.count) < wanted
            }
        }
        if count == nil { return positions.first ?? .null }
        return .array(positions)
    }

    @inlinable
    static func equal(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        a.count == b.count && (a.isEmpty || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
    }

    // MARK: - LMOVE / RPOPLPUSH

    /// LEFT / RIGHT argument: true for LEFT, nil when it is neither.
    static func side(_ call: CommandCall, _ i: Int) -> Bool? {
        if call.isArg(i, "left") { return true }
        if call.isArg(i, "right") { return false }
        return nil
    }

    /// Pops from one list and pushes onto another, atomically even when the
    /// two keys live on different shards: phase one reads the candidate on
    /// the source (without removing it) and checks the destination's type,
    /// phase two pops and pushes, under the same locks throughout.
    static func move(_ call: CommandCall, fromLeft: Bool, toLeft: Bool) {
        let source = call.key(1), destination = call.key(2)
        if source.bytes == destination.bytes {
            // Rotation within one list: one shard, one step, TTL kept.
            call.runOnKey(source, mode: .exclusive) { ctx in
                guard let found = ctx.lookupWrite(source) else { return .null }
                return ctx.database.modifyValue(at: found) { stored -> Reply in
                    guard case .list(let list) = stored else { return .wrongType }
                    guard let element = fromLeft ? list.popFront() : list.popBack() else { return .null }
                    if toLeft { list.pushFront(element) } else { list.pushBack(element) }
                    ctx.notify(.list, toLeft ? "lpush" : "rpush", source)
                    ctx.notify(.list, fromLeft ? "lpop" : "rpop", source)
                    return .bulk(element)
                }
            }
            return
        }
        struct Check {
            var source: MoveSource? = nil
            var destinationWrongType = false
        }
        enum Decision {
            case reply(Reply)
            case move([UInt8])
        }
        call.runOnKeysTwoPhase([source, destination], mode: .exclusive, check: { ctx, positions -> Check in
            var check = Check()
            for p in positions {
                if p == 0 { check.source = opPeek(&ctx, source, fromLeft: fromLeft) }
                if p == 1 { check.destinationWrongType = holdsOtherType(&ctx, destination) }
            }
            return check
        }, decide: { checks -> Decision in
            var sourceState = MoveSource.missing
            var destinationWrongType = false
            for c in checks {
                if let s = c.source { sourceState = s }
                if c.destinationWrongType { destinationWrongType = true }
            }
            switch sourceState {
            case .missing: return .reply(.null)
            case .wrongType: return .reply(.wrongType)
            case .element(let element):
                return destinationWrongType ? .reply(.wrongType) : .move(element)
            }
        }, apply: { ctx, positions, decision in
            guard case .move(let element) = decision else { return ctx.markUnchanged() }
            // Redis's events: the push on the destination, then the pop (and del) on the
            // source; across shards the source's shard sends all of them, in that order.
            let bothHere = positions.count == 2
            for p in positions.reversed() {
                if p == 0 {
                    if !bothHere { ctx.notify(.list, toLeft ? "lpush" : "rpush", destination) }
                    _ = opPop(&ctx, source, fromLeft: fromLeft, count: 1)
                }
                if p == 1 {
                    ctx.notificationsMuted = !bothHere
                    _ = opPush(&ctx, destination, [element], toLeft: toLeft, onlyIfExists: false)
                    ctx.notificationsMuted = false
                }
            }
        }, reply: { decision in
            switch decision {
            case .reply(let reply): return reply
            case .move(let element): return .bulk(element)
            }
        })
    }

    // MARK: - LMPOP

    /// What LMPOP's check finds under one key.
    enum KeyState {
        case missing
        case wrongType
        case nonEmpty
    }

    /// Carries LMPOP's popped elements from the apply phase (on the chosen
    /// key's shard) to the reply (built after every shard finished).
    final class PoppedBox {
        var values: [[UInt8]] = []
    }

    static func lmpop(_ call: CommandCall) {
        guard let numkeys = call.integer(1), numkeys > 0 else {
            return call.reply(.error("ERR numkeys should be greater than 0"))
        }
        // Keys, then LEFT|RIGHT, must all be present.
        guard numkeys <= Int64(call.args.count - 3) else { return call.reply(.syntaxError) }
        let whereIndex = 2 + Int(numkeys)
        guard let fromLeft = side(call, whereIndex) else { return call.reply(.syntaxError) }
        guard let popCount = call.popCount(from: whereIndex + 1) else { return }
        let keys = (2..<whereIndex).map { call.key($0) }
        let box = PoppedBox()
        call.runOnKeysTwoPhase(keys, mode: .exclusive, check: { ctx, positions -> [(Int, KeyState)] in
            positions.map { p in
                guard let found = ctx.lookupWrite(keys[p]) else { return (p, .missing) }
                guard case .list(let list) = ctx.database.value(at: found) else { return (p, .wrongType) }
                return (p, list.count > 0 ? .nonEmpty : .missing)
            }
        }, decide: { checks -> Result<Int?, ListError> in
            // The first key, in argument order, that is not missing decides.
            var states = [KeyState](repeating: .missing, count: keys.count)
            for part in checks { for (p, state) in part { states[p] = state } }
            for (p, state) in states.enumerated() {
                switch state {
                case .missing: continue
                case .wrongType: return .failure(.wrongType)
                case .nonEmpty: return .success(p)
                }
            }
            return .success(nil)
        }, apply: { ctx, positions, decision in
            // Only the key popped from is written (WATCH on the others holds).
            guard case .success(let chosen?) = decision, positions.contains(chosen) else { return ctx.markUnchanged() }
            ctx.markOnlyWritten([keys[chosen]])
            if case .success(let values?) = opPop(&ctx, keys[chosen], fromLeft: fromLeft, count: popCount) {
                box.values = values
            }
        }, reply: { decision in
            switch decision {
            case .failure: return .wrongType
            case .success(nil): return .nullArray
            case .success(let chosen?):
                return .array([.bulk(keys[chosen].bytes), .array(box.values.map { .bulk($0) })])
            }
        })
    }
}

/// Byte copies for replies.
@usableFromInline
enum ByteArrayOps {
    /// An owned copy of a view (one allocation, none when empty).
    @inlinable
    static func copy(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        bytes.isEmpty ? [] : [UInt8](bytes)
    }
}
