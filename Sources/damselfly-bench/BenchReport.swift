import Glibc

/// The results of one run: a memtier-style table on stdout and JSON for scripts.
struct BenchReport {
    let options: BenchOptions
    var set = LatencyStats()
    var get = LatencyStats()
    var errors = 0
    var hits = 0
    var misses = 0
    var durationSeconds = 0.0
    var connections = 0
    var failure: String? = nil
    /// Queue mode only.
    var queue: QueueResult? = nil

    init(options: BenchOptions) { self.options = options }

    var total: LatencyStats {
        var t = set
        t.merge(get)
        return t
    }

    func opsPerSecond(_ ops: Int) -> Double { durationSeconds > 0 ? Double(ops) / durationSeconds : 0 }

    // MARK: - Table

    func table() -> String {
        if let q = queue { return q.table() }
        var out = "damselfly-bench \(options.host):\(options.port): \(options.threads) threads x \(options.clients) clients, "
        out += "pipeline \(options.pipeline), ratio \(options.setRatio):\(options.getRatio), keys \(options.keyPattern.rawValue) "
        out += "\(options.keyMinimum)..\(options.keyMaximum), \(options.dataSize) B values, RESP\(options.protocolVersion)\n"
        out += "\(fixed(durationSeconds, 2)) s measured, \(total.ops) ops, \(errors) errors\n\n"
        out += "Type    " + pad("Ops/sec", 14) + pad("Hits/sec", 12) + pad("Misses/sec", 12)
            + pad("Avg ms", 10) + pad("p50 ms", 10) + pad("p99 ms", 10) + pad("p99.9 ms", 10) + "\n"
        out += String(repeating: "-", count: 86) + "\n"
        func row(_ name: String, _ s: LatencyStats, hits: String, misses: String) -> String {
            name.padding(8) + pad(fixed(opsPerSecond(s.ops), 2), 14) + pad(hits, 12) + pad(misses, 12)
                + pad(fixed(s.averageMicros / 1000, 3), 10) + pad(fixed(s.percentileMicros(50) / 1000, 3), 10)
                + pad(fixed(s.percentileMicros(99) / 1000, 3), 10) + pad(fixed(s.percentileMicros(99.9) / 1000, 3), 10) + "\n"
        }
        out += row("Sets", set, hits: "---", misses: "---")
        out += row("Gets", get, hits: fixed(opsPerSecond(hits), 2), misses: fixed(opsPerSecond(misses), 2))
        out += row("Totals", total, hits: fixed(opsPerSecond(hits), 2), misses: fixed(opsPerSecond(misses), 2))
        return out
    }

    // MARK: - JSON

    func json() -> String {
        let o = options
        var config = "{\"host\": \(jsonString(o.host)), \"port\": \(o.port), \"threads\": \(o.threads), "
        config += "\"clients\": \(o.clients), \"pipeline\": \(o.pipeline), "
        config += "\"requests\": \(o.testTime == nil ? String(o.requests) : "null"), "
        config += "\"test_time\": \(o.testTime.map { fixed($0, 3) } ?? "null"), "
        config += "\"ratio\": \"\(o.setRatio):\(o.getRatio)\", \"key_pattern\": \"\(o.keyPattern.rawValue)\", "
        config += "\"key_minimum\": \(o.keyMinimum), \"key_maximum\": \(o.keyMaximum), "
        config += "\"key_prefix\": \(jsonString(o.keyPrefix)), \"data_size\": \(o.dataSize), "
        config += "\"protocol\": \(o.protocolVersion), \"warmup_seconds\": \(fixed(o.warmupSeconds, 3))"
        if o.isQueueMode {
            config += ", \"queues\": \(o.queues ?? 0), \"elements\": \(o.elements), \"consumers\": \(o.consumers), "
            config += "\"drain_mode\": \"\(o.drainMode.rawValue)\", \"fill_mode\": \"\(o.fillMode.rawValue)\", "
            config += "\"fill_batch\": \(o.fillBatch)"
        }
        config += "}"
        var out = "{\n  \"tool\": \"damselfly-bench\",\n  \"mode\": \"\(o.streams != nil ? "stream" : o.isQueueMode ? "queue" : "kv")\",\n"
        out += "  \"config\": \(config),\n"
        if let q = queue {
            out += "  \"connections\": \(o.consumers),\n"
            out += "  \"total_ops\": \(q.drainLatency.ops),\n"
            out += "  \"errors\": \(q.errors),\n"
            out += "  \"duration_s\": \(fixed(q.drainSeconds, 6)),\n"
            out += "  \"ops_per_sec\": \(fixed(q.drainJobsPerSecond, 2)),\n"
            out += "  \"latency_us\": \(q.drainLatency.json),\n"
            out += "  \"fill\": {\"jobs\": \(q.filled), \"seconds\": \(fixed(q.fillSeconds, 6)), \"jobs_per_sec\": \(fixed(q.fillJobsPerSecond, 2))},\n"
            out += "  \"drain\": {\"jobs\": \(q.drainLatency.ops), \"seconds\": \(fixed(q.drainSeconds, 6)), "
            out += "\"jobs_per_sec\": \(fixed(q.drainJobsPerSecond, 2)), \"empty_replies\": \(q.emptyReplies), "
            out += "\"latency_us\": \(q.drainLatency.json)},\n"
        } else {
            let t = total
            out += "  \"connections\": \(connections),\n"
            out += "  \"total_ops\": \(t.ops),\n"
            out += "  \"errors\": \(errors),\n"
            out += "  \"duration_s\": \(fixed(durationSeconds, 6)),\n"
            out += "  \"ops_per_sec\": \(fixed(opsPerSecond(t.ops), 2)),\n"
            out += "  \"latency_us\": \(t.json),\n"
            out += "  \"commands\": {\n"
            out += "    \"SET\": {\"ops\": \(set.ops), \"ops_per_sec\": \(fixed(opsPerSecond(set.ops), 2)), \"latency_us\": \(set.json)},\n"
            out += "    \"GET\": {\"ops\": \(get.ops), \"ops_per_sec\": \(fixed(opsPerSecond(get.ops), 2)), "
            out += "\"hits\": \(hits), \"misses\": \(misses), \"latency_us\": \(get.json)}\n"
            out += "  },\n"
        }
        out += "  \"failure\": \(failure.map(jsonString) ?? "null")\n}\n"
        return out
    }
}

extension String {
    /// `self` padded on the right to `width` characters.
    func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
