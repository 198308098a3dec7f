import DamselflyCommands
import DamselflyRESP
import DamselflyRuntime
import DamselflyTransactions
import Synchronization

/// The clients that track keys (CLIENT TRACKING ON), for the shards' invalidations.
///
/// Shards find which client ids may cache a written key in their own tables;
/// this registry turns an id into where the message goes (the client, or the
/// client it redirects to) and holds what the sending side must check at the
/// moment of sending, as Redis does: tracking still on, the mode (default or
/// BCAST), NOLOOP. It is touched when a client switches tracking and once per
/// invalidation, never on the command path, so one mutex is enough.
final class TrackingRegistry: Sendable {
    struct Entry {
        let connection: Connection
        var mode: TrackingMode
        /// The client invalidations are redirected to, found at CLIENT TRACKING.
        var redirectTarget: Connection?
        /// The redirect target went away (CLIENT TRACKINGINFO's `broken_redirect`, CLIENT LIST's `R`).
        var brokenRedirect = false
    }

    private struct State {
        var clients: [Int: Entry] = [:]
        /// BCAST prefix → clients (INFO's `tracking_total_prefixes`).
        var prefixes: [[UInt8]: Set<Int>] = [:]
    }

    private let state = Mutex(State())
    let hub: TrackingHub

    init(hub: TrackingHub) {
        self.hub = hub
    }

    var prefixCount: Int { state.withLock { $0.prefixes.count } }

    func brokenRedirect(_ id: Int) -> Bool { state.withLock { $0.clients[id]?.brokenRedirect ?? false } }

    /// CLIENT TRACKING ON: records the client's mode; returns the BCAST
    /// prefixes that are new for it (the shards must learn them).
    func enable(_ connection: Connection, _ mode: TrackingMode, redirectTarget: Connection?) -> [[UInt8]] {
        let id = connection.client.id
        return state.withLock { s in
            let previous = s.clients[id]
            if previous == nil { hub.clients.add(1, ordering: .relaxed) }
            let added = mode.prefixes.filter { !(previous?.mode.prefixes.contains($0) ?? false) }
            for prefix in added { s.prefixes[prefix, default: []].insert(id) }
            s.clients[id] = Entry(connection: connection, mode: mode, redirectTarget: redirectTarget)
            return added
        }
    }

    /// CLIENT TRACKING OFF, RESET, disconnect: forgets the client; returns
    /// its BCAST prefixes (the shards must forget them).
    func disable(_ id: Int) -> [[UInt8]] {
        state.withLock { s in
            guard let entry = s.clients.removeValue(forKey: id) else { return [] }
            hub.clients.add(-1, ordering: .relaxed)
            for prefix in entry.mode.prefixes {
                s.prefixes[prefix]?.remove(id)
                if s.prefixes[prefix]?.isEmpty ?? false { s.prefixes[prefix] = nil }
            }
            return entry.mode.prefixes
        }
    }

    /// Sends a shard's invalidation (called on the shard's thread).
    func deliver(_ delivery: TrackingDelivery) {
        switch delivery {
        case .key(let name, let clients, let writer):
            for id in clients {
                guard let entry = lookup(id), !entry.mode.bcast else { continue }
                if entry.mode.noloop && id == writer { continue }
                send(entry, id, .keys([name]))
            }
        case .broadcast(let keys, let clients):
            for id in clients {
                guard let entry = lookup(id), entry.mode.bcast else { continue }
                let names = entry.mode.noloop ? keys.filter { $0.writer != id }.map(\.key) : keys.map(\.key)
                if !names.isEmpty { send(entry, id, .keys(names)) }
            }
        }
    }

    /// FLUSHALL / FLUSHDB: every tracking client is told that everything is invalid (a null).
    func flushed() {
        let all = state.withLock { Array($0.clients) }
        for (id, entry) in all { send(entry, id, .everything) }
    }

    private func lookup(_ id: Int) -> Entry? { state.withLock { $0.clients[id] } }

    /// Posts to the receiving connection's loop: the client itself, or its
    /// redirect target; a target that is gone makes the client hear
    /// `tracking-redir-broken` instead.
    private func send(_ entry: Entry, _ id: Int, _ payload: Invalidation) {
        if entry.mode.redirect != 0 {
            guard let target = entry.redirectTarget, !target.client.life.isClosed else {
                state.withLock { $0.clients[id]?.brokenRedirect = true }
                let connection = entry.connection
                let redirect = entry.mode.redirect
                connection.loop.post { connection.pushTrackingMessage(.redirectBroken(redirect), redirected: false) }
                return
            }
            target.loop.post { target.pushTrackingMessage(payload, redirected: true) }
        } else {
            let connection = entry.connection
            connection.loop.post { connection.pushTrackingMessage(payload, redirected: false) }
        }
    }
}

