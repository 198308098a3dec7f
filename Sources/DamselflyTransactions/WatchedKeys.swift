import DamselflyRuntime
import Synchronization

/// One connection's WATCH state: set dirty by a shard when a watched key is
/// written, read by the connection at EXEC.
public final class WatchToken: Sendable {
    public let dirty = Atomic<Bool>(false)
    public init() {}
}

/// Per-shard index of watched keys (fingerprint → watchers). Empty in the
/// common case, so the check after each write is one `isEmpty` test.
struct WatchTable {
    private var watchers: [LockFingerprint: [WatchToken]] = [:]

    var isEmpty: Bool { watchers.isEmpty }

    mutating func add(_ fingerprint: LockFingerprint, _ token: WatchToken) {
        watchers[fingerprint, default: []].append(token)
    }

    mutating func remove(_ fingerprint: LockFingerprint, _ token: WatchToken) {
        guard var list = watchers[fingerprint] else { return }
        list.removeAll { $0 === token }
        watchers[fingerprint] = list.isEmpty ? nil : list
    }

    func touch(_ fingerprint: LockFingerprint) {
        guard let list = watchers[fingerprint] else { return }
        for token in list { token.dirty.store(true, ordering: .releasing) }
    }
}

extension Shard {
    /// WATCH: marks `token` dirty when a key with `fingerprint` is written here.
    public func watch(_ fingerprint: LockFingerprint, _ token: WatchToken) { watches.add(fingerprint, token) }

    public func unwatch(_ fingerprint: LockFingerprint, _ token: WatchToken) { watches.remove(fingerprint, token) }

    /// ``noteWritten(_:changed:)`` for a one-key command, with no array built
    /// unless someone watches, waits on or tracks a key here.
    public func noteWritten(_ fingerprint: LockFingerprint, changed: Bool = true) {
        guard watches.isEmpty && blocking.isEmpty && tracking.isEmpty && onlyWritten == nil else {
            return noteWritten([fingerprint], changed: changed)
        }
        // What the general form comes to when nobody watches, waits on or tracks a key here.
        bookkeepingOnly = false
        if keysUnchanged {
            keysUnchanged = false
            return
        }
        if changed { changesSinceSave.addOwned(1) }
    }

    /// Called after a write command ran on these keys: dirties WATCHers and
    /// marks keys that blocked clients wait on as ready to serve (the waiter's
    /// own `ready` check decides whether the key can really serve). Nothing
    /// happens when the command changed nothing: `changed` false (an error
    /// reply, a reply that says so) or the operation set ``keysUnchanged``.
    @inline(__always)
    public func noteWritten(_ fingerprints: [LockFingerprint], changed: Bool = true) {
        let signalsModified = !bookkeepingOnly
        bookkeepingOnly = false
        if keysUnchanged {
            keysUnchanged = false
            onlyWritten = nil
            return
        }
        var fingerprints = fingerprints
        if let only = onlyWritten {
            onlyWritten = nil
            fingerprints.removeAll { !only.contains($0) }
            if fingerprints.isEmpty { return }
        }
        guard changed else { return }
        changesSinceSave.addOwned(1)
        if signalsModified && !watches.isEmpty {
            for f in fingerprints { watches.touch(f) }
        }
        if !blocking.isEmpty {
            for f in fingerprints { signalKeyReady(f) }
        }
        if signalsModified && !tracking.isEmpty { invalidateTracked(fingerprints) }
    }

    /// Whether any client WATCHes a key of this shard.
    public var hasWatchers: Bool { !watches.isEmpty }

    /// Dirties the WATCHers of these keys (SWAPDB: no single write to note).
    public func touchWatchers(_ fingerprints: [LockFingerprint]) {
        for f in fingerprints { watches.touch(f) }
    }

    /// Whether any client is blocked on a key of this shard.
    public var hasBlockedClients: Bool { !blocking.isEmpty }
}
