import Testing
@testable import DamselflyRESP

/// A connection's receive buffer: append a chunk, parse until `.needMoreData`, compact.
/// The array may reallocate between chunks, which exercises the parser's offset-based resume.
struct SimulatedConnection {
    var parser: RESPParser
    var args = CommandArguments()
    var buffer: [UInt8] = []
    var commands: [[[UInt8]]] = []
    var skips = 0
    var error: String?

    init(parser: RESPParser = RESPParser()) {
        self.parser = parser
    }

    mutating func feed<C: Collection>(_ chunk: C) where C.Element == UInt8 {
        buffer.append(contentsOf: chunk)
        while error == nil {
            let outcome = buffer.withUnsafeBytes { raw -> RESPParseOutcome in
                let outcome = parser.parse(raw, into: args)
                if case .command = outcome {
                    commands.append((0..<args.count).map { args.bytes($0) })
                }
                return outcome
            }
            switch outcome {
            case .command(let consumed):
                buffer.removeFirst(consumed)
            case .skip(let consumed):
                skips += 1
                buffer.removeFirst(consumed)
            case .needMoreData:
                return
            case .protocolError(let message):
                error = message
            }
        }
    }
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Parses `input` in one go; returns the outcome of the first parse call and the arguments.
func parseOnce(_ input: [UInt8], parser: RESPParser = RESPParser()) -> (RESPParseOutcome, [[UInt8]]) {
    var parser = parser
    let args = CommandArguments()
    return input.withUnsafeBytes { raw in
        let outcome = parser.parse(raw, into: args)
        return (outcome, (0..<args.count).map { args.bytes($0) })
    }
}

func firstError(_ input: [UInt8], parser: RESPParser = RESPParser()) -> String? {
    var connection = SimulatedConnection(parser: parser)
    connection.feed(input)
    return connection.error
}

@Suite struct RESPParserTests {
    static let pipeline: [UInt8] =
        bytes("*3\r\n$3\r\nSET\r\n$6\r\na\r\nb") + [0] + bytes("c\r\n$0\r\n\r\n")
        + bytes("PING\r\n")
        + bytes("\r\n")
        + bytes("  \t \n")
        + bytes(#"set "k\x41\n\"q" 'it\'s' plain"# + "\r\n")
        + bytes("*0\r\n")
        + bytes("*-1\r\n")
        + bytes(#"echo x"y z" 'back\slash' "\xzz" """# + "\n")
        + bytes("*2\r\n$4\r\nECHO\r\n$3\r\n\r\n\r\r\n")
        + bytes("*1\r\n$4\r\nPINGXY")  // Redis never checks the 2 bytes after a bulk
        + bytes("*1\r\n$0\r\n\r\n")

    static let expected: [[[UInt8]]] = [
        [bytes("SET"), bytes("a\r\nb") + [0] + bytes("c"), []],
        [bytes("PING")],
        [bytes("set"), bytes("kA\n\"q"), bytes("it's"), bytes("plain")],
        [bytes("echo"), bytes("xy z"), bytes(#"back\slash"#), bytes("xzz"), []],
        [bytes("ECHO"), bytes("\r\n\r")],
        [bytes("PING")],
        [[]],
    ]
    static let expectedSkips = 4

    @Test func wholePipelineAtOnce() {
        var connection = SimulatedConnection()
        connection.feed(Self.pipeline)
        #expect(connection.error == nil)
        #expect(connection.commands == Self.expected)
        #expect(connection.skips == Self.expectedSkips)
        #expect(connection.buffer.isEmpty)
    }

    @Test func everySplitIntoTwoChunks() {
        let input = Self.pipeline
        for split in 0...input.count {
            var connection = SimulatedConnection()
            connection.feed(input[..<split])
            connection.feed(input[split...])
            #expect(connection.error == nil, "split at \(split)")
            #expect(connection.commands == Self.expected, "split at \(split)")
            #expect(connection.skips == Self.expectedSkips, "split at \(split)")
            #expect(connection.buffer.isEmpty, "split at \(split)")
        }
    }

    @Test func oneByteAtATime() {
        var connection = SimulatedConnection()
        for byte in Self.pipeline { connection.feed(CollectionOfOne(byte)) }
        #expect(connection.error == nil)
        #expect(connection.commands == Self.expected)
        #expect(connection.skips == Self.expectedSkips)
        #expect(connection.buffer.isEmpty)
    }

    @Test func consumedCounts() {
        #expect(parseOnce(bytes("*0\r\n")).0 == .skip(consumed: 4))
        #expect(parseOnce(bytes("*-1\r\n")).0 == .skip(consumed: 5))
        #expect(parseOnce(bytes("*-7\r\nrest")).0 == .skip(consumed: 5))
        #expect(parseOnce(bytes("\n")).0 == .skip(consumed: 1))
        #expect(parseOnce(bytes("\r\n")).0 == .skip(consumed: 2))
        #expect(parseOnce(bytes("PING\nPING\n")).0 == .command(consumed: 5))
        #expect(parseOnce(bytes("*1\r\n$4\r\nPING\r\n*1")).0 == .command(consumed: 14))
        // Redis skips the byte after a header's '\r' without checking it.
        #expect(parseOnce(bytes("*1\rX$4\rYPINGab")) == (.command(consumed: 14), [bytes("PING")]))
        #expect(parseOnce([]).0 == .needMoreData)
        #expect(parseOnce(bytes("*1\r")).0 == .needMoreData)
        #expect(parseOnce(bytes("*1\r\n$4\r")).0 == .needMoreData)
        #expect(parseOnce(bytes("*1\r\n$4\r\nPING\r")).0 == .needMoreData)
        #expect(parseOnce(bytes("PING")).0 == .needMoreData)
    }

    @Test func inlineSplittingRules() {
        func split(_ line: String) -> [[UInt8]]? {
            let (outcome, args) = parseOnce(bytes(line + "\n"))
            if case .protocolError = outcome { return nil }
            return args
        }
        #expect(split("  a   b  ") == [bytes("a"), bytes("b")])
        #expect(split("a\u{0B}b\tc") == [bytes("a\u{0B}b"), bytes("c")])  // \v is not a token end
        #expect(split("\u{0B}\u{0C}a") == [bytes("a")])                     // but is a blank
        #expect(split(#"a"b c"d"#) == nil)
        #expect(split(#"a"b c" d"#) == [bytes("ab c"), bytes("d")])
        #expect(split(#"'a"b' "c'd""#) == [bytes("a\"b"), bytes("c'd")])
        #expect(split(#""\t\b\a\r\n\\\q\x4a\x4""#) == [[9, 8, 7, 13, 10, 92, 113, 74, 120, 52]])
        #expect(split(#"'\n\''"#) == [bytes(#"\n'"#)])
        #expect(split(#""" ''"#) == [[], []])
        #expect(split("\"a\"\u{0B}b") == [bytes("a"), bytes("b")])          // isspace after quote
        #expect(split("x\r") == [bytes("x")])
        #expect(split(#""\xff\x00""#) == [[0xFF, 0x00]])
        #expect(split("caf\u{E9}") == [bytes("caf\u{E9}")])
    }

    @Test func inlineCRLFHandling() {
        // Only one '\r' before '\n' is part of the line ending; another one ends the token.
        #expect(parseOnce(bytes("a\r\r\n")) == (.command(consumed: 4), [bytes("a")]))
        #expect(parseOnce(bytes("a\rb\n")) == (.command(consumed: 4), [bytes("a"), bytes("b")]))
    }

    @Test func protocolErrors() {
        let small = RESPParser(maxBulkLength: 10, maxMultibulkLength: 2)
        let invalidMultibulk = "Protocol error: invalid multibulk length"
        let invalidBulk = "Protocol error: invalid bulk length"
        #expect(firstError(bytes("*abc\r\n")) == invalidMultibulk)
        #expect(firstError(bytes("*\r\n")) == invalidMultibulk)
        #expect(firstError(bytes("*+1\r\n")) == invalidMultibulk)
        #expect(firstError(bytes("*01\r\n")) == invalidMultibulk)
        #expect(firstError(bytes("*-0\r\n")) == invalidMultibulk)
        #expect(firstError(bytes("* 1\r\n")) == invalidMultibulk)
        #expect(firstError(bytes("*1 \r\n")) == invalidMultibulk)
        #expect(firstError(bytes("*99999999999999999999\r\n")) == invalidMultibulk)
        #expect(firstError(bytes("*1048577\r\n")) == invalidMultibulk)
        #expect(firstError(bytes("*1048576\r\n")) == nil)
        #expect(firstError(bytes("*3\r\n"), parser: small) == invalidMultibulk)
        #expect(firstError(bytes("*2\r\n"), parser: small) == nil)

        #expect(firstError(bytes("*1\r\nfoo\r\n")) == "Protocol error: expected '$', got 'f'")
        #expect(firstError(bytes("*1\r\n\r\n")) == "Protocol error: expected '$', got ' '")
        #expect(firstError(bytes("*1\r\n\n\r\n")) == "Protocol error: expected '$', got ' '")
        #expect(firstError(bytes("*2\r\n$1\r\na\r\n*1\r\n")) == "Protocol error: expected '$', got '*'")

        #expect(firstError(bytes("*1\r\n$-1\r\n")) == invalidBulk)
        #expect(firstError(bytes("*1\r\n$\r\n")) == invalidBulk)
        #expect(firstError(bytes("*1\r\n$abc\r\n")) == invalidBulk)
        #expect(firstError(bytes("*1\r\n$007\r\n")) == invalidBulk)
        #expect(firstError(bytes("*1\r\n$11\r\n"), parser: small) == invalidBulk)
        #expect(firstError(bytes("*1\r\n$10\r\n"), parser: small) == nil)
        #expect(firstError(bytes("*1\r\n$536870913\r\n")) == invalidBulk)

        let unbalanced = "Protocol error: unbalanced quotes in request"
        for line in [#"GET "foo"#, #"GET 'foo"#, #"GET "foo"bar"#, #"GET 'a'b"#, #"GET "abc\""#, #"GET "a\"#] {
            #expect(firstError(bytes(line + "\r\n")) == unbalanced, "\(line)")
        }
    }

    @Test func tooBigLines() {
        // Count line: more than 64 KiB buffered without '\r'.
        var count = bytes("*") + [UInt8](repeating: UInt8(ascii: "1"), count: 65535)
        #expect(parseOnce(count).0 == .needMoreData)
        count.append(UInt8(ascii: "1"))
        #expect(parseOnce(count).0 == .protocolError("Protocol error: too big mbulk count string"))

        // Bulk length line: counted from the header's own start.
        var bulk = bytes("*1\r\n$") + [UInt8](repeating: UInt8(ascii: "1"), count: 65535)
        #expect(parseOnce(bulk).0 == .needMoreData)
        bulk.append(UInt8(ascii: "1"))
        #expect(parseOnce(bulk).0 == .protocolError("Protocol error: too big bulk count string"))

        var inline = [UInt8](repeating: UInt8(ascii: "a"), count: 65536)
        #expect(parseOnce(inline).0 == .needMoreData)
        inline.append(UInt8(ascii: "a"))
        #expect(parseOnce(inline).0 == .protocolError("Protocol error: too big inline request"))

        // A longer inline line is fine when its newline has arrived.
        var longLine = bytes("SET k ") + [UInt8](repeating: UInt8(ascii: "v"), count: 100_000)
        longLine.append(0x0A)
        let (outcome, args) = parseOnce(longLine)
        #expect(outcome == .command(consumed: longLine.count))
        #expect(args.count == 3 && args[2].count == 100_000)
    }

    @Test func tooBigDetectedIncrementally() {
        var connection = SimulatedConnection()
        let input = bytes("*1\r\n$") + [UInt8](repeating: UInt8(ascii: "1"), count: 70_000)
        var offset = 0
        while offset < input.count && connection.error == nil {
            connection.feed(input[offset..<min(offset + 1000, input.count)])
            offset += 1000
        }
        #expect(connection.error == "Protocol error: too big bulk count string")
        #expect(connection.parser.scannedBytes <= input.count)
    }

    /// Redis finds line ends with strchr, which stops at NUL: such a line waits for more data
    /// until over 64 KiB are buffered.
    @Test func nulInHeaderOrInlineLineStallsLikeRedis() {
        #expect(parseOnce(bytes("*1") + [0] + bytes("\r\n$1\r\na\r\n")).0 == .needMoreData)
        #expect(parseOnce(bytes("GET a") + [0] + bytes("b\r\n")).0 == .needMoreData)
        var connection = SimulatedConnection()
        connection.feed(bytes("*1\r\n$1") + [0] + bytes("\r\n"))
        #expect(connection.error == nil && connection.commands.isEmpty)
        connection.feed([UInt8](repeating: UInt8(ascii: "x"), count: 65536))
        #expect(connection.error == "Protocol error: too big bulk count string")
    }

    @Test func bytesWantedForBigBulk() {
        var parser = RESPParser()
        let args = CommandArguments()
        let partial = bytes("*2\r\n$3\r\nSET\r\n$100\r\nabc")
        partial.withUnsafeBytes { raw in
            #expect(parser.parse(raw, into: args) == .needMoreData)
        }
        #expect(parser.bytesWanted == 99)
    }

    /// Found by the libFuzzer target (Fuzz/RESPParser): with proto-max-bulk-len at Int.max
    /// (CONFIG SET allows it), a bulk of Int.max bytes made `position + length + 2` overflow,
    /// a trap that stopped the server. Now it waits for the bytes, and the amount it reports
    /// wanting is saturated so the connection can add its buffer size to it.
    @Test func bulkLengthNearIntMaxWaitsInsteadOfTrapping() {
        for length in [Int.max, Int.max - 1, Int.max - 2, Int.max / 2] {
            var parser = RESPParser(maxBulkLength: .max, maxMultibulkLength: .max)
            let args = CommandArguments()
            let input = bytes("*1\r\n$\(length)\r\nab")
            input.withUnsafeBytes { raw in
                #expect(parser.parse(raw, into: args) == .needMoreData)
            }
            #expect(parser.bytesWanted >= Int.max / 2 && parser.bytesWanted <= Int.max / 2 + 2)
            #expect(parser.bytesWanted + input.count > 0)
        }
    }

    /// The in-place reading of "*<1-9>" counts and of plain "$<digits>" headers must agree with
    /// the general path (`findLineEnd` + `string2ll`) at every edge of what it accepts: digit
    /// counts 1, 18, 19 and 20, "0" with and without leading zeros, a missing byte after '\r',
    /// NUL and other bytes inside the digits, and the configured limits.
    @Test func plainHeaderShapesMatchTheGeneralPath() {
        let invalidBulk = "Protocol error: invalid bulk length"
        let huge = RESPParser(maxBulkLength: .max, maxMultibulkLength: .max)
        #expect(parseOnce(bytes("*1\r\n$0\r\n\r\n")) == (.command(consumed: 10), [[]]))
        #expect(parseOnce(bytes("*1\r\n$1\r\nx\r\n")) == (.command(consumed: 11), [bytes("x")]))
        #expect(parseOnce(bytes("*9\r\n")).0 == .needMoreData)
        #expect(parseOnce(bytes("*1\r\n$3")).0 == .needMoreData)
        #expect(parseOnce(bytes("*1\r\n$3\r")).0 == .needMoreData)
        #expect(parseOnce(bytes("*1\r\n$3\r\n")).0 == .needMoreData)
        #expect(parseOnce(bytes("*1\r\n$3") + [0] + bytes("\r\nabc\r\n")).0 == .needMoreData)
        #expect(firstError(bytes("*1\r\n$00\r\n\r\n")) == invalidBulk)
        #expect(firstError(bytes("*1\r\n$01\r\nx\r\n")) == invalidBulk)
        #expect(firstError(bytes("*1\r\n$1x\r\nx\r\n")) == invalidBulk)
        #expect(firstError(bytes("*1\r\n$+1\r\nx\r\n")) == invalidBulk)
        #expect(firstError(bytes("*1\r\n$ 1\r\nx\r\n")) == invalidBulk)
        #expect(firstError(bytes("*1\r\n$1 \r\nx\r\n")) == invalidBulk)
        #expect(firstError(bytes("*1\r\n$11\r\n"), parser: RESPParser(maxBulkLength: 10)) == invalidBulk)
        #expect(firstError(bytes("*2\r\n"), parser: RESPParser(maxMultibulkLength: 1)) == "Protocol error: invalid multibulk length")
        #expect(firstError(bytes("*1\r\n"), parser: RESPParser(maxMultibulkLength: 0)) == "Protocol error: invalid multibulk length")
        // 18 digits (the longest read in place), 19 (the general path), 20 (too big for Int64).
        let eighteen = String(repeating: "9", count: 18)
        let nineteen = "1" + String(repeating: "0", count: 18)
        for digits in [eighteen, nineteen, "9223372036854775807"] {
            var parser = huge
            let args = CommandArguments()
            let input = bytes("*1\r\n$\(digits)\r\nab")
            input.withUnsafeBytes { raw in
                #expect(parser.parse(raw, into: args) == .needMoreData, "\(digits)")
            }
            #expect(parser.bytesWanted == min(Int(digits)! - 2, Int.max / 2) + 2, "\(digits)")
        }
        #expect(firstError(bytes("*1\r\n$9223372036854775808\r\n"), parser: huge) == invalidBulk)
        #expect(firstError(bytes("*1\r\n$10000000000000000000\r\n"), parser: huge) == invalidBulk)
        // Bytes examined: each header line up to its '\r', as `findLineEnd` counts them
        // (3 + 3 + 4 + 3), whichever path read it; linear when the frame drips in.
        let frame = bytes("*3\r\n$3\r\nSET\r\n$16\r\nkey:000000012345\r\n$2\r\nvv\r\n")
        var whole = SimulatedConnection()
        whole.feed(frame)
        var drip = SimulatedConnection()
        for byte in frame { drip.feed(CollectionOfOne(byte)) }
        #expect(whole.commands == [[bytes("SET"), bytes("key:000000012345"), bytes("vv")]])
        #expect(drip.commands == whole.commands)
        #expect(whole.parser.scannedBytes == 13)
        #expect(drip.parser.scannedBytes <= 2 * frame.count)
    }

    /// Work stays linear however small the chunks: resumed calls never rescan earlier bytes.
    @Test func linearWorkForLargeBulkInSmallChunks() {
        let payload = [UInt8](repeating: 0x0D, count: 300_000)  // full of '\r' on purpose
        let input = bytes("*2\r\n$3\r\nSET\r\n$300000\r\n") + payload + bytes("\r\n")
        var connection = SimulatedConnection()
        var offset = 0
        while offset < input.count {
            connection.feed(input[offset..<min(offset + 100, input.count)])
            offset += 100
        }
        #expect(connection.commands == [[bytes("SET"), payload]])
        #expect(connection.parser.scannedBytes < 64)
    }

    @Test func linearWorkForManyArgumentsAndLongInlineLines() {
        var input = bytes("*10000\r\n")
        for i in 0..<10000 { input += bytes("$\(String(i).utf8.count)\r\n\(i)\r\n") }
        input += bytes("PING ") + [UInt8](repeating: UInt8(ascii: "z"), count: 60_000) + bytes("\r\n")
        var connection = SimulatedConnection()
        var offset = 0
        while offset < input.count {
            connection.feed(input[offset..<min(offset + 7, input.count)])
            offset += 7
        }
        #expect(connection.commands.count == 2)
        #expect(connection.commands.first?.count == 10000)
        #expect(connection.commands.first?.last == bytes("9999"))
        #expect(connection.commands.last?.last?.count == 60_000)
        #expect(connection.parser.scannedBytes <= input.count)
    }

    @Test func switchingArgumentsObjectMidFrameRestartsCleanly() {
        var parser = RESPParser()
        let first = CommandArguments()
        let second = CommandArguments()
        let input = bytes("*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n")
        input.withUnsafeBytes { raw in
            #expect(parser.parse(UnsafeRawBufferPointer(rebasing: raw[0..<16]), into: first) == .needMoreData)
            #expect(parser.parse(raw, into: second) == .command(consumed: input.count))
        }
        #expect(second.count == 2)
        #expect(second.string(1) == "hi")
    }

    @Test func string2llMatchesRedis() {
        func parse(_ s: String) -> Int? {
            let b = bytes(s)
            return b.withUnsafeBytes { RESPParser.string2ll($0.baseAddress!, count: $0.count) }
        }
        #expect(parse("0") == 0)
        #expect(parse("-1") == -1)
        #expect(parse("9223372036854775807") == Int.max)
        #expect(parse("-9223372036854775808") == Int.min)
        #expect(parse("9223372036854775808") == nil)
        #expect(parse("-9223372036854775809") == nil)
        #expect(parse("-") == nil)
        #expect(parse("-0") == nil)
        #expect(parse("00") == nil)
        #expect(parse("+5") == nil)
        #expect(parse("5a") == nil)
        #expect(parse("000000000000000000001") == nil)
    }
}
