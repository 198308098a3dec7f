import DamselflyACL
import DamselflyRuntime
import DamselflyTransactions

/// What the server knows about one client connection. Lives on the
/// connection's loop; commands read and change it there.
public final class ClientState {
    public let id: Int
    public var database = 0
    public var protocolVersion = 2
    public var name = ""
    public var libraryName = ""
    public var libraryVersion = ""
    public var authenticated: Bool
    /// The ACL user this client runs as; nil for the server's own clients (journal
    /// replay), which may run anything, as Redis's clients without a user.
    public var user: ACLUserHandle?
    public var noEvict = false
    public var noTouch = false
    /// The replica's link to its master: its writes (and scripts) are never refused.
    public var isMaster = false
    /// Set by QUIT/CLIENT KILL: close after the pending replies are sent.
    public var closeRequested = false
    public var address = ""
    public var localAddress = ""
    /// Whether the peer is this machine (loopback or a Unix socket): Redis's
    /// rule for `enable-protected-configs local`.
    public var isLocal: Bool { Self.isLocal(address) }

    /// Whether an "ip:port" peer name is this machine.
    public static func isLocal(_ address: String) -> Bool {
        address.isEmpty || address.hasPrefix("127.") || address.hasPrefix("::1:") || address.hasPrefix("::ffff:127.")
    }
    public var createdAtMs: Int64 = 0
    /// When the last command arrived, on the monotonic clock: dispatch stamps it with the
    /// read that also starts the command's duration, so no wall-clock read per command.
    public var lastCommandAtNanos: UInt64 = 0
    /// The last command (CLIENT LIST's `cmd=`), kept as its spec: storing a
    /// name String per command cost a retain and a release of it. Unowned:
    /// every spec lives as long as its registry, which outlives every client.
    public unowned(unsafe) var lastCommandSpec: CommandSpec?
    /// `container|subcommand` when the last command had one; nil otherwise.
    public var lastSubcommandName: String?
    public var lastCommandName: String { lastSubcommandName ?? lastCommandSpec?.name ?? "NULL" }

    /// Stamps the last command without touching a String on the common path.
    @inlinable
    public func noteCommand(_ spec: CommandSpec, subcommandName: @autoclosure () -> String?) {
        lastCommandSpec = spec
        if spec.hasSubcommands {
            lastSubcommandName = subcommandName()
        } else if lastSubcommandName != nil {
            lastSubcommandName = nil
        }
    }
    public let loop: EventLoop

    /// Commands queued since MULTI; nil outside MULTI.
    public var multiQueue: [QueuedCommand]?
    /// A command failed to queue (unknown, wrong arity): EXEC must abort.
    public var multiFailed = false
    /// WATCH state: the token shards dirty, and where each watched key lives.
    public var watchToken: WatchToken?
    public var watchedKeys: [(shard: Int, database: Int, hash: UInt64)] = []
    /// Watched keys that existed at WATCH: if one is gone at EXEC (it
    /// expired: a write would have dirtied the token), EXEC aborts.
    public var watchedExisting: [(shard: Int, database: Int, key: [UInt8], hash: UInt64)] = []
    /// The view ``forScript()`` hands out, made at the first script.
    private var scriptView: ClientState?
    /// CLIENT TRACKING ON's mode; nil while tracking is off.
    public var tracking: TrackingMode?
    /// CLIENT CACHING YES/NO was given for the next command (or transaction).
    public var trackingCaching = false
    /// BCAST keys this client's command wrote, sent after its reply (made on first need).
    public var trackingBroadcasts: TrackingBroadcastBuffer?
    /// The waiter of a blocking command this client is parked on.
    public var blockedOn: BlockedClient?
    /// Set by the connection: closes it when its peer has gone without its
    /// loop hearing of it (``BlockedClientRegistry/checkPeers()``).
    public var checkPeer: (() -> Void)?
    /// Whether the connection is still there, for the threads that work on
    /// its behalf (set once by the connection when it closes; a migrated
    /// connection gets a fresh client, so a migration is not a close).
    public let life = ConnectionLife()

    /// The same client, owned by `loop` (connection migration): everything a
    /// command may have set is carried over.
    public func moved(to loop: EventLoop) -> ClientState {
        let copy = ClientState(id: id, loop: loop, authenticated: authenticated)
        copy.user = user
        copy.database = database
        copy.protocolVersion = protocolVersion
        copy.name = name
        copy.libraryName = libraryName
        copy.libraryVersion = libraryVersion
        copy.noEvict = noEvict
        copy.noTouch = noTouch
        copy.address = address
        copy.localAddress = localAddress
        copy.createdAtMs = createdAtMs
        copy.lastCommandAtNanos = lastCommandAtNanos
        copy.lastCommandSpec = lastCommandSpec
        copy.lastSubcommandName = lastSubcommandName
        return copy
    }

    /// The client as a script's `redis.call` sees it: a database of its own
    /// (a SELECT inside a script does not change the caller's, as in Redis 7)
    /// and the protocol the script asked for with `redis.setresp` (RESP2
    /// unless it did), not the connection's: reply shapes that depend on the
    /// protocol (ZPOPMAX with a count, ZRANGE WITHSCORES...) follow the script.
    ///
    /// One such view per client, reused by every script it runs (a script
    /// runs while its connection waits, so two never share it at once).
    public func forScript() -> ClientState {
        let copy = scriptView ?? ClientState(id: id, loop: loop, authenticated: authenticated)
        scriptView = copy
        copy.protocolVersion = 2
        copy.authenticated = authenticated
        copy.user = user
        copy.database = database
        copy.name = name
        copy.noEvict = noEvict
        copy.noTouch = noTouch
        copy.address = address
        copy.localAddress = localAddress
        return copy
    }

    public init(id: Int, loop: EventLoop, authenticated: Bool) {
        self.id = id
        self.loop = loop
        self.authenticated = authenticated
    }
}

/// How a client tracks keys (CLIENT TRACKING ON's options).
public struct TrackingMode: Sendable, Equatable {
    public var bcast = false
    public var optin = false
    public var optout = false
    public var noloop = false
    /// The client id invalidations go to (0: this client).
    public var redirect = 0
    /// BCAST prefixes (the empty prefix when none was given).
    public var prefixes: [[UInt8]] = []

    public init() {}
}

extension ClientState {
    /// Whether a read-only command run now leaves its keys in this client's
    /// cache: tracking on in the default mode, and OPTIN / OPTOUT as
    /// CLIENT CACHING says (Redis's `trackingRememberKeys`).
    public var remembersReads: Bool {
        guard let mode = tracking, !mode.bcast else { return false }
        if mode.optin && !trackingCaching { return false }
        if mode.optout && trackingCaching { return false }
        return true
    }
}

/// A command queued between MULTI and EXEC: its spec and a copy of its arguments.
public final class QueuedCommand {
    public let spec: CommandSpec
    public let arguments: [[UInt8]]

    public init(spec: CommandSpec, arguments: [[UInt8]]) {
        self.spec = spec
        self.arguments = arguments
    }

    /// The argument positions that are keys, from the spec (Redis's first/last/step).
    public var keyPositions: [Int] {
        guard spec.firstKey > 0 else { return [] }
        let last = spec.lastKey < 0 ? arguments.count + spec.lastKey : min(spec.lastKey, arguments.count - 1)
        guard spec.firstKey <= last else { return [] }
        return Array(stride(from: spec.firstKey, through: last, by: max(spec.keyStep, 1)))
    }
}
