#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import DamselflyRESP
import DamselflyStorage
import DamselflyTransactions

/// A score interval as ZRANGEBYSCORE takes it: "(" marks an exclusive end.
public struct ZScoreRange: Sendable {
    public var min: Double, max: Double
    public var minExclusive: Bool, maxExclusive: Bool

    /// Elements below the interval: a prefix of the order.
    @inlinable public func isBelow(_ e: ZEntry) -> Bool { minExclusive ? e.score <= min : e.score < min }
    /// Elements not above the interval: a prefix of the order.
    @inlinable public func isNotAbove(_ e: ZEntry) -> Bool { maxExclusive ? e.score < max : e.score <= max }
}

/// One end of a lex interval: "-", "+", "[x" or "(x".
public enum ZLexBound: Sendable {
    case negativeInfinity
    case positiveInfinity
    case inclusive([UInt8])
    case exclusive([UInt8])
}

/// A member interval as ZRANGEBYLEX takes it.
public struct ZLexRange: Sendable {
    public var min: ZLexBound, max: ZLexBound

    @inlinable public func isBelow(_ e: ZEntry) -> Bool {
        switch min {
        case .negativeInfinity: return false
        case .positiveInfinity: return true
        case .inclusive(let m): return ZEntry.compareMembers(e.member, m) < 0
        case .exclusive(let m): return ZEntry.compareMembers(e.member, m) <= 0
        }
    }

    @inlinable public func isNotAbove(_ e: ZEntry) -> Bool {
        switch max {
        case .negativeInfinity: return false
        case .positiveInfinity: return true
        case .inclusive(let m): return ZEntry.compareMembers(e.member, m) <= 0
        case .exclusive(let m): return ZEntry.compareMembers(e.member, m) < 0
        }
    }
}

extension SortedSetFamily {
    /// Which elements a ZRANGE-like command selects.
    enum RangeKind {
        case rank(Int64, Int64)
        case score(ZScoreRange)
        case lex(ZLexRange)
    }

    /// A parsed ZRANGE / ZRANGESTORE / Z[REV]RANGEBY* request.
    struct RangeRequest {
        var kind: RangeKind
        var reverse: Bool
        var offset: Int64 = 0
        var limit: Int64 = -1
        var withScores: Bool
    }

    static func registerRanges(_ r: CommandRegistry, group g: String) {
        let variants: [(String, RangeFixed, Bool)] = [
            ("zrange", .auto, false), ("zrevrange", .rank, true), ("zrangebyscore", .score, false),
            ("zrevrangebyscore", .score, true), ("zrangebylex", .lex, false), ("zrevrangebylex", .lex, true),
        ]
        for (name, kind, reverse) in variants {
            let fixedDirection: Bool? = name == "zrange" ? nil : reverse
            r.register(name, arity: -4, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
                zrange(call, kind: kind, reverse: fixedDirection)
            }
        }
        r.register("zrangestore", arity: -5, flags: [.write, .denyOOM], firstKey: 1, lastKey: 2, keyStep: 1, group: g, handler: zrangestore)
        r.register("zcount", arity: 4, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            guard let range = parseScoreRange(call.args[2], call.args[3]) else {
                return call.reply(.error("ERR min or max is not a float"))
            }
            countCommand(call) { z in z.countBefore(range.isNotAbove) - z.countBefore(range.isBelow) }
        }
        r.register("zlexcount", arity: 4, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            guard let range = parseLexRange(call.args[2], call.args[3]) else {
                return call.reply(.error("ERR min or max not valid string range item"))
            }
            countCommand(call) { z in z.countBefore(range.isNotAbove) - z.countBefore(range.isBelow) }
        }
        r.register("zremrangebyscore", arity: 4, flags: [.write], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            guard let range = parseScoreRange(call.args[2], call.args[3]) else {
                return call.reply(.error("ERR min or max is not a float"))
            }
            removeRange(call, "zremrangebyscore") { z in span(z.countBefore(range.isBelow), z.countBefore(range.isNotAbove)) }
        }
        r.register("zremrangebylex", arity: 4, flags: [.write], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            guard let range = parseLexRange(call.args[2], call.args[3]) else {
                return call.reply(.error("ERR min or max not valid string range item"))
            }
            removeRange(call, "zremrangebylex") { z in span(z.countBefore(range.isBelow), z.countBefore(range.isNotAbove)) }
        }
        r.register("zremrangebyrank", arity: 4, flags: [.write], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            guard let start = call.integer(2), let end = call.integer(3) else { return call.reply(.notInteger) }
            removeRange(call, "zremrangebyrank") { z in rankRange(start, end, count: z.count) ?? 0..<0 }
        }
    }

