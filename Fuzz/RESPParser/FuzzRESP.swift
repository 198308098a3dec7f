// libFuzzer target for the RESP request parser and the reply decoder.
//
// Compiled by scripts/fuzz-resp.sh together with the DamselflyRESP sources into one module
// (`swiftc -sanitize=fuzzer,address -parse-as-library`), so the harness sees the parser's
// internal state. libFuzzer supplies `main`.
//
// Every input is checked for properties, not only for "does not crash":
// - the request parser gives the same transcript (commands, skips, final error or
//   unconsumed tail) whether the input arrives in one piece, in pieces whose sizes are drawn
//   from the input's hash (each piece parsed from a freshly allocated copy, so a view kept
//   into a freed buffer is an ASan report), or in pieces with the arguments object swapped
//   mid-frame (the parser must restart the frame);
// - every command respects the declared limits, its views lie inside its frame (multibulk)
//   or the line/scratch memory (inline), the parser is idle after a complete outcome and its
//   resume state is consistent after `.needMoreData`, and the bytes it scans stay linear;
// - the same parser with limits of `Int.max` (proto-max-bulk-len can be set that high) must
//   not trap;
// - `RESPReplyDecoder` and `RESPSkipReply` agree on the length and error-ness of a reply,
//   and a strict prefix of a decoded reply is incomplete, never an error or another value.
//
// A failed property calls `fatalError`, which libFuzzer reports as a crash with the input.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRESPOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    FuzzRequests.check(input)
    FuzzReplies.check(input)
    return 0
}

/// Small limits so that the fuzzer reaches the limit checks with short inputs.
let fuzzMaxBulk = 300
let fuzzMaxMultibulk = 24

func require(_ condition: @autoclosure () -> Bool, _ what: @autoclosure () -> String) {
    if !condition() { fatalError("property violated: " + what()) }
}

/// What a parser did with a whole input, independent of how the input was chunked.
struct Transcript: Equatable, CustomStringConvertible {
    enum Event: Equatable {
        case command([[UInt8]], consumed: Int)
        case skip(consumed: Int)
    }
    var events: [Event] = []
    /// The protocol error that ended the input, if any.
    var error: String?
    /// Bytes left unconsumed at the end (an incomplete frame), 0 after an error.
    var tail = 0

    var description: String { "\(events.count) events, error \(error ?? "none"), tail \(tail)" }
}

/// Deterministic piece sizes from the input's FNV-1a hash (xorshift afterwards).
struct PieceSizes {
    var state: UInt64

    init(_ input: [UInt8], salt: UInt64) {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ salt
        for b in input { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        state = h | 1
    }

    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }

    /// Mostly tiny pieces (1-3 bytes split headers and "\r\n"), sometimes big ones.
    mutating func pieceSize() -> Int {
        let r = next()
        switch r % 4 {
        case 0: return 1
        case 1: return 1 + Int((r >> 8) % 3)
        case 2: return 1 + Int((r >> 8) % 17)
        default: return 1 + Int((r >> 8) % 257)
        }
    }
}

enum FuzzRequests {
    static func check(_ input: [UInt8]) {
        let whole = run(input, chunked: false, swapObjects: false)
        let pieces = run(input, chunked: true, swapObjects: false)
        require(whole == pieces, "one piece (\(whole)) != pieces (\(pieces))")
        let swapped = run(input, chunked: true, swapObjects: true)
        require(whole == swapped, "one piece (\(whole)) != pieces with swapped objects (\(swapped))")
        // Limits as high as the configuration allows: only "no trap" is asked here.
        var huge = RESPParser(maxBulkLength: .max, maxMultibulkLength: .max)
        _ = parseAll(input, parser: &huge)
    }

    /// Parses a whole input without chunking and without checks (for the `Int.max` limits).
    static func parseAll(_ input: [UInt8], parser: inout RESPParser) -> Int {
        let args = CommandArguments()
        var position = 0
        var commands = 0
        while position < input.count {
            let outcome = input.withUnsafeBytes { raw in
                parser.parse(UnsafeRawBufferPointer(rebasing: raw[position...]), into: args)
            }
            switch outcome {
            case .command(let consumed): position += consumed; commands += 1
            case .skip(let consumed): position += consumed
            case .needMoreData, .protocolError: return commands
            }
        }
        return commands
    }

