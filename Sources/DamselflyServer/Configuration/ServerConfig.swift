import DamselflyCommands
import DamselflyStorage

/// Every server setting, with its default. Filled by `ConfigParser.parse` from, in increasing
/// precedence, the defaults, `DFLY_<flag>` environment variables, `--flagfile` and the command line.
public struct ServerConfig: Sendable, Equatable {
    /// --port: TCP port; 0 picks any free port.
    public var port: Int = 6379
    /// --bind: address to listen on; the safe default listens on loopback only.
    public var bind: String = "127.0.0.1"
    /// --admin_port: a second port for operators (Dragonfly's flag): RESP and HTTP
    /// `GET /metrics` as on the client port, but not counted against `maxclients`,
    /// so a server full of clients can still be inspected and scraped. 0 = off.
    public var adminPort: Int = 0
    /// --admin_bind: address the admin port listens on; empty = the `--bind` address.
    public var adminBind: String = ""
    /// --tls: the client port speaks TLS (Dragonfly's flag).
    public var tls: Bool = false
    /// --tls_port: a TLS port beside the plain one (Redis's `tls-port`); 0 = none.
    public var tlsPort: Int = 0
    /// --tls_cert_file / --tls_key_file: the server's certificate (chain) and key, PEM.
    public var tlsCertFile: String = ""
    public var tlsKeyFile: String = ""
    /// --tls_key_file_pass: the key file's passphrase, when it is encrypted.
    public var tlsKeyFilePass: String = ""
    /// --tls_ca_cert_file / --tls_ca_cert_dir: CAs that client certificates are verified against.
    public var tlsCaCertFile: String = ""
    public var tlsCaCertDir: String = ""
    /// --tls_auth_clients: yes (a client certificate is required, Redis's default), no, optional.
    public var tlsAuthClients: String = "yes"
    /// --tls_protocols: Redis's `tls-protocols` ("TLSv1.2 TLSv1.3"); empty = TLSv1.2 and later.
    public var tlsProtocols: String = ""
    /// --tls_ciphers (TLSv1.2 and below) / --tls_ciphersuites (TLSv1.3); empty = OpenSSL's defaults.
    public var tlsCiphers: String = ""
    public var tlsCiphersuites: String = ""
    /// --tls_prefer_server_ciphers: the server's cipher order wins (Redis's default: the client's).
    public var tlsPreferServerCiphers: Bool = false
    /// Every setting the TLS context is made from (CONFIG SET remakes it when one changes).
    var tlsSettings: [String] {
        [tlsCertFile, tlsKeyFile, tlsKeyFilePass, tlsCaCertFile, tlsCaCertDir, tlsAuthClients, tlsProtocols, tlsCiphers,
         tlsCiphersuites, String(tlsPreferServerCiphers)]
    }
    /// --requirepass: password for AUTH; empty = no authentication.
    public var requirepass: String = ""
    /// --aclfile: where ACL LOAD / ACL SAVE read and write users (loaded at start-up).
    public var aclfile: String = ""
    /// --maxmemory: bytes; 0 = no limit. Human sizes accepted (512mb, 4gb, 1g, 100k, 10kb).
    public var maxmemory: Int = 0
    /// --maxmemory_policy: which keys are evicted past maxmemory (Redis 7's policies).
    public var maxmemoryPolicy: String = "noeviction"
    /// --maxmemory_samples: keys sampled per eviction round (approximated LRU / LFU / TTL).
    public var maxmemorySamples: Int = 5
    /// CONFIG SET maxmemory-eviction-tenacity: accepted (Redis's time budget per eviction round).
    public var maxmemoryEvictionTenacity: Int = 10
    /// --lfu_log_factor: how slowly the LFU counter grows.
    public var lfuLogFactor: Int = 10
    /// --lfu_decay_time: minutes per decrement of an idle key's LFU counter.
    public var lfuDecayTime: Int = 1
    /// --notify_keyspace_events: keyspace notification classes (Redis's letters, as CONFIG GET
    /// shows them); empty = off.
    public var notifyKeyspaceEvents: String = ""
    /// --dbnum: number of logical databases (SELECT 0..dbnum-1).
    public var dbnum: Int = 16
    /// --proactor_threads: I/O threads; 0 = CPUs available to the process (resolved by the server).
    public var proactorThreads: Int = 0
    /// --num_shards: data shards; 0 = one per thread; never more than threads.
    public var numShards: Int = 0
    /// --force_epoll: use epoll instead of io_uring.
    public var forceEpoll: Bool = false
    /// --lock_on_hashtags: lock and shard keys by their {hashtag}.
    public var lockOnHashtags: Bool = false
    /// --dir: working directory for snapshots.
    public var dir: String = "."
    /// --migrate_connections: move a connection to the thread owning the shard its commands use.
    public var migrateConnections: Bool = true
    /// --pipeline_squash: the most pipelined commands dispatched together as one squashed run (0 = off).
    public var pipelineSquash: Int = 32
    /// --pipeline_squash_across_shards: a squashed run may hold commands of different shards
    /// (Dragonfly's squashing; their effects may then be seen out of order by other clients).
    public var pipelineSquashAcrossShards: Bool = false
    /// --pipeline_squash_transactions: a squashed run also takes this thread's shard's commands
    /// between another thread's, and runs as one transaction over both (in order, one round trip).
    public var pipelineSquashTransactions: Bool = true
    /// --pipeline_lookahead: the most pipelined commands whose keys are read, and whose
    /// lookups are started, ahead of their parse (0 = off).
    public var pipelineLookahead: Int = 16
    /// --multi_exec_squash: EXEC sends its commands' work to each shard as one
    /// operation, under the transaction's locks, instead of one hop per command.
    public var multiExecSquash: Bool = true
    /// --poll_before_sleep_us: how long a loop keeps polling its inbox after its last work before it sleeps.
    public var pollBeforeSleepMicros: Int = 0
    /// --appendonly: journal every write (per-shard files) and replay them at start-up.
    public var appendonly: Bool = false
    /// --appendfsync: always, everysec or no.
    public var appendfsync: String = "everysec"
    /// --appendfilename: base name of the journal files inside dir.
    public var appendfilename: String = "appendonly.aof"
    /// --save: Redis's snapshot rules, "<seconds> <changes>" pairs; empty disables them.
    public var save: String = ""
    /// --dbfilename: snapshot file name.
    public var dbfilename: String = "dump.rdb"
    /// --enable_protected_configs: whether CONFIG SET may change the protected
    /// parameters (`dir`, `dbfilename`): "no" (Redis 7's default), "yes", or
    /// "local" (only from loopback and Unix-socket clients).
    public var enableProtectedConfigs: String = "no"
    /// --protected_mode: with no password set, refuse clients that are not on
    /// this machine (Redis's protected mode; CONFIG SET protected-mode).
    public var protectedMode: Bool = true
    /// --max_bulk_len: largest bulk string accepted from clients, bytes (human sizes accepted).
    public var maxBulkLen: Int = 512 * 1024 * 1024
    /// --max_multibulk_len: most elements in one multibulk request.
    public var maxMultibulkLen: Int = 1024 * 1024
    /// --maxclients: most simultaneous client connections.
    public var maxclients: Int = 64000
    /// --mem_release_interval: seconds between returns of free memory to the kernel
    /// (receive-pool pages, malloc_trim); 0 = never.
    public var memReleaseInterval: Int = 10
    /// --timeout: idle client timeout in seconds; 0 = never.
    public var timeout: Int = 0
    /// --client_query_buffer_limit: a client whose unprocessed input grows past this is closed.
    public var clientQueryBufferLimit: Int = 1 << 30
    /// --client_output_buffer_limit: Redis's `<class> <hard> <soft> <seconds>` groups for the
    /// normal, replica (slave) and pubsub classes.
    public var clientOutputBufferLimit: String = ClientLimits.defaultOutputLimitText
    /// --tcp_keepalive: TCP keepalive interval in seconds; 0 = off.
    public var tcpKeepalive: Int = 300
    /// --logtostdout: log to standard output instead of standard error.
    public var logtostdout: Bool = false
    /// --loglevel: debug, verbose, notice or warning.
    public var loglevel: String = "notice"
    /// --singlehop_blocking: run blocking commands in a single hop when possible.
    public var singlehopBlocking: Bool = true
    /// --tx_schedule_timeout_ms: a transaction still waiting for its turn on a shard after
    /// this long is abandoned (if nothing of it ran) or reported; 0 = no watchdog.
    public var txScheduleTimeoutMs: Int = 30000
    /// --cluster_mode: Dragonfly's flag. Empty = standalone (CLUSTER refused, as Redis without
    /// `cluster-enabled`); "emulated" = answer CLUSTER as a one-node cluster owning every slot,
    /// so cluster-mode clients work unchanged.
    public var clusterMode: String = ""
    /// --replicaof: start as a replica of this master (`host:port` or `host port`); REPLICAOF
    /// keeps it current, so CONFIG REWRITE writes what a restart should be.
    public var replicaof: String = ""
    /// --shard_round_robin_prefix: keys with this prefix are spread round-robin over shards.
    public var shardRoundRobinPrefix: String = ""
    /// --pin_threads: pin thread i to CPU i.
    public var pinThreads: Bool = false
    /// --flagfile: the flag file that was read (INFO reports it as config_file).
    public var flagfile: String = ""
    /// --slowlog_log_slower_than: microseconds; -1 disables the slow log, 0 logs everything.
    public var slowlogLogSlowerThan: Int = 10000
    /// --slowlog_max_len: entries kept in the slow log.
    public var slowlogMaxLen: Int = 128
    /// --hz: background (active expiry) cycles per second, 1..500.
    public var hz: Int = 10
    /// --lua_time_limit: ms a script runs before other clients get BUSY (Redis's lua-time-limit).
    public var luaTimeLimit: Int = 5000
    /// --default_lua_flags: Dragonfly script flags (comma-separated) for scripts without a `--!df flags=` line.
    public var defaultLuaFlags: String = ""
    /// CONFIG SET hash-max-listpack-entries: a hash converts to "hashtable" past this many fields.
    public var hashMaxListpackEntries: Int = 512
    /// CONFIG SET hash-max-listpack-value: ... or with a field or value longer than this.
    public var hashMaxListpackValue: Int = 64
    /// CONFIG SET zset-max-listpack-entries: a sorted set converts to "skiplist" past this many members.
    public var zsetMaxListpackEntries: Int = 128
    /// CONFIG SET zset-max-listpack-value: ... or with a member longer than this.
    public var zsetMaxListpackValue: Int = 64
    /// CONFIG SET set-max-intset-entries: an integer set converts to "hashtable" past this many members.
    public var setMaxIntsetEntries: Int = 512
    /// CONFIG SET hll-sparse-max-bytes: a sparse HyperLogLog turns dense rather than grow past this.
    public var hllSparseMaxBytes: Int = 3000
    /// CONFIG SET stream-node-max-entries / -bytes: where a stream starts a new node.
    public var streamNodeMaxEntries: Int = 100
    public var streamNodeMaxBytes: Int = 4096
    /// Values CONFIG SET gave the Redis parameters Damselfly only stores (canonical name →
    /// value as CONFIG GET shows it); see ``RedisParameterTable``.
    public var redisParameters: [String: String] = [:]

