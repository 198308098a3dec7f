import DamselflyCommands
import DamselflyPersistence
import DamselflyRuntime
import DamselflyStorage
import DamselflyTransactions
import Glibc
import Synchronization

/// The master side of replication: starting the stream when the first
/// replica arrives, full syncs (a forkless snapshot cut at one point of the
/// stream), WAIT, the periodic PING, and what INFO / ROLE report.
final class ReplicationMaster: @unchecked Sendable {
    // Invariant: `control` guards activation, the per-connection REPLCONF
    // settings and WAIT's waiters; the feed locks itself.
    struct Waiter: @unchecked Sendable {
        // Invariant: `reply` is only called on `loop` (posted there).
        let loop: EventLoop
        let offset: Int
        let needed: Int
        let deadlineMs: Int64?
        let reply: (Int) -> Void
    }

    struct Control {
        var feed: ReplicationFeed?
        var activating: [Deferred]?
        /// REPLCONF settings by client id, before its SYNC / PSYNC.
        var settings: [Int: (port: Int, capaEOF: Bool)] = [:]
        var waiters: [Waiter] = []
        var lastPingMs: Int64 = 0
        var lastCronMs: Int64 = 0
        /// Replicas waiting out `repl-diskless-sync-delay` for one shared
        /// snapshot, and when it starts.
        var waitingSync: [ReplicaLink] = []
        var syncDueMs: Int64 = 0
        /// The history a feed starts from (and where it stands once one exists).
        var identity = ReplicationIdentity(replid: InfoReport.runID)
    }

    /// A continuation that only posts to its loop.
    struct Deferred: @unchecked Sendable {
        let run: () -> Void
    }

    let server: Server
    let control = Mutex(Control())
    /// The feed once replication started (read lock-free by hot paths).
    private let started = Atomic<Bool>(false)

    /// The replica side (REPLICAOF).
    let replica: ReplicationReplica

    init(server: Server) {
        self.server = server
        self.replica = ReplicationReplica(server: server)
    }

    /// This server's own replication ID (what a master turning replica PSYNCs with).
    func currentReplid() -> String {
        if let feed { return feed.state.withLock { $0.identity.replid } }
        return control.withLock { $0.identity.replid }
    }

    /// This server's own stream offset.
    func currentOffset() -> Int {
        if let feed { return feed.offset }
        return control.withLock { $0.identity.offset }
    }

    /// A new replication ID from `offset` on: at promotion the master's ID
    /// (`previousReplid`) becomes the second one, valid up to `offset + 1`;
    /// after a full sync from a master, the old history ends here.
    func shiftHistory(previousReplid: String?, offset: Int) {
        var identity = ReplicationIdentity(replid: ReplicationIdentity.randomID(), offset: offset)
        if let previousReplid {
            identity.replid2 = previousReplid
            identity.secondOffset = offset + 1
        }
        let feed: ReplicationFeed? = control.withLock { c in
            c.identity = identity
            return c.feed
        }
        feed?.restart(identity)
    }

    var feed: ReplicationFeed? {
        guard started.load(ordering: .acquiring) else { return nil }
        return control.withLock { $0.feed }
    }

    func rememberSetting(client: Int, port: Int? = nil, capaEOF: Bool? = nil) {
        control.withLock { c in
            var entry = c.settings[client] ?? (0, false)
            if let port { entry.port = port }
            if let capaEOF { entry.capaEOF = entry.capaEOF || capaEOF }
            c.settings[client] = entry
        }
    }

    func forget(client: Int) { _ = control.withLock { $0.settings.removeValue(forKey: client) } }

    // MARK: - Starting the stream

