import DamselflyStorage

/// Why an ACL rule was refused; ``message`` is Redis 7.0's text for it.
public enum ACLRuleError: Error, Equatable, Sendable {
    case syntax
    case unknownName
    case keyAfterAllKeys
    case channelAfterAllChannels
    case noSuchPassword
    case badHash
    case firstArgOfSubcommand

    public var message: String {
        switch self {
        case .syntax: return "Syntax error"
        case .unknownName: return "Unknown command or category name in ACL"
        case .keyAfterAllKeys:
            return "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns"
        case .channelAfterAllChannels:
            return "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels"
        case .noSuchPassword: return "The password you are trying to remove from the user does not exist"
        case .badHash: return "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters"
        case .firstArgOfSubcommand: return "Allowing first-arg of a subcommand is not supported"
        }
    }
}

/// A key pattern and what it grants (`~p`, `%R~p`, `%W~p`).
public struct ACLKeyPattern: Equatable, Sendable {
    public var pattern: [UInt8]
    public var permissions: ACLKeyPermissions

    /// As a rule: `~p`, `%R~p` or `%W~p`.
    public var rule: String {
        let prefix = permissions == .all ? "~" : permissions == .read ? "%R~" : "%W~"
        return prefix + String(decoding: pattern, as: UTF8.self)
    }
}

/// One set of permissions: the commands (a bit per ``ACLCommandTable`` id), the keys and
/// the channels. A user has a root selector and any number of `(...)` selectors; a
/// command runs when one of them allows all of it.
public struct ACLSelector: Sendable {
    /// Allowed command ids.
    public private(set) var bits: [UInt64]
    /// Set by `+@all` and cleared by `-@all` only: Redis's reserved bit that says the
    /// rules started from everything, so commands Redis's table lacks (Damselfly's own)
    /// are allowed too, and the description starts with `+@all`.
    public private(set) var future = false
    /// Every command allowed: no bit check at all (cleared by any `-` rule).
    public private(set) var allCommands = false
    /// `+select|0`: first arguments allowed for a command whose bit is clear.
    public private(set) var firstArgs: [Int: [String]] = [:]
    public private(set) var allKeys = false
    public private(set) var keys: [ACLKeyPattern] = []
    public private(set) var allChannels = false
    public private(set) var channels: [[UInt8]] = []

    public init() {
        bits = Array(repeating: 0, count: (ACLCommandTable.count + 63) / 64)
    }

    /// No restriction at all: the connection skips every check.
    public var isUnrestricted: Bool { allCommands && allKeys && allChannels }

    @inline(__always)
    public func allows(_ id: Int) -> Bool { bits[id >> 6] & (1 << UInt64(id & 63)) != 0 }

    private mutating func setBit(_ id: Int, _ on: Bool) {
        if on {
            bits[id >> 6] |= 1 << UInt64(id & 63)
        } else {
            bits[id >> 6] &= ~(1 << UInt64(id & 63))
            allCommands = false
        }
    }

    /// Allows or denies a command, a container with all its subcommands.
    mutating func change(_ id: Int, _ on: Bool) {
        setBit(id, on)
        firstArgs[id] = nil
        for sub in ACLCommandTable.subcommands[id] { setBit(sub, on) }
    }

    mutating func change(_ category: ACLCategory, _ on: Bool) {
        for (id, entry) in ACLCommandTable.entries.enumerated() where entry.isIn(category) { change(id, on) }
    }

    private mutating func setAll(_ on: Bool) {
        for i in bits.indices { bits[i] = on ? ~0 : 0 }
        future = on
        allCommands = on
        firstArgs = [:]
    }

