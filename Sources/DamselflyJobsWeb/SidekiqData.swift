import DamselflyJobs
import DamselflyRESP

/// What Sidekiq Web reads and writes, over the same keys as `Sidekiq::API` (6.4): the daily
/// `stat:processed:<date>` counters, `queue:<name>` lists, the `retry` / `schedule` / `dead`
/// sorted sets, `processes` with its hashes, `<identity>:workers`, `<identity>-signals`. Every
/// move is the one Sidekiq makes, so a dashboard over a Ruby Sidekiq's data does the same
/// thing Sidekiq's own would.
struct SidekiqData: Sendable {
    let redis: RedisPool

    /// A job in a list or a sorted set, with the exact stored string (deletes match on it).
    struct Entry: Sendable {
        var value: String
        var score: Double?
        var job: JSONValue

        /// `"<score>-<jid>"`: how Sidekiq's pages name a sorted-set entry (`job_params`).
        var key: String { "\(SidekiqData.format(score ?? 0))-\(job["jid"]?.stringValue ?? "")" }
    }

    /// A page of a list or sorted set (`Sidekiq::Paginator#page`): 1-based page, total size.
    struct Page: Sendable {
        var current: Int
        var total: Int
        var entries: [Entry]
    }

    /// Scores go back to Redis in a form that parses to the same double.
    static func format(_ score: Double) -> String { JSONValue.format(score) }

    static func entry(_ value: String, score: Double?) -> Entry {
        Entry(value: value, score: score, job: (try? JSONValue.parse(value)) ?? .object([]))
    }

    // MARK: - Dashboard

    /// `Sidekiq::Stats::History`: one `MGET` of the last `days` daily counters, newest first.
    func history(days: Int, now: Double = JobPayload.now()) async throws -> [(date: String, processed: Int, failed: Int)] {
        let dates = (0..<days).map { JobPayload.utcDate(now - Double($0) * 86_400) }
        let replies = try await redis.pipeline([
            ["MGET"] + dates.map { "stat:processed:" + $0 },
            ["MGET"] + dates.map { "stat:failed:" + $0 },
        ])
        let processed = replies[0].elements.map { Int($0.int ?? 0) }
        let failed = replies[1].elements.map { Int($0.int ?? 0) }
        return dates.enumerated().map { i, d in
            (d, i < processed.count ? processed[i] : 0, i < failed.count ? failed[i] : 0)
        }
    }

