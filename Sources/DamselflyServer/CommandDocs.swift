import DamselflyACL
import DamselflyCommands
import DamselflyRESP
import DamselflyStorage

/// COMMAND and its subcommands, answered from the command table: Damselfly's registrations
/// (name, arity, flags, handler) plus Redis 7.0's own table (``ACLCommandTable``, generated
/// from its src/commands/*.json) for what they do not carry: subcommands (`config|get`),
/// key specs, `movablekeys`.
enum CommandDocs {
    /// The command's ACL categories as Redis's table has them; its group for a command
    /// Redis lacks.
    static func aclCategories(_ spec: CommandSpec) -> [String] {
        guard let id = spec.aclCommandID else { return [spec.group] }
        return categories(id)
    }

    static func categories(_ id: Int) -> [String] {
        ACLCategory.allCases.filter { ACLCommandTable.entries[id].isIn($0) }.map(\.name)
    }

    /// COMMAND INFO's entry: name, arity, flags, legacy first / last / step, ACL
    /// categories, tips, key specs, subcommands.
    static func info(_ spec: CommandSpec) -> Reply {
        var flags = spec.flags.names
        if spec.tableFlags.contains(.movableKeys) { flags.append("movablekeys") }
        let subcommands = spec.aclCommandID.map { ACLCommandTable.subcommands[$0] } ?? []
        return .array([
            .bulkString(spec.name),
            .integer(spec.arity),
            .set(flags.map { .simple($0) }),
            .integer(spec.firstKey),
            .integer(spec.lastKey),
            .integer(spec.keyStep),
            .set(aclCategories(spec).map { Reply.simple("@" + $0) }),
            .set([]),
            .array(spec.aclCommandID.map { ACLCommandTable.entries[$0].keySpecs.map(keySpec) } ?? []),
            .array(subcommands.map { subcommandInfo($0, parent: spec) }),
        ])
    }

    /// A subcommand's entry (`config|get`): its arity, key specs and categories from Redis's
    /// table, the flags of the container that runs it.
    static func subcommandInfo(_ id: Int, parent: CommandSpec) -> Reply {
        let entry = ACLCommandTable.entries[id]
        var flags = parent.flags.names
        if entry.flags.contains(.movableKeys) { flags.append("movablekeys") }
        let (first, last, step) = legacyRange(entry.keySpecs)
        return .array([
            .bulkString(entry.name),
            .integer(entry.arity),
            .set(flags.map { .simple($0) }),
            .integer(first),
            .integer(last),
            .integer(step),
            .set(categories(id).map { Reply.simple("@" + $0) }),
            .set([]),
            .array(entry.keySpecs.map(keySpec)),
            .array([]),
        ])
    }

    /// The (first, last, step) triple of a single plain key spec (MEMORY USAGE's `2 2 1`).
    static func legacyRange(_ specs: [ACLKeySpec]) -> (Int, Int, Int) {
        guard specs.count == 1, case .index(let pos) = specs[0].begin, case .range(let lastKey, let step, _) = specs[0].find else {
            return (0, 0, 0)
        }
        return (pos, lastKey >= 0 ? pos + lastKey : lastKey, step)
    }

    /// One key spec as COMMAND INFO shows it (without Redis's free-text notes).
    static func keySpec(_ spec: ACLKeySpec) -> Reply {
        let begin: Reply
        switch spec.begin {
        case .index(let pos):
            begin = .map([(.bulkString("type"), .bulkString("index")), (.bulkString("spec"), .map([(.bulkString("index"), .integer(pos))]))])
        case .keyword(let word, let startFrom):
            begin = .map([(.bulkString("type"), .bulkString("keyword")), (.bulkString("spec"), .map([
                (.bulkString("keyword"), .bulkString(word.uppercased())), (.bulkString("startfrom"), .integer(startFrom)),
            ]))])
        case .unknown:
            begin = .map([(.bulkString("type"), .bulkString("unknown")), (.bulkString("spec"), .map([]))])
        }
        let find: Reply
        switch spec.find {
        case .range(let lastKey, let step, let limit):
            find = .map([(.bulkString("type"), .bulkString("range")), (.bulkString("spec"), .map([
                (.bulkString("lastkey"), .integer(lastKey)), (.bulkString("keystep"), .integer(step)), (.bulkString("limit"), .integer(limit)),
            ]))])
        case .keyNumber(let index, let firstKey, let step):
            find = .map([(.bulkString("type"), .bulkString("keynum")), (.bulkString("spec"), .map([
                (.bulkString("keynumidx"), .integer(index)), (.bulkString("firstkey"), .integer(firstKey)), (.bulkString("keystep"), .integer(step)),
            ]))])
        case .unknown:
            find = .map([(.bulkString("type"), .bulkString("unknown")), (.bulkString("spec"), .map([]))])
        }
        return .map([
            (.bulkString("flags"), .set(keyFlagNames(spec.flags).map { .simple($0) })),
            (.bulkString("begin_search"), begin),
            (.bulkString("find_keys"), find),
        ])
    }

