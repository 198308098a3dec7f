import CDamselfly
import Glibc

/// One descriptor held in reserve for the accepting loop (epoll).
///
/// A process that runs out of descriptors (EMFILE / ENFILE: more clients than
/// `ulimit -n` allows) cannot accept, so the pending connection stays in the
/// backlog: under epoll the listening socket is ready again at once and the
/// loop spins while the client waits for ever. With a spare descriptor the
/// loop frees it, takes that connection, sends Redis's maxclients text,
/// closes it and opens the spare again: the backlog drains and every client
/// gets an answer. Not used by the io_uring driver: there a failed multishot
/// accept re-armed at once spun once the backlog was drained (measured), so
/// it still leaves such clients in the backlog (docs/reliability.md).
struct AcceptReserve {
    private var spare: Int32 = Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC)
    private static let refusal = Array("-ERR max number of clients reached\r\n".utf8)

    /// After an accept on `listenFD` failed with `error`: refuses one pending
    /// connection when the process is out of descriptors. True if one was refused.
    mutating func shed(listenFD: Int32, error: Int32) -> Bool {
        guard error == EMFILE || error == ENFILE, spare >= 0, listenFD >= 0 else { return false }
        // Only take a connection that is there: the listening socket may be blocking (io_uring).
        var ready = pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)
        guard poll(&ready, 1, 0) == 1 else { return false }
        Glibc.close(spare)
        let fd = dfly_accept(listenFD)
        if fd >= 0 {
            Self.refusal.withUnsafeBytes { _ = Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            Glibc.close(fd)
        }
        spare = Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC)
        return fd >= 0
    }
}
