import DamselflyACL
import DamselflyRESP
import DamselflyRuntime
import Synchronization

extension CommandArguments: ACLArguments {}

/// A refused call: why, and the (sub)command's full name for the error text.
public struct ACLRefusal {
    public let denial: ACLDenial
    public let commandName: String
}

extension CommandSpec {
    /// The table id of the (sub)command this call runs, nil when Redis's table lacks
    /// it; `.unknownSubcommand` when a container is called with a subcommand Redis does
    /// not have (the command's own handler answers that, as Redis does before ACL).
    func aclID(_ args: CommandArguments) -> (id: Int?, unknownSubcommand: Bool) {
        guard let id = aclCommandID else { return (nil, false) }
        guard !ACLCommandTable.subcommands[id].isEmpty else { return (id, false) }
        guard args.count > 1 else { return (id, false) }
        let sub = ACLCommandTable.id(command: id, firstArgument: args.bytes(1))
        return sub == id ? (id, true) : (sub, false)
    }
}

extension Engine {
    /// Checks one call of a restricted user (the caller has read the handle's
    /// `unrestricted` flag) and logs a refusal in ACL LOG; nil when allowed.
    ///
    /// Runs on the connection's thread, where the arguments are parsed: the key
    /// positions come from Redis's key specs, so no shard is asked.
    public func aclRefusal(_ client: ClientState, _ user: ACLUserHandle, _ spec: CommandSpec, _ args: CommandArguments,
                           context: ACLLogEntry.Context) -> ACLRefusal? {
        let (id, unknownSubcommand) = spec.aclID(args)
        if unknownSubcommand { return nil }
        guard let denial = user.user.check(id, args) else { return nil }
        let name = id.map { ACLCommandTable.entries[$0].name } ?? spec.name
        let object: String
        let reason: ACLLogEntry.Reason
        switch denial {
        case .command: object = name; reason = .command
        case .key(let p): object = args.string(p); reason = .key
        case .channel(let p): object = args.string(p); reason = .channel
        }
        aclLog(.init(reason: reason, context: context, object: object, username: user.name), client: client)
        return ACLRefusal(denial: denial, commandName: name)
    }

    /// What ACL LOG records about a refusal, the client aside.
    public struct ACLLogEvent {
        public let reason: ACLLogEntry.Reason
        public let context: ACLLogEntry.Context
        public let object: String
        public let username: String
        public init(reason: ACLLogEntry.Reason, context: ACLLogEntry.Context, object: String, username: String) {
            self.reason = reason
            self.context = context
            self.object = object
            self.username = username
        }
    }

    public func aclLog(_ event: ACLLogEvent, client: ClientState) {
        let info = clientDescriber.withLock { $0 }?(client) ?? "id=\(client.id)"
        acl.record(event.reason, context: event.context, object: event.object, username: event.username,
                   clientInfo: info, nowMs: Clock.wallMillis())
    }

    /// Whether a new connection starts authenticated: the default user is on and nopass.
    public var defaultUserNeedsNoAuth: Bool {
        let user = acl.defaultUser.user
        return user.noPass && user.enabled
    }
}