    public init() {}

    /// The eviction settings the shards apply (the policy string was validated on the way in).
    public var evictionSettings: EvictionSettings {
        EvictionSettings(
            policy: EvictionPolicy(rawValue: maxmemoryPolicy) ?? .noEviction, samples: maxmemorySamples,
            tenacity: maxmemoryEvictionTenacity, lfuLogFactor: lfuLogFactor, lfuDecayMinutes: lfuDecayTime)
    }

    /// The version line printed by `--version`.
    public static let versionString = "damselfly v0.1.0"

    /// Redis's log levels, in increasing severity.
    public static let logLevels = ["debug", "verbose", "notice", "warning"]

    /// Checks every value and the relations between them (num_shards <= proactor_threads).
    public func validate() throws(ConfigError) {
        for flag in ConfigFlagSpec.all {
            try flag.validate(flag.get(self))
        }
        let unknownScriptFlags = ScriptFlags.parseList(Substring(defaultLuaFlags)).subtracting(ScriptFlags.known)
        if !unknownScriptFlags.isEmpty {
            throw .invalidValue(
                flag: "default_lua_flags", value: defaultLuaFlags,
                reason: "unknown script flag(s) \(unknownScriptFlags.sorted().joined(separator: ", ")); known: "
                    + ScriptFlags.known.sorted().joined(separator: ", "))
        }
        if KeyspaceEventClass.parse(notifyKeyspaceEvents) == nil {
            throw .invalidValue(
                flag: "notify_keyspace_events", value: notifyKeyspaceEvents,
                reason: "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")
        }
        if !replicaof.isEmpty, Self.replicaMaster(replicaof) == nil {
            throw .invalidValue(
                flag: "replicaof", value: replicaof, reason: "must be host:port or \"host port\" with a port in 0..65535")
        }
        if proactorThreads > 0, numShards > proactorThreads {
            throw .invalidValue(
                flag: "num_shards", value: String(numShards),
                reason: "must not exceed proactor_threads (\(proactorThreads))")
        }
    }

