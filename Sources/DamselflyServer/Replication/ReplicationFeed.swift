import DamselflyRESP
import DamselflyRuntime
import DamselflyTransactions
import Synchronization

/// The replication stream: every shard's writes merged into one sequence of
/// RESP commands in Redis's replication format, kept in a backlog and sent
/// to the replicas.
///
/// Each shard hands its records over in the order they took effect there
/// (``ShardWriteTap``). A coordinated transaction (multi-shard command,
/// MULTI/EXEC, a script, FLUSHALL, a snapshot's cut) is a *unit*: from its
/// first step on a shard to its conclusion there, whatever that shard
/// records belongs to the unit, and the shard's later records wait behind
/// it. A unit is emitted whole (in MULTI/EXEC when it holds several
/// commands) once it concluded on every participant and sits at the head of
/// every participant's queue. With out-of-order execution off while
/// replicating (``ShardSet/inOrderOnly``), every shard runs coordinated
/// transactions in txid order, so heads never wait on each other in a cycle.
///
/// Why the order is right: each shard's records come out in that shard's own
/// order, and a unit comes out at a point that, on every participant, lies
/// exactly between what ran there before it and what ran after it. Shards own
/// disjoint keys, so any interleaving of their histories that keeps each
/// one's order, with units as single points, is a serial history the master
/// could have produced: the replica ends in the same state, and a command
/// that read other shards (SUNIONSTORE) reads there what it read here.
final class ReplicationFeed: ShardWriteTap, @unchecked Sendable {
    // Invariant: all mutable state lives in `state`, behind its mutex; links'
    // mutable fields are touched under the same mutex.
    enum Item {
        case plain(Int, [[UInt8]])
        case unit(UInt64)
    }

    struct Unit {
        var participants: Int
        var closed = 0
        var records: [(Int, [[UInt8]])] = []
        /// Full syncs whose snapshot this unit is the cut of.
        var cuts: [ReplicaLink] = []
    }

    struct ShardQueue {
        var items: [Item] = []
        var head = 0
        var isEmpty: Bool { head >= items.count }
        var first: Item? { isEmpty ? nil : items[head] }
        mutating func popFirst() {
            head += 1
            if head >= items.count { items.removeAll(keepingCapacity: true); head = 0 }
        }
    }

    struct State {
        var queues: [ShardQueue]
        var open: [UInt64?]
        var units: [UInt64: Unit] = [:]
        /// The database the stream last selected (-1: the next command selects).
        var streamDatabase = -1
        /// `master_repl_offset`: bytes of stream produced so far.
        var offset = 0
        var backlog: ReplicationBacklog
        var replicas: [ReplicaLink] = []
        var syncFull = 0
        var syncPartialOK = 0
        var syncPartialErr = 0
        /// `master_replid`, and the history before it (`master_replid2`,
        /// `second_repl_offset`): a replica of that history may PSYNC on up to there.
        var identity: ReplicationIdentity
        /// Transactions from this ID on are units; earlier ones (which may have
        /// run steps before every shard had the tap) record plainly.
        var unitsFrom = UInt64.max
        /// False once `repl-backlog-ttl` freed the backlog: until a replica
        /// attaches, the stream is dropped and the offset stands still (Redis
        /// feeds nothing without a backlog).
        var backlogActive = true
        /// Since when no replica is attached (for `repl-backlog-ttl`).
        var noReplicasSinceMs = Clock.wallMillis()
    }

    let state: Mutex<State>
    /// `client-output-buffer-limit replica`, also applied to the stream a
    /// replica collects while its RDB is made and sent.
    let limits: ClientLimits
    /// Where the feed's own log lines go (dropped replicas).
    let log: @Sendable (String) -> Void

    init(shardCount: Int, backlogSize: Int, identity: ReplicationIdentity, limits: ClientLimits,
         log: @escaping @Sendable (String) -> Void) {
        self.limits = limits
        self.log = log
        state = Mutex(State(
            queues: Array(repeating: ShardQueue(), count: shardCount),
            open: Array(repeating: nil, count: shardCount),
            offset: identity.offset,
            backlog: ReplicationBacklog(capacity: backlogSize, firstByteOffset: identity.offset + 1),
            identity: identity))
    }

