import Testing
@testable import DamselflyRESP

/// The look-ahead walks pipelined frames ahead of the parse: it must find each
/// complete frame's end and argument 1 where the parser would, and give up
/// (nil) on anything it cannot walk, never reading past the buffer.
@Suite struct RESPLookaheadTests {
    private func look(_ text: String, at start: Int = 0) -> (end: Int, key: String?)? {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { raw in
            RESPLookahead.command(in: raw, at: start).map { found in
                (found.end, found.key.map { String(decoding: $0, as: UTF8.self) })
            }
        }
    }

    @Test func findsEachFrameOfAPipelineAndItsKey() {
        let get = "*2\r\n$3\r\nGET\r\n$5\r\nkey:1\r\n"
        let set = "*3\r\n$3\r\nSET\r\n$2\r\nk2\r\n$10\r\n0123456789\r\n"
        let text = get + set
        let first = look(text)
        #expect(first?.end == get.utf8.count)
        #expect(first?.key == "key:1")
        let second = look(text, at: get.utf8.count)
        #expect(second?.end == text.utf8.count)
        #expect(second?.key == "k2")
        // The parser reads the same frames.
        var parser = RESPParser()
        let args = CommandArguments()
        Array(text.utf8).withUnsafeBytes { raw in
            guard case .command(let consumed) = parser.parse(raw, into: args) else {
                Issue.record("the parser did not read the first frame")
                return
            }
            #expect(consumed == first?.end)
            #expect(args.string(1) == "key:1")
        }
    }

    @Test func aCommandWithoutArgumentOneHasNoKey() {
        let found = look("*1\r\n$4\r\nPING\r\n")
        #expect(found?.end == 14)
        #expect(found != nil && found?.key == nil)
    }

    @Test func emptyAndBinaryKeysAreKeys() {
        #expect(look("*2\r\n$3\r\nGET\r\n$0\r\n\r\n")?.key == "")
        #expect(look("*2\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\n")?.key == "a\r\nb")
    }

    @Test func incompleteFramesAreNotWalked() {
        let whole = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n"
        let bytes = Array(whole.utf8)
        for cut in 0..<bytes.count {
            let found = Array(bytes[0..<cut]).withUnsafeBytes { RESPLookahead.command(in: $0, at: 0) }
            #expect(found == nil, "cut at \(cut)")
        }
        #expect(look(whole)?.end == bytes.count)
    }

    @Test func whatIsNotAPlainMultibulkFrameIsLeftToTheParser() {
        #expect(look("GET key\r\n") == nil)                         // inline
        #expect(look("*0\r\n") == nil)                              // no arguments
        #expect(look("*-1\r\n") == nil)
        #expect(look("*x\r\n$3\r\nGET\r\n") == nil)
        #expect(look("*2\r\n+GET\r\n$1\r\nk\r\n") == nil)           // not a bulk
        #expect(look("*2\r\n$3\r\nGET\r\n$-1\r\n") == nil)
        #expect(look("*2\r\n$3\r\nGET\r\n$99999999999\r\nk\r\n") == nil)  // more than 10 digits
        #expect(look("*2\r\n$3\r\nGET\r\n$1\r\nkey\r\n") != nil)    // its end is the parser's to judge
        #expect(look("*2\r\n$\r\nGET\r\n$1\r\nk\r\n") == nil)       // empty length
        #expect(look("", at: 0) == nil)
        #expect(look("*1\r\n$4\r\nPING\r\n", at: 14) == nil)        // at the end
    }
}
