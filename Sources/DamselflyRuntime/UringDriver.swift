import CDamselfly
import Glibc

/// The io_uring driver: one ring per loop, created on the loop's own thread
/// with SINGLE_ISSUER and DEFER_TASKRUN where the kernel has them.
///
/// Accepts are multishot, receives are multishot into a provided-buffer ring
/// (the kernel picks a free buffer, we copy out and hand it straight back), and
/// each connection has at most one send in flight carrying everything that was
/// queued for it, so a pipelined batch leaves in one send.
@usableFromInline
final class UringDriver {
    private enum Op: UInt64 {
        case accept = 1, receive = 2, send = 3, wake = 4, cancel = 5
    }

    private let ring: OpaquePointer
    private let wakeFD: Int32
    private var wakeBuffer = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    private let bufferCount: UInt32 = 256
    private let bufferSize = 16 * 1024
    private let bufferGroup: Int32 = 7
    private var bufferMemory: UnsafeMutableRawPointer
    private var sockets = SocketTable()
    /// Listening sockets (the client port, `--admin_port`); an accept CQE's
    /// slot is its index here. A stopped one keeps its place with fd -1.
    private var listeners: [(fd: Int32, onAccept: (Int32) -> Void)] = []
    private let completions = UnsafeMutablePointer<dfly_cqe>.allocate(capacity: 256)
    /// Setup flags actually in force, for INFO/debugging.
    let setupFlags: UInt32

    private init(ring: OpaquePointer, flags: UInt32, wakeFD: Int32) {
        self.ring = ring
        self.setupFlags = flags
        self.wakeFD = wakeFD
        self.bufferMemory = UnsafeMutableRawPointer.allocate(byteCount: Int(bufferCount) * bufferSize, alignment: 4096)
    }

    /// Creates a ring on the calling thread, or nil where io_uring (or the
    /// provided-buffer ring it needs) is unavailable.
    static func make(wakeFD: Int32) -> UringDriver? {
        let attempts: [UInt32] = [
            UInt32(DFLY_SETUP_SINGLE_ISSUER) | UInt32(DFLY_SETUP_DEFER_TASKRUN),
            UInt32(DFLY_SETUP_COOP_TASKRUN),
            0,
        ]
        for flags in attempts {
            var err: Int32 = 0
            if let ring = dfly_ring_create(4096, flags, &err) {
                let driver = UringDriver(ring: ring, flags: flags, wakeFD: wakeFD)
                guard dfly_ring_setup_buffers(ring, driver.bufferMemory, driver.bufferCount, UInt32(driver.bufferSize), driver.bufferGroup) == 0 else {
                    driver.shutdown()
                    return nil
                }
                if wakeFD >= 0 { driver.armWake() }
                return driver
            }
        }
        return nil
    }

    func shutdown() {
        dfly_ring_destroy(ring)
        bufferMemory.deallocate()
    }

    // MARK: - Submission helpers

    /// A CQE's user_data: the op in bits 0-7, the slot in bits 8-31 and the
    /// slot's generation in bits 32-63. The generation is what makes a late
    /// completion harmless: a cancel (or its -ENOENT retry) aimed at a
    /// connection that has since been handed over or closed names that
    /// connection's generation, so it can neither cancel nor be mistaken for
    /// the receive of a newer connection that reuses the slot.
    @inline(__always)
    private static func userData(_ op: Op, slot: Int32, generation: UInt32 = 0) -> UInt64 {
        (UInt64(generation) << 32) | (UInt64(UInt32(bitPattern: slot) & 0xff_ffff) << 8) | op.rawValue
    }

    @inline(__always)
    private static func userData(_ op: Op, _ state: SocketState, slot: Int32) -> UInt64 {
        userData(op, slot: slot, generation: state.generation)
    }

    private func armWake() {
        dfly_ring_prep_read(ring, wakeFD, wakeBuffer, 8, Self.userData(.wake, slot: 0))
    }

    private func armAccept(_ index: Int) {
        dfly_ring_prep_accept_multishot(ring, listeners[index].fd, Self.userData(.accept, slot: Int32(index)))
    }

    private func armReceive(_ state: SocketState, slot: Int32) {
        dfly_ring_prep_recv_multishot(ring, state.fd, Self.userData(.receive, state, slot: slot))
        state.receiving = true
    }

    private func submitSend(_ state: SocketState, slot: Int32) {
        let remaining = state.inflight.count - state.inflightOffset
        state.inflight.withUnsafeBytes { raw in
            // The array is kept alive and unmutated in `state.inflight` until
            // the completion arrives, so its storage stays where it is.
            dfly_ring_prep_send(ring, state.fd, raw.baseAddress! + state.inflightOffset, remaining, Self.userData(.send, state, slot: slot))
        }
        state.sending = true
    }

