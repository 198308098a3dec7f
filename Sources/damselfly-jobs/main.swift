import DamselflyJobs
import DamselflyJobsWeb
import Glibc
import Logging
import Metrics
import Prometheus

/// `damselfly-jobs work|push|stats|bench`: a Sidekiq-compatible worker with the example jobs
/// compiled in, a shell client, a `sidekiqmon`-style report, and multi_queue_bench.

let usage = """
    usage: damselfly-jobs <command> [options]   (REDIS_URL or --url redis://127.0.0.1:6379/0)
      work   [-c N] [-q queue[,weight]]... [-t SECONDS] [--no-reliable] [--poll-interval S]
             [--retry-delay S] [--max-recoveries N] [--capsule name:concurrency:q1,q2] [-g tag]
             [--prefetch N]   (jobs a fetch takes beyond the one it runs, default 3; 0: one per fetch)
             [--log-level debug|info|warn|error] [--metrics-port N]   (Prometheus text on GET /metrics)
      push   --class NAME [--queue Q] [--args JSON] [--count N] [--in SECONDS | --at EPOCH] [--retry true|false|N]
             [--backtrace true|false|N]
      stats
      web    [--port N (9292)] [--bind HOST (127.0.0.1)] [--redis URL] [--poll SECONDS (5; 0: no live refresh)]
      bench  [--queues N] [--processes N] [--concurrency N] [--elements N] [--iterations N]
             [--no-reliable] [--prefetch N] [--ruby-require FILE]   (or QUEUES=.. PROCESSES=.. CONCURRENCY=.. ELEMENTS=.. ITERATIONS=..)

    """

func fail(_ message: String) -> Never {
    var bytes = Array("damselfly-jobs: \(message)\n".utf8)
    _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    exit(2)
}

func must<T>(_ value: T?, _ message: String) -> T {
    guard let value else { fail(message) }
    return value
}

func env(_ name: String) -> String? {
    guard let v = getenv(name) else { return nil }
    return String(decoding: UnsafeRawBufferPointer(start: v, count: strlen(v)), as: UTF8.self)
}

/// `--flag value` / `--flag=value` options and bare flags, in order.
struct Arguments {
    var values: [(String, String)] = []
    var flags: Set<String> = []
    static let bare: Set<String> = ["--no-reliable", "--reliable", "-r", "-v", "--verbose"]

    init(_ args: ArraySlice<String>) {
        var i = args.startIndex
        while i < args.endIndex {
            let a = args[i]
            if let eq = a.firstIndex(of: "="), a.hasPrefix("--") {
                values.append((String(a[..<eq]), String(a[a.index(after: eq)...])))
            } else if Arguments.bare.contains(a) {
                flags.insert(a)
                if a == "-r", i + 1 < args.endIndex, !args[i + 1].hasPrefix("-") { i += 1 }  // -r FILE: nothing to require in Swift
            } else if a.hasPrefix("-"), i + 1 < args.endIndex {
                values.append((a, args[i + 1]))
                i += 1
            } else {
                fail("unexpected argument \(a)\n\(usage)")
            }
            i += 1
        }
    }

    func all(_ names: String...) -> [String] { values.filter { names.contains($0.0) }.map(\.1) }
    func last(_ names: String...) -> String? { values.last { names.contains($0.0) }?.1 }
    func int(_ names: String..., env name: String, default d: Int) -> Int {
        if let v = values.last(where: { names.contains($0.0) })?.1 { return must(Int(v), "bad number \(v)") }
        return env(name).flatMap { Int($0) } ?? d
    }
}

func redisConfig(_ args: Arguments) -> RedisConfig {
    let url = args.last("--url", "-u", "--redis") ?? env("REDIS_URL") ?? "redis://127.0.0.1:6379/0"
    guard let config = RedisConfig(url: url) else { fail("bad Redis URL \(url)") }
    return config
}

func parseJSONArgs(_ text: String) -> [JSONValue] {
    guard let value = try? JSONValue.parse(text), let array = value.arrayValue else { fail("--args must be a JSON array: \(text)") }
    return array
}

// MARK: - work

