/// One ACL user: flags, password hashes and selectors (the root first), as Redis 7.0
/// keeps them. A value: ACL SETUSER stages its rules on a copy and installs the copy
/// only when every rule was valid.
public struct ACLUser: Sendable {
    public let name: String
    public private(set) var enabled = false
    public private(set) var noPass = false
    /// `sanitize-payload` / `skip-sanitize-payload`: nil until a rule names one.
    public private(set) var sanitizePayload: Bool? = nil
    /// SHA-256 hex digests, in the order they were added.
    public private(set) var passwords: [String] = []
    /// The root selector first, then the `(...)` ones.
    public private(set) var selectors: [ACLSelector] = [ACLSelector()]

    public init(name: String) { self.name = name }

    /// Redis's `default` user: on, nopass, every command, key and channel.
    public static func makeDefault() -> ACLUser {
        var u = ACLUser(name: "default")
        for rule in ["+@all", "~*", "&*", "on", "nopass"] { try! u.apply(Array(rule.utf8)) }
        return u
    }

    public var root: ACLSelector { selectors[0] }

    /// Every command, key and channel through the root selector: the one-flag fast path.
    public var isUnrestricted: Bool { selectors[0].isUnrestricted }

    /// Applies one rule, as Redis's ACLSetUser.
    public mutating func apply(_ op: [UInt8]) throws(ACLRuleError) {
        guard !op.isEmpty else { return }
        let lower = String(decoding: op, as: UTF8.self).lowercased()
        switch lower {
        case "on": enabled = true
        case "off": enabled = false
        case "skip-sanitize-payload": sanitizePayload = false
        case "sanitize-payload": sanitizePayload = true
        case "nopass":
            noPass = true
            passwords = []
        case "resetpass":
            noPass = false
            passwords = []
        case "clearselectors":
            selectors.removeSubrange(1...)
        case "reset":
            noPass = false
            passwords = []
            try! selectors[0].apply(Array("resetkeys".utf8))
            try! selectors[0].apply(Array("resetchannels".utf8))
            enabled = false
            sanitizePayload = true
            selectors.removeSubrange(1...)
            try! selectors[0].apply(Array("-@all".utf8))
        default:
            switch op[0] {
            case UInt8(ascii: ">"), UInt8(ascii: "#"):
                let hash = try ACLUser.passwordHash(op, cleartext: op[0] == UInt8(ascii: ">"))
                if !passwords.contains(hash) { passwords.append(hash) }
                noPass = false
            case UInt8(ascii: "<"), UInt8(ascii: "!"):
                let hash = try ACLUser.passwordHash(op, cleartext: op[0] == UInt8(ascii: "<"))
                guard let i = passwords.firstIndex(of: hash) else { throw .noSuchPassword }
                passwords.remove(at: i)
            case UInt8(ascii: "(") where op.last == UInt8(ascii: ")"):
                var selector = ACLSelector()
                for part in ACLUser.splitArguments(Array(op[1..<(op.count - 1)])) { try selector.apply(part) }
                selectors.append(selector)
            default:
                try selectors[0].apply(op)
            }
        }
    }

    /// The hash a password rule names: of the cleartext after `>` / `<`, or the one
    /// written after `#` / `!` (64 lower-case hex digits).
    static func passwordHash(_ op: [UInt8], cleartext: Bool) throws(ACLRuleError) -> String {
        if cleartext { return SHA256.hex(Array(op[1...])) }
        guard isValidHash(op[1...]) else { throw .badHash }
        return String(decoding: op[1...], as: UTF8.self)
    }

    static func isValidHash(_ bytes: ArraySlice<UInt8>) -> Bool {
        bytes.count == 64 && bytes.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    /// Words separated by blanks, as a selector's rules are written inside `(...)`.
    static func splitArguments(_ bytes: [UInt8]) -> [[UInt8]] {
        bytes.split(whereSeparator: { $0 == 32 || ($0 >= 9 && $0 <= 13) }).map(Array.init)
    }

    /// Whether `password` opens this user (enabled; nopass, or one hash matching).
    public func accepts(_ password: [UInt8]) -> Bool {
        guard enabled else { return false }
        if noPass { return true }
        let hash = SHA256.hex(password)
        return passwords.contains(hash)
    }

    /// The flags ACL GETUSER lists, in Redis's order.
    public var flags: [String] {
        var out: [String] = []
        out.append(enabled ? "on" : "off")
        if noPass { out.append("nopass") }
        if sanitizePayload == false { out.append("skip-sanitize-payload") }
        if sanitizePayload == true { out.append("sanitize-payload") }
        return out
    }

    /// The user as an ACL LIST line and an aclfile line, without `user <name> `.
    public var description: String {
        var out = ""
        for f in flags { out += f + " " }
        for p in passwords { out += "#" + p + " " }
        out += selectors[0].description
        for s in selectors.dropFirst() { out += " (" + s.description + ")" }
        return out
    }

    /// ACL SETUSER's arguments after the user name: `(` ... `)` spread over several
    /// arguments joined into one; nil with the index of an unclosed `(`.
    public static func mergeSelectorArguments(_ args: [[UInt8]]) -> (merged: [[UInt8]], unmatched: Int?) {
        var out: [[UInt8]] = []
        var open: Int? = nil
        var current: [UInt8] = []
        for (i, op) in args.enumerated() {
            if open == nil, op.first == UInt8(ascii: "("), op.last != UInt8(ascii: ")") {
                open = i
                current = op
                continue
            }
            if open != nil {
                current += [32] + op
                if op.last == UInt8(ascii: ")") {
                    out.append(current)
                    open = nil
                }
                continue
            }
            out.append(op)
        }
        return (out, open)
    }
}
