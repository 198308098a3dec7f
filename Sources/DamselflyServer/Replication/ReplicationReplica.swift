import CDamselfly
import DamselflyCommands
import DamselflyPersistence
import DamselflyRESP
import DamselflyRuntime
import DamselflyStorage
import DamselflyTransactions
import Glibc
import Synchronization

/// The replica side of replication: `REPLICAOF host port` starts a link
/// thread that connects, authenticates, PSYNCs, loads a full sync's RDB
/// across the shards and then applies the master's stream through the
/// ordinary command handlers (``MasterExecutor``), acknowledging offsets.
///
/// The link has its own thread with blocking socket calls: the handshake, the
/// RDB transfer and the stream are one sequential conversation, and the thread
/// waits for each batch of commands to be applied before reading on, so the
/// stream is applied in order and one batch at a time while the loops serve
/// the clients' reads.
final class ReplicationReplica: @unchecked Sendable {
    // Invariant: `state` under its mutex; the link thread of the current
    // generation is the only one that reads the socket and runs the executor.
    enum LinkState: String { case connect, connecting, handshake, sync, connected }

    struct State {
        var host: String?
        var port = 0
        /// Bumped by every REPLICAOF: an older link thread sees it and ends.
        var generation = 0
        var link = LinkState.connect
        /// The master's replication ID and the offset of the stream applied (PSYNC's cache).
        var masterReplid = "?"
        var offset = -1
        var readOffset = -1
        var lastIOMs: Int64 = 0
        var downSinceMs: Int64 = 0
        var fd: Int32 = -1
        var syncTotal = -1
        var syncRead = 0
    }

    let server: Server
    let state = Mutex(State())
    /// Whether this server is a replica now (read by Connection.dispatch: one load).
    let isReplica = Atomic<Bool>(false)
    /// Whether the link is up (`connected`): a replica's reads then take no lock.
    private let linkUp = Atomic<Bool>(false)

    init(server: Server) {
        self.server = server
    }

    // MARK: - REPLICAOF

    /// `REPLICAOF host port`: false when already replicating that master.
    func follow(host: String, port: Int) -> Bool {
        let generation: Int? = state.withLock { s in
            if s.host == host && s.port == port { return nil }
            let keepsHistory = s.host != nil
            s.host = host
            s.port = port
            s.generation += 1
            if s.fd >= 0 { shutdown(s.fd, Int32(SHUT_RDWR)) }
            s.link = .connect
            linkUp.store(false, ordering: .relaxed)
            s.downSinceMs = Clock.wallMillis()
            if !keepsHistory {
                // A master turning replica: PSYNC continues its own history
                // (Redis's "cached master" made from the master's own ID).
                s.masterReplid = server.replication.currentReplid()
                s.offset = server.replication.currentOffset()
            }
            return s.generation
        }
        guard let generation else { return false }
        isReplica.store(true, ordering: .releasing)
        refreshReadOnly()
        for shard in server.engine.shardSet.shards { shard.keyspace.expiryHold?.holdForReplica(true) }
        _ = LoopThread.spawn(name: "replica-link") { [self] in run(generation: generation) }
        return true
    }

    /// `--replicaof host:port`: a replica from the start (once the loops run).
    func followConfigured(_ config: ServerConfig) {
        guard let master = ServerConfig.replicaMaster(config.replicaof) else { return }
        _ = follow(host: master.host, port: master.port)
    }

    /// `REPLICAOF NO ONE`: ends the link; the master's history becomes this
    /// server's second ID so its own replicas can PSYNC on. The stream
    /// starts at once (as Redis keeps its backlog) so that writes from now on
    /// reach the replicas that continue; `then` runs on `loop` once it has.
    func promote(from loop: EventLoop, then: @escaping () -> Void) {
        guard promote() else { return then() }
        server.replication.activate(from: loop, then: then)
    }

    @discardableResult
    private func promote() -> Bool {
        let previous: (String, Int)? = state.withLock { s in
            guard s.host != nil else { return nil }
            s.host = nil
            s.port = 0
            s.generation += 1
            if s.fd >= 0 { shutdown(s.fd, Int32(SHUT_RDWR)) }
            s.link = .connect
            linkUp.store(false, ordering: .relaxed)
            return (s.masterReplid, s.offset)
        }
        guard let (replid, offset) = previous else { return false }
        isReplica.store(false, ordering: .releasing)
        refreshReadOnly()
        for shard in server.engine.shardSet.shards { shard.keyspace.expiryHold?.holdForReplica(false) }
        guard replid != "?" && offset >= 0 else { return false }
        server.replication.shiftHistory(previousReplid: replid, offset: offset)
        return true
    }

