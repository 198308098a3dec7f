import CDamselfly
import DamselflyRESP
import Glibc
import Synchronization

/// Queue mode's results: fill and drain (Sidekiq multi_queue_bench's figures).
struct QueueResult {
    var filled = 0
    var fillSeconds = 0.0
    var drainSeconds = 0.0
    var drainLatency = LatencyStats()
    var emptyReplies = 0
    var errors = 0
    let queues: Int
    let consumers: Int
    /// The table's title (stream mode sets its own).
    var label = "queue mode"

    var fillJobsPerSecond: Double { fillSeconds > 0 ? Double(filled) / fillSeconds : 0 }
    var drainJobsPerSecond: Double { drainSeconds > 0 ? Double(drainLatency.ops) / drainSeconds : 0 }

    func table() -> String {
        var out = "\(label): \(queues) \(label == "queue mode" ? "queues" : "streams"), \(consumers) consumers\n\n"
        out += "Phase   " + pad("Jobs", 10) + pad("Seconds", 10) + pad("Jobs/sec", 14)
            + pad("Avg ms", 10) + pad("p50 ms", 10) + pad("p99 ms", 10) + pad("p99.9 ms", 10) + "\n"
        out += String(repeating: "-", count: 82) + "\n"
        out += "Fill    " + pad(String(filled), 10) + pad(fixed(fillSeconds, 3), 10) + pad(fixed(fillJobsPerSecond, 2), 14) + "\n"
        let l = drainLatency
        out += "Drain   " + pad(String(l.ops), 10) + pad(fixed(drainSeconds, 3), 10) + pad(fixed(drainJobsPerSecond, 2), 14)
            + pad(fixed(l.averageMicros / 1000, 3), 10) + pad(fixed(l.percentileMicros(50) / 1000, 3), 10)
            + pad(fixed(l.percentileMicros(99) / 1000, 3), 10) + pad(fixed(l.percentileMicros(99.9) / 1000, 3), 10) + "\n"
        if errors > 0 { out += "errors: \(errors)\n" }
        return out
    }
}

/// A Sidekiq-shaped job payload (class, args, jid, timestamps), about 200 bytes.
func sidekiqJob(queue: String, sequence: Int, rng: inout WyRand) -> [UInt8] {
    var jid = ""
    for _ in 0..<3 {
        let h = String(rng.next() & 0xFFFF_FFFF, radix: 16)
        jid += String(repeating: "0", count: 8 - h.count) + h
    }
    let now = dfly_wall_us()
    let stamp = "\(now / 1_000_000).\(String(repeating: "0", count: 6 - String(now % 1_000_000).count))\(now % 1_000_000)"
    let json = "{\"retry\":true,\"queue\":\"\(queue)\",\"class\":\"HardJob\",\"args\":[\(sequence),\"bob\",{\"tenant\":42}],"
        + "\"jid\":\"\(jid)\",\"created_at\":\(stamp),\"enqueued_at\":\(stamp)}"
    return Array(json.utf8)
}

/// State shared by the drain threads: jobs popped so far, to stop when all are out.
final class DrainProgress: Sendable {
    let popped = Atomic<Int>(0)
}

/// One blocking consumer: `BRPOP <its queues> <timeout>` again and again until a timeout
/// (its queues are empty) or until every job of the run has been popped.
final class Consumer {
    let fd: Int32
    let command: [UInt8]
    var recvBuffer = [UInt8](repeating: 0, count: 64 * 1024)
    var recvLength = 0
    var sentAt: UInt64 = 0
    var finished = false

    init(fd: Int32, command: [UInt8]) {
        self.fd = fd
        self.command = command
    }
}

/// The consumers of one drain thread. `@unchecked Sendable`: built by the main thread, used by
/// one drain thread, read by the main thread after the join.
final class DrainWorker: @unchecked Sendable {
    var consumers: [Consumer] = []
    var latency = LatencyStats()
    var emptyReplies = 0
    var errors = 0
    var lastPopNs: UInt64 = 0
    var failure: String? = nil
    let progress: DrainProgress
    let total: Int

    init(progress: DrainProgress, total: Int) {
        self.progress = progress
        self.total = total
    }

