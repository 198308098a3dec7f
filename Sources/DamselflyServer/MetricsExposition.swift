/// Prometheus's text exposition (format 0.0.4) of what `INFO ALL` reports, for
/// `GET /metrics` (issue 19). Rendered from the INFO text itself, so a scrape
/// reads exactly the per-loop and per-shard counters INFO reads (no lock of its
/// own, nothing on the command path) and a field added to INFO shows up here.
///
/// Names are `damselfly_` + the INFO field. Fields Redis documents as running
/// totals become counters ending in `_total`; other numbers are gauges; text
/// fields are left out except the version, which labels `damselfly_build_info`.
/// The structured lines become labelled families: `db0:keys=…` →
/// `damselfly_db_keys{db="0"}`, `cmdstat_get:calls=…` →
/// `damselfly_commands_total{cmd="get"}` and its duration in seconds,
/// `errorstat_ERR:count=…` → `damselfly_errors_total{prefix="ERR"}`,
/// `tx_type_cnt:quick=…` → `damselfly_tx_type_total{type="quick"}`.
enum MetricsExposition {
    /// INFO fields that only ever grow (Redis's stats), exported as counters.
    static let counters: Set<String> = [
        "total_connections_received", "total_commands_processed", "total_net_input_bytes", "total_net_output_bytes",
        "rejected_connections", "expired_keys", "evicted_keys", "keyspace_hits", "keyspace_misses", "evicted_clients",
        "total_error_replies", "connection_migrations", "sync_full", "sync_partial_ok", "sync_partial_err", "total_forks",
        "used_cpu_sys", "used_cpu_user", "used_cpu_sys_children", "used_cpu_user_children",
        "tx_schedule_cancel_total", "eval_io_coordination_total", "eval_shardlocal_coordination_total",
        "eval_rerun_lent_total", "eval_undeclared_key_errors_total",
    ]

    /// INFO fields exported under another name (Prometheus's base units and
    /// suffixes, which `promtool check metrics` checks), and fields left out
    /// (the git hash, the clock, a second copy of the uptime).
    static let renamed: [String: String] = [
        "instantaneous_ops_per_sec": "instantaneous_ops_per_second",
        "rdb_last_bgsave_time_sec": "rdb_last_bgsave_duration_seconds",
        "thread_count": "threads",
        "total_connections_received": "connections_received_total", "total_commands_processed": "commands_processed_total",
        "total_net_input_bytes": "net_input_bytes_total", "total_net_output_bytes": "net_output_bytes_total",
        "total_error_replies": "error_replies_total", "total_forks": "forks_total",
        "used_memory": "memory_used_bytes", "used_memory_rss": "memory_rss_bytes", "used_memory_peak": "memory_peak_bytes",
        "used_memory_lua": "memory_lua_bytes", "maxmemory": "memory_max_bytes",
        "used_cpu_sys": "cpu_sys_seconds_total", "used_cpu_user": "cpu_user_seconds_total",
        "used_cpu_sys_children": "cpu_sys_children_seconds_total", "used_cpu_user_children": "cpu_user_children_seconds_total",
    ]
    static let omitted: Set<String> = [
        "redis_git_sha1", "redis_git_dirty", "arch_bits", "server_time_usec", "uptime_in_days", "process_id", "tcp_port",
        "master_replid2",
    ]

    /// One metric family: its type, help and samples in order.
    struct Family {
        let name: String
        let type: String
        let help: String
        var samples: [(labels: String, value: String)] = []
    }