    /// CLIENT KILL TYPE master: drops the link (it reconnects with PSYNC). Returns the count killed.
    func killLink() -> Int {
        state.withLock { s in
            guard s.host != nil, s.fd >= 0, s.link == .connected else { return 0 }
            shutdown(s.fd, Int32(SHUT_RDWR))
            return 1
        }
    }

    /// Keeps ``Engine/readOnlyReplica`` true while this is a replica with
    /// `replica-read-only yes` (REPLICAOF, REPLICAOF NO ONE, CONFIG SET).
    func refreshReadOnly() {
        let readOnly = isReplica.load(ordering: .acquiring)
            && server.configState.withLock({ $0.redisParameters["replica-read-only"] ?? "yes" }) == "yes"
        server.engine.readOnlyReplica.store(readOnly, ordering: .releasing)
    }

    /// The refusal Connection.dispatch sends a client while this is a replica, or nil.
    func refusal(_ spec: CommandSpec) -> String? {
        // Redis's order: READONLY, then MASTERDOWN. EVAL and FCALL are not writes
        // here (`may_replicate`): a script that declares writes refuses itself, one
        // without a `#!lua` line at its first write.
        if spec.writesAsRedis && server.engine.readOnlyReplica.load(ordering: .relaxed) {
            return Engine.readOnlyReplicaError
        }
        if !linkUp.load(ordering: .relaxed) && !spec.flags.contains(.stale)
            && server.configState.withLock({ $0.redisParameters["replica-serve-stale-data"] }) == "no" {
            return "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."
        }
        return nil
    }

    private func current(_ generation: Int) -> Bool { state.withLock { $0.generation == generation } }

    // MARK: - The link thread

    private func run(generation: Int) {
        let executor = MasterExecutor(server: server)
        var attempt = 0
        while current(generation) {
            if attempt > 0 {
                // Redis retries once a second (replicationCron).
                for _ in 0..<10 where current(generation) { usleep(100_000) }
                guard current(generation) else { break }
            }
            attempt += 1
            let link = MasterLink()
            session(link, generation: generation, executor: executor)
            let wasConnected: Bool = state.withLock { s in
                let was = s.generation == generation && s.link == .connected
                if s.generation == generation {
                    s.link = .connect
                    linkUp.store(false, ordering: .relaxed)
                    s.fd = -1
                    if was { s.downSinceMs = Clock.wallMillis() }
                }
                return was
            }
            link.close()
            if wasConnected { attempt = 0; continue }
        }
    }

    private func setState(_ generation: Int, _ body: (inout State) -> Void) -> Bool {
        state.withLock { s in
            guard s.generation == generation else { return false }
            body(&s)
            return true
        }
    }

