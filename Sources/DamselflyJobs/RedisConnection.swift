import CDamselfly
import DamselflyRESP
import DamselflyTLS
import Glibc
import Synchronization

/// Where and how to connect: parsed from `redis://[user:password@]host:port[/db]`, or
/// `rediss://…` for TLS, with redis-py's query parameters for the certificates
/// (`?ssl_ca_certs=ca.crt&ssl_certfile=client.crt&ssl_keyfile=client.key&ssl_cert_reqs=none`).
public struct RedisConfig: Sendable, Equatable {
    public var host: String = "127.0.0.1"
    public var port: Int = 6379
    public var database: Int = 0
    public var username: String?
    public var password: String?
    /// Ask for RESP3 with `HELLO 3`; servers that refuse it are spoken to in RESP2.
    public var preferRESP3 = true
    /// TLS (`rediss://`): the CA file that verifies the server (empty: the system's),
    /// a client certificate and key (empty: none), and whether to verify at all.
    public var tls = false
    public var tlsCACertFile = ""
    public var tlsCertFile = ""
    public var tlsKeyFile = ""
    public var tlsVerify = true

    public init() {}

    /// Parses a Redis URL; `nil` when it is not one.
    public init?(url: String) {
        var rest = Substring(url)
        if rest.hasPrefix("redis://") {
            rest = rest.dropFirst(8)
        } else if rest.hasPrefix("rediss://") {
            rest = rest.dropFirst(9)
            tls = true
        } else {
            return nil
        }
        if let question = rest.firstIndex(of: "?") {
            for pair in rest[rest.index(after: question)...].split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { return nil }
                switch parts[0] {
                case "ssl_ca_certs": tlsCACertFile = parts[1]
                case "ssl_certfile": tlsCertFile = parts[1]
                case "ssl_keyfile": tlsKeyFile = parts[1]
                case "ssl_cert_reqs": tlsVerify = parts[1].lowercased() != "none"
                default: return nil
                }
            }
            rest = rest[..<question]
        }
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                let user = credentials[..<colon]
                username = user.isEmpty ? nil : String(user)
                password = String(credentials[credentials.index(after: colon)...])
            } else if !credentials.isEmpty {
                password = String(credentials)
            }
        }
        if let slash = rest.firstIndex(of: "/") {
            let db = rest[rest.index(after: slash)...]
            if !db.isEmpty {
                guard let n = Int(db) else { return nil }
                database = n
            }
            rest = rest[..<slash]
        }
        if let colon = rest.lastIndex(of: ":") {
            guard let p = Int(rest[rest.index(after: colon)...]) else { return nil }
            port = p
            rest = rest[..<colon]
        }
        if !rest.isEmpty { host = String(rest) }
    }

    public var url: String { "\(tls ? "rediss" : "redis")://\(host):\(port)/\(database)" }
}

/// What went wrong talking to the server.
public enum RedisError: Error, Sendable, CustomStringConvertible {
    case connect(String)
    case closed
    case io(Int32)
    case protocolError(String)
    /// An error reply (`-ERR ...`), where a single command's reply was asked for.
    case server(String)

    public var description: String {
        switch self {
        case .connect(let m): return "connect: \(m)"
        case .closed: return "connection closed by server"
        case .io(let e): return "I/O error \(e)"
        case .protocolError(let m): return "protocol error: \(m)"
        case .server(let m): return m
        }
    }
}

/// One persistent, pipelining connection to a server.
///
/// A connection serves one task at a time: ``RedisPool`` leases it out and takes it back, and
/// ``RedisConnection/send(_:)`` traps if two tasks ever use it at once (the invariant behind
/// `@unchecked Sendable`). Commands of one call are written in one `send` and their replies
/// read back in order, so a pipeline of N commands costs one round trip.
public final class RedisConnection: @unchecked Sendable {
    public let fd: Int32
    /// 3 after a successful `HELLO 3`, else 2.
    public private(set) var protocolVersion = 2
    /// Set after an I/O or protocol error: the pool drops the connection instead of reusing it.
    public private(set) var isBroken = false
    let reactor: IOReactor
    private let inUse = Atomic<Bool>(false)
    private var input: [UInt8] = []
    private var inputStart = 0
    private var output: [UInt8] = []
    /// recv's landing area, allocated once: only the bytes received are appended to `input`
    /// (growing `input` by a zeroed 16 KiB chunk on every recv, EAGAIN included, showed up at
    /// 4% of a worker's profile).
    private var scratch = [UInt8](repeating: 0, count: 16 * 1024)
    private var decoder = RESPReplyDecoder()
    /// The TLS session of a `rediss://` connection: `flush` encrypts, `fill` decrypts.
    private var tls: TLSSession?
    private var cipher: [UInt8] = []

