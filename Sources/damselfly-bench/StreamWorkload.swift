import DamselflyRESP
import Glibc

/// Stream mode: fill `--streams` streams with job records, then drain them through one
/// consumer group with `--consumers` consumers, each looping `XREADGROUP GROUP g c<i> COUNT n
/// STREAMS <its stream> >` and acknowledging the batch it got (the XACK goes out in the same
/// write as the next XREADGROUP), until its stream answers nil. A compiled driver, so the
/// clients are not what bounds the servers (Python consumers capped every server near the same
/// jobs/s); every server gets the same one.

/// A 5-field job record, the shape Benchmarks/stream_bench.sh XADDs.
func streamJob(sequence: Int, rng: inout WyRand) -> [[UInt8]] {
    var jid = ""
    for _ in 0..<3 {
        let h = String(rng.next() & 0xFFFF_FFFF, radix: 16)
        jid += String(repeating: "0", count: 8 - h.count) + h
    }
    return [
        Array("class".utf8), Array("HardJob".utf8), Array("queue".utf8), Array("default".utf8),
        Array("args".utf8), Array("[\(sequence)]".utf8), Array("jid".utf8), Array(jid.utf8),
        Array("created_at".utf8), Array("1700000000.5".utf8),
    ]
}

/// The entry IDs of an XREADGROUP reply for one stream; nil for the nil reply (nothing new).
func streamReplyIDs(_ reply: RESPValue) -> [[UInt8]]? {
    switch reply {
    case .null, .array(nil): return nil
    case .array(let streams?):
        var ids: [[UInt8]] = []
        for s in streams {
            guard case .array(let pair?) = s, pair.count == 2, case .array(let entries?) = pair[1] else { continue }
            for e in entries {
                if case .array(let parts?) = e, let first = parts.first, case .bulk(let id?) = first { ids.append(id) }
            }
        }
        return ids
    case .map(let pairs):
        // RESP3: a map of stream name to entries.
        var ids: [[UInt8]] = []
        for (_, value) in pairs {
            guard case .array(let entries?) = value else { continue }
            for e in entries {
                if case .array(let parts?) = e, let first = parts.first, case .bulk(let id?) = first { ids.append(id) }
            }
        }
        return ids
    default: return []
    }
}

/// One consumer thread's tally. `@unchecked Sendable`: written by its thread, read after the join.
final class StreamConsumer: @unchecked Sendable {
    let key: [UInt8]
    let name: [UInt8]
    var got = 0
    var acked = 0
    var latency = LatencyStats()
    var failure: String? = nil
    var fd: Int32 = -1

    init(key: String, name: String) {
        self.key = Array(key.utf8)
        self.name = Array(name.utf8)
    }

    func run(count: Int) {
        var read: [UInt8] = []
        RESPEncodeCommand([Array("XREADGROUP".utf8), Array("GROUP".utf8), Array("g".utf8), name,
                           Array("COUNT".utf8), Array(String(count).utf8), Array("STREAMS".utf8), key, Array(">".utf8)], into: &read)
        var decoder = RESPReplyDecoder()
        var pending: [[UInt8]] = []
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        var have = 0
        while true {
            var out: [UInt8] = []
            if !pending.isEmpty {
                RESPEncodeCommand([Array("XACK".utf8), key, Array("g".utf8)] + pending, into: &out)
            }
            out += read
            let sentAt = monotonicNanos()
            let message: String? = out.withUnsafeBytes { raw in
                do throws(BenchSocket.Failure) {
                    try BenchSocket.writeAll(fd, raw)
                    return nil
                } catch {
                    return error.description
                }
            }
            if let message {
                failure = message
                return
            }
            var replies: [RESPValue] = []
            let wanted = pending.isEmpty ? 1 : 2
            while replies.count < wanted {
                // Decode what is buffered; read more when a reply is incomplete.
                var consumedTotal = 0
                var incomplete = false
                while replies.count < wanted && !incomplete {
                    let step: Result<(RESPValue, consumed: Int)?, RESPDecodeError> = buffer.withUnsafeBytes { raw in
                        do throws(RESPDecodeError) {
                            return .success(try decoder.decode(UnsafeRawBufferPointer(rebasing: raw[consumedTotal..<have])))
                        } catch {
                            return .failure(error)
                        }
                    }
                    switch step {
                    case .failure(let error):
                        failure = "bad reply: \(error.message)"
                        return
                    case .success(nil):
                        incomplete = true
                    case .success(let (value, consumed)?):
                        replies.append(value)
                        consumedTotal += consumed
                    }
                }
                if consumedTotal > 0 {
                    buffer.withUnsafeMutableBytes { raw in
                        if have > consumedTotal { memmove(raw.baseAddress!, raw.baseAddress! + consumedTotal, have - consumedTotal) }
                    }
                    have -= consumedTotal
                }
                if replies.count < wanted {
                    if have == buffer.count { buffer += [UInt8](repeating: 0, count: buffer.count) }
                    let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + have, $0.count - have, 0) }
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else {
                        failure = "connection closed by server"
                        return
                    }
                    have += n
                }
            }
            if wanted == 2 {
                guard case .integer(let n) = replies[0] else {
                    failure = "XACK answered \(replies[0])"
                    return
                }
                acked += Int(n)
            }
            if case .error(let text) = replies[wanted - 1] {
                failure = "XREADGROUP error: \(text)"
                return
            }
            guard let ids = streamReplyIDs(replies[wanted - 1]) else { return }
            guard !ids.isEmpty else { return }
            latency.record(monotonicNanos() - sentAt, count: ids.count)
            got += ids.count
            pending = ids
        }
    }
}

