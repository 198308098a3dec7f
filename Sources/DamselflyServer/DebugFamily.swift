import DamselflyCommands
import DamselflyPersistence
import DamselflyRESP
import DamselflyRuntime
import DamselflyStorage
import DamselflyTransactions
import Glibc

/// DEBUG: the subcommands Redis's own test suite and operators call (OBJECT, SLEEP,
/// RELOAD, DIGEST, DIGEST-VALUE, SET-ACTIVE-EXPIRE, PROTOCOL, POPULATE, CHANGE-REPL-ID,
/// QUICKLIST-PACKED-THRESHOLD) plus Damselfly's SHARD. Introspection of an allocator or
/// heap this process does not have (JMAP, MALLCTL, MALLCTL-STR) says so in its error;
/// crash and leak subcommands (SEGFAULT, PANIC, LEAK, ...) answer Redis's unknown-subcommand error.
enum DebugFamily {
    static func register(_ r: CommandRegistry, server: Server) {
        r.register("debug", arity: -2, flags: [.admin, .noscript, .loading, .stale], group: "server") { call in
            debug(call, server: server)
        }
    }

    static func unknown(_ call: CommandCall) {
        call.reply(.error("ERR unknown subcommand or wrong number of arguments for '\(call.args.string(1))'. Try DEBUG HELP."))
    }

    static func debug(_ call: CommandCall, server: Server) {
        let n = call.args.count
        switch call.args.string(1).lowercased() {
        case "help" where n == 2:
            call.reply(.array(helpLines.map { .simple($0) }))
        case "sleep" where n == 3:
            // Blocks this thread as Redis's blocks its only one: the connections and
            // shards of the other threads go on.
            guard let seconds = call.double(2) else { return call.reply(.notFloat) }
            usleep(UInt32(max(0, min(seconds, 3600)) * 1_000_000))
            call.reply(.ok)
        case "shard" where n == 3:
            // Which shard owns a key (and so which thread runs its commands).
            let key = call.args[2]
            call.reply(.integer(call.shardSet.shardIndex(of: key, hash: KeyHash.hash(key))))
        case "object" where n == 3:
            object(call)
        case "set-active-expire" where n == 3:
            guard let flag = call.integer(2) else { return call.reply(.notInteger) }
            server.activeExpireEnabled.store(flag != 0, ordering: .relaxed)
            call.reply(.ok)
        case "set-disable-deny-scripts" where n == 3:
            guard let flag = call.integer(2) else { return call.reply(.notInteger) }
            call.engine.scripts.settings.denyDisabled.store(flag != 0, ordering: .relaxed)
            call.reply(.ok)
        case "change-repl-id" where n == 2, "quicklist-packed-threshold" where n == 3:
            // No replication IDs to rotate here, and lists have no packed-node threshold:
            // accepted as the no-ops they are for this server.
            call.reply(.ok)
        case "protocol" where n == 3:
            protocolSample(call)
        case "populate" where n >= 3 && n <= 5:
            populate(call)
        case "reload":
            reload(call, server: server)
        case "digest" where n == 2:
            call.shardSet.broadcast(from: call.loop, { shard in
                DebugDigest.shardPart(shard, nowMs: Clock.wallMillis())
            }, done: { parts in call.reply(.simple(DebugDigest.hex(DebugDigest.combine(parts)))) })
        case "digest-value":
            digestValues(call)
        case "jmap" where n == 2, "mallctl", "mallctl-str", "stringmatch-len":
            // Allocator and Java-heap introspection have no counterpart in this process.
            call.reply(.error("ERR DEBUG \(call.args.string(1).uppercased()) is not supported by Damselfly"))
        default:
            unknown(call)
        }
    }

    // MARK: - DIGEST-VALUE

