import Testing
@testable import DamselflyServer
import CDamselfly
import DamselflyStorage
import Glibc

private func names(_ pairs: [(String, String)]) -> [String] { pairs.map(\.0) }

private func value(_ name: String, _ config: ServerConfig) -> String? {
    let pairs = ConfigParameters.get(name, from: config)
    return pairs.count == 1 ? pairs[0].1 : nil
}

@Suite struct ConfigGetTests {
    static let redisNames = [
        "port", "bind", "requirepass", "maxmemory", "databases", "dir", "dbfilename", "maxclients", "timeout",
        "tcp-keepalive", "loglevel", "proto-max-bulk-len", "slowlog-log-slower-than", "slowlog-max-len", "hz",
        "save", "appendonly", "appendfsync", "lua-time-limit", "busy-reply-threshold", "maxmemory-policy",
        "client-query-buffer-limit", "client-output-buffer-limit",
    ]

    /// Every name Redis 7.0 lists (the generated table), Damselfly's own settings among them.
    static let allNames = RedisParameterTable.generated.filter { !$0.hidden }.map(\.name)

    @Test func star() {
        let pairs = ConfigParameters.get("*", from: ServerConfig())
        #expect(Set(names(pairs)) == Set(Self.allNames))
        #expect(pairs.count == Self.allNames.count)  // each once
        #expect(Set(Self.redisNames).isSubset(of: Set(Self.allNames)))
        #expect(ConfigParameters.names.count == Self.allNames.count)
        #expect(Self.allNames.count > 180)
    }

    @Test func defaultValues() {
        let c = ServerConfig()
        let expected: [String: String] = [
            "port": "6379", "bind": "127.0.0.1", "requirepass": "", "maxmemory": "0", "databases": "16",
            "dir": ".", "dbfilename": "dump.rdb", "maxclients": "64000", "timeout": "0", "tcp-keepalive": "300",
            "loglevel": "notice", "proto-max-bulk-len": "536870912", "slowlog-log-slower-than": "10000",
            "slowlog-max-len": "128", "hz": "10", "save": "", "appendonly": "no", "appendfsync": "everysec", "maxmemory-policy": "noeviction",
            "lua-time-limit": "5000", "busy-reply-threshold": "5000", "client-query-buffer-limit": "1073741824",
            "client-output-buffer-limit": "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
        ]
        for (name, v) in ConfigParameters.get("*", from: c) where Self.redisNames.contains(name) {
            #expect(expected[name] == v, "\(name)")
        }
    }

    @Test func clientOutputBufferLimitKeepsTheClassesNotNamed() {
        var c = ServerConfig()
        #expect(ConfigParameters.set("client-output-buffer-limit", "pubsub 4mb 1mb 30", in: &c) == nil)
        #expect(c.clientOutputBufferLimit == "normal 0 0 0 slave 268435456 67108864 60 pubsub 4194304 1048576 30")
        #expect(ConfigParameters.set("client-output-buffer-limit", "normal 1mb", in: &c) != nil)
        #expect(ConfigParameters.set("client-output-buffer-limit", "other 1 1 1", in: &c) != nil)
        #expect(ConfigParameters.set("client-output-buffer-limit", "slave 1 2 3 NORMAL 4 5 6", in: &c) == nil)
        #expect(c.clientOutputBufferLimit == "normal 4 5 6 slave 1 2 3 pubsub 4194304 1048576 30")
    }

