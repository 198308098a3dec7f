#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CDamselfly
import DamselflyStorage

/// The parameters CONFIG GET / CONFIG SET / CONFIG REWRITE see, under their Redis names, with
/// the Dragonfly flag names (underscores) accepted as aliases.
public enum ConfigParameters {
    /// (name, value) pairs whose name matches the glob pattern (case-insensitive; `*`, `?`,
    /// `[...]`, `\` escapes), each parameter once, under its Redis name, in table order.
    /// An alias matches exactly (`dbnum`), and a pattern containing `_` also matches the
    /// Dragonfly flag-name aliases as globs (`slowlog_*`).
    public static func get(_ pattern: String, from config: ServerConfig) -> [(String, String)] {
        get([pattern], from: config)
    }

    /// CONFIG GET with several patterns (Redis 7): each matching parameter once; Damselfly's
    /// own settings first, then the rest of Redis 7.0's table (``RedisParameterTable``).
    public static func get(_ patterns: [String], from config: ServerConfig) -> [(String, String)] {
        var result: [(String, String)] = []
        for parameter in table where patterns.contains(where: { parameter.matches($0) }) {
            result.append((parameter.name, parameter.get(config)))
        }
        for entry in RedisParameterTable.generated where implementedNames[entry.name] == nil
            && patterns.contains(where: { entry.matches($0) }) {
            result.append((entry.name, RedisParameterTable.value(entry, in: config)))
        }
        return result
    }

    /// The names CONFIG GET reports (Redis names): Damselfly's settings, then the stored ones.
    public static var names: [String] {
        table.map(\.name) + RedisParameterTable.generated.filter { !$0.hidden && implementedNames[$0.name] == nil }.map(\.name)
    }

    /// Applies CONFIG SET name value; nil on success, otherwise the Redis error text.
    public static func set(_ name: String, _ value: String, in config: inout ServerConfig) -> String? {
        guard let parameter = lookup(name) else {
            guard let entry = RedisParameterTable.byName[name.lowercased()] else {
                return "ERR Unknown option or number of arguments for CONFIG SET - '\(name)'"
            }
            switch RedisParameterTable.normalize(value, for: entry, current: RedisParameterTable.value(entry, in: config)) {
            case .success(let stored): config.redisParameters[entry.canonicalName] = stored; return nil
            case .failure(let reason): return failure(name, reason.text)
            }
        }
        guard let setter = parameter.set else {
            return failure(name, "can't set immutable config")
        }
        if let reason = setter(&config, value) {
            return failure(name, reason)
        }
        return nil
    }

    /// CONFIG SET with several name/value pairs (Redis 7): all or nothing. Returns nil on
    /// success or the error for the first pair that fails, leaving `config` unchanged.
    ///
    /// Protected parameters (Redis's PROTECTED_CONFIG: `dir`, `dbfilename`) change only
    /// as `enable-protected-configs` allows: "yes", or "local" for a `localClient`.
    public static func set(_ pairs: [(String, String)], in config: inout ServerConfig, localClient: Bool = true) -> String? {
        var updated = config
        var seen: Set<String> = []
        let protectedAllowed = config.enableProtectedConfigs == "yes" || (config.enableProtectedConfigs == "local" && localClient)
        for (name, value) in pairs {
            let canonical = lookup(name)?.name ?? RedisParameterTable.byName[name.lowercased()]?.canonicalName
            if let canonical, !seen.insert(canonical).inserted {
                return "ERR CONFIG SET failed (possibly related to argument '\(name)') - duplicate parameter"
            }
            if !protectedAllowed, let canonical, case .protected = RedisParameterTable.byName[canonical]?.kind {
                return failure(name, "can't set protected config")
            }
            if let error = set(name, value, in: &updated) { return error }
        }
        config = updated
        return nil
    }

    /// Makes the value encodings follow the thresholds in `config` (at start-up and after
    /// every CONFIG SET).
    public static func applyEncodingLimits(_ config: ServerConfig) {
        EncodingLimits.hashMaxListpackEntries.store(config.hashMaxListpackEntries, ordering: .relaxed)
        EncodingLimits.hashMaxListpackValue.store(config.hashMaxListpackValue, ordering: .relaxed)
        EncodingLimits.zsetMaxListpackEntries.store(config.zsetMaxListpackEntries, ordering: .relaxed)
        EncodingLimits.zsetMaxListpackValue.store(config.zsetMaxListpackValue, ordering: .relaxed)
        EncodingLimits.setMaxIntsetEntries.store(config.setMaxIntsetEntries, ordering: .relaxed)
        EncodingLimits.hllSparseMaxBytes.store(config.hllSparseMaxBytes, ordering: .relaxed)
        EncodingLimits.streamNodeMaxEntries.store(config.streamNodeMaxEntries, ordering: .relaxed)
        EncodingLimits.streamNodeMaxBytes.store(config.streamNodeMaxBytes, ordering: .relaxed)
    }