/// What a tracking push says.
enum Invalidation: Sendable {
    /// These keys may have changed.
    case keys([[UInt8]])
    /// Every key (FLUSHALL / FLUSHDB): a null instead of the key list.
    case everything
    /// The client invalidations were redirected to is gone (RESP3 only).
    case redirectBroken(Int)

    /// Writes the message for a client speaking `protocolVersion`; false when
    /// it has no form there (RESP2 without redirection, or not subscribed).
    func encode(into output: inout ReplyBuilder, protocolVersion: Int, redirected: Bool, subscribed: Bool) -> Bool {
        output.protocolVersion = protocolVersion
        if case .redirectBroken(let id) = self {
            guard protocolVersion >= 3 else { return false }
            output.pushHeader(2)
            output.bulk("tracking-redir-broken")
            output.integer(id)
            return true
        }
        if protocolVersion >= 3 {
            output.pushHeader(2)
            output.bulk("invalidate")
        } else if redirected && subscribed {
            output.arrayHeader(3)
            output.bulk("message")
            output.bulk("__redis__:invalidate")
        } else {
            return false
        }
        if case .keys(let names) = self {
            output.arrayHeader(names.count)
            for name in names { output.bulk(name) }
        } else {
            output.null()
        }
        return true
    }
}

/// CLIENT TRACKING, CACHING, GETREDIR and TRACKINGINFO (Redis 7.0's client-side caching).
enum TrackingFamily {
    /// Handles the tracking subcommands of CLIENT; false for any other.
    static func handle(_ call: CommandCall, _ sub: String, server: Server) -> Bool {
        switch (sub, call.args.count) {
        case ("tracking", 3...): tracking(call, server: server)
        case ("caching", 3...): caching(call)
        case ("getredir", 2): call.reply(.integer(call.client.tracking.map { $0.redirect } ?? -1))
        case ("trackinginfo", 2): trackingInfo(call, server: server)
        default: return false
        }
        return true
    }

    static func tracking(_ call: CommandCall, server: Server) {
        let client = call.client
        var mode = TrackingMode()
        var redirect: Int64 = 0
        var prefixes: [[UInt8]] = []
        // Redis checks as it parses: the first REDIRECT's client must exist
        // before a later option can fail; `parseError` is the first failure.
        var parseError: String? = nil
        var i = 3
        parsing: while i < call.args.count {
            let more = i + 1 < call.args.count
            if call.isArg(i, "redirect") && more {
                i += 1
                if redirect != 0 {
                    parseError = "ERR A client can only redirect to a single other client"
                    break parsing
                }
                guard let id = call.integer(i) else {
                    parseError = "ERR value is not an integer or out of range"
                    break parsing
                }
                redirect = id
            } else if call.isArg(i, "bcast") {
                mode.bcast = true
            } else if call.isArg(i, "optin") {
                mode.optin = true
            } else if call.isArg(i, "optout") {
                mode.optout = true
            } else if call.isArg(i, "noloop") {
                mode.noloop = true
            } else if call.isArg(i, "prefix") && more {
                i += 1
                prefixes.append(call.args.bytes(i))
            } else {
                parseError = "ERR syntax error"
                break parsing
            }
            i += 1
        }
        let on = call.isArg(2, "on")
        let off = call.isArg(2, "off")
        let finish: (Connection?) -> Void = { target in
            if let parseError { return call.reply(.error(parseError)) }
            if off { return disable(client, server: server) { call.reply(.ok) } }
            guard on else { return call.reply(.syntaxError) }
            enable(call, mode, prefixes, redirect: Int(redirect), target: target, server: server)
        }
        guard redirect != 0 else { return finish(nil) }
        // The redirect target must exist now (it may go away later: then
        // the client hears tracking-redir-broken).
        server.gatherLoops(from: call.loop, { loop in
            server.connections(on: loop).first { $0.client.id == Int(redirect) && !$0.isClosed }
        }, done: { found in
            guard let target = found.compactMap({ $0 }).first else {
                return call.reply(.error("ERR The client ID you want redirect to does not exist"))
            }
            finish(target)
        })
    }

    private static func enable(
        _ call: CommandCall, _ requested: TrackingMode, _ prefixes: [[UInt8]], redirect: Int, target: Connection?,
        server: Server
    ) {
        let client = call.client
        var mode = requested
        if let error = refusal(mode, prefixes, current: client.tracking) { return call.reply(.error(error)) }
        mode.redirect = redirect
        // Prefixes add up across CLIENT TRACKING ON calls, as Redis keeps the client's set.
        if mode.bcast {
            mode.prefixes = client.tracking?.prefixes ?? []
            for prefix in (prefixes.isEmpty ? [[]] : prefixes) where !mode.prefixes.contains(prefix) {
                mode.prefixes.append(prefix)
            }
        }
        guard let connection = call.sink as? Connection else { return call.reply(.ok) }
        client.tracking = mode
        let added = server.tracking.enable(connection, mode, redirectTarget: target)
        updateShards(server, from: call.loop, adding: added, removing: [], client: client.id) { call.reply(.ok) }
    }

