import DamselflyJobs
import Glibc
import Hummingbird

/// Retries, Scheduled and Dead: the three sorted sets and what each page may do to a job
/// (Sidekiq's `retry_or_delete_or_kill` and `delete_or_add_queue`).
struct JobSet: Sendable {
    struct AllAction: Sendable {
        var name: String
        var label: String
        var danger: Bool
    }

    var key: String
    var path: String
    var heading: String
    var whenLabel: String
    /// Dead jobs show the newest first (the morgue), the others the soonest first.
    var newestFirst: Bool
    var canRetry: Bool
    var canKill: Bool
    var canAddToQueue: Bool
    var showError: Bool
    var allActions: [AllAction]

    static let retries = JobSet(key: "retry", path: "retries", heading: "Retries", whenLabel: "Next retry", newestFirst: false,
                                canRetry: true, canKill: true, canAddToQueue: false, showError: true,
                                allActions: [.init(name: "retry", label: "Retry All", danger: false),
                                             .init(name: "kill", label: "Kill All", danger: true),
                                             .init(name: "delete", label: "Delete All", danger: true)])
    static let scheduled = JobSet(key: "schedule", path: "scheduled", heading: "Scheduled", whenLabel: "When", newestFirst: false,
                                  canRetry: false, canKill: false, canAddToQueue: true, showError: false, allActions: [])
    static let dead = JobSet(key: "dead", path: "morgue", heading: "Dead", whenLabel: "Last retry", newestFirst: true,
                             canRetry: true, canKill: false, canAddToQueue: false, showError: true,
                             allActions: [.init(name: "retry", label: "Retry All", danger: false),
                                          .init(name: "delete", label: "Delete All", danger: true)])
    static let all = [retries, scheduled, dead]
}

extension JobsWeb {
    // MARK: - Actions

    /// One entry's action, by the button pressed; an action the set does not offer does nothing.
    func act(_ set: JobSet, _ form: FormData, _ entry: SidekiqData.Entry) async throws {
        if form["retry"] != nil, set.canRetry {
            try await data.retry(set.key, entry)
        } else if form["add_to_queue"] != nil, set.canAddToQueue {
            try await data.addToQueue(set.key, entry)
        } else if form["kill"] != nil, set.canKill {
            try await data.kill(set.key, entry)
        } else if form["delete"] != nil {
            try await data.delete(set.key, entry)
        }
    }

    func actOnAll(_ set: JobSet, _ action: String) async throws {
        switch action {
        case "delete": try await redis.call("UNLINK", set.key)
        case "retry": try await data.forAll(set.key) { try await data.retry($0, $1) }
        case "kill": try await data.forAll(set.key) { try await data.kill($0, $1) }
        default: break
        }
    }

    // MARK: - Pages

    /// What every page shows: tabs, the summary counters (Sidekiq's `_summary`), links' root.
    func layout(title: String, tab: String, stats: JobStats, csrf: String) -> [String: Any] {
        let tabs: [(String, String)] = [("", "Dashboard"), ("busy", "Busy"), ("queues", "Queues"), ("retries", "Retries"),
                                        ("scheduled", "Scheduled"), ("morgue", "Dead")]
        let summary: [(String, String, String, Int)] = [
            ("processed", "Processed", "", stats.processed), ("failed", "Failed", "", stats.failed),
            ("busy", "Busy", "busy", stats.busy), ("enqueued", "Enqueued", "queues", stats.enqueued),
            ("retries", "Retries", "retries", stats.retries), ("scheduled", "Scheduled", "scheduled", stats.scheduled),
            ("dead", "Dead", "morgue", stats.dead),
        ]
        return [
            "title": title, "root": root, "poll": pollInterval, "csrf": csrf, "now": JobsWeb.iso8601(JobPayload.now()),
            "redisURL": redis.config.url,
            "tabs": tabs.map { ["path": $0.0, "name": $0.1, "active": $0.0 == tab] as [String: Any] },
            "summary": summary.map { ["id": $0.0, "name": $0.1, "path": $0.2, "value": JobsWeb.delimited($0.3)] as [String: Any] },
        ]
    }

