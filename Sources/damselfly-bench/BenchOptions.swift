import Glibc

/// How keys are drawn from `[keyMinimum, keyMaximum]` (memtier_benchmark's `--key-pattern`).
enum KeyPattern: String {
    /// Uniform random.
    case random = "R"
    /// Sequential, each client starting at its own offset and wrapping around.
    case sequential = "S"
    /// Gaussian around the middle of the range, standard deviation a sixth of the range.
    case gaussian = "G"
}

/// Which keys a queue-mode consumer blocks on.
enum DrainMode: String {
    /// Each consumer `BRPOP`s its own queue(s): consumer `i` takes queue `i % Q`
    /// (or, with fewer consumers than queues, every queue `j` with `j % C == i`).
    case perQueue = "per-queue"
    /// Every consumer `BRPOP`s all queues at once.
    case all
}

/// How queue mode fills its queues before the drain.
enum FillMode: String {
    /// Pipelined `LPUSH queue job`, one job per command (Sidekiq's `push`).
    case pipeline
    /// `LPUSH queue job1 … jobK`, `--fill-batch` jobs per command (Sidekiq's `push_bulk`).
    case bulk
}

/// What stream mode runs: the fill, the drain (of streams filled before), or both.
enum StreamPhase: String {
    case fill, drain, all
}

/// What one key/value-mode request is.
enum RequestShape: String {
    /// `SET key value` or `GET key`, by `--ratio`.
    case kv
    /// Sidekiq 6's push: `MULTI`, `SADD queues default`, `LPUSH <key> <job>`, `EXEC`
    /// (four replies; one request). The key names the queue.
    case push
    /// Sidekiq 7's push: `SADD queues default` and `LPUSH <key> <job>` pipelined (two replies).
    case pushPipelined = "push-pipelined"

    /// The replies one request gets.
    var replies: Int {
        switch self {
        case .kv: 1
        case .push: 4
        case .pushPipelined: 2
        }
    }
}

/// The command line, memtier_benchmark-style (`--flag=value` or `--flag value`).
struct BenchOptions {
    var host = "127.0.0.1"
    var port = 6379
    var threads = 2
    var clients = 25
    var pipeline = 1
    var requests = 10_000
    /// Seconds; when set it wins over `requests`.
    var testTime: Double? = nil
    var setRatio = 1
    var getRatio = 10
    var keyPattern = KeyPattern.random
    var keyMinimum = 0
    var keyMaximum = 1_000_000
    /// Zero-padded width of the key number; 0 = the digits of `keyMaximum`.
    var keyWidth = 0
    var keyPrefix = "key:"
    var dataSize = 32
    var protocolVersion = 2
    var warmupSeconds = 0.0
    var jsonOut: String? = nil
    var quiet = false
    var shape = RequestShape.kv

    // Queue mode (Sidekiq multi_queue_bench shape).
    var queues: Int? = nil
    var elements = 10_000
    var consumers = 0
    var drainMode = DrainMode.perQueue
    var fillMode = FillMode.pipeline
    var fillBatch = 100
    var queuePrefix = "queue:"
    var brpopTimeout = 2

    // Stream mode (consumer-group drain).
    var streams: Int? = nil
    var readCount = 10
    var streamPrefix = "jobs:"
    /// Which part of stream mode runs (a script reads the server's CPU between the two).
    var streamPhase = StreamPhase.all

    /// Queue or stream mode: a fill and a drain, reported in `QueueResult`'s table.
    var isQueueMode: Bool { queues != nil || streams != nil }

    static let usage = """
    damselfly-bench: a multi-threaded RESP load generator (memtier_benchmark-like).

    Key/value mode:
      --host=H --port=N            server (default 127.0.0.1:6379)
      --threads=N                  generator threads (default 2)
      --clients=N                  connections per thread (default 25)
      --pipeline=N                 requests in flight per connection (default 1)
      --requests=N                 requests per connection (default 10000)
      --test-time=S                run S seconds instead of a request count
      --ratio=SET:GET              mix of SET and GET (default 1:10)
      --shape=kv|push|push-pipelined  each request a SET or GET (default); Sidekiq 6's push
                                   (MULTI, SADD queues default, LPUSH <key> <job>, EXEC); or
                                   Sidekiq 7's (the SADD and LPUSH pipelined). The key is the queue.
      --key-pattern=R|S|G          uniform, sequential, gaussian (default R)
      --key-minimum=N --key-maximum=N   key number range (default 0..1000000)
      --key-width=N                zero-pad key numbers to N digits (default: digits of key-maximum)
      --key-prefix=P               key name prefix (default "key:")
      --data-size=N                SET value size in bytes (default 32)
      --protocol=2|3               RESP version (3 sends HELLO 3 first)
      --warmup-seconds=S           run S seconds before measuring (excluded)
      --json-out=FILE              write the results as JSON
      --quiet                      no table on stdout

    Queue mode (Sidekiq multi_queue_bench shape), enabled by --queues:
      --queues=Q --elements=N      Q queues of N jobs each (default N 10000)
      --consumers=C                draining connections (default Q)
      --drain-mode=per-queue|all   BRPOP own queue(s), or all queues (default per-queue)
      --fill-mode=pipeline|bulk    pipelined LPUSH of one job (depth --pipeline, at least 16),
                                   or LPUSH of --fill-batch jobs per command (default pipeline)
      --fill-batch=K               jobs per bulk LPUSH (default 100)
      --queue-prefix=P             queue key prefix (default "queue:")
      --brpop-timeout=S            BRPOP timeout in seconds (default 2)

    Stream mode (consumer-group drain), enabled by --streams:
      --streams=S --elements=N     S streams of N 5-field job records each (pipelined XADD)
      --consumers=C                consumers in group g (default S); consumer i reads stream i % S,
                                   XREADGROUP COUNT --count, XACK of each batch with the next read
      --count=K                    entries per XREADGROUP (default 10)
      --stream-prefix=P            stream key prefix (default "jobs:")
      --phase=fill|drain|all       only fill (and create the groups), only drain streams filled
                                   before (expects --streams x --elements entries), or both (default)
    """

