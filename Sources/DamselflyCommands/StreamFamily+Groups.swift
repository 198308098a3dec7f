import DamselflyStorage
import DamselflyTransactions

/// Consumer groups: XGROUP, XACK, XPENDING, XCLAIM and XAUTOCLAIM.
extension StreamFamily {
    static func noGroup(_ key: KeyRef, _ group: [UInt8]) -> Reply {
        .error("NOGROUP No such key '\(printfText(key.bytes))' or consumer group '\(printfText(group))'")
    }

    /// The stream and group for a group command, or the reply when missing.
    static func findGroup(_ ctx: inout ShardContext, _ key: KeyRef, _ name: [UInt8], write: Bool)
        -> Result<(EntryIndex, StreamValue, StreamGroup), ReplyError>
    {
        switch ctx.lookup(key, write: write, as: value) {
        case .wrongType: return .failure(ReplyError(.wrongType))
        case .missing: return .failure(ReplyError(noGroup(key, name)))
        case .found(let index, let stream):
            guard let group = stream.group(name) else { return .failure(ReplyError(noGroup(key, name))) }
            return .success((index, stream, group))
        }
    }

    struct ReplyError: Error {
        let reply: Reply
        init(_ reply: Reply) { self.reply = reply }
    }

    /// Journals a delivery or claim the way Redis propagates it: an XCLAIM
    /// that forces the NACK into the given consumer's PEL with its time and
    /// count (or drops it when the entry is gone).
    static func journalClaim(_ ctx: ShardContext, _ key: KeyRef, _ group: StreamGroup, consumer: [UInt8], _ id: StreamID, _ nack: StreamNACK?) {
        guard ctx.shard.journal != nil else { return }
        var args: [[UInt8]] = [Array("XCLAIM".utf8), key.bytes, group.name, consumer, Array("0".utf8), id.bytes]
        if let nack {
            args += [Array("TIME".utf8), Array(String(nack.deliveryTime).utf8),
                     Array("RETRYCOUNT".utf8), Array(String(nack.deliveryCount).utf8)]
        }
        args += [Array("FORCE".utf8), Array("JUSTID".utf8), Array("LASTID".utf8), group.lastID.bytes]
        ctx.journal(args)
    }

    // MARK: - XGROUP

    static let groupSubcommands: [String: Int] = ["create": -5, "setid": -5, "destroy": 4, "createconsumer": 5, "delconsumer": 5, "help": 2]