    @Test func prefixPattern() {
        #expect(Set(names(ConfigParameters.get("max*", from: ServerConfig())))
            == ["maxmemory", "maxclients", "maxmemory-policy", "maxmemory-clients", "maxmemory-eviction-tenacity",
                "maxmemory-samples"])
    }

    @Test func exactAndCaseInsensitive() {
        var c = ServerConfig()
        c.port = 7000
        #expect(ConfigParameters.get("port", from: c).map { [$0.0, $0.1] } == [["port", "7000"]])
        #expect(ConfigParameters.get("PORT", from: c).map { [$0.0, $0.1] } == [["port", "7000"]])
        #expect(ConfigParameters.get("nosuch", from: c).isEmpty)
        #expect(ConfigParameters.get("", from: c).isEmpty)
    }

    @Test func aliasesReportRedisNames() {
        var c = ServerConfig()
        c.dbnum = 4
        #expect(names(ConfigParameters.get("dbnum", from: c)) == ["databases"])
        #expect(value("dbnum", c) == "4")
        #expect(names(ConfigParameters.get("max_bulk_len", from: c)) == ["proto-max-bulk-len"])
        #expect(names(ConfigParameters.get("tcp_keepalive", from: c)) == ["tcp-keepalive"])
        #expect(names(ConfigParameters.get("slowlog_*", from: c)) == ["slowlog-log-slower-than", "slowlog-max-len"])
    }

    @Test func questionMarkAndClasses() {
        let c = ServerConfig()
        #expect(names(ConfigParameters.get("h?", from: c)) == ["hz"])
        #expect(Set(names(ConfigParameters.get("[pb]*", from: c)))
            == Set(Self.allNames.filter { $0.hasPrefix("p") || $0.hasPrefix("b") }))
        #expect(Set(names(ConfigParameters.get("d[^i]*", from: c)))
            == Set(Self.allNames.filter { $0.hasPrefix("d") && !$0.hasPrefix("di") }))
        #expect(names(ConfigParameters.get("[a-c]ind", from: c)) == ["bind"])
    }

    @Test func multiplePatterns() {
        let pairs = ConfigParameters.get(["port", "p*", "hz"], from: ServerConfig())
        // Damselfly's own settings first (table order), then the stored ones, each once.
        #expect(Array(names(pairs).prefix(3)) == ["port", "proto-max-bulk-len", "hz"])
        #expect(Set(names(pairs)) == Set(Self.allNames.filter { $0.hasPrefix("p") || $0 == "hz" }))
        #expect(names(pairs).count == Set(names(pairs)).count)
    }

    @Test func glob() {
        #expect(configGlobMatch("*", ""))
        #expect(configGlobMatch("a*b*c", "axxbyyc"))
        #expect(!configGlobMatch("a*b*c", "axxbyy"))
        #expect(configGlobMatch("a\\*", "a*"))
        #expect(!configGlobMatch("a\\*", "ab"))
        #expect(configGlobMatch("[\\]]", "]"))
        #expect(configGlobMatch("**x", "abx"))
        #expect(configGlobMatch("MaX*", "maxclients"))
        #expect(!configGlobMatch("?", ""))
    }
}

@Suite struct ConfigSetTests {
    @Test func validValues() {
        var c = ServerConfig()
        #expect(ConfigParameters.set("maxmemory", "1gb", in: &c) == nil)
        #expect(c.maxmemory == 1024 * 1024 * 1024)
        #expect(value("maxmemory", c) == "1073741824")
        #expect(ConfigParameters.set("maxmemory", "100", in: &c) == nil)
        #expect(c.maxmemory == 100)
        #expect(ConfigParameters.set("requirepass", "secret", in: &c) == nil)
        #expect(c.requirepass == "secret")
        #expect(ConfigParameters.set("TIMEOUT", "30", in: &c) == nil)
        #expect(c.timeout == 30)
        #expect(ConfigParameters.set("tcp-keepalive", "0", in: &c) == nil)
        #expect(c.tcpKeepalive == 0)
        #expect(ConfigParameters.set("maxclients", "10", in: &c) == nil)
        #expect(c.maxclients == 10)
        #expect(ConfigParameters.set("loglevel", "WARNING", in: &c) == nil)
        #expect(c.loglevel == "warning")
        #expect(ConfigParameters.set("proto-max-bulk-len", "1mb", in: &c) == nil)
        #expect(c.maxBulkLen == 1024 * 1024)
        #expect(ConfigParameters.set("slowlog-log-slower-than", "-1", in: &c) == nil)
        #expect(c.slowlogLogSlowerThan == -1)
        #expect(ConfigParameters.set("slowlog-max-len", "1000", in: &c) == nil)
        #expect(c.slowlogMaxLen == 1000)
        #expect(ConfigParameters.set("dbfilename", "other.rdb", in: &c) == nil)
        #expect(c.dbfilename == "other.rdb")
        #expect(ConfigParameters.set("dir", "/tmp", in: &c) == nil)
        #expect(c.dir == "/tmp")
        #expect(ConfigParameters.set("save", "", in: &c) == nil)
        #expect(ConfigParameters.set("appendonly", "no", in: &c) == nil)
        #expect(ConfigParameters.set("maxmemory-policy", "noeviction", in: &c) == nil)
        #expect(ConfigParameters.set("MAXMEMORY-POLICY", "AllKeys-LFU", in: &c) == nil)
        #expect(c.evictionSettings.policy == .allkeysLFU)
        #expect(ConfigParameters.set("maxmemory_samples", "9", in: &c) == nil)
        #expect(ConfigParameters.set("lfu-log-factor", "3", in: &c) == nil)
        #expect(ConfigParameters.set("lfu-decay-time", "0", in: &c) == nil)
        #expect(c.evictionSettings == EvictionSettings(policy: .allkeysLFU, samples: 9, tenacity: 10, lfuLogFactor: 3, lfuDecayMinutes: 0))
        #expect(ConfigParameters.get("maxmemory-policy", from: c).first?.1 == "allkeys-lfu")
    }

