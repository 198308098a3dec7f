import Testing
@testable import DamselflyStorage

@Suite struct ClusterSlotTests {
    func slot(_ key: String) -> Int { ClusterSlot.slot(of: Array(key.utf8)) }

    @Test func crc16IsXModem() {
        // The standard check value of CRC-16/XMODEM.
        #expect(withBytes("123456789") { ClusterSlot.crc16($0) } == 0x31C3)
        #expect(withBytes("") { ClusterSlot.crc16($0) } == 0)
    }

    /// Slots as a Redis 7.0 cluster node's CLUSTER KEYSLOT reports them.
    @Test func slotsAsRedisReportsThem() {
        #expect(slot("foo") == 12182)
        #expect(slot("bar") == 5061)
        #expect(slot("user1000") == 3443)
        #expect(slot("a{}b") == 13694)
        #expect(slot("") == 0)
        #expect(slot("{}") == 15257)
        #expect(slot("{bar") == 4015)
    }

    @Test func hashtagsShareASlot() {
        #expect(slot("foo{bar}") == slot("bar"))
        #expect(slot("{user1000}.following") == slot("user1000"))
        #expect(slot("{user1000}.followers") == slot("user1000"))
        #expect(slot("foo{{bar}}zap") == slot("{bar"))
    }
}