    /// CONFIG REWRITE's file content, in flagfile syntax: every flag with its current value,
    /// each preceded by its description. Feeding it back through `--flagfile` reproduces `config`.
    public static func flagfileText(_ config: ServerConfig) -> String {
        var lines = [
            "# Damselfly flagfile, written by CONFIG REWRITE (\(ServerConfig.versionString)).",
            "# Load it with: damselfly --flagfile=<this file>",
        ]
        for flag in ConfigFlagSpec.all {
            lines.append("")
            lines.append("# \(flag.help)")
            lines.append("--\(flag.name)=\(flag.render(config))")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: - Table

    struct Parameter: Sendable {
        let name: String
        let aliases: [String]
        let get: @Sendable (ServerConfig) -> String
        /// nil = immutable; otherwise returns the failure reason, or nil when applied.
        let set: (@Sendable (inout ServerConfig, String) -> String?)?

        /// Patterns match the Redis name, or an alias exactly; Dragonfly-style patterns
        /// (containing `_`) also match the flag-name aliases as globs, so `max*` finds `maxmemory` but not `max_bulk_len`.
        func matches(_ pattern: String) -> Bool {
            if configGlobMatch(pattern, name) || aliases.contains(pattern.lowercased()) { return true }
            return pattern.contains("_") && aliases.contains { configGlobMatch(pattern, $0) }
        }
    }

    static func failure(_ name: String, _ reason: String) -> String {
        "ERR CONFIG SET failed (possibly related to argument '\(name)') - \(reason)"
    }

    static func lookup(_ name: String) -> Parameter? {
        let lowered = name.lowercased()
        if let index = implementedNames[lowered] { return table[index] }
        return table.first { $0.aliases.contains(lowered) }
    }

    /// Damselfly's own settings by Redis name (index into ``table``).
    static let implementedNames: [String: Int] = {
        var names: [String: Int] = [:]
        for (i, parameter) in table.enumerated() { names[parameter.name] = i }
        return names
    }()

    // Value parsers returning the Redis failure reason.

    static func integer(_ text: String, _ range: ClosedRange<Int>) -> Result<Int, Reason> {
        guard let n = Int(text) else { return .failure(Reason("argument couldn't be parsed into an integer")) }
        guard range.contains(n) else {
            return .failure(Reason("argument must be between \(range.lowerBound) and \(range.upperBound) inclusive"))
        }
        return .success(n)
    }

    static func memory(_ text: String, _ range: ClosedRange<Int>) -> Result<Int, Reason> {
        guard let n = parseHumanSize(text) else { return .failure(Reason("argument must be a memory value")) }
        guard range.contains(n) else {
            return .failure(Reason("argument must be between \(range.lowerBound) and \(range.upperBound) inclusive"))
        }
        return .success(n)
    }

    struct Reason: Error { let text: String; init(_ text: String) { self.text = text } }

    static func intParameter(
        _ name: String, _ aliases: [String], _ range: ClosedRange<Int>,
        _ keyPath: WritableKeyPath<ServerConfig, Int> & Sendable, memory isMemory: Bool = false
    ) -> Parameter {
        Parameter(
            name: name, aliases: aliases, get: { String($0[keyPath: keyPath]) },
            set: { config, text in
                switch isMemory ? memory(text, range) : integer(text, range) {
                case .success(let n): config[keyPath: keyPath] = n; return nil
                case .failure(let reason): return reason.text
                }
            })
    }

    /// A TLS setting held as text (`tls-ciphers` → `tls_ciphers`); `choices` as Redis's enum check.
    static func tlsParameter(
        _ name: String, _ keyPath: WritableKeyPath<ServerConfig, String> & Sendable, choices: [String]? = nil
    ) -> Parameter {
        Parameter(
            name: name, aliases: [String(name.map { $0 == "-" ? "_" : $0 })], get: { $0[keyPath: keyPath] },
            set: { config, text in
                if let choices {
                    guard choices.contains(text.lowercased()) else {
                        return "argument(s) must be one of the following: " + choices.joined(separator: ", ")
                    }
                    config[keyPath: keyPath] = text.lowercased()
                } else {
                    config[keyPath: keyPath] = text
                }
                return nil
            })
    }

    static func immutable(_ name: String, _ aliases: [String], _ get: @escaping @Sendable (ServerConfig) -> String) -> Parameter {
        Parameter(name: name, aliases: aliases, get: get, set: nil)
    }

    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    static let table: [Parameter] = [
        // Redis can move its listener at run time; Damselfly cannot, so only the current value
        // is accepted (as Redis accepts it: a no-op). Another port is tried first, so a port
        // nobody could listen on gets Redis's own refusal (and the whole CONFIG SET rolls back).
        Parameter(
            name: "port", aliases: [], get: { String($0.port) },
            set: { config, text in
                let port: Int
                switch integer(text, 0...65535) {
                case .failure(let reason): return reason.text
                case .success(let n): port = n
                }
                if port == config.port { return nil }
                if port > 0 {
                    let probe = dfly_listen_tcp(config.bind, Int32(port), 1)
                    guard probe >= 0 else { return "Unable to listen on this port. Check server logs." }
                    close(probe)
                }
                return "changing the port at runtime is not supported; restart with --port"
            }),
        Parameter(
            name: "bind", aliases: [], get: { $0.bind },
            set: { config, text in
                text == config.bind ? nil : "changing bind at runtime is not supported; restart with --bind"
            }),
        Parameter(
            name: "requirepass", aliases: [], get: { $0.requirepass },
            set: { config, text in config.requirepass = text; return nil }),
        intParameter("maxmemory", [], 0...Int.max, \.maxmemory, memory: true),
        immutable("databases", ["dbnum"], { String($0.dbnum) }),
        // TLS: the port is fixed as the client port is; the rest rebuilds the context for new
        // connections after CONFIG SET (ServerFamily.config), as Redis does.
        Parameter(
            name: "tls-port", aliases: ["tls_port"], get: { String($0.tlsPort) },
            set: { config, text in
                Int(text) == config.tlsPort ? nil : "changing the TLS port at runtime is not supported; restart with --tls_port"
            }),
        tlsParameter("tls-cert-file", \.tlsCertFile),
        tlsParameter("tls-key-file", \.tlsKeyFile),
        tlsParameter("tls-key-file-pass", \.tlsKeyFilePass),
        tlsParameter("tls-ca-cert-file", \.tlsCaCertFile),
        tlsParameter("tls-ca-cert-dir", \.tlsCaCertDir),
        tlsParameter("tls-auth-clients", \.tlsAuthClients, choices: ["no", "yes", "optional"]),
        tlsParameter("tls-protocols", \.tlsProtocols),
        tlsParameter("tls-ciphers", \.tlsCiphers),
        tlsParameter("tls-ciphersuites", \.tlsCiphersuites),
        Parameter(
            name: "tls-prefer-server-ciphers", aliases: ["tls_prefer_server_ciphers"],
            get: { $0.tlsPreferServerCiphers ? "yes" : "no" },
            set: { config, text in
                switch text.lowercased() {
                case "yes": config.tlsPreferServerCiphers = true
                case "no": config.tlsPreferServerCiphers = false
                default: return "argument must be 'yes' or 'no'"
                }
                return nil
            }),
        immutable("enable-protected-configs", [], { $0.enableProtectedConfigs }),
        // Redis shows the master as `host port` (empty on a master), under both names.
        immutable("replicaof", [], { $0.replicaofShown }),
        immutable("slaveof", [], { $0.replicaofShown }),
        Parameter(
            name: "dir", aliases: [], get: { $0.dir },
            set: { config, text in
                // Redis chdir()s; the server owns the process directory, so only check it exists.
                guard !text.isEmpty, isDirectory(text) else {
                    return access(text, F_OK) == 0 ? "Not a directory" : "No such file or directory"
                }
                config.dir = text
                return nil
            }),
        Parameter(
            name: "dbfilename", aliases: [], get: { $0.dbfilename },
            set: { config, text in
                guard !text.isEmpty, !text.contains("/"), text != ".", text != ".." else {
                    return "dbfilename can't be a path, just a filename"
                }
                config.dbfilename = text
                return nil
            }),
        intParameter("maxclients", [], 1...Int(UInt32.max), \.maxclients),
        intParameter("timeout", [], 0...Int(Int32.max), \.timeout),
        intParameter(
            "client-query-buffer-limit", ["client_query_buffer_limit"], (1 << 20)...Int.max, \.clientQueryBufferLimit, memory: true),
        Parameter(
            name: "client-output-buffer-limit", aliases: ["client_output_buffer_limit"], get: { $0.clientOutputBufferLimit },
            set: { config, text in
                // Redis's texts for a malformed value come from the parameter table's check.
                let words = text.split(separator: " ").map(String.init)
                if case .failure(let reason) = RedisParameterTable.clientOutputBufferLimit(
                    words, current: config.clientOutputBufferLimit)
                {
                    return reason.text
                }
                let current = ClientLimits.parseOutputLimits(config.clientOutputBufferLimit, base: ClientLimits.defaultOutputLimits)
                guard let updated = ClientLimits.parseOutputLimits(text, base: current ?? ClientLimits.defaultOutputLimits) else {
                    return "argument must be a memory or percent value"
                }
                config.clientOutputBufferLimit = ClientLimits.render(updated)
                return nil
            }),
        intParameter("tcp-keepalive", ["tcp_keepalive"], 0...Int(Int32.max), \.tcpKeepalive),
        Parameter(
            name: "loglevel", aliases: [], get: { $0.loglevel },
            set: { config, text in
                let lowered = text.lowercased()
                guard ServerConfig.logLevels.contains(lowered) else {
                    return "argument(s) must be one of the following: " + ServerConfig.logLevels.joined(separator: ", ")
                }
                config.loglevel = lowered
                return nil
            }),
        intParameter("proto-max-bulk-len", ["max_bulk_len", "proto_max_bulk_len"], 1...Int.max, \.maxBulkLen, memory: true),
        intParameter("slowlog-log-slower-than", ["slowlog_log_slower_than"], -1...Int.max, \.slowlogLogSlowerThan),
        intParameter("slowlog-max-len", ["slowlog_max_len"], 0...Int.max, \.slowlogMaxLen),
        Parameter(
            name: "hz", aliases: [], get: { String($0.hz) },
            set: { config, text in
                // Like Redis: any non-negative int is accepted and clamped to 1..500.
                switch integer(text, 0...Int(Int32.max)) {
                case .success(let n): config.hz = min(max(n, 1), 500); return nil
                case .failure(let reason): return reason.text
                }
            }),
        Parameter(
            name: "save", aliases: [], get: { $0.save },
            set: { config, text in
                let parts = text.split(separator: " ")
                guard parts.count % 2 == 0, parts.allSatisfy({ Int($0) != nil }) else { return "Invalid save parameters" }
                config.save = text
                return nil
            }),
        Parameter(
            name: "protected-mode", aliases: [], get: { $0.protectedMode ? "yes" : "no" },
            set: { config, text in
                switch text.lowercased() {
                case "no", "yes": config.protectedMode = text.lowercased() == "yes"; return nil
                default: return "argument must be 'yes' or 'no'"
                }
            }),
        Parameter(
            name: "appendonly", aliases: [], get: { $0.appendonly ? "yes" : "no" },
            set: { config, text in
                switch text.lowercased() {
                case "no", "yes":
                    return (text.lowercased() == "yes") == config.appendonly
                        ? nil : "changing appendonly at runtime is not supported; restart with --appendonly"
                default: return "argument must be 'yes' or 'no'"
                }
            }),
        Parameter(
            name: "appendfsync", aliases: [], get: { $0.appendfsync },
            set: { config, text in
                guard ["always", "everysec", "no"].contains(text.lowercased()) else {
                    return "argument(s) must be one of the following: always, everysec, no"
                }
                return text.lowercased() == config.appendfsync ? nil : "changing appendfsync at runtime is not supported"
            }),
        // Redis 7 lists both names (busy-reply-threshold is the new one) and
        // answers CONFIG GET under the name asked: two parameters, one setting.
        intParameter("busy-reply-threshold", [], 0...Int.max, \.luaTimeLimit),
        intParameter("lua-time-limit", ["lua_time_limit"], 0...Int.max, \.luaTimeLimit),
        // Encoding thresholds: honoured by the hash, sorted set and set encodings
        // (``EncodingLimits``); the ziplist names are Redis 7.0's aliases, one setting.
        intParameter("hash-max-listpack-entries", [], 0...Int.max, \.hashMaxListpackEntries),
        intParameter("hash-max-ziplist-entries", [], 0...Int.max, \.hashMaxListpackEntries),
        intParameter("hash-max-listpack-value", [], 0...Int.max, \.hashMaxListpackValue, memory: true),
        intParameter("hash-max-ziplist-value", [], 0...Int.max, \.hashMaxListpackValue, memory: true),
        intParameter("zset-max-listpack-entries", [], 0...Int.max, \.zsetMaxListpackEntries),
        intParameter("zset-max-ziplist-entries", [], 0...Int.max, \.zsetMaxListpackEntries),
        intParameter("zset-max-listpack-value", [], 0...Int.max, \.zsetMaxListpackValue, memory: true),
        intParameter("zset-max-ziplist-value", [], 0...Int.max, \.zsetMaxListpackValue, memory: true),
        intParameter("set-max-intset-entries", [], 0...Int.max, \.setMaxIntsetEntries),
        intParameter("hll-sparse-max-bytes", [], 0...Int.max, \.hllSparseMaxBytes, memory: true),
        intParameter("stream-node-max-entries", [], 0...Int.max, \.streamNodeMaxEntries),
        intParameter("stream-node-max-bytes", [], 0...Int.max, \.streamNodeMaxBytes, memory: true),
        Parameter(
            name: "maxmemory-policy", aliases: ["maxmemory_policy"], get: { $0.maxmemoryPolicy },
            set: { config, text in
                guard let policy = EvictionPolicy(rawValue: text.lowercased()) else {
                    return "argument(s) must be one of the following: " + EvictionPolicy.allCases.map(\.rawValue).joined(separator: ", ")
                }
                config.maxmemoryPolicy = policy.rawValue
                return nil
            }),
        intParameter("maxmemory-samples", ["maxmemory_samples"], 1...Int(Int32.max), \.maxmemorySamples),
        intParameter("maxmemory-eviction-tenacity", [], 0...100, \.maxmemoryEvictionTenacity),
        intParameter("lfu-log-factor", ["lfu_log_factor"], 0...Int(Int32.max), \.lfuLogFactor),
        intParameter("lfu-decay-time", ["lfu_decay_time"], 0...Int(Int32.max), \.lfuDecayTime),
        Parameter(
            name: "notify-keyspace-events", aliases: ["notify_keyspace_events"],
            get: { KeyspaceEventClass.parse($0.notifyKeyspaceEvents)?.canonicalText ?? "" },
            set: { config, text in
                guard KeyspaceEventClass.parse(text) != nil else {
                    return "Invalid event class character. Use 'Ag$lshzxeKEtmdn'."
                }
                // The text as given: Redis's printed form can drop a class ("Anm" shows as "Am").
                config.notifyKeyspaceEvents = text
                return nil
            }),
    ]
}

/// Redis's `stringmatchlen` glob: `*`, `?`, `[abc]`, `[^a-z]`, `\x` escapes; case-insensitive.
func configGlobMatch(_ pattern: String, _ string: String) -> Bool {
    let p = Array(pattern.lowercased().utf8), s = Array(string.lowercased().utf8)
    return configGlobMatch(p, 0, s, 0)
}

private func configGlobMatch(_ p: [UInt8], _ pi: Int, _ s: [UInt8], _ si: Int) -> Bool {
    var pi = pi, si = si
    while pi < p.count {
        switch p[pi] {
        case UInt8(ascii: "*"):
            while pi + 1 < p.count, p[pi + 1] == UInt8(ascii: "*") { pi += 1 }
            if pi + 1 == p.count { return true }
            for start in si...s.count where configGlobMatch(p, pi + 1, s, start) { return true }
            return false
        case UInt8(ascii: "?"):
            guard si < s.count else { return false }
            si += 1
        case UInt8(ascii: "["):
            guard si < s.count else { return false }
            pi += 1
            let negate = pi < p.count && p[pi] == UInt8(ascii: "^")
            if negate { pi += 1 }
            var matched = false
            while pi < p.count, p[pi] != UInt8(ascii: "]") {
                if p[pi] == UInt8(ascii: "\\"), pi + 1 < p.count {
                    pi += 1
                    if p[pi] == s[si] { matched = true }
                } else if pi + 2 < p.count, p[pi + 1] == UInt8(ascii: "-"), p[pi + 2] != UInt8(ascii: "]") {
                    let lo = min(p[pi], p[pi + 2]), hi = max(p[pi], p[pi + 2])
                    if s[si] >= lo, s[si] <= hi { matched = true }
                    pi += 2
                } else if p[pi] == s[si] {
                    matched = true
                }
                pi += 1
            }
            // pi is at ']' (or past the end for an unterminated class, which Redis also tolerates).
            if matched == negate { return false }
            si += 1
        case UInt8(ascii: "\\") where pi + 1 < p.count:
            pi += 1
            guard si < s.count, p[pi] == s[si] else { return false }
            si += 1
        default:
            guard si < s.count, p[pi] == s[si] else { return false }
            si += 1
        }
        pi += 1
    }
    return si == s.count
}