    func send(_ c: Consumer) -> Bool {
        c.sentAt = monotonicNanos()
        let message: String? = c.command.withUnsafeBytes { raw in
            do throws(BenchSocket.Failure) {
                try BenchSocket.writeAll(c.fd, raw)
                return nil
            } catch {
                return error.description
            }
        }
        if let message { failure = failure ?? message }
        return message == nil
    }

    func run() {
        let ep = epoll_create1(Int32(EPOLL_CLOEXEC))
        defer { close(ep) }
        var byFD: [Int32: Consumer] = [:]
        var active = 0
        for c in consumers {
            var ev = epoll_event()
            ev.events = EPOLLIN.rawValue
            ev.data.fd = c.fd
            epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev)
            byFD[c.fd] = c
            if send(c) { active += 1 } else { c.finished = true }
        }
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: 64)
        defer { events.deallocate() }
        while active > 0 && progress.popped.load(ordering: .relaxed) < total {
            let n = epoll_wait(ep, events, 64, 20)
            if n < 0 && errno != EINTR { failure = "epoll_wait failed"; return }
            let now = monotonicNanos()
            for e in 0..<max(Int(n), 0) {
                guard let c = byFD[events[e].data.fd], !c.finished else { continue }
                if c.recvLength == c.recvBuffer.count { c.recvBuffer.append(contentsOf: repeatElement(0, count: c.recvBuffer.count)) }
                let got = c.recvBuffer.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress! + c.recvLength, $0.count - c.recvLength, 0) }
                if got <= 0 {
                    if got < 0 && (errno == EAGAIN || errno == EINTR) { continue }
                    failure = failure ?? "connection closed by server"
                    c.finished = true
                    active -= 1
                    continue
                }
                c.recvLength += got
                let parsed: Result<(consumed: Int, isError: Bool)?, RESPDecodeError> = c.recvBuffer.withUnsafeBytes { raw in
                    do throws(RESPDecodeError) {
                        return .success(try RESPSkipReply(UnsafeRawBufferPointer(rebasing: raw[0..<c.recvLength])))
                    } catch {
                        return .failure(error)
                    }
                }
                let step: (consumed: Int, isError: Bool)?
                switch parsed {
                case .success(let s): step = s
                case .failure(let error):
                    failure = failure ?? "bad reply: \(error.message)"
                    c.finished = true
                    active -= 1
                    continue
                }
                guard let (consumed, isError) = step else { continue }
                let first = c.recvBuffer[0]
                let isNil = first == UInt8(ascii: "_") || (first == UInt8(ascii: "*") && c.recvBuffer[1] == UInt8(ascii: "-"))
                let errorText = isError ? String(decoding: c.recvBuffer[0..<min(consumed, 200)], as: UTF8.self) : ""
                c.recvBuffer.withUnsafeMutableBytes { raw in
                    let rest = c.recvLength - consumed
                    if rest > 0 { memmove(raw.baseAddress!, raw.baseAddress! + consumed, rest) }
                }
                c.recvLength -= consumed
                if isError {
                    errors += 1
                    if failure == nil { failure = "BRPOP error: " + errorText }
                    c.finished = true
                    active -= 1
                } else if isNil {
                    // Timed out: this consumer's queues are empty.
                    emptyReplies += 1
                    c.finished = true
                    active -= 1
                } else {
                    latency.record(now > c.sentAt ? now - c.sentAt : 0, count: 1)
                    lastPopNs = now
                    progress.popped.add(1, ordering: .relaxed)
                    if !send(c) { c.finished = true; active -= 1 }
                }
            }
        }
    }
}