    // MARK: - Driver API

    func listen(fd: Int32, onAccept: @escaping (Int32) -> Void) {
        listeners.append((fd, onAccept))
        armAccept(listeners.count - 1)
    }

    func stopListening() {
        for i in listeners.indices where listeners[i].fd >= 0 {
            Glibc.shutdown(listeners[i].fd, Int32(SHUT_RDWR))
            listeners[i] = (-1, { Glibc.close($0) })
        }
    }

    func register(fd: Int32, handler: SocketHandler) -> SocketID {
        let id = sockets.add(fd: fd, handler: handler)
        armReceive(sockets.states[Int(id.slot)], slot: id.slot)
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
        if !state.sending { startSend(state, slot: socket.slot) }
    }

    private func startSend(_ state: SocketState, slot: Int32) {
        guard !state.pending.isEmpty else { return }
        swap(&state.inflight, &state.pending)
        // The buffer sent last, emptied when its send completed (or never used).
        if !state.pending.isEmpty { state.pending.removeAll(keepingCapacity: true) }
        state.inflightOffset = 0
        submitSend(state, slot: slot)
    }

    /// Detaching on io_uring: the fd may only leave this ring once the ring
    /// holds nothing for it. After the cancel is submitted these can still
    /// arrive, in any order relative to one another:
    /// - receive CQEs with F_MORE and data in a provided buffer (the kernel
    ///   read it before the cancel ran): passed to the handler, which keeps
    ///   them as unparsed input, so they travel with the connection in order;
    /// - the receive's final CQE (no F_MORE): -ECANCELED, or data, EOF,
    ///   -ENOBUFS or an error if it ended on its own first; only then is
    ///   `receiving` false;
    /// - the cancel's own CQE: 0, -EALREADY, or -ENOENT when the receive
    ///   had already ended (or was not armed yet: then we ask again while
    ///   `receiving` holds); stale ones are dropped by generation;
    /// - the completion of a send in flight (the send of the replies before
    ///   the migrating command): the socket waits for it and for anything
    ///   still queued, since a send may not race a send from the new ring.
    /// The fd is handed to `done` when the final receive CQE and every send
    /// have completed, whichever comes last. If the peer goes away or the
    /// owner closes meanwhile, the detach is abandoned and the socket closes.
    func detach(socket: SocketID, done: @escaping (Int32) -> Void) -> Bool {
        guard let state = sockets.lookup(socket), !state.closeRequested, state.onDetached == nil else { return false }
        state.onDetached = done
        if state.receiving {
            requestCancel(state, slot: socket.slot)
        } else {
            finishDetachIfReady(state, slot: socket.slot)
        }
        return true
    }

    private func requestCancel(_ state: SocketState, slot: Int32) {
        dfly_ring_prep_cancel(ring, Self.userData(.receive, state, slot: slot), Self.userData(.cancel, state, slot: slot))
    }

    /// Hands the fd over once nothing of ours is in flight on it.
    private func finishDetachIfReady(_ state: SocketState, slot: Int32) {
        guard let done = state.onDetached, !state.dead, !state.receiving, !state.sending, state.pending.isEmpty else { return }
        let fd = state.fd
        state.onDetached = nil
        state.handler = nil
        state.dead = true
        sockets.release(slot: slot)
        done(fd)
    }

    func close(socket: SocketID) {
        guard let state = sockets.lookup(socket) else { return }
        state.closeRequested = true
        state.handler = nil
        // A close wins over a detach in progress: the fd is closed here once
        // the receive's final CQE is in, never handed over.
        state.onDetached = nil
        if !state.sending { finishClose(state, slot: socket.slot) }
    }

    /// Shuts the socket down; the fd itself is closed once the kernel has
    /// returned the receive that may still be in flight.
    private func finishClose(_ state: SocketState, slot: Int32) {
        if !state.dead {
            state.dead = true
            Glibc.shutdown(state.fd, Int32(SHUT_RDWR))
        }
        if !state.receiving && !state.sending {
            Glibc.close(state.fd)
            sockets.release(slot: slot)
        }
    }

    private func peerGone(_ state: SocketState, slot: Int32) {
        let handler = state.handler
        state.handler = nil
        state.closeRequested = true
        state.onDetached = nil
        finishClose(state, slot: slot)
        handler?.socketClosed()
    }

    func closeAll() {
        for (i, state) in sockets.states.enumerated() where state.inUse && !state.dead {
            peerGone(state, slot: Int32(i))
        }
        stopListening()
    }

    // MARK: - Completions