    static func xgroup(_ call: CommandCall) {
        let sub = call.args.string(1).lowercased()
        guard let arity = groupSubcommands[sub] else {
            return call.reply(.error("ERR unknown subcommand '\(call.args.subcommandName(1))'. Try XGROUP HELP."))
        }
        let argc = call.args.count
        guard arity >= 0 ? argc == arity : argc >= -arity else {
            return call.reply(.error("ERR wrong number of arguments for 'xgroup|\(sub)' command"))
        }
        let subSyntax = Reply.error("ERR unknown subcommand or wrong number of arguments for '\(call.args.subcommandName(1))'. Try XGROUP HELP.")
        if sub == "help" {
            return call.reply(.array([
                "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CREATE <key> <groupname> <id|$> [option]",
                "    Create a new consumer group. Options are:",
                "    * MKSTREAM",
                "      Create the empty stream if it does not exist.",
                "    * ENTRIESREAD entries_read",
                "      Set the group's entries_read counter (internal use).",
                "CREATECONSUMER <key> <groupname> <consumer>",
                "    Create a new consumer in the specified group.",
                "DELCONSUMER <key> <groupname> <consumer>",
                "    Remove the specified consumer.",
                "DESTROY <key> <groupname>",
                "    Remove the specified group.",
                "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
                "    Set the current group ID and entries_read counter.",
                "HELP",
                "    Prints this help.",
            ].map { .simple($0) }))
        }
        var makeStream = false
        var entriesRead = StreamGroup.invalidEntriesRead
        if sub == "create" || sub == "setid" {
            var i = 5
            while i < argc {
                if sub == "create" && call.isArg(i, "mkstream") {
                    makeStream = true
                    i += 1
                } else if call.isArg(i, "entriesread") && i + 1 < argc {
                    guard let n = call.integer(i + 1) else { return call.reply(.notInteger) }
                    guard n >= 0 || n == StreamGroup.invalidEntriesRead else {
                        return call.reply(.error("ERR value for ENTRIESREAD must be positive or -1"))
                    }
                    entriesRead = n
                    i += 2
                } else {
                    return call.reply(subSyntax)
                }
            }
        }
        let key = call.key(2)
        let name = call.args.bytes(3)
        let argument = argc > 4 ? call.args.bytes(4) : []
        // The ID is parsed after the key checks, as Redis does.
        let isDollar = argument == Array("$".utf8)
        let parsedID = isDollar ? nil : argument.withUnsafeBytes { StreamID.parse($0, strict: sub == "create") }
        call.runOnKey(key, mode: .exclusive) { ctx in
            // Only a stream MKSTREAM creates is a modified key for Redis (WATCH, tracking).
            ctx.markBookkeepingOnly()
            var stream: StreamValue? = nil
            var index: EntryIndex? = nil
            switch ctx.lookup(key, write: true, as: value) {
            case .wrongType: return .wrongType
            case .missing: break
            case .found(let i, let s):
                stream = s
                index = i
            }
            if !makeStream {
                guard let stream else {
                    return .error("ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.")
                }
                if stream.group(name) == nil && (sub == "setid" || sub == "createconsumer" || sub == "delconsumer") {
                    return .error("NOGROUP No such consumer group '\(String(decoding: name, as: UTF8.self))' for key name '\(String(decoding: key.bytes, as: UTF8.self))'")
                }
            }
            switch sub {
            case "create":
                guard argc <= 8 else { return subSyntax }
                let id: StreamID
                if isDollar {
                    id = stream?.lastID ?? .zero
                } else {
                    guard let parsedID else { return invalidID }
                    id = parsedID.id
                }
                let target: StreamValue
                if let stream {
                    target = stream
                } else {
                    target = StreamValue()
                    ctx.shard.bookkeepingOnly = false
                    ctx.store(key, .stream(target))
                    index = ctx.lookupWrite(key)
                }
                let made = ctx.database.modifyValue(at: index!) { _ in target.createGroup(name, lastID: id, entriesRead: entriesRead) }
                if made != nil { ctx.notify(.stream, "xgroup-create", key) }
                return made == nil ? .error("BUSYGROUP Consumer Group name already exists") : .ok
            case "setid":
                guard argc == 5 || argc == 7, let stream, let group = stream.group(name) else { return subSyntax }
                let id: StreamID
                if isDollar {
                    id = stream.lastID
                } else {
                    guard let parsedID else { return invalidID }
                    id = parsedID.id
                }
                group.lastID = id
                group.entriesRead = entriesRead
                ctx.notify(.stream, "xgroup-setid", key)
                return .ok
            case "destroy":
                guard let stream, let index else { return .integer(0) }
                let destroyed = ctx.database.modifyValue(at: index) { _ in stream.destroyGroup(name) }
                if destroyed { ctx.notify(.stream, "xgroup-destroy", key) }
                return .integer(destroyed ? 1 : 0)
            case "createconsumer":
                guard let stream, let index, let group = stream.group(name) else { return .integer(0) }
                let created = ctx.database.modifyValue(at: index) { _ in group.findOrCreateConsumer(argument, nowMs: ctx.nowMs).created }
                if created { ctx.notify(.stream, "xgroup-createconsumer", key) }
                return .integer(created ? 1 : 0)
            default:  // delconsumer
                guard let stream, let index, let group = stream.group(name) else { return .integer(0) }
                let pending = ctx.database.modifyValue(at: index) { _ in group.deleteConsumer(argument) }
                if pending != nil { ctx.notify(.stream, "xgroup-delconsumer", key) }
                return .integer(pending ?? 0)
            }
        }
    }

    // MARK: - XACK

    static func xack(_ call: CommandCall) {
        let key = call.key(1)
        let name = call.args.bytes(2)
        let parsed = (3..<call.args.count).map { i in StreamID.parse(call.args[i], strict: true)?.id }
        call.runOnKey(key, mode: .exclusive) { ctx in
            ctx.markBookkeepingOnly()
            guard case .success(let (index, stream, group)) = findGroup(&ctx, key, name, write: true) else {
                if case .wrongType = ctx.lookup(key, write: true, as: value) { return .wrongType }
                return .integer(0)
            }
            let ids = parsed.compactMap { $0 }
            guard ids.count == parsed.count else { return invalidID }
            return .integer(ctx.database.modifyValue(at: index) { _ in stream.acknowledge(group, ids) })
        }
    }

