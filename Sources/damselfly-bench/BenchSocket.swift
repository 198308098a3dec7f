import CDamselfly
import DamselflyRESP
import Glibc

/// Plain TCP plumbing for the generator: a blocking connect and handshake, then the
/// socket is switched to non-blocking for the measured phase (driven by epoll).
enum BenchSocket {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Connects to `host:port` (numeric address or name), with TCP_NODELAY; blocking.
    static func connect(host: String, port: Int) throws(Failure) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>? = nil
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            throw Failure(description: "cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }
        var lastErrno: Int32 = 0
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let ai = cursor {
            cursor = ai.pointee.ai_next
            let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), ai.pointee.ai_protocol)
            if fd < 0 { lastErrno = errno; continue }
            if Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 {
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                return fd
            }
            lastErrno = errno
            close(fd)
        }
        throw Failure(description: "cannot connect to \(host):\(port): \(String(cString: strerror(lastErrno)))")
    }

    static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }

    /// Writes all of `bytes` on a blocking socket.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(Failure) {
        var offset = 0
        while offset < bytes.count {
            let n = send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(description: "send: \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }

    /// A blocking request/response exchange: sends `commands` (already encoded) and
    /// reads `replies` complete replies; returns how many were errors and the last reply's bytes.
    @discardableResult
    static func exchange(_ fd: Int32, _ commands: [UInt8], replies: Int) throws(Failure) -> (errors: Int, last: [UInt8]) {
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: max(commands.count, 1), alignment: 8)
        defer { out.deallocate() }
        out.copyBytes(from: commands)
        try writeAll(fd, UnsafeRawBufferPointer(rebasing: out[0..<commands.count]))
        var capacity = 64 * 1024
        var buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
        defer { buffer.deallocate() }
        var have = 0
        var seen = 0
        var errors = 0
        var last: [UInt8] = []
        while seen < replies {
            if have == capacity {
                let bigger = UnsafeMutableRawPointer.allocate(byteCount: capacity * 2, alignment: 8)
                bigger.copyMemory(from: buffer, byteCount: have)
                buffer.deallocate()
                buffer = bigger
                capacity *= 2
            }
            let n = recv(fd, buffer + have, capacity - have, 0)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw Failure(description: "connection closed by server") }
            have += n
            var offset = 0
            while seen < replies {
                let step: (consumed: Int, isError: Bool)?
                do {
                    step = try RESPSkipReply(UnsafeRawBufferPointer(start: buffer + offset, count: have - offset))
                } catch {
                    throw Failure(description: "bad reply at byte \(error.offset): \(error.message)")
                }
                guard let (consumed, isError) = step else { break }
                if isError { errors += 1 }
                if seen == replies - 1 {
                    last = Array(UnsafeRawBufferPointer(start: buffer + offset, count: consumed))
                }
                offset += consumed
                seen += 1
            }
            if offset > 0 {
                memmove(buffer, buffer + offset, have - offset)
                have -= offset
            }
        }
        return (errors, last)
    }

    /// Sends `HELLO 3` when RESP3 is asked for; fails when the server refuses it.
    static func handshake(_ fd: Int32, protocolVersion: Int) throws(Failure) {
        guard protocolVersion == 3 else { return }
        var hello: [UInt8] = []
        RESPEncodeCommand([Array("HELLO".utf8), Array("3".utf8)], into: &hello)
        let (errors, last) = try exchange(fd, hello, replies: 1)
        if errors > 0 {
            throw Failure(description: "HELLO 3 refused: \(String(decoding: last.prefix(200), as: UTF8.self))")
        }
    }
}

/// A connection to the server of `options` with its handshake; exits the tool on failure.
func connectOrExit(_ options: BenchOptions) -> Int32 {
    do {
        let fd = try BenchSocket.connect(host: options.host, port: options.port)
        try BenchSocket.handshake(fd, protocolVersion: options.protocolVersion)
        return fd
    } catch {
        writeStderr("damselfly-bench: \(error)\n")
        exit(1)
    }
}

/// A small, fast PRNG (wyrand); one per thread, no locks.
struct WyRand {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    @inline(__always)
    mutating func next() -> UInt64 {
        state &+= 0xA076_1D64_78BD_642F
        let product = state.multipliedFullWidth(by: state ^ 0xE703_7ED1_A0B4_28DB)
        return product.high ^ product.low
    }

    /// Uniform in `0..<bound` (Lemire's multiply-shift; the bias is negligible here).
    @inline(__always)
    mutating func next(below bound: UInt64) -> UInt64 {
        next().multipliedFullWidth(by: bound).high
    }

    /// Uniform in (0, 1].
    @inline(__always)
    mutating func unit() -> Double {
        Double((next() >> 11) + 1) * (1.0 / 9_007_199_254_740_992.0)
    }
}

/// A joinable pthread running `body` (no Swift concurrency, no Dispatch).
enum BenchThread {
    private final class Start {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    static func spawn(name: String, _ body: @escaping () -> Void) -> pthread_t {
        let context = Unmanaged.passRetained(Start {
            dfly_set_thread_name(name)
            body()
        }).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, context)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        return thread
    }

    static func join(_ thread: pthread_t) {
        pthread_join(thread, nil)
    }
}

@inline(__always)
func monotonicNanos() -> UInt64 { dfly_monotonic_ns() }