    func poll(loop: EventLoop, block: Bool, timeoutNanos: UInt64) -> Int {
        _ = dfly_ring_submit(ring, block ? 1 : 0, timeoutNanos)
        var handled = reap(into: completions)
        if poolReleaseRequested { handled += releasePoolIfQuiet() }
        return handled
    }

    /// Set by ``requestPoolRelease()``; honoured at the end of the next poll.
    private var poolReleaseRequested = false

    /// Asks for the receive pool's pages to be dropped (`MADV_DONTNEED`) at the
    /// next point where no buffer holds unread data. The kernel fills the 256
    /// buffers round robin, so without this every page a receive ever wrote
    /// stays resident (up to 4 MB per loop, reached slowly: a creep in RSS that
    /// a soak cannot tell from a leak). A dropped page comes back zeroed on the
    /// next receive into it, a page fault per 4 KB, which every few seconds is nothing.
    func requestPoolRelease() {
        // Without COOP_TASKRUN or DEFER_TASKRUN the kernel may complete a
        // receive (copy into a buffer) whenever this thread returns to user
        // mode, so there is no moment at which the pool is known to be idle.
        guard setupFlags & (UInt32(DFLY_SETUP_COOP_TASKRUN) | UInt32(DFLY_SETUP_DEFER_TASKRUN)) != 0 else { return }
        poolReleaseRequested = true
    }

    /// Drops the pool's pages when the completion queue is empty. Every buffer
    /// is handed back to the ring in the same handler that reads it, and with
    /// COOP/DEFER_TASKRUN the kernel copies received bytes only when this
    /// thread enters the kernel (the madvise's own return included, after the
    /// pages are gone), so an empty queue right before the madvise means no
    /// buffer holds anything yet to be read.
    /// Returns the completions it handled instead (then it tries again at the next poll).
    private func releasePoolIfQuiet() -> Int {
        let handled = reap(into: completions)
        guard handled == 0 else { return handled }
        poolReleaseRequested = false
        _ = madvise(bufferMemory, Int(bufferCount) * bufferSize, MADV_DONTNEED)
        return 0
    }

    /// A poll from inside a completion handler (a busy script's hook, see
    /// ``EventLoop/serveClientsWhileBusy()``): the outer poll has already
    /// copied and advanced past its batch, so only the copy needs a buffer
    /// of its own.
    func pollWhileBusy(loop: EventLoop) -> Int {
        _ = dfly_ring_submit(ring, 0, 0)
        return reap(into: nestedCompletions)
    }

    private lazy var nestedCompletions = UnsafeMutablePointer<dfly_cqe>.allocate(capacity: 256)

    private func reap(into completions: UnsafeMutablePointer<dfly_cqe>) -> Int {
        var handled = 0
        while true {
            let n = Int(dfly_ring_reap(ring, completions, 256))
            if n == 0 { break }
            for i in 0..<n {
                let c = completions[i]
                let counts = handle(op: c.user_data & 0xff, slot: Int32(truncatingIfNeeded: (c.user_data >> 8) & 0xff_ffff),
                                    generation: UInt32(truncatingIfNeeded: c.user_data >> 32), res: c.res, flags: c.flags)
                if counts { handled += 1 }
            }
            if n < 256 { break }
        }
        return handled
    }

    /// The slot's state when a socket CQE still belongs to it (same
    /// generation, slot in use); nil for a stale completion.
    @inline(__always)
    private func owner(slot: Int32, generation: UInt32) -> SocketState? {
        guard slot >= 0, Int(slot) < sockets.states.count else { return nil }
        let state = sockets.states[Int(slot)]
        return state.inUse && state.generation == generation ? state : nil
    }

    /// Gives a provided buffer back when a CQE carries one nobody will read.
    @inline(__always)
    private func recycle(flags: UInt32) {
        guard flags & UInt32(DFLY_CQE_F_BUFFER) != 0 else { return }
        let bufferID = Int(flags >> UInt32(DFLY_CQE_BUFFER_SHIFT))
        dfly_ring_recycle_buffer(ring, bufferMemory + bufferID * bufferSize, UInt32(bufferSize), UInt32(bufferID))
    }