    /// Feeds `input` the way `Connection` does: parse what is buffered until the parser needs
    /// more, then append a piece. Each parse call sees a fresh copy of the unconsumed bytes.
    static func run(_ input: [UInt8], chunked: Bool, swapObjects: Bool) -> Transcript {
        var parser = RESPParser(maxBulkLength: fuzzMaxBulk, maxMultibulkLength: fuzzMaxMultibulk)
        var sizes = PieceSizes(input, salt: swapObjects ? 2 : 1)
        let objects = [CommandArguments(), CommandArguments()]
        var current = 0
        var transcript = Transcript()
        var consumed = 0             // bytes of `input` consumed by complete outcomes
        var buffered = chunked ? 0 : input.count
        var calls = 0
        feeding: while true {
            if buffered == consumed {
                if buffered == input.count { break feeding }
                buffered = min(input.count, buffered + sizes.pieceSize())
            }
            let available = buffered - consumed
            let copy = UnsafeMutableRawPointer.allocate(byteCount: available, alignment: 1)
            defer { copy.deallocate() }
            input.withUnsafeBytes { raw in
                copy.copyMemory(from: raw.baseAddress! + consumed, byteCount: available)
            }
            let view = UnsafeRawBufferPointer(start: copy, count: available)
            let args = objects[current]
            let outcome = parser.parse(view, into: args)
            calls += 1
            switch outcome {
            case .command(let n):
                require(n >= 1 && n <= available, "consumed \(n) of \(available)")
                checkCommand(args, frame: view, consumed: n)
                checkIdle(parser)
                transcript.events.append(.command((0..<args.count).map { args.bytes($0) }, consumed: n))
                consumed += n
            case .skip(let n):
                require(n >= 1 && n <= available, "skipped \(n) of \(available)")
                checkIdle(parser)
                transcript.events.append(.skip(consumed: n))
                consumed += n
            case .protocolError(let message):
                require(message.hasPrefix("Protocol error: "), "error text \(message)")
                checkIdle(parser)
                transcript.error = message
                return transcript
            case .needMoreData:
                checkResumeState(parser, args: args, available: available)
                if buffered == input.count {
                    transcript.tail = input.count - consumed
                    break feeding
                }
                if swapObjects && sizes.next() % 3 == 0 { current ^= 1 }
                // A real connection parses again only after a read appended bytes.
                buffered = min(input.count, buffered + sizes.pieceSize())
            }
        }
        // Resuming never rescans: a delimiter found on the last buffered byte may be looked
        // at once more by the next call, nothing else. (Swapping objects restarts frames.)
        if !swapObjects {
            require(parser.scannedBytes <= input.count + calls,
                    "scanned \(parser.scannedBytes) bytes of \(input.count) in \(calls) calls")
        }
        return transcript
    }

    /// Arguments of a command: within the limits, and each a view inside the frame (or, for
    /// inline commands, inside the line or the arguments' scratch memory).
    static func checkCommand(_ args: CommandArguments, frame: UnsafeRawBufferPointer, consumed: Int) {
        require(args.count >= 1, "command without arguments")
        let multibulk = frame[0] == UInt8(ascii: "*")
        if multibulk { require(args.count <= fuzzMaxMultibulk, "\(args.count) arguments") }
        let frameStart = Int(bitPattern: frame.baseAddress)
        let scratch = args.state.pointee.scratch.map { Int(bitPattern: $0) }
        let scratchEnd = (scratch ?? 0) + args.state.pointee.scratchCapacity
        var inlineBytes = 0
        for i in 0..<args.count {
            let arg = args[i]
            let start = Int(bitPattern: arg.baseAddress)
            if multibulk {
                require(arg.count <= fuzzMaxBulk, "bulk of \(arg.count) bytes")
                require(start >= frameStart && start + arg.count + 2 <= frameStart + consumed,
                        "argument \(i) outside its frame")
            } else {
                inlineBytes += arg.count
                let inLine = start >= frameStart && start + arg.count <= frameStart + consumed
                let inScratch = scratch.map { start >= $0 && start + arg.count <= scratchEnd } ?? false
                require(arg.count == 0 || inLine || inScratch, "inline argument \(i) outside line and scratch")
            }
        }
        // Unescaping never produces more bytes than the line holds.
        if !multibulk { require(inlineBytes <= consumed, "inline arguments longer than their line") }
    }

