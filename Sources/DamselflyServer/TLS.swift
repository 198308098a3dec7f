import CTLS

/// The server's TLS settings made into one OpenSSL context at start-up
/// (certificate, key, CAs, the client-certificate rule, protocols, ciphers).
///
/// Invariant behind @unchecked Sendable: the context is never changed after
/// `init`, and OpenSSL allows sessions to be created from one `SSL_CTX` on
/// any thread at once.
final class TLSContext: @unchecked Sendable {
    let raw: OpaquePointer

    init(_ config: ServerConfig) throws(ServerError) {
        let auth: Int32
        switch config.tlsAuthClients.lowercased() {
        case "no": auth = 0
        case "optional": auth = 2
        default: auth = 1
        }
        var error = [CChar](repeating: 0, count: 512)
        guard let raw = dfly_tls_ctx_new(
            config.tlsCertFile, config.tlsKeyFile, config.tlsCaCertFile, config.tlsCaCertDir, auth,
            config.tlsProtocols, config.tlsCiphers, config.tlsCiphersuites, &error, error.count)
        else {
            throw ServerError.tls(String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        self.raw = raw
    }

    deinit { dfly_tls_ctx_free(raw) }
}

/// One connection's TLS session. The connection's loop does the socket I/O
/// as for any client: ciphertext that arrives is fed in and the plaintext
/// read out for the RESP parser; replies are encrypted into ciphertext that
/// the loop writes. Used only on the connection's loop (a TLS connection is
/// never migrated to another one).
final class TLSSession {
    private let raw: OpaquePointer
    private let context: TLSContext
    /// Replies written before the handshake finished (none in practice: a
    /// client sends its first command only after it); sent once it has.
    private var early: [UInt8] = []

    init?(_ context: TLSContext) {
        guard let raw = dfly_tls_new(context.raw) else { return nil }
        self.raw = raw
        self.context = context
    }

    deinit { dfly_tls_free(raw) }

    var isEstablished: Bool { dfly_tls_established(raw) != 0 }

    /// Feeds the peer's ciphertext and appends the plaintext it completes to
    /// `plain`. False once the session has failed (bad handshake, an
    /// unverifiable client certificate, an alert, the peer's close_notify).
    func receive(_ bytes: UnsafeRawBufferPointer, into plain: inout [UInt8]) -> Bool {
        guard dfly_tls_feed(raw, bytes.baseAddress, bytes.count) == 0 else { return false }
        let record = 16 * 1024  // TLS's largest record
        while true {
            let start = plain.count
            plain.append(contentsOf: repeatElement(0, count: record))
            let n = plain.withUnsafeMutableBytes { dfly_tls_read(raw, $0.baseAddress! + start, record) }
            plain.removeLast(record - max(0, Int(n)))
            if n <= 0 { return n == 0 }
        }
    }

    /// Encrypts `plain` (emptied, its capacity kept) into `cipher` with
    /// whatever the session has to send (handshake records included).
    /// False once the session has failed.
    func send(_ plain: inout [UInt8], into cipher: inout [UInt8]) -> Bool {
        if !plain.isEmpty {
            early.append(contentsOf: plain)
            plain.removeAll(keepingCapacity: true)
        }
        var sent = 0
        while sent < early.count {
            let n = early.withUnsafeBytes { dfly_tls_write(raw, $0.baseAddress! + sent, $0.count - sent) }
            if n < 0 { return false }
            if n == 0 { break }  // handshake not finished: keep the rest
            sent += Int(n)
        }
        if sent == early.count { early.removeAll() } else if sent > 0 { early.removeFirst(sent) }
        takeCiphertext(into: &cipher)
        return true
    }

    /// Appends what the session has to send to the peer.
    func takeCiphertext(into cipher: inout [UInt8]) {
        let pending = dfly_tls_pending(raw)
        guard pending > 0 else { return }
        let start = cipher.count
        cipher.append(contentsOf: repeatElement(0, count: pending))
        let n = cipher.withUnsafeMutableBytes { dfly_tls_take(raw, $0.baseAddress! + start, pending) }
        cipher.removeLast(pending - n)
    }

    var hasEarlyOutput: Bool { !early.isEmpty }
}