    /// Handles one completion; returns whether it is work the loop must come round
    /// for. Every completion is, but a send that went out leaving nothing more to
    /// send: counted, it cost a request at P1 a third io_uring_enter (the submit that
    /// sent the reply reaps its completion at once, and the loop went round to poll
    /// again), and what it leaves (a close) is a submission the next enter makes,
    /// whether it waits or not. One that started the next send counts, so that send
    /// is submitted at once, not after a `--poll_before_sleep_us` spin.
    private func handle(op: UInt64, slot: Int32, generation: UInt32, res: Int32, flags: UInt32) -> Bool {
        switch Op(rawValue: op) {
        case .wake:
            armWake()
        case .accept:
            let index = Int(slot)
            guard index >= 0, index < listeners.count else {
                if res >= 0 { Glibc.close(res) }
                return true
            }
            if res >= 0 { listeners[index].onAccept(res) }
            if flags & UInt32(DFLY_CQE_F_MORE) == 0, listeners[index].fd >= 0 { armAccept(index) }
        case .receive:
            // A receive or send is always reaped before its slot is released
            // (`receiving`/`sending` hold it), so a stale one would be a bug;
            // still, never leak its buffer or touch a newer connection.
            guard let state = owner(slot: slot, generation: generation) else {
                recycle(flags: flags)
                return true
            }
            handleReceive(state, slot: slot, res: res, flags: flags)
        case .send:
            guard let state = owner(slot: slot, generation: generation) else { return res < 0 }
            handleSend(state, slot: slot, res: res)
            return res < 0 || state.sending
        case .cancel:
            // -ENOENT with the receive still ours and running: it was not armed
            // yet when the cancel ran; -EALREADY: it was running and may not
            // stop on its own until more bytes come (which a client waiting
            // for its reply never sends). Ask again until its final CQE is in.
            // (-ENOENT because it already ended: its final CQE is on the way
            // and `receiving` goes false with it.) A cancel outliving its
            // connection is stale and ignored.
            if res == -ENOENT || res == -EALREADY, let state = owner(slot: slot, generation: generation),
               state.onDetached != nil, state.receiving, !state.dead {
                requestCancel(state, slot: slot)
            }
        case .none:
            break
        }
        return true
    }

    private func handleReceive(_ state: SocketState, slot: Int32, res: Int32, flags: UInt32) {
        let more = flags & UInt32(DFLY_CQE_F_MORE) != 0
        if !more { state.receiving = false }
        if state.onDetached != nil {
            // Detaching: pass on what arrived, never re-arm, hand over when done.
            if res > 0, flags & UInt32(DFLY_CQE_F_BUFFER) != 0 {
                let bufferID = Int(flags >> UInt32(DFLY_CQE_BUFFER_SHIFT))
                let base = bufferMemory + bufferID * bufferSize
                state.handler?.socketReceived(UnsafeRawBufferPointer(start: base, count: Int(res)))
                dfly_ring_recycle_buffer(ring, base, UInt32(bufferSize), UInt32(bufferID))
            }
            if !state.receiving { finishDetachIfReady(state, slot: slot) }
            return
        }
        if res > 0, flags & UInt32(DFLY_CQE_F_BUFFER) != 0 {
            let bufferID = Int(flags >> UInt32(DFLY_CQE_BUFFER_SHIFT))
            let base = bufferMemory + bufferID * bufferSize
            let generation = state.generation
            if !state.dead, let handler = state.handler {
                handler.socketReceived(UnsafeRawBufferPointer(start: base, count: Int(res)))
            }
            dfly_ring_recycle_buffer(ring, base, UInt32(bufferSize), UInt32(bufferID))
            // A busy script's hook may have polled inside that handler (see
            // pollWhileBusy) and closed and released this slot, or given it
            // to a new socket: then there is nothing left here to arm or close.
            guard state.inUse, state.generation == generation else { return }
            if !more && !state.dead { armReceive(state, slot: slot) }
            if state.dead && !state.receiving { finishClose(state, slot: slot) }
            return
        }
        if res == -ENOBUFS && !state.dead {
            // Every provided buffer is in use for a moment; try again.
            if !more { armReceive(state, slot: slot) }
            return
        }
        // EOF or error.
        if state.dead {
            if !state.receiving { finishClose(state, slot: slot) }
        } else {
            peerGone(state, slot: slot)
        }
    }

    private func handleSend(_ state: SocketState, slot: Int32, res: Int32) {
        state.sending = false
        if res < 0 {
            if !state.dead { peerGone(state, slot: slot) } else { finishClose(state, slot: slot) }
            return
        }
        state.inflightOffset += Int(res)
        if state.inflightOffset < state.inflight.count, !state.dead {
            submitSend(state, slot: slot)
            return
        }
        state.inflight.removeAll(keepingCapacity: true)
        state.inflightOffset = 0
        if state.onDetached != nil {
            if !state.pending.isEmpty { startSend(state, slot: slot) } else { finishDetachIfReady(state, slot: slot) }
            return
        }
        if state.dead {
            finishClose(state, slot: slot)
        } else if !state.pending.isEmpty {
            startSend(state, slot: slot)
        } else if state.closeRequested {
            finishClose(state, slot: slot)
        }
    }
}
