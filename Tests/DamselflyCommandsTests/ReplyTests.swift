import DamselflyRESP
import Testing

@testable import DamselflyCommands

/// Replies encoded on the shard (`Reply.raw`, `Reply.encodedMap`) against the `Reply`
/// values they stand for: the same bytes in either protocol.
@Suite struct ReplyTests {
    static func bytes(_ reply: Reply, _ version: Int) -> [UInt8] {
        var out = ReplyBuilder(protocolVersion: version, capacity: 64)
        reply.encode(into: &out)
        return out.buffer
    }

    @Test func anEncodedMapIsTheMapItStandsFor() {
        let pairs: [([UInt8], [UInt8])] = [(Array("f".utf8), Array("1".utf8)), ([], Array("\r\n".utf8)), (Array("k".utf8), [])]
        var body = ReplyBuilder(protocolVersion: 2, capacity: 0)
        for (field, value) in pairs {
            body.bulk(field)
            body.bulk(value)
        }
        let encoded = Reply.encodedMap(pairs: pairs.count, body: body.buffer)
        let plain = Reply.map(pairs.map { (.bulk($0.0), .bulk($0.1)) })
        for version in [2, 3] {
            #expect(Self.bytes(encoded, version) == Self.bytes(plain, version), "RESP\(version)")
        }
        #expect(Self.bytes(encoded, 2).starts(with: Array("*6\r\n".utf8)))
        #expect(Self.bytes(encoded, 3).starts(with: Array("%3\r\n".utf8)))
        let empty = Reply.encodedMap(pairs: 0, body: [])
        #expect(Self.bytes(empty, 2) == Array("*0\r\n".utf8))
        #expect(Self.bytes(empty, 3) == Array("%0\r\n".utf8))
    }
}
