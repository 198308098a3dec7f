import Testing
@testable import DamselflyACL

/// Rule parsing and description, against what redis-server 7.0.15 answers for the same
/// rules (ACL LIST lines and SETUSER error texts taken from it).
@Suite struct ACLUserTests {
    private func user(_ name: String, _ rules: [String]) throws -> ACLUser {
        var u = ACLUser(name: name)
        for rule in rules { try u.apply(Array(rule.utf8)) }
        return u
    }

    @Test func defaultUserDescribesAsRedis() {
        let u = ACLUser.makeDefault()
        #expect(u.description == "on nopass ~* &* +@all")
        #expect(u.isUnrestricted)
    }

    @Test func rulesDescribeAsRedis() throws {
        let u1 = try user("u1", ["on", ">pw", "~k*", "%R~r*", "&ch", "+get", "+client|list", "(+set ~s*)"])
        #expect(u1.description == "on #30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4 ~k* %R~r* resetchannels &ch -@all +client|list +get (~s* resetchannels -@all +set)")
        let u2 = try user("u2", ["+@all", "-@dangerous", "-get", "+select|0"])
        #expect(u2.description == "off resetchannels +@all -@dangerous -get")
        let u3 = try user("u3", ["+@read", "-@keyspace", "+config|get", "reset", "skip-sanitize-payload"])
        #expect(u3.description == "off skip-sanitize-payload resetchannels -@all")
        let u4 = try user("u4", ["-@all", "+@hash", "+@string", "-hset"])
        #expect(u4.description == "off resetchannels -@all +@string +@hash -hset")
        #expect(!u4.isUnrestricted)
    }

    @Test func badRulesGiveRedisErrors() {
        let cases: [(String, ACLRuleError)] = [
            ("%X~a", .syntax), ("+select|0|1", .unknownName), ("+config|get|x", .firstArgOfSubcommand),
            ("+config|", .syntax), ("#abc", .badHash), ("<nope", .noSuchPassword), ("bogus", .syntax),
            ("-select|0", .unknownName), ("+@nosuch", .unknownName), ("+nosuch", .unknownName), ("~a b", .syntax),
        ]
        for (rule, expected) in cases {
            var u = ACLUser(name: "x")
            #expect(throws: expected, "\(rule)") { try u.apply(Array(rule.utf8)) }
        }
        var all = ACLUser(name: "x")
        #expect(throws: ACLRuleError.keyAfterAllKeys) { try all.apply(Array("allkeys".utf8)); try all.apply(Array("~a".utf8)) }
    }

    @Test func passwordsAreSHA256() throws {
        #expect(SHA256.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let u = try user("u", ["on", ">secret"])
        #expect(u.accepts(Array("secret".utf8)))
        #expect(!u.accepts(Array("other".utf8)))
        let off = try user("u", [">secret"])
        #expect(!off.accepts(Array("secret".utf8)))
    }

    @Test func checksCommandsKeysAndChannels() throws {
        let u = try user("u", ["on", "nopass", "+get", "+set", "+publish", "%R~r*", "~k*", "&news"])
        let get = ACLCommandTable.id("get")!
        let set = ACLCommandTable.id("set")!
        let del = ACLCommandTable.id("del")!
        let publish = ACLCommandTable.id("publish")!
        func args(_ a: String...) -> [[UInt8]] { a.map { Array($0.utf8) } }
        #expect(u.check(get, args("get", "k1")) == nil)
        #expect(u.check(get, args("get", "r1")) == nil)
        #expect(u.check(set, args("set", "r1", "v")) == .key(position: 1))
        #expect(u.check(set, args("set", "k1", "v")) == nil)
        #expect(u.check(del, args("del", "k1")) == .command)
        #expect(u.check(publish, args("publish", "news", "x")) == nil)
        #expect(u.check(publish, args("publish", "other", "x")) == .channel(position: 1))
        #expect(u.check(nil, args("damselfly-only")) == .command)
    }

    @Test func selectorsAllowWhatTheRootDoesNot() throws {
        let u = try user("u", ["on", "nopass", "+get", "~a*", "(+set ~b*)"])
        func args(_ a: String...) -> [[UInt8]] { a.map { Array($0.utf8) } }
        #expect(u.check(ACLCommandTable.id("set")!, args("set", "b1", "v")) == nil)
        #expect(u.check(ACLCommandTable.id("set")!, args("set", "a1", "v")) == .key(position: 1))
        #expect(u.check(ACLCommandTable.id("get")!, args("get", "b1")) == .key(position: 1))
    }

    @Test func keySpecsFindKeys() {
        func keys(_ a: String...) -> [Int] {
            ACLKeyExtractor.keys(ACLCommandTable.id(a[0])!, a.map { Array($0.utf8) }).map(\.0)
        }
        #expect(keys("mset", "a", "1", "b", "2") == [1, 3])
        #expect(keys("eval", "return 1", "2", "x", "y", "z") == [3, 4])
        #expect(keys("blpop", "a", "b", "0") == [1, 2])
        #expect(keys("xread", "count", "1", "streams", "s1", "s2", "0", "0") == [4, 5])
        #expect(keys("sort", "l", "by", "w*", "store", "dst") == [1, 5])
        #expect(keys("lmove", "a", "b", "left", "right") == [1, 2])
    }

    @Test func mergesSelectorArguments() {
        let (merged, unmatched) = ACLUser.mergeSelectorArguments(["on", "(+get", "~a*)", "off"].map { Array($0.utf8) })
        #expect(unmatched == nil)
        #expect(merged.map { String(decoding: $0, as: UTF8.self) } == ["on", "(+get ~a*)", "off"])
        #expect(ACLUser.mergeSelectorArguments([Array("(+get".utf8)]).unmatched == 0)
    }
}