    /// One connection to the master, from connect to the link's end.
    private func session(_ link: MasterLink, generation: Int, executor: MasterExecutor) {
        let (host, port) = state.withLock { ($0.host ?? "", $0.port) }
        guard setState(generation, { $0.link = .connecting }) else { return }
        let timeoutMs = server.configState.withLock { ReplicationMaster.seconds($0, "repl-timeout", 60) }
        guard link.connect(host: host, port: port, timeoutMs: timeoutMs) else { return }
        guard setState(generation, { $0.fd = link.fd; $0.link = .handshake }) else { return }
        let (auth, user) = server.configState.withLock {
            ($0.redisParameters["masterauth"] ?? "", $0.redisParameters["masteruser"] ?? "")
        }
        // PING first: a master that wants AUTH answers -NOAUTH, which is fine.
        guard link.send(["PING"]), let pong = link.readLine() else { return }
        if pong.hasPrefix("-") && !pong.hasPrefix("-NOAUTH") && !pong.hasPrefix("-NOPERM") && !pong.hasPrefix("-ERR operation not permitted") {
            return
        }
        if !auth.isEmpty {
            guard link.send(user.isEmpty ? ["AUTH", auth] : ["AUTH", user, auth]), let reply = link.readLine(), reply.hasPrefix("+") else { return }
        }
        guard link.send(["REPLCONF", "listening-port", String(server.boundPort)]), link.readLine() != nil else { return }
        guard link.send(["REPLCONF", "capa", "eof", "capa", "psync2"]), link.readLine() != nil else { return }
        let (replid, offset) = state.withLock { ($0.masterReplid, $0.offset) }
        let psync = replid == "?" || offset < 0 ? ["PSYNC", "?", "-1"] : ["PSYNC", replid, String(offset + 1)]
        guard link.send(psync), var answer = link.readLine() else { return }
        while answer.isEmpty { guard let next = link.readLine() else { return }; answer = next }
        if answer.hasPrefix("+FULLRESYNC") {
            let parts = answer.split(separator: " ")
            guard parts.count >= 3, let start = Int(parts[2]) else { return }
            guard setState(generation, { $0.link = .sync; $0.syncTotal = -1; $0.syncRead = 0 }) else { return }
            let file = diskLoadPath()
            defer { if let file { unlink(file) } }
            server.replication.log("MASTER <-> REPLICA sync: receiving the RDB to " + (file.map { "disk (\($0))" } ?? "memory"))
            guard let rdb = receiveRDB(link, generation: generation, file: file) else { return }
            // A new stream: a MULTI left open by the previous one is dropped.
            executor.reset()
            guard current(generation), load(rdb, executor: executor) else { return }
            let newReplid = String(parts[1])
            guard setState(generation, { s in
                s.masterReplid = newReplid
                s.offset = start
                s.readOffset = start
            }) else { return }
            // Replicas of this server follow another history now.
            server.replication.shiftHistory(previousReplid: nil, offset: start)
        } else if answer.hasPrefix("+CONTINUE") {
            let parts = answer.split(separator: " ")
            if parts.count >= 2 {
                let newReplid = String(parts[1])
                // PSYNC2: the master's ID changed (it was promoted), offsets go on.
                _ = setState(generation) { $0.masterReplid = newReplid }
            }
        } else {
            return
        }
        guard setState(generation, { s in
            s.link = .connected
            s.lastIOMs = Clock.wallMillis()
            linkUp.store(true, ordering: .relaxed)
        }) else { return }
        stream(link, generation: generation, executor: executor)
    }

    /// `repl-diskless-load`: where the payload goes before it is loaded —
    /// `disabled` (the default): a temporary file in `dir`, named as Redis
    /// names it, so the transfer holds no more than a read's worth in memory;
    /// `on-empty-db`: the same unless the dataset is empty; `swapdb`: memory.
    /// nil: memory.
    private func diskLoadPath() -> String? {
        let (mode, dir) = server.configState.withLock { ($0.redisParameters["repl-diskless-load"] ?? "disabled", $0.dir) }
        if mode == "swapdb" || (mode == "on-empty-db" && onShards({ shard in shard.keyspace.totalKeys() }) == 0) { return nil }
        return dir + "/temp-\(Clock.wallMillis() / 1000).\(getpid()).rdb"
    }

    /// Runs `body` on every shard's thread and waits; returns the sum.
    private func onShards(_ body: @escaping @Sendable (Shard) -> Int) -> Int {
        let shardSet = server.engine.shardSet
        let remaining = Atomic<Int>(shardSet.count)
        let total = Atomic<Int>(0)
        for shard in shardSet.shards {
            shard.loop.post {
                total.add(body(shard), ordering: .relaxed)
                remaining.subtract(1, ordering: .releasing)
            }
        }
        while remaining.load(ordering: .acquiring) > 0 { usleep(200) }
        return total.load(ordering: .relaxed)
    }