    // MARK: - XPENDING

    static func xpending(_ call: CommandCall) {
        let argc = call.args.count
        guard argc == 3 || (argc >= 6 && argc <= 9) else { return call.reply(.syntaxError) }
        var start = StreamID.zero, end = StreamID.max
        var count: Int64 = 0
        var minIdle: Int64 = 0
        var consumerName: [UInt8]? = nil
        if argc >= 6 {
            var at = 3
            if call.isArg(3, "idle") {
                guard let idle = call.integer(4) else { return call.reply(.notInteger) }
                minIdle = idle
                guard argc >= 8 else { return call.reply(.syntaxError) }
                at += 2
            }
            guard let c = call.integer(at + 2) else { return call.reply(.notInteger) }
            count = max(c, 0)
            guard let s = intervalID(call, at, missingSeq: 0, start: true),
                  let e = intervalID(call, at + 1, missingSeq: .max, start: false) else { return }
            start = s
            end = e
            if at + 3 < argc { consumerName = call.args.bytes(at + 3) }
        }
        let key = call.key(1)
        let name = call.args.bytes(2)
        call.runOnKey(key, mode: .shared) { ctx in
            let group: StreamGroup
            switch findGroup(&ctx, key, name, write: false) {
            case .failure(let error): return error.reply
            case .success(let found): group = found.2
            }
            if argc == 3 {
                guard let first = group.pel.ids.first, let last = group.pel.ids.last else {
                    return .array([.integer(0), .null, .null, .nullArray])
                }
                let owners = group.consumers.filter { !$0.pel.isEmpty }.map {
                    Reply.array([.bulk($0.name), .bulkString(String($0.pel.count))])
                }
                return .array([.integer(group.pel.count), idReply(first), idReply(last), .array(owners)])
            }
            var out: [Reply] = []
            let ids: ContiguousArray<StreamID>
            if let consumerName {
                guard let consumer = group.consumer(consumerName) else { return .array([]) }
                ids = consumer.pel.ids
            } else {
                ids = group.pel.ids
            }
            var i = ids.firstIndex { $0 >= start } ?? ids.count
            var left = count
            while left > 0 && i < ids.count && ids[i] <= end {
                let id = ids[i]
                i += 1
                guard let nack = group.pel[id] else { continue }
                let idle = ctx.nowMs - nack.deliveryTime
                if minIdle != 0 && idle < minIdle { continue }
                left -= 1
                out.append(.array([idReply(id), .bulk(nack.consumer?.name ?? []), .integer(Int(max(idle, 0))), .integer(Int(nack.deliveryCount))]))
            }
            return .array(out)
        }
    }

    // MARK: - XCLAIM / XAUTOCLAIM