    /// Applies one selector rule (commands, keys, channels), as Redis's ACLSetSelector.
    public mutating func apply(_ op: [UInt8]) throws(ACLRuleError) {
        let text = String(decoding: op, as: UTF8.self)
        let lower = text.lowercased()
        switch lower {
        case "allkeys", "~*":
            allKeys = true
            keys = []
            return
        case "resetkeys":
            allKeys = false
            keys = []
            return
        case "allchannels", "&*":
            allChannels = true
            channels = []
            return
        case "resetchannels":
            allChannels = false
            channels = []
            return
        case "allcommands", "+@all":
            setAll(true)
            return
        case "nocommands", "-@all":
            setAll(false)
            return
        default: break
        }
        guard let first = op.first else { throw .syntax }
        switch first {
        case UInt8(ascii: "~"), UInt8(ascii: "%"):
            if allKeys { throw .keyAfterAllKeys }
            var permissions: ACLKeyPermissions = []
            var offset = 1
            if first == UInt8(ascii: "%") {
                var ok = true
                while offset < op.count {
                    let c = op[offset] & ~0x20
                    if c == UInt8(ascii: "R") && !permissions.contains(.read) {
                        permissions.insert(.read)
                    } else if c == UInt8(ascii: "W") && !permissions.contains(.write) {
                        permissions.insert(.write)
                    } else if op[offset] == UInt8(ascii: "~") {
                        offset += 1
                        break
                    } else {
                        ok = false
                        break
                    }
                    offset += 1
                }
                if permissions.isEmpty || !ok { throw .syntax }
            } else {
                permissions = .all
            }
            let pattern = Array(op[offset...])
            if ACLSelector.hasSpaces(pattern) { throw .syntax }
            if let i = keys.firstIndex(where: { $0.pattern == pattern }) {
                keys[i].permissions.formUnion(permissions)
            } else {
                keys.append(ACLKeyPattern(pattern: pattern, permissions: permissions))
            }
            allKeys = false
        case UInt8(ascii: "&"):
            if allChannels { throw .channelAfterAllChannels }
            let pattern = Array(op[1...])
            if ACLSelector.hasSpaces(pattern) { throw .syntax }
            if !channels.contains(pattern) { channels.append(pattern) }
            allChannels = false
        case UInt8(ascii: "+") where op.count < 2 || op[1] != UInt8(ascii: "@"):
            let name = String(lower.dropFirst())
            guard let bar = name.lastIndex(of: "|") else {
                guard let id = ACLSelector.lookup(name) else { throw .unknownName }
                return change(id, true)
            }
            let base = String(name[..<bar])
            let sub = String(name[name.index(after: bar)...])
            guard let id = ACLSelector.lookup(base) else { throw .unknownName }
            if ACLCommandTable.parents[id] >= 0 { throw .firstArgOfSubcommand }
            if sub.isEmpty { throw .syntax }
            if !ACLCommandTable.subcommands[id].isEmpty {
                guard let subID = ACLSelector.lookup(name) else { throw .unknownName }
                change(subID, true)
            } else {
                // Redis's deprecated first-arg form (`+select|0`): kept as given, matched
                // case-insensitively against the first argument.
                let given = String(text.dropFirst())
                let arg = String(given[given.index(after: given.lastIndex(of: "|")!)...])
                var list = firstArgs[id] ?? []
                if !list.contains(where: { $0.lowercased() == arg.lowercased() }) { list.append(arg) }
                firstArgs[id] = list
            }
        case UInt8(ascii: "-") where op.count < 2 || op[1] != UInt8(ascii: "@"):
            guard let id = ACLSelector.lookup(String(lower.dropFirst())) else { throw .unknownName }
            change(id, false)
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard let category = ACLCategory.named(String(lower.dropFirst(2))) else { throw .unknownName }
            change(category, first == UInt8(ascii: "+"))
        default:
            throw .syntax
        }
    }

    /// Redis's strict lookup: `name` or `container|sub`, one level only.
    static func lookup(_ name: String) -> Int? {
        let parts = name.split(separator: "|", omittingEmptySubsequences: false)
        guard parts.count <= 2, let base = ACLCommandTable.ids[String(parts[0])] else { return nil }
        if parts.count == 1 { return base }
        guard !ACLCommandTable.subcommands[base].isEmpty else { return nil }
        return ACLCommandTable.ids[name]
    }

    /// Whitespace or NUL (C's isspace), which patterns and user names may not hold.
    public static func hasSpaces(_ bytes: [UInt8]) -> Bool {
        bytes.contains { $0 == 32 || ($0 >= 9 && $0 <= 13) || $0 == 0 }
    }

    // MARK: - Description

    /// The command rules as ACL GETUSER and ACL LIST show them: `+@all` or `-@all`, then
    /// the categories that fit best, then single commands, found as Redis 7.0 finds them
    /// (the same categories in the same order; single commands in table order, where
    /// Redis's order follows its hash table).
    public func describeCommands() -> String {
        let additive = !future
        var rules = additive ? "-@all " : "+@all "
        var fake = ACLSelector()
        fake.setAll(!additive)
        var temp = self
        var applied = Set<ACLCategory>()
        while true {
            var best: ACLCategory? = nil
            var minDiff = Int.max
            var maxSame = 0
            for category in ACLCategory.allCases where !applied.contains(category) {
                var on = 0
                var off = 0
                for (id, entry) in ACLCommandTable.entries.enumerated() where entry.isIn(category) {
                    if temp.allows(id) { on += 1 } else { off += 1 }
                }
                let diff = additive ? off : on
                let same = additive ? on : off
                if same > diff && (diff < minDiff || (diff == minDiff && same > maxSame)) {
                    best = category
                    minDiff = diff
                    maxSame = same
                }
            }
            guard let best else { break }
            fake.change(best, additive)
            temp.change(best, !additive)
            rules += (additive ? "+@" : "-@") + best.name + " "
            applied.insert(best)
        }
        for (id, entry) in ACLCommandTable.entries.enumerated() {
            let mine = allows(id)
            if mine != fake.allows(id) {
                rules += (mine ? "+" : "-") + entry.name + " "
                fake.change(id, mine)
            }
            if !mine, let args = firstArgs[id] {
                for arg in args { rules += "+" + entry.name + "|" + arg + " " }
            }
        }
        rules.removeLast()
        return rules
    }

    /// The `keys` field of ACL GETUSER.
    public var keysDescription: String {
        allKeys ? "~*" : keys.map(\.rule).joined(separator: " ")
    }

    /// The `channels` field of ACL GETUSER.
    public var channelsDescription: String {
        allChannels ? "&*" : channels.map { "&" + String(decoding: $0, as: UTF8.self) }.joined(separator: " ")
    }

    /// The selector as ACL LIST writes it: keys, channels, commands.
    public var description: String {
        var out = ""
        if allKeys { out += "~* " } else { for k in keys { out += k.rule + " " } }
        if allChannels {
            out += "&* "
        } else {
            out += "resetchannels "
            for c in channels { out += "&" + String(decoding: c, as: UTF8.self) + " " }
        }
        return out + describeCommands()
    }
}