    func dashboard(_ query: FormData, _ csrf: String) async throws -> String {
        let days = query.int("days", default: 30)
        guard (1...180).contains(days) else { throw HTTPError(.badRequest, message: "days must be 1 to 180") }
        async let stats = JobStats.read(redis: redis)
        async let history = data.history(days: days)
        async let info = data.serverInfo()
        var context = layout(title: "Dashboard", tab: "", stats: try await stats, csrf: csrf)
        let server = try await info
        // Sidekiq's REDIS_KEYS, and Damselfly's own version line when the server is Damselfly.
        let keys = [("redis_version", "Redis version"), ("damselfly_version", "Damselfly version"), ("uptime_in_days", "Uptime (days)"),
                    ("connected_clients", "Connections"), ("used_memory_human", "Memory usage"),
                    ("used_memory_peak_human", "Peak memory usage")]
        context["info"] = keys.compactMap { key, name in server[key].map { ["key": key, "name": name, "value": $0] as [String: Any] } }
        context["days"] = days
        context["ranges"] = [(7, "1 week"), (30, "1 month"), (90, "3 months"), (180, "6 months")].map {
            ["days": $0.0, "label": $0.1, "active": $0.0 == days] as [String: Any]
        }
        context["chart"] = HistoryChart.svg(Array((try await history).reversed()))
        return try render("dashboard", context)
    }

    func busy(_ query: FormData, _ csrf: String) async throws -> String {
        let stats = try await JobStats.read(redis: redis)
        var context = layout(title: "Busy", tab: "busy", stats: stats, csrf: csrf)
        let now = JobPayload.now()
        context["processes"] = stats.processes.map { p -> [String: Any] in
            let info = p.info
            let started = info["started_at"]?.doubleValue ?? now
            return [
                "identity": p.identity,
                "name": "\(info["hostname"]?.stringValue ?? "?"):\(info["pid"]?.intValue.map(String.init) ?? "?")",
                "tag": info["tag"]?.stringValue ?? "",
                "quiet": p.quiet,
                "queues": info["queues"]?.arrayValue?.compactMap(\.stringValue).joined(separator: ", ") ?? "",
                "startedISO": JobsWeb.iso8601(started), "startedAgo": JobsWeb.relative(started, now: now),
                "concurrency": info["concurrency"]?.intValue.map { Int($0) } ?? 0,
                "busy": p.busy, "beatAgo": JobsWeb.relative(p.beat, now: now),
            ]
        }
        context["workers"] = try await data.workers(of: stats.processes.map(\.identity)).map { w -> [String: Any] in
            // Sidekiq stores the payload as a JSON string inside the work JSON (6.x), or inline.
            let payload: JSONValue
            if let text = w.work["payload"]?.stringValue { payload = (try? JSONValue.parse(text)) ?? .null } else { payload = w.work["payload"] ?? .null }
            let queue = w.work["queue"]?.stringValue ?? ""
            return [
                "process": w.identity, "tid": w.tid, "queue": queue, "queueURL": FormData.encode(queue),
                "class": JobsWeb.displayClass(payload), "args": JobsWeb.displayArgs(payload),
                "runAgo": JobsWeb.relative(w.work["run_at"]?.doubleValue ?? now, now: now),
            ]
        }
        return try render("busy", context)
    }

    func queues(_ query: FormData, _ csrf: String) async throws -> String {
        let stats = try await JobStats.read(redis: redis)
        var context = layout(title: "Queues", tab: "queues", stats: stats, csrf: csrf)
        context["queues"] = stats.queues.map {
            ["name": $0.name, "nameURL": FormData.encode($0.name), "size": JobsWeb.delimited($0.size),
             "latency": JobsWeb.seconds($0.latency)] as [String: Any]
        }
        return try render("queues", context)
    }

    func queue(_ name: String, _ query: FormData, _ csrf: String) async throws -> String {
        let count = max(1, min(query.int("count", default: 25), 1000))
        let oldestFirst = query["direction"] == "asc"
        async let stats = JobStats.read(redis: redis)
        async let page = data.listPage("queue:" + name, page: query.int("page", default: 1), count: count, oldestFirst: oldestFirst)
        var context = layout(title: "Queue \(name)", tab: "queues", stats: try await stats, csrf: csrf)
        let p = try await page
        let now = JobPayload.now()
        context["name"] = name
        context["nameURL"] = FormData.encode(name)
        context["otherDirection"] = oldestFirst ? "desc" : "asc"
        context["otherDirectionLabel"] = oldestFirst ? "Newest first" : "Oldest first"
        context["paging"] = paging(p, count: count, path: "queues/" + FormData.encode(name), query: query)
        context["entries"] = p.entries.map { e -> [String: Any] in
            ["class": JobsWeb.displayClass(e.job), "args": JobsWeb.displayArgs(e.job), "jid": e.job["jid"]?.stringValue ?? "",
             "enqueuedAgo": JobsWeb.relative(e.job["enqueued_at"]?.doubleValue ?? now, now: now), "value": e.value]
        }
        return try render("queue", context)
    }

