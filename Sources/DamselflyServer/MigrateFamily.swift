import CDamselfly
import DamselflyCommands
import DamselflyPersistence
import DamselflyRESP
import DamselflyStorage
import Glibc

/// MIGRATE: moves keys to another server as Redis's migrateCommand does, by DUMP
/// payloads sent as RESTORE commands over a connection of its own.
///
/// Like Redis, the exchange is synchronous: it runs while the keys' locks are held (between
/// the two phases of ``CommandCall/runOnKeysTwoPhase``), so nothing changes the keys
/// meanwhile and a key the target took is deleted here in the same step. It blocks the
/// thread it runs on for at most the command's timeout per step, as Redis blocks its one
/// thread. No connection cache: `migrate_cached_sockets` stays 0.
enum MigrateFamily {
    static func register(_ r: CommandRegistry) {
        r.register("migrate", arity: -6, flags: [.write], firstKey: 3, lastKey: 3, keyStep: 1, group: "generic") { call in
            migrate(call)
        }
    }

    /// One key as it leaves: its payload and the TTL the target gives it (0: none).
    struct Outgoing {
        let position: Int
        let payload: [UInt8]
        let ttl: Int64
    }

    /// What the exchange decided: the reply, and the keys (positions) the target took.
    struct Outcome {
        let reply: Reply
        let taken: Set<Int>
    }

    static func migrate(_ call: CommandCall) {
        // Redis's order: the options, then the timeout, then the database.
        var copy = false, replace = false
        var auth: [[UInt8]] = []
        var first = 3, count = 1
        var i = 6
        while i < call.args.count {
            if call.isArg(i, "copy") {
                copy = true
            } else if call.isArg(i, "replace") {
                replace = true
            } else if call.isArg(i, "auth") {
                guard i + 1 < call.args.count else { return call.reply(.syntaxError) }
                auth = [call.args.bytes(i + 1)]
                i += 1
            } else if call.isArg(i, "auth2") {
                guard i + 2 < call.args.count else { return call.reply(.syntaxError) }
                auth = [call.args.bytes(i + 1), call.args.bytes(i + 2)]
                i += 2
            } else if call.isArg(i, "keys") {
                guard call.args[3].isEmpty else {
                    return call.reply(.error("ERR When using MIGRATE KEYS option, the key argument must be set to the empty string"))
                }
                first = i + 1
                count = call.args.count - i - 1
                break
            } else {
                return call.reply(.syntaxError)
            }
            i += 1
        }
        guard var timeout = call.integer(5), let database = call.integer(4) else { return call.reply(.notInteger) }
        if timeout <= 0 { timeout = 1000 }
        guard count > 0 else { return call.reply(.simple("NOKEY")) }
        let host = call.args.string(1)
        let port = call.integer(2) ?? -1
        let keys = (first..<(first + count)).map { call.key($0) }
        call.runOnKeysTwoPhase(keys, mode: .exclusive, check: { ctx, positions -> [Outgoing] in
            positions.compactMap { position in
                guard let found = ctx.lookupRead(keys[position]) else { return nil }
                let payload = DumpPayload.encode(RDBConversion.rdbValue(ctx.database.value(at: found)))
                // Redis sends the time left, at least 1 ms.
                let ttl = ctx.database.expireTime(at: found).map { max($0 - ctx.nowMs, 1) } ?? 0
                return Outgoing(position: position, payload: payload, ttl: ttl)
            }
        }, decide: { checks -> Outcome in
            let outgoing = checks.flatMap { $0 }.sorted { $0.position < $1.position }
            guard !outgoing.isEmpty else { return Outcome(reply: .simple("NOKEY"), taken: []) }
            return exchange(
                host: host, port: Int(port), timeoutMs: Int(min(timeout, Int64(Int32.max))), database: database,
                auth: auth, replace: replace, keys: keys, outgoing: outgoing)
        }, apply: { ctx, positions, outcome in
            guard !copy else { return }
            for position in positions where outcome.taken.contains(position) {
                if ctx.delete(keys[position]) { ctx.notify(.generic, "del", keys[position]) }
            }
        }, reply: { $0.reply })
    }

    /// AUTH, SELECT and one RESTORE per key in one write, then their replies, as Redis
    /// sends them; the first error the target replies becomes the reply.
    static func exchange(
        host: String, port: Int, timeoutMs: Int, database: Int64, auth: [[UInt8]], replace: Bool,
        keys: [KeyRef], outgoing: [Outgoing]
    ) -> Outcome {
        let fd = port >= 0 && port <= 65535 ? dfly_connect_tcp(host, Int32(port), Int32(timeoutMs)) : -1
        guard fd >= 0 else { return Outcome(reply: .error("IOERR error or timeout connecting to the client"), taken: []) }
        defer { close(fd) }
        var out = ReplyBuilder(protocolVersion: 2, capacity: 256)
        func command(_ parts: [[UInt8]]) {
            out.arrayHeader(parts.count)
            for part in parts { out.bulk(part) }
        }
        if !auth.isEmpty { command([Array("AUTH".utf8)] + auth) }
        command([Array("SELECT".utf8), Array(String(database).utf8)])
        for key in outgoing {
            var parts = [Array("RESTORE".utf8), keys[key.position].bytes, Array(String(key.ttl).utf8), key.payload]
            if replace { parts.append(Array("REPLACE".utf8)) }
            command(parts)
        }
        let sent = out.buffer.withUnsafeBytes { dfly_send_all(fd, $0.baseAddress, $0.count) }
        guard sent == 0 else { return Outcome(reply: .error("IOERR error or timeout writing to target instance"), taken: []) }
        var line = [CChar](repeating: 0, count: 1024)
        func readLine() -> String? {
            let n = line.withUnsafeMutableBufferPointer { dfly_read_line(fd, $0.baseAddress, $0.count) }
            guard n >= 0 else { return nil }
            return line.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        }
        let readingError = Outcome(reply: .error("IOERR error or timeout reading to target instance"), taken: [])
        var setupError: String?
        for _ in 0..<(auth.isEmpty ? 1 : 2) {
            guard let reply = readLine() else { return readingError }
            if setupError == nil && reply.hasPrefix("-") { setupError = reply }
        }
        var taken: Set<Int> = []
        var firstError = setupError
        for key in outgoing {
            guard let reply = readLine() else {
                // Redis stops at a broken connection; what the target took is gone here too.
                return Outcome(reply: readingError.reply, taken: taken)
            }
            if setupError == nil && !reply.hasPrefix("-") {
                taken.insert(key.position)
            } else if firstError == nil {
                firstError = reply
            }
        }
        if let firstError {
            return Outcome(reply: .error("ERR Target instance replied with error: \(firstError.dropFirst())"), taken: taken)
        }
        return Outcome(reply: .ok, taken: taken)
    }
}
