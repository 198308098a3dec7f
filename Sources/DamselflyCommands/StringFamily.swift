import CDamselfly
import DamselflyRESP
import DamselflyRuntime
import DamselflyStorage
import DamselflyTransactions

/// Strings: GET, SET and their variants, counters, ranges and MGET/MSET.
///
/// Handlers parse and validate on the connection's thread; the `op…`
/// functions run on the owning shard and return the reply.
public enum StringFamily {
    public static func register(_ r: CommandRegistry) {
        let g = "string"
        r.register("get", arity: 2, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            call.runOnKey(argument: 1, mode: .shared) { key, _ in GetOperation(key: key) }
        }
        r.register("set", arity: -3, flags: [.write, .denyOOM], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: set)
        r.register("setnx", arity: 3, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1), value = call.args.bytes(2)
            call.runOnKey(key, mode: .exclusive) { ctx in
                if ctx.lookupWrite(key) != nil { return .integer(0) }
                ctx.store(key, .string(value))
                ctx.notify(.string, "set", key)
                return .integer(1)
            }
        }
        r.register("setex", arity: 4, flags: [.write, .denyOOM], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            setWithTTL(call, unit: .seconds)
        }
        r.register("psetex", arity: 4, flags: [.write, .denyOOM], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            setWithTTL(call, unit: .milliseconds)
        }
        r.register("getset", arity: 3, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1), value = call.args.bytes(2)
            call.runOnKey(key, mode: .exclusive) { ctx in
                var old = Reply.null
                if let found = ctx.lookupWrite(key) {
                    guard let reply = stringReply(ctx.database.value(at: found)) else { return .wrongType }
                    old = reply
                }
                ctx.store(key, .string(value))
                ctx.notify(.string, "set", key)
                return old
            }
        }
        r.register("getdel", arity: 2, flags: [.write, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1)
            call.runOnKey(key, mode: .exclusive) { ctx in
                guard let found = ctx.lookupRead(key) else { return .null }
                guard let reply = stringReply(ctx.database.value(at: found)) else { return .wrongType }
                ctx.database.remove(at: found)
                ctx.notify(.generic, "del", key)
                return reply
            }
        }
        r.register("getex", arity: -2, flags: [.write, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: getex)
        r.register("mget", arity: -2, flags: [.readonly, .fast], firstKey: 1, lastKey: -1, keyStep: 1, group: g) { call in
            let keys = (1..<call.args.count).map { call.key($0) }
            call.runOnKeys(keys, mode: .shared, perShard: { ctx, positions in
                positions.map { position -> (Int, Reply) in
                    guard let found = ctx.lookupRead(keys[position]) else { return (position, .null) }
                    return (position, stringReply(ctx.database.value(at: found)) ?? .null)
                }
            }, merge: { parts in
                var replies = [Reply](repeating: .null, count: keys.count)
                for part in parts { for (position, reply) in part { replies[position] = reply } }
                return .array(replies)
            })
        }
        r.register("mset", arity: -3, flags: [.write, .denyOOM], firstKey: 1, lastKey: -1, keyStep: 2, group: g) { call in
            mset(call, onlyIfNoneExist: false)
        }
        r.register("msetnx", arity: -3, flags: [.write, .denyOOM], firstKey: 1, lastKey: -1, keyStep: 2, group: g) { call in
            mset(call, onlyIfNoneExist: true)
        }
        r.register("incr", arity: 2, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            incrementBy(call, 1)
        }
        r.register("decr", arity: 2, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            incrementBy(call, -1)
        }
        r.register("incrby", arity: 3, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            guard let by = call.integer(2) else { return call.reply(.notInteger) }
            incrementBy(call, by)
        }
        r.register("decrby", arity: 3, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            guard let by = call.integer(2) else { return call.reply(.notInteger) }
            guard by != Int64.min else { return call.reply(.error("ERR decrement would overflow")) }
            incrementBy(call, -by)
        }
        r.register("incrbyfloat", arity: 3, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1), increment = call.args.bytes(2)
            call.runOnKey(key, mode: .exclusive) { ctx in opIncrByFloat(&ctx, key, increment) }
        }
        r.register("append", arity: 3, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1), suffix = call.args.bytes(2)
            let limit = call.engine.maxBulkLength
            call.runOnKey(key, mode: .exclusive) { ctx in opAppend(&ctx, key, suffix, limit: limit) }
        }
        r.register("strlen", arity: 2, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1)
            call.runOnKey(key, mode: .shared) { ctx in
                guard let found = ctx.lookupRead(key) else { return .integer(0) }
                let value = ctx.database.value(at: found)
                guard isString(value) else { return .wrongType }
                return .integer(value.stringLength)
            }
        }
        let getrange: @Sendable (CommandCall) -> Void = { call in
            guard let start = call.integer(2), let end = call.integer(3) else { return call.reply(.notInteger) }
            let key = call.key(1)
            call.runOnKey(key, mode: .shared) { ctx in opGetRange(&ctx, key, start, end) }
        }
        r.register("getrange", arity: 4, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: getrange)
        r.register("substr", arity: 4, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: getrange)
        r.register("setrange", arity: 4, flags: [.write, .denyOOM], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            guard let offset = call.integer(2) else { return call.reply(.notInteger) }
            guard offset >= 0 else { return call.reply(.error("ERR offset is out of range")) }
            let key = call.key(1), value = call.args.bytes(3)
            let limit = call.engine.maxBulkLength
            call.runOnKey(key, mode: .exclusive) { ctx in opSetRange(&ctx, key, Int(offset), value, limit: limit) }
        }
    }

    // MARK: - Shared helpers

    /// Whether a stored value is a string (the only type this family reads).
    @inlinable
    static func isString(_ value: StoredValue) -> Bool {
        switch value {
        case .int, .bytes, .raw: return true
        case .list, .hash, .set, .zset, .stream: return false
        }
    }

    /// A string value as a bulk reply, or nil for other types.
    @inlinable
    public static func stringReply(_ value: StoredValue) -> Reply? {
        switch value {
        case .int(let v): return .bulkInteger(v)
        case .bytes(let b), .raw(let b): return .bulk(b)
        case .list, .hash, .set, .zset, .stream: return nil
        }
    }

    /// A string value's bytes (ints formatted), or nil for other types.
    static func stringBytes(_ value: StoredValue) -> [UInt8]? {
        switch value {
        case .int(let v): return Array(String(v).utf8)
        case .bytes(let b), .raw(let b): return b
        case .list, .hash, .set, .zset, .stream: return nil
        }
    }

    static func opGet(_ ctx: inout ShardContext, _ key: KeyRef) -> Reply {
        guard let found = ctx.lookupRead(key) else { return .null }
        return stringReply(ctx.database.value(at: found)) ?? .wrongType
    }

    // MARK: - SET

    private struct SetOptions {
        var condition = 0  // 0 none, 1 NX, 2 XX
        var get = false
        var keepTTL = false
        /// The unit and the argument index of its value, read once every option parsed
        /// (Redis reports a syntax error later in the line before a bad number).
        var expire: (ExpireUnit, Int)?
    }

    static func set(_ call: CommandCall) {
        var options = SetOptions()
        var i = 3
        let args = call.args
        while i < args.count {
            let hasNext = i + 1 < args.count
            if call.isArg(i, "nx") && options.condition != 2 {
                options.condition = 1
            } else if call.isArg(i, "xx") && options.condition != 1 {
                options.condition = 2
            } else if call.isArg(i, "get") {
                options.get = true
            } else if call.isArg(i, "keepttl") && options.expire == nil {
                options.keepTTL = true
            } else if hasNext && options.expire == nil && !options.keepTTL,
                let unit: ExpireUnit = call.isArg(i, "ex") ? .seconds : call.isArg(i, "px") ? .milliseconds
                    : call.isArg(i, "exat") ? .unixSeconds : call.isArg(i, "pxat") ? .unixMilliseconds : nil
            {
                options.expire = (unit, i + 1)
                i += 1
            } else {
                return call.reply(.syntaxError)
            }
            i += 1
        }
        var expireAt: Int64? = nil
        if let (unit, index) = options.expire {
            guard let value = call.integer(index) else { return call.reply(.notInteger) }
            guard value > 0, let at = unit.absoluteMillis(value, nowMs: Clock.wallMillisForCommands()) else {
                return call.reply(.error("ERR invalid expire time in 'set' command"))
            }
            expireAt = at
        }
        // The value is read in place where the key is (see PushOneOperation): one copy, into the store.
        call.runOnKey(argument: 1, mode: .exclusive) {
            SetOperation(key: $0, value: ArgumentBytes($1, 2, inPlace: $0.isBorrowed), options: options, expireAt: expireAt)
        }
    }

    /// GET on its shard (a value: no closure allocated on the inline path).
    struct GetOperation: KeyOperation {
        let key: KeyRef
        func run(_ ctx: inout ShardContext) -> Reply { opGet(&ctx, key) }
    }

    /// SET on its shard, its options parsed.
    private struct SetOperation: KeyOperation {
        let key: KeyRef
        let value: ArgumentBytes
        let options: SetOptions
        let expireAt: Int64?

        func run(_ ctx: inout ShardContext) -> Reply {
            let found = ctx.lookupWrite(key)
            var old = Reply.null
            if options.get, let found {
                guard let reply = stringReply(ctx.database.value(at: found)) else { return .wrongType }
                old = reply
            }
            if (options.condition == 1 && found != nil) || (options.condition == 2 && found == nil) {
                ctx.markUnchanged()
                return options.get ? old : .null
            }
            ctx.store(key, value.storedString, found: found, expireAtMs: expireAt, keepTTL: options.keepTTL)
            ctx.notify(.string, "set", key)
            if expireAt != nil { ctx.notify(.generic, "expire", key) }
            return options.get ? old : .ok
        }
    }

    static func setWithTTL(_ call: CommandCall, unit: ExpireUnit) {
        guard let amount = call.integer(2) else { return call.reply(.notInteger) }
        guard amount > 0, let at = unit.absoluteMillis(amount, nowMs: Clock.wallMillisForCommands()) else {
            return call.reply(.error("ERR invalid expire time in '\(call.spec.name)' command"))
        }
        let key = call.key(1), value = call.args.bytes(3)
        call.runOnKey(key, mode: .exclusive) { ctx in
            ctx.store(key, .string(value), expireAtMs: at)
            ctx.notify(.string, "set", key)
            ctx.notify(.generic, "expire", key)
            return .ok
        }
    }

    static func getex(_ call: CommandCall) {
        // Syntax is checked first; the expiry value is only validated once
        // the key is known to hold a string (Redis's order of checks).
        var persist = false
        var expiry: (ExpireUnit, Int)? = nil
        var i = 2
        while i < call.args.count {
            if call.isArg(i, "persist") && expiry == nil && !persist {
                persist = true
                i += 1
                continue
            }
            guard i + 1 < call.args.count, expiry == nil, !persist,
                let unit: ExpireUnit = call.isArg(i, "ex") ? .seconds : call.isArg(i, "px") ? .milliseconds
                    : call.isArg(i, "exat") ? .unixSeconds : call.isArg(i, "pxat") ? .unixMilliseconds : nil
            else { return call.reply(.syntaxError) }
            expiry = (unit, i + 1)
            i += 2
        }
        let parsed: Int64? = expiry.flatMap { call.integer($0.1) }
        let unit = expiry?.0
        let key = call.key(1)
        call.runOnKey(key, mode: .exclusive) { ctx in
            guard let found = ctx.lookupRead(key) else { return .null }
            guard let reply = stringReply(ctx.database.value(at: found)) else { return .wrongType }
            if let unit {
                guard let value = parsed else { return .notInteger }
                guard value > 0, let at = unit.absoluteMillis(value, nowMs: ctx.nowMs) else {
                    return .error("ERR invalid expire time in 'getex' command")
                }
                if at <= ctx.nowMs {
                    ctx.database.remove(at: found)
                    ctx.notify(.generic, "del", key)
                } else {
                    ctx.database.setExpireTime(at, at: found)
                    ctx.notify(.generic, "expire", key)
                }
            } else if persist, ctx.database.expireTime(at: found) != nil {
                ctx.database.setExpireTime(nil, at: found)
                ctx.notify(.generic, "persist", key)
            }
            return reply
        }
    }

    static func mset(_ call: CommandCall, onlyIfNoneExist: Bool) {
        guard call.args.count % 2 == 1 else { return call.reply(call.arityError) }
        var keys: [KeyRef] = []
        var values: [[UInt8]] = []
        keys.reserveCapacity(call.args.count / 2)
        values.reserveCapacity(call.args.count / 2)
        var i = 1
        while i < call.args.count {
            keys.append(call.key(i))
            values.append(call.args.bytes(i + 1))
            i += 2
        }
        if !onlyIfNoneExist {
            call.runOnKeys(keys, mode: .exclusive, perShard: { ctx, positions in
                for p in positions {
                    ctx.store(keys[p], .string(values[p]))
                    ctx.notify(.string, "set", keys[p])
                }
                return 0
            }, merge: { _ in .ok })
            return
        }
        // MSETNX: all shards must see every key absent. Under the
        // transaction's locks, a check on each shard and then the writes.
        call.runOnKeysTwoPhase(keys, mode: .exclusive, check: { ctx, positions in
            positions.allSatisfy { ctx.lookupWrite(keys[$0]) == nil }
        }, decide: { checks in checks.allSatisfy { $0 } }, apply: { ctx, positions, allAbsent in
            guard allAbsent else { return ctx.markUnchanged() }
            for p in positions {
                ctx.store(keys[p], .string(values[p]))
                ctx.notify(.string, "set", keys[p])
            }
        }, reply: { allAbsent in .integer(allAbsent ? 1 : 0) })
    }

    // MARK: - Counters

    static func incrementBy(_ call: CommandCall, _ delta: Int64) {
        call.runOnKey(argument: 1, mode: .exclusive) { key, _ in IncrementOperation(key: key, delta: delta) }
    }

    /// INCR/DECR/INCRBY/DECRBY on their shard, as a value: no closure or key copy on
    /// the inline path. Keeps nothing of its key after `run`.
    struct IncrementOperation: KeyOperation {
        let key: KeyRef
        let delta: Int64

        func run(_ ctx: inout ShardContext) -> Reply {
            var current: Int64 = 0
            let found = ctx.lookupWrite(key)
            if let found {
                switch ctx.database.value(at: found) {
                case .int(let v): current = v
                case .bytes(let b), .raw(let b):
                    guard let v = b.withUnsafeBytes({ RedisNumber.parseInt64($0) }) else { return .notInteger }
                    current = v
                case .list, .hash, .set, .zset, .stream:
                    return .wrongType
                }
            }
            let (sum, overflow) = current.addingReportingOverflow(delta)
            if overflow { return .overflow }
            if let found {
                ctx.database.setValue(.int(sum), at: found)
            } else {
                ctx.store(key, .int(sum))
            }
            ctx.notify(.string, "incrby", key)
            return .integer(Int(sum))
        }
    }

    static func opIncrByFloat(_ ctx: inout ShardContext, _ key: KeyRef, _ increment: [UInt8]) -> Reply {
        let found = ctx.lookupWrite(key)
        var current: [UInt8]? = nil
        if let found {
            guard let bytes = stringBytes(ctx.database.value(at: found)) else { return .wrongType }
            current = bytes
        }
        var out = [UInt8](repeating: 0, count: 5 * 1024 + 64)
        let length: Int32 = out.withUnsafeMutableBytes { outRaw in
            increment.withUnsafeBytes { inc in
                if let current {
                    // An empty string is not a float: strtold would see no digits.
                    if current.isEmpty { return -1 }
                    return current.withUnsafeBytes { cur in
                        dfly_incrbyfloat(
                            cur.baseAddress!.assumingMemoryBound(to: CChar.self), cur.count,
                            inc.baseAddress?.assumingMemoryBound(to: CChar.self), inc.count,
                            outRaw.baseAddress!.assumingMemoryBound(to: CChar.self), outRaw.count)
                    }
                }
                return dfly_incrbyfloat(
                    nil, 0, inc.baseAddress?.assumingMemoryBound(to: CChar.self), inc.count,
                    outRaw.baseAddress!.assumingMemoryBound(to: CChar.self), outRaw.count)
            }
        }
        switch length {
        case -1, -2: return .notFloat
        case ..<0: return .error("ERR increment would produce NaN or Infinity")
        default:
            let result = Array(out[0..<Int(length)])
            let value = result.withUnsafeBytes { StoredValue.string($0) }
            if let found {
                ctx.database.setValue(value, at: found)
            } else {
                ctx.store(key, value)
            }
            // Replicated and journaled as the value it produced (Redis's
            // SET ... KEEPTTL): a replay or a replica may format floats otherwise.
            ctx.journal([Array("SET".utf8), key.bytes, result, Array("KEEPTTL".utf8)])
            ctx.notify(.string, "incrbyfloat", key)
            return .bulk(result)
        }
    }

    // MARK: - Ranges

    static func opAppend(_ ctx: inout ShardContext, _ key: KeyRef, _ suffix: [UInt8], limit: Int) -> Reply {
        guard let found = ctx.lookupWrite(key) else {
            ctx.store(key, .string(suffix))
            ctx.notify(.string, "append", key)
            return .integer(suffix.count)
        }
        let current = ctx.database.value(at: found)
        guard isString(current) else { return .wrongType }
        if current.stringLength > limit - suffix.count {
            return .stringTooLong
        }
        let newLength: Int = ctx.database.modifyValue(at: found) { value in
            switch value {
            case .int(let v):
                var bytes = Array(String(v).utf8)
                bytes.append(contentsOf: suffix)
                value = .raw(bytes)
                return bytes.count
            case .bytes(var bytes), .raw(var bytes):
                value = .int(0)  // drop our reference so `bytes` is unique
                bytes.append(contentsOf: suffix)
                let count = bytes.count
                value = .raw(bytes)
                return count
            case .list, .hash, .set, .zset, .stream:
                return 0  // excluded by the isString check above
            }
        }
        ctx.notify(.string, "append", key)
        return .integer(newLength)
    }

    static func opGetRange(_ ctx: inout ShardContext, _ key: KeyRef, _ startArg: Int64, _ endArg: Int64) -> Reply {
        guard let found = ctx.lookupRead(key) else { return .bulk([]) }
        guard let bytes = stringBytes(ctx.database.value(at: found)) else { return .wrongType }
        var start = startArg, end = endArg
        let length = Int64(bytes.count)
        if start < 0 && end < 0 && start > end { return .bulk([]) }
        if start < 0 { start = length + start }
        if end < 0 { end = length + end }
        if start < 0 { start = 0 }
        if end < 0 { end = 0 }
        if end >= length { end = length - 1 }
        if start > end || length == 0 { return .bulk([]) }
        return .bulk(Array(bytes[Int(start)...Int(end)]))
    }

    /// Redis checks the size after the type and the empty-value cases, and without overflow:
    /// `offset` may be anything up to 2^63-1.
    static func opSetRange(_ ctx: inout ShardContext, _ key: KeyRef, _ offset: Int, _ value: [UInt8], limit: Int) -> Reply {
        let tooBig = offset > limit - value.count
        guard let found = ctx.lookupWrite(key) else {
            if value.isEmpty { return .integer(0) }
            if tooBig { return .stringTooLong }
            var bytes = [UInt8](repeating: 0, count: offset)
            bytes.append(contentsOf: value)
            ctx.store(key, .raw(bytes))
            ctx.notify(.string, "setrange", key)
            return .integer(bytes.count)
        }
        let current = ctx.database.value(at: found)
        guard isString(current) else { return .wrongType }
        if value.isEmpty { return .integer(current.stringLength) }
        if tooBig { return .stringTooLong }
        let newLength: Int = ctx.database.modifyValue(at: found) { stored in
            var bytes: [UInt8]
            switch stored {
            case .int(let v): bytes = Array(String(v).utf8)
            case .bytes(let b), .raw(let b): bytes = b
            case .list, .hash, .set, .zset, .stream: return 0  // excluded by the isString check above
            }
            stored = .int(0)
            if bytes.count < offset + value.count {
                bytes.append(contentsOf: repeatElement(0, count: offset + value.count - bytes.count))
            }
            bytes.replaceSubrange(offset..<(offset + value.count), with: value)
            stored = .raw(bytes)
            return bytes.count
        }
        ctx.notify(.string, "setrange", key)
        return .integer(newLength)
    }
}

extension Clock {
    /// The time used when a handler turns a relative TTL into an absolute one.
    @inlinable public static func wallMillisForCommands() -> Int64 { wallMillis() }
}
