import CDamselfly
import DamselflyRESP
import Glibc

// MARK: - Command templates

/// A preencoded command with the key's digits at a known offset, patched in place per request:
/// building a batch is a `memcpy` and a few digit stores per command, no allocation.
struct CommandTemplate {
    let bytes: UnsafeMutableRawBufferPointer
    /// Where the zero-padded key number starts.
    let digitsOffset: Int
    let width: Int

    init(_ args: [[UInt8]], keyArgument: Int, prefixLength: Int, width: Int) {
        self.init(commands: [args], keyCommand: 0, keyArgument: keyArgument, prefixLength: prefixLength, width: width)
    }

    /// Several commands sent as one request (a MULTI block): the key is argument
    /// `keyArgument` of command `keyCommand`.
    init(commands: [[[UInt8]]], keyCommand: Int, keyArgument: Int, prefixLength: Int, width: Int) {
        var encoded: [UInt8] = []
        var offset = 0
        for (c, args) in commands.enumerated() {
            if c == keyCommand { offset = encoded.count }
            RESPEncodeCommand(args, into: &encoded)
        }
        let args = commands[keyCommand]
        // Find the key argument: skip "*N\r\n" then ("$len\r\n" + arg + "\r\n") for the ones before it.
        func skipLine() { while encoded[offset] != 0x0A { offset += 1 }; offset += 1 }
        skipLine()
        for i in 0..<keyArgument { skipLine(); offset += args[i].count + 2 }
        skipLine()
        digitsOffset = offset + prefixLength
        self.width = width
        bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: encoded.count, alignment: 8)
        bytes.copyBytes(from: encoded)
    }

    var count: Int { bytes.count }

    /// Copies the command to `destination` with key number `key`; returns the bytes written.
    @inline(__always)
    func write(to destination: UnsafeMutableRawPointer, key: Int) -> Int {
        destination.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        var n = key
        var i = digitsOffset + width
        let d = destination.assumingMemoryBound(to: UInt8.self)
        while i > digitsOffset {
            i -= 1
            d[i] = UInt8(truncatingIfNeeded: n % 10) &+ 0x30
            n /= 10
        }
        return bytes.count
    }
}

// MARK: - Key source

/// Draws key numbers in `[minimum, maximum]` by pattern.
struct KeySource {
    let pattern: KeyPattern
    let minimum: Int
    let range: Int
    var rng: WyRand
    var sequential: Int

    init(options: BenchOptions, seed: UInt64, clientIndex: Int, clientCount: Int) {
        pattern = options.keyPattern
        minimum = options.keyMinimum
        range = options.keyMaximum - options.keyMinimum + 1
        rng = WyRand(seed: seed)
        sequential = clientCount > 0 ? (range / clientCount) * clientIndex : 0
    }

    @inline(__always)
    mutating func next() -> Int {
        switch pattern {
        case .random:
            return minimum + Int(rng.next(below: UInt64(range)))
        case .sequential:
            let k = sequential
            sequential += 1
            if sequential == range { sequential = 0 }
            return minimum + k
        case .gaussian:
            // Box-Muller; memtier's defaults: mean at the middle, stddev = range / 6.
            let u1 = rng.unit(), u2 = rng.unit()
            let z = (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
            let v = Int((Double(range) / 2 + z * Double(range) / 6).rounded(.down))
            return minimum + Swift.min(Swift.max(v, 0), range - 1)
        }
    }
}

// MARK: - Connection state

/// One connection of the key/value workload: a batch of `pipeline` commands in flight, replies
/// skipped with ``RESPSkipReply(_:)`` and timed from the moment the batch was sent.
final class KVClient {
    let fd: Int32
    let sendBuffer: UnsafeMutableRawPointer
    var sendLength = 0
    var sendOffset = 0
    var recvBuffer: UnsafeMutableRawPointer
    var recvCapacity: Int
    var recvLength = 0
    var parsedOffset = 0
    /// Kind per reply of the batch in flight: 0 = SET (or a push's last reply), 1 = GET,
    /// 2 = a reply before a push's last (not counted).
    let kinds: UnsafeMutablePointer<UInt8>
    var expected = 0
    var received = 0
    var batchStart: UInt64 = 0
    var batchMeasured = false
    var remaining: Int
    var cycle: Int
    var keys: KeySource
    var writeArmed = false
    var finished = false

