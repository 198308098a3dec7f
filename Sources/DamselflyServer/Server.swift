import CDamselfly
import DamselflyACL
import DamselflyCommands
import DamselflyRESP
import DamselflyRuntime
import DamselflyStorage
import DamselflyTLS
import DamselflyTransactions
import Glibc
import Synchronization

/// The running server: its loops and their threads, the shards, the listening
/// socket and the connections.
///
/// Start-up: resolve the topology, probe io_uring, create one loop per thread
/// (loop i owns shard i), start the threads, then listen on loop 0, which
/// hands each accepted socket to the loops in turn (round robin).
public final class Server: @unchecked Sendable {
    // Invariant: `connectionsByLoop[i]` is touched only on loop i; `nextLoop`
    // only on loop 0 (the accepting loop); the rest is immutable after start.
    public let config: ServerConfig
    public let engine: Engine
    public let loops: [EventLoop]
    public let port: Int
    public let usesIOUring: Bool
    let slowlog: SlowLog
    let pubsub = PubSubRegistry()
    /// CLIENT TRACKING's clients, where the shards' invalidations go.
    let tracking: TrackingRegistry
    private(set) var snapshots: SnapshotController!
    /// The master side of replication (SYNC / PSYNC, the stream, WAIT).
    private(set) var replication: ReplicationMaster!
    let configState: Mutex<ServerConfig>
    /// Client limits CONFIG SET changes at run time (query/output buffers, maxclients, timeout).
    let limits: ClientLimits
    private var threads: [pthread_t] = []
    private var listenFD: Int32 = -1
    private var adminListenFD: Int32 = -1
    private var tlsListenFD: Int32 = -1
    /// The TLS context when `--tls` or `--tls_port` is set (made before any port is bound,
    /// remade by CONFIG SET tls-*): read by the accepting loops for each new TLS client.
    private let tlsContextBox = Mutex<TLSContext?>(nil)
    var tlsEnabled: Bool { config.tls || config.tlsPort > 0 }
    /// The TLS port actually bound (0: none).
    public private(set) var boundTLSPort = 0
    private var nextLoop = 0
    private var connectionsByLoop: [[ObjectIdentifier: Connection]]
    private let nextClientID = Atomic<Int>(0)
    private let shuttingDown = Atomic<Bool>(false)
    let peakMemory = Atomic<Int>(0)
    /// Used memory when the server began accepting (MEMORY STATS startup.allocated).
    let startupMemory = Atomic<Int>(0)
    /// DEBUG SET-ACTIVE-EXPIRE: whether the shards' timers expire keys nobody reads.
    let activeExpireEnabled = Atomic<Bool>(true)
    /// LATENCY's events and `latency-monitor-threshold`.
    let latency = LatencyMonitor()
    /// CLIENT PAUSE / UNPAUSE.
    let clientPause: ClientPause
    let executablePath: String