func work(_ args: Arguments) async throws {
    var options = WorkerOptions()
    options.redis = redisConfig(args)
    let queues = args.all("-q", "--queue")
    let concurrency = args.int("-c", "--concurrency", env: "CONCURRENCY", default: 10)
    options.capsules = [Capsule(queues: QueueList(parsing: queues.isEmpty ? ["default"] : queues), concurrency: concurrency)]
    for spec in args.all("--capsule") {
        let parts = spec.split(separator: ":", maxSplits: 2).map(String.init)
        guard parts.count == 3, let c = Int(parts[1]) else { fail("--capsule name:concurrency:q1,q2") }
        options.capsules.append(Capsule(name: parts[0], queues: QueueList(parsing: parts[2].split(separator: ";").map(String.init)),
                                        concurrency: c))
    }
    options.reliable = !args.flags.contains("--no-reliable")
    if let p = args.last("--prefetch") {
        let prefetch = must(Int(p), "bad --prefetch")
        for i in options.capsules.indices { options.capsules[i].prefetch = prefetch }
    }
    if let t = args.last("-t", "--timeout") { options.shutdownTimeout = must(Double(t), "bad -t") }
    if let p = args.last("--poll-interval") { options.pollIntervalAverage = must(Double(p), "bad --poll-interval") }
    if let h = args.last("--heartbeat") { options.heartbeatInterval = must(Double(h), "bad --heartbeat") }
    if let r = args.last("--recovery-interval") { options.recoveryInterval = must(Double(r), "bad --recovery-interval") }
    if let d = args.last("--retry-delay") {
        let seconds = must(Double(d), "bad --retry-delay")
        options.retry.delay = { _ in seconds }
    }
    if let m = args.last("--max-retries") { options.retry.maxRetries = must(Int(m), "bad --max-retries") }
    if let m = args.last("--max-recoveries") { options.maxRecoveries = must(Int(m), "bad --max-recoveries") }
    if let g = args.last("-g", "--tag") { options.tag = g }
    switch args.last("--log-level") ?? (args.flags.contains("-v") ? "debug" : "info") {
    case "debug": options.logLevel = .debug
    case "info": options.logLevel = .info
    case "warn": options.logLevel = .warning
    case "error": options.logLevel = .error
    case let other: fail("bad --log-level \(other)")
    }
    let worker = JobWorker(options: options, registry: exampleRegistry())
    let signals = worker.installSignalHandlers()
    if let port = args.last("--metrics-port") {
        // The runner's swift-metrics (counters, latency and duration timers) as Prometheus text.
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await MetricsEndpoint.serve(registry: registry, host: args.last("--metrics-bind") ?? "127.0.0.1",
                                                port: must(Int(port), "bad --metrics-port"))
            }
            try await worker.run()
            group.cancelAll()
        }
    } else {
        try await worker.run()
    }
    withExtendedLifetime(signals) {}
}

// MARK: - push

func push(_ args: Arguments) async throws {
    guard let className = args.last("--class") else { fail("push needs --class") }
    let pool = RedisPool(config: redisConfig(args), limit: 2)
    let client = JobClient(redis: pool, registry: exampleRegistry())
    let jobArgs = parseJSONArgs(args.last("--args") ?? "[]")
    let count = args.int("--count", "-n", env: "COUNT", default: 1)
    var retry: RetrySetting?
    switch args.last("--retry") {
    case nil: retry = nil
    case "true"?: retry = .enabled
    case "false"?: retry = .disabled
    case let n?: retry = .attempts(must(Int(n), "bad --retry \(n)"))
    }
    var backtrace: JSONValue?
    switch args.last("--backtrace") {
    case nil: backtrace = nil
    case "true"?: backtrace = .bool(true)
    case "false"?: backtrace = .bool(false)
    case let n?: backtrace = .int(Int64(must(Int(n), "bad --backtrace \(n)")))
    }
    var at: Double?
    if let s = args.last("--in") { at = JobPayload.now() + (must(Double(s), "bad --in")) }
    if let s = args.last("--at") { at = must(Double(s), "bad --at") }
    var jids: [String] = []
    var left = count
    while left > 0 {
        let n = min(left, 1000)
        jids += try await client.pushBulk(className, args: Array(repeating: jobArgs, count: n), queue: args.last("--queue"),
                                          retry: retry, backtrace: backtrace, at: at)
        left -= n
    }
    if count <= 20 {
        for jid in jids { print(jid) }
    } else {
        print("pushed \(jids.count) \(className) jobs")
    }
}

// MARK: - stats

func stats(_ args: Arguments) async throws {
    let pool = RedisPool(config: redisConfig(args), limit: 2)
    print(try await JobStats.read(redis: pool).render(), terminator: "")
}

