import CDamselfly
import DamselflyCommands
import DamselflyPersistence
import DamselflyRuntime
import DamselflyStorage
import DamselflyTransactions
import Glibc
import Synchronization

/// SAVE / BGSAVE / LASTSAVE, save rules, saving at shutdown and loading at
/// start-up, in Redis 7.0's RDB format.
///
/// A snapshot starts inside a global transaction so every shard begins at
/// the same logical moment; the transaction is released at once and each
/// shard then serializes its keyspace in slices between commands (see
/// ``ShardSnapshot``), appending to one temporary file. When every shard is
/// done the file gets its EOF and checksum, is fsynced and renamed over the
/// old snapshot: a crash mid-save leaves the previous file whole.
final class SnapshotController: @unchecked Sendable {
    // Invariant: `state` is only touched under its mutex; the file is
    // appended under the same mutex, so the checksum follows the bytes.
    struct State {
        var inProgress = false
        var fd: Int32 = -1
        var crc: UInt64 = 0
        var tempPath = ""
        var remainingShards = 0
        var keysProcessed = 0
        var totalKeys = 0
        var lastSaveTime: Int64
        var lastStatusOK = true
        var writeFailed = false
        var lastDurationSeconds = 0
        var startedAt: Int64 = 0
        var waiters: [SaveWaiter] = []
        var pendingGeneration = 0
        var completedGeneration = 0
        var journalGenerationCounter = 0
    }

    /// Someone waiting for the save to end (SAVE, shutdown).
    struct SaveWaiter: @unchecked Sendable {
        // Invariant: `done` is only ever called on `loop` (posted there).
        let loop: EventLoop
        let done: (Bool) -> Void
    }

    let server: Server
    let state: Mutex<State>
    /// The journal generation the loaded snapshot covers up to (replay starts there).
    private(set) var journalGeneration = 0

    init(server: Server) {
        self.server = server
        state = Mutex(State(lastSaveTime: Clock.wallMillis() / 1000))
    }

    var path: String {
        let config = server.configState.withLock { $0 }
        return config.dir + "/" + config.dbfilename
    }

    var lastSaveTime: Int64 { state.withLock { $0.lastSaveTime } }

    /// The temporary file a save writes before renaming it over ``path``:
    /// `<dbfilename>.tmp-<pid>` inside dir.
    static func tempName(_ dbfilename: String, pid: Int32) -> String { dbfilename + ".tmp-\(pid)" }

    /// Start-up: removes temporary files a killed earlier process of ours left
    /// in dir (`<dbfilename>.tmp-<pid>` whose pid no longer runs, or is ours).
    /// A live pid is another server saving into the same dir: its file stays.
    func removeStaleTempFiles() {
        let config = server.configState.withLock { $0 }
        let prefix = config.dbfilename + ".tmp-"
        guard let directory = opendir(config.dir) else { return }
        defer { closedir(directory) }
        var stale: [String] = []
        while let entry = readdir(directory) {
            let name = direntName(entry)
            guard name.hasPrefix(prefix), let pid = Int32(name.dropFirst(prefix.count)), pid > 0 else { continue }
            if pid == getpid() || (kill(pid, 0) != 0 && errno == ESRCH) { stale.append(name) }
        }
        for name in stale { unlink(config.dir + "/" + name) }
    }

    /// Shutdown while a save is still running (SHUTDOWN NOSAVE during BGSAVE):
    /// the half-written temporary file is removed, the old snapshot stays.
    func abandonInProgressSave() {
        state.withLock { s in
            guard s.inProgress else { return }
            if s.fd >= 0 { close(s.fd) }
            s.fd = -1
            unlink(s.tempPath)
            s.inProgress = false
        }
    }

