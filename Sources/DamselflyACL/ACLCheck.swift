import DamselflyStorage

/// Why a command was refused, with the argument that caused it (keys and channels).
public enum ACLDenial: Equatable, Sendable {
    case command
    case key(position: Int)
    case channel(position: Int)

    /// Redis's ACL_DENIED_* order: which refusal a user with several selectors reports.
    var rank: Int {
        switch self {
        case .command: return 1
        case .key: return 2
        case .channel: return 4
        }
    }

    var position: Int {
        switch self {
        case .command: return 0
        case .key(let p), .channel(let p): return p
        }
    }
}

/// The arguments of one call as the check sees them: the count and each one's bytes.
public protocol ACLArguments {
    var count: Int { get }
    func bytes(_ index: Int) -> [UInt8]
}

extension Array: ACLArguments where Element == [UInt8] {
    public func bytes(_ index: Int) -> [UInt8] { self[index] }
}

extension ACLUser {
    /// Redis's ACLCheckAllUserCommandPerm: nil when a selector allows the whole call
    /// (the command, every key it names with the access it makes, every channel);
    /// otherwise the refusal to report (no selector ran the command; else the last key
    /// or channel no selector allowed).
    public func check<A: ACLArguments>(_ id: Int?, _ args: A) -> ACLDenial? {
        var worst: ACLDenial = .command
        var keys: [(Int, ACLKeyFlags)]? = nil
        for selector in selectors {
            guard let denial = selector.check(id, args, keys: &keys) else { return nil }
            if denial.rank > worst.rank || (denial.rank == worst.rank && denial.position > worst.position) {
                worst = denial
            }
        }
        return worst
    }

    /// Whether some selector allows `channel` (PUBLISH's; SUBSCRIBE's checked as a
    /// pattern match, PSUBSCRIBE's literally).
    public func allowsChannel(_ channel: [UInt8], isPattern: Bool) -> Bool {
        selectors.contains { $0.allowsChannel(channel, isPattern: isPattern) }
    }
}

extension ACLSelector {
    /// `id`: the table id of the (sub)command; nil for a command Redis's table lacks,
    /// allowed only to selectors whose rules started from `+@all`.
    func check<A: ACLArguments>(_ id: Int?, _ args: A, keys: inout [(Int, ACLKeyFlags)]?) -> ACLDenial? {
        guard let id else { return future ? nil : .command }
        let entry = ACLCommandTable.entries[id]
        if !allCommands && !entry.noAuth && !allows(id) {
            let index = ACLCommandTable.parents[id] >= 0 ? 2 : 1
            guard args.count > index, let allowed = firstArgs[id] else { return .command }
            let given = String(decoding: args.bytes(index), as: UTF8.self).lowercased()
            guard allowed.contains(where: { $0.lowercased() == given }) else { return .command }
        }
        if !allKeys && !entry.keySpecs.isEmpty {
            if keys == nil { keys = ACLKeyExtractor.keys(id, args) }
            for (position, flags) in keys! where !allowsKey(args.bytes(position), flags.permissions) {
                return .key(position: position)
            }
        }
        if !allChannels, let place = ACLKeyExtractor.channelPositions(entry.name) {
            let end = place.count < 0 ? args.count : min(args.count, place.start + place.count)
            var i = place.start
            while i < end {
                if !allowsChannel(args.bytes(i), isPattern: place.isPattern) { return .channel(position: i) }
                i += 1
            }
        }
        return nil
    }

    func allowsKey(_ key: [UInt8], _ needed: ACLKeyPermissions) -> Bool {
        if allKeys { return true }
        for k in keys where k.permissions.isSuperset(of: needed) {
            let hit = k.pattern.withUnsafeBytes { p in key.withUnsafeBytes { GlobPattern.matches(pattern: p, string: $0) } }
            if hit { return true }
        }
        return false
    }

    func allowsChannel(_ channel: [UInt8], isPattern: Bool) -> Bool {
        if allChannels { return true }
        for pattern in channels {
            if isPattern {
                if pattern == channel { return true }
            } else if pattern.withUnsafeBytes({ p in channel.withUnsafeBytes { GlobPattern.matches(pattern: p, string: $0) } }) {
                return true
            }
        }
        return false
    }
}

