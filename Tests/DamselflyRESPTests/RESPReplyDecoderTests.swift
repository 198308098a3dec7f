import Testing
@testable import DamselflyRESP

func decodeAll(_ input: [UInt8]) throws -> (RESPValue, consumed: Int)? {
    var decoder = RESPReplyDecoder()
    return try input.withUnsafeBytes { raw throws(RESPDecodeError) in try decoder.decode(raw) }
}

func skip(_ input: [UInt8]) throws -> (consumed: Int, isError: Bool)? {
    try input.withUnsafeBytes { raw throws(RESPDecodeError) in try RESPSkipReply(raw) }
}

@Suite struct RESPReplyDecoderTests {
    /// Every RESP3 type, nested, next to the bytes that encode it.
    static let cases: [(String, RESPValue)] = [
        ("+OK\r\n", .simpleString("OK")),
        ("-ERR bad\r\n", .error("ERR bad")),
        ("!9\r\nERR b\r\nad\r\n", .error("ERR b\r\nad")),
        (":-42\r\n", .integer(-42)),
        (":9223372036854775807\r\n", .integer(.max)),
        ("$5\r\nhe\r\no\r\n", .bulk(Array("he\r\no".utf8))),
        ("$0\r\n\r\n", .bulk([])),
        ("$-1\r\n", .bulk(nil)),
        ("*-1\r\n", .array(nil)),
        ("*0\r\n", .array([])),
        ("_\r\n", .null),
        (",1.5\r\n", .double(1.5)),
        (",inf\r\n", .double(.infinity)),
        (",-inf\r\n", .double(-.infinity)),
        (",nan\r\n", .double(.nan)),
        ("#t\r\n", .boolean(true)),
        ("#f\r\n", .boolean(false)),
        ("(3492890328409238509324850943850943825024385\r\n", .bigNumber("3492890328409238509324850943850943825024385")),
        ("=15\r\ntxt:Some string\r\n", .verbatim(format: "txt", text: "Some string")),
        ("~2\r\n+a\r\n:1\r\n", .set([.simpleString("a"), .integer(1)])),
        (">2\r\n$7\r\nmessage\r\n_\r\n", .push([.bulk(Array("message".utf8)), .null])),
        ("%2\r\n+k\r\n*2\r\n:1\r\n:2\r\n$1\r\nx\r\n%0\r\n",
         .map([(.simpleString("k"), .array([.integer(1), .integer(2)])), (.bulk([0x78]), .map([]))])),
        ("|1\r\n+ttl\r\n:3600\r\n+value\r\n", .simpleString("value")),
        ("*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n-ERR x\r\n", .array([.integer(1), .error("ERR x")])),
        ("*3\r\n*1\r\n~1\r\n>0\r\n$-1\r\n,3\r\n", .array([.array([.set([.push([])])]), .bulk(nil), .double(3)])),
    ]

    @Test func decodesEveryTypeAndNilForEveryStrictPrefix() throws {
        for (text, value) in Self.cases {
            let input = Array(text.utf8)
            let decoded = try decodeAll(input + Array("+next\r\n".utf8))
            #expect(decoded?.0 == value, "\(text)")
            #expect(decoded?.consumed == input.count, "\(text)")
            for length in 0..<input.count {
                #expect(try decodeAll(Array(input[..<length])) == nil, "\(text) prefix \(length)")
            }
        }
    }

    @Test func skipAgreesWithDecoder() throws {
        for (text, value) in Self.cases {
            let input = Array(text.utf8)
            let result = try skip(input + Array(":1\r\n".utf8))
            #expect(result?.consumed == input.count, "\(text)")
            if case .error = value { #expect(result?.isError == true) } else { #expect(result?.isError == false, "\(text)") }
            for length in 0..<input.count {
                #expect(try skip(Array(input[..<length])) == nil, "\(text) prefix \(length)")
            }
        }
    }

    @Test func roundTripsReplyBuilderOutput() throws {
        for version in [2, 3] {
            var builder = ReplyBuilder(protocolVersion: version)
            builder.mapHeader(1)
            builder.bulk("score")
            builder.double(0.1)
            builder.setHeader(2)
            builder.boolean(true)
            builder.verbatim("hi")
            builder.nullArray()
            let map = try decodeAll(builder.buffer)
            var offset = map!.consumed
            if version == 3 {
                #expect(map?.0 == .map([(.bulk(Array("score".utf8)), .double(0.1))]))
            } else {
                #expect(map?.0 == .array([.bulk(Array("score".utf8)), .bulk(Array("0.10000000000000001".utf8))]))
            }
            let set = try decodeAll(Array(builder.buffer[offset...]))
            offset += set!.consumed
            #expect(set?.0 == (version == 3
                ? .set([.boolean(true), .verbatim(format: "txt", text: "hi")])
                : .array([.integer(1), .bulk(Array("hi".utf8))])))
            let null = try decodeAll(Array(builder.buffer[offset...]))
            #expect(null?.0 == (version == 3 ? .null : .array(nil)))
            #expect(offset + null!.consumed == builder.buffer.count)
        }
    }

    @Test func malformedInputThrows() {
        for text in ["?x\r\n", "+OK\rX", ":12a\r\n", ":\r\n", "$3\r\nabcXY", "*-2\r\n", "#x\r\n", "=2\r\nab\r\n", ",abc\r\n", "$-2\r\n"] {
            #expect(throws: RESPDecodeError.self, "\(text)") { try decodeAll(Array(text.utf8)) }
        }
        for text in ["?x\r\n", "+OK\rX", "$x\r\n", "$3\r\nabcXY", "*-2\r\n", "%-1\r\n"] {
            #expect(throws: RESPDecodeError.self, "\(text)") { try skip(Array(text.utf8)) }
        }
    }

    /// Found by the libFuzzer target (Fuzz/RESPParser): lengths near Int.max in a reply made
    /// `length + 2` (decoder) and `pending + 2 * n` (skipper) overflow, a trap. Such replies
    /// are incomplete (no buffer holds them), as a short one would be.
    @Test func lengthsNearIntMaxAreIncompleteNotTraps() throws {
        for text in ["$9223372036854775807\r\n", "*1\r\n$9223372036854775806\r\nab",
                     "!9223372036854775807\r\n", "%4611686018427387904\r\n",
                     "|4611686018427387904\r\n", "*2\r\n*9223372036854775807\r\n:1\r\n",
                     "%1\r\n%4611686018427387904\r\n", "~2\r\n|4611686018427387904\r\n"] {
            let input = Array(text.utf8)
            #expect(try skip(input) == nil, "\(text)")
            #expect(try decodeAll(input) == nil, "\(text)")
        }
    }

    @Test func encodeCommand() throws {
        var buffer: [UInt8] = []
        RESPEncodeCommand([Array("SET".utf8), Array("k".utf8), [0x0D, 0x0A], []], into: &buffer)
        #expect(String(decoding: buffer, as: UTF8.self) == "*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\r\n\r\n$0\r\n\r\n")
        // The server-side parser reads it back.
        let (outcome, args) = parseOnce(buffer)
        #expect(outcome == .command(consumed: buffer.count))
        #expect(args == [Array("SET".utf8), Array("k".utf8), [0x0D, 0x0A], []])
        #expect(try decodeAll(buffer)?.0 == .array([.bulk(Array("SET".utf8)), .bulk([0x6B]), .bulk([0x0D, 0x0A]), .bulk([])]))
    }
}
