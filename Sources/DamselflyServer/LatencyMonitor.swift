import DamselflyCommands
import DamselflyRESP
import DamselflyRuntime
import Synchronization

/// Redis's latency monitor: per event ("command", "fast-command"), the last 160
/// one-per-second samples of latencies at or over `latency-monitor-threshold` ms, and
/// the all-time maximum. Written only by commands that were that slow, so the mutex is
/// off the common path; the threshold is one relaxed load per command.
final class LatencyMonitor: Sendable {
    static let historyLength = 160

    struct Sample: Sendable {
        var time: Int
        var latency: Int
    }

    struct Series: Sendable {
        /// Oldest first, at most ``LatencyMonitor/historyLength``.
        var samples: [Sample] = []
        var max = 0
    }

    /// `latency-monitor-threshold` in ms; 0 disables the monitor.
    let thresholdMs = Atomic<Int>(0)
    private let events = Mutex<[String: Series]>([:])

    /// `latency-tracking`: whether calls enter the per-command histograms.
    let tracking = Atomic<Bool>(true)
    /// `latency-tracking-info-percentiles`: what INFO latencystats reports, in its order.
    let infoPercentilesSetting = Mutex<[Double]>([50, 99, 99.9])
    func infoPercentiles() -> [Double] { infoPercentilesSetting.withLock { $0 } }
    /// Adds a sample; samples of one second merge, keeping the highest latency.
    func record(_ event: String, latencyMs: Int, nowSeconds: Int = Int(Clock.wallMillis() / 1000)) {
        events.withLock { all in
            var series = all[event] ?? Series()
            if let last = series.samples.last, last.time == nowSeconds {
                series.samples[series.samples.count - 1].latency = Swift.max(last.latency, latencyMs)
            } else {
                series.samples.append(Sample(time: nowSeconds, latency: latencyMs))
                if series.samples.count > LatencyMonitor.historyLength { series.samples.removeFirst() }
            }
            series.max = Swift.max(series.max, latencyMs)
            all[event] = series
        }
    }

    /// Records `event` when the monitor is on and `nanos` reach its threshold (Redis's
    /// latencyAddSampleIfNeeded): the `expire-cycle` of a shard that deleted a large value.
    func recordIfSlow(_ event: String, nanos: UInt64) {
        let threshold = thresholdMs.load(ordering: .relaxed)
        let ms = Int(nanos / 1_000_000)
        if threshold > 0 && ms >= threshold { record(event, latencyMs: ms) }
    }

    func snapshot() -> [(String, Series)] {
        events.withLock { $0.sorted { $0.key < $1.key }.map { ($0.key, $0.value) } }
    }

    func series(_ event: String) -> Series? {
        events.withLock { $0[event] }
    }

    /// Drops the named events (all when empty); how many existed.
    func reset(_ names: [String]) -> Int {
        events.withLock { all in
            if names.isEmpty {
                let count = all.count
                all.removeAll()
                return count
            }
            var count = 0
            for name in Set(names) where all.removeValue(forKey: name) != nil { count += 1 }
            return count
        }
    }
}

/// LATENCY LATEST / HISTORY / RESET / GRAPH / DOCTOR / HISTOGRAM / HELP.
enum LatencyFamily {
    static func register(_ r: CommandRegistry, server: Server) {
        r.register("latency", arity: -2, flags: [.admin, .noscript, .loading, .stale], group: "server") { call in
            let monitor = server.latency
            let n = call.args.count
            switch call.args.string(1).lowercased() {
            case "latest" where n == 2:
                call.reply(.array(monitor.snapshot().map { name, series in
                    let last = series.samples.last ?? LatencyMonitor.Sample(time: 0, latency: 0)
                    return .array([.bulkString(name), .integer(last.time), .integer(last.latency), .integer(series.max)])
                }))
            case "history" where n == 3:
                let samples = monitor.series(call.args.string(2))?.samples ?? []
                call.reply(.array(samples.map { .array([.integer($0.time), .integer($0.latency)]) }))
            case "reset":
                call.reply(.integer(monitor.reset((2..<max(n, 2)).map { call.args.string($0) })))
            case "graph" where n == 3:
                let event = call.args.string(2)
                guard let series = monitor.series(event), !series.samples.isEmpty else {
                    return call.reply(.error("ERR No samples available for event '\(event)'"))
                }
                call.reply(.verbatim(graph(event, series, nowSeconds: Int(Clock.wallMillis() / 1000))))
            case "histogram":
                call.reply(histogram(call, server: server))
            case "doctor" where n == 2:
                call.reply(.verbatim(doctor(monitor)))
            case "help" where n == 2:
                call.reply(.array(helpLines.map { .simple($0) }))
            case "latest", "history", "graph", "doctor", "help":
                call.reply(.error("ERR wrong number of arguments for 'latency|\(call.args.string(1).lowercased())' command"))
            default:
                call.reply(.error("ERR unknown subcommand '\(call.args.string(1))'. Try LATENCY HELP."))
            }
        }
    }

