import DamselflyRuntime
import Glibc

/// One shard's append-only journal (`--appendonly`): the write commands that
/// ran on this shard, in the order they ran, in Redis's AOF command format
/// (RESP arrays), plus `DFLY.TX` markers for transactions over several shards.
///
/// Every shard writes its own file, so journaling takes no global lock. A
/// multi-shard transaction writes a marker `DFLY.TX <txid> <participants>` in
/// each participant's file at the point where it ran there; the first
/// participant's marker carries the command after those three: replay applies it once all
/// participants' files have reached the marker, so it is never half-applied
/// and lands in the same place of every shard's history.
///
/// Fsync policy: `always` writes and fsyncs before the command's reply is
/// produced; `everysec` writes at the end of each loop iteration's batch and
/// fsyncs once a second; `no` leaves flushing to the kernel.
/// Receives every write a shard records, for the replication stream (see
/// ReplicationFeed in DamselflyServer). Called on the recording shard's thread
/// (or on a thread the shard's keyspace is lent to); implementations lock.
public protocol ShardWriteTap: AnyObject, Sendable {
    /// A write as it took effect on `shard`.
    func record(shard: Int, database: Int, _ args: [[UInt8]])
    /// A transaction over `participants` shards ran its first step on `shard`:
    /// what the shard records until ``endUnit(shard:txid:)`` belongs to it.
    func beginUnit(shard: Int, txid: UInt64, participants: Int)
    /// The transaction concluded on `shard`.
    func endUnit(shard: Int, txid: UInt64)
}

public final class ShardJournal: @unchecked Sendable {
    // Invariant: used only on its shard's thread.
    public enum Fsync: String, Sendable { case always, everysec, no }

    public let fsync: Fsync
    private let directory: String
    private let baseName: String
    private let shardIndex: Int
    private var fd: Int32 = -1
    private var buffer: [UInt8] = []
    private var database = -1
    private var lastFsyncNanos: UInt64 = 0
    private var dirtySinceFsync = false
    /// The file generation being written; a snapshot starts a new one.
    public private(set) var generation: Int
    /// Replication's tap: every record also goes there (set on the shard's thread).
    public var tap: ShardWriteTap?
    /// No file: a journal that only feeds ``tap`` (replication without `--appendonly`).
    public let memoryOnly: Bool

    public init(directory: String, baseName: String, shardIndex: Int, generation: Int, fsync: Fsync) {
        self.directory = directory
        self.baseName = baseName
        self.shardIndex = shardIndex
        self.generation = generation
        self.fsync = fsync
        self.memoryOnly = false
        open()
    }

    /// A journal without a file, kept only to feed replication's ``tap``.
    public init(memoryOnlyFor shardIndex: Int) {
        directory = ""
        baseName = ""
        self.shardIndex = shardIndex
        generation = 0
        fsync = .no
        memoryOnly = true
    }

    /// `<dir>/<base>.<generation>.<shard>`.
    public static func path(directory: String, baseName: String, generation: Int, shard: Int) -> String {
        "\(directory)/\(baseName).\(generation).\(shard)"
    }

    private func open() {
        let path = ShardJournal.path(directory: directory, baseName: baseName, generation: generation, shard: shardIndex)
        fd = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        database = -1
    }

    private func encode(_ args: [[UInt8]]) {
        ShardJournal.encodeCommand(args, into: &buffer)
    }

    /// One command as a RESP array of bulk strings: the journal's record and
    /// the replication stream's (which carries the same records).
    public static func encodeCommand(_ args: [[UInt8]], into out: inout [UInt8]) {
        out.append(UInt8(ascii: "*"))
        out.append(contentsOf: String(args.count).utf8)
        out.append(contentsOf: [13, 10])
        for arg in args {
            out.append(UInt8(ascii: "$"))
            out.append(contentsOf: String(arg.count).utf8)
            out.append(contentsOf: [13, 10])
            out.append(contentsOf: arg)
            out.append(contentsOf: [13, 10])
        }
    }

    private func select(_ db: Int) {
        if db != database {
            encode([Array("SELECT".utf8), Array(String(db).utf8)])
            database = db
        }
    }

    /// Records a command that ran on this shard alone.
    public func append(database db: Int, _ args: [[UInt8]]) {
        tap?.record(shard: shardIndex, database: db, args)
        guard !memoryOnly else { return }
        select(db)
        encode(args)
        afterAppend()
    }

    /// Records this shard's part of a multi-shard (or global) transaction.
    public func appendTransaction(txid: UInt64, participants: Int, database db: Int, command: [[UInt8]]?) {
        // Replication groups the transaction itself (beginUnit/endUnit around its steps).
        if let command { tap?.record(shard: shardIndex, database: db, command) }
        guard !memoryOnly else { return }
        select(db)
        // The first participant carries the command inside its marker.
        encode([Array("DFLY.TX".utf8), Array(String(txid).utf8), Array(String(participants).utf8)] + (command ?? []))
        afterAppend()
    }

    private func afterAppend() {
        // Under `always` the loop's sync hook flushes and fsyncs once per
        // iteration, before any reply of that iteration leaves (group commit).
        dirtySinceFsync = true
    }

    /// Writes the buffered records (end of a loop iteration, or at once under
    /// `always`); fsyncs when the policy says so.
    public func flush(sync: Bool = false) {
        if !buffer.isEmpty && fd >= 0 {
            buffer.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                    if n <= 0 { if errno == EINTR { continue }; break }
                    offset += n
                }
            }
            buffer.removeAll(keepingCapacity: true)
        }
        let now = Clock.monotonicNanos()
        if dirtySinceFsync && fd >= 0 && (sync || (fsync == .everysec && now &- lastFsyncNanos >= 1_000_000_000)) {
            fdatasync(fd)
            dirtySinceFsync = false
            lastFsyncNanos = now
        }
    }

    /// Starts a new generation (a snapshot began: everything before it is in
    /// the snapshot). Returns the previous generation.
    @discardableResult
    public func rotate(to newGeneration: Int) -> Int {
        guard !memoryOnly else { return generation }
        flush(sync: true)
        if fd >= 0 { Glibc.close(fd) }
        let old = generation
        generation = newGeneration
        open()
        return old
    }

    public func close() {
        guard !memoryOnly else { return }
        flush(sync: true)
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }
}