    /// Starts journaling every write into the stream (once), then runs `then` on `loop`.
    ///
    /// The journaling flag goes on first; a round over every loop then makes
    /// sure any command that computed its arguments without it has been posted
    /// to its shard before the first snapshot's cut is scheduled, so it lands
    /// in that snapshot. The shards get the tap in the same round.
    func activate(from loop: EventLoop, then: @escaping () -> Void) {
        let startNow: Bool = control.withLock { c in
            if c.feed != nil { return false }
            if c.activating != nil {
                c.activating!.append(Deferred { loop.post(then) })
                return false
            }
            c.activating = [Deferred { loop.post(then) }]
            return true
        }
        if !startNow {
            if feed != nil { then() }
            return
        }
        let engine = server.engine
        let backlog = parseHumanSize(server.configState.withLock { $0.redisParameters["repl-backlog-size"] ?? "1mb" }) ?? 1 << 20
        let identity = control.withLock { $0.identity }
        let feed = ReplicationFeed(
            shardCount: engine.shardSet.count, backlogSize: backlog, identity: identity, limits: server.limits,
            log: { [weak self] line in self?.log(line) })
        engine.journalingFlag.store(true, ordering: .releasing)
        engine.shardSet.inOrderOnly.store(true, ordering: .releasing)
        let shards = engine.shardSet.shards
        server.gatherLoops(from: loop, { target -> Int in
            if target.index < shards.count {
                let shard = shards[target.index]
                if shard.journal == nil { shard.journal = ShardJournal(memoryOnlyFor: shard.index) }
                shard.journal?.tap = feed
                shard.updateExpiryHook()
            }
            return 0
        }, done: { [self] _ in
            feed.startUnits(after: engine.shardSet.lastTxid)
            let waiting: [Deferred] = control.withLock { c in
                c.feed = feed
                c.lastPingMs = Clock.wallMillis()
                let w = c.activating ?? []
                c.activating = nil
                return w
            }
            started.store(true, ordering: .releasing)
            startTicker()
            for task in waiting { task.run() }
        })
    }

    // MARK: - Full sync

    /// A replica that needs a full sync: at once, or, with a diskless sync and
    /// `repl-diskless-sync-delay` seconds set, after that delay together with
    /// the replicas that arrive meanwhile (one snapshot for all, as Redis
    /// shares one RDB child), or as soon as `repl-diskless-sync-max-replicas`
    /// wait. With `repl-diskless-sync no` the snapshot goes through a file.
    func fullSync(_ link: ReplicaLink, feed: ReplicationFeed, from loop: EventLoop) {
        let (disk, delayMs, most) = server.configState.withLock { c in
            (c.redisParameters["repl-diskless-sync"] == "no", Self.seconds(c, "repl-diskless-sync-delay", 0),
             Int(c.redisParameters["repl-diskless-sync-max-replicas"] ?? "") ?? 0)
        }
        if disk || delayMs == 0 { return startFullSync([link], feed: feed, disk: disk, from: loop) }
        let now: [ReplicaLink]? = control.withLock { c in
            c.waitingSync.append(link)
            if c.waitingSync.count == 1 { c.syncDueMs = Clock.wallMillis() + delayMs }
            guard most > 0 && c.waitingSync.count >= most else { return nil }
            defer { c.waitingSync = [] }
            return c.waitingSync
        }
        if let now { return startFullSync(now, feed: feed, disk: false, from: loop) }
        log("Delay next BGSAVE for diskless SYNC")
        startTicker()
    }

    /// From the ticker: the delayed replicas whose wait is over.
    private func startDelayedSync(feed: ReplicationFeed, now: Int64) {
        let due: [ReplicaLink] = control.withLock { c in
            guard !c.waitingSync.isEmpty, now >= c.syncDueMs else { return [] }
            defer { c.waitingSync = [] }
            return c.waitingSync
        }
        if !due.isEmpty { startFullSync(due, feed: feed, disk: false, from: server.loops[0]) }
    }

