import DamselflyTLS
import NIOCore
import NIOEmbedded
import NIOSSL

#if canImport(Glibc)
import Glibc
#endif

/// Both ends of a TLS connection in one process, bytes handed over in memory, so
/// what is measured is the library's work (and, for swift-nio-ssl, the NIO handler
/// around it) with no socket and no scheduler: process CPU time per operation, both
/// ends together.
protocol Pair {
    init(cert: String, key: String) throws
    /// A full handshake on a fresh pair of sessions.
    mutating func handshake() throws
    /// The client sends `request`, the server reads it and answers `reply`, the client reads that.
    mutating func roundTrip(_ request: [UInt8], _ reply: [UInt8]) throws
    var negotiated: String { get }
}

struct Failure: Error, CustomStringConvertible { let description: String }

/// Damselfly's session (DamselflyTLS / CTLS over Debian's OpenSSL).
struct OpenSSLPair: Pair {
    let serverContext: TLSContext
    let clientContext: TLSContext
    var server: TLSSession
    var client: TLSSession
    var toServer: [UInt8] = []
    var toClient: [UInt8] = []
    var plain: [UInt8] = []

    init(cert: String, key: String) throws {
        // TLS 1.3 with the suite BoringSSL picks on AES-NI hardware, so both do the same cipher.
        serverContext = try TLSContext(certFile: cert, keyFile: key, authClients: .no, ciphersuites: "TLS_AES_128_GCM_SHA256")
        clientContext = try TLSContext(clientWithCACertFile: "", verify: false)
        server = TLSSession(serverContext)!
        client = TLSSession(client: clientContext, host: "127.0.0.1")!
        try handshake()
    }

    mutating func handshake() throws {
        server = TLSSession(serverContext)!
        client = TLSSession(client: clientContext, host: "127.0.0.1")!
        toServer.removeAll(keepingCapacity: true)
        guard client.start(into: &toServer) else { throw Failure(description: "client hello") }
        var rounds = 0
        while !toServer.isEmpty || !toClient.isEmpty || !(server.isEstablished && client.isEstablished) {
            rounds += 1
            if rounds > 20 { throw Failure(description: "handshake did not finish") }
            if !toServer.isEmpty {
                guard toServer.withUnsafeBytes({ server.receive($0, into: &plain) }) else { throw Failure(description: "server") }
                toServer.removeAll(keepingCapacity: true)
                server.takeCiphertext(into: &toClient)
            }
            if !toClient.isEmpty {
                guard toClient.withUnsafeBytes({ client.receive($0, into: &plain) }) else { throw Failure(description: "client") }
                toClient.removeAll(keepingCapacity: true)
                client.takeCiphertext(into: &toServer)
            }
        }
    }

    mutating func roundTrip(_ request: [UInt8], _ reply: [UInt8]) throws {
        var out = request
        guard client.send(&out, into: &toServer) else { throw Failure(description: "client send") }
        plain.removeAll(keepingCapacity: true)
        guard toServer.withUnsafeBytes({ server.receive($0, into: &plain) }), plain.count == request.count else {
            throw Failure(description: "server read \(plain.count)")
        }
        toServer.removeAll(keepingCapacity: true)
        out = reply
        guard server.send(&out, into: &toClient) else { throw Failure(description: "server send") }
        plain.removeAll(keepingCapacity: true)
        guard toClient.withUnsafeBytes({ client.receive($0, into: &plain) }), plain.count == reply.count else {
            throw Failure(description: "client read \(plain.count)")
        }
        toClient.removeAll(keepingCapacity: true)
    }

    var negotiated: String { "OpenSSL \(server.negotiated.version) \(server.negotiated.cipher)" }
}

/// swift-nio-ssl: BoringSSL inside NIOSSLServerHandler / NIOSSLClientHandler on two
/// EmbeddedChannels.
struct BoringSSLPair: Pair {
    let serverContext: NIOSSLContext
    let clientContext: NIOSSLContext
    var server = EmbeddedChannel()
    var client = EmbeddedChannel()

    init(cert: String, key: String) throws {
        let chain = try NIOSSLCertificate.fromPEMFile(cert).map { NIOSSLCertificateSource.certificate($0) }
        let serverConfig = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain, privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
        var clientConfig = TLSConfiguration.makeClientConfiguration()
        clientConfig.certificateVerification = .none
        serverContext = try NIOSSLContext(configuration: serverConfig)
        clientContext = try NIOSSLContext(configuration: clientConfig)
        try handshake()
    }

