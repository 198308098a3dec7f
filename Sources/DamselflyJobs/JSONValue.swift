/// A JSON document as Sidekiq stores it: job payloads, heartbeat info, worker state.
///
/// Objects keep their keys in insertion order so that a payload written back (a retry, a
/// recovered job) keeps the field order Ruby's `JSON.generate` gave it, and unknown fields
/// written by Ruby middleware (`tags`, `bid`, `cattr`, ...) survive a round trip through Swift.
/// Integers and floats stay apart: `retry_count` must stay `3`, `created_at` must stay a float.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.int(a), .int(b)): return a == b
        case let (.double(a), .double(b)): return a == b
        case let (.int(a), .double(b)), let (.double(b), .int(a)): return Double(a) == b
        case let (.string(a), .string(b)): return a == b
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)):
            guard a.count == b.count else { return false }
            for (k, v) in a where b.first(where: { $0.0 == k })?.1 != v { return false }
            return true
        default: return false
        }
    }

    // MARK: - Accessors

    public subscript(key: String) -> JSONValue? {
        get {
            guard case .object(let pairs) = self else { return nil }
            return pairs.first(where: { $0.0 == key })?.1
        }
        set {
            guard case .object(var pairs) = self else { return }
            if let i = pairs.firstIndex(where: { $0.0 == key }) {
                if let newValue { pairs[i].1 = newValue } else { pairs.remove(at: i) }
            } else if let newValue {
                pairs.append((key, newValue))
            }
            self = .object(pairs)
        }
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var intValue: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d) where d == d.rounded() && abs(d) < 9e18: return Int64(d)
        case .string(let s): return Int64(s)
        default: return nil
        }
    }

    public var doubleValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .string(let s): return Double(s)
        default: return nil
        }
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    // MARK: - Serializing

    /// Compact JSON, as Ruby's `JSON.generate` writes it (no spaces, "/" not escaped).
    public func serialized() -> String {
        var out = ""
        write(to: &out)
        return out
    }

    func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d): out += JSONValue.format(d)
        case .string(let s): JSONValue.writeString(s, to: &out)
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                v.write(to: &out)
            }
            out += "]"
        case .object(let pairs):
            out += "{"
            for (i, (k, v)) in pairs.enumerated() {
                if i > 0 { out += "," }
                JSONValue.writeString(k, to: &out)
                out += ":"
                v.write(to: &out)
            }
            out += "}"
        }
    }

    /// A float the way Ruby prints it: shortest round-trip digits, always with a fraction
    /// (`1.0`, `1700000000.123456`), exponent form only for very large or small magnitudes.
    public static func format(_ d: Double) -> String {
        guard d.isFinite else { return "null" }
        if d == d.rounded() && abs(d) < 1e16 {
            return String(Int64(d)) + ".0"
        }
        return "\(d)"
    }

    static func writeString(_ s: String, to out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }

    // MARK: - Parsing

    /// Parses one JSON document (RFC 8259); trailing bytes other than whitespace are an error.
    public static func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        try parse(Array(text.utf8))
    }

    public static func parse(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue {
        var parser = JSONParser(bytes: bytes)
        let value = try parser.value(depth: 0)
        parser.skipSpace()
        guard parser.position == bytes.count else { throw JSONParseError(offset: parser.position, "trailing bytes") }
        return value
    }

    /// The values of `keys` in a JSON object (`nil` for a key it lacks), the rest of the
    /// document checked for well-formedness but not built: a worker needs a job's `class`,
    /// `jid` and `args` to run it, and building and freeing the whole payload (timestamps,
    /// retry fields, strings) was a third of a no-op job's CPU. Throws on malformed JSON or
    /// a document that is not an object, as ``parse(_:)-swift.type.method`` would.
    public static func parseFields(_ text: String, _ keys: [String]) throws(JSONParseError) -> [JSONValue?] {
        var parser = JSONParser(bytes: Array(text.utf8))
        let wanted = keys.map { Array($0.utf8) }
        var found = [JSONValue?](repeating: nil, count: keys.count)
        parser.skipSpace()
        guard parser.position < parser.bytes.count, parser.bytes[parser.position] == UInt8(ascii: "{") else {
            throw JSONParseError(offset: parser.position, "not an object")
        }
        parser.position += 1
        parser.skipSpace()
        if parser.position < parser.bytes.count && parser.bytes[parser.position] == UInt8(ascii: "}") {
            parser.position += 1
        } else {
            while true {
                parser.skipSpace()
                guard parser.position < parser.bytes.count, parser.bytes[parser.position] == UInt8(ascii: "\"") else {
                    throw parser.fail("expected key")
                }
                let keyStart = parser.position + 1
                let plain = parser.skipPlainString()
                let keyEnd = parser.position - 1
                let match: Int?
                if plain {
                    // Compared in place: no key is copied.
                    match = wanted.firstIndex { $0.elementsEqual(parser.bytes[keyStart..<keyEnd]) }
                } else {
                    let key = Array(try parser.string().utf8)
                    match = wanted.firstIndex(of: key)
                }
                parser.skipSpace()
                guard parser.position < parser.bytes.count, parser.bytes[parser.position] == UInt8(ascii: ":") else {
                    throw parser.fail("expected :")
                }
                parser.position += 1
                if let i = match {
                    // The last occurrence wins, as in Ruby's JSON.parse and in `subscript`.
                    found[i] = try parser.value(depth: 1)
                } else {
                    try parser.skipValue(depth: 1)
                }
                parser.skipSpace()
                guard parser.position < parser.bytes.count else { throw parser.fail("unterminated object") }
                if parser.bytes[parser.position] == UInt8(ascii: ",") { parser.position += 1; continue }
                if parser.bytes[parser.position] == UInt8(ascii: "}") { parser.position += 1; break }
                throw parser.fail("expected , or }")
            }
        }
        parser.skipSpace()
        guard parser.position == parser.bytes.count else { throw JSONParseError(offset: parser.position, "trailing bytes") }
        return found
    }
}