    /// INFO persistence fields.
    func infoFields() -> [(String, String)] {
        let s = state.withLock { $0 }
        var changes = 0
        for shard in server.engine.shardSet.shards { changes += shard.changesSinceSave.load(ordering: .relaxed) }
        let percent = s.totalKeys > 0 ? Double(s.keysProcessed) * 100 / Double(s.totalKeys) : (s.inProgress ? 0 : 100)
        return [
            ("loading", "0"),
            ("rdb_changes_since_last_save", String(changes)),
            ("rdb_bgsave_in_progress", s.inProgress ? "1" : "0"),
            ("rdb_last_save_time", String(s.lastSaveTime)),
            ("rdb_last_bgsave_status", s.lastStatusOK ? "ok" : "err"),
            ("rdb_last_bgsave_time_sec", String(s.lastDurationSeconds)),
            ("last_success_save", String(s.lastSaveTime)),
            ("current_snapshot_perc", String(Int(percent))),
            ("current_save_keys_processed", String(s.keysProcessed)),
            ("aof_enabled", server.config.appendonly ? "1" : "0"),
            ("aof_rewrite_in_progress", "0"),
        ]
    }

    /// Starts a background save; `done` runs on `loop` when it finished
    /// (true on success). Returns false when one is already running.
    @discardableResult
    func start(from loop: EventLoop, done: ((Bool) -> Void)? = nil) -> Bool {
        let target = path
        let temp = server.configState.withLock { $0.dir + "/" + Self.tempName($0.dbfilename, pid: getpid()) }
        let started: Bool = state.withLock { s in
            if s.inProgress {
                if let done { s.waiters.append(SaveWaiter(loop: loop, done: done)) }
                return false
            }
            let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                s.lastStatusOK = false
                return false
            }
            s.inProgress = true
            s.writeFailed = false
            s.fd = fd
            s.crc = 0
            s.tempPath = temp
            s.remainingShards = server.engine.shardSet.count
            s.keysProcessed = 0
            s.totalKeys = 0
            s.startedAt = Clock.wallMillis()
            if let done { s.waiters.append(SaveWaiter(loop: loop, done: done)) }
            return true
        }
        guard started else {
            if state.withLock({ !$0.inProgress }) { done?(false) }
            return false
        }
        // The header: Redis's aux fields plus the round-robin placement table.
        var header = RDBWriter()
        var aux = RDBWriter.standardAux(usedMemory: server.engine.usedMemory)
        // Every shard's journal rolls to a new generation at the snapshot's
        // consistent moment; the snapshot holds everything before it.
        let journaling = server.config.appendonly
        let generation = journaling ? (server.engine.shardSet.shards.first.map { _ in nextJournalGeneration() } ?? 0) : 0
        if journaling { aux.append(("dfly-aof-gen", String(generation))) }
        if let roundRobin = server.engine.shardSet.roundRobin {
            let table = roundRobin.assignments.map { String(decoding: $0.0, as: UTF8.self) + "=" + String($0.1) }
            aux.append(("dfly-round-robin", table.joined(separator: "\n")))
        }
        header.writeHeader(aux: aux)
        append(header.takeBytes())

