import CDamselfly
import Glibc
import Synchronization

/// One epoll thread that turns socket readiness into resumed continuations.
///
/// Sockets are non-blocking; a ``RedisConnection`` first tries `send`/`recv` and only on
/// `EAGAIN` asks the reactor to wait. Every registration is `EPOLLONESHOT`, re-armed for the
/// single waiter a socket can have at a time (a connection is leased to one task at a time, so
/// it never waits for reading and writing at once), which keeps the table a plain dictionary.
/// Instances are independent: an embedding process can run its own; ``IOReactor/shared``
/// exists for convenience.
public final class IOReactor: Sendable {
    /// The reactor a ``RedisPool`` uses when none is given.
    public static let shared = IOReactor()

    private let epollFD: Int32
    private let waiters = Mutex<[Int32: CheckedContinuation<Void, Never>]>([:])

    public init() {
        epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        precondition(epollFD >= 0, "epoll_create1 failed: \(errno)")
        let box = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            let reactor = Unmanaged<IOReactor>.fromOpaque(raw!).takeRetainedValue()
            dfly_set_thread_name("jobs-io")
            reactor.run()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        pthread_detach(thread)
    }

    /// Adds a socket, disarmed until its first ``wait(fd:writable:)``.
    func register(fd: Int32) {
        var ev = epoll_event()
        ev.events = EPOLLONESHOT.rawValue
        ev.data.fd = fd
        epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &ev)
    }

    /// Removes a socket before it is closed; a waiter still parked on it is resumed.
    func unregister(fd: Int32) {
        epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, nil)
        let waiter = waiters.withLock { $0.removeValue(forKey: fd) }
        waiter?.resume()
    }

    /// Suspends until `fd` is readable (or writable), or has an error or hang-up pending.
    func wait(fd: Int32, writable: Bool) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            waiters.withLock { $0[fd] = continuation }
            var ev = epoll_event()
            ev.events = (writable ? EPOLLOUT.rawValue : EPOLLIN.rawValue) | EPOLLONESHOT.rawValue | EPOLLRDHUP.rawValue
            ev.data.fd = fd
            if epoll_ctl(epollFD, EPOLL_CTL_MOD, fd, &ev) != 0 {
                // Not registered (closed under us): let the caller see the error from the socket.
                let waiter = waiters.withLock { $0.removeValue(forKey: fd) }
                waiter?.resume()
            }
        }
    }

    private func run() {
        let capacity: Int32 = 128
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: Int(capacity))
        while true {
            let n = epoll_wait(epollFD, events, capacity, -1)
            if n < 0 {
                if errno == EINTR { continue }
                fatalError("epoll_wait failed: \(errno)")
            }
            for i in 0..<Int(n) {
                let fd = events[i].data.fd
                let waiter = waiters.withLock { $0.removeValue(forKey: fd) }
                waiter?.resume()
            }
        }
    }
}