    /// `DIGEST-VALUE key ...`: one status reply per key, its value's digest (all zeros when
    /// the key does not exist), each shard hashing the keys it owns.
    static func digestValues(_ call: CommandCall) {
        let keys = (2..<call.args.count).map { call.args.bytes($0) }
        let database = call.client.database
        let shardSet = call.shardSet
        shardSet.broadcast(from: call.loop, { shard -> [Int: DebugDigest.Digest] in
            let db = shard.database(database)
            let now = Clock.wallMillis()
            var found: [Int: DebugDigest.Digest] = [:]
            for (i, key) in keys.enumerated() {
                let hash = key.withUnsafeBytes { KeyHash.hash($0) }
                guard key.withUnsafeBytes({ shardSet.shardIndex(of: $0, hash: hash) }) == shard.index,
                      let entry = key.withUnsafeBytes({ db.find($0, hash: hash, nowMs: now) }) else { continue }
                found[i] = DebugDigest.valueDigest(db.value(at: entry), hasExpiry: db.expireTime(at: entry) != nil)
            }
            return found
        }, done: { parts in
            var merged: [Int: DebugDigest.Digest] = [:]
            for part in parts { merged.merge(part) { a, _ in a } }
            call.reply(.array(keys.indices.map { .simple(DebugDigest.hex(merged[$0] ?? DebugDigest.zero)) }))
        })
    }

    // MARK: - OBJECT

    /// Redis's line: `Value at:<addr> refcount:<n> encoding:<name> serializedlength:<n>
    /// lru:<clock> lru_seconds_idle:<n>`; the address is the entry's identity, not memory.
    static func object(_ call: CommandCall) {
        let key = call.key(2)
        call.runOnKey(key, mode: .shared) { ctx in
            guard let found = key.withBytes({ ctx.database.find($0, hash: key.hash, nowMs: ctx.nowMs) }) else {
                return .error("ERR no such key")
            }
            let value = ctx.database.value(at: found)
            var refcount = 1
            if case .int(let v) = value, v >= 0 && v < 10000 { refcount = Int(Int32.max) }
            // The DUMP payload less its type byte, RDB version and CRC: rdbSavedObjectLen.
            let serialized = DumpPayload.encode(RDBConversion.rdbValue(value)).count - 11
            let lastAccess = ctx.database.lastAccessMs(at: found)
            let lru = (lastAccess / 1000) & 0xFF_FFFF
            let idle = ctx.database.tracksFrequency ? 0 : max(0, ctx.nowMs - lastAccess) / 1000
            let address = String(UInt(bitPattern: Int(ctx.database.hash(at: found) & 0x7FFF_FFFF_FFFF)), radix: 16)
            return .simple(
                "Value at:0x\(address) refcount:\(refcount) encoding:\(value.encodingName) serializedlength:\(serialized) lru:\(lru) lru_seconds_idle:\(idle)")
        }
    }

    // MARK: - PROTOCOL

    static let protocolTypes = "string|integer|double|bignum|null|array|set|map|attrib|push|verbatim|true|false"

    /// A sample reply of each RESP type, as Redis's (its RESP2 fallbacks included).
    static func protocolSample(_ call: CommandCall) {
        let resp3 = call.client.protocolVersion == 3
        switch call.args.string(2).lowercased() {
        case "string": call.reply(.bulkString("Hello World"))
        case "integer": call.reply(.integer(12345))
        case "double": call.reply(.double(3.141))
        case "bignum":
            let digits = "1234567999999999999999999999999999999"
            call.reply(resp3 ? .raw(Array("(\(digits)\r\n".utf8)) : .bulkString(digits))
        case "null": call.reply(.null)
        case "array": call.reply(.array([.integer(0), .integer(1), .integer(2)]))
        case "set": call.reply(.set([.integer(0), .integer(1), .integer(2)]))
        case "map":
            call.reply(.map([(.integer(0), .boolean(false)), (.integer(1), .boolean(true)), (.integer(2), .boolean(false))]))
        case "attrib":
            let text = "Some real reply following the attribute"
            guard resp3 else { return call.reply(.bulkString(text)) }
            call.reply(.raw(Array("|1\r\n$14\r\nkey-popularity\r\n*2\r\n$7\r\nkey:123\r\n:90\r\n$\(text.utf8.count)\r\n\(text)\r\n".utf8)))
        case "push":
            guard resp3 else { return call.reply(.error("ERR RESP2 is not supported by this command")) }
            let text = "Some real reply following the push reply"
            call.reply(.raw(Array(">2\r\n$16\r\nserver-cpu-usage\r\n:42\r\n$\(text.utf8.count)\r\n\(text)\r\n".utf8)))
        case "verbatim": call.reply(.verbatim("This is a verbatim\nstring"))
        case "true": call.reply(.boolean(true))
        case "false": call.reply(.boolean(false))
        default:
            call.reply(.error("ERR Wrong protocol type name. Please use one of the following: \(protocolTypes)"))
        }
    }