    /// `LATENCY HISTOGRAM [command ...]`: per command with calls since the last CONFIG
    /// RESETSTAT, `calls` and `histogram_usec` (bucket label → cumulative calls, only the
    /// buckets where the count grows), a map in RESP3 and a flat array in RESP2, as Redis
    /// 7.0's. No names: every command. A container's name stands for its subcommands,
    /// `container|sub` for one; unknown names are skipped.
    static func histogram(_ call: CommandCall, server: Server) -> Reply {
        let registry = call.engine.registry
        var chosen: [(String, [Int])] = []
        func add(_ name: String, _ stats: [CommandStats]) {
            let counts = LatencyHistogram.latencyBuckets(LatencyHistogram.merged(stats.map(\.latency)))
            if counts.contains(where: { $0 > 0 }) { chosen.append((name, counts)) }
        }
        func add(_ spec: CommandSpec) {
            if spec.hasSubcommands {
                for (name, stats) in spec.subcommandStats.sorted(by: { $0.key < $1.key }) { add(name, stats) }
            } else {
                add(spec.name, spec.stats)
            }
        }
        if call.args.count == 2 {
            for (_, spec) in registry.commands.sorted(by: { $0.key < $1.key }) { add(spec) }
        } else {
            for i in 2..<call.args.count {
                let name = call.args.string(i).lowercased()
                if let bar = name.firstIndex(of: "|") {
                    if let stats = registry.commands[String(name[..<bar])]?.subcommandStats[name] { add(name, stats) }
                } else if let spec = registry.commands[name] {
                    add(spec)
                }
            }
        }
        return .map(chosen.map { name, counts in
            var cumulative = 0
            var buckets: [(Reply, Reply)] = []
            for (k, c) in counts.enumerated() where c > 0 {
                cumulative += c
                buckets.append((.integer(LatencyBuckets.labelMicros(k)), .integer(cumulative)))
            }
            return (.bulkString(name), .map([(.bulkString("calls"), .integer(cumulative)),
                                             (.bulkString("histogram_usec"), .map(buckets))]))
        })
    }

    /// A bar chart of the samples, newest on the right, as Redis's: a header with the
    /// high, low and all-time high, then one column per sample labelled with its age.
    static func graph(_ event: String, _ series: LatencyMonitor.Series, nowSeconds: Int) -> String {
        let samples = series.samples.suffix(80)
        let high = samples.map(\.latency).max() ?? 0
        let low = samples.map(\.latency).min() ?? 0
        var out = "\(event) - high \(high) ms, low \(low) ms (all time high \(series.max) ms)\n"
        out += String(repeating: "-", count: 80) + "\n"
        let rows = 4
        for row in stride(from: rows, to: 0, by: -1) {
            var line = ""
            for sample in samples {
                let level = high > 0 ? (sample.latency * rows + high - 1) / high : 0
                line += level >= row ? "#" : (row == 1 ? "_" : " ")
            }
            out += line + "\n"
        }
        var label = ""
        for sample in samples {
            let age = nowSeconds - sample.time
            label += age < 60 ? "s" : age < 3600 ? "m" : "h"
        }
        return out + label + "\n"
    }

    static func doctor(_ monitor: LatencyMonitor) -> String {
        let events = monitor.snapshot()
        if events.isEmpty {
            if monitor.thresholdMs.load(ordering: .relaxed) == 0 {
                return "I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this Redis instance. You may use \"CONFIG SET latency-monitor-threshold <milliseconds>.\" in order to enable it. If we weren't in a deep space mission I'd suggest to take a look at https://redis.io/topics/latency-monitor.\n"
            }
            return "Dave, no latency spike was observed during the lifetime of this Redis instance, not in the slightest bit. I honestly think you ought to sit down calmly, take a stress pill, and think things over.\n"
        }
        var out = "Dave, I have observed latency spikes in this Redis instance. You don't mind talking about it, do you Dave?\n\n"
        for (i, (name, series)) in events.enumerated() {
            let total = series.samples.reduce(0) { $0 + $1.latency }
            let average = series.samples.isEmpty ? 0 : total / series.samples.count
            let deviation = series.samples.isEmpty
                ? 0 : series.samples.reduce(0) { $0 + abs($1.latency - average) } / series.samples.count
            let span = (series.samples.last?.time ?? 0) - (series.samples.first?.time ?? 0)
            let period = series.samples.count > 1 ? Double(span) / Double(series.samples.count) : 0
            out += "\(i + 1). \(name): \(series.samples.count) latency spikes (average \(average)ms, mean deviation \(deviation)ms, period \(InfoReport.format2(period)) sec). Worst all time event \(series.max)ms.\n"
        }
        out += "\nI have a few advices for you:\n\n"
        out += "- Check your slow log (SLOWLOG GET) for the commands over the threshold; a command that is O(N) over a large value blocks its shard's thread for that long.\n"
        return out
    }

    static let helpLines = [
        "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "DOCTOR",
        "    Return a human readable latency analysis report.",
        "GRAPH <event>",
        "    Return an ASCII latency graph for the <event> class.",
        "HISTORY <event>",
        "    Return time-latency samples for the <event> class.",
        "LATEST",
        "    Return the latest latency samples for all events.",
        "RESET [<event> ...]",
        "    Reset latency data of one or more <event> classes.",
        "    (default: reset all data for all event classes)",
        "HISTOGRAM [COMMAND ...]",
        "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
        "    If no commands are specified then all histograms are replied.",
        "HELP",
        "    Prints this help.",
    ]
}

extension LatencyMonitor {
    /// Applies `latency-monitor-threshold` (kept with Redis's other stored parameters).
    func configure(_ config: ServerConfig) {
        let text = config.redisParameters["latency-monitor-threshold"] ?? "0"
        thresholdMs.store(Int(text) ?? 0, ordering: .relaxed)
        tracking.store((config.redisParameters["latency-tracking"] ?? "yes") == "yes", ordering: .relaxed)
        let percentiles = (config.redisParameters["latency-tracking-info-percentiles"] ?? "50 99 99.9")
            .split(separator: " ").compactMap { Double($0) }
        infoPercentilesSetting.withLock { $0 = percentiles }
    }
}
