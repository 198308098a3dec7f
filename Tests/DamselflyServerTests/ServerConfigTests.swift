import Testing
@testable import DamselflyServer

private func config(_ arguments: [String], env: [String: String] = [:]) throws -> ServerConfig {
    let action = try ConfigParser.parse(arguments: arguments, environment: env)
    guard case .run(let config) = action else {
        Issue.record("expected .run, got \(action)")
        return ServerConfig()
    }
    return config
}

private func parseError(_ arguments: [String], env: [String: String] = [:]) -> ConfigError? {
    do {
        _ = try ConfigParser.parse(arguments: arguments, environment: env)
        return nil
    } catch {
        return error
    }
}

@Suite struct ServerConfigDefaultsTests {
    @Test func defaults() throws {
        let c = try config([])
        #expect(c == ServerConfig())
        #expect(c.port == 6379)
        #expect(c.bind == "127.0.0.1")
        #expect(c.requirepass == "")
        #expect(c.maxmemory == 0)
        #expect(c.memReleaseInterval == 10)
        #expect(try config(["--mem_release_interval=0"]).memReleaseInterval == 0)
        #expect(c.dbnum == 16)
        #expect(c.proactorThreads == 0)
        #expect(c.numShards == 0)
        #expect(!c.forceEpoll)
        #expect(!c.lockOnHashtags)
        #expect(c.dir == ".")
        #expect(c.dbfilename == "dump.rdb")
        #expect(c.maxBulkLen == 512 * 1024 * 1024)
        #expect(c.maxMultibulkLen == 1024 * 1024)
        #expect(c.maxclients == 64000)
        #expect(c.timeout == 0)
        #expect(c.tcpKeepalive == 300)
        #expect(!c.logtostdout)
        #expect(c.loglevel == "notice")
        #expect(c.singlehopBlocking)
        #expect(c.shardRoundRobinPrefix == "")
        #expect(!c.pinThreads)
        #expect(c.flagfile == "")
        #expect(c.slowlogLogSlowerThan == 10000)
        #expect(c.slowlogMaxLen == 128)
        #expect(c.hz == 10)
        try ServerConfig().validate()
    }

    @Test func resolvedTopology() {
        var c = ServerConfig()
        #expect(c.resolvedTopology(availableCPUs: 4) == (4, 4))
        #expect(c.resolvedTopology(availableCPUs: 0) == (1, 1))
        c.proactorThreads = 3
        #expect(c.resolvedTopology(availableCPUs: 8) == (3, 3))
        c.numShards = 2
        #expect(c.resolvedTopology(availableCPUs: 8) == (3, 2))
        c.proactorThreads = 0
        c.numShards = 16
        #expect(c.resolvedTopology(availableCPUs: 4) == (4, 4))
    }
}

@Suite struct ServerConfigSyntaxTests {
    @Test(arguments: [
        ["--port=7000"], ["--port", "7000"], ["-port=7000"], ["-port", "7000"],
    ])
    func valueSyntaxes(_ arguments: [String]) throws {
        #expect(try config(arguments).port == 7000)
    }

    @Test func everyFlagFromTheCommandLine() throws {
        let c = try config([
            "--port=0", "--bind", "0.0.0.0", "--requirepass=s3cret", "--maxmemory=4gb", "--dbnum=32",
            "--proactor_threads=4", "--num_shards=2", "--force_epoll", "--lock_on_hashtags=true",
            "--dir=/var/lib/damselfly", "--dbfilename=snap.rdb", "--max_bulk_len=1mb",
            "--max_multibulk_len=1000", "--maxclients=10", "--timeout=30", "--tcp_keepalive=60",
            "--logtostdout", "--loglevel=WARNING", "--nosinglehop_blocking", "--shard_round_robin_prefix=rr:",
            "--pin_threads", "--slowlog_log_slower_than=-1", "--slowlog_max_len=7", "--hz=100",
        ])
        var expected = ServerConfig()
        expected.port = 0
        expected.bind = "0.0.0.0"
        expected.requirepass = "s3cret"
        expected.maxmemory = 4 * 1024 * 1024 * 1024
        expected.dbnum = 32
        expected.proactorThreads = 4
        expected.numShards = 2
        expected.forceEpoll = true
        expected.lockOnHashtags = true
        expected.dir = "/var/lib/damselfly"
        expected.dbfilename = "snap.rdb"
        expected.maxBulkLen = 1024 * 1024
        expected.maxMultibulkLen = 1000
        expected.maxclients = 10
        expected.timeout = 30
        expected.tcpKeepalive = 60
        expected.logtostdout = true
        expected.loglevel = "warning"
        expected.singlehopBlocking = false
        expected.shardRoundRobinPrefix = "rr:"
        expected.pinThreads = true
        expected.slowlogLogSlowerThan = -1
        expected.slowlogMaxLen = 7
        expected.hz = 100
        #expect(c == expected)
    }

