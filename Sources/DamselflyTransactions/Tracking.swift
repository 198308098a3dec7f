import DamselflyRuntime
import DamselflyStorage
import Synchronization

/// Server-wide state of CLIENT TRACKING (client-side caching) that the shards
/// read: whether anyone tracks, the table's size against
/// `tracking-table-max-keys`, and where invalidations go.
///
/// Each shard keeps its own ``TrackingTable`` of the keys it owns (the read
/// side remembers a key where the command read it, the write side looks it up
/// where it was written); only the totals and the delivery are shared.
public final class TrackingHub: @unchecked Sendable {
    // Invariant behind @unchecked Sendable: `deliver` and `onFlush` are set once, before any
    // client connects, and only read afterwards; the rest are atomics.

    /// Clients with tracking on (INFO's `tracking_clients`). Zero: the command
    /// path builds no tracking context (one relaxed load per command).
    public let clients = Atomic<Int>(0)
    /// Keys in every shard's table (INFO's `tracking_total_keys`).
    public let totalKeys = Atomic<Int>(0)
    /// Client ids over every key (INFO's `tracking_total_items`).
    public let totalItems = Atomic<Int>(0)
    /// `tracking-table-max-keys` (0: no limit).
    public let maxKeys = Atomic<Int>(1_000_000)
    /// Posts invalidations to the clients that receive them (set by the server).
    public var deliver: (@Sendable (TrackingDelivery) -> Void)?
    /// FLUSHALL / FLUSHDB ran: every tracking client gets a null invalidation.
    public var onFlush: (@Sendable () -> Void)?

    public init() {}

    @inlinable public var isActive: Bool { clients.load(ordering: .relaxed) > 0 }

    /// Takes one key's worth of the excess over `tracking-table-max-keys`, so
    /// that shards evicting at once never go below the limit together; false
    /// when the table is within it.
    func reserveEviction() -> Bool {
        let limit = maxKeys.load(ordering: .relaxed)
        guard limit > 0 else { return false }
        var total = totalKeys.load(ordering: .relaxed)
        while total > limit {
            let (exchanged, original) = totalKeys.compareExchange(
                expected: total, desired: total - 1, ordering: .relaxed)
            if exchanged { return true }
            total = original
        }
        return false
    }
}

/// What a shard hands the server to deliver.
public enum TrackingDelivery: Sendable {
    /// `key` was modified (or expired, evicted, dropped from a full table):
    /// each of `clients` that still tracks in the default mode is told,
    /// except `writer` when it asked for NOLOOP (0: no client wrote it).
    case key([UInt8], clients: [Int], writer: Int)
    /// BCAST: keys written under one prefix since the last broadcast, each
    /// with the client that wrote it last, for the clients of that prefix.
    case broadcast([(key: [UInt8], writer: Int)], clients: [Int])
}

/// The tracking context of one command, made on the connection's thread when
/// someone tracks and read by the shard that runs the command.
public final class TrackingOp: @unchecked Sendable {
    // Invariant: immutable after creation.
    /// The client running the command (NOLOOP leaves it out).
    public let writer: Int
    /// The client whose cache will hold what the command reads, when the
    /// command is read-only and that client tracks keys (not BCAST) and
    /// OPTIN/OPTOUT with CLIENT CACHING allow it; 0 otherwise.
    public let reader: Int
    public let database: Int
    /// The command's keys, names and lock fingerprints side by side.
    public let names: [[UInt8]]
    public let fingerprints: [LockFingerprint]
    /// Where the BCAST keys this command writes gather until its reply.
    public let broadcasts: TrackingBroadcastBuffer?

    public init(
        writer: Int, reader: Int, database: Int, names: [[UInt8]], fingerprints: [LockFingerprint],
        broadcasts: TrackingBroadcastBuffer? = nil
    ) {
        self.writer = writer
        self.reader = reader
        self.database = database
        self.names = names
        self.fingerprints = fingerprints
        self.broadcasts = broadcasts
    }

