import CDamselfly
import DamselflyCommands
import DamselflyRESP
import DamselflyRuntime
import DamselflyStorage
import DamselflyTransactions
import Glibc

/// Server commands: INFO, CONFIG, COMMAND, TIME, LASTSAVE, SHUTDOWN, SLOWLOG
/// (DEBUG, MEMORY and LATENCY have their own files).
enum ServerFamily {
    static func register(_ r: CommandRegistry, server: Server) {
        let g = "server"
        r.register("info", arity: -1, flags: [.loading, .stale], group: g) { call in
            let sections = (1..<call.args.count).map { call.args.string($0).lowercased() }
            InfoReport.build(server: server, from: call.loop, sections: sections) { text in
                call.reply(.verbatim(text))
            }
        }
        r.register("config", arity: -2, flags: [.admin, .noscript, .loading, .stale], group: g) { call in
            config(call, server: server)
        }
        r.register("command", arity: -1, flags: [.loading, .stale], group: g) { call in
            CommandDocs.command(call)
        }
        r.register("time", arity: 1, flags: [.loading, .stale, .fast], group: g) { call in
            let now = Clock.wallMicros()
            call.reply(.array([.bulkString(String(now / 1_000_000)), .bulkString(String(now % 1_000_000))]))
        }
        r.register("lastsave", arity: 1, flags: [.loading, .stale, .fast], group: g) { call in
            call.reply(.integer(Int(server.snapshots.lastSaveTime)))
        }
        r.register("shutdown", arity: -1, flags: [.admin, .noscript, .loading, .stale, .noMulti], group: g) { call in
            var save: Bool? = nil
            for i in 1..<call.args.count {
                if call.isArg(i, "nosave") { save = false }
                else if call.isArg(i, "save") { save = true }
                else if !(call.isArg(i, "now") || call.isArg(i, "force") || call.isArg(i, "abort")) {
                    return call.reply(.syntaxError)
                }
            }
            // Redis does not reply to a successful SHUTDOWN: the connection just closes.
            call.client.closeRequested = true
            server.requestShutdown(save: save)
            call.reply(.none)
        }
        r.register("slowlog", arity: -2, flags: [.admin, .loading, .stale], group: g) { call in
            if call.isArg(1, "len") && call.args.count == 2 { return call.reply(.integer(server.slowlog.length)) }
            if call.isArg(1, "reset") && call.args.count == 2 { server.slowlog.reset(); return call.reply(.ok) }
            if call.isArg(1, "get") && call.args.count <= 3 {
                var count: Int? = nil
                if call.args.count == 3 {
                    guard let n = call.integer(2), n >= -1 else {
                        return call.reply(.error("ERR count should be greater than or equal to -1"))
                    }
                    count = n == -1 ? Int.max : Int(n)
                }
                let entries = server.slowlog.get(count)
                return call.reply(.array(entries.map { e in
                    .array([
                        .integer(e.id), .integer(e.timestamp), .integer(e.durationMicros),
                        .array(e.arguments.map { .bulk($0) }), .bulkString(e.clientAddress), .bulkString(e.clientName),
                    ])
                }))
            }
            call.reply(.error("ERR unknown subcommand or wrong number of arguments for '\(call.args.string(1))'. Try SLOWLOG HELP."))
        }
    }

