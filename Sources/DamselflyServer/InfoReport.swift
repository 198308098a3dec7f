import CDamselfly
import DamselflyCommands
import DamselflyRuntime
import DamselflyStorage
import DamselflyTransactions
import Glibc

/// Builds INFO's text: gathers per-shard figures (keyspace) and per-loop
/// figures (connections, traffic, errors) by hopping to each, then formats
/// the sections Redis and Dragonfly print, with CRLF line ends.
enum InfoReport {
    /// Redis 7.0's default sections, in its order (`INFO` / `INFO default`).
    static let defaultSections = [
        "server", "clients", "memory", "persistence", "stats", "replication", "cpu", "modules", "errorstats", "cluster",
        "keyspace",
    ]
    /// `INFO all` / `everything`: Redis 7.0's order, commandstats and latencystats around
    /// errorstats, then Damselfly's transaction section.
    static let allSections = [
        "server", "clients", "memory", "persistence", "stats", "replication", "cpu", "modules", "commandstats",
        "errorstats", "latencystats", "cluster", "keyspace", "transaction",
    ]
    static let runID: String = {
        var generator = SystemRandomNumberGenerator()
        return (0..<40).map { _ in String(Int.random(in: 0..<16, using: &generator), radix: 16) }.joined()
    }()

    struct ShardFigures {
        var keys: [Int]
        var expires: [Int]
        var ttlSum: [Int64]
    }

    struct LoopFigures {
        var commands = 0
        var connections = 0
        var rejected = 0
        var input = 0
        var output = 0
        var reads = 0
        var writes = 0
        var errors: [String: Int] = [:]
        var totalErrors = 0
    }

    static func build(server: Server, from loop: EventLoop, sections requested: [String], done: @escaping (String) -> Void) {
        var wanted: [String]
        if requested.isEmpty || requested.contains("default") {
            wanted = defaultSections
        } else if requested.contains("all") || requested.contains("everything") {
            wanted = allSections
        } else {
            wanted = allSections.filter { requested.contains($0) }
        }
        if requested.contains("default") { wanted += allSections.filter { requested.contains($0) && !wanted.contains($0) } }
        let shardSet = server.engine.shardSet
        shardSet.broadcast(from: loop, { shard -> ShardFigures in
            let now = Clock.wallMillis()
            var figures = ShardFigures(keys: [], expires: [], ttlSum: [])
            for db in shard.keyspace.databases {
                figures.keys.append(db.count)
                figures.expires.append(db.expiresCount)
                figures.ttlSum.append(db.averageTTL(nowMs: now) * Int64(db.expiresCount))
            }
            return figures
        }, done: { shardFigures in
            server.gatherLoops(from: loop, { target -> LoopFigures in
                let c = server.engine.loopCounters[target.index]
                return LoopFigures(
                    commands: c.commandsProcessed, connections: c.connectionsReceived, rejected: c.rejectedConnections,
                    input: c.netInputBytes, output: c.netOutputBytes, reads: c.readsProcessed, writes: c.writesProcessed, errors: c.errorReplies, totalErrors: c.totalErrorReplies)
            }, done: { loopFigures in
                done(format(server: server, sections: wanted, shards: shardFigures, loops: loopFigures))
            })
        })
    }