    // MARK: - POPULATE

    /// `POPULATE count [prefix] [size]`: string keys `prefix:i` holding `value:i` (padded
    /// with zero bytes to `size`); keys that exist are left alone. Each shard writes its own.
    static func populate(_ call: CommandCall) {
        guard let count = call.integer(2), count >= 0 else {
            return call.reply(.error("ERR value is out of range, must be positive"))
        }
        let prefix = call.args.count >= 4 ? call.args.string(3) : "key"
        var size: Int? = nil
        if call.args.count == 5 {
            guard let s = call.integer(4), s >= 0 else { return call.reply(.error("ERR value is out of range, must be positive")) }
            size = Int(s)
        }
        let database = call.client.database
        let shardSet = call.shardSet
        shardSet.broadcast(from: call.loop, { shard -> Void in
            let db = shard.database(database)
            let now = Clock.wallMillis()
            for i in 0..<Int(count) {
                let key = Array("\(prefix):\(i)".utf8)
                let hash = key.withUnsafeBytes { KeyHash.hash($0) }
                guard key.withUnsafeBytes({ shardSet.shardIndex(of: $0, hash: hash) }) == shard.index else { continue }
                if key.withUnsafeBytes({ db.find($0, hash: hash, nowMs: now) }) != nil { continue }
                var value = Array("value:\(i)".utf8)
                if let size {
                    if value.count > size { value.removeLast(value.count - size) } else { value += [UInt8](repeating: 0, count: size - value.count) }
                }
                key.withUnsafeBytes { _ = db.insert($0, hash: hash, value: .bytes(value), expireAtMs: nil, nowMs: now) }
            }
            shard.publishStats()
        }, done: { _ in call.reply(.ok) })
    }

    // MARK: - RELOAD

    static let reloadOptionsError = "ERR DEBUG RELOAD only supports the MERGE, NOFLUSH and NOSAVE options."
    static let loadError = "ERR Error trying to load the RDB dump"

    /// `DEBUG RELOAD [MERGE] [NOFLUSH] [NOSAVE]`, as Redis's: save the snapshot (unless
    /// NOSAVE), empty the keyspace and the function libraries (unless NOFLUSH), then load the
    /// file into the running server. Without MERGE a key or library that is already there
    /// fails the load (Redis stops the server on such a key; here the key is kept and the
    /// load error answered); with it the file's version replaces it. The keys move in one
    /// global transaction, so no command sees half a reload.
    static func reload(_ call: CommandCall, server: Server) {
        var save = true, flush = true, merge = false
        for i in 2..<call.args.count {
            switch call.args.string(i).lowercased() {
            case "merge": merge = true
            case "noflush": flush = false
            case "nosave": save = false
            default: return call.reply(.error(reloadOptionsError))
            }
        }
        guard save else { return load(call, server: server, flush: flush, merge: merge) }
        server.snapshots.start(from: call.loop) { ok in
            // Redis answers a failed save with its bare shared.err.
            guard ok else { return call.reply(.error("ERR")) }
            load(call, server: server, flush: flush, merge: merge)
        }
    }

