/// Decodes RESP2/RESP3 replies into `RESPValue`s (client side).
///
/// Stateless: an incomplete reply returns `nil` and is decoded again from its start on the next
/// call, which keeps the decoder simple; it serves tests and the load generator's slow path,
/// while `RESPSkipReply` serves the hot path. Lines must end in "\r\n" and bulk payloads must
/// be followed by "\r\n"; anything else throws `RESPDecodeError`.
public struct RESPReplyDecoder: Sendable {
    /// Deepest nesting accepted, so hostile input cannot exhaust the stack.
    public var maxDepth: Int = 512

    public init() {}

    /// Decodes one reply from the start of `buffer`: the value and the bytes it used, or `nil`
    /// when the reply is not complete yet.
    public mutating func decode(_ buffer: UnsafeRawBufferPointer) throws(RESPDecodeError) -> (RESPValue, consumed: Int)? {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return nil }
        var reader = RESPLineReader(base: base, end: buffer.count)
        guard let value = try decodeValue(&reader, depth: 0) else { return nil }
        return (value, reader.position)
    }

    func decodeValue(_ reader: inout RESPLineReader, depth: Int) throws(RESPDecodeError) -> RESPValue? {
        if depth > maxDepth { throw RESPDecodeError("nesting too deep", offset: reader.position) }
        let elementStart = reader.position
        guard let (type, line) = try reader.line() else { return nil }
        switch type {
        case UInt8(ascii: "+"):
            return .simpleString(reader.string(line))
        case UInt8(ascii: "-"):
            return .error(reader.string(line))
        case UInt8(ascii: ":"):
            return .integer(Int64(try reader.number(line, at: elementStart)))
        case UInt8(ascii: "_"):
            guard line.isEmpty else { throw RESPDecodeError("bad null", offset: elementStart) }
            return .null
        case UInt8(ascii: "#"):
            guard line.count == 1 else { throw RESPDecodeError("bad boolean", offset: elementStart) }
            switch reader.byte(line.lowerBound) {
            case UInt8(ascii: "t"): return .boolean(true)
            case UInt8(ascii: "f"): return .boolean(false)
            default: throw RESPDecodeError("bad boolean", offset: elementStart)
            }
        case UInt8(ascii: ","):
            guard let value = Double(reader.string(line)) else {
                throw RESPDecodeError("bad double", offset: elementStart)
            }
            return .double(value)
        case UInt8(ascii: "("):
            return .bigNumber(reader.string(line))
        case UInt8(ascii: "$"), UInt8(ascii: "!"), UInt8(ascii: "="):
            let length = try reader.number(line, at: elementStart)
            if length == -1 && type == UInt8(ascii: "$") { return .bulk(nil) }
            guard let payload = try reader.payload(length, at: elementStart) else { return nil }
            if type == UInt8(ascii: "$") { return .bulk(Array(payload)) }
            if type == UInt8(ascii: "!") { return .error(String(decoding: payload, as: UTF8.self)) }
            guard payload.count >= 4, payload[3] == UInt8(ascii: ":") else {
                throw RESPDecodeError("bad verbatim string", offset: elementStart)
            }
            return .verbatim(
                format: String(decoding: UnsafeRawBufferPointer(rebasing: payload[0..<3]), as: UTF8.self),
                text: String(decoding: UnsafeRawBufferPointer(rebasing: payload[4...]), as: UTF8.self))
        case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"):
            let count = try reader.number(line, at: elementStart)
            if count == -1 && type == UInt8(ascii: "*") { return .array(nil) }
            guard count >= 0 else { throw RESPDecodeError("bad aggregate length", offset: elementStart) }
            var elements: [RESPValue] = []
            elements.reserveCapacity(Swift.min(count, 1024))
            for _ in 0..<count {
                guard let element = try decodeValue(&reader, depth: depth + 1) else { return nil }
                elements.append(element)
            }
            if type == UInt8(ascii: "*") { return .array(elements) }
            return type == UInt8(ascii: "~") ? .set(elements) : .push(elements)
        case UInt8(ascii: "%"), UInt8(ascii: "|"):
            let count = try reader.number(line, at: elementStart)
            guard count >= 0 else { throw RESPDecodeError("bad map length", offset: elementStart) }
            var pairs: [(RESPValue, RESPValue)] = []
            pairs.reserveCapacity(Swift.min(count, 1024))
            for _ in 0..<count {
                guard let key = try decodeValue(&reader, depth: depth + 1),
                      let value = try decodeValue(&reader, depth: depth + 1)
                else { return nil }
                pairs.append((key, value))
            }
            if type == UInt8(ascii: "%") { return .map(pairs) }
            // An attribute annotates the value that follows it: drop it, return that value.
            return try decodeValue(&reader, depth: depth + 1)
        default:
            throw RESPDecodeError("unknown reply type byte \(type)", offset: elementStart)
        }
    }
}