    @Test func laterFlagsWin() throws {
        #expect(try config(["--port=1", "--port=2"]).port == 2)
        #expect(try config(["--force_epoll", "--noforce_epoll"]).forceEpoll == false)
    }

    @Test func dashesInNamesAreAccepted() throws {
        #expect(try config(["--proactor-threads=3"]).proactorThreads == 3)
    }

    @Test func valuesMayContainEqualsSigns() throws {
        #expect(try config(["--requirepass=a=b"]).requirepass == "a=b")
        #expect(try config(["--requirepass="]).requirepass == "")
    }

    @Test func negativeValueAsSeparateArgument() throws {
        #expect(try config(["--slowlog_log_slower_than", "-1"]).slowlogLogSlowerThan == -1)
    }

    @Test func doubleDashEndsFlags() throws {
        #expect(try config(["--port=5", "--", "--port=6"]).port == 5)
    }
}

@Suite struct ServerConfigBooleanTests {
    @Test(arguments: [
        ("--force_epoll", true), ("--noforce_epoll", false),
        ("--force_epoll=true", true), ("--force_epoll=false", false),
        ("--force_epoll=1", true), ("--force_epoll=0", false),
        ("--force_epoll=yes", true), ("--force_epoll=no", false),
        ("--force_epoll=TRUE", true), ("-force_epoll", true), ("-noforce_epoll", false),
    ])
    func forms(_ argument: String, _ expected: Bool) throws {
        #expect(try config([argument]).forceEpoll == expected)
    }

    @Test func bareBooleanDoesNotConsumeTheNextArgument() throws {
        let c = try config(["--pin_threads", "--port=7001"])
        #expect(c.pinThreads)
        #expect(c.port == 7001)
    }

    @Test func noPrefixDefaultTrueFlag() throws {
        #expect(try config(["--nosinglehop_blocking"]).singlehopBlocking == false)
    }

    @Test func invalidBoolean() {
        #expect(parseError(["--force_epoll=maybe"])
            == .invalidValue(flag: "force_epoll", value: "maybe", reason: "must be a boolean (true/false, yes/no, 1/0)"))
    }
}

@Suite struct ServerConfigPrecedenceTests {
    @Test func environmentVariables() throws {
        let c = try config([], env: ["DFLY_port": "7000", "DFLY_force_epoll": "true", "DFLY_MAXMEMORY": "1gb", "PATH": "/bin"])
        #expect(c.port == 7000)
        #expect(c.forceEpoll)
        #expect(c.maxmemory == 1024 * 1024 * 1024)
    }

    @Test func exactCaseEnvironmentWinsOverUpperCase() throws {
        #expect(try config([], env: ["DFLY_port": "1", "DFLY_PORT": "2"]).port == 1)
    }

    @Test func unknownEnvironmentVariablesAreIgnored() throws {
        #expect(try config([], env: ["DFLY_nonsense": "1"]) == ServerConfig())
    }

