import DamselflyRuntime
import Glibc
import Synchronization
import Testing

/// Records what a loop delivers to a socket handler (called on the loop's
/// thread, read by the test thread). Under a pthread mutex, not
/// `Synchronization.Mutex`: ThreadSanitizer sees pthread's ordering, and
/// reported the test thread's read of what the loop had appended under
/// `Mutex` as a race (its futex path is outside the instrumented code).
final class RecordingHandler: SocketHandler, @unchecked Sendable {
    // Invariant behind @unchecked Sendable: `received` is touched only under `mutex`.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var received: [UInt8] = []
    let closed = Flag()

    init() { pthread_mutex_init(mutex, nil) }
    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func socketReceived(_ bytes: UnsafeRawBufferPointer) {
        pthread_mutex_lock(mutex)
        received.append(contentsOf: bytes)
        pthread_mutex_unlock(mutex)
    }

    func socketClosed() { closed.set() }

    var text: String {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return String(decoding: received, as: UTF8.self)
    }
}

/// A value handed from a loop thread to the test thread.
final class Slot<Value: Sendable>: Sendable {
    private let value = Mutex<Value?>(nil)
    func set(_ v: Value) { value.withLock { $0 = v } }
    var get: Value? { value.withLock { $0 } }
}

/// A connected AF_UNIX stream pair: `client` stays with the test, `server`
/// goes to a loop.
private func socketPair() -> (client: Int32, server: Int32) {
    var fds: [Int32] = [-1, -1]
    let rc = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds)
    precondition(rc == 0)
    // A test that goes wrong fails on a read timeout instead of hanging.
    var timeout = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fds[0], SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    return (fds[0], fds[1])
}

private func send(_ fd: Int32, _ text: String) {
    let bytes = Array(text.utf8)
    let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    precondition(n == bytes.count)
}

/// Reads exactly `count` bytes (blocking), or fewer at EOF.
private func read(_ fd: Int32, count: Int) -> String {
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: count)
    while out.count < count {
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, count - out.count) }
        if n <= 0 { break }
        out.append(contentsOf: buffer[0..<n])
    }
    return String(decoding: out, as: UTF8.self)
}

/// `EventLoop.detach` on both engines: the socket leaves its loop only once
/// nothing is in flight on it, with every byte delivered exactly once and in
/// order (before the hand-over to the old handler, after it to the new one).
@Suite struct SocketDetachTests {
    @Test(arguments: [false, true])
    func detachHandsTheSocketOverWithEveryByteInOrder(ioUring: Bool) {
        let a = RunningLoop(index: 0, preferIOUring: ioUring), b = RunningLoop(index: 1, preferIOUring: ioUring)
        defer { a.shutdown(); b.shutdown() }
        guard a.loop.usesIOUring == ioUring else { return }   // no io_uring on this kernel
        let (client, server) = socketPair()
        defer { Glibc.close(client) }
        let first = RecordingHandler(), second = RecordingHandler()
        let id = Slot<SocketID>(), handedOver = Counter(), detached = Flag(), onB = Flag()
        a.loop.post { id.set(a.loop.register(fd: server, handler: first)) }
        send(client, "one|")
        #expect(waitUntil { first.text == "one|" })
        // More bytes race the detach: they land with the old handler (a
        // receive CQE already in a buffer) or stay in the socket for the new one.
        send(client, "two|")
        a.loop.post {
            var reply = Array("R1".utf8)
            a.loop.write(id.get!, &reply)
            let ok = a.loop.detach(id.get!) { fd in
                handedOver.add()
                b.loop.post {
                    _ = b.loop.register(fd: fd, handler: second)
                    onB.set()
                }
            }
            if ok { detached.set() }
        }
        #expect(waitUntil { onB.isSet && detached.isSet })
        // The reply queued before the detach was sent before the hand-over.
        #expect(read(client, count: 2) == "R1")
        send(client, "three|")
        #expect(waitUntil { first.text + second.text == "one|two|three|" })
        #expect(first.text + second.text == "one|two|three|")
        #expect(!first.closed.isSet)
        #expect(handedOver.value == 1)

        // The slot the detached socket left is reused by the next socket, which
        // must behave as a plain socket: its EOF closes it (a detach left on the
        // slot would hand it to the old `done` instead).
        let (client2, server2) = socketPair()
        let third = RecordingHandler()
        let id2 = Slot<SocketID>()
        a.loop.post { id2.set(a.loop.register(fd: server2, handler: third)) }
        #expect(waitUntil { id2.get != nil })
        #expect(id2.get!.slot == id.get!.slot)
        send(client2, "x")
        #expect(waitUntil { third.text == "x" })
        Glibc.close(client2)
        #expect(waitUntil { third.closed.isSet })
        #expect(handedOver.value == 1)

        // The moved socket still works on its new loop, and closes there.
        Glibc.shutdown(client, Int32(SHUT_WR))
        #expect(waitUntil { second.closed.isSet })
    }

