/// Encodes replies for RESP2 or RESP3 into a growable byte buffer (one per connection, cleared
/// after each send), following Redis 7.0's `addReply*` functions byte for byte.
///
/// Numbers are written digit by digit straight into `buffer`: building a `String` per integer
/// or length would allocate on every reply.
public struct ReplyBuilder: Sendable {
    /// 2 or 3, as negotiated by HELLO.
    public var protocolVersion: Int
    /// The encoded replies waiting to be sent.
    public var buffer: [UInt8]

    public init(protocolVersion: Int = 2, capacity: Int = 16 * 1024) {
        self.protocolVersion = protocolVersion
        buffer = []
        buffer.reserveCapacity(capacity)
    }

    @inlinable public var isEmpty: Bool { buffer.isEmpty }

    @inlinable
    public mutating func removeAll(keepingCapacity: Bool = true) {
        buffer.removeAll(keepingCapacity: keepingCapacity)
    }

    // MARK: - Primitives

    @inlinable
    mutating func crlf() {
        buffer.append(0x0D)
        buffer.append(0x0A)
    }

    @inlinable
    mutating func append(_ s: StaticString) {
        let count = s.utf8CodeUnitCount
        let bytes = s.utf8Start
        appendUninitialized(count) { out in out.copyMemory(from: bytes, byteCount: count) }
    }

    /// Grows `buffer` by `count` bytes that `write` fills through the pointer it is given (all
    /// of them). A reply written this way pays one uniqueness and capacity check and one count
    /// update in all; appending it piece by piece paid them per byte and per piece (about half
    /// of a short bulk reply's instructions).
    @inlinable @inline(__always)
    mutating func appendUninitialized(_ count: Int, _ write: (UnsafeMutableRawPointer) -> Void) {
        buffer.append(addingCapacity: count) { span in
            span.withUnsafeMutableBufferPointer { out, initialized in
                write(UnsafeMutableRawPointer(out.baseAddress.unsafelyUnwrapped))
                initialized = count
            }
        }
    }

    /// `<prefix><n>\r\n<payload>\r\n`, or without the payload part when `payload` is nil: a
    /// length or integer line, and a bulk string, each written with one reservation.
    @inlinable @inline(__always)
    mutating func line(_ prefix: UInt8, _ n: Int, payload: UnsafeRawBufferPointer?) {
        let magnitude = n.magnitude
        let sign = n < 0 ? 1 : 0
        let digits = RESPDigits.digitCount(magnitude)
        let head = 1 &+ sign &+ digits &+ 2
        let total = payload.map { head &+ $0.count &+ 2 } ?? head
        appendUninitialized(total) { out in
            out.storeBytes(of: prefix, as: UInt8.self)
            if sign != 0 { out.storeBytes(of: UInt8(ascii: "-"), toByteOffset: 1, as: UInt8.self) }
            RESPDigits.write(magnitude, digits: digits, to: out + (1 &+ sign))
            out.storeBytes(of: 0x0D, toByteOffset: head &- 2, as: UInt8.self)
            out.storeBytes(of: 0x0A, toByteOffset: head &- 1, as: UInt8.self)
            if let payload {
                if let source = payload.baseAddress, payload.count > 0 {
                    (out + head).copyMemory(from: source, byteCount: payload.count)
                }
                out.storeBytes(of: 0x0D, toByteOffset: total &- 2, as: UInt8.self)
                out.storeBytes(of: 0x0A, toByteOffset: total &- 1, as: UInt8.self)
            }
        }
    }

    /// Writes `v` in decimal without creating a `String` (Int.min included).
    @inlinable
    mutating func appendDecimal(_ v: Int) {
        RESPDigits.append(v, to: &buffer)
    }

    /// `<prefix><n>\r\n`, the shape of every length and integer line.
    @inlinable
    mutating func header(_ prefix: UInt8, _ n: Int) {
        line(prefix, n, payload: nil)
    }

    // MARK: - Replies

    /// `+s\r\n` (Redis writes status replies unchanged).
    @inlinable
    public mutating func simpleString(_ s: StaticString) {
        let count = s.utf8CodeUnitCount
        let bytes = s.utf8Start
        appendUninitialized(count &+ 3) { out in
            out.storeBytes(of: UInt8(ascii: "+"), as: UInt8.self)
            (out + 1).copyMemory(from: bytes, byteCount: count)
            out.storeBytes(of: 0x0D, toByteOffset: count &+ 1, as: UInt8.self)
            out.storeBytes(of: 0x0A, toByteOffset: count &+ 2, as: UInt8.self)
        }
    }

    @inlinable
    public mutating func simpleString(_ s: String) {
        buffer.append(UInt8(ascii: "+"))
        buffer.append(contentsOf: s.utf8)
        crlf()
    }

    /// `-message\r\n`; `message` carries its own code ("ERR ...", "WRONGTYPE ..."). Like Redis,
    /// '\r' and '\n' inside the message become spaces so the reply cannot break the protocol.
    /// Redis's `addReplyErrorFormat`: CR and LF at the end are dropped, the ones inside
    /// become spaces (an error is one line).
    @inlinable
    public mutating func error(_ message: String) {
        buffer.append(UInt8(ascii: "-"))
        var utf8 = message.utf8[...]
        while let last = utf8.last, last == 0x0D || last == 0x0A { utf8 = utf8.dropLast() }
        for byte in utf8 {
            buffer.append(byte == 0x0D || byte == 0x0A ? 0x20 : byte)
        }
        crlf()
    }