    init(fd: Int32, reactor: IOReactor) {
        self.fd = fd
        self.reactor = reactor
        input.reserveCapacity(16 * 1024)
        output.reserveCapacity(16 * 1024)
        reactor.register(fd: fd)
    }

    deinit {
        reactor.unregister(fd: fd)
        Glibc.close(fd)
    }

    /// Opens a TCP connection and says hello: RESP3 if the server takes it, AUTH and SELECT
    /// as the configuration asks.
    public static func connect(_ config: RedisConfig, reactor: IOReactor = .shared) async throws -> RedisConnection {
        let fd = try openSocket(host: config.host, port: config.port)
        let connection = RedisConnection(fd: fd, reactor: reactor)
        if config.tls { try await connection.startTLS(config) }
        var authed = false
        if config.preferRESP3 {
            var hello = ["HELLO", "3"]
            if let password = config.password {
                hello += ["AUTH", config.username ?? "default", password]
            }
            let reply = try await connection.send([hello.map { Array($0.utf8) }])[0]
            if case .error = reply {
                connection.protocolVersion = 2
            } else {
                connection.protocolVersion = 3
                authed = true
            }
        }
        var setup: [[String]] = []
        if !authed, let password = config.password {
            setup.append(config.username.map { ["AUTH", $0, password] } ?? ["AUTH", password])
        }
        if config.database != 0 { setup.append(["SELECT", String(config.database)]) }
        if !setup.isEmpty {
            for reply in try await connection.send(setup.map { $0.map { Array($0.utf8) } }) {
                if case .error(let message) = reply { throw RedisError.connect(message) }
            }
        }
        return connection
    }