    @Test func invalidEnvironmentValue() {
        #expect(parseError([], env: ["DFLY_port": "x"])
            == .invalidValue(flag: "port", value: "x", reason: "must be an integer"))
    }

    @Test func environmentThenFlagfileThenCommandLine() throws {
        let path = writeTempConfigFile("""
            # comment
            --port=7001
            --dbnum=8

              --force_epoll=false   
            """)
        defer { removeTempConfigFile(path) }
        let env = ["DFLY_port": "7000", "DFLY_dbnum": "4", "DFLY_hz": "50", "DFLY_force_epoll": "true"]

        let envOnly = try config([], env: env)
        #expect(envOnly.port == 7000 && envOnly.dbnum == 4 && envOnly.hz == 50 && envOnly.forceEpoll)

        let withFile = try config(["--flagfile=\(path)"], env: env)
        #expect(withFile.port == 7001)
        #expect(withFile.dbnum == 8)
        #expect(withFile.hz == 50)
        #expect(!withFile.forceEpoll)
        #expect(withFile.flagfile == path)

        // Command-line flags override the flagfile whichever side of --flagfile they are on.
        let before = try config(["--port=7002", "--flagfile", path], env: env)
        #expect(before.port == 7002 && before.dbnum == 8)
        let after = try config(["--flagfile=\(path)", "--dbnum=2"], env: env)
        #expect(after.port == 7001 && after.dbnum == 2)
    }

    @Test func flagfileFromEnvironment() throws {
        let path = writeTempConfigFile("--port=7100\n")
        defer { removeTempConfigFile(path) }
        let c = try config([], env: ["DFLY_flagfile": path])
        #expect(c.port == 7100)
        #expect(c.flagfile == path)
    }

    @Test func flagfileSyntaxes() throws {
        let path = writeTempConfigFile("""
            \t--port 7003\t
            -bind=0.0.0.0
            --pin_threads
            --nosinglehop_blocking
            --requirepass=pass word # not a comment
            --maxmemory=512MB\r
            # --dbnum=99
            """)
        defer { removeTempConfigFile(path) }
        let c = try config(["--flagfile=\(path)"])
        #expect(c.port == 7003)
        #expect(c.bind == "0.0.0.0")
        #expect(c.pinThreads)
        #expect(!c.singlehopBlocking)
        #expect(c.requirepass == "pass word # not a comment")
        #expect(c.maxmemory == 512 * 1024 * 1024)
        #expect(c.dbnum == 16)
    }

    @Test func nestedFlagfile() throws {
        let inner = writeTempConfigFile("--port=7004\n--hz=20\n")
        defer { removeTempConfigFile(inner) }
        let outer = writeTempConfigFile("--port=1\n--flagfile=\(inner)\n--hz=30\n")
        defer { removeTempConfigFile(outer) }
        let c = try config(["--flagfile=\(outer)"])
        #expect(c.port == 7004)
        #expect(c.hz == 30)
        #expect(c.flagfile == outer)
    }

    @Test func unreadableFlagfile() {
        #expect(parseError(["--flagfile=/nonexistent/damselfly.conf"]) == .unreadableFile("/nonexistent/damselfly.conf"))
        #expect(parseError(["--flagfile=/tmp"]) == .unreadableFile("/tmp"))
    }

    @Test func errorsInsideFlagfile() {
        let path = writeTempConfigFile("--bogus=1\n")
        defer { removeTempConfigFile(path) }
        #expect(parseError(["--flagfile=\(path)"]) == .unknownFlag("bogus"))
        let path2 = writeTempConfigFile("--port\n")
        defer { removeTempConfigFile(path2) }
        #expect(parseError(["--flagfile=\(path2)"]) == .missingValue("port"))
    }

    @Test func rewrittenFlagfileRoundTrips() throws {
        var c = ServerConfig()
        c.port = 7777
        c.requirepass = "pw"
        c.maxmemory = 1_000_000
        c.maxBulkLen = 3 * 1024 * 1024
        c.forceEpoll = true
        c.singlehopBlocking = false
        c.loglevel = "debug"
        c.shardRoundRobinPrefix = ""
        c.slowlogLogSlowerThan = -1
        let path = writeTempConfigFile(ConfigParameters.flagfileText(c))
        defer { removeTempConfigFile(path) }
        var parsed = try config(["--flagfile=\(path)"])
        #expect(parsed.flagfile == path)
        parsed.flagfile = ""
        #expect(parsed == c)
    }
}

@Suite struct ServerConfigErrorTests {
    @Test func unknownFlag() {
        #expect(parseError(["--bogus=1"]) == .unknownFlag("bogus"))
        #expect(parseError(["--bogus"]) == .unknownFlag("bogus"))
        #expect(parseError(["--noport"]) == .unknownFlag("noport"))
        #expect(parseError(["--noforce_epoll=true"]) == .unknownFlag("noforce_epoll"))
        #expect(parseError(["positional"]) == .unknownFlag("positional"))
    }

    @Test func missingValue() {
        #expect(parseError(["--port"]) == .missingValue("port"))
        #expect(parseError(["--port", "--dbnum=2"]) == .missingValue("port"))
        #expect(parseError(["--flagfile"]) == .missingValue("flagfile"))
    }