    /// Builds the server: loops, shards, command table. Nothing runs yet.
    public init(config: ServerConfig, executablePath: String = "") {
        self.config = config
        self.configState = Mutex(config)
        self.limits = ClientLimits(config)
        self.executablePath = executablePath
        let topology = config.resolvedTopology(availableCPUs: Int(dfly_available_cpus()))
        EventLoop.spinNanos = UInt64(config.pollBeforeSleepMicros) * 1000
        let wantIOUring = !config.forceEpoll && EventLoop.ioUringAvailable()
        usesIOUring = wantIOUring
        loops = (0..<topology.threads).map { EventLoop(index: $0, preferIOUring: wantIOUring) }
        clientPause = ClientPause(loops: loops)
        let shardSet = ShardSet(
            loops: loops, shardCount: topology.shards, databaseCount: config.dbnum, lockOnHashtags: config.lockOnHashtags,
            roundRobinPrefix: config.shardRoundRobinPrefix)
        // No loop runs yet: the shards' databases take the start-up classes directly.
        let notifyFlags = KeyspaceEventClass.parse(config.notifyKeyspaceEvents) ?? []
        shardSet.keyspaceEvents.flags.store(notifyFlags.rawValue, ordering: .relaxed)
        for shard in shardSet.shards { shard.keyspace.setNotifyFlags(notifyFlags.rawValue) }
        let registry = CommandRegistry(loopCount: loops.count)
        engine = Engine(
            shardSet: shardSet, registry: registry, databaseCount: config.dbnum, maxMemory: config.maxmemory,
            maxBulkLength: config.maxBulkLen, requirePass: config.requirepass,
            singleHopBlocking: config.singlehopBlocking, journaling: config.appendonly)
        for shard in shardSet.shards { shard.keyspace.setExpiryHold(clientPause.hold) }
        engine.scripts.configure(timeLimitMillis: config.luaTimeLimit, defaultFlags: config.defaultLuaFlags)
        shardSet.configureEviction(maxMemory: config.maxmemory, settings: config.evictionSettings)
        latency.configure(config)
        tracking = TrackingRegistry(hub: engine.shardSet.tracking)
        slowlog = SlowLog(thresholdMicros: config.slowlogLogSlowerThan, maxLength: config.slowlogMaxLen)
        connectionsByLoop = Array(repeating: [:], count: loops.count)
        port = config.port
        StringFamily.register(registry)
        StringFamily.registerLCS(registry)
        GenericFamily.register(registry)
        GenericFamily.registerSwapDB(registry)
        ListFamily.register(registry)
        HashFamily.register(registry)
        SetFamily.register(registry)
        SortedSetFamily.register(registry)
        GeoFamily.register(registry)
        SortFamily.register(registry)
        StreamFamily.register(registry)
        BitFamily.register(registry)
        HyperLogLogFamily.register(registry)
        BlockingFamily.register(registry)
        ScriptFamily.register(registry)
        FunctionFamily.register(registry)
        ConnectionFamily.register(registry, server: self)
        ServerFamily.register(registry, server: self)
        ClusterFamily.register(registry, server: self)
        MultiFamily.register(registry, server: self)
        PubSubFamily.register(registry, server: self)
        MonitorFamily.register(registry)
        PersistenceFamily.register(registry, server: self)
        MigrateFamily.register(registry)
        replication = ReplicationMaster(server: self)
        ReplicationFamily.register(registry, server: self)
        DebugFamily.register(registry, server: self)
        MemoryFamily.register(registry, server: self)
        LatencyFamily.register(registry, server: self)
        AclFamily.register(registry, server: self)
        if !config.aclfile.isEmpty {
            switch ACLFile.load(config.aclfile) {
            case .success(let users): _ = engine.acl.replaceAll(users)
            case .failure(let error):
                _ = "damselfly: \(error.message)\n".withCString { Glibc.write(2, $0, strlen($0)) }
                exit(1)
            }
        }
        snapshots = SnapshotController(server: self)
        ConfigParameters.applyEncodingLimits(config)
        let pubsub = self.pubsub
        shardSet.keyspaceEvents.connect { channel, message in _ = pubsub.publish(channel: channel, message: message) }
    }

    /// What start-up loaded, for the log.
    public private(set) var startupLog = ""

    /// The port actually bound (differs from `config.port` when it was 0).
    public private(set) var boundPort = 0

