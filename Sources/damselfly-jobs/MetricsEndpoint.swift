import DamselflyJobs
import Hummingbird
import Prometheus

/// `damselfly-jobs work --metrics-port N`: the worker's swift-metrics, exported by
/// swift-prometheus, on `GET /metrics` (text exposition format 0.0.4).
enum MetricsEndpoint {
    static func serve(registry: PrometheusCollectorRegistry, host: String, port: Int) async throws {
        let router = Router()
        router.get("metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: withHelp(registry.emitToString()))))
        }
        let app = Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "damselfly-jobs"))
        // No signal handling of its own: the worker owns SIGTERM/SIGINT and cancels this task.
        try await app.runService(gracefulShutdownSignals: [])
    }

    /// Puts a `# HELP` line (``JobMetrics/help``) before each `# TYPE` line that has none.
    static func withHelp(_ text: String) -> String {
        var out = ""
        var previous = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("# TYPE "), !previous.hasPrefix("# HELP ") {
                let name = line.dropFirst(7).prefix { $0 != " " }
                if let help = JobMetrics.help[String(name)] { out += "# HELP \(name) \(help)\n" }
            }
            out += line + "\n"
            previous = String(line)
        }
        return String(out.dropLast())
    }
}