    /// Which range kind a command fixes (ZRANGE lets its options choose).
    enum RangeFixed {
        case auto, rank, score, lex
    }

    // MARK: - Parsing

    /// Redis's `zslParseRange`: plain `strtod` (so leading spaces and an
    /// empty string are accepted), "(" for exclusive, NaN refused.
    static func parseScoreRange(_ min: UnsafeRawBufferPointer, _ max: UnsafeRawBufferPointer) -> ZScoreRange? {
        guard let (lo, loEx) = parseScoreBound(min), let (hi, hiEx) = parseScoreBound(max) else { return nil }
        return ZScoreRange(min: lo, max: hi, minExclusive: loEx, maxExclusive: hiEx)
    }

    static func parseScoreBound(_ bytes: UnsafeRawBufferPointer) -> (Double, Bool)? {
        // An integer-looking argument is taken as that integer (Redis's
        // int-encoded objects skip strtod).
        if let n = RedisNumber.parseInt64(bytes) { return (Double(n), false) }
        let exclusive = bytes.count > 0 && bytes[0] == UInt8(ascii: "(")
        let text = exclusive ? UnsafeRawBufferPointer(rebasing: bytes[1...]) : bytes
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: text.count + 1) { buffer -> (Double, Bool)? in
            let base = buffer.baseAddress!
            if text.count > 0 { memcpy(base, text.baseAddress!, text.count) }
            base[text.count] = 0
            var end: UnsafeMutablePointer<CChar>? = nil
            let value = strtod(base, &end)
            // C stops at the first NUL: whatever follows it is ignored.
            guard let end, end.pointee == 0, !value.isNaN else { return nil }
            return (value, exclusive)
        }
    }

    /// Redis's `zslParseLexRange`.
    static func parseLexRange(_ min: UnsafeRawBufferPointer, _ max: UnsafeRawBufferPointer) -> ZLexRange? {
        guard let lo = parseLexBound(min), let hi = parseLexBound(max) else { return nil }
        return ZLexRange(min: lo, max: hi)
    }

    static func parseLexBound(_ bytes: UnsafeRawBufferPointer) -> ZLexBound? {
        guard bytes.count > 0 else { return nil }
        switch bytes[0] {
        case UInt8(ascii: "+"): return bytes.count == 1 || bytes[1] == 0 ? .positiveInfinity : nil
        case UInt8(ascii: "-"): return bytes.count == 1 || bytes[1] == 0 ? .negativeInfinity : nil
        case UInt8(ascii: "("): return .exclusive(Array(bytes[1...]))
        case UInt8(ascii: "["): return .inclusive(Array(bytes[1...]))
        default: return nil
        }
    }

    /// Redis's `zrangeGenericCommand` argument parsing: options, conflicts,
    /// then the range itself. `keyIndex` is the source key's position.
    static func parseRangeRequest(_ call: CommandCall, keyIndex: Int, store: Bool, fixed: RangeFixed, reverse fixedReverse: Bool?)
        -> Result<RangeRequest, ReplyError>
    {
        var kind = fixed
        var reverse = fixedReverse
        var withScores = false
        var offset: Int64 = 0, limit: Int64 = -1
        var limitGiven = false
        var j = keyIndex + 3
        while j < call.args.count {
            let left = call.args.count - j - 1
            if !store && call.isArg(j, "withscores") {
                withScores = true
            } else if call.isArg(j, "limit") && left >= 2 {
                guard let o = call.integer(j + 1), let l = call.integer(j + 2) else { return .failure(ReplyError(.notInteger)) }
                offset = o
                limit = l
                limitGiven = true
                j += 2
            } else if fixedReverse == nil && reverse == nil && call.isArg(j, "rev") {
                reverse = true
            } else if kind == .auto && call.isArg(j, "bylex") {
                kind = .lex
            } else if kind == .auto && call.isArg(j, "byscore") {
                kind = .score
            } else {
                return .failure(ReplyError(.syntaxError))
            }
            j += 1
        }
        let isReverse = reverse ?? false
        if kind == .auto { kind = .rank }
        if limitGiven && kind == .rank {
            return .failure(ReplyError(.error(
                "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX")))
        }
        if withScores && kind == .lex {
            return .failure(ReplyError(.error("ERR syntax error, WITHSCORES not supported in combination with BYLEX")))
        }
        var minIndex = keyIndex + 1, maxIndex = keyIndex + 2
        if isReverse && (kind == .score || kind == .lex) { swap(&minIndex, &maxIndex) }
        let rangeKind: RangeKind
        switch kind {
        case .auto, .rank:
            guard let start = call.integer(minIndex), let end = call.integer(maxIndex) else {
                return .failure(ReplyError(.notInteger))
            }
            rangeKind = .rank(start, end)
        case .score:
            guard let range = parseScoreRange(call.args[minIndex], call.args[maxIndex]) else {
                return .failure(ReplyError(.error("ERR min or max is not a float")))
            }
            rangeKind = .score(range)
        case .lex:
            guard let range = parseLexRange(call.args[minIndex], call.args[maxIndex]) else {
                return .failure(ReplyError(.error("ERR min or max not valid string range item")))
            }
            rangeKind = .lex(range)
        }
        return .success(RangeRequest(kind: rangeKind, reverse: isReverse, offset: offset, limit: limit, withScores: withScores))
    }

    /// An error reply as a `Result` failure.
    struct ReplyError: Error {
        let reply: Reply
        init(_ reply: Reply) { self.reply = reply }
    }

    // MARK: - Selecting

    /// `lo..<hi`, or an empty range when the bounds cross.
    @inlinable
    static func span(_ lo: Int, _ hi: Int) -> Range<Int> { lo..<Swift.max(lo, hi) }

    /// ZRANGE's start/stop normalised against `count` (nil: empty).
    static func rankRange(_ start: Int64, _ end: Int64, count: Int) -> Range<Int>? {
        let length = Int64(count)
        var s = start, e = end
        if s < 0 { s += length }
        if e < 0 { e += length }
        if s < 0 { s = 0 }
        if s > e || s >= length { return nil }
        if e >= length { e = length - 1 }
        return Int(s)..<Int(e + 1)
    }

    /// The elements a range request selects, in reply order.
    static func select(_ z: SortedSetValue, _ request: RangeRequest) -> [ZEntry] {
        let lo: Int, hi: Int
        switch request.kind {
        case .rank(let start, let end):
            guard let ranks = rankRange(start, end, count: z.count) else { return [] }
            if request.reverse {
                return z.entries(ranks: (z.count - ranks.upperBound)..<(z.count - ranks.lowerBound), reverse: true)
            }
            return z.entries(ranks: ranks)
        case .score(let range):
            lo = z.countBefore(range.isBelow)
            hi = z.countBefore(range.isNotAbove)
        case .lex(let range):
            lo = z.countBefore(range.isBelow)
            hi = z.countBefore(range.isNotAbove)
        }
        // A negative offset skips everything (Redis's `while (offset--)`);
        // a negative limit means no limit.
        guard hi > lo, request.offset >= 0, request.offset < Int64(hi - lo) else { return [] }
        let available = Int64(hi - lo) - request.offset
        let take = Int(request.limit < 0 ? available : Swift.min(available, request.limit))
        if take == 0 { return [] }
        let skip = Int(request.offset)
        if request.reverse { return z.entries(ranks: (hi - skip - take)..<(hi - skip), reverse: true) }
        return z.entries(ranks: (lo + skip)..<(lo + skip + take))
    }

    // MARK: - Commands

    static func zrange(_ call: CommandCall, kind: RangeFixed, reverse: Bool?) {
        let request: RangeRequest
        switch parseRangeRequest(call, keyIndex: 1, store: false, fixed: kind, reverse: reverse) {
        case .failure(let e): return call.reply(e.reply)
        case .success(let r): request = r
        }
        let key = call.key(1)
        let resp3 = call.client.protocolVersion >= 3
        call.runOnKey(key, mode: .shared) { ctx in
            switch read(ctx, key) {
            case .missing: return .array([])
            case .wrongType: return .wrongType
            case .found(let z): return scoredReply(select(z, request), withScores: request.withScores, resp3: resp3)
            }
        }
    }

    /// What the source of ZRANGESTORE held.
    enum StoreSource {
        case wrongType
        case entries([ZEntry])
    }

    static func zrangestore(_ call: CommandCall) {
        let request: RangeRequest
        switch parseRangeRequest(call, keyIndex: 2, store: true, fixed: .auto, reverse: nil) {
        case .failure(let e): return call.reply(e.reply)
        case .success(let r): request = r
        }
        let destination = call.key(1), source = call.key(2)
        let keys = [destination, source]
        call.runOnKeysTwoPhase(keys, mode: .exclusive, check: { ctx, positions -> StoreSource? in
            guard positions.contains(1) else { return nil }
            switch read(ctx, source) {
            case .missing: return .entries([])
            case .wrongType: return .wrongType
            case .found(let z): return .entries(select(z, request))
            }
        }, decide: { checks -> StoreSource in
            checks.compactMap { $0 }.first ?? .entries([])
        }, apply: { ctx, positions, decision in
            guard positions.contains(0), case .entries(let entries) = decision else { return }
            storeResult(ctx, destination, request.reverse ? entries.reversed() : entries, event: "zrangestore")
        }, reply: { decision in
            switch decision {
            case .wrongType: return .wrongType
            case .entries(let entries): return .integer(entries.count)
            }
        }, writtenPositions: [0])
    }

    /// Stores a computed sorted set (in order, members distinct) under
    /// `key`, replacing whatever was there; an empty result deletes the key.
    /// `event` is the store command's keyspace event (a `del` when the key went instead).
    static func storeResult(_ ctx: ShardContext, _ key: KeyRef, _ entries: [ZEntry], event: StaticString) {
        if entries.isEmpty {
            if ctx.delete(key) { ctx.notify(.generic, "del", key) }
        } else {
            ctx.store(key, .zset(SortedSetValue(sortedEntries: entries)))
            ctx.notify(.zset, event, key)
        }
    }

    static func countCommand(_ call: CommandCall, _ count: @escaping (SortedSetValue) -> Int) {
        let key = call.key(1)
        call.runOnKey(key, mode: .shared) { ctx in
            switch read(ctx, key) {
            case .missing: return .integer(0)
            case .wrongType: return .wrongType
            case .found(let z): return .integer(Swift.max(0, count(z)))
            }
        }
    }

    static func removeRange(_ call: CommandCall, _ event: StaticString, _ ranks: @escaping (SortedSetValue) -> Range<Int>) {
        let key = call.key(1)
        call.runOnKey(key, mode: .exclusive) { ctx in
            guard let found = ctx.lookupWrite(key) else { return .integer(0) }
            guard case .zset = ctx.database.value(at: found) else { return .wrongType }
            let removed = modify(ctx, found) { z in
                let selected = ranks(z)
                guard selected.lowerBound < selected.upperBound else { return 0 }
                z.removeRanks(selected)
                return selected.count
            }
            if removed > 0 { ctx.notifyRemoval(.zset, event, key) }
            return .integer(removed)
        }
    }
}