    @Test func ports() throws {
        #expect(try config(["--port=0"]).port == 0)
        #expect(try config(["--port=65535"]).port == 65535)
        #expect(parseError(["--port=65536"])
            == .invalidValue(flag: "port", value: "65536", reason: "must be between 0 and 65535"))
        #expect(parseError(["--port=-1"])
            == .invalidValue(flag: "port", value: "-1", reason: "must be between 0 and 65535"))
        #expect(parseError(["--port=http"]) == .invalidValue(flag: "port", value: "http", reason: "must be an integer"))
    }

    @Test func threadsAndShards() throws {
        #expect(parseError(["--proactor_threads=-1"]) != nil)
        #expect(parseError(["--num_shards=-1"]) != nil)
        #expect(parseError(["--proactor_threads=2", "--num_shards=3"])
            == .invalidValue(flag: "num_shards", value: "3", reason: "must not exceed proactor_threads (2)"))
        // Cross-checked after every source is applied.
        #expect(parseError(["--num_shards=3"], env: ["DFLY_proactor_threads": "2"]) != nil)
        let ok = try config(["--proactor_threads=4", "--num_shards=4"])
        #expect(ok.numShards == 4)
        #expect(try config(["--num_shards=8"]).numShards == 8)  // threads resolved later
    }

    @Test func dbnum() throws {
        #expect(try config(["--dbnum=1"]).dbnum == 1)
        #expect(try config(["--dbnum=1024"]).dbnum == 1024)
        #expect(parseError(["--dbnum=0"])
            == .invalidValue(flag: "dbnum", value: "0", reason: "must be between 1 and 1024"))
        #expect(parseError(["--dbnum=1025"]) != nil)
    }

    @Test func loglevel() throws {
        for level in ["debug", "verbose", "notice", "warning"] {
            #expect(try config(["--loglevel=\(level)"]).loglevel == level)
        }
        #expect(parseError(["--loglevel=loud"])
            == .invalidValue(flag: "loglevel", value: "loud", reason: "must be one of debug, verbose, notice, warning"))
    }

    @Test func sizes() throws {
        #expect(try config(["--maxmemory=100k"]).maxmemory == 100_000)
        #expect(try config(["--max_bulk_len=10kb"]).maxBulkLen == 10 * 1024)
        #expect(parseError(["--maxmemory=lots"]) != nil)
        #expect(parseError(["--maxmemory=-1"]) != nil)
        #expect(parseError(["--maxmemory=1.5gb"]) != nil)
        #expect(parseError(["--max_bulk_len=0"]) != nil)
    }

    @Test func otherRanges() {
        #expect(parseError(["--hz=0"]) != nil)
        #expect(parseError(["--hz=501"]) != nil)
        #expect(parseError(["--maxclients=0"]) != nil)
        #expect(parseError(["--timeout=-5"]) != nil)
        #expect(parseError(["--slowlog_log_slower_than=-2"]) != nil)
        #expect(parseError(["--slowlog_max_len=-1"]) != nil)
        #expect(parseError(["--mem_release_interval=-1"]) != nil)
        #expect(parseError(["--mem_release_interval=86401"]) != nil)
    }

    @Test func errorDescriptions() {
        #expect(ConfigError.unknownFlag("x").description.contains("'x'"))
        #expect(ConfigError.invalidValue(flag: "port", value: "a", reason: "must be an integer").description
            == "invalid value 'a' for flag 'port': must be an integer")
        #expect(ConfigError.missingValue("port").description.contains("port"))
        #expect(ConfigError.unreadableFile("/x").description.contains("/x"))
    }
}

@Suite struct ServerConfigHelpTests {
    static let flagNames = [
        "port", "bind", "admin_port", "admin_bind", "tls", "tls_port", "tls_cert_file", "tls_key_file", "tls_ca_cert_file",
        "tls_ca_cert_dir", "tls_auth_clients", "tls_protocols", "tls_ciphers", "tls_ciphersuites", "tls_key_file_pass",
        "tls_prefer_server_ciphers", "requirepass", "maxmemory", "dbnum", "proactor_threads", "num_shards", "force_epoll",
        "lock_on_hashtags", "dir", "dbfilename", "enable_protected_configs", "protected_mode", "max_bulk_len", "max_multibulk_len", "maxclients", "timeout",
        "tcp_keepalive", "logtostdout", "loglevel", "singlehop_blocking", "shard_round_robin_prefix",
        "tx_schedule_timeout_ms",
        "pin_threads", "flagfile", "slowlog_log_slower_than", "slowlog_max_len", "hz",
        "save", "appendonly", "appendfsync", "appendfilename", "poll_before_sleep_us", "migrate_connections", "pipeline_squash",
        "pipeline_squash_across_shards", "pipeline_squash_transactions", "pipeline_lookahead", "multi_exec_squash",
        "lua_time_limit", "default_lua_flags", "client_query_buffer_limit", "client_output_buffer_limit",
        "mem_release_interval", "aclfile", "maxmemory_policy", "maxmemory_samples", "lfu_log_factor", "lfu_decay_time",
        "notify_keyspace_events", "cluster_mode", "replicaof",
    ]

