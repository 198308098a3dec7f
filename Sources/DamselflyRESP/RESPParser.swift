/// What one call to `RESPParser.parse` found.
public enum RESPParseOutcome: Equatable, Sendable {
    /// A full command is in the arguments; the caller advances its buffer by `consumed`.
    case command(consumed: Int)
    /// Something that runs nothing (empty inline line, `*0`, `*-1`, ...); advance by `consumed`.
    case skip(consumed: Int)
    /// The frame is incomplete: call again with the same start and more bytes appended.
    case needMoreData
    /// Exact Redis text without the leading "-ERR ", e.g. "Protocol error: invalid bulk length".
    /// The caller replies "-ERR <text>\r\n" and closes the connection, as Redis does.
    case protocolError(String)
}

/// Incremental parser for client requests: multibulk (`*N\r\n$len\r\n...`) and inline commands,
/// with the exact acceptance rules and error texts of Redis 7 (`processMultibulkBuffer`,
/// `processInlineBuffer`, `sdssplitargs`, `string2ll` in networking.c / sds.c / util.c).
///
/// Work is linear in the input whatever the chunking: when a frame is incomplete the parser
/// keeps how far it got (complete arguments, the parsed length of the bulk in progress, how far
/// a header line was already searched), all as offsets from the frame start, because the caller
/// may move its buffer between calls. A resumed call therefore never rescans a large bulk.
///
/// Redis quirks kept on purpose (clients can observe them):
/// - Header lines end at the first `\r`; the byte after it is skipped without being checked, and
///   so are the two bytes after a bulk payload (Redis never checks they are `\r\n`).
/// - Redis searches lines with `strchr`, which stops at a NUL byte: a NUL before the end of a
///   header (or of an inline line) makes Redis wait for more data until more than 64 KiB are
///   buffered, then fail with the "too big" error. This parser does the same.
/// - A count `<= 0` (`*0`, `*-1`, `*-5`) is accepted and runs nothing.
public struct RESPParser: Sendable {
    /// Largest bulk accepted (Redis `proto-max-bulk-len`, 512 MiB by default).
    public var maxBulkLength: Int
    /// Largest argument count accepted. Redis 7 accepts up to INT_MAX (`Int(Int32.max)`) and grows
    /// argv lazily; the 1 Mi default is the older Redis limit, kept as a safer default.
    public var maxMultibulkLength: Int

    /// Redis PROTO_INLINE_MAX_SIZE: how long a header or inline line may grow without its newline.
    @inlinable static var inlineMaxSize: Int { 64 * 1024 }

    @usableFromInline
    enum Phase: UInt8, Sendable {
        case idle, multibulkCount, multibulkArgs, inline
    }

    @usableFromInline var phase: Phase = .idle
    /// Arguments of the current multibulk still missing.
    @usableFromInline var remaining: Int = 0
    /// Offset (from the frame start) of the first byte not yet consumed by the frame.
    @usableFromInline var position: Int = 0
    /// Length of the bulk whose header was parsed, or -1 while the next thing is a `$` header.
    @usableFromInline var bulkLength: Int = -1
    /// Offset from which the line being searched is still unexplored (avoids rescans).
    @usableFromInline var scanFrom: Int = 0
    /// A NUL came before the end of the current line (see the type's notes).
    @usableFromInline var nulStall: Bool = false
    /// Arguments appended for the frame in progress, and to which object: lets a resumed call
    /// detect a caller that switched objects and restart the frame instead of mixing them.
    @usableFromInline var argsSoFar: Int = 0
    @usableFromInline var owner: ObjectIdentifier?
    @usableFromInline var wanted: Int = 0
    /// Bytes examined while looking for line ends (tests assert it stays O(input)).
    @usableFromInline var scannedBytes: Int = 0

    public init(maxBulkLength: Int = 512 * 1024 * 1024, maxMultibulkLength: Int = 1024 * 1024) {
        self.maxBulkLength = maxBulkLength
        self.maxMultibulkLength = maxMultibulkLength
    }

    /// Bytes the parser knows it still needs for the frame in progress (the rest of a bulk whose
    /// length is known), so the caller can reserve a big bulk in one go; 0 if unknown.
    @inlinable public var bytesWanted: Int { wanted }

