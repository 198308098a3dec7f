import DamselflyPersistence
import Testing
@testable import DamselflyCommands

/// ``FunctionFamily`` through the real shard set (4 loops, 4 shards): Redis
/// 7.0's replies and error texts, per-thread compilation and the shard paths
/// FCALL shares with EVAL.
@Suite struct FunctionFamilyTests {
    let h: CommandHarness

    init() {
        h = CommandHarness()
        ScriptFamily.register(h.registry)
        FunctionFamily.register(h.registry)
    }

    static let library = """
        #!lua name=mylib
        redis.register_function('echo', function(keys, args) return {keys, args} end)
        redis.register_function('put', function(keys, args)
          for i, k in ipairs(keys) do redis.call('set', k, args[1]) end
          return #keys
        end)
        redis.register_function{function_name='peek', callback=function(keys) return redis.call('get', keys[1]) end,
          flags={'no-writes'}, description='reads one key'}
        redis.register_function{function_name='sneaky', callback=function(keys) return redis.call('set', keys[1], 'x') end,
          flags={'no-writes'}}
        """

    @Test func loadListDeleteFlush() {
        #expect(h.run(["function", "load", Self.library]) == .bulk("mylib"))
        #expect(h.run(["function", "load", Self.library]) == .error("ERR Library 'mylib' already exists"))
        #expect(h.run(["function", "load", "REPLACE", Self.library]) == .bulk("mylib"))
        let listed = h.run(["function", "list", "libraryname", "MY*"])
        guard case .array(let libraries) = listed, libraries.count == 1, case .array(let fields) = libraries[0] else {
            Issue.record("unexpected FUNCTION LIST reply \(listed)")
            return
        }
        #expect(fields[0] == .bulk("library_name") && fields[1] == .bulk("mylib"))
        #expect(fields[2] == .bulk("engine") && fields[3] == .bulk("LUA"))
        #expect(fields.count == 6)
        #expect(fields[5] == .array([
            .array([.bulk("name"), .bulk("echo"), .bulk("description"), .null, .bulk("flags"), .array([])]),
            .array([.bulk("name"), .bulk("peek"), .bulk("description"), .bulk("reads one key"), .bulk("flags"),
                    .array([.simple("no-writes")])]),
            .array([.bulk("name"), .bulk("put"), .bulk("description"), .null, .bulk("flags"), .array([])]),
            .array([.bulk("name"), .bulk("sneaky"), .bulk("description"), .null, .bulk("flags"), .array([.simple("no-writes")])]),
        ]))
        guard case .array(let withCode) = h.run(["function", "list", "withcode"]), case .array(let f) = withCode[0] else {
            Issue.record("no WITHCODE listing")
            return
        }
        #expect(f[6] == .bulk("library_code") && f[7] == .bulk(Self.library))
        #expect(h.run(["function", "list", "libraryname", "other*"]) == .array([]))
        #expect(h.run(["function", "stats"]) == .array([
            .bulk("running_script"), .null,
            .bulk("engines"), .array([.bulk("LUA"), .array([.bulk("libraries_count"), 1, .bulk("functions_count"), 4])]),
        ]))
        #expect(h.run(["function", "delete", "nosuch"]) == .error("ERR Library not found"))
        #expect(h.run(["function", "delete", "mylib"]) == .ok)
        #expect(h.run(["fcall", "echo", "0"]) == .error("ERR Function not found"))
        h.run(["function", "load", Self.library])
        #expect(h.run(["function", "flush", "async"]) == .ok)
        #expect(h.run(["function", "list"]) == .array([]))
    }

    @Test func loadErrors() {
        let cases: [(String, String)] = [
            ("return 1", "ERR Missing library metadata"),
            ("#!lua", "ERR Invalid library metadata"),
            ("#!lua\nreturn 1", "ERR Library name was not given"),
            ("#!python name=x\n", "ERR Engine 'python' not found"),
            ("#!lua name=x foo=bar\n", "ERR Invalid metadata value given: foo=bar"),
            ("#!lua name=x name=y\n", "ERR Invalid metadata value, name argument was given multiple times"),
            ("#!lua name=x-y\n", "ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long"),
            ("#!lua name=x\nreturn 1", "ERR No functions registered"),
            ("#!lua name=x\n(((", "ERR Error compiling function: user_function:2: unexpected symbol near '<eof>'"),
            ("#!lua name=x\nredis.call('set','a','b')",
             "ERR Error registering functions: ERR user_function:2: Script attempted to access nonexistent global variable 'call'"),
            ("#!lua name=x\nlocal t = string",
             "ERR Error registering functions: ERR user_function:2: Script attempted to access nonexistent global variable 'string'"),
            ("#!lua name=x\nredis.register_function('f', function() end)\nfoo = 1",
             "ERR Error registering functions: ERR user_function:3: Attempt to modify a readonly table"),
            ("#!lua name=x\nredis.register_function('f-1', function() end)",
             "ERR Error registering functions: ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long"),
            ("#!lua name=x\nredis.register_function('f', function() end)\nredis.register_function('f', function() end)",
             "ERR Error registering functions: ERR Function already exists in the library"),
            ("#!lua name=x\nredis.register_function{function_name='f', callback=function() end, flags={'bad'}}",
             "ERR Error registering functions: ERR unknown flag given"),
            ("#!lua name=x\nredis.register_function{function_name='f', callback=function() end, flags='no-writes'}",
             "ERR Error registering functions: ERR flags argument to redis.register_function must be a table representing function flags"),
            ("#!lua name=x\nredis.register_function{function_name='f', callback=function() end, foo=1}",
             "ERR Error registering functions: ERR unknown argument given to redis.register_function"),
            ("#!lua name=x\nredis.register_function{callback=function() end}",
             "ERR Error registering functions: ERR redis.register_function must get a function name argument"),
            ("#!lua name=x\nredis.register_function{function_name='f'}",
             "ERR Error registering functions: ERR redis.register_function must get a callback argument"),
            ("#!lua name=x\nredis.register_function('f')",
             "ERR Error registering functions: ERR calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments)."),
            ("#!lua name=x\nredis.register_function('f', 'g')",
             "ERR Error registering functions: ERR second argument to redis.register_function must be a function"),
            ("#!lua name=x\nredis.register_function('f', function() end, 3)",
             "ERR Error registering functions: ERR wrong number of arguments to redis.register_function"),
            // A loop at load time is stopped (Redis's 500 ms limit).
            ("#!lua name=x\nwhile true do end", "ERR Error registering functions: ERR FUNCTION LOAD timeout"),
        ]
        for (code, error) in cases {
            #expect(h.run(["function", "load", code]) == .error(error), "\(code)")
        }
        #expect(h.run(["function", "load", "foo", "bar"]) == .error("ERR Unknown option given: foo"))
        h.run(["function", "load", Self.library])
        #expect(h.run(["function", "load", "#!lua name=other\nredis.register_function('ECHO', function() end)"])
            == .error("ERR Function ECHO already exists"))
        #expect(h.run(["function", "list", "libraryname"]) == .error("ERR library name argument was not given"))
        #expect(h.run(["function", "list", "withcode", "withcode"]) == .error("ERR Unknown argument withcode"))
        #expect(h.run(["function", "flush", "lazy"]) == .error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option"))
        #expect(h.run(["function", "delete"]) == .error("ERR wrong number of arguments for 'function|delete' command"))
        #expect(h.run(["function", "nosub"]) == .error("ERR unknown subcommand 'nosub'. Try FUNCTION HELP."))
        #expect(h.run(["function", "kill"]) == .error("NOTBUSY No scripts in execution right now."))
        // Nothing half-loaded: the library and its functions are as before.
        #expect(h.run(["function", "stats"]) == .array([
            .bulk("running_script"), .null,
            .bulk("engines"), .array([.bulk("LUA"), .array([.bulk("libraries_count"), 1, .bulk("functions_count"), 4])]),
        ]))
    }

    @Test func fcallPassesKeysAndArgsOnEveryLoop() {
        h.run(["function", "load", Self.library])
        // Loaded on loop 0, compiled lazily into each other loop's engine; names are case-insensitive.
        for loop in 0..<4 {
            #expect(h.run(["fcall", "ECHO", "2", "a", "b", "c"], on: loop) == .array([.array([.bulk("a"), .bulk("b")]), .array([.bulk("c")])]))
        }
        // A replaced library reaches every loop that compiled the old one.
        h.run(["function", "load", "replace", "#!lua name=mylib\nredis.register_function('echo', function(keys, args) return 'v2' end)"], on: 2)
        for loop in 0..<4 { #expect(h.run(["fcall", "echo", "0"], on: loop) == .bulk("v2")) }
        #expect(h.run(["fcall", "put", "0"]) == .error("ERR Function not found"))
        #expect(h.run(["fcall", "echo", "x"]) == .error("ERR Bad number of keys provided"))
        #expect(h.run(["fcall", "echo", "-1"]) == .error("ERR Number of keys can't be negative"))
        #expect(h.run(["fcall", "echo", "2", "a"]) == .error("ERR Number of keys can't be greater than number of args"))
    }

    @Test func fcallWritesAcrossShards() {
        h.run(["function", "load", Self.library])
        let keys = h.keysOnEveryShard(prefix: "fk")
        #expect(h.run(["fcall", "put", "\(keys.count)"] + keys + ["v"], on: 1) == .int(keys.count))
        for key in keys { #expect(h.run(["get", key]) == .bulk("v")) }
        // One shard, twice: the second run may take the owning-shard path.
        let one = h.key(onShard: 3, prefix: "single")
        for value in ["1", "2"] {
            #expect(h.run(["fcall", "put", "1", one, value], on: 0) == 1)
            #expect(h.run(["fcall_ro", "peek", "1", one], on: 2) == .bulk(value))
        }
    }

    @Test func readOnlyFunctions() {
        h.run(["function", "load", Self.library])
        h.run(["set", "k", "v"])
        #expect(h.run(["fcall_ro", "peek", "1", "k"]) == .bulk("v"))
        #expect(h.run(["fcall", "peek", "1", "k"]) == .bulk("v"))
        #expect(h.run(["fcall_ro", "put", "1", "k", "x"])
            == .error("ERR Can not execute a script with write flag using *_ro command."))
        // A no-writes function refuses writes under FCALL too.
        #expect(h.run(["fcall", "sneaky", "1", "k"])
            == .error("ERR Write commands are not allowed from read-only scripts. script: sneaky, on @user_function:9."))
        #expect(h.run(["get", "k"]) == .bulk("v"))
    }

    @Test func runtimeErrorsAndSandbox() {
        let code = """
            #!lua name=errs
            redis.register_function('boom', function() error('boom') end)
            redis.register_function('unknown', function() return redis.call('nosuch') end)
            redis.register_function('reply', function() return redis.error_reply('MY err') end)
            redis.register_function('table', function() error({err='MYERR x'}) end)
            redis.register_function('global', function() gx = 1 end)
            redis.register_function('keys', function() return KEYS end)
            redis.register_function('libs', function() return {type(string), type(cjson), type(redis.call), type(redis.register_function)} end)
            """
        #expect(h.run(["function", "load", code]) == .bulk("errs"))
        #expect(h.run(["fcall", "boom", "0"]) == .error("ERR user_function:2: boom script: boom, on @user_function:2."))
        #expect(h.run(["fcall", "unknown", "0"])
            == .error("ERR Unknown Redis command called from script script: unknown, on @user_function:3."))
        #expect(h.run(["fcall", "reply", "0"]) == .error("MY err"))
        #expect(h.run(["fcall", "table", "0"]) == .error("MYERR x script: table, on @user_function:5."))
        #expect(h.run(["fcall", "global", "0"])
            == .error("ERR user_function:6: Attempt to modify a readonly table script: global, on @user_function:6."))
        #expect(h.run(["fcall", "keys", "0"]) == .error(
            "ERR user_function:7: Script attempted to access nonexistent global variable 'KEYS' script: keys, on @user_function:7."))
        // The runtime redis table has no register_function.
        #expect(h.run(["fcall", "libs", "0"]) == .strings(["table", "table", "function", "nil"]))
    }

    @Test func scriptsAndFunctionsFlushSeparately() {
        h.run(["function", "load", Self.library])
        guard case .bulk(let sha) = h.run(["script", "load", "return 1"]) else {
            Issue.record("SCRIPT LOAD failed")
            return
        }
        #expect(h.run(["script", "flush"]) == .ok)
        #expect(h.run(["fcall", "echo", "0"], on: 1) == .array([.array([]), .array([])]))
        h.run(["script", "load", "return 1"])
        #expect(h.run(["function", "flush"]) == .ok)
        #expect(h.run(["script", "exists", String(decoding: sha, as: UTF8.self)]) == .array([1]))
        #expect(h.run(["fcall", "echo", "0"], on: 1) == .error("ERR Function not found"))
        // A flushed engine compiles what is loaded afterwards.
        h.run(["function", "load", Self.library], on: 3)
        #expect(h.run(["fcall", "echo", "1", "k"], on: 1) == .array([.array([.bulk("k")]), .array([])]))
    }

    @Test func dumpAndRestorePolicies() {
        h.run(["function", "load", Self.library])
        guard case .bulk(let payload) = h.run(["function", "dump"]) else {
            Issue.record("no DUMP payload")
            return
        }
        let text = String(decoding: payload, as: UTF8.self)
        #expect(h.runBytes([Array("function".utf8), Array("restore".utf8), payload]) == .error("ERR Library mylib already exists"))
        #expect(h.runBytes([Array("function".utf8), Array("restore".utf8), payload, Array("replace".utf8)]) == .ok)
        #expect(h.runBytes([Array("function".utf8), Array("restore".utf8), payload, Array("bad".utf8)])
            == .error("ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE."))
        h.run(["function", "load", "#!lua name=extra\nredis.register_function('extra', function() return 1 end)"])
        #expect(h.runBytes([Array("function".utf8), Array("restore".utf8), payload, Array("flush".utf8)]) == .ok)
        #expect(h.run(["fcall", "extra", "0"]) == .error("ERR Function not found"))
        #expect(h.run(["fcall", "echo", "0"], on: 3) == .array([.array([]), .array([])]))
        #expect(h.run(["function", "restore", "garbage"]) == .error("ERR DUMP payload version or checksum are wrong"))
        // A payload whose library would collide with another's function leaves everything as it was.
        h.run(["function", "flush"])
        h.run(["function", "load", "#!lua name=holder\nredis.register_function('echo', function() return 'held' end)"])
        #expect(h.runBytes([Array("function".utf8), Array("restore".utf8), payload]) == .error("ERR Function echo already exists"))
        #expect(h.run(["fcall", "echo", "0"]) == .bulk("held"))
        #expect(!text.isEmpty)
        h.run(["function", "flush"])
        #expect(h.run(["function", "dump"]) == .bulk(FunctionPayload.encode([])))
    }

    /// A payload FUNCTION DUMP made on redis-server 7.0.15 (its library code LZF-compressed).
    @Test func restoresRedisPayload() {
        let hex = "f5c3408640911f23216c7561206e616d653d6c6962310a72656469732e72656769737465725f6607756e6374696f6e7bc008005f602a0e"
            + "276631272c2063616c6c6261636b3dc01c1828292072657475726e203120656e642c20666c6167733d7b2720281e6f772d7374616c65"
            + "272c276e6f2d777269746573277d2c20646573637269704064043d2764277d0a00de7647ff80882ad3"
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            bytes.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        #expect(h.runBytes([Array("function".utf8), Array("restore".utf8), bytes]) == .ok)
        #expect(h.run(["fcall_ro", "f1", "0"]) == 1)
        guard case .array(let libraries) = h.run(["function", "list"]), case .array(let fields) = libraries[0] else {
            Issue.record("no listing")
            return
        }
        #expect(fields[5] == .array([.array([.bulk("name"), .bulk("f1"), .bulk("description"), .bulk("d"), .bulk("flags"),
                                             .array([.simple("no-writes"), .simple("allow-stale")])])]))
    }
}
