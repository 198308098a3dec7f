import DamselflyRuntime
import Synchronization

/// Whether a connection is still there, as any thread may ask.
///
/// One per client connection, made with it. The connection's loop sets it
/// the moment it learns the socket closed, before it cancels what the
/// connection has in flight; a shard reads it before it claims a waiter, so
/// nothing is popped for a connection its loop already knows is gone.
public final class ConnectionLife: Sendable {
    private let closed = Atomic<Bool>(false)

    public init() {}

    public var isClosed: Bool { closed.load(ordering: .acquiring) }

    /// Called once, on the connection's loop.
    public func markClosed() { closed.store(true, ordering: .releasing) }
}

/// A client parked on a blocking command (BLPOP, BRPOP, BLMOVE, BZPOPMIN...).
///
/// One waiter may be registered on several keys and several shards; it is
/// served exactly once: whoever flips its state from `waiting` first (a
/// shard serving it, its timeout, a disconnect, CLIENT UNBLOCK) owns it.
public final class Waiter: @unchecked Sendable {
    // Invariant: `state` is the only field written after registration
    // (atomically); `ready` and `serve` are immutable closures that run on
    // the shard that owns the key; `serve` posts the reply to `loop` itself.
    public static let waiting = 0
    public static let served = 1
    public static let cancelled = 2

    public let state = Atomic<Int>(Waiter.waiting)
    /// The loop of the parked connection.
    public let loop: EventLoop
    /// The parked connection's life: a shard never claims a waiter whose
    /// connection is known to be gone.
    public let owner: ConnectionLife
    public let database: Int
    /// Keys (position in the command → fingerprint), per shard, for cleanup.
    public let registrations: [(shard: Int, fingerprints: [LockFingerprint])]
    /// Whether key number `position` (in the command's key order) can serve now (on its shard).
    public let ready: (Shard, Int) -> Bool
    /// Pops for the waiter from key number `position` (on its shard) and
    /// posts the reply to the waiter's loop.
    public let serve: (Shard, Int) -> Void
    /// When to give up (monotonic ns), or nil to wait for ever.
    public let deadlineNanos: UInt64?
    /// Set before registration by readers that wait for something of their
    /// own (XREAD past an ID): when this waiter cannot be served yet, those
    /// behind it are still tried (``Shard/serveWaitersBehind(_:)``).
    public var servesOutOfOrder = false

    public init(
        loop: EventLoop, owner: ConnectionLife, database: Int, registrations: [(shard: Int, fingerprints: [LockFingerprint])],
        deadlineNanos: UInt64?, ready: @escaping (Shard, Int) -> Bool, serve: @escaping (Shard, Int) -> Void
    ) {
        self.loop = loop
        self.owner = owner
        self.database = database
        self.registrations = registrations
        self.deadlineNanos = deadlineNanos
        self.ready = ready
        self.serve = serve
    }

    /// Claims the waiter for serving; false when someone else already did.
    public func claim() -> Bool {
        state.compareExchange(expected: Waiter.waiting, desired: Waiter.served, ordering: .acquiringAndReleasing).exchanged
    }

    /// Cancels the waiter (timeout, disconnect, CLIENT UNBLOCK); false when it was served first.
    public func cancel() -> Bool {
        state.compareExchange(expected: Waiter.waiting, desired: Waiter.cancelled, ordering: .acquiringAndReleasing).exchanged
    }

    public var isWaiting: Bool { state.load(ordering: .acquiring) == Waiter.waiting }

    /// Still waiting, for a connection that is still there.
    public var canBeServed: Bool { isWaiting && !owner.isClosed }
}

/// Per-shard registry of waiters by key, and the keys that became ready.
///
/// A command that makes a watched-for key non-empty (LPUSH, ZADD, LMOVE's
/// destination...) calls ``Shard/signalKeyReady(_:)``; the shard serves the
/// waiters after the command (or the whole EXEC block) has run, so a waiter
/// sees the final state, first come first served, one element each.
struct BlockingTable {
    /// Waiters per key fingerprint, with the key's position in each waiter's command.
    var waiters: [LockFingerprint: [(waiter: Waiter, position: Int)]] = [:]
    var readyKeys: [LockFingerprint] = []
    /// EXEC blocks in progress here: serving waits until they conclude.
    var suspended = 0

