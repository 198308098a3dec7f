import Testing
@testable import DamselflyCommands

/// ``StringFamily`` run through the real shard set (4 loops, 4 shards), with
/// Redis 7's replies and error texts.
@Suite struct StringFamilyTests {
    let h = CommandHarness()

    // MARK: - GET / SET

    @Test func getAndSet() {
        #expect(h.run(["get", "k"]) == .null)
        #expect(h.run(["set", "k", "v"]) == .ok)
        #expect(h.run(["get", "k"]) == "v")
        #expect(h.run(["set", "k", "w"]) == .ok)
        #expect(h.run(["GET", "k"]) == "w")
        // An empty value and an empty key are ordinary strings.
        #expect(h.run(["set", "", ""]) == .ok)
        #expect(h.run(["get", ""]) == "")
        // Binary-safe.
        let binary: [UInt8] = [0, 255, 13, 10, 36]
        #expect(h.runBytes([Array("set".utf8), Array("bin".utf8), binary]) == .ok)
        #expect(h.runBytes([Array("get".utf8), Array("bin".utf8)]) == .bulk(binary))
    }

    @Test func getAndSetFromEveryLoop() {
        // Each key is written from one loop and read from all the others, so
        // every combination of inline and quick hops is taken.
        for (shard, key) in h.keysOnEveryShard().enumerated() {
            for loop in 0..<4 {
                #expect(h.run(["set", key, "\(shard)-\(loop)"], on: loop) == .ok)
                for reader in 0..<4 {
                    #expect(h.run(["get", key], on: reader) == .bulk("\(shard)-\(loop)"))
                }
            }
        }
    }