    /// `--replicaof`'s master: `host:port` (the last colon, so `::1:6379` works) or `host port`
    /// (redis.conf's `replicaof host port`); nil when it is neither.
    public static func replicaMaster(_ text: String) -> (host: String, port: Int)? {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\t" })
        let host: Substring, port: Substring
        if words.count == 2 {
            (host, port) = (words[0], words[1])
        } else if words.count == 1, let colon = text.lastIndex(of: ":") {
            (host, port) = (text[..<colon], text[text.index(after: colon)...])
        } else {
            return nil
        }
        guard !host.isEmpty, let number = Int(port), (0...65535).contains(number) else { return nil }
        return (String(host), number)
    }

    /// CONFIG GET replicaof's `host port`, empty on a master.
    var replicaofShown: String { Self.replicaMaster(replicaof).map { "\($0.host) \($0.port)" } ?? "" }

    /// Threads and shards once the zero defaults are resolved against the CPUs available.
    public func resolvedTopology(availableCPUs: Int) -> (threads: Int, shards: Int) {
        let threads = proactorThreads > 0 ? proactorThreads : max(1, availableCPUs)
        let shards = numShards > 0 ? min(numShards, threads) : threads
        return (threads, shards)
    }
}

public enum ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    case unknownFlag(String)
    case invalidValue(flag: String, value: String, reason: String)
    case missingValue(String)
    case unreadableFile(String)

    public var description: String {
        switch self {
        case .unknownFlag(let name): return "unknown command line flag '\(name)'"
        case .invalidValue(let flag, let value, let reason):
            return "invalid value '\(value)' for flag '\(flag)': \(reason)"
        case .missingValue(let name): return "flag '\(name)' is missing its value"
        case .unreadableFile(let path): return "can't read flagfile '\(path)'"
        }
    }
}