    /// Binds, starts the threads and begins accepting. Throws a message on failure.
    public func start() throws(ServerError) {
        // The dataset first: no client is accepted before it is loaded.
        snapshots.removeStaleTempFiles()
        do {
            let loaded = try snapshots.load()
            if loaded > 0 { startupLog = "loaded \(loaded) keys from \(snapshots.path)" }
        } catch {
            throw ServerError.load(error.description)
        }
        let journalFrom = snapshots.journalGeneration
        if tlsEnabled {
            do {
                let context = try Self.makeTLSContext(config)
                tlsContextBox.withLock { $0 = context }
            } catch {
                throw ServerError.tls(error.description)
            }
        }
        let fd = dfly_listen_tcp(config.bind, Int32(config.port), 4096)
        guard fd >= 0 else { throw ServerError.listen(config.bind, config.port, String(cString: strerror(-fd))) }
        listenFD = fd
        boundPort = Int(dfly_socket_port(fd))
        // The other ports; one that cannot be bound closes those already bound.
        func listenAlso(_ bind: String, _ port: Int, backlog: Int32) throws(ServerError) -> Int32 {
            let other = dfly_listen_tcp(bind, Int32(port), backlog)
            guard other >= 0 else {
                for open in [listenFD, adminListenFD] where open >= 0 { Glibc.close(open) }
                listenFD = -1
                adminListenFD = -1
                throw ServerError.listen(bind, port, String(cString: strerror(-other)))
            }
            return other
        }
        if config.adminPort > 0 {
            adminListenFD = try listenAlso(config.adminBind.isEmpty ? config.bind : config.adminBind, config.adminPort, backlog: 512)
        }
        if config.tlsPort > 0 {
            tlsListenFD = try listenAlso(config.bind, config.tlsPort, backlog: 4096)
            boundTLSPort = Int(dfly_socket_port(tlsListenFD))
        }
        // Before the loops allocate: see MemoryTrim.pinThresholds for why the
        // periodic release needs glibc's thresholds held where they start.
        if config.memReleaseInterval > 0 { MemoryTrim.pinThresholds() }
        for loop in loops {
            let cpu: Int? = config.pinThreads ? loop.index % Int(dfly_available_cpus()) : nil
            threads.append(LoopThread.spawn(name: "proactor\(loop.index)", cpu: cpu) { loop.run() })
        }
        for loop in loops { while !loop.isReady { sched_yield() } }
        if config.appendonly { startJournal(from: journalFrom) }
        replication.replica.followConfigured(config)
        startupMemory.store(engine.usedMemory, ordering: .relaxed)
        // Active expiry and stats on every shard, `hz` times a second.
        configureTracking(config)
        for shard in engine.shardSet.shards {
            let interval = 1000 / max(1, config.hz)
            shard.loop.post { [weak self] in
                shard.loop.addPeriodicTimer(intervalMillis: interval) {
                    guard !shard.isLent else { return }
                    shard.trackingCron()
                    if let self, self.activeExpireEnabled.load(ordering: .relaxed) {
                        let started = Clock.monotonicNanos()
                        _ = shard.keyspace.activeExpire(nowMs: Clock.wallMillis())
                        self.latency.recordIfSlow("expire-cycle", nanos: Clock.monotonicNanos() &- started)
                    }
                    shard.publishStats()
                    self?.notePeakMemory()
                }
            }
        }
        let clientPause = self.clientPause
        for loop in loops {
            let counters = engine.loopCounters[loop.index]
            let blocked = engine.blockedClients[loop.index]
            loop.post {
                loop.addPeriodicTimer(intervalMillis: 1000) {
                    counters.sampleOps(nowNanos: Clock.monotonicNanos())
                    // Parked clients whose close the loop missed (EventLoop.peerHasClosed).
                    blocked.checkPeers()
                }
                // Blocking-command timeouts, to the millisecond or two.
                loop.addPeriodicTimer(intervalMillis: 2) { blocked.expire(nowNanos: Clock.monotonicNanos()) }
                // Clients held by a CLIENT PAUSE whose deadline passed go on (one check of an empty list otherwise).
                loop.addPeriodicTimer(intervalMillis: 10) { clientPause.resumeIfEnded(on: loop) }
            }
        }
        if config.memReleaseInterval > 0 {
            // Free memory back to the kernel (see MemoryTrim): every loop's receive
            // pool; malloc_trim once for the process, from the first loop.
            let interval = config.memReleaseInterval * 1000
            for loop in loops {
                loop.post {
                    loop.addPeriodicTimer(intervalMillis: interval) {
                        loop.releaseIdlePages()
                        if loop.index == 0 { MemoryTrim.trimHeap() }
                    }
                }
            }
        }
        for loop in loops {
            // Always armed: CONFIG SET timeout may turn the idle timeout on later.
            loop.post { [weak self] in
                loop.addPeriodicTimer(intervalMillis: 1000) { self?.closeIdleConnections(on: loop) }
            }
        }
        let logFD: Int32 = config.logtostdout ? 1 : 2
        engine.shardSet.startWatchdog(timeoutMillis: config.txScheduleTimeoutMs) { line in
            let text = line + "\n"
            _ = text.withCString { Glibc.write(logFD, $0, strlen($0)) }
        }
        let acceptLoop = loops[0]
        acceptLoop.post { [self] in
            // `--tls` makes the client port TLS (Dragonfly's flag); `--tls_port` adds one (Redis's).
            acceptLoop.listen(fd: fd) { [self] clientFD in self.accepted(clientFD, admin: false, tls: config.tls) }
            if adminListenFD >= 0 {
                acceptLoop.listen(fd: adminListenFD) { [self] clientFD in self.accepted(clientFD, admin: true, tls: false) }
            }
            if tlsListenFD >= 0 {
                acceptLoop.listen(fd: tlsListenFD) { [self] clientFD in self.accepted(clientFD, admin: false, tls: true) }
            }
            acceptLoop.addPeriodicTimer(intervalMillis: 1000) { [self] in snapshots.checkRules(on: acceptLoop) }
        }
    }

