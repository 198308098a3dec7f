import DamselflyCommands
import DamselflyRESP
import DamselflyRuntime

/// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE, their UNSUBSCRIBEs, PUBLISH, SPUBLISH, PUBSUB.
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
            subscribe(call, server: server, kind: .channel)
        }
        r.register("psubscribe", arity: -2, flags: [.loading, .stale, .noscript], group: g) { call in
            subscribe(call, server: server, kind: .pattern)
        }
        r.register("ssubscribe", arity: -2, flags: [.loading, .stale, .noscript], group: g) { call in
            // Redis 7.0 refuses it inside MULTI (a DENY BLOCKING client), unlike SUBSCRIBE.
            if call.sink is ExecRunner { return call.reply(.error("ERR SSUBSCRIBE isn't allowed for a DENY BLOCKING client")) }
            subscribe(call, server: server, kind: .shardChannel)
        }
        r.register("unsubscribe", arity: -1, flags: [.loading, .stale, .noscript], group: g) { call in
            unsubscribe(call, server: server, kind: .channel)
        }
        r.register("punsubscribe", arity: -1, flags: [.loading, .stale, .noscript], group: g) { call in
            unsubscribe(call, server: server, kind: .pattern)
        }
        r.register("sunsubscribe", arity: -1, flags: [.loading, .stale, .noscript], group: g) { call in
            unsubscribe(call, server: server, kind: .shardChannel)
        }
        r.register("spublish", arity: 3, flags: [.loading, .stale, .fast], group: g) { call in
            answerPublish(call) { server.pubsub.publishSharded(channel: call.args.bytes(1), message: call.args.bytes(2), from: $0, done: $1) }
        }
        r.register("publish", arity: 3, flags: [.loading, .stale, .fast], group: g) { call in
            answerPublish(call) { server.pubsub.publish(channel: call.args.bytes(1), message: call.args.bytes(2), from: $0, done: $1) }
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
                let pattern = call.args.count == 3 ? call.args.bytes(2) : nil
                call.reply(.array(server.pubsub.channels(matching: pattern, kind: .shardChannel).map { .bulk($0) }))
            case "shardnumsub":
                call.reply(.array((2..<max(call.args.count, 2)).flatMap {
                    [Reply.bulk(call.args.bytes($0)), .integer(server.pubsub.subscriberCount(call.args.bytes($0), kind: .shardChannel))]
                }))
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
    /// PUBLISH and SPUBLISH answer with the receiver count once every
    /// subscriber has the message; from a script, which cannot wait for other
    /// threads, at once. `publish` gets the loop to answer on and the answer.
    static func answerPublish(_ call: CommandCall, _ publish: (EventLoop?, ((Int) -> Void)?) -> Int) {
        if call.script != nil { return call.reply(.integer(publish(nil, nil))) }
        _ = publish(call.loop) { call.reply(.integer($0)) }
    }

    static func connection(of call: CommandCall) -> Connection? {
        call.sink as? Connection ?? (call.sink as? ExecRunner)?.connection
    }

    /// The confirmation verb of each kind.
    static func verb(_ kind: SubscriptionKind, subscribe: Bool) -> String {
        let base: String
        switch kind {
        case .channel: base = "subscribe"
        case .pattern: base = "psubscribe"
        case .shardChannel: base = "ssubscribe"
        }
        guard !subscribe else { return base }
        return kind == .channel ? "un" + base : String(base.first!) + "un" + base.dropFirst()
    }

    /// The connection's names of one kind.
    static func names(_ connection: Connection, _ kind: SubscriptionKind) -> Set<[UInt8]> {
        switch kind {
        case .channel: return connection.channels
        case .pattern: return connection.patterns
        case .shardChannel: return connection.shardChannels
        }
    }

    /// Adds or removes one name of the connection's set; whether it changed.
    static func update(_ connection: Connection, _ name: [UInt8], _ kind: SubscriptionKind, insert: Bool) -> Bool {
        switch (kind, insert) {
        case (.channel, true): return connection.channels.insert(name).inserted
        case (.pattern, true): return connection.patterns.insert(name).inserted
        case (.shardChannel, true): return connection.shardChannels.insert(name).inserted
        case (.channel, false): return connection.channels.remove(name) != nil
        case (.pattern, false): return connection.patterns.remove(name) != nil
        case (.shardChannel, false): return connection.shardChannels.remove(name) != nil
        }
    }

    /// The count a confirmation carries: Redis 7 counts shard channels apart from
    /// channels and patterns, which share one count.
    static func confirmationCount(_ connection: Connection, _ kind: SubscriptionKind) -> Int {
        kind == .shardChannel ? connection.shardChannels.count : connection.channels.count + connection.patterns.count
    }

    /// SUBSCRIBE / PSUBSCRIBE / SSUBSCRIBE: one confirmation per name.
    static func subscribe(_ call: CommandCall, server: Server, kind: SubscriptionKind) {
        guard let connection = connection(of: call) else { return call.reply(.error("ERR not a client connection")) }
        var out = ReplyBuilder(protocolVersion: call.client.protocolVersion, capacity: 64)
        for i in 1..<call.args.count {
            let name = call.args.bytes(i)
            if update(connection, name, kind, insert: true) { server.pubsub.subscribe(connection, name, kind: kind) }
            confirmation(&out, verb(kind, subscribe: true), name, confirmationCount(connection, kind))
        }
        call.reply(.raw(out.buffer))
    }

    /// UNSUBSCRIBE / PUNSUBSCRIBE / SUNSUBSCRIBE: the named channels (patterns), or all of
    /// them; one confirmation each (one with a null name when there were none).
    static func unsubscribe(_ call: CommandCall, server: Server, kind: SubscriptionKind) {
        guard let connection = connection(of: call) else { return call.reply(.error("ERR not a client connection")) }
        let verb = verb(kind, subscribe: false)
        var out = ReplyBuilder(protocolVersion: call.client.protocolVersion, capacity: 64)
        let targets = call.args.count > 1 ? (1..<call.args.count).map { call.args.bytes($0) } : Array(names(connection, kind))
        if targets.isEmpty { confirmation(&out, verb, nil, confirmationCount(connection, kind)) }
        for name in targets {
            if update(connection, name, kind, insert: false) { server.pubsub.unsubscribe(connection, name, kind: kind) }
            confirmation(&out, verb, name, confirmationCount(connection, kind))
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