/// Fill (pipelined or bulk LPUSH), then drain with blocking BRPOP consumers; reports jobs/s.
func runQueues(_ options: BenchOptions) -> BenchReport {
    let queueCount = options.queues ?? 1
    let names = (0..<queueCount).map { "\(options.queuePrefix)\($0)" }
    var result = QueueResult(queues: queueCount, consumers: options.consumers)
    var report = BenchReport(options: options)

    func connect() -> Int32 { connectOrExit(options) }

    // MARK: Fill
    do {
        let setup = connect()
        var del: [UInt8] = []
        RESPEncodeCommand([Array("DEL".utf8)] + names.map { Array($0.utf8) }, into: &del)
        do { try BenchSocket.exchange(setup, del, replies: 1) } catch {
            writeStderr("damselfly-bench: \(error)\n")
            exit(1)
        }
        close(setup)
    }
    final class FillWorker: @unchecked Sendable {
        // Built by the main thread, used by one fill thread, read after the join.
        var queues: [String] = []
        var pushed = 0
        var errors = 0
        var failure: String? = nil
        var fd: Int32 = -1
    }
    let fillThreads = max(1, min(options.threads, queueCount))
    let fillers = (0..<fillThreads).map { _ in FillWorker() }
    for (i, name) in names.enumerated() { fillers[i % fillThreads].queues.append(name) }
    for f in fillers { f.fd = connect() }
    let fillStart = monotonicNanos()
    let threads = fillers.enumerated().map { (index, f) in
        BenchThread.spawn(name: "fill\(index)") {
            var rng = WyRand(seed: UInt64(index + 1) &* 0x9E37_79B9_7F4A_7C15)
            let perCommand = options.fillMode == .bulk ? options.fillBatch : 1
            let depth = options.fillMode == .bulk ? 1 : max(options.pipeline, 16)
            var sequence = 0
            for queue in f.queues {
                let queueName = Array(queue.utf8)
                var left = options.elements
                while left > 0 {
                    var batch: [UInt8] = []
                    var commands = 0
                    while left > 0 && commands < depth {
                        var args: [[UInt8]] = [Array("LPUSH".utf8), queueName]
                        for _ in 0..<min(perCommand, left) {
                            args.append(sidekiqJob(queue: queue, sequence: sequence, rng: &rng))
                            sequence += 1
                        }
                        left -= args.count - 2
                        f.pushed += args.count - 2
                        RESPEncodeCommand(args, into: &batch)
                        commands += 1
                    }
                    do {
                        let (errors, last) = try BenchSocket.exchange(f.fd, batch, replies: commands)
                        if errors > 0 {
                            f.errors += errors
                            f.failure = f.failure ?? "LPUSH failed: \(String(decoding: last.prefix(200), as: UTF8.self))"
                            return
                        }
                    } catch {
                        f.failure = "\(error)"
                        return
                    }
                }
            }
        }
    }
    for t in threads { BenchThread.join(t) }
    result.fillSeconds = Double(monotonicNanos() - fillStart) / 1e9
    for f in fillers {
        close(f.fd)
        result.filled += f.pushed
        result.errors += f.errors
        if let message = f.failure, report.failure == nil { report.failure = message }
    }
    if report.failure != nil {
        report.queue = result
        return report
    }

    // MARK: Drain
    let progress = DrainProgress()
    let drainThreads = max(1, min(options.threads, options.consumers))
    let workers = (0..<drainThreads).map { _ in DrainWorker(progress: progress, total: result.filled) }
    let timeout = Array(String(options.brpopTimeout).utf8)
    for i in 0..<options.consumers {
        let keys: [String]
        switch options.drainMode {
        case .all:
            keys = names
        case .perQueue:
            if options.consumers >= queueCount {
                keys = [names[i % queueCount]]
            } else {
                keys = names.indices.filter { $0 % options.consumers == i }.map { names[$0] }
            }
        }
        var command: [UInt8] = []
        RESPEncodeCommand([Array("BRPOP".utf8)] + keys.map { Array($0.utf8) } + [timeout], into: &command)
        let fd = connect()
        BenchSocket.setNonBlocking(fd)
        workers[i % drainThreads].consumers.append(Consumer(fd: fd, command: command))
    }
    let drainStart = monotonicNanos()
    let drainers = workers.enumerated().map { (index, w) in BenchThread.spawn(name: "drain\(index)") { w.run() } }
    for t in drainers { BenchThread.join(t) }
    let drainEnd = monotonicNanos()
    var lastPop: UInt64 = 0
    for w in workers {
        result.drainLatency.merge(w.latency)
        result.emptyReplies += w.emptyReplies
        result.errors += w.errors
        lastPop = max(lastPop, w.lastPopNs)
        if let message = w.failure, report.failure == nil { report.failure = message }
        for c in w.consumers { close(c.fd) }
    }
    result.drainSeconds = Double((lastPop > drainStart ? lastPop : drainEnd) - drainStart) / 1e9
    if result.drainLatency.ops != result.filled && report.failure == nil {
        report.failure = "drained \(result.drainLatency.ops) of \(result.filled) jobs"
    }
    report.queue = result
    report.durationSeconds = result.drainSeconds
    report.connections = options.consumers
    return report
}