// MARK: - web

/// Sidekiq Web's pages over the same Redis (`DamselflyJobsWeb`).
func web(_ args: Arguments) async throws {
    let port = args.int("--port", "-p", env: "PORT", default: 9292)
    let host = args.last("--bind", "-b") ?? "127.0.0.1"
    let poll = args.int("--poll", env: "POLL", default: 5)
    try await JobsWeb.run(host: host, port: port, redis: redisConfig(args), pollInterval: poll)
}

// MARK: - bench

/// Sidekiq's `multi_queue_bench`: fill `queue:q<i>` with no-op jobs by bulk pushes, start
/// PROCESSES workers (process p reads `q<p % QUEUES>`), time until every queue is empty.
func bench(_ args: Arguments) async throws {
    let config = redisConfig(args)
    let queues = args.int("--queues", env: "QUEUES", default: 1)
    let processes = args.int("--processes", env: "PROCESSES", default: queues)
    let concurrency = args.int("--concurrency", "-c", env: "CONCURRENCY", default: 10)
    let elements = args.int("--elements", env: "ELEMENTS", default: 1000)
    let iterations = args.int("--iterations", env: "ITERATIONS", default: 10)
    // Sidekiq's `-r` takes a path Ruby's `require` finds: make a relative one absolute.
    let rubyRequire = args.last("--ruby-require").map { realpathString($0) }
    let pool = RedisPool(config: config, limit: 4)
    let client = JobClient(redis: pool)
    try await pool.call("FLUSHDB")
    print("Filling \(queues) queues with \(elements * iterations) NoopJob jobs each")
    for q in 0..<queues {
        for iteration in 0..<iterations {
            let jobArgs = (0..<elements).map { [JSONValue.int(Int64(iteration * elements + $0))] }
            try await client.pushBulk("NoopJob", args: jobArgs, queue: "q\(q)")
        }
    }
    let total = queues * elements * iterations
    let me = CommandLine.arguments[0].contains("/") ? realpathString(CommandLine.arguments[0]) : CommandLine.arguments[0]
    var children: [pid_t] = []
    let started = JobPayload.now()
    for p in 0..<processes {
        let argv: [String]
        if let rubyRequire {
            argv = ["sidekiq", "-r", rubyRequire, "-c", String(concurrency), "-q", "q\(p % queues)"]
        } else {
            argv = [me, "work", "--url", config.url, "-c", String(concurrency), "-q", "q\(p % queues)", "--log-level", "warn"]
                + (args.flags.contains("--no-reliable") ? ["--no-reliable"] : [])
                + (args.last("--prefetch").map { ["--prefetch", $0] } ?? [])
        }
        children.append(spawn(argv, extraEnv: ["REDIS_URL=\(config.url)"]))
    }
    print("Started \(processes) \(rubyRequire == nil ? "Swift" : "Ruby Sidekiq") worker processes, concurrency \(concurrency)"
          + (rubyRequire == nil ? ", reliable fetch \(args.flags.contains("--no-reliable") ? "off" : "on")" : ""))
    let serverCPUBefore = try await serverCPUSeconds(pool)
    var lastReport = started
    // When the queues first shrank: what start-up cost, and the rate after it.
    var firstTaken: (at: Double, left: Int)?
    while true {
        let sizes = try await pool.pipeline((0..<queues).map { ["LLEN", "queue:q\($0)"] }).map { Int($0.int ?? 0) }
        let left = sizes.reduce(0, +)
        let now = JobPayload.now()
        if firstTaken == nil && left < total { firstTaken = (now, left) }
        if left == 0 { break }
        // A worker that could not start (or died) would leave this loop waiting forever.
        for (i, child) in children.enumerated() where child > 0 {
            var status: Int32 = 0
            if waitpid(child, &status, WNOHANG) == child {
                children[i] = 0
                print("worker process \(child) exited (status \(status)) with \(left) jobs left")
            }
        }
        if children.allSatisfy({ $0 == 0 }) { fail("every worker process exited with \(left) jobs left") }
        if now - lastReport >= 5 {
            print("  \(left) jobs left")
            lastReport = now
        }
        try await Task.sleep(for: .milliseconds(5))
    }
    let seconds = JobPayload.now() - started
    print("Done, \(total) jobs in \(String(Double(Int(seconds * 100)) / 100)) sec, \(Int(Double(total) / seconds)) jobs/sec")
    let end = started + seconds
    if let firstTaken, end > firstTaken.at {
        print("  first job taken after \(hundredths(firstTaken.at - started)) sec; then \(Int(Double(firstTaken.left) / (end - firstTaken.at))) jobs/sec")
    }
    // CPU seconds while the jobs ran: who used the cores (2 on the bench VM) the workers share.
    let workerCPU = children.reduce(0.0) { $0 + processCPUSeconds($1) }
    print("  worker processes: \(hundredths(workerCPU)) CPU sec (\(Int(workerCPU / seconds * 100))% of one core)")
    if let before = serverCPUBefore, let after = try await serverCPUSeconds(pool) {
        print("  server: \(hundredths(after - before)) CPU sec (\(Int((after - before) / seconds * 100))% of one core)")
    }
    if let info = try? await pool.call("INFO", "transaction").text, info.contains(":") {
        print(info.split(separator: "\r\n").joined(separator: "\n"))
    }
    for child in children where child > 0 { kill(child, SIGTERM) }
    for child in children where child > 0 {
        var status: Int32 = 0
        waitpid(child, &status, 0)
    }
}

