import Metrics

/// The runner's swift-metrics instruments, each with the job's `queue` and `class` as
/// dimensions: what a dashboard over the jobs needs per queue and per job class. They go to
/// whatever `MetricsSystem` the process bootstrapped (`damselfly-jobs work --metrics-port`
/// bootstraps swift-prometheus; an embedding app its own backend; none: no-ops).
///
/// - `damselfly_jobs_processed_total`: jobs run, failed ones included (Sidekiq's `processed`)
/// - `damselfly_jobs_failed_total`: jobs that raised (Sidekiq's `failed`)
/// - `damselfly_jobs_retried_total` / `damselfly_jobs_dead_total`: where the failures went
/// - `damselfly_jobs_latency_seconds`: enqueued to started (Sidekiq's queue latency)
/// - `damselfly_jobs_duration_seconds`: time in `perform`, successful or not
public enum JobMetrics {
    /// Each metric's Prometheus `# HELP` text: swift-metrics has no help texts, so an exporter
    /// adds them (``damselfly-jobs work --metrics-port`` does).
    public static let help: [String: String] = [
        "damselfly_jobs_processed_total": "Jobs run, failed ones included (Sidekiq's processed).",
        "damselfly_jobs_failed_total": "Jobs whose perform raised (Sidekiq's failed).",
        "damselfly_jobs_retried_total": "Failed jobs sent to the retry set.",
        "damselfly_jobs_dead_total": "Failed jobs sent to the dead set.",
        "damselfly_jobs_latency_seconds": "Seconds from enqueued_at to the job's start.",
        "damselfly_jobs_duration_seconds": "Seconds spent in perform.",
    ]

    static func dimensions(queue: String, className: String) -> [(String, String)] {
        [("queue", queue), ("class", className)]
    }

    static func started(queue: String, className: String, enqueuedAt: Double?, now: Double) {
        guard let enqueuedAt else { return }
        Timer(label: "damselfly_jobs_latency_seconds", dimensions: dimensions(queue: queue, className: className))
            .recordNanoseconds(Int64(max(0, now - enqueuedAt) * 1e9))
    }

    static func finished(queue: String, className: String, seconds: Double, failed: Bool) {
        let dims = dimensions(queue: queue, className: className)
        Counter(label: "damselfly_jobs_processed_total", dimensions: dims).increment()
        if failed { Counter(label: "damselfly_jobs_failed_total", dimensions: dims).increment() }
        Timer(label: "damselfly_jobs_duration_seconds", dimensions: dims).recordNanoseconds(Int64(max(0, seconds) * 1e9))
    }

    static func decided(_ decision: JobRetry.Decision, queue: String, className: String) {
        let dims = dimensions(queue: queue, className: className)
        switch decision {
        case .retry: Counter(label: "damselfly_jobs_retried_total", dimensions: dims).increment()
        case .dead: Counter(label: "damselfly_jobs_dead_total", dimensions: dims).increment()
        case .discard: break
        }
    }
}