    /// Replays the journal after the snapshot, then opens a fresh generation
    /// of per-shard journal files and flushes them from each shard's loop.
    private func startJournal(from generation: Int) {
        let replay = JournalReplay(server: self, directory: config.dir, baseName: config.appendfilename)
        let existing = replay.existingFiles()
        let applied = replay.replay(fromGeneration: generation)
        if applied > 0 { startupLog += (startupLog.isEmpty ? "" : "; ") + "replayed \(applied) journaled commands" }
        let next = max(generation, (existing.map(\.generation).max() ?? -1) + 1)
        let fsync = ShardJournal.Fsync(rawValue: config.appendfsync.lowercased()) ?? .everysec
        let opened = Atomic<Int>(0)
        for shard in engine.shardSet.shards {
            shard.loop.post { [config] in
                shard.journal = ShardJournal(
                    directory: config.dir, baseName: config.appendfilename, shardIndex: shard.index, generation: next, fsync: fsync)
                shard.loop.addPeriodicTimer(intervalMillis: 10) { shard.journal?.flush() }
                if fsync == .always {
                    shard.loop.syncHook = { shard.journal?.flush(sync: true) }
                }
                opened.add(1, ordering: .releasing)
            }
        }
        while opened.load(ordering: .acquiring) < engine.shardSet.count { sched_yield() }
    }

    func notePeakMemory() {
        let used = engine.usedMemory
        var peak = peakMemory.load(ordering: .relaxed)
        while used > peak {
            let (done, current) = peakMemory.compareExchange(expected: peak, desired: used, ordering: .relaxed)
            if done { break }
            peak = current
        }
    }

    // MARK: - Connections

    /// On loop 0: hand the socket to the next loop in turn.
    /// `admin`: accepted on `--admin_port`, whose clients `maxclients` does not turn away;
    /// `tls`: the client speaks TLS.
    private func accepted(_ fd: Int32, admin: Bool, tls: Bool) {
        let target = loops[nextLoop % loops.count]
        nextLoop += 1
        // Adopted at once when it stays on the accepting loop: a busy
        // script's hook accepts too (EventLoop.serveClientsWhileBusy) but
        // never runs the inbox, and the new client must get its BUSY.
        if target.inLoopThread { return adopt(fd, on: target, admin: admin, tls: tls) }
        target.post { [self] in adopt(fd, on: target, admin: admin, tls: tls) }
    }

