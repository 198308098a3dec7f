import DamselflyACL
import DamselflyCommands
import DamselflyRuntime
import Glibc

/// ACL: Redis 7.0's users, rules and log (the model lives in `DamselflyACL`). Like
/// the other connection-level commands it never enters the transaction framework:
/// users are server-wide state behind ``ACLRegistry``'s lock.
enum AclFamily {
    static func register(_ r: CommandRegistry, server: Server) {
        r.register("acl", arity: -2, flags: [.admin, .noscript, .loading, .stale], group: "server") { call in
            acl(call, server: server)
        }
        server.engine.clientDescriber.withLock { $0 = { [unowned server] client in ConnectionFamily.describe(client, on: server, nil) } }
    }

    /// The NOPERM text of a refused call, Redis 7.0's words.
    static func noPermission(_ refusal: ACLRefusal) -> String {
        switch refusal.denial {
        case .command: return "NOPERM this user has no permissions to run the '\(refusal.commandName)' command"
        case .key: return "NOPERM this user has no permissions to access one of the keys used as arguments"
        case .channel: return "NOPERM this user has no permissions to access one of the channels used as arguments"
        }
    }

    static func acl(_ call: CommandCall, server: Server) {
        let sub = call.args.string(1).lowercased()
        guard let id = ACLCommandTable.id("acl|" + sub) else {
            return call.reply(.error("ERR unknown subcommand '\(String(call.args.string(1).prefix(128)))'. Try ACL HELP."))
        }
        let entry = ACLCommandTable.entries[id]
        let argc = call.args.count
        guard entry.arity >= 0 ? argc == entry.arity : argc >= -entry.arity else {
            return call.reply(.error("ERR wrong number of arguments for '\(entry.name)' command"))
        }
        let forms: [String: ClosedRange<Int>] = [
            "getuser": 3...3, "list": 2...2, "users": 2...2, "whoami": 2...2, "cat": 2...3, "genpass": 2...3,
            "log": 2...3, "help": 2...2,
        ]
        let fileless = (sub == "load" || sub == "save") && server.config.aclfile.isEmpty
        if let form = forms[sub] ?? ((sub == "load" || sub == "save") && !fileless ? 2...2 : nil), !form.contains(argc) {
            // Redis's aclCommand answers a form it does not take so.
            return call.reply(.error("ERR unknown subcommand or wrong number of arguments for '\(String(call.args.string(1).prefix(128)))'. Try ACL HELP."))
        }
        let registry = call.engine.acl
        switch sub {
        case "setuser":
            let name = call.args.string(2)
            if ACLSelector.hasSpaces(call.args.bytes(2)) {
                return call.reply(.error("ERR Usernames can't contain spaces or null characters"))
            }
            switch registry.setUser(name, rules: (3..<argc).map { call.args.bytes($0) }) {
            case .failure(let error): call.reply(.error(error.message))
            case .success(let old):
                guard let old, let handle = registry.handle(name) else { return call.reply(.ok) }
                killSubscribersLosingChannels(handle, old: old, call: call, server: server)
            }
        case "deluser":
            let names = (2..<argc).map { call.args.string($0) }
            if names.contains("default") { return call.reply(.error("ERR The 'default' user cannot be removed")) }
            let removed = registry.deleteUsers(names)
            killClients(of: removed, call: call, server: server) { call.reply(.integer(removed.count)) }
        case "getuser":
            guard let user = registry.handle(call.args.string(2))?.user else { return call.reply(.null) }
            var fields: [(Reply, Reply)] = [
                (.bulkString("flags"), .set(user.flags.map { Reply.bulkString($0) })),
                (.bulkString("passwords"), .array(user.passwords.map { Reply.bulkString($0) })),
            ]
            fields += describe(user.root)
            fields.append((.bulkString("selectors"), .array(user.selectors.dropFirst().map { Reply.map(describe($0)) })))
            call.reply(.map(fields))
        case "list", "users":
            let users = registry.allUsers
            call.reply(.array(users.map { Reply.bulkString(sub == "users" ? $0.name : "user \($0.name) \($0.description)") }))
        case "whoami":
            call.reply(.bulkString(call.client.user?.name ?? "default"))
        case "load" where server.config.aclfile.isEmpty, "save" where server.config.aclfile.isEmpty:
            call.reply(.error("ERR This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration."))
        case "load":
            switch ACLFile.load(server.config.aclfile) {
            case .failure(let error): call.reply(.error("ERR " + error.message))
            case .success(let users):
                let changed = registry.replaceAll(users)
                killClients(of: changed, call: call, server: server) { call.reply(.ok) }
            }
        case "save":
            if ACLFile.save(registry.allUsers, to: server.config.aclfile) {
                call.reply(.ok)
            } else {
                call.reply(.error("ERR There was an error trying to save the ACLs. Please check the server logs for more information"))
            }
        case "cat":
            if argc == 2 { return call.reply(.array(ACLCategory.allCases.map { Reply.bulkString($0.name) })) }
            guard let category = ACLCategory.named(call.args.string(2)) else {
                return call.reply(.error("ERR Unknown category '\(String(call.args.string(2).prefix(128)))'"))
            }
            call.reply(.array(ACLCommandTable.members(of: category).map { Reply.bulkString($0) }))
        case "genpass":
            var bits = 256
            if argc == 3 {
                guard let n = call.integer(2) else { return call.reply(.notInteger) }
                guard n > 0 && n <= 4096 else {
                    return call.reply(.error("ERR ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096"))
                }
                bits = Int(n)
            }
            let digits = Array("0123456789abcdef".utf8)
            var rng = SystemRandomNumberGenerator()
            call.reply(.bulk((0..<(bits + 3) / 4).map { _ in digits[Int(rng.next() & 15)] }))
        case "log":
            var count = 10
            if argc == 3 {
                if call.isArg(2, "reset") {
                    registry.resetLog()
                    return call.reply(.ok)
                }
                guard let n = call.integer(2) else { return call.reply(.notInteger) }
                count = max(0, Int(n))
            }
            let now = Clock.wallMillis()
            call.reply(.array(registry.logEntries(count).map { e -> Reply in
                Reply.map([
                    (.bulkString("count"), .integer(e.count)),
                    (.bulkString("reason"), .bulkString(e.reason.rawValue)),
                    (.bulkString("context"), .bulkString(e.context.rawValue)),
                    (.bulkString("object"), .bulkString(e.object)),
                    (.bulkString("username"), .bulkString(e.username)),
                    (.bulkString("age-seconds"), .double(Double(now - e.createdMs) / 1000)),
                    (.bulkString("client-info"), .bulkString(e.clientInfo)),
                ])
            }))
        case "dryrun":
            dryRun(call, registry: registry)
        case "help":
            call.reply(.array(help.map { .simple($0) }))
        default:
            call.reply(.error("ERR unknown subcommand '\(String(call.args.string(1).prefix(128)))'. Try ACL HELP."))
        }
    }