    /// The name of the key with this fingerprint, if the command holds it.
    func name(of fingerprint: LockFingerprint) -> [UInt8]? {
        guard let i = fingerprints.firstIndex(of: fingerprint) else { return nil }
        return names[i]
    }
}

/// The BCAST keys one client's command wrote, gathered on the client's loop
/// and sent, one message per prefix, once the command (a whole EXEC or
/// script) has replied: Redis sends them once per event-loop turn, so an
/// MSET or an EXEC makes one message per prefix even when its keys live on
/// several shards here.
public final class TrackingBroadcastBuffer: @unchecked Sendable {
    // Invariant: `pending` is touched only on `loop`; shards of other loops post.
    public let loop: EventLoop
    private var pending: [[UInt8]: (clients: [Int], keys: [[UInt8]: Int])] = [:]

    public init(loop: EventLoop) { self.loop = loop }

    public var isEmpty: Bool { pending.isEmpty }

    /// From a shard: keys written under each prefix, with the prefix's clients.
    func add(_ batch: [(prefix: [UInt8], clients: [Int], key: [UInt8], writer: Int)]) {
        if loop.inLoopThread {
            for item in batch {
                var entry = pending[item.prefix] ?? (item.clients, [:])
                entry.keys[item.key] = item.writer
                pending[item.prefix] = entry
            }
        } else {
            loop.post { self.add(batch) }
        }
    }

    /// On the loop, after the reply: the messages to send.
    public func take() -> [TrackingDelivery] {
        let result = pending.values.map { entry in
            TrackingDelivery.broadcast(
                entry.keys.sorted { $0.key.lexicographicallyPrecedes($1.key) }.map { (key: $0.key, writer: $0.value) },
                clients: entry.clients)
        }
        pending = [:]
        return result
    }
}

/// One shard's tracking state: which clients may cache each of its keys, the
/// BCAST prefixes (a copy per shard, updated by posts), and the keys written
/// under those prefixes since the last broadcast.
///
/// Keys are found by lock fingerprint (key hash and database), the value the
/// write path already has; the entry keeps the name for the message.
public struct TrackingTable {
    struct Tracked {
        var name: [UInt8]
        var clients: [Int]
    }

    private var keys: [LockFingerprint: Tracked] = [:]
    /// BCAST prefix → client ids.
    private(set) var prefixes: [[UInt8]: [Int]] = [:]
    /// BCAST prefix → key → its last writer, since the last broadcast.
    private var pending: [[UInt8]: [[UInt8]: Int]] = [:]

    public init() {}

    /// Nothing tracked here: the write path skips tracking in one test.
    public var isEmpty: Bool { keys.isEmpty && prefixes.isEmpty }
    public var keyCount: Int { keys.count }
    public var hasPendingBroadcast: Bool { !pending.isEmpty }

    /// Remembers that `client` may cache the key; returns (new key, new item).
    @discardableResult
    public mutating func remember(_ fingerprint: LockFingerprint, name: [UInt8], client: Int) -> (Bool, Bool) {
        if var entry = keys[fingerprint] {
            if entry.clients.contains(client) { return (false, false) }
            entry.clients.append(client)
            keys[fingerprint] = entry
            return (false, true)
        }
        keys[fingerprint] = Tracked(name: name, clients: [client])
        return (true, true)
    }

    /// The key was modified: forgets it and returns its name and clients (nil
    /// when nobody tracked it).
    public mutating func take(_ fingerprint: LockFingerprint) -> (name: [UInt8], clients: [Int])? {
        guard let entry = keys.removeValue(forKey: fingerprint) else { return nil }
        return (entry.name, entry.clients)
    }

    /// Some tracked key (the table is over its limit), removed.
    public mutating func takeAny() -> (name: [UInt8], clients: [Int])? {
        guard let fingerprint = keys.keys.randomElement() else { return nil }
        return take(fingerprint)
    }