    /// Parses at most one command from `buffer`, which starts at the first unconsumed byte.
    /// After `.needMoreData`, the next call must pass a buffer that starts at the same byte
    /// (it may live elsewhere in memory) and the same `args`.
    @inlinable
    public mutating func parse(_ buffer: UnsafeRawBufferPointer, into args: CommandArguments) -> RESPParseOutcome {
        guard let start = buffer.baseAddress, buffer.count > 0 else { return .needMoreData }
        if phase != .idle {
            if owner == ObjectIdentifier(args) && args.count == argsSoFar {
                args.rebase(frameStart: start)
            } else {
                resetFrame()  // different object: restart the frame, which costs one rescan
            }
        }
        if phase == .idle {
            args.reset(frameStart: start)
            owner = ObjectIdentifier(args)
            phase = start.load(as: UInt8.self) == UInt8(ascii: "*") ? .multibulkCount : .inline
        }
        if phase == .inline {
            return parseInline(start, end: buffer.count, into: args)
        }
        return parseMultibulk(start, end: buffer.count, into: args)
    }

    @inlinable
    mutating func parseMultibulk(_ start: UnsafeRawPointer, end: Int, into args: CommandArguments) -> RESPParseOutcome {
        if phase == .multibulkCount {
            let count: Int
            let lineEnd: Int
            // Nearly every request opens with "*<1-9>\r": read it in place. The slow path below
            // would find the same '\r' (no NUL can come before it) and the same count.
            if end >= 4, case let digit = start.load(fromByteOffset: 1, as: UInt8.self) &- UInt8(ascii: "1"), digit < 9,
               start.load(fromByteOffset: 2, as: UInt8.self) == 0x0D {
                scannedBytes &+= 3 &- scanFrom  // what `findLineEnd` would have counted
                count = Int(digit) &+ 1
                lineEnd = 2
            } else {
                let r = findLineEnd(start, end: end, delimiter: 0x0D)
                if r < 0 {
                    if end > Self.inlineMaxSize {
                        return fail("Protocol error: too big mbulk count string")
                    }
                    return .needMoreData
                }
                // The line must also hold the byte after '\r' (Redis does not check it is '\n').
                if r > end - 2 { return .needMoreData }
                guard let parsed = Self.string2ll(start + 1, count: r - 1) else {
                    return fail("Protocol error: invalid multibulk length")
                }
                count = parsed
                lineEnd = r
            }
            guard count <= maxMultibulkLength else {
                return fail("Protocol error: invalid multibulk length")
            }
            if count <= 0 {
                resetFrame()
                return .skip(consumed: lineEnd + 2)
            }
            position = lineEnd + 2
            scanFrom = position
            remaining = count
            bulkLength = -1
            phase = .multibulkArgs
        }
        // The frame's progress lives in locals while the loop runs (stored back before any
        // `.needMoreData`): kept in the struct, every argument cost loads and stores of each.
        var position = self.position
        var remaining = self.remaining
        var bulkLength = self.bulkLength
        var argsSoFar = self.argsSoFar
        while remaining > 0 {
            if bulkLength < 0 {
                let lineStart = position
                if let header = Self.plainBulkHeader(start, at: lineStart, end: end) {
                    // What `findLineEnd` would have counted and left behind.
                    scannedBytes &+= header.lineEnd &- scanFrom &+ 1
                    scanFrom = header.lineEnd
                    guard header.length <= maxBulkLength else {
                        return fail("Protocol error: invalid bulk length")
                    }
                    position = header.lineEnd &+ 2
                    bulkLength = header.length
                } else {
                    let r = findLineEnd(start, end: end, delimiter: 0x0D)
                    if r < 0 {
                        if end - lineStart > Self.inlineMaxSize {
                            return fail("Protocol error: too big bulk count string")
                        }
                        self.save(position, remaining, bulkLength, argsSoFar)
                        return .needMoreData
                    }
                    if r > end - 2 {
                        self.save(position, remaining, bulkLength, argsSoFar)
                        return .needMoreData
                    }
                    let first = start.load(fromByteOffset: lineStart, as: UInt8.self)
                    if first != UInt8(ascii: "$") {
                        return fail(Self.expectedDollarMessage(first))
                    }
                    guard let length = Self.string2ll(start + lineStart + 1, count: r - lineStart - 1),
                          length >= 0, length <= maxBulkLength
                    else {
                        return fail("Protocol error: invalid bulk length")
                    }
                    position = r + 2
                    bulkLength = length
                }
            }
            // Compared without forming `position + bulkLength + 2` first: proto-max-bulk-len
            // may be configured up to Int.max, and that sum would overflow (a trap).
            let available = end - position
            if bulkLength > available - 2 {
                // Saturated, so that callers can add their buffer size to it.
                wanted = Swift.min(bulkLength - available, Int.max / 2) + 2
                self.save(position, remaining, bulkLength, argsSoFar)
                return .needMoreData
            }
            let needed = position &+ bulkLength &+ 2
            args.appendEntry(start: position, count: bulkLength)
            argsSoFar &+= 1
            position = needed
            scanFrom = needed
            bulkLength = -1
            remaining &-= 1
        }
        resetFrame()
        return .command(consumed: position)
    }

