/// Redis's ACL categories, in the order Redis lists them (ACL CAT) and tries them when it
/// describes a user's command rules.
public enum ACLCategory: Int, CaseIterable, Sendable {
    case keyspace, read, write, set, sortedset, list, hash, string, bitmap, hyperloglog, geo, stream,
         pubsub, admin, fast, slow, blocking, dangerous, connection, transaction, scripting

    public var bit: UInt32 { 1 << UInt32(rawValue) }
    public var name: String { String(describing: self) }

    /// The category named `name` (case-insensitively), as `+@name` spells it.
    public static func named(_ name: String) -> ACLCategory? {
        let lower = name.lowercased()
        return allCases.first { $0.name == lower }
    }
}

/// A key spec's flags (Redis's `CMD_KEY_*`): how a command uses the keys it finds.
public struct ACLKeyFlags: OptionSet, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let ro = ACLKeyFlags(rawValue: 1 << 0)
    public static let rw = ACLKeyFlags(rawValue: 1 << 1)
    public static let ow = ACLKeyFlags(rawValue: 1 << 2)
    public static let rm = ACLKeyFlags(rawValue: 1 << 3)
    public static let access = ACLKeyFlags(rawValue: 1 << 4)
    public static let update = ACLKeyFlags(rawValue: 1 << 5)
    public static let insert = ACLKeyFlags(rawValue: 1 << 6)
    public static let delete = ACLKeyFlags(rawValue: 1 << 7)
    public static let notKey = ACLKeyFlags(rawValue: 1 << 8)
    public static let incomplete = ACLKeyFlags(rawValue: 1 << 9)
    public static let variableFlags = ACLKeyFlags(rawValue: 1 << 10)

    /// The `%R` / `%W` permissions a key used so needs: reading its value needs R;
    /// inserting, updating or deleting needs W; neither (EXISTS, TYPE) needs no more
    /// than some pattern matching the name.
    public var permissions: ACLKeyPermissions {
        var p: ACLKeyPermissions = []
        if contains(.access) { p.insert(.read) }
        if !intersection([.insert, .update, .delete]).isEmpty { p.insert(.write) }
        return p
    }
}

/// What a key pattern grants: `~` both, `%R~` read, `%W~` write.
public struct ACLKeyPermissions: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let read = ACLKeyPermissions(rawValue: 1)
    public static let write = ACLKeyPermissions(rawValue: 2)
    public static let all: ACLKeyPermissions = [.read, .write]
}

/// Where a key spec finds its keys, as Redis 7's command table says.
public struct ACLKeySpec: Sendable {
    public enum Begin: Sendable {
        case index(Int)
        case keyword(String, startFrom: Int)
        case unknown
    }
    public enum Find: Sendable {
        case range(lastKey: Int, step: Int, limit: Int)
        case keyNumber(index: Int, firstKey: Int, step: Int)
        case unknown
    }
    public let flags: ACLKeyFlags
    public let begin: Begin
    public let find: Find
}

/// Command flags of Redis's table that Damselfly's own registrations do not carry.
public struct ACLCommandFlags: OptionSet, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// COMMAND INFO's `movablekeys`: the (first, last, step) triple does not find every key.
    public static let movableKeys = ACLCommandFlags(rawValue: 1 << 0)
    /// `may_replicate` (EVAL, FCALL, PUBLISH, PFCOUNT...): paused by CLIENT PAUSE WRITE and
    /// refused in read-only scripts, like a write.
    public static let mayReplicate = ACLCommandFlags(rawValue: 1 << 1)
    /// `no_mandatory_keys`: COMMAND GETKEYS answers an empty list, not an error, when it
    /// finds no key (EVAL with numkeys 0).
    public static let noMandatoryKeys = ACLCommandFlags(rawValue: 1 << 2)
}

/// One command or subcommand (`client|list`) of Redis's table: what ACL needs of it.
public struct ACLCommandEntry: Sendable {
    public let name: String
    public let arity: Int
    public let categories: UInt32
    public let noAuth: Bool
    public let flags: ACLCommandFlags
    public let keySpecs: [ACLKeySpec]
    public init(_ name: String, arity: Int, categories: UInt32, noAuth: Bool, flags: ACLCommandFlags = [], keySpecs: [ACLKeySpec]) {
        self.name = name
        self.arity = arity
        self.categories = categories
        self.noAuth = noAuth
        self.flags = flags
        self.keySpecs = keySpecs
    }
    public func isIn(_ category: ACLCategory) -> Bool { categories & category.bit != 0 }
}

/// Redis 7.0's command table as ACL sees it (scripts/acl-command-table.py writes the
/// entries): a command's id is its index here, the bit it has in every selector's bitmap.
public enum ACLCommandTable {
    public static let entries: [ACLCommandEntry] = generated
    public static var count: Int { entries.count }

    /// Full name (`get`, `client|list`) → id.
    public static let ids: [String: Int] = {
        var out: [String: Int] = [:]
        for (i, e) in entries.enumerated() { out[e.name] = i }
        return out
    }()

    /// Container id → its subcommands' ids (empty for plain commands).
    public static let subcommands: [[Int]] = {
        var out = Array(repeating: [Int](), count: entries.count)
        for (i, e) in entries.enumerated() {
            if let bar = e.name.firstIndex(of: "|"), let parent = ids[String(e.name[..<bar])] { out[parent].append(i) }
        }
        return out
    }()

    /// Id → its container's id, or -1.
    public static let parents: [Int] = {
        var out = Array(repeating: -1, count: entries.count)
        for (parent, subs) in subcommands.enumerated() { for s in subs { out[s] = parent } }
        return out
    }()

    /// The id of `name` (`get`, `config|set`), case-insensitively.
    public static func id(_ name: String) -> Int? { ids[name.lowercased()] }

    /// The id a call runs under: the subcommand's for a container with a known one
    /// (`CLIENT LIST` → `client|list`), else the command's.
    public static func id(command: Int, firstArgument: [UInt8]?) -> Int {
        guard !subcommands[command].isEmpty, let sub = firstArgument else { return command }
        let full = entries[command].name + "|" + String(decoding: sub, as: UTF8.self).lowercased()
        return ids[full] ?? command
    }

    /// ACL CAT <category>: every command and subcommand in it, in table order.
    public static func members(of category: ACLCategory) -> [String] {
        entries.filter { $0.isIn(category) }.map(\.name)
    }
}