public enum ConfigAction: Equatable, Sendable {
    case run(ServerConfig)
    case help(String)
    case version(String)
}

// MARK: - Flag table

/// One command-line flag: its name as written (`port`, `proactor_threads`), how its value is
/// parsed, its allowed range and how it reads and writes `ServerConfig`.
struct ConfigFlagSpec: Sendable {
    enum Kind: Sendable, Equatable {
        case bool, int, size, string
        case choice([String])
    }

    enum Value: Sendable, Equatable {
        case bool(Bool)
        case int(Int)
        case string(String)
    }

    let name: String
    let kind: Kind
    let range: ClosedRange<Int>?
    let help: String
    let get: @Sendable (ServerConfig) -> Value
    let set: @Sendable (inout ServerConfig, Value) -> Void

    var isBool: Bool { kind == .bool }

    /// Value placeholder shown in help: `--port=<int>`.
    var placeholder: String {
        switch kind {
        case .bool: return "<bool>"
        case .int: return "<int>"
        case .size: return "<size>"
        case .string: return "<string>"
        case .choice(let options): return "<" + options.filter { !$0.isEmpty }.joined(separator: "|") + ">"
        }
    }

    /// Parses a textual value (from argv, the environment or a flagfile).
    func parse(_ text: String) throws(ConfigError) -> Value {
        let value: Value
        switch kind {
        case .bool:
            guard let b = parseConfigBool(text) else {
                throw .invalidValue(flag: name, value: text, reason: "must be a boolean (true/false, yes/no, 1/0)")
            }
            value = .bool(b)
        case .int:
            guard let n = Int(text) else {
                throw .invalidValue(flag: name, value: text, reason: "must be an integer")
            }
            value = .int(n)
        case .size:
            guard let n = parseHumanSize(text) else {
                throw .invalidValue(
                    flag: name, value: text,
                    reason: "must be a size in bytes, optionally with a unit (k, kb, m, mb, g, gb), e.g. 512mb")
            }
            value = .int(n)
        case .string:
            value = .string(text)
        case .choice(let options):
            let lowered = text.lowercased()
            guard options.contains(lowered) else {
                throw .invalidValue(flag: name, value: text, reason: "must be one of " + options.joined(separator: ", "))
            }
            value = .string(lowered)
        }
        try validate(value)
        return value
    }