    /// Snapshots every shard at one cut of the stream and sends it to `links`.
    ///
    /// The snapshot begins inside a global transaction, which is itself a unit
    /// of the stream: the replica's offset is where that unit lands, so what
    /// ran before it on any shard is in the RDB and what ran after is in the
    /// stream that follows, exactly once. Through a file (`disk`), the RDB is
    /// written to `dir/dbfilename` (a temporary file renamed, as a save) by a
    /// thread of its own, then read back and sent with its length.
    private func startFullSync(_ links: [ReplicaLink], feed: ReplicationFeed, disk: Bool, from loop: EventLoop) {
        for link in links {
            feed.countFullSync()
            // A file goes with its length, as Redis's disk target does.
            if disk { link.capaEOF = false }
        }
        let deliver: @Sendable ([UInt8]) -> Void = { payload in for link in links { feed.rdbReady(link, payload) } }
        let shardSet = server.engine.shardSet
        let builder = RDBBuilder(shards: shardSet.count) { [self] payload in
            guard disk else { return deliver(payload) }
            let (dir, name) = server.configState.withLock { ($0.dir, $0.dbfilename) }
            _ = LoopThread.spawn(name: "repl-rdb-file") { [self] in
                let path = dir + "/" + name
                guard DurableFile.replace(path, with: payload, temp: dir + "/temp-repl-\(getpid()).rdb"), let stored = server.snapshots.readFile(path) else {
                    log("Replication: can't write the RDB for SYNC to \(path): \(String(cString: strerror(errno)))")
                    for link in links { link.loop.post { link.connection?.close() } }
                    return
                }
                log("Replication: RDB for SYNC saved on disk (\(path)), \(stored.count) bytes")
                deliver(stored)
            }
        }
        var header = RDBWriter()
        header.writeHeader(aux: RDBWriter.standardAux(usedMemory: server.engine.usedMemory))
        builder.append(header.takeBytes())
        let functions = server.engine.functions
        let transaction = Transaction(globalOn: shardSet, loop: loop)
        transaction.schedule {
            for link in links { feed.attachCut(txid: transaction.txid, participants: shardSet.count, link: link) }
            transaction.execute(conclude: true, { shard -> Int in
                let snapshot = ShardSnapshot(keyspace: shard.keyspace, nowMs: Clock.wallMillis())
                snapshot.begin()
                if shard.index == 0 {
                    var writer = RDBWriter()
                    for library in functions.libraries { writer.writeFunctionLibrary(library.code) }
                    builder.append(writer.takeBytes())
                }
                shard.loop.defer_ { builder.slice(snapshot, shard: shard) }
                return 0
            }, done: { _ in })
        }
    }

    // MARK: - WAIT

    /// Parks a WAIT until `needed` replicas acknowledged the stream as it is
    /// now, or the timeout (0: none) passes; `reply` gets the count.
    func wait(needed: Int, timeoutMs: Int, on loop: EventLoop, reply: @escaping (Int) -> Void) {
        let feed = self.feed
        let offset = feed?.offset ?? 0
        let acked = feed?.replicasAcknowledging(offset) ?? 0
        if acked >= needed { return reply(acked) }
        feed?.requestAcks()
        let deadline = timeoutMs > 0 ? Clock.wallMillis() + Int64(timeoutMs) : nil
        control.withLock { $0.waiters.append(Waiter(loop: loop, offset: offset, needed: needed, deadlineMs: deadline, reply: reply)) }
        startTicker()
    }

    private let tickerStarted = Atomic<Bool>(false)

    /// `min-replicas-to-write` and `min-replicas-max-lag` (seconds), as CONFIG SET left them.
    private let minReplicasToWrite = Atomic<Int>(0)
    private let minReplicasMaxLag = Atomic<Int>(10)

    /// Takes `min-replicas-to-write` / `min-replicas-max-lag` from `config` and applies
    /// them at once; the timer then keeps ``Engine/tooFewReplicas`` current as replicas
    /// come, go and acknowledge. `replica-read-only` likewise.
    func configure(_ config: ServerConfig) {
        replica.refreshReadOnly()
        minReplicasToWrite.store(Int(config.redisParameters["min-replicas-to-write"] ?? "") ?? 0, ordering: .relaxed)
        minReplicasMaxLag.store(Int(config.redisParameters["min-replicas-max-lag"] ?? "") ?? 10, ordering: .relaxed)
        refreshWriteQuorum()
        if minReplicasToWrite.load(ordering: .relaxed) > 0 { startTicker() }
    }

    /// Redis's refreshGoodSlavesCount and checkGoodReplicasStatus: a replica counts when it
    /// is online and acknowledged within the lag bound; a server that is itself a replica
    /// never refuses for this reason.
    private func refreshWriteQuorum() {
        let needed = minReplicasToWrite.load(ordering: .relaxed)
        let maxLagMs = Int64(minReplicasMaxLag.load(ordering: .relaxed)) * 1000
        var short = false
        if needed > 0 && maxLagMs > 0 && !replica.isReplica.load(ordering: .relaxed) {
            let now = Clock.wallMillis()
            let good = feed?.state.withLock { s in
                s.replicas.filter { ($0.phase == .online || $0.phase == .waitingAck) && now - $0.lastAckMs <= maxLagMs }.count
            } ?? 0
            short = good < needed
        }
        if server.engine.tooFewReplicas.load(ordering: .relaxed) != short {
            server.engine.tooFewReplicas.store(short, ordering: .relaxed)
        }
    }