    /// `:v\r\n`
    @inlinable
    public mutating func integer(_ v: Int) {
        header(UInt8(ascii: ":"), v)
    }

    /// The bytes ``bulk(_:)`` writes for a payload of `count` bytes (a reply encoded
    /// ahead sizes its buffer once with this).
    @inlinable
    public static func bulkSize(_ count: Int) -> Int { 1 &+ RESPDigits.count(count) &+ 4 &+ count }

    /// The bytes ``arrayHeader(_:)`` writes for `n` elements.
    @inlinable
    public static func arrayHeaderSize(_ n: Int) -> Int { 1 &+ RESPDigits.count(n) &+ 2 }

    /// `$len\r\n<bytes>\r\n`
    @inlinable
    public mutating func bulk(_ bytes: UnsafeRawBufferPointer) {
        line(UInt8(ascii: "$"), bytes.count, payload: bytes)
    }

    @inlinable
    public mutating func bulk(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { line(UInt8(ascii: "$"), $0.count, payload: $0) }
    }

    @inlinable
    public mutating func bulk(_ s: String) {
        var s = s
        s.withUTF8 { line(UInt8(ascii: "$"), $0.count, payload: UnsafeRawBufferPointer($0)) }
    }

    /// An integer sent as a bulk string (`$2\r\n42\r\n`), like Redis `addReplyBulkLongLong`.
    @inlinable
    public mutating func bulkInteger(_ v: Int) {
        header(UInt8(ascii: "$"), RESPDigits.count(v))
        appendDecimal(v)
        crlf()
    }

    /// Missing value: RESP2 `$-1`, RESP3 `_`.
    @inlinable
    public mutating func null() {
        if protocolVersion >= 3 { append("_\r\n") } else { append("$-1\r\n") }
    }

    /// Missing aggregate: RESP2 `*-1`, RESP3 `_`.
    @inlinable
    public mutating func nullArray() {
        if protocolVersion >= 3 { append("_\r\n") } else { append("*-1\r\n") }
    }

    @inlinable
    public mutating func arrayHeader(_ n: Int) {
        header(UInt8(ascii: "*"), n)
    }

    /// RESP3 `%n`; RESP2 a flat array of 2n elements.
    @inlinable
    public mutating func mapHeader(_ n: Int) {
        if protocolVersion >= 3 { header(UInt8(ascii: "%"), n) } else { header(UInt8(ascii: "*"), 2 * n) }
    }

    /// RESP3 `~n`; RESP2 `*n`.
    @inlinable
    public mutating func setHeader(_ n: Int) {
        header(protocolVersion >= 3 ? UInt8(ascii: "~") : UInt8(ascii: "*"), n)
    }

    /// RESP3 `>n`; RESP2 `*n` (pub/sub messages are plain arrays there).
    @inlinable
    public mutating func pushHeader(_ n: Int) {
        header(protocolVersion >= 3 ? UInt8(ascii: ">") : UInt8(ascii: "*"), n)
    }

    /// Redis 7.0 `addReplyDouble`: `%.17g` text; RESP3 `,<text>\r\n`, RESP2 a bulk string.
    /// Infinities are "inf" / "-inf", NaN is "nan".
    public mutating func double(_ v: Double) {
        if protocolVersion >= 3 {
            buffer.append(UInt8(ascii: ","))
            DoubleFormatting.appendG17(v, to: &buffer)
            crlf()
        } else {
            // The text is at most 24 bytes: reserve a 2-digit length, then fix it up.
            buffer.append(UInt8(ascii: "$"))
            let lengthAt = buffer.count
            append("00\r\n")
            let textStart = buffer.count
            DoubleFormatting.appendG17(v, to: &buffer)
            let length = buffer.count - textStart
            if length < 10 {
                buffer.remove(at: lengthAt)
                buffer[lengthAt] = UInt8(length) + 0x30
            } else {
                buffer[lengthAt] = UInt8(length / 10) + 0x30
                buffer[lengthAt + 1] = UInt8(length % 10) + 0x30
            }
            crlf()
        }
    }

    /// RESP3 `#t` / `#f`; RESP2 `:1` / `:0`.
    @inlinable
    public mutating func boolean(_ v: Bool) {
        if protocolVersion >= 3 {
            append(v ? "#t\r\n" : "#f\r\n")
        } else {
            append(v ? ":1\r\n" : ":0\r\n")
        }
    }

    /// RESP3 `=len\r\nfmt:text\r\n` (the format is padded with spaces or cut to 3 bytes, as in
    /// Redis `addReplyVerbatim`); RESP2 a plain bulk string.
    public mutating func verbatim(_ text: String, format: StaticString = "txt") {
        let utf8 = text.utf8
        guard protocolVersion >= 3 else {
            bulk(text)
            return
        }
        header(UInt8(ascii: "="), utf8.count + 4)
        format.withUTF8Buffer { ext in
            for i in 0..<3 {
                buffer.append(i < ext.count ? ext[i] : 0x20)
            }
        }
        buffer.append(UInt8(ascii: ":"))
        buffer.append(contentsOf: utf8)
        crlf()
    }

    /// Appends bytes that are already encoded (replies coming back from another thread).
    @inlinable
    public mutating func appendRaw(_ bytes: UnsafeRawBufferPointer) {
        buffer.append(contentsOf: bytes)
    }

    @inlinable
    public mutating func appendRaw(_ bytes: [UInt8]) {
        buffer.append(contentsOf: bytes)
    }
}