    init(fd: Int32, options: BenchOptions, maxCommand: Int, keys: KeySource, cycleStart: Int) {
        self.fd = fd
        sendBuffer = .allocate(byteCount: maxCommand * options.pipeline, alignment: 8)
        recvCapacity = max(64 * 1024, (options.dataSize + 32) * options.pipeline * 2)
        recvBuffer = .allocate(byteCount: recvCapacity, alignment: 8)
        kinds = .allocate(capacity: options.pipeline * options.shape.replies)
        remaining = options.requests
        cycle = cycleStart
        self.keys = keys
    }

    deinit {
        sendBuffer.deallocate()
        recvBuffer.deallocate()
        kinds.deallocate()
    }
}

// MARK: - Worker thread

/// The connections of one generator thread, driven by one epoll instance.
///
/// `@unchecked Sendable`: the main thread builds it, hands it to exactly one thread, and reads
/// its results only after joining that thread.
final class KVWorker: @unchecked Sendable {
    let options: BenchOptions
    let index: Int
    var clients: [KVClient] = []
    let setTemplate: CommandTemplate
    let getTemplate: CommandTemplate
    var setStats = LatencyStats()
    var getStats = LatencyStats()
    var errors = 0
    var hits = 0
    var misses = 0
    var lastReplyNs: UInt64 = 0
    var failure: String? = nil
    var measureStartNs: UInt64 = 0
    var deadlineNs: UInt64 = .max

    init(options: BenchOptions, index: Int, setTemplate: CommandTemplate, getTemplate: CommandTemplate) {
        self.options = options
        self.index = index
        self.setTemplate = setTemplate
        self.getTemplate = getTemplate
    }

    /// Fills the next batch and tries to send it; returns false when the client is done.
    @inline(__always)
    func startBatch(_ c: KVClient, now: UInt64) -> Bool {
        let measured = now >= measureStartNs
        if options.testTime != nil {
            if now >= deadlineNs { return false }
        } else if measured && c.remaining == 0 {
            return false
        }
        var n = options.pipeline
        if measured && options.testTime == nil { n = min(n, c.remaining); c.remaining -= n }
        let cycleLength = options.setRatio + options.getRatio
        var length = 0
        let replies = options.shape.replies
        if replies > 1 {
            // A push per request: its replies but the last are not counted.
            for i in 0..<n {
                length &+= setTemplate.write(to: c.sendBuffer + length, key: c.keys.next())
                for r in 0..<replies - 1 { c.kinds[i * replies + r] = 2 }
                c.kinds[i * replies + replies - 1] = 0
            }
        } else {
            for i in 0..<n {
                let isSet = c.cycle < options.setRatio
                c.cycle += 1
                if c.cycle == cycleLength { c.cycle = 0 }
                let key = c.keys.next()
                if isSet {
                    length &+= setTemplate.write(to: c.sendBuffer + length, key: key)
                    c.kinds[i] = 0
                } else {
                    length &+= getTemplate.write(to: c.sendBuffer + length, key: key)
                    c.kinds[i] = 1
                }
            }
        }
        c.sendLength = length
        c.sendOffset = 0
        c.expected = n * replies
        c.received = 0
        c.batchMeasured = measured
        c.batchStart = monotonicNanos()
        flush(c)
        return true
    }

    /// Sends what is left of the batch; arms EPOLLOUT when the socket is full.
    @inline(__always)
    func flush(_ c: KVClient) {
        while c.sendOffset < c.sendLength {
            let n = send(c.fd, c.sendBuffer + c.sendOffset, c.sendLength - c.sendOffset, Int32(MSG_NOSIGNAL))
            if n > 0 {
                c.sendOffset += n
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                if !c.writeArmed { arm(c, write: true) }
                return
            }
            fail(c, "send: \(String(cString: strerror(errno)))")
            return
        }
        if c.writeArmed { arm(c, write: false) }
    }

    var epollFD: Int32 = -1

    func arm(_ c: KVClient, write: Bool) {
        var ev = epoll_event()
        ev.events = EPOLLIN.rawValue | (write ? EPOLLOUT.rawValue : 0)
        ev.data.fd = c.fd
        epoll_ctl(epollFD, EPOLL_CTL_MOD, c.fd, &ev)
        c.writeArmed = write
    }

    func fail(_ c: KVClient, _ message: String) {
        if failure == nil { failure = message }
        c.finished = true
    }