    /// Stores the loop's locals of ``parseMultibulk(_:end:into:)`` before it waits for data.
    @inlinable @inline(__always)
    mutating func save(_ position: Int, _ remaining: Int, _ bulkLength: Int, _ argsSoFar: Int) {
        self.position = position
        self.remaining = remaining
        self.bulkLength = bulkLength
        self.argsSoFar = argsSoFar
    }

    /// A bulk header of the common shape, read in place: '$', 1 to 18 digits without a leading
    /// zero ("0" alone is fine), '\r', and the byte after it already in the buffer. Returns its
    /// length and the offset of its '\r', or nil for anything else (a longer or odd number, a
    /// NUL, a line not complete yet), which the general path then handles with Redis's exact
    /// rules and errors. For the lines it accepts, that path finds the same '\r' (a digit is
    /// never NUL) and `string2ll` the same value (18 digits cannot overflow).
    @inlinable @inline(__always)
    static func plainBulkHeader(_ start: UnsafeRawPointer, at lineStart: Int, end: Int) -> (length: Int, lineEnd: Int)? {
        guard end &- lineStart > 3, start.load(fromByteOffset: lineStart, as: UInt8.self) == UInt8(ascii: "$") else {
            return nil
        }
        let first = start.load(fromByteOffset: lineStart &+ 1, as: UInt8.self) &- UInt8(ascii: "0")
        guard first <= 9 else { return nil }
        var value = Int(first)
        var i = lineStart &+ 2
        // The '\r' must sit before `end - 1`; at most 18 digits, so at most index lineStart + 19.
        let limit = Swift.min(end &- 1, lineStart &+ 20)
        while i < limit {
            let byte = start.load(fromByteOffset: i, as: UInt8.self)
            if byte == 0x0D {
                // "$0<digits>" is a leading zero: the general path rejects it.
                if first == 0 && i != lineStart &+ 2 { return nil }
                return (value, i)
            }
            let digit = byte &- UInt8(ascii: "0")
            guard digit <= 9 else { return nil }
            value = value &* 10 &+ Int(digit)
            i &+= 1
        }
        return nil
    }

    /// Searches the current line for `delimiter` from `scanFrom`, as Redis's `strchr` would:
    /// returns its offset, or -1 when it is not there yet (also when a NUL byte hides it).
    @inlinable
    mutating func findLineEnd(_ start: UnsafeRawPointer, end: Int, delimiter: UInt8) -> Int {
        if nulStall { return -1 }
        var i = scanFrom
        while i < end {
            let byte = start.load(fromByteOffset: i, as: UInt8.self)
            if byte == delimiter {
                scannedBytes &+= i - scanFrom + 1
                scanFrom = i
                return i
            }
            if byte == 0 {
                nulStall = true
                break
            }
            i += 1
        }
        scannedBytes &+= i - scanFrom
        scanFrom = end
        return -1
    }

    @inlinable
    mutating func resetFrame() {
        phase = .idle
        remaining = 0
        position = 0
        bulkLength = -1
        scanFrom = 0
        nulStall = false
        argsSoFar = 0
        wanted = 0
    }