    /// Parses `arguments` (without the program name); exits with a message on error.
    static func parse(_ arguments: [String]) -> BenchOptions {
        var o = BenchOptions()
        var i = 0
        func fail(_ message: String) -> Never {
            writeStderr("damselfly-bench: \(message)\n\(usage)\n")
            exit(2)
        }
        while i < arguments.count {
            var arg = arguments[i]
            i += 1
            guard arg.hasPrefix("--") else { fail("unexpected argument '\(arg)'") }
            arg.removeFirst(2)
            var name = arg
            var value: String? = nil
            if let eq = arg.firstIndex(of: "=") {
                name = String(arg[..<eq])
                value = String(arg[arg.index(after: eq)...])
            }
            name = name.replacingOccurrences(of: "_", with: "-")
            let flagsWithoutValue: Set<String> = ["help", "quiet"]
            if value == nil && !flagsWithoutValue.contains(name) {
                guard i < arguments.count else { fail("--\(name) needs a value") }
                value = arguments[i]
                i += 1
            }
            let v = value ?? ""
            func int(_ min: Int = 0) -> Int {
                guard let n = Int(v), n >= min else { fail("--\(name): expected an integer >= \(min), got '\(v)'") }
                return n
            }
            func double() -> Double {
                guard let d = Double(v), d >= 0 else { fail("--\(name): expected a number, got '\(v)'") }
                return d
            }
            switch name {
            case "help": writeStdout(usage + "\n"); exit(0)
            case "quiet": o.quiet = true
            case "host", "server", "s": o.host = v
            case "port", "p": o.port = int(1)
            case "threads", "t": o.threads = int(1)
            case "clients", "c": o.clients = int(1)
            case "pipeline": o.pipeline = int(1)
            case "requests", "n": o.requests = int(1); o.testTime = nil
            case "test-time": o.testTime = double()
            case "ratio":
                let parts = v.split(separator: ":")
                guard parts.count == 2, let s = Int(parts[0]), let g = Int(parts[1]), s >= 0, g >= 0, s + g > 0 else {
                    fail("--ratio: expected SET:GET like 1:10, got '\(v)'")
                }
                o.setRatio = s
                o.getRatio = g
            case "shape":
                guard let shape = RequestShape(rawValue: v) else { fail("--shape: expected kv, push or push-pipelined") }
                o.shape = shape
            case "key-pattern":
                // memtier accepts "R:R" (set pattern : get pattern); one pattern serves both here.
                let first = String(v.split(separator: ":").first ?? "")
                guard let p = KeyPattern(rawValue: first.uppercased()) else { fail("--key-pattern: expected R, S or G") }
                o.keyPattern = p
            case "key-minimum": o.keyMinimum = int()
            case "key-maximum": o.keyMaximum = int()
            case "key-width": o.keyWidth = int()
            case "key-prefix": o.keyPrefix = v
            case "data-size", "d": o.dataSize = int(0)
            case "protocol":
                let p = v.hasPrefix("resp") ? String(v.dropFirst(4)) : v
                guard p == "2" || p == "3" else { fail("--protocol: expected 2 or 3") }
                o.protocolVersion = Int(p)!
            case "warmup-seconds": o.warmupSeconds = double()
            case "json-out", "json-out-file": o.jsonOut = v
            case "queues": o.queues = int(1)
            case "elements": o.elements = int(1)
            case "consumers": o.consumers = int(1)
            case "drain-mode":
                guard let m = DrainMode(rawValue: v) else { fail("--drain-mode: expected per-queue or all") }
                o.drainMode = m
            case "fill-mode":
                guard let m = FillMode(rawValue: v) else { fail("--fill-mode: expected pipeline or bulk") }
                o.fillMode = m
            case "fill-batch": o.fillBatch = int(1)
            case "queue-prefix": o.queuePrefix = v
            case "brpop-timeout": o.brpopTimeout = int(1)
            case "streams": o.streams = int(1)
            case "count": o.readCount = int(1)
            case "stream-prefix": o.streamPrefix = v
            case "phase":
                guard let phase = StreamPhase(rawValue: v) else { fail("--phase: expected fill, drain or all") }
                o.streamPhase = phase
            default: fail("unknown flag --\(name)")
            }
        }
        guard o.keyMaximum >= o.keyMinimum else { fail("--key-maximum must be >= --key-minimum") }
        if o.keyWidth == 0 { o.keyWidth = String(o.keyMaximum).count }
        guard String(o.keyMaximum).count <= o.keyWidth else { fail("--key-width is too small for --key-maximum") }
        if let q = o.queues ?? o.streams, o.consumers == 0 { o.consumers = q }
        return o
    }
}

// MARK: - Output without Foundation

func writeStdout(_ s: String) { writeFD(1, s) }

func writeStderr(_ s: String) { writeFD(2, s) }

/// Writes all of `s` to `fd` (unbuffered: stdout and stderr are globals Swift 6 will not share).
func writeFD(_ fd: Int32, _ s: String) {
    var s = s
    s.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
        }
    }
}

extension String {
    /// `replacingOccurrences` without Foundation (single characters only).
    func replacingOccurrences(of target: Character, with replacement: Character) -> String {
        String(map { $0 == target ? replacement : $0 })
    }
}
