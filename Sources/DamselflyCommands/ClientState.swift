import DamselflyRuntime

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
    public var noEvict = false
    public var noTouch = false
    /// Set by QUIT/CLIENT KILL: close after the pending replies are sent.
    public var closeRequested = false
    public var address = ""
    public var localAddress = ""
    public var createdAtMs: Int64 = 0
    public var lastCommandAtMs: Int64 = 0
    public var lastCommandName = "NULL"
    public let loop: EventLoop

    public init(id: Int, loop: EventLoop, authenticated: Bool) {
        self.id = id
        self.loop = loop
        self.authenticated = authenticated
    }
}
