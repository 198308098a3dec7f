import Testing
@testable import DamselflyServer

/// ``MetricsExposition`` and ``HTTPRequest``: INFO text → Prometheus families, and
/// telling an HTTP request from RESP by its first bytes.
@Suite struct MetricsExpositionTests {
    static let info = [
        "# Server", "redis_version:7.0.15", "redis_git_sha1:00000000", "uptime_in_seconds:12", "executable:/x",
        "", "# Stats", "total_commands_processed:40", "instantaneous_ops_per_sec:3", "used_cpu_sys:0.500000",
        "# Errorstats", "errorstat_ERR:count=2", "errorstat_WRONGTYPE:count=1",
        "# Keyspace", "db0:keys=5,expires=1,avg_ttl=2500", "db12:keys=1,expires=0,avg_ttl=0",
        "# Commandstats", "cmdstat_get:calls=7,usec=35,usec_per_call=5.00,rejected_calls=1,failed_calls=0",
        "cmdstat_config|get:calls=1,usec=1000000,usec_per_call=1000000.00,rejected_calls=0,failed_calls=0",
        "# Transaction", "tx_type_cnt:global=0,normal=2,ooo=0,quick=3,inline=4", "tx_queue_len:0",
        "tx_schedule_cancel_total:9",
    ].joined(separator: "\r\n")

    func lines(_ text: String) -> [String] { text.split(separator: "\n").map(String.init) }

    @Test func familiesFromInfo() {
        let out = lines(MetricsExposition.render(info: Self.info))
        for expected in [
            "damselfly_build_info{version=\"7.0.15\"} 1", "damselfly_uptime_in_seconds 12",
            "damselfly_commands_processed_total 40", "damselfly_instantaneous_ops_per_second 3",
            "damselfly_cpu_sys_seconds_total 0.5", "damselfly_errors_total{prefix=\"ERR\"} 2",
            "damselfly_errors_total{prefix=\"WRONGTYPE\"} 1", "damselfly_db_keys{db=\"0\"} 5",
            "damselfly_db_keys{db=\"12\"} 1", "damselfly_db_keys_expiring{db=\"0\"} 1",
            "damselfly_db_avg_ttl_seconds{db=\"0\"} 2.5", "damselfly_commands_total{cmd=\"get\"} 7",
            "damselfly_commands_rejected_total{cmd=\"get\"} 1", "damselfly_commands_total{cmd=\"config|get\"} 1",
            "damselfly_commands_duration_seconds_total{cmd=\"config|get\"} 1", "damselfly_tx_type_total{type=\"quick\"} 3",
            "damselfly_tx_type_total{type=\"inline\"} 4", "damselfly_tx_queue_len 0", "damselfly_tx_schedule_cancel_total 9",
            "# TYPE damselfly_errors_total counter", "# TYPE damselfly_db_keys gauge",
        ] {
            #expect(out.contains(expected), "\(expected)")
        }
        // Text fields and the omitted ones are not numbers to export.
        #expect(!out.contains { $0.contains("executable") || $0.contains("git_sha1") })
        // Each family's HELP and TYPE appear once, before its samples.
        #expect(out.filter { $0 == "# TYPE damselfly_db_keys gauge" }.count == 1)
        let type = out.firstIndex(of: "# TYPE damselfly_db_keys gauge")!
        #expect(out.firstIndex(of: "damselfly_db_keys{db=\"0\"} 5")! > type)
    }

    @Test func labelValuesAreEscaped() {
        #expect(MetricsExposition.escape("a\"b\\c\nd") == "a\\\"b\\\\c\\nd")
    }

    func detect(_ s: String) -> HTTPRequest { Array(s.utf8).withUnsafeBytes { HTTPRequest.detect($0) } }

    @Test func httpIsToldApartFromResp() {
        #expect(detect("GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n") == .request(path: "/metrics"))
        #expect(detect("GET /metrics HTTP/1.0\r\n\r\n") == .request(path: "/metrics"))
        #expect(detect("GE") == .incomplete)
        #expect(detect("GET /metrics HTTP/1.1\r\nHost: a\r\n") == .incomplete)
        #expect(detect("GET /metrics HTT") == .incomplete)
        #expect(detect("*1\r\n$4\r\nPING\r\n") == .notHTTP)
        #expect(detect("GET key\r\n") == .notHTTP)
        #expect(detect("GET /key\r\n") == .notHTTP)  // an inline GET of "/key"
        #expect(detect("PING\r\n") == .notHTTP)
        #expect(detect("GET /" + String(repeating: "x", count: HTTPRequest.maxHeader + 1)) == .notHTTP)
    }
}