/// Malformed JSON.
public struct JSONParseError: Error, Sendable, CustomStringConvertible {
    public var offset: Int
    public var message: String
    init(offset: Int, _ message: String) {
        self.offset = offset
        self.message = message
    }
    public var description: String { "JSON parse error at \(offset): \(message)" }
}

/// A recursive-descent parser over UTF-8 bytes; nesting is capped so hostile payloads cannot
/// exhaust the stack.
struct JSONParser {
    let bytes: [UInt8]
    var position = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func skipSpace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    func fail(_ message: String) -> JSONParseError { JSONParseError(offset: position, message) }

    mutating func expect(_ literal: String, _ value: JSONValue) throws(JSONParseError) -> JSONValue {
        for b in literal.utf8 {
            guard position < bytes.count, bytes[position] == b else { throw fail("bad literal") }
            position += 1
        }
        return value
    }

    mutating func value(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth < 256 else { throw fail("nesting too deep") }
        skipSpace()
        guard position < bytes.count else { throw fail("unexpected end") }
        switch bytes[position] {
        case UInt8(ascii: "n"): return try expect("null", .null)
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "["):
            position += 1
            var items: [JSONValue] = []
            skipSpace()
            if position < bytes.count && bytes[position] == UInt8(ascii: "]") {
                position += 1
                return .array(items)
            }
            while true {
                items.append(try value(depth: depth + 1))
                skipSpace()
                guard position < bytes.count else { throw fail("unterminated array") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                if bytes[position] == UInt8(ascii: "]") { position += 1; return .array(items) }
                throw fail("expected , or ]")
            }
        case UInt8(ascii: "{"):
            position += 1
            var pairs: [(String, JSONValue)] = []
            skipSpace()
            if position < bytes.count && bytes[position] == UInt8(ascii: "}") {
                position += 1
                return .object(pairs)
            }
            while true {
                skipSpace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else { throw fail("expected key") }
                let key = try string()
                skipSpace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { throw fail("expected :") }
                position += 1
                pairs.append((key, try value(depth: depth + 1)))
                skipSpace()
                guard position < bytes.count else { throw fail("unterminated object") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                if bytes[position] == UInt8(ascii: "}") { position += 1; return .object(pairs) }
                throw fail("expected , or }")
            }
        default:
            return try number()
        }
    }

    /// Steps over one value, checking it as ``value(depth:)`` would, building nothing.
    mutating func skipValue(depth: Int) throws(JSONParseError) {
        guard depth < 256 else { throw fail("nesting too deep") }
        skipSpace()
        guard position < bytes.count else { throw fail("unexpected end") }
        switch bytes[position] {
        case UInt8(ascii: "n"): _ = try expect("null", .null)
        case UInt8(ascii: "t"): _ = try expect("true", .null)
        case UInt8(ascii: "f"): _ = try expect("false", .null)
        case UInt8(ascii: "\""): try skipString()
        case UInt8(ascii: "["):
            position += 1
            skipSpace()
            if position < bytes.count && bytes[position] == UInt8(ascii: "]") { position += 1; return }
            while true {
                try skipValue(depth: depth + 1)
                skipSpace()
                guard position < bytes.count else { throw fail("unterminated array") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                if bytes[position] == UInt8(ascii: "]") { position += 1; return }
                throw fail("expected , or ]")
            }
        case UInt8(ascii: "{"):
            position += 1
            skipSpace()
            if position < bytes.count && bytes[position] == UInt8(ascii: "}") { position += 1; return }
            while true {
                skipSpace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else { throw fail("expected key") }
                try skipString()
                skipSpace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { throw fail("expected :") }
                position += 1
                try skipValue(depth: depth + 1)
                skipSpace()
                guard position < bytes.count else { throw fail("unterminated object") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                if bytes[position] == UInt8(ascii: "}") { position += 1; return }
                throw fail("expected , or }")
            }
        default:
            _ = try number(building: false)
        }
    }

    /// Steps over a string, escapes checked as ``string()`` checks them.
    mutating func skipString() throws(JSONParseError) {
        position += 1
        while true {
            guard position < bytes.count else { throw fail("unterminated string") }
            let b = bytes[position]
            position += 1
            if b == UInt8(ascii: "\"") { return }
            if b != UInt8(ascii: "\\") { continue }
            guard position < bytes.count else { throw fail("unterminated escape") }
            let e = bytes[position]
            position += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                 UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                continue
            case UInt8(ascii: "u"): _ = try hex4()
            default: throw fail("bad escape")
            }
        }
    }

    /// Steps over a string without escapes and returns true; at a string with an escape it
    /// returns false and stays at its opening quote (for ``string()``). An unterminated
    /// string is left for ``string()`` to report.
    mutating func skipPlainString() -> Bool {
        var i = position + 1
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "\"") {
                position = i + 1
                return true
            }
            if b == UInt8(ascii: "\\") { return false }
            i += 1
        }
        return false
    }