    static func config(_ call: CommandCall, server: Server) {
        let sub = call.args.string(1).lowercased()
        switch sub {
        case "get" where call.args.count >= 3:
            let patterns = (2..<call.args.count).map { call.args.string($0) }
            let current = server.configState.withLock { $0 }
            let pairs = ConfigParameters.get(patterns, from: current)
            call.reply(.map(pairs.map { (.bulkString($0.0), .bulkString($0.1)) }))
        case "set" where call.args.count >= 4 && call.args.count % 2 == 0:
            var pairs: [(String, String)] = []
            var i = 2
            while i + 1 < call.args.count {
                pairs.append((call.args.string(i), call.args.string(i + 1)))
                i += 2
            }
            let result: (String?, ServerConfig) = server.configState.withLock { config in
                var updated = config
                if let error = ConfigParameters.set(pairs, in: &updated, localClient: call.client.isLocal) { return (error, config) }
                // A TLS setting takes effect by remaking the context; one that cannot be made
                // (a missing file, an encrypted key without its passphrase) changes nothing.
                if updated.tlsSettings != config.tlsSettings, !server.reloadTLS(updated),
                   let name = pairs.first(where: { $0.0.lowercased().hasPrefix("tls") })?.0
                {
                    return (ConfigParameters.failure(name, "Unable to update TLS configuration. Check server logs."), config)
                }
                config = updated
                return (nil, updated)
            }
            if let error = result.0 { return call.reply(.error(error)) }
            let updated = result.1
            server.engine.maxMemory.store(updated.maxmemory, ordering: .relaxed)
            server.latency.configure(updated)
            server.configureTracking(updated)
            server.replication.configure(updated)
            server.engine.scripts.settings.timeLimitMillis.store(updated.luaTimeLimit, ordering: .relaxed)
            server.engine.setRequirePass(updated.requirepass)
            server.slowlog.configure(thresholdMicros: updated.slowlogLogSlowerThan, maxLength: updated.slowlogMaxLen)
            server.limits.apply(updated)
            server.engine.maxBulkLengthSetting.store(updated.maxBulkLen, ordering: .relaxed)
            ConfigParameters.applyEncodingLimits(updated)
            let notifyFlags = KeyspaceEventClass.parse(updated.notifyKeyspaceEvents) ?? []
            // OK once every shard has the new limit (and evicted down to it) and the new
            // notification classes, so the next command finds room and notifies under them.
            call.shardSet.configureEviction(maxMemory: updated.maxmemory, settings: updated.evictionSettings, from: call.loop) {
                guard notifyFlags.rawValue != call.shardSet.keyspaceEvents.flags.load(ordering: .relaxed) else {
                    return call.reply(.ok)
                }
                call.shardSet.configureNotifications(notifyFlags, from: call.loop) { call.reply(.ok) }
            }
        case "set" where call.args.count >= 3:
            call.reply(.error("ERR syntax error"))
        case "resetstat" where call.args.count == 2:
            for shard in call.shardSet.shards { shard.evictedKeys.store(0, ordering: .relaxed) }
            call.engine.scripts.counters.reset()
            let specs = Array(call.engine.registry.commands.values)
            let shardSet = call.shardSet
            // Each loop's counters, and its shards', have that loop as their only
            // writer (``Atomic/addOwned(_:)``): reset there, or its next store
            // would put the old count back.
            server.gatherLoops(from: call.loop, { loop in
                for spec in specs {
                    spec.stats[loop.index].reset()
                    for sub in spec.subcommandStats.values { sub[loop.index].reset() }
                }
                shardSet.stats[loop.index].reset()
                // A shard lent to a script's thread resets when it is back: its
                // published figures are the borrower's to write meanwhile.
                for shard in shardSet.shards where shard.loop === loop { shard.whenAvailable { shard.resetStatistics() } }
                server.engine.loopCounters[loop.index].reset()
            }, done: { _ in
                call.reply(.ok)
            })
        case "rewrite" where call.args.count == 2:
            let current = server.configState.withLock { $0 }
            guard !current.flagfile.isEmpty else {
                return call.reply(.error("ERR The server is running without a config file"))
            }
            let text = ConfigParameters.flagfileText(current)
            guard let file = fopen(current.flagfile, "w") else {
                return call.reply(.error("ERR Rewriting config file: \(String(cString: strerror(errno)))"))
            }
            fputs(text, file)
            fclose(file)
            call.reply(.ok)
        case "help" where call.args.count == 2:
            call.reply(.array([
                "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET <pattern>", "    Return parameters matching the glob-like <pattern> and their values.",
                "SET <directive> <value>", "    Set the configuration <directive> to <value>.",
                "RESETSTAT", "    Reset statistics reported by the INFO command.",
                "REWRITE", "    Rewrite the configuration file.",
                "HELP", "    Print this help.",
            ].map { .simple($0) }))
        default:
            call.reply(.error("ERR unknown subcommand or wrong number of arguments for '\(call.args.string(1))'. Try CONFIG HELP."))
        }
    }
}
