import CDamselfly
import DamselflyRESP
import DamselflyStorage
import DamselflyTransactions

/// Hashes: HSET and friends, counters, HRANDFIELD and HSCAN, with Redis
/// 7.0's replies, error texts and order of checks.
///
/// Handlers parse and validate on the connection's thread; the `op…`
/// functions run on the owning shard and return the reply.
public enum HashFamily {
    public static func register(_ r: CommandRegistry) {
        let g = "hash"
        r.register("hset", arity: -4, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            hset(call, replyOK: false)
        }
        r.register("hmset", arity: -4, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            hset(call, replyOK: true)
        }
        r.register("hsetnx", arity: 4, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1), field = call.args.bytes(2), value = call.args.bytes(3)
            call.runOnKey(key, mode: .exclusive) { ctx in opSetNX(&ctx, key, field, value) }
        }
        r.register("hget", arity: 3, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1), field = call.args.bytes(2)
            call.runOnKey(key, mode: .shared) { ctx in
                switch lookup(&ctx, key, write: false) {
                case .missing: return .null
                case .wrongType: return .wrongType
                case .found(_, let hash): return hash.get(field).map { .bulk($0) } ?? .null
                }
            }
        }
        r.register("hmget", arity: -3, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1)
            let fields = (2..<call.args.count).map { call.args.bytes($0) }
            call.runOnKey(key, mode: .shared) { ctx in
                switch lookup(&ctx, key, write: false) {
                case .missing: return .array(Array(repeating: .null, count: fields.count))
                case .wrongType: return .wrongType
                case .found(_, let hash): return .array(fields.map { f in hash.get(f).map { .bulk($0) } ?? .null })
                }
            }
        }
        r.register("hgetall", arity: 2, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1)
            call.runOnKey(key, mode: .shared) { ctx in
                read(&ctx, key, empty: .map([])) { hash in
                    // Encoded here, once, into a body of its exact size; the connection
                    // writes the header its protocol wants (``Reply/encodedMap(pairs:body:)``).
                    var size = 0
                    hash.forEachInPlace { f, v in size &+= ReplyBuilder.bulkSize(f.count) &+ ReplyBuilder.bulkSize(v.count) }
                    var out = ReplyBuilder(protocolVersion: 2, capacity: size)
                    hash.forEachInPlace { f, v in
                        out.bulk(f)
                        out.bulk(v)
                    }
                    return .encodedMap(pairs: hash.count, body: out.buffer)
                }
            }
        }
        r.register("hkeys", arity: 2, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1)
            call.runOnKey(key, mode: .shared) { ctx in
                read(&ctx, key, empty: .array([])) { hash in
                    var out: [Reply] = []
                    out.reserveCapacity(hash.count)
                    hash.forEach { f, _ in out.append(.bulk(f)) }
                    return .array(out)
                }
            }
        }
        r.register("hvals", arity: 2, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1)
            call.runOnKey(key, mode: .shared) { ctx in
                read(&ctx, key, empty: .array([])) { hash in
                    var out: [Reply] = []
                    out.reserveCapacity(hash.count)
                    hash.forEach { _, v in out.append(.bulk(v)) }
                    return .array(out)
                }
            }
        }
        r.register("hlen", arity: 2, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1)
            call.runOnKey(key, mode: .shared) { ctx in
                read(&ctx, key, empty: .integer(0)) { .integer($0.count) }
            }
        }
        r.register("hexists", arity: 3, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1), field = call.args.bytes(2)
            call.runOnKey(key, mode: .shared) { ctx in
                read(&ctx, key, empty: .integer(0)) { .integer($0.contains(field) ? 1 : 0) }
            }
        }
        r.register("hstrlen", arity: 3, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1), field = call.args.bytes(2)
            call.runOnKey(key, mode: .shared) { ctx in
                read(&ctx, key, empty: .integer(0)) { .integer($0.valueLength(field)) }
            }
        }
        r.register("hdel", arity: -3, flags: [.write, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1)
            let fields = (2..<call.args.count).map { call.args.bytes($0) }
            call.runOnKey(key, mode: .exclusive) { ctx in opDelete(&ctx, key, fields) }
        }
        r.register("hincrby", arity: 4, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            guard let by = call.integer(3) else { return call.reply(.notInteger) }
            let key = call.key(1), field = call.args.bytes(2)
            call.runOnKey(key, mode: .exclusive) { ctx in opIncrBy(&ctx, key, field, by) }
        }
        r.register("hincrbyfloat", arity: 4, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let increment = call.args.bytes(3)
            // The increment is checked before the key is looked up: a
            // long double (strtold), and finite.
            switch incrByFloat(nil, increment) {
            case .failure(-2): return call.reply(.notFloat)
            case .failure: return call.reply(.error("ERR value is NaN or Infinity"))
            case .success: break
            }
            let key = call.key(1), field = call.args.bytes(2)
            call.runOnKey(key, mode: .exclusive) { ctx in opIncrByFloat(&ctx, key, field, increment) }
        }
        r.register("hrandfield", arity: -2, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: hrandfield)
        r.register("hscan", arity: -3, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: hscan)
    }

    // MARK: - Lookup

    typealias Lookup = TypedLookup<HashValue>

    static func value(_ stored: StoredValue) -> HashValue? {
        if case .hash(let v) = stored { return v }
        return nil
    }

    static func lookup(_ ctx: inout ShardContext, _ key: KeyRef, write: Bool) -> Lookup {
        ctx.lookup(key, write: write, as: value)
    }

    static func read(_ ctx: inout ShardContext, _ key: KeyRef, empty: Reply, _ body: (HashValue) -> Reply) -> Reply {
        ctx.read(key, empty: empty, as: value, body)
    }

    /// Runs `body` on the hash under `key`, creating it when missing; the
    /// new hash is only stored when `body` leaves it non-empty, and memory
    /// is re-accounted after an in-place change. Nil means WRONGTYPE.
    static func write<R>(_ ctx: inout ShardContext, _ key: KeyRef, _ body: (HashValue) -> R) -> R? {
        switch lookup(&ctx, key, write: true) {
        case .wrongType:
            return nil
        case .missing:
            let hash = HashValue()
            let result = body(hash)
            if hash.count > 0 { ctx.store(key, .hash(hash)) }
            return result
        case .found(let index, let hash):
            return ctx.database.modifyValue(at: index) { _ in body(hash) }
        }
    }

    // MARK: - Writes

    static func hset(_ call: CommandCall, replyOK: Bool) {
        guard call.args.count % 2 == 0 else { return call.reply(call.arityError) }
        guard call.args.count > 4 else {
            // One field: the key, the field and the value read in place when inline or
            // in a squashed run's batch, else copied (as LPUSH's one element).
            return call.runOnKey(argument: 1, mode: .exclusive) { key, args in
                SetOneOperation(
                    key: key, field: ArgumentBytes(args, 2, inPlace: key.isBorrowed),
                    value: ArgumentBytes(args, 3, inPlace: key.isBorrowed), replyOK: replyOK)
            }
        }
        let key = call.key(1)
        var pairs: [([UInt8], [UInt8])] = []
        pairs.reserveCapacity((call.args.count - 2) / 2)
        var i = 2
        while i < call.args.count {
            pairs.append((call.args.bytes(i), call.args.bytes(i + 1)))
            i += 2
        }
        call.runOnKey(key, mode: .exclusive) { ctx in opSet(&ctx, key, pairs, replyOK: replyOK) }
    }

    /// A one-field HSET/HMSET on its shard, as a value: no closure, key copy or pair
    /// array on the inline path. Keeps nothing of its key after `run`.
    struct SetOneOperation: KeyOperation {
        let key: KeyRef
        let field: ArgumentBytes
        let value: ArgumentBytes
        let replyOK: Bool

        func run(_ ctx: inout ShardContext) -> Reply {
            opSet(&ctx, key, CollectionOfOne((field.array, value.array)), replyOK: replyOK)
        }
    }

    static func opSet<Pairs: Collection<([UInt8], [UInt8])>>(
        _ ctx: inout ShardContext, _ key: KeyRef, _ pairs: Pairs, replyOK: Bool
    ) -> Reply {
        let added = write(&ctx, key) { hash -> Int in
            // Redis's hashTypeTryConversion: any long argument converts first.
            if hash.isListpack && pairs.contains(where: {
                $0.0.count > HashValue.maxListpackValue || $0.1.count > HashValue.maxListpackValue
            }) {
                hash.convertToTable()
            }
            var added = 0
            for (f, v) in pairs where hash.set(f, v) { added += 1 }
            return added
        }
        guard let added else { return .wrongType }
        ctx.notify(.hash, "hset", key)
        return replyOK ? .ok : .integer(added)
    }

    static func opSetNX(_ ctx: inout ShardContext, _ key: KeyRef, _ field: [UInt8], _ value: [UInt8]) -> Reply {
        let added = write(&ctx, key) { hash -> Bool in
            // An existing field leaves the hash alone, even its encoding.
            if hash.contains(field) { return false }
            hash.convertIfLonger(field.count, value.count)
            hash.set(field, value)
            return true
        }
        guard let added else { return .wrongType }
        if added { ctx.notify(.hash, "hset", key) }
        return .integer(added ? 1 : 0)
    }

    static func opDelete(_ ctx: inout ShardContext, _ key: KeyRef, _ fields: [[UInt8]]) -> Reply {
        switch lookup(&ctx, key, write: true) {
        case .missing: return .integer(0)
        case .wrongType: return .wrongType
        case .found(let index, let hash):
            let removed = ctx.database.modifyValue(at: index) { _ in
                var removed = 0
                for f in fields where hash.remove(f) {
                    removed += 1
                    if hash.count == 0 { break }
                }
                return removed
            }
            if removed > 0 { ctx.notify(.hash, "hdel", key) }
            if hash.count == 0 {
                ctx.database.remove(at: index)
                ctx.notify(.generic, "del", key)
            }
            return .integer(removed)
        }
    }

    static func opIncrBy(_ ctx: inout ShardContext, _ key: KeyRef, _ field: [UInt8], _ by: Int64) -> Reply {
        let result = write(&ctx, key) { hash -> Reply in
            var current: Int64 = 0
            if let bytes = hash.get(field) {
                guard let v = bytes.withUnsafeBytes({ RedisNumber.parseInt64($0) }) else {
                    return .error("ERR hash value is not an integer")
                }
                current = v
            }
            let (sum, overflow) = current.addingReportingOverflow(by)
            if overflow { return .overflow }
            hash.set(field, RedisNumber.withDecimalBytes(of: sum) { Array($0) })
            return .integer(Int(sum))
        }
        if case .integer = result { ctx.notify(.hash, "hincrby", key) }
        return result ?? .wrongType
    }

    /// `dfly_incrbyfloat` (long double, "%.17Lf" trimmed, as Redis):
    /// the printed sum, or its negative status.
    static func incrByFloat(_ current: [UInt8]?, _ increment: [UInt8]) -> Result<[UInt8], IncrError> {
        var out = [UInt8](repeating: 0, count: 5 * 1024 + 64)
        let length: Int32 = out.withUnsafeMutableBytes { outRaw in
            increment.withUnsafeBytes { inc in
                let incPointer = inc.baseAddress?.assumingMemoryBound(to: CChar.self)
                let outPointer = outRaw.baseAddress!.assumingMemoryBound(to: CChar.self)
                guard let current else {
                    return dfly_incrbyfloat(nil, 0, incPointer, inc.count, outPointer, outRaw.count)
                }
                // An empty string is not a float (strtold would see no digits).
                if current.isEmpty { return -1 }
                return current.withUnsafeBytes { cur in
                    dfly_incrbyfloat(
                        cur.baseAddress!.assumingMemoryBound(to: CChar.self), cur.count,
                        incPointer, inc.count, outPointer, outRaw.count)
                }
            }
        }
        if length < 0 { return .failure(IncrError(code: Int(length))) }
        return .success(Array(out[0..<Int(length)]))
    }

    struct IncrError: Error, Equatable {
        let code: Int
        static func ~= (pattern: Int, value: IncrError) -> Bool { pattern == value.code }
    }

    static func opIncrByFloat(_ ctx: inout ShardContext, _ key: KeyRef, _ field: [UInt8], _ increment: [UInt8]) -> Reply {
        let result = write(&ctx, key) { hash -> Reply in
            switch incrByFloat(hash.get(field) ?? Array("0".utf8), increment) {
            case .failure(-1): return .error("ERR hash value is not a float")
            case .failure(-2): return .notFloat
            case .failure: return .error("ERR increment would produce NaN or Infinity")
            case .success(let printed):
                hash.set(field, printed)
                return .bulk(printed)
            }
        }
        if case .bulk(let printed) = result {
            // Replicated and journaled as the value it produced (Redis's HSET).
            ctx.journal([Array("HSET".utf8), key.bytes, field, printed])
            ctx.notify(.hash, "hincrbyfloat", key)
        }
        return result ?? .wrongType
    }

    // MARK: - HRANDFIELD

    static func hrandfield(_ call: CommandCall) {
        let key = call.key(1)
        if call.args.count == 2 {
            call.runOnKey(key, mode: .shared) { ctx in
                var rng = SplitMix64()
                return read(&ctx, key, empty: .null) { .bulk($0.randomPair(using: &rng).0) }
            }
            return
        }
        guard let count = call.integer(2) else { return call.reply(.notInteger) }
        guard count != Int64.min else {
            return call.reply(.error(
                "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"))
        }
        let withValues = call.args.count == 4
        if call.args.count > 4 || (withValues && !call.isArg(3, "withvalues")) { return call.reply(.syntaxError) }
        // Beyond Redis's WITHVALUES bound: as ZRANDMEMBER, absurd negative counts are refused
        // rather than allocated (redis-server 7.0 loops on them for ever).
        if (withValues && (count < -Int64.max / 2 || count > Int64.max / 2)) || count < -Int64(SortedSetFamily.maxRandomPicks) {
            return call.reply(.error("ERR value is out of range"))
        }
        let resp3 = call.client.protocolVersion >= 3
        call.runOnKey(key, mode: .shared) { ctx in
            read(&ctx, key, empty: .array([])) { hash in
                var rng = SplitMix64()
                var picked: [([UInt8], [UInt8])]
                if count == 0 {
                    return .array([])
                } else if count < 0 {
                    let n = Int(-count)
                    picked = []
                    picked.reserveCapacity(n)
                    for _ in 0..<n { picked.append(hash.randomPair(using: &rng)) }
                } else if count >= hash.count {
                    picked = hash.pairs
                } else {
                    picked = hash.pairs
                    // A random subset of `count`, in random order (partial Fisher–Yates).
                    let n = Int(count)
                    for i in 0..<n { picked.swapAt(i, Int.random(in: i..<picked.count, using: &rng)) }
                    picked.removeSubrange(n...)
                }
                if !withValues { return .array(picked.map { .bulk($0.0) }) }
                if resp3 { return .array(picked.map { .array([.bulk($0.0), .bulk($0.1)]) }) }
                var flat: [Reply] = []
                flat.reserveCapacity(picked.count * 2)
                for (f, v) in picked {
                    flat.append(.bulk(f))
                    flat.append(.bulk(v))
                }
                return .array(flat)
            }
        }
    }

    // MARK: - HSCAN

    static func hscan(_ call: CommandCall) {
        guard let cursor = ScanArguments.parseCursor(call.args[2]) else {
            return call.reply(.error("ERR invalid cursor"))
        }
        let options = ScanArguments(call, from: 3)
        let key = call.key(1)
        call.runOnKey(key, mode: .shared) { ctx in
            read(&ctx, key, empty: ScanArguments.emptyReply) { hash in
                // Options are checked only once the key is known to hold a hash (Redis's order).
                if let error = options.error { return error }
                var items: [Reply] = []
                let next = hash.scan(cursor: cursor, count: options.count) { f, v in
                    if options.matches(f) {
                        items.append(.bulk(f))
                        items.append(.bulk(v))
                    }
                }
                return .array([.bulkString(String(next)), .array(items)])
            }
        }
    }
}

