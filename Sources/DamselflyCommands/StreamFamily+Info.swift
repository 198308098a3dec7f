import DamselflyStorage
import DamselflyTransactions

/// XINFO STREAM [FULL [COUNT n]], XINFO GROUPS, XINFO CONSUMERS.
extension StreamFamily {
    static let infoSubcommands: [String: Int] = ["stream": -3, "groups": 3, "consumers": 4, "help": 2]

    static func xinfo(_ call: CommandCall) {
        let sub = call.args.string(1).lowercased()
        guard let arity = infoSubcommands[sub] else {
            return call.reply(.error("ERR unknown subcommand '\(call.args.subcommandName(1))'. Try XINFO HELP."))
        }
        let argc = call.args.count
        guard arity >= 0 ? argc == arity : argc >= -arity else {
            return call.reply(.error("ERR wrong number of arguments for 'xinfo|\(sub)' command"))
        }
        if sub == "help" {
            return call.reply(.array([
                "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CONSUMERS <key> <groupname>",
                "    Show consumers of <groupname>.",
                "GROUPS <key>",
                "    Show the stream consumer groups.",
                "STREAM <key> [FULL [COUNT <count>]",
                "    Show information about the stream.",
                "HELP",
                "    Prints this help.",
            ].map { .simple($0) }))
        }
        let subSyntax = Reply.error("ERR unknown subcommand or wrong number of arguments for '\(call.args.subcommandName(1))'. Try XINFO HELP.")
        let key = call.key(2)
        let groupName = argc > 3 ? call.args.bytes(3) : []
        // XINFO STREAM's options, checked once the key is found.
        var full = false
        var count: Int64 = 10
        var optionError: Reply? = nil
        if sub == "stream" && argc > 3 {
            full = true
            if (argc != 4 && argc != 6) || !call.isArg(3, "full") || (argc == 6 && !call.isArg(4, "count")) {
                optionError = subSyntax
            } else if argc == 6 {
                if let n = call.integer(5) { count = n < 0 ? 10 : n } else { optionError = .notInteger }
            }
        }
        call.runOnKey(key, mode: .shared) { ctx in
            let stream: StreamValue
            switch ctx.lookup(key, write: false, as: value) {
            case .missing: return .error("ERR no such key")
            case .wrongType: return .wrongType
            case .found(_, let s): stream = s
            }
            switch sub {
            case "consumers":
                guard let group = stream.group(groupName) else {
                    return .error("NOGROUP No such consumer group '\(String(decoding: groupName, as: UTF8.self))' for key name '\(String(decoding: key.bytes, as: UTF8.self))'")
                }
                return .array(group.consumers.map { c in
                    .map([
                        (.bulkString("name"), .bulk(c.name)),
                        (.bulkString("pending"), .integer(c.pel.count)),
                        (.bulkString("idle"), .integer(Int(max(ctx.nowMs - c.seenTime, 0)))),
                    ])
                })
            case "groups":
                return .array(stream.groups.map { g in
                    .map([
                        (.bulkString("name"), .bulk(g.name)),
                        (.bulkString("consumers"), .integer(g.consumers.count)),
                        (.bulkString("pending"), .integer(g.pel.count)),
                        (.bulkString("last-delivered-id"), idReply(g.lastID)),
                        (.bulkString("entries-read"), g.entriesRead == StreamGroup.invalidEntriesRead ? .null : .integer(Int(g.entriesRead))),
                        (.bulkString("lag"), stream.lag(g).map { .integer(Int($0)) } ?? .null),
                    ])
                })
            default:
                if let optionError { return optionError }
                return streamInfo(stream, full: full, count: Int(count))
            }
        }
    }

    static func streamInfo(_ stream: StreamValue, full: Bool, count: Int) -> Reply {
        var pairs: [(Reply, Reply)] = [
            (.bulkString("length"), .integer(stream.count)),
            (.bulkString("radix-tree-keys"), .integer(stream.nodeCount)),
            // A radix tree of big-endian IDs has roughly one inner node per key plus a root.
            (.bulkString("radix-tree-nodes"), .integer(stream.nodeCount + 1)),
            (.bulkString("last-generated-id"), idReply(stream.lastID)),
            (.bulkString("max-deleted-entry-id"), idReply(stream.maxDeletedID)),
            (.bulkString("entries-added"), .integer(Int(stream.entriesAdded))),
            (.bulkString("recorded-first-entry-id"), idReply(stream.firstID)),
        ]
        if !full {
            let first = stream.range(.zero, .max, limit: 1).first
            let last = stream.range(.zero, .max, limit: 1, reverse: true).first
            pairs.append((.bulkString("groups"), .integer(stream.groups.count)))
            pairs.append((.bulkString("first-entry"), first.map { entryReply($0.id, $0.fields) } ?? .null))
            pairs.append((.bulkString("last-entry"), last.map { entryReply($0.id, $0.fields) } ?? .null))
            return .map(pairs)
        }
        pairs.append((.bulkString("entries"), entriesReply(stream.range(.zero, .max, limit: count))))
        let limit = count == 0 ? Int.max : count
        pairs.append((.bulkString("groups"), .array(stream.groups.map { g in
            .map([
                (.bulkString("name"), .bulk(g.name)),
                (.bulkString("last-delivered-id"), idReply(g.lastID)),
                (.bulkString("entries-read"), g.entriesRead == StreamGroup.invalidEntriesRead ? .null : .integer(Int(g.entriesRead))),
                (.bulkString("lag"), stream.lag(g).map { .integer(Int($0)) } ?? .null),
                (.bulkString("pel-count"), .integer(g.pel.count)),
                (.bulkString("pending"), .array(zip(g.pel.ids, g.pel.values).prefix(limit).map { id, nack in
                    .array([idReply(id), .bulk(nack.consumer?.name ?? []), .integer(Int(nack.deliveryTime)), .integer(Int(nack.deliveryCount))])
                })),
                (.bulkString("consumers"), .array(g.consumers.map { c in
                    .map([
                        (.bulkString("name"), .bulk(c.name)),
                        (.bulkString("seen-time"), .integer(Int(c.seenTime))),
                        (.bulkString("pel-count"), .integer(c.pel.count)),
                        (.bulkString("pending"), .array(c.pel.ids.prefix(limit).map { id in
                            let nack = g.pel[id]
                            return .array([idReply(id), .integer(Int(nack?.deliveryTime ?? 0)), .integer(Int(nack?.deliveryCount ?? 0))])
                        })),
                    ])
                })),
            ])
        })))
        return .map(pairs)
    }
}