    /// Reads and skips replies; records their latency against the batch's send time.
    @inline(__always)
    func readReplies(_ c: KVClient, now: UInt64) {
        while true {
            if c.recvLength == c.recvCapacity {
                if c.parsedOffset > 0 {
                    memmove(c.recvBuffer, c.recvBuffer + c.parsedOffset, c.recvLength - c.parsedOffset)
                    c.recvLength -= c.parsedOffset
                    c.parsedOffset = 0
                } else {
                    let bigger = UnsafeMutableRawPointer.allocate(byteCount: c.recvCapacity * 2, alignment: 8)
                    bigger.copyMemory(from: c.recvBuffer, byteCount: c.recvLength)
                    c.recvBuffer.deallocate()
                    c.recvBuffer = bigger
                    c.recvCapacity *= 2
                }
            }
            let n = recv(c.fd, c.recvBuffer + c.recvLength, c.recvCapacity - c.recvLength, 0)
            if n == 0 { fail(c, "connection closed by server"); return }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { break }
                fail(c, "recv: \(String(cString: strerror(errno)))")
                return
            }
            c.recvLength += n
            if c.recvLength < c.recvCapacity { break }  // short read: the socket is drained
        }
        var sets = 0
        var gets = 0
        let bytes = c.recvBuffer.assumingMemoryBound(to: UInt8.self)
        while c.received < c.expected {
            let step: (consumed: Int, isError: Bool)?
            do {
                step = try RESPSkipReply(UnsafeRawBufferPointer(start: c.recvBuffer + c.parsedOffset, count: c.recvLength - c.parsedOffset))
            } catch {
                fail(c, "bad reply at byte \(error.offset): \(error.message)")
                return
            }
            guard let (consumed, isError) = step else { break }
            if isError { errors += 1 }
            let kind = c.kinds[c.received]
            if kind == 0 {
                sets += 1
            } else if kind == 2 {
                // A push's reply before its last.
            } else {
                gets += 1
                let first = bytes[c.parsedOffset]
                if first == UInt8(ascii: "_") || (first == UInt8(ascii: "$") && bytes[c.parsedOffset + 1] == UInt8(ascii: "-")) {
                    misses += 1
                } else if !isError {
                    hits += 1
                }
            }
            c.parsedOffset += consumed
            c.received += 1
        }
        if c.parsedOffset == c.recvLength {
            c.parsedOffset = 0
            c.recvLength = 0
        }
        if c.batchMeasured && sets + gets > 0 {
            let latency = now > c.batchStart ? now - c.batchStart : 0
            setStats.record(latency, count: sets)
            getStats.record(latency, count: gets)
            lastReplyNs = now
        }
    }

    /// The thread body: runs until every connection has finished.
    func run() {
        epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        defer { close(epollFD) }
        var slots: [Int32: Int] = [:]
        for (i, c) in clients.enumerated() {
            var ev = epoll_event()
            ev.events = EPOLLIN.rawValue
            ev.data.fd = c.fd
            epoll_ctl(epollFD, EPOLL_CTL_ADD, c.fd, &ev)
            slots[c.fd] = i
        }
        // fd → client without hashing on the hot path.
        let maxFD = Int(clients.map(\.fd).max() ?? 0)
        var byFD = [Int](repeating: -1, count: maxFD + 1)
        for (fd, i) in slots { byFD[Int(fd)] = i }

        var active = 0
        let start = monotonicNanos()
        for c in clients {
            if startBatch(c, now: start) { active += 1 } else { c.finished = true }
        }
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: 256)
        defer { events.deallocate() }
        while active > 0 {
            let n = epoll_wait(epollFD, events, 256, 100)
            if n < 0 {
                if errno == EINTR { continue }
                failure = "epoll_wait: \(String(cString: strerror(errno)))"
                return
            }
            let now = monotonicNanos()
            for e in 0..<Int(n) {
                let ev = events[e]
                let c = clients[byFD[Int(ev.data.fd)]]
                if c.finished { continue }
                if ev.events & EPOLLOUT.rawValue != 0 { flush(c) }
                if ev.events & (EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
                    readReplies(c, now: now)
                }
                if c.finished {
                    active -= 1
                    epoll_ctl(epollFD, EPOLL_CTL_DEL, c.fd, nil)
                    continue
                }
                if c.received == c.expected && c.sendOffset == c.sendLength {
                    if !startBatch(c, now: monotonicNanos()) {
                        c.finished = true
                        active -= 1
                        epoll_ctl(epollFD, EPOLL_CTL_DEL, c.fd, nil)
                    }
                }
            }
        }
    }
}