    @Test func aliases() {
        var c = ServerConfig()
        #expect(ConfigParameters.set("max_bulk_len", "2mb", in: &c) == nil)
        #expect(c.maxBulkLen == 2 * 1024 * 1024)
        #expect(ConfigParameters.set("slowlog_max_len", "5", in: &c) == nil)
        #expect(c.slowlogMaxLen == 5)
        #expect(ConfigParameters.set("tcp_keepalive", "5", in: &c) == nil)
        #expect(c.tcpKeepalive == 5)
    }

    @Test func hzIsClampedLikeRedis() {
        var c = ServerConfig()
        #expect(ConfigParameters.set("hz", "1000", in: &c) == nil)
        #expect(c.hz == 500)
        #expect(ConfigParameters.set("hz", "0", in: &c) == nil)
        #expect(c.hz == 1)
        #expect(ConfigParameters.set("hz", "-1", in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'hz') - argument must be between 0 and 2147483647 inclusive")
    }

    @Test func unknown() {
        var c = ServerConfig()
        #expect(ConfigParameters.set("foo", "1", in: &c) == "ERR Unknown option or number of arguments for CONFIG SET - 'foo'")
        #expect(c == ServerConfig())
    }

    @Test func invalidValues() {
        var c = ServerConfig()
        #expect(ConfigParameters.set("maxmemory", "lots", in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value")
        #expect(ConfigParameters.set("maxmemory", "-1", in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value")
        #expect(ConfigParameters.set("timeout", "abc", in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'timeout') - argument couldn't be parsed into an integer")
        #expect(ConfigParameters.set("maxclients", "0", in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument must be between 1 and 4294967295 inclusive")
        #expect(ConfigParameters.set("loglevel", "loud", in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'loglevel') - argument(s) must be one of the following: debug, verbose, notice, warning")
        #expect(ConfigParameters.set("appendonly", "maybe", in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'appendonly') - argument must be 'yes' or 'no'")
        #expect(ConfigParameters.set("appendonly", "yes", in: &c) != nil)
        #expect(ConfigParameters.set("maxmemory-policy", "lru-please", in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'maxmemory-policy') - argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction")
        #expect(ConfigParameters.set("maxmemory-samples", "0", in: &c) != nil)
        #expect(ConfigParameters.set("maxmemory-eviction-tenacity", "101", in: &c) != nil)
        #expect(ConfigParameters.set("dbfilename", "a/b.rdb", in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'dbfilename') - dbfilename can't be a path, just a filename")
        #expect(ConfigParameters.set("dir", "/nonexistent/dir", in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'dir') - No such file or directory")
        #expect(ConfigParameters.set("dir", "/etc/hostname", in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'dir') - Not a directory")
        #expect(c == ServerConfig())
    }