        let shardSet = server.engine.shardSet
        let transaction = Transaction(globalOn: shardSet, loop: loop)
        transaction.schedule { [self] in
            transaction.execute(conclude: true, { shard -> Int in
                let snapshot = ShardSnapshot(keyspace: shard.keyspace, nowMs: Clock.wallMillis())
                snapshot.begin()
                if shard.index == 0 {
                    // Function libraries, taken on shard 0 where FUNCTION commands are
                    // journaled: the ones changed before this point are in the
                    // snapshot, later changes in the new journal generation.
                    var functions = RDBWriter()
                    for library in self.server.engine.functions.libraries { functions.writeFunctionLibrary(library.code) }
                    self.append(functions.takeBytes())
                }
                shard.journal?.rotate(to: generation)
                shard.changesSinceSave.store(0, ordering: .relaxed)
                self.state.withLock { $0.totalKeys += snapshot.totalKeys }
                // Slices between commands until the shard is done.
                shard.loop.defer_ { self.slice(snapshot, shard: shard) }
                return 0
            }, done: { _ in })
        }
        return true
    }

    private func slice(_ snapshot: ShardSnapshot, shard: Shard) {
        let before = snapshot.keysWritten
        let bytes = snapshot.step(budget: 512)
        append(bytes, keys: snapshot.keysWritten - before)
        if snapshot.isFinished {
            shardFinished()
        } else {
            shard.loop.defer_ { self.slice(snapshot, shard: shard) }
        }
    }

    private func append(_ bytes: [UInt8], keys: Int = 0) {
        guard !bytes.isEmpty || keys > 0 else { return }
        state.withLock { s in
            s.keysProcessed += keys
            guard s.fd >= 0 else { return }
            bytes.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let n = write(s.fd, raw.baseAddress! + offset, raw.count - offset)
                    if n <= 0 {
                        if errno == EINTR { continue }
                        s.writeFailed = true
                        return
                    }
                    offset += n
                }
            }
            s.crc = CRC64.update(s.crc, bytes)
        }
    }

    private func shardFinished() {
        let finished: (Bool, [SaveWaiter])? = state.withLock { s in
            s.remainingShards -= 1
            guard s.remainingShards == 0 else { return nil }
            // EOF opcode and the checksum (little endian), then make it durable.
            var trailer: [UInt8] = [0xFF]
            s.crc = CRC64.update(s.crc, trailer)
            var crc = s.crc
            for _ in 0..<8 {
                trailer.append(UInt8(crc & 0xFF))
                crc >>= 8
            }
            var ok = !s.writeFailed
            trailer.withUnsafeBytes { raw in
                if write(s.fd, raw.baseAddress!, raw.count) != raw.count { ok = false }
            }
            if fsync(s.fd) != 0 { ok = false }
            close(s.fd)
            s.fd = -1
            let target = server.configState.withLock { $0.dir + "/" + $0.dbfilename }
            if ok && rename(s.tempPath, target) != 0 { ok = false }
            if !ok { unlink(s.tempPath) }
            s.inProgress = false
            s.lastStatusOK = ok
            if ok { s.lastSaveTime = Clock.wallMillis() / 1000 }
            if ok { s.completedGeneration = s.pendingGeneration }
            s.lastDurationSeconds = Int((Clock.wallMillis() - s.startedAt) / 1000)
            let waiters = s.waiters
            s.waiters = []
            return (ok, waiters)
        }
        guard let (ok, waiters) = finished else { return }
        if ok && server.config.appendonly { removeJournalsBefore(state.withLock { $0.completedGeneration }) }
        for waiter in waiters { waiter.loop.post { waiter.done(ok) } }
    }

    /// Loads the snapshot at `path` into the shards (before they run). A
    /// missing file is an empty dataset; a corrupt one is an error naming the offset.
    func load() throws(LoadError) -> Int {
        let file = path
        guard let bytes = readFile(file) else { return 0 }
        var reader = RDBReader(bytes: bytes)
        let shardSet = server.engine.shardSet
        var loaded = 0
        do {
            var entries: [RDBEntry] = []
            while let entry = try reader.next() { entries.append(entry) }
            if let generation = reader.aux.first(where: { $0.0 == "dfly-aof-gen" }).flatMap({ Int($0.1) }) {
                journalGeneration = generation
            }
            if let roundRobin = shardSet.roundRobin,
               let table = reader.aux.first(where: { $0.0 == "dfly-round-robin" })?.1 {
                var saved: [([UInt8], Int)] = []
                for line in table.split(separator: "\n") {
                    if let eq = line.lastIndex(of: "="), let shard = Int(line[line.index(after: eq)...]) {
                        saved.append((Array(line[..<eq].utf8), shard))
                    }
                }
                roundRobin.restore(saved)
            }
            let now = Clock.wallMillis()
            for entry in entries {
                if let at = entry.expireAtMs, at <= now { continue }
                guard entry.database < server.engine.databaseCount else { continue }
                let hash = entry.key.withUnsafeBytes { KeyHash.hash($0) }
                let shardIndex = entry.key.withUnsafeBytes { shardSet.shardIndex(of: $0, hash: hash) }
                let db = shardSet.shards[shardIndex].database(entry.database)
                let value = RDBConversion.storedValue(entry.value)
                entry.key.withUnsafeBytes { key in
                    if let existing = db.lookup(key, hash: hash) { db.remove(at: existing) }
                    _ = db.insert(key, hash: hash, value: value, expireAtMs: entry.expireAtMs, nowMs: now)
                }
                loaded += 1
            }
        } catch {
            throw LoadError(message: "\(file): \(error)")
        }
        // Function libraries (compiled on loop 0's engine: the loops do not run yet).
        if !reader.functionLibraries.isEmpty,
           case .failure(let error) = server.engine.functions.restore(reader.functionLibraries, policy: .append, loop: 0) {
            throw LoadError(message: "\(file): function libraries: \(error.message)")
        }
        for shard in shardSet.shards { shard.publishStats() }
        return loaded
    }

    struct LoadError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    func readFile(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return bytes
    }
}