    private func adopt(_ fd: Int32, on loop: EventLoop, admin: Bool, tls: Bool) {
        let counters = engine.loopCounters[loop.index]
        counters.connectionsReceived += 1
        var connected = 0
        if !admin {
            for c in engine.loopCounters { connected += c.connectedClients.load(ordering: .relaxed) }
        }
        if (!admin && connected >= limits.maxClients.load(ordering: .relaxed)) || shuttingDown.load(ordering: .relaxed) {
            counters.rejectedConnections += 1
            let message = "-ERR max number of clients reached\r\n"
            _ = message.withCString { Glibc.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
            Glibc.close(fd)
            return
        }
        let address = Self.socketName(fd, local: false)
        if limits.protectedMode.load(ordering: .relaxed) && engine.requirePass.isEmpty && !ClientState.isLocal(address) {
            counters.rejectedConnections += 1
            _ = Self.protectedModeDenial.withCString { Glibc.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
            Glibc.close(fd)
            return
        }
        dfly_prepare_client_socket(fd, 0, Int32(config.tcpKeepalive))
        let id = nextClientID.add(1, ordering: .relaxed).newValue
        let client = ClientState(id: id, loop: loop, authenticated: engine.defaultUserNeedsNoAuth)
        client.user = engine.acl.defaultUser
        client.createdAtMs = Clock.wallMillis()
        client.lastCommandAtNanos = Clock.monotonicNanos()
        client.address = address
        client.localAddress = Self.socketName(fd, local: true)
        let connection = Connection(server: self, loop: loop, client: client)
        if tls {
            guard let context = tlsContextBox.withLock({ $0 }), let session = TLSSession(context) else {
                Glibc.close(fd)
                return
            }
            connection.tls = session
        }
        connectionsByLoop[loop.index][ObjectIdentifier(connection)] = connection
        counters.connectedClients.add(1, ordering: .relaxed)
        connection.socket = loop.register(fd: fd, handler: connection)
    }

    /// What Redis 7.0 sends a client it refuses in protected mode (its text, word for word).
    static let protectedModeDenial =
        "-DENIED Redis is running in protected mode because protected mode is enabled and no password is set "
        + "for the default user. In this mode connections are only accepted from the loopback interface. If you "
        + "want to connect from external computers to Redis you may adopt one of the following solutions: 1) Just "
        + "disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by "
        + "connecting to Redis from the same host the server is running, however MAKE SURE Redis is not publicly "
        + "accessible from internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively "
        + "you can just disable the protected mode by editing the Redis configuration file, and setting the protected "
        + "mode option to 'no', and then restarting the server. 3) If you started the server manually just for "
        + "testing, restart it with the '--protected-mode no' option. 4) Setup a an authentication password for the "
        + "default user. NOTE: You only need to do one of the above things in order for the server to start "
        + "accepting connections from the outside.\r\n"

    static func socketName(_ fd: Int32, local: Bool) -> String {
        var buffer = [CChar](repeating: 0, count: 96)
        _ = dfly_peer_name(fd, &buffer, 96, local ? 1 : 0)
        return String(cString: buffer)
    }

    /// Connections moved to the loop of the shard their blocking pops use.
    let connectionMigrations = Atomic<Int>(0)

    /// On the old loop, after the socket was detached: re-creates the
    /// connection on `target` and feeds it the bytes not yet run.
    func migrate(_ connection: Connection, fd: Int32, pendingInput: [UInt8], to target: EventLoop) {
        let old = connection.loop
        if connectionsByLoop[old.index].removeValue(forKey: ObjectIdentifier(connection)) != nil {
            engine.loopCounters[old.index].connectedClients.add(-1, ordering: .relaxed)
        }
        connectionMigrations.add(1, ordering: .relaxed)
        let client = connection.client.moved(to: target)
        target.post { [self] in
            let moved = Connection(server: self, loop: target, client: client)
            connectionsByLoop[target.index][ObjectIdentifier(moved)] = moved
            engine.loopCounters[target.index].connectedClients.add(1, ordering: .relaxed)
            moved.socket = target.register(fd: fd, handler: moved)
            if !pendingInput.isEmpty {
                pendingInput.withUnsafeBytes { moved.socketReceived($0) }
            }
        }
    }

    /// Called on the connection's loop when it closed.
    func connectionClosed(_ connection: Connection) {
        if connectionsByLoop[connection.loop.index].removeValue(forKey: ObjectIdentifier(connection)) != nil {
            engine.loopCounters[connection.loop.index].connectedClients.add(-1, ordering: .relaxed)
        }
    }

    /// The connections of `loop` (call on that loop).
    func connections(on loop: EventLoop) -> [Connection] {
        Array(connectionsByLoop[loop.index].values)
    }

    /// Redis's `timeout`: clients parked in a blocking command or subscribed to channels
    /// are never idle (they wait for the server, not the other way round).
    private func closeIdleConnections(on loop: EventLoop) {
        let timeout = limits.timeoutSeconds.load(ordering: .relaxed)
        guard timeout > 0 else { return }
        for connection in connections(on: loop)
        where connection.idleSeconds > timeout && connection.client.blockedOn == nil && connection.subscriptionCount == 0
            && !connection.isHeldByPause {
            connection.kill()
        }
    }

    /// Runs `operation` on every loop and gathers the results on `loop`.
    func gatherLoops<R>(from loop: EventLoop, _ operation: @escaping (EventLoop) -> R, done: @escaping ([R]) -> Void) {
        var results = [R?](repeating: nil, count: loops.count)
        var remaining = loops.count
        for target in loops {
            let deliver: (R) -> Void = { value in
                results[target.index] = value
                remaining -= 1
                if remaining == 0 { done(results.map { $0! }) }
            }
            if target === loop {
                deliver(operation(target))
            } else {
                target.post {
                    let value = operation(target)
                    loop.post { deliver(value) }
                }
            }
        }
    }

    // MARK: - Shutdown

    /// How the next shutdown saves: SHUTDOWN SAVE / NOSAVE override the rules.
    let shutdownSaveMode = Atomic<Int>(0)  // 0: by the save rules, 1: save, 2: don't

    /// Asks the main thread to shut down (SHUTDOWN command): SIGTERM to ourselves.
    func requestShutdown(save: Bool?) {
        shutdownSaveMode.store(save == nil ? 0 : (save! ? 1 : 2), ordering: .relaxed)
        kill(getpid(), SIGTERM)
    }

    /// Stops accepting, finishes in-flight commands, closes connections and
    /// stops the loops; returns once every thread has exited.
    public func shutdown() {
        guard !shuttingDown.exchange(true, ordering: .relaxed) else { return }
        // A script looping on a loop thread would keep that thread from ever
        // stopping: SHUTDOWN (NOSAVE, while busy) stops it, written or not.
        engine.scripts.killAll()
        let acceptLoop = loops[0]
        acceptLoop.post { acceptLoop.stopListening() }
        // Save first (while the loops still run the snapshot slices), as
        // Redis does when save rules are set or SHUTDOWN SAVE asked for it.
        let mode = shutdownSaveMode.load(ordering: .relaxed)
        let hasRules = !SnapshotController.rules(configState.withLock { $0.save }).isEmpty
        if mode == 1 || (mode == 0 && hasRules) {
            _ = snapshots.saveAndWait()
        }
        for loop in loops {
            loop.post { [self] in
                for connection in connections(on: loop) { connection.kill() }
            }
        }
        // Give in-flight hops a moment to finish, then stop.
        let deadline = Clock.monotonicNanos() + 200_000_000
        while Clock.monotonicNanos() < deadline {
            var open = 0
            for c in engine.loopCounters { open += c.connectedClients.load(ordering: .relaxed) }
            if open == 0 { break }
            usleep(5_000)
        }
        for shard in engine.shardSet.shards {
            shard.loop.post { shard.journal?.close() }
        }
        for loop in loops { loop.stop() }
        for thread in threads { LoopThread.join(thread) }
        snapshots.abandonInProgressSave()
        if listenFD >= 0 { Glibc.close(listenFD) }
        if adminListenFD >= 0 { Glibc.close(adminListenFD) }
        if tlsListenFD >= 0 { Glibc.close(tlsListenFD) }
    }
}

public enum ServerError: Error, CustomStringConvertible {
    case listen(String, Int, String)
    case load(String)
    case tls(String)
    public var description: String {
        switch self {
        case .listen(let host, let port, let reason): return "cannot listen on \(host):\(port): \(reason)"
        case .load(let reason): return "cannot load the snapshot, refusing to start on half a dataset: \(reason)"
        case .tls(let reason): return "cannot set up TLS: \(reason)"
        }
    }
}

extension Server {
    /// The server's TLS context for the `tls*` settings of `config`.
    static func makeTLSContext(_ config: ServerConfig) throws(TLSSetupError) -> TLSContext {
        try TLSContext(
            certFile: config.tlsCertFile, keyFile: config.tlsKeyFile, keyFilePass: config.tlsKeyFilePass,
            caCertFile: config.tlsCaCertFile, caCertDir: config.tlsCaCertDir,
            authClients: TLSContext.ClientAuth(redisName: config.tlsAuthClients), protocols: config.tlsProtocols,
            ciphers: config.tlsCiphers, ciphersuites: config.tlsCiphersuites,
            preferServerCiphers: config.tlsPreferServerCiphers)
    }

    /// CONFIG SET of a `tls-*` setting: new TLS clients get a context made from `config`;
    /// connected ones keep their sessions. False (nothing changed) when it cannot be made.
    func reloadTLS(_ config: ServerConfig) -> Bool {
        guard tlsEnabled, let context = try? Self.makeTLSContext(config) else { return !tlsEnabled }
        tlsContextBox.withLock { $0 = context }
        return true
    }
}

extension TLSContext.ClientAuth {
    /// Redis's `tls-auth-clients` words: yes (the default), no, optional.
    init(redisName: String) {
        switch redisName.lowercased() {
        case "no": self = .no
        case "optional": self = .optional
        default: self = .yes
        }
    }
}

extension Server {
    /// Connects the shards' tracking hub to the registry and applies
    /// `tracking-table-max-keys` (kept with Redis's other stored parameters).
    func configureTracking(_ config: ServerConfig) {
        let hub = engine.shardSet.tracking
        if hub.deliver == nil {
            let registry = tracking
            hub.deliver = { registry.deliver($0) }
            hub.onFlush = { registry.flushed() }
        }
        hub.maxKeys.store(Int(config.redisParameters["tracking-table-max-keys"] ?? "") ?? 1_000_000, ordering: .relaxed)
    }
}