    /// The `commands` / `keys` / `channels` fields of ACL GETUSER for one selector.
    static func describe(_ s: ACLSelector) -> [(Reply, Reply)] {
        [
            (.bulkString("commands"), .bulkString(s.describeCommands())),
            (.bulkString("keys"), .bulkString(s.keysDescription)),
            (.bulkString("channels"), .bulkString(s.channelsDescription)),
        ]
    }

    /// ACL DRYRUN user command [arg...]: would the user be allowed to run it? Nothing runs
    /// and nothing is logged.
    static func dryRun(_ call: CommandCall, registry: ACLRegistry) {
        let name = call.args.string(2)
        guard let user = registry.handle(name)?.user else { return call.reply(.error("ERR User '\(name)' not found")) }
        let args = (3..<call.args.count).map { call.args.bytes($0) }
        let commandName = call.args.string(3).lowercased()
        guard var id = ACLCommandTable.id(commandName) else {
            return call.reply(.error("ERR Command '\(call.args.string(3))' not found"))
        }
        if !ACLCommandTable.subcommands[id].isEmpty && args.count > 1 {
            guard let sub = ACLCommandTable.ids[commandName + "|" + String(decoding: args[1], as: UTF8.self).lowercased()] else {
                return call.reply(.error("ERR Command '\(call.args.string(3))' not found"))
            }
            id = sub
        }
        let entry = ACLCommandTable.entries[id]
        guard entry.arity >= 0 ? args.count == entry.arity : args.count >= -entry.arity else {
            return call.reply(.error("ERR wrong number of arguments for '\(entry.name)' command"))
        }
        switch user.check(id, args) {
        case nil: call.reply(.ok)
        case .command?: call.reply(.bulkString("This user has no permissions to run the '\(entry.name)' command"))
        case .key(let p)?: call.reply(.bulkString("This user has no permissions to access the '\(String(decoding: args[p], as: UTF8.self))' key"))
        case .channel(let p)?: call.reply(.bulkString("This user has no permissions to access the '\(String(decoding: args[p], as: UTF8.self))' channel"))
        }
    }

    /// Closes every connection authenticated as one of `handles` (ACL DELUSER, ACL LOAD),
    /// the caller's own after its reply, as Redis does; then `done`.
    static func killClients(of handles: [ACLUserHandle], call: CommandCall, server: Server, done: @escaping () -> Void) {
        guard !handles.isEmpty else { return done() }
        let ids = Set(handles.map { ObjectIdentifier($0) })
        let me = call.client.id
        server.gatherLoops(from: call.loop, { loop -> Int in
            for connection in server.connections(on: loop) {
                guard let user = connection.client.user, ids.contains(ObjectIdentifier(user)) else { continue }
                if connection.client.id == me { connection.client.closeRequested = true } else { connection.kill() }
            }
            return 0
        }, done: { _ in done() })
    }

