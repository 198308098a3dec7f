/// Cross-site request forgery protection for every POST form, the way Rack::Protection and
/// Sidekiq Web do it: a random per-session token lives in an HttpOnly, SameSite=Strict cookie;
/// each form carries it in a hidden `authenticity_token` field, masked with a fresh one-time pad
/// (so the page never shows the same bytes twice, which defeats BREACH-style compression
/// guessing); a POST whose field does not unmask to the cookie's token is refused with 403.
/// Another site can make the browser send the cookie but cannot read the page to learn the
/// token, so it cannot fill the field.
enum CSRFToken {
    static let cookieName = "damselfly_jobs_session"
    static let fieldName = "authenticity_token"
    static let length = 32

    /// A new session token: 32 bytes from the system's CSPRNG (`getrandom` on Linux).
    static func generate() -> [UInt8] {
        var rng = SystemRandomNumberGenerator()
        return (0..<length).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
    }

    /// The field's value for a page: hex of `pad ++ (pad XOR token)`.
    static func masked(_ token: [UInt8]) -> String {
        let pad = generate()
        return hex(pad + zip(pad, token).map { $0 ^ $1 })
    }

    /// Whether a submitted field holds `token`, compared in constant time.
    static func verify(field: String, token: [UInt8]) -> Bool {
        guard token.count == length, let bytes = unhex(field), bytes.count == 2 * length else { return false }
        var difference: UInt8 = 0
        for i in 0..<length { difference |= (bytes[i] ^ bytes[length + i]) ^ token[i] }
        return difference == 0
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out += [digits[Int(b >> 4)], digits[Int(b & 15)]] }
        return String(decoding: out, as: UTF8.self)
    }

    static func unhex(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            default: return nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let hi = nibble(chars[i]), let lo = nibble(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}

/// `application/x-www-form-urlencoded` bodies and query strings, repeated names kept in order
/// (the bulk forms send one `key` per ticked row).
struct FormData: Sendable {
    var pairs: [(String, String)] = []

    init(_ encoded: String?) {
        guard let encoded else { return }
        for part in encoded.split(separator: "&", omittingEmptySubsequences: true) {
            let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            pairs.append((FormData.decode(kv[0]), kv.count > 1 ? FormData.decode(kv[1]) : ""))
        }
    }

    subscript(_ name: String) -> String? { pairs.first { $0.0 == name }?.1 }
    func all(_ name: String) -> [String] { pairs.filter { $0.0 == name }.map(\.1) }
    func int(_ name: String, default d: Int) -> Int { self[name].flatMap { Int($0) } ?? d }

    /// Percent-decoding with `+` as space; a malformed escape is kept as typed.
    static func decode(_ text: Substring) -> String {
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "+") {
                out.append(UInt8(ascii: " "))
            } else if b == UInt8(ascii: "%"), i + 2 < bytes.count,
                      let v = UInt8(String(decoding: bytes[(i + 1)...(i + 2)], as: UTF8.self), radix: 16) {
                out.append(v)
                i += 2
            } else {
                out.append(b)
            }
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Percent-encoding for a query value or a path segment: everything but unreserved bytes.
    static func encode(_ text: String) -> String {
        var out = ""
        for b in text.utf8 {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                out += "%" + CSRFToken.hex([b]).uppercased()
            }
        }
        return out
    }
}