    var isEmpty: Bool { waiters.isEmpty }
}

extension Shard {
    /// Registers `waiter` for the keys of this shard (`fingerprints[i]` is the
    /// key at `positions[i]` in the command).
    public func register(_ waiter: Waiter, fingerprints: [LockFingerprint], positions: [Int]) {
        for (f, p) in zip(fingerprints, positions) {
            blocking.waiters[f, default: []].append((waiter, p))
        }
    }

    /// Removes a waiter that timed out, was served elsewhere or disconnected.
    public func unregister(_ waiter: Waiter, fingerprints: [LockFingerprint]) {
        for f in fingerprints {
            guard var list = blocking.waiters[f] else { continue }
            list.removeAll { $0.waiter === waiter }
            blocking.waiters[f] = list.isEmpty ? nil : list
        }
    }

    /// Removes `waiter` from this shard's lists and asks the other shards it
    /// is registered on to do the same.
    public func dropRegistrations(of waiter: Waiter) {
        for registration in waiter.registrations {
            if registration.shard == index {
                unregister(waiter, fingerprints: registration.fingerprints)
            } else {
                let peer = peers[registration.shard]
                let fingerprints = registration.fingerprints
                peer.postWhenAvailable { peer.unregister(waiter, fingerprints: fingerprints) }
            }
        }
    }

    /// Waiter registrations held here, over every key (for tests and checks; call on this shard's loop).
    public var parkedRegistrationCount: Int { blocking.waiters.values.reduce(0) { $0 + $1.count } }

    /// Whether anyone waits on this key (cheap: checked by every push).
    @inline(__always)
    public func hasWaiters(_ fingerprint: LockFingerprint) -> Bool {
        !blocking.waiters.isEmpty && blocking.waiters[fingerprint] != nil
    }

    /// A push made `fingerprint`'s key non-empty.
    @inline(__always)
    public func signalKeyReady(_ fingerprint: LockFingerprint) {
        guard hasWaiters(fingerprint) else { return }
        blocking.readyKeys.append(fingerprint)
    }

    /// Holds serving back while an EXEC block runs here.
    public func suspendServing() { blocking.suspended += 1 }

    public func resumeServing() {
        blocking.suspended -= 1
        serveReadyKeys()
    }

    /// Serves waiters of the keys that became ready: first come, first
    /// served, each waiter once, as long as its key can serve.
    ///
    /// Keys are served in the order they became ready, as Redis does (a
    /// MULTI that pushes onto two keys serves the first key's waiters
    /// first). A waiter's serve may suspend serving (BLMOVE across shards
    /// waits for its destination's answer): the rest waits for the resume.
    public func serveReadyKeys() {
        guard blocking.suspended == 0, !blocking.readyKeys.isEmpty else { return }
        while blocking.suspended == 0, !blocking.readyKeys.isEmpty {
            let fingerprint = blocking.readyKeys.removeFirst()
            while var list = blocking.waiters[fingerprint], let first = list.first {
                if blocking.suspended > 0 {
                    blocking.readyKeys.insert(fingerprint, at: 0)
                    return
                }
                let waiter = first.waiter
                // A waiter whose connection closed is dropped here; its loop
                // cancels it and unregisters it everywhere else.
                if !waiter.canBeServed {
                    list.removeFirst()
                    blocking.waiters[fingerprint] = list.isEmpty ? nil : list
                    continue
                }
                guard waiter.ready(self, first.position) else {
                    if waiter.servesOutOfOrder { serveWaitersBehind(fingerprint) }
                    break
                }
                guard waiter.claim() else {
                    // Timed out, cancelled or served elsewhere a moment ago.
                    list.removeFirst()
                    blocking.waiters[fingerprint] = list.isEmpty ? nil : list
                    continue
                }
                // Drop every registration of this waiter: here now, on other
                // shards by a message.
                dropRegistrations(of: waiter)
                waiter.serve(self, first.position)
            }
        }
    }
}
