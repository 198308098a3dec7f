import Testing
@testable import DamselflyStorage

/// ``SetValue``: intset order and the intset → hashtable switch-over, as
/// Redis 7.0 (which has no listpack sets).
@Suite struct SetValueTests {
    func b(_ s: String) -> [UInt8] { Array(s.utf8) }
    func s(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }

    @Test func intsetKeepsAscendingOrder() {
        let set = SetValue()
        for m in ["5", "-3", "100", "0", "5", "-9223372036854775808", "9223372036854775807"] { set.add(b(m)) }
        #expect(set.encodingName == "intset" && set.typeName == "set")
        #expect(set.members.map(s) == ["-9223372036854775808", "-3", "0", "5", "100", "9223372036854775807"])
        #expect(set.contains(b("100")) && !set.contains(b("7")) && !set.contains(b("abc")))
        #expect(set.remove(b("0")) && !set.remove(b("0")) && !set.remove(b("x")))
        #expect(set.count == 5)
    }

    @Test func nonCanonicalIntegersAreStrings() {
        for m in ["007", "+1", "-0", " 1", "1.0", "9223372036854775808", ""] {
            let set = SetValue()
            set.add(b("1"))
            set.add(b(m))
            #expect(set.encodingName == "hashtable", "\(m)")
            #expect(set.contains(b(m)) && set.contains(b("1")))
        }
        #expect(SetValue(firstMember: b("12")).encodingName == "intset")
        #expect(SetValue(firstMember: b("a")).encodingName == "hashtable")
    }

    @Test func convertsPastIntsetEntries() {
        let set = SetValue()
        for i in 0..<SetValue.maxIntsetEntries { set.add(b("\(i)")) }
        #expect(set.encodingName == "intset")
        set.add(b("\(SetValue.maxIntsetEntries)"))
        #expect(set.encodingName == "hashtable")
        #expect(set.count == SetValue.maxIntsetEntries + 1)
        for i in 0...SetValue.maxIntsetEntries { #expect(set.contains(b("\(i)"))) }
        for i in 0..<500 { set.remove(b("\(i)")) }
        #expect(set.encodingName == "hashtable")  // never back
        #expect(Set(set.members.map(s)) == Set((500...512).map(String.init)))
    }

    @Test func popRandomDrainsEverything() {
        var rng = SystemRandomNumberGenerator()
        for members in [(0..<10).map { "\($0)" }, (0..<300).map { "m\($0)" }] {
            let set = SetValue()
            for m in members { set.add(b(m)) }
            var popped = Set<String>()
            while set.count > 0 { popped.insert(s(set.popRandom(using: &rng))) }
            #expect(popped == Set(members))
        }
    }

    @Test func scanCoversTheSet() {
        let set = SetValue()
        for i in 0..<1000 { set.add(b("m\(i)")) }
        var cursor: UInt64 = 0
        var seen = Set<String>()
        repeat {
            cursor = set.scan(cursor: cursor, count: 10) { seen.insert(s($0)) }
        } while cursor != 0
        #expect(seen.count == 1000)
        let ints = SetValue()
        for i in 0..<10 { ints.add(b("\(i)")) }
        var n = 0
        #expect(ints.scan(cursor: 99, count: 1) { _ in n += 1 } == 0)
        #expect(n == 10)
    }
}
