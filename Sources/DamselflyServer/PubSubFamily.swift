import DamselflyCommands
import DamselflyRESP

/// SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE, PUNSUBSCRIBE, PUBLISH, PUBSUB.
enum PubSubFamily {
    /// What a RESP2 client may send while subscribed.
    static let allowedWhileSubscribed: Set<String> = [
        "subscribe", "psubscribe", "unsubscribe", "punsubscribe", "ssubscribe", "sunsubscribe", "ping", "quit", "reset",
    ]

    /// Commands whose confirmations are pushes: sent even under CLIENT REPLY OFF, as Redis.
    static let confirmsWithPush: Set<String> = [
        "subscribe", "psubscribe", "unsubscribe", "punsubscribe", "ssubscribe", "sunsubscribe",
    ]

    static func register(_ r: CommandRegistry, server: Server) {
        let g = "pubsub"
        r.register("subscribe", arity: -2, flags: [.loading, .stale, .noscript], group: g) { call in
            guard let connection = connection(of: call) else { return call.reply(.error("ERR not a client connection")) }
            var out = ReplyBuilder(protocolVersion: call.client.protocolVersion, capacity: 64)
            for i in 1..<call.args.count {
                let channel = call.args.bytes(i)
                if connection.channels.insert(channel).inserted { server.pubsub.subscribe(connection, channel: channel) }
                confirmation(&out, "subscribe", channel, connection.subscriptionCount)
            }
            call.reply(.raw(out.buffer))
        }
        r.register("psubscribe", arity: -2, flags: [.loading, .stale, .noscript], group: g) { call in
            guard let connection = connection(of: call) else { return call.reply(.error("ERR not a client connection")) }
            var out = ReplyBuilder(protocolVersion: call.client.protocolVersion, capacity: 64)
            for i in 1..<call.args.count {
                let pattern = call.args.bytes(i)
                if connection.patterns.insert(pattern).inserted { server.pubsub.psubscribe(connection, pattern: pattern) }
                confirmation(&out, "psubscribe", pattern, connection.subscriptionCount)
            }
            call.reply(.raw(out.buffer))
        }
        r.register("unsubscribe", arity: -1, flags: [.loading, .stale, .noscript], group: g) { call in
            unsubscribe(call, server: server, patterns: false)
        }
        r.register("punsubscribe", arity: -1, flags: [.loading, .stale, .noscript], group: g) { call in
            unsubscribe(call, server: server, patterns: true)
        }
        r.register("publish", arity: 3, flags: [.loading, .stale, .fast], group: g) { call in
            call.reply(.integer(server.pubsub.publish(channel: call.args.bytes(1), message: call.args.bytes(2))))
        }
        r.register("pubsub", arity: -2, flags: [.loading, .stale], group: g) { call in
            switch call.args.string(1).lowercased() {
            case "channels" where call.args.count <= 3:
                let pattern = call.args.count == 3 ? call.args.bytes(2) : nil
                call.reply(.array(server.pubsub.channels(matching: pattern).map { .bulk($0) }))
            case "numsub":
                var pairs: [Reply] = []
                for i in 2..<max(call.args.count, 2) {
                    let channel = call.args.bytes(i)
                    pairs.append(.bulk(channel))
                    pairs.append(.integer(server.pubsub.subscriberCount(channel)))
                }
                call.reply(.array(pairs))
            case "numpat" where call.args.count == 2:
                call.reply(.integer(server.pubsub.patternCount))
            case "numpat":
                // Redis checks NUMPAT's arity in its command table; CHANNELS
                // (arity -2) fails inside the handler with the generic text.
                call.reply(.error("ERR wrong number of arguments for 'pubsub|numpat' command"))
            case "shardchannels" where call.args.count <= 3:
                // No sharded channels (SSUBSCRIBE) yet: none is ever active.
                call.reply(.array([]))
            case "shardnumsub":
                call.reply(.array((2..<max(call.args.count, 2)).flatMap { [Reply.bulk(call.args.bytes($0)), .integer(0)] }))
            case "help" where call.args.count == 2:
                call.reply(.array(PubSubFamily.helpLines.map { .simple($0) }))
            case "help":
                call.reply(.error("ERR wrong number of arguments for 'pubsub|help' command"))
            case "channels", "shardchannels":
                call.reply(.error("ERR unknown subcommand or wrong number of arguments for '\(call.args.string(1))'. Try PUBSUB HELP."))
            default:
                call.reply(.error("ERR unknown subcommand '\(call.args.string(1))'. Try PUBSUB HELP."))
            }
        }
    }

    static let helpLines = [
        "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CHANNELS [<pattern>]",
        "    Return the currently active channels matching a <pattern> (default: '*').",
        "NUMPAT",
        "    Return number of subscriptions to patterns.",
        "NUMSUB [<channel> ...]",
        "    Return the number of subscribers for the specified channels, excluding",
        "    pattern subscriptions(default: no channels).",
        "SHARDCHANNELS [<pattern>]",
        "    Return the currently active shard level channels matching a <pattern> (default: '*').",
        "SHARDNUMSUB [<shardchannel> ...]",
        "    Return the number of subscribers for the specified shard level channel(s)",
        "HELP",
        "    Prints this help.",
    ]

    /// The client's connection: the reply sink, or inside EXEC the sink of
    /// the EXEC itself (Redis runs (P)(UN)SUBSCRIBE queued in MULTI).
    static func connection(of call: CommandCall) -> Connection? {
        call.sink as? Connection ?? (call.sink as? ExecRunner)?.connection
    }

    /// UNSUBSCRIBE / PUNSUBSCRIBE: the named channels (patterns), or all of
    /// them; one confirmation each (one with a null name when there were none).
    static func unsubscribe(_ call: CommandCall, server: Server, patterns: Bool) {
        guard let connection = connection(of: call) else { return call.reply(.error("ERR not a client connection")) }
        let kind = patterns ? "punsubscribe" : "unsubscribe"
        var out = ReplyBuilder(protocolVersion: call.client.protocolVersion, capacity: 64)
        let current = patterns ? connection.patterns : connection.channels
        let targets = call.args.count > 1 ? (1..<call.args.count).map { call.args.bytes($0) } : Array(current)
        if targets.isEmpty { confirmation(&out, kind, nil, connection.subscriptionCount) }
        for name in targets {
            if patterns {
                if connection.patterns.remove(name) != nil { server.pubsub.punsubscribe(connection, pattern: name) }
            } else {
                if connection.channels.remove(name) != nil { server.pubsub.unsubscribe(connection, channel: name) }
            }
            confirmation(&out, kind, name, connection.subscriptionCount)
        }
        call.reply(.raw(out.buffer))
    }

    /// One (p)(un)subscribe confirmation: a push under RESP3, an array under RESP2.
    static func confirmation(_ out: inout ReplyBuilder, _ kind: String, _ name: [UInt8]?, _ count: Int) {
        out.pushHeader(3)
        out.bulk(kind)
        if let name { out.bulk(name) } else { out.null() }
        out.integer(count)
    }
}