    /// The full sync's payload: `$<len>` or `$EOF:<mark>` framed; the
    /// newlines a master sends while it prepares the RDB are skipped. With
    /// `file`, the bytes go there as they arrive (the last 40 held back until
    /// it is clear they are not the EOF mark) and are read back once complete.
    private func receiveRDB(_ link: MasterLink, generation: Int, file: String?) -> [UInt8]? {
        var header = ""
        while header.isEmpty {
            guard let line = link.readLine() else { return nil }
            header = line
            _ = setState(generation) { $0.lastIOMs = Clock.wallMillis() }
        }
        guard header.hasPrefix("$") else { return nil }
        var sink = RDBSink(path: file)
        guard sink.isOpen else { return nil }
        if header.hasPrefix("$EOF:") {
            let mark = Array(header.utf8.dropFirst(5))
            guard mark.count == 40 else { return nil }
            var tail: [UInt8] = []
            var read = 0
            while true {
                if tail.count >= 40 && Array(tail[(tail.count - 40)...]) == mark {
                    tail.removeLast(40)
                    guard sink.write(tail) else { return nil }
                    return sink.finish()
                }
                guard let chunk = link.readSome(), current(generation) else { return nil }
                read += chunk.count
                tail.append(contentsOf: chunk)
                if tail.count > 40 {
                    guard sink.write(tail[..<(tail.count - 40)]) else { return nil }
                    tail.removeFirst(tail.count - 40)
                }
                _ = setState(generation) { $0.syncRead = read; $0.lastIOMs = Clock.wallMillis() }
            }
        }
        guard let length = Int(header.dropFirst()), length >= 0 else { return nil }
        _ = setState(generation) { $0.syncTotal = length }
        var read = 0
        while read < length {
            guard let chunk = link.readSome(limit: length - read), current(generation), sink.write(chunk[...]) else { return nil }
            read += chunk.count
            _ = setState(generation) { $0.syncRead = read; $0.lastIOMs = Clock.wallMillis() }
        }
        return sink.finish()
    }

    /// Keys parsed before the shards insert them (about 1 MB of small keys).
    static let loadBatch = 16384

    /// Replaces the dataset with the RDB's: FLUSHALL (and FUNCTION FLUSH)
    /// through the handlers, then the keys, a batch at a time: the link
    /// thread parses the next batch while the shards insert the previous one
    /// on their threads, so what is held besides the RDB is two batches of
    /// entries rather than every key twice (parsed and stored). An RDB that
    /// turns out corrupt leaves an empty dataset, as Redis does.
    private func load(_ rdb: [UInt8], executor: MasterExecutor) -> Bool {
        var reader = RDBReader(bytes: rdb)
        let shardSet = server.engine.shardSet
        executor.run([[Array("FLUSHALL".utf8)], [Array("FUNCTION".utf8), Array("FLUSH".utf8)]])
        let inFlight = Atomic<Int>(0)
        func insert(_ byShard: [[RDBEntry]]) {
            while inFlight.load(ordering: .acquiring) > 0 { usleep(100) }
            for shard in shardSet.shards where !byShard[shard.index].isEmpty {
                let entries = byShard[shard.index]
                inFlight.add(1, ordering: .relaxed)
                shard.loop.post {
                    let now = Clock.wallMillis()
                    for entry in entries {
                        let hash = entry.key.withUnsafeBytes { KeyHash.hash($0) }
                        let db = shard.database(entry.database)
                        let value = RDBConversion.storedValue(entry.value)
                        entry.key.withUnsafeBytes { key in
                            if let existing = db.lookup(key, hash: hash) { db.remove(at: existing) }
                            _ = db.insert(key, hash: hash, value: value, expireAtMs: entry.expireAtMs, nowMs: now)
                        }
                    }
                    inFlight.subtract(1, ordering: .releasing)
                }
            }
        }
        var byShard: [[RDBEntry]] = Array(repeating: [], count: shardSet.count)
        var batched = 0
        do {
            while let entry = try reader.next() {
                guard entry.database < server.engine.databaseCount else { continue }
                let shard = entry.key.withUnsafeBytes { shardSet.shardIndex(of: $0, hash: KeyHash.hash($0)) }
                byShard[shard].append(entry)
                batched += 1
                if batched >= Self.loadBatch {
                    insert(byShard)
                    byShard = Array(repeating: [], count: shardSet.count)
                    batched = 0
                }
            }
        } catch {
            server.replication.log("Failed trying to load the MASTER synchronization DB: \(error)")
            while inFlight.load(ordering: .acquiring) > 0 { usleep(100) }
            executor.run([[Array("FLUSHALL".utf8)]])
            return false
        }
        insert(byShard)
        while inFlight.load(ordering: .acquiring) > 0 { usleep(100) }
        _ = onShards { shard in shard.publishStats(); return 0 }
        if !reader.functionLibraries.isEmpty {
            let libraries = reader.functionLibraries
            let done = Atomic<Bool>(false)
            server.loops[0].post { [server] in
                _ = server.engine.functions.restore(libraries, policy: .replace, loop: 0)
                done.store(true, ordering: .releasing)
            }
            while !done.load(ordering: .acquiring) { usleep(200) }
        }
        return true
    }