    @Test func aBorrowingKeyReadsTheArgumentInPlace() {
        let bytes: [UInt8] = [0, 1, 255, 13, 10]
        bytes.withUnsafeBytes { view in
            let key = KeyRef(borrowing: view, hash: 42)!
            #expect(key.bytes == bytes)
            #expect(key.hash == 42)
            #expect(key.withBytes { $0.baseAddress } == view.baseAddress)
            #expect(key.withBytes { Array($0) } == bytes)
        }
        // What does not pack into one word is copied instead (runOnKey(argument:)'s other path).
        #expect(KeyRef(borrowing: UnsafeRawBufferPointer(start: nil, count: 0), hash: 0) == nil)
        let long = [UInt8](repeating: 7, count: 1 << 16)
        long.withUnsafeBytes { #expect(KeyRef(borrowing: $0, hash: 0) == nil) }
        long.withUnsafeBytes { #expect(KeyRef(borrowing: UnsafeRawBufferPointer(rebasing: $0[0..<65535]), hash: 0) != nil) }
    }

    @Test func keysTooLongToBorrowAreCopied() {
        // GET and SET borrow a key shorter than 64 KiB and copy a longer or empty one.
        for count in [0, 1, 65535, 65536, 70000] {
            let key = [UInt8](repeating: UInt8(count % 251), count: count)
            #expect(h.runBytes([Array("set".utf8), key, Array("v\(count)".utf8)]) == .ok)
            for loop in 0..<4 {
                #expect(h.runBytes([Array("get".utf8), key], on: loop) == .bulk(Array("v\(count)".utf8)))
            }
        }
    }

    @Test func arityErrors() {
        #expect(h.run(["get"]) == arityError("get"))
        #expect(h.run(["get", "a", "b"]) == arityError("get"))
        #expect(h.run(["set", "k"]) == arityError("set"))
        #expect(h.run(["setnx", "k"]) == arityError("setnx"))
        #expect(h.run(["mget"]) == arityError("mget"))
        #expect(h.run(["mset", "a"]) == arityError("mset"))
        #expect(h.run(["mset", "a", "1", "b"]) == arityError("mset"))
        #expect(h.run(["msetnx", "a", "1", "b"]) == arityError("msetnx"))
        #expect(h.run(["getrange", "k", "0"]) == arityError("getrange"))
        #expect(h.run(["incrbyfloat", "k"]) == arityError("incrbyfloat"))
    }

    @Test func setNXAndXX() {
        #expect(h.run(["set", "k", "1", "XX"]) == .null)
        #expect(h.run(["get", "k"]) == .null)
        #expect(h.run(["set", "k", "1", "NX"]) == .ok)
        #expect(h.run(["set", "k", "2", "nx"]) == .null)
        #expect(h.run(["get", "k"]) == "1")
        #expect(h.run(["set", "k", "3", "xx"]) == .ok)
        #expect(h.run(["get", "k"]) == "3")
    }

    @Test func setGet() {
        #expect(h.run(["set", "k", "1", "GET"]) == .null)
        #expect(h.run(["set", "k", "2", "GET"]) == "1")
        #expect(h.run(["get", "k"]) == "2")
        // NX GET (Redis 7): the old value, and nothing written.
        #expect(h.run(["set", "k", "3", "NX", "GET"]) == "2")
        #expect(h.run(["get", "k"]) == "2")
        #expect(h.run(["set", "new", "3", "NX", "GET"]) == .null)
        #expect(h.run(["get", "new"]) == "3")
        // XX GET on a missing key: nil, nothing written.
        #expect(h.run(["set", "missing", "x", "XX", "GET"]) == .null)
        #expect(h.run(["exists", "missing"]) == 0)
        // An integer-encoded old value comes back as a bulk string.
        #expect(h.run(["set", "n", "42"]) == .ok)
        #expect(h.run(["set", "n", "x", "get"]) == "42")
    }

    @Test func setExpiryOptions() {
        #expect(h.run(["set", "k", "v", "EX", "100"]) == .ok)
        #expect(h.run(["ttl", "k"]) == 100)
        #expect(h.run(["set", "k", "v", "PX", "100000"]) == .ok)
        let pttl = h.run(["pttl", "k"]).integer ?? -100
        #expect(pttl > 99_000 && pttl <= 100_000)
        let inAMinute = nowMillis() / 1000 + 60
        #expect(h.run(["set", "k", "v", "EXAT", "\(inAMinute)"]) == .ok)
        #expect(h.run(["expiretime", "k"]) == .int(Int(inAMinute)))
        let pxat = nowMillis() + 50_000
        #expect(h.run(["set", "k", "v", "PXAT", "\(pxat)"]) == .ok)
        #expect(h.run(["pexpiretime", "k"]) == .int(Int(pxat)))
        // A plain SET clears the TTL.
        #expect(h.run(["set", "k", "v"]) == .ok)
        #expect(h.run(["ttl", "k"]) == -1)
    }

    @Test func setKeepTTL() {
        #expect(h.run(["set", "k", "v", "ex", "100"]) == .ok)
        #expect(h.run(["set", "k", "w", "KEEPTTL"]) == .ok)
        #expect(h.run(["get", "k"]) == "w")
        #expect(h.run(["ttl", "k"]) == 100)
        #expect(h.run(["set", "k", "x"]) == .ok)
        #expect(h.run(["ttl", "k"]) == -1)
    }

    @Test func setExpiresKeys() {
        #expect(h.run(["set", "k", "v", "PX", "30"]) == .ok)
        #expect(h.run(["get", "k"]) == "v")
        sleepMillis(80)
        #expect(h.run(["get", "k"]) == .null)
        #expect(h.run(["exists", "k"]) == 0)
        // An absolute time in the past: accepted, and the key is gone at once.
        #expect(h.run(["set", "old", "v", "PXAT", "1"]) == .ok)
        #expect(h.run(["get", "old"]) == .null)
    }

    @Test func setSyntaxErrors() {
        let syntax = RV.error("ERR syntax error")
        #expect(h.run(["set", "k", "v", "NX", "XX"]) == syntax)
        #expect(h.run(["set", "k", "v", "XX", "NX"]) == syntax)
        #expect(h.run(["set", "k", "v", "EX", "10", "PX", "100"]) == syntax)
        #expect(h.run(["set", "k", "v", "EX", "10", "KEEPTTL"]) == syntax)
        #expect(h.run(["set", "k", "v", "KEEPTTL", "EX", "10"]) == syntax)
        #expect(h.run(["set", "k", "v", "EX"]) == syntax)
        #expect(h.run(["set", "k", "v", "PXAT"]) == syntax)
        #expect(h.run(["set", "k", "v", "foo"]) == syntax)
        #expect(h.run(["set", "k", "v", "EXAT", "10", "EXAT", "10"]) == syntax)
        // Nothing was written by any of them.
        #expect(h.run(["exists", "k"]) == 0)
    }

    @Test func setExpiryValueErrors() {
        let invalid = RV.error("ERR invalid expire time in 'set' command")
        #expect(h.run(["set", "k", "v", "EX", "0"]) == invalid)
        #expect(h.run(["set", "k", "v", "EX", "-1"]) == invalid)
        #expect(h.run(["set", "k", "v", "PX", "0"]) == invalid)
        #expect(h.run(["set", "k", "v", "EXAT", "0"]) == invalid)
        #expect(h.run(["set", "k", "v", "EX", "9223372036854775807"]) == invalid)
        #expect(h.run(["set", "k", "v", "EX", "abc"]) == .error("ERR value is not an integer or out of range"))
        #expect(h.run(["set", "k", "v", "PX", "1.5"]) == .error("ERR value is not an integer or out of range"))
        #expect(h.run(["exists", "k"]) == 0)
    }

    // MARK: - SETNX, SETEX, PSETEX, GETSET, GETDEL, GETEX

    @Test func setnx() {
        #expect(h.run(["setnx", "k", "1"]) == 1)
        #expect(h.run(["setnx", "k", "2"]) == 0)
        #expect(h.run(["get", "k"]) == "1")
    }

    @Test func setexAndPsetex() {
        #expect(h.run(["setex", "k", "100", "v"]) == .ok)
        #expect(h.run(["get", "k"]) == "v")
        #expect(h.run(["ttl", "k"]) == 100)
        #expect(h.run(["psetex", "p", "100000", "v"]) == .ok)
        let pttl = h.run(["pttl", "p"]).integer ?? -100
        #expect(pttl > 99_000 && pttl <= 100_000)
        #expect(h.run(["setex", "k", "0", "v"]) == .error("ERR invalid expire time in 'setex' command"))
        #expect(h.run(["setex", "k", "-5", "v"]) == .error("ERR invalid expire time in 'setex' command"))
        #expect(h.run(["psetex", "k", "0", "v"]) == .error("ERR invalid expire time in 'psetex' command"))
        #expect(h.run(["setex", "k", "x", "v"]) == .error("ERR value is not an integer or out of range"))
        #expect(h.run(["setex", "k", "9223372036854775807", "v"]) == .error("ERR invalid expire time in 'setex' command"))
        #expect(h.run(["psetex", "short", "30", "v"]) == .ok)
        sleepMillis(80)
        #expect(h.run(["get", "short"]) == .null)
    }

    @Test func getset() {
        #expect(h.run(["getset", "k", "1"]) == .null)
        #expect(h.run(["getset", "k", "2"]) == "1")
        #expect(h.run(["get", "k"]) == "2")
        // GETSET clears the TTL, like SET.
        #expect(h.run(["expire", "k", "100"]) == 1)
        #expect(h.run(["getset", "k", "3"]) == "2")
        #expect(h.run(["ttl", "k"]) == -1)
    }

    @Test func getdel() {
        #expect(h.run(["getdel", "k"]) == .null)
        #expect(h.run(["set", "k", "v"]) == .ok)
        #expect(h.run(["getdel", "k"]) == "v")
        #expect(h.run(["getdel", "k"]) == .null)
        #expect(h.run(["exists", "k"]) == 0)
        #expect(h.run(["set", "n", "7"]) == .ok)
        #expect(h.run(["getdel", "n"]) == "7")
    }

    @Test func getex() {
        #expect(h.run(["getex", "k"]) == .null)
        #expect(h.run(["set", "k", "v"]) == .ok)
        #expect(h.run(["getex", "k"]) == "v")
        #expect(h.run(["ttl", "k"]) == -1)
        #expect(h.run(["getex", "k", "EX", "100"]) == "v")
        #expect(h.run(["ttl", "k"]) == 100)
        #expect(h.run(["getex", "k", "PERSIST"]) == "v")
        #expect(h.run(["ttl", "k"]) == -1)
        #expect(h.run(["getex", "k", "px", "100000"]) == "v")
        let pttl = h.run(["pttl", "k"]).integer ?? -100
        #expect(pttl > 99_000 && pttl <= 100_000)
        let at = nowMillis() / 1000 + 500
        #expect(h.run(["getex", "k", "exat", "\(at)"]) == "v")
        #expect(h.run(["expiretime", "k"]) == .int(Int(at)))
        let pat = nowMillis() + 500_000
        #expect(h.run(["getex", "k", "pxat", "\(pat)"]) == "v")
        #expect(h.run(["pexpiretime", "k"]) == .int(Int(pat)))
        // An absolute time in the past deletes the key (after returning it).
        #expect(h.run(["getex", "k", "pxat", "1"]) == "v")
        #expect(h.run(["exists", "k"]) == 0)
    }

    @Test func getexErrors() {
        let syntax = RV.error("ERR syntax error")
        #expect(h.run(["set", "k", "v"]) == .ok)
        #expect(h.run(["getex", "k", "EX"]) == syntax)
        #expect(h.run(["getex", "k", "EX", "10", "PX", "10"]) == syntax)
        #expect(h.run(["getex", "k", "PERSIST", "EX", "10"]) == syntax)
        #expect(h.run(["getex", "k", "EX", "10", "PERSIST"]) == syntax)
        #expect(h.run(["getex", "k", "foo"]) == syntax)
        #expect(h.run(["getex", "k", "EX", "0"]) == .error("ERR invalid expire time in 'getex' command"))
        #expect(h.run(["getex", "k", "EX", "-1"]) == .error("ERR invalid expire time in 'getex' command"))
        #expect(h.run(["getex", "k", "EX", "abc"]) == .error("ERR value is not an integer or out of range"))
        // Redis checks the value only once the key is known to exist.
        #expect(h.run(["getex", "missing", "EX", "abc"]) == .null)
        #expect(h.run(["getex", "missing", "EX", "0"]) == .null)
        // ...but the syntax first.
        #expect(h.run(["getex", "missing", "EX"]) == syntax)
        #expect(h.run(["ttl", "k"]) == -1)
    }

    // MARK: - MGET / MSET / MSETNX

    @Test func msetAndMgetAcrossShards() {
        let keys = h.keysOnEveryShard()
        #expect(Set(keys.map(h.shard(of:))).count == 4)
        var args = ["mset"]
        for (i, key) in keys.enumerated() { args += [key, "v\(i)"] }
        #expect(h.run(args) == .ok)
        #expect(h.run(["mget"] + keys) == .strings(["v0", "v1", "v2", "v3"]))
        // Missing keys are nil, in their positions; duplicates repeat.
        #expect(h.run(["mget", keys[2], "nope", keys[0], keys[2]]) == .strings(["v2", nil, "v0", "v2"]))
        // From another loop too.
        #expect(h.run(["mget"] + keys.reversed(), on: 3) == .strings(["v3", "v2", "v1", "v0"]))
        // MSET on one shard only (the single-shard path).
        let a = h.key(onShard: 1, prefix: "a"), b = h.key(onShard: 1, prefix: "b")
        #expect(h.run(["mset", a, "1", b, "2"], on: 2) == .ok)
        #expect(h.run(["mget", a, b], on: 1) == .strings(["1", "2"]))
        // The last value of a repeated key wins.
        #expect(h.run(["mset", keys[0], "x", keys[1], "y", keys[0], "z"]) == .ok)
        #expect(h.run(["get", keys[0]]) == "z")
        // MSET clears TTLs.
        #expect(h.run(["expire", keys[1], "100"]) == 1)
        #expect(h.run(["mset", keys[1], "q", keys[3], "r"]) == .ok)
        #expect(h.run(["ttl", keys[1]]) == -1)
    }

    @Test func msetnxAcrossShards() {
        let keys = h.keysOnEveryShard(prefix: "nx")
        #expect(h.run(["msetnx", keys[0], "a", keys[1], "b", keys[2], "c"]) == 1)
        #expect(h.run(["mget"] + keys) == .strings(["a", "b", "c", nil]))
        // One key exists (on another shard than the new one): nothing is written.
        #expect(h.run(["msetnx", keys[3], "d", keys[2], "x"], on: 3) == 0)
        #expect(h.run(["mget"] + keys) == .strings(["a", "b", "c", nil]))
        #expect(h.run(["msetnx", keys[3], "d"], on: 1) == 1)
        #expect(h.run(["get", keys[3]]) == "d")
        // Single shard, one exists.
        let x = h.key(onShard: 2, prefix: "s"), y = h.key(onShard: 2, prefix: "t")
        #expect(h.run(["set", y, "old"]) == .ok)
        #expect(h.run(["msetnx", x, "1", y, "2"]) == 0)
        #expect(h.run(["exists", x]) == 0)
        #expect(h.run(["get", y]) == "old")
    }

    // MARK: - Counters

    @Test func incrAndDecr() {
        #expect(h.run(["incr", "n"]) == 1)
        #expect(h.run(["incr", "n"]) == 2)
        #expect(h.run(["decr", "n"]) == 1)
        #expect(h.run(["decr", "m"]) == -1)
        #expect(h.run(["incrby", "n", "10"]) == 11)
        #expect(h.run(["incrby", "n", "-20"]) == -9)
        #expect(h.run(["decrby", "n", "-9"]) == 0)
        #expect(h.run(["decrby", "n", "5"]) == -5)
        #expect(h.run(["get", "n"]) == "-5")
        // A string holding a number counts too, and keeps its TTL.
        #expect(h.run(["set", "s", "100", "EX", "100"]) == .ok)
        #expect(h.run(["incr", "s"]) == 101)
        #expect(h.run(["ttl", "s"]) == 100)
        #expect(h.run(["object", "encoding", "s"]) == "int")
    }

    @Test func counterErrors() {
        let notInteger = RV.error("ERR value is not an integer or out of range")
        #expect(h.run(["set", "s", "abc"]) == .ok)
        #expect(h.run(["incr", "s"]) == notInteger)
        #expect(h.run(["set", "s", " 1"]) == .ok)
        #expect(h.run(["incr", "s"]) == notInteger)
        #expect(h.run(["set", "s", "1.5"]) == .ok)
        #expect(h.run(["decr", "s"]) == notInteger)
        #expect(h.run(["set", "s", ""]) == .ok)
        #expect(h.run(["incr", "s"]) == notInteger)
        #expect(h.run(["incrby", "n", "abc"]) == notInteger)
        #expect(h.run(["incrby", "n", "9223372036854775808"]) == notInteger)
        #expect(h.run(["decrby", "n", "1e3"]) == notInteger)
        #expect(h.run(["exists", "n"]) == 0)
    }

    @Test func counterOverflow() {
        let overflow = RV.error("ERR increment or decrement would overflow")
        #expect(h.run(["set", "max", "9223372036854775807"]) == .ok)
        #expect(h.run(["incr", "max"]) == overflow)
        #expect(h.run(["incrby", "max", "1"]) == overflow)
        #expect(h.run(["get", "max"]) == "9223372036854775807")
        #expect(h.run(["set", "min", "-9223372036854775808"]) == .ok)
        #expect(h.run(["decr", "min"]) == overflow)
        #expect(h.run(["decrby", "min", "1"]) == overflow)
        #expect(h.run(["incrby", "min", "-1"]) == overflow)
        #expect(h.run(["incrby", "one", "1"]) == 1)
        #expect(h.run(["incrby", "one", "9223372036854775807"]) == overflow)
        #expect(h.run(["get", "one"]) == "1")
        // DECRBY of the minimum cannot be negated: Redis's own message.
        #expect(h.run(["decrby", "zero", "-9223372036854775808"]) == .error("ERR decrement would overflow"))
        #expect(h.run(["incrby", "zero", "-9223372036854775808"]) == .int(Int(Int64.min)))
    }

    @Test func incrbyfloat() {
        #expect(h.run(["set", "f", "10.5"]) == .ok)
        #expect(h.run(["incrbyfloat", "f", "0.1"]) == "10.6")
        #expect(h.run(["get", "f"]) == "10.6")
        #expect(h.run(["set", "e", "5.0e3"]) == .ok)
        #expect(h.run(["incrbyfloat", "e", "2.0e2"]) == "5200")
        #expect(h.run(["incrbyfloat", "new", "3"]) == "3")
        #expect(h.run(["incrbyfloat", "new", "-3"]) == "0")
        #expect(h.run(["incrbyfloat", "new", "-0.5"]) == "-0.5")
        #expect(h.run(["set", "i", "17"]) == .ok)
        #expect(h.run(["incrbyfloat", "i", "1.25"]) == "18.25")
        #expect(h.run(["incrbyfloat", "i", "-18.25"]) == "0")
        // Keeps the TTL.
        #expect(h.run(["set", "t", "1", "EX", "100"]) == .ok)
        #expect(h.run(["incrbyfloat", "t", "1"]) == "2")
        #expect(h.run(["ttl", "t"]) == 100)
    }

    @Test func incrbyfloatErrors() {
        let notFloat = RV.error("ERR value is not a valid float")
        #expect(h.run(["incrbyfloat", "f", "abc"]) == notFloat)
        #expect(h.run(["incrbyfloat", "f", ""]) == notFloat)
        #expect(h.run(["incrbyfloat", "f", " 1"]) == notFloat)
        #expect(h.run(["incrbyfloat", "f", "nan"]) == notFloat)
        #expect(h.run(["exists", "f"]) == 0)
        #expect(h.run(["set", "s", "abc"]) == .ok)
        #expect(h.run(["incrbyfloat", "s", "1"]) == notFloat)
        #expect(h.run(["set", "s", ""]) == .ok)
        #expect(h.run(["incrbyfloat", "s", "1"]) == notFloat)
        // Beyond long double's range: not a float at all.
        #expect(h.run(["incrbyfloat", "f", "1.5e4932"]) == notFloat)
        // In range, but the sum is infinite.
        let infinite = RV.error("ERR increment would produce NaN or Infinity")
        #expect(h.run(["set", "big", "1e4932"]) == .ok)
        #expect(h.run(["incrbyfloat", "big", "1e4932"]) == infinite)
        #expect(h.run(["get", "big"]) == "1e4932")
        #expect(h.run(["incrbyfloat", "f", "inf"]) == infinite)
        #expect(h.run(["exists", "f"]) == 0)
    }

    // MARK: - APPEND, STRLEN, ranges

    @Test func appendAndStrlen() {
        #expect(h.run(["strlen", "k"]) == 0)
        #expect(h.run(["append", "k", "Hello"]) == 5)
        #expect(h.run(["append", "k", " World"]) == 11)
        #expect(h.run(["get", "k"]) == "Hello World")
        #expect(h.run(["strlen", "k"]) == 11)
        #expect(h.run(["append", "k", ""]) == 11)
        // Onto an integer-encoded value.
        #expect(h.run(["set", "n", "12"]) == .ok)
        #expect(h.run(["strlen", "n"]) == 2)
        #expect(h.run(["append", "n", "3"]) == 3)
        #expect(h.run(["get", "n"]) == "123")
        #expect(h.run(["object", "encoding", "n"]) == "raw")
        #expect(h.run(["set", "neg", "-12345"]) == .ok)
        #expect(h.run(["strlen", "neg"]) == 6)
        // APPEND keeps the TTL.
        #expect(h.run(["expire", "k", "100"]) == 1)
        #expect(h.run(["append", "k", "!"]) == 12)
        #expect(h.run(["ttl", "k"]) == 100)
    }

    @Test func appendLimit() {
        let small = CommandHarness(maxBulkLength: 10)
        defer { small.shutdown() }
        #expect(small.run(["append", "k", "12345"]) == 5)
        #expect(small.run(["append", "k", "123456"]) == .error("ERR string exceeds maximum allowed size (proto-max-bulk-len)"))
        #expect(small.run(["append", "k", "12345"]) == 10)
        #expect(small.run(["setrange", "r", "8", "abc"]) == .error("ERR string exceeds maximum allowed size (proto-max-bulk-len)"))
        #expect(small.run(["setrange", "r", "7", "abc"]) == 10)
    }

    @Test func getrangeAndSubstr() {
        #expect(h.run(["set", "k", "This is a string"]) == .ok)
        #expect(h.run(["getrange", "k", "0", "3"]) == "This")
        #expect(h.run(["getrange", "k", "-3", "-1"]) == "ing")
        #expect(h.run(["getrange", "k", "0", "-1"]) == "This is a string")
        #expect(h.run(["getrange", "k", "10", "100"]) == "string")
        #expect(h.run(["getrange", "k", "5", "3"]) == "")
        #expect(h.run(["getrange", "k", "-1", "-5"]) == "")
        #expect(h.run(["getrange", "k", "-100", "3"]) == "This")
        #expect(h.run(["getrange", "k", "100", "200"]) == "")
        #expect(h.run(["getrange", "missing", "0", "-1"]) == "")
        #expect(h.run(["substr", "k", "5", "6"]) == "is")
        #expect(h.run(["getrange", "k", "a", "1"]) == .error("ERR value is not an integer or out of range"))
        #expect(h.run(["substr", "k", "0", "b"]) == .error("ERR value is not an integer or out of range"))
        #expect(h.run(["set", "n", "12345"]) == .ok)
        #expect(h.run(["getrange", "n", "1", "2"]) == "23")
        #expect(h.run(["set", "e", ""]) == .ok)
        #expect(h.run(["getrange", "e", "0", "-1"]) == "")
    }

    @Test func setrange() {
        #expect(h.run(["set", "k", "Hello World"]) == .ok)
        #expect(h.run(["setrange", "k", "6", "Redis"]) == 11)
        #expect(h.run(["get", "k"]) == "Hello Redis")
        #expect(h.run(["setrange", "k", "11", "!!"]) == 13)
        #expect(h.run(["get", "k"]) == "Hello Redis!!")
        // Missing key: zero-padded.
        #expect(h.run(["setrange", "pad", "5", "x"]) == 6)
        #expect(h.run(["get", "pad"]) == .bulk([0, 0, 0, 0, 0, UInt8(ascii: "x")]))
        // Padding an existing value.
        #expect(h.run(["set", "short", "ab"]) == .ok)
        #expect(h.run(["setrange", "short", "4", "c"]) == 5)
        #expect(h.run(["get", "short"]) == .bulk([97, 98, 0, 0, 99]))
        // Empty value: no change, and a missing key stays missing.
        #expect(h.run(["setrange", "k", "100", ""]) == 13)
        #expect(h.run(["setrange", "none", "3", ""]) == 0)
        #expect(h.run(["exists", "none"]) == 0)
        // Onto an integer.
        #expect(h.run(["set", "n", "12345"]) == .ok)
        #expect(h.run(["setrange", "n", "1", "x"]) == 5)
        #expect(h.run(["get", "n"]) == "1x345")
        #expect(h.run(["setrange", "k", "-1", "x"]) == .error("ERR offset is out of range"))
        #expect(h.run(["setrange", "k", "x", "x"]) == .error("ERR value is not an integer or out of range"))
        #expect(h.run(["setrange", "k", "536870912", "x"]) == .error("ERR string exceeds maximum allowed size (proto-max-bulk-len)"))
    }

    // MARK: - Encodings

    @Test func objectEncodingOfStrings() {
        #expect(h.run(["set", "i", "123"]) == .ok)
        #expect(h.run(["object", "encoding", "i"]) == "int")
        #expect(h.run(["set", "lead", "0123"]) == .ok)
        #expect(h.run(["object", "encoding", "lead"]) == "embstr")
        #expect(h.run(["set", "s", "abc"]) == .ok)
        #expect(h.run(["object", "encoding", "s"]) == "embstr")
        #expect(h.run(["set", "long", String(repeating: "x", count: 45)]) == .ok)
        #expect(h.run(["object", "encoding", "long"]) == "raw")
        #expect(h.run(["set", "edge", String(repeating: "x", count: 44)]) == .ok)
        #expect(h.run(["object", "encoding", "edge"]) == "embstr")
        #expect(h.run(["append", "s", "d"]) == 4)
        #expect(h.run(["object", "encoding", "s"]) == "raw")
        #expect(h.run(["incrbyfloat", "fl", "1.5"]) == "1.5")
        #expect(h.run(["object", "encoding", "fl"]) == "embstr")
    }
}
