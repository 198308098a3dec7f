import DamselflyCommands
import DamselflyRuntime
import DamselflyPersistence
import DamselflyStorage
import DamselflyTransactions

/// SAVE, BGSAVE, LASTSAVE, DUMP and RESTORE.
enum PersistenceFamily {
    static func register(_ r: CommandRegistry, server: Server) {
        let g = "server"
        r.register("save", arity: 1, flags: [.admin, .noscript, .noMulti], group: g) { call in
            let started = server.snapshots.start(from: call.loop) { ok in
                call.reply(ok ? .ok : .error("ERR Background save failed"))
            }
            if !started && !server.snapshots.state.withLock({ $0.inProgress }) {
                call.reply(.error("ERR Background save failed"))
            }
        }
        r.register("bgsave", arity: -1, flags: [.admin, .noscript], group: g) { call in
            let schedule = call.args.count == 2 && call.isArg(1, "schedule")
            guard call.args.count == 1 || schedule else { return call.reply(.syntaxError) }
            if server.snapshots.state.withLock({ $0.inProgress }) {
                return call.reply(schedule ? .simple("Background saving scheduled") : .error("ERR Background save already in progress"))
            }
            if server.snapshots.start(from: call.loop) {
                call.reply(.simple("Background saving started"))
            } else {
                call.reply(.error("ERR Background save failed"))
            }
        }
        r.register("bgrewriteaof", arity: 1, flags: [.admin, .noscript], group: g) { call in
            // A snapshot rolls the journals over and drops the generations it covers.
            guard server.config.appendonly else { return call.reply(.simple("Background append only file rewriting started")) }
            if server.snapshots.start(from: call.loop) {
                call.reply(.simple("Background append only file rewriting started"))
            } else {
                call.reply(.error("ERR Background append only file rewriting already in progress"))
            }
        }
        r.register("dump", arity: 2, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: "generic") { call in
            let key = call.key(1)
            call.runOnKey(key, mode: .shared) { ctx in
                guard let found = ctx.lookupRead(key) else { return .null }
                return .bulk(DumpPayload.encode(RDBConversion.rdbValue(ctx.database.value(at: found))))
            }
        }
        r.register("restore", arity: -4, flags: [.write, .denyOOM], firstKey: 1, lastKey: 1, keyStep: 1, group: "generic") { call in
            // Redis's order: options, then BUSYKEY, then the TTL, then the payload.
            var replace = false, absolute = false, idle = false, freq = false
            var idleSeconds: Int64?, frequency: Int?
            var i = 4
            // Redis's restoreCommand: IDLETIME and FREQ exclude each other
            // (syntax error) and are range-checked where they are read.
            while i < call.args.count {
                if call.isArg(i, "replace") { replace = true }
                else if call.isArg(i, "absttl") { absolute = true }
                else if call.isArg(i, "idletime") && i + 1 < call.args.count && !freq {
                    guard let n = call.integer(i + 1) else { return call.reply(.notInteger) }
                    guard n >= 0 else { return call.reply(.error("ERR Invalid IDLETIME value, must be >= 0")) }
                    idle = true
                    idleSeconds = n
                    i += 1
                } else if call.isArg(i, "freq") && i + 1 < call.args.count && !idle {
                    guard let n = call.integer(i + 1) else { return call.reply(.notInteger) }
                    guard n >= 0 && n <= 255 else {
                        return call.reply(.error("ERR Invalid FREQ value, must be >= 0 and <= 255"))
                    }
                    freq = true
                    frequency = Int(n)
                    i += 1
                } else { return call.reply(.syntaxError) }
                i += 1
            }
            let ttlArgument = call.integer(2)
            let value = try? DumpPayload.decode(call.args.bytes(3))
            let key = call.key(1)
            let now = DamselflyRuntime.Clock.wallMillis()
            call.runOnKey(key, mode: .exclusive) { ctx in
                let found = ctx.lookupWrite(key)
                if found != nil && !replace { return .error("BUSYKEY Target key name already exists.") }
                guard let ttl = ttlArgument else { return .notInteger }
                guard ttl >= 0 else { return .error("ERR Invalid TTL value, must be >= 0") }
                guard let value else { return .error("ERR DUMP payload version or checksum are wrong") }
                if let found { ctx.database.remove(at: found) }
                // Redis adds the relative TTL to the clock in C, where a huge one wraps negative
                // and the key counts as already expired: the same outcome, without the overflow.
                let (sum, wrapped) = now.addingReportingOverflow(ttl)
                let expireAt: Int64? = ttl == 0 ? nil : (absolute ? ttl : (wrapped ? Int64.min : sum))
                if let expireAt, expireAt <= ctx.nowMs {
                    if found != nil { ctx.notify(.generic, "del", key) }
                    return .ok
                }
                let entry = ctx.store(key, RDBConversion.storedValue(value), expireAtMs: expireAt)
                if idleSeconds != nil || frequency != nil {
                    ctx.database.setAccess(at: entry, idleSeconds: idleSeconds, frequency: frequency, nowMs: ctx.nowMs)
                }
                ctx.notify(.generic, "restore", key)
                return .ok
            }
        }
    }
}