    static func xclaim(_ call: CommandCall) {
        let argc = call.args.count
        let key = call.key(1)
        let name = call.args.bytes(2)
        let consumerName = call.args.bytes(3)
        let minIdleArg = call.integer(4)
        // IDs run until the first argument that is not one; options follow.
        var ids: [StreamID] = []
        var j = 5
        while j < argc, let parsed = StreamID.parse(call.args[j], strict: true) {
            ids.append(parsed.id)
            j += 1
        }
        let optionsAt = j
        let rawOptions = (optionsAt..<argc).map { call.args.bytes($0) }
        let journaling = call.engine.journaling
        runStreamWrite(call, key) { ctx in
            ctx.markBookkeepingOnly()
            let stream: StreamValue, group: StreamGroup, index: EntryIndex
            switch findGroup(&ctx, key, name, write: true) {
            case .failure(let error): return error.reply
            case .success(let found): (index, stream, group) = found
            }
            guard let minIdle = minIdleArg else { return .error("ERR Invalid min-idle-time argument for XCLAIM") }
            var options = StreamValue.ClaimOptions()
            options.minIdle = max(minIdle, 0)
            var lastID = StreamID.zero
            var k = 0
            while k < rawOptions.count {
                let opt = String(decoding: rawOptions[k], as: UTF8.self)
                let more = k + 1 < rawOptions.count
                let lower = opt.lowercased()
                func number(_ what: String) -> Int64? {
                    rawOptions[k + 1].withUnsafeBytes { RedisNumber.parseInt64($0) }
                }
                switch lower {
                case "force": options.force = true
                case "justid": options.justID = true
                case "idle" where more, "time" where more, "retrycount" where more:
                    guard let n = number(lower) else {
                        return .error("ERR Invalid \(lower.uppercased()) option argument for XCLAIM")
                    }
                    switch lower {
                    case "idle": options.deliveryTime = ctx.nowMs - n
                    case "time": options.deliveryTime = n
                    default: options.retryCount = n
                    }
                    k += 1
                case "lastid" where more:
                    guard let parsed = rawOptions[k + 1].withUnsafeBytes({ StreamID.parse($0, strict: true) }) else { return invalidID }
                    lastID = parsed.id
                    k += 1
                default:
                    return .error("ERR Unrecognized XCLAIM option '\(opt)'")
                }
                k += 1
            }
            if let t = options.deliveryTime, t < 0 || t > ctx.nowMs { options.deliveryTime = ctx.nowMs }
            let consumerExisted = group.consumer(consumerName) != nil
            defer { notifyConsumerCreated(&ctx, key, group, consumerName, existed: consumerExisted) }
            return ctx.database.modifyValue(at: index) { _ in
                if group.lastID < lastID { group.lastID = lastID }
                let pendingBefore = journaling ? Set(ids.filter { group.pel[$0] != nil }) : []
                let claimed = stream.claim(group, consumerName: consumerName, ids: ids, options: options, nowMs: ctx.nowMs)
                if journaling {
                    let claimedIDs = Set(claimed.map(\.0))
                    for id in ids where claimedIDs.contains(id) || (pendingBefore.contains(id) && group.pel[id] == nil) {
                        journalClaim(ctx, key, group, consumer: consumerName, id, group.pel[id])
                    }
                }
                return .array(claimed.map { options.justID ? idReply($0.0) : entryReply($0.0, $0.1) })
            }
        }
    }

    /// XCLAIM and XAUTOCLAIM create their consumer when they claim something for it: Redis
    /// then sends `xgroup-createconsumer`.
    static func notifyConsumerCreated(_ ctx: inout ShardContext, _ key: KeyRef, _ group: StreamGroup, _ name: [UInt8], existed: Bool) {
        if !existed, group.consumer(name) != nil { ctx.notify(.stream, "xgroup-createconsumer", key) }
    }

    static func xautoclaim(_ call: CommandCall) {
        let argc = call.args.count
        guard let minIdle = call.integer(4) else {
            return call.reply(.error("ERR Invalid min-idle-time argument for XAUTOCLAIM"))
        }
        guard let start = intervalID(call, 5, missingSeq: 0, start: true) else { return }
        var count = 100
        var justID = false
        var j = 6
        while j < argc {
            if call.isArg(j, "count") && j + 1 < argc {
                guard let n = call.integer(j + 1), n >= 1, n <= Int64.max / 16 else {
                    return call.reply(.error("ERR COUNT must be > 0"))
                }
                count = Int(n)
                j += 2
            } else if call.isArg(j, "justid") {
                justID = true
                j += 1
            } else {
                return call.reply(.syntaxError)
            }
        }
        let key = call.key(1)
        let name = call.args.bytes(2)
        let consumerName = call.args.bytes(3)
        runStreamWrite(call, key) { ctx in
            ctx.markBookkeepingOnly()
            let stream: StreamValue, group: StreamGroup, index: EntryIndex
            switch findGroup(&ctx, key, name, write: true) {
            case .failure(let error): return error.reply
            case .success(let found): (index, stream, group) = found
            }
            let consumerExisted = group.consumer(consumerName) != nil
            defer { notifyConsumerCreated(&ctx, key, group, consumerName, existed: consumerExisted) }
            return ctx.database.modifyValue(at: index) { _ in
                let result = stream.autoClaim(
                    group, consumerName: consumerName, minIdle: max(minIdle, 0), start: start, limit: count, justID: justID, nowMs: ctx.nowMs)
                for id in result.deleted { journalClaim(ctx, key, group, consumer: consumerName, id, nil) }
                for (id, _) in result.claimed { journalClaim(ctx, key, group, consumer: consumerName, id, group.pel[id]) }
                return .array([
                    idReply(result.cursor),
                    .array(result.claimed.map { justID ? idReply($0.0) : entryReply($0.0, $0.1) }),
                    .array(result.deleted.map(idReply)),
                ])
            }
        }
    }
}