    @usableFromInline
    mutating func fail(_ message: String) -> RESPParseOutcome {
        resetFrame()
        return .protocolError(message)
    }

    /// Redis formats the offending byte with `%c` and then maps '\r' and '\n' to spaces. A byte
    /// above 0x7F cannot be carried by a Swift `String` as is; it becomes U+FFFD.
    @usableFromInline
    static func expectedDollarMessage(_ byte: UInt8) -> String {
        let shown: String
        if byte == 0x0D || byte == 0x0A {
            shown = " "
        } else if byte < 0x80 {
            shown = String(UnicodeScalar(byte))
        } else {
            shown = "\u{FFFD}"
        }
        return "Protocol error: expected '$', got '\(shown)'"
    }

    /// Redis `string2ll`: optional '-', no '+', no leading zeros ("0" alone is fine, "-0" is
    /// not), no spaces, at most 20 characters, must fit a signed 64-bit integer.
    @inlinable
    static func string2ll(_ p: UnsafeRawPointer, count: Int) -> Int? {
        if count == 0 || count >= 21 { return nil }
        let zero = UInt8(ascii: "0")
        // One or two digits: nearly every count and length on the wire ("*3", "$3", "$32").
        if count <= 2 {
            let a = p.load(as: UInt8.self) &- zero
            if count == 1 { return a <= 9 ? Int(a) : nil }
            let b = p.load(fromByteOffset: 1, as: UInt8.self) &- zero
            if a >= 1 && a <= 9 && b <= 9 { return Int(a) &* 10 &+ Int(b) }
        }
        if count == 1 && p.load(as: UInt8.self) == zero { return 0 }
        var i = 0
        var negative = false
        if p.load(as: UInt8.self) == UInt8(ascii: "-") {
            negative = true
            i = 1
            if i == count { return nil }
        }
        let first = p.load(fromByteOffset: i, as: UInt8.self) &- zero
        guard first >= 1 && first <= 9 else { return nil }
        var value = UInt64(first)
        i += 1
        while i < count {
            let digit = p.load(fromByteOffset: i, as: UInt8.self) &- zero
            guard digit <= 9 else { return nil }
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(digit))
            if o1 || o2 { return nil }
            value = sum
            i += 1
        }
        if negative {
            if value > UInt64(Int64.max) + 1 { return nil }
            return Int(truncatingIfNeeded: 0 &- value)
        }
        if value > UInt64(Int64.max) { return nil }
        return Int(value)
    }

    // MARK: - Inline commands

    /// Redis `processInlineBuffer`: the line ends at '\n' (a '\r' just before it is dropped) and
    /// is split with `sdssplitargs` rules. Inline commands are rare (telnet, health checks), so
    /// this path is not inlined into callers.
    @usableFromInline
    mutating func parseInline(_ start: UnsafeRawPointer, end: Int, into args: CommandArguments) -> RESPParseOutcome {
        let newline = findLineEnd(start, end: end, delimiter: 0x0A)
        if newline < 0 {
            if end > Self.inlineMaxSize {
                return fail("Protocol error: too big inline request")
            }
            return .needMoreData
        }
        var lineEnd = newline
        if newline > 0 && start.load(fromByteOffset: newline - 1, as: UInt8.self) == 0x0D {
            lineEnd -= 1
        }
        guard Self.splitArguments(start, count: lineEnd, into: args) else {
            args.removeAll()
            return fail("Protocol error: unbalanced quotes in request")
        }
        resetFrame()
        return args.count == 0 ? .skip(consumed: newline + 1) : .command(consumed: newline + 1)
    }

    /// `isspace` in the C locale (Redis never changes LC_CTYPE): space, \t \n \v \f \r.
    @inlinable
    static func isSpace(_ c: UInt8) -> Bool {
        c == 0x20 || (c >= 0x09 && c <= 0x0D)
    }

    @usableFromInline
    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// `sdssplitargs` (sds.c), byte for byte. `args` must have been reset with `line` as frame
    /// start. Tokens without quotes stay views into the line; a token that meets a quote is
    /// unescaped into the arguments' scratch memory (reserved once at the line's length, which
    /// bounds the unescaped output, so earlier scratch views stay valid). Returns false on
    /// unbalanced quotes.
    ///
    /// Rules: blanks between tokens are any `isspace` byte, but an unquoted token only ends at
    /// ' ', '\n', '\r', '\t' (so '\v' and '\f' can sit inside one); quotes may open mid-token
    /// (`a"b c"` is `ab c`); a closing quote must be followed by a blank or the end of the line;
    /// in double quotes `\xHH`, `\n \r \t \b \a` and `\<any>` (itself) are escapes; in single
    /// quotes only `\'`.
    @usableFromInline
    static func splitArguments(_ line: UnsafeRawPointer, count: Int, into args: CommandArguments) -> Bool {
        @inline(__always) func at(_ i: Int) -> UInt8 {
            i < count ? line.load(fromByteOffset: i, as: UInt8.self) : 0  // the C string's NUL
        }
        let base = Int(bitPattern: line)
        var scratch: UnsafeMutableRawPointer? = nil
        var scratchUsed = 0
        var p = 0
        while true {
            while p < count && isSpace(at(p)) { p += 1 }
            if p >= count { return true }

            var inDoubleQuotes = false
            var inSingleQuotes = false
            var done = false
            let tokenStart = p
            var viewEnd = p          // token still a view into the line: [tokenStart, viewEnd)
            var copying = false      // token moved to scratch: [outStart, scratchUsed)
            var outStart = 0

            func emit(_ byte: UInt8) {
                if copying {
                    scratch!.storeBytes(of: byte, toByteOffset: scratchUsed, as: UInt8.self)
                    scratchUsed += 1
                } else {
                    viewEnd += 1  // only unquoted bytes are emitted in view mode: contiguous
                }
            }
            func startCopying() {
                if copying { return }
                if scratch == nil { scratch = args.reserveScratch(count) }
                outStart = scratchUsed
                let length = viewEnd - tokenStart
                if length > 0 {
                    scratch!.advanced(by: scratchUsed).copyMemory(from: line + tokenStart, byteCount: length)
                }
                scratchUsed += length
                copying = true
            }

            while !done {
                let c = at(p)
                if inDoubleQuotes {
                    if c == UInt8(ascii: "\\") && at(p + 1) == UInt8(ascii: "x"),
                       let high = hexValue(at(p + 2)), let low = hexValue(at(p + 3)) {
                        emit(high &* 16 &+ low)
                        p += 3
                    } else if c == UInt8(ascii: "\\") && at(p + 1) != 0 {
                        p += 1
                        switch at(p) {
                        case UInt8(ascii: "n"): emit(0x0A)
                        case UInt8(ascii: "r"): emit(0x0D)
                        case UInt8(ascii: "t"): emit(0x09)
                        case UInt8(ascii: "b"): emit(0x08)
                        case UInt8(ascii: "a"): emit(0x07)
                        case let other: emit(other)
                        }
                    } else if c == UInt8(ascii: "\"") {
                        if at(p + 1) != 0 && !isSpace(at(p + 1)) { return false }
                        done = true
                    } else if c == 0 {
                        return false
                    } else {
                        emit(c)
                    }
                } else if inSingleQuotes {
                    if c == UInt8(ascii: "\\") && at(p + 1) == UInt8(ascii: "'") {
                        p += 1
                        emit(UInt8(ascii: "'"))
                    } else if c == UInt8(ascii: "'") {
                        if at(p + 1) != 0 && !isSpace(at(p + 1)) { return false }
                        done = true
                    } else if c == 0 {
                        return false
                    } else {
                        emit(c)
                    }
                } else {
                    switch c {
                    case 0x20, 0x0A, 0x0D, 0x09, 0:
                        done = true
                    case UInt8(ascii: "\""):
                        startCopying()
                        inDoubleQuotes = true
                    case UInt8(ascii: "'"):
                        startCopying()
                        inSingleQuotes = true
                    default:
                        emit(c)
                    }
                }
                if at(p) != 0 { p += 1 }
            }
            if copying {
                args.appendEntry(start: Int(bitPattern: scratch! + outStart) &- base, count: scratchUsed - outStart)
            } else {
                args.appendEntry(start: tokenStart, count: viewEnd - tokenStart)
            }
        }
    }
}