/// Fill (pipelined XADD, then XGROUP CREATE g 0 per stream), then the consumer-group drain;
/// reports jobs/s over the drain's wall time. Fails unless every entry was delivered once and
/// acknowledged.
func runStreams(_ options: BenchOptions) -> BenchReport {
    let streamCount = options.streams ?? 1
    let names = (0..<streamCount).map { "\(options.streamPrefix)\($0)" }
    var result = QueueResult(queues: streamCount, consumers: options.consumers)
    result.label = "stream mode (XREADGROUP COUNT \(options.readCount) + XACK)"
    var report = BenchReport(options: options)

    func connect() -> Int32 { connectOrExit(options) }
    func exchange(_ fd: Int32, _ commands: [UInt8], _ replies: Int, _ what: String) {
        do {
            let (errors, last) = try BenchSocket.exchange(fd, commands, replies: replies)
            if errors > 0 {
                writeStderr("damselfly-bench: \(what) failed: \(String(decoding: last.prefix(200), as: UTF8.self))\n")
                exit(1)
            }
        } catch {
            writeStderr("damselfly-bench: \(error)\n")
            exit(1)
        }
    }

    // MARK: Fill
    if options.streamPhase == .drain {
        result.filled = streamCount * options.elements
    } else {
        let setup = connect()
        var del: [UInt8] = []
        RESPEncodeCommand([Array("DEL".utf8)] + names.map { Array($0.utf8) }, into: &del)
        exchange(setup, del, 1, "DEL")
        var rng = WyRand(seed: 0x9E37_79B9_7F4A_7C15)
        let fillStart = monotonicNanos()
        var sequence = 0
        for name in names {
            let key = Array(name.utf8)
            var left = options.elements
            while left > 0 {
                var batch: [UInt8] = []
                let commands = min(left, max(options.pipeline, 100))
                for _ in 0..<commands {
                    RESPEncodeCommand([Array("XADD".utf8), key, Array("*".utf8)] + streamJob(sequence: sequence, rng: &rng), into: &batch)
                    sequence += 1
                }
                exchange(setup, batch, commands, "XADD")
                left -= commands
                result.filled += commands
            }
            var create: [UInt8] = []
            RESPEncodeCommand(["XGROUP", "CREATE", name, "g", "0"].map { Array($0.utf8) }, into: &create)
            exchange(setup, create, 1, "XGROUP CREATE")
        }
        result.fillSeconds = Double(monotonicNanos() - fillStart) / 1e9
        close(setup)
    }
    if options.streamPhase == .fill {
        report.queue = result
        return report
    }

    // MARK: Drain
    let consumers = (0..<options.consumers).map { StreamConsumer(key: names[$0 % streamCount], name: "c\($0)") }
    for c in consumers { c.fd = connect() }
    let drainStart = monotonicNanos()
    let threads = consumers.enumerated().map { (i, c) in BenchThread.spawn(name: "xread\(i)") { c.run(count: options.readCount) } }
    for t in threads { BenchThread.join(t) }
    result.drainSeconds = Double(monotonicNanos() - drainStart) / 1e9
    var acked = 0
    for c in consumers {
        close(c.fd)
        result.drainLatency.merge(c.latency)
        acked += c.acked
        if let message = c.failure, report.failure == nil { report.failure = message }
    }
    if report.failure == nil && (result.drainLatency.ops != result.filled || acked != result.filled) {
        report.failure = "delivered \(result.drainLatency.ops) and acknowledged \(acked) of \(result.filled) entries"
    }
    report.queue = result
    report.durationSeconds = result.drainSeconds
    report.connections = options.consumers
    return report
}