    /// The stream: commands applied in batches (one per read), the offset
    /// advanced by each command's bytes, ACKs every second and on GETACK.
    private func stream(_ link: MasterLink, generation: Int, executor: MasterExecutor) {
        var parser = RESPParser(maxBulkLength: Int.max, maxMultibulkLength: Int(Int32.max))
        let args = CommandArguments()
        var buffer: [UInt8] = link.takeBuffered()
        var lastAckMs: Int64 = 0
        var lastReadMs = Clock.wallMillis()
        func ack() -> Bool {
            let offset = state.withLock { $0.offset }
            lastAckMs = Clock.wallMillis()
            return link.send(["REPLCONF", "ACK", String(offset)])
        }
        guard ack() else { return }
        while current(generation) {
            var consumedTotal = 0
            var batch: [[[UInt8]]] = []
            var batchBytes = 0
            var ackAfter = false
            var failed = false
            buffer.withUnsafeBytes { raw in
                while consumedTotal < raw.count && !ackAfter {
                    let view = UnsafeRawBufferPointer(rebasing: raw[consumedTotal...])
                    switch parser.parse(view, into: args) {
                    case .command(let consumed):
                        let name = args.bytes(0).map { $0 | 0x20 }
                        if name == Array("replconf".utf8) && args.count >= 2 && args.bytes(1).map({ $0 | 0x20 }) == Array("getack".utf8) {
                            // GETACK acknowledges what came before it: that is applied first.
                            if batchBytes > 0 { return }
                            consumedTotal += consumed
                            batchBytes += consumed
                            ackAfter = true
                            return
                        }
                        consumedTotal += consumed
                        batchBytes += consumed
                        if name == Array("ping".utf8) || name == Array("replconf".utf8) { continue }
                        batch.append((0..<args.count).map { args.bytes($0) })
                    case .skip(let consumed):
                        consumedTotal += consumed
                        batchBytes += consumed
                    case .needMoreData:
                        return
                    case .protocolError:
                        failed = true
                        return
                    }
                }
            }
            if failed { return }
            if !batch.isEmpty { executor.run(batch) }
            if consumedTotal > 0 {
                buffer.removeFirst(consumedTotal)
                // The GETACK counts in the offset once it is answered (as Redis).
                if ackAfter { guard ack() else { return } }
                let bytes = batchBytes
                _ = setState(generation) { $0.offset += bytes }
            }
            if consumedTotal > 0 && !buffer.isEmpty { continue }
            if Clock.wallMillis() - lastAckMs >= 1000 { guard ack() else { return } }
            switch link.poll(timeoutMs: 100) {
            case .failed: return
            case .idle:
                // The master PINGs every repl-ping-replica-period: silence past
                // repl-timeout (read again, CONFIG SET may change it) drops the link.
                let timeoutMs = server.configState.withLock { ReplicationMaster.seconds($0, "repl-timeout", 60) }
                if Clock.wallMillis() - lastReadMs > timeoutMs {
                    server.replication.log("MASTER timeout: no data nor PING received...")
                    return
                }
                continue
            case .readable:
                guard let chunk = link.readSome() else { return }
                lastReadMs = Clock.wallMillis()
                buffer.append(contentsOf: chunk)
                _ = setState(generation) { s in
                    s.lastIOMs = Clock.wallMillis()
                    s.readOffset = s.offset + buffer.count
                }
            }
        }
    }

    // MARK: - Reporting