    mutating func number() throws(JSONParseError) -> JSONValue {
        try number(building: true)
    }

    mutating func number(building: Bool) throws(JSONParseError) -> JSONValue {
        let start = position
        var isFloat = false
        scan: while position < bytes.count {
            switch bytes[position] {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "+"):
                position += 1
            case UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"):
                isFloat = true
                position += 1
            default:
                break scan
            }
        }
        guard position > start else { throw fail("unexpected character") }
        if !isFloat && position - start <= 18 {
            // Up to 18 digits cannot overflow: no String built for the common integer.
            var i = start
            let negative = bytes[i] == UInt8(ascii: "-")
            if negative { i += 1 }
            var v: Int64 = 0
            var ok = i < position
            while i < position {
                let d = bytes[i] &- UInt8(ascii: "0")
                if d > 9 { ok = false; break }
                v = v * 10 + Int64(d)
                i += 1
            }
            if ok { return building ? .int(negative ? -v : v) : .null }
        }
        if !building {
            // Skipped: checked against what Double(_:) takes for these characters, no String.
            guard Self.isDecimal(bytes[start..<position]) else { throw JSONParseError(offset: start, "bad number") }
            return .null
        }
        let text = String(decoding: bytes[start..<position], as: UTF8.self)
        if !isFloat, let i = Int64(text) { return .int(i) }
        guard let d = Double(text) else { throw JSONParseError(offset: start, "bad number") }
        return .double(d)
    }

    /// `[+-]digits[.digits][(e|E)[+-]digits]` with digits before or after the point: the
    /// strings of `0-9 + - . e E` that `Double(_:)` accepts.
    static func isDecimal(_ s: ArraySlice<UInt8>) -> Bool {
        var i = s.startIndex
        func digits() -> Int {
            let from = i
            while i < s.endIndex, s[i] >= UInt8(ascii: "0"), s[i] <= UInt8(ascii: "9") { i += 1 }
            return i - from
        }
        if i < s.endIndex, s[i] == UInt8(ascii: "-") || s[i] == UInt8(ascii: "+") { i += 1 }
        var mantissa = digits()
        if i < s.endIndex, s[i] == UInt8(ascii: ".") {
            i += 1
            mantissa += digits()
        }
        guard mantissa > 0 else { return false }
        if i < s.endIndex, s[i] == UInt8(ascii: "e") || s[i] == UInt8(ascii: "E") {
            i += 1
            if i < s.endIndex, s[i] == UInt8(ascii: "-") || s[i] == UInt8(ascii: "+") { i += 1 }
            guard digits() > 0 else { return false }
        }
        return i == s.endIndex
    }

    mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard position + 4 <= bytes.count else { throw fail("short \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[position]
            let d: UInt32
            switch b {
            case 0x30...0x39: d = UInt32(b - 0x30)
            case 0x41...0x46: d = UInt32(b - 0x41 + 10)
            case 0x61...0x66: d = UInt32(b - 0x61 + 10)
            default: throw fail("bad \\u escape")
            }
            v = v * 16 + d
            position += 1
        }
        return v
    }

    mutating func string() throws(JSONParseError) -> String {
        // No escape before the closing quote (the common case): one String from the slice.
        var i = position + 1
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "\"") {
                let text = String(decoding: bytes[(position + 1)..<i], as: UTF8.self)
                position = i + 1
                return text
            }
            if b == UInt8(ascii: "\\") { break }
            i += 1
        }
        position += 1
        var out: [UInt8] = []
        while true {
            guard position < bytes.count else { throw fail("unterminated string") }
            let b = bytes[position]
            position += 1
            if b == UInt8(ascii: "\"") { break }
            if b != UInt8(ascii: "\\") {
                out.append(b)
                continue
            }
            guard position < bytes.count else { throw fail("unterminated escape") }
            let e = bytes[position]
            position += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var code = try hex4()
                if code >= 0xD800 && code < 0xDC00, position + 6 <= bytes.count,
                   bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u") {
                    position += 2
                    let low = try hex4()
                    code = 0x10000 + ((code - 0xD800) << 10) + (low &- 0xDC00)
                }
                let scalar = Unicode.Scalar(code) ?? "\u{FFFD}"
                out.append(contentsOf: Array(String(Character(scalar)).utf8))
            default: throw fail("bad escape")
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