    func jobSet(_ set: JobSet, _ query: FormData, _ csrf: String) async throws -> String {
        let count = max(1, min(query.int("count", default: 25), 1000))
        let substr = query["substr"] ?? ""
        async let stats = JobStats.read(redis: redis)
        var context = layout(title: set.heading, tab: set.path, stats: try await stats, csrf: csrf)
        let entries: [SidekiqData.Entry]
        if substr.isEmpty {
            let p = try await data.sortedPage(set.key, page: query.int("page", default: 1), count: count, newestFirst: set.newestFirst)
            context["paging"] = paging(p, count: count, path: set.path, query: query)
            entries = p.entries
        } else {
            entries = try await data.search(set.key, text: substr)
        }
        let now = JobPayload.now()
        context["substr"] = substr
        context["filtered"] = !substr.isEmpty
        context["path"] = set.path
        context["heading"] = set.heading
        context["whenLabel"] = set.whenLabel
        context["showRetryCount"] = set.key == "retry"
        context["showError"] = set.showError
        context["canRetry"] = set.canRetry
        context["canKill"] = set.canKill
        context["canAddToQueue"] = set.canAddToQueue
        context["hasAllActions"] = !set.allActions.isEmpty
        context["allActions"] = set.allActions.map { ["action": $0.name, "label": $0.label, "danger": $0.danger] as [String: Any] }
        context["entries"] = entries.map { e -> [String: Any] in
            let queue = e.job["queue"]?.stringValue ?? ""
            return [
                "key": e.key, "keyURL": FormData.encode(e.key), "jid": e.job["jid"]?.stringValue ?? "",
                "whenISO": JobsWeb.iso8601(e.score ?? now), "whenAgo": JobsWeb.relative(e.score ?? now, now: now),
                "retryCount": e.job["retry_count"]?.intValue.map { String($0) } ?? "",
                "queue": queue, "queueURL": FormData.encode(queue),
                "class": JobsWeb.displayClass(e.job), "args": JobsWeb.displayArgs(e.job),
                "errorClass": e.job["error_class"]?.stringValue ?? "", "errorMessage": JobsWeb.truncated(e.job["error_message"]?.stringValue ?? ""),
            ]
        }
        return try render("jobset", context)
    }

    /// Previous / next links that keep the page size, direction and filter.
    func paging(_ page: SidekiqData.Page, count: Int, path: String, query: FormData) -> [String: Any] {
        let pages = max(1, (page.total + count - 1) / count)
        func link(_ n: Int) -> [String: Any] {
            var q = query.pairs.filter { $0.0 != "page" }.map { "\($0.0)=\(FormData.encode($0.1))" }
            q.append("page=\(n)")
            return ["link": root + path + "?" + q.joined(separator: "&")]
        }
        var out: [String: Any] = ["current": page.current, "pages": pages, "total": JobsWeb.delimited(page.total)]
        if page.current > 1 { out["prev"] = link(page.current - 1) }
        if page.current < pages { out["next"] = link(page.current + 1) }
        return out
    }