    @Test func immutable() {
        var c = ServerConfig()
        for name in ["databases", "dbnum", "daemonize", "io-threads"] {
            #expect(ConfigParameters.set(name, "1", in: &c)
                == "ERR CONFIG SET failed (possibly related to argument '\(name)') - can't set immutable config")
        }
        // Port and bind: Redis moves its listener; Damselfly refuses anything but the current
        // value, with Redis's own text for a port nothing could listen on.
        let busy = dfly_listen_tcp("127.0.0.1", 0, 1)
        #expect(busy >= 0)
        let busyPort = String(dfly_socket_port(busy))
        #expect(ConfigParameters.set("port", busyPort, in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'port') - Unable to listen on this port. Check server logs.")
        close(busy)
        #expect(ConfigParameters.set("port", busyPort, in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'port') - changing the port at runtime is not supported; restart with --port")
        #expect(ConfigParameters.set("port", "65536", in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'port') - argument must be between 0 and 65535 inclusive")
        #expect(ConfigParameters.set("port", String(c.port), in: &c) == nil)
        #expect(ConfigParameters.set("bind", "0.0.0.0", in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'bind') - changing bind at runtime is not supported; restart with --bind")
        #expect(c == ServerConfig())
    }

    /// Redis 7's protected configs: `dir` and `dbfilename` change through CONFIG SET
    /// only as `enable-protected-configs` allows (default no; local: loopback clients).
    @Test func protectedConfigs() {
        var c = ServerConfig()
        for name in ["dir", "DBFILENAME"] {
            #expect(ConfigParameters.set([(name, name == "dir" ? "/tmp" : "x.rdb")], in: &c)
                == "ERR CONFIG SET failed (possibly related to argument '\(name)') - can't set protected config")
        }
        #expect(ConfigParameters.set([("timeout", "5"), ("dir", "/tmp")], in: &c) != nil)
        #expect(c == ServerConfig())
        #expect(value("enable-protected-configs", c) == "no")
        #expect(ConfigParameters.set("enable-protected-configs", "yes", in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'enable-protected-configs') - can't set immutable config")
        c.enableProtectedConfigs = "local"
        #expect(value("enable-protected-configs", c) == "local")
        #expect(ConfigParameters.set([("dir", "/tmp")], in: &c, localClient: false) != nil)
        #expect(ConfigParameters.set([("dir", "/tmp")], in: &c, localClient: true) == nil)
        #expect(c.dir == "/tmp")
        c.enableProtectedConfigs = "yes"
        #expect(ConfigParameters.set([("dbfilename", "x.rdb")], in: &c, localClient: false) == nil)
        #expect(c.dbfilename == "x.rdb")
    }

    @Test func severalPairsAreAllOrNothing() {
        var c = ServerConfig()
        #expect(ConfigParameters.set([("timeout", "5"), ("hz", "20")], in: &c) == nil)
        #expect(c.timeout == 5 && c.hz == 20)
        #expect(ConfigParameters.set([("timeout", "6"), ("maxmemory", "bad")], in: &c) != nil)
        #expect(c.timeout == 5)
        #expect(ConfigParameters.set([("timeout", "6"), ("TIMEOUT", "7")], in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'TIMEOUT') - duplicate parameter")
        #expect(c.timeout == 5)
    }

    @Test func flagfileText() throws {
        var c = ServerConfig()
        c.maxmemory = 4 * 1024 * 1024 * 1024
        c.port = 7000
        let text = ConfigParameters.flagfileText(c)
        #expect(text.contains("\n--port=7000\n"))
        #expect(text.contains("\n--maxmemory=4gb\n"))
        #expect(text.contains("\n--force_epoll=false\n"))
        #expect(!text.contains("\n--flagfile="))
        for flag in ConfigFlagSpec.all {
            #expect(text.contains("\n--\(flag.name)="))
        }
    }
}

@Suite struct LuaTimeLimitParameterTests {
    @Test func setThroughEitherRedisName() {
        var c = ServerConfig()
        #expect(value("lua-time-limit", c) == "5000")
        #expect(ConfigParameters.set("busy-reply-threshold", "250", in: &c) == nil)
        #expect(c.luaTimeLimit == 250)
        #expect(ConfigParameters.get("busy-reply-threshold", from: c).map(\.0) == ["busy-reply-threshold"])
        #expect(value("lua-time-limit", c) == "250")
        #expect(ConfigParameters.set("lua-time-limit", "100", in: &c) == nil)
        #expect(c.luaTimeLimit == 100)
        #expect(ConfigParameters.set("lua-time-limit", "-1", in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'lua-time-limit') - argument must be between 0 and 9223372036854775807 inclusive")
        #expect(ConfigParameters.set("busy-reply-threshold", "abc", in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'busy-reply-threshold') - argument couldn't be parsed into an integer")
    }

    @Test func defaultLuaFlagsAreChecked() throws {
        let ok = try ConfigParser.parse(arguments: ["--default_lua_flags=allow-undeclared-keys, disable-atomicity"], environment: [:])
        guard case .run(let c) = ok else { Issue.record("expected run"); return }
        #expect(c.defaultLuaFlags == "allow-undeclared-keys, disable-atomicity")
        #expect(throws: ConfigError.self) {
            try ConfigParser.parse(arguments: ["--default_lua_flags=no-such-flag"], environment: [:])
        }
    }
}