    /// Redis's checks before CLIENT TRACKING ON, in its order, with its texts.
    static func refusal(_ mode: TrackingMode, _ prefixes: [[UInt8]], current: TrackingMode?) -> String? {
        if !mode.bcast && !prefixes.isEmpty { return "ERR PREFIX option requires BCAST mode to be enabled" }
        if let current, current.bcast != mode.bcast {
            return "ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode."
        }
        if mode.bcast && (mode.optin || mode.optout) { return "ERR OPTIN and OPTOUT are not compatible with BCAST" }
        if mode.optin && mode.optout { return "ERR You can't specify both OPTIN mode and OPTOUT mode" }
        if let current, (mode.optin && current.optout) || (mode.optout && current.optin) {
            return "ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode."
        }
        guard mode.bcast else { return nil }
        let existing = current?.prefixes ?? []
        for (i, prefix) in prefixes.enumerated() {
            if let clash = existing.first(where: { overlaps($0, prefix) }) {
                return "ERR Prefix '\(text(prefix))' overlaps with an existing prefix '\(text(clash))'. Prefixes for a single client must not overlap."
            }
            if let clash = prefixes[(i + 1)...].first(where: { overlaps(prefix, $0) }) {
                return "ERR Prefix '\(text(prefix))' overlaps with another provided prefix '\(text(clash))'. Prefixes for a single client must not overlap."
            }
        }
        return nil
    }

    /// Two prefixes overlap when one starts the other (a key would match both).
    static func overlaps(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        let n = min(a.count, b.count)
        return a[..<n] == b[..<n]
    }

    private static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    /// Tracking off for this client (CLIENT TRACKING OFF, RESET, disconnect).
    static func disable(_ client: ClientState, server: Server, done: @escaping () -> Void = {}) {
        guard client.tracking != nil else { return done() }
        client.tracking = nil
        client.trackingCaching = false
        let removed = server.tracking.disable(client.id)
        updateShards(server, from: client.loop, adding: [], removing: removed, client: client.id, done: done)
    }

    /// Tells every shard about a client's BCAST prefixes, then `done` on
    /// `loop`: a write the client sends after the reply finds them there.
    static func updateShards(
        _ server: Server, from loop: EventLoop, adding: [[UInt8]], removing: [[UInt8]], client: Int,
        done: @escaping () -> Void
    ) {
        guard !adding.isEmpty || !removing.isEmpty else { return done() }
        let shards = server.engine.shardSet.shards
        let remaining = Atomic<Int>(shards.count)
        for shard in shards {
            shard.postWhenAvailable {
                for prefix in adding { shard.addTrackedPrefix(prefix, client: client) }
                for prefix in removing { shard.removeTrackedPrefix(prefix, client: client) }
                if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { loop.post(done) }
            }
        }
    }

    static func caching(_ call: CommandCall) {
        guard let mode = call.client.tracking else {
            return call.reply(.error("ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled"))
        }
        if call.isArg(2, "yes") {
            guard mode.optin else { return call.reply(.error("ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.")) }
        } else if call.isArg(2, "no") {
            guard mode.optout else { return call.reply(.error("ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.")) }
        } else {
            return call.reply(.syntaxError)
        }
        call.client.trackingCaching = true
        call.reply(.ok)
    }

    static func trackingInfo(_ call: CommandCall, server: Server) {
        let client = call.client
        var flags: [Reply] = [.bulkString(client.tracking == nil ? "off" : "on")]
        if let mode = client.tracking {
            if mode.bcast { flags.append(.bulkString("bcast")) }
            if mode.optin {
                flags.append(.bulkString("optin"))
                if client.trackingCaching { flags.append(.bulkString("caching-yes")) }
            }
            if mode.optout {
                flags.append(.bulkString("optout"))
                if client.trackingCaching { flags.append(.bulkString("caching-no")) }
            }
            if mode.noloop { flags.append(.bulkString("noloop")) }
            if server.tracking.brokenRedirect(client.id) { flags.append(.bulkString("broken_redirect")) }
        }
        let prefixes = (client.tracking?.prefixes ?? []).sorted { $0.lexicographicallyPrecedes($1) }
        call.reply(.map([
            (.bulkString("flags"), .set(flags)),
            (.bulkString("redirect"), .integer(client.tracking.map { $0.redirect } ?? -1)),
            (.bulkString("prefixes"), .array(prefixes.map { .bulk($0) })),
        ]))
    }

    /// CLIENT LIST's tracking flags, in Redis's order: `t` tracking, `R` broken redirect, `B` BCAST.
    static func listFlags(_ client: ClientState, server: Server) -> String {
        guard let mode = client.tracking else { return "" }
        return "t" + (server.tracking.brokenRedirect(client.id) ? "R" : "") + (mode.bcast ? "B" : "")
    }
}
