import Glibc

/// What a loop calls back on for a connected socket. Implemented by the
/// server's `Connection`; every call happens on the socket's own loop thread.
public protocol SocketHandler: AnyObject {
    /// Bytes arrived. The view is only valid during the call: copy what you keep.
    func socketReceived(_ bytes: UnsafeRawBufferPointer)
    /// The peer closed the connection or it failed. No more calls follow;
    /// writes to the socket after this are ignored.
    func socketClosed()
}

/// A handle to a socket registered with a loop: a slot plus a generation, so a
/// stale handle (one whose socket was closed and slot reused) is recognised.
public struct SocketID: Hashable, Sendable {
    public let slot: Int32
    public let generation: UInt32

    public init(slot: Int32, generation: UInt32) {
        self.slot = slot
        self.generation = generation
    }
}

/// Low-level per-socket state shared by both drivers.
@usableFromInline
final class SocketState {
    var fd: Int32
    var generation: UInt32
    var handler: SocketHandler?
    /// Bytes waiting to be sent.
    var pending: [UInt8] = []
    /// Bytes handed to the kernel (io_uring) and not yet acknowledged.
    var inflight: [UInt8] = []
    var inflightOffset = 0
    var sending = false
    /// The owner asked to close; close once everything is flushed.
    var closeRequested = false
    /// Receive is armed (io_uring multishot recv in flight).
    var receiving = false
    /// The fd has been shut down / handler told; waiting for CQEs to drain.
    var dead = false
    var inUse = false
    /// Being handed to another loop: once receive and send are done, the
    /// fd goes to `onDetached` instead of being closed.
    var onDetached: ((Int32) -> Void)?

    /// Takes `bytes` into the pending buffer (swapping arrays when nothing
    /// is pending, so the caller gets an empty buffer with capacity back).
    func enqueue(_ bytes: inout [UInt8]) {
        if pending.isEmpty {
            // `bytes` gets the empty buffer: nothing to clear (`removeAll(keepingCapacity:)`
            // costs some 55 instructions even on an empty array, twice per P1 reply).
            swap(&pending, &bytes)
        } else {
            pending.append(contentsOf: bytes)
            bytes.removeAll(keepingCapacity: true)
        }
    }

    /// Bytes accepted for sending and not yet acknowledged by the kernel: what
    /// `client-output-buffer-limit` measures.
    var queuedBytes: Int { pending.count + inflight.count - inflightOffset }

    /// Whether the peer has closed a socket still open here: a peek at it
    /// reads end of file (data not yet read, or none and not closed: false).
    var peerHasClosed: Bool {
        guard !dead, !closeRequested else { return false }
        var byte: UInt8 = 0
        return Glibc.recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) == 0
    }

    init(fd: Int32, generation: UInt32) {
        self.fd = fd
        self.generation = generation
    }
}