    /// Key-spec flags by Redis's names, in its order.
    static func keyFlagNames(_ flags: ACLKeyFlags) -> [String] {
        let names: [(ACLKeyFlags, String)] = [
            (.ro, "RO"), (.rw, "RW"), (.ow, "OW"), (.rm, "RM"), (.access, "access"), (.update, "update"),
            (.insert, "insert"), (.delete, "delete"), (.notKey, "not_key"), (.incomplete, "incomplete"),
            (.variableFlags, "variable_flags"),
        ]
        return names.filter { flags.contains($0.0) }.map(\.1)
    }

    /// What COMMAND INFO / DOCS name: a command (`get`) or a subcommand (`config|get`);
    /// nil for neither (`get|key`, `config|get|key`).
    enum Target {
        case command(CommandSpec)
        case subcommand(Int, parent: CommandSpec)
    }

    static func target(_ name: String, _ registry: CommandRegistry) -> Target? {
        let parts = name.lowercased().split(separator: "|", omittingEmptySubsequences: false)
        guard let spec = registry.commands[String(parts[0])] else { return nil }
        if parts.count == 1 { return .command(spec) }
        guard parts.count == 2, spec.hasSubcommands, let id = ACLCommandTable.id(name) else { return nil }
        return .subcommand(id, parent: spec)
    }

    /// Every command's and subcommand's name, commands in name order, each followed by its
    /// subcommands (COMMAND LIST).
    static func allNames(_ registry: CommandRegistry) -> [(name: String, categories: [String])] {
        var out: [(name: String, categories: [String])] = []
        for spec in registry.commands.values.sorted(by: { $0.name < $1.name }) {
            out.append((spec.name, aclCategories(spec)))
            guard spec.hasSubcommands, let id = spec.aclCommandID else { continue }
            for sub in ACLCommandTable.subcommands[id] { out.append((ACLCommandTable.entries[sub].name, categories(sub))) }
        }
        return out
    }

    static func command(_ call: CommandCall) {
        let registry = call.engine.registry
        if call.args.count == 1 {
            return call.reply(.array(registry.commands.values.sorted { $0.name < $1.name }.map(info)))
        }
        let sub = call.args.string(1).lowercased()
        switch sub {
        case "count" where call.args.count == 2:
            call.reply(.integer(registry.commands.count))
        case "list":
            list(call, registry)
        case "info":
            if call.args.count == 2 {
                return call.reply(.array(registry.commands.values.sorted { $0.name < $1.name }.map(info)))
            }
            call.reply(.array((2..<call.args.count).map { i in
                switch target(call.args.string(i), registry) {
                case .command(let spec): return info(spec)
                case .subcommand(let id, let parent): return subcommandInfo(id, parent: parent)
                case nil: return .nullArray
                }
            }))
        case "docs":
            var docs: [(Reply, Reply)] = []
            let names = call.args.count == 2 ? registry.commands.keys.sorted() : (2..<call.args.count).map { call.args.string($0) }
            for name in names {
                switch target(name, registry) {
                case .command(let spec): docs.append((.bulkString(spec.name), doc(group: spec.group)))
                case .subcommand(let id, let parent): docs.append((.bulkString(ACLCommandTable.entries[id].name), doc(group: parent.group)))
                case nil: continue
                }
            }
            call.reply(.map(docs))
        case "getkeys" where call.args.count >= 4, "getkeysandflags" where call.args.count >= 4:
            getKeys(call, registry, withFlags: sub == "getkeysandflags")
        case "getkeys", "getkeysandflags":
            call.reply(.error("ERR wrong number of arguments for 'command|\(sub)' command"))
        case "help" where call.args.count == 2:
            call.reply(.array([
                "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "(no subcommand)", "    Return details about all Redis commands.",
                "COUNT", "    Return the total number of commands in this Redis server.",
                "LIST", "    Return a list of all commands in this Redis server.",
                "INFO [<command-name> ...]", "    Return details about multiple Redis commands.",
                "    If no command names are given, documentation details for all",
                "    commands are returned.",
                "DOCS [<command-name> ...]", "    Return documentation details about multiple Redis commands.",
                "    If no command names are given, documentation details for all",
                "    commands are returned.",
                "GETKEYS <full-command>", "    Return the keys from a full Redis command.",
                "GETKEYSANDFLAGS <full-command>", "    Return the keys and the access flags from a full Redis command.",
                "HELP", "    Prints this help.",
            ].map { .simple($0) }))
        default:
            call.reply(.error("ERR unknown subcommand or wrong number of arguments for '\(call.args.string(1))'. Try COMMAND HELP."))
        }
    }

