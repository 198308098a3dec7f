import Testing
@testable import DamselflyStorage

@Suite struct KeyHashTests {
    @Test func knownXXH64Vectors() {
        // Reference values of XXH64 with seed 0.
        #expect(withBytes("") { KeyHash.hash($0) } == 0xEF46_DB37_51D8_E999)
        #expect(withBytes("a") { KeyHash.hash($0) } == 0xD24E_C4F1_A98C_6E5B)
        #expect(withBytes("abc") { KeyHash.hash($0) } == 0x44BC_2CF5_AD77_0999)
    }

    func shard(_ key: String, _ count: Int = 16, tags: Bool = true) -> Int {
        withBytes(key) { KeyHash.shard(of: $0, hash: KeyHash.hash($0), shardCount: count, lockOnHashtags: tags) }
    }

    func tag(_ key: String) -> String? {
        withBytes(key) { KeyHash.hashtag(of: $0).map { String(decoding: $0, as: UTF8.self) } }
    }

    @Test func hashtagRules() {
        #expect(tag("{user1000}.following") == "user1000")
        #expect(tag("foo{}{bar}") == nil)
        #expect(tag("foo{{bar}}zap") == "{bar")
        #expect(tag("foo{bar}{zap}") == "bar")
        #expect(tag("foo") == nil)
        #expect(tag("foo{bar") == nil)
        #expect(tag("}foo{") == nil)
    }

    @Test func hashtagsPlaceKeysTogether() {
        for count in [2, 3, 7, 16, 64] {
            #expect(shard("{user1000}.following", count) == shard("{user1000}.followers", count))
            #expect(shard("{user1000}.following", count) == shard("user1000", count, tags: false))
            // "foo{}{bar}" uses the whole key; "foo{{bar}}zap" uses "{bar".
            #expect(shard("foo{}{bar}", count) == shard("foo{}{bar}", count, tags: false))
            #expect(shard("foo{{bar}}zap", count) == shard("{bar", count, tags: false))
        }
    }

    @Test func shardUsesHighBits() {
        let h: UInt64 = 0x0000_0007_FFFF_FFFF
        #expect(withBytes("k") { KeyHash.shard(of: $0, hash: h, shardCount: 4, lockOnHashtags: false) } == 3)
        #expect(shard("anything", 1) == 0)
    }

    @Test func shardsAreBalanced() {
        var counts = [Int](repeating: 0, count: 8)
        for i in 0..<80_000 { counts[shard("key:\(i)", 8, tags: false)] += 1 }
        for c in counts { #expect(c > 9_000 && c < 11_000) }
    }
}