    static func format(server: Server, sections: [String], shards: [ShardFigures], loops: [LoopFigures]) -> String {
        let engine = server.engine
        let shardSet = engine.shardSet
        let now = Clock.wallMillis()
        let uptime = (now - engine.startTimeMs) / 1000
        var out = ""
        func section(_ title: String, _ lines: [(String, String)]) {
            if !out.isEmpty { out += "\r\n" }
            out += "# \(title)\r\n"
            for (k, v) in lines { out += "\(k):\(v)\r\n" }
        }
        var connected = 0, blocked = 0, opsPerSecond = 0, inputCentiKbps = 0, outputCentiKbps = 0
        for c in engine.loopCounters {
            connected += c.connectedClients.load(ordering: .relaxed)
            blocked += c.blockedClients.load(ordering: .relaxed)
            opsPerSecond += c.instantaneousOps.load(ordering: .relaxed)
            inputCentiKbps += c.instantaneousInputCentiKbps.load(ordering: .relaxed)
            outputCentiKbps += c.instantaneousOutputCentiKbps.load(ordering: .relaxed)
        }
        server.notePeakMemory()
        let used = engine.usedMemory
        let peak = max(used, server.peakMemory.load(ordering: .relaxed))
        let rss = Int(dfly_rss_bytes())
        let maxmemory = engine.maxMemory.load(ordering: .relaxed)
        let config = server.configState.withLock { $0 }
        for name in sections {
            switch name {
            case "server":
                var uts = utsname()
                uname(&uts)
                let os = [withUnsafeBytes(of: &uts.sysname) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) },
                          withUnsafeBytes(of: &uts.release) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) },
                          withUnsafeBytes(of: &uts.machine) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }].joined(separator: " ")
                section("Server", [
                    ("redis_version", ConnectionFamily.helloVersion),
                    ("damselfly_version", "0.1.0"),
                    ("redis_git_sha1", "00000000"),
                    ("redis_git_dirty", "0"),
                    ("redis_mode", server.clusterEmulated ? "cluster" : "standalone"),
                    ("os", os),
                    ("arch_bits", "64"),
                    ("multiplexing_api", server.usesIOUring ? "iouring" : "epoll"),
                    ("process_id", String(getpid())),
                    ("run_id", runID),
                    ("tcp_port", String(server.boundPort)),
                    ("server_time_usec", String(Clock.wallMicros())),
                    ("uptime_in_seconds", String(uptime)),
                    ("uptime_in_days", String(uptime / 86400)),
                    ("hz", String(config.hz)),
                    ("configured_hz", String(config.hz)),
                    ("io_threads_active", "0"),
                    ("executable", server.executablePath),
                    ("config_file", config.flagfile),
                    ("thread_count", String(server.loops.count)),
                    ("num_shards", String(shardSet.count)),
                    ("shard_round_robin_prefix", shardSet.roundRobin.map { String(decoding: $0.prefix, as: UTF8.self) } ?? ""),
                    ("shard_round_robin_table_size", String(shardSet.roundRobin?.assignments.count ?? 0)),
                ])
            case "clients":
                section("Clients", [
                    ("connected_clients", String(connected)),
                    ("cluster_connections", "0"),
                    ("maxclients", String(config.maxclients)),
                    ("blocked_clients", String(blocked)),
                    ("tracking_clients", String(shardSet.tracking.clients.load(ordering: .relaxed))),
                ])
            case "memory":
                section("Memory", [
                    ("used_memory", String(used)),
                    ("used_memory_human", humanBytes(used)),
                    ("used_memory_rss", String(rss)),
                    ("used_memory_rss_human", humanBytes(rss)),
                    ("used_memory_peak", String(peak)),
                    ("used_memory_peak_human", humanBytes(peak)),
                    ("used_memory_lua", String(engine.scripts.interpreterHeapBytes)),
                    ("used_memory_lua_human", humanBytes(engine.scripts.interpreterHeapBytes)),
                    ("number_of_cached_scripts", String(engine.scripts.cachedScriptCount)),
                    ("number_of_functions", String(engine.functions.counts.functions)),
                    ("number_of_libraries", String(engine.functions.counts.libraries)),
                    ("used_memory_vm_functions", String(engine.functions.engineMemory)),
                    ("used_memory_functions", String(engine.functions.registryMemory)),
                    ("maxmemory", String(maxmemory)),
                    ("maxmemory_human", humanBytes(maxmemory)),
                    ("maxmemory_policy", config.maxmemoryPolicy),
                    ("mem_allocator", "libc"),
                    // FLUSHALL/FLUSHDB/UNLINK ASYNC free on the shard's own thread at once:
                    // nothing is ever pending or freed in the background.
                    ("lazyfree_pending_objects", "0"),
                    ("lazyfreed_objects", "0"),
                ])
            case "persistence":
                section("Persistence", server.snapshots.infoFields())
            case "stats":
                var expired = 0, hits = 0, misses = 0
                for shard in shardSet.shards {
                    expired += shard.expiredKeys.load(ordering: .relaxed)
                    hits += shard.keyspaceHits.load(ordering: .relaxed)
                    misses += shard.keyspaceMisses.load(ordering: .relaxed)
                }
                let syncs = server.replication.syncCounters()
                let pubsub = server.pubsub.counts
                section("Stats", [
                    ("total_connections_received", String(loops.reduce(0) { $0 + $1.connections })),
                    ("total_commands_processed", String(loops.reduce(0) { $0 + $1.commands })),
                    ("instantaneous_ops_per_sec", String(opsPerSecond)),
                    ("total_net_input_bytes", String(loops.reduce(0) { $0 + $1.input })),
                    ("total_net_output_bytes", String(loops.reduce(0) { $0 + $1.output })),
                    ("instantaneous_input_kbps", format2(Double(inputCentiKbps) / 100)),
                    ("instantaneous_output_kbps", format2(Double(outputCentiKbps) / 100)),
                    ("rejected_connections", String(loops.reduce(0) { $0 + $1.rejected })),
                    ("expired_keys", String(expired)),
                    ("evicted_keys", String(shardSet.shards.reduce(0) { $0 + $1.evictedKeys.load(ordering: .relaxed) })),
                    // Each shard evicts from its own keys against its share of maxmemory.
                    ("evicted_keys_per_shard",
                     shardSet.shards.map { String($0.evictedKeys.load(ordering: .relaxed)) }.joined(separator: ",")),
                    ("keyspace_hits", String(hits)),
                    ("keyspace_misses", String(misses)),
                    ("pubsub_channels", String(pubsub.channels)),
                    ("pubsub_patterns", String(pubsub.patterns)),
                    ("pubsubshard_channels", String(pubsub.shardChannels)),
                    ("evicted_clients", "0"),
                    ("tracking_total_keys", String(shardSet.tracking.totalKeys.load(ordering: .relaxed))),
                    ("tracking_total_items", String(shardSet.tracking.totalItems.load(ordering: .relaxed))),
                    ("tracking_total_prefixes", String(server.tracking.prefixCount)),
                    ("sync_full", String(syncs.0)),
                    ("sync_partial_ok", String(syncs.1)),
                    ("sync_partial_err", String(syncs.2)),
                    ("latest_fork_usec", "0"),
                    ("total_forks", "0"),
                    // MIGRATE opens a connection per call and caches none (clients and the suite read the field).
                    ("migrate_cached_sockets", "0"),
                    ("total_error_replies", String(loops.reduce(0) { $0 + $1.totalErrors })),
                    ("total_reads_processed", String(loops.reduce(0) { $0 + $1.reads })),
                    ("total_writes_processed", String(loops.reduce(0) { $0 + $1.writes })),
                    ("connection_migrations", String(server.connectionMigrations.load(ordering: .relaxed))),
                ])
            case "replication":
                section("Replication", server.replication.infoFields())
            case "cpu":
                var user = 0.0, system = 0.0
                dfly_cpu_usage(&user, &system, 0)
                section("CPU", [
                    ("used_cpu_sys", String(format6(system))),
                    ("used_cpu_user", String(format6(user))),
                    // No child processes: snapshots are written by the shards' own threads.
                    ("used_cpu_sys_children", "0.000000"),
                    ("used_cpu_user_children", "0.000000"),
                ])
            case "modules":
                section("Modules", [])
            case "cluster":
                // redis-py and other clients read cluster_enabled to choose their mode.
                section("Cluster", [("cluster_enabled", server.clusterEmulated ? "1" : "0")])
            case "keyspace":
                var lines: [(String, String)] = []
                for db in 0..<engine.databaseCount {
                    var keys = 0, expires = 0
                    var ttlSum: Int64 = 0
                    for s in shards {
                        keys += s.keys[db]
                        expires += s.expires[db]
                        ttlSum += s.ttlSum[db]
                    }
                    if keys > 0 {
                        let avg = expires > 0 ? ttlSum / Int64(expires) : 0
                        lines.append(("db\(db)", "keys=\(keys),expires=\(expires),avg_ttl=\(avg)"))
                    }
                }
                section("Keyspace", lines)
            case "transaction":
                var global = 0, normal = 0, ooo = 0, quick = 0, inline = 0, cancels = 0, timeouts = 0, stuck = 0
                var squashedBatches = 0, squashedCommands = 0, hopBatches = 0, batchedHops = 0, squashTransactions = 0
                var lookaheadKeys = 0, prefetchedKeys = 0, squashedExecs = 0, execSquashedCommands = 0
                var widths = [Int](repeating: 0, count: shardSet.count)
                for s in shardSet.stats {
                    global += s.global.load(ordering: .relaxed)
                    normal += s.normal.load(ordering: .relaxed)
                    ooo += s.outOfOrder.load(ordering: .relaxed)
                    quick += s.quick.load(ordering: .relaxed)
                    inline += s.inline.load(ordering: .relaxed)
                    cancels += s.scheduleCancels.load(ordering: .relaxed)
                    timeouts += s.scheduleTimeouts.load(ordering: .relaxed)
                    stuck += s.stuck.load(ordering: .relaxed)
                    squashedBatches += s.squashedBatches.load(ordering: .relaxed)
                    squashedCommands += s.squashedCommands.load(ordering: .relaxed)
                    hopBatches += s.hopBatches.load(ordering: .relaxed)
                    batchedHops += s.batchedHops.load(ordering: .relaxed)
                    squashTransactions += s.squashTransactions.load(ordering: .relaxed)
                    lookaheadKeys += s.lookaheadKeys.load(ordering: .relaxed)
                    prefetchedKeys += s.prefetchedKeys.load(ordering: .relaxed)
                    squashedExecs += s.multiSquashExecutions.load(ordering: .relaxed)
                    execSquashedCommands += s.multiSquashCommands.load(ordering: .relaxed)
                    for w in 1...shardSet.count { widths[w - 1] += s.widthCount(w) }
                }
                let queued = shardSet.shards.reduce(0) { $0 + $1.queueLength.load(ordering: .relaxed) }
                let scriptCounters = engine.scripts.counters
                section("Transaction", [
                    ("tx_type_cnt", "global=\(global),normal=\(normal),ooo=\(ooo),quick=\(quick),inline=\(inline)"),
                    ("tx_width_freq", widths.enumerated().map { "w\($0.offset + 1)=\($0.element)" }.joined(separator: ",")),
                    ("tx_schedule_cancel_total", String(cancels)),
                    ("tx_schedule_timeout_total", String(timeouts)),
                    ("tx_stuck_total", String(stuck)),
                    ("tx_queue_len", String(queued)),
                    // Dragonfly's name for the commands; the runs are ours.
                    ("total_pipelined_squashed_commands", String(squashedCommands)),
                    ("pipeline_squashed_batches", String(squashedBatches)),
                    // Ours: a run's hops to one shard of another thread, sent as one message.
                    ("pipeline_squashed_hop_messages", String(hopBatches)),
                    ("pipeline_squashed_hop_commands", String(batchedHops)),
                    // Ours: runs over this thread's shard and another's, run in order as one transaction.
                    ("pipeline_squashed_transactions", String(squashTransactions)),
                    // Ours: pipelined keys read ahead of their parse, and lookups started ahead.
                    ("pipeline_lookahead_keys", String(lookaheadKeys)),
                    ("pipeline_prefetched_keys", String(prefetchedKeys)),
                    // Dragonfly's name for EXECs whose commands ran squashed; the command count is ours.
                    ("multi_squash_execution_total", String(squashedExecs)),
                    ("multi_squash_commands_total", String(execSquashedCommands)),
                    ("eval_io_coordination_total", String(scriptCounters.ioCoordination.load(ordering: .relaxed))),
                    ("eval_shardlocal_coordination_total",
                     String(scriptCounters.shardLocalCoordination.load(ordering: .relaxed))),
                    ("eval_rerun_lent_total", String(scriptCounters.rerunLent.load(ordering: .relaxed))),
                    ("eval_undeclared_key_errors_total", String(scriptCounters.undeclaredKeyErrors.load(ordering: .relaxed))),
                ])
            case "commandstats":
                var lines: [(String, String)] = []
                for (name, stats) in statsByName(engine.registry) {
                    var calls = 0, usec = 0, rejected = 0, failed = 0
                    for s in stats {
                        calls += s.calls.load(ordering: .relaxed)
                        usec += s.microseconds.load(ordering: .relaxed)
                        rejected += s.rejectedCalls.load(ordering: .relaxed)
                        failed += s.failedCalls.load(ordering: .relaxed)
                    }
                    guard calls + rejected > 0 else { continue }
                    let perCall = calls > 0 ? Double(usec) / Double(calls) : 0
                    lines.append(("cmdstat_\(name)", "calls=\(calls),usec=\(usec),usec_per_call=\(format2(perCall)),rejected_calls=\(rejected),failed_calls=\(failed)"))
                }
                section("Commandstats", lines)
            case "latencystats":
                let percentiles = server.latency.infoPercentiles()
                var lines: [(String, String)] = []
                for (name, stats) in statsByName(engine.registry) {
                    let slots = LatencyHistogram.merged(stats.map(\.latency))
                    guard let values = LatencyHistogram.percentiles(slots, percentiles) else { continue }
                    let text = zip(percentiles, values).map { "p\(percentileLabel($0))=\(formatFixed($1, digits: 3))" }
                    lines.append(("latency_percentiles_usec_\(name)", text.joined(separator: ",")))
                }
                section("Latencystats", lines)
            case "errorstats":
                var merged: [String: Int] = [:]
                for l in loops { for (k, v) in l.errors { merged[k, default: 0] += v } }
                section("Errorstats", merged.sorted { $0.key < $1.key }.map { ("errorstat_\($0.key)", "count=\($0.value)") })
            default:
                break
            }
        }
        return out
    }

    /// Every command's per-loop statistics by the name INFO gives them, in name order:
    /// a plain command's own, a container's subcommands' (`config|get`) and its own
    /// (calls refused for their arity, with no subcommand).
    static func statsByName(_ registry: CommandRegistry) -> [(String, [CommandStats])] {
        var out: [(String, [CommandStats])] = []
        for (name, spec) in registry.commands {
            out.append((name, spec.stats))
            for (sub, stats) in spec.subcommandStats { out.append((sub, stats)) }
        }
        return out.sorted { $0.0 < $1.0 }
    }

    /// A percentile as Redis labels it (`p50`, `p99.9`): `%f` with its trailing zeros
    /// and point trimmed.
    static func percentileLabel(_ p: Double) -> String {
        var text = formatFixed(p, digits: 6)
        while text.hasSuffix("0") { text.removeLast() }
        if text.hasSuffix(".") { text.removeLast() }
        return text
    }

    static func format2(_ v: Double) -> String { formatFixed(v, digits: 2) }
    static func format6(_ v: Double) -> String { formatFixed(v, digits: 6) }

    static func formatFixed(_ v: Double, digits: Int) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        _ = withVaList([v]) { vsnprintf(&buffer, 64, "%.\(digits)f", $0) }
        return String(cString: buffer)
    }
}