/// Cursor over a reply buffer shared by the decoder and `RESPSkipReply`.
@usableFromInline
struct RESPLineReader {
    @usableFromInline let base: UnsafeRawPointer
    @usableFromInline let end: Int
    @usableFromInline var position: Int = 0

    @inlinable
    init(base: UnsafeRawPointer, end: Int) {
        self.base = base
        self.end = end
    }

    @inlinable
    func byte(_ i: Int) -> UInt8 { base.load(fromByteOffset: i, as: UInt8.self) }

    /// Reads `<type><text>\r\n`: the type byte and the text's range, or `nil` if incomplete.
    @inlinable
    mutating func line() throws(RESPDecodeError) -> (UInt8, Range<Int>)? {
        guard position < end else { return nil }
        let type = byte(position)
        var i = position + 1
        while i < end && byte(i) != 0x0D { i += 1 }
        if i + 1 >= end { return nil }
        guard byte(i + 1) == 0x0A else { throw RESPDecodeError("line not ended by CRLF", offset: position) }
        let text = (position + 1)..<i
        position = i + 2
        return (type, text)
    }

    /// Reads `length` payload bytes and their "\r\n", or `nil` if incomplete.
    @inlinable
    mutating func payload(_ length: Int, at element: Int) throws(RESPDecodeError) -> UnsafeRawBufferPointer? {
        guard length >= 0 else { throw RESPDecodeError("bad length", offset: element) }
        // Not `length + 2`: a hostile length near Int.max would overflow (a trap).
        guard length <= end - position - 2 else { return nil }
        guard byte(position + length) == 0x0D && byte(position + length + 1) == 0x0A else {
            throw RESPDecodeError("payload not followed by CRLF", offset: element)
        }
        let payload = UnsafeRawBufferPointer(start: base + position, count: length)
        position += length + 2
        return payload
    }

    /// A signed decimal integer filling `range`.
    @inlinable
    func number(_ range: Range<Int>, at element: Int) throws(RESPDecodeError) -> Int {
        var i = range.lowerBound
        var negative = false
        if i < range.upperBound && byte(i) == UInt8(ascii: "-") {
            negative = true
            i += 1
        }
        guard i < range.upperBound else { throw RESPDecodeError("bad number", offset: element) }
        var value: UInt = 0
        while i < range.upperBound {
            let digit = byte(i) &- 0x30
            guard digit <= 9 else { throw RESPDecodeError("bad number", offset: element) }
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt(digit))
            guard !o1 && !o2 else { throw RESPDecodeError("number overflow", offset: element) }
            value = sum
            i += 1
        }
        if negative {
            guard value <= UInt(Int.max) + 1 else { throw RESPDecodeError("number overflow", offset: element) }
            return Int(truncatingIfNeeded: 0 &- value)
        }
        guard value <= UInt(Int.max) else { throw RESPDecodeError("number overflow", offset: element) }
        return Int(value)
    }

    func string(_ range: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count), as: UTF8.self)
    }
}