@Suite struct RedisParameterTableTests {
    @Test func storedParametersValidateAndKeepTheirValue() {
        var c = ServerConfig()
        #expect(ConfigParameters.set("lazyfree-lazy-user-del", "YES", in: &c) == nil)
        #expect(value("lazyfree-lazy-user-del", c) == "yes")
        #expect(ConfigParameters.set("lazyfree-lazy-user-del", "maybe", in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'lazyfree-lazy-user-del') - argument must be 'yes' or 'no'")
        #expect(ConfigParameters.set("list-compress-depth", "-1", in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'list-compress-depth') - argument must be between 0 and 2147483647 inclusive")
        #expect(ConfigParameters.set("daemonize", "yes", in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'daemonize') - can't set immutable config")
        #expect(ConfigParameters.set("repl-backlog-size", "2mb", in: &c) == nil)
        #expect(value("repl-backlog-size", c) == "2097152")
    }

    @Test func aliasesShareOneValue() {
        var c = ServerConfig()
        #expect(ConfigParameters.set("list-max-ziplist-size", "-3", in: &c) == nil)
        #expect(value("list-max-listpack-size", c) == "-3")
        #expect(ConfigParameters.set("hash-max-ziplist-entries", "7", in: &c) == nil)
        #expect(c.hashMaxListpackEntries == 7)
        #expect(value("hash-max-listpack-entries", c) == "7")
        #expect(ConfigParameters.set([("slave-read-only", "no"), ("replica-read-only", "yes")], in: &c)
            == "ERR CONFIG SET failed (possibly related to argument 'replica-read-only') - duplicate parameter")
    }

    @Test func failingPairLeavesEverythingUnchanged() {
        var c = ServerConfig()
        let before = c
        #expect(ConfigParameters.set([("hz", "20"), ("activedefrag", "yes"), ("zset-max-listpack-entries", "x")], in: &c) != nil)
        #expect(c == before)
    }

    @Test func clientOutputBufferLimitUpdatesOneClass() {
        var c = ServerConfig()
        #expect(ConfigParameters.set("client-output-buffer-limit", "replica 1mb 1kb 5", in: &c) == nil)
        #expect(value("client-output-buffer-limit", c)
            == "normal 0 0 0 slave 1048576 1024 5 pubsub 33554432 8388608 60")
    }

    @Test func hiddenParametersOnlyByExactName() {
        #expect(value("key-load-delay", ServerConfig()) == "0")
        #expect(value("KEY-LOAD-DELAY", ServerConfig()) == "0")
        #expect(ConfigParameters.get("key-load-*", from: ServerConfig()).isEmpty)
        #expect(!ConfigParameters.names.contains("key-load-delay"))
    }

    @Test func portAndBindAcceptOnlyTheirCurrentValue() {
        var c = ServerConfig()
        #expect(ConfigParameters.set([("port", "6379"), ("bind", "127.0.0.1")], in: &c) == nil)
        #expect(ConfigParameters.set("port", "7000", in: &c) != nil)
        #expect(c.port == 6379)
    }

    @Test func keyspaceNotificationClassesParseAndPrintAsRedis() {
        var c = ServerConfig()
        #expect(ConfigParameters.set("notify-keyspace-events", "KEA", in: &c) == nil)
        #expect(ConfigParameters.get("notify-keyspace-events", from: c).first?.1 == "AKE")
        #expect(ConfigParameters.set("notify-keyspace-events", "gKE", in: &c) == nil)
        #expect(ConfigParameters.get("notify-keyspace-events", from: c).first?.1 == "gKE")
        #expect(ConfigParameters.set("notify-keyspace-events", "Em$n", in: &c) == nil)
        #expect(ConfigParameters.get("notify-keyspace-events", from: c).first?.1 == "$nEm")
        #expect(ConfigParameters.set("notify-keyspace-events", "KEQ", in: &c)?.contains("Invalid event class character") == true)
        #expect(c.notifyKeyspaceEvents == "Em$n")
        #expect(ConfigParameters.set("notify-keyspace-events", "", in: &c) == nil)
        #expect(KeyspaceEventClass.parse(c.notifyKeyspaceEvents) == [])
    }
}