    /// A new history from `identity` on (promotion, or a full sync from a
    /// master): the backlog restarts at its offset and the replicas attached
    /// are dropped, to PSYNC again (those that followed the previous history
    /// up to `second_repl_offset` continue, the others sync in full).
    func restart(_ identity: ReplicationIdentity) {
        let dropped: [ReplicaLink] = state.withLock { s in
            s.identity = identity
            s.offset = identity.offset
            s.backlog = ReplicationBacklog(capacity: s.backlog.capacity, firstByteOffset: identity.offset + 1)
            s.backlogActive = true
            s.streamDatabase = -1
            s.noReplicasSinceMs = Clock.wallMillis()
            let links = s.replicas
            for link in links {
                link.phase = .closed
                link.pending = []
            }
            s.replicas = []
            return links
        }
        for link in dropped { link.loop.post { link.connection?.close() } }
    }

    // MARK: - ShardWriteTap

    func record(shard: Int, database: Int, _ args: [[UInt8]]) {
        state.withLock { s in
            if let txid = s.open[shard] {
                s.units[txid]?.records.append((database, args))
            } else if s.queues[shard].isEmpty {
                var out: [UInt8] = []
                Self.encode(database, args, &s, &out)
                publish(out, &s)
            } else {
                s.queues[shard].items.append(.plain(database, args))
            }
        }
    }

    func beginUnit(shard: Int, txid: UInt64, participants: Int) {
        state.withLock { s in
            // A transaction that started before the taps were all set would open
            // its unit on some participants only and block their queues for good.
            // It ran before the first snapshot's cut anyway: its records go plain.
            guard txid >= s.unitsFrom else { return }
            if s.units[txid] == nil { s.units[txid] = Unit(participants: participants) }
            s.open[shard] = txid
            s.queues[shard].items.append(.unit(txid))
        }
    }

    func endUnit(shard: Int, txid: UInt64) {
        state.withLock { s in
            s.units[txid]?.closed += 1
            if s.open[shard] == txid { s.open[shard] = nil }
            drain(&s)
        }
    }

    /// Called once every shard has the tap: transactions after `txid` are units.
    func startUnits(after txid: UInt64) {
        state.withLock { $0.unitsFrom = txid + 1 }
    }

    /// Makes `link` start from the point where transaction `txid` (a global
    /// transaction over every shard, the snapshot's cut) lands in the stream.
    func attachCut(txid: UInt64, participants: Int, link: ReplicaLink) {
        state.withLock { s in
            // Closed while it waited for its snapshot (a delayed sync).
            guard link.phase != .closed else { return }
            if s.units[txid] == nil { s.units[txid] = Unit(participants: participants) }
            s.units[txid]!.cuts.append(link)
            link.phase = .waitingCut
            reactivateBacklog(&s)
            s.replicas.append(link)
        }
    }

    // MARK: - Merging

    private func drain(_ s: inout State) {
        var out: [UInt8] = []
        var progress = true
        while progress {
            progress = false
            for i in s.queues.indices {
                while let head = s.queues[i].first {
                    if case .plain(let db, let args) = head {
                        Self.encode(db, args, &s, &out)
                        s.queues[i].popFirst()
                        progress = true
                        continue
                    }
                    guard case .unit(let txid) = head, let unit = s.units[txid], unit.closed >= unit.participants else { break }
                    let atHead = s.queues.indices.filter { j in
                        if case .unit(let t) = s.queues[j].first, t == txid { return true }
                        return false
                    }
                    guard atHead.count >= unit.participants else { break }
                    for j in atHead { s.queues[j].popFirst() }
                    s.units[txid] = nil
                    if unit.records.count > 1 {
                        Self.encodeArgs([Array("MULTI".utf8)], &out)
                        for (db, args) in unit.records { Self.encode(db, args, &s, &out) }
                        Self.encodeArgs([Array("EXEC".utf8)], &out)
                    } else if let (db, args) = unit.records.first {
                        Self.encode(db, args, &s, &out)
                    }
                    if !unit.cuts.isEmpty {
                        // Everything before this point is in the snapshot.
                        publish(out, &s)
                        out.removeAll()
                        s.streamDatabase = -1
                        for link in unit.cuts { cutReached(link, offset: s.offset, &s) }
                    }
                    progress = true
                }
            }
        }
        publish(out, &s)
    }