func hundredths(_ x: Double) -> String { String(Double(Int(x * 100)) / 100) }

/// `used_cpu_sys + used_cpu_user` from `INFO cpu` (redis-server and Damselfly both report it).
func serverCPUSeconds(_ pool: RedisPool) async throws -> Double? {
    guard let info = try? await pool.call("INFO", "cpu").text else { return nil }
    var total = 0.0
    var found = false
    for line in info.split(separator: "\r\n") {
        let parts = line.split(separator: ":", maxSplits: 1)
        if parts.count == 2, parts[0] == "used_cpu_sys" || parts[0] == "used_cpu_user", let v = Double(parts[1]) {
            total += v
            found = true
        }
    }
    return found ? total : nil
}

/// User + system CPU seconds of a running child (`/proc/<pid>/stat` fields 14 and 15).
func processCPUSeconds(_ pid: pid_t) -> Double {
    guard pid > 0, let file = fopen("/proc/\(pid)/stat", "r") else { return 0 }
    defer { fclose(file) }
    var buffer = [CChar](repeating: 0, count: 4096)
    guard fgets(&buffer, Int32(buffer.count), file) != nil else { return 0 }
    let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    // Fields after the command name, which is in parentheses and may hold spaces.
    guard let close = line.lastIndex(of: ")") else { return 0 }
    let fields = line[line.index(after: close)...].split(separator: " ")
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

func realpathString(_ path: String) -> String {
    guard let resolved = realpath(path, nil) else { return path }
    defer { free(resolved) }
    return String(decoding: UnsafeRawBufferPointer(start: resolved, count: strlen(resolved)), as: UTF8.self)
}

func spawn(_ argv: [String], extraEnv: [String]) -> pid_t {
    var environment: [String] = []
    var e = environ
    while let entry = e.pointee {
        let s = String(decoding: UnsafeRawBufferPointer(start: entry, count: strlen(entry)), as: UTF8.self)
        if !extraEnv.contains(where: { s.hasPrefix($0.prefix(while: { $0 != "=" }) + "=") }) { environment.append(s) }
        e += 1
    }
    environment += extraEnv
    let cArgs = argv.map { strdup($0) } + [nil]
    let cEnv = environment.map { strdup($0) } + [nil]
    defer {
        cArgs.forEach { free($0) }
        cEnv.forEach { free($0) }
    }
    var pid: pid_t = 0
    let rc = posix_spawnp(&pid, argv[0], nil, nil, cArgs, cEnv)
    if rc != 0 { fail("cannot start \(argv[0]): \(rc)") }
    return pid
}

// MARK: - main

let argv = CommandLine.arguments
guard argv.count >= 2 else { fail(usage) }
// Sidekiq's log lines on stderr; a program embedding DamselflyJobs bootstraps its own backend.
LoggingSystem.bootstrap(SidekiqLogHandler.init)
let rest = Arguments(argv.dropFirst(2))
do {
    switch argv[1] {
    case "work": try await work(rest)
    case "push": try await push(rest)
    case "stats": try await stats(rest)
    case "web": try await web(rest)
    case "bench": try await bench(rest)
    case "-h", "--help", "help": print(usage, terminator: "")
    default: fail("unknown command \(argv[1])\n\(usage)")
    }
} catch {
    fail("\(error)")
}
exit(0)