    @Test func helpListsEveryFlagWithItsDefault() throws {
        let action = try ConfigParser.parse(arguments: ["--port=1", "--help"], environment: [:])
        guard case .help(let text) = action else {
            Issue.record("expected help")
            return
        }
        #expect(text == ConfigParser.helpText())
        for name in Self.flagNames {
            #expect(text.contains("--\(name)="), "help misses --\(name)")
        }
        #expect(text.contains("(default: 6379)"))
        #expect(text.contains("(default: 127.0.0.1)"))
        #expect(text.contains("(default: 512mb)"))
        #expect(text.contains("(default: notice)"))
        #expect(text.contains("(default: true)"))
        #expect(text.contains("--help"))
        #expect(text.contains("--version"))
    }

    @Test func helpWinsOverBadFlags() throws {
        guard case .help = try ConfigParser.parse(arguments: ["--bogus", "--help"], environment: [:]) else {
            Issue.record("expected help")
            return
        }
    }

    @Test func version() throws {
        #expect(try ConfigParser.parse(arguments: ["--version"], environment: [:]) == .version("damselfly v0.1.0"))
        #expect(try ConfigParser.parse(arguments: ["-version"], environment: [:]) == .version("damselfly v0.1.0"))
    }

    @Test func everyTableFlagIsKnown() {
        let table = Set(ConfigFlagSpec.all.map(\.name))
        #expect(table == Set(Self.flagNames).subtracting(["flagfile"]))
    }
}

@Suite struct SampleConfigTests {
    @Test func sampleParsesToTheDefaults() throws {
        let path = repositoryRoot() + "/dragonfly.conf.sample"
        let text = try #require(readTestFile(path), "can't read \(path)")
        var c = try config(["--flagfile=\(path)"])
        #expect(c.flagfile == path)
        c.flagfile = ""
        #expect(c == ServerConfig())
        for name in ServerConfigHelpTests.flagNames where name != "flagfile" {
            #expect(text.contains("\n--\(name)="), "sample misses --\(name)")
        }
    }
}

@Suite struct ServerConfigKeyspaceEventsTests {
    @Test func flagTakesRedisLetters() throws {
        #expect(try config(["--notify_keyspace_events=KEA"]).notifyKeyspaceEvents == "KEA")
        #expect(try config([]).notifyKeyspaceEvents == "")
    }

    @Test func flagRefusesAnUnknownLetter() {
        guard case .invalidValue(let flag, let value, let reason)? = parseError(["--notify_keyspace_events=KEQ"]) else {
            Issue.record("expected invalidValue")
            return
        }
        #expect(flag == "notify_keyspace_events" && value == "KEQ" && reason.contains("Invalid event class character"))
    }
}

@Suite struct ServerConfigClusterModeTests {
    @Test func emptyOrEmulated() throws {
        #expect(try config([]).clusterMode == "")
        #expect(try config(["--cluster_mode=emulated"]).clusterMode == "emulated")
        #expect(try config(["--cluster_mode=EMULATED"]).clusterMode == "emulated")
        #expect(try config(["--cluster_mode="]).clusterMode == "")
    }

    @Test func refusesOtherModes() {
        guard case .invalidValue(let flag, let value, _)? = parseError(["--cluster_mode=yes"]) else {
            Issue.record("expected invalidValue")
            return
        }
        #expect(flag == "cluster_mode" && value == "yes")
    }
}

@Suite struct ServerConfigReplicaofTests {
    @Test func hostColonPortOrHostSpacePort() throws {
        let colon = try config(["--replicaof=127.0.0.1:6380"])
        #expect(ServerConfig.replicaMaster(colon.replicaof)! == ("127.0.0.1", 6380))
        let spaced = try config(["--replicaof", "10.0.0.2 7000"])
        #expect(ServerConfig.replicaMaster(spaced.replicaof)! == ("10.0.0.2", 7000))
        #expect(ServerConfig.replicaMaster("::1:6379")! == ("::1", 6379))
        #expect(try config([]).replicaof == "")
    }

    @Test func refusesWhatIsNotAMaster() {
        for bad in ["localhost", "h:notaport", "h:70000", "a b c", ":6379"] {
            guard case .invalidValue(let flag, let value, _)? = parseError(["--replicaof=\(bad)"]) else {
                Issue.record("expected invalidValue for \(bad)")
                continue
            }
            #expect(flag == "replicaof" && value == bad)
        }
    }
}