    static func encode(_ db: Int, _ args: [[UInt8]], _ s: inout State, _ out: inout [UInt8]) {
        if db != s.streamDatabase {
            encodeArgs([Array("SELECT".utf8), Array(String(db).utf8)], &out)
            s.streamDatabase = db
        }
        encodeArgs(args, &out)
    }

    static func encodeArgs(_ args: [[UInt8]], _ out: inout [UInt8]) {
        ShardJournal.encodeCommand(args, into: &out)
    }

    /// Appends stream bytes: offset, backlog, every attached replica.
    ///
    /// A replica that is not online yet (its RDB is being made or sent, or
    /// loaded) collects the stream here; past its `client-output-buffer-limit`
    /// it is dropped, as Redis drops it, and syncs again. An online replica's
    /// bytes go to its connection, whose own check applies the same limit.
    private func publish(_ bytes: [UInt8], _ s: inout State) {
        guard !bytes.isEmpty, s.backlogActive else { return }
        s.offset += bytes.count
        s.backlog.append(bytes)
        var overLimit: [ReplicaLink] = []
        for link in s.replicas where link.phase != .waitingCut && link.phase != .closed {
            link.pending.append(contentsOf: bytes)
            if link.phase == .online {
                scheduleFlush(link)
            } else if limits.outputLimit(pubsub: false, replica: true).exceeded(queued: link.pending.count, overSoftSinceMs: &link.overSoftSinceMs) {
                overLimit.append(link)
            }
        }
        for link in overLimit {
            log(ReplicationMaster.outputLimitLogLine(clientID: link.clientID, address: link.address))
            drop(link, &s)
        }
    }

    /// Detaches `link` and closes its connection (on its loop).
    private func drop(_ link: ReplicaLink, _ s: inout State) {
        detach(link, &s)
        link.loop.post { link.connection?.close() }
    }

    private func detach(_ link: ReplicaLink, _ s: inout State) {
        link.phase = .closed
        link.pending = []
        s.replicas.removeAll { $0 === link }
        if s.replicas.isEmpty { s.noReplicasSinceMs = Clock.wallMillis() }
    }

    /// A replica attaches to a freed backlog: a new one starts at the offset
    /// reached (Redis's createReplicationBacklog on the first replica).
    private func reactivateBacklog(_ s: inout State) {
        guard !s.backlogActive else { return }
        s.backlogActive = true
        s.backlog = ReplicationBacklog(capacity: s.backlog.capacity, firstByteOffset: s.offset + 1)
    }

    /// Once a second (loop 0's timer): replicas silent for longer than
    /// `repl-timeout` (no `REPLCONF ACK`) are dropped, as Redis's
    /// replicationCron does (an old-style SYNC replica never ACKs and is
    /// exempt, as there); and a master without replicas for `repl-backlog-ttl`
    /// seconds frees its backlog and takes a new replication ID, so no
    /// replica can continue a history it no longer holds.
    func cron(nowMs: Int64, timeoutMs: Int64, backlogTTLMs: Int64, isReplica: Bool) {
        state.withLock { s in
            let silent = s.replicas.filter { link in
                (link.phase == .online || link.phase == .waitingAck) && !link.legacySync && nowMs - link.lastAckMs > timeoutMs
            }
            for link in silent {
                log("Disconnecting timedout replica (streaming sync): \(link.ip):\(link.listeningPort)")
                drop(link, &s)
            }
            guard backlogTTLMs > 0, s.backlogActive, s.replicas.isEmpty, !isReplica,
                  nowMs - s.noReplicasSinceMs >= backlogTTLMs else { return }
            s.backlogActive = false
            s.backlog = ReplicationBacklog(capacity: s.backlog.capacity, firstByteOffset: 0)
            s.identity = ReplicationIdentity(replid: ReplicationIdentity.randomID(), offset: s.offset)
            s.streamDatabase = -1
            log("Replication backlog freed after \(backlogTTLMs / 1000) seconds without connected replicas.")
        }
    }

