import DamselflyRESP
import DamselflyStorage
import DamselflyTransactions

/// Streams: XADD, XLEN, XRANGE, XREVRANGE, XDEL, XTRIM, XSETID, XREAD, with
/// Redis 7.0's replies, error texts and order of checks. Consumer groups
/// are in `StreamFamily+Groups.swift`, XINFO in `+Info`, and XREAD /
/// XREADGROUP (blocking or not) in `+Reads`.
///
/// Handlers parse and validate on the connection's thread; the `op…`
/// functions run on the owning shard and return the reply.
public enum StreamFamily {
    public static func register(_ r: CommandRegistry) {
        let g = "stream"
        r.register("xadd", arity: -5, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: xadd)
        r.register("xlen", arity: 2, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1)
            call.runOnKey(key, mode: .shared) { ctx in
                ctx.read(key, empty: .integer(0), as: value) { .integer($0.count) }
            }
        }
        r.register("xrange", arity: -4, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            xrange(call, reverse: false)
        }
        r.register("xrevrange", arity: -4, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            xrange(call, reverse: true)
        }
        r.register("xdel", arity: -3, flags: [.write, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: xdel)
        r.register("xtrim", arity: -4, flags: [.write], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: xtrim)
        r.register("xsetid", arity: -3, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: xsetid)
        r.register("xread", arity: -4, flags: [.readonly, .blocking], group: g) { call in xread(call, group: false) }
        r.register("xreadgroup", arity: -7, flags: [.write, .blocking], group: g) { call in xread(call, group: true) }
        r.register("xgroup", arity: -2, flags: [.write], firstKey: 2, lastKey: 2, keyStep: 1, group: g, handler: xgroup)
        r.register("xack", arity: -4, flags: [.write, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: xack)
        r.register("xpending", arity: -3, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: xpending)
        r.register("xclaim", arity: -6, flags: [.write, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: xclaim)
        r.register("xautoclaim", arity: -6, flags: [.write, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: xautoclaim)
        r.register("xinfo", arity: -2, flags: [.readonly], firstKey: 2, lastKey: 2, keyStep: 1, group: g, handler: xinfo)
    }

    // MARK: - Shared helpers

    static let invalidID = Reply.error("ERR Invalid stream ID specified as stream command argument")

    static func value(_ stored: StoredValue) -> StreamValue? {
        if case .stream(let s) = stored { return s }
        return nil
    }

    /// Argument `i` as a stream ID (nil after replying with Redis's error).
    static func id(_ call: CommandCall, _ i: Int, strict: Bool = true, missingSeq: UInt64 = 0) -> StreamID? {
        guard let parsed = StreamID.parse(call.args[i], missingSeq: missingSeq, strict: strict) else {
            call.reply(invalidID)
            return nil
        }
        return parsed.id
    }

    /// An interval bound of XRANGE / XPENDING / XAUTOCLAIM: `(id` is
    /// exclusive (and strict); nil after replying.
    static func intervalID(_ call: CommandCall, _ i: Int, missingSeq: UInt64, start: Bool) -> StreamID? {
        let arg = call.args[i]
        if arg.count > 1 && arg[0] == UInt8(ascii: "(") {
            guard let parsed = StreamID.parse(UnsafeRawBufferPointer(rebasing: arg[1...]), missingSeq: missingSeq, strict: true) else {
                call.reply(invalidID)
                return nil
            }
            guard let moved = start ? parsed.id.successor : parsed.id.predecessor else {
                call.reply(.error(start ? "ERR invalid start ID for the interval" : "ERR invalid end ID for the interval"))
                return nil
            }
            return moved
        }
        return id(call, i, strict: false, missingSeq: missingSeq)
    }

    static func idReply(_ id: StreamID) -> Reply { .bulk(id.bytes) }

    static func entryReply(_ id: StreamID, _ fields: [[UInt8]]?) -> Reply {
        .array([idReply(id), fields.map { .array($0.map { .bulk($0) }) } ?? .nullArray])
    }

    static func entriesReply(_ entries: [StreamValue.Entry]) -> Reply {
        .array(entries.map { entryReply($0.id, $0.fields) })
    }

    /// Entries encoded into RESP while the stream is read in place (`[[id, [f, v, ...]], ...]`,
    /// the same bytes ``entriesReply(_:)`` encodes to): XRANGE, XREAD and XREADGROUP send one
    /// buffer instead of building a `Reply` per entry and per field, copying every field out
    /// of its node first, and releasing it all after.
    struct EntriesEncoder {
        var body: ReplyBuilder
        var count = 0

        init(protocolVersion: Int) { body = ReplyBuilder(protocolVersion: protocolVersion, capacity: 256) }

        mutating func entry(_ id: StreamID, _ strings: Int) {
            count += 1
            body.arrayHeader(2)
            id.withText { body.bulk($0) }
            body.arrayHeader(strings)
        }

        mutating func string(_ s: UnsafeRawBufferPointer) { body.bulk(s) }

        /// The array of the entries seen, as one encoded reply.
        func reply() -> Reply {
            var out = ReplyBuilder(protocolVersion: body.protocolVersion, capacity: body.buffer.count + 24)
            out.arrayHeader(count)
            out.appendRaw(body.buffer)
            return .raw(out.buffer)
        }
    }

    /// Live entries of `stream` from `start` to `end` ascending, at most `limit` (0: all), encoded.
    static func encodedRange(_ stream: StreamValue, _ start: StreamID, _ end: StreamID, limit: Int, protocolVersion: Int) -> Reply {
        var encoder = EntriesEncoder(protocolVersion: protocolVersion)
        stream.visitRange(start, end, limit: limit, entry: { encoder.entry($0, $1) }, string: { encoder.string($0) })
        return encoder.reply()
    }

    /// Runs `body` on the stream under `key` for a write; `missing` when
    /// there is none, WRONGTYPE for another type. Memory is re-accounted after.
    static func modify(_ ctx: inout ShardContext, _ key: KeyRef, missing: Reply, _ body: (StreamValue) -> Reply) -> Reply {
        switch ctx.lookup(key, write: true, as: value) {
        case .missing: return missing
        case .wrongType: return .wrongType
        case .found(let index, let stream): return ctx.database.modifyValue(at: index) { _ in body(stream) }
        }
    }

    // MARK: - XADD / XTRIM

    /// The trimming part of XADD and XTRIM.
    struct TrimArgs {
        var strategy: StreamValue.TrimStrategy? = nil
        var approximate = false
        var limit = 0
        var noMakeStream = false
        var id: StreamID.Parsed? = nil
        /// Where the field/value pairs (XADD) start.
        var next = 0
    }

    /// Parses `[NOMKSTREAM] [MAXLEN|MINID [=|~] threshold [LIMIT n]] id` (XADD)
    /// or `MAXLEN|MINID [=|~] threshold [LIMIT n]` (XTRIM) as Redis does, in
    /// its order of checks; nil after replying with the error.
    static func parseTrimArgs(_ call: CommandCall, xadd: Bool) -> TrimArgs? {
        var t = TrimArgs()
        var limitGiven = false
        var i = 2
        let argc = call.args.count
        let mixed = Reply.error("ERR syntax error, MAXLEN and MINID options at the same time are not compatible")
        while i < argc {
            let more = argc - 1 - i
            let arg = call.args[i]
            if xadd && arg.count == 1 && arg[0] == UInt8(ascii: "*") {
                break
            } else if call.isArg(i, "maxlen") && more > 0 || call.isArg(i, "minid") && more > 0 {
                let maxlen = call.isArg(i, "maxlen")
                if t.strategy != nil { call.reply(mixed); return nil }
                t.approximate = false
                let next = call.args[i + 1]
                if more >= 2 && next.count == 1 && (next[0] == UInt8(ascii: "~") || next[0] == UInt8(ascii: "=")) {
                    t.approximate = next[0] == UInt8(ascii: "~")
                    i += 1
                }
                if maxlen {
                    guard let n = call.integer(i + 1) else { call.reply(.notInteger); return nil }
                    guard n >= 0 else { call.reply(.error("ERR The MAXLEN argument must be >= 0.")); return nil }
                    t.strategy = .maxLength(Int(n))
                } else {
                    guard let id = id(call, i + 1) else { return nil }
                    t.strategy = .minID(id)
                }
                i += 2
                continue
            } else if call.isArg(i, "limit") && more > 0 {
                guard let n = call.integer(i + 1) else { call.reply(.notInteger); return nil }
                guard n >= 0 else { call.reply(.error("ERR The LIMIT argument must be >= 0.")); return nil }
                t.limit = Int(n)
                limitGiven = true
                i += 2
                continue
            } else if xadd && call.isArg(i, "nomkstream") {
                t.noMakeStream = true
                i += 1
                continue
            } else if xadd {
                guard let parsed = StreamID.parse(arg, strict: true, allowAutoSeq: true) else {
                    call.reply(invalidID)
                    return nil
                }
                t.id = parsed
                break
            } else {
                call.reply(.syntaxError)
                return nil
            }
        }
        t.next = i + 1
        if t.limit != 0 && t.strategy == nil {
            call.reply(.error("ERR syntax error, LIMIT cannot be used without specifying a trimming strategy"))
            return nil
        }
        if !xadd && t.strategy == nil {
            call.reply(.error("ERR syntax error, XTRIM must be called with a trimming strategy"))
            return nil
        }
        if limitGiven {
            if !t.approximate {
                call.reply(.error("ERR syntax error, LIMIT cannot be used without the special ~ option"))
                return nil
            }
        } else {
            // Redis's default work cap for `~`: 100 nodes' worth, at most 10,000.
            let cap = 100 * StreamValue.nodeMaxEntries
            t.limit = t.approximate ? (cap <= 0 || cap > 10_000 ? 10_000 : cap) : 0
        }
        return t
    }

    static func xadd(_ call: CommandCall) {
        guard let t = parseTrimArgs(call, xadd: true) else { return }
        let fieldCount = call.args.count - t.next
        guard fieldCount >= 2 && fieldCount % 2 == 0 else { return call.reply(call.arityError) }
        if let id = t.id, id.seqGiven, id.id.isZero {
            return call.reply(.error("ERR The ID specified in XADD must be greater than 0-0"))
        }
        let key = call.key(1)
        // One packed copy of the pairs, ready for the node (not an array per argument).
        var size = 0
        for i in t.next..<call.args.count { size += call.args[i].count + 2 }
        var packed = StreamFields(reservingBytes: size)
        for i in t.next..<call.args.count { packed.append(call.args[i]) }
        let fields = packed
        // The journal records the concrete ID (and exact trimming
        // arguments as given, which replay deterministically).
        let journalArgs: [[UInt8]]? = call.engine.journaling ? (0..<call.args.count).map { call.args.bytes($0) } : nil
        let idIndex = t.next - 1
        runStreamWrite(call, key) { ctx in
            let stream: StreamValue
            var index: EntryIndex? = nil
            switch ctx.lookup(key, write: true, as: value) {
            case .wrongType: return .wrongType
            case .missing:
                if t.noMakeStream { return .nullArray }
                stream = StreamValue()
            case .found(let found, let s):
                stream = s
                index = found
            }
            if stream.lastID == .max {
                return .error("ERR The stream has exhausted the last possible ID, unable to add more items")
            }
            let id: StreamID
            switch stream.resolveAddID(t.id, nowMs: ctx.nowMs) {
            case .failure: return .error("ERR The ID specified in XADD is equal or smaller than the target stream top item")
            case .success(let resolved): id = resolved
            }
            var trimmed = 0
            let apply = {
                stream.append(id, fields)
                if let strategy = t.strategy { trimmed = stream.trim(strategy, approximate: t.approximate, limit: t.limit) }
            }
            if let index {
                ctx.database.modifyValue(at: index) { _ in apply() }
            } else {
                apply()
                ctx.store(key, .stream(stream))
            }
            ctx.notify(.stream, "xadd", key)
            if trimmed > 0 { ctx.notify(.stream, "xtrim", key) }
            if var args = journalArgs {
                args[idIndex] = id.bytes
                ctx.journal(args)
            }
            return idReply(id)
        }
    }

    /// Runs a stream write on the key's shard without the generic journal
    /// record (the command journals what it did itself).
    static func runStreamWrite(_ call: CommandCall, _ key: KeyRef, _ operation: @escaping (inout ShardContext) -> Reply) {
        call.runOnKey(key, mode: .exclusive, journal: false, operation)
    }

    static func xtrim(_ call: CommandCall) {
        guard let t = parseTrimArgs(call, xadd: false), let strategy = t.strategy else { return }
        let key = call.key(1)
        call.runOnKey(key, mode: .exclusive) { ctx in
            let reply = modify(&ctx, key, missing: .integer(0)) { stream in
                .integer(stream.trim(strategy, approximate: t.approximate, limit: t.limit))
            }
            if case .integer(let n) = reply, n > 0 { ctx.notify(.stream, "xtrim", key) }
            return reply
        }
    }

    // MARK: - XRANGE / XREVRANGE

    static func xrange(_ call: CommandCall, reverse: Bool) {
        let startIndex = reverse ? 3 : 2, endIndex = reverse ? 2 : 3
        guard let start = intervalID(call, startIndex, missingSeq: 0, start: true),
              let end = intervalID(call, endIndex, missingSeq: .max, start: false) else { return }
        var count: Int64 = -1
        var i = 4
        while i < call.args.count {
            guard call.isArg(i, "count"), i + 1 < call.args.count else { return call.reply(.syntaxError) }
            guard let n = call.integer(i + 1) else { return call.reply(.notInteger) }
            count = max(n, 0)
            i += 2
        }
        let key = call.key(1)
        let protocolVersion = call.client.protocolVersion
        call.runOnKey(key, mode: .shared) { ctx in
            ctx.read(key, empty: .array([]), as: value) { stream in
                if count == 0 { return .nullArray }
                let limit = count < 0 ? 0 : Int(count)
                if !reverse { return encodedRange(stream, start, end, limit: limit, protocolVersion: protocolVersion) }
                return entriesReply(stream.range(start, end, limit: limit, reverse: true))
            }
        }
    }

    // MARK: - XDEL / XSETID

    static func xdel(_ call: CommandCall) {
        let key = call.key(1)
        // Redis looks the key up before it parses the IDs.
        let raw = (2..<call.args.count).map { call.args.bytes($0) }
        call.runOnKey(key, mode: .exclusive) { ctx in
            var ids: [StreamID] = []
            for r in raw {
                guard let parsed = r.withUnsafeBytes({ StreamID.parse($0, strict: true) }) else {
                    if case .missing = ctx.lookup(key, write: true, as: value) { return .integer(0) }
                    if case .wrongType = ctx.lookup(key, write: true, as: value) { return .wrongType }
                    return invalidID
                }
                ids.append(parsed.id)
            }
            let reply = modify(&ctx, key, missing: .integer(0)) { .integer($0.delete(ids)) }
            if case .integer(let n) = reply, n > 0 { ctx.notify(.stream, "xdel", key) }
            return reply
        }
    }

    static func xsetid(_ call: CommandCall) {
        guard let newID = id(call, 2) else { return }
        var entriesAdded: Int64 = -1
        var maxDeleted = StreamID.zero
        var i = 3
        while i < call.args.count {
            let more = call.args.count - 1 - i
            if call.isArg(i, "entriesadded") && more > 0 {
                guard let n = call.integer(i + 1) else { return call.reply(.notInteger) }
                guard n >= 0 else { return call.reply(.error("ERR entries_added must be positive")) }
                entriesAdded = n
            } else if call.isArg(i, "maxdeletedid") && more > 0 {
                guard let m = id(call, i + 1) else { return }
                guard m <= newID else {
                    return call.reply(.error("ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id"))
                }
                maxDeleted = m
            } else {
                return call.reply(.syntaxError)
            }
            i += 2
        }
        let key = call.key(1)
        call.runOnKey(key, mode: .exclusive) { ctx in
            ctx.markBookkeepingOnly()
            let reply = modify(&ctx, key, missing: .error("ERR no such key")) { stream in
                if stream.count > 0 {
                    if newID < stream.lastValidID {
                        return .error("ERR The ID specified in XSETID is smaller than the target stream top item")
                    }
                    if entriesAdded != -1 && Int64(stream.count) > entriesAdded {
                        return .error("ERR The entries_added specified in XSETID is smaller than the target stream length")
                    }
                }
                stream.lastID = newID
                if entriesAdded != -1 { stream.entriesAdded = UInt64(entriesAdded) }
                if !maxDeleted.isZero { stream.maxDeletedID = maxDeleted }
                return .ok
            }
            if case .ok = reply { ctx.notify(.stream, "xsetid", key) }
            return reply
        }
    }
}