    /// `INFO` as a dictionary (`Sidekiq.redis_info`).
    func serverInfo() async throws -> [String: String] {
        let text = try await redis.call("INFO").text ?? ""
        var info: [String: String] = [:]
        // `\r\n` is one Character in Swift: split on any newline.
        for line in text.split(whereSeparator: \.isNewline) where !line.hasPrefix("#") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { info[String(parts[0])] = String(parts[1]) }
        }
        return info
    }

    // MARK: - Pages

    /// `Paginator#page` over a list: `direction=asc` shows the oldest job first.
    func listPage(_ key: String, page: Int, count: Int, oldestFirst: Bool) async throws -> Page {
        let current = max(1, page)
        let start = (current - 1) * count
        let end = start + count - 1
        let range = oldestFirst ? [String(-end - 1), String(-start - 1)] : [String(start), String(end)]
        let replies = try await redis.transaction([["LLEN", key], ["LRANGE", key] + range])
        var values = replies[1].elements.compactMap(\.text)
        if oldestFirst { values.reverse() }
        return Page(current: current, total: Int(replies[0].int ?? 0), entries: values.map { SidekiqData.entry($0, score: nil) })
    }

    /// `Paginator#page` over a sorted set; `newestFirst` for the dead set (Sidekiq's morgue).
    func sortedPage(_ key: String, page: Int, count: Int, newestFirst: Bool) async throws -> Page {
        let current = max(1, page)
        let start = (current - 1) * count
        let replies = try await redis.transaction([
            ["ZCARD", key], [newestFirst ? "ZREVRANGE" : "ZRANGE", key, String(start), String(start + count - 1), "WITHSCORES"],
        ])
        return Page(current: current, total: Int(replies[0].int ?? 0), entries: SidekiqData.scored(replies[1]))
    }

    /// `SortedSet#scan`: entries whose stored JSON matches `*text*` (a pattern with `*` is used
    /// as given, as Sidekiq does), in one `ZSCAN` walk, at most `limit` of them.
    func search(_ key: String, text: String, limit: Int = 500) async throws -> [Entry] {
        let pattern = text.contains("*") ? text : "*" + SidekiqData.globEscaped(text) + "*"
        var cursor = "0"
        var found: [Entry] = []
        repeat {
            let reply = try await redis.call("ZSCAN", key, cursor, "MATCH", pattern, "COUNT", "100").elements
            guard reply.count == 2 else { break }
            cursor = reply[0].text ?? "0"
            found += SidekiqData.scored(reply[1])
        } while cursor != "0" && found.count < limit
        return Array(found.sorted { ($0.score ?? 0) < ($1.score ?? 0) }.prefix(limit))
    }

    /// Member/score pairs from a `WITHSCORES` reply: RESP2 sends them flat, RESP3 as pairs.
    static func scored(_ reply: RESPValue) -> [Entry] {
        let items = reply.elements
        if let first = items.first, !first.elements.isEmpty {
            return items.compactMap { pair in
                let p = pair.elements
                guard p.count == 2, let v = p[0].text else { return nil }
                return entry(v, score: score(p[1]))
            }
        }
        var out: [Entry] = []
        var i = 0
        while i + 1 < items.count {
            if let v = items[i].text { out.append(entry(v, score: score(items[i + 1]))) }
            i += 2
        }
        return out
    }

    static func score(_ value: RESPValue) -> Double {
        if case .double(let d) = value { return d }
        return Double(value.text ?? "") ?? 0
    }

    static func globEscaped(_ text: String) -> String {
        var out = ""
        for c in text {
            if c == "?" || c == "[" || c == "]" || c == "\\" { out.append("\\") }
            out.append(c)
        }
        return out
    }

    // MARK: - Sorted-set entries (retry, schedule, dead)

    /// `"<score>-<jid>"` back into its parts (`parse_params`).
    static func parseKey(_ key: String) -> (score: String, jid: String)? {
        guard let dash = key.firstIndex(of: "-") else { return nil }
        let score = String(key[..<dash])
        guard Double(score) != nil else { return nil }
        return (score, String(key[key.index(after: dash)...]))
    }

    /// `JobSet#fetch(score, jid)`.
    func fetch(_ set: String, key: String) async throws -> Entry? {
        guard let (score, jid) = SidekiqData.parseKey(key) else { return nil }
        let reply = try await redis.call("ZRANGEBYSCORE", set, score, score, "WITHSCORES")
        return SidekiqData.scored(reply).first { $0.job["jid"]?.stringValue == jid }
    }

    /// `SortedEntry#remove_job`: takes every member at the entry's score in one MULTI, keeps
    /// the one with this jid and puts the others back. `nil` when another client took it first.
    func removeJob(_ set: String, _ entry: Entry) async throws -> String? {
        let score = SidekiqData.format(entry.score ?? 0)
        let replies = try await redis.transaction([["ZRANGEBYSCORE", set, score, score], ["ZREMRANGEBYSCORE", set, score, score]])
        let members = replies[0].elements.compactMap(\.text)
        if members.count == 1 { return members[0] }
        let jid = entry.job["jid"]?.stringValue ?? ""
        var matched: String?
        var others: [String] = []
        for m in members {
            if matched == nil, m.contains(jid), (try? JSONValue.parse(m))?["jid"]?.stringValue == jid { matched = m } else { others.append(m) }
        }
        if !others.isEmpty { _ = try await redis.transaction(others.map { ["ZADD", set, score, $0] }) }
        return matched
    }

    /// `SortedEntry#retry`: back to its queue now, one retry fewer counted.
    func retry(_ set: String, _ entry: Entry) async throws {
        guard let message = try await removeJob(set, entry), var msg = try? JSONValue.parse(message) else { return }
        if let count = msg["retry_count"]?.intValue { msg["retry_count"] = .int(count - 1) }
        try await JobClient(redis: redis).pushPayloads([msg])
    }

    /// `SortedEntry#add_to_queue`: a scheduled job enqueued now, unchanged.
    func addToQueue(_ set: String, _ entry: Entry) async throws {
        guard let message = try await removeJob(set, entry), let msg = try? JSONValue.parse(message) else { return }
        try await JobClient(redis: redis).pushPayloads([msg])
    }

    /// `SortedEntry#kill`: into the dead set, trimmed as `DeadSet#kill` trims it.
    func kill(_ set: String, _ entry: Entry) async throws {
        guard let message = try await removeJob(set, entry) else { return }
        try await JobRetry().kill(message, redis: redis)
    }

    /// `SortedEntry#delete`: by the stored value.
    func delete(_ set: String, _ entry: Entry) async throws {
        try await redis.call("ZREM", set, entry.value)
    }

    /// `RetrySet#retry_all` / `kill_all`, `DeadSet#retry_all`: every entry, oldest first,
    /// until the set is empty (bounded, so a set that refills as fast as it drains still ends).
    func forAll(_ set: String, _ action: (String, Entry) async throws -> Void) async throws {
        for _ in 0..<10_000 {
            let batch = SidekiqData.scored(try await redis.call("ZRANGE", set, "0", "99", "WITHSCORES"))
            if batch.isEmpty { return }
            for e in batch { try await action(set, e) }
        }
    }

    // MARK: - Queues and processes

    /// `Queue#clear`.
    func clearQueue(_ name: String) async throws {
        _ = try await redis.transaction([["UNLINK", "queue:" + name], ["SREM", "queues", name]])
    }

    /// `JobRecord#delete`: the first copy of this exact payload.
    func deleteFromQueue(_ name: String, value: String) async throws {
        try await redis.call("LREM", "queue:" + name, "1", value)
    }

    /// `Process#quiet!` (`TSTP`) and `Process#stop!` (`TERM`): the process pops the signal on its
    /// next heartbeat.
    func signal(_ identity: String, _ signal: String) async throws {
        let key = identity + "-signals"
        _ = try await redis.transaction([["LPUSH", key, signal], ["EXPIRE", key, "60"]])
    }

    /// `Sidekiq::Workers`: each process's `<identity>:workers` hash, thread id to work.
    func workers(of identities: [String]) async throws -> [(identity: String, tid: String, work: JSONValue)] {
        guard !identities.isEmpty else { return [] }
        let replies = try await redis.pipeline(identities.map { ["HGETALL", $0 + ":workers"] })
        var out: [(String, String, JSONValue)] = []
        for (identity, reply) in zip(identities, replies) {
            for (tid, json) in reply.pairs.sorted(by: { $0.0 < $1.0 }) {
                out.append((identity, tid, (try? JSONValue.parse(json)) ?? .null))
            }
        }
        return out
    }
}