    static func render(info: String) -> String {
        var families: [Family] = []
        var index: [String: Int] = [:]
        func add(_ name: String, _ type: String, _ help: String, labels: String = "", _ value: String) {
            let full = "damselfly_" + name
            if let i = index[full] {
                families[i].samples.append((labels, value))
            } else {
                index[full] = families.count
                families.append(Family(name: full, type: type, help: help, samples: [(labels, value)]))
            }
        }
        // "\r\n" is one Character: split on either form of line end.
        for line in info.split(whereSeparator: { $0 == "\r\n" || $0 == "\n" }) {
            guard !line.hasPrefix("#"), let colon = line.firstIndex(of: ":") else { continue }
            let key = String(line[..<colon])
            let value = String(line[line.index(after: colon)...])
            if key == "redis_version" {
                add("build_info", "gauge", "Redis version Damselfly answers as.", labels: "version=\"\(escape(value))\"", "1")
            } else if key.hasPrefix("db"), let db = Int(key.dropFirst(2)) {
                let fields = subfields(value)
                let label = "db=\"\(db)\""
                if let v = fields["keys"] { add("db_keys", "gauge", "Keys per database.", labels: label, v) }
                if let v = fields["expires"] { add("db_keys_expiring", "gauge", "Keys with a TTL per database.", labels: label, v) }
                if let v = fields["avg_ttl"], let ms = Double(v) {
                    add("db_avg_ttl_seconds", "gauge", "Average TTL of the keys with one, per database.", labels: label, number(ms / 1000))
                }
            } else if key.hasPrefix("cmdstat_") {
                let fields = subfields(value)
                let label = "cmd=\"\(escape(String(key.dropFirst(8))))\""
                if let v = fields["calls"] { add("commands_total", "counter", "Calls per command.", labels: label, v) }
                if let v = fields["usec"], let us = Double(v) {
                    add("commands_duration_seconds_total", "counter", "Time spent per command.", labels: label, number(us / 1_000_000))
                }
                if let v = fields["rejected_calls"] {
                    add("commands_rejected_total", "counter", "Calls refused before running, per command.", labels: label, v)
                }
                if let v = fields["failed_calls"] { add("commands_failed_total", "counter", "Calls that failed, per command.", labels: label, v) }
            } else if key.hasPrefix("errorstat_") {
                if let v = subfields(value)["count"] {
                    add("errors_total", "counter", "Error replies per error prefix.", labels: "prefix=\"\(escape(String(key.dropFirst(10))))\"", v)
                }
            } else if key == "tx_type_cnt" {
                for (type, v) in orderedSubfields(value) {
                    add("tx_type_total", "counter", "Transactions per path of the transaction framework.", labels: "type=\"\(escape(type))\"", v)
                }
            } else if key == "tx_width_freq" {
                for (width, v) in orderedSubfields(value) {
                    add("tx_width_total", "counter", "Multi-shard transactions per number of shards.", labels: "width=\"\(escape(width))\"", v)
                }
            } else if let v = Double(value), isName(key), !omitted.contains(key) {
                if counters.contains(key) {
                    let name = renamed[key] ?? (key.hasSuffix("_total") ? key : key + "_total")
                    add(name, "counter", "INFO field \(key).", number(v))
                } else if !key.hasSuffix("_total") {
                    add(renamed[key] ?? key, "gauge", "INFO field \(key).", number(v))
                }
            }
        }
        var out = ""
        for family in families {
            out += "# HELP \(family.name) \(family.help)\n# TYPE \(family.name) \(family.type)\n"
            for sample in family.samples {
                out += sample.labels.isEmpty ? "\(family.name) \(sample.value)\n" : "\(family.name){\(sample.labels)} \(sample.value)\n"
            }
        }
        return out
    }

    /// `a=1,b=2` → ["a": "1", "b": "2"].
    static func subfields(_ text: String) -> [String: String] {
        Dictionary(orderedSubfields(text), uniquingKeysWith: { first, _ in first })
    }

    static func orderedSubfields(_ text: String) -> [(String, String)] {
        text.split(separator: ",").compactMap { part in
            let pieces = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return pieces.count == 2 ? (String(pieces[0]), String(pieces[1])) : nil
        }
    }

    static func isName(_ key: String) -> Bool {
        !key.isEmpty && key.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 95 }
            && !(key.utf8.first! >= 48 && key.utf8.first! <= 57)
    }

    static func number(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(v)
    }

    /// A label value as the format wants it: backslash, quote and newline escaped.
    static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }
}

/// Recognises an HTTP request in a connection's first bytes: `GET /path HTTP/1.x`
/// and its header block. RESP never starts so (a multibulk starts with `*`; an
/// inline `GET /x` has no ` HTTP/1.` version), so nothing else is taken for one.
enum HTTPRequest: Equatable {
    case notHTTP
    /// A prefix of a request: wait for more bytes.
    case incomplete
    case request(path: String)

    static let method = Array("GET /".utf8)
    /// Longest header block waited for; past it the bytes go to the RESP parser.
    static let maxHeader = 16 * 1024

    static func detect(_ bytes: UnsafeRawBufferPointer) -> HTTPRequest {
        let prefix = min(bytes.count, method.count)
        for i in 0..<prefix where bytes[i] != method[i] { return .notHTTP }
        if bytes.count < method.count { return .incomplete }
        guard let lineEnd = find(bytes, [13, 10], from: 0) else {
            return bytes.count > maxHeader ? .notHTTP : .incomplete
        }
        let line = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[0..<lineEnd]), as: UTF8.self)
        let parts = line.split(separator: " ")
        guard parts.count == 3, parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0" else { return .notHTTP }
        guard find(bytes, [13, 10, 13, 10], from: lineEnd) != nil else {
            return bytes.count > maxHeader ? .notHTTP : .incomplete
        }
        return .request(path: String(parts[1]))
    }

    static func find(_ bytes: UnsafeRawBufferPointer, _ needle: [UInt8], from start: Int) -> Int? {
        guard bytes.count >= needle.count else { return nil }
        var i = start
        while i + needle.count <= bytes.count {
            var match = true
            for j in 0..<needle.count where bytes[i + j] != needle[j] {
                match = false
                break
            }
            if match { return i }
            i += 1
        }
        return nil
    }
}
