import CTLS

/// Why a TLS context could not be made (OpenSSL's reason, or which setting is wrong).
public struct TLSSetupError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

/// An OpenSSL context made once: the server's (certificate, key, CAs, the
/// client-certificate rule, protocols, ciphers) or a client's (the CAs that
/// verify servers, an optional client certificate).
///
/// Invariant behind @unchecked Sendable: the context is never changed after
/// `init`, and OpenSSL allows sessions to be created from one `SSL_CTX` on
/// any thread at once.
public final class TLSContext: @unchecked Sendable {
    /// Client certificates a server asks for (Redis's `tls-auth-clients`).
    public enum ClientAuth: Int32, Sendable { case no = 0, yes = 1, optional = 2 }

    let raw: OpaquePointer
    let isClient: Bool

    /// A server context.
    public init(
        certFile: String, keyFile: String, keyFilePass: String = "", caCertFile: String = "", caCertDir: String = "",
        authClients: ClientAuth = .yes, protocols: String = "", ciphers: String = "", ciphersuites: String = "",
        preferServerCiphers: Bool = false
    ) throws(TLSSetupError) {
        var error = [CChar](repeating: 0, count: 512)
        guard let raw = keyFilePass.withCString({ pass in
            dfly_tls_ctx_new(
                certFile, keyFile, pass, caCertFile, caCertDir, authClients.rawValue, protocols, ciphers, ciphersuites,
                preferServerCiphers ? 1 : 0, &error, error.count)
        })
        else { throw TLSSetupError(description: Self.text(error)) }
        self.raw = raw
        self.isClient = false
    }

    /// A client context. Without `caCertFile` / `caCertDir` the system's CAs
    /// verify the server; `verify: false` skips that (tests, self-signed servers).
    public init(
        clientWithCACertFile caCertFile: String = "", caCertDir: String = "", certFile: String = "",
        keyFile: String = "", verify: Bool = true
    ) throws(TLSSetupError) {
        var error = [CChar](repeating: 0, count: 512)
        guard let raw = dfly_tls_client_ctx_new(
            caCertFile, caCertDir, certFile, keyFile, verify ? 1 : 0, &error, error.count)
        else { throw TLSSetupError(description: Self.text(error)) }
        self.raw = raw
        self.isClient = true
    }

    deinit { dfly_tls_ctx_free(raw) }

    static func text(_ chars: [CChar]) -> String {
        String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// One connection's TLS session over memory BIOs: whoever owns the socket does
/// the I/O, feeding ciphertext in (``receive(_:into:)``) and sending what
/// ``send(_:into:)`` and ``takeCiphertext(into:)`` hand out. OpenSSL never sees
/// a file descriptor. Used by one thread at a time (the connection's).
public final class TLSSession {
    private let raw: OpaquePointer
    private let context: TLSContext
    /// Plaintext written before the handshake finished; sent once it has.
    private var early: [UInt8] = []

    /// A server-side session (accepts the handshake).
    public init?(_ context: TLSContext) {
        guard !context.isClient, let raw = dfly_tls_new(context.raw) else { return nil }
        self.raw = raw
        self.context = context
    }

    /// A client-side session for `host` (SNI; the name or address the server's
    /// certificate must carry when verifying). ``start(into:)`` sends its hello.
    public init?(client context: TLSContext, host: String) {
        guard context.isClient, let raw = dfly_tls_new_client(context.raw, host) else { return nil }
        self.raw = raw
        self.context = context
    }

    deinit { dfly_tls_free(raw) }

    public var isEstablished: Bool { dfly_tls_established(raw) != 0 }

    /// The negotiated protocol and cipher ("TLSv1.3", "TLS_AES_256_GCM_SHA384"), once established.
    public var negotiated: (version: String, cipher: String) {
        (String(cString: dfly_tls_version(raw)), String(cString: dfly_tls_cipher(raw)))
    }

    /// A client's first flight (its ClientHello) into `cipher`. False once failed.
    public func start(into cipher: inout [UInt8]) -> Bool {
        var none: [UInt8] = []
        let ok = readPlain(into: &none)
        takeCiphertext(into: &cipher)
        return ok
    }

    /// Feeds the peer's ciphertext and appends the plaintext it completes to
    /// `plain`. False once the session has failed (bad handshake, an
    /// unverifiable certificate, an alert, the peer's close_notify).
    public func receive(_ bytes: UnsafeRawBufferPointer, into plain: inout [UInt8]) -> Bool {
        guard dfly_tls_feed(raw, bytes.baseAddress, bytes.count) == 0 else { return false }
        return readPlain(into: &plain)
    }

    private func readPlain(into plain: inout [UInt8]) -> Bool {
        let record = 16 * 1024  // TLS's largest record
        while true {
            // Plaintext never exceeds what is buffered, so room for that much is enough (a
            // small request costs a small copy, not a 16 KiB one), and once nothing is
            // buffered an established session has nothing to give: no extra SSL_read.
            let buffered = dfly_tls_readable(raw)
            if buffered == 0 && isEstablished { return true }
            let room = buffered > 0 ? min(record, buffered) : 64
            let start = plain.count
            plain.append(contentsOf: repeatElement(0, count: room))
            let n = plain.withUnsafeMutableBytes { dfly_tls_read(raw, $0.baseAddress! + start, room) }
            plain.removeLast(room - max(0, Int(n)))
            if n <= 0 { return n == 0 }
        }
    }

    /// Encrypts `plain` (emptied, its capacity kept) into `cipher` with
    /// whatever the session has to send (handshake records included).
    /// False once the session has failed.
    public func send(_ plain: inout [UInt8], into cipher: inout [UInt8]) -> Bool {
        if early.isEmpty && isEstablished {
            // The usual case: encrypt straight from the caller's buffer; what a
            // renegotiation in progress leaves over waits in `early`.
            guard let sent = encrypt(plain) else { return false }
            if sent < plain.count { early.append(contentsOf: plain[sent...]) }
        } else {
            early.append(contentsOf: plain)
            guard let sent = encrypt(early) else { return false }
            early.removeFirst(sent)
        }
        plain.removeAll(keepingCapacity: true)
        takeCiphertext(into: &cipher)
        return true
    }

    /// Feeds `bytes` to the session until it takes no more (the handshake
    /// still running) or all of them; the count taken, nil once failed.
    private func encrypt(_ bytes: [UInt8]) -> Int? {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { dfly_tls_write(raw, $0.baseAddress! + sent, $0.count - sent) }
            if n < 0 { return nil }
            if n == 0 { break }
            sent += Int(n)
        }
        return sent
    }

    /// Appends what the session has to send to the peer.
    public func takeCiphertext(into cipher: inout [UInt8]) {
        let pending = dfly_tls_pending(raw)
        guard pending > 0 else { return }
        let start = cipher.count
        cipher.append(contentsOf: repeatElement(0, count: pending))
        let n = cipher.withUnsafeMutableBytes { dfly_tls_take(raw, $0.baseAddress! + start, pending) }
        cipher.removeLast(pending - n)
    }

    /// Plaintext is waiting for the handshake to finish.
    public var hasEarlyOutput: Bool { !early.isEmpty }
}