    static func checkIdle(_ parser: RESPParser) {
        require(parser.phase == .idle && parser.position == 0 && parser.remaining == 0
                && parser.bulkLength == -1 && parser.scanFrom == 0 && !parser.nulStall
                && parser.argsSoFar == 0 && parser.wanted == 0,
                "parser not idle after a complete outcome")
    }

    static func checkResumeState(_ parser: RESPParser, args: CommandArguments, available: Int) {
        require(parser.wanted >= 0, "negative bytesWanted")
        require(parser.scanFrom <= available, "scanFrom \(parser.scanFrom) past \(available)")
        switch parser.phase {
        case .idle:
            break
        case .multibulkCount, .inline:
            require(parser.argsSoFar == 0 && parser.position == 0, "header phase with arguments")
        case .multibulkArgs:
            require(parser.position > 0 && parser.position <= available, "position \(parser.position)")
            require(parser.remaining > 0 && parser.argsSoFar + parser.remaining <= fuzzMaxMultibulk,
                    "remaining \(parser.remaining) after \(parser.argsSoFar)")
            require(parser.argsSoFar == args.count, "argsSoFar \(parser.argsSoFar) != \(args.count)")
            require(parser.bulkLength <= fuzzMaxBulk, "bulk length \(parser.bulkLength) over the limit")
            if parser.bulkLength >= 0 {
                require(parser.wanted == parser.position + parser.bulkLength + 2 - available,
                        "bytesWanted \(parser.wanted) does not match the bulk in progress")
            }
        }
    }
}

enum FuzzReplies {
    /// Errors only the decoder reports: it checks the contents of values (integers, nulls,
    /// booleans, doubles, verbatim strings) that the skipper only counts, and limits nesting.
    static let decoderOnly: Set<String> = [
        "bad number", "number overflow", "bad null", "bad boolean", "bad double",
        "bad verbatim string", "nesting too deep",
    ]

    static func check(_ input: [UInt8]) {
        input.withUnsafeBytes { raw in
            let decoded = decode(raw)
            let skipped: Result<(consumed: Int, isError: Bool)?, RESPDecodeError>
            do throws(RESPDecodeError) { skipped = .success(try RESPSkipReply(raw)) } catch { skipped = .failure(error) }

            switch (decoded, skipped) {
            case (.success(let value?), .success(let skip?)):
                require(value.1 == skip.consumed, "decoder used \(value.1) bytes, skipper \(skip.consumed)")
                require(value.1 >= 1 && value.1 <= raw.count, "consumed \(value.1) of \(raw.count)")
                if case .error = value.0 { require(skip.isError, "error reply not flagged") } else {
                    require(!skip.isError, "non-error reply flagged as error")
                }
                checkPrefixes(raw, consumed: value.1)
            case (.success(_?), _):
                fatalError("property violated: decoder found a reply, skipper \(skipped)")
            case (.success(nil), .success(nil)):
                break
            case (.success(nil), _):
                fatalError("property violated: decoder wants more data, skipper \(skipped)")
            case (.failure, .failure), (.failure, .success(nil)):
                break
            case (.failure(let error), .success(_?)):
                require(decoderOnly.contains(error.message), "decoder error \(error.message) on a reply the skipper accepts")
            }
            if case .failure(let error) = decoded {
                require(error.offset >= 0 && error.offset < raw.count, "error offset \(error.offset)")
            }
        }
    }

    static func decode(_ raw: UnsafeRawBufferPointer) -> Result<(RESPValue, Int)?, RESPDecodeError> {
        var decoder = RESPReplyDecoder()
        decoder.maxDepth = 64
        do throws(RESPDecodeError) {
            return .success(try decoder.decode(raw))
        } catch {
            return .failure(error)
        }
    }

    /// A strict prefix of a complete reply is incomplete: `nil`, not a value or an error.
    static func checkPrefixes(_ raw: UnsafeRawBufferPointer, consumed: Int) {
        var cuts: Set<Int> = [consumed - 1, consumed / 2, 1]
        var step = 1
        while step < consumed { cuts.insert(consumed - step); step *= 3 }
        for cut in cuts where cut >= 1 && cut < consumed {
            let prefix = UnsafeRawBufferPointer(rebasing: raw[0..<cut])
            guard case .success(nil) = decode(prefix) else {
                fatalError("property violated: prefix of \(cut) of a \(consumed)-byte reply is not incomplete")
            }
        }
    }
}