    mutating func handshake() throws {
        // The old pair is dropped, not finished: finish() closes through NIOSSL, which
        // waits for the peer's close_notify on a clock the embedded loop never advances.
        server = EmbeddedChannel()
        client = EmbeddedChannel()
        try server.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: serverContext))
        try client.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: clientContext, serverHostname: nil))
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 6379)
        server.pipeline.fireChannelActive()
        try client.connect(to: address).wait()
        try shuttle()
    }

    /// Moves ciphertext both ways until neither side has anything to send.
    func shuttle() throws {
        var moved = true
        while moved {
            moved = false
            while let bytes = try client.readOutbound(as: ByteBuffer.self) {
                try server.writeInbound(bytes)
                moved = true
            }
            while let bytes = try server.readOutbound(as: ByteBuffer.self) {
                try client.writeInbound(bytes)
                moved = true
            }
        }
    }

    func readAll(_ channel: EmbeddedChannel) throws -> Int {
        var total = 0
        while let bytes = try channel.readInbound(as: ByteBuffer.self) { total += bytes.readableBytes }
        return total
    }

    mutating func roundTrip(_ request: [UInt8], _ reply: [UInt8]) throws {
        try client.writeAndFlush(client.allocator.buffer(bytes: request)).wait()
        while let bytes = try client.readOutbound(as: ByteBuffer.self) { try server.writeInbound(bytes) }
        guard try readAll(server) == request.count else { throw Failure(description: "server read") }
        try server.writeAndFlush(server.allocator.buffer(bytes: reply)).wait()
        while let bytes = try server.readOutbound(as: ByteBuffer.self) { try client.writeInbound(bytes) }
        guard try readAll(client) == reply.count else { throw Failure(description: "client read") }
    }

    var negotiated: String { "BoringSSL (swift-nio-ssl) TLSv1.3" }
}

func cpuNanos() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
    return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
}

/// CPU ns per call of `body`, the best of `rounds` rounds of `count` calls (the least
/// disturbed by other processes on a shared machine).
func measure(count: Int, rounds: Int = 5, _ body: () throws -> Void) rethrows -> Double {
    var best = Double.infinity
    for _ in 0..<rounds {
        let start = cpuNanos()
        for _ in 0..<count { try body() }
        best = min(best, Double(cpuNanos() - start) / Double(count))
    }
    return best
}

let arguments = CommandLine.arguments
guard arguments.count >= 3 else {
    print("usage: tls-library-bench CERT KEY [scale]")
    exit(2)
}
let scale = arguments.count > 3 ? Int(arguments[3]) ?? 1 : 1
let set = Array("*3\r\n$3\r\nSET\r\n$16\r\nkey:000000012345\r\n$32\r\n\(String(repeating: "v", count: 32))\r\n".utf8)
let ok = Array("+OK\r\n".utf8)
let get16 = Array(repeating: Array("*2\r\n$3\r\nGET\r\n$16\r\nkey:000000012345\r\n".utf8), count: 16).flatMap { $0 }
let value16 = Array(repeating: Array("$32\r\n\(String(repeating: "v", count: 32))\r\n".utf8), count: 16).flatMap { $0 }
let get = Array("*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n".utf8)
let big = Array("$16384\r\n".utf8) + Array(repeating: UInt8(ascii: "x"), count: 16384) + Array("\r\n".utf8)

func run<P: Pair>(_ type: P.Type, cert: String, key: String) throws {
    var pair = try P(cert: cert, key: key)
    let handshake = try measure(count: 200 * scale) { try pair.handshake() }
    try pair.handshake()
    let p1 = try measure(count: 20_000 * scale) { try pair.roundTrip(set, ok) }
    let p16 = try measure(count: 5_000 * scale) { try pair.roundTrip(get16, value16) }
    let large = try measure(count: 2_000 * scale) { try pair.roundTrip(get, big) }
    let handshakeTenths = Int((handshake / 100).rounded())
    print("\(pair.negotiated)\thandshake_us=\(handshakeTenths / 10).\(handshakeTenths % 10)"
        + "\tset_p1_ns=\(Int(p1))\tget_p16_ns_per_cmd=\(Int(p16 / 16))\tget_16k_ns=\(Int(large))")
}

do {
    try run(OpenSSLPair.self, cert: arguments[1], key: arguments[2])
    try run(BoringSSLPair.self, cert: arguments[1], key: arguments[2])
} catch {
    print("failed: \(error)")
    exit(1)
}
