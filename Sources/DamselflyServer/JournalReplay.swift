import DamselflyCommands
import DamselflyRESP
import DamselflyRuntime
import DamselflyTransactions
import Glibc
import Synchronization

/// Start-up replay of the shards' journals (`--appendonly`), after the
/// snapshot: generation by generation (a snapshot starts a new generation on
/// every shard at one consistent moment), and within a generation a merge of
/// the shard files in which a `DFLY.TX` transaction is applied only once
/// every participant's file has reached its marker — in its place in every
/// shard's history, and never half: a transaction cut short by a crash is
/// dropped whole.
final class JournalReplay {
    struct Record {
        var args: [[UInt8]]
    }

    let server: Server
    let directory: String
    let baseName: String

    init(server: Server, directory: String, baseName: String) {
        self.server = server
        self.directory = directory
        self.baseName = baseName
    }

    /// Journal files present: (generation, shard) pairs.
    func existingFiles() -> [(generation: Int, shard: Int)] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var found: [(Int, Int)] = []
        let prefix = baseName + "."
        while let entry = readdir(dir) {
            let name = direntName(entry)
            guard name.hasPrefix(prefix) else { continue }
            let parts = name.dropFirst(prefix.count).split(separator: ".")
            if parts.count == 2, let generation = Int(parts[0]), let shard = Int(parts[1]) {
                found.append((generation, shard))
            }
        }
        return found
    }

    /// Replays every generation from `fromGeneration`; returns the number of commands applied.
    func replay(fromGeneration: Int) -> Int {
        let files = existingFiles().filter { $0.generation >= fromGeneration }
        let generations = Set(files.map(\.generation)).sorted()
        let executor = ReplayExecutor(server: server)
        var applied = 0
        for generation in generations {
            let shards = files.filter { $0.generation == generation }.map(\.shard).sorted()
            var streams = shards.map { shard in
                Stream(records: parse(ShardJournal.path(directory: directory, baseName: baseName, generation: generation, shard: shard)))
            }
            applied += merge(&streams, executor)
        }
        return applied
    }

    struct Stream {
        var records: [[[UInt8]]]
        var position = 0
        var database = 0
        var atEnd: Bool { position >= records.count }
        var current: [[UInt8]] { records[position] }
    }

    static func isMarker(_ args: [[UInt8]]) -> Bool {
        args.count >= 3 && args[0] == Array("DFLY.TX".utf8)
    }

    private func merge(_ streams: inout [Stream], _ executor: ReplayExecutor) -> Int {
        var applied = 0
        // Transactions already applied (or dropped) out of file order.
        var consumed: Set<UInt64> = []
        func txid(_ marker: [[UInt8]]) -> UInt64 { UInt64(String(decoding: marker[1], as: UTF8.self)) ?? 0 }
        while streams.contains(where: { !$0.atEnd }) {
            var progress = false
            // Run each file up to its next transaction marker.
            for i in streams.indices {
                while !streams[i].atEnd && JournalReplay.isMarker(streams[i].current) && consumed.contains(txid(streams[i].current)) {
                    streams[i].position += 1
                }
                while !streams[i].atEnd && !JournalReplay.isMarker(streams[i].current) {
                    let args = streams[i].current
                    if args.count == 2 && args[0] == Array("SELECT".utf8) {
                        streams[i].database = Int(String(decoding: args[1], as: UTF8.self)) ?? 0
                    } else {
                        executor.run(args, database: streams[i].database)
                        applied += 1
                    }
                    streams[i].position += 1
                    progress = true
                }
            }
            // Apply transactions whose every participant has arrived.
            var arrivals: [UInt64: [Int]] = [:]
            var expected: [UInt64: Int] = [:]
            for i in streams.indices where !streams[i].atEnd {
                let marker = streams[i].current
                let txid = UInt64(String(decoding: marker[1], as: UTF8.self)) ?? 0
                arrivals[txid, default: []].append(i)
                expected[txid] = Int(String(decoding: marker[2], as: UTF8.self)) ?? 1
            }
            for (txid, members) in arrivals.sorted(by: { $0.key < $1.key }) where members.count >= expected[txid]! {
                for i in members {
                    let marker = streams[i].current
                    if marker.count > 3 {
                        // The first participant's marker carries the command.
                        executor.run(Array(marker[3...]), database: streams[i].database)
                        applied += 1
                    }
                    streams[i].position += 1
                }
                progress = true
            }
            if !progress {
                // Stuck: two transactions on disjoint keys ran in different
                // orders on two shards (allowed: they do not conflict), or a
                // crash cut one short. Take the oldest waiting transaction: if
                // every participant recorded it further on, apply it now; if
                // not, it never completed: drop it whole.
                guard let oldest = arrivals.keys.min() else { break }
                var seen = 0
                var carried: ([[UInt8]], Int)? = nil
                for stream in streams {
                    var database = stream.database
                    for p in stream.position..<stream.records.count {
                        let record = stream.records[p]
                        if record.count == 2 && record[0] == Array("SELECT".utf8) {
                            database = Int(String(decoding: record[1], as: UTF8.self)) ?? 0
                        }
                        guard JournalReplay.isMarker(record) && txid(record) == oldest else { continue }
                        seen += 1
                        if record.count > 3 { carried = (Array(record[3...]), database) }
                        break
                    }
                }
                if seen >= expected[oldest] ?? 1, let (command, database) = carried {
                    executor.run(command, database: database)
                    applied += 1
                }
                consumed.insert(oldest)
            }
        }
        return applied
    }


    private func parse(_ path: String) -> [[[UInt8]]] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        var parser = RESPParser(maxBulkLength: Int.max, maxMultibulkLength: Int(Int32.max))
        let args = CommandArguments()
        var records: [[[UInt8]]] = []
        var offset = 0
        bytes.withUnsafeBytes { raw in
            while offset < raw.count {
                let view = UnsafeRawBufferPointer(rebasing: raw[offset...])
                switch parser.parse(view, into: args) {
                case .command(let consumed):
                    records.append((0..<args.count).map { args.bytes($0) })
                    offset += consumed
                case .skip(let consumed):
                    offset += consumed
                case .needMoreData, .protocolError:
                    // A torn last record (crash mid-write): everything before it stands.
                    return
                }
            }
        }
        return records
    }
}

/// Runs replayed commands one at a time through the ordinary handlers, on
/// loop 0, before the server accepts clients.
final class ReplayExecutor: ReplySink, @unchecked Sendable {
    // Invariant: `run` is called from the main thread and waits; the handler
    // and `complete` run on loop 0 meanwhile.
    let server: Server
    let client: ClientState
    let done = Atomic<Bool>(false)
    let arguments = CommandArguments()

    init(server: Server) {
        self.server = server
        self.client = ClientState(id: 0, loop: server.loops[0], authenticated: true)
    }

    func complete(_ reply: Reply) { done.store(true, ordering: .releasing) }

    func run(_ args: [[UInt8]], database: Int) {
        done.store(false, ordering: .relaxed)
        let loop = server.loops[0]
        loop.post { [self] in
            client.database = database
            arguments.removeAll()
            for arg in args { arg.withUnsafeBytes { arguments.append($0) } }
            guard let spec = server.engine.registry.lookup(arguments[0]), spec.acceptsArgumentCount(arguments.count) else {
                return complete(.none)
            }
            spec.handler(CommandCall(args: arguments, client: client, engine: server.engine, spec: spec, sink: self))
        }
        while !done.load(ordering: .acquiring) { sched_yield() }
    }
}