    /// On io_uring a detach waits for the receive's final CQE, so a close can
    /// come in between; on epoll the detach is immediate and the close finds
    /// nothing left to do.
    @Test(arguments: [false, true])
    func closeDuringDetachClosesInsteadOfHandingOver(ioUring: Bool) {
        let a = RunningLoop(index: 0, preferIOUring: ioUring)
        defer { a.shutdown() }
        guard a.loop.usesIOUring == ioUring else { return }
        let (client, server) = socketPair()
        defer { Glibc.close(client) }
        let handler = RecordingHandler()
        let id = Slot<SocketID>(), handedOver = Counter()
        a.loop.post { id.set(a.loop.register(fd: server, handler: handler)) }
        send(client, "a")
        #expect(waitUntil { handler.text == "a" })
        a.loop.post {
            var reply = Array("bye".utf8)
            a.loop.write(id.get!, &reply)
            _ = a.loop.detach(id.get!) { fd in
                handedOver.add()
                Glibc.close(fd)
            }
            a.loop.close(id.get!)
        }
        // What was queued is still sent, then EOF.
        #expect(read(client, count: 16) == "bye")
        guard ioUring else {
            #expect(handedOver.value == 1)
            return
        }
        // Once the slot is free again (the receive's final CQE is in), the
        // socket was closed, not handed over. New sockets stay registered
        // until one gets the slot back (closing them would recycle theirs).
        var clients: [Int32] = []
        defer { for fd in clients { Glibc.close(fd) } }
        let reused = Flag()
        for _ in 0..<500 where !reused.isSet {
            let (c, s) = socketPair()
            clients.append(c)
            let registered = Flag()
            a.loop.post {
                if a.loop.register(fd: s, handler: RecordingHandler()).slot == id.get!.slot { reused.set() }
                registered.set()
            }
            #expect(waitUntil { registered.isSet })
            if !reused.isSet { usleep(1000) }
        }
        #expect(reused.isSet)
        #expect(handedOver.value == 0)
    }

    /// `EventLoop.peerHasClosed`: false while the peer is there (with or
    /// without bytes waiting), true once it has closed, whether or not the
    /// loop has heard of the close yet (the check the loops make of parked
    /// clients, for an end of file io_uring's multishot receive missed).
    @Test(arguments: [false, true])
    func peerHasClosedPeeksForEndOfFile(ioUring: Bool) {
        let a = RunningLoop(index: 0, preferIOUring: ioUring)
        defer { a.shutdown() }
        guard a.loop.usesIOUring == ioUring else { return }
        let (client, server) = socketPair()
        let handler = RecordingHandler()
        let id = Slot<SocketID>()
        a.loop.post { id.set(a.loop.register(fd: server, handler: handler)) }
        #expect(waitUntil { id.get != nil })
        func ask() -> Bool {
            let answer = Slot<Bool>()
            a.loop.post { answer.set(a.loop.peerHasClosed(id.get!)) }
            #expect(waitUntil { answer.get != nil })
            return answer.get ?? false
        }
        send(client, "x")
        #expect(waitUntil { handler.text == "x" })
        #expect(!ask())
        // The peer closes while the loop is busy in a task, so it cannot have
        // heard of the end of file yet (as when its receive missed it): the peek sees it.
        let seen = Slot<(before: Bool, after: Bool)>()
        a.loop.post {
            let before = a.loop.peerHasClosed(id.get!)
            Glibc.shutdown(client, Int32(SHUT_WR))
            usleep(20_000)
            seen.set((before, a.loop.peerHasClosed(id.get!)))
        }
        #expect(waitUntil { seen.get != nil })
        #expect(seen.get?.before == false)
        #expect(seen.get?.after == true)
        // Then the loop hears of it, and the socket is gone: nothing left to ask about.
        #expect(waitUntil { handler.closed.isSet })
        #expect(!ask())
        Glibc.close(client)
    }
}
