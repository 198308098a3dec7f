import DamselflyACL
import DamselflyCommands
import DamselflyRESP
import DamselflyRuntime

/// Connection commands: PING, ECHO, HELLO, AUTH, SELECT, QUIT, RESET, CLIENT.
/// They touch only the client's own state (or, for CLIENT LIST/KILL, hop to
/// every loop), so they never enter the transaction framework.
enum ConnectionFamily {
    /// The Redis version Damselfly claims (HELLO, INFO, Lua's REDIS_VERSION): 7.0.15, whose
    /// behaviour, reply shapes and error texts are the specification. Clients switch
    /// features on by this number (redis-py sends ZRANK ... WITHSCORE to 7.2), so it must not
    /// name a version whose additions Damselfly lacks.
    static let helloVersion = "7.0.15"

    static func register(_ r: CommandRegistry, server: Server) {
        let g = "connection"
        r.register("ping", arity: -1, flags: [.fast], group: g) { call in
            if call.client.protocolVersion == 2, let connection = call.sink as? Connection, connection.subscriptionCount > 0 {
                // Subscribed RESP2 clients get PING's reply in the pub/sub shape.
                guard call.args.count <= 2 else { return call.reply(call.arityError) }
                return call.reply(.array([.bulkString("pong"), .bulk(call.args.count == 2 ? call.args.bytes(1) : [])]))
            }
            switch call.args.count {
            case 1: call.reply(.simple("PONG"))
            case 2: call.reply(.bulk(call.args.bytes(1)))
            default: call.reply(call.arityError)
            }
        }
        r.register("echo", arity: 2, flags: [.loading, .stale, .fast], group: g) { call in call.reply(.bulk(call.args.bytes(1))) }
        r.register("select", arity: 2, flags: [.fast, .loading, .stale], group: g) { call in
            guard let n = call.int32OrReply(1) else { return }
            // Redis Cluster has database 0 only; cluster clients never SELECT.
            if n != 0 && server.clusterEmulated { return call.reply(.error("ERR SELECT is not allowed in cluster mode")) }
            guard n >= 0 && n < call.engine.databaseCount else { return call.reply(.outOfRangeDB) }
            call.client.database = n
            call.reply(.ok)
        }
        r.register("quit", arity: -1, flags: [.noAuth, .fast, .loading, .stale, .noscript], group: g) { call in
            call.client.closeRequested = true
            call.reply(.ok)
        }
        r.register("reset", arity: 1, flags: [.noAuth, .fast, .loading, .stale, .noscript], group: g) { call in
            let client = call.client
            client.database = 0
            client.protocolVersion = 2
            client.name = ""
            client.noEvict = false
            client.noTouch = false
            client.user = call.engine.acl.defaultUser
            client.authenticated = call.engine.defaultUserNeedsNoAuth
            client.multiQueue = nil
            client.multiFailed = false
            MultiFamily.unwatch(client, shardSet: call.shardSet)
            TrackingFamily.disable(client, server: server)
            (call.sink as? Connection)?.dropSubscriptions()
            (call.sink as? Connection)?.stopMonitoring()
            call.reply(.simple("RESET"))
        }
        r.register("auth", arity: -2, flags: [.noAuth, .fast, .loading, .stale, .noscript], group: g) { call in
            guard call.args.count <= 3 else { return call.reply(.syntaxError) }
            if call.args.count == 2 && call.engine.acl.defaultUser.user.noPass {
                return call.reply(.error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"))
            }
            let user = call.args.count == 3 ? call.args.string(1) : "default"
            if authenticate(call, user: user, password: call.args.bytes(call.args.count - 1)) {
                call.reply(.ok)
            } else {
                call.reply(.error("WRONGPASS invalid username-password pair or user is disabled."))
            }
        }
        r.register("hello", arity: -1, flags: [.noAuth, .fast, .loading, .stale, .noscript], group: g) { call in
            hello(call, mode: server.clusterEmulated ? "cluster" : "standalone")
        }
        r.register("client", arity: -2, flags: [.admin, .noscript, .loading, .stale], group: g) { call in
            client(call, server: server)
        }
    }

    /// AUTH / HELLO AUTH: on success the client runs as `user` from now on; a failure
    /// goes to ACL LOG (reason `auth`, the command's name as sent as the object).
    static func authenticate(_ call: CommandCall, user: String, password: [UInt8]) -> Bool {
        let client = call.client
        if let handle = call.engine.acl.authenticate(user, password) {
            client.user = handle
            client.authenticated = true
            return true
        }
        call.engine.aclLog(.init(reason: .auth, context: client.multiQueue != nil ? .multi : .toplevel,
                                 object: call.args.string(0), username: user), client: client)
        return false
    }

    static func hello(_ call: CommandCall, mode: String) {
        let client = call.client
        var version = client.protocolVersion
        var i = 1
        if call.args.count >= 2 {
            guard let v = call.integer(1) else {
                return call.reply(.error("ERR Protocol version is not an integer or out of range"))
            }
            guard v == 2 || v == 3 else { return call.reply(.error("NOPROTO unsupported protocol version")) }
            version = Int(v)
            i = 2
        }
        var authenticate: (String, String)? = nil
        var name: String? = nil
        while i < call.args.count {
            if call.isArg(i, "auth") && i + 2 < call.args.count {
                authenticate = (call.args.string(i + 1), call.args.string(i + 2))
                i += 3
            } else if call.isArg(i, "setname") && i + 1 < call.args.count {
                name = call.args.string(i + 1)
                i += 2
            } else {
                return call.reply(.error("ERR Syntax error in HELLO option '\(call.args.string(i))'"))
            }
        }
        if let (user, password) = authenticate {
            guard ConnectionFamily.authenticate(call, user: user, password: Array(password.utf8)) else {
                return call.reply(.error("WRONGPASS invalid username-password pair or user is disabled."))
            }
        }
        if !client.authenticated {
            return call.reply(.error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"))
        }
        if let name {
            guard validClientName(name) else {
                return call.reply(.error("ERR Client names cannot contain spaces, newlines or special characters."))
            }
            client.name = name
        }
        client.protocolVersion = version
        call.reply(.map([
            (.bulkString("server"), .bulkString("redis")),
            (.bulkString("version"), .bulkString(helloVersion)),
            (.bulkString("proto"), .integer(version)),
            (.bulkString("id"), .integer(client.id)),
            (.bulkString("mode"), .bulkString(mode)),
            (.bulkString("role"), .bulkString("master")),
            (.bulkString("modules"), .array([])),
        ]))
    }

    static func validClientName(_ name: String) -> Bool {
        name.utf8.allSatisfy { $0 > 32 && $0 < 127 }
    }

    static func client(_ call: CommandCall, server: Server) {
        let sub = call.args.string(1).lowercased()
        let client = call.client
        switch (sub, call.args.count) {
        case ("reply", 3):
            guard let connection = call.sink as? Connection else { return call.reply(.ok) }
            if call.isArg(2, "on") {
                connection.setReplyMode(off: false, skipNext: false, answerThis: true)
            } else if call.isArg(2, "off") {
                connection.setReplyMode(off: true, skipNext: false, answerThis: false)
            } else if call.isArg(2, "skip") {
                connection.setReplyMode(off: connection.repliesOff, skipNext: true, answerThis: false)
            } else {
                return call.reply(.syntaxError)
            }
            call.reply(.ok)
        case ("id", 2):
            call.reply(.integer(client.id))
        case ("getname", 2):
            call.reply(client.name.isEmpty ? .null : .bulkString(client.name))
        case ("setname", 3):
            let name = call.args.string(2)
            guard validClientName(name) || name.isEmpty else {
                return call.reply(.error("ERR Client names cannot contain spaces, newlines or special characters."))
            }
            client.name = name
            call.reply(.ok)
        case ("setinfo", 4):
            let value = call.args.string(3)
            if call.isArg(2, "lib-name") {
                guard validClientName(value) || value.isEmpty else {
                    return call.reply(.error("ERR lib-name cannot contain spaces, newlines or special characters."))
                }
                client.libraryName = value
            } else if call.isArg(2, "lib-ver") {
                guard validClientName(value) || value.isEmpty else {
                    return call.reply(.error("ERR lib-ver cannot contain spaces, newlines or special characters."))
                }
                client.libraryVersion = value
            } else {
                return call.reply(.error("ERR Unrecognized option '\(call.args.string(2))'"))
            }
            call.reply(.ok)
        case ("no-evict", 3), ("no-touch", 3):
            let on: Bool
            if call.isArg(2, "on") { on = true } else if call.isArg(2, "off") { on = false } else { return call.reply(.syntaxError) }
            if sub == "no-evict" { client.noEvict = on } else { client.noTouch = on }
            call.reply(.ok)
        case ("info", 2):
            call.reply(.verbatim(describe(client, on: server, PubSubFamily.connection(of: call)) + "\n"))
        case ("list", _):
            var wantedIDs: Set<Int>? = nil
            var i = 2
            while i < call.args.count {
                if call.isArg(i, "type") && i + 1 < call.args.count {
                    i += 2
                } else if call.isArg(i, "id") && i + 1 < call.args.count {
                    var ids = Set<Int>()
                    var j = i + 1
                    while j < call.args.count {
                        guard let id = call.integer(j), id > 0 else { return call.reply(.error("ERR Invalid client ID")) }
                        ids.insert(Int(id))
                        j += 1
                    }
                    wantedIDs = ids
                    i = j
                } else {
                    return call.reply(.syntaxError)
                }
            }
            let filter = wantedIDs
            server.gatherLoops(from: call.loop, { loop in
                server.connections(on: loop)
                    .filter { filter == nil || filter!.contains($0.client.id) }
                    .map { ($0.client.id, describe($0.client, on: server, $0)) }
            }, done: { parts in
                let lines = parts.flatMap { $0 }.sorted { $0.0 < $1.0 }.map { $0.1 + "\n" }.joined()
                call.reply(.verbatim(lines))
            })
        case ("kill", _):
            clientKill(call, server: server)
        case ("pause", 3), ("pause", 4):
            ClientPause.pauseCommand(call, pause: server.clientPause)
        case ("unpause", 2):
            server.clientPause.unpause()
            call.reply(.ok)
        case ("unpause", _):
            call.reply(.error("ERR wrong number of arguments for 'client|unpause' command"))
        case ("unblock", 3), ("unblock", 4):
            guard let id = call.integer(2) else { return call.reply(.notInteger) }
            var withError = false
            if call.args.count == 4 {
                if call.isArg(3, "error") { withError = true } else if !call.isArg(3, "timeout") {
                    return call.reply(.error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"))
                }
            }
            server.gatherLoops(from: call.loop, { loop -> Bool in
                for connection in server.connections(on: loop) where connection.client.id == Int(id) {
                    guard let blocked = connection.client.blockedOn else { return false }
                    let reply: Reply = withError ? .error("UNBLOCKED client unblocked via CLIENT UNBLOCK") : blocked.timeoutReplyValue
                    return blocked.cancel(reply: reply)
                }
                return false
            }, done: { results in call.reply(.integer(results.contains(true) ? 1 : 0)) })
        case ("help", 2):
            let lines = [
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GETNAME", "    Return the name of the current connection.",
                "ID", "    Return the ID of the current connection.",
                "INFO", "    Return information about the current client connection.",
                "KILL <ip:port>", "    Kill connection made from <ip:port>.",
                "LIST [TYPE (NORMAL|MASTER|REPLICA|PUBSUB)] [ID <id> [<id> ...]]", "    Return information about client connections.",
                "UNPAUSE", "    Stop the current client pause, resuming traffic.",
                "PAUSE <timeout> [WRITE|ALL]", "    Suspend all, or just write, clients for <timeout> milliseconds.",
                "NO-EVICT (ON|OFF)", "    Protect current client connection from eviction.",
                "NO-TOUCH (ON|OFF)", "    Will not touch LRU/LFU stats when this mode is on.",
                "SETINFO <option> <value>", "    Set client meta attr. Options are: LIB-NAME, LIB-VER.",
                "SETNAME <name>", "    Assign the name <name> to the current connection.",
                "HELP", "    Print this help.",
            ]
            call.reply(.array(lines.map { .simple($0) }))
        default:
            if TrackingFamily.handle(call, sub, server: server) { return }
            call.reply(.error("ERR unknown subcommand or wrong number of arguments for '\(call.args.string(1))'. Try CLIENT HELP."))
        }
    }

    /// One CLIENT LIST line, fields in Redis's order.
    /// `connection` (on its own loop) gives the subscription counts, as Redis's sub= / psub= / ssub=.
    static func describe(_ client: ClientState, on server: Server, _ connection: Connection?) -> String {
        let now = Clock.wallMillis()
        let age = (now - client.createdAtMs) / 1000
        let idle = Int64(Clock.idleSeconds(since: client.lastCommandAtNanos))
        var flags = ""
        let (sub, psub, ssub) = (connection?.channels.count ?? 0, connection?.patterns.count ?? 0, connection?.shardChannels.count ?? 0)
        if sub + psub + ssub > 0 { flags += "P" }
        flags += TrackingFamily.listFlags(client, server: server)
        if client.noEvict { flags += "e" }
        if client.noTouch { flags += "T" }
        if client.blockedOn != nil || connection?.isHeldByPause == true { flags += "b" }
        if client.multiQueue != nil { flags += "x" }
        if flags.isEmpty { flags = "N" }
        let (qbuf, qbufFree) = connection?.queryBuffer ?? (0, 0)
        let multi = client.multiQueue?.count ?? -1
        return "id=\(client.id) addr=\(client.address) laddr=\(client.localAddress) fd=-1 name=\(client.name) age=\(age) idle=\(idle) flags=\(flags) db=\(client.database) sub=\(sub) psub=\(psub) ssub=\(ssub) multi=\(multi) qbuf=\(qbuf) qbuf-free=\(qbufFree) argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=\(client.lastCommandName) user=\(client.user?.name ?? "default") redir=\(client.tracking.map { $0.redirect } ?? -1) resp=\(client.protocolVersion) lib-name=\(client.libraryName) lib-ver=\(client.libraryVersion) thread=\(client.loop.index)"
    }

    static func clientKill(_ call: CommandCall, server: Server) {
        var byID: Int? = nil
        var byAddress: String? = nil
        var byLocalAddress: String? = nil
        var byUser: String? = nil
        var byType: String? = nil
        var skipMe = true
        guard call.args.count > 2 else {
            return call.reply(.error("ERR wrong number of arguments for 'client|kill' command"))
        }
        let oldForm = call.args.count == 3
        if oldForm {
            byAddress = call.args.string(2)
        } else {
            var i = 2
            while i + 1 < call.args.count {
                let value = call.args.string(i + 1)
                if call.isArg(i, "id") {
                    guard let id = Int(value), id > 0 else { return call.reply(.error("ERR client-id should be greater than 0")) }
                    byID = id
                } else if call.isArg(i, "addr") {
                    byAddress = value
                } else if call.isArg(i, "laddr") {
                    byLocalAddress = value
                } else if call.isArg(i, "skipme") {
                    if value.lowercased() == "yes" { skipMe = true } else if value.lowercased() == "no" { skipMe = false } else { return call.reply(.syntaxError) }
                } else if call.isArg(i, "user") {
                    guard server.engine.acl.handle(value) != nil else {
                        return call.reply(.error("ERR No such user '\(value)'"))
                    }
                    byUser = value
                } else if call.isArg(i, "type") {
                    let type = value.lowercased()
                    guard ["normal", "master", "replica", "slave", "pubsub"].contains(type) else {
                        return call.reply(.error("ERR Unknown client type '\(value)'"))
                    }
                    byType = type == "slave" ? "replica" : type
                } else {
                    return call.reply(.syntaxError)
                }
                i += 2
            }
            if i != call.args.count { return call.reply(.syntaxError) }
        }
        let me = call.client.id
        // The master's link (a replica's only master client) is no connection of the loops.
        let masterKilled = byType == "master" && byID == nil && byAddress == nil && byLocalAddress == nil && byUser == nil
            ? server.replication.replica.killLink() : 0
        server.gatherLoops(from: call.loop, { loop -> Int in
            var killed = 0
            for connection in server.connections(on: loop) {
                let c = connection.client
                // Redis's client types: a replica's link, a subscriber, or normal
                // (a monitor too); the master's link is counted above.
                if let byType {
                    let type = connection.replicaLink != nil ? "replica" : connection.subscriptionCount > 0 ? "pubsub" : "normal"
                    if type != byType { continue }
                }
                if let byID, c.id != byID { continue }
                if let byAddress, c.address != byAddress { continue }
                if let byLocalAddress, c.localAddress != byLocalAddress { continue }
                if let byUser, c.user?.name != byUser { continue }
                if c.id == me {
                    if skipMe && !oldForm { continue }
                    c.closeRequested = true
                    killed += 1
                    continue
                }
                connection.kill()
                killed += 1
            }
            return killed
        }, done: { counts in
            let total = counts.reduce(0, +) + masterKilled
            if oldForm {
                call.reply(total > 0 ? .ok : .error("ERR No such client"))
            } else {
                call.reply(.integer(total))
            }
        })
    }
}