    private static func load(_ call: CommandCall, server: Server, flush: Bool, merge: Bool) {
        guard let bytes = server.snapshots.readFile(server.snapshots.path) else { return call.reply(.error(loadError)) }
        var reader = RDBReader(bytes: bytes)
        var entries: [RDBEntry] = []
        do {
            while let entry = try reader.next() { entries.append(entry) }
        } catch {
            return call.reply(.error(loadError))
        }
        let policy: FunctionRuntime.RestorePolicy = flush ? .flush : merge ? .replace : .append
        if case .failure = server.engine.functions.restore(reader.functionLibraries, policy: policy, loop: call.loop.index) {
            return call.reply(.error(loadError))
        }
        let shardSet = call.shardSet
        let databaseCount = server.engine.databaseCount
        if flush && shardSet.tracking.isActive { shardSet.tracking.onFlush?() }
        let transaction = call.abandonable(Transaction(globalOn: shardSet, loop: call.loop))
        transaction.schedule {
            transaction.execute(conclude: true, { shard -> Int in
                if flush {
                    shard.forgetTrackedKeys()
                    for db in shard.keyspace.databases { db.removeAll() }
                }
                let now = Clock.wallMillis()
                var refused = 0
                for entry in entries {
                    if let at = entry.expireAtMs, at <= now { continue }
                    guard entry.database < databaseCount else { continue }
                    let hash = entry.key.withUnsafeBytes { KeyHash.hash($0) }
                    guard entry.key.withUnsafeBytes({ shardSet.shardIndex(of: $0, hash: hash) }) == shard.index else { continue }
                    let db = shard.database(entry.database)
                    let value = RDBConversion.storedValue(entry.value)
                    entry.key.withUnsafeBytes { key in
                        if let existing = db.lookup(key, hash: hash) {
                            guard merge else { refused += 1; return }
                            db.remove(at: existing)
                        }
                        _ = db.insert(key, hash: hash, value: value, expireAtMs: entry.expireAtMs, nowMs: now)
                    }
                }
                if shard.hasBlockedClients { shard.signalWaitedKeys(database: nil) }
                shard.publishStats()
                return refused
            }, done: { refused in call.reply(refused.reduce(0, +) > 0 ? .error(loadError) : .ok) })
        }
    }

    static let helpLines = [
        "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CHANGE-REPL-ID",
        "    Accepted; Damselfly has no replication IDs to change.",
        "DIGEST",
        "    Output a hex signature representing the current DB content.",
        "DIGEST-VALUE <key> [<key> ...]",
        "    Output a hex signature of the values of all the specified keys.",
        "OBJECT <key>",
        "    Show low level info about `key` and associated value.",
        "POPULATE <count> [<prefix>] [<size>]",
        "    Create <count> string keys named key:<num>. If <prefix> is specified then",
        "    it is used instead of the 'key' prefix.",
        "PROTOCOL <type>",
        "    Reply with a test value of the specified type. <type> can be: string,",
        "    integer, double, bignum, null, array, set, map, attrib, push, verbatim,",
        "    true, false.",
        "QUICKLIST-PACKED-THRESHOLD <size>",
        "    Accepted; Damselfly's lists have no packed-node threshold.",
        "RELOAD [option ...]",
        "    Save the RDB on disk and reload it back to memory. Available <option> values:",
        "    * MERGE: Merge the content of the RDB file with the current dataset.",
        "    * NOFLUSH: Do not empty the dataset and the function libraries before loading.",
        "    * NOSAVE: Do not save the RDB before loading it.",
        "SET-ACTIVE-EXPIRE <0|1>",
        "    Setting it to 0 disables expiring keys in background when they are not",
        "    accessed (otherwise the Redis behavior). Setting it to 1 reenables back the",
        "    default.",
        "SET-DISABLE-DENY-SCRIPTS <0|1>",
        "    Enable or disable the prohibition on scripts calling commands they may not call.",
        "SHARD <key>",
        "    The index of the shard (and thread) that owns <key>.",
        "SLEEP <seconds>",
        "    Stop the server for <seconds>. Decimals allowed.",
        "HELP",
        "    Prints this help.",
    ]
}