    static func doc(group: String) -> Reply {
        .map([
            (.bulkString("summary"), .bulkString("")),
            (.bulkString("since"), .bulkString("1.0.0")),
            (.bulkString("group"), .bulkString(group)),
        ])
    }

    /// COMMAND LIST [FILTERBY MODULE m | ACLCAT c | PATTERN p] (no modules: MODULE lists
    /// nothing; an unknown category lists nothing; PATTERN is a case-insensitive glob over
    /// `command` and `command|subcommand` names).
    static func list(_ call: CommandCall, _ registry: CommandRegistry) {
        let all = allNames(registry)
        if call.args.count == 2 { return call.reply(.array(all.map { .bulkString($0.name) })) }
        guard call.args.count == 5, call.isArg(2, "filterby") else { return call.reply(.syntaxError) }
        let argument = call.args.string(4)
        let names: [String]
        if call.isArg(3, "module") {
            names = []
        } else if call.isArg(3, "aclcat") {
            let category = argument.lowercased()
            names = all.filter { $0.categories.contains(category) }.map(\.name)
        } else if call.isArg(3, "pattern") {
            let pattern = Array(argument.utf8)
            names = all.map(\.name).filter { name in
                pattern.withUnsafeBytes { p in Array(name.utf8).withUnsafeBytes { GlobPattern.matches(pattern: p, string: $0, caseInsensitive: true) } }
            }
        } else {
            return call.reply(.syntaxError)
        }
        call.reply(.array(names.map { .bulkString($0) }))
    }

    /// COMMAND GETKEYS / GETKEYSANDFLAGS <command> <args...>: the keys Redis's key specs (or
    /// its getkeys procedures, for the specs that cannot say) find in a full command, with
    /// Redis's errors.
    static func getKeys(_ call: CommandCall, _ registry: CommandRegistry, withFlags: Bool) {
        let args = (2..<call.args.count).map { call.args.bytes($0) }
        guard let spec = registry.lookup(call.args[2]) else { return call.reply(.error("ERR Invalid command specified")) }
        guard var id = spec.aclCommandID else {
            // A command of Damselfly's own: its registration's key positions.
            guard spec.firstKey > 0 else { return call.reply(.error("ERR The command has no key arguments")) }
            guard spec.acceptsArgumentCount(args.count) else {
                return call.reply(.error("ERR Invalid number of arguments specified for command"))
            }
            let last = spec.lastKey < 0 ? args.count + spec.lastKey : spec.lastKey
            let positions = stride(from: spec.firstKey, through: min(last, args.count - 1), by: max(spec.keyStep, 1))
            return call.reply(.array(positions.map { reply(args[$0], [], withFlags: false) }))
        }
        if spec.hasSubcommands && args.count >= 2 {
            guard let sub = ACLCommandTable.id(spec.name + "|" + String(decoding: args[1], as: UTF8.self)) else {
                return call.reply(.error("ERR Invalid command specified"))
            }
            id = sub
        }
        let entry = ACLCommandTable.entries[id]
        guard entry.keySpecs.contains(where: { !$0.flags.contains(.notKey) }) else {
            return call.reply(.error("ERR The command has no key arguments"))
        }
        guard entry.arity >= 0 ? args.count == entry.arity : args.count >= -entry.arity else {
            return call.reply(.error("ERR Invalid number of arguments specified for command"))
        }
        let keys = validKeyCounts(entry, args) ? ACLKeyExtractor.keys(id, args) : []
        if keys.isEmpty && !entry.flags.contains(.noMandatoryKeys) {
            return call.reply(.error("ERR Invalid arguments specified for command"))
        }
        call.reply(.array(keys.map { reply(args[$0.0], $0.1, withFlags: withFlags) }))
    }

    private static func reply(_ key: [UInt8], _ flags: ACLKeyFlags, withFlags: Bool) -> Reply {
        withFlags ? .array([.bulk(key), .set(keyFlagNames(flags).map { .simple($0) })]) : .bulk(key)
    }

    /// Whether every `numkeys` argument names at least one key and no more than follow it:
    /// otherwise Redis's getkeys procedures find no key at all (EVAL with 0 keys,
    /// ZUNIONSTORE with more keys declared than given).
    static func validKeyCounts(_ entry: ACLCommandEntry, _ args: [[UInt8]]) -> Bool {
        for spec in entry.keySpecs {
            guard case .keyNumber(let index, let firstKey, let step) = spec.find, case .index(let pos) = spec.begin else { continue }
            guard pos + index < args.count, let n = Int(String(decoding: args[pos + index], as: UTF8.self)), n >= 1,
                  pos + firstKey + (n - 1) * max(step, 1) < args.count else { return false }
        }
        return true
    }
}
