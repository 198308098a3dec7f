import DamselflyCommands
import DamselflyRuntime

/// SYNC, PSYNC, REPLCONF, ROLE and WAIT: the master side of Redis's
/// replication protocol (see ReplicationMaster and ReplicationFeed).
enum ReplicationFamily {
    static func register(_ r: CommandRegistry, server: Server) {
        let g = "server"
        let master: ReplicationMaster = server.replication
        r.register("sync", arity: 1, flags: [.admin, .noscript, .noMulti], group: g) { call in
            attach(call, server: server, psync: nil)
        }
        r.register("psync", arity: -3, flags: [.admin, .noscript, .noMulti], group: g) { call in
            // Redis 7 replicas send `PSYNC <replid|?> <offset|-1>`.
            let offset = Int(call.args.string(2)) ?? -1
            attach(call, server: server, psync: (call.args.string(1), offset))
        }
        r.register("replconf", arity: -1, flags: [.admin, .noscript, .loading, .stale], group: g) { call in
            guard call.args.count % 2 == 1 else { return call.reply(.syntaxError) }
            let client = call.client.id
            var i = 1
            while i < call.args.count {
                let option = call.args.string(i).lowercased()
                let value = call.args.string(i + 1)
                switch option {
                case "listening-port":
                    guard let port = Int(value) else { return call.reply(.error("ERR value is not an integer or out of range")) }
                    master.rememberSetting(client: client, port: port)
                case "ip-address", "rdb-only", "rdb-filter-only":
                    break
                case "capa":
                    if value.lowercased() == "eof" { master.rememberSetting(client: client, capaEOF: true) }
                case "ack":
                    // Replicas' acknowledgements get no reply.
                    if let offset = Int(value), let link = (call.sink as? Connection)?.replicaLink, let feed = master.feed {
                        feed.acknowledge(link, offset: offset)
                    }
                    return call.reply(.none)
                case "getack":
                    // Only a master's request to its replica; a master ignores it.
                    return call.reply(.none)
                default:
                    return call.reply(.error("ERR Unrecognized REPLCONF option: \(printfText(call.args.bytes(i)))"))
                }
                i += 2
            }
            call.reply(.ok)
        }
        for name in ["replicaof", "slaveof"] {
            r.register(name, arity: 3, flags: [.admin, .noscript, .stale], group: g) { call in
                replicaOf(call, server: server)
            }
        }
        r.register("role", arity: 1, flags: [.noscript, .loading, .stale, .fast], group: g) { call in
            call.reply(master.role())
        }
        r.register("wait", arity: 3, flags: [.noscript], group: "generic") { call in
            guard let needed = call.integer(1), let timeout = call.integer(2) else { return call.reply(.notInteger) }
            guard timeout >= 0 else { return call.reply(.error("ERR timeout is negative")) }
            if call.insideExec {
                // Inside MULTI Redis answers at once with what is acknowledged.
                let feed = master.feed
                return call.reply(.integer(feed.map { $0.replicasAcknowledging($0.offset) } ?? 0))
            }
            let loop = call.loop
            master.wait(needed: Int(needed), timeoutMs: Int(timeout), on: loop) { count in
                call.reply(.integer(count))
            }
        }
    }

    /// REPLICAOF host port / REPLICAOF NO ONE, with Redis 7.0's replies.
    private static func replicaOf(_ call: CommandCall, server: Server) {
        let replica = server.replication.replica
        if call.isArg(1, "no") && call.isArg(2, "one") {
            server.configState.withLock { $0.replicaof = "" }
            return replica.promote(from: call.loop) { call.reply(.ok) }
        }
        if (call.sink as? Connection)?.replicaLink != nil {
            return call.reply(.error("ERR Command is not valid when client is a replica."))
        }
        guard let port = call.integer(2), port >= 0, port <= 65535 else {
            return call.reply(.error("ERR Invalid master port"))
        }
        let host = call.args.string(1)
        if replica.follow(host: host, port: Int(port)) {
            // What CONFIG REWRITE writes: a replica Sentinel reconfigured restarts as one.
            server.configState.withLock { $0.replicaof = "\(host):\(port)" }
            call.reply(.ok)
        } else {
            call.reply(.simple("OK Already connected to specified master"))
        }
    }

    /// SYNC / PSYNC: the connection becomes a replica link; a partial resync
    /// continues from the backlog, anything else gets a full sync.
    private static func attach(_ call: CommandCall, server: Server, psync: (replid: String, offset: Int)?) {
        guard let connection = call.sink as? Connection else {
            return call.reply(.error("ERR SYNC and PSYNC are only valid on a client connection"))
        }
        if connection.replicaLink != nil { return call.reply(.none) }
        let master: ReplicationMaster = server.replication
        let link = ReplicaLink(connection: connection)
        let settings = master.control.withLock { $0.settings[connection.client.id] }
        link.listeningPort = settings?.port ?? 0
        link.capaEOF = settings?.capaEOF ?? false
        link.legacySync = psync == nil
        connection.replicaLink = link
        connection.onClose = { [weak link] in
            master.forget(client: connection.client.id)
            if let link, let feed = master.feed { feed.remove(link) }
        }
        call.reply(.none)
        let loop = call.loop
        master.activate(from: loop) {
            guard let feed = master.feed, !connection.isClosed else { return }
            if let psync, feed.tryContinue(link, replid: psync.replid, offset: psync.offset) { return }
            master.fullSync(link, feed: feed, from: loop)
        }
    }
}
