import CDamselfly
import Glibc

/// The epoll fallback, for kernels or sandboxes without io_uring and for
/// `--force_epoll`. Level-triggered readiness; reads go through one scratch
/// buffer per loop; writes are attempted at once and finished on EPOLLOUT.
@usableFromInline
final class EpollDriver {
    private let epollFD: Int32
    private let wakeFD: Int32
    private var sockets = SocketTable()
    /// Listening sockets (the client port, `--admin_port`, `--tls_port`); listener i is
    /// registered under token `listenToken - i`. A stopped one keeps its place with fd -1.
    private var listeners: [(fd: Int32, onAccept: (Int32) -> Void)] = []
    /// Opened by ``listen(fd:onAccept:)``: only the accepting loop holds one.
    private var acceptReserve: AcceptReserve?
    private let scratch = UnsafeMutableRawPointer.allocate(byteCount: 64 * 1024, alignment: 64)
    private let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: 256)
    private static let wakeToken: UInt64 = UInt64.max
    private static let listenToken: UInt64 = UInt64.max - 1

    init(wakeFD: Int32) {
        epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        self.wakeFD = wakeFD
        var ev = epoll_event()
        ev.events = EPOLLIN.rawValue
        ev.data.u64 = Self.wakeToken
        epoll_ctl(epollFD, EPOLL_CTL_ADD, wakeFD, &ev)
    }

    func listen(fd: Int32, onAccept: @escaping (Int32) -> Void) {
        listeners.append((fd, onAccept))
        if acceptReserve == nil { acceptReserve = AcceptReserve() }
        let flags = fcntl(fd, F_GETFL, 0)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        var ev = epoll_event()
        ev.events = EPOLLIN.rawValue
        ev.data.u64 = Self.listenToken - UInt64(listeners.count - 1)
        epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &ev)
    }

    func stopListening() {
        for i in listeners.indices where listeners[i].fd >= 0 {
            epoll_ctl(epollFD, EPOLL_CTL_DEL, listeners[i].fd, nil)
            Glibc.shutdown(listeners[i].fd, Int32(SHUT_RDWR))
            listeners[i] = (-1, { Glibc.close($0) })
        }
    }

    func register(fd: Int32, handler: SocketHandler) -> SocketID {
        let flags = fcntl(fd, F_GETFL, 0)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        let id = sockets.add(fd: fd, handler: handler)
        var ev = epoll_event()
        ev.events = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
        ev.data.u64 = UInt64(UInt32(bitPattern: id.slot))
        epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &ev)
        return id
    }

    func queuedBytes(socket: SocketID) -> Int {
        sockets.lookup(socket)?.queuedBytes ?? 0
    }

    func peerHasClosed(socket: SocketID) -> Bool {
        sockets.lookup(socket)?.peerHasClosed ?? false
    }

    func write(socket: SocketID, bytes: inout [UInt8]) {
        guard let state = sockets.lookup(socket), !state.closeRequested else {
            bytes.removeAll(keepingCapacity: true)
            return
        }
        state.enqueue(&bytes)
        if !state.sending { flush(state, slot: socket.slot) }
    }

    /// Writes what is pending; arms EPOLLOUT if the socket is full.
    private func flush(_ state: SocketState, slot: Int32) {
        while !state.pending.isEmpty {
            let written = state.pending.withUnsafeBytes { raw in
                dfly_send(state.fd, raw.baseAddress! + state.inflightOffset, raw.count - state.inflightOffset)
            }
            if written < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    if !state.sending {
                        state.sending = true
                        modify(state, slot: slot, events: EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLOUT.rawValue)
                    }
                    return
                }
                if errno == EINTR { continue }
                peerGone(state, slot: slot)
                return
            }
            state.inflightOffset += written
            if state.inflightOffset == state.pending.count {
                state.pending.removeAll(keepingCapacity: true)
                state.inflightOffset = 0
            }
        }
        if state.sending {
            state.sending = false
            modify(state, slot: slot, events: EPOLLIN.rawValue | EPOLLRDHUP.rawValue)
        }
        if state.closeRequested { finishClose(state, slot: slot) }
    }

    private func modify(_ state: SocketState, slot: Int32, events: UInt32) {
        var ev = epoll_event()
        ev.events = events
        ev.data.u64 = UInt64(UInt32(bitPattern: slot))
        epoll_ctl(epollFD, EPOLL_CTL_MOD, state.fd, &ev)
    }

    func detach(socket: SocketID, done: @escaping (Int32) -> Void) -> Bool {
        guard let state = sockets.lookup(socket), !state.closeRequested, !state.sending, state.pending.isEmpty else { return false }
        let fd = state.fd
        epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, nil)
        state.handler = nil
        state.dead = true
        sockets.release(slot: socket.slot)
        done(fd)
        return true
    }

    func close(socket: SocketID) {
        guard let state = sockets.lookup(socket) else { return }
        state.closeRequested = true
        state.handler = nil
        if !state.sending { finishClose(state, slot: socket.slot) }
    }

    private func finishClose(_ state: SocketState, slot: Int32) {
        guard !state.dead else { return }
        state.dead = true
        epoll_ctl(epollFD, EPOLL_CTL_DEL, state.fd, nil)
        Glibc.close(state.fd)
        sockets.release(slot: slot)
    }

    private func peerGone(_ state: SocketState, slot: Int32) {
        let handler = state.handler
        state.handler = nil
        finishClose(state, slot: slot)
        handler?.socketClosed()
    }

    func closeAll() {
        for (i, state) in sockets.states.enumerated() where state.inUse && !state.dead {
            peerGone(state, slot: Int32(i))
        }
        stopListening()
    }

    func poll(loop: EventLoop, block: Bool, timeoutNanos: UInt64) -> Int {
        if !block && justWoke {
            // The loop's first look after a sleep that ended with events: what came
            // since is found by the next wait, which returns at once, so this
            // epoll_wait (a fourth system call per request at P1) is skipped.
            justWoke = false
            return 0
        }
        let timeout: Int32 = block ? Int32(min(timeoutNanos / 1_000_000 + 1, 1000)) : 0
        let handled = dispatchEvents(into: events, scratch: scratch, timeout: timeout)
        justWoke = block && handled > 0
        return handled
    }

    /// The last poll was a wait that found events (see ``poll(loop:block:timeoutNanos:)``).
    private var justWoke = false

    /// A poll from inside a handler of ``poll(loop:block:timeoutNanos:)``
    /// (a busy script's hook, see ``EventLoop/serveClientsWhileBusy()``):
    /// its own event array and read buffer, so the outer poll's are intact
    /// when the script returns to it.
    func pollWhileBusy(loop: EventLoop) -> Int {
        dispatchEvents(into: nestedEvents, scratch: nestedScratch, timeout: 0)
    }

    private lazy var nestedEvents = UnsafeMutablePointer<epoll_event>.allocate(capacity: 256)
    private lazy var nestedScratch = UnsafeMutableRawPointer.allocate(byteCount: 64 * 1024, alignment: 64)

    private func dispatchEvents(into events: UnsafeMutablePointer<epoll_event>, scratch: UnsafeMutableRawPointer,
                                timeout: Int32) -> Int {
        let n = dfly_epoll_wait(epollFD, events, 256, timeout)
        guard n > 0 else { return 0 }
        for i in 0..<Int(n) {
            let ev = events[i]
            let token = ev.data.u64
            if token == Self.wakeToken {
                _ = dfly_eventfd_drain(wakeFD)
                continue
            }
            if token <= Self.listenToken, Self.listenToken - token < UInt64(listeners.count) {
                acceptAll(Int(Self.listenToken - token))
                continue
            }
            let slot = Int32(truncatingIfNeeded: token)
            guard Int(slot) < sockets.states.count else { continue }
            let state = sockets.states[Int(slot)]
            guard state.inUse, !state.dead else { continue }
            if ev.events & EPOLLOUT.rawValue != 0 { flush(state, slot: slot) }
            if ev.events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
                readAll(state, slot: slot, scratch: scratch)
            }
        }
        return Int(n)
    }

    private func acceptAll(_ index: Int) {
        while listeners[index].fd >= 0 {
            let fd = dfly_accept(listeners[index].fd)
            if fd < 0 {
                if acceptReserve?.shed(listenFD: listeners[index].fd, error: errno) == true { continue }
                return
            }
            listeners[index].onAccept(fd)
        }
    }

    private func readAll(_ state: SocketState, slot: Int32, scratch: UnsafeMutableRawPointer) {
        let generation = state.generation
        for _ in 0..<16 {
            let n = dfly_recv(state.fd, scratch, 64 * 1024)
            if n > 0 {
                state.handler?.socketReceived(UnsafeRawBufferPointer(start: scratch, count: n))
                // The handler may have closed the socket.
                if state.dead || state.generation != generation || !state.inUse { return }
                if n < 64 * 1024 { return }
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return }
            if n < 0 && errno == EINTR { continue }
            peerGone(state, slot: slot)
            return
        }
    }
}