    /// ACL SETUSER that takes channels away closes that user's subscribers to them
    /// (Redis's ACLKillPubsubClientsIfNeeded); then replies OK.
    static func killSubscribersLosingChannels(_ handle: ACLUserHandle, old: ACLUser, call: CommandCall, server: Server) {
        let user = handle.user
        guard !user.selectors.contains(where: { $0.allChannels }) else { return call.reply(.ok) }
        server.gatherLoops(from: call.loop, { loop -> Int in
            for connection in server.connections(on: loop) where connection.client.user === handle {
                let lost = connection.channels.contains { !user.allowsChannel($0, isPattern: false) }
                    || connection.patterns.contains { !user.allowsChannel($0, isPattern: true) }
                if lost { connection.kill() }
            }
            return 0
        }, done: { _ in call.reply(.ok) })
    }

    /// EXEC's text for a queued command the user may no longer run (Redis's multi.c).
    static func execRefusal(_ refusal: ACLRefusal) -> String {
        let reason: String
        switch refusal.denial {
        case .command: reason = "no permission to execute the command or subcommand"
        case .key: reason = "no permission to touch the specified keys"
        case .channel: reason = "no permission to access one of the channels used as arguments"
        }
        return "NOPERM ACLs rules changed between the moment the transaction was accumulated and the EXEC call. This command is no longer allowed for the following reason: " + reason
    }

    static let help = [
        "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CAT [<category>]",
        "    List all commands that belong to <category>, or all command categories",
        "    when no category is specified.",
        "DELUSER <username> [<username> ...]",
        "    Delete a list of users.",
        "DRYRUN <username> <command> [<arg> ...]",
        "    Returns whether the user can execute the given command without executing the command.",
        "GETUSER <username>",
        "    Get the user's details.",
        "GENPASS [<bits>]",
        "    Generate a secure 256-bit user password. The optional `bits` argument can",
        "    be used to specify a different size.",
        "LIST",
        "    Show users details in config file format.",
        "LOAD",
        "    Reload users from the ACL file.",
        "LOG [<count> | RESET]",
        "    Show the ACL log entries.",
        "SAVE",
        "    Save the current config to the ACL file.",
        "SETUSER <username> <attribute> [<attribute> ...]",
        "    Create or modify a user with the specified attributes.",
        "USERS",
        "    List all the registered usernames.",
        "WHOAMI",
        "    Return the current connection username.",
        "HELP",
        "    Prints this help.",
    ]
}

/// The aclfile: one `user <name> <rules...>` line per user, as ACL LIST writes them.
enum ACLFile {
    struct LoadError: Error { let message: String }

    /// Every user of the file, or the errors Redis 7.0 reports for it (its texts: the
    /// file and line, then what was wrong), in which case nothing is applied. A file
    /// without a `default` user gives a fresh one (on, nopass, everything).
    static func load(_ path: String) -> Result<[ACLUser], LoadError> {
        guard let file = fopen(path, "r") else {
            return .failure(LoadError(message: "Error loading ACLs, opening file '\(path)': \(String(cString: strerror(errno)))"))
        }
        defer { fclose(file) }
        var text: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, file)
            if n <= 0 { break }
            text += buffer[0..<n]
        }
        let blank: (UInt8) -> Bool = { $0 == 32 || $0 == 9 || $0 == 13 || $0 == 10 }
        var users: [ACLUser] = []
        var seen = Set<String>()
        var errors = ""
        for (index, rawLine) in text.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.drop(while: blank).reversed().drop(while: blank).reversed()
            if line.isEmpty { continue }
            let number = index + 1
            let words = Array(line).split(separator: 32, omittingEmptySubsequences: false).map(Array.init)
            guard words.count >= 2, words[0] == Array("user".utf8) else {
                errors += "\(path):\(number) should start with user keyword followed by the username. "
                continue
            }
            let name = String(decoding: words[1], as: UTF8.self)
            if ACLSelector.hasSpaces(words[1]) {
                errors += "'\(path):\(number): username '\(name)' contains invalid characters. "
                continue
            }
            guard seen.insert(name).inserted else {
                errors += "WARNING: Duplicate user '\(name)' found on line \(number). "
                continue
            }
            let (merged, unmatched) = ACLUser.mergeSelectorArguments(Array(words[2...]))
            if unmatched != nil {
                errors += "\(path):\(number): Unmatched parenthesis in selector definition."
                continue
            }
            var user = ACLUser(name: name)
            var syntaxError = false
            for op in merged {
                do throws(ACLRuleError) { try user.apply(op) } catch {
                    if error == .unknownName {
                        errors += "\(path):\(number): Error in applying operation '\(String(decoding: op, as: UTF8.self))': \(error.message). "
                    } else if !syntaxError {
                        errors += "\(path):\(number): \(error.message). "
                        syntaxError = true
                    }
                }
            }
            users.append(user)
        }
        if !errors.isEmpty {
            return .failure(LoadError(message: errors + "WARNING: ACL errors detected, no change to the previously active ACL rules was performed"))
        }
        if !seen.contains("default") { users.append(ACLUser.makeDefault()) }
        return .success(users)
    }

    /// Writes every user to a temporary file and renames it over `path`.
    static func save(_ users: [ACLUser], to path: String) -> Bool {
        let text = users.map { "user \($0.name) \($0.description)\n" }.joined()
        return DurableFile.replace(path, with: Array(text.utf8), temp: path + ".tmp-\(getpid())")
    }
}