    /// Loop 0's 10 ms timer (WAIT deadlines and ACKs, the PING), started once.
    private func startTicker() {
        guard tickerStarted.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        let loop = server.loops[0]
        loop.post { [self] in loop.addPeriodicTimer(intervalMillis: 10) { [self] in tick() } }
    }

    /// Answers the WAITs that are satisfied or timed out.
    private func serveWaiters(feed: ReplicationFeed?) {
        let now = Clock.wallMillis()
        let due: [(Waiter, Int)] = control.withLock { c in
            var done: [(Waiter, Int)] = []
            c.waiters.removeAll { w in
                let acked = feed?.replicasAcknowledging(w.offset) ?? 0
                if acked >= w.needed || (w.deadlineMs.map { now >= $0 } ?? false) {
                    done.append((w, acked))
                    return true
                }
                return false
            }
            return done
        }
        for (w, acked) in due { w.loop.post { w.reply(acked) } }
    }

    /// Every 10 ms on loop 0: WAIT, and once replication started the PING
    /// every `repl-ping-replica-period` seconds and, once a second, the
    /// feed's `repl-timeout` / `repl-backlog-ttl` checks.
    private func tick() {
        let feed = self.feed
        if control.withLock({ !$0.waiters.isEmpty }) { serveWaiters(feed: feed) }
        if minReplicasToWrite.load(ordering: .relaxed) > 0 || server.engine.tooFewReplicas.load(ordering: .relaxed) {
            refreshWriteQuorum()
        }
        guard let feed else { return }
        let now = Clock.wallMillis()
        let (period, timeout, ttl) = server.configState.withLock { c in
            (Self.seconds(c, "repl-ping-replica-period", 10), Self.seconds(c, "repl-timeout", 60), Self.seconds(c, "repl-backlog-ttl", 3600))
        }
        let (ping, cron): (Bool, Bool) = control.withLock { c in
            let ping = now - c.lastPingMs >= period
            if ping { c.lastPingMs = now }
            let cron = now - c.lastCronMs >= 1000
            if cron { c.lastCronMs = now }
            return (ping, cron)
        }
        if ping { feed.ping() }
        startDelayedSync(feed: feed, now: now)
        if cron {
            feed.cron(nowMs: now, timeoutMs: timeout, backlogTTLMs: ttl, isReplica: replica.isReplica.load(ordering: .relaxed))
            // The feed may have taken a new ID (a freed backlog): the one a feed restarts from.
            let identity = feed.state.withLock { $0.identity }
            control.withLock { $0.identity = identity }
        }
    }

    /// A Redis parameter in seconds, as milliseconds.
    static func seconds(_ config: ServerConfig, _ name: String, _ fallback: Int) -> Int64 {
        Int64(config.redisParameters[name].flatMap { Int($0) } ?? fallback) * 1000
    }

    /// A line in the server's log (standard output with --logtostdout).
    func log(_ line: String) {
        let text = line + "\n"
        _ = text.withCString { Glibc.write(server.config.logtostdout ? 1 : 2, $0, strlen($0)) }
    }

    /// Redis's line for a client closed by `client-output-buffer-limit`.
    static func outputLimitLogLine(clientID: Int, address: String) -> String {
        "Client id=\(clientID) addr=\(address) scheduled to be closed ASAP for overcoming of output buffer limits."
    }

    static func outputLimitLogLine(_ client: ClientState) -> String {
        outputLimitLogLine(clientID: client.id, address: client.address)
    }

    // MARK: - Reporting

