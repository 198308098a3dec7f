import DamselflyRESP
import DamselflyRuntime
import DamselflyStorage
import DamselflyTransactions

/// Keys of any type: existence, deletion, TTLs, renames and copies, and the
/// keyspace walks (KEYS, SCAN, RANDOMKEY, DBSIZE, FLUSHDB/FLUSHALL).
public enum GenericFamily {
    public static func register(_ r: CommandRegistry) {
        let g = "generic"
        r.register("del", arity: -2, flags: [.write], firstKey: 1, lastKey: -1, keyStep: 1, group: g) { call in
            countKeys(call, mode: .exclusive) { ctx, key in deleteNotifying(&ctx, key) }
        }
        r.register("unlink", arity: -2, flags: [.write, .fast], firstKey: 1, lastKey: -1, keyStep: 1, group: g) { call in
            countKeys(call, mode: .exclusive) { ctx, key in deleteNotifying(&ctx, key) }
        }
        r.register("exists", arity: -2, flags: [.readonly, .fast], firstKey: 1, lastKey: -1, keyStep: 1, group: g) { call in
            countKeys(call, mode: .shared) { ctx, key in ctx.lookupPeek(key) != nil }
        }
        r.register("touch", arity: -2, flags: [.readonly, .fast], firstKey: 1, lastKey: -1, keyStep: 1, group: g) { call in
            countKeys(call, mode: .shared) { ctx, key in ctx.lookupWrite(key) != nil }
        }
        r.register("type", arity: 2, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1)
            call.runOnKey(key, mode: .shared) { ctx in
                guard let found = ctx.lookupPeek(key) else { return .simple("none") }
                return .simple(ctx.database.value(at: found).typeName)
            }
        }
        r.register("expire", arity: -3, flags: [.write, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            expire(call, unit: .seconds)
        }
        r.register("pexpire", arity: -3, flags: [.write, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            expire(call, unit: .milliseconds)
        }
        r.register("expireat", arity: -3, flags: [.write, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            expire(call, unit: .unixSeconds)
        }
        r.register("pexpireat", arity: -3, flags: [.write, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            expire(call, unit: .unixMilliseconds)
        }
        r.register("ttl", arity: 2, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            ttl(call, milliseconds: false, absolute: false)
        }
        r.register("pttl", arity: 2, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            ttl(call, milliseconds: true, absolute: false)
        }
        r.register("expiretime", arity: 2, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            ttl(call, milliseconds: false, absolute: true)
        }
        r.register("pexpiretime", arity: 2, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            ttl(call, milliseconds: true, absolute: true)
        }
        r.register("persist", arity: 2, flags: [.write, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            let key = call.key(1)
            call.runOnKey(key, mode: .exclusive) { ctx in
                guard let found = ctx.lookupWrite(key), ctx.database.expireTime(at: found) != nil else { return .integer(0) }
                ctx.database.setExpireTime(nil, at: found)
                ctx.notify(.generic, "persist", key)
                return .integer(1)
            }
        }
        r.register("rename", arity: 3, flags: [.write], firstKey: 1, lastKey: 2, keyStep: 1, group: g) { call in
            rename(call, onlyIfAbsent: false)
        }
        r.register("renamenx", arity: 3, flags: [.write, .fast], firstKey: 1, lastKey: 2, keyStep: 1, group: g) { call in
            rename(call, onlyIfAbsent: true)
        }
        r.register("copy", arity: -3, flags: [.write, .denyOOM], firstKey: 1, lastKey: 2, keyStep: 1, group: g, handler: copy)
        r.register("move", arity: 3, flags: [.write, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: move)
        r.register("keys", arity: 2, flags: [.readonly], group: g) { call in
            let pattern = call.args.bytes(1)
            let database = call.client.database
            call.shardSet.broadcast(from: call.loop, { shard -> [Reply] in
                let db = shard.database(database)
                let now = Clock.wallMillis()
                var out: [Reply] = []
                let everything = pattern.withUnsafeBytes { GlobPattern.matchesEverything($0) }
                db.forEach(nowMs: now) { entry in
                    db.withKey(at: entry) { key in
                        if everything || pattern.withUnsafeBytes({ GlobPattern.matches(pattern: $0, string: key) }) {
                            out.append(.bulk(Array(key)))
                        }
                    }
                }
                return out
            }, done: { parts in call.reply(.array(parts.flatMap { $0 })) })
        }
        r.register("scan", arity: -2, flags: [.readonly], group: g, handler: scan)
        r.register("randomkey", arity: 1, flags: [.readonly], group: g) { call in
            let database = call.client.database
            call.shardSet.broadcast(from: call.loop, { shard -> (Int, [UInt8]?) in
                let db = shard.database(database)
                guard let entry = db.randomEntry(nowMs: Clock.wallMillis()) else { return (0, nil) }
                return (db.count, db.key(at: entry))
            }, done: { parts in
                // Pick a shard with probability proportional to its key count.
                let total = parts.reduce(0) { $0 + ($1.1 == nil ? 0 : $1.0) }
                guard total > 0 else { return call.reply(.null) }
                var pick = Int.random(in: 0..<total)
                for (count, key) in parts where key != nil {
                    if pick < count { return call.reply(.bulk(key!)) }
                    pick -= count
                }
                call.reply(.bulk(parts.first { $0.1 != nil }!.1!))
            })
        }
        r.register("dbsize", arity: 1, flags: [.readonly, .fast], group: g) { call in
            let database = call.client.database
            call.shardSet.broadcast(from: call.loop, { shard in shard.database(database).count }, done: { counts in
                call.reply(.integer(counts.reduce(0, +)))
            })
        }
        r.register("flushdb", arity: -1, flags: [.write], group: g) { call in
            flush(call, allDatabases: false)
        }
        r.register("flushall", arity: -1, flags: [.write], group: g) { call in
            flush(call, allDatabases: true)
        }
        r.register("object", arity: -2, flags: [.readonly], firstKey: 2, lastKey: 2, keyStep: 1, group: g, handler: object)
    }

    // MARK: - Counting over keys

    /// DEL, UNLINK, EXISTS, TOUCH: run `test` on every key (on its shard,
    /// atomically across shards) and reply with how many returned true.
    static func countKeys(_ call: CommandCall, mode: LockMode, _ test: @escaping (inout ShardContext, KeyRef) -> Bool) {
        let keys = (1..<call.args.count).map { call.key($0) }
        if keys.count == 1 {
            let key = keys[0]
            call.runOnKey(key, mode: mode) { ctx in .integer(test(&ctx, key) ? 1 : 0) }
            return
        }
        call.runOnKeys(keys, mode: mode, perShard: { ctx, positions in
            var n = 0
            for p in positions where test(&ctx, keys[p]) { n += 1 }
            // DEL / UNLINK: nothing deleted on this shard, nothing to signal.
            if n == 0 && mode == .exclusive { ctx.markUnchanged() }
            return n
        }, merge: { counts in .integer(counts.reduce(0, +)) })
    }

    /// DEL and UNLINK of one key: a `del` event when it existed.
    static func deleteNotifying(_ ctx: inout ShardContext, _ key: KeyRef) -> Bool {
        guard ctx.delete(key) else { return false }
        ctx.notify(.generic, "del", key)
        return true
    }

    // MARK: - TTLs

    static func expire(_ call: CommandCall, unit: ExpireUnit) {
        var nx = false, xx = false, gt = false, lt = false
        for i in 3..<call.args.count {
            if call.isArg(i, "nx") { nx = true }
            else if call.isArg(i, "xx") { xx = true }
            else if call.isArg(i, "gt") { gt = true }
            else if call.isArg(i, "lt") { lt = true }
            else { return call.reply(.error("ERR Unsupported option \(call.args.cString(i))")) }
        }
        if nx && (xx || gt || lt) {
            return call.reply(.error("ERR NX and XX, GT or LT options at the same time are not compatible"))
        }
        if gt && lt { return call.reply(.error("ERR GT and LT options at the same time are not compatible")) }
        guard let amount = call.integer(2) else { return call.reply(.notInteger) }
        guard let when = unit.absoluteMillis(amount, nowMs: Clock.wallMillisForCommands()) else {
            return call.reply(.error("ERR invalid expire time in '\(call.spec.name)' command"))
        }
        let key = call.key(1)
        call.runOnKey(key, mode: .exclusive) { ctx in
            guard let found = ctx.lookupWrite(key) else { return .integer(0) }
            let current = ctx.database.expireTime(at: found)
            if nx && current != nil { return .integer(0) }
            if xx && current == nil { return .integer(0) }
            if gt && (current == nil || when <= current!) { return .integer(0) }
            if lt, let current, when >= current { return .integer(0) }
            if when <= ctx.nowMs {
                ctx.database.remove(at: found)
                ctx.notify(.generic, "del", key)
            } else {
                ctx.database.setExpireTime(when, at: found)
                ctx.notify(.generic, "expire", key)
            }
            return .integer(1)
        }
    }

    static func ttl(_ call: CommandCall, milliseconds: Bool, absolute: Bool) {
        let key = call.key(1)
        call.runOnKey(key, mode: .shared) { ctx in
            guard let found = ctx.lookupPeek(key) else { return .integer(-2) }
            guard let expire = ctx.database.expireTime(at: found) else { return .integer(-1) }
            var remaining = absolute ? expire : expire - ctx.nowMs
            if remaining < 0 { remaining = 0 }
            return .integer(Int(milliseconds ? remaining : (remaining + 500) / 1000))
        }
    }

    // MARK: - Rename, copy, move

    /// What the source shard hands over: the value and its TTL.
    struct Moved {
        var value: StoredValue?
        var expireAt: Int64?
        var destinationExists = false
    }

    static func rename(_ call: CommandCall, onlyIfAbsent: Bool) {
        let source = call.key(1), destination = call.key(2)
        let sameKey = source.bytes == destination.bytes
        // Phase one reads the source (on its shard) and checks the
        // destination (on its shard); phase two deletes and writes, under
        // the same locks.
        call.runOnKeysTwoPhase([source, destination], mode: .exclusive, check: { ctx, positions -> Moved in
            var moved = Moved()
            for p in positions {
                if p == 0, let found = ctx.lookupWrite(source) {
                    moved.value = ctx.database.value(at: found)
                    moved.expireAt = ctx.database.expireTime(at: found)
                }
                if p == 1 { moved.destinationExists = ctx.lookupWrite(destination) != nil }
            }
            return moved
        }, decide: { checks -> (Moved, Reply?) in
            var combined = Moved()
            for c in checks {
                if c.value != nil { combined.value = c.value; combined.expireAt = c.expireAt }
                if c.destinationExists { combined.destinationExists = true }
            }
            if combined.value == nil { return (combined, .error("ERR no such key")) }
            if sameKey { return (combined, onlyIfAbsent ? .integer(0) : .ok) }
            if onlyIfAbsent && combined.destinationExists { return (combined, .integer(0)) }
            return (combined, nil)
        }, apply: { ctx, positions, decision in
            guard decision.1 == nil, let value = decision.0.value else { return ctx.markUnchanged() }
            for p in positions {
                if p == 0 { ctx.delete(source) }
                if p == 1 { ctx.store(destination, value, expireAtMs: decision.0.expireAt) }
            }
            // Both events from the source's shard, so they arrive in Redis's order even when
            // the destination lives on another shard.
            if positions.contains(0) {
                ctx.notify(.generic, "rename_from", source)
                ctx.notify(.generic, "rename_to", destination)
            }
        }, reply: { decision in decision.1 ?? (onlyIfAbsent ? .integer(1) : .ok) })
    }

    static func copy(_ call: CommandCall) {
        var targetDatabase = call.client.database
        var replace = false
        var i = 3
        while i < call.args.count {
            if call.isArg(i, "replace") {
                replace = true
            } else if call.isArg(i, "db") && i + 1 < call.args.count {
                guard let n = call.int32OrReply(i + 1) else { return }
                guard n >= 0 && n < call.engine.databaseCount else { return call.reply(.outOfRangeDB) }
                targetDatabase = n
                i += 1
            } else {
                return call.reply(.syntaxError)
            }
            i += 1
        }
        let source = call.key(1), destination = call.key(2)
        if source.bytes == destination.bytes && targetDatabase == call.client.database {
            return call.reply(.error("ERR source and destination objects are the same"))
        }
        let target = targetDatabase
        call.runOnKeysTwoPhase([source, destination], mode: .exclusive, check: { ctx, positions -> Moved in
            var moved = Moved()
            for p in positions {
                if p == 0, let found = ctx.lookupRead(source) {
                    moved.value = ctx.database.value(at: found)
                    moved.expireAt = ctx.database.expireTime(at: found)
                }
                if p == 1 {
                    let destinationContext = ShardContext(shard: ctx.shard, databaseIndex: target)
                    moved.destinationExists = destinationContext.lookupWrite(destination) != nil
                }
            }
            return moved
        }, decide: { checks -> Moved? in
            var combined = Moved()
            for c in checks {
                if c.value != nil { combined.value = c.value; combined.expireAt = c.expireAt }
                if c.destinationExists { combined.destinationExists = true }
            }
            guard combined.value != nil, replace || !combined.destinationExists else { return nil }
            return combined
        }, apply: { ctx, positions, decision in
            guard let decision, let value = decision.value, positions.contains(1) else { return ctx.markUnchanged() }
            let destinationContext = ShardContext(shard: ctx.shard, databaseIndex: target)
            destinationContext.store(destination, value.duplicate(), expireAtMs: decision.expireAt)
            destinationContext.notify(.generic, "copy_to", destination)
        }, reply: { decision in .integer(decision == nil ? 0 : 1) }, writtenPositions: [1])
    }

    static func move(_ call: CommandCall) {
        guard let n = call.int32OrReply(2) else { return }
        guard n >= 0 && n < call.engine.databaseCount else { return call.reply(.outOfRangeDB) }
        let target = n
        if target == call.client.database {
            return call.reply(.error("ERR source and destination objects are the same"))
        }
        let key = call.key(1)
        // The key lives on one shard in every database, so MOVE is one hop;
        // it locks the key in both databases.
        let shardIndex = key.withBytes { call.shardSet.shardIndex(of: $0, hash: key.hash) }
        let source = call.client.database
        let locks = ShardLockSet(
            fingerprints: [lockFingerprint(keyHash: key.hash, database: source), lockFingerprint(keyHash: key.hash, database: target)],
            mode: .exclusive)
        let journalArgs = call.journalArguments()
        call.runOnShard(shardIndex, locks: locks) { shard -> Reply in
            if let journalArgs { shard.journal?.append(database: source, journalArgs) }
            let from = ShardContext(shard: shard, databaseIndex: source)
            let to = ShardContext(shard: shard, databaseIndex: target)
            guard let found = from.lookupWrite(key) else { return .integer(0) }
            if to.lookupWrite(key) != nil { return .integer(0) }
            let value = from.database.value(at: found)
            let expireAt = from.database.expireTime(at: found)
            from.database.remove(at: found)
            to.store(key, value, expireAtMs: expireAt)
            from.notify(.generic, "move_from", key)
            to.notify(.generic, "move_to", key)
            return .integer(1)
        }
    }

    // MARK: - Walks

    /// SCAN's cursor carries the shard in its low bits and that shard's
    /// table cursor above them, so one SCAN call is one hop to one shard.
    static let shardBits: UInt64 = 10

    static func scan(_ call: CommandCall) {
        guard let cursor = ScanArguments.parseCursor(call.args[1]) else { return call.reply(.error("ERR invalid cursor")) }
        var count = 10
        var pattern: [UInt8]? = nil
        var typeFilter: String? = nil
        var i = 2
        while i < call.args.count {
            guard i + 1 < call.args.count else { return call.reply(.syntaxError) }
            if call.isArg(i, "count") {
                guard let n = call.integer(i + 1) else { return call.reply(.notInteger) }
                guard n >= 1 else { return call.reply(.syntaxError) }
                count = Int(min(n, 1 << 30))
            } else if call.isArg(i, "match") {
                pattern = call.args.bytes(i + 1)
            } else if call.isArg(i, "type") {
                typeFilter = call.args.string(i + 1).lowercased()
            } else {
                return call.reply(.syntaxError)
            }
            i += 2
        }
        let shardCount = UInt64(call.shardSet.count)
        let shardIndex = cursor & ((1 << shardBits) - 1)
        guard shardIndex < shardCount else { return call.reply(.array([.bulkString("0"), .array([])])) }
        let database = call.client.database
        let filter = pattern
        let wantedType = typeFilter
        // One shard after another until COUNT keys are found or every shard
        // is done: a small keyspace comes back whole in one call, as in Redis.
        func scanShard(_ shardIndex: UInt64, _ tableCursor: UInt64, _ collected: [Reply]) {
            call.shardSet.hop(from: call.loop, to: Int(shardIndex), { shard -> (UInt64, [Reply]) in
                let db = shard.database(database)
                let now = Clock.wallMillis()
                var keys: [Reply] = []
                var next = tableCursor
                let everything = filter.map { p in p.withUnsafeBytes { GlobPattern.matchesEverything($0) } } ?? true
                repeat {
                    next = db.scan(cursor: next, count: 1, nowMs: now) { entry in
                        if let wantedType, db.value(at: entry).typeName != wantedType { return }
                        db.withKey(at: entry) { key in
                            if everything || filter!.withUnsafeBytes({ GlobPattern.matches(pattern: $0, string: key) }) {
                                keys.append(.bulk(Array(key)))
                            }
                        }
                    }
                } while next != 0 && collected.count + keys.count < count
                return (next, keys)
            }, done: { next, keys in
                let all = collected + keys
                if next != 0 {
                    return call.reply(.array([.bulkString(String((next << shardBits) | shardIndex)), .array(all)]))
                }
                if shardIndex + 1 < shardCount {
                    if all.count >= count {
                        return call.reply(.array([.bulkString(String(shardIndex + 1)), .array(all)]))
                    }
                    return scanShard(shardIndex + 1, 0, all)
                }
                call.reply(.array([.bulkString("0"), .array(all)]))
            })
        }
        scanShard(shardIndex, cursor >> shardBits, [])
    }

    static func flush(_ call: CommandCall, allDatabases: Bool) {
        if call.args.count > 2 || (call.args.count == 2 && !call.isArg(1, "async") && !call.isArg(1, "sync")) {
            return call.reply(.syntaxError)
        }
        let database = call.client.database
        // Redis forgets the whole tracking table on any flush and tells every
        // tracking client that everything is invalid.
        if call.shardSet.tracking.isActive { call.shardSet.tracking.onFlush?() }
        runOnEveryShard(call) { shard in
            shard.forgetTrackedKeys()
            if allDatabases {
                for db in shard.keyspace.databases { db.removeAll() }
            } else {
                shard.database(database).removeAll()
            }
            if shard.hasBlockedClients { shard.signalWaitedKeys(database: allDatabases ? nil : database) }
            // No watcher is touched here: a watched key that existed at WATCH
            // and is gone now is found by EXEC's check (as Redis's
            // touchAllWatchedKeysInDb dirties only keys the flush removed).
            shard.publishStats()
        }
    }

    // MARK: - OBJECT

    static func object(_ call: CommandCall) {
        if call.isArg(1, "help") {
            guard call.args.count == 2 else { return call.reply(.error("ERR wrong number of arguments for 'object|help' command")) }
            let lines = [
                "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "ENCODING <key>",
                "    Return the kind of internal representation used in order to store the value",
                "    associated with a <key>.",
                "FREQ <key>",
                "    Return the access frequency index of the <key>. The returned integer is",
                "    proportional to the logarithm of the recent access frequency of the key.",
                "IDLETIME <key>",
                "    Return the idle time of the <key>, that is the approximated number of",
                "    seconds elapsed since the last access to the key.",
                "REFCOUNT <key>",
                "    Return the number of references of the value associated with the specified",
                "    <key>.",
                "HELP",
                "    Print this help.",
            ]
            return call.reply(.array(lines.map { .simple($0) }))
        }
        let sub = call.args.string(1).lowercased()
        // Redis 7 resolves OBJECT's subcommands in its command table: an
        // unknown name and a known one with the wrong arity get different errors.
        guard ["encoding", "refcount", "idletime", "freq"].contains(sub) else {
            return call.reply(.error("ERR unknown subcommand '\(call.args.string(1))'. Try OBJECT HELP."))
        }
        guard call.args.count == 3 else {
            return call.reply(.error("ERR wrong number of arguments for 'object|\(sub)' command"))
        }
        let key = call.key(2)
        call.runOnKey(key, mode: .shared) { ctx in
            // OBJECT does not count as an access (no touch, no hit/miss).
            guard let found = key.withBytes({ ctx.database.find($0, hash: key.hash, nowMs: ctx.nowMs) }) else {
                return .null
            }
            let value = ctx.database.value(at: found)
            switch sub {
            case "encoding": return .bulkString(value.encodingName)
            case "refcount":
                if case .int(let v) = value, v >= 0 && v < 10000 { return .integer(Int(Int32.max)) }
                return .integer(1)
            case "idletime":
                if ctx.database.tracksFrequency {
                    return .error("ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.")
                }
                return .integer(Int(max(0, ctx.nowMs - ctx.database.lastAccessMs(at: found)) / 1000))
            default:
                if ctx.database.tracksFrequency { return .integer(ctx.database.accessFrequency(at: found, nowMs: ctx.nowMs)) }
                return .error("ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.")
            }
        }
    }
}