    static func openSocket(host: String, port: Int) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0, let first = result else {
            throw RedisError.connect("cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(result) }
        var lastErrno: Int32 = 0
        var info: UnsafeMutablePointer<addrinfo>? = first
        while let ai = info {
            let fd = socket(ai.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if fd >= 0 {
                if Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 {
                    dfly_prepare_client_socket(fd, 1, 0)
                    return fd
                }
                lastErrno = errno
                Glibc.close(fd)
            }
            info = ai.pointee.ai_next
        }
        throw RedisError.connect("\(host):\(port): \(String(cString: strerror(lastErrno)))")
    }

    // MARK: - Commands

    /// Sends commands in one write and returns their replies in order. Error replies are
    /// values here (`.error`), so one failed command does not hide the others' replies.
    public func send(_ commands: [[[UInt8]]]) async throws -> [RESPValue] {
        try await send(count: commands.count) { output in
            for command in commands { RESPEncodeCommand(command, into: &output) }
        }
    }

    /// The same for commands given as strings, encoded straight into the output buffer: no
    /// byte array per argument (a reliable fetch's batch has two commands per job, one
    /// carrying the whole payload).
    public func send(strings commands: [[String]]) async throws -> [RESPValue] {
        try await send(count: commands.count) { output in
            for command in commands { Self.encode(command, into: &output) }
        }
    }

    static func encode(_ args: [String], into buffer: inout [UInt8]) {
        buffer.append(UInt8(ascii: "*"))
        buffer.append(contentsOf: String(args.count).utf8)
        buffer.append(0x0D)
        buffer.append(0x0A)
        for arg in args {
            buffer.append(UInt8(ascii: "$"))
            buffer.append(contentsOf: String(arg.utf8.count).utf8)
            buffer.append(0x0D)
            buffer.append(0x0A)
            buffer.append(contentsOf: arg.utf8)
            buffer.append(0x0D)
            buffer.append(0x0A)
        }
    }

    private func send(count: Int, encode: (inout [UInt8]) -> Void) async throws -> [RESPValue] {
        guard inUse.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            preconditionFailure("RedisConnection used by two tasks at once")
        }
        defer { inUse.store(false, ordering: .releasing) }
        guard !isBroken else { throw RedisError.closed }
        let commands = count
        do {
            output.removeAll(keepingCapacity: true)
            encode(&output)
            try await flush()
            var replies: [RESPValue] = []
            replies.reserveCapacity(commands)
            while replies.count < commands {
                let reply = try await readReply()
                if case .push = reply { continue }  // RESP3 out-of-band data: not a reply
                replies.append(reply)
            }
            return replies
        } catch {
            isBroken = true
            throw error
        }
    }

    /// Marks the connection unusable (a caller gave up on it half-way through a reply).
    public func markBroken() { isBroken = true }

    /// The client side of the TLS handshake, before the first command.
    private func startTLS(_ config: RedisConfig) async throws {
        let context: TLSContext
        do {
            context = try TLSContext(
                clientWithCACertFile: config.tlsCACertFile, certFile: config.tlsCertFile, keyFile: config.tlsKeyFile,
                verify: config.tlsVerify)
        } catch {
            throw RedisError.connect("TLS: \(error.description)")
        }
        guard let session = TLSSession(client: context, host: config.host) else {
            throw RedisError.connect("TLS: cannot create a session")
        }
        tls = session
        var hello: [UInt8] = []
        guard session.start(into: &hello) else { throw RedisError.connect("TLS handshake failed") }
        try await sendRaw(hello)
        while !session.isEstablished {
            do {
                try await fill()
            } catch {
                throw RedisError.connect("TLS handshake with \(config.host):\(config.port) failed (\(error))")
            }
        }
    }

    private func flush() async throws {
        guard let tls else { return try await sendRaw(output) }
        cipher.removeAll(keepingCapacity: true)
        guard tls.send(&output, into: &cipher) else { throw RedisError.protocolError("TLS session failed") }
        try await sendRaw(cipher)
    }

    private func sendRaw(_ output: [UInt8]) async throws {
        var offset = 0
        while offset < output.count {
            let n = output.withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if n > 0 {
                offset += n
            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                await reactor.wait(fd: fd, writable: true)
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                throw RedisError.io(errno)
            }
        }
    }

    private func readReply() async throws -> RESPValue {
        while true {
            if inputStart < input.count {
                let decoded: (RESPValue, consumed: Int)?
                do {
                    decoded = try input.withUnsafeBytes { raw throws(RESPDecodeError) in
                        try decoder.decode(UnsafeRawBufferPointer(rebasing: raw[inputStart...]))
                    }
                } catch {
                    throw RedisError.protocolError((error as? RESPDecodeError)?.message ?? "\(error)")
                }
                if let (value, consumed) = decoded {
                    inputStart += consumed
                    if inputStart == input.count {
                        input.removeAll(keepingCapacity: true)
                        inputStart = 0
                    }
                    return value
                }
            }
            if inputStart > 0 {
                input.removeSubrange(0..<inputStart)
                inputStart = 0
            }
            try await fill()
        }
    }

    private func fill() async throws {
        while true {
            let n = scratch.withUnsafeMutableBytes { raw in Glibc.recv(fd, raw.baseAddress!, raw.count, 0) }
            let err = errno
            if n > 0, let tls {
                let before = input.count
                let handshaking = !tls.isEstablished
                let ok = scratch.withUnsafeBytes { tls.receive(UnsafeRawBufferPointer(rebasing: $0[0..<n]), into: &input) }
                cipher.removeAll(keepingCapacity: true)
                tls.takeCiphertext(into: &cipher)  // handshake records, key updates
                if !cipher.isEmpty { try await sendRaw(cipher) }
                guard ok else { throw RedisError.protocolError("TLS session failed") }
                // Back to the caller with plaintext, or with a handshake step taken
                // (startTLS decides); an established session's partial record or
                // session ticket alone needs more ciphertext.
                if input.count > before || handshaking { return }
                continue
            }
            if n > 0 {
                input.append(contentsOf: scratch[0..<n])
                return
            }
            if n == 0 { throw RedisError.closed }
            if err == EAGAIN || err == EWOULDBLOCK {
                await reactor.wait(fd: fd, writable: false)
            } else if err != EINTR {
                throw RedisError.io(err)
            }
        }
    }
}