    /// INFO replication, Redis 7.0's fields (a replica's first).
    func infoFields() -> [(String, String)] {
        let replicaLines: [(String, String)]
        var offset = 0, backlogFirst = 0, histlen = 0, active = false
        var backlogSize = parseHumanSize(server.configState.withLock { $0.redisParameters["repl-backlog-size"] ?? "1mb" }) ?? 1 << 20
        var identity = control.withLock { $0.identity }
        offset = identity.offset
        let now = Clock.wallMillis()
        if let feed {
            let s = feed.state.withLock { s in
                (s.offset, s.backlog.firstByteOffset, s.backlog.histlen, s.backlog.capacity, s.replicas.filter { $0.phase != .closed }, s.identity,
                 s.backlogActive)
            }
            (offset, backlogFirst, histlen, backlogSize, identity, active) = (s.0, s.1, s.2, s.3, s.5, s.6)
            replicaLines = s.4.enumerated().map { i, link in
                let state: String
                switch link.phase {
                case .online, .waitingAck: state = "online"
                case .waitingRDB: state = "send_bulk"
                default: state = "wait_bgsave"
                }
                let lag = link.lastAckMs > 0 ? (now - link.lastAckMs) / 1000 : 0
                return ("slave\(i)", "ip=\(link.ip),port=\(link.listeningPort),state=\(state),offset=\(link.ackOffset.load(ordering: .relaxed)),lag=\(lag)")
            }
        } else {
            replicaLines = []
        }
        var replid = identity.replid
        var head: [(String, String)] = [("role", "master")]
        if let replicaFields = replica.infoFields(), let history = replica.replicaHistory() {
            // A replica reports its master's ID and how far it applied that stream.
            head = replicaFields
            if history.replid != "?" { replid = history.replid }
            offset = history.offset
        }
        return head + [("connected_slaves", String(replicaLines.count))] + replicaLines + [
            ("master_failover_state", "no-failover"),
            ("master_replid", replid),
            ("master_replid2", identity.replid2),
            ("master_repl_offset", String(offset)),
            ("second_repl_offset", String(identity.secondOffset)),
            ("repl_backlog_active", active ? "1" : "0"),
            ("repl_backlog_size", String(backlogSize)),
            ("repl_backlog_first_byte_offset", String(backlogFirst)),
            ("repl_backlog_histlen", String(histlen)),
        ]
    }

    /// INFO stats: sync_full, sync_partial_ok, sync_partial_err.
    func syncCounters() -> (Int, Int, Int) {
        guard let feed else { return (0, 0, 0) }
        return feed.state.withLock { ($0.syncFull, $0.syncPartialOK, $0.syncPartialErr) }
    }

    /// ROLE: `master`, the offset, and each online replica's ip, port and acknowledged offset.
    func role() -> Reply {
        if let slave = replica.role() { return slave }
        guard let feed else { return .array([.bulkString("master"), .integer(0), .array([])]) }
        let (offset, links) = feed.state.withLock { s in (s.offset, s.replicas.filter { $0.phase == .online }) }
        return .array([
            .bulkString("master"), .integer(offset),
            .array(links.map { .array([.bulkString($0.ip), .bulkString(String($0.listeningPort)), .bulkString(String($0.ackOffset.load(ordering: .relaxed)))]) }),
        ])
    }
}

/// An RDB assembled in memory from every shard's slices, then handed over
/// whole with its EOF opcode and checksum.
final class RDBBuilder: @unchecked Sendable {
    // Invariant: `state` under its mutex; slices run on their shard's thread.
    private let state: Mutex<(bytes: [UInt8], remaining: Int)>
    private let done: ([UInt8]) -> Void

    init(shards: Int, done: @escaping ([UInt8]) -> Void) {
        state = Mutex(([], shards))
        self.done = done
    }

    func append(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        state.withLock { $0.bytes.append(contentsOf: bytes) }
    }

    /// On `shard`'s thread: one slice of its keyspace, then the next between commands.
    func slice(_ snapshot: ShardSnapshot, shard: Shard) {
        append(snapshot.step(budget: 512))
        guard snapshot.isFinished else {
            shard.loop.defer_ { self.slice(snapshot, shard: shard) }
            return
        }
        let finished: [UInt8]? = state.withLock { s in
            s.remaining -= 1
            guard s.remaining == 0 else { return nil }
            s.bytes.append(0xFF)
            var crc = CRC64.update(0, s.bytes)
            for _ in 0..<8 {
                s.bytes.append(UInt8(crc & 0xFF))
                crc >>= 8
            }
            return s.bytes
        }
        if let finished { done(finished) }
    }
}