    /// INFO replication's replica part (after `role:slave`).
    func infoFields() -> [(String, String)]? {
        let s = state.withLock { $0 }
        guard let host = s.host else { return nil }
        let now = Clock.wallMillis()
        var fields: [(String, String)] = [
            ("role", "slave"),
            ("master_host", host),
            ("master_port", String(s.port)),
            ("master_link_status", s.link == .connected ? "up" : "down"),
            ("master_last_io_seconds_ago", s.lastIOMs > 0 && s.link == .connected ? String((now - s.lastIOMs) / 1000) : "-1"),
            ("master_sync_in_progress", s.link == .sync ? "1" : "0"),
            ("slave_read_repl_offset", String(max(s.readOffset, s.offset))),
            ("slave_repl_offset", String(s.offset)),
        ]
        if s.link == .sync {
            fields += [
                ("master_sync_total_bytes", String(s.syncTotal)),
                ("master_sync_read_bytes", String(s.syncRead)),
                ("master_sync_left_bytes", String(s.syncTotal >= 0 ? s.syncTotal - s.syncRead : -1)),
                ("master_sync_perc", s.syncTotal > 0 ? String(format2(Double(s.syncRead) * 100 / Double(s.syncTotal))) : "0.00"),
                ("master_sync_last_io_seconds_ago", String((now - s.lastIOMs) / 1000)),
            ]
        }
        if s.link != .connected {
            fields.append(("master_link_down_since_seconds", s.downSinceMs > 0 ? String((now - s.downSinceMs) / 1000) : "-1"))
        }
        let readOnly = server.configState.withLock { $0.redisParameters["replica-read-only"] ?? "yes" }
        fields += [
            ("slave_priority", server.configState.withLock { $0.redisParameters["replica-priority"] ?? "100" }),
            ("slave_read_only", readOnly == "yes" ? "1" : "0"),
            ("replica_announced", "1"),
        ]
        return fields
    }

    private func format2(_ v: Double) -> String {
        let hundredths = Int((v * 100).rounded())
        let frac = hundredths % 100
        return "\(hundredths / 100).\(frac < 10 ? "0" : "")\(frac)"
    }

    /// The master's ID and the applied offset while a replica, for INFO's master_replid / master_repl_offset.
    func replicaHistory() -> (replid: String, offset: Int)? {
        state.withLock { s in s.host == nil ? nil : (s.masterReplid, max(s.offset, 0)) }
    }

    /// ROLE's slave form: host, port, link state, offset.
    func role() -> Reply? {
        let s = state.withLock { $0 }
        guard let host = s.host else { return nil }
        return .array([
            .bulkString("slave"), .bulkString(host), .integer(s.port), .bulkString(s.link.rawValue),
            .integer(s.link == .connected ? s.offset : -1),
        ])
    }
}

/// Where a full sync's payload collects: memory, or a file read back whole
/// at the end (and removed by the caller).
struct RDBSink {
    private var memory: [UInt8] = []
    private let path: String?
    private var fd: Int32 = -1

    init(path: String?) {
        self.path = path
        if let path { fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
    }

    var isOpen: Bool { path == nil || fd >= 0 }

    mutating func write(_ bytes: ArraySlice<UInt8>) -> Bool {
        guard path != nil else {
            memory.append(contentsOf: bytes)
            return true
        }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, $0.count - done) }
            if n <= 0 { return false }
            done += n
        }
        return true
    }

    mutating func write(_ bytes: [UInt8]) -> Bool { write(bytes[...]) }

    /// The whole payload (read back from the file).
    mutating func finish() -> [UInt8]? {
        guard let path else { return memory }
        Glibc.close(fd)
        fd = -1
        let readFD = open(path, O_RDONLY | O_CLOEXEC)
        guard readFD >= 0 else { return nil }
        defer { Glibc.close(readFD) }
        var size = stat()
        guard fstat(readFD, &size) == 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(size.st_size))
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(readFD, $0.baseAddress! + done, $0.count - done) }
            if n <= 0 { return nil }
            done += n
        }
        return bytes
    }
}

/// The blocking socket to the master, with a read buffer.
final class MasterLink {
    enum PollResult { case readable, idle, failed }

    private(set) var fd: Int32 = -1
    private var buffer: [UInt8] = []