// MARK: - Shared by the aggregate families

/// The options of HSCAN/SSCAN (and ZSCAN): MATCH and COUNT, parsed on the
/// connection's thread. A parse error is kept, not sent, because Redis only
/// reports it once the key is known to exist with the right type.
struct ScanArguments: Sendable {
    var count = 10
    var pattern: [UInt8]? = nil
    var error: Reply? = nil

    static let emptyReply = Reply.array([.bulkString("0"), .array([])])

    init(_ call: CommandCall, from start: Int) {
        var i = start
        while i < call.args.count {
            let remaining = call.args.count - i
            if call.isArg(i, "count") && remaining >= 2 {
                guard let n = call.integer(i + 1) else {
                    error = .notInteger
                    return
                }
                guard n >= 1 else {
                    error = .syntaxError
                    return
                }
                count = Int(min(n, Int64(Int32.max)))
                i += 2
            } else if call.isArg(i, "match") && remaining >= 2 {
                let p = call.args.bytes(i + 1)
                pattern = (p.count == 1 && p[0] == UInt8(ascii: "*")) ? nil : p
                i += 2
            } else {
                error = .syntaxError
                return
            }
        }
    }
    func matches(_ bytes: [UInt8]) -> Bool {
        guard let pattern else { return true }
        return pattern.withUnsafeBytes { p in bytes.withUnsafeBytes { GlobPattern.matches(pattern: p, string: $0) } }
    }

    /// Redis's `parseScanCursorOrReply`: `strtoul` in base 10 — optional
    /// sign (a '-' wraps), no leading space, every byte consumed, no
    /// overflow; the empty string reads as 0. Like any C string, the cursor
    /// ends at its first NUL byte.
    static func parseCursor(_ argument: UnsafeRawBufferPointer) -> UInt64? {
        let bytes = UnsafeRawBufferPointer(rebasing: argument[..<(argument.firstIndex(of: 0) ?? argument.count)])
        if bytes.isEmpty { return 0 }
        return RedisNumber.parseWrappingUnsigned(bytes, from: 0)
    }
}

/// A small, fast generator for SPOP/SRANDMEMBER/HRANDFIELD, seeded once per
/// command from the system (one `getrandom` per command, not per pick).
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    init() {
        var system = SystemRandomNumberGenerator()
        state = system.next()
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