    /// A PING into the stream (`repl-ping-replica-period`), as Redis does.
    func ping() {
        state.withLock { s in
            guard !s.replicas.isEmpty else { return }
            var out: [UInt8] = []
            Self.encodeArgs([Array("PING".utf8)], &out)
            publish(out, &s)
        }
    }

    var offset: Int { state.withLock { $0.offset } }

    // MARK: - Replica links

    private func scheduleFlush(_ link: ReplicaLink) {
        guard !link.flushPosted, !link.pending.isEmpty else { return }
        link.flushPosted = true
        link.loop.post { [self] in
            let bytes: [UInt8] = state.withLock { _ in
                link.flushPosted = false
                let taken = link.pending
                link.pending = []
                return taken
            }
            link.send(bytes)
        }
    }

    /// The snapshot's cut reached the stream at `offset`: the replica is told
    /// `+FULLRESYNC`, and from now on collects the stream until its RDB is sent.
    private func cutReached(_ link: ReplicaLink, offset: Int, _ s: inout State) {
        link.phase = .waitingRDB
        link.startOffset = offset
        let line = Array("+FULLRESYNC \(s.identity.replid) \(offset)\r\n".utf8)
        let rdb = link.readyRDB
        link.readyRDB = nil
        let legacy = link.legacySync
        link.loop.post { [self] in
            if !legacy { link.send(line) }
            if let rdb { sendRDB(link, rdb) }
        }
    }

    /// The snapshot for `link` is complete (any thread).
    func rdbReady(_ link: ReplicaLink, _ payload: [UInt8]) {
        state.withLock { _ in
            if link.phase == .waitingCut {
                link.readyRDB = payload
            } else {
                link.loop.post { [self] in sendRDB(link, payload) }
            }
        }
    }

    /// On the link's loop: the RDB (EOF-marked or with its length), then the stream.
    private func sendRDB(_ link: ReplicaLink, _ payload: [UInt8]) {
        var framed: [UInt8]
        if link.capaEOF {
            var mark: [UInt8] = []
            for _ in 0..<40 { mark.append(Array("0123456789abcdef".utf8)[Int.random(in: 0..<16)]) }
            framed = Array("$EOF:".utf8) + mark + [13, 10]
            framed += payload
            framed += mark
        } else {
            framed = Array("$\(payload.count)\r\n".utf8) + payload
        }
        link.send(framed)
        state.withLock { _ in
            // An EOF-marked RDB ends where the replica finds the mark at the end
            // of what it read: nothing may follow it until the replica has
            // loaded it and sent its first ACK (Redis does the same).
            if link.phase == .waitingRDB { link.phase = link.capaEOF ? .waitingAck : .online }
            link.lastAckMs = Clock.wallMillis()
            if link.phase == .online { scheduleFlush(link) }
        }
    }

    /// `PSYNC replid offset`: continues `link` from `offset` when the backlog
    /// still holds it. Returns false (a full sync is needed) otherwise.
    func tryContinue(_ link: ReplicaLink, replid requested: String, offset wanted: Int) -> Bool {
        state.withLock { s in
            let known = requested == s.identity.replid
                || (requested == s.identity.replid2 && wanted <= s.identity.secondOffset)
            guard known, let tail = s.backlog.bytes(from: wanted) else {
                if requested != "?" { s.syncPartialErr += 1 }
                return false
            }
            s.syncPartialOK += 1
            reactivateBacklog(&s)
            link.phase = .online
            link.startOffset = wanted - 1
            link.lastAckMs = Clock.wallMillis()
            s.replicas.append(link)
            let line = Array("+CONTINUE \(s.identity.replid)\r\n".utf8)
            link.loop.post { link.send(line) }
            link.pending = tail
            scheduleFlush(link)
            return true
        }
    }

    func countFullSync() { state.withLock { $0.syncFull += 1 } }

    func remove(_ link: ReplicaLink) {
        state.withLock { s in detach(link, &s) }
    }