    func connect(host: String, port: Int, timeoutMs: Int64) -> Bool {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let first = result else { return false }
        defer { freeaddrinfo(result) }
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let info = candidate {
            let s = socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), info.pointee.ai_protocol)
            if s >= 0 {
                if Glibc.connect(s, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 {
                    var one: Int32 = 1
                    setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                    // A master silent for `repl-timeout` is gone: no read waits longer.
                    var timeout = timeval(tv_sec: Int(timeoutMs / 1000), tv_usec: Int(timeoutMs % 1000) * 1000)
                    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                    fd = s
                    return true
                }
                Glibc.close(s)
            }
            candidate = info.pointee.ai_next
        }
        return false
    }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    func send(_ args: [String]) -> Bool {
        var out: [UInt8] = []
        ShardJournal.encodeCommand(args.map { Array($0.utf8) }, into: &out)
        return out.withUnsafeBytes { dfly_send_all(fd, $0.baseAddress, $0.count) } == 0
    }

    /// More bytes from the socket (the buffer's first; at most `limit`), nil at the end.
    func readSome(limit: Int = 1 << 16) -> [UInt8]? {
        if !buffer.isEmpty {
            guard buffer.count > limit else { return takeBuffered() }
            defer { buffer.removeFirst(limit) }
            return Array(buffer[..<limit])
        }
        var chunk = [UInt8](repeating: 0, count: min(limit, 1 << 16))
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
        guard n > 0 else { return nil }
        chunk.removeLast(chunk.count - n)
        return chunk
    }

    func takeBuffered() -> [UInt8] {
        defer { buffer = [] }
        return buffer
    }

    /// One `\r\n`- (or `\n`-) terminated line without its terminator.
    func readLine() -> String? {
        while true {
            if let nl = buffer.firstIndex(of: 10) {
                var line = Array(buffer[..<nl])
                buffer.removeFirst(nl + 1)
                if line.last == 13 { line.removeLast() }
                return String(decoding: line, as: UTF8.self)
            }
            guard let chunk = readRaw() else { return nil }
            buffer.append(contentsOf: chunk)
        }
    }

    private func readRaw() -> [UInt8]? {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
        guard n > 0 else { return nil }
        chunk.removeLast(chunk.count - n)
        return chunk
    }

    func poll(timeoutMs: Int32) -> PollResult {
        if !buffer.isEmpty { return .readable }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let n = Glibc.poll(&p, 1, timeoutMs)
        if n < 0 { return errno == EINTR ? .idle : .failed }
        if n == 0 { return .idle }
        return .readable
    }
}

/// Runs the master's commands through the ordinary handlers, as the master
/// client: on loop 0, one after another (each waits for the previous reply),
/// a MULTI's commands queued and run by EXEC, as a connection would.
final class MasterExecutor: ReplySink, @unchecked Sendable {
    // Invariant: `run` is called by the link thread and waits; `pump` and
    // `complete` run on loop 0 meanwhile.
    let server: Server
    let client: ClientState
    let arguments = CommandArguments()
    private let finished = Atomic<Bool>(false)
    private var batch: [[[UInt8]]] = []
    private var index = 0
    private var inHandler = false
    private var completedInline = false

    init(server: Server) {
        self.server = server
        self.client = ClientState(id: 0, loop: server.loops[0], authenticated: true)
        client.isMaster = true
    }

    func run(_ commands: [[[UInt8]]]) {
        guard !commands.isEmpty else { return }
        finished.store(false, ordering: .relaxed)
        let loop = server.loops[0]
        loop.post { [self] in
            batch = commands
            index = 0
            pump()
        }
        var spins = 0
        while !finished.load(ordering: .acquiring) {
            spins += 1
            if spins < 100 { sched_yield() } else { usleep(50) }
        }
    }

    /// Forgets a transaction the previous stream left open (before a full sync).
    func reset() {
        server.loops[0].post { [self] in
            client.multiQueue = nil
            client.multiFailed = false
        }
    }

    private func pump() {
        let registry = server.engine.registry
        while index < batch.count {
            let command = batch[index]
            index += 1
            arguments.removeAll()
            for arg in command { arg.withUnsafeBytes { arguments.append($0) } }
            guard let spec = registry.lookup(arguments[0]), spec.acceptsArgumentCount(arguments.count) else { continue }
            if client.multiQueue != nil && !spec.runsAtOnceInMulti {
                client.multiQueue!.append(QueuedCommand(spec: spec, arguments: command))
                continue
            }
            inHandler = true
            completedInline = false
            spec.handler(CommandCall(args: arguments, client: client, engine: server.engine, spec: spec, sink: self))
            inHandler = false
            if !completedInline { return }
        }
        batch = []
        finished.store(true, ordering: .releasing)
    }

    func complete(_ reply: Reply) {
        if inHandler {
            completedInline = true
            return
        }
        server.loops[0].post { [self] in pump() }
    }
}
