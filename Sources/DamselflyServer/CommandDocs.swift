import DamselflyACL
import DamselflyCommands
import DamselflyRESP

/// COMMAND and its subcommands, answered from the command table.
enum CommandDocs {
    /// The command's ACL categories as Redis's table has them; its group for a command
    /// Redis lacks.
    static func aclCategories(_ spec: CommandSpec) -> [String] {
        guard let id = spec.aclCommandID else { return [spec.group] }
        return ACLCategory.allCases.filter { ACLCommandTable.entries[id].isIn($0) }.map(\.name)
    }

    static func info(_ spec: CommandSpec) -> Reply {
        .array([
            .bulkString(spec.name),
            .integer(spec.arity),
            .set(spec.flags.names.map { .simple($0) }),
            .integer(spec.firstKey),
            .integer(spec.lastKey),
            .integer(spec.keyStep),
            .set(aclCategories(spec).map { Reply.simple("@" + $0) }),
            .set([]),
            .array([]),
            .array([]),
        ])
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
            call.reply(.array(registry.commands.keys.sorted().map { .bulkString($0) }))
        case "info":
            if call.args.count == 2 {
                return call.reply(.array(registry.commands.values.sorted { $0.name < $1.name }.map(info)))
            }
            call.reply(.array((2..<call.args.count).map { i in
                registry.lookup(call.args[i]).map(info) ?? .nullArray
            }))
        case "docs":
            let specs: [CommandSpec] = call.args.count == 2
                ? registry.commands.values.sorted { $0.name < $1.name }
                : (2..<call.args.count).compactMap { registry.lookup(call.args[$0]) }
            call.reply(.map(specs.map { spec in
                (.bulkString(spec.name), .map([
                    (.bulkString("summary"), .bulkString("")),
                    (.bulkString("since"), .bulkString("1.0.0")),
                    (.bulkString("group"), .bulkString(spec.group)),
                ]))
            }))
        case "getkeys" where call.args.count >= 3:
            guard let spec = registry.lookup(call.args[2]) else {
                return call.reply(.error("ERR Invalid command specified"))
            }
            let argc = call.args.count - 2
            guard spec.firstKey > 0, spec.acceptsArgumentCount(argc) else {
                return call.reply(.error("ERR The command has no key arguments"))
            }
            if spec.name == "sort" {
                let args = (2..<call.args.count).map { call.args.bytes($0) }
                return call.reply(.array(SortFamily.keyPositions(args).map { .bulk(args[$0]) }))
            }
            let last = spec.lastKey < 0 ? argc + spec.lastKey : spec.lastKey
            var keys: [Reply] = []
            var i = spec.firstKey
            while i <= last && i < argc {
                keys.append(.bulk(call.args.bytes(i + 2)))
                i += max(spec.keyStep, 1)
            }
            call.reply(.array(keys))
        case "help" where call.args.count == 2:
            call.reply(.array([
                "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "(no subcommand)", "    Return details about all commands.",
                "COUNT", "    Return the total number of commands in this server.",
                "LIST", "    Return a list of all commands in this server.",
                "INFO [<command-name> ...]", "    Return details about multiple commands.",
                "DOCS [<command-name> ...]", "    Return documentation details about multiple commands.",
                "GETKEYS <full-command>", "    Return the keys from a full command.",
                "HELP", "    Print this help.",
            ].map { .simple($0) }))
        default:
            call.reply(.error("ERR unknown subcommand or wrong number of arguments for '\(call.args.string(1))'. Try COMMAND HELP."))
        }
    }
}