    /// FLUSHALL / FLUSHDB: forgets every key; returns how many keys and items went.
    public mutating func removeAllKeys() -> (keys: Int, items: Int) {
        let items = keys.values.reduce(0) { $0 + $1.clients.count }
        let count = keys.count
        keys = [:]
        return (count, items)
    }

    public mutating func addPrefix(_ prefix: [UInt8], client: Int) {
        if !(prefixes[prefix]?.contains(client) ?? false) { prefixes[prefix, default: []].append(client) }
    }

    public mutating func removePrefix(_ prefix: [UInt8], client: Int) {
        guard var list = prefixes[prefix] else { return }
        list.removeAll { $0 == client }
        prefixes[prefix] = list.isEmpty ? nil : list
        if list.isEmpty { pending[prefix] = nil }
    }

    /// The BCAST prefixes `name` starts with, with their clients.
    func prefixes(of name: [UInt8]) -> [(prefix: [UInt8], clients: [Int])] {
        prefixes.compactMap { prefix, clients in
            prefix.count <= name.count && name.starts(with: prefix) ? (prefix, clients) : nil
        }
    }

    /// A key was written: remembered under every prefix it starts with.
    public mutating func noteBroadcast(_ name: [UInt8], writer: Int) {
        for prefix in prefixes.keys where prefix.count <= name.count && name.starts(with: prefix) {
            pending[prefix, default: [:]][name] = writer
        }
    }

    /// What to broadcast now, one delivery per prefix; clears it.
    public mutating func takeBroadcasts() -> [TrackingDelivery] {
        var result: [TrackingDelivery] = []
        for (prefix, written) in pending {
            guard let clients = prefixes[prefix], !written.isEmpty else { continue }
            let keys = written.sorted { $0.key.lexicographicallyPrecedes($1.key) }.map { (key: $0.key, writer: $0.value) }
            result.append(.broadcast(keys, clients: clients))
        }
        pending = [:]
        return result
    }
}

extension Shard {
    /// Runs `body` with `op` as the tracking context of the operation (nil
    /// when nobody tracks), then remembers what a tracking reader read.
    @inline(__always)
    public func withTracking<R>(_ op: TrackingOp?, keys positions: [Int]? = nil, _ body: () -> R) -> R {
        guard let op else { return body() }
        trackingOp = op
        let result = body()
        trackingOp = nil
        if op.reader != 0 { rememberTracked(op, positions ?? Array(op.names.indices)) }
        return result
    }

    /// The read side: `op.reader` may now cache these keys of the command.
    public func rememberTracked(_ op: TrackingOp, _ positions: [Int]) {
        guard let hub = trackingHub else { return }
        for p in positions {
            let (newKey, newItem) = tracking.remember(op.fingerprints[p], name: op.names[p], client: op.reader)
            if newKey { hub.totalKeys.add(1, ordering: .relaxed) }
            if newItem { hub.totalItems.add(1, ordering: .relaxed) }
        }
        updateExpiryHook()
        let limit = hub.maxKeys.load(ordering: .relaxed)
        if limit > 0 && hub.totalKeys.load(ordering: .relaxed) > limit { limitTrackingTable() }
    }

    /// BCAST: `client` is told about keys written here that start with `prefix`.
    public func addTrackedPrefix(_ prefix: [UInt8], client: Int) {
        tracking.addPrefix(prefix, client: client)
        updateExpiryHook()
    }

    public func removeTrackedPrefix(_ prefix: [UInt8], client: Int) {
        tracking.removePrefix(prefix, client: client)
        updateExpiryHook()
    }