    /// `GET /stats`: the summary for the live refresh, in Sidekiq Web's JSON shape.
    func statsJSON() async throws -> Response {
        async let stats = JobStats.read(redis: redis)
        async let info = data.serverInfo()
        let s = try await stats
        let server = try await info
        let latency = s.queues.first { $0.name == "default" }?.latency ?? 0
        let json = JSONValue.object([
            ("sidekiq", .object([
                ("processed", .int(Int64(s.processed))), ("failed", .int(Int64(s.failed))), ("busy", .int(Int64(s.busy))),
                ("processes", .int(Int64(s.processes.count))), ("enqueued", .int(Int64(s.enqueued))),
                ("scheduled", .int(Int64(s.scheduled))), ("retries", .int(Int64(s.retries))), ("dead", .int(Int64(s.dead))),
                ("default_latency", .double(latency)),
            ])),
            ("redis", .object(["redis_version", "uptime_in_days", "connected_clients", "used_memory_human", "used_memory_peak_human"]
                .compactMap { k in server[k].map { (k, JSONValue.string($0)) } })),
            ("server_utc_time", .string(JobsWeb.iso8601(JobPayload.now()))),
        ])
        return Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: "private, no-store"],
                        body: .init(byteBuffer: ByteBuffer(string: json.serialized())))
    }

    // MARK: - Formatting

    static func displayClass(_ job: JSONValue) -> String {
        // ActiveJob wraps the real class (Sidekiq's `display_class`).
        if let wrapped = job["wrapped"]?.stringValue { return wrapped }
        return job["class"]?.stringValue ?? "(invalid payload)"
    }

    /// Each argument as JSON, truncated at 2,000 characters (`display_args`); escaping is the
    /// template's.
    static func displayArgs(_ job: JSONValue) -> String {
        guard let args = job["args"]?.arrayValue else { return "Invalid job payload, args must be an Array" }
        return args.map { truncated($0.serialized()) }.joined(separator: ", ")
    }

    static func truncated(_ text: String, _ limit: Int = 2000) -> String {
        text.count > limit ? String(text.prefix(limit)) + "..." : text
    }

    static func delimited(_ n: Int) -> String {
        let digits = String(abs(n))
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return n < 0 ? "-" + out : out
    }

    static func seconds(_ s: Double) -> String {
        let hundredths = Int((s * 100).rounded())
        return "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100) s"
    }

    static func iso8601(_ time: Double) -> String {
        var t = time_t(time)
        var parts = tm()
        gmtime_r(&t, &parts)
        func pad(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(JobPayload.utcDate(time))T\(pad(parts.tm_hour)):\(pad(parts.tm_min)):\(pad(parts.tm_sec))Z"
    }

    /// "3 minutes ago" / "in 20 seconds".
    static func relative(_ time: Double, now: Double) -> String {
        let delta = Int((time - now).rounded())
        let s = abs(delta)
        let text: String
        switch s {
        case ..<60: text = "\(s) second\(s == 1 ? "" : "s")"
        case ..<3600: text = "\(s / 60) minute\(s / 60 == 1 ? "" : "s")"
        case ..<86_400: text = "\(s / 3600) hour\(s / 3600 == 1 ? "" : "s")"
        default: text = "\(s / 86_400) day\(s / 86_400 == 1 ? "" : "s")"
        }
        return delta > 0 ? "in " + text : text + " ago"
    }
}

/// The dashboard's history chart: processed and failed per day as two SVG polylines, drawn
/// on the server (no script, nothing from the data but numbers and dates).
enum HistoryChart {
    static func svg(_ days: [(date: String, processed: Int, failed: Int)]) -> String {
        let width = 760.0, height = 220.0, left = 60.0, right = 10.0, top = 10.0, bottom = 30.0
        let top1 = max(1, days.map { max($0.processed, $0.failed) }.max() ?? 1)
        let n = max(1, days.count - 1)
        func x(_ i: Int) -> Double { left + (width - left - right) * Double(i) / Double(n) }
        func y(_ v: Int) -> Double { top + (height - top - bottom) * (1 - Double(v) / Double(top1)) }
        func points(_ value: (Int) -> Int) -> String {
            days.indices.map { "\(Int(x($0))),\(Int(y(value($0))))" }.joined(separator: " ")
        }
        var out = "<svg id=\"history-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" "
            + "viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" aria-label=\"Processed and failed jobs per day\">"
        out += "<rect x=\"0\" y=\"0\" width=\"\(Int(width))\" height=\"\(Int(height))\" fill=\"#fff\"/>"
        for step in 0...4 {
            let v = top1 * step / 4
            let yy = Int(y(v))
            out += "<line x1=\"\(Int(left))\" y1=\"\(yy)\" x2=\"\(Int(width - right))\" y2=\"\(yy)\" stroke=\"#eee\"/>"
            out += "<text x=\"\(Int(left) - 6)\" y=\"\(yy + 4)\" font-size=\"11\" text-anchor=\"end\" fill=\"#666\">\(v)</text>"
        }
        if let first = days.first, let last = days.last {
            out += "<text x=\"\(Int(left))\" y=\"\(Int(height) - 8)\" font-size=\"11\" fill=\"#666\">\(first.date)</text>"
            out += "<text x=\"\(Int(width - right))\" y=\"\(Int(height) - 8)\" font-size=\"11\" text-anchor=\"end\" fill=\"#666\">\(last.date)</text>"
        }
        out += "<polyline id=\"history-processed\" fill=\"none\" stroke=\"#2b7a3d\" stroke-width=\"2\" points=\"\(points { days[$0].processed })\"/>"
        out += "<polyline id=\"history-failed\" fill=\"none\" stroke=\"#b33\" stroke-width=\"2\" points=\"\(points { days[$0].failed })\"/>"
        for (i, d) in days.enumerated() {
            out += "<circle cx=\"\(Int(x(i)))\" cy=\"\(Int(y(d.processed)))\" r=\"2.5\" fill=\"#2b7a3d\"><title>\(d.date): \(d.processed) processed, \(d.failed) failed</title></circle>"
        }
        return out + "</svg>"
    }
}