/// Finds a call's keys from its key specs, as Redis's getKeysFromCommandWithSpecs, with
/// its special cases for the commands whose specs cannot say (SET and BITFIELD, whose
/// access depends on options; SORT's STORE; MIGRATE's KEYS).
public enum ACLKeyExtractor {
    public static func keys<A: ACLArguments>(_ id: Int, _ args: A) -> [(Int, ACLKeyFlags)] {
        let entry = ACLCommandTable.entries[id]
        let argc = args.count
        switch entry.name {
        case "set":
            for i in stride(from: 3, to: argc, by: 1) where String(decoding: args.bytes(i), as: UTF8.self).lowercased() == "get" {
                return [(1, [.rw, .access, .update])]
            }
            return argc > 1 ? [(1, [.ow, .update])] : []
        case "bitfield":
            var readOnly = true
            var i = 2
            while i < argc {
                let remaining = argc - i - 1
                let arg = String(decoding: args.bytes(i), as: UTF8.self).lowercased()
                if arg == "get" && remaining >= 2 { i += 3; continue }
                if arg == "overflow" && remaining >= 1 { i += 2; continue }
                readOnly = false
                break
            }
            return argc > 1 ? [(1, readOnly ? [.ro, .access] : [.rw, .access, .update])] : []
        case "sort", "sort_ro":
            var out: [(Int, ACLKeyFlags)] = argc > 1 ? [(1, [.ro, .access])] : []
            if entry.name == "sort" {
                // SORT writes to the last STORE it is given (Redis's sortGetKeys reports that one).
                var store: Int?
                var i = 2
                while i < argc {
                    let arg = String(decoding: args.bytes(i), as: UTF8.self).lowercased()
                    if arg == "store" && i + 1 < argc { store = i + 1; i += 2; continue }
                    i += arg == "limit" ? 3 : (arg == "by" || arg == "get") ? 2 : 1
                }
                if let store { out.append((store, [.ow, .update])) }
            }
            return out
        default: break
        }
        var out: [(Int, ACLKeyFlags)] = []
        for spec in entry.keySpecs where !spec.flags.contains(.notKey) {
            var first: Int
            switch spec.begin {
            case .index(let pos): first = pos
            case .keyword(let word, let startFrom):
                let from = startFrom > 0 ? startFrom : argc + startFrom
                let up = startFrom > 0
                var i = from
                var found: Int? = nil
                while i >= 1 && i < argc && (up ? i <= argc - 1 : i >= 1) {
                    if String(decoding: args.bytes(i), as: UTF8.self).lowercased() == word { found = i + 1; break }
                    i += up ? 1 : -1
                }
                guard let found else { continue }
                first = found
            case .unknown: return migrateKeys(entry.name, args)
            }
            var last: Int
            var step: Int
            switch spec.find {
            case .range(let lastKey, let s, let limit):
                if lastKey >= 0 {
                    last = first + lastKey
                } else if limit == 0 {
                    last = argc + lastKey
                } else {
                    last = first + ((argc - first) / limit + lastKey)
                }
                step = s
            case .keyNumber(let index, let firstKey, let s):
                guard first + index < argc, let n = Int(String(decoding: args.bytes(first + index), as: UTF8.self)), n >= 0 else {
                    return migrateKeys(entry.name, args)
                }
                first += firstKey
                last = first + n - 1
                step = s
            case .unknown: return migrateKeys(entry.name, args)
            }
            var i = first
            while i <= last && step > 0 {
                if i < argc { out.append((i, spec.flags)) }
                if spec.flags.contains(.incomplete) { return migrateKeys(entry.name, args) }
                i += step
            }
        }
        return out
    }

    /// MIGRATE's keys (the one at 3, or the list after KEYS); none for others whose
    /// specs failed (a non-numeric numkeys: the command itself reports it).
    static func migrateKeys<A: ACLArguments>(_ name: String, _ args: A) -> [(Int, ACLKeyFlags)] {
        guard name == "migrate", args.count > 5 else { return [] }
        var i = 6
        while i < args.count {
            let arg = String(decoding: args.bytes(i), as: UTF8.self).lowercased()
            if arg == "keys" {
                return (i + 1..<args.count).map { ($0, [.rw, .access, .delete]) }
            }
            if arg == "auth" { i += 2; continue }
            if arg == "auth2" { i += 3; continue }
            i += 1
        }
        return [(3, [.rw, .access, .delete])]
    }

    /// Where a command's channels are: Redis's small channel table.
    public static func channelPositions(_ name: String) -> (start: Int, count: Int, isPattern: Bool)? {
        switch name {
        case "subscribe", "ssubscribe": return (1, -1, false)
        case "psubscribe": return (1, -1, true)
        case "publish", "spublish": return (1, 1, false)
        default: return nil
        }
    }
}