// MARK: - Driver

/// Runs the key/value workload and returns the report.
func runKeyValue(_ options: BenchOptions) -> BenchReport {
    let width = options.keyWidth
    let placeholder = Array(options.keyPrefix.utf8) + Array(repeating: UInt8(ascii: "0"), count: width)
    let value = [UInt8](repeating: UInt8(ascii: "x"), count: options.dataSize)
    let prefixLength = options.keyPrefix.utf8.count
    let setTemplate: CommandTemplate
    // A Sidekiq-shaped job for the push shapes (about 200 bytes, as multi_queue_bench's).
    let job = Array(#"{"class":"HardJob","args":[1,2,3],"retry":true,"queue":"default","jid":"b4a577edbccf1d805744efa9","created_at":1700000000.1234567,"enqueued_at":1700000000.1234568}"#.utf8)
    let sadd: [[UInt8]] = [Array("SADD".utf8), Array("queues".utf8), Array("default".utf8)]
    let lpush: [[UInt8]] = [Array("LPUSH".utf8), placeholder, job]
    switch options.shape {
    case .kv:
        setTemplate = CommandTemplate([Array("SET".utf8), placeholder, value], keyArgument: 1, prefixLength: prefixLength, width: width)
    case .push:
        setTemplate = CommandTemplate(commands: [[Array("MULTI".utf8)], sadd, lpush, [Array("EXEC".utf8)]], keyCommand: 2,
                                      keyArgument: 1, prefixLength: prefixLength, width: width)
    case .pushPipelined:
        setTemplate = CommandTemplate(commands: [sadd, lpush], keyCommand: 1, keyArgument: 1, prefixLength: prefixLength, width: width)
    }
    let getTemplate = CommandTemplate([Array("GET".utf8), placeholder], keyArgument: 1, prefixLength: prefixLength, width: width)
    let maxCommand = max(setTemplate.count, getTemplate.count)

    // Connect everything before the clock starts.
    let totalClients = options.threads * options.clients
    var workers: [KVWorker] = []
    let seedBase = UInt64(truncatingIfNeeded: dfly_wall_us()) | 1
    for t in 0..<options.threads {
        let w = KVWorker(options: options, index: t, setTemplate: setTemplate, getTemplate: getTemplate)
        for k in 0..<options.clients {
            let global = t * options.clients + k
            let fd: Int32
            do {
                fd = try BenchSocket.connect(host: options.host, port: options.port)
                try BenchSocket.handshake(fd, protocolVersion: options.protocolVersion)
            } catch {
                writeStderr("damselfly-bench: \(error)\n")
                exit(1)
            }
            BenchSocket.setNonBlocking(fd)
            let keys = KeySource(options: options, seed: seedBase &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(global) &* 0xBF58_476D_1CE4_E5B9,
                                 clientIndex: global, clientCount: totalClients)
            // Spread the SET:GET cycle phase over clients so a pipeline of 1 still mixes.
            let cycleStart = global % (options.setRatio + options.getRatio)
            w.clients.append(KVClient(fd: fd, options: options, maxCommand: maxCommand, keys: keys, cycleStart: cycleStart))
        }
        workers.append(w)
    }

    let start = monotonicNanos()
    let measureStart = start + UInt64(options.warmupSeconds * 1e9)
    let deadline = options.testTime.map { measureStart + UInt64($0 * 1e9) } ?? .max
    for w in workers {
        w.measureStartNs = measureStart
        w.deadlineNs = deadline
    }
    let threads = workers.map { w in BenchThread.spawn(name: "bench\(w.index)") { w.run() } }
    for t in threads { BenchThread.join(t) }
    let end = monotonicNanos()

    var report = BenchReport(options: options)
    for w in workers {
        report.set.merge(w.setStats)
        report.get.merge(w.getStats)
        report.errors += w.errors
        report.hits += w.hits
        report.misses += w.misses
        if let f = w.failure, report.failure == nil { report.failure = f }
        for c in w.clients { close(c.fd) }
    }
    let last = workers.map(\.lastReplyNs).max() ?? end
    report.durationSeconds = Double((last > measureStart ? last : end) - measureStart) / 1e9
    report.connections = totalClients
    return report
}