    func validate(_ value: Value) throws(ConfigError) {
        guard let range, case .int(let n) = value, !range.contains(n) else { return }
        let text = String(n)
        if range.upperBound == Int.max {
            throw .invalidValue(flag: name, value: text, reason: "must be at least \(range.lowerBound)")
        }
        throw .invalidValue(
            flag: name, value: text, reason: "must be between \(range.lowerBound) and \(range.upperBound)")
    }

    /// The value in flag syntax: `true`, `6379`, `512mb`, `127.0.0.1`.
    func render(_ config: ServerConfig) -> String {
        switch get(config) {
        case .bool(let b): return b ? "true" : "false"
        case .int(let n): return kind == .size ? compactHumanSize(n) : String(n)
        case .string(let s): return s
        }
    }

    static func int(
        _ name: String, _ range: ClosedRange<Int>, _ help: String,
        _ keyPath: WritableKeyPath<ServerConfig, Int> & Sendable, size: Bool = false
    ) -> ConfigFlagSpec {
        ConfigFlagSpec(
            name: name, kind: size ? .size : .int, range: range, help: help,
            get: { .int($0[keyPath: keyPath]) },
            set: { config, value in if case .int(let n) = value { config[keyPath: keyPath] = n } })
    }

    static func bool(
        _ name: String, _ help: String, _ keyPath: WritableKeyPath<ServerConfig, Bool> & Sendable
    ) -> ConfigFlagSpec {
        ConfigFlagSpec(
            name: name, kind: .bool, range: nil, help: help,
            get: { .bool($0[keyPath: keyPath]) },
            set: { config, value in if case .bool(let b) = value { config[keyPath: keyPath] = b } })
    }

    static func string(
        _ name: String, _ help: String, _ keyPath: WritableKeyPath<ServerConfig, String> & Sendable,
        choices: [String]? = nil
    ) -> ConfigFlagSpec {
        ConfigFlagSpec(
            name: name, kind: choices.map { .choice($0) } ?? .string, range: nil, help: help,
            get: { .string($0[keyPath: keyPath]) },
            set: { config, value in if case .string(let s) = value { config[keyPath: keyPath] = s } })
    }