    /// The write side (from ``noteWritten(_:changed:)``): the clients that
    /// may cache these keys are told, BCAST prefixes collect them.
    func invalidateTracked(_ fingerprints: [LockFingerprint]) {
        let writer = trackingOp?.writer ?? 0
        var batch: [(prefix: [UInt8], clients: [Int], key: [UInt8], writer: Int)] = []
        for f in fingerprints {
            let known = tracking.take(f)
            if let known { deliverTracked(known.name, known.clients, writer: writer) }
            if !tracking.prefixes.isEmpty, let name = known?.name ?? trackingOp?.name(of: f) {
                if trackingOp?.broadcasts != nil {
                    for (prefix, clients) in tracking.prefixes(of: name) {
                        batch.append((prefix, clients, name, writer))
                    }
                } else {
                    tracking.noteBroadcast(name, writer: writer)
                }
            }
        }
        if !batch.isEmpty { trackingOp?.broadcasts?.add(batch) }
    }

    /// A key went away without a command (expiry, eviction): the same
    /// invalidation, written by no client.
    public func invalidateTracked(name: [UInt8], database: Int, hash: UInt64) {
        guard !tracking.isEmpty else { return }
        let f = lockFingerprint(keyHash: hash, database: database)
        if let known = tracking.take(f) { deliverTracked(known.name, known.clients, writer: 0) }
        if !tracking.prefixes.isEmpty { tracking.noteBroadcast(name, writer: 0) }
        if trackingOp == nil && queue.isEmpty { flushTrackingBroadcasts() }
    }

    private func deliverTracked(_ name: [UInt8], _ clients: [Int], writer: Int) {
        if let hub = trackingHub {
            hub.totalKeys.add(-1, ordering: .relaxed)
            hub.totalItems.add(-clients.count, ordering: .relaxed)
            hub.deliver?(.key(name, clients: clients, writer: writer))
        }
    }

    /// Sends what BCAST clients collected here, one message per prefix, as
    /// Redis does once per event-loop turn; not while a transaction holds the
    /// shard (EXEC's commands are one turn in Redis).
    public func flushTrackingBroadcasts() {
        guard tracking.hasPendingBroadcast, let deliver = trackingHub?.deliver else { return }
        for message in tracking.takeBroadcasts() { deliver(message) }
    }

    /// `tracking-table-max-keys`: drops keys (telling their clients, as a
    /// write would) while the server-wide table is over the limit.
    public func limitTrackingTable() {
        guard let hub = trackingHub else { return }
        while hub.reserveEviction() {
            guard let known = tracking.takeAny() else {
                hub.totalKeys.add(1, ordering: .relaxed)  // nothing here: give the reservation back
                return
            }
            hub.totalItems.add(-known.clients.count, ordering: .relaxed)
            hub.deliver?(.key(known.name, clients: known.clients, writer: 0))
        }
    }

    /// FLUSHALL / FLUSHDB: every tracked key is forgotten (the clients get a
    /// null invalidation from the server).
    public func forgetTrackedKeys() {
        guard let hub = trackingHub else { return }
        let (keys, items) = tracking.removeAllKeys()
        hub.totalKeys.add(-keys, ordering: .relaxed)
        hub.totalItems.add(-items, ordering: .relaxed)
        updateExpiryHook()
    }

    /// Once per active-expiry tick: broadcasts left over and the table limit.
    public func trackingCron() {
        guard !tracking.isEmpty || tracking.hasPendingBroadcast else { return }
        if queue.isEmpty { flushTrackingBroadcasts() }
        limitTrackingTable()
        updateExpiryHook()
    }

    /// Installs (or removes) the expiry hook of every database while keys or
    /// prefixes are tracked here or a journal records (replication, the
    /// append-only file): an expired key is recorded as the `DEL` that
    /// Redis propagates, so a replica (which never expires keys itself)
    /// and a replay drop it at that point of the shard's history.
    public func updateExpiryHook() {
        let wanted = !tracking.isEmpty || journal != nil
        guard wanted != expiryHookInstalled else { return }
        expiryHookInstalled = wanted
        for (i, db) in keyspace.databases.enumerated() {
            db.expiryHook = wanted ? { [unowned self] name, hash in
                if !self.tracking.isEmpty { self.invalidateTracked(name: name, database: i, hash: hash) }
                self.journal?.append(database: i, [Array("DEL".utf8), name])
            } : nil
        }
    }
}