extension SnapshotController {
    /// Saves synchronously from the main thread (shutdown): starts a save
    /// from loop 0 and waits for it.
    func saveAndWait() -> Bool {
        let done = Atomic<Int>(0)
        let loop = server.loops[0]
        loop.post { [self] in
            let started = start(from: loop) { ok in done.store(ok ? 1 : 2, ordering: .releasing) }
            if !started && !state.withLock({ $0.inProgress }) { done.store(2, ordering: .releasing) }
        }
        let deadline = Clock.monotonicNanos() + 120_000_000_000
        while done.load(ordering: .acquiring) == 0 && Clock.monotonicNanos() < deadline { usleep(2_000) }
        return done.load(ordering: .acquiring) == 1
    }

    /// Redis's save rules: (seconds, changes) pairs.
    static func rules(_ text: String) -> [(Int, Int)] {
        let numbers = text.split(separator: " ").compactMap { Int($0) }
        return stride(from: 0, to: numbers.count - 1, by: 2).map { (numbers[$0], numbers[$0 + 1]) }
    }

    /// Checked every second on loop 0: a rule whose time and change count are
    /// both reached starts a background save.
    func checkRules(on loop: EventLoop) {
        let config = server.configState.withLock { $0 }
        let rules = SnapshotController.rules(config.save)
        guard !rules.isEmpty else { return }
        var changes = 0
        for shard in server.engine.shardSet.shards { changes += shard.changesSinceSave.load(ordering: .relaxed) }
        let elapsed = Int(Clock.wallMillis() / 1000 - lastSaveTime)
        if rules.contains(where: { elapsed >= $0.0 && changes >= $0.1 }) {
            start(from: loop)
        }
    }
}

extension SnapshotController {
    /// The generation a new snapshot rolls the journals to.
    func nextJournalGeneration() -> Int {
        let replay = JournalReplay(server: server, directory: server.config.dir, baseName: server.config.appendfilename)
        let highest = replay.existingFiles().map(\.generation).max() ?? 0
        return state.withLock { s in
            s.journalGenerationCounter = max(s.journalGenerationCounter, highest) + 1
            s.pendingGeneration = s.journalGenerationCounter
            return s.journalGenerationCounter
        }
    }

    /// After a successful snapshot: journal files it covers are no longer needed.
    func removeJournalsBefore(_ generation: Int) {
        let replay = JournalReplay(server: server, directory: server.config.dir, baseName: server.config.appendfilename)
        for file in replay.existingFiles() where file.generation < generation {
            unlink(ShardJournal.path(directory: server.config.dir, baseName: server.config.appendfilename,
                                     generation: file.generation, shard: file.shard))
        }
    }
}

/// A directory entry's name, read in place up to its NUL: copying the whole
/// 256-byte `d_name` reads past a short record's end (uninitialised bytes,
/// which valgrind reported at every start).
func direntName(_ entry: UnsafeMutablePointer<dirent>) -> String {
    withUnsafePointer(to: &entry.pointee.d_name) {
        String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
    }
}