    /// Every flag but `--flagfile`, `--help` and `--version`, which the parser handles itself.
    static let all: [ConfigFlagSpec] = [
        .int("port", 0...65535, "TCP port to listen on; 0 picks any free port.", \.port),
        .string("bind", "Address to listen on; 0.0.0.0 listens on every interface.", \.bind),
        .int("admin_port", 0...65535, "Admin port (RESP and HTTP /metrics, not counted against maxclients); 0 = off.", \.adminPort),
        .string("admin_bind", "Address the admin port listens on; empty = the --bind address.", \.adminBind),
        .bool("tls", "The client port speaks TLS (needs tls_cert_file and tls_key_file).", \.tls),
        .int("tls_port", 0...65535, "A TLS port beside the plain one (Redis's tls-port); 0 = none.", \.tlsPort),
        .string("tls_cert_file", "Server certificate (chain), PEM.", \.tlsCertFile),
        .string("tls_key_file", "Server private key, PEM.", \.tlsKeyFile),
        .string("tls_key_file_pass", "Passphrase of an encrypted tls_key_file.", \.tlsKeyFilePass),
        .string("tls_ca_cert_file", "CA certificates (PEM) that client certificates are verified against.", \.tlsCaCertFile),
        .string("tls_ca_cert_dir", "Directory of CA certificates (c_rehash layout) for client verification.", \.tlsCaCertDir),
        .string("tls_auth_clients", "Client certificates: yes (required), no, or optional (verified when given).",
                \.tlsAuthClients, choices: ["yes", "no", "optional"]),
        .string("tls_protocols", "TLS versions allowed, e.g. \"TLSv1.2 TLSv1.3\"; empty = TLSv1.2 and later.", \.tlsProtocols),
        .string("tls_ciphers", "OpenSSL cipher list for TLSv1.2 and below; empty = OpenSSL's default.", \.tlsCiphers),
        .string("tls_ciphersuites", "OpenSSL ciphersuites for TLSv1.3; empty = OpenSSL's default.", \.tlsCiphersuites),
        .bool("tls_prefer_server_ciphers", "Pick the server's cipher order rather than the client's.", \.tlsPreferServerCiphers),
        .string("requirepass", "Password clients must AUTH with; empty disables authentication.", \.requirepass),
        .string("aclfile", "ACL users file: loaded at start-up, by ACL LOAD, written by ACL SAVE.", \.aclfile),
        .int("maxmemory", 0...Int.max, "Memory limit in bytes (human sizes like 512mb, 4gb accepted); 0 = no limit.",
             \.maxmemory, size: true),
        .string("maxmemory_policy", "Which keys are evicted past maxmemory: noeviction, allkeys-lru, allkeys-lfu, allkeys-random, volatile-lru, volatile-lfu, volatile-random or volatile-ttl.",
                \.maxmemoryPolicy, choices: EvictionPolicy.allCases.map(\.rawValue)),
        .int("maxmemory_samples", 1...Int(Int32.max), "Keys sampled per eviction round (higher: closer to true LRU/LFU, more CPU).", \.maxmemorySamples),
        .int("lfu_log_factor", 0...Int(Int32.max), "LFU counter growth: higher makes the counter grow more slowly.", \.lfuLogFactor),
        .int("lfu_decay_time", 0...Int(Int32.max), "Minutes after which an idle key's LFU counter is decremented; 0 = never.", \.lfuDecayTime),
        .string("notify_keyspace_events", "Keyspace notification classes, Redis's letters (e.g. KEA); empty = none.", \.notifyKeyspaceEvents),
        .int("dbnum", 1...1024, "Number of logical databases (SELECT 0..dbnum-1).", \.dbnum),
        .int("proactor_threads", 0...4096, "I/O threads; 0 = one per CPU available to the process.", \.proactorThreads),
        .int("num_shards", 0...4096, "Data shards; 0 = one per thread; must not exceed proactor_threads.", \.numShards),
        .bool("force_epoll", "Use epoll instead of io_uring for socket I/O.", \.forceEpoll),
        .int("mem_release_interval", 0...86_400, "Seconds between returns of free memory to the kernel: each io_uring thread's idle receive-buffer pages and glibc malloc's free pages (malloc_trim, with its trim threshold held at 128 KiB); 0 = never.", \.memReleaseInterval),
        .bool("lock_on_hashtags", "Shard and lock keys by their {hashtag} instead of the whole key.", \.lockOnHashtags),
        .string("dir", "Working directory for snapshot files.", \.dir),
        .string("dbfilename", "Snapshot file name inside dir.", \.dbfilename),
        .string("enable_protected_configs", "Whether CONFIG SET may change dir and dbfilename: no, yes, or local (loopback clients only).",
                \.enableProtectedConfigs, choices: ["no", "yes", "local"]),
        .bool("protected_mode", "With no requirepass, refuse clients not on this machine (Redis's protected mode).", \.protectedMode),
        .bool("migrate_connections", "Move a connection to the thread owning the shard its commands use (a blocking pop at once; other commands after 16 in a row on one shard), so they run inline.", \.migrateConnections),
        .int("pipeline_squash", 0...1024, "Pipelined commands of one key each are dispatched together, up to this many, without waiting for each other's replies, and answered in order; a run holds the commands of one other thread's shard (see pipeline_squash_across_shards) and goes there as one message (0 = off: each command waits for the one before; no effect with one thread).", \.pipelineSquash),
        .bool("pipeline_squash_across_shards", "A squashed run may also hold commands of different shards, one message per thread (Dragonfly's squashing): fewer round trips, but another client may see a pipeline's writes to different shards take effect out of order. Off: a run holds one shard's commands, and every client sees them in order.", \.pipelineSquashAcrossShards),
        .bool("pipeline_squash_transactions", "A squashed run of one other thread's shard also takes this thread's shard's commands between them, and runs as one transaction over the two shards (their keys locked on both): one round trip for the run, and every client still sees the pipeline's writes in order. Off: a run ends at each change of shard. No effect with pipeline_squash_across_shards.", \.pipelineSquashTransactions),
        .int("pipeline_lookahead", 0...1024, "Pipelined commands waiting in a connection's input whose keys are read ahead, up to this many: the memory reads of their lookups start together and overlap, instead of each command waiting for its own (0 = off).", \.pipelineLookahead),
        .bool("multi_exec_squash", "EXEC runs the queued commands of each shard as one operation there, all shards at once, under the transaction's locks (one round trip instead of one per command; commands with keys on several shards, WATCH, and keyless or whole-keyspace commands keep one command at a time).", \.multiExecSquash),
        .int("poll_before_sleep_us", 0...100_000, "Microseconds a thread keeps polling for messages from other threads before it sleeps (0 = sleep at once); trades CPU for hop latency.", \.pollBeforeSleepMicros),
        .bool("appendonly", "Journal every write command (one file per shard) and replay the journal at start-up.", \.appendonly),
        .string("appendfsync", "When the journal is fsynced: always (before the reply), everysec or no.", \.appendfsync),
        .string("appendfilename", "Base name of the journal files inside dir (<name>.<generation>.<shard>).", \.appendfilename),
        .string("save", "Snapshot rules as Redis writes them: \"<seconds> <changes> ...\" (e.g. \"3600 1 300 100 60 10000\"); empty disables automatic saves.", \.save),
        .int("max_bulk_len", 1...Int.max, "Largest bulk string accepted from a client, in bytes (human sizes accepted).",
             \.maxBulkLen, size: true),
        .int("max_multibulk_len", 1...Int.max, "Most elements accepted in one multibulk request.", \.maxMultibulkLen),
        .int("maxclients", 1...Int(UInt32.max), "Most simultaneous client connections.", \.maxclients),
        .int("timeout", 0...Int(Int32.max), "Close a client after this many idle seconds; 0 = never.", \.timeout),
        .int("client_query_buffer_limit", (1 << 20)...Int.max,
             "Close a client whose unprocessed input grows past this many bytes.", \.clientQueryBufferLimit, size: true),
        .string("client_output_buffer_limit",
                "Redis's '<class> <hard> <soft> <seconds>' groups (normal, replica, pubsub): close a client whose unsent replies reach hard, or stay above soft that long.",
                \.clientOutputBufferLimit),
        .int("tcp_keepalive", 0...Int(Int32.max), "TCP keepalive interval in seconds; 0 = disabled.", \.tcpKeepalive),
        .bool("logtostdout", "Write logs to standard output instead of standard error.", \.logtostdout),
        .string("loglevel", "Log verbosity: debug, verbose, notice or warning.", \.loglevel,
                choices: ServerConfig.logLevels),
        .bool("singlehop_blocking", "Run blocking commands in a single hop when the keys allow it.", \.singlehopBlocking),
        .int("tx_schedule_timeout_ms", 0...Int(Int32.max),
             "Abandon a multi-shard transaction still waiting for other transactions' locks after this many milliseconds (its client gets an error; if part of it already ran it is only logged); 0 = never.",
             \.txScheduleTimeoutMs),
        .string("cluster_mode", "Empty = standalone; emulated = answer CLUSTER as a one-node cluster owning all 16384 slots (for cluster-mode clients).",
                \.clusterMode, choices: ["", "emulated"]),
        .string("replicaof", "Start as a replica of this master: host:port or \"host port\" (Redis's replicaof); empty = a master. REPLICAOF changes it, so CONFIG REWRITE keeps it.",
                \.replicaof),
        .string("shard_round_robin_prefix", "Keys starting with this prefix are spread round-robin over shards; empty = off.",
                \.shardRoundRobinPrefix),
        .bool("pin_threads", "Pin thread i to CPU i.", \.pinThreads),
        .int("slowlog_log_slower_than", -1...Int.max,
             "Log commands slower than this many microseconds; -1 disables the slow log, 0 logs every command.",
             \.slowlogLogSlowerThan),
        .int("slowlog_max_len", 0...Int.max, "Entries kept in the slow log.", \.slowlogMaxLen),
        .int("hz", 1...500, "Background cycles (active expiry) per second, 1..500.", \.hz),
        .int("lua_time_limit", 0...Int(Int32.max),
             "Milliseconds a Lua script may run before other clients get BUSY and SCRIPT KILL may stop it.",
             \.luaTimeLimit),
        .string("default_lua_flags",
                "Script flags (comma-separated: allow-undeclared-keys, disable-atomicity) for scripts without a --!df flags= line.",
                \.defaultLuaFlags),
    ]

    static let byName: [String: ConfigFlagSpec] = {
        var table: [String: ConfigFlagSpec] = [:]
        for flag in all { table[flag.name] = flag }
        return table
    }()
}

/// Booleans as abseil flags accept them: true/false, t/f, yes/no, y/n, 1/0 (case-insensitive).
func parseConfigBool(_ text: String) -> Bool? {
    switch text.lowercased() {
    case "true", "t", "yes", "y", "1", "on": return true
    case "false", "f", "no", "n", "0", "off": return false
    default: return nil
    }
}
