#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
@testable import DamselflyRESP

func encoded(_ version: Int, _ body: (inout ReplyBuilder) -> Void) -> String {
    var builder = ReplyBuilder(protocolVersion: version, capacity: 64)
    body(&builder)
    return String(decoding: builder.buffer, as: UTF8.self)
}

/// glibc's own `%.17g`, the reference the formatter must match.
func libcG17(_ value: Double) -> String {
    var out = [CChar](repeating: 0, count: 64)
    _ = withVaList([value]) { vsnprintf(&out, 64, "%.17g", $0) }
    return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

@Suite struct ReplyBuilderTests {
    @Test func simpleStringsAndErrors() {
        for version in [2, 3] {
            #expect(encoded(version) { $0.simpleString("OK") } == "+OK\r\n")
            #expect(encoded(version) { $0.simpleString(String("QUEUED")) } == "+QUEUED\r\n")
            #expect(encoded(version) { $0.error("ERR syntax error") } == "-ERR syntax error\r\n")
            #expect(encoded(version) { $0.error("WRONGTYPE a\r\nb\nc") } == "-WRONGTYPE a  b c\r\n")
        }
    }

    @Test func integers() {
        for version in [2, 3] {
            #expect(encoded(version) { $0.integer(0) } == ":0\r\n")
            #expect(encoded(version) { $0.integer(7) } == ":7\r\n")
            #expect(encoded(version) { $0.integer(-7) } == ":-7\r\n")
            #expect(encoded(version) { $0.integer(1234567890) } == ":1234567890\r\n")
            #expect(encoded(version) { $0.integer(Int.max) } == ":9223372036854775807\r\n")
            #expect(encoded(version) { $0.integer(Int.min) } == ":-9223372036854775808\r\n")
            #expect(encoded(version) { $0.bulkInteger(42) } == "$2\r\n42\r\n")
            #expect(encoded(version) { $0.bulkInteger(-5) } == "$2\r\n-5\r\n")
            #expect(encoded(version) { $0.bulkInteger(0) } == "$1\r\n0\r\n")
            #expect(encoded(version) { $0.bulkInteger(Int.min) } == "$20\r\n-9223372036854775808\r\n")
        }
        // Every power of ten boundary.
        var value = 1
        for _ in 0..<18 {
            for v in [value - 1, value, value + 1, -value] {
                #expect(encoded(2) { $0.integer(v) } == ":\(v)\r\n")
                #expect(encoded(2) { $0.bulkInteger(v) } == "$\(String(v).utf8.count)\r\n\(v)\r\n")
            }
            value *= 10
        }
    }

    @Test func bulks() {
        for version in [2, 3] {
            #expect(encoded(version) { $0.bulk("hello") } == "$5\r\nhello\r\n")
            #expect(encoded(version) { $0.bulk("") } == "$0\r\n\r\n")
            #expect(encoded(version) { $0.bulk([UInt8]()) } == "$0\r\n\r\n")
            #expect(encoded(version) { $0.bulk([0x61, 0x0D, 0x0A]) } == "$3\r\na\r\n\r\n")
            #expect(encoded(version) { b in [UInt8]("xyz".utf8).withUnsafeBytes { b.bulk($0) } } == "$3\r\nxyz\r\n")
            #expect(encoded(version) { $0.bulk("\u{E9}") } == "$2\r\n\u{E9}\r\n")
        }
    }

    /// A reply encoded ahead sizes its buffer with these: each must be what the writer writes.
    @Test func bulkAndHeaderSizesAreWhatIsWritten() {
        var value = 1
        var lengths = [0]
        for _ in 0..<7 {
            lengths += [value - 1, value, value + 1]
            value *= 10
        }
        for n in lengths where n >= 0 {
            let payload = [UInt8](repeating: 0x78, count: n)
            #expect(encoded(2) { $0.bulk(payload) }.utf8.count == ReplyBuilder.bulkSize(n), "bulk of \(n)")
            #expect(encoded(2) { $0.arrayHeader(n) }.utf8.count == ReplyBuilder.arrayHeaderSize(n), "header of \(n)")
        }
    }

    @Test func nullsAndHeaders() {
        #expect(encoded(2) { $0.null() } == "$-1\r\n")
        #expect(encoded(3) { $0.null() } == "_\r\n")
        #expect(encoded(2) { $0.nullArray() } == "*-1\r\n")
        #expect(encoded(3) { $0.nullArray() } == "_\r\n")
        #expect(encoded(2) { $0.arrayHeader(3) } == "*3\r\n")
        #expect(encoded(3) { $0.arrayHeader(0) } == "*0\r\n")
        #expect(encoded(2) { $0.mapHeader(2) } == "*4\r\n")
        #expect(encoded(3) { $0.mapHeader(2) } == "%2\r\n")
        #expect(encoded(2) { $0.setHeader(5) } == "*5\r\n")
        #expect(encoded(3) { $0.setHeader(5) } == "~5\r\n")
        #expect(encoded(2) { $0.pushHeader(3) } == "*3\r\n")
        #expect(encoded(3) { $0.pushHeader(3) } == ">3\r\n")
    }

    @Test func doubles() {
        let cases: [(Double, String)] = [
            (1.5, "1.5"), (0.1, "0.10000000000000001"), (3.0, "3"), (-3.0, "-3"), (0, "0"), (-0.0, "-0"),
            (.infinity, "inf"), (-.infinity, "-inf"), (.nan, "nan"), (1e17, "1e+17"), (1e16, "10000000000000000"),
            (0.0001, "0.0001"), (0.00001, "1.0000000000000001e-05"), (123.456, "123.456"),
            (1e300, "1.0000000000000001e+300"), (Double.leastNonzeroMagnitude, "4.9406564584124654e-324"),
            (.greatestFiniteMagnitude, "1.7976931348623157e+308"), (2.5, "2.5"),
        ]
        for (value, text) in cases {
            #expect(encoded(3) { $0.double(value) } == ",\(text)\r\n", "\(value)")
            #expect(encoded(2) { $0.double(value) } == "$\(text.utf8.count)\r\n\(text)\r\n", "\(value)")
        }
    }

    @Test func doubleFormattingMatchesLibc() {
        var generator = SystemRandomNumberGenerator()
        var samples: [Double] = [1.0 / 3, 2.0 / 3, 1e22, 1e23, 9007199254740992, 0.5, 100, 1e-5, 123456789012345680,
                                 Double.leastNormalMagnitude, Double.leastNormalMagnitude.nextDown, 0.30000000000000004]
        for _ in 0..<3000 {
            samples.append(Double(bitPattern: generator.next()))
            samples.append(Double.random(in: -1e6...1e6, using: &generator))
            samples.append(Double(Int.random(in: -1_000_000...1_000_000, using: &generator)) / 100)
        }
        for value in samples where value.isFinite {
            var out: [UInt8] = []
            DoubleFormatting.appendG17(value, to: &out)
            #expect(String(decoding: out, as: UTF8.self) == libcG17(value), "\(value.bitPattern)")
        }
    }

    @Test func booleansAndVerbatim() {
        #expect(encoded(3) { $0.boolean(true) } == "#t\r\n")
        #expect(encoded(3) { $0.boolean(false) } == "#f\r\n")
        #expect(encoded(2) { $0.boolean(true) } == ":1\r\n")
        #expect(encoded(2) { $0.boolean(false) } == ":0\r\n")
        #expect(encoded(3) { $0.verbatim("Some string") } == "=15\r\ntxt:Some string\r\n")
        #expect(encoded(3) { $0.verbatim("", format: "markdown") } == "=4\r\nmar:\r\n")
        #expect(encoded(3) { $0.verbatim("x", format: "md") } == "=5\r\nmd :x\r\n")
        #expect(encoded(2) { $0.verbatim("Some string") } == "$11\r\nSome string\r\n")
    }

    @Test func rawAndBufferManagement() {
        var builder = ReplyBuilder()
        #expect(builder.isEmpty)
        builder.appendRaw(Array("+OK\r\n".utf8))
        Array(":1\r\n".utf8).withUnsafeBytes { builder.appendRaw($0) }
        #expect(String(decoding: builder.buffer, as: UTF8.self) == "+OK\r\n:1\r\n")
        let capacity = builder.buffer.capacity
        builder.removeAll()
        #expect(builder.isEmpty && builder.buffer.capacity == capacity)
        builder.protocolVersion = 3
        builder.arrayHeader(2)
        builder.integer(-1)
        builder.null()
        #expect(String(decoding: builder.buffer, as: UTF8.self) == "*2\r\n:-1\r\n_\r\n")
    }
}