    /// `REPLCONF ACK <offset>` from a replica.
    func acknowledge(_ link: ReplicaLink, offset: Int) {
        link.ackOffset.store(offset, ordering: .releasing)
        state.withLock { _ in
            link.lastAckMs = Clock.wallMillis()
            if link.phase == .waitingAck {
                link.phase = .online
                scheduleFlush(link)
            }
        }
    }

    /// Replicas that acknowledged at least `offset`.
    func replicasAcknowledging(_ offset: Int) -> Int {
        state.withLock { s in
            s.replicas.filter { $0.phase == .online && $0.ackOffset.load(ordering: .acquiring) >= offset }.count
        }
    }

    /// `REPLCONF GETACK *` to every online replica (WAIT asks for fresh ACKs).
    func requestAcks() {
        state.withLock { s in
            guard s.replicas.contains(where: { $0.phase == .online }) else { return }
            var out: [UInt8] = []
            Self.encodeArgs([Array("REPLCONF".utf8), Array("GETACK".utf8), Array("*".utf8)], &out)
            publish(out, &s)
        }
    }
}

/// A replication history's name and where this server stands in it.
struct ReplicationIdentity: Sendable {
    var replid: String
    var replid2 = String(repeating: "0", count: 40)
    var secondOffset = -1
    /// The stream offset the history starts from here.
    var offset = 0

    static func randomID() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<40).map { _ in String(Int.random(in: 0..<16, using: &generator), radix: 16) }.joined()
    }
}

/// One replica attached to this master (after SYNC / PSYNC).
final class ReplicaLink: @unchecked Sendable {
    // Invariant: `phase`, `pending`, `flushPosted`, `readyRDB`, `startOffset`
    // change under the feed's mutex; `send` runs on `loop` only.
    enum Phase { case waitingCut, waitingRDB, waitingAck, online, closed }

    let loop: EventLoop
    weak var connection: Connection?
    let clientID: Int
    let address: String
    var listeningPort = 0
    var capaEOF = false
    /// Old-style SYNC: the RDB comes without a `+FULLRESYNC` line.
    var legacySync = false
    var phase = Phase.waitingCut
    var pending: [UInt8] = []
    var flushPosted = false
    var readyRDB: [UInt8]?
    var startOffset = 0
    /// Since when the stream collected for it has been above the soft output limit.
    var overSoftSinceMs: Int64 = 0
    let ackOffset = Atomic<Int>(0)
    var lastAckMs: Int64 = 0

    init(connection: Connection) {
        self.loop = connection.loop
        self.connection = connection
        self.clientID = connection.client.id
        self.address = connection.client.address
    }

    /// The replica's IP as INFO and ROLE show it.
    var ip: String {
        if let colon = address.lastIndex(of: ":") { return String(address[..<colon]) }
        return address
    }

    /// On `loop`: writes raw bytes to the replica's socket.
    func send(_ bytes: [UInt8]) {
        guard let connection, !connection.isClosed, !bytes.isEmpty else { return }
        connection.output.appendRaw(bytes)
        connection.flush()
    }
}

/// `repl-backlog-size` bytes of the most recent stream, for partial resyncs.
struct ReplicationBacklog {
    var capacity: Int
    private var storage: [UInt8] = []
    private var head = 0
    /// The stream offset of the oldest byte held (Redis's 1-based numbering).
    private(set) var firstByteOffset: Int

    init(capacity: Int, firstByteOffset: Int) {
        self.capacity = max(capacity, 16 * 1024)
        self.firstByteOffset = firstByteOffset
    }

    var histlen: Int { storage.count - head }

    mutating func append(_ bytes: [UInt8]) {
        storage.append(contentsOf: bytes)
        let excess = histlen - capacity
        if excess > 0 {
            head += excess
            firstByteOffset += excess
        }
        // Compact once the dead prefix outgrows what is held.
        if head > capacity {
            storage.removeFirst(head)
            head = 0
        }
    }

    /// The bytes from stream offset `offset` (1-based) to the end, or nil when
    /// the backlog no longer (or not yet) holds that offset.
    func bytes(from offset: Int) -> [UInt8]? {
        guard offset >= firstByteOffset, offset <= firstByteOffset + histlen else { return nil }
        return Array(storage[(head + offset - firstByteOffset)...])
    }
}