/// Skips one complete reply without building values (the load generator's hot path).
///
/// Returns the bytes the reply takes and whether it is an error reply (`-` or RESP3 `!`, after
/// any leading attribute), or `nil` when the reply is incomplete. Malformed input throws
/// `RESPDecodeError` (typed throws: no existential, no allocation on the success path).
/// Iterative, so nesting depth costs no stack.
@inlinable
public func RESPSkipReply(_ buffer: UnsafeRawBufferPointer) throws(RESPDecodeError) -> (consumed: Int, isError: Bool)? {
    guard let base = buffer.baseAddress, buffer.count > 0 else { return nil }
    var reader = RESPLineReader(base: base, end: buffer.count)
    // Leading attributes annotate the reply; the reply's own type is the first byte after them.
    while reader.byte(reader.position) == UInt8(ascii: "|") {
        let element = reader.position
        guard let (_, line) = try reader.line() else { return nil }
        let pairs = try reader.number(line, at: element)
        guard pairs >= 0 else { throw RESPDecodeError("bad attribute length", offset: element) }
        var values = 0
        guard RESPAddPending(&values, pairs, times: 2, minus: 0),
              try RESPSkipValues(&reader, count: values) else { return nil }
        if reader.position >= reader.end { return nil }
    }
    let type = reader.byte(reader.position)
    guard try RESPSkipValues(&reader, count: 1) else { return nil }
    return (reader.position, type == UInt8(ascii: "-") || type == UInt8(ascii: "!"))
}

/// Skips `count` values; false when the buffer ends first.
@inlinable
func RESPSkipValues(_ reader: inout RESPLineReader, count: Int) throws(RESPDecodeError) -> Bool {
    var pending = count
    while pending > 0 {
        let element = reader.position
        guard let (type, line) = try reader.line() else { return false }
        switch type {
        case UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: ":"), UInt8(ascii: "_"),
             UInt8(ascii: ","), UInt8(ascii: "#"), UInt8(ascii: "("):
            pending -= 1
        case UInt8(ascii: "$"), UInt8(ascii: "!"), UInt8(ascii: "="):
            let length = try reader.number(line, at: element)
            if length != -1 || type != UInt8(ascii: "$") {
                guard try reader.payload(length, at: element) != nil else { return false }
            }
            pending -= 1
        case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"):
            let n = try reader.number(line, at: element)
            if n == -1 && type == UInt8(ascii: "*") {
                pending -= 1
            } else {
                guard n >= 0 else { throw RESPDecodeError("bad aggregate length", offset: element) }
                guard RESPAddPending(&pending, n, times: 1, minus: 1) else { return false }
            }
        case UInt8(ascii: "%"):
            let n = try reader.number(line, at: element)
            guard n >= 0 else { throw RESPDecodeError("bad map length", offset: element) }
            guard RESPAddPending(&pending, n, times: 2, minus: 1) else { return false }
        case UInt8(ascii: "|"):
            // An attribute's pairs come before the value it annotates, which is still pending.
            let n = try reader.number(line, at: element)
            guard n >= 0 else { throw RESPDecodeError("bad attribute length", offset: element) }
            guard RESPAddPending(&pending, n, times: 2, minus: 0) else { return false }
        default:
            throw RESPDecodeError("unknown reply type byte \(type)", offset: element)
        }
    }
    return true
}

/// `pending += times * n - minus`, or false when that overflows: hostile lengths near Int.max
/// must not trap. More than Int.max values cannot fit in any buffer, so the caller reports the
/// reply as incomplete, as the decoder does when it runs out of elements.
@inlinable
func RESPAddPending(_ pending: inout Int, _ n: Int, times: Int, minus: Int) -> Bool {
    let (product, o1) = n.multipliedReportingOverflow(by: times)
    let (sum, o2) = pending.addingReportingOverflow(product &- minus)
    if o1 || o2 { return false }
    pending = sum
    return true
}

/// Encodes a command as a RESP multibulk (client side): `*N\r\n` then `$len\r\narg\r\n` each.
@inlinable
public func RESPEncodeCommand(_ args: [[UInt8]], into buffer: inout [UInt8]) {
    buffer.append(UInt8(ascii: "*"))
    RESPDigits.append(args.count, to: &buffer)
    buffer.append(0x0D)
    buffer.append(0x0A)
    for arg in args {
        buffer.append(UInt8(ascii: "$"))
        RESPDigits.append(arg.count, to: &buffer)
        buffer.append(0x0D)
        buffer.append(0x0A)
        buffer.append(contentsOf: arg)
        buffer.append(0x0D)
        buffer.append(0x0A)
    }
}
